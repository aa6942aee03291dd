/*
 * stream.c - the streaming read kernel's scalar reference, its dispatch, and
 * the bandwidth measurement over the thread pool (stream.h).
 */
#include "kernels/stream.h"
#include "tensor/dtype.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

float gk_stream_sum_scalar(const float *p, size_t n) {
    float s[GK_STREAM_LANES] = {0};
    size_t i = 0;
    for (; i + GK_STREAM_LANES <= n; i += GK_STREAM_LANES)
        for (int l = 0; l < GK_STREAM_LANES; l++) s[l] += p[i + l];
    return gk_stream_fold(s, p + i, n - i);
}

typedef float (*stream_fn)(const float *, size_t);
static stream_fn stream_kernel = gk_stream_sum_scalar;
static const char *stream_name = "scalar";
static pthread_once_t stream_once = PTHREAD_ONCE_INIT;

static void stream_init(void) {
#if defined(__x86_64__) || defined(_M_X64)
    if (getenv("GK_FORCE_SCALAR") || !gk_cpu_has_avx2_fma_f16c()) return;
    stream_kernel = gk_stream_sum_avx2, stream_name = "avx2";
    if (gk_cpu_has_avx512_vnni() && !getenv("GK_NO_AVX512"))
        stream_kernel = gk_stream_sum_avx512, stream_name = "avx512";
#endif
}

float gk_stream_sum(const float *p, size_t n) {
    pthread_once(&stream_once, stream_init);
    return stream_kernel(p, n);
}

const char *gk_stream_isa(void) {
    pthread_once(&stream_once, stream_init);
    return stream_name;
}

/* ------------------------------------------------------- measurement --- */

typedef struct {
    float *buf;
    size_t n; /* floats */
    int fill;
    float sums[256]; /* stored, so that no pass is optimised away */
} bw_job;

/* Thread ith's share: whole 64-float blocks (the last thread takes the tail). */
static void bw_part(void *arg, int ith, int nth) {
    bw_job *j = arg;
    int64_t lo, hi, nblk = (int64_t)(j->n / GK_STREAM_LANES);
    gk_split(nblk, ith, nth, &lo, &hi);
    size_t a = (size_t)lo * GK_STREAM_LANES,
           b = ith == nth - 1 ? j->n : (size_t)hi * GK_STREAM_LANES;
    if (j->fill) { /* first touch by the thread that reads it */
        for (size_t i = a; i < b; i++) j->buf[i] = (float)(i & 7);
        return;
    }
    float s = gk_stream_sum(j->buf + a, b - a);
    if (ith < 256) j->sums[ith] = s;
}

static size_t default_bytes(void) {
    long llc = 0;
#ifdef _SC_LEVEL3_CACHE_SIZE
    llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    size_t b = llc > 0 ? 4 * (size_t)llc : 0;
    if (b < ((size_t)256 << 20)) b = (size_t)256 << 20;
    if (b > ((size_t)2 << 30)) b = (size_t)2 << 30;
    return b;
}

struct gk_bw_meter {
    gk_pool *pool;
    bw_job j;
};

gk_bw_meter *gk_bw_meter_new(gk_pool *pool, size_t bytes, gk_err *err) {
    if (!pool) return gk_fail(err, "read bandwidth: no pool"), NULL;
    if (!bytes) bytes = default_bytes();
    if (bytes < 4096)
        return gk_fail(err, "read bandwidth: buffer of %zu bytes is too small", bytes), NULL;
    gk_bw_meter *m = calloc(1, sizeof *m);
    if (!m) return gk_fail(err, "read bandwidth: out of memory"), NULL;
    m->pool = pool;
    m->j = (bw_job){.n = bytes / sizeof(float), .fill = 1};
    if (!(m->j.buf = gk_malloc_aligned(m->j.n * sizeof(float), err))) {
        gk_err_prefix(err, "read bandwidth: buffer of %zu MiB", bytes >> 20);
        free(m);
        return NULL;
    }
    gk_pool_run(pool, bw_part, &m->j);
    m->j.fill = 0;
    gk_pool_run(pool, bw_part, &m->j); /* untimed: faults and TLB warmed */
    return m;
}

int gk_bw_meter_run(gk_bw_meter *m, int reps, gk_bandwidth *out, gk_err *err) {
    if (!m || !out) return gk_fail(err, "read bandwidth: no meter or no result to fill");
    if (reps < 1) return gk_fail(err, "read bandwidth: %d passes (need at least 1)", reps);
    double best = 0, worst = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = gk_time_s();
        gk_pool_run(m->pool, bw_part, &m->j);
        double dt = gk_time_s() - t0;
        double bw = dt > 0 ? (double)(m->j.n * sizeof(float)) / dt : 0;
        if (bw > best) best = bw;
        if (r == 0 || bw < worst) worst = bw;
    }
    *out = (gk_bandwidth){.bytes_per_s = best,
                          .worst_bytes_per_s = worst,
                          .bytes = m->j.n * sizeof(float),
                          .reps = reps,
                          .threads = gk_pool_size(m->pool),
                          .isa = gk_stream_isa()};
    return 0;
}

void gk_bw_meter_free(gk_bw_meter *m) {
    if (!m) return;
    gk_free_aligned(m->j.buf);
    free(m);
}

int gk_read_bandwidth(gk_pool *pool, size_t bytes, int reps, gk_bandwidth *out, gk_err *err) {
    if (!pool || !out) return gk_fail(err, "read bandwidth: no pool or no result to fill");
    if (reps < 1) return gk_fail(err, "read bandwidth: %d passes (need at least 1)", reps);
    gk_bw_meter *m = gk_bw_meter_new(pool, bytes, err);
    if (!m) return -1;
    int rc = gk_bw_meter_run(m, reps, out, err);
    gk_bw_meter_free(m);
    return rc;
}
