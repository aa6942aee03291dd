/*
 * tok_spm.c - SentencePiece BPE (Grok-1's tokenizer, GGUF "llama" vocabularies):
 * the tokenizer.model protobuf, SentencePiece's normalizer and its BPE.
 *
 * It reproduces SentencePiece's own code path (normalizer.cc, bpe_model.cc,
 * sentencepiece_processor.cc), because Grok-1 was trained on its output:
 *
 * 1. Normalize the raw text, one prefix at a time: a user-defined symbol
 *    (longest match on the raw bytes) is copied as is; else the longest rule of
 *    the precompiled charsmap (absent for Grok-1, whose normalizer is
 *    "identity") gives a replacement; else one valid UTF-8 character is copied,
 *    and an invalid byte becomes U+FFFD (one byte consumed per U+FFFD, as
 *    SentencePiece does). Spaces become U+2581 and one U+2581 is prepended
 *    (add_dummy_prefix) to non-empty text.
 * 2. Split the normalized text into symbols: a user-defined symbol matched on
 *    the *normalized* text is one frozen symbol, anything else one character.
 *    So Grok-1's ASCII-space symbols (ids 32-46) never match: by then spaces are
 *    U+2581 (spec 7.1). Newline, tab and digit symbols do.
 * 3. Merge adjacent symbols whose concatenation is a NORMAL, USER_DEFINED or
 *    UNUSED piece, highest score first, leftmost first on ties (a heap).
 * 4. Resegment UNUSED pieces into the pair they came from; a symbol that is no
 *    piece is unknown: with byte_fallback it becomes <0xNN> byte pieces,
 *    otherwise runs of unknown symbols become one unknown token.
 *
 * Speed: SentencePiece runs one heap over the whole text. When no piece has
 * U+2581 after another character (true of Grok-1 and LLaMA, trained with
 * split_by_whitespace), no merge can cross the start of a word, so each word
 * gets its own small heap and repeated words come from a cache; the ids are
 * the same (tests compare both against spm_encode).
 */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

#define SPACE_SYM "\xe2\x96\x81" /* U+2581, SentencePiece's visible space */

/* -------------------------------------------------------------- protobuf --- */

typedef struct pb {
    const uint8_t *p, *end;
    const char *what; /* message name, for errors */
} pb;

static int pb_varint(pb *b, uint64_t *out, gk_err *err) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end) return gk_fail(err, "%s: truncated varint", b->what);
        uint8_t c = *b->p++;
        v |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return gk_fail(err, "%s: varint longer than 10 bytes", b->what);
}

/* Reads one field header and its value. For length-delimited fields (wire type
 * 2) *sub and *sub_n give the bytes; for varints *v; for fixed32 *v too. */
static int pb_field(pb *b, uint32_t *field, uint32_t *wire, uint64_t *v, const uint8_t **sub,
                    size_t *sub_n, gk_err *err) {
    uint64_t key;
    if (pb_varint(b, &key, err) < 0) return -1;
    *field = (uint32_t)(key >> 3);
    *wire = (uint32_t)(key & 7);
    if (*field == 0) return gk_fail(err, "%s: field number 0", b->what);
    switch (*wire) {
    case 0: return pb_varint(b, v, err);
    case 1:
        if (b->end - b->p < 8) return gk_fail(err, "%s: truncated fixed64", b->what);
        memcpy(v, b->p, 8);
        b->p += 8;
        return 0;
    case 2: {
        uint64_t n;
        if (pb_varint(b, &n, err) < 0) return -1;
        if (n > (uint64_t)(b->end - b->p))
            return gk_fail(err, "%s: field %u claims %llu bytes but %zu remain", b->what, *field,
                           (unsigned long long)n, (size_t)(b->end - b->p));
        *sub = b->p;
        *sub_n = (size_t)n;
        b->p += n;
        return 0;
    }
    case 5: {
        if (b->end - b->p < 4) return gk_fail(err, "%s: truncated fixed32", b->what);
        uint32_t x;
        memcpy(&x, b->p, 4);
        *v = x;
        b->p += 4;
        return 0;
    }
    default:
        return gk_fail(err, "%s: field %u has unsupported wire type %u (not a SentencePiece model?)",
                       b->what, *field, *wire);
    }
}

