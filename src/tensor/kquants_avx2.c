/*
 * kquants_avx2.c - AVX2 kernels for the k-quant and IQ4 dot products and the
 * Q8_K activation quantizer. Compiled with -mavx2 -mfma -mf16c
 * -ffp-contract=off and only called after dtype.c checked the CPU.
 *
 * Each kernel computes a super-block's integer sums exactly in 32-bit lanes,
 * reduces them to one int32, and then takes the same float step as the scalar
 * reference (gk_kq_acc / gk_kq_acc_min): the results equal kquants.c's bit for
 * bit. Integer products use maddubs (unsigned x signed bytes -> int16 pairs):
 * weights are kept unsigned (Q2_K 0..3, Q3_K 0..7, Q4_K 0..15, Q5_K 0..31,
 * Q6_K 0..63) and any offset (-4 for Q3_K, -32 for Q6_K) is taken out once per
 * super-block through Q8_K's bsums; no pair sum can reach int16 saturation
 * (2 * 63 * 128 < 32767). The IQ4 grid is signed, so its kernels use the sign
 * trick (|w| times y with w's sign): 2 * 127 * 127 < 32767.
 */
#include "tensor/kquants.h"
#include "base/base.h"

#include <immintrin.h>
#include <string.h>

static inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

static inline __m256i load256(const void *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}
static inline __m128i load128(const void *p) {
    return _mm_loadu_si128((const __m128i *)p);
}

/* Scale vector for a 32-weight group that spans sub-blocks 2g and 2g+1 of a
 * table of 8 int16 scales t (broadcast to both lanes): the low lane gets
 * t[2g], the high lane t[2g+1]. */
static inline __m256i scale_pair(__m256i t, int g) {
    const int lo = 0x0100 + 0x0202 * (2 * g), hi = 0x0100 + 0x0202 * (2 * g + 1);
    return _mm256_shuffle_epi8(
        t, _mm256_setr_epi16(lo, lo, lo, lo, lo, lo, lo, lo, hi, hi, hi, hi, hi, hi, hi, hi));
}

/* Scale vector t[j] in every int16 lane. */
static inline __m256i scale_one(__m256i t, int j) {
    return _mm256_shuffle_epi8(t, _mm256_set1_epi16((short)(0x0100 + 0x0202 * j)));
}

/* ------------------------------------------------------------------ Q2_K --- */

static inline void q2k_sums(const gk_block_q2_K *x, const gk_block_q8_K *y, int32_t *isum,
                            int32_t *msum) {
    const __m128i m4 = _mm_set1_epi8(15);
    __m128i sc8 = load128(x->scales);
    __m128i sc = _mm_and_si128(sc8, m4), mn = _mm_and_si128(_mm_srli_epi16(sc8, 4), m4);
    __m256i bs = load256(y->bsums);
    *msum = hsum_i32(_mm256_madd_epi16(bs, _mm256_cvtepu8_epi16(mn)));
    __m256i t[2] = {_mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sc)),
                    _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_srli_si128(sc, 8)))};
    const __m256i mask3 = _mm256_set1_epi8(3);
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i q = load256(x->qs + 32 * h);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m256i w = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), mask3);
            __m256i p = _mm256_maddubs_epi16(w, load256(y->qs + 128 * h + 32 * k));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, scale_pair(t[h], k)));
        }
    }
    *isum = hsum_i32(acc);
}

/* ------------------------------------------------------------------ Q3_K --- */

/* The 16 six-bit scales of a Q3_K block as bytes 0..63 (see gk_q3k_scale). */
static inline __m128i q3k_scales(const uint8_t *s) {
    uint32_t a[4], tmp;
    memcpy(a, s, 12);
    tmp = a[2];
    const uint32_t k1 = 0x03030303u, k2 = 0x0f0f0f0fu;
    a[2] = ((a[0] >> 4) & k2) | (((tmp >> 4) & k1) << 4);
    a[3] = ((a[1] >> 4) & k2) | (((tmp >> 6) & k1) << 4);
    a[0] = (a[0] & k2) | (((tmp >> 0) & k1) << 4);
    a[1] = (a[1] & k2) | (((tmp >> 2) & k1) << 4);
    /* from registers: a 16-byte load of four fresh 4-byte stores would stall */
    return _mm_setr_epi32((int)a[0], (int)a[1], (int)a[2], (int)a[3]);
}

