/*
 * grok.h - the public C API of libgrok.
 *
 * libgrok loads Grok-architecture mixture-of-experts models (Grok-1, Grok-2 and
 * models trained with grok.c) from GGUF files and runs them on the CPU:
 *
 *   gk_err err;
 *   gk_model *m = gk_model_load("model.gguf", NULL, &err);      // mmap, no copies
 *   gk_context *c = gk_context_new(m, NULL, &err);              // KV cache, threads
 *   gk_decode(c, prompt, n_prompt, &err);                       // logits of each token
 *   const float *logits = gk_get_logits(c, n_prompt - 1);
 *
 * Conventions: functions that can fail take a gk_err * (may be NULL) and return
 * -1 or NULL, with a message in err->msg naming what failed (file, tensor,
 * field, offset). The library never prints and never exits.
 */
#ifndef GROK_H
#define GROK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GK_VERSION "0.1.0"

/* The message of the last failure of a call that received this struct. */
typedef struct gk_err {
    char msg[512];
} gk_err;

/* ---------------------------------------------------------------- model --- */

/* Which numerical choices to follow where the sources disagree (spec "Decisions" 1). */
typedef enum gk_numerics {
    GK_NUMERICS_REFERENCE = 0, /* xAI's JAX code (Grok-1), SGLang (Grok-2) */
    GK_NUMERICS_LLAMACPP = 1   /* llama.cpp's Grok graph, for cross-checking */
} gk_numerics;

typedef enum gk_variant {
    GK_VARIANT_GROK1 = 1, /* MoE only */
    GK_VARIANT_GROK2 = 2  /* dense residual MLP beside the MoE, (MLP + MoE)/sqrt(2) */
} gk_variant;

typedef enum gk_rope_scaling {
    GK_ROPE_SCALING_NONE = 0,
    GK_ROPE_SCALING_LINEAR = 1,
    GK_ROPE_SCALING_YARN = 2
} gk_rope_scaling;

/* Hyper-parameters, read from the grok.* keys of a GGUF (spec section 8). */
typedef struct gk_hparams {
    gk_variant variant;
    uint32_t n_vocab;
    uint32_t n_ctx_train; /* grok.context_length */
    uint32_t n_embd;      /* grok.embedding_length */
    uint32_t n_layer;     /* grok.block_count */
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t head_dim; /* grok.attention.key_length (= value_length) */
    uint32_t n_rot;    /* grok.rope.dimension_count */
    uint32_t n_ff;     /* grok.feed_forward_length: dense MLP width (Grok-2) */
    uint32_t n_ff_exp; /* grok.expert_feed_forward_length (defaults to n_ff) */
    uint32_t n_expert; /* grok.expert_count */
    uint32_t n_expert_used;
    float norm_eps;
    float rope_freq_base;
    gk_rope_scaling rope_scaling;
    float rope_scaling_factor;
    uint32_t rope_orig_ctx;
    float yarn_ext_factor, yarn_attn_factor, yarn_beta_fast, yarn_beta_slow;
    float embedding_scale;  /* grok.embedding_scale */
    float attn_out_scale;   /* grok.attention.output_scale: multiplies q.k */
    float logit_scale;      /* grok.logit_scale: multiplies the output logits */
    float attn_softcap;     /* grok.attn_logit_softcapping (0 = none) */
    float router_softcap;   /* grok.router_logit_softcapping (0 = none) */
    float final_softcap;    /* grok.final_logit_softcapping (0 = none) */
    uint32_t attn_temp_len; /* grok.attention.temperature_length (0 = none) */
    bool tied_output;       /* no output.weight: the embedding is the output matrix */
} gk_hparams;

/* Where each hyper-parameter came from, for `grok info`. */
typedef struct gk_hparam_info {
    const char *name; /* the GGUF key */
    char value[64];   /* printed value */
    bool from_file;   /* false: a default (llama.cpp's, spec section 8) */
} gk_hparam_info;

struct gk_dist;

typedef struct gk_model_params {
    gk_numerics numerics;
    /* Process group for tensor parallelism (see "distributed" below); NULL or a
     * group of one process: the whole model in this process. */
    struct gk_dist *dist;
} gk_model_params;

typedef struct gk_model gk_model;
struct gk_tokenizer;

/* Default model parameters (reference numerics). */
gk_model_params gk_model_default_params(void);

/* Maps a GGUF file and binds its tensors; validates every shape against the
 * hyper-parameters. params may be NULL for the defaults. */
gk_model *gk_model_load(const char *path, const gk_model_params *params, gk_err *err);
void gk_model_free(gk_model *m);
const gk_hparams *gk_model_hparams(const gk_model *m);
gk_numerics gk_model_numerics(const gk_model *m);
/* Hyper-parameter provenance: fills up to cap entries, returns how many exist. */
int gk_model_hparam_info(const gk_model *m, gk_hparam_info *out, int cap);
/* Size in bytes of the mapped file. */
uint64_t gk_model_file_size(const gk_model *m);
/* Number of parameters (elements of all tensors). */
uint64_t gk_model_n_params(const gk_model *m);

/* The tokenizer embedded in the model's GGUF, or NULL when it has none. */
const struct gk_tokenizer *gk_model_tokenizer(const gk_model *m);

/* -------------------------------------------------------------- context --- */

/* KV cache element types. llama.cpp keeps f16 by default; the reference code fp32. */
typedef enum gk_cache_type {
    GK_CACHE_DEFAULT = 0, /* f32 with reference numerics, f16 with llamacpp numerics */
    GK_CACHE_F32 = 1,
    GK_CACHE_F16 = 2,
    GK_CACHE_Q8_0 = 3 /* needs a head size that is a multiple of 32 */
} gk_cache_type;

typedef struct gk_context_params {
    uint32_t n_ctx;   /* KV cache length in tokens, per sequence (0 = min(n_ctx_train, 4096)) */
    uint32_t n_batch; /* most tokens per forward pass (0 = 64) */
    int n_threads;    /* 0 = number of online CPUs */
    bool all_logits;  /* keep the logits of every token of a batch, not only the last */
    uint32_t n_seq;   /* sequences (server slots) sharing the context (0 = 1) */
    gk_cache_type cache_type;
    int dist_wire;   /* gk_dist_wire of the all-reduces (tensor parallel; 0 = fp32) */
    bool dist_check; /* hash the residual stream on every rank after each layer */
} gk_context_params;

