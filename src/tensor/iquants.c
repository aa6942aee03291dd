/*
 * iquants.c - scalar dequantization and dot products of IQ2_XXS, IQ2_XS, IQ2_S,
 * IQ3_XXS, IQ3_S, IQ1_S and IQ1_M (layouts in iquants.h). These are the references the AVX2
 * kernels (iquants_avx2.c) are tested against; the dots follow ggml's integer
 * sums and float steps (ggml-cpu/quants.c, the *_q8_K_generic kernels) in the
 * same order, so they give llama.cpp's results.
 */
#include "tensor/iquants.h"
#include "base/base.h"

#include <string.h>

/* Byte j of a grid entry (bytes in memory order: the lowest first). */
static inline uint8_t grid8(uint64_t e, int j) {
    return (uint8_t)(e >> (8 * j));
}
/* y[j] = db * byte j of grid entry g, negated where bit j of s is set (j < 8). */
static inline void signed_grid8(float *y, float db, uint64_t g, uint8_t s) {
    for (int j = 0; j < 8; j++) y[j] = db * (float)grid8(g, j) * (s & (1u << j) ? -1.0f : 1.0f);
}
static inline uint8_t grid4(uint32_t e, int j) {
    return (uint8_t)(e >> (8 * j));
}

static inline uint32_t rd32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ---------------------------------------------------------- dequantize --- */

void gk_dequantize_iq2_xxs(const void *src, float *y, int64_t n) {
    const gk_block_iq2_xxs *x = src;
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        const float d = gk_fp16_to_fp32(x[i].d);
        const uint8_t *q = (const uint8_t *)x[i].qs;
        for (int ib = 0; ib < GK_QK_K / 32; ib++) {
            uint32_t a = rd32(q + 8 * ib), b = rd32(q + 8 * ib + 4);
            const float db = d * (0.5f + (float)(b >> 28)) * 0.25f;
            for (int l = 0; l < 4; l++) {
                uint64_t g = gk_iq2xxs_grid[(a >> (8 * l)) & 255];
                uint8_t s = gk_ksigns_iq2xs[(b >> (7 * l)) & 127];
                signed_grid8(y, db, g, s);
                y += 8;
            }
        }
    }
}

/* Grid index l (0..3) of group ib of an IQ2_S block: 10 bits. */
static inline uint32_t iq2s_index(const gk_block_iq2_s *b, int ib, int l) {
    return b->qs[4 * ib + l] | (((uint32_t)b->qh[ib] >> (2 * l) & 3) << 8);
}

/* The two scales of group ib (IQ2_XS, IQ2_S): weights 0..15, then 16..31. */
static inline uint32_t iq2_scale(const uint8_t *scales, int ib, int half) {
    return half ? scales[ib] >> 4 : scales[ib] & 15u;
}

void gk_dequantize_iq2_xs(const void *src, float *y, int64_t n) {
    const gk_block_iq2_xs *x = src;
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        const float d = gk_fp16_to_fp32(x[i].d);
        for (int ib = 0; ib < GK_QK_K / 32; ib++) {
            for (int l = 0; l < 4; l++) {
                const float db = d * (0.5f + (float)iq2_scale(x[i].scales, ib, l / 2)) * 0.25f;
                const uint16_t q = x[i].qs[4 * ib + l];
                uint64_t g = gk_iq2xs_grid[q & 511];
                uint8_t s = gk_ksigns_iq2xs[q >> 9];
                signed_grid8(y, db, g, s);
                y += 8;
            }
        }
    }
}

void gk_dequantize_iq2_s(const void *src, float *y, int64_t n) {
    const gk_block_iq2_s *x = src;
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        const float d = gk_fp16_to_fp32(x[i].d);
        for (int ib = 0; ib < GK_QK_K / 32; ib++) {
            for (int l = 0; l < 4; l++) {
                const float db = d * (0.5f + (float)iq2_scale(x[i].scales, ib, l / 2)) * 0.25f;
                uint64_t g = gk_iq2s_grid[iq2s_index(&x[i], ib, l)];
                uint8_t s = x[i].signs[4 * ib + l];
                signed_grid8(y, db, g, s);
                y += 8;
            }
        }
    }
}

