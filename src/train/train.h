/*
 * train.h - training Grok-architecture models: fp32 parameters in one
 * allocation with named views, the forward pass that keeps its activations,
 * the backward pass of every part of both variants, AdamW, checkpoints, and
 * token shards.
 *
 * The math is the inference forward's (src/model/forward.c, spec sections 2-4)
 * in the numerics of the model (gk_numerics_cfg: router softcap, attention
 * temperature, erf or tanh GELU, top-k renormalisation, RoPE tables), through
 * the same kernels (gk_matmul, gk_rmsnorm, gk_geglu, gk_softcap, gk_rope_*).
 * Top-k routing is piecewise: the gradient flows through the chosen experts'
 * softmax probabilities (and the router softcap), not through the selection.
 *
 * Loss = mean cross-entropy over the tokens of the global batch, plus
 * aux_weight times the Switch Transformer load-balancing loss of every layer,
 * E * sum_e f_e * P_e (f_e: share of the top-k assignments that went to
 * expert e, P_e: mean router probability of e; f is a constant), averaged
 * over micro-batches.
 */
#ifndef GK_TRAIN_H
#define GK_TRAIN_H

#include "base/base.h"
#include "format/gguf.h"
#include "model/model.h"

/* Views of one layer's tensors inside a flat fp32 buffer (torch layout:
 * matrices are [out][in], expert stacks [E][out][in]). */
typedef struct gk_tlayer {
    float *attn_norm, *wq, *wk, *wv, *wo, *attn_out_norm;
    float *ffn_norm, *router, *gate_exps, *up_exps, *down_exps, *post_ffn_norm;
    float *ffn_gate, *ffn_up, *ffn_down; /* Grok-2 dense MLP, else NULL */
} gk_tlayer;

typedef struct gk_tview {
    float *tok_embd, *output, *output_norm; /* output == tok_embd when tied */
    gk_tlayer *layers;
} gk_tview;

/* One tensor of the model: its GGUF name and ggml shape, and where it lives. */
typedef struct gk_ttensor {
    char name[64];
    uint32_t n_dims;
    int64_t ne[3]; /* ggml order: ne[0] = row length */
    size_t offset; /* in floats, into the flat buffer */
    size_t n;
    bool decay; /* weight decay applies (matrices) */
} gk_ttensor;

typedef struct gk_tmodel {
    gk_hparams hp;
    gk_numerics numerics;
    gk_numerics_cfg cfg;
    int n_tensors;
    gk_ttensor *tensors;
    size_t n_params;
    float *w, *g; /* parameters and gradients, n_params floats each */
    gk_tview W, G;
    gk_tlayer *layer_store; /* 2 * n_layer views */
} gk_tmodel;

/* A new model with the given hyper-parameters (variant, sizes, scales, caps;
 * tied_output decides whether output.weight exists), all parameters zero.
 * numerics sets the switches as gk_model_load does. */
gk_tmodel *gk_tmodel_new(const gk_hparams *hp, gk_numerics numerics, gk_err *err);
/* Loads every weight of a GGUF model as fp32 (any stored type). */
gk_tmodel *gk_tmodel_from_model(const gk_model *m, gk_err *err);
void gk_tmodel_free(gk_tmodel *tm);
/* Random initialisation: matrices N(0, std) (output projections scaled by
 * 1/sqrt(2 n_layer)), norms 1. Deterministic for a seed. */
void gk_tmodel_init(gk_tmodel *tm, uint64_t seed, float std);
/* A model's numerics switches for a variant (the rules of gk_model_load). */
gk_numerics_cfg gk_tmodel_numerics_cfg(const gk_hparams *hp, gk_numerics numerics);

