/*
 * gguf.c - GGUF v2/v3 reader and writer. See gguf.h for the file layout.
 *
 * Reader: the header is parsed in one pass by a bounds-checked cursor over the
 * mapped (or caller's) bytes. Strings and numeric arrays point into those bytes;
 * only keys and tensor names (NUL-terminated copies) and the index arrays of
 * string and nested arrays are allocated, from an arena that gk_gguf_close frees.
 * Each value is first walked by a validating pass that allocates nothing, so a
 * count read from the file never sizes an allocation before the bytes it claims
 * are known to be there; kv and tensor tables grow as entries are parsed for the
 * same reason.
 *
 * Writer: metadata is kept serialized (type tag + value bytes, exactly as it
 * goes to the file); tensors are kept by pointer or as a producer callback.
 * gk_gguf_write streams the header and the data through a bounded buffer into a
 * temporary file, then fsyncs and renames it into place.
 */
#include "format/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* GGUF is little-endian and the reader hands out numeric arrays in place, so a
 * big-endian host would need a conversion layer that does not exist. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "gguf.c assumes a little-endian host");

typedef unsigned long long ull; /* for printf */

/* Bytes of each scalar type (0 for STRING and ARRAY). */
static const uint8_t scalar_size[GK_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

/* Smallest encodings, used to bound counts by the bytes left: a kv is a key
 * length (8), a type (4) and a value of at least one byte; a tensor info is a
 * name length (8), n_dims (4), one dimension (8), a type (4), an offset (8).
 * Empty names fit the bound so that they get their own message. */
#define MIN_KV_BYTES 13
#define MIN_TENSOR_BYTES 32

const char *gk_gguf_type_name(uint32_t type) {
    static const char *names[GK_GGUF_TYPE_COUNT] = {"u8",  "i8",  "u16",  "i16",    "u32",
                                                    "i32", "f32", "bool", "string", "array",
                                                    "u64", "i64", "f64"};
    return type < GK_GGUF_TYPE_COUNT ? names[type] : "?";
}

static bool is_pow2(uint64_t x) {
    return x && !(x & (x - 1));
}

/* Rounds x up to a multiple of align (a power of two); false on overflow. */
static bool align_up(uint64_t x, uint64_t align, uint64_t *out) {
    if (!gk_add_u64(x, align - 1, out)) return false;
    *out &= ~(align - 1);
    return true;
}

/* A printable form of n bytes of a name for messages: non-printable bytes as
 * \xNN, cut after 80 characters. */
static const char *show(const char *s, size_t n, char *buf, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (o >= 80) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
    }
    buf[o] = 0;
    return buf;
}

/*
 * Shape and size of a tensor, shared by the reader and the writer so that the
 * writer never produces what the reader rejects: n_dims in 1..4, every ne >= 1,
 * the element count fits int64, the type is a known ggml type, ne[0] is a whole
 * number of blocks, and the byte size fits uint64.
 */
static int check_tensor(const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne,
                        uint64_t *nbytes, gk_err *err) {
    const gk_type_traits *tt = gk_type_traits_of(type);
    if (!tt || !tt->name) return gk_fail(err, "gguf: tensor '%s': unknown type %u", name, type);
    if (n_dims < 1 || n_dims > GK_GGUF_MAX_DIMS)
        return gk_fail(err, "gguf: tensor '%s': n_dims = %u is not in 1..%d", name, n_dims,
                       GK_GGUF_MAX_DIMS);
    uint64_t count = 1;
    for (uint32_t i = 0; i < n_dims; i++) {
        if (ne[i] < 1)
            return gk_fail(err, "gguf: tensor '%s': dimension %u is %lld (must be >= 1)", name, i,
                           (long long)ne[i]);
        if (!gk_mul_u64(count, (uint64_t)ne[i], &count) || count > (uint64_t)INT64_MAX)
            return gk_fail(err, "gguf: tensor '%s': element count overflows int64", name);
    }
    if (ne[0] % tt->blck_size)
        return gk_fail(err,
                       "gguf: tensor '%s': ne[0] = %lld is not a multiple of the block size "
                       "%lld of %s",
                       name, (long long)ne[0], (long long)tt->blck_size, tt->name);
    uint64_t bytes = (uint64_t)(ne[0] / tt->blck_size);
    if (!gk_mul_u64(bytes, tt->type_size, &bytes))
        return gk_fail(err, "gguf: tensor '%s': byte size overflows", name);
    for (uint32_t i = 1; i < n_dims; i++)
        if (!gk_mul_u64(bytes, (uint64_t)ne[i], &bytes))
            return gk_fail(err, "gguf: tensor '%s': byte size overflows", name);
    *nbytes = bytes;
    return 0;
}

/* ------------------------------------------------------------ name index --- */

/* Names sorted, for lookups by binary search and for finding duplicates. Sorting
 * rather than hashing keeps the worst case O(n log n) whatever names a file
 * holds (colliding names cannot slow a hash table to a crawl). */
typedef struct name_ref {
    const char *name;
    int64_t pos;
} name_ref;

static int cmp_ref(const void *a, const void *b) {
    const name_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

/* Sorts the n names name_at(tab, i) into *out; *dup is the position of a name
 * that occurs twice (its later occurrence), or -1. */
static int index_build(name_ref **out, const void *tab, int64_t n,
                       const char *(*name_at)(const void *, int64_t), int64_t *dup, gk_err *err) {
    name_ref *r = gk_malloc((size_t)n * sizeof *r, err);
    if (!r) return -1;
    for (int64_t i = 0; i < n; i++) r[i] = (name_ref){name_at(tab, i), i};
    qsort(r, (size_t)n, sizeof *r, cmp_ref);
    *dup = -1;
    for (int64_t i = 1; i < n && *dup < 0; i++)
        if (strcmp(r[i - 1].name, r[i].name) == 0) *dup = r[i].pos;
    *out = r;
    return 0;
}

/* Position of name among the n sorted names, or -1. */
static int64_t index_find(const name_ref *r, int64_t n, const char *name) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r[mid].name, name);
        if (c == 0) return r[mid].pos;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* ----------------------------------------------------------------- arena --- */

typedef struct arena_blk {
    struct arena_blk *next;
    size_t cap, used;
} arena_blk;

#define ARENA_HDR ((sizeof(arena_blk) + 15) & ~(size_t)15)
#define ARENA_BLOCK ((size_t)1 << 16)

/* 16-byte aligned memory that lives until the arena is freed. Large requests get
 * their own block behind the current one, so its free space is not wasted. */
static void *arena_alloc(arena_blk **head, size_t n, gk_err *err) {
    if (n > SIZE_MAX / 2) return gk_failp(err, "gguf: out of memory (allocating %zu bytes)", n);
    n = (n + 15) & ~(size_t)15;
    arena_blk *b = *head;
    if (b && b->cap - b->used >= n) {
        b->used += n;
        return (char *)b + ARENA_HDR + b->used - n;
    }
    size_t cap = n > ARENA_BLOCK / 4 ? n : ARENA_BLOCK;
    arena_blk *nb = malloc(ARENA_HDR + cap);
    if (!nb) return gk_failp(err, "gguf: out of memory (allocating %zu bytes)", n);
    nb->cap = cap;
    nb->used = n;
    if (b && cap == n) {
        nb->next = b->next;
        b->next = nb;
    } else {
        nb->next = b;
        *head = nb;
    }
    return (char *)nb + ARENA_HDR;
}

static void arena_free(arena_blk *b) {
    while (b) {
        arena_blk *next = b->next;
        free(b);
        b = next;
    }
}

/* ---------------------------------------------------------------- reader --- */

struct gk_gguf {
    gk_mmap map; /* empty for gk_gguf_open_memory */
    const uint8_t *base;
    uint64_t size;
    uint32_t version;
    uint64_t alignment, data_offset;
    int64_t n_kv, n_tensors;
    gk_gguf_kv *kv;
    gk_gguf_tensor *tensors;
    name_ref *kv_index, *tensor_index; /* sorted by name */
    arena_blk *arena;
    /* A split model (gk_gguf_open_split): the other shards, whose tensors are
     * merged into this one's table; shard_path[i] names shard i (0 = this file). */
    struct gk_gguf **shards;
    char **shard_path;
    uint32_t n_shards; /* 1 for a single file */
    uint64_t total_size;
};

