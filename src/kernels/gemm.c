/*
 * gemm.c - gk_matmul and gk_matmul2 (ops.h) over the GEMM tiles of gemm.h:
 * the choice of instruction set, the packing of the activations once per
 * batch, the cache blocking and the split over threads. Types without GEMM
 * tiles (or a CPU without AVX2) go through the type's vec_dot per (row, token),
 * which is batch invariant by construction.
 */
#include "kernels/gemm.h"
#include "kernels/ops.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ dispatch --- */

#define ISA_NONE 0
#define ISA_AVX2 1
#define ISA_AVX512 2

static int isa_found;
static pthread_once_t isa_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) || defined(_M_X64)
static int detect_isa(void) {
    if (!gk_cpu_has_avx2_fma_f16c()) return ISA_NONE;
    return gk_cpu_has_avx512_vnni() ? ISA_AVX512 : ISA_AVX2;
}
#else
static int detect_isa(void) {
    return ISA_NONE;
}
#endif

static void isa_init(void) {
    isa_found = detect_isa();
    if (getenv("GK_FORCE_SCALAR")) isa_found = ISA_NONE;
    if (isa_found == ISA_AVX512 && getenv("GK_NO_AVX512")) isa_found = ISA_AVX2;
}

static int isa(void) {
    pthread_once(&isa_once, isa_init);
    return isa_found;
}

const char *gk_gemm_isa(void) {
    static const char *names[] = {"none", "avx2", "avx512-vnni"};
    return names[isa()];
}

/* grok.h: the dot-product kernels, and the GEMM's when they differ. */
static char kernels_name[64];
static pthread_once_t kernels_once = PTHREAD_ONCE_INIT;

static void kernels_name_init(void) {
    const char *dot = gk_dtype_kernels(), *mm = gk_gemm_isa();
    if (!strcmp(mm, "none") || !strcmp(mm, dot))
        snprintf(kernels_name, sizeof kernels_name, "%s", dot);
    else
        snprintf(kernels_name, sizeof kernels_name, "%s, matmul %s", dot, mm);
}

const char *gk_kernels_name(void) {
    pthread_once(&kernels_once, kernels_name_init);
    return kernels_name;
}

const gk_gemm_kernels *gk_gemm_kernels_of(gk_dtype type) {
#if defined(__x86_64__) || defined(_M_X64)
    switch (isa()) {
    case ISA_AVX512:
        return gk_gemm_kernels_avx512(type);
    case ISA_AVX2:
        return gk_gemm_kernels_avx2(type);
    }
#endif
    return NULL;
}

/* --------------------------------------------------------------- driver --- */

/* Rows per work item: a strip of weights that one thread runs against a chunk
 * of tokens (for decode, 16 rows of every matrix per item). */
#define ROW_BLOCK GK_GEMM_STRIP

typedef struct {
    float *y;
    const uint8_t *w;
    size_t nb_row;
    int64_t n_out, n_rb; /* rows, row blocks */
} gemm_out;

typedef struct {
    const gk_gemm_kernels *k;
    gemm_out out[2];
    int n_outs;
    int64_t n_in;
    int T;
    const float *x;
    uint8_t *xq; /* packed activations, or x itself */
    size_t xs;   /* bytes between packed rows */
    int64_t tc;  /* tokens per chunk */
} gemm_job;

static void gemm_pack(void *arg, int ith, int nth) {
    gemm_job *j = arg;
    int64_t lo, hi;
    gk_split(j->T, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) j->k->pack(j->x + t * j->n_in, j->n_in, j->xq + t * j->xs);
}

/* Items are (token chunk, row block) pairs, token-chunk major: a thread takes a
 * run of row strips and sweeps each 4-row tile over the chunk's tokens while
 * the tile sits in L1 and the chunk in L2. */
