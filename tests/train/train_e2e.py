#!/usr/bin/python3
"""End-to-end tests of `grok train` on a small synthetic English-like corpus (seeded
grammar, so that context predicts the next word far better than word counts do).

Cases (--case):
  learn     pretrain a tiny Grok-2 model (--config, spm_train vocabulary): the final
            validation loss must be well below the unigram entropy of the split
  resume    40 steps uninterrupted vs. stop after step 20 + --resume: every loss of
            steps 21..40 (printed with 17 digits) and the final model file must be equal
  badinput  empty, binary and non-UTF-8 corpora; a tokenizer that does not match the
            --init model; a corrupt optimizer state and a truncated checkpoint given
            to --resume; a write limit (RLIMIT_FSIZE, as a full disk) during a
            checkpoint: each fails with a clear message, and the previous checkpoint
            stays intact and resumable
  mpi       mpirun -np 2 (one micro-batch each) against one process with --accum 2
            (the same global batch): the loss curves agree within 1e-4 relative
Usage: train_e2e.py --grok path/to/grok --case NAME [--quick] [--keep DIR]
Exit: 0 pass, 1 fail, 77 skipped (no spm_train; for mpi: no MPI build or mpirun).
"""

import argparse
import hashlib
import math
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile

CONFIG = ("variant=grok2,layers=2,dim=64,heads=4,kv_heads=2,ff=128,ff_exp=128,experts=4,"
          "experts_used=2,ctx=128")


def make_corpus(path, n_sent, seed):
    """A seeded toy grammar: subject, verb, object, optional clause."""
    rng = random.Random(seed)
    adj = "old young small great quiet bright dark early late happy".split()
    noun = ("king queen farmer river city army child teacher horse letter garden ship "
            "mountain doctor merchant soldier").split()
    verb = "sees finds builds carries follows remembers writes guards visits helps".split()
    place = "near the sea|in the morning|across the field|before the winter|at the market".split("|")
    lines = []
    for _ in range(n_sent // 6):
        para = []
        for _ in range(6):
            s = f"The {rng.choice(adj)} {rng.choice(noun)} {rng.choice(verb)} the {rng.choice(noun)}"
            if rng.random() < 0.5:
                s += " " + rng.choice(place)
            if rng.random() < 0.3:
                s += f", and the {rng.choice(noun)} {rng.choice(verb)} it"
            para.append(s + ".")
        lines.append(" ".join(para))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def run(cmd, check_rc=0, limit_fsize=None):
    def pre():
        if limit_fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_fsize, limit_fsize))
    p = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=pre)
    if check_rc is not None and p.returncode != check_rc:
        print("command:", " ".join(cmd))
        print(p.stderr[-3000:])
        raise AssertionError(f"exit status {p.returncode}, expected {check_rc}")
    return p


QUICK = False   # --quick (sanitizer builds): smaller runs


def ctx():
    return "24" if QUICK else "48"


def train_args(grok, data, out, steps, extra=()):
    config = CONFIG.replace("layers=2,dim=64", "layers=1,dim=32") if QUICK else CONFIG
    return [grok, "train", "--data", data, "--config", config, "--vocab", "400", "-o", out,
            "--steps", str(steps), "--batch", "4", "--ctx", ctx(),
            "--lr", "3e-3", "--warmup", "10", "--log-every", "10", "-t", "2", *extra]


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def case_learn(a, tmp):
    data = os.path.join(tmp, "corpus.txt")
    make_corpus(data, 2500 if a.quick else 6000, 1)
    steps = 40 if a.quick else 200
    p = run(train_args(a.grok, data, os.path.join(tmp, "out"), steps,
                       ["--eval-every", str(steps), "--save-every", "0", "--batch", "8",
                        "--val-tokens", "2000" if a.quick else "32768"]))
    m = re.findall(r"validation loss ([0-9.]+) \(unigram entropy ([0-9.]+)\)", p.stderr)
    val, uni = float(m[-1][0]), float(m[-1][1])
    print(f"validation loss {val:.3f} after {steps} steps, unigram entropy {uni:.3f}")
    if a.quick:   # sanitizer builds: a short run must still learn (uniform = ln 400 = 5.99)
        assert val < math.log(400) - 0.5, f"validation loss {val} did not fall below ln(400) - 0.5"
    else:
        assert val < uni - 1.5, f"validation loss {val} is not below the unigram entropy {uni} - 1.5"
    out = os.path.join(tmp, "out", "model.gguf")
    assert os.path.exists(out) and os.path.exists(os.path.join(tmp, "out", "loss.svg"))
    # the result is an ordinary model: grok run loads it and writes text
    g = run([a.grok, "run", "-m", out, "-p", "The old king", "-n", "8", "--temp", "0"])
    print("sample:", g.stdout.strip()[:120])
    # fine-tuning it (--init) keeps its tokenizer and writes a loadable model
    ft = os.path.join(tmp, "ft")
    run([a.grok, "train", "--data", data, "--init", out, "-o", ft, "--steps", "3", "--batch", "4",
         "--ctx", ctx(), "--eval-every", "0", "--save-every", "0", "-t", "2", "--save-type", "bf16"])
    run([a.grok, "run", "-m", os.path.join(ft, "model.gguf"), "-p", "The old king", "-n", "4"])


