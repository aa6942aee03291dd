/*
 * dtype.c - the type-traits table, scalar conversions and the scalar
 * reference dot products. The reference kernels are the oracle that the SIMD
 * kernels (dtype_avx2.c) are tested against; gk_dtype_init() swaps the faster
 * ones into the table once, at start.
 */
#include "tensor/dtype.h"
#include "base/base.h"
#include "tensor/kquants.h"
#include "tensor/iquants.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------ conversions --- */

static void f32_to_float(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}
static void f32_from_float(const float *src, void *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = gk_fp16_to_fp32(s[i]);
}
static void f16_from_float(const float *src, void *dst, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = gk_fp32_to_fp16(src[i]);
}

static void bf16_to_float(const void *src, float *dst, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = gk_bf16_to_fp32(s[i]);
}
static void bf16_from_float(const float *src, void *dst, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = gk_fp32_to_bf16(src[i]);
}

static void q8_0_to_float(const void *src, float *dst, int64_t n) {
    const gk_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / GK_QK8_0; i++) {
        float d = gk_fp16_to_fp32(b[i].d);
        for (int j = 0; j < GK_QK8_0; j++) dst[i * GK_QK8_0 + j] = d * (float)b[i].qs[j];
    }
}

/* ggml's quantize_row_q8_0_ref: d = amax/127, q = round(x/d) (half away from zero). */
void gk_quantize_q8_0_ref(const float *src, void *dst, int64_t n) {
    gk_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / GK_QK8_0; i++) {
        const float *x = src + i * GK_QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < GK_QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = gk_fp32_to_fp16(d);
        for (int j = 0; j < GK_QK8_0; j++) b[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

static void q4_0_to_float(const void *src, float *dst, int64_t n) {
    const gk_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / GK_QK4_0; i++) {
        float d = gk_fp16_to_fp32(b[i].d);
        float *y = dst + i * GK_QK4_0;
        for (int j = 0; j < GK_QK4_0 / 2; j++) {
            y[j] = d * (float)((b[i].qs[j] & 0x0f) - 8);
            y[j + GK_QK4_0 / 2] = d * (float)((b[i].qs[j] >> 4) - 8);
        }
    }
}

/* ggml's quantize_row_q4_0_ref: the element of largest magnitude (with its sign)
 * maps to -8, so d = max / -8; q = min(15, (int)(x/d + 8.5)). */
static void q4_0_from_float(const float *src, void *dst, int64_t n) {
    gk_block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / GK_QK4_0; i++) {
        const float *x = src + i * GK_QK4_0;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < GK_QK4_0; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        float d = max / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = gk_fp32_to_fp16(d);
        for (int j = 0; j < GK_QK4_0 / 2; j++) {
            int q0 = (int)(int8_t)(x[j] * id + 8.5f);
            int q1 = (int)(int8_t)(x[j + GK_QK4_0 / 2] * id + 8.5f);
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* ------------------------------------------------------- reference dots --- */

float gk_vec_dot_f32_ref(int64_t n, const void *x, const void *y) {
    const float *a = x, *b = y;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return (float)s;
}

float gk_vec_dot_f16_ref(int64_t n, const void *x, const void *y) {
    const uint16_t *a = x;
    const float *b = y;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)gk_fp16_to_fp32(a[i]) * (double)b[i];
    return (float)s;
}

float gk_vec_dot_bf16_ref(int64_t n, const void *x, const void *y) {
    const uint16_t *a = x;
    const float *b = y;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)gk_bf16_to_fp32(a[i]) * (double)b[i];
    return (float)s;
}

float gk_vec_dot_q8_0_q8_0_ref(int64_t n, const void *x, const void *y) {
    const gk_block_q8_0 *a = x, *b = y;
    float s = 0.0f;
    for (int64_t i = 0; i < n / GK_QK8_0; i++) {
        int32_t acc = 0;
        for (int j = 0; j < GK_QK8_0; j++) acc += (int32_t)a[i].qs[j] * (int32_t)b[i].qs[j];
        s += gk_fp16_to_fp32(a[i].d) * gk_fp16_to_fp32(b[i].d) * (float)acc;
    }
    return s;
}

float gk_vec_dot_q4_0_q8_0_ref(int64_t n, const void *x, const void *y) {
    const gk_block_q4_0 *a = x;
    const gk_block_q8_0 *b = y;
    float s = 0.0f;
    for (int64_t i = 0; i < n / GK_QK4_0; i++) {
        int32_t acc = 0;
        for (int j = 0; j < GK_QK4_0 / 2; j++) {
            acc += ((a[i].qs[j] & 0x0f) - 8) * (int32_t)b[i].qs[j];
            acc += ((a[i].qs[j] >> 4) - 8) * (int32_t)b[i].qs[j + GK_QK4_0 / 2];
        }
        s += gk_fp16_to_fp32(a[i].d) * gk_fp16_to_fp32(b[i].d) * (float)acc;
    }
    return s;
}

/* ------------------------------------------------------------------ table --- */

#define BLOCK(nm, bs, ts) {.name = nm, .blck_size = bs, .type_size = ts}

static gk_type_traits traits[GK_TYPE_COUNT] = {
    [GK_TYPE_F32] = {.name = "f32", .blck_size = 1, .type_size = 4, .to_float = f32_to_float,
                     .from_float = f32_from_float, .vec_dot = gk_vec_dot_f32_ref,
                     .vec_dot_type = GK_TYPE_F32},
    [GK_TYPE_F16] = {.name = "f16", .blck_size = 1, .type_size = 2, .to_float = f16_to_float,
                     .from_float = f16_from_float, .vec_dot = gk_vec_dot_f16_ref,
                     .vec_dot_type = GK_TYPE_F32},
    [GK_TYPE_BF16] = {.name = "bf16", .blck_size = 1, .type_size = 2, .to_float = bf16_to_float,
                      .from_float = bf16_from_float, .vec_dot = gk_vec_dot_bf16_ref,
                      .vec_dot_type = GK_TYPE_F32},
    [GK_TYPE_Q8_0] = {.name = "q8_0", .blck_size = 32, .type_size = 34,
                      .to_float = q8_0_to_float, .from_float = gk_quantize_q8_0_ref,
                      .vec_dot = gk_vec_dot_q8_0_q8_0_ref, .vec_dot_type = GK_TYPE_Q8_0},
    [GK_TYPE_Q4_0] = {.name = "q4_0", .blck_size = 32, .type_size = 18,
                      .to_float = q4_0_to_float, .from_float = q4_0_from_float,
                      .vec_dot = gk_vec_dot_q4_0_q8_0_ref, .vec_dot_type = GK_TYPE_Q8_0},
    /* Known to ggml, parsed and described, not computed with (yet). */
    [GK_TYPE_Q4_1] = BLOCK("q4_1", 32, 20),
    [GK_TYPE_Q5_0] = BLOCK("q5_0", 32, 22),
    [GK_TYPE_Q5_1] = BLOCK("q5_1", 32, 24),
    [GK_TYPE_Q8_1] = BLOCK("q8_1", 32, 36),
    /* k-quants and IQ4 (kquants.c) */
    [GK_TYPE_Q2_K] = {.name = "q2_k", .blck_size = 256, .type_size = 84,
                      .to_float = gk_dequantize_q2_K, .from_float = gk_quantize_q2_K,
                      .vec_dot = gk_vec_dot_q2_K_q8_K_ref, .vec_dot_type = GK_TYPE_Q8_K},
    [GK_TYPE_Q3_K] = {.name = "q3_k", .blck_size = 256, .type_size = 110,
                      .to_float = gk_dequantize_q3_K, .from_float = gk_quantize_q3_K,
                      .vec_dot = gk_vec_dot_q3_K_q8_K_ref, .vec_dot_type = GK_TYPE_Q8_K},
    [GK_TYPE_Q4_K] = {.name = "q4_k", .blck_size = 256, .type_size = 144,
                      .to_float = gk_dequantize_q4_K, .from_float = gk_quantize_q4_K,
                      .vec_dot = gk_vec_dot_q4_K_q8_K_ref, .vec_dot_type = GK_TYPE_Q8_K},
    [GK_TYPE_Q5_K] = {.name = "q5_k", .blck_size = 256, .type_size = 176,
                      .to_float = gk_dequantize_q5_K, .from_float = gk_quantize_q5_K,
                      .vec_dot = gk_vec_dot_q5_K_q8_K_ref, .vec_dot_type = GK_TYPE_Q8_K},
    [GK_TYPE_Q6_K] = {.name = "q6_k", .blck_size = 256, .type_size = 210,
                      .to_float = gk_dequantize_q6_K, .from_float = gk_quantize_q6_K,
                      .vec_dot = gk_vec_dot_q6_K_q8_K_ref, .vec_dot_type = GK_TYPE_Q8_K},
    /* activations only: a from_float for the k-quant dots, no vec_dot of its own */
    [GK_TYPE_Q8_K] = {.name = "q8_k", .blck_size = 256, .type_size = 292,
                      .to_float = gk_dequantize_q8_K, .from_float = gk_quantize_q8_K_ref},
    [GK_TYPE_IQ4_NL] = {.name = "iq4_nl", .blck_size = 32, .type_size = 18,
                        .to_float = gk_dequantize_iq4_nl, .vec_dot = gk_vec_dot_iq4_nl_q8_0_ref,
                        .vec_dot_type = GK_TYPE_Q8_0},
    [GK_TYPE_IQ4_XS] = {.name = "iq4_xs", .blck_size = 256, .type_size = 136,
                        .to_float = gk_dequantize_iq4_xs, .vec_dot = gk_vec_dot_iq4_xs_q8_K_ref,
                        .vec_dot_type = GK_TYPE_Q8_K},
    /* IQ types (iquants.c): reading only */
    [GK_TYPE_IQ2_XXS] = {.name = "iq2_xxs", .blck_size = 256, .type_size = 66,
                         .to_float = gk_dequantize_iq2_xxs, .vec_dot = gk_vec_dot_iq2_xxs_q8_K_ref,
                         .vec_dot_type = GK_TYPE_Q8_K},
    [GK_TYPE_IQ2_XS] = {.name = "iq2_xs", .blck_size = 256, .type_size = 74,
                        .to_float = gk_dequantize_iq2_xs, .vec_dot = gk_vec_dot_iq2_xs_q8_K_ref,
                        .vec_dot_type = GK_TYPE_Q8_K},
    [GK_TYPE_IQ3_XXS] = {.name = "iq3_xxs", .blck_size = 256, .type_size = 98,
                         .to_float = gk_dequantize_iq3_xxs, .vec_dot = gk_vec_dot_iq3_xxs_q8_K_ref,
                         .vec_dot_type = GK_TYPE_Q8_K},
    [GK_TYPE_IQ1_S] = {.name = "iq1_s", .blck_size = 256, .type_size = 50,
                         .to_float = gk_dequantize_iq1_s, .vec_dot = gk_vec_dot_iq1_s_q8_K_ref,
                         .vec_dot_type = GK_TYPE_Q8_K},
    [GK_TYPE_IQ3_S] = {.name = "iq3_s", .blck_size = 256, .type_size = 110,
                         .to_float = gk_dequantize_iq3_s, .vec_dot = gk_vec_dot_iq3_s_q8_K_ref,
                         .vec_dot_type = GK_TYPE_Q8_K},
    [GK_TYPE_IQ2_S] = {.name = "iq2_s", .blck_size = 256, .type_size = 82,
                       .to_float = gk_dequantize_iq2_s, .vec_dot = gk_vec_dot_iq2_s_q8_K_ref,
                       .vec_dot_type = GK_TYPE_Q8_K},
    [GK_TYPE_I8] = BLOCK("i8", 1, 1),
    [GK_TYPE_I16] = BLOCK("i16", 1, 2),
    [GK_TYPE_I32] = BLOCK("i32", 1, 4),
    [GK_TYPE_I64] = BLOCK("i64", 1, 8),
    [GK_TYPE_F64] = BLOCK("f64", 1, 8),
    [GK_TYPE_IQ1_M] = {.name = "iq1_m", .blck_size = 256, .type_size = 56,
                       .to_float = gk_dequantize_iq1_m, .vec_dot = gk_vec_dot_iq1_m_q8_K_ref,
                       .vec_dot_type = GK_TYPE_Q8_K},
    [GK_TYPE_TQ1_0] = BLOCK("tq1_0", 256, 54),
    [GK_TYPE_TQ2_0] = BLOCK("tq2_0", 256, 66),
    [GK_TYPE_MXFP4] = BLOCK("mxfp4", 32, 17),
};

const gk_type_traits *gk_type_traits_of(uint32_t type) {
    if (type >= GK_TYPE_COUNT || !traits[type].name) return NULL;
    return &traits[type];
}

bool gk_type_is_supported(uint32_t type) {
    const gk_type_traits *t = gk_type_traits_of(type);
    /* the activations must be convertible to what the dot product takes */
    return t && t->to_float && t->vec_dot &&
           (t->vec_dot_type == GK_TYPE_F32 || traits[t->vec_dot_type].from_float);
}

const char *gk_type_name(uint32_t type) {
    const gk_type_traits *t = gk_type_traits_of(type);
    return t ? t->name : "?";
}

int gk_type_from_name(const char *name) {
    for (int i = 0; i < GK_TYPE_COUNT; i++)
        if (traits[i].name && strcasecmp(traits[i].name, name) == 0) return i;
    return -1;
}

size_t gk_row_size(uint32_t type, int64_t n) {
    const gk_type_traits *t = gk_type_traits_of(type);
    if (!t || n < 0 || n % t->blck_size) return 0;
    uint64_t bytes;
    if (!gk_mul_u64((uint64_t)(n / t->blck_size), t->type_size, &bytes) || bytes > SIZE_MAX)
        return 0;
    return (size_t)bytes;
}

/* ------------------------------------------------------------- dispatch --- */

#if defined(__x86_64__) || defined(_M_X64)
float gk_vec_dot_f32_avx2(int64_t n, const void *x, const void *y);
void gk_f16_from_float_avx2(const float *src, void *dst, int64_t n);
void gk_f16_to_float_avx2(const void *src, float *dst, int64_t n);
float gk_vec_dot_f16_avx2(int64_t n, const void *x, const void *y);
float gk_vec_dot_bf16_avx2(int64_t n, const void *x, const void *y);
float gk_vec_dot_q8_0_q8_0_avx2(int64_t n, const void *x, const void *y);
float gk_vec_dot_q4_0_q8_0_avx2(int64_t n, const void *x, const void *y);
void gk_quantize_q8_0_avx2(const float *src, void *dst, int64_t n);
void gk_vec_dot4_q8_0_q8_0_avx2(int64_t n, const void *x, size_t bx, const void *y, float *s);
void gk_vec_dot4_q4_0_q8_0_avx2(int64_t n, const void *x, size_t bx, const void *y, float *s);
void gk_vec_dot4_f32_avx2(int64_t n, const void *x, size_t bx, const void *y, float *s);
#endif

static const char *kernels_name = "scalar";
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
/* Read from cpuid directly: clang 14's __builtin_cpu_supports does not know "f16c". */
bool gk_cpu_has_avx2_fma_f16c(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
         f16c = c & (1u << 29);
    if (!(fma && osxsave && avx && f16c)) return false;
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6) != 6) return false; /* XMM and YMM state enabled */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return b & (1u << 5); /* AVX2 */
}

