/*
 * tok_vocab.c - the vocabulary both tokenizers share: token pools, the hash map
 * from bytes to ids, the pair map of GGUF merges, the byte trie used to find
 * special tokens in text, and UTF-8 / GPT-2 byte helpers.
 */
#include "tokenizer/tok_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ hash --- */

static inline uint64_t mix64(uint64_t h) {
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

/* A fast non-cryptographic hash over bytes, 8 at a time. Token lookups are the
 * inner loop of both encoders, so this matters more than its quality margins. */
uint64_t gk_tok_hash(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    if (n) memcpy(&v, s, n);
    h = (h ^ v) * 0x94d049bb133111ebull;
    return mix64(h);
}

static uint32_t table_size(uint64_t n) {
    uint64_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    return (uint32_t)cap;
}

static inline uint8_t hash_tag(uint64_t h) {
    uint8_t g = (uint8_t)(h >> 24);
    return g ? g : 1;
}

/* memcmp(a, b, n) == 0 for the short strings of token lookups, without a call. */
static inline bool same_bytes(const char *a, const char *b, size_t n) {
    while (n >= 8) {
        uint64_t x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y) return false;
        a += 8, b += 8, n -= 8;
    }
    while (n--)
        if (*a++ != *b++) return false;
    return true;
}

int32_t gk_tok_find(const gk_tokenizer *t, const void *s, size_t n) {
    uint64_t h = gk_tok_hash(s, n);
    uint8_t g = hash_tag(h);
    uint32_t hi = (uint32_t)(h >> 32);
    for (uint32_t i = (uint32_t)h & t->map.mask;; i = (i + 1) & t->map.mask) {
        uint8_t tg = t->map.tag[i];
        if (!tg) return -1;
        if (tg != g) continue;
        const gk_tok_slot *e = &t->map.slot[i];
        if (e->hhi == hi && e->len == n && same_bytes(t->bytes + e->off, s, n))
            return (int32_t)e->id1 - 1;
    }
}

/* Inserts id; returns the id already holding those bytes, or -1 if none did.
 * With replace, a duplicate takes over the slot (the old id is returned). */
static int32_t map_insert(gk_tokenizer *t, int32_t id, bool replace) {
    const gk_tok_info *ti = &t->tok[id];
    const char *s = t->bytes + ti->off;
    uint64_t h = gk_tok_hash(s, ti->len);
    uint32_t hi = (uint32_t)(h >> 32);
    for (uint32_t i = (uint32_t)h & t->map.mask;; i = (i + 1) & t->map.mask) {
        gk_tok_slot *e = &t->map.slot[i];
        if (!e->id1) {
            *e = (gk_tok_slot){hi, (uint32_t)id + 1, ti->off, ti->len};
            t->map.tag[i] = hash_tag(h);
            return -1;
        }
        if (e->hhi == hi && e->len == ti->len && memcmp(t->bytes + e->off, s, ti->len) == 0) {
            int32_t old = (int32_t)e->id1 - 1;
            if (replace) e->id1 = (uint32_t)id + 1;
            return old;
        }
    }
}

/* ----------------------------------------------------------------- pairs --- */

static inline uint32_t pair_slot(uint64_t key, uint32_t mask) {
    return (uint32_t)mix64(key * 0x9e3779b97f4a7c15ull) & mask;
}

int gk_tok_pairs_init(gk_tok_pairs *p, uint32_t n, gk_err *err) {
    uint32_t cap = table_size(n);
    p->mask = cap - 1;
    p->key = gk_calloc(cap, sizeof *p->key, err);
    p->rank = gk_malloc((size_t)cap * sizeof *p->rank, err);
    p->merged = gk_malloc((size_t)cap * sizeof *p->merged, err);
    if (!p->key || !p->rank || !p->merged) {
        gk_tok_pairs_free(p);
        return -1;
    }
    return 0;
}

