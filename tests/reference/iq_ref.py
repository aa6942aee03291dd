#!/usr/bin/python3
"""Independent numpy dequantizers of ggml's IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S,
IQ1_S and IQ1_M, checked against the C engine's (ctest iquants_numpy).

Written from the format description (block layouts as in src/tensor/iquants.h's
comment, which restates ggml's; not from the C code):

  IQ2_XXS  66 B: f16 d; then 8 groups of 32 weights, each 8 bytes = u32 a, u32 b:
           byte l of a indexes iq2xxs_grid (8 magnitudes), bits 7l..7l+6 of b
           index ksigns (8 sign bits, bit j = weight j negative), s = b >> 28,
           w = d * (0.5 + s) * 0.25 * |g| * sign
  IQ2_XS   74 B: f16 d; u16 qs[32]; scales[8]. Group ib (32 weights), sub-group l
           (8 weights): q = qs[4ib+l], iq2xs_grid[q & 511] (8 magnitudes),
           ksigns[q >> 9]; s = low nibble of scales[ib] for l < 2, high nibble for
           l >= 2: w = d * (0.5 + s) * 0.25 * |g| * sign
  IQ2_S    82 B: f16 d; qs[32]; signs[32]; qh[8]; scales[8]. Index l of group ib =
           qs[4ib+l] + 256 * bits 2l..2l+1 of qh[ib] into iq2s_grid (1024 x 8),
           sign byte signs[4ib+l]; s and w as IQ2_XS
  IQ3_XXS  98 B: f16 d; qs[64] (8 per group: grid indices of 4 magnitudes each);
           32 bytes of u32 words, one per group: 4 sign indices + s in the top 4
           bits; w = d * (0.5 + s) * 0.5 * |g| * sign
  IQ3_S   110 B: f16 d; qs[64]; qh[8]; signs[32]; scales[4]. Group ib: index k =
           qs[8ib+k] + 256 * bit k of qh[ib] into iq3s_grid (512 x 4), sign byte
           signs[4ib+l] for weights 8l..8l+7, s = nibble (ib % 2) of scales[ib/2]
           (low first): w = d * (1 + 2s) * |g| * sign
  IQ1_S    50 B: f16 d; qs[32]; u16 qh[8]. Group ib: index l = qs[4ib+l] + 256 *
           bits 3l..3l+2 of qh[ib] into iq1s_grid (2048 x 8 values in -1, 0, 1),
           s = bits 12..14, delta = -0.125 if bit 15 else 0.125:
           w = d * (2s + 1) * (g + delta)
  IQ1_M    56 B: qs[32]; qh[16]; u16 sc[4]; no d field: d is the f16 whose 16 bits
           are the top nibbles of sc[3], sc[2], sc[1], sc[0] (most significant first).
           Group ib, sub-group l: byte qh[2ib + l // 2], its low nibble for even l,
           high for odd: 3 bits above qs[4ib+l] into iq1s_grid, the 4th bit the sign
           of delta = +-0.125; s = 3 bits at 6 * (ib % 2) + 3 * (l // 2) of sc[ib // 2]:
           w = d * (2s + 1) * (g + delta)

Arithmetic is float32 in the order written (as ggml's C computes it), so the
values must match the engine's bit for bit. The grid values come from the
project's table file (src/tensor/iquants_tables.c), whose own checksums
test_iquants checks against ggml-common.h; when llama.cpp's gguf-py is present
(LLAMA_CPP_DIR, default /work/llama.cpp), its dequantizers, which hold the grids
in their own encoding, are compared too.

Usage: iq_ref.py --tool path/to/test_iquants    Exit 0 pass, 1 fail, 77 no tool.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TABLES = os.path.join(HERE, "..", "..", "src", "tensor", "iquants_tables.c")

TYPES = {"iq2_xxs": (16, 66), "iq3_xxs": (18, 98), "iq3_s": (21, 110), "iq1_s": (19, 50),
         "iq2_xs": (17, 74), "iq2_s": (22, 82), "iq1_m": (29, 56)}


def load_tables():
    text = open(TABLES).read()
    out = {}
    for ctype, name in re.findall(r"const (uint\d+_t) gk_(\w+)\[\d+\] = \{", text):
        body = re.search(r"gk_%s\[\d+\] = \{(.*?)\};" % name, text, re.S).group(1)
        vals = [int(v, 0) for v in re.findall(r"0x[0-9a-fA-F]+|\d+", body)]
        size = {"uint8_t": 1, "uint32_t": 4, "uint64_t": 8}[ctype]
        raw = b"".join(v.to_bytes(size, "little") for v in vals)
        out[name] = np.frombuffer(raw, dtype=np.uint8).reshape(len(vals), size)
    return out


T = load_tables()
KSIGNS = T["ksigns_iq2xs"][:, 0]


def f16(b):
    return np.frombuffer(bytes(b[:2]), dtype="<f2").astype(np.float32)[0]


def sign_bits(byte):
    return [np.float32(-1.0) if (byte >> j) & 1 else np.float32(1.0) for j in range(8)]


def u32(b, at):
    return int.from_bytes(bytes(b[at:at + 4]), "little")


def iq2_xxs(blk):
    d, out = f16(blk), []
    for ib in range(8):
        a, b = u32(blk, 2 + 8 * ib), u32(blk, 6 + 8 * ib)
        db = d * (np.float32(0.5) + np.float32(b >> 28)) * np.float32(0.25)
        for l in range(4):
            g = T["iq2xxs_grid"][(a >> (8 * l)) & 255]
            sg = sign_bits(KSIGNS[(b >> (7 * l)) & 127])
            out += [db * np.float32(g[j]) * sg[j] for j in range(8)]
    return out


def iq3_xxs(blk):
    d, out = f16(blk), []
    qs, sas = blk[2:66], blk[66:98]
    for ib in range(8):
        b = u32(sas, 4 * ib)
        db = d * (np.float32(0.5) + np.float32(b >> 28)) * np.float32(0.5)
        for l in range(4):
            sg = sign_bits(KSIGNS[(b >> (7 * l)) & 127])
            mags = list(T["iq3xxs_grid"][qs[8 * ib + 2 * l]]) + list(T["iq3xxs_grid"][qs[8 * ib + 2 * l + 1]])
            out += [db * np.float32(mags[j]) * sg[j] for j in range(8)]
    return out


def iq3_s(blk):
    d, out = f16(blk), []
    qs, qh, signs, scales = blk[2:66], blk[66:74], blk[74:106], blk[106:110]
    for ib in range(8):
        s = (scales[ib // 2] >> (4 * (ib % 2))) & 15
        db = d * np.float32(1 + 2 * int(s))
        for l in range(4):
            sg = sign_bits(signs[4 * ib + l])
            mags = []
            for k in (2 * l, 2 * l + 1):
                idx = int(qs[8 * ib + k]) | (((int(qh[ib]) >> k) & 1) << 8)
                mags += list(T["iq3s_grid"][idx])
            out += [db * np.float32(mags[j]) * sg[j] for j in range(8)]
    return out


def iq1_s(blk):
    d, out = f16(blk), []
    qs = blk[2:34]
    qh = np.frombuffer(bytes(blk[34:50]), dtype="<u2")
    for ib in range(8):
        h = int(qh[ib])
        dl = d * np.float32(2 * ((h >> 12) & 7) + 1)
        delta = np.float32(-0.125) if h & 0x8000 else np.float32(0.125)
        for l in range(4):
            idx = int(qs[4 * ib + l]) | (((h >> (3 * l)) & 7) << 8)
            g = T["iq1s_grid"][idx].view(np.int8)
            out += [dl * (np.float32(g[j]) + delta) for j in range(8)]
    return out


def iq2_xs(blk):
    d, out = f16(blk), []
    qs = np.frombuffer(bytes(blk[2:66]), dtype="<u2")
    scales = blk[66:74]
    for ib in range(8):
        for l in range(4):
            s = (int(scales[ib]) >> (4 * (l // 2))) & 15
            db = d * (np.float32(0.5) + np.float32(s)) * np.float32(0.25)
            q = int(qs[4 * ib + l])
            g = T["iq2xs_grid"][q % 512]
            sg = sign_bits(KSIGNS[q // 512])
            out += [db * np.float32(g[j]) * sg[j] for j in range(8)]
    return out


def iq2_s(blk):
    d, out = f16(blk), []
    qs, signs, qh, scales = blk[2:34], blk[34:66], blk[66:74], blk[74:82]
    for ib in range(8):
        for l in range(4):
            s = (int(scales[ib]) >> (4 * (l // 2))) & 15
            db = d * (np.float32(0.5) + np.float32(s)) * np.float32(0.25)
            idx = int(qs[4 * ib + l]) + 256 * ((int(qh[ib]) >> (2 * l)) & 3)
            g = T["iq2s_grid"][idx]
            sg = sign_bits(signs[4 * ib + l])
            out += [db * np.float32(g[j]) * sg[j] for j in range(8)]
    return out


def iq1_m(blk):
    qs, qh = blk[0:32], blk[32:48]
    sc = [int(v) for v in np.frombuffer(bytes(blk[48:56]), dtype="<u2")]
    bits = sum((sc[k] >> 12) << (4 * k) for k in range(4))
    d, out = np.frombuffer(bits.to_bytes(2, "little"), dtype="<f2").astype(np.float32)[0], []
    for ib in range(8):
        for l in range(4):
            nib = (int(qh[2 * ib + l // 2]) >> (4 * (l % 2))) & 15
            s = (sc[ib // 2] >> (6 * (ib % 2) + 3 * (l // 2))) & 7
            dl = d * np.float32(2 * s + 1)
            delta = np.float32(-0.125) if nib & 8 else np.float32(0.125)
            g = T["iq1s_grid"][int(qs[4 * ib + l]) + 256 * (nib & 7)].view(np.int8)
            out += [dl * (np.float32(g[j]) + delta) for j in range(8)]
    return out


DEQ = {"iq2_xxs": iq2_xxs, "iq3_xxs": iq3_xxs, "iq3_s": iq3_s, "iq1_s": iq1_s,
       "iq2_xs": iq2_xs, "iq2_s": iq2_s, "iq1_m": iq1_m}


def random_blocks(rng, name, size, n):
    raw = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    d = (rng.uniform(0.5, 1.5, n) * 1e-3 * rng.choice([-1, 1], n)).astype(np.float16)
    dbytes = d.view(np.uint8).reshape(n, 2)
    if name == "iq1_m":  # d's nibbles k = 0..3 go to the top of scale word k
        raw[0, :] = 0xFF  # every field at its largest value
        bits = d.view(np.uint16).astype(np.int64)
        for k in range(4):
            hi = 48 + 2 * k + 1
            raw[:, hi] = (raw[:, hi] & 0x0F) | (((bits >> (4 * k)) & 15) << 4).astype(np.uint8)
    else:
        raw[:, :2] = dbytes
        raw[0, 2:] = 0xFF  # every field at its largest value
    return raw


def gguf_py_dequant(name, raw):
    root = os.environ.get("LLAMA_CPP_DIR", "/work/llama.cpp")
    path = os.path.join(root, "gguf-py")
    if not os.path.isdir(os.path.join(path, "gguf")):
        return None
    sys.path.insert(0, path)
    try:
        import gguf.quants as q
        from gguf.constants import GGMLQuantizationType as Q
    except Exception as e:  # an incompatible checkout: say so, do not fail
        print(f"note: gguf-py not usable ({e})")
        return None
    return q.dequantize(raw.reshape(-1), Q[name.upper()]).astype(np.float32).reshape(-1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--blocks", type=int, default=48)
    a = ap.parse_args()
    if not os.path.exists(a.tool):
        print(f"SKIP: {a.tool} not built")
        return 77
    rng = np.random.default_rng(5)
    fails = 0
    with tempfile.TemporaryDirectory(prefix="gk_iq_") as d:
        for name, (_, size) in TYPES.items():
            raw = random_blocks(rng, name, size, a.blocks)
            src, dst = os.path.join(d, "in.bin"), os.path.join(d, "out.bin")
            raw.tofile(src)
            r = subprocess.run([a.tool, "--dequant", name, src, dst], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"FAIL {name}: tool failed: {r.stderr}")
                fails += 1
                continue
            got = np.fromfile(dst, dtype=np.float32)
            want = np.array([v for blk in raw for v in DEQ[name](blk)], dtype=np.float32)
            same = got.shape == want.shape and np.array_equal(got.view(np.uint32), want.view(np.uint32))
            msg = f"{name}: {a.blocks} blocks, engine == numpy reference bit for bit: {same}"
            if not same:
                fails += 1
                diff = np.flatnonzero(got != want) if got.shape == want.shape else []
                msg += f" (first differences at {list(diff[:5])})"
            peer = gguf_py_dequant(name, raw)
            if peer is not None:
                p_same = peer.shape == got.shape and np.array_equal(peer.view(np.uint32), got.view(np.uint32))
                msg += f"; == gguf-py: {p_same}"
                if not p_same:
                    fails += 1
            print(msg)
    if fails:
        print(f"{fails} failure(s)")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
