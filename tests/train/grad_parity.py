#!/usr/bin/python3
"""Gradient parity: the C training engine (src/train) against torch autograd on the
independent reference (tests/reference/grok_ref.py, float64), on small random Grok-1
and Grok-2 models (tests/reference/make_model.py) in both numerics modes.

For each case it runs `train_grad` (one forward and backward over B sequences of T
tokens, loss = mean cross-entropy + aux_weight * the Switch load-balancing loss of
every layer) and compares, for every parameter tensor,
    ||g_engine - g_torch|| / ||g_torch|| <= 1e-4      (norm-wise relative)
and the cross-entropy within 1e-5, the balance loss within 1e-5.
Top-k routing is piecewise: torch differentiates through the chosen gates' softmax
probabilities, not through the selection (that is what grok_ref's route computes once
the index choice is detached). Token sequences are drawn (seeded) so that no router
decision is a near-tie (spec "Testing note").

Usage: grad_parity.py --tool path/to/train_grad [--keep DIR]
Exit: 0 pass, 1 fail, 77 tool missing.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import gguf_reader  # noqa: E402
import grok_ref  # noqa: E402
import make_model  # noqa: E402

GRAD_TOL, LOSS_TOL, MIN_MARGIN = 1e-4, 1e-5, 2e-5
B, T = 2, 24          # grok2's temperature length (16) is crossed
AUX_WEIGHT = 0.3

_routes = []


def route_recording(g, nm, n_used):
    """grok_ref.route with the selection detached (its numpy call needs it), recording
    the probabilities and choices of every call for the balance loss."""
    g = grok_ref.softcap(g, nm.router_softcap)
    probs = torch.softmax(g, dim=-1)
    order = np.argsort(-probs.detach().numpy(), axis=-1, kind="stable")[:, :n_used]
    ids = torch.from_numpy(np.ascontiguousarray(order))
    w = torch.gather(probs, 1, ids)
    if nm.renormalize:
        w = w / w.sum(-1, keepdim=True)
    _routes.append((probs, ids))
    return ids, w


def param_map(m):
    """GGUF tensor name -> the reference model's torch tensor."""
    names = dict(attn_norm="attn_norm", attn_q="wq", attn_k="wk", attn_v="wv",
                 attn_output="wo", attn_output_norm="attn_out_norm", ffn_norm="ffn_norm",
                 ffn_gate_inp="router", ffn_gate_exps="gate_exps", ffn_up_exps="up_exps",
                 ffn_down_exps="down_exps", layer_output_norm="post_moe_norm",
                 post_ffw_norm="post_moe_norm", ffn_gate="gate", ffn_up="up", ffn_down="down")
    out = {"token_embd.weight": m.tok_embd, "output_norm.weight": m.output_norm}
    if not m.tied:
        out["output.weight"] = m.output
    for il, L in enumerate(m.layers):
        for gname, key in names.items():
            full = f"blk.{il}.{gname}.weight"
            if full in m.file.tensors:
                out[full] = L[key]
    return out


def train_numerics(m, mode):
    """Training's numerics: inference's, except that llamacpp training keeps the smooth
    tanh GELU where inference reads llama.cpp's fp16 table of it (src/train/tmodel.c)."""
    nm = m.numerics(mode)
    return nm.replace(gelu="tanh") if nm.gelu == "tanh_f16" else nm


