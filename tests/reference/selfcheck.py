"""Self-checks of the parity tooling, runnable without the C engine (ctest: parity_selfcheck).

What it checks, and why each matters for trusting the oracle (spec refs in brackets):
  1. GGUF writer <-> reader: every value type and tensor type round-trips; the two
     independent dequantizers agree; the vectorised quantizers match a naive
     element-by-element transcription of llama.cpp's reference quantizers
     (fp32 arithmetic emulated); the reader parses GGUF files written by
     llama.cpp's gguf-py (../shared/testdata/llamacpp-vocab) [§8].
  2. Known facts: T(p) = 1 for p <= L and T(2048)=1.1, T(8192)=1.3 for L=1024 [§3.2];
     renormalised top-k weights sum to 1, the reference ones to less [§4.1]; the
     YaRN correction dims for the real Grok-2 numbers are [17, 24] and the mscale
     is 1+0.1 ln 16 = 1.277 [§3.3]; plain RoPE preserves norms and makes q.k depend
     only on the position difference [§3.3].
  3. The vectorised reference (grok_ref.py, full causal attention) equals a naive
     loop version written separately here (one token at a time through a KV cache,
     per head, per pair, scalar math) on every model kind and both modes.
  4. Each numerics switch moves the reference's logits by more than the f32
     parity tolerance on the parity models (spec "Testing note"), so an engine
     that ignores a switch fails parity.py. Two choices are reported but cannot be
     tested: a constant factor on the MoE output (Grok-2's 1/sqrt 2, llama.cpp's
     top-k renormalisation on Grok-1) is removed by the scale-invariant post-MoE
     RMSNorm, up to eps.
Exit status 0 on success, 1 on failure.
"""

import math
import os
import struct
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_reader  # noqa: E402
import gguf_writer as gw  # noqa: E402
import grok_ref  # noqa: E402
import make_model  # noqa: E402

torch.set_num_threads(2)
F32_REL_TOL = 1e-4            # parity.py's f32 bound: 1e-4 * (1 + max|logit|)
SWITCH_MARGIN = 2.0           # a switch must move logits by at least this many tolerances

FAILURES = []


def check(ok, what):
    print(("  ok   " if ok else "  FAIL ") + what)
    if not ok:
        FAILURES.append(what)


# ------------------------------------------------------------ 1. GGUF I/O ---

def f32(x):
    return float(np.float32(x))


def naive_q8_0_block(xs):
    """llama.cpp quantize_row_q8_0_ref for one block, element by element in fp32."""
    amax = 0.0
    for v in xs:
        amax = max(amax, abs(f32(v)))
    d = f32(f32(amax) / 127.0)
    inv = f32(1.0 / d) if d != 0 else 0.0
    q = []
    for v in xs:
        x0 = f32(f32(v) * inv)
        r = math.floor(abs(x0) + 0.5)                      # roundf: half away from zero
        q.append(int(math.copysign(r, x0)) if x0 != 0 else 0)
    return struct.pack("<e", d) + struct.pack("<32b", *q)


def naive_q4_0_block(xs):
    """llama.cpp quantize_row_q4_0_ref for one block, element by element in fp32."""
    amax, mx = 0.0, 0.0
    for v in xs:
        if amax < abs(f32(v)):
            amax, mx = abs(f32(v)), f32(v)
    d = f32(mx / -8.0)
    inv = f32(1.0 / d) if d != 0 else 0.0
    q = []
    for v in xs:
        t = f32(f32(f32(v) * inv) + f32(8.5))
        q.append(min(15, int(t)))                          # (int8_t) truncates toward zero
    return struct.pack("<e", d) + bytes(q[j] | (q[j + 16] << 4) for j in range(16))


