/*
 * quantize.h - re-encoding a GGUF's weights into another type (`grok quantize`),
 * and the pieces that `grok convert` shares with it:
 *
 *   - the precision policy: which tensors get the target type and which stay in
 *     high precision (norms, 1-D tensors and the router always, as llama.cpp
 *     does; the token embedding unless asked; --keep patterns);
 *   - a row converter that runs any supported type to any other through fp32,
 *     on a thread pool, in bounded chunks;
 *   - the output path: a free-space check before any long work, a write through
 *     a temporary file, a read-back that checks the tensor table and a checksum
 *     of every tensor's bytes, and only then the rename into place. On any
 *     failure no output file remains.
 *
 * Memory: input tensors are read with pread in chunks of GK_QUANT_CHUNK bytes
 * (never through a map, whose touched pages would count against RSS), so the
 * peak resident size does not grow with the model.
 */
#ifndef GK_QUANTIZE_H
#define GK_QUANTIZE_H

#include "base/progress.h"
#include "format/gguf.h"

#include <signal.h>

/* Source bytes converted per step (per tensor slice). */
#define GK_QUANT_CHUNK (16u << 20)

/* ------------------------------------------------------------- policy --- */

/* llama-quantize's mixes: a base type, with more bits where llama.cpp's
 * llama_tensor_get_type puts them (attn_k/attn_v, attn_output, ffn_down in some
 * layers, output.weight Q6_K). */
typedef enum gk_quant_mix {
    GK_MIX_NONE = 0, /* every weight matrix gets policy.type */
    GK_MIX_Q2_K,
    GK_MIX_Q3_K_M,
    GK_MIX_Q4_K_M,
    GK_MIX_Q5_K_M,
    GK_MIX_Q6_K,
} gk_quant_mix;

typedef struct gk_quant_policy {
    gk_dtype type;           /* what weight matrices become (a mix: its base type) */
    const char *const *keep; /* fnmatch(3) patterns of GGUF tensor names kept as they are */
    int n_keep;
    bool quantize_embedding; /* token_embd.weight gets `type` too (default: kept) */
    gk_quant_mix mix;        /* GK_MIX_NONE: the plain `type` everywhere */
    /* The model's shape, which the mixes consult (as llama.cpp does): layers,
     * experts per layer, query heads per KV head. gk_quantize and gk_convert
     * fill them in from the model. */
    int n_layer, n_expert, n_gqa;
    bool tied_output; /* no output.weight: the embedding is the output (its mix rule) */
} gk_quant_policy;

/* True for the types a file can be written in: those the engine computes with
 * (gk_type_is_supported) that have a from_float quantizer. */
bool gk_quant_type_ok(gk_dtype t);
/* A writable type by name ("q8_0", case-insensitive), or -1. */
int gk_quant_type_from_name(const char *name);
/* The writable types' names, comma-separated ("f32, f16, q4_0, q8_0, bf16"). */
void gk_quant_type_list(char *buf, size_t cap);
/* The type a tensor gets:
 *   - `exact` for norms, other 1-D tensors and the router (ffn_gate_inp);
 *   - `kept` for the token embedding (unless quantize_embedding) and tensors
 *     matching a keep pattern;
 *   - with a mix, the mix's type for that tensor (by its name and layer);
 *   - the policy's type otherwise;
 *   and for rows that are not a whole number of blocks of that type, its
 *   fallback (gk_quant_fallback), or `kept` when even that does not fit. */
gk_dtype gk_quant_choose(const gk_quant_policy *p, const char *name, uint32_t n_dims, int64_t ne0,
                         gk_dtype exact, gk_dtype kept);
/* llama.cpp's general.file_type for a target type, or -1 when it has none. */
int gk_quant_file_type(gk_dtype t);
/* llama.cpp's general.file_type for a policy (its mix, else its type), or -1. */
int gk_quant_policy_file_type(const gk_quant_policy *p);
/* A mix by name ("q4_k_m", case-insensitive): sets *mix and *base; -1 if none.
 * "q2_k" and "q6_k" name mixes (as in llama-quantize), not the plain types. */
