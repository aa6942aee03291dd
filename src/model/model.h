/*
 * model.h - the in-memory model: hyper-parameters, the numerics switches they
 * imply, and views of every weight tensor inside the mapped GGUF file.
 */
#ifndef GK_MODEL_H
#define GK_MODEL_H

#include "base/base.h"
#include "format/gguf.h"
#include "kernels/gemm.h"
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
    bool packed;   /* every matrix packed for the GEMM (kernels/gemm.h gk_gemm_pack) */
    bool paired;   /* packed with its MLP partner (gate with up) in one allocation, strip
                      by strip: gate strip s, up strip s, gate strip s + 1, ..., and
                      matrix after matrix; so the strips and the matrices of each lie
                      twice as far apart (gk_weight_row_step, gk_weight_mat_step) */
} gk_weight;

/* The type to hand gk_matmul for w: its own, flagged when packed. */
static inline gk_dtype gk_weight_mm_type(const gk_weight *w) {
    return w->packed ? (gk_dtype)(w->type | GK_GEMM_PACKED) : w->type;
}
/* The row bytes to hand the GEMM for w (its strips lie gk_gemm_pack_rows of them
 * apart). */
static inline size_t gk_weight_row_step(const gk_weight *w) {
    return w->paired ? 2 * w->nb_row : w->nb_row;
}
/* Bytes from one of w's matrices (an expert's) to the next. */
static inline size_t gk_weight_mat_step(const gk_weight *w) {
    return w->paired ? 2 * w->nb_mat : w->nb_mat;
}

typedef struct gk_layer {
    float *attn_norm, *attn_out_norm, *ffn_norm, *post_ffn_norm; /* [n_embd], fp32 copies */
    gk_weight wq, wk, wv, wo;                                    /* attention */
    gk_weight router;                                            /* [n_expert, n_embd] */
    gk_weight gate_exps, up_exps, down_exps;                     /* expert stacks */
    gk_weight ffn_gate, ffn_up, ffn_down;                        /* Grok-2 dense MLP */
} gk_layer;

/* What the numerics mode and the variant decide (spec "Decisions" 1). */
typedef struct gk_numerics_cfg {
    bool renorm_topk;       /* llamacpp: top-k gates renormalised to sum 1 */
    float router_softcap;   /* 0 = none */
    uint32_t attn_temp_len; /* 0 = no xAI attention temperature */
    gk_gelu gelu;           /* erf (reference Grok-2), tanh (reference Grok-1), or the tanh
                               form as llama.cpp's CPU kernel computes it (llamacpp) */
    gk_rope_cfg rope;       /* plain, or YaRN as ggml computes it (llamacpp mode, yarn keys) */
} gk_numerics_cfg;

#define GK_MAX_HPARAM_INFO 48
/* Most experts per token (grok.expert_used_count; Grok uses 2): the router
 * keeps its choices on the stack. */
#define GK_MAX_EXPERT_USED 64

/* This process's share of a tensor-parallel model (src/model/tp.c); with one
 * process the whole model: counts equal the hyper-parameters, v_lo = 0. */
typedef struct gk_tp {
    gk_dist *dist; /* NULL: one process */
    int rank, size;
    bool shard_file; /* a per-rank file (grok shard): its tensors are this rank's slices */
    uint32_t n_head, n_head_kv, n_ff_exp, n_ff; /* this rank's heads and hidden widths */
    uint32_t v_lo, v_n;                         /* vocabulary rows [v_lo, v_lo + v_n) */
    /* The sums that are all-reduced (attention's wo, the experts' and the dense
     * MLP's down projections) run as one fixed tree at every process count: over
     * sum_g column chunks (chunk c = the columns rank c owns at N = sum_g: KV-head
     * group c's heads, the c-th slice of a hidden width), a balanced pairwise tree
     * (split at the largest power of two below the count). This rank computes
     * sum_k = sum_g / size of them as its subtree and the all-reduce adds the rank
     * partials as the top of the same tree, so the logits are bit-identical at
     * every size whose sum_g / size is a power of two. When size does not divide
     * sum_g, sum_k = 1: the rank's slice is one chunk (equal up to rounding). */
    uint32_t sum_g, sum_k;
    void *store;        /* this rank's slices of a whole file */
    size_t store_bytes; /* its size (the cost model predicts it) */
    uint64_t ident[4];  /* what every rank must agree on */
} gk_tp;

/* At most this many chunks in the summation tree (gk_tp.sum_g). */
#define GK_TP_MAX_CHUNKS 64

