/*
 * attn_impl.h - declarations shared by attn.c and its SIMD versions
 * (attn_avx2.c, attn_avx512.c): the scalar pieces of the softmax that the SIMD
 * versions run on their lanes' results and on the keys past the last 8.
 */
#ifndef GK_ATTN_IMPL_H
#define GK_ATTN_IMPL_H

#include "kernels/ops.h"

/* The SIMD versions of ops.h's attention kernels. */
void gk_attn_wsum_avx2(float *out, const void *V, size_t row, gk_dtype type, const float *w,
                       size_t ws, int nq, int64_t nk, int hd);
void gk_attn_wsum_avx512(float *out, const void *V, size_t row, gk_dtype type, const float *w,
                         size_t ws, int nq, int64_t nk, int hd);
void gk_attn_dots_avx2(float *s, size_t ss, const void *K, size_t row, gk_dtype type,
                       const float *q, int nq, int64_t nk, int hd);
void gk_attn_dots_avx512(float *s, size_t ss, const void *K, size_t row, gk_dtype type,
                         const float *q, int nq, int64_t nk, int hd);
void gk_attn_softmax_avx2(float *s, int64_t n, float scale, float cap, float temp, bool f16w);
void gk_attn_softmax_avx512(float *s, int64_t n, float scale, float cap, float temp, bool f16w);

float gk_attn_max8(const float m[8]);
double gk_attn_sum8(const double d[8]);
/* From key k0 (a multiple of 8) to n: the capped scores and lane maxima m;
 * the exponentials and lane sums d; the normalised (and f16-rounded) weights. */
void gk_attn_softmax_tail(float *s, int64_t k0, int64_t n, float scale, float cap, float temp,
                          float m[8]);
void gk_attn_softmax_tail2(float *s, int64_t k0, int64_t n, float mx, double d[8]);
void gk_attn_softmax_tail3(float *s, int64_t k0, int64_t n, float inv, bool f16w);

#endif
