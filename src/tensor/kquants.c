/*
 * kquants.c - scalar reference for the k-quant and IQ4 types: dequantization,
 * the Q8_K activation quantizer and the dot products. These are the oracle for
 * kquants_avx2.c. Weight quantizers live in kquants_quant.c.
 *
 * Element order inside a super-block (the part of the format that is easy to
 * get wrong): the 256 weights are split into halves of 128 (Q2_K, Q3_K, Q6_K)
 * or quarters of 64 (Q4_K, Q5_K). In a half, 32 bytes of qs hold four 2-bit
 * groups: weight 32k + l of the half is bits 2k..2k+1 of qs[l]. In a quarter, 32
 * bytes hold two nibble groups: weight l is the low nibble of qs[l], weight
 * 32 + l the high one. Extra bits (Q3_K hmask, Q5_K qh, Q6_K qh) are indexed by
 * l the same way, with the bit position naming the group.
 */
#include "tensor/kquants.h"
#include "base/base.h"

#include <math.h>
#include <string.h>

const int8_t gk_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

/* ------------------------------------------------------- element decoders --- */

/* The 256 quantized integers of a super-block, in weight order, and the
 * sub-block scales: shared by to_float and the reference dots, so both read the
 * format in one place. */

static void q2k_ints(const gk_block_q2_K *b, int8_t q[GK_QK_K]) {
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++)
                q[128 * h + 32 * k + l] = (int8_t)((b->qs[32 * h + l] >> (2 * k)) & 3);
}

/* Q3_K: 2 low bits as Q2_K; hmask bit (4h + k) of byte l set means +0, clear -4. */
static void q3k_ints(const gk_block_q3_K *b, int8_t q[GK_QK_K]) {
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                int lo = (b->qs[32 * h + l] >> (2 * k)) & 3;
                int hb = (b->hmask[l] >> (4 * h + k)) & 1;
                q[128 * h + 32 * k + l] = (int8_t)(lo - (hb ? 0 : 4));
            }
}

static void q4k_ints(const gk_block_q4_K *b, int8_t q[GK_QK_K]) {
    for (int p = 0; p < 4; p++)
        for (int l = 0; l < 32; l++) {
            q[64 * p + l] = (int8_t)(b->qs[32 * p + l] & 15);
            q[64 * p + 32 + l] = (int8_t)(b->qs[32 * p + l] >> 4);
        }
}

/* Q5_K: the fifth bit of weight 64p + l is qh[l] bit 2p, of 64p + 32 + l bit 2p + 1. */
static void q5k_ints(const gk_block_q5_K *b, int8_t q[GK_QK_K]) {
    for (int p = 0; p < 4; p++)
        for (int l = 0; l < 32; l++) {
            q[64 * p + l] = (int8_t)((b->qs[32 * p + l] & 15) | (((b->qh[l] >> (2 * p)) & 1) << 4));
            q[64 * p + 32 + l] =
                (int8_t)((b->qs[32 * p + l] >> 4) | (((b->qh[l] >> (2 * p + 1)) & 1) << 4));
        }
}

/* Q6_K, per half h (ql + 64h, qh + 32h), weight 32g + l of the half:
 *   g0: ql[l] low,  qh[l] bits 0-1     g1: ql[l+32] low,  qh[l] bits 2-3
 *   g2: ql[l] high, qh[l] bits 4-5     g3: ql[l+32] high, qh[l] bits 6-7 */
