/*
 * tgemm.c - see tgemm.h. The tile kernel (tgemm_impl.h) is built twice, for
 * AVX2/FMA and portably; the CPU decides once which one runs.
 */
#include "train/tgemm.h"

#include <stdlib.h>

#define TGEMM_FN tgemm_tiles_generic
static void tgemm_tiles_generic(const gk_tgemm_job *j, int64_t item_lo, int64_t item_hi);
#include "train/tgemm_impl.h"

#if defined(__x86_64__) || defined(_M_X64)
void gk_tgemm_tiles_avx2(const gk_tgemm_job *j, int64_t item_lo, int64_t item_hi);
void gk_tgemm_tiles_avx512(const gk_tgemm_job *j, int64_t item_lo, int64_t item_hi);
#endif

typedef void (*tiles_fn)(const gk_tgemm_job *j, int64_t lo, int64_t hi);

static tiles_fn pick(void) {
#if defined(__x86_64__) || defined(_M_X64)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && !getenv("GK_NO_AVX512")) return gk_tgemm_tiles_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return gk_tgemm_tiles_avx2;
#endif
    return tgemm_tiles_generic;
}

static void tgemm_part(void *arg, int ith, int nth) {
    gk_tgemm_job *j = arg;
    static tiles_fn fn; /* the same choice on every call; a benign race on first use */
    tiles_fn f = __atomic_load_n(&fn, __ATOMIC_RELAXED);
    if (!f) {
        f = pick();
        __atomic_store_n(&fn, f, __ATOMIC_RELAXED);
    }
    int64_t items = ((j->M + 3) / 4) * ((j->N + 63) / 64), lo, hi;
    gk_split(items, ith, nth, &lo, &hi);
    /* K in chunks of 256, so that a 16-column strip of B (16 KiB) stays in L1
     * across the row tiles; the chunks are summed in order, whatever nth is. */
    for (int64_t k0 = 0; k0 < j->K; k0 += 256) {
        gk_tgemm_job c = *j;
        c.A = j->A + k0 * j->sak;
        c.B = j->B + k0 * j->ldb;
        c.K = j->K - k0 < 256 ? j->K - k0 : 256;
        c.acc = j->acc || k0 > 0;
        f(&c, lo, hi);
    }
}

void gk_tgemm(gk_pool *pool, gk_tgemm_job *j) {
    if (j->M <= 0 || j->N <= 0) return;
    if (j->K <= 0) {
        if (!j->acc)
            for (int64_t m = 0; m < j->M; m++)
                for (int64_t n = 0; n < j->N; n++) j->C[m * j->ldc + n] = 0.0f;
        return;
    }
    gk_pool_run(pool, tgemm_part, j);
}

void gk_tgemm_dx(gk_pool *pool, float *dx, const float *dy, const float *w, int64_t T,
                 int64_t n_out, int64_t n_in, bool acc) {
    gk_tgemm_job j = {.C = dx,
                      .ldc = n_in,
                      .A = dy,
                      .sam = n_out,
                      .sak = 1,
                      .B = w,
                      .ldb = n_in,
                      .M = T,
                      .N = n_in,
                      .K = n_out,
                      .acc = acc};
    gk_tgemm(pool, &j);
}

typedef struct {
    float *dst;
    const float *src;
    int64_t rows, cols;
} transpose_job;

/* dst[c][r] = src[r][c], in 32 x 32 blocks; split over columns. */
static void transpose_part(void *arg, int ith, int nth) {
    transpose_job *j = arg;
    int64_t lo, hi;
    gk_split((j->cols + 31) / 32, ith, nth, &lo, &hi);
    for (int64_t cb = lo * 32; cb < hi * 32 && cb < j->cols; cb += 32)
        for (int64_t rb = 0; rb < j->rows; rb += 32)
            for (int64_t c = cb; c < cb + 32 && c < j->cols; c++)
                for (int64_t r = rb; r < rb + 32 && r < j->rows; r++)
                    j->dst[c * j->rows + r] = j->src[r * j->cols + c];
}

void gk_tgemm_dw(gk_pool *pool, float *dw, const float *dy, const float *x, int64_t T,
                 int64_t n_out, int64_t n_in, float *scratch) {
    /* dY^T first, so that the kernel reads each row of A contiguously */
    transpose_job tj = {.dst = scratch, .src = dy, .rows = T, .cols = n_out};
    gk_pool_run(pool, transpose_part, &tj);
    gk_tgemm_job j = {.C = dw,
                      .ldc = n_in,
                      .A = scratch,
                      .sam = T,
                      .sak = 1,
                      .B = x,
                      .ldb = n_in,
                      .M = n_out,
                      .N = n_in,
                      .K = T,
                      .acc = true};
    gk_tgemm(pool, &j);
}

void gk_tgemm_ref(gk_tgemm_job *j) {
    for (int64_t m = 0; m < j->M; m++)
        for (int64_t n = 0; n < j->N; n++) {
            double s = 0.0;
            for (int64_t k = 0; k < j->K; k++)
                s += (double)j->A[m * j->sam + k * j->sak] * j->B[k * j->ldb + n];
            float *c = j->C + m * j->ldc + n;
            *c = j->acc ? *c + (float)s : (float)s;
        }
}
