#!/usr/bin/python3
"""End-to-end test of `grok convert`: a release-layout checkpoint -> GGUF -> engine logits
equal to the PyTorch reference run on the unsharded weights (ctest convert_parity).

1. make_checkpoint.py writes a small Grok-2 checkpoint in the release's layout
   (15 -TP-common files, 3 x 8 -TP-NNN expert files, config.json,
   tokenizer.tok.json) and keeps the unsharded weights it cut the slices from.
2. `grok convert DIR -o M.gguf --type T` for T in bf16 (the default), q8_0, q4_0.
3. The bf16 file is read back with the reference's own GGUF reader: every tensor
   must equal the unsharded weights exactly (names of spec §8, experts stacked).
4. The reference model is written from the unsharded weights with the reference's
   GGUF writer (its own Q8_0/Q4_0 quantizers for the tensors convert quantizes:
   2-D weights but the embedding and the router) and run by grok_ref.py in
   reference numerics on a prompt without router near-ties; the engine runs the
   converted file (`grok run --tokens ... -n 0 --dump-logits`), judged by
   parity.py's rules: bf16 weights are exact in fp32, so the f32 rule
   max|d| <= 1e-4 (1 + max|logit|); q8_0 / q4_0 by its quantized rules (median
   and max error against the exact and the Q8_0-activation reference, top-1).
5. The command line: `grok quantize` of the bf16 file equals `convert --type
   q4_0` byte for byte; a bad type and a missing shard fail with their messages
   and leave no file.

Usage: convert_parity.py --grok build/grok [--keep DIR]
Exit: 0 pass, 1 fail, 77 the engine binary is missing.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import make_checkpoint  # noqa: E402
import gguf_reader  # noqa: E402
import gguf_writer as gw  # noqa: E402
import grok_ref  # noqa: E402
import parity  # noqa: E402

PROMPT_LEN = 40          # crosses attn_temperature_len (16) of the small config


def gguf_names(cfg, w):
    """{GGUF name: torch-layout float32 array} from the unsharded checkpoint weights
    (spec §6.2 names -> §8 names; experts stacked [E, out, in])."""
    out = {"token_embd.weight": w["model.embed_tokens.weight"],
           "output_norm.weight": w["model.norm.weight"],
           "output.weight": w["lm_head.weight"]}
    per_layer = {"attn_norm": "pre_attn_norm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                 "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
                 "attn_output_norm": "post_attn_norm", "ffn_norm": "pre_moe_norm",
                 "ffn_gate_inp": "block_sparse_moe.gate", "ffn_gate": "mlp.gate_proj",
                 "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj", "post_ffw_norm": "post_moe_norm"}
    for l in range(cfg["num_hidden_layers"]):
        for g, h in per_layer.items():
            out[f"blk.{l}.{g}.weight"] = w[f"model.layers.{l}.{h}.weight"]
        for g, h in (("ffn_gate_exps", "w1"), ("ffn_up_exps", "w3"), ("ffn_down_exps", "w2")):
            out[f"blk.{l}.{g}.weight"] = np.stack(
                [w[f"model.layers.{l}.block_sparse_moe.experts.{e}.{h}.weight"]
                 for e in range(cfg["num_local_experts"])])
    return out


def reference_gguf(path, cfg, weights, wtype):
    """The unsharded weights as a GGUF for grok_ref, written by the reference's writer."""
    wr = gw.GGUFWriter()
    wr.add_string("general.architecture", "grok")
    u32 = {"context_length": cfg["max_position_embeddings"], "embedding_length": cfg["hidden_size"],
           "block_count": cfg["num_hidden_layers"], "feed_forward_length": cfg["intermediate_size"],
           "expert_feed_forward_length": cfg["moe_intermediate_size"],
           "attention.head_count": cfg["num_attention_heads"],
           "attention.head_count_kv": cfg["num_key_value_heads"],
           "attention.key_length": cfg["head_dim"], "attention.value_length": cfg["head_dim"],
           "rope.dimension_count": cfg["head_dim"], "expert_count": cfg["num_local_experts"],
           "expert_used_count": cfg["num_experts_per_tok"],
           "attention.temperature_length": cfg["attn_temperature_len"]}
    f32 = {"rope.freq_base": cfg["rope_theta"], "attention.layer_norm_rms_epsilon": cfg["rms_norm_eps"],
           "attn_logit_softcapping": cfg["attn_logit_softcapping"],
           "router_logit_softcapping": cfg["router_logit_softcapping"],
           "final_logit_softcapping": cfg["final_logit_softcapping"],
           "attention.output_scale": cfg["head_dim"] ** -0.5,      # SGLang: head_dim^-0.5 (spec §1)
           "embedding_scale": cfg["embedding_multiplier_scale"],
           "logit_scale": cfg["output_multiplier_scale"]}
    for k, v in u32.items():
        wr.add_u32("grok." + k, v)
    for k, v in f32.items():
        wr.add_f32("grok." + k, v)
    for name, a in gguf_names(cfg, weights).items():
        quantize = wtype != "bf16" and a.ndim >= 2 and name not in ("token_embd.weight",) \
            and "ffn_gate_inp" not in name
        wr.add_tensor(name, a, gw.TYPE_BY_NAME[wtype] if quantize else gw.F32)
    wr.write(path)


