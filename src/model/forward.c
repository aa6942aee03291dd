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
    const int hd = (int)hp->head_dim, nh = (int)hp->n_head, group = (int)(hp->n_head / hp->n_head_kv);
    const size_t kv_row = (size_t)hp->n_head_kv * hd;
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

static void attention(gk_context *c, int layer, int T) {
    const gk_hparams *hp = &c->m->hp;
    const gk_layer *L = &c->m->layers[layer];
    const int64_t d = hp->n_embd, nkv = (int64_t)hp->n_head_kv * hp->head_dim;
    for (int t = 0; t < T; t++) gk_rmsnorm(c->xn + t * d, c->x + t * d, L->attn_norm, d, hp->norm_eps);
    matmul_w(c, c->q, &L->wq, c->xn, T);
    matmul_w(c, c->k, &L->wk, c->xn, T);
    matmul_w(c, c->v, &L->wv, c->xn, T);
    rope_apply(c, c->q, T, (int)hp->n_head);
    rope_apply(c, c->k, T, (int)hp->n_head_kv);
    size_t base = ((size_t)layer * c->n_ctx + c->n_past) * (size_t)nkv;
    memcpy(c->kcache + base, c->k, (size_t)T * nkv * sizeof(float));
    memcpy(c->vcache + base, c->v, (size_t)T * nkv * sizeof(float));
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
            c->exp_gate[(size_t)e * c->n_batch + c->exp_n[e]] = cfg->renorm_topk ? w[k] / wsum : w[k];
            c->exp_n[e]++;
        }
    }
}

/* out[t] = sum over chosen experts e of gate * W2_e (GELU(W1_e h) * W3_e h). */
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
    for (int t = 0; t < T; t++) gk_rmsnorm(c->xn + t * d, c->x + t * d, L->ffn_norm, d, hp->norm_eps);
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

/* Runs T <= n_batch tokens at positions n_past.. and fills the logits. */
static void forward(gk_context *c, const int32_t *tokens, int T) {
    const gk_model *m = c->m;
    const gk_hparams *hp = &m->hp;
    const int64_t d = hp->n_embd;
    const gk_type_traits *et = gk_type_traits_of(m->tok_embd.type);
    for (int t = 0; t < T; t++) {
        float *x = c->x + t * d;
        et->to_float(m->tok_embd.data + (size_t)tokens[t] * m->tok_embd.nb_row, x, d);
        for (int64_t i = 0; i < d; i++) x[i] *= hp->embedding_scale;
    }
    gk_rope_tables(&m->cfg.rope, c->n_past, T, c->rope_cos, c->rope_sin);
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        attention(c, (int)l, T);
        ffn(c, (int)l, T);
    }
    /* logits of every token, or of the last one only */
    int first = c->all_logits ? 0 : T - 1, n = T - first;
    for (int t = 0; t < n; t++)
        gk_rmsnorm(c->xn + t * d, c->x + (first + t) * d, m->output_norm, d, hp->norm_eps);
    matmul_w(c, c->logits, &m->output, c->xn, n);
    const float fcap = hp->final_softcap;
    for (int64_t i = 0; i < (int64_t)n * hp->n_vocab; i++) {
        float v = c->logits[i] * hp->logit_scale;
        c->logits[i] = gk_softcap(v, fcap);
    }
    c->n_past += (uint32_t)T;
}

int gk_decode(gk_context *c, const int32_t *tokens, int n, gk_err *err) {
    if (n <= 0) return gk_fail(err, "decode: no tokens given");
    if ((uint64_t)c->n_past + (uint64_t)n > c->n_ctx)
        return gk_fail(err, "context length exceeded: %u tokens in the cache + %d new > %u "
                            "(raise --ctx-size)", c->n_past, n, c->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= c->m->hp.n_vocab)
            return gk_fail(err, "token id %d at index %d is out of range (vocabulary %u)",
                           tokens[i], i, c->m->hp.n_vocab);
    if (c->all_logits && n > (int)c->n_batch)
        return gk_fail(err, "decode: %d tokens exceed n_batch %u with all_logits on "
                            "(call per batch)", n, c->n_batch);
    for (int done = 0; done < n;) {
        int T = n - done < (int)c->n_batch ? n - done : (int)c->n_batch;
        forward(c, tokens + done, T);
        done += T;
    }
    c->n_out = n;
    return 0;
}

const float *gk_get_logits(const gk_context *c, int i) {
    if (i < 0 || i >= c->n_out) return NULL;
    if (c->all_logits) return c->logits + (size_t)i * c->m->hp.n_vocab;
    return i == c->n_out - 1 ? c->logits : NULL;
}

uint32_t gk_context_n_past(const gk_context *c) { return c->n_past; }
uint32_t gk_context_n_ctx(const gk_context *c) { return c->n_ctx; }
void gk_context_truncate(gk_context *c, uint32_t n_keep) {
    if (n_keep < c->n_past) c->n_past = n_keep;
    c->n_out = 0;
}
uint64_t gk_context_kv_bytes(const gk_context *c) {
    const gk_hparams *hp = &c->m->hp;
    return 2ull * hp->n_layer * c->n_ctx * hp->n_head_kv * hp->head_dim * sizeof(float);
}

/* ------------------------------------------------------------- context --- */

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
    size_t kv = (size_t)hp->n_layer * c->n_ctx * nkv;
    size_t n_logit_rows = c->all_logits ? B : 1;
    /* scratch sizes in floats, in the order carved below (all well below 2^60 thanks to
     * the hyper-parameter limits checked at load) */
    size_t sizes[] = {B * d, B * d, B * d, B * nq, B * nkv, B * nkv, B * nq, B * d, B * d,
                      B * d, B * F, B * F, B * Fd, B * Fd, B * E, B * half, B * half,
                      (size_t)nt * c->n_ctx, n_logit_rows * V, E * B, E * B, E};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += (sizes[i] + 15) / 16 * 16;
    total = total * sizeof(float) + gk_matmul_qbuf_size((int64_t)max_in, (int)B) + 64;
    c->arena = gk_malloc_aligned(total, err);
    c->kcache = gk_malloc_aligned(kv * sizeof(float), err);
    c->vcache = gk_malloc_aligned(kv * sizeof(float), err);
    if (!c->arena || !c->kcache || !c->vcache) {
        gk_err_prefix(err, "context of %u tokens", c->n_ctx);
        goto fail;
    }
    float *a = c->arena;
    float **dst[] = {&c->x, &c->xn, &c->tmp, &c->q, &c->k, &c->v, &c->att, &c->moe, &c->xe,
                     &c->ye, &c->h1, &c->h3, &c->g, &c->u, &c->rl, &c->rope_cos, &c->rope_sin,
                     &c->scores, &c->logits, &c->exp_gate};
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

void gk_context_free(gk_context *c) {
    if (!c) return;
    gk_pool_free(c->pool);
    gk_free_aligned(c->arena);
    gk_free_aligned(c->kcache);
    gk_free_aligned(c->vcache);
    free(c);
}
