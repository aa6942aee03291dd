/*
 * tp.c - the tensor-parallel split of a model over the ranks of a process group
 * (see "distributed" in grok.h for the scheme). gk_tp_plan decides each rank's
 * counts from the hyper-parameters and refuses a process count that cannot
 * split the model; gk_tp_cut copies this rank's slices of a whole file into
 * one allocation (rows of a matrix, or columns on block boundaries), reading
 * them with pread so that the rest of the file never counts against the rank. A per-rank file
 * written by `grok shard` already holds the slices; its keys say which rank of how many it belongs
 * to.
 */
#include "dist/dist.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

void gk_tp_range(uint64_t n_total, int r, int size, uint64_t *lo, uint64_t *n) {
    int64_t a, b;
    gk_split((int64_t)n_total, r, size, &a, &b);
    *lo = (uint64_t)a;
    *n = (uint64_t)(b - a);
}

void gk_tp_hash_init(gk_tp_hasher *s) {
    *s = (gk_tp_hasher){.h = GK_DIST_HASH_INIT};
}

static inline uint64_t mix(uint64_t h, uint64_t w) {
    h = (h ^ w) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

void gk_tp_hash_update(gk_tp_hasher *s, const void *data, size_t n) {
    const uint8_t *p = data;
    while (n && s->n_part) { /* finish a word begun by the last update */
        s->part[s->n_part++] = *p++, n--;
        if (s->n_part == 8) {
            uint64_t w;
            memcpy(&w, s->part, 8);
            s->h = mix(s->h, w);
            s->n_part = 0;
        }
    }
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        s->h = mix(s->h, w);
    }
    while (n--) s->part[s->n_part++] = *p++;
}

uint64_t gk_tp_hash_final(gk_tp_hasher *s) {
    uint64_t h = s->h;
    for (int i = 0; i < s->n_part; i++) h = (h ^ s->part[i]) * 0x100000001b3ull;
    return mix(h, (uint64_t)s->n_part);
}

/* Columns of a matrix of this type split size ways fall on block boundaries. */
static bool cols_split_ok(const gk_gguf *g, const char *name, int64_t cols, int size) {
    const gk_gguf_tensor *t = gk_gguf_find_tensor(g, name);
    if (!t || !gk_type_traits_of(t->type)) return true; /* binding reports it */
    int64_t bs = gk_type_traits_of(t->type)->blck_size;
    return cols % size == 0 && (cols / size) % bs == 0;
}

/* n divides the KV heads and the hidden widths, and the column slices of the
 * matrices whose products are summed fall on quantization block boundaries. */
static bool split_ok(const gk_model *m, int n) {
    const gk_hparams *hp = &m->hp;
    const int64_t nq = (int64_t)hp->n_head * hp->head_dim;
    if (hp->n_head_kv % (uint32_t)n || hp->n_ff_exp % (uint32_t)n) return false;
    /* the experts' down matrices: one stack, or one tensor per expert (older Grok-1
     * files), which must give the same chunks as the stack they are bound as */
    const char *down_exps = gk_gguf_find_tensor(m->gguf, "blk.0.ffn_down_exps.weight")
                                ? "blk.0.ffn_down_exps.weight"
                                : "blk.0.ffn_down.0.weight";
    if (!cols_split_ok(m->gguf, "blk.0.attn_output.weight", nq, n) ||
        !cols_split_ok(m->gguf, down_exps, hp->n_ff_exp, n))
        return false;
    if (gk_gguf_find_tensor(m->gguf, "blk.0.ffn_down.weight") &&
        (hp->n_ff % (uint32_t)n || !cols_split_ok(m->gguf, "blk.0.ffn_down.weight", hp->n_ff, n)))
        return false;
    return true;
}

static bool count_ok(const gk_model *m, int n) {
    if (m->tp.shard_file) /* the file's slices are what they are */
        return m->hp.n_head_kv % (uint32_t)n == 0 && m->hp.n_ff_exp % (uint32_t)n == 0;
    return split_ok(m, n);
}

/* The chunks of the summation tree: the largest count that could split the
 * model (n_head_kv for the Grok models), at most GK_TP_MAX_CHUNKS. The tensor
 * types of a per-rank file are the whole model's, so every rank finds the same. */
static uint32_t sum_chunks(const gk_model *m) {
    for (uint32_t n = m->hp.n_head_kv < GK_TP_MAX_CHUNKS ? m->hp.n_head_kv : GK_TP_MAX_CHUNKS;
         n > 1; n--)
        if (split_ok(m, (int)n)) return n;
    return 1;
}

