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
 */
#include "dist/dist.h"
#include "model/model.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct gk_context {
    gk_model *m;
    gk_pool *pool;
    uint32_t n_ctx, n_batch, n_past;
    bool all_logits;
    int n_out; /* tokens of the last gk_decode call (capped at n_batch with all_logits) */
    float *kcache, *vcache; /* [n_layer][n_ctx][n_head_kv * head_dim], K after RoPE */
    /* scratch, [n_batch][...] each */
    float *x, *xn, *tmp, *q, *k, *v, *att, *moe, *xe, *ye, *h1, *h3, *g, *u, *rl;
    float *rope_cos, *rope_sin; /* [n_batch][n_rot/2] */
    float *scores;              /* [n_threads][n_ctx] */
    uint8_t *qbuf;              /* activations converted to a weight's vec_dot_type */
    int32_t *exp_tok;           /* [n_expert][n_batch]: tokens routed to each expert */
    float *exp_gate;            /* [n_expert][n_batch]: their gate weights */
    int32_t *exp_n;             /* [n_expert] */
    float *logits;              /* [n_batch or 1][n_vocab] */
    void *arena;                /* one allocation for the scratch above */
    /* tensor parallelism (m->tp.size > 1) */
    gk_dist *dist;
    gk_dist_wire wire;
    bool dist_check, stopped;
    float *logits_loc; /* [rows][v_n]: this rank's vocabulary slice */
    void *ar_scratch;  /* gk_dist_allreduce's, for the largest wire (the embedding's fp32) */
    uint64_t *hashes;  /* [size]: --dist-check */
};

gk_context_params gk_context_default_params(void) {
    return (gk_context_params){.n_ctx = 0, .n_batch = 0, .n_threads = 0, .all_logits = false};
}

/* ------------------------------------------------------------- helpers --- */

static void matmul_w(gk_context *c, float *y, const gk_weight *w, const float *x, int T) {
    gk_matmul(c->pool, y, w->data, w->type, w->nb_row, w->ne[1], x, w->ne[0], T, c->qbuf);
}

/* Matrix e of an expert stack. */
static void matmul_expert(gk_context *c, float *y, const gk_weight *w, int e, const float *x,
                          int T) {
    gk_matmul(c->pool, y, w->data + (size_t)e * w->nb_mat, w->type, w->nb_row, w->ne[1], x,
              w->ne[0], T, c->qbuf);
}

static void rope_apply(gk_context *c, float *v, int T, int n_heads) {
    const gk_hparams *hp = &c->m->hp;
    gk_rope_apply(v, T, n_heads, (int)hp->head_dim, (int)hp->n_rot, c->rope_cos, c->rope_sin);
}

/* ------------------------------------------------------------- attention --- */

typedef struct {
    gk_context *c;
    int layer, T;
} attn_job;

/* One (token, head) pair per work item: q.k * scale -> softcap -> temperature ->
 * softmax -> weighted sum of V (spec 3.2). */
static void attn_part(void *arg, int ith, int nth) {
    attn_job *j = arg;
    gk_context *c = j->c;
    const gk_hparams *hp = &c->m->hp;
    const gk_tp *tp = &c->m->tp; /* this rank's heads (all of them with one process) */
    const int hd = (int)hp->head_dim, nh = (int)tp->n_head,
              group = (int)(hp->n_head / hp->n_head_kv);
    const size_t kv_row = (size_t)tp->n_head_kv * hd;
    const float *K = c->kcache + (size_t)j->layer * c->n_ctx * kv_row;
    const float *V = c->vcache + (size_t)j->layer * c->n_ctx * kv_row;
    const float cap = hp->attn_softcap, scale = hp->attn_out_scale;
    const uint32_t tlen = c->m->cfg.attn_temp_len;
    gk_vec_dot_fn dot = gk_type_traits_of(GK_TYPE_F32)->vec_dot;
    float *s = c->scores + (size_t)ith * c->n_ctx;
    int64_t lo, hi;
    gk_split((int64_t)j->T * nh, ith, nth, &lo, &hi);
    for (int64_t item = lo; item < hi; item++) {
        int t = (int)(item / nh), h = (int)(item % nh);
        uint32_t p = c->n_past + (uint32_t)t; /* absolute 0-based position */
        const float *q = c->q + ((size_t)t * nh + h) * hd;
        const size_t koff = (size_t)(h / group) * hd;
        /* xAI temperature: log2(p)/log2(L) past L, applied after the cap. */
        float temp = tlen && p > tlen ? (float)(log2((double)p) / log2((double)tlen)) : 1.0f;
        float mx = -INFINITY;
        for (uint32_t k = 0; k <= p; k++) {
            float v = dot(hd, q, K + k * kv_row + koff) * scale;
            v = gk_softcap(v, cap) * temp;
            s[k] = v;
            mx = v > mx ? v : mx;
        }
        double sum = 0.0;
        for (uint32_t k = 0; k <= p; k++) {
            s[k] = expf(s[k] - mx);
            sum += s[k];
        }
        float inv = (float)(1.0 / sum);
        float *out = c->att + ((size_t)t * nh + h) * hd;
        memset(out, 0, (size_t)hd * sizeof(float));
        for (uint32_t k = 0; k <= p; k++) {
            float w = s[k] * inv;
            const float *vr = V + k * kv_row + koff;
            for (int i = 0; i < hd; i++) out[i] += w * vr[i];
        }
    }
}

