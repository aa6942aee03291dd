/*
 * test_train.c - unit tests of src/train: the backward GEMM (gk_sgemm, every
 * layout) against its scalar reference at awkward sizes and thread counts, the
 * forward product through gk_sgemm against gk_matmul, the learning-rate
 * schedule, AdamW's decay on matrices only, the text checks, and the window
 * order.
 */
#include "gk_test.h"
#include "kernels/gemm.h"
#include "kernels/ops.h"
#include "train/data.h"
#include "train/train.h"

#include <math.h>

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xFFFF) / 32768.0f - 1.0f;
}

static double max_rel(const float *a, const float *b, int64_t n) {
    double mx = 0, ref = 1e-6;
    for (int64_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs((double)a[i] - b[i]));
        ref = fmax(ref, fabs((double)b[i]));
    }
    return mx / ref;
}

/* C (+)= op(A) op(B) in double, from the operands as stored. */
static void sgemm_ref(const gk_sgemm *g, float *C) {
    for (int64_t m = 0; m < g->M; m++)
        for (int64_t n = 0; n < g->N; n++) {
            double s = 0.0;
            for (int64_t k = 0; k < g->K; k++) {
                float a = g->a_trans ? g->A[k * g->lda + m] : g->A[m * g->lda + k];
                float b = g->b_trans ? g->B[n * g->ldb + k] : g->B[k * g->ldb + n];
                s += (double)a * b;
            }
            float *c = C + m * g->ldc + n;
            *c = g->acc ? *c + (float)s : (float)s;
        }
}

/* gk_sgemm in its four layouts, with and without acc, at awkward sizes (K over
 * both chunk sizes, row strides wider than the rows) and thread counts: within
 * float rounding of the reference, and bit-identical whatever the threads. */
static void test_sgemm(void) {
    gk_err err;
    const int64_t sizes[][3] = {{1, 1, 1},     {5, 17, 3},   {13, 70, 300},
                                {64, 48, 513}, {3, 129, 64}, {9, 20, 1100}};
    gk_pool *pools[2] = {gk_pool_new(1, &err), gk_pool_new(3, &err)};
    for (size_t c = 0; c < sizeof sizes / sizeof sizes[0]; c++) {
        int64_t M = sizes[c][0], N = sizes[c][1], K = sizes[c][2], pad = 3;
        uint64_t s = 42 + c;
        int64_t na = (M > K ? M : K) * (M + K + pad), nb = (N > K ? N : K) * (N + K + pad);
        float *A = malloc(na * 4), *B = malloc(nb * 4), *C0 = malloc(M * (N + pad) * 4),
              *C[2] = {malloc(M * (N + pad) * 4), malloc(M * (N + pad) * 4)},
              *R = malloc(M * (N + pad) * 4);
        for (int64_t i = 0; i < na; i++) A[i] = frand(&s);
        for (int64_t i = 0; i < nb; i++) B[i] = frand(&s);
        for (int64_t i = 0; i < M * (N + pad); i++) C0[i] = frand(&s);
        for (int lay = 0; lay < 8; lay++) {
            bool at = lay & 1, bt = lay & 2, acc = lay & 4;
            gk_sgemm g = {.ldc = N + pad,
                          .A = A,
                          .lda = (at ? M : K) + pad,
                          .a_trans = at,
                          .B = B,
                          .ldb = (bt ? K : N) + pad,
                          .b_trans = bt,
                          .M = M,
                          .N = N,
                          .K = K,
                          .acc = acc};
            float *scr = malloc((gk_sgemm_scratch(&g) + 1) * 4);
            for (int p = 0; p < 2; p++) {
                memcpy(C[p], C0, M * (N + pad) * 4);
                g.C = C[p];
                gk_sgemm_run(pools[p], &g, scr);
            }
            memcpy(R, C0, M * (N + pad) * 4);
            sgemm_ref(&g, R);
            CHECK_MSG(max_rel(C[0], R, M * (N + pad)) < 1e-5,
                      "sgemm %lldx%lldx%lld a_trans %d b_trans %d acc %d: %g", (long long)M,
                      (long long)N, (long long)K, at, bt, acc, max_rel(C[0], R, M * (N + pad)));
            CHECK_MSG(!memcmp(C[0], C[1], M * (N + pad) * 4),
                      "sgemm %lldx%lldx%lld a_trans %d b_trans %d acc %d depends on threads",
                      (long long)M, (long long)N, (long long)K, at, bt, acc);
            free(scr);
        }
        free(A), free(B), free(C0), free(C[0]), free(C[1]), free(R);
    }
    gk_pool_free(pools[0]), gk_pool_free(pools[1]);
}

