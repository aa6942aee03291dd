/*
 * ops.h - the numerical building blocks shared by inference (src/model) and
 * training (src/train): the threaded matmul over any weight type, RMSNorm,
 * GELU in both forms, GeGLU products, softcap and NeoX RoPE (plain or ggml's
 * YaRN). One implementation of each, so the two paths cannot drift apart.
 */
#ifndef GK_OPS_H
#define GK_OPS_H

#include "base/base.h"
#include "tensor/dtype.h"

#include <math.h>

/* y[t][o] = sum_i W[o][i] * x[t][i] for t < T. W holds n_out rows of n_in
 * elements of type, nb_row bytes apart. When the type's activations are not f32,
 * x is first converted into qbuf (gk_matmul_qbuf_size bytes). Runs the GEMM of
 * kernels/gemm.h where the type has one, else the type's vec_dot per row. Each
 * y[t][o] is bit-identical whatever T, t's place in the batch and the thread
 * count (batch invariance). */
void gk_matmul(gk_pool *pool, float *y, const void *w, gk_dtype type, size_t nb_row, int64_t n_out,
               const float *x, int64_t n_in, int T, void *qbuf);
/* Two products of the same input with one conversion of x and one pass of the
 * threads: y1 = x W1^T and y2 = x W2^T, both n_out x n_in (an MLP's gate and up
 * matrices). Each output equals what gk_matmul gives. */
void gk_matmul2(gk_pool *pool, float *y1, const void *w1, gk_dtype type1, size_t nb_row1, float *y2,
                const void *w2, gk_dtype type2, size_t nb_row2, int64_t n_out, const float *x,
                int64_t n_in, int T, void *qbuf);
/* Decode's products over k column chunks of one matrix (the summation tree's,
 * model/forward.c): y[ch] = x[ch cw .. (ch + 1) cw) W[:, ch cw .. (ch + 1) cw)^T
 * for ch < k, cw = n_in / k, one token. Each y[ch] is bit-identical to what
 * gk_matmul gives for the chunk alone (so to the chunk's row in any batch); the
 * threads split the rows and read each row from start to end, all its chunks,
 * rather than a chunk each (rows read in pieces, with gaps), in one pass of the
 * pool. qbuf (aligned to 64 bytes) takes the k chunks' packed activations. Returns false, having
 * done nothing, when the type has no such kernels or qbuf_size is too small. */
bool gk_matmul_chunks(gk_pool *pool, float *const *y, const void *w, gk_dtype type, size_t nb_row,
                      int64_t n_out, const float *x, int64_t n_in, int k, void *qbuf,
                      size_t qbuf_size);
/* gk_matmul_chunks for up to GK_MATMUL_MAX products of one weight type, each with
 * its own input (n_in inputs, all split in the same k chunks) and k outputs, in one
 * pass of the pool; qbuf holds all their chunks' packed activations. */
typedef struct gk_chunks_out {
    float *const *y; /* [k] */
    const void *w;
    size_t nb_row;
    int64_t n_out;
    const float *x;
    int64_t n_in;
} gk_chunks_out;
bool gk_matmul_chunks_many(gk_pool *pool, const gk_chunks_out *outs, int n, gk_dtype type, int k,
                           void *qbuf, size_t qbuf_size);
/* Bytes of qbuf that gk_matmul needs for T rows of n_in inputs (any supported type). */
size_t gk_matmul_qbuf_size(int64_t n_in, int T);

/* out = x / sqrt(mean(x^2) + eps) * w   (no 1+w offset: spec section 2); out may be x.
 * Each out[i] is (x[i] * r) * w[i] in float with r = gk_rms_scale(x, n, eps); returns r
 * (training keeps it for the backward). */
float gk_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);
/* r = 1 / sqrt(mean(x^2) + eps), rounded once to float: the squares (exact in double)
 * summed in double into 8 partial sums (x[i] into sum i % 8), then those pairwise
 * (s0+s4, s1+s5, ... then the halves again). A fixed order, so a row always gets the
 * same r; 8 chains rather than one, since a decode step's norms ran at the latency of
 * one double add per value (1 us per 1024). */
float gk_rms_scale(const float *x, int64_t n, float eps);

static inline float gk_gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}
static inline float gk_gelu_erf(float x) {
    return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
}
/* cap * tanh(x / cap); cap <= 0 means none. */
static inline float gk_softcap(float x, float cap) {
    return cap > 0.0f ? cap * tanhf(x / cap) : x;
}

/* Attention's scores of nq query heads against the same keys: s[i ss + k] =
 * q_i . K_k for i < nq, k < nk, with q_i the hd floats at q + i hd (f16 values for
 * an f16 cache) and K_k the f32 or f16 row at K + k row; each sum in the fixed
 * order of attn.c (the same bits on every instruction set, whatever nq and nk). */
void gk_attn_dots(float *s, size_t ss, const void *K, size_t row, gk_dtype type, const float *q,
                  int nq, int64_t nk, int hd);
void gk_attn_dots_ref(float *s, size_t ss, const void *K, size_t row, gk_dtype type, const float *q,
                      int nq, int64_t nk, int hd);
/* Softmax of n scores in place (spec 3.2): v = cap tanh(s scale / cap) temp (no
 * cap for cap <= 0; vmath.h's tanh), s = exp(v - max v) / sum (vmath.h's exp, the
 * sum in double), rounded to f16 values when f16w (an f16 V cache's weights);
 * the max and the sum in the fixed order of attn.c. */
void gk_attn_softmax(float *s, int64_t n, float scale, float cap, float temp, bool f16w);
void gk_attn_softmax_ref(float *s, int64_t n, float scale, float cap, float temp, bool f16w);