/* A bounds-checked cursor. what names the item being read, for messages. */
typedef struct cursor {
    const uint8_t *p;
    uint64_t size, pos;
    gk_err *err;
    const char *what;
} cursor;

static int truncated(cursor *c) {
    return gk_fail(c->err, "gguf: truncated at byte %llu reading %s (the file has %llu bytes)",
                   (ull)c->pos, c->what, (ull)c->size);
}

/* Consumes n bytes and points *out at them. */
static int take(cursor *c, uint64_t n, const uint8_t **out) {
    *out = NULL; /* set on failure too, which spares callers a maybe-uninitialized warning */
    if (c->size - c->pos < n) return truncated(c);
    *out = c->p + c->pos;
    c->pos += n;
    return 0;
}

static int rd_u32(cursor *c, uint32_t *v) {
    const uint8_t *p;
    if (take(c, 4, &p)) return -1;
    memcpy(v, p, 4);
    return 0;
}

static int rd_u64(cursor *c, uint64_t *v) {
    const uint8_t *p;
    if (take(c, 8, &p)) return -1;
    memcpy(v, p, 8);
    return 0;
}

static int rd_str(cursor *c, gk_str *s) {
    uint64_t len;
    const uint8_t *p;
    uint64_t at = c->pos;
    if (rd_u64(c, &len)) return -1;
    if (len > c->size - c->pos)
        return gk_fail(c->err,
                       "gguf: string length %llu at byte %llu exceeds the %llu bytes left, "
                       "reading %s",
                       (ull)len, (ull)at, (ull)(c->size - c->pos), c->what);
    if (take(c, len, &p)) return -1;
    s->ptr = (const char *)p;
    s->len = len;
    return 0;
}

/*
 * Walks a value of the given type without keeping it, checking every length,
 * count, element type and the nesting depth (the number of arrays around it).
 * Every element takes at least one byte, so the walk ends within the file.
 */
static int skip_value(cursor *c, uint32_t type, int depth) {
    const uint8_t *p;
    if (type >= GK_GGUF_TYPE_COUNT)
        return gk_fail(c->err, "gguf: unknown value type %u at byte %llu in %s", type, (ull)c->pos,
                       c->what);
    if (type == GK_GGUF_STRING) {
        gk_str s;
        return rd_str(c, &s);
    }
    if (type != GK_GGUF_ARRAY) return take(c, scalar_size[type], &p);

    if (depth >= GK_GGUF_MAX_DEPTH)
        return gk_fail(c->err, "gguf: arrays nested deeper than %d at byte %llu in %s",
                       GK_GGUF_MAX_DEPTH, (ull)c->pos, c->what);
    uint32_t et;
    uint64_t n, at = c->pos;
    if (rd_u32(c, &et) || rd_u64(c, &n)) return -1;
    if (et >= GK_GGUF_TYPE_COUNT)
        return gk_fail(c->err, "gguf: unknown array element type %u at byte %llu in %s", et,
                       (ull)at, c->what);
    uint64_t left = c->size - c->pos, min_size = scalar_size[et], bytes;
    if (et == GK_GGUF_STRING) min_size = 8;
    if (et == GK_GGUF_ARRAY) min_size = 12;
    if (!gk_mul_u64(n, min_size, &bytes) || bytes > left)
        return gk_fail(c->err,
                       "gguf: array of %llu %s elements at byte %llu does not fit in the %llu "
                       "bytes left, in %s",
                       (ull)n, gk_gguf_type_name(et), (ull)at, (ull)left, c->what);
    if (scalar_size[et]) return take(c, bytes, &p);
    for (uint64_t i = 0; i < n; i++)
        if (skip_value(c, et, depth + 1)) return -1;
    return 0;
}

static void scalar_value(const uint8_t *p, uint32_t type, gk_gguf_value *v) {
    uint8_t u8 = p[0];
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    float f32;
    v->type = (gk_gguf_type)type;
    switch (type) {
    case GK_GGUF_UINT8:
        v->v.u64 = u8;
        break;
    case GK_GGUF_INT8:
        v->v.i64 = (int8_t)u8;
        break;
    case GK_GGUF_BOOL:
        v->v.u64 = u8 != 0;
        break;
    case GK_GGUF_UINT16:
        memcpy(&u16, p, 2), v->v.u64 = u16;
        break;
    case GK_GGUF_INT16:
        memcpy(&u16, p, 2), v->v.i64 = (int16_t)u16;
        break;
    case GK_GGUF_UINT32:
        memcpy(&u32, p, 4), v->v.u64 = u32;
        break;
    case GK_GGUF_INT32:
        memcpy(&u32, p, 4), v->v.i64 = (int32_t)u32;
        break;
    case GK_GGUF_FLOAT32:
        memcpy(&f32, p, 4), v->v.f64 = f32;
        break;
    case GK_GGUF_UINT64:
        memcpy(&u64, p, 8), v->v.u64 = u64;
        break;
    case GK_GGUF_INT64:
        memcpy(&u64, p, 8), v->v.i64 = (int64_t)u64;
        break;
    case GK_GGUF_FLOAT64:
        memcpy(&v->v.f64, p, 8);
        break;
    }
}

/* Reads a value already checked by skip_value; allocates only index arrays. */
static int read_value(gk_gguf *g, cursor *c, uint32_t type, gk_gguf_value *v) {
    const uint8_t *p;
    v->type = (gk_gguf_type)type;
    if (type == GK_GGUF_STRING) return rd_str(c, &v->v.str);
    if (type != GK_GGUF_ARRAY) {
        if (take(c, scalar_size[type], &p)) return -1;
        scalar_value(p, type, v);
        return 0;
    }
    gk_gguf_array *a = &v->v.arr;
    uint32_t et;
    memset(a, 0, sizeof *a);
    if (rd_u32(c, &et) || rd_u64(c, &a->n)) return -1;
    a->type = (gk_gguf_type)et;
    if (scalar_size[et]) return take(c, a->n * scalar_size[et], &a->data);
    if (et == GK_GGUF_STRING) {
        gk_str *s = arena_alloc(&g->arena, a->n * sizeof *s, c->err);
        if (!s) return -1;
        for (uint64_t i = 0; i < a->n; i++)
            if (rd_str(c, &s[i])) return -1;
        a->strs = s;
        return 0;
    }
    gk_gguf_value *e = arena_alloc(&g->arena, a->n * sizeof *e, c->err);
    if (!e) return -1;
    for (uint64_t i = 0; i < a->n; i++)
        if (read_value(g, c, GK_GGUF_ARRAY, &e[i])) return -1;
    a->elems = e;
    return 0;
}

/* A NUL-terminated arena copy of a key or tensor name, which must be non-empty,
 * hold no NUL byte and (for names) be at most max bytes long. */
static char *copy_name(gk_gguf *g, cursor *c, const gk_str *s, uint64_t max, const char *kind,
                       int64_t i) {
    char buf[128];
    if (s->len == 0) return gk_failp(c->err, "gguf: %s %lld has an empty name", kind, (long long)i);
    if (memchr(s->ptr, 0, s->len))
        return gk_failp(c->err, "gguf: %s %lld: name '%s' contains a NUL byte", kind, (long long)i,
                        show(s->ptr, s->len, buf, sizeof buf));
    if (s->len > max)
        return gk_failp(c->err, "gguf: %s %lld: name '%s' is %llu bytes long (at most %llu)", kind,
                        (long long)i, show(s->ptr, s->len, buf, sizeof buf), (ull)s->len, (ull)max);
    char *out = arena_alloc(&g->arena, s->len + 1, c->err);
    if (!out) return NULL;
    memcpy(out, s->ptr, s->len);
    out[s->len] = 0;
    return out;
}

/* Grows a table of n entries of size sz to hold one more; the count n is bounded
 * by the file size, so doubling cannot overflow. */
