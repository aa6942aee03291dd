"""Writes the seed inputs of the GGUF-based fuzz targets (seeded, deterministic).

  tests/fuzz/corpus/gguf/kern-<type>.gguf   one tensor of every ggml block type,
      five rows of random bytes (a type's kernels run on them once its entry in
      the traits table has them; until then they are parser seeds)
  tests/fuzz/corpus/model/<kind>-<type>.gguf   tiny Grok-1 and Grok-2 models that
      load and run (n_embd 32, one block, two experts, vocabulary 4), a few KB each
  tests/fuzz/corpus/model/grok1-<iq type>.gguf   tiny Grok-1 models whose matrices
      that read the residual stream are IQ2_XS, IQ2_S or IQ1_M blocks (n_embd 256,
      the least whole block; one head of 32, one expert of 32, the rest q4_0 and f16):
      the forward pass runs their dots; under 32 KB (fuzz_model's max_len)
  tests/fuzz/corpus/shard/<kind>-<type>-rank-R-of-N.gguf   (with --grok) the
      per-rank files `grok shard` writes of such models with 4 KV heads

Usage: /usr/bin/python3 tests/fuzz/make_seeds.py [--out tests/fuzz/corpus] [--grok build/grok]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import gguf_writer as gw  # noqa: E402

# ggml block types: id -> (name, elements per block, bytes per block)
BLOCK_TYPES = {
    0: ("f32", 1, 4), 1: ("f16", 1, 2), 2: ("q4_0", 32, 18), 3: ("q4_1", 32, 20),
    6: ("q5_0", 32, 22), 7: ("q5_1", 32, 24), 8: ("q8_0", 32, 34), 9: ("q8_1", 32, 36),
    10: ("q2_k", 256, 84), 11: ("q3_k", 256, 110), 12: ("q4_k", 256, 144),
    13: ("q5_k", 256, 176), 14: ("q6_k", 256, 210), 15: ("q8_k", 256, 292),
    16: ("iq2_xxs", 256, 66), 17: ("iq2_xs", 256, 74), 18: ("iq3_xxs", 256, 98),
    19: ("iq1_s", 256, 50), 20: ("iq4_nl", 32, 18), 21: ("iq3_s", 256, 110),
    22: ("iq2_s", 256, 82), 23: ("iq4_xs", 256, 136), 29: ("iq1_m", 256, 56),
    30: ("bf16", 1, 2), 34: ("tq1_0", 256, 54), 35: ("tq2_0", 256, 66), 39: ("mxfp4", 32, 17),
}
ROWS = 5  # four for the 4-row dots, and one more


def kernel_seed(path, type_id, rng):
    name, blck, size = BLOCK_TYPES[type_id]
    n = 256 if blck == 1 else blck * max(1, 256 // blck)
    raw = bytearray(rng.integers(0, 256, ROWS * (n // blck) * size, dtype=np.uint8).tobytes())
    if blck > 1 and name.startswith("q") and name[1].isdigit():
        # A sane fp16 scale (1/64) at the start of each Q*_0/Q*_1 block, so that
        # values are finite; the K and IQ layouts keep their random bytes.
        for b in range(0, len(raw), size):
            raw[b:b + 2] = (0x2400).to_bytes(2, "little")
    w = gw.GGUFWriter()
    w.add_string("general.architecture", "fuzz")
    w.tensors.append((f"t.{name}", (n, ROWS), type_id, bytes(raw)))
    w.write(path)


def tiny_model(path, kind, wtype, seed, n_head=2, n_kv=1, F=32):
    rng = np.random.default_rng(seed)
    grok2 = kind == "grok2"
    d, hd, E, V = 32, 16, 2, 4
    w = gw.GGUFWriter()
    w.add_string("general.architecture", "grok")
    for key, val in (("context_length", 16), ("embedding_length", d), ("block_count", 1),
                     ("feed_forward_length", F), ("attention.head_count", n_head),
                     ("attention.head_count_kv", n_kv), ("attention.key_length", hd),
                     ("expert_count", E), ("expert_used_count", 1)):
        w.add_u32("grok." + key, val)
    w.add_f32("grok.attention.layer_norm_rms_epsilon", 1e-5)
    if grok2:
        w.add_f32("grok.final_logit_softcapping", 4.0)
        w.add_u32("grok.attention.temperature_length", 2)
    ttype = gw.TYPE_BY_NAME[wtype]

    def mat(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    def norm():
        return (1.0 + rng.standard_normal(d) * 0.1).astype(np.float32)

    t = {"token_embd.weight": (mat(V, d), ttype), "output_norm.weight": (norm(), gw.F32)}
    p = "blk.0."
    t[p + "attn_norm.weight"] = (norm(), gw.F32)
    t[p + "attn_output_norm.weight"] = (norm(), gw.F32)
    t[p + "ffn_norm.weight"] = (norm(), gw.F32)
    t[p + ("post_ffw_norm.weight" if grok2 else "layer_output_norm.weight")] = (norm(), gw.F32)
    t[p + "attn_q.weight"] = (mat(n_head * hd, d), ttype)
    t[p + "attn_k.weight"] = (mat(n_kv * hd, d), ttype)
    t[p + "attn_v.weight"] = (mat(n_kv * hd, d), ttype)
    t[p + "attn_output.weight"] = (mat(d, n_head * hd), ttype)
    t[p + "ffn_gate_inp.weight"] = (mat(E, d), gw.F32)
    t[p + "ffn_gate_exps.weight"] = (mat(E, F, d), ttype)
    t[p + "ffn_up_exps.weight"] = (mat(E, F, d), ttype)
    t[p + "ffn_down_exps.weight"] = (mat(E, d, F), ttype)
    if grok2:
        t[p + "ffn_gate.weight"] = (mat(F, d), ttype)
        t[p + "ffn_up.weight"] = (mat(F, d), ttype)
        t[p + "ffn_down.weight"] = (mat(d, F), ttype)
        t["output.weight"] = (mat(V, d), ttype)
    for name, (arr, ty) in t.items():
        w.add_tensor(name, arr, ty)
    w.write(path)


def iq_blocks(rng, type_id, rows, n):
    """Random blocks of an IQ type with a small finite fp16 d in each."""
    name, blck, size = BLOCK_TYPES[type_id]
    nb = rows * n // blck
    raw = rng.integers(0, 256, (nb, size), dtype=np.uint8)
    d = (rng.uniform(0.5, 1.5, nb) * 2e-3 * rng.choice([-1, 1], nb)).astype(np.float16)
    bits = d.view(np.uint16).astype(np.int64)
    if name == "iq1_m":  # no d field: its nibbles k = 0..3 top the scale words k (bytes 48..55)
        for k in range(4):
            hi = 48 + 2 * k + 1
            raw[:, hi] = (raw[:, hi] & 0x0F) | (((bits >> (4 * k)) & 15) << 4).astype(np.uint8)
    else:
        raw[:, 0:2] = d.view(np.uint8).reshape(nb, 2)
    return raw.tobytes()


def iq_model(path, type_id, seed):
    rng = np.random.default_rng(seed)
    d, hd, F, V = 256, 32, 32, 4
    w = gw.GGUFWriter()
    w.add_string("general.architecture", "grok")
    for key, val in (("context_length", 16), ("embedding_length", d), ("block_count", 1),
                     ("feed_forward_length", F), ("attention.head_count", 1),
                     ("attention.head_count_kv", 1), ("attention.key_length", hd),
                     ("expert_count", 1), ("expert_used_count", 1)):
        w.add_u32("grok." + key, val)
    w.add_f32("grok.attention.layer_norm_rms_epsilon", 1e-5)

    def iq(name, *shape):  # shape outermost first, as add_tensor takes it
        w.add_raw(name, tuple(reversed(shape)), type_id,
                  iq_blocks(rng, type_id, int(np.prod(shape[:-1])), shape[-1]))

    def mat(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    def norm():
        return (1.0 + rng.standard_normal(d) * 0.1).astype(np.float32)

    p = "blk.0."
    iq("token_embd.weight", V, d)
    w.add_tensor("output_norm.weight", norm(), gw.F16)
    for n in ("attn_norm", "attn_output_norm", "ffn_norm", "layer_output_norm"):
        w.add_tensor(p + n + ".weight", norm(), gw.F16)
    iq(p + "attn_q.weight", hd, d)
    iq(p + "attn_k.weight", hd, d)
    iq(p + "attn_v.weight", hd, d)
    w.add_tensor(p + "attn_output.weight", mat(d, hd), gw.Q4_0)
    w.add_tensor(p + "ffn_gate_inp.weight", mat(1, d), gw.F32)
    iq(p + "ffn_gate_exps.weight", 1, F, d)
    iq(p + "ffn_up_exps.weight", 1, F, d)
    w.add_tensor(p + "ffn_down_exps.weight", mat(1, d, F), gw.Q4_0)
    w.write(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "corpus"))
    ap.add_argument("--grok", help="a grok binary: also write the shard seeds with grok shard")
    a = ap.parse_args()
    rng = np.random.default_rng(11)
    os.makedirs(os.path.join(a.out, "gguf"), exist_ok=True)
    os.makedirs(os.path.join(a.out, "model"), exist_ok=True)
    for type_id, (name, _, _) in BLOCK_TYPES.items():
        kernel_seed(os.path.join(a.out, "gguf", f"kern-{name}.gguf"), type_id, rng)
    for i, (kind, wtype) in enumerate((("grok1", "q4_0"), ("grok2", "q8_0"), ("grok1", "f16"),
                                       ("grok2", "bf16"))):
        tiny_model(os.path.join(a.out, "model", f"{kind}-{wtype}.gguf"), kind, wtype, i)
    for i, type_id in enumerate((17, 22, 29)):  # iq2_xs, iq2_s, iq1_m
        iq_model(os.path.join(a.out, "model", f"grok1-{BLOCK_TYPES[type_id][0]}.gguf"), type_id,
                 100 + i)
    if a.grok:
        out = os.path.join(a.out, "shard")
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            # q8_0 and q4_0 need 32-column slices of wo (4 heads of 16) and the
            # hidden widths (64): N = 2; f16 splits 4 ways
            for i, (kind, wtype, n) in enumerate((("grok1", "q8_0", 2), ("grok2", "q4_0", 2),
                                                  ("grok2", "f16", 4))):
                model = os.path.join(tmp, f"{kind}-{wtype}.gguf")
                tiny_model(model, kind, wtype, 20 + i, n_head=4, n_kv=4, F=64)
                d = os.path.join(tmp, f"set-{i}")
                subprocess.run([a.grok, "shard", model, "--ranks", str(n), "-o", d], check=True,
                               capture_output=True)
                for f in sorted(os.listdir(d)):
                    shutil.copy(os.path.join(d, f), os.path.join(out, f"{kind}-{wtype}-{f}"))


if __name__ == "__main__":
    main()
