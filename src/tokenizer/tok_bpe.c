/*
 * tok_bpe.c - rank-based byte-level BPE (Grok-2's tokenizer.tok.json, tiktoken
 * .tiktoken files, GGUF "gpt2" vocabularies).
 *
 * Text is cut into pieces by the pre-tokenizer regex (PCRE2 with Unicode
 * properties, JIT-compiled), then each piece is merged byte pair by byte pair:
 *
 *   ranks  (tiktoken, tok.json): two adjacent parts merge if their bytes are a
 *          token; the lowest rank (= id) merges first, the leftmost on ties. A
 *          piece that is itself a token is emitted whole, as tiktoken does.
 *   merges (GGUF, llama.cpp): two adjacent parts merge if the pair is listed in
 *          tokenizer.ggml.merges; the lowest line merges first, leftmost on ties.
 *
 * Short pieces use tiktoken's array scan; long ones (where the scan would be
 * quadratic) a heap, with the same result.
 *
 * Invalid UTF-8: the regex runs with PCRE2_MATCH_INVALID_UTF, which never
 * matches an invalid sequence; the bytes between matches form their own pieces
 * and are merged like any bytes, so every byte string encodes and decodes back
 * to itself.
 */
#include "tokenizer/tok_internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- patterns --- */

/* GPT-2 (r50k_base, p50k_base). */
static const char PAT_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/* cl100k_base, as tiktoken writes it today (Llama 3 uses the same splits). */
static const char PAT_CL100K[] =
    "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+"
    "|\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s";
/* o200k_base. */
static const char PAT_O200K[] =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/* Grok-2 (tokenizer.tok.json word_split "V1", spec 7.2): cl100k with single
 * digits. Qwen2 uses the same. */
static const char PAT_GROK2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const struct {
    const char *name, *canon, *pattern;
} PRE[] = {
    {"grok-2", "grok-2", PAT_GROK2},    {"qwen2", "grok-2", PAT_GROK2},
    {"gpt-2", "gpt-2", PAT_GPT2},       {"gpt2", "gpt-2", PAT_GPT2},
    {"r50k_base", "gpt-2", PAT_GPT2},
    {"cl100k", "llama-bpe", PAT_CL100K}, {"cl100k_base", "llama-bpe", PAT_CL100K},
    {"llama-bpe", "llama-bpe", PAT_CL100K}, {"llama3", "llama-bpe", PAT_CL100K},
    {"dbrx", "llama-bpe", PAT_CL100K},  {"smaug-bpe", "llama-bpe", PAT_CL100K},
    {"o200k", "gpt-4o", PAT_O200K},     {"o200k_base", "gpt-4o", PAT_O200K},
    {"gpt-4o", "gpt-4o", PAT_O200K},
};

const char *gk_tok_bpe_pattern(const char *name) {
    for (size_t i = 0; i < sizeof PRE / sizeof PRE[0]; i++)
        if (strcmp(PRE[i].name, name) == 0) return PRE[i].pattern;
    return NULL;
}

int gk_tok_bpe_set_pre(gk_tokenizer *t, const char *name, const char *pattern, gk_err *err) {
    const char *canon = "custom";
    if (name) {
        pattern = NULL;
        for (size_t i = 0; i < sizeof PRE / sizeof PRE[0]; i++)
            if (strcmp(PRE[i].name, name) == 0) {
                pattern = PRE[i].pattern;
                canon = PRE[i].canon;
            }
        if (!pattern)
            return gk_fail(err,
                           "pre-tokenizer '%s' is not supported (known: grok-2, gpt-2, llama-bpe, "
                           "gpt-4o, qwen2)",
                           name);
    }
    snprintf(t->pre, sizeof t->pre, "%s", canon);
    free(t->pattern);
    t->pattern = strdup(pattern);
    if (!t->pattern) return gk_fail(err, "out of memory");
    if (t->re) pcre2_code_free(t->re);
    int ec;
    PCRE2_SIZE eo;
    t->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY,
                          &ec, &eo, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return gk_fail(err, "pre-tokenizer regex does not compile at offset %zu: %s", (size_t)eo,
                       (const char *)msg);
    }
    /* Without JIT (a build of PCRE2 lacking it) the interpreter gives the same
     * matches, only slower. */
    t->re_jit = pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}

/* ----------------------------------------------------------------- merge --- */

static inline void pair_rank(const gk_tokenizer *t, const char *s, uint32_t a, uint32_t e,
                             int32_t ia, int32_t ib, int32_t *rank, int32_t *merged);

