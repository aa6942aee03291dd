/*
 * model.c - loading a Grok model from GGUF: hyper-parameters from the grok.*
 * keys (with llama.cpp's defaults for old Grok-1 files, spec section 8), the
 * numerics switches of the chosen mode (spec "Decisions" 1), and views of every
 * tensor in the map, each checked against the shape the hyper-parameters imply.
 */
#include "dist/dist.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

gk_model_params gk_model_default_params(void) {
    return (gk_model_params){.numerics = GK_NUMERICS_REFERENCE};
}

/* ----------------------------------------------------- hyper-parameters --- */

static void note(gk_model *m, const char *key, bool from_file, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void note(gk_model *m, const char *key, bool from_file, const char *fmt, ...) {
    if (m->n_info >= GK_MAX_HPARAM_INFO) return;
    gk_hparam_info *hi = &m->info[m->n_info++];
    hi->name = key;
    hi->from_file = from_file;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(hi->value, sizeof hi->value, fmt, ap);
    va_end(ap);
}

/* Reads a u32 key; required keys fail when absent, optional ones take def. */
static int get_u32(gk_model *m, const char *key, bool required, uint32_t def, uint32_t *out,
                   gk_err *err) {
    int r = gk_gguf_get_u32(m->gguf, key, out, err);
    if (r < 0) return -1;
    if (r == 0) {
        if (required) return gk_fail(err, "missing required key '%s'", key);
        *out = def;
    }
    note(m, key, r == 1, "%u", *out);
    return 0;
}

static int get_f32(gk_model *m, const char *key, bool required, float def, float *out,
                   gk_err *err) {
    int r = gk_gguf_get_f32(m->gguf, key, out, err);
    if (r < 0) return -1;
    if (r == 0) {
        if (required) return gk_fail(err, "missing required key '%s'", key);
        *out = def;
    }
    if (!isfinite(*out)) return gk_fail(err, "key '%s' is not a finite number", key);
    note(m, key, r == 1, "%.9g", *out);
    return 0;
}

/* Upper bounds that keep every size computation far from overflow while
 * allowing models much larger than Grok. */
#define MAX_DIM (1u << 20)
#define MAX_LAYERS 4096u
#define MAX_EXPERTS 1024u

static int load_hparams(gk_model *m, gk_err *err) {
    gk_hparams *hp = &m->hp;
    gk_str arch;
    int r = gk_gguf_get_str(m->gguf, "general.architecture", &arch, err);
    if (r < 0) return -1;
    if (r == 0) return gk_fail(err, "missing key 'general.architecture'");
    if (arch.len != 4 || memcmp(arch.ptr, "grok", 4) != 0)
        return gk_fail(err, "architecture '%.*s' is not supported (expected 'grok')",
                       (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);

    if (get_u32(m, "grok.context_length", true, 0, &hp->n_ctx_train, err) ||
        get_u32(m, "grok.embedding_length", true, 0, &hp->n_embd, err) ||
        get_u32(m, "grok.block_count", true, 0, &hp->n_layer, err) ||
        get_u32(m, "grok.feed_forward_length", true, 0, &hp->n_ff, err) ||
        get_u32(m, "grok.attention.head_count", true, 0, &hp->n_head, err))
        return -1;
    if (get_u32(m, "grok.attention.head_count_kv", false, hp->n_head, &hp->n_head_kv, err) ||
        get_u32(m, "grok.attention.key_length", false, hp->n_head ? hp->n_embd / hp->n_head : 0,
                &hp->head_dim, err) ||
        get_u32(m, "grok.rope.dimension_count", false, hp->head_dim, &hp->n_rot, err) ||
        get_u32(m, "grok.expert_feed_forward_length", false, hp->n_ff, &hp->n_ff_exp, err) ||
        get_u32(m, "grok.expert_count", true, 0, &hp->n_expert, err) ||
        get_u32(m, "grok.expert_used_count", true, 0, &hp->n_expert_used, err))
        return -1;
    uint32_t v_len;
    if (get_u32(m, "grok.attention.value_length", false, hp->head_dim, &v_len, err)) return -1;
    if (get_f32(m, "grok.attention.layer_norm_rms_epsilon", true, 0, &hp->norm_eps, err) ||
        get_f32(m, "grok.rope.freq_base", false, 10000.0f, &hp->rope_freq_base, err) ||
        get_f32(m, "grok.embedding_scale", false, 78.38367176906169f, &hp->embedding_scale, err) ||
        get_f32(m, "grok.attention.output_scale", false, 0.08838834764831845f, &hp->attn_out_scale,
                err) ||
        get_f32(m, "grok.logit_scale", false, 0.5773502691896257f, &hp->logit_scale, err) ||
        get_f32(m, "grok.attn_logit_softcapping", false, 30.0f, &hp->attn_softcap, err) ||
        get_f32(m, "grok.router_logit_softcapping", false, 30.0f, &hp->router_softcap, err) ||
        get_f32(m, "grok.final_logit_softcapping", false, 0.0f, &hp->final_softcap, err) ||
        get_u32(m, "grok.attention.temperature_length", false, 1024, &hp->attn_temp_len, err))
        return -1;

    /* RoPE scaling keys, honoured only in llamacpp mode (spec "Decisions" 4). */
    gk_str st = {0};
    r = gk_gguf_get_str(m->gguf, "grok.rope.scaling.type", &st, err);
    if (r < 0) return -1;
    hp->rope_scaling = GK_ROPE_SCALING_NONE;
    if (r == 1) {
        if (st.len == 4 && memcmp(st.ptr, "yarn", 4) == 0)
            hp->rope_scaling = GK_ROPE_SCALING_YARN;
        else if (st.len == 6 && memcmp(st.ptr, "linear", 6) == 0)
            hp->rope_scaling = GK_ROPE_SCALING_LINEAR;
        else if (!(st.len == 4 && memcmp(st.ptr, "none", 4) == 0))
            return gk_fail(err, "key 'grok.rope.scaling.type': unknown value '%.*s'",
                           (int)(st.len > 32 ? 32 : st.len), st.ptr);
        note(m, "grok.rope.scaling.type", true, "%.*s", (int)(st.len > 32 ? 32 : st.len), st.ptr);
    }
    if (hp->rope_scaling != GK_ROPE_SCALING_NONE) {
        if (get_f32(m, "grok.rope.scaling.factor", false, 1.0f, &hp->rope_scaling_factor, err) ||
            get_u32(m, "grok.rope.scaling.original_context_length", false, hp->n_ctx_train,
                    &hp->rope_orig_ctx, err) ||
            get_f32(m, "grok.rope.scaling.yarn_ext_factor", false, -1.0f, &hp->yarn_ext_factor,
                    err) ||
            get_f32(m, "grok.rope.scaling.yarn_attn_factor", false, 1.0f, &hp->yarn_attn_factor,
                    err) ||
            get_f32(m, "grok.rope.scaling.yarn_beta_fast", false, 8.0f, &hp->yarn_beta_fast, err) ||
            get_f32(m, "grok.rope.scaling.yarn_beta_slow", false, 1.0f, &hp->yarn_beta_slow, err))
            return -1;
        if (!(hp->rope_scaling_factor > 0.0f))
            return gk_fail(err, "key 'grok.rope.scaling.factor' must be positive");
    }

    /* Sanity of the shapes, before any size is computed from them. */
    if (hp->n_embd == 0 || hp->n_embd > MAX_DIM)
        return gk_fail(err, "grok.embedding_length %u is out of range", hp->n_embd);
    if (hp->n_layer == 0 || hp->n_layer > MAX_LAYERS)
        return gk_fail(err, "grok.block_count %u is out of range", hp->n_layer);
    if (hp->n_head == 0 || hp->n_head > MAX_DIM)
        return gk_fail(err, "grok.attention.head_count %u is out of range", hp->n_head);
    if (hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv)
        return gk_fail(err, "grok.attention.head_count_kv %u does not divide head_count %u",
                       hp->n_head_kv, hp->n_head);
    if (hp->head_dim == 0 || hp->head_dim > 4096 || (uint64_t)hp->head_dim * hp->n_head > MAX_DIM)
        return gk_fail(err, "grok.attention.key_length %u is out of range", hp->head_dim);
    if (v_len != hp->head_dim)
        return gk_fail(err, "grok.attention.value_length %u differs from key_length %u", v_len,
                       hp->head_dim);
    if (hp->n_rot == 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return gk_fail(err, "grok.rope.dimension_count %u must be even and at most %u", hp->n_rot,
                       hp->head_dim);
    if (hp->n_ff_exp == 0 || hp->n_ff_exp > MAX_DIM || hp->n_ff > MAX_DIM)
        return gk_fail(err, "feed-forward length out of range (%u, expert %u)", hp->n_ff,
                       hp->n_ff_exp);
    if (hp->n_expert == 0 || hp->n_expert > MAX_EXPERTS)
        return gk_fail(err, "grok.expert_count %u is out of range", hp->n_expert);
    if (hp->n_expert_used == 0 || hp->n_expert_used > hp->n_expert ||
        hp->n_expert_used > GK_MAX_EXPERT_USED)
        return gk_fail(err, "grok.expert_used_count %u must be in 1..%u", hp->n_expert_used,
                       hp->n_expert < GK_MAX_EXPERT_USED ? hp->n_expert : GK_MAX_EXPERT_USED);
    if (hp->n_ctx_train == 0) return gk_fail(err, "grok.context_length is 0");
    if (!(hp->norm_eps > 0.0f))
        return gk_fail(err, "grok.attention.layer_norm_rms_epsilon must be positive");
    if (!(hp->rope_freq_base > 1.0f)) return gk_fail(err, "grok.rope.freq_base must be > 1");
    if (hp->attn_softcap < 0 || hp->router_softcap < 0 || hp->final_softcap < 0)
        return gk_fail(err, "softcapping values must not be negative");
    return 0;
}

/* The switches of spec "Decisions" 1 for this variant and mode. */
static void set_numerics(gk_model *m) {
    const gk_hparams *hp = &m->hp;
    gk_numerics_cfg *c = &m->cfg;
    memset(c, 0, sizeof *c);
    c->rope =
        (gk_rope_cfg){.n_rot = (int)hp->n_rot, .freq_base = hp->rope_freq_base, .freq_scale = 1.0f};
    if (m->numerics == GK_NUMERICS_REFERENCE) {
        /* xAI's JAX code has no router softcap for Grok-1; SGLang applies it for Grok-2. */
        c->router_softcap = hp->variant == GK_VARIANT_GROK2 ? hp->router_softcap : 0.0f;
        c->attn_temp_len = hp->variant == GK_VARIANT_GROK2 ? hp->attn_temp_len : 0;
        c->gelu = hp->variant == GK_VARIANT_GROK2 ? GK_GELU_ERF : GK_GELU_TANH;
        return;
    }
    /* llama.cpp: renormalised top-k, no router softcap, no temperature, tanh GELU as
     * its CPU kernel computes it (an fp16 table), and the GGUF's RoPE scaling as ggml
     * computes it. */
    c->renorm_topk = true;
    c->gelu = GK_GELU_TANH_F16;
    gk_rope_cfg *r = &c->rope;
    if (hp->rope_scaling == GK_ROPE_SCALING_LINEAR) {
        r->freq_scale = 1.0f / hp->rope_scaling_factor;
    } else if (hp->rope_scaling == GK_ROPE_SCALING_YARN) {
        r->yarn = true;
        r->freq_scale = 1.0f / hp->rope_scaling_factor;
        /* llama.cpp: a negative ext_factor means "1 for YaRN". */
        r->ext_factor = hp->yarn_ext_factor < 0.0f ? 1.0f : hp->yarn_ext_factor;
        /* ggml multiplies cos and sin by attn_factor * (1 + 0.1 ln(1/freq_scale)) when
         * ext_factor != 0 (spec 3.3: about 1.277 for Grok-2's factor 16). */
        r->mscale = hp->yarn_attn_factor;
        if (r->ext_factor != 0.0f) r->mscale *= 1.0f + 0.1f * logf(1.0f / r->freq_scale);
        /* ggml_rope_yarn_corr_dims */
        double n_dims = hp->n_rot, base = hp->rope_freq_base, orig = hp->rope_orig_ctx;
        double lo = n_dims * log(orig / (hp->yarn_beta_fast * 2 * M_PI)) / (2 * log(base));
        double hi = n_dims * log(orig / (hp->yarn_beta_slow * 2 * M_PI)) / (2 * log(base));
        r->corr_lo = (float)fmax(0.0, floor(lo));
        r->corr_hi = (float)fmin(n_dims - 1, ceil(hi));
    }
}

/* -------------------------------------------------------------- tensors --- */

/* Binds a tensor that must exist with the given ggml shape (ne[i] = 0: any). */
static int bind(gk_model *m, gk_weight *w, const char *name, int n_dims, int64_t ne0, int64_t ne1,
                int64_t ne2, bool optional, gk_err *err) {
    const gk_gguf_tensor *t = gk_gguf_find_tensor(m->gguf, name);
    memset(w, 0, sizeof *w);
    if (!t) return optional ? 0 : gk_fail(err, "missing tensor '%s'", name);
    if (!gk_type_is_supported(t->type))
        return gk_fail(err, "tensor '%s': type %s is not supported by this engine", name,
                       gk_type_name(t->type));
    int64_t want[3] = {ne0, ne1, ne2};
    bool ok = true;
    for (int i = 0; i < GK_GGUF_MAX_DIMS; i++) ok = ok && t->ne[i] == (i < n_dims ? want[i] : 1);
    if (!ok) {
        char got[96], exp[96];
        snprintf(got, sizeof got, "{%lld, %lld, %lld}", (long long)t->ne[0], (long long)t->ne[1],
                 (long long)t->ne[2]);
        snprintf(exp, sizeof exp, "{%lld, %lld, %lld}", (long long)want[0],
                 (long long)(n_dims > 1 ? want[1] : 1), (long long)(n_dims > 2 ? want[2] : 1));
        return gk_fail(err, "tensor '%s' has shape %s, but the hyper-parameters imply %s", name,
                       got, exp);
    }
    w->name = t->name;
    w->data = t->data;
    w->type = t->type;
    w->ne[0] = t->ne[0];
    w->ne[1] = t->ne[1];
    w->ne[2] = t->ne[2];
    w->nb_row = gk_row_size(t->type, t->ne[0]);
    w->nb_mat = w->nb_row * (size_t)t->ne[1];
    return 1;
}

/* Binds a 1-D norm weight and converts it to fp32 into dst (n floats). */
static int bind_norm(gk_model *m, float *dst, const char *name, int64_t n, bool optional,
                     gk_err *err) {
    gk_weight w;
    int r = bind(m, &w, name, 1, n, 0, 0, optional, err);
    if (r <= 0) return r;
    gk_type_traits_of(w.type)->to_float(w.data, dst, n);
    return 1;
}

/*
 * Binds the expert stack blk.l.<base>_exps.weight {ne0, ne1, n_expert}, or, in
 * older Grok-1 GGUFs, the n_expert 2-D tensors blk.l.<base>.E.weight {ne0, ne1}.
 * Those become one stack view when they lie in the same file one matrix apart
 * in expert order (the forward steps nb_mat bytes from expert to expert);
 * otherwise they are copied once into one allocation that the model owns.
 */
static int bind_experts(gk_model *m, gk_weight *w, uint32_t l, const char *base, int64_t ne0,
                        int64_t ne1, uint64_t *n_bound, gk_err *err) {
    const uint32_t E = m->hp.n_expert;
    char name[96], name0[96];
    snprintf(name, sizeof name, "blk.%u.%s_exps.weight", l, base);
    snprintf(name0, sizeof name0, "blk.%u.%s.0.weight", l, base);
    if (gk_gguf_find_tensor(m->gguf, name) || !gk_gguf_find_tensor(m->gguf, name0)) {
        *n_bound += 1;
        return bind(m, w, name, 3, ne0, ne1, E, false, err);
    }
    const gk_gguf_tensor *first = NULL;
    bool in_place = true;
    for (uint32_t e = 0; e < E; e++) {
        gk_weight we;
        snprintf(name, sizeof name, "blk.%u.%s.%u.weight", l, base, e);
        if (bind(m, &we, name, 2, ne0, ne1, 0, false, err) < 0) return -1;
        const gk_gguf_tensor *t = gk_gguf_find_tensor(m->gguf, name);
        if (e == 0) {
            first = t;
            *w = we;
            w->ne[2] = E;
        } else if (t->type != first->type) {
            return gk_fail(err, "tensor '%s' has type %s, but expert 0 of blk.%u.%s has %s", name,
                           gk_type_name(t->type), l, base, gk_type_name(first->type));
        }
        in_place = in_place && t->shard == first->shard &&
                   (const uint8_t *)t->data == w->data + (size_t)e * w->nb_mat;
    }
    *n_bound += E;
    w->name = NULL;
    if (in_place) {
        m->n_expert_views++;
    } else {
        size_t bytes = w->nb_mat * E; /* bounded: every matrix is inside the file */
        uint8_t *copy = gk_malloc_aligned(bytes, err);
        if (!copy) return -1;
        for (uint32_t e = 0; e < E; e++) {
            snprintf(name, sizeof name, "blk.%u.%s.%u.weight", l, base, e);
            memcpy(copy + (size_t)e * w->nb_mat, gk_gguf_find_tensor(m->gguf, name)->data,
                   w->nb_mat);
        }
        void **owned = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *owned);
        if (!owned) {
            gk_free_aligned(copy);
            return gk_fail(err, "out of memory copying the experts of blk.%u.%s", l, base);
        }
        m->owned = owned;
        m->owned[m->n_owned++] = copy;
        w->data = copy;
        m->n_expert_copies++;
        m->expert_copy_bytes += bytes;
    }
    /* A stable name for messages: the stacked tensor this stands for. */
    snprintf(name, sizeof name, "blk.%u.%s_exps.weight", l, base);
    char *nm = malloc(strlen(name) + 1);
    if (!nm) return gk_fail(err, "out of memory");
    strcpy(nm, name);
    void **owned = realloc(m->owned_names, (size_t)(m->n_owned_names + 1) * sizeof *owned);
    if (!owned) {
        free(nm);
        return gk_fail(err, "out of memory");
    }
    m->owned_names = owned;
    m->owned_names[m->n_owned_names++] = nm;
    w->name = nm;
    return 1;
}

static int load_tensors(gk_model *m, gk_err *err) {
    gk_hparams *hp = &m->hp;
    const gk_gguf_tensor *te = gk_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!te) return gk_fail(err, "missing tensor 'token_embd.weight'");
    if (te->ne[1] < 1 || te->ne[1] > INT32_MAX)
        return gk_fail(err, "tensor 'token_embd.weight': vocabulary size %lld is out of range",
                       (long long)te->ne[1]);
    if (gk_tp_vocab(m, te->ne[1], err) < 0) return -1;
    /* A per-rank file (grok shard) holds this rank's slices: its shapes are the
     * rank's counts; a whole file's are the hyper-parameters' (gk_tp_cut narrows). */
    const gk_tp *tp = &m->tp;
    const bool sh = tp->shard_file;
    const int64_t d = hp->n_embd, E = hp->n_expert,
                  nq = (int64_t)(sh ? tp->n_head : hp->n_head) * hp->head_dim,
                  nkv = (int64_t)(sh ? tp->n_head_kv : hp->n_head_kv) * hp->head_dim,
                  n_ff_exp = sh ? tp->n_ff_exp : hp->n_ff_exp, n_ff = sh ? tp->n_ff : hp->n_ff,
                  n_vocab = sh ? tp->v_n : hp->n_vocab;
    if (bind(m, &m->tok_embd, "token_embd.weight", 2, d, n_vocab, 0, false, err) < 0) return -1;
    int r = bind(m, &m->output, "output.weight", 2, d, n_vocab, 0, true, err);
    if (r < 0) return -1;
    hp->tied_output = r == 0;
    if (hp->tied_output) m->output = m->tok_embd;

    /* Grok-2 has a dense MLP beside the MoE; its presence in block 0 decides. */
    hp->variant =
        gk_gguf_find_tensor(m->gguf, "blk.0.ffn_gate.weight") ? GK_VARIANT_GROK2 : GK_VARIANT_GROK1;
    if (hp->variant == GK_VARIANT_GROK2 && hp->n_ff == 0)
        return gk_fail(err, "grok.feed_forward_length is 0 but the model has a dense MLP");

    size_t n_norms = (size_t)(4 * hp->n_layer + 1) * (size_t)d;
    m->norm_store = gk_malloc(n_norms * sizeof(float), err);
    m->layers = gk_calloc(hp->n_layer, sizeof(gk_layer), err);
    if (!m->norm_store || !m->layers) return -1;
    float *ns = m->norm_store;
    m->output_norm = ns;
    ns += d;
    if (bind_norm(m, m->output_norm, "output_norm.weight", d, false, err) < 0) return -1;

    uint64_t n_bound = m->hp.tied_output ? 2 : 3;
    char name[96];
#define NAME(fmt) (snprintf(name, sizeof name, "blk.%u." fmt, l), name)
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        gk_layer *L = &m->layers[l];
        L->attn_norm = ns, ns += d;
        L->attn_out_norm = ns, ns += d;
        L->ffn_norm = ns, ns += d;
        L->post_ffn_norm = ns, ns += d;
        if (bind_norm(m, L->attn_norm, NAME("attn_norm.weight"), d, false, err) < 0 ||
            bind_norm(m, L->attn_out_norm, NAME("attn_output_norm.weight"), d, false, err) < 0 ||
            bind_norm(m, L->ffn_norm, NAME("ffn_norm.weight"), d, false, err) < 0)
            return -1;
        /* The post-MoE norm is layer_output_norm in Grok-1 files, post_ffw_norm in Grok-2's. */
        int r1 = bind_norm(m, L->post_ffn_norm, NAME("layer_output_norm.weight"), d, true, err);
        if (r1 < 0) return -1;
        int r2 = bind_norm(m, L->post_ffn_norm, NAME("post_ffw_norm.weight"), d, true, err);
        if (r2 < 0) return -1;
        if (r1 + r2 != 1)
            return gk_fail(err,
                           "block %u needs exactly one of 'layer_output_norm.weight' and "
                           "'post_ffw_norm.weight' (found %d)",
                           l, r1 + r2);
        n_bound += 4;
        if (bind(m, &L->wq, NAME("attn_q.weight"), 2, d, nq, 0, false, err) < 0 ||
            bind(m, &L->wk, NAME("attn_k.weight"), 2, d, nkv, 0, false, err) < 0 ||
            bind(m, &L->wv, NAME("attn_v.weight"), 2, d, nkv, 0, false, err) < 0 ||
            bind(m, &L->wo, NAME("attn_output.weight"), 2, nq, d, 0, false, err) < 0 ||
            bind(m, &L->router, NAME("ffn_gate_inp.weight"), 2, d, E, 0, false, err) < 0 ||
            bind_experts(m, &L->gate_exps, l, "ffn_gate", d, n_ff_exp, &n_bound, err) < 0 ||
            bind_experts(m, &L->up_exps, l, "ffn_up", d, n_ff_exp, &n_bound, err) < 0 ||
            bind_experts(m, &L->down_exps, l, "ffn_down", n_ff_exp, d, &n_bound, err) < 0)
            return -1;
        n_bound += 5;
        bool optional = hp->variant != GK_VARIANT_GROK2;
        int g = bind(m, &L->ffn_gate, NAME("ffn_gate.weight"), 2, d, n_ff, 0, optional, err);
        int u =
            g < 0 ? -1 : bind(m, &L->ffn_up, NAME("ffn_up.weight"), 2, d, n_ff, 0, optional, err);
        int w = u < 0
                    ? -1
                    : bind(m, &L->ffn_down, NAME("ffn_down.weight"), 2, n_ff, d, 0, optional, err);
        if (g < 0 || u < 0 || w < 0) return -1;
        if (g + u + w != 0 && hp->variant == GK_VARIANT_GROK1)
            return gk_fail(err, "block %u has a dense MLP tensor but block 0 has none", l);
        n_bound += (uint64_t)(g + u + w);
    }
#undef NAME
    /* Every tensor in the file must have been used: a stray one means the file is
     * not what its keys say (e.g. more blocks than grok.block_count). */
    if ((uint64_t)gk_gguf_n_tensors(m->gguf) != n_bound) {
        for (int64_t i = 0; i < gk_gguf_n_tensors(m->gguf); i++) {
            const char *tn = gk_gguf_tensor_at(m->gguf, i)->name;
            unsigned blk;
            int pos = 0;
            if (sscanf(tn, "blk.%u.%n", &blk, &pos) == 1 && pos > 0 && blk >= hp->n_layer)
                return gk_fail(err,
                               "unexpected tensor '%s': the file has more blocks than "
                               "grok.block_count = %u",
                               tn, hp->n_layer);
        }
        return gk_fail(err,
                       "the file has %lld tensors, but a grok model with these "
                       "hyper-parameters has %llu (unexpected extra tensors)",
                       (long long)gk_gguf_n_tensors(m->gguf), (unsigned long long)n_bound);
    }
    for (int64_t i = 0; i < gk_gguf_n_tensors(m->gguf); i++) {
        const gk_gguf_tensor *t = gk_gguf_tensor_at(m->gguf, i);
        m->n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
    }
    return 0;
}

