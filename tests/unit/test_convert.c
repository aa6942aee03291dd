/*
 * test_convert.c - tests of `grok convert` (gk_convert) and `grok quantize`
 * (gk_quantize).
 *
 * The test writes small checkpoints in exactly the release's layout (spec 6.2:
 * 15 pytorch_model-000NN-TP-common files, 3 groups of pytorch_model-000NN-TP-00R
 * expert files, a config.json with the real field names, a tokenizer.tok.json)
 * from deterministic pseudo-random weights, each element a function of the
 * unsharded tensor's name and index. The slices are cut here, independently of
 * the converter, so a converted tensor must equal the unsharded weights byte
 * for byte (bf16), or their exact conversion (f32, f16, q8_0, q4_0).
 *
 * Then every failure the converter promises to catch before (or during) the
 * long work: missing and extra shards, shapes that disagree between shards or
 * with the config, unknown dtypes, truncated and corrupt files, too little
 * disk, a disk that fills up, NaN data, interruption. Each checks the message
 * and that the output folder stays empty.
 */
#include "gk_test.h"

#include "format/convert.h"
#include "format/gguf.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------ the checkpoint --- */

typedef struct ck {
    /* config.json */
    int d, n_layer, n_head, n_head_kv, head_dim, n_vocab, n_ff, n_ff_exp, n_expert, n_used;
    bool tied;
    const char *omit_field;  /* leave this config field out */
    const char *extra_json;  /* appended to the config object (",\"x\":1") */
    int cfg_n_head_override; /* write this num_attention_heads (0: n_head) */
    /* layout */
    int n_ranks;
    bool unsharded;    /* one model.safetensors, whole experts */
    const char *dtype; /* "BF16" (default), "F16", "F32" */
    /* damage */
    const char *skip_file; /* do not write this file */
    const char *bad_dtype; /* write this dtype string for model.norm.weight */
    int shrink_rank;       /* >= 0: this rank's w1 slices of layer 0 lose half their rows */
    bool nan;              /* a NaN in layer 1's q_proj */
    bool extra_tensor;     /* an unknown tensor in the router file */
    bool dup_tensor;       /* model.norm.weight also in the router file */
} ck;

static ck ck_default(void) {
    ck c = {.d = 64,
            .n_layer = 2,
            .n_head = 4,
            .n_head_kv = 2,
            .head_dim = 16,
            .n_vocab = 320,
            .n_ff = 96,
            .n_ff_exp = 64,
            .n_expert = 8,
            .n_used = 2,
            .n_ranks = 8,
            .dtype = "BF16",
            .shrink_rank = -1};
    return c;
}

/* The unsharded weights: element i of tensor `name`, roughly uniform in
 * [-0.5, 0.5), a pure function of (name, i). */
static float wval(const char *name, int64_t i) {
    uint64_t h = 1469598103934665603ull;
    for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ull;
    uint64_t z = h + (uint64_t)i * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    float v = (float)((z >> 40) / 16777216.0) - 0.5f;
    if (strstr(name, "norm")) v += 1.0f;
    return v;
}

static size_t dtype_size(const char *dt) {
    return strcmp(dt, "F32") == 0 ? 4 : 2;
}

/* Stores v in the checkpoint's dtype at p. */
static void put(const char *dt, uint8_t *p, float v) {
    if (!strcmp(dt, "F32")) {
        memcpy(p, &v, 4);
    } else {
        uint16_t h = !strcmp(dt, "F16") ? gk_fp32_to_fp16(v) : gk_fp32_to_bf16(v);
        memcpy(p, &h, 2);
    }
}

/* What the converter reads back: the stored value as a float. */
static float stored(const char *dt, float v) {
    if (!strcmp(dt, "F32")) return v;
    if (!strcmp(dt, "F16")) return gk_fp16_to_fp32(gk_fp32_to_fp16(v));
    return gk_bf16_to_fp32(gk_fp32_to_bf16(v));
}

/* One tensor of a shard: a slice [rows, cols] of the unsharded tensor `full`
 * ([full_rows, full_cols]) starting at (row0, col0). rows == 0: 1-D of cols. */
typedef struct slice {
    char name[128], full[128];
    int64_t rows, cols, full_cols, row0, col0;
    const char *dtype_str;
} slice;

typedef struct shardf {
    char fname[128];
    slice s[512];
    int n;
} shardf;

static void add_slice(shardf *f, const char *name, int64_t rows, int64_t cols) {
    slice *s = &f->s[f->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->full, sizeof s->full, "%s", name);
    s->rows = rows;
    s->cols = cols;
    s->full_cols = cols;
}

