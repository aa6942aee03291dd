/*
 * ops.c - see ops.h.
 */
#include "kernels/ops.h"
#include "kernels/vmath.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

float gk_rms_scale(const float *x, int64_t n, float eps) {
    double s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) s[l] += (double)x[i + l] * x[i + l];
    for (int l = 0; i < n; i++, l++) s[l] += (double)x[i] * x[i];
    for (int l = 0; l < 4; l++) s[l] += s[l + 4];
    const double ss = (s[0] + s[2]) + (s[1] + s[3]);
    return (float)(1.0 / sqrt(ss / (double)n + eps));
}

float gk_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    const float r = gk_rms_scale(x, n, eps);
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * r * w[i];
    return r;
}

/* The fp16 nearest to a finite v (ties to even), from a double: rounding to float
 * first could land on a midpoint between two fp16 values that v itself is not on,
 * so the float's rounding and its two neighbours are compared with v. */
static uint16_t fp16_nearest(double v) {
    double av = fabs(v);
    uint16_t h = gk_fp32_to_fp16((float)av), best = h;
    double err = fabs((double)gk_fp16_to_fp32(h) - av);
    for (int d = -1; d <= 1; d += 2) {
        int c = (int)h + d;
        if (c < 0 || c >= 0x7c00) continue;
        double e = fabs((double)gk_fp16_to_fp32((uint16_t)c) - av);
        if (e < err || (e == err && !(c & 1))) best = (uint16_t)c, err = e;
    }
    return (uint16_t)(best | (v < 0 ? 0x8000 : 0));
}

/* GELU_tanh(x) for every fp16 x, computed in double and rounded once to fp16. */
static float gelu_f16_table[65536];
static pthread_once_t gelu_f16_once = PTHREAD_ONCE_INIT;

static void gelu_f16_init(void) {
    for (uint32_t i = 0; i < 65536; i++) {
        double x = gk_fp16_to_fp32((uint16_t)i);
        double g = 0.5 * x * (1.0 + tanh(0.7978845608028654 * x * (1.0 + 0.044715 * x * x)));
        gelu_f16_table[i] = isfinite(x) ? gk_fp16_to_fp32(fp16_nearest(g)) : (float)x;
    }
}

static inline float gelu_tanh_f16(float x) {
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    return gelu_f16_table[gk_fp32_to_fp16(x)];
}

float gk_gelu_tanh_f16(float x) {
    pthread_once(&gelu_f16_once, gelu_f16_init);
    return gelu_tanh_f16(x);
}

/* ---------------------------------------------------- vector math --- */

void gk_vmath_avx2(gk_vm_fn fn, float *y, const float *x, int64_t n);
void gk_geglu_avx2(float *a, const float *b, int64_t n, gk_gelu kind);
void gk_softcap_avx2(float *x, int64_t n, float scale, float cap);

static bool use_avx2;
static pthread_once_t avx2_once = PTHREAD_ONCE_INIT;

static void avx2_init(void) {
#if defined(__x86_64__) || defined(_M_X64)
    use_avx2 = !getenv("GK_FORCE_SCALAR") && gk_cpu_has_avx2_fma_f16c();
#endif
}

static bool avx2(void) {
    pthread_once(&avx2_once, avx2_init);
    return use_avx2;
}

float gk_vmath1(gk_vm_fn fn, float x) {
    switch (fn) {
    case GK_VM_EXP:
        return gk_vexp(x);
    case GK_VM_TANH:
        return gk_vtanh(x);
    case GK_VM_ERF:
        return gk_verf(x);
    case GK_VM_GELU_ERF:
        return gk_vgelu_erf(x);
    default:
        return gk_vgelu_tanh(x);
    }
}