def read_trace(path):
    return [line.split() for line in open(path)]


def case_resume(a, tmp):
    data = os.path.join(tmp, "corpus.txt")
    make_corpus(data, 3000, 2)
    tok = os.path.join(tmp, "tok")
    steps, k = (6, 3) if a.quick else (40, 20)
    common = ["--eval-every", "0", "--save-every", "0"]
    ta, tb = os.path.join(tmp, "a.trace"), os.path.join(tmp, "b.trace")
    run(train_args(a.grok, data, tok, 1, common))     # builds the shared tokenizer
    tk = ["--tokenizer", os.path.join(tok, "tokenizer.model")]
    run(train_args(a.grok, data, os.path.join(tmp, "a"), steps, common + tk + ["--trace", ta]))
    run(train_args(a.grok, data, os.path.join(tmp, "b"), steps,
                   common + tk + ["--trace", tb, "--stop-after", str(k)]))
    p = run([a.grok, "train", "--data", data, "--resume", os.path.join(tmp, "b"), "-o",
             os.path.join(tmp, "b"), "--steps", str(steps), "--batch", "4", "--ctx", ctx(),
             "--lr", "3e-3", "--warmup", "10", "-t", "1", "--trace", tb, *common])
    assert f"resuming at step {k}" in p.stderr, p.stderr
    A, B = read_trace(ta), read_trace(tb)
    assert len(A) == steps and len(B) == steps, (len(A), len(B))
    for x, y in zip(A, B):
        assert x == y, f"step {x[0]}: uninterrupted {x[1:]} vs resumed {y[1:]}"
    assert sha(os.path.join(tmp, "a", "model.gguf")) == sha(os.path.join(tmp, "b", "model.gguf"))
    print(f"steps {k + 1}..{steps} after resuming equal the uninterrupted run bit for bit "
          f"(last loss {A[-1][1]}); final models identical (threads 2 vs 1)")


def expect_fail(cmd, pattern, what, **kw):
    p = run(cmd, check_rc=None, **kw)
    assert p.returncode != 0, f"{what}: exit status 0"
    assert re.search(pattern, p.stderr), f"{what}: message {p.stderr.strip()!r} lacks {pattern!r}"
    assert "Sanitizer" not in p.stderr and p.returncode == 1, f"{what}: crashed ({p.returncode})"
    print(f"ok  {what}: {p.stderr.strip().splitlines()[-1]}")


