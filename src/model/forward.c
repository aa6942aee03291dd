/*
 * forward.c - the context (KV cache, scratch buffers, threads) and the forward
 * pass of both Grok variants over a batch of tokens (spec section 2):
 *
 *   x = E[tok] * embedding_scale
 *   per layer:  x += norm(Attn(norm(x)))                    sandwich norms
 *               h  = norm(x)
 *               f  = MoE(h)                                  Grok-1
 *               f  = (MoE(h) + MLP(h)) / sqrt(2)             Grok-2
 *               x += norm(f)
 *   logits = softcap(norm(x) @ W_out^T * logit_scale)
 *
 * Everything is fp32. Every buffer is sized when the context is made, so a
 * decode step allocates nothing. Matmuls, attention and the GELU products are
 * split over the thread pool; the small per-token steps (norms, routing) run
 * on the calling thread.
 *
 * Tensor parallelism (m->tp.size > 1, src/model/tp.c): this process holds its
 * ranks's heads, hidden-width slices and vocabulary rows; the partial sums after
 * wo, after the MoE + MLP and of the embedding are all-reduced in a fixed rank
 * order (src/dist), the logits gathered to rank 0. Rank 0 sends each call that
 * changes the context (decode, KV bookkeeping) to the followers first.
 */
#include "dist/dist.h"
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct gk_context {
    gk_model *m;
    gk_pool *pool;
    uint32_t n_ctx, n_batch, n_seq;
    bool all_logits;
    uint32_t *seq_len; /* [n_seq]: positions held in the KV cache of each sequence */
    /* KV cache [n_layer][n_seq][n_head_kv][n_ctx] rows of head_dim elements of
     * cache_type (this rank's KV heads), K after RoPE: a head's rows are contiguous,
     * so attention streams them (a position-major layout left half of every
     * fetched stretch unused) */
    gk_dtype cache_type;
    size_t kv_row;  /* bytes of one position's rows (all its heads) */
    size_t kv_head; /* bytes of one head's row */
    int n_kvh;      /* KV heads held */
    uint8_t *kcache, *vcache;
    /* the last batch */
    int n_tok;                  /* its tokens */
    int out_base;               /* gk_get_logits index of its first token */
    int32_t *tok_seq, *tok_pos; /* [n_batch] sequence and position of each token */
    int32_t *logit_row;         /* [n_batch] row of c->logits, or -1 */
    int32_t *kept;              /* [n_batch] tokens whose logits are kept, in order */
    int n_logit_rows;           /* capacity of c->logits */
    /* scratch, [n_batch][...] each */
    float *x, *xn, *tmp, *q, *k, *v, *att, *moe, *xe, *h1, *h3, *g, *u, *rl;
    float *rope_cos, *rope_sin; /* [n_batch][n_rot/2] */
    float *scores;              /* [n_threads][GK_ATTN_QMAX][n_ctx] */
    float *vrow;                /* [n_threads][head_dim]: a V row converted to fp32 */
    uint8_t *qbuf;              /* activations converted to a weight's vec_dot_type */
    uint8_t *qconv;             /* [n_batch][n_head] query heads in the cache's vec_dot_type */
    size_t qconv_head;          /* bytes of one converted query head */
    int32_t *exp_tok;           /* [n_expert][n_batch]: tokens routed to each expert */
    float *exp_gate;            /* [n_expert][n_batch]: their gate weights */
    int32_t *exp_n;             /* [n_expert] */
    float *logits;              /* [n_logit_rows][n_vocab] */
    void *arena;                /* one allocation for the scratch above */
    gk_decode_stats stats;
    uint64_t pool_runs0; /* gk_pool_runs at the last stats reset */
    /* tensor parallelism (m->tp.size > 1) */
    gk_dist *dist;
    gk_dist_wire wire;
    bool dist_check, stopped;
    float *logits_loc; /* [rows][v_n]: this rank's vocabulary slice; then (rank 0) the gather */
    void *ar_scratch;  /* gk_dist_allreduce's, for the largest wire (the embedding's fp32) */
    uint64_t *hashes;  /* [size]: --dist-check */
    int32_t *cmd_buf;  /* followers: [n_ctx] tokens, [n_batch] sequences and keep flags */
    /* the summation tree's chunks (gk_tp.sum_k of them here; see sum_products) */
    int nt;       /* threads of the pool */
    float *parts; /* [2 (sum_k - 1)][n_batch][n_embd]: chunk sums 1.. of two products */
    float *cx;    /* [nt][n_batch][widest chunk]: a chunk's columns of the input */
    float *cy;    /* [nt][n_batch][n_embd]: one chunk's product */
    uint8_t *cq;  /* [nt][cq_size]: the chunk matmuls' converted activations */
    size_t cq_size, cx_size;
    void *chunk_mem; /* one allocation for parts, cx, cy and cq */
    int fault_layer; /* tests of --dist-check (GK_DIST_FAULT=RANK:LAYER): this rank nudges
                        its residual stream after that layer; -1 = never */
};

gk_context_params gk_context_default_params(void) {
    return (gk_context_params){.n_ctx = 0,
                               .n_batch = 0,
                               .n_threads = 0,
                               .all_logits = false,
                               .n_seq = 0,
                               .cache_type = GK_CACHE_DEFAULT};
}

/* ------------------------------------------------------------- helpers --- */

/* The stats of one product of w over T tokens (one matrix of a stack). */
static void count_matmul(gk_context *c, const gk_weight *w, int T) {
    c->stats.matmul_flops += 2.0 * (double)w->ne[0] * (double)w->ne[1] * T;
    c->stats.weight_bytes += (double)w->nb_row * (double)w->ne[1];
}

/* s += g y over n values: an expert's gated product into its token's sum. */
static void add_gated(float *s, float g, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) s[i] += g * y[i];
}

static void matmul_w(gk_context *c, float *y, const gk_weight *w, const float *x, int T) {
    double t0 = gk_time_s();
    gk_matmul(c->pool, y, w->data, gk_weight_mm_type(w), gk_weight_row_step(w), w->ne[1], x,
              w->ne[0], T, c->qbuf);
    c->stats.matmul_s += gk_time_s() - t0;
    count_matmul(c, w, T);
}

/* Two products of one input in one fused pass (kernels/ops.h gk_matmul2): an
 * MLP's gate and up, or attention's K and V; plain matrices for e < 0, else
 * matrix e of the expert stacks. With geglu (an MLP), y1 = GELU(y1) * y2 after:
 * inside the pass where the two share GEMM kernels (gk_matmul2_geglu, timed with
 * the matmuls), else as its own job (timed as GeGLU).
 * Counted as the two matmuls they are. */
static void matmul_pair(gk_context *c, float *y1, const gk_weight *w1, float *y2,
                        const gk_weight *w2, int e, const float *x, int T, bool geglu) {
    size_t o1 = e < 0 ? 0 : (size_t)e * gk_weight_mat_step(w1),
           o2 = e < 0 ? 0 : (size_t)e * gk_weight_mat_step(w2);
    const size_t s1 = gk_weight_row_step(w1), s2 = gk_weight_row_step(w2);
    const gk_dtype t1 = gk_weight_mm_type(w1), t2 = gk_weight_mm_type(w2);
    const bool fused = geglu && t1 == t2 && gk_gemm_kernels_of(t1);
    double t0 = gk_time_s();
    if (fused)
        gk_matmul2_geglu(c->pool, y1, w1->data + o1, t1, s1, y2, w2->data + o2, t2, s2, w1->ne[1],
                         x, w1->ne[0], T, c->qbuf, c->m->cfg.gelu);
    else
        gk_matmul2(c->pool, y1, w1->data + o1, t1, s1, y2, w2->data + o2, t2, s2, w1->ne[1], x,
                   w1->ne[0], T, c->qbuf);
    c->stats.matmul_s += gk_time_s() - t0;
    if (geglu && !fused) {
        t0 = gk_time_s();
        gk_geglu(c->pool, y1, y2, (int64_t)T * w1->ne[1], c->m->cfg.gelu);
        c->stats.geglu_s += gk_time_s() - t0;
    }
    count_matmul(c, w1, T);
    count_matmul(c, w2, T);
}

static void rope_apply(gk_context *c, float *v, int T, int n_heads) {
    const gk_hparams *hp = &c->m->hp;
    gk_rope_apply(v, T, n_heads, (int)hp->head_dim, (int)hp->n_rot, c->rope_cos, c->rope_sin);
}

/* Head h's row at pos of sequence seq in layer l of a KV cache. */
static uint8_t *kv_at(const gk_context *c, uint8_t *cache, int l, int seq, int h, uint32_t pos) {
    return cache +
           ((((size_t)l * c->n_seq + (size_t)seq) * (size_t)c->n_kvh + (size_t)h) * c->n_ctx +
            pos) *
               c->kv_head;
}

/* Products of one input over several weights in one call (gk_matmul_many), with
 * GeGLU over pairs for geglu (weights 2i and 2i + 1 an MLP's gate and up); false,
 * having done nothing, where their types or widths differ or the type has no GEMM
 * kernels. Counted as the matmuls they are. */
