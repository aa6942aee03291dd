/*
 * ops_avx2.c - the elementwise kernels of ops.c on 8 lanes (AVX2/FMA): vmath.h's
 * functions over arrays, the GeGLU products and the softcap. Each lane runs the
 * scalar function's operations (vmath_avx2.h), and the last n % 8 elements run
 * the scalar function itself, so the results equal ops.c's scalar path bit for
 * bit wherever an element sits. Called only after ops.c checked the CPU.
 */
#include "kernels/ops.h"
#include "kernels/vmath_avx2.h"

void gk_vmath_avx2(gk_vm_fn fn, float *y, const float *x, int64_t n);
void gk_geglu_avx2(float *a, const float *b, int64_t n, gk_gelu kind);
void gk_softcap_avx2(float *x, int64_t n, float scale, float cap);

static inline __m256 vm8(gk_vm_fn fn, __m256 v) {
    switch (fn) {
    case GK_VM_EXP:
        return gk_vexp8(v);
    case GK_VM_TANH:
        return gk_vtanh8(v);
    case GK_VM_ERF:
        return gk_verf8(v);
    case GK_VM_GELU_ERF:
        return gk_vgelu_erf8(v);
    default:
        return gk_vgelu_tanh8(v);
    }
}

void gk_vmath_avx2(gk_vm_fn fn, float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, vm8(fn, _mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = gk_vmath1(fn, x[i]);
}

void gk_geglu_avx2(float *a, const float *b, int64_t n, gk_gelu kind) {
    int64_t i = 0;
    if (kind == GK_GELU_ERF) {
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(a + i, _mm256_mul_ps(gk_vgelu_erf8(_mm256_loadu_ps(a + i)),
                                                  _mm256_loadu_ps(b + i)));
        for (; i < n; i++) a[i] = gk_vgelu_erf(a[i]) * b[i];
    } else {
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(a + i, _mm256_mul_ps(gk_vgelu_tanh8(_mm256_loadu_ps(a + i)),
                                                  _mm256_loadu_ps(b + i)));
        for (; i < n; i++) a[i] = gk_vgelu_tanh(a[i]) * b[i];
    }
}

void gk_softcap_avx2(float *x, int64_t n, float scale, float cap) {
    const __m256 vs = _mm256_set1_ps(scale), vc = _mm256_set1_ps(cap);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
        _mm256_storeu_ps(x + i, _mm256_mul_ps(vc, gk_vtanh8(_mm256_div_ps(v, vc))));
    }
    for (; i < n; i++) x[i] = cap * gk_vtanh(x[i] * scale / cap);
}
