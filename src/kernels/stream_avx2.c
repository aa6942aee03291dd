/*
 * stream_avx2.c - the streaming read kernel (stream.h) with AVX2: the 64 lanes
 * as 8 vectors of 8, one 256-byte block (4 cache lines) per step.
 */
#include "kernels/stream.h"

#include <immintrin.h>

float gk_stream_sum_avx2(const float *p, size_t n) {
    __m256 a[8];
    for (int v = 0; v < 8; v++) a[v] = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + GK_STREAM_LANES <= n; i += GK_STREAM_LANES)
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) a[v] = _mm256_add_ps(a[v], _mm256_loadu_ps(p + i + 8 * v));
    float s[GK_STREAM_LANES];
    for (int v = 0; v < 8; v++) _mm256_storeu_ps(s + 8 * v, a[v]);
    return gk_stream_fold(s, p + i, n - i);
}