int gk_quant_mix_from_name(const char *name, gk_quant_mix *mix, gk_dtype *base);
/* The mixes' names, comma-separated. */
const char *gk_quant_mix_list(void);
/* The type llama.cpp falls back to when a row of ne0 elements is not a whole
 * number of blocks of t (k-quants need multiples of 256): the nearest 32-block
 * type the engine runs, else f16. Returns t when it fits. */
gk_dtype gk_quant_fallback(gk_dtype t, int64_t ne0);

/* -------------------------------------------------------- rows, hashes --- */

typedef struct gk_quant_rows gk_quant_rows;
/* A converter with n_threads threads (0 = all online CPUs). */
gk_quant_rows *gk_quant_rows_new(int n_threads, gk_err *err);
void gk_quant_rows_free(gk_quant_rows *c);
/* Converts n_rows rows of n_per_row elements from src (type st) to dst (type dt).
 * Both types need to_float/from_float (checked); n_per_row must be a multiple
 * of both block sizes. Equal types are copied. */
int gk_quant_rows_run(gk_quant_rows *c, const void *src, gk_dtype st, void *dst, gk_dtype dt,
                      int64_t n_per_row, int64_t n_rows, gk_err *err);

/* A streaming 64-bit checksum (independent of how the bytes are split). */
typedef struct gk_quant_hash {
    uint64_t v[4];
    uint64_t total;
    uint8_t buf[32];
    size_t nbuf;
} gk_quant_hash;
void gk_quant_hash_init(gk_quant_hash *h);
void gk_quant_hash_update(gk_quant_hash *h, const void *data, size_t n);
uint64_t gk_quant_hash_final(const gk_quant_hash *h);

/* ------------------------------------------------------- output files --- */

/* Options of a job that writes a model file. */
typedef struct gk_quant_out_opts {
    int n_threads;               /* 0 = all online CPUs */
    bool verify_data;            /* re-read and checksum every tensor before the rename */
    uint64_t free_disk_override; /* tests: pretend this many bytes are free (0 = ask statvfs) */
    gk_progress_fn progress;     /* may be NULL */
    void *progress_ud;
    const volatile sig_atomic_t *cancel; /* non-zero: stop and clean up (SIGINT) */
} gk_quant_out_opts;

/* What one output tensor must look like; hash is filled in while it is written. */
typedef struct gk_quant_out_tensor {
    const char *name;
    gk_dtype type;
    uint32_t n_dims;
    int64_t ne[GK_GGUF_MAX_DIMS];
    uint64_t hash;
} gk_quant_out_tensor;

/* Fails, naming the folder and both sizes, when the file system that will hold
 * path has less than need bytes free. */
int gk_quant_check_space(const char *path, uint64_t need, uint64_t free_override, gk_err *err);
/* Bytes a GGUF with these tensors takes: their data, each padded to the
 * alignment, plus header_bytes for metadata and the tensor table. */
uint64_t gk_quant_file_bytes(const gk_quant_out_tensor *t, int64_t n, uint64_t header_bytes);
/* Writes w to a temporary file beside path, checks it (tensor table equal to
 * the n expected tensors, file size, and with verify_data each tensor's
 * checksum), then renames it to path. Nothing remains on failure. */
int gk_quant_write_verified(gk_gguf_writer *w, const char *path, const gk_quant_out_tensor *t,
                            int64_t n, const gk_quant_out_opts *o, gk_err *err);

/* ----------------------------------------------------------- quantize --- */

typedef struct gk_quantize_params {
    gk_quant_policy policy;
    bool allow_requantize; /* accept inputs that are already quantized (lossy twice) */
    gk_quant_out_opts out;
} gk_quantize_params;

/* Target Q8_0, embedding kept, verification on, all CPUs. */
gk_quantize_params gk_quantize_default_params(void);

/* Re-encodes in_path into out_path: every key/value is copied, tensors follow
 * the policy. Checks (target type, requantization, disk space) come before any
 * tensor is written. */
int gk_quantize(const char *in_path, const char *out_path, const gk_quantize_params *p,
                gk_err *err);

#endif
