"""Numpy dequantizers for ggml's k-quant and IQ4 blocks (test-only).

Written from the format description (ggml-common.h's block layouts and the
element order below), not from the C code: the oracle that tests/reference's
gguf_reader uses for these types, and that kquants_check.py compares the
engine's scalar dequantization with, bit for bit.

Every super-block holds 256 weights; fp16 factors scale small integer
sub-block scales:

  Q2_K  scales[16] qs[64] d dmin     sub-block j of 16: x = d*(s&15)*q - dmin*(s>>4)
  Q3_K  hmask[32] qs[64] scales[12] d   x = d*(s6-32)*(q2 - 4*(1-hbit))
  Q4_K  d dmin scales[12] qs[128]    sub-block j of 32: x = d*s6*q4 - dmin*m6
  Q5_K  d dmin scales[12] qh[32] qs[128]   q5 = q4 + 16*hbit
  Q6_K  ql[128] qh[64] scales[16](int8) d  x = d*s*(q6 - 32)
  IQ4_NL d qs[16] (32 weights)       x = d*grid[nibble]
  IQ4_XS d scales_h(u16) scales_l[4] qs[128]   sub-block ib of 32: x = d*(s6-32)*grid[nibble]

Element order: Q2_K/Q3_K/Q6_K work in halves of 128 weights; weight 32k + l of a
half is bits 2k..2k+1 of byte l of the half's 32 qs bytes (Q3_K's high bit:
hmask[l] bit 4h + k). Q4_K/Q5_K work in quarters of 64: weight l is the low
nibble of byte l of the quarter's 32 bytes, weight 32 + l the high nibble (Q5_K's
fifth bit: qh[l] bit 2p for the low, 2p + 1 for the high nibble of quarter p).
Q6_K, half h (ql + 64h, qh + 32h): weights l, 32+l, 64+l, 96+l are the low
nibble of ql[l], low of ql[32+l], high of ql[l], high of ql[32+l], with qh[l]
bits 0-1, 2-3, 4-5, 6-7 on top. IQ4: weight j of 32 is the low nibble of qs[j],
weight 16 + j the high one.

Packed 6-bit scales: Q3_K's 16 scales: low 4 bits of scale j in byte j (j < 8)
or the high nibble of byte j - 8, top 2 bits in byte 8 + j%4 at bit 2*(j//4).
Q4_K/Q5_K's 8 scales and mins: j < 4: scale = byte j & 63, min = byte j+4 & 63;
j >= 4: scale = (byte j+4 & 15) | (byte j-4 >> 6) << 4,
        min   = (byte j+4 >> 4) | (byte j >> 6) << 4.

Arithmetic: as the engine's to_float, in float32: the sub-block factor first
(d * scale, dmin * min), then factor * q, then minus the min term.
"""

import numpy as np

QK_K = 256
GRID_IQ4 = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                    dtype=np.float32)

F32 = np.float32


def _blocks(buf, fields, n, per_block):
    dt = np.dtype(fields)
    return np.frombuffer(buf, dtype=dt, count=n // per_block)


def _f(a):
    return np.asarray(a).astype(F32)


def _two_bit_groups(qs):
    """(nb, 64) bytes -> (nb, 256) 2-bit values in weight order."""
    q = qs.reshape(-1, 2, 1, 32)
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)
    return ((q >> shifts) & 3).reshape(-1, QK_K)


def _nibbles(qs, groups):
    """(nb, groups*32) bytes -> (nb, groups*64) nibbles: per group of 32 bytes the
    32 low nibbles, then the 32 high ones."""
    q = qs.reshape(-1, groups, 1, 32)
    return np.concatenate([q & 15, q >> 4], axis=2).reshape(-1, groups * 64)


def _scale_min_k4(s):
    """(nb, 12) packed bytes -> (scales, mins), each (nb, 8) ints."""
    s = s.astype(np.int32)
    sc = np.zeros((s.shape[0], 8), np.int32)
    mn = np.zeros((s.shape[0], 8), np.int32)
    for j in range(8):
        if j < 4:
            sc[:, j] = s[:, j] & 63
            mn[:, j] = s[:, j + 4] & 63
        else:
            sc[:, j] = (s[:, j + 4] & 15) | ((s[:, j - 4] >> 6) << 4)
            mn[:, j] = (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)
    return sc, mn


def dequantize_q2_k(buf, n):
    b = _blocks(buf, [("scales", "u1", 16), ("qs", "u1", 64), ("d", "<f2"), ("dmin", "<f2")], n, QK_K)
    q = _f(_two_bit_groups(b["qs"]))
    s = b["scales"]
    dl = _f(b["d"])[:, None] * _f(s & 15)          # (nb, 16)
    ml = _f(b["dmin"])[:, None] * _f(s >> 4)
    y = np.repeat(dl, 16, axis=1) * q - np.repeat(ml, 16, axis=1)
    return y.reshape(-1)


