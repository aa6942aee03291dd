/*
 * test_split.c - models that come in several files, and old per-expert layouts.
 *
 *   - a small Grok-1 model written whole, then split into 3 shards the way
 *     llama-gguf-split lays them out (PREFIX-0000I-of-00003.gguf; split.no u16,
 *     split.count u16, split.tensors.count i32 in every shard; the metadata only
 *     in the first), all with the project's own GGUF writer: the split model
 *     loads and gives bit-identical logits to the single file;
 *   - one broken split per check (missing shard, wrong split.count, wrong
 *     split.no, wrong split.tensors.count, missing and duplicated tensors, a
 *     shard of another model, a later shard opened first, a badly named first
 *     shard, a file without split keys in a shard's place): each refused with a
 *     message naming the offending file;
 *   - the same model with every expert as its own 2-D tensor
 *     (blk.N.ffn_gate.E.weight), written in expert order (bound in place) and
 *     interleaved (copied once): bit-identical logits to the stacked file, and a
 *     wrong type or a missing expert refused.
 */
#include "gk_test.h"
#include "format/gguf.h"
#include "grok.h"
#include "model/model.h"

#include <unistd.h>

enum { D = 64, L = 2, NH = 4, NKV = 2, HD = 16, E = 4, K = 2, F = 64, V = 200, P = 12 };

static char dir[200];

/* ------------------------------------------------------------ the model --- */

typedef struct tensor {
    char name[64];
    int n_dims;
    int64_t ne[3];
    gk_dtype type;
    void *data;
} tensor;

static tensor ts[64];
static int n_ts;

