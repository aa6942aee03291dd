/*
 * iquants_avx2.c - AVX2 dot products of IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S,
 * IQ1_S and IQ1_M against Q8_K. Built with -mavx2 -mfma -mf16c and called only after
 * dtype.c checked the CPU. Each kernel computes the exact integer sums of the
 * scalar reference (iquants.c) 32 weights at a time: the grid entries of a
 * group are gathered into one vector of magnitudes, the sign bits become a
 * vector of +-1 applied to the activations (_mm256_sign_epi8), and
 * maddubs/madd sum the products. The float steps are iquants.c's own
 * (gk_iq_finish, gk_iq1_s_finish, gk_iq1_m_finish), so the results equal the
 * scalar ones bit for bit.
 */
#include "tensor/iquants.h"

#include <immintrin.h>
#include <string.h>

static inline uint32_t rd32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* +1 or -1 for each of 32 weights from 4 bytes of sign bits (byte l, bit j:
 * weight 8l + j is negative). */
static inline __m256i signs32(uint32_t s4) {
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                            2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)s4), spread);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_or_si256(v, _mm256_set1_epi8(1));
}

/* Eight int32 partial sums of ls * mag[k] * sign[k] * q8[k] over 32 weights
 * (mag <= 62, so the 16-bit pair sums of maddubs cannot saturate; ls <= 31
 * scales them in the widening madd). */
static inline __m256i dot32(__m256i mag, __m256i sign, const int8_t *q8, int ls) {
    __m256i q = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)q8), sign);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(mag, q), _mm256_set1_epi16((short)ls));
}

/* As dot32 with one scale for weights 0..15 and another for 16..31 (the
 * maddubs pair sums of the low 128-bit lane are those of weights 0..15). */
static inline __m256i dot32h(__m256i mag, __m256i sign, const int8_t *q8, int ls1, int ls2) {
    __m256i q = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)q8), sign);
    const __m256i ls = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)ls1)),
                                               _mm_set1_epi16((short)ls2), 1);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(mag, q), ls);
}

/* The sign bytes of four 7-bit ksigns indices in b's low 28 bits. */
static inline uint32_t ksigns4(uint32_t b) {
    return (uint32_t)gk_ksigns_iq2xs[b & 127] | (uint32_t)gk_ksigns_iq2xs[(b >> 7) & 127] << 8 |
           (uint32_t)gk_ksigns_iq2xs[(b >> 14) & 127] << 16 |
           (uint32_t)gk_ksigns_iq2xs[(b >> 21) & 127] << 24;
}

static int32_t iq2_xxs_block(const gk_block_iq2_xxs *x, const gk_block_q8_K *y) {
    const uint8_t *q = (const uint8_t *)x->qs;
    __m256i acc = _mm256_setzero_si256();
    for (int ib = 0; ib < GK_QK_K / 32; ib++) {
        uint32_t a = rd32(q + 8 * ib), b = rd32(q + 8 * ib + 4);
        __m256i mag = _mm256_set_epi64x(
            (long long)gk_iq2xxs_grid[a >> 24], (long long)gk_iq2xxs_grid[(a >> 16) & 255],
            (long long)gk_iq2xxs_grid[(a >> 8) & 255], (long long)gk_iq2xxs_grid[a & 255]);
        acc = _mm256_add_epi32(
            acc, dot32(mag, signs32(ksigns4(b)), y->qs + 32 * ib, (int)(2 * (b >> 28) + 1)));
    }
    return hsum_i32(acc);
}

static int32_t iq2_xs_block(const gk_block_iq2_xs *x, const gk_block_q8_K *y) {
    __m256i acc = _mm256_setzero_si256();
    for (int ib = 0; ib < GK_QK_K / 32; ib++) {
        const uint16_t *q = x->qs + 4 * ib;
        __m256i mag = _mm256_set_epi64x(
            (long long)gk_iq2xs_grid[q[3] & 511], (long long)gk_iq2xs_grid[q[2] & 511],
            (long long)gk_iq2xs_grid[q[1] & 511], (long long)gk_iq2xs_grid[q[0] & 511]);
        uint32_t s4 =
            (uint32_t)gk_ksigns_iq2xs[q[0] >> 9] | (uint32_t)gk_ksigns_iq2xs[q[1] >> 9] << 8 |
            (uint32_t)gk_ksigns_iq2xs[q[2] >> 9] << 16 | (uint32_t)gk_ksigns_iq2xs[q[3] >> 9] << 24;
        const uint32_t sc = x->scales[ib];
        acc = _mm256_add_epi32(acc, dot32h(mag, signs32(s4), y->qs + 32 * ib,
                                           (int)(2 * (sc & 15) + 1), (int)(2 * (sc >> 4) + 1)));
    }
    return hsum_i32(acc);
}

