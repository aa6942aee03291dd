/*
 * gemm.c - gk_matmul and gk_matmul2 (ops.h) over the GEMM tiles of gemm.h:
 * the choice of instruction set, the packing of the activations once per
 * batch, the cache blocking and the split over threads; and gk_sgemm, the f32
 * product in any layout that training's backward runs, on the same f32 tiles
 * or on the outer-product tiles of gemm_nn_impl.h. Types without GEMM
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
    if (type & GK_GEMM_PACKED)
        return isa() == ISA_AVX512 ? gk_gemm_kernels_avx512_packed(type & ~GK_GEMM_PACKED) : NULL;
    switch (isa()) {
    case ISA_AVX512:
        return gk_gemm_kernels_avx512(type);
    case ISA_AVX2:
        return gk_gemm_kernels_avx2(type);
    }
#endif
    return NULL;
}

/* -------------------------------------------------------------- packing --- */

/* A packed block's parts: the block's bytes (a k-quant's super-block), the 2-byte
 * field moved to the front (its fp16 scale; -1: none), the bytes that follow a
 * unit of each row at a time (from `data`, `ndata` of them, a multiple of unit),
 * and the values a block holds. The quantized types' unit is 4 bytes (a vector of
 * 16 rows' dwords); f32's a whole block of 16 values (f16's and bf16's layout,
 * the rows as lanes, is gk_gemm_pack's own). */
typedef struct {
    int bsz, lead, data, ndata, unit, values;
} pack_shape;

static bool pack_shape_of(gk_dtype type, pack_shape *ps) {
    switch (type) {
    case GK_TYPE_Q8_0:
        return *ps = (pack_shape){34, 0, 2, 32, 4, 32}, true;
    case GK_TYPE_Q4_0:
        return *ps = (pack_shape){18, 0, 2, 16, 4, 32}, true;
    case GK_TYPE_Q4_K:
        return *ps = (pack_shape){144, -1, 0, 144, 4, 256}, true;
    case GK_TYPE_Q5_K:
        return *ps = (pack_shape){176, -1, 0, 176, 4, 256}, true;
    case GK_TYPE_Q6_K:
        return *ps = (pack_shape){210, 208, 0, 208, 4, 256}, true;
    case GK_TYPE_F32:
        return *ps = (pack_shape){64, -1, 0, 64, 64, 16}, true;
    case GK_TYPE_F16:
    case GK_TYPE_BF16:
        return *ps = (pack_shape){32, -1, 0, 32, 32, 16}, true;
    default:
        return false;
    }
}

int64_t gk_gemm_pack_values(gk_dtype type) {
    pack_shape ps;
    return pack_shape_of(type & ~GK_GEMM_PACKED, &ps) ? ps.values : 0;
}

bool gk_gemm_packable(gk_dtype type, int64_t n_out, int64_t n_in) {
    static int off = -1;
    if (off < 0) off = getenv("GK_NO_PACK") != NULL;
    pack_shape ps;
    return !off && pack_shape_of(type, &ps) && n_out > 0 && n_out % gk_gemm_pack_rows(type) == 0 &&
           n_in > 0 && n_in % ps.values == 0 && gk_gemm_kernels_of(type | GK_GEMM_PACKED) != NULL;
}

