/*
 * gemm.h - the batched matrix product behind gk_matmul (kernels/ops.h):
 * Y[t][o] = sum_i W[o][i] * X[t][i] with the weights in their file type and
 * the activations converted once per batch into a packed form of the weight
 * type's activation type (f32 rows for f32/f16/bf16 weights; int8 values and
 * fp32 scales, ggml's Q8_0 quantization, for Q8_0/Q4_0 weights; Q8_K blocks for
 * the k-quants, which have GEMM kernels only with AVX-512: gemm_avx512.c).
 *
 * Work is cut into tiles of R weight rows x N tokens held in registers (or, with
 * AVX-512, strips of 16 rows unpacked with the rows as vector lanes), and
 * those into cache blocks (a strip of rows against a chunk of tokens), split
 * over the thread pool.
 *
 * Batch invariance: every output element has its own vector accumulator, fed
 * the same products in the same order and reduced by the same horizontal sum
 * whatever the tile shape (R, N) that computed it. So a token's outputs are
 * bit-identical whatever batch it sits in, at any position, with any thread
 * count; decode (T = 1) runs the same arithmetic through 1-token tiles. Results
 * differ from the scalar reference dots (dtype.c) only by summation order.
 */
#ifndef GK_GEMM_H
#define GK_GEMM_H

#include "base/base.h"
#include "tensor/dtype.h"

/* y[t * ldy + r] = dot(weight row r, activation row t) for r < R, t < N;
 * weight rows nb_row bytes apart, packed activation rows xs bytes apart. */
typedef void (*gk_gemm_tile_fn)(int64_t n, const uint8_t *w, size_t nb_row, const uint8_t *x,
                                size_t xs, float *y, int64_t ldy);

#define GK_GEMM_RMAX 4
#define GK_GEMM_NMAX 6

/* The GEMM kernels of one weight type on one instruction set. */
typedef struct gk_gemm_kernels {
    int rmax, nmax; /* the main tile shape */
    /* Packed bytes of one activation row of n inputs; pack == NULL means the
     * f32 rows are read as they are (xs = 4 n). */
    size_t (*xrow)(int64_t n);
    void (*pack)(const float *x, int64_t n, uint8_t *dst);
    gk_gemm_tile_fn tile[GK_GEMM_RMAX][GK_GEMM_NMAX]; /* [R - 1][N - 1] */
    /* Strip kernels instead of tiles (when not NULL): R <= rmax rows (rmax =
     * GK_GEMM_STRIP) against T tokens of packed activations, as the tiles do. */
    void (*strip)(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x, size_t xs,
                  int T, float *y, int64_t ldy);
    /* Decode (when not NULL): one token against R <= GK_GEMM_STRIP rows, the
     * same arithmetic per element as the tiles (or strip) give it in a batch. */
    void (*one)(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x, float *y);
} gk_gemm_kernels;

/* Rows of a strip kernel's call (the work items' row blocks). */
#define GK_GEMM_STRIP 16

/* Kernels for a weight type on the fastest instruction set this CPU has, or NULL
 * when the type has none (then gk_matmul uses the type's vec_dot per row). */
const gk_gemm_kernels *gk_gemm_kernels_of(gk_dtype type);
/* "avx512-vnni", "avx2" or "none". */
const char *gk_gemm_isa(void);

/* The GEMM with the given kernels (the tests run every instruction set). */
void gk_gemm_with(gk_pool *pool, const gk_gemm_kernels *k, float *y, const void *w, size_t nb_row,
                  int64_t n_out, const float *x, int64_t n_in, int T, void *qbuf);

/* Kernel sets per instruction set (NULL entries: no GEMM for that type). */
const gk_gemm_kernels *gk_gemm_kernels_avx2(gk_dtype type);
const gk_gemm_kernels *gk_gemm_kernels_avx512(gk_dtype type);

#endif
