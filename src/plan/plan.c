/*
 * plan.c - the cost model: the weight matrices of a transformer's forward pass
 * and what one forward, one training token and one optimizer step cost in FLOPs
 * and bytes, counted the way the engine runs them (src/model/forward.c):
 *
 *   per layer  attn_q, attn_k, attn_v, attn_output    every token
 *              q.k and P.V over the keys               (2 qk_dim + 2 v_dim) n_head per key
 *              ffn_gate_inp (router, f32)              every token
 *              ffn_{gate,up,down}_exps                 each token's top-k experts; each
 *                                                      touched expert's matrices read once
 *              ffn_{gate,up,down} (Grok-2 dense MLP)   every token
 *   output                                             only tokens whose logits are kept
 *   token_embd                                         one row looked up per token
 *
 * Bytes of a matrix come from its type's block size (gk_row_size), so a k-quant
 * mix is costed from the real block layouts. Shapes of other architectures
 * (Llama, DeepSeek-V3's MLA and shared experts, GPT-3's ungated MLP) use the same
 * op list so published training runs can be checked against the same code.
 */
#include "grok.h"

#include "base/base.h"
#include "format/gguf.h"
#include "model/model.h"
#include "plan/plan.h"
#include "tensor/dtype.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------ presets --- */

typedef struct {
    const char *name;
    gk_plan_shape s;
} shape_preset;

/* Each shape from its authoritative configuration:
 *  grok-1: ../shared/spec/grok-models.md section 1 (xai-org/grok-1 run.py, model.py)
 *  grok-2: the same section (xai-org/grok-2 config as copied by SGLang-JAX)
 *  llama-3.1-405b: Meta, "The Llama 3 Herd of Models" (arXiv:2407.21783) Table 3:
 *     126 layers, d 16384, FFN 53248, 128 heads, 8 KV heads, vocab 128000 (+256
 *     reserved specials = 128256 in the released config), untied, SwiGLU; 8192-token
 *     pre-training sequences
 *  deepseek-v3: DeepSeek-AI, "DeepSeek-V3 Technical Report" (arXiv:2412.19437)
 *     section 4.2: 61 layers, d 7168, 128 heads, MLA with q rank 1536, kv rank 512,
 *     per-head 128 + 64 (RoPE) query/key dims, 128 value dims; the first 3 layers
 *     dense (FFN 18432, released config.json), the others 1 shared + 256 routed
 *     experts of width 2048, 8 routed per token; vocab 129280; 4096-token sequences
 *  gpt-3-175b: Brown et al. 2020 (arXiv:2005.14165) Table 2.1: 96 layers,
 *     d 12288, 96 heads of 128, FFN 4d, context 2048; GPT-2's 50257-token vocabulary,
 *     tied embedding, learned positions
 *  chinchilla-70b: Hoffmann et al. 2022 (arXiv:2203.15556) Table 4: 80 layers,
 *     d 8192, 64 heads of 128, FFN 4d (as Gopher), 32000-token vocabulary
 *     (Rae et al. 2021), 2048-token sequences */
static const shape_preset shape_presets[] = {
    {"grok-1",
     {.variant = GK_VARIANT_GROK1,
      .n_vocab = 131072,
      .n_embd = 6144,
      .n_layer = 64,
      .n_head = 48,
      .n_head_kv = 8,
      .head_dim = 128,
      .n_ctx = 8192,
      .n_ff = 0,
      .n_ff_exp = 32768,
      .n_expert = 8,
      .n_expert_used = 2,
      .gated = true,
      .tied_output = true,
      .attn_softcap = 30}},
    {"grok-2",
     {.variant = GK_VARIANT_GROK2,
      .n_vocab = 131072,
      .n_embd = 8192,
      .n_layer = 64,
      .n_head = 64,
      .n_head_kv = 8,
      .head_dim = 128,
      .n_ctx = 131072,
      .n_ff = 32768,
      .n_ff_exp = 16384,
      .n_expert = 8,
      .n_expert_used = 2,
      .gated = true,
      .tied_output = false,
      .attn_softcap = 30,
      .router_softcap = 30,
      .final_softcap = 50,
      .gelu_erf = true}},
    {"llama-3.1-405b",
     {.n_vocab = 128256,
      .n_embd = 16384,
      .n_layer = 126,
      .n_head = 128,
      .n_head_kv = 8,
      .head_dim = 128,
      .n_ctx = 8192,
      .n_ff = 53248,
      .gated = true}},
    {"deepseek-v3",
     {.n_vocab = 129280,
      .n_embd = 7168,
      .n_layer = 61,
      .n_head = 128,
      .n_head_kv = 128,
      .head_dim = 128,
      .n_ctx = 4096,
      .attn = GK_PLAN_ATTN_MLA,
      .q_lora = 1536,
      .kv_lora = 512,
      .rope_dim = 64,
      .v_head_dim = 128,
      .n_ff = 2048,
      .n_ff_exp = 2048,
      .n_expert = 256,
      .n_expert_used = 8,
      .n_layer_dense = 3,
      .n_ff_lead = 18432,
      .gated = true}},
    {"gpt-3-175b",
     {.n_vocab = 50257,
      .n_embd = 12288,
      .n_layer = 96,
      .n_head = 96,
      .n_head_kv = 96,
      .head_dim = 128,
      .n_ctx = 2048,
      .n_ff = 49152,
      .gated = false,
      .tied_output = true,
      .n_pos_embd = 2048}},
    {"chinchilla-70b",
     {.n_vocab = 32000,
      .n_embd = 8192,
      .n_layer = 80,
      .n_head = 64,
      .n_head_kv = 64,
      .head_dim = 128,
      .n_ctx = 2048,
      .n_ff = 32768,
      .gated = false}},
};
#define N_SHAPE_PRESETS ((int)(sizeof shape_presets / sizeof shape_presets[0]))

