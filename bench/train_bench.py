#!/usr/bin/python3
"""Training throughput: `grok train` against PyTorch (CPU, fp32) on the same model,
batch and thread count, measured one after the other in one run on this machine.

The PyTorch model is a straightforward, efficient implementation of the same
Grok-2-architecture step (batched attention with the softcap, top-k routing with
per-expert index gathers, GeGLU with exact-erf GELU, the dense residual MLP, the
(MoE + MLP)/sqrt(2) combine, the sandwich norms, the final softcap, cross-entropy,
the Switch balance loss, AdamW) written for speed, not as a reference.

PyTorch runs twice: as installed (Debian's python3-torch calls the system BLAS,
which is the netlib reference BLAS unless an optimised one is selected), and, when
Debian's libopenblas0-pthread is present, with OpenBLAS preloaded through
LD_LIBRARY_PATH (the system default is left alone).

Usage: bench/train_bench.py [--grok build/grok] [--steps 20] [--threads 2]
                            [--config SPEC] [--batch 8] [--ctx 256] [--data FILE...]
Needs the corpus of scripts/make-corpus.sh (or --data) for the tokenizer and tokens.
"""

OPENBLAS_DIR = "/usr/lib/x86_64-linux-gnu/openblas-pthread"

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

DEFAULT_CONFIG = ("variant=grok2,layers=4,dim=128,heads=4,kv_heads=2,ff=256,ff_exp=256,"
                  "experts=4,experts_used=2,ctx=512")


def parse_config(spec):
    c = dict(variant="grok2", layers=4, dim=256, heads=4, kv_heads=2, ff=512, ff_exp=512,
             experts=4, experts_used=2, ctx=1024, vocab=4096)
    for kv in spec.split(","):
        k, v = kv.split("=")
        c[k] = v if k == "variant" else int(v)
    c["head_dim"] = c["dim"] // c["heads"]
    return c


def rmsnorm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


