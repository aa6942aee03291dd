"""Builds small random Grok models as GGUF files for the parity tests (seeded).

Shapes follow the real models scaled down (spec §1), keys and tensor names
follow llama.cpp's GGUF layout (spec §8), general.architecture = "grok". No
tokenizer keys: the tests pass token ids.

Models ("kinds"):
  grok1      Grok-1 shape: MoE only, tied output (no output.weight), layer_output_norm,
             every optional key written, with values that differ from llama.cpp's
             defaults so that an engine ignoring a key fails. It also carries
             grok.router_logit_softcapping, which reference Grok-1 must ignore (J1).
  grok1old   an "old Grok-1 GGUF": only the keys the 2024 converter wrote; the engine
             must use the defaults (spec Decisions 5): embedding_scale 78.38...,
             logit_scale 1/sqrt(3), output_scale 1/sqrt(128), attn cap 30.
  grok2      Grok-2 shape: dense MLP beside the MoE, untied output, post_ffw_norm,
             final softcap, attention.temperature_length small enough that a
             48-token prompt crosses it.
  grok2yarn  grok2 plus the rope.scaling.* keys llama.cpp's converter writes
             (type yarn, factor 16, ...): reference mode must ignore them
             (Decisions 4), llamacpp mode must honour them.

Common shape: n_embd 64, 3 layers, n_head 4, n_head_kv 2 (GQA group 2), head_dim 16,
8 experts top-2, vocabulary 1280. Every row length is a multiple of 32, so every
matrix can be stored as Q8_0 / Q4_0. Norms and the router stay f32 (as llama.cpp
does); all other matrices, embedding and output included, use the chosen type.

Weight scales follow the spec's "Testing note": the router std is large (0.5) so
that the router softcap matters, and the others are sized so that attention
scores, GELU inputs and logits are O(1), where the caps, the temperature and the
GELU variant move logits well above the f32 tolerance (selfcheck.py measures it).

Usage: make_model.py OUT.gguf [--kind grok1|grok1old|grok2|grok2yarn] [--type f32|f16|bf16|q8_0|q4_0] [--seed N]
                     [--wide]   (n_embd 256, head_dim 64, FFN widths 256/512: k-quant-sized rows)
                     [--small]  (1 layer, 4 experts, 512 tokens: for committed fixtures)
"""

import argparse
import contextlib
import math
import sys

import numpy as np

import gguf_writer as gw

KINDS = ("grok1", "grok1old", "grok2", "grok2yarn")
TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0")

N_EMBD, N_LAYER, N_HEAD, N_HEAD_KV, HEAD_DIM = 64, 3, 4, 2, 16
N_EXPERT, N_EXPERT_USED, N_VOCAB = 8, 2, 1280
N_FF_EXP_GROK1 = 96      # Grok-1: feed_forward_length is the expert width
N_FF_GROK2, N_FF_EXP_GROK2 = 128, 64
TEMPERATURE_LEN = 16     # grok2: the prompts of the tests (>= 48 tokens) cross it

# Standard deviations of the random weights (see the docstring).
STD = dict(embd=0.2, q=0.18, k=0.18, v=0.15, o=0.15, router=0.5,
           gate=0.15, up=0.15, down=0.15, output=0.4, norm=0.15)
# The old file uses the default q.k scale 1/sqrt(128): larger q and k make its scores
# big enough that the default attention softcap (30) visibly acts.
STD_OVERRIDES = {"grok1old": dict(q=0.35, k=0.35)}


def model_config(kind):
    """Hyper-parameters of one kind, as the GGUF keys to write (None = leave out)."""
    grok2 = kind.startswith("grok2")
    cfg = {
        "context_length": 1024 if kind == "grok2yarn" else 256,
        "embedding_length": N_EMBD,
        "block_count": N_LAYER,
        "feed_forward_length": N_FF_GROK2 if grok2 else N_FF_EXP_GROK1,
        "attention.head_count": N_HEAD,
        "attention.head_count_kv": N_HEAD_KV,
        "rope.freq_base": 500000.0 if grok2 else 10000.0,
        "attention.layer_norm_rms_epsilon": 1e-5,
        "expert_count": N_EXPERT,
        "expert_used_count": N_EXPERT_USED,
    }
    if kind == "grok1old":
        return cfg
    cfg.update({
        "attention.key_length": HEAD_DIM,
        "attention.value_length": HEAD_DIM,
        "rope.dimension_count": HEAD_DIM,
        # Values unlike the defaults, so that they must be read from the file.
        "embedding_scale": 6.0 if grok2 else 5.0,
        "logit_scale": 0.5 if grok2 else 0.7,
        "attention.output_scale": 1.0 / math.sqrt(HEAD_DIM),  # not the default 1/sqrt(128)
        "attn_logit_softcapping": 4.0 if grok2 else 5.0,
        "router_logit_softcapping": 6.0 if grok2 else 5.0,  # grok1: present but ignored (J1)
    })
    if grok2:
        cfg.update({
            "expert_feed_forward_length": N_FF_EXP_GROK2,
            "final_logit_softcapping": 4.0,
            "attention.temperature_length": TEMPERATURE_LEN,
        })
    if kind == "grok2yarn":
        cfg.update({
            "rope.scaling.type": "yarn",
            "rope.scaling.factor": 16.0,
            "rope.scaling.original_context_length": 64,
            "rope.scaling.yarn_ext_factor": 1.0,
            "rope.scaling.yarn_attn_factor": 1.0,
            "rope.scaling.yarn_beta_fast": 8.0,
            "rope.scaling.yarn_beta_slow": 1.0,
        })
    return cfg


