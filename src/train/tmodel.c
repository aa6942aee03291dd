/*
 * tmodel.c - the trainable model: every parameter in one fp32 allocation with
 * a table of named tensors (GGUF names, ggml shapes) and struct views into it;
 * the gradients mirror it. Loading goes through gk_model_load (so shapes are
 * checked once, in one place) and converts whatever type is stored to fp32;
 * saving writes the GGUF layout of spec section 8 that gk_model_load reads.
 */
#include "train/train.h"
#include "tokenizer/tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

gk_numerics_cfg gk_tmodel_numerics_cfg(const gk_hparams *hp, gk_numerics numerics) {
    /* Mirrors set_numerics() in model.c for files this project writes (no RoPE
     * scaling keys): reference Grok-2 has the router softcap, the temperature and
     * erf GELU; llamacpp renormalises the top-k. One departure: llamacpp training
     * keeps the smooth tanh GELU, where inference reads llama.cpp's fp16 table of it
     * (a step function has no useful derivative). */
    gk_numerics_cfg c;
    memset(&c, 0, sizeof c);
    c.rope =
        (gk_rope_cfg){.n_rot = (int)hp->n_rot, .freq_base = hp->rope_freq_base, .freq_scale = 1.0f};
    if (numerics == GK_NUMERICS_REFERENCE) {
        bool g2 = hp->variant == GK_VARIANT_GROK2;
        c.router_softcap = g2 ? hp->router_softcap : 0.0f;
        c.attn_temp_len = g2 ? hp->attn_temp_len : 0;
        c.gelu = g2 ? GK_GELU_ERF : GK_GELU_TANH;
    } else {
        c.renorm_topk = true;
    }
    return c;
}

static void add_tensor(gk_tmodel *tm, const char *name, uint32_t n_dims, int64_t ne0, int64_t ne1,
                       int64_t ne2) {
    gk_ttensor *t = &tm->tensors[tm->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = n_dims;
    t->ne[0] = ne0, t->ne[1] = n_dims > 1 ? ne1 : 1, t->ne[2] = n_dims > 2 ? ne2 : 1;
    t->n = (size_t)(t->ne[0] * t->ne[1] * t->ne[2]);
    t->offset = tm->n_params;
    t->decay = n_dims >= 2;
    tm->n_params += (t->n + 15) / 16 * 16; /* 64-byte aligned views */
}

/* Points the views of base (params or grads) at the tensors. */
static void bind_view(gk_tmodel *tm, gk_tview *v, float *base, gk_tlayer *layers) {
    const gk_hparams *hp = &tm->hp;
    int i = 0;
#define NEXT() (base + tm->tensors[i++].offset)
    v->tok_embd = NEXT();
    v->output_norm = NEXT();
    v->output = hp->tied_output ? v->tok_embd : NEXT();
    v->layers = layers;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        gk_tlayer *L = &layers[l];
        L->attn_norm = NEXT(), L->wq = NEXT(), L->wk = NEXT(), L->wv = NEXT(), L->wo = NEXT();
        L->attn_out_norm = NEXT(), L->ffn_norm = NEXT(), L->router = NEXT();
        L->gate_exps = NEXT(), L->up_exps = NEXT(), L->down_exps = NEXT();
        L->post_ffn_norm = NEXT();
        if (hp->variant == GK_VARIANT_GROK2)
            L->ffn_gate = NEXT(), L->ffn_up = NEXT(), L->ffn_down = NEXT();
        else
            L->ffn_gate = L->ffn_up = L->ffn_down = NULL;
    }
#undef NEXT
}