typedef struct gk_context gk_context;

gk_context_params gk_context_default_params(void);
gk_context *gk_context_new(gk_model *m, const gk_context_params *params, gk_err *err);
void gk_context_free(gk_context *c);

/* Runs the model on n tokens that follow the ones already in the KV cache of
 * sequence 0. n may exceed n_batch (the batch is split). Fails, changing nothing,
 * when the context length would be exceeded or a token id is out of range. */
int gk_decode(gk_context *c, const int32_t *tokens, int n, gk_err *err);

/* A batch that mixes sequences: token i is appended to sequence seq[i] at that
 * sequence's next position (tokens of one sequence go in batch order). */
typedef struct gk_batch {
    int n;                /* tokens, 1..n_batch */
    const int32_t *token; /* [n] */
    const int32_t *seq;   /* [n] sequence ids < n_seq; NULL = all in sequence 0 */
    const bool *logits;   /* [n] keep this token's logits; NULL = only the last token's */
} gk_batch;

/* One forward pass over a batch. A sequence's logits are bit-identical whether it
 * runs alone or beside others, wherever its tokens sit in the batch. Fails, with
 * the KV cache unchanged, on a bad token or sequence id, a full sequence, or more
 * kept logits than the context holds (n_batch with all_logits, else min(n_seq,
 * n_batch)); the last batch's logits are then gone. */
int gk_decode_batch(gk_context *c, const gk_batch *b, gk_err *err);

/* Logits (n_vocab floats) of the i-th token of the last gk_decode_batch or
 * gk_decode call, or NULL when they were not kept (gk_decode keeps only the last
 * token's unless all_logits). */
const float *gk_get_logits(const gk_context *c, int i);
/* Tokens held in the KV cache of sequence 0. */
uint32_t gk_context_n_past(const gk_context *c);
/* Cache length per sequence, and the number of sequences. */
uint32_t gk_context_n_ctx(const gk_context *c);
uint32_t gk_context_n_seq(const gk_context *c);
/* Forgets the KV cache of sequence 0 from position n_keep on (0 clears it). */
void gk_context_truncate(gk_context *c, uint32_t n_keep);
/* Bytes of the KV cache (all sequences). */
uint64_t gk_context_kv_bytes(const gk_context *c);
/* The KV cache's element type, GK_CACHE_DEFAULT resolved. */
gk_cache_type gk_context_cache_type(const gk_context *c);

/* Per-sequence KV bookkeeping: the length of a sequence (0 for a bad id); forget
 * its positions >= n_keep; make dst hold the first n positions of src (a shared
 * prompt prefix). */
uint32_t gk_kv_seq_len(const gk_context *c, int seq);
int gk_kv_seq_keep(gk_context *c, int seq, uint32_t n_keep, gk_err *err);
int gk_kv_seq_copy(gk_context *c, int src, int dst, uint32_t n, gk_err *err);

/* "f32", "f16", "q8_0" (or "default"); the parse returns -1 for an unknown name. */
const char *gk_cache_type_name(gk_cache_type t);
int gk_cache_type_from_name(const char *name);

/* Work done since the context was made or the counters were reset, as the engine
 * counts it while it runs (for grok plan and grok bench). */
typedef struct gk_decode_stats {
    uint64_t tokens, forwards;
    double matmul_flops;     /* 2 * rows * columns * tokens of every matmul run */
    double weight_bytes;     /* bytes of the weight matrices read, once per matmul */
    double attn_flops;       /* q.k and the sum over V: 4 * head_dim * n_head per key */
    double kv_bytes_read;    /* K and V rows read by attention, once per token and layer */
    double kv_bytes_written; /* K and V rows stored */
    double pool_runs;        /* jobs handed to the thread pool's workers (each a dispatch) */
    double expert_single;    /* layers' experts that ran on one token of their forward */
    /* wall seconds by part (the calling thread's clock around each call): the forwards in
     * all; of them the gk_matmul calls (gk_matmul2 and the summation tree's chunk products
     * included), the attention's job (the dots, softmax and weighted sums over the cache),
     * the GeGLU jobs of gate and up products that do not run fused (in a fused pair, its
     * GeGLU is in the matmul's time) and the logits' softcap job; the rest is the calling
     * thread's own work (norms, RoPE, the cache's stores, routing, gathers, the tree's
     * sums) */
    double forward_s, matmul_s, attn_s, geglu_s, softcap_s;
} gk_decode_stats;
gk_decode_stats gk_context_stats(const gk_context *c);
void gk_context_stats_reset(gk_context *c);

/* ------------------------------------------------------------- sampling --- */

typedef struct gk_sampler_params {
    float temperature;    /* 0 = greedy */
    int32_t top_k;        /* 0 = off */
    float top_p;          /* 1 = off */
    float min_p;          /* 0 = off */
    float repeat_penalty; /* 1 = off; llama.cpp's: divides positive logits, multiplies negative */
    int32_t repeat_last_n;
    uint64_t seed;
} gk_sampler_params;

typedef struct gk_sampler gk_sampler;

gk_sampler_params gk_sampler_default_params(void);
gk_sampler *gk_sampler_new(const gk_sampler_params *p, int32_t n_vocab, gk_err *err);
void gk_sampler_free(gk_sampler *s);
/* Picks a token from logits (not modified). history: the tokens so far (for the
 * repetition penalty). Deterministic for a given seed and call sequence. */
int32_t gk_sampler_sample(gk_sampler *s, const float *logits, const int32_t *history,
                          int n_history);

/* ------------------------------------------------------------ tokenizer --- */

/*
 * Tokenizers: SentencePiece BPE (Grok-1, GGUF "llama") and rank-based byte-level
 * BPE (Grok-2's tokenizer.tok.json, tiktoken files, GGUF "gpt2"). Spec section 7.
 */
typedef struct gk_tokenizer gk_tokenizer;