static void q6k_ints(const gk_block_q6_K *b, int8_t q[GK_QK_K]) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        int8_t *o = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            o[l] = (int8_t)(((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32);
            o[l + 32] = (int8_t)(((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32);
            o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

/* IQ4: weight j of a 32-group is the low nibble of qs[j], weight 16 + j the high. */
static void iq4_ints(const uint8_t *qs, int8_t q[32]) {
    for (int j = 0; j < 16; j++) {
        q[j] = gk_kvalues_iq4nl[qs[j] & 15];
        q[j + 16] = gk_kvalues_iq4nl[qs[j] >> 4];
    }
}

/* -------------------------------------------------------------- to_float --- */

void gk_dequantize_q2_K(const void *src, float *dst, int64_t n) {
    const gk_block_q2_K *b = src;
    int8_t q[GK_QK_K];
    for (int64_t i = 0; i < n / GK_QK_K; i++, dst += GK_QK_K) {
        float d = gk_fp16_to_fp32(b[i].d), dmin = gk_fp16_to_fp32(b[i].dmin);
        q2k_ints(&b[i], q);
        for (int j = 0; j < 16; j++) {
            float dl = d * (float)(b[i].scales[j] & 15), ml = dmin * (float)(b[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++) dst[16 * j + l] = dl * (float)q[16 * j + l] - ml;
        }
    }
}

void gk_dequantize_q3_K(const void *src, float *dst, int64_t n) {
    const gk_block_q3_K *b = src;
    int8_t q[GK_QK_K];
    for (int64_t i = 0; i < n / GK_QK_K; i++, dst += GK_QK_K) {
        float d = gk_fp16_to_fp32(b[i].d);
        q3k_ints(&b[i], q);
        for (int j = 0; j < 16; j++) {
            float dl = d * (float)gk_q3k_scale(j, b[i].scales);
            for (int l = 0; l < 16; l++) dst[16 * j + l] = dl * (float)q[16 * j + l];
        }
    }
}

void gk_dequantize_q4_K(const void *src, float *dst, int64_t n) {
    const gk_block_q4_K *b = src;
    int8_t q[GK_QK_K];
    for (int64_t i = 0; i < n / GK_QK_K; i++, dst += GK_QK_K) {
        float d = gk_fp16_to_fp32(b[i].d), dmin = gk_fp16_to_fp32(b[i].dmin);
        q4k_ints(&b[i], q);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            gk_kq_scale_min(j, b[i].scales, &sc, &m);
            float dl = d * (float)sc, ml = dmin * (float)m;
            for (int l = 0; l < 32; l++) dst[32 * j + l] = dl * (float)q[32 * j + l] - ml;
        }
    }
}

void gk_dequantize_q5_K(const void *src, float *dst, int64_t n) {
    const gk_block_q5_K *b = src;
    int8_t q[GK_QK_K];
    for (int64_t i = 0; i < n / GK_QK_K; i++, dst += GK_QK_K) {
        float d = gk_fp16_to_fp32(b[i].d), dmin = gk_fp16_to_fp32(b[i].dmin);
        q5k_ints(&b[i], q);
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            gk_kq_scale_min(j, b[i].scales, &sc, &m);
            float dl = d * (float)sc, ml = dmin * (float)m;
            for (int l = 0; l < 32; l++) dst[32 * j + l] = dl * (float)q[32 * j + l] - ml;
        }
    }
}

void gk_dequantize_q6_K(const void *src, float *dst, int64_t n) {
    const gk_block_q6_K *b = src;
    int8_t q[GK_QK_K];
    for (int64_t i = 0; i < n / GK_QK_K; i++, dst += GK_QK_K) {
        float d = gk_fp16_to_fp32(b[i].d);
        q6k_ints(&b[i], q);
        for (int j = 0; j < 16; j++) {
            float dl = d * (float)b[i].scales[j];
            for (int l = 0; l < 16; l++) dst[16 * j + l] = dl * (float)q[16 * j + l];
        }
    }
}

void gk_dequantize_q8_K(const void *src, float *dst, int64_t n) {
    const gk_block_q8_K *b = src;
    for (int64_t i = 0; i < n / GK_QK_K; i++, dst += GK_QK_K)
        for (int j = 0; j < GK_QK_K; j++) dst[j] = b[i].d * (float)b[i].qs[j];
}

void gk_dequantize_iq4_nl(const void *src, float *dst, int64_t n) {
    const gk_block_iq4_nl *b = src;
    int8_t q[32];
    for (int64_t i = 0; i < n / GK_QK4_NL; i++, dst += GK_QK4_NL) {
        float d = gk_fp16_to_fp32(b[i].d);
        iq4_ints(b[i].qs, q);
        for (int j = 0; j < 32; j++) dst[j] = d * (float)q[j];
    }
}

void gk_dequantize_iq4_xs(const void *src, float *dst, int64_t n) {
    const gk_block_iq4_xs *b = src;
    int8_t q[32];
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        float d = gk_fp16_to_fp32(b[i].d);
        for (int ib = 0; ib < 8; ib++, dst += 32) {
            float dl = d * (float)gk_iq4xs_scale(&b[i], ib);
            iq4_ints(b[i].qs + 16 * ib, q);
            for (int j = 0; j < 32; j++) dst[j] = dl * (float)q[j];
        }
    }
}

/* ---------------------------------------------------------- Q8_K quantizer --- */

/* ggml's quantize_row_q8_K_ref: the element of largest magnitude (first one on
 * ties, with its sign) maps to -127: iscale = -127/max, q = min(127,
 * nearest(iscale*x)), d = 1/iscale. NaNs never win the max (x > amax is false). */
void gk_quantize_q8_K_ref(const float *src, void *dst, int64_t n) {
    gk_block_q8_K *b = dst;
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        const float *x = src + i * GK_QK_K;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < GK_QK_K; j++) {
            float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float iscale = -127.0f / max;
        for (int j = 0; j < GK_QK_K; j++) {
            int v = gk_nearest_int(iscale * x[j]);
            v = v < 127 ? v : 127;
            b[i].qs[j] = (int8_t)(v > -128 ? v : -128);
        }
        for (int j = 0; j < GK_QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += b[i].qs[16 * j + l];
            b[i].bsums[j] = (int16_t)sum;
        }
        b[i].d = 1.0f / iscale;
    }
}

/* ------------------------------------------------------- reference dots --- */

/* Sum over sub-blocks of scale * (q . y) for sub-blocks of `len` weights. */
static int32_t scaled_sum(const int8_t *q, const int8_t *y, const int *sc, int nsub, int len) {
    int32_t isum = 0;
    for (int j = 0; j < nsub; j++) {
        int32_t s = 0;
        for (int l = 0; l < len; l++) s += (int32_t)q[j * len + l] * (int32_t)y[j * len + l];
        isum += sc[j] * s;
    }
    return isum;
}

float gk_vec_dot_q2_K_q8_K_ref(int64_t n, const void *vx, const void *vy) {
    const gk_block_q2_K *x = vx;
    const gk_block_q8_K *y = vy;
    float s = 0.0f;
    int8_t q[GK_QK_K];
    int sc[16];
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        q2k_ints(&x[i], q);
        int32_t msum = 0;
        for (int j = 0; j < 16; j++) {
            sc[j] = x[i].scales[j] & 15;
            msum += (x[i].scales[j] >> 4) * y[i].bsums[j];
        }
        int32_t isum = scaled_sum(q, y[i].qs, sc, 16, 16);
        s = gk_kq_acc_min(s, y[i].d * gk_fp16_to_fp32(x[i].d), y[i].d * gk_fp16_to_fp32(x[i].dmin),
                          isum, msum);
    }
    return s;
}

