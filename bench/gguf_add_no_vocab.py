"""Copies a test GGUF adding tokenizer.ggml.model = "none" and grok.vocab_size, so
that llama.cpp loads a model without a tokenizer (bench/kquants_vs_llamacpp.sh).

Usage: gguf_add_no_vocab.py LLAMA_CPP_DIR IN.gguf OUT.gguf   (uses LLAMA_CPP_DIR/gguf-py)
"""
import os
import sys
sys.path.insert(0, os.path.join(sys.argv[1], 'gguf-py'))
sys.argv = sys.argv[1:]
import gguf, numpy as np
r = gguf.GGUFReader(sys.argv[1])
w = gguf.GGUFWriter(sys.argv[2], arch='grok')
for k, f in r.fields.items():
    if k.startswith('GGUF.') or k == 'general.architecture': continue
    t = f.types[0]
    if t == gguf.GGUFValueType.STRING:
        w.add_string(k, bytes(f.parts[f.data[0]]).decode())
    elif t == gguf.GGUFValueType.UINT32: w.add_uint32(k, int(f.parts[f.data[0]][0]))
    elif t == gguf.GGUFValueType.FLOAT32: w.add_float32(k, float(f.parts[f.data[0]][0]))
    else: raise SystemExit(f"type {t} for {k}")
nv = [t for t in r.tensors if t.name == 'token_embd.weight'][0].shape[1]
w.add_string('tokenizer.ggml.model', 'none')
w.add_uint32('grok.vocab_size', int(nv))
for t in r.tensors:
    d = np.asarray(t.data)
    w.add_tensor(t.name, d, raw_shape=None if t.tensor_type > 1 else list(reversed([int(x) for x in t.shape])), raw_dtype=t.tensor_type)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
print('vocab', nv)