typedef struct spm_spec {
    int model_type; /* 1 unigram, 2 bpe, 3 word, 4 char */
    bool byte_fallback, ws_suffix;
    int64_t unk_id, bos_id, eos_id, pad_id;
    const uint8_t *unk_surface;
    size_t unk_surface_n;
    bool has_unk_surface;
    bool add_dummy_prefix, remove_extra_ws, escape_ws;
    const uint8_t *charsmap;
    size_t charsmap_n;
    char norm_name[32];
} spm_spec;

static int parse_trainer(const uint8_t *d, size_t n, spm_spec *s, gk_err *err) {
    pb b = {d, d + n, "trainer_spec"};
    while (b.p < b.end) {
        uint32_t f, w;
        uint64_t v = 0;
        const uint8_t *sub = NULL;
        size_t sn = 0;
        if (pb_field(&b, &f, &w, &v, &sub, &sn, err) < 0) return -1;
        bool vint = w == 0;
        if (f == 3 && vint) s->model_type = (int)v;
        else if (f == 35 && vint) s->byte_fallback = v != 0;
        else if (f == 24 && vint) s->ws_suffix = v != 0;
        else if (f == 40 && vint) s->unk_id = (int32_t)v;
        else if (f == 41 && vint) s->bos_id = (int32_t)v;
        else if (f == 42 && vint) s->eos_id = (int32_t)v;
        else if (f == 43 && vint) s->pad_id = (int32_t)v;
        else if (f == 44 && w == 2) {
            s->unk_surface = sub;
            s->unk_surface_n = sn;
            s->has_unk_surface = true;
        }
    }
    return 0;
}

static int parse_normalizer(const uint8_t *d, size_t n, spm_spec *s, gk_err *err) {
    pb b = {d, d + n, "normalizer_spec"};
    while (b.p < b.end) {
        uint32_t f, w;
        uint64_t v = 0;
        const uint8_t *sub = NULL;
        size_t sn = 0;
        if (pb_field(&b, &f, &w, &v, &sub, &sn, err) < 0) return -1;
        if (f == 1 && w == 2) {
            size_t k = sn < sizeof s->norm_name - 1 ? sn : sizeof s->norm_name - 1;
            memcpy(s->norm_name, sub, k);
            s->norm_name[k] = 0;
        } else if (f == 2 && w == 2) {
            s->charsmap = sub;
            s->charsmap_n = sn;
        } else if (f == 3 && w == 0) s->add_dummy_prefix = v != 0;
        else if (f == 4 && w == 0) s->remove_extra_ws = v != 0;
        else if (f == 5 && w == 0) s->escape_ws = v != 0;
    }
    return 0;
}

static int parse_piece(gk_tokenizer *t, const uint8_t *d, size_t n, gk_err *err) {
    pb b = {d, d + n, "piece"};
    const uint8_t *text = NULL;
    size_t text_n = 0;
    float score = 0;
    uint64_t type = GK_TOK_NORMAL;
    while (b.p < b.end) {
        uint32_t f, w;
        uint64_t v = 0;
        const uint8_t *sub = NULL;
        size_t sn = 0;
        if (pb_field(&b, &f, &w, &v, &sub, &sn, err) < 0) return -1;
        if (f == 1 && w == 2) {
            text = sub;
            text_n = sn;
        } else if (f == 2 && w == 5) {
            uint32_t x = (uint32_t)v;
            memcpy(&score, &x, 4);
        } else if (f == 3 && w == 0) {
            type = v;
        }
    }
    int32_t id = t->n_vocab;
    if (!text || text_n == 0) return gk_fail(err, "piece %d is empty", id);
    if (memchr(text, 0, text_n)) return gk_fail(err, "piece %d contains a NUL byte", id);
    if (type < GK_TOK_NORMAL || type > GK_TOK_BYTE)
        return gk_fail(err, "piece %d has unknown type %llu", id, (unsigned long long)type);
    char tmp[64];
    char *piece = text_n < sizeof tmp ? tmp : malloc(text_n + 1);
    if (!piece) return gk_fail(err, "out of memory");
    memcpy(piece, text, text_n);
    piece[text_n] = 0;
    int rc = gk_tok_push(t, text, text_n, piece, (int)type, score, GK_TOK_NO_RANK, err);
    if (piece != tmp) free(piece);
    return rc;
}

