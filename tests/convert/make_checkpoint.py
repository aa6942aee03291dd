#!/usr/bin/python3
"""Writes a Grok-2 checkpoint folder in exactly the release's layout, from random weights.

The layout of xai-org/grok-2 (spec §6.2; the file split as reported by people who
downloaded it): bf16 safetensors pre-sharded for tensor parallelism,

    pytorch_model-00000-TP-common.safetensors   model.embed_tokens.weight
    pytorch_model-00001-TP-common.safetensors   lm_head.weight
    pytorch_model-00002-TP-common.safetensors   model.norm.weight
    pytorch_model-00003/4/5-TP-common           mlp.gate_proj / down_proj / up_proj, all layers
    pytorch_model-00006/7/8-TP-{000..R-1}       experts' w1 / w2 / w3, rank r's slice, all layers
                                                (w1, w3 [F/R, d] cut along dim 0; w2 [d, F/R] along dim 1)
    pytorch_model-00009..12-TP-common           self_attn.k_proj / o_proj / q_proj / v_proj
    pytorch_model-00013..16-TP-common           pre_attn / post_attn / pre_moe / post_moe norms
    pytorch_model-00017-TP-common               block_sparse_moe.gate (router)

plus config.json (the release's field names, spec §1) and tokenizer.tok.json
(spec §7.2: regular_tokens / special_tokens of {token, bytes}).

The safetensors format is written here with numpy from its description: u64 LE
header length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin,
end]}, "__metadata__": {...}} padded with spaces to a multiple of 8, then the data.
BF16 is the top half of the fp32 pattern rounded to nearest even.

Two sizes:
  small  (default) the parity model: d 64, 2 layers, 4 heads / 2 KV heads of 16,
         8 experts top-2 of width 64 (8 rows per rank), dense MLP 128, vocab 512.
         Weight scales follow the spec's "Testing note" (router std 0.5, others
         ~0.2) so that the softcaps, the temperature and the GELU variant matter.
         write() returns the unsharded weights {name: float32 array} (bf16 values).
  big    at least --gib GiB of weights (d 2048, experts of width 4096, as many
         layers as needed) for the peak-RSS measurement; slices are drawn
         independently, nothing is kept in memory.

Usage: make_checkpoint.py OUT_DIR [--size small|big] [--gib 4.2] [--ranks 8] [--seed 0]
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np

STD = dict(embd=0.2, q=0.18, k=0.18, v=0.15, o=0.15, router=0.5, gate=0.2, up=0.2, down=0.15,
           output=0.2, norm=0.15)


def config(size="small", n_layer=None):
    """config.json of the release (field names and order of spec §1), scaled down."""
    if size == "small":
        d, n_head, n_kv, hd, ff, ff_exp, vocab, L = 64, 4, 2, 16, 128, 64, 512, 2
        emb, cap_attn, cap_router, cap_final, temp_len = 6.0, 4.0, 6.0, 4.0, 16
    else:
        d, n_head, n_kv, hd, ff, ff_exp, vocab, L = 2048, 16, 8, 128, 8192, 4096, 32768, 8
        emb, cap_attn, cap_router, cap_final, temp_len = math.sqrt(d), 30.0, 30.0, 50.0, 1024
    return {
        "architectures": ["Grok1ForCausalLM"],
        "embedding_multiplier_scale": emb,
        "output_multiplier_scale": 0.5,
        "vocab_size": vocab,
        "hidden_size": d,
        "intermediate_size": ff,
        "moe_intermediate_size": ff_exp,
        "max_position_embeddings": 4096,
        "num_experts_per_tok": 2,
        "num_local_experts": 8,
        "residual_moe": True,
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "num_hidden_layers": n_layer or L,
        "head_dim": hd,
        "rms_norm_eps": 1e-05,
        "final_logit_softcapping": cap_final,
        "attn_logit_softcapping": cap_attn,
        "router_logit_softcapping": cap_router,
        "rope_theta": 208533496,
        "attn_temperature_len": temp_len,
        "sliding_window_size": -1,
        "global_attn_every_n": 1,
        "model_type": "git",
        "torch_dtype": "bfloat16",
        "rope_type": "original",
        "original_max_position_embeddings": 8192,
        "scaling_factor": 16.0,
        "extrapolation_factor": 1.0,
        "attn_factor": 1.0,
        "beta_fast": 8,
        "beta_slow": 1,
    }


def bf16_bits(x):
    """float32 array -> uint16 bf16 bit patterns (round to nearest even)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_round(x):
    return (bf16_bits(x).astype(np.uint32) << 16).view(np.float32)