static int grow(void **tab, int64_t n, int64_t *cap, size_t sz, gk_err *err) {
    if (n < *cap) return 0;
    int64_t nc = *cap ? *cap * 2 : 64;
    void *p = realloc(*tab, (size_t)nc * sz);
    if (!p)
        return gk_fail(err, "gguf: out of memory (growing a table to %lld entries)", (long long)nc);
    *tab = p;
    *cap = nc;
    return 0;
}

static const char *kv_name_at(const void *tab, int64_t i) {
    return ((const gk_gguf_kv *)tab)[i].key;
}
static const char *tensor_name_at(const void *tab, int64_t i) {
    return ((const gk_gguf_tensor *)tab)[i].name;
}

static int parse_header(gk_gguf *g, cursor *c) {
    const uint8_t *magic;
    char buf[128];
    c->what = "the magic";
    if (take(c, 4, &magic)) return -1;
    if (memcmp(magic, "FUGG", 4) == 0)
        return gk_fail(c->err, "gguf: byte-swapped magic 'FUGG' (a big-endian file?) is not "
                               "supported");
    if (memcmp(magic, "GGUF", 4) != 0)
        return gk_fail(c->err, "gguf: bad magic '%s' (not a GGUF file)",
                       show((const char *)magic, 4, buf, sizeof buf));
    c->what = "the version";
    if (rd_u32(c, &g->version)) return -1;
    uint32_t v = g->version, swapped = __builtin_bswap32(v);
    if (v != 2 && v != 3 && swapped >= 1 && swapped <= 3)
        return gk_fail(c->err,
                       "gguf: big-endian GGUF (version %u with its bytes swapped) is not "
                       "supported",
                       swapped);
    if (v == 1)
        return gk_fail(c->err, "gguf: unsupported version 1 (GGUF v1 used 32-bit counts; "
                               "convert the file with a current llama.cpp)");
    if (v != 2 && v != 3) return gk_fail(c->err, "gguf: unsupported version %u", v);
    uint64_t n_tensors, n_kv;
    c->what = "the tensor count";
    if (rd_u64(c, &n_tensors)) return -1;
    c->what = "the kv count";
    if (rd_u64(c, &n_kv)) return -1;
    uint64_t left = c->size - c->pos;
    if (n_kv > left / MIN_KV_BYTES)
        return gk_fail(c->err, "gguf: n_kv = %llu cannot fit in the %llu bytes after the header",
                       (ull)n_kv, (ull)left);
    if (n_tensors > left / MIN_TENSOR_BYTES)
        return gk_fail(c->err,
                       "gguf: n_tensors = %llu cannot fit in the %llu bytes after the header",
                       (ull)n_tensors, (ull)left);
    g->n_kv = (int64_t)n_kv;
    g->n_tensors = (int64_t)n_tensors;
    return 0;
}

static int parse_kv(gk_gguf *g, cursor *c) {
    char what[192], buf[128];
    int64_t cap = 0;
    for (int64_t i = 0; i < g->n_kv; i++) {
        if (grow((void **)&g->kv, i, &cap, sizeof *g->kv, c->err)) return -1;
        gk_gguf_kv *kv = &g->kv[i];
        gk_str key;
        uint32_t type;
        snprintf(what, sizeof what, "the key of kv %lld", (long long)i);
        c->what = what;
        if (rd_str(c, &key) || !(kv->key = copy_name(g, c, &key, UINT64_MAX, "key", i))) return -1;
        const char *k = show(key.ptr, key.len, buf, sizeof buf);
        snprintf(what, sizeof what, "the type of key '%s'", k);
        if (rd_u32(c, &type)) return -1;
        snprintf(what, sizeof what, "the value of key '%s'", k);
        if (type >= GK_GGUF_TYPE_COUNT)
            return gk_fail(c->err, "gguf: key '%s' has unknown value type %u", k, type);
        uint64_t start = c->pos;
        if (skip_value(c, type, 0)) return -1;
        c->pos = start;
        if (read_value(g, c, type, &kv->value)) return -1;
    }
    int64_t dup;
    if (index_build(&g->kv_index, g->kv, g->n_kv, kv_name_at, &dup, c->err)) return -1;
    if (dup >= 0)
        return gk_fail(c->err, "gguf: duplicate key '%s'",
                       show(g->kv[dup].key, strlen(g->kv[dup].key), buf, sizeof buf));
    return 0;
}

/* general.alignment: a u32 power of two, 32 when absent (as llama.cpp), and a
 * multiple of 8 (as the GGUF spec says): with a smaller one, tensor data can sit
 * at an odd address, where the kernels' f16 and f32 loads are misaligned. */
static int parse_alignment(gk_gguf *g, gk_err *err) {
    const gk_gguf_value *v = gk_gguf_find(g, "general.alignment");
    g->alignment = GK_GGUF_DEFAULT_ALIGNMENT;
    if (!v) return 0;
    if (v->type != GK_GGUF_UINT32)
        return gk_fail(err, "gguf: general.alignment has type %s (must be u32)",
                       gk_gguf_type_name(v->type));
    if (!is_pow2(v->v.u64))
        return gk_fail(err, "gguf: general.alignment = %llu is not a power of two", (ull)v->v.u64);
    if (v->v.u64 < 8)
        return gk_fail(err, "gguf: general.alignment = %llu is not a multiple of 8", (ull)v->v.u64);
    g->alignment = v->v.u64;
    return 0;
}

static int parse_tensor_info(gk_gguf *g, cursor *c) {
    char what[192], buf[128];
    int64_t cap = 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        if (grow((void **)&g->tensors, i, &cap, sizeof *g->tensors, c->err)) return -1;
        gk_gguf_tensor *t = &g->tensors[i];
        memset(t, 0, sizeof *t);
        gk_str name;
        uint32_t n_dims, type;
        snprintf(what, sizeof what, "the name of tensor %lld", (long long)i);
        c->what = what;
        if (rd_str(c, &name) || !(t->name = copy_name(g, c, &name, GK_GGUF_MAX_NAME, "tensor", i)))
            return -1;
        const char *nm = show(t->name, name.len, buf, sizeof buf);
        snprintf(what, sizeof what, "the shape of tensor '%s'", nm);
        if (rd_u32(c, &n_dims)) return -1;
        if (n_dims < 1 || n_dims > GK_GGUF_MAX_DIMS)
            return gk_fail(c->err, "gguf: tensor '%s': n_dims = %u is not in 1..%d", nm, n_dims,
                           GK_GGUF_MAX_DIMS);
        for (int d = 0; d < GK_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            uint64_t ne;
            if (rd_u64(c, &ne)) return -1;
            t->ne[d] = (int64_t)ne; /* > INT64_MAX turns negative and is rejected below */
        }
        snprintf(what, sizeof what, "the type and offset of tensor '%s'", nm);
        if (rd_u32(c, &type) || rd_u64(c, &t->offset)) return -1;
        t->n_dims = n_dims;
        t->type = (gk_dtype)type;
        if (check_tensor(nm, type, n_dims, t->ne, &t->nbytes, c->err)) return -1;
    }
    return 0;
}

/* Places every tensor in the data section, which starts at the header's end
 * rounded up to the alignment. Overlapping tensors are accepted, as llama.cpp
 * does. */
static int place_tensors(gk_gguf *g, uint64_t header_end, gk_err *err) {
    char buf[128];
    if (!align_up(header_end, g->alignment, &g->data_offset))
        return gk_fail(err, "gguf: data offset overflows");
    if (g->n_tensors == 0) return 0;
    if (g->data_offset > g->size)
        return gk_fail(err,
                       "gguf: the file ends at byte %llu, before its data section at byte %llu",
                       (ull)g->size, (ull)g->data_offset);
    uint64_t data_size = g->size - g->data_offset, end;
    int64_t dup;
    if (index_build(&g->tensor_index, g->tensors, g->n_tensors, tensor_name_at, &dup, err))
        return -1;
    if (dup >= 0)
        return gk_fail(err, "gguf: duplicate tensor '%s'",
                       show(g->tensors[dup].name, strlen(g->tensors[dup].name), buf, sizeof buf));
    for (int64_t i = 0; i < g->n_tensors; i++) {
        gk_gguf_tensor *t = &g->tensors[i];
        const char *nm = show(t->name, strlen(t->name), buf, sizeof buf);
        if (t->offset % g->alignment)
            return gk_fail(err,
                           "gguf: tensor '%s': offset %llu is not a multiple of the alignment %llu",
                           nm, (ull)t->offset, (ull)g->alignment);
        if (!gk_add_u64(t->offset, t->nbytes, &end) || end > data_size)
            return gk_fail(err,
                           "gguf: tensor '%s': offset %llu + size %llu is beyond the end of the "
                           "data section (%llu bytes from byte %llu)",
                           nm, (ull)t->offset, (ull)t->nbytes, (ull)data_size, (ull)g->data_offset);
        t->data = g->base + g->data_offset + t->offset;
    }
    return 0;
}

