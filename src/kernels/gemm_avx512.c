/*
 * gemm_avx512.c - the GEMM kernels with AVX-512 (F, BW, VL) and VNNI. Called
 * only after gemm.c checked the CPU.
 *
 * Float weights: the tiles of gemm_impl.h with AVX-512VL's 32 registers
 * (still 8-lane vectors), 4 rows x 6 tokens.
 *
 * Q8_0 and Q4_0 weights: strip kernels. A strip of 16 weight rows is unpacked,
 * a chunk of 8 blocks (256 inputs) at a time, into an L1-resident buffer where
 * one 512-bit vector holds 4 bytes of each of the 16 rows (the rows are the
 * lanes); then every token of the batch runs against the buffer, 8 tokens per
 * register tile. One vpdpbusd multiplies 16 rows by 4 of the token's values
 * (broadcast), and the block scales are applied once per block for 16 rows.
 *
 * Per output element (row r, token t) the arithmetic is fixed:
 *   acc = 0; for every 32-value block b, in order:
 *     isum = sum_i wq[i] * xq[i]  (exact int32; wq stored unsigned as
 *            wq + c, c = 128 for Q8_0, 8 for Q4_0's nibbles, and -c * sum(xq)
 *            added back)
 *     acc = fma(d_w * d_x, (float)isum, acc)   (d_w * d_x is exact: two
 *            fp16 values)
 *   y = acc
 * whatever the batch, the tile, the chunk (acc goes through y between chunks
 * unchanged) or the thread, so a token's result does not depend on its batch.
 */
#include "kernels/gemm.h"

#include <immintrin.h>
#include <string.h>

#define GEMM_VNNI 1
#define GEMM_NINST 6
#define GEMM_FR 4
#define GEMM_FN 6
#define GEMM_QR 4
#define GEMM_QN 4
#define GEMM_TABLE_FN impl_kernels
static const gk_gemm_kernels *impl_kernels(gk_dtype type);
#include "kernels/gemm_impl.h"

/* ------------------------------------------------------- strip kernels --- */

#define SR 16 /* rows per strip: the 16 int32 lanes */
#define KB 8  /* blocks of 32 per unpacked chunk */
#define NT 8  /* tokens per register tile */

/* One unpacked chunk: per block, 8 vectors of 16 rows x 4 unsigned bytes and
 * the 16 rows' scales. */
typedef struct {
    __m512i q[KB][8];
    __m512 d[KB];
} strip_buf;

/* Packed activation row: n int8 values (ggml's Q8_0 quantization), then per
 * 32-block its fp32 scale, then per block -c * sum of its values (int32). */
static size_t xrow_s(int64_t n) {
    size_t b = (size_t)n + (size_t)(n / 32) * 8;
    return (b + 63) & ~(size_t)63;
}

AI void pack_s(const int c, const float *x, int64_t n, uint8_t *dst) {
    gk_from_float_fn quant = gk_type_traits_of(GK_TYPE_Q8_0)->from_float;
    const int64_t nb = n / 32;
    float *d = (float *)(dst + n);
    int32_t *corr = (int32_t *)(dst + n + nb * 4);
    for (int64_t ib = 0; ib < nb; ib++) {
        gk_block_q8_0 b;
        quant(x + ib * 32, &b, 32);
        d[ib] = gk_fp16_to_fp32(b.d);
        int32_t s = 0;
        for (int j = 0; j < 32; j++) s += b.qs[j];
        corr[ib] = -c * s;
        memcpy(dst + ib * 32, b.qs, 32);
    }
}
static void pack_s_q8(const float *x, int64_t n, uint8_t *dst) {
    pack_s(128, x, n, dst);
}
static void pack_s_q4(const float *x, int64_t n, uint8_t *dst) {
    pack_s(8, x, n, dst);
}

/* 16 vectors, row r in the low half of v[r] and row r + 8 in its high half
 * (8 dwords each), transposed into o[k] = dword k of rows 0..15. */
AI void transpose16x8(const __m512i v[8], __m512i o[8]) {
    __m512i t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
    }
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) { /* rows 0-3 (t0..t3), rows 4-7 (t4..t7) */
        __m512i *s = t + 4 * h;
        u[4 * h + 0] = _mm512_unpacklo_epi64(s[0], s[2]); /* dwords 0, 4 */
        u[4 * h + 1] = _mm512_unpackhi_epi64(s[0], s[2]); /* 1, 5 */
        u[4 * h + 2] = _mm512_unpacklo_epi64(s[1], s[3]); /* 2, 6 */
        u[4 * h + 3] = _mm512_unpackhi_epi64(s[1], s[3]); /* 3, 7 */
    }
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13),
                  hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        o[k] = _mm512_permutex2var_epi64(u[k], lo, u[4 + k]);
        o[k + 4] = _mm512_permutex2var_epi64(u[k], hi, u[4 + k]);
    }
}

