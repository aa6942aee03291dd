#!/usr/bin/python3
"""By-hand check (not part of `make test`): IQ blocks that llama-quantize wrote.

Needs a llama.cpp checkout with gguf-py and a build with llama-quantize (and,
when present, llama-imatrix and llama-gguf-split):

  llamacpp_iq.py --llama-cpp /work/llama.cpp --build /work/llama.cpp/build \\
                 --grok build/grok --tool build/tests/test_iquants --work /tmp/iqv

1. writes a small Grok-1 model (make_model.py's weights; n_embd 256, expert width
   512, so every matrix holds whole 256-weight blocks) with llama-spm's tokenizer;
2. an importance matrix: llama-imatrix on this repository's README when built, else
   a synthetic one in llama-imatrix's GGUF format (random positive sums: they only
   steer which grid points the quantizer picks, never the block format);
3. llama-quantize to each IQ mix: IQ2_XXS, IQ2_XS, IQ2_S, IQ2_M, IQ3_XXS, IQ3_S,
   IQ3_M, IQ1_S, IQ1_M (each file mixes in other types, as llama-quantize does: the
   IQ2_S and IQ2_M mixes write IQ2_XS and IQ2_S blocks, IQ3_XXS some IQ2_S);
4. every IQ tensor type in each file: the engine's dequantizer == gguf-py's on every block and == the
   numpy reference (iq_ref.py) on the first 32 blocks, bit for bit; the engine's
   AVX2 dot == its scalar dot bit for bit and == the dequantized dot (test_iquants
   --dots); `grok info` describes the file;
5. when llama-gguf-split is built: the f32 model split in 3 by it gives the same
   logits in grok as the single file.
"""

import argparse
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import iq_ref  # noqa: E402
import make_model as mm  # noqa: E402

MIXES = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_S", "IQ3_M", "IQ1_S", "IQ1_M"]