int gk_tok_bpe_byte_pairs(gk_tokenizer *t, gk_err *err) {
    int32_t *r = gk_malloc(65536 * sizeof *r, err), *m = gk_malloc(65536 * sizeof *m, err);
    if (!r || !m) {
        free(r);
        free(m);
        return -1;
    }
    free(t->bp_rank);
    free(t->bp_id);
    t->bp_rank = NULL; /* pair_rank must not use the table while it is filled */
    t->bp_id = NULL;
    for (unsigned k = 0; k < 65536; k++) {
        char s[2] = {(char)(k >> 8), (char)(k & 255)};
        m[k] = -1;
        pair_rank(t, s, 0, 2, t->byte_id[k >> 8], t->byte_id[k & 255], &r[k], &m[k]);
    }
    t->bp_rank = r;
    t->bp_id = m;
    return 0;
}

#define LINEAR_MAX 128 /* pieces up to this many bytes use the array scan */

typedef struct part {
    uint32_t start;
    int32_t id;
    int32_t rank;   /* of merging this part with the next */
    int32_t merged; /* the token that merge makes */
} part;

/* Rank and result of merging the part starting at a (id ia) with the one
 * starting at b (id ib) and ending at e. */
static inline void pair_rank(const gk_tokenizer *t, const char *s, uint32_t a, uint32_t e,
                             int32_t ia, int32_t ib, int32_t *rank, int32_t *merged) {
    if (e - a == 2 && t->bp_rank) {
        unsigned k = ((unsigned)(uint8_t)s[a] << 8) | (uint8_t)s[a + 1];
        *rank = t->bp_rank[k];
        *merged = t->bp_id[k];
        return;
    }
    *rank = GK_TOK_NO_RANK;
    if (t->mode == GK_BPE_MERGES) {
        if (ia >= 0 && ib >= 0 && gk_tok_pairs_find(&t->pairs, ia, ib, rank, merged)) return;
        *rank = GK_TOK_NO_RANK;
        return;
    }
    int32_t id = gk_tok_find(t, s + a, e - a);
    if (id >= 0 && t->tok[id].type == GK_TOK_NORMAL) {
        *rank = t->tok[id].rank;
        *merged = id;
    }
}

static int emit_id(const gk_tokenizer *t, int32_t id, uint8_t byte, gk_tok_vec *out, gk_err *err) {
    if (id < 0) {
        if (t->unk < 0)
            return gk_fail(err, "byte 0x%02X has no token in this vocabulary", byte);
        id = t->unk;
    }
    return gk_tok_vec_push(out, id, err);
}

static int merge_linear(const gk_tokenizer *t, const char *s, uint32_t n, gk_tok_vec *out,
                        gk_err *err) {
    part p[LINEAR_MAX + 1];
    uint32_t m = n;
    for (uint32_t i = 0; i < n; i++) p[i] = (part){i, t->byte_id[(uint8_t)s[i]], 0, -1};
    p[n].start = n;
    for (uint32_t i = 0; i + 1 < m; i++)
        pair_rank(t, s, p[i].start, p[i + 2].start, p[i].id, p[i + 1].id, &p[i].rank, &p[i].merged);
    p[m - 1].rank = GK_TOK_NO_RANK;
    for (;;) {
        int32_t best = GK_TOK_NO_RANK;
        uint32_t bi = 0;
        for (uint32_t i = 0; i + 1 < m; i++)
            if (p[i].rank < best) best = p[i].rank, bi = i;
        if (best == GK_TOK_NO_RANK) break;
        p[bi].id = p[bi].merged;
        memmove(&p[bi + 1], &p[bi + 2], (m - bi - 1) * sizeof *p); /* keeps the sentinel */
        m--;
        if (bi + 1 < m)
            pair_rank(t, s, p[bi].start, p[bi + 2].start, p[bi].id, p[bi + 1].id, &p[bi].rank,
                      &p[bi].merged);
        else
            p[bi].rank = GK_TOK_NO_RANK;
        if (bi > 0)
            pair_rank(t, s, p[bi - 1].start, p[bi + 1].start, p[bi - 1].id, p[bi].id,
                      &p[bi - 1].rank, &p[bi - 1].merged);
    }
    for (uint32_t i = 0; i < m; i++)
        if (emit_id(t, p[i].id, (uint8_t)s[p[i].start], out, err) < 0) return -1;
    return 0;
}

/* The heap variant for long pieces. */
typedef struct hent {
    int32_t rank, left, right, merged;
    uint32_t vl, vr;
} hent;

