"""Tensor-parallel inference under mpirun (src/dist, src/model/tp.c).

One model split over N processes must give the logits of one process. Cases:
  parity-TYPE  grok1 and grok2 models of TYPE weights (f32 f16 q8_0 q4_0), both
               numerics modes (llamacpp with its f16 KV cache): the logits of
               every position of a 64-token prompt at N = 2 and 4 (with
               --dist-check) bit-identical to N = 1's (so within the issue's
               1e-5 * (1 + max|logit|), which is reported too)
  n8           the same at N = 8 (grok1 f32 reference, grok2 q4_0 llamacpp)
  generate     greedy 128-token generations identical at N = 1, 2, 4; the bf16
               and q8_0 wires measured against fp32 (KL divergence, top-1)
  batch        tests/dist/dist_batch.c: rank 0 drives the batch API (sequences,
               kept-logit flags, KV copy/keep/truncate) on a split context and on a
               whole one beside it; the logits agree
  memory       (not in ctest: minutes) per-rank peak RSS of a >= 1 GB model at
               N = 2, 4 within weights/N + replicated + KV share + 64 MiB
  shard        grok shard output: the same logits as the whole file at N = 2, 4
               (bit for bit); per-rank files and whole models not confused
  failures     a wrong N, a missing, corrupt or mismatched shard, different
               models on different ranks, kill -9 of one rank while generating:
               a clear message, every rank gone within the time limit, no
               half-written output file
The models are tests/reference/make_model.py's, widened to 8 KV heads and
hidden widths of 256 so that every N up to 8 splits on q4_0/q8_0 blocks.

Usage: dist_test.py --grok path/to/grok --case NAME [--quick]
Exit: 0 pass, 1 fail, 77 skipped (no mpirun, or grok built without MPI).
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import make_model  # noqa: E402

DIMS = dict(N_HEAD=16, N_HEAD_KV=8, N_FF_EXP_GROK1=256, N_FF_GROK2=256, N_FF_EXP_GROK2=256)
N_VOCAB = make_model.N_VOCAB
TIMEOUT_S = 120
ENV = dict(os.environ,
           OMPI_MCA_rmaps_base_oversubscribe="1",
           OMPI_MCA_mpi_yield_when_idle="1",  # 1 core per rank or fewer: do not spin
           OMPI_MCA_btl_vader_single_copy_mechanism="none",
           GK_DIST_TIMEOUT_S="20")
# OpenMPI's own allocations are reported as leaks under LeakSanitizer.
ENV["ASAN_OPTIONS"] = (ENV.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")


def mpirun_cmd(n):
    return [shutil.which("mpirun"), "--allow-run-as-root", "--oversubscribe", "-np", str(n)]


def run(cmd, timeout=TIMEOUT_S, check=True):
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)
    p.wall = time.time() - t0
    if check and p.returncode != 0:
        print("command:", " ".join(cmd))
        print(p.stdout[-2000:], p.stderr[-3000:])
        raise AssertionError(f"exit status {p.returncode}")
    return p


def grok_run(a, n, model, tokens, out=None, extra=()):
    cmd = ([] if n == 1 else mpirun_cmd(n)) + [a.grok, "run", "-m", model, "--tokens",
                                                ",".join(map(str, tokens)), "-t", "1"]
    if out:
        cmd += ["-n", "0", "--dump-logits", out]
    return run(cmd + list(extra))


def logits(a, n, model, tokens, tmp, extra=()):
    out = os.path.join(tmp, f"logits-{n}-{os.getpid()}.bin")
    grok_run(a, n, model, tokens, out, extra)
    x = np.fromfile(out, dtype="<f4").reshape(len(tokens), -1).astype(np.float64)
    os.remove(out)
    return x


def prompt(n, seed=1):
    return np.random.default_rng(seed).integers(0, N_VOCAB, n).tolist()


def build(tmp, kind, wtype, seed=0, dims=DIMS):
    path = os.path.join(tmp, f"{kind}-{wtype}-{seed}{'-wide' if dims else ''}.gguf")
    if not os.path.exists(path):
        make_model.build(path, kind, wtype, seed=seed, dims=dims)
    return path


def close(ref, got, label):
    """Bit-identical logits (the bound of the issue, 1e-5 * (1 + max|logit|) per
    position, is reported too). Every N sums the all-reduced products as one fixed
    tree of column chunks (src/model/model.h gk_tp.sum_g), so a split over ranks
    adds the same numbers in the same order as one process, whatever the weight
    type and numerics (Q8_0 activations, f16 KV cache) round."""
    err = np.abs(ref - got).max(axis=1)
    s = 1.0 + np.abs(ref).max(axis=1)
    r = err / (1e-5 * s)
    print(f"  {label}: max |diff| {err.max():.2e} ({r.max():.3g} of the bound), "
          f"{'bit-identical' if np.array_equal(ref, got) else 'NOT bit-identical'}")
    assert (r <= 1.0).all(), f"{label}: beyond 1e-5*(1+max|logit|) at {int(np.argmax(r > 1))}"
    assert np.array_equal(ref, got), f"{label}: logits not bit-identical to N=1"


def have_mpi(a, tmp):
    if not shutil.which("mpirun"):
        print("skip: mpirun not installed")
        return False
    model = build(tmp, "grok1", "f32")
    p = run(mpirun_cmd(2) + [a.grok, "run", "-m", model, "--tokens", "1,2,3", "-n", "1", "-t",
                             "1", "-v"], check=False)
    if "dist: 2 ranks" not in p.stderr:
        print("skip: this grok build has no MPI (CMake did not find it)")
        print(p.stderr[-1000:])
        return False
    return True


def case_parity(a, tmp, wtype):
    toks = prompt(32 if a.quick else 64)
    ns = (2,) if a.quick else (2, 4)
    # llamacpp numerics with its default f16 KV cache (and Q8_0 activations for
    # quantized weights): every rounding step of llama.cpp's path
    for kind in ("grok1", "grok2"):
        model = build(tmp, kind, wtype)
        for mode in ("reference", "llamacpp"):
            nm = ["--numerics", mode]
            ref = logits(a, 1, model, toks, tmp, nm)
            # one process on 2 and 3 threads: whole chunks per thread, and chunk
            # after chunk over the pool (3 does not divide the 8 chunks)
            for t in ("2", "3"):
                close(ref, logits(a, 1, model, toks, tmp, nm + ["-t", t]),
                      f"{kind} {wtype} {mode} N=1 -t {t}")
            for n in ns:
                got = logits(a, n, model, toks, tmp, nm + ["--dist-check"])
                close(ref, got, f"{kind} {wtype} {mode} N={n}")


def case_batch(a, tmp):
    for kind, n in (("grok1", 2), ("grok2", 4)):
        model = build(tmp, kind, "f32")
        p = run(mpirun_cmd(n) + [a.tool, model], check=False)
        print(f"  {kind} N={n}:\n" + p.stdout)
        assert p.returncode == 0 and "all ok" in p.stdout, p.stderr[-2000:]


BIG_DIMS = dict(N_EMBD=1024, N_HEAD=16, N_HEAD_KV=8, HEAD_DIM=64, N_FF_GROK2=4096,
                N_FF_EXP_GROK2=4096, N_LAYER=4, N_VOCAB=32768)


def case_memory(a, tmp):
    """Per-rank peak RSS at N = 2 and 4 of a >= 1 GB model (grok2 shape, f16): at most
    weights/N + replicated tensors + KV share + 64 MiB. Not in ctest: writing the
    model takes minutes (--model reuses one)."""
    model = a.model or build(tmp, "grok2", "f16", dims=BIG_DIMS)
    size = os.path.getsize(model)
    assert size >= 1 << 30 or a.model, f"model of {size} bytes is under 1 GiB"
    timer = shutil.which("time") or "/usr/bin/time"
    for n in (2, 4):
        p = run(mpirun_cmd(n) + [timer, "-f", "peak-rss-kib %M", a.grok, "run", "-m", model,
                                 "--tokens", "1,2,3,4,5,6,7,8", "-n", "8", "-t", "1", "-c", "64"])
        peaks = [int(l.split()[1]) * 1024 for l in p.stderr.splitlines()
                 if l.startswith("peak-rss-kib")]
        assert len(peaks) == n, p.stderr[-2000:]
        # replicated: norms and routers (f32) are under 1 MiB here; the KV share of
        # 64 positions is tiny; both sit inside the 64 MiB allowance
        limit = size / n + (64 << 20)
        print(f"  N={n}: peak RSS per rank {max(peaks) / 2**20:.0f} MiB "
              f"(weights/N {size / n / 2**20:.0f} MiB, limit {limit / 2**20:.0f} MiB)")
        assert max(peaks) <= limit


def case_n8(a, tmp):
    toks = prompt(64)
    for kind, wtype, mode in (("grok1", "f32", "reference"), ("grok2", "q4_0", "llamacpp")):
        model = build(tmp, kind, wtype)
        nm = ["--numerics", mode]
        ref = logits(a, 1, model, toks, tmp, nm)
        close(ref, logits(a, 8, model, toks, tmp, nm + ["--dist-check"]),
              f"{kind} {wtype} {mode} N=8")


def generated(a, n, model, toks, extra=()):
    p = grok_run(a, n, model, toks, None, ["-n", "128", "--temp", "0", "--ignore-eos",
                                           "-c", "256"] + list(extra))
    ids = p.stdout.split()
    assert len(ids) == 128, p.stdout[-500:]
    return ids


def case_generate(a, tmp):
    toks = prompt(16)
    for kind, wtype, mode in (("grok1", "q8_0", "llamacpp"), ("grok2", "q4_0", "llamacpp"),
                              ("grok2", "f32", "reference")):
        model = build(tmp, kind, wtype)
        nm = ["--numerics", mode]
        ref = generated(a, 1, model, toks, nm)
        for n in (2, 4):
            got = generated(a, n, model, toks, nm + ["--dist-check"])
            assert got == ref, f"{kind} {wtype} {mode}: N={n} generates other tokens than N=1"
            print(f"  {kind} {wtype} {mode}: 128 greedy tokens identical at N=1 and N={n}")
    # the compressed wires: their accuracy cost against fp32 at N=2
    model = build(tmp, "grok2", "f32")
    toks = prompt(64)
    f32 = logits(a, 2, model, toks, tmp)
    for wire in ("bf16", "q8_0"):
        got = logits(a, 2, model, toks, tmp, ["--dist-wire", wire, "--dist-check"])
        p = np.exp(f32 - f32.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        lq = got - got.max(axis=1, keepdims=True)
        lq -= np.log(np.exp(lq).sum(axis=1, keepdims=True))
        lp = np.log(p)
        kl = float((p * (lp - lq)).sum(axis=1).mean())
        top1 = float((f32.argmax(axis=1) == got.argmax(axis=1)).mean())
        print(f"  wire {wire}: mean KL(fp32 || {wire}) = {kl:.2e}, top-1 agreement "
              f"{100 * top1:.1f}% over {len(toks)} positions")
        assert kl < 1e-2 and top1 >= 0.9, f"wire {wire} is far from fp32"


def case_shard(a, tmp):
    toks = prompt(32)
    model = build(tmp, "grok2", "q4_0")
    for n in (2, 4):
        d = os.path.join(tmp, f"shard{n}")
        run([a.grok, "shard", model, "--ranks", str(n), "-o", d])
        files = sorted(os.listdir(d))
        assert files == [f"rank-{r:03d}-of-{n:03d}.gguf" for r in range(n)], files
        whole = logits(a, n, model, toks, tmp)
        sharded = logits(a, n, d, toks, tmp, ["--dist-check"])
        assert np.array_equal(whole, sharded), f"N={n}: per-rank files change the logits"
        size = sum(os.path.getsize(os.path.join(d, f)) for f in files)
        print(f"  N={n}: {n} files of {size / n / 1024:.0f} KiB each (whole "
              f"{os.path.getsize(model) / 1024:.0f} KiB): logits bit-identical to the whole file")
    d2 = os.path.join(tmp, "shard2")
    p = run([a.grok, "run", "-m", os.path.join(d2, "rank-001-of-002.gguf"), "--tokens", "1,2"],
            check=False)
    assert p.returncode != 0 and "rank 1 of a 2-rank set" in p.stderr, p.stderr
    p = run([a.grok, "run", "-m", d2, "--tokens", "1,2"], check=False)
    assert p.returncode != 0 and "is a directory" in p.stderr, p.stderr
    # a whole model where a per-rank file belongs
    d3 = os.path.join(tmp, "notshard")
    os.makedirs(d3, exist_ok=True)
    for r in range(2):
        shutil.copy(model, os.path.join(d3, f"rank-{r:03d}-of-002.gguf"))
    expect_fail(a, 2, d3, "not a per-rank file")
    print("  per-rank files refused as a whole model and vice versa")


def expect_fail(a, n, model, text, extra=(), limit=30):
    cmd = (mpirun_cmd(n) if n > 1 else []) + [a.grok, "run", "-m", model, "--tokens", "1,2,3",
                                               "-n", "2", "-t", "1"] + list(extra)
    p = run(cmd, timeout=limit, check=False)
    assert p.returncode != 0, f"{text}: the run succeeded"
    assert text in p.stderr, f"expected '{text}' in:\n{p.stderr[-3000:]}"
    line = next(l for l in p.stderr.splitlines() if text in l)
    print(f"  {p.wall:.1f} s, exit {p.returncode}: {line.strip()[:200]}")


def ranks_of(a, marker):
    """Pids of grok processes whose arguments include marker."""
    pids = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0] == a.grok.encode() and marker.encode() in argv:
            pids.append(pid)
    return pids


def wait_rank(a, rank):
    """The pid of grok's rank `rank` once it runs (30 s at most)."""
    t_end = time.time() + 30
    while time.time() < t_end:
        time.sleep(0.3)
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = f.read().split(b"\0")
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv0 = f.read().split(b"\0")[0]
            except OSError:
                continue
            if argv0 == a.grok.encode() and f"OMPI_COMM_WORLD_RANK={rank}".encode() in env:
                return int(pid)
    raise AssertionError(f"rank {rank} never started")


