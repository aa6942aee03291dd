/*
 * gguf.h - GGUF v2/v3 reader (mmap, zero-copy) and writer.
 *
 * File layout (little-endian): magic "GGUF", u32 version, u64 n_tensors,
 * u64 n_kv, then n_kv { string key, u32 value_type, value }, then n_tensors
 * { string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset }, then
 * padding to general.alignment (default 32), then the tensor data; each
 * tensor's offset is relative to the start of the data and a multiple of the
 * alignment. A string is u64 length + bytes (no NUL). An array is u32 element
 * type + u64 count + elements; arrays may nest.
 *
 * The reader trusts nothing: every count, length, offset, shape and type is
 * checked, with overflow-safe arithmetic, before it is used, and a failure
 * names what is wrong and where (byte offset, key or tensor name). It accepts
 * versions 2 and 3 (v1 used 32-bit counts; big-endian files are refused);
 * non-empty keys and tensor names without NUL bytes, unique, names at most
 * GK_GGUF_MAX_NAME bytes; arrays nested at most GK_GGUF_MAX_DEPTH deep;
 * general.alignment only as a u32 power of two of at least 8; tensors of a
 * known ggml type with n_dims 1..4, every ne >= 1, ne[0] a whole number of blocks, the element
 * count within int64, an aligned offset and the bytes inside the file.
 * Overlapping tensors are accepted, as llama.cpp accepts them. A file without
 * tensors may end at its header (llama.cpp's vocabulary files do).
 */
#ifndef GK_GGUF_H
#define GK_GGUF_H

#include "base/base.h"
#include "tensor/dtype.h"

#define GK_GGUF_MAX_DIMS 4
#define GK_GGUF_DEFAULT_ALIGNMENT 32
/* Longest tensor name accepted (llama.cpp's own limit is 63 bytes). */
#define GK_GGUF_MAX_NAME 256
/* Deepest nesting of arrays accepted (an array of arrays has depth 2). */
#define GK_GGUF_MAX_DEPTH 8

typedef enum gk_gguf_type {
    GK_GGUF_UINT8 = 0,
    GK_GGUF_INT8 = 1,
    GK_GGUF_UINT16 = 2,
    GK_GGUF_INT16 = 3,
    GK_GGUF_UINT32 = 4,
    GK_GGUF_INT32 = 5,
    GK_GGUF_FLOAT32 = 6,
    GK_GGUF_BOOL = 7,
    GK_GGUF_STRING = 8,
    GK_GGUF_ARRAY = 9,
    GK_GGUF_UINT64 = 10,
    GK_GGUF_INT64 = 11,
    GK_GGUF_FLOAT64 = 12,
    GK_GGUF_TYPE_COUNT = 13
} gk_gguf_type;

/* A string inside the file: not NUL-terminated. */
typedef struct gk_str {
    const char *ptr;
    uint64_t len;
} gk_str;

typedef struct gk_gguf_value gk_gguf_value;

/* An array value. Numeric and bool elements are read in place (unaligned,
 * little-endian) through data; strings through strs; nested arrays through elems. */
typedef struct gk_gguf_array {
    gk_gguf_type type; /* element type */
    uint64_t n;
    const uint8_t *data;        /* numeric/bool elements: n * size of type */
    const gk_str *strs;         /* type STRING: n strings */
    const gk_gguf_value *elems; /* type ARRAY: n values (each of type ARRAY) */
} gk_gguf_array;

struct gk_gguf_value {
    gk_gguf_type type;
    union {
        uint64_t u64; /* UINT8..UINT64, BOOL */
        int64_t i64;  /* INT8..INT64 */
        double f64;   /* FLOAT32, FLOAT64 */
        gk_str str;
        gk_gguf_array arr;
    } v;
};

typedef struct gk_gguf_kv {
    const char *key; /* NUL-terminated copy */
    gk_gguf_value value;
} gk_gguf_kv;

typedef struct gk_gguf_tensor {
    const char *name; /* NUL-terminated copy */
    uint32_t n_dims;
    int64_t ne[GK_GGUF_MAX_DIMS]; /* ggml order: ne[0] innermost; unused dims are 1 */
    gk_dtype type;
    uint64_t offset; /* relative to the data section */
    uint64_t nbytes;
    const void *data; /* into the map */
    uint32_t shard;   /* which file of a split model holds it (0: the first) */
} gk_gguf_tensor;

