#!/bin/bash
# plan_vs_measured.sh - grok plan's predictions for this machine against what grok
# measures, side by side: `grok bench` prompt and generation tokens/s for three
# models of different size and weight type, and `grok train` tokens/s.
#
#   bench/plan_vs_measured.sh [BUILD_DIR] [WORK_DIR]
#
# 1. `grok plan calibrate` measures this machine into a preset file (memory
#    bandwidth, gk_matmul per weight type at batch 1 and 512, the f32 dot, the
#    training GEMM, expf/erff/tanhf, an elementwise pass, a pool step).
# 2. Three Grok-architecture models: f16 (~120 MB, Grok-2 shape), q8_0 (~270 MB,
#    Grok-2 shape, by `grok quantize` from f16) and q4_0 (~330 MB, Grok-1 shape,
#    made from f16 by `grok quantize`).
# 3. For each: `grok plan infer --fleet 1x<preset>` with the same prompt length,
#    batch and generated tokens as `grok bench`, then `grok bench`.
# 4. `grok plan train` (measured rates) against a short `grok train` fine-tune of
#    the shipped default model.
# Goals (issue 10): within 15 % for bench, 20 % for train. The machine should be
# otherwise idle: both sides are measurements of shared cores.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=${1:-$SRC/build}
W=${2:-$(mktemp -d /tmp/gk_pvm.XXXXXX)}
GROK=$B/grok
PY=/usr/bin/python3
mkdir -p "$W"
P=512; N=32; BATCH=512; T=${GK_THREADS:-$(nproc)}

echo "== calibrate"
"$GROK" plan calibrate -t "$T" -o "$W/this.preset"

echo "== models"
[ -f "$W/a_f16.gguf" ] || $PY "$SRC/bench/make_bench_model.py" "$W/a_f16.gguf" --type f16 \
    --embd 512 --layers 4 --heads 8 --kv-heads 2 --ff 2048 --ff-exp 1024 --vocab 16384 --ctx 2048 >/dev/null
[ -f "$W/b_f16.gguf" ] || $PY "$SRC/bench/make_bench_model.py" "$W/b_f16.gguf" --type f16 \
    --embd 1024 --layers 4 --heads 8 --kv-heads 2 --ff 4096 --ff-exp 2048 --vocab 16384 --ctx 2048 >/dev/null
[ -f "$W/b_q8_0.gguf" ] || "$GROK" quantize "$W/b_f16.gguf" "$W/b_q8_0.gguf" q8_0 -q
[ -f "$W/c_f16.gguf" ] || $PY "$SRC/bench/make_bench_model.py" "$W/c_f16.gguf" --type f16 \
    --embd 1024 --layers 6 --heads 8 --kv-heads 2 --ff 0 --ff-exp 4096 --vocab 16384 --ctx 2048 >/dev/null
[ -f "$W/c_q4_0.gguf" ] || "$GROK" quantize "$W/c_f16.gguf" "$W/c_q4_0.gguf" q4_0 -q
rm -f "$W/b_f16.gguf" "$W/c_f16.gguf"

json() { $PY -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['splits'][0][sys.argv[2]])" "$@"; }
pct() { $PY -c "import sys; p,m=float(sys.argv[1]),float(sys.argv[2]); print('%+.1f%%' % (100*(p/m-1)))" "$1" "$2"; }

printf '\n%-14s %9s | %10s %10s %7s | %10s %10s %7s\n' model size "prompt pred" measured diff \
    "gen pred" measured diff
for m in a_f16 b_q8_0 c_q4_0; do
    f=$W/$m.gguf
    "$GROK" plan infer --model "$f" --fleet "1x$W/this.preset" --prompt $P --gen $N --batch $BATCH \
        --ctx $((P + N)) --json >"$W/$m.json"
    pp_pred=$(json "$W/$m.json" prompt_tps)
    tg_pred=$(json "$W/$m.json" gen_tps)
    "$GROK" bench -m "$f" -p $P -n $N -b $BATCH -t "$T" -r 2 >"$W/$m.bench"
    pp=$(awk '/^prompt:/ {print $2}' "$W/$m.bench")
    tg=$(awk '/^generation:/ {print $2}' "$W/$m.bench")
    size=$(du -m "$f" | cut -f1)
    printf '%-14s %6s MB | %10.1f %10.1f %7s | %10.2f %10.2f %7s\n' "$m" "$size" "$pp_pred" "$pp" \
        "$(pct "$pp_pred" "$pp")" "$tg_pred" "$tg" "$(pct "$tg_pred" "$tg")"
done

echo
echo "== train (fine-tune of models/default.gguf, batch 4 x 128 tokens)"
"$GROK" plan train --model "$SRC/models/default.gguf" --fleet "1x$W/this.preset" --tokens 1e6 \
    --seq 128 --step-tokens 512 --pue 1 --json >"$W/train.json"
tr_pred=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['measured_tokens_per_s'])" "$W/train.json")
rm -rf "$W/tr"
"$GROK" train --init "$SRC/models/default.gguf" --data "$SRC/../shared/spec/grok-models.md" \
    "$SRC/../shared/DESIGN.md" "$SRC/README.md" -o "$W/tr" --steps 20 --batch 4 --ctx 128 \
    --log-every 2 --eval-every 100000 --save-every 100000 --val-frac 0.01 -t "$T" >"$W/train.log" 2>&1
# mean of the logged rates after the first two (warm-up)
tr=$(awk '/tok\/s/ {for (i=1;i<=NF;i++) if ($i=="tok/s") {n++; if (n>2) {s+=$(i-1); k++}}} END {print s/k}' "$W/train.log")
printf '%-14s %10s %10s %7s\n' "" predicted measured diff
printf '%-14s %10.0f %10.0f %7s\n' "grok train" "$tr_pred" "$tr" "$(pct "$tr_pred" "$tr")"
# where the predicted step time goes
"$GROK" plan train --model "$SRC/models/default.gguf" --fleet "1x$W/this.preset" --tokens 1e6 \
    --seq 128 --step-tokens 512 --pue 1 | grep -A1 "measured rates"
echo "(work files in $W)"
