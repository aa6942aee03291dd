/*
 * data.h - training data: checked text, cached token shards, a validation
 * split and a deterministic order of training windows (see data.c).
 */
#ifndef GK_TRAIN_DATA_H
#define GK_TRAIN_DATA_H

#include "base/base.h"

#include <math.h>

typedef struct gk_corpus {
    int32_t *train, *val;
    size_t n_train, n_val;
    size_t n_bytes; /* text bytes tokenized (0 when read from the cache) */
    bool from_cache;
    char cache_path[4200];
} gk_corpus;

uint64_t gk_fnv1a(uint64_t h, const void *data, size_t n);
/* Fails for an empty text, a NUL byte (binary file) or invalid UTF-8, naming
 * the file and the byte offset. */
int gk_text_check(const uint8_t *p, size_t n, const char *name, gk_err *err);
/* The same for a file (which must exist and be a regular file). */
int gk_text_check_file(const char *path, gk_err *err);
/* Reads, checks and tokenizes the files (or reads the cache in cache_dir made
 * from the same texts, tokenizer and split), holding out every round(1/val_frac)-th
 * block of 1024 tokens for validation. */
int gk_corpus_load(gk_corpus *c, const gk_tokenizer *tok, const char *const *files, int n_files,
                   const char *cache_dir, float val_frac, gk_err *err);
void gk_corpus_free(gk_corpus *c);
/* Start of training window seq of step (T+1 tokens), a pure function of
 * (seed, step, seq): resuming and splitting a batch over processes need no state. */
uint64_t gk_corpus_window(const gk_corpus *c, uint64_t seed, uint64_t step, uint64_t seq, int T);
/* Inputs and targets of sequences seq0 .. seq0+B-1 of a step. */
void gk_corpus_batch(const gk_corpus *c, uint64_t seed, uint64_t step, uint64_t seq0, int B, int T,
                     int32_t *inp, int32_t *tgt);
/* Cross-entropy (nats per token) of the training unigram distribution on the
 * validation tokens: the bar a trained model must get well below. */
double gk_corpus_unigram_entropy(const gk_corpus *c, int32_t n_vocab);

#endif
