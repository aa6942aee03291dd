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

#endif