static void gemm_part(void *arg, int ith, int nth) {
    gemm_job *j = arg;
    const gk_gemm_kernels *k = j->k;
    int64_t n_rb = 0;
    for (int i = 0; i < j->n_outs; i++) n_rb += j->out[i].n_rb;
    int64_t n_tc = (j->T + j->tc - 1) / j->tc, lo, hi;
    gk_split(n_rb * n_tc, ith, nth, &lo, &hi);
    for (int64_t item = lo; item < hi; item++) {
        int64_t tc = item / n_rb, rb = item % n_rb;
        const gemm_out *o = &j->out[0];
        if (rb >= o->n_rb) rb -= o->n_rb, o = &j->out[1];
        int64_t r0 = rb * ROW_BLOCK, r1 = r0 + ROW_BLOCK < o->n_out ? r0 + ROW_BLOCK : o->n_out;
        int64_t t0 = tc * j->tc, t1 = t0 + j->tc < j->T ? t0 + j->tc : j->T;
        if (j->T == 1 && k->one) {
            k->one(j->n_in, o->w + (size_t)r0 * o->nb_row, o->nb_row, (int)(r1 - r0), j->xq,
                   o->y + r0);
            continue;
        }
        if (k->strip) {
            k->strip(j->n_in, o->w + (size_t)r0 * o->nb_row, o->nb_row, (int)(r1 - r0),
                     j->xq + (size_t)t0 * j->xs, j->xs, (int)(t1 - t0),
                     o->y + (size_t)t0 * o->n_out + r0, o->n_out);
            continue;
        }
        for (int64_t r = r0; r < r1; r += k->rmax) {
            int R = r1 - r < k->rmax ? (int)(r1 - r) : k->rmax;
            const uint8_t *w = o->w + (size_t)r * o->nb_row;
            for (int64_t t = t0; t < t1; t += k->nmax) {
                int N = t1 - t < k->nmax ? (int)(t1 - t) : k->nmax;
                k->tile[R - 1][N - 1](j->n_in, w, o->nb_row, j->xq + (size_t)t * j->xs, j->xs,
                                      o->y + (size_t)t * o->n_out + r, o->n_out);
            }
        }
    }
}

static void gemm_run(gk_pool *pool, const gk_gemm_kernels *k, const gemm_out *outs, int n_outs,
                     const float *x, int64_t n_in, int T, void *qbuf) {
    gemm_job j = {.k = k, .n_outs = n_outs, .n_in = n_in, .T = T, .x = x};
    for (int i = 0; i < n_outs; i++) {
        j.out[i] = outs[i];
        j.out[i].n_rb = (outs[i].n_out + ROW_BLOCK - 1) / ROW_BLOCK;
    }
    if (k->pack) {
        j.xq = qbuf;
        j.xs = k->xrow(n_in);
        gk_pool_run(pool, gemm_pack, &j);
    } else {
        j.xq = (uint8_t *)x;
        j.xs = (size_t)n_in * sizeof(float);
    }
    /* a chunk of packed tokens of about 256 KiB, a whole number of tiles; strip
     * kernels unpack their rows once per chunk, so they take up to 128 tokens */
    int64_t tc = (int64_t)((256u << 10) / j.xs) / k->nmax * k->nmax, cap = k->strip ? 128 : 64;
    j.tc = tc < k->nmax ? k->nmax : tc > cap ? cap / k->nmax * k->nmax : tc;
    gk_pool_run(pool, gemm_part, &j);
}

void gk_gemm_with(gk_pool *pool, const gk_gemm_kernels *k, float *y, const void *w, size_t nb_row,
                  int64_t n_out, const float *x, int64_t n_in, int T, void *qbuf) {
    if (n_out <= 0 || T <= 0) return;
    gemm_out o = {.y = y, .w = w, .nb_row = nb_row, .n_out = n_out};
    gemm_run(pool, k, &o, 1, x, n_in, T, qbuf);
}

/* ------------------------------------------------- vec_dot fallback path --- */

typedef struct {
    float *y;
    const uint8_t *w;
    const gk_type_traits *tt;
    size_t nb_row;
    int64_t n_out, n_in;
    const float *x;
    const uint8_t *xq; /* x converted to tt->vec_dot_type (or x itself) */
    size_t xq_row;
    int T;
} matmul_job;