gk_tokenizer *gk_tok_spm_load_proto(const uint8_t *data, size_t n, gk_err *err) {
    gk_tokenizer *t = gk_tok_new(GK_TOKENIZER_SPM, err);
    if (!t) return NULL;
    spm_spec s = {.model_type = 1, .unk_id = 0, .bos_id = 1, .eos_id = 2, .pad_id = -1,
                  .add_dummy_prefix = true, .remove_extra_ws = true, .escape_ws = true};
    bool have_trainer = false;
    pb b = {data, data + n, "model"};
    while (b.p < b.end) {
        uint32_t f, w;
        uint64_t v = 0;
        const uint8_t *sub = NULL;
        size_t sn = 0;
        if (pb_field(&b, &f, &w, &v, &sub, &sn, err) < 0) goto fail;
        if (w != 2) continue;
        if (f == 1) {
            if (parse_piece(t, sub, sn, err) < 0) goto fail;
        } else if (f == 2) {
            have_trainer = true;
            if (parse_trainer(sub, sn, &s, err) < 0) goto fail;
        } else if (f == 3) {
            if (parse_normalizer(sub, sn, &s, err) < 0) goto fail;
        }
    }
    if (t->n_vocab == 0) {
        gk_fail(err, "no pieces (not a SentencePiece model?)");
        goto fail;
    }
    if (!have_trainer) {
        gk_fail(err, "no trainer_spec: cannot tell the model type");
        goto fail;
    }
    if (s.model_type != 2) {
        static const char *names[] = {"?", "unigram", "bpe", "word", "char"};
        gk_fail(err, "model type %s is not supported (only BPE)",
                s.model_type >= 1 && s.model_type <= 4 ? names[s.model_type] : "unknown");
        goto fail;
    }
    if (s.ws_suffix) {
        gk_fail(err, "treat_whitespace_as_suffix is not supported");
        goto fail;
    }
    t->byte_fallback = s.byte_fallback;
    t->add_dummy_prefix = s.add_dummy_prefix;
    t->remove_extra_ws = s.remove_extra_ws;
    t->escape_ws = s.escape_ws;
    if (s.charsmap_n) {
        t->charsmap = gk_malloc(s.charsmap_n, err);
        if (!t->charsmap) goto fail;
        memcpy(t->charsmap, s.charsmap, s.charsmap_n);
        t->charsmap_len = s.charsmap_n;
    }
    {
        const uint8_t *us = s.has_unk_surface ? s.unk_surface : (const uint8_t *)" \xe2\x81\x87 ";
        size_t un = s.has_unk_surface ? s.unk_surface_n : 5;
        t->unk_surface = gk_malloc(un + 1, err);
        if (!t->unk_surface) goto fail;
        memcpy(t->unk_surface, us, un);
        t->unk_surface[un] = 0;
    }
    /* The ids in trainer_spec are what training asked for; the piece types are
     * what the model holds, so those decide (as in SentencePiece). */
    if (gk_tok_finish(t, false, err) < 0) goto fail;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint8_t ty = t->tok[id].type;
        if (ty != GK_TOK_CONTROL) continue;
        if (id == s.bos_id) t->bos = id;
        if (id == s.eos_id) t->eos = id;
        if (id == s.pad_id) t->pad = id;
    }
    if (t->eos >= 0) t->stops[0] = t->eos, t->n_stops = 1;
    if (gk_tok_spm_setup(t, err) < 0) goto fail;
    return t;
