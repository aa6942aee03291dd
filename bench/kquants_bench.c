/*
 * kquants_bench.c - single-thread speed of the k-quant / IQ4 dot kernels:
 * GB/s of weight bytes streamed through vec_dot (one row at a time) and
 * vec_dot4 (four rows per call), scalar reference against the dispatched
 * (AVX2) kernel, on a weight matrix larger than the caches.
 *
 * Build and run (after building libgrok in build/):
 *   cc -O2 -Isrc -Iinclude bench/kquants_bench.c build/libgrok.a -lm -lpthread \
 *      -o build/kquants_bench && build/kquants_bench [MiB]
 */
#include "tensor/dtype.h"
#include "tensor/kquants.h"
#include "base/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const struct {
    gk_dtype t;
    gk_vec_dot_fn ref;
} types[] = {
    {GK_TYPE_Q2_K, gk_vec_dot_q2_K_q8_K_ref},     {GK_TYPE_Q3_K, gk_vec_dot_q3_K_q8_K_ref},
    {GK_TYPE_Q4_K, gk_vec_dot_q4_K_q8_K_ref},     {GK_TYPE_Q5_K, gk_vec_dot_q5_K_q8_K_ref},
    {GK_TYPE_Q6_K, gk_vec_dot_q6_K_q8_K_ref},     {GK_TYPE_IQ4_XS, gk_vec_dot_iq4_xs_q8_K_ref},
    {GK_TYPE_IQ4_NL, gk_vec_dot_iq4_nl_q8_0_ref}, {GK_TYPE_Q4_0, gk_vec_dot_q4_0_q8_0_ref},
    {GK_TYPE_Q8_0, gk_vec_dot_q8_0_q8_0_ref},
};

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 256;
    const int64_t n = 8192;
    gk_dtype_init();
    printf("kernels: %s; %zu MiB weight matrices, rows of %lld, one thread\n", gk_dtype_kernels(),
           mib, (long long)n);
    printf("%-8s %12s %12s %12s\n", "type", "scalar GB/s", "simd GB/s", "simd4 GB/s");
    float *x = malloc(n * sizeof(float));
    for (int64_t i = 0; i < n; i++) x[i] = (float)((i * 7919) % 201 - 100) / 37.0f;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const gk_type_traits *tr = gk_type_traits_of(types[k].t);
        size_t row = gk_row_size(types[k].t, n);
        int64_t rows = (int64_t)((mib << 20) / row) / 4 * 4;
        uint8_t *w = malloc(row * (size_t)rows);
        for (size_t i = 0; i < row * (size_t)rows; i++) w[i] = (uint8_t)(i * 2654435761u >> 13);
        const gk_type_traits *vt = gk_type_traits_of(tr->vec_dot_type);
        uint8_t *y = malloc(gk_row_size(tr->vec_dot_type, n));
        vt->from_float(x, y, n);
        double gb = (double)row * (double)rows / 1e9, best[3] = {0, 0, 0};
        volatile float sink = 0;
        for (int rep = 0; rep < 3; rep++) {
            double t0 = now();
            for (int64_t r = 0; r < rows; r++) sink += types[k].ref(n, w + r * row, y);
            double t1 = now();
            for (int64_t r = 0; r < rows; r++) sink += tr->vec_dot(n, w + r * row, y);
            double t2 = now();
            if (tr->vec_dot4) {
                float s4[4];
                for (int64_t r = 0; r < rows; r += 4) {
                    tr->vec_dot4(n, w + r * row, row, y, s4);
                    sink += s4[0];
                }
            }
            double t3 = now();
            double g[3] = {gb / (t1 - t0), gb / (t2 - t1), tr->vec_dot4 ? gb / (t3 - t2) : 0};
            for (int i = 0; i < 3; i++) best[i] = g[i] > best[i] ? g[i] : best[i];
        }
        printf("%-8s %12.2f %12.2f %12.2f\n", tr->name, best[0], best[1], best[2]);
        free(w);
        free(y);
    }
    free(x);
    return 0;
}
