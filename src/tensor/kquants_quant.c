/*
 * kquants_quant.c - weight quantizers for Q2_K..Q6_K: llama.cpp's reference
 * algorithms without an importance matrix (what llama-quantize runs when no
 * --imatrix is given), written from their description:
 *
 *   - each sub-block gets a float scale (and min) by a small search: for the
 *     asymmetric types (Q2_K, Q4_K, Q5_K) a least-squares fit of scale and min
 *     over a range of trial scales ("qkx2"); for Q3_K an iterative
 *     one-weight-at-a-time refinement ("q3"); for Q6_K trial scales around
 *     nmax/max ("qx");
 *   - the sub-block scales are then quantized against the largest one (4, 6
 *     or 8 bits), and the weights are re-quantized with the scales as stored,
 *     so the rounding of the scales does not leave a bias.
 *
 * The file is compiled with -ffp-contract=off, like ggml's reference (which
 * does not rely on fused multiply-adds either).
 */
#include "tensor/kquants.h"
#include "base/base.h"

#include <math.h>
#include <string.h>

#define GROUP_EPS 1e-15f

static inline int clampi(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* Asymmetric fit: x ~ scale * L - min with L in 0..nmax, weighted by w. Tries
 * iscale = (rmin + rdelta*k + nmax) / (max - min), k = 0..nstep, solving the
 * weighted least squares for scale and min at each L, keeping the best (by
 * |diff| when use_mad, else squared diff). Returns the scale, *the_min = -min. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           float *the_min, float rmin, float rdelta, int nstep, bool use_mad) {
    uint8_t Laux[32];
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1.0f / iscale;
    float best = 0.0f;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(gk_nearest_int(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best += w[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(gk_nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                err += w[i] * diff;
            }
            if (err < best) {
                memcpy(L, Laux, (size_t)n);
                best = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Symmetric fit with L in -nmax..nmax-1 stored as L + nmax, weights x^2 (ggml's
 * make_qx_quants, rmse_type 1): the scale that the sign of the largest element
 * maps to -nmax, then 18 trial scales around it, keeping the best weighted fit. */
static float fit_scale_sym(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -(float)nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(gk_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(gk_nearest_int(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + clampi(gk_nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's fit (ggml's make_q3_quants with rmse): start from -nmax/max, then up
 * to 5 passes that move single weights to the level that most improves the
 * weighted (x^2) fit. L is stored as L + nmax. */
static float fit_scale_q3(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -(float)nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(gk_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                int nl = clampi(gk_nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (nl != L[i]) {
                    slx += w * x[i] * (float)nl;
                    sl2 += w * (float)nl * (float)nl;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)nl;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* ------------------------------------------------------------------ Q2_K --- */

void gk_quantize_q2_K(const float *src, void *dst, int64_t n) {
    gk_block_q2_K *y = dst;
    uint8_t L[GK_QK_K];
    float w[16], mins[16], scales[16];
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        const float *x = src + i * GK_QK_K;
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * j + l]);
            scales[j] =
                fit_scale_min(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        memset(y[i].scales, 0, sizeof y[i].scales);
        y[i].d = gk_fp32_to_fp16(0.0f);
        y[i].dmin = gk_fp32_to_fp16(0.0f);
        if (max_scale > 0) {
            float iscale = 15.0f / max_scale;
            for (int j = 0; j < 16; j++)
                y[i].scales[j] = (uint8_t)clampi(gk_nearest_int(iscale * scales[j]), 0, 15);
            y[i].d = gk_fp32_to_fp16(max_scale / 15.0f);
        }
        if (max_min > 0) {
            float iscale = 15.0f / max_min;
            for (int j = 0; j < 16; j++)
                y[i].scales[j] |= (uint8_t)(clampi(gk_nearest_int(iscale * mins[j]), 0, 15) << 4);
            y[i].dmin = gk_fp32_to_fp16(max_min / 15.0f);
        }
        for (int j = 0; j < 16; j++) {
            float d = gk_fp16_to_fp32(y[i].d) * (float)(y[i].scales[j] & 15);
            if (d == 0.0f) continue;
            float dm = gk_fp16_to_fp32(y[i].dmin) * (float)(y[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (uint8_t)clampi(gk_nearest_int((x[16 * j + l] + dm) / d), 0, 3);
        }
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *q = L + 128 * h + l;
                y[i].qs[32 * h + l] = (uint8_t)(q[0] | (q[32] << 2) | (q[64] << 4) | (q[96] << 6));
            }
    }
}

/* ------------------------------------------------------------------ Q3_K --- */

void gk_quantize_q3_K(const float *src, void *dst, int64_t n) {
    gk_block_q3_K *y = dst;
    int8_t L[GK_QK_K];
    float scales[16];
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        const float *x = src + i * GK_QK_K;
        float max_scale = 0, amax = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = fit_scale_q3(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(y[i].scales, 0, sizeof y[i].scales);
        y[i].d = gk_fp32_to_fp16(0.0f);
        if (max_scale != 0.0f) {
            float iscale = -32.0f / max_scale;
            for (int j = 0; j < 16; j++) {
                int l = clampi(gk_nearest_int(iscale * scales[j]), -32, 31) + 32;
                if (j < 8)
                    y[i].scales[j] = (uint8_t)(l & 15);
                else
                    y[i].scales[j - 8] |= (uint8_t)((l & 15) << 4);
                y[i].scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            y[i].d = gk_fp32_to_fp16(1.0f / iscale);
        }
        for (int j = 0; j < 16; j++) {
            float d = gk_fp16_to_fp32(y[i].d) * (float)gk_q3k_scale(j, y[i].scales);
            if (d == 0.0f) continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(clampi(gk_nearest_int(x[16 * j + l] / d), -4, 3) + 4);
        }
        /* high bit of weight 32g + l (g = 0..7 over the block) -> hmask[l] bit g */
        memset(y[i].hmask, 0, sizeof y[i].hmask);
        for (int j = 0; j < GK_QK_K; j++)
            if (L[j] > 3) {
                y[i].hmask[j % 32] |= (uint8_t)(1u << (j / 32));
                L[j] = (int8_t)(L[j] - 4);
            }
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const int8_t *q = L + 128 * h + l;
                y[i].qs[32 * h + l] = (uint8_t)(q[0] | (q[32] << 2) | (q[64] << 4) | (q[96] << 6));
            }
    }
}

/* ------------------------------------------------------------ Q4_K, Q5_K --- */

/* Packs 8 six-bit scales and mins into the 12-byte field gk_kq_scale_min reads. */
static void pack_scale_min(uint8_t out[12], const uint8_t ls[8], const uint8_t lm[8]) {
    memset(out, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            out[j] = ls[j];
            out[j + 4] = lm[j];
        } else {
            out[j + 4] = (uint8_t)((ls[j] & 15) | ((lm[j] & 15) << 4));
            out[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            out[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): fills L, the packed scales and
 * d/dmin of one super-block. */
static void quant_q45_block(const float *x, int nmax, float rmin, int nstep, uint8_t L[GK_QK_K],
                            uint8_t scales12[12], uint16_t *d16, uint16_t *dmin16) {
    float w[32], mins[8], scales[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] =
            fit_scale_min(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = (uint8_t)clampi(gk_nearest_int(inv_scale * scales[j]), 0, 63);
        lm[j] = (uint8_t)clampi(gk_nearest_int(inv_min * mins[j]), 0, 63);
    }
    pack_scale_min(scales12, ls, lm);
    *d16 = gk_fp32_to_fp16(max_scale / 63.0f);
    *dmin16 = gk_fp32_to_fp16(max_min / 63.0f);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        gk_kq_scale_min(j, scales12, &sc, &m);
        float d = gk_fp16_to_fp32(*d16) * (float)sc;
        if (d == 0.0f) continue;
        float dm = gk_fp16_to_fp32(*dmin16) * (float)m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)clampi(gk_nearest_int((x[32 * j + l] + dm) / d), 0, nmax);
    }
}

void gk_quantize_q4_K(const float *src, void *dst, int64_t n) {
    gk_block_q4_K *y = dst;
    uint8_t L[GK_QK_K];
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        quant_q45_block(src + i * GK_QK_K, 15, -1.0f, 20, L, y[i].scales, &y[i].d, &y[i].dmin);
        for (int p = 0; p < 4; p++)
            for (int l = 0; l < 32; l++)
                y[i].qs[32 * p + l] = (uint8_t)(L[64 * p + l] | (L[64 * p + 32 + l] << 4));
    }
}

void gk_quantize_q5_K(const float *src, void *dst, int64_t n) {
    gk_block_q5_K *y = dst;
    uint8_t L[GK_QK_K];
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        quant_q45_block(src + i * GK_QK_K, 31, -0.5f, 15, L, y[i].scales, &y[i].d, &y[i].dmin);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int p = 0; p < 4; p++)
            for (int l = 0; l < 32; l++) {
                int l1 = L[64 * p + l], l2 = L[64 * p + 32 + l];
                if (l1 > 15) {
                    l1 -= 16;
                    y[i].qh[l] |= (uint8_t)(1u << (2 * p));
                }
                if (l2 > 15) {
                    l2 -= 16;
                    y[i].qh[l] |= (uint8_t)(2u << (2 * p));
                }
                y[i].qs[32 * p + l] = (uint8_t)(l1 | (l2 << 4));
            }
    }
}

/* ------------------------------------------------------------------ Q6_K --- */

void gk_quantize_q6_K(const float *src, void *dst, int64_t n) {
    gk_block_q6_K *y = dst;
    int8_t L[GK_QK_K];
    float scales[16];
    for (int64_t i = 0; i < n / GK_QK_K; i++) {
        const float *x = src + i * GK_QK_K;
        float max_scale = 0, max_abs = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = fit_scale_sym(16, 32, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > max_abs) {
                max_abs = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        if (max_abs < GROUP_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = -128.0f / max_scale;
        y[i].d = gk_fp32_to_fp16(1.0f / iscale);
        for (int j = 0; j < 16; j++) {
            int v = gk_nearest_int(iscale * scales[j]);
            y[i].scales[j] = (int8_t)clampi(v, -128, 127);
        }
        for (int j = 0; j < 16; j++) {
            float d = gk_fp16_to_fp32(y[i].d) * (float)y[i].scales[j];
            if (d == 0.0f) continue;
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(clampi(gk_nearest_int(x[16 * j + l] / d), -32, 31) + 32);
        }
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = y[i].ql + 64 * h, *qh = y[i].qh + 32 * h;
            const int8_t *q = L + 128 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((q[l] & 15) | ((q[l + 64] & 15) << 4));
                ql[l + 32] = (uint8_t)((q[l + 32] & 15) | ((q[l + 96] & 15) << 4));
                qh[l] = (uint8_t)((q[l] >> 4) | ((q[l + 32] >> 4) << 2) | ((q[l + 64] >> 4) << 4) |
                                  ((q[l + 96] >> 4) << 6));
            }
        }
    }
}