void gk_dequantize_iq3_xxs(const void *src, float *y, int64_t n) {
    const gk_block_iq3_xxs *x = src;
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        const float d = gk_fp16_to_fp32(x[i].d);
        const uint8_t *q = x[i].qs, *sas = x[i].qs + GK_QK_K / 4;
        for (int ib = 0; ib < GK_QK_K / 32; ib++) {
            uint32_t b = rd32(sas + 4 * ib);
            const float db = d * (0.5f + (float)(b >> 28)) * 0.5f;
            for (int l = 0; l < 4; l++) {
                uint8_t s = gk_ksigns_iq2xs[(b >> (7 * l)) & 127];
                uint32_t g1 = gk_iq3xxs_grid[q[8 * ib + 2 * l]];
                uint32_t g2 = gk_iq3xxs_grid[q[8 * ib + 2 * l + 1]];
                for (int j = 0; j < 4; j++) {
                    y[j] = db * (float)grid4(g1, j) * (s & (1u << j) ? -1.0f : 1.0f);
                    y[j + 4] = db * (float)grid4(g2, j) * (s & (1u << (j + 4)) ? -1.0f : 1.0f);
                }
                y += 8;
            }
        }
    }
}

/* Grid index k (0..7) of 32-weight group ib of an IQ3_S block: 9 bits. */
static inline uint32_t iq3s_index(const gk_block_iq3_s *b, int ib, int k) {
    return b->qs[8 * ib + k] | (((uint32_t)b->qh[ib] >> k & 1) << 8);
}

void gk_dequantize_iq3_s(const void *src, float *y, int64_t n) {
    const gk_block_iq3_s *x = src;
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        const float d = gk_fp16_to_fp32(x[i].d);
        for (int ib = 0; ib < GK_QK_K / 32; ib++) {
            uint32_t s4 = ib % 2 ? x[i].scales[ib / 2] >> 4 : x[i].scales[ib / 2] & 15;
            const float db = d * (float)(1 + 2 * s4);
            for (int l = 0; l < 4; l++) {
                uint8_t s = x[i].signs[4 * ib + l];
                uint32_t g1 = gk_iq3s_grid[iq3s_index(&x[i], ib, 2 * l)];
                uint32_t g2 = gk_iq3s_grid[iq3s_index(&x[i], ib, 2 * l + 1)];
                for (int j = 0; j < 4; j++) {
                    y[j] = db * (float)grid4(g1, j) * (s & (1u << j) ? -1.0f : 1.0f);
                    y[j + 4] = db * (float)grid4(g2, j) * (s & (1u << (j + 4)) ? -1.0f : 1.0f);
                }
                y += 8;
            }
        }
    }
}

/* Grid index l (0..3) of group ib of an IQ1_S block: 11 bits. */
static inline uint32_t iq1s_index(const gk_block_iq1_s *b, int ib, int l) {
    return b->qs[4 * ib + l] | (((uint32_t)b->qh[ib] >> (3 * l) & 7) << 8);
}

void gk_dequantize_iq1_s(const void *src, float *y, int64_t n) {
    const gk_block_iq1_s *x = src;
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        const float d = gk_fp16_to_fp32(x[i].d);
        for (int ib = 0; ib < GK_QK_K / 32; ib++) {
            uint16_t h = x[i].qh[ib];
            const float dl = d * (float)(2 * ((h >> 12) & 7) + 1);
            const float delta = h & 0x8000 ? -GK_IQ1S_DELTA : GK_IQ1S_DELTA;
            for (int l = 0; l < 4; l++) {
                uint64_t g = gk_iq1s_grid[iq1s_index(&x[i], ib, l)];
                for (int j = 0; j < 8; j++) y[j] = dl * ((float)(int8_t)grid8(g, j) + delta);
                y += 8;
            }
        }
    }
}

/* IQ1_M: the four scale words, little-endian. */
static inline uint32_t iq1m_sc(const gk_block_iq1_m *b, int k) {
    return (uint32_t)b->scales[2 * k] | (uint32_t)b->scales[2 * k + 1] << 8;
}

float gk_iq1_m_d(const gk_block_iq1_m *b) {
    uint16_t h = (uint16_t)(iq1m_sc(b, 0) >> 12 | (iq1m_sc(b, 1) >> 8 & 0x00f0) |
                            (iq1m_sc(b, 2) >> 4 & 0x0f00) | (iq1m_sc(b, 3) & 0xf000));
    return gk_fp16_to_fp32(h);
}