typedef struct gk_gguf gk_gguf;

/* Maps and parses a file. Messages start with the path. */
gk_gguf *gk_gguf_open(const char *path, gk_err *err);
/* Parses a buffer that outlives the result (no copy); for tests and fuzzing. */
gk_gguf *gk_gguf_open_memory(const void *data, size_t size, gk_err *err);
void gk_gguf_close(gk_gguf *g);

/*
 * Opens a model that may be split by llama-gguf-split: when the file has a
 * split.count key above 1 it must be the first shard (split.no 0), named
 * PREFIX-00001-of-0000N.gguf, and the other shards PREFIX-0000I-of-0000N.gguf
 * are mapped too. Each must carry the same split.count and
 * split.tensors.count, its own split.no, and (if any) the same
 * general.architecture; no tensor may be in two shards, and together they must
 * hold split.tensors.count tensors. The metadata is the first shard's; the
 * tensor table lists every shard's tensors (data points into each shard's map,
 * shard says which). Without split keys this is gk_gguf_open. Errors name the
 * offending file.
 */
gk_gguf *gk_gguf_open_split(const char *path, gk_err *err);
/* Files of the model: 1 for a single file. */
uint32_t gk_gguf_n_shards(const gk_gguf *g);
/* Path of shard i of a split model; NULL for a single file or i out of range. */
const char *gk_gguf_shard_path(const gk_gguf *g, uint32_t i);
/* Bytes of every shard together (gk_gguf_file_size: the first file's). */
uint64_t gk_gguf_total_size(const gk_gguf *g);

uint32_t gk_gguf_version(const gk_gguf *g);
uint64_t gk_gguf_alignment(const gk_gguf *g);
uint64_t gk_gguf_file_size(const gk_gguf *g);
uint64_t gk_gguf_data_offset(const gk_gguf *g); /* start of the data section */
/* Whether p points into the bytes of the file or of one of its shards: their
 * read-only mapping (*file_mapped true), or the caller's memory given to
 * gk_gguf_open_memory (false). */
bool gk_gguf_holds(const gk_gguf *g, const void *p, bool *file_mapped);

int64_t gk_gguf_n_kv(const gk_gguf *g);
const gk_gguf_kv *gk_gguf_kv_at(const gk_gguf *g, int64_t i);
/* The value of key, or NULL when absent. */
const gk_gguf_value *gk_gguf_find(const gk_gguf *g, const char *key);

/* Typed getters. Return 1 when found (and *out set), 0 when absent (*out
 * untouched), -1 with an error naming the key when the stored type does not fit
 * (integers are accepted from any integer type whose value is in range; floats
 * from FLOAT32 or FLOAT64). */
int gk_gguf_get_u32(const gk_gguf *g, const char *key, uint32_t *out, gk_err *err);
int gk_gguf_get_i32(const gk_gguf *g, const char *key, int32_t *out, gk_err *err);
int gk_gguf_get_u64(const gk_gguf *g, const char *key, uint64_t *out, gk_err *err);
int gk_gguf_get_f32(const gk_gguf *g, const char *key, float *out, gk_err *err);
int gk_gguf_get_bool(const gk_gguf *g, const char *key, bool *out, gk_err *err);
int gk_gguf_get_str(const gk_gguf *g, const char *key, gk_str *out, gk_err *err);
/* Arrays: elem_type is the required element type (or -1 for any). */
int gk_gguf_get_arr(const gk_gguf *g, const char *key, int elem_type, gk_gguf_array *out,
                    gk_err *err);
/* Element accessors for numeric arrays (index must be < n; type must match;
 * otherwise they return 0). */
float gk_gguf_arr_f32(const gk_gguf_array *a, uint64_t i);
int32_t gk_gguf_arr_i32(const gk_gguf_array *a, uint64_t i);
uint32_t gk_gguf_arr_u32(const gk_gguf_array *a, uint64_t i);

