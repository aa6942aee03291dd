/*
 * gemm_simd.h - what the GEMM kernels of every instruction set share
 * (gemm_impl.h's tiles for AVX2, gemm_avx512.c's tiles and strips): the kinds of
 * weights, the one 8-lane horizontal sum, the prefetch of the next tile's rows
 * and the tables of tile functions.
 */
#ifndef GK_GEMM_SIMD_H
#define GK_GEMM_SIMD_H

#include "kernels/gemm.h"

#include <immintrin.h>

#define AI static inline __attribute__((always_inline))

enum { K_F32, K_F16, K_BF16, K_Q8, K_Q4 };

/* The one horizontal sum every element goes through: (lo + hi) halves, then
 * pairs, then the last two. */
AI float hsum8(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* Prefetch the next R-row tile while this one runs (rows are contiguous in a
 * matrix): for one or two tokens the weights stream from memory, and R short
 * streams defeat the hardware prefetcher. `done` bytes of each row are read. */
AI void prefetch_next(const int R, const uint8_t *w, size_t nb_row, size_t done, int step) {
    const char *next = (const char *)w + (size_t)R * nb_row + done * (size_t)R;
    for (int p = 0; p < R * step; p += 64) _mm_prefetch(next + p, _MM_HINT_T0);
}

/* Tile tables: DEF_KIND(body, kind) defines tile_<kind>_<R>_<N> for R <= 4 and
 * N <= GEMM_NINST (4 or 6, the includer's) from the always-inline body, and
 * TABLE(kind) is gk_gemm_kernels' tile[][] of them. */
#define TILE_ARGS                                                                                  \
    int64_t n, const uint8_t *w, size_t nb_row, const uint8_t *x, size_t xs, float *y, int64_t ldy
#define DEF_TILE(body, kind, R, N)                                                                 \
    static void tile_##kind##_##R##_##N(TILE_ARGS) {                                               \
        body(K_##kind, R, N, n, w, nb_row, x, xs, y, ldy);                                         \
    }
#define DEF_ROW(body, kind, R)                                                                     \
    DEF_TILE(body, kind, R, 1)                                                                     \
    DEF_TILE(body, kind, R, 2)                                                                     \
    DEF_TILE(body, kind, R, 3) DEF_TILE(body, kind, R, 4) DEF_ROW_WIDE(body, kind, R)
#if GEMM_NINST > 4
#define DEF_ROW_WIDE(body, kind, R) DEF_TILE(body, kind, R, 5) DEF_TILE(body, kind, R, 6)
#define ROW_WIDE(kind, R) , tile_##kind##_##R##_5, tile_##kind##_##R##_6
#else
#define DEF_ROW_WIDE(body, kind, R)
#define ROW_WIDE(kind, R)
#endif
#define DEF_KIND(body, kind)                                                                       \
    DEF_ROW(body, kind, 1) DEF_ROW(body, kind, 2) DEF_ROW(body, kind, 3) DEF_ROW(body, kind, 4)
#define ROW(kind, R)                                                                               \
    {                                                                                              \
        tile_##kind##_##R##_1, tile_##kind##_##R##_2, tile_##kind##_##R##_3,                       \
            tile_##kind##_##R##_4 ROW_WIDE(kind, R)                                                \
    }
#define TABLE(kind)                                                                                \
    { ROW(kind, 1), ROW(kind, 2), ROW(kind, 3), ROW(kind, 4) }

#endif
