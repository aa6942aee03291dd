/*
 * iquants.h - ggml's "i-quants" for reading: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
 * IQ3_S, IQ1_S and IQ1_M (what unsloth's dynamic GGUFs and llama-quantize's IQ
 * mixes use). Blocks of 256 weights; each group of 8
 * (or 4) weights is an index into a fixed grid of magnitudes, with sign bits and
 * a per-32 scale. Layouts, bit for bit as ggml stores them:
 *
 *   IQ2_XXS {fp16 d; u16 qs[32]}            66 bytes, 2.06 bits/weight
 *     per 32 weights (ib): 8 bytes = u32 a, u32 b (little-endian);
 *     the 4 bytes of a index gk_iq2xxs_grid (8 magnitudes each);
 *     b bits 7l..7l+6 index gk_ksigns_iq2xs (8 sign bits of group l);
 *     b >> 28 = s:  w = d * (0.5 + s) * 0.25 * grid * sign
 *   IQ2_XS {fp16 d; u16 qs[32]; u8 scales[8]}  74 bytes
 *     per 32 weights (ib): qs[4ib+l], l = 0..3: bits 0..8 index the 512-entry
 *     gk_iq2xs_grid (8 magnitudes), bits 9..15 index gk_ksigns_iq2xs; s = low
 *     nibble of scales[ib] for l = 0, 1 (weights 0..15), high nibble for l = 2, 3:
 *     w = d * (0.5 + s) * 0.25 * grid * sign
 *   IQ2_S {fp16 d; u8 qs[32]; u8 signs[32]; u8 qh[8]; u8 scales[8]}  82 bytes
 *     per 32: index l = qs[4ib+l] | bits 2l..2l+1 of qh[ib] as bits 8..9 (the
 *     1024-entry gk_iq2s_grid); signs[4ib+l] are the plain sign bits of weights
 *     8l..8l+7; s as IQ2_XS: w = d * (0.5 + s) * 0.25 * grid * sign
 *   IQ3_XXS {fp16 d; u8 qs[64]; u8 sas[32]}  98 bytes
 *     per 32: qs[8ib..8ib+7] index gk_iq3xxs_grid (4 magnitudes each);
 *     u32 at sas[4ib]: 7-bit sign indices as above, s = top 4 bits:
 *     w = d * (0.5 + s) * 0.5 * grid * sign
 *   IQ3_S {fp16 d; u8 qs[64]; u8 qh[8]; u8 signs[32]; u8 scales[4]}  110 bytes
 *     per 32: index k of qs[8ib+k] gets bit 8 from (qh[ib] >> k) & 1 (512-entry
 *     gk_iq3s_grid, 4 magnitudes each); signs[4ib+l] are the plain sign bits of
 *     weights 8l..8l+7; s = nibble ib%2 of scales[ib/2]: w = d * (1 + 2s) * grid * sign
 *   IQ1_S {fp16 d; u8 qs[32]; u16 qh[8]}    50 bytes
 *     per 32: qh[ib] bits 3l..3l+2 are bits 8..10 of the index qs[4ib+l] into
 *     the 2048-entry gk_iq1s_grid (8 values in {-1, 0, 1}); s = bits 12..14,
 *     bit 15 the sign of delta = +-0.125: w = d * (2s + 1) * (grid + delta)
 *   IQ1_M {u8 qs[32]; u8 qh[16]; u16 sc[4]}  56 bytes, no d field: the fp16 d is
 *     the top nibbles of sc[0..3] (sc[0]'s the lowest bits of d). Per 32: index l
 *     = qs[4ib+l] | bits 0..2 (l even) or 4..6 (l odd) of qh[2ib + l/2] as bits
 *     8..10 (gk_iq1s_grid); bit 3 (l even) or 7 (l odd) of that byte is the sign of
 *     delta = +-0.125 for those 8 weights; s = bits 6(ib%2)..+2 of sc[ib/2] for
 *     weights 0..15, bits 6(ib%2)+3..+5 for 16..31: w = d * (2s + 1) * (grid + delta)
 *
 * Every index is built from at most as many bits as its table has entries
 * (8 bits for 256, 9 for 512, 10 for 1024, 11 for 2048, 7 for 128), so no block, however
 * malformed, reads outside a table; a NaN or infinite d gives NaN or infinite
 * weights, never a crash.
 *
 * Dot products take the activation row as Q8_K blocks {f32 d; i8 qs[256];
 * i16 bsums[16]} (bsums[j] = sum of qs[16j..16j+15]) and compute ggml's
 * integer sums and float steps in ggml's order, so a result equals
 * llama.cpp's scalar kernel; the AVX2 kernels compute the same integer sums and
 * the same float steps per block, so they equal the scalar ones bit for bit.
 */
#ifndef GK_IQUANTS_H
#define GK_IQUANTS_H

#include "tensor/kquants.h" /* GK_QK_K and the Q8_K activation block */

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint16_t d;
    uint16_t qs[GK_QK_K / 8];
} gk_block_iq2_xxs;

typedef struct {
    uint16_t d;
    uint16_t qs[GK_QK_K / 8];
    uint8_t scales[GK_QK_K / 32];
} gk_block_iq2_xs;

typedef struct {
    uint16_t d;
    uint8_t qs[GK_QK_K / 8];
    uint8_t signs[GK_QK_K / 8];
    uint8_t qh[GK_QK_K / 32];
    uint8_t scales[GK_QK_K / 32];
} gk_block_iq2_s;

typedef struct {
    uint16_t d;
    uint8_t qs[3 * GK_QK_K / 8]; /* 64 grid indices, then 32 bytes of signs and scales */
} gk_block_iq3_xxs;

