/*
 * stream.h - the machine's memory read bandwidth, measured by streaming reads:
 * the limit that decode (which reads every active weight byte once per token)
 * is compared against (`grok bench`, bench/matvec_bench.c).
 *
 * The read kernel sums floats into 64 independent lanes (s[i % 64] += p[i],
 * block of 64 by block of 64, i.e. 4 cache lines per step), so the adds never
 * wait on each other and the loop is bound by the loads alone; the SIMD
 * versions hold the 64 lanes in registers (8 AVX2 or 4 AVX-512 vectors) and
 * give the scalar reference's sum bit for bit: each lane adds the same values
 * in the same order, and the lanes fold into one sum by the same tree
 * (gk_stream_fold).
 */
#ifndef GK_STREAM_H
#define GK_STREAM_H

#include "base/base.h"

#define GK_STREAM_LANES 64

/* The sum of p[0..n) in the order above, with the fastest kernel this CPU has
 * (GK_FORCE_SCALAR: the scalar one; GK_NO_AVX512: at most AVX2). */
float gk_stream_sum(const float *p, size_t n);
/* "avx512", "avx2" or "scalar": what gk_stream_sum runs. */
const char *gk_stream_isa(void);

/* The kernels themselves (the tests compare them): the scalar reference always,
 * the others on x86-64 (call them only when the CPU has the instructions). */
float gk_stream_sum_scalar(const float *p, size_t n);
float gk_stream_sum_avx2(const float *p, size_t n);
float gk_stream_sum_avx512(const float *p, size_t n);

/* Adds the tail p[0..nt) (nt < 64) into lanes 0..nt-1, then folds the 64 lanes
 * by halves (s[i] += s[i + 32], then + 16, ... + 1) and returns s[0]. */
static inline float gk_stream_fold(float s[GK_STREAM_LANES], const float *tail, size_t nt) {
    for (size_t i = 0; i < nt; i++) s[i] += tail[i];
    for (int h = GK_STREAM_LANES / 2; h > 0; h /= 2)
        for (int i = 0; i < h; i++) s[i] += s[i + h];
    return s[0];
}

/* Read bandwidth of the pool's threads, each streaming its share of one buffer
 * of `bytes` (0: four times the last-level cache, at least 256 MiB and at most
 * 2 GiB) that they first wrote themselves: the best of `reps` passes. */
typedef struct gk_bandwidth {
    double bytes_per_s; /* the best pass */
    double worst_bytes_per_s;
    size_t bytes; /* of the buffer */
    int reps, threads;
    const char *isa;
} gk_bandwidth;
int gk_read_bandwidth(gk_pool *pool, size_t bytes, int reps, gk_bandwidth *out, gk_err *err);
/* The same, measured again and again on one buffer (written once, by the threads that
 * read it, when the meter is made): for a limit taken next to what it limits. */
typedef struct gk_bw_meter gk_bw_meter;
gk_bw_meter *gk_bw_meter_new(gk_pool *pool, size_t bytes, gk_err *err);
int gk_bw_meter_run(gk_bw_meter *m, int reps, gk_bandwidth *out, gk_err *err);
void gk_bw_meter_free(gk_bw_meter *m);

#endif
