"""Minimal GGUF reader for the PyTorch reference (test-only).

Reads a GGUF (v2/v3) file's metadata and tensors so that the reference in
grok_ref.py sees exactly the file the C engine sees (spec section 8). It is
written from the format description, independently of both the C reader
(src/format) and of gguf_writer.py: it has its own parser and its own block
dequantizers, so selfcheck.py can compare writer and reader against each other.

    header  : "GGUF", u32 version, u64 n_tensors, u64 n_kv
    kv      : u64-length key, u32 type, value (type 9 = array: u32 elem type, u64 n, elems)
    tensors : name, u32 n_dims, u64 ne[n_dims] innermost-first, u32 ggml type, u64 offset
    data    : starts at the first multiple of general.alignment (default 32)
              after the tensor infos; offsets are relative to it.

Tensor values come back as float64 numpy arrays in torch layout (the ne list
reversed). Dequantized types: F32, F16, BF16, Q8_0, Q4_0, and (kquants_ref.py)
Q2_K..Q6_K, IQ4_NL, IQ4_XS.
"""

import struct

import numpy as np

import kquants_ref

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9

# ggml type -> (name, elements per block, bytes per block), for sizing any tensor.
GGML_TYPES = {
    0: ("f32", 1, 4), 1: ("f16", 1, 2), 2: ("q4_0", 32, 18), 3: ("q4_1", 32, 20),
    6: ("q5_0", 32, 22), 7: ("q5_1", 32, 24), 8: ("q8_0", 32, 34), 9: ("q8_1", 32, 36),
    10: ("q2_k", 256, 84), 11: ("q3_k", 256, 110), 12: ("q4_k", 256, 144),
    13: ("q5_k", 256, 176), 14: ("q6_k", 256, 210), 15: ("q8_k", 256, 292),
    20: ("iq4_nl", 32, 18), 23: ("iq4_xs", 256, 136),
    24: ("i8", 1, 1), 25: ("i16", 1, 2), 26: ("i32", 1, 4), 27: ("i64", 1, 8),
    28: ("f64", 1, 8), 30: ("bf16", 1, 2),
}


class TensorInfo:
    def __init__(self, name, ne, ggml_type, offset):
        self.name, self.ne, self.type, self.offset = name, ne, ggml_type, offset

    @property
    def n_elements(self):
        n = 1
        for d in self.ne:
            n *= d
        return n

    @property
    def shape(self):
        """torch/numpy shape: ne reversed."""
        return tuple(reversed(self.ne))

    @property
    def type_name(self):
        return GGML_TYPES.get(self.type, (f"type{self.type}",))[0]

    @property
    def n_bytes(self):
        _, blk, size = GGML_TYPES[self.type]
        if self.ne and self.ne[0] % blk:
            raise ValueError(f"{self.name}: row {self.ne[0]} not a multiple of block {blk}")
        return self.n_elements // blk * size


