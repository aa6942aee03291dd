/*
 * gemm_nn_avx2.c - gk_sgemm's outer-product tiles (gemm_nn_impl.h) compiled for
 * AVX2/FMA; called only after gemm.c checked the CPU.
 */
#include "kernels/gemm.h"

#define NN_FN gk_gemm_nn_avx2
#include "kernels/gemm_nn_impl.h"