static inline bool hent_before(const hent *a, const hent *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

typedef struct bheap {
    hent *a;
    size_t n;
} bheap;

static void bh_push(bheap *h, hent e) {
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hent_before(&e, &h->a[p])) break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = e;
}

static hent bh_pop(bheap *h) {
    hent top = h->a[0], last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const hent *best = &last;
        if (l < h->n && hent_before(&h->a[l], best)) m = l, best = &h->a[l];
        if (r < h->n && hent_before(&h->a[r], best)) m = r;
        if (m == i) break;
        h->a[i] = h->a[m];
        i = m;
    }
    if (h->n) h->a[i] = last;
    return top;
}

static int merge_heap(const gk_tokenizer *t, const char *s, uint32_t n, gk_tok_vec *out,
                      gk_err *err) {
    /* Every merge pushes at most two entries, so 3n bounds the heap. */
    int32_t *id = malloc(n * sizeof *id), *next = malloc(n * sizeof *next);
    int32_t *prev = malloc(n * sizeof *prev);
    uint32_t *start = malloc(n * sizeof *start), *ver = calloc(n, sizeof *ver);
    bheap h = {malloc(3 * (size_t)n * sizeof(hent)), 0};
    int rc = -1;
    if (!id || !next || !prev || !start || !ver || !h.a) {
        gk_fail(err, "out of memory (merging a %u-byte piece)", n);
        goto done;
    }
    for (uint32_t i = 0; i < n; i++) {
        id[i] = t->byte_id[(uint8_t)s[i]];
        start[i] = i;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        prev[i] = (int32_t)i - 1;
    }
#define END(i) (next[i] >= 0 ? (next[next[i]] >= 0 ? start[next[next[i]]] : n) : n)
#define PUSH(l)                                                                                    \
    do {                                                                                           \
        int32_t l_ = (l), r_ = next[l_];                                                           \
        if (r_ >= 0) {                                                                             \
            hent e_ = {0, l_, r_, -1, ver[l_], ver[r_]};                                           \
            pair_rank(t, s, start[l_], END(l_), id[l_], id[r_], &e_.rank, &e_.merged);            \
            if (e_.rank != GK_TOK_NO_RANK) bh_push(&h, e_);                                        \
        }                                                                                          \
    } while (0)
    for (uint32_t i = 0; i + 1 < n; i++) PUSH((int32_t)i);
    while (h.n) {
        hent e = bh_pop(&h);
        if (ver[e.left] != e.vl || ver[e.right] != e.vr) continue;
        id[e.left] = e.merged;
        next[e.left] = next[e.right];
        if (next[e.right] >= 0) prev[next[e.right]] = e.left;
        ver[e.left]++;
        ver[e.right]++; /* dead */
        if (prev[e.left] >= 0) PUSH(prev[e.left]);
        PUSH(e.left);
    }
#undef PUSH
#undef END
    for (int32_t i = 0; i >= 0; i = next[i])
        if (emit_id(t, id[i], (uint8_t)s[start[i]], out, err) < 0) goto done;
    rc = 0;
done:
    free(id), free(next), free(prev), free(start), free(ver), free(h.a);
    return rc;
}

/* Pieces repeat (words, indentation, numbers), so a long text keeps the ids of
 * the pieces it had to merge in a direct-mapped cache. The ids live in the
 * output vector and the key bytes in the text, so an entry is four numbers. */
typedef struct pc_ent {
    uint32_t hhi, len, n_ids;
    size_t text_off, out_pos;
} pc_ent;

typedef struct pcache {
    pc_ent *e;
    uint32_t mask;
    const char *text;
} pcache;