static int32_t iq2_s_block(const gk_block_iq2_s *x, const gk_block_q8_K *y) {
    __m256i acc = _mm256_setzero_si256();
    for (int ib = 0; ib < GK_QK_K / 32; ib++) {
        const uint8_t *q = x->qs + 4 * ib;
        const uint32_t h = x->qh[ib];
#define G(l) (long long)gk_iq2s_grid[q[l] | ((h >> (2 * (l))) & 3) << 8]
        __m256i mag = _mm256_set_epi64x(G(3), G(2), G(1), G(0));
#undef G
        const uint32_t sc = x->scales[ib];
        acc = _mm256_add_epi32(acc, dot32h(mag, signs32(rd32(x->signs + 4 * ib)), y->qs + 32 * ib,
                                           (int)(2 * (sc & 15) + 1), (int)(2 * (sc >> 4) + 1)));
    }
    return hsum_i32(acc);
}

static int32_t iq3_xxs_block(const gk_block_iq3_xxs *x, const gk_block_q8_K *y) {
    const uint8_t *q = x->qs, *sas = x->qs + GK_QK_K / 4;
    __m256i acc = _mm256_setzero_si256();
    for (int ib = 0; ib < GK_QK_K / 32; ib++, q += 8) {
        uint32_t b = rd32(sas + 4 * ib);
        __m256i mag = _mm256_set_epi32((int)gk_iq3xxs_grid[q[7]], (int)gk_iq3xxs_grid[q[6]],
                                       (int)gk_iq3xxs_grid[q[5]], (int)gk_iq3xxs_grid[q[4]],
                                       (int)gk_iq3xxs_grid[q[3]], (int)gk_iq3xxs_grid[q[2]],
                                       (int)gk_iq3xxs_grid[q[1]], (int)gk_iq3xxs_grid[q[0]]);
        acc = _mm256_add_epi32(
            acc, dot32(mag, signs32(ksigns4(b)), y->qs + 32 * ib, (int)(2 * (b >> 28) + 1)));
    }
    return hsum_i32(acc);
}

static int32_t iq3_s_block(const gk_block_iq3_s *x, const gk_block_q8_K *y) {
    __m256i acc = _mm256_setzero_si256();
    for (int ib = 0; ib < GK_QK_K / 32; ib++) {
        const uint8_t *q = x->qs + 8 * ib;
        const uint32_t h = x->qh[ib];
#define G(k) (int)gk_iq3s_grid[q[k] | ((h >> (k)) & 1) << 8]
        __m256i mag = _mm256_set_epi32(G(7), G(6), G(5), G(4), G(3), G(2), G(1), G(0));
#undef G
        uint32_t s4 = ib % 2 ? x->scales[ib / 2] >> 4 : x->scales[ib / 2] & 15;
        acc = _mm256_add_epi32(
            acc, dot32(mag, signs32(rd32(x->signs + 4 * ib)), y->qs + 32 * ib, (int)(2 * s4 + 1)));
    }
    return hsum_i32(acc);
}

#define DOT_LOOP(type, block_sum, scale)                                                           \
    const type *x = vx;                                                                            \
    const gk_block_q8_K *y = vy;                                                                   \
    int32_t bs[GK_IQ_CHUNK];                                                                       \
    float sumf = 0.0f;                                                                             \
    for (int64_t i0 = 0; i0 < n / GK_QK_K; i0 += GK_IQ_CHUNK) {                                    \
        int64_t nb = n / GK_QK_K - i0 < GK_IQ_CHUNK ? n / GK_QK_K - i0 : GK_IQ_CHUNK;              \
        for (int64_t i = 0; i < nb; i++) bs[i] = block_sum(&x[i0 + i], &y[i0 + i]);                \
        sumf = gk_iq_finish(x + i0, sizeof *x, y + i0, bs, nb, sumf);                              \
    }                                                                                              \
    return (scale)*sumf;

float gk_vec_dot_iq2_xxs_q8_K_avx2(int64_t n, const void *vx, const void *vy) {
    DOT_LOOP(gk_block_iq2_xxs, iq2_xxs_block, 0.125f)
}
float gk_vec_dot_iq2_xs_q8_K_avx2(int64_t n, const void *vx, const void *vy) {
    DOT_LOOP(gk_block_iq2_xs, iq2_xs_block, 0.125f)
}
float gk_vec_dot_iq2_s_q8_K_avx2(int64_t n, const void *vx, const void *vy) {
    DOT_LOOP(gk_block_iq2_s, iq2_s_block, 0.125f)
}
float gk_vec_dot_iq3_xxs_q8_K_avx2(int64_t n, const void *vx, const void *vy) {
    DOT_LOOP(gk_block_iq3_xxs, iq3_xxs_block, 0.25f)
}
float gk_vec_dot_iq3_s_q8_K_avx2(int64_t n, const void *vx, const void *vy) {
    DOT_LOOP(gk_block_iq3_s, iq3_s_block, 1.0f)
}