def torch_grads(path, mode, inputs, targets):
    m = grok_ref.GrokModel(path)
    nm = train_numerics(m, mode)
    params = param_map(m)
    for t in params.values():
        t.requires_grad_(True)
    _routes.clear()
    ce = 0.0
    for b in range(B):
        logits = m.forward(inputs[b * T:(b + 1) * T], nm)
        tgt = torch.as_tensor(targets[b * T:(b + 1) * T])
        ce = ce + torch.nn.functional.cross_entropy(logits, tgt, reduction="sum")
    ce = ce / (B * T)
    # balance loss per layer over the whole micro-batch: calls go sequence by sequence
    n_layer, E, K = m.n_layer, m.n_expert, m.n_expert_used
    aux = 0.0
    for il in range(n_layer):
        probs = torch.cat([_routes[b * n_layer + il][0] for b in range(B)])
        ids = torch.cat([_routes[b * n_layer + il][1] for b in range(B)])
        frac = torch.bincount(ids.flatten(), minlength=E).to(grok_ref.DT) / ids.numel()
        aux = aux + E * (frac * probs.mean(0)).sum()
    (ce + AUX_WEIGHT * aux).backward()
    return float(ce), float(aux), {k: v.grad.numpy() for k, v in params.items()}


def choose_tokens(path, mode, seed):
    m = grok_ref.GrokModel(path)
    nm = train_numerics(m, mode)
    for attempt in range(200):
        rng = np.random.default_rng(seed * 1000 + attempt)
        toks = rng.integers(0, m.n_vocab, B * T + B).tolist()
        inputs = sum((toks[b * (T + 1):b * (T + 1) + T] for b in range(B)), [])
        targets = sum((toks[b * (T + 1) + 1:(b + 1) * (T + 1)] for b in range(B)), [])
        ok = all(float(m.router_margins(inputs[b * T:(b + 1) * T], nm).min()) >= MIN_MARGIN
                 for b in range(B))
        if ok:
            return inputs, targets
    raise RuntimeError("no token sequence without router near-ties")


def run_case(tool, tmp, kind, mode, seed):
    path = os.path.join(tmp, f"{kind}-{mode}.gguf")
    make_model.build(path, kind=kind, wtype="f32", seed=seed)
    inputs, targets = choose_tokens(path, mode, seed)
    out = os.path.join(tmp, f"{kind}-{mode}-grads.gguf")
    cmd = [tool, path, str(B), str(T), ",".join(map(str, inputs)), ",".join(map(str, targets)),
           str(AUX_WEIGHT), out, mode, "2"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    g = gguf_reader.GGUFFile(out)
    ce_ref, aux_ref, grads = torch_grads(path, mode, inputs, targets)
    ok = True
    ce_c, aux_c = g.get("train.ce"), g.get("train.aux")
    worst = (0.0, "")
    for name, gt in grads.items():
        gc = g.tensor(name).astype(np.float64).reshape(gt.shape)
        nrm = np.linalg.norm(gt)
        err = np.linalg.norm(gc - gt) / nrm if nrm > 1e-12 else np.linalg.norm(gc)
        if err > worst[0]:
            worst = (err, name)
        if not err <= GRAD_TOL:
            print(f"  FAIL {name}: relative gradient error {err:.2e} (norm {nrm:.3e})")
            ok = False
    dce, daux = abs(ce_c - ce_ref), abs(aux_c - aux_ref)
    if not (dce <= LOSS_TOL and daux <= LOSS_TOL):
        print(f"  FAIL loss: ce {ce_c:.8f} vs {ce_ref:.8f}, aux {aux_c:.8f} vs {aux_ref:.8f}")
        ok = False
    print(f"{'ok  ' if ok else 'FAIL'} {kind}-{mode}: ce {ce_c:.6f} (|d| {dce:.1e}), "
          f"aux {aux_c:.5f} (|d| {daux:.1e}), worst gradient {worst[1]} {worst[0]:.1e} "
          f"over {len(grads)} tensors")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--keep")
    a = ap.parse_args()
    if not os.path.exists(a.tool):
        print(f"skip: {a.tool} not built")
        return 77
    torch.set_num_threads(2)
    grok_ref.route = route_recording
    cases = [("grok1", "reference", 3), ("grok2", "reference", 4), ("grok1", "llamacpp", 5),
             ("grok2", "llamacpp", 6)]
    with tempfile.TemporaryDirectory() as tmp:
        d = a.keep or tmp
        os.makedirs(d, exist_ok=True)
        ok = all([run_case(a.tool, d, k, m, s) for k, m, s in cases])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
