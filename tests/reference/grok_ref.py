"""Independent PyTorch reference of the Grok-1 / Grok-2 forward pass (test oracle).

Written from ../shared/spec/grok-models.md only (never from the C engine), in
float64, for the parity tests in parity.py. It reads the same GGUF file as the
engine (gguf_reader.py), dequantizing quantized weights, and returns the logits
of every position of a prompt (no KV cache: full causal attention).

Spec sections implemented:
  §2   skeleton: x0 = E[tok]*embedding_scale; per layer, sandwich norms
       x += RMSNorm(Attn(RMSNorm(x))); h = RMSNorm(x);
       f = MoE(h) (Grok-1) or (MoE(h) + MLP(h))/sqrt(2) (Grok-2); x += RMSNorm(f);
       logits = (RMSNorm(x) @ W_out^T) * logit_scale, then the optional final softcap.
       RMSNorm y = x / sqrt(mean(x^2) + eps) * w (no 1+w offset).
  §3.1 GQA: query head h reads KV head h // (n_head / n_head_kv).
  §3.2 s = (q.k) * output_scale; s = cap*tanh(s/cap); s *= T(p) (reference Grok-2
       only, after the cap), T(p) = log2(p)/log2(L) for absolute 0-based p > L.
  §3.3 RoPE, NeoX rotate-half over the first n_rot dims: pairs (i, i + n_rot/2),
       inv_freq[i] = base^(-2i/n_rot). llamacpp mode honours rope.scaling keys the
       way ggml's rope_yarn does (§3.3 "Divergence in llama.cpp"; see _rope_angles).
  §4.1 router: g = h @ Wr^T (fp32 in the sources, float64 here); optional softcap;
       softmax over all experts; top-k by probability, ties to the lower index;
       gate weights NOT renormalised (reference) or renormalised (llamacpp).
  §4.2 expert y_e = W2_e (GELU(W1_e h) * (W3_e h)); tanh or exact-erf GELU.
  §4.3 dense MLP (Grok-2), same input h as the MoE.
  §8   GGUF keys and tensor names; defaults for keys older files lack.
  "Decisions" 1, 4, 5: the two numerics modes (resolve_numerics below).

Mode rules decided for this project (resolve_numerics):
  reference, Grok-1 : no router softcap (J1), no temperature, tanh GELU, plain RoPE.
  reference, Grok-2 : router softcap grok.router_logit_softcapping (default 30),
                      temperature length grok.attention.temperature_length
                      (default 1024), exact-erf GELU, plain RoPE with
                      rope.freq_base whatever rope.scaling.* keys say.
  llamacpp (both)   : no router softcap, no temperature, renormalised top-k,
                      tanh GELU, rope.scaling keys honoured (YaRN / linear).
                      (llama.cpp's default f16 KV cache is Numerics.kv_cache, which
                      parity.py sets per case: it is the engine's cache, not the model.)
  both modes        : final softcap = grok.final_logit_softcapping (default 0 =
                      none), attention softcap grok.attn_logit_softcapping
                      (default 30), q.k scale grok.attention.output_scale
                      (default 1/sqrt(128)), grok.embedding_scale (default
                      78.38367176906169), grok.logit_scale (default
                      0.5773502691896257), tied output when output.weight is absent.
"""

import dataclasses
import math

import numpy as np
import torch

import gguf_reader

torch.set_num_threads(2)
DT = torch.float64

ARCH = "grok"

# Defaults for keys that old Grok-1 GGUFs lack (spec §8, llama.cpp's load_arch_hparams).
DEFAULT_EMBEDDING_SCALE = 78.38367176906169
DEFAULT_LOGIT_SCALE = 0.5773502691896257
DEFAULT_ATTN_OUTPUT_SCALE = 0.08838834764831845   # 1/sqrt(128), not 1/sqrt(head_dim)
DEFAULT_ATTN_SOFTCAP = 30.0
DEFAULT_ROUTER_SOFTCAP = 30.0                    # used by reference Grok-2 only
DEFAULT_TEMPERATURE_LEN = 1024                   # used by reference Grok-2 only
DEFAULT_FREQ_BASE = 10000.0
DEFAULT_RMS_EPS = 1e-5
DEFAULT_YARN_BETA_FAST = 8.0                     # llama.cpp's default for grok (§8)
DEFAULT_YARN_BETA_SLOW = 1.0


