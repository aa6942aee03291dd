/*
 * test_dtype.c - tensor types against values computed by hand (not by the code
 * under test): Q8_0 and Q4_0 blocks dequantized and quantized, fp16/bf16
 * conversions; then every SIMD dot kernel against its scalar reference.
 */
#include "gk_test.h"
#include "tensor/dtype.h"
#include "base/base.h"

#include <math.h>
#include <string.h>

static void test_traits(void) {
    CHECK(gk_type_traits_of(GK_TYPE_Q8_0)->blck_size == 32);
    CHECK(gk_type_traits_of(GK_TYPE_Q8_0)->type_size == 34);
    CHECK(gk_type_traits_of(GK_TYPE_Q4_0)->type_size == 18);
    CHECK(gk_type_traits_of(GK_TYPE_BF16)->type_size == 2);
    CHECK(gk_type_traits_of(4) == NULL); /* removed from ggml */
    CHECK(gk_type_traits_of(99) == NULL);
    CHECK(gk_type_is_supported(GK_TYPE_Q4_0) && !gk_type_is_supported(GK_TYPE_TQ1_0));
    CHECK(gk_row_size(GK_TYPE_Q8_0, 64) == 68);
    CHECK(gk_row_size(GK_TYPE_Q8_0, 33) == 0); /* not a whole block */
    CHECK(gk_type_from_name("Q4_0") == GK_TYPE_Q4_0 && gk_type_from_name("nope") == -1);
}

static void test_half(void) {
    /* hand-checked IEEE binary16 / bfloat16 encodings */
    CHECK(gk_fp16_to_fp32(0x3c00) == 1.0f);
    CHECK(gk_fp16_to_fp32(0xc000) == -2.0f);
    CHECK(gk_fp16_to_fp32(0x3800) == 0.5f);
    CHECK(gk_fp16_to_fp32(0x7bff) == 65504.0f);
    CHECK(gk_fp16_to_fp32(0x0001) == 5.9604644775390625e-8f); /* smallest subnormal */
    CHECK(isinf(gk_fp16_to_fp32(0x7c00)));
    CHECK(gk_fp32_to_fp16(1.0f) == 0x3c00);
    CHECK(gk_fp32_to_fp16(0.1259765625f) == 0x3008);
    CHECK(gk_fp32_to_fp16(65520.0f) == 0x7c00);  /* rounds up to inf */
    CHECK(gk_fp32_to_fp16(1.0f + 1.0f / 2048) == 0x3c00); /* tie -> even */
    CHECK(gk_fp32_to_fp16(1.0f + 3.0f / 2048) == 0x3c02); /* tie -> even (up) */
    CHECK(gk_fp32_to_fp16(5.9604644775390625e-8f) == 0x0001);
    /* the f16 rows (F16C where the CPU has it) give gk_fp32_to_fp16's and
     * gk_fp16_to_fp32's bits: every f16 code, and f32 values around every f16
     * step (ties, subnormals, overflow, infinities and NaNs, quiet and signalling) */
    const gk_type_traits *ht = gk_type_traits_of(GK_TYPE_F16);
    enum { NH = 65536 + 3 };
    static uint16_t codes[NH], back[NH];
    static float vals[NH], got[NH];
    for (int i = 0; i < NH; i++) codes[i] = (uint16_t)(i * 40503u);
    ht->to_float(codes, got, NH);
    int bad = 0;
    for (int i = 0; i < NH; i++) {
        float e = gk_fp16_to_fp32(codes[i]);
        bad += memcmp(&e, &got[i], 4) != 0;
    }
    CHECK_MSG(bad == 0, "f16 to_float: %d codes differ from gk_fp16_to_fp32", bad);
    uint32_t x = 12345;
    for (int i = 0; i < NH; i++) {
        x = x * 1664525u + 1013904223u;
        /* an f16 value's f32 bits, moved by up to +-2^13 ulps of f32 (half an f16 step
         * either way), or any f32 bits */
        float f = gk_fp16_to_fp32((uint16_t)(x >> 16));
        uint32_t b;
        memcpy(&b, &f, 4);
        b = i % 4 == 3 ? x : b + (int32_t)((x & 0x3fff) - 0x2000);
        memcpy(&vals[i], &b, 4);
    }
    ht->from_float(vals, back, NH);
    bad = 0;
    for (int i = 0; i < NH; i++) bad += back[i] != gk_fp32_to_fp16(vals[i]);
    CHECK_MSG(bad == 0, "f16 from_float: %d values differ from gk_fp32_to_fp16", bad);
    CHECK(gk_bf16_to_fp32(0x3f80) == 1.0f);
    CHECK(gk_fp32_to_bf16(1.0f) == 0x3f80);
    CHECK(gk_fp32_to_bf16(1.00390625f) == 0x3f80); /* 1 + 2^-8: tie -> even */
    CHECK(gk_fp32_to_bf16(1.01171875f) == 0x3f82); /* 1 + 3*2^-8: tie -> even (up) */
}

