/*
 * gemm_impl.h - the 8-lane GEMM tile kernels (see gemm.h) of gemm_avx2.c
 * (AVX2/FMA/F16C, 16 vector registers), which defines the main tile shapes and
 * GEMM_TABLE_FN (the exported lookup). AVX-512 has its own tiles and strips
 * (gemm_avx512.c).
 *
 * Per output element (weight row r, token t) the arithmetic is fixed:
 *   float weights: acc (8 lanes) = fma(w[k..k+8), x[k..k+8), acc) for k = 0, 8, ...;
 *                  s = hsum8(acc); then s = fmaf(w[k], x[k], s) for the tail.
 *                  (AVX-512 has its own 16-lane float tiles: gemm_avx512.c)
 *   q8_0 / q4_0:   per 32-value block, the exact int32 sums of 4-value groups
 *                  (8 lanes), acc = fma(d_w * d_x, float(sums), acc); s = hsum8(acc).
 * Every tile shape runs exactly this per element (no shape-dependent blocking
 * of the sum), which is what makes a token's result independent of its batch.
 * The integer sums are exact, so the AVX-512 strips (which form them with
 * vpdpbusd) give the same integers.
 */
#include "kernels/gemm_simd.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------- float weights --- */

AI __m256 load_w8(const int kind, const uint8_t *w, int64_t k) {
    if (kind == K_F32) return _mm256_loadu_ps((const float *)w + k);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + k));
    if (kind == K_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* The n % 8 tail, one element at a time; not inlined, so that every tile runs
 * the same instructions. */
static __attribute__((noinline)) float tail_dot(int kind, const uint8_t *w, const float *x,
                                                int64_t k, int64_t n, float s) {
    for (; k < n; k++) {
        float wv = kind == K_F32   ? ((const float *)w)[k]
                   : kind == K_F16 ? gk_fp16_to_fp32(((const uint16_t *)w)[k])
                                   : gk_bf16_to_fp32(((const uint16_t *)w)[k]);
        s = fmaf(wv, x[k], s);
    }
    return s;
}

AI void ftile(const int kind, const int R, const int N, int64_t n, const uint8_t *w, size_t nb_row,
              const uint8_t *xb, size_t xs, float *y, int64_t ldy) {
    const int esz = kind == K_F32 ? 4 : 2;
    __m256 acc[GK_GEMM_RMAX][GK_GEMM_NMAX];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < N; t++) acc[r][t] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        if (N <= 2) prefetch_next(R, w, nb_row, (size_t)k * esz, 8 * esz);
        __m256 wv[GK_GEMM_RMAX];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) wv[r] = load_w8(kind, w + (size_t)r * nb_row, k);
#pragma GCC unroll 8
        for (int t = 0; t < N; t++) {
            __m256 xv = _mm256_loadu_ps((const float *)(xb + (size_t)t * xs) + k);
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < N; t++) {
            float s = hsum8(acc[r][t]);
            if (k < n)
                s = tail_dot(kind, w + (size_t)r * nb_row, (const float *)(xb + (size_t)t * xs), k,
                             n, s);
            y[(size_t)t * ldy + r] = s;
        }
}

/* ---------------------------------------------------- quantized weights --- */

/* Packed activation row for q8_0/q4_0 weights: n int8 values (stored + 128 as
 * unsigned bytes for vpdpbusd), then n/32 fp32 block scales (ggml's Q8_0
 * quantization: the fp16 scale, widened). */
static size_t xrow_q(int64_t n) {
    size_t b = (size_t)n + (size_t)(n / 32) * sizeof(float);
    return (b + 63) & ~(size_t)63;
}

static void pack_q(const float *x, int64_t n, uint8_t *dst) {
    gk_from_float_fn quant = gk_type_traits_of(GK_TYPE_Q8_0)->from_float;
    float *d = (float *)(dst + n);
    for (int64_t ib = 0; ib < n / 32; ib++) {
        gk_block_q8_0 b;
        quant(x + ib * 32, &b, 32);
        d[ib] = gk_fp16_to_fp32(b.d);
        memcpy(dst + ib * 32, b.qs, 32);
    }
}

AI float load_fp16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* One weight block as 32 bytes in value order: Q8_0 signed values; Q4_0 its
 * nibbles (low nibbles = values 0..15, high = 16..31). */
AI __m256i load_wq(const int kind, const uint8_t *b) {
    if (kind == K_Q8) return _mm256_loadu_si256((const __m256i *)(b + 2));
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m128i p = _mm_loadu_si128((const __m128i *)(b + 2));
    __m256i q = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(p, 4), m4), _mm_and_si128(p, m4));
    return q;
}

