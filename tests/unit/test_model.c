/*
 * test_model.c - model loading and decoding through the public API, on tiny
 * models written with the GGUF writer: a valid Grok-1 and Grok-2 model, then a
 * corpus of files that are valid GGUF but not valid Grok models (missing or
 * stray tensors, shapes that contradict the hyper-parameters, bad keys,
 * unsupported types), each of which must be refused with a message naming the
 * problem. Also: the KV-cache path against the whole-prompt path, context and
 * token-id errors, thread-count determinism, and the samplers.
 */
#include "gk_test.h"
#include "format/gguf.h"
#include "grok.h"

#include <math.h>
#include <unistd.h>

enum { D = 64, L = 2, NH = 4, NKV = 2, HD = 16, E = 8, K = 2, F = 64, FD = 96, V = 300 };

/* What to break in the written model. */
typedef struct {
    bool grok2;
    const char *arch;       /* general.architecture (default "grok") */
    const char *drop;       /* leave this tensor out */
    const char *extra;      /* add this (1-D, n_embd) tensor */
    const char *reshape;    /* write this tensor with one row too many */
    const char *retype;     /* write this tensor as tq1_0 bytes */
    const char *drop_key;   /* leave this key out */
    uint32_t head_count_kv; /* 0 = NKV */
    uint32_t expert_used;   /* 0 = K */
    bool both_post_norms;
    int head_dim; /* 0 = HD */
} spec;

static float *rnd(size_t n, float std, uint64_t *s) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = std * ((float)((*s >> 40) & 0xffffff) / 8388608.0f - 1.0f);
    }
    return p;
}

