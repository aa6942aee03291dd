#!/usr/bin/env python3
"""Writes the seed corpora of the tokenizer fuzz targets (committed under
tests/fuzz/corpus/tok_load and tok_encode; rerun after changing this file):

    make_fuzz_seeds.py [FUZZ_CORPUS_DIR]

tok_load seeds are one selector byte (the file name the target gives the bytes:
0 tokenizer.model, 1 tokenizer.tok.json, 2 fuzz_cl100k.tiktoken, 3 model.gguf)
followed by a small valid file of that format. tok_encode seeds are a selector
byte (tokenizer and special-token flag) followed by text.
"""
import base64
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def varint(v):
    out = bytearray()
    while True:
        c = v & 0x7F
        v >>= 7
        out.append(c | (0x80 if v else 0))
        if not v:
            return bytes(out)


def fbytes(f, b):
    return varint(f << 3 | 2) + varint(len(b)) + b


def fint(f, v):
    return varint(f << 3) + varint(v)


def spm_model():
    pieces = [("<unk>", 2), ("<s>", 3), ("</s>", 3)] + [(f"<0x{i:02X}>", 6) for i in range(256)]
    pieces += [("\n", 4), ("\n\n", 4), ("<|sep|>", 4), ("  ", 4), ("1", 4)]
    normal = ["\u2581", "a", "b", "c", "é", "\u2581a", "ab", "\u2581ab", "bc", "abc", "\u2581abc"]
    m = b""
    for text, ty in pieces + [(w, 1) for w in normal]:
        score = -float(normal.index(text)) if text in normal else 0.0
        body = fbytes(1, text.encode()) + varint(2 << 3 | 5) + struct.pack("<f", score) + fint(3, ty)
        m += fbytes(1, body)
    m += fbytes(2, fint(3, 2) + fint(35, 1))
    m += fbytes(3, fbytes(1, b"identity") + fint(3, 1) + fint(4, 0))
    return m


def tok_json():
    toks = [f'{{"token": {3 + i}, "bytes": [{i}]}}' for i in range(256)]
    for k, w in enumerate(["he", "ll", "hell", "hello", " w"]):
        toks.append(f'{{"token": {259 + k}, "bytes": [{", ".join(str(b) for b in w.encode())}]}}')
    spec = ['{"token": 0, "bytes": [60, 124, 112, 124, 62]}', '{"token": 1, "bytes": [60, 124, 115, 124, 62]}',
            '{"token": 2, "bytes": [60, 124, 101, 124, 62]}']
    return ('{"word_split": "V1", "regular_tokens": [' + ", ".join(toks) + '], "special_tokens": [' +
            ", ".join(spec) + "]}").encode()


def tiktoken():
    lines = [base64.b64encode(bytes([i])) + b" " + str(i).encode() for i in range(256)]
    lines += [base64.b64encode(w) + b" " + str(256 + k).encode() for k, w in enumerate([b"he", b"ll", b"hell"])]
    return b"\n".join(lines) + b"\n"


def gpt2_cp(b):
    if 33 <= b <= 126 or 161 <= b <= 172 or b >= 174:
        return b
    return 256 + sum(1 for x in range(b) if not (33 <= x <= 126 or 161 <= x <= 172 or x >= 174))


def gguf():
    def s(x):
        return struct.pack("<Q", len(x)) + x

    def kv(key, typ, val):
        return s(key.encode()) + struct.pack("<I", typ) + val

    tokens = [chr(gpt2_cp(b)).encode() for b in range(256)] + [b"he", b"ll", b"hell", "\u0120w".encode(),
                                                              b"<|endoftext|>"]
    types = [1] * 260 + [3]
    merges = [b"h e", b"l l", b"he ll", "\u0120 w".encode()]
    kvs = [kv("general.architecture", 8, s(b"gpt2")),
           kv("tokenizer.ggml.model", 8, s(b"gpt2")),
           kv("tokenizer.ggml.pre", 8, s(b"gpt-2")),
           kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, len(tokens)) + b"".join(s(t) for t in tokens)),
           kv("tokenizer.ggml.token_type", 9, struct.pack("<IQ", 5, len(types)) + struct.pack(f"<{len(types)}i", *types)),
           kv("tokenizer.ggml.merges", 9, struct.pack("<IQ", 8, len(merges)) + b"".join(s(m) for m in merges)),
           kv("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 260))]
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "fuzz", "corpus")
    load = os.path.join(out, "tok_load")
    enc = os.path.join(out, "tok_encode")
    os.makedirs(load, exist_ok=True)
    os.makedirs(enc, exist_ok=True)
    for name, sel, data in [("spm.model", 0, spm_model()), ("tok.json", 1, tok_json()),
                            ("cl100k.tiktoken", 2, tiktoken()), ("gpt2.gguf", 3, gguf())]:
        with open(os.path.join(load, name), "wb") as f:
            f.write(bytes([sel]) + data)
    texts = ["Hello, world! It's 2024.\n\n", "hello  world<|s|>\n\n\tcafé", "abc ab  \n\n1 1<|sep|>ca",
             "Съешь же ещё 我想在 🚀😶‍🌫️ \xff", "    x = [1, 2]  # é\r\n"]
    for i, t in enumerate(texts):
        for sel in (0, 1, 2, 0x80, 0x81):
            with open(os.path.join(enc, f"text{i}_{sel:02x}"), "wb") as f:
                f.write(bytes([sel]) + t.encode("utf-8", "surrogateescape").replace(b"\xc3\xbf", b"\xff"))


if __name__ == "__main__":
    main()