typedef enum gk_tokenizer_kind {
    GK_TOKENIZER_SPM = 1, /* SentencePiece BPE */
    GK_TOKENIZER_BPE = 2  /* rank-based byte-level BPE */
} gk_tokenizer_kind;

/* Loads tokenizer.model (SentencePiece protobuf), tokenizer.tok.json (Grok-2),
 * a .tiktoken rank file, or the vocabulary embedded in a .gguf. */
gk_tokenizer *gk_tokenizer_load(const char *path, gk_err *err);
void gk_tokenizer_free(gk_tokenizer *t);
gk_tokenizer_kind gk_tokenizer_get_kind(const gk_tokenizer *t);
int32_t gk_tokenizer_n_vocab(const gk_tokenizer *t);
/* BOS / EOS ids, or -1 when the vocabulary has none. */
int32_t gk_tokenizer_bos(const gk_tokenizer *t);
int32_t gk_tokenizer_eos(const gk_tokenizer *t);
/* True for tokens that end generation: EOS and the vocabulary's stop tokens
 * (<|eos|> and <|separator|> for Grok-2). */
bool gk_tokenizer_is_stop(const gk_tokenizer *t, int32_t id);
/* Encodes len bytes of text. Special (CONTROL) tokens written in the text are
 * recognised only when allow_special is true (the chat template sets it);
 * otherwise they are plain text. User-defined tokens are always recognised
 * (SentencePiece: with its own rules, e.g. Grok-1's digits and newline runs).
 * Writes up to cap ids and returns the total count (which may exceed cap: call
 * again with a larger buffer; out may be NULL when cap is 0), or -1 on error.
 * No BOS is added. Thread-safe: a tokenizer may be shared by threads.
 *
 * Malformed UTF-8 never fails: the rank BPE encodes the bytes as they are, so
 * concatenating gk_token_to_bytes of the ids gives back the input exactly;
 * SentencePiece replaces each malformed byte by U+FFFD, as SentencePiece itself
 * does (the ids match spm_encode), so decoding gives U+FFFD there. For valid
 * UTF-8, decoding gives back the input with both (SentencePiece: unless the
 * text contains U+2581, its own space symbol, which decodes as a space). */
int gk_tokenize(const gk_tokenizer *t, const char *text, size_t len, bool allow_special,
                int32_t *out, int cap, gk_err *err);
/* The raw bytes of one token (may be part of a UTF-8 character); returns the byte
 * count (which may exceed cap: nothing is written then), or -1 for a bad id.
 * SentencePiece's leading-space handling applies when first is true (the first
 * token of a text drops the dummy-prefix space). */
int gk_token_to_bytes(const gk_tokenizer *t, int32_t id, bool first, char *buf, int cap);
/* The token's piece as stored in the vocabulary (NUL-terminated), or NULL. */
const char *gk_token_piece(const gk_tokenizer *t, int32_t id);

/* Streaming decoder: feed ids one at a time, get back only whole UTF-8
 * characters (bytes of a character split across tokens are held until complete;
 * each byte that cannot start or continue a valid character comes out as
 * U+FFFD, so the output is always valid UTF-8). CONTROL tokens produce nothing.
 * gk_detok_init starts a continuation (generated tokens after a prompt: a
 * leading space is real). To decode a text from its beginning, set first = true
 * after gk_detok_init: SentencePiece's dummy-prefix space is then dropped. */
typedef struct gk_detok {
    const gk_tokenizer *tok;
    bool first;
    int n_pending;
    unsigned char pending[8];
} gk_detok;
void gk_detok_init(gk_detok *d, const gk_tokenizer *t);
/* Appends the text completed by token id to out (cap bytes); returns the byte
 * count written, or -1 if it does not fit or the id is invalid. */
int gk_detok_push(gk_detok *d, int32_t id, char *out, int cap);
/* Flushes held bytes at the end of a stream (as U+FFFD if incomplete). */
int gk_detok_flush(gk_detok *d, char *out, int cap);

/* The BPE pre-tokenizer's name ("grok-2", "gpt-2", "llama-bpe", "gpt-4o",
 * "custom"), or "" for SentencePiece. */
const char *gk_tokenizer_pre(const gk_tokenizer *t);
/* True for CONTROL tokens (never shown by gk_detok_push). */
bool gk_tokenizer_is_control(const gk_tokenizer *t, int32_t id);

/* Chat (spec 7.2). Grok-2's vocabulary carries its template:
 *   user      "Human: " + strip(content) + "<|separator|>\n\n"
 *   system    "System: " + strip(content) + "<|separator|>\n\n"
 *   assistant "Assistant: " + content + "<|separator|>\n\n"
 * then "Assistant:" to prompt the reply. Base models (Grok-1) have none and
 * take plain text. */
typedef struct gk_chat_msg {
    const char *role; /* "system", "user" or "assistant" */
    const char *content;
} gk_chat_msg;
bool gk_tokenizer_has_chat(const gk_tokenizer *t);
/* Renders n messages (and the assistant prompt when add_assistant) into buf
 * (cap bytes, NUL-terminated when it fits). Returns the full length, which may
 * exceed cap - 1 (call again with a larger buffer), or -1 (no template, unknown
 * role). Encode the result with allow_special = true. */
int64_t gk_chat_apply(const gk_tokenizer *t, const gk_chat_msg *msgs, int n, bool add_assistant,
                      char *buf, size_t cap, gk_err *err);

/* ---------------------------------------------------------- distributed --- */