/* One matrix packed by the pool's threads, each its run of strips: the source's
 * pages mapped (a file's, in one call rather than a fault at a time: 3x faster
 * here), then packed into dst, strip s at s * dst_step, or with scratch into it
 * and copied back over src (packing in place: a thread reads and writes only its
 * own strips). */
typedef struct {
    gk_dtype type;
    uint8_t *src, *dst, *scratch;
    size_t nb_row, dst_step;
    int64_t n_out, n_in;
    bool populate;
} pack_job;

static void pack_part(void *arg, int ith, int nth) {
    const pack_job *j = arg;
    int64_t lo, hi;
    const int rows = gk_gemm_pack_rows(j->type);
    gk_split(j->n_out / rows, ith, nth, &lo, &hi);
    if (hi <= lo) return;
    const size_t strip = (size_t)rows * j->nb_row, off = (size_t)lo * strip,
                 len = (size_t)(hi - lo) * strip;
#ifdef MADV_POPULATE_READ
    if (j->populate) {
        const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)(j->src + off);
        const uintptr_t plo = (a + pg - 1) / pg * pg, phi = (a + len) / pg * pg;
        if (phi > plo) madvise((void *)plo, phi - plo, MADV_POPULATE_READ);
    }
#endif
    uint8_t *out = j->scratch ? j->scratch : j->dst;
    const size_t step = j->scratch ? strip : j->dst_step;
    for (int64_t s = lo; s < hi; s++)
        gk_gemm_pack(j->type, j->src + (size_t)s * strip, j->nb_row, rows, j->n_in,
                     out + (size_t)s * step);
    if (j->scratch) memcpy(j->src + off, j->scratch + off, len);
}

