/*
 * ckpt.h - training checkpoints in a directory:
 *   step-NNNNNNNN.gguf   the weights, f32, an ordinary model file (grok run loads it)
 *   step-NNNNNNNN.opt    AdamW moments and the run's position (see ckpt.c)
 *   latest               the name of the newest complete pair
 * Each file is written to a temporary name, fsynced and renamed into place; the
 * optimizer state first, the weights second, `latest` last, so a failure at
 * any point (a full disk) leaves the previous checkpoint whole and current.
 */
#ifndef GK_TRAIN_CKPT_H
#define GK_TRAIN_CKPT_H

#include "train/train.h"

/* Where a run stands; saved with the optimizer state. */
typedef struct gk_train_pos {
    uint64_t step;     /* optimizer steps done */
    uint64_t seed;     /* data-order seed */
    uint64_t data_key; /* hash of the token cache the run trains on */
    uint64_t cfg_hash; /* hash of the options that must not change on resume */
    double tokens;     /* training tokens seen */
    double elapsed_s;  /* training time so far */
} gk_train_pos;

/* FNV-1a of every parameter (the padding excluded). */
uint64_t gk_tmodel_checksum(const gk_tmodel *tm);

/* Saves a checkpoint of step pos->step into dir and keeps the newest `keep`
 * (older pairs are removed). gguf_out (cap bytes) gets the weights' path. */
int gk_ckpt_save(const char *dir, const gk_tmodel *tm, const float *m, const float *v,
                 const gk_train_pos *pos, const gk_tsave_opts *so, int keep, char *gguf_out,
                 size_t cap, gk_err *err);
/* Resolves what --resume names (a checkpoint directory, or a step-N.gguf or
 * .opt file) to the two paths. */
int gk_ckpt_resolve(const char *arg, char *gguf, char *opt, size_t cap, gk_err *err);
/* Reads the optimizer state for a model whose weights were loaded from the
 * matching .gguf; checks its integrity and that it belongs to those weights. */
int gk_ckpt_load_opt(const char *path, const gk_tmodel *tm, float *m, float *v, gk_train_pos *pos,
                     gk_err *err);

#endif