static void write_shard(const char *dir, const shardf *f, const ck *c) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, f->fname);
    if (c->skip_file && !strcmp(c->skip_file, f->fname)) return;
    size_t es = dtype_size(c->dtype), cap = 1 << 16, n = 0;
    char *json = malloc(cap);
    uint64_t off = 0;
    n += (size_t)snprintf(json + n, cap - n, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < f->n; i++) {
        const slice *s = &f->s[i];
        uint64_t bytes = (uint64_t)(s->rows ? s->rows : 1) * (uint64_t)s->cols * es;
        const char *dt = s->dtype_str ? s->dtype_str : c->dtype;
        if (s->rows)
            n += (size_t)snprintf(json + n, cap - n,
                                  ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],"
                                  "\"data_offsets\":[%llu,%llu]}",
                                  s->name, dt, (long long)s->rows, (long long)s->cols,
                                  (unsigned long long)off, (unsigned long long)(off + bytes));
        else
            n += (size_t)snprintf(json + n, cap - n,
                                  ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld],"
                                  "\"data_offsets\":[%llu,%llu]}",
                                  s->name, dt, (long long)s->cols, (unsigned long long)off,
                                  (unsigned long long)(off + bytes));
        off += bytes;
    }
    n += (size_t)snprintf(json + n, cap - n, "}");
    while (n % 8) json[n++] = ' '; /* the format pads headers to 8 bytes */
    FILE *fp = fopen(path, "wb");
    uint64_t hl = n;
    fwrite(&hl, 8, 1, fp);
    fwrite(json, 1, n, fp);
    for (int i = 0; i < f->n; i++) {
        const slice *s = &f->s[i];
        int64_t rows = s->rows ? s->rows : 1;
        uint8_t *buf = malloc((size_t)(rows * s->cols) * es);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < s->cols; k++) {
                int64_t idx = (s->row0 + r) * s->full_cols + s->col0 + k;
                float v = wval(s->full, idx);
                if (c->nan && strstr(s->name, "layers.1.self_attn.q_proj") && idx == 5) v = NAN;
                put(c->dtype, buf + (size_t)(r * s->cols + k) * es, v);
            }
        fwrite(buf, es, (size_t)(rows * s->cols), fp);
        free(buf);
    }
    fclose(fp);
    free(json);
}

static void write_config(const char *dir, const ck *c) {
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    /* The release's fields (spec 1), small sizes. */
    struct {
        const char *k;
        char v[64];
    } kv[] = {
        {"architectures", "[\"Grok1ForCausalLM\"]"},
        {"embedding_multiplier_scale", "8.0"},
        {"output_multiplier_scale", "0.5"},
        {"vocab_size", ""},
        {"hidden_size", ""},
        {"intermediate_size", ""},
        {"moe_intermediate_size", ""},
        {"max_position_embeddings", "4096"},
        {"num_experts_per_tok", ""},
        {"num_local_experts", ""},
        {"residual_moe", "true"},
        {"num_attention_heads", ""},
        {"num_key_value_heads", ""},
        {"num_hidden_layers", ""},
        {"head_dim", ""},
        {"rms_norm_eps", "1e-05"},
        {"final_logit_softcapping", "50"},
        {"attn_logit_softcapping", "30.0"},
        {"router_logit_softcapping", "30.0"},
        {"rope_theta", "208533496"},
        {"attn_temperature_len", "1024"},
        {"sliding_window_size", "-1"},
        {"global_attn_every_n", "1"},
        {"model_type", "\"git\""},
        {"torch_dtype", "\"bfloat16\""},
        {"rope_type", "\"original\""},
        {"original_max_position_embeddings", "8192"},
        {"scaling_factor", "16.0"},
        {"extrapolation_factor", "1.0"},
        {"attn_factor", "1.0"},
        {"beta_fast", "8"},
        {"beta_slow", "1"},
        {"tie_word_embeddings", ""},
    };
    int nkv = sizeof kv / sizeof kv[0];
    for (int i = 0; i < nkv; i++) {
        int v = -1;
        if (!strcmp(kv[i].k, "vocab_size")) v = c->n_vocab;
        if (!strcmp(kv[i].k, "hidden_size")) v = c->d;
        if (!strcmp(kv[i].k, "intermediate_size")) v = c->n_ff;
        if (!strcmp(kv[i].k, "moe_intermediate_size")) v = c->n_ff_exp;
        if (!strcmp(kv[i].k, "num_experts_per_tok")) v = c->n_used;
        if (!strcmp(kv[i].k, "num_local_experts")) v = c->n_expert;
        if (!strcmp(kv[i].k, "num_attention_heads"))
            v = c->cfg_n_head_override ? c->cfg_n_head_override : c->n_head;
        if (!strcmp(kv[i].k, "num_key_value_heads")) v = c->n_head_kv;
        if (!strcmp(kv[i].k, "num_hidden_layers")) v = c->n_layer;
        if (!strcmp(kv[i].k, "head_dim")) v = c->head_dim;
        if (v >= 0) snprintf(kv[i].v, sizeof kv[i].v, "%d", v);
        if (!strcmp(kv[i].k, "tie_word_embeddings"))
            snprintf(kv[i].v, sizeof kv[i].v, "%s", c->tied ? "true" : "false");
    }
    fprintf(f, "{\n");
    bool first = true;
    for (int i = 0; i < nkv; i++) {
        if (c->omit_field && !strcmp(c->omit_field, kv[i].k)) continue;
        fprintf(f, "%s  \"%s\": %s", first ? "" : ",\n", kv[i].k, kv[i].v);
        first = false;
    }
    fprintf(f, "%s\n}\n", c->extra_json ? c->extra_json : "");
    fclose(f);
}

static void write_tokenizer(const char *dir, const ck *c) {
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer.tok.json", dir);
    FILE *f = fopen(path, "w");
    /* Three specials (spec 7.2), the 256 single bytes, then byte pairs up to
     * vocab_size (n_vocab >= 259). */
    fprintf(f, "{\"regular_tokens\":[");
    for (int i = 3; i < c->n_vocab; i++) {
        int k = i - 3;
        if (k < 256)
            fprintf(f, "%s{\"token\":%d,\"bytes\":[%d]}", i > 3 ? "," : "", i, k);
        else
            fprintf(f, ",{\"token\":%d,\"bytes\":[%d,%d]}", i, 'a' + (k - 256) / 26,
                    'a' + (k - 256) % 26);
    }
    fprintf(f, "],\"special_tokens\":[{\"token\":0,\"bytes\":[60,124,112,97,100,124,62]},"
               "{\"token\":1,\"bytes\":[60,124,115,101,112,97,114,97,116,111,114,124,62]},"
               "{\"token\":2,\"bytes\":[60,124,101,111,115,124,62]}],\"word_split\":\"V1\"}");
    fclose(f);
}

