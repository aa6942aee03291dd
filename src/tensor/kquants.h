/*
 * kquants.h - ggml's k-quant super-block types (Q2_K..Q6_K with Q8_K
 * activations) and the non-linear 4-bit types IQ4_NL and IQ4_XS.
 *
 * Layouts are ggml's, byte for byte (format facts from ggml-common.h). A
 * super-block holds QK_K = 256 weights in sub-blocks of 16 or 32, each with its
 * own small integer scale (and min), all scaled by fp16 super-block factors:
 *
 *   Q2_K  { u8 scales[16]; u8 qs[64]; fp16 d, dmin; }       84 bytes, 2.625 bpw
 *         sub-block j (16 weights): x = d*(sc&15)*q - dmin*(sc>>4), q in 0..3
 *   Q3_K  { u8 hmask[32]; u8 qs[64]; u8 scales[12]; fp16 d; }  110 bytes
 *         x = d*(s6-32)*(q - 4*!hbit), q 2 low bits in qs, 6-bit scales packed
 *   Q4_K  { fp16 d, dmin; u8 scales[12]; u8 qs[128]; }      144 bytes
 *         sub-block j (32 weights): x = d*sc*q - dmin*m, 6-bit sc/m packed
 *   Q5_K  { fp16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }  176 bytes
 *         as Q4_K with a fifth bit from qh
 *   Q6_K  { u8 ql[128]; u8 qh[64]; i8 scales[16]; fp16 d; }  210 bytes
 *         x = d*sc*(q - 32), q 6 bits: 4 in ql, 2 in qh
 *   Q8_K  { f32 d; i8 qs[256]; i16 bsums[16]; }              292 bytes
 *         activations; bsums[j] = sum of qs[16j..16j+15] (for the min terms)
 *   IQ4_NL { fp16 d; u8 qs[16]; }  32 weights: x = d*kv[nibble]
 *   IQ4_XS { fp16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]; }  136 bytes
 *         sub-block ib (32 weights): x = d*(s6-32)*kv[nibble]
 *   kv = ggml's kvalues_iq4nl, a fixed non-uniform 16-entry grid.
 *
 * The nibble/bit order inside each block is described beside each decoder in
 * kquants.c.
 *
 * Dot products: each super-block's integer sums are exact (int32), and the
 * float combination per super-block is the same expression in the scalar and
 * the SIMD kernels (both files are compiled with -ffp-contract=off), so every
 * SIMD kernel returns the scalar reference's result bit for bit.
 */
#ifndef GK_KQUANTS_H
#define GK_KQUANTS_H

#include "tensor/dtype.h"

#define GK_QK_K 256
#define GK_QK4_NL 32

typedef struct {
    uint8_t scales[GK_QK_K / 16];
    uint8_t qs[GK_QK_K / 4];
    uint16_t d, dmin;
} gk_block_q2_K;

typedef struct {
    uint8_t hmask[GK_QK_K / 8];
    uint8_t qs[GK_QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} gk_block_q3_K;

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[GK_QK_K / 2];
} gk_block_q4_K;

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[GK_QK_K / 8];
    uint8_t qs[GK_QK_K / 2];
} gk_block_q5_K;

typedef struct {
    uint8_t ql[GK_QK_K / 2];
    uint8_t qh[GK_QK_K / 4];
    int8_t scales[GK_QK_K / 16];
    uint16_t d;
} gk_block_q6_K;

typedef struct {
    float d;
    int8_t qs[GK_QK_K];
    int16_t bsums[GK_QK_K / 16];
} gk_block_q8_K;

typedef struct {
    uint16_t d;
    uint8_t qs[GK_QK4_NL / 2];
} gk_block_iq4_nl;

typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[GK_QK_K / 64];
    uint8_t qs[GK_QK_K / 2];
} gk_block_iq4_xs;

/* The IQ4 grid (ggml's kvalues_iq4nl). */
extern const int8_t gk_kvalues_iq4nl[16];

/* ggml's nearest_int: round to nearest, ties to even, for |f| < 2^22 (the
 * quantizers keep their arguments far inside that range). */
static inline int gk_nearest_int(float f) {
    union {
        float f;
        int32_t i;
    } u = {.f = f + 12582912.0f};
    return (u.i & 0x007fffff) - 0x00400000;
}

