/*
 * matvec_bench.c - decode's matrix-vector products alone: GB/s of weight bytes
 * that gk_matmul streams with one token (T = 1), per weight type, over a set of
 * matrices much larger than the caches and shaped like a layer of the bench
 * models (1024 inputs and 4096 rows, 4096 inputs and 1024 rows), against the
 * plain streaming reads of the same bytes, with 1 and 2 threads: stream is
 * gk_stream_sum (kernels/stream.h), the kernel whose rate `grok bench` takes as
 * its bandwidth limit, readsc the 4-chain scalar float sum it took before
 * (add-latency bound), read256 AVX2 loads
 * in order, read16 (read16pf) strips of 16 rows of 576 bytes read side by side
 * (with the next strip fetched in step), the order of the 16-row GEMM strips.
 *
 * Build and run (after building libgrok in build/):
 *   cc -O2 -mavx2 -mfma -Isrc -Iinclude bench/matvec_bench.c build/libgrok.a -lm -lpthread \
 *      -o build/matvec_bench && build/matvec_bench [MiB] [reps]
 */
#include "base/base.h"
#include "kernels/ops.h"
#include "kernels/stream.h"
#include "tensor/dtype.h"
#include "tensor/kquants.h"

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    const uint8_t *p;
    size_t n;
    float sum[64];
    int simd;
} rd_job;

static void rd_part(void *arg, int ith, int nth) {
    rd_job *j = arg;
    int64_t lo, hi;
    gk_split((int64_t)(j->n / 256), ith, nth, &lo, &hi);
    if (j->simd == 4) {
        j->sum[ith] =
            gk_stream_sum((const float *)(j->p + (size_t)lo * 256), (size_t)(hi - lo) * 64);
        return;
    }
    if (j->simd == 2 || j->simd == 3) { /* strips of 16 rows of 576 bytes, read row-interleaved */
        const size_t row = 576, span = 16 * row;
        int64_t ns = (int64_t)(j->n / span), slo, shi;
        gk_split(ns, ith, nth, &slo, &shi);
        __m256 a = _mm256_setzero_ps(), b = a;
        for (int64_t st = slo; st < shi; st++) {
            const uint8_t *p = j->p + (size_t)st * span;
            for (size_t o = 0; o < row; o += 64) {
                if (j->simd == 3)
                    for (int r = 0; r < 16; r++)
                        _mm_prefetch((const char *)p + span + r * row + o, _MM_HINT_T0);
                for (int r = 0; r < 16; r++) {
                    a = _mm256_add_ps(a, _mm256_loadu_ps((const float *)(p + r * row + o)));
                    b = _mm256_add_ps(b, _mm256_loadu_ps((const float *)(p + r * row + o + 32)));
                }
            }
        }
        float t[8];
        _mm256_storeu_ps(t, _mm256_add_ps(a, b));
        j->sum[ith] = t[0] + t[7];
    } else if (j->simd) {
        __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;
        for (int64_t i = lo; i < hi; i++) {
            const float *q = (const float *)(j->p + (size_t)i * 256);
            a = _mm256_add_ps(a, _mm256_loadu_ps(q));
            b = _mm256_add_ps(b, _mm256_loadu_ps(q + 16));
            c = _mm256_add_ps(c, _mm256_loadu_ps(q + 32));
            d = _mm256_add_ps(d, _mm256_loadu_ps(q + 48));
            a = _mm256_add_ps(a, _mm256_loadu_ps(q + 8));
            b = _mm256_add_ps(b, _mm256_loadu_ps(q + 24));
            c = _mm256_add_ps(c, _mm256_loadu_ps(q + 40));
            d = _mm256_add_ps(d, _mm256_loadu_ps(q + 56));
        }
        float t[8];
        _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));
        j->sum[ith] = t[0] + t[7];
    } else { /* grok bench's read_bandwidth loop */
        const float *q = (const float *)(j->p + (size_t)lo * 256);
        size_t n = (size_t)(hi - lo) * 64;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t i = 0; i + 4 <= n; i += 4) {
            s0 += q[i];
            s1 += q[i + 1];
            s2 += q[i + 2];
            s3 += q[i + 3];
        }
        j->sum[ith] = s0 + s1 + s2 + s3;
    }
}

