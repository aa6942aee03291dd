#!/bin/bash
# test_cli.sh - end-to-end checks of the grok CLI's failure paths and outputs:
# each bad input must exit non-zero with a message naming the problem, and leave
# no output file behind; good inputs must produce what they promise.
# usage: test_cli.sh GROK SOURCE_DIR
set -u
GROK=$1
SRC=$2
W=$(mktemp -d /tmp/gk_cli.XXXXXX)
trap 'rm -rf "$W"' EXIT
fails=0

/usr/bin/python3 "$SRC/tests/reference/make_model.py" "$W/m.gguf" --kind grok2 --seed 3 >/dev/null || exit 1

# expect_fail "substring of stderr" args...
expect_fail() {
    local want=$1; shift
    if "$GROK" "$@" >"$W/out" 2>"$W/err"; then
        echo "FAIL: grok $* succeeded (expected '$want')"; fails=$((fails + 1)); return
    fi
    if ! grep -qF -- "$want" "$W/err"; then
        echo "FAIL: grok $*: stderr lacks '$want':"; cat "$W/err"; fails=$((fails + 1))
    fi
}

expect_fail "unknown command 'nope'" nope
expect_fail "unknown option '--bogus'" run -m "$W/m.gguf" --bogus
expect_fail "cannot open" run -m "$W/missing.gguf" --tokens 1
expect_fail "option -m needs a value" run -m
expect_fail "bad token id" run -m "$W/m.gguf" --tokens 1,x,3
expect_fail "out of range" run -m "$W/m.gguf" --tokens 1,99999 -n 1
expect_fail "expects a whole number" run -m "$W/m.gguf" --tokens 1 -n -5
expect_fail "expects 'reference' or 'llamacpp'" run -m "$W/m.gguf" --tokens 1 --numerics fast
expect_fail "expects f32, f16 or q8_0" run -m "$W/m.gguf" --tokens 1 --cache-type q4
expect_fail "needs a head size that is a multiple of 32" run -m "$W/m.gguf" --tokens 1 --cache-type q8_0
expect_fail "exceeds the context length" run -m "$W/m.gguf" --tokens 1,2,3 -n 100 -c 32
expect_fail "has no tokenizer" run -m "$W/m.gguf" -p "hello"
expect_fail "top-p" run -m "$W/m.gguf" --tokens 1 --top-p 2
head -c 1000 "$W/m.gguf" >"$W/trunc.gguf"
expect_fail "trunc.gguf" run -m "$W/trunc.gguf" --tokens 1
expect_fail "trunc.gguf" info "$W/trunc.gguf"

# --dump-logits into a missing directory: error, and nothing left behind
expect_fail "cannot create" run -m "$W/m.gguf" --tokens 1,2 -n 0 --dump-logits "$W/nodir/l.bin"
[ -e "$W/nodir" ] && { echo "FAIL: a file was left behind"; fails=$((fails + 1)); }

# a failing run leaves no dump (context exceeded during generation is checked
# before any work, so use a bad sampler value after the model loaded)
expect_fail "top-k" run -m "$W/m.gguf" --tokens 1,2 -n 2 --top-k -1 --dump-logits "$W/l.bin"
ls "$W"/l.bin* >/dev/null 2>&1 && { echo "FAIL: a failed run left a dump"; fails=$((fails + 1)); }

# good runs: dump size = positions x vocab x 4; greedy runs are deterministic
"$GROK" run -m "$W/m.gguf" --tokens 5,6,7,8 -n 3 --temp 0 --dump-logits "$W/l.bin" >"$W/a" 2>"$W/err" ||
    { echo "FAIL: good run failed:"; cat "$W/err"; fails=$((fails + 1)); }
size=$(stat -c %s "$W/l.bin" 2>/dev/null || echo 0)
[ "$size" -eq $(((4 + 2) * 1280 * 4)) ] || { echo "FAIL: dump has $size bytes"; fails=$((fails + 1)); }
"$GROK" run -m "$W/m.gguf" --tokens 5,6,7,8 -n 3 --temp 0 -t 1 >"$W/b" 2>/dev/null
cmp -s "$W/a" "$W/b" || { echo "FAIL: greedy output differs between runs"; fails=$((fails + 1)); }
"$GROK" run -m "$W/m.gguf" --tokens 5,6,7,8 -n 8 --seed 4 --temp 1 >"$W/c" 2>/dev/null
"$GROK" run -m "$W/m.gguf" --tokens 5,6,7,8 -n 8 --seed 4 --temp 1 >"$W/d" 2>/dev/null
cmp -s "$W/c" "$W/d" || { echo "FAIL: the same seed gave different tokens"; fails=$((fails + 1)); }
[ "$(wc -w <"$W/c")" -eq 8 ] || { echo "FAIL: -n 8 did not give 8 tokens"; fails=$((fails + 1)); }
"$GROK" info "$W/m.gguf" >"$W/info" 2>&1 || { echo "FAIL: info failed"; fails=$((fails + 1)); }
grep -q "Grok-2" "$W/info" && grep -q "grok.attention.temperature_length" "$W/info" ||
    { echo "FAIL: info lacks the variant or a key"; fails=$((fails + 1)); }