static void set_fname(shardf *f, const char *fname) {
    snprintf(f->fname, sizeof f->fname, "%s", fname);
    f->n = 0;
}

/* Writes a whole checkpoint into dir (created). */
static void write_checkpoint(const char *dir, const ck *c) {
    mkdir(dir, 0755);
    write_config(dir, c);
    write_tokenizer(dir, c);
    int64_t d = c->d, qd = (int64_t)c->n_head * c->head_dim,
            kvd = (int64_t)c->n_head_kv * c->head_dim;
    static shardf f; /* large: keep off the stack */
    char nm[160], fn[128];
    const char *pre = "pytorch_model";
    struct {
        int num;
        const char *what;
        int64_t rows, cols;
    } common[] = {
        {3, "mlp.gate_proj", c->n_ff, d}, {4, "mlp.down_proj", d, c->n_ff},
        {5, "mlp.up_proj", c->n_ff, d},   {9, "self_attn.k_proj", kvd, d},
        {10, "self_attn.o_proj", d, qd},  {11, "self_attn.q_proj", qd, d},
        {12, "self_attn.v_proj", kvd, d}, {13, "pre_attn_norm", 0, d},
        {14, "post_attn_norm", 0, d},     {15, "pre_moe_norm", 0, d},
        {16, "post_moe_norm", 0, d},      {17, "block_sparse_moe.gate", c->n_expert, d},
    };
    if (c->unsharded) set_fname(&f, "model.safetensors");

    if (!c->unsharded) set_fname(&f, "pytorch_model-00000-TP-common.safetensors");
    add_slice(&f, "model.embed_tokens.weight", c->n_vocab, d);
    if (!c->unsharded) write_shard(dir, &f, c);
    if (!c->tied) {
        if (!c->unsharded) set_fname(&f, "pytorch_model-00001-TP-common.safetensors");
        add_slice(&f, "lm_head.weight", c->n_vocab, d);
        if (!c->unsharded) write_shard(dir, &f, c);
    }
    if (!c->unsharded) set_fname(&f, "pytorch_model-00002-TP-common.safetensors");
    add_slice(&f, "model.norm.weight", 0, d);
    if (c->bad_dtype) f.s[f.n - 1].dtype_str = c->bad_dtype;
    if (!c->unsharded) write_shard(dir, &f, c);
    for (size_t k = 0; k < sizeof common / sizeof common[0]; k++) {
        if (!c->unsharded) {
            snprintf(fn, sizeof fn, "%s-%05d-TP-common.safetensors", pre, common[k].num);
            set_fname(&f, fn);
        }
        for (int l = 0; l < c->n_layer; l++) {
            snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, common[k].what);
            add_slice(&f, nm, common[k].rows, common[k].cols);
        }
        if (common[k].num == 17 && c->extra_tensor)
            add_slice(&f, "model.layers.0.block_sparse_moe.bias", 0, d);
        if (common[k].num == 17 && c->dup_tensor) add_slice(&f, "model.norm.weight", 0, d);
        if (!c->unsharded) write_shard(dir, &f, c);
    }
    /* Experts: w1 (file 6) and w3 (file 8) [F, d] cut along rows, w2 (file 7)
     * [d, F] cut along columns; rank r holds slice r. */
    const char *ws[3] = {"w1", "w2", "w3"};
    int R = c->unsharded ? 1 : c->n_ranks;
    for (int w = 0; w < 3; w++)
        for (int r = 0; r < R; r++) {
            if (!c->unsharded) {
                snprintf(fn, sizeof fn, "%s-%05d-TP-%03d.safetensors", pre, 6 + w, r);
                set_fname(&f, fn);
            }
            int64_t part = c->n_ff_exp / R;
            for (int l = 0; l < c->n_layer; l++)
                for (int e = 0; e < c->n_expert; e++) {
                    snprintf(nm, sizeof nm, "model.layers.%d.block_sparse_moe.experts.%d.%s.weight",
                             l, e, ws[w]);
                    slice *s = &f.s[f.n];
                    if (w == 1) {
                        add_slice(&f, nm, d, part);
                        s->full_cols = c->n_ff_exp;
                        s->col0 = r * part;
                    } else {
                        add_slice(&f, nm, part, d);
                        s->row0 = r * part;
                        if (w == 0 && l == 0 && r == c->shrink_rank) s->rows /= 2;
                    }
                }
            if (!c->unsharded) write_shard(dir, &f, c);
        }
    if (c->unsharded) write_shard(dir, &f, c);
}

/* ------------------------------------------------------------- helpers --- */

static char root[256];

static const char *path_in(const char *sub, char *buf) {
    snprintf(buf, 512, "%s/%s", root, sub);
    return buf;
}

static void rm_rf(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[1024];
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

/* Number of entries in a folder (0 when it is empty or missing). */
static int n_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n;
}

static gk_convert_params quiet_params(gk_dtype type) {
    gk_convert_params p = gk_convert_default_params();
    p.policy.type = type;
    p.out.n_threads = 2;
    return p;
}

/* Converts ck into a fresh checkpoint folder; returns gk_convert's status. */
static int convert_ck(const ck *c, const gk_convert_params *p, const char *out, gk_err *err) {
    char dir[512];
    path_in("ck", dir);
    rm_rf(dir);
    write_checkpoint(dir, c);
    return gk_convert(dir, out, p, NULL, err);
}

