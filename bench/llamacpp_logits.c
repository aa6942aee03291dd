/*
 * llamacpp_logits.c - llama.cpp's logits at every position of a token list, as
 * float32 rows (the layout of `grok run --dump-logits`), for the manual
 * comparison in bench/kquants_vs_llamacpp.sh. Built there against a llama.cpp
 * build; never part of the project's build.
 *
 * Usage: llamacpp_logits MODEL.gguf ID,ID,... OUT.f32   (KV32=1: f32 KV cache)
 */
#include "llama.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    /* NOREPACK=1: no repacked (interleaved) weight copies, the plain vec-dot path */
    if (getenv("NOREPACK")) mp.use_extra_bufts = false;
    struct llama_model *m = llama_model_load_from_file(argv[1], mp);
    if (!m) {
        fprintf(stderr, "load failed\n");
        return 1;
    }
    int toks[4096], n = 0;
    for (char *s = strtok(argv[2], ","); s; s = strtok(NULL, ",")) toks[n++] = atoi(s);
    struct llama_context_params cp = llama_context_default_params();
    if (getenv("KV32")) {
        cp.type_k = GGML_TYPE_F32;
        cp.type_v = GGML_TYPE_F32;
    }
    cp.n_ctx = 512;
    cp.n_batch = 512;
    cp.n_ubatch = 512;
    cp.n_threads = 2;
    cp.n_threads_batch = 2;
    struct llama_context *c = llama_init_from_model(m, cp);
    if (!c) {
        fprintf(stderr, "ctx failed\n");
        return 1;
    }
    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        b.token[i] = toks[i];
        b.pos[i] = i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = 1;
    }
    b.n_tokens = n;
    if (llama_decode(c, b)) {
        fprintf(stderr, "decode failed\n");
        return 1;
    }
    int nv = llama_vocab_n_tokens(llama_model_get_vocab(m));
    FILE *f = fopen(argv[3], "wb");
    for (int i = 0; i < n; i++) fwrite(llama_get_logits_ith(c, i), 4, nv, f);
    fclose(f);
    printf("n_vocab %d\n", nv);
    return 0;
}
