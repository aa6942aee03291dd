/*
 * gemm_avx512.c - the GEMM tiles with AVX-512VL (32 vector registers, still
 * 8-lane vectors: on CPUs that split 512-bit operations in two they gain
 * nothing) and VNNI's vpdpbusd for the int8 block sums: 4 rows x 6 tokens for
 * float weights, 4 x 4 for q8_0/q4_0. Called only after gemm.c checked the CPU.
 * The code is gemm_impl.h.
 */
#define GEMM_VNNI 1
#define GEMM_NINST 6
#define GEMM_FR 4
#define GEMM_FN 6
#define GEMM_QR 4
#define GEMM_QN 4
#define GEMM_TABLE_FN gk_gemm_kernels_avx512
#include "kernels/gemm_impl.h"
