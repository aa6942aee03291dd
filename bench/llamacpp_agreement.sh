#!/bin/sh
# Manual check (not part of make test): grok and llama.cpp on the same quantized files
# of a trained model, with real text. The shipped default model (d = 128) is widened
# exactly to d = 256 and heads of 64 (bench/widen_model.py: zero padding that computes
# the same function), so that every weight can be a k-quant; llama-quantize writes
# each type from it (the IQ types with an importance matrix from llama-imatrix over
# this repository's docs), and grok quantize writes its own q4_k_m and q6_k. Both
# engines then give the logits of every position of 8 windows of 64 tokens of text;
# the script prints top-1 agreement and max_v|grok - llama.cpp| / (1 + max|logit|)
# per position (median and max). grok runs in llamacpp numerics.
#
# Usage: bench/llamacpp_agreement.sh LLAMA_CPP_DIR [GROK_BUILD_DIR]
#        (LLAMA_CPP_DIR holds include/, ggml/include, gguf-py/ and build/bin with
#        libllama.so, llama-quantize and llama-imatrix)
#        NOREPACK=1: llama.cpp without its repacked weight layouts (plain vec dots)
set -eu
LL=${1:?usage: $0 LLAMA_CPP_DIR [GROK_BUILD_DIR]}
GB=$(cd "${2:-build}" && pwd)
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cc -O1 -I"$LL/include" -I"$LL/ggml/include" "$HERE/bench/llamacpp_logits.c" -L"$LL/build/bin" \
   -lllama -lggml -lggml-base -Wl,-rpath,"$LL/build/bin" -o "$T/llamacpp_logits"
$PY "$HERE/bench/widen_model.py" "$LL" "$HERE/models/default.gguf" "$T/wide-f32.gguf" \
    --width 256 --head-dim 64 >/dev/null
cat "$HERE"/README.md "$HERE"/docs/*.md >"$T/text.txt"
"$LL/build/bin/llama-imatrix" -m "$T/wide-f32.gguf" -f "$T/text.txt" -o "$T/imatrix.gguf" \
    -c 256 -t 2 >"$T/imatrix.log" 2>&1 || { tail -5 "$T/imatrix.log"; exit 1; }
files="$T/wide-f32.gguf"
for t in Q8_0 Q4_0 Q4_K_M Q5_K_M Q6_K Q3_K_M Q2_K IQ4_XS IQ4_NL IQ3_M IQ3_S IQ3_XXS IQ2_M IQ2_S \
    IQ2_XS IQ2_XXS IQ1_M IQ1_S; do
    "$LL/build/bin/llama-quantize" --imatrix "$T/imatrix.gguf" "$T/wide-f32.gguf" \
        "$T/llama-$t.gguf" $t 2 >"$T/q.log" 2>&1 || { tail -5 "$T/q.log"; exit 1; }
    files="$files $T/llama-$t.gguf"
done
for mix in q4_k_m q6_k; do
    "$GB/grok" quantize "$T/wide-f32.gguf" "$T/grok-$mix.gguf" $mix -q
    files="$files $T/grok-$mix.gguf"
done
"$GB/grok" tokenize -m "$T/wide-f32.gguf" --ids-only <"$T/text.txt" >"$T/ids.txt"
# shellcheck disable=SC2086
$PY - "$GB/grok" "$T/llamacpp_logits" "$T/ids.txt" $files <<'PYEOF'
import os, subprocess, sys
import numpy as np
grok, ll, ids_path, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
ids = np.array(open(ids_path).read().replace(",", " ").split(), dtype=int)
starts = np.random.default_rng(5).integers(0, len(ids) - 64, 8)
print(f"{'file':20s} {'top-1':>16s} {'error median':>13s} {'max':>9s}")
for path in files:
    agree, errs = 0, []
    for s in starts:
        toks = ",".join(map(str, ids[s:s + 64]))
        a_out, b_out = path + ".ll.f32", path + ".gk.f32"
        subprocess.run([ll, path, toks, a_out], check=True, capture_output=True)
        subprocess.run([grok, "run", "-m", path, "--tokens", toks, "-n", "0", "--numerics", "llamacpp",
                        "--dump-logits", b_out, "--threads", "2"], check=True, capture_output=True)
        a = np.fromfile(a_out, "<f4").reshape(64, -1)
        b = np.fromfile(b_out, "<f4").reshape(64, -1)
        errs.append(np.abs(a - b).max(1) / (1 + np.abs(a).max()))
        agree += int(np.sum(a.argmax(1) == b.argmax(1)))
    e = np.concatenate(errs)
    n = 64 * len(starts)
    print(f"{os.path.basename(path):20s} {agree / n:7.1%} ({agree}/{n}) {np.median(e):13.2e} {e.max():9.2e}",
          flush=True)
PYEOF
