/*
 * tgemm.h - the fp32 GEMM of the backward pass: dX = dY W and dW += dY^T X.
 * The forward products (Y = X W^T) use gk_matmul from kernels/ops.h, the one
 * inference runs; the backward needs the other two orientations, which a
 * dot-product kernel cannot read contiguously.
 */
#ifndef GK_TGEMM_H
#define GK_TGEMM_H

#include "base/base.h"

typedef struct gk_tgemm_job {
    float *C;
    int64_t ldc;
    const float *A;
    int64_t sam, sak; /* A(m,k) = A[m*sam + k*sak] */
    const float *B;
    int64_t ldb;
    int64_t M, N, K;
    bool acc; /* add to C instead of overwriting it */
} gk_tgemm_job;

/* C[M][N] (+)= A(M,K) B[K][N], split over the pool. */
void gk_tgemm(gk_pool *pool, gk_tgemm_job *j);

/* dX[T][n_in] (+)= dY[T][n_out] W[n_out][n_in]  (the input gradient of Y = X W^T). */
void gk_tgemm_dx(gk_pool *pool, float *dx, const float *dy, const float *w, int64_t T,
                 int64_t n_out, int64_t n_in, bool acc);
/* dW[n_out][n_in] += dY^T X  (the weight gradient of Y = X W^T); scratch holds
 * T * n_out floats (dY transposed). */
void gk_tgemm_dw(gk_pool *pool, float *dw, const float *dy, const float *x, int64_t T,
                 int64_t n_out, int64_t n_in, float *scratch);

/* The scalar reference (the oracle of the fast kernels in the unit tests). */
void gk_tgemm_ref(gk_tgemm_job *j);

#endif