/* The matrices of w: an expert stack's ne[2], else 1. */
static int64_t n_matrices(const gk_weight *w) {
    return w->ne[2] > 1 ? w->ne[2] : 1;
}

/* Whether w can be packed for the GEMM: a matrix whose product runs in column
 * chunks (the summation tree's) only when each chunk starts on a packed block. */
static bool pack_wanted(const gk_weight *w, int chunks) {
    return w->data && !w->packed && w->ne[0] % chunks == 0 &&
           gk_gemm_packable(w->type, w->ne[1], w->ne[0] / chunks);
}

/* A new allocation of `bytes` in 2 MiB pages (packing Q8_0's 565 MiB took 3x as long
 * in small pages here), owned by the model. */
static uint8_t *pack_alloc(gk_model *m, size_t bytes, const gk_weight *w, gk_err *err) {
    void **owned = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *owned);
    if (!owned) {
        gk_fail(err, "out of memory packing %s", w->name ? w->name : "weights");
        return NULL;
    }
    m->owned = owned;
    uint8_t *dst = gk_malloc_huge(bytes, err);
    if (!dst) {
        gk_err_prefix(err, "packing %s", w->name ? w->name : "weights");
        return NULL;
    }
    m->owned[m->n_owned++] = dst;
    return dst;
}

