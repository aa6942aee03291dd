/*
 * attn_avx2.c - attention's kernels with AVX2/FMA/F16C (see attn.c), the same
 * steps per element as the scalar references:
 *   wsum:    64 outputs at a time in 8 accumulators, one fused multiply-add per
 *            key and lane;
 *   dots:    four keys at a time, each in two 8-lane halves (the 16 partial sums);
 *   softmax: 8 keys per vector, vmath_avx2.h's tanh and exp.
 */
#include "kernels/attn_impl.h"
#include "kernels/vmath_avx2.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))

AI __m256 load8(gk_dtype type, const uint8_t *r, int i) {
    if (type == GK_TYPE_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + 2 * i)));
    return _mm256_loadu_ps((const float *)r + i);
}

static void wsum1(float *out, const void *V, size_t row, gk_dtype type, const float *w, int64_t nk,
                  int hd) {
    const uint8_t *v = V;
    const int esz = type == GK_TYPE_F16 ? 2 : 4;
    int i0 = 0;
    for (; i0 + 64 <= hd; i0 += 64) {
        __m256 acc[8];
        for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
        for (int64_t k = 0; k < nk; k++) {
            const uint8_t *r = v + (size_t)k * row;
            /* the rows are far apart and come from L3: fetch ahead */
            if (k + 16 < nk)
                for (int o = 0; o < 64 * esz; o += 64)
                    _mm_prefetch((const char *)r + 16 * row + esz * (size_t)i0 + o, _MM_HINT_T0);
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
        gk_attn_wsum_ref(out + i0, v + (size_t)esz * (size_t)i0, row, type, w, 0, 1, nk, hd - i0);
    }
}

/* One query head after the other (a head's rows come from L2 for the next). */
void gk_attn_wsum_avx2(float *out, const void *V, size_t row, gk_dtype type, const float *w,
                       size_t ws, int nq, int64_t nk, int hd) {
    for (int qi = 0; qi < nq; qi++) wsum1(out + (size_t)qi * hd, V, row, type, w + qi * ws, nk, hd);
}

/* ------------------------------------------------------------ scores --- */

/* One 16-input step of up to four keys' two 8-lane halves (lanes 0-7, 8-15). */
AI void dots_step(gk_dtype type, const uint8_t *const *r, int nr, int i, const float *q,
                  __m256 lo[4], __m256 hi[4]) {
    const __m256 q0 = _mm256_loadu_ps(q + i), q1 = _mm256_loadu_ps(q + i + 8);
    for (int j = 0; j < nr; j++) {
        lo[j] = _mm256_fmadd_ps(load8(type, r[j], i), q0, lo[j]);
        hi[j] = _mm256_fmadd_ps(load8(type, r[j], i + 8), q1, hi[j]);
    }
}

AI float dots_hsum(__m256 lo, __m256 hi) {
    __m256 v = _mm256_add_ps(lo, hi);                                              /* j + j+8 */
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); /* j + j+4 */
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));                                        /* j + j+2 */
    a = _mm_add_ss(a, _mm_movehdup_ps(a));                                         /* 0 + 1 */
    return _mm_cvtss_f32(a);
}

void gk_attn_dots_avx2(float *s, size_t ss, const void *K, size_t row, gk_dtype type,
                       const float *q, int nq, int64_t nk, int hd) {
    const uint8_t *kb = K;
    const size_t esz = type == GK_TYPE_F16 ? 2 : 4;
    const int hv = hd / 16 * 16, tail = hd - hv;
    for (int64_t k0 = 0; k0 < nk; k0 += 4) {
        const int nr = nk - k0 < 4 ? (int)(nk - k0) : 4;
        const uint8_t *r[4];
        uint8_t kt[4][64] = {{0}}; /* each key's last partial step, padded with zeros */
        for (int j = 0; j < nr; j++) {
            r[j] = kb + (size_t)(k0 + j) * row;
            if (tail) memcpy(kt[j], r[j] + esz * (size_t)hv, esz * (size_t)tail);
        }
        if (k0 + 20 <= nk) /* the rows 16 keys on (see wsum) */
            for (int j = 0; j < 4; j++)
                for (size_t o = 0; o < esz * (size_t)hd; o += 64)
                    _mm_prefetch((const char *)r[j] + 16 * row + o, _MM_HINT_T0);
        /* the query heads one after the other against these keys (in L1) */
        for (int qi = 0; qi < nq; qi++) {
            const float *qv = q + (size_t)qi * hd;
            __m256 lo[4], hi[4];
            for (int j = 0; j < 4; j++) lo[j] = hi[j] = _mm256_setzero_ps();
            if (nr == 4)
                for (int i = 0; i < hv; i += 16) dots_step(type, r, 4, i, qv, lo, hi);
            else
                for (int i = 0; i < hv; i += 16) dots_step(type, r, nr, i, qv, lo, hi);
            if (tail) {
                float qt[16] = {0};
                for (int i = 0; i < tail; i++) qt[i] = qv[hv + i];
                for (int j = 0; j < nr; j++) {
                    const uint8_t *rt = kt[j];
                    dots_step(type, &rt, 1, 0, qt, lo + j, hi + j);
                }
            }
            for (int j = 0; j < nr; j++) s[qi * ss + k0 + j] = dots_hsum(lo[j], hi[j]);
        }
    }
}

/* ----------------------------------------------------------- softmax --- */

void gk_attn_softmax_avx2(float *s, int64_t n, float scale, float cap, float temp, bool f16w) {
    const int64_t nv = n / 8 * 8;
    const __m256 vs = _mm256_set1_ps(scale), vc = _mm256_set1_ps(cap), vt = _mm256_set1_ps(temp);
    __m256 mx = _mm256_set1_ps(-INFINITY);
    for (int64_t k = 0; k < nv; k += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(s + k), vs);
        if (cap > 0.0f) v = _mm256_mul_ps(vc, gk_vtanh8(_mm256_div_ps(v, vc)));
        v = _mm256_mul_ps(v, vt);
        _mm256_storeu_ps(s + k, v);
        mx = _mm256_max_ps(v, mx);
    }
    float m[8];
    _mm256_storeu_ps(m, mx);
    gk_attn_softmax_tail(s, nv, n, scale, cap, temp, m);
    const float mxs = gk_attn_max8(m);
    const __m256 vm = _mm256_set1_ps(mxs);
    __m256d d0 = _mm256_setzero_pd(), d1 = _mm256_setzero_pd();
    for (int64_t k = 0; k < nv; k += 8) {
        __m256 e = gk_vexp8(_mm256_sub_ps(_mm256_loadu_ps(s + k), vm));
        _mm256_storeu_ps(s + k, e);
        d0 = _mm256_add_pd(d0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        d1 = _mm256_add_pd(d1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double d[8];
    _mm256_storeu_pd(d, d0);
    _mm256_storeu_pd(d + 4, d1);
    gk_attn_softmax_tail2(s, nv, n, mxs, d);
    const float inv = (float)(1.0 / gk_attn_sum8(d));
    const __m256 vi = _mm256_set1_ps(inv);
    for (int64_t k = 0; k < nv; k += 8) {
        __m256 w = _mm256_mul_ps(_mm256_loadu_ps(s + k), vi);
        if (f16w) w = _mm256_cvtph_ps(_mm256_cvtps_ph(w, _MM_FROUND_TO_NEAREST_INT));
        _mm256_storeu_ps(s + k, w);
    }
    gk_attn_softmax_tail3(s, nv, n, inv, f16w);
}
