/*
 * tgemm_avx2.c - the backward GEMM compiled for AVX2/FMA (called only after a
 * run-time CPU check in tgemm.c).
 */
#include "train/tgemm.h"

#define TGEMM_FN gk_tgemm_tiles_avx2
void gk_tgemm_tiles_avx2(const gk_tgemm_job *j, int64_t item_lo, int64_t item_hi);
#include "train/tgemm_impl.h"