static inline void q3k_sums(const gk_block_q3_K *x, const gk_block_q8_K *y, int32_t *isum,
                            int32_t *msum) {
    __m128i sc = _mm_sub_epi8(q3k_scales(x->scales), _mm_set1_epi8(32));
    __m256i t[2] = {_mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(sc)),
                    _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_srli_si128(sc, 8)))};
    const __m256i mask3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    __m256i hm = load256(x->hmask);
    /* q - 4 = (low + 4*hbit) - 4: the -4 is taken out through bsums */
    __m256i acc =
        _mm256_slli_epi32(_mm256_madd_epi16(load256(y->bsums), _mm256_cvtepi8_epi16(sc)), 2);
    acc = _mm256_sub_epi32(_mm256_setzero_si256(), acc);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i q = load256(x->qs + 32 * h);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), mask3);
            __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + k), one);
            __m256i w = _mm256_or_si256(lo, _mm256_slli_epi16(hb, 2));
            __m256i p = _mm256_maddubs_epi16(w, load256(y->qs + 128 * h + 32 * k));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, scale_pair(t[h], k)));
        }
    }
    *isum = hsum_i32(acc);
    *msum = 0;
}

/* ------------------------------------------------------------ Q4_K, Q5_K --- */

/* Unpacks the 12-byte field into 8 scales (bytes 0..7) and 8 mins (8..15). */
static inline __m128i q45_scales_mins(const uint8_t *s) {
    uint32_t u[4];
    memcpy(u, s, 12);
    const uint32_t k6 = 0x3f3f3f3fu, k4 = 0x0f0f0f0fu, k2 = 0x03030303u;
    u[3] = ((u[2] >> 4) & k4) | (((u[1] >> 6) & k2) << 4); /* mins 4..7 */
    uint32_t m03 = u[1] & k6;                              /* mins 0..3 */
    u[1] = (u[2] & k4) | (((u[0] >> 6) & k2) << 4);        /* scales 4..7 */
    u[2] = m03;
    u[0] &= k6; /* scales 0..3 */
    return _mm_setr_epi32((int)u[0], (int)u[1], (int)u[2], (int)u[3]);
}

/* msum = sum_j m[j] * (bsums[2j] + bsums[2j+1]); the scale table for the dots. */
static inline __m256i q45_prep(const uint8_t *scales, const gk_block_q8_K *y, int32_t *msum) {
    __m128i sm = q45_scales_mins(scales);
    __m128i mins = _mm_srli_si128(sm, 8);
    __m256i m2 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mins, mins));
    *msum = hsum_i32(_mm256_madd_epi16(load256(y->bsums), m2));
    return _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
}

static inline void q4k_sums(const gk_block_q4_K *x, const gk_block_q8_K *y, int32_t *isum,
                            int32_t *msum) {
    __m256i t = q45_prep(x->scales, y, msum);
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        __m256i q = load256(x->qs + 32 * p);
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        __m256i p0 = _mm256_maddubs_epi16(lo, load256(y->qs + 64 * p));
        __m256i p1 = _mm256_maddubs_epi16(hi, load256(y->qs + 64 * p + 32));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p0, scale_one(t, 2 * p)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p1, scale_one(t, 2 * p + 1)));
    }
    *isum = hsum_i32(acc);
}

static inline void q5k_sums(const gk_block_q5_K *x, const gk_block_q8_K *y, int32_t *isum,
                            int32_t *msum) {
    __m256i t = q45_prep(x->scales, y, msum);
    const __m256i m4 = _mm256_set1_epi8(15), b0 = _mm256_set1_epi8(1), b1 = _mm256_set1_epi8(2);
    __m256i qh = load256(x->qh);
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        __m256i q = load256(x->qs + 32 * p);
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(qh, b0), 4));
        hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(qh, b1), 3));
        qh = _mm256_srli_epi16(qh, 2);
        __m256i p0 = _mm256_maddubs_epi16(lo, load256(y->qs + 64 * p));
        __m256i p1 = _mm256_maddubs_epi16(hi, load256(y->qs + 64 * p + 32));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p0, scale_one(t, 2 * p)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p1, scale_one(t, 2 * p + 1)));
    }
    *isum = hsum_i32(acc);
}

/* ------------------------------------------------------------------ Q6_K --- */