const char *gk_plan_model_preset_name(int i) {
    return i >= 0 && i < N_SHAPE_PRESETS ? shape_presets[i].name : NULL;
}

int gk_plan_shape_preset(const char *name, gk_plan_shape *out, gk_err *err) {
    for (int i = 0; i < N_SHAPE_PRESETS; i++)
        if (!strcasecmp(name, shape_presets[i].name)) {
            *out = shape_presets[i].s;
            snprintf(out->name, sizeof out->name, "%s", shape_presets[i].name);
            return 0;
        }
    char list[256] = "";
    for (int i = 0; i < N_SHAPE_PRESETS; i++) {
        strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, shape_presets[i].name, sizeof list - strlen(list) - 1);
    }
    return gk_fail(err, "unknown model preset '%s' (known: %s; or a .gguf file)", name, list);
}

void gk_plan_shape_from_hparams(const gk_hparams *hp, const char *name, gk_plan_shape *s) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name ? name : "model");
    s->variant = hp->variant;
    s->n_vocab = hp->n_vocab;
    s->n_embd = hp->n_embd;
    s->n_layer = hp->n_layer;
    s->n_head = hp->n_head;
    s->n_head_kv = hp->n_head_kv;
    s->head_dim = hp->head_dim;
    s->n_ctx = hp->n_ctx_train;
    s->n_ff = hp->variant == GK_VARIANT_GROK2 ? hp->n_ff : 0;
    s->n_ff_exp = hp->n_ff_exp;
    s->n_expert = hp->n_expert;
    s->n_expert_used = hp->n_expert_used;
    s->gated = true;
    s->tied_output = hp->tied_output;
    /* the reference numerics (model.c, tmodel.c): Grok-1 has no router softcap and a
     * tanh GELU */
    s->attn_softcap = hp->attn_softcap;
    s->router_softcap = hp->variant == GK_VARIANT_GROK2 ? hp->router_softcap : 0.0f;
    s->final_softcap = hp->final_softcap;
    s->gelu_erf = hp->variant == GK_VARIANT_GROK2;
}

int gk_plan_shape_check(const gk_plan_shape *s, gk_err *err) {
    if (!s->n_vocab || !s->n_embd || !s->n_layer || !s->n_head || !s->head_dim)
        return gk_fail(err, "model shape: vocab, embedding, layers, heads and head_dim must all "
                            "be positive");
    if (s->attn == GK_PLAN_ATTN_GQA && (!s->n_head_kv || s->n_head % s->n_head_kv))
        return gk_fail(err, "model shape: %u KV heads do not divide %u heads", s->n_head_kv,
                       s->n_head);
    if (s->n_expert && (!s->n_expert_used || s->n_expert_used > s->n_expert || !s->n_ff_exp))
        return gk_fail(err, "model shape: top-%u of %u experts of width %u is not a valid MoE",
                       s->n_expert_used, s->n_expert, s->n_ff_exp);
    if (!s->n_expert && !s->n_ff)
        return gk_fail(err, "model shape: no MLP (neither experts nor a dense width)");
    if (s->n_layer_dense > s->n_layer)
        return gk_fail(err, "model shape: %u leading dense layers of %u", s->n_layer_dense,
                       s->n_layer);
    if (s->variant && s->variant != GK_VARIANT_GROK1 && s->variant != GK_VARIANT_GROK2)
        return gk_fail(err, "model shape: unknown variant %d", (int)s->variant);
    if (s->variant == GK_VARIANT_GROK1 && s->n_ff)
        return gk_fail(err, "model shape: Grok-1 has no dense MLP (n_ff must be 0)");
    if (s->variant == GK_VARIANT_GROK2 && !s->n_ff)
        return gk_fail(err, "model shape: Grok-2 needs the dense MLP width (n_ff)");
    /* sizes are uint32; products stay exact in doubles below 2^53 */
    double big = (double)s->n_embd * s->n_ff_exp * s->n_expert * s->n_layer;
    if (big > 9e15) return gk_fail(err, "model shape: sizes too large to cost exactly");
    return 0;
}

/* ---------------------------------------------------------- op list --- */

typedef struct {
    const char *base; /* type for most matrices */
    bool llama_km;    /* llama.cpp's _K_M rules */
    gk_dtype km_base; /* q4_k or q5_k */
} mix_spec;

/* llama.cpp (src/llama-quant.cpp @82bb48500) use_more_bits: the first and last
 * eighth of the layers and every third one between get more bits. */
static bool more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* A k-quant needs rows that are whole 256-element blocks; llama.cpp falls back to
 * a 32-element format of about the same size. */
static gk_dtype fit_type(gk_dtype t, int64_t cols) {
    if (gk_row_size(t, cols)) return t;
    switch (t) {
    case GK_TYPE_Q2_K:
    case GK_TYPE_Q3_K:
        t = GK_TYPE_Q4_0;
        break;
    case GK_TYPE_Q4_K:
        t = GK_TYPE_Q5_0;
        break;
    case GK_TYPE_Q5_K:
        t = GK_TYPE_Q5_1;
        break;
    case GK_TYPE_Q6_K:
        t = GK_TYPE_Q8_0;
        break;
    default:
        t = GK_TYPE_F16;
    }
    return gk_row_size(t, cols) ? t : GK_TYPE_F32;
}

static int add_op(gk_plan_model *pm, const char *name, gk_plan_op_kind kind, gk_dtype type,
                  int64_t rows, int64_t cols, uint32_t n_layers, gk_err *err) {
    if (!rows || !cols || !n_layers) return 0;
    type = fit_type(type, cols);
    for (int i = 0; i < pm->n_ops; i++) {
        gk_plan_op *o = &pm->ops[i];
        if (!strcmp(o->name, name) && o->type == (uint32_t)type && o->rows == rows &&
            o->cols == cols && o->kind == kind) {
            o->n_layers += n_layers;
            return 0;
        }
    }
    if (pm->n_ops == GK_PLAN_MAX_OPS) return gk_fail(err, "plan: too many distinct matrices");
    gk_plan_op *o = &pm->ops[pm->n_ops++];
    snprintf(o->name, sizeof o->name, "%s", name);
    o->kind = kind;
    o->type = (uint32_t)type;
    o->rows = rows;
    o->cols = cols;
    o->n_layers = n_layers;
    return 0;
}

