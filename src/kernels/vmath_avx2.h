/*
 * vmath_avx2.h - exp, tanh, erf and the GELU forms of vmath.h on 8 lanes
 * (AVX2/FMA), the same operations in the same order as the scalar versions
 * there, so each lane gives the scalar function's bits. Only for files built
 * with AVX2 and FMA (*_avx2.c, *_avx512.c), called after a CPU check.
 */
#ifndef GK_VMATH_AVX2_H
#define GK_VMATH_AVX2_H

#include "kernels/vmath.h"

#include <immintrin.h>

#define GK_VM_AI static inline __attribute__((always_inline))

GK_VM_AI __m256 gk_vexp8(__m256 x) {
    static const float P[GK_VM_EXP_NP] = GK_VM_EXP_P;
    /* max/min keep x where it is NaN (they return their second operand) */
    x = _mm256_max_ps(_mm256_set1_ps(GK_VM_EXP_LO), x);
    x = _mm256_min_ps(_mm256_set1_ps(GK_VM_EXP_HI), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(GK_VM_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-GK_VM_LN2_HI), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-GK_VM_LN2_LO), r);
    __m256 p = _mm256_set1_ps(P[GK_VM_EXP_NP - 1]);
#pragma GCC unroll 8
    for (int i = GK_VM_EXP_NP - 2; i >= 0; i--) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P[i]));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i ni = _mm256_cvtps_epi32(n), h = _mm256_srai_epi32(ni, 1);
    const __m256i b = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, b), 23)),
           s2 = _mm256_castsi256_ps(
               _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), b), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

GK_VM_AI __m256 gk_vtanh8(__m256 x) {
    static const float Q[GK_VM_TANH_NQ] = GK_VM_TANH_Q;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 a = _mm256_andnot_ps(sign, x);
    /* |x| < 0.625 */
    __m256 u = _mm256_mul_ps(x, x), q = _mm256_set1_ps(Q[GK_VM_TANH_NQ - 1]);
#pragma GCC unroll 8
    for (int i = GK_VM_TANH_NQ - 2; i >= 0; i--) q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(Q[i]));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(x, u), q, x);
    /* else */
    __m256 ac = _mm256_min_ps(_mm256_set1_ps(GK_VM_TANH_BIG), a);
    __m256 e = gk_vexp8(_mm256_add_ps(ac, ac));
    __m256 big =
        _mm256_sub_ps(_mm256_set1_ps(1.0f),
                      _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
    big = _mm256_or_ps(_mm256_andnot_ps(sign, big), _mm256_and_ps(sign, x));
    __m256 m = _mm256_cmp_ps(a, _mm256_set1_ps(GK_VM_TANH_SMALL), _CMP_LT_OQ);
    return _mm256_blendv_ps(big, small, m);
}

GK_VM_AI __m256 gk_verf8(__m256 x) {
    static const float P[GK_VM_ERF_NP] = GK_VM_ERF_P, R[GK_VM_ERF_NR] = GK_VM_ERF_R;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 a = _mm256_andnot_ps(sign, x);
    __m256 u = _mm256_mul_ps(x, x), p = _mm256_set1_ps(P[GK_VM_ERF_NP - 1]);
#pragma GCC unroll 8
    for (int i = GK_VM_ERF_NP - 2; i >= 0; i--) p = _mm256_fmadd_ps(p, u, _mm256_set1_ps(P[i]));
    __m256 small = _mm256_fmadd_ps(x, p, x);
    __m256 ac = _mm256_min_ps(_mm256_set1_ps(GK_VM_ERF_BIG), a);
    __m256 s = _mm256_sub_ps(ac, _mm256_set1_ps(2.5f)), r = _mm256_set1_ps(R[GK_VM_ERF_NR - 1]);
#pragma GCC unroll 12
    for (int i = GK_VM_ERF_NR - 2; i >= 0; i--) r = _mm256_fmadd_ps(r, s, _mm256_set1_ps(R[i]));
    __m256 e = gk_vexp8(_mm256_xor_ps(sign, _mm256_mul_ps(ac, ac)));
    __m256 big = _mm256_fnmadd_ps(e, r, _mm256_set1_ps(1.0f));
    big = _mm256_or_ps(_mm256_andnot_ps(sign, big), _mm256_and_ps(sign, x));
    __m256 m = _mm256_cmp_ps(a, _mm256_set1_ps(GK_VM_ERF_SMALL), _CMP_LT_OQ);
    return _mm256_blendv_ps(big, small, m);
}

GK_VM_AI __m256 gk_vgelu_erf8(__m256 x) {
    __m256 e = gk_verf8(_mm256_mul_ps(x, _mm256_set1_ps(0.7071067811865476f)));
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x),
                         _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

GK_VM_AI __m256 gk_vgelu_tanh8(__m256 x) {
    __m256 c = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), x), x);
    __m256 t =
        gk_vtanh8(_mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_fmadd_ps(c, x, x)));
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x),
                         _mm256_add_ps(_mm256_set1_ps(1.0f), t));
}

#endif
