#!/usr/bin/env bash
# vs_llamacpp.sh - grok bench against llama.cpp's llama-bench on the same GGUF
# files, alternating the two in one run (so both see the same machine state),
# and the ratios: prompt tokens/s (a P-token prompt) and generation tokens/s,
# plus generation as a share of the read-bandwidth limit that grok bench measures.
#
# usage: bench/vs_llamacpp.sh LLAMA_CPP_BUILD_DIR [MODEL.gguf ...]
#   With no models, uses (and makes when missing, with bench/make_bench_model.py,
#   about 530M parameters, Grok-2 shape) $BENCH_DIR/bench-{f16,q8_0,q4_0}.gguf,
#   plus bench-q4_k_m.gguf made from the f16 one by llama-quantize.
# environment: GROK (grok binary, default build/grok), BENCH_DIR (default
#   /tmp/grok-bench), P (prompt tokens, 512), N (generated tokens, 64),
#   T (threads, 2), R (alternating rounds per model, best kept, 3).
# llama.cpp is never built here; pass the build directory of an existing build
# (its bin/llama-bench).
set -euo pipefail

usage() { sed -n '6,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
LLAMA_DIR=$1
shift
LLAMA_BENCH=$LLAMA_DIR/bin/llama-bench
[ -x "$LLAMA_BENCH" ] || { echo "vs_llamacpp.sh: no llama-bench at $LLAMA_BENCH" >&2; exit 1; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GROK=${GROK:-$ROOT/build/grok}
[ -x "$GROK" ] || { echo "vs_llamacpp.sh: no grok binary at $GROK (build it, or set GROK)" >&2; exit 1; }
BENCH_DIR=${BENCH_DIR:-/tmp/grok-bench}
P=${P:-512} N=${N:-64} T=${T:-2} R=${R:-3}
PY=${PYTHON:-/usr/bin/python3}

models=("$@")
if [ ${#models[@]} -eq 0 ]; then
    mkdir -p "$BENCH_DIR"
    for t in f16 q8_0 q4_0; do
        f=$BENCH_DIR/bench-$t.gguf
        if [ ! -s "$f" ]; then
            echo "making $f" >&2
            "$PY" "$ROOT/bench/make_bench_model.py" "$f.tmp" --type "$t" >&2 && mv "$f.tmp" "$f"
        fi
        models+=("$f")
    done
    q=$BENCH_DIR/bench-q4_k_m.gguf
    if [ ! -s "$q" ] && [ -x "$LLAMA_DIR/bin/llama-quantize" ]; then
        "$LLAMA_DIR/bin/llama-quantize" "$BENCH_DIR/bench-f16.gguf" "$q.tmp" Q4_K_M >/dev/null 2>&1 &&
            mv "$q.tmp" "$q" || echo "llama-quantize Q4_K_M failed; skipping it" >&2
    fi
    [ -s "$q" ] && models+=("$q")
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# best-of-R figures per model: grok pp, grok tg, grok share, llama pp, llama tg
for m in "${models[@]}"; do
    [ -s "$m" ] || { echo "vs_llamacpp.sh: no model $m" >&2; exit 1; }
    gpp=0 gtg=0 gshare=0 lpp=0 ltg=0
    for ((r = 1; r <= R; r++)); do
        if "$GROK" bench -m "$m" -p "$P" -n "$N" -t "$T" -b "$P" -r 1 >"$tmp/g" 2>&1; then
            read -r pp tg share < <(awk '/^prompt:/{p=$2} /^generation:/{g=$2}
                /reaches/{for(i=1;i<=NF;i++) if($i=="reaches"){s=$(i+1); sub("%","",s)}}
                END{print p+0, g+0, s+0}' "$tmp/g")
            gpp=$("$PY" -c "print(max($gpp,$pp))")
            if "$PY" -c "import sys; sys.exit(0 if $tg > $gtg else 1)"; then gtg=$tg gshare=$share; fi
        else
            echo "grok bench failed on $m: $(tail -1 "$tmp/g")" >&2
        fi
        if "$LLAMA_BENCH" -m "$m" -p "$P" -n "$N" -t "$T" -r 1 -o json >"$tmp/l" 2>"$tmp/le"; then
            read -r pp tg < <("$PY" -c "
import json, sys
pp = tg = 0.0
for e in json.load(open(sys.argv[1])):
    if e['n_prompt'] > 0 and e['n_gen'] == 0: pp = e['avg_ts']
    if e['n_gen'] > 0 and e['n_prompt'] == 0: tg = e['avg_ts']
print(pp, tg)" "$tmp/l")
            lpp=$("$PY" -c "print(max($lpp,$pp))")
            ltg=$("$PY" -c "print(max($ltg,$tg))")
        else
            echo "llama-bench failed on $m: $(tail -1 "$tmp/le")" >&2
        fi
    done
    echo "$(basename "$m") $gpp $lpp $gtg $ltg $gshare" >>"$tmp/rows"
done

echo
echo "grok $("$GROK" --version 2>/dev/null | head -1) vs llama.cpp ($LLAMA_DIR), $T threads," \
    "prompt $P tokens, generation $N tokens, best of $R alternating rounds"
"$PY" - "$tmp/rows" <<'PYEOF'
import sys
rows = [l.split() for l in open(sys.argv[1])]
hdr = ("model", "pp grok", "pp llama", "ratio", "tg grok", "tg llama", "ratio", "grok %bw", "llama %bw")
print("%-22s %9s %9s %6s %9s %9s %6s %8s %9s" % hdr)
for name, gpp, lpp, gtg, ltg, share in rows:
    gpp, lpp, gtg, ltg, share = map(float, (gpp, lpp, gtg, ltg, share))
    r = lambda a, b: "%6.2f" % (a / b) if a > 0 and b > 0 else "   n/a"
    lshare = share * ltg / gtg if gtg > 0 else 0.0
    print("%-22s %9.1f %9.1f %s %9.2f %9.2f %s %7.1f%% %8.1f%%"
          % (name, gpp, lpp, r(gpp, lpp), gtg, ltg, r(gtg, ltg), share, lshare))
PYEOF