static int encode_piece(const gk_tokenizer *t, const char *s, size_t n, pcache *pc,
                        gk_tok_vec *out, gk_err *err) {
    if (n == 1) return emit_id(t, t->byte_id[(uint8_t)s[0]], (uint8_t)s[0], out, err);
    uint64_t h = 0;
    if (t->whole_word) {
        int32_t id = gk_tok_find(t, s, n);
        if (id >= 0 && t->tok[id].type == GK_TOK_NORMAL) return gk_tok_vec_push(out, id, err);
    }
    pc_ent *ce = NULL;
    if (pc->e) {
        h = gk_tok_hash(s, n);
        ce = &pc->e[(uint32_t)h & pc->mask];
        if (ce->len == n && ce->hhi == (uint32_t)(h >> 32) &&
            memcmp(pc->text + ce->text_off, s, n) == 0) {
            for (uint32_t i = 0; i < ce->n_ids; i++)
                if (gk_tok_vec_push(out, out->v[ce->out_pos + i], err) < 0) return -1;
            return 0;
        }
    }
    if (n > UINT32_MAX / 4) return gk_fail(err, "a pre-tokenizer piece of %zu bytes is too long", n);
    size_t before = out->n;
    int rc = n <= LINEAR_MAX ? merge_linear(t, s, (uint32_t)n, out, err)
                             : merge_heap(t, s, (uint32_t)n, out, err);
    if (rc == 0 && ce && n <= LINEAR_MAX)
        *ce = (pc_ent){(uint32_t)(h >> 32), (uint32_t)n, (uint32_t)(out->n - before),
                       (size_t)(s - pc->text), before};
    return rc;
}

/* ----------------------------------------------------------------- encode --- */

typedef int (*piece_fn)(void *ctx, const char *s, size_t n, gk_err *err);

/* Cuts text into pre-tokenizer pieces and calls fn on each, in order. */
static int bpe_scan(const gk_tokenizer *t, const char *text, size_t len, piece_fn fn, void *ctx,
                    gk_err *err) {
    if (!len) return 0;
    if (!t->re) return gk_fail(err, "the tokenizer has no pre-tokenizer");
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    pcre2_match_context *mc = NULL;
    pcre2_jit_stack *js = NULL;
    if (!md) return gk_fail(err, "out of memory (regex match data)");
    int rc = -1;
    size_t off = 0;
    while (off < len) {
        int r = t->re_jit ? pcre2_jit_match(t->re, (PCRE2_SPTR)text, len, off, 0, md, mc)
                          : pcre2_match(t->re, (PCRE2_SPTR)text, len, off, 0, md, mc);
        if (r == PCRE2_ERROR_JIT_STACKLIMIT && !js) {
            /* A long run made the JIT's default 32 KiB stack too small. */
            mc = pcre2_match_context_create(NULL);
            js = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL);
            if (!mc || !js) {
                gk_fail(err, "out of memory (regex stack)");
                goto done;
            }
            pcre2_jit_stack_assign(mc, NULL, js);
            continue;
        }
        if (r == PCRE2_ERROR_NOMATCH) {
            if (fn(ctx, text + off, len - off, err) < 0) goto done;
            break;
        }
        if (r < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(r, msg, sizeof msg);
            gk_fail(err, "pre-tokenizer regex failed at byte %zu: %s", off, (const char *)msg);
            goto done;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t s = ov[0], e = ov[1];
        /* Bytes the regex skipped (only malformed UTF-8 can be) form a piece. */
        if (s > off && fn(ctx, text + off, s - off, err) < 0) goto done;
        if (e <= s) { /* an empty match: step over one character */
            int l = gk_utf8_valid_len((const unsigned char *)text + s, len - s);
            e = s + (l ? (size_t)l : 1);
        }
        if (fn(ctx, text + s, e - s, err) < 0) goto done;
        off = e;
    }
    rc = 0;
done:
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    pcre2_jit_stack_free(js);
    return rc;
}

typedef struct enc_ctx {
    const gk_tokenizer *t;
    pcache pc;
    gk_tok_vec *out;
} enc_ctx;

static int enc_piece(void *ctx, const char *s, size_t n, gk_err *err) {
    enc_ctx *c = ctx;
    return encode_piece(c->t, s, n, &c->pc, c->out, err);
}

int gk_tok_bpe_encode(const gk_tokenizer *t, const char *text, size_t len, gk_tok_vec *out,
                      gk_err *err) {
    enc_ctx c = {t, {NULL, 0, text}, out};
    if (len >= 1024) {
        uint32_t cap = 256;
        while (cap < len / 16 && cap < (1u << 16)) cap <<= 1;
        c.pc.e = calloc(cap, sizeof *c.pc.e); /* without it, encoding is only slower */
        c.pc.mask = cap - 1;
    }
    int rc = bpe_scan(t, text, len, enc_piece, &c, err);
    free(c.pc.e);
    return rc;
}

typedef struct split_ctx {
    const char *text;
    size_t *ends;
    int n, cap;
} split_ctx;

static int split_piece(void *ctx, const char *s, size_t n, gk_err *err) {
    split_ctx *c = ctx;
    if (c->n < c->cap) c->ends[c->n] = (size_t)(s - c->text) + n;
    c->n++;
    return c->n == INT32_MAX ? gk_fail(err, "too many pieces") : 0;
}