fail:
    gk_err_prefix(err, "SentencePiece model");
    gk_tokenizer_free(t);
    return NULL;
}

/* ------------------------------------------------------------ set-up ------- */

/* Pieces that merges may produce (SentencePiece's pieces_ map). */
static inline bool mergeable(uint8_t type) {
    return type == GK_TOK_NORMAL || type == GK_TOK_USER || type == GK_TOK_UNUSED;
}

static int parse_byte_piece(const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    const char *h = strchr(hex, s[3]), *l = strchr(hex, s[4]);
    if (!h || !l || !s[3] || !s[4]) return -1;
    return (int)((h - hex) * 16 + (l - hex));
}

static int setup_charsmap(gk_tokenizer *t, gk_err *err) {
    if (!t->charsmap_len) return 0;
    /* <u32 trie size><double-array units><NUL-terminated replacement strings> */
    if (t->charsmap_len <= 4) return gk_fail(err, "precompiled_charsmap is truncated");
    uint32_t trie_n;
    memcpy(&trie_n, t->charsmap, 4);
    if (trie_n >= t->charsmap_len - 4 || trie_n % 4 || trie_n == 0)
        return gk_fail(err, "precompiled_charsmap: trie size %u does not fit in %zu bytes", trie_n,
                       t->charsmap_len);
    /* The copy from malloc is suitably aligned for uint32_t at offset 4. */
    t->xcda = (const uint32_t *)(t->charsmap + 4);
    t->xcda_n = trie_n / 4;
    t->xnorm = (const char *)t->charsmap + 4 + trie_n;
    t->xnorm_n = (uint32_t)(t->charsmap_len - 4 - trie_n);
    return 0;
}

int gk_tok_spm_setup(gk_tokenizer *t, gk_err *err) {
    int n_bytes = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const gk_tok_info *ti = &t->tok[id];
        if (ti->type == GK_TOK_USER) {
            if (gk_tok_trie_add(&t->user, gk_tok_raw(t, id), ti->len, id, err) < 0) return -1;
        } else if (ti->type == GK_TOK_BYTE) {
            int b = parse_byte_piece(gk_tok_raw(t, id), ti->len);
            if (b < 0)
                return gk_fail(err, "byte piece %d ('%s') is not of the form <0xNN>", id,
                               t->pieces + ti->piece);
            if (t->byte_id[b] < 0) n_bytes++;
            t->byte_id[b] = id;
        }
    }
    if (t->unk < 0) return gk_fail(err, "the vocabulary has no unknown piece");
    /* Words can be merged one at a time (tok_spm_encode) unless some mergeable
     * piece has U+2581 after another character, or UNUSED pieces make the
     * resegmentation depend on merges elsewhere in the text. */
    t->spm_words = t->escape_ws;
    for (int32_t id = 0; id < t->n_vocab && t->spm_words; id++) {
        const gk_tok_info *ti = &t->tok[id];
        if (ti->type == GK_TOK_UNUSED) t->spm_words = false;
        if (!mergeable(ti->type)) continue;
        const char *p = gk_tok_raw(t, id);
        for (uint32_t i = 1; i + 3 <= ti->len; i++)
            if (memcmp(p + i, SPACE_SYM, 3) == 0 && !(i >= 3 && memcmp(p + i - 3, SPACE_SYM, 3) == 0))
                t->spm_words = false;
    }
    if (t->byte_fallback && n_bytes != 256)
        return gk_fail(err, "byte_fallback is set but only %d of the 256 byte pieces exist",
                       n_bytes);
    return setup_charsmap(t, err);
}

/* ------------------------------------------------------------ normalizer --- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static int sb_put(sbuf *b, const char *s, size_t n, gk_err *err) {
    if (!n) return 0;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) return gk_fail(err, "out of memory (normalized text)");
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

/* Longest rule of the precompiled charsmap (a darts-clone double array) that
 * prefixes s; returns its length (0 = none) and the replacement. Like
 * SentencePiece, only the first 32 matches are considered. */
