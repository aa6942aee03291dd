#!/usr/bin/python3
"""Manual cross-check (not part of make test): tests/reference/kquants_ref.py, the
project's own numpy dequantizer, against llama.cpp's gguf-py quants.py on random
blocks (finite fp16 scales) and, when given, on the tensors of GGUF files.

Usage: kquants_vs_ggufpy.py LLAMA_CPP_DIR [FILE.gguf ...]
Prints, per type, how many values are bit-identical and the largest difference.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import kquants_ref  # noqa: E402

SIZES = {10: 84, 11: 110, 12: 144, 13: 176, 14: 210, 20: 18, 23: 136}
BLOCK = {10: 256, 11: 256, 12: 256, 13: 256, 14: 256, 20: 32, 23: 256}
SCALE_OFFS = {10: (80, 82), 11: (108,), 12: (0, 2), 13: (0, 2), 14: (208,), 20: (0,), 23: (0,)}


def compare(name, mine, theirs):
    mine = np.asarray(mine, np.float32).reshape(-1)
    theirs = np.asarray(theirs, np.float32).reshape(-1)
    same = (mine.view(np.uint32) == theirs.view(np.uint32)) | (np.isnan(mine) & np.isnan(theirs))
    diff = np.abs(mine.astype(np.float64) - theirs.astype(np.float64))
    print(f"{name:28s} {same.sum():9d}/{same.size:<9d} bit-identical, max |diff| {np.nanmax(diff):.3g}")
    return bool(same.all())


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    sys.path.insert(0, os.path.join(sys.argv[1], "gguf-py"))
    from gguf import quants, GGMLQuantizationType as Q  # noqa: E402
    rng = np.random.default_rng(1)
    ok = True
    for t, size in SIZES.items():
        nb = 512
        raw = rng.integers(0, 256, nb * size, dtype=np.uint8).reshape(nb, size)
        for off in SCALE_OFFS[t]:
            d = (rng.random(nb) * 0.05 + 0.001).astype(np.float16).view(np.uint8).reshape(nb, 2)
            raw[:, off:off + 2] = d
        buf = raw.tobytes()
        mine = kquants_ref.dequantize(buf, t, nb * BLOCK[t])
        theirs = quants.dequantize(raw, Q(t))
        ok &= compare(f"random {kquants_ref.DEQUANTIZERS[t][0]}", mine, theirs)
    for path in sys.argv[2:]:
        from gguf import GGUFReader  # noqa: E402
        r = GGUFReader(path)
        for ti in r.tensors:
            t = int(ti.tensor_type)
            if t not in SIZES:
                continue
            raw = np.asarray(ti.data)
            mine = kquants_ref.dequantize(raw.tobytes(), t, int(ti.n_elements))
            theirs = quants.dequantize(raw, Q(t))
            ok &= compare(f"{os.path.basename(path)}:{ti.name}"[-28:], mine, theirs)
    print("all bit-identical" if ok else "DIFFERENCES")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