/* Attention's weighted sums of value rows for nq query heads: out[i hd + j] =
 * sum_k w[i ws + k] V_k[j] for i < nq, j < hd, with V_k the f32 or f16 row at
 * V + k row, by fmaf over the keys in order from 0 (every version gives the
 * reference's bits, whatever nq). */
void gk_attn_wsum(float *out, const void *V, size_t row, gk_dtype type, const float *w, size_t ws,
                  int nq, int64_t nk, int hd);
void gk_attn_wsum_ref(float *out, const void *V, size_t row, gk_dtype type, const float *w,
                      size_t ws, int nq, int64_t nk, int hd);
/* Query heads per call that the context's scratch holds (forward.c). */
#define GK_ATTN_QMAX 4

/* The vector math of kernels/vmath.h (exp, tanh, erf and GELU with them, within
 * the bounds stated there): y[i] = fn(x[i]), with AVX2 where the CPU has it, the
 * same bits either way. y may be x. */
typedef enum gk_vm_fn {
    GK_VM_EXP,
    GK_VM_TANH,
    GK_VM_ERF,
    GK_VM_GELU_ERF,
    GK_VM_GELU_TANH
} gk_vm_fn;
void gk_vmath(gk_vm_fn fn, float *y, const float *x, int64_t n);
/* fn of one value, the scalar function itself. */
float gk_vmath1(gk_vm_fn fn, float x);

/* x[i] = cap * tanh(x[i] * scale / cap) with vmath.h's tanh (cap > 0), or
 * x[i] * scale (cap <= 0): the final logits' softcap. */
void gk_softcap_array(float *x, int64_t n, float scale, float cap);

/* The GELU forms of the numerics modes (spec 4.2 "GELU variant"). gk_geglu
 * computes the first two with vmath.h's tanh and erf (gk_vgelu_tanh,
 * gk_vgelu_erf), not libm's (gk_gelu_tanh, gk_gelu_erf above). */
typedef enum gk_gelu {
    GK_GELU_TANH,     /* tanh approximation (xAI's JAX code) */
    GK_GELU_ERF,      /* exact erf (SGLang's Grok-2) */
    GK_GELU_TANH_F16, /* llama.cpp's CPU kernel (GGML_GELU_FP16): a table of the tanh form
                         over fp16 inputs, read at the fp16 rounding of x, holding fp16
                         values; x <= -10 gives 0 and x >= 10 gives x */
} gk_gelu;

/* GK_GELU_TANH_F16 of one value. */
float gk_gelu_tanh_f16(float x);

/* a[i] = GELU(a[i]) * b[i] for i < n, split over the pool. */
void gk_geglu(gk_pool *pool, float *a, const float *b, int64_t n, gk_gelu kind);
/* The same on the calling thread: element i's value does not depend on n or on
 * where the range starts (gk_geglu's split is made of such calls). */
void gk_geglu_rows(float *a, const float *b, int64_t n, gk_gelu kind);

/* Up to GK_MATMUL_MAX products of one input, of one weight type, in one pass of
 * the threads with one conversion of x: y_i = x W_i^T (n_out_i rows of n_in). With
 * geglu >= 0 (a gk_gelu) outputs 2i and 2i + 1 are an MLP's gate and up (as many
 * rows): y_2i = GELU(y_2i) * y_2i+1 after, in the same pass. Each y_i is what
 * gk_matmul (and gk_geglu) give. Returns false, having done nothing, when the type
 * has no GEMM kernels or the outputs do not fit those rules. */
#define GK_MATMUL_MAX 8
typedef struct gk_matmul_out {
    float *y;
    const void *w;
    size_t nb_row;
    int64_t n_out;
} gk_matmul_out;
bool gk_matmul_many(gk_pool *pool, const gk_matmul_out *outs, int n, gk_dtype type,
                    const float *x, int64_t n_in, int T, void *qbuf, int geglu);

/* gk_matmul2 followed by gk_geglu(y1, y2, T n_out): y1 = GELU(x W1^T) * (x W2^T),
 * y2 = x W2^T (an MLP's gated hidden layer), the same bits; with GEMM kernels for
 * the type, in one pass of the threads, each applying GeGLU to the rows it has
 * just computed of both (decode then runs no separate GeGLU job). */
void gk_matmul2_geglu(gk_pool *pool, float *y1, const void *w1, gk_dtype type1, size_t nb_row1,
                      float *y2, const void *w2, gk_dtype type2, size_t nb_row2, int64_t n_out,
                      const float *x, int64_t n_in, int T, void *qbuf, gk_gelu kind);

/* RoPE as a model's numerics use it (spec 3.3). */
typedef struct gk_rope_cfg {
    int n_rot; /* rotated dims per head (even) */
    double freq_base;
    float freq_scale; /* 1 = none; 1/factor for linear or YaRN scaling */
    bool yarn;        /* ggml's rope_yarn: ramp between interpolation and extrapolation */
    float ext_factor, mscale, corr_lo, corr_hi;
} gk_rope_cfg;

/* cos/sin tables [T][n_rot/2] for positions pos0 .. pos0+T-1. */
void gk_rope_tables(const gk_rope_cfg *rc, uint32_t pos0, int T, float *cos_t, float *sin_t);
/* Rotates v [T][n_heads][head_dim] in place, NeoX style: pairs (i, i + n_rot/2). */
void gk_rope_apply(float *v, int T, int n_heads, int head_dim, int n_rot, const float *cos_t,
                   const float *sin_t);

#endif
