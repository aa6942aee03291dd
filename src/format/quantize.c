/*
 * quantize.c - the precision policy, the threaded row converter, the checksum,
 * the verified output path, and `grok quantize` itself. See quantize.h.
 *
 * gk_quantize streams: each output tensor is a producer that the GGUF writer
 * calls in file order; it reads a bounded slice of rows from the input with
 * pread, converts it on the thread pool and hands it to the writer's sink. The
 * checksum of what was produced is compared with the file read back before the
 * temporary file is renamed into place.
 */
#include "format/quantize.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* ------------------------------------------------------------- policy --- */

bool gk_quant_type_ok(gk_dtype t) {
    const gk_type_traits *tr = gk_type_traits_of(t);
    return tr && tr->from_float && gk_type_is_supported(t);
}

int gk_quant_type_from_name(const char *name) {
    int t = gk_type_from_name(name);
    return t >= 0 && gk_quant_type_ok((gk_dtype)t) ? t : -1;
}

void gk_quant_type_list(char *buf, size_t cap) {
    size_t n = 0;
    if (cap) buf[0] = 0;
    for (int t = 0; t < GK_TYPE_COUNT && n < cap; t++)
        if (gk_quant_type_ok((gk_dtype)t))
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", gk_type_name(t));
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

gk_dtype gk_quant_fallback(gk_dtype t, int64_t ne0) {
    const gk_type_traits *tr = gk_type_traits_of(t);
    if (!tr || ne0 % tr->blck_size == 0) return t;
    /* llama.cpp (tensor_type_fallback): Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0,
     * Q5_K -> Q5_1, Q6_K -> Q8_0, IQ4_XS -> IQ4_NL. Q5_0/Q5_1 are not among
     * the engine's types, so Q4_K and Q5_K fall back to Q8_0 here; IQ4_NL has
     * no quantizer, so IQ4_XS does too. */
    gk_dtype f;
    switch (t) {
    case GK_TYPE_Q2_K:
    case GK_TYPE_Q3_K:
        f = GK_TYPE_Q4_0;
        break;
    case GK_TYPE_Q4_K:
    case GK_TYPE_Q5_K:
    case GK_TYPE_Q6_K:
    case GK_TYPE_IQ4_XS:
        f = GK_TYPE_Q8_0;
        break;
    default:
        f = GK_TYPE_F16;
        break;
    }
    return ne0 % gk_type_traits_of(f)->blck_size == 0 ? f : GK_TYPE_F16;
}

static const struct {
    const char *name;
    gk_quant_mix mix;
    gk_dtype base;
    int ftype; /* llama.cpp's LLAMA_FTYPE_MOSTLY_* */
} mixes[] = {
    {"q2_k", GK_MIX_Q2_K, GK_TYPE_Q2_K, 10},     {"q3_k_m", GK_MIX_Q3_K_M, GK_TYPE_Q3_K, 12},
    {"q4_k_m", GK_MIX_Q4_K_M, GK_TYPE_Q4_K, 15}, {"q5_k_m", GK_MIX_Q5_K_M, GK_TYPE_Q5_K, 17},
    {"q6_k", GK_MIX_Q6_K, GK_TYPE_Q6_K, 18},
};
#define N_MIXES (int)(sizeof mixes / sizeof mixes[0])

int gk_quant_mix_from_name(const char *name, gk_quant_mix *mix, gk_dtype *base) {
    for (int i = 0; i < N_MIXES; i++)
        if (strcasecmp(name, mixes[i].name) == 0) {
            *mix = mixes[i].mix;
            *base = mixes[i].base;
            return 0;
        }
    return -1;
}

const char *gk_quant_mix_list(void) {
    return "q2_k, q3_k_m, q4_k_m, q5_k_m, q6_k";
}

int gk_quant_policy_file_type(const gk_quant_policy *p) {
    for (int i = 0; i < N_MIXES; i++)
        if (p->mix != GK_MIX_NONE && p->mix == mixes[i].mix) return mixes[i].ftype;
    return gk_quant_file_type(p->type);
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers, and every
 * third layer between. */
static bool more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* The type a mix gives a weight matrix: llama.cpp's llama_tensor_get_type_impl
 * for these mixes (non-Falcon), by tensor category (a substring of the name, in
 * llama.cpp's order) and layer ("blk.N."). */
static gk_dtype mix_type(const gk_quant_policy *p, const char *name, int64_t ne0) {
    gk_quant_mix m = p->mix;
    gk_dtype t = p->type;
    int n = p->n_layer > 0 ? p->n_layer : 1, i = 0;
    if (sscanf(name, "blk.%d.", &i) != 1 || i < 0) i = 0;
    bool eight = p->n_expert == 8; /* llama.cpp's 8-expert (Mixtral, Grok) rules */
    /* a tied embedding is quantized as the output is (llama.cpp) */
    if (strcmp(name, "output.weight") == 0 ||
        (p->tied_output && strcmp(name, "token_embd.weight") == 0)) {
        /* Q6_K, or Q8_0 when the rows do not fit 256-blocks */
        return ne0 % 256 != 0 ? GK_TYPE_Q8_0 : GK_TYPE_Q6_K;
    }
    if (strcmp(name, "token_embd.weight") == 0) return t;
    if (strstr(name, "attn_v.weight") || strstr(name, "attn_qkv.weight")) {
        if (m == GK_MIX_Q2_K)
            t = p->n_gqa >= 4 ? GK_TYPE_Q4_K : GK_TYPE_Q3_K;
        else if (m == GK_MIX_Q3_K_M)
            t = i < 2 ? GK_TYPE_Q5_K : GK_TYPE_Q4_K;
        else if ((m == GK_MIX_Q4_K_M || m == GK_MIX_Q5_K_M) && more_bits(i, n))
            t = GK_TYPE_Q6_K;
        if (eight) t = GK_TYPE_Q8_0;
    } else if (strstr(name, "attn_k.weight")) {
        if (eight) t = GK_TYPE_Q8_0;
    } else if (strstr(name, "attn_output.weight")) {
        if (eight) {
            if (m == GK_MIX_Q2_K || m == GK_MIX_Q3_K_M || m == GK_MIX_Q4_K_M) t = GK_TYPE_Q5_K;
        } else if (m == GK_MIX_Q2_K) {
            t = GK_TYPE_Q3_K;
        } else if (m == GK_MIX_Q3_K_M) {
            t = GK_TYPE_Q4_K;
        }
    } else if (!strstr(name, "ffn_up") && !strstr(name, "ffn_gate") && strstr(name, "ffn_down")) {
        if (m == GK_MIX_Q2_K)
            t = GK_TYPE_Q3_K;
        else if (m == GK_MIX_Q3_K_M)
            t = i < n / 16 ? GK_TYPE_Q5_K : GK_TYPE_Q4_K;
        else if ((m == GK_MIX_Q4_K_M || m == GK_MIX_Q5_K_M) && more_bits(i, n))
            t = GK_TYPE_Q6_K;
    }
    return t;
}

gk_dtype gk_quant_choose(const gk_quant_policy *p, const char *name, uint32_t n_dims, int64_t ne0,
                         gk_dtype exact, gk_dtype kept) {
    /* llama.cpp keeps norms (1-D) and the router in f32: they are tiny, and the
     * router's top-k choice is sensitive to rounding (spec 4.1: fp32 router). */
    if (n_dims <= 1 || ends_with(name, "_norm.weight") || strstr(name, "ffn_gate_inp"))
        return exact;
    if (!p->quantize_embedding && strcmp(name, "token_embd.weight") == 0) return kept;
    for (int i = 0; i < p->n_keep; i++)
        if (fnmatch(p->keep[i], name, 0) == 0) return kept;
    gk_dtype t = p->mix != GK_MIX_NONE ? mix_type(p, name, ne0) : p->type;
    const gk_type_traits *tr = gk_type_traits_of(t);
    if (!tr) return kept;
    if (ne0 % tr->blck_size != 0) {
        /* only the 256-blocks have a fallback; other types keep the tensor */
        if (tr->blck_size != 256) return kept;
        t = gk_quant_fallback(t, ne0);
        if (!gk_quant_type_ok(t)) return kept;
    }
    return t;
}

int gk_quant_file_type(gk_dtype t) {
    /* llama.cpp's enum llama_ftype (the MOSTLY_* values). */
    switch (t) {
    case GK_TYPE_F32:
        return 0;
    case GK_TYPE_F16:
        return 1;
    case GK_TYPE_Q4_0:
        return 2;
    case GK_TYPE_Q4_1:
        return 3;
    case GK_TYPE_Q8_0:
        return 7;
    case GK_TYPE_Q5_0:
        return 8;
    case GK_TYPE_Q5_1:
        return 9;
    case GK_TYPE_Q6_K:
        return 18;
    case GK_TYPE_BF16:
        return 32;
    default:
        return -1;
    }
}

/* --------------------------------------------------------------- rows --- */

struct gk_quant_rows {
    gk_pool *pool;
    float **scratch; /* one row of fp32 per thread */
    int64_t scratch_len;
    /* the job of the current run */
    const uint8_t *src;
    uint8_t *dst;
    const gk_type_traits *st, *dt;
    gk_dtype stype;
    size_t src_row, dst_row;
    int64_t n_per_row, n_rows;
};

gk_quant_rows *gk_quant_rows_new(int n_threads, gk_err *err) {
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)(n < 256 ? n : 256) : 1;
    }
    gk_quant_rows *c = gk_calloc(1, sizeof *c, err);
    if (!c) return NULL;
    c->pool = gk_pool_new(n_threads, err);
    c->scratch = c->pool ? gk_calloc((size_t)gk_pool_size(c->pool), sizeof *c->scratch, err) : NULL;
    if (!c->scratch) {
        gk_quant_rows_free(c);
        return NULL;
    }
    return c;
}

void gk_quant_rows_free(gk_quant_rows *c) {
    if (!c) return;
    if (c->scratch)
        for (int i = 0; i < gk_pool_size(c->pool); i++) gk_free_aligned(c->scratch[i]);
    free(c->scratch);
    gk_pool_free(c->pool);
    free(c);
}

static void rows_worker(void *arg, int ith, int nth) {
    gk_quant_rows *c = arg;
    int64_t lo, hi;
    gk_split(c->n_rows, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        const void *s = c->src + (size_t)r * c->src_row;
        void *d = c->dst + (size_t)r * c->dst_row;
        if (c->stype == GK_TYPE_F32) {
            c->dt->from_float(s, d, c->n_per_row);
        } else {
            float *tmp = c->scratch[ith];
            c->st->to_float(s, tmp, c->n_per_row);
            c->dt->from_float(tmp, d, c->n_per_row);
        }
    }
}

int gk_quant_rows_run(gk_quant_rows *c, const void *src, gk_dtype st, void *dst, gk_dtype dt,
                      int64_t n_per_row, int64_t n_rows, gk_err *err) {
    size_t src_row = gk_row_size(st, n_per_row), dst_row = gk_row_size(dt, n_per_row);
    if (n_rows <= 0) return 0;
    if (!src_row || !dst_row)
        return gk_fail(err, "rows of %lld elements do not fit the blocks of %s and %s",
                       (long long)n_per_row, gk_type_name(st), gk_type_name(dt));
    if (st == dt) {
        memcpy(dst, src, src_row * (size_t)n_rows);
        return 0;
    }
    const gk_type_traits *s = gk_type_traits_of(st), *d = gk_type_traits_of(dt);
    if (!s->to_float || !d->from_float)
        return gk_fail(err, "cannot convert %s to %s", gk_type_name(st), gk_type_name(dt));
    if (n_per_row > c->scratch_len) {
        for (int i = 0; i < gk_pool_size(c->pool); i++) {
            gk_free_aligned(c->scratch[i]);
            c->scratch[i] = gk_malloc_aligned((size_t)n_per_row * sizeof(float), err);
            if (!c->scratch[i]) {
                c->scratch_len = 0;
                return -1;
            }
        }
        c->scratch_len = n_per_row;
    }
    c->src = src;
    c->dst = dst;
    c->st = s;
    c->dt = d;
    c->stype = st;
    c->src_row = src_row;
    c->dst_row = dst_row;
    c->n_per_row = n_per_row;
    c->n_rows = n_rows;
    /* Small jobs are not worth waking the workers for. */
    if ((uint64_t)n_rows * (uint64_t)n_per_row < 16384)
        rows_worker(c, 0, 1);
    else
        gk_pool_run(c->pool, rows_worker, c);
    return 0;
}

/* --------------------------------------------------------------- hash --- */
/* A 4-lane multiply-rotate hash in the manner of xxHash64: fast enough (several
 * GB/s) that checksumming a 500 GB output costs little next to writing it. */

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static inline uint64_t rotl64(uint64_t x, int r) {
    return x << r | x >> (64 - r);
}
static inline uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline uint64_t round64(uint64_t acc, uint64_t in) {
    return rotl64(acc + in * P2, 31) * P1;
}

void gk_quant_hash_init(gk_quant_hash *h) {
    memset(h, 0, sizeof *h);
    h->v[0] = P1 + P2;
    h->v[1] = P2;
    h->v[2] = 0;
    h->v[3] = 0 - P1;
}

static void stripe(gk_quant_hash *h, const uint8_t *p) {
    h->v[0] = round64(h->v[0], rd64(p));
    h->v[1] = round64(h->v[1], rd64(p + 8));
    h->v[2] = round64(h->v[2], rd64(p + 16));
    h->v[3] = round64(h->v[3], rd64(p + 24));
}

void gk_quant_hash_update(gk_quant_hash *h, const void *data, size_t n) {
    const uint8_t *p = data;
    h->total += n;
    if (h->nbuf) {
        size_t take = 32 - h->nbuf < n ? 32 - h->nbuf : n;
        memcpy(h->buf + h->nbuf, p, take);
        h->nbuf += take;
        p += take;
        n -= take;
        if (h->nbuf < 32) return;
        stripe(h, h->buf);
        h->nbuf = 0;
    }
    for (; n >= 32; p += 32, n -= 32) stripe(h, p);
    memcpy(h->buf, p, n);
    h->nbuf = n;
}

uint64_t gk_quant_hash_final(const gk_quant_hash *h) {
    uint64_t x = rotl64(h->v[0], 1) + rotl64(h->v[1], 7) + rotl64(h->v[2], 12) +
                 rotl64(h->v[3], 18) + h->total;
    for (int i = 0; i < 4; i++) x = (x ^ round64(0, h->v[i])) * P1 + P4;
    size_t i = 0;
    for (; i + 8 <= h->nbuf; i += 8) x = rotl64(x ^ round64(0, rd64(h->buf + i)), 27) * P1 + P4;
    for (; i < h->nbuf; i++) x = rotl64(x ^ (h->buf[i] * P5), 11) * P1;
    x ^= x >> 33;
    x *= P2;
    x ^= x >> 29;
    x *= P3;
    x ^= x >> 32;
    return x;
}

/* ------------------------------------------------------- output files --- */

/* The folder of path, for statvfs and the temporary file. */
static void dir_of(const char *path, char *dir, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, cap, ".");
    else if (slash == path)
        snprintf(dir, cap, "/");
    else
        snprintf(dir, cap, "%.*s", (int)(slash - path), path);
}

