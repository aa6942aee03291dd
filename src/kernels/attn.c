/*
 * attn.c - gk_attn_wsum (ops.h): the weighted sum of value rows in attention,
 * a scalar reference and an AVX2/FMA/F16C version (attn_avx2.c) chosen at run
 * time. Both run, per output element, fmaf over the keys in order from 0, so
 * they give identical bits.
 */
#include "kernels/ops.h"

#include <pthread.h>
#include <stdlib.h>

void gk_attn_wsum_avx2(float *out, const void *V, size_t row, gk_dtype type, const float *w,
                       int64_t nk, int hd);

void gk_attn_wsum_ref(float *out, const void *V, size_t row, gk_dtype type, const float *w,
                      int64_t nk, int hd) {
    const uint8_t *v = V;
    for (int i = 0; i < hd; i++) {
        float acc = 0.0f;
        for (int64_t k = 0; k < nk; k++) {
            const uint8_t *r = v + (size_t)k * row;
            float x = type == GK_TYPE_F16 ? gk_fp16_to_fp32(((const uint16_t *)r)[i])
                                          : ((const float *)r)[i];
            acc = fmaf(w[k], x, acc);
        }
        out[i] = acc;
    }
}

typedef void (*wsum_fn)(float *, const void *, size_t, gk_dtype, const float *, int64_t, int);
static wsum_fn wsum_impl = gk_attn_wsum_ref;
static pthread_once_t wsum_once = PTHREAD_ONCE_INIT;

static void wsum_init(void) {
#if defined(__x86_64__) || defined(_M_X64)
    if (!getenv("GK_FORCE_SCALAR") && gk_cpu_has_avx2_fma_f16c()) wsum_impl = gk_attn_wsum_avx2;
#endif
}

void gk_attn_wsum(float *out, const void *V, size_t row, gk_dtype type, const float *w, int64_t nk,
                  int hd) {
    pthread_once(&wsum_once, wsum_init);
    wsum_impl(out, V, row, type, w, nk, hd);
}