def write_safetensors(path, tensors):
    """tensors: list of (name, uint16 bf16 array). Streams one tensor at a time."""
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, a in tensors:
        header[name] = {"dtype": "BF16", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, a in tensors:
            f.write(np.ascontiguousarray(a).tobytes())


def write_tokenizer(out_dir, n_vocab):
    """A byte-level vocabulary of n_vocab (>= 259) tokens: 3 specials, the 256 single
    bytes, then byte pairs of lower-case letters."""
    special = [(0, "<|pad|>"), (1, "<|separator|>"), (2, "<|eos|>")]
    regular = [{"token": 3 + b, "bytes": [b]} for b in range(256)]
    pairs = [(a, b) for a in b"abcdefghijklmnopqrstuvwxyz" for b in b"abcdefghijklmnopqrstuvwxyz"]
    for i, (a, b) in enumerate(pairs[: n_vocab - 3 - 256]):
        regular.append({"token": 259 + i, "bytes": [a, b]})
    tok = {"regular_tokens": regular,
           "special_tokens": [{"token": i, "bytes": list(s.encode())} for i, s in special],
           "word_split": "V1", "vocab_size": 3 + len(regular)}
    with open(os.path.join(out_dir, "tokenizer.tok.json"), "w") as f:
        json.dump(tok, f)


def write(out_dir, cfg, seed=0, ranks=8, keep=True):
    """Writes the folder; returns the unsharded weights (float32, bf16 values) if keep."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_tokenizer(out_dir, cfg["vocab_size"])
    rng = np.random.default_rng(seed)
    d, L, E = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_local_experts"]
    qd = cfg["num_attention_heads"] * cfg["head_dim"]
    kvd = cfg["num_key_value_heads"] * cfg["head_dim"]
    ff, F, V = cfg["intermediate_size"], cfg["moe_intermediate_size"], cfg["vocab_size"]
    if F % ranks:
        raise ValueError(f"moe_intermediate_size {F} is not a multiple of {ranks} ranks")
    full = {} if keep else None

    def mat(std, *shape):
        x = bf16_round(rng.standard_normal(shape, dtype=np.float32) * np.float32(std))
        return x

    def norm():
        return bf16_round(1.0 + rng.standard_normal(d, dtype=np.float32) * np.float32(STD["norm"]))

    def common(num, items):
        """items: list of (name, make()) written whole into file num."""
        out = []
        for name, make in items:
            x = make()
            if keep:
                full[name] = x
            out.append((name, bf16_bits(x)))
        write_safetensors(os.path.join(out_dir, f"pytorch_model-{num:05d}-TP-common.safetensors"), out)

    layer = lambda l, what: f"model.layers.{l}.{what}.weight"     # noqa: E731
    common(0, [("model.embed_tokens.weight", lambda: mat(STD["embd"], V, d))])
    common(1, [("lm_head.weight", lambda: mat(STD["output"], V, d))])
    common(2, [("model.norm.weight", norm)])
    common(3, [(layer(l, "mlp.gate_proj"), lambda: mat(STD["gate"], ff, d)) for l in range(L)])
    common(4, [(layer(l, "mlp.down_proj"), lambda: mat(STD["down"], d, ff)) for l in range(L)])
    common(5, [(layer(l, "mlp.up_proj"), lambda: mat(STD["up"], ff, d)) for l in range(L)])
    # Experts: the whole [F, d] / [d, F] matrix is drawn once (small) and cut into
    # rank slices; in big mode each slice is drawn on its own (no memory kept).
    for num, w, std, dim in ((6, "w1", STD["gate"], 0), (7, "w2", STD["down"], 1), (8, "w3", STD["up"], 0)):
        whole = {}
        if keep:
            for l in range(L):
                for e in range(E):
                    name = layer(l, f"block_sparse_moe.experts.{e}.{w}")
                    whole[name] = mat(std, F, d) if dim == 0 else mat(std, d, F)
                    full[name] = whole[name]
        part = F // ranks
        for r in range(ranks):
            out = []
            for l in range(L):
                for e in range(E):
                    name = layer(l, f"block_sparse_moe.experts.{e}.{w}")
                    if keep:
                        x = whole[name][r * part:(r + 1) * part] if dim == 0 else whole[name][:, r * part:(r + 1) * part]
                    else:
                        x = mat(std, part, d) if dim == 0 else mat(std, d, part)
                    out.append((name, bf16_bits(x)))
            write_safetensors(os.path.join(out_dir, f"pytorch_model-{num:05d}-TP-{r:03d}.safetensors"), out)
            del out
    common(9, [(layer(l, "self_attn.k_proj"), lambda: mat(STD["k"], kvd, d)) for l in range(L)])
    common(10, [(layer(l, "self_attn.o_proj"), lambda: mat(STD["o"], d, qd)) for l in range(L)])
    common(11, [(layer(l, "self_attn.q_proj"), lambda: mat(STD["q"], qd, d)) for l in range(L)])
    common(12, [(layer(l, "self_attn.v_proj"), lambda: mat(STD["v"], kvd, d)) for l in range(L)])
    for num, what in ((13, "pre_attn_norm"), (14, "post_attn_norm"), (15, "pre_moe_norm"), (16, "post_moe_norm")):
        common(num, [(layer(l, what), norm) for l in range(L)])
    common(17, [(layer(l, "block_sparse_moe.gate"), lambda: mat(STD["router"], E, d)) for l in range(L)])
    return full


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--size", choices=("small", "big"), default="small")
    ap.add_argument("--gib", type=float, default=4.2, help="big: at least this many GiB of weights")
    ap.add_argument("--ranks", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    cfg = config(a.size)
    if a.size == "big":
        d, ff, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["moe_intermediate_size"], cfg["vocab_size"]
        qd, kvd = cfg["num_attention_heads"] * cfg["head_dim"], cfg["num_key_value_heads"] * cfg["head_dim"]
        per_layer = 2 * (2 * qd * d + 2 * kvd * d + 3 * ff * d + 3 * 8 * F * d + 8 * d + 4 * d)
        fixed = 2 * (2 * V * d + d)
        cfg = config(a.size, n_layer=max(1, math.ceil((a.gib * 2**30 - fixed) / per_layer)))
    write(a.out_dir, cfg, a.seed, a.ranks, keep=(a.size == "small"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