int gk_tp_plan(gk_model *m, gk_err *err) {
    gk_tp *tp = &m->tp;
    const gk_hparams *hp = &m->hp;
    uint32_t count = 0, rank = 0;
    int rc = gk_gguf_get_u32(m->gguf, GK_SHARD_KEY_COUNT, &count, err);
    if (rc < 0 || gk_gguf_get_u32(m->gguf, GK_SHARD_KEY_RANK, &rank, err) < 0) return -1;
    bool is_shard = rc == 1;
    if (is_shard && !tp->shard_file)
        return gk_fail(err,
                       "this is the file of rank %u of a %u-rank set written by grok shard, "
                       "not a whole model: run `mpirun -np %u grok ... -m DIR` with the "
                       "directory that holds the set",
                       rank, count, count);
    if (!is_shard && tp->shard_file)
        return gk_fail(err, "not a per-rank file written by grok shard (no %s key)",
                       GK_SHARD_KEY_COUNT);
    if (is_shard) {
        if (count != (uint32_t)tp->size || rank != (uint32_t)tp->rank)
            return gk_fail(err,
                           "per-rank file of rank %u of %u, but this is rank %d of %d "
                           "processes (write the set with grok shard --ranks %d)",
                           rank, count, tp->rank, tp->size, tp->size);
        /* verify the slices against the checksum the writer recorded */
        uint64_t want = 0;
        if (gk_gguf_get_u64(m->gguf, GK_SHARD_KEY_DATA, &want, err) != 1)
            return gk_fail(err, "per-rank file without a valid %s key", GK_SHARD_KEY_DATA);
        gk_tp_hasher hs;
        gk_tp_hash_init(&hs);
        for (int64_t i = 0; i < gk_gguf_n_tensors(m->gguf); i++) {
            const gk_gguf_tensor *t = gk_gguf_tensor_at(m->gguf, i);
            gk_tp_hash_update(&hs, t->data, (size_t)t->nbytes);
        }
        uint64_t h = gk_tp_hash_final(&hs);
        if (h != want)
            return gk_fail(err,
                           "per-rank file is corrupt: its tensor data does not match its "
                           "checksum (%016llx, recorded %016llx)",
                           (unsigned long long)h, (unsigned long long)want);
    }
    if (!count_ok(m, tp->size)) {
        char valid[256];
        int len = 0;
        for (uint32_t n = 1; n <= hp->n_head_kv && len < (int)sizeof valid - 16; n++)
            if (count_ok(m, (int)n))
                len +=
                    snprintf(valid + len, sizeof valid - (size_t)len, "%s%u", len ? ", " : "", n);
        return gk_fail(err,
                       "cannot split this model over %d processes: the count must divide "
                       "the %u KV heads and the hidden widths, with column slices on "
                       "quantization block boundaries; valid process counts: %s",
                       tp->size, hp->n_head_kv, len ? valid : "1");
    }
    const uint32_t N = (uint32_t)tp->size;
    tp->n_head = hp->n_head / N;
    tp->n_head_kv = hp->n_head_kv / N;
    tp->n_ff_exp = hp->n_ff_exp / N;
    tp->n_ff = hp->n_ff / N;
    tp->sum_g = sum_chunks(m);
    tp->sum_k = tp->sum_g % N == 0 ? tp->sum_g / N : 1;
    return 0;
}

int gk_tp_vocab(gk_model *m, int64_t n_rows, gk_err *err) {
    gk_tp *tp = &m->tp;
    gk_hparams *hp = &m->hp;
    if (!tp->shard_file) {
        hp->n_vocab = (uint32_t)n_rows;
        uint64_t lo, n;
        gk_tp_range(hp->n_vocab, tp->rank, tp->size, &lo, &n);
        tp->v_lo = (uint32_t)lo, tp->v_n = (uint32_t)n;
        return 0;
    }
    uint32_t nv = 0, lo = 0;
    if (gk_gguf_get_u32(m->gguf, GK_SHARD_KEY_VOCAB, &nv, err) != 1 ||
        gk_gguf_get_u32(m->gguf, GK_SHARD_KEY_VLO, &lo, err) != 1)
        return gk_fail(err, "per-rank file without valid %s and %s keys", GK_SHARD_KEY_VOCAB,
                       GK_SHARD_KEY_VLO);
    uint64_t elo, en;
    gk_tp_range(nv, tp->rank, tp->size, &elo, &en);
    if (nv < 1 || nv > INT32_MAX || lo != elo || (uint64_t)n_rows != en)
        return gk_fail(err,
                       "per-rank file: its vocabulary slice (%u + %lld rows of %u) is not "
                       "rank %d's",
                       lo, (long long)n_rows, nv, tp->rank);
    hp->n_vocab = nv;
    tp->v_lo = lo, tp->v_n = (uint32_t)n_rows;
    return 0;
}

