/*
 * dtype_avx2.c - AVX2/FMA/F16C dot products and f16 row conversions. Compiled
 * with -mavx2 -mfma -mf16c and only called after dtype.c checked the CPU. Each dot
 * product computes the same sum as its scalar reference in dtype.c (in a different
 * order, so results agree to rounding, not bit for bit); the conversions give the
 * scalar functions' bits. test_dtype compares them.
 */
#include "tensor/dtype.h"
#include "base/base.h"

#include <immintrin.h>
#include <string.h>

static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

float gk_vec_dot_f32_avx2(int64_t n, const void *x, const void *y) {
    const float *a = x, *b = y;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

float gk_vec_dot_f16_avx2(int64_t n, const void *x, const void *y) {
    const uint16_t *a = x;
    const float *b = y;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256 a1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i + 8)));
        s0 = _mm256_fmadd_ps(a0, _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(a1, _mm256_loadu_ps(b + i + 8), s1);
    }
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += gk_fp16_to_fp32(a[i]) * b[i];
    return s;
}

static inline __m256 bf16x8_to_f32(const uint16_t *p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

float gk_vec_dot_bf16_avx2(int64_t n, const void *x, const void *y) {
    const uint16_t *a = x;
    const float *b = y;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(bf16x8_to_f32(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(bf16x8_to_f32(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += gk_bf16_to_fp32(a[i]) * b[i];
    return s;
}

/* Sum of products of signed bytes, as 8 float lanes (maddubs needs one unsigned
 * operand: use |x| and move x's sign onto y). */
static inline __m256 mul_sum_i8_pairs(__m256i x, __m256i y) {
    __m256i ax = _mm256_sign_epi8(x, x);
    __m256i sy = _mm256_sign_epi8(y, x);
    __m256i dot16 = _mm256_maddubs_epi16(ax, sy);
    __m256i dot32 = _mm256_madd_epi16(dot16, _mm256_set1_epi16(1));
    return _mm256_cvtepi32_ps(dot32);
}

/* Two blocks per iteration into two accumulators: the FMA latency, not the
 * integer work, bounds a one-accumulator loop. */
static inline __m256 q8_block(const gk_block_q8_0 *a, const gk_block_q8_0 *b, __m256 acc) {
    __m256 d = _mm256_set1_ps(_cvtsh_ss(a->d) * _cvtsh_ss(b->d));
    __m256i qa = _mm256_loadu_si256((const __m256i *)a->qs);
    __m256i qb = _mm256_loadu_si256((const __m256i *)b->qs);
    return _mm256_fmadd_ps(d, mul_sum_i8_pairs(qa, qb), acc);
}

float gk_vec_dot_q8_0_q8_0_avx2(int64_t n, const void *x, const void *y) {
    const gk_block_q8_0 *a = x, *b = y;
    const int64_t nb = n / GK_QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        _mm_prefetch((const char *)(a + i) + 1024, _MM_HINT_T0);
        acc0 = q8_block(a + i, b + i, acc0);
        acc1 = q8_block(a + i + 1, b + i + 1, acc1);
    }
    if (i < nb) acc0 = q8_block(a + i, b + i, acc0);
    return hsum256(_mm256_add_ps(acc0, acc1));
}

static inline __m256 q4_block(const gk_block_q4_0 *a, const gk_block_q8_0 *b, __m256 acc) {
    const __m128i lowmask = _mm_set1_epi8(0x0f);
    __m256 d = _mm256_set1_ps(_cvtsh_ss(a->d) * _cvtsh_ss(b->d));
    __m128i packed = _mm_loadu_si128((const __m128i *)a->qs);
    __m128i lo = _mm_and_si128(packed, lowmask);
    __m128i hi = _mm_and_si128(_mm_srli_epi16(packed, 4), lowmask);
    __m256i qa = _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
    __m256i qb = _mm256_loadu_si256((const __m256i *)b->qs);
    return _mm256_fmadd_ps(d, mul_sum_i8_pairs(qa, qb), acc);
}

float gk_vec_dot_q4_0_q8_0_avx2(int64_t n, const void *x, const void *y) {
    const gk_block_q4_0 *a = x;
    const gk_block_q8_0 *b = y;
    const int64_t nb = n / GK_QK4_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        acc0 = q4_block(a + i, b + i, acc0);
        acc1 = q4_block(a + i + 1, b + i + 1, acc1);
    }
    if (i < nb) acc0 = q4_block(a + i, b + i, acc0);
    return hsum256(_mm256_add_ps(acc0, acc1));
}

/* Q8_0 quantization, bit-identical to the scalar reference (dtype.c): the same
 * d = amax/127 rounded to fp16, the same 1/d, and roundf's ties-away-from-zero
 * (AVX rounds ties to even, so exact .5 fractions are fixed up). */
void gk_quantize_q8_0_avx2(const float *src, void *dst, int64_t n) {
    gk_block_q8_0 *b = dst;
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 half = _mm256_set1_ps(0.5f);
    for (int64_t i = 0; i < n / GK_QK8_0; i++) {
        const float *x = src + i * GK_QK8_0;
        __m256 v[4], amax = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            amax = _mm256_max_ps(amax, _mm256_and_ps(v[k], absmask));
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        float d = _mm_cvtss_f32(m) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = gk_fp32_to_fp16(d);
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++) {
            __m256 s = _mm256_mul_ps(v[k], vid);
            __m256 t = _mm256_round_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m256 r = _mm256_round_ps(s, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            /* |s - trunc(s)| == 0.5: a tie, which roundf sends away from zero */
            __m256 tie = _mm256_cmp_ps(_mm256_and_ps(_mm256_sub_ps(s, t), absmask), half, _CMP_EQ_OQ);
            __m256 away = _mm256_add_ps(t, _mm256_or_ps(_mm256_andnot_ps(absmask, s), _mm256_set1_ps(1.0f)));
            q[k] = _mm256_cvtps_epi32(_mm256_blendv_ps(r, away, tie));
        }
        /* pack 32 int32 -> 32 int8 in order */
        __m256i p01 = _mm256_packs_epi32(q[0], q[1]);
        __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)b[i].qs, p);
    }
}

/* Four weight rows against one activation row: the activation block and its
 * scale are loaded once, and the four accumulators are independent chains. */
void gk_vec_dot4_q8_0_q8_0_avx2(int64_t n, const void *x, size_t bx, const void *y, float *s) {
    const gk_block_q8_0 *b = y;
    const gk_block_q8_0 *a0 = x, *a1 = (const gk_block_q8_0 *)((const uint8_t *)x + bx),
                        *a2 = (const gk_block_q8_0 *)((const uint8_t *)x + 2 * bx),
                        *a3 = (const gk_block_q8_0 *)((const uint8_t *)x + 3 * bx);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / GK_QK8_0; i++) {
        const __m256i qb = _mm256_loadu_si256((const __m256i *)b[i].qs);
        const float db = _cvtsh_ss(b[i].d);
        /* Four short streams defeat the hardware prefetcher. The rows are
         * contiguous, so fetch the next four rows (the next tile) as one stream,
         * 4 blocks' worth of bytes per block here. */
        const char *next = (const char *)x + 4 * bx + (size_t)i * 4 * sizeof(gk_block_q8_0);
        _mm_prefetch(next, _MM_HINT_T0);
        _mm_prefetch(next + 64, _MM_HINT_T0);
        _mm_prefetch(next + 128, _MM_HINT_T0);
#define ROW(a, acc)                                                                               \
    acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(a[i].d) * db),                                 \
                          mul_sum_i8_pairs(_mm256_loadu_si256((const __m256i *)a[i].qs), qb), acc)
        ROW(a0, acc0);
        ROW(a1, acc1);
        ROW(a2, acc2);
        ROW(a3, acc3);