/* Scale and min j (0..7) of a Q4_K/Q5_K 12-byte packed scale field. */
static inline void gk_kq_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 15) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Scale j (0..15) of a Q3_K 12-byte packed field, in -32..31. */
static inline int gk_q3k_scale(int j, const uint8_t *s) {
    int lo = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
    int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* Scale ib (0..7) of an IQ4_XS block, in -32..31. */
static inline int gk_iq4xs_scale(const gk_block_iq4_xs *b, int ib) {
    int lo = (b->scales_l[ib / 2] >> (4 * (ib % 2))) & 15;
    int hi = (b->scales_h >> (2 * ib)) & 3;
    return (lo | (hi << 4)) - 32;
}

/* The float step of every dot product, once per super-block (block for
 * IQ4_NL): the same expression in the scalar and SIMD files. */
static inline float gk_kq_acc(float s, float dxy, int32_t isum) {
    return s + dxy * (float)isum;
}
static inline float gk_kq_acc_min(float s, float dxy, float mxy, int32_t isum, int32_t msum) {
    return s + (dxy * (float)isum - mxy * (float)msum);
}

/* ------------------------------------------------------ scalar reference --- */

void gk_dequantize_q2_K(const void *src, float *dst, int64_t n);
void gk_dequantize_q3_K(const void *src, float *dst, int64_t n);
void gk_dequantize_q4_K(const void *src, float *dst, int64_t n);
void gk_dequantize_q5_K(const void *src, float *dst, int64_t n);
void gk_dequantize_q6_K(const void *src, float *dst, int64_t n);
void gk_dequantize_q8_K(const void *src, float *dst, int64_t n);
void gk_dequantize_iq4_nl(const void *src, float *dst, int64_t n);
void gk_dequantize_iq4_xs(const void *src, float *dst, int64_t n);

/* Activation quantizer (ggml's quantize_row_q8_K_ref). */
void gk_quantize_q8_K_ref(const float *src, void *dst, int64_t n);

/* Weight quantizers: llama.cpp's reference algorithms without an importance
 * matrix (make_qkx2 for Q2_K/Q4_K/Q5_K, make_q3 for Q3_K, make_qx for Q6_K,
 * IQ4 by the best-scale search over the grid). */
void gk_quantize_q2_K(const float *src, void *dst, int64_t n);
void gk_quantize_q3_K(const float *src, void *dst, int64_t n);
void gk_quantize_q4_K(const float *src, void *dst, int64_t n);
void gk_quantize_q5_K(const float *src, void *dst, int64_t n);
void gk_quantize_q6_K(const float *src, void *dst, int64_t n);

float gk_vec_dot_q2_K_q8_K_ref(int64_t n, const void *x, const void *y);
float gk_vec_dot_q3_K_q8_K_ref(int64_t n, const void *x, const void *y);
float gk_vec_dot_q4_K_q8_K_ref(int64_t n, const void *x, const void *y);
float gk_vec_dot_q5_K_q8_K_ref(int64_t n, const void *x, const void *y);
float gk_vec_dot_q6_K_q8_K_ref(int64_t n, const void *x, const void *y);
float gk_vec_dot_iq4_nl_q8_0_ref(int64_t n, const void *x, const void *y);
float gk_vec_dot_iq4_xs_q8_K_ref(int64_t n, const void *x, const void *y);

/* ------------------------------------------------------------------ AVX2 --- */

#if defined(__x86_64__) || defined(_M_X64)
void gk_quantize_q8_K_avx2(const float *src, void *dst, int64_t n);
float gk_vec_dot_q2_K_q8_K_avx2(int64_t n, const void *x, const void *y);
float gk_vec_dot_q3_K_q8_K_avx2(int64_t n, const void *x, const void *y);
float gk_vec_dot_q4_K_q8_K_avx2(int64_t n, const void *x, const void *y);
float gk_vec_dot_q5_K_q8_K_avx2(int64_t n, const void *x, const void *y);
float gk_vec_dot_q6_K_q8_K_avx2(int64_t n, const void *x, const void *y);
float gk_vec_dot_iq4_nl_q8_0_avx2(int64_t n, const void *x, const void *y);
float gk_vec_dot_iq4_xs_q8_K_avx2(int64_t n, const void *x, const void *y);
void gk_vec_dot4_q2_K_q8_K_avx2(int64_t n, const void *x, size_t bx, const void *y, float *s);
void gk_vec_dot4_q3_K_q8_K_avx2(int64_t n, const void *x, size_t bx, const void *y, float *s);
void gk_vec_dot4_q4_K_q8_K_avx2(int64_t n, const void *x, size_t bx, const void *y, float *s);
void gk_vec_dot4_q5_K_q8_K_avx2(int64_t n, const void *x, size_t bx, const void *y, float *s);
void gk_vec_dot4_q6_K_q8_K_avx2(int64_t n, const void *x, size_t bx, const void *y, float *s);
void gk_vec_dot4_iq4_xs_q8_K_avx2(int64_t n, const void *x, size_t bx, const void *y, float *s);

/* AVX-512 F/BW/VL/VNNI (kquants_avx512.c): the two types most of a file holds;
 * chosen only when gk_cpu_has_avx512_vnni() (dtype.h). */
float gk_vec_dot_q4_K_q8_K_avx512(int64_t n, const void *x, const void *y);
float gk_vec_dot_q6_K_q8_K_avx512(int64_t n, const void *x, const void *y);
void gk_vec_dot4_q4_K_q8_K_avx512(int64_t n, const void *x, size_t bx, const void *y, float *s);
void gk_vec_dot4_q6_K_q8_K_avx512(int64_t n, const void *x, size_t bx, const void *y, float *s);
#endif

#endif
