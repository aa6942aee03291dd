/*
 * safetensors.h - safetensors reader (Hugging Face's tensor file format).
 *
 * File layout: u64 little-endian N, then N bytes of UTF-8 JSON (may be padded
 * with spaces), then the data section. The JSON maps each tensor name to
 * {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]} with offsets
 * relative to the start of the data section; the optional key "__metadata__"
 * maps strings to strings. Shapes are torch order (shape[0] outermost).
 *
 * The reader trusts nothing: the header length, every shape, offset and byte
 * count is checked with overflow-safe arithmetic against the file size, and
 * tensors may not overlap. Only BF16, F16 and F32 data are accepted; any other
 * dtype fails with a message that names the tensor and the dtype.
 *
 * Data is read either with gk_st_read (pread into the caller's buffer: the
 * pages never count against the process's RSS, and a file that shrinks while
 * it is read gives an error instead of SIGBUS) or through a read-only map
 * (gk_st_data) for callers that want zero-copy access.
 */
#ifndef GK_SAFETENSORS_H
#define GK_SAFETENSORS_H

#include "base/base.h"
#include "tensor/dtype.h"

#define GK_ST_MAX_DIMS 8
/* Largest accepted header: the format's own limit (100 MB). */
#define GK_ST_MAX_HEADER (100u * 1000u * 1000u)

typedef struct gk_st_tensor {
    const char *name;
    gk_dtype type; /* GK_TYPE_F32, GK_TYPE_F16 or GK_TYPE_BF16 */
    uint32_t n_dims;
    int64_t shape[GK_ST_MAX_DIMS]; /* torch order; unused dims are 1 */
    uint64_t offset;               /* absolute offset of the first byte in the file */
    uint64_t nbytes;
} gk_st_tensor;

typedef struct gk_st_file gk_st_file;

/* Opens a file and parses and checks its header (the data is not read). */
gk_st_file *gk_st_open(const char *path, gk_err *err);
/* Parses a buffer that outlives the result (no copy); for tests and fuzzing. */
gk_st_file *gk_st_open_memory(const void *data, size_t size, gk_err *err);
void gk_st_close(gk_st_file *f);

const char *gk_st_path(const gk_st_file *f); /* "<memory>" for a buffer */
uint64_t gk_st_file_size(const gk_st_file *f);

/* Tensors in the order the header lists them. */
int64_t gk_st_n_tensors(const gk_st_file *f);
const gk_st_tensor *gk_st_tensor_at(const gk_st_file *f, int64_t i);
/* The tensor called name, or NULL (binary search). */
const gk_st_tensor *gk_st_find(const gk_st_file *f, const char *name);
/* A string of "__metadata__", or NULL. */
const char *gk_st_metadata(const gk_st_file *f, const char *key);

/* Elements of a tensor (product of its shape). */
int64_t gk_st_numel(const gk_st_tensor *t);

/* Copies n bytes starting off bytes into tensor t to buf. */
int gk_st_read(const gk_st_file *f, const gk_st_tensor *t, uint64_t off, void *buf, size_t n,
               gk_err *err);
/* Tells the kernel that the page cache of this byte range will not be read
 * again (a no-op for buffers). */
void gk_st_drop_cache(const gk_st_file *f, const gk_st_tensor *t);
/* The tensor's bytes inside a read-only map of the file (mapped on first use). */
const void *gk_st_data(gk_st_file *f, const gk_st_tensor *t, gk_err *err);

#endif