/* Sums a partial result over the ranks (tensor parallelism; no-op alone). */
static int allreduce(gk_context *c, float *buf, size_t n, gk_dist_wire wire, gk_err *err) {
    if (c->m->tp.size == 1) return 0;
    return gk_dist_allreduce(c->dist, buf, n, wire, c->ar_scratch, err);
}

static int attention(gk_context *c, int layer, int T, gk_err *err) {
    const gk_hparams *hp = &c->m->hp;
    const gk_tp *tp = &c->m->tp;
    const gk_layer *L = &c->m->layers[layer];
    const int64_t d = hp->n_embd, nkv = (int64_t)tp->n_head_kv * hp->head_dim;
    for (int t = 0; t < T; t++)
        gk_rmsnorm(c->xn + t * d, c->x + t * d, L->attn_norm, d, hp->norm_eps);
    matmul_w(c, c->q, &L->wq, c->xn, T);
    matmul_w(c, c->k, &L->wk, c->xn, T);
    matmul_w(c, c->v, &L->wv, c->xn, T);
    rope_apply(c, c->q, T, (int)tp->n_head);
    rope_apply(c, c->k, T, (int)tp->n_head_kv);
    size_t base = ((size_t)layer * c->n_ctx + c->n_past) * (size_t)nkv;
    memcpy(c->kcache + base, c->k, (size_t)T * nkv * sizeof(float));
    memcpy(c->vcache + base, c->v, (size_t)T * nkv * sizeof(float));
    attn_job j = {.c = c, .layer = layer, .T = T};
    gk_pool_run(c->pool, attn_part, &j);
    matmul_w(c, c->tmp, &L->wo, c->att, T);
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
        /* top-k by selection; g[e] < 0 marks a taken expert */
        int chosen[64];
        float w[64], wsum = 0.0f;
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int e = 0; e < E; e++)
                if (g[e] >= 0.0f && (best < 0 || g[e] > g[best])) best = e;
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

/* out[t] = sum over chosen experts e of gate * W2_e (GELU(W1_e h) * W3_e h). */
static void moe(gk_context *c, const gk_layer *L, float *out, int T) {
    const gk_hparams *hp = &c->m->hp;
    const int64_t d = hp->n_embd, F = c->m->tp.n_ff_exp; /* this rank's share of the width */
    matmul_w(c, c->rl, &L->router, c->xn, T);
    route(c, T);
    memset(out, 0, (size_t)T * d * sizeof(float));
    for (int e = 0; e < (int)hp->n_expert; e++) {
        int n = c->exp_n[e];
        if (n == 0) continue;
        const int32_t *toks = c->exp_tok + (size_t)e * c->n_batch;
        const float *gates = c->exp_gate + (size_t)e * c->n_batch;
        for (int i = 0; i < n; i++)
            memcpy(c->xe + (size_t)i * d, c->xn + (size_t)toks[i] * d, (size_t)d * sizeof(float));
        matmul_expert(c, c->h1, &L->gate_exps, e, c->xe, n);
        matmul_expert(c, c->h3, &L->up_exps, e, c->xe, n);
        gk_geglu(c->pool, c->h1, c->h3, (int64_t)n * F, c->m->cfg.gelu_erf);
        matmul_expert(c, c->ye, &L->down_exps, e, c->h1, n);
        for (int i = 0; i < n; i++) {
            float *o = out + (size_t)toks[i] * d;
            const float *y = c->ye + (size_t)i * d;
            for (int64_t k = 0; k < d; k++) o[k] += gates[i] * y[k];
        }
    }
}