int gk_tok_bpe_pieces(const gk_tokenizer *t, const char *text, size_t len, size_t *ends, int cap,
                      gk_err *err) {
    split_ctx c = {text, ends, 0, cap};
    if (bpe_scan(t, text, len, split_piece, &c, err) < 0) return -1;
    return c.n;
}

/* ---------------------------------------------------------- tok.json --- */

typedef struct tj_tok {
    int32_t id;
    uint8_t *bytes;
    uint32_t len;
    bool special;
} tj_tok;

static int tj_read_list(const cJSON *arr, const char *what, bool special, tj_tok **toks, size_t *n,
                        size_t *cap, gk_err *err) {
    if (!cJSON_IsArray(arr)) return gk_fail(err, "'%s' is not a list", what);
    int idx = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        const cJSON *tok = cJSON_GetObjectItemCaseSensitive(e, "token");
        const cJSON *by = cJSON_GetObjectItemCaseSensitive(e, "bytes");
        if (!cJSON_IsObject(e) || !cJSON_IsNumber(tok) || !cJSON_IsArray(by))
            return gk_fail(err, "%s[%d]: expected {\"token\": id, \"bytes\": [...]}", what, idx);
        double d = tok->valuedouble;
        if (!(d >= 0 && d < 16777216.0) || d != (double)(int32_t)d)
            return gk_fail(err, "%s[%d]: token id %g is not a valid id", what, idx, d);
        int nb = cJSON_GetArraySize(by);
        if (nb <= 0 || nb > GK_TOK_MAX_LEN)
            return gk_fail(err, "%s[%d] (id %d): %d bytes", what, idx, (int32_t)d, nb);
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 1024;
            tj_tok *nt = realloc(*toks, nc * sizeof *nt);
            if (!nt) return gk_fail(err, "out of memory");
            *toks = nt;
            *cap = nc;
        }
        tj_tok *t = &(*toks)[*n];
        t->id = (int32_t)d;
        t->len = (uint32_t)nb;
        t->special = special;
        t->bytes = malloc((size_t)nb);
        if (!t->bytes) return gk_fail(err, "out of memory");
        (*n)++;
        int k = 0;
        const cJSON *b;
        cJSON_ArrayForEach(b, by) {
            if (!cJSON_IsNumber(b) || b->valuedouble < 0 || b->valuedouble > 255 ||
                b->valuedouble != (double)(int)b->valuedouble)
                return gk_fail(err, "%s[%d] (id %d): byte %d is not an integer in 0..255", what,
                               idx, t->id, k);
            t->bytes[k++] = (uint8_t)b->valueint;
        }
        idx++;
    }
    return 0;
}