/* Unpacks blocks [b0, b0 + nbk) of R <= 16 rows; rows past R repeat row R - 1
 * (their lanes are never stored). */
AI void unpack_chunk(const int kind, const uint8_t *w, size_t nb_row, int R, int64_t b0, int nbk,
                     strip_buf *buf) {
    const int bsz = kind == K_Q8 ? 34 : 18;
    const uint8_t *base = w + (size_t)b0 * bsz;
    size_t ro[SR];
    int32_t ri[SR];
#pragma GCC unroll 16
    for (int r = 0; r < SR; r++) {
        ro[r] = (size_t)(r < R ? r : R - 1) * nb_row;
        ri[r] = (int32_t)ro[r];
    }
    const __m512i vidx = _mm512_loadu_si512(ri);
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int b = 0; b < nbk; b++) {
        const uint8_t *p = base + (size_t)b * bsz;
        __m512i v[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            if (kind == K_Q8) {
                __m256i a = _mm256_loadu_si256((const __m256i *)(p + ro[r] + 2)),
                        c = _mm256_loadu_si256((const __m256i *)(p + ro[r + 8] + 2));
                v[r] = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(a), c, 1),
                                        _mm512_set1_epi8((char)0x80));
            } else {
                __m256i a = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p + ro[r] + 2))),
                    _mm_loadu_si128((const __m128i *)(p + ro[r + 8] + 2)), 1);
                __m256i lo = _mm256_and_si256(a, m4),
                        hi = _mm256_and_si256(_mm256_srli_epi16(a, 4), m4);
                __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                v[r] = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
            }
        }
        transpose16x8(v, buf->q[b]);
        /* the fp16 scales: a dword gathered from each row, its low half kept */
        __m512i h = _mm512_i32gather_epi32(vidx, p, 1);
        buf->d[b] = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h));
    }
}

/* N tokens against an unpacked chunk; acc lives in y between chunks. */
AI void strip_tile(const int N, int nbk, const strip_buf *buf, int64_t b0, int64_t n,
                   const uint8_t *x, size_t xs, float *y, int64_t ldy, bool first, __mmask16 m) {
    __m512 acc[NT];
    const int8_t *xq[NT];
    const float *dx[NT];
    const int32_t *cx[NT];
#pragma GCC unroll 8
    for (int t = 0; t < N; t++) {
        const uint8_t *xr = x + (size_t)t * xs;
        xq[t] = (const int8_t *)xr + b0 * 32;
        dx[t] = (const float *)(xr + n) + b0;
        cx[t] = (const int32_t *)(xr + n + (n / 32) * 4) + b0;
        acc[t] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, y + (size_t)t * ldy);
    }
    for (int b = 0; b < nbk; b++) {
        __m512i wq[8];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) wq[k] = _mm512_load_si512(&buf->q[b][k]);
        const __m512 dw = _mm512_load_ps((const float *)&buf->d[b]);
#pragma GCC unroll 8
        for (int t = 0; t < N; t++) {
            __m512i s = _mm512_set1_epi32(cx[t][b]);
            int32_t xv[8];
            memcpy(xv, xq[t] + b * 32, 32);
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) s = _mm512_dpbusd_epi32(s, wq[k], _mm512_set1_epi32(xv[k]));
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(dx[t][b])),
                                     _mm512_cvtepi32_ps(s), acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < N; t++) _mm512_mask_storeu_ps(y + (size_t)t * ldy, m, acc[t]);
}

/* One token straight from the rows (decode), the same arithmetic as the
 * unpacked tiles: per block, row r (and r + 8) times the token's values gives
 * 8 partial sums per row, added up exactly into one lane per row. */
AI void strip_one(const int kind, int64_t n, const uint8_t *w, size_t nb_row, int R,
                  const uint8_t *x, float *y, __mmask16 m) {
    const int64_t nb = n / 32;
    const int bsz = kind == K_Q8 ? 34 : 18;
    size_t ro[SR];
    int32_t ri[SR];
#pragma GCC unroll 16
    for (int r = 0; r < SR; r++) {
        ro[r] = (size_t)(r < R ? r : R - 1) * nb_row;
        ri[r] = (int32_t)ro[r];
    }
    const __m512i vidx = _mm512_loadu_si512(ri);
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13),
                  hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    const float *dx = (const float *)(x + n);
    const int32_t *cx = (const int32_t *)(x + n + nb * 4);
    const size_t span = (size_t)SR * nb_row;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *p = w + (size_t)b * bsz;
        if ((b & 7) == 0) { /* fetch the next strip in step with this one */
            size_t plo = span * (size_t)b / (size_t)nb,
                   phi = span * (size_t)(b + 8 < nb ? b + 8 : nb) / (size_t)nb;
            for (size_t q = plo & ~(size_t)63; q < phi; q += 64)
                _mm_prefetch((const char *)w + span + q, _MM_HINT_T0);
        }
        const __m512i xv =
            _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x + b * 32)));
        __m512i P[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            __m512i v;
            if (kind == K_Q8) {
                __m256i a = _mm256_loadu_si256((const __m256i *)(p + ro[r] + 2)),
                        c = _mm256_loadu_si256((const __m256i *)(p + ro[r + 8] + 2));
                v = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(a), c, 1),
                                     _mm512_set1_epi8((char)0x80));
            } else {
                __m256i a = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p + ro[r] + 2))),
                    _mm_loadu_si128((const __m128i *)(p + ro[r + 8] + 2)), 1);
                __m256i l = _mm256_and_si256(a, m4),
                        h = _mm256_and_si256(_mm256_srli_epi16(a, 4), m4);
                __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(l), h, 1);
                v = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
            }
            P[r] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v, xv);
        }
        __m512i A[4], B[2];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            A[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(P[2 * i], P[2 * i + 1]),
                                    _mm512_unpackhi_epi32(P[2 * i], P[2 * i + 1]));