static gk_gguf *parse(gk_gguf *g, const uint8_t *data, uint64_t size, gk_err *err) {
    g->base = data;
    g->size = size;
    g->n_shards = 1;
    g->total_size = size;
    cursor c = {data, size, 0, err, ""};
    if (parse_header(g, &c) || parse_kv(g, &c) || parse_alignment(g, err) ||
        parse_tensor_info(g, &c) || place_tensors(g, c.pos, err)) {
        gk_gguf_close(g);
        return NULL;
    }
    return g;
}

gk_gguf *gk_gguf_open_memory(const void *data, size_t size, gk_err *err) {
    gk_gguf *g = gk_calloc(1, sizeof *g, err);
    if (!g) return NULL;
    return parse(g, data, size, err);
}

gk_gguf *gk_gguf_open(const char *path, gk_err *err) {
    gk_gguf *g = gk_calloc(1, sizeof *g, err);
    if (!g) return NULL;
    if (gk_mmap_open(&g->map, path, err)) { /* its messages name the path */
        free(g);
        return NULL;
    }
    if (!parse(g, g->map.data, g->map.size, err)) {
        gk_err_prefix(err, "%s", path);
        return NULL;
    }
    return g;
}

void gk_gguf_close(gk_gguf *g) {
    if (!g) return;
    for (uint32_t i = 1; g->shards && i < g->n_shards; i++) gk_gguf_close(g->shards[i]);
    for (uint32_t i = 0; g->shard_path && i < g->n_shards; i++) free(g->shard_path[i]);
    free(g->shards);
    free(g->shard_path);
    gk_mmap_close(&g->map);
    free(g->kv);
    free(g->tensors);
    free(g->kv_index);
    free(g->tensor_index);
    arena_free(g->arena);
    free(g);
}

/* ----------------------------------------------------------- split files --- */

/*
 * llama-gguf-split writes a model as PREFIX-00001-of-0000N.gguf ... each a
 * complete GGUF holding some of the tensors. Every shard carries split.no (u16,
 * 0-based), split.count (u16) and split.tensors.count (i32, the tensors of the
 * whole model); only the first carries the model's metadata. The first shard
 * may hold no tensor at all (--no-tensor-first-split).
 */

/* A split key of g as a u32 (1), absent (0), or -1 with a message naming file. */
static int split_key(const gk_gguf *g, const char *key, const char *file, uint32_t *out,
                     gk_err *err) {
    int r = gk_gguf_get_u32(g, key, out, err);
    if (r < 0) gk_err_prefix(err, "%s", file);
    return r;
}

/* Opens shard i of n (0-based) and checks its split keys against the first's. */
static gk_gguf *open_shard(const char *file, uint32_t i, uint32_t n, uint32_t n_tensors,
                           const gk_gguf *first, gk_err *err) {
    gk_gguf *s = gk_gguf_open(file, err);
    if (!s) {
        gk_err_prefix(err, "shard %u of %u", i + 1, n);
        return NULL;
    }
    uint32_t no = 0, count = 0, nt = 0;
    int r1 = split_key(s, "split.no", file, &no, err);
    int r2 = r1 < 0 ? -1 : split_key(s, "split.count", file, &count, err);
    int r3 = r2 < 0 ? -1 : split_key(s, "split.tensors.count", file, &nt, err);
    if (r1 < 0 || r2 < 0 || r3 < 0) goto fail;
    if (r1 == 0 || r2 == 0 || r3 == 0) {
        gk_fail(err,
                "%s: not a shard of a split model (no split.%s key), but shard %u of %u "
                "was expected here",
                file,
                r1 == 0   ? "no"
                : r2 == 0 ? "count"
                          : "tensors.count",
                i + 1, n);
        goto fail;
    }
    if (count != n) {
        gk_fail(err,
                "%s: split.count is %u, but the first shard says the model has %u shards "
                "(a shard of another split?)",
                file, count, n);
        goto fail;
    }
    if (no != i) {
        gk_fail(err, "%s: split.no is %u (shard %u), but the file name says shard %u", file, no,
                no + 1, i + 1);
        goto fail;
    }
    if (nt != n_tensors) {
        gk_fail(err,
                "%s: split.tensors.count is %u, but the first shard says %u (a shard of "
                "another model?)",
                file, nt, n_tensors);
        goto fail;
    }
    /* Shards after the first carry no metadata; one that names an architecture
     * must name the same one. */
    gk_str a0, a1;
    if (gk_gguf_get_str(s, "general.architecture", &a1, NULL) == 1 &&
        gk_gguf_get_str(first, "general.architecture", &a0, NULL) == 1 &&
        (a0.len != a1.len || memcmp(a0.ptr, a1.ptr, a0.len) != 0)) {
        gk_fail(err,
                "%s: general.architecture '%.*s' differs from the first shard's '%.*s' (a "
                "shard of another model)",
                file, (int)(a1.len > 32 ? 32 : a1.len), a1.ptr, (int)(a0.len > 32 ? 32 : a0.len),
                a0.ptr);
        goto fail;
    }
    return s;
fail:
    gk_gguf_close(s);
    return NULL;
}

/* Appends the tensors of every other shard to the first's table and rebuilds
 * its index; a name in two shards is an error naming both files. */
static int merge_shards(gk_gguf *g, uint32_t n_tensors, gk_err *err) {
    int64_t total = g->n_tensors;
    for (uint32_t i = 1; i < g->n_shards; i++) total += g->shards[i]->n_tensors;
    if (total != (int64_t)n_tensors)
        return gk_fail(err,
                       "split.tensors.count is %u, but the %u shards hold %lld tensors "
                       "(a shard is missing tensors or belongs to another model)",
                       n_tensors, g->n_shards, (long long)total);
    if (total == 0) return 0;
    gk_gguf_tensor *t = realloc(g->tensors, (size_t)total * sizeof *t);
    if (!t) return gk_fail(err, "gguf: out of memory merging %lld tensors", (long long)total);
    g->tensors = t;
    int64_t at = g->n_tensors;
    for (uint32_t i = 1; i < g->n_shards; i++)
        for (int64_t k = 0; k < g->shards[i]->n_tensors; k++) {
            t[at] = g->shards[i]->tensors[k];
            t[at++].shard = i;
        }
    g->n_tensors = total;
    free(g->tensor_index);
    g->tensor_index = NULL;
    int64_t dup;
    if (index_build(&g->tensor_index, g->tensors, total, tensor_name_at, &dup, err)) return -1;
    if (dup >= 0) {
        const gk_gguf_tensor *d = &g->tensors[dup];
        uint32_t other = 0;
        for (int64_t k = 0; k < dup; k++)
            if (strcmp(g->tensors[k].name, d->name) == 0) other = g->tensors[k].shard;
        return gk_fail(err, "tensor '%s' is in both %s and %s", d->name, g->shard_path[other],
                       g->shard_path[d->shard]);
    }
    return 0;
}