static void matmul_convert(void *arg, int ith, int nth) {
    matmul_job *j = arg;
    const gk_type_traits *vt = gk_type_traits_of(j->tt->vec_dot_type);
    int64_t lo, hi;
    gk_split(j->T, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++)
        vt->from_float(j->x + t * j->n_in, (uint8_t *)j->xq + t * j->xq_row, j->n_in);
}

/* Rows of W in tiles of 4, each tile against every token. A row's tile does not
 * depend on T or the thread count (tiles start at multiples of 4), so neither
 * does the kernel (dot4 or dot) that computes an element. */
static void matmul_rows(void *arg, int ith, int nth) {
    matmul_job *j = arg;
    int64_t lo, hi;
    gk_split((j->n_out + 3) / 4, ith, nth, &lo, &hi);
    lo *= 4;
    hi = hi * 4 < j->n_out ? hi * 4 : j->n_out;
    gk_vec_dot_fn dot = j->tt->vec_dot;
    gk_vec_dot4_fn dot4 = j->tt->vec_dot4;
    for (int64_t o0 = lo; o0 < hi; o0 += 4) {
        int64_t o1 = o0 + 4 < hi ? o0 + 4 : hi;
        const uint8_t *w = j->w + (size_t)o0 * j->nb_row;
        for (int t = 0; t < j->T; t++) {
            const uint8_t *xr = j->xq + (size_t)t * j->xq_row;
            float *yr = j->y + (size_t)t * j->n_out;
            if (dot4 && o1 - o0 == 4) {
                dot4(j->n_in, w, j->nb_row, xr, yr + o0);
                continue;
            }
            for (int64_t o = o0; o < o1; o++)
                yr[o] = dot(j->n_in, j->w + (size_t)o * j->nb_row, xr);
        }
    }
}

static void matmul_vec_dot(gk_pool *pool, float *y, const void *w, gk_dtype type, size_t nb_row,
                           int64_t n_out, const float *x, int64_t n_in, int T, void *qbuf) {
    matmul_job j = {.y = y,
                    .w = w,
                    .tt = gk_type_traits_of(type),
                    .nb_row = nb_row,
                    .n_out = n_out,
                    .n_in = n_in,
                    .x = x,
                    .T = T};
    if (j.tt->vec_dot_type == GK_TYPE_F32) {
        j.xq = (const uint8_t *)x;
        j.xq_row = (size_t)n_in * sizeof(float);
    } else {
        j.xq = qbuf;
        j.xq_row = gk_row_size(j.tt->vec_dot_type, n_in);
        gk_pool_run(pool, matmul_convert, &j);
    }
    gk_pool_run(pool, matmul_rows, &j);
}

/* ------------------------------------------------------------ public --- */

size_t gk_matmul_qbuf_size(int64_t n_in, int T) {
    /* the widest converted row of any type: the GEMM's packed int8 rows (n + 12
     * bytes per 32, 64-aligned), Q8_0 (34 per 32) or Q8_K (292 per 256) */
    int64_t n32 = (n_in + 31) / 32 * 32, n256 = (n_in + 255) / 256 * 256;
    size_t a = ((size_t)n32 + (size_t)(n32 / 32) * 12 + 63) & ~(size_t)63;
    size_t b = gk_row_size(GK_TYPE_Q8_0, n32), c = gk_row_size(GK_TYPE_Q8_K, n256);
    size_t m = a > b ? a : b;
    return (size_t)T * (m > c ? m : c);
}

void gk_matmul(gk_pool *pool, float *y, const void *w, gk_dtype type, size_t nb_row, int64_t n_out,
               const float *x, int64_t n_in, int T, void *qbuf) {
    if (n_out <= 0 || T <= 0) return;
    const gk_gemm_kernels *k = gk_gemm_kernels_of(type);
    if (k) {
        gemm_out o = {.y = y, .w = w, .nb_row = nb_row, .n_out = n_out};
        gemm_run(pool, k, &o, 1, x, n_in, T, qbuf);
    } else {
        matmul_vec_dot(pool, y, w, type, nb_row, n_out, x, n_in, T, qbuf);
    }
}

/* ------------------------------------------------ decode's column chunks --- */