static bool matmul_many(gk_context *c, const gk_matmul_out *o, const gk_weight *const *ws, int n,
                        const float *x, int T, bool geglu) {
    const gk_dtype t = gk_weight_mm_type(ws[0]);
    for (int i = 1; i < n; i++)
        if (gk_weight_mm_type(ws[i]) != t || ws[i]->ne[0] != ws[0]->ne[0]) return false;
    double t0 = gk_time_s();
    if (!gk_matmul_many(c->pool, o, n, t, x, ws[0]->ne[0], T, c->qbuf,
                        geglu ? (int)c->m->cfg.gelu : -1))
        return false;
    c->stats.matmul_s += gk_time_s() - t0;
    for (int i = 0; i < n; i++) count_matmul(c, ws[i], T);
    return true;
}

/* ------------------------------------------------------------- attention --- */

typedef struct {
    gk_context *c;
    int layer, T;
} attn_job;

/* Work items of attention: (token, run of up to GK_ATTN_QMAX query heads of one
 * KV group), so that the group's key and value rows are read once for its heads
 * (fewer heads per run when there would be fewer items than threads). Per head:
 * q.k * scale -> softcap -> temperature -> softmax -> weighted sum of V (spec 3.2),
 * over the keys of the token's own sequence up to its position. A head's result
 * does not depend on the run it is in. */
static void attn_part(void *arg, int ith, int nth) {
    attn_job *j = arg;
    gk_context *c = j->c;
    const gk_hparams *hp = &c->m->hp;
    /* this rank's query heads (all of them with one process); the group is the same */
    const int hd = (int)hp->head_dim, nh = (int)c->m->tp.n_head,
              group = (int)(hp->n_head / hp->n_head_kv), ng = nh / group;
    const gk_type_traits *ct = gk_type_traits_of(c->cache_type);
    const bool f32 = c->cache_type == GK_TYPE_F32;
    /* An f16 cache meets its operands in f16, as llama.cpp's kernels do: q is
     * rounded to f16 for q.k (attention()), and the softmax weights for the weighted
     * sum of V; the sums run in f32. */
    const bool w_f16 = c->cache_type == GK_TYPE_F16;
    const size_t row = c->kv_head;
    const float cap = hp->attn_softcap, scale = hp->attn_out_scale;
    const uint32_t tlen = c->m->cfg.attn_temp_len;
    gk_vec_dot_fn dot = ct->vec_dot;
    float *s = c->scores + (size_t)ith * c->n_ctx * GK_ATTN_QMAX;
    float *vf = c->vrow + (size_t)ith * hd;
    /* runs per group: as few as GK_ATTN_QMAX allows, more while threads would idle */
    int runs = (group + GK_ATTN_QMAX - 1) / GK_ATTN_QMAX;
    while (runs < group && (int64_t)j->T * ng * runs < nth) runs++;
    const int qc = (group + runs - 1) / runs;
    int64_t lo, hi;
    gk_split((int64_t)j->T * ng * runs, ith, nth, &lo, &hi);
    for (int64_t item = lo; item < hi; item++) {
        const int t = (int)(item / (ng * runs)), rem = (int)(item % (ng * runs));
        const int g = rem / runs, h0 = g * group + rem % runs * qc;
        const int nq = h0 + qc <= (g + 1) * group ? qc : (g + 1) * group - h0;
        if (nq <= 0) continue;
        uint32_t p = (uint32_t)c->tok_pos[t]; /* absolute 0-based position */
        const int64_t nk = (int64_t)p + 1;
        const uint8_t *K = kv_at(c, c->kcache, j->layer, c->tok_seq[t], g, 0);
        const uint8_t *V = kv_at(c, c->vcache, j->layer, c->tok_seq[t], g, 0);
        /* xAI temperature: log2(p)/log2(L) past L, applied after the cap. */
        float temp = tlen && p > tlen ? (float)(log2((double)p) / log2((double)tlen)) : 1.0f;
        float *out = c->att + ((size_t)t * nh + h0) * hd;
        if (f32 || w_f16) { /* f32 q (f16 values for an f16 cache), SIMD from the rows */
            gk_attn_dots(s, c->n_ctx, K, row, c->cache_type, c->q + ((size_t)t * nh + h0) * hd, nq,
                         nk, hd);
            for (int i = 0; i < nq; i++)
                gk_attn_softmax(s + (size_t)i * c->n_ctx, nk, scale, cap, temp, w_f16);
            gk_attn_wsum(out, V, row, c->cache_type, s, c->n_ctx, nq, nk, hd);
            continue;
        }
        for (int i = 0; i < nq; i++, out += hd) { /* a quantized cache: its vec_dot */
            const uint8_t *q = c->qconv + ((size_t)t * nh + h0 + i) * c->qconv_head;
            for (uint32_t k = 0; k <= p; k++) s[k] = dot(hd, K + k * row, q);
            gk_attn_softmax(s, nk, scale, cap, temp, false);
            memset(out, 0, (size_t)hd * sizeof(float));
            for (uint32_t k = 0; k <= p; k++) {
                ct->to_float(V + k * row, vf, hd);
                for (int e = 0; e < hd; e++) out[e] = fmaf(s[k], vf[e], out[e]);
            }
        }
    }
}

/* Sums a partial result over the ranks (tensor parallelism; no-op alone). */
static int allreduce(gk_context *c, float *buf, size_t n, gk_dist_wire wire, gk_err *err) {
    if (c->m->tp.size == 1) return 0;
    return gk_dist_allreduce(c->dist, buf, n, wire, c->ar_scratch, err);
}

/* ----------------------------------------------- the summation tree --- */

/* The products whose sums are all-reduced, y = x W^T with W's columns (the
 * input width) split, run as the fixed tree of gk_tp.sum_g chunks (model.h):
 * this rank's k = sum_k chunks each give a product over their columns (the
 * weight pointer moved to the chunk's first column, the row stride kept), and
 * the chunk sums are added as gk_dist_tree_sum's tree. An expert's product
 * instead adds gate * product into each chunk's sum for its tokens (the MoE's
 * sum over a token's experts runs in expert order within every chunk). Whole
 * chunks per thread when they divide evenly (one pass of the pool for all of
 * them); else chunk after chunk, each over the pool. gk_matmul's results do not
 * depend on the thread count, so the two give the same bits. */
typedef struct {
    gk_context *c;
    const gk_weight *w;
    size_t woff;    /* the expert's matrix */
    const float *x; /* [T][width] */
    int64_t width;
    int k, T;
    float *const *sums;  /* [k] chunk sums of [T][n_embd] */
    const int32_t *toks; /* an expert's tokens (add gate * product at their rows), or NULL */
    const float *gates;
} chunk_job;

static void chunk_one(chunk_job *j, int ch, gk_pool *pool, int slot) {
    gk_context *c = j->c;
    const int64_t d = c->m->hp.n_embd, cw = j->width / j->k;
    const gk_weight *w = j->w;
    const float *x = j->x + ch * cw;
    if (j->T > 1 && j->k > 1) { /* the chunk's columns of every token, packed */
        float *xc = c->cx + (size_t)slot * c->cx_size;
        for (int t = 0; t < j->T; t++)
            memcpy(xc + (size_t)t * cw, j->x + (size_t)t * j->width + ch * cw,
                   (size_t)cw * sizeof(float));
        x = xc;
    }
    float *y = j->toks ? c->cy + (size_t)slot * c->n_batch * d : j->sums[ch];
    gk_matmul(pool, y, w->data + j->woff + gk_gemm_col_offset(gk_weight_mm_type(w), ch * cw),
              gk_weight_mm_type(w), w->nb_row, w->ne[1], x, cw, j->T,
              c->cq + (size_t)slot * c->cq_size);
    if (j->toks)
        for (int i = 0; i < j->T; i++)
            add_gated(j->sums[ch] + (size_t)j->toks[i] * d, j->gates[i], y + (size_t)i * d, d);
}

static void chunk_part(void *arg, int ith, int nth) {
    chunk_job *j = arg;
    for (int ch = ith; ch < j->k; ch += nth) chunk_one(j, ch, NULL, ith);
}

/* Decode: every chunk's product in one pass of the threads over the rows
 * (gk_matmul_chunks; the same bits as chunk by chunk), an expert's into cy
 * first; false when the kernels or the buffers do not allow it. Only where the
 * threads divide the chunks: the one pass then stands for chunk_part's one pass,
 * which grok plan counts (gk_plan_forward_pool_runs). */