/* Packs every matrix of w: into dst (matrix e at e * mat_step, its strips step
 * bytes apart) when w lies in the file's bytes, whose pages then leave this
 * process (they would be read again only if touched); else (dst NULL) in place
 * through scratch. */
static void pack_matrices(gk_model *m, gk_weight *w, uint8_t *dst, size_t step, size_t mat_step,
                          gk_pool *pool, uint8_t *scratch, bool file_mapped) {
    const int64_t n_mat = n_matrices(w);
    for (int64_t e = 0; e < n_mat; e++) {
        pack_job j = {.type = w->type,
                      .src = (uint8_t *)w->data + (size_t)e * w->nb_mat,
                      .dst = dst ? dst + (size_t)e * mat_step : NULL,
                      .scratch = dst ? NULL : scratch,
                      .nb_row = w->nb_row,
                      .dst_step = step,
                      .n_out = w->ne[1],
                      .n_in = w->ne[0],
                      .populate = file_mapped};
        gk_pool_run(pool, pack_part, &j);
    }
    /* the whole pages inside the tensor: no longer needed here (the file keeps them) */
    const size_t bytes = w->nb_mat * (size_t)n_mat;
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)w->data,
                    lo = (a + pg - 1) / pg * pg, hi = (a + bytes) / pg * pg;
    if (file_mapped && hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
    if (dst) w->data = dst;
    w->packed = true;
    m->n_packed += (int)n_mat;
    m->packed_bytes += bytes;
}