int64_t gk_gguf_n_tensors(const gk_gguf *g);
const gk_gguf_tensor *gk_gguf_tensor_at(const gk_gguf *g, int64_t i);
/* The tensor called name, or NULL when absent. */
const gk_gguf_tensor *gk_gguf_find_tensor(const gk_gguf *g, const char *name);

/* Name of a value type ("u32", "string", ...). */
const char *gk_gguf_type_name(uint32_t type);

/* ---------------------------------------------------------------- writer --- */

typedef struct gk_gguf_writer gk_gguf_writer;

/* Produces a tensor's bytes when the file is written, in order, through
 * gk_gguf_sink_write; lets converters stream tensors that never fit in memory. */
typedef struct gk_gguf_sink gk_gguf_sink;
typedef int (*gk_gguf_produce_fn)(void *ud, gk_gguf_sink *sink, gk_err *err);
/* Appends n bytes of the tensor being produced. Returns -1 when the file write
 * fails or the bytes would exceed the tensor's size; the whole gk_gguf_write
 * then fails with that message, whatever the producer returns. */
int gk_gguf_sink_write(gk_gguf_sink *sink, const void *data, size_t n, gk_err *err);

gk_gguf_writer *gk_gguf_writer_new(gk_err *err);
void gk_gguf_writer_free(gk_gguf_writer *w);

/* Metadata setters; a key set twice keeps the last value (in the first one's
 * place). Values are copied. They return 0, or -1 on a bad key or value or out
 * of memory; the first such failure also makes gk_gguf_write fail with its
 * message, so a caller may set many keys and check once. */
int gk_gguf_set_u32(gk_gguf_writer *w, const char *key, uint32_t v);
int gk_gguf_set_i32(gk_gguf_writer *w, const char *key, int32_t v);
int gk_gguf_set_u64(gk_gguf_writer *w, const char *key, uint64_t v);
int gk_gguf_set_f32(gk_gguf_writer *w, const char *key, float v);
int gk_gguf_set_bool(gk_gguf_writer *w, const char *key, bool v);
int gk_gguf_set_str(gk_gguf_writer *w, const char *key, const char *v);
/* Arrays of numbers (elem_type a numeric or bool type; data holds n elements in
 * that type's in-memory layout) and of strings. */
int gk_gguf_set_arr(gk_gguf_writer *w, const char *key, gk_gguf_type elem_type, const void *data,
                    uint64_t n);
int gk_gguf_set_arr_str(gk_gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
/* Any value, as the reader exposes it: every scalar type, strings, and arrays
 * nested up to GK_GGUF_MAX_DEPTH (elems[i] of type ARRAY). */
int gk_gguf_set_value(gk_gguf_writer *w, const char *key, const gk_gguf_value *v, gk_err *err);
/* Copies every key/value of a reader (used by quantize and friends), except
 * the split.* keys of a split model's first shard: what is written is one file. */
int gk_gguf_copy_kv(gk_gguf_writer *w, const gk_gguf *src, gk_err *err);

/* Adds a tensor whose bytes are at data (kept by pointer until written). The
 * name (1..GK_GGUF_MAX_NAME bytes, unique), type and shape are checked as the
 * reader checks them; a failure also makes gk_gguf_write fail. */
int gk_gguf_add_tensor(gk_gguf_writer *w, const char *name, gk_dtype type, uint32_t n_dims,
                       const int64_t *ne, const void *data, gk_err *err);
/* Adds a tensor whose bytes are produced on write (exactly its byte size). */
int gk_gguf_add_tensor_fn(gk_gguf_writer *w, const char *name, gk_dtype type, uint32_t n_dims,
                          const int64_t *ne, gk_gguf_produce_fn fn, void *ud, gk_err *err);

/* Writes version 3 with general.alignment's value (a u32 power of two >= 8; default
 * 32) to path through a temporary file in the same directory (path.tmp.XXXXXX,
 * mode 0644), fsynced and renamed into place only when complete; on failure
 * nothing is left behind. Tensors are written in the order added, each padded
 * with zeros to the alignment; produced tensors stream through a bounded
 * buffer, and a producer that writes more or fewer bytes than the tensor's size
 * fails the write. */
int gk_gguf_write(gk_gguf_writer *w, const char *path, gk_err *err);

#endif
