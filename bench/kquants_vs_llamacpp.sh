#!/bin/sh
# Manual check (not part of make test): logits of grok and llama.cpp on the same
# k-quant files, 64-token random prompt, llamacpp numerics: top-1 agreement and
# max_v|grok - llama.cpp| / (1 + max|logit|) per position. Files: the fixtures
# llama.cpp's quantizer wrote (tests/fixtures/llamacpp) and grok quantize's own
# q4_k_m / q6_k of the wide Grok-1/Grok-2 reference models (plus their f32 source
# as the baseline of engine-vs-engine differences).
#
# Usage: bench/kquants_vs_llamacpp.sh LLAMA_CPP_DIR [GROK_BUILD_DIR]
#        (LLAMA_CPP_DIR holds include/, ggml/include, gguf-py/ and build/bin/libllama.so)
set -eu
LL=${1:?usage: $0 LLAMA_CPP_DIR [GROK_BUILD_DIR]}
GB=${2:-build}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cc -O1 -I"$LL/include" -I"$LL/ggml/include" "$HERE/bench/llamacpp_logits.c" -L"$LL/build/bin" \
   -lllama -lggml -lggml-base -Wl,-rpath,"$LL/build/bin" -o "$T/llamacpp_logits"
for f in "$HERE"/tests/fixtures/llamacpp/*.gguf; do
    $PY "$HERE/bench/gguf_add_no_vocab.py" "$LL" "$f" "$T/$(basename "$f")" >/dev/null
done
for kind in grok1 grok2; do
    $PY "$HERE/tests/reference/make_model.py" "$T/$kind-f32.gguf" --kind $kind --wide
    for mix in q4_k_m q6_k; do
        "$GB/grok" quantize "$T/$kind-f32.gguf" "$T/$kind-grok-$mix.gguf" $mix -q --quantize-embedding
    done
    for f in "$T/$kind-f32.gguf" "$T/$kind-grok-q4_k_m.gguf" "$T/$kind-grok-q6_k.gguf"; do
        $PY "$HERE/bench/gguf_add_no_vocab.py" "$LL" "$f" "$T/v-$(basename "$f")" >/dev/null
    done
done
$PY - "$GB/grok" "$T/llamacpp_logits" "$T"/grok1-small-*.gguf "$T"/v-*.gguf <<'PYEOF'
import os, subprocess, sys
import numpy as np
grok, ll, files = sys.argv[1], sys.argv[2], sys.argv[3:]
for path in files:
    nv = 512 if "small" in path else 1280
    toks = ",".join(map(str, np.random.default_rng(11).integers(0, nv, 64)))
    a_out, b_out = path + ".ll.f32", path + ".gk.f32"
    subprocess.run([ll, path, toks, a_out], check=True, capture_output=True)
    subprocess.run([grok, "run", "-m", path, "--tokens", toks, "-n", "0", "--numerics", "llamacpp",
                    "--dump-logits", b_out, "--threads", "2"], check=True, capture_output=True)
    a = np.fromfile(a_out, "<f4").reshape(64, -1)
    b = np.fromfile(b_out, "<f4").reshape(64, -1)
    e = np.abs(a - b).max(1) / (1 + np.abs(a).max())
    print(f"{os.path.basename(path):28s} top-1 agreement {np.mean(a.argmax(1) == b.argmax(1)):6.1%}  "
          f"error median {np.median(e):.2e} max {e.max():.2e}")
PYEOF