/* Packs w's matrices for the GEMM (kernels/gemm.h gk_gemm_pack) where its kernels
 * have a packed layout. Weights in the file's bytes go to a new allocation; those
 * the model already holds (a rank's slices, copied experts) are packed in place
 * through one matrix of scratch. */
static int pack_weight(gk_model *m, gk_weight *w, int chunks, gk_pool *pool, uint8_t **scratch,
                       size_t *scratch_size, gk_err *err) {
    if (!pack_wanted(w, chunks)) return 0;
    bool file_mapped = false;
    uint8_t *dst = NULL;
    if (gk_gguf_holds(m->gguf, w->data, &file_mapped)) {
        if (!(dst = pack_alloc(m, w->nb_mat * (size_t)n_matrices(w), w, err))) return -1;
    } else if (*scratch_size < w->nb_mat) {
        gk_free_aligned(*scratch);
        *scratch_size = 0;
        if (!(*scratch = gk_malloc_aligned(w->nb_mat, err))) return -1;
        *scratch_size = w->nb_mat;
    }
    pack_matrices(m, w, dst, (size_t)gk_gemm_pack_rows(w->type) * w->nb_row, w->nb_mat, pool,
                  *scratch, file_mapped);
    return 0;
}

/* An MLP's gate and up (an expert stack's, or the dense MLP's), packed together
 * (gk_weight.paired) where both lie in the file's bytes with the same type and
 * shape: a GeGLU pass, which runs gate strip s then up strip s, then reads one
 * sequential stream. Apart, each thread's reads alternated between two places a
 * strip (then 16 rows, 32 KiB of F16) at a time, and the gate/up pass of decode (3 GeGLU pairs,
 * each of 8 cold copies in turn, 2 threads) ran at 64-69 GB/s where together it
 * runs at 74-75 (F16, Q8_0, Q4_0 and Q4_K alike, medians of 120). 0 where they are
 * not paired (then packed apart). */