/* A conversion that must fail with `expect` and leave the output folder empty. */
static void expect_fail(const char *what, const ck *c, const gk_convert_params *p,
                        const char *expect) {
    char outdir[512], out[600];
    path_in("out", outdir);
    rm_rf(outdir);
    mkdir(outdir, 0755);
    snprintf(out, sizeof out, "%s/model.gguf", outdir);
    gk_err err = {{0}};
    int rc = convert_ck(c, p, out, &err);
    CHECK_MSG(rc == -1, "%s: conversion succeeded", what);
    CHECK_MSG(strstr(err.msg, expect) != NULL, "%s: '%s' lacks '%s'", what, err.msg, expect);
    CHECK_MSG(n_entries(outdir) == 0, "%s: %d file(s) left in the output folder", what,
              n_entries(outdir));
}

/* ------------------------------------------------------ expected output --- */

/* The unsharded source tensor behind GGUF tensor `gname`: its checkpoint name
 * for expert e (or -1), and its torch shape. */
static bool source_of(const ck *c, const char *gname, int e, char *hf, int64_t *rows,
                      int64_t *cols) {
    int l;
    char what[64];
    int64_t d = c->d, qd = (int64_t)c->n_head * c->head_dim,
            kvd = (int64_t)c->n_head_kv * c->head_dim;
    if (!strcmp(gname, "token_embd.weight")) {
        sprintf(hf, "model.embed_tokens.weight");
        *rows = c->n_vocab, *cols = d;
        return true;
    }
    if (!strcmp(gname, "output.weight")) {
        sprintf(hf, "lm_head.weight");
        *rows = c->n_vocab, *cols = d;
        return true;
    }
    if (!strcmp(gname, "output_norm.weight")) {
        sprintf(hf, "model.norm.weight");
        *rows = 1, *cols = d;
        return true;
    }
    if (sscanf(gname, "blk.%d.%63[a-z_].weight", &l, what) != 2) return false;
    static const struct {
        const char *g, *h;
    } map[] = {{"attn_norm", "pre_attn_norm"},
               {"attn_q", "self_attn.q_proj"},
               {"attn_k", "self_attn.k_proj"},
               {"attn_v", "self_attn.v_proj"},
               {"attn_output", "self_attn.o_proj"},
               {"attn_output_norm", "post_attn_norm"},
               {"ffn_norm", "pre_moe_norm"},
               {"ffn_gate_inp", "block_sparse_moe.gate"},
               {"ffn_gate", "mlp.gate_proj"},
               {"ffn_up", "mlp.up_proj"},
               {"ffn_down", "mlp.down_proj"},
               {"post_ffw_norm", "post_moe_norm"},
               {"ffn_gate_exps", "w1"},
               {"ffn_down_exps", "w2"},
               {"ffn_up_exps", "w3"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(map[i].g, what)) continue;
        if (strstr(what, "_exps")) {
            sprintf(hf, "model.layers.%d.block_sparse_moe.experts.%d.%s.weight", l, e, map[i].h);
            bool down = !strcmp(map[i].h, "w2");
            *rows = down ? d : c->n_ff_exp;
            *cols = down ? c->n_ff_exp : d;
        } else {
            sprintf(hf, "model.layers.%d.%s.weight", l, map[i].h);
            *rows = 1, *cols = d;
            if (!strcmp(what, "attn_q")) *rows = qd;
            if (!strcmp(what, "attn_k") || !strcmp(what, "attn_v")) *rows = kvd;
            if (!strcmp(what, "attn_output")) *rows = d, *cols = qd;
            if (!strcmp(what, "ffn_gate_inp")) *rows = c->n_expert;
            if (!strcmp(what, "ffn_gate") || !strcmp(what, "ffn_up")) *rows = c->n_ff;
            if (!strcmp(what, "ffn_down")) *cols = c->n_ff;
            if (!strcmp(what, "ffn_down")) *rows = d;
        }
        return true;
    }
    return false;
}

/* Every tensor of the output equals the unsharded weights in its type. Returns
 * the number of tensors checked. */
static int check_output(const char *out, const ck *c, gk_dtype type, bool embd_kept,
                        const char *keep_prefix) {
    gk_err err;
    gk_gguf *g = gk_gguf_open(out, &err);
    CHECK_MSG(g != NULL, "%s", err.msg);
    if (!g) return 0;
    int64_t n_expected = 1 + 1 + (c->tied ? 0 : 1) + (int64_t)c->n_layer * 15;
    CHECK_MSG(gk_gguf_n_tensors(g) == n_expected, "%lld tensors, expected %lld",
              (long long)gk_gguf_n_tensors(g), (long long)n_expected);
    int checked = 0;
    for (int64_t i = 0; i < gk_gguf_n_tensors(g); i++) {
        const gk_gguf_tensor *t = gk_gguf_tensor_at(g, i);
        bool exps = strstr(t->name, "_exps") != NULL;
        bool small = t->n_dims == 1 || strstr(t->name, "ffn_gate_inp");
        bool kept = (embd_kept && !strcmp(t->name, "token_embd.weight")) ||
                    (keep_prefix && strstr(t->name, keep_prefix));
        gk_dtype src = !strcmp(c->dtype, "F32")   ? GK_TYPE_F32
                       : !strcmp(c->dtype, "F16") ? GK_TYPE_F16
                                                  : GK_TYPE_BF16;
        gk_dtype want = small ? GK_TYPE_F32 : kept ? src : type;
        CHECK_MSG(t->type == want, "%s: type %s, expected %s", t->name, gk_type_name(t->type),
                  gk_type_name(want));
        int n_exp = exps ? c->n_expert : 1;
        char hf[160];
        int64_t rows, cols;
        if (!source_of(c, t->name, 0, hf, &rows, &cols)) {
            CHECK_MSG(0, "unexpected tensor %s", t->name);
            continue;
        }
        CHECK_MSG(t->ne[0] == cols && t->ne[1] == (t->n_dims == 1 ? 1 : rows) &&
                      t->ne[2] == n_exp &&
                      t->n_dims == (uint32_t)(exps       ? 3
                                              : rows > 1 ? 2
                                                         : 1),
                  "%s: shape {%lld, %lld, %lld}", t->name, (long long)t->ne[0], (long long)t->ne[1],
                  (long long)t->ne[2]);
        size_t row_bytes = gk_row_size(t->type, cols);
        uint8_t *expect = malloc(row_bytes);
        float *f = malloc((size_t)cols * sizeof *f);
        bool same = true;
        for (int e = 0; e < n_exp && same; e++) {
            source_of(c, t->name, e, hf, &rows, &cols);
            for (int64_t r = 0; r < rows && same; r++) {
                for (int64_t k = 0; k < cols; k++) f[k] = stored(c->dtype, wval(hf, r * cols + k));
                gk_type_traits_of(t->type)->from_float(f, expect, cols);
                const uint8_t *got = (const uint8_t *)t->data + (size_t)(e * rows + r) * row_bytes;
                same = memcmp(got, expect, row_bytes) == 0;
                CHECK_MSG(same, "%s: expert %d row %lld differs", t->name, e, (long long)r);
            }
        }
        free(expect);
        free(f);
        checked++;
    }
    gk_gguf_close(g);
    return checked;
}

