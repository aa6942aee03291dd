#!/bin/sh
# serve_bench.sh - grok serve under load, and llama-server beside it when given:
# aggregate generation tokens/s and time to first token (p50, p99) at 1, 4 and
# 16 concurrent clients (bench/serve_bench.mjs), on one random Grok-2 model of
# about 591M parameters (bench/make_bench_model.py, Q8_0: 8 experts, top-2)
# that carries a SentencePiece vocabulary, with the same slot count for both
# servers. Its vocabulary is bytes only, so a prompt costs one token per byte:
# 16 words are ~100 prompt tokens, and at MAX_TOKENS 32 prefill (compute bound,
# linear in the clients) is a large part of each client's time; the decode step
# alone is bench/decode_batch_bench.c.
#
# usage: bench/serve_bench.sh [GROK] [LLAMA_SERVER] [SLOTS]
#   GROK default build/grok; LLAMA_SERVER default none (e.g.
#   /work/llama.cpp/build/bin/llama-server); SLOTS default 16.
# Environment: REQUESTS (per client, default 2), MAX_TOKENS (default 32),
# PROMPT_WORDS (default 16), TEMPERATURE (default 0: greedy; chat clients
# sample, OpenAI's default is 1), CLIENTS (default 1,4,16), MODEL (an existing
# GGUF to serve instead of making one, e.g. /tmp/gemm-bench/v-q8_0.gguf).
set -eu
GROK=${1:-build/grok}
LLAMA=${2:-}
SLOTS=${3:-16}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/grok-serve-bench.XXXXXX)
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
if [ -z "${MODEL:-}" ]; then
  MODEL=$WORK/bench.gguf
  # make_bench_model.py writes a SentencePiece vocabulary with byte fallback, so
  # both servers tokenize any prompt the same way
  /usr/bin/python3 "$HERE/make_bench_model.py" "$MODEL" --type q8_0 >/dev/null
fi
ls -la "$MODEL"
ARGS="--clients ${CLIENTS:-1,4,16} --requests ${REQUESTS:-2} --max-tokens ${MAX_TOKENS:-32} --prompt-words ${PROMPT_WORDS:-16} --temperature ${TEMPERATURE:-0}"

wait_up() { # url
  i=0
  until curl -sf "$1/health" >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 600 ] || { echo "server did not come up"; exit 1; }; sleep 0.5
  done
}

echo "== grok serve ($SLOTS slots)"
"$GROK" serve -m "$MODEL" --port 8391 -np "$SLOTS" -c 512 2>"$WORK/grok.log" &
PID=$!
wait_up http://127.0.0.1:8391
node "$HERE/serve_bench.mjs" http://127.0.0.1:8391 $ARGS
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=

if [ -n "$LLAMA" ]; then
  echo "== llama-server ($SLOTS slots)"
  "$LLAMA" -m "$MODEL" --port 8392 -np "$SLOTS" -c $((512 * SLOTS)) --no-warmup 2>"$WORK/llama.log" &
  PID=$!
  wait_up http://127.0.0.1:8392 || { tail -20 "$WORK/llama.log"; exit 1; }
  node "$HERE/serve_bench.mjs" http://127.0.0.1:8392 $ARGS
fi