static void fill(uint8_t *buf, size_t bytes, gk_dtype type, int64_t n_in) {
    /* one matrix of real blocks (random values quantized), repeated */
    const int64_t rows = 256;
    size_t row = gk_row_size(type, n_in), one = row * rows;
    float *x = malloc((size_t)n_in * sizeof(float));
    uint8_t *m = malloc(one);
    uint32_t s = 12345;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < n_in; i++) {
            s = s * 1664525u + 1013904223u;
            x[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.1f;
        }
        uint8_t *dst = m + (size_t)r * row;
        switch (type) {
        case GK_TYPE_Q4_K:
            gk_quantize_q4_K(x, dst, n_in);
            break;
        case GK_TYPE_Q5_K:
            gk_quantize_q5_K(x, dst, n_in);
            break;
        case GK_TYPE_Q6_K:
            gk_quantize_q6_K(x, dst, n_in);
            break;
        default:
            gk_type_traits_of(type)->from_float(x, dst, n_in);
        }
    }
    for (size_t o = 0; o < bytes; o += one) memcpy(buf + o, m, bytes - o < one ? bytes - o : one);
    free(x);
    free(m);
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 256;
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    const char *only = getenv("TYPES");
    gk_dtype_init();
    gk_err err = {0};
    size_t bytes = mib << 20;
    uint8_t *buf = aligned_alloc(64, bytes);
    memset(buf, 1, bytes);
    gk_pool *pools[2] = {gk_pool_new(1, &err), gk_pool_new(2, &err)};
    printf("kernels: %s; %zu MiB of weights, T = 1, best of %d\n", gk_kernels_name(), mib, reps);
    for (int simd = 0; simd < 5; simd++)
        for (int p = 0; p < 2; p++) {
            double best = 1e9;
            for (int r = 0; r < reps; r++) {
                rd_job j = {.p = buf, .n = bytes, .simd = simd};
                double t0 = now();
                gk_pool_run(pools[p], rd_part, &j);
                double dt = now() - t0;
                best = dt < best ? dt : best;
            }
            printf("%-8s %d thr: %6.2f GB/s\n",
                   simd == 4   ? "stream"
                   : simd == 3 ? "read16pf"
                   : simd == 2 ? "read16"
                   : simd      ? "read256"
                               : "readsc",
                   p + 1, bytes / best / 1e9);
        }
    static const gk_dtype types[] = {GK_TYPE_F16,  GK_TYPE_Q8_0, GK_TYPE_Q4_0,
                                     GK_TYPE_Q4_K, GK_TYPE_Q5_K, GK_TYPE_Q6_K};
    float *x = malloc(4096 * sizeof(float)), *y = malloc(1 << 20);
    for (int i = 0; i < 4096; i++) x[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    void *qbuf = malloc(gk_matmul_qbuf_size(4096, 1));
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        gk_dtype t = types[ti];
        if (only && !strstr(only, gk_type_name(t))) continue;
        for (int shape = 0; shape < 2; shape++) {
            int64_t n_in = shape ? 4096 : 1024, n_out = shape ? 1024 : 4096;
            size_t row = gk_row_size(t, n_in), mat = row * (size_t)n_out;
            size_t nm = bytes / mat;
            fill(buf, nm * mat, t, n_in);
            for (int p = 0; p < 2; p++) {
                double best = 1e9;
                for (int r = 0; r < reps; r++) {
                    double t0 = now();
                    for (size_t m = 0; m < nm; m++)
                        gk_matmul(pools[p], y, buf + m * mat, t, row, n_out, x, n_in, 1, qbuf);
                    double dt = now() - t0;
                    best = dt < best ? dt : best;
                }
                printf("%-6s %4lldx%-4lld %d thr: %6.2f GB/s  (%.1f us per matrix)\n",
                       gk_type_name(t), (long long)n_out, (long long)n_in, p + 1,
                       nm * mat / best / 1e9, best / nm * 1e6);
            }
        }
    }
    gk_pool_free(pools[0]);
    gk_pool_free(pools[1]);
    free(buf);
    free(x);
    free(y);
    free(qbuf);
    return 0;
}
