/*
 * convert.c - official Grok checkpoint (sharded safetensors) -> GGUF. See
 * convert.h for the steps.
 *
 * Layout of the code, in the order a conversion runs:
 *   config   config.json -> struct cfg, with every field checked (spec 1);
 *   shards   the *.safetensors of the folder, classified as common or rank N,
 *            with missing and extra shards found by name;
 *   index    every tensor of every shard, sorted by (name, rank), duplicates
 *            rejected;
 *   plan     one job per GGUF tensor, each naming its source slices, every
 *            shape and dtype checked against the config; then any tensor no job
 *            uses is an error;
 *   produce  the writer's callback: reads a bounded chunk of rows with pread,
 *            merges expert slices, converts, checksums and streams it out.
 */
#include "format/convert.h"

#include "format/safetensors.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_RANK 4096

/* ------------------------------------------------------------- config --- */

typedef struct cfg {
    int64_t n_embd, n_layer, n_head, n_head_kv, head_dim, n_vocab;
    int64_t n_ff;     /* dense MLP width (intermediate_size) */
    int64_t n_ff_exp; /* expert width (moe_intermediate_size) */
    int64_t n_expert, n_expert_used, n_ctx, temp_len;
    bool residual_moe, tied;
    double rope_theta, eps, emb_scale, logit_scale, attn_scale;
    double attn_cap, router_cap, final_cap;
} cfg;

typedef struct jsrc {
    const cJSON *root;
    const char *path;
} jsrc;

/* A field, or NULL when absent or null. */
static const cJSON *jget(const jsrc *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j->root, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static int cfg_int(const jsrc *j, const char *key, bool required, int64_t def, int64_t lo,
                   int64_t hi, int64_t *out, gk_err *err) {
    const cJSON *v = jget(j, key);
    if (!v) {
        if (required) return gk_fail(err, "%s: field \"%s\" is missing", j->path, key);
        *out = def;
        return 0;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d))
        return gk_fail(err, "%s: field \"%s\" must be a whole number in [%lld, %lld]", j->path, key,
                       (long long)lo, (long long)hi);
    *out = (int64_t)d;
    return 0;
}

static int cfg_num(const jsrc *j, const char *key, bool required, double def, double lo, double hi,
                   double *out, gk_err *err) {
    const cJSON *v = jget(j, key);
    if (!v) {
        if (required) return gk_fail(err, "%s: field \"%s\" is missing", j->path, key);
        *out = def;
        return 0;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= lo && d <= hi))
        return gk_fail(err, "%s: field \"%s\" must be a number in [%g, %g]", j->path, key, lo, hi);
    *out = d;
    return 0;
}

