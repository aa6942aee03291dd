#!/usr/bin/python3
"""Parity driver: C engine logits vs the independent PyTorch reference (ctest parity_*).

For each case (model kind x weight type x numerics mode) it builds a small random
Grok model (make_model.py), runs the engine on a random prompt of >= 48 tokens

    GROK run -m FILE --tokens ID,ID,... -n 0 --numerics MODE --dump-logits OUT --threads 2
    (again with --ubatch 1: one token at a time through the KV cache; and --ubatch 7)

reads OUT (little-endian float32, one row of n_vocab per prompt position) and
compares every position with grok_ref.py run on the same file (spec Decisions 1-5;
the numerics rules are in grok_ref.py's docstring). Errors are reported relative
to s = 1 + max|reference logit|, per position p: e_p = max_v |engine - ref| / s.

Pass rules:
  f32        max_p e_p <= 1e-4, and every KV-cache run equals the full run within 1e-4.
  f16, bf16  max_p e_p <= 1e-4 (the reference runs on the exact rounded weights), and
             KV-cache runs within the same bound of the full run. The brief's first
             bound was 1e-2, for an engine that rounds activations to f16/bf16 as
             llama.cpp does; this engine's f16/bf16 dot products take fp32 activations
             (measured error ~1e-6), so the f32 bound applies and catches the subtler
             features too. Loosen it if the engine starts rounding activations.
  q8_0, q4_0 (and the k-quant mixes q2_k, q3_k_m, q4_k_m, q5_k_m, q6_k, written by
             `grok quantize` from a --wide f32 model; their k-quant weights take Q8_K
             activation blocks of 256, which the act_quant reference emulates too)
             The engine rounds activations to Q8_0 blocks inside quantized matmuls (as
             llama.cpp does), which moves these small, deliberately sensitive models'
             logits by ~1-3% and, where a router decision is close, picks another expert
             (a jump of up to ~0.4 at a few positions). So:
             - median_p e_p <= QUANT_MEDIAN_BOUND against the exact reference (dequantized
               weights, exact activations): catches a wrong block format or kernel;
             - median_p e_p <= QUANT_TIGHT_BOUND against the exact reference OR against the
               reference that emulates the Q8_0 activation rounding (act_quant): catches
               small kernel errors whichever way the engine computes (measured: ~1e-7
               against the emulation, i.e. the engine rounds exactly like llama.cpp);
             - max_p e_p <= QUANT_MAX_BOUND: no position is garbage;
             - same top-1 token at >= 95% of positions, where a position also agrees when
               the engine's top token is within QUANT_MEDIAN_BOUND*s of the reference's
               best logit (a near-tie; the strict share is printed too);
             - KV-cache runs: the same median / max rules against the full run.
The prompt is chosen (seeded) so that no router decision of the reference is a
near-tie (spec "Testing note"), which would let fp32 rounding pick another expert.

Usage: parity.py --grok path/to/grok [--quick] [--case GLOB[,GLOB...]] [--list] [--keep DIR]
Exit: 0 all pass, 1 a failure, 77 the engine binary is missing.
"""

import argparse
import fnmatch
import os
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grok_ref  # noqa: E402
import make_model  # noqa: E402

