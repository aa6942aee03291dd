/*
 * safetensors.c - safetensors reader: header parsing with cJSON, checks of
 * every shape and offset, pread and mmap access to the data. See safetensors.h.
 *
 * The header is read with pread, never through a map, so that opening the 39
 * files of a 500 GB checkpoint touches a few megabytes.
 */
#include "format/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Integers in JSON arrive as doubles: exact only up to 2^53. */
#define JSON_INT_MAX 9007199254740992.0

typedef struct meta_kv {
    char *key, *value;
} meta_kv;

struct gk_st_file {
    char *path;
    int fd;             /* -1 for a buffer */
    const uint8_t *mem; /* the buffer, or the map once made */
    bool mapped;
    uint64_t size;
    gk_st_tensor *tensors;
    int64_t n_tensors;
    const gk_st_tensor **by_name; /* sorted by name */
    meta_kv *meta;
    int64_t n_meta;
};

static const struct {
    const char *name;
    gk_dtype type; /* GK_TYPE_COUNT: known to the format, not supported here */
} st_dtypes[] = {
    {"F32", GK_TYPE_F32},       {"F16", GK_TYPE_F16},       {"BF16", GK_TYPE_BF16},
    {"F64", GK_TYPE_COUNT},     {"I64", GK_TYPE_COUNT},     {"I32", GK_TYPE_COUNT},
    {"I16", GK_TYPE_COUNT},     {"I8", GK_TYPE_COUNT},      {"U64", GK_TYPE_COUNT},
    {"U32", GK_TYPE_COUNT},     {"U16", GK_TYPE_COUNT},     {"U8", GK_TYPE_COUNT},
    {"BOOL", GK_TYPE_COUNT},    {"F8_E4M3", GK_TYPE_COUNT}, {"F8_E5M2", GK_TYPE_COUNT},
    {"F8_E8M0", GK_TYPE_COUNT}, {"F6_E2M3", GK_TYPE_COUNT}, {"F6_E3M2", GK_TYPE_COUNT},
    {"F4", GK_TYPE_COUNT},      {"C64", GK_TYPE_COUNT},
};

static size_t elem_size(gk_dtype t) {
    return t == GK_TYPE_F32 ? 4 : 2;
}

void gk_st_close(gk_st_file *f) {
    if (!f) return;
    if (f->mapped) munmap((void *)f->mem, f->size);
    if (f->fd >= 0) close(f->fd);
    for (int64_t i = 0; i < f->n_tensors; i++) free((char *)f->tensors[i].name);
    for (int64_t i = 0; i < f->n_meta; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->tensors);
    free(f->by_name);
    free(f->meta);
    free(f->path);
    free(f);
}

/* Reads exactly n bytes at off from the file or buffer. */
static int read_at(const gk_st_file *f, uint64_t off, void *buf, size_t n, gk_err *err) {
    uint64_t end;
    if (!gk_add_u64(off, n, &end) || end > f->size)
        return gk_fail(err, "%s: read of %zu bytes at offset %llu is past the end (%llu bytes)",
                       f->path, n, (unsigned long long)off, (unsigned long long)f->size);
    if (f->fd < 0) { /* a buffer; files are always read with pread, never through the map */
        memcpy(buf, f->mem + off, n);
        return 0;
    }
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = pread(f->fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return gk_fail(err, "%s: read error at offset %llu: %s", f->path,
                           (unsigned long long)off, strerror(errno));
        if (r == 0)
            return gk_fail(err,
                           "%s: file ends at offset %llu, expected %zu more bytes (truncated "
                           "while reading?)",
                           f->path, (unsigned long long)off, n);
        p += r;
        off += (uint64_t)r;
        n -= (size_t)r;
    }
    return 0;
}

/* A JSON number that is a whole number in [0, 2^53]. */
static bool json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= JSON_INT_MAX) || d != (double)(uint64_t)d) return false;
    *out = (uint64_t)d;
    return true;
}

