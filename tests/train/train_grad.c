/*
 * train_grad.c - test helper: one forward and backward of the training engine
 * on given tokens, the loss and every parameter's gradient written out as a
 * GGUF (the tensors under the model's names, f32; keys train.ce, train.aux).
 * grad_parity.py compares them with torch autograd on the reference.
 *
 *   train_grad MODEL.gguf B T INPUTS TARGETS AUX_WEIGHT OUT.gguf [llamacpp] [THREADS]
 *   (INPUTS, TARGETS: comma-separated B*T token ids)
 */
#include "train/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_ids(const char *s, int32_t *out, int n) {
    for (int i = 0; i < n; i++) {
        char *end;
        out[i] = (int32_t)strtol(s, &end, 10);
        if (end == s) return -1;
        s = *end == ',' ? end + 1 : end;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 8) {
        fprintf(stderr,
                "usage: train_grad MODEL B T INPUTS TARGETS AUX OUT [llamacpp] [THREADS]\n");
        return 2;
    }
    gk_err err;
    gk_model_params mp = gk_model_default_params();
    if (argc > 8 && !strcmp(argv[8], "llamacpp")) mp.numerics = GK_NUMERICS_LLAMACPP;
    int nt = argc > 9 ? atoi(argv[9]) : 2;
    gk_model *m = gk_model_load(argv[1], &mp, &err);
    if (!m) {
        fprintf(stderr, "train_grad: %s\n", err.msg);
        return 1;
    }
    int B = atoi(argv[2]), T = atoi(argv[3]);
    float aux_w = (float)atof(argv[6]);
    int32_t *in = calloc((size_t)B * T, 4), *tg = calloc((size_t)B * T, 4);
    if (parse_ids(argv[4], in, B * T) || parse_ids(argv[5], tg, B * T)) {
        fprintf(stderr, "train_grad: bad token list\n");
        return 2;
    }
    gk_tmodel *tm = gk_tmodel_from_model(m, &err);
    gk_pool *pool = tm ? gk_pool_new(nt, &err) : NULL;
    gk_tstate *s = pool ? gk_tstate_new(tm, B, T, pool, &err) : NULL;
    gk_tloss loss;
    if (!s || gk_tforward(s, in, tg, &loss, &err) < 0) {
        fprintf(stderr, "train_grad: %s\n", err.msg);
        return 1;
    }
    gk_tbackward(s, 1.0f / (float)(B * T), aux_w);
    /* write the gradients in place of the weights */
    memcpy(tm->w, tm->g, tm->n_params * sizeof(float));
    gk_gguf_writer *w = gk_gguf_writer_new(&err);
    gk_gguf_set_f32(w, "train.ce", (float)(loss.ce_sum / (B * T)));
    gk_gguf_set_f32(w, "train.aux", (float)loss.aux);
    for (int i = 0; i < tm->n_tensors; i++) {
        const gk_ttensor *t = &tm->tensors[i];
        gk_gguf_add_tensor(w, t->name, GK_TYPE_F32, t->n_dims, t->ne, tm->w + t->offset, &err);
    }
    int rc = gk_gguf_write(w, argv[7], &err);
    if (rc < 0) fprintf(stderr, "train_grad: %s\n", err.msg);
    printf("ce %.9g aux %.9g\n", loss.ce_sum / (B * T), loss.aux);
    gk_gguf_writer_free(w);
    gk_tstate_free(s);
    gk_pool_free(pool);
    gk_tmodel_free(tm);
    gk_model_free(m);
    free(in);
    free(tg);
    return rc < 0;
}