int gk_quant_check_space(const char *path, uint64_t need, uint64_t free_override, gk_err *err) {
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    uint64_t avail = free_override;
    if (!avail) {
        struct statvfs sv;
        if (statvfs(dir, &sv) != 0)
            return gk_fail(err, "%s: cannot query free space: %s", dir, strerror(errno));
        avail = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
    }
    if (avail < need) {
        char a[32], b[32];
        gk_format_bytes(need, a, sizeof a);
        gk_format_bytes(avail, b, sizeof b);
        return gk_fail(err,
                       "not enough free disk space in %s: the output needs %s (%llu bytes), "
                       "%s are free",
                       dir, a, (unsigned long long)need, b);
    }
    return 0;
}

uint64_t gk_quant_file_bytes(const gk_quant_out_tensor *t, int64_t n, uint64_t header_bytes) {
    uint64_t total = header_bytes;
    for (int64_t i = 0; i < n; i++) {
        uint64_t ne = 1;
        for (uint32_t d = 1; d < t[i].n_dims; d++) ne *= (uint64_t)t[i].ne[d];
        uint64_t bytes = gk_row_size(t[i].type, t[i].ne[0]) * ne;
        total += (bytes + GK_GGUF_DEFAULT_ALIGNMENT - 1) / GK_GGUF_DEFAULT_ALIGNMENT *
                 GK_GGUF_DEFAULT_ALIGNMENT;
    }
    return total;
}

