/*
 * gemm.h - the batched matrix product behind gk_matmul (kernels/ops.h):
 * Y[t][o] = sum_i W[o][i] * X[t][i] with the weights in their file type and
 * the activations converted once per batch into a packed form of the weight
 * type's activation type (f32 rows for f32/f16/bf16 weights; int8 values and
 * fp32 scales, ggml's Q8_0 quantization, for Q8_0/Q4_0 weights; Q8_K blocks for
 * the k-quants, which have GEMM kernels only with AVX-512: gemm_avx512.c).
 *
 * Work is cut into tiles of R weight rows x N tokens held in registers (or, with
 * AVX-512, strips of 16 rows unpacked with the rows as vector lanes, and f16 and
 * bf16 rows as the lanes of their vectors: strips of 64), and those into cache
 * blocks (a strip of rows against a chunk of tokens), split over the thread pool.
 *
 * Batch invariance: every output element has its own vector accumulator (or
 * lane: f16 and bf16 with AVX-512, one chain of fmas per element), fed the same
 * products in the same order and reduced by the same horizontal sum whatever
 * the tile shape (R, N) that computed it. So a token's outputs are bit-identical
 * whatever batch it sits in, at any position, with any thread count; decode
 * (T = 1) runs the same arithmetic through 1-token tiles. Results differ from
 * the scalar reference dots (dtype.c) only by summation order.
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
    /* Decode (when not NULL): one token against R <= block rows, the same
     * arithmetic per element as the tiles (or strip) give it in a batch. */
    void (*one)(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x, float *y);
    /* Rows of a work item, a strip or one call (0: GK_GEMM_STRIP). */
    int block;
    /* The rows are the vector lanes (f16 and bf16 with AVX-512): a call takes a
     * block of rows at once, also rows as they are (gk_matmul_chunks). */
    bool lanes;
} gk_gemm_kernels;

/* Rows of a strip kernel's call (the work items' row blocks). */
#define GK_GEMM_STRIP 16
/* Rows of a packed block of f16 or bf16 weights (the rows as vector lanes). */
#define GK_GEMM_LANES 64

/* Kernels for a weight type on the fastest instruction set this CPU has, or NULL
 * when the type has none (then gk_matmul uses the type's vec_dot per row). With
 * GK_GEMM_PACKED or'ed into the type: the kernels of its packed layout. */
const gk_gemm_kernels *gk_gemm_kernels_of(gk_dtype type);

/* Packed weights (gk_gemm_pack): the rows rearranged, once, as the strip kernels
 * read them, so that decode reads each strip as one stream of whole vectors with
 * nothing to gather or transpose. With AVX-512 VNNI these types have the layout,
 * per strip of 16 rows, per block, 16 blocks' bytes:
 *   - Q8_0, Q4_0, Q4_K, Q5_K, Q6_K (a block: a k-quant's super-block): first the 16
 *     rows' fp16 scale d where the block has one 2-byte field the kernels read
 *     alone (Q8_0, Q4_0: its first; Q6_K: its last), then the rest of the block's
 *     bytes four at a time, the 16 rows' bytes 4k..4k+3 in one 64-byte vector (row
 *     r at 4 r), for k = 0, 1, ... (Q8_0's quant bytes plus 128);
 *   - F32 (a block: 16 values): the 16 rows' blocks one after the other, so that
 *     decode runs a chain of fmas for each of the 16 rows at once;
 *   - F16, BF16: strips of GK_GEMM_LANES (64) rows, and in a strip the 64 rows'
 *     value of input 0, then of input 1, ...: the rows are the vector lanes, one
 *     input broadcast against 4 vectors of them (gemm_avx512.c).
 * A matrix keeps its size, and its strip s starts at s * rows * nb_row (rows:
 * gk_gemm_pack_rows); a column chunk of every row (gk_matmul_chunks; forward.c's
 * chunks at T > 1), which must start on a block (gk_gemm_pack_values), starts
 * `rows` times further into the strip than into a row. Calls on packed weights
 * or GK_GEMM_PACKED into their type (gk_matmul, gk_matmul2, gk_matmul_chunks);
 * the products are the same bits as on the rows they were packed from. */
#define GK_GEMM_PACKED 0x1000
/* Rows a packed strip of `type` holds (GK_GEMM_PACKED allowed). */
static inline int gk_gemm_pack_rows(gk_dtype type) {
    type &= ~GK_GEMM_PACKED;
    return type == GK_TYPE_F16 || type == GK_TYPE_BF16 ? GK_GEMM_LANES : GK_GEMM_STRIP;
}
/* Bytes from a row's (or a packed strip's) start to its column `col` (a block
 * boundary) for weights of `type` (GK_GEMM_PACKED allowed): a column chunk's
 * offset. */
