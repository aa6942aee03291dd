/*
 * fuzz_shard.c - libFuzzer target for the per-rank files that `grok shard`
 * writes and `mpirun -np N grok ... -m DIR` opens (src/model/tp.c).
 *
 * The input is a GGUF file. It is opened as a per-rank file the way rank r of N
 * opens its file in DIR (gk_model_load_shard: no process group): the
 * grok.shard.* keys against r and N, the data checksum over every tensor, the
 * vocabulary slice, the hyper-parameters split N ways and every slice's shape
 * against them. r and N are the file's own grok.shard.rank/count when they are
 * sane, so that valid inputs get past the key checks; the last byte's bit 1
 * takes the next rank instead (the mismatch path), bit 0 the numerics mode. A
 * file that loads must have slices that lie inside it: the first and last byte
 * of every matrix are read. A file that does not must say why.
 * Seeds: the per-rank files of tiny Grok-1 and Grok-2 models split 2 ways
 * (tests/fuzz/make_seeds.py --grok).
 */
#define _GNU_SOURCE
#include "format/gguf.h"
#include "fuzz_memfile.h"
#include "grok.h"
#include "model/model.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile uint8_t sink;

static void touch(const gk_weight *w) {
    if (!w->data) return;
    if (w->ne[0] <= 0 || w->ne[1] <= 0 || w->ne[2] <= 0 || w->nb_row == 0) __builtin_trap();
    for (int64_t e = 0; e < w->ne[2]; e++) {
        const uint8_t *m = w->data + (size_t)e * w->nb_mat;
        sink ^= m[0];
        sink ^= m[(size_t)(w->ne[1] - 1) * w->nb_row + w->nb_row - 1];
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gk_err err;
    gk_gguf *g = gk_gguf_open_memory(data, size, &err);
    if (!g) return 0;
    uint32_t rank = 0, count = 0;
    int rank_ok = gk_gguf_get_u32(g, GK_SHARD_KEY_RANK, &rank, &err) == 1;
    int count_ok = gk_gguf_get_u32(g, GK_SHARD_KEY_COUNT, &count, &err) == 1;
    gk_gguf_close(g);
    int r = 0, n = 2;
    if (rank_ok && count_ok && count >= 1 && count <= 64 && rank < count)
        r = (int)rank, n = (int)count;
    const uint8_t flags = data[size - 1];
    if (flags & 2) r = (r + 1) % n;

    char path[64];
    if (memfile(data, size, path, sizeof path) != 0) return 0;
    gk_model_params mp = gk_model_default_params();
    mp.numerics = flags & 1 ? GK_NUMERICS_LLAMACPP : GK_NUMERICS_REFERENCE;
    err.msg[0] = 0;
    gk_model *m = gk_model_load_shard(path, &mp, r, n, &err);
    if (!m) {
        if (!err.msg[0]) __builtin_trap(); /* a failure must say why */
        return 0;
    }
    /* this rank's counts are the whole model's over n, and its slices lie in the file */
    const gk_tp *tp = &m->tp;
    if (tp->rank != r || tp->size != n || tp->n_head_kv * (uint32_t)n != m->hp.n_head_kv ||
        tp->v_lo + tp->v_n > m->hp.n_vocab || tp->sum_k < 1)
        __builtin_trap();
    for (uint32_t l = 0; l < m->hp.n_layer; l++) {
        const gk_layer *L = &m->layers[l];
        const gk_weight *ws[] = {&L->wq,       &L->wk,        &L->wv,      &L->wo,
                                 &L->router,   &L->gate_exps, &L->up_exps, &L->down_exps,
                                 &L->ffn_gate, &L->ffn_up,    &L->ffn_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) touch(ws[i]);
    }
    touch(&m->tok_embd);
    touch(&m->output);
    gk_model_free(m);
    return 0;
}
