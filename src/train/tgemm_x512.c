/*
 * tgemm_x512.c - the backward/forward GEMM tile kernel with 16-float vectors,
 * compiled for AVX-512F through a function target attribute (so it needs no
 * special build flags) and called only after a run-time CPU check in tgemm.c.
 */
#include "train/tgemm.h"

#if defined(__x86_64__)
#define TG_VW 16
#define TGEMM_ATTR __attribute__((target("avx512f,fma")))
#define TGEMM_FN gk_tgemm_tiles_avx512
void gk_tgemm_tiles_avx512(const gk_tgemm_job *j, int64_t item_lo, int64_t item_hi);
#include "train/tgemm_impl.h"
#endif