static int cmp_tj(const void *a, const void *b) {
    const tj_tok *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

gk_tokenizer *gk_tok_bpe_load_tokjson(const char *data, size_t n, gk_err *err) {
    gk_tokenizer *t = NULL;
    tj_tok *toks = NULL;
    size_t nt = 0, cap = 0;
    cJSON *root = cJSON_ParseWithLength(data, n);
    if (!root) {
        const char *where = cJSON_GetErrorPtr();
        size_t at = where && where >= data && where <= data + n ? (size_t)(where - data) : 0;
        gk_fail(err, "bad JSON near byte %zu", at);
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        gk_fail(err, "the top level is not an object");
        goto fail;
    }
    const cJSON *reg = cJSON_GetObjectItemCaseSensitive(root, "regular_tokens");
    const cJSON *spe = cJSON_GetObjectItemCaseSensitive(root, "special_tokens");
    const cJSON *ws = cJSON_GetObjectItemCaseSensitive(root, "word_split");
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(root, "pat_str");
    const cJSON *vs = cJSON_GetObjectItemCaseSensitive(root, "vocab_size");
    if (!reg) {
        gk_fail(err, "no 'regular_tokens' (not a tokenizer.tok.json; Hugging Face "
                     "tokenizer.json files are not supported)");
        goto fail;
    }
    if (pat && !cJSON_IsString(pat)) {
        gk_fail(err, "'pat_str' is not a string");
        goto fail;
    }
    if (!pat && !(cJSON_IsString(ws) && strcmp(ws->valuestring, "V1") == 0)) {
        gk_fail(err, "'word_split' must be \"V1\" (or 'pat_str' given)");
        goto fail;
    }
    if (tj_read_list(reg, "regular_tokens", false, &toks, &nt, &cap, err) < 0) goto fail;
    if (spe && tj_read_list(spe, "special_tokens", true, &toks, &nt, &cap, err) < 0) goto fail;
    if (nt == 0) {
        gk_fail(err, "no tokens");
        goto fail;
    }
    qsort(toks, nt, sizeof *toks, cmp_tj);
    int32_t n_vocab = toks[nt - 1].id + 1;
    if (vs) {
        if (!cJSON_IsNumber(vs) || vs->valuedouble != (double)n_vocab) {
            gk_fail(err, "'vocab_size' is %g but the largest id is %d", vs->valuedouble,
                    n_vocab - 1);
            goto fail;
        }
    }
    t = gk_tok_new(GK_TOKENIZER_BPE, err);
    if (!t) goto fail;
    for (size_t i = 0; i < nt; i++) {
        if (i > 0 && toks[i].id == toks[i - 1].id) {
            gk_fail(err, "token id %d appears twice", toks[i].id);
            goto fail;
        }
        if (toks[i].id != (int32_t)i) {
            gk_fail(err, "token id %zu is missing (ids must run from 0 to %d)", i, n_vocab - 1);
            goto fail;
        }
        bool sp = toks[i].special;
        if (gk_tok_push(t, toks[i].bytes, toks[i].len, NULL, sp ? GK_TOK_CONTROL : GK_TOK_NORMAL,
                        0, sp ? GK_TOK_NO_RANK : toks[i].id, err) < 0)
            goto fail;
    }
    t->mode = GK_BPE_RANKS;
    t->whole_word = true;
    if (gk_tok_bpe_set_pre(t, pat ? NULL : "grok-2", pat ? pat->valuestring : NULL, err) < 0)
        goto fail;
    if (gk_tok_finish(t, false, err) < 0 || gk_tok_bpe_byte_pairs(t, err) < 0) goto fail;
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] < 0) {
            gk_fail(err, "byte 0x%02X has no regular token", b);
            goto fail;
        }
    for (size_t i = 0; i < nt; i++) free(toks[i].bytes);
    free(toks);
    cJSON_Delete(root);
    return t;
fail:
    for (size_t i = 0; i < nt; i++) free(toks[i].bytes);
    free(toks);
    cJSON_Delete(root);
    gk_tokenizer_free(t);
    gk_err_prefix(err, "tokenizer.tok.json");
    return NULL;
}

/* ------------------------------------------------------------ .tiktoken --- */

static int b64_val(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decodes standard base64 (padding required when the length is not a multiple
 * of 4 characters); returns the byte count or -1. */
static long b64_decode(const char *s, size_t n, uint8_t *out) {
    if (n % 4) return -1;
    long m = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)s[i + k];
            if (c == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad) return -1;
            v[k] = b64_val(c);
            if (v[k] < 0) return -1;
        }
        uint32_t x = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) | ((uint32_t)v[2] << 6) | v[3];
        out[m++] = (uint8_t)(x >> 16);
        if (pad < 2) out[m++] = (uint8_t)(x >> 8);
        if (pad < 1) out[m++] = (uint8_t)x;
    }
    return m;
}

/* Special tokens of the published encodings (tiktoken's openai_public.py);
 * they are added only to a file with exactly that encoding's number of ranks. */
static const struct {
    const char *enc;
    size_t n_ranks;
} TT_RANKS[] = {{"gpt-2", 50256}, {"llama-bpe", 100256}, {"gpt-4o", 199998}};

static const struct {
    const char *enc, *text;
    int32_t id;
} TT_SPECIAL[] = {
    {"gpt-2", "<|endoftext|>", 50256},       {"llama-bpe", "<|endoftext|>", 100257},
    {"llama-bpe", "<|fim_prefix|>", 100258}, {"llama-bpe", "<|fim_middle|>", 100259},
    {"llama-bpe", "<|fim_suffix|>", 100260}, {"llama-bpe", "<|endofprompt|>", 100276},
    {"gpt-4o", "<|endoftext|>", 199999},     {"gpt-4o", "<|endofprompt|>", 200018},
};

typedef struct tt_line {
    uint32_t off, len; /* decoded bytes in the scratch buffer */
    int32_t rank;
} tt_line;

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