static bool chunk_decode(gk_context *c, chunk_job *j) {
    const int64_t d = c->m->hp.n_embd;
    if (j->T != 1 || j->k < 2 || j->k % c->nt ||
        (j->toks && (size_t)j->k > (size_t)c->nt * c->n_batch))
        return false;
    float *ys[GK_TP_MAX_CHUNKS];
    for (int ch = 0; ch < j->k; ch++) ys[ch] = j->toks ? c->cy + (size_t)ch * d : j->sums[ch];
    const gk_weight *w = j->w;
    if (!gk_matmul_chunks(c->pool, ys, w->data + j->woff, gk_weight_mm_type(w), w->nb_row, w->ne[1],
                          j->x, j->width, j->k, c->cq, (size_t)c->nt * c->cq_size))
        return false;
    if (j->toks)
        for (int ch = 0; ch < j->k; ch++)
            add_gated(j->sums[ch] + (size_t)j->toks[0] * d, j->gates[0], ys[ch], d);
    return true;
}

static void chunk_products(gk_context *c, chunk_job *j) {
    double t0 = gk_time_s();
    if (chunk_decode(c, j))
        ;
    else if (j->k % c->nt == 0)
        gk_pool_run(c->pool, chunk_part, j);
    else
        for (int ch = 0; ch < j->k; ch++) chunk_one(j, ch, c->pool, 0);
    c->stats.matmul_s += gk_time_s() - t0;
    count_matmul(c, j->w, j->T);
}

/* This rank's chunks: its k sums, the first in first (the tree's result lands
 * there), the others in the parts buffer (set 0 or 1). */
static int chunk_sums(gk_context *c, float *first, int set, float **sums) {
    const gk_tp *tp = &c->m->tp;
    const int k = tp->sum_k > 1 ? (int)tp->sum_k : 1;
    const size_t bd = (size_t)c->n_batch * c->m->hp.n_embd;
    sums[0] = first;
    for (int i = 1; i < k; i++) sums[i] = c->parts + ((size_t)set * (k - 1) + (i - 1)) * bd;
    return k;
}

/* y = x W^T as the tree of this rank's chunks (attention's wo, the dense MLP's down). */
static void sum_products(gk_context *c, float *y, const gk_weight *w, const float *x, int T) {
    float *sums[GK_TP_MAX_CHUNKS];
    int k = chunk_sums(c, y, 0, sums);
    chunk_job j = {.c = c, .w = w, .x = x, .width = w->ne[0], .k = k, .T = T, .sums = sums};
    chunk_products(c, &j);
    gk_dist_tree_sum(sums, k, (size_t)T * c->m->hp.n_embd);
}

static int attention(gk_context *c, int layer, int T, gk_err *err) {
    const gk_hparams *hp = &c->m->hp;
    const gk_tp *tp = &c->m->tp; /* this rank's heads */
    const gk_layer *L = &c->m->layers[layer];
    const int64_t d = hp->n_embd, nkv = (int64_t)tp->n_head_kv * hp->head_dim;
    const int hd = (int)hp->head_dim, nh = (int)tp->n_head;
    for (int t = 0; t < T; t++)
        gk_rmsnorm(c->xn + t * d, c->x + t * d, L->attn_norm, d, hp->norm_eps);
    /* Q, K and V in one pass of the threads (one conversion of xn) when they can;
     * else K and V in one */
    const gk_weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
    const gk_matmul_out o[3] = {{c->q, L->wq.data, L->wq.nb_row, L->wq.ne[1]},
                                {c->k, L->wk.data, L->wk.nb_row, L->wk.ne[1]},
                                {c->v, L->wv.data, L->wv.nb_row, L->wv.ne[1]}};
    if (!matmul_many(c, o, qkv, 3, c->xn, T, false)) {
        matmul_w(c, c->q, &L->wq, c->xn, T);
        if (L->wk.type == L->wv.type && L->wk.ne[1] == L->wv.ne[1] && L->wk.ne[0] == L->wv.ne[0])
            matmul_pair(c, c->k, &L->wk, c->v, &L->wv, -1, c->xn, T, false);
        else {
            matmul_w(c, c->k, &L->wk, c->xn, T);
            matmul_w(c, c->v, &L->wv, c->xn, T);
        }
    }
    rope_apply(c, c->q, T, nh);
    rope_apply(c, c->k, T, (int)tp->n_head_kv);
    const gk_type_traits *ct = gk_type_traits_of(c->cache_type);
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < c->n_kvh; h++) {
            const uint32_t pos = (uint32_t)c->tok_pos[t];
            ct->from_float(c->k + t * nkv + h * hd,
                           kv_at(c, c->kcache, layer, c->tok_seq[t], h, pos), hd);
            ct->from_float(c->v + t * nkv + h * hd,
                           kv_at(c, c->vcache, layer, c->tok_seq[t], h, pos), hd);
        }
        c->stats.kv_bytes_written += 2.0 * (double)c->kv_row;
        c->stats.kv_bytes_read += 2.0 * (double)c->kv_row * (c->tok_pos[t] + 1);
        c->stats.attn_flops += 4.0 * hd * nh * (c->tok_pos[t] + 1);
    }
    const bool f32_or_f16 = c->cache_type == GK_TYPE_F32 || c->cache_type == GK_TYPE_F16;
    if (c->cache_type == GK_TYPE_F16) /* q.k with an f16 cache: q in f16 too (attn_part) */
        for (int64_t i0 = 0, n = (int64_t)T * nh * hd; i0 < n; i0 += 512) {
            uint16_t h[512];
            const int64_t m = n - i0 < 512 ? n - i0 : 512;
            ct->from_float(c->q + i0, h, m);
            ct->to_float(h, c->q + i0, m);
        }
    if (c->qconv && !f32_or_f16) { /* query heads in a quantized cache's vec_dot_type */
        const gk_type_traits *qt = gk_type_traits_of(ct->vec_dot_type);
        for (int64_t i = 0; i < (int64_t)T * nh; i++)
            qt->from_float(c->q + i * hd, c->qconv + (size_t)i * c->qconv_head, hd);
    }
    attn_job j = {.c = c, .layer = layer, .T = T};
    double t0 = gk_time_s();
    gk_pool_run(c->pool, attn_part, &j);
    c->stats.attn_s += gk_time_s() - t0;
    sum_products(c, c->tmp, &L->wo, c->att, T);
    /* each rank's heads give a partial sum of the output projection */
    if (allreduce(c, c->tmp, (size_t)T * d, c->wire, err) < 0) return -1;
    for (int t = 0; t < T; t++) {
        gk_rmsnorm(c->tmp + t * d, c->tmp + t * d, L->attn_out_norm, d, hp->norm_eps);
        for (int64_t i = 0; i < d; i++) c->x[t * d + i] += c->tmp[t * d + i];
    }
    return 0;
}

/* ------------------------------------------------------------------- MoE --- */

/* Router (spec 4.1): fp32 logits, optional softcap, softmax over all experts,
 * top-k by probability (ties: lower index), gates = the probabilities, summed to
 * 1 only in llamacpp mode. Fills the per-expert token lists. */
static void route(gk_context *c, int T) {
    const gk_hparams *hp = &c->m->hp;
    const gk_numerics_cfg *cfg = &c->m->cfg;
    const int E = (int)hp->n_expert, K = (int)hp->n_expert_used;
    memset(c->exp_n, 0, (size_t)E * sizeof(int32_t));
    for (int t = 0; t < T; t++) {
        float *g = c->rl + (size_t)t * E;
        float mx = -INFINITY;
        for (int e = 0; e < E; e++) {
            g[e] = gk_softcap(g[e], cfg->router_softcap);
            mx = g[e] > mx ? g[e] : mx;
        }
        double sum = 0.0;
        for (int e = 0; e < E; e++) sum += (g[e] = expf(g[e] - mx));
        for (int e = 0; e < E; e++) g[e] = (float)(g[e] / sum);
        /* top-k by selection; g[e] < 0 marks a taken expert. A NaN probability
         * (NaN router weights) is never above another but can still be taken,
         * so that K experts are always chosen. K <= GK_MAX_EXPERT_USED (model.c). */
        int chosen[GK_MAX_EXPERT_USED];
        float w[GK_MAX_EXPERT_USED], wsum = 0.0f;
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int e = 0; e < E; e++)
                if (!(g[e] < 0.0f) && (best < 0 || g[e] > g[best])) best = e;
            chosen[k] = best;
            w[k] = g[best];
            wsum += w[k];
            g[best] = -1.0f;
        }
        for (int k = 0; k < K; k++) {
            int e = chosen[k];
            c->exp_tok[(size_t)e * c->n_batch + c->exp_n[e]] = t;
            c->exp_gate[(size_t)e * c->n_batch + c->exp_n[e]] =
                cfg->renorm_topk ? w[k] / wsum : w[k];
            c->exp_n[e]++;
        }
    }
}

/* Decode (one token): the chosen experts' gate and up products, and the dense MLP's
 * (dense), all in one pass of the threads with their GeGLU (matmul_many); expert
 * i's (in expert order) hidden row at h1 + i F. False, having done nothing, where
 * the types, the kernels or the buffers do not allow it. */