def check_gguf_io(tmp):
    print("GGUF writer / reader")
    rng = np.random.default_rng(7)
    # Quantizers vs the naive transcription, including hard blocks.
    blocks = [rng.standard_normal(32).astype(np.float32) for _ in range(200)]
    blocks.append(np.zeros(32, np.float32))
    blocks.append(np.array([1.0, -1.0] * 16, np.float32))        # tie in |max|: first wins
    blocks.append(np.array([-1.0, 1.0] * 16, np.float32))
    blocks.append((np.arange(32, dtype=np.float32) - 16) / 4)   # exact .5 cases
    blocks.append(np.array([3e-3] * 31 + [-7.0], np.float32))
    data = np.stack(blocks)
    check(gw.quantize_q8_0(data) == b"".join(naive_q8_0_block(b) for b in blocks),
          "Q8_0 quantizer equals llama.cpp's reference transcription")
    check(gw.quantize_q4_0(data) == b"".join(naive_q4_0_block(b) for b in blocks),
          "Q4_0 quantizer equals llama.cpp's reference transcription")
    # A known Q4_0 block: max element -8 -> d = 1, q = x + 8.
    x = np.array([-8.0] + [float(i % 8) for i in range(31)], np.float32)
    back = gw.roundtrip(x, gw.Q4_0)
    check(np.array_equal(back, x), "Q4_0 of integers in [-8, 7] with max -8 is exact")
    # bf16 rounding: ties to even.
    v = np.array([1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, 1.0 + 2 ** -9, -2.5], np.float32)
    check(np.array_equal(gw.roundtrip(v, gw.BF16), np.array([1.0, 1.0 + 4 * 2 ** -8, 1.0, -2.5], np.float32)),
          "bf16 rounds to nearest even")

    # Round trip of every kv type and tensor type.
    w = gw.GGUFWriter()
    kvs = [("a.u8", gw.T_U8, 200), ("a.i8", gw.T_I8, -100), ("a.u16", gw.T_U16, 60000),
           ("a.i16", gw.T_I16, -30000), ("a.u32", gw.T_U32, 4000000000), ("a.i32", gw.T_I32, -2000000000),
           ("a.f32", gw.T_F32, 0.5), ("a.bool", gw.T_BOOL, True), ("a.str", gw.T_STRING, "grök"),
           ("a.u64", gw.T_U64, 2 ** 63 + 5), ("a.i64", gw.T_I64, -2 ** 62), ("a.f64", gw.T_F64, math.pi),
           ("a.arr_s", gw.T_ARRAY, (gw.T_STRING, ["x", "", "zz"])),
           ("a.arr_i", gw.T_ARRAY, (gw.T_I32, [1, -2, 3])),
           ("a.arr_a", gw.T_ARRAY, (gw.T_ARRAY, [(gw.T_U8, [1, 2]), (gw.T_U8, [])]))]
    for k, t, v in kvs:
        w.add(k, t, v)
    tens = {}
    for tname in ("f32", "f16", "bf16", "q8_0", "q4_0"):
        arr = rng.standard_normal((3, 5, 64)).astype(np.float32)
        w.add_tensor(f"t.{tname}", arr, gw.TYPE_BY_NAME[tname])
        tens[tname] = arr
    w.add_tensor("t.odd", rng.standard_normal(7).astype(np.float32), gw.F32)   # forces padding
    path = os.path.join(tmp, "io.gguf")
    w.write(path)
    f = gguf_reader.GGUFFile(path)
    ok = all(f.kv_type[k] == t for k, t, _ in kvs)
    ok &= all(f.kv[k] == v for k, t, v in kvs if t not in (gw.T_ARRAY,))
    ok &= f.kv["a.arr_s"] == ["x", "", "zz"] and f.kv["a.arr_i"] == [1, -2, 3]
    ok &= f.kv["a.arr_a"] == [[1, 2], []]
    check(ok, "every metadata value type round-trips")
    ok = True
    for tname, arr in tens.items():
        t = f.tensors[f"t.{tname}"]
        ok &= t.ne == (64, 5, 3) and t.offset % 32 == 0
        exp = gw.roundtrip(arr, gw.TYPE_BY_NAME[tname]).astype(np.float64)
        ok &= np.array_equal(f.tensor(f"t.{tname}"), exp)
        ok &= f.raw(f"t.{tname}") == gw.encode(arr, gw.TYPE_BY_NAME[tname])
    check(ok, "every tensor type round-trips; reader and writer dequantizers agree; ne reversed")
    check(f.data_start % 32 == 0 and f.tensors["t.odd"].ne == (7,), "alignment and 1-d tensors")
    # Files written by llama.cpp's own gguf-py.
    vocab_dir = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "testdata", "llamacpp-vocab")
    for name in ("ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-spm.gguf"):
        p = os.path.join(vocab_dir, name)
        if not os.path.exists(p):
            print(f"  skip {name} (not found)")
            continue
        g = gguf_reader.GGUFFile(p)
        toks = g.kv.get("tokenizer.ggml.tokens", [])
        check(len(toks) > 30000 and g.kv["general.architecture"] in ("gpt2", "llama"),
              f"parses llama.cpp's {name} ({len(g.kv)} keys, {len(toks)} tokens)")