/* Per-rank file keys (grok shard). Distinct from split GGUF's split.* keys. */
#define GK_SHARD_KEY_RANK "grok.shard.rank"
#define GK_SHARD_KEY_COUNT "grok.shard.count"
#define GK_SHARD_KEY_SET "grok.shard.set_checksum"
#define GK_SHARD_KEY_DATA "grok.shard.data_checksum"
#define GK_SHARD_KEY_VOCAB "grok.shard.n_vocab"
#define GK_SHARD_KEY_VLO "grok.shard.vocab_begin"
/* File name of rank r's file in a directory written by grok shard. */
#define GK_SHARD_NAME_FMT "rank-%03d-of-%03d.gguf"

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
    gk_tp tp;
    /* Expert stacks of older Grok-1 files (one 2-D tensor per expert): bound in
     * place, or copied into owned allocations. */
    int n_expert_views, n_expert_copies;
    uint64_t expert_copy_bytes;
    /* Matrices packed for the GEMM (gk_gemm_pack) by the first context, and their
     * bytes; not for a model loaded to write or check per-rank files. n_paired of
     * them packed with their gate/up partner (gk_weight.paired). */
    bool pack_wanted, pack_done;
    int n_packed, n_paired;
    uint64_t packed_bytes;
    void **owned;
    int n_owned;
    void **owned_names;
    int n_owned_names;
};

/* Packs the weights that have a packed layout on this CPU (kernels/gemm.h
 * gk_gemm_pack), once; gk_context_new calls it. Not thread-safe: make a model's
 * first context before sharing it. */
int gk_model_pack(gk_model *m, gk_pool *pool, gk_err *err);

/* A whole file narrowed to rank's slices of a size-way split, without a process
 * group (grok shard writes each rank's file from it). */
gk_model *gk_model_load_rank(const char *path, const gk_model_params *params, int rank, int size,
                             gk_err *err);

/* A per-rank file written by grok shard, opened as rank of size processes but
 * without a process group: the checks that `-m DIR` runs on it (its shard keys,
 * its data checksum, its slices against the hyper-parameters), for the shard
 * fuzzer and tests. Its context cannot run (that needs the group). */
gk_model *gk_model_load_shard(const char *path, const gk_model_params *params, int rank, int size,
                              gk_err *err);
/* forward.c: what a context allocates, for the engine and the cost model (src/plan). */
typedef struct gk_ctx_dims {
    size_t B, d, nq, nkv, F, Fd, E, half; /* batch; this rank's widths; n_rot / 2 */
    size_t nt, n_ctx, head_dim, n_head;   /* threads; per-sequence context; this rank's heads */
    size_t n_logit_rows, V, n_seq;        /* V: the vocabulary on rank 0, 0 on the others */
    size_t qconv_head;                    /* bytes of a query head converted for the KV dot */
} gk_ctx_dims;
#define GK_CTX_N_SCRATCH 29
/* Bytes of the scratch arena (sizes: the floats of each piece, or NULL). */
size_t gk_context_arena_bytes(const gk_ctx_dims *x, size_t *sizes);
/* Bytes of the tensor-parallel buffers of rank of size (0 for one process); v_n:
 * the rank's vocabulary rows; parts (or NULL): the logits, the all-reduce scratch,
 * the hashes and the command buffer, each as gk_context_new allocates it. */
size_t gk_context_tp_bytes(const gk_ctx_dims *x, int size, int rank, size_t v_n, size_t n_vocab,
                           size_t parts[4]);

/* Bytes of the summation tree's chunk buffers with k chunks per rank (gk_tp.sum_k) and
 * x->nt threads: the other k - 1 chunk sums of two products, and per thread a chunk's
 * packed columns and its converted activations; n_parts (floats of the sums), cx_size
 * (floats) and cq_size (bytes per thread) may be NULL. */
size_t gk_context_chunk_bytes(const gk_ctx_dims *x, size_t k, size_t *n_parts, size_t *cx_size,
                              size_t *cq_size);

/* tp.c: the tensor-parallel split. */
/* After the hyper-parameters: checks that the group's size can split the model
 * and sets this rank's counts (the file's shard keys for a per-rank file). */
int gk_tp_plan(gk_model *m, gk_err *err);
/* The vocabulary: n_rows of token_embd in the file; sets hp->n_vocab, v_lo, v_n. */
int gk_tp_vocab(gk_model *m, int64_t n_rows, gk_err *err);
/* After binding a whole file (at path): copies this rank's slice of every split
 * weight into tp.store (columns on block boundaries) and points the weights at
 * them. No-op with one process or a per-rank file. */
int gk_tp_cut(gk_model *m, const char *path, gk_err *err);
/* The identity every rank must share, then the agreement step of the load. */
void gk_tp_identity(gk_model *m);
/* Row range [lo, lo + n) of rank r when n_total rows are split size ways. */
void gk_tp_range(uint64_t n_total, int r, int size, uint64_t *lo, uint64_t *n);
/* 64-bit hash of a byte stream, word-wise; the same for any split of the
 * stream into updates (per-rank file checksums). */
typedef struct gk_tp_hasher {
    uint64_t h;
    uint8_t part[8];
    int n_part;
} gk_tp_hasher;
void gk_tp_hash_init(gk_tp_hasher *s);
void gk_tp_hash_update(gk_tp_hasher *s, const void *data, size_t n);
uint64_t gk_tp_hash_final(gk_tp_hasher *s);
/* The identity of a whole file (size, tensor table, first data) as used when
 * every rank loads it; grok shard mixes it into a set's checksum. */
uint64_t gk_tp_file_ident(const gk_gguf *g);

#endif
