/*
 * base.h - internal helpers shared by every module of libgrok: error reporting,
 * overflow-checked arithmetic, read-only file mapping, a small thread pool and
 * fp16/bf16 scalar conversions.
 *
 * Errors: a function that can fail takes a gk_err * (may be NULL) and returns
 * -1 (or NULL) after writing a message that names what failed. gk_fail() does
 * both in one line: `return gk_fail(err, "tensor '%s': bad shape", name);`.
 */
#ifndef GK_BASE_H
#define GK_BASE_H

#include "grok.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes a formatted message into err (if non-NULL) and returns -1. */
int gk_fail(gk_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Like gk_fail but returns NULL, for functions that return pointers. */
void *gk_failp(gk_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends "prefix: " to an existing message (for adding context on the way up). */
void gk_err_prefix(gk_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Overflow-checked arithmetic: return false on overflow (out is then unspecified). */
static inline bool gk_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
static inline bool gk_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

/* Allocation that reports failure through err. Size 0 allocates 1 byte. */
void *gk_malloc(size_t n, gk_err *err);
void *gk_calloc(size_t n, size_t size, gk_err *err);
/* 64-byte aligned allocation, freed with gk_free_aligned. */
void *gk_malloc_aligned(size_t n, gk_err *err);
void gk_free_aligned(void *p);
/* 2 MiB aligned, in 2 MiB pages where the kernel gives them (transparent huge
 * pages on request): one page fault per 2 MiB touched rather than per 4 KiB, and
 * fewer TLB misses. Freed with gk_free_aligned. */
void *gk_malloc_huge(size_t n, gk_err *err);

/* A read-only memory map of a whole file. */
typedef struct gk_mmap {
    const uint8_t *data;
    size_t size;
} gk_mmap;
int gk_mmap_open(gk_mmap *m, const char *path, gk_err *err);
void gk_mmap_close(gk_mmap *m);

/* Monotonic time in seconds. */
double gk_time_s(void);

/* fp16 / bf16 scalar conversions (IEEE binary16 and bfloat16, round to nearest even). */
float gk_fp16_to_fp32(uint16_t h);
uint16_t gk_fp32_to_fp16(float f);
static inline float gk_bf16_to_fp32(uint16_t h) {
    union {
        uint32_t u;
        float f;
    } v = {.u = (uint32_t)h << 16};
    return v.f;
}
uint16_t gk_fp32_to_bf16(float f);

/*
 * Thread pool: n worker threads (the caller counts as thread 0). gk_pool_run()
 * calls fn(arg, ith, nth) on every thread and returns when all are done. With
 * nth == 1 it simply calls fn on the caller. Workers spin briefly and then sleep,
 * so a decode step of one token does not pay a futex wake-up per matmul.
 */
typedef struct gk_pool gk_pool;
typedef void (*gk_pool_fn)(void *arg, int ith, int nth);
gk_pool *gk_pool_new(int n_threads, gk_err *err);
void gk_pool_free(gk_pool *p);
int gk_pool_size(const gk_pool *p);
/* Jobs handed to the workers so far (runs with more than one thread): what each
 * costs is a dispatch, which grok plan counts (gk_decode_stats.pool_runs). */
uint64_t gk_pool_runs(const gk_pool *p);
void gk_pool_run(gk_pool *p, gk_pool_fn fn, void *arg);

/* Splits [0, n) into nth nearly equal ranges; returns thread ith's [*lo, *hi). */
static inline void gk_split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi) {
    int64_t per = n / nth, rem = n % nth;
    *lo = ith * per + (ith < rem ? ith : rem);
    *hi = *lo + per + (ith < rem ? 1 : 0);
}

/*
 * Items [0, n) of one pool job, shared out as they are done: each thread starts
 * on its gk_split share and takes it in order, a sixteenth at a time; when that
 * runs out it helps with the next thread's share, and so on round the pool. A
 * thread that runs slower (a busier core, a later start) hands the end of its
 * share to the others instead of holding the whole job up. Which thread runs an
 * item must not change what the item computes. Call from inside a job that pool
 * p runs (fn's ith and nth), once per job: the pool zeroes its counters at each
 * gk_pool_run. With nth == 1 (or no pool) the one thread gets [0, n) at once.
 *
 *     gk_share s;
 *     gk_share_start(&s, pool, n, ith, nth);
 *     for (int64_t lo, hi; gk_share_next(&s, &lo, &hi);)
 *         for (int64_t i = lo; i < hi; i++) work(i);
 */
typedef struct {
    gk_pool *p;
    int64_t n;
    int share, nth, visited;
} gk_share;
void gk_share_start(gk_share *s, gk_pool *p, int64_t n, int ith, int nth);
bool gk_share_next(gk_share *s, int64_t *lo, int64_t *hi);

#endif