float gk_vec_dot_q3_K_q8_K_ref(int64_t n, const void *vx, const void *vy) {
    const gk_block_q3_K *x = vx;
    const gk_block_q8_K *y = vy;
    float s = 0.0f;
    int8_t q[GK_QK_K];
    int sc[16];
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        q3k_ints(&x[i], q);
        for (int j = 0; j < 16; j++) sc[j] = gk_q3k_scale(j, x[i].scales);
        int32_t isum = scaled_sum(q, y[i].qs, sc, 16, 16);
        s = gk_kq_acc(s, y[i].d * gk_fp16_to_fp32(x[i].d), isum);
    }
    return s;
}

/* Q4_K and Q5_K: the min of sub-block j (32 weights) meets bsums 2j and 2j+1. */
static float dot_q45(float s, const int8_t *q, const uint8_t *scales, uint16_t d, uint16_t dmin,
                     const gk_block_q8_K *y) {
    int sc[8];
    int32_t msum = 0;
    for (int j = 0; j < 8; j++) {
        uint8_t a, m;
        gk_kq_scale_min(j, scales, &a, &m);
        sc[j] = a;
        msum += m * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
    }
    int32_t isum = scaled_sum(q, y->qs, sc, 8, 32);
    return gk_kq_acc_min(s, y->d * gk_fp16_to_fp32(d), y->d * gk_fp16_to_fp32(dmin), isum, msum);
}

