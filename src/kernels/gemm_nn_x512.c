/*
 * gemm_nn_x512.c - gk_sgemm's outer-product tiles (gemm_nn_impl.h) with
 * 16-float vectors, compiled for AVX-512F through a function target attribute
 * (so it needs no special build flags); called only after gemm.c checked the CPU.
 */
#include "kernels/gemm.h"

#if defined(__x86_64__)
#define NN_VW 16
#define NN_ATTR __attribute__((target("avx512f,fma")))
#define NN_FN gk_gemm_nn_avx512
#include "kernels/gemm_nn_impl.h"
#endif