typedef struct {
    const gk_gemm_kernels *k;
    float *const *y;
    const uint8_t *w;
    size_t nb_row, coff; /* bytes from one chunk's first column to the next's */
    int64_t n_out, cw;
    int nk;
    const float *x;
    uint8_t *xq; /* the chunks' packed activations, xs bytes apart, or x itself */
    size_t xs;
} chunks_job;

/* Row blocks split over the threads; each row (float weights) or strip of 16
 * rows (packed activations: the strips' sums of 16 rows at once) runs chunk
 * after chunk, so a thread reads its rows each from start to end. */
static void chunks_part(void *arg, int ith, int nth) {
    chunks_job *j = arg;
    int64_t lo, hi;
    gk_split((j->n_out + ROW_BLOCK - 1) / ROW_BLOCK, ith, nth, &lo, &hi);
    for (int64_t rb = lo; rb < hi; rb++) {
        int64_t r0 = rb * ROW_BLOCK, r1 = r0 + ROW_BLOCK < j->n_out ? r0 + ROW_BLOCK : j->n_out;
        if (!j->k->pack) {
            for (int64_t r = r0; r < r1; r++)
                for (int ch = 0; ch < j->nk; ch++)
                    j->k->one(j->cw, j->w + (size_t)r * j->nb_row + ch * j->coff, j->nb_row, 1,
                              j->xq + (size_t)ch * j->xs, j->y[ch] + r);
            continue;
        }
        for (int ch = 0; ch < j->nk; ch++)
            j->k->one(j->cw, j->w + (size_t)r0 * j->nb_row + ch * j->coff, j->nb_row,
                      (int)(r1 - r0), j->xq + (size_t)ch * j->xs, j->y[ch] + r0);
    }
}

bool gk_matmul_chunks(gk_pool *pool, float *const *y, const void *w, gk_dtype type, size_t nb_row,
                      int64_t n_out, const float *x, int64_t n_in, int k, void *qbuf,
                      size_t qbuf_size) {
    const gk_gemm_kernels *kk = gk_gemm_kernels_of(type);
    if (!kk || !kk->one || k < 1 || n_in % k || n_out <= 0) return false;
    const int64_t cw = n_in / k, bs = gk_type_traits_of(type)->blck_size;
    if (cw % bs) return false;
    chunks_job j = {.k = kk,
                    .y = y,
                    .w = w,
                    .nb_row = nb_row,
                    .coff = gk_row_size(type, cw),
                    .n_out = n_out,
                    .cw = cw,
                    .nk = k,
                    .x = x};
    if (kk->pack) {
        j.xs = (kk->xrow(cw) + 63) & ~(size_t)63;
        if (j.xs * (size_t)k > qbuf_size || ((uintptr_t)qbuf & 63)) return false;
        j.xq = qbuf;
        /* one token: packed here (microseconds), so that the call is one pass
         * of the pool, as many as grok plan counts for it */
        for (int ch = 0; ch < k; ch++) kk->pack(x + ch * cw, cw, j.xq + (size_t)ch * j.xs);
    } else {
        j.xq = (uint8_t *)x;
        j.xs = (size_t)cw * sizeof(float);
    }
    gk_pool_run(pool, chunks_part, &j);
    return true;
}

void gk_matmul2(gk_pool *pool, float *y1, const void *w1, gk_dtype type1, size_t nb_row1, float *y2,
                const void *w2, gk_dtype type2, size_t nb_row2, int64_t n_out, const float *x,
                int64_t n_in, int T, void *qbuf) {
    if (n_out <= 0 || T <= 0) return;
    const gk_gemm_kernels *k = gk_gemm_kernels_of(type1);
    if (!k || type2 != type1) {
        gk_matmul(pool, y1, w1, type1, nb_row1, n_out, x, n_in, T, qbuf);
        gk_matmul(pool, y2, w2, type2, nb_row2, n_out, x, n_in, T, qbuf);
        return;
    }
    gemm_out o[2] = {{.y = y1, .w = w1, .nb_row = nb_row1, .n_out = n_out},
                     {.y = y2, .w = w2, .nb_row = nb_row2, .n_out = n_out}};
    gemm_run(pool, k, o, 2, x, n_in, T, qbuf);
}
