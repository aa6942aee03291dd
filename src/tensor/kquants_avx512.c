/*
 * kquants_avx512.c - AVX-512 (F, BW, VL, VNNI) kernels for the two k-quants that
 * carry most of a Q4_K_M/Q5_K_M/Q6_K file: Q4_K and Q6_K. Compiled with the
 * AVX-512 flags and -ffp-contract=off; dtype.c selects them only after cpuid
 * and XCR0 say the CPU and the OS support them.
 *
 * vpdpbusd multiplies 64 unsigned weight bytes by 64 signed activation bytes and
 * adds each group of four products to an int32 lane, with no int16
 * intermediate (so no saturation question); the lanes are then weighted by
 * their sub-block scale. As in kquants_avx2.c, a super-block's integer sums are
 * exact and the float step is gk_kq_acc/gk_kq_acc_min, so the results equal
 * the scalar reference bit for bit.
 */
#include "tensor/kquants.h"
#include "base/base.h"

#include <immintrin.h>
#include <string.h>

static inline int32_t hsum256_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* Q4_K: 8 scales (bytes 0..7) and 8 mins (8..15) from the packed 12 bytes. */
static inline __m128i q4k_scales_mins(const uint8_t *s) {
    uint32_t u[3];
    memcpy(u, s, 12);
    const uint32_t k6 = 0x3f3f3f3fu, k4 = 0x0f0f0f0fu, k2 = 0x03030303u;
    uint32_t sc03 = u[0] & k6, m03 = u[1] & k6;
    uint32_t sc47 = (u[2] & k4) | (((u[0] >> 6) & k2) << 4);
    uint32_t m47 = ((u[2] >> 4) & k4) | (((u[1] >> 6) & k2) << 4);
    return _mm_setr_epi32((int)sc03, (int)sc47, (int)m03, (int)m47);
}

static inline void q4k_sums(const gk_block_q4_K *x, const gk_block_q8_K *y, int32_t *isum,
                            int32_t *msum) {
    __m128i sm = q4k_scales_mins(x->scales);
    __m128i mins = _mm_srli_si128(sm, 8);
    __m256i m2 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mins, mins));
    *msum = hsum256_i32(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), m2));
    /* scale of sub-block j in int32 lane j (j < 8) */
    const __m512i sc = _mm512_castsi256_si512(_mm256_cvtepu8_epi32(sm));
    const __m256i m4 = _mm256_set1_epi8(15);
    __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * p));
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w,
                                        _mm512_loadu_si512((const void *)(y->qs + 64 * p)));
        /* lanes 0..7: sub-block 2p, lanes 8..15: sub-block 2p+1 */
        const __m512i idx = _mm512_set_epi32(2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1,
                                             2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p, 2 * p, 2 * p,
                                             2 * p, 2 * p, 2 * p, 2 * p, 2 * p);
        acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(d, _mm512_permutexvar_epi32(idx, sc)));
    }
    *isum = _mm512_reduce_add_epi32(acc);
}

