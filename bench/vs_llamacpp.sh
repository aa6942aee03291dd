#!/usr/bin/env bash
# vs_llamacpp.sh - grok bench against llama.cpp's llama-bench on the same GGUF
# files, alternating the two in one run (so both see the same machine state),
# and the ratios: prompt tokens/s (a P-token prompt) and generation tokens/s,
# plus generation as a share of the read-bandwidth limit that grok bench measures
# (the weights a token uses and the KV cache it reads, over the bandwidth). With
# D > 0, generation again after a D-token context (llama-bench -d D).
#
# usage: bench/vs_llamacpp.sh LLAMA_CPP_BUILD_DIR [MODEL.gguf ...]
#   With no models, uses (and makes when missing, with bench/make_bench_model.py,
#   about 530M parameters, Grok-2 shape) $BENCH_DIR/bench-{f16,q8_0,q4_0}.gguf,
#   plus bench-q4_k_m.gguf made from the f16 one by llama-quantize.
# environment: GROK (grok binary, default build/grok), BENCH_DIR (default
#   /tmp/grok-bench), P (prompt tokens, 512), N (generated tokens, 64),
#   T (threads, 2), R (alternating rounds per model, best kept, 3), CACHE (the KV
#   cache type of both, f16 as llama-bench keeps by default), D (context before a
#   second generation run, 0 = none).
# llama.cpp is never built here; pass the build directory of an existing build
# (its bin/llama-bench).
set -euo pipefail

usage() { sed -n '9,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
LLAMA_DIR=$1
shift
LLAMA_BENCH=$LLAMA_DIR/bin/llama-bench
[ -x "$LLAMA_BENCH" ] || { echo "vs_llamacpp.sh: no llama-bench at $LLAMA_BENCH" >&2; exit 1; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GROK=${GROK:-$ROOT/build/grok}
[ -x "$GROK" ] || { echo "vs_llamacpp.sh: no grok binary at $GROK (build it, or set GROK)" >&2; exit 1; }
BENCH_DIR=${BENCH_DIR:-/tmp/grok-bench}
P=${P:-512} N=${N:-64} T=${T:-2} R=${R:-3} CACHE=${CACHE:-f16} D=${D:-0}
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

# one grok bench: its prompt and generation tokens/s and the generation's share of
# the limit; args: model, prompt tokens
grok_run() {
    "$GROK" bench -m "$1" -p "$2" -n "$N" -t "$T" -b "$2" -r 1 --cache-type "$CACHE" \
        >"$tmp/g" 2>&1 || { echo "grok bench failed on $1: $(tail -1 "$tmp/g")" >&2; return 1; }
    awk '/^prompt:/{p=$2} /^generation:/{g=$2}
        /reaches/{for(i=1;i<=NF;i++) if($i=="reaches"){s=$(i+1); sub("%","",s)}}
        END{print p+0, g+0, s+0}' "$tmp/g"
}
# one llama-bench: its prompt and generation tokens/s; args: model, llama-bench options
llama_run() {
    local m=$1
    shift
    "$LLAMA_BENCH" -m "$m" "$@" -n "$N" -t "$T" -r 1 -ctk "$CACHE" -ctv "$CACHE" -o json \
        >"$tmp/l" 2>"$tmp/le" || { echo "llama-bench failed on $m: $(tail -1 "$tmp/le")" >&2; return 1; }
    "$PY" -c "
import json, sys
pp = tg = 0.0
for e in json.load(open(sys.argv[1])):
    if e['n_prompt'] > 0 and e['n_gen'] == 0: pp = e['avg_ts']
    if e['n_gen'] > 0 and e['n_prompt'] == 0: tg = e['avg_ts']
print(pp, tg)" "$tmp/l"
}
max() { "$PY" -c "print(max($1, $2))"; }

# best-of-R figures per model: grok pp, grok tg, grok share, llama pp, llama tg; and
# at depth D: grok tg, grok share, llama tg
for m in "${models[@]}"; do
    [ -s "$m" ] || { echo "vs_llamacpp.sh: no model $m" >&2; exit 1; }
    gpp=0 gtg=0 gshare=0 lpp=0 ltg=0 dtg=0 dshare=0 ldtg=0
    for ((r = 1; r <= R; r++)); do
        if read -r pp tg share < <(grok_run "$m" "$P"); then
            gpp=$(max "$gpp" "$pp")
            if "$PY" -c "import sys; sys.exit(0 if $tg > $gtg else 1)"; then gtg=$tg gshare=$share; fi
        fi
        if read -r pp tg < <(llama_run "$m" -p "$P"); then
            lpp=$(max "$lpp" "$pp")
            ltg=$(max "$ltg" "$tg")
        fi
        [ "$D" -gt 0 ] || continue
        if read -r pp tg share < <(grok_run "$m" "$D"); then
            if "$PY" -c "import sys; sys.exit(0 if $tg > $dtg else 1)"; then dtg=$tg dshare=$share; fi
        fi
        if read -r pp tg < <(llama_run "$m" -p 0 -d "$D"); then ldtg=$(max "$ldtg" "$tg"); fi
    done
    echo "$(basename "$m") $gpp $lpp $gtg $ltg $gshare $dtg $ldtg $dshare" >>"$tmp/rows"
done

echo
echo "grok $("$GROK" --version 2>/dev/null | head -1) vs llama.cpp ($LLAMA_DIR), $T threads," \
    "prompt $P tokens, generation $N tokens, KV cache $CACHE, best of $R alternating rounds"
"$PY" - "$tmp/rows" "$D" <<'PYEOF'
import sys
rows = [l.split() for l in open(sys.argv[1])]
D = int(sys.argv[2])
hdr = ("model", "pp grok", "pp llama", "ratio", "tg grok", "tg llama", "ratio", "grok %bw", "llama %bw")
fmt = "%-22s %9s %9s %6s %9s %9s %6s %8s %9s"
r = lambda a, b: "%6.2f" % (a / b) if a > 0 and b > 0 else "   n/a"
# llama.cpp's share: grok's limit (the same file, cache type and context) at its speed
share_of = lambda share, tg, gtg: "%7.1f%%" % (share * tg / gtg) if gtg > 0 else "    n/a"
print(fmt % hdr)
for name, gpp, lpp, gtg, ltg, share, dtg, ldtg, dshare in rows:
    gpp, lpp, gtg, ltg, share, dtg, ldtg, dshare = map(
        float, (gpp, lpp, gtg, ltg, share, dtg, ldtg, dshare))
    print(fmt % (name, "%.1f" % gpp, "%.1f" % lpp, r(gpp, lpp), "%.2f" % gtg, "%.2f" % ltg,
                 r(gtg, ltg), "%.1f%%" % share, share_of(share, ltg, gtg)))
if D > 0:
    print("\ngeneration after a %d-token context" % D)
    fmt = "%-22s %9s %9s %6s %8s %9s"
    print(fmt % ("model", "tg grok", "tg llama", "ratio", "grok %bw", "llama %bw"))
    for name, gpp, lpp, gtg, ltg, share, dtg, ldtg, dshare in rows:
        dtg, ldtg, dshare = float(dtg), float(ldtg), float(dshare)
        print(fmt % (name, "%.2f" % dtg, "%.2f" % ldtg, r(dtg, ldtg), "%.1f%%" % dshare,
                     share_of(dshare, ldtg, dtg)))
PYEOF
