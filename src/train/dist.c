/*
 * dist.c - see dist.h.
 */
#include "train/dist.h"

#include <stdlib.h>

#ifdef GK_HAVE_MPI
#include <mpi.h>

bool gk_dist_have_mpi(void) {
    return true;
}

/* mpirun sets these; a plain start stays a single process without MPI_Init
 * (which would try to reach a launcher). */
static bool launched_by_mpirun(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

int gk_dist_init(gk_dist *d, int *argc, char ***argv, gk_err *err) {
    *d = (gk_dist){.rank = 0, .size = 1};
    if (!launched_by_mpirun()) return 0;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return gk_fail(err, "MPI_Init failed");
    d->mpi = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    return 0;
}

void gk_dist_finalize(gk_dist *d) {
    if (d->mpi) MPI_Finalize();
    d->mpi = false;
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

#else /* one process */

bool gk_dist_have_mpi(void) {
    return false;
}
int gk_dist_init(gk_dist *d, int *argc, char ***argv, gk_err *err) {
    (void)argc, (void)argv, (void)err;
    *d = (gk_dist){.rank = 0, .size = 1};
    return 0;
}
void gk_dist_finalize(gk_dist *d) {
    (void)d;
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
#endif
