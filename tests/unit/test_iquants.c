/*
 * test_iquants.c - the IQ formats read from llama.cpp files: IQ2_XXS, IQ2_XS,
 * IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M.
 *
 *   - the lookup grids: FNV-1a 64 of each table equals the checksum
 *     scripts/gen_iq_tables.py computed from ggml-common.h, and each has the
 *     format's shape (the byte values of its magnitudes, ksigns' parity rule);
 *   - on random blocks and random activations (quantized to Q8_K by a quantizer
 *     local to this test, ggml's quantize_row_q8_K_ref as documented): every
 *     scalar dot equals the dot of the dequantized weights with the dequantized
 *     activations (within fp32 rounding), and every AVX2 dot equals the scalar
 *     one bit for bit, for rows of 1 to 70 blocks (past the 64-block chunk);
 *   - malformed blocks: all bits set (the largest index of every field), NaN and
 *     infinite scales: dequantize and dot run (under ASan in the sanitizer build)
 *     and NaN scales give NaN;
 *   - with `--dequant TYPE IN OUT` it dequantizes the raw blocks of file IN to
 *     float32 in OUT, for tests/reference/iq_ref.py's independent numpy check;
 *     with `--dots TYPE IN` it checks the dots on the blocks of file IN (used by
 *     tests/reference/llamacpp_iq.py on files that llama-quantize wrote).
 */
#include "gk_test.h"
#include "base/base.h"
#include "tensor/dtype.h"
#include "tensor/iquants.h"

#include <math.h>

/* ----------------------------------------------------------- the tables --- */

static uint64_t fnv1a64(const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* All bytes of a table are in the allowed set. */
static bool bytes_in(const void *p, size_t n, const uint8_t *allowed, int n_allowed) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        bool ok = false;
        for (int k = 0; k < n_allowed; k++) ok = ok || b[i] == allowed[k];
        if (!ok) return false;
    }
    return true;
}

static void test_tables(void) {
    /* recorded by scripts/gen_iq_tables.py from llama.cpp 82bb48500's ggml-common.h */
    CHECK(fnv1a64(gk_ksigns_iq2xs, sizeof gk_ksigns_iq2xs) == 0xf19ba8f8c3292ba5ull);
    CHECK(fnv1a64(gk_iq2xxs_grid, sizeof gk_iq2xxs_grid) == 0xbb4ee025b5ac6e8eull);
    CHECK(fnv1a64(gk_iq2xs_grid, sizeof gk_iq2xs_grid) == 0xc9b1ee61e79909bdull);
    CHECK(fnv1a64(gk_iq2s_grid, sizeof gk_iq2s_grid) == 0x123edd38a3b62b90ull);
    CHECK(fnv1a64(gk_iq3xxs_grid, sizeof gk_iq3xxs_grid) == 0xdfa5dc83d6a155d5ull);
    CHECK(fnv1a64(gk_iq3s_grid, sizeof gk_iq3s_grid) == 0xfa37020c25b44829ull);
    CHECK(fnv1a64(gk_iq1s_grid, sizeof gk_iq1s_grid) == 0x6703ed863501ae2eull);
    /* 7 sign bits and an 8th that makes the number of minus signs even */
    for (int i = 0; i < 128; i++)
        CHECK(gk_ksigns_iq2xs[i] == (i | (__builtin_popcount((unsigned)i) & 1) << 7));
    static const uint8_t m2[] = {0x08, 0x19, 0x2b}, m3[] = {4, 12, 20, 28, 36, 44, 52, 62},
                         m3s[] = {1, 3, 5, 7, 9, 11, 13, 15}, m1[] = {0xff, 0x00, 0x01};
    CHECK(bytes_in(gk_iq2xxs_grid, sizeof gk_iq2xxs_grid, m2, 3));
    CHECK(bytes_in(gk_iq2xs_grid, sizeof gk_iq2xs_grid, m2, 3));
    CHECK(bytes_in(gk_iq2s_grid, sizeof gk_iq2s_grid, m2, 3));
    CHECK(bytes_in(gk_iq3xxs_grid, sizeof gk_iq3xxs_grid, m3, 8));
    CHECK(bytes_in(gk_iq3s_grid, sizeof gk_iq3s_grid, m3s, 8));
    CHECK(bytes_in(gk_iq1s_grid, sizeof gk_iq1s_grid, m1, 3));
    /* no two entries of a grid alike */
    for (int i = 1; i < 256; i++) CHECK(gk_iq2xxs_grid[i] > gk_iq2xxs_grid[i - 1]);
    for (int i = 1; i < 512; i++) CHECK(gk_iq2xs_grid[i] > gk_iq2xs_grid[i - 1]);
    for (int i = 1; i < 1024; i++) CHECK(gk_iq2s_grid[i] > gk_iq2s_grid[i - 1]);
}

