#!/bin/sh
# run_rss.sh - peak RSS of `grok run` on a model of at least 500 MB, against the
# budget of the engine-core issue: file size + KV cache + 64 MiB (weights are
# mapped, not copied). Also prints `grok bench` on the same model.
#
# usage: bench/run_rss.sh [GROK] [TYPE] [WORKDIR]
#   GROK default build/grok; TYPE default q8_0 (f32 makes a 2.3 GB file);
#   WORKDIR default a fresh folder under /tmp, deleted at the end.
set -eu
GROK=${1:-build/grok}
TYPE=${2:-q8_0}
WORK=${3:-$(mktemp -d /tmp/grok-run-rss.XXXXXX)}
HERE=$(cd "$(dirname "$0")" && pwd)
trap 'rm -rf "$WORK"' EXIT
CTX=512

echo "writing a random Grok-2-shaped model ($TYPE) ..."
/usr/bin/python3 "$HERE/make_bench_model.py" "$WORK/m.gguf" --type "$TYPE"
size=$(stat -c %s "$WORK/m.gguf")
/usr/bin/time -v "$GROK" run -m "$WORK/m.gguf" --tokens 1,2,3,4,5,6,7,8,9,10 -n 64 -c $CTX \
    --temp 0 -v >/dev/null 2>"$WORK/time.txt" || { cat "$WORK/time.txt"; exit 1; }
rss_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$WORK/time.txt")
# KV cache: 2 (K, V) x layers x ctx x kv_heads x head_dim x 4 bytes (make_bench_model.py defaults)
kv=$((2 * 8 * CTX * 2 * 128 * 4))
budget=$((size + kv + 64 * 1048576))
printf 'file %d MiB, KV cache %d MiB, peak RSS %d MiB, budget %d MiB: %s\n' \
    $((size / 1048576)) $((kv / 1048576)) $((rss_kb / 1024)) $((budget / 1048576)) \
    "$([ $((rss_kb * 1024)) -le $budget ] && echo within || echo OVER)"
grep 'tok/s' "$WORK/time.txt" || true
"$GROK" bench -m "$WORK/m.gguf"