void gk_vmath(gk_vm_fn fn, float *y, const float *x, int64_t n) {
    if (avx2()) {
        gk_vmath_avx2(fn, y, x, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) y[i] = gk_vmath1(fn, x[i]);
}

void gk_softcap_array(float *x, int64_t n, float scale, float cap) {
    if (!(cap > 0.0f)) {
        for (int64_t i = 0; i < n; i++) x[i] *= scale;
    } else if (avx2()) {
        gk_softcap_avx2(x, n, scale, cap);
    } else {
        for (int64_t i = 0; i < n; i++) x[i] = cap * gk_vtanh(x[i] * scale / cap);
    }
}

typedef struct {
    float *a;
    const float *b;
    int64_t n;
    gk_gelu kind;
} geglu_job;

void gk_geglu_rows(float *a, const float *b, int64_t n, gk_gelu kind) {
    if (kind != GK_GELU_TANH_F16 && avx2()) {
        gk_geglu_avx2(a, b, n, kind);
        return;
    }
    switch (kind) {
    case GK_GELU_ERF:
        for (int64_t i = 0; i < n; i++) a[i] = gk_vgelu_erf(a[i]) * b[i];
        break;
    case GK_GELU_TANH_F16:
        pthread_once(&gelu_f16_once, gelu_f16_init);
        for (int64_t i = 0; i < n; i++) a[i] = gelu_tanh_f16(a[i]) * b[i];
        break;
    default:
        for (int64_t i = 0; i < n; i++) a[i] = gk_vgelu_tanh(a[i]) * b[i];
    }
}

static void geglu_part(void *arg, int ith, int nth) {
    geglu_job *j = arg;
    int64_t lo, hi;
    gk_split(j->n, ith, nth, &lo, &hi);
    gk_geglu_rows(j->a + lo, j->b + lo, hi - lo, j->kind);
}

void gk_geglu(gk_pool *pool, float *a, const float *b, int64_t n, gk_gelu kind) {
    if (kind == GK_GELU_TANH_F16) pthread_once(&gelu_f16_once, gelu_f16_init);
    geglu_job j = {.a = a, .b = b, .n = n, .kind = kind};
    gk_pool_run(pool, geglu_part, &j);
}

/* Angles in double: with Grok-2's theta of 2e8 and long contexts a float angle
 * loses digits. */
void gk_rope_tables(const gk_rope_cfg *rc, uint32_t pos0, int T, float *cos_t, float *sin_t) {
    int half = rc->n_rot / 2;
    for (int t = 0; t < T; t++) {
        double p = (double)pos0 + t;
        for (int i = 0; i < half; i++) {
            double th_extrap = p * pow(rc->freq_base, -2.0 * i / rc->n_rot);
            double theta = rc->freq_scale * th_extrap, mscale = 1.0;
            if (rc->yarn) {
                /* ggml rope_yarn: mix interpolated and extrapolated angles over the
                 * correction range, and scale magnitudes by mscale. */
                double y = (i - rc->corr_lo) / fmax(0.001, rc->corr_hi - rc->corr_lo);
                double ramp = (1.0 - fmin(1.0, fmax(0.0, y))) * rc->ext_factor;
                theta = theta * (1.0 - ramp) + th_extrap * ramp;
                mscale = rc->mscale;
            }
            cos_t[t * half + i] = (float)(cos(theta) * mscale);
            sin_t[t * half + i] = (float)(sin(theta) * mscale);
        }
    }
}

void gk_rope_apply(float *v, int T, int n_heads, int head_dim, int n_rot, const float *cos_t,
                   const float *sin_t) {
    int half = n_rot / 2;
    for (int t = 0; t < T; t++) {
        const float *cs = cos_t + t * half, *sn = sin_t + t * half;
        for (int h = 0; h < n_heads; h++) {
            float *x = v + ((size_t)t * n_heads + h) * head_dim;
            for (int i = 0; i < half; i++) {
                float a = x[i], b = x[i + half];
                x[i] = a * cs[i] - b * sn[i];
                x[i + half] = b * cs[i] + a * sn[i];
            }
        }
    }
}
