/*
 * tforward.c - the training forward pass, which keeps every activation the
 * backward needs, and the backward pass, for both Grok variants (spec 2-4):
 *
 *   x = E[tok] * embedding_scale
 *   per layer:  xn1 = norm(x);  q,k,v = xn1 W^T;  RoPE(q,k)
 *               att = softmax(T(p) * cap*tanh(q.k*scale/cap)) v     per head, causal
 *               xm = x + norm(att Wo^T)
 *               xn2 = norm(xm);  router: softcap, softmax, top-k gates
 *               f = sum_k gate_k W2_e (GELU(W1_e xn2) * W3_e xn2)      Grok-1
 *               f = (that + Wd (GELU(Wg xn2) * Wu xn2)) / sqrt(2)     Grok-2
 *               x' = xm + norm(f)
 *   z = softcap(norm(x) Wout^T * logit_scale);  loss = CE(z, target)
 *
 * Shapes: N = B*T tokens, d = n_embd, nq = n_head*head_dim, nkv =
 * n_head_kv*head_dim, E experts, K used, F expert width, Fd dense width.
 * Every product goes through the shared GEMM (kernels/gemm.h): the forward's
 * through gk_matmul, as inference runs them; the backward's dX = dY W and
 * dW += dY^T X through gk_sgemm. Attention keeps no T x T matrix: the backward
 * recomputes each row's scores (as flash attention does).
 */
#include "kernels/gemm.h"
#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Activations of one layer, [N][...] each. */
typedef struct {
    float *x, *xn1, *r1, *q, *k, *v, *att, *a, *r2, *xm, *xn2, *r3;
    float *rl, *pr, *gate; /* router logits after the cap, probabilities [N][E]; gates [N][K] */
    int32_t *sel;          /* [N][K] chosen experts */
    int32_t *exp_off;      /* [E+1] first expert row of each expert */
    int32_t *row_tok, *row_slot; /* [N*K] token and slot of each expert row */
    float *h1, *h3, *ye;         /* [N*K][F], [N*K][F], [N*K][d] by expert row */
    float *g, *u;                /* [N][Fd] Grok-2 dense MLP */
    float *f, *r4;               /* [N][d] input of the post-FFN norm */
    float *aux_frac;             /* [E] share of the assignments that went to each expert */
} tact;

struct gk_tstate {
    gk_tmodel *tm;
    gk_pool *pool;
    int B, T, nth;
    int64_t N;
    tact *act;
    float *xf, *rf, *yf, *z, *lse; /* final norm input, rstd, output; capped logits [N][V]; LSE */
    float *rope_cos, *rope_sin;
    int32_t *inp, *tgt;
    /* backward scratch */
    float *dx, *dt1, *dxn, *dq, *dk, *dv, *datt, *xe, *buf1, *buf2, *buf3, *dye, *drl, *dgate;
    float *attn_scr; /* [nth][scr_row]: a thread's attention rows (3 T) or logits (V) */
    int64_t scr_row;
    float *tbuf; /* [N][max(V, nq, F, Fd, E)]: gk_sgemm's copy of dY transposed (mm_dw) */
    void *arena;
    gk_tstats stats;
};

/* ------------------------------------------------------------- helpers --- */

/* Runs a pool job, its wall time added to *acc (gk_tstats). */
static void run(gk_tstate *s, double *acc, gk_pool_fn fn, void *arg) {
    double t0 = gk_time_s();
    gk_pool_run(s->pool, fn, arg);
    *acc += gk_time_s() - t0;
}

/* y[T][n_out] = x[T][n_in] W^T: the GEMM inference runs (kernels/gemm.h), on
 * the fp32 weights. */
static void mm(gk_tstate *s, float *y, const float *w, int64_t n_out, const float *x, int64_t n_in,
               int64_t T) {
    double t0 = gk_time_s();
    gk_matmul(s->pool, y, w, GK_TYPE_F32, (size_t)n_in * sizeof(float), n_out, x, n_in, (int)T,
              NULL);
    s->stats.gemm_s += gk_time_s() - t0;
}

/* y1 = x W1^T and y2 = x W2^T (gate and up, both [n_out][n_in]) in one pass. */
static void mm2(gk_tstate *s, float *y1, const float *w1, float *y2, const float *w2, int64_t n_out,
                const float *x, int64_t n_in, int64_t T) {
    size_t nb = (size_t)n_in * sizeof(float);
    double t0 = gk_time_s();
    gk_matmul2(s->pool, y1, w1, GK_TYPE_F32, nb, y2, w2, GK_TYPE_F32, nb, n_out, x, n_in, (int)T,
               NULL);
    s->stats.gemm_s += gk_time_s() - t0;
}

/* dX[T][n_in] (+)= dY[T][n_out] W[n_out][n_in]: the input gradient of Y = X W^T. */
static void mm_dx(gk_tstate *s, float *dx, const float *dy, const float *w, int64_t T,
                  int64_t n_out, int64_t n_in, bool acc) {
    gk_sgemm g = {.C = dx,
                  .ldc = n_in,
                  .A = dy,
                  .lda = n_out,
                  .B = w,
                  .ldb = n_in,
                  .M = T,
                  .N = n_in,
                  .K = n_out,
                  .acc = acc};
    double t0 = gk_time_s();
    gk_sgemm_run(s->pool, &g, NULL);
    s->stats.gemm_s += gk_time_s() - t0;
}