static uint64_t seed = 12345;
static float rndf(void) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((seed >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

/* Adds a tensor of random values; norms near 1, matrices small. q8_0 rows when
 * asked (ne[0] = 64 is two blocks). */
static void add(const char *name, int n_dims, int64_t a, int64_t b, int64_t c, bool norm,
                gk_dtype type) {
    tensor *t = &ts[n_ts++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = n_dims;
    t->ne[0] = a, t->ne[1] = b, t->ne[2] = c;
    size_t n = (size_t)(a * b * c);
    float *f = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) f[i] = norm ? 1.0f + 0.1f * rndf() : 0.2f * rndf();
    t->type = type;
    if (type == GK_TYPE_F32) {
        t->data = f;
    } else {
        t->data = malloc(gk_row_size(type, a) * (size_t)(b * c));
        gk_type_traits_of(type)->from_float(f, t->data, (int64_t)n);
        free(f);
    }
}

static void make_tensors(void) {
    add("token_embd.weight", 2, D, V, 1, false, GK_TYPE_F32);
    add("output_norm.weight", 1, D, 1, 1, true, GK_TYPE_F32);
    for (int l = 0; l < L; l++) {
        char nm[64];
#define ADD(s, nd, a, b, c, norm, ty)                                                              \
    (snprintf(nm, sizeof nm, "blk.%d." s, l), add(nm, nd, a, b, c, norm, ty))
        ADD("attn_norm.weight", 1, D, 1, 1, true, GK_TYPE_F32);
        ADD("attn_output_norm.weight", 1, D, 1, 1, true, GK_TYPE_F32);
        ADD("ffn_norm.weight", 1, D, 1, 1, true, GK_TYPE_F32);
        ADD("layer_output_norm.weight", 1, D, 1, 1, true, GK_TYPE_F32);
        ADD("attn_q.weight", 2, D, NH * HD, 1, false, GK_TYPE_F32);
        ADD("attn_k.weight", 2, D, NKV * HD, 1, false, GK_TYPE_F32);
        ADD("attn_v.weight", 2, D, NKV * HD, 1, false, GK_TYPE_F32);
        ADD("attn_output.weight", 2, NH * HD, D, 1, false, GK_TYPE_F32);
        ADD("ffn_gate_inp.weight", 2, D, E, 1, false, GK_TYPE_F32);
        /* layer 1's experts in q8_0: a quantized stack is bound and copied too */
        gk_dtype et = l == 1 ? GK_TYPE_Q8_0 : GK_TYPE_F32;
        ADD("ffn_gate_exps.weight", 3, D, F, E, false, et);
        ADD("ffn_up_exps.weight", 3, D, F, E, false, et);
        ADD("ffn_down_exps.weight", 3, F, D, E, false, et);
#undef ADD
    }
}

static void set_keys(gk_gguf_writer *w, const char *arch) {
    gk_gguf_set_str(w, "general.architecture", arch);
    gk_gguf_set_str(w, "general.name", "split test");
    gk_gguf_set_u32(w, "grok.context_length", 64);
    gk_gguf_set_u32(w, "grok.embedding_length", D);
    gk_gguf_set_u32(w, "grok.block_count", L);
    gk_gguf_set_u32(w, "grok.feed_forward_length", F);
    gk_gguf_set_u32(w, "grok.attention.head_count", NH);
    gk_gguf_set_u32(w, "grok.attention.head_count_kv", NKV);
    gk_gguf_set_u32(w, "grok.expert_count", E);
    gk_gguf_set_u32(w, "grok.expert_used_count", K);
    gk_gguf_set_f32(w, "grok.attention.layer_norm_rms_epsilon", 1e-5f);
}

static bool is_exps(const tensor *t) {
    return strstr(t->name, "_exps.weight") != NULL;
}

/* Adds expert e of a stack as its own 2-D tensor blk.N.ffn_X.E.weight. */
static int add_expert(gk_gguf_writer *w, const tensor *t, int e, gk_dtype type, gk_err *err) {
    char nm[64];
    const char *base = strstr(t->name, "ffn_");
    snprintf(nm, sizeof nm, "%.*s%.*s.%d.weight", (int)(base - t->name), t->name,
             (int)(strstr(base, "_exps") - base), base, e);
    size_t mat = gk_row_size(t->type, t->ne[0]) * (size_t)t->ne[1];
    return gk_gguf_add_tensor(w, nm, type, 2, t->ne, (uint8_t *)t->data + (size_t)e * mat, err);
}

/* Per-expert layouts: 0 = stacked, 1 = each stack's experts in order, 2 =
 * interleaved (gate.e, up.e, down.e), 3 = in order but expert 2 of a stack
 * typed f16, 4 = in order with one expert left out. */
static int write_model(const char *path, int experts) {
    gk_err err;
    gk_gguf_writer *w = gk_gguf_writer_new(&err);
    set_keys(w, "grok");
    int rc = 0;
    for (int i = 0; i < n_ts && rc == 0; i++) {
        const tensor *t = &ts[i];
        if (!is_exps(t) || experts == 0) {
            rc = gk_gguf_add_tensor(w, t->name, t->type, (uint32_t)t->n_dims, t->ne, t->data, &err);
        } else if (experts == 2) {
            if (!strstr(t->name, "gate_exps")) continue; /* up and down come with gate */
            for (int e = 0; e < E && rc == 0; e++)
                for (int k = 0; k < 3 && rc == 0; k++) rc = add_expert(w, t + k, e, t->type, &err);
        } else {
            for (int e = 0; e < E && rc == 0; e++) {
                if (experts == 4 && i == 11 && e == 3) continue;
                gk_dtype ty = experts == 3 && i == 11 && e == 2 ? GK_TYPE_F16 : t->type;
                /* an f16 expert from f32 bytes: half of them, whatever they hold */
                rc = add_expert(w, t, e, ty, &err);
            }
        }
    }
    if (rc == 0) rc = gk_gguf_write(w, path, &err);
    if (rc) fprintf(stderr, "write_model: %s\n", err.msg);
    gk_gguf_writer_free(w);
    return rc;
}

/* ------------------------------------------------------------ splitting --- */

/* What to break in a split. Shard numbers are 1-based; 0 = none. */
typedef struct breakage {
    int count_in;     /* this shard says split.count = 4 */
    int no_in;        /* this shard says split.no = 0 */
    int ntensors_in;  /* this shard says split.tensors.count one more */
    int drop_in;      /* this shard leaves its last tensor out */
    int dup_in;       /* this shard repeats the first tensor of the shard before */
    int nokeys_in;    /* this shard has no split keys */
    int arch_in;      /* this shard names another architecture */
    int ntensors_all; /* added to split.tensors.count in every shard */
} breakage;

static void shard_path(char *out, size_t cap, const char *pre, int i, int n) {
    snprintf(out, cap, "%.300s-%05d-of-%05d.gguf", pre, i, n);
}

static void set_u16(gk_gguf_writer *w, const char *key, uint32_t v) {
    gk_gguf_value val = {.type = GK_GGUF_UINT16, .v.u64 = v};
    gk_gguf_set_value(w, key, &val, NULL);
}

/* Splits the whole model at src into n shards PREFIX-0000I-of-0000N.gguf, the
 * tensors in file order, shard i holding [i*nt/n, (i+1)*nt/n). */
static int split(const char *src, const char *prefix, int n, const breakage *b) {
    gk_err err;
    gk_gguf *g = gk_gguf_open(src, &err);
    if (!g) return -1;
    int64_t nt = gk_gguf_n_tensors(g);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        gk_gguf_writer *w = gk_gguf_writer_new(&err);
        if (i == 0) gk_gguf_copy_kv(w, g, &err);
        if (b->arch_in == i + 1) gk_gguf_set_str(w, "general.architecture", "llama");
        if (b->nokeys_in != i + 1) {
            set_u16(w, "split.no", b->no_in == i + 1 ? 0 : (uint32_t)i);
            set_u16(w, "split.count", b->count_in == i + 1 ? 4 : (uint32_t)n);
            gk_gguf_set_i32(w, "split.tensors.count",
                            (int32_t)nt + b->ntensors_all + (b->ntensors_in == i + 1));
        }
        int64_t lo = i * nt / n, hi = (i + 1) * nt / n;
        if (b->drop_in == i + 1) hi--;
        if (b->dup_in == i + 1) lo--;
        for (int64_t k = lo; k < hi && rc == 0; k++) {
            const gk_gguf_tensor *t = gk_gguf_tensor_at(g, k);
            rc = gk_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, &err);
        }
        char path[512];
        shard_path(path, sizeof path, prefix, i + 1, n);
        if (rc == 0) rc = gk_gguf_write(w, path, &err);
        gk_gguf_writer_free(w);
    }
    if (rc) fprintf(stderr, "split: %s\n", err.msg);
    gk_gguf_close(g);
    return rc;
}