def dequantize_q3_k(buf, n):
    b = _blocks(buf, [("hmask", "u1", 32), ("qs", "u1", 64), ("scales", "u1", 12), ("d", "<f2")], n, QK_K)
    low = _two_bit_groups(b["qs"]).astype(np.int32)
    bits = np.arange(8, dtype=np.uint8).reshape(1, 2, 4, 1)
    hb = ((b["hmask"].reshape(-1, 1, 1, 32) >> bits) & 1).reshape(-1, QK_K).astype(np.int32)
    q = low - 4 * (1 - hb)
    s = b["scales"].astype(np.int32)
    sc = np.zeros((s.shape[0], 16), np.int32)
    for j in range(16):
        lo = s[:, j] & 15 if j < 8 else s[:, j - 8] >> 4
        hi = (s[:, 8 + j % 4] >> (2 * (j // 4))) & 3
        sc[:, j] = (lo | (hi << 4)) - 32
    dl = _f(b["d"])[:, None] * _f(sc)
    return (np.repeat(dl, 16, axis=1) * _f(q)).reshape(-1)


def dequantize_q4_k(buf, n):
    b = _blocks(buf, [("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", 12), ("qs", "u1", 128)], n, QK_K)
    sc, mn = _scale_min_k4(b["scales"])
    q = _f(_nibbles(b["qs"], 4))
    dl = _f(b["d"])[:, None] * _f(sc)
    ml = _f(b["dmin"])[:, None] * _f(mn)
    return (np.repeat(dl, 32, axis=1) * q - np.repeat(ml, 32, axis=1)).reshape(-1)


def dequantize_q5_k(buf, n):
    b = _blocks(buf, [("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", 12), ("qh", "u1", 32),
                      ("qs", "u1", 128)], n, QK_K)
    sc, mn = _scale_min_k4(b["scales"])
    low = _nibbles(b["qs"], 4).astype(np.int32)
    bits = np.arange(8, dtype=np.uint8).reshape(1, 4, 2, 1)   # quarter p: bits 2p, 2p+1
    hb = ((b["qh"].reshape(-1, 1, 1, 32) >> bits) & 1).reshape(-1, QK_K).astype(np.int32)
    q = _f(low + 16 * hb)
    dl = _f(b["d"])[:, None] * _f(sc)
    ml = _f(b["dmin"])[:, None] * _f(mn)
    return (np.repeat(dl, 32, axis=1) * q - np.repeat(ml, 32, axis=1)).reshape(-1)


def dequantize_q6_k(buf, n):
    b = _blocks(buf, [("ql", "u1", 128), ("qh", "u1", 64), ("scales", "i1", 16), ("d", "<f2")], n, QK_K)
    nb = b.shape[0]
    q = np.zeros((nb, QK_K), np.int32)
    for h in range(2):
        ql = b["ql"][:, 64 * h:64 * h + 64].astype(np.int32)
        qh = b["qh"][:, 32 * h:32 * h + 32].astype(np.int32)
        parts = [(ql[:, :32] & 15) | (((qh >> 0) & 3) << 4),
                 (ql[:, 32:] & 15) | (((qh >> 2) & 3) << 4),
                 (ql[:, :32] >> 4) | (((qh >> 4) & 3) << 4),
                 (ql[:, 32:] >> 4) | (((qh >> 6) & 3) << 4)]
        q[:, 128 * h:128 * h + 128] = np.concatenate(parts, axis=1) - 32
    dl = _f(b["d"])[:, None] * _f(b["scales"])
    return (np.repeat(dl, 16, axis=1) * _f(q)).reshape(-1)


def dequantize_iq4_nl(buf, n):
    b = _blocks(buf, [("d", "<f2"), ("qs", "u1", 16)], n, 32)
    q = np.concatenate([b["qs"] & 15, b["qs"] >> 4], axis=1)
    return (_f(b["d"])[:, None] * GRID_IQ4[q]).reshape(-1)


def dequantize_iq4_xs(buf, n):
    b = _blocks(buf, [("d", "<f2"), ("scales_h", "<u2"), ("scales_l", "u1", 4), ("qs", "u1", 128)], n, QK_K)
    nb = b.shape[0]
    ls = np.zeros((nb, 8), np.int32)
    sh = b["scales_h"].astype(np.int32)
    sl = b["scales_l"].astype(np.int32)
    for ib in range(8):
        ls[:, ib] = ((sl[:, ib // 2] >> (4 * (ib % 2))) & 15) | (((sh >> (2 * ib)) & 3) << 4)
    dl = _f(b["d"])[:, None] * _f(ls - 32)
    q = b["qs"].reshape(nb, 8, 1, 16)
    idx = np.concatenate([q & 15, q >> 4], axis=2).reshape(nb, QK_K)
    return (np.repeat(dl, 32, axis=1) * GRID_IQ4[idx]).reshape(-1)


# ggml type id -> (name, dequantizer)
DEQUANTIZERS = {
    10: ("q2_k", dequantize_q2_k), 11: ("q3_k", dequantize_q3_k), 12: ("q4_k", dequantize_q4_k),
    13: ("q5_k", dequantize_q5_k), 14: ("q6_k", dequantize_q6_k), 20: ("iq4_nl", dequantize_iq4_nl),
    23: ("iq4_xs", dequantize_iq4_xs),
}


def dequantize(buf, ggml_type, n):
    """Bytes of n elements -> float32 array, or None when the type is not one of these."""
    if ggml_type not in DEQUANTIZERS:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        return DEQUANTIZERS[ggml_type][1](buf, n).astype(F32)
