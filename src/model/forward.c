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
#include "model/model.h"

#include <math.h>
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
    /* KV cache [n_layer][n_seq][n_ctx] rows of n_head_kv * head_dim elements of
     * cache_type, K after RoPE */
    gk_dtype cache_type;
    size_t kv_row; /* bytes of one row */
    uint8_t *kcache, *vcache;
    /* the last batch */
    int n_tok;                  /* its tokens */
    int out_base;               /* gk_get_logits index of its first token */
    int32_t *tok_seq, *tok_pos; /* [n_batch] sequence and position of each token */
    int32_t *logit_row;         /* [n_batch] row of c->logits, or -1 */
    int32_t *kept;              /* [n_batch] tokens whose logits are kept, in order */
    int n_logit_rows;           /* capacity of c->logits */
    /* scratch, [n_batch][...] each */
    float *x, *xn, *tmp, *q, *k, *v, *att, *moe, *xe, *ye, *h1, *h3, *g, *u, *rl;
    float *rope_cos, *rope_sin; /* [n_batch][n_rot/2] */
    float *scores;              /* [n_threads][n_ctx] */
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

static void matmul_w(gk_context *c, float *y, const gk_weight *w, const float *x, int T) {
    gk_matmul(c->pool, y, w->data, w->type, w->nb_row, w->ne[1], x, w->ne[0], T, c->qbuf);
    c->stats.matmul_flops += 2.0 * (double)w->ne[0] * (double)w->ne[1] * T;
    c->stats.weight_bytes += (double)w->nb_row * (double)w->ne[1];
}

/* Matrix e of an expert stack. */
static void matmul_expert(gk_context *c, float *y, const gk_weight *w, int e, const float *x,
                          int T) {
    gk_matmul(c->pool, y, w->data + (size_t)e * w->nb_mat, w->type, w->nb_row, w->ne[1], x,
              w->ne[0], T, c->qbuf);
    c->stats.matmul_flops += 2.0 * (double)w->ne[0] * (double)w->ne[1] * T;
    c->stats.weight_bytes += (double)w->nb_row * (double)w->ne[1];
}

static void rope_apply(gk_context *c, float *v, int T, int n_heads) {
    const gk_hparams *hp = &c->m->hp;
    gk_rope_apply(v, T, n_heads, (int)hp->head_dim, (int)hp->n_rot, c->rope_cos, c->rope_sin);
}

/* Row pos of sequence seq in layer l of a KV cache. */
static uint8_t *kv_at(const gk_context *c, uint8_t *cache, int l, int seq, uint32_t pos) {
    return cache + (((size_t)l * c->n_seq + (size_t)seq) * c->n_ctx + pos) * c->kv_row;
}

/* ------------------------------------------------------------- attention --- */

typedef struct {
    gk_context *c;
    int layer, T;
} attn_job;

/* One (token, head) pair per work item: q.k * scale -> softcap -> temperature ->
 * softmax -> weighted sum of V (spec 3.2), over the keys of the token's own
 * sequence up to its position. */
static void attn_part(void *arg, int ith, int nth) {
    attn_job *j = arg;
    gk_context *c = j->c;
    const gk_hparams *hp = &c->m->hp;
    const int hd = (int)hp->head_dim, nh = (int)hp->n_head,
              group = (int)(hp->n_head / hp->n_head_kv);
    const gk_type_traits *ct = gk_type_traits_of(c->cache_type);
    const bool f32 = c->cache_type == GK_TYPE_F32;
    const size_t row = c->kv_row, head_bytes = gk_row_size(c->cache_type, hd);
    const float cap = hp->attn_softcap, scale = hp->attn_out_scale;
    const uint32_t tlen = c->m->cfg.attn_temp_len;
    gk_vec_dot_fn dot = ct->vec_dot;
    float *s = c->scores + (size_t)ith * c->n_ctx;
    float *vf = c->vrow + (size_t)ith * hd;
    int64_t lo, hi;
    gk_split((int64_t)j->T * nh, ith, nth, &lo, &hi);
    for (int64_t item = lo; item < hi; item++) {
        int t = (int)(item / nh), h = (int)(item % nh);
        uint32_t p = (uint32_t)c->tok_pos[t]; /* absolute 0-based position */
        const uint8_t *K = kv_at(c, c->kcache, j->layer, c->tok_seq[t], 0);
        const uint8_t *V = kv_at(c, c->vcache, j->layer, c->tok_seq[t], 0);
        const void *q = c->qconv ? (const void *)(c->qconv + ((size_t)t * nh + h) * c->qconv_head)
                                 : (const void *)(c->q + ((size_t)t * nh + h) * hd);
        const size_t koff = (size_t)(h / group) * head_bytes;
        /* xAI temperature: log2(p)/log2(L) past L, applied after the cap. */
        float temp = tlen && p > tlen ? (float)(log2((double)p) / log2((double)tlen)) : 1.0f;
        float mx = -INFINITY;
        for (uint32_t k = 0; k <= p; k++) {
            float v = dot(hd, K + k * row + koff, q) * scale;
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
            const float *vr = (const float *)(V + k * row + koff);
            if (!f32) {
                ct->to_float(V + k * row + koff, vf, hd);
                vr = vf;
            }
            for (int i = 0; i < hd; i++) out[i] += w * vr[i];
        }
    }
}