/* dW[n_out][n_in] += dY^T X over T tokens: the weight gradient of Y = X W^T. */
static void mm_dw(gk_tstate *s, float *dw, const float *dy, const float *x, int64_t T,
                  int64_t n_out, int64_t n_in) {
    gk_sgemm g = {.C = dw,
                  .ldc = n_in,
                  .A = dy,
                  .lda = n_out,
                  .a_trans = true,
                  .B = x,
                  .ldb = n_in,
                  .M = n_out,
                  .N = n_in,
                  .K = T,
                  .acc = true};
    double t0 = gk_time_s();
    gk_sgemm_run(s->pool, &g, s->tbuf);
    s->stats.gemm_s += gk_time_s() - t0;
}

/* out = x * r * w with r = 1/sqrt(mean(x^2) + eps), the rstd kept for the backward. */
static void rmsnorm_fwd(float *out, float *r, const float *x, const float *w, int64_t N, int64_t d,
                        float eps) {
    for (int64_t t = 0; t < N; t++) {
        r[t] = gk_rmsnorm(out + t * d, x + t * d, w, d, eps);
    }
}

/* dx (+)= d/dx, dw += d/dw of y = x * r * w, given dy:
 * dx_i = r w_i dy_i - r^3 x_i / d * sum_j w_j dy_j x_j. */
static void rmsnorm_bwd(float *dx, bool acc, float *dw, const float *dy, const float *x,
                        const float *w, const float *r, int64_t N, int64_t d) {
    for (int64_t t = 0; t < N; t++) {
        const float *dyr = dy + t * d, *xr = x + t * d;
        float rt = r[t];
        double dot = 0.0;
        for (int64_t i = 0; i < d; i++) {
            dot += (double)w[i] * dyr[i] * xr[i];
            dw[i] += dyr[i] * xr[i] * rt;
        }
        float c = (float)(dot * rt * rt * rt / (double)d);
        float *dxr = dx + t * d;
        if (acc)
            for (int64_t i = 0; i < d; i++) dxr[i] += rt * w[i] * dyr[i] - c * xr[i];
        else
            for (int64_t i = 0; i < d; i++) dxr[i] = rt * w[i] * dyr[i] - c * xr[i];
    }
}

/* GeGLU backward over n elements: given da (gradient of a = GELU(h1) * h3),
 * writes dh1 into da's place and dh3 into dh3. GELU and its derivative come
 * from the vector math (kernels/vmath.h) that the forward's gk_geglu uses, 256
 * values at a time. */
typedef struct {
    float *da, *dh3;
    const float *h1, *h3;
    int64_t n;
    bool erf;
} geglu_bwd_job;

static void geglu_bwd_part(void *arg, int ith, int nth) {
    geglu_bwd_job *j = arg;
    int64_t lo, hi;
    gk_split(j->n, ith, nth, &lo, &hi);
    float u[256], e[256];
    for (int64_t i0 = lo; i0 < hi; i0 += 256) {
        const int64_t n = hi - i0 < 256 ? hi - i0 : 256;
        const float *x = j->h1 + i0;
        if (j->erf) { /* GELU = x/2 (1 + erf(x/sqrt 2)), GELU' = (1 + erf)/2 + x phi(x) */
            for (int64_t i = 0; i < n; i++) {
                u[i] = x[i] * 0.7071067811865476f;
                e[i] = -0.5f * x[i] * x[i];
            }
            gk_vmath(GK_VM_ERF, u, u, n);
            gk_vmath(GK_VM_EXP, e, e, n);
            for (int64_t i = 0; i < n; i++) {
                float da = j->da[i0 + i];
                j->dh3[i0 + i] = da * ((0.5f * x[i]) * (1.0f + u[i]));
                j->da[i0 + i] =
                    da * j->h3[i0 + i] * (0.5f * (1.0f + u[i]) + x[i] * e[i] * 0.3989422804014327f);
            }
        } else { /* the tanh form: th = tanh(c (x + 0.044715 x^3)) */
            const float c = 0.7978845608028654f;
            for (int64_t i = 0; i < n; i++) u[i] = c * fmaf((0.044715f * x[i]) * x[i], x[i], x[i]);
            gk_vmath(GK_VM_TANH, u, u, n);
            for (int64_t i = 0; i < n; i++) {
                float da = j->da[i0 + i], th = u[i];
                j->dh3[i0 + i] = da * ((0.5f * x[i]) * (1.0f + th));
                j->da[i0 + i] = da * j->h3[i0 + i] *
                                (0.5f * (1.0f + th) + 0.5f * x[i] * (1.0f - th * th) * c *
                                                          (1.0f + 0.134145f * x[i] * x[i]));
            }
        }
    }
}

/* act = GELU(h1) * h3, through the shared kernel. */
static void geglu_fwd(gk_tstate *s, float *act, const float *h1, const float *h3, int64_t n) {
    double t0 = gk_time_s();
    memcpy(act, h1, (size_t)n * sizeof(float));
    gk_geglu(s->pool, act, h3, n, s->tm->cfg.gelu);
    s->stats.pool_ew_s += gk_time_s() - t0;
}

/* ------------------------------------------------------------- attention --- */

typedef struct {
    gk_tstate *s;
    const tact *A;
} attn_job;

static inline float temp_at(uint32_t tlen, int p) {
    return tlen && (uint32_t)p > tlen ? (float)(log2((double)p) / log2((double)tlen)) : 1.0f;
}

/* One (sequence, head, query) row per item: scores, cap, temperature, softmax,
 * weighted sum of V (spec 3.2). */