/* Reading a slice: pread from the file, so that only the slice's bytes ever
 * count against this process (faults on the map would bring whole page-cache
 * folios, up to megabytes, across every slice boundary). */
typedef struct {
    int fd;
    const uint8_t *base; /* the map's first byte (file offset 0) */
    size_t map_size;     /* bytes of that file */
    const char *path;
    uint8_t *dst; /* next free byte of the store */
    size_t need;  /* sizing pass: bytes the store needs */
    bool sizing;
} cutter;

static int read_at(cutter *k, void *dst, const uint8_t *src, size_t n, gk_err *err) {
    if (src < k->base || (size_t)(src - k->base) >= k->map_size) {
        /* not in the first file: a later shard of a split model, or experts that
         * the loader copied out of an older per-expert file */
        memcpy(dst, src, n);
        return 0;
    }
    size_t off = (size_t)(src - k->base);
    while (n) {
        ssize_t r = pread(k->fd, dst, n, (off_t)off);
        if (r <= 0)
            return gk_fail(err, "%s: reading %zu bytes at offset %zu: %s", k->path, n, off,
                           r < 0 ? strerror(errno) : "unexpected end of file");
        dst = (uint8_t *)dst + r, off += (size_t)r, n -= (size_t)r;
    }
    return 0;
}

/* Rows [lo, lo + n) of every matrix of w, copied into the store. */
static int cut_rows(cutter *k, gk_weight *w, int64_t lo, int64_t n, gk_err *err) {
    size_t nb = (size_t)n * w->nb_row;
    if (k->sizing) {
        k->need += nb * (size_t)w->ne[2] + 64;
        return 0;
    }
    uint8_t *out = k->dst;
    for (int64_t e = 0; e < w->ne[2]; e++)
        if (read_at(k, out + (size_t)e * nb,
                    w->data + (size_t)e * w->nb_mat + (size_t)lo * w->nb_row, nb, err) < 0)
            return -1;
    w->data = out;
    w->ne[1] = n;
    w->nb_mat = nb;
    k->dst = out + (nb * (size_t)w->ne[2] + 63) / 64 * 64;
    return 0;
}

/* Columns [lo, lo + n) of every row of w, copied into the store. */
static int cut_cols(cutter *k, gk_weight *w, int64_t lo, int64_t n, gk_err *err) {
    int64_t bs = gk_type_traits_of(w->type)->blck_size;
    if (lo % bs || n % bs)
        return gk_fail(err,
                       "tensor '%s' (%s, blocks of %lld values): columns %lld..%lld do not "
                       "fall on block boundaries",
                       w->name, gk_type_name(w->type), (long long)bs, (long long)lo,
                       (long long)(lo + n));
    size_t off = gk_row_size(w->type, lo), nb = gk_row_size(w->type, n);
    int64_t rows = w->ne[1] * w->ne[2];
    if (k->sizing) {
        k->need += (size_t)rows * nb + 64;
        return 0;
    }
    uint8_t *out = k->dst;
    for (int64_t r = 0; r < rows; r++)
        if (read_at(k, out + (size_t)r * nb, w->data + (size_t)r * w->nb_row + off, nb, err) < 0)
            return -1;
    w->data = out;
    w->ne[0] = n;
    w->nb_row = nb;
    w->nb_mat = nb * (size_t)w->ne[1];
    k->dst = out + ((size_t)rows * nb + 63) / 64 * 64;
    return 0;
}