#undef ROW
    }
    s[0] = hsum256(acc0);
    s[1] = hsum256(acc1);
    s[2] = hsum256(acc2);
    s[3] = hsum256(acc3);
}

void gk_vec_dot4_q4_0_q8_0_avx2(int64_t n, const void *x, size_t bx, const void *y, float *s) {
    const gk_block_q8_0 *b = y;
    const gk_block_q4_0 *a[4];
    for (int r = 0; r < 4; r++) a[r] = (const gk_block_q4_0 *)((const uint8_t *)x + r * bx);
    const __m128i lowmask = _mm_set1_epi8(0x0f);
    const __m256i eight = _mm256_set1_epi8(8);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    for (int64_t i = 0; i < n / GK_QK4_0; i++) {
        __m256i qb = _mm256_loadu_si256((const __m256i *)b[i].qs);
        float db = _cvtsh_ss(b[i].d);
        /* the next four rows as one stream (see the Q8_0 kernel) */
        const char *next = (const char *)x + 4 * bx + (size_t)i * 4 * sizeof(gk_block_q4_0);
        _mm_prefetch(next, _MM_HINT_T0);
        _mm_prefetch(next + 64, _MM_HINT_T0);
        for (int r = 0; r < 4; r++) {
            __m128i packed = _mm_loadu_si128((const __m128i *)a[r][i].qs);
            __m128i lo = _mm_and_si128(packed, lowmask);
            __m128i hi = _mm_and_si128(_mm_srli_epi16(packed, 4), lowmask);
            __m256i qa = _mm256_sub_epi8(_mm256_set_m128i(hi, lo), eight);
            __m256 d = _mm256_set1_ps(_cvtsh_ss(a[r][i].d) * db);
            acc[r] = _mm256_fmadd_ps(d, mul_sum_i8_pairs(qa, qb), acc[r]);
        }
    }
    for (int r = 0; r < 4; r++) s[r] = hsum256(acc[r]);
}

