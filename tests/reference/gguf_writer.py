"""Minimal GGUF v3 writer and ggml block codecs, in numpy (test-only).

Used by make_model.py to write the small random Grok models that the parity
tests feed to both the C engine and the PyTorch reference (spec section 8: GGUF
is the native format, llama.cpp's `grok.*` keys and tensor names).

Written from the GGUF format description, not from the C engine:

    header  : "GGUF", u32 version (3), u64 n_tensors, u64 n_kv
    kv      : string key, u32 value type, value
    tensor  : string name, u32 n_dims, u64 ne[n_dims] (innermost first),
              u32 ggml type, u64 offset (relative to the data section, aligned)
    padding : zeros up to `general.alignment` (default 32)
    data    : each tensor at its offset, padded to the alignment
    string  : u64 length + bytes (no terminator)

Value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string,
9 array (u32 element type, u64 count, elements), 10 u64, 11 i64, 12 f64.

Tensor types written here: F32=0, F16=1, Q4_0=2, Q8_0=8, BF16=30.
Block layouts follow llama.cpp's reference quantizers (ggml-quants.c
`quantize_row_q8_0_ref` / `quantize_row_q4_0_ref`), computed in float32 the
way the C code does, so the bytes match what llama.cpp would write:

    Q8_0: 32 values -> { fp16 d; int8 q[32] }   d = amax/127, q = roundf(x * (1/d))
    Q4_0: 32 values -> { fp16 d; u8 qs[16] }    m = first value with the largest |x|
          (sign kept), d = m/-8, q = min(15, (int8)(x*(1/d) + 8.5));
          qs[j] = q[j] | q[j+16] << 4;          x = d * (q - 8)
    BF16: round-to-nearest-even of the top 16 bits of the fp32 pattern.

A torch matrix [out, in] is stored with ne = [in, out] (same row-major bytes);
an expert stack [E, out, in] with ne = [in, out, E]: ne is the numpy shape
reversed, and quantization blocks run along the innermost (last numpy) axis.
"""

import struct

import numpy as np

# ---------------------------------------------------------------- constants ---

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32

# GGUF metadata value types.
T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STRING, T_ARRAY, T_U64, T_I64, T_F64 = range(13)

_SCALAR_FMT = {
    T_U8: "<B", T_I8: "<b", T_U16: "<H", T_I16: "<h", T_U32: "<I", T_I32: "<i",
    T_F32: "<f", T_BOOL: "<?", T_U64: "<Q", T_I64: "<q", T_F64: "<d",
}

# ggml tensor types.
F32, F16, Q4_0, Q8_0, BF16 = 0, 1, 2, 8, 30
TYPE_NAMES = {F32: "f32", F16: "f16", Q4_0: "q4_0", Q8_0: "q8_0", BF16: "bf16"}
TYPE_BY_NAME = {v: k for k, v in TYPE_NAMES.items()}

QK = 32  # elements per block for Q8_0 and Q4_0


# ------------------------------------------------------------ block codecs ---

def _blocks(x):
    """Flattens x to float32 blocks of 32 along the innermost axis."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape[-1] % QK:
        raise ValueError(f"row length {x.shape[-1]} is not a multiple of {QK}")
    return x.reshape(-1, QK)


def quantize_q8_0(x):
    """float array (last axis % 32 == 0) -> Q8_0 bytes (34 per block)."""
    b = _blocks(x)
    amax = np.abs(b).max(axis=1)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    xs = (b * inv[:, None]).astype(np.float32)             # fp32 multiply as in C
    # roundf: half away from zero. Done in float64, where |xs| + 0.5 is exact.
    xs64 = xs.astype(np.float64)
    q = (np.sign(xs64) * np.floor(np.abs(xs64) + 0.5)).astype(np.int8)
    out = np.empty((b.shape[0], 34), dtype=np.uint8)
    out[:, 0:2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.view(np.uint8)
    return out.tobytes()


def dequantize_q8_0(buf, n):
    """Q8_0 bytes -> float32 array of n elements."""
    a = np.frombuffer(buf, dtype=np.uint8, count=(n // QK) * 34).reshape(-1, 34)
    d = a[:, 0:2].copy().view(np.float16).astype(np.float32)
    q = a[:, 2:].copy().view(np.int8).astype(np.float32)
    return (d * q).reshape(-1)


def quantize_q4_0(x):
    """float array (last axis % 32 == 0) -> Q4_0 bytes (18 per block)."""
    b = _blocks(x)
    idx = np.argmax(np.abs(b), axis=1)                     # first of equal maxima, like `<`
    m = b[np.arange(b.shape[0]), idx]
    d = (m / np.float32(-8)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    v = (b * inv[:, None]).astype(np.float32) + np.float32(8.5)   # fp32 ops as in C
    q = np.minimum(15, np.trunc(v.astype(np.float64)).astype(np.int64)).astype(np.uint8)
    out = np.empty((b.shape[0], 18), dtype=np.uint8)
    out[:, 0:2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q[:, :16] | (q[:, 16:] << 4)
    return out.tobytes()


def dequantize_q4_0(buf, n):
    """Q4_0 bytes -> float32 array of n elements."""
    a = np.frombuffer(buf, dtype=np.uint8, count=(n // QK) * 18).reshape(-1, 18)
    d = a[:, 0:2].copy().view(np.float16).astype(np.float32)
    qs = a[:, 2:]
    q = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.float32) - 8
    return (d * q).reshape(-1)


def to_bf16_bits(x):
    """float array -> uint16 bf16 bit patterns, round to nearest even (NaN kept quiet)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    r = np.where(nan, (u >> 16) | 0x40, r)
    return r.astype(np.uint16)