static bool mlp_decode(gk_context *c, const gk_layer *L, bool dense) {
    const int64_t F = c->m->tp.n_ff_exp;
    const int K = (int)c->m->hp.n_expert_used;
    if ((size_t)K > c->n_batch || 2 * K + 2 * dense > GK_MATMUL_MAX) return false;
    gk_matmul_out o[GK_MATMUL_MAX];
    const gk_weight *ws[GK_MATMUL_MAX];
    int n = 0;
    for (int e = 0, i = 0; e < (int)c->m->hp.n_expert; e++) {
        if (!c->exp_n[e]) continue;
        const size_t off = (size_t)e * gk_weight_mat_step(&L->gate_exps),
                     offu = (size_t)e * gk_weight_mat_step(&L->up_exps);
        ws[n] = &L->gate_exps;
        o[n++] = (gk_matmul_out){c->h1 + i * F, L->gate_exps.data + off,
                                 gk_weight_row_step(&L->gate_exps), F};
        ws[n] = &L->up_exps;
        o[n++] = (gk_matmul_out){c->h3 + i * F, L->up_exps.data + offu,
                                 gk_weight_row_step(&L->up_exps), F};
        i++;
    }
    if (dense) {
        ws[n] = &L->ffn_gate;
        o[n++] = (gk_matmul_out){c->g, L->ffn_gate.data, gk_weight_row_step(&L->ffn_gate),
                                 L->ffn_gate.ne[1]};
        ws[n] = &L->ffn_up;
        o[n++] =
            (gk_matmul_out){c->u, L->ffn_up.data, gk_weight_row_step(&L->ffn_up), L->ffn_up.ne[1]};
    }
    return matmul_many(c, o, ws, n, c->xn, 1, true);
}

/* Decode, after mlp_decode: the chosen experts' down products (expert i's chunks
 * into cy, then gate * product added into each chunk's sum, in expert order, as
 * chunk_decode adds them) and the dense MLP's (dsums, Grok-2) in one pass of the
 * pool (gk_matmul_chunks_many); the bits of chunk_products one by one. False,
 * having done nothing, where the chunks, the types or the buffers do not allow it. */
static bool downs_decode(gk_context *c, const gk_layer *L, float *const *sums, int k,
                         float *const *dsums) {
    const int64_t d = c->m->hp.n_embd, F = c->m->tp.n_ff_exp;
    const int K = (int)c->m->hp.n_expert_used;
    const gk_dtype t = gk_weight_mm_type(&L->down_exps);
    if (k < 2 || k % c->nt || (size_t)K * k > (size_t)c->nt * c->n_batch ||
        K + (dsums != NULL) > GK_MATMUL_MAX || (dsums && gk_weight_mm_type(&L->ffn_down) != t))
        return false;
    float *ys[GK_MATMUL_MAX][GK_TP_MAX_CHUNKS];
    gk_chunks_out o[GK_MATMUL_MAX];
    const gk_weight *ws[GK_MATMUL_MAX];
    int n = 0, es[GK_MATMUL_MAX];
    for (int e = 0; e < (int)c->m->hp.n_expert; e++) {
        if (!c->exp_n[e]) continue;
        for (int ch = 0; ch < k; ch++) ys[n][ch] = c->cy + ((size_t)n * k + ch) * d;
        const gk_weight *w = &L->down_exps;
        o[n] = (gk_chunks_out){ys[n], w->data + (size_t)e * w->nb_mat, w->nb_row, w->ne[1],
                               c->h1 + n * F, F};
        ws[n] = w, es[n++] = e;
    }
    const int n_exp = n;
    if (dsums) {
        const gk_weight *w = &L->ffn_down;
        o[n] = (gk_chunks_out){dsums, w->data, w->nb_row, w->ne[1], c->g, w->ne[0]};
        ws[n++] = w;
    }
    double t0 = gk_time_s();
    if (!gk_matmul_chunks_many(c->pool, o, n, t, k, c->cq, (size_t)c->nt * c->cq_size))
        return false;
    c->stats.matmul_s += gk_time_s() - t0;
    for (int i = 0; i < n; i++) count_matmul(c, ws[i], 1);
    for (int i = 0; i < n_exp; i++) {
        const int32_t tok = c->exp_tok[(size_t)es[i] * c->n_batch];
        const float g = c->exp_gate[(size_t)es[i] * c->n_batch];
        for (int ch = 0; ch < k; ch++) add_gated(sums[ch] + (size_t)tok * d, g, ys[i][ch], d);
    }
    return true;
}

/* out[t] = sum over chosen experts e of gate * W2_e (GELU(W1_e h) * W3_e h).
 * The tokens of every sequence in the batch are grouped by expert; each token's
 * sum runs in expert order, so it does not depend on its neighbours. Per chunk
 * of the summation tree: sums[0..k) (sum_products) get each chunk's part. With
 * dsums (Grok-2), the dense MLP's GELU(W1 h) * W3 h into g as well (its gate and
 * up products with the experts' at decode), and at decode, where downs_decode
 * runs, its down product into dsums (returns true then). */
static bool moe(gk_context *c, const gk_layer *L, float *const *sums, int k, int T,
                float *const *dsums) {
    const bool dense = dsums != NULL;
    const gk_hparams *hp = &c->m->hp;
    const int64_t d = hp->n_embd, F = c->m->tp.n_ff_exp; /* this rank's share of the width */
    matmul_w(c, c->rl, &L->router, c->xn, T);
    route(c, T);
    for (int e = 0; e < (int)hp->n_expert; e++) c->stats.expert_single += c->exp_n[e] == 1;
    for (int i = 0; i < k; i++) memset(sums[i], 0, (size_t)T * d * sizeof(float));
    const bool fused = T == 1 && mlp_decode(c, L, dense);
    if (fused && downs_decode(c, L, sums, k, dsums)) return true;
    for (int e = 0, i = 0; e < (int)hp->n_expert; e++) {
        int n = c->exp_n[e];
        if (n == 0) continue;
        const int32_t *toks = c->exp_tok + (size_t)e * c->n_batch;
        const float *gates = c->exp_gate + (size_t)e * c->n_batch;
        if (!fused) {
            for (int t = 0; t < n; t++)
                memcpy(c->xe + (size_t)t * d, c->xn + (size_t)toks[t] * d,
                       (size_t)d * sizeof(float));
            matmul_pair(c, c->h1, &L->gate_exps, c->h3, &L->up_exps, e, c->xe, n, true);
        }
        chunk_job j = {.c = c,
                       .w = &L->down_exps,
                       .woff = (size_t)e * L->down_exps.nb_mat,
                       .x = fused ? c->h1 + i++ * F : c->h1,
                       .width = F,
                       .k = k,
                       .T = n,
                       .sums = sums,
                       .toks = toks,
                       .gates = gates};
        chunk_products(c, &j);
    }
    if (dense && !fused)
        matmul_pair(c, c->g, &L->ffn_gate, c->u, &L->ffn_up, -1, c->xn, T, true);
    return false;
}

static int ffn(gk_context *c, int layer, int T, gk_err *err) {
    const gk_hparams *hp = &c->m->hp;
    const gk_layer *L = &c->m->layers[layer];
    const int64_t d = hp->n_embd;
    for (int t = 0; t < T; t++)
        gk_rmsnorm(c->xn + t * d, c->x + t * d, L->ffn_norm, d, hp->norm_eps);
    float *sums[GK_TP_MAX_CHUNKS];
    const int k = chunk_sums(c, c->moe, 0, sums);
    const bool grok2 = hp->variant == GK_VARIANT_GROK2;
    float *dense[GK_TP_MAX_CHUNKS];
    if (grok2) chunk_sums(c, c->tmp, 1, dense);
    const bool dense_done = moe(c, L, sums, k, T, grok2 ? dense : NULL);
    if (grok2) {
        /* dense residual MLP on the same input (its GeGLU made in moe), then
         * (MLP + MoE)/sqrt(2) (spec 4.3), chunk by chunk (the dense width's chunk c
         * with the experts' chunk c) */
        chunk_job j = {.c = c,
                       .w = &L->ffn_down,
                       .x = c->g,
                       .width = L->ffn_down.ne[0],
                       .k = k,
                       .T = T,
                       .sums = dense};
        if (!dense_done) chunk_products(c, &j);
        for (int ch = 0; ch < k; ch++)
            for (int64_t i = 0; i < T * d; i++)
                sums[ch][i] = (dense[ch][i] + sums[ch][i]) / 1.4142135623730951f;
    }
    gk_dist_tree_sum(sums, k, (size_t)T * d);
    /* each rank's share of the hidden widths gives a partial sum (linear up to here) */
    if (allreduce(c, c->moe, (size_t)T * d, c->wire, err) < 0) return -1;
    for (int t = 0; t < T; t++) {
        gk_rmsnorm(c->tmp + t * d, c->moe + t * d, L->post_ffn_norm, d, hp->norm_eps);
        for (int64_t i = 0; i < d; i++) c->x[t * d + i] += c->tmp[t * d + i];
    }
    return 0;
}

/* ------------------------------------------------------------- forward --- */