"$GROK" bench -m "$W/m.gguf" -p 16 -n 4 -r 1 >"$W/bench" 2>&1 && grep -q "tokens/s" "$W/bench" ||
    { echo "FAIL: bench"; cat "$W/bench"; fails=$((fails + 1)); }

# Q8_0, Q4_0, F16, BF16 and F32 weights packed for the GEMM by the first context
# (AVX-512 VNNI; kernels/gemm.h): the logits of a prompt and of the tokens generated after it are
# the bits of the unpacked rows (GK_NO_PACK=1), and a prompt run one token at a
# time (decode's kernels) gives the bits of the whole batch's
for q in q8_0 q4_0 f16 bf16 f32; do
    "$GROK" quantize "$W/m.gguf" "$W/$q.gguf" $q -q >/dev/null 2>&1 || { echo "FAIL: quantize $q"; fails=$((fails + 1)); }
    for v in packed raw ub1; do
        case $v in raw) env=GK_NO_PACK=1 ;; *) env=GK_UNUSED=1 ;; esac
        ub=(); [ $v = ub1 ] && ub=(--ubatch 1)
        env $env "$GROK" run -m "$W/$q.gguf" --tokens 5,6,7,8,9,10,11,12,13 -n 4 --temp 0 -t 2 "${ub[@]}" \
            --dump-logits "$W/l_$v.bin" >/dev/null 2>"$W/err" || { echo "FAIL: $q run ($v)"; cat "$W/err"; fails=$((fails + 1)); }
    done
    cmp -s "$W/l_packed.bin" "$W/l_raw.bin" || { echo "FAIL: packed $q logits differ from the rows'"; fails=$((fails + 1)); }
    cmp -s "$W/l_packed.bin" "$W/l_ub1.bin" || { echo "FAIL: packed $q logits differ one token at a time"; fails=$((fails + 1)); }
    "$GROK" bench -m "$W/$q.gguf" -p 16 -n 4 -r 1 >"$W/bench" 2>&1 || { echo "FAIL: bench $q"; fails=$((fails + 1)); }
    grep -q "avx512-vnni" "$W/bench" && ! grep -q "packed for the GEMM" "$W/bench" &&
        { echo "FAIL: AVX-512 VNNI but no $q matrix packed:"; cat "$W/bench"; fails=$((fails + 1)); }
    # 3 layers of Grok-2: 8 experts' gate and up, and the dense MLP's, packed in pairs
    grep -q "avx512-vnni" "$W/bench" && ! grep -q ", 54 of them in gate/up pairs" "$W/bench" &&
        { echo "FAIL: $q gate/up not packed in pairs:"; cat "$W/bench"; fails=$((fails + 1)); }
done

# Grok-1's output is the embedding (tied): packed into a copy of its own while the
# embedding reads the file's rows; the logits are still the bits of the unpacked rows
/usr/bin/python3 "$SRC/tests/reference/make_model.py" "$W/g1.gguf" --kind grok1 --seed 3 >/dev/null ||
    { echo "FAIL: make the grok1 model"; fails=$((fails + 1)); }
for q in f16 q8_0; do
    "$GROK" quantize "$W/g1.gguf" "$W/g1_$q.gguf" $q -q >/dev/null 2>&1 || { echo "FAIL: quantize grok1 $q"; fails=$((fails + 1)); }
    for v in packed raw; do
        case $v in raw) env=GK_NO_PACK=1 ;; *) env=GK_UNUSED=1 ;; esac
        env $env "$GROK" run -m "$W/g1_$q.gguf" --tokens 5,6,7,8,9,10,11,12,13 -n 4 --temp 0 -t 2 \
            --dump-logits "$W/l_$v.bin" >/dev/null 2>"$W/err" || { echo "FAIL: grok1 $q run ($v)"; cat "$W/err"; fails=$((fails + 1)); }
    done
    cmp -s "$W/l_packed.bin" "$W/l_raw.bin" || { echo "FAIL: grok1 $q: the packed tied output's logits differ from the rows'"; fails=$((fails + 1)); }
done

[ $fails -eq 0 ] && echo "ok" || echo "$fails failure(s)"
exit $((fails > 0))
