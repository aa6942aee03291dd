/*
 * vmath.h - exp, tanh and erf for float as the vector kernels compute them
 * (vmath_avx2.h, 8 lanes), one element at a time: the scalar references of
 * those kernels and the path of CPUs without AVX2. SIMD and scalar run the
 * same operations in the same order (every a*b+c is an explicit fused
 * multiply-add, no other product feeds a sum), so they give the same bits.
 *
 * Accuracy against the exact function (tests/unit/test_vmath.c checks these
 * bounds against libm in double on a sweep of every float range):
 *   gk_vexp:  relative error <= 2 ulp (2^-22) for x in [-87.3, 88.7]; below,
 *             the subnormal results are within 1 subnormal ulp; x <= -104 gives 0,
 *             x >= 89 gives +inf.
 *   gk_vtanh: absolute error <= 2^-23 + 2 ulp of the result.
 *   gk_verf:  absolute error <= 2^-23 + 2 ulp of the result.
 * NaN gives NaN.
 *
 * Algorithms (the coefficients are least-squares fits, made for this file):
 *   exp:  n = rint(x log2 e), r = x - n ln2 (two-part ln2), e^r = 1 + r (1 + r P(r)) with
 *         P of degree 5 on |r| <= ln2/2, times 2^floor(n/2) and 2^(n - floor(n/2)).
 *   tanh: |x| < 0.625: x + x^3 Q(x^2), Q of degree 6; else 1 - 2/(e^(2|x|) + 1) with
 *         the sign of x (|x| capped at 9.1, where the result is 1).
 *   erf:  |x| < 1: x + x P(x^2), P of degree 7; else 1 - e^(-x^2) R(|x| - 2.5) with the
 *         sign of x, R of degree 10 fitted to erfc(a) e^(a^2) on [1, 4] (|x| capped at 4,
 *         where the result is 1).
 */
#ifndef GK_VMATH_H
#define GK_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define GK_VM_LOG2E 1.44269504088896341f
#define GK_VM_LN2_HI 0.693359375f /* ln 2 = LN2_HI + LN2_LO, LN2_HI exact in 9 bits */
#define GK_VM_LN2_LO -2.12194440e-4f
#define GK_VM_EXP_LO -104.0f
#define GK_VM_EXP_HI 89.0f

/* P(r) = (e^r - 1 - r) / r^2 on |r| <= ln2/2, c0 first */
#define GK_VM_EXP_P                                                                                \
    {                                                                                              \
        0.5f, 0.1666666567325592f, 0.04166629537940025f, 0.008333496749401093f,                    \
            0.0013944651000201702f, 0.00019790371879935265f                                        \
    }
#define GK_VM_EXP_NP 6

/* Q(u) = (tanh(x) - x) / x^3, u = x^2 <= 0.625^2 */
#define GK_VM_TANH_SMALL 0.625f
#define GK_VM_TANH_BIG 9.1f
#define GK_VM_TANH_Q                                                                               \
    {                                                                                              \
        -0.3333333432674408f, 0.1333332508802414f, -0.05396648123860359f, 0.021850505843758583f,   \
            -0.008753067813813686f, 0.003231602255254984f, -0.0008051939657889307f                 \
    }
#define GK_VM_TANH_NQ 7

/* P(u) = erf(x) / x - 1, u = x^2 < 1 */
#define GK_VM_ERF_P                                                                                \
    {                                                                                              \
        0.12837916612625122f, -0.37612637877464294f, 0.11283782124519348f, -0.0268654003739357f,   \
            0.005220945458859205f, -0.000848282827064395f, 0.00011256943980697542f,                \
            -9.641505130275618e-06f                                                                \
    }
#define GK_VM_ERF_NP 8
/* R(s) = erfc(a) e^(a^2), s = a - 2.5, a in [1, 4] */
#define GK_VM_ERF_R                                                                                \
    {                                                                                              \
        0.21080632507801056f, -0.07434753328561783f, 0.024939272552728653f,                        \
            -0.007994799874722958f, 0.002473046537488699f, -0.0007487033726647496f,                \
            0.0001782035978976637f, -7.326297054532915e-05f, 3.08056223730091e-05f,                \
            1.355328186036786e-05f, 7.019461463642074e-06f                                         \
    }
#define GK_VM_ERF_NR 11
#define GK_VM_ERF_SMALL 1.0f
#define GK_VM_ERF_BIG 4.0f

static inline float gk_vm_bits2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float gk_vexp(float x) {
    static const float P[GK_VM_EXP_NP] = GK_VM_EXP_P;
    if (x != x) return x + x;
    x = GK_VM_EXP_LO > x ? GK_VM_EXP_LO : x;
    x = GK_VM_EXP_HI < x ? GK_VM_EXP_HI : x;
    float n = nearbyintf(x * GK_VM_LOG2E);
    float r = fmaf(n, -GK_VM_LN2_HI, x);
    r = fmaf(n, -GK_VM_LN2_LO, r);
    float p = P[GK_VM_EXP_NP - 1];
    for (int i = GK_VM_EXP_NP - 2; i >= 0; i--) p = fmaf(p, r, P[i]);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    int32_t ni = (int32_t)n, h = ni >> 1;
    float s1 = gk_vm_bits2f((uint32_t)(h + 127) << 23),
          s2 = gk_vm_bits2f((uint32_t)(ni - h + 127) << 23);
    return p * s1 * s2;
}

static inline float gk_vtanh(float x) {
    static const float Q[GK_VM_TANH_NQ] = GK_VM_TANH_Q;
    float a = fabsf(x);
    if (a < GK_VM_TANH_SMALL) {
        float u = x * x, q = Q[GK_VM_TANH_NQ - 1];
        for (int i = GK_VM_TANH_NQ - 2; i >= 0; i--) q = fmaf(q, u, Q[i]);
        return fmaf(x * u, q, x);
    }
    a = GK_VM_TANH_BIG < a ? GK_VM_TANH_BIG : a;
    float e = gk_vexp(a + a);
    return copysignf(1.0f - 2.0f / (e + 1.0f), x);
}

static inline float gk_verf(float x) {
    static const float P[GK_VM_ERF_NP] = GK_VM_ERF_P, R[GK_VM_ERF_NR] = GK_VM_ERF_R;
    float a = fabsf(x);
    if (a < GK_VM_ERF_SMALL) {
        float u = x * x, p = P[GK_VM_ERF_NP - 1];
        for (int i = GK_VM_ERF_NP - 2; i >= 0; i--) p = fmaf(p, u, P[i]);
        return fmaf(x, p, x);
    }
    a = GK_VM_ERF_BIG < a ? GK_VM_ERF_BIG : a;
    float s = a - 2.5f, r = R[GK_VM_ERF_NR - 1];
    for (int i = GK_VM_ERF_NR - 2; i >= 0; i--) r = fmaf(r, s, R[i]);
    float e = gk_vexp(-(a * a));
    return copysignf(fmaf(-e, r, 1.0f), x);
}

/* The GELU forms with these functions (ops.h gk_gelu_erf and gk_gelu_tanh with
 * libm): erf: (0.5 x) (1 + erf(x / sqrt 2)); tanh: (0.5 x) (1 + tanh(y)), y =
 * sqrt(2/pi) fma(0.044715 x x, x, x). */
static inline float gk_vgelu_erf(float x) {
    return (0.5f * x) * (1.0f + gk_verf(x * 0.7071067811865476f));
}
static inline float gk_vgelu_tanh(float x) {
    float c = (0.044715f * x) * x;
    return (0.5f * x) * (1.0f + gk_vtanh(0.7978845608028654f * fmaf(c, x, x)));
}

#endif