static int cfg_bool(const jsrc *j, const char *key, bool def, bool *out, gk_err *err) {
    const cJSON *v = jget(j, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v))
        return gk_fail(err, "%s: field \"%s\" must be true or false", j->path, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* The release's RoPE is "original" (plain; spec 3.3). Its YaRN-looking fields
 * (scaling_factor, original_max_position_embeddings, ...) only size SGLang's
 * cos/sin cache, so they are read for nothing and written nowhere (Decisions 3). */
static int cfg_rope(const jsrc *j, gk_err *err) {
    const cJSON *type = jget(j, "rope_type");
    const cJSON *rs = jget(j, "rope_scaling");
    if (!type && rs && cJSON_IsObject(rs)) {
        type = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
        if (!type) type = cJSON_GetObjectItemCaseSensitive(rs, "type");
    }
    if (!type || cJSON_IsNull(type)) return 0;
    if (!cJSON_IsString(type))
        return gk_fail(err, "%s: field \"rope_type\" must be a string", j->path);
    const char *t = type->valuestring;
    if (strcmp(t, "original") == 0 || strcmp(t, "default") == 0 || strcmp(t, "none") == 0) return 0;
    return gk_fail(err,
                   "%s: rope_type \"%.40s\" is not supported (only the release's plain RoPE, "
                   "\"original\", is)",
                   j->path, t);
}

static int cfg_arch(const jsrc *j, gk_err *err) {
    const cJSON *a = jget(j, "architectures");
    if (!a) return 0;
    const cJSON *s;
    if (cJSON_IsArray(a)) cJSON_ArrayForEach(s, a) {
            if (cJSON_IsString(s) && (strcmp(s->valuestring, "Grok1ForCausalLM") == 0 ||
                                      strcmp(s->valuestring, "GrokForCausalLM") == 0 ||
                                      strcmp(s->valuestring, "Grok1ModelForCausalLM") == 0))
                return 0;
        }
    char *txt = cJSON_PrintUnformatted(a);
    gk_fail(err, "%s: architectures %.80s is not a Grok model (Grok1ForCausalLM)", j->path,
            txt ? txt : "?");
    free(txt);
    return -1;
}

static int cfg_read(jsrc *j, cfg *c, gk_err *err) {
    const int64_t BIG = (int64_t)1 << 24;
    double head_dim_scale;
    int64_t sliding, every_n;
    if (cfg_arch(j, err) || cfg_rope(j, err) ||
        cfg_int(j, "hidden_size", true, 0, 1, BIG, &c->n_embd, err) ||
        cfg_int(j, "num_hidden_layers", true, 0, 1, 4096, &c->n_layer, err) ||
        cfg_int(j, "num_attention_heads", true, 0, 1, 4096, &c->n_head, err) ||
        cfg_int(j, "num_key_value_heads", false, c->n_head, 1, c->n_head, &c->n_head_kv, err) ||
        cfg_int(j, "head_dim", false, c->n_embd / c->n_head, 2, 1 << 16, &c->head_dim, err) ||
        cfg_int(j, "vocab_size", true, 0, 1, BIG, &c->n_vocab, err) ||
        cfg_int(j, "intermediate_size", true, 0, 1, BIG, &c->n_ff, err) ||
        cfg_int(j, "moe_intermediate_size", false, c->n_ff, 1, BIG, &c->n_ff_exp, err) ||
        cfg_bool(j, "residual_moe", false, &c->residual_moe, err) ||
        cfg_bool(j, "tie_word_embeddings", false, &c->tied, err))
        return -1;
    const char *ne_key = jget(j, "num_local_experts") ? "num_local_experts" : "num_experts";
    if (cfg_int(j, ne_key, true, 0, 1, 1024, &c->n_expert, err) ||
        cfg_int(j, "num_experts_per_tok", true, 0, 1, c->n_expert, &c->n_expert_used, err) ||
        cfg_int(j, "max_position_embeddings", false, 8192, 1, (int64_t)1 << 30, &c->n_ctx, err) ||
        cfg_int(j, "attn_temperature_len", false, 0, -1, (int64_t)1 << 30, &c->temp_len, err) ||
        cfg_int(j, "sliding_window_size", false, -1, -1, (int64_t)1 << 30, &sliding, err) ||
        cfg_int(j, "global_attn_every_n", false, 1, 0, 1 << 20, &every_n, err) ||
        cfg_num(j, "rope_theta", false, 10000, 1, 1e12, &c->rope_theta, err) ||
        cfg_num(j, "rms_norm_eps", false, 1e-5, 0, 1, &c->eps, err) ||
        cfg_num(j, "embedding_multiplier_scale", true, 0, -1e6, 1e6, &c->emb_scale, err) ||
        cfg_num(j, "output_multiplier_scale", true, 0, -1e6, 1e6, &c->logit_scale, err) ||
        cfg_num(j, "attn_logit_softcapping", false, 30, 0, 1e6, &c->attn_cap, err) ||
        cfg_num(j, "router_logit_softcapping", false, 30, 0, 1e6, &c->router_cap, err) ||
        cfg_num(j, "final_logit_softcapping", false, 0, 0, 1e6, &c->final_cap, err))
        return -1;
    head_dim_scale = 1.0 / sqrt((double)c->head_dim);
    if (cfg_num(j, "attn_output_multiplier", false, head_dim_scale, -1e6, 1e6, &c->attn_scale, err))
        return -1;
    if (c->n_head % c->n_head_kv != 0)
        return gk_fail(err,
                       "%s: num_key_value_heads = %lld does not divide num_attention_heads = %lld",
                       j->path, (long long)c->n_head_kv, (long long)c->n_head);
    if (c->head_dim % 2 != 0)
        return gk_fail(err, "%s: head_dim = %lld must be even (RoPE rotates pairs)", j->path,
                       (long long)c->head_dim);
    if (sliding > 0 || every_n > 1)
        return gk_fail(err,
                       "%s: sliding-window attention (sliding_window_size = %lld, "
                       "global_attn_every_n = %lld) is not supported",
                       j->path, (long long)sliding, (long long)every_n);
    return 0;
}

static int load_config(const char *dir, cfg *c, gk_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return gk_fail(err, "%s: cannot open: %s", path, strerror(errno));
    char *text = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && n <= (1 << 20) &&
        fseek(f, 0, SEEK_SET) == 0 && (text = gk_malloc((size_t)n + 1, err)) &&
        fread(text, 1, (size_t)n, f) != (size_t)n) {
        free(text);
        text = NULL;
    }
    fclose(f);
    if (!text) return gk_fail(err, "%s: cannot read (or larger than 1 MiB)", path);
    text[n] = 0;
    cJSON *root = cJSON_ParseWithLength(text, (size_t)n);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return gk_fail(err, "%s: not a JSON object", path);
    }
    jsrc j = {root, path};
    int rc = cfg_read(&j, c, err);
    cJSON_Delete(root);
    return rc;
}

/* ------------------------------------------------------------- shards --- */

typedef struct shard {
    char *fname; /* base name */
    char *group; /* the name before "-TP-": files that differ only in rank */
    int rank;    /* -1: common (stored whole) */
    gk_st_file *st;
} shard;

typedef struct entry {
    const char *name;
    int rank;
    int shard;
    const gk_st_tensor *t;
    bool used;
} entry;

/* One GGUF tensor to write. */
enum { J_PLAIN, J_CAT_ROWS, J_CAT_COLS };

typedef struct cjob {
    struct cctx *ctx;
    int kind;
    char name[64];
    entry **src; /* [n_exp][n_rank] (PLAIN: one) */
    int n_exp, n_rank;
    gk_dtype src_type;
    int64_t src_rows, src_cols; /* of each source (torch [rows, cols]; 1-D: 1 x n) */
    gk_quant_out_tensor *out;
} cjob;

typedef struct cctx {
    const char *dir;
    const gk_convert_params *p;
    cfg c;
    shard *shards;
    int n_shards, n_ranks;
    bool sharded; /* the experts are sliced over -TP-NNN files */
    entry *idx;
    int64_t n_idx;
    cjob *jobs;
    gk_quant_out_tensor *outs;
    int64_t n_jobs, cap_jobs;
    entry **srcs; /* storage for every job's src */
    int64_t n_srcs, cap_srcs;
    /* while writing */
    gk_quant_rows *rows;
    uint8_t *raw, *tmp, *dst;
    size_t raw_cap, tmp_cap, dst_cap;
    uint64_t done, total;
} cctx;

static bool has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

/* "x-TP-common.safetensors" -> -1, "x-TP-007.safetensors" -> 7, else -2 (no TP
 * name); -3 for a -TP- name that is neither. */