/* Scale of half h (0: weights 0..15, 1: 16..31) of group ib: 3 bits. */
static inline int32_t iq1m_scale(const gk_block_iq1_m *b, int ib, int h) {
    return (int32_t)(iq1m_sc(b, ib / 2) >> (6 * (ib % 2) + 3 * h) & 7);
}

/* Grid index l (0..3) of group ib: 11 bits; and whether its delta is negative. */
static inline uint32_t iq1m_index(const gk_block_iq1_m *b, int ib, int l) {
    uint32_t h = b->qh[2 * ib + l / 2] >> (4 * (l % 2));
    return b->qs[4 * ib + l] | (h & 7) << 8;
}
static inline bool iq1m_minus(const gk_block_iq1_m *b, int ib, int l) {
    return b->qh[2 * ib + l / 2] >> (4 * (l % 2)) & 8;
}

void gk_dequantize_iq1_m(const void *src, float *y, int64_t n) {
    const gk_block_iq1_m *x = src;
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        const float d = gk_iq1_m_d(&x[i]);
        for (int ib = 0; ib < GK_QK_K / 32; ib++) {
            for (int l = 0; l < 4; l++) {
                const float dl = d * (float)(2 * iq1m_scale(&x[i], ib, l / 2) + 1);
                const float delta = iq1m_minus(&x[i], ib, l) ? -GK_IQ1S_DELTA : GK_IQ1S_DELTA;
                uint64_t g = gk_iq1s_grid[iq1m_index(&x[i], ib, l)];
                for (int j = 0; j < 8; j++) y[j] = dl * ((float)(int8_t)grid8(g, j) + delta);
                y += 8;
            }
        }
    }
}

/* ---------------------------------------------------------------- dots --- */

/*
 * The float steps of every dot, in one place so that the scalar and the AVX2
 * kernels share them (this file is built without FMA, so nothing here is fused
 * and both kernels round alike): the kernels compute each block's exact
 * integer sums, these turn them into ggml's float sum.
 */
float gk_iq_finish(const void *x, size_t bx, const void *y, const int32_t *bsum, int64_t nb,
                   float sumf) {
    const gk_block_q8_K *q8 = y;
    for (int64_t i = 0; i < nb; i++) {
        uint16_t dh;
        memcpy(&dh, (const uint8_t *)x + (size_t)i * bx, 2); /* every block opens with fp16 d */
        const float d = gk_fp16_to_fp32(dh) * q8[i].d;
        sumf += d * (float)bsum[i];
    }
    return sumf;
}

float gk_iq1_s_finish(const void *vx, const void *vy, const int32_t *sumi, const int32_t *sumi1,
                      int64_t nb, float sumf) {
    const gk_block_iq1_s *x = vx;
    const gk_block_q8_K *y = vy;
    for (int64_t i = 0; i < nb; i++)
        sumf +=
            gk_fp16_to_fp32(x[i].d) * y[i].d * ((float)sumi[i] + GK_IQ1S_DELTA * (float)sumi1[i]);
    return sumf;
}

float gk_iq1_m_finish(const void *vx, const void *vy, const int32_t *sumi, const int32_t *sumi1,
                      int64_t nb, float sumf) {
    const gk_block_iq1_m *x = vx;
    const gk_block_q8_K *y = vy;
    for (int64_t i = 0; i < nb; i++)
        sumf += gk_iq1_m_d(&x[i]) * y[i].d * ((float)sumi[i] + GK_IQ1S_DELTA * (float)sumi1[i]);
    return sumf;
}

/* Block integer sums of one type over n weights, GK_IQ_CHUNK blocks at a time. */
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

static int32_t iq2_xxs_block(const gk_block_iq2_xxs *x, const gk_block_q8_K *y) {
    const uint8_t *q = (const uint8_t *)x->qs;
    const int8_t *q8 = y->qs;
    int32_t bsum = 0;
    for (int ib = 0; ib < GK_QK_K / 32; ib++) {
        uint32_t a = rd32(q + 8 * ib), b = rd32(q + 8 * ib + 4);
        int32_t sumi = 0;
        for (int l = 0; l < 4; l++) {
            uint64_t g = gk_iq2xxs_grid[(a >> (8 * l)) & 255];
            uint8_t s = gk_ksigns_iq2xs[(b >> (7 * l)) & 127];
            for (int j = 0; j < 8; j++) sumi += grid8(g, j) * q8[j] * (s & (1u << j) ? -1 : 1);
            q8 += 8;
        }
        bsum += sumi * (int32_t)(2 * (b >> 28) + 1);
    }
    return bsum;
}