gk_tmodel *gk_tmodel_new(const gk_hparams *hp_in, gk_numerics numerics, gk_err *err) {
    const gk_hparams *hp = hp_in;
    if (hp->n_layer == 0 || hp->n_layer > 1024 || hp->n_embd == 0 || hp->n_head == 0 ||
        hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv || hp->head_dim == 0 || hp->n_rot == 0 ||
        hp->n_rot > hp->head_dim || hp->n_rot % 2 || hp->n_expert == 0 || hp->n_expert_used == 0 ||
        hp->n_expert_used > hp->n_expert || hp->n_expert_used > 64 || hp->n_ff_exp == 0 ||
        hp->n_vocab == 0 || (hp->variant == GK_VARIANT_GROK2 && hp->n_ff == 0) ||
        (hp->variant != GK_VARIANT_GROK1 && hp->variant != GK_VARIANT_GROK2))
        return gk_failp(err, "model configuration is inconsistent (check layers, dims, heads, "
                             "kv heads dividing heads, experts, expert_used <= experts)");
    uint64_t big = (uint64_t)hp->n_embd * hp->n_vocab +
                   (uint64_t)hp->n_layer * ((uint64_t)hp->n_expert * 3 * hp->n_ff_exp * hp->n_embd);
    if (big > (1ull << 34))
        return gk_failp(err, "model of about %llu parameters is too large to train here",
                        (unsigned long long)big);
    gk_dtype_init(); /* the SIMD kernels, as gk_model_load picks them */
    gk_tmodel *tm = gk_calloc(1, sizeof *tm, err);
    if (!tm) return NULL;
    tm->hp = *hp;
    tm->numerics = numerics;
    tm->cfg = gk_tmodel_numerics_cfg(hp, numerics);
    int max_t = 3 + 15 * (int)hp->n_layer;
    tm->tensors = gk_calloc((size_t)max_t, sizeof(gk_ttensor), err);
    tm->layer_store = gk_calloc(2 * (size_t)hp->n_layer, sizeof(gk_tlayer), err);
    if (!tm->tensors || !tm->layer_store) goto fail;
    const int64_t d = hp->n_embd, nq = (int64_t)hp->n_head * hp->head_dim,
                  nkv = (int64_t)hp->n_head_kv * hp->head_dim, E = hp->n_expert, F = hp->n_ff_exp,
                  Fd = hp->n_ff, V = hp->n_vocab;
    add_tensor(tm, "token_embd.weight", 2, d, V, 0);
    add_tensor(tm, "output_norm.weight", 1, d, 0, 0);
    if (!hp->tied_output) add_tensor(tm, "output.weight", 2, d, V, 0);
    char name[64];
    for (uint32_t l = 0; l < hp->n_layer; l++) {
#define T(nm, ...) (snprintf(name, sizeof name, "blk.%u." nm, l), add_tensor(tm, name, __VA_ARGS__))
        T("attn_norm.weight", 1, d, 0, 0);
        T("attn_q.weight", 2, d, nq, 0);
        T("attn_k.weight", 2, d, nkv, 0);
        T("attn_v.weight", 2, d, nkv, 0);
        T("attn_output.weight", 2, nq, d, 0);
        T("attn_output_norm.weight", 1, d, 0, 0);
        T("ffn_norm.weight", 1, d, 0, 0);
        T("ffn_gate_inp.weight", 2, d, E, 0);
        T("ffn_gate_exps.weight", 3, d, F, E);
        T("ffn_up_exps.weight", 3, d, F, E);
        T("ffn_down_exps.weight", 3, F, d, E);
        if (hp->variant == GK_VARIANT_GROK2) {
            T("post_ffw_norm.weight", 1, d, 0, 0);
            T("ffn_gate.weight", 2, d, Fd, 0);
            T("ffn_up.weight", 2, d, Fd, 0);
            T("ffn_down.weight", 2, Fd, d, 0);
        } else {
            T("layer_output_norm.weight", 1, d, 0, 0);
        }
#undef T
    }
    tm->w = gk_malloc_aligned(tm->n_params * sizeof(float), err);
    tm->g = gk_malloc_aligned(tm->n_params * sizeof(float), err);
    if (!tm->w || !tm->g) {
        gk_err_prefix(err, "parameters of %zu floats", tm->n_params);
        goto fail;
    }
    memset(tm->w, 0, tm->n_params * sizeof(float));
    memset(tm->g, 0, tm->n_params * sizeof(float));
    bind_view(tm, &tm->W, tm->w, tm->layer_store);
    bind_view(tm, &tm->G, tm->g, tm->layer_store + hp->n_layer);
    return tm;
fail:
    gk_tmodel_free(tm);
    return NULL;
}