static void attn_fwd_part(void *arg, int ith, int nth) {
    attn_job *j = arg;
    gk_tstate *s = j->s;
    const gk_hparams *hp = &s->tm->hp;
    const int T = s->T, hd = (int)hp->head_dim, nh = (int)hp->n_head,
              group = (int)(hp->n_head / hp->n_head_kv);
    const int64_t nq = (int64_t)nh * hd, nkv = (int64_t)hp->n_head_kv * hd;
    const float cap = hp->attn_softcap, scale = hp->attn_out_scale;
    gk_vec_dot_fn dot = gk_type_traits_of(GK_TYPE_F32)->vec_dot;
    float *sc = s->attn_scr + (size_t)ith * s->scr_row;
    int64_t lo, hi;
    gk_split((int64_t)s->B * nh * T, ith, nth, &lo, &hi);
    for (int64_t it = lo; it < hi; it++) {
        int t = (int)(it % T), h = (int)((it / T) % nh), b = (int)(it / ((int64_t)T * nh));
        const int64_t row = (int64_t)b * T + t;
        const float *q = j->A->q + row * nq + h * hd;
        const float *K = j->A->k + (int64_t)b * T * nkv + (h / group) * hd;
        const float *V = j->A->v + (int64_t)b * T * nkv + (h / group) * hd;
        float temp = temp_at(s->tm->cfg.attn_temp_len, t), mx = -INFINITY;
        for (int k = 0; k <= t; k++) sc[k] = dot(hd, q, K + k * nkv) * scale;
        gk_softcap_array(sc, t + 1, 1.0f, cap);
        for (int k = 0; k <= t; k++) {
            sc[k] *= temp;
            mx = sc[k] > mx ? sc[k] : mx;
        }
        for (int k = 0; k <= t; k++) sc[k] -= mx;
        gk_vmath(GK_VM_EXP, sc, sc, t + 1);
        double sum = 0.0;
        for (int k = 0; k <= t; k++) sum += sc[k];
        float inv = (float)(1.0 / sum);
        float *out = j->A->att + row * nq + h * hd;
        memset(out, 0, (size_t)hd * sizeof(float));
        for (int k = 0; k <= t; k++) {
            float w = sc[k] * inv;
            const float *vr = V + k * nkv;
            for (int i = 0; i < hd; i++) out[i] += w * vr[i];
        }
    }
}

/* One (sequence, KV head) per item, so that the item owns dK and dV of its KV
 * head and dQ of the query heads that read it. Each row's probabilities are
 * recomputed; then dP_k = dO.v_k, dS_k = P_k (dP_k - sum P dP), and through the
 * temperature, the cap (1 - tanh^2) and the scale to q and k. */
static void attn_bwd_part(void *arg, int ith, int nth) {
    attn_job *j = arg;
    gk_tstate *s = j->s;
    const gk_hparams *hp = &s->tm->hp;
    const int T = s->T, hd = (int)hp->head_dim, nkvh = (int)hp->n_head_kv,
              group = (int)(hp->n_head / hp->n_head_kv);
    const int64_t nq = (int64_t)hp->n_head * hd, nkv = (int64_t)nkvh * hd;
    const float cap = hp->attn_softcap, scale = hp->attn_out_scale;
    gk_vec_dot_fn dot = gk_type_traits_of(GK_TYPE_F32)->vec_dot;
    float *P = s->attn_scr + (size_t)ith * s->scr_row, *C = P + T, *dP = C + T;
    int64_t lo, hi;
    gk_split((int64_t)s->B * nkvh, ith, nth, &lo, &hi);
    for (int64_t it = lo; it < hi; it++) {
        int b = (int)(it / nkvh), kvh = (int)(it % nkvh);
        const int64_t base = (int64_t)b * T;
        const float *K = j->A->k + base * nkv + kvh * hd, *V = j->A->v + base * nkv + kvh * hd;
        float *dK = s->dk + base * nkv + kvh * hd, *dV = s->dv + base * nkv + kvh * hd;
        for (int h = kvh * group; h < (kvh + 1) * group; h++)
            for (int t = 0; t < T; t++) {
                const float *q = j->A->q + (base + t) * nq + h * hd;
                const float *dO = s->datt + (base + t) * nq + h * hd;
                float *dq = s->dq + (base + t) * nq + h * hd;
                float temp = temp_at(s->tm->cfg.attn_temp_len, t), mx = -INFINITY;
                for (int k = 0; k <= t; k++) C[k] = dot(hd, q, K + k * nkv) * scale;
                gk_softcap_array(C, t + 1, 1.0f, cap);
                for (int k = 0; k <= t; k++) {
                    P[k] = C[k] * temp;
                    C[k] = cap > 0 ? C[k] / cap : 0.0f; /* tanh, for the cap's derivative */
                    mx = P[k] > mx ? P[k] : mx;
                }
                for (int k = 0; k <= t; k++) P[k] -= mx;
                gk_vmath(GK_VM_EXP, P, P, t + 1);
                double sum = 0.0;
                for (int k = 0; k <= t; k++) sum += P[k];
                float inv = (float)(1.0 / sum);
                double pdp = 0.0;
                for (int k = 0; k <= t; k++) {
                    P[k] *= inv;
                    dP[k] = dot(hd, dO, V + k * nkv);
                    pdp += (double)P[k] * dP[k];
                }
                for (int k = 0; k <= t; k++) {
                    float ds = P[k] * (dP[k] - (float)pdp) * temp * (1.0f - C[k] * C[k]) * scale;
                    const float *kr = K + k * nkv;
                    float *dkr = dK + k * nkv, *dvr = dV + k * nkv;
                    for (int i = 0; i < hd; i++) {
                        dq[i] += ds * kr[i];
                        dkr[i] += ds * q[i];
                        dvr[i] += P[k] * dO[i];
                    }
                }
            }
    }
}

