/*
 * stream_avx512.c - the streaming read kernel (stream.h) with AVX-512: the 64
 * lanes as 4 vectors of 16, one 256-byte block (4 cache lines) per step.
 */
#include "kernels/stream.h"

#include <immintrin.h>

float gk_stream_sum_avx512(const float *p, size_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + GK_STREAM_LANES <= n; i += GK_STREAM_LANES) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
    }
    float s[GK_STREAM_LANES];
    _mm512_storeu_ps(s, a0);
    _mm512_storeu_ps(s + 16, a1);
    _mm512_storeu_ps(s + 32, a2);
    _mm512_storeu_ps(s + 48, a3);
    return gk_stream_fold(s, p + i, n - i);
}
