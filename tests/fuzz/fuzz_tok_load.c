/*
 * fuzz_tok_load.c - libFuzzer target for the tokenizer loaders: SentencePiece
 * protobuf, tokenizer.tok.json, .tiktoken and GGUF vocabularies.
 *
 * Input: one selector byte that names the file (the name tells a .tiktoken
 * file's encoding; the format itself is recognised by content), then the file.
 * A file that loads is then used: a short text is encoded and decoded, and the
 * tokenizer is written to GGUF keys (not to disk).
 */
#include "grok.h"
#include "tokenizer/tokenizer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *names[] = {"tokenizer.model", "tokenizer.tok.json", "fuzz_cl100k.tiktoken",
                                  "model.gguf"};
    if (size < 1) return 0;
    gk_err err;
    gk_tokenizer *t = gk_tokenizer_load_memory(data + 1, size - 1, names[data[0] & 3], &err);
    if (!t) {
        if (!err.msg[0]) abort(); /* a failure must say why */
        return 0;
    }
    static const char text[] = "Hello, world! 123 <|separator|>\n\n  caf\xc3\xa9 \xff \xe2\x96\x81x";
    int32_t ids[256];
    int n = gk_tokenize(t, text, sizeof text - 1, true, ids, 256, &err);
    if (n > 256) abort(); /* the text is far shorter than 256 tokens of any vocabulary */
    int32_t nv = gk_tokenizer_n_vocab(t);
    gk_detok d;
    gk_detok_init(&d, t);
    char out[1024];
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= nv) abort();
        gk_detok_push(&d, ids[i], out, sizeof out);
        gk_token_piece(t, ids[i]);
    }
    gk_gguf_writer *w = gk_gguf_writer_new(&err);
    if (w) {
        gk_tokenizer_to_gguf(t, w, &err);
        gk_gguf_writer_free(w);
    }
    gk_tokenizer_free(t);
    return 0;
}