static void remove_shards(const char *prefix, int n) {
    char path[512];
    for (int i = 1; i <= n; i++) {
        shard_path(path, sizeof path, prefix, i, n);
        unlink(path);
    }
}

/* ------------------------------------------------------------- logits --- */

/* Logits of every position of a fixed prompt (P * V floats), or NULL. */
static float *logits_of(const char *path, gk_model **keep) {
    gk_err err;
    gk_model *m = gk_model_load(path, NULL, &err);
    CHECK_MSG(m != NULL, "%s", err.msg);
    if (!m) return NULL;
    int32_t toks[P];
    for (int i = 0; i < P; i++) toks[i] = (i * 37 + 11) % V;
    gk_context_params cp = gk_context_default_params();
    cp.all_logits = true;
    cp.n_threads = 1;
    gk_context *c = gk_context_new(m, &cp, &err);
    float *out = malloc(sizeof(float) * P * V);
    bool ok = c && gk_decode(c, toks, P, &err) == 0;
    CHECK_MSG(ok, "%s", err.msg);
    for (int i = 0; ok && i < P; i++) memcpy(out + i * V, gk_get_logits(c, i), sizeof(float) * V);
    gk_context_free(c);
    if (keep)
        *keep = m;
    else
        gk_model_free(m);
    if (!ok) free(out);
    return ok ? out : NULL;
}

/* ---------------------------------------------------------------- tests --- */

static char whole[512], prefix[300], first[512];
static float *ref;