static int ffn(gk_context *c, int layer, int T, gk_err *err) {
    const gk_hparams *hp = &c->m->hp;
    const gk_layer *L = &c->m->layers[layer];
    const int64_t d = hp->n_embd;
    for (int t = 0; t < T; t++)
        gk_rmsnorm(c->xn + t * d, c->x + t * d, L->ffn_norm, d, hp->norm_eps);
    moe(c, L, c->moe, T);
    if (hp->variant == GK_VARIANT_GROK2) {
        /* dense residual MLP on the same input, then (MLP + MoE)/sqrt(2) (spec 4.3) */
        matmul_w(c, c->g, &L->ffn_gate, c->xn, T);
        matmul_w(c, c->u, &L->ffn_up, c->xn, T);
        gk_geglu(c->pool, c->g, c->u, (int64_t)T * c->m->tp.n_ff, c->m->cfg.gelu_erf);
        matmul_w(c, c->tmp, &L->ffn_down, c->g, T);
        for (int64_t i = 0; i < T * d; i++)
            c->moe[i] = (c->tmp[i] + c->moe[i]) / 1.4142135623730951f;
    }
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

/* The logits of n tokens from xn: this rank's vocabulary rows, scaled and capped,
 * then (tensor parallel) gathered into c->logits on rank 0. */
static int output_logits(gk_context *c, int n, gk_err *err) {
    const gk_model *m = c->m;
    const gk_hparams *hp = &m->hp;
    const gk_tp *tp = &m->tp;
    float *out = tp->size == 1 ? c->logits : c->logits_loc;
    matmul_w(c, out, &m->output, c->xn, n);
    const float fcap = hp->final_softcap;
    for (int64_t i = 0; i < (int64_t)n * tp->v_n; i++) {
        float v = out[i] * hp->logit_scale;
        out[i] = gk_softcap(v, fcap);
    }
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

/* Runs T <= n_batch tokens at positions n_past.. and fills the logits. */
static int forward(gk_context *c, const int32_t *tokens, int T, gk_err *err) {
    const gk_model *m = c->m;
    const gk_hparams *hp = &m->hp;
    const gk_tp *tp = &m->tp;
    const int64_t d = hp->n_embd;
    const gk_type_traits *et = gk_type_traits_of(m->tok_embd.type);
    double t_start = gk_time_s();
    for (int t = 0; t < T; t++) {
        float *x = c->x + t * d;
        uint32_t row = (uint32_t)tokens[t] - tp->v_lo; /* this rank's rows: [0, v_n) */
        if (row >= tp->v_n) { /* another rank's vocabulary slice: it adds the row */
            memset(x, 0, (size_t)d * sizeof(float));
            continue;
        }
        et->to_float(m->tok_embd.data + (size_t)row * m->tok_embd.nb_row, x, d);
        for (int64_t i = 0; i < d; i++) x[i] *= hp->embedding_scale;
    }
    /* one rank holds each row, the others add zeros: exact in any wire, so fp32 */
    if (allreduce(c, c->x, (size_t)T * d, GK_DIST_WIRE_F32, err) < 0) return -1;
    gk_rope_tables(&m->cfg.rope, c->n_past, T, c->rope_cos, c->rope_sin);
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        if (attention(c, (int)l, T, err) < 0 || ffn(c, (int)l, T, err) < 0) return -1;
        if (c->dist_check && tp->size > 1 && check_layer(c, l, T, err) < 0) return -1;
    }
    /* logits of every token, or of the last one only */
    int first = c->all_logits ? 0 : T - 1, n = T - first;
    for (int t = 0; t < n; t++)
        gk_rmsnorm(c->xn + t * d, c->x + (first + t) * d, m->output_norm, d, hp->norm_eps);
    if (output_logits(c, n, err) < 0) return -1;
    c->n_past += (uint32_t)T;
    if (tp->size > 1) {
        c->dist->st.tokens += (uint64_t)T;
        c->dist->st.forward_s += gk_time_s() - t_start;
    }
    return 0;
}

static int decode_run(gk_context *c, const int32_t *tokens, int n, gk_err *err) {
    for (int done = 0; done < n;) {
        int T = n - done < (int)c->n_batch ? n - done : (int)c->n_batch;
        if (forward(c, tokens + done, T, err) < 0) return -1;
        done += T;
    }
    c->n_out = n;
    return 0;
}

/* ------------------------------------------------- rank 0's commands --- */

/* Rank 0 sends each call to the followers: a header, then its payload. */
enum { CMD_STOP = 1, CMD_DECODE = 2, CMD_TRUNCATE = 3 };

static bool leads(const gk_context *c) {
    return c->m->tp.size > 1 && c->m->tp.rank == 0;
}

static int send_cmd(gk_context *c, int32_t op, int32_t a, int32_t b, const int32_t *payload,
                    gk_err *err) {
    if (c->stopped) return gk_fail(err, "the followers were stopped (gk_dist_stop)");
    int32_t hdr[4] = {op, a, b, 0};
    if (gk_dist_bcast(c->dist, hdr, sizeof hdr, true, err) < 0) return -1;
    if (payload &&
        gk_dist_bcast(c->dist, (void *)payload, (size_t)a * sizeof(int32_t), true, err) < 0)
        return -1;
    return 0;
}

int gk_dist_stop(gk_context *c, gk_err *err) {
    if (!leads(c) || c->stopped) return 0;
    int rc = send_cmd(c, CMD_STOP, 0, 0, NULL, err);
    c->stopped = true;
    return rc;
}

static void truncate_local(gk_context *c, uint32_t n_keep) {
    if (n_keep < c->n_past) c->n_past = n_keep;
    c->n_out = 0;
}

int gk_dist_follow(gk_context *c, gk_err *err) {
    const gk_tp *tp = &c->m->tp;
    if (tp->size == 1) return 0;
    if (tp->rank == 0) return gk_fail(err, "gk_dist_follow: rank 0 leads, it does not follow");
    int32_t *toks = gk_malloc((size_t)c->n_ctx * sizeof(int32_t), err);
    if (!toks) return -1;
    int rc = -1;
    for (;;) {
        int32_t hdr[4];
        /* unbounded wait: rank 0 may wait for its user before the next call */
        if (gk_dist_bcast(c->dist, hdr, sizeof hdr, false, err) < 0) break;
        if (hdr[0] == CMD_STOP) {
            c->stopped = true;
            rc = 0;
            break;
        } else if (hdr[0] == CMD_DECODE) {
            if (hdr[1] < 1 || (uint32_t)hdr[1] > c->n_ctx) {
                gk_fail(err, "rank %d: bad command from rank 0 (decode of %d tokens)", tp->rank,
                        hdr[1]);
                break;
            }
            if (gk_dist_bcast(c->dist, toks, (size_t)hdr[1] * sizeof(int32_t), true, err) < 0 ||
                decode_run(c, toks, hdr[1], err) < 0)
                break;
        } else if (hdr[0] == CMD_TRUNCATE) {
            truncate_local(c, (uint32_t)hdr[1]);
        } else {
            gk_fail(err, "rank %d: unknown command %d from rank 0", tp->rank, hdr[0]);
            break;
        }
    }
    free(toks);
    return rc;
}

int gk_decode(gk_context *c, const int32_t *tokens, int n, gk_err *err) {
    if (n <= 0) return gk_fail(err, "decode: no tokens given");
    if ((uint64_t)c->n_past + (uint64_t)n > c->n_ctx)
        return gk_fail(err,
                       "context length exceeded: %u tokens in the cache + %d new > %u "
                       "(raise --ctx-size)",
                       c->n_past, n, c->n_ctx);
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
        if (c->m->tp.rank != 0)
            return gk_fail(err,
                           "gk_decode on rank %d: only rank 0 calls it (the other ranks "
                           "run gk_dist_follow)",
                           c->m->tp.rank);
        if (send_cmd(c, CMD_DECODE, n, 0, tokens, err) < 0) return -1;
    }
    return decode_run(c, tokens, n, err);
}

