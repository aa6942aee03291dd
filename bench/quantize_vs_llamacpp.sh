#!/bin/sh
# Manual check (not part of make test): `grok quantize` with llama.cpp's mixes
# writes the same tensor types and the same bytes as `llama-quantize` (no
# importance matrix), on the wide Grok-1 and Grok-2 reference models. The token
# embedding is compared with --quantize-embedding (grok keeps it by default).
#
# Usage: bench/quantize_vs_llamacpp.sh LLAMA_CPP_BUILD_DIR [GROK_BUILD_DIR]
set -eu
LL=${1:?usage: $0 LLAMA_CPP_BUILD_DIR [GROK_BUILD_DIR]}
GB=${2:-build}
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
HERE=$(cd "$(dirname "$0")/.." && pwd)
export HERE
for kind in grok1 grok2; do
    $PY "$HERE/tests/reference/make_model.py" "$T/$kind.gguf" --kind $kind --wide
    for mix in q2_k:Q2_K q3_k_m:Q3_K_M q4_k_m:Q4_K_M q5_k_m:Q5_K_M q6_k:Q6_K; do
        g=${mix%%:*}; l=${mix##*:}
        "$GB/grok" quantize "$T/$kind.gguf" "$T/$kind-grok-$g.gguf" $g -q --quantize-embedding
        "$LL/bin/llama-quantize" "$T/$kind.gguf" "$T/$kind-llama-$g.gguf" $l 2 >/dev/null 2>&1
        printf '%s %-7s ' $kind $g
        $PY - "$T/$kind-grok-$g.gguf" "$T/$kind-llama-$g.gguf" <<'PYEOF'
import os
import sys
sys.path.insert(0, os.path.join(os.environ.get("HERE", "."), "tests", "reference"))
import gguf_reader
a, b = gguf_reader.GGUFFile(sys.argv[1]), gguf_reader.GGUFFile(sys.argv[2])
types = sum(a.tensors[n].type != b.tensors[n].type for n in a.tensors)
data = sum(bytes(a.raw(n)) != bytes(b.raw(n)) for n in a.tensors)
print(f"{len(a.tensors)} tensors: {types} with another type, {data} with other bytes")
PYEOF
    done
done