typedef struct {
    uint16_t d;
    uint8_t qs[GK_QK_K / 4];
    uint8_t qh[GK_QK_K / 32];
    uint8_t signs[GK_QK_K / 8];
    uint8_t scales[GK_QK_K / 64];
} gk_block_iq3_s;

typedef struct {
    uint16_t d;
    uint8_t qs[GK_QK_K / 8];
    uint16_t qh[GK_QK_K / 32];
} gk_block_iq1_s;

typedef struct {
    uint8_t qs[GK_QK_K / 8];
    uint8_t qh[GK_QK_K / 16];
    uint8_t scales[GK_QK_K / 32]; /* four little-endian u16 */
} gk_block_iq1_m;

_Static_assert(sizeof(gk_block_q8_K) == 292, "block_q8_K is 292 bytes");
_Static_assert(sizeof(gk_block_iq2_xxs) == 66, "block_iq2_xxs is 66 bytes");
_Static_assert(sizeof(gk_block_iq2_xs) == 74, "block_iq2_xs is 74 bytes");
_Static_assert(sizeof(gk_block_iq2_s) == 82, "block_iq2_s is 82 bytes");
_Static_assert(sizeof(gk_block_iq1_m) == 56, "block_iq1_m is 56 bytes");
_Static_assert(sizeof(gk_block_iq3_xxs) == 98, "block_iq3_xxs is 98 bytes");
_Static_assert(sizeof(gk_block_iq3_s) == 110, "block_iq3_s is 110 bytes");
_Static_assert(sizeof(gk_block_iq1_s) == 50, "block_iq1_s is 50 bytes");

/* The grids (iquants_tables.c, generated by scripts/gen_iq_tables.py). Each
 * entry packs 8 (u64) or 4 (u32) byte values, the first in the lowest byte. */
extern const uint8_t gk_ksigns_iq2xs[128];
extern const uint64_t gk_iq2xxs_grid[256];
extern const uint64_t gk_iq2xs_grid[512];
extern const uint64_t gk_iq2s_grid[1024];
extern const uint32_t gk_iq3xxs_grid[256];
extern const uint32_t gk_iq3s_grid[512];
extern const uint64_t gk_iq1s_grid[2048];
#define GK_IQ1S_DELTA 0.125f

/* Scalar references: dequantize n weights (n a multiple of 256); dot of n
 * weights with n Q8_K-quantized activations. */
void gk_dequantize_iq2_xxs(const void *src, float *dst, int64_t n);
void gk_dequantize_iq3_xxs(const void *src, float *dst, int64_t n);
void gk_dequantize_iq3_s(const void *src, float *dst, int64_t n);
void gk_dequantize_iq1_s(const void *src, float *dst, int64_t n);
void gk_dequantize_iq2_xs(const void *src, float *dst, int64_t n);
void gk_dequantize_iq2_s(const void *src, float *dst, int64_t n);
void gk_dequantize_iq1_m(const void *src, float *dst, int64_t n);
float gk_vec_dot_iq2_xxs_q8_K_ref(int64_t n, const void *x, const void *y);
float gk_vec_dot_iq3_xxs_q8_K_ref(int64_t n, const void *x, const void *y);
float gk_vec_dot_iq3_s_q8_K_ref(int64_t n, const void *x, const void *y);
float gk_vec_dot_iq1_s_q8_K_ref(int64_t n, const void *x, const void *y);
float gk_vec_dot_iq2_xs_q8_K_ref(int64_t n, const void *x, const void *y);
float gk_vec_dot_iq2_s_q8_K_ref(int64_t n, const void *x, const void *y);
float gk_vec_dot_iq1_m_q8_K_ref(int64_t n, const void *x, const void *y);

/* IQ1_M's fp16 d, gathered from the top nibbles of its four scale words. */
float gk_iq1_m_d(const gk_block_iq1_m *b);

/* The float steps of the dots, shared by the scalar and SIMD kernels (built
 * without FMA, so both round alike). gk_iq_finish: sumf += fp16(x_i.d) * y_i.d *
 * bsum[i] over nb blocks bx bytes apart; the caller scales the total.
 * gk_iq1_s_finish, gk_iq1_m_finish: ggml's IQ1_S and IQ1_M steps from the sums
 * with and without delta. */
#define GK_IQ_CHUNK 64
float gk_iq_finish(const void *x, size_t bx, const void *y, const int32_t *bsum, int64_t nb,
                   float sumf);
float gk_iq1_s_finish(const void *x, const void *y, const int32_t *sumi, const int32_t *sumi1,
                      int64_t nb, float sumf);
float gk_iq1_m_finish(const void *x, const void *y, const int32_t *sumi, const int32_t *sumi1,
                      int64_t nb, float sumf);

#if defined(__x86_64__) || defined(_M_X64)
float gk_vec_dot_iq2_xxs_q8_K_avx2(int64_t n, const void *x, const void *y);
float gk_vec_dot_iq3_xxs_q8_K_avx2(int64_t n, const void *x, const void *y);
float gk_vec_dot_iq3_s_q8_K_avx2(int64_t n, const void *x, const void *y);
float gk_vec_dot_iq1_s_q8_K_avx2(int64_t n, const void *x, const void *y);
float gk_vec_dot_iq2_xs_q8_K_avx2(int64_t n, const void *x, const void *y);
float gk_vec_dot_iq2_s_q8_K_avx2(int64_t n, const void *x, const void *y);
float gk_vec_dot_iq1_m_q8_K_avx2(int64_t n, const void *x, const void *y);
#endif

#endif