/* Inverse rotation of RoPE (the rotation is orthogonal up to mscale, so its
 * transpose is the gradient map). */
static void rope_bwd(float *v, int B, int T, int n_heads, int hd, int n_rot, const float *cs,
                     const float *sn) {
    int half = n_rot / 2;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < n_heads; h++) {
                float *x = v + (((int64_t)b * T + t) * n_heads + h) * hd;
                const float *c = cs + t * half, *si = sn + t * half;
                for (int i = 0; i < half; i++) {
                    float a = x[i], bb = x[i + half];
                    x[i] = a * c[i] + bb * si[i];
                    x[i + half] = bb * c[i] - a * si[i];
                }
            }
}

/* ------------------------------------------------------------- loss --- */

typedef struct {
    gk_tstate *s;
    float ce_scale;
    double *ce_part; /* [nth] */
} ce_job;

/* Logits -> capped z (kept) and log-sum-exp per token; partial CE sums per thread. */
static void ce_fwd_part(void *arg, int ith, int nth) {
    ce_job *j = arg;
    gk_tstate *s = j->s;
    const gk_hparams *hp = &s->tm->hp;
    const int64_t V = hp->n_vocab;
    int64_t lo, hi;
    gk_split(s->N, ith, nth, &lo, &hi);
    float *e = s->attn_scr + (size_t)ith * s->scr_row;
    double ce = 0.0;
    for (int64_t t = lo; t < hi; t++) {
        float *z = s->z + t * V, mx = -INFINITY;
        gk_softcap_array(z, V, hp->logit_scale, hp->final_softcap);
        for (int64_t v = 0; v < V; v++) mx = z[v] > mx ? z[v] : mx;
        for (int64_t v = 0; v < V; v++) e[v] = z[v] - mx;
        gk_vmath(GK_VM_EXP, e, e, V);
        double sum = 0.0;
        for (int64_t v = 0; v < V; v++) sum += e[v];
        s->lse[t] = mx + (float)log(sum);
        ce += (double)s->lse[t] - z[s->tgt[t]];
    }
    j->ce_part[ith] = ce;
}

/* z -> dLoss/d(logits before the scale), in place. */
static void ce_bwd_part(void *arg, int ith, int nth) {
    ce_job *j = arg;
    gk_tstate *s = j->s;
    const gk_hparams *hp = &s->tm->hp;
    const int64_t V = hp->n_vocab;
    const float fcap = hp->final_softcap;
    float *e = s->attn_scr + (size_t)ith * s->scr_row;
    int64_t lo, hi;
    gk_split(s->N, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        float *z = s->z + t * V, lse = s->lse[t];
        for (int64_t v = 0; v < V; v++) e[v] = z[v] - lse;
        gk_vmath(GK_VM_EXP, e, e, V);
        for (int64_t v = 0; v < V; v++) {
            float dz = e[v] - (v == s->tgt[t] ? 1.0f : 0.0f);
            dz *= j->ce_scale;
            if (fcap > 0) {
                float c = z[v] / fcap;
                dz *= 1.0f - c * c;
            }
            z[v] = dz * hp->logit_scale;
        }
    }
}

/* ------------------------------------------------------------- MoE --- */

/* Router (spec 4.1), exactly as forward.c computes it, plus the expert rows
 * (tokens grouped by expert, in token order) and the balance statistics. */
static double route(gk_tstate *s, tact *A) {
    const gk_hparams *hp = &s->tm->hp;
    const gk_numerics_cfg *cfg = &s->tm->cfg;
    const int E = (int)hp->n_expert, K = (int)hp->n_expert_used;
    const int64_t N = s->N;
    int32_t *cnt = A->exp_off; /* counts first, then prefix offsets */
    memset(cnt, 0, (size_t)(E + 1) * sizeof(int32_t));
    for (int64_t t = 0; t < N; t++) {
        float *g = A->rl + t * E, *p = A->pr + t * E;
        float mx = -INFINITY;
        for (int e = 0; e < E; e++) {
            g[e] = gk_softcap(g[e], cfg->router_softcap);
            mx = g[e] > mx ? g[e] : mx;
        }
        double sum = 0.0;
        for (int e = 0; e < E; e++) sum += (p[e] = expf(g[e] - mx));
        for (int e = 0; e < E; e++) p[e] = (float)(p[e] / sum);
        float w[64], wsum = 0.0f;
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                bool used = false;
                for (int kk = 0; kk < k; kk++) used |= A->sel[t * K + kk] == e;
                if (!used && (best < 0 || p[e] > p[best])) best = e;
            }
            A->sel[t * K + k] = best;
            w[k] = p[best];
            wsum += w[k];
            cnt[best + 1]++;
        }
        for (int k = 0; k < K; k++) A->gate[t * K + k] = cfg->renorm_topk ? w[k] / wsum : w[k];
    }
    for (int e = 0; e < E; e++) cnt[e + 1] += cnt[e];
    /* fill rows in token order per expert, using the scratch as cursors */
    int32_t *cur = (int32_t *)s->drl; /* E ints of scratch, free during the forward */
    for (int e = 0; e < E; e++) cur[e] = cnt[e];
    for (int64_t t = 0; t < N; t++)
        for (int k = 0; k < K; k++) {
            int e = A->sel[t * K + k];
            A->row_tok[cur[e]] = (int32_t)t;
            A->row_slot[cur[e]] = k;
            cur[e]++;
        }
    /* Switch balance loss E * sum_e f_e P_e */
    double aux = 0.0;
    for (int e = 0; e < E; e++) {
        double pe = 0.0;
        for (int64_t t = 0; t < N; t++) pe += A->pr[t * E + e];
        A->aux_frac[e] = (float)((double)(cnt[e + 1] - cnt[e]) / (double)(N * K));
        aux += (double)A->aux_frac[e] * (pe / (double)N);
    }
    return aux * E;
}