AI void qtile(const int kind, const int R, const int N, int64_t n, const uint8_t *w, size_t nb_row,
              const uint8_t *xb, size_t xs, float *y, int64_t ldy) {
    const int64_t nb = n / 32;
    const int bsz = kind == K_Q8 ? 34 : 18;
    const float *dx[GK_GEMM_NMAX];
    __m256 acc[GK_GEMM_RMAX][GK_GEMM_NMAX];
#pragma GCC unroll 8
    for (int t = 0; t < N; t++) dx[t] = (const float *)(xb + (size_t)t * xs + n);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < N; t++) acc[r][t] = _mm256_setzero_ps();
    const __m256i ones16 = _mm256_set1_epi16(1);
    for (int64_t ib = 0; ib < nb; ib++) {
        if (N <= 2) prefetch_next(R, w, nb_row, (size_t)ib * bsz, bsz);
        __m256i wq[GK_GEMM_RMAX], aux[GK_GEMM_RMAX];
        __m256 dw[GK_GEMM_RMAX];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const uint8_t *b = w + (size_t)r * nb_row + (size_t)ib * bsz;
            dw[r] = _mm256_set1_ps(load_fp16(b));
            wq[r] = load_wq(kind, b);
            if (kind == K_Q8) aux[r] = _mm256_abs_epi8(wq[r]); /* |w|; w's sign goes onto x */
        }
#pragma GCC unroll 8
        for (int t = 0; t < N; t++) {
            const __m256i xq = _mm256_loadu_si256((const __m256i *)(xb + (size_t)t * xs + ib * 32));
            const __m256 dxv = _mm256_set1_ps(dx[t][ib]);
            /* Q4_0 as unsigned nibbles: q . x - 8 * sum(x) */
            __m256i corr = _mm256_setzero_si256();
            if (kind == K_Q4)
                corr = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(8), xq), ones16);
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                __m256i s;
                if (kind == K_Q8)
                    s = _mm256_madd_epi16(_mm256_maddubs_epi16(aux[r], _mm256_sign_epi8(xq, wq[r])),
                                          ones16);
                else
                    s = _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(wq[r], xq), ones16),
                                         corr);
                acc[r][t] =
                    _mm256_fmadd_ps(_mm256_mul_ps(dw[r], dxv), _mm256_cvtepi32_ps(s), acc[r][t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < N; t++) y[(size_t)t * ldy + r] = hsum8(acc[r][t]);
}

/* ------------------------------------------------------------- tables --- */

DEF_KIND(ftile, F32)
DEF_KIND(ftile, F16)
DEF_KIND(ftile, BF16)
DEF_KIND(qtile, Q8)
DEF_KIND(qtile, Q4)

/* Decode with float weights: the rows one after the other (one sequential
 * stream, fetched FROW_AHEAD bytes ahead, as gemm_avx512.c's frow1), each row's
 * one chain of fmas and its tail exactly as ftile runs them with N = 1. */
#define FROW_AHEAD 8192

AI void frow8(const int kind, int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *xb,
              float *y) {
    const float *x = (const float *)xb;
    const int esz = kind == K_F32 ? 4 : 2;
    for (int r = 0; r < R; r++) {
        const uint8_t *row = w + (size_t)r * nb_row;
        __m256 acc = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k + 8 <= n; k += 8) {
            if (esz == 4 ? (k & 15) == 0 : (k & 31) == 0)
                _mm_prefetch((const char *)row + (size_t)k * esz + FROW_AHEAD, _MM_HINT_T0);
            acc = _mm256_fmadd_ps(load_w8(kind, row, k), _mm256_loadu_ps(x + k), acc);
        }
        float s = hsum8(acc);
        if (k < n) s = tail_dot(kind, row, x, k, n, s);
        y[r] = s;
    }
}

static void frow8_f32(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x,
                      float *y) {
    frow8(K_F32, n, w, nb_row, R, x, y);
}
static void frow8_f16(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x,
                      float *y) {
    frow8(K_F16, n, w, nb_row, R, x, y);
}
static void frow8_bf16(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x,
                       float *y) {
    frow8(K_BF16, n, w, nb_row, R, x, y);
}

static const gk_gemm_kernels k_f32 = {
    .rmax = GEMM_FR, .nmax = GEMM_FN, .tile = TABLE(F32), .one = frow8_f32};
static const gk_gemm_kernels k_f16 = {
    .rmax = GEMM_FR, .nmax = GEMM_FN, .tile = TABLE(F16), .one = frow8_f16};
static const gk_gemm_kernels k_bf16 = {
    .rmax = GEMM_FR, .nmax = GEMM_FN, .tile = TABLE(BF16), .one = frow8_bf16};
static const gk_gemm_kernels k_q8 = {
    .rmax = GEMM_QR, .nmax = GEMM_QN, .xrow = xrow_q, .pack = pack_q, .tile = TABLE(Q8)};
static const gk_gemm_kernels k_q4 = {
    .rmax = GEMM_QR, .nmax = GEMM_QN, .xrow = xrow_q, .pack = pack_q, .tile = TABLE(Q4)};

const gk_gemm_kernels *GEMM_TABLE_FN(gk_dtype type) {
    switch (type) {
    case GK_TYPE_F32:
        return &k_f32;
    case GK_TYPE_F16:
        return &k_f16;
    case GK_TYPE_BF16:
        return &k_bf16;
    case GK_TYPE_Q8_0:
        return &k_q8;
    case GK_TYPE_Q4_0:
        return &k_q4;
    default:
        return NULL;
    }
}