/* Writes a model; returns 0 on success. All tensors f32 except `retype`. */
static int write_model(const char *path, const spec *sp) {
    gk_err err;
    gk_gguf_writer *w = gk_gguf_writer_new(&err);
    if (!w) return -1;
    uint64_t seed = 7;
    const int64_t hd = sp->head_dim ? sp->head_dim : HD;
    float *bufs[64];
    int nb = 0;
    gk_gguf_set_str(w, "general.architecture", sp->arch ? sp->arch : "grok");
#define KEY_U32(k, v)                                                                              \
    if (!sp->drop_key || strcmp(sp->drop_key, k)) gk_gguf_set_u32(w, k, v)
    KEY_U32("grok.context_length", 64);
    KEY_U32("grok.embedding_length", D);
    KEY_U32("grok.block_count", L);
    KEY_U32("grok.feed_forward_length", sp->grok2 ? FD : F);
    KEY_U32("grok.expert_feed_forward_length", F);
    KEY_U32("grok.attention.head_count", NH);
    KEY_U32("grok.attention.head_count_kv", sp->head_count_kv ? sp->head_count_kv : NKV);
    KEY_U32("grok.attention.key_length", (uint32_t)hd);
    KEY_U32("grok.attention.value_length", (uint32_t)hd);
    KEY_U32("grok.expert_count", E);
    KEY_U32("grok.expert_used_count", sp->expert_used ? sp->expert_used : K);
    if (!sp->drop_key || strcmp(sp->drop_key, "grok.attention.layer_norm_rms_epsilon"))
        gk_gguf_set_f32(w, "grok.attention.layer_norm_rms_epsilon", 1e-5f);
    gk_gguf_set_f32(w, "grok.embedding_scale", 8.0f);
    if (sp->grok2) gk_gguf_set_f32(w, "grok.final_logit_softcapping", 50.0f);
#undef KEY_U32

    struct {
        const char *name;
        int n_dims;
        int64_t ne0, ne1, ne2;
        float std;
    } ts[64];
    int n = 0;
#define T(nm, nd, a, b, c, s)                                                                      \
    ts[n++] = (typeof(ts[0])) {                                                                    \
        nm, nd, a, b, c, s                                                                         \
    }
    static char names[64][64];
    T("token_embd.weight", 2, D, V, 1, 0.5f);
    T("output_norm.weight", 1, D, 1, 1, 1.0f);
    if (sp->grok2) T("output.weight", 2, D, V, 1, 0.2f);
    for (int l = 0; l < L; l++) {
        const char *fmt[] = {
            "attn_norm.weight",    "attn_output_norm.weight",
            "ffn_norm.weight",     sp->grok2 ? "post_ffw_norm.weight" : "layer_output_norm.weight",
            "attn_q.weight",       "attn_k.weight",
            "attn_v.weight",       "attn_output.weight",
            "ffn_gate_inp.weight", "ffn_gate_exps.weight",
            "ffn_up_exps.weight",  "ffn_down_exps.weight",
            "ffn_gate.weight",     "ffn_up.weight",
            "ffn_down.weight"};
        int64_t shp[][4] = {{1, D, 1, 1},        {1, D, 1, 1},       {1, D, 1, 1},
                            {1, D, 1, 1},        {2, D, NH * hd, 1}, {2, D, NKV * hd, 1},
                            {2, D, NKV * hd, 1}, {2, NH * hd, D, 1}, {2, D, E, 1},
                            {3, D, F, E},        {3, D, F, E},       {3, F, D, E},
                            {2, D, FD, 1},       {2, D, FD, 1},      {2, FD, D, 1}};
        int count = sp->grok2 ? 15 : 12;
        for (int i = 0; i < count; i++) {
            char *nm = names[n];
            snprintf(nm, 64, "blk.%d.%s", l, fmt[i]);
            T(nm, (int)shp[i][0], shp[i][1], shp[i][2], shp[i][3], i < 4 ? 1.0f : 0.2f);
        }
    }
    if (sp->both_post_norms) T("blk.0.post_ffw_norm.weight", 1, D, 1, 1, 1.0f);
    if (sp->extra) T(sp->extra, 1, D, 1, 1, 1.0f);
#undef T
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (sp->drop && !strcmp(sp->drop, ts[i].name)) continue;
        int64_t ne[3] = {ts[i].ne0, ts[i].ne1, ts[i].ne2};
        if (sp->reshape && !strcmp(sp->reshape, ts[i].name)) ne[ts[i].n_dims > 1 ? 1 : 0] += 1;
        size_t cnt = (size_t)(ne[0] * ne[1] * ne[2]);
        float *p = rnd(cnt + 256, ts[i].std, &seed);
        if (ts[i].std == 1.0f)
            for (size_t k = 0; k < cnt; k++) p[k] = 1.0f + 0.1f * p[k];
        bufs[nb++] = p;
        gk_dtype type = GK_TYPE_F32;
        if (sp->retype && !strcmp(sp->retype, ts[i].name)) type = GK_TYPE_TQ1_0, ne[0] = 256;
        rc = gk_gguf_add_tensor(w, ts[i].name, type, (uint32_t)ts[i].n_dims, ne, p, &err);
    }
    if (rc == 0) rc = gk_gguf_write(w, path, &err);
    if (rc) fprintf(stderr, "write_model: %s\n", err.msg);
    gk_gguf_writer_free(w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    return rc;
}

static char path[512];

/* Writes a broken model and checks that loading fails with a message containing want. */
static void expect_refused(const spec *sp, const char *want) {
    CHECK(write_model(path, sp) == 0);
    gk_err err = {{0}};
    gk_model *m = gk_model_load(path, NULL, &err);
    CHECK_MSG(m == NULL, "a broken model loaded (expected '%s')", want);
    if (m)
        gk_model_free(m);
    else
        CHECK_ERR_HAS(err.msg, want);
}