static int cut_all(gk_model *m, cutter *k, gk_err *err) {
    gk_tp *tp = &m->tp;
    const gk_hparams *hp = &m->hp;
    const int r = tp->rank;
    const int64_t hd = hp->head_dim, lq = (int64_t)tp->n_head * hd,
                  lkv = (int64_t)tp->n_head_kv * hd, lF = tp->n_ff_exp, lFd = tp->n_ff;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        gk_layer *L = &m->layers[l];
        if (cut_rows(k, &L->wq, r * lq, lq, err) < 0 ||
            cut_rows(k, &L->wk, r * lkv, lkv, err) < 0 ||
            cut_rows(k, &L->wv, r * lkv, lkv, err) < 0 ||
            cut_cols(k, &L->wo, r * lq, lq, err) < 0 ||
            cut_rows(k, &L->gate_exps, r * lF, lF, err) < 0 ||
            cut_rows(k, &L->up_exps, r * lF, lF, err) < 0 ||
            cut_cols(k, &L->down_exps, r * lF, lF, err) < 0)
            return -1;
        if (L->ffn_gate.data && (cut_rows(k, &L->ffn_gate, r * lFd, lFd, err) < 0 ||
                                 cut_rows(k, &L->ffn_up, r * lFd, lFd, err) < 0 ||
                                 cut_cols(k, &L->ffn_down, r * lFd, lFd, err) < 0))
            return -1;
    }
    if (cut_rows(k, &m->tok_embd, tp->v_lo, tp->v_n, err) < 0) return -1;
    if (hp->tied_output)
        m->output = m->tok_embd;
    else if (cut_rows(k, &m->output, tp->v_lo, tp->v_n, err) < 0)
        return -1;
    return 0;
}

int gk_tp_cut(gk_model *m, const char *path, gk_err *err) {
    gk_tp *tp = &m->tp;
    if (tp->size == 1 || tp->shard_file) return 0;
    const gk_gguf_tensor *t0 = gk_gguf_tensor_at(m->gguf, 0);
    cutter k = {.fd = -1,
                .path = path,
                .sizing = true,
                .base = (const uint8_t *)t0->data - gk_gguf_data_offset(m->gguf) - t0->offset,
                /* a split model's tensors lie in several files: copy from the maps */
                .map_size = gk_gguf_n_shards(m->gguf) == 1 ? gk_gguf_file_size(m->gguf) : 0};
    /* a copy of the model keeps the sizing pass's views untouched */
    gk_layer *saved = gk_malloc(m->hp.n_layer * sizeof *saved, err);
    if (!saved) return -1;
    memcpy(saved, m->layers, m->hp.n_layer * sizeof *saved);
    gk_weight se = m->tok_embd, so = m->output;
    int rc = cut_all(m, &k, err);
    memcpy(m->layers, saved, m->hp.n_layer * sizeof *saved);
    m->tok_embd = se, m->output = so;
    free(saved);
    if (rc < 0) return -1;
    tp->store = gk_malloc_aligned(k.need, err);
    tp->store_bytes = k.need;
    if (!tp->store) return gk_err_prefix(err, "this rank's %zu MiB of weights", k.need >> 20), -1;
    k.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (k.fd < 0) return gk_fail(err, "%s: cannot open: %s", path, strerror(errno));
    k.sizing = false;
    k.dst = tp->store;
    rc = cut_all(m, &k, err);
    close(k.fd);
    return rc;
}

uint64_t gk_tp_file_ident(const gk_gguf *g) {
    uint64_t size = gk_gguf_file_size(g);
    uint64_t x = gk_dist_hash(GK_DIST_HASH_INIT, &size, sizeof size);
    for (int64_t i = 0; i < gk_gguf_n_tensors(g); i++) {
        const gk_gguf_tensor *t = gk_gguf_tensor_at(g, i);
        x = gk_dist_hash(x, t->name, strlen(t->name));
        x = gk_dist_hash(x, &t->offset, sizeof t->offset);
        x = gk_dist_hash(x, &t->type, sizeof t->type);
    }
    if (gk_gguf_n_tensors(g)) { /* the first 4 KiB of data: one page, on every rank */
        const gk_gguf_tensor *t0 = gk_gguf_tensor_at(g, 0);
        x = gk_dist_hash(x, t0->data, t0->nbytes < 4096 ? (size_t)t0->nbytes : 4096);
    }
    return x;
}

void gk_tp_identity(gk_model *m) {
    gk_tp *tp = &m->tp;
    uint64_t h = gk_dist_hash(GK_DIST_HASH_INIT, &m->hp, sizeof m->hp);
    h = gk_dist_hash(h, &m->numerics, sizeof m->numerics);
    tp->ident[0] = h;
    uint64_t set = 0;
    if (tp->shard_file && gk_gguf_get_u64(m->gguf, GK_SHARD_KEY_SET, &set, NULL) == 1)
        tp->ident[1] = set;
    else
        tp->ident[1] = gk_tp_file_ident(m->gguf);
    tp->ident[2] = (uint64_t)tp->size;
}
