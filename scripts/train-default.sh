#!/usr/bin/env bash
# Trains the default model shipped in models/default.gguf (recipe: models/README.md).
#   scripts/train-default.sh [OUT]     (default build/default-run)
# Builds the corpus (scripts/make-corpus.sh), trains a 4096-token SentencePiece BPE
# vocabulary with spm_train and a small Grok-2-architecture model on 2 threads,
# then copies the final model to models/default.gguf.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/default-run}
GROK=${GROK:-./build/grok}
STEPS=${STEPS:-2000}
THREADS=${THREADS:-2}
[ -f build/corpus/sotu.txt ] || ./scripts/make-corpus.sh build/corpus
mkdir -p "$OUT"
nice -n 10 "$GROK" train --data build/corpus/sotu.txt build/corpus/brown.txt \
  --config "variant=grok2,layers=4,dim=128,heads=4,kv_heads=2,ff=256,ff_exp=256,experts=8,experts_used=2,ctx=512" \
  --vocab 4096 --steps "$STEPS" --batch 8 --ctx 256 --lr 2e-3 --min-lr 2e-4 --warmup 100 \
  --wd 0.1 --clip 1.0 --aux 0.01 --seed 1 --eval-every 250 --save-every 250 --log-every 25 \
  --val-tokens 32768 --name "grok.c default (Grok-2 architecture, 4 layers, d=128, 8 experts)" \
  --threads "$THREADS" -o "$OUT" ${EXTRA:-}
cp "$OUT/model.gguf" models/default.gguf
