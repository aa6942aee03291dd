/*
 * attn_avx2.c - gk_attn_wsum with AVX2/FMA/F16C (see attn.c): 64 outputs at a
 * time in 8 accumulators, one fused multiply-add per key and lane, the same
 * steps per element as the scalar reference.
 */
#include "kernels/ops.h"

#include <immintrin.h>

static inline __m256 load8(gk_dtype type, const uint8_t *r, int i) {
    if (type == GK_TYPE_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + 2 * i)));
    return _mm256_loadu_ps((const float *)r + i);
}

void gk_attn_wsum_avx2(float *out, const void *V, size_t row, gk_dtype type, const float *w,
                       int64_t nk, int hd) {
    const uint8_t *v = V;
    int i0 = 0;
    for (; i0 + 64 <= hd; i0 += 64) {
        __m256 acc[8];
        for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
        for (int64_t k = 0; k < nk; k++) {
            const uint8_t *r = v + (size_t)k * row;
            const __m256 wk = _mm256_set1_ps(w[k]);
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                acc[j] = _mm256_fmadd_ps(wk, load8(type, r, i0 + 8 * j), acc[j]);
        }
        for (int j = 0; j < 8; j++) _mm256_storeu_ps(out + i0 + 8 * j, acc[j]);
    }
    for (; i0 + 8 <= hd; i0 += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (int64_t k = 0; k < nk; k++)
            acc = _mm256_fmadd_ps(_mm256_set1_ps(w[k]), load8(type, v + (size_t)k * row, i0), acc);
        _mm256_storeu_ps(out + i0, acc);
    }
    if (i0 < hd) {
        /* the tail, element by element: the reference's own loop */
        const size_t esz = type == GK_TYPE_F16 ? 2 : 4;
        gk_attn_wsum_ref(out + i0, v + esz * (size_t)i0, row, type, w, nk, hd - i0);
    }
}
