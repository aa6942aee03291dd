/*
 * vmath_avx512.h - exp and tanh of vmath.h on 16 lanes (AVX-512F), the same
 * operations in the same order as vmath_avx2.h's 8-lane versions and the scalar
 * ones, so each lane gives the scalar function's bits. Only for files built with
 * AVX-512 (*_avx512.c), called after a CPU check.
 */
#ifndef GK_VMATH_AVX512_H
#define GK_VMATH_AVX512_H

#include "kernels/vmath.h"

#include <immintrin.h>

#define GK_VM_AI16 static inline __attribute__((always_inline))

GK_VM_AI16 __m512 gk_vexp16(__m512 x) {
    static const float P[GK_VM_EXP_NP] = GK_VM_EXP_P;
    /* max/min keep x where it is NaN (they return their second operand) */
    x = _mm512_max_ps(_mm512_set1_ps(GK_VM_EXP_LO), x);
    x = _mm512_min_ps(_mm512_set1_ps(GK_VM_EXP_HI), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(GK_VM_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-GK_VM_LN2_HI), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(-GK_VM_LN2_LO), r);
    __m512 p = _mm512_set1_ps(P[GK_VM_EXP_NP - 1]);
#pragma GCC unroll 8
    for (int i = GK_VM_EXP_NP - 2; i >= 0; i--) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P[i]));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512i ni = _mm512_cvtps_epi32(n), h = _mm512_srai_epi32(ni, 1);
    const __m512i b = _mm512_set1_epi32(127);
    __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(h, b), 23)),
           s2 = _mm512_castsi512_ps(
               _mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(ni, h), b), 23));
    return _mm512_mul_ps(_mm512_mul_ps(p, s1), s2);
}

GK_VM_AI16 __m512 gk_vtanh16(__m512 x) {
    static const float Q[GK_VM_TANH_NQ] = GK_VM_TANH_Q;
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    const __m512i xi = _mm512_castps_si512(x);
    __m512 a = _mm512_castsi512_ps(_mm512_andnot_si512(sign, xi));
    /* |x| < 0.625 */
    __m512 u = _mm512_mul_ps(x, x), q = _mm512_set1_ps(Q[GK_VM_TANH_NQ - 1]);
#pragma GCC unroll 8
    for (int i = GK_VM_TANH_NQ - 2; i >= 0; i--) q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(Q[i]));
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(x, u), q, x);
    /* else */
    __m512 ac = _mm512_min_ps(_mm512_set1_ps(GK_VM_TANH_BIG), a);
    __m512 e = gk_vexp16(_mm512_add_ps(ac, ac));
    __m512 big =
        _mm512_sub_ps(_mm512_set1_ps(1.0f),
                      _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
    big = _mm512_castsi512_ps(_mm512_or_si512(_mm512_andnot_si512(sign, _mm512_castps_si512(big)),
                                              _mm512_and_si512(sign, xi)));
    __mmask16 m = _mm512_cmp_ps_mask(a, _mm512_set1_ps(GK_VM_TANH_SMALL), _CMP_LT_OQ);
    return _mm512_mask_blend_ps(m, big, small);
}

#endif