# ------------------------------------------------------------ 2. known facts ---

def check_facts():
    print("Known facts")
    T = grok_ref.temperature(list(range(0, 1025)), 1024)
    check(bool((T == 1).all()), "temperature is 1 for every p <= L")
    T = grok_ref.temperature([2048, 8192, 32768], 1024)
    check(torch.allclose(T, torch.tensor([1.1, 1.3, 1.5], dtype=torch.float64)), "T(2048)=1.1, T(8192)=1.3, T(32768)=1.5")
    g = torch.randn(100, 8, dtype=torch.float64) * 3
    nm = grok_ref.Numerics(variant="grok2", mode="reference", embedding_scale=1, logit_scale=1, attn_scale=1,
                           attn_softcap=0, router_softcap=30, temperature_len=0, final_softcap=0, gelu="erf",
                           renormalize=False, eps=1e-5, rope=grok_ref.Rope(16, 1e4))
    ids, w = grok_ref.route(g, nm, 2)
    check(bool((w.sum(-1) < 1).all()), "reference top-2 gate weights sum to < 1")
    p = torch.softmax(30 * torch.tanh(g / 30), -1)
    check(torch.equal(ids[:, 0], p.argmax(-1)) and bool((w[:, 0] >= w[:, 1]).all()), "top-2 picks the largest probabilities")
    _, w2 = grok_ref.route(g, nm.replace(renormalize=True), 2)
    check(torch.allclose(w2.sum(-1), torch.ones(100, dtype=torch.float64)), "renormalised top-2 weights sum to 1")
    ids, _ = grok_ref.route(torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0, 0, 0, 0]], dtype=torch.float64),
                            nm.replace(router_softcap=0), 2)
    check(ids.tolist() == [[1, 2]], "router ties go to the lower expert index")
    low, high = grok_ref.yarn_corr_dims(128, 8192, 208533496.0, 8.0, 1.0)
    check((low, high) == (17, 24), f"YaRN corr dims for Grok-2 = [17, 24] (got [{low}, {high}])")
    rope = grok_ref.Rope(128, 208533496.0, "yarn", 1 / 16, 1.0, 1.0, 8.0, 1.0, 8192)
    theta, ms = grok_ref.rope_angles([1000], rope)
    ext = 1000 * 208533496.0 ** (-2.0 * torch.arange(64, dtype=torch.float64) / 128)
    check(abs(ms - 1.2772588722239781) < 1e-12, f"YaRN mscale = 1 + 0.1 ln 16 (got {ms:.6f})")
    check(torch.allclose(theta[0, :17], ext[:17]) and torch.allclose(theta[0, 25:], ext[25:] / 16),
          "YaRN keeps pairs < 17 and divides pairs > 24 by 16")
    rope = grok_ref.Rope(16, 10000.0)
    q = torch.randn(1, 1, 16, dtype=torch.float64)
    k = torch.randn(1, 1, 16, dtype=torch.float64)
    qa, ka = grok_ref.apply_rope(q, [9], rope), grok_ref.apply_rope(k, [4], rope)
    qb, kb = grok_ref.apply_rope(q, [30], rope), grok_ref.apply_rope(k, [25], rope)
    check(abs(float((qa * ka).sum() - (qb * kb).sum())) < 1e-12, "RoPE q.k depends only on p - j")
    check(abs(float(qa.norm() - q.norm())) < 1e-12, "plain RoPE preserves the norm")
    x = torch.linspace(-4, 4, 81, dtype=torch.float64)
    dg = (grok_ref.gelu(x, "tanh") - grok_ref.gelu(x, "erf")).abs().max()
    check(0 < dg < 1e-3, f"tanh and erf GELU differ by {dg:.1e} (< 1e-3)")


# ------------------------------------------------------ 3. naive loop version ---