def from_bf16_bits(bits):
    """uint16 bf16 bit patterns -> float32."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def encode(x, ggml_type):
    """float array -> the bytes of a tensor of ggml_type."""
    if ggml_type == F32:
        return np.ascontiguousarray(x, dtype=np.float32).tobytes()
    if ggml_type == F16:
        return np.ascontiguousarray(x, dtype=np.float32).astype(np.float16).tobytes()
    if ggml_type == BF16:
        return to_bf16_bits(x).tobytes()
    if ggml_type == Q8_0:
        return quantize_q8_0(x)
    if ggml_type == Q4_0:
        return quantize_q4_0(x)
    raise ValueError(f"unsupported ggml type {ggml_type}")


def decode(buf, ggml_type, n):
    """Bytes of a tensor of ggml_type -> float32 array of n elements."""
    if ggml_type == F32:
        return np.frombuffer(buf, dtype=np.float32, count=n).copy()
    if ggml_type == F16:
        return np.frombuffer(buf, dtype=np.float16, count=n).astype(np.float32)
    if ggml_type == BF16:
        return from_bf16_bits(np.frombuffer(buf, dtype=np.uint16, count=n))
    if ggml_type == Q8_0:
        return dequantize_q8_0(buf, n)
    if ggml_type == Q4_0:
        return dequantize_q4_0(buf, n)
    raise ValueError(f"unsupported ggml type {ggml_type}")


def roundtrip(x, ggml_type):
    """The float32 values a tensor of ggml_type holds after storing x (same shape)."""
    x = np.asarray(x, dtype=np.float32)
    return decode(encode(x, ggml_type), ggml_type, x.size).reshape(x.shape)


# ------------------------------------------------------------------ writer ---

def _string(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def _value(vtype, v):
    if vtype == T_STRING:
        return _string(v)
    if vtype == T_ARRAY:
        etype, items = v
        out = struct.pack("<IQ", etype, len(items))
        return out + b"".join(_value(etype, it) for it in items)
    return struct.pack(_SCALAR_FMT[vtype], v)


class GGUFWriter:
    """Collects key/values and tensors, then writes one GGUF v3 file.

    kv values are typed explicitly (add_u32, add_f32, ...); tensors are float
    numpy arrays in torch layout, encoded on add to the requested ggml type.
    """

    def __init__(self, alignment=DEFAULT_ALIGNMENT):
        self.alignment = alignment
        self.kvs = []       # (key, vtype, value)
        self.tensors = []   # (name, ne, ggml_type, bytes)
        if alignment != DEFAULT_ALIGNMENT:
            self.add_u32("general.alignment", alignment)

    def add(self, key, vtype, value):
        if any(k == key for k, _, _ in self.kvs):
            raise ValueError(f"duplicate key {key}")
        self.kvs.append((key, vtype, value))

    def add_u32(self, key, v): self.add(key, T_U32, int(v))
    def add_i32(self, key, v): self.add(key, T_I32, int(v))
    def add_u64(self, key, v): self.add(key, T_U64, int(v))
    def add_f32(self, key, v): self.add(key, T_F32, float(v))
    def add_f64(self, key, v): self.add(key, T_F64, float(v))
    def add_bool(self, key, v): self.add(key, T_BOOL, bool(v))
    def add_string(self, key, v): self.add(key, T_STRING, v)
    def add_array(self, key, etype, items): self.add(key, T_ARRAY, (etype, list(items)))

    def add_tensor(self, name, array, ggml_type=F32):
        """array: numpy float array in torch layout; stored with ne = shape reversed."""
        array = np.asarray(array)
        if any(n == name for n, _, _, _ in self.tensors):
            raise ValueError(f"duplicate tensor {name}")
        ne = tuple(int(s) for s in reversed(array.shape))
        self.tensors.append((name, ne, ggml_type, encode(array, ggml_type)))

    def add_raw(self, name, ne, ggml_type, blob):
        """A tensor given as its stored bytes (any ggml type) and ne (innermost first)."""
        if any(n == name for n, _, _, _ in self.tensors):
            raise ValueError(f"duplicate tensor {name}")
        self.tensors.append((name, tuple(int(n) for n in ne), ggml_type, bytes(blob)))

    def _pad(self, n):
        return (-n) % self.alignment

    def to_bytes(self):
        head = bytearray(GGUF_MAGIC)
        head += struct.pack("<IQQ", GGUF_VERSION, len(self.tensors), len(self.kvs))
        for key, vtype, v in self.kvs:
            head += _string(key) + struct.pack("<I", vtype) + _value(vtype, v)
        offset = 0
        data = bytearray()
        for name, ne, ttype, blob in self.tensors:
            head += _string(name) + struct.pack("<I", len(ne))
            head += struct.pack(f"<{len(ne)}Q", *ne)
            head += struct.pack("<IQ", ttype, offset)
            data += blob + bytes(self._pad(len(blob)))
            offset += len(blob) + self._pad(len(blob))
        head += bytes(self._pad(len(head)))
        return bytes(head) + bytes(data)

    def write(self, path):
        with open(path, "wb") as f:
            f.write(self.to_bytes())