static int parse_mix(const char *mix, mix_spec *m, gk_err *err) {
    memset(m, 0, sizeof *m);
    if (!mix || !*mix) mix = "bf16";
    if (!strcasecmp(mix, "q4_k_m") || !strcasecmp(mix, "q5_k_m")) {
        m->llama_km = true;
        m->km_base = !strcasecmp(mix, "q4_k_m") ? GK_TYPE_Q4_K : GK_TYPE_Q5_K;
        return 0;
    }
    int t = gk_type_from_name(mix);
    const gk_type_traits *tt = t >= 0 ? gk_type_traits_of((uint32_t)t) : NULL;
    if (!tt || !tt->name || tt->blck_size <= 0 || !tt->type_size || t == GK_TYPE_I8 ||
        t == GK_TYPE_I16 || t == GK_TYPE_I32 || t == GK_TYPE_I64 || t == GK_TYPE_F64)
        return gk_fail(err,
                       "unknown weight type '%s' (a ggml type such as f32, bf16, q8_0, "
                       "q4_0, q4_k, q6_k, or the mixes q4_k_m, q5_k_m)",
                       mix);
    m->km_base = (gk_dtype)t;
    return 0;
}

/* The type of matrix `name` of layer il (-1: not in a layer) under a mix. */
static gk_dtype mix_type(const mix_spec *m, const gk_plan_shape *s, const char *name, int il) {
    if (!m->llama_km) return m->km_base;
    bool q4 = m->km_base == GK_TYPE_Q4_K;
    int n = (int)s->n_layer;
    if (!strcmp(name, "output")) return GK_TYPE_Q6_K;
    if (!strcmp(name, "attn_v"))
        return s->n_expert == 8 ? GK_TYPE_Q8_0 : more_bits(il, n) ? GK_TYPE_Q6_K : m->km_base;
    if (!strcmp(name, "attn_output")) return s->n_expert == 8 && q4 ? GK_TYPE_Q5_K : m->km_base;
    if (!strncmp(name, "ffn_down", 8)) return more_bits(il, n) ? GK_TYPE_Q6_K : m->km_base;
    return m->km_base;
}

/* The type of the first matrix called name, -1 if none. */
static int op_type(const gk_plan_model *pm, const char *name) {
    for (int i = 0; i < pm->n_ops; i++)
        if (!strcmp(pm->ops[i].name, name)) return (int)pm->ops[i].type;
    return -1;
}

/* n splits a product's columns (of a matrix of type t) into whole blocks. */
static bool cols_split(int t, int64_t cols, uint32_t n) {
    if (t < 0) return true;
    int64_t bs = gk_type_traits_of((uint32_t)t)->blck_size;
    return cols % n == 0 && (cols / n) % bs == 0;
}

/* The summation tree's chunk count as src/model/tp.c sum_chunks finds it for a file:
 * the largest n <= min(KV heads, GK_TP_MAX_CHUNKS) that divides the KV heads and the
 * expert width and splits the columns of attn_output and the down matrices on block
 * boundaries (test_plan checks it against gk_model_sum_chunks on real files). */
static uint32_t plan_sum_chunks(const gk_plan_model *pm) {
    const gk_plan_shape *s = &pm->s;
    if (!s->variant || s->attn != GK_PLAN_ATTN_GQA) return 1;
    uint32_t top = s->n_head_kv < GK_TP_MAX_CHUNKS ? s->n_head_kv : GK_TP_MAX_CHUNKS;
    int64_t nq = (int64_t)s->n_head * s->head_dim;
    for (uint32_t n = top; n > 1; n--) {
        if (s->n_head_kv % n || s->n_ff_exp % n) continue;
        if (!cols_split(op_type(pm, "attn_output"), nq, n) ||
            !cols_split(op_type(pm, "ffn_down_exps"), s->n_ff_exp, n))
            continue;
        if (op_type(pm, "ffn_down") >= 0 &&
            (s->n_ff % n || !cols_split(op_type(pm, "ffn_down"), s->n_ff, n)))
            continue;
        return n;
    }
    return 1;
}