# Bounds, as fractions of s = 1 + max|reference logit|.
# Measured on the engine of 2026-11-28 (64-token prompts): f32/f16/bf16 max <= 1.2e-6;
# q8_0/q4_0 median 1.4e-2..2.6e-2 and max <= 0.2 against the exact reference, median
# <= 1e-7 against the Q8_0-activation reference; strict top-1 90.6%..96.9%, near-tie
# tolerant top-1 100%; KV-cache runs bit-identical to the full runs.
MAX_BOUND = {"f32": 1e-4, "f16": 1e-4, "bf16": 1e-4}    # max over positions
# f16 KV cache: the engine rounds fp32 K/V, the reference float64 ones, so a value on a
# rounding boundary may land one f16 step (2^-11 relative) apart; measured 1.2e-5 in the
# release build, 1.9e-4 in the clang sanitizer build (other fp32 contraction).
MAX_BOUND["kv"] = 1e-3
# llamacpp numerics read GELU from llama.cpp's fp16 table (an fp16-rounded input, an
# fp16 output), and with an f16 cache round q and the softmax weights to fp16 too: the
# same one-step flips, measured up to 2e-4 on float weights (median 1e-5).
MAX_BOUND["llamacpp"] = 1e-3
QUANT_MEDIAN_BOUND = {"q8_0": 0.05, "q4_0": 0.05}        # median over positions, exact reference
QUANT_TIGHT_BOUND = 1e-3                                 # median, exact or act_quant reference
QUANT_MAX_BOUND = 0.5                                    # max over positions, quantized types
TOP1_MIN = 0.95                                          # quantized: share of agreeing positions
MIN_ROUTER_MARGIN = 1e-4      # smallest k-th vs (k+1)-th router probability gap allowed in a prompt
PROMPT_LEN, PROMPT_LEN_QUICK = 64, 48
UBATCHES, UBATCHES_QUICK = (1, 7), (1,)
ENGINE_TIMEOUT_S = 300
MODEL_SEED = 0
QUANT = ("q8_0", "q4_0")
# llama.cpp's mixes, written by `grok quantize` from a --wide f32 model (rows of 256):
# k-quant weights take Q8_K activations (attn_k/attn_v are Q8_0 in these 8-expert
# mixes), which the act_quant reference emulates per weight type.
MIXES = ("q2_k", "q3_k_m", "q4_k_m", "q5_k_m", "q6_k")
QUANT += MIXES
QUANT_MEDIAN_BOUND.update({m: 0.05 for m in MIXES})
# The shipped trained model (Grok-2 shape), for the llamacpp cases of quantized weights.
DEFAULT_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models",
                             "default.gguf")
# Files that llama.cpp's quantizer wrote (tests/fixtures/llamacpp/README.md).
FIXTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "llamacpp")
FIXTURES = {"llama_iq4_xs": "grok1-small-iq4_xs.gguf", "llama_q2_k": "grok1-small-q2_k.gguf",
            "llama_q4_k_m": "grok1-small-q4_k_m.gguf"}
QUANT += tuple(FIXTURES)
QUANT_MEDIAN_BOUND.update({m: 0.05 for m in FIXTURES})


class Case:
    """cache: the KV cache type given to the engine (--cache-type), which the reference
    emulates; None = the engine's default for the mode (f32 reference, f16 llamacpp).
    The weight-type cases pin f32 so that their bounds judge the weights alone."""

    def __init__(self, kind, wtype, mode, cache="f32"):
        self.kind, self.wtype, self.mode, self.cache = kind, wtype, mode, cache
        self.name = ("" if cache == "f32" else f"kv{cache or 'default'}-") + f"{kind}-{wtype}-{mode}"
        self.bounds = wtype if cache == "f32" else "kv"   # which bounds judge the case
        if mode == "llamacpp" and self.bounds in ("f32", "f16", "bf16"):
            self.bounds = "llamacpp"

    def ref_cache(self):
        if self.cache is None:
            return "f16" if self.mode == "llamacpp" else None
        return None if self.cache == "f32" else self.cache


def all_cases():
    cases = [Case(k, "f32", m) for k in make_model.KINDS for m in ("reference", "llamacpp")]
    for t in ("f16", "bf16", "q8_0", "q4_0"):
        cases += [Case("grok1", t, "reference"), Case("grok2", t, "reference")]
    cases += [Case("grok2", t, "llamacpp") for t in ("f16", "bf16")]
    # Quantized weights in llamacpp numerics run on the shipped trained model: there every
    # fp16 rounding of llama.cpp's GELU table, and every Q8_0 activation rounding, sits
    # in a model whose router choices are clear. In a random model with the table, a value
    # that lands on a rounding boundary in one of engine (fp32) and emulation (float64)
    # but not the other flips a later near-tie router choice too often to judge by.
    cases += [Case("default", t, "llamacpp") for t in ("q8_0", "q4_0")]
    # one case per mix: Grok-1 shape for the low-bit mixes, Grok-2 shape (dense MLP,
    # separate Q6_K output) for the others. Only one in llamacpp mode: there (no router
    # softcap) a Q8_0/Q8_K activation value that lands on a rounding boundary in one of
    # engine and emulation but not the other can flip a later router choice and move
    # every following position (seen for Q8_0 as much as for the k-quants on the wide
    # models); reference mode's softcapped router absorbs it.
    cases += [Case("grok1", "q2_k", "reference"), Case("grok1", "q3_k_m", "reference"),
              Case("grok2", "q4_k_m", "reference"), Case("grok2", "q5_k_m", "reference"),
              Case("grok2", "q6_k", "llamacpp")]
    cases += [Case("grok1", t, "reference") for t in FIXTURES]
    # The KV cache types (the q8_0 cache needs head_dim % 32 == 0, which these small
    # models lack: test_model checks it against the f32 cache).
    cases += [Case("grok2", "f32", "llamacpp", None), Case("grok1", "f32", "reference", "f16")]
    return cases