void gk_tmodel_free(gk_tmodel *tm) {
    if (!tm) return;
    free(tm->tensors);
    free(tm->layer_store);
    gk_free_aligned(tm->w);
    gk_free_aligned(tm->g);
    free(tm);
}

gk_tmodel *gk_tmodel_from_model(const gk_model *m, gk_err *err) {
    gk_tmodel *tm = gk_tmodel_new(&m->hp, m->numerics, err);
    if (!tm) return NULL;
    tm->cfg = m->cfg; /* what inference runs, RoPE scaling included, */
    if (tm->cfg.gelu == GK_GELU_TANH_F16) tm->cfg.gelu = GK_GELU_TANH; /* but a smooth GELU */
    for (int i = 0; i < tm->n_tensors; i++) {
        const gk_ttensor *t = &tm->tensors[i];
        const gk_gguf_tensor *gt = gk_gguf_find_tensor(m->gguf, t->name);
        if (!gt || gt->ne[0] != t->ne[0] || gt->ne[1] != t->ne[1] || gt->ne[2] != t->ne[2]) {
            gk_fail(err, "tensor '%s' is missing or has an unexpected shape", t->name);
            gk_tmodel_free(tm);
            return NULL;
        }
        const gk_type_traits *tt = gk_type_traits_of(gt->type);
        size_t row = gk_row_size(gt->type, gt->ne[0]);
        int64_t rows = t->ne[1] * t->ne[2];
        for (int64_t r = 0; r < rows; r++)
            tt->to_float((const uint8_t *)gt->data + (size_t)r * row,
                         tm->w + t->offset + r * t->ne[0], t->ne[0]);
    }
    return tm;
}