int gk_plan_model_build(const gk_plan_shape *s, const char *mix, gk_plan_model *pm, gk_err *err) {
    if (gk_plan_shape_check(s, err) < 0) return -1;
    mix_spec mx;
    if (parse_mix(mix, &mx, err) < 0) return -1;
    memset(pm, 0, sizeof *pm);
    pm->s = *s;
    const int64_t d = s->n_embd, V = s->n_vocab;
    const int nl = (int)s->n_layer;
    int rc = 0;
#define OP(nm, kind, rows, cols, il)                                                               \
    rc |= add_op(pm, nm, kind, mix_type(&mx, s, nm, il), rows, cols, 1, err)
    OP("token_embd", GK_PLAN_OP_EMBD, V, d, -1);
    if (s->n_pos_embd) OP("position_embd", GK_PLAN_OP_EMBD, s->n_pos_embd, d, -1);
    for (int il = 0; il < nl && !rc; il++) {
        if (s->attn == GK_PLAN_ATTN_MLA) {
            int64_t qk = s->head_dim + s->rope_dim;
            OP("attn_q_a", GK_PLAN_OP_LAYER, s->q_lora, d, il);
            OP("attn_q_b", GK_PLAN_OP_LAYER, (int64_t)s->n_head * qk, s->q_lora, il);
            OP("attn_kv_a", GK_PLAN_OP_LAYER, (int64_t)s->kv_lora + s->rope_dim, d, il);
            OP("attn_kv_b", GK_PLAN_OP_LAYER,
               (int64_t)s->n_head * ((int64_t)s->head_dim + s->v_head_dim), s->kv_lora, il);
            OP("attn_output", GK_PLAN_OP_LAYER, d, (int64_t)s->n_head * s->v_head_dim, il);
        } else {
            int64_t nq = (int64_t)s->n_head * s->head_dim,
                    nkv = (int64_t)s->n_head_kv * s->head_dim;
            OP("attn_q", GK_PLAN_OP_LAYER, nq, d, il);
            OP("attn_k", GK_PLAN_OP_LAYER, nkv, d, il);
            OP("attn_v", GK_PLAN_OP_LAYER, nkv, d, il);
            OP("attn_output", GK_PLAN_OP_LAYER, d, nq, il);
        }
        bool moe_layer = s->n_expert && il >= (int)s->n_layer_dense;
        int64_t ff = moe_layer ? s->n_ff : (s->n_expert ? s->n_ff_lead : s->n_ff);
        if (moe_layer) {
            /* the router stays f32 (grok quantize and llama.cpp keep it) */
            rc |= add_op(pm, "ffn_gate_inp", GK_PLAN_OP_LAYER, GK_TYPE_F32, s->n_expert, d, 1, err);
            OP("ffn_gate_exps", GK_PLAN_OP_EXPERT, s->n_ff_exp, d, il);
            OP("ffn_up_exps", GK_PLAN_OP_EXPERT, s->n_ff_exp, d, il);
            OP("ffn_down_exps", GK_PLAN_OP_EXPERT, d, s->n_ff_exp, il);
        }
        if (ff) {
            if (s->gated) OP("ffn_gate", GK_PLAN_OP_LAYER, ff, d, il);
            OP("ffn_up", GK_PLAN_OP_LAYER, ff, d, il);
            OP("ffn_down", GK_PLAN_OP_LAYER, d, ff, il);
        }
    }
    /* tied: the embedding is the output matrix (stored once, in the embedding's type) */
    gk_dtype out_t =
        s->tied_output ? mix_type(&mx, s, "token_embd", -1) : mix_type(&mx, s, "output", -1);
    rc |= add_op(pm, "output", GK_PLAN_OP_OUTPUT, out_t, V, d, 1, err);
#undef OP
    if (rc) return -1;
    pm->sum_g = plan_sum_chunks(pm);
    /* norms: Grok's four sandwich norms per layer; others two; plus the final norm */
    pm->small_params = (double)d * ((s->variant ? 4.0 : 2.0) * nl + 1.0);
    return 0;
}

static int add_weight(gk_plan_model *pm, const char *name, gk_plan_op_kind kind, const gk_weight *w,
                      gk_err *err) {
    if (!w->data) return 0;
    return add_op(pm, name, kind, w->type, w->ne[1], w->ne[0], 1, err);
}

int gk_plan_model_from_model(const gk_model *m, gk_plan_model *pm, gk_err *err) {
    memset(pm, 0, sizeof *pm);
    gk_plan_shape_from_hparams(&m->hp, "model", &pm->s);
    const gk_hparams *hp = &m->hp;
    int rc = add_weight(pm, "token_embd", GK_PLAN_OP_EMBD, &m->tok_embd, err);
    for (uint32_t il = 0; il < hp->n_layer && !rc; il++) {
        const gk_layer *L = &m->layers[il];
        rc |= add_weight(pm, "attn_q", GK_PLAN_OP_LAYER, &L->wq, err);
        rc |= add_weight(pm, "attn_k", GK_PLAN_OP_LAYER, &L->wk, err);
        rc |= add_weight(pm, "attn_v", GK_PLAN_OP_LAYER, &L->wv, err);
        rc |= add_weight(pm, "attn_output", GK_PLAN_OP_LAYER, &L->wo, err);
        rc |= add_weight(pm, "ffn_gate_inp", GK_PLAN_OP_LAYER, &L->router, err);
        rc |= add_weight(pm, "ffn_gate_exps", GK_PLAN_OP_EXPERT, &L->gate_exps, err);
        rc |= add_weight(pm, "ffn_up_exps", GK_PLAN_OP_EXPERT, &L->up_exps, err);
        rc |= add_weight(pm, "ffn_down_exps", GK_PLAN_OP_EXPERT, &L->down_exps, err);
        if (hp->variant == GK_VARIANT_GROK2) {
            rc |= add_weight(pm, "ffn_gate", GK_PLAN_OP_LAYER, &L->ffn_gate, err);
            rc |= add_weight(pm, "ffn_up", GK_PLAN_OP_LAYER, &L->ffn_up, err);
            rc |= add_weight(pm, "ffn_down", GK_PLAN_OP_LAYER, &L->ffn_down, err);
        }
    }
    rc |= add_weight(pm, "output", GK_PLAN_OP_OUTPUT, &m->output, err);
    if (rc) return -1;
    pm->small_params = (double)hp->n_embd * (4.0 * hp->n_layer + 1.0);
    pm->meta_bytes = (double)gk_gguf_data_offset(m->gguf);
    pm->sum_g = (uint32_t)gk_model_sum_chunks(m, NULL);
    return 0;
}

/* ------------------------------------------------------------ counts --- */

static double op_bytes(const gk_plan_op *o) {
    return (double)gk_row_size(o->type, o->cols) * (double)o->rows;
}
static double op_elems(const gk_plan_op *o) {
    return (double)o->rows * (double)o->cols;
}
/* Stored copies per layer entry. */
static double op_stored(const gk_plan_model *pm, const gk_plan_op *o) {
    if (o->kind == GK_PLAN_OP_EXPERT) return (double)pm->s.n_expert * o->n_layers;
    if (o->kind == GK_PLAN_OP_OUTPUT && pm->s.tied_output) return 0.0; /* = token_embd */
    return o->n_layers;
}