def choose_prompt(model, numerics, n_tok, seed):
    """Random token ids whose router decisions in the reference(s) are no near-ties."""
    for attempt in range(200):
        rng = np.random.default_rng(seed * 1000 + attempt)
        toks = rng.integers(0, model.n_vocab, n_tok).tolist()
        if all(float(model.router_margins(toks, nm).min()) >= MIN_ROUTER_MARGIN for nm in numerics):
            return toks
    raise RuntimeError("no prompt without router near-ties found")


def run_engine(grok, model_path, tokens, mode, out, ubatch=None, cache=None):
    """Runs the engine; returns (logits float64 [n] or None, error message or None)."""
    cmd = [grok, "run", "-m", model_path, "--tokens", ",".join(map(str, tokens)), "-n", "0",
           "--numerics", mode, "--dump-logits", out, "--threads", "2"]
    if ubatch:
        cmd += ["--ubatch", str(ubatch)]
    if cache:
        cmd += ["--cache-type", cache]
    if os.path.exists(out):
        os.remove(out)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=ENGINE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {ENGINE_TIMEOUT_S}s"
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-5:]
        return None, f"exit {r.returncode}: " + " | ".join(tail)
    if not os.path.exists(out):
        return None, "engine wrote no logits file"
    return np.fromfile(out, dtype="<f4").astype(np.float64), None


def errors(a, b, s):
    """Per-position max|a - b| / s."""
    return np.abs(a - b).max(axis=1) / s


def judge(label, eng, ref, ref_q, wtype, s, tokens, margins):
    """Stats dict and failure messages for one engine run against the reference(s)."""
    e = errors(eng, ref, s)
    st = dict(run=label, max=float(e.max()), med=float(np.median(e)),
              top1=float((eng.argmax(1) == ref.argmax(1)).mean()))
    fails = []
    worst = int(e.argmax())
    where = (f"worst position {worst}, token {tokens[worst]}, router margin there {margins[worst]:.1e}, "
             f"first position over: {{}}")
    if wtype in MAX_BOUND:
        if st["max"] > MAX_BOUND[wtype]:
            over = int(np.nonzero(e > MAX_BOUND[wtype])[0][0])
            fails.append(f"{label}: max error {st['max']:.2e} > {MAX_BOUND[wtype]:.0e} ({where.format(over)})")
        return st, fails
    eq = errors(eng, ref_q, s)
    st["med_q"] = float(np.median(eq))
    best = ref.max(1)
    picked = ref[np.arange(len(ref)), eng.argmax(1)]
    st["top1_tol"] = float((picked >= best - QUANT_MEDIAN_BOUND[wtype] * s).mean())
    if st["med"] > QUANT_MEDIAN_BOUND[wtype]:
        fails.append(f"{label}: median error {st['med']:.2e} > {QUANT_MEDIAN_BOUND[wtype]:.0e}")
    if min(st["med"], st["med_q"]) > QUANT_TIGHT_BOUND:
        fails.append(f"{label}: median error {st['med']:.2e} (exact activations) and {st['med_q']:.2e} "
                     f"(Q8_0 activations) both > {QUANT_TIGHT_BOUND:.0e}")
    if st["max"] > QUANT_MAX_BOUND:
        over = int(np.nonzero(e > QUANT_MAX_BOUND)[0][0])
        fails.append(f"{label}: max error {st['max']:.2e} > {QUANT_MAX_BOUND} ({where.format(over)})")
    if st["top1_tol"] < TOP1_MIN:
        fails.append(f"{label}: same top-1 token (up to near-ties) at {st['top1_tol']:.1%} of positions "
                     f"< {TOP1_MIN:.0%}")
    return st, fails