/* ------------------------------------------------------ Q8_K, test-local --- */

/* ggml's quantize_row_q8_K_ref: the element of largest magnitude (sign kept)
 * maps to -127: iscale = -127 / max, q = min(127, round(iscale * x)) (round half
 * away from zero), d = 1 / iscale, bsums[j] = sum of q[16j..16j+15]. */
static void quantize_q8_K(const float *x, gk_block_q8_K *y, int64_t n) {
    for (int64_t i = 0; i < n / GK_QK_K; i++, x += GK_QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < GK_QK_K; j++)
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
        if (amax == 0) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < GK_QK_K; j++) {
            int v = (int)roundf(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < GK_QK_K / 16; j++) {
            int s = 0;
            for (int k = 0; k < 16; k++) s += y[i].qs[16 * j + k];
            y[i].bsums[j] = (int16_t)s;
        }
        y[i].d = 1 / iscale;
    }
}

/* -------------------------------------------------------------- kernels --- */

typedef struct {
    gk_dtype type;
    size_t size;
    void (*deq)(const void *, float *, int64_t);
    float (*ref)(int64_t, const void *, const void *);
    float (*avx2)(int64_t, const void *, const void *);
    bool d_spread; /* IQ1_M: the fp16 d is the top nibbles of the four scale words */
} iq_kind;

/* Sets the fp16 d of the block at p. */
static void set_d(const iq_kind *k, uint8_t *p, uint16_t h) {
    if (!k->d_spread) {
        memcpy(p, &h, 2);
        return;
    }
    uint8_t *sc = p + offsetof(gk_block_iq1_m, scales);
    for (int w = 0; w < 4; w++) /* the high byte of word w takes nibble w of d */
        sc[2 * w + 1] = (uint8_t)((sc[2 * w + 1] & 0x0f) | ((h >> (4 * w)) & 15) << 4);
}

#if defined(__x86_64__) || defined(_M_X64)
#define AVX2(f) f
#else
#define AVX2(f) NULL
#endif

static const iq_kind kinds[] = {
    {GK_TYPE_IQ2_XXS, sizeof(gk_block_iq2_xxs), gk_dequantize_iq2_xxs, gk_vec_dot_iq2_xxs_q8_K_ref,
     AVX2(gk_vec_dot_iq2_xxs_q8_K_avx2), false},
    {GK_TYPE_IQ3_XXS, sizeof(gk_block_iq3_xxs), gk_dequantize_iq3_xxs, gk_vec_dot_iq3_xxs_q8_K_ref,
     AVX2(gk_vec_dot_iq3_xxs_q8_K_avx2), false},
    {GK_TYPE_IQ3_S, sizeof(gk_block_iq3_s), gk_dequantize_iq3_s, gk_vec_dot_iq3_s_q8_K_ref,
     AVX2(gk_vec_dot_iq3_s_q8_K_avx2), false},
    {GK_TYPE_IQ1_S, sizeof(gk_block_iq1_s), gk_dequantize_iq1_s, gk_vec_dot_iq1_s_q8_K_ref,
     AVX2(gk_vec_dot_iq1_s_q8_K_avx2), false},
    {GK_TYPE_IQ2_XS, sizeof(gk_block_iq2_xs), gk_dequantize_iq2_xs, gk_vec_dot_iq2_xs_q8_K_ref,
     AVX2(gk_vec_dot_iq2_xs_q8_K_avx2), false},
    {GK_TYPE_IQ2_S, sizeof(gk_block_iq2_s), gk_dequantize_iq2_s, gk_vec_dot_iq2_s_q8_K_ref,
     AVX2(gk_vec_dot_iq2_s_q8_K_avx2), false},
    {GK_TYPE_IQ1_M, sizeof(gk_block_iq1_m), gk_dequantize_iq1_m, gk_vec_dot_iq1_m_q8_K_ref,
     AVX2(gk_vec_dot_iq1_m_q8_K_avx2), true},
};

static uint64_t rng = 0x1234567;
static uint32_t rnd32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float rndf(void) {
    return (float)(rnd32() & 0xffffff) / 8388608.0f - 1.0f;
}

/* Random blocks: random bytes, each block's d a finite fp16 around 1e-3. */
static void random_blocks(uint8_t *p, const iq_kind *k, int64_t nb) {
    for (size_t i = 0; i < (size_t)nb * k->size; i++) p[i] = (uint8_t)rnd32();
    for (int64_t b = 0; b < nb; b++) {
        uint16_t d = gk_fp32_to_fp16(1e-3f * (0.5f + (float)(rnd32() % 1000) / 1000.0f) *
                                     (rnd32() & 1 ? -1.0f : 1.0f));
        set_d(k, p + (size_t)b * k->size, d);
    }
}