gk_gguf *gk_gguf_open_split(const char *path, gk_err *err) {
    gk_gguf *g = gk_gguf_open(path, err);
    if (!g) return NULL;
    uint32_t no = 0, count = 0, n_tensors = 0;
    int r = split_key(g, "split.count", path, &count, err);
    if (r == 0) return g; /* an ordinary file */
    if (r < 0 || split_key(g, "split.no", path, &no, err) < 0 ||
        (r = split_key(g, "split.tensors.count", path, &n_tensors, err)) < 0)
        goto fail;
    if (count == 0) {
        gk_fail(err, "%s: split.count is 0", path);
        goto fail;
    }
    if (r == 0) {
        gk_fail(err, "%s: split.count is set but split.tensors.count is missing", path);
        goto fail;
    }
    if (no >= count) {
        gk_fail(err, "%s: split.no %u is not below split.count %u", path, no, count);
        goto fail;
    }
    if (no != 0) {
        gk_fail(err,
                "%s is shard %u of %u of a split model: load the first shard "
                "(...-00001-of-%05u.gguf)",
                path, no + 1, count, count);
        goto fail;
    }
    if (count == 1) {
        if (g->n_tensors != (int64_t)n_tensors) {
            gk_fail(err, "%s: split.tensors.count is %u, but the file holds %lld tensors", path,
                    n_tensors, (long long)g->n_tensors);
            goto fail;
        }
        return g;
    }
    /* The other shards' names: PREFIX-%05d-of-%05d.gguf, as llama.cpp builds them. */
    char tail[48];
    snprintf(tail, sizeof tail, "-%05u-of-%05u.gguf", 1u, count);
    size_t plen = strlen(path), tlen = strlen(tail);
    if (plen <= tlen || strcmp(path + plen - tlen, tail) != 0) {
        gk_fail(err,
                "%s: the first of %u shards must be named PREFIX%s (llama-gguf-split's "
                "naming) so that the others can be found",
                path, count, tail);
        goto fail;
    }
    g->shards = calloc(count, sizeof *g->shards);
    g->shard_path = calloc(count, sizeof *g->shard_path);
    if (!g->shards || !g->shard_path) {
        gk_fail(err, "%s: out of memory", path);
        goto fail;
    }
    g->n_shards = count;
    for (uint32_t i = 0; i < count; i++) {
        if (!(g->shard_path[i] = malloc(plen + 1))) {
            gk_fail(err, "%s: out of memory", path);
            goto fail;
        }
        memcpy(g->shard_path[i], path, plen - tlen);
        snprintf(g->shard_path[i] + plen - tlen, tlen + 1, "-%05u-of-%05u.gguf", i + 1, count);
    }
    for (uint32_t i = 1; i < count; i++) {
        if (!(g->shards[i] = open_shard(g->shard_path[i], i, count, n_tensors, g, err))) goto fail;
        g->total_size += g->shards[i]->size;
    }
    if (merge_shards(g, n_tensors, err)) {
        gk_err_prefix(err, "%s", path);
        goto fail;
    }
    return g;
fail:
    gk_gguf_close(g);
    return NULL;
}

uint32_t gk_gguf_n_shards(const gk_gguf *g) {
    return g->n_shards;
}
const char *gk_gguf_shard_path(const gk_gguf *g, uint32_t i) {
    return g->shard_path && i < g->n_shards ? g->shard_path[i] : NULL;
}
uint64_t gk_gguf_total_size(const gk_gguf *g) {
    return g->total_size;
}

uint32_t gk_gguf_version(const gk_gguf *g) {
    return g->version;
}
uint64_t gk_gguf_alignment(const gk_gguf *g) {
    return g->alignment;
}
uint64_t gk_gguf_file_size(const gk_gguf *g) {
    return g->size;
}
uint64_t gk_gguf_data_offset(const gk_gguf *g) {
    return g->data_offset;
}
bool gk_gguf_holds(const gk_gguf *g, const void *p, bool *file_mapped) {
    const uint8_t *q = p;
    for (uint32_t i = 0; i < g->n_shards; i++) {
        const gk_gguf *s = i ? g->shards[i] : g;
        if (s && q >= s->base && q < s->base + s->size) {
            if (file_mapped) *file_mapped = s->map.data != NULL;
            return true;
        }
    }
    return false;
}
int64_t gk_gguf_n_kv(const gk_gguf *g) {
    return g->n_kv;
}
int64_t gk_gguf_n_tensors(const gk_gguf *g) {
    return g->n_tensors;
}

const gk_gguf_kv *gk_gguf_kv_at(const gk_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? &g->kv[i] : NULL;
}