double gk_plan_params(const gk_plan_model *pm) {
    double n = pm->small_params;
    for (int i = 0; i < pm->n_ops; i++) n += op_elems(&pm->ops[i]) * op_stored(pm, &pm->ops[i]);
    return n;
}

double gk_plan_params_active(const gk_plan_model *pm) {
    double n = pm->small_params;
    for (int i = 0; i < pm->n_ops; i++) {
        const gk_plan_op *o = &pm->ops[i];
        double used =
            o->kind == GK_PLAN_OP_EXPERT ? (double)pm->s.n_expert_used * o->n_layers : o->n_layers;
        /* tied: the embedding is counted once, as the output matrix */
        if (o->kind == GK_PLAN_OP_EMBD && pm->s.tied_output && !strcmp(o->name, "token_embd"))
            used = 0;
        n += op_elems(o) * used;
    }
    return n;
}

double gk_plan_weight_bytes(const gk_plan_model *pm) {
    double b = pm->small_params * 4.0;
    for (int i = 0; i < pm->n_ops; i++) b += op_bytes(&pm->ops[i]) * op_stored(pm, &pm->ops[i]);
    return b;
}

double gk_plan_experts_touched(const gk_plan_shape *s, double n) {
    if (!s->n_expert) return 0.0;
    double E = s->n_expert, k = s->n_expert_used;
    double t = E * (1.0 - pow(1.0 - k / E, n));
    return t < k ? k : t;
}

double gk_plan_experts_single(const gk_plan_shape *s, double n) {
    if (!s->n_expert) return 0.0;
    double E = s->n_expert, k = s->n_expert_used, p = k / E;
    return n <= 1 ? k : E * n * p * pow(1.0 - p, n - 1);
}

/* FLOPs of attention per key, per layer, per query token. */
static double attn_flops_per_key(const gk_plan_shape *s) {
    if (s->attn == GK_PLAN_ATTN_MLA)
        return 2.0 * s->n_head * ((double)s->head_dim + s->rope_dim + s->v_head_dim);
    return 4.0 * s->n_head * (double)s->head_dim;
}

double gk_plan_kv_bytes_per_token(const gk_plan_shape *s, double elt) {
    if (s->attn == GK_PLAN_ATTN_MLA) return (double)s->n_layer * (s->kv_lora + s->rope_dim) * elt;
    return 2.0 * s->n_layer * (double)s->n_head_kv * s->head_dim * elt;
}

void gk_plan_op_work(const gk_plan_model *pm, const gk_plan_op *o, double n_tok, double n_logits,
                     double touched, double *flops, double *bytes) {
    double f = 2.0 * op_elems(o), b = op_bytes(o);
    *flops = *bytes = 0.0;
    switch (o->kind) {
    case GK_PLAN_OP_LAYER:
        *flops = f * n_tok * o->n_layers;
        *bytes = b * o->n_layers;
        break;
    case GK_PLAN_OP_EXPERT:
        *flops = f * n_tok * pm->s.n_expert_used * o->n_layers;
        *bytes = b * touched * o->n_layers;
        break;
    case GK_PLAN_OP_OUTPUT:
        if (n_logits > 0) {
            *flops = f * n_logits;
            *bytes = b;
        }
        break;
    case GK_PLAN_OP_EMBD:
        break;
    }
}

gk_plan_cost gk_plan_forward(const gk_plan_model *pm, double n_tok, double pos0, double n_logits,
                             double touched, double kv_elt) {
    gk_plan_cost c = {0};
    const gk_plan_shape *s = &pm->s;
    if (touched < 0) touched = gk_plan_experts_touched(s, n_tok);
    for (int i = 0; i < pm->n_ops; i++) {
        const gk_plan_op *o = &pm->ops[i];
        double f, b;
        gk_plan_op_work(pm, o, n_tok, n_logits, touched, &f, &b);
        c.matmul_flops += f;
        c.weight_bytes += b;
        if (o->kind == GK_PLAN_OP_EMBD) c.embd_bytes += op_bytes(o) / (double)o->rows * n_tok;
    }
    /* token t of the batch attends to positions 0..pos0+t: pos0 + t + 1 keys */
    double keys = n_tok * pos0 + n_tok * (n_tok + 1.0) / 2.0;
    c.attn_flops = attn_flops_per_key(s) * keys * s->n_layer;
    double kv_row = gk_plan_kv_bytes_per_token(s, kv_elt) / s->n_layer; /* K and V of a layer */
    c.kv_bytes_written = kv_row * s->n_layer * n_tok;
    c.kv_bytes_read = kv_row * s->n_layer * keys;
    return c;
}

gk_plan_train_cost gk_plan_train_per_token(const gk_plan_model *pm, double seq) {
    gk_plan_train_cost t = {0};
    /* a sequence: every token keeps its logits (the loss needs them) */
    gk_plan_cost c = gk_plan_forward(pm, seq, 0.0, seq, (double)pm->s.n_expert, 4.0);
    t.fwd_matmul_flops = c.matmul_flops / seq;
    t.fwd_attn_flops = c.attn_flops / seq;
    t.bwd_flops = 2.0 * (t.fwd_matmul_flops + t.fwd_attn_flops);
    t.flops = t.fwd_matmul_flops + t.fwd_attn_flops + t.bwd_flops;
    double n = gk_plan_params(pm);
    /* src/train/optim.c: the gradient norm (2 per parameter), then per parameter
     * 15 operations (scale, two moment updates, bias corrections, sqrt, eps, divide,
     * learning rate, decay, subtract); fp32 g read twice, w m v read and written */
    t.opt_flops_per_step = 17.0 * n;
    t.opt_bytes_per_step = 32.0 * n;
    return t;
}

/* Adds a pass over n elements: bytes and other FLOPs per element. */
static void ew_pass(gk_plan_ew *w, double n, double bytes, double flops) {
    w->bytes += n * bytes;
    w->flops += n * flops;
}

