/*
 * dist_batch.c - the follower protocol under mpirun: rank 0 drives a split
 * context with the batch API (two sequences in one batch, kept logits flags,
 * gk_kv_seq_copy, gk_kv_seq_keep, gk_context_truncate, gk_decode) and, beside
 * it, a whole-model context in the same process; every kept logit must agree
 * within 1e-5 * (1 + max|logit|). The other ranks only follow.
 *
 * usage: mpirun -np N dist_batch MODEL.gguf    (exit 0 pass, 1 fail)
 */
#include "grok.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fails;

static void compare(const char *what, const float *a, const float *b, int n) {
    if (!a || !b) {
        printf("FAIL %s: logits missing (%p %p)\n", what, (const void *)a, (const void *)b);
        fails++;
        return;
    }
    double mx = 0, d = 0;
    for (int i = 0; i < n; i++) {
        mx = fmax(mx, fabs(a[i]));
        d = fmax(d, fabs(a[i] - b[i]));
    }
    bool ok = d <= 1e-5 * (1 + mx);
    printf("%s %s: max diff %.2e (bound %.2e)\n", ok ? "ok  " : "FAIL", what, d, 1e-5 * (1 + mx));
    fails += !ok;
}

#define CHECK(call)                                                                                \
    do {                                                                                           \
        if ((call) < 0) {                                                                          \
            printf("FAIL %s: %s\n", #call, err.msg);                                               \
            gk_dist_abort(d, 1);                                                                   \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

/* The same call on the split context (c) and the whole one (w). */
#define BOTH(fn, ...)                                                                              \
    do {                                                                                           \
        CHECK(fn(c, __VA_ARGS__, &err));                                                           \
        CHECK(fn(w, __VA_ARGS__, &err));                                                           \
    } while (0)

int main(int argc, char **argv) {
    gk_err err;
    gk_dist *d = gk_dist_new(&argc, &argv, &err);
    if (!d || argc < 2) {
        fprintf(stderr, "usage: mpirun -np N dist_batch MODEL.gguf\n");
        return 2;
    }
    gk_model_params mp = gk_model_default_params();
    mp.dist = d;
    gk_model *m = gk_model_load(argv[1], &mp, &err);
    if (!m) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    gk_context_params cp = gk_context_default_params();
    cp.n_ctx = 64;
    cp.n_batch = 16;
    cp.n_seq = 3;
    cp.n_threads = 1;
    cp.cache_type = GK_CACHE_F32;
    gk_context *c = gk_context_new(m, &cp, &err);
    if (!c) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    if (gk_dist_rank(d) > 0) {
        int rc = gk_dist_follow(c, &err);
        if (rc < 0) fprintf(stderr, "%s\n", err.msg);
        gk_context_free(c);
        gk_model_free(m);
        gk_dist_free(d);
        return rc < 0;
    }
    gk_model *wm = gk_model_load(argv[1], NULL, &err);
    gk_context *w = wm ? gk_context_new(wm, &cp, &err) : NULL;
    if (!w) {
        fprintf(stderr, "%s\n", err.msg);
        gk_dist_abort(d, 1);
    }
    const int V = (int)gk_model_hparams(m)->n_vocab;
    int32_t tok[16], seq[16];
    bool keep[16];
    /* sequences 0 and 1 interleaved, logits of tokens 3, 8 and the last */
    for (int i = 0; i < 12; i++) {
        tok[i] = (i * 97 + 13) % V;
        seq[i] = i % 2;
        keep[i] = i == 3 || i == 8 || i == 11;
    }
    gk_batch b = {.n = 12, .token = tok, .seq = seq, .logits = keep};
    CHECK(gk_decode_batch(c, &b, &err));
    CHECK(gk_decode_batch(w, &b, &err));
    const int kept[3] = {3, 8, 11};
    for (int k = 0; k < 3; k++) {
        char what[64];
        snprintf(what, sizeof what, "mixed batch, token %d", kept[k]);
        compare(what, gk_get_logits(c, kept[k]), gk_get_logits(w, kept[k]), V);
    }
    /* fork sequence 1 into 2, shorten it, continue both */
    BOTH(gk_kv_seq_copy, 1, 2, 5);
    BOTH(gk_kv_seq_keep, 2, 4);
    BOTH(gk_kv_seq_keep, 0, 3);
    for (int i = 0; i < 4; i++) {
        tok[i] = (i * 31 + 7) % V;
        seq[i] = i < 2 ? 2 : 0;
    }
    gk_batch b2 = {.n = 4, .token = tok, .seq = seq, .logits = NULL};
    CHECK(gk_decode_batch(c, &b2, &err));
    CHECK(gk_decode_batch(w, &b2, &err));
    compare("after copy and keep", gk_get_logits(c, 3), gk_get_logits(w, 3), V);
    if (gk_kv_seq_len(c, 2) != 6 || gk_kv_seq_len(c, 0) != 5) {
        printf("FAIL sequence lengths %u %u\n", gk_kv_seq_len(c, 2), gk_kv_seq_len(c, 0));
        fails++;
    }
    /* a refused batch changes nothing on any rank */
    seq[0] = 7;
    if (gk_decode_batch(c, &b2, &err) == 0) {
        printf("FAIL a batch with sequence 7 of 3 was accepted\n");
        fails++;
    } else {
        printf("ok   bad batch refused: %s\n", err.msg);
    }
    /* the single-sequence calls */
    gk_context_truncate(c, 2);
    gk_context_truncate(w, 2);
    CHECK(gk_decode(c, tok, 3, &err));
    CHECK(gk_decode(w, tok, 3, &err));
    compare("truncate + decode", gk_get_logits(c, 2), gk_get_logits(w, 2), V);
    printf("%s\n", fails ? "FAILED" : "all ok");
    gk_context_free(w);
    gk_model_free(wm);
    gk_context_free(c); /* stops the followers */
    gk_model_free(m);
    gk_dist_free(d);
    return fails ? 1 : 0;
}