/* Re-reads every tensor of the file at path and compares its checksum. */
static int verify_data(const char *path, const gk_gguf *g, const gk_quant_out_tensor *t, int64_t n,
                       const gk_quant_out_opts *o, gk_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return gk_fail(err, "%s: cannot reopen to verify: %s", path, strerror(errno));
    size_t cap = GK_QUANT_CHUNK;
    uint8_t *buf = gk_malloc(cap, err);
    int rc = buf ? 0 : -1;
    uint64_t total = 0, done = 0;
    for (int64_t i = 0; i < n; i++) total += gk_gguf_tensor_at(g, i)->nbytes;
    for (int64_t i = 0; i < n && rc == 0; i++) {
        const gk_gguf_tensor *gt = gk_gguf_tensor_at(g, i);
        uint64_t off = gk_gguf_data_offset(g) + gt->offset, left = gt->nbytes;
        gk_quant_hash h;
        gk_quant_hash_init(&h);
        while (left > 0 && rc == 0) {
            size_t want = left < cap ? (size_t)left : cap;
            ssize_t r = pread(fd, buf, want, (off_t)off);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                rc = gk_fail(err, "%s: reading back tensor '%s' failed: %s", path, gt->name,
                             r < 0 ? strerror(errno) : "unexpected end of file");
                break;
            }
            gk_quant_hash_update(&h, buf, (size_t)r);
            off += (uint64_t)r;
            left -= (uint64_t)r;
            done += (uint64_t)r;
            if (o->progress) o->progress(o->progress_ud, "verify", done, total);
            if (o->cancel && *o->cancel) rc = gk_fail(err, "interrupted");
        }
        if (rc == 0 && gk_quant_hash_final(&h) != t[i].hash)
            rc = gk_fail(err,
                         "%s: tensor '%s' reads back different from what was written "
                         "(disk or file system error?)",
                         path, gt->name);
        posix_fadvise(fd, (off_t)(gk_gguf_data_offset(g) + gt->offset), (off_t)gt->nbytes,
                      POSIX_FADV_DONTNEED);
    }
    free(buf);
    close(fd);
    return rc;
}