/* GELU forward (gk_gelu_erf: one erff; gk_gelu_tanh: one tanhf) over n elements. */
static void ew_gelu(gk_plan_ew *w, const gk_plan_shape *s, double n) {
    if (s->gelu_erf)
        w->erf += n;
    else
        w->tanh += n;
}

/* tforward.c's GeGLU over n elements: the forward (memcpy of h1 on the calling
 * thread, then gk_geglu on the pool), and in the backward the recomputed forward and
 * geglu_bwd_part (GELU and its derivative from one erf and one exp, or one tanh). */
static void ew_geglu(gk_plan_train_step *w, const gk_plan_shape *s, double n) {
    for (int pass = 0; pass < 2; pass++) { /* forward, recomputed in the backward */
        ew_pass(&w->ser, n, 8, 0);         /* memcpy act <- h1 */
        ew_pass(&w->par, n, 12, 4);        /* act = GELU(act) * h3 */
        ew_gelu(&w->par, s, n);
    }
    ew_pass(&w->par, n, 20, 16); /* read da, h1, h3; write dh1, dh3 */
    ew_gelu(&w->par, s, n);      /* GELU(h1) and GELU'(h1) share it */
    if (s->gelu_erf) w->par.exp += n;
}

/* RMSNorm over n elements: its forward (tforward.c rmsnorm_fwd, gk_rmsnorm: a pass
 * summing squares, 4 bytes and 2 FLOPs a value; a pass writing x r w, 12 bytes and 2
 * FLOPs) and its backward (a dot pass, then dx (+)= ...). */
static void ew_norm(gk_plan_train_step *w, double n, bool acc) {
    ew_pass(&w->ser, n, 16, 4);
    ew_pass(&w->ser, n, acc ? 32 : 28, 10);
}

gk_plan_train_step gk_plan_train_step_work(const gk_plan_model *pm, double seq, double n_seqs) {
    gk_plan_train_step w = {0};
    const gk_plan_shape *s = &pm->s;
    const double N = seq * n_seqs, d = s->n_embd, L = s->n_layer, V = s->n_vocab, hd = s->head_dim,
                 nh = s->n_head, nq = nh * hd, nkv = (double)s->n_head_kv * hd, E = s->n_expert,
                 K = s->n_expert_used, F = s->n_ff_exp, Fd = s->n_ff;
    const double P = gk_plan_params(pm);
    const double Et = E > 0 ? gk_plan_experts_touched(s, N) : 0.0;
    w.tokens = N;
    /* products: forward, dX and dW of every matrix (all logits kept) */
    for (int i = 0; i < pm->n_ops; i++) {
        double f, b;
        gk_plan_op_work(pm, &pm->ops[i], N, N, E, &f, &b);
        w.gemm_flops += 3.0 * f;
    }
    /* attention: per layer n_seqs x n_head x seq (seq + 1) / 2 (query, key) pairs; the
     * softcap's tanhf and the softmax's expf on each, in the forward and again in the
     * backward's recomputed scores */
    double pairs = L * n_seqs * nh * seq * (seq + 1.0) / 2.0;
    w.attn_fwd_flops = 4.0 * hd * pairs;
    w.attn_bwd_flops = 10.0 * hd * pairs;
    w.attn_fwd_dot_flops = 2.0 * hd * pairs;  /* q.k */
    w.attn_bwd_dot_flops = 4.0 * hd * pairs;  /* q.k, dO.v */
    w.attn_fwd_bytes = 12.0 * hd * pairs;     /* out += p v */
    w.attn_bwd_bytes = 3 * 12.0 * hd * pairs; /* dq, dk, dv */
    w.attn_bwd_items = n_seqs * s->n_head_kv;
    w.par.exp += 2.0 * pairs;
    if (s->attn_softcap > 0) w.par.tanh += 2.0 * pairs;
    /* per layer */
    for (int l = 0; l < (int)s->n_layer; l++) {
        ew_norm(&w, N * d, false); /* attn_norm (its backward accumulates: below) */
        ew_norm(&w, N * d, false); /* attn_out_norm */
        ew_norm(&w, N * d, true);  /* ffn_norm */
        ew_norm(&w, N * d, false); /* post_ffn_norm */
        w.ser.bytes += N * d * 4;  /* attn_norm's backward accumulates */
        /* RoPE of q and k, forward and backward */
        ew_pass(&w.ser, 2.0 * N * (nq + nkv), 12, 3);
        /* residual adds x + norm(..) twice */
        ew_pass(&w.ser, 2.0 * N * d, 12, 1);
        /* zeroed dq, dk, dv */
        ew_pass(&w.ser, N * (nq + 2.0 * nkv), 4, 0);
        if (E > 0) {
            /* routing: softcap, softmax, top-k, balance statistics; its backward */
            if (s->router_softcap > 0) w.ser.tanh += N * E;
            w.ser.exp += N * E;
            ew_pass(&w.ser, N * E, 16, 6 + 2 * K);
            ew_pass(&w.ser, N * E, 16, 8);
            /* MoE output zeroed; per expert row: gather of xn2, gated scatter-add
             * (forward); dY = g dOut with the gate's dot, the gather again, the
             * scatter-add of dX (backward) */
            ew_pass(&w.ser, N * d, 4, 0);
            ew_pass(&w.ser, N * K * d, 8, 0);
            ew_pass(&w.ser, N * K * d, 12, 2);
            ew_pass(&w.ser, N * K * d, 12, 3);
            ew_pass(&w.ser, N * K * d, 8, 0);
            ew_pass(&w.ser, N * K * d, 12, 1);
            ew_geglu(&w, s, N * K * F);
        }
        if (Fd > 0) {
            ew_geglu(&w, s, N * Fd);
            ew_pass(&w.ser, N * d, 12, 2); /* (dense + MoE) / sqrt 2 */
            ew_pass(&w.ser, N * d, 8, 1);  /* its backward */
        } else {
            ew_pass(&w.ser, N * d, 4, 0); /* dxn zeroed */
        }
        /* dY transposed before each dW product */
        w.transpose_bytes += 8.0 * N * (d + nq + 2.0 * nkv);
        if (E > 0) w.transpose_bytes += 8.0 * N * (K * (d + 2.0 * F) + E);
        if (Fd > 0) w.transpose_bytes += 8.0 * N * (d + 2.0 * Fd);
        /* pool steps: forward q k v o, attention, router, per touched expert gate, up,
         * GeGLU, down, dense likewise; backward per matrix dW (transpose + GEMM) and dX,
         * the attention, and per MLP the recomputed GeGLU and its backward */
        w.pool_runs += 4 + 1 + 4 * 3 + 1;
        if (E > 0) w.pool_runs += 1 + 3 + Et * (4 + 11);
        if (Fd > 0) w.pool_runs += 4 + 11;
        /* steps after serial passes over every token: forward q (after the norm), the
         * attention (RoPE), the router (norms); backward the router's dW (routing),
         * Wo's dW (norms), the attention (dq dk dv zeroed), Wq's dW (RoPE); the dense
         * MLP's gate-up product (the MoE scatter) and GeGLU, and the recomputed GeGLU
         * of the backward (the norm). After an expert's gather of its rows: its
         * gate-up product and GeGLU (forward), its recomputed GeGLU (backward). */
        w.wakes_wide += 3 + 4;
        if (Fd > 0) w.wakes_wide += 3;
        if (E > 0) w.wakes_expert += 3 * Et;
    }
    /* embedding lookup and its gradient scatter; final norm */
    ew_pass(&w.ser, N * d, 8, 1);
    ew_pass(&w.ser, N * d, 12, 2);
    ew_norm(&w, N * d, false);
    /* loss over the vocabulary: softcap and log-sum-exp; its gradient */
    if (s->final_softcap > 0) w.par.tanh += N * V;
    w.par.exp += 2.0 * N * V;
    ew_pass(&w.par, N * V, 12, 4);
    ew_pass(&w.par, N * V, 8, 6);
    w.transpose_bytes += 8.0 * N * V;
    /* output product, loss, its gradient, dX, dW (2) */
    w.pool_runs += 1 + 1 + 1 + 1 + 2;
    w.wakes_wide += 1; /* the output product (the final norm) */
    /* a norm's forward and backward (ew_norm) as the serial work before a wide step;
     * the previous expert's scatter (12 bytes and 2 FLOPs per value of its rows) and
     * the gather of the next one's (8 bytes) */
    ew_pass(&w.wide_ser, N * d, 44, 14);
    if (E > 0) ew_pass(&w.expert_ser, N * K / E * d, 20, 2);
    /* per step: gradients zeroed and their norm (calling thread), AdamW (pool: w g m v
     * read, w m v written); the forward products read the weights as they are
     * (gk_matmul), so no transposed copy is made */
    ew_pass(&w.opt_ser, P, 4, 0);
    ew_pass(&w.opt_ser, P, 4, 2);
    ew_pass(&w.opt_par, P, 28, 15);
    w.pool_runs += 1;
    w.wakes_wide += 1; /* AdamW, after the gradient norm */
    return w;
}