bool gk_tok_pairs_add(gk_tok_pairs *p, int32_t l, int32_t r, int32_t rank, int32_t merged) {
    uint64_t key = ((uint64_t)(uint32_t)(l + 1) << 32) | (uint32_t)(r + 1);
    for (uint32_t i = pair_slot(key, p->mask);; i = (i + 1) & p->mask) {
        if (p->key[i] == key) return false;
        if (!p->key[i]) {
            p->key[i] = key;
            p->rank[i] = rank;
            p->merged[i] = merged;
            return true;
        }
    }
}

bool gk_tok_pairs_find(const gk_tok_pairs *p, int32_t l, int32_t r, int32_t *rank,
                       int32_t *merged) {
    uint64_t key = ((uint64_t)(uint32_t)(l + 1) << 32) | (uint32_t)(r + 1);
    for (uint32_t i = pair_slot(key, p->mask);; i = (i + 1) & p->mask) {
        if (p->key[i] == key) {
            *rank = p->rank[i];
            *merged = p->merged[i];
            return true;
        }
        if (!p->key[i]) return false;
    }
}

void gk_tok_pairs_free(gk_tok_pairs *p) {
    free(p->key);
    free(p->rank);
    free(p->merged);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------------ trie --- */

int gk_tok_trie_init(gk_tok_trie *tr, gk_err *err) {
    memset(tr, 0, sizeof *tr);
    for (int i = 0; i < 256; i++) tr->root[i] = -1;
    tr->cap_nodes = 64;
    tr->term = gk_malloc((size_t)tr->cap_nodes * sizeof *tr->term, err);
    tr->emask = 63;
    tr->ekey = gk_calloc(64, sizeof *tr->ekey, err);
    tr->eval = gk_malloc(64 * sizeof *tr->eval, err);
    if (!tr->term || !tr->ekey || !tr->eval) {
        gk_tok_trie_free(tr);
        return -1;
    }
    tr->n_nodes = 1; /* node 0 is the root */
    tr->term[0] = -1;
    return 0;
}

void gk_tok_trie_free(gk_tok_trie *tr) {
    free(tr->term);
    free(tr->ekey);
    free(tr->eval);
    tr->term = NULL;
    tr->ekey = NULL;
    tr->eval = NULL;
}

static inline int32_t edge_get(const gk_tok_trie *tr, int32_t node, uint8_t c) {
    if (node == 0) return tr->root[c];
    uint64_t key = (((uint64_t)node << 8) | c) + 1;
    for (uint32_t i = pair_slot(key, tr->emask);; i = (i + 1) & tr->emask) {
        if (tr->ekey[i] == key) return tr->eval[i];
        if (!tr->ekey[i]) return -1;
    }
}

static int edge_grow(gk_tok_trie *tr, gk_err *err) {
    uint32_t cap = (tr->emask + 1) * 2;
    uint64_t *k = gk_calloc(cap, sizeof *k, err);
    int32_t *v = gk_malloc((size_t)cap * sizeof *v, err);
    if (!k || !v) {
        free(k);
        free(v);
        return -1;
    }
    for (uint32_t i = 0; i <= tr->emask; i++) {
        if (!tr->ekey[i]) continue;
        uint32_t j = pair_slot(tr->ekey[i], cap - 1);
        while (k[j]) j = (j + 1) & (cap - 1);
        k[j] = tr->ekey[i];
        v[j] = tr->eval[i];
    }
    free(tr->ekey);
    free(tr->eval);
    tr->ekey = k;
    tr->eval = v;
    tr->emask = cap - 1;
    return 0;
}

static int32_t node_new(gk_tok_trie *tr, gk_err *err) {
    if (tr->n_nodes == tr->cap_nodes) {
        int32_t cap = tr->cap_nodes * 2;
        int32_t *nt = realloc(tr->term, (size_t)cap * sizeof *nt);
        if (!nt) return gk_fail(err, "out of memory (token trie)");
        tr->term = nt;
        tr->cap_nodes = cap;
    }
    tr->term[tr->n_nodes] = -1;
    return tr->n_nodes++;
}

int gk_tok_trie_add(gk_tok_trie *tr, const char *s, size_t n, int32_t id, gk_err *err) {
    if (n == 0) return 0; /* an empty token can never be matched */
    if (n > GK_TOK_MAX_LEN) return gk_fail(err, "token %d is too long for the trie", id);
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        int32_t child = edge_get(tr, node, c);
        if (child < 0) {
            child = node_new(tr, err);
            if (child < 0) return -1;
            if (node == 0) {
                tr->root[c] = child;
            } else {
                if ((tr->n_edges + 1) * 2 > tr->emask + 1 && edge_grow(tr, err) < 0) return -1;
                uint64_t key = (((uint64_t)node << 8) | c) + 1;
                uint32_t j = pair_slot(key, tr->emask);
                while (tr->ekey[j]) j = (j + 1) & tr->emask;
                tr->ekey[j] = key;
                tr->eval[j] = child;
                tr->n_edges++;
            }
        }
        node = child;
    }
    if (tr->term[node] < 0) tr->term[node] = id; /* the first token with these bytes wins */
    tr->first[(uint8_t)s[0]] = true;
    tr->n_entries++;
    return 0;
}