static int pack_pair(gk_model *m, gk_weight *g, gk_weight *u, gk_pool *pool, gk_err *err) {
    bool gf = false, uf = false;
    if (!pack_wanted(g, 1) || !pack_wanted(u, 1) || g->type != u->type || g->ne[0] != u->ne[0] ||
        g->ne[1] != u->ne[1] || g->ne[2] != u->ne[2] || g->nb_mat != u->nb_mat ||
        !gk_gguf_holds(m->gguf, g->data, &gf) || !gk_gguf_holds(m->gguf, u->data, &uf))
        return 0;
    const int64_t n_mat = n_matrices(g);
    const size_t strip = (size_t)gk_gemm_pack_rows(g->type) * g->nb_row;
    uint8_t *dst = pack_alloc(m, 2 * g->nb_mat * (size_t)n_mat, g, err);
    if (!dst) return -1;
    pack_matrices(m, g, dst, 2 * strip, 2 * g->nb_mat, pool, NULL, gf);
    pack_matrices(m, u, dst + strip, 2 * strip, 2 * u->nb_mat, pool, NULL, uf);
    g->paired = u->paired = true;
    m->n_paired += 2 * (int)n_mat;
    return 1;
}

/* Every weight the forward runs through the GEMM, once, when the first context is
 * made, by its pool's threads: describing a model (grok info, grok plan) or training
 * from it reads none of its weights. An output tied to the embedding is packed into
 * a copy of its own where the file holds it (the embedding reads its rows from the
 * file, as they are); a rank's slice of it, in memory, stays as it is (unpacked,
 * f16 and bf16 rows take the GEMM's slower turned path). */