/* Returns the layer's balance loss. */
static double moe_fwd(gk_tstate *s, const gk_tlayer *W, tact *A, float *out) {
    const gk_hparams *hp = &s->tm->hp;
    const int64_t d = hp->n_embd, F = hp->n_ff_exp, E = hp->n_expert, K = hp->n_expert_used;
    mm(s, A->rl, W->router, E, A->xn2, d, s->N);
    double aux = route(s, A);
    memset(out, 0, (size_t)s->N * d * sizeof(float));
    for (int e = 0; e < E; e++) {
        int64_t r0 = A->exp_off[e], n = A->exp_off[e + 1] - r0;
        if (n == 0) continue;
        for (int64_t i = 0; i < n; i++)
            memcpy(s->xe + i * d, A->xn2 + (int64_t)A->row_tok[r0 + i] * d,
                   (size_t)d * sizeof(float));
        float *h1 = A->h1 + r0 * F, *h3 = A->h3 + r0 * F, *ye = A->ye + r0 * d;
        mm2(s, h1, W->gate_exps + e * F * d, h3, W->up_exps + e * F * d, F, s->xe, d, n);
        geglu_fwd(s, s->buf1, h1, h3, n * F);
        mm(s, ye, W->down_exps + e * d * F, d, s->buf1, F, n);
        for (int64_t i = 0; i < n; i++) {
            int64_t t = A->row_tok[r0 + i];
            float g = A->gate[t * K + A->row_slot[r0 + i]];
            float *o = out + t * d;
            const float *y = ye + i * d;
            for (int64_t k = 0; k < d; k++) o[k] += g * y[k];
        }
    }
    return aux;
}

/* dmo: gradient of the MoE output [N][d]. Adds to dxn (the gradient of xn2,
 * which must hold something already or be zeroed) and the expert and router
 * gradients. */
static void moe_bwd(gk_tstate *s, const gk_tlayer *W, gk_tlayer *G, const tact *A, const float *dmo,
                    float aux_scale) {
    const gk_hparams *hp = &s->tm->hp;
    const gk_numerics_cfg *cfg = &s->tm->cfg;
    const int64_t d = hp->n_embd, F = hp->n_ff_exp, E = hp->n_expert, K = hp->n_expert_used,
                  N = s->N;
    for (int e = 0; e < E; e++) {
        int64_t r0 = A->exp_off[e], n = A->exp_off[e + 1] - r0;
        if (n == 0) continue;
        const float *h1 = A->h1 + r0 * F, *h3 = A->h3 + r0 * F, *ye = A->ye + r0 * d;
        for (int64_t i = 0; i < n; i++) {
            int64_t t = A->row_tok[r0 + i], slot = A->row_slot[r0 + i];
            float g = A->gate[t * K + slot];
            const float *dm = dmo + t * d, *y = ye + i * d;
            double dg = 0.0;
            for (int64_t k = 0; k < d; k++) {
                s->dye[i * d + k] = g * dm[k];
                dg += (double)dm[k] * y[k];
            }
            s->dgate[t * K + slot] = (float)dg;
            memcpy(s->xe + i * d, A->xn2 + t * d, (size_t)d * sizeof(float));
        }
        geglu_fwd(s, s->buf1, h1, h3, n * F); /* recomputed activation */
        mm_dw(s, G->down_exps + e * d * F, s->dye, s->buf1, n, d, F);
        mm_dx(s, s->buf2, s->dye, W->down_exps + e * d * F, n, d, F, false);
        geglu_bwd_job gj = {.da = s->buf2,
                            .dh3 = s->buf3,
                            .h1 = h1,
                            .h3 = h3,
                            .n = n * F,
                            .erf = cfg->gelu == GK_GELU_ERF};
        run(s, &s->stats.pool_ew_s, geglu_bwd_part, &gj);
        mm_dw(s, G->gate_exps + e * F * d, s->buf2, s->xe, n, F, d);
        mm_dw(s, G->up_exps + e * F * d, s->buf3, s->xe, n, F, d);
        mm_dx(s, s->buf1, s->buf2, W->gate_exps + e * F * d, n, F, d, false);
        mm_dx(s, s->buf1, s->buf3, W->up_exps + e * F * d, n, F, d, true);
        for (int64_t i = 0; i < n; i++) {
            float *dxr = s->dxn + (int64_t)A->row_tok[r0 + i] * d;
            const float *src = s->buf1 + i * d;
            for (int64_t k = 0; k < d; k++) dxr[k] += src[k];
        }
    }
    /* router: gates -> probabilities (-> renormalisation) -> softmax -> cap */
    for (int64_t t = 0; t < N; t++) {
        const float *p = A->pr + t * E, *c = A->rl + t * E;
        const int32_t *sel = A->sel + t * K;
        const float *dgt = s->dgate + t * K;
        float dp[1024];
        for (int e = 0; e < E; e++) dp[e] = aux_scale * (float)E * A->aux_frac[e] / (float)N;
        if (cfg->renorm_topk) {
            double S = 0.0, wd = 0.0;
            for (int k = 0; k < K; k++) S += p[sel[k]];
            for (int k = 0; k < K; k++) wd += (double)dgt[k] * p[sel[k]] / S;
            for (int k = 0; k < K; k++) dp[sel[k]] += (float)((dgt[k] - wd) / S);
        } else {
            for (int k = 0; k < K; k++) dp[sel[k]] += dgt[k];
        }
        double pdp = 0.0;
        for (int e = 0; e < E; e++) pdp += (double)p[e] * dp[e];
        float *dr = s->drl + t * E;
        for (int e = 0; e < E; e++) {
            float v = p[e] * (dp[e] - (float)pdp);
            if (cfg->router_softcap > 0) {
                float th = c[e] / cfg->router_softcap;
                v *= 1.0f - th * th;
            }
            dr[e] = v;
        }
    }
    mm_dw(s, G->router, s->drl, A->xn2, N, E, d);
    mm_dx(s, s->dxn, s->drl, W->router, N, E, d, true);
}