static size_t charsmap_match(const gk_tokenizer *t, const uint8_t *s, size_t n, const char **repl,
                             size_t *repl_n) {
    const uint32_t *a = t->xcda;
    uint32_t na = t->xcda_n;
#define DA_OFFSET(u) (((u) >> 10) << (((u) & (1u << 9)) >> 6))
#define DA_LABEL(u) ((u) & ((1u << 31) | 0xFFu))
#define DA_LEAF(u) (((u) >> 8) & 1u)
#define DA_VALUE(u) ((u) & ((1u << 31) - 1))
    size_t best = 0;
    uint32_t best_val = 0;
    int found = 0;
    uint32_t pos = DA_OFFSET(a[0]);
    for (size_t i = 0; i < n && found < 32; i++) {
        pos ^= s[i];
        if (pos >= na) break;
        uint32_t u = a[pos];
        if (DA_LABEL(u) != s[i]) break;
        pos ^= DA_OFFSET(u);
        if (pos >= na) break;
        if (DA_LEAF(u)) {
            found++;
            best = i + 1;
            best_val = DA_VALUE(a[pos]);
        }
    }
#undef DA_OFFSET
#undef DA_LABEL
#undef DA_LEAF
#undef DA_VALUE
    if (!best || best_val >= t->xnorm_n) return 0;
    const char *r = t->xnorm + best_val;
    const char *z = memchr(r, 0, t->xnorm_n - best_val);
    if (!z) return 0; /* a rule without its terminator: ignore it */
    *repl = r;
    *repl_n = (size_t)(z - r);
    return best;
}

/* One step of SentencePiece's NormalizePrefix: what the next bytes of raw text
 * become, and how many are consumed. */
static size_t normalize_prefix(const gk_tokenizer *t, const char *s, size_t n, const char **out,
                               size_t *out_n) {
    int32_t id;
    size_t m = t->user.n_entries && t->user.first[(uint8_t)s[0]]
                   ? gk_tok_trie_match(&t->user, t, s, n, 1u << GK_TOK_USER, &id)
                   : 0;
    if (m) {
        *out = s;
        *out_n = m;
        return m;
    }
    if (t->xcda) {
        m = charsmap_match(t, (const uint8_t *)s, n, out, out_n);
        if (m) return m;
    }
    int l = gk_utf8_valid_len((const unsigned char *)s, n);
    if (l == 0) {
        *out = "\xEF\xBF\xBD"; /* U+FFFD for one malformed byte */
        *out_n = 3;
        return 1;
    }
    *out = s;
    *out_n = (size_t)l;
    return (size_t)l;
}

static int normalize(const gk_tokenizer *t, const char *s, size_t n, sbuf *out, gk_err *err) {
    const char *sp;
    size_t sp_n;
    if (t->remove_extra_ws) {
        while (n) {
            size_t c = normalize_prefix(t, s, n, &sp, &sp_n);
            if (!(sp_n == 1 && sp[0] == ' ')) break;
            s += c;
            n -= c;
        }
    }
    if (!n) return 0;
    const char *ws = t->escape_ws ? SPACE_SYM : " ";
    size_t ws_n = t->escape_ws ? 3 : 1;
    if (t->add_dummy_prefix && sb_put(out, ws, ws_n, err) < 0) return -1;
    bool prev_space = t->remove_extra_ws;
    while (n) {
        size_t c = normalize_prefix(t, s, n, &sp, &sp_n);
        while (prev_space && sp_n && sp[0] == ' ') sp++, sp_n--;
        if (sp_n) {
            size_t run = 0;
            for (size_t i = 0; i < sp_n; i++) {
                if (sp[i] != ' ') continue;
                if (sb_put(out, sp + run, i - run, err) < 0 || sb_put(out, ws, ws_n, err) < 0)
                    return -1;
                run = i + 1;
            }
            if (sb_put(out, sp + run, sp_n - run, err) < 0) return -1;
            prev_space = sp[sp_n - 1] == ' ';
        }
        s += c;
        n -= c;
        if (!t->remove_extra_ws) prev_space = false;
    }
    if (t->remove_extra_ws)
        while (out->n >= ws_n && memcmp(out->p + out->n - ws_n, ws, ws_n) == 0) out->n -= ws_n;
    return 0;
}