void gk_vec_dot4_f32_avx2(int64_t n, const void *x, size_t bx, const void *y, float *s) {
    const float *b = y;
    const float *a[4];
    for (int r = 0; r < 4; r++) a[r] = (const float *)((const uint8_t *)x + r * bx);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 vb = _mm256_loadu_ps(b + i);
        const char *next = (const char *)x + 4 * bx + (size_t)i * 4 * sizeof(float);
        _mm_prefetch(next, _MM_HINT_T0);
        _mm_prefetch(next + 64, _MM_HINT_T0);
        for (int r = 0; r < 4; r++) acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(a[r] + i), vb, acc[r]);
    }
    for (int r = 0; r < 4; r++) {
        s[r] = hsum256(acc[r]);
        for (int64_t k = i; k < n; k++) s[r] += a[r][k] * b[k];
    }
}

/* f32 to f16 rows with F16C, rounded to nearest even as gk_fp32_to_fp16 rounds
 * (subnormals and overflow to inf included); 8 values holding a NaN go through
 * gk_fp32_to_fp16, which gives every NaN one quiet code where the instruction
 * keeps its payload. */
void gk_f16_from_float_avx2(const float *src, void *dst, int64_t n) {
    uint16_t *d = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(src + i);
        if (_mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q))) {
            for (int j = 0; j < 8; j++) d[i + j] = gk_fp32_to_fp16(src[i + j]);
            continue;
        }
        _mm_storeu_si128((__m128i *)(d + i),
                         _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    for (; i < n; i++) d[i] = gk_fp32_to_fp16(src[i]);
}

/* f16 to f32 rows with F16C (exact); 8 values holding a NaN go through
 * gk_fp16_to_fp32, which keeps a signalling NaN's bits where the instruction
 * quiets it. */
void gk_f16_to_float_avx2(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    const __m128i em = _mm_set1_epi16(0x7c00), mm = _mm_set1_epi16(0x03ff), z = _mm_setzero_si128();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm_loadu_si128((const __m128i *)(s + i));
        const __m128i nan = _mm_andnot_si128(_mm_cmpeq_epi16(_mm_and_si128(h, mm), z),
                                             _mm_cmpeq_epi16(_mm_and_si128(h, em), em));
        if (_mm_movemask_epi8(nan)) {
            for (int j = 0; j < 8; j++) dst[i + j] = gk_fp16_to_fp32(s[i + j]);
            continue;
        }
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    for (; i < n; i++) dst[i] = gk_fp16_to_fp32(s[i]);
}