static inline void q6k_sums(const gk_block_q6_K *x, const gk_block_q8_K *y, int32_t *isum,
                            int32_t *msum) {
    __m128i sc = load128(x->scales);
    __m256i t[2] = {_mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(sc)),
                    _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_srli_si128(sc, 8)))};
    const __m256i m4 = _mm256_set1_epi8(15), m03 = _mm256_set1_epi8(0x03),
                  m0c = _mm256_set1_epi8(0x0c), m30 = _mm256_set1_epi8(0x30),
                  mc0 = _mm256_set1_epi8((char)0xc0);
    /* q - 32: the -32 is taken out through bsums */
    __m256i acc =
        _mm256_slli_epi32(_mm256_madd_epi16(load256(y->bsums), _mm256_cvtepi8_epi16(sc)), 5);
    acc = _mm256_sub_epi32(_mm256_setzero_si256(), acc);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i l0 = load256(x->ql + 64 * h), l1 = load256(x->ql + 64 * h + 32);
        __m256i qh = load256(x->qh + 32 * h);
        __m256i w[4];
        w[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                               _mm256_slli_epi16(_mm256_and_si256(qh, m03), 4));
        w[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                               _mm256_slli_epi16(_mm256_and_si256(qh, m0c), 2));
        w[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                               _mm256_and_si256(qh, m30));
        w[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                               _mm256_srli_epi16(_mm256_and_si256(qh, mc0), 2));
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m256i p = _mm256_maddubs_epi16(w[k], load256(y->qs + 128 * h + 32 * k));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, scale_pair(t[h], k)));
        }
    }
    *isum = hsum_i32(acc);
    *msum = 0;
}

/* ------------------------------------------------------------------- IQ4 --- */

/* 32 IQ4 weights (16 bytes of nibbles) dotted with 32 int8 y, as 16 int16 pair sums. */
static inline __m256i iq4_pairs(const uint8_t *qs, const int8_t *y, __m256i grid) {
    const __m128i m4 = _mm_set1_epi8(15);
    __m128i q = load128(qs);
    __m256i idx = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
    __m256i w = _mm256_shuffle_epi8(grid, idx);
    __m256i yy = load256(y);
    return _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(yy, w));
}

static inline __m256i iq4_grid(void) {
    return _mm256_broadcastsi128_si256(load128(gk_kvalues_iq4nl));
}

static inline void iq4xs_sums(const gk_block_iq4_xs *x, const gk_block_q8_K *y, int32_t *isum,
                              int32_t *msum) {
    const __m256i grid = iq4_grid();
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int ib = 0; ib < 8; ib++) {
        __m256i p = iq4_pairs(x->qs + 16 * ib, y->qs + 32 * ib, grid);
        __m256i s = _mm256_set1_epi16((short)gk_iq4xs_scale(x, ib));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, s));
    }
    *isum = hsum_i32(acc);
    *msum = 0;
}

float gk_vec_dot_iq4_nl_q8_0_avx2(int64_t n, const void *vx, const void *vy) {
    const gk_block_iq4_nl *x = vx;
    const gk_block_q8_0 *y = vy;
    const __m256i grid = iq4_grid(), ones = _mm256_set1_epi16(1);
    float s = 0.0f;
    for (int64_t i = 0; i < n / GK_QK4_NL; i++) {
        int32_t isum = hsum_i32(_mm256_madd_epi16(iq4_pairs(x[i].qs, y[i].qs, grid), ones));
        s = gk_kq_acc(s, _cvtsh_ss(x[i].d) * _cvtsh_ss(y[i].d), isum);
    }
    return s;
}

/* ------------------------------------------------- dots from block sums --- */

/* One and four rows for each super-block type. The four-row form loads each
 * activation block once per four weight rows and prefetches the next four rows
 * as one stream (see dtype_avx2.c). MIN selects the float step with a min term. */
