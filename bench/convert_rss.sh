#!/bin/sh
# convert_rss.sh - peak RSS and throughput of `grok convert` (and `grok quantize`)
# on a checkpoint of at least GIB GiB in the release's layout (random weights).
# The issue asks for a peak RSS under 2 GiB whatever the model's size.
#
# usage: bench/convert_rss.sh [GROK] [GIB] [WORKDIR]
#   GROK     the binary (default build/grok); GIB default 4.2; WORKDIR default a
#   fresh folder under /tmp. Needs about 3 x GIB GiB of free disk; everything
#   is deleted at the end.
set -eu
GROK=${1:-build/grok}
GIB=${2:-4.2}
WORK=${3:-$(mktemp -d /tmp/grok-convert-rss.XXXXXX)}
HERE=$(cd "$(dirname "$0")" && pwd)
trap 'rm -rf "$WORK"' EXIT

echo "writing a ${GIB} GiB checkpoint to $WORK/ck ..."
/usr/bin/python3 "$HERE/../tests/convert/make_checkpoint.py" "$WORK/ck" --size big --gib "$GIB"
du -sh "$WORK/ck"

run() { # label, command...
    label=$1
    shift
    /usr/bin/time -v "$@" 2>"$WORK/time.txt" || { cat "$WORK/time.txt"; exit 1; }
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$WORK/time.txt")
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$WORK/time.txt")
    printf '%-22s peak RSS %6d MiB   wall %s\n' "$label" $((rss / 1024)) "$wall"
    grep -E '^grok convert:' "$WORK/time.txt" || true
}
for t in bf16 q8_0 q4_0; do
    run "convert --type $t" "$GROK" convert "$WORK/ck" -o "$WORK/out-$t.gguf" --type "$t"
    [ "$t" = bf16 ] || rm -f "$WORK/out-$t.gguf"
done
run "quantize bf16 -> q4_0" "$GROK" quantize "$WORK/out-bf16.gguf" "$WORK/q4.gguf" q4_0 -q