/* AVX-512 F, BW, VL and VNNI, with the OS saving opmask and ZMM state. */
bool gk_cpu_has_avx512_vnni(void) {
    unsigned a, b, c, d;
    if (!gk_cpu_has_avx2_fma_f16c() || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    bool f = b & (1u << 16), bw = b & (1u << 30), vl = b & (1u << 31), vnni = c & (1u << 11);
    if (!(f && bw && vl && vnni)) return false;
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 0xe6) == 0xe6;
}
#endif

static void dtype_init(void) {
#if defined(__x86_64__) || defined(_M_X64)
    if (getenv("GK_FORCE_SCALAR")) return;
    if (gk_cpu_has_avx2_fma_f16c()) {
        traits[GK_TYPE_F32].vec_dot = gk_vec_dot_f32_avx2;
        traits[GK_TYPE_F16].vec_dot = gk_vec_dot_f16_avx2;
        traits[GK_TYPE_F16].from_float = gk_f16_from_float_avx2;
        traits[GK_TYPE_F16].to_float = gk_f16_to_float_avx2;
        traits[GK_TYPE_BF16].vec_dot = gk_vec_dot_bf16_avx2;
        traits[GK_TYPE_Q8_0].vec_dot = gk_vec_dot_q8_0_q8_0_avx2;
        traits[GK_TYPE_Q4_0].vec_dot = gk_vec_dot_q4_0_q8_0_avx2;
        traits[GK_TYPE_Q8_0].from_float = gk_quantize_q8_0_avx2;
        traits[GK_TYPE_F32].vec_dot4 = gk_vec_dot4_f32_avx2;
        traits[GK_TYPE_Q8_0].vec_dot4 = gk_vec_dot4_q8_0_q8_0_avx2;
        traits[GK_TYPE_Q4_0].vec_dot4 = gk_vec_dot4_q4_0_q8_0_avx2;
        traits[GK_TYPE_Q8_K].from_float = gk_quantize_q8_K_avx2;
        traits[GK_TYPE_Q2_K].vec_dot = gk_vec_dot_q2_K_q8_K_avx2;
        traits[GK_TYPE_Q3_K].vec_dot = gk_vec_dot_q3_K_q8_K_avx2;
        traits[GK_TYPE_Q4_K].vec_dot = gk_vec_dot_q4_K_q8_K_avx2;
        traits[GK_TYPE_Q5_K].vec_dot = gk_vec_dot_q5_K_q8_K_avx2;
        traits[GK_TYPE_Q6_K].vec_dot = gk_vec_dot_q6_K_q8_K_avx2;
        traits[GK_TYPE_IQ4_NL].vec_dot = gk_vec_dot_iq4_nl_q8_0_avx2;
        traits[GK_TYPE_IQ4_XS].vec_dot = gk_vec_dot_iq4_xs_q8_K_avx2;
        traits[GK_TYPE_Q2_K].vec_dot4 = gk_vec_dot4_q2_K_q8_K_avx2;
        traits[GK_TYPE_Q3_K].vec_dot4 = gk_vec_dot4_q3_K_q8_K_avx2;
        traits[GK_TYPE_Q4_K].vec_dot4 = gk_vec_dot4_q4_K_q8_K_avx2;
        traits[GK_TYPE_Q5_K].vec_dot4 = gk_vec_dot4_q5_K_q8_K_avx2;
        traits[GK_TYPE_Q6_K].vec_dot4 = gk_vec_dot4_q6_K_q8_K_avx2;
        traits[GK_TYPE_IQ4_XS].vec_dot4 = gk_vec_dot4_iq4_xs_q8_K_avx2;
        traits[GK_TYPE_IQ2_XXS].vec_dot = gk_vec_dot_iq2_xxs_q8_K_avx2;
        traits[GK_TYPE_IQ3_XXS].vec_dot = gk_vec_dot_iq3_xxs_q8_K_avx2;
        traits[GK_TYPE_IQ3_S].vec_dot = gk_vec_dot_iq3_s_q8_K_avx2;
        traits[GK_TYPE_IQ1_S].vec_dot = gk_vec_dot_iq1_s_q8_K_avx2;
        traits[GK_TYPE_IQ2_XS].vec_dot = gk_vec_dot_iq2_xs_q8_K_avx2;
        traits[GK_TYPE_IQ2_S].vec_dot = gk_vec_dot_iq2_s_q8_K_avx2;
        traits[GK_TYPE_IQ1_M].vec_dot = gk_vec_dot_iq1_m_q8_K_avx2;
        kernels_name = "avx2";
        /* Opt-in: measured no faster than AVX2 on this project's AVX-512 machine
         * (bench/kquants_bench.c), and 512-bit code can lower the clock. */
        if (getenv("GK_AVX512") && gk_cpu_has_avx512_vnni()) {
            traits[GK_TYPE_Q4_K].vec_dot = gk_vec_dot_q4_K_q8_K_avx512;
            traits[GK_TYPE_Q6_K].vec_dot = gk_vec_dot_q6_K_q8_K_avx512;
            traits[GK_TYPE_Q4_K].vec_dot4 = gk_vec_dot4_q4_K_q8_K_avx512;
            traits[GK_TYPE_Q6_K].vec_dot4 = gk_vec_dot4_q6_K_q8_K_avx512;
            kernels_name = "avx2+avx512";
        }
    }
#endif
}

void gk_dtype_init(void) { pthread_once(&init_once, dtype_init); }

const char *gk_dtype_kernels(void) {
    gk_dtype_init();
    return kernels_name;
}

