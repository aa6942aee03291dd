/*
 * test_stream.c - the streaming read kernel (kernels/stream.h): the AVX2 and
 * AVX-512 sums equal the scalar reference bit for bit (lengths with and without
 * a tail, unaligned starts, values whose sum depends on the order of the adds),
 * gk_stream_sum equals the kernel it names, and gk_read_bandwidth fills its
 * result and refuses bad arguments. No timing is checked.
 */
#include "gk_test.h"
#include "base/base.h"
#include "kernels/stream.h"
#include "tensor/dtype.h"

#include <stdint.h>
#include <string.h>

static uint64_t rng = 0x243f6a8885a308d3ull;
static float frand(void) { /* wide magnitudes, both signs: order-sensitive sums */
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    float m = (float)((rng >> 40) & 0xffffff) / 16777216.0f;
    int e = (int)((rng >> 20) & 15) - 8;
    return ((rng >> 19) & 1 ? -m : m) * (float)(1 << (e + 8)) / 256.0f;
}

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

int main(void) {
    enum { N = 10000 };
    float *x = malloc(sizeof(float) * (N + 16));
    for (int i = 0; i < N + 16; i++) x[i] = frand();
    static const size_t lens[] = {0, 1, 63, 64, 65, 127, 128, 1000, 4096, 9999, 10000};
    int has2 = 0, has512 = 0;
#if defined(__x86_64__) || defined(_M_X64)
    has2 = gk_cpu_has_avx2_fma_f16c();
    has512 = gk_cpu_has_avx512_vnni();
#endif
    if (!has2) fprintf(stderr, "test_stream: no AVX2 here; only the scalar kernel is checked\n");
    for (size_t k = 0; k < sizeof lens / sizeof *lens; k++)
        for (int off = 0; off < 3; off++) {
            const float *p = x + off;
            size_t n = lens[k];
            float ref = gk_stream_sum_scalar(p, n);
            /* the reference itself: the lanes, then the fold, written out again */
            double approx = 0;
            for (size_t i = 0; i < n; i++) approx += p[i];
            double mag = 0;
            for (size_t i = 0; i < n; i++) mag += p[i] < 0 ? -p[i] : p[i];
            CHECK_MSG(ref - approx <= 1e-5 * mag + 1e-30 && approx - ref <= 1e-5 * mag + 1e-30,
                      "n %zu: scalar %g, double %g", n, ref, approx);
            if (n == 0) CHECK(ref == 0);
            if (has2)
                CHECK_MSG(bits(gk_stream_sum_avx2(p, n)) == bits(ref),
                          "avx2 n %zu off %d: %a vs %a", n, off, gk_stream_sum_avx2(p, n), ref);
            if (has512)
                CHECK_MSG(bits(gk_stream_sum_avx512(p, n)) == bits(ref),
                          "avx512 n %zu off %d: %a vs %a", n, off, gk_stream_sum_avx512(p, n), ref);
            CHECK(bits(gk_stream_sum(p, n)) == bits(ref));
        }
    const char *isa = gk_stream_isa();
    CHECK(!strcmp(isa, "scalar") || !strcmp(isa, "avx2") || !strcmp(isa, "avx512"));
    if (getenv("GK_NO_AVX512")) CHECK(strcmp(isa, "avx512") != 0);

    gk_err err = {0};
    gk_pool *pool = gk_pool_new(2, &err);
    CHECK(pool != NULL);
    if (pool) {
        gk_bandwidth bw;
        CHECK(gk_read_bandwidth(pool, (size_t)8 << 20, 2, &bw, &err) == 0);
        CHECK(bw.bytes_per_s > 0 && bw.worst_bytes_per_s > 0 &&
              bw.worst_bytes_per_s <= bw.bytes_per_s);
        CHECK(bw.bytes == (size_t)8 << 20 && bw.reps == 2 && bw.threads == 2);
        CHECK(bw.isa && !strcmp(bw.isa, isa));
        CHECK(gk_read_bandwidth(pool, (size_t)8 << 20, 0, &bw, &err) == -1);
        CHECK_ERR_HAS(err.msg, "passes");
        CHECK(gk_read_bandwidth(pool, 100, 1, &bw, &err) == -1);
        CHECK_ERR_HAS(err.msg, "too small");
        CHECK(gk_read_bandwidth(NULL, 4096, 1, &bw, &err) == -1);
        /* a meter measures again and again on its one buffer */
        gk_bw_meter *mt = gk_bw_meter_new(pool, (size_t)4 << 20, &err);
        CHECK(mt != NULL);
        for (int k = 0; mt && k < 3; k++) {
            memset(&bw, 0, sizeof bw);
            CHECK(gk_bw_meter_run(mt, k + 1, &bw, &err) == 0);
            CHECK(bw.bytes_per_s > 0 && bw.worst_bytes_per_s <= bw.bytes_per_s);
            CHECK(bw.bytes == (size_t)4 << 20 && bw.reps == k + 1 && bw.threads == 2);
        }
        CHECK(gk_bw_meter_run(mt, 0, &bw, &err) == -1);
        CHECK_ERR_HAS(err.msg, "passes");
        gk_bw_meter_free(mt);
        gk_bw_meter_free(NULL);
        CHECK(gk_bw_meter_new(pool, 100, &err) == NULL);
        CHECK_ERR_HAS(err.msg, "too small");
        CHECK(gk_bw_meter_new(NULL, 4096, &err) == NULL);
        CHECK(gk_bw_meter_run(NULL, 1, &bw, &err) == -1);
        gk_pool_free(pool);
    }
    free(x);
    return gk_test_done();
}