static void test_split_loads(void) {
    CHECK(split(whole, prefix, 3, &(breakage){0}) == 0);
    gk_model *m = NULL;
    float *got = logits_of(first, &m);
    CHECK(got && ref && memcmp(got, ref, sizeof(float) * P * V) == 0);
    if (m) {
        CHECK(gk_gguf_n_shards(m->gguf) == 3);
        char p3[512];
        shard_path(p3, sizeof p3, prefix, 3, 3);
        CHECK(gk_gguf_shard_path(m->gguf, 2) && !strcmp(gk_gguf_shard_path(m->gguf, 2), p3));
        CHECK(gk_model_file_size(m) > gk_gguf_file_size(m->gguf));
        /* the tensors of the last shard point into its own map */
        const gk_gguf_tensor *t = gk_gguf_tensor_at(m->gguf, gk_gguf_n_tensors(m->gguf) - 1);
        CHECK(t->shard == 2);
        /* a file written from the split model (quantize, a training checkpoint)
         * does not inherit the split keys */
        gk_err e;
        gk_gguf_writer *w = gk_gguf_writer_new(&e);
        CHECK(gk_gguf_copy_kv(w, m->gguf, &e) == 0);
        char one[512];
        snprintf(one, sizeof one, "%s/copied.gguf", dir);
        CHECK(gk_gguf_write(w, one, &e) == 0);
        gk_gguf_writer_free(w);
        gk_gguf *c = gk_gguf_open(one, &e);
        CHECK(c && !gk_gguf_find(c, "split.count") && !gk_gguf_find(c, "split.no") &&
              !gk_gguf_find(c, "split.tensors.count") && gk_gguf_find(c, "general.name"));
        gk_gguf_close(c);
        unlink(one);
        gk_model_free(m);
    }
    free(got);
    /* a one-shard "split" is an ordinary file */
    char p1[512];
    CHECK(split(whole, prefix, 1, &(breakage){0}) == 0);
    shard_path(p1, sizeof p1, prefix, 1, 1);
    got = logits_of(p1, NULL);
    CHECK(got && ref && memcmp(got, ref, sizeof(float) * P * V) == 0);
    free(got);
    remove_shards(prefix, 1);
}

/* Splits with b, loads the first shard (or the file named by open, a shard
 * number) and expects a message holding want and the name of shard `names`. */
static void expect_refused(const breakage *b, int open, int names, const char *want) {
    CHECK(split(whole, prefix, 3, b) == 0);
    char path[512], named[512];
    shard_path(path, sizeof path, prefix, open ? open : 1, 3);
    shard_path(named, sizeof named, prefix, names, 3);
    gk_err err = {{0}};
    gk_model *m = gk_model_load(path, NULL, &err);
    CHECK_MSG(m == NULL, "a broken split loaded (expected '%s')", want);
    if (m) {
        gk_model_free(m);
    } else {
        CHECK_ERR_HAS(err.msg, want);
        CHECK_ERR_HAS(err.msg, named);
    }
    remove_shards(prefix, 3);
}

