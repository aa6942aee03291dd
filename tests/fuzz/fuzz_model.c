/*
 * fuzz_model.c - libFuzzer target for model loading and the forward pass.
 *
 * The input is a GGUF file. It is parsed, and the type kernels run over a few
 * rows of every tensor (fuzz_kernels.h: every dequantizer and dot in the traits
 * table, new types included). Then it is loaded as a model (gk_model_load, from a
 * memory file, in either numerics mode by the file's last byte); a model that
 * loads runs two tokens through a context of 4 positions on one thread, and its
 * logits are sampled greedily and with the sampler's defaults. Weights here are
 * whatever the input holds (NaN and infinity included), so the forward pass,
 * routing and sampling must cope with any values without a sanitizer report.
 * Seeds: tiny Grok-1 and Grok-2 models (tests/fuzz/make_seeds.py).
 */
#define _GNU_SOURCE
#include "format/gguf.h"
#include "fuzz_kernels.h"
#include "fuzz_memfile.h"
#include "grok.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile float fsink;

static void run_model(gk_model *m) {
    gk_err err;
    const gk_hparams *hp = gk_model_hparams(m);
    gk_context_params cp = gk_context_default_params();
    cp.n_ctx = 4;
    cp.n_threads = 1;
    gk_context *c = gk_context_new(m, &cp, &err);
    if (!c) {
        if (!err.msg[0]) __builtin_trap();
        return;
    }
    int32_t V = (int32_t)hp->n_vocab;
    int32_t toks[2] = {0, V - 1};
    if (gk_decode(c, toks, 2, &err) == 0) {
        const float *l = gk_get_logits(c, 1);
        if (!l) __builtin_trap();
        float s = 0;
        for (int32_t i = 0; i < V; i++) s += l[i];
        fsink += s;
        gk_sampler_params sp = gk_sampler_default_params();
        for (int k = 0; k < 2; k++) {
            if (k == 1) sp.temperature = 0; /* greedy */
            gk_sampler *smp = gk_sampler_new(&sp, V, &err);
            if (!smp) continue;
            int32_t id = gk_sampler_sample(smp, l, toks, 2);
            if (id < 0 || id >= V) __builtin_trap();
            gk_sampler_free(smp);
        }
        /* One more token, then past the context: refused, changing nothing. */
        if (gk_decode(c, toks, 1, &err) != 0 && !err.msg[0]) __builtin_trap();
        if (gk_decode(c, toks, 2, &err) == 0) __builtin_trap();
    } else if (!err.msg[0]) {
        __builtin_trap();
    }
    gk_context_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gk_err err;
    gk_gguf *g = gk_gguf_open_memory(data, size, &err);
    if (!g) return 0;
    gk_fuzz_gguf_kernels(g);
    gk_gguf_close(g);

    char path[64];
    if (memfile(data, size, path, sizeof path) != 0) return 0;
    gk_model_params mp = gk_model_default_params();
    mp.numerics = data[size - 1] & 1 ? GK_NUMERICS_LLAMACPP : GK_NUMERICS_REFERENCE;
    err.msg[0] = 0;
    gk_model *m = gk_model_load(path, &mp, &err);
    if (!m) {
        if (!err.msg[0]) __builtin_trap(); /* a failure must say why */
        return 0;
    }
    run_model(m);
    gk_model_free(m);
    return 0;
}
