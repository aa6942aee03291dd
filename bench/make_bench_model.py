#!/usr/bin/env python3
"""Writes a random Grok-2-architecture model of a chosen size, for benchmarks and
memory measurements (`grok bench`, peak RSS). Weights are N(0, 0.02), as in the
spec's "Testing note" for realistic models; the file is written with the test
GGUF writer (tests/reference/gguf_writer.py), quantized by its codecs.

Usage: make_bench_model.py OUT.gguf [--type q8_0] [--embd 1024] [--layers 8] ...
The defaults give about 530M parameters (~560 MB as Q8_0): large enough that
weights do not fit in any cache, small enough to build in a minute.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "reference"))
import gguf_writer as gw  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--type", default="q8_0", choices=sorted(gw.TYPE_BY_NAME))
    ap.add_argument("--embd", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ff", type=int, default=4096, help="dense MLP width (0: Grok-1 shape)")
    ap.add_argument("--ff-exp", type=int, default=2048)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--ctx", type=int, default=8192)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    d, hd = a.embd, a.embd // a.heads
    wt = gw.TYPE_BY_NAME[a.type]
    w = gw.GGUFWriter()
    w.add_string("general.architecture", "grok")
    w.add_string("general.name", "bench-random")
    for k, v in [("context_length", a.ctx), ("embedding_length", d), ("block_count", a.layers),
                 ("feed_forward_length", a.ff if a.ff else a.ff_exp),
                 ("expert_feed_forward_length", a.ff_exp), ("attention.head_count", a.heads),
                 ("attention.head_count_kv", a.kv_heads), ("attention.key_length", hd),
                 ("attention.value_length", hd), ("rope.dimension_count", hd),
                 ("expert_count", a.experts), ("expert_used_count", 2)]:
        w.add_u32("grok." + k, v)
    for k, v in [("attention.layer_norm_rms_epsilon", 1e-5), ("rope.freq_base", 208533496.0),
                 ("embedding_scale", d ** 0.5), ("attention.output_scale", hd ** -0.5),
                 ("logit_scale", 0.5), ("attn_logit_softcapping", 30.0),
                 ("router_logit_softcapping", 30.0)] + ([("final_logit_softcapping", 50.0)] if a.ff else []):
        w.add_f32("grok." + k, v)

    # A placeholder SentencePiece ("llama") vocabulary, so that llama.cpp loads the
    # file too (bench/vs_llamacpp.sh): unk, bos, eos, the 256 byte tokens, fillers.
    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    toks += ["tok%d" % i for i in range(len(toks), a.vocab)]
    types = [2, 3, 3] + [6] * 256 + [1] * (a.vocab - 259)
    w.add_string("tokenizer.ggml.model", "llama")
    w.add_array("tokenizer.ggml.tokens", gw.T_STRING, toks[:a.vocab])
    w.add_array("tokenizer.ggml.scores", gw.T_F32, [-float(i) for i in range(a.vocab)])
    w.add_array("tokenizer.ggml.token_type", gw.T_I32, types[:a.vocab])
    w.add_u32("tokenizer.ggml.bos_token_id", 1)
    w.add_u32("tokenizer.ggml.eos_token_id", 2)
    w.add_u32("tokenizer.ggml.unknown_token_id", 0)

    def mat(*shape):
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02)

    def norm():
        return np.ones(d, dtype=np.float32)

    w.add_tensor("token_embd.weight", mat(a.vocab, d), wt)
    for l in range(a.layers):
        p = f"blk.{l}."
        w.add_tensor(p + "attn_norm.weight", norm())
        w.add_tensor(p + "attn_q.weight", mat(a.heads * hd, d), wt)
        w.add_tensor(p + "attn_k.weight", mat(a.kv_heads * hd, d), wt)
        w.add_tensor(p + "attn_v.weight", mat(a.kv_heads * hd, d), wt)
        w.add_tensor(p + "attn_output.weight", mat(d, a.heads * hd), wt)
        w.add_tensor(p + "attn_output_norm.weight", norm())
        w.add_tensor(p + "ffn_norm.weight", norm())
        w.add_tensor(p + "ffn_gate_inp.weight", mat(a.experts, d))
        w.add_tensor(p + "ffn_gate_exps.weight", mat(a.experts, a.ff_exp, d), wt)
        w.add_tensor(p + "ffn_up_exps.weight", mat(a.experts, a.ff_exp, d), wt)
        w.add_tensor(p + "ffn_down_exps.weight", mat(a.experts, d, a.ff_exp), wt)
        if a.ff:
            w.add_tensor(p + "ffn_gate.weight", mat(a.ff, d), wt)
            w.add_tensor(p + "ffn_up.weight", mat(a.ff, d), wt)
            w.add_tensor(p + "ffn_down.weight", mat(d, a.ff), wt)
            w.add_tensor(p + "post_ffw_norm.weight", norm())
        else:
            w.add_tensor(p + "layer_output_norm.weight", norm())
    w.add_tensor("output_norm.weight", norm())
    if a.ff:
        w.add_tensor("output.weight", mat(a.vocab, d), wt)
    w.write(a.out)


if __name__ == "__main__":
    main()
