#!/usr/bin/python3
"""The engine's scalar dequantization of k-quant and IQ4 blocks against the numpy
decoder written from the format description (kquants_ref.py), bit for bit.

Runs `test_kquants --dump DIR` (random blocks, half of them with arbitrary fp16
scales: subnormals, inf, NaN) and compares every value: equal float32 bits, or
both NaN. kquants_ref.py itself was checked against llama.cpp's gguf-py
quants.py with bench/kquants_vs_ggufpy.py (bit-identical on random blocks).

Usage: kquants_check.py PATH/TO/test_kquants
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kquants_ref  # noqa: E402


def main():
    if len(sys.argv) != 2 or not os.access(sys.argv[1], os.X_OK):
        print("usage: kquants_check.py PATH/TO/test_kquants (binary missing: skipping)")
        return 77
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.argv[1], "--dump", tmp], check=True)
        for t, (name, _) in sorted(kquants_ref.DEQUANTIZERS.items()):
            blocks = open(os.path.join(tmp, name + ".blocks"), "rb").read()
            engine = np.fromfile(os.path.join(tmp, name + ".f32"), dtype="<f4")
            mine = kquants_ref.dequantize(blocks, t, engine.size)
            same = (engine.view(np.uint32) == mine.view(np.uint32)) | (np.isnan(engine) & np.isnan(mine))
            finite = np.isfinite(mine).sum()
            print(f"{name:7s} {same.sum():6d}/{same.size} values bit-identical ({finite} finite)")
            if not same.all():
                i = int(np.nonzero(~same)[0][0])
                print(f"    first difference at {i}: engine {engine[i]!r}, numpy {mine[i]!r}")
                ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