/* --dist-check: every rank hashes its residual stream; all must agree. */
static int check_layer(gk_context *c, uint32_t layer, int T, gk_err *err) {
    const gk_tp *tp = &c->m->tp;
    uint64_t h = gk_dist_hash(GK_DIST_HASH_INIT, c->x, (size_t)T * c->m->hp.n_embd * sizeof(float));
    if (gk_dist_allgather(c->dist, &h, sizeof h, c->hashes, err) < 0) return -1;
    for (int r = 1; r < tp->size; r++)
        if (c->hashes[r] != c->hashes[0])
            return gk_fail(err,
                           "--dist-check: the residual stream after layer %u differs on rank "
                           "%d from rank 0 (hash %016llx vs %016llx)",
                           layer, r, (unsigned long long)c->hashes[r],
                           (unsigned long long)c->hashes[0]);
    return 0;
}

typedef struct {
    float *v;
    int64_t n;
    float scale, cap;
} softcap_job;

static void softcap_part(void *arg, int ith, int nth) {
    softcap_job *j = arg;
    int64_t lo, hi;
    gk_split(j->n, ith, nth, &lo, &hi);
    gk_softcap_array(j->v + lo, hi - lo, j->scale, j->cap); /* the same bits at any split */
}

/* The logits of n tokens from xn: this rank's vocabulary rows, scaled and capped,
 * then (tensor parallel) gathered into c->logits on rank 0. */
static int output_logits(gk_context *c, int n, gk_err *err) {
    const gk_model *m = c->m;
    const gk_hparams *hp = &m->hp;
    const gk_tp *tp = &m->tp;
    float *out = tp->size == 1 ? c->logits : c->logits_loc;
    matmul_w(c, out, &m->output, c->xn, n);
    /* the softcap of every logit, split over the threads */
    softcap_job sj = {
        .v = out, .n = (int64_t)n * tp->v_n, .scale = hp->logit_scale, .cap = hp->final_softcap};
    double t0 = gk_time_s();
    gk_pool_run(c->pool, softcap_part, &sj);
    c->stats.softcap_s += gk_time_s() - t0;
    if (tp->size == 1) return 0;
    /* rank r's block [n][v_n(r)] lands at n * v_lo(r) in the receive buffer */
    size_t bytes[256], offs[256];
    for (int r = 0; r < tp->size && r < 256; r++) {
        uint64_t lo, cnt;
        gk_tp_range(hp->n_vocab, r, tp->size, &lo, &cnt);
        bytes[r] = (size_t)n * cnt * sizeof(float);
        offs[r] = (size_t)n * lo * sizeof(float);
    }
    float *recv = c->logits_loc + (size_t)n * tp->v_n;
    if (gk_dist_gatherv(c->dist, out, (size_t)n * tp->v_n * sizeof(float), recv, bytes, offs, err) <
        0)
        return -1;
    if (tp->rank != 0) return 0;
    for (int r = 0; r < tp->size; r++) {
        uint64_t lo, cnt;
        gk_tp_range(hp->n_vocab, r, tp->size, &lo, &cnt);
        const float *blk = recv + (size_t)n * lo;
        for (int t = 0; t < n; t++)
            memcpy(c->logits + (size_t)t * hp->n_vocab + lo, blk + (size_t)t * cnt,
                   cnt * sizeof(float));
    }
    return 0;
}

/* Runs the T tokens whose sequences and positions are in c->tok_seq/tok_pos,
 * and fills the logits of the n_keep tokens listed in c->kept. */
static int forward(gk_context *c, const int32_t *tokens, int T, int n_keep, gk_err *err) {
    const gk_model *m = c->m;
    const gk_hparams *hp = &m->hp;
    const gk_tp *tp = &m->tp;
    const int64_t d = hp->n_embd;
    const int half = (int)hp->n_rot / 2;
    const gk_type_traits *et = gk_type_traits_of(m->tok_embd.type);
    double t_start = gk_time_s();
    for (int t = 0; t < T; t++) {
        float *x = c->x + t * d;
        uint32_t row = (uint32_t)tokens[t] - tp->v_lo; /* this rank's rows: [0, v_n) */
        if (row < tp->v_n) {
            et->to_float(m->tok_embd.data + (size_t)row * m->tok_embd.nb_row, x, d);
            for (int64_t i = 0; i < d; i++) x[i] *= hp->embedding_scale;
        } else { /* another rank's vocabulary slice: that rank adds the row */
            memset(x, 0, (size_t)d * sizeof(float));
        }
        gk_rope_tables(&m->cfg.rope, (uint32_t)c->tok_pos[t], 1, c->rope_cos + t * half,
                       c->rope_sin + t * half);
    }
    /* one rank holds each row, the others add zeros: exact, so always fp32 */
    if (allreduce(c, c->x, (size_t)T * d, GK_DIST_WIRE_F32, err) < 0) return -1;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        if (attention(c, (int)l, T, err) < 0 || ffn(c, (int)l, T, err) < 0) return -1;
        if ((int)l == c->fault_layer) c->x[0] = nextafterf(c->x[0], INFINITY);
        if (c->dist_check && tp->size > 1 && check_layer(c, l, T, err) < 0) return -1;
    }
    c->stats.tokens += (uint64_t)T;
    c->stats.forwards++;
    if (n_keep > 0) {
        for (int i = 0; i < n_keep; i++)
            gk_rmsnorm(c->xn + i * d, c->x + (int64_t)c->kept[i] * d, m->output_norm, d,
                       hp->norm_eps);
        if (output_logits(c, n_keep, err) < 0) return -1;
    }
    c->stats.forward_s += gk_time_s() - t_start;
    if (tp->size > 1) {
        c->dist->st.tokens += (uint64_t)T;
        c->dist->st.forward_s += gk_time_s() - t_start;
    }
    return 0;
}

/* Checks a batch without changing anything; on success fills the per-token
 * sequence, position and logits-row tables and returns the count of kept logits. */
enum { KEEP_LAST, KEEP_ALL, KEEP_NONE };

static int plan_batch(gk_context *c, int n, const int32_t *token, const int32_t *seq,
                      const bool *keep, int keep_mode, gk_err *err) {
    if (n <= 0) return gk_fail(err, "decode: no tokens given");
    if (n > (int)c->n_batch)
        return gk_fail(err, "decode: a batch of %d tokens exceeds n_batch %u", n, c->n_batch);
    for (int i = 0; i < n; i++) {
        if (token[i] < 0 || (uint32_t)token[i] >= c->m->hp.n_vocab)
            return gk_fail(err, "token id %d at index %d is out of range (vocabulary %u)", token[i],
                           i, c->m->hp.n_vocab);
        if (seq && (seq[i] < 0 || (uint32_t)seq[i] >= c->n_seq))
            return gk_fail(err, "sequence id %d at index %d is out of range (%u sequences)", seq[i],
                           i, c->n_seq);
    }
    /* positions: each sequence continues where its cache ends, in batch order */
    int n_keep = 0;
    for (int i = 0; i < n; i++) {
        int s = seq ? seq[i] : 0;
        uint32_t pos = c->seq_len[s];
        for (int j = 0; j < i; j++) pos += (seq ? seq[j] : 0) == s;
        if (pos >= c->n_ctx)
            return gk_fail(err,
                           "context length exceeded: sequence %d holds %u tokens and the "
                           "batch adds more than %u (raise --ctx-size)",
                           s, c->seq_len[s], c->n_ctx - c->seq_len[s]);
        c->tok_seq[i] = s;
        c->tok_pos[i] = (int32_t)pos;
        bool k = keep ? keep[i] : keep_mode == KEEP_ALL || (keep_mode == KEEP_LAST && i == n - 1);
        c->logit_row[i] = k ? n_keep : -1;
        if (k) {
            if (n_keep >= c->n_logit_rows)
                return gk_fail(err,
                               "decode: the batch keeps more than %d tokens' logits "
                               "(max(n_seq, 1), or n_batch with all_logits)",
                               c->n_logit_rows);
            c->kept[n_keep++] = i;
        }
    }
    return n_keep;
}

static int commit_batch(gk_context *c, const int32_t *tokens, int n, int n_keep, gk_err *err) {
    if (forward(c, tokens, n, n_keep, err) < 0) {
        c->n_tok = 0;
        return -1;
    }
    for (int i = 0; i < n; i++) c->seq_len[c->tok_seq[i]]++;
    c->n_tok = n;
    return 0;
}

/* --------------------------------------------------- rank 0's commands --- */

/* Rank 0 sends each call that changes the context to the followers (a header of
 * four int32, then the call's arrays) before running its own share of it; the
 * followers run the same local function on the same arguments. */
enum { CMD_STOP = 1, CMD_DECODE, CMD_BATCH, CMD_TRUNCATE, CMD_SEQ_KEEP, CMD_SEQ_COPY };

static bool leads(const gk_context *c) {
    return c->m->tp.size > 1 && c->m->tp.rank == 0;
}

/* A header: op and three arguments, then up to CMD_INLINE tokens of a decode
 * (a generation step then costs one broadcast). */
#define CMD_INLINE 4
#define CMD_WORDS (4 + CMD_INLINE)