/* ---------------------------------------------------------------- tests --- */

static void test_convert_bf16(void) {
    ck c = ck_default();
    gk_convert_params p = quiet_params(GK_TYPE_BF16);
    char out[512], dir[512];
    path_in("bf16.gguf", out);
    gk_convert_info info;
    gk_err err;
    path_in("ck", dir);
    rm_rf(dir);
    write_checkpoint(dir, &c);
    int rc = gk_convert(dir, out, &p, &info, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc) return;
    CHECK(info.n_files == 15 + 3 * 8 && info.n_ranks == 8);
    CHECK(info.n_tensors == 3 + 2 * 15);
    CHECK(check_output(out, &c, GK_TYPE_BF16, true, NULL) == 33);

    /* Metadata: the release's hyper-parameters, plain RoPE, no rope.scaling keys. */
    gk_gguf *g = gk_gguf_open(out, &err);
    gk_str s;
    uint32_t u;
    float f;
    CHECK(gk_gguf_get_str(g, "general.architecture", &s, &err) == 1 && s.len == 4 &&
          !memcmp(s.ptr, "grok", 4));
    CHECK(gk_gguf_get_str(g, "general.name", &s, &err) == 1 && s.len == 2 &&
          !memcmp(s.ptr, "ck", 2));
    struct {
        const char *k;
        uint32_t v;
    } u32s[] = {{"grok.context_length", 4096},
                {"grok.embedding_length", 64},
                {"grok.block_count", 2},
                {"grok.feed_forward_length", 96},
                {"grok.expert_feed_forward_length", 64},
                {"grok.attention.head_count", 4},
                {"grok.attention.head_count_kv", 2},
                {"grok.attention.key_length", 16},
                {"grok.attention.value_length", 16},
                {"grok.rope.dimension_count", 16},
                {"grok.expert_count", 8},
                {"grok.expert_used_count", 2},
                {"grok.attention.temperature_length", 1024},
                {"general.file_type", 32}};
    for (size_t i = 0; i < sizeof u32s / sizeof u32s[0]; i++)
        CHECK_MSG(gk_gguf_get_u32(g, u32s[i].k, &u, &err) == 1 && u == u32s[i].v, "%s", u32s[i].k);
    struct {
        const char *k;
        float v;
    } f32s[] = {
        {"grok.rope.freq_base", 208533496.0f}, {"grok.attention.layer_norm_rms_epsilon", 1e-5f},
        {"grok.attn_logit_softcapping", 30},   {"grok.router_logit_softcapping", 30},
        {"grok.final_logit_softcapping", 50},  {"grok.attention.output_scale", 0.25f},
        {"grok.embedding_scale", 8},           {"grok.logit_scale", 0.5f}};
    for (size_t i = 0; i < sizeof f32s / sizeof f32s[0]; i++)
        CHECK_MSG(gk_gguf_get_f32(g, f32s[i].k, &f, &err) == 1 && f == f32s[i].v, "%s", f32s[i].k);
    for (int64_t i = 0; i < gk_gguf_n_kv(g); i++)
        CHECK_MSG(!strstr(gk_gguf_kv_at(g, i)->key, "rope.scaling"), "%s",
                  gk_gguf_kv_at(g, i)->key);
    CHECK(gk_gguf_find(g, "general.quantization_version") == NULL);
    /* The tokenizer of tokenizer.tok.json, as llama.cpp's Grok-2 files carry it. */
    CHECK(gk_gguf_get_str(g, "tokenizer.ggml.model", &s, &err) == 1 && s.len == 4 &&
          !memcmp(s.ptr, "gpt2", 4));
    CHECK(gk_gguf_get_str(g, "tokenizer.ggml.pre", &s, &err) == 1 && s.len == 6 &&
          !memcmp(s.ptr, "grok-2", 6));
    gk_gguf_array toks;
    CHECK(gk_gguf_get_arr(g, "tokenizer.ggml.tokens", GK_GGUF_STRING, &toks, &err) == 1 &&
          toks.n == (uint64_t)c.n_vocab);
    gk_gguf_close(g);
    /* Nothing but the output beside it. */
    CHECK(n_entries(root) == 2); /* ck/ and bf16.gguf */

    /* The same tensors from an unsharded folder (whole experts, one file). */
    ck un = c;
    un.unsharded = true;
    path_in("unsharded.gguf", out);
    rc = convert_ck(&un, &p, out, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc == 0) CHECK(check_output(out, &un, GK_TYPE_BF16, true, NULL) == 33);
    unlink(out);
}