double gk_plan_train_act_bytes_per_token(const gk_plan_shape *s, double seq, bool fused) {
    double h = s->n_embd, a = s->n_head;
    return s->n_layer * h * (34.0 + (fused ? 0.0 : 5.0 * a * seq / h));
}

/* ------------------------------------------------------------ splits --- */

gk_plan_comm gk_plan_comm_per_token(const gk_plan_model *pm, const gk_plan_split *sp, double wire) {
    gk_plan_comm c = {0};
    const gk_plan_shape *s = &pm->s;
    double d = s->n_embd, L = s->n_layer;
    if (sp->tp > 1) {
        double n = sp->tp;
        c.tp_bytes = 2.0 * L * 2.0 * (n - 1.0) / n * d * wire;
        c.tp_msgs = 2.0 * L * 2.0 * (n - 1.0);
    }
    if (sp->ep > 1 && s->n_expert) {
        double n = sp->ep, moe_layers = L - s->n_layer_dense;
        c.ep_bytes = 2.0 * moe_layers * s->n_expert_used * (n - 1.0) / n * d * wire;
        c.ep_msgs = 2.0 * moe_layers;
    }
    if (sp->pp > 1) {
        c.pp_bytes = d * wire; /* each stage but the last sends d values on */
        c.pp_msgs = sp->pp - 1.0;
    }
    return c;
}

double gk_plan_dp_bytes_per_step(const gk_plan_model *pm, int dp, double grad_bytes) {
    if (dp <= 1) return 0.0;
    return 2.0 * (dp - 1.0) / dp * gk_plan_params(pm) * grad_bytes;
}

double gk_plan_weight_bytes_per_device(const gk_plan_model *pm, const gk_plan_split *sp) {
    double tp = sp->tp > 0 ? sp->tp : 1, pp = sp->pp > 0 ? sp->pp : 1, ep = sp->ep > 0 ? sp->ep : 1;
    double layer = 0, router = 0, edge_max = 0, edge_sum = 0;
    for (int i = 0; i < pm->n_ops; i++) {
        const gk_plan_op *o = &pm->ops[i];
        double b = op_bytes(o) * op_stored(pm, o);
        if (!strcmp(o->name, "ffn_gate_inp"))
            router += b; /* replicated on every rank */
        else if (o->kind == GK_PLAN_OP_EXPERT)
            layer += b / ep;
        else if (o->kind == GK_PLAN_OP_LAYER)
            layer += b;
        else {
            edge_sum += b;
            edge_max = edge_max > b ? edge_max : b;
        }
    }
    /* embedding on the first stage, output on the last */
    double edge = pp > 1 ? edge_max : edge_sum;
    /* norms replicated; tied output counted with the embedding */
    return (layer / tp + router) / pp + edge / tp + pm->small_params * 4.0;
}

