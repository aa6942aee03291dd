#!/bin/bash
# plan_vs_measured.sh - grok plan's predictions for this machine against what grok
# measures, side by side: `grok bench` prompt and generation tokens/s for three
# models of different size and weight type, `grok train` tokens/s, and the per-rank
# peak memory of tensor-parallel runs.
#
#   bench/plan_vs_measured.sh [BUILD_DIR] [WORK_DIR]
#
# 1. Three Grok-architecture models (made once, outside the lock): f16 (~160 MB,
#    Grok-2 shape), q8_0 (~330 MB, Grok-2 shape with 4 KV heads, by `grok quantize`
#    from f16) and q4_0 (~380 MB, Grok-1 shape, by `grok quantize` from f16).
# 2. Before each measurement, in the same hold of the lock (so that both sides see the
#    same share of shared cores), `grok plan calibrate --types f32,f16,TYPE` measures
#    this machine into a preset file: memory bandwidth; gk_matmul per weight type at
#    batch 1 by matrix size and at T = 8..512 tokens by row length; the f32 dot, the
#    training GEMM, expf/erff/tanhf, an elementwise pass, a pool step; under
#    mpirun -np 2 also the MPI link and the resident size of a started process.
# 3. For each model: `grok bench` after its calibration, then `grok plan infer
#    --fleet 1x<preset>` with the same prompt length, batch and generated tokens.
# 4. `grok plan train` (measured rates) against a short `grok train` fine-tune of
#    the shipped default model, after its own calibration.
# 5. Tensor parallel memory: `grok plan infer --fleet Nx<preset> --tp N` against the
#    peak RSS (/usr/bin/time) of every rank of `mpirun -np N grok run` (1 thread each).
# Goals (issue 10): within 15 % for bench, 20 % for train, 10 % for the memory.
# Every timing step runs under the lock /tmp/bench.lock (one at a time, each < 1 min).
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
B=${1:-$SRC/build}
W=${2:-$(mktemp -d /tmp/gk_pvm.XXXXXX)}
GROK=$B/grok
PY=/usr/bin/python3
mkdir -p "$W"
P=512; N=32; BATCH=512; T=${GK_THREADS:-$(nproc)}
MPIRUN=$(command -v mpirun || true)
MPI=()
[ -n "$MPIRUN" ] && MPI=("$MPIRUN" --allow-run-as-root --oversubscribe)

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== models"
mk() { # name type shape-args...
    local out=$1 type=$2
    shift 2
    [ -f "$W/$out.gguf" ] && return 0
    $PY "$SRC/bench/make_bench_model.py" "$W/$out.f16.gguf" --type f16 "$@" >/dev/null
    if [ "$type" = f16 ]; then
        mv "$W/$out.f16.gguf" "$W/$out.gguf"
    else
        "$GROK" quantize "$W/$out.f16.gguf" "$W/$out.gguf" "$type" -q
        rm -f "$W/$out.f16.gguf"
    fi
}
mk a_f16 f16 --embd 512 --layers 4 --heads 8 --kv-heads 2 --ff 2048 --ff-exp 1024 --vocab 16384 --ctx 2048
mk b_q8_0 q8_0 --embd 1024 --layers 4 --heads 8 --kv-heads 4 --ff 4096 --ff-exp 2048 --vocab 16384 --ctx 2048
mk c_q4_0 q4_0 --embd 1024 --layers 6 --heads 8 --kv-heads 2 --ff 0 --ff-exp 4096 --vocab 16384 --ctx 2048

# Calibrate right before each measurement, in the same hold of the lock, so that both
# sides see the same share of the cores (types: the model's own, f16 for an output, f32).
CAL=("$GROK" plan calibrate -t "$T")
[ -n "$MPIRUN" ] && CAL=("${MPI[@]}" -np 2 "${CAL[@]}")
# paired PRESET TYPES OUT_FILE COMMAND...: calibrate into PRESET, then COMMAND > OUT_FILE
paired() {
    local preset=$1 types=$2 out=$3
    shift 3
    (
        flock 9
        "${CAL[@]}" --types "$types" -o "$preset" >"$preset.log" 2>&1
        "$@" >"$out" 2>&1
    ) 9>/tmp/bench.lock
}

json() { $PY -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['splits'][0][sys.argv[2]])" "$@"; }
pct() { $PY -c "import sys; p,m=float(sys.argv[1]),float(sys.argv[2]); print('%+.1f%%' % (100*(p/m-1)))" "$1" "$2"; }

