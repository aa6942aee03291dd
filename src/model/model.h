/*
 * model.h - the in-memory model: hyper-parameters, the numerics switches they
 * imply, and views of every weight tensor inside the mapped GGUF file.
 */
#ifndef GK_MODEL_H
#define GK_MODEL_H

#include "base/base.h"
#include "format/gguf.h"
#include "kernels/ops.h"
#include "tensor/dtype.h"

/* A weight: a view into the map. Rows are ne[0] elements of type; a stack of
 * matrices (experts) has ne[2] matrices of ne[1] rows, nb_mat bytes apart. */
typedef struct gk_weight {
    const char *name;
    const uint8_t *data;
    gk_dtype type;
    int64_t ne[3];
    size_t nb_row; /* bytes per row */
    size_t nb_mat; /* bytes per matrix (ne[1] rows) */
} gk_weight;

typedef struct gk_layer {
    float *attn_norm, *attn_out_norm, *ffn_norm, *post_ffn_norm; /* [n_embd], fp32 copies */
    gk_weight wq, wk, wv, wo;                                     /* attention */
    gk_weight router;                                             /* [n_expert, n_embd] */
    gk_weight gate_exps, up_exps, down_exps;                      /* expert stacks */
    gk_weight ffn_gate, ffn_up, ffn_down;                         /* Grok-2 dense MLP */
} gk_layer;

/* What the numerics mode and the variant decide (spec "Decisions" 1). */
typedef struct gk_numerics_cfg {
    bool renorm_topk;       /* llamacpp: top-k gates renormalised to sum 1 */
    float router_softcap;   /* 0 = none */
    uint32_t attn_temp_len; /* 0 = no xAI attention temperature */
    bool gelu_erf;          /* exact erf GELU (reference Grok-2); else tanh approximation */
    gk_rope_cfg rope;       /* plain, or YaRN as ggml computes it (llamacpp mode, yarn keys) */
} gk_numerics_cfg;

#define GK_MAX_HPARAM_INFO 48
/* Most experts per token (grok.expert_used_count; Grok uses 2): the router
 * keeps its choices on the stack. */
#define GK_MAX_EXPERT_USED 64

struct gk_model {
    gk_gguf *gguf;
    gk_hparams hp;
    gk_numerics numerics;
    gk_numerics_cfg cfg;
    gk_weight tok_embd, output; /* output == tok_embd when tied */
    float *output_norm;
    gk_layer *layers;
    float *norm_store; /* one allocation for every fp32 norm copy */
    gk_tokenizer *tok;
    uint64_t n_params;
    gk_hparam_info info[GK_MAX_HPARAM_INFO];
    int n_info;
};

#endif