class GGUFFile:
    """Parsed GGUF: .version, .kv {key: value}, .kv_type {key: type}, .tensors {name: TensorInfo}."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.buf = f.read()
        self.path = path
        self._pos = 0
        if self._take(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file (bad magic)")
        self.version = self._scalar("<I")
        if self.version not in (2, 3):
            raise ValueError(f"{path}: unsupported GGUF version {self.version}")
        n_tensors = self._scalar("<Q")
        n_kv = self._scalar("<Q")
        self.kv, self.kv_type = {}, {}
        for _ in range(n_kv):
            key = self._string()
            vtype = self._scalar("<I")
            if key in self.kv:
                raise ValueError(f"{path}: duplicate key {key}")
            self.kv[key] = self._value(vtype)
            self.kv_type[key] = vtype
        self.tensors = {}
        for _ in range(n_tensors):
            name = self._string()
            n_dims = self._scalar("<I")
            if n_dims > 4:
                raise ValueError(f"{path}: tensor {name} has {n_dims} dims")
            ne = tuple(self._scalar("<Q") for _ in range(n_dims))
            ttype = self._scalar("<I")
            offset = self._scalar("<Q")
            if name in self.tensors:
                raise ValueError(f"{path}: duplicate tensor {name}")
            self.tensors[name] = TensorInfo(name, ne, ttype, offset)
        self.alignment = int(self.kv.get("general.alignment", 32))
        self.data_start = self._pos + (-self._pos) % self.alignment
        for t in self.tensors.values():
            if t.offset % self.alignment:
                raise ValueError(f"{path}: tensor {t.name} offset {t.offset} not aligned")
            if t.type in GGML_TYPES and self.data_start + t.offset + t.n_bytes > len(self.buf):
                raise ValueError(f"{path}: tensor {t.name} runs past the end of the file")

    # -- primitive parsing -------------------------------------------------
    def _take(self, n):
        if self._pos + n > len(self.buf):
            raise ValueError(f"{self.path}: truncated at offset {self._pos}")
        b = self.buf[self._pos:self._pos + n]
        self._pos += n
        return b

    def _scalar(self, fmt):
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def _string(self):
        n = self._scalar("<Q")
        return self._take(n).decode("utf-8", errors="surrogateescape")

    def _value(self, vtype):
        if vtype in _SCALARS:
            return self._scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return self._string()
        if vtype == _ARRAY:
            etype = self._scalar("<I")
            n = self._scalar("<Q")
            if etype in _SCALARS:   # numeric arrays in one read
                fmt = _SCALARS[etype]
                size = struct.calcsize(fmt)
                return list(np.frombuffer(self._take(n * size), dtype=np.dtype(fmt)).tolist())
            return [self._value(etype) for _ in range(n)]
        raise ValueError(f"{self.path}: unknown value type {vtype} at offset {self._pos}")

    # -- tensors -------------------------------------------------------------
    def raw(self, name):
        """The stored bytes of a tensor."""
        t = self.tensors[name]
        start = self.data_start + t.offset
        return self.buf[start:start + t.n_bytes]

    def tensor(self, name):
        """A tensor dequantized to float64, in torch layout."""
        t = self.tensors[name]
        return dequantize(self.raw(name), t.type, t.n_elements).reshape(t.shape)

    def get(self, key, default=None):
        return self.kv.get(key, default)


def dequantize(buf, ggml_type, n):
    """Bytes of n elements of a ggml type -> float64 array (values exactly as stored)."""
    if ggml_type == 0:
        out = np.frombuffer(buf, dtype="<f4", count=n)
    elif ggml_type == 1:
        out = np.frombuffer(buf, dtype="<f2", count=n)
    elif ggml_type == 30:
        bits = np.frombuffer(buf, dtype="<u2", count=n).astype(np.uint32) << 16
        out = bits.view(np.float32)
    elif ggml_type == 8:    # Q8_0: { f16 d; i8 q[32] }
        blocks = np.frombuffer(buf, dtype=np.dtype([("d", "<f2"), ("q", "i1", 32)]), count=n // 32)
        out = blocks["d"].astype(np.float32)[:, None] * blocks["q"].astype(np.float32)
    elif ggml_type == 2:    # Q4_0: { f16 d; u8 qs[16] }, low nibbles = elements 0..15
        blocks = np.frombuffer(buf, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count=n // 32)
        lo = (blocks["qs"] & 0x0F).astype(np.float32) - 8
        hi = (blocks["qs"] >> 4).astype(np.float32) - 8
        out = blocks["d"].astype(np.float32)[:, None] * np.concatenate([lo, hi], axis=1)
    else:
        out = kquants_ref.dequantize(buf, ggml_type, n)   # k-quants, IQ4_NL, IQ4_XS
        if out is None:
            raise ValueError(f"cannot dequantize ggml type {ggml_type}")
    # fp32 products first (d*q is exact in fp32 for these formats), then float64.
    return np.asarray(out, dtype=np.float32).reshape(-1).astype(np.float64)
