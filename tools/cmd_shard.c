/*
 * cmd_shard.c - `grok shard MODEL.gguf --ranks N -o DIR`: one GGUF file per rank
 * of a tensor-parallel run (DIR/rank-RRR-of-NNN.gguf), so that each machine
 * needs only its own file. A rank's file holds its slices of every split weight
 * (cut exactly as a rank cuts the whole file when it loads it: src/model/tp.c),
 * the replicated tensors and every key of the model, plus grok.shard.* keys:
 * which rank of how many, the vocabulary slice, a checksum of the file's tensor
 * data (verified at load) and a checksum of the set (every rank must agree on
 * it). These keys are not llama-gguf-split's split.* keys: a per-rank file is
 * refused as a whole model and a whole model as a per-rank file.
 */
#include "cli.h"
#include "dist/dist.h"
#include "format/gguf.h"
#include "model/model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void shard_usage(FILE *f) {
    fprintf(f, "usage: grok shard MODEL.gguf --ranks N -o DIR\n"
               "  writes DIR/rank-RRR-of-NNN.gguf for each rank r < N; run them with\n"
               "  mpirun -np N grok run|chat|bench -m DIR ...\n");
}

/* The split weight whose tensor is t, or NULL for a replicated tensor. */
static const gk_weight *view_of(const gk_model *m, const gk_gguf_tensor *t) {
    if (m->tok_embd.name == t->name) return &m->tok_embd;
    if (!m->hp.tied_output && m->output.name == t->name) return &m->output;
    for (uint32_t l = 0; l < m->hp.n_layer; l++) {
        const gk_layer *L = &m->layers[l];
        const gk_weight *ws[] = {&L->wq,        &L->wk,      &L->wv,        &L->wo,
                                 &L->gate_exps, &L->up_exps, &L->down_exps, &L->ffn_gate,
                                 &L->ffn_up,    &L->ffn_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            if (ws[i]->name == t->name) return ws[i];
    }
    return NULL;
}

/* A view's bytes: each of its matrices' rows, which are contiguous. */
static int produce(void *ud, gk_gguf_sink *sink, gk_err *err) {
    const gk_weight *w = ud;
    for (int64_t e = 0; e < w->ne[2]; e++)
        if (gk_gguf_sink_write(sink, w->data + (size_t)e * w->nb_mat, w->nb_row * (size_t)w->ne[1],
                               err) < 0)
            return -1;
    return 0;
}

static void hash_view(gk_tp_hasher *h, const gk_weight *w) {
    for (int64_t e = 0; e < w->ne[2]; e++)
        gk_tp_hash_update(h, w->data + (size_t)e * w->nb_mat, w->nb_row * (size_t)w->ne[1]);
}

static int write_rank(const char *path, const char *dir, int r, int n, gk_err *err) {
    gk_model *m = gk_model_load_rank(path, NULL, r, n, err);
    if (!m) return -1;
    int rc = -1;
    gk_gguf_writer *w = gk_gguf_writer_new(err);
    if (!w || gk_gguf_copy_kv(w, m->gguf, err) < 0) goto done;
    /* the data checksum covers the tensors' bytes in file order */
    gk_tp_hasher hs;
    gk_tp_hash_init(&hs);
    for (int64_t i = 0; i < gk_gguf_n_tensors(m->gguf); i++) {
        const gk_gguf_tensor *t = gk_gguf_tensor_at(m->gguf, i);
        const gk_weight *v = view_of(m, t);
        if (v) {
            hash_view(&hs, v);
            int64_t ne[4] = {v->ne[0], v->ne[1], v->ne[2], 1};
            if (gk_gguf_add_tensor_fn(w, t->name, t->type, t->n_dims, ne, produce, (void *)v, err) <
                0)
                goto done;
        } else {
            gk_tp_hash_update(&hs, t->data, (size_t)t->nbytes);
            if (gk_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, err) < 0)
                goto done;
        }
    }
    uint64_t set = gk_tp_file_ident(m->gguf);
    uint32_t nn = (uint32_t)n;
    set = gk_dist_hash(set, &nn, sizeof nn);
    gk_gguf_set_u32(w, GK_SHARD_KEY_RANK, (uint32_t)r);
    gk_gguf_set_u32(w, GK_SHARD_KEY_COUNT, nn);
    gk_gguf_set_u32(w, GK_SHARD_KEY_VOCAB, m->hp.n_vocab);
    gk_gguf_set_u32(w, GK_SHARD_KEY_VLO, m->tp.v_lo);
    gk_gguf_set_u64(w, GK_SHARD_KEY_SET, set);
    gk_gguf_set_u64(w, GK_SHARD_KEY_DATA, gk_tp_hash_final(&hs));
    char out[4096];
    snprintf(out, sizeof out, "%s/" GK_SHARD_NAME_FMT, dir, r, n);
    rc = gk_gguf_write(w, out, err);
    if (rc < 0) gk_err_prefix(err, "%s", out);
done:
    gk_gguf_writer_free(w);
    gk_model_free(m);
    return rc;
}

int gk_cmd_shard(int argc, char **argv) {
    const char *path = NULL, *dir = NULL;
    long n = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            shard_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--ranks") || !strcmp(a, "-n")) {
            if (!(v = gk_cli_value(argc, argv, &i)) || !gk_cli_int(a, v, 1, 256, &n)) return 2;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!(dir = gk_cli_value(argc, argv, &i))) return 2;
        } else if (a[0] == '-') {
            fprintf(stderr, "grok shard: unknown option '%s'\n", a);
            return 2;
        } else if (!path) {
            path = a;
        } else {
            fprintf(stderr, "grok shard: more than one model given ('%s')\n", a);
            return 2;
        }
    }
    if (!path || !dir || n < 1) {
        shard_usage(stderr);
        return 2;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "grok shard: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
    }
    for (int r = 0; r < (int)n; r++) {
        gk_err err;
        if (write_rank(path, dir, r, (int)n, &err) < 0) {
            fprintf(stderr, "grok shard: rank %d of %ld: %s\n", r, n, err.msg);
            /* the files of the lower ranks are complete but useless alone */
            for (int k = 0; k < r; k++) {
                char out[4096];
                snprintf(out, sizeof out, "%s/" GK_SHARD_NAME_FMT, dir, k, (int)n);
                remove(out);
            }
            return 1;
        }
        printf("grok shard: wrote %s/" GK_SHARD_NAME_FMT "\n", dir, r, (int)n);
    }
    return 0;
}