_U32_KEYS = {"context_length", "embedding_length", "block_count", "feed_forward_length",
             "expert_feed_forward_length", "attention.head_count", "attention.head_count_kv",
             "attention.key_length", "attention.value_length", "rope.dimension_count",
             "expert_count", "expert_used_count", "attention.temperature_length",
             "rope.scaling.original_context_length"}


def random_weights(kind, seed):
    """{tensor name: float32 array in torch layout} for one kind."""
    rng = np.random.default_rng(seed)
    std = dict(STD, **STD_OVERRIDES.get(kind, {}))
    grok2 = kind.startswith("grok2")
    d, F = N_EMBD, (N_FF_EXP_GROK2 if grok2 else N_FF_EXP_GROK1)

    def mat(std, *shape):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def norm():
        return (1.0 + rng.standard_normal(d) * std["norm"]).astype(np.float32)

    w = {"token_embd.weight": mat(std["embd"], N_VOCAB, d)}
    for il in range(N_LAYER):
        p = f"blk.{il}."
        w[p + "attn_norm.weight"] = norm()
        w[p + "attn_q.weight"] = mat(std["q"], N_HEAD * HEAD_DIM, d)
        w[p + "attn_k.weight"] = mat(std["k"], N_HEAD_KV * HEAD_DIM, d)
        w[p + "attn_v.weight"] = mat(std["v"], N_HEAD_KV * HEAD_DIM, d)
        w[p + "attn_output.weight"] = mat(std["o"], d, N_HEAD * HEAD_DIM)
        w[p + "attn_output_norm.weight"] = norm()
        w[p + "ffn_norm.weight"] = norm()
        w[p + "ffn_gate_inp.weight"] = mat(std["router"], N_EXPERT, d)
        w[p + "ffn_gate_exps.weight"] = mat(std["gate"], N_EXPERT, F, d)
        w[p + "ffn_up_exps.weight"] = mat(std["up"], N_EXPERT, F, d)
        w[p + "ffn_down_exps.weight"] = mat(std["down"], N_EXPERT, d, F)
        if grok2:
            w[p + "ffn_gate.weight"] = mat(std["gate"], N_FF_GROK2, d)
            w[p + "ffn_up.weight"] = mat(std["up"], N_FF_GROK2, d)
            w[p + "ffn_down.weight"] = mat(std["down"], d, N_FF_GROK2)
            w[p + "post_ffw_norm.weight"] = norm()
        else:
            w[p + "layer_output_norm.weight"] = norm()
    w["output_norm.weight"] = norm()
    if grok2:
        w["output.weight"] = mat(std["output"], N_VOCAB, d)
    return w


def _stays_f32(name):
    # llama.cpp keeps 1-d tensors (norms) and the router in f32.
    return name.endswith("norm.weight") or name.endswith("ffn_gate_inp.weight")


# --wide: rows of 256 (n_embd 256, head_dim 64, expert widths 256, Grok-2's dense
# MLP 512) so that every matrix fits the k-quants' 256-weight super-blocks; the
# weight scales shrink by sqrt(64/256) to keep activations O(1).
WIDE = dict(N_EMBD=256, HEAD_DIM=64, N_FF_EXP_GROK1=256, N_FF_GROK2=512, N_FF_EXP_GROK2=256)
# --small (with --wide): one layer, 4 experts, 512 tokens, for fixture files that
# llama.cpp's quantizer writes and tests/ keeps (a few hundred KiB each).
SMALL = dict(N_LAYER=1, N_EXPERT=4, N_VOCAB=512)


@contextlib.contextmanager
def _shape(wide, small=False):
    """Switches the module's shape constants to WIDE (and SMALL) for the duration."""
    g = globals()
    saved = {k: g[k] for k in list(WIDE) + list(SMALL) + ["STD"]}
    if small:
        g.update(SMALL)
    if wide:
        g.update(WIDE)
        g["STD"] = {k: (v if k == "norm" else v * 0.5) for k, v in saved["STD"].items()}
    try:
        yield
    finally:
        g.update(saved)


def build(path, kind="grok1", wtype="f32", seed=0, wide=False, small=False):
    """Writes one model to path; returns the config dict written."""
    with _shape(wide, small):
        return _build(path, kind, wtype, seed)


def _build(path, kind, wtype, seed):
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind}")
    ttype = gw.TYPE_BY_NAME[wtype]
    cfg = model_config(kind)
    wr = gw.GGUFWriter()
    wr.add_string("general.architecture", "grok")
    wr.add_string("general.name", f"parity-{kind}-{wtype}")
    for key, val in cfg.items():
        full = "grok." + key
        if isinstance(val, str):
            wr.add_string(full, val)
        elif key in _U32_KEYS:
            wr.add_u32(full, val)
        else:
            wr.add_f32(full, val)
    for name, arr in random_weights(kind, seed).items():
        wr.add_tensor(name, arr, gw.F32 if _stays_f32(name) else ttype)
    wr.write(path)
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--kind", choices=KINDS, default="grok1")
    ap.add_argument("--type", choices=TYPES, default="f32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wide", action="store_true", help="rows of 256 (for the k-quants)")
    ap.add_argument("--small", action="store_true", help="1 layer, 4 experts, 512 tokens")
    a = ap.parse_args(argv)
    build(a.out, a.kind, a.type, a.seed, a.wide, a.small)
    return 0


if __name__ == "__main__":
    sys.exit(main())
