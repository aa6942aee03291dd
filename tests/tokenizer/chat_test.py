#!/usr/bin/env python3
"""End-to-end test of `grok chat` and of text prompts in `grok run` on small
random models that carry a tokenizer:

  grok2 + a Grok-2 style rank BPE (tiktoken ranks, <|separator|>, <|eos|>):
        chat with the template, /reset, a system message, turns dropped when
        the context is small, a message too long for the context
  grok1 + a SentencePiece vocabulary (GGUF "llama"): the base-model session,
        where input is continued as plain text

    chat_test.py --grok GROK --workdir DIR

The models are random, so the replies are noise: the test checks the session's
behaviour (exit status, notices, that replies are printed as valid UTF-8, that
the conversation survives context trimming), not the words.
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import gguf_writer as gw  # noqa: E402
import make_model as mm  # noqa: E402

SKIP = 77


def gpt2_piece(bs):
    out = []
    for b in bs:
        if 33 <= b <= 126 or 161 <= b <= 172 or b >= 174:
            out.append(chr(b))
        else:
            out.append(chr(256 + sum(1 for x in range(b) if not (33 <= x <= 126 or 161 <= x <= 172 or x >= 174))))
    return "".join(out)


MERGE_WORDS = ["he", "ll", "hell", "hello", " t", " th", " the", "re", " there", "in", " in", "er",
               " w", " wh", " wha", " what", " a", " an", "an", "nd", " and"]


def bpe_keys(wr, n_vocab):
    """A Grok-2 style vocabulary: <|pad|> 0, <|separator|> 1, <|eos|> 2, the 256
    bytes, a few merges (rank = id), reserved control tokens up to n_vocab."""
    tokens, types = ["<|pad|>", "<|separator|>", "<|eos|>"], [3, 3, 3]
    tokens += [gpt2_piece([b]) for b in range(256)]
    types += [1] * 256
    have = {bytes([b]): 3 + b for b in range(256)}
    merges = []
    for w in MERGE_WORDS:
        bs = w.encode()
        # the last merge of w under rank order: split where the longest known prefix ends
        for k in range(len(bs) - 1, 0, -1):
            if bs[:k] in have and bs[k:] in have:
                merges.append(gpt2_piece(bs[:k]) + " " + gpt2_piece(bs[k:]))
                break
        have[bs] = len(tokens)
        tokens.append(gpt2_piece(bs))
        types.append(1)
    while len(tokens) < n_vocab:
        tokens.append(f"<|reserved_{len(tokens)}|>")
        types.append(3)
    wr.add_string("tokenizer.ggml.model", "gpt2")
    wr.add_string("tokenizer.ggml.pre", "grok-2")
    wr.add_array("tokenizer.ggml.tokens", gw.T_STRING, tokens)
    wr.add_array("tokenizer.ggml.token_type", gw.T_I32, types)
    wr.add_array("tokenizer.ggml.merges", gw.T_STRING, merges)
    wr.add_u32("tokenizer.ggml.eos_token_id", 2)
    wr.add_bool("tokenizer.gk.rank_by_id", True)


def spm_keys(wr, n_vocab):
    """A SentencePiece vocabulary (llama.cpp's "llama" keys) with byte fallback."""
    tokens = ["[PAD]", "[BOS]", "[EOS]", "[UNK]", "\n", "\n\n"]
    types = [3, 3, 3, 2, 4, 4]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [6] * 256
    words = ["\u2581", "\u2581the", "\u2581a", "\u2581and", "\u2581once", "\u2581upon", "\u2581time",
             "e", "t", "a", "o", "n", "\u2581t", "th", "he", "an", "nd"]
    tokens += words
    types += [1] * len(words)
    scores = [0.0] * (len(tokens) - len(words)) + [-float(i) for i in range(len(words))]
    i = 0
    while len(tokens) < n_vocab:
        tokens.append(f"\u2581w{i}")
        types.append(1)
        scores.append(-1000.0 - i)
        i += 1
    wr.add_string("tokenizer.ggml.model", "llama")
    wr.add_array("tokenizer.ggml.tokens", gw.T_STRING, tokens)
    wr.add_array("tokenizer.ggml.token_type", gw.T_I32, types)
    wr.add_array("tokenizer.ggml.scores", gw.T_F32, scores)
    wr.add_u32("tokenizer.ggml.bos_token_id", 1)
    wr.add_u32("tokenizer.ggml.eos_token_id", 2)
    wr.add_u32("tokenizer.ggml.unknown_token_id", 3)
    wr.add_bool("tokenizer.ggml.add_bos_token", False)


def build(path, kind):
    cfg = mm.model_config(kind)
    wr = gw.GGUFWriter()
    wr.add_string("general.architecture", "grok")
    for key, val in cfg.items():
        full = "grok." + key
        if isinstance(val, str):
            wr.add_string(full, val)
        elif key in mm._U32_KEYS:
            wr.add_u32(full, val)
        else:
            wr.add_f32(full, val)
    (bpe_keys if kind == "grok2" else spm_keys)(wr, mm.N_VOCAB)
    for name, arr in mm.random_weights(kind, 1).items():
        wr.add_tensor(name, arr, gw.F32)
    wr.write(path)


failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print(f"FAIL: {what}")
    else:
        print(f"ok: {what}")


def chat(grok, model, script, *args):
    r = subprocess.run([grok, "chat", "-m", model, "--temp", "0.7", "--seed", "3", "-t", "2", *args],
                       input=script.encode(), capture_output=True, timeout=300)
    out, err = r.stdout.decode("utf-8", "strict"), r.stderr.decode()
    return r.returncode, out, err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grok", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    r = subprocess.run([a.grok, "chat", "--help"], capture_output=True)
    if r.returncode != 0:
        print("SKIP: this grok binary has no chat command yet")
        return SKIP
    os.makedirs(a.workdir, exist_ok=True)
    g2 = os.path.join(a.workdir, "chat-grok2.gguf")
    g1 = os.path.join(a.workdir, "chat-grok1.gguf")
    build(g2, "grok2")
    build(g1, "grok1")

    rc, out, err = chat(a.grok, g2, "hello there\n/reset\nwhat and\\\nin the\n/exit\n", "-n", "12",
                        "-s", "Be brief.")
    check(rc == 0, f"grok2 chat exits 0 (stderr: {err.strip()[-300:]})")
    check("chat model" in err, "grok2 chat announces the template")
    check("conversation forgotten" in err, "/reset is acknowledged")
    check(out.count("\n") >= 2, "two replies printed")

    many = "".join(f"message number {i} with some words in it and more words\n" for i in range(12))
    rc, out, err = chat(a.grok, g2, many, "-n", "8", "-c", "96")
    check(rc == 0, f"grok2 chat with a small context exits 0 (stderr: {err.strip()[-300:]})")
    check("dropped the oldest" in err, "oldest turns are dropped, and the session says so")

    rc, out, err = chat(a.grok, g2, "x" * 400 + "\nhello\n", "-n", "8", "-c", "64")
    check(rc == 0 and "too long for the context" in err, "a message longer than the context is refused")

    rc, out, err = chat(a.grok, g1, "once upon a time\n and then\n", "-n", "10", "-c", "128")
    check(rc == 0, f"grok1 base-model session exits 0 (stderr: {err.strip()[-300:]})")
    check("base model" in err, "grok1 announces plain completion")

    r = subprocess.run([a.grok, "run", "-m", g2, "-p", "hello there", "-n", "5", "--temp", "0"],
                       capture_output=True, timeout=300)
    check(r.returncode == 0, "grok run takes a text prompt for a model with a tokenizer")
    r = subprocess.run([a.grok, "tokenize", "-m", g2, "-p", "hello there<|separator|>", "--special",
                        "--ids-only"], capture_output=True, timeout=60)
    ids = r.stdout.decode().split()
    check(r.returncode == 0 and ids[:2] == ["262", "267"] and ids[-1] == "1",
          f"grok tokenize reads the model's tokenizer ({' '.join(ids)})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
