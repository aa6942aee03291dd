"""Widens a trained f32 Grok GGUF to a model width that k-quants can store (rows of
256), computing the same function: the new embedding columns are zero and stay zero
through every layer, so a k-quant check can run on a model with real, peaked logits
(bench/kquants_vs_llamacpp.sh) instead of a random one, whose near-flat logits make
top-1 agreement a coin toss at near-ties.

How it stays exact: the residual stream x becomes [x, 0]. Every matrix that reads the
stream (attn_q/k/v, the router, ffn_gate/up and their experts, output) gets zero
columns for the new inputs; every matrix that writes it (attn_output, ffn_down and
its experts) gets zero rows. RMSNorm over the wider vector divides by
sqrt(mean) over d' = d * s elements, which is the old rms / sqrt(s), so each norm
weight is multiplied by 1 / sqrt(s) (and is 0 on the new elements). The attention
heads, expert widths and everything else keep their sizes. Up to float rounding of
those scaled norm weights the logits are the original model's.

--head-dim H (a multiple m of the head size) pads each attention head too (so that
attn_output's rows, of n_head x head_dim, can be k-quants): the new dimensions of q, k
and v are zero, so q.k and the weighted sum of v are unchanged. RoPE (NeoX pairs i and
i + n/2 at angle pos * base^(-2i/n), over the whole head, which llama.cpp requires for
Grok) keeps each old pair's angle when old dimension i goes to i*m and i + hd/2 to
i*m + H/2: the angle base^(-2(i*m)/H) is base^(-2i/hd). The attention scale is a key
of its own (grok.attention.output_scale), not derived from the head size.

Usage: widen_model.py LLAMA_CPP_DIR IN.gguf OUT.gguf [--width N] [--head-dim H]
"""
import argparse
import os
import sys

ap = argparse.ArgumentParser()
ap.add_argument("llama_cpp_dir")
ap.add_argument("inp")
ap.add_argument("out")
ap.add_argument("--width", type=int, default=256)
ap.add_argument("--head-dim", type=int, default=0)
a = ap.parse_args()
sys.path.insert(0, os.path.join(a.llama_cpp_dir, "gguf-py"))
import gguf  # noqa: E402
import numpy as np  # noqa: E402

r = gguf.GGUFReader(a.inp)
d = int(r.fields["grok.embedding_length"].contents())
D = a.width
if D < d:
    raise SystemExit(f"--width {D} is below the model's width {d}")
norm_scale = np.float32(np.sqrt(d / D))
hd = int(r.fields["grok.attention.key_length"].contents())
HD = a.head_dim or hd
n_rot = int(r.fields["grok.rope.dimension_count"].contents()) if "grok.rope.dimension_count" in r.fields else hd
if HD % hd or int(r.fields["grok.attention.value_length"].contents()) != hd or n_rot != hd:
    raise SystemExit(f"--head-dim {HD}: needs a multiple of the key/value length {hd}, "
                     f"rotated whole (n_rot {n_rot})")
m = HD // hd
new_dim = np.concatenate([np.arange(hd // 2) * m, np.arange(hd // 2) * m + HD // 2])


def pad_heads(x, axis):
    """Each head's hd entries along axis become HD: old entry i goes to new_dim[i]."""
    x = np.moveaxis(x, axis, -1)
    n = x.shape[-1] // hd
    y = np.zeros(x.shape[:-1] + (n, HD), np.float32)
    y[..., new_dim] = x.reshape(x.shape[:-1] + (n, hd))
    return np.moveaxis(y.reshape(x.shape[:-1] + (n * HD,)), -1, axis)


w = gguf.GGUFWriter(a.out, arch="grok")
for k, f in r.fields.items():
    if k.startswith("GGUF.") or k == "general.architecture":
        continue
    v = f.contents()
    if k == "grok.embedding_length":
        v = D
    if k in ("grok.attention.key_length", "grok.attention.value_length", "grok.rope.dimension_count"):
        v = HD
    sub = f.types[1] if len(f.types) > 1 else None
    w.add_key_value(k, v, f.types[0], sub)

READS = ("attn_q", "attn_k", "attn_v", "ffn_gate_inp", "ffn_gate", "ffn_up", "ffn_gate_exps",
         "ffn_up_exps", "output", "token_embd")
WRITES = ("attn_output", "ffn_down", "ffn_down_exps")
for t in r.tensors:
    if t.tensor_type != gguf.GGMLQuantizationType.F32:
        raise SystemExit(f"{t.name} is {t.tensor_type.name}; widen an f32 model")
    x = np.asarray(t.data, dtype=np.float32)        # numpy layout: last axis = ne0
    base = t.name.split(".")[-2] if t.name.count(".") >= 2 else t.name.split(".")[0]
    if base in ("attn_q", "attn_k", "attn_v"):
        x = pad_heads(x, 0)                         # rows = heads x head_dim
    elif base == "attn_output":
        x = pad_heads(x, 1)                         # columns = heads x head_dim
    if x.ndim == 1 and x.shape[0] == d and t.name.endswith("norm.weight"):
        y = np.zeros(D, np.float32)
        y[:d] = x * norm_scale
    elif base in READS and x.shape[-1] == d:        # columns = inputs (or the embedding row)
        y = np.zeros(x.shape[:-1] + (D,), np.float32)
        y[..., :d] = x
    elif base in WRITES and x.shape[-2] == d:       # rows = outputs into the stream
        y = np.zeros(x.shape[:-2] + (D, x.shape[-1]), np.float32)
        y[..., :d, :] = x
    else:
        raise SystemExit(f"{t.name} {x.shape}: not a tensor this script knows how to widen")
    w.add_tensor(t.name, y)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(f"{a.out}: width {d} -> {D}")
