#!/bin/bash
# test_plan.sh - end-to-end checks of `grok plan`: every bad input exits non-zero
# with a message naming the problem (and writes no SVG); good inputs print tables,
# valid JSON and SVG files.
# usage: test_plan.sh GROK SOURCE_DIR
set -u
GROK=$1
SRC=$2
W=$(mktemp -d /tmp/gk_plan.XXXXXX)
trap 'rm -rf "$W"' EXIT
fails=0

expect_fail() {
    local want=$1; shift
    if "$GROK" "$@" >"$W/out" 2>"$W/err"; then
        echo "FAIL: grok $* succeeded (expected '$want')"; fails=$((fails + 1)); return
    fi
    if ! grep -qF -- "$want" "$W/err"; then
        echo "FAIL: grok $*: stderr lacks '$want':"; cat "$W/err"; fails=$((fails + 1))
    fi
}
expect_ok() {
    local want=$1; shift
    if ! "$GROK" "$@" >"$W/out" 2>"$W/err"; then
        echo "FAIL: grok $* failed:"; cat "$W/err"; fails=$((fails + 1)); return
    fi
    if ! grep -qF -- "$want" "$W/out"; then
        echo "FAIL: grok $*: stdout lacks '$want':"; cat "$W/out"; fails=$((fails + 1))
    fi
}

expect_fail "unknown subcommand 'bogus'" plan bogus
expect_fail "unknown model preset 'grok-9'" plan infer --model grok-9 --fleet 8xH100
expect_fail "unknown device 'H1000'" plan infer --model grok-2 --fleet 8xH1000
expect_fail "expected COUNTxDEVICE" plan infer --model grok-2 --fleet H100
expect_fail "whole number" plan infer --model grok-2 --fleet 0xH100
expect_fail "the fleet is too small" plan infer --model grok-2 --fleet 1xH100 --type q4_k_m --svg "$W/no.svg"
[ -e "$W/no.svg" ] && { echo "FAIL: an SVG was written for a failed plan"; fails=$((fails + 1)); }
expect_fail "--tp 3 is not a valid split" plan infer --model grok-2 --fleet 8xH100 --tp 3
expect_fail "unknown weight type 'q3_z'" plan infer --model grok-2 --fleet 8xH100 --type q3_z
expect_fail "--mfu" plan train --model grok-2 --tokens 1e12 --fleet 8xH100 --mfu 2
expect_fail "--tokens" plan train --model grok-2 --tokens -5 --fleet 8xH100
expect_fail "--tokens" plan train --model grok-2 --tokens abc --fleet 8xH100
expect_fail "--pue" plan train --model grok-2 --tokens 1e12 --fleet 8xH100 --pue 0.5
expect_fail "--fleet and --tokens are required" plan train --model grok-2
expect_fail "--model is required" plan infer --fleet 8xH100
expect_fail "--devices" plan fleet --devices 0 --kind H100
expect_fail "unknown device 'TPU'" plan fleet --devices 100 --kind TPU
expect_fail "do not divide" plan infer --model grok-2 --kv-heads 7 --fleet 8xH100
expect_fail "top-9 of 8" plan infer --model grok-2 --experts-used 9 --fleet 8xH100
expect_fail "unknown option '--frobnicate'" plan infer --model grok-2 --fleet 8xH100 --frobnicate 1
expect_fail "cannot open" plan infer --model "$W/missing.gguf" --fleet 1xH100
printf 'name = x\nbf16_flops = many\n' >"$W/bad.preset"
expect_fail "bad.preset:2: expected" plan infer --model grok-2 --fleet "1x$W/bad.preset"
expect_fail "--svg is for infer and train" plan fleet --devices 100 --kind H100 --svg "$W/f.svg"
expect_fail "cannot write" plan train --model grok-2 --tokens 1e12 --fleet 8xH100 --svg /nonexistent/dir/p.svg

expect_ok "q4_k_m" plan infer --model grok-2 --fleet 8xH100 --type q4_k_m --ctx 8192
expect_ok "device-hours" plan train --model grok-2 --tokens 15e12 --fleet 16384xH100 --mfu 0.4 --pue 1.2
expect_ok "compute-optimal" plan fleet --devices 50e6 --kind H100
expect_ok "source: NVIDIA H100" plan presets
expect_ok "(resized)" plan infer --model grok-1 --layers 8 --embd 2048 --fleet 1xH100
for args in "infer --model grok-1 --fleet 8xMI300X" "train --model deepseek-v3 --tokens 14.8e12 --fleet 2048xH800" \
            "fleet --devices 1e5 --kind B200" "presets"; do
    # shellcheck disable=SC2086
    if ! "$GROK" plan $args --json >"$W/j" 2>"$W/err" || ! /usr/bin/python3 -m json.tool "$W/j" >/dev/null; then
        echo "FAIL: grok plan $args --json is not valid JSON:"; cat "$W/j" "$W/err"; fails=$((fails + 1))
    fi