size_t gk_tok_trie_match(const gk_tok_trie *tr, const gk_tokenizer *t, const char *s, size_t n,
                         unsigned type_mask, int32_t *id) {
    size_t best = 0;
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        node = edge_get(tr, node, (uint8_t)s[i]);
        if (node < 0) break;
        int32_t tid = tr->term[node];
        if (tid >= 0 && (type_mask & (1u << t->tok[tid].type))) {
            best = i + 1;
            *id = tid;
        }
    }
    return best;
}

/* ------------------------------------------------------------------ utf8 --- */

int gk_utf8_valid_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0; /* continuation byte or overlong 2-byte lead */
    if (c < 0xE0) return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        uint32_t cp = ((c & 0x0F) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
        if (cp < 0x800 || (cp >= 0xD800 && cp < 0xE000)) return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        uint32_t cp = ((c & 0x07) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) |
                      (s[3] & 0x3Fu);
        if (cp < 0x10000 || cp > 0x10FFFF) return 0;
        return 4;
    }
    return 0;
}

int gk_utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* GPT-2 maps the 188 printable bytes to themselves and the other 68 to U+0100+
 * in byte order, so that every byte is a visible character. */
static uint16_t gpt2_byte_cp(uint8_t b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    uint16_t k = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) k++;
    return (uint16_t)(256 + k);
}

static uint16_t gpt2_cp_of[256];
static int16_t gpt2_byte_of[324];
static pthread_once_t gpt2_once = PTHREAD_ONCE_INIT;

static void gpt2_init(void) {
    for (int i = 0; i < 324; i++) gpt2_byte_of[i] = -1;
    for (int b = 0; b < 256; b++) {
        gpt2_cp_of[b] = gpt2_byte_cp((uint8_t)b);
        gpt2_byte_of[gpt2_cp_of[b]] = (int16_t)b;
    }
}

int gk_gpt2_encode(const void *raw, size_t len, char *out) {
    pthread_once(&gpt2_once, gpt2_init);
    const uint8_t *s = raw;
    int n = 0;
    for (size_t i = 0; i < len; i++) n += gk_utf8_put(gpt2_cp_of[s[i]], out + n);
    out[n] = 0;
    return n;
}

long gk_gpt2_decode(const char *s, size_t n, uint8_t *out) {
    pthread_once(&gpt2_once, gpt2_init);
    long m = 0;
    size_t i = 0;
    while (i < n) {
        const unsigned char *u = (const unsigned char *)s + i;
        int l = gk_utf8_valid_len(u, n - i);
        if (l == 0 || l > 2) return -1;
        uint32_t cp = l == 1 ? u[0] : (((uint32_t)u[0] & 0x1F) << 6) | (u[1] & 0x3F);
        if (cp >= 324 || gpt2_byte_of[cp] < 0) return -1;
        out[m++] = (uint8_t)gpt2_byte_of[cp];
        i += (size_t)l;
    }
    return m;
}