/* Checks the table of the file just written against what was asked for. */
static int verify_file(const char *path, const gk_quant_out_tensor *t, int64_t n,
                       const gk_quant_out_opts *o, gk_err *err) {
    gk_gguf *g = gk_gguf_open(path, err);
    if (!g) {
        gk_err_prefix(err, "the written file does not read back");
        return -1;
    }
    int rc = 0;
    if (gk_gguf_n_tensors(g) != n)
        rc = gk_fail(err, "%s: holds %lld tensors, %lld were written", path,
                     (long long)gk_gguf_n_tensors(g), (long long)n);
    for (int64_t i = 0; i < n && rc == 0; i++) {
        const gk_gguf_tensor *gt = gk_gguf_tensor_at(g, i);
        bool same =
            strcmp(gt->name, t[i].name) == 0 && gt->type == t[i].type && gt->n_dims == t[i].n_dims;
        for (uint32_t d = 0; same && d < t[i].n_dims; d++) same = gt->ne[d] == t[i].ne[d];
        if (!same)
            rc = gk_fail(err, "%s: tensor %lld reads back as '%s' (%s), expected '%s' (%s)", path,
                         (long long)i, gt->name, gk_type_name(gt->type), t[i].name,
                         gk_type_name(t[i].type));
    }
    if (rc == 0 && o->verify_data) rc = verify_data(path, g, t, n, o, err);
    gk_gguf_close(g);
    return rc;
}