#define KQ_DOTS(NAME, BLOCK, SUMS, MIN)                                                            \
    static inline float NAME##_step(float s, const BLOCK *x, const gk_block_q8_K *y) {             \
        int32_t isum, msum;                                                                        \
        SUMS(x, y, &isum, &msum);                                                                  \
        if (MIN)                                                                                   \
            return gk_kq_acc_min(s, y->d * _cvtsh_ss(x->d), y->d * _cvtsh_ss(KQ_DMIN(x)), isum,    \
                                 msum);                                                            \
        return gk_kq_acc(s, y->d * _cvtsh_ss(x->d), isum);                                         \
    }                                                                                              \
    float gk_vec_dot_##NAME##_q8_K_avx2(int64_t n, const void *vx, const void *vy) {               \
        const BLOCK *x = vx;                                                                       \
        const gk_block_q8_K *y = vy;                                                               \
        float s = 0.0f;                                                                            \
        for (int64_t i = 0; i < n / GK_QK_K; i++) s = NAME##_step(s, x + i, y + i);                \
        return s;                                                                                  \
    }                                                                                              \
    void gk_vec_dot4_##NAME##_q8_K_avx2(int64_t n, const void *vx, size_t bx, const void *vy,      \
                                        float *out) {                                              \
        const gk_block_q8_K *y = vy;                                                               \
        const BLOCK *x[4];                                                                         \
        for (int r = 0; r < 4; r++) x[r] = (const BLOCK *)((const uint8_t *)vx + r * bx);          \
        float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};                                                     \
        for (int64_t i = 0; i < n / GK_QK_K; i++) {                                                \
            const char *next = (const char *)vx + 4 * bx + (size_t)i * 4 * sizeof(BLOCK);          \
            for (size_t o = 0; o < 4 * sizeof(BLOCK); o += 64)                                     \
                _mm_prefetch(next + o, _MM_HINT_T0);                                               \
            for (int r = 0; r < 4; r++) s[r] = NAME##_step(s[r], x[r] + i, y + i);                 \
        }                                                                                          \
        for (int r = 0; r < 4; r++) out[r] = s[r];                                                 \
    }

#define KQ_DMIN(x) ((x)->dmin)
KQ_DOTS(q2_K, gk_block_q2_K, q2k_sums, 1)
KQ_DOTS(q4_K, gk_block_q4_K, q4k_sums, 1)
KQ_DOTS(q5_K, gk_block_q5_K, q5k_sums, 1)
#undef KQ_DMIN
#define KQ_DMIN(x) ((x)->d)
KQ_DOTS(q3_K, gk_block_q3_K, q3k_sums, 0)
KQ_DOTS(q6_K, gk_block_q6_K, q6k_sums, 0)
KQ_DOTS(iq4_xs, gk_block_iq4_xs, iq4xs_sums, 0)
#undef KQ_DMIN

/* ---------------------------------------------------------- Q8_K quantizer --- */

/* Bit-identical to gk_quantize_q8_K_ref: the same max (first element of
 * largest magnitude; max_ps keeps its second operand when the first is NaN, so
 * NaNs are skipped as in the scalar), the same iscale, and cvtps rounds to
 * nearest even as gk_nearest_int does. */
void gk_quantize_q8_K_avx2(const float *src, void *dst, int64_t n) {
    gk_block_q8_K *b = dst;
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        const float *x = src + i * GK_QK_K;
        __m256 amaxv = _mm256_setzero_ps();
        for (int k = 0; k < GK_QK_K; k += 8)
            amaxv = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + k), absmask), amaxv);
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amaxv), _mm256_extractf128_ps(amaxv, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        float amax = _mm_cvtss_f32(m);
        if (amax == 0.0f) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float max = 0.0f;
        __m256 am = _mm256_set1_ps(amax);
        for (int k = 0; k < GK_QK_K; k += 8) {
            int hit = _mm256_movemask_ps(
                _mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x + k), absmask), am, _CMP_EQ_OQ));
            if (hit) {
                max = x[k + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        float iscale = -127.0f / max;
        __m256 vs = _mm256_set1_ps(iscale);
        for (int k = 0; k < GK_QK_K; k += 32) {
            __m256i q[4];
            for (int j = 0; j < 4; j++)
                q[j] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8 * j), vs));
            __m256i p =
                _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
            p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(b[i].qs + k), p);
        }
        /* bsums: 16-byte sums as int16 (|sum| <= 16 * 128) */
        const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
        for (int k = 0; k < GK_QK_K; k += 64) {
            __m256i s0 =
                _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, load256(b[i].qs + k)), ones16);
            __m256i s1 =
                _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, load256(b[i].qs + k + 32)), ones16);
            /* s0 lanes: sums of 4 bytes; hadd twice gives sums of 16 per 128-bit lane */
            __m256i h = _mm256_hadd_epi32(s0, s1); /* [s0 a0+a1, a2+a3, s1 b0+b1, b2+b3] per lane */
            h = _mm256_hadd_epi32(h, h);           /* [s0 lane sum, s1 lane sum, ...] */
            int32_t v[8];
            _mm256_storeu_si256((__m256i *)v, h);
            b[i].bsums[k / 16 + 0] = (int16_t)v[0];
            b[i].bsums[k / 16 + 1] = (int16_t)v[4];
            b[i].bsums[k / 16 + 2] = (int16_t)v[1];
            b[i].bsums[k / 16 + 3] = (int16_t)v[5];
        }
        b[i].d = 1.0f / iscale;
    }
}
