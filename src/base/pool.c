/*
 * pool.c - a fork-join thread pool for the forward pass.
 *
 * gk_pool_run() publishes (fn, arg) under a new generation number; workers
 * spin on the generation for a short while (a decode step issues hundreds of
 * small jobs, and a futex wake-up costs more than the job), then fall back to
 * a condition variable. The caller works as thread 0 and waits for the rest;
 * it takes the mutex to wake the workers only when one of them sleeps (the
 * sleepers count and the generation are sequentially consistent, so either
 * the caller sees the sleeper or the sleeper sees the new generation).
 */
#include "base/base.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

/* How long an idle worker spins before it sleeps. A decode step leaves a
 * worker idle for tens of microseconds at a time (the caller's serial work
 * between jobs, the other thread's longer share), and a futex wake-up costs
 * about 14 us in a VM: a 20000-iteration spin (~20 us) fell asleep between
 * most of a layer's jobs and delayed the worker's start of the next one.
 * Past YIELD_S the spin yields the core at each look at the clock, so that
 * where threads outnumber cores (ranks sharing a machine, a caller waiting on
 * the network) the spinning worker gives way to whoever has work. */
#define SPIN_S 2e-3
#define YIELD_S 100e-6
#define SPIN_ITERS 20000 /* the caller's join wait, before it yields */

/* One thread's share of a job's items (gk_share_next): how many of them have
 * been handed out, on a cache line of its own. */
typedef struct {
    _Alignas(64) atomic_llong taken;
} share_slot;

struct gk_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    gk_pool_fn fn;
    void *arg;
    atomic_uint gen;     /* bumped once per job */
    atomic_int done;     /* workers finished with the current job */
    atomic_int sleepers; /* workers in (or entering) the condition wait */
    atomic_bool quit;
    uint64_t runs;      /* jobs handed to the workers (gk_pool_runs); the caller's thread only */
    share_slot *shares; /* n of them, zeroed at each job */
};

typedef struct {
    gk_pool *p;
    int ith;
} worker_arg;

static void *worker(void *v) {
    worker_arg *wa = v;
    gk_pool *p = wa->p;
    int ith = wa->ith;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        unsigned spins = 0;
        double sleep_at = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen &&
               !atomic_load(&p->quit)) {
            if (++spins % 1024) continue;
            double now = gk_time_s();
            if (sleep_at == 0) sleep_at = now + SPIN_S;
            if (now < sleep_at) {
                if (sleep_at - now < SPIN_S - YIELD_S) sched_yield();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) return NULL;
        seen = g;
        p->fn(p->arg, ith, p->n);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

gk_pool *gk_pool_new(int n_threads, gk_err *err) {
    if (n_threads < 1) n_threads = 1;
    gk_pool *p = gk_calloc(1, sizeof *p, err);
    if (!p) return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->quit, false);
    p->threads = gk_calloc((size_t)n_threads, sizeof(pthread_t), err);
    if (!p->threads) goto fail;
    p->shares = gk_malloc_aligned((size_t)n_threads * sizeof(share_slot), err);
    if (!p->shares) goto fail;
    for (int i = 0; i < n_threads; i++) atomic_init(&p->shares[i].taken, 0);
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = gk_malloc(sizeof *wa, err);
        if (!wa) goto fail;
        wa->p = p;
        wa->ith = i;
        if (pthread_create(&p->threads[i], NULL, worker, wa) != 0) {
            free(wa);
            gk_fail(err, "cannot start thread %d of %d", i, n_threads);
            p->n = i; /* only threads 1..i-1 exist */
            goto fail;
        }
    }
    return p;
fail:
    gk_pool_free(p);
    return NULL;
}

void gk_pool_free(gk_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (p->threads)
        for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    gk_free_aligned(p->shares);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

int gk_pool_size(const gk_pool *p) {
    return p ? p->n : 1;
}

uint64_t gk_pool_runs(const gk_pool *p) {
    return p ? p->runs : 0;
}

void gk_pool_run(gk_pool *p, gk_pool_fn fn, void *arg) {
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->runs++;
    p->fn = fn;
    p->arg = arg;
    for (int i = 0; i < p->n; i++)
        atomic_store_explicit(&p->shares[i].taken, 0, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, p->n);
    int spins = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) < p->n - 1)
        if (++spins > SPIN_ITERS) sched_yield();
}

void gk_share_start(gk_share *s, gk_pool *p, int64_t n, int ith, int nth) {
    *s = (gk_share){.p = nth > 1 ? p : NULL, .n = n, .share = ith, .nth = nth};
}

bool gk_share_next(gk_share *s, int64_t *lo, int64_t *hi) {
    if (!s->p) { /* one thread: everything at once */
        if (s->visited++ || s->n <= 0) return false;
        *lo = 0, *hi = s->n;
        return true;
    }
    for (; s->visited < s->nth; s->visited++, s->share = (s->share + 1) % s->nth) {
        int64_t a, b;
        gk_split(s->n, s->share, s->nth, &a, &b);
        const int64_t g = (b - a) / 16 > 1 ? (b - a) / 16 : 1;
        /* relaxed: the items are disjoint, and the pool's join publishes their results */
        const int64_t k =
            atomic_fetch_add_explicit(&s->p->shares[s->share].taken, g, memory_order_relaxed);
        if (a + k < b) {
            *lo = a + k, *hi = a + k + g < b ? a + k + g : b;
            return true;
        }
    }
    return false;
}
