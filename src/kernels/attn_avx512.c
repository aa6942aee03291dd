/*
 * attn_avx512.c - attention's kernels with AVX-512 (see attn.c), the same
 * steps per element as the scalar references:
 *   dots: 16 keys at a time, one 16-lane accumulator per key and query head
 *         (lane j takes the inputs i = j mod 16; the last partial step loads
 *         zeros past the head), then each head's 16 reduced together by
 *         shuffles that add the reference's tree (j + j+8, j + j+4, j + j+2,
 *         0 + 1) for every key. The keys go 4 at a time through up to 4 query
 *         heads (a KV group), so that each load of a key row (and its widening
 *         from f16) serves every head; the tree's first two levels run on each
 *         4 keys' accumulators, the last two on the block's;
 *   wsum: 64 outputs of up to 4 query heads at a time in 16 accumulators, one
 *         fused multiply-add per key, head and lane (each value row is read
 *         once for the 4 heads);
 *   softmax: attn_avx2.c's steps on 16 keys a vector (vmath_avx512.h), the
 *         sums of key k still in lane k mod 8 (the two halves of a vector added
 *         in key order); the lanes' maxima merged pairwise at the end, which can
 *         only pick a different zero, and gives the same weights.
 * Called only after attn.c checked the CPU.
 */
#include "kernels/attn_impl.h"
#include "kernels/vmath_avx512.h"

#include <immintrin.h>
#include <math.h>

#define AI static inline __attribute__((always_inline))
/* Keys a block of the weighted sum: the block's value rows (16 KiB of f16 heads of
 * 128) stay in L1 while every 64-output slice and group of 4 heads reads them, so
 * that each row comes from memory once; the first slice fetches the next block's. */
#define WSUM_KEYS 64

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

/* The reference's tree on 16-lane accumulators, level by level: two keys'
 * accumulators to one vector (lanes 0-7: the first key's j + j+8; lanes 8-15: the
 * second's) */
AI __m512 tree1(__m512 a0, __m512 a1) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(a0, a1, _MM_SHUFFLE(3, 2, 3, 2)));
}
/* two tree1 results (keys 4p..4p+3) to one: 128-bit lane L, key 4p + L's j + j+4 */
AI __m512 tree2(__m512 b0, __m512 b1) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(b0, b1, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(b0, b1, _MM_SHUFFLE(3, 1, 3, 1)));
}
/* four tree2 results (16 keys) to the 16 keys' sums in key order: j + j+2, then
 * 0 + 1 */
AI __m512 tree34(const __m512 c[4]) {
    __m512 d[2];
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

/* 16 keys' scores (rows r[0..15]) for NQ query heads: per 4 keys, every head's
 * accumulators over the head's 16-lane steps (then the masked tail mt at hv),
 * each row's step loaded once for the heads; scores stored under ms. */
AI void dots_block(const int NQ, gk_dtype type, const uint8_t *const r[16], const float *q,
                   int hd, int hv, __mmask16 mt, float *s, size_t ss, __mmask16 ms) {
    __m512 c[4][4]; /* [head][4-key group]: the tree's second level */
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        __m512 acc[4][4];
#pragma GCC unroll 4
        for (int h = 0; h < NQ; h++)
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) acc[h][j] = _mm512_setzero_ps();
        for (int i = 0; i < hv; i += 16) {
            __m512 qv[4];
#pragma GCC unroll 4
            for (int h = 0; h < NQ; h++) qv[h] = _mm512_loadu_ps(q + (size_t)h * hd + i);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                const __m512 kv = load16_full(type, r[4 * g + j], i);
#pragma GCC unroll 4
                for (int h = 0; h < NQ; h++) acc[h][j] = _mm512_fmadd_ps(kv, qv[h], acc[h][j]);
            }
        }
        if (mt) {
            __m512 qv[4];
#pragma GCC unroll 4
            for (int h = 0; h < NQ; h++) qv[h] = _mm512_maskz_loadu_ps(mt, q + (size_t)h * hd + hv);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                const __m512 kv = load16(type, r[4 * g + j], hv, mt);
#pragma GCC unroll 4
                for (int h = 0; h < NQ; h++) acc[h][j] = _mm512_fmadd_ps(kv, qv[h], acc[h][j]);
            }
        }
#pragma GCC unroll 4
        for (int h = 0; h < NQ; h++)
            c[h][g] = tree2(tree1(acc[h][0], acc[h][1]), tree1(acc[h][2], acc[h][3]));
    }
#pragma GCC unroll 4
    for (int h = 0; h < NQ; h++) _mm512_mask_storeu_ps(s + (size_t)h * ss, ms, tree34(c[h]));
}

void gk_attn_dots_avx512(float *s, size_t ss, const void *K, size_t row, gk_dtype type,
                         const float *q, int nq, int64_t nk, int hd) {
    const uint8_t *kb = K;
    const int hv = hd / 16 * 16;
    const __mmask16 mt = (__mmask16)((1u << (hd - hv)) - 1);
    const size_t hbytes = (size_t)hd * (type == GK_TYPE_F16 ? 2 : 4);
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
        for (int q0 = 0; q0 < nq; q0 += 4) { /* up to 4 heads at a time */
            const float *qh = q + (size_t)q0 * hd;
            float *sh = s + (size_t)q0 * ss + k0;
            switch (nq - q0 < 4 ? nq - q0 : 4) {
            case 1:
                dots_block(1, type, r, qh, hd, hv, mt, sh, ss, ms);
                break;
            case 2:
                dots_block(2, type, r, qh, hd, hv, mt, sh, ss, ms);
                break;
            case 3:
                dots_block(3, type, r, qh, hd, hv, mt, sh, ss, ms);
                break;
            default:
                dots_block(4, type, r, qh, hd, hv, mt, sh, ss, ms);
            }
        }
    }
}