/* ------------------------------------------------------ rank memory --- */

/* Bytes of rank 0's slice of a matrix stack cut as gk_tp_cut cuts it: rows (q, k, v,
 * gate, up, the vocabulary) or columns (attn_output, the downs) over tp ranks; each
 * cut stack takes 64 bytes more (gk_tp_cut's store). -1 when the columns miss block boundaries. */
static double cut_bytes(const gk_plan_op *o, double copies, int tp) {
    bool cols = !strcmp(o->name, "attn_output") || !strncmp(o->name, "ffn_down", 8);
    double b;
    if (cols) {
        int64_t c = o->cols / tp;
        size_t nb = gk_row_size(o->type, c);
        if (o->cols % tp || !nb) return -1;
        b = (double)nb * (double)o->rows * copies;
    } else {
        uint64_t lo, n;
        gk_tp_range((uint64_t)o->rows, 0, tp, &lo, &n);
        b = (double)gk_row_size(o->type, o->cols) * (double)n * copies;
    }
    return b + 64.0;
}

int gk_plan_rank_memory(const gk_plan_model *pm, int tp, double n_ctx, double n_batch,
                        int n_threads, double kv_elt_bytes, double base_bytes,
                        gk_plan_rank_mem *out, gk_err *err) {
    const gk_plan_shape *s = &pm->s;
    memset(out, 0, sizeof *out);
    if (tp < 1 || !s->n_head_kv || s->n_head_kv % (uint32_t)tp ||
        (s->n_ff_exp && s->n_ff_exp % (uint32_t)tp) || (s->n_ff && s->n_ff % (uint32_t)tp))
        return gk_fail(err,
                       "%d ranks do not split %s: the count must divide the %u KV heads and "
                       "the hidden widths",
                       tp, s->name, s->n_head_kv);
    if (!(n_ctx >= 1) || !(n_batch >= 1) || n_threads < 1 || !(kv_elt_bytes > 0))
        return gk_fail(err, "rank memory: context, batch, threads and KV bytes must be positive");
    /* norms: mapped, and copied to f32 at load (model.c norm_store) */
    double wb = 0, repl = 2.0 * pm->small_params * 4.0;
    for (int i = 0; i < pm->n_ops; i++) {
        const gk_plan_op *o = &pm->ops[i];
        double copies = o->kind == GK_PLAN_OP_EXPERT ? (double)s->n_expert : 1.0;
        if (o->kind == GK_PLAN_OP_OUTPUT && s->tied_output) continue; /* = token_embd */
        if (tp == 1) {
            /* the whole file, mapped: a page is resident once read; of an embedding
             * that is not also the output only the looked-up rows (a 4 KiB page each
             * at most), at most n_ctx of them */
            double b = op_bytes(o) * op_stored(pm, o);
            if (o->kind == GK_PLAN_OP_EMBD && !s->tied_output) {
                double row = (double)gk_row_size(o->type, o->cols);
                double touched = n_ctx * (row > 4096 ? row : 4096);
                if (touched < b) b = touched;
            }
            wb += b;
            continue;
        }
        if (!strcmp(o->name, "ffn_gate_inp")) { /* the router: replicated, mapped */
            repl += op_bytes(o) * o->n_layers;
            continue;
        }
        double b = cut_bytes(o, copies, tp);
        if (b < 0)
            return gk_fail(err,
                           "%d ranks do not split %s: the %lld columns of %s (%s) do not fall "
                           "on block boundaries",
                           tp, s->name, (long long)o->cols, o->name, gk_type_name(o->type));
        wb += b * o->n_layers;
    }
    out->weights = wb;
    out->replicated = repl + pm->meta_bytes;
    double nkv = (double)s->n_head_kv / tp * s->head_dim;
    out->kv = 2.0 * s->n_layer * n_ctx * nkv * kv_elt_bytes;
    double B = n_batch < n_ctx ? n_batch : n_ctx, hd = s->head_dim;
    uint64_t vlo, vn;
    gk_tp_range(s->n_vocab, 0, tp, &vlo, &vn);
    gk_ctx_dims x = {.B = (size_t)B,
                     .d = s->n_embd,
                     .nq = (size_t)s->n_head / (size_t)tp * s->head_dim,
                     .nkv = (size_t)nkv,
                     .F = s->n_ff_exp / (size_t)tp,
                     .Fd = s->variant == GK_VARIANT_GROK2 ? s->n_ff / (size_t)tp : 0,
                     .E = s->n_expert,
                     .half = s->head_dim / 2,
                     .nt = (size_t)n_threads,
                     .n_ctx = (size_t)n_ctx,
                     .head_dim = s->head_dim,
                     .n_head = s->n_head / (size_t)tp,
                     .n_logit_rows = 1,
                     .V = s->n_vocab,
                     .n_seq = 1,
                     /* the query converted for an f16 or q8_0 cache's dot */
                     .qconv_head = kv_elt_bytes >= 4   ? 0
                                   : kv_elt_bytes >= 2 ? gk_row_size(GK_TYPE_F16, (int64_t)hd)
                                                       : gk_row_size(GK_TYPE_Q8_0, (int64_t)hd)};
    uint32_t sum_g = pm->sum_g > 1 ? pm->sum_g : 1;
    size_t sum_k = sum_g % (uint32_t)tp == 0 ? sum_g / (uint32_t)tp : 1;
    out->context = (double)gk_context_arena_bytes(&x, NULL) +
                   (double)gk_context_tp_bytes(&x, tp, 0, vn, s->n_vocab, NULL) +
                   (double)gk_context_chunk_bytes(&x, sum_k, NULL, NULL, NULL);
    out->base = base_bytes;
    out->total = out->weights + out->replicated + out->kv + out->context + out->base;
    return 0;
}