/* ------------------------------------------------------------ vocabulary --- */

int gk_tok_vec_push(gk_tok_vec *v, int32_t id, gk_err *err) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 256;
        int32_t *nv = realloc(v->v, cap * sizeof *nv);
        if (!nv) return gk_fail(err, "out of memory (token ids)");
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = id;
    return 0;
}

gk_tokenizer *gk_tok_new(gk_tokenizer_kind kind, gk_err *err) {
    gk_tokenizer *t = gk_calloc(1, sizeof *t, err);
    if (!t) return NULL;
    t->kind = kind;
    t->bos = t->eos = t->unk = t->pad = -1;
    t->add_dummy_prefix = true;
    t->escape_ws = true;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    if (gk_tok_trie_init(&t->special, err) < 0 || gk_tok_trie_init(&t->user, err) < 0) {
        gk_tokenizer_free(t);
        return NULL;
    }
    return t;
}

static int pool_reserve(char **pool, size_t *cap, size_t need, gk_err *err) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 4096;
    while (nc < need) nc *= 2;
    char *np = realloc(*pool, nc);
    if (!np) return gk_fail(err, "out of memory (token pool of %zu bytes)", nc);
    *pool = np;
    *cap = nc;
    return 0;
}

int gk_tok_push(gk_tokenizer *t, const void *raw, size_t len, const char *piece, int type,
                float score, int32_t rank, gk_err *err) {
    if (t->n_vocab == INT32_MAX - 1) return gk_fail(err, "too many tokens");
    if (len > GK_TOK_MAX_LEN)
        return gk_fail(err, "token %d is %zu bytes long (limit %d)", t->n_vocab, len,
                       GK_TOK_MAX_LEN);
    if (t->n_vocab == t->cap_tok) {
        int32_t cap = t->cap_tok ? t->cap_tok * 2 : 1024;
        gk_tok_info *nt = realloc(t->tok, (size_t)cap * sizeof *nt);
        if (!nt) return gk_fail(err, "out of memory (token table)");
        t->tok = nt;
        t->cap_tok = cap;
    }
    if (t->n_bytes + len > UINT32_MAX || t->n_pieces + 2 * len + 1 > UINT32_MAX)
        return gk_fail(err, "vocabulary too large (over 4 GiB of token text)");
    if (pool_reserve(&t->bytes, &t->cap_bytes, t->n_bytes + len, err) < 0) return -1;
    gk_tok_info *ti = &t->tok[t->n_vocab];
    ti->off = (uint32_t)t->n_bytes;
    ti->len = (uint32_t)len;
    if (len) memcpy(t->bytes + t->n_bytes, raw, len);
    t->n_bytes += len;

    size_t plen = piece ? strlen(piece) : 2 * len;
    if (pool_reserve(&t->pieces, &t->cap_pieces, t->n_pieces + plen + 1, err) < 0) return -1;
    ti->piece = (uint32_t)t->n_pieces;
    char *dst = t->pieces + t->n_pieces;
    if (piece) {
        memcpy(dst, piece, plen + 1);
    } else if (t->kind == GK_TOKENIZER_BPE && type != GK_TOK_CONTROL && type != GK_TOK_USER) {
        plen = (size_t)gk_gpt2_encode(raw, len, dst);
    } else {
        if (len) memcpy(dst, raw, len);
        dst[len] = 0;
        plen = len;
    }
    t->n_pieces += plen + 1;
    ti->type = (uint8_t)type;
    ti->score = score;
    ti->rank = rank;
    t->n_vocab++;
    return 0;
}

static int add_stop(gk_tokenizer *t, int32_t id) {
    if (id < 0) return 0;
    for (int i = 0; i < t->n_stops; i++)
        if (t->stops[i] == id) return 0;
    if (t->n_stops < (int)(sizeof t->stops / sizeof t->stops[0])) t->stops[t->n_stops++] = id;
    return 0;
}