gk_tokenizer *gk_tok_bpe_load_tiktoken(const char *data, size_t n, const char *name,
                                       gk_err *err) {
    gk_tokenizer *t = NULL;
    tt_line *lines = NULL;
    uint8_t *buf = malloc(n ? n : 1); /* decoded bytes are shorter than their base64 */
    size_t nl = 0, cap = 0, nb = 0;
    int32_t max_rank = -1;
    const char *pre = NULL;
    if (name) {
        if (strstr(name, "o200k")) pre = "o200k";
        else if (strstr(name, "cl100k")) pre = "cl100k";
        else if (strstr(name, "r50k") || strstr(name, "gpt2")) pre = "gpt-2";
    }
    if (!buf) {
        gk_fail(err, "out of memory");
        goto fail;
    }
    if (!pre) {
        gk_fail(err, "cannot tell the pre-tokenizer from the file name '%s' (expected it to "
                     "contain cl100k, o200k or r50k)",
                name ? name : "");
        goto fail;
    }
    size_t lineno = 0;
    for (size_t pos = 0; pos < n;) {
        const char *ls = data + pos;
        const char *le = memchr(ls, '\n', n - pos);
        size_t ll = le ? (size_t)(le - ls) : n - pos;
        pos += ll + (le ? 1 : 0);
        lineno++;
        if (ll && ls[ll - 1] == '\r') ll--;
        if (ll == 0) continue;
        const char *sp = memchr(ls, ' ', ll);
        if (!sp) {
            gk_fail(err, "line %zu: expected '<base64> <rank>'", lineno);
            goto fail;
        }
        long bl = b64_decode(ls, (size_t)(sp - ls), buf + nb);
        if (bl <= 0) {
            gk_fail(err, "line %zu: bad base64", lineno);
            goto fail;
        }
        int64_t rank = 0;
        const char *r = sp + 1, *re = ls + ll;
        if (r == re) {
            gk_fail(err, "line %zu: missing rank", lineno);
            goto fail;
        }
        for (; r < re; r++) {
            if (*r < '0' || *r > '9' || rank > 100000000) {
                gk_fail(err, "line %zu: bad rank", lineno);
                goto fail;
            }
            rank = rank * 10 + (*r - '0');
        }
        if (nl == cap) {
            size_t nc = cap ? cap * 2 : 4096;
            tt_line *nw = realloc(lines, nc * sizeof *nw);
            if (!nw) {
                gk_fail(err, "out of memory");
                goto fail;
            }
            lines = nw;
            cap = nc;
        }
        lines[nl++] = (tt_line){(uint32_t)nb, (uint32_t)bl, (int32_t)rank};
        nb += (size_t)bl;
        if (rank > max_rank) max_rank = (int32_t)rank;
    }
    if (nl == 0) {
        gk_fail(err, "no ranks");
        goto fail;
    }
    if ((size_t)max_rank + 1 != nl) {
        /* Find which rank is missing or doubled, for the message, from the ranks
         * sorted: the cost follows the number of lines, not the largest rank,
         * which one short line can set to 10^8. */
        int32_t *rk = malloc(nl * sizeof *rk);
        if (!rk) {
            gk_fail(err, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < nl; i++) rk[i] = lines[i].rank;
        qsort(rk, nl, sizeof *rk, cmp_i32);
        int32_t dup = -1, miss = rk[0] > 0 ? 0 : -1;
        for (size_t i = 1; i < nl; i++) {
            if (rk[i] == rk[i - 1] && dup < 0) dup = rk[i];
            if (rk[i] > rk[i - 1] + 1 && miss < 0) miss = rk[i - 1] + 1;
        }
        free(rk);
        if (dup >= 0) gk_fail(err, "rank %d appears twice", dup);
        else gk_fail(err, "rank %d is missing", miss);
        goto fail;
    }
    t = gk_tok_new(GK_TOKENIZER_BPE, err);
    if (!t) goto fail;
    /* Ranks are 0..n-1; order the lines by rank (a permutation: check as we go). */
    tt_line *by = calloc(nl, sizeof *by);
    if (!by) {
        gk_fail(err, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < nl; i++) {
        if (by[lines[i].rank].len) {
            free(by);
            gk_fail(err, "rank %d appears twice", lines[i].rank);
            goto fail;
        }
        by[lines[i].rank] = lines[i];
    }
    for (size_t i = 0; i < nl; i++) {
        if (gk_tok_push(t, buf + by[i].off, by[i].len, NULL, GK_TOK_NORMAL, 0, (int32_t)i, err) <
            0) {
            free(by);
            goto fail;
        }
    }
    free(by);
    if (gk_tok_bpe_set_pre(t, pre, NULL, err) < 0) goto fail;
    bool official = false;
    for (size_t i = 0; i < sizeof TT_RANKS / sizeof TT_RANKS[0]; i++)
        if (strcmp(TT_RANKS[i].enc, t->pre) == 0 && TT_RANKS[i].n_ranks == nl) official = true;
    for (size_t i = 0; official && i < sizeof TT_SPECIAL / sizeof TT_SPECIAL[0]; i++) {
        if (strcmp(TT_SPECIAL[i].enc, t->pre) != 0) continue;
        while (t->n_vocab < TT_SPECIAL[i].id) {
            char ph[32];
            snprintf(ph, sizeof ph, "<|unused_%d|>", t->n_vocab);
            if (gk_tok_push(t, "", 0, ph, GK_TOK_UNUSED, 0, GK_TOK_NO_RANK, err) < 0) goto fail;
        }
        if (t->n_vocab != TT_SPECIAL[i].id) {
            gk_fail(err, "%d ranks overlap the special token %s (id %d)", (int)nl,
                    TT_SPECIAL[i].text, TT_SPECIAL[i].id);
            goto fail;
        }
        if (gk_tok_push(t, TT_SPECIAL[i].text, strlen(TT_SPECIAL[i].text), NULL, GK_TOK_CONTROL, 0,
                        GK_TOK_NO_RANK, err) < 0)
            goto fail;
    }
    t->mode = GK_BPE_RANKS;
    t->whole_word = true;
    if (gk_tok_finish(t, false, err) < 0 || gk_tok_bpe_byte_pairs(t, err) < 0) goto fail;
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] < 0) {
            gk_fail(err, "byte 0x%02X has no rank", b);
            goto fail;
        }
    free(lines);
    free(buf);
    return t;
fail:
    free(lines);
    free(buf);
    gk_tokenizer_free(t);
    gk_err_prefix(err, "tiktoken file");
    return NULL;
}