static void test_split_broken(void) {
    /* missing shard */
    CHECK(split(whole, prefix, 3, &(breakage){0}) == 0);
    char p3[512];
    shard_path(p3, sizeof p3, prefix, 3, 3);
    unlink(p3);
    gk_err err = {{0}};
    CHECK(gk_model_load(first, NULL, &err) == NULL);
    CHECK_ERR_HAS(err.msg, p3);
    CHECK_ERR_HAS(err.msg, "shard 3 of 3");
    remove_shards(prefix, 3);

    expect_refused(&(breakage){.count_in = 2}, 0, 2, "split.count is 4, but the first shard says");
    expect_refused(&(breakage){.no_in = 3}, 0, 3,
                   "split.no is 0 (shard 1), but the file name "
                   "says shard 3");
    expect_refused(&(breakage){.ntensors_in = 2}, 0, 2, "split.tensors.count is");
    expect_refused(&(breakage){.drop_in = 3}, 0, 1, "the 3 shards hold");
    expect_refused(&(breakage){.dup_in = 3, .ntensors_all = 1}, 0, 3, "is in both");
    expect_refused(&(breakage){.dup_in = 3, .ntensors_all = 1}, 0, 2, "is in both");
    expect_refused(&(breakage){.nokeys_in = 2}, 0, 2, "not a shard of a split model");
    expect_refused(&(breakage){.arch_in = 3}, 0, 3, "differs from the first shard's");
    expect_refused(&(breakage){0}, 2, 2, "is shard 2 of 3 of a split model: load the first");

    /* a shard of another model: same layout, other hyper-parameters */
    char other[512];
    snprintf(other, sizeof other, "%s/other", dir);
    {
        gk_err e;
        gk_gguf_writer *w = gk_gguf_writer_new(&e);
        set_keys(w, "grok");
        set_u16(w, "split.no", 1);
        set_u16(w, "split.count", 3);
        gk_gguf_set_i32(w, "split.tensors.count", 7);
        float x[D] = {0};
        int64_t ne[1] = {D};
        gk_gguf_add_tensor(w, "blk.9.attn_norm.weight", GK_TYPE_F32, 1, ne, x, &e);
        char p2[512];
        CHECK(split(whole, prefix, 3, &(breakage){0}) == 0);
        shard_path(p2, sizeof p2, prefix, 2, 3);
        CHECK(gk_gguf_write(w, p2, &e) == 0);
        gk_gguf_writer_free(w);
        CHECK(gk_model_load(first, NULL, &err) == NULL);
        CHECK_ERR_HAS(err.msg, p2);
        CHECK_ERR_HAS(err.msg, "another model");
        remove_shards(prefix, 3);
    }

    /* the first shard under another name: the others cannot be found */
    CHECK(split(whole, prefix, 3, &(breakage){0}) == 0);
    char renamed[512];
    snprintf(renamed, sizeof renamed, "%s/renamed.gguf", dir);
    CHECK(rename(first, renamed) == 0);
    CHECK(gk_model_load(renamed, NULL, &err) == NULL);
    CHECK_ERR_HAS(err.msg, renamed);
    CHECK_ERR_HAS(err.msg, "-00001-of-00003.gguf");
    unlink(renamed);
    remove_shards(prefix, 3);

    /* an extra shard: three files, but their keys say two */
    CHECK(split(whole, prefix, 3, &(breakage){0}) == 0);
    {
        gk_gguf *g = gk_gguf_open(first, &err);
        gk_gguf_writer *w = gk_gguf_writer_new(&err);
        gk_gguf_copy_kv(w, g, &err);
        set_u16(w, "split.no", 0); /* copy_kv leaves the split keys out */
        set_u16(w, "split.count", 2);
        gk_gguf_set_i32(w, "split.tensors.count", (int32_t)gk_gguf_n_tensors(g) * 3);
        for (int64_t k = 0; k < gk_gguf_n_tensors(g); k++) {
            const gk_gguf_tensor *t = gk_gguf_tensor_at(g, k);
            gk_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, &err);
        }
        char tmp[600];
        snprintf(tmp, sizeof tmp, "%s.new", first);
        CHECK(gk_gguf_write(w, tmp, &err) == 0);
        gk_gguf_writer_free(w);
        gk_gguf_close(g);
        CHECK(rename(tmp, first) == 0);
    }
    CHECK(gk_model_load(first, NULL, &err) == NULL);
    CHECK_ERR_HAS(err.msg, first);
    CHECK_ERR_HAS(err.msg, "-00001-of-00002.gguf");
    remove_shards(prefix, 3);
}

static void test_per_expert(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/experts.gguf", dir);
    for (int layout = 1; layout <= 2; layout++) {
        CHECK(write_model(path, layout) == 0);
        gk_model *m = NULL;
        float *got = logits_of(path, &m);
        CHECK_MSG(got && ref && memcmp(got, ref, sizeof(float) * P * V) == 0,
                  "layout %d: logits differ from the stacked file", layout);
        if (m) {
            /* in order: every stack is a view; interleaved: every stack is copied */
            CHECK(m->n_expert_views == (layout == 1 ? 3 * L : 0));
            CHECK(m->n_expert_copies == (layout == 2 ? 3 * L : 0));
            CHECK(!strcmp(m->layers[1].up_exps.name, "blk.1.ffn_up_exps.weight"));
            gk_model_free(m);
        }
        free(got);
    }
    gk_err err = {{0}};
    CHECK(write_model(path, 3) == 0);
    CHECK(gk_model_load(path, NULL, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "tensor 'blk.0.ffn_gate.2.weight' has type f16, but expert 0");
    CHECK(write_model(path, 4) == 0);
    CHECK(gk_model_load(path, NULL, &err) == NULL);
    CHECK_ERR_HAS(err.msg, "missing tensor 'blk.0.ffn_gate.3.weight'");
    unlink(path);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", gk_test_tmp_dir());
    snprintf(whole, sizeof whole, "%s/whole.gguf", dir);
    snprintf(prefix, sizeof prefix, "%s/model", dir);
    shard_path(first, sizeof first, prefix, 1, 3);
    make_tensors();
    CHECK(write_model(whole, 0) == 0);
    ref = logits_of(whole, NULL);
    CHECK(ref != NULL);
    test_split_loads();
    test_split_broken();
    test_per_expert();
    free(ref);
    for (int i = 0; i < n_ts; i++) free(ts[i].data);
    unlink(whole);
    rmdir(dir);
    return gk_test_done();
}