/* A tiny model's forward loss does not depend on the thread count, and the
 * training forward's logits (via the loss of a one-hot target) match gk_matmul. */
static void test_forward_vs_matmul(void) {
    gk_err err;
    gk_dtype_init();
    gk_pool *p1 = gk_pool_new(1, &err), *p3 = gk_pool_new(3, &err);
    const int64_t T = 37, I = 72, O = 50;
    uint64_t s = 7;
    float *w = malloc(O * I * 4), *wt = malloc(O * I * 4), *x = malloc(T * I * 4),
          *y1 = malloc(T * O * 4), *y2 = malloc(T * O * 4);
    for (int64_t i = 0; i < O * I; i++) w[i] = frand(&s);
    for (int64_t i = 0; i < T * I; i++) x[i] = frand(&s);
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++) wt[i * O + o] = w[o * I + i];
    gk_matmul(p1, y1, w, GK_TYPE_F32, I * 4, O, x, I, (int)T, NULL);
    /* the weights as stored (the dot-product tiles): exactly gk_matmul */
    gk_sgemm g = {.C = y2,
                  .ldc = O,
                  .A = x,
                  .lda = I,
                  .B = w,
                  .ldb = I,
                  .b_trans = true,
                  .M = T,
                  .N = O,
                  .K = I};
    gk_sgemm_run(p3, &g, NULL);
    CHECK_MSG(!memcmp(y1, y2, T * O * 4), "gk_sgemm on W^T differs from gk_matmul");
    /* the weights transposed (the outer-product tiles) */
    g.B = wt, g.ldb = O, g.b_trans = false;
    gk_sgemm_run(p3, &g, NULL);
    CHECK_MSG(max_rel(y2, y1, T * O) < 1e-5, "forward GEMM vs gk_matmul: %g",
              max_rel(y2, y1, T * O));
    free(w), free(wt), free(x), free(y1), free(y2);

    gk_hparams hp = {.variant = GK_VARIANT_GROK2,
                     .n_vocab = 64,
                     .n_ctx_train = 64,
                     .n_embd = 32,
                     .n_layer = 2,
                     .n_head = 4,
                     .n_head_kv = 2,
                     .head_dim = 8,
                     .n_rot = 8,
                     .n_ff = 48,
                     .n_ff_exp = 32,
                     .n_expert = 4,
                     .n_expert_used = 2,
                     .norm_eps = 1e-5f,
                     .rope_freq_base = 10000,
                     .embedding_scale = 5.6f,
                     .attn_out_scale = 0.35f,
                     .logit_scale = 0.5f,
                     .attn_softcap = 30,
                     .router_softcap = 30,
                     .final_softcap = 50,
                     .attn_temp_len = 8};
    gk_tmodel *tm = gk_tmodel_new(&hp, GK_NUMERICS_REFERENCE, &err);
    CHECK(tm != NULL);
    gk_tmodel_init(tm, 3, 0.2f);
    int32_t in[2 * 16], tg[2 * 16];
    for (int i = 0; i < 32; i++) in[i] = (i * 7) % 64, tg[i] = (i * 11 + 3) % 64;
    gk_tstate *a = gk_tstate_new(tm, 2, 16, p1, &err), *b = gk_tstate_new(tm, 2, 16, p3, &err);
    gk_tloss la, lb;
    CHECK(gk_tforward(a, in, tg, &la, &err) == 0 && gk_tforward(b, in, tg, &lb, &err) == 0);
    CHECK_MSG(la.ce_sum == lb.ce_sum, "loss depends on threads: %.17g vs %.17g", la.ce_sum,
              lb.ce_sum);
    CHECK(la.ce_sum / 32 > 3.0 && la.ce_sum / 32 < 6.0); /* near ln 64 = 4.16 */
    in[5] = 64;
    CHECK(gk_tforward(a, in, tg, &la, &err) < 0);
    CHECK_ERR_HAS(err.msg, "outside the vocabulary");
    /* AdamW: norms do not decay, matrices do (zero gradient, lr 1) */
    memset(tm->g, 0, tm->n_params * 4);
    float *m = calloc(tm->n_params, 4), *v = calloc(tm->n_params, 4);
    float w0 = tm->W.layers[0].wq[0], n0 = tm->W.layers[0].attn_norm[0];
    gk_adamw_cfg ac = {.lr_max = 1,
                       .lr_min = 1,
                       .total_steps = 10,
                       .beta1 = 0.9f,
                       .beta2 = 0.95f,
                       .eps = 1e-8f,
                       .weight_decay = 0.5f};
    gk_adamw_step(tm, m, v, 1, &ac, p1);
    CHECK(tm->W.layers[0].wq[0] == w0 * 0.5f && tm->W.layers[0].attn_norm[0] == n0);
    free(m), free(v);
    gk_tstate_free(a), gk_tstate_free(b);
    gk_tmodel_free(tm);
    gk_pool_free(p1), gk_pool_free(p3);
}