/* splitmix64 and Box-Muller: a tiny deterministic generator. */
static uint64_t mix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double unif(uint64_t *s) {
    return ((mix64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

void gk_tmodel_init(gk_tmodel *tm, uint64_t seed, float std) {
    uint64_t s = seed * 0x2545F4914F6CDD1Dull + 1;
    float out_std = std / sqrtf(2.0f * (float)tm->hp.n_layer);
    for (int i = 0; i < tm->n_tensors; i++) {
        const gk_ttensor *t = &tm->tensors[i];
        float *p = tm->w + t->offset;
        if (t->n_dims == 1) {
            for (size_t k = 0; k < t->n; k++) p[k] = 1.0f;
            continue;
        }
        /* Projections back into the residual stream start smaller (GPT-2). */
        bool out_proj = strstr(t->name, "attn_output.weight") || strstr(t->name, "down");
        float sd = out_proj ? out_std : std;
        for (size_t k = 0; k < t->n; k += 2) {
            double u1 = unif(&s), u2 = unif(&s), r = sqrt(-2.0 * log(u1));
            p[k] = (float)(r * cos(2 * M_PI * u2)) * sd;
            if (k + 1 < t->n) p[k + 1] = (float)(r * sin(2 * M_PI * u2)) * sd;
        }
    }
}

/* ------------------------------------------------------------------ save --- */

typedef struct {
    const float *src;
    int64_t rows, n0;
    gk_dtype type;
} conv_job;

/* Converts a tensor row by row while the writer streams it to the file. */
static int produce_conv(void *ud, gk_gguf_sink *sink, gk_err *err) {
    conv_job *j = ud;
    size_t row = gk_row_size(j->type, j->n0);
    uint8_t buf[1 << 15];
    uint8_t *big = row > sizeof buf ? gk_malloc(row, err) : buf;
    if (!big) return -1;
    const gk_type_traits *tt = gk_type_traits_of(j->type);
    int rc = 0;
    for (int64_t r = 0; r < j->rows && rc == 0; r++) {
        tt->from_float(j->src + r * j->n0, big, j->n0);
        rc = gk_gguf_sink_write(sink, big, row, err);
    }
    if (big != buf) free(big);
    return rc;
}

static void set_hparams(gk_gguf_writer *w, const gk_hparams *hp) {
    gk_gguf_set_str(w, "general.architecture", "grok");
    gk_gguf_set_u32(w, "grok.context_length", hp->n_ctx_train);
    gk_gguf_set_u32(w, "grok.embedding_length", hp->n_embd);
    gk_gguf_set_u32(w, "grok.block_count", hp->n_layer);
    gk_gguf_set_u32(w, "grok.feed_forward_length",
                    hp->variant == GK_VARIANT_GROK2 ? hp->n_ff : hp->n_ff_exp);
    gk_gguf_set_u32(w, "grok.expert_feed_forward_length", hp->n_ff_exp);
    gk_gguf_set_u32(w, "grok.attention.head_count", hp->n_head);
    gk_gguf_set_u32(w, "grok.attention.head_count_kv", hp->n_head_kv);
    gk_gguf_set_u32(w, "grok.attention.key_length", hp->head_dim);
    gk_gguf_set_u32(w, "grok.attention.value_length", hp->head_dim);
    gk_gguf_set_u32(w, "grok.rope.dimension_count", hp->n_rot);
    gk_gguf_set_f32(w, "grok.rope.freq_base", hp->rope_freq_base);
    gk_gguf_set_f32(w, "grok.attention.layer_norm_rms_epsilon", hp->norm_eps);
    gk_gguf_set_u32(w, "grok.expert_count", hp->n_expert);
    gk_gguf_set_u32(w, "grok.expert_used_count", hp->n_expert_used);
    gk_gguf_set_f32(w, "grok.embedding_scale", hp->embedding_scale);
    gk_gguf_set_f32(w, "grok.attention.output_scale", hp->attn_out_scale);
    gk_gguf_set_f32(w, "grok.logit_scale", hp->logit_scale);
    gk_gguf_set_f32(w, "grok.attn_logit_softcapping", hp->attn_softcap);
    gk_gguf_set_f32(w, "grok.router_logit_softcapping", hp->router_softcap);
    gk_gguf_set_f32(w, "grok.final_logit_softcapping", hp->final_softcap);
    gk_gguf_set_u32(w, "grok.attention.temperature_length", hp->attn_temp_len);
}

int gk_tmodel_save(const gk_tmodel *tm, const char *path, const gk_tsave_opts *o, gk_err *err) {
    gk_gguf_writer *w = gk_gguf_writer_new(err);
    if (!w) return -1;
    conv_job *jobs = gk_calloc((size_t)tm->n_tensors, sizeof(conv_job), err);
    int rc = -1;
    if (!jobs) goto done;
    if (o->src) {
        if (gk_gguf_copy_kv(w, o->src, err) < 0) goto done;
    } else {
        set_hparams(w, &tm->hp);
    }
    if (o->tok && gk_tokenizer_to_gguf(o->tok, w, err) < 0) goto done;
    if (o->name) gk_gguf_set_str(w, "general.name", o->name);
    gk_gguf_set_u64(w, "train.step", o->step);
    for (int i = 0; i < tm->n_tensors; i++) {
        const gk_ttensor *t = &tm->tensors[i];
        bool keep_f32 = t->n_dims == 1 || strstr(t->name, "ffn_gate_inp") ||
                        gk_row_size(o->type, t->ne[0]) == 0;
        gk_dtype type = keep_f32 ? GK_TYPE_F32 : o->type;
        int r;
        if (type == GK_TYPE_F32) {
            r = gk_gguf_add_tensor(w, t->name, type, t->n_dims, t->ne, tm->w + t->offset, err);
        } else {
            jobs[i] = (conv_job){.src = tm->w + t->offset,
                                 .rows = t->ne[1] * t->ne[2],
                                 .n0 = t->ne[0],
                                 .type = type};
            r = gk_gguf_add_tensor_fn(w, t->name, type, t->n_dims, t->ne, produce_conv, &jobs[i],
                                      err);
        }
        if (r < 0) goto done;
    }
    rc = gk_gguf_write(w, path, err);
done:
    gk_gguf_writer_free(w);
    free(jobs);
    return rc;
}