const float *gk_get_logits(const gk_context *c, int i) {
    if (i < 0 || i >= c->n_out || c->m->tp.rank != 0) return NULL; /* rank 0 has them */
    if (c->all_logits) return c->logits + (size_t)i * c->m->hp.n_vocab;
    return i == c->n_out - 1 ? c->logits : NULL;
}

uint32_t gk_context_n_past(const gk_context *c) {
    return c->n_past;
}
uint32_t gk_context_n_ctx(const gk_context *c) {
    return c->n_ctx;
}
void gk_context_truncate(gk_context *c, uint32_t n_keep) {
    /* a failed send means a broken group: the next collective's watchdog reports it */
    if (leads(c))
        send_cmd(c, CMD_TRUNCATE, (int32_t)(n_keep > INT32_MAX ? INT32_MAX : n_keep), 0, NULL,
                 NULL);
    truncate_local(c, n_keep);
}
uint64_t gk_context_kv_bytes(const gk_context *c) {
    const gk_hparams *hp = &c->m->hp;
    return 2ull * hp->n_layer * c->n_ctx * c->m->tp.n_head_kv * hp->head_dim * sizeof(float);
}

/* ------------------------------------------------------------- context --- */

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
        gk_fail(err, "the model holds rank %d's slices of a %d-way split but no process group "
                     "of %d ranks (load it with gk_model_params.dist)",
                tp->rank, tp->size, tp->size);
        goto fail;
    }
    c->dist = tp->dist;
    c->wire = (gk_dist_wire)p.dist_wire;
    c->dist_check = p.dist_check;
    /* this rank's heads and widths (the whole model with one process) */
    const size_t B = c->n_batch, d = hp->n_embd, nq = (size_t)tp->n_head * hp->head_dim,
                 nkv = (size_t)tp->n_head_kv * hp->head_dim, F = tp->n_ff_exp,
                 Fd = hp->variant == GK_VARIANT_GROK2 ? tp->n_ff : 0, E = hp->n_expert,
                 V = tp->size > 1 && tp->rank != 0 ? 0 : hp->n_vocab, half = hp->n_rot / 2;
    size_t max_in = d;
    if (nq > max_in) max_in = nq;
    if (F > max_in) max_in = F;
    if (Fd > max_in) max_in = Fd;
    size_t kv = (size_t)hp->n_layer * c->n_ctx * nkv;
    size_t n_logit_rows = c->all_logits ? B : 1;
    /* scratch sizes in floats, in the order carved below (all well below 2^60 thanks to
     * the hyper-parameter limits checked at load) */
    size_t sizes[] = {B * d,
                      B * d,
                      B * d,
                      B * nq,
                      B * nkv,
                      B * nkv,
                      B * nq,
                      B * d,
                      B * d,
                      B * d,
                      B * F,
                      B * F,
                      B * Fd,
                      B * Fd,
                      B * E,
                      B * half,
                      B * half,
                      (size_t)nt * c->n_ctx,
                      n_logit_rows * V,
                      E * B,
                      E * B,
                      E};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += (sizes[i] + 15) / 16 * 16;
    total = total * sizeof(float) + gk_matmul_qbuf_size((int64_t)max_in, (int)B) + 64;
    c->arena = gk_malloc_aligned(total, err);
    c->kcache = gk_malloc_aligned(kv * sizeof(float), err);
    c->vcache = gk_malloc_aligned(kv * sizeof(float), err);
    bool tp_ok = true;
    if (tp->size > 1) {
        /* this rank's logits, then (rank 0) every rank's blocks as gathered */
        size_t rows = n_logit_rows;
        c->logits_loc = gk_malloc(
            rows * (tp->v_n + (tp->rank == 0 ? hp->n_vocab : 0)) * sizeof(float) + 64, err);
        c->ar_scratch = gk_malloc_aligned(gk_dist_allreduce_scratch(tp->size, B * d, GK_DIST_WIRE_F32), err);
        c->hashes = gk_malloc((size_t)tp->size * sizeof(uint64_t), err);
        tp_ok = c->logits_loc && c->ar_scratch && c->hashes;
    }
    if (!c->arena || !c->kcache || !c->vcache || !tp_ok) {
        gk_err_prefix(err, "context of %u tokens", c->n_ctx);
        goto fail;
    }
    float *a = c->arena;
    float **dst[] = {&c->x,        &c->xn,       &c->tmp,    &c->q,      &c->k,
                     &c->v,        &c->att,      &c->moe,    &c->xe,     &c->ye,
                     &c->h1,       &c->h3,       &c->g,      &c->u,      &c->rl,
                     &c->rope_cos, &c->rope_sin, &c->scores, &c->logits, &c->exp_gate};
    size_t i = 0;
    for (; i < sizeof dst / sizeof dst[0]; i++) {
        *dst[i] = a;
        a += (sizes[i] + 15) / 16 * 16;
    }
    c->exp_tok = (int32_t *)a, a += (sizes[i++] + 15) / 16 * 16;
    c->exp_n = (int32_t *)a, a += (sizes[i++] + 15) / 16 * 16;
    c->qbuf = (uint8_t *)a;
    c->pool = gk_pool_new(nt, err);
    if (!c->pool) goto fail;
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
    uint64_t ident[4] = {p.n_ctx, p.n_batch, (uint64_t)p.all_logits << 32 | (uint64_t)p.dist_check,
                         (uint64_t)p.dist_wire};
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
    gk_pool_free(c->pool);
    gk_free_aligned(c->arena);
    gk_free_aligned(c->kcache);
    gk_free_aligned(c->vcache);
    free(c);
}