int gk_quant_write_verified(gk_gguf_writer *w, const char *path, const gk_quant_out_tensor *t,
                            int64_t n, const gk_quant_out_opts *o, gk_err *err) {
    /* The writer renames its own temporary file onto tmp only when complete;
     * tmp is created first so that its name is ours alone. */
    size_t len = strlen(path) + 16;
    char *tmp = gk_malloc(len, err);
    if (!tmp) return -1;
    snprintf(tmp, len, "%s.part.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        gk_fail(err, "%s: cannot create a temporary file beside it: %s", path, strerror(errno));
        free(tmp);
        return -1;
    }
    close(fd);
    int rc = gk_gguf_write(w, tmp, err);
    if (rc == 0) rc = verify_file(tmp, t, n, o, err);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = gk_fail(err, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (rc != 0) unlink(tmp);
    free(tmp);
    return rc;
}

/* ----------------------------------------------------------- quantize --- */

gk_quantize_params gk_quantize_default_params(void) {
    gk_quantize_params p = {0};
    p.policy.type = GK_TYPE_Q8_0;
    p.out.verify_data = true;
    return p;
}

/* One input tensor on its way to the output. */
typedef struct qjob {
    struct qctx *ctx;
    const gk_gguf_tensor *in;
    gk_quant_out_tensor *out;
} qjob;

typedef struct qctx {
    int fd;
    uint64_t data_offset;
    gk_quant_rows *rows;
    uint8_t *src, *dst; /* chunk buffers */
    size_t src_cap, dst_cap;
    uint64_t done, total;
    const gk_quant_out_opts *o;
} qctx;

static int grow(uint8_t **buf, size_t *cap, size_t need, gk_err *err) {
    if (need <= *cap) return 0;
    free(*buf);
    *buf = gk_malloc(need, err);
    *cap = *buf ? need : 0;
    return *buf ? 0 : -1;
}

static int pread_full(int fd, void *buf, size_t n, uint64_t off, const char *what, gk_err *err) {
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return gk_fail(err, "%s: read failed at offset %llu: %s", what, (unsigned long long)off,
                           r < 0 ? strerror(errno) : "end of file");
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int produce_tensor(void *ud, gk_gguf_sink *sink, gk_err *err) {
    qjob *j = ud;
    qctx *c = j->ctx;
    const gk_gguf_tensor *in = j->in;
    int64_t ne0 = in->ne[0], n_rows = 1;
    for (int d = 1; d < GK_GGUF_MAX_DIMS; d++) n_rows *= in->ne[d];
    size_t src_row = gk_row_size(in->type, ne0), dst_row = gk_row_size(j->out->type, ne0);
    size_t big = src_row > dst_row ? src_row : dst_row;
    int64_t step = (int64_t)(GK_QUANT_CHUNK / big);
    if (step < 1) step = 1;
    if (grow(&c->src, &c->src_cap, src_row * (size_t)step, err) != 0 ||
        grow(&c->dst, &c->dst_cap, dst_row * (size_t)step, err) != 0)
        return -1;
    gk_quant_hash h;
    gk_quant_hash_init(&h);
    for (int64_t r = 0; r < n_rows; r += step) {
        int64_t nr = n_rows - r < step ? n_rows - r : step;
        uint64_t off = c->data_offset + in->offset + (uint64_t)r * src_row;
        if (pread_full(c->fd, c->src, src_row * (size_t)nr, off, in->name, err) != 0) return -1;
        if (gk_quant_rows_run(c->rows, c->src, in->type, c->dst, j->out->type, ne0, nr, err) != 0) {
            gk_err_prefix(err, "tensor '%s'", in->name);
            return -1;
        }
        gk_quant_hash_update(&h, c->dst, dst_row * (size_t)nr);
        if (gk_gguf_sink_write(sink, c->dst, dst_row * (size_t)nr, err) != 0) return -1;
        c->done += src_row * (size_t)nr;
        if (c->o->progress) c->o->progress(c->o->progress_ud, "quantize", c->done, c->total);
        if (c->o->cancel && *c->o->cancel) return gk_fail(err, "interrupted");
    }
    j->out->hash = gk_quant_hash_final(&h);
    posix_fadvise(c->fd, (off_t)(c->data_offset + in->offset), (off_t)in->nbytes,
                  POSIX_FADV_DONTNEED);
    return 0;
}

static bool is_float_type(gk_dtype t) {
    return t == GK_TYPE_F32 || t == GK_TYPE_F16 || t == GK_TYPE_BF16;
}

static bool same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* The shape a mix consults, from "<arch>.block_count", ".expert_count" and the
 * head counts (absent keys: 0, which the mix rules read as "not 8 experts"). */
static int model_shape(const gk_gguf *g, gk_quant_policy *pol, gk_err *err) {
    gk_str arch = {0};
    if (gk_gguf_get_str(g, "general.architecture", &arch, err) < 0) return -1;
    char a[64], key[128];
    snprintf(a, sizeof a, "%.*s", (int)(arch.len < 63 ? arch.len : 63), arch.ptr ? arch.ptr : "");
    uint32_t nl = 0, ne = 0, nh = 0, nkv = 0;
    snprintf(key, sizeof key, "%s.block_count", a);
    if (gk_gguf_get_u32(g, key, &nl, err) < 0) return -1;
    snprintf(key, sizeof key, "%s.expert_count", a);
    if (gk_gguf_get_u32(g, key, &ne, err) < 0) return -1;
    snprintf(key, sizeof key, "%s.attention.head_count", a);
    if (gk_gguf_get_u32(g, key, &nh, err) < 0) return -1;
    snprintf(key, sizeof key, "%s.attention.head_count_kv", a);
    if (gk_gguf_get_u32(g, key, &nkv, err) < 0) return -1;
    if (nl == 0 || nl > 100000)
        return gk_fail(err, "the mix needs the layer count (%s.block_count), which is %s", a,
                       nl ? "out of range" : "missing");
    pol->n_layer = (int)nl;
    pol->n_expert = ne <= 1024 ? (int)ne : 0;
    pol->n_gqa = nh && nkv && nh % nkv == 0 ? (int)(nh / nkv) : 1;
    pol->tied_output = gk_gguf_find_tensor(g, "output.weight") == NULL;
    return 0;
}

int gk_quantize(const char *in_path, const char *out_path, const gk_quantize_params *p,
                gk_err *err) {
    gk_quant_policy polv = p->policy;
    const gk_quant_policy *pol = &polv;
    if (!gk_quant_type_ok(pol->type)) {
        char list[128];
        gk_quant_type_list(list, sizeof list);
        return gk_fail(err, "cannot write type %s (the types the engine runs are %s)",
                       gk_type_name(pol->type), list);
    }
    if (same_file(in_path, out_path))
        return gk_fail(err, "%s: the output would overwrite the input", out_path);
    gk_gguf *g = gk_gguf_open(in_path, err);
    if (!g) return -1;
    if (pol->mix != GK_MIX_NONE && model_shape(g, &polv, err) != 0) {
        gk_gguf_close(g);
        return -1;
    }
    int64_t n = gk_gguf_n_tensors(g);
    qctx ctx = {.fd = -1, .o = &p->out, .data_offset = gk_gguf_data_offset(g)};
    qjob *jobs = gk_calloc((size_t)n, sizeof *jobs, err);
    gk_quant_out_tensor *outs = gk_calloc((size_t)n, sizeof *outs, err);
    gk_gguf_writer *w = NULL;
    int rc = -1;
    if (!jobs || !outs) goto done;

    /* Plan every tensor, and fail on anything wrong before writing a byte. */
    for (int64_t i = 0; i < n; i++) {
        const gk_gguf_tensor *t = gk_gguf_tensor_at(g, i);
        gk_dtype to = gk_quant_choose(pol, t->name, t->n_dims, t->ne[0], t->type, t->type);
        if (to != t->type && !is_float_type(t->type)) {
            if (!p->allow_requantize) {
                gk_fail(err,
                        "%s: tensor '%s' is already %s; re-quantizing it loses more "
                        "precision (allow it with --allow-requantize, or start from an "
                        "f32/f16/bf16 file)",
                        in_path, t->name, gk_type_name(t->type));
                goto done;
            }
            if (!gk_type_traits_of(t->type)->to_float) {
                gk_fail(err, "%s: tensor '%s': cannot decode type %s", in_path, t->name,
                        gk_type_name(t->type));
                goto done;
            }
        }
        jobs[i] = (qjob){&ctx, t, &outs[i]};
        outs[i] = (gk_quant_out_tensor){.name = t->name, .type = to, .n_dims = t->n_dims};
        memcpy(outs[i].ne, t->ne, sizeof outs[i].ne);
        ctx.total += t->nbytes;
    }
    uint64_t header = gk_gguf_data_offset(g) + (1u << 20);
    if (gk_quant_check_space(out_path, gk_quant_file_bytes(outs, n, header),
                             p->out.free_disk_override, err) != 0)
        goto done;

    ctx.fd = open(in_path, O_RDONLY | O_CLOEXEC);
    if (ctx.fd < 0) {
        gk_fail(err, "%s: cannot open: %s", in_path, strerror(errno));
        goto done;
    }
    if (!(ctx.rows = gk_quant_rows_new(p->out.n_threads, err))) goto done;
    if (!(w = gk_gguf_writer_new(err))) goto done;
    if (gk_gguf_copy_kv(w, g, err) != 0) goto done;
    int ftype = gk_quant_policy_file_type(pol);
    if (ftype >= 0) gk_gguf_set_u32(w, "general.file_type", (uint32_t)ftype);
    if (!is_float_type(pol->type)) gk_gguf_set_u32(w, "general.quantization_version", 2);
    for (int64_t i = 0; i < n; i++)
        if (gk_gguf_add_tensor_fn(w, outs[i].name, outs[i].type, outs[i].n_dims, outs[i].ne,
                                  produce_tensor, &jobs[i], err) != 0)
            goto done;
    rc = gk_quant_write_verified(w, out_path, outs, n, &p->out, err);
done:
    gk_gguf_writer_free(w);
    gk_quant_rows_free(ctx.rows);
    if (ctx.fd >= 0) close(ctx.fd);
    free(ctx.src);
    free(ctx.dst);
    free(jobs);
    free(outs);
    gk_gguf_close(g);
    return rc;
}