/* Finds a token whose bytes are s among the given types; -1 if none. */
static int32_t find_typed(const gk_tokenizer *t, const char *s, unsigned type_mask) {
    int32_t id = gk_tok_find(t, s, strlen(s));
    return (id >= 0 && (type_mask & (1u << t->tok[id].type))) ? id : -1;
}

void gk_tok_detect_specials(gk_tokenizer *t) {
    unsigned sp = (1u << GK_TOK_CONTROL) | (1u << GK_TOK_USER);
    int32_t sep = find_typed(t, "<|separator|>", sp);
    int32_t eos = find_typed(t, "<|eos|>", sp);
    if (t->eos < 0) t->eos = eos >= 0 ? eos : find_typed(t, "<|endoftext|>", sp);
    add_stop(t, t->eos);
    /* Grok-2's assistant turns end with <|separator|> (spec 7.2), so a chat
     * stops on it as well as on <|eos|>. Grok-1 (SentencePiece) is a base
     * model: its <|separator|> is an ordinary user-defined symbol. */
    if (t->kind == GK_TOKENIZER_BPE && sep >= 0) {
        add_stop(t, sep);
        add_stop(t, eos);
        t->chat = GK_TOK_CHAT_GROK2;
    }
}

int gk_tok_finish(gk_tokenizer *t, bool dup_ok, gk_err *err) {
    if (t->n_vocab == 0) return gk_fail(err, "the vocabulary is empty");
    /* The tag array keeps probing cheap, so the map may be fuller than the
     * others: a smaller table stays in cache better. */
    uint32_t cap = 16;
    while (cap < (uint64_t)t->n_vocab + t->n_vocab / 3) cap <<= 1;
    t->map.slot = gk_calloc(cap, sizeof *t->map.slot, err);
    t->map.tag = gk_calloc(cap, 1, err);
    if (!t->map.slot || !t->map.tag) return -1;
    t->map.mask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const gk_tok_info *ti = &t->tok[id];
        if (ti->len == 0) {
            /* Only the UNUSED entries that fill gaps in a rank file may be empty. */
            if (ti->type != GK_TOK_UNUSED) return gk_fail(err, "token %d is empty", id);
            continue;
        }
        int32_t old = map_insert(t, id, false);
        if (old >= 0) {
            /* A special token may spell a regular one: lookups find the regular
             * one. Two regular tokens with the same bytes are an error unless
             * the caller tolerates it (GGUF files from elsewhere). */
            bool old_plain = t->tok[old].type != GK_TOK_CONTROL && t->tok[old].type != GK_TOK_UNKNOWN;
            bool new_plain = ti->type != GK_TOK_CONTROL && ti->type != GK_TOK_UNKNOWN;
            if (old_plain && new_plain && !dup_ok)
                return gk_fail(err, "tokens %d and %d are the same ('%s')", old, id,
                               t->pieces + ti->piece);
            if (!old_plain && new_plain) map_insert(t, id, true);
        }
        if (ti->len == 1 && t->kind == GK_TOKENIZER_BPE && t->byte_id[(uint8_t)t->bytes[ti->off]] < 0 &&
            (ti->type == GK_TOK_NORMAL || ti->type == GK_TOK_BYTE))
            t->byte_id[(uint8_t)t->bytes[ti->off]] = id;
        if (ti->type == GK_TOK_CONTROL || (ti->type == GK_TOK_USER && t->kind == GK_TOKENIZER_BPE)) {
            if (gk_tok_trie_add(&t->special, t->bytes + ti->off, ti->len, id, err) < 0) return -1;
            if (ti->type == GK_TOK_USER) t->has_user_special = true;
        }
        if (ti->type == GK_TOK_UNKNOWN && t->unk < 0) t->unk = id;
    }
    for (int i = 0; i < 4; i++) {
        int32_t *p = i == 0 ? &t->bos : i == 1 ? &t->eos : i == 2 ? &t->unk : &t->pad;
        if (*p >= t->n_vocab) return gk_fail(err, "special token id %d is out of range", *p);
    }
    gk_tok_detect_specials(t);
    return 0;
}