static bool has_avx2(void) {
    gk_dtype_init();
    return kinds[0].avx2 && strcmp(gk_dtype_kernels(), "avx2") == 0;
}

static void test_dots(void) {
    bool avx2 = has_avx2();
    if (!avx2) fprintf(stderr, "note: no AVX2 here; only the scalar kernels are tested\n");
    const int sizes[] = {1, 2, 3, 8, 64, 65, 70};
    for (size_t t = 0; t < sizeof kinds / sizeof kinds[0]; t++) {
        const iq_kind *k = &kinds[t];
        double worst = 0;
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            for (int rep = 0; rep < 6; rep++) {
                int64_t nb = sizes[si], n = nb * GK_QK_K;
                uint8_t *x = malloc((size_t)nb * k->size);
                float *a = malloc(sizeof(float) * (size_t)n),
                      *w = malloc(sizeof(float) * (size_t)n);
                gk_block_q8_K *y = malloc(sizeof *y * (size_t)nb);
                random_blocks(x, k, nb);
                for (int64_t i = 0; i < n; i++) a[i] = rndf() * (1 + (float)(i % 7));
                quantize_q8_K(a, y, n);
                k->deq(x, w, n);
                double exact = 0, mag = 0;
                for (int64_t i = 0; i < n; i++) {
                    double yi = (double)y[i / GK_QK_K].d * y[i / GK_QK_K].qs[i % GK_QK_K];
                    exact += (double)w[i] * yi;
                    mag += fabs((double)w[i] * yi);
                }
                float ref = k->ref(n, x, y);
                double err = fabs(ref - exact) / (mag + 1e-30);
                worst = fmax(worst, err);
                CHECK_MSG(err < 1e-5, "%s nb=%lld: dot %g vs dequantized %g", gk_type_name(k->type),
                          (long long)nb, ref, exact);
                /* the table entry computes the same */
                CHECK(gk_type_traits_of(k->type)->to_float == k->deq);
                if (avx2) {
                    float v = k->avx2(n, x, y);
                    CHECK_MSG(memcmp(&v, &ref, 4) == 0, "%s nb=%lld: avx2 %.9g != scalar %.9g",
                              gk_type_name(k->type), (long long)nb, v, ref);
                    float tv = gk_type_traits_of(k->type)->vec_dot(n, x, y);
                    CHECK(memcmp(&tv, &ref, 4) == 0);
                }
                free(x), free(a), free(w), free(y);
            }
        }
        printf("%-8s dot vs dequantized: worst relative error %.2g; avx2 %s\n",
               gk_type_name(k->type), worst, avx2 ? "== scalar (bitwise)" : "not tested");
    }
}

/* IQ1_M's d is gathered from four nibbles: each nibble lands where it belongs. */
static void test_iq1_m_d(void) {
    const iq_kind *k = &kinds[sizeof kinds / sizeof kinds[0] - 1];
    CHECK(k->type == GK_TYPE_IQ1_M);
    gk_block_iq1_m b;
    const uint16_t hs[] = {0x3c00, 0x1234, 0xabcd, 0x0001, 0x8000, 0x7bff};
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) {
        memset(&b, 0xa5, sizeof b);
        set_d(k, (uint8_t *)&b, hs[i]);
        CHECK(gk_iq1_m_d(&b) == gk_fp16_to_fp32(hs[i]));
        CHECK((b.scales[0] & 0xff) == 0xa5 && (b.scales[1] & 0x0f) == 0x05); /* scales kept */
    }
}