static void test_schedule(void) {
    gk_adamw_cfg c = {.lr_max = 1e-3f, .lr_min = 1e-4f, .warmup = 10, .total_steps = 110};
    CHECK(fabsf(gk_lr_at(&c, 0) - 1e-4f) < 1e-9f);
    CHECK(fabsf(gk_lr_at(&c, 9) - 1e-3f) < 1e-9f);
    CHECK(fabsf(gk_lr_at(&c, 60) - 5.5e-4f) < 1e-7f); /* half way down the cosine */
    CHECK(fabsf(gk_lr_at(&c, 110) - 1e-4f) < 1e-9f);
    CHECK(fabsf(gk_lr_at(&c, 500) - 1e-4f) < 1e-9f);
}

static void test_text(void) {
    gk_err err;
    CHECK(gk_text_check((const uint8_t *)"hello \xe2\x96\x81 world\n", 16, "t", &err) == 0);
    CHECK(gk_text_check((const uint8_t *)"", 0, "t", &err) < 0);
    CHECK_ERR_HAS(err.msg, "empty");
    CHECK(gk_text_check((const uint8_t *)"ab\0c", 4, "t", &err) < 0);
    CHECK_ERR_HAS(err.msg, "NUL byte at offset 2");
    const char *bad[] = {"caf\xe9", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ab\xe2\x96"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(gk_text_check((const uint8_t *)bad[i], strlen(bad[i]), "t", &err) < 0);
        CHECK_ERR_HAS(err.msg, "invalid UTF-8");
    }
    /* windows: deterministic, inside the split */
    int32_t tok[5000];
    for (int i = 0; i < 5000; i++) tok[i] = i;
    gk_corpus c = {.train = tok, .n_train = 5000};
    int32_t in[3 * 10], tg[3 * 10];
    gk_corpus_batch(&c, 9, 4, 6, 3, 10, in, tg);
    for (int b = 0; b < 3; b++) {
        uint64_t off = gk_corpus_window(&c, 9, 4, 6 + b, 10);
        CHECK(off + 11 <= 5000 && in[b * 10] == (int32_t)off &&
              tg[b * 10 + 9] == (int32_t)off + 10);
    }
    CHECK(gk_corpus_window(&c, 9, 4, 6, 10) != gk_corpus_window(&c, 9, 5, 6, 10));
}

int main(void) {
    test_sgemm();
    test_forward_vs_matmul();
    test_schedule();
    test_text();
    return gk_test_done();
}