def naive_forward(m, tokens, nm):
    """One token at a time through a KV cache, scalar math for every non-linearity."""
    H, Hkv, D = m.n_head, m.n_head_kv, m.head_dim
    group = H // Hkv
    rope = nm.rope
    half = rope.n_rot // 2

    def rot(vec, p):                        # vec: list of D floats for one head
        out = list(vec)
        if rope.scaling is None:
            low = high = None
        else:
            low, high = grok_ref.yarn_corr_dims(rope.n_rot, rope.n_ctx_orig, rope.freq_base,
                                                rope.beta_fast, rope.beta_slow) if rope.ext_factor else (0, 0)
        for i in range(half):
            th_e = p / (rope.freq_base ** (2.0 * i / rope.n_rot))
            th, ms = th_e, 1.0
            if rope.scaling is not None:
                th_i = th_e * rope.freq_scale
                ms = rope.attn_factor
                th = th_i
                if rope.ext_factor:
                    y = (i - low) / max(0.001, high - low)
                    mix = (1 - min(1.0, max(0.0, y))) * rope.ext_factor
                    th = th_i * (1 - mix) + th_e * mix
                    ms *= 1 + 0.1 * math.log(1 / rope.freq_scale)
            c, s = math.cos(th) * ms, math.sin(th) * ms
            a, b = vec[i], vec[i + half]
            out[i], out[i + half] = a * c - b * s, b * c + a * s
        return out

    def norm(x, w):
        ms = sum(v * v for v in x) / len(x)
        return [v / math.sqrt(ms + nm.eps) * float(wi) for v, wi in zip(x, w)]

    def gelu(v):
        if nm.gelu == "erf":
            return 0.5 * v * (1 + math.erf(v / math.sqrt(2)))
        if nm.gelu == "tanh_f16":           # llama.cpp's CPU table: fp16 in, fp16 out
            v32 = float(np.float32(v))
            if v32 <= -10 or v32 >= 10:
                return 0.0 if v32 <= -10 else v32
            h = float(np.float16(v32))
            return float(np.float16(0.5 * h * (1 + math.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))))
        return 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))

    def cap(v, c):
        return c * math.tanh(v / c) if c > 0 else v

    def mv(W, x):                           # W [out, in] torch, x list -> list
        return (W @ torch.tensor(x, dtype=torch.float64)).tolist()

    def ffn(Wg, Wu, Wd, x):
        g, u = mv(Wg, x), mv(Wu, x)
        return mv(Wd, [gelu(a) * b for a, b in zip(g, u)])

    cache = [([], []) for _ in m.layers]    # per layer: keys, values (lists of [Hkv][D])
    all_logits = []
    for p, tok in enumerate(tokens):
        x = [float(v) * nm.embedding_scale for v in m.tok_embd[tok]]
        for L, (Kc, Vc) in zip(m.layers, cache):
            h = norm(x, L["attn_norm"])
            q, k, v = mv(L["wq"], h), mv(L["wk"], h), mv(L["wv"], h)
            Kc.append([rot(k[j * D:(j + 1) * D], p) for j in range(Hkv)])
            Vc.append([v[j * D:(j + 1) * D] for j in range(Hkv)])
            attn = []
            for hh in range(H):
                qh = rot(q[hh * D:(hh + 1) * D], p)
                kv = hh // group
                scores = []
                for j in range(p + 1):
                    s = sum(a * b for a, b in zip(qh, Kc[j][kv])) * nm.attn_scale
                    s = cap(s, nm.attn_softcap)
                    if nm.temperature_len > 0 and p > nm.temperature_len:
                        s *= math.log2(p) / math.log2(nm.temperature_len)
                    scores.append(s)
                mx = max(scores)
                e = [math.exp(s - mx) for s in scores]
                z = sum(e)
                attn += [sum(e[j] / z * Vc[j][kv][d] for j in range(p + 1)) for d in range(D)]
            a = mv(L["wo"], attn)
            x = [xi + ai for xi, ai in zip(x, norm(a, L["attn_out_norm"]))]
            h = norm(x, L["ffn_norm"])
            g = [cap(v, nm.router_softcap) for v in mv(L["router"], h)]
            mx = max(g)
            e = [math.exp(v - mx) for v in g]
            probs = [v / sum(e) for v in e]
            top = sorted(range(len(probs)), key=lambda i: (-probs[i], i))[:m.n_expert_used]
            wts = [probs[i] for i in top]
            if nm.renormalize:
                wts = [w / sum(wts) for w in wts]
            f = [0.0] * m.n_embd
            for e_id, wt in zip(top, wts):
                y = ffn(L["gate_exps"][e_id], L["up_exps"][e_id], L["down_exps"][e_id], h)
                f = [fi + wt * yi for fi, yi in zip(f, y)]
            if m.variant == "grok2":
                dm = ffn(L["gate"], L["up"], L["down"], h)
                f = [(a + b) / math.sqrt(2) for a, b in zip(f, dm)]
            x = [xi + fi for xi, fi in zip(x, norm(f, L["post_moe_norm"]))]
        y = norm(x, m.output_norm)
        logits = [cap(v * nm.logit_scale, nm.final_softcap) for v in mv(m.output, y)]
        all_logits.append(logits)
    return torch.tensor(all_logits, dtype=torch.float64)