/*
 * Tensor-parallel inference over N processes (mpirun -np N). The model is split
 * as xAI's Grok-2 serving code splits it: rank r owns n_head_kv/N KV heads with
 * their query heads (rows of wq, wk, wv, columns of wo, its share of the KV
 * cache), 1/N of every expert's and the dense MLP's hidden width, and 1/N of
 * the vocabulary (embedding and output rows); the router is replicated. Each
 * layer all-reduces d values per token twice, summed in a fixed rank order so
 * every rank holds identical activations. N must divide n_head_kv.
 *
 * Rank 0 owns the outside world; the other ranks follow:
 *
 *   gk_dist *d = gk_dist_new(&argc, &argv, &err);     // every rank
 *   gk_model_params mp = {.dist = d};
 *   gk_model *m = gk_model_load(path, &mp, &err);      // every rank: its slices
 *   gk_context *c = gk_context_new(m, &cp, &err);      // every rank, same params
 *   if (gk_dist_rank(d) > 0) {
 *       gk_dist_follow(c, &err);                       // runs rank 0's calls
 *   } else {
 *       gk_decode(c, ...); gk_get_logits(c, ...);      // as with one process
 *       gk_dist_stop(c, &err);                         // followers return
 *   }
 *   gk_context_free(c); gk_model_free(m); gk_dist_free(d);
 *
 * gk_model_load and gk_context_new are collective: every rank must call them,
 * and they fail on every rank (naming the rank and the cause) when one rank
 * fails, or when the ranks run different grok versions, different model files
 * or different parameters. On rank 0, gk_decode, gk_context_truncate (and the
 * per-sequence calls) send the call to the followers before running their share
 * of it; the logits exist on rank 0 only. A path that is a directory written by
 * `grok shard` makes rank r open its own per-rank file.
 */
typedef struct gk_dist gk_dist;

typedef enum gk_dist_wire {
    GK_DIST_WIRE_F32 = 0,  /* exact */
    GK_DIST_WIRE_BF16 = 1, /* 2 bytes per value */
    GK_DIST_WIRE_Q8_0 = 2  /* 34 bytes per 32 values */
} gk_dist_wire;

/* Counters of a process group since it was made (or last reset). */
typedef struct gk_dist_stats {
    uint64_t tokens;      /* tokens run through the forward (per rank) */
    uint64_t collectives; /* collective calls */
    double forward_s;     /* wall time of the forward passes */
    double comm_s;        /* of it, inside collectives (transfer, link model and waiting) */
    double link_s;        /* of comm_s, the link model's delay */
    uint64_t bytes_sent;  /* bytes this rank sent */
    uint64_t bytes_ideal; /* what a bandwidth-optimal ring all-reduce of fp32 values,
                             a broadcast and a gather would have sent from this rank */
} gk_dist_stats;

/* Joins the MPI world when started by mpirun (and built with MPI), else makes a
 * group of one process. Reads GK_DIST_LATENCY_US, GK_DIST_MBPS (link model) and
 * GK_DIST_TIMEOUT_S (collective watchdog, default 60 s) from the environment. */
gk_dist *gk_dist_new(int *argc, char ***argv, gk_err *err);
void gk_dist_free(gk_dist *d);
int gk_dist_rank(const gk_dist *d);
int gk_dist_size(const gk_dist *d);
/* Ends every process of the group with this exit code (MPI_Abort); a one-process
 * group returns. For the tools' error paths, after the message is printed. */
void gk_dist_abort(gk_dist *d, int code);
gk_dist_stats gk_dist_get_stats(const gk_dist *d);
/* The summation tree of the all-reduced products (every process count sums
 * them over the same G column chunks, so N = 1, 2, 4, 8 give the same bits when
 * G/N is a power of two): returns G and sets *per_rank to this rank's chunks
 * (1 when N does not divide G: then the sums match one process's up to
 * rounding only). */
int gk_model_sum_chunks(const gk_model *m, int *per_rank);
void gk_dist_reset_stats(gk_dist *d);
/* Parses "f32", "bf16" or "q8_0"; -1 otherwise. */
int gk_dist_wire_from_name(const char *name);
const char *gk_dist_wire_name(gk_dist_wire w);

/* Ranks > 0: runs rank 0's calls on c until rank 0 calls gk_dist_stop (returns
 * 0) or a call fails (returns -1; rank 0 fails the same call). */
int gk_dist_follow(gk_context *c, gk_err *err);
/* Rank 0: makes the followers return from gk_dist_follow. No-op elsewhere or
 * when already stopped; gk_context_free calls it. */
int gk_dist_stop(gk_context *c, gk_err *err);

/* ----------------------------------------------------------------- plan --- */

/*
 * The cost model behind `grok plan`: FLOPs and bytes of every operation the
 * engine runs (src/model/forward.c), for any hyper-parameters, and what they
 * mean on a fleet of devices. Non-Grok presets (Llama 3.1, DeepSeek-V3, GPT-3,
 * Chinchilla) are described by the same shape so that published training runs
 * can be checked against the model. All figures are doubles (they overflow
 * 64-bit integers for fleets of millions of devices over years).
 */

#define GK_PLAN_MAX_OPS 64
#define GK_PLAN_N_TYPES 40 /* ggml type ids 0..39 */

typedef enum gk_plan_attn {
    GK_PLAN_ATTN_GQA = 0, /* q, k, v, o projections; n_head_kv K/V heads */
    GK_PLAN_ATTN_MLA = 1  /* DeepSeek-V3's multi-head latent attention */
} gk_plan_attn;

/* The shape of a transformer. Grok models: variant set, gated MLPs, MoE in every
 * layer, Grok-2 with a dense MLP of width n_ff beside it. Others: variant 0. */
typedef struct gk_plan_shape {
    char name[48];
    gk_variant variant; /* GK_VARIANT_GROK1/2, or 0 for another architecture */
    uint32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ctx;
    gk_plan_attn attn;
    uint32_t q_lora, kv_lora, rope_dim, v_head_dim; /* MLA only */
    uint32_t n_ff; /* dense MLP width (beside the MoE in MoE layers; 0 = none) */
    uint32_t n_ff_exp, n_expert, n_expert_used; /* MoE (n_expert 0 = dense model) */
    uint32_t n_layer_dense; /* leading layers with a dense MLP of width n_ff_lead, no MoE */
    uint32_t n_ff_lead;
    bool gated;          /* GeGLU / SwiGLU: gate, up, down; else up, down */
    bool tied_output;    /* the embedding is the output matrix */
    uint32_t n_pos_embd; /* learned position-embedding rows (GPT-3), else 0 */
    /* numerics that decide the non-matmul work (tanh / exp / erf calls); 0 = none */
    float attn_softcap, router_softcap, final_softcap;
    bool gelu_erf; /* GELU by erf (Grok-2) or by tanh (Grok-1) */
} gk_plan_shape;

