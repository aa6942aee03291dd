#!/usr/bin/python3
"""The file layouts people download, through the grok CLI (ctest file_layouts).

Each case starts from a small random Grok-1 model that make_model.py writes with
stacked experts (blk.N.ffn_gate_exps.weight {n_embd, n_ff, n_expert}), then
rewrites its tensors' stored bytes unchanged in another layout with
gguf_writer.py, and checks that `grok run --dump-logits` gives bit-identical
logits to the stacked file:

  ordered      older Grok-1 GGUFs: every expert its own 2-D tensor
               blk.N.ffn_gate.E.weight, each stack's experts one after another
               (grok binds them as one stack view: `grok info` says "bound in place")
  interleaved  the same tensors in the order gate.E, up.E, down.E (not one strided
               block: `grok info` says "copied at load")
  split        llama-gguf-split's layout: PREFIX-0000I-of-00003.gguf, the metadata
               in the first, split.no / split.count (u16) and split.tensors.count
               (i32) in every shard; `grok info` lists the three files

for f32, q8_0 and q4_0 weights. Then `grok info` on files grok cannot run (another
architecture; a tensor of a type without kernels) must describe them and say why.

Usage: file_layouts.py --grok path/to/grok     Exit: 0 pass, 1 fail, 77 no binary.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_reader as gr  # noqa: E402
import gguf_writer as gw  # noqa: E402
import make_model  # noqa: E402

TOKENS = [3, 17, 250, 9, 77, 1000, 42, 5, 600, 31, 8, 199]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def copy_kv(src, w):
    for key, val in src.kv.items():
        vtype = src.kv_type[key]
        if vtype == gw.T_ARRAY:
            raise ValueError(f"{key}: arrays are not copied by this test")
        w.add(key, vtype, val)


def expert_name(stack, e):
    # blk.N.ffn_gate_exps.weight -> blk.N.ffn_gate.E.weight
    return stack.replace("_exps.weight", f".{e}.weight")


def expert_bytes(src, name):
    t = src.tensors[name]
    raw = src.raw(name)
    n_exp = t.ne[2]
    step = len(raw) // n_exp
    return [raw[e * step:(e + 1) * step] for e in range(n_exp)], (t.ne[0], t.ne[1])


def write_per_expert(src, path, interleaved):
    w = gw.GGUFWriter()
    copy_kv(src, w)
    for name, t in src.tensors.items():
        if not name.endswith("_exps.weight"):
            w.add_raw(name, t.ne, t.type, src.raw(name))
        elif not interleaved:
            mats, ne = expert_bytes(src, name)
            for e, blob in enumerate(mats):
                w.add_raw(expert_name(name, e), ne, t.type, blob)
        elif "ffn_gate_exps" in name:
            stacks = [name.replace("ffn_gate", k) for k in ("ffn_gate", "ffn_up", "ffn_down")]
            parts = [expert_bytes(src, s) for s in stacks]
            for e in range(len(parts[0][0])):
                for s, (mats, ne) in zip(stacks, parts):
                    w.add_raw(expert_name(s, e), ne, src.tensors[s].type, mats[e])
    w.write(path)


def write_split(src, prefix, n):
    names = list(src.tensors)
    paths = []
    for i in range(n):
        w = gw.GGUFWriter()
        if i == 0:
            copy_kv(src, w)
        w.add("split.no", gw.T_U16, i)
        w.add("split.count", gw.T_U16, n)
        w.add_i32("split.tensors.count", len(names))
        for name in names[i * len(names) // n:(i + 1) * len(names) // n]:
            t = src.tensors[name]
            w.add_raw(name, t.ne, t.type, src.raw(name))
        path = f"{prefix}-{i + 1:05d}-of-{n:05d}.gguf"
        w.write(path)
        paths.append(path)
    return paths


def logits(grok, path, out):
    cmd = [grok, "run", "-m", path, "--tokens", ",".join(map(str, TOKENS)), "-n", "0",
           "--dump-logits", out, "--threads", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr)
        return None
    with open(out, "rb") as f:
        return f.read()


def info(grok, path):
    r = subprocess.run([grok, "info", path], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grok", required=True)
    a = ap.parse_args()
    if not os.path.exists(a.grok):
        print(f"SKIP: {a.grok} not built")
        return 77
    with tempfile.TemporaryDirectory(prefix="gk_layouts_") as d:
        for wtype in ("f32", "q8_0", "q4_0"):
            stacked = os.path.join(d, f"stacked-{wtype}.gguf")
            make_model.build(stacked, "grok1", wtype, seed=11)
            src = gr.GGUFFile(stacked)
            ref = logits(a.grok, stacked, os.path.join(d, "ref.bin"))
            check(ref is not None and len(ref) == 4 * len(TOKENS) * 1280, f"{wtype}: stacked run")
            n_stacks = 3 * int(src.kv["grok.block_count"])
            for layout in ("ordered", "interleaved"):
                path = os.path.join(d, f"{layout}-{wtype}.gguf")
                write_per_expert(src, path, layout == "interleaved")
                got = logits(a.grok, path, os.path.join(d, "got.bin"))
                check(got is not None and got == ref, f"{wtype} {layout}: logits differ")
                rc, text = info(a.grok, path)
                want = (f"{n_stacks} stacks bound in place, 0 copied" if layout == "ordered"
                        else f"0 stacks bound in place, {n_stacks} copied")
                check(rc == 0 and want in text, f"{wtype} {layout}: info lacks '{want}':\n{text}")
            paths = write_split(src, os.path.join(d, f"split-{wtype}"), 3)
            got = logits(a.grok, paths[0], os.path.join(d, "got.bin"))
            check(got is not None and got == ref, f"{wtype} split: logits differ")
            rc, text = info(a.grok, paths[0])
            check(rc == 0 and "split:         3 files" in text and paths[2] in text,
                  f"{wtype} split: info lacks the files:\n{text}")
            print(f"{wtype}: per-expert (ordered, interleaved) and 3-shard logits identical")

        # Files grok cannot run are described, with the reason.
        other = os.path.join(d, "llama.gguf")
        w = gw.GGUFWriter()
        w.add_string("general.architecture", "llama")
        w.add_string("general.name", "not a grok")
        w.add_u32("llama.block_count", 1)
        w.add_raw("blk.0.ffn_up.weight", (256, 2), 35, bytes(66 * 2))  # tq2_0: 66 bytes/256
        w.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
        w.write(other)
        rc, text = info(a.grok, other)
        for want in ("architecture:  llama", "llama.block_count", "'not a grok'",
                     "tq2_0         1 tensors", "(not supported by this engine)",
                     "runs in grok:  no", "architecture 'llama' is not supported",
                     "type tq2_0 is not supported by this engine: 1 tensors (e.g. "
                     "'blk.0.ffn_up.weight')"):
            check(rc == 0 and want in text, f"info of a llama file lacks '{want}':\n{text}")

        # A grok model with one tensor of a type without kernels.
        src = gr.GGUFFile(os.path.join(d, "stacked-f32.gguf"))
        odd = os.path.join(d, "odd-type.gguf")
        w = gw.GGUFWriter()
        copy_kv(src, w)
        for name, t in src.tensors.items():
            if name == "blk.0.attn_k.weight":
                rows = t.ne[1] * t.ne[0] // 256
                w.add_raw(name, (256, rows), 35, bytes(66 * rows))
            else:
                w.add_raw(name, t.ne, t.type, src.raw(name))
        w.write(odd)
        rc, text = info(a.grok, odd)
        for want in ("runs in grok:  no", "'blk.0.attn_k.weight': type tq2_0 is not supported",
                     "grok.expert_count"):
            check(rc == 0 and want in text, f"info of a tq2_0 grok lacks '{want}':\n{text}")
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
