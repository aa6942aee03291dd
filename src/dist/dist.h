/*
 * dist.h - the process group that training and inference share. Built with MPI
 * (when CMake finds it, GK_HAVE_MPI) and started under mpirun, it spans the MPI
 * world; otherwise it is one process and every collective is a no-op, so the
 * same code runs on a laptop and on a cluster.
 *
 * Training (data parallel) uses the plain sums below. Inference (tensor
 * parallel, src/model) uses the collectives of the second half: an all-reduce
 * whose sums run in a fixed rank order whatever MPI's algorithm, so that every
 * rank holds bit-identical activations (a router near-tie then picks the same
 * experts everywhere); a broadcast of rank 0's commands; a gather of the
 * vocabulary slices of the logits to rank 0; and an agreement step that turns
 * a failure on one rank into the same error on every rank.
 *
 * For tests on one machine, GK_DIST_LATENCY_US and GK_DIST_MBPS delay each
 * collective as a link of that latency and bandwidth would (the bytes the
 * busiest link carries, plus one latency per step). GK_DIST_TIMEOUT_S (default
 * 60) bounds every collective of a forward pass: past it a watchdog names the
 * collective and ends the process, and mpirun then ends the others.
 */
#ifndef GK_DIST_DIST_H
#define GK_DIST_DIST_H

#include "base/base.h"

#include <stdatomic.h>
#include <pthread.h>

struct gk_dist {
    int rank, size;
    bool mpi;   /* MPI was initialised here (and must be finalised) */
    bool owned; /* made by gk_dist_new (freed by gk_dist_free) */
    /* link model (0 = none) */
    double lat_s, bytes_per_s;
    double timeout_s;
    gk_dist_stats st;
    /* watchdog: armed_ns != 0 while a collective runs */
    pthread_t wd;
    bool wd_started;
    atomic_int wd_stop;
    atomic_llong armed_ns;
    const char *_Atomic armed_what;
};

/* Joins the MPI world when launched by mpirun (and built with MPI). */
int gk_dist_init(gk_dist *d, int *argc, char ***argv, gk_err *err);
void gk_dist_finalize(gk_dist *d);
/* In-place sums over all processes (training: MPI's own reduction order). */
int gk_dist_sum_f32(gk_dist *d, float *buf, size_t n, gk_err *err);
int gk_dist_sum_f64(gk_dist *d, double *buf, size_t n, gk_err *err);
/* Rank 0's value of a flag to everyone (agreement on stopping, on errors). */
int gk_dist_bcast_i32(gk_dist *d, int32_t *v, gk_err *err);
void gk_dist_barrier(gk_dist *d);
/* A barrier that sleeps while it waits (after 1 ms) instead of spinning, for a
 * rank with nothing to do while another measures or computes on the same cores. */
void gk_dist_barrier_idle(gk_dist *d);
/* True when this build has MPI. */
bool gk_dist_have_mpi(void);

/* ------------------------------------------------------------ inference --- */

/* v[0][0..len) := the sum of v[0..n) as the fixed tree every partial sum of the
 * tensor-parallel forward uses: split at the largest power of two below n, each
 * side summed the same way, then the left side plus the right. For n = 2^a * b
 * summed as 2^a consecutive groups of b, the groups' sums are the tree's own
 * subtrees, which is what makes a split over ranks add up like one process.
 * The other buffers are clobbered. */
void gk_dist_tree_sum(float *const *v, int n, size_t len);

/* Bytes of scratch gk_dist_allreduce needs for n floats on size ranks. */
size_t gk_dist_allreduce_scratch(int size, size_t n, gk_dist_wire wire);
/* buf[0..n) := the sum over ranks, added as gk_dist_tree_sum's tree in rank
 * order, so the result is bit-identical on every rank whatever MPI does (and the
 * top of the forward's summation tree): with 2 ranks or a small
 * payload every rank gathers every contribution and sums them all (one step);
 * else the rank that owns each chunk sums it (reduce-scatter by all-to-all,
 * then all-gather: two steps, 2(N-1)/N of the payload sent). A compressed wire
 * encodes each contribution (and the summed chunks); the sums are fp32. */
int gk_dist_allreduce(gk_dist *d, float *buf, size_t n, gk_dist_wire wire, void *scratch,
                      gk_err *err);
/* Rank 0's bytes to every rank, the wait bounded by the watchdog. */
int gk_dist_bcast(gk_dist *d, void *buf, size_t bytes, gk_err *err);
/* The same for rank 0's next command to its followers, which may come much
 * later: a follower's wait has no bound and sleeps between polls (after 1 ms),
 * so that an idle follower does not hold a core. Every rank calls this one for
 * the same broadcast (it is MPI's non-blocking broadcast, which matches only
 * its own kind). */
int gk_dist_bcast_cmd(gk_dist *d, void *buf, size_t bytes, gk_err *err);
/* Every rank's bytes (the same count everywhere) to every rank, in rank order. */
int gk_dist_allgather(gk_dist *d, const void *send, size_t bytes, void *recv, gk_err *err);
/* Rank r's bytes[r] bytes to rank 0, placed at recv + offs[r] (recv, bytes and
 * offs are read on rank 0 only). */
int gk_dist_gatherv(gk_dist *d, const void *send, size_t n_send, void *recv, const size_t *bytes,
                    const size_t *offs, gk_err *err);

/* Agreement after a step every rank runs (loading, making a context): each
 * rank reports whether it succeeded (with its message) and an identity (what
 * must be equal everywhere: model, parameters); on every rank this returns 0
 * when all succeeded with equal identities and the grok version, else -1 with
 * a message naming the first failing rank and its cause. what names the step.
 * GK_DIST_TEST_VERSION in a rank's environment (a test hook) makes it announce
 * that version instead of its own. */
int gk_dist_agree(gk_dist *d, bool ok, const char *msg, const uint64_t ident[4], const char *what,
                  gk_err *err);

/* 64-bit FNV-1a, for identities and --dist-check hashes. */
uint64_t gk_dist_hash(uint64_t h, const void *data, size_t n);
#define GK_DIST_HASH_INIT 14695981039346656037ull

#endif