def case_oom(a, model):
    sh = shutil.which("sh")
    big_ctx = ["--tokens", "1,2", "-n", "1", "-t", "1", "-c", "4000000"]
    cmd = (mpirun_cmd(1) + [a.grok, "run", "-m", model] + big_ctx + [":", "-np", "1", sh, "-c",
           'ulimit -v 2000000; exec "$0" "$@"', a.grok, "run", "-m", model] + big_ctx)
    p = run(cmd, timeout=60, check=False)
    line = [l for l in p.stderr.splitlines() if "making the context failed on rank 1 of 2" in l]
    assert p.returncode != 0 and line, p.stderr[-2000:]
    print(f"  {p.wall:.1f} s: out of memory on rank 1 alone: {line[0].strip()[:160]}")


def case_failures(a, tmp):
    model = build(tmp, "grok1", "q8_0")
    # --dist-check: rank 1 nudges one value of its residual stream after layer 1
    # (GK_DIST_FAULT, a test hook); the check names the layer and the rank
    p = run(mpirun_cmd(2) + ["-x", "GK_DIST_FAULT=1:1", a.grok, "run", "-m", model, "--tokens",
                             "1,2,3", "-n", "2", "-t", "1", "--dist-check"], timeout=30,
            check=False)
    line = [l for l in p.stderr.splitlines() if "after layer 1 differs on rank 1" in l]
    assert p.returncode != 0 and line, p.stderr[-2000:]
    print(f"  {p.wall:.1f} s: {line[0].strip()[:160]}")
    p = run(mpirun_cmd(2) + ["-x", "GK_DIST_FAULT=1:1", a.grok, "run", "-m", model, "--tokens",
                             "1,2,3", "-n", "2", "-t", "1"], timeout=30)
    print("  without --dist-check the same run completes (the check is what stops it)")
    # a process count that does not divide the 8 KV heads (or the block sizes)
    expect_fail(a, 3, model, "valid process counts: 1, 2, 4, 8")
    small = build(tmp, "grok1", "q8_0", dims=None)  # 2 KV heads, width 96
    expect_fail(a, 4, small, "valid process counts: 1")
    d = os.path.join(tmp, "set")
    run([a.grok, "shard", model, "--ranks", "2", "-o", d])
    f1 = os.path.join(d, "rank-001-of-002.gguf")
    keep = f1 + ".keep"
    shutil.copy(f1, keep)
    # missing
    os.remove(f1)
    expect_fail(a, 2, d, "holds no file for rank 1 of 2")
    # corrupt: one byte of tensor data flipped, then a truncated file
    shutil.copy(keep, f1)
    with open(f1, "r+b") as f:
        f.seek(-100, 2)
        b = f.read(1)
        f.seek(-100, 2)
        f.write(bytes([b[0] ^ 0x55]))
    expect_fail(a, 2, d, "failed on rank 1 of 2")
    expect_fail(a, 2, d, "per-rank file is corrupt")
    with open(keep, "rb") as f:
        data = f.read()
    with open(f1, "wb") as f:
        f.write(data[: len(data) // 2])
    expect_fail(a, 2, d, "failed on rank 1 of 2")
    # mismatched: rank 1's file from the set of another model
    other = build(tmp, "grok1", "q8_0", seed=7)
    d2 = os.path.join(tmp, "set-other")
    run([a.grok, "shard", other, "--ranks", "2", "-o", d2])
    shutil.copy(os.path.join(d2, "rank-001-of-002.gguf"), f1)
    expect_fail(a, 2, d, "rank 1 has a different model file")
    shutil.copy(keep, f1)
    # different whole files on the two ranks (MPMD launch)
    cmd = (mpirun_cmd(1) + [a.grok, "run", "-m", model, "--tokens", "1,2", "-t", "1"] + [":"] +
           ["-np", "1", a.grok, "run", "-m", other, "--tokens", "1,2", "-t", "1"])
    p = run(cmd, timeout=30, check=False)
    assert p.returncode != 0 and "rank 1 has a different model file" in p.stderr, p.stderr[-2000:]
    print(f"  {p.wall:.1f} s: different models on the two ranks refused")
    # a rank of another grok version (GK_DIST_TEST_VERSION, a test hook: the version
    # that rank announces); the same binary and model everywhere otherwise
    cmd = (mpirun_cmd(1) + [a.grok, "run", "-m", model, "--tokens", "1,2", "-t", "1"] + [":"] +
           ["-np", "1", "env", "GK_DIST_TEST_VERSION=0.0.0-other", a.grok, "run", "-m", model,
            "--tokens", "1,2", "-t", "1"])
    p = run(cmd, timeout=30, check=False)
    line = [l for l in p.stderr.splitlines() if "rank 1 runs grok 0.0.0-other" in l]
    assert p.returncode != 0 and line and p.wall < 30, p.stderr[-2000:]
    print(f"  {p.wall:.1f} s: {line[0].strip()[:200]}")
    # rank 1 runs out of memory making its context (an address-space limit on it alone;
    # not under the sanitizers, whose shadow memory needs the address space)
    if not a.quick:
        case_oom(a, model)
    # a rank that stops answering (SIGSTOP) mid-generation: the watchdog ends the others

    stop_env = dict(ENV, GK_DIST_TIMEOUT_S="3")
    cmd = mpirun_cmd(2) + [a.grok, "run", "-m", model, "--tokens", "1,2,3", "-n", "100000",
                           "-c", "100010", "--ignore-eos", "--temp", "0", "-t", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=stop_env)
    victim = wait_rank(a, 1)
    proc.stdout.read(1)  # rank 0 prints its first token: generation is running
    os.kill(victim, signal.SIGSTOP)
    t0 = time.time()
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        os.kill(victim, signal.SIGKILL)
        raise AssertionError("mpirun still running 15 s after rank 1 stopped")
    named = [l for l in err.splitlines() if "has not completed in 3 s" in l]
    assert proc.returncode != 0 and named, err[-2000:]
    assert not ranks_of(a, "100000"), "ranks still running"
    print(f"  rank 1 stopped: every rank gone {time.time() - t0:.1f} s later: {named[0].strip()[:160]}")
    # kill -9 of rank 1 in the middle of a long generation with --dump-logits
    out = os.path.join(tmp, "killed.bin")
    cmd = mpirun_cmd(2) + [a.grok, "run", "-m", model, "--tokens", "1,2,3", "-n", "100000",
                           "-c", "100010", "--ignore-eos", "--temp", "0", "-t", "1",
                           "--dump-logits", out]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV)
    victim = wait_rank(a, 1)
    proc.stdout.read(1)  # rank 0 prints its first token: generation is running
    os.kill(victim, signal.SIGKILL)
    t0 = time.time()
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("mpirun still running 10 s after rank 1 was killed")
    waited = time.time() - t0
    assert proc.returncode != 0
    left = ranks_of(a, "100000")
    assert not left, f"ranks still running: {left}"
    assert not os.path.exists(out), "a half-written logits file was left"
    tmps = [f for f in os.listdir(tmp) if f.startswith("killed.bin")]
    assert not tmps, f"temporary files left: {tmps}"
    named = [l for l in err.splitlines() if "rank 1" in l or "signal 9" in l]
    assert named, err[-2000:]
    print(f"  kill -9 of rank 1: every rank gone {waited:.1f} s later: {named[0].strip()[:160]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grok", required=True)
    ap.add_argument("--case", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tool", help="dist_batch (case batch)")
    ap.add_argument("--model", help="case memory: an existing >= 1 GB model")
    a = ap.parse_args()
    a.grok = os.path.abspath(a.grok)
    if a.tool:
        a.tool = os.path.abspath(a.tool)
    with tempfile.TemporaryDirectory(prefix="gk-dist-") as tmp:
        if not have_mpi(a, tmp):
            return 77
        if a.case.startswith("parity-"):
            case_parity(a, tmp, a.case[len("parity-"):])
        else:
            {"batch": case_batch, "memory": case_memory, "n8": case_n8, "generate": case_generate, "shard": case_shard,
             "failures": case_failures}[a.case](a, tmp)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