static int parse_rank(const char *fname, size_t *group_len) {
    const char *tp = NULL;
    for (const char *p = strstr(fname, "-TP-"); p; p = strstr(p + 1, "-TP-")) tp = p;
    if (!tp) return -2;
    *group_len = (size_t)(tp - fname);
    const char *s = tp + 4;
    if (strcmp(s, "common.safetensors") == 0) return -1;
    int r = 0, nd = 0;
    for (; *s >= '0' && *s <= '9'; s++, nd++) {
        r = r * 10 + (*s - '0');
        if (r >= MAX_RANK) return -3;
    }
    return nd > 0 && strcmp(s, ".safetensors") == 0 ? r : -3;
}

static int cmp_shard(const void *a, const void *b) {
    return strcmp(((const shard *)a)->fname, ((const shard *)b)->fname);
}

static int find_shards(cctx *x, gk_err *err) {
    DIR *d = opendir(x->dir);
    if (!d) return gk_fail(err, "%s: cannot open folder: %s", x->dir, strerror(errno));
    int cap = 0, rc = 0, n_tp = 0, n_plain = 0;
    struct dirent *de;
    while ((de = readdir(d)) && rc == 0) {
        if (!has_suffix(de->d_name, ".safetensors")) continue;
        if (x->n_shards == cap) {
            cap = cap ? 2 * cap : 64;
            shard *s = realloc(x->shards, (size_t)cap * sizeof *s);
            if (!s) {
                rc = gk_fail(err, "out of memory");
                break;
            }
            x->shards = s;
        }
        shard *s = &x->shards[x->n_shards];
        memset(s, 0, sizeof *s);
        size_t glen = 0;
        s->rank = parse_rank(de->d_name, &glen);
        s->fname = strdup(de->d_name);
        s->group = strndup(de->d_name, glen);
        x->n_shards++;
        if (!s->fname || !s->group)
            rc = gk_fail(err, "out of memory");
        else if (s->rank == -3)
            rc = gk_fail(err,
                         "%s/%s: a -TP- file must end in -TP-common.safetensors or -TP-NNN."
                         "safetensors (NNN a rank below %d)",
                         x->dir, s->fname, MAX_RANK);
        if (s->rank == -2)
            n_plain++;
        else
            n_tp++;
    }
    closedir(d);
    if (rc) return rc;
    if (x->n_shards == 0) return gk_fail(err, "%s: no *.safetensors files", x->dir);
    qsort(x->shards, (size_t)x->n_shards, sizeof *x->shards, cmp_shard);
    if (n_tp && n_plain) {
        for (int i = 0; i < x->n_shards; i++)
            if (x->shards[i].rank == -2)
                return gk_fail(err,
                               "%s/%s: unexpected file beside the -TP- shards (neither "
                               "-TP-common nor -TP-NNN)",
                               x->dir, x->shards[i].fname);
    }
    for (int i = 0; i < x->n_shards; i++)
        if (x->shards[i].rank == -2) x->shards[i].rank = -1; /* unsharded folder */
    return 0;
}

/* Every group of rank files must hold the same ranks 0..R-1. The rank count
 * most groups agree on is taken as R: a group with fewer misses a shard, a
 * group with more has an extra one. A hole inside 0..R-1 is a missing shard. */
static int check_ranks(cctx *x, gk_err *err) {
    int n_groups = 0, max_rank = -1;
    /* groups: first shard index of each distinct group among rank files */
    int *gfirst = gk_malloc((size_t)x->n_shards * sizeof *gfirst, err);
    int *gcount = gk_calloc((size_t)x->n_shards, sizeof *gcount, err);
    if (!gfirst || !gcount) {
        free(gfirst);
        free(gcount);
        return -1;
    }
    for (int i = 0; i < x->n_shards; i++) {
        shard *s = &x->shards[i];
        if (s->rank < 0) continue;
        if (s->rank > max_rank) max_rank = s->rank;
        int g = 0;
        while (g < n_groups && strcmp(x->shards[gfirst[g]].group, s->group) != 0) g++;
        if (g == n_groups) gfirst[n_groups++] = i;
        gcount[g]++;
    }
    int rc = 0;
    x->n_ranks = 1;
    x->sharded = n_groups > 0;
    if (n_groups > 0) {
        /* the most common count (ties: the larger) */
        int best = 0, best_votes = 0;
        for (int g = 0; g < n_groups; g++) {
            int votes = 0;
            for (int h = 0; h < n_groups; h++) votes += gcount[h] == gcount[g];
            if (votes > best_votes || (votes == best_votes && gcount[g] > best)) {
                best = gcount[g];
                best_votes = votes;
            }
        }
        x->n_ranks = best;
        for (int g = 0; g < n_groups && rc == 0; g++) {
            const char *grp = x->shards[gfirst[g]].group;
            for (int r = 0; r <= max_rank && rc == 0; r++) {
                bool have = false;
                for (int i = 0; i < x->n_shards && !have; i++)
                    have = x->shards[i].rank == r && strcmp(x->shards[i].group, grp) == 0;
                if (!have && r < best)
                    rc = gk_fail(err,
                                 "%s: missing shard %s-TP-%03d.safetensors (%d of the %d "
                                 "ranks of this group are present)",
                                 x->dir, grp, r, gcount[g], best);
                else if (have && r >= best)
                    rc = gk_fail(err,
                                 "%s: extra shard %s-TP-%03d.safetensors (the groups of "
                                 "shards have %d ranks, TP-000 to TP-%03d)",
                                 x->dir, grp, r, best, best - 1);
            }
        }
    }
    free(gfirst);
    free(gcount);
    return rc;
}

static int open_shards(cctx *x, gk_err *err) {
    for (int i = 0; i < x->n_shards; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", x->dir, x->shards[i].fname);
        x->shards[i].st = gk_st_open(path, err);
        if (!x->shards[i].st) return -1;
    }
    return 0;
}

/* -------------------------------------------------------------- index --- */

static int cmp_entry(const void *a, const void *b) {
    const entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->rank > y->rank) - (x->rank < y->rank);
}