static int parse_tensor(gk_st_file *f, const cJSON *item, uint64_t data_start, gk_st_tensor *t,
                        gk_err *err) {
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return gk_fail(err, "%s: tensor '%s': header entry is not an object", f->path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs))
        return gk_fail(err,
                       "%s: tensor '%s': needs \"dtype\" (string), \"shape\" and "
                       "\"data_offsets\" (arrays)",
                       f->path, name);
    size_t k = 0, nd = sizeof st_dtypes / sizeof st_dtypes[0];
    while (k < nd && strcmp(st_dtypes[k].name, dt->valuestring) != 0) k++;
    if (k == nd)
        return gk_fail(err, "%s: tensor '%s': unknown dtype '%.32s'", f->path, name,
                       dt->valuestring);
    if (st_dtypes[k].type == GK_TYPE_COUNT)
        return gk_fail(err, "%s: tensor '%s': dtype %s is not supported (BF16, F16 and F32 are)",
                       f->path, name, dt->valuestring);
    t->type = st_dtypes[k].type;

    int n_dims = cJSON_GetArraySize(shape);
    if (n_dims > GK_ST_MAX_DIMS)
        return gk_fail(err, "%s: tensor '%s': %d dimensions (at most %d)", f->path, name, n_dims,
                       GK_ST_MAX_DIMS);
    t->n_dims = (uint32_t)n_dims;
    uint64_t numel = 1;
    for (int d = 0; d < GK_ST_MAX_DIMS; d++) t->shape[d] = 1;
    for (int d = 0; d < n_dims; d++) {
        uint64_t v;
        if (!json_uint(cJSON_GetArrayItem(shape, d), &v) || v > (uint64_t)INT64_MAX)
            return gk_fail(err, "%s: tensor '%s': shape[%d] is not a non-negative integer", f->path,
                           name, d);
        t->shape[d] = (int64_t)v;
        if (!gk_mul_u64(numel, v, &numel))
            return gk_fail(err, "%s: tensor '%s': shape overflows", f->path, name);
    }
    uint64_t begin, end, nbytes;
    if (cJSON_GetArraySize(offs) != 2 || !json_uint(cJSON_GetArrayItem(offs, 0), &begin) ||
        !json_uint(cJSON_GetArrayItem(offs, 1), &end) || begin > end)
        return gk_fail(err, "%s: tensor '%s': data_offsets must be [begin, end] with begin <= end",
                       f->path, name);
    if (!gk_mul_u64(numel, elem_size(t->type), &nbytes))
        return gk_fail(err, "%s: tensor '%s': byte size overflows", f->path, name);
    if (end - begin != nbytes)
        return gk_fail(err,
                       "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, shape and "
                       "dtype need %llu",
                       f->path, name, (unsigned long long)begin, (unsigned long long)end,
                       (unsigned long long)(end - begin), (unsigned long long)nbytes);
    if (end > f->size - data_start)
        return gk_fail(err,
                       "%s: tensor '%s': data ends at %llu, past the end of the file (%llu "
                       "bytes of data): truncated file?",
                       f->path, name, (unsigned long long)(data_start + end),
                       (unsigned long long)(f->size - data_start));
    t->offset = data_start + begin;
    t->nbytes = nbytes;
    t->name = strdup(name);
    if (!t->name) return gk_fail(err, "out of memory");
    return 0;
}

static int parse_metadata(gk_st_file *f, const cJSON *item, gk_err *err) {
    if (!cJSON_IsObject(item)) return gk_fail(err, "%s: __metadata__ is not an object", f->path);
    int n = cJSON_GetArraySize(item);
    f->meta = gk_calloc((size_t)n, sizeof *f->meta, err);
    if (!f->meta) return -1;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, item) {
        if (!cJSON_IsString(kv))
            return gk_fail(err, "%s: __metadata__ '%s' is not a string", f->path, kv->string);
        meta_kv *m = &f->meta[f->n_meta++];
        m->key = strdup(kv->string);
        m->value = strdup(kv->valuestring);
        if (!m->key || !m->value) return gk_fail(err, "out of memory");
    }
    return 0;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(gk_st_tensor *const *)a)->name, (*(gk_st_tensor *const *)b)->name);
}

static int cmp_offset(const void *a, const void *b) {
    const gk_st_tensor *x = *(gk_st_tensor *const *)a, *y = *(gk_st_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Names unique (sorted index) and data ranges disjoint. */
static int check_table(gk_st_file *f, gk_err *err) {
    int64_t n = f->n_tensors;
    f->by_name = gk_malloc((size_t)n * sizeof *f->by_name, err);
    gk_st_tensor **by_off = gk_malloc((size_t)n * sizeof *by_off, err);
    if (!f->by_name || !by_off) {
        free(by_off);
        return -1;
    }
    for (int64_t i = 0; i < n; i++) f->by_name[i] = by_off[i] = &f->tensors[i];
    qsort(f->by_name, (size_t)n, sizeof *f->by_name, cmp_name);
    int rc = 0;
    for (int64_t i = 1; i < n && rc == 0; i++)
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0)
            rc = gk_fail(err, "%s: tensor '%s' appears twice in the header", f->path,
                         f->by_name[i]->name);
    qsort(by_off, (size_t)n, sizeof *by_off, cmp_offset);
    uint64_t prev_end = 0;
    const char *prev = NULL;
    for (int64_t i = 0; i < n && rc == 0; i++) {
        if (by_off[i]->nbytes == 0) continue;
        if (prev && by_off[i]->offset < prev_end)
            rc = gk_fail(err, "%s: tensors '%s' and '%s' overlap", f->path, prev, by_off[i]->name);
        prev_end = by_off[i]->offset + by_off[i]->nbytes;
        prev = by_off[i]->name;
    }
    free(by_off);
    return rc;
}

static int parse_header(gk_st_file *f, gk_err *err) {
    uint8_t len8[8];
    if (f->size < 8)
        return gk_fail(err, "%s: %llu bytes, too short for a safetensors file", f->path,
                       (unsigned long long)f->size);
    if (read_at(f, 0, len8, 8, err) != 0) return -1;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    if (hlen > f->size - 8)
        return gk_fail(err,
                       "%s: header length %llu exceeds the file (%llu bytes): truncated or "
                       "not a safetensors file",
                       f->path, (unsigned long long)hlen, (unsigned long long)f->size);
    if (hlen < 2 || hlen > GK_ST_MAX_HEADER)
        return gk_fail(err, "%s: header length %llu is out of range (2 .. %u)", f->path,
                       (unsigned long long)hlen, GK_ST_MAX_HEADER);
    char *text = gk_malloc((size_t)hlen + 1, err);
    if (!text) return -1;
    if (read_at(f, 8, text, (size_t)hlen, err) != 0) {
        free(text);
        return -1;
    }
    text[hlen] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)hlen, &end, 0);
    int rc = 0;
    if (!root || !cJSON_IsObject(root)) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        rc = gk_fail(err, "%s: header is not a JSON object (error near byte %zu of %llu)", f->path,
                     at + 8, (unsigned long long)hlen);
        goto done;
    }
    for (const char *p = end; p && p < text + hlen; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
            rc = gk_fail(err, "%s: unexpected bytes after the header JSON at offset %zu", f->path,
                         (size_t)(p - text) + 8);
            goto done;
        }
    int n = cJSON_GetArraySize(root);
    f->tensors = gk_calloc((size_t)n, sizeof *f->tensors, err);
    if (!f->tensors) {
        rc = -1;
        goto done;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (f->meta) {
                rc = gk_fail(err, "%s: __metadata__ appears twice", f->path);
                goto done;
            }
            if ((rc = parse_metadata(f, item, err)) != 0) goto done;
            continue;
        }
        if (item->string[0] == 0) {
            rc = gk_fail(err, "%s: a tensor has an empty name", f->path);
            goto done;
        }
        if ((rc = parse_tensor(f, item, 8 + hlen, &f->tensors[f->n_tensors], err)) != 0) goto done;
        f->n_tensors++;
    }
    rc = check_table(f, err);
