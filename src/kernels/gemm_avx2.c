/*
 * gemm_avx2.c - the GEMM tiles for AVX2/FMA/F16C (16 vector registers):
 * 4 rows x 3 tokens for float weights, 4 x 2 for q8_0/q4_0. Called only after
 * gemm.c checked the CPU. The code is gemm_impl.h.
 */
#define GEMM_NINST 4
#define GEMM_FR 4
#define GEMM_FN 3
#define GEMM_QR 4
#define GEMM_QN 2
#define GEMM_TABLE_FN gk_gemm_kernels_avx2
#include "kernels/gemm_impl.h"
