/*
 * test_gemm.c - the batched matmul (kernels/gemm.h, gk_matmul, gk_matmul2) for
 * every weight type with GEMM tiles, on every instruction set this CPU has:
 *  - batch invariance: each token's outputs, computed in batches of 1..67 tokens
 *    at shuffled positions and with 1, 2 and 3 threads, are bit-identical
 *    (memcmp) to those of the one 67-token batch;
 *  - accuracy: every output against the scalar reference dot of dtype.c (the
 *    activations quantized by the reference Q8_0 quantizer for q8_0/q4_0) within
 *    (n/8 + n/32 + 8) * 2^-23 * sum_i |w_i x_i|: the float rounding of two
 *    summations of at most that many additions, with exact int8 block sums
 *    (the 16-lane f32 tiles of AVX-512 add n/16 + 5 terms per element; f16 and
 *    bf16 with AVX-512, the rows as lanes, one chain of n: within (n/2 + 8) *
 *    2^-23 * sum_i |w_i x_i|);
 *  - the int8 kernels' activation rows hold ggml's Q8_0 quantization exactly
 *    (dtype.c's reference quantizer), ties included;
 *  - gk_matmul2 gives what two gk_matmul calls give, gk_matmul2_geglu what
 *    gk_matmul2 and gk_geglu give (every GELU form, packed weights too), and
 *    gk_matmul_many what its products one by one give (outputs of different row
 *    counts, with and without GeGLU pairs); it refuses what it cannot run;
 *  - gk_matmul_chunks_many gives each product what gk_matmul_chunks gives it;
 *  - packed weights (gk_gemm_pack: Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, F32, F16, BF16)
 *    give the bits of their rows;
 *  - attention's weighted sum of value rows (gk_attn_wsum), scores (gk_attn_dots)
 *    and softmax (gk_attn_softmax) equal their scalar references bit for bit on
 *    every instruction set, f32 and f16 rows, head sizes with and without a tail,
 *    any count of keys; scores and weights within stated bounds of the exact ones.
 */
#include "gk_test.h"
#include "kernels/gemm.h"
#include "kernels/ops.h"
#include "tensor/dtype.h"
#include "base/base.h"

#include <math.h>
#include <stdint.h>

#define T_MAX 67
#define N_OUT 37 /* not a multiple of the 4-row tiles nor of the 16-row blocks */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}
static int irand(int n) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (int)((rng >> 33) % (uint64_t)n);
}

typedef struct {
    gk_dtype type;
    int64_t n;
    size_t nb_row;
    uint8_t *w;
    float *wf; /* W dequantized */
    float *x;  /* [T_MAX][n] */
    void *qbuf;
} setup;

static void make(setup *s, gk_dtype type, int64_t n) {
    const gk_type_traits *tt = gk_type_traits_of(type);
    s->type = type;
    s->n = n;
    s->nb_row = gk_row_size(type, n);
    s->w = malloc(s->nb_row * N_OUT);
    s->wf = malloc(sizeof(float) * n * N_OUT);
    s->x = malloc(sizeof(float) * n * T_MAX);
    s->qbuf = malloc(gk_matmul_qbuf_size(n, T_MAX));
    float *tmp = malloc(sizeof(float) * n);
    for (int r = 0; r < N_OUT; r++) {
        /* rows of different magnitudes, a few large values */
        float scale = 0.01f + (float)r / N_OUT;
        for (int64_t i = 0; i < n; i++) tmp[i] = frand() * scale * (irand(50) == 0 ? 20.0f : 1.0f);
        tt->from_float(tmp, s->w + r * s->nb_row, n);
        tt->to_float(s->w + r * s->nb_row, s->wf + r * n, n);
    }
    for (int64_t i = 0; i < n * T_MAX; i++) s->x[i] = frand() * 3.0f;
    free(tmp);
}

static void unmake(setup *s) {
    free(s->w);
    free(s->wf);
    free(s->x);
    free(s->qbuf);
}

/* The reference dot of dtype.c for row r and token t, and the bound. */
static void reference(const setup *s, int r, int t, float *ref, double *bound) {
    const gk_type_traits *tt = gk_type_traits_of(s->type);
    const float *x = s->x + (size_t)t * s->n;
    float *xd = malloc(sizeof(float) * s->n);
    const uint8_t *w = s->w + r * s->nb_row;
    bool kq = s->type == GK_TYPE_Q4_K || s->type == GK_TYPE_Q5_K || s->type == GK_TYPE_Q6_K;
    if (kq) {
        /* the exact dot of the dequantized weights with the activations
         * dequantized from their Q8_K blocks */
        const gk_type_traits *kt = gk_type_traits_of(GK_TYPE_Q8_K);
        void *xq = malloc(gk_row_size(GK_TYPE_Q8_K, s->n));
        kt->from_float(x, xq, s->n);
        kt->to_float(xq, xd, s->n);
        double acc = 0.0;
        for (int64_t i = 0; i < s->n; i++) acc += (double)s->wf[r * s->n + i] * xd[i];
        *ref = (float)acc;
        free(xq);
    } else if (tt->vec_dot_type == GK_TYPE_Q8_0) {
        gk_block_q8_0 *xq = malloc(gk_row_size(GK_TYPE_Q8_0, s->n));
        gk_quantize_q8_0_ref(x, xq, s->n);
        gk_type_traits_of(GK_TYPE_Q8_0)->to_float(xq, xd, s->n);
        *ref = s->type == GK_TYPE_Q8_0 ? gk_vec_dot_q8_0_q8_0_ref(s->n, w, xq)
                                       : gk_vec_dot_q4_0_q8_0_ref(s->n, w, xq);
        free(xq);
    } else {
        memcpy(xd, x, sizeof(float) * s->n);
        *ref = s->type == GK_TYPE_F32   ? gk_vec_dot_f32_ref(s->n, w, x)
               : s->type == GK_TYPE_F16 ? gk_vec_dot_f16_ref(s->n, w, x)
                                        : gk_vec_dot_bf16_ref(s->n, w, x);
    }
    /* Q4_K's and Q5_K's two products per block (scale * q and min) may each exceed the
     * weight: at most about 3 * max |w| of the row */
    double sa = 0.0, amp = 0.0;
    for (int64_t i = 0; kq && s->type != GK_TYPE_Q6_K && i < s->n; i++)
        amp = fmax(amp, 3.0 * fabs((double)s->wf[r * s->n + i]));
    for (int64_t i = 0; i < s->n; i++)
        sa += (fabs((double)s->wf[r * s->n + i]) + amp) * fabs((double)xd[i]);
    /* f16 and bf16 with AVX-512 sum one chain of n terms (the rows as lanes) */
    const bool lanes = s->type == GK_TYPE_F16 || s->type == GK_TYPE_BF16;
    *bound =
        (double)(lanes ? s->n / 2 + 8 : s->n / 8 + s->n / 32 + 8) * ldexp(1.0, -23) * sa + 1e-30;
    free(xd);
}

