/*
 * attn.c - attention's kernels over the query heads of one KV group and the
 * keys of their sequence (ops.h): the dot products with the key rows (gk_attn_dots), the
 * softcap and softmax of the scores (gk_attn_softmax) and the weighted sum of
 * value rows (gk_attn_wsum). Each has a scalar reference here and AVX2/FMA/F16C
 * (attn_avx2.c) and AVX-512 (attn_avx512.c) versions chosen at run time, which
 * run the reference's operations in its order and give its bits:
 *   dots:    per key, 16 partial sums (lane j takes the inputs i = j mod 16 by
 *            fmaf in order, the head padded with zeros to a multiple of 16),
 *            added as the tree (j + j+8), then (j + j+4), (j + j+2), (0 + 1);
 *   softmax: 8 lanes (key k in lane k mod 8) of the running max and of the
 *            sum of the exponentials in double, reduced by fixed trees;
 *   wsum:    per output element, fmaf over the keys in order from 0.
 * So a key's score and a head's output never depend on how many keys or
 * queries a call holds or on the instruction set.
 */
#include "kernels/attn_impl.h"
#include "kernels/vmath.h"

#include <pthread.h>
#include <stdlib.h>

static inline float kv_elem(gk_dtype type, const uint8_t *r, int i) {
    return type == GK_TYPE_F16 ? gk_fp16_to_fp32(((const uint16_t *)r)[i]) : ((const float *)r)[i];
}

void gk_attn_dots_ref(float *s, size_t ss, const void *K, size_t row, gk_dtype type, const float *q,
                      int nq, int64_t nk, int hd) {
    const uint8_t *kb = K;
    const int hp = (hd + 15) / 16 * 16;
    for (int qi = 0; qi < nq; qi++)
        for (int64_t k = 0; k < nk; k++) {
            const uint8_t *r = kb + (size_t)k * row;
            const float *qv = q + (size_t)qi * hd;
            float l[16] = {0};
            for (int i = 0; i < hp; i++) {
                float a = i < hd ? kv_elem(type, r, i) : 0.0f, b = i < hd ? qv[i] : 0.0f;
                l[i % 16] = fmaf(a, b, l[i % 16]);
            }
            for (int w = 8; w >= 1; w /= 2)
                for (int j = 0; j < w; j++) l[j] = l[j] + l[j + w];
            s[qi * ss + k] = l[0];
        }
}

/* The lanes' results of the softmax's max and sum, reduced by fixed trees (the
 * SIMD versions store their lanes and call these). */
float gk_attn_max8(const float m[8]) {
    float a[4];
    for (int j = 0; j < 4; j++) a[j] = m[j + 4] > m[j] ? m[j + 4] : m[j];
    float b0 = a[2] > a[0] ? a[2] : a[0], b1 = a[3] > a[1] ? a[3] : a[1];
    return b1 > b0 ? b1 : b0;
}
double gk_attn_sum8(const double d[8]) {
    return ((d[0] + d[4]) + (d[2] + d[6])) + ((d[1] + d[5]) + (d[3] + d[7]));
}

/* The scalar steps of gk_attn_softmax from key k0 on (the SIMD versions' tails). */
void gk_attn_softmax_tail(float *s, int64_t k0, int64_t n, float scale, float cap, float temp,
                          float m[8]) {
    for (int64_t k = k0; k < n; k++) {
        float v = s[k] * scale;
        if (cap > 0.0f) v = cap * gk_vtanh(v / cap);
        v = v * temp;
        s[k] = v;
        m[k % 8] = v > m[k % 8] ? v : m[k % 8];
    }
}
void gk_attn_softmax_tail2(float *s, int64_t k0, int64_t n, float mx, double d[8]) {
    for (int64_t k = k0; k < n; k++) {
        s[k] = gk_vexp(s[k] - mx);
        d[k % 8] += (double)s[k];
    }
}
void gk_attn_softmax_tail3(float *s, int64_t k0, int64_t n, float inv, bool f16w) {
    for (int64_t k = k0; k < n; k++) {
        float w = s[k] * inv;
        s[k] = f16w ? gk_fp16_to_fp32(gk_fp32_to_fp16(w)) : w;
    }
}

void gk_attn_softmax_ref(float *s, int64_t n, float scale, float cap, float temp, bool f16w) {
    float m[8];
    double d[8] = {0};
    for (int j = 0; j < 8; j++) m[j] = -INFINITY;
    gk_attn_softmax_tail(s, 0, n, scale, cap, temp, m);
    float mx = gk_attn_max8(m);
    gk_attn_softmax_tail2(s, 0, n, mx, d);
    float inv = (float)(1.0 / gk_attn_sum8(d));
    gk_attn_softmax_tail3(s, 0, n, inv, f16w);
}

void gk_attn_wsum_ref(float *out, const void *V, size_t row, gk_dtype type, const float *w,
                      size_t ws, int nq, int64_t nk, int hd) {
    const uint8_t *v = V;
    for (int qi = 0; qi < nq; qi++)
        for (int i = 0; i < hd; i++) {
            float acc = 0.0f;
            for (int64_t k = 0; k < nk; k++)
                acc = fmaf(w[qi * ws + k], kv_elem(type, v + (size_t)k * row, i), acc);
            out[(size_t)qi * hd + i] = acc;
        }
}

typedef void (*dots_fn)(float *, size_t, const void *, size_t, gk_dtype, const float *, int,
                        int64_t, int);
typedef void (*wsum_fn)(float *, const void *, size_t, gk_dtype, const float *, size_t, int,
                        int64_t, int);
typedef void (*softmax_fn)(float *, int64_t, float, float, float, bool);
static wsum_fn wsum_impl = gk_attn_wsum_ref;
static dots_fn dots_impl = gk_attn_dots_ref;
static softmax_fn softmax_impl = gk_attn_softmax_ref;
static pthread_once_t attn_once = PTHREAD_ONCE_INIT;

static void attn_init(void) {
#if defined(__x86_64__) || defined(_M_X64)
    if (getenv("GK_FORCE_SCALAR") || !gk_cpu_has_avx2_fma_f16c()) return;
    wsum_impl = gk_attn_wsum_avx2;
    dots_impl = gk_attn_dots_avx2;
    softmax_impl = gk_attn_softmax_avx2;
    if (gk_cpu_has_avx512_vnni() && !getenv("GK_NO_AVX512")) {
        wsum_impl = gk_attn_wsum_avx512;
        dots_impl = gk_attn_dots_avx512;
        softmax_impl = gk_attn_softmax_avx512;
    }
#endif
}

void gk_attn_wsum(float *out, const void *V, size_t row, gk_dtype type, const float *w, size_t ws,
                  int nq, int64_t nk, int hd) {
    pthread_once(&attn_once, attn_init);
    wsum_impl(out, V, row, type, w, ws, nq, nk, hd);
}

void gk_attn_dots(float *s, size_t ss, const void *K, size_t row, gk_dtype type, const float *q,
                  int nq, int64_t nk, int hd) {
    pthread_once(&attn_once, attn_init);
    dots_impl(s, ss, K, row, type, q, nq, nk, hd);
}

void gk_attn_softmax(float *s, int64_t n, float scale, float cap, float temp, bool f16w) {
    pthread_once(&attn_once, attn_init);
    softmax_impl(s, n, scale, cap, temp, f16w);
}
