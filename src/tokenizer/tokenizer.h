/*
 * tokenizer.h - internal tokenizer entry points (the public API is in grok.h).
 */
#ifndef GK_TOKENIZER_H
#define GK_TOKENIZER_H

#include "format/gguf.h"

/* Builds the tokenizer described by a GGUF's tokenizer.ggml.* keys. Returns NULL
 * with err->msg empty when the file has no tokenizer (no tokenizer.ggml.model),
 * NULL with a message when it has a broken one. */
gk_tokenizer *gk_tokenizer_from_gguf(const gk_gguf *g, gk_err *err);

/* Writes the tokenizer.ggml.* keys (and tokenizer.chat_template for Grok-2)
 * that gk_tokenizer_from_gguf reads back to the same tokenizer; llama.cpp reads
 * them too. */
int gk_tokenizer_to_gguf(const gk_tokenizer *t, gk_gguf_writer *w, gk_err *err);

/* Loads a tokenizer from bytes in memory (any format gk_tokenizer_load takes);
 * name is the file name, which tells a .tiktoken file's encoding. For tests and
 * fuzzing. */
gk_tokenizer *gk_tokenizer_load_memory(const void *data, size_t n, const char *name,
                                       gk_err *err);

#endif