static void test_broken(void) {
    expect_refused(&(spec){.arch = "llama"}, "architecture 'llama' is not supported");
    expect_refused(&(spec){.drop = "blk.1.attn_k.weight"}, "missing tensor 'blk.1.attn_k.weight'");
    expect_refused(&(spec){.drop = "token_embd.weight"}, "missing tensor 'token_embd.weight'");
    expect_refused(&(spec){.reshape = "blk.0.attn_q.weight"},
                   "tensor 'blk.0.attn_q.weight' has shape {64, 65, 1}, but the hyper-parameters "
                   "imply {64, 64, 1}");
    expect_refused(&(spec){.reshape = "blk.1.ffn_down_exps.weight"},
                   "'blk.1.ffn_down_exps.weight' has shape");
    expect_refused(&(spec){.reshape = "output_norm.weight"}, "'output_norm.weight' has shape");
    expect_refused(&(spec){.extra = "blk.2.attn_norm.weight"},
                   "unexpected tensor 'blk.2.attn_norm.weight'");
    expect_refused(&(spec){.extra = "rope_freqs.weight"}, "unexpected extra tensors");
    expect_refused(&(spec){.drop_key = "grok.embedding_length"},
                   "missing required key 'grok.embedding_length'");
    expect_refused(&(spec){.drop_key = "grok.attention.layer_norm_rms_epsilon"},
                   "missing required key 'grok.attention.layer_norm_rms_epsilon'");
    expect_refused(&(spec){.head_count_kv = 3}, "head_count_kv 3 does not divide");
    expect_refused(&(spec){.expert_used = 9}, "expert_used_count 9 must be in 1..8");
    expect_refused(&(spec){.retype = "blk.0.attn_v.weight"}, "type tq1_0 is not supported");
    expect_refused(&(spec){.both_post_norms = true}, "exactly one of");
    expect_refused(&(spec){.grok2 = true, .drop = "blk.1.ffn_up.weight"},
                   "missing tensor 'blk.1.ffn_up.weight'");
    gk_err err;
    CHECK(gk_model_load("/nonexistent/model.gguf", NULL, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "/nonexistent/model.gguf");
}

static float max_abs_diff(const float *a, const float *b, int n, float *scale) {
    float d = 0, s = 0;
    for (int i = 0; i < n; i++) {
        d = fmaxf(d, fabsf(a[i] - b[i]));
        s = fmaxf(s, fabsf(b[i]));
    }
    *scale = s;
    return d;
}

/* The prompt in one call, in uneven chunks, and one token at a time through the
 * KV cache all give the same logits; 1 and 2 threads too. */
static void test_kv_paths(bool grok2) {
    CHECK(write_model(path, &(spec){.grok2 = grok2}) == 0);
    gk_err err;
    gk_model *m = gk_model_load(path, NULL, &err);
    CHECK_MSG(m != NULL, "%s", err.msg);
    if (!m) return;
    CHECK(gk_model_hparams(m)->variant == (grok2 ? GK_VARIANT_GROK2 : GK_VARIANT_GROK1));
    enum { P = 40 };
    int32_t toks[P];
    for (int i = 0; i < P; i++) toks[i] = (i * 37 + 11) % V;
    static float full[P][V];
    gk_context_params cp = gk_context_default_params();
    cp.all_logits = true;
    cp.n_batch = P;
    cp.n_threads = 2;
    gk_context *c = gk_context_new(m, &cp, &err);
    CHECK(c && gk_decode(c, toks, P, &err) == 0);
    for (int i = 0; i < P && c; i++) memcpy(full[i], gk_get_logits(c, i), sizeof full[i]);
    gk_context_free(c);

    int chunks[] = {1, 7};
    for (int k = 0; k < 2; k++) {
        cp.n_batch = (uint32_t)chunks[k];
        cp.n_threads = k + 1;
        c = gk_context_new(m, &cp, &err);
        float worst = 0, scale = 0;
        for (int at = 0; c && at < P;) {
            int T = P - at < chunks[k] ? P - at : chunks[k];
            CHECK(gk_decode(c, toks + at, T, &err) == 0);
            for (int i = 0; i < T; i++) {
                float s, d = max_abs_diff(gk_get_logits(c, i), full[at + i], V, &s);
                worst = fmaxf(worst, d);
                scale = fmaxf(scale, s);
            }
            at += T;
        }
        CHECK_MSG(worst <= 1e-4f * (1 + scale), "chunk %d: max diff %g (scale %g)", chunks[k],
                  worst, scale);
        gk_context_free(c);
    }

    /* errors: context full, bad ids; nothing changes on failure */
    cp = gk_context_default_params();
    cp.n_ctx = 16;
    c = gk_context_new(m, &cp, &err);
    CHECK(c != NULL);
    CHECK(gk_decode(c, toks, 10, &err) == 0);
    CHECK(gk_decode(c, toks, 7, &err) < 0);
    CHECK_ERR_HAS(err.msg, "context length exceeded");
    CHECK(gk_context_n_past(c) == 10);
    int32_t bad[2] = {1, V};
    CHECK(gk_decode(c, bad, 2, &err) < 0);
    CHECK_ERR_HAS(err.msg, "out of range");
    bad[1] = -1;
    CHECK(gk_decode(c, bad, 2, &err) < 0);
    CHECK(gk_decode(c, bad, 0, &err) < 0);
    CHECK(gk_context_n_past(c) == 10);
    gk_context_truncate(c, 4);
    CHECK(gk_context_n_past(c) == 4 && gk_decode(c, toks, 12, &err) == 0);
    gk_context_free(c);
    gk_model_free(m);
}

/* Greedy continuation of a prompt, one sequence alone: the logits of the prompt's
 * last token and of n_gen decode steps, [1 + n_gen][V]. */
static void run_alone(gk_model *m, const int32_t *prompt, int n, int n_gen, float *out) {
    gk_err err;
    gk_context_params cp = gk_context_default_params();
    cp.n_threads = 1;
    gk_context *c = gk_context_new(m, &cp, &err);
    CHECK_MSG(c != NULL, "%s", err.msg);
    if (!c) return;
    CHECK(gk_decode(c, prompt, n, &err) == 0);
    for (int g = 0; g <= n_gen; g++) {
        const float *lg = gk_get_logits(c, g == 0 ? n - 1 : 0);
        memcpy(out + (size_t)g * V, lg, V * sizeof(float));
        int32_t best = 0;
        for (int i = 1; i < V; i++) best = lg[i] > lg[best] ? i : best;
        if (g < n_gen) CHECK(gk_decode(c, &best, 1, &err) == 0);
    }
    gk_context_free(c);
}

/* Batches that mix sequences: each sequence's logits are bit-identical to its run
 * alone, whatever its neighbours and its place in the batch; copying a prefix and
 * dropping a tail give what a fresh run gives; bad batches change nothing. */
static void test_batch(bool grok2) {
    CHECK(write_model(path, &(spec){.grok2 = grok2}) == 0);
    gk_err err;
    gk_model *m = gk_model_load(path, NULL, &err);
    CHECK_MSG(m != NULL, "%s", err.msg);
    if (!m) return;
    enum { S = 3, G = 6 };
    const int len[S] = {9, 4, 13};
    int32_t prompt[S][16];
    static float alone[S][G + 1][V], mixed[G + 1][V];
    for (int s = 0; s < S; s++) {
        for (int i = 0; i < len[s]; i++) prompt[s][i] = (i * 53 + s * 101 + 7) % V;
        run_alone(m, prompt[s], len[s], G, &alone[s][0][0]);
    }
    gk_context_params cp = gk_context_default_params();
    cp.n_seq = 4;
    cp.n_batch = 32;
    cp.n_threads = 2;
    gk_context *c = gk_context_new(m, &cp, &err);
    CHECK_MSG(c != NULL, "%s", err.msg);
    if (!c) {
        gk_model_free(m);
        return;
    }
    /* every prompt in one batch, interleaved; sequences 1..3 (slot 0 unused) */
    int32_t tok[32], seq[32];
    bool keep[32];
    int n = 0, at[S] = {0};
    for (int round = 0; n < len[0] + len[1] + len[2]; round++)
        for (int s = S - 1; s >= 0; s--)
            if (at[s] < len[s]) {
                tok[n] = prompt[s][at[s]];
                seq[n] = s + 1;
                keep[n] = ++at[s] == len[s];
                n++;
            }
    gk_batch b = {.n = n, .token = tok, .seq = seq, .logits = keep};
    CHECK_MSG(gk_decode_batch(c, &b, &err) == 0, "%s", err.msg);
    int32_t next[S];
    for (int g = 0; g <= G; g++) {
        /* collect each sequence's logits, then decode one greedy token of each, in an
         * order that changes every step */
        for (int i = 0; i < b.n; i++) {
            const float *lg = gk_get_logits(c, i);
            if (!keep[i]) {
                CHECK(lg == NULL);
                continue;
            }
            int s = seq[i] - 1;
            CHECK_MSG(lg && memcmp(lg, alone[s][g], sizeof mixed[0]) == 0,
                      "grok%d: sequence %d, step %d differs from its run alone", grok2 ? 2 : 1, s,
                      g);
            int32_t best = 0;
            for (int k = 1; k < V && lg; k++) best = lg[k] > lg[best] ? k : best;
            next[s] = best;
        }
        if (g == G) break;
        for (int i = 0; i < S; i++) {
            int s = (i + g) % S;
            tok[i] = next[s], seq[i] = s + 1, keep[i] = true;
        }
        b.n = S;
        CHECK_MSG(gk_decode_batch(c, &b, &err) == 0, "%s", err.msg);
    }
    for (int s = 0; s < S; s++) CHECK(gk_kv_seq_len(c, s + 1) == (uint32_t)(len[s] + G));
    CHECK(gk_kv_seq_len(c, 0) == 0 && gk_context_n_seq(c) == 4);

    /* a copied prefix continues as the original would: sequence 0 := first 5 of seq 3 */
    CHECK(gk_kv_seq_copy(c, 3, 0, 5, &err) == 0);
    int32_t t5 = prompt[2][5];
    CHECK(gk_decode(c, &t5, 1, &err) == 0);
    float ref[V];
    run_alone(m, prompt[2], 6, 0, ref);
    CHECK(memcmp(gk_get_logits(c, 0), ref, sizeof ref) == 0);
    /* dropping a tail and decoding again: sequence 1 back to 4 tokens then 5 more */
    CHECK(gk_kv_seq_keep(c, 1, 4, &err) == 0 && gk_kv_seq_len(c, 1) == 4);
    int32_t more[5];
    for (int i = 0; i < 5; i++) more[i] = prompt[0][4 + i];
    b = (gk_batch){.n = 5, .token = more, .seq = (int32_t[]){1, 1, 1, 1, 1}};
    CHECK(gk_decode_batch(c, &b, &err) == 0);
    CHECK(memcmp(gk_get_logits(c, 4), alone[0][0], sizeof ref) == 0);
    CHECK(gk_get_logits(c, 3) == NULL && gk_get_logits(c, 5) == NULL);

    /* bad batches fail and change no sequence */
    uint32_t before[4];
    for (int s = 0; s < 4; s++) before[s] = gk_kv_seq_len(c, s);
    b = (gk_batch){.n = 2, .token = (int32_t[]){1, 2}, .seq = (int32_t[]){0, 4}};
    CHECK(gk_decode_batch(c, &b, &err) < 0);
    CHECK_ERR_HAS(err.msg, "sequence id 4 at index 1 is out of range");
    b.seq = (int32_t[]){0, 1}, b.token = (int32_t[]){1, V};
    CHECK(gk_decode_batch(c, &b, &err) < 0);
    CHECK_ERR_HAS(err.msg, "token id");
    b.n = 33;
    CHECK(gk_decode_batch(c, &b, &err) < 0);
    CHECK_ERR_HAS(err.msg, "exceeds n_batch 32");
    b = (gk_batch){.n = 5,
                   .token = (int32_t[]){1, 2, 3, 4, 5},
                   .seq = (int32_t[]){0, 1, 2, 3, 0},
                   .logits = (bool[]){1, 1, 1, 1, 1}};
    CHECK(gk_decode_batch(c, &b, &err) < 0);
    CHECK_ERR_HAS(err.msg, "keeps more than 4");
    CHECK(gk_kv_seq_copy(c, 1, 2, 99, &err) < 0);
    CHECK_ERR_HAS(err.msg, "cannot copy 99 positions of sequence 1");
    CHECK(gk_kv_seq_keep(c, -1, 0, &err) < 0);
    for (int s = 0; s < 4; s++) CHECK(gk_kv_seq_len(c, s) == before[s]);
    CHECK(gk_get_logits(c, 0) == NULL);
    gk_context_free(c);

    /* a full sequence: 16 positions each */
    cp.n_ctx = 16;
    c = gk_context_new(m, &cp, &err);
    int32_t z[16] = {0};
    b = (gk_batch){.n = 10, .token = z, .seq = NULL};
    CHECK(c && gk_decode_batch(c, &b, &err) == 0);
    b.n = 7;
    CHECK(c && gk_decode_batch(c, &b, &err) < 0);
    CHECK_ERR_HAS(err.msg, "context length exceeded: sequence 0 holds 10 tokens");
    b.n = 6;
    CHECK(c && gk_decode_batch(c, &b, &err) == 0 && gk_kv_seq_len(c, 0) == 16);
    gk_context_free(c);
    gk_model_free(m);
}

/* KV cache types: f16 and q8_0 stay close to f32 (their rounding is the only
 * difference), the default follows the numerics, and a head size that Q8_0 blocks
 * cannot cover is refused. */
static void test_cache_types(void) {
    CHECK(write_model(path, &(spec){.grok2 = true, .head_dim = 32}) == 0);
    gk_err err;
    gk_model *m = gk_model_load(path, NULL, &err);
    CHECK_MSG(m != NULL, "%s", err.msg);
    if (!m) return;
    enum { P = 24 };
    int32_t toks[P];
    for (int i = 0; i < P; i++) toks[i] = (i * 29 + 3) % V;
    static float lg[4][P][V];
    gk_cache_type types[] = {GK_CACHE_F32, GK_CACHE_F16, GK_CACHE_Q8_0, GK_CACHE_DEFAULT};
    uint64_t kv_bytes[4] = {0};
    for (int k = 0; k < 4; k++) {
        gk_context_params cp = gk_context_default_params();
        cp.all_logits = true;
        cp.n_batch = 8; /* the later chunks read the cache written by the earlier ones */
        cp.n_ctx = 32;
        cp.cache_type = types[k];
        gk_context *c = gk_context_new(m, &cp, &err);
        CHECK_MSG(c != NULL, "%s", err.msg);
        if (!c) continue;
        kv_bytes[k] = gk_context_kv_bytes(c);
        CHECK(gk_context_cache_type(c) == (k == 3 ? GK_CACHE_F32 : types[k]));
        for (int at = 0; at < P; at += 8) {
            CHECK(gk_decode(c, toks + at, 8, &err) == 0);
            for (int i = 0; i < 8; i++) memcpy(lg[k][at + i], gk_get_logits(c, i), sizeof lg[0][0]);
        }
        gk_context_free(c);
    }
    /* 2 layers x 32 positions x 2 KV heads x 32 dims x (K, V) */
    CHECK(kv_bytes[0] == 2ull * L * 32 * NKV * 32 * 4 && kv_bytes[1] == kv_bytes[0] / 2);
    CHECK(kv_bytes[2] == 2ull * L * 32 * NKV * 34 && kv_bytes[3] == kv_bytes[0]);
    CHECK(memcmp(lg[3], lg[0], sizeof lg[0]) == 0); /* reference numerics: f32 */
    float bound[] = {0, 2e-3f, 3e-2f};
    for (int k = 1; k < 3; k++) {
        float worst = 0, scale = 0, s;
        for (int p = 0; p < P; p++) {
            worst = fmaxf(worst, max_abs_diff(lg[k][p], lg[0][p], V, &s));
            scale = fmaxf(scale, s);
        }
        CHECK_MSG(worst > 0 && worst <= bound[k] * (1 + scale), "cache %s: max diff %g (scale %g)",
                  gk_cache_type_name(types[k]), worst, scale);
    }
    gk_model_free(m);
    /* llamacpp numerics default to f16; q8_0 needs head_dim % 32 == 0 */
    gk_model_params mp = {.numerics = GK_NUMERICS_LLAMACPP};
    m = gk_model_load(path, &mp, &err);
    gk_context *c = m ? gk_context_new(m, NULL, &err) : NULL;
    CHECK(c && gk_context_kv_bytes(c) == 2ull * L * 64 * NKV * 32 * 2);
    CHECK(c && gk_context_cache_type(c) == GK_CACHE_F16);
    gk_context_free(c);
    gk_model_free(m);
    CHECK(write_model(path, &(spec){.grok2 = false}) == 0);
    m = gk_model_load(path, NULL, &err);
    gk_context_params cp = gk_context_default_params();
    cp.cache_type = GK_CACHE_Q8_0;
    CHECK(m && gk_context_new(m, &cp, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "KV cache type q8_0 needs a head size that is a multiple of 32");
    cp.cache_type = (gk_cache_type)7;
    CHECK(m && gk_context_new(m, &cp, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "unknown KV cache type 7");
    gk_model_free(m);
    CHECK(gk_cache_type_from_name("q8_0") == GK_CACHE_Q8_0 && gk_cache_type_from_name("q4") < 0);
}

static void test_sampler(void) {
    float logits[8] = {1, 5, 3, 5, -2, 0, 4, 2};
    gk_err err;
    gk_sampler_params p = gk_sampler_default_params();
    p.temperature = 0;
    gk_sampler *s = gk_sampler_new(&p, 8, &err);
    CHECK(gk_sampler_sample(s, logits, NULL, 0) == 1); /* tie: lowest id */
    int32_t hist[] = {1};
    gk_sampler_free(s);
    p.repeat_penalty = 2.0f; /* 5 / 2 = 2.5 < 5: id 3 wins */
    s = gk_sampler_new(&p, 8, &err);
    CHECK(gk_sampler_sample(s, logits, hist, 1) == 3);
    gk_sampler_free(s);

    /* top-k 1 is greedy whatever the temperature */
    p = gk_sampler_default_params();
    p.top_k = 1;
    p.temperature = 5;
    s = gk_sampler_new(&p, 8, &err);
    for (int i = 0; i < 20; i++) CHECK(gk_sampler_sample(s, logits, NULL, 0) == 1);
    gk_sampler_free(s);

    /* top-k 3: only ids 1, 3, 6 ever come out; the same seed gives the same draws */
    p.top_k = 3;
    p.top_p = 1;
    p.min_p = 0;
    p.temperature = 1;
    p.seed = 99;
    gk_sampler *a = gk_sampler_new(&p, 8, &err), *b = gk_sampler_new(&p, 8, &err);
    int seen[8] = {0};
    for (int i = 0; i < 300; i++) {
        int32_t x = gk_sampler_sample(a, logits, NULL, 0);
        CHECK(x == gk_sampler_sample(b, logits, NULL, 0));
        seen[x]++;
    }
    CHECK(seen[1] && seen[3] && seen[6] && seen[1] + seen[3] + seen[6] == 300);
    gk_sampler_free(a);
    gk_sampler_free(b);

    /* min-p 0.5 keeps only ids within ln 2 of the best (1 and 3) */
    p.top_k = 0;
    p.min_p = 0.5f;
    s = gk_sampler_new(&p, 8, &err);
    for (int i = 0; i < 100; i++) {
        int32_t x = gk_sampler_sample(s, logits, NULL, 0);
        CHECK(x == 1 || x == 3);
    }
    gk_sampler_free(s);

    /* top-p 0.5: p(1) = p(3) = 0.39 each, so both are needed and nothing else */
    p.min_p = 0;
    p.top_p = 0.5f;
    s = gk_sampler_new(&p, 8, &err);
    for (int i = 0; i < 100; i++) {
        int32_t x = gk_sampler_sample(s, logits, NULL, 0);
        CHECK(x == 1 || x == 3);
    }
    gk_sampler_free(s);

    /* bad parameters are refused with a message */
    p = gk_sampler_default_params();
    p.top_p = 0;
    CHECK(gk_sampler_new(&p, 8, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "top-p");
    p = gk_sampler_default_params();
    p.temperature = -1;
    CHECK(gk_sampler_new(&p, 8, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "temperature");
}

int main(void) {
    snprintf(path, sizeof path, "%s/model.gguf", gk_test_tmp_dir());
    test_broken();
    test_kv_paths(false);
    test_kv_paths(true);
    test_batch(false);
    test_batch(true);
    test_cache_types();
    test_sampler();
    unlink(path);
    rmdir(gk_test_tmp_dir());
    return gk_test_done();
}