def judge_kv(label, eng, full, wtype, s):
    """A KV-cache (ubatch) run against the engine's own full-prompt run."""
    e = errors(eng, full, s)
    mx, med = float(e.max()), float(np.median(e))
    if wtype in MAX_BOUND:
        ok = mx <= MAX_BOUND[wtype]
        rule = f"max {mx:.2e} > {MAX_BOUND[wtype]:.0e}"
    else:
        ok = med <= QUANT_TIGHT_BOUND and mx <= QUANT_MAX_BOUND
        rule = f"median {med:.2e} (bound {QUANT_TIGHT_BOUND:.0e}), max {mx:.2e} (bound {QUANT_MAX_BOUND})"
    return mx, ([] if ok else [f"{label} vs full run: {rule}"])


def run_case(case, grok, tmp, quick):
    """Returns (list of per-run stats, case info, failure messages)."""
    path = os.path.join(tmp, f"{case.kind}-{case.wtype}.gguf")
    if case.wtype in FIXTURES:
        path = os.path.join(FIXTURE_DIR, FIXTURES[case.wtype])
    if not os.path.exists(path) and case.wtype in MIXES:
        # q4_k_m on the full wide model (3 layers, 8 experts: llama.cpp's 8-expert
        # rules); the other mixes on the small one (1 layer, 4 experts), to keep
        # the reference's time down
        small = case.wtype != "q4_k_m"
        f32 = os.path.join(tmp, f"{case.kind}-wide{'-small' if small else ''}-f32.gguf")
        if not os.path.exists(f32):
            make_model.build(f32, case.kind, "f32", seed=MODEL_SEED, wide=True, small=small)
        r = subprocess.run([grok, "quantize", f32, path, case.wtype, "-q", "-t", "2"],
                           capture_output=True, text=True, timeout=ENGINE_TIMEOUT_S)
        if r.returncode != 0:
            raise RuntimeError(f"grok quantize {case.wtype}: {r.stderr.strip()}")
    if not os.path.exists(path) and case.kind == "default":
        r = subprocess.run([grok, "quantize", DEFAULT_MODEL, path, case.wtype, "-q", "-t", "2"],
                           capture_output=True, text=True, timeout=ENGINE_TIMEOUT_S)
        if r.returncode != 0:
            raise RuntimeError(f"grok quantize {case.wtype}: {r.stderr.strip()}")
    if not os.path.exists(path):
        make_model.build(path, case.kind, case.wtype, seed=MODEL_SEED)
    model = grok_ref.load(path)
    nm = model.numerics(case.mode).replace(kv_cache=case.ref_cache())
    nm_q = nm.replace(act_quant="q8_0")
    n_tok = PROMPT_LEN_QUICK if quick else PROMPT_LEN
    quant = case.wtype in QUANT
    tokens = choose_prompt(model, [nm, nm_q] if quant else [nm], n_tok, seed=zlib.crc32(case.name.encode()) % 1000)
    ref = model.forward(tokens, nm).numpy()
    ref_q = model.forward(tokens, nm_q).numpy() if quant else None
    margins = model.router_margins(tokens, nm)
    n_vocab = ref.shape[1]
    s = 1.0 + float(np.abs(ref).max())
    info = dict(case=case.name, n=n_tok, maxlogit=s - 1)
    stats, fails, runs = [], [], {}
    for ub in (None,) + (UBATCHES_QUICK if quick else UBATCHES):
        label = "full" if ub is None else f"ubatch {ub}"
        out = os.path.join(tmp, f"{case.name}-ub{ub or 0}.f32")
        eng, err = run_engine(grok, path, tokens, case.mode, out, ub, case.cache)
        if err is None and eng.size != n_tok * n_vocab:
            err = f"{eng.size} floats in the logits file, expected {n_tok} x {n_vocab}"
        if err is None:
            eng = eng.reshape(n_tok, n_vocab)
            if not np.isfinite(eng).all():
                err = f"non-finite logits at positions {sorted(set(np.nonzero(~np.isfinite(eng))[0].tolist()))[:8]}"
        if err:
            fails.append(f"{label}: {err}")
            stats.append(dict(run=label))
            continue
        runs[ub] = eng
        st, f = judge(label, eng, ref, ref_q, case.bounds, s, tokens, margins)
        if ub is not None and None in runs:
            st["kv"], fkv = judge_kv(label, eng, runs[None], case.bounds, s)
            f += fkv
        stats.append(st)
        fails += f
    return stats, info, fails