float gk_vec_dot_iq1_s_q8_K_avx2(int64_t n, const void *vx, const void *vy) {
    const gk_block_iq1_s *x = vx;
    const gk_block_q8_K *y = vy;
    int32_t si[GK_IQ_CHUNK], si1[GK_IQ_CHUNK];
    const __m256i ones8 = _mm256_set1_epi8(1);
    float sumf = 0.0f;
    for (int64_t i0 = 0; i0 < n / GK_QK_K; i0 += GK_IQ_CHUNK) {
        int64_t nb = n / GK_QK_K - i0 < GK_IQ_CHUNK ? n / GK_QK_K - i0 : GK_IQ_CHUNK;
        for (int64_t i = 0; i < nb; i++) {
            const gk_block_iq1_s *b = &x[i0 + i];
            const gk_block_q8_K *q8 = &y[i0 + i];
            __m256i acc = _mm256_setzero_si256();
            int32_t sumi1 = 0;
            for (int ib = 0; ib < GK_QK_K / 32; ib++) {
                const uint32_t h = b->qh[ib];
                const uint8_t *q = b->qs + 4 * ib;
#define G(l) (long long)gk_iq1s_grid[q[l] | ((h >> (3 * (l))) & 7) << 8]
                __m256i g = _mm256_set_epi64x(G(3), G(2), G(1), G(0));
#undef G
                /* grid values are -1, 0 or 1: sign_epi8 multiplies by them */
                __m256i p =
                    _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(q8->qs + 32 * ib)), g);
                const int32_t ls = (int32_t)(2 * ((h >> 12) & 7) + 1);
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, p),
                                                              _mm256_set1_epi16((short)ls)));
                sumi1 += ls * (h & 0x8000 ? -1 : 1) * (q8->bsums[2 * ib] + q8->bsums[2 * ib + 1]);
            }
            si[i] = hsum_i32(acc);
            si1[i] = sumi1;
        }
        sumf = gk_iq1_s_finish(x + i0, y + i0, si, si1, nb, sumf);
    }
    return sumf;
}

float gk_vec_dot_iq1_m_q8_K_avx2(int64_t n, const void *vx, const void *vy) {
    const gk_block_iq1_m *x = vx;
    const gk_block_q8_K *y = vy;
    int32_t si[GK_IQ_CHUNK], si1[GK_IQ_CHUNK];
    const __m256i ones8 = _mm256_set1_epi8(1);
    float sumf = 0.0f;
    for (int64_t i0 = 0; i0 < n / GK_QK_K; i0 += GK_IQ_CHUNK) {
        int64_t nb = n / GK_QK_K - i0 < GK_IQ_CHUNK ? n / GK_QK_K - i0 : GK_IQ_CHUNK;
        for (int64_t i = 0; i < nb; i++) {
            const gk_block_iq1_m *b = &x[i0 + i];
            const gk_block_q8_K *q8 = &y[i0 + i];
            uint16_t sc[4];
            memcpy(sc, b->scales, 8);
            __m256i acc = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
            for (int ib = 0; ib < GK_QK_K / 32; ib++) {
                const uint8_t *q = b->qs + 4 * ib;
                const uint32_t h = (uint32_t)b->qh[2 * ib] | (uint32_t)b->qh[2 * ib + 1] << 8;
                /* index l takes bits 4l..4l+2 of h; bit 4l+3 is its delta's sign */
#define G(l) (long long)gk_iq1s_grid[q[l] | ((h >> (4 * (l))) & 7) << 8]
                __m256i g = _mm256_set_epi64x(G(3), G(2), G(1), G(0));
#undef G
#define D(l) (h >> (4 * (l) + 3) & 1 ? -1ll : 0x0101010101010101ll)
                __m256i dsign = _mm256_set_epi64x(D(3), D(2), D(1), D(0));
#undef D
                const uint32_t s = (uint32_t)sc[ib / 2] >> (6 * (ib % 2));
                const __m256i ls = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_set1_epi16((short)(2 * (s & 7) + 1))),
                    _mm_set1_epi16((short)(2 * (s >> 3 & 7) + 1)), 1);
                const __m256i a = _mm256_loadu_si256((const __m256i *)(q8->qs + 32 * ib));
                /* grid values are -1, 0 or 1, the delta signs -1 or 1: sign_epi8
                 * multiplies by them */
                acc = _mm256_add_epi32(
                    acc,
                    _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, _mm256_sign_epi8(a, g)), ls));
                acc1 = _mm256_add_epi32(
                    acc1,
                    _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, _mm256_sign_epi8(a, dsign)), ls));
            }
            si[i] = hsum_i32(acc);
            si1[i] = hsum_i32(acc1);
        }
        sumf = gk_iq1_m_finish(x + i0, y + i0, si, si1, nb, sumf);
    }
    return sumf;
}
