#!/usr/bin/python3
"""Stand-in for the grok binary, for testing parity.py itself (not used by ctest).

Implements just `run -m FILE --tokens ... -n 0 --numerics MODE --dump-logits OUT
[--threads N] [--ubatch N]` with grok_ref.py, rounding the logits to float32.
FAKE_GROK_BUG=<numerics field>=<value> (e.g. gelu=tanh, router_softcap=0,
renormalize=1) runs with that field changed, to show that parity.py catches it;
FAKE_GROK_ACTQ=1 rounds the activations of quantized matmuls to Q8_0 like the engine.

    parity.py --grok tests/reference/fake_grok.py --case 'grok2-f32-*'
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grok_ref  # noqa: E402


def main(argv):
    if not argv or argv[0] != "run":
        print("fake_grok: only `run` is supported", file=sys.stderr)
        return 2
    opts, i = {}, 1
    while i < len(argv):
        opts[argv[i]] = argv[i + 1]
        i += 2
    m = grok_ref.load(opts["-m"])
    nm = m.numerics(opts.get("--numerics", "reference"))
    bug = os.environ.get("FAKE_GROK_BUG")
    if bug:
        field, val = bug.split("=")
        cur = getattr(nm, field)
        nm = nm.replace(**{field: type(cur)(float(val)) if not isinstance(cur, str) else val})
    if os.environ.get("FAKE_GROK_ACTQ"):
        nm = nm.replace(act_quant="q8_0")
    tokens = [int(t) for t in opts["--tokens"].split(",")]
    m.forward(tokens, nm).numpy().astype("<f4").tofile(opts["--dump-logits"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