#pragma GCC unroll 2
        for (int i = 0; i < 2; i++)
            B[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(A[2 * i], A[2 * i + 1]),
                                    _mm512_unpackhi_epi64(A[2 * i], A[2 * i + 1]));
        __m512i S = _mm512_add_epi32(_mm512_permutex2var_epi64(B[0], lo, B[1]),
                                     _mm512_permutex2var_epi64(B[0], hi, B[1]));
        S = _mm512_add_epi32(S, _mm512_set1_epi32(cx[b]));
        const __m512 dw =
            _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(vidx, p, 1)));
        acc = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(dx[b])), _mm512_cvtepi32_ps(S), acc);
    }
    _mm512_mask_storeu_ps(y, m, acc);
}

AI void strip_run(const int kind, int64_t n, const uint8_t *w, size_t nb_row, int R,
                  const uint8_t *x, size_t xs, int T, float *y, int64_t ldy) {
    const int64_t nb = n / 32;
    const __mmask16 m = (__mmask16)((1u << R) - 1);
    if (T == 1) {
        strip_one(kind, n, w, nb_row, R, x, y, m);
        return;
    }
    strip_buf buf __attribute__((aligned(64)));
    for (int64_t b0 = 0; b0 < nb; b0 += KB) {
        int nbk = nb - b0 < KB ? (int)(nb - b0) : KB;
        if (T <= 2) {
            /* decode streams the weights from memory: fetch the next strip (the
             * rows that follow, contiguous) in step with this one */
            const size_t span = (size_t)SR * nb_row, lo = span * (size_t)b0 / (size_t)nb,
                         hi = span * (size_t)(b0 + nbk) / (size_t)nb;
            for (size_t p = lo & ~(size_t)63; p < hi; p += 64)
                _mm_prefetch((const char *)w + span + p, _MM_HINT_T0);
        }
        unpack_chunk(kind, w, nb_row, R, b0, nbk, &buf);
        int t = 0;
        for (; t + NT <= T; t += NT)
            strip_tile(NT, nbk, &buf, b0, n, x + (size_t)t * xs, xs, y + (size_t)t * ldy, ldy,
                       b0 == 0, m);
        switch (T - t) {
#define CASE(N)                                                                                    \
    case N:                                                                                        \
        strip_tile(N, nbk, &buf, b0, n, x + (size_t)t * xs, xs, y + (size_t)t * ldy, ldy, b0 == 0, \
                   m);                                                                             \
        break;
            CASE(1)
            CASE(2)
            CASE(3)
            CASE(4)
            CASE(5)
            CASE(6)
            CASE(7)
#undef CASE
        default:
            break;
        }
    }
}

static void strip_q8(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x, size_t xs,
                     int T, float *y, int64_t ldy) {
    strip_run(K_Q8, n, w, nb_row, R, x, xs, T, y, ldy);
}
static void strip_q4(int64_t n, const uint8_t *w, size_t nb_row, int R, const uint8_t *x, size_t xs,
                     int T, float *y, int64_t ldy) {
    strip_run(K_Q4, n, w, nb_row, R, x, xs, T, y, ldy);
}

static const gk_gemm_kernels s_q8 = {
    .rmax = SR, .nmax = NT, .xrow = xrow_s, .pack = pack_s_q8, .strip = strip_q8};
static const gk_gemm_kernels s_q4 = {
    .rmax = SR, .nmax = NT, .xrow = xrow_s, .pack = pack_s_q4, .strip = strip_q4};

const gk_gemm_kernels *gk_gemm_kernels_avx512(gk_dtype type) {
    switch (type) {
    case GK_TYPE_Q8_0:
        return &s_q8;
    case GK_TYPE_Q4_0:
        return &s_q4;
    default:
        return impl_kernels(type);
    }
}