/* ------------------------------------------------------------------- BPE --- */

typedef struct sym {
    int32_t prev, next;
    uint32_t start, len;
    bool freeze;
} sym;

typedef struct cand {
    float score;
    int32_t left, right;
    uint32_t size;
} cand;

typedef struct heap {
    cand *a;
    size_t n, cap;
} heap;

static inline bool cand_before(const cand *x, const cand *y) {
    return x->score > y->score || (x->score == y->score && x->left < y->left);
}

static int heap_push(heap *h, cand c, gk_err *err) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        cand *na = realloc(h->a, cap * sizeof *na);
        if (!na) return gk_fail(err, "out of memory (merge queue)");
        h->a = na;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_before(&c, &h->a[p])) break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = c;
    return 0;
}

static cand heap_pop(heap *h) {
    cand top = h->a[0], last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < h->n && cand_before(&h->a[l], best)) m = l, best = &h->a[l];
        if (r < h->n && cand_before(&h->a[r], best)) m = r;
        if (m == i) break;
        h->a[i] = h->a[m];
        i = m;
    }
    if (h->n) h->a[i] = last;
    return top;
}

/* Where an UNUSED piece came from (SentencePiece's rev_merge: last pair wins). */
typedef struct revm {
    int32_t *key; /* piece id + 1; 0 = empty */
    uint32_t *ls, *ll, *rs, *rl;
    uint32_t mask, n;
} revm;

static int revm_put(revm *m, int32_t id, uint32_t ls, uint32_t ll, uint32_t rs, uint32_t rl,
                    gk_err *err) {
    if ((m->n + 1) * 2 > m->mask + 1) {
        revm old = *m;
        uint32_t cap = old.key ? (old.mask + 1) * 2 : 64;
        m->key = gk_calloc(cap, sizeof *m->key, err);
        m->ls = gk_malloc(cap * sizeof(uint32_t), err);
        m->ll = gk_malloc(cap * sizeof(uint32_t), err);
        m->rs = gk_malloc(cap * sizeof(uint32_t), err);
        m->rl = gk_malloc(cap * sizeof(uint32_t), err);
        m->mask = cap - 1;
        m->n = 0;
        bool ok = m->key && m->ls && m->ll && m->rs && m->rl;
        for (uint32_t i = 0; ok && old.key && i <= old.mask; i++)
            if (old.key[i])
                revm_put(m, old.key[i] - 1, old.ls[i], old.ll[i], old.rs[i], old.rl[i], err);
        free(old.key), free(old.ls), free(old.ll), free(old.rs), free(old.rl);
        if (!ok) return -1;
    }
    uint32_t i = ((uint32_t)id * 2654435761u) & m->mask;
    while (m->key[i] && m->key[i] != id + 1) i = (i + 1) & m->mask;
    if (!m->key[i]) m->n++;
    m->key[i] = id + 1;
    m->ls[i] = ls, m->ll[i] = ll, m->rs[i] = rs, m->rl[i] = rl;
    return 0;
}

static bool revm_get(const revm *m, int32_t id, uint32_t *ls, uint32_t *ll, uint32_t *rs,
                     uint32_t *rl) {
    if (!m->key) return false;
    uint32_t i = ((uint32_t)id * 2654435761u) & m->mask;
    while (m->key[i]) {
        if (m->key[i] == id + 1) {
            *ls = m->ls[i], *ll = m->ll[i], *rs = m->rs[i], *rl = m->rl[i];
            return true;
        }
        i = (i + 1) & m->mask;
    }
    return false;
}

typedef struct spm_state {
    const gk_tokenizer *t;
    const char *norm;
    sym *s;
    heap h;
    revm rev;
} spm_state;