/* Up to 4 query heads' sums of 64 outputs (from i0) over keys k0..k1, added to
 * the sums so far in out (from zero for k0 = 0): each output's fused
 * multiply-adds stay in key order. */
AI void wsum64(const int NQ, float *out, const uint8_t *v, size_t row, gk_dtype type,
               const float *w, size_t ws, int64_t k0, int64_t k1, int64_t nk, int hd, int i0) {
    const size_t esz = type == GK_TYPE_F16 ? 2 : 4;
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int qi = 0; qi < NQ; qi++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            acc[qi][j] = k0 ? _mm512_loadu_ps(out + (size_t)qi * hd + i0 + 16 * j)
                            : _mm512_setzero_ps();
    for (int64_t k = k0; k < k1; k++) {
        const uint8_t *r = v + (size_t)k * row;
        /* the next block's rows, from the first slice of this one (WSUM_KEYS) */
        if (i0 == 0 && k + WSUM_KEYS < nk)
            for (size_t o = 0; o < (size_t)hd * esz; o += 64)
                _mm_prefetch((const char *)r + WSUM_KEYS * row + o, _MM_HINT_T0);
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
    const int h64 = hd / 64 * 64;
    for (int64_t k0 = 0; k0 < nk; k0 += WSUM_KEYS) {
        const int64_t k1 = nk - k0 < WSUM_KEYS ? nk : k0 + WSUM_KEYS;
        for (int i0 = 0; i0 < h64; i0 += 64)
            for (int q0 = 0; q0 < nq; q0 += 4) {
                float *o = out + (size_t)q0 * hd;
                const float *wq = w + q0 * ws;
                switch (nq - q0 < 4 ? nq - q0 : 4) {
                case 1:
                    wsum64(1, o, v, row, type, wq, ws, k0, k1, nk, hd, i0);
                    break;
                case 2:
                    wsum64(2, o, v, row, type, wq, ws, k0, k1, nk, hd, i0);
                    break;
                case 3:
                    wsum64(3, o, v, row, type, wq, ws, k0, k1, nk, hd, i0);
                    break;
                default:
                    wsum64(4, o, v, row, type, wq, ws, k0, k1, nk, hd, i0);
                }
            }
    }
    for (int i0 = h64; i0 < hd; i0 += 16) { /* the rest, 16 (or fewer, masked) outputs at a time */
        const __mmask16 m = hd - i0 >= 16 ? 0xffff : (__mmask16)((1u << (hd - i0)) - 1);
        for (int qi = 0; qi < nq; qi++) {
            __m512 acc = _mm512_setzero_ps();
            for (int64_t k = 0; k < nk; k++)
                acc = _mm512_fmadd_ps(_mm512_set1_ps(w[qi * ws + k]),
                                      load16(type, v + (size_t)k * row, i0, m), acc);
            _mm512_mask_storeu_ps(out + (size_t)qi * hd + i0, m, acc);
        }
    }
}

/* ----------------------------------------------------------- softmax --- */

void gk_attn_softmax_avx512(float *s, int64_t n, float scale, float cap, float temp, bool f16w) {
    const int64_t nv = n / 16 * 16;
    const __m512 vs = _mm512_set1_ps(scale), vc = _mm512_set1_ps(cap), vt = _mm512_set1_ps(temp);
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int64_t k = 0; k < nv; k += 16) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(s + k), vs);
        if (cap > 0.0f) v = _mm512_mul_ps(vc, gk_vtanh16(_mm512_div_ps(v, vc)));
        v = _mm512_mul_ps(v, vt);
        _mm512_storeu_ps(s + k, v);
        mx = _mm512_max_ps(v, mx);
    }
    float m[8];
    _mm256_storeu_ps(m, _mm256_max_ps(_mm512_extractf32x8_ps(mx, 1), _mm512_castps512_ps256(mx)));
    gk_attn_softmax_tail(s, nv, n, scale, cap, temp, m);
    const float mxs = gk_attn_max8(m);
    const __m512 vm = _mm512_set1_ps(mxs);
    __m512d d = _mm512_setzero_pd();
    for (int64_t k = 0; k < nv; k += 16) {
        __m512 e = gk_vexp16(_mm512_sub_ps(_mm512_loadu_ps(s + k), vm));
        _mm512_storeu_ps(s + k, e);
        d = _mm512_add_pd(d, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        d = _mm512_add_pd(d, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
    }
    double ds[8];
    _mm512_storeu_pd(ds, d);
    gk_attn_softmax_tail2(s, nv, n, mxs, ds);
    const float inv = (float)(1.0 / gk_attn_sum8(ds));
    const __m512 vi = _mm512_set1_ps(inv);
    for (int64_t k = 0; k < nv; k += 16) {
        __m512 w = _mm512_mul_ps(_mm512_loadu_ps(s + k), vi);
        if (f16w) w = _mm512_cvtph_ps(_mm512_cvtps_ph(w, _MM_FROUND_TO_NEAREST_INT));
        _mm512_storeu_ps(s + k, w);
    }
    gk_attn_softmax_tail3(s, nv, n, inv, f16w);
}