static void test_q8_0_golden(void) {
    /* dequantize: d = 0.5 (fp16 0x3800), qs[i] = i - 16  ->  x[i] = 0.5 * (i - 16) */
    gk_block_q8_0 b = {.d = 0x3800};
    for (int i = 0; i < 32; i++) b.qs[i] = (int8_t)(i - 16);
    float x[32];
    gk_type_traits_of(GK_TYPE_Q8_0)->to_float(&b, x, 32);
    CHECK(x[0] == -8.0f && x[16] == 0.0f && x[17] == 0.5f && x[31] == 7.5f);

    /* quantize x[i] = i - 16: amax 16, d = 16/127 -> fp16 0x3008 (0.1259765625),
     * q = round(x * 127/16): -16 -> -127, 1 -> round(7.9375) = 8, 15 -> round(119.06) = 119,
     * -3 -> round(-23.8125) = -24 */
    float in[32];
    for (int i = 0; i < 32; i++) in[i] = (float)(i - 16);
    gk_block_q8_0 q;
    gk_type_traits_of(GK_TYPE_Q8_0)->from_float(in, &q, 32);
    CHECK(q.d == 0x3008);
    CHECK(q.qs[0] == -127 && q.qs[16] == 0 && q.qs[17] == 8 && q.qs[31] == 119 && q.qs[13] == -24);
}

static void test_q4_0_golden(void) {
    /* dequantize: d = -0.25 (fp16 0xb400); byte j = j | (15 - j) << 4
     * -> x[j] = -0.25 * (j - 8), x[j + 16] = -0.25 * (7 - j) */
    gk_block_q4_0 b = {.d = 0xb400};
    for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | (15 - j) << 4);
    float x[32];
    gk_type_traits_of(GK_TYPE_Q4_0)->to_float(&b, x, 32);
    CHECK(x[0] == 2.0f && x[8] == 0.0f && x[15] == -1.75f);
    CHECK(x[16] == -1.75f && x[23] == 0.0f && x[31] == 2.0f);

    /* quantize x[i] = i - 16: the largest magnitude is -16, so d = -16 / -8 = 2 (0x4000),
     * q = min(15, trunc(x / 2 + 8.5)): q[0] = 0, q[1] = 1, q[3] = 2, q[15] = 8,
     * q[16] = 8, q[17] = 9, q[31] = trunc(16) -> 15 (clamped) */
    float in[32];
    for (int i = 0; i < 32; i++) in[i] = (float)(i - 16);
    gk_block_q4_0 q;
    gk_type_traits_of(GK_TYPE_Q4_0)->from_float(in, &q, 32);
    CHECK(q.d == 0x4000);
    CHECK(q.qs[0] == 0x80 && q.qs[1] == 0x91 && q.qs[3] == 0xa2 && q.qs[15] == 0xf8);
}