static int send_cmd_inline(gk_context *c, int32_t op, int32_t a, int32_t b, int32_t d,
                           const int32_t *inl, int n_inl, gk_err *err) {
    if (c->stopped) return gk_fail(err, "the followers were stopped (gk_dist_stop)");
    int32_t hdr[CMD_WORDS] = {op, a, b, d};
    for (int i = 0; i < n_inl; i++) hdr[4 + i] = inl[i];
    return gk_dist_bcast_cmd(c->dist, hdr, sizeof hdr, err);
}

static int send_cmd(gk_context *c, int32_t op, int32_t a, int32_t b, int32_t d, gk_err *err) {
    return send_cmd_inline(c, op, a, b, d, NULL, 0, err);
}

static int send_arr(gk_context *c, const void *p, size_t bytes, gk_err *err) {
    return gk_dist_bcast(c->dist, (void *)p, bytes, err);
}

static int only_rank0(const gk_context *c, const char *what, gk_err *err) {
    return gk_fail(err, "%s on rank %d: only rank 0 calls it (the other ranks run gk_dist_follow)",
                   what, c->m->tp.rank);
}

static int decode_batch_local(gk_context *c, const gk_batch *b, gk_err *err) {
    int n_keep = plan_batch(c, b->n, b->token, b->seq, b->logits, KEEP_LAST, err);
    if (n_keep < 0) {
        c->n_tok = 0; /* the tables were overwritten: the last logits are gone */
        return -1;
    }
    if (commit_batch(c, b->token, b->n, n_keep, err) < 0) return -1;
    c->out_base = 0;
    return 0;
}

int gk_decode_batch(gk_context *c, const gk_batch *b, gk_err *err) {
    if (!b || !b->token) return gk_fail(err, "decode: no batch given");
    if (c->m->tp.size > 1) {
        if (!leads(c)) return only_rank0(c, "gk_decode_batch", err);
        /* check first (changing nothing), so that the followers get only good batches */
        if (plan_batch(c, b->n, b->token, b->seq, b->logits, KEEP_LAST, err) < 0) {
            c->n_tok = 0;
            return -1;
        }
        uint8_t *keep = (uint8_t *)(c->cmd_buf + c->n_ctx + c->n_batch); /* n <= n_batch */
        if (b->logits)
            for (int i = 0; i < b->n; i++) keep[i] = b->logits[i];
        if (send_cmd(c, CMD_BATCH, b->n, b->seq != NULL, b->logits != NULL, err) < 0 ||
            send_arr(c, b->token, (size_t)b->n * sizeof(int32_t), err) < 0 ||
            (b->seq && send_arr(c, b->seq, (size_t)b->n * sizeof(int32_t), err) < 0) ||
            (b->logits && send_arr(c, keep, (size_t)b->n, err) < 0))
            return -1;
    }
    return decode_batch_local(c, b, err);
}

static int decode_local(gk_context *c, const int32_t *tokens, int n, gk_err *err) {
    for (int done = 0; done < n;) {
        int T = n - done < (int)c->n_batch ? n - done : (int)c->n_batch;
        /* with all_logits every token's logits are kept; else only the very last one's */
        int mode = c->all_logits ? KEEP_ALL : done + T == n ? KEEP_LAST : KEEP_NONE;
        int n_keep = plan_batch(c, T, tokens + done, NULL, NULL, mode, err);
        if (n_keep < 0) return -1; /* cannot happen: checked above */
        if (commit_batch(c, tokens + done, T, n_keep, err) < 0) return -1;
        c->out_base = done;
        done += T;
    }
    return 0;
}

int gk_decode(gk_context *c, const int32_t *tokens, int n, gk_err *err) {
    if (n <= 0) return gk_fail(err, "decode: no tokens given");
    if ((uint64_t)c->seq_len[0] + (uint64_t)n > c->n_ctx)
        return gk_fail(err,
                       "context length exceeded: %u tokens in the cache + %d new > %u "
                       "(raise --ctx-size)",
                       c->seq_len[0], n, c->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= c->m->hp.n_vocab)
            return gk_fail(err, "token id %d at index %d is out of range (vocabulary %u)",
                           tokens[i], i, c->m->hp.n_vocab);
    if (c->all_logits && n > (int)c->n_batch)
        return gk_fail(err,
                       "decode: %d tokens exceed n_batch %u with all_logits on "
                       "(call per batch)",
                       n, c->n_batch);
    if (c->m->tp.size > 1) {
        if (!leads(c)) return only_rank0(c, "gk_decode", err);
        if (send_cmd_inline(c, CMD_DECODE, n, 0, 0, tokens, n <= CMD_INLINE ? n : 0, err) < 0 ||
            (n > CMD_INLINE && send_arr(c, tokens, (size_t)n * sizeof(int32_t), err) < 0))
            return -1;
    }
    return decode_local(c, tokens, n, err);
}

const float *gk_get_logits(const gk_context *c, int i) {
    int j = i - c->out_base;
    if (c->m->tp.rank != 0) return NULL; /* the logits exist on rank 0 only */
    if (j < 0 || j >= c->n_tok || c->logit_row[j] < 0) return NULL;
    return c->logits + (size_t)c->logit_row[j] * c->m->hp.n_vocab;
}

uint32_t gk_context_n_past(const gk_context *c) {
    return c->seq_len[0];
}
uint32_t gk_context_n_ctx(const gk_context *c) {
    return c->n_ctx;
}
uint32_t gk_context_n_seq(const gk_context *c) {
    return c->n_seq;
}

static void truncate_local(gk_context *c, uint32_t n_keep) {
    if (n_keep < c->seq_len[0]) c->seq_len[0] = n_keep;
    c->n_tok = 0;
}

void gk_context_truncate(gk_context *c, uint32_t n_keep) {
    /* a failed send means a broken group: the next collective's watchdog reports it */
    if (leads(c))
        send_cmd(c, CMD_TRUNCATE, (int32_t)(n_keep > INT32_MAX ? INT32_MAX : n_keep), 0, 0, NULL);
    truncate_local(c, n_keep);
}

uint32_t gk_kv_seq_len(const gk_context *c, int seq) {
    return seq >= 0 && (uint32_t)seq < c->n_seq ? c->seq_len[seq] : 0;
}

int gk_kv_seq_keep(gk_context *c, int seq, uint32_t n_keep, gk_err *err) {
    if (seq < 0 || (uint32_t)seq >= c->n_seq)
        return gk_fail(err, "sequence id %d is out of range (%u sequences)", seq, c->n_seq);
    if (c->m->tp.size > 1) {
        if (!leads(c)) return only_rank0(c, "gk_kv_seq_keep", err);
        if (send_cmd(c, CMD_SEQ_KEEP, seq, (int32_t)(n_keep > INT32_MAX ? INT32_MAX : n_keep), 0,
                     err) < 0)
            return -1;
    }
    if (n_keep < c->seq_len[seq]) c->seq_len[seq] = n_keep;
    return 0;
}

static void seq_copy_local(gk_context *c, int src, int dst, uint32_t n) {
    if (src != dst && n > 0)
        for (uint32_t l = 0; l < c->m->hp.n_layer; l++)
            for (int h = 0; h < c->n_kvh; h++) {
                memcpy(kv_at(c, c->kcache, (int)l, dst, h, 0),
                       kv_at(c, c->kcache, (int)l, src, h, 0), (size_t)n * c->kv_head);
                memcpy(kv_at(c, c->vcache, (int)l, dst, h, 0),
                       kv_at(c, c->vcache, (int)l, src, h, 0), (size_t)n * c->kv_head);
            }
    c->seq_len[dst] = n;
}

int gk_kv_seq_copy(gk_context *c, int src, int dst, uint32_t n, gk_err *err) {
    if (src < 0 || (uint32_t)src >= c->n_seq || dst < 0 || (uint32_t)dst >= c->n_seq)
        return gk_fail(err, "sequence ids %d -> %d: out of range (%u sequences)", src, dst,
                       c->n_seq);
    if (n > c->seq_len[src])
        return gk_fail(err, "cannot copy %u positions of sequence %d, which holds %u", n, src,
                       c->seq_len[src]);
    if (c->m->tp.size > 1) {
        if (!leads(c)) return only_rank0(c, "gk_kv_seq_copy", err);
        if (send_cmd(c, CMD_SEQ_COPY, src, dst, (int32_t)n, err) < 0) return -1;
    }
    seq_copy_local(c, src, dst, n);
    return 0;
}

int gk_dist_stop(gk_context *c, gk_err *err) {
    if (!leads(c) || c->stopped) return 0;
    int rc = send_cmd(c, CMD_STOP, 0, 0, 0, err);
    c->stopped = true;
    return rc;
}