def check_naive(tmp):
    print("Vectorised reference vs naive KV-cache loop (24 tokens, crossing temperature_len 16)")
    toks = np.random.default_rng(3).integers(0, make_model.N_VOCAB, 24).tolist()
    for kind in make_model.KINDS:
        path = os.path.join(tmp, f"{kind}.gguf")
        make_model.build(path, kind, "f32", seed=11)
        m = grok_ref.load(path)
        for mode in ("reference", "llamacpp"):
            nm = m.numerics(mode)
            a = m.forward(toks, nm)
            b = naive_forward(m, toks, nm)
            d = float((a - b).abs().max())
            check(d < 1e-10, f"{kind:9s} {mode:9s}: max|diff| = {d:.1e}")


# ------------------------------------------------------- 4. switch effects ---

def switch_effects(tmp, tokens):
    """(description, kind, mode, numerics override) -> the logits must move by > tolerance."""
    import dataclasses
    models = {}
    for kind in make_model.KINDS:
        path = os.path.join(tmp, f"sw-{kind}.gguf")
        make_model.build(path, kind, "f32", seed=0)
        models[kind] = grok_ref.load(path)
    d128 = grok_ref.DEFAULT_ATTN_OUTPUT_SCALE

    def rope(nm, **kw):
        return nm.replace(rope=dataclasses.replace(nm.rope, **kw))

    cases = [
        # (what an engine might get wrong, kind, mode, numerics -> wrong numerics)
        ("router softcap ignored (ref Grok-2)", "grok2", "reference", lambda n: n.replace(router_softcap=0)),
        ("temperature ignored (ref Grok-2)", "grok2", "reference", lambda n: n.replace(temperature_len=0)),
        ("temperature before the cap (ref Grok-2)", "grok2", "reference", None),
        ("temperature at p+1 (ref Grok-2)", "grok2", "reference", None),
        ("tanh GELU instead of erf (ref Grok-2)", "grok2", "reference", lambda n: n.replace(gelu="tanh")),
        ("final softcap ignored", "grok2", "reference", lambda n: n.replace(final_softcap=0)),
        ("dense MLP left out (Grok-2)", "grok2", "reference", lambda n: n.replace(use_dense_mlp=False)),
        ("router softcap applied to ref Grok-1", "grok1", "reference", lambda n: n.replace(router_softcap=5.0)),
        ("erf GELU in ref Grok-1", "grok1", "reference", lambda n: n.replace(gelu="erf")),
        ("top-k renormalised in reference", "grok2", "reference", lambda n: n.replace(renormalize=True)),
        ("top-k not renormalised in llamacpp", "grok2", "llamacpp", lambda n: n.replace(renormalize=False)),
        ("router softcap applied in llamacpp", "grok2", "llamacpp", lambda n: n.replace(router_softcap=6.0)),
        ("temperature applied in llamacpp", "grok2", "llamacpp", lambda n: n.replace(temperature_len=16)),
        ("erf GELU in llamacpp Grok-2", "grok2", "llamacpp", lambda n: n.replace(gelu="erf")),
        ("attention softcap ignored", "grok1", "reference", lambda n: n.replace(attn_softcap=0)),
        ("attention.output_scale key ignored", "grok1", "reference", lambda n: n.replace(attn_scale=d128)),
        ("embedding_scale key ignored", "grok1", "reference",
         lambda n: n.replace(embedding_scale=grok_ref.DEFAULT_EMBEDDING_SCALE)),
        ("logit_scale key ignored", "grok1", "reference", lambda n: n.replace(logit_scale=grok_ref.DEFAULT_LOGIT_SCALE)),
        ("attn softcap key ignored (30)", "grok1", "reference", lambda n: n.replace(attn_softcap=30.0)),
        ("old file: q.k scale 1/sqrt(head_dim)", "grok1old", "reference", lambda n: n.replace(attn_scale=0.25)),
        ("old file: embedding scale sqrt(n_embd)", "grok1old", "reference", lambda n: n.replace(embedding_scale=8.0)),
        ("old file: embedding scale 1", "grok1old", "reference", lambda n: n.replace(embedding_scale=1.0)),
        ("old file: logit scale 1", "grok1old", "reference", lambda n: n.replace(logit_scale=1.0)),
        ("old file: attn softcap 30 ignored", "grok1old", "reference", lambda n: n.replace(attn_softcap=0)),
        ("GQA head map h % n_kv", "grok1", "reference", lambda n: n.replace(kv_head_map="mod")),
        ("GPT-J RoPE pairs", "grok1", "reference", lambda n: rope(n, neox=False)),
        ("RoPE base 10000 (Grok-2)", "grok2", "reference", lambda n: rope(n, freq_base=10000.0)),
        ("YaRN keys honoured in reference", "grok2yarn", "reference",
         lambda n: models["grok2yarn"].numerics("llamacpp").replace(
             **{k: getattr(n, k) for k in ("router_softcap", "temperature_len", "gelu", "renormalize")})),
        ("YaRN keys ignored in llamacpp", "grok2yarn", "llamacpp", lambda n: rope(n, scaling=None)),
        ("YaRN without mscale", "grok2yarn", "llamacpp", lambda n: rope(n, attn_factor=1 / (1 + 0.1 * math.log(16)))),
        ("YaRN without the ramp (linear)", "grok2yarn", "llamacpp", lambda n: rope(n, ext_factor=0.0)),
    ]
    # Choices the post-MoE RMSNorm makes invisible (it is scale-invariant up to eps), so no
    # test can see them, and an engine that gets them wrong is not wrong in effect.
    invisible = [
        ("(MoE+MLP) not divided by sqrt 2", "grok2", "reference", lambda n: n.replace(moe_dense_scale=1.0)),
        ("top-k renormalised on Grok-1 (MoE only)", "grok1", "reference", lambda n: n.replace(renormalize=True)),
    ]
    print(f"Switch effects (prompt of {len(tokens)} tokens; each must exceed {SWITCH_MARGIN:g} x the f32 tolerance)")
    for what, kind, mode, alter in cases:
        m = models[kind]
        nm = m.numerics(mode)
        base = m.forward(tokens, nm)
        if what.startswith("temperature before the cap"):
            alt = _forward_patched(m, tokens, nm, temp_first=True)
        elif what.startswith("temperature at p+1"):
            alt = _forward_patched(m, tokens, nm, temp_offset=1)
        else:
            alt = m.forward(tokens, alter(nm))
        tol = F32_REL_TOL * (1 + float(base.abs().max()))
        d = float((alt - base).abs().max())
        check(d > SWITCH_MARGIN * tol, f"{what:42s} {kind:9s} {mode:9s} max|dlogit| {d:.2e} = {d / tol:8.1f} x tol")
    for what, kind, mode, alter in invisible:
        m = models[kind]
        nm = m.numerics(mode)
        base = m.forward(tokens, nm)
        tol = F32_REL_TOL * (1 + float(base.abs().max()))
        d = float((m.forward(tokens, alter(nm)) - base).abs().max())
        print(f"  info {what:42s} {kind:9s} {mode:9s} max|dlogit| {d:.2e} = {d / tol:8.1f} x tol (invisible)")