done:
    cJSON_Delete(root);
    free(text);
    return rc;
}

static gk_st_file *st_new(const char *path, gk_err *err) {
    gk_st_file *f = gk_calloc(1, sizeof *f, err);
    if (!f) return NULL;
    f->fd = -1;
    f->path = strdup(path);
    if (!f->path) {
        free(f);
        return gk_failp(err, "out of memory");
    }
    return f;
}

gk_st_file *gk_st_open(const char *path, gk_err *err) {
    gk_st_file *f = st_new(path, err);
    if (!f) return NULL;
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        gk_fail(err, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(f->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        gk_fail(err, "%s: not a regular file", path);
        goto fail;
    }
    f->size = (uint64_t)st.st_size;
    if (parse_header(f, err) != 0) goto fail;
    return f;
fail:
    gk_st_close(f);
    return NULL;
}

gk_st_file *gk_st_open_memory(const void *data, size_t size, gk_err *err) {
    gk_st_file *f = st_new("<memory>", err);
    if (!f) return NULL;
    f->mem = data;
    f->size = size;
    if (parse_header(f, err) != 0) {
        gk_st_close(f);
        return NULL;
    }
    return f;
}

const char *gk_st_path(const gk_st_file *f) {
    return f->path;
}
uint64_t gk_st_file_size(const gk_st_file *f) {
    return f->size;
}
int64_t gk_st_n_tensors(const gk_st_file *f) {
    return f->n_tensors;
}

const gk_st_tensor *gk_st_tensor_at(const gk_st_file *f, int64_t i) {
    return i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gk_st_tensor *gk_st_find(const gk_st_file *f, const char *name) {
    int64_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->by_name[mid]->name, name);
        if (c == 0) return f->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *gk_st_metadata(const gk_st_file *f, const char *key) {
    for (int64_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

int64_t gk_st_numel(const gk_st_tensor *t) {
    int64_t n = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) n *= t->shape[d];
    return n;
}

int gk_st_read(const gk_st_file *f, const gk_st_tensor *t, uint64_t off, void *buf, size_t n,
               gk_err *err) {
    uint64_t end;
    if (!gk_add_u64(off, n, &end) || end > t->nbytes)
        return gk_fail(err, "%s: tensor '%s': read of %zu bytes at %llu is outside its %llu bytes",
                       f->path, t->name, n, (unsigned long long)off, (unsigned long long)t->nbytes);
    if (read_at(f, t->offset + off, buf, n, err) != 0) {
        gk_err_prefix(err, "tensor '%s'", t->name);
        return -1;
    }
    return 0;
}

void gk_st_drop_cache(const gk_st_file *f, const gk_st_tensor *t) {
    if (f->fd >= 0 && t->nbytes > 0)
        posix_fadvise(f->fd, (off_t)t->offset, (off_t)t->nbytes, POSIX_FADV_DONTNEED);
}

const void *gk_st_data(gk_st_file *f, const gk_st_tensor *t, gk_err *err) {
    if (f->fd >= 0 && !f->mapped) {
        void *p = mmap(NULL, f->size, PROT_READ, MAP_SHARED, f->fd, 0);
        if (p == MAP_FAILED) return gk_failp(err, "%s: cannot map: %s", f->path, strerror(errno));
        f->mem = p;
        f->mapped = true;
    }
    return f->mem + t->offset;
}