def write_model(gguf, path, vocab_file):
    mm.N_EMBD, mm.N_HEAD, mm.N_HEAD_KV, mm.HEAD_DIM = 256, 4, 2, 64
    mm.N_FF_EXP_GROK1 = 512
    voc = gguf.GGUFReader(vocab_file)
    mm.N_VOCAB = len(voc.fields["tokenizer.ggml.tokens"].data)
    w = gguf.GGUFWriter(path, "grok")
    for k, v in mm.model_config("grok1").items():
        (w.add_uint32 if k in mm._U32_KEYS else w.add_float32)("grok." + k, v)
    for name, f in voc.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vt = f.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            if f.types[-1] == gguf.GGUFValueType.STRING:
                w.add_array(name, [str(bytes(f.parts[i]), "utf-8") for i in f.data])
            else:
                w.add_array(name, [f.parts[i][0].item() for i in f.data])
        elif vt == gguf.GGUFValueType.STRING:
            w.add_string(name, str(bytes(f.parts[-1]), "utf-8"))
        else:
            w.add_key_value(name, f.parts[-1][0].item(), vt)
    for name, arr in mm.random_weights("grok1", 3).items():
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def synthetic_imatrix(gguf, model, path):
    r = gguf.GGUFReader(model)
    w = gguf.GGUFWriter(path, arch=None)
    w.add_array("imatrix.datasets", ["synthetic"])
    w.add_uint32("imatrix.chunk_count", 10)
    w.add_uint32("imatrix.chunk_size", 512)
    rng = np.random.default_rng(1)
    for t in r.tensors:
        ne = [int(x) for x in t.shape]
        if len(ne) < 2:
            continue
        n_exp = ne[2] if len(ne) == 3 else 1
        sums = (rng.chisquare(2, size=(n_exp, ne[0])) * 100).astype(np.float32)
        w.add_tensor(t.name + ".in_sum2", sums if n_exp > 1 else sums.reshape(ne[0]))
        w.add_tensor(t.name + ".counts", np.full((n_exp, 1) if n_exp > 1 else (1,), 100.0,
                                                 dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", default="/work/llama.cpp")
    ap.add_argument("--build", default="/work/llama.cpp/build")
    ap.add_argument("--grok", default="build/grok")
    ap.add_argument("--tool", default="build/tests/test_iquants")
    ap.add_argument("--work", default="/tmp/gk_llamacpp_iq")
    a = ap.parse_args()
    sys.path.insert(0, os.path.join(a.llama_cpp, "gguf-py"))
    import gguf
    import gguf.quants as q
    bindir = os.path.join(a.build, "bin")
    env = dict(os.environ, LD_LIBRARY_PATH=bindir)
    os.makedirs(a.work, exist_ok=True)
    model = os.path.join(a.work, "m.gguf")
    write_model(gguf, model, os.path.join(a.llama_cpp, "models", "ggml-vocab-llama-spm.gguf"))
    imat = os.path.join(a.work, "imatrix.gguf")
    if os.path.exists(os.path.join(bindir, "llama-imatrix")):
        run([os.path.join(bindir, "llama-imatrix"), "-m", model, "-f",
             os.path.join(HERE, "..", "..", "README.md"), "-o", imat, "-c", "128"], env)
        print("imatrix: llama-imatrix on README.md")
    else:
        synthetic_imatrix(gguf, model, imat)
        print("imatrix: synthetic (llama-imatrix is not built)")
    fails = 0
    seen = set()
    for mix in MIXES:
        out = os.path.join(a.work, f"m-{mix}.gguf")
        run([os.path.join(bindir, "llama-quantize"), "--imatrix", imat, model, out, mix, "2"], env)
        r = gguf.GGUFReader(out)
        info = run([a.grok, "info", out])
        gen = subprocess.run([a.grok, "run", "-m", out, "--tokens", "5,6,7,8", "-n", "4"],
                             capture_output=True, text=True)
        types = sorted({t.tensor_type.name for t in r.tensors} & {n.upper() for n in iq_ref.TYPES})
        print(f"{mix} mix: IQ types {', '.join(types)}; grok run exit {gen.returncode}")
        fails += gen.returncode != 0
        for T in types:
            name = T.lower()
            seen.add(name)
            raw = [np.ascontiguousarray(t.data).reshape(-1).view(np.uint8)
                   for t in r.tensors if t.tensor_type.name == T]
            raw = np.concatenate(raw)
            src, dst = os.path.join(a.work, "raw.bin"), os.path.join(a.work, "deq.bin")
            raw.tofile(src)
            run([a.tool, "--dequant", name, src, dst])
            got = np.fromfile(dst, dtype=np.float32)
            peer = q.dequantize(raw, getattr(gguf.GGMLQuantizationType, T)).astype(np.float32)
            size = iq_ref.TYPES[name][1]
            mine = np.array([v for b in raw.reshape(-1, size)[:32] for v in iq_ref.DEQ[name](b)],
                            dtype=np.float32)
            ok = (np.array_equal(got.view(np.uint32), peer.reshape(-1).view(np.uint32)) and
                  np.array_equal(got[:mine.size].view(np.uint32), mine.view(np.uint32)))
            dots = subprocess.run([a.tool, "--dots", name, src], capture_output=True, text=True)
            print(f"  {T}: {len(raw) // size} blocks: dequantized == gguf-py and numpy "
                  f"reference: {ok}; {dots.stdout.strip()}")
            fails += (not ok) + (dots.returncode != 0) + (f"{name} " not in info)
    missing = set(iq_ref.TYPES) - seen
    if missing:
        print(f"no mix wrote {', '.join(sorted(missing))}")
        fails += 1
    split = os.path.join(bindir, "llama-gguf-split")
    if os.path.exists(split):
        prefix = os.path.join(a.work, "split")
        run([split, "--split", "--split-max-tensors", "14", model, prefix], env)
        toks = "5,6,7,8,100,200,300,9,17,42"
        outs = []
        for m in (model, prefix + "-00001-of-00003.gguf"):
            dump = m + ".logits"
            run([a.grok, "run", "-m", m, "--tokens", toks, "-n", "0", "--dump-logits", dump])
            outs.append(open(dump, "rb").read())
        same = outs[0] == outs[1]
        print(f"llama-gguf-split into 3 shards: logits identical to the single file: {same}")
        fails += not same
    else:
        print("llama-gguf-split is not built: split check skipped")
    print("ok" if not fails else f"{fails} failure(s)")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