/* ------------------------------------------------------------- forward --- */

int gk_tforward(gk_tstate *s, const int32_t *inputs, const int32_t *targets, gk_tloss *out,
                gk_err *err) {
    gk_tmodel *tm = s->tm;
    const gk_hparams *hp = &tm->hp;
    const gk_tview *Wv = &tm->W;
    const int64_t N = s->N, d = hp->n_embd, hd = hp->head_dim, nq = (int64_t)hp->n_head * hd,
                  nkv = (int64_t)hp->n_head_kv * hd, Fd = hp->n_ff, V = hp->n_vocab;
    const float eps = hp->norm_eps;
    for (int64_t t = 0; t < N; t++) {
        if (inputs[t] < 0 || (uint32_t)inputs[t] >= hp->n_vocab || targets[t] < 0 ||
            (uint32_t)targets[t] >= hp->n_vocab)
            return gk_fail(err, "token id at index %lld is outside the vocabulary of %u",
                           (long long)t, hp->n_vocab);
    }
    double t0 = gk_time_s();
    memcpy(s->inp, inputs, (size_t)N * sizeof(int32_t));
    memcpy(s->tgt, targets, (size_t)N * sizeof(int32_t));
    float *x = s->act[0].x;
    for (int64_t t = 0; t < N; t++)
        for (int64_t i = 0; i < d; i++)
            x[t * d + i] = Wv->tok_embd[(int64_t)inputs[t] * d + i] * hp->embedding_scale;
    double aux = 0.0;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        tact *A = &s->act[l];
        const gk_tlayer *W = &Wv->layers[l];
        float *xnext = l + 1 < hp->n_layer ? s->act[l + 1].x : s->xf;
        rmsnorm_fwd(A->xn1, A->r1, A->x, W->attn_norm, N, d, eps);
        mm(s, A->q, W->wq, nq, A->xn1, d, N);
        mm(s, A->k, W->wk, nkv, A->xn1, d, N);
        mm(s, A->v, W->wv, nkv, A->xn1, d, N);
        for (int b = 0; b < s->B; b++) {
            gk_rope_apply(A->q + (int64_t)b * s->T * nq, s->T, (int)hp->n_head, (int)hd,
                          (int)hp->n_rot, s->rope_cos, s->rope_sin);
            gk_rope_apply(A->k + (int64_t)b * s->T * nkv, s->T, (int)hp->n_head_kv, (int)hd,
                          (int)hp->n_rot, s->rope_cos, s->rope_sin);
        }
        attn_job aj = {.s = s, .A = A};
        run(s, &s->stats.attn_s, attn_fwd_part, &aj);
        mm(s, A->a, W->wo, d, A->att, nq, N);
        rmsnorm_fwd(s->dt1, A->r2, A->a, W->attn_out_norm, N, d, eps);
        for (int64_t i = 0; i < N * d; i++) A->xm[i] = A->x[i] + s->dt1[i];
        rmsnorm_fwd(A->xn2, A->r3, A->xm, W->ffn_norm, N, d, eps);
        aux += moe_fwd(s, W, A, A->f);
        if (hp->variant == GK_VARIANT_GROK2) {
            mm2(s, A->g, W->ffn_gate, A->u, W->ffn_up, Fd, A->xn2, d, N);
            geglu_fwd(s, s->buf1, A->g, A->u, N * Fd);
            mm(s, s->dt1, W->ffn_down, d, s->buf1, Fd, N);
            for (int64_t i = 0; i < N * d; i++)
                A->f[i] = (s->dt1[i] + A->f[i]) / 1.4142135623730951f;
        }
        rmsnorm_fwd(s->dt1, A->r4, A->f, W->post_ffn_norm, N, d, eps);
        for (int64_t i = 0; i < N * d; i++) xnext[i] = A->xm[i] + s->dt1[i];
    }
    rmsnorm_fwd(s->yf, s->rf, s->xf, Wv->output_norm, N, d, eps);
    mm(s, s->z, Wv->output, V, s->yf, d, N);
    double part[256] = {0};
    ce_job cj = {.s = s, .ce_part = part};
    run(s, &s->stats.pool_ew_s, ce_fwd_part, &cj);
    double ce = 0.0;
    for (int i = 0; i < s->nth; i++) ce += part[i];
    out->ce_sum = ce;
    out->aux = aux;
    out->n_tokens = N;
    s->stats.forward_s += gk_time_s() - t0;
    return 0;
}

/* ------------------------------------------------------------- backward --- */