float gk_vec_dot_q4_K_q8_K_ref(int64_t n, const void *vx, const void *vy) {
    const gk_block_q4_K *x = vx;
    const gk_block_q8_K *y = vy;
    float s = 0.0f;
    int8_t q[GK_QK_K];
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        q4k_ints(&x[i], q);
        s = dot_q45(s, q, x[i].scales, x[i].d, x[i].dmin, &y[i]);
    }
    return s;
}

float gk_vec_dot_q5_K_q8_K_ref(int64_t n, const void *vx, const void *vy) {
    const gk_block_q5_K *x = vx;
    const gk_block_q8_K *y = vy;
    float s = 0.0f;
    int8_t q[GK_QK_K];
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        q5k_ints(&x[i], q);
        s = dot_q45(s, q, x[i].scales, x[i].d, x[i].dmin, &y[i]);
    }
    return s;
}

float gk_vec_dot_q6_K_q8_K_ref(int64_t n, const void *vx, const void *vy) {
    const gk_block_q6_K *x = vx;
    const gk_block_q8_K *y = vy;
    float s = 0.0f;
    int8_t q[GK_QK_K];
    int sc[16];
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        q6k_ints(&x[i], q);
        for (int j = 0; j < 16; j++) sc[j] = x[i].scales[j];
        int32_t isum = scaled_sum(q, y[i].qs, sc, 16, 16);
        s = gk_kq_acc(s, y[i].d * gk_fp16_to_fp32(x[i].d), isum);
    }
    return s;
}

float gk_vec_dot_iq4_nl_q8_0_ref(int64_t n, const void *vx, const void *vy) {
    const gk_block_iq4_nl *x = vx;
    const gk_block_q8_0 *y = vy;
    float s = 0.0f;
    int8_t q[32];
    for (int64_t i = 0; i < n / GK_QK4_NL; i++) {
        iq4_ints(x[i].qs, q);
        int32_t isum = 0;
        for (int j = 0; j < 32; j++) isum += (int32_t)q[j] * (int32_t)y[i].qs[j];
        s = gk_kq_acc(s, gk_fp16_to_fp32(x[i].d) * gk_fp16_to_fp32(y[i].d), isum);
    }
    return s;
}

float gk_vec_dot_iq4_xs_q8_K_ref(int64_t n, const void *vx, const void *vy) {
    const gk_block_iq4_xs *x = vx;
    const gk_block_q8_K *y = vy;
    float s = 0.0f;
    int8_t q[GK_QK_K];
    int sc[8];
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        for (int ib = 0; ib < 8; ib++) {
            iq4_ints(x[i].qs + 16 * ib, q + 32 * ib);
            sc[ib] = gk_iq4xs_scale(&x[i], ib);
        }
        int32_t isum = scaled_sum(q, y[i].qs, sc, 8, 32);
        s = gk_kq_acc(s, y[i].d * gk_fp16_to_fp32(x[i].d), isum);
    }
    return s;
}