class Grok(torch.nn.Module):
    def __init__(self, c, vocab):
        super().__init__()
        d, hd, E, Fe, Fd = c["dim"], c["head_dim"], c["experts"], c["ff_exp"], c["ff"]
        nq, nkv = c["heads"] * hd, c["kv_heads"] * hd
        self.c, self.vocab = c, vocab
        P = lambda *s: torch.nn.Parameter(torch.randn(*s) * 0.02)  # noqa: E731
        O = lambda n: torch.nn.Parameter(torch.ones(n))  # noqa: E731
        self.emb, self.out, self.out_norm = P(vocab, d), P(vocab, d), O(d)
        self.layers = torch.nn.ModuleList()
        for _ in range(c["layers"]):
            L = torch.nn.ParameterDict(dict(
                n1=O(d), wq=P(nq, d), wk=P(nkv, d), wv=P(nkv, d), wo=P(d, nq), n2=O(d), n3=O(d),
                router=P(E, d), w1=P(E, Fe, d), w3=P(E, Fe, d), w2=P(E, d, Fe), n4=O(d),
                g=P(Fd, d), u=P(Fd, d), dn=P(d, Fd)))
            self.layers.append(L)
        half = hd // 2
        inv = 10000.0 ** (-torch.arange(half, dtype=torch.float64) * 2 / hd)
        ang = torch.arange(c["ctx"], dtype=torch.float64)[:, None] * inv[None]
        self.register_buffer("cos", ang.cos().float())
        self.register_buffer("sin", ang.sin().float())

    def rope(self, x):  # x [B, H, T, hd]
        T, half = x.shape[2], x.shape[3] // 2
        c, s = self.cos[:T], self.sin[:T]
        a, b = x[..., :half], x[..., half:]
        return torch.cat([a * c - b * s, b * c + a * s], -1)

    def forward(self, tok, tgt):
        c = self.c
        B, T = tok.shape
        d, hd, H, Hk, E, K = c["dim"], c["head_dim"], c["heads"], c["kv_heads"], c["experts"], c["experts_used"]
        x = self.emb[tok] * math.sqrt(d)
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        aux = 0.0
        for L in self.layers:
            h = rmsnorm(x, L["n1"])
            q = (h @ L["wq"].T).view(B, T, H, hd).transpose(1, 2)
            k = (h @ L["wk"].T).view(B, T, Hk, hd).transpose(1, 2)
            v = (h @ L["wv"].T).view(B, T, Hk, hd).transpose(1, 2)
            q, k = self.rope(q), self.rope(k)
            k = k.repeat_interleave(H // Hk, 1)
            v = v.repeat_interleave(H // Hk, 1)
            s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
            s = 30 * torch.tanh(s / 30)
            s = s.masked_fill(~mask, float("-inf")).softmax(-1)
            a = (s @ v).transpose(1, 2).reshape(B, T, H * hd) @ L["wo"].T
            x = x + rmsnorm(a, L["n2"])
            h = rmsnorm(x, L["n3"]).view(B * T, d)
            g = 30 * torch.tanh((h @ L["router"].T) / 30)
            p = g.softmax(-1)
            gate, idx = p.topk(K, -1)
            moe = torch.zeros_like(h)
            for e in range(E):
                rows, slot = (idx == e).nonzero(as_tuple=True)
                if rows.numel() == 0:
                    continue
                xe = h[rows]
                ye = (F.gelu(xe @ L["w1"][e].T) * (xe @ L["w3"][e].T)) @ L["w2"][e].T
                moe = moe.index_add(0, rows, ye * gate[rows, slot, None])
            frac = torch.bincount(idx.flatten(), minlength=E).float() / idx.numel()
            aux = aux + E * (frac * p.mean(0)).sum()
            mlp = (F.gelu(h @ L["g"].T) * (h @ L["u"].T)) @ L["dn"].T
            f = ((moe + mlp) / math.sqrt(2)).view(B, T, d)
            x = x + rmsnorm(f, L["n4"])
        z = (rmsnorm(x, self.out_norm) @ self.out.T) * 0.5
        z = 50 * torch.tanh(z / 50)
        ce = F.cross_entropy(z.view(-1, self.vocab), tgt.view(-1))
        return ce + 0.01 * aux, ce


def bench_torch(c, vocab, B, T, steps, threads):
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    m = Grok(c, vocab)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    tok = torch.randint(0, vocab, (B, T))
    tgt = torch.randint(0, vocab, (B, T))
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, ce = m(tok, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    return B * T / med, sum(p.numel() for p in m.parameters())


def bench_grok(grok, data, cfg, vocab, B, T, steps, threads, tmp):
    out = os.path.join(tmp, "g")
    base = [grok, "train", "--data", *data, "-o", out, "--batch", str(B), "--ctx", str(T),
            "--eval-every", "0", "--save-every", "0", "-t", str(threads), "--log-every", "1"]
    # first run: vocabulary and token cache; the measured run reuses both
    subprocess.run(base + ["--config", cfg, "--vocab", str(vocab), "--steps", "1"], check=True,
                   capture_output=True)
    tokf = os.path.join(out, "tokenizer.model")
    p = subprocess.run(base + ["--config", cfg, "--tokenizer", tokf, "--steps", str(steps + 3),
                               "-o", os.path.join(tmp, "g2"), "--cache", os.path.join(out, "cache")],
                       check=True, capture_output=True, text=True)
    tps = [float(x) for x in re.findall(r"\| ([0-9.]+) tok/s", p.stderr)][3:]
    tps.sort()
    n_params = int(re.search(r"model, (\d+) parameters", p.stderr).group(1))
    return tps[len(tps) // 2], n_params


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grok", default="build/grok")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--data", nargs="+", default=["build/corpus/sotu.txt", "build/corpus/brown.txt"])
    ap.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    c = parse_config(a.config)
    if a.torch_only:
        t, tp = bench_torch(c, a.vocab, a.batch, a.ctx, a.steps, a.threads)
        print(f"{t} {tp}")
        return
    for f in a.data:
        if not os.path.exists(f):
            sys.exit(f"{f} missing: run scripts/make-corpus.sh first (or give --data)")
    with tempfile.TemporaryDirectory() as tmp:
        g, gp = bench_grok(a.grok, a.data, a.config, a.vocab, a.batch, a.ctx, a.steps, a.threads, tmp)
    print(f"model: {a.config}, vocab {a.vocab}; batch {a.batch} x {a.ctx} tokens; "
          f"{a.threads} threads; median of {a.steps} steps")
    print(f"  grok train                     {g:9.0f} tokens/s   ({gp} parameters)")
    runs = [("as installed (system BLAS)", {})]
    if os.path.isdir(OPENBLAS_DIR):
        runs.append(("with OpenBLAS", {"LD_LIBRARY_PATH": OPENBLAS_DIR,
                                       "OPENBLAS_NUM_THREADS": str(a.threads)}))
    for name, extra in runs:
        cmd = [sys.executable, os.path.abspath(__file__), "--torch-only", "--steps", str(a.steps),
               "--threads", str(a.threads), "--config", a.config, "--vocab", str(a.vocab),
               "--batch", str(a.batch), "--ctx", str(a.ctx)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                             env=dict(os.environ, **extra)).stdout.split()
        t, tp = float(out[0]), int(out[1])
        print(f"  PyTorch {torch.__version__} {name:26s} {t:9.0f} tokens/s   ({tp} parameters)"
              f"   grok/PyTorch {g / t:.2f}x")


if __name__ == "__main__":
    main()