/* One kernel set (k) or, with k == NULL, the public gk_matmul. */
static void run(gk_pool *pool, const gk_gemm_kernels *k, const setup *s, float *y, const float *x,
                int T) {
    if (k)
        gk_gemm_with(pool, k, y, s->w, s->nb_row, N_OUT, x, s->n, T, s->qbuf);
    else
        gk_matmul(pool, y, s->w, s->type, s->nb_row, N_OUT, x, s->n, T, s->qbuf);
}

static void check_kernels(const char *isa, const gk_gemm_kernels *k, gk_dtype type, int64_t n,
                          gk_pool **pools) {
    setup s;
    make(&s, type, n);
    float *full = malloc(sizeof(float) * N_OUT * T_MAX), *y = malloc(sizeof(float) * N_OUT * T_MAX);
    float *xb = malloc(sizeof(float) * n * T_MAX);
    run(pools[0], k, &s, full, s.x, T_MAX);

    /* accuracy of the full batch */
    int bad = 0;
    for (int t = 0; t < T_MAX; t++)
        for (int r = 0; r < N_OUT; r++) {
            float ref;
            double bound;
            reference(&s, r, t, &ref, &bound);
            double err = fabs((double)full[t * N_OUT + r] - ref);
            if (!(err <= bound) && bad++ < 3)
                CHECK_MSG(0, "%s %s n=%lld row %d token %d: %.9g vs ref %.9g (err %.3g > %.3g)",
                          isa, gk_type_name(type), (long long)n, r, t, full[t * N_OUT + r], ref,
                          err, bound);
        }

    /* invariance: batches of T tokens drawn at random, in random order */
    int perm[T_MAX], mism = 0;
    for (int T = 1; T <= T_MAX; T++) {
        for (int i = 0; i < T_MAX; i++) perm[i] = i;
        for (int i = T_MAX - 1; i > 0; i--) {
            int j = irand(i + 1), tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        for (int i = 0; i < T; i++) memcpy(xb + i * n, s.x + perm[i] * n, sizeof(float) * n);
        gk_pool *pool = pools[T % 3];
        run(pool, k, &s, y, xb, T);
        for (int i = 0; i < T; i++)
            if (memcmp(y + i * N_OUT, full + perm[i] * N_OUT, sizeof(float) * N_OUT) && mism++ < 3)
                CHECK_MSG(0, "%s %s n=%lld: token %d at place %d of a %d-token batch differs", isa,
                          gk_type_name(type), (long long)n, perm[i], i, T);
    }
    free(full);
    free(y);
    free(xb);
    unmake(&s);
}

static void check_matmul2(gk_pool *pool, gk_dtype type, int64_t n) {
    setup a, b;
    make(&a, type, n);
    make(&b, type, n);
    float *y1 = malloc(sizeof(float) * N_OUT * T_MAX), *y2 = malloc(sizeof(float) * N_OUT * T_MAX);
    float *z1 = malloc(sizeof(float) * N_OUT * T_MAX), *z2 = malloc(sizeof(float) * N_OUT * T_MAX);
    for (int T = 1; T <= T_MAX; T += 33) {
        gk_matmul(pool, y1, a.w, type, a.nb_row, N_OUT, a.x, n, T, a.qbuf);
        gk_matmul(pool, y2, b.w, type, b.nb_row, N_OUT, a.x, n, T, a.qbuf);
        gk_matmul2(pool, z1, a.w, type, a.nb_row, z2, b.w, type, b.nb_row, N_OUT, a.x, n, T,
                   a.qbuf);
        CHECK_MSG(!memcmp(y1, z1, sizeof(float) * N_OUT * T) &&
                      !memcmp(y2, z2, sizeof(float) * N_OUT * T),
                  "gk_matmul2 %s T=%d", gk_type_name(type), T);
        for (int g = 0; g < 3; g++) {
            const gk_gelu kind = g == 0 ? GK_GELU_TANH : g == 1 ? GK_GELU_ERF : GK_GELU_TANH_F16;
            gk_matmul2_geglu(pool, z1, a.w, type, a.nb_row, z2, b.w, type, b.nb_row, N_OUT, a.x, n,
                             T, a.qbuf, kind);
            gk_geglu(pool, y1, y2, (int64_t)N_OUT * T, kind);
            CHECK_MSG(!memcmp(y1, z1, sizeof(float) * N_OUT * T) &&
                          !memcmp(y2, z2, sizeof(float) * N_OUT * T),
                      "gk_matmul2_geglu %s T=%d gelu %d", gk_type_name(type), T, g);
            gk_matmul(pool, y1, a.w, type, a.nb_row, N_OUT, a.x, n, T, a.qbuf);
        }
    }
    /* several outputs of one input, different row counts (prefixes of a's and b's
     * rows): what gk_matmul (and gk_geglu over the pairs) give one by one */
    {
        const int64_t rows3[3] = {N_OUT, 16, 5}, rows6[6] = {16, 16, 5, 5, 33, 33};
        float *ys[6], *zs[6];
        for (int i = 0; i < 6; i++) {
            ys[i] = malloc(sizeof(float) * N_OUT * T_MAX);
            zs[i] = malloc(sizeof(float) * N_OUT * T_MAX);
        }
        for (int T = 1; T <= T_MAX; T += 33)
            for (int g = -1; g <= (int)GK_GELU_ERF; g++) {
                const int no = g < 0 ? 3 : 6;
                gk_matmul_out o[6];
                for (int i = 0; i < no; i++) {
                    const int64_t r = g < 0 ? rows3[i] : rows6[i];
                    const uint8_t *w = i % 2 ? b.w : a.w;
                    o[i] = (gk_matmul_out){zs[i], w, a.nb_row, r};
                    gk_matmul(pool, ys[i], w, type, a.nb_row, r, a.x, n, T, a.qbuf);
                }
                for (int i = 0; g >= 0 && i < no; i += 2)
                    gk_geglu(pool, ys[i], ys[i + 1], rows6[i] * T, (gk_gelu)g);
                bool ran = gk_matmul_many(pool, o, no, type, a.x, n, T, a.qbuf, g);
                CHECK_MSG(ran == (gk_gemm_kernels_of(type) != NULL), "gk_matmul_many %s ran %d",
                          gk_type_name(type), ran);
                for (int i = 0; ran && i < no; i++)
                    CHECK_MSG(!memcmp(ys[i], zs[i], sizeof(float) * (size_t)o[i].n_out * T),
                              "gk_matmul_many %s T=%d gelu %d output %d", gk_type_name(type), T, g,
                              i);
            }
        /* refused: an odd count with GeGLU, a pair of unequal rows, too many outputs */
        gk_matmul_out o[GK_MATMUL_MAX + 1];
        for (int i = 0; i <= GK_MATMUL_MAX; i++) o[i] = (gk_matmul_out){zs[0], a.w, a.nb_row, 4};
        CHECK(!gk_matmul_many(pool, o, 3, type, a.x, n, 1, a.qbuf, GK_GELU_TANH));
        CHECK(!gk_matmul_many(pool, o, GK_MATMUL_MAX + 1, type, a.x, n, 1, a.qbuf, -1));
        o[1].n_out = 5;
        CHECK(!gk_matmul_many(pool, o, 2, type, a.x, n, 1, a.qbuf, GK_GELU_TANH));
        for (int i = 0; i < 6; i++) free(ys[i]), free(zs[i]);
    }
    /* different types: falls back to two products */
    if (type != GK_TYPE_F32) {
        setup c;
        make(&c, GK_TYPE_F32, n);
        gk_matmul(pool, y2, c.w, GK_TYPE_F32, c.nb_row, N_OUT, a.x, n, 5, a.qbuf);
        gk_matmul2(pool, z1, a.w, type, a.nb_row, z2, c.w, GK_TYPE_F32, c.nb_row, N_OUT, a.x, n, 5,
                   a.qbuf);
        gk_matmul(pool, y1, a.w, type, a.nb_row, N_OUT, a.x, n, 5, a.qbuf);
        CHECK(!memcmp(y1, z1, sizeof(float) * N_OUT * 5) &&
              !memcmp(y2, z2, sizeof(float) * N_OUT * 5));
        unmake(&c);
    }
    free(y1);
    free(y2);
    free(z1);
    free(z2);
    unmake(&a);
    unmake(&b);
}

#if defined(__x86_64__)
void gk_attn_dots_avx2(float *s, size_t ss, const void *K, size_t row, gk_dtype type,
                       const float *q, int nq, int64_t nk, int hd);
void gk_attn_dots_avx512(float *s, size_t ss, const void *K, size_t row, gk_dtype type,
                         const float *q, int nq, int64_t nk, int hd);
void gk_attn_wsum_avx2(float *out, const void *V, size_t row, gk_dtype type, const float *w,
                       size_t ws, int nq, int64_t nk, int hd);
void gk_attn_wsum_avx512(float *out, const void *V, size_t row, gk_dtype type, const float *w,
                         size_t ws, int nq, int64_t nk, int hd);
void gk_attn_softmax_avx2(float *s, int64_t n, float scale, float cap, float temp, bool f16w);
void gk_attn_softmax_avx512(float *s, int64_t n, float scale, float cap, float temp, bool f16w);
#endif

typedef void (*dots_fn)(float *, size_t, const void *, size_t, gk_dtype, const float *, int,
                        int64_t, int);
typedef void (*wsum_fn)(float *, const void *, size_t, gk_dtype, const float *, size_t, int,
                        int64_t, int);

/* Attention's scores (gk_attn_dots) and weighted sums (gk_attn_wsum) of 1..5
 * query heads: every version equals the scalar reference bit for bit, for any
 * count of keys, heads and head size; a key's score does not depend on the other
 * keys or heads of the call; the scores are within the float rounding of their
 * 16-lane sums of the exact dot. */
static void check_attn_rows(void) {
    const int hds[6] = {128, 72, 5, 16, 200, 64};
    const int64_t nk = 301;
    const size_t ss = nk + 7; /* score rows apart */
    const char *names[3] = {"dispatched", "avx2", "avx512"};
    dots_fn dots[3] = {gk_attn_dots, NULL, NULL};
    wsum_fn wsum[3] = {gk_attn_wsum, NULL, NULL};
#if defined(__x86_64__)
    if (strcmp(gk_gemm_isa(), "none") != 0)
        dots[1] = gk_attn_dots_avx2, wsum[1] = gk_attn_wsum_avx2;
    if (strcmp(gk_gemm_isa(), "avx512-vnni") == 0)
        dots[2] = gk_attn_dots_avx512, wsum[2] = gk_attn_wsum_avx512;
#endif
    for (int ti = 0; ti < 2; ti++) {
        gk_dtype type = ti ? GK_TYPE_F16 : GK_TYPE_F32;
        for (int hi = 0; hi < 6; hi++) {
            const int hd = hds[hi];
            size_t row = (size_t)(hd + 3) * 4; /* rows wider than the head, as in the cache */
            uint8_t *K = malloc(row * (size_t)nk);
            float *q = malloc(sizeof(float) * 5 * hd), *ref = malloc(sizeof(float) * 5 * ss),
                  *got = malloc(sizeof(float) * 5 * ss), *w = malloc(sizeof(float) * 5 * ss);
            float *oref = malloc(sizeof(float) * 5 * hd), *ogot = malloc(sizeof(float) * 5 * hd);
            for (int i = 0; i < 5 * hd; i++) {
                q[i] = frand() * 2.0f;
                if (type == GK_TYPE_F16) q[i] = gk_fp16_to_fp32(gk_fp32_to_fp16(q[i]));
            }
            for (int64_t k = 0; k < nk; k++)
                for (int i = 0; i < hd + 3; i++) {
                    float v = frand() * 4.0f;
                    if (type == GK_TYPE_F16)
                        ((uint16_t *)(K + k * row))[i] = gk_fp32_to_fp16(v);
                    else
                        ((float *)(K + k * row))[i] = v;
                }
            for (size_t i = 0; i < 5 * ss; i++) w[i] = fabsf(frand()) / (float)nk;
            gk_attn_dots_ref(ref, ss, K, row, type, q, 5, nk, hd);
            for (int64_t k = 0; k < nk; k++) { /* against the exact dot */
                double e = 0.0, sa = 0.0;
                for (int i = 0; i < hd; i++) {
                    float kv = type == GK_TYPE_F16 ? gk_fp16_to_fp32(((uint16_t *)(K + k * row))[i])
                                                   : ((float *)(K + k * row))[i];
                    e += (double)kv * q[i];
                    sa += fabs((double)kv * q[i]);
                }
                double bound = (hd / 16 + 6) * ldexp(1.0, -24) * sa;
                CHECK_MSG(fabs(ref[k] - e) <= bound, "attn dots ref hd=%d key %lld: %g vs %g", hd,
                          (long long)k, ref[k], e);
            }
            for (int v = 0; v < 3; v++) {
                if (!dots[v]) continue;
                for (int nq = 1; nq <= 5; nq++)
                    for (int64_t n = 1; n <= nk - 3; n += 37) {
                        /* the keys from 3 on: each key's score as in the full call */
                        dots[v](got, ss, K + 3 * row, row, type, q, nq, n, hd);
                        for (int qi = 0; qi < nq; qi++)
                            CHECK_MSG(!memcmp(got + qi * ss, ref + qi * ss + 3, sizeof(float) * n),
                                      "%s dots %s hd=%d heads=%d keys=%lld head %d", names[v],
                                      gk_type_name(type), hd, nq, (long long)n, qi);
                        gk_attn_wsum_ref(oref, K, row, type, w, ss, nq, n, hd);
                        wsum[v](ogot, K, row, type, w, ss, nq, n, hd);
                        CHECK_MSG(!memcmp(ogot, oref, sizeof(float) * nq * hd),
                                  "%s wsum %s hd=%d heads=%d keys=%lld", names[v],
                                  gk_type_name(type), hd, nq, (long long)n);
                    }
            }
            free(K);
            free(q);
            free(ref);
            free(got);
            free(w);
            free(oref);
            free(ogot);
        }
    }
}

/* Attention's softmax: every version equals the scalar reference bit for bit,
 * and the weights are within a stated bound of the softmax in double. */
static void check_attn_softmax(void) {
    const bool avx2 = strcmp(gk_gemm_isa(), "none") != 0,
               avx512 = strcmp(gk_gemm_isa(), "avx512-vnni") == 0;
    (void)avx2, (void)avx512;
    /* scores of a realistic spread, with and without the cap, f16 rounding */
    const int64_t ns[9] = {1, 7, 8, 9, 16, 17, 31, 300, 4097};
    float *x = malloc(sizeof(float) * 4097), *a = malloc(sizeof(float) * 4097),
          *b = malloc(sizeof(float) * 4097);
    for (int64_t k = 0; k < 4097; k++) x[k] = frand() * 60.0f * (irand(20) == 0 ? 10.0f : 1.0f);
    for (int ni = 0; ni < 9; ni++)
        for (int v = 0; v < 4; v++) {
            const float cap = v & 1 ? 30.0f : 0.0f, temp = v & 2 ? 1.17f : 1.0f;
            const bool f16w = v >= 2;
            int64_t n = ns[ni];
            memcpy(a, x, sizeof(float) * n);
            memcpy(b, x, sizeof(float) * n);
            gk_attn_softmax(a, n, 0.0883883f, cap, temp, f16w);
            gk_attn_softmax_ref(b, n, 0.0883883f, cap, temp, f16w);
            CHECK_MSG(!memcmp(a, b, sizeof(float) * n), "gk_attn_softmax n=%lld cap %g f16 %d",
                      (long long)n, cap, f16w);
#if defined(__x86_64__)
            if (avx2) {
                memcpy(a, x, sizeof(float) * n);
                gk_attn_softmax_avx2(a, n, 0.0883883f, cap, temp, f16w);
                CHECK_MSG(!memcmp(a, b, sizeof(float) * n), "avx2 softmax n=%lld", (long long)n);
            }
            if (avx512) {
                memcpy(a, x, sizeof(float) * n);
                gk_attn_softmax_avx512(a, n, 0.0883883f, cap, temp, f16w);
                CHECK_MSG(!memcmp(a, b, sizeof(float) * n), "avx512 softmax n=%lld", (long long)n);
            }
#endif
            /* against the softmax in double of the capped scores */
            double mx = -INFINITY, sum = 0.0, worst = 0.0;
            for (int64_t k = 0; k < n; k++) {
                double s = x[k] * (double)0.0883883f;
                if (cap > 0) s = cap * tanh(s / cap);
                s *= temp;
                mx = s > mx ? s : mx;
            }
            for (int64_t k = 0; k < n; k++) {
                double s = x[k] * (double)0.0883883f;
                if (cap > 0) s = cap * tanh(s / cap);
                sum += exp(s * temp - mx);
            }
            for (int64_t k = 0; k < n; k++) {
                double s = x[k] * (double)0.0883883f;
                if (cap > 0) s = cap * tanh(s / cap);
                double p = exp(s * temp - mx) / sum;
                worst = fmax(worst, fabs(b[k] - p) / (f16w ? 1e-3 : 1e-5));
            }
            /* the capped scores' rounding (up to 30 * 2^-23 each) moves each weight by
             * about that much relative; f16 rounding adds 2^-11 */
            CHECK_MSG(worst <= 1.0, "softmax n=%lld cap %g: error %g of the bound", (long long)n,
                      cap, worst);
        }
    free(x);
    free(a);
    free(b);
}

/* gk_matmul_chunks: each chunk's outputs equal, bit for bit, gk_matmul's on the
 * chunk alone (its columns, the row stride kept) with one token and in a batch
 * (token 2 of 5), with 1, 2 and 3 threads; types without the decode kernels,
 * and a qbuf too small, are refused with nothing written. */
static void check_chunks(gk_pool **pools, gk_dtype type, int64_t cw, int k) {
    setup s;
    const int64_t n = cw * k;
    make(&s, type, n);
    const size_t qsize = (size_t)k * gk_matmul_qbuf_size(cw, 1) + 64 * (size_t)k;
    uint8_t *qb = gk_malloc_aligned(qsize, NULL);
    void *qref = malloc(gk_matmul_qbuf_size(cw, 5));
    float *y[4], ref[N_OUT], batch[5 * N_OUT], xc[5 * 4096];
    for (int ch = 0; ch < k; ch++) y[ch] = malloc(sizeof(float) * N_OUT);
    const float *x = s.x + 2 * n; /* token 2 */
    const bool ok = gk_gemm_kernels_of(type) && gk_gemm_kernels_of(type)->one;
    for (int p = 0; p < 3; p++) {
        for (int ch = 0; ch < k; ch++)
            for (int r = 0; r < N_OUT; r++) y[ch][r] = -1234.5f;
        bool ran = gk_matmul_chunks(pools[p], y, s.w, type, s.nb_row, N_OUT, x, n, k, qb, qsize);
        CHECK_MSG(ran == ok, "%s: chunks ran %d, expected %d", gk_type_name(type), ran, ok);
        if (!ran) {
            CHECK(y[0][0] == -1234.5f);
            break;
        }
        for (int ch = 0; ch < k; ch++) {
            const uint8_t *wc = s.w + gk_row_size(type, ch * cw);
            gk_matmul(pools[p], ref, wc, type, s.nb_row, N_OUT, x + ch * cw, cw, 1, qref);
            for (int t = 0; t < 5; t++)
                memcpy(xc + t * cw, s.x + t * n + ch * cw, sizeof(float) * (size_t)cw);
            gk_matmul(pools[p], batch, wc, type, s.nb_row, N_OUT, xc, cw, 5, qref);
            CHECK_MSG(!memcmp(y[ch], ref, sizeof ref), "%s cw %lld k %d chunk %d: not gk_matmul's",
                      gk_type_name(type), (long long)cw, k, ch);
            CHECK_MSG(!memcmp(y[ch], batch + 2 * N_OUT, sizeof ref),
                      "%s cw %lld k %d chunk %d: not the batch's", gk_type_name(type),
                      (long long)cw, k, ch);
        }
    }
    if (ok) {
        y[0][0] = -1234.5f;
        CHECK(!gk_matmul_chunks(pools[1], y, s.w, type, s.nb_row, N_OUT, x, n, k, qb, 64) ||
              !gk_gemm_kernels_of(type)->pack);
    }
    for (int ch = 0; ch < k; ch++) free(y[ch]);
    free(qref);
    gk_free_aligned(qb);
    unmake(&s);
}

/* gk_matmul_chunks_many: three products of widths k cw, 2 k cw and k cw (each its
 * own matrix rows and input token) in one call give each what gk_matmul_chunks gives
 * it alone, with 1, 2 and 3 threads; too small a qbuf is refused. */
static void check_chunks_many(gk_pool **pools, gk_dtype type, int64_t cw, int k) {
    setup a, b;
    make(&a, type, cw * k);
    make(&b, type, 2 * cw * k);
    const size_t qsize = 4 * (size_t)k * (gk_matmul_qbuf_size(2 * cw, 1) + 64);
    uint8_t *qb = gk_malloc_aligned(qsize, NULL);
    float *y[3][4], *z[3][4];
    for (int i = 0; i < 3; i++)
        for (int ch = 0; ch < k; ch++) {
            y[i][ch] = malloc(sizeof(float) * N_OUT);
            z[i][ch] = malloc(sizeof(float) * N_OUT);
        }
    const setup *ss[3] = {&a, &b, &a};
    const bool ok = gk_gemm_kernels_of(type) && gk_gemm_kernels_of(type)->one;
    for (int p = 0; p < 3 && ok; p++) {
        gk_chunks_out o[3];
        for (int i = 0; i < 3; i++) {
            const setup *s = ss[i];
            const float *x = s->x + (i + 1) * s->n; /* tokens 1, 2, 3 */
            o[i] = (gk_chunks_out){z[i], s->w, s->nb_row, N_OUT - 8 * i, x, s->n};
            CHECK(gk_matmul_chunks(pools[p], y[i], s->w, type, s->nb_row, N_OUT - 8 * i, x, s->n, k,
                                   qb, qsize));
        }
        CHECK(gk_matmul_chunks_many(pools[p], o, 3, type, k, qb, qsize));
        for (int i = 0; i < 3; i++)
            for (int ch = 0; ch < k; ch++)
                CHECK_MSG(!memcmp(y[i][ch], z[i][ch], sizeof(float) * (size_t)(N_OUT - 8 * i)),
                          "%s chunks_many product %d chunk %d, %d threads", gk_type_name(type), i,
                          ch, p + 1);
        CHECK(!gk_matmul_chunks_many(pools[p], o, 3, type, k, qb, 64) ||
              !gk_gemm_kernels_of(type)->pack);
    }
    for (int i = 0; i < 3; i++)
        for (int ch = 0; ch < k; ch++) free(y[i][ch]), free(z[i][ch]);
    gk_free_aligned(qb);
    unmake(&a);
    unmake(&b);
}

/* Packed weights (gk_gemm_pack): the layout's bytes as gemm.h states it, and
 * gk_matmul, gk_matmul2 and gk_matmul_chunks on the packed matrix equal, bit for
 * bit, the same calls on the rows it was packed from, at T = 1 .. 67 with 1, 2
 * and 3 threads. Where this CPU has no packed layout: packable is false. */
static void check_packed(gk_pool **pools, gk_dtype q8, int64_t n) {
    /* a strip's rows (16; f16's and bf16's 64, the rows as lanes), 3 strips */
    const int SR = gk_gemm_pack_rows(q8), ROWS = 3 * SR;
    const bool lanes = SR == GK_GEMM_LANES;
    const gk_dtype pq8 = (gk_dtype)(q8 | GK_GEMM_PACKED);
    const char *tn = gk_type_name(q8);
    /* gemm.h's layout: the block's bytes and values, the 2-byte field put in front
     * (-1: none), the first of the bytes that follow a unit of each row at a time
     * (4 bytes; the float types' whole block), and their count */
    const bool flt = q8 == GK_TYPE_F32 || q8 == GK_TYPE_F16 || q8 == GK_TYPE_BF16;
    const int values = flt ? 16 : q8 == GK_TYPE_Q8_0 || q8 == GK_TYPE_Q4_0 ? 32 : 256;
    const int bsz = (int)gk_row_size(q8, values);
    const int lead = q8 == GK_TYPE_Q6_K ? 208 : q8 == GK_TYPE_Q8_0 || q8 == GK_TYPE_Q4_0 ? 0 : -1;
    const int data = lead == 0 ? 2 : 0, ndata = bsz - (lead >= 0 ? 2 : 0), unit = flt ? bsz : 4;
    CHECK(!gk_gemm_packable(q8, 37, n) && !gk_gemm_packable(GK_TYPE_Q5_0, ROWS, n) &&
          !gk_gemm_packable(q8, ROWS, n + values / 2) && !(lanes && gk_gemm_packable(q8, 48, n)));
    CHECK(gk_gemm_pack_values(q8) == values);
    if (!gk_gemm_packable(q8, ROWS, n)) {
        printf("skip: packed %s needs the AVX-512 VNNI kernels (gemm %s)\n", tn, gk_gemm_isa());
        return;
    }
    const size_t nb_row = gk_row_size(q8, n), bytes = nb_row * ROWS;
    uint8_t *w = malloc(bytes), *pw = gk_malloc_aligned(bytes, NULL);
    float *tmp = malloc(sizeof(float) * (size_t)n), *x = malloc(sizeof(float) * (size_t)n * T_MAX);
    for (int r = 0; r < ROWS; r++) {
        for (int64_t i = 0; i < n; i++) tmp[i] = frand() * (0.01f + (float)r / ROWS);
        gk_type_traits_of(q8)->from_float(tmp, w + r * nb_row, n);
    }
    for (int64_t i = 0; i < n * T_MAX; i++) x[i] = frand() * 3.0f;
    gk_gemm_pack(q8, w, nb_row, ROWS, n, pw);
    /* strip 1, its last block: the 16 leading fields, then byte data + unit k + i of row
     * r at 16 unit k + unit r + i (Q8_0's plus 128); f16's and bf16's value k of row r
     * at element 64 k + r */
    const int64_t lastb = (int64_t)(nb_row / (size_t)bsz) - 1;
    const uint8_t *o = pw + SR * nb_row + (size_t)lastb * 16 * bsz;
    bool layout = true;
    for (int r = 0; r < SR && lanes; r++)
        for (int64_t k = 0; k < n; k++)
            layout = layout &&
                     !memcmp(pw + SR * nb_row + 2 * (k * SR + r), w + (SR + r) * nb_row + 2 * k, 2);
    for (int r = 0; r < 16 && !lanes; r++) {
        const uint8_t *blk = w + (16 + r) * nb_row + (size_t)lastb * bsz;
        if (lead >= 0) layout = layout && !memcmp(o + 2 * r, blk + lead, 2);
        const uint8_t *q = o + (lead >= 0 ? 32 : 0);
        for (int j = 0; j < ndata; j++)
            layout =
                layout && q[16 * unit * (j / unit) + unit * r + j % unit] ==
                              (uint8_t)(q8 == GK_TYPE_Q8_0 ? blk[data + j] ^ 0x80 : blk[data + j]);
    }
    CHECK_MSG(layout, "packed %s n %lld: the layout is not gemm.h's", tn, (long long)n);
    void *qb = malloc(gk_matmul_qbuf_size(n, T_MAX));
    float *ya = malloc(sizeof(float) * ROWS * T_MAX), *yb = malloc(sizeof(float) * ROWS * T_MAX),
          *ya2 = malloc(sizeof(float) * ROWS * T_MAX), *yb2 = malloc(sizeof(float) * ROWS * T_MAX);
    static const int Ts[] = {1, 2, 7, 8, 9, 67};
    for (int p = 0; p < 3; p++)
        for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++) {
            const int T = Ts[ti];
            const size_t sz = sizeof(float) * ROWS * (size_t)T;
            gk_matmul(pools[p], ya, w, q8, nb_row, ROWS, x, n, T, qb);
            gk_matmul(pools[p], yb, pw, pq8, nb_row, ROWS, x, n, T, qb);
            CHECK_MSG(!memcmp(ya, yb, sz), "packed %s n %lld T %d, %d threads: not the rows'", tn,
                      (long long)n, T, p + 1);
            /* two matrices in one call: the packed one's two halves */
            gk_matmul2(pools[p], ya, w, q8, nb_row, ya2, w + SR * nb_row, q8, nb_row, SR, x, n, T,
                       qb);
            gk_matmul2(pools[p], yb, pw, pq8, nb_row, yb2, pw + SR * nb_row, pq8, nb_row, SR, x, n,
                       T, qb);
            CHECK_MSG(!memcmp(ya, yb, sz / 3) && !memcmp(ya2, yb2, sz / 3),
                      "packed %s n %lld T %d: gk_matmul2 not the rows'", tn, (long long)n, T);
            /* and with GeGLU, strip by strip */
            const gk_gelu kind = T % 2 ? GK_GELU_TANH : GK_GELU_ERF;
            gk_geglu(pools[p], ya, ya2, SR * (int64_t)T, kind);
            gk_matmul2_geglu(pools[p], yb, pw, pq8, nb_row, yb2, pw + SR * nb_row, pq8, nb_row, SR,
                             x, n, T, qb, kind);
            CHECK_MSG(!memcmp(ya, yb, sz / 3) && !memcmp(ya2, yb2, sz / 3),
                      "packed %s n %lld T %d: gk_matmul2_geglu not gk_matmul2's GeGLU", tn,
                      (long long)n, T);
        }
    /* decode's column chunks: chunk ch starts SR x its row offset into a strip */
    for (int k = 2; k <= 4; k += 2) {
        if (n % (values * k)) continue;
        const size_t qsize = (size_t)k * gk_matmul_qbuf_size(n / k, 1) + 64 * (size_t)k;
        uint8_t *qc = gk_malloc_aligned(qsize, NULL);
        float *ys[4], *zs[4];
        for (int ch = 0; ch < k; ch++) ys[ch] = ya + ch * ROWS, zs[ch] = yb + ch * ROWS;
        for (int p = 0; p < 3; p++) {
            bool r1 = gk_matmul_chunks(pools[p], ys, w, q8, nb_row, ROWS, x, n, k, qc, qsize);
            bool r2 = gk_matmul_chunks(pools[p], zs, pw, pq8, nb_row, ROWS, x, n, k, qc, qsize);
            CHECK(r1 && r2);
            CHECK_MSG(!memcmp(ya, yb, sizeof(float) * ROWS * (size_t)k),
                      "packed %s n %lld, %d chunks: not the rows'", tn, (long long)n, k);
            /* and a chunk's batch (T = 3) through gk_matmul from its packed offset */
            const int64_t cw = n / k;
            float xc[3 * 4096];
            for (int t = 0; t < 3; t++)
                memcpy(xc + t * cw, x + t * n + cw, sizeof(float) * (size_t)cw);
            gk_matmul(pools[p], ya2, w + gk_row_size(q8, cw), q8, nb_row, ROWS, xc, cw, 3, qb);
            gk_matmul(pools[p], yb2, pw + gk_gemm_col_offset(pq8, cw), pq8, nb_row, ROWS, xc, cw, 3,
                      qb);
            CHECK_MSG(!memcmp(ya2, yb2, sizeof(float) * ROWS * 3),
                      "packed %s n %lld: chunk 1 of %d in a batch not the rows'", tn, (long long)n,
                      k);
        }
        gk_free_aligned(qc);
    }
    free(w), gk_free_aligned(pw), free(tmp), free(x), free(qb);
    free(ya), free(yb), free(ya2), free(yb2);
}