const gk_gguf_tensor *gk_gguf_tensor_at(const gk_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const gk_gguf_value *gk_gguf_find(const gk_gguf *g, const char *key) {
    int64_t i = g->kv_index ? index_find(g->kv_index, g->n_kv, key) : -1;
    return i >= 0 ? &g->kv[i].value : NULL;
}

const gk_gguf_tensor *gk_gguf_find_tensor(const gk_gguf *g, const char *name) {
    int64_t i = g->tensor_index ? index_find(g->tensor_index, g->n_tensors, name) : -1;
    return i >= 0 ? &g->tensors[i] : NULL;
}

/* ------------------------------------------------------------- getters --- */

/* Finds key and checks that fits() accepts its type (want names what fits, for
 * the message). Returns 1, 0 (absent) or -1. */
static int lookup(const gk_gguf *g, const char *key, const gk_gguf_value **v, gk_err *err,
                  const char *want, bool (*fits)(gk_gguf_type)) {
    *v = gk_gguf_find(g, key);
    if (!*v) return 0;
    if (!fits((*v)->type))
        return gk_fail(err, "gguf: key '%s' has type %s, expected %s", key,
                       gk_gguf_type_name((*v)->type), want);
    return 1;
}

static bool is_unsigned(gk_gguf_type t) {
    return t == GK_GGUF_UINT8 || t == GK_GGUF_UINT16 || t == GK_GGUF_UINT32 || t == GK_GGUF_UINT64;
}
static bool is_signed(gk_gguf_type t) {
    return t == GK_GGUF_INT8 || t == GK_GGUF_INT16 || t == GK_GGUF_INT32 || t == GK_GGUF_INT64;
}
static bool is_int(gk_gguf_type t) {
    return is_unsigned(t) || is_signed(t);
}
static bool is_float(gk_gguf_type t) {
    return t == GK_GGUF_FLOAT32 || t == GK_GGUF_FLOAT64;
}
static bool is_bool(gk_gguf_type t) {
    return t == GK_GGUF_BOOL;
}
static bool is_str(gk_gguf_type t) {
    return t == GK_GGUF_STRING;
}
static bool is_arr(gk_gguf_type t) {
    return t == GK_GGUF_ARRAY;
}

/* An integer value in [lo, hi] (lo <= 0 <= hi). */
static int get_int(const gk_gguf *g, const char *key, int64_t lo, uint64_t hi, const char *want,
                   int64_t *s, uint64_t *u, gk_err *err) {
    const gk_gguf_value *v;
    int r = lookup(g, key, &v, err, "an integer", is_int);
    if (r <= 0) return r;
    bool neg = is_signed(v->type) && v->v.i64 < 0;
    if (neg ? v->v.i64 < lo : v->v.u64 > hi) {
        if (neg)
            return gk_fail(err, "gguf: key '%s' = %lld is out of range for %s", key,
                           (long long)v->v.i64, want);
        return gk_fail(err, "gguf: key '%s' = %llu is out of range for %s", key, (ull)v->v.u64,
                       want);
    }
    *s = v->v.i64;
    *u = v->v.u64;
    return 1;
}

int gk_gguf_get_u32(const gk_gguf *g, const char *key, uint32_t *out, gk_err *err) {
    int64_t s;
    uint64_t u;
    int r = get_int(g, key, 0, UINT32_MAX, "u32", &s, &u, err);
    if (r == 1) *out = (uint32_t)u;
    return r;
}

int gk_gguf_get_i32(const gk_gguf *g, const char *key, int32_t *out, gk_err *err) {
    int64_t s;
    uint64_t u;
    int r = get_int(g, key, INT32_MIN, INT32_MAX, "i32", &s, &u, err);
    if (r == 1) *out = (int32_t)s;
    return r;
}

int gk_gguf_get_u64(const gk_gguf *g, const char *key, uint64_t *out, gk_err *err) {
    int64_t s;
    uint64_t u;
    int r = get_int(g, key, 0, UINT64_MAX, "u64", &s, &u, err);
    if (r == 1) *out = u;
    return r;
}

int gk_gguf_get_f32(const gk_gguf *g, const char *key, float *out, gk_err *err) {
    const gk_gguf_value *v;
    int r = lookup(g, key, &v, err, "f32 or f64", is_float);
    if (r == 1) *out = (float)v->v.f64;
    return r;
}

int gk_gguf_get_bool(const gk_gguf *g, const char *key, bool *out, gk_err *err) {
    const gk_gguf_value *v;
    int r = lookup(g, key, &v, err, "bool", is_bool);
    if (r == 1) *out = v->v.u64 != 0;
    return r;
}

int gk_gguf_get_str(const gk_gguf *g, const char *key, gk_str *out, gk_err *err) {
    const gk_gguf_value *v;
    int r = lookup(g, key, &v, err, "string", is_str);
    if (r == 1) *out = v->v.str;
    return r;
}

int gk_gguf_get_arr(const gk_gguf *g, const char *key, int elem_type, gk_gguf_array *out,
                    gk_err *err) {
    const gk_gguf_value *v;
    int r = lookup(g, key, &v, err, "array", is_arr);
    if (r <= 0) return r;
    if (elem_type >= 0 && v->v.arr.type != (gk_gguf_type)elem_type)
        return gk_fail(err, "gguf: key '%s' is an array of %s, expected an array of %s", key,
                       gk_gguf_type_name(v->v.arr.type), gk_gguf_type_name((uint32_t)elem_type));
    *out = v->v.arr;
    return 1;
}

float gk_gguf_arr_f32(const gk_gguf_array *a, uint64_t i) {
    float x = 0;
    if (a->type == GK_GGUF_FLOAT32 && i < a->n) memcpy(&x, a->data + 4 * i, 4);
    return x;
}

int32_t gk_gguf_arr_i32(const gk_gguf_array *a, uint64_t i) {
    int32_t x = 0;
    if (a->type == GK_GGUF_INT32 && i < a->n) memcpy(&x, a->data + 4 * i, 4);
    return x;
}

uint32_t gk_gguf_arr_u32(const gk_gguf_array *a, uint64_t i) {
    uint32_t x = 0;
    if (a->type == GK_GGUF_UINT32 && i < a->n) memcpy(&x, a->data + 4 * i, 4);
    return x;
}

/* ---------------------------------------------------------------- writer --- */

typedef struct wkv {
    char *key;
    uint8_t *val; /* u32 type + value, as in the file */
    size_t len;
} wkv;

typedef struct wtensor {
    char *name;
    gk_dtype type;
    uint32_t n_dims;
    int64_t ne[GK_GGUF_MAX_DIMS];
    uint64_t nbytes, offset;
    const void *data;
    gk_gguf_produce_fn fn;
    void *ud;
} wtensor;

struct gk_gguf_writer {
    wkv *kv;
    int64_t n_kv, cap_kv;
    wtensor *t;
    int64_t n_t, cap_t;
    bool failed; /* a setter or add failed: err holds its message for gk_gguf_write */
    gk_err err;
};

/* Reports a failure of a setter or add through err (may be NULL) and keeps the
 * first one for gk_gguf_write; returns -1. */
static int wkeep(gk_gguf_writer *w, gk_err *err, const gk_err *e) {
    if (!w->failed) {
        w->err = *e;
        w->failed = true;
    }
    if (err) *err = *e;
    return -1;
}

static int wfail(gk_gguf_writer *w, gk_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int wfail(gk_gguf_writer *w, gk_err *err, const char *fmt, ...) {
    gk_err e;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof e.msg, fmt, ap);
    va_end(ap);
    return wkeep(w, err, &e);
}

gk_gguf_writer *gk_gguf_writer_new(gk_err *err) {
    return gk_calloc(1, sizeof(gk_gguf_writer), err);
}

void gk_gguf_writer_free(gk_gguf_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n_kv; i++) free(w->kv[i].key), free(w->kv[i].val);
    for (int64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

/* A growable byte buffer; a failed growth sets oom and drops later writes. */
typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} wbuf;

static void put(wbuf *b, const void *d, size_t n) {
    if (b->oom || n == 0) return;
    if (b->cap - b->n < n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 2) {
                b->oom = true;
                return;
            }
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_u32(wbuf *b, uint32_t v) {
    put(b, &v, 4);
}
static void put_u64(wbuf *b, uint64_t v) {
    put(b, &v, 8);
}
static void put_str(wbuf *b, const char *s, uint64_t n) {
    put_u64(b, n);
    put(b, s, (size_t)n);
}

/* Stores a serialized value under key, replacing an earlier one; takes b. */
static int set_raw(gk_gguf_writer *w, const char *key, wbuf *b, gk_err *err) {
    if (b->oom) {
        free(b->p);
        return wfail(w, err, "gguf: out of memory setting key '%s'", key);
    }
    for (int64_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            free(w->kv[i].val);
            w->kv[i].val = b->p;
            w->kv[i].len = b->n;
            return 0;
        }
    }
    char *k = strdup(key);
    if (!k || grow((void **)&w->kv, w->n_kv, &w->cap_kv, sizeof *w->kv, NULL)) {
        free(k);
        free(b->p);
        return wfail(w, err, "gguf: out of memory setting key '%s'", key);
    }
    w->kv[w->n_kv++] = (wkv){k, b->p, b->n};
    return 0;
}

static int bad_key(gk_gguf_writer *w, const char *key, gk_err *err) {
    if (!key || !*key) return wfail(w, err, "gguf: a key is NULL or empty");
    return 0;
}

static int set_scalar(gk_gguf_writer *w, const char *key, gk_gguf_type type, const void *v) {
    wbuf b = {0};
    if (bad_key(w, key, NULL)) return -1;
    put_u32(&b, type);
    put(&b, v, scalar_size[type]);
    return set_raw(w, key, &b, NULL);
}

int gk_gguf_set_u32(gk_gguf_writer *w, const char *key, uint32_t v) {
    return set_scalar(w, key, GK_GGUF_UINT32, &v);
}
int gk_gguf_set_i32(gk_gguf_writer *w, const char *key, int32_t v) {
    return set_scalar(w, key, GK_GGUF_INT32, &v);
}
int gk_gguf_set_u64(gk_gguf_writer *w, const char *key, uint64_t v) {
    return set_scalar(w, key, GK_GGUF_UINT64, &v);
}
int gk_gguf_set_f32(gk_gguf_writer *w, const char *key, float v) {
    return set_scalar(w, key, GK_GGUF_FLOAT32, &v);
}
int gk_gguf_set_bool(gk_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v;
    return set_scalar(w, key, GK_GGUF_BOOL, &b);
}

int gk_gguf_set_str(gk_gguf_writer *w, const char *key, const char *v) {
    wbuf b = {0};
    if (bad_key(w, key, NULL)) return -1;
    if (!v) return wfail(w, NULL, "gguf: key '%s': string is NULL", key);
    put_u32(&b, GK_GGUF_STRING);
    put_str(&b, v, strlen(v));
    return set_raw(w, key, &b, NULL);
}

int gk_gguf_set_arr_str(gk_gguf_writer *w, const char *key, const char *const *strs, uint64_t n) {
    wbuf b = {0};
    if (bad_key(w, key, NULL)) return -1;
    if (n && !strs) return wfail(w, NULL, "gguf: key '%s': strings are NULL", key);
    for (uint64_t i = 0; i < n; i++)
        if (!strs[i]) return wfail(w, NULL, "gguf: key '%s': string %llu is NULL", key, (ull)i);
    put_u32(&b, GK_GGUF_ARRAY);
    put_u32(&b, GK_GGUF_STRING);
    put_u64(&b, n);
    for (uint64_t i = 0; i < n; i++) put_str(&b, strs[i], strlen(strs[i]));
    return set_raw(w, key, &b, NULL);
}

/* Serializes the body of a value of the given type (no type tag), checking
 * what the reader will check: known types, depth, sizes, and that integers fit
 * their type. depth counts the arrays around the value. */
static int put_body(wbuf *b, gk_gguf_type type, const gk_gguf_value *v, int depth, const char *key,
                    gk_err *err) {
    static const uint64_t umax[] = {[GK_GGUF_UINT8] = UINT8_MAX,
                                    [GK_GGUF_UINT16] = UINT16_MAX,
                                    [GK_GGUF_UINT32] = UINT32_MAX,
                                    [GK_GGUF_BOOL] = 1,
                                    [GK_GGUF_UINT64] = UINT64_MAX};
    static const int64_t smax[] = {[GK_GGUF_INT8] = INT8_MAX,
                                   [GK_GGUF_INT16] = INT16_MAX,
                                   [GK_GGUF_INT32] = INT32_MAX,
                                   [GK_GGUF_INT64] = INT64_MAX};
    if ((uint32_t)type >= GK_GGUF_TYPE_COUNT)
        return gk_fail(err, "gguf: key '%s': unknown value type %u", key, (uint32_t)type);
    if (is_unsigned(type) || type == GK_GGUF_BOOL) {
        if (v->v.u64 > umax[type])
            return gk_fail(err, "gguf: key '%s': %llu does not fit %s", key, (ull)v->v.u64,
                           gk_gguf_type_name(type));
        put(b, &v->v.u64, scalar_size[type]); /* little-endian: the low bytes */
    } else if (is_signed(type)) {
        if (v->v.i64 > smax[type] || v->v.i64 < -smax[type] - 1)
            return gk_fail(err, "gguf: key '%s': %lld does not fit %s", key, (long long)v->v.i64,
                           gk_gguf_type_name(type));
        put(b, &v->v.i64, scalar_size[type]);
    } else if (type == GK_GGUF_FLOAT32) {
        float f = (float)v->v.f64;
        put(b, &f, 4);
    } else if (type == GK_GGUF_FLOAT64) {
        put(b, &v->v.f64, 8);
    } else if (type == GK_GGUF_STRING) {
        if (v->v.str.len && !v->v.str.ptr)
            return gk_fail(err, "gguf: key '%s': string pointer is NULL", key);
        put_str(b, v->v.str.ptr, v->v.str.len);
    } else {
        const gk_gguf_array *a = &v->v.arr;
        uint64_t bytes;
        if (depth >= GK_GGUF_MAX_DEPTH)
            return gk_fail(err, "gguf: key '%s': arrays nested deeper than %d", key,
                           GK_GGUF_MAX_DEPTH);
        if ((uint32_t)a->type >= GK_GGUF_TYPE_COUNT)
            return gk_fail(err, "gguf: key '%s': unknown array element type %u", key,
                           (uint32_t)a->type);
        put_u32(b, a->type);
        put_u64(b, a->n);
        if (scalar_size[a->type]) {
            if (!gk_mul_u64(a->n, scalar_size[a->type], &bytes) || bytes > SIZE_MAX)
                return gk_fail(err, "gguf: key '%s': array of %llu elements is too large", key,
                               (ull)a->n);
            if (a->n && !a->data) return gk_fail(err, "gguf: key '%s': array data is NULL", key);
            put(b, a->data, (size_t)bytes);
        } else if (a->type == GK_GGUF_STRING) {
            if (a->n && !a->strs) return gk_fail(err, "gguf: key '%s': strings are NULL", key);
            for (uint64_t i = 0; i < a->n && !b->oom; i++) {
                gk_gguf_value s = {.type = GK_GGUF_STRING, .v.str = a->strs[i]};
                if (put_body(b, GK_GGUF_STRING, &s, depth + 1, key, err)) return -1;
            }
        } else {
            if (a->n && !a->elems) return gk_fail(err, "gguf: key '%s': elements are NULL", key);
            for (uint64_t i = 0; i < a->n && !b->oom; i++) {
                if (a->elems[i].type != GK_GGUF_ARRAY)
                    return gk_fail(err,
                                   "gguf: key '%s': element %llu of an array of arrays "
                                   "has type %s",
                                   key, (ull)i, gk_gguf_type_name(a->elems[i].type));
                if (put_body(b, GK_GGUF_ARRAY, &a->elems[i], depth + 1, key, err)) return -1;
            }
        }
    }
    return 0;
}

int gk_gguf_set_value(gk_gguf_writer *w, const char *key, const gk_gguf_value *v, gk_err *err) {
    gk_err e;
    wbuf b = {0};
    if (bad_key(w, key, err)) return -1;
    if (!v) return wfail(w, err, "gguf: key '%s': value is NULL", key);
    put_u32(&b, v->type);
    if (put_body(&b, v->type, v, 0, key, &e)) {
        free(b.p);
        return wkeep(w, err, &e);
    }
    return set_raw(w, key, &b, err);
}

int gk_gguf_set_arr(gk_gguf_writer *w, const char *key, gk_gguf_type elem_type, const void *data,
                    uint64_t n) {
    if (bad_key(w, key, NULL)) return -1;
    if ((uint32_t)elem_type >= GK_GGUF_TYPE_COUNT || !scalar_size[elem_type])
        return wfail(w, NULL,
                     "gguf: key '%s': gk_gguf_set_arr takes a numeric or bool type, not %s", key,
                     gk_gguf_type_name(elem_type));
    gk_gguf_value v = {.type = GK_GGUF_ARRAY, .v.arr = {.type = elem_type, .n = n, .data = data}};
    return gk_gguf_set_value(w, key, &v, NULL);
}

int gk_gguf_copy_kv(gk_gguf_writer *w, const gk_gguf *src, gk_err *err) {
    for (int64_t i = 0; i < src->n_kv; i++) {
        /* split.no, split.count and split.tensors.count describe the files a
         * model came in, not the model: a file written from it is one file. */
        const char *k = src->kv[i].key;
        if (!strcmp(k, "split.no") || !strcmp(k, "split.count") ||
            !strcmp(k, "split.tensors.count"))
            continue;
        if (gk_gguf_set_value(w, k, &src->kv[i].value, err)) return -1;
    }
    return 0;
}

static int add_tensor(gk_gguf_writer *w, const char *name, gk_dtype type, uint32_t n_dims,
                      const int64_t *ne, const void *data, gk_gguf_produce_fn fn, void *ud,
                      gk_err *err) {
    gk_err e;
    wtensor t = {.type = type, .n_dims = n_dims, .data = data, .fn = fn, .ud = ud};
    size_t len = name ? strlen(name) : 0;
    if (len == 0) return wfail(w, err, "gguf: a tensor name is NULL or empty");
    if (len > GK_GGUF_MAX_NAME)
        return wfail(w, err, "gguf: tensor name '%.64s...' is %zu bytes long (at most %d)", name,
                     len, GK_GGUF_MAX_NAME);
    for (int64_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return wfail(w, err, "gguf: duplicate tensor '%s'", name);
    if (!ne || (!data && !fn))
        return wfail(w, err, "gguf: tensor '%s': shape or data is NULL", name);
    if (check_tensor(name, type, n_dims, ne, &t.nbytes, &e)) return wkeep(w, err, &e);
    for (uint32_t i = 0; i < GK_GGUF_MAX_DIMS; i++) t.ne[i] = i < n_dims ? ne[i] : 1;
    if (!(t.name = strdup(name)) || grow((void **)&w->t, w->n_t, &w->cap_t, sizeof *w->t, NULL)) {
        free(t.name);
        return wfail(w, err, "gguf: out of memory adding tensor '%s'", name);
    }
    w->t[w->n_t++] = t;
    return 0;
}

int gk_gguf_add_tensor(gk_gguf_writer *w, const char *name, gk_dtype type, uint32_t n_dims,
                       const int64_t *ne, const void *data, gk_err *err) {
    return add_tensor(w, name, type, n_dims, ne, data, NULL, NULL, err);
}

int gk_gguf_add_tensor_fn(gk_gguf_writer *w, const char *name, gk_dtype type, uint32_t n_dims,
                          const int64_t *ne, gk_gguf_produce_fn fn, void *ud, gk_err *err) {
    return add_tensor(w, name, type, n_dims, ne, NULL, fn, ud, err);
}

/* ------------------------------------------------------------ file output --- */

#define OUT_BUF ((size_t)1 << 20)

/* Buffered output to the temporary file; the first failure sticks in err. */
typedef struct wout {
    int fd;
    const char *path; /* the final path, for messages */
    uint8_t *buf;
    size_t n;
    bool failed;
    gk_err err;
} wout;

struct gk_gguf_sink {
    wout *out;
    const char *name;
    uint64_t want, got;
};

static int write_all(wout *o, const uint8_t *p, size_t n) {
    while (n > 0) {
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t k = write(o->fd, p, chunk);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            o->failed = true;
            return gk_fail(&o->err, "gguf: writing '%s': %s", o->path,
                           k < 0 ? strerror(errno) : "write returned 0");
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int out_flush(wout *o) {
    if (o->failed) return -1;
    size_t n = o->n;
    o->n = 0;
    return write_all(o, o->buf, n);
}

/* Small writes gather in the buffer; large ones go straight to the file. */
static int out_write(wout *o, const void *data, size_t n) {
    if (o->failed) return -1;
    if (n == 0) return 0; /* data may be NULL then */
    if (OUT_BUF - o->n >= n) {
        memcpy(o->buf + o->n, data, n);
        o->n += n;
        return 0;
    }
    if (out_flush(o)) return -1;
    if (n >= OUT_BUF / 2) return write_all(o, data, n);
    memcpy(o->buf, data, n);
    o->n = n;
    return 0;
}

static int out_zeros(wout *o, uint64_t n) {
    static const uint8_t zeros[256];
    while (n > 0) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (out_write(o, zeros, k)) return -1;
        n -= k;
    }
    return 0;
}

int gk_gguf_sink_write(gk_gguf_sink *sink, const void *data, size_t n, gk_err *err) {
    wout *o = sink->out;
    if (o->failed) {
        if (err) *err = o->err;
        return -1;
    }
    if (n > sink->want - sink->got) {
        o->failed = true;
        gk_fail(&o->err, "gguf: writing '%s': tensor '%s': producer wrote more than its %llu bytes",
                o->path, sink->name, (ull)sink->want);
        if (err) *err = o->err;
        return -1;
    }
    sink->got += n;
    if (out_write(o, data, n)) {
        if (err) *err = o->err;
        return -1;
    }
    return 0;
}

/* The alignment to write: general.alignment when set (a u32 power of two, >= 8). */
static int writer_alignment(const gk_gguf_writer *w, uint64_t *align, gk_err *err) {
    *align = GK_GGUF_DEFAULT_ALIGNMENT;
    for (int64_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, "general.alignment") != 0) continue;
        uint32_t type, v;
        memcpy(&type, w->kv[i].val, 4);
        if (type != GK_GGUF_UINT32)
            return gk_fail(err, "gguf: general.alignment has type %s (must be u32)",
                           gk_gguf_type_name(type));
        memcpy(&v, w->kv[i].val + 4, 4);
        if (!is_pow2(v))
            return gk_fail(err, "gguf: general.alignment = %u is not a power of two", v);
        if (v < 8) return gk_fail(err, "gguf: general.alignment = %u is not a multiple of 8", v);
        *align = v;
    }
    return 0;
}

/* Header: magic, version, counts, kvs, tensor infos, padding to the alignment. */
static int write_header(wout *o, const gk_gguf_writer *w, uint64_t align) {
    uint32_t version = 3;
    uint64_t n_t = (uint64_t)w->n_t, n_kv = (uint64_t)w->n_kv, pos = 24;
    out_write(o, "GGUF", 4);
    out_write(o, &version, 4);
    out_write(o, &n_t, 8);
    out_write(o, &n_kv, 8);
    for (int64_t i = 0; i < w->n_kv; i++) {
        uint64_t len = strlen(w->kv[i].key);
        out_write(o, &len, 8);
        out_write(o, w->kv[i].key, len);
        out_write(o, w->kv[i].val, w->kv[i].len);
        pos += 8 + len + w->kv[i].len;
    }
    for (int64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        uint64_t len = strlen(t->name);
        uint32_t type = t->type;
        out_write(o, &len, 8);
        out_write(o, t->name, len);
        out_write(o, &t->n_dims, 4);
        out_write(o, t->ne, 8 * (size_t)t->n_dims);
        out_write(o, &type, 4);
        out_write(o, &t->offset, 8);
        pos += 8 + len + 4 + 8 * t->n_dims + 4 + 8;
    }
    uint64_t end;
    align_up(pos, align, &end); /* pos is the size of memory already held */
    return out_zeros(o, end - pos);
}

/* Writes every tensor's bytes, each padded to the alignment. */
static int write_data(wout *o, gk_gguf_writer *w, uint64_t align, gk_err *err) {
    for (int64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        uint64_t padded;
        if (t->data) {
            if (out_write(o, t->data, (size_t)t->nbytes)) break;
        } else {
            gk_gguf_sink sink = {o, t->name, t->nbytes, 0};
            gk_err e;
            snprintf(e.msg, sizeof e.msg, "the producer failed without a message");
            int r = t->fn(t->ud, &sink, &e);
            if (o->failed) break;
            if (r != 0) {
                o->failed = true;
                gk_fail(&o->err, "gguf: writing '%s': tensor '%s': %s", o->path, t->name, e.msg);
                break;
            }
            if (sink.got != t->nbytes) {
                o->failed = true;
                gk_fail(&o->err,
                        "gguf: writing '%s': tensor '%s': producer wrote %llu of its %llu bytes",
                        o->path, t->name, (ull)sink.got, (ull)t->nbytes);
                break;
            }
        }
        align_up(t->nbytes, align, &padded); /* checked when offsets were assigned */
        if (out_zeros(o, padded - t->nbytes)) break;
    }
    if (o->failed || out_flush(o)) {
        if (err) *err = o->err;
        return -1;
    }
    return 0;
}

/* Makes the rename durable; a failure here loses nothing already written, so
 * it is ignored. */
static void sync_dir(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n >= sizeof dir) return;
    memcpy(dir, path, n);
    dir[n] = 0;
    int fd = open(slash ? (n ? dir : "/") : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int gk_gguf_write(gk_gguf_writer *w, const char *path, gk_err *err) {
    if (w->failed) {
        if (err) *err = w->err;
        gk_err_prefix(err, "gguf: not writing '%s' because an earlier call failed", path);
        return -1;
    }
    uint64_t align, off = 0;
    if (writer_alignment(w, &align, err)) {
        gk_err_prefix(err, "%s", path);
        return -1;
    }
    for (int64_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        if (!gk_add_u64(off, w->t[i].nbytes, &off) || !align_up(off, align, &off))
            return gk_fail(err, "gguf: writing '%s': the data section overflows", path);
    }

    wout o = {.fd = -1, .path = path};
    size_t plen = strlen(path);
    char *tmp = gk_malloc(plen + 16, err);
    if (!tmp) return -1;
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    o.buf = gk_malloc(OUT_BUF, err);
    if (!o.buf) {
        free(tmp);
        return -1;
    }
    o.fd = mkstemp(tmp);
    if (o.fd < 0) {
        gk_fail(err, "gguf: cannot create a temporary file for '%s' (%s): %s", path, tmp,
                strerror(errno));
        free(tmp);
        free(o.buf);
        return -1;
    }
    /* mkstemp makes the file 0600; a model file is meant to be shared. */
    if (fchmod(o.fd, 0644) != 0) {
        gk_fail(err, "gguf: writing '%s': cannot set the mode of %s: %s", path, tmp,
                strerror(errno));
        goto fail;
    }
    if (write_header(&o, w, align) || write_data(&o, w, align, err)) {
        if (err) *err = o.err;
        goto fail;
    }
    if (fsync(o.fd) != 0) {
        gk_fail(err, "gguf: writing '%s': fsync failed: %s", path, strerror(errno));
        goto fail;
    }
    int fd = o.fd;
    o.fd = -1;
    if (close(fd) != 0) { /* NFS and quotas may report ENOSPC only here */
        gk_fail(err, "gguf: writing '%s': close failed: %s", path, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        gk_fail(err, "gguf: cannot rename %s to '%s': %s", tmp, path, strerror(errno));
        goto fail;
    }
    sync_dir(path);
    free(tmp);
    free(o.buf);
    return 0;
fail:
    if (o.fd >= 0) close(o.fd);
    unlink(tmp);
    free(tmp);
    free(o.buf);
    return -1;
}