@dataclasses.dataclass
class Rope:
    """RoPE parameters (§3.3). scaling: None, 'linear' or 'yarn' (ggml rope_yarn)."""
    n_rot: int
    freq_base: float
    scaling: str = None
    freq_scale: float = 1.0      # 1/rope.scaling.factor
    ext_factor: float = 0.0
    attn_factor: float = 1.0
    beta_fast: float = DEFAULT_YARN_BETA_FAST
    beta_slow: float = DEFAULT_YARN_BETA_SLOW
    n_ctx_orig: int = 0
    neox: bool = True            # rotate-half pairs (i, i+n/2); False = GPT-J pairs (switch tests)


@dataclasses.dataclass
class Numerics:
    """Every numerical choice of one forward pass, resolved from a file and a mode."""
    variant: str                 # "grok1" | "grok2"
    mode: str                    # "reference" | "llamacpp"
    embedding_scale: float
    logit_scale: float
    attn_scale: float            # multiplies q.k
    attn_softcap: float          # 0 = none
    router_softcap: float        # 0 = none
    temperature_len: int         # 0 = none
    final_softcap: float         # 0 = none
    gelu: str                    # "tanh" | "erf"
    renormalize: bool            # top-k gate weights renormalised to sum 1
    eps: float
    rope: Rope
    moe_dense_scale: float = 1.0 / math.sqrt(2.0)   # Grok-2 (MoE + MLP) combine
    # Switch tests only (selfcheck.py): the spec's choices are the defaults.
    use_dense_mlp: bool = True   # False: Grok-2's dense MLP left out
    kv_head_map: str = "div"     # "div": h // group (spec); "mod": query head h reads h % n_kv
    # Not part of the model's math: "q8_0" rounds the input rows of every matmul whose
    # weight is stored as Q8_0/Q4_0/IQ4_NL to Q8_0 blocks (fp32 -> llama.cpp's
    # quantize_row_q8_0), and as a k-quant or IQ4_XS to Q8_K blocks (quantize_row_q8_K),
    # as llama.cpp and this engine do inside their quantized dot products (parity.py
    # compares quantized models against both this and the exact-activation reference).
    act_quant: str = None
    # The KV cache's element type: "f16" rounds K (after RoPE) and V to float16, as
    # llama.cpp's default cache does (llamacpp mode), and, as its kernels meet an f16
    # cache in f16, also the queries (for q.k) and the softmax weights (for the sum of
    # V); "q8_0" rounds K and V to Q8_0
    # blocks of 32 along each head; None keeps them exact.
    kv_cache: str = None

    def replace(self, **kw):
        return dataclasses.replace(self, **kw)


def _key(f, name, default=None):
    return f.get(f"{ARCH}.{name}", default)