static void attention(gk_context *c, int layer, int T) {
    const gk_hparams *hp = &c->m->hp;
    const gk_layer *L = &c->m->layers[layer];
    const int64_t d = hp->n_embd, nkv = (int64_t)hp->n_head_kv * hp->head_dim;
    const int hd = (int)hp->head_dim, nh = (int)hp->n_head;
    for (int t = 0; t < T; t++)
        gk_rmsnorm(c->xn + t * d, c->x + t * d, L->attn_norm, d, hp->norm_eps);
    matmul_w(c, c->q, &L->wq, c->xn, T);
    matmul_w(c, c->k, &L->wk, c->xn, T);
    matmul_w(c, c->v, &L->wv, c->xn, T);
    rope_apply(c, c->q, T, nh);
    rope_apply(c, c->k, T, (int)hp->n_head_kv);
    const gk_type_traits *ct = gk_type_traits_of(c->cache_type);
    for (int t = 0; t < T; t++) {
        uint8_t *kd = kv_at(c, c->kcache, layer, c->tok_seq[t], (uint32_t)c->tok_pos[t]);
        uint8_t *vd = kv_at(c, c->vcache, layer, c->tok_seq[t], (uint32_t)c->tok_pos[t]);
        ct->from_float(c->k + t * nkv, kd, nkv);
        ct->from_float(c->v + t * nkv, vd, nkv);
        c->stats.kv_bytes_written += 2.0 * (double)c->kv_row;
        c->stats.kv_bytes_read += 2.0 * (double)c->kv_row * (c->tok_pos[t] + 1);
        c->stats.attn_flops += 4.0 * hd * nh * (c->tok_pos[t] + 1);
    }
    if (c->qconv) { /* query heads in the cache's vec_dot_type, once per head */
        const gk_type_traits *qt = gk_type_traits_of(ct->vec_dot_type);
        for (int64_t i = 0; i < (int64_t)T * nh; i++)
            qt->from_float(c->q + i * hd, c->qconv + (size_t)i * c->qconv_head, hd);
    }
    attn_job j = {.c = c, .layer = layer, .T = T};
    gk_pool_run(c->pool, attn_part, &j);
    matmul_w(c, c->tmp, &L->wo, c->att, T);
    for (int t = 0; t < T; t++) {
        gk_rmsnorm(c->tmp + t * d, c->tmp + t * d, L->attn_out_norm, d, hp->norm_eps);
        for (int64_t i = 0; i < d; i++) c->x[t * d + i] += c->tmp[t * d + i];
    }
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

/* out[t] = sum over chosen experts e of gate * W2_e (GELU(W1_e h) * W3_e h).
 * The tokens of every sequence in the batch are grouped by expert; each token's
 * sum runs in expert order, so it does not depend on its neighbours. */
static void moe(gk_context *c, const gk_layer *L, float *out, int T) {
    const gk_hparams *hp = &c->m->hp;
    const int64_t d = hp->n_embd, F = hp->n_ff_exp;
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

static void ffn(gk_context *c, int layer, int T) {
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
        gk_geglu(c->pool, c->g, c->u, (int64_t)T * hp->n_ff, c->m->cfg.gelu_erf);
        matmul_w(c, c->tmp, &L->ffn_down, c->g, T);
        for (int64_t i = 0; i < T * d; i++)
            c->moe[i] = (c->tmp[i] + c->moe[i]) / 1.4142135623730951f;
    }
    for (int t = 0; t < T; t++) {
        gk_rmsnorm(c->tmp + t * d, c->moe + t * d, L->post_ffn_norm, d, hp->norm_eps);
        for (int64_t i = 0; i < d; i++) c->x[t * d + i] += c->tmp[t * d + i];
    }
}

/* ------------------------------------------------------------- forward --- */

/* Runs the T tokens whose sequences and positions are in c->tok_seq/tok_pos,
 * and fills the logits of the n_keep tokens listed in c->kept. */
static void forward(gk_context *c, const int32_t *tokens, int T, int n_keep) {
    const gk_model *m = c->m;
    const gk_hparams *hp = &m->hp;
    const int64_t d = hp->n_embd;
    const int half = (int)hp->n_rot / 2;
    const gk_type_traits *et = gk_type_traits_of(m->tok_embd.type);
    for (int t = 0; t < T; t++) {
        float *x = c->x + t * d;
        et->to_float(m->tok_embd.data + (size_t)tokens[t] * m->tok_embd.nb_row, x, d);
        for (int64_t i = 0; i < d; i++) x[i] *= hp->embedding_scale;
        gk_rope_tables(&m->cfg.rope, (uint32_t)c->tok_pos[t], 1, c->rope_cos + t * half,
                       c->rope_sin + t * half);
    }
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        attention(c, (int)l, T);
        ffn(c, (int)l, T);
    }
    c->stats.tokens += (uint64_t)T;
    c->stats.forwards++;
    if (n_keep == 0) return;
    for (int i = 0; i < n_keep; i++)
        gk_rmsnorm(c->xn + i * d, c->x + (int64_t)c->kept[i] * d, m->output_norm, d, hp->norm_eps);
    matmul_w(c, c->logits, &m->output, c->xn, n_keep);
    const float fcap = hp->final_softcap;
    for (int64_t i = 0; i < (int64_t)n_keep * hp->n_vocab; i++) {
        float v = c->logits[i] * hp->logit_scale;
        c->logits[i] = gk_softcap(v, fcap);
    }
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

static void commit_batch(gk_context *c, const int32_t *tokens, int n, int n_keep) {
    forward(c, tokens, n, n_keep);
    for (int i = 0; i < n; i++) c->seq_len[c->tok_seq[i]]++;
    c->n_tok = n;
}

int gk_decode_batch(gk_context *c, const gk_batch *b, gk_err *err) {
    if (!b || !b->token) return gk_fail(err, "decode: no batch given");
    int n_keep = plan_batch(c, b->n, b->token, b->seq, b->logits, KEEP_LAST, err);
    if (n_keep < 0) {
        c->n_tok = 0; /* the tables were overwritten: the last logits are gone */
        return -1;
    }
    commit_batch(c, b->token, b->n, n_keep);
    c->out_base = 0;
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
    for (int done = 0; done < n;) {
        int T = n - done < (int)c->n_batch ? n - done : (int)c->n_batch;
        /* with all_logits every token's logits are kept; else only the very last one's */
        int mode = c->all_logits ? KEEP_ALL : done + T == n ? KEEP_LAST : KEEP_NONE;
        int n_keep = plan_batch(c, T, tokens + done, NULL, NULL, mode, err);
        if (n_keep < 0) return -1; /* cannot happen: checked above */
        commit_batch(c, tokens + done, T, n_keep);
        c->out_base = done;
        done += T;
    }
    return 0;
}

const float *gk_get_logits(const gk_context *c, int i) {
    int j = i - c->out_base;
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
void gk_context_truncate(gk_context *c, uint32_t n_keep) {
    if (n_keep < c->seq_len[0]) c->seq_len[0] = n_keep;
    c->n_tok = 0;
}

uint32_t gk_kv_seq_len(const gk_context *c, int seq) {
    return seq >= 0 && (uint32_t)seq < c->n_seq ? c->seq_len[seq] : 0;
}

int gk_kv_seq_keep(gk_context *c, int seq, uint32_t n_keep, gk_err *err) {
    if (seq < 0 || (uint32_t)seq >= c->n_seq)
        return gk_fail(err, "sequence id %d is out of range (%u sequences)", seq, c->n_seq);
    if (n_keep < c->seq_len[seq]) c->seq_len[seq] = n_keep;
    return 0;
}

int gk_kv_seq_copy(gk_context *c, int src, int dst, uint32_t n, gk_err *err) {
    if (src < 0 || (uint32_t)src >= c->n_seq || dst < 0 || (uint32_t)dst >= c->n_seq)
        return gk_fail(err, "sequence ids %d -> %d: out of range (%u sequences)", src, dst,
                       c->n_seq);
    if (n > c->seq_len[src])
        return gk_fail(err, "cannot copy %u positions of sequence %d, which holds %u", n, src,
                       c->seq_len[src]);
    if (src != dst && n > 0)
        for (uint32_t l = 0; l < c->m->hp.n_layer; l++) {
            memcpy(kv_at(c, c->kcache, (int)l, dst, 0), kv_at(c, c->kcache, (int)l, src, 0),
                   (size_t)n * c->kv_row);
            memcpy(kv_at(c, c->vcache, (int)l, dst, 0), kv_at(c, c->vcache, (int)l, src, 0),
                   (size_t)n * c->kv_row);
        }
    c->seq_len[dst] = n;
    return 0;
}

uint64_t gk_context_kv_bytes(const gk_context *c) {
    return 2ull * c->m->hp.n_layer * c->n_seq * c->n_ctx * c->kv_row;
}

gk_decode_stats gk_context_stats(const gk_context *c) {
    return c->stats;
}
void gk_context_stats_reset(gk_context *c) {
    memset(&c->stats, 0, sizeof c->stats);
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

gk_context *gk_context_new(gk_model *m, const gk_context_params *params, gk_err *err) {
    gk_context_params p = params ? *params : gk_context_default_params();
    const gk_hparams *hp = &m->hp;
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

    const size_t B = c->n_batch, d = hp->n_embd, nq = (size_t)hp->n_head * hp->head_dim,
                 nkv = (size_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff_exp,
                 Fd = hp->variant == GK_VARIANT_GROK2 ? hp->n_ff : 0, E = hp->n_expert,
                 V = hp->n_vocab, half = hp->n_rot / 2;
    size_t max_in = d;
    if (nq > max_in) max_in = nq;
    if (F > max_in) max_in = F;
    if (Fd > max_in) max_in = Fd;
    c->kv_row = gk_row_size(c->cache_type, (int64_t)nkv);
    size_t kv = (size_t)hp->n_layer * c->n_seq * c->n_ctx;
    if (kv > SIZE_MAX / 4 / c->kv_row) {
        gk_fail(err, "KV cache of %u sequences x %u tokens is too large", c->n_seq, c->n_ctx);
        goto fail;
    }
    c->n_logit_rows = c->all_logits ? (int)B : (int)(c->n_seq < B ? c->n_seq : B);
    const gk_dtype qdt = gk_type_traits_of(c->cache_type)->vec_dot_type;
    c->qconv_head = qdt == GK_TYPE_F32 ? 0 : gk_row_size(qdt, hp->head_dim);
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
                      (size_t)nt * hp->head_dim,
                      (size_t)c->n_logit_rows * V,
                      E * B,
                      E * B,
                      E,
                      B,
                      B,
                      B,
                      B,
                      c->n_seq,
                      (B * hp->n_head * c->qconv_head + 3) / 4};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += (sizes[i] + 15) / 16 * 16;
    total = total * sizeof(float) + gk_matmul_qbuf_size((int64_t)max_in, (int)B) + 64;
    c->arena = gk_malloc_aligned(total, err);
    c->kcache = gk_malloc_aligned(kv * c->kv_row, err);
    c->vcache = gk_malloc_aligned(kv * c->kv_row, err);
    if (!c->arena || !c->kcache || !c->vcache) {
        gk_err_prefix(err, "context of %u x %u tokens", c->n_seq, c->n_ctx);
        goto fail;
    }
    float *a = c->arena;
    float **dst[] = {&c->x,    &c->xn,     &c->tmp,     &c->q,        &c->k,        &c->v,
                     &c->att,  &c->moe,    &c->xe,      &c->ye,       &c->h1,       &c->h3,
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
    return c;
fail:
    gk_context_free(c);
    return NULL;
}

void gk_context_free(gk_context *c) {
    if (!c) return;
    gk_pool_free(c->pool);
    gk_free_aligned(c->arena);
    gk_free_aligned(c->kcache);
    gk_free_aligned(c->vcache);
    free(c);
}