void gk_tbackward(gk_tstate *s, float ce_scale, float aux_scale) {
    gk_tmodel *tm = s->tm;
    const gk_hparams *hp = &tm->hp;
    const gk_tview *Wv = &tm->W, *Gv = &tm->G;
    const int64_t N = s->N, d = hp->n_embd, hd = hp->head_dim, nq = (int64_t)hp->n_head * hd,
                  nkv = (int64_t)hp->n_head_kv * hd, Fd = hp->n_ff, V = hp->n_vocab;
    double t0 = gk_time_s();
    ce_job cj = {.s = s, .ce_scale = ce_scale};
    run(s, &s->stats.pool_ew_s, ce_bwd_part, &cj); /* s->z now holds dLoss/dlogits */
    mm_dx(s, s->dt1, s->z, Wv->output, N, V, d, false);
    mm_dw(s, Gv->output, s->z, s->yf, N, V, d);
    rmsnorm_bwd(s->dx, false, Gv->output_norm, s->dt1, s->xf, Wv->output_norm, s->rf, N, d);

    for (int l = (int)hp->n_layer - 1; l >= 0; l--) {
        const tact *A = &s->act[l];
        const gk_tlayer *W = &Wv->layers[l];
        gk_tlayer *G = &Gv->layers[l];
        /* x' = xm + norm(f): s->dx is dL/dx' and becomes dL/dxm */
        rmsnorm_bwd(s->dt1, false, G->post_ffn_norm, s->dx, A->f, W->post_ffn_norm, A->r4, N, d);
        if (hp->variant == GK_VARIANT_GROK2) {
            for (int64_t i = 0; i < N * d; i++) s->dt1[i] /= 1.4142135623730951f;
            geglu_fwd(s, s->buf1, A->g, A->u, N * Fd);
            mm_dw(s, G->ffn_down, s->dt1, s->buf1, N, d, Fd);
            mm_dx(s, s->buf2, s->dt1, W->ffn_down, N, d, Fd, false);
            geglu_bwd_job gj = {.da = s->buf2,
                                .dh3 = s->buf3,
                                .h1 = A->g,
                                .h3 = A->u,
                                .n = N * Fd,
                                .erf = tm->cfg.gelu == GK_GELU_ERF};
            run(s, &s->stats.pool_ew_s, geglu_bwd_part, &gj);
            mm_dw(s, G->ffn_gate, s->buf2, A->xn2, N, Fd, d);
            mm_dw(s, G->ffn_up, s->buf3, A->xn2, N, Fd, d);
            mm_dx(s, s->dxn, s->buf2, W->ffn_gate, N, Fd, d, false);
            mm_dx(s, s->dxn, s->buf3, W->ffn_up, N, Fd, d, true);
        } else {
            memset(s->dxn, 0, (size_t)(N * d) * sizeof(float));
        }
        moe_bwd(s, W, G, A, s->dt1, aux_scale);
        rmsnorm_bwd(s->dx, true, G->ffn_norm, s->dxn, A->xm, W->ffn_norm, A->r3, N, d);
        /* xm = x + norm(a): s->dx is dL/dxm and stays as the residual path of dL/dx */
        rmsnorm_bwd(s->dt1, false, G->attn_out_norm, s->dx, A->a, W->attn_out_norm, A->r2, N, d);
        mm_dw(s, G->wo, s->dt1, A->att, N, d, nq);
        mm_dx(s, s->datt, s->dt1, W->wo, N, d, nq, false);
        memset(s->dq, 0, (size_t)(N * nq) * sizeof(float));
        memset(s->dk, 0, (size_t)(N * nkv) * sizeof(float));
        memset(s->dv, 0, (size_t)(N * nkv) * sizeof(float));
        attn_job aj = {.s = s, .A = A};
        run(s, &s->stats.attn_s, attn_bwd_part, &aj);
        rope_bwd(s->dq, s->B, s->T, (int)hp->n_head, (int)hd, (int)hp->n_rot, s->rope_cos,
                 s->rope_sin);
        rope_bwd(s->dk, s->B, s->T, (int)hp->n_head_kv, (int)hd, (int)hp->n_rot, s->rope_cos,
                 s->rope_sin);
        mm_dw(s, G->wq, s->dq, A->xn1, N, nq, d);
        mm_dw(s, G->wk, s->dk, A->xn1, N, nkv, d);
        mm_dw(s, G->wv, s->dv, A->xn1, N, nkv, d);
        mm_dx(s, s->dxn, s->dq, W->wq, N, nq, d, false);
        mm_dx(s, s->dxn, s->dk, W->wk, N, nkv, d, true);
        mm_dx(s, s->dxn, s->dv, W->wv, N, nkv, d, true);
        rmsnorm_bwd(s->dx, true, G->attn_norm, s->dxn, A->x, W->attn_norm, A->r1, N, d);
    }
    for (int64_t t = 0; t < N; t++) {
        float *ge = Gv->tok_embd + (int64_t)s->inp[t] * d;
        const float *dxr = s->dx + t * d;
        for (int64_t i = 0; i < d; i++) ge[i] += dxr[i] * hp->embedding_scale;
    }
    s->stats.backward_s += gk_time_s() - t0;
}

gk_tstats gk_tstate_stats(const gk_tstate *s) {
    return s->stats;
}

gk_tstats gk_tstats_since(const gk_tstate *s, const gk_tstats *since, double n, double *own) {
    const gk_tstats *a = &s->stats;
    gk_tstats d = {.forward_s = (a->forward_s - since->forward_s) / n,
                   .backward_s = (a->backward_s - since->backward_s) / n,
                   .gemm_s = (a->gemm_s - since->gemm_s) / n,
                   .attn_s = (a->attn_s - since->attn_s) / n,
                   .pool_ew_s = (a->pool_ew_s - since->pool_ew_s) / n};
    *own = d.forward_s + d.backward_s - d.gemm_s - d.attn_s - d.pool_ew_s;
    return d;
}