done
for args in "infer --model grok-2 --fleet 8xH100 --type q8_0" "train --model grok-2 --tokens 1e13 --fleet 1024xH100"; do
    rm -f "$W/p.svg"
    # shellcheck disable=SC2086
    if ! "$GROK" plan $args --svg "$W/p.svg" >/dev/null 2>"$W/err" || ! grep -q "</svg>" "$W/p.svg" ||
        ! grep -q "<polyline" "$W/p.svg"; then
        echo "FAIL: grok plan $args --svg wrote no plot"; cat "$W/err"; fails=$((fails + 1))
    fi
done
# a real file: the tiny model's own tensor types
/usr/bin/python3 "$SRC/tests/reference/make_model.py" "$W/m.gguf" --kind grok1 --type q8_0 --seed 1 >/dev/null || exit 1
expect_ok "m.gguf" plan infer --model "$W/m.gguf" --fleet 1xCPU
# a calibrated machine (a hand-written preset) gets the per-rank memory of a TP run
# (f32: the tiny q8_0 file's columns cannot split over 2 ranks, as the engine says)
/usr/bin/python3 "$SRC/tests/reference/make_model.py" "$W/f.gguf" --kind grok2 --type f32 --seed 1 >/dev/null || exit 1
printf 'name = cal\nbf16_flops = 1e11\nmem_bytes = 1e10\nmem_bw = 2e10\nlink_bw = 1e9\nnet_bw = 1e9\n' >"$W/cal.preset"
printf 'rss_base = 1.5e7\nthreads = 1\nmm_bw1.f32 = 1e10\nmm_flops_at.f32.128.512 = 5e10\n' >>"$W/cal.preset"
expect_ok "peak memory of one grok.c process" plan infer --model "$W/f.gguf" --fleet "2x$W/cal.preset" --tp 2 --ctx 64
if ! "$GROK" plan infer --model "$W/f.gguf" --fleet "2x$W/cal.preset" --tp 2 --ctx 64 --json >"$W/j" ||
    ! /usr/bin/python3 -c "import json,sys; m=json.load(open(sys.argv[1]))['splits'][0]['rank_mem']; assert m['total'] > m['weights'] > 0 and m['base'] == 1.5e7" "$W/j"; then
    echo "FAIL: grok plan infer --tp 2 --json has no rank_mem"; cat "$W/j"; fails=$((fails + 1))
fi
# a hand-written preset without a link bandwidth (and a quote in its source): the
# splits' communication is unknown, so JSON gives null (valid JSON, no inf) and the
# table says n/a and why
printf 'name = nolink\nbf16_flops = 1e12\nmem_bytes = 1e9\nmem_bw = 1e11\nsource = a "quoted" \\ one\n' >"$W/nolink.preset"
if ! "$GROK" plan infer --model grok-1 --type q4_0 --fleet "256x$W/nolink.preset" --ctx 1024 --json >"$W/j" ||
    ! /usr/bin/python3 -c "
import json,sys
d=json.load(open(sys.argv[1]))
assert d['fleet']['source'] == 'a \"quoted\" \\\\ one', d['fleet']['source']
assert all(s['gen_comm_s'] is None and s['gen_tps'] is None for s in d['splits'])" "$W/j"; then
    echo "FAIL: grok plan infer --json with a preset without link_bw is not valid JSON with nulls"; cat "$W/j"; fails=$((fails + 1))
fi
expect_ok "no bandwidth (link_bw / net_bw) for the link" plan infer --model grok-1 --type q4_0 --fleet "256x$W/nolink.preset" --ctx 1024
printf 'mm_flops_at.q8_0.100.512 = 5e10\n' >>"$W/cal.preset"
expect_fail "cal.preset:11: expected" plan infer --model "$W/m.gguf" --fleet "1x$W/cal.preset"

if [ $fails -ne 0 ]; then echo "$fails failure(s)"; exit 1; fi
echo ok