int gk_dist_follow(gk_context *c, gk_err *err) {
    const gk_tp *tp = &c->m->tp;
    if (tp->size == 1) return 0;
    if (tp->rank == 0) return gk_fail(err, "gk_dist_follow: rank 0 leads, it does not follow");
    int32_t *toks = c->cmd_buf, *seqs = toks + c->n_ctx;
    uint8_t *keep8 = (uint8_t *)(seqs + c->n_batch);
    bool *keep = (bool *)(keep8 + c->n_batch);
    for (;;) {
        int32_t h[CMD_WORDS];
        /* unbounded wait: rank 0 may wait for its user before the next call */
        if (gk_dist_bcast_cmd(c->dist, h, sizeof h, err) < 0) return -1;
        int rc = 0;
        switch (h[0]) {
        case CMD_STOP:
            c->stopped = true;
            return 0;
        case CMD_DECODE:
            if (h[1] < 1 || (uint32_t)h[1] > c->n_ctx) goto bad;
            if (h[1] <= CMD_INLINE)
                memcpy(toks, h + 4, (size_t)h[1] * sizeof(int32_t));
            else
                rc = gk_dist_bcast(c->dist, toks, (size_t)h[1] * sizeof(int32_t), err);
            if (rc == 0) rc = decode_local(c, toks, h[1], err);
            break;
        case CMD_BATCH: {
            if (h[1] < 1 || (uint32_t)h[1] > c->n_batch) goto bad;
            size_t n = (size_t)h[1];
            rc = gk_dist_bcast(c->dist, toks, n * sizeof(int32_t), err);
            if (rc == 0 && h[2]) rc = gk_dist_bcast(c->dist, seqs, n * sizeof(int32_t), err);
            if (rc == 0 && h[3]) {
                rc = gk_dist_bcast(c->dist, keep8, n, err);
                for (size_t i = 0; i < n; i++) keep[i] = keep8[i] != 0;
            }
            gk_batch b = {
                .n = h[1], .token = toks, .seq = h[2] ? seqs : NULL, .logits = h[3] ? keep : NULL};
            if (rc == 0) rc = decode_batch_local(c, &b, err);
            break;
        }
        case CMD_TRUNCATE:
            truncate_local(c, (uint32_t)h[1]);
            break;
        case CMD_SEQ_KEEP:
            if (h[1] < 0 || (uint32_t)h[1] >= c->n_seq) goto bad;
            if ((uint32_t)h[2] < c->seq_len[h[1]]) c->seq_len[h[1]] = (uint32_t)h[2];
            break;
        case CMD_SEQ_COPY:
            if (h[1] < 0 || (uint32_t)h[1] >= c->n_seq || h[2] < 0 || (uint32_t)h[2] >= c->n_seq ||
                h[3] < 0 || (uint32_t)h[3] > c->seq_len[h[1]])
                goto bad;
            seq_copy_local(c, h[1], h[2], (uint32_t)h[3]);
            break;
        default:
            goto bad;
        }
        if (rc < 0) return gk_err_prefix(err, "rank %d", tp->rank), -1;
        continue;
    bad:
        return gk_fail(err, "rank %d: bad command from rank 0 (%d %d %d %d)", tp->rank, h[0], h[1],
                       h[2], h[3]);
    }
}

uint64_t gk_context_kv_bytes(const gk_context *c) {
    return 2ull * c->m->hp.n_layer * c->n_seq * c->n_ctx * c->kv_row;
}

gk_cache_type gk_context_cache_type(const gk_context *c) {
    return c->cache_type == GK_TYPE_F16    ? GK_CACHE_F16
           : c->cache_type == GK_TYPE_Q8_0 ? GK_CACHE_Q8_0
                                           : GK_CACHE_F32;
}

gk_decode_stats gk_context_stats(const gk_context *c) {
    gk_decode_stats s = c->stats;
    s.pool_runs = (double)(gk_pool_runs(c->pool) - c->pool_runs0);
    return s;
}
void gk_context_stats_reset(gk_context *c) {
    memset(&c->stats, 0, sizeof c->stats);
    c->pool_runs0 = gk_pool_runs(c->pool);
}

const char *gk_cache_type_name(gk_cache_type t) {
    switch (t) {
    case GK_CACHE_F32:
        return "f32";
    case GK_CACHE_F16:
        return "f16";
    case GK_CACHE_Q8_0:
        return "q8_0";
    default:
        return "default";
    }
}

int gk_cache_type_from_name(const char *name) {
    if (!strcmp(name, "f32")) return GK_CACHE_F32;
    if (!strcmp(name, "f16")) return GK_CACHE_F16;
    if (!strcmp(name, "q8_0")) return GK_CACHE_Q8_0;
    return -1;
}

/* ------------------------------------------------------------- context --- */

static gk_dtype cache_dtype(gk_cache_type t, gk_numerics numerics) {
    switch (t) {
    case GK_CACHE_F32:
        return GK_TYPE_F32;
    case GK_CACHE_F16:
        return GK_TYPE_F16;
    case GK_CACHE_Q8_0:
        return GK_TYPE_Q8_0;
    default: /* llama.cpp keeps an f16 cache by default; the reference code keeps fp32 here */
        return numerics == GK_NUMERICS_LLAMACPP ? GK_TYPE_F16 : GK_TYPE_F32;
    }
}

size_t gk_context_arena_bytes(const gk_ctx_dims *x, size_t *sizes) {
    const size_t B = x->B;
    size_t max_in = x->d;
    if (x->nq > max_in) max_in = x->nq;
    if (x->F > max_in) max_in = x->F;
    if (x->Fd > max_in) max_in = x->Fd;
    /* scratch sizes in floats, in the order context_new carves them (all well below
     * 2^60 thanks to the hyper-parameter limits checked at load) */
    const size_t s[GK_CTX_N_SCRATCH] = {B * x->d,
                                        B * x->d,
                                        B * x->d,
                                        B * x->nq,
                                        B * x->nkv,
                                        B * x->nkv,
                                        B * x->nq,
                                        B * x->d,
                                        B * x->d,
                                        x->nt * B * x->d,
                                        B * x->F,
                                        B * x->F,
                                        B * x->Fd,
                                        B * x->Fd,
                                        B * x->E,
                                        B * x->half,
                                        B * x->half,
                                        x->nt * x->n_ctx * GK_ATTN_QMAX,
                                        x->nt * x->head_dim,
                                        x->n_logit_rows * x->V,
                                        x->E * B,
                                        x->E * B,
                                        x->E,
                                        B,
                                        B,
                                        B,
                                        B,
                                        x->n_seq,
                                        (B * x->n_head * x->qconv_head + 3) / 4};
    size_t total = 0;
    for (int i = 0; i < GK_CTX_N_SCRATCH; i++) {
        if (sizes) sizes[i] = s[i];
        total += (s[i] + 15) / 16 * 16;
    }
    return total * sizeof(float) + gk_matmul_qbuf_size((int64_t)max_in, (int)B) + 64;
}

size_t gk_context_tp_bytes(const gk_ctx_dims *x, int size, int rank, size_t v_n, size_t n_vocab,
                           size_t parts[4]) {
    size_t p[4] = {0};
    if (size > 1) {
        p[0] = x->n_logit_rows * (v_n + (rank == 0 ? n_vocab : 0)) * sizeof(float) + 64;
        p[1] = gk_dist_allreduce_scratch(size, x->B * x->d, GK_DIST_WIRE_F32);
        p[2] = (size_t)size * sizeof(uint64_t);
        p[3] = (x->n_ctx + x->B) * sizeof(int32_t) + 2 * x->B + 16;
    }
    if (parts) memcpy(parts, p, sizeof p);
    return p[0] + p[1] + p[2] + p[3];
}

size_t gk_context_chunk_bytes(const gk_ctx_dims *x, size_t k, size_t *n_parts, size_t *cx_size,
                              size_t *cq_size) {
    if (k < 1) k = 1;
    size_t cw = x->nq > x->F ? x->nq : x->F;
    if (x->Fd > cw) cw = x->Fd;
    cw /= k;
    size_t cx = k > 1 ? (x->B * cw + 15) / 16 * 16 : 0;
    size_t cq = (gk_matmul_qbuf_size((int64_t)cw, (int)x->B) + 63) / 64 * 64;
    size_t np = 2 * (k - 1) * x->B * x->d;
    if (n_parts) *n_parts = np;
    if (cx_size) *cx_size = cx;
    if (cq_size) *cq_size = cq;
    return (np + x->nt * cx) * sizeof(float) + x->nt * cq + 64;
}