typedef enum gk_plan_op_kind {
    GK_PLAN_OP_LAYER = 0,  /* a matrix of every layer (or of n_layers of them) */
    GK_PLAN_OP_EXPERT = 1, /* a matrix of each expert: stored n_expert times, used top-k */
    GK_PLAN_OP_OUTPUT = 2, /* the output projection: only for tokens whose logits are kept */
    GK_PLAN_OP_EMBD = 3    /* a lookup table: one row read per token, no FLOPs */
} gk_plan_op_kind;

/* One weight matrix of the forward pass: rows x cols of type, in n_layers layers. */
typedef struct gk_plan_op {
    char name[24]; /* GGUF-style: "attn_q", "ffn_up_exps", "output" */
    gk_plan_op_kind kind;
    uint32_t type; /* ggml type id: bytes come from its block size (gk_row_size) */
    int64_t rows, cols;
    uint32_t n_layers;
} gk_plan_op;

/* A model to cost: its shape and the matrices of its forward pass. */
typedef struct gk_plan_model {
    gk_plan_shape s;
    int n_ops;
    gk_plan_op ops[GK_PLAN_MAX_OPS];
    double small_params; /* norms, router biases...: parameters outside the matrices */
    double meta_bytes;   /* a GGUF's header (metadata, tokenizer, tensor table); 0 = unknown */
    /* column chunks of the engine's summation tree (src/model/tp.c): the products
     * attn_output, ffn_down and ffn_down_exps run as sum_g / tp chunks per rank when
     * tp divides sum_g, else as one */
    uint32_t sum_g;
} gk_plan_model;

/* Built-in model presets ("grok-1", "grok-2", "llama-3.1-405b", "deepseek-v3",
 * "gpt-3-175b", "chinchilla-70b"): the i-th name, NULL past the end. */
const char *gk_plan_model_preset_name(int i);
/* The shape of a preset; -1 with the known names when unknown. */
int gk_plan_shape_preset(const char *name, gk_plan_shape *out, gk_err *err);
/* Fills the shape from a loaded model's hyper-parameters. */
void gk_plan_shape_from_hparams(const gk_hparams *hp, const char *name, gk_plan_shape *out);
/* Checks a shape (non-zero sizes, heads divide, top-k <= experts, no overflow). */
int gk_plan_shape_check(const gk_plan_shape *s, gk_err *err);
/* The matrices of a shape with weights in `mix`: a type name ("f32", "bf16",
 * "q8_0", "q4_0", "q4_k", ...: every matrix, the embedding included; norms and the
 * router stay f32 as `grok quantize` keeps them) or llama.cpp's mixes "q4_k_m" and
 * "q5_k_m" (its rules for 8-expert models: attn_v q8_0, attn_output q5_k (q4_k_m)
 * or q6_k, ffn_down q6_k in the layers its use_more_bits picks, output q6_k). */
int gk_plan_model_build(const gk_plan_shape *s, const char *mix, gk_plan_model *out, gk_err *err);
/* The matrices of a loaded model exactly as it stores them (real types per tensor). */
int gk_plan_model_from_model(const gk_model *m, gk_plan_model *out, gk_err *err);

/* Parameter counts: all, and used by one token (top-k experts, output once). */
double gk_plan_params(const gk_plan_model *pm);
double gk_plan_params_active(const gk_plan_model *pm);
/* Bytes of all weights as stored. */
double gk_plan_weight_bytes(const gk_plan_model *pm);
/* Expected number of distinct experts a batch of n tokens touches per layer when
 * routing is uniform: E (1 - (1 - k/E)^n). */
double gk_plan_experts_touched(const gk_plan_shape *s, double n_tokens);
/* Of those, the expected number that get exactly one of the tokens: E n p (1 - p)^(n-1),
 * p = k/E (k at n = 1). */
double gk_plan_experts_single(const gk_plan_shape *s, double n_tokens);

/* Work of one forward pass, as the engine counts it (gk_context_stats). */
typedef struct gk_plan_cost {
    double matmul_flops; /* 2 * rows * cols per token of every matmul run */
    double weight_bytes; /* bytes of every weight matrix read (once per matmul call) */
    double attn_flops;   /* q.k and P.V: (2 * qk_dim + 2 * v_dim) * n_head per key */
    double kv_bytes_read, kv_bytes_written;
    double embd_bytes; /* embedding rows looked up */
} gk_plan_cost;

/* One forward over n_tok tokens of one sequence at positions pos0.., keeping the
 * logits of n_logits of them; experts_touched distinct experts per MoE layer run
 * (each on its tokens; <0 = the uniform-routing expectation). kv_elt_bytes: bytes
 * per cached K or V element (4 for the engine's f32 cache). */
gk_plan_cost gk_plan_forward(const gk_plan_model *pm, double n_tok, double pos0, double n_logits,
                             double experts_touched, double kv_elt_bytes);

/* Training work per token of sequences of seq_len tokens: forward (all logits,
 * causal attention over on average (seq_len + 1)/2 keys), backward = 2x forward
 * (dX and dW of every matmul; the attention's backward likewise 2x). */
typedef struct gk_plan_train_cost {
    double fwd_matmul_flops, fwd_attn_flops, bwd_flops, flops; /* flops = total per token */
    double opt_flops_per_step;                                 /* AdamW over all parameters */
    double opt_bytes_per_step; /* fp32 w, g, m, v read; w, m, v written */
} gk_plan_train_cost;
gk_plan_train_cost gk_plan_train_per_token(const gk_plan_model *pm, double seq_len);

/* Work of elementwise passes: libm calls and other arithmetic, and the f32 bytes
 * they read plus write. */
typedef struct gk_plan_ew {
    double exp, erf, tanh; /* expf, erff, tanhf calls (GELU, softmax, softcaps) */
    double flops;          /* the other arithmetic of the passes */
    double bytes;          /* bytes read + written */
} gk_plan_ew;

