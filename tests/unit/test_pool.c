/*
 * test_pool.c - the thread pool (base.h): every job runs once on every thread,
 * also after the workers have gone to sleep; gk_share hands out each item of a
 * job exactly once for any item count and thread count, its counters start
 * afresh at each job, and a thread that starts late has the end of its share
 * taken by the others (the late thread waits, with a time limit, until they
 * have taken some, so nothing here depends on timing).
 */
#include "gk_test.h"
#include "base/base.h"

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define CHECK_EQ(a, b)                                                                             \
    CHECK_MSG((long long)(a) == (long long)(b), "%lld != %lld", (long long)(a), (long long)(b))

enum { MAX_T = 4, MAX_ITEMS = 100003 };

typedef struct {
    gk_pool *pool;
    int64_t n;
    atomic_int ran[MAX_T];    /* calls of fn per thread */
    atomic_int nth_seen;      /* the nth fn was given */
    _Atomic(signed char) *by; /* the thread that took each item, -1 for none */
    atomic_int twice;         /* items taken more than once */
    bool late;                /* thread 0 waits until another takes from its share */
    atomic_int stolen;        /* items of share 0 taken by other threads */
} job;

static void sleep_ms(int ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void share_fn(void *arg, int ith, int nth) {
    job *j = arg;
    atomic_fetch_add(&j->ran[ith], 1);
    atomic_store(&j->nth_seen, nth);
    int64_t lo0, hi0;
    gk_split(j->n, 0, nth, &lo0, &hi0);
    if (j->late && ith == 0 && nth > 1 && hi0 > lo0)
        for (int i = 0; i < 10000 && !atomic_load(&j->stolen); i++) sleep_ms(1);
    gk_share s;
    gk_share_start(&s, j->pool, j->n, ith, nth);
    for (int64_t lo, hi; gk_share_next(&s, &lo, &hi);) {
        if (lo < 0 || hi > j->n || lo >= hi) {
            atomic_fetch_add(&j->twice, 1000000); /* a bad range */
            continue;
        }
        for (int64_t i = lo; i < hi; i++) {
            signed char none = -1;
            if (!atomic_compare_exchange_strong(&j->by[i], &none, (signed char)ith))
                atomic_fetch_add(&j->twice, 1);
            if (ith != 0 && i >= lo0 && i < hi0) atomic_fetch_add(&j->stolen, 1);
        }
    }
}

/* One job over n items on pool p (nth threads); returns the items nobody took. */
static int64_t run_share(gk_pool *p, job *j, int64_t n, bool late) {
    j->pool = p, j->n = n, j->late = late;
    for (int t = 0; t < MAX_T; t++) atomic_store(&j->ran[t], 0);
    atomic_store(&j->twice, 0);
    atomic_store(&j->stolen, 0);
    for (int64_t i = 0; i < n; i++) atomic_store(&j->by[i], (signed char)-1);
    gk_pool_run(p, share_fn, j);
    int64_t missed = 0;
    for (int64_t i = 0; i < n; i++) missed += atomic_load(&j->by[i]) < 0;
    return missed;
}

int main(void) {
    gk_err err = {0};
    job j = {0};
    j.by = calloc(MAX_ITEMS, sizeof *j.by);
    CHECK(j.by != NULL);
    if (!j.by) return gk_test_done();
    static const int64_t counts[] = {0, 1, 2, 3, 5, 16, 17, 33, 1000, MAX_ITEMS};
    for (int nt = 1; nt <= MAX_T; nt++) {
        gk_pool *p = gk_pool_new(nt, &err);
        CHECK_MSG(p != NULL, "%s", err.msg);
        if (!p) continue;
        CHECK_EQ(gk_pool_size(p), nt);
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++)
            for (int rep = 0; rep < 3; rep++) { /* the counters start afresh each job */
                const int64_t n = counts[c];
                CHECK_EQ(run_share(p, &j, n, false), 0);
                CHECK_EQ(atomic_load(&j.twice), 0);
                CHECK_EQ(atomic_load(&j.nth_seen), nt);
                for (int t = 0; t < MAX_T; t++) CHECK_EQ(atomic_load(&j.ran[t]), t < nt ? 1 : 0);
            }
        if (nt > 1) {
            /* thread 0 late: the others take part of its share, and still every item
             * runs once */
            CHECK_EQ(run_share(p, &j, 1000, true), 0);
            CHECK_EQ(atomic_load(&j.twice), 0);
            CHECK_MSG(atomic_load(&j.stolen) > 0, "no item of a late thread's share was taken");
            /* after the workers have slept (they spin about 2 ms first) */
            sleep_ms(30);
            CHECK_EQ(run_share(p, &j, 5000, false), 0);
            CHECK_EQ(atomic_load(&j.twice), 0);
            for (int t = 0; t < nt; t++) CHECK_EQ(atomic_load(&j.ran[t]), 1);
        }
        gk_pool_free(p);
    }
    /* no pool: the caller alone, all items at once */
    CHECK_EQ(run_share(NULL, &j, 1000, false), 0);
    CHECK_EQ(atomic_load(&j.twice), 0);
    free(j.by);
    return gk_test_done();
}