int gk_model_pack(gk_model *m, gk_pool *pool, gk_err *err) {
    if (!m->pack_wanted || m->pack_done) return 0;
    m->pack_done = true;
    uint8_t *scratch = NULL;
    size_t scratch_size = 0;
    int rc = 0;
    int k = 1; /* forward.c's column chunks of wo and the down matrices */
    gk_model_sum_chunks(m, &k);
    if (!m->hp.tied_output || gk_gguf_holds(m->gguf, m->output.data, NULL))
        rc = pack_weight(m, &m->output, 1, pool, &scratch, &scratch_size, err);
    for (uint32_t l = 0; rc == 0 && l < m->hp.n_layer; l++) {
        gk_layer *L = &m->layers[l];
        if (pack_pair(m, &L->gate_exps, &L->up_exps, pool, err) < 0 ||
            pack_pair(m, &L->ffn_gate, &L->ffn_up, pool, err) < 0) {
            rc = -1;
            break;
        }
        gk_weight *ws[] = {&L->wq,      &L->wk,        &L->wv,       &L->wo,     &L->gate_exps,
                           &L->up_exps, &L->down_exps, &L->ffn_gate, &L->ffn_up, &L->ffn_down};
        for (size_t i = 0; rc == 0 && i < sizeof ws / sizeof *ws; i++) {
            const bool chunked = ws[i] == &L->wo || ws[i] == &L->down_exps || ws[i] == &L->ffn_down;
            rc = pack_weight(m, ws[i], chunked ? k : 1, pool, &scratch, &scratch_size, err);
        }
    }
    gk_free_aligned(scratch);
    return rc;
}