/* One optimizer step of `grok train` (one micro-batch of n_seqs sequences of seq_len
 * tokens per process), counted the way src/train runs it, by kind of operation:
 * the products (forward, dX, dW), the attention (its backward recomputes the scores:
 * q.k, dP, dq, dk, dv = 10 head_dim FLOPs per head and key against 4 forward; of
 * these the dot products q.k and dO.v, and the row updates out += p v (forward), dq
 * += ds k, dk += ds q, dv += p dO (backward), each of which reads and writes a row
 * in cache: 12 bytes per element), the elementwise passes on the pool's threads
 * (GeGLU and its backward, softmax and softcaps of attention and the loss, AdamW)
 * and on the calling thread alone (RMSNorm forward and backward, residual adds, RoPE,
 * routing, expert gathers and scatters, zeroing of gradients, the gradient norm), and
 * transposes (dY before each dW product, inside gk_sgemm). */
typedef struct gk_plan_train_step {
    double tokens;     /* n_seqs x seq_len */
    double gemm_flops; /* 3 x the forward matmuls */
    double attn_fwd_flops, attn_bwd_flops;
    double attn_fwd_dot_flops, attn_bwd_dot_flops; /* of which in dot products */
    double attn_fwd_bytes, attn_bwd_bytes;         /* the row updates' bytes */
    double attn_bwd_items;       /* parallel items of the attention backward: n_seqs x KV heads */
    gk_plan_ew par, ser;         /* over activations: on the pool's threads / on one thread */
    gk_plan_ew opt_par, opt_ser; /* over the parameters (AdamW; zeroing, gradient norm) */
    double transpose_bytes;      /* read + written (priced inside the GEMM rate) */
    /* parallel steps that follow serial work on the calling thread: a pass over
     * every token (RMSNorm, RoPE, routing, the MoE scatter, zeroing), or an expert's
     * scatter and gather of rows; and the serial work before each */
    double wakes_wide, wakes_expert;
    gk_plan_ew wide_ser, expert_ser;
    double pool_runs; /* parallel steps (thread-pool dispatches) */
} gk_plan_train_step;
gk_plan_train_step gk_plan_train_step_work(const gk_plan_model *pm, double seq_len, double n_seqs);

/* Memory. */
double gk_plan_kv_bytes_per_token(const gk_plan_shape *s, double kv_elt_bytes);
/* Activation memory per token of training (bf16, no recomputation, no model
 * parallelism): Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
 * Transformer Models", eq. 1: per layer s*b*h*(34 + 5*a*s/h) bytes, i.e. per token
 * h*(34 + 5*a*s/h); with fused (flash) attention the a*s^2 score term is not kept:
 * 34 h per layer. */
double gk_plan_train_act_bytes_per_token(const gk_plan_shape *s, double seq_len, bool fused_attn);

/* A split of the model over devices: tensor parallel (as the engine does it:
 * attention by KV heads, experts and MLPs by their width, output by vocabulary),
 * expert parallel (whole experts per device), pipeline (layers per stage) and
 * data parallel (replicas). */
typedef struct gk_plan_split {
    int tp, ep, pp, dp;
} gk_plan_split;

/* Jobs one gk_matmul call over T tokens on a weight of this type hands to the thread
 * pool: a pass that converts the activations when its kernels read them converted
 * (one token's are converted on the calling thread), then one over the rows
 * (src/kernels/gemm.c). */
int gk_plan_matmul_runs(uint32_t type, double T);
/* Jobs the engine hands to its pool (gk_decode_stats.pool_runs) in one forward over
 * n_tok tokens of one sequence keeping n_logits logits, with `touched` experts per MoE
 * layer of which `single` got one token (gk_decode_stats.expert_single per layer),
 * n_threads threads and tp ranks (0 with one thread). */
double gk_plan_forward_pool_runs(const gk_plan_model *pm, double n_tok, double n_logits,
                                 double touched, double single, int n_threads, int tp);

/* Bytes each device sends per token (inference forward), and how many messages. */
typedef struct gk_plan_comm {
    double tp_bytes, ep_bytes, pp_bytes; /* per token, per device */
    double tp_msgs, ep_msgs, pp_msgs;    /* messages (collective steps) per forward */
} gk_plan_comm;
/* tp: two ring all-reduces of n_embd values per layer (each device sends
 * 2 (tp-1)/tp * d values per all-reduce); ep: each token's hidden state goes to
 * and comes back from its top-k experts, (ep-1)/ep of them elsewhere; pp: d values
 * per stage boundary. wire_bytes: bytes per value (4 fp32, 2 bf16). */
gk_plan_comm gk_plan_comm_per_token(const gk_plan_model *pm, const gk_plan_split *sp,
                                    double wire_bytes);
/* Data-parallel gradient all-reduce per step (ring): bytes each replica sends. */
double gk_plan_dp_bytes_per_step(const gk_plan_model *pm, int dp, double grad_bytes);
/* Weight bytes held by the busiest device of a split (replicated parts counted whole). */
double gk_plan_weight_bytes_per_device(const gk_plan_model *pm, const gk_plan_split *sp);

/* ------------------------------------------------------------ plan: hw --- */