/* The packed activation row of Q8_0 and Q4_0 weights' kernels starts with the n
 * int8 values and the n/32 fp32 block scales of the reference Q8_0 quantization
 * (gemm_impl.h xrow_q, gemm_avx512.c xrow_s), ties (x / d exactly k + 0.5) rounded
 * away from zero as roundf does. */
static void check_xpack(const char *isa, const gk_gemm_kernels *k, int64_t n) {
    if (!k || !k->pack) return;
    float *x = malloc(sizeof(float) * n);
    gk_block_q8_0 *ref = malloc(sizeof *ref * (size_t)(n / 32));
    uint8_t *xq = malloc(k->xrow(n));
    for (int64_t i = 0; i < n; i++) x[i] = frand() * 3.0f;
    /* blocks 0 and 1: amax 127, so d = 1 and x / d = x: halves are ties */
    for (int64_t i = 0; i < 64 && i < n; i++) x[i] = (float)(irand(254) - 127) + 0.5f;
    x[0] = 127.0f, x[33] = -127.0f, x[5] = 2.5f, x[6] = -2.5f, x[40] = -0.5f, x[41] = 0.5f;
    for (int64_t i = 64 * 2; i < 64 * 2 + 32 && i < n; i++) x[i] = 0.0f; /* block 4: d = 0 */
    gk_quantize_q8_0_ref(x, ref, n);
    k->pack(x, n, xq);
    const float *d = (const float *)(xq + n);
    int bad = 0;
    for (int64_t b = 0; b < n / 32; b++) {
        if (memcmp(xq + b * 32, ref[b].qs, 32) != 0 || d[b] != gk_fp16_to_fp32(ref[b].d)) bad++;
    }
    CHECK_MSG(bad == 0, "%s activation pack, n %lld: %d of %lld blocks differ from Q8_0's", isa,
              (long long)n, bad, (long long)(n / 32));
    /* a NaN and an infinity (a broken model's activations): packed without undefined
     * behaviour (the sanitizer build checks), the other blocks as before */
    x[n - 1] = NAN, x[n - 2] = INFINITY;
    k->pack(x, n, xq);
    CHECK(n < 96 || !memcmp(xq + 32, ref[1].qs, 32));
    free(x), free(ref), free(xq);
}