static int try_pair(spm_state *st, int32_t l, int32_t r, gk_err *err) {
    if (l < 0 || r < 0 || st->s[l].freeze || st->s[r].freeze) return 0;
    uint32_t start = st->s[l].start, size = st->s[l].len + st->s[r].len;
    int32_t id = gk_tok_find(st->t, st->norm + start, size);
    if (id < 0 || !mergeable(st->t->tok[id].type)) return 0;
    cand c = {st->t->tok[id].score, l, r, size};
    if (heap_push(&st->h, c, err) < 0) return -1;
    if (st->t->tok[id].type == GK_TOK_UNUSED)
        return revm_put(&st->rev, id, start, st->s[l].len, st->s[r].start, st->s[r].len, err);
    return 0;
}

/* Emits one final piece, resegmenting UNUSED pieces and falling back to bytes
 * (or unknown) for pieces outside the vocabulary. */
static int emit_piece(spm_state *st, uint32_t start, uint32_t len, bool *prev_unk, gk_tok_vec *out,
                      gk_err *err) {
    const gk_tokenizer *t = st->t;
    uint32_t stk[128][2];
    int sp = 0;
    stk[sp][0] = start, stk[sp][1] = len, sp++;
    while (sp) {
        sp--;
        uint32_t s0 = stk[sp][0], n0 = stk[sp][1];
        int32_t id = gk_tok_find(t, st->norm + s0, n0);
        if (id < 0) id = t->unk;
        uint32_t ls, ll, rs, rl;
        if (t->tok[id].type == GK_TOK_UNUSED && revm_get(&st->rev, id, &ls, &ll, &rs, &rl)) {
            if (sp + 2 > 128) return gk_fail(err, "unused-piece resegmentation is too deep");
            stk[sp][0] = rs, stk[sp][1] = rl, sp++; /* right pops after left */
            stk[sp][0] = ls, stk[sp][1] = ll, sp++;
            continue;
        }
        bool unk = t->tok[id].type == GK_TOK_UNKNOWN;
        if (unk && t->byte_fallback) {
            for (uint32_t i = 0; i < n0; i++)
                if (gk_tok_vec_push(out, t->byte_id[(uint8_t)st->norm[s0 + i]], err) < 0)
                    return -1;
        } else if (!(unk && *prev_unk)) {
            if (gk_tok_vec_push(out, id, err) < 0) return -1;
        }
        *prev_unk = unk;
    }
    return 0;
}

/* Merges symbols [lo, hi) among themselves (SentencePiece's main loop) and
 * emits the result. */
static int bpe_run(spm_state *st, int32_t lo, int32_t hi, bool *prev_unk, gk_tok_vec *out,
                   gk_err *err) {
    for (int32_t i = lo; i < hi; i++) {
        st->s[i].prev = i > lo ? i - 1 : -1;
        st->s[i].next = i + 1 < hi ? i + 1 : -1;
    }
    st->h.n = 0;
    for (int32_t i = lo + 1; i < hi; i++)
        if (try_pair(st, i - 1, i, err) < 0) return -1;
    while (st->h.n) {
        cand c = heap_pop(&st->h);
        sym *l = &st->s[c.left], *r = &st->s[c.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != c.size) continue;
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) st->s[r->next].prev = c.left;
        r->len = 0;
        if (try_pair(st, l->prev, c.left, err) < 0 || try_pair(st, c.left, l->next, err) < 0)
            return -1;
    }
    for (int32_t i = lo; i >= 0; i = st->s[i].next)
        if (emit_piece(st, st->s[i].start, st->s[i].len, prev_unk, out, err) < 0) return -1;
    return 0;
}

/* Words repeat, so a long text keeps the ids of the words it merged in a
 * direct-mapped cache (ids in the output vector, key bytes in the normalized
 * text). Used only with byte fallback, where a word's ids never depend on its
 * neighbours (without it, runs of unknown pieces merge across words). */