static void test_convert_types(void) {
    gk_err err;
    char out[512], q4[512];
    /* q8_0 from bf16; f16 and f32 sources; a tied model; --keep; the embedding. */
    struct {
        gk_dtype type;
        const char *src;
        bool tied, quant_embd;
        const char *keep;
        int n_ranks;
    } cases[] = {
        {GK_TYPE_Q8_0, "BF16", false, false, NULL, 8},
        {GK_TYPE_Q4_0, "BF16", false, true, NULL, 8},
        {GK_TYPE_F16, "F32", true, false, NULL, 4},
        {GK_TYPE_F32, "F16", false, false, NULL, 2},
        {GK_TYPE_Q4_0, "BF16", false, false, "attn_", 16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck c = ck_default();
        c.dtype = cases[i].src;
        c.tied = cases[i].tied;
        c.n_ranks = cases[i].n_ranks;
        gk_convert_params p = quiet_params(cases[i].type);
        p.policy.quantize_embedding = cases[i].quant_embd;
        const char *pat = "blk.*.attn_*";
        if (cases[i].keep) {
            p.policy.keep = &pat;
            p.policy.n_keep = 1;
        }
        path_in("t.gguf", out);
        int rc = convert_ck(&c, &p, out, &err);
        CHECK_MSG(rc == 0, "case %zu: %s", i, err.msg);
        if (rc == 0) {
            int n = check_output(out, &c, cases[i].type, !cases[i].quant_embd, cases[i].keep);
            CHECK_MSG(n == (c.tied ? 32 : 33), "case %zu: %d tensors", i, n);
        }
        unlink(out);
    }

    /* grok quantize bf16 -> q4_0 gives the bytes convert --type q4_0 gives. */
    ck c = ck_default();
    gk_convert_params p = quiet_params(GK_TYPE_BF16);
    path_in("bf16.gguf", out);
    path_in("q4.gguf", q4);
    CHECK(convert_ck(&c, &p, out, &err) == 0);
    gk_quantize_params qp = gk_quantize_default_params();
    qp.policy.type = GK_TYPE_Q4_0;
    qp.out.n_threads = 2;
    int rc = gk_quantize(out, q4, &qp, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc == 0) CHECK(check_output(q4, &c, GK_TYPE_Q4_0, true, NULL) == 33);
    gk_gguf *a = gk_gguf_open(q4, &err);
    gk_gguf *b = gk_gguf_open(out, &err);
    if (a && b) { /* every key/value copied, the file type updated */
        uint32_t ft = 0, qv = 0;
        CHECK(gk_gguf_n_kv(a) == gk_gguf_n_kv(b) + 1);
        CHECK(gk_gguf_get_u32(a, "general.file_type", &ft, &err) == 1 && ft == 2);
        CHECK(gk_gguf_get_u32(a, "general.quantization_version", &qv, &err) == 1 && qv == 2);
    }
    gk_gguf_close(a);
    gk_gguf_close(b);

    /* A llama.cpp mix (q4_k_m) from convert equals the same mix from quantize:
     * convert reads the shape the mix consults from config.json, quantize from
     * the GGUF keys. Rows of 256 so the k-quants apply. */
    {
        ck w = ck_default();
        w.d = 256, w.head_dim = 64, w.n_ff = 512, w.n_ff_exp = 256;
        char wb[512], wm[512], wq[512];
        path_in("w-bf16.gguf", wb);
        path_in("w-mix.gguf", wm);
        path_in("w-q.gguf", wq);
        gk_convert_params pm = quiet_params(GK_TYPE_Q4_K);
        pm.policy.mix = GK_MIX_Q4_K_M;
        gk_convert_params pb = quiet_params(GK_TYPE_BF16);
        CHECK_MSG(convert_ck(&w, &pb, wb, &err) == 0, "%s", err.msg);
        CHECK_MSG(convert_ck(&w, &pm, wm, &err) == 0, "%s", err.msg);
        gk_quantize_params mq = gk_quantize_default_params();
        mq.policy.mix = GK_MIX_Q4_K_M;
        mq.policy.type = GK_TYPE_Q4_K;
        mq.out.n_threads = 2;
        CHECK_MSG(gk_quantize(wb, wq, &mq, &err) == 0, "%s", err.msg);
        gk_gguf *x = gk_gguf_open(wm, &err), *z = gk_gguf_open(wq, &err);
        if (x && z) {
            CHECK(gk_gguf_n_tensors(x) == gk_gguf_n_tensors(z));
            for (int64_t i = 0; i < gk_gguf_n_tensors(x); i++) {
                const gk_gguf_tensor *tx = gk_gguf_tensor_at(x, i);
                const gk_gguf_tensor *tz = gk_gguf_find_tensor(z, tx->name);
                CHECK_MSG(tz && tz->type == tx->type && tz->nbytes == tx->nbytes &&
                              memcmp(tz->data, tx->data, tx->nbytes) == 0,
                          "%s differs", tx->name);
            }
            /* llama.cpp's rules for 8 experts and 2 layers */
            CHECK(gk_gguf_find_tensor(x, "blk.0.attn_k.weight")->type == GK_TYPE_Q8_0);
            CHECK(gk_gguf_find_tensor(x, "blk.0.attn_q.weight")->type == GK_TYPE_Q4_K);
            CHECK(gk_gguf_find_tensor(x, "blk.0.attn_output.weight")->type == GK_TYPE_Q5_K);
            CHECK(gk_gguf_find_tensor(x, "blk.0.ffn_down_exps.weight")->type == GK_TYPE_Q4_K);
            CHECK(gk_gguf_find_tensor(x, "blk.1.ffn_down_exps.weight")->type == GK_TYPE_Q6_K);
            CHECK(gk_gguf_find_tensor(x, "output.weight")->type == GK_TYPE_Q6_K);
            uint32_t ft = 0;
            CHECK(gk_gguf_get_u32(x, "general.file_type", &ft, &err) == 1 && ft == 15);
        }
        gk_gguf_close(x);
        gk_gguf_close(z);
        unlink(wb);
        unlink(wm);
        unlink(wq);
    }

    /* Quantize's own checks. */
    char q8[512];
    path_in("q8.gguf", q8);
    qp.policy.type = GK_TYPE_Q8_0;
    CHECK(gk_quantize(q4, q8, &qp, &err) == -1);
    CHECK_ERR_HAS(err.msg, "already q4_0");
    CHECK(access(q8, F_OK) != 0);
    qp.allow_requantize = true;
    qp.policy.type = GK_TYPE_Q8_0;
    CHECK(gk_quantize(q4, q8, &qp, &err) == 0);
    qp.policy.type = GK_TYPE_TQ1_0;
    CHECK(gk_quantize(out, q8, &qp, &err) == -1);
    CHECK_ERR_HAS(err.msg, "cannot write type tq1_0");
    qp.policy.type = GK_TYPE_Q8_0;
    CHECK(gk_quantize(out, out, &qp, &err) == -1);
    CHECK_ERR_HAS(err.msg, "overwrite the input");
    qp.out.free_disk_override = 4096;
    unlink(q8);
    CHECK(gk_quantize(out, q8, &qp, &err) == -1);
    CHECK_ERR_HAS(err.msg, "not enough free disk space");
    CHECK(access(q8, F_OK) != 0);
    unlink(out);
    unlink(q4);
}

static volatile sig_atomic_t stop_now = 1;

static void test_failures(void) {
    gk_convert_params p = quiet_params(GK_TYPE_BF16);
    ck c;
    char dir[512], f[600];

    c = ck_default();
    c.skip_file = "pytorch_model-00007-TP-003.safetensors";
    expect_fail("missing shard", &c, &p, "missing shard pytorch_model-00007-TP-003.safetensors");

    c = ck_default();
    c.n_ranks = 7; /* TP-007 of every group missing: only the shapes tell */
    c.n_ff_exp = 56;
    {
        /* slices of 8 rows, as if cut 8 ways from 64 */
        path_in("ck", dir);
        rm_rf(dir);
        write_checkpoint(dir, &c);
        FILE *cf = NULL;
        snprintf(f, sizeof f, "%s/config.json", dir);
        char *txt = malloc(1 << 16);
        cf = fopen(f, "r");
        size_t n = fread(txt, 1, (1 << 16) - 1, cf);
        fclose(cf);
        txt[n] = 0;
        char *at = strstr(txt, "\"moe_intermediate_size\": 56");
        memcpy(at, "\"moe_intermediate_size\": 64", 27);
        cf = fopen(f, "w");
        fputs(txt, cf);
        fclose(cf);
        free(txt);
        char outdir[512], out[600];
        path_in("out", outdir);
        rm_rf(outdir);
        mkdir(outdir, 0755);
        snprintf(out, sizeof out, "%s/m.gguf", outdir);
        gk_err err;
        CHECK(gk_convert(dir, out, &p, NULL, &err) == -1);
        CHECK_ERR_HAS(err.msg, "needs 8 slices: missing shards");
        CHECK(n_entries(outdir) == 0);
    }

    c = ck_default();
    c.n_ranks = 9; /* 9 slices of 8 rows: one extra rank in every group */
    c.n_ff_exp = 72;
    {
        path_in("ck", dir);
        rm_rf(dir);
        write_checkpoint(dir, &c);
        snprintf(f, sizeof f, "%s/config.json", dir);
        FILE *cf = fopen(f, "r");
        char *txt = malloc(1 << 16);
        size_t n = fread(txt, 1, (1 << 16) - 1, cf);
        fclose(cf);
        txt[n] = 0;
        memcpy(strstr(txt, "\"moe_intermediate_size\": 72"), "\"moe_intermediate_size\": 64", 27);
        cf = fopen(f, "w");
        fputs(txt, cf);
        fclose(cf);
        free(txt);
        gk_err err;
        path_in("x.gguf", f);
        CHECK(gk_convert(dir, f, &p, NULL, &err) == -1);
        CHECK_ERR_HAS(err.msg, "needs 8 slices: extra shards");
        CHECK(access(f, F_OK) != 0);
    }

    /* One extra file in one group. */
    {
        c = ck_default();
        path_in("ck", dir);
        rm_rf(dir);
        write_checkpoint(dir, &c);
        char src[600], dst[600], cmd[1400];
        snprintf(src, sizeof src, "%s/pytorch_model-00006-TP-007.safetensors", dir);
        snprintf(dst, sizeof dst, "%s/pytorch_model-00006-TP-008.safetensors", dir);
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", src, dst);
        CHECK(system(cmd) == 0);
        gk_err err;
        path_in("x.gguf", f);
        CHECK(gk_convert(dir, f, &p, NULL, &err) == -1);
        CHECK_ERR_HAS(err.msg, "extra shard pytorch_model-00006-TP-008.safetensors");
        CHECK(access(f, F_OK) != 0);
        /* A stray file beside the shards. */
        unlink(dst);
        snprintf(dst, sizeof dst, "%s/model-00001-of-00002.safetensors", dir);
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", src, dst);
        CHECK(system(cmd) == 0);
        CHECK(gk_convert(dir, f, &p, NULL, &err) == -1);
        CHECK_ERR_HAS(err.msg, "unexpected file beside the -TP- shards");
        unlink(dst);
        /* A bad rank name. */
        snprintf(dst, sizeof dst, "%s/pytorch_model-00006-TP-x1.safetensors", dir);
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", src, dst);
        CHECK(system(cmd) == 0);
        CHECK(gk_convert(dir, f, &p, NULL, &err) == -1);
        CHECK_ERR_HAS(err.msg, "-TP-NNN.safetensors");
        unlink(dst);
    }

    c = ck_default();
    c.shrink_rank = 3;
    expect_fail("shards disagree", &c, &p, "shapes disagree between shards");

    c = ck_default();
    c.cfg_n_head_override = 8;
    expect_fail("shape vs config", &c, &p, "has shape [64, 64], config.json implies [128, 64]");

    c = ck_default();
    c.bad_dtype = "F8_E4M3";
    expect_fail("unsupported dtype", &c, &p, "dtype F8_E4M3 is not supported");
    c.bad_dtype = "X17";
    expect_fail("unknown dtype", &c, &p, "unknown dtype 'X17'");

    c = ck_default();
    c.extra_tensor = true;
    expect_fail("extra tensor", &c, &p, "unexpected tensor 'model.layers.0.block_sparse_moe.bias'");
    c = ck_default();
    c.dup_tensor = true;
    expect_fail("duplicate", &c, &p, "tensor 'model.norm.weight' appears in both");
    c = ck_default();
    c.skip_file = "pytorch_model-00012-TP-common.safetensors";
    expect_fail("missing common", &c, &p,
                "missing tensor 'model.layers.0.self_attn.v_proj.weight'");

    c = ck_default();
    c.omit_field = "hidden_size";
    expect_fail("config field", &c, &p, "field \"hidden_size\" is missing");
    c = ck_default();
    c.extra_json = ",\n  \"rope_scaling\": {\"rope_type\": \"yarn\"}";
    c.omit_field = "rope_type";
    expect_fail("rope", &c, &p, "rope_type \"yarn\" is not supported");
    c = ck_default();
    c.omit_field = "architectures";
    c.extra_json = ",\n  \"architectures\": [\"LlamaForCausalLM\"]";
    expect_fail("arch", &c, &p, "is not a Grok model");

    /* Truncated and corrupt files, a missing config and tokenizer. */
    c = ck_default();
    path_in("ck", dir);
    rm_rf(dir);
    write_checkpoint(dir, &c);
    gk_err err;
    char out[512];
    path_in("x.gguf", out);
    snprintf(f, sizeof f, "%s/pytorch_model-00011-TP-common.safetensors", dir);
    struct stat st;
    stat(f, &st);
    CHECK(truncate(f, st.st_size - 100) == 0);
    CHECK(gk_convert(dir, out, &p, NULL, &err) == -1);
    CHECK_ERR_HAS(err.msg, "truncated file");
    CHECK_ERR_HAS(err.msg, "pytorch_model-00011-TP-common.safetensors");
    CHECK(access(out, F_OK) != 0);
    FILE *fp = fopen(f, "r+b");
    fseek(fp, 8, SEEK_SET);
    fputs("[", fp);
    fclose(fp);
    CHECK(gk_convert(dir, out, &p, NULL, &err) == -1);
    CHECK_ERR_HAS(err.msg, "pytorch_model-00011-TP-common.safetensors: header");
    snprintf(f, sizeof f, "%s/tokenizer.tok.json", dir);
    fp = fopen(f, "w");
    fputs("{\"regular_tokens\":[{\"token\":0,\"bytes\":[65]}],\"word_split\":\"V1\"}", fp);
    fclose(fp);
    CHECK(gk_convert(dir, out, &p, NULL, &err) == -1);
    CHECK_ERR_HAS(err.msg, "tokenizer.tok.json: byte 0x00 has no regular token");
    unlink(f);
    CHECK(gk_convert(dir, out, &p, NULL, &err) == -1);
    CHECK_ERR_HAS(err.msg, "tokenizer.tok.json: cannot open");
    snprintf(f, sizeof f, "%s/config.json", dir);
    unlink(f);
    CHECK(gk_convert(dir, out, &p, NULL, &err) == -1);
    CHECK_ERR_HAS(err.msg, "config.json: cannot open");
    CHECK(access(out, F_OK) != 0);

    /* Too little disk, checked before writing. */
    c = ck_default();
    gk_convert_params small = p;
    small.out.free_disk_override = 100000;
    expect_fail("disk space", &c, &small, "not enough free disk space");

    /* Failures in the middle of writing: NaN data, interruption, a full disk. */
    c = ck_default();
    c.nan = true;
    expect_fail("nan", &c, &p, "blk.1.attn_q.weight: element 5 of row 0 is NaN");
    c = ck_default();
    gk_convert_params cancel = p;
    cancel.out.cancel = &stop_now;
    expect_fail("interrupt", &c, &cancel, "interrupted");

    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 60000; /* the output is ~200 KB */
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
        expect_fail("disk full", &c, &p, "");
        setrlimit(RLIMIT_FSIZE, &old);
    }
    signal(SIGXFSZ, prev);

    /* A folder without shards. */
    path_in("empty", dir);
    rm_rf(dir);
    mkdir(dir, 0755);
    write_config(dir, &c);
    write_tokenizer(dir, &c);
    CHECK(gk_convert(dir, out, &p, NULL, &err) == -1);
    CHECK_ERR_HAS(err.msg, "no *.safetensors files");
    rm_rf(dir);
}

int main(void) {
    snprintf(root, sizeof root, "%s", gk_test_tmp_dir());
    gk_dtype_init();
    test_convert_bf16();
    test_convert_types();
    test_failures();
    char p[512];
    rm_rf(path_in("ck", p));
    rm_rf(path_in("out", p));
    rmdir(root);
    return gk_test_done();
}