static inline void q6k_sums(const gk_block_q6_K *x, const gk_block_q8_K *y, int32_t *isum,
                            int32_t *msum) {
    __m128i sc8 = _mm_loadu_si128((const __m128i *)x->scales);
    const __m512i sc = _mm512_cvtepi8_epi32(sc8); /* scale j in lane j */
    /* q - 32: the -32 is taken out through bsums */
    int32_t corr = hsum256_i32(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums),
                                                 _mm256_cvtepi8_epi16(sc8)));
    const __m256i m4 = _mm256_set1_epi8(15), m03 = _mm256_set1_epi8(0x03),
                  m0c = _mm256_set1_epi8(0x0c), m30 = _mm256_set1_epi8(0x30),
                  mc0 = _mm256_set1_epi8((char)0xc0);
    __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i l0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
        __m256i l1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
        __m256i qh = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
        __m256i w0 = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                     _mm256_slli_epi16(_mm256_and_si256(qh, m03), 4));
        __m256i w1 = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                     _mm256_slli_epi16(_mm256_and_si256(qh, m0c), 2));
        __m256i w2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                     _mm256_and_si256(qh, m30));
        __m256i w3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                     _mm256_srli_epi16(_mm256_and_si256(qh, mc0), 2));
        __m512i wa = _mm512_inserti64x4(_mm512_castsi256_si512(w0), w1, 1);
        __m512i wb = _mm512_inserti64x4(_mm512_castsi256_si512(w2), w3, 1);
        const int8_t *yq = y->qs + 128 * h;
        __m512i da =
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), wa, _mm512_loadu_si512((const void *)yq));
        __m512i db = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wb,
                                         _mm512_loadu_si512((const void *)(yq + 64)));
        /* lane l of da covers weights 4l..4l+3 of the half: sub-block 8h + l/4 */
        const int b = 8 * h;
        const __m512i ia = _mm512_set_epi32(b + 3, b + 3, b + 3, b + 3, b + 2, b + 2, b + 2, b + 2,
                                            b + 1, b + 1, b + 1, b + 1, b, b, b, b);
        const __m512i ib = _mm512_add_epi32(ia, _mm512_set1_epi32(4));
        acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(da, _mm512_permutexvar_epi32(ia, sc)));
        acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(db, _mm512_permutexvar_epi32(ib, sc)));
    }
    *isum = _mm512_reduce_add_epi32(acc) - 32 * corr;
    *msum = 0;
}

#define KQ512_DOTS(NAME, BLOCK, SUMS, STEP)                                                        \
    float gk_vec_dot_##NAME##_q8_K_avx512(int64_t n, const void *vx, const void *vy) {             \
        const BLOCK *x = vx;                                                                       \
        const gk_block_q8_K *y = vy;                                                               \
        float s = 0.0f;                                                                            \
        for (int64_t i = 0; i < n / GK_QK_K; i++) s = STEP(s, x + i, y + i);                       \
        return s;                                                                                  \
    }                                                                                              \
    void gk_vec_dot4_##NAME##_q8_K_avx512(int64_t n, const void *vx, size_t bx, const void *vy,    \
                                          float *out) {                                            \
        const gk_block_q8_K *y = vy;                                                               \
        const BLOCK *x[4];                                                                         \
        for (int r = 0; r < 4; r++) x[r] = (const BLOCK *)((const uint8_t *)vx + r * bx);          \
        float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};                                                     \
        for (int64_t i = 0; i < n / GK_QK_K; i++) {                                                \
            const char *next = (const char *)vx + 4 * bx + (size_t)i * 4 * sizeof(BLOCK);          \
            for (size_t o = 0; o < 4 * sizeof(BLOCK); o += 64)                                     \
                _mm_prefetch(next + o, _MM_HINT_T0);                                               \
            for (int r = 0; r < 4; r++) s[r] = STEP(s[r], x[r] + i, y + i);                        \
        }                                                                                          \
        for (int r = 0; r < 4; r++) out[r] = s[r];                                                 \
    }

static inline float q4k_step(float s, const gk_block_q4_K *x, const gk_block_q8_K *y) {
    int32_t isum, msum;
    q4k_sums(x, y, &isum, &msum);
    return gk_kq_acc_min(s, y->d * _cvtsh_ss(x->d), y->d * _cvtsh_ss(x->dmin), isum, msum);
}

static inline float q6k_step(float s, const gk_block_q6_K *x, const gk_block_q8_K *y) {
    int32_t isum, msum;
    q6k_sums(x, y, &isum, &msum);
    return gk_kq_acc(s, y->d * _cvtsh_ss(x->d), isum);
}

KQ512_DOTS(q4_K, gk_block_q4_K, q4k_sums, q4k_step)
KQ512_DOTS(q6_K, gk_block_q6_K, q6k_sums, q6k_step)