/* --------------------------------------------------- merges from ranks --- */

int gk_tok_bpe_last_merge(const gk_tokenizer *t, int32_t id, int32_t *left, int32_t *right) {
    const char *s = gk_tok_raw(t, id);
    uint32_t n = t->tok[id].len;
    int32_t limit = t->tok[id].rank;
    if (n < 2 || n > GK_TOK_MAX_LEN) return 0;
    /* The array scan of merge_linear, stopped at merges of rank >= limit. */
    uint32_t *st = malloc((n + 1) * sizeof *st);
    int32_t *rk = malloc(n * sizeof *rk), *mg = malloc(n * sizeof *mg);
    int32_t *ids = malloc(n * sizeof *ids);
    int rc = -1;
    if (!st || !rk || !mg || !ids) goto done;
    uint32_t m = n;
    for (uint32_t i = 0; i <= n; i++) st[i] = i;
    for (uint32_t i = 0; i < n; i++) ids[i] = t->byte_id[(uint8_t)s[i]];
#define RANK_AT(i)                                                                                 \
    do {                                                                                           \
        rk[i] = GK_TOK_NO_RANK;                                                                    \
        if ((i) + 1 < m) {                                                                         \
            pair_rank(t, s, st[i], st[(i) + 2], ids[i], ids[(i) + 1], &rk[i], &mg[i]);             \
            if (rk[i] >= limit) rk[i] = GK_TOK_NO_RANK;                                            \
        }                                                                                          \
    } while (0)
    for (uint32_t i = 0; i < m; i++) RANK_AT(i);
    for (;;) {
        int32_t best = GK_TOK_NO_RANK;
        uint32_t bi = 0;
        for (uint32_t i = 0; i + 1 < m; i++)
            if (rk[i] < best) best = rk[i], bi = i;
        if (best == GK_TOK_NO_RANK) break;
        ids[bi] = mg[bi];
        memmove(&st[bi + 1], &st[bi + 2], (m - bi - 1) * sizeof *st);
        memmove(&ids[bi + 1], &ids[bi + 2], (m - bi - 2) * sizeof *ids);
        memmove(&rk[bi + 1], &rk[bi + 2], (m - bi - 2) * sizeof *rk);
        memmove(&mg[bi + 1], &mg[bi + 2], (m - bi - 2) * sizeof *mg);
        m--;
        RANK_AT(bi);
        if (bi > 0) RANK_AT(bi - 1);
    }
#undef RANK_AT
    rc = 0;
    if (m == 2 && ids[0] >= 0 && ids[1] >= 0) {
        *left = ids[0];
        *right = ids[1];
        rc = 1;
    }
done:
    free(st), free(rk), free(mg), free(ids);
    return rc;
}