def case_badinput(a, tmp):
    data = os.path.join(tmp, "corpus.txt")
    make_corpus(data, 2000, 3)
    bad = {"empty.txt": b"", "binary.bin": bytes(range(256)) * 8,
           "latin1.txt": "Caf\u00e9 au lait, na\u00efve fa\u00e7ade.\n".encode("latin-1") * 20}
    for name, content in bad.items():
        with open(os.path.join(tmp, name), "wb") as f:
            f.write(content)
    out = os.path.join(tmp, "o")
    expect_fail(train_args(a.grok, os.path.join(tmp, "empty.txt"), out, 5), r"empty\.txt: the file is empty", "empty corpus")
    expect_fail(train_args(a.grok, os.path.join(tmp, "binary.bin"), out, 5), r"NUL byte .*binary", "binary corpus")
    expect_fail(train_args(a.grok, os.path.join(tmp, "latin1.txt"), out, 5), r"invalid UTF-8 at byte offset 3", "non-UTF-8 corpus")

    # a trained run with checkpoints every 4 steps
    ck = os.path.join(tmp, "ck")
    run(train_args(a.grok, data, ck, 8, ["--save-every", "4", "--eval-every", "0", "--keep", "3"]))
    model = os.path.join(ck, "model.gguf")
    # a tokenizer of another vocabulary, given with --init
    other = os.path.join(tmp, "other")
    run(train_args(a.grok, data, other, 1, ["--vocab", "300", "--eval-every", "0"]))
    expect_fail([a.grok, "train", "--data", data, "--init", model, "--tokenizer",
                 os.path.join(other, "tokenizer.model"), "-o", os.path.join(tmp, "ft"), "--steps", "2"],
                r"does not match the model", "tokenizer not matching --init")
    # corrupt optimizer state, truncated weights, a directory without checkpoints
    bad_ck = os.path.join(tmp, "badck")
    shutil.copytree(ck, bad_ck)
    opt = os.path.join(bad_ck, "step-00000008.opt")
    raw = bytearray(open(opt, "rb").read())
    raw[len(raw) // 2] ^= 0x40
    open(opt, "wb").write(raw)
    resume = [a.grok, "train", "--data", data, "--batch", "4", "--ctx", ctx(), "--steps", "12",
              "--eval-every", "0", "-t", "2"]
    expect_fail(resume + ["--resume", bad_ck, "-o", bad_ck], r"checksum mismatch: the file is corrupt", "corrupt optimizer state")
    g = os.path.join(bad_ck, "step-00000004.gguf")
    open(g, "r+b").truncate(os.path.getsize(g) // 2)
    expect_fail(resume + ["--resume", g, "-o", bad_ck], r"step-00000004\.gguf", "truncated checkpoint")
    expect_fail(resume + ["--resume", tmp, "-o", bad_ck], r"no checkpoint there", "directory without checkpoints")

    # a full disk during the checkpoint of step 12: files are limited below its size
    before = {f: sha(os.path.join(ck, f)) for f in os.listdir(ck) if f.startswith("step-") or f == "latest"}
    limit = os.path.getsize(os.path.join(ck, "step-00000008.opt")) // 2
    expect_fail(resume + ["--resume", ck, "-o", ck], r"checkpoint at step 12 \(the previous one is intact\).*(File too large|No space)",
                "full disk during a checkpoint", limit_fsize=limit)
    after = {f: sha(os.path.join(ck, f)) for f in os.listdir(ck) if f.startswith("step-") or f == "latest"}
    assert before == after, f"checkpoint files changed: {sorted(before)} -> {sorted(after)}"
    left = [f for f in os.listdir(ck) if ".tmp" in f]
    assert not left, f"temporary files left behind: {left}"
    assert open(os.path.join(ck, "latest")).read().strip() == "step-00000008"
    run(resume + ["--resume", ck, "-o", ck])
    print("ok  the previous checkpoint stayed intact and resumes")


def case_mpi(a, tmp):
    mpirun = shutil.which("mpirun")
    if not mpirun:
        print("skip: mpirun not installed")
        return 77
    data = os.path.join(tmp, "corpus.txt")
    make_corpus(data, 3000, 4)
    steps = 4 if a.quick else 25
    common = ["--eval-every", str(steps), "--save-every", "0"]
    tok = os.path.join(tmp, "tok")
    run(train_args(a.grok, data, tok, 1, common))
    tk = ["--tokenizer", os.path.join(tok, "tokenizer.model"), "--cache", os.path.join(tok, "cache")]
    t1, t2 = os.path.join(tmp, "one.trace"), os.path.join(tmp, "two.trace")
    run(train_args(a.grok, data, os.path.join(tmp, "one"), steps, common + tk + ["--accum", "2", "--trace", t1]))
    env = dict(os.environ, OMPI_MCA_btl_vader_single_copy_mechanism="none", OMPI_MCA_rmaps_base_oversubscribe="1")
    # OpenMPI's own allocations are reported as leaks under LeakSanitizer; the other
    # cases check this program's leaks without MPI.
    env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")
    cmd = [mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "2"] + \
        train_args(a.grok, data, os.path.join(tmp, "two"), steps, common + tk + ["--trace", t2])
    cmd[cmd.index("-t") + 1] = "1"
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        print(p.stderr[-3000:])
        raise AssertionError(f"mpirun exit status {p.returncode}")
    if "2 process(es)" not in p.stderr:
        print("skip: this grok build has no MPI (CMake did not find it)")
        return 77
    A, B = read_trace(t1), read_trace(t2)
    assert len(A) == len(B) == steps
    worst = max(abs(float(x[1]) - float(y[1])) / abs(float(x[1])) for x, y in zip(A, B))
    print(f"2 processes vs 1 (same global batch): {steps} losses agree within {worst:.1e} relative "
          f"(first {A[0][1]} vs {B[0][1]}, last {A[-1][1]} vs {B[-1][1]})")
    assert worst <= 1e-4, worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grok", required=True)
    ap.add_argument("--case", required=True, choices=["learn", "resume", "badinput", "mpi"])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--keep")
    a = ap.parse_args()
    global QUICK
    QUICK = a.quick
    if not os.path.exists(a.grok):
        print(f"skip: {a.grok} not built")
        return 77
    if not shutil.which("spm_train"):
        print("skip: spm_train (Debian sentencepiece) not installed")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        d = a.keep or tmp
        os.makedirs(d, exist_ok=True)
        try:
            rc = globals()["case_" + a.case](a, d)
        except AssertionError as e:
            print("FAIL:", e)
            return 1
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