def resolve_numerics(f, mode, variant):
    """The numerics of GGUF file f in mode 'reference' or 'llamacpp' (spec Decisions 1, 4, 5)."""
    if mode not in ("reference", "llamacpp"):
        raise ValueError(f"unknown numerics mode {mode}")
    head_dim = int(_key(f, "attention.key_length",
                        _key(f, "embedding_length") // _key(f, "attention.head_count")))
    rope = Rope(n_rot=int(_key(f, "rope.dimension_count", head_dim)),
                freq_base=float(_key(f, "rope.freq_base", DEFAULT_FREQ_BASE)))
    scaling = _key(f, "rope.scaling.type", "none")
    if mode == "llamacpp" and scaling in ("linear", "yarn"):
        factor = float(_key(f, "rope.scaling.factor", 1.0))
        rope.scaling = scaling
        rope.freq_scale = 1.0 / factor if factor > 0 else 1.0
        if scaling == "yarn":
            rope.ext_factor = float(_key(f, "rope.scaling.yarn_ext_factor", 1.0))
            rope.attn_factor = float(_key(f, "rope.scaling.yarn_attn_factor", 1.0))
            rope.beta_fast = float(_key(f, "rope.scaling.yarn_beta_fast", DEFAULT_YARN_BETA_FAST))
            rope.beta_slow = float(_key(f, "rope.scaling.yarn_beta_slow", DEFAULT_YARN_BETA_SLOW))
            rope.n_ctx_orig = int(_key(f, "rope.scaling.original_context_length",
                                       _key(f, "context_length")))
    ref2 = mode == "reference" and variant == "grok2"
    return Numerics(
        variant=variant, mode=mode,
        embedding_scale=float(_key(f, "embedding_scale", DEFAULT_EMBEDDING_SCALE)),
        logit_scale=float(_key(f, "logit_scale", DEFAULT_LOGIT_SCALE)),
        attn_scale=float(_key(f, "attention.output_scale", DEFAULT_ATTN_OUTPUT_SCALE)),
        attn_softcap=float(_key(f, "attn_logit_softcapping", DEFAULT_ATTN_SOFTCAP)),
        router_softcap=float(_key(f, "router_logit_softcapping", DEFAULT_ROUTER_SOFTCAP)) if ref2 else 0.0,
        temperature_len=int(_key(f, "attention.temperature_length", DEFAULT_TEMPERATURE_LEN)) if ref2 else 0,
        final_softcap=float(_key(f, "final_logit_softcapping", 0.0)),
        gelu="erf" if ref2 else ("tanh_f16" if mode == "llamacpp" else "tanh"),
        renormalize=(mode == "llamacpp"),
        eps=float(_key(f, "attention.layer_norm_rms_epsilon", DEFAULT_RMS_EPS)),
        rope=rope,
    )


# ----------------------------------------------------------------- pieces ---

def rms_norm(x, w, eps):
    """§2: x / sqrt(mean(x^2) + eps) * w, over the last axis."""
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def to_f16(x):
    """x rounded to float16 (ties to even) and back, from float64 in one rounding
    (numpy converts float64 to float16 directly; torch would pass through float32)."""
    return torch.from_numpy(x.detach().numpy().astype(np.float16).astype(np.float64))


def gelu(x, kind):
    """§4.2: tanh approximation or exact erf; "tanh_f16" is the tanh form as llama.cpp's
    CPU kernel computes it (§4.2 "GELU variant": GGML_GELU_FP16, a table lookup on an
    fp16-rounded input): the fp32 activation rounded to fp16, GELU_tanh of that,
    rounded to fp16; x <= -10 gives 0 and x >= 10 gives x, unrounded."""
    if kind == "tanh":
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if kind == "erf":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if kind == "tanh_f16":
        x32 = x.detach().numpy().astype(np.float32)     # the engine's activations are fp32
        g = to_f16(gelu(torch.from_numpy(x32.astype(np.float16).astype(np.float64)), "tanh")).numpy()
        return torch.from_numpy(np.where(x32 <= -10, 0.0, np.where(x32 >= 10, x32.astype(np.float64), g)))
    raise ValueError(kind)


def softcap(x, cap):
    return cap * torch.tanh(x / cap) if cap > 0 else x


def yarn_corr_dims(n_dims, n_ctx_orig, freq_base, beta_fast, beta_slow):
    """ggml_rope_yarn_corr_dims: [floor(c(beta_fast)), ceil(c(beta_slow))] clamped to [0, n_dims-1],
    c(n_rot) = n_dims * ln(n_ctx_orig / (n_rot * 2 pi)) / (2 ln base)."""
    def corr_dim(n_rot):
        return n_dims * math.log(n_ctx_orig / (n_rot * 2 * math.pi)) / (2 * math.log(freq_base))
    low = max(0.0, math.floor(corr_dim(beta_fast)))
    high = min(n_dims - 1.0, math.ceil(corr_dim(beta_slow)))
    return low, high


def rope_angles(positions, rope):
    """Per (position, pair i) angle and the magnitude factor mscale (§3.3 and ggml rope_yarn).

    theta_extrap = p * base^(-2i/n_rot). Plain RoPE: theta = theta_extrap, mscale 1.
    Scaled (llamacpp mode): theta_interp = freq_scale * theta_extrap; with ext_factor != 0
    (YaRN), ramp_mix = (1 - clamp((i - low) / max(0.001, high - low), 0, 1)) * ext_factor,
    theta = theta_interp*(1 - ramp_mix) + theta_extrap*ramp_mix, and
    mscale = attn_factor * (1 + 0.1 ln(1/freq_scale)); else mscale = attn_factor.
    """
    half = rope.n_rot // 2
    i = torch.arange(half, dtype=DT)
    inv_freq = rope.freq_base ** (-2.0 * i / rope.n_rot)
    theta_extrap = torch.as_tensor(positions, dtype=DT)[:, None] * inv_freq[None, :]
    if rope.scaling is None:
        return theta_extrap, 1.0
    theta_interp = rope.freq_scale * theta_extrap
    mscale = rope.attn_factor
    if rope.ext_factor == 0.0:
        return theta_interp, mscale
    low, high = yarn_corr_dims(rope.n_rot, rope.n_ctx_orig, rope.freq_base,
                               rope.beta_fast, rope.beta_slow)
    y = (i - low) / max(0.001, high - low)        # i = i0/2, the pair index
    ramp_mix = (1.0 - torch.clamp(y, 0.0, 1.0)) * rope.ext_factor
    theta = theta_interp * (1.0 - ramp_mix) + theta_extrap * ramp_mix
    mscale *= 1.0 + 0.1 * math.log(1.0 / rope.freq_scale)
    return theta, mscale


def apply_rope(x, positions, rope):
    """x: [T, H, D]; rotates the first n_rot dims of every head (NeoX rotate-half)."""
    theta, mscale = rope_angles(positions, rope)
    cos = (torch.cos(theta) * mscale)[:, None, :]
    sin = (torch.sin(theta) * mscale)[:, None, :]
    half = rope.n_rot // 2
    out = x.clone()
    if rope.neox:
        a, b = x[..., :half], x[..., half:rope.n_rot]
        out[..., :half] = a * cos - b * sin
        out[..., half:rope.n_rot] = b * cos + a * sin
    else:   # GPT-J interleaved pairs (2i, 2i+1): used only to show the switch matters
        a, b = x[..., 0:rope.n_rot:2], x[..., 1:rope.n_rot:2]
        out[..., 0:rope.n_rot:2] = a * cos - b * sin
        out[..., 1:rope.n_rot:2] = b * cos + a * sin
    return out


def temperature(positions, length):
    """§3.2: T(p) = log2(p)/log2(L) for p > L, else 1 (absolute 0-based positions)."""
    p = torch.as_tensor(positions, dtype=DT)
    if length <= 0:
        return torch.ones_like(p)
    return torch.where(p > length, torch.log2(torch.clamp(p, min=1.0)) / math.log2(length),
                       torch.ones_like(p))


QUANT_TYPES = (2, 8, 10, 11, 12, 13, 14, 20, 23)  # Q4_0, Q8_0, Q2_K..Q6_K, IQ4_NL, IQ4_XS
Q8_K_TYPES = (10, 11, 12, 13, 14, 23)             # their dot products take Q8_K activations


def q8_0_rows(x):
    """Rounds fp32 activation rows to Q8_0 blocks of 32 and back (llama.cpp quantize_row_q8_0)."""
    a = x.detach().numpy().astype(np.float32)
    b = a.reshape(-1, 32)
    amax = np.abs(b).max(axis=1)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    xs = (b * inv[:, None]).astype(np.float32).astype(np.float64)
    q = np.sign(xs) * np.floor(np.abs(xs) + 0.5)                  # roundf
    d16 = d.astype(np.float16).astype(np.float32)                  # the block stores fp16 d
    out = (d16[:, None].astype(np.float64) * q).reshape(a.shape)
    return torch.from_numpy(out)


def _qtype(f, name):
    """The ggml type of a quantized weight (which activation rounding it implies), else 0."""
    t = f.tensors[name].type
    return t if t in QUANT_TYPES else 0


def q8_K_rows(x):
    """Rounds fp32 activation rows to Q8_K blocks of 256 and back (llama.cpp
    quantize_row_q8_K_ref): the first element of largest magnitude, with its sign,
    maps to -127 (iscale = -127/max in fp32), q = round-half-even(iscale*x) capped
    at 127, d = 1/iscale kept in fp32."""
    a = x.detach().numpy().astype(np.float32)
    b = a.reshape(-1, 256)
    idx = np.abs(b).argmax(axis=1)
    mx = b[np.arange(b.shape[0]), idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = np.where(mx != 0, np.float32(-127) / mx, np.float32(0)).astype(np.float32)
        d = np.where(mx != 0, np.float32(1) / iscale, np.float32(0)).astype(np.float32)
    q = np.minimum(np.rint((b * iscale[:, None]).astype(np.float32)), 127).astype(np.float64)
    out = (d[:, None].astype(np.float64) * q).reshape(a.shape)
    return torch.from_numpy(out)


def route(g, nm, n_used):
    """§4.1: router logits g [T, E] -> (expert ids [T, k], gate weights [T, k])."""
    g = softcap(g, nm.router_softcap)
    probs = torch.softmax(g, dim=-1)
    # top-k by probability, ties to the lower index: stable sort of -probs
    order = np.argsort(-probs.numpy(), axis=-1, kind="stable")[:, :n_used]
    ids = torch.from_numpy(np.ascontiguousarray(order))
    w = torch.gather(probs, 1, ids)
    if nm.renormalize:
        w = w / w.sum(-1, keepdim=True)
    return ids, w


# ------------------------------------------------------------------ model ---

class GrokModel:
    """Weights (float64 torch, torch layout) and hyper-parameters of one GGUF file."""

    def __init__(self, path_or_file):
        f = path_or_file if isinstance(path_or_file, gguf_reader.GGUFFile) else gguf_reader.GGUFFile(path_or_file)
        self.file = f
        arch = f.get("general.architecture")
        if arch != ARCH:
            raise ValueError(f"general.architecture is {arch!r}, not 'grok'")
        T = lambda name: torch.from_numpy(f.tensor(name))           # noqa: E731
        self.n_layer = int(_key(f, "block_count"))
        self.n_embd = int(_key(f, "embedding_length"))
        self.n_head = int(_key(f, "attention.head_count"))
        self.n_head_kv = int(_key(f, "attention.head_count_kv", self.n_head))
        self.head_dim = int(_key(f, "attention.key_length", self.n_embd // self.n_head))
        self.n_expert = int(_key(f, "expert_count"))
        self.n_expert_used = int(_key(f, "expert_used_count"))
        self.tok_embd = T("token_embd.weight")                       # [V, d]
        self.n_vocab = self.tok_embd.shape[0]
        self.output = T("output.weight") if "output.weight" in f.tensors else self.tok_embd
        self.tied = "output.weight" not in f.tensors
        self.output_norm = T("output_norm.weight")
        out_name = "output.weight" if "output.weight" in f.tensors else "token_embd.weight"
        self.top = dict(output=self.output, quantized={"output": _qtype(f, out_name)})
        # Grok-2 when the dense residual MLP exists (spec §4.3, §8).
        self.variant = "grok2" if "blk.0.ffn_gate.weight" in f.tensors else "grok1"
        self.layers = []
        for il in range(self.n_layer):
            p = f"blk.{il}."
            has = lambda n: p + n in f.tensors                     # noqa: E731
            if has("ffn_gate.weight") != (self.variant == "grok2"):
                raise ValueError(f"layer {il}: dense MLP present in some layers only")
            post = [n for n in ("layer_output_norm.weight", "post_ffw_norm.weight") if has(n)]
            if len(post) != 1:
                raise ValueError(f"layer {il}: expected one post-MoE norm, found {post}")
            L = dict(
                attn_norm=T(p + "attn_norm.weight"),
                wq=T(p + "attn_q.weight"), wk=T(p + "attn_k.weight"),
                wv=T(p + "attn_v.weight"), wo=T(p + "attn_output.weight"),
                attn_out_norm=T(p + "attn_output_norm.weight"),
                ffn_norm=T(p + "ffn_norm.weight"),
                router=T(p + "ffn_gate_inp.weight"),                 # [E, d]
                gate_exps=T(p + "ffn_gate_exps.weight"),             # [E, F, d]  W1
                up_exps=T(p + "ffn_up_exps.weight"),                 # [E, F, d]  W3
                down_exps=T(p + "ffn_down_exps.weight"),             # [E, d, F]  W2
                post_moe_norm=T(p + post[0]),
            )
            if self.variant == "grok2":
                L.update(gate=T(p + "ffn_gate.weight"), up=T(p + "ffn_up.weight"),
                         down=T(p + "ffn_down.weight"))
            names = dict(wq="attn_q", wk="attn_k", wv="attn_v", wo="attn_output", gate_exps="ffn_gate_exps",
                         up_exps="ffn_up_exps", down_exps="ffn_down_exps", gate="ffn_gate", up="ffn_up",
                         down="ffn_down")
            L["quantized"] = {k: _qtype(f, f"{p}{n}.weight") for k, n in names.items() if k in L}
            self.layers.append(L)

    def numerics(self, mode):
        return resolve_numerics(self.file, mode, self.variant)

    # -- forward -------------------------------------------------------------
    @staticmethod
    def linear(x, L, name, nm, expert=None):
        """x @ W^T for weight L[name] (expert slice `expert` of a stack), with the optional
        Q8_0 rounding of x that emulates quantized dot products (Numerics.act_quant)."""
        W = L[name] if expert is None else L[name][expert]
        qt = L["quantized"][name]
        if nm.act_quant == "q8_0" and qt:
            x = q8_K_rows(x) if qt in Q8_K_TYPES else q8_0_rows(x)
        return x @ W.T

    def attention(self, L, h, positions, nm):
        """§3: h [T, d] (normed) -> attention output [T, d], causal over the T tokens."""
        n_tok, D, H, Hkv = h.shape[0], self.head_dim, self.n_head, self.n_head_kv
        q = self.linear(h, L, "wq", nm).view(n_tok, H, D)
        k = self.linear(h, L, "wk", nm).view(n_tok, Hkv, D)
        v = self.linear(h, L, "wv", nm).view(n_tok, Hkv, D)
        q = apply_rope(q, positions, nm.rope)
        k = apply_rope(k, positions, nm.rope)
        if nm.kv_cache == "f16":
            q, k, v = to_f16(q), to_f16(k), to_f16(v)
        elif nm.kv_cache == "q8_0":
            k, v = q8_0_rows(k).view(k.shape), q8_0_rows(v).view(v.shape)
        group = H // Hkv
        heads = torch.arange(H)
        kv_of = heads // group if nm.kv_head_map == "div" else heads % Hkv
        k, v = k[:, kv_of, :], v[:, kv_of, :]                         # [T, H, D]
        s = torch.einsum("ihd,jhd->hij", q, k) * nm.attn_scale         # [H, Tq, Tk]
        s = softcap(s, nm.attn_softcap)
        s = s * temperature(positions, nm.temperature_len)[None, :, None]   # after the cap
        pos = torch.as_tensor(positions)
        causal = pos[None, :] <= pos[:, None]                         # key j <= query i
        s = s.masked_fill(~causal[None], float("-inf"))
        P = torch.softmax(s, dim=-1)
        if nm.kv_cache == "f16":
            P = to_f16(P)
        out = torch.einsum("hij,jhd->ihd", P, v).reshape(n_tok, H * D)
        return self.linear(out, L, "wo", nm)

    def moe(self, L, h, nm):
        """§4.1-4.2: h [T, d] -> sum over the top-k experts of gate * expert(h)."""
        ids, w = route(h @ L["router"].T, nm, self.n_expert_used)
        out = torch.zeros_like(h)
        for e in range(self.n_expert):
            rows, slot = torch.nonzero(ids == e, as_tuple=True)
            if rows.numel() == 0:
                continue
            x = h[rows]
            a = gelu(self.linear(x, L, "gate_exps", nm, e), nm.gelu) * self.linear(x, L, "up_exps", nm, e)
            y = self.linear(a, L, "down_exps", nm, e)
            out.index_add_(0, rows, w[rows, slot][:, None] * y)
        return out

    def dense_mlp(self, L, h, nm):
        """§4.3: Grok-2 dense residual MLP."""
        a = gelu(self.linear(h, L, "gate", nm), nm.gelu) * self.linear(h, L, "up", nm)
        return self.linear(a, L, "down", nm)

    def forward(self, tokens, nm, positions=None):
        """Logits [T, n_vocab] (float64) of every position of the token list."""
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        if positions is None:
            positions = list(range(len(tokens)))
        x = self.tok_embd[tokens] * nm.embedding_scale
        for L in self.layers:
            a = self.attention(L, rms_norm(x, L["attn_norm"], nm.eps), positions, nm)
            x = x + rms_norm(a, L["attn_out_norm"], nm.eps)
            h = rms_norm(x, L["ffn_norm"], nm.eps)
            f = self.moe(L, h, nm)
            if self.variant == "grok2" and nm.use_dense_mlp:
                # Note: a constant factor on f (this 1/sqrt 2, or llama.cpp's top-k
                # renormalisation on Grok-1) is invisible through the scale-invariant
                # post-MoE RMSNorm, up to eps.
                f = (f + self.dense_mlp(L, h, nm)) * nm.moe_dense_scale
            x = x + rms_norm(f, L["post_moe_norm"], nm.eps)
        y = rms_norm(x, self.output_norm, nm.eps)
        logits = self.linear(y, self.top, "output", nm) * nm.logit_scale
        return softcap(logits, nm.final_softcap)

    def router_margins(self, tokens, nm):
        """Per position, the smallest gap over layers between the k-th and (k+1)-th router
        probability: a near-tie there lets tiny numeric differences pick another expert
        (spec "Testing note"). Returns a float64 array [T]."""
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        positions = list(range(len(tokens)))
        x = self.tok_embd[tokens] * nm.embedding_scale
        margin = torch.full((len(tokens),), float("inf"), dtype=DT)
        k = self.n_expert_used
        for L in self.layers:
            a = self.attention(L, rms_norm(x, L["attn_norm"], nm.eps), positions, nm)
            x = x + rms_norm(a, L["attn_out_norm"], nm.eps)
            h = rms_norm(x, L["ffn_norm"], nm.eps)
            g = softcap(h @ L["router"].T, nm.router_softcap)
            p = torch.sort(torch.softmax(g, -1), dim=-1, descending=True).values
            if k < self.n_expert:
                margin = torch.minimum(margin, p[:, k - 1] - p[:, k])
            f = self.moe(L, h, nm)
            if self.variant == "grok2" and nm.use_dense_mlp:
                f = (f + self.dense_mlp(L, h, nm)) * nm.moe_dense_scale
            x = x + rms_norm(f, L["post_moe_norm"], nm.eps)
        return margin.numpy()


def load(path):
    return GrokModel(path)