int main(void) {
    gk_dtype_init();
    gk_err err;
    gk_pool *pools[3];
    for (int i = 0; i < 3; i++) {
        pools[i] = gk_pool_new(i + 1, &err);
        if (!pools[i]) {
            fprintf(stderr, "pool: %s\n", err.msg);
            return 1;
        }
    }
    const gk_dtype types[] = {GK_TYPE_F32,  GK_TYPE_F16,  GK_TYPE_BF16, GK_TYPE_Q8_0,
                              GK_TYPE_Q4_0, GK_TYPE_Q4_K, GK_TYPE_Q5_K, GK_TYPE_Q6_K};
    printf("gemm instruction set: %s\n", gk_gemm_isa());
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        bool quant = types[i] == GK_TYPE_Q8_0 || types[i] == GK_TYPE_Q4_0;
        /* k-quants have GEMM kernels only with AVX-512 (elsewhere their vec_dot,
         * covered by test_kquants) */
        bool kq = types[i] == GK_TYPE_Q4_K || types[i] == GK_TYPE_Q5_K || types[i] == GK_TYPE_Q6_K;
        if (kq && !gk_gemm_kernels_of(types[i])) continue;
        /* float weights: a tail past the vectors, whole vectors, and fewer inputs
         * than one vector (the AVX-512 tiles' masked last step alone); quantized:
         * decode's row-by-row strips (gemm_avx512.c strip1) at their widest rows
         * (R1_CHUNK, the rows of Grok-2's d = 8192), with a tail of 15 blocks for q8_0
         * (and 96: a tail alone) */
        int64_t sizes[3] = {quant ? 96
                            : kq  ? 256
                                  : 203,
                            quant || kq ? 512 : 256,
                            quant ? 8160
                            : kq  ? 8192
                                  : 13};
        for (int si = 0; si < 3; si++) {
            int64_t n = sizes[si];
            check_kernels("matmul", NULL, types[i], n, pools);
#if defined(__x86_64__)
            if (strcmp(gk_gemm_isa(), "none") != 0 && !kq)
                check_kernels("avx2", gk_gemm_kernels_avx2(types[i]), types[i], n, pools);
            if (strcmp(gk_gemm_isa(), "avx512-vnni") == 0)
                check_kernels("avx512", gk_gemm_kernels_avx512(types[i]), types[i], n, pools);
#endif
        }
        check_matmul2(pools[1], types[i], quant ? 128 : kq ? 256 : 72);
        if (quant)
            for (int64_t n = 96; n <= 8192; n *= 4) {
                check_xpack("matmul", gk_gemm_kernels_of(types[i]), n);
                check_xpack("packed", gk_gemm_kernels_of(types[i] | GK_GEMM_PACKED), n);
#if defined(__x86_64__)
                if (strcmp(gk_gemm_isa(), "none") != 0)
                    check_xpack("avx2", gk_gemm_kernels_avx2(types[i]), n);
#endif
            }
    }
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        bool kq = types[i] == GK_TYPE_Q4_K || types[i] == GK_TYPE_Q5_K || types[i] == GK_TYPE_Q6_K;
        check_chunks(pools, types[i], kq ? 512 : 160, 2);
        check_chunks(pools, types[i], kq ? 256 : 96, 4);
        check_chunks_many(pools, types[i], kq ? 256 : 96, 2);
    }
    const gk_dtype ptypes[] = {GK_TYPE_Q8_0, GK_TYPE_Q4_0, GK_TYPE_Q4_K, GK_TYPE_Q5_K,
                               GK_TYPE_Q6_K, GK_TYPE_F32,  GK_TYPE_F16,  GK_TYPE_BF16};
    for (size_t q = 0; q < sizeof ptypes / sizeof *ptypes; q++) {
        const bool kq = q >= 2 && q < 5, flt = q >= 5;
        check_packed(pools, ptypes[q], kq ? 256 : 96);
        check_packed(pools, ptypes[q], 512);
        check_packed(pools, ptypes[q], kq ? 8192 : flt ? 4128 : 8160);
    }
    check_attn_rows();
    check_attn_softmax();
    for (int i = 0; i < 3; i++) gk_pool_free(pools[i]);
    return gk_test_done();
}
