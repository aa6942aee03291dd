/*
 * dist.c - see dist.h. The MPI half is compiled only with GK_HAVE_MPI; without
 * it every group has one process and the collectives return at once.
 */
#include "dist/dist.h"
#include "tensor/dtype.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef GK_HAVE_MPI
#include <mpi.h>
#endif

uint64_t gk_dist_hash(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

int gk_dist_wire_from_name(const char *name) {
    if (!strcmp(name, "f32") || !strcmp(name, "fp32")) return GK_DIST_WIRE_F32;
    if (!strcmp(name, "bf16")) return GK_DIST_WIRE_BF16;
    if (!strcmp(name, "q8_0")) return GK_DIST_WIRE_Q8_0;
    return -1;
}

const char *gk_dist_wire_name(gk_dist_wire w) {
    return w == GK_DIST_WIRE_BF16 ? "bf16" : w == GK_DIST_WIRE_Q8_0 ? "q8_0" : "f32";
}

int gk_dist_rank(const gk_dist *d) {
    return d ? d->rank : 0;
}
int gk_dist_size(const gk_dist *d) {
    return d ? d->size : 1;
}
gk_dist_stats gk_dist_get_stats(const gk_dist *d) {
    return d ? d->st : (gk_dist_stats){0};
}
void gk_dist_reset_stats(gk_dist *d) {
    if (d) memset(&d->st, 0, sizeof d->st);
}

void gk_dist_tree_sum(float *const *v, int n, size_t len) {
    if (n <= 1) return;
    int h = 1;
    while (2 * h < n) h *= 2;
    gk_dist_tree_sum(v, h, len);
    gk_dist_tree_sum(v + h, n - h, len);
    float *a = v[0];
    const float *b = v[h];
    for (size_t i = 0; i < len; i++) a[i] += b[i];
}

/* ----------------------------------------------------------- wire formats --- */

/* Values are exchanged in chunks of a multiple of 32 (one q8_0 block). */
#define CHUNK_ALIGN 32

static size_t wire_bytes(gk_dist_wire w, size_t n) {
    return w == GK_DIST_WIRE_BF16 ? n * 2 : w == GK_DIST_WIRE_Q8_0 ? n / 32 * 34 : n * 4;
}

static void wire_encode(gk_dist_wire w, const float *x, void *out, size_t n) {
    if (w == GK_DIST_WIRE_BF16) {
        uint16_t *o = out;
        for (size_t i = 0; i < n; i++) o[i] = gk_fp32_to_bf16(x[i]);
    } else if (w == GK_DIST_WIRE_Q8_0) {
        gk_type_traits_of(GK_TYPE_Q8_0)->from_float(x, out, (int64_t)n);
    } else {
        memcpy(out, x, n * sizeof(float));
    }
}

static void wire_decode(gk_dist_wire w, const void *in, float *x, size_t n) {
    if (w == GK_DIST_WIRE_BF16) {
        const uint16_t *p = in;
        for (size_t i = 0; i < n; i++) x[i] = gk_bf16_to_fp32(p[i]);
    } else if (w == GK_DIST_WIRE_Q8_0) {
        gk_type_traits_of(GK_TYPE_Q8_0)->to_float(in, x, (int64_t)n);
    } else {
        memcpy(x, in, n * sizeof(float));
    }
}

static size_t chunk_of(int size, size_t n) {
    size_t c = (n + (size_t)size - 1) / (size_t)size;
    return (c + CHUNK_ALIGN - 1) / CHUNK_ALIGN * CHUNK_ALIGN;
}

/* One all-gather of whole contributions (one latency step, N - 1 payloads sent)
 * instead of reduce-scatter + all-gather (two steps, 2(N - 1)/N payloads): the
 * same bytes at N = 2, and cheaper than a second latency for small payloads. */
#define GATHER_ALL_MAX_BYTES (16u << 10)

static bool gather_all(int size, size_t n, gk_dist_wire wire) {
    size_t whole = wire_bytes(wire, chunk_of(1, n));
    return size == 2 || (size_t)(size - 1) * whole <= GATHER_ALL_MAX_BYTES;
}

size_t gk_dist_allreduce_scratch(int size, size_t n, gk_dist_wire wire) {
    if (size <= 1) return 0;
    size_t c = chunk_of(size, n), cb = wire_bytes(wire, c);
    /* padded input (then every rank's decoded chunk), send and receive wires, one
     * decoded row */
    size_t rs = (size_t)size * c * sizeof(float) + 2 * (size_t)size * cb + c * sizeof(float);
    /* or: every rank's decoded contribution, this rank's wire, every rank's wire */
    size_t w = chunk_of(1, n), wb = wire_bytes(wire, w);
    size_t ga = (size_t)size * w * sizeof(float) + (size_t)(size + 1) * wb;
    return (rs > ga ? rs : ga) + 256;
}

#ifdef GK_HAVE_MPI

bool gk_dist_have_mpi(void) {
    return true;
}

/* mpirun sets these; a plain start stays a single process without MPI_Init
 * (which would try to reach a launcher). */
static bool launched_by_mpirun(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static double env_num(const char *name, double def) {
    const char *s = getenv(name);
    if (!s || !*s) return def;
    char *end;
    double v = strtod(s, &end);
    return *end || !(v >= 0) ? def : v;
}

int gk_dist_init(gk_dist *d, int *argc, char ***argv, gk_err *err) {
    memset(d, 0, sizeof *d);
    d->size = 1;
    d->timeout_s = env_num("GK_DIST_TIMEOUT_S", 60.0);
    d->lat_s = env_num("GK_DIST_LATENCY_US", 0.0) * 1e-6;
    double mbps = env_num("GK_DIST_MBPS", 0.0);
    d->bytes_per_s = mbps > 0 ? mbps * 1e6 / 8.0 : 0.0;
    if (!launched_by_mpirun()) return 0;
    /* serialized: one thread at a time may call MPI, not only the one that
     * initialised it (grok serve's engine thread leads the ranks) */
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
        return gk_fail(err, "MPI_Init_thread failed");
    d->mpi = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    return 0;
}

void gk_dist_finalize(gk_dist *d) {
    if (d->wd_started) {
        atomic_store(&d->wd_stop, 1);
        pthread_join(d->wd, NULL);
        d->wd_started = false;
    }
    if (d->mpi) MPI_Finalize();
    d->mpi = false;
}

/* The watchdog: a blocked collective cannot return to its caller, so past the
 * timeout this thread names it on stderr (the one place the library prints:
 * nothing else can) and ends the process; mpirun then ends every other rank. */
static void *watchdog(void *arg) {
    gk_dist *d = arg;
    while (!atomic_load(&d->wd_stop)) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        long long t = atomic_load(&d->armed_ns);
        if (t && (double)(now_ns() - t) * 1e-9 > d->timeout_s) {
            const char *what = atomic_load(&d->armed_what);
            fprintf(stderr,
                    "grok: rank %d of %d: %s has not completed in %.0f s (another rank stopped "
                    "or the network failed); ending this process\n",
                    d->rank, d->size, what ? what : "a collective", d->timeout_s);
            fflush(stderr);
            /* SIGTERM first, so that the program's handler can remove its temporary
             * files (as when mpirun ends a rank); then leave for certain */
            raise(SIGTERM);
            struct timespec grace = {1, 0};
            nanosleep(&grace, NULL);
            _exit(70);
        }
    }
    return NULL;
}

static void arm(gk_dist *d, const char *what) {
    atomic_store(&d->armed_what, what);
    atomic_store(&d->armed_ns, now_ns());
}

/* Ends a collective: the link model's delay for `wire` bytes on the busiest
 * link in `steps` latency steps, then the counters. */
static void disarm(gk_dist *d, long long t0, size_t sent, size_t wire, int steps, size_t ideal) {
    double delay = 0.0;
    if (d->lat_s > 0 || d->bytes_per_s > 0) {
        delay = d->lat_s * steps + (d->bytes_per_s > 0 ? (double)wire / d->bytes_per_s : 0.0);
        long long until = t0 + (long long)(delay * 1e9);
        long long t = now_ns();
        /* the link runs beside the sender: only the part not yet elapsed is waited */
        if (until > t) {
            struct timespec ts = {(time_t)((until - t) / 1000000000ll),
                                  (long)((until - t) % 1000000000ll)};
            nanosleep(&ts, NULL);
        }
    }
    atomic_store(&d->armed_ns, 0);
    d->st.collectives++;
    d->st.comm_s += (double)(now_ns() - t0) * 1e-9;
    d->st.link_s += delay;
    d->st.bytes_sent += sent;
    d->st.bytes_ideal += ideal;
}

gk_dist *gk_dist_new(int *argc, char ***argv, gk_err *err) {
    gk_dist *d = gk_calloc(1, sizeof *d, err);
    if (!d) return NULL;
    if (gk_dist_init(d, argc, argv, err) < 0) {
        free(d);
        return NULL;
    }
    d->owned = true;
    if (d->size > 1) {
        if (pthread_create(&d->wd, NULL, watchdog, d) != 0) {
            gk_fail(err, "cannot start the collective watchdog thread");
            gk_dist_finalize(d);
            free(d);
            return NULL;
        }
        d->wd_started = true;
    }
    return d;
}

void gk_dist_free(gk_dist *d) {
    if (!d) return;
    gk_dist_finalize(d);
    free(d);
}

void gk_dist_abort(gk_dist *d, int code) {
    if (d && d->size > 1) {
        fflush(stdout);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, code);
    }
}