echo "== bench (each after its own calibration)"
rows=()
for m in a_f16 b_q8_0 c_q4_0; do
    f=$W/$m.gguf
    paired "$W/$m.preset" "f32,f16,${m#*_}" "$W/$m.bench" \
        "$GROK" bench -m "$f" -p $P -n $N -b $BATCH -t "$T" -r 2
    "$GROK" plan infer --model "$f" --fleet "1x$W/$m.preset" --prompt $P --gen $N --batch $BATCH \
        --ctx $((P + N)) --json >"$W/$m.json"
    pp_pred=$(json "$W/$m.json" prompt_tps)
    tg_pred=$(json "$W/$m.json" gen_tps)
    pp=$(awk '/^prompt:/ {print $2}' "$W/$m.bench")
    tg=$(awk '/^generation:/ {print $2}' "$W/$m.bench")
    size=$(du -m "$f" | cut -f1)
    rows+=("$(printf '%-14s %6s MB | %10.1f %10.1f %7s | %10.2f %10.2f %7s' "$m" "$size" "$pp_pred" \
        "$pp" "$(pct "$pp_pred" "$pp")" "$tg_pred" "$tg" "$(pct "$tg_pred" "$tg")")")
done

echo "== train (fine-tune of models/default.gguf, batch 4 x 128 tokens)"
rm -rf "$W/tr"
paired "$W/train.preset" f32 "$W/train.log" \
    "$GROK" train --init "$SRC/models/default.gguf" --data "$SRC/../shared/spec/grok-models.md" \
    "$SRC/../shared/DESIGN.md" "$SRC/README.md" -o "$W/tr" --steps 20 --batch 4 --ctx 128 \
    --log-every 2 --eval-every 100000 --save-every 100000 --val-frac 0.01 -t "$T"
"$GROK" plan train --model "$SRC/models/default.gguf" --fleet "1x$W/train.preset" --tokens 1e6 \
    --seq 128 --step-tokens 512 --pue 1 --json >"$W/train.json"
tr_pred=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['measured_tokens_per_s'])" "$W/train.json")
# mean of the logged rates after the first two (warm-up)
tr=$(awk '/tok\/s/ {for (i=1;i<=NF;i++) if ($i=="tok/s") {n++; if (n>2) {s+=$(i-1); k++}}} END {print s/k}' "$W/train.log")

memrows=()
if [ -n "$MPIRUN" ]; then
    echo "== tensor-parallel memory (b_q8_0, 1 thread per rank; not timed)"
    TP_P=64; TP_N=16
    toks=$(seq -s, 1 $TP_P)
    for np in 1 2 4; do
        "$GROK" plan infer --model "$W/b_q8_0.gguf" --fleet "${np}x$W/b_q8_0.preset" --tp $np \
            --ctx $((TP_P + TP_N)) --batch $TP_P -t 1 --json >"$W/tp$np.json"
        pred=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['splits'][0]['rank_mem']['total'])" "$W/tp$np.json")
        rm -f "$W"/rss.*
        "${MPI[@]}" -np $np sh -c '/usr/bin/time -f %M -o "$0/rss.$OMPI_COMM_WORLD_RANK" "$@" >/dev/null 2>&1' \
            "$W" "$GROK" run -m "$W/b_q8_0.gguf" --tokens "$toks" -n $TP_N -t 1 -c $((TP_P + TP_N)) -b $TP_P
        meas=$(cat "$W"/rss.* | sort -n | tail -1)
        all=$(cat "$W"/rss.* | sort -n | awk '{printf "%s%.0f", (NR>1?"/":""), $1/1024}')
        memrows+=("$(printf '%-14s %4d | %10.1f %10.1f %7s   (all ranks MiB: %s)' b_q8_0 $np \
            "$($PY -c "print($pred/2**20)")" "$($PY -c "print($meas/1024)")" \
            "$(pct "$pred" "$((meas * 1024))")" "$all")")
    done
fi

echo
echo "load average at the start: $LOAD0; at the end: $(cut -d' ' -f1-3 /proc/loadavg) (both sides are"
echo "measurements of shared cores: compare them only when the load is low and steady)"
echo "grok bench -p $P -n $N -b $BATCH -t $T -r 2 against grok plan infer --fleet 1x$W/MODEL.preset --prompt $P --gen $N --batch $BATCH --ctx $((P + N))"
echo "(MODEL.preset: ${CAL[*]} --types f32,f16,TYPE, just before the bench in the same hold of the lock)"
printf '%-14s %9s | %10s %10s %7s | %10s %10s %7s\n' model size "prompt pred" measured diff \
    "gen pred" measured diff
printf '%s\n' "${rows[@]}"
echo
printf '%-14s %10s %10s %7s\n' "" predicted measured diff
printf '%-14s %10.0f %10.0f %7s\n' "grok train" "$tr_pred" "$tr" "$(pct "$tr_pred" "$tr")"
# where the predicted step time goes
"$GROK" plan train --model "$SRC/models/default.gguf" --fleet "1x$W/train.preset" --tokens 1e6 \
    --seq 128 --step-tokens 512 --pue 1 | grep -A1 "measured rates"
if [ ${#memrows[@]} -gt 0 ]; then
    echo
    echo "peak RSS of rank 0 (the busiest): mpirun -np N grok run --tokens 1..$TP_P -n $TP_N -t 1 -c $((TP_P + TP_N)) -b $TP_P"
    printf '%-14s %4s | %10s %10s %7s\n' model np "pred MiB" "meas MiB" diff
    printf '%s\n' "${memrows[@]}"
fi
echo "(work files in $W)"
