/*
 * attn_avx512.c - attention's kernels with AVX-512 (see attn.c), the same
 * steps per element as the scalar references:
 *   dots: 16 keys at a time, one 16-lane accumulator each (lane j takes the
 *         inputs i = j mod 16; the last partial step loads zeros past the head),
 *         then the 16 accumulators reduced together by shuffles that add the
 *         reference's tree (j + j+8, j + j+4, j + j+2, 0 + 1) for every key.
 *         With several query heads (a KV group), an f16 block of 16 keys is
 *         widened to f32 once and serves every head;
 *   wsum: 64 outputs of up to 4 query heads at a time in 16 accumulators, one
 *         fused multiply-add per key, head and lane (each value row is read
 *         once for the 4 heads).
 * Called only after attn.c checked the CPU.
 */
#include "kernels/attn_impl.h"

#include <immintrin.h>

#define AI static inline __attribute__((always_inline))
#define PF_KEYS 16 /* keys ahead that wsum fetches */

AI __m512 load16(gk_dtype type, const uint8_t *r, int i, __mmask16 m) {
    if (type == GK_TYPE_F16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)r + i));
    return _mm512_maskz_loadu_ps(m, (const float *)r + i);
}

AI __m512 load16_full(gk_dtype type, const uint8_t *r, int i) {
    if (type == GK_TYPE_F16)
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)r + i)));
    return _mm512_loadu_ps((const float *)r + i);
}

/* a[0..15], one key's 16 lanes each, to one vector of the 16 keys' sums. */
AI __m512 reduce16(__m512 a[16]) {
    __m512 b[8], c[4], d[2];
#pragma GCC unroll 8
    for (int p = 0; p < 8; p++) /* lanes 0-7: key 2p's j + j+8; lanes 8-15: key 2p+1's */
        b[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(a[2 * p], a[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) /* 128-bit lane L: key 4p + L's j + j+4 */
        c[p] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * p], b[2 * p + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(b[2 * p], b[2 * p + 1], _MM_SHUFFLE(3, 1, 3, 1)));
#pragma GCC unroll 2
    for (int p = 0; p < 2; p++) /* lane L: keys 8p + L, 8p + 4 + L: their j + j+2 */
        d[p] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * p], c[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(c[2 * p], c[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* lane L: keys L, 4 + L, 8 + L, 12 + L: their 0 + 1 */
    __m512 e = _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_ps(d[0], d[1], _MM_SHUFFLE(3, 1, 3, 1)));
    /* element 4L + m holds key 4m + L */
    const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_ps(idx, e);
}

/* 16 keys' scores for one query head: acc[j] over the row at r[j] (the cache's
 * row, or its f32 widening), stored under the mask ms. */
AI void dots16(gk_dtype type, const uint8_t *const r[16], const float *q, int hv, __mmask16 mt,
               float *dst, __mmask16 ms) {
    __m512 acc[16];
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) acc[j] = _mm512_setzero_ps();
    for (int i = 0; i < hv; i += 16) {
        const __m512 qv = _mm512_loadu_ps(q + i);
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++)
            acc[j] = _mm512_fmadd_ps(load16_full(type, r[j], i), qv, acc[j]);
    }
    if (mt) {
        const __m512 qv = _mm512_maskz_loadu_ps(mt, q + hv);
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++)
            acc[j] = _mm512_fmadd_ps(load16(type, r[j], hv, mt), qv, acc[j]);
    }
    _mm512_mask_storeu_ps(dst, ms, reduce16(acc));
}

/* Head sizes up to this have an f16 key block widened once for all query heads. */
#define UNPACK_MAX 256