def check_bf16_file(path, cfg, weights):
    """Every tensor of the converted bf16 file equals the unsharded weights exactly."""
    f = gguf_reader.GGUFFile(path)
    want = gguf_names(cfg, weights)
    fails = []
    if set(f.tensors) != set(want):
        fails.append(f"tensor names differ: extra {sorted(set(f.tensors) - set(want))[:4]}, "
                     f"missing {sorted(set(want) - set(f.tensors))[:4]}")
    for name in sorted(set(f.tensors) & set(want)):
        got = f.tensor(name)
        if got.shape != want[name].shape:
            fails.append(f"{name}: shape {got.shape}, expected {want[name].shape}")
        elif not np.array_equal(got, want[name].astype(np.float64)):
            fails.append(f"{name}: values differ (max |d| {np.abs(got - want[name]).max():.3e})")
    for key in f.kv:
        if "rope.scaling" in key:
            fails.append(f"unexpected key {key} (the release's RoPE is plain: spec Decisions 3)")
    return fails


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... exit {r.returncode}: " +
                           " | ".join((r.stderr or r.stdout).strip().splitlines()[-4:]))
    return r


def compare_logits(grok, converted, ref_path, wtype, tmp):
    """Engine on the converted file vs grok_ref on the reference file, judged by
    parity.py's rules (bf16 weights are exact in fp32, so they get the f32 rule)."""
    model = grok_ref.load(ref_path)
    nm = model.numerics("reference")
    quant = wtype in parity.QUANT
    nm_q = nm.replace(act_quant="q8_0")
    tokens = parity.choose_prompt(model, [nm, nm_q] if quant else [nm], PROMPT_LEN, seed=7)
    ref = model.forward(tokens, nm).numpy()
    ref_q = model.forward(tokens, nm_q).numpy() if quant else None
    margins = model.router_margins(tokens, nm)
    eng, err = parity.run_engine(grok, converted, tokens, "reference",
                                 os.path.join(tmp, f"logits-{wtype}.f32"))
    if err:
        return [f"{wtype}: grok run: {err}"]
    if eng.size != ref.size:
        return [f"{wtype}: {eng.size} logits, expected {ref.shape[0]} x {ref.shape[1]}"]
    eng = eng.reshape(ref.shape)
    s = 1.0 + float(np.abs(ref).max())
    st, fails = parity.judge(wtype, eng, ref, ref_q, wtype if quant else "f32", s, tokens, margins)
    extra = "" if not quant else f", median {st['med']:.2e} (Q8_0 activations {st['med_q']:.2e})"
    print(f"{wtype:5s} max|engine - reference| / (1 + max|logit|) = {st['max']:.2e}{extra}, "
          f"same top-1 {st['top1']:.1%}  {'FAIL' if fails else 'ok'}")
    return fails


