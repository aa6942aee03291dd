/*
 * test_tok.c - tokenizer unit tests on small hand-made vocabularies (no test
 * data needed), plus hand-checked cases on Grok-1's tokenizer.model when
 * ../shared/testdata is present:
 *   - the Grok-2 pre-tokenizer regex, piece by piece (single digits,
 *     contractions, newline and space runs), checked by hand against spec 7.2
 *   - rank merges, special tokens only where allowed, stop tokens
 *   - streaming decode of characters split across tokens, invalid UTF-8
 *   - the Grok-2 chat template
 *   - SentencePiece semantics for Grok-1 (user-defined symbols, dummy prefix)
 *   - malformed files: clear errors, never a crash
 *   - GGUF round trip: load -> gk_tokenizer_to_gguf -> load gives the same ids
 */
#include "gk_test.h"
#include "grok.h"
#include "tokenizer/tok_internal.h"

#include <stdarg.h>

/* ----------------------------------------------------------- helpers --- */

typedef struct sb {
    char *p;
    size_t n, cap;
} sb;

static void sb_add(sb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    while (b->n + (size_t)k + 1 > b->cap) {
        b->cap = b->cap ? b->cap * 2 : 1024;
        b->p = realloc(b->p, b->cap);
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

static void add_tok(sb *b, int id, const char *bytes, size_t n, bool comma) {
    sb_add(b, "%s{\"token\": %d, \"bytes\": [", comma ? ", " : "", id);
    for (size_t i = 0; i < n; i++) sb_add(b, "%s%u", i ? ", " : "", (unsigned char)bytes[i]);
    sb_add(b, "]}");
}

/* A tiny Grok-2 style tok.json: specials <|pad|> 0, <|separator|> 1, <|eos|> 2,
 * the 256 bytes at 3..258, then merges he, ll, hell, hello, " w", " wo". */
static const char *MERGES[] = {"he", "ll", "hell", "hello", " w", " wo", "or", " wor", "ld"};
#define N_MERGES (int)(sizeof MERGES / sizeof MERGES[0])

static char *tiny_tokjson(void) {
    sb b = {0};
    sb_add(&b, "{\"word_split\": \"V1\", \"regular_tokens\": [");
    for (int i = 0; i < 256; i++) {
        char c = (char)i;
        add_tok(&b, 3 + i, &c, 1, i > 0);
    }
    for (int i = 0; i < N_MERGES; i++) add_tok(&b, 259 + i, MERGES[i], strlen(MERGES[i]), true);
    sb_add(&b, "], \"special_tokens\": [");
    add_tok(&b, 0, "<|pad|>", 7, false);
    add_tok(&b, 1, "<|separator|>", 13, true);
    add_tok(&b, 2, "<|eos|>", 7, true);
    sb_add(&b, "]}");
    return b.p;
}

static gk_tokenizer *load_str(const char *s, size_t n, const char *name, gk_err *err) {
    return gk_tokenizer_load_memory(s, n, name, err);
}

static int enc(const gk_tokenizer *t, const char *s, bool special, int32_t *out, int cap) {
    gk_err err;
    int n = gk_tokenize(t, s, strlen(s), special, out, cap, &err);
    CHECK_MSG(n >= 0, "encode '%s': %s", s, err.msg);
    return n;
}

static bool ids_eq(const int32_t *a, int na, const int32_t *b, int nb) {
    return na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0;
}

/* Checks that the pre-tokenizer cuts s into exactly the given pieces. */
static void check_pieces(const gk_tokenizer *t, const char *s, size_t len, int n, ...) {
    size_t ends[64];
    gk_err err;
    int got = gk_tok_bpe_pieces(t, s, len, ends, 64, &err);
    va_list ap;
    va_start(ap, n);
    bool ok = got == n;
    size_t start = 0;
    for (int i = 0; i < n && ok; i++) {
        const char *want = va_arg(ap, const char *);
        size_t wl = strlen(want);
        ok = ends[i] - start == wl && memcmp(s + start, want, wl) == 0;
        start = ends[i];
    }
    va_end(ap);
    if (!ok) {
        fprintf(stderr, "pieces of '%.*s':", (int)len, s);
        start = 0;
        for (int i = 0; i < got && i < 64; i++) {
            fprintf(stderr, " [%.*s]", (int)(ends[i] - start), s + start);
            start = ends[i];
        }
        fprintf(stderr, "\n");
    }
    CHECK_MSG(ok, "pieces of '%.*s'", (int)len, s);
}

/* ------------------------------------------------------------- tests --- */

static void test_grok2_pattern(const gk_tokenizer *t) {
    /* Each expectation below is worked out by hand from the regex of spec 7.2:
     * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}
     * | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
#define P(s, n, ...) check_pieces(t, s, strlen(s), n, __VA_ARGS__)
    P("123", 3, "1", "2", "3");                        /* digits one at a time */
    P("abc2024def", 6, "abc", "2", "0", "2", "4", "def");
    P("I'll've", 3, "I", "'ll", "'ve");                /* contractions split off */
    P("DON'T we're", 4, "DON", "'T", " we", "'re");    /* case-insensitive */
    P("hello\n\n\nworld", 3, "hello", "\n\n\n", "world"); /* a newline run is one piece */
    P("a  \n\n  b", 4, "a", "  \n\n", " ", " b");      /* spaces before newlines join them */
    P("  hello", 2, " ", " hello");                    /* the last space goes to the word */
    P("hello world!!!\n", 3, "hello", " world", "!!!\n");
    P("x=1.5e10", 8, "x", "=", "1", ".", "5", "e", "1", "0");
    P("$hello \r\n", 2, "$hello", " \r\n");
    P("naïve café", 2, "naïve", " café");
    P("tab\there", 2, "tab", "\there");              /* a tab leads a word like a space */
    P("end   ", 2, "end", "   ");
    /* Malformed UTF-8 is never matched: the skipped bytes are their own piece. */
    check_pieces(t, "a\xff\xfe" "b", 4, 3, "a", "\xff\xfe", "b");
#undef P
}

static void test_tokjson(void) {
    char *js = tiny_tokjson();
    gk_err err;
    gk_tokenizer *t = load_str(js, strlen(js), "tokenizer.tok.json", &err);
    CHECK_MSG(t != NULL, "%s", err.msg);
    free(js);
    if (!t) return;
    CHECK(gk_tokenizer_get_kind(t) == GK_TOKENIZER_BPE);
    CHECK(gk_tokenizer_n_vocab(t) == 259 + N_MERGES);
    CHECK(strcmp(gk_tokenizer_pre(t), "grok-2") == 0);
    test_grok2_pattern(t);

    int32_t ids[64];
    int n = enc(t, "hello", false, ids, 64);
    CHECK(n == 1 && ids[0] == 262); /* whole word */
    n = enc(t, "hellox", false, ids, 64);
    CHECK(n == 2 && ids[0] == 262 && ids[1] == 3 + 'x'); /* he, ll, hell, hello, then x */
    n = enc(t, " world", false, ids, 64);
    /* " w"(263) merges first, then " wo"(264) before "or"(265), then
     * " wor"(266) and "ld"(267). */
    int32_t want_world[] = {266, 267};
    CHECK(ids_eq(ids, n, want_world, 2));

    /* Special tokens: recognised only when allowed. */
    const char *s = "hi<|separator|>\n\n";
    n = enc(t, s, true, ids, 64);
    int32_t want_sp[] = {3 + 'h', 3 + 'i', 1, 3 + '\n', 3 + '\n'};
    CHECK(ids_eq(ids, n, want_sp, 5));
    n = enc(t, s, false, ids, 64);
    CHECK(n > 5);
    for (int i = 0; i < n; i++) CHECK(ids[i] > 2);
    CHECK(gk_tokenizer_is_stop(t, 1) && gk_tokenizer_is_stop(t, 2) && !gk_tokenizer_is_stop(t, 0));
    CHECK(gk_tokenizer_eos(t) == 2 && gk_tokenizer_bos(t) == -1);
    CHECK(gk_tokenizer_has_chat(t));
    CHECK(gk_tokenizer_is_control(t, 1) && !gk_tokenizer_is_control(t, 262));

    /* The count is returned even when the buffer is too small. */
    CHECK(gk_tokenize(t, "abcdef", 6, false, ids, 2, &err) == 6);
    CHECK(gk_tokenize(t, "", 0, false, ids, 64, &err) == 0);

    /* Pieces: GPT-2 byte-to-unicode form for regular tokens, text for specials. */
    CHECK(strcmp(gk_token_piece(t, 263), "\xc4\xa0w") == 0); /* "Ġw" */
    CHECK(strcmp(gk_token_piece(t, 1), "<|separator|>") == 0);
    CHECK(gk_token_piece(t, 9999) == NULL);

    /* Any bytes round-trip through gk_token_to_bytes, malformed UTF-8 too. */
    const char raw[] = "a\xff\xfe" "b\xc3 \xe2\x82";
    n = gk_tokenize(t, raw, sizeof raw - 1, false, ids, 64, &err);
    char back[64];
    int m = 0;
    for (int i = 0; i < n; i++) m += gk_token_to_bytes(t, ids[i], i == 0, back + m, 64 - m);
    CHECK(m == (int)sizeof raw - 1 && memcmp(back, raw, (size_t)m) == 0);

    /* The streaming decoder holds a character split across tokens and shows
     * malformed bytes as U+FFFD. */
    gk_detok d;
    gk_detok_init(&d, t);
    char out[64];
    CHECK(gk_detok_push(&d, 3 + 0xC3, out, 64) == 0);       /* first byte of é */
    CHECK(gk_detok_push(&d, 3 + 0xA9, out, 64) == 2 && memcmp(out, "\xc3\xa9", 2) == 0);
    CHECK(gk_detok_push(&d, 3 + 0xE2, out, 64) == 0);
    CHECK(gk_detok_push(&d, 3 + 0x82, out, 64) == 0);
    CHECK(gk_detok_push(&d, 3 + 0xAC, out, 64) == 3 && memcmp(out, "\xe2\x82\xac", 3) == 0);
    CHECK(gk_detok_push(&d, 3 + 0xFF, out, 64) == 3 && memcmp(out, "\xef\xbf\xbd", 3) == 0);
    CHECK(gk_detok_push(&d, 3 + 0xF0, out, 64) == 0);
    CHECK(gk_detok_push(&d, 3 + 'x', out, 64) == 4 && memcmp(out, "\xef\xbf\xbdx", 4) == 0);
    CHECK(gk_detok_push(&d, 3 + 0xE2, out, 64) == 0);
    CHECK(gk_detok_push(&d, 1, out, 64) == 0);  /* control tokens are not shown */
    CHECK(gk_detok_push(&d, 262, out, 2) == -1); /* too small: nothing consumed */
    CHECK(gk_detok_push(&d, 262, out, 64) == 8 && memcmp(out, "\xef\xbf\xbdhello", 8) == 0);
    CHECK(gk_detok_push(&d, 3 + 0xE2, out, 64) == 0);
    CHECK(gk_detok_flush(&d, out, 64) == 3 && memcmp(out, "\xef\xbf\xbd", 3) == 0);
    CHECK(gk_detok_push(&d, -1, out, 64) == -1);

    /* The chat template of spec 7.2. */
    gk_chat_msg msgs[] = {{"system", "  Be brief.\n"},
                          {"user", "\xc2\xa0What is your name?  "},
                          {"assistant", " Grok. "},
                          {"user", "Thanks"}};
    char buf[512];
    int64_t len = gk_chat_apply(t, msgs, 4, true, buf, sizeof buf, &err);
    const char *want = "System: Be brief.<|separator|>\n\n"
                       "Human: What is your name?<|separator|>\n\n"
                       "Assistant:  Grok. <|separator|>\n\n"
                       "Human: Thanks<|separator|>\n\n"
                       "Assistant:";
    CHECK_MSG(len == (int64_t)strlen(want) && strcmp(buf, want) == 0, "chat: '%s'", buf);
    CHECK(gk_chat_apply(t, msgs, 1, false, buf, 4, &err) == 32 && strlen(buf) == 3);
    gk_chat_msg bad = {"robot", "x"};
    CHECK(gk_chat_apply(t, &bad, 1, true, buf, sizeof buf, &err) == -1);
    CHECK_ERR_HAS(err.msg, "unknown role 'robot'");
    /* H1's example prompt encodes with <|separator|> as one token. */
    gk_chat_msg q = {"user", "What is your name?"};
    gk_chat_apply(t, &q, 1, true, buf, sizeof buf, &err);
    CHECK(strcmp(buf, "Human: What is your name?<|separator|>\n\nAssistant:") == 0);
    n = enc(t, buf, true, ids, 64);
    int n_sep = 0;
    for (int i = 0; i < n; i++) n_sep += ids[i] == 1;
    CHECK(n_sep == 1);

    gk_tokenizer_free(t);
}

/* -------------------------------------------------------- malformed --- */

static void expect_error(const char *data, size_t n, const char *name, const char *sub) {
    gk_err err = {{0}};
    gk_tokenizer *t = gk_tokenizer_load_memory(data, n, name, &err);
    CHECK_MSG(t == NULL, "%s loaded", name);
    gk_tokenizer_free(t);
    CHECK_ERR_HAS(err.msg, sub);
}

static void test_malformed(void) {
    expect_error("", 0, "x", "empty");
    expect_error("{\"regular_tokens\": [", 20, "t.json", "bad JSON");
    expect_error("{\"word_split\": \"V1\"}", 20, "t.json", "no 'regular_tokens'");
    const char *dup = "{\"word_split\": \"V1\", \"regular_tokens\": [{\"token\": 0, \"bytes\": [97]},"
                      "{\"token\": 0, \"bytes\": [98]}]}";
    expect_error(dup, strlen(dup), "t.json", "token id 0 appears twice");
    const char *gap = "{\"word_split\": \"V1\", \"regular_tokens\": [{\"token\": 0, \"bytes\": [97]},"
                      "{\"token\": 2, \"bytes\": [98]}]}";
    expect_error(gap, strlen(gap), "t.json", "token id 1 is missing");
    const char *same = "{\"word_split\": \"V1\", \"regular_tokens\": [{\"token\": 0, \"bytes\": [97]},"
                       "{\"token\": 1, \"bytes\": [97]}]}";
    expect_error(same, strlen(same), "t.json", "are the same");
    const char *badb = "{\"word_split\": \"V1\", \"regular_tokens\": [{\"token\": 0, \"bytes\": [256]}]}";
    expect_error(badb, strlen(badb), "t.json", "not an integer in 0..255");
    const char *ws = "{\"word_split\": \"V2\", \"regular_tokens\": []}";
    expect_error(ws, strlen(ws), "t.json", "word_split");
    const char *few = "{\"word_split\": \"V1\", \"regular_tokens\": [{\"token\": 0, \"bytes\": [97]}]}";
    expect_error(few, strlen(few), "t.json", "has no regular token");
    const char *pat = "{\"pat_str\": \"(\", \"regular_tokens\": [{\"token\": 0, \"bytes\": [97]}]}";
    expect_error(pat, strlen(pat), "t.json", "does not compile");

    /* .tiktoken: 256 single bytes, then the cases. */
    sb b = {0};
    for (int i = 0; i < 256; i++) {
        static const char *B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        sb_add(&b, "%c%c== %d\n", B64[i >> 2], B64[(i & 3) << 4], i);
    }
    size_t base = b.n;
    gk_err err;
    gk_tokenizer *t = load_str(b.p, b.n, "mini_cl100k.tiktoken", &err);
    CHECK_MSG(t != NULL, "%s", err.msg);
    if (t) {
        int32_t ids[8];
        CHECK(gk_tokenize(t, "hi", 2, false, ids, 8, &err) == 2 && ids[0] == 'h' && ids[1] == 'i');
        gk_tokenizer_free(t);
    }
    expect_error(b.p, b.n, "mystery.tiktoken", "cannot tell the pre-tokenizer");
    sb_add(&b, "YWI= 255\n");
    expect_error(b.p, b.n, "x_cl100k.tiktoken", "rank 255 appears twice");
    b.n = base;
    sb_add(&b, "YWI= 300\n");
    expect_error(b.p, b.n, "x_cl100k.tiktoken", "rank 256 is missing");
    b.n = base;
    sb_add(&b, "Y*I= 256\n");
    expect_error(b.p, b.n, "x_cl100k.tiktoken", "line 257: bad base64");
    b.n = base;
    sb_add(&b, "YWI= 2x6\n");
    expect_error(b.p, b.n, "x_cl100k.tiktoken", "line 257: bad rank");
    b.n = base;
    sb_add(&b, "YW"); /* cut mid-line */
    expect_error(b.p, b.n, "x_cl100k.tiktoken", "line 257: expected '<base64> <rank>'");
    free(b.p);

    /* SentencePiece protobuf. */
    const uint8_t trunc[] = {0x0A, 0x10, 0x0A, 0x05, '<', 'u', 'n', 'k', '>'};
    expect_error((const char *)trunc, sizeof trunc, "m.model", "claims 16 bytes");
    const uint8_t wire[] = {0x0A, 0x03, 0x0B, 0x01, 0x02};
    expect_error((const char *)wire, sizeof wire, "m.model", "wire type");
    const uint8_t unigram[] = {0x0A, 0x09, 0x0A, 0x05, '<', 'u', 'n', 'k', '>', 0x18, 0x02,
                               0x12, 0x02, 0x18, 0x01};
    expect_error((const char *)unigram, sizeof unigram, "m.model", "unigram");
    const uint8_t nounk[] = {0x0A, 0x03, 0x0A, 0x01, 'a', 0x12, 0x02, 0x18, 0x02};
    expect_error((const char *)nounk, sizeof nounk, "m.model", "no unknown piece");
    const uint8_t longv[] = {0x0A, 0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    expect_error((const char *)longv, sizeof longv, "m.model", "varint");
    expect_error("\x0a\x02hi", 4, "m.model", "SentencePiece");
    expect_error("hello there", 11, "x", "unrecognised tokenizer format");
}

/* ------------------------------------------------------ GGUF round trip --- */

static gk_tokenizer *via_gguf(const gk_tokenizer *t, const char *name) {
    gk_err err;
    gk_gguf_writer *w = gk_gguf_writer_new(&err);
    CHECK(w != NULL);
    if (!w) return NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/%s.gguf", gk_test_tmp_dir(), name);
    int rc = gk_tokenizer_to_gguf(t, w, &err);
    CHECK_MSG(rc == 0, "%s: to_gguf: %s", name, err.msg);
    if (rc == 0) {
        gk_gguf_set_str(w, "general.architecture", "grok");
        rc = gk_gguf_write(w, path, &err);
        CHECK_MSG(rc == 0, "%s: write: %s", name, err.msg);
    }
    gk_gguf_writer_free(w);
    if (rc) return NULL;
    gk_tokenizer *u = gk_tokenizer_load(path, &err);
    CHECK_MSG(u != NULL, "%s: reload: %s", name, err.msg);
    remove(path);
    return u;
}

static void same_ids(const gk_tokenizer *a, const gk_tokenizer *b, const char *text, bool special) {
    static int32_t x[8192], y[8192];
    gk_err err;
    int nx = gk_tokenize(a, text, strlen(text), special, x, 8192, &err);
    int ny = gk_tokenize(b, text, strlen(text), special, y, 8192, &err);
    CHECK_MSG(ids_eq(x, nx, y, ny), "round trip changes the ids of '%.40s'", text);
}

static const char *SAMPLES[] = {
    "Hello, world! It's 2024-05-01 and we're testing   spaces\tand\n\n\nnewlines.",
    "Съешь же ещё этих мягких французских булок. 我想在apple工作1314151天～ 🚀😶‍🌫️",
    "<|separator|> [BOS] <s> <|eos|> \xff\xfe broken \xc3 bytes",
    "int main(void) {\n\treturn 0;\n}\n    x = [1, 2, 3]  # comment",
    "",
};

static void check_round_trip(const gk_tokenizer *t, const char *name) {
    gk_tokenizer *u = via_gguf(t, name);
    if (!u) return;
    CHECK(gk_tokenizer_n_vocab(u) == gk_tokenizer_n_vocab(t));
    CHECK(gk_tokenizer_get_kind(u) == gk_tokenizer_get_kind(t));
    CHECK(gk_tokenizer_bos(u) == gk_tokenizer_bos(t) && gk_tokenizer_eos(u) == gk_tokenizer_eos(t));
    CHECK(gk_tokenizer_has_chat(u) == gk_tokenizer_has_chat(t));
    for (int32_t id = 0; id < gk_tokenizer_n_vocab(t); id++) {
        if (strcmp(gk_token_piece(t, id), gk_token_piece(u, id)) != 0 ||
            gk_tokenizer_is_stop(t, id) != gk_tokenizer_is_stop(u, id)) {
            CHECK_MSG(false, "%s: token %d differs after the round trip", name, id);
            break;
        }
    }
    for (size_t i = 0; i < sizeof SAMPLES / sizeof SAMPLES[0]; i++) {
        same_ids(t, u, SAMPLES[i], false);
        same_ids(t, u, SAMPLES[i], true);
    }
    gk_tokenizer_free(u);
}

static void test_round_trip_tiny(void) {
    char *js = tiny_tokjson();
    gk_err err;
    gk_tokenizer *t = load_str(js, strlen(js), "tokenizer.tok.json", &err);
    free(js);
    if (!t) return;
    check_round_trip(t, "tiny");
    gk_tokenizer_free(t);
}

/* ------------------------------------------------------------ Grok-1 --- */

static void test_grok1(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/grok1/tokenizer.model", dir);
    gk_err err;
    gk_tokenizer *t = gk_tokenizer_load(path, &err);
    CHECK_MSG(t != NULL, "%s", err.msg);
    if (!t) return;
    CHECK(gk_tokenizer_get_kind(t) == GK_TOKENIZER_SPM && gk_tokenizer_n_vocab(t) == 131072);
    CHECK(gk_tokenizer_bos(t) == 1 && gk_tokenizer_eos(t) == 2);
    CHECK(gk_tokenizer_is_stop(t, 2) && !gk_tokenizer_is_stop(t, 47) && !gk_tokenizer_has_chat(t));
    int32_t ids[64];
    /* spec 7.1 and the testdata README */
    int n = enc(t, "hello world", false, ids, 64);
    int32_t hw[] = {21560, 1135};
    CHECK(ids_eq(ids, n, hw, 2));
    /* User-defined symbols match on the raw text: newline runs (4-13), digits
     * (14-23), tabs (24-31), <|separator|> (47); they are frozen, so the dummy
     * prefix stays a lone U+2581 (130089) before them. */
    n = enc(t, "a\n\nb", false, ids, 64);
    int32_t nl[] = {327, 5, 130110}; /* ▁a \n\n b */
    CHECK(ids_eq(ids, n, nl, 3));
    n = enc(t, "2024", false, ids, 64);
    int32_t dg[] = {130089, 16, 14, 16, 18};
    CHECK(ids_eq(ids, n, dg, 5));
    n = enc(t, "<|separator|>", false, ids, 64);
    int32_t sp[] = {130089, 47};
    CHECK(ids_eq(ids, n, sp, 2));
    n = enc(t, " \t\t x", false, ids, 64);
    int32_t tb[] = {325, 25, 1734}; /* ▁▁ \t\t ▁x */
    CHECK(ids_eq(ids, n, tb, 3));
    /* The ASCII-space symbols (32-46) never match: spaces are U+2581 by then. */
    n = enc(t, "a    b", false, ids, 64);
    int32_t spc[] = {327, 336, 130110}; /* ▁a ▁▁▁▁ b */
    CHECK(ids_eq(ids, n, spc, 3));
    /* Control pieces are text unless allowed. */
    n = enc(t, "[BOS]x", true, ids, 64);
    CHECK(n >= 2 && ids[0] == 1);
    n = enc(t, "[BOS]x", false, ids, 64);
    CHECK(n >= 2 && ids[0] != 1);
    /* Malformed UTF-8: each bad byte becomes U+FFFD, as SentencePiece does
     * (spm_encode gives the same ids; see tok_spm_parity). */
    int32_t a[16], b2[16];
    int na = gk_tokenize(t, "x\xffy", 3, false, a, 16, &err);
    int nb = enc(t, "x\xef\xbf\xbdy", false, b2, 16);
    CHECK(ids_eq(a, na, b2, nb));
    /* Decoding: the first piece drops the dummy-prefix space. */
    char buf[64];
    CHECK(gk_token_to_bytes(t, 21560, true, buf, 64) == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK(gk_token_to_bytes(t, 21560, false, buf, 64) == 6 && memcmp(buf, " hello", 6) == 0);
    CHECK(gk_token_to_bytes(t, 69 + 0xE2, false, buf, 64) == 1 && (uint8_t)buf[0] == 0xE2);
    CHECK(gk_token_to_bytes(t, 1, false, buf, 64) == 0);
    CHECK(gk_token_to_bytes(t, 3, false, buf, 64) == 5 && memcmp(buf, "[UNK]", 5) == 0);
    CHECK(strcmp(gk_token_piece(t, 21560), "\xe2\x96\x81hello") == 0);
    check_round_trip(t, "grok1");
    gk_tokenizer_free(t);

    /* Truncated files fail with a message, wherever they are cut. */
    const char *files[] = {"grok1/tokenizer.model", "llamacpp-vocab/ggml-vocab-gpt-2.gguf",
                           "llamacpp-vocab/ggml-vocab-llama-spm.gguf"};
    for (int f = 0; f < 3; f++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[f]);
        FILE *fp = fopen(path, "rb");
        if (!fp) continue;
        fseek(fp, 0, SEEK_END);
        long size = ftell(fp);
        fseek(fp, 0, SEEK_SET);
        char *data = malloc((size_t)size);
        CHECK(data && fread(data, 1, (size_t)size, fp) == (size_t)size);
        fclose(fp);
        long cuts[] = {1, 2, 5, 17, 100, 1000, 4097, 100000, size / 2, size - 1};
        for (int i = 0; i < 10; i++) {
            gk_err e2 = {{0}};
            gk_tokenizer *u = gk_tokenizer_load_memory(data, (size_t)cuts[i], files[f], &e2);
            CHECK_MSG(!u && e2.msg[0], "%s cut at %ld bytes: %s", files[f], cuts[i],
                      u ? "loaded" : "no message");
            gk_tokenizer_free(u);
        }
        free(data);
    }

    snprintf(path, sizeof path, "%s/llamacpp-vocab/ggml-vocab-gpt-2.gguf", dir);
    t = gk_tokenizer_load(path, &err);
    CHECK_MSG(t != NULL, "%s", err.msg);
    if (t) {
        check_round_trip(t, "gpt2");
        gk_tokenizer_free(t);
    }
    snprintf(path, sizeof path, "%s/llamacpp-vocab/ggml-vocab-llama-spm.gguf", dir);
    t = gk_tokenizer_load(path, &err);
    if (t) {
        check_round_trip(t, "llama-spm");
        gk_tokenizer_free(t);
    }
}

/* The tiktoken files of the npm peer, when the setup script installed it. */
static void test_tiktoken_round_trip(void) {
    const char *src = getenv("GK_SOURCE_DIR");
    if (!src) return;
    const char *names[] = {"cl100k_base", "o200k_base"};
    for (int i = 0; i < 2; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/tests/tokenizer/node_modules/gpt-tokenizer/data/%s.tiktoken",
                 src, names[i]);
        FILE *f = fopen(path, "rb");
        if (!f) {
            printf("skip: %s (run scripts/setup-deps.sh)\n", path);
            continue;
        }
        fclose(f);
        gk_err err;
        gk_tokenizer *t = gk_tokenizer_load(path, &err);
        CHECK_MSG(t != NULL, "%s", err.msg);
        if (!t) continue;
        int32_t ids[8];
        int n = gk_tokenize(t, "<|endoftext|>", 13, true, ids, 8, &err);
        CHECK(n == 1 && ids[0] == (i == 0 ? 100257 : 199999));
        CHECK(gk_tokenizer_is_stop(t, ids[0]));
        check_round_trip(t, names[i]);
        gk_tokenizer_free(t);
    }
}

int main(void) {
    test_tokjson();
    test_malformed();
    test_round_trip_tiny();
    test_tiktoken_round_trip();
    const char *dir = gk_test_data_dir();
    if (dir) test_grok1(dir);
    return gk_test_done();
}