def _forward_patched(m, tokens, nm, temp_first=False, temp_offset=0):
    """The forward with a wrong temperature placement, by patching grok_ref's helpers."""
    orig_softcap, orig_temp = grok_ref.softcap, grok_ref.temperature
    try:
        if temp_offset:
            grok_ref.temperature = lambda pos, L: orig_temp([p + temp_offset for p in pos], L)
        if temp_first:
            # apply T before the cap: cap(s*T)/T undoes the later multiply's order
            def attn(L, h, positions, nm2, _orig=grok_ref.GrokModel.attention):
                T = orig_temp(positions, nm2.temperature_len)[None, :, None]
                grok_ref.softcap = lambda s, c: orig_softcap(s * T, c) / T if c == nm2.attn_softcap else orig_softcap(s, c)
                try:
                    return _orig(m, L, h, positions, nm2)
                finally:
                    grok_ref.softcap = orig_softcap
            m.attention = attn
        return m.forward(tokens, nm)
    finally:
        grok_ref.softcap, grok_ref.temperature = orig_softcap, orig_temp
        m.__dict__.pop("attention", None)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        check_gguf_io(tmp)
        check_facts()
        check_naive(tmp)
        tokens = np.random.default_rng(1).integers(0, make_model.N_VOCAB, 48).tolist()
        switch_effects(tmp, tokens)
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        return 1
    print("all self-checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
