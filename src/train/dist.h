/*
 * dist.h - the process group of data-parallel training. Built with MPI (when
 * CMake finds it, GK_HAVE_MPI) and started under mpirun, it spans the MPI
 * world; otherwise it is one process and every collective is a no-op, so the
 * same training loop runs on a laptop and on a cluster.
 */
#ifndef GK_TRAIN_DIST_H
#define GK_TRAIN_DIST_H

#include "base/base.h"

typedef struct gk_dist {
    int rank, size;
    bool mpi; /* MPI was initialised here (and must be finalised) */
} gk_dist;

/* Joins the MPI world when launched by mpirun (and built with MPI). */
int gk_dist_init(gk_dist *d, int *argc, char ***argv, gk_err *err);
void gk_dist_finalize(gk_dist *d);
/* In-place sums over all processes. */
int gk_dist_sum_f32(gk_dist *d, float *buf, size_t n, gk_err *err);
int gk_dist_sum_f64(gk_dist *d, double *buf, size_t n, gk_err *err);
/* Rank 0's value of a flag to everyone (agreement on stopping, on errors). */
int gk_dist_bcast_i32(gk_dist *d, int32_t *v, gk_err *err);
void gk_dist_barrier(gk_dist *d);
/* True when this build has MPI. */
bool gk_dist_have_mpi(void);

#endif