void gk_gemm_pack(gk_dtype type, const void *src, size_t nb_row, int64_t n_out, int64_t n_in,
                  void *dst) {
    pack_shape ps;
    if (!pack_shape_of(type, &ps)) return;          /* gk_gemm_packable said no */
    if (gk_gemm_pack_rows(type) == GK_GEMM_LANES) { /* f16, bf16: value (r, k) at k * 64 + r */
        for (int64_t s = 0; s < n_out / GK_GEMM_LANES; s++) {
            const uint8_t *rows = (const uint8_t *)src + (size_t)s * GK_GEMM_LANES * nb_row;
            uint16_t *o = (uint16_t *)((uint8_t *)dst + (size_t)s * GK_GEMM_LANES * nb_row);
            for (int64_t k0 = 0; k0 < n_in; k0 += 64) /* 64 x 64 tiles, each in L1 */
                for (int r = 0; r < GK_GEMM_LANES; r++) {
                    const uint8_t *row = rows + (size_t)r * nb_row;
                    for (int64_t k = k0; k < k0 + 64 && k < n_in; k++)
                        memcpy(o + (size_t)k * GK_GEMM_LANES + r, row + 2 * k, 2);
                }
        }
        return;
    }
    const int64_t nb = n_in / ps.values;
    const uint32_t flip = type == GK_TYPE_Q8_0 ? 0x80808080u : 0;
    for (int64_t s = 0; s < n_out / GK_GEMM_STRIP; s++) {
        const uint8_t *rows = (const uint8_t *)src + (size_t)s * GK_GEMM_STRIP * nb_row;
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *o = (uint8_t *)dst + (size_t)s * GK_GEMM_STRIP * nb_row +
                         (size_t)b * GK_GEMM_STRIP * (size_t)ps.bsz;
            const uint8_t *blk = rows + (size_t)b * ps.bsz;
            if (ps.lead >= 0) {
                for (int r = 0; r < GK_GEMM_STRIP; r++)
                    memcpy(o + 2 * r, blk + (size_t)r * nb_row + ps.lead, 2);
                o += 2 * GK_GEMM_STRIP;
            }
            if (ps.unit != 4) { /* whole blocks, row after row */
                for (int r = 0; r < GK_GEMM_STRIP; r++, o += ps.unit)
                    memcpy(o, blk + (size_t)r * nb_row + ps.data, (size_t)ps.unit);
                continue;
            }
            /* a dword of the 16 rows at a time: the output is written in order */
            for (int i = 0; i < ps.ndata / 4; i++, o += 4 * GK_GEMM_STRIP)
                for (int r = 0; r < GK_GEMM_STRIP; r++) {
                    uint32_t v;
                    memcpy(&v, blk + (size_t)r * nb_row + ps.data + 4 * i, 4);
                    v ^= flip;
                    memcpy(o + 4 * r, &v, 4);
                }
        }
    }
}

/* --------------------------------------------------------------- driver --- */

/* Rows per work item: a strip of weights that one thread runs against a chunk
 * of tokens (for decode, 16 rows of every matrix per item, or the kernels' block:
 * 64 rows of packed f16 and bf16). gk_sgemm's items are strips of 16. */
#define ROW_BLOCK GK_GEMM_STRIP

static int64_t block_rows(const gk_gemm_kernels *k) {
    return k->block ? k->block : ROW_BLOCK;
}

typedef struct {
    float *y;
    const uint8_t *w;
    size_t nb_row;
    int64_t n_out, n_rb; /* rows, row blocks */
} gemm_out;