/* A device class (from a datasheet) or a measured machine (grok plan calibrate). */
typedef struct gk_plan_hw {
    char name[32];
    char desc[96];
    char source[512];  /* where the figures come from */
    double bf16_flops; /* peak dense BF16 FLOP/s per device */
    double fp8_flops;  /* peak dense FP8 FLOP/s (0 = none) */
    double mem_bytes;  /* device memory */
    double mem_bw;     /* bytes/s */
    double link_bw;    /* scale-up link (NVLink, ...) bytes/s per direction per device */
    double link_lat;   /* seconds per message on it */
    uint32_t domain;   /* devices per scale-up domain (node, NVL72 rack) */
    double net_bw;     /* scale-out bytes/s per direction per device */
    double net_lat;    /* seconds */
    double tdp_w;      /* watts per device */
    /* measured (calibrate), 0 = unknown: */
    double mm_bw1[GK_PLAN_N_TYPES]; /* weight bytes/s of gk_matmul at batch 1 (96 MiB, 4096 wide) */
    /* the same for matrices of 256 KiB, 2 MiB, 16 MiB and 96 MiB of rows 1024 and 4096
     * wide, each read once in turn from a 96 MiB arena as a model's are */
    double mm_bw1_at[GK_PLAN_N_TYPES][4][2];
    /* the same matrices as the summation tree runs them at batch 1 (forward.c chunk_part):
     * each thread alone on a chunk of 1/threads of the columns, the whole matrix's bytes/s */
    double mm_tree1_at[GK_PLAN_N_TYPES][4][2];
    /* both at 256 KiB and 2 MiB with the matrices read in turn from a 4 MiB arena: the
     * weights of a small model, read again before the caches lose them */
    double mm_bw1_warm[GK_PLAN_N_TYPES][2][2], mm_tree1_warm[GK_PLAN_N_TYPES][2][2];
    double mm_flops512[GK_PLAN_N_TYPES]; /* FLOP/s of gk_matmul at batch 512 */
    /* FLOP/s of gk_matmul with T = 8, 32, 128, 512 tokens on a 1024-row matrix of
     * 512- and 4096-wide rows (prompt chunks; an expert's share of one) */
    double mm_flops_at[GK_PLAN_N_TYPES][4][2];
    /* the same on 4096-row matrices: a call's time is linear in its rows (a fixed part:
     * its activations packed, its dispatches; and a part per row), so the two grids
     * give both parts for any matrix */
    double mm_flops_at4k[GK_PLAN_N_TYPES][4][2];
    /* the same on 128-row matrices of 64- and 128-wide rows: the narrow rows of a small
     * model (and its summation tree's column chunks), which have few rows; there a
     * register tile's sums cost as much as its few steps (0 for the k-quants, whose
     * blocks are 256 wide) */
    double mm_flops_narrow[GK_PLAN_N_TYPES][4][2];
    double attn_flops; /* FLOP/s of the f32 dot (attention) */
    /* FLOP/s of training's three products of a matrix as src/train calls them: the
     * forward (gk_matmul, f32), dX and dW (gk_sgemm, dY transposed first), over 1024
     * tokens */
    double tgemm_flops;
    double tgemm_at[4]; /* the same for matrices of 128, 256, 512, 1024 (smallest side) */
    double call_s;      /* seconds per job handed to the thread pool (gk_pool_run, no work) */
    double step_s; /* seconds per parallel step with a little work in it (a 64 x 64 matmul of one
                      token): what a training step's many small steps cost each (0 = call_s) */
    double attn_at[3]; /* attn_flops for heads of 32, 64, 128 */
    /* A worker that finds no job spins for a while, then sleeps (src/base/pool.c): what
     * a parallel step with no work costs after serial work of 5, 10, 20, ... 640 us on
     * the calling thread (median), the workers' wake-up included */
    double wake_at[8];
    /* A short grok train step on calibrate's own small model (src/train as it runs):
     * each part's measured time over the time the parts above give it, for the
     * products, the attention, the other jobs on the pool, the calling thread's own
     * work and the optimizer (gk_plan_train_step_time multiplies by them). They carry
     * what separate timings miss: caches holding the other parts' data, the engine's
     * own loops, the dispatches inside each part. 0: not measured. */
    double train_k_gemm, train_k_attn, train_k_pool, train_k_ser, train_k_opt;
    double exp_rate, erf_rate,
        tanh_rate; /* the engine's vector exp/erf/tanh: values per second on one thread */
    /* elements per second of the engine's GeGLU (gk_geglu, GELU by erf / by tanh) over
     * the threads, less its dispatch */
    double geglu_erf, geglu_tanh;
    /* seconds of one gk_geglu call of 4096 elements, its dispatch in (a small call's
     * fixed part beyond its elements and dispatch) */
    double geglu_erf_4k, geglu_tanh_4k;
    /* bytes/s of one thread's elementwise pass (y = a x + b, f32) over arrays of
     * 256 KiB, 2 MiB, 16 MiB and 128 MiB in all */
    double ew_bw_at[4];
    /* bytes/s of the threads' streaming reads of a buffer of 4, 8, 16, ..., 512 MiB
     * read again and again (the best pass): where the caches end. A forward's share of
     * reads that miss them comes from it (0: not measured; then from a fixed rule, all
     * past 96 MiB) */
    double read_bw_at[8];
    /* seconds of one item of the engine's attention job (forward.c attn_part over an f32
     * cache: gk_attn_dots, gk_attn_softmax of each head with the softcap, gk_attn_wsum), on
     * every thread at once, for runs of 1, 2 and 4 query heads (GK_ATTN_QMAX) of head size
     * 32, 64 and 128 over 64, 512 and 4096 keys: [head size][heads][keys] */
    double attn_item[3][3][3];
    /* the same with each item's K and V cold (out of the caches: a generated token's) */
    double attn_cold[3][3][3];
    int threads;     /* threads the figures were measured with */
    double rss_base; /* resident bytes of a started grok process (with MPI under mpirun) */
} gk_plan_hw;

/* The i-th hardware preset, NULL past the end. */
const gk_plan_hw *gk_plan_hw_preset(int i);
/* A preset by name (case-insensitive, aliases "H100" = H100 SXM), or a preset
 * file written by gk_plan_hw_save when the name is a path that exists. */
int gk_plan_hw_find(const char *name, gk_plan_hw *out, gk_err *err);
/* Writes / reads a preset file ("key = value" lines); the write is atomic. */
int gk_plan_hw_save(const gk_plan_hw *hw, const char *path, gk_err *err);
int gk_plan_hw_load(const char *path, gk_plan_hw *out, gk_err *err);
/* Parses "N x KIND" ("8xH100", "16384xH100", "2x/path/to/file.preset"). */
int gk_plan_fleet_parse(const char *spec, double *n, gk_plan_hw *hw, gk_err *err);

/* ------------------------------------------------------- plan: results --- */

/* Peak resident memory of the busiest rank (rank 0) of `mpirun -np tp grok run|bench`:
 * the rank's slices of the split weights (gk_tp_cut's store; all of them, mapped, with
 * one process), the replicated tensors and the GGUF header (mapped), its share of the
 * KV cache (n_ctx tokens of one sequence), the context's buffers (gk_context_arena_bytes,
 * gk_context_tp_bytes) and a started process (rss_base of a calibrated preset). */