/* Extra metadata for a saved model (train.* keys). */
typedef struct gk_tsave_opts {
    gk_dtype type;           /* storage type of matrices: F32 (checkpoints), BF16, F16, Q8_0 */
    const gk_gguf *src;      /* copy its keys first (fine-tuning), or NULL */
    const gk_tokenizer *tok; /* embed this tokenizer (its keys replace src's), or NULL */
    const char *name;        /* general.name, or NULL */
    uint64_t step;           /* written as train.step */
} gk_tsave_opts;

/* Writes the parameters as a GGUF that gk_model_load reads (atomic: temp file
 * + rename). Matrices whose row length is not a whole number of blocks of the
 * type stay f32; norms and the router are always f32. */
int gk_tmodel_save(const gk_tmodel *tm, const char *path, const gk_tsave_opts *o, gk_err *err);

/* ------------------------------------------------------- forward/backward --- */

typedef struct gk_tstate gk_tstate;

/* Buffers for micro-batches of B sequences of T tokens (no allocation later). */
gk_tstate *gk_tstate_new(const gk_tmodel *tm, int B, int T, gk_pool *pool, gk_err *err);
void gk_tstate_free(gk_tstate *s);

/* Statistics of one forward pass. */
typedef struct gk_tloss {
    double ce_sum; /* sum of the per-token cross-entropies (nats) */
    double aux;    /* sum over layers of the load-balancing loss (unweighted) */
    int64_t n_tokens;
} gk_tloss;

/* Forward over B x T tokens: inputs[b*T + t], targets[b*T + t] (each in
 * [0, n_vocab)). Keeps the activations for gk_tbackward. */
int gk_tforward(gk_tstate *s, const int32_t *inputs, const int32_t *targets, gk_tloss *out,
                gk_err *err);
/* Adds to tm->g the gradient of
 *   ce_scale * sum(cross-entropies) + aux_scale * sum over layers of aux
 * for the last forward. For a global batch of N tokens in micro-batches:
 * ce_scale = 1/N, aux_scale = aux_weight * (tokens of this micro-batch)/N. */
void gk_tbackward(gk_tstate *s, float ce_scale, float aux_scale);

/* Wall seconds of the passes since the state was made, by part (the calling
 * thread's clock around each call), for grok train's time by part and grok plan's
 * check of its training model: the forwards and backwards in all; of them the
 * products (gk_matmul, gk_matmul2, and gk_sgemm's dX and dW with dY's transpose),
 * the attention jobs, and the other jobs on the pool (GeGLU forward, recomputed and
 * backward; cross-entropy forward and backward); the rest is the calling thread's
 * own work (norms, RoPE, residuals, routing, gathers and scatters, zeroing). */
typedef struct gk_tstats {
    double forward_s, backward_s, gemm_s, attn_s, pool_ew_s;
} gk_tstats;
gk_tstats gk_tstate_stats(const gk_tstate *s);
/* The parts of the passes since `since` (an earlier gk_tstate_stats), each divided by
 * n (the steps between); *own gets the calling thread's own work of them. */
gk_tstats gk_tstats_since(const gk_tstate *s, const gk_tstats *since, double n, double *own);

/* ----------------------------------------------------------------- AdamW --- */

typedef struct gk_adamw_cfg {
    float lr_max, lr_min;
    int64_t warmup, total_steps; /* linear warmup, then cosine decay to lr_min */
    float beta1, beta2, eps, weight_decay;
    float clip; /* global gradient-norm clip (0 = none) */
} gk_adamw_cfg;

/* The learning rate of step (0-based). */
float gk_lr_at(const gk_adamw_cfg *c, int64_t step);
/* The L2 norm of tm->g (double accumulation, fixed order). */
double gk_grad_norm(const gk_tmodel *tm);
/* One AdamW update with moment buffers m, v (n_params floats each); t is the
 * 1-based update count. The gradient is clipped first. Returns the gradient
 * norm before clipping. */
double gk_adamw_step(gk_tmodel *tm, float *m, float *v, int64_t t, const gk_adamw_cfg *c,
                     gk_pool *pool);

#endif