static int sum(gk_dist *d, void *buf, size_t n, MPI_Datatype t, size_t esz, gk_err *err) {
    if (d->size == 1) return 0;
    for (size_t off = 0; off < n;) {
        int c = n - off > (1u << 30) ? 1 << 30 : (int)(n - off);
        if (MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * esz, c, t, MPI_SUM, MPI_COMM_WORLD) !=
            MPI_SUCCESS)
            return gk_fail(err, "MPI_Allreduce failed");
        off += (size_t)c;
    }
    return 0;
}

int gk_dist_sum_f32(gk_dist *d, float *buf, size_t n, gk_err *err) {
    return sum(d, buf, n, MPI_FLOAT, sizeof(float), err);
}
int gk_dist_sum_f64(gk_dist *d, double *buf, size_t n, gk_err *err) {
    return sum(d, buf, n, MPI_DOUBLE, sizeof(double), err);
}
int gk_dist_bcast_i32(gk_dist *d, int32_t *v, gk_err *err) {
    if (d->size == 1) return 0;
    if (MPI_Bcast(v, 1, MPI_INT32_T, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
        return gk_fail(err, "MPI_Bcast failed");
    return 0;
}
void gk_dist_barrier(gk_dist *d) {
    if (d->size > 1) MPI_Barrier(MPI_COMM_WORLD);
}

/* Waits for a request without holding a core: polls it for the first
 * millisecond (a reply that comes at once costs no sleep), then sleeps between
 * polls, 50 us at first and doubling up to 1 ms. MPI's own blocking calls spin
 * at full speed, or sched_yield in a loop when oversubscribed, for as long as
 * they wait. */
static int wait_asleep(MPI_Request *rq) {
    long long t0 = now_ns();
    long sleep_ns = 50 * 1000;
    for (int done = 0;;) {
        if (MPI_Test(rq, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return -1;
        if (done) return 0;
        if (now_ns() - t0 < 1000 * 1000) continue;
        struct timespec ts = {0, sleep_ns};
        nanosleep(&ts, NULL);
        if (sleep_ns < 1000 * 1000) sleep_ns *= 2;
    }
}

void gk_dist_barrier_idle(gk_dist *d) {
    if (d->size < 2) return;
    MPI_Request rq;
    if (MPI_Ibarrier(MPI_COMM_WORLD, &rq) == MPI_SUCCESS) wait_asleep(&rq);
}

/* Rows of w floats, one per rank, summed as the fixed tree into rows[0]. */
static void tree_rows(float *rows, int N, size_t w) {
    float *v[256];
    for (int r = 0; r < N; r++) v[r] = rows + (size_t)r * w;
    gk_dist_tree_sum(v, N, w);
}

/* Every rank's whole contribution to every rank; each sums them as the tree. */
static int allreduce_gather(gk_dist *d, float *buf, size_t n, gk_dist_wire wire, void *scratch,
                            gk_err *err) {
    const int N = d->size;
    const size_t w = chunk_of(1, n), wb = wire_bytes(wire, w);
    if ((size_t)N * wb > INT32_MAX) return gk_fail(err, "all-reduce of %zu values is too large", n);
    float *rows = scratch;
    uint8_t *mine = (uint8_t *)(rows + (size_t)N * w), *all = mine + wb;
    memcpy(rows, buf, n * sizeof(float));
    memset(rows + n, 0, (w - n) * sizeof(float));
    wire_encode(wire, rows, mine, w);
    long long t0 = now_ns();
    arm(d, "an all-reduce");
    int rc = MPI_Allgather(mine, (int)wb, MPI_BYTE, all, (int)wb, MPI_BYTE, MPI_COMM_WORLD);
    disarm(d, t0, (size_t)(N - 1) * wb, (size_t)(N - 1) * wb, 1,
           2 * (size_t)(N - 1) * n * sizeof(float) / (size_t)N);
    if (rc != MPI_SUCCESS) return gk_fail(err, "MPI_Allgather failed");
    /* every rank's contribution decoded from the same bytes (its own one too) */
    for (int r = 0; r < N; r++) wire_decode(wire, all + (size_t)r * wb, rows + (size_t)r * w, w);
    tree_rows(rows, N, w);
    memcpy(buf, rows, n * sizeof(float));
    return 0;
}

int gk_dist_allreduce(gk_dist *d, float *buf, size_t n, gk_dist_wire wire, void *scratch,
                      gk_err *err) {
    if (!d || d->size == 1) return 0;
    if (d->size > 256) return gk_fail(err, "all-reduce over more than 256 ranks");
    if (gather_all(d->size, n, wire)) return allreduce_gather(d, buf, n, wire, scratch, err);
    const int N = d->size;
    const size_t c = chunk_of(N, n), cb = wire_bytes(wire, c);
    if (cb > INT32_MAX) return gk_fail(err, "all-reduce of %zu values is too large", n);
    float *pad = scratch, *row = pad + (size_t)N * c;
    uint8_t *sendw = (uint8_t *)(row + c), *recvw = sendw + (size_t)N * cb;
    memcpy(pad, buf, n * sizeof(float));
    memset(pad + n, 0, ((size_t)N * c - n) * sizeof(float));
    for (int r = 0; r < N; r++) wire_encode(wire, pad + (size_t)r * c, sendw + (size_t)r * cb, c);
    long long t0 = now_ns();
    arm(d, "an all-reduce");
    int rc = MPI_Alltoall(sendw, (int)cb, MPI_BYTE, recvw, (int)cb, MPI_BYTE, MPI_COMM_WORLD);
    disarm(d, t0, (size_t)(N - 1) * cb, (size_t)(N - 1) * cb, 1,
           (size_t)(N - 1) * c * sizeof(float));
    if (rc != MPI_SUCCESS) return gk_fail(err, "MPI_Alltoall failed");
    /* this rank's chunk from every rank (pad is free again), summed as the tree */
    for (int r = 0; r < N; r++) wire_decode(wire, recvw + (size_t)r * cb, pad + (size_t)r * c, c);
    tree_rows(pad, N, c);
    wire_encode(wire, pad, sendw, c);
    t0 = now_ns();
    arm(d, "an all-reduce");
    rc = MPI_Allgather(sendw, (int)cb, MPI_BYTE, recvw, (int)cb, MPI_BYTE, MPI_COMM_WORLD);
    disarm(d, t0, (size_t)(N - 1) * cb, (size_t)(N - 1) * cb, 1,
           (size_t)(N - 1) * c * sizeof(float));
    if (rc != MPI_SUCCESS) return gk_fail(err, "MPI_Allgather failed");
    /* every rank decodes the same bytes, its own chunk included */
    for (int r = 0; r < N; r++) {
        size_t lo = (size_t)r * c;
        if (lo >= n) break;
        size_t k = n - lo < c ? n - lo : c;
        if (k == c) {
            wire_decode(wire, recvw + (size_t)r * cb, buf + lo, c);
        } else {
            wire_decode(wire, recvw + (size_t)r * cb, row, c);
            memcpy(buf + lo, row, k * sizeof(float));
        }
    }
    return 0;
}

int gk_dist_bcast(gk_dist *d, void *buf, size_t bytes, gk_err *err) {
    if (!d || d->size == 1) return 0;
    if (bytes > INT32_MAX) return gk_fail(err, "broadcast of %zu bytes is too large", bytes);
    long long t0 = now_ns();
    arm(d, "a broadcast from rank 0");
    int rc = MPI_Bcast(buf, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD);
    size_t sent = d->rank == 0 ? (size_t)(d->size - 1) * bytes : 0;
    disarm(d, t0, sent, (size_t)(d->size - 1) * bytes, 1, sent);
    return rc == MPI_SUCCESS ? 0 : gk_fail(err, "MPI_Bcast failed");
}

int gk_dist_bcast_cmd(gk_dist *d, void *buf, size_t bytes, gk_err *err) {
    if (!d || d->size == 1) return 0;
    if (bytes > INT32_MAX) return gk_fail(err, "broadcast of %zu bytes is too large", bytes);
    /* non-blocking on every rank: MPI matches a non-blocking collective only
     * with non-blocking ones */
    MPI_Request rq;
    int rc = MPI_Ibcast(buf, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD, &rq);
    if (rc != MPI_SUCCESS) return gk_fail(err, "MPI_Ibcast failed");
    size_t sent = d->rank == 0 ? (size_t)(d->size - 1) * bytes : 0;
    if (d->rank == 0) {
        long long t0 = now_ns();
        arm(d, "a command to the other ranks");
        rc = MPI_Wait(&rq, MPI_STATUS_IGNORE);
        disarm(d, t0, sent, sent, 1, sent);
    } else if (wait_asleep(&rq) < 0) {
        rc = MPI_ERR_OTHER;
    }
    return rc == MPI_SUCCESS ? 0 : gk_fail(err, "MPI_Ibcast failed");
}

int gk_dist_allgather(gk_dist *d, const void *send, size_t bytes, void *recv, gk_err *err) {
    if (!d || d->size == 1) {
        memcpy(recv, send, bytes);
        return 0;
    }
    if (bytes > INT32_MAX) return gk_fail(err, "all-gather of %zu bytes is too large", bytes);
    long long t0 = now_ns();
    arm(d, "an all-gather");
    int rc = MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
    size_t sent = (size_t)(d->size - 1) * bytes;
    disarm(d, t0, sent, sent, 1, sent);
    return rc == MPI_SUCCESS ? 0 : gk_fail(err, "MPI_Allgather failed");
}

int gk_dist_gatherv(gk_dist *d, const void *send, size_t n_send, void *recv, const size_t *bytes,
                    const size_t *offs, gk_err *err) {
    if (!d || d->size == 1) {
        memcpy(recv, send, n_send);
        return 0;
    }
    int counts[256], displs[256];
    if (d->size > 256) return gk_fail(err, "gather over more than 256 ranks");
    size_t total = 0;
    if (d->rank == 0)
        for (int r = 0; r < d->size; r++) {
            if (bytes[r] > INT32_MAX || offs[r] > INT32_MAX)
                return gk_fail(err, "gather of %zu bytes is too large", bytes[r]);
            counts[r] = (int)bytes[r];
            displs[r] = (int)offs[r];
            total += bytes[r];
        }
    if (n_send > INT32_MAX) return gk_fail(err, "gather of %zu bytes is too large", n_send);
    long long t0 = now_ns();
    arm(d, "a gather of logits to rank 0");
    int rc =
        MPI_Gatherv(send, (int)n_send, MPI_BYTE, recv, counts, displs, MPI_BYTE, 0, MPI_COMM_WORLD);
    /* the busiest link is rank 0's, which carries every other rank's slice */
    size_t link = d->rank == 0 ? total - n_send : (size_t)(d->size - 1) * n_send;
    disarm(d, t0, d->rank == 0 ? 0 : n_send, link, 1, d->rank == 0 ? 0 : n_send);
    return rc == MPI_SUCCESS ? 0 : gk_fail(err, "MPI_Gatherv failed");
}

#else /* one process */

bool gk_dist_have_mpi(void) {
    return false;
}
int gk_dist_init(gk_dist *d, int *argc, char ***argv, gk_err *err) {
    (void)argc, (void)argv, (void)err;
    memset(d, 0, sizeof *d);
    d->size = 1;
    return 0;
}
void gk_dist_finalize(gk_dist *d) {
    (void)d;
}
gk_dist *gk_dist_new(int *argc, char ***argv, gk_err *err) {
    gk_dist *d = gk_calloc(1, sizeof *d, err);
    if (d) gk_dist_init(d, argc, argv, err), d->owned = true;
    return d;
}
void gk_dist_free(gk_dist *d) {
    free(d);
}
void gk_dist_abort(gk_dist *d, int code) {
    (void)d, (void)code;
}
int gk_dist_sum_f32(gk_dist *d, float *buf, size_t n, gk_err *err) {
    (void)d, (void)buf, (void)n, (void)err;
    return 0;
}
int gk_dist_sum_f64(gk_dist *d, double *buf, size_t n, gk_err *err) {
    (void)d, (void)buf, (void)n, (void)err;
    return 0;
}
int gk_dist_bcast_i32(gk_dist *d, int32_t *v, gk_err *err) {
    (void)d, (void)v, (void)err;
    return 0;
}
void gk_dist_barrier(gk_dist *d) {
    (void)d;
}
void gk_dist_barrier_idle(gk_dist *d) {
    (void)d;
}
int gk_dist_allreduce(gk_dist *d, float *buf, size_t n, gk_dist_wire wire, void *scratch,
                      gk_err *err) {
    (void)d, (void)buf, (void)n, (void)wire, (void)scratch, (void)err;
    return 0;
}
int gk_dist_bcast(gk_dist *d, void *buf, size_t bytes, gk_err *err) {
    (void)d, (void)buf, (void)bytes, (void)err;
    return 0;
}
int gk_dist_bcast_cmd(gk_dist *d, void *buf, size_t bytes, gk_err *err) {
    (void)d, (void)buf, (void)bytes, (void)err;
    return 0;
}
int gk_dist_allgather(gk_dist *d, const void *send, size_t bytes, void *recv, gk_err *err) {
    (void)d, (void)err;
    memcpy(recv, send, bytes);
    return 0;
}
int gk_dist_gatherv(gk_dist *d, const void *send, size_t n_send, void *recv, const size_t *bytes,
                    const size_t *offs, gk_err *err) {
    (void)d, (void)bytes, (void)offs, (void)err;
    memcpy(recv, send, n_send);
    return 0;
}
#endif

/* ------------------------------------------------------------- agreement --- */

typedef struct {
    int32_t ok;
    char version[28];
    uint64_t ident[4];
    char msg[400];
} agree_rec;

int gk_dist_agree(gk_dist *d, bool ok, const char *msg, const uint64_t ident[4], const char *what,
                  gk_err *err) {
    if (!d || d->size == 1) return ok ? 0 : gk_fail(err, "%s", msg ? msg : "failed");
    agree_rec me;
    memset(&me, 0, sizeof me);
    me.ok = ok;
    /* GK_DIST_TEST_VERSION (tests only) replaces the version this rank announces,
     * so that the refusal of mixed versions can be tested with one build */
    const char *ver = getenv("GK_DIST_TEST_VERSION");
    snprintf(me.version, sizeof me.version, "%s", ver && *ver ? ver : GK_VERSION);
    if (ident) memcpy(me.ident, ident, sizeof me.ident);
    snprintf(me.msg, sizeof me.msg, "%s", msg ? msg : "");
    agree_rec *all = gk_malloc((size_t)d->size * sizeof *all, err);
    if (!all) return -1;
    gk_err e2;
    if (gk_dist_allgather(d, &me, sizeof me, all, &e2) < 0) {
        free(all);
        return gk_fail(err, "%s: %s", what, e2.msg);
    }
    int rc = 0;
    for (int r = 0; r < d->size && rc == 0; r++) {
        if (!all[r].ok)
            rc = gk_fail(err, "%s failed on rank %d of %d: %s", what, r, d->size, all[r].msg);
    }
    for (int r = 1; r < d->size && rc == 0; r++) {
        if (strcmp(all[r].version, all[0].version) != 0)
            rc = gk_fail(err,
                         "%s: rank %d runs grok %s but rank 0 runs grok %s; every rank "
                         "must run the same version",
                         what, r, all[r].version, all[0].version);
        else if (memcmp(all[r].ident, all[0].ident, sizeof me.ident) != 0) {
            int k = 0;
            while (all[r].ident[k] == all[0].ident[k]) k++;
            rc = gk_fail(err,
                         "%s: rank %d has a different model file or parameters than rank "
                         "0 (identity word %d: %016llx vs %016llx); every rank must load "
                         "the same model with the same options",
                         what, r, k, (unsigned long long)all[r].ident[k],
                         (unsigned long long)all[0].ident[k]);
        }
    }
    free(all);
    return rc;
}