typedef struct wc_ent {
    uint32_t hhi, len, n_ids;
    size_t off, out_pos;
} wc_ent;

static inline bool is_space_sym(const spm_state *st, int32_t i) {
    return st->s[i].len == 3 && memcmp(st->norm + st->s[i].start, SPACE_SYM, 3) == 0;
}

int gk_tok_spm_encode(const gk_tokenizer *t, const char *text, size_t len, gk_tok_vec *out,
                      gk_err *err) {
    sbuf nb = {0};
    spm_state st = {.t = t};
    wc_ent *wc = NULL;
    uint32_t wc_mask = 0;
    int rc = -1;
    if (normalize(t, text, len, &nb, err) < 0) goto done;
    if (nb.n == 0) {
        rc = 0;
        goto done;
    }
    if (nb.n > UINT32_MAX / 2) {
        gk_fail(err, "text too long (%zu bytes after normalization)", nb.n);
        goto done;
    }
    st.norm = nb.p;
    st.s = gk_malloc(nb.n * sizeof *st.s, err);
    if (!st.s) goto done;
    int32_t n = 0;
    for (size_t pos = 0; pos < nb.n;) {
        int32_t id;
        size_t m = t->user.n_entries && t->user.first[(uint8_t)nb.p[pos]]
                       ? gk_tok_trie_match(&t->user, t, nb.p + pos, nb.n - pos, 1u << GK_TOK_USER,
                                           &id)
                       : 0;
        bool freeze = m > 0;
        if (!m) {
            m = (size_t)gk_utf8_lead_len((uint8_t)nb.p[pos]);
            if (m > nb.n - pos) m = nb.n - pos;
        }
        st.s[n++] = (sym){-1, -1, (uint32_t)pos, (uint32_t)m, freeze};
        pos += m;
    }
    bool prev_unk = false;
    if (!t->spm_words) {
        rc = bpe_run(&st, 0, n, &prev_unk, out, err);
        goto done;
    }
    /* No mergeable piece has U+2581 after another character, so no merge
     * crosses the start of a word ("▁" after a non-"▁") or a frozen symbol:
     * each word is merged alone, with the same result as the whole text. */
    if (t->byte_fallback && nb.n >= 1024) {
        uint32_t cap = 256;
        while (cap < nb.n / 16 && cap < (1u << 16)) cap <<= 1;
        wc = calloc(cap, sizeof *wc); /* without it, encoding is only slower */
        wc_mask = cap - 1;
    }
    for (int32_t lo = 0; lo < n;) {
        int32_t hi = lo + 1;
        if (!st.s[lo].freeze)
            while (hi < n && !st.s[hi].freeze &&
                   !(is_space_sym(&st, hi) && !is_space_sym(&st, hi - 1)))
                hi++;
        uint32_t off = st.s[lo].start, wl = st.s[hi - 1].start + st.s[hi - 1].len - off;
        wc_ent *e = NULL;
        uint64_t h = 0;
        if (wc && hi - lo > 1) {
            h = gk_tok_hash(nb.p + off, wl);
            e = &wc[(uint32_t)h & wc_mask];
            if (e->len == wl && e->hhi == (uint32_t)(h >> 32) && memcmp(nb.p + e->off, nb.p + off, wl) == 0) {
                for (uint32_t i = 0; i < e->n_ids; i++)
                    if (gk_tok_vec_push(out, out->v[e->out_pos + i], err) < 0) goto done;
                lo = hi;
                continue;
            }
        }
        size_t before = out->n;
        if (bpe_run(&st, lo, hi, &prev_unk, out, err) < 0) goto done;
        if (e) *e = (wc_ent){(uint32_t)(h >> 32), wl, (uint32_t)(out->n - before), off, before};
        lo = hi;
    }
    rc = 0;
done:
    free(wc);
    free(nb.p);
    free(st.s);
    free(st.h.a);
    free(st.rev.key), free(st.rev.ls), free(st.rev.ll), free(st.rev.rs), free(st.rev.rl);
    return rc;
}