static gk_context *context_new(gk_model *m, const gk_context_params *params, gk_err *err) {
    gk_context_params p = params ? *params : gk_context_default_params();
    const gk_hparams *hp = &m->hp;
    const gk_tp *tp = &m->tp;
    gk_context *c = gk_calloc(1, sizeof *c, err);
    if (!c) return NULL;
    c->m = m;
    c->n_ctx = p.n_ctx ? p.n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    if (c->n_ctx > 1u << 24) {
        gk_fail(err, "context length %u is too large", c->n_ctx);
        goto fail;
    }
    c->n_seq = p.n_seq ? p.n_seq : 1;
    if (c->n_seq > 1024) {
        gk_fail(err, "%u sequences is too many (at most 1024)", c->n_seq);
        goto fail;
    }
    if ((int)p.cache_type < GK_CACHE_DEFAULT || (int)p.cache_type > GK_CACHE_Q8_0) {
        gk_fail(err, "unknown KV cache type %d", (int)p.cache_type);
        goto fail;
    }
    c->cache_type = cache_dtype(p.cache_type, m->numerics);
    if (gk_row_size(c->cache_type, hp->head_dim) == 0) {
        gk_fail(err, "KV cache type %s needs a head size that is a multiple of %lld (it is %u)",
                gk_type_name(c->cache_type), (long long)gk_type_traits_of(c->cache_type)->blck_size,
                hp->head_dim);
        goto fail;
    }
    c->n_batch = p.n_batch ? p.n_batch : 64;
    if (c->n_batch > c->n_ctx) c->n_batch = c->n_ctx;
    c->all_logits = p.all_logits;
    int nt = p.n_threads > 0 ? p.n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (nt < 1) nt = 1;
    if (nt > 256) nt = 256;
    if ((int)hp->n_expert_used > 64) {
        gk_fail(err, "expert_used_count %u exceeds this engine's limit of 64", hp->n_expert_used);
        goto fail;
    }

    if (p.dist_wire < GK_DIST_WIRE_F32 || p.dist_wire > GK_DIST_WIRE_Q8_0) {
        gk_fail(err, "unknown dist wire format %d", p.dist_wire);
        goto fail;
    }
    if (tp->size > 1 && gk_dist_size(tp->dist) != tp->size) {
        gk_fail(err,
                "the model holds rank %d's slices of a %d-way split but no process group "
                "of %d ranks (load it with gk_model_params.dist)",
                tp->rank, tp->size, tp->size);
        goto fail;
    }
    c->dist = tp->dist;
    c->fault_layer = -1;
    const char *fault = getenv("GK_DIST_FAULT");
    int f_rank, f_layer;
    if (tp->size > 1 && fault && sscanf(fault, "%d:%d", &f_rank, &f_layer) == 2 &&
        f_rank == tp->rank)
        c->fault_layer = f_layer;
    c->wire = (gk_dist_wire)p.dist_wire;
    c->dist_check = p.dist_check;
    /* this rank's heads and widths (the whole model with one process); the
     * followers keep no full-vocabulary logits */
    const size_t B = c->n_batch, d = hp->n_embd, nq = (size_t)tp->n_head * hp->head_dim,
                 nkv = (size_t)tp->n_head_kv * hp->head_dim, F = tp->n_ff_exp,
                 Fd = hp->variant == GK_VARIANT_GROK2 ? tp->n_ff : 0, E = hp->n_expert,
                 V = tp->rank != 0 ? 0 : hp->n_vocab, half = hp->n_rot / 2;
    c->kv_row = gk_row_size(c->cache_type, (int64_t)nkv);
    c->n_kvh = (int)tp->n_head_kv;
    c->kv_head = gk_row_size(c->cache_type, (int64_t)hp->head_dim);
    size_t kv = (size_t)hp->n_layer * c->n_seq * c->n_ctx;
    if (kv > SIZE_MAX / 4 / c->kv_row) {
        gk_fail(err, "KV cache of %u sequences x %u tokens is too large", c->n_seq, c->n_ctx);
        goto fail;
    }
    c->n_logit_rows = c->all_logits ? (int)B : (int)(c->n_seq < B ? c->n_seq : B);
    const gk_dtype qdt = gk_type_traits_of(c->cache_type)->vec_dot_type;
    c->qconv_head = qdt == GK_TYPE_F32 ? 0 : gk_row_size(qdt, hp->head_dim);
    gk_ctx_dims dims = {.B = B,
                        .d = d,
                        .nq = nq,
                        .nkv = nkv,
                        .F = F,
                        .Fd = Fd,
                        .E = E,
                        .half = half,
                        .nt = (size_t)nt,
                        .n_ctx = c->n_ctx,
                        .head_dim = hp->head_dim,
                        .n_head = tp->n_head,
                        .n_logit_rows = (size_t)c->n_logit_rows,
                        .V = V,
                        .n_seq = c->n_seq,
                        .qconv_head = c->qconv_head};
    size_t sizes[GK_CTX_N_SCRATCH];
    size_t total = gk_context_arena_bytes(&dims, sizes);
    c->arena = gk_malloc_aligned(total, err);
    /* in 2 MiB pages: in 4 KiB ones, decode faulted a new page into every layer's
     * K and V every few tokens (8 at f16 here), some 0.4 ms each time */
    c->kcache = gk_malloc_huge(kv * c->kv_row, err);
    c->vcache = gk_malloc_huge(kv * c->kv_row, err);
    bool tp_ok = true;
    if (tp->size > 1) {
        size_t parts[4];
        gk_context_tp_bytes(&dims, tp->size, tp->rank, tp->v_n, hp->n_vocab, parts);
        c->logits_loc = gk_malloc(parts[0], err);
        c->ar_scratch = gk_malloc_aligned(parts[1], err);
        c->hashes = gk_malloc(parts[2], err);
        c->cmd_buf = gk_malloc(parts[3], err);
        tp_ok = c->logits_loc && c->ar_scratch && c->hashes && c->cmd_buf;
    }
    if (!c->arena || !c->kcache || !c->vcache || !tp_ok) {
        gk_err_prefix(err, "context of %u x %u tokens", c->n_seq, c->n_ctx);
        goto fail;
    }
    float *a = c->arena;
    float **dst[] = {&c->x,    &c->xn,     &c->tmp,     &c->q,        &c->k,        &c->v,
                     &c->att,  &c->moe,    &c->xe,      &c->cy,       &c->h1,       &c->h3,
                     &c->g,    &c->u,      &c->rl,      &c->rope_cos, &c->rope_sin, &c->scores,
                     &c->vrow, &c->logits, &c->exp_gate};
    size_t i = 0;
    for (; i < sizeof dst / sizeof dst[0]; i++) {
        *dst[i] = a;
        a += (sizes[i] + 15) / 16 * 16;
    }
    int32_t **idst[] = {&c->exp_tok, &c->exp_n, &c->tok_seq, &c->tok_pos, &c->logit_row, &c->kept};
    for (size_t k = 0; k < sizeof idst / sizeof idst[0]; k++, i++) {
        *idst[k] = (int32_t *)a;
        a += (sizes[i] + 15) / 16 * 16;
    }
    c->seq_len = (uint32_t *)a, a += (sizes[i++] + 15) / 16 * 16;
    c->qconv = c->qconv_head ? (uint8_t *)a : NULL, a += (sizes[i++] + 15) / 16 * 16;
    c->qbuf = (uint8_t *)a;
    memset(c->seq_len, 0, c->n_seq * sizeof *c->seq_len);
    c->pool = gk_pool_new(nt, err);
    if (!c->pool) goto fail;
    c->nt = gk_pool_size(c->pool);
    if (gk_model_pack(m, c->pool, err) < 0) goto fail;
    /* the summation tree's chunks: the other chunk sums of two products, and per
     * thread a chunk's packed columns and its converted activations */
    const size_t k = tp->sum_k > 1 ? tp->sum_k : 1;
    dims.nt = (size_t)c->nt;
    size_t n_parts;
    c->chunk_mem = gk_malloc_aligned(
        gk_context_chunk_bytes(&dims, k, &n_parts, &c->cx_size, &c->cq_size), err);
    if (!c->chunk_mem) {
        gk_err_prefix(err, "context of %u x %u tokens", c->n_seq, c->n_ctx);
        goto fail;
    }
    c->parts = c->chunk_mem;
    c->cx = c->parts + n_parts;
    c->cq = (uint8_t *)(c->cx + (size_t)c->nt * c->cx_size);
    return c;
fail:
    gk_context_free(c);
    return NULL;
}

/* Collective with several ranks: every rank learns whether all made their
 * context with the same parameters (threads may differ). */
gk_context *gk_context_new(gk_model *m, const gk_context_params *params, gk_err *err) {
    if (m->tp.size == 1) return context_new(m, params, err);
    gk_err mine = {{0}};
    gk_context *c = context_new(m, params, &mine);
    gk_context_params p = params ? *params : gk_context_default_params();
    uint64_t ident[4] = {
        (uint64_t)p.n_ctx << 32 | p.n_batch, (uint64_t)p.n_seq << 32 | (uint64_t)p.cache_type,
        (uint64_t)p.all_logits << 32 | (uint64_t)p.dist_check, (uint64_t)p.dist_wire};
    if (gk_dist_agree(m->tp.dist, c != NULL, mine.msg, ident, "making the context", err) < 0) {
        if (c) c->stopped = true; /* nobody follows */
        gk_context_free(c);
        return NULL;
    }
    return c;
}

void gk_context_free(gk_context *c) {
    if (!c) return;
    gk_dist_stop(c, NULL);
    free(c->logits_loc);
    gk_free_aligned(c->ar_scratch);
    free(c->hashes);
    free(c->cmd_buf);
    gk_pool_free(c->pool);
    gk_free_aligned(c->arena);
    gk_free_aligned(c->chunk_mem);
    gk_free_aligned(c->kcache);
    gk_free_aligned(c->vcache);
    free(c);
}