static inline size_t gk_gemm_col_offset(gk_dtype type, int64_t col) {
    return gk_row_size(type & ~GK_GEMM_PACKED, col) *
           (type & GK_GEMM_PACKED ? (size_t)gk_gemm_pack_rows(type) : 1);
}
/* Whether gk_gemm_pack can pack an n_out x n_in matrix of type (the CPU's kernels
 * have a packed layout for it, n_out is a multiple of gk_gemm_pack_rows, and
 * GK_NO_PACK is not set). */
bool gk_gemm_packable(gk_dtype type, int64_t n_out, int64_t n_in);
/* The values of a packed block of type (GK_GEMM_PACKED allowed): packed columns
 * and column chunks are multiples of it; 0 for a type without the layout. */
int64_t gk_gemm_pack_values(gk_dtype type);
/* Packs n_out rows of n_in inputs (nb_row bytes apart) into dst (n_out * nb_row
 * bytes; not overlapping src). */
void gk_gemm_pack(gk_dtype type, const void *src, size_t nb_row, int64_t n_out, int64_t n_in,
                  void *dst);
/* "avx512-vnni", "avx2" or "none". */
const char *gk_gemm_isa(void);

/* The GEMM with the given kernels (the tests run every instruction set). */
void gk_gemm_with(gk_pool *pool, const gk_gemm_kernels *k, float *y, const void *w, size_t nb_row,
                  int64_t n_out, const float *x, int64_t n_in, int T, void *qbuf);

/* f32 products in any layout (the backward pass of training runs on these):
 *
 *   C[M][N] (+)= op(A) op(B),   op(A) M x K, op(B) K x N,
 *
 * A stored as M x K rows lda apart, or with a_trans as K x M (A holds op(A)
 * transposed); B stored as K x N rows ldb apart, or with b_trans as N x K (as
 * gk_matmul's weights: Y = X W^T is A = X, B = W with b_trans). With acc, C is
 * added to rather than overwritten. A stored transposed is first copied into
 * scratch (gk_sgemm_scratch floats) so that its rows run along K. B is never
 * copied: its layout picks the kernels.
 *   - B as N x K: gk_matmul's f32 tiles (dot products along K, one horizontal
 *     sum per element), over K in chunks of GK_SGEMM_KC summed in order into C.
 *   - B as K x N: outer-product tiles (gemm_nn_impl.h: 4 rows of A broadcast
 *     against 64 columns of B, no horizontal sums), over K in chunks of
 *     GK_SGEMM_KC_NN. The backward's dX = dY W and dW += dY^T X both take this
 *     form; with K as short as a layer's width (128 in a small model), it runs
 *     about 1.3 to 2 times faster than the dot-product tiles on the operands
 *     transposed.
 * Either way every element of C is the same sum, in the same order, whatever
 * the thread count (training's results do not depend on it). */
typedef struct gk_sgemm {
    float *C;
    int64_t ldc;
    const float *A;
    int64_t lda;
    bool a_trans;
    const float *B;
    int64_t ldb;
    bool b_trans;
    int64_t M, N, K;
    bool acc;
} gk_sgemm;

#define GK_SGEMM_KC 512
#define GK_SGEMM_KC_NN 256

/* Floats of scratch that gk_sgemm_run needs for g (0 unless A is transposed). */
size_t gk_sgemm_scratch(const gk_sgemm *g);
void gk_sgemm_run(gk_pool *pool, const gk_sgemm *g, float *scratch);

/* dst[c][r] = src[r][c] for a rows x cols matrix (src rows lds apart, dst rows
 * rows apart), split over the pool. */
void gk_transpose(gk_pool *pool, float *dst, const float *src, int64_t rows, int64_t cols,
                  int64_t lds);

/* One K chunk of the outer-product form: C[M][N] (+)= A[M][K] B[K][N], rows
 * lda, ldb, ldc apart. Work items are 4-row x 64-column tiles of C, column-tile
 * major; a tile function runs items [lo, hi). */
typedef struct gk_gemm_nn_job {
    float *C;
    int64_t ldc;
    const float *A, *B;
    int64_t lda, ldb;
    int64_t M, N, K;
    bool acc;
} gk_gemm_nn_job;
void gk_gemm_nn_avx2(const gk_gemm_nn_job *j, int64_t lo, int64_t hi);
void gk_gemm_nn_avx512(const gk_gemm_nn_job *j, int64_t lo, int64_t hi);

/* Kernel sets per instruction set (NULL entries: no GEMM for that type). */
const gk_gemm_kernels *gk_gemm_kernels_avx2(gk_dtype type);
const gk_gemm_kernels *gk_gemm_kernels_avx512(gk_dtype type);
const gk_gemm_kernels *gk_gemm_kernels_avx512_packed(gk_dtype type);

#endif