static int32_t iq2_xs_block(const gk_block_iq2_xs *x, const gk_block_q8_K *y) {
    const int8_t *q8 = y->qs;
    int32_t bsum = 0;
    for (int ib = 0; ib < GK_QK_K / 32; ib++) {
        for (int h = 0; h < 2; h++) {
            int32_t sumi = 0;
            for (int l = 2 * h; l < 2 * h + 2; l++) {
                const uint16_t q = x->qs[4 * ib + l];
                uint64_t g = gk_iq2xs_grid[q & 511];
                uint8_t s = gk_ksigns_iq2xs[q >> 9];
                for (int j = 0; j < 8; j++) sumi += grid8(g, j) * q8[j] * (s & (1u << j) ? -1 : 1);
                q8 += 8;
            }
            bsum += sumi * (int32_t)(2 * iq2_scale(x->scales, ib, h) + 1);
        }
    }
    return bsum;
}

static int32_t iq2_s_block(const gk_block_iq2_s *x, const gk_block_q8_K *y) {
    const int8_t *q8 = y->qs;
    int32_t bsum = 0;
    for (int ib = 0; ib < GK_QK_K / 32; ib++) {
        for (int h = 0; h < 2; h++) {
            int32_t sumi = 0;
            for (int l = 2 * h; l < 2 * h + 2; l++) {
                uint64_t g = gk_iq2s_grid[iq2s_index(x, ib, l)];
                uint8_t s = x->signs[4 * ib + l];
                for (int j = 0; j < 8; j++) sumi += grid8(g, j) * q8[j] * (s & (1u << j) ? -1 : 1);
                q8 += 8;
            }
            bsum += sumi * (int32_t)(2 * iq2_scale(x->scales, ib, h) + 1);
        }
    }
    return bsum;
}

static int32_t iq3_xxs_block(const gk_block_iq3_xxs *x, const gk_block_q8_K *y) {
    const uint8_t *q = x->qs, *sas = x->qs + GK_QK_K / 4;
    const int8_t *q8 = y->qs;
    int32_t bsum = 0;
    for (int ib = 0; ib < GK_QK_K / 32; ib++) {
        uint32_t b = rd32(sas + 4 * ib);
        int32_t sumi = 0;
        for (int l = 0; l < 4; l++) {
            uint32_t g1 = gk_iq3xxs_grid[q[8 * ib + 2 * l]];
            uint32_t g2 = gk_iq3xxs_grid[q[8 * ib + 2 * l + 1]];
            uint8_t s = gk_ksigns_iq2xs[(b >> (7 * l)) & 127];
            for (int j = 0; j < 4; j++) {
                sumi += grid4(g1, j) * q8[j] * (s & (1u << j) ? -1 : 1);
                sumi += grid4(g2, j) * q8[j + 4] * (s & (1u << (j + 4)) ? -1 : 1);
            }
            q8 += 8;
        }
        bsum += sumi * (int32_t)(2 * (b >> 28) + 1);
    }
    return bsum;
}

static int32_t iq3_s_block(const gk_block_iq3_s *x, const gk_block_q8_K *y) {
    const int8_t *q8 = y->qs;
    int32_t bsum = 0;
    for (int ib = 0; ib < GK_QK_K / 32; ib++) {
        uint32_t s4 = ib % 2 ? x->scales[ib / 2] >> 4 : x->scales[ib / 2] & 15;
        int32_t sumi = 0;
        for (int l = 0; l < 4; l++) {
            uint32_t g1 = gk_iq3s_grid[iq3s_index(x, ib, 2 * l)];
            uint32_t g2 = gk_iq3s_grid[iq3s_index(x, ib, 2 * l + 1)];
            uint8_t s = x->signs[4 * ib + l];
            for (int j = 0; j < 4; j++) {
                sumi += grid4(g1, j) * q8[j] * (s & (1u << j) ? -1 : 1);
                sumi += grid4(g2, j) * q8[j + 4] * (s & (1u << (j + 4)) ? -1 : 1);
            }
            q8 += 8;
        }
        bsum += sumi * (int32_t)(2 * s4 + 1);
    }
    return bsum;
}