typedef struct gk_plan_rank_mem {
    double weights, replicated, kv, context, base, total;
} gk_plan_rank_mem;
int gk_plan_rank_memory(const gk_plan_model *pm, int tp, double n_ctx, double n_batch,
                        int n_threads, double kv_elt_bytes, double base_bytes,
                        gk_plan_rank_mem *out, gk_err *err);

/* Where the seconds of a forward go on a calibrated machine (each forward walked call
 * by call as src/model/forward.c makes them): the matmuls at their calibrated rates,
 * one dispatch per job handed to the pool, GeGLU, attention, the other elementwise
 * work on the pool and on the calling thread. */
typedef struct gk_plan_parts {
    double matmul, dispatch, geglu, attention, ew_pool, ew_serial, total;
    double pool_runs; /* jobs handed to the pool */
} gk_plan_parts;

/* Inference of a model on n devices of one kind with a split. */
typedef struct gk_plan_infer {
    gk_plan_split split;
    double weight_bytes_dev; /* per device */
    double kv_bytes_seq_dev; /* KV cache of one sequence of n_ctx tokens, per device */
    double act_bytes_dev;    /* scratch of a context (batch n_batch) */
    double free_bytes_dev;   /* memory left after weights and scratch */
    double max_seqs;         /* concurrent sequences of n_ctx tokens that fit */
    bool fits;
    /* tokens/s of one replica; bound = the hardware limit, expect = at the efficiency */
    double prompt_bound, prompt_expect; /* prompt processing (batch n_batch) */
    double gen_bound, gen_expect;       /* one sequence */
    double gen_comm_s;                  /* communication time per generated token */
    /* A split over devices whose preset gives no bandwidth for the link it needs (a
     * hand-written preset file): its communication time, and the tokens/s that include
     * it, are NaN (unknown), not infinite. */
    double gen_batch_bound, gen_batch_seqs; /* aggregate at max_seqs (capped at 256) */
    gk_plan_rank_mem rank_mem;              /* one grok.c process of the split (pp = 1) */
    /* a calibrated machine: the whole prompt's and one generated token's seconds by part */
    gk_plan_parts prompt_parts, gen_parts;
} gk_plan_infer;

typedef struct gk_plan_infer_opts {
    double n_ctx;        /* context per sequence */
    double n_batch;      /* prompt tokens per forward (default 512) */
    double kv_elt_bytes; /* default: 2 on accelerators (bf16), 4 on a calibrated CPU */
    double wire_bytes;   /* TP wire format: default 2 (bf16) on accelerators, 4 on CPU */
    double eff_flops;    /* share of peak FLOPs reached (default 0.5) */
    double eff_bw;       /* share of peak bandwidth reached (default 0.8) */
    double mem_reserve;  /* bytes per device kept free (default 0) */
    double n_prompt;     /* prompt length for prompt tokens/s (default n_batch) */
    double gen_pos;      /* mean position of generated tokens (default n_ctx / 2) */
    int n_threads;       /* threads per process for the context's buffers (default: preset's) */
} gk_plan_infer_opts;

/* The split for n devices with tensor parallel tp (must divide n_head_kv) and
 * pipeline stages pp = n / tp; -1 with a message if it is not a valid split. */
int gk_plan_infer_eval(const gk_plan_model *pm, const gk_plan_hw *hw, double n_dev, int tp,
                       const gk_plan_infer_opts *o, gk_plan_infer *out, gk_err *err);

/* Training of a model on a fleet. */
typedef struct gk_plan_train {
    double tokens, flops, flops_per_token;
    double seconds, days, device_hours;
    double energy_j, energy_mwh, avg_power_w; /* facility: devices x TDP x PUE */
    double
        mem_state_dev; /* 16 B/param (bf16 w + g, fp32 master, m, v) over model-parallel devices */
} gk_plan_train;
int gk_plan_train_eval(const gk_plan_model *pm, const gk_plan_hw *hw, double n_dev, double tokens,
                       double seq_len, double mfu, double pue, gk_plan_train *out, gk_err *err);

/* Training tokens/s of one process on a calibrated machine, from the work of
 * gk_plan_train_step_work (one micro-batch of step_tokens per step) at the measured
 * rates: every product at the training GEMM's rate for its size, the attention at
 * the dot rate for its head size, libm calls at their rates, elementwise bytes at
 * the pass rate for their size (over the threads, or on one), one pool step per
 * parallel operation. 0 when the device has no measured rates. */
/* Seconds of one such step, by kind (0 when the device has no measured rates). With
 * the preset's train_k_* factors the parts are scaled by them and their dispatches
 * are inside them (pool = 0). */
typedef struct gk_plan_train_times {
    double gemm, attn, ew_par, ew_ser, opt, pool, total;
} gk_plan_train_times;
double gk_plan_train_step_time(const gk_plan_model *pm, const gk_plan_hw *hw, double seq_len,
                               double step_tokens, gk_plan_train_times *out);
double gk_plan_train_tokens_per_s_measured(const gk_plan_model *pm, const gk_plan_hw *hw,
                                           double seq_len, double step_tokens);

/* What a fleet can do in a year: compute at mfu, power, and the compute-optimal
 * (Chinchilla: C = 6 N D with D = 20 N) parameters and tokens for it. */
typedef struct gk_plan_fleet {
    double devices, power_w, energy_mwh_year, flops_per_s, flops_year;
    double chinchilla_params, chinchilla_tokens;
} gk_plan_fleet;
int gk_plan_fleet_eval(const gk_plan_hw *hw, double n_dev, double mfu, double pue,
                       gk_plan_fleet *out, gk_err *err);

/* --------------------------------------------------------------- system --- */

/* Names of the kernels chosen for this CPU: the dot products' ("avx2", "scalar", ...),
 * and the matmul's when it differs ("avx2, matmul avx512-vnni"). */
const char *gk_kernels_name(void);

#ifdef __cplusplus
}
#endif

#endif