static void test_malformed(void) {
    bool avx2 = has_avx2();
    for (size_t t = 0; t < sizeof kinds / sizeof kinds[0]; t++) {
        const iq_kind *k = &kinds[t];
        uint8_t x[2 * 110];
        float w[2 * GK_QK_K], a[2 * GK_QK_K];
        gk_block_q8_K y[2];
        for (int i = 0; i < 2 * GK_QK_K; i++) a[i] = rndf();
        quantize_q8_K(a, y, 2 * GK_QK_K);
        /* every field at its largest value: the largest index of every table */
        memset(x, 0xff, sizeof x);
        uint16_t one = gk_fp32_to_fp16(1.0f);
        set_d(k, x, one);
        set_d(k, x + k->size, one);
        k->deq(x, w, 2 * GK_QK_K);
        bool finite = true;
        for (int i = 0; i < 2 * GK_QK_K; i++) finite = finite && isfinite(w[i]);
        CHECK(finite);
        float r = k->ref(2 * GK_QK_K, x, y);
        CHECK(isfinite(r));
        if (avx2) {
            float v = k->avx2(2 * GK_QK_K, x, y);
            CHECK(memcmp(&v, &r, 4) == 0);
        }
        /* NaN and infinite scales: no crash; NaN propagates */
        uint16_t nan16 = 0x7e00, inf16 = 0x7c00;
        random_blocks(x, k, 2);
        set_d(k, x, nan16);
        set_d(k, x + k->size, inf16);
        k->deq(x, w, 2 * GK_QK_K);
        CHECK(isnan(w[0]) && isnan(w[GK_QK_K - 1]));
        CHECK(isinf(w[GK_QK_K]) && isinf(w[2 * GK_QK_K - 1]));
        CHECK(isnan(k->ref(2 * GK_QK_K, x, y)));
        if (avx2) CHECK(isnan(k->avx2(2 * GK_QK_K, x, y)));
    }
}

/* --dequant TYPE IN OUT: raw blocks to float32, for the numpy reference. */
static int dequant_file(const char *type, const char *in, const char *out) {
    int t = gk_type_from_name(type);
    const gk_type_traits *tt = t >= 0 ? gk_type_traits_of((uint32_t)t) : NULL;
    if (!tt || !tt->to_float) {
        fprintf(stderr, "cannot dequantize type '%s'\n", type);
        return 2;
    }
    FILE *f = fopen(in, "rb");
    if (!f) {
        perror(in);
        return 2;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size <= 0 || size % (long)tt->type_size) {
        fprintf(stderr, "%s: %ld bytes is not a whole number of %s blocks\n", in, size, type);
        fclose(f);
        return 2;
    }
    uint8_t *buf = malloc((size_t)size);
    int64_t n = size / (long)tt->type_size * tt->blck_size;
    float *w = malloc(sizeof(float) * (size_t)n);
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    int rc = 2;
    if (got == (size_t)size) {
        tt->to_float(buf, w, n);
        FILE *o = fopen(out, "wb");
        if (o && fwrite(w, sizeof(float), (size_t)n, o) == (size_t)n && fclose(o) == 0)
            rc = 0;
        else
            perror(out);
    }
    free(buf);
    free(w);
    return rc;
}

/* --dots TYPE IN: the blocks of file IN (e.g. every IQ tensor of a file that
 * llama-quantize wrote) as rows of 512 weights against random activations:
 * AVX2 == scalar bit for bit, and scalar == the dequantized dot within 1e-5. */
static int dots_file(const char *type, const char *in) {
    int t = gk_type_from_name(type);
    const iq_kind *k = NULL;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if ((int)kinds[i].type == t) k = &kinds[i];
    FILE *f = k ? fopen(in, "rb") : NULL;
    if (!f) {
        fprintf(stderr, "cannot read %s blocks from %s\n", type, in);
        return 2;
    }
    bool avx2 = has_avx2();
    uint8_t x[2 * 110];
    float a[512], w[512];
    gk_block_q8_K y[2];
    long rows = 0, differ = 0;
    double worst = 0;
    while (fread(x, k->size, 2, f) == 2) {
        for (int i = 0; i < 512; i++) a[i] = rndf();
        quantize_q8_K(a, y, 512);
        float r = k->ref(512, x, y);
        if (avx2) {
            float v = k->avx2(512, x, y);
            differ += memcmp(&v, &r, 4) != 0;
        }
        k->deq(x, w, 512);
        double exact = 0, mag = 0;
        for (int i = 0; i < 512; i++) {
            double yi = (double)y[i / GK_QK_K].d * y[i / GK_QK_K].qs[i % GK_QK_K];
            exact += (double)w[i] * yi;
            mag += fabs((double)w[i] * yi);
        }
        worst = fmax(worst, fabs(r - exact) / (mag + 1e-30));
        rows++;
    }
    fclose(f);
    printf("%s: %ld rows of 512 weights; avx2 != scalar in %ld%s; worst |dot - dequantized "
           "dot| / sum |terms| = %.2g\n",
           type, rows, differ, avx2 ? "" : " (no avx2)", worst);
    return differ == 0 && worst < 1e-5 && rows > 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 5 && !strcmp(argv[1], "--dequant")) return dequant_file(argv[2], argv[3], argv[4]);
    if (argc == 4 && !strcmp(argv[1], "--dots")) return dots_file(argv[2], argv[3]);
    test_tables();
    test_dots();
    test_iq1_m_d();
    test_malformed();
    return gk_test_done();
}
