/*
 * fuzz_tok_encode.c - libFuzzer target for the encoders and decoders.
 *
 * Input: one selector byte, then text. The selector picks one of three small
 * tokenizers built here (a Grok-2 style rank BPE; a SentencePiece BPE with
 * byte fallback, user-defined symbols and an UNUSED piece; one without byte
 * fallback that removes extra white space) and whether special tokens are
 * allowed. Besides "no crash, no leak", it checks the properties the
 * tokenizers promise: every id is in range; the rank BPE gives back the exact
 * bytes; SentencePiece with identity normalization gives back valid UTF-8
 * text (other than U+2581, its space symbol); the streaming decoder accepts
 * every id and writes valid UTF-8.
 */
#include "grok.h"
#include "tokenizer/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *s, size_t n) {
    while (b->n + n > b->cap) {
        b->cap = b->cap ? b->cap * 2 : 4096;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void putf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void putf(buf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    put(b, tmp, (size_t)k);
}

static void varint(buf *b, uint64_t v) {
    do {
        uint8_t c = v & 0x7F;
        v >>= 7;
        if (v) c |= 0x80;
        put(b, &c, 1);
    } while (v);
}

static void field_bytes(buf *b, int f, const void *s, size_t n) {
    varint(b, (uint64_t)f << 3 | 2);
    varint(b, n);
    put(b, s, n);
}

static void field_int(buf *b, int f, uint64_t v) {
    varint(b, (uint64_t)f << 3);
    varint(b, v);
}

static void sp_piece(buf *m, const char *text, float score, int type) {
    buf p = {0};
    field_bytes(&p, 1, text, strlen(text));
    varint(&p, 2 << 3 | 5);
    put(&p, &score, 4);
    field_int(&p, 3, (uint64_t)type);
    field_bytes(m, 1, p.p, p.n);
    free(p.p);
}

static gk_tokenizer *make_spm(bool bytes, bool remove_ws) {
    buf m = {0};
    sp_piece(&m, "<unk>", 0, 2);
    sp_piece(&m, "<s>", 0, 3);
    sp_piece(&m, "</s>", 0, 3);
    if (bytes)
        for (int i = 0; i < 256; i++) {
            char t[8];
            snprintf(t, sizeof t, "<0x%02X>", i);
            sp_piece(&m, t, 0, 6);
        }
    const char *user[] = {"\n", "\n\n", "<|sep|>", "  ", "1"};
    for (int i = 0; i < 5; i++) sp_piece(&m, user[i], 0, 4);
    const char *normal[] = {"\xe2\x96\x81", "a", "b", "c", "\xc3\xa9", "\xe2\x96\x81" "a", "ab",
                            "\xe2\x96\x81" "ab", "bc", "abc", "\xe2\x96\x81" "abc", "\xe2\x96\x81\xc3\xa9",
                            "\xe2\x96\x81\xe2\x96\x81", "ca", "cab"};
    for (int i = 0; i < 15; i++) sp_piece(&m, normal[i], -(float)i, i == 8 ? 5 : 1); /* bc unused */
    buf tr = {0};
    field_int(&tr, 3, 2); /* BPE */
    field_int(&tr, 35, bytes);
    field_bytes(&m, 2, tr.p, tr.n);
    buf no = {0};
    field_bytes(&no, 1, "identity", 8);
    field_int(&no, 3, 1);
    field_int(&no, 4, remove_ws);
    field_bytes(&m, 3, no.p, no.n);
    gk_err err;
    gk_tokenizer *t = gk_tokenizer_load_memory(m.p, m.n, "fuzz.model", &err);
    if (!t) {
        fprintf(stderr, "fuzz_tok_encode: %s\n", err.msg);
        abort();
    }
    free(m.p), free(tr.p), free(no.p);
    return t;
}

static gk_tokenizer *make_bpe(void) {
    buf j = {0};
    putf(&j, "{\"word_split\": \"V1\", \"regular_tokens\": [");
    for (int i = 0; i < 256; i++) putf(&j, "%s{\"token\": %d, \"bytes\": [%d]}", i ? ", " : "", 3 + i, i);
    const char *merges[] = {"he", "ll", "hell", "hello", " w", " wo", "or", " wor", "ld", "\n\n",
                            "  ", "    ", "\xc3\xa9", "12"};
    for (int i = 0; i < 14; i++) {
        putf(&j, ", {\"token\": %d, \"bytes\": [", 259 + i);
        for (size_t k = 0; k < strlen(merges[i]); k++)
            putf(&j, "%s%d", k ? ", " : "", (uint8_t)merges[i][k]);
        putf(&j, "]}");
    }
    putf(&j, "], \"special_tokens\": [{\"token\": 0, \"bytes\": [60, 124, 112, 124, 62]},"
             "{\"token\": 1, \"bytes\": [60, 124, 115, 124, 62]}, {\"token\": 2, \"bytes\": [60, 124, 101, 124, 62]}]}");
    gk_err err;
    gk_tokenizer *t = gk_tokenizer_load_memory(j.p, j.n, "tokenizer.tok.json", &err);
    if (!t) {
        fprintf(stderr, "fuzz_tok_encode: %s\n", err.msg);
        abort();
    }
    free(j.p);
    return t;
}

static bool valid_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        int l = c < 0x80 ? 1 : c < 0xC2 ? 0 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF5 ? 4 : 0;
        if (!l || i + (size_t)l > n) return false;
        uint32_t cp = l == 1 ? c : (uint32_t)(c & (0x7F >> l));
        for (int k = 1; k < l; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((l == 3 && (cp < 0x800 || (cp >= 0xD800 && cp < 0xE000))) || (l == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return false;
        i += (size_t)l;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static gk_tokenizer *toks[3];
    if (!toks[0]) {
        toks[0] = make_bpe();
        toks[1] = make_spm(true, false);
        toks[2] = make_spm(false, true);
    }
    if (size < 1) return 0;
    int which = data[0] % 3;
    bool special = data[0] & 0x80;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    const gk_tokenizer *t = toks[which];
    gk_err err;
    int cap = (int)(n + 8);
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    int k = gk_tokenize(t, text, n, special, ids, cap, &err);
    if (k > cap) { /* SentencePiece: a malformed byte is U+FFFD, three byte tokens */
        ids = realloc(ids, (size_t)k * sizeof *ids);
        if (gk_tokenize(t, text, n, special, ids, k, &err) != k) abort();
        cap = k;
    }
    if (k < 0) {
        fprintf(stderr, "encode failed: %s\n", err.msg);
        abort();
    }
    int32_t nv = gk_tokenizer_n_vocab(t);
    for (int i = 0; i < k; i++)
        if (ids[i] < 0 || ids[i] >= nv) abort();
    /* Decode to bytes. */
    size_t m = 0, mcap = 16 * n + 64;
    char *back = malloc(mcap);
    for (int i = 0; i < k; i++) {
        int l = gk_token_to_bytes(t, ids[i], i == 0, back + m, (int)(mcap - m));
        if (l < 0 || (size_t)l > mcap - m) abort();
        m += (size_t)l;
    }
    if (which == 0 && (m != n || memcmp(back, text, n) != 0)) abort();
    /* SentencePiece gives back valid UTF-8 text, except U+2581, which it
     * reads as its own space symbol and decodes as a space. */
    bool has_2581 = false;
    for (size_t i = 0; i + 2 < n && !has_2581; i++)
        has_2581 = memcmp(text + i, "\xe2\x96\x81", 3) == 0;
    if (which == 1 && !special && !has_2581 && valid_utf8(data + 1, n) &&
        (m != n || memcmp(back, text, n) != 0))
        abort();
    /* The streaming decoder accepts every id and writes only valid UTF-8. */
    gk_detok d;
    gk_detok_init(&d, t);
    d.first = true;
    char out[4096];
    for (int i = 0; i < k; i++) {
        int l = gk_detok_push(&d, ids[i], out, sizeof out);
        if (l < 0 || !valid_utf8((const uint8_t *)out, (size_t)l)) abort();
    }
    int l = gk_detok_flush(&d, out, sizeof out);
    if (l < 0 || !valid_utf8((const uint8_t *)out, (size_t)l)) abort();
    free(back);
    free(ids);
    return 0;
}