static int build_index(cctx *x, gk_err *err) {
    int64_t n = 0;
    for (int i = 0; i < x->n_shards; i++) n += gk_st_n_tensors(x->shards[i].st);
    x->idx = gk_calloc((size_t)n, sizeof *x->idx, err);
    if (!x->idx) return -1;
    for (int i = 0; i < x->n_shards; i++)
        for (int64_t k = 0; k < gk_st_n_tensors(x->shards[i].st); k++) {
            const gk_st_tensor *t = gk_st_tensor_at(x->shards[i].st, k);
            x->idx[x->n_idx++] = (entry){t->name, x->shards[i].rank, i, t, false};
        }
    qsort(x->idx, (size_t)n, sizeof *x->idx, cmp_entry);
    for (int64_t k = 1; k < n; k++) {
        const entry *a = &x->idx[k - 1], *b = &x->idx[k];
        if (strcmp(a->name, b->name) != 0) continue;
        if (a->rank == b->rank)
            return gk_fail(err, "%s: tensor '%s' appears in both %s and %s", x->dir, a->name,
                           x->shards[a->shard].fname, x->shards[b->shard].fname);
        if (a->rank < 0)
            return gk_fail(err, "%s: tensor '%s' appears whole in %s and as a slice in %s", x->dir,
                           a->name, x->shards[a->shard].fname, x->shards[b->shard].fname);
    }
    return 0;
}

static entry *lookup(cctx *x, const char *name, int rank) {
    entry key = {.name = name, .rank = rank};
    return bsearch(&key, x->idx, (size_t)x->n_idx, sizeof *x->idx, cmp_entry);
}

/* --------------------------------------------------------------- plan --- */

