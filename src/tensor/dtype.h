/*
 * dtype.h - tensor element types and their traits.
 *
 * Type ids are ggml's (the GGUF tensor-info `type` field), so files move between
 * this engine and llama.cpp unchanged. One table describes every type: the name,
 * the block size (elements per block) and the bytes per block are known for all
 * ggml types, so any GGUF file can be parsed and described; the conversion and
 * dot-product functions exist only for the types the engine computes with.
 * Adding a format is one table entry plus its kernels.
 *
 * Block layouts (bit-compatible with ggml):
 *   Q8_0: { fp16 d; int8 qs[32]; }          x[i] = d * qs[i]
 *   Q4_0: { fp16 d; uint8 qs[16]; }         x[i] = d * ((qs[i] & 15) - 8)      i < 16
 *                                           x[i+16] = d * ((qs[i] >> 4) - 8)
 */
#ifndef GK_DTYPE_H
#define GK_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum gk_dtype {
    GK_TYPE_F32 = 0,
    GK_TYPE_F16 = 1,
    GK_TYPE_Q4_0 = 2,
    GK_TYPE_Q4_1 = 3,
    GK_TYPE_Q5_0 = 6,
    GK_TYPE_Q5_1 = 7,
    GK_TYPE_Q8_0 = 8,
    GK_TYPE_Q8_1 = 9,
    GK_TYPE_Q2_K = 10,
    GK_TYPE_Q3_K = 11,
    GK_TYPE_Q4_K = 12,
    GK_TYPE_Q5_K = 13,
    GK_TYPE_Q6_K = 14,
    GK_TYPE_Q8_K = 15,
    GK_TYPE_IQ2_XXS = 16,
    GK_TYPE_IQ2_XS = 17,
    GK_TYPE_IQ3_XXS = 18,
    GK_TYPE_IQ1_S = 19,
    GK_TYPE_IQ4_NL = 20,
    GK_TYPE_IQ3_S = 21,
    GK_TYPE_IQ2_S = 22,
    GK_TYPE_IQ4_XS = 23,
    GK_TYPE_I8 = 24,
    GK_TYPE_I16 = 25,
    GK_TYPE_I32 = 26,
    GK_TYPE_I64 = 27,
    GK_TYPE_F64 = 28,
    GK_TYPE_IQ1_M = 29,
    GK_TYPE_BF16 = 30,
    GK_TYPE_TQ1_0 = 34,
    GK_TYPE_TQ2_0 = 35,
    GK_TYPE_MXFP4 = 39,
    GK_TYPE_COUNT = 40
} gk_dtype;

#define GK_QK8_0 32
#define GK_QK4_0 32

typedef struct {
    uint16_t d; /* fp16 scale */
    int8_t qs[GK_QK8_0];
} gk_block_q8_0;

typedef struct {
    uint16_t d; /* fp16 scale */
    uint8_t qs[GK_QK4_0 / 2];
} gk_block_q4_0;

/* Converts n elements (n a multiple of the block size) to fp32. */
typedef void (*gk_to_float_fn)(const void *src, float *dst, int64_t n);
/* Converts n fp32 elements (n a multiple of the block size) to this type. */
typedef void (*gk_from_float_fn)(const float *src, void *dst, int64_t n);
/* Dot product of n elements: x in this type, y in the type's vec_dot_type. */
typedef float (*gk_vec_dot_fn)(int64_t n, const void *x, const void *y);
/* Four dot products at once: s[r] = dot(x + r * bx, y) for r < 4 (rows bx bytes
 * apart). Loads each activation block once for four weight rows. */
typedef void (*gk_vec_dot4_fn)(int64_t n, const void *x, size_t bx, const void *y, float *s);

typedef struct gk_type_traits {
    const char *name;  /* "f32", "q8_0", ...; NULL for ids that ggml never used */
    int64_t blck_size; /* elements per block */
    size_t type_size;  /* bytes per block */
    gk_to_float_fn to_float;
    gk_from_float_fn from_float; /* quantizer; SIMD versions are bit-identical to the scalar */
    gk_vec_dot_fn vec_dot;       /* fastest available kernel, chosen at start */
    gk_vec_dot4_fn vec_dot4;     /* optional 4-row kernel (NULL: use vec_dot) */
    gk_dtype vec_dot_type;       /* what the activation row is converted to */
} gk_type_traits;

/* Traits of a type id, or NULL if the id is not a known ggml type. */
const gk_type_traits *gk_type_traits_of(uint32_t type);
/* True when the engine can compute with the type (to_float and vec_dot exist). */
bool gk_type_is_supported(uint32_t type);
/* Name of a type id ("?" when unknown). */
const char *gk_type_name(uint32_t type);
/* Looks a type up by name ("q8_0", case-insensitive); returns -1 if unknown. */
int gk_type_from_name(const char *name);
/* Bytes of a row of n elements; 0 if n is not a multiple of the block size or overflows. */
size_t gk_row_size(uint32_t type, int64_t n);

/* Scalar reference kernels, always available (the oracle for the SIMD ones). */
float gk_vec_dot_f32_ref(int64_t n, const void *x, const void *y);
float gk_vec_dot_f16_ref(int64_t n, const void *x, const void *y);
float gk_vec_dot_bf16_ref(int64_t n, const void *x, const void *y);
float gk_vec_dot_q8_0_q8_0_ref(int64_t n, const void *x, const void *y);
float gk_vec_dot_q4_0_q8_0_ref(int64_t n, const void *x, const void *y);
void gk_quantize_q8_0_ref(const float *src, void *dst, int64_t n);

#if defined(__x86_64__) || defined(_M_X64)
/* What the CPU and the OS support (cpuid and XCR0), for every kernel dispatch:
 * AVX2 + FMA + F16C with YMM state saved; AVX-512 F, BW, VL and VNNI with opmask
 * and ZMM state saved (implies the former). */
bool gk_cpu_has_avx2_fma_f16c(void);
bool gk_cpu_has_avx512_vnni(void);
#endif

/* Picks the SIMD kernels the CPU supports; called once (thread-safe, idempotent). */
void gk_dtype_init(void);
/* Name of the kernel set in use: "avx2+avx512", "avx2", "neon" or "scalar". */
const char *gk_dtype_kernels(void);

#endif