/* --------------------------------------------------------------- state --- */

/* Carves n elements of 64-byte-aligned space; with base NULL it only counts. */
static void *carve(uint8_t *base, size_t *off, size_t n, size_t elem) {
    void *p = base ? base + *off : NULL;
    *off += (n * elem + 63) / 64 * 64;
    return p;
}

static size_t layout(gk_tstate *s, uint8_t *base) {
    const gk_hparams *hp = &s->tm->hp;
    const size_t N = (size_t)s->N, d = hp->n_embd, nq = (size_t)hp->n_head * hp->head_dim,
                 nkv = (size_t)hp->n_head_kv * hp->head_dim, E = hp->n_expert,
                 K = hp->n_expert_used, F = hp->n_ff_exp,
                 Fd = hp->variant == GK_VARIANT_GROK2 ? hp->n_ff : 0, V = hp->n_vocab,
                 half = hp->n_rot / 2;
    size_t off = 0, wide = F > Fd ? F : Fd;
    s->scr_row = 3 * (int64_t)s->T > (int64_t)V ? 3 * (int64_t)s->T : (int64_t)V;
    if (d > wide) wide = d;
#define F32(n) (float *)carve(base, &off, (n), sizeof(float))
#define I32(n) (int32_t *)carve(base, &off, (n), sizeof(int32_t))
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        tact A;
        A.x = F32(N * d), A.xn1 = F32(N * d), A.r1 = F32(N), A.q = F32(N * nq);
        A.k = F32(N * nkv), A.v = F32(N * nkv), A.att = F32(N * nq), A.a = F32(N * d);
        A.r2 = F32(N), A.xm = F32(N * d), A.xn2 = F32(N * d), A.r3 = F32(N);
        A.rl = F32(N * E), A.pr = F32(N * E), A.gate = F32(N * K), A.sel = I32(N * K);
        A.exp_off = I32(E + 1), A.row_tok = I32(N * K), A.row_slot = I32(N * K);
        A.h1 = F32(N * K * F), A.h3 = F32(N * K * F), A.ye = F32(N * K * d);
        A.g = Fd ? F32(N * Fd) : NULL, A.u = Fd ? F32(N * Fd) : NULL;
        A.f = F32(N * d), A.r4 = F32(N), A.aux_frac = F32(E);
        if (base) s->act[l] = A;
    }
    float *xf = F32(N * d), *rf = F32(N), *yf = F32(N * d), *z = F32(N * V), *lse = F32(N);
    float *rc = F32((size_t)s->T * half), *rs = F32((size_t)s->T * half);
    int32_t *inp = I32(N), *tgt = I32(N);
    float *dx = F32(N * d), *dt1 = F32(N * d), *dxn = F32(N * d), *dq = F32(N * nq);
    float *dk = F32(N * nkv), *dv = F32(N * nkv), *datt = F32(N * nq), *xe = F32(N * d);
    float *b1 = F32(N * wide), *b2 = F32(N * wide), *b3 = F32(N * wide), *dye = F32(N * d);
    float *drl = F32(N * E + E), *dgate = F32(N * K), *scr = F32((size_t)s->nth * s->scr_row);
    size_t tw = V > wide ? V : wide;
    if (nq > tw) tw = nq;
    if (E > tw) tw = E;
    float *tbuf = F32(N * tw);
#undef F32
#undef I32
    if (base) {
        s->xf = xf, s->rf = rf, s->yf = yf, s->z = z, s->lse = lse, s->rope_cos = rc;
        s->rope_sin = rs, s->inp = inp, s->tgt = tgt, s->dx = dx, s->dt1 = dt1, s->dxn = dxn;
        s->dq = dq, s->dk = dk, s->dv = dv, s->datt = datt, s->xe = xe, s->buf1 = b1;
        s->buf2 = b2, s->buf3 = b3, s->dye = dye, s->drl = drl, s->dgate = dgate;
        s->attn_scr = scr, s->tbuf = tbuf;
    }
    return off;
}

gk_tstate *gk_tstate_new(const gk_tmodel *tm, int B, int T, gk_pool *pool, gk_err *err) {
    if (B < 1 || T < 1 || (int64_t)B * T > (1 << 24))
        return gk_failp(err, "micro-batch of %d x %d tokens is out of range", B, T);
    if (tm->hp.n_expert > 1024) return gk_failp(err, "more than 1024 experts");
    if (gk_pool_size(pool) > 256) return gk_failp(err, "more than 256 threads");
    gk_tstate *s = gk_calloc(1, sizeof *s, err);
    if (!s) return NULL;
    s->tm = (gk_tmodel *)tm;
    s->pool = pool;
    s->B = B, s->T = T, s->N = (int64_t)B * T, s->nth = gk_pool_size(pool);
    s->act = gk_calloc(tm->hp.n_layer, sizeof(tact), err);
    if (!s->act) goto fail;
    size_t bytes = layout(s, NULL);
    s->arena = gk_malloc_aligned(bytes, err);
    if (!s->arena) {
        gk_err_prefix(err, "training activations (%.1f MiB for %d x %d tokens)", bytes / 1048576.0,
                      B, T);
        goto fail;
    }
    layout(s, s->arena);
    gk_rope_tables(&tm->cfg.rope, 0, T, s->rope_cos, s->rope_sin);
    return s;
fail:
    gk_tstate_free(s);
    return NULL;
}

void gk_tstate_free(gk_tstate *s) {
    if (!s) return;
    gk_free_aligned(s->arena);
    free(s->act);
    free(s);
}