def cli_checks(grok, tmp, ck):
    """The command line: quantize agrees with convert, and failures leave nothing behind."""
    fails = []
    bf16, q4 = os.path.join(tmp, "converted-bf16.gguf"), os.path.join(tmp, "converted-q4_0.gguf")
    requant = os.path.join(tmp, "quantized-q4_0.gguf")
    if os.path.exists(bf16) and os.path.exists(q4):
        r = subprocess.run([grok, "quantize", bf16, requant, "q4_0", "-q"], capture_output=True, text=True)
        if r.returncode != 0:
            fails.append(f"grok quantize: exit {r.returncode}: {r.stderr.strip()}")
        else:
            a, b = gguf_reader.GGUFFile(q4), gguf_reader.GGUFFile(requant)
            for name in a.tensors:
                if a.tensors[name].type != b.tensors[name].type or a.raw(name) != b.raw(name):
                    fails.append(f"grok quantize q4_0 and grok convert --type q4_0 differ in {name}")
                    break
    r = subprocess.run([grok, "quantize", bf16, requant + "2", "q9_9"], capture_output=True, text=True)
    if r.returncode != 2 or "unknown or unsupported type 'q9_9'" not in r.stderr:
        fails.append(f"grok quantize q9_9: exit {r.returncode}, {r.stderr.strip()!r}")
    # A missing shard: exit 1, a message naming it, no output and no temporary file.
    os.rename(os.path.join(ck, "pytorch_model-00007-TP-005.safetensors"), os.path.join(tmp, "moved"))
    outdir = os.path.join(tmp, "out")
    os.makedirs(outdir, exist_ok=True)
    r = subprocess.run([grok, "convert", ck, "-o", os.path.join(outdir, "m.gguf")], capture_output=True, text=True)
    if r.returncode != 1 or "missing shard pytorch_model-00007-TP-005.safetensors" not in r.stderr:
        fails.append(f"convert with a missing shard: exit {r.returncode}, {r.stderr.strip()!r}")
    if os.listdir(outdir):
        fails.append(f"convert with a missing shard left {os.listdir(outdir)}")
    return fails


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grok", required=True)
    ap.add_argument("--keep", help="keep the files in this directory")
    a = ap.parse_args(argv)
    if not (os.path.isfile(a.grok) and os.access(a.grok, os.X_OK)):
        print(f"engine binary {a.grok} not found: skipping")
        return 77
    ctx = None if a.keep else tempfile.TemporaryDirectory()
    tmp = a.keep or ctx.name
    os.makedirs(tmp, exist_ok=True)
    ck = os.path.join(tmp, "grok-2-small")
    cfg = make_checkpoint.config("small")
    weights = make_checkpoint.write(ck, cfg, seed=0, ranks=8)
    fails = []
    for wtype in ("bf16", "q8_0", "q4_0"):
        out = os.path.join(tmp, f"converted-{wtype}.gguf")
        try:
            run([a.grok, "convert", ck, "-o", out, "--type", wtype, "--threads", "2"])
        except RuntimeError as e:
            fails.append(f"{wtype}: convert: {e}")
            continue
        if wtype == "bf16":
            fails += [f"bf16 file: {m}" for m in check_bf16_file(out, cfg, weights)]
        ref_path = os.path.join(tmp, f"reference-{wtype}.gguf")
        reference_gguf(ref_path, cfg, weights, wtype)
        fails += compare_logits(a.grok, out, ref_path, wtype, tmp)
    fails += cli_checks(a.grok, tmp, ck)
    for m in fails:
        print("FAIL: " + m)
    if ctx:
        ctx.cleanup()
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
