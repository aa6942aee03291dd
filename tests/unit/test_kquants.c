/*
 * test_kquants.c - the k-quant and IQ4 types:
 *   - golden blocks whose values were worked out by hand from the format
 *     description (not by the code under test);
 *   - the Q8_K activation quantizer on a hand-checked row (ties to even);
 *   - each reference dot product against the float dot of the dequantized
 *     rows (the dot's scale/min bookkeeping against to_float);
 *   - each quantizer's round-trip error on Gaussian rows, within a stated bound;
 *   - every SIMD kernel (vec_dot, vec_dot4, the Q8_K quantizer) equal to its
 *     scalar reference bit for bit, on random blocks;
 *   - malformed blocks (NaN/inf/huge scales, all bit patterns) never crash.
 */
#include "gk_test.h"
#include "base/base.h"
#include "tensor/dtype.h"
#include "format/quantize.h"
#include "tensor/kquants.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------- random --- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float unif(void) {
    return (float)(rnd() & 0xffffff) / 16777216.0f;
}
static float gauss(void) {
    float u = unif() + 1e-7f, v = unif();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

/* The k-quant weight types and their scalar references. */
typedef struct {
    gk_dtype t;
    gk_vec_dot_fn ref;
} kq_type;
static const kq_type kq_types[] = {
    {GK_TYPE_Q2_K, gk_vec_dot_q2_K_q8_K_ref},     {GK_TYPE_Q3_K, gk_vec_dot_q3_K_q8_K_ref},
    {GK_TYPE_Q4_K, gk_vec_dot_q4_K_q8_K_ref},     {GK_TYPE_Q5_K, gk_vec_dot_q5_K_q8_K_ref},
    {GK_TYPE_Q6_K, gk_vec_dot_q6_K_q8_K_ref},     {GK_TYPE_IQ4_XS, gk_vec_dot_iq4_xs_q8_K_ref},
    {GK_TYPE_IQ4_NL, gk_vec_dot_iq4_nl_q8_0_ref},
};
#define N_KQ (int)(sizeof kq_types / sizeof kq_types[0])

/* Offsets of the fp16 scale fields in each block (set to finite values when a
 * test wants well-formed random blocks). */
static void fix_scales(gk_dtype t, uint8_t *blk, size_t bs, int64_t nblk, bool finite) {
    for (int64_t i = 0; i < nblk; i++) {
        uint8_t *b = blk + i * bs;
        size_t off[2];
        int n = 0;
        switch (t) {
        case GK_TYPE_Q2_K:
            off[n++] = 80, off[n++] = 82;
            break;
        case GK_TYPE_Q3_K:
            off[n++] = 108;
            break;
        case GK_TYPE_Q4_K:
        case GK_TYPE_Q5_K:
            off[n++] = 0, off[n++] = 2;
            break;
        case GK_TYPE_Q6_K:
            off[n++] = 208;
            break;
        case GK_TYPE_IQ4_XS:
        case GK_TYPE_IQ4_NL:
            off[n++] = 0;
            break;
        default:
            break;
        }
        for (int k = 0; k < n; k++) {
            uint16_t h = finite ? gk_fp32_to_fp16(0.001f + 0.05f * unif()) : (uint16_t)rnd();
            memcpy(b + off[k], &h, 2);
        }
    }
}

/* ---------------------------------------------------------------- golden --- */

static void test_sizes(void) {
    CHECK(sizeof(gk_block_q2_K) == 84 && sizeof(gk_block_q3_K) == 110);
    CHECK(sizeof(gk_block_q4_K) == 144 && sizeof(gk_block_q5_K) == 176);
    CHECK(sizeof(gk_block_q6_K) == 210 && sizeof(gk_block_q8_K) == 292);
    CHECK(sizeof(gk_block_iq4_nl) == 18 && sizeof(gk_block_iq4_xs) == 136);
    for (int i = 0; i < N_KQ; i++) {
        const gk_type_traits *tr = gk_type_traits_of(kq_types[i].t);
        CHECK(gk_type_is_supported(kq_types[i].t) && tr->to_float && tr->vec_dot);
    }
    CHECK(gk_type_traits_of(GK_TYPE_Q4_K)->vec_dot_type == GK_TYPE_Q8_K);
    CHECK(gk_type_traits_of(GK_TYPE_IQ4_NL)->vec_dot_type == GK_TYPE_Q8_0);
    CHECK(gk_row_size(GK_TYPE_Q4_K, 512) == 288 && gk_row_size(GK_TYPE_Q4_K, 300) == 0);
}

static void test_golden(void) {
    float y[256];
    { /* Q2_K: d = dmin = 1; sub-block j: x = (sc&15)*q - (sc>>4) */
        gk_block_q2_K b;
        memset(&b, 0, sizeof b);
        b.d = b.dmin = 0x3c00;
        b.scales[0] = 0x21; /* sc 1, m 2 */
        b.scales[2] = 0x13; /* sc 3, m 1 */
        b.scales[4] = 0x05; /* sc 5, m 0 */
        b.scales[6] = 0x10; /* sc 0, m 1 */
        b.qs[0] = 0xe4;     /* weights 0, 32, 64, 96 = 0, 1, 2, 3 */
        gk_dequantize_q2_K(&b, y, 256);
        CHECK(y[0] == -2.0f && y[32] == 2.0f && y[64] == 10.0f && y[96] == -1.0f);
        CHECK(y[1] == -2.0f);  /* q 0 in sub-block 0 */
        CHECK(y[16] == 0.0f);  /* sub-block 1: sc 0, m 0 */
        CHECK(y[128] == 0.0f); /* second half: scales[8] = 0 */
    }
    { /* Q3_K: d = 1; scale 0 = (1 | 2<<4) - 32 = 1, scales 2 and 8 = -32 */
        gk_block_q3_K b;
        memset(&b, 0, sizeof b);
        b.d = 0x3c00;
        b.scales[0] = 0x01;
        b.scales[8] = 0x02;
        b.qs[0] = 0x03;    /* weight 0 low bits 3, weight 32 low bits 0 */
        b.qs[32] = 0x02;   /* weight 128 low bits 2 */
        b.hmask[0] = 0x11; /* hbit set for weight 0 (bit 0) and weight 128 (bit 4) */
        gk_dequantize_q3_K(&b, y, 256);
        CHECK(y[0] == 3.0f);     /* 1 * 3 */
        CHECK(y[32] == 128.0f);  /* -32 * (0 - 4) */
        CHECK(y[128] == -64.0f); /* -32 * 2 */
        CHECK(y[16] == 128.0f);  /* sub-block 1: scale (0 | 0) - 32, q = 0 - 4 */
    }
    { /* Q4_K: d = 1, dmin = 0.5; sc0 = 3, m0 = 2, sc4 = 5 | 1<<4 = 21, m4 = 1 */
        gk_block_q4_K b;
        memset(&b, 0, sizeof b);
        b.d = 0x3c00;
        b.dmin = 0x3800;
        b.scales[0] = 0x43;
        b.scales[4] = 0x02;
        b.scales[8] = 0x15;
        b.qs[0] = 0x7a;  /* weight 0 = 10, weight 32 = 7 */
        b.qs[64] = 0x03; /* weight 128 = 3 */
        gk_dequantize_q4_K(&b, y, 256);
        CHECK(y[0] == 29.0f);   /* 3*10 - 0.5*2 */
        CHECK(y[32] == 0.0f);   /* sub-block 1: sc 0, m 0 */
        CHECK(y[128] == 62.5f); /* 21*3 - 0.5*1 */
        CHECK(y[129] == -0.5f); /* 21*0 - 0.5 */
    }
    { /* Q5_K: as Q4_K plus qh: weight 0 bit 0, weight 32 bit 1, weight 64 bit 2 */
        gk_block_q5_K b;
        memset(&b, 0, sizeof b);
        b.d = 0x3c00;
        b.dmin = 0x3800;
        b.scales[0] = 0x43; /* sc0 3 */
        b.scales[1] = 0x01; /* sc1 1 */
        b.scales[2] = 0x02; /* sc2 2 */
        b.scales[4] = 0x02; /* m0 2 */
        b.qs[0] = 0x7a;
        b.qs[32] = 0x01; /* weight 64 low nibble 1 */
        b.qh[0] = 0x07;
        gk_dequantize_q5_K(&b, y, 256);
        CHECK(y[0] == 77.0f);  /* 3*(10+16) - 1 */
        CHECK(y[32] == 23.0f); /* 1*(7+16) */
        CHECK(y[64] == 34.0f); /* 2*(1+16) */
        CHECK(y[96] == 0.0f);  /* sc3 0 */
    }
    { /* Q6_K: d = 0.5 */
        gk_block_q6_K b;
        memset(&b, 0, sizeof b);
        b.d = 0x3800;
        b.scales[0] = -2;
        b.scales[2] = 1;
        b.scales[4] = 3;
        b.scales[6] = 1;
        b.ql[0] = 0x21;
        b.qh[0] = 0x93; /* bits 0-1: 3, 2-3: 0, 4-5: 1, 6-7: 2 */
        b.ql[64] = 0x0f;
        b.qh[32] = 0x02;
        b.scales[8] = 4;
        gk_dequantize_q6_K(&b, y, 256);
        CHECK(y[0] == -17.0f);  /* 0.5 * -2 * ((1 | 3<<4) - 32) */
        CHECK(y[32] == -16.0f); /* 0.5 * 1 * (0 - 32) */
        CHECK(y[64] == -21.0f); /* 0.5 * 3 * ((2 | 1<<4) - 32) */
        CHECK(y[96] == 0.0f);   /* 0.5 * 1 * ((0 | 2<<4) - 32) */
        CHECK(y[128] == 30.0f); /* 0.5 * 4 * ((15 | 2<<4) - 32) */
    }
    { /* IQ4_XS: d = 1; scale 0 = (1 | 2<<4) - 32 = 1, scale 1 = -32 */
        gk_block_iq4_xs b;
        memset(&b, 0, sizeof b);
        b.d = 0x3c00;
        b.scales_l[0] = 0x01;
        b.scales_h = 0x0002;
        b.qs[0] = 0xf0;
        b.qs[16] = 0x08;
        gk_dequantize_iq4_xs(&b, y, 256);
        CHECK(y[0] == -127.0f && y[16] == 113.0f);
        CHECK(y[32] == -32.0f);  /* -32 * kv[8] = -32 * 1 */
        CHECK(y[48] == 4064.0f); /* -32 * kv[0] */
    }
    { /* IQ4_NL: d = 0.5 */
        gk_block_iq4_nl b;
        memset(&b, 0, sizeof b);
        b.d = 0x3800;
        b.qs[0] = 0x09;
        b.qs[1] = 0xc5;
        gk_dequantize_iq4_nl(&b, y, 32);
        CHECK(y[0] == 6.5f && y[16] == -63.5f);  /* kv[9] = 13, kv[0] = -127 */
        CHECK(y[1] == -17.5f && y[17] == 26.5f); /* kv[5] = -35, kv[12] = 53 */
    }
}

static void test_q8_K_golden(void) {
    /* x[j] = j - 128: max = -128 (j = 0), iscale = -127/-128 = 0.9921875 exactly;
     * q = round(0.9921875 * x): -128 -> -127, -64 -> -63.5 -> -64 (tie to even),
     * 64 -> 63.5 -> 64, 127 -> 126.008 -> 126; bsums by numpy on the same rule. */
    float x[256];
    for (int j = 0; j < 256; j++) x[j] = (float)(j - 128);
    gk_block_q8_K b, c;
    gk_quantize_q8_K_ref(x, &b, 256);
    CHECK(b.qs[0] == -127 && b.qs[64] == -64 && b.qs[192] == 64 && b.qs[255] == 126);
    CHECK(b.d == 128.0f / 127.0f);
    CHECK(b.bsums[0] == -1912 && b.bsums[8] == 120 && b.bsums[15] == 1896);
    gk_type_traits_of(GK_TYPE_Q8_K)->from_float(x, &c, 256);
    CHECK(memcmp(&b, &c, sizeof b) == 0);
    /* all zero: d = 0 and nothing else set */
    memset(x, 0, sizeof x);
    gk_type_traits_of(GK_TYPE_Q8_K)->from_float(x, &c, 256);
    CHECK(c.d == 0.0f && c.qs[7] == 0 && c.bsums[3] == 0);
}

/* --------------------------------------------------- dots vs to_float --- */

#define NQ 1024

static void test_dot_vs_dequant(void) {
    float a[NQ], wd[NQ], ad[NQ];
    static uint8_t wq[NQ * 2], aq[NQ * 2];
    for (int i = 0; i < NQ; i++) a[i] = gauss();
    for (int k = 0; k < N_KQ; k++) {
        const gk_type_traits *tr = gk_type_traits_of(kq_types[k].t);
        const gk_type_traits *vt = gk_type_traits_of(tr->vec_dot_type);
        size_t bs = tr->type_size;
        int64_t nb = NQ / tr->blck_size;
        /* random bytes with finite scales: every bit pattern of the quants */
        for (size_t i = 0; i < (size_t)nb * bs; i++) wq[i] = (uint8_t)rnd();
        fix_scales(kq_types[k].t, wq, bs, nb, true);
        vt->from_float(a, aq, NQ);
        tr->to_float(wq, wd, NQ);
        vt->to_float(aq, ad, NQ);
        double s = 0, sa = 0;
        for (int i = 0; i < NQ; i++) {
            s += (double)wd[i] * ad[i];
            sa += fabs((double)wd[i] * ad[i]);
        }
        float got = kq_types[k].ref(NQ, wq, aq);
        /* the reference sums integers exactly; float error: the scale products
         * and one rounding per block, far below 1e-5 of the absolute sum */
        CHECK_MSG(fabs(got - s) <= 1e-5 * sa + 1e-6, "%s: dot %g, dequantized %g (abs sum %g)",
                  tr->name, got, s, sa);
    }
}

/* ------------------------------------------------------------ quantizers --- */

static void test_quantize_roundtrip(void) {
    /* relative RMS error on N(0,1) rows: roughly halving per extra bit, as a
     * uniform quantizer's would; bounds about 1.3x what these quantizers give */
    static const struct {
        gk_dtype t;
        double bound;
    } q[] = {{GK_TYPE_Q2_K, 0.45},
             {GK_TYPE_Q3_K, 0.24},
             {GK_TYPE_Q4_K, 0.12},
             {GK_TYPE_Q5_K, 0.06},
             {GK_TYPE_Q6_K, 0.03}};
    float x[NQ], y[NQ];
    static uint8_t buf[NQ];
    for (int i = 0; i < NQ; i++) x[i] = gauss();
    for (size_t k = 0; k < sizeof q / sizeof q[0]; k++) {
        const gk_type_traits *tr = gk_type_traits_of(q[k].t);
        tr->from_float(x, buf, NQ);
        tr->to_float(buf, y, NQ);
        double e = 0, n = 0;
        for (int i = 0; i < NQ; i++) {
            e += (double)(x[i] - y[i]) * (x[i] - y[i]);
            n += (double)x[i] * x[i];
        }
        double rel = sqrt(e / n);
        printf("%s round trip: relative rms error %.4f (bound %.2f)\n", tr->name, rel, q[k].bound);
        CHECK_MSG(rel < q[k].bound, "%s: %g", tr->name, rel);
        /* zeros quantize to zeros; a constant row keeps its value closely */
        float z[256] = {0}, c[256], r[256];
        tr->from_float(z, buf, 256);
        tr->to_float(buf, r, 256);
        bool zero = true;
        for (int i = 0; i < 256; i++) zero &= r[i] == 0.0f;
        CHECK_MSG(zero, "%s: zeros", tr->name);
        for (int i = 0; i < 256; i++) c[i] = 0.75f;
        tr->from_float(c, buf, 256);
        tr->to_float(buf, r, 256);
        for (int i = 0; i < 256; i++)
            CHECK_MSG(fabsf(r[i] - 0.75f) < 0.02f, "%s const %g", tr->name, r[i]);
    }
}

/* ---------------------------------------------------------- SIMD vs ref --- */

static void test_simd_vs_ref(void) {
    printf("kernels: %s\n", gk_dtype_kernels());
    enum { N = 2048, ROWS = 4 };
    static uint8_t wq[ROWS * N * 2], aq[N * 2], aq2[N * 2];
    float a[N];
    for (int rep = 0; rep < 20; rep++) {
        for (int i = 0; i < N; i++) a[i] = gauss() * (rep % 3 == 0 ? 100.0f : 1.0f);
        if (rep == 1) a[5] = -a[5] * 1000; /* one dominant element */
        /* Q8_K quantizer: SIMD == scalar byte for byte */
        gk_quantize_q8_K_ref(a, aq, N);
        gk_type_traits_of(GK_TYPE_Q8_K)->from_float(a, aq2, N);
        CHECK_MSG(memcmp(aq, aq2, gk_row_size(GK_TYPE_Q8_K, N)) == 0, "q8_K quantizer rep %d", rep);
        for (int k = 0; k < N_KQ; k++) {
            const gk_type_traits *tr = gk_type_traits_of(kq_types[k].t);
            const gk_type_traits *vt = gk_type_traits_of(tr->vec_dot_type);
            size_t row = gk_row_size(kq_types[k].t, N);
            for (size_t i = 0; i < ROWS * row; i++) wq[i] = (uint8_t)rnd();
            fix_scales(kq_types[k].t, wq, tr->type_size, ROWS * N / tr->blck_size, true);
            vt->from_float(a, aq, N);
            for (int64_t n = tr->blck_size; n <= N; n *= 2) {
                float r0 = kq_types[k].ref(n, wq, aq), r1 = tr->vec_dot(n, wq, aq);
                CHECK_MSG(memcmp(&r0, &r1, 4) == 0, "%s n %lld: ref %.9g simd %.9g", tr->name,
                          (long long)n, r0, r1);
            }
            if (tr->vec_dot4) {
                float s4[4];
                tr->vec_dot4(N, wq, row, aq, s4);
                for (int r = 0; r < ROWS; r++) {
                    float r0 = kq_types[k].ref(N, wq + r * row, aq);
                    CHECK_MSG(memcmp(&r0, &s4[r], 4) == 0, "%s dot4 row %d: %.9g vs %.9g", tr->name,
                              r, r0, s4[r]);
                }
            }
        }
    }
}

/* The SIMD kernels that dispatch did not pick (AVX2 when GK_AVX512=1 selected the
 * AVX-512 ones; the AVX-512 ones otherwise): called directly, against the
 * scalar reference, whenever the CPU runs them. */
static void test_other_simd(void) {
#if defined(__x86_64__)
    if (strcmp(gk_dtype_kernels(), "scalar") == 0) return;
    bool avx512 = gk_cpu_has_avx512_vnni();
    static const struct {
        gk_dtype t;
        gk_vec_dot_fn ref, a2, a5;
        gk_vec_dot4_fn a2_4, a5_4;
    } k[] = {
        {GK_TYPE_Q4_K, gk_vec_dot_q4_K_q8_K_ref, gk_vec_dot_q4_K_q8_K_avx2,
         gk_vec_dot_q4_K_q8_K_avx512, gk_vec_dot4_q4_K_q8_K_avx2, gk_vec_dot4_q4_K_q8_K_avx512},
        {GK_TYPE_Q6_K, gk_vec_dot_q6_K_q8_K_ref, gk_vec_dot_q6_K_q8_K_avx2,
         gk_vec_dot_q6_K_q8_K_avx512, gk_vec_dot4_q6_K_q8_K_avx2, gk_vec_dot4_q6_K_q8_K_avx512}};
    enum { N = 2048 };
    static uint8_t wq[4 * N], aq[N * 2];
    float a[N];
    for (int rep = 0; rep < 10; rep++) {
        for (int i = 0; i < N; i++) a[i] = gauss();
        gk_quantize_q8_K_ref(a, aq, N);
        for (int j = 0; j < 2; j++) {
            const gk_type_traits *tr = gk_type_traits_of(k[j].t);
            size_t row = gk_row_size(k[j].t, N);
            for (size_t i = 0; i < 4 * row; i++) wq[i] = (uint8_t)rnd();
            fix_scales(k[j].t, wq, tr->type_size, 4 * N / 256, true);
            for (int set = 0; set < (avx512 ? 2 : 1); set++) {
                gk_vec_dot_fn f = set ? k[j].a5 : k[j].a2;
                gk_vec_dot4_fn f4 = set ? k[j].a5_4 : k[j].a2_4;
                float r0 = k[j].ref(N, wq, aq), r1 = f(N, wq, aq), s4[4];
                CHECK_MSG(memcmp(&r0, &r1, 4) == 0, "%s %s: %.9g vs %.9g", tr->name,
                          set ? "avx512" : "avx2", r0, r1);
                f4(N, wq, row, aq, s4);
                for (int r = 0; r < 4; r++) {
                    float e = k[j].ref(N, wq + r * row, aq);
                    CHECK_MSG(memcmp(&e, &s4[r], 4) == 0, "%s %s dot4 row %d", tr->name,
                              set ? "avx512" : "avx2", r);
                }
            }
        }
    }
    printf("Q4_K/Q6_K AVX2%s kernels called directly: equal to the reference\n",
           avx512 ? " and AVX-512" : "");
#endif
}

/* ------------------------------------------------------------- malformed --- */

static void test_malformed(void) {
    /* Every byte random, scales included (NaN, inf, subnormal, huge fp16), and
     * activations with inf/NaN: decoders and dots must run to the end. */
    enum { N = 1024 };
    static uint8_t wq[N * 4], aq[N * 2]; /* 4 rows: at most 0.82 bytes/weight (Q6_K) */
    float a[N], y[N];
    int nan_seen = 0;
    for (int rep = 0; rep < 50; rep++) {
        for (int i = 0; i < N; i++) a[i] = gauss();
        if (rep % 5 == 1) a[rnd() % N] = INFINITY;
        if (rep % 5 == 2) a[rnd() % N] = NAN;
        if (rep % 5 == 3) a[rnd() % N] = 3e38f;
        for (int k = 0; k < N_KQ; k++) {
            const gk_type_traits *tr = gk_type_traits_of(kq_types[k].t);
            const gk_type_traits *vt = gk_type_traits_of(tr->vec_dot_type);
            size_t row = gk_row_size(kq_types[k].t, N);
            for (size_t i = 0; i < row * 4; i++) wq[i] = (uint8_t)rnd();
            if (rep % 2) fix_scales(kq_types[k].t, wq, tr->type_size, 4 * N / tr->blck_size, false);
            vt->from_float(a, aq, N);
            tr->to_float(wq, y, N);
            float s = tr->vec_dot(N, wq, aq) + kq_types[k].ref(N, wq, aq);
            nan_seen += isnan(s);
            if (tr->vec_dot4) {
                float s4[4];
                tr->vec_dot4(N, wq, row, aq, s4);
            }
        }
    }
    /* the weight quantizers on hostile rows */
    static const gk_dtype qt[] = {GK_TYPE_Q2_K, GK_TYPE_Q3_K, GK_TYPE_Q4_K, GK_TYPE_Q5_K,
                                  GK_TYPE_Q6_K};
    for (size_t k = 0; k < sizeof qt / sizeof qt[0]; k++) {
        const gk_type_traits *tr = gk_type_traits_of(qt[k]);
        for (int v = 0; v < 4; v++) {
            for (int i = 0; i < 256; i++) a[i] = gauss();
            a[7] = v == 0 ? NAN : v == 1 ? INFINITY : v == 2 ? -3e38f : 1e-30f;
            if (v == 3)
                for (int i = 0; i < 256; i++) a[i] = 1e-30f * (float)(i % 5);
            tr->from_float(a, wq, 256);
            tr->to_float(wq, y, 256);
        }
    }
    printf("malformed blocks: all decoded and dotted (%d NaN results)\n", nan_seen);
    CHECK(nan_seen > 0); /* NaN scales did reach the kernels */
}

/* ---------------------------------------------------------------- mixes --- */

static gk_dtype pick(const gk_quant_policy *p, const char *name, int64_t ne0) {
    return gk_quant_choose(p, name, 2, ne0, GK_TYPE_F32, GK_TYPE_BF16);
}

static void test_mixes(void) {
    /* Grok-2's shape: 64 layers, 8 experts, 64 query heads over 8 KV heads.
     * Expected types worked out from llama.cpp's rules (llama-quant.cpp):
     * 8 experts -> attn_k/attn_v Q8_0; attn_output Q5_K for Q2_K/Q3_K_M/Q4_K_M;
     * ffn_down Q6_K where use_more_bits (layers < 8, >= 56, (i-8)%3 == 2). */
    gk_quant_policy p = {.n_layer = 64, .n_expert = 8, .n_gqa = 8};
    gk_dtype base;
    CHECK(gk_quant_mix_from_name("Q4_K_M", &p.mix, &base) == 0 && base == GK_TYPE_Q4_K);
    p.type = base;
    CHECK(pick(&p, "blk.0.attn_v.weight", 8192) == GK_TYPE_Q8_0);
    CHECK(pick(&p, "blk.0.attn_k.weight", 8192) == GK_TYPE_Q8_0);
    CHECK(pick(&p, "blk.5.attn_q.weight", 8192) == GK_TYPE_Q4_K);
    CHECK(pick(&p, "blk.5.attn_output.weight", 8192) == GK_TYPE_Q5_K);
    CHECK(pick(&p, "blk.0.ffn_down_exps.weight", 16384) == GK_TYPE_Q6_K);
    CHECK(pick(&p, "blk.9.ffn_down_exps.weight", 16384) == GK_TYPE_Q4_K);
    CHECK(pick(&p, "blk.10.ffn_down_exps.weight", 16384) == GK_TYPE_Q6_K);
    CHECK(pick(&p, "blk.56.ffn_down.weight", 32768) == GK_TYPE_Q6_K);
    CHECK(pick(&p, "blk.10.ffn_up_exps.weight", 8192) == GK_TYPE_Q4_K);
    CHECK(pick(&p, "output.weight", 8192) == GK_TYPE_Q6_K);
    CHECK(pick(&p, "token_embd.weight", 8192) == GK_TYPE_BF16); /* kept unless asked */
    CHECK(gk_quant_choose(&p, "blk.3.ffn_gate_inp.weight", 2, 8192, GK_TYPE_F32, GK_TYPE_BF16) ==
          GK_TYPE_F32);
    CHECK(gk_quant_choose(&p, "blk.3.attn_norm.weight", 1, 8192, GK_TYPE_F32, GK_TYPE_BF16) ==
          GK_TYPE_F32);
    p.quantize_embedding = true;
    CHECK(pick(&p, "token_embd.weight", 8192) == GK_TYPE_Q4_K);
    /* rows that are not whole 256-blocks: llama.cpp's fallbacks (Q5_0/Q5_1 are
     * not engine types, so Q4_K -> Q8_0), f16 when not even 32-blocks */
    CHECK(pick(&p, "blk.5.attn_q.weight", 224) == GK_TYPE_Q8_0);
    CHECK(pick(&p, "blk.5.attn_q.weight", 200) == GK_TYPE_F16);
    CHECK(pick(&p, "output.weight", 224) == GK_TYPE_Q8_0);
    CHECK(gk_quant_policy_file_type(&p) == 15);
    /* Grok-1 ties the output to the embedding: llama.cpp then quantizes the
     * embedding by the output's rule (Q6_K) */
    p.tied_output = true;
    CHECK(pick(&p, "token_embd.weight", 8192) == GK_TYPE_Q6_K);
    p.tied_output = false;

    CHECK(gk_quant_mix_from_name("q3_k_m", &p.mix, &p.type) == 0);
    CHECK(pick(&p, "blk.3.ffn_down_exps.weight", 16384) == GK_TYPE_Q5_K); /* 3 < 64/16 */
    CHECK(pick(&p, "blk.4.ffn_down_exps.weight", 16384) == GK_TYPE_Q4_K);
    CHECK(pick(&p, "blk.4.attn_output.weight", 8192) == GK_TYPE_Q5_K);
    CHECK(pick(&p, "blk.4.attn_q.weight", 8192) == GK_TYPE_Q3_K);
    CHECK(pick(&p, "blk.4.attn_q.weight", 224) == GK_TYPE_Q4_0);

    CHECK(gk_quant_mix_from_name("q2_k", &p.mix, &p.type) == 0 && p.type == GK_TYPE_Q2_K);
    CHECK(pick(&p, "blk.4.ffn_down_exps.weight", 16384) == GK_TYPE_Q3_K);
    CHECK(pick(&p, "blk.4.attn_output.weight", 8192) == GK_TYPE_Q5_K);
    CHECK(pick(&p, "blk.4.attn_v.weight", 8192) == GK_TYPE_Q8_0);
    CHECK(pick(&p, "blk.4.ffn_gate_exps.weight", 8192) == GK_TYPE_Q2_K);
    CHECK(pick(&p, "output.weight", 8192) == GK_TYPE_Q6_K);

    CHECK(gk_quant_mix_from_name("q5_k_m", &p.mix, &p.type) == 0);
    CHECK(pick(&p, "blk.10.ffn_down_exps.weight", 16384) == GK_TYPE_Q6_K);
    CHECK(pick(&p, "blk.11.ffn_down_exps.weight", 16384) == GK_TYPE_Q5_K);
    CHECK(pick(&p, "blk.11.attn_output.weight", 8192) == GK_TYPE_Q5_K);

    CHECK(gk_quant_mix_from_name("q6_k", &p.mix, &p.type) == 0);
    CHECK(pick(&p, "blk.1.attn_k.weight", 8192) == GK_TYPE_Q8_0);
    CHECK(pick(&p, "blk.1.ffn_down_exps.weight", 16384) == GK_TYPE_Q6_K);
    CHECK(pick(&p, "blk.1.attn_output.weight", 8192) == GK_TYPE_Q6_K);

    /* not 8 experts, 1 query head per KV head: the general rules */
    gk_quant_policy q = {.n_layer = 4, .n_expert = 4, .n_gqa = 1};
    CHECK(gk_quant_mix_from_name("q2_k", &q.mix, &q.type) == 0);
    CHECK(pick(&q, "blk.0.attn_v.weight", 256) == GK_TYPE_Q3_K);
    CHECK(pick(&q, "blk.0.attn_k.weight", 256) == GK_TYPE_Q2_K);
    CHECK(pick(&q, "blk.0.attn_output.weight", 256) == GK_TYPE_Q3_K);
    CHECK(gk_quant_mix_from_name("q4_k_m", &q.mix, &q.type) == 0);
    /* use_more_bits(i, 4): i < 0, i >= 3, or (i - 0) % 3 == 2 */
    CHECK(pick(&q, "blk.0.attn_v.weight", 256) == GK_TYPE_Q4_K);
    CHECK(pick(&q, "blk.2.attn_v.weight", 256) == GK_TYPE_Q6_K);
    CHECK(pick(&q, "blk.3.attn_v.weight", 256) == GK_TYPE_Q6_K);
    CHECK(gk_quant_mix_from_name("q4_k", &q.mix, &q.type) == -1);
    CHECK(gk_quant_type_from_name("q4_k") == GK_TYPE_Q4_K);
}

/* --dump DIR: random blocks of every type (half of them with arbitrary fp16
 * scales: subnormal, inf, NaN) and their scalar dequantization, for
 * tests/reference/kquants_check.py to compare with its numpy decoder. */
static int dump(const char *dir) {
    enum { NB = 64 };
    static uint8_t blk[NB * 256];
    static float y[NB * 256];
    for (int k = 0; k < N_KQ; k++) {
        const gk_type_traits *tr = gk_type_traits_of(kq_types[k].t);
        int64_t n = NB * tr->blck_size;
        size_t bytes = (size_t)NB * tr->type_size;
        for (size_t i = 0; i < bytes; i++) blk[i] = (uint8_t)rnd();
        fix_scales(kq_types[k].t, blk, tr->type_size, NB / 2, true);
        tr->to_float(blk, y, n);
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.blocks", dir, tr->name);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(blk, 1, bytes, f) != bytes || fclose(f)) return 1;
        snprintf(path, sizeof path, "%s/%s.f32", dir, tr->name);
        f = fopen(path, "wb");
        if (!f || fwrite(y, sizeof(float), (size_t)n, f) != (size_t)n || fclose(f)) return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    gk_dtype_init();
    if (argc == 3 && !strcmp(argv[1], "--dump")) return dump(argv[2]);
    test_sizes();
    test_golden();
    test_q8_K_golden();
    test_dot_vs_dequant();
    test_quantize_roundtrip();
    test_simd_vs_ref();
    test_other_simd();
    test_malformed();
    test_mixes();
    return gk_test_done();
}
