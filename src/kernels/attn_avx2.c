/*
 * attn_avx2.c - attention's kernels with AVX2/FMA/F16C (see attn.c), the same
 * steps per element as the scalar references:
 *   wsum:    64 outputs at a time in 8 accumulators, one fused multiply-add per
 *            key and lane, over blocks of 64 keys that every head reads from L1;
 *   dots:    a key at a time, in two 8-lane halves (the 16 partial sums) per query
 *            head, each step of the key's row loaded once for up to 4 heads;
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

/* Keys a block: its value rows (16 KiB of f16 heads of 128) stay in L1 while
 * every head and 64-output slice reads them, so that each row comes from memory
 * once; the first slice fetches the next block's rows. */
#define WSUM_KEYS 64

/* One head's sums of 64 outputs (from i0) over keys k0..k1, added to the sums so
 * far in out (from zero for k0 = 0): each output's multiply-adds in key order. */
AI void wsum64(float *out, const uint8_t *v, size_t row, gk_dtype type, const float *w,
               int64_t k0, int64_t k1, int i0, size_t pf) {
    __m256 acc[8];
    for (int j = 0; j < 8; j++)
        acc[j] = k0 ? _mm256_loadu_ps(out + i0 + 8 * j) : _mm256_setzero_ps();
    for (int64_t k = k0; k < k1; k++) {
        const uint8_t *r = v + (size_t)k * row;
        for (size_t o = 0; o < pf; o += 64) /* the row a block on */
            _mm_prefetch((const char *)r + WSUM_KEYS * row + o, _MM_HINT_T0);
        const __m256 wk = _mm256_set1_ps(w[k]);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) acc[j] = _mm256_fmadd_ps(wk, load8(type, r, i0 + 8 * j), acc[j]);
    }
    for (int j = 0; j < 8; j++) _mm256_storeu_ps(out + i0 + 8 * j, acc[j]);
}

void gk_attn_wsum_avx2(float *out, const void *V, size_t row, gk_dtype type, const float *w,
                       size_t ws, int nq, int64_t nk, int hd) {
    const uint8_t *v = V;
    const int esz = type == GK_TYPE_F16 ? 2 : 4, h64 = hd / 64 * 64;
    for (int64_t k0 = 0; k0 < nk; k0 += WSUM_KEYS) {
        const int64_t k1 = nk - k0 < WSUM_KEYS ? nk : k0 + WSUM_KEYS;
        const size_t pf = k1 + WSUM_KEYS <= nk ? (size_t)hd * esz : 0;
        for (int qi = 0; qi < nq; qi++)
            for (int i0 = 0; i0 < h64; i0 += 64)
                wsum64(out + (size_t)qi * hd, v, row, type, w + qi * ws, k0, k1, i0,
                       qi == 0 && i0 == 0 ? pf : 0);
    }
    for (int qi = 0; qi < nq; qi++) {
        float *o = out + (size_t)qi * hd;
        const float *wq = w + qi * ws;
        int i0 = h64;
        for (; i0 + 8 <= hd; i0 += 8) {
            __m256 acc = _mm256_setzero_ps();
            for (int64_t k = 0; k < nk; k++)
                acc = _mm256_fmadd_ps(_mm256_set1_ps(wq[k]), load8(type, v + (size_t)k * row, i0),
                                      acc);
            _mm256_storeu_ps(o + i0, acc);
        }
        if (i0 < hd) /* the tail, element by element: the reference's own loop */
            gk_attn_wsum_ref(o + i0, v + (size_t)esz * (size_t)i0, row, type, wq, 0, 1, nk,
                             hd - i0);
    }
}

/* ------------------------------------------------------------ scores --- */

AI float dots_hsum(__m256 lo, __m256 hi) {
    __m256 v = _mm256_add_ps(lo, hi);                                              /* j + j+8 */
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); /* j + j+4 */
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));                                        /* j + j+2 */
    a = _mm_add_ss(a, _mm_movehdup_ps(a));                                         /* 0 + 1 */
    return _mm_cvtss_f32(a);
}

/* One key's scores for NQ query heads: the row's 16-input steps loaded (and
 * widened) once for every head, the last partial step from kt (zero-padded). */
AI void dots_key(const int NQ, gk_dtype type, const uint8_t *r, const uint8_t *kt, int hv,
                 int tail, const float *q, int hd, float *s, size_t ss) {
    __m256 lo[4], hi[4];
#pragma GCC unroll 4
    for (int h = 0; h < NQ; h++) lo[h] = hi[h] = _mm256_setzero_ps();
    for (int i = 0; i < hv; i += 16) {
        const __m256 k0 = load8(type, r, i), k1 = load8(type, r, i + 8);
#pragma GCC unroll 4
        for (int h = 0; h < NQ; h++) {
            lo[h] = _mm256_fmadd_ps(k0, _mm256_loadu_ps(q + (size_t)h * hd + i), lo[h]);
            hi[h] = _mm256_fmadd_ps(k1, _mm256_loadu_ps(q + (size_t)h * hd + i + 8), hi[h]);
        }
    }
    if (tail) {
        const __m256 k0 = load8(type, kt, 0), k1 = load8(type, kt, 8);
#pragma GCC unroll 4
        for (int h = 0; h < NQ; h++) {
            float qt[16] = {0};
            for (int i = 0; i < tail; i++) qt[i] = q[(size_t)h * hd + hv + i];
            lo[h] = _mm256_fmadd_ps(k0, _mm256_loadu_ps(qt), lo[h]);
            hi[h] = _mm256_fmadd_ps(k1, _mm256_loadu_ps(qt + 8), hi[h]);
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < NQ; h++) s[h * ss] = dots_hsum(lo[h], hi[h]);
}

void gk_attn_dots_avx2(float *s, size_t ss, const void *K, size_t row, gk_dtype type,
                       const float *q, int nq, int64_t nk, int hd) {
    const uint8_t *kb = K;
    const size_t esz = type == GK_TYPE_F16 ? 2 : 4;
    const int hv = hd / 16 * 16, tail = hd - hv;
    for (int64_t k = 0; k < nk; k++) {
        const uint8_t *r = kb + (size_t)k * row;
        uint8_t kt[64] = {0}; /* the key's last partial step, padded with zeros */
        if (tail) memcpy(kt, r + esz * (size_t)hv, esz * (size_t)tail);
        if (k + 16 < nk) /* the row 16 keys on (see wsum) */
            for (size_t o = 0; o < esz * (size_t)hd; o += 64)
                _mm_prefetch((const char *)r + 16 * row + o, _MM_HINT_T0);
        for (int q0 = 0; q0 < nq; q0 += 4) { /* up to 4 heads at a time */
            const float *qh = q + (size_t)q0 * hd;
            float *sh = s + (size_t)q0 * ss + k;
            switch (nq - q0 < 4 ? nq - q0 : 4) {
            case 1:
                dots_key(1, type, r, kt, hv, tail, qh, hd, sh, ss);
                break;
            case 2:
                dots_key(2, type, r, kt, hv, tail, qh, hd, sh, ss);
                break;
            case 3:
                dots_key(3, type, r, kt, hv, tail, qh, hd, sh, ss);
                break;
            default:
                dots_key(4, type, r, kt, hv, tail, qh, hd, sh, ss);
            }
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
