/*
 * gemm_bench.c - speed of the batched matmul (gk_matmul) on the shapes of a
 * 512-token prompt through the bench model (Grok-2 shape, embedding 1024; an
 * expert sees about a quarter of the tokens) and of a few decode steps:
 * GFLOP/s per weight type and shape (best of 5), with the instruction set the
 * dispatch picks (GK_NO_AVX512=1 for the AVX2 kernels). Each matrix is reused
 * across repetitions, so it sits in the caches where it fits.
 *
 * Build and run (after building libgrok in build/):
 *   cc -O2 -Isrc -Iinclude bench/gemm_bench.c build/libgrok.a -lm -lpthread \
 *      -o build/gemm_bench && build/gemm_bench [THREADS] [TYPE ...]
 */
#include "kernels/gemm.h"
#include "kernels/ops.h"
#include "tensor/dtype.h"
#include "base/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *what;
    int64_t n_out, n_in;
    int T;
} shapes[] = {
    {"wq/wo 1024x1024, 512 tok", 1024, 1024, 512},
    {"wk 256x1024, 512 tok", 256, 1024, 512},
    {"dense up 4096x1024, 512 tok", 4096, 1024, 512},
    {"dense down 1024x4096, 512 tok", 1024, 4096, 512},
    {"expert up 2048x1024, 128 tok", 2048, 1024, 128},
    {"expert down 1024x2048, 128 tok", 1024, 2048, 128},
    {"decode: dense up 4096x1024", 4096, 1024, 1},
    {"decode: dense down 1024x4096", 1024, 4096, 1},
    {"decode: output 32768x1024", 32768, 1024, 1},
};

int main(int argc, char **argv) {
    int nt = argc > 1 ? atoi(argv[1]) : 2;
    gk_dtype_init();
    gk_err err;
    gk_pool *pool = gk_pool_new(nt, &err);
    if (!pool) {
        fprintf(stderr, "pool: %s\n", err.msg);
        return 1;
    }
    const char *def[] = {"f16"};
    const char **names = argc > 2 ? (const char **)argv + 2 : def;
    int n_names = argc > 2 ? argc - 2 : 1;
    printf("gemm %s, %d threads\n", gk_gemm_isa(), nt);
    for (int ti = 0; ti < n_names; ti++) {
        gk_dtype type = GK_TYPE_COUNT;
        for (int t = 0; t < GK_TYPE_COUNT; t++)
            if (gk_type_name((gk_dtype)t) && !strcmp(gk_type_name((gk_dtype)t), names[ti]))
                type = (gk_dtype)t;
        if (type == GK_TYPE_COUNT) {
            fprintf(stderr, "unknown type %s\n", names[ti]);
            return 1;
        }
        const gk_type_traits *tt = gk_type_traits_of(type);
        double tot_flop = 0, tot_s = 0;
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            int64_t no = shapes[si].n_out, ni = shapes[si].n_in;
            int T = shapes[si].T;
            size_t nb_row = gk_row_size(type, ni);
            uint8_t *w = malloc(nb_row * no);
            float *x = malloc(sizeof(float) * ni * T), *y = malloc(sizeof(float) * no * T);
            float *row = malloc(sizeof(float) * ni);
            void *qbuf = malloc(gk_matmul_qbuf_size(ni, T));
            uint64_t r = 42;
            for (int64_t o = 0; o < no; o++) {
                for (int64_t i = 0; i < ni; i++) {
                    r = r * 6364136223846793005ull + 1442695040888963407ull;
                    row[i] = ((float)((r >> 40) & 0xffff) / 32768.0f - 1.0f) * 0.05f;
                }
                tt->from_float(row, w + o * nb_row, ni);
            }
            for (int64_t i = 0; i < ni * T; i++) {
                r = r * 6364136223846793005ull + 1442695040888963407ull;
                x[i] = (float)((r >> 40) & 0xffff) / 32768.0f - 1.0f;
            }
            gk_matmul(pool, y, w, type, nb_row, no, x, ni, T, qbuf);
            double best = 1e30;
            for (int rep = 0; rep < 5; rep++) {
                double t0 = gk_time_s();
                gk_matmul(pool, y, w, type, nb_row, no, x, ni, T, qbuf);
                double t = gk_time_s() - t0;
                best = t < best ? t : best;
            }
            double flop = 2.0 * no * ni * T;
            tot_flop += flop;
            tot_s += best;
            printf("%-6s %-32s %8.3f ms %7.1f GFLOP/s\n", names[ti], shapes[si].what, best * 1e3,
                   flop / best * 1e-9);
            free(w);
            free(x);
            free(y);
            free(row);
            free(qbuf);
        }
        printf("%-6s %-32s %8.3f ms %7.1f GFLOP/s\n", names[ti], "all", tot_s * 1e3,
               tot_flop / tot_s * 1e-9);
    }
    gk_pool_free(pool);
    return 0;
}