void gk_attn_dots_avx512(float *s, size_t ss, const void *K, size_t row, gk_dtype type,
                         const float *q, int nq, int64_t nk, int hd) {
    const uint8_t *kb = K;
    const int hv = hd / 16 * 16;
    const __mmask16 mt = (__mmask16)((1u << (hd - hv)) - 1);
    const size_t hbytes = (size_t)hd * (type == GK_TYPE_F16 ? 2 : 4);
    const bool unpack = type == GK_TYPE_F16 && nq > 1 && hd <= UNPACK_MAX;
    const int hp = (hd + 15) / 16 * 16;
    float kf[16][UNPACK_MAX] __attribute__((aligned(64)));
    for (int64_t k0 = 0; k0 < nk; k0 += 16) {
        const int nr = nk - k0 < 16 ? (int)(nk - k0) : 16;
        const __mmask16 ms = (__mmask16)((1u << nr) - 1);
        const uint8_t *r[16];
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) /* keys past nk repeat the last (never stored) */
            r[j] = kb + (size_t)(k0 + (j < nr ? j : nr - 1)) * row;
        if (k0 + 48 <= nk) /* the rows two blocks on (see wsum) */
            for (int j = 0; j < 16; j++)
                for (size_t o = 0; o < hbytes; o += 64)
                    _mm_prefetch((const char *)r[j] + 32 * row + o, _MM_HINT_T0);
        if (!unpack) {
            for (int qi = 0; qi < nq; qi++)
                dots16(type, r, q + (size_t)qi * hd, hv, mt, s + qi * ss + k0, ms);
            continue;
        }
        /* widen the 16 rows once (exactly; zeros past the head), then every query */
        const uint8_t *rf[16];
        for (int j = 0; j < 16; j++) {
            for (int i = 0; i < hp; i += 16) {
                const __mmask16 m = i < hv ? 0xffff : mt;
                _mm512_store_ps(&kf[j][i], load16(type, r[j], i, m));
            }
            rf[j] = (const uint8_t *)kf[j];
        }
        for (int qi = 0; qi < nq; qi++)
            dots16(GK_TYPE_F32, rf, q + (size_t)qi * hd, hv, mt, s + qi * ss + k0, ms);
    }
}

/* Up to 4 query heads' sums of 64 outputs (from i0) over all keys. */
AI void wsum64(const int NQ, float *out, const uint8_t *v, size_t row, gk_dtype type,
               const float *w, size_t ws, int64_t nk, int hd, int i0) {
    const size_t esz = type == GK_TYPE_F16 ? 2 : 4;
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int qi = 0; qi < NQ; qi++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) acc[qi][j] = _mm512_setzero_ps();
    for (int64_t k = 0; k < nk; k++) {
        const uint8_t *r = v + (size_t)k * row;
        /* the rows are far apart (all the heads' rows of a position between them)
         * and come from L3 or memory: fetch ahead */
        if (k + PF_KEYS < nk)
            for (size_t o = 0; o < 64 * esz; o += 64)
                _mm_prefetch((const char *)r + PF_KEYS * row + esz * (size_t)i0 + o, _MM_HINT_T0);
        __m512 x[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) x[j] = load16_full(type, r, i0 + 16 * j);
#pragma GCC unroll 4
        for (int qi = 0; qi < NQ; qi++) {
            const __m512 wk = _mm512_set1_ps(w[qi * ws + k]);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) acc[qi][j] = _mm512_fmadd_ps(wk, x[j], acc[qi][j]);
        }
    }
#pragma GCC unroll 4
    for (int qi = 0; qi < NQ; qi++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            _mm512_storeu_ps(out + (size_t)qi * hd + i0 + 16 * j, acc[qi][j]);
}

void gk_attn_wsum_avx512(float *out, const void *V, size_t row, gk_dtype type, const float *w,
                         size_t ws, int nq, int64_t nk, int hd) {
    const uint8_t *v = V;
    for (int q0 = 0; q0 < nq; q0 += 4) {
        const int n = nq - q0 < 4 ? nq - q0 : 4;
        float *o = out + (size_t)q0 * hd;
        const float *wq = w + q0 * ws;
        int i0 = 0;
        for (; i0 + 64 <= hd; i0 += 64) switch (n) {
            case 1:
                wsum64(1, o, v, row, type, wq, ws, nk, hd, i0);
                break;
            case 2:
                wsum64(2, o, v, row, type, wq, ws, nk, hd, i0);
                break;
            case 3:
                wsum64(3, o, v, row, type, wq, ws, nk, hd, i0);
                break;
            default:
                wsum64(4, o, v, row, type, wq, ws, nk, hd, i0);
            }
        for (; i0 < hd; i0 += 16) { /* the rest, 16 (or fewer, masked) outputs at a time */
            const __mmask16 m = hd - i0 >= 16 ? 0xffff : (__mmask16)((1u << (hd - i0)) - 1);
            for (int qi = 0; qi < n; qi++) {
                __m512 acc = _mm512_setzero_ps();
                for (int64_t k = 0; k < nk; k++)
                    acc = _mm512_fmadd_ps(_mm512_set1_ps(wq[qi * ws + k]),
                                          load16(type, v + (size_t)k * row, i0, m), acc);
                _mm512_mask_storeu_ps(o + (size_t)qi * hd + i0, m, acc);
            }
        }
    }
}