typedef struct {
    gk_pool *pool;
    const gk_gemm_kernels *k;
    gemm_out out[GK_MATMUL_MAX];
    int n_outs;
    int64_t n_in;
    int T;
    const float *x;
    uint8_t *xq; /* packed activations, or x itself */
    size_t xs;   /* bytes between packed rows */
    int64_t tc;  /* tokens per chunk */
    int geglu;   /* -1, or the gk_gelu of out[2i] = GELU(out[2i]) * out[2i + 1] (both
                    outputs' strip per item, then the GeGLU of what the item made) */
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
/* Strip rb of one output for tokens t0..t1 (rows r0..r1). */
static void gemm_item(const gemm_job *j, const gemm_out *o, int64_t rb, int64_t t0, int64_t t1) {
    const gk_gemm_kernels *k = j->k;
    const int64_t rows = block_rows(k);
    int64_t r0 = rb * rows, r1 = r0 + rows < o->n_out ? r0 + rows : o->n_out;
    if (j->T == 1 && k->one) {
        k->one(j->n_in, o->w + (size_t)r0 * o->nb_row, o->nb_row, (int)(r1 - r0), j->xq, o->y + r0);
        return;
    }
    if (k->strip) {
        k->strip(j->n_in, o->w + (size_t)r0 * o->nb_row, o->nb_row, (int)(r1 - r0),
                 j->xq + (size_t)t0 * j->xs, j->xs, (int)(t1 - t0),
                 o->y + (size_t)t0 * o->n_out + r0, o->n_out);
        return;
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

/* Items are (token chunk, row block) pairs, token-chunk major: a thread takes a
 * run of row strips (the outputs' one after the other) and sweeps each 4-row tile
 * over the chunk's tokens while the tile sits in L1 and the chunk in L2. With
 * GeGLU an item is a strip of a pair of outputs (their row counts are equal), and
 * its GeGLU follows while both are in L1. */
static void gemm_part(void *arg, int ith, int nth) {
    gemm_job *j = arg;
    const int step = j->geglu >= 0 ? 2 : 1;
    int64_t n_rb = 0;
    for (int i = 0; i < j->n_outs; i += step) n_rb += j->out[i].n_rb;
    int64_t n_tc = (j->T + j->tc - 1) / j->tc;
    gk_share s;
    gk_share_start(&s, j->pool, n_rb * n_tc, ith, nth);
    for (int64_t lo, hi; gk_share_next(&s, &lo, &hi);)
        for (int64_t item = lo; item < hi; item++) {
            int64_t tc = item / n_rb, rb = item % n_rb;
            int64_t t0 = tc * j->tc, t1 = t0 + j->tc < j->T ? t0 + j->tc : j->T;
            int i = 0;
            while (rb >= j->out[i].n_rb) rb -= j->out[i].n_rb, i += step;
            const gemm_out *a = &j->out[i];
            gemm_item(j, a, rb, t0, t1);
            if (step == 1) continue;
            const gemm_out *b = &j->out[i + 1];
            gemm_item(j, b, rb, t0, t1);
            const int64_t rows = block_rows(j->k);
            int64_t r0 = rb * rows, r1 = r0 + rows < a->n_out ? r0 + rows : a->n_out;
            for (int64_t t = t0; t < t1; t++)
                gk_geglu_rows(a->y + (size_t)t * a->n_out + r0, b->y + (size_t)t * b->n_out + r0,
                              r1 - r0, (gk_gelu)j->geglu);
        }
}

static void gemm_run(gk_pool *pool, const gk_gemm_kernels *k, const gemm_out *outs, int n_outs,
                     const float *x, int64_t n_in, int T, void *qbuf, int geglu) {
    gemm_job j = {
        .pool = pool, .k = k, .n_outs = n_outs, .n_in = n_in, .T = T, .x = x, .geglu = geglu};
    for (int i = 0; i < n_outs; i++) {
        j.out[i] = outs[i];
        j.out[i].n_rb = (outs[i].n_out + block_rows(k) - 1) / block_rows(k);
    }
    if (k->pack) {
        j.xq = qbuf;
        j.xs = k->xrow(n_in);
        /* one token's row: packed here (a microsecond or so), not in a pass of the pool */
        gk_pool_run(T > 1 ? pool : NULL, gemm_pack, &j);
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
    gemm_run(pool, k, &o, 1, x, n_in, T, qbuf, -1);
}

/* --------------------------------------------- f32 products, any layout --- */

/* The f32 kernels, or on a CPU without them one dot product per element (the
 * f32 vec_dot, as gk_matmul's fallback runs). */
static void dot_tile(int64_t n, const uint8_t *w, size_t nb_row, const uint8_t *x, size_t xs,
                     float *y, int64_t ldy) {
    (void)nb_row, (void)xs, (void)ldy;
    y[0] = gk_type_traits_of(GK_TYPE_F32)->vec_dot(n, w, x);
}

static const gk_gemm_kernels dot_kernels = {.rmax = 1, .nmax = 1, .tile = {{dot_tile}}};

typedef struct {
    const gk_gemm_kernels *k;
    float *C;
    int64_t ldc;
    const float *a, *b; /* M rows and N rows of K, lda and ldb apart */
    int64_t lda, ldb;
    int64_t M, N, K, tc; /* tc: rows of a per work item */
    bool acc;
} sgemm_job;

/* Rows of a per work item at most: the item's partial sums (this many x
 * ROW_BLOCK floats) live on the thread's stack. */
#define SG_TC 128

/* Items are (chunk of a's rows, block of b's rows) pairs, as gemm_part's: per
 * K chunk the kernels write the item's partial sums into a buffer, which is
 * then added to C (or, for the first chunk without acc, copied). */
static void sgemm_part(void *arg, int ith, int nth) {
    sgemm_job *j = arg;
    const gk_gemm_kernels *k = j->k;
    float part[SG_TC * ROW_BLOCK];
    int64_t n_rb = (j->N + ROW_BLOCK - 1) / ROW_BLOCK, n_tc = (j->M + j->tc - 1) / j->tc, lo, hi;
    const size_t nb_b = (size_t)j->ldb * sizeof(float), nb_a = (size_t)j->lda * sizeof(float);
    gk_split(n_rb * n_tc, ith, nth, &lo, &hi);
    for (int64_t item = lo; item < hi; item++) {
        int64_t tc = item / n_rb, rb = item % n_rb;
        int64_t r0 = rb * ROW_BLOCK, r1 = r0 + ROW_BLOCK < j->N ? r0 + ROW_BLOCK : j->N;
        int64_t t0 = tc * j->tc, t1 = t0 + j->tc < j->M ? t0 + j->tc : j->M;
        for (int64_t k0 = 0; k0 < j->K; k0 += GK_SGEMM_KC) {
            int64_t kn = j->K - k0 < GK_SGEMM_KC ? j->K - k0 : GK_SGEMM_KC;
            const uint8_t *b = (const uint8_t *)(j->b + r0 * j->ldb + k0);
            const uint8_t *a = (const uint8_t *)(j->a + t0 * j->lda + k0);
            if (k->strip) {
                k->strip(kn, b, nb_b, (int)(r1 - r0), a, nb_a, (int)(t1 - t0), part, ROW_BLOCK);
            } else {
                for (int64_t r = 0; r < r1 - r0; r += k->rmax) {
                    int R = r1 - r0 - r < k->rmax ? (int)(r1 - r0 - r) : k->rmax;
                    for (int64_t t = 0; t < t1 - t0; t += k->nmax) {
                        int N = t1 - t0 - t < k->nmax ? (int)(t1 - t0 - t) : k->nmax;
                        k->tile[R - 1][N - 1](kn, b + r * nb_b, nb_b, a + t * nb_a, nb_a,
                                              part + t * ROW_BLOCK + r, ROW_BLOCK);
                    }
                }
            }
            bool add = j->acc || k0 > 0;
            for (int64_t t = t0; t < t1; t++) {
                float *c = j->C + t * j->ldc;
                const float *p = part + (t - t0) * ROW_BLOCK - r0;
                if (add)
                    for (int64_t r = r0; r < r1; r++) c[r] += p[r];
                else
                    for (int64_t r = r0; r < r1; r++) c[r] = p[r];
            }
        }
    }
}

/* The outer-product tiles: the build for this CPU. */
#define NN_FN gemm_nn_generic
static void gemm_nn_generic(const gk_gemm_nn_job *j, int64_t lo, int64_t hi);
#include "kernels/gemm_nn_impl.h"

typedef void (*nn_fn)(const gk_gemm_nn_job *j, int64_t lo, int64_t hi);

static nn_fn nn_tiles(void) {
#if defined(__x86_64__) || defined(_M_X64)
    switch (isa()) {
    case ISA_AVX512:
        return gk_gemm_nn_avx512;
    case ISA_AVX2:
        return gk_gemm_nn_avx2;
    }
#endif
    return gemm_nn_generic;
}

static void nn_part(void *arg, int ith, int nth) {
    const gk_gemm_nn_job *j = arg;
    nn_fn f = nn_tiles();
    int64_t items = ((j->M + 3) / 4) * ((j->N + 63) / 64), lo, hi;
    gk_split(items, ith, nth, &lo, &hi);
    /* K in chunks, so that a 16-column strip of B (16 KiB) stays in L1 across
     * the row tiles; the chunks are summed in order, whatever nth is */
    for (int64_t k0 = 0; k0 < j->K; k0 += GK_SGEMM_KC_NN) {
        gk_gemm_nn_job c = *j;
        c.A = j->A + k0;
        c.B = j->B + k0 * j->ldb;
        c.K = j->K - k0 < GK_SGEMM_KC_NN ? j->K - k0 : GK_SGEMM_KC_NN;
        c.acc = j->acc || k0 > 0;
        f(&c, lo, hi);
    }
}

size_t gk_sgemm_scratch(const gk_sgemm *g) {
    return g->a_trans && g->M > 0 && g->K > 0 ? (size_t)g->M * (size_t)g->K : 0;
}

void gk_sgemm_run(gk_pool *pool, const gk_sgemm *g, float *scratch) {
    if (g->M <= 0 || g->N <= 0) return;
    if (g->K <= 0) {
        if (!g->acc)
            for (int64_t m = 0; m < g->M; m++)
                memset(g->C + m * g->ldc, 0, (size_t)g->N * sizeof(float));
        return;
    }
    const float *a = g->A;
    int64_t lda = g->lda;
    if (g->a_trans) { /* K x M -> M x K */
        gk_transpose(pool, scratch, g->A, g->K, g->M, g->lda);
        a = scratch, lda = g->K;
    }
    if (!g->b_trans) {
        gk_gemm_nn_job j = {.C = g->C,
                            .ldc = g->ldc,
                            .A = a,
                            .lda = lda,
                            .B = g->B,
                            .ldb = g->ldb,
                            .M = g->M,
                            .N = g->N,
                            .K = g->K,
                            .acc = g->acc};
        gk_pool_run(pool, nn_part, &j);
        return;
    }
    const gk_gemm_kernels *k = gk_gemm_kernels_of(GK_TYPE_F32);
    sgemm_job j = {.k = k ? k : &dot_kernels,
                   .C = g->C,
                   .ldc = g->ldc,
                   .a = a,
                   .lda = lda,
                   .b = g->B,
                   .ldb = g->ldb,
                   .M = g->M,
                   .N = g->N,
                   .K = g->K,
                   .acc = g->acc};
    /* a whole number of tiles; the partial sums' buffer holds SG_TC rows */
    j.tc = SG_TC / j.k->nmax * j.k->nmax;
    gk_pool_run(pool, sgemm_part, &j);
}

typedef struct {
    float *dst;
    const float *src;
    int64_t rows, cols, lds;
} transpose_job;

/* 32 x 32 blocks, split over the column blocks (the rows of dst). */
static void transpose_part(void *arg, int ith, int nth) {
    transpose_job *j = arg;
    int64_t lo, hi;
    gk_split((j->cols + 31) / 32, ith, nth, &lo, &hi);
    for (int64_t cb = lo * 32; cb < hi * 32 && cb < j->cols; cb += 32) {
        int64_t c1 = cb + 32 < j->cols ? cb + 32 : j->cols;
        for (int64_t rb = 0; rb < j->rows; rb += 32) {
            int64_t r1 = rb + 32 < j->rows ? rb + 32 : j->rows;
            for (int64_t c = cb; c < c1; c++)
                for (int64_t r = rb; r < r1; r++) j->dst[c * j->rows + r] = j->src[r * j->lds + c];
        }
    }
}

void gk_transpose(gk_pool *pool, float *dst, const float *src, int64_t rows, int64_t cols,
                  int64_t lds) {
    if (rows <= 0 || cols <= 0) return;
    transpose_job j = {.dst = dst, .src = src, .rows = rows, .cols = cols, .lds = lds};
    gk_pool_run(pool, transpose_part, &j);
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
        gk_pool_run(T > 1 ? pool : NULL, matmul_convert, &j); /* one token's: here */
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
        gemm_run(pool, k, &o, 1, x, n_in, T, qbuf, -1);
    } else {
        matmul_vec_dot(pool, y, w, type, nb_row, n_out, x, n_in, T, qbuf);
    }
}

/* ------------------------------------------------ decode's column chunks --- */

typedef struct {
    float *const *y;
    const uint8_t *w;
    size_t nb_row, coff;     /* bytes from one chunk's first column to the next's */
    int64_t n_out, n_rb, cw; /* rows, row blocks, a chunk's columns */
    uint8_t *xq;             /* the chunks' packed activations, xs bytes apart, or x itself */
    size_t xs;
} chunks_task;

typedef struct {
    gk_pool *pool;
    const gk_gemm_kernels *k;
    chunks_task t[GK_MATMUL_MAX];
    int n, nk;
    bool packed; /* packed weights: strips of 16 rows */
} chunks_job;

/* The products' row blocks, one after the other, shared over the threads; each
 * row (float weights) or strip of 16 rows (packed activations or packed weights:
 * the strips' sums of 16 rows at once) runs chunk after chunk, so a thread reads
 * its rows each from start to end. */
static void chunks_part(void *arg, int ith, int nth) {
    chunks_job *j = arg;
    int64_t n_rb = 0;
    for (int i = 0; i < j->n; i++) n_rb += j->t[i].n_rb;
    gk_share s;
    gk_share_start(&s, j->pool, n_rb, ith, nth);
    for (int64_t lo, hi; gk_share_next(&s, &lo, &hi);)
        for (int64_t item = lo; item < hi; item++) {
            int i = 0;
            int64_t rb = item;
            while (rb >= j->t[i].n_rb) rb -= j->t[i].n_rb, i++;
            const chunks_task *t = &j->t[i];
            const int64_t rows = block_rows(j->k);
            int64_t r0 = rb * rows, r1 = r0 + rows < t->n_out ? r0 + rows : t->n_out;
            if (!j->k->pack && !j->packed && !j->k->lanes) {
                for (int64_t r = r0; r < r1; r++)
                    for (int ch = 0; ch < j->nk; ch++)
                        j->k->one(t->cw, t->w + (size_t)r * t->nb_row + ch * t->coff, t->nb_row, 1,
                                  t->xq + (size_t)ch * t->xs, t->y[ch] + r);
                continue;
            }
            for (int ch = 0; ch < j->nk; ch++)
                j->k->one(t->cw, t->w + (size_t)r0 * t->nb_row + ch * t->coff, t->nb_row,
                          (int)(r1 - r0), t->xq + (size_t)ch * t->xs, t->y[ch] + r0);
        }
}

bool gk_matmul_chunks_many(gk_pool *pool, const gk_chunks_out *outs, int n, gk_dtype type, int k,
                           void *qbuf, size_t qbuf_size) {
    const gk_gemm_kernels *kk = gk_gemm_kernels_of(type);
    if (!kk || !kk->one || k < 1 || n < 1 || n > GK_MATMUL_MAX) return false;
    if (kk->pack && ((uintptr_t)qbuf & 63)) return false;
    const gk_dtype base = type & ~GK_GEMM_PACKED;
    const int64_t bs = gk_type_traits_of(base)->blck_size;
    chunks_job j = {.pool = pool, .k = kk, .n = n, .nk = k, .packed = (type & GK_GEMM_PACKED) != 0};
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        const gk_chunks_out *o = &outs[i];
        if (o->n_in % k || o->n_out <= 0) return false;
        const int64_t cw = o->n_in / k;
        if (cw % bs || (j.packed && cw % gk_gemm_pack_values(type))) return false;
        chunks_task *t = &j.t[i];
        *t = (chunks_task){.y = o->y,
                           .w = o->w,
                           .nb_row = o->nb_row,
                           .coff = gk_gemm_col_offset(type, cw),
                           .n_out = o->n_out,
                           .n_rb = (o->n_out + block_rows(kk) - 1) / block_rows(kk),
                           .cw = cw};
        if (kk->pack) {
            t->xs = (kk->xrow(cw) + 63) & ~(size_t)63;
            if (used + t->xs * (size_t)k > qbuf_size) return false;
            t->xq = (uint8_t *)qbuf + used;
            used += t->xs * (size_t)k;
        } else {
            t->xq = (uint8_t *)o->x;
            t->xs = (size_t)cw * sizeof(float);
        }
    }
    /* one token: packed here (microseconds), so that the call is one pass of the
     * pool, as many as grok plan counts for it */
    for (int i = 0; kk->pack && i < n; i++)
        for (int ch = 0; ch < k; ch++)
            kk->pack(outs[i].x + ch * j.t[i].cw, j.t[i].cw, j.t[i].xq + (size_t)ch * j.t[i].xs);
    gk_pool_run(pool, chunks_part, &j);
    return true;
}

bool gk_matmul_chunks(gk_pool *pool, float *const *y, const void *w, gk_dtype type, size_t nb_row,
                      int64_t n_out, const float *x, int64_t n_in, int k, void *qbuf,
                      size_t qbuf_size) {
    const gk_chunks_out o = {
        .y = y, .w = w, .nb_row = nb_row, .n_out = n_out, .x = x, .n_in = n_in};
    return gk_matmul_chunks_many(pool, &o, 1, type, k, qbuf, qbuf_size);
}

bool gk_matmul_many(gk_pool *pool, const gk_matmul_out *outs, int n, gk_dtype type, const float *x,
                    int64_t n_in, int T, void *qbuf, int geglu) {
    const gk_gemm_kernels *k = gk_gemm_kernels_of(type);
    if (!k || n < 1 || n > GK_MATMUL_MAX || (geglu >= 0 && n % 2)) return false;
    gemm_out o[GK_MATMUL_MAX];
    for (int i = 0; i < n; i++) {
        if (geglu >= 0 && i % 2 && outs[i].n_out != outs[i - 1].n_out) return false;
        o[i] = (gemm_out){
            .y = outs[i].y, .w = outs[i].w, .nb_row = outs[i].nb_row, .n_out = outs[i].n_out};
    }
    if (T > 0) gemm_run(pool, k, o, n, x, n_in, T, qbuf, geglu);
    return true;
}

static void matmul2(gk_pool *pool, float *y1, const void *w1, gk_dtype type1, size_t nb_row1,
                    float *y2, const void *w2, gk_dtype type2, size_t nb_row2, int64_t n_out,
                    const float *x, int64_t n_in, int T, void *qbuf, int geglu) {
    if (n_out <= 0 || T <= 0) return;
    const gk_matmul_out o[2] = {{.y = y1, .w = w1, .nb_row = nb_row1, .n_out = n_out},
                                {.y = y2, .w = w2, .nb_row = nb_row2, .n_out = n_out}};
    if (type2 == type1 && gk_matmul_many(pool, o, 2, type1, x, n_in, T, qbuf, geglu)) return;
    gk_matmul(pool, y1, w1, type1, nb_row1, n_out, x, n_in, T, qbuf);
    gk_matmul(pool, y2, w2, type2, nb_row2, n_out, x, n_in, T, qbuf);
    if (geglu >= 0) gk_geglu(pool, y1, y2, n_out * T, (gk_gelu)geglu);
}

void gk_matmul2(gk_pool *pool, float *y1, const void *w1, gk_dtype type1, size_t nb_row1, float *y2,
                const void *w2, gk_dtype type2, size_t nb_row2, int64_t n_out, const float *x,
                int64_t n_in, int T, void *qbuf) {
    matmul2(pool, y1, w1, type1, nb_row1, y2, w2, type2, nb_row2, n_out, x, n_in, T, qbuf, -1);
}

void gk_matmul2_geglu(gk_pool *pool, float *y1, const void *w1, gk_dtype type1, size_t nb_row1,
                      float *y2, const void *w2, gk_dtype type2, size_t nb_row2, int64_t n_out,
                      const float *x, int64_t n_in, int T, void *qbuf, gk_gelu kind) {
    matmul2(pool, y1, w1, type1, nb_row1, y2, w2, type2, nb_row2, n_out, x, n_in, T, qbuf,
            (int)kind);
}