float gk_vec_dot_iq2_xxs_q8_K_ref(int64_t n, const void *vx, const void *vy) {
    DOT_LOOP(gk_block_iq2_xxs, iq2_xxs_block, 0.125f)
}
float gk_vec_dot_iq2_xs_q8_K_ref(int64_t n, const void *vx, const void *vy) {
    DOT_LOOP(gk_block_iq2_xs, iq2_xs_block, 0.125f)
}
float gk_vec_dot_iq2_s_q8_K_ref(int64_t n, const void *vx, const void *vy) {
    DOT_LOOP(gk_block_iq2_s, iq2_s_block, 0.125f)
}
float gk_vec_dot_iq3_xxs_q8_K_ref(int64_t n, const void *vx, const void *vy) {
    DOT_LOOP(gk_block_iq3_xxs, iq3_xxs_block, 0.25f)
}
float gk_vec_dot_iq3_s_q8_K_ref(int64_t n, const void *vx, const void *vy) {
    DOT_LOOP(gk_block_iq3_s, iq3_s_block, 1.0f)
}

float gk_vec_dot_iq1_s_q8_K_ref(int64_t n, const void *vx, const void *vy) {
    const gk_block_iq1_s *x = vx;
    const gk_block_q8_K *y = vy;
    int32_t si[GK_IQ_CHUNK], si1[GK_IQ_CHUNK];
    float sumf = 0.0f;
    for (int64_t i0 = 0; i0 < n / GK_QK_K; i0 += GK_IQ_CHUNK) {
        int64_t nb = n / GK_QK_K - i0 < GK_IQ_CHUNK ? n / GK_QK_K - i0 : GK_IQ_CHUNK;
        for (int64_t i = 0; i < nb; i++) {
            const gk_block_iq1_s *b = &x[i0 + i];
            const int8_t *q8 = y[i0 + i].qs;
            int32_t sumi = 0, sumi1 = 0;
            for (int ib = 0; ib < GK_QK_K / 32; ib++) {
                uint16_t h = b->qh[ib];
                const int32_t ls = 2 * ((h >> 12) & 7) + 1;
                const int32_t delta = h & 0x8000 ? -1 : 1;
                int32_t lsum = 0;
                for (int l = 0; l < 4; l++) {
                    uint64_t g = gk_iq1s_grid[iq1s_index(b, ib, l)];
                    for (int j = 0; j < 8; j++) lsum += q8[j] * (int8_t)grid8(g, j);
                    q8 += 8;
                }
                sumi += ls * lsum;
                sumi1 += ls * delta * (y[i0 + i].bsums[2 * ib] + y[i0 + i].bsums[2 * ib + 1]);
            }
            si[i] = sumi;
            si1[i] = sumi1;
        }
        sumf = gk_iq1_s_finish(x + i0, y + i0, si, si1, nb, sumf);
    }
    return sumf;
}

float gk_vec_dot_iq1_m_q8_K_ref(int64_t n, const void *vx, const void *vy) {
    const gk_block_iq1_m *x = vx;
    const gk_block_q8_K *y = vy;
    int32_t si[GK_IQ_CHUNK], si1[GK_IQ_CHUNK];
    float sumf = 0.0f;
    for (int64_t i0 = 0; i0 < n / GK_QK_K; i0 += GK_IQ_CHUNK) {
        int64_t nb = n / GK_QK_K - i0 < GK_IQ_CHUNK ? n / GK_QK_K - i0 : GK_IQ_CHUNK;
        for (int64_t i = 0; i < nb; i++) {
            const gk_block_iq1_m *b = &x[i0 + i];
            const int8_t *q8 = y[i0 + i].qs;
            int32_t sumi = 0, sumi1 = 0;
            for (int ib = 0; ib < GK_QK_K / 32; ib++) {
                for (int l = 0; l < 4; l++) {
                    const int32_t ls = 2 * iq1m_scale(b, ib, l / 2) + 1;
                    uint64_t g = gk_iq1s_grid[iq1m_index(b, ib, l)];
                    int32_t lsum = 0, qsum = 0;
                    for (int j = 0; j < 8; j++) {
                        lsum += q8[j] * (int8_t)grid8(g, j);
                        qsum += q8[j];
                    }
                    sumi += ls * lsum;
                    sumi1 += ls * (iq1m_minus(b, ib, l) ? -qsum : qsum);
                    q8 += 8;
                }
            }
            si[i] = sumi;
            si1[i] = sumi1;
        }
        sumf = gk_iq1_m_finish(x + i0, y + i0, si, si1, nb, sumf);
    }
    return sumf;
}