/* Every kernel set computes the same dot as the scalar reference. */
static void test_simd_vs_ref(void) {
    enum { N = 4096 };
    static float a[N], b[N];
    uint64_t s = 42;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1;
        a[i] = (float)((s >> 40) & 0xffff) / 32768.0f - 1.0f;
        s = s * 6364136223846793005ull + 1;
        b[i] = (float)((s >> 40) & 0xffff) / 32768.0f - 1.0f;
    }
    gk_dtype_init();
    printf("kernels: %s\n", gk_dtype_kernels());
    uint32_t types[] = {GK_TYPE_F32, GK_TYPE_F16, GK_TYPE_BF16, GK_TYPE_Q8_0, GK_TYPE_Q4_0};
    gk_vec_dot_fn refs[] = {gk_vec_dot_f32_ref, gk_vec_dot_f16_ref, gk_vec_dot_bf16_ref,
                            gk_vec_dot_q8_0_q8_0_ref, gk_vec_dot_q4_0_q8_0_ref};
    static uint8_t wa[N * 4], wb[N * 4];
    for (int k = 0; k < 5; k++) {
        const gk_type_traits *t = gk_type_traits_of(types[k]);
        const gk_type_traits *vt = gk_type_traits_of(t->vec_dot_type);
        t->from_float(a, wa, N);
        vt->from_float(b, wb, N);
        for (int n = 32; n <= N; n *= 4) {
            float r = refs[k](n, wa, wb), f = t->vec_dot(n, wa, wb);
            CHECK_MSG(fabsf(r - f) <= 1e-4f * (1.0f + fabsf(r)), "%s n=%d: ref %g simd %g",
                      t->name, n, r, f);
        }
        /* the 4-row kernel, where there is one, computes the same four dots */
        if (t->vec_dot4) {
            size_t rb = gk_row_size(types[k], 1024);
            float s4[4];
            t->vec_dot4(1024, wa, rb, wb, s4);
            for (int r = 0; r < 4; r++) {
                float one = t->vec_dot(1024, wa + r * rb, wb);
                CHECK_MSG(fabsf(s4[r] - one) <= 1e-5f * (1.0f + fabsf(one)), "%s dot4 row %d: %g vs %g",
                          t->name, r, s4[r], one);
            }
        }
        /* and the dequantized dot agrees with the quantized kernel */
        static float da[N], db[N];
        t->to_float(wa, da, N);
        vt->to_float(wb, db, N);
        double exact = 0;
        for (int i = 0; i < N; i++) exact += (double)da[i] * db[i];
        float f = t->vec_dot(N, wa, wb);
        CHECK_MSG(fabs(exact - f) <= 1e-3 * (1.0 + fabs(exact)), "%s: dequantized %g kernel %g",
                  t->name, exact, f);
    }
}

/* The SIMD Q8_0 quantizer writes the same bytes as the scalar reference,
 * including exact .5 ties (roundf rounds them away from zero). */
static void test_quantize_simd(void) {
    enum { N = 32 * 512 };
    static float x[N];
    static gk_block_q8_0 a[N / 32], b[N / 32];
    uint64_t s = 7;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1;
        x[i] = (float)((int64_t)(s >> 33) % 20001 - 10000) / 997.0f;
    }
    /* blocks whose amax is 127 make x * (1/d) land on exact halves */
    for (int i = 0; i < 32; i++) x[i] = (i == 0) ? 127.0f : (float)(i - 16) + 0.5f;
    for (int i = 32; i < 64; i++) x[i] = (i == 32) ? -127.0f : -(float)(i - 48) - 0.5f;
    for (int i = 64; i < 96; i++) x[i] = 0.0f; /* d = 0 */
    gk_quantize_q8_0_ref(x, a, N);
    gk_type_traits_of(GK_TYPE_Q8_0)->from_float(x, b, N);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(a[0].qs[1] == -15 && a[0].qs[16] == 1); /* -14.5 -> -15, 0.5 -> 1 */
}

int main(void) {
    test_quantize_simd();
    test_traits();
    test_half();
    test_q8_0_golden();
    test_q4_0_golden();
    test_simd_vs_ref();
    return gk_test_done();
}