static gk_model *load_one(const char *path, const gk_model_params *params, bool want_shard,
                          int rank, int size, bool pack, gk_err *err) {
    gk_dtype_init();
    gk_model *m = gk_calloc(1, sizeof *m, err);
    if (!m) return NULL;
    m->tp.dist = params ? params->dist : NULL;
    m->tp.rank = rank;
    m->tp.size = size;
    m->tp.shard_file = want_shard; /* gk_tp_plan checks the file's keys against it */
    m->numerics = params ? params->numerics : GK_NUMERICS_REFERENCE;
    if (m->numerics != GK_NUMERICS_REFERENCE && m->numerics != GK_NUMERICS_LLAMACPP) {
        gk_fail(err, "unknown numerics mode %d", (int)m->numerics);
        goto fail;
    }
    m->gguf = gk_gguf_open_split(path, err);
    if (!m->gguf) goto fail;
    if (load_hparams(m, err) < 0 || gk_tp_plan(m, err) < 0 || load_tensors(m, err) < 0 ||
        gk_tp_cut(m, path, err) < 0) {
        gk_err_prefix(err, "%s", path);
        goto fail;
    }
    gk_tp_identity(m);
    m->pack_wanted = pack;
    set_numerics(m);
    if (err) err->msg[0] = 0;
    m->tok = gk_tokenizer_from_gguf(m->gguf, err);
    if (!m->tok && err && err->msg[0]) {
        gk_err_prefix(err, "%s: tokenizer", path);
        goto fail;
    }
    if (m->tok && gk_tokenizer_n_vocab(m->tok) > (int32_t)m->hp.n_vocab) {
        gk_fail(err, "%s: the tokenizer has %d tokens but the model only %u", path,
                gk_tokenizer_n_vocab(m->tok), m->hp.n_vocab);
        goto fail;
    }
    return m;
fail:
    gk_model_free(m);
    return NULL;
}

/* With a process group of several ranks, loading is collective: rank r opens
 * its own file when path is a directory of per-rank files, and every rank
 * learns whether all succeeded with the same model (gk_dist_agree). */
gk_model *gk_model_load(const char *path, const gk_model_params *params, gk_err *err) {
    gk_dist *d = params ? params->dist : NULL;
    char file[4096];
    struct stat st;
    bool dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    if (gk_dist_size(d) == 1) {
        if (dir)
            return gk_failp(err,
                            "%s is a directory: a set of per-rank files written by grok "
                            "shard runs under mpirun -np N, one rank per file",
                            path);
        return load_one(path, params, false, 0, 1, true, err);
    }
    if (dir)
        snprintf(file, sizeof file, "%s/" GK_SHARD_NAME_FMT, path, gk_dist_rank(d),
                 gk_dist_size(d));
    else
        snprintf(file, sizeof file, "%s", path);
    gk_err mine = {{0}};
    gk_model *m = NULL;
    if (dir && stat(file, &st) != 0)
        gk_fail(&mine,
                "%s holds no file for rank %d of %d (%s missing); write the set with "
                "grok shard --ranks %d",
                path, gk_dist_rank(d), gk_dist_size(d), file, gk_dist_size(d));
    else
        m = load_one(file, params, dir, gk_dist_rank(d), gk_dist_size(d), true, &mine);
    if (gk_dist_agree(d, m != NULL, mine.msg, m ? m->tp.ident : NULL, "loading the model", err) <
        0) {
        gk_model_free(m);
        return NULL;
    }
    return m;
}

gk_model *gk_model_load_rank(const char *path, const gk_model_params *params, int rank, int size,
                             gk_err *err) {
    gk_model_params p = params ? *params : gk_model_default_params();
    p.dist = NULL;
    return load_one(path, &p, false, rank, size, false, err);
}

gk_model *gk_model_load_shard(const char *path, const gk_model_params *params, int rank, int size,
                              gk_err *err) {
    if (size < 1 || rank < 0 || rank >= size)
        return gk_failp(err, "rank %d of %d processes is not a rank", rank, size);
    gk_model_params p = params ? *params : gk_model_default_params();
    p.dist = NULL;
    return load_one(path, &p, true, rank, size, false, err);
}

void gk_model_free(gk_model *m) {
    if (!m) return;
    gk_free_aligned(m->tp.store);
    gk_tokenizer_free(m->tok);
    free(m->layers);
    free(m->norm_store);
    for (int i = 0; i < m->n_owned; i++) gk_free_aligned(m->owned[i]);
    for (int i = 0; i < m->n_owned_names; i++) free(m->owned_names[i]);
    free(m->owned);
    free(m->owned_names);
    gk_gguf_close(m->gguf);
    free(m);
}

const gk_hparams *gk_model_hparams(const gk_model *m) {
    return &m->hp;
}
gk_numerics gk_model_numerics(const gk_model *m) {
    return m->numerics;
}
int gk_model_sum_chunks(const gk_model *m, int *per_rank) {
    if (per_rank) *per_rank = m->tp.sum_k > 1 ? (int)m->tp.sum_k : 1;
    return m->tp.sum_g > 1 ? (int)m->tp.sum_g : 1;
}
uint64_t gk_model_file_size(const gk_model *m) {
    return gk_gguf_total_size(m->gguf);
}
uint64_t gk_model_n_params(const gk_model *m) {
    return m->n_params;
}
const struct gk_tokenizer *gk_model_tokenizer(const gk_model *m) {
    return m->tok;
}

int gk_model_hparam_info(const gk_model *m, gk_hparam_info *out, int cap) {
    for (int i = 0; i < m->n_info && i < cap; i++) out[i] = m->info[i];
    return m->n_info;
}