def fmt(v, spec=".2e"):
    return "-" if v is None else format(v, spec)


def main(argv=None):
    ap = argparse.ArgumentParser(description="C engine vs PyTorch reference logits parity")
    ap.add_argument("--grok", required=True, help="path to the grok binary")
    ap.add_argument("--quick", action="store_true", help=f"{PROMPT_LEN_QUICK}-token prompts, only --ubatch 1")
    ap.add_argument("--case", default="*", help="comma-separated glob(s) over case names")
    ap.add_argument("--list", action="store_true", help="list the case names and exit")
    ap.add_argument("--keep", help="write models and logits to this directory and keep them")
    a = ap.parse_args(argv)

    globs = a.case.split(",")
    cases = [c for c in all_cases() if any(fnmatch.fnmatch(c.name, g) for g in globs)]
    if a.list:
        print("\n".join(c.name for c in cases))
        return 0
    if not cases:
        print(f"no case matches {a.case!r}")
        return 1
    if not (os.path.isfile(a.grok) and os.access(a.grok, os.X_OK)):
        print(f"engine binary {a.grok} not found: skipping")
        return 77

    ctx = tempfile.TemporaryDirectory() if not a.keep else None
    tmp = a.keep or ctx.name
    os.makedirs(tmp, exist_ok=True)
    print("errors are max_v|engine - reference| / (1 + max|reference logit|) per position p;")
    print("max/median over p vs the exact reference; med(q8act) vs the Q8_0-activation reference;")
    print("kv = max vs the engine's full-prompt run; top1 = same argmax (top1~ = up to near-ties)")
    print(f"{'case':26s} {'n':>3s} {'max|logit|':>10s} {'run':>9s} {'max':>9s} {'median':>9s} "
          f"{'med(q8act)':>10s} {'kv':>9s} {'top1':>6s} {'top1~':>6s}  result")
    n_fail = 0
    t0 = time.time()
    for case in cases:
        try:
            stats, info, fails = run_case(case, a.grok, tmp, a.quick)
        except Exception as e:   # a broken case must not hide the others
            stats, info, fails = [], dict(case=case.name), [f"driver error: {type(e).__name__}: {e}"]
        n_fail += bool(fails)
        for i, st in enumerate(stats or [dict(run="-")]):
            head = (f"{info['case']:26s} {info.get('n', 0):3d} {fmt(info.get('maxlogit'), '.3f'):>10s}"
                    if i == 0 else " " * 41)
            last = i == len(stats or [0]) - 1
            cols = [(st.get("max"), ".2e", 9), (st.get("med"), ".2e", 9), (st.get("med_q"), ".2e", 10),
                    (st.get("kv"), ".2e", 9), (st.get("top1"), ".1%", 6), (st.get("top1_tol"), ".1%", 6)]
            print(f"{head} {st['run']:>9s} " + " ".join(f"{fmt(v, sp):>{w}s}" for v, sp, w in cols) +
                  f"  {('FAIL' if fails else 'ok') if last else ''}")
        for msg in fails:
            print(f"    {msg}")
        sys.stdout.flush()
    print(f"{len(cases) - n_fail}/{len(cases)} cases passed in {time.time() - t0:.1f}s")
    if ctx:
        ctx.cleanup()
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
