/*
 * convert.h - imports an official Grok checkpoint folder into one GGUF file.
 *
 * The folder is xai-org/grok-2 as released (spec 6.2): config.json,
 * tokenizer.tok.json, and bf16 safetensors pre-sharded for 8-way tensor
 * parallelism, named *-TP-common.safetensors (tensors stored whole) and
 * *-TP-NNN.safetensors (rank NNN's slice of every expert), any number of each.
 * A folder of plain *.safetensors with whole experts (no -TP- in any name) is
 * read the same way, with one rank.
 *
 * The conversion:
 *   1. reads config.json (every field of spec 1) and checks it;
 *   2. finds the shard files, opens every header, and checks before any long
 *      work that no shard is missing or extra, that every tensor the config
 *      implies is present exactly once with the right shape and a supported
 *      dtype, and that the disk has room for the output;
 *   3. streams tensor by tensor into the GGUF writer: expert slices are merged
 *      (w1 and w3 along dim 0, w2 along dim 1, in rank order, spec 6.2), names
 *      follow llama.cpp (spec 8), weights are converted or quantized in bounded
 *      chunks, so the peak RSS stays far below 2 GiB whatever the model's size;
 *   4. writes the metadata with the release's plain RoPE and no rope.scaling
 *      keys (spec "Decisions" 3) and the tokenizer from tokenizer.tok.json;
 *   5. re-reads and checks the output, and only then renames it into place.
 * On failure no output file remains.
 */
#ifndef GK_CONVERT_H
#define GK_CONVERT_H

#include "format/quantize.h"

typedef struct gk_convert_params {
    gk_quant_policy policy; /* policy.type: what weight matrices become (default bf16) */
    gk_quant_out_opts out;
    const char *name; /* general.name; NULL: the folder's name */
} gk_convert_params;

/* bf16 weights, embedding kept, verification on, all CPUs. */
gk_convert_params gk_convert_default_params(void);

/* What a conversion read and wrote. */
typedef struct gk_convert_info {
    int n_files;        /* safetensors files read */
    int n_ranks;        /* tensor-parallel ranks of the expert shards (1 when unsharded) */
    int64_t n_tensors;  /* tensors written */
    uint64_t bytes_in;  /* tensor bytes read */
    uint64_t bytes_out; /* size of the output file */
    double seconds;
} gk_convert_info;

/* Converts the checkpoint in dir to out_path. info may be NULL. */
int gk_convert(const char *dir, const char *out_path, const gk_convert_params *p,
               gk_convert_info *info, gk_err *err);

#endif