static void shape_str(const gk_st_tensor *t, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (uint32_t d = 0; d < t->n_dims && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

static cjob *new_job(cctx *x, const char *gguf_name, int kind, int n_exp, int n_rank, gk_err *err) {
    if (x->n_jobs == x->cap_jobs || x->n_srcs + n_exp * n_rank > x->cap_srcs) {
        gk_fail(err, "internal: job table full");
        return NULL;
    }
    cjob *j = &x->jobs[x->n_jobs];
    memset(j, 0, sizeof *j);
    j->ctx = x;
    j->kind = kind;
    snprintf(j->name, sizeof j->name, "%s", gguf_name);
    j->n_exp = n_exp;
    j->n_rank = n_rank;
    j->src = &x->srcs[x->n_srcs];
    j->out = &x->outs[x->n_jobs];
    x->n_srcs += n_exp * n_rank;
    x->n_jobs++;
    return j;
}

/* Fills the job's output description once its sources are known. */
static void finish_job(cctx *x, cjob *j, uint32_t n_dims, const int64_t *ne) {
    gk_quant_out_tensor *o = j->out;
    o->name = j->name;
    o->n_dims = n_dims;
    for (int d = 0; d < GK_GGUF_MAX_DIMS; d++) o->ne[d] = d < (int)n_dims ? ne[d] : 1;
    o->type = gk_quant_choose(&x->p->policy, j->name, n_dims, ne[0], GK_TYPE_F32, j->src_type);
}

/* A tensor stored whole: rows x cols in torch order (rows == 0: 1-D of cols). */
static int plan_plain(cctx *x, const char *gguf_name, const char *hf, int64_t rows, int64_t cols,
                      const char *why, gk_err *err) {
    entry *e = lookup(x, hf, -1);
    if (!e) {
        bool sliced = false;
        for (int r = 0; r < x->n_ranks && !sliced; r++) sliced = lookup(x, hf, r) != NULL;
        if (sliced)
            return gk_fail(err,
                           "%s: tensor '%s' is sliced across the -TP-NNN files; only expert "
                           "weights are expected there",
                           x->dir, hf);
        return gk_fail(err, "%s: missing tensor '%s'", x->dir, hf);
    }
    const gk_st_tensor *t = e->t;
    bool ok = rows ? t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols
                   : t->n_dims == 1 && t->shape[0] == cols;
    if (!ok) {
        char have[128];
        shape_str(t, have, sizeof have);
        if (rows)
            return gk_fail(err,
                           "%s: tensor '%s' has shape %s, config.json implies [%lld, %lld] "
                           "(%s)",
                           x->shards[e->shard].fname, hf, have, (long long)rows, (long long)cols,
                           why);
        return gk_fail(err, "%s: tensor '%s' has shape %s, config.json implies [%lld] (%s)",
                       x->shards[e->shard].fname, hf, have, (long long)cols, why);
    }
    cjob *j = new_job(x, gguf_name, J_PLAIN, 1, 1, err);
    if (!j) return -1;
    e->used = true;
    j->src[0] = e;
    j->src_type = t->type;
    j->src_rows = rows ? rows : 1;
    j->src_cols = cols;
    int64_t ne[2] = {cols, rows};
    finish_job(x, j, rows ? 2 : 1, ne);
    return 0;
}

/* The slices of one expert matrix: whole [rows, cols] = concatenation of the
 * ranks' slices along dim (0 for w1/w3, 1 for w2). Stacked over experts into
 * ggml ne {cols, rows, n_expert}. */
static int plan_experts(cctx *x, const char *gguf_name, int64_t layer, const char *w, int dim,
                        int64_t rows, int64_t cols, gk_err *err) {
    int R = x->n_ranks, E = (int)x->c.n_expert;
    bool sharded = x->sharded;
    cjob *j = new_job(x, gguf_name, dim == 0 ? J_CAT_ROWS : J_CAT_COLS, E, R, err);
    if (!j) return -1;
    const gk_st_tensor *first = NULL;
    const char *first_file = NULL;
    for (int e = 0; e < E; e++)
        for (int r = 0; r < R; r++) {
            char hf[160];
            snprintf(hf, sizeof hf, "model.layers.%lld.block_sparse_moe.experts.%d.%s.weight",
                     (long long)layer, e, w);
            entry *en = lookup(x, hf, sharded ? r : -1);
            if (!en) {
                if (sharded && lookup(x, hf, -1))
                    return gk_fail(err,
                                   "%s: expert tensor '%s' is stored whole in a -TP-common "
                                   "file, but the other experts are sliced",
                                   x->dir, hf);
                if (sharded)
                    return gk_fail(err,
                                   "%s: missing tensor '%s' in the rank %d files "
                                   "(*-TP-%03d.safetensors): missing shard?",
                                   x->dir, hf, r, r);
                return gk_fail(err, "%s: missing tensor '%s'", x->dir, hf);
            }
            const gk_st_tensor *t = en->t;
            char have[128], want[128];
            shape_str(t, have, sizeof have);
            if (t->n_dims != 2)
                return gk_fail(err, "%s: tensor '%s' has shape %s, expected a matrix",
                               x->shards[en->shard].fname, hf, have);
            if (!first) {
                first = t;
                first_file = x->shards[en->shard].fname;
            } else if (t->shape[0] != first->shape[0] || t->shape[1] != first->shape[1]) {
                shape_str(first, want, sizeof want);
                return gk_fail(err,
                               "%s: shapes disagree between shards: '%s' is %s in %s but %s "
                               "in %s",
                               x->dir, hf, have, x->shards[en->shard].fname, want, first_file);
            } else if (t->type != first->type) {
                return gk_fail(err,
                               "%s: dtypes disagree between shards: '%s' is %s in %s but %s "
                               "in %s",
                               x->dir, hf, gk_type_name(t->type), x->shards[en->shard].fname,
                               gk_type_name(first->type), first_file);
            }
            en->used = true;
            j->src[e * R + r] = en;
        }
    int64_t srows = first->shape[0], scols = first->shape[1];
    int64_t mrows = dim == 0 ? srows * R : srows, mcols = dim == 0 ? scols : scols * R;
    if (mrows != rows || mcols != cols) {
        int64_t want_slice = dim == 0 ? rows : cols, have_slice = dim == 0 ? srows : scols;
        int64_t other_ok = dim == 0 ? scols == cols : srows == rows;
        if (sharded && other_ok && have_slice > 0 && want_slice % have_slice == 0) {
            int64_t need = want_slice / have_slice;
            return gk_fail(err,
                           "%s: the expert weights are sliced %d ways (TP-000 to TP-%03d, "
                           "%lld %s each), but moe_intermediate_size = %lld needs %lld "
                           "slices: %s",
                           x->dir, R, R - 1, (long long)have_slice, dim == 0 ? "rows" : "columns",
                           (long long)x->c.n_ff_exp, (long long)need,
                           need > R ? "missing shards" : "extra shards");
        }
        return gk_fail(err,
                       "%s: expert '%s' of layer %lld merges to [%lld, %lld] over %d "
                       "slice(s), config.json implies [%lld, %lld] (moe_intermediate_size, "
                       "hidden_size)",
                       x->dir, w, (long long)layer, (long long)mrows, (long long)mcols, R,
                       (long long)rows, (long long)cols);
    }
    j->src_type = first->type;
    j->src_rows = srows;
    j->src_cols = scols;
    int64_t ne[3] = {cols, rows, E};
    finish_job(x, j, 3, ne);
    return 0;
}

static int plan(cctx *x, gk_err *err) {
    const cfg *c = &x->c;
    int64_t d = c->n_embd, qd = c->n_head * c->head_dim, kvd = c->n_head_kv * c->head_dim;
    x->cap_jobs = 3 + c->n_layer * 16;
    x->cap_srcs = 3 + c->n_layer * (13 + 3 * c->n_expert * x->n_ranks);
    x->jobs = gk_calloc((size_t)x->cap_jobs, sizeof *x->jobs, err);
    x->outs = gk_calloc((size_t)x->cap_jobs, sizeof *x->outs, err);
    x->srcs = gk_calloc((size_t)x->cap_srcs, sizeof *x->srcs, err);
    if (!x->jobs || !x->outs || !x->srcs) return -1;

    if (plan_plain(x, "token_embd.weight", "model.embed_tokens.weight", c->n_vocab, d,
                   "vocab_size, hidden_size", err))
        return -1;
    /* Per layer: (GGUF name, checkpoint name, torch shape, where the shape comes
     * from); rows 0 marks a 1-D tensor. Spec 6.2 and 8. */
    const struct {
        const char *gguf, *hf;
        int64_t rows, cols;
        const char *why;
        bool dense; /* Grok-2's dense MLP (residual_moe) */
    } layer_plain[] = {
        {"attn_norm", "pre_attn_norm", 0, d, "hidden_size", false},
        {"attn_q", "self_attn.q_proj", qd, d, "num_attention_heads x head_dim, hidden_size", false},
        {"attn_k", "self_attn.k_proj", kvd, d, "num_key_value_heads x head_dim, hidden_size",
         false},
        {"attn_v", "self_attn.v_proj", kvd, d, "num_key_value_heads x head_dim, hidden_size",
         false},
        {"attn_output", "self_attn.o_proj", d, qd, "hidden_size, num_attention_heads x head_dim",
         false},
        {"attn_output_norm", "post_attn_norm", 0, d, "hidden_size", false},
        {"ffn_norm", "pre_moe_norm", 0, d, "hidden_size", false},
        {"ffn_gate_inp", "block_sparse_moe.gate", c->n_expert, d, "num_local_experts, hidden_size",
         false},
        {"ffn_gate", "mlp.gate_proj", c->n_ff, d, "intermediate_size, hidden_size", true},
        {"ffn_down", "mlp.down_proj", d, c->n_ff, "hidden_size, intermediate_size", true},
        {"ffn_up", "mlp.up_proj", c->n_ff, d, "intermediate_size, hidden_size", true},
        /* Grok-2 calls the post-MoE norm post_ffw_norm, Grok-1 layer_output_norm. */
        {c->residual_moe ? "post_ffw_norm" : "layer_output_norm", "post_moe_norm", 0, d,
         "hidden_size", false},
    };
    /* Experts: w1 (gate) and w3 (up) are [F, d] sliced along dim 0, w2 (down)
     * [d, F] sliced along dim 1. */
    const struct {
        const char *gguf, *w;
        int dim;
        int64_t rows, cols;
    } layer_experts[] = {
        {"ffn_gate_exps", "w1", 0, c->n_ff_exp, d},
        {"ffn_down_exps", "w2", 1, d, c->n_ff_exp},
        {"ffn_up_exps", "w3", 0, c->n_ff_exp, d},
    };
    for (int64_t l = 0; l < c->n_layer; l++) {
        char g[96], h[160];
        for (size_t i = 0; i < sizeof layer_plain / sizeof layer_plain[0]; i++) {
            if (layer_plain[i].dense && !c->residual_moe) continue;
            snprintf(g, sizeof g, "blk.%lld.%s.weight", (long long)l, layer_plain[i].gguf);
            snprintf(h, sizeof h, "model.layers.%lld.%s.weight", (long long)l, layer_plain[i].hf);
            if (plan_plain(x, g, h, layer_plain[i].rows, layer_plain[i].cols, layer_plain[i].why,
                           err))
                return -1;
        }
        for (size_t i = 0; i < sizeof layer_experts / sizeof layer_experts[0]; i++) {
            snprintf(g, sizeof g, "blk.%lld.%s.weight", (long long)l, layer_experts[i].gguf);
            if (plan_experts(x, g, l, layer_experts[i].w, layer_experts[i].dim,
                             layer_experts[i].rows, layer_experts[i].cols, err))
                return -1;
        }
    }
    if (plan_plain(x, "output_norm.weight", "model.norm.weight", 0, d, "hidden_size", err))
        return -1;
    if (!c->tied && plan_plain(x, "output.weight", "lm_head.weight", c->n_vocab, d,
                               "vocab_size, hidden_size", err))
        return -1;

    /* Whatever no job reads means the folder is not what the config describes. */
    for (int64_t k = 0; k < x->n_idx; k++) {
        const entry *e = &x->idx[k];
        if (e->used || strstr(e->name, "rotary_emb.inv_freq")) continue;
        if (c->tied && strcmp(e->name, "lm_head.weight") == 0) continue;
        return gk_fail(err,
                       "%s: unexpected tensor '%s' in %s (not part of the model config.json "
                       "describes: extra shard, or a config of another model?)",
                       x->dir, e->name, x->shards[e->shard].fname);
    }
    return 0;
}

/* ------------------------------------------------------------ produce --- */

static int grow(uint8_t **buf, size_t *cap, size_t need, gk_err *err) {
    if (need <= *cap) return 0;
    free(*buf);
    *buf = gk_malloc(need, err);
    *cap = *buf ? need : 0;
    return *buf ? 0 : -1;
}

/* Index of the first NaN or infinity among n elements, or -1. */
static int64_t first_nonfinite(const void *p, gk_dtype t, int64_t n) {
    if (t == GK_TYPE_F32) {
        const uint32_t *u = p;
        uint32_t any = 0;
        for (int64_t i = 0; i < n; i++) any |= (u[i] & 0x7f800000u) == 0x7f800000u;
        if (any)
            for (int64_t i = 0; i < n; i++)
                if ((u[i] & 0x7f800000u) == 0x7f800000u) return i;
        return -1;
    }
    const uint16_t *u = p;
    uint16_t mask = t == GK_TYPE_BF16 ? 0x7f80 : 0x7c00;
    uint16_t any = 0;
    for (int64_t i = 0; i < n; i++) any |= (uint16_t)((u[i] & mask) == mask);
    if (any)
        for (int64_t i = 0; i < n; i++)
            if ((u[i] & mask) == mask) return i;
    return -1;
}

/* Converts nr rows of merged source data in x->raw and streams them out. */
static int emit(cjob *j, gk_gguf_sink *sink, gk_quant_hash *h, int64_t nr, uint64_t row0,
                gk_err *err) {
    cctx *x = j->ctx;
    int64_t ne0 = j->out->ne[0];
    size_t src_row = gk_row_size(j->src_type, ne0), dst_row = gk_row_size(j->out->type, ne0);
    int64_t bad = first_nonfinite(x->raw, j->src_type, ne0 * nr);
    if (bad >= 0)
        return gk_fail(err, "%s: element %lld of row %llu is NaN or infinite (corrupt file?)",
                       j->name, (long long)(bad % ne0), (unsigned long long)(row0 + bad / ne0));
    const uint8_t *out = x->raw;
    if (j->out->type != j->src_type) {
        if (gk_quant_rows_run(x->rows, x->raw, j->src_type, x->dst, j->out->type, ne0, nr, err)) {
            gk_err_prefix(err, "%s", j->name);
            return -1;
        }
        out = x->dst;
    }
    gk_quant_hash_update(h, out, dst_row * (size_t)nr);
    if (gk_gguf_sink_write(sink, out, dst_row * (size_t)nr, err) != 0) return -1;
    x->done += src_row * (size_t)nr;
    const gk_quant_out_opts *o = &x->p->out;
    if (o->progress) o->progress(o->progress_ud, "convert", x->done, x->total);
    if (o->cancel && *o->cancel) return gk_fail(err, "interrupted");
    return 0;
}

static int read_rows(cctx *x, const entry *e, int64_t row, int64_t nr, int64_t cols, void *buf,
                     gk_err *err) {
    size_t es = e->t->type == GK_TYPE_F32 ? 4 : 2;
    size_t row_bytes = (size_t)cols * es;
    return gk_st_read(x->shards[e->shard].st, e->t, (uint64_t)row * row_bytes, buf,
                      row_bytes * (size_t)nr, err);
}

static int produce(void *ud, gk_gguf_sink *sink, gk_err *err) {
    cjob *j = ud;
    cctx *x = j->ctx;
    int64_t ne0 = j->out->ne[0];
    size_t es = j->src_type == GK_TYPE_F32 ? 4 : 2;
    size_t src_row = (size_t)ne0 * es, dst_row = gk_row_size(j->out->type, ne0);
    int64_t step = (int64_t)(GK_QUANT_CHUNK / (src_row > dst_row ? src_row : dst_row));
    if (step < 1) step = 1;
    if (step > j->src_rows) step = j->src_rows;
    if (grow(&x->raw, &x->raw_cap, src_row * (size_t)step, err) ||
        grow(&x->dst, &x->dst_cap, dst_row * (size_t)step, err) ||
        (j->kind == J_CAT_COLS &&
         grow(&x->tmp, &x->tmp_cap, (size_t)j->src_cols * es * (size_t)step, err)))
        return -1;
    gk_quant_hash h;
    gk_quant_hash_init(&h);
    uint64_t row0 = 0; /* output row of the chunk, for messages */
    for (int e = 0; e < j->n_exp; e++) {
        if (j->kind == J_CAT_COLS) {
            /* Each output row is the concatenation of the ranks' rows. */
            size_t slice = (size_t)j->src_cols * es;
            for (int64_t r = 0; r < j->src_rows; r += step) {
                int64_t nr = j->src_rows - r < step ? j->src_rows - r : step;
                for (int k = 0; k < j->n_rank; k++) {
                    const entry *src = j->src[e * j->n_rank + k];
                    if (read_rows(x, src, r, nr, j->src_cols, x->tmp, err)) return -1;
                    for (int64_t i = 0; i < nr; i++)
                        memcpy(x->raw + (size_t)i * src_row + (size_t)k * slice,
                               x->tmp + (size_t)i * slice, slice);
                }
                if (emit(j, sink, &h, nr, row0, err)) return -1;
                row0 += (uint64_t)nr;
            }
        } else {
            /* Rows of the ranks' slices follow each other (PLAIN: one source). */
            for (int k = 0; k < j->n_rank; k++) {
                const entry *src = j->src[e * j->n_rank + k];
                for (int64_t r = 0; r < j->src_rows; r += step) {
                    int64_t nr = j->src_rows - r < step ? j->src_rows - r : step;
                    if (read_rows(x, src, r, nr, j->src_cols, x->raw, err) ||
                        emit(j, sink, &h, nr, row0, err))
                        return -1;
                    row0 += (uint64_t)nr;
                }
            }
        }
        for (int k = 0; k < j->n_rank; k++) {
            const entry *src = j->src[e * j->n_rank + k];
            gk_st_drop_cache(x->shards[src->shard].st, src->t);
        }
    }
    j->out->hash = gk_quant_hash_final(&h);
    return 0;
}

/* ----------------------------------------------------------- metadata --- */

static int add_metadata(cctx *x, gk_gguf_writer *w) {
    const cfg *c = &x->c;
    char name[256];
    if (x->p->name) {
        snprintf(name, sizeof name, "%s", x->p->name);
    } else {
        /* the folder's last component */
        size_t n = strlen(x->dir);
        while (n > 1 && x->dir[n - 1] == '/') n--;
        size_t b = n;
        while (b > 0 && x->dir[b - 1] != '/') b--;
        snprintf(name, sizeof name, "%.*s", (int)(n - b), x->dir + b);
    }
    int rc = 0;
    rc |= gk_gguf_set_str(w, "general.architecture", "grok");
    rc |= gk_gguf_set_str(w, "general.name", name);
    int ft = gk_quant_policy_file_type(&x->p->policy);
    if (ft >= 0) rc |= gk_gguf_set_u32(w, "general.file_type", (uint32_t)ft);
    if (x->p->policy.type != GK_TYPE_F32 && x->p->policy.type != GK_TYPE_F16 &&
        x->p->policy.type != GK_TYPE_BF16)
        rc |= gk_gguf_set_u32(w, "general.quantization_version", 2);
    rc |= gk_gguf_set_u32(w, "grok.context_length", (uint32_t)c->n_ctx);
    rc |= gk_gguf_set_u32(w, "grok.embedding_length", (uint32_t)c->n_embd);
    rc |= gk_gguf_set_u32(w, "grok.block_count", (uint32_t)c->n_layer);
    /* Grok-2: the dense MLP's width; without a dense MLP (Grok-1) llama.cpp reads
     * feed_forward_length as the expert width. */
    rc |= gk_gguf_set_u32(w, "grok.feed_forward_length",
                          (uint32_t)(c->residual_moe ? c->n_ff : c->n_ff_exp));
    rc |= gk_gguf_set_u32(w, "grok.expert_feed_forward_length", (uint32_t)c->n_ff_exp);
    rc |= gk_gguf_set_u32(w, "grok.attention.head_count", (uint32_t)c->n_head);
    rc |= gk_gguf_set_u32(w, "grok.attention.head_count_kv", (uint32_t)c->n_head_kv);
    rc |= gk_gguf_set_u32(w, "grok.attention.key_length", (uint32_t)c->head_dim);
    rc |= gk_gguf_set_u32(w, "grok.attention.value_length", (uint32_t)c->head_dim);
    /* Plain NeoX RoPE over the whole head with the release's theta, and no
     * rope.scaling keys: "original" is not YaRN (spec 3.3, Decisions 3). */
    rc |= gk_gguf_set_u32(w, "grok.rope.dimension_count", (uint32_t)c->head_dim);
    rc |= gk_gguf_set_f32(w, "grok.rope.freq_base", (float)c->rope_theta);
    rc |= gk_gguf_set_f32(w, "grok.attention.layer_norm_rms_epsilon", (float)c->eps);
    rc |= gk_gguf_set_u32(w, "grok.expert_count", (uint32_t)c->n_expert);
    rc |= gk_gguf_set_u32(w, "grok.expert_used_count", (uint32_t)c->n_expert_used);
    rc |= gk_gguf_set_f32(w, "grok.attn_logit_softcapping", (float)c->attn_cap);
    rc |= gk_gguf_set_f32(w, "grok.router_logit_softcapping", (float)c->router_cap);
    if (c->final_cap > 0)
        rc |= gk_gguf_set_f32(w, "grok.final_logit_softcapping", (float)c->final_cap);
    rc |= gk_gguf_set_f32(w, "grok.attention.output_scale", (float)c->attn_scale);
    rc |= gk_gguf_set_f32(w, "grok.embedding_scale", (float)c->emb_scale);
    rc |= gk_gguf_set_f32(w, "grok.logit_scale", (float)c->logit_scale);
    if (c->temp_len > 0)
        rc |= gk_gguf_set_u32(w, "grok.attention.temperature_length", (uint32_t)c->temp_len);
    return rc ? -1 : 0;
}

/* tokenizer.tok.json, loaded before any long work so that a broken tokenizer
 * fails early; it must not hold more tokens than the embedding has rows. */
static gk_tokenizer *load_tokenizer(const char *dir, int64_t n_vocab, uint64_t *file_bytes,
                                    gk_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.tok.json", dir);
    struct stat st;
    if (stat(path, &st) != 0)
        return gk_failp(err, "%s: cannot open: %s (the Grok-2 tokenizer ships beside config.json)",
                        path, strerror(errno));
    *file_bytes = (uint64_t)st.st_size;
    gk_tokenizer *t = gk_tokenizer_load(path, err);
    if (t && gk_tokenizer_n_vocab(t) > n_vocab) {
        gk_fail(err, "%s: %d tokens, more than vocab_size = %lld in config.json", path,
                gk_tokenizer_n_vocab(t), (long long)n_vocab);
        gk_tokenizer_free(t);
        return NULL;
    }
    return t;
}

/* ------------------------------------------------------------ convert --- */

gk_convert_params gk_convert_default_params(void) {
    gk_convert_params p = {0};
    p.policy.type = GK_TYPE_BF16;
    p.out.verify_data = true;
    return p;
}

int gk_convert(const char *dir, const char *out_path, const gk_convert_params *p,
               gk_convert_info *info, gk_err *err) {
    double t0 = gk_time_s();
    gk_convert_params pc = *p; /* the policy learns the model's shape (for the mixes) */
    cctx x = {.dir = dir, .p = &pc};
    gk_gguf_writer *w = NULL;
    gk_tokenizer *tok = NULL;
    uint64_t tok_bytes = 0;
    int rc = -1;
    if (!gk_quant_type_ok(p->policy.type)) {
        char list[128];
        gk_quant_type_list(list, sizeof list);
        gk_fail(err, "cannot write type %s (the types the engine runs are %s)",
                gk_type_name(p->policy.type), list);
        goto done;
    }
    /* Everything that can be checked is checked before the first byte is written. */
    if (load_config(dir, &x.c, err)) goto done;
    pc.policy.n_layer = (int)x.c.n_layer;
    pc.policy.n_expert = (int)x.c.n_expert;
    pc.policy.n_gqa = (int)(x.c.n_head / x.c.n_head_kv);
    if (!(tok = load_tokenizer(dir, x.c.n_vocab, &tok_bytes, err)) || find_shards(&x, err) ||
        check_ranks(&x, err) || open_shards(&x, err) || build_index(&x, err) || plan(&x, err))
        goto done;
    for (int64_t i = 0; i < x.n_jobs; i++) {
        const cjob *j = &x.jobs[i];
        x.total += (uint64_t)j->n_exp * (uint64_t)j->n_rank * j->src[0]->t->nbytes;
    }
    uint64_t header = (4u << 20) + 2 * tok_bytes + (uint64_t)x.n_jobs * 512;
    uint64_t need = gk_quant_file_bytes(x.outs, x.n_jobs, header);
    if (gk_quant_check_space(out_path, need, p->out.free_disk_override, err)) goto done;

    if (!(x.rows = gk_quant_rows_new(p->out.n_threads, err)) || !(w = gk_gguf_writer_new(err)))
        goto done;
    add_metadata(&x, w); /* a failed setter fails gk_gguf_write with its message */
    if (gk_tokenizer_to_gguf(tok, w, err)) goto done;
    for (int64_t i = 0; i < x.n_jobs; i++) {
        const gk_quant_out_tensor *o = &x.outs[i];
        if (gk_gguf_add_tensor_fn(w, o->name, o->type, o->n_dims, o->ne, produce, &x.jobs[i], err))
            goto done;
    }
    if (gk_quant_write_verified(w, out_path, x.outs, x.n_jobs, &p->out, err)) goto done;
    rc = 0;
    if (info) {
        struct stat st;
        info->n_files = x.n_shards;
        info->n_ranks = x.n_ranks;
        info->n_tensors = x.n_jobs;
        info->bytes_in = x.total;
        info->bytes_out = stat(out_path, &st) == 0 ? (uint64_t)st.st_size : 0;
        info->seconds = gk_time_s() - t0;
    }
done:
    gk_gguf_writer_free(w);
    gk_tokenizer_free(tok);
    gk_quant_rows_free(x.rows);
    for (int i = 0; i < x.n_shards; i++) {
        gk_st_close(x.shards[i].st);
        free(x.shards[i].fname);
        free(x.shards[i].group);
    }
    free(x.shards);
    free(x.idx);
    free(x.jobs);
    free(x.outs);
    free(x.srcs);
    free(x.raw);
    free(x.tmp);
    free(x.dst);
    return rc;
}
