/*
 * tok_internal.h - the tokenizer's shared data structures (private to
 * src/tokenizer/).
 *
 * One struct serves both algorithms. Every token has its raw bytes (what it
 * stands for in text: for SentencePiece the piece with U+2581 for spaces, for
 * the byte-level BPE the decoded bytes), a display piece (NUL-terminated, as a
 * vocabulary file would show it), a type (GGUF's token_type numbering, which is
 * also SentencePiece's), a score (SentencePiece) and a merge rank (BPE).
 *
 *   tok_vocab.c  the vocabulary: pools, the bytes->id hash map, the trie used
 *                for special and user-defined tokens, UTF-8 and GPT-2 byte helpers
 *   tok_spm.c    SentencePiece: tokenizer.model protobuf, normalizer, BPE merges
 *   tok_bpe.c    rank BPE: tokenizer.tok.json, .tiktoken, PCRE2 pre-tokenizer
 *   tok_gguf.c   tokenizer.ggml.* keys: reading and writing
 *   tokenizer.c  the public API (grok.h), special-token splitting, decoding, chat
 */
#ifndef GK_TOK_INTERNAL_H
#define GK_TOK_INTERNAL_H

#include "base/base.h"
#include "tokenizer/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* Token types: GGUF tokenizer.ggml.token_type and SentencePiece's Type enum. */
enum {
    GK_TOK_NORMAL = 1,
    GK_TOK_UNKNOWN = 2,
    GK_TOK_CONTROL = 3,
    GK_TOK_USER = 4,
    GK_TOK_UNUSED = 5,
    GK_TOK_BYTE = 6
};

#define GK_TOK_NO_RANK INT32_MAX
/* Longest token accepted from a file (SentencePiece's own limit is 8000). */
#define GK_TOK_MAX_LEN 65536

typedef struct gk_tok_info {
    uint32_t off, len; /* raw bytes: t->bytes[off .. off+len) */
    uint32_t piece;    /* display piece: t->pieces + piece, NUL-terminated */
    int32_t rank;      /* BPE merge rank, GK_TOK_NO_RANK if never a merge result */
    float score;       /* SentencePiece score */
    uint8_t type;
} gk_tok_info;

/* Open-addressing map from byte strings to token ids. A slot holds the upper
 * 32 bits of the hash, id + 1 (0 = empty) and the token's place in the byte
 * pool, so that a probe touches one cache line before the final memcmp. */
typedef struct gk_tok_slot {
    uint32_t hhi, id1, off, len;
} gk_tok_slot;
typedef struct gk_tok_map {
    gk_tok_slot *slot;
    uint8_t *tag; /* per slot: 8 hash bits, never 0; 0 = empty. Probes scan these
                   * (a table 16 times smaller) and read a slot only on a match. */
    uint32_t mask;
} gk_tok_map;

/* Map from a pair of ids to (merge rank, merged id), for GGUF merges. */
typedef struct gk_tok_pairs {
    uint64_t *key; /* ((left+1) << 32) | (right+1); 0 = empty */
    int32_t *rank, *merged;
    uint32_t mask;
} gk_tok_pairs;

/* A byte trie over a set of tokens, for longest-match scanning of text (special
 * tokens, SentencePiece user-defined symbols). Edges live in a hash table keyed
 * by (node, byte); the root's 256 children are a plain array. */
typedef struct gk_tok_trie {
    int32_t root[256]; /* child node of the root per byte, or -1 */
    int32_t *term;     /* per node: token id ending here, or -1 */
    int32_t n_nodes, cap_nodes;
    uint64_t *ekey; /* ((node << 8) | byte) + 1; 0 = empty */
    int32_t *eval;
    uint32_t emask, n_edges;
    bool first[256]; /* bytes that start some entry */
    int32_t n_entries;
} gk_tok_trie;

typedef enum gk_bpe_mode {
    GK_BPE_RANKS = 0, /* tiktoken: a pair merges if its bytes are a token; lowest rank first */
    GK_BPE_MERGES = 1 /* GGUF/HF: a pair merges if it is listed in the merges; lowest index first */
} gk_bpe_mode;

typedef enum gk_chat_kind_internal { GK_TOK_CHAT_NONE = 0, GK_TOK_CHAT_GROK2 = 1 } gk_chat_kind_internal;

struct gk_tokenizer {
    gk_tokenizer_kind kind;
    int32_t n_vocab;
    gk_tok_info *tok;
    char *bytes; /* raw token bytes, concatenated */
    size_t n_bytes, cap_bytes;
    char *pieces; /* display pieces, each NUL-terminated */
    size_t n_pieces, cap_pieces;
    int32_t cap_tok;
    gk_tok_map map; /* raw bytes -> id (first id wins for duplicates) */

    int32_t bos, eos, unk, pad;
    int32_t stops[8];
    int n_stops;
    bool add_bos; /* what the file says; gk_tokenize never adds one */

    /* Tokens that are split out of text before encoding: CONTROL ones when the
     * caller allows special tokens; USER ones always (BPE only; SentencePiece
     * handles its user-defined symbols inside its normalizer). */
    gk_tok_trie special;
    bool has_user_special;

    /* ---- rank BPE ---- */
    gk_bpe_mode mode;
    char pre[32];           /* pre-tokenizer name ("grok-2", "gpt-2", ...) */
    char *pattern;          /* its regex */
    pcre2_code *re;         /* compiled with UTF, UCP, MATCH_INVALID_UTF; JIT when available */
    bool re_jit;
    bool whole_word;        /* a piece that is a token is emitted whole (tiktoken) */
    int32_t byte_id[256];   /* token of each single byte, or -1 */
    int32_t *bp_rank, *bp_id; /* merging two single bytes (a << 8 | b): rank and token */
    gk_tok_pairs pairs;     /* GK_BPE_MERGES */
    int32_t n_merges;

    /* ---- SentencePiece ---- */
    bool add_dummy_prefix, remove_extra_ws, escape_ws, byte_fallback;
    bool spm_words; /* merges never cross a word start: encode word by word */
    gk_tok_trie user; /* USER_DEFINED pieces */
    uint8_t *charsmap; /* precompiled_charsmap copy (may be NULL) */
    size_t charsmap_len;
    const uint32_t *xcda; /* into charsmap: the double-array trie */
    uint32_t xcda_n;
    const char *xnorm; /* into charsmap: NUL-terminated replacement strings */
    uint32_t xnorm_n;
    char *unk_surface;

    gk_chat_kind_internal chat;
};

/* ------------------------------------------------------------ tok_vocab.c */

gk_tokenizer *gk_tok_new(gk_tokenizer_kind kind, gk_err *err);
/* Appends a token (ids are assigned in order). piece may be NULL: the display
 * piece is then the raw bytes (for BPE, in GPT-2's byte-to-unicode form unless
 * the token is CONTROL or USER). */
int gk_tok_push(gk_tokenizer *t, const void *raw, size_t len, const char *piece, int type,
                float score, int32_t rank, gk_err *err);
/* Builds the bytes->id map, the special-token trie, byte_id, stops; checks the
 * vocabulary. Call once after the last push. dup_ok: duplicates keep the first
 * id for lookups instead of being an error. */
int gk_tok_finish(gk_tokenizer *t, bool dup_ok, gk_err *err);

static inline const char *gk_tok_raw(const gk_tokenizer *t, int32_t id) {
    return t->bytes + t->tok[id].off;
}
int32_t gk_tok_find(const gk_tokenizer *t, const void *s, size_t n);
/* Fills bp_rank/bp_id (BPE, once the merges or ranks are known). */
int gk_tok_bpe_byte_pairs(gk_tokenizer *t, gk_err *err);
uint64_t gk_tok_hash(const void *p, size_t n);

int gk_tok_pairs_init(gk_tok_pairs *p, uint32_t n, gk_err *err);
/* Returns false if the pair is already present (the first one stays). */
bool gk_tok_pairs_add(gk_tok_pairs *p, int32_t l, int32_t r, int32_t rank, int32_t merged);
bool gk_tok_pairs_find(const gk_tok_pairs *p, int32_t l, int32_t r, int32_t *rank,
                       int32_t *merged);
void gk_tok_pairs_free(gk_tok_pairs *p);

int gk_tok_trie_init(gk_tok_trie *tr, gk_err *err);
int gk_tok_trie_add(gk_tok_trie *tr, const char *s, size_t n, int32_t id, gk_err *err);
/* Longest entry that prefixes s[0..n) and whose token type is in type_mask
 * (bit per type); returns its length (0 = none) and the id in *id. */
size_t gk_tok_trie_match(const gk_tok_trie *tr, const gk_tokenizer *t, const char *s, size_t n,
                         unsigned type_mask, int32_t *id);
void gk_tok_trie_free(gk_tok_trie *tr);

/* Length of the valid UTF-8 character at s (n bytes available; strict: no
 * overlongs, surrogates or code points past U+10FFFF), or 0 if invalid. */
int gk_utf8_valid_len(const unsigned char *s, size_t n);
/* Length that the lead byte announces (1 for ASCII and stray bytes, 2, 3, 4). */
static inline int gk_utf8_lead_len(unsigned char c) {
    return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[c >> 4];
}
/* Appends the UTF-8 encoding of cp to out; returns its length. */
int gk_utf8_put(uint32_t cp, char *out);

/* GPT-2's byte-to-unicode mapping (what GGUF "gpt2" vocabularies store). */
int gk_gpt2_encode(const void *raw, size_t len, char *out); /* out needs 2*len+1 */
/* Decodes a GPT-2 piece to bytes; -1 if a character is not in the mapping. */
long gk_gpt2_decode(const char *s, size_t n, uint8_t *out);

/* A growable id vector. */
typedef struct gk_tok_vec {
    int32_t *v;
    size_t n, cap;
} gk_tok_vec;
int gk_tok_vec_push(gk_tok_vec *v, int32_t id, gk_err *err);

/* -------------------------------------------------------------- tok_spm.c */

gk_tokenizer *gk_tok_spm_load_proto(const uint8_t *data, size_t n, gk_err *err);
/* Sets up SentencePiece state after the pieces were pushed and finished. */
int gk_tok_spm_setup(gk_tokenizer *t, gk_err *err);
/* Encodes raw text the way SentencePiece does; appends to out. */
int gk_tok_spm_encode(const gk_tokenizer *t, const char *text, size_t len, gk_tok_vec *out,
                      gk_err *err);

/* -------------------------------------------------------------- tok_bpe.c */

gk_tokenizer *gk_tok_bpe_load_tokjson(const char *data, size_t n, gk_err *err);
gk_tokenizer *gk_tok_bpe_load_tiktoken(const char *data, size_t n, const char *name,
                                       gk_err *err);
/* Compiles the regex of a named pre-tokenizer ("gpt-2", "grok-2", "cl100k",
 * "o200k", ...) or of a given pattern (name NULL). */
int gk_tok_bpe_set_pre(gk_tokenizer *t, const char *name, const char *pattern, gk_err *err);
/* The regex of a known pre-tokenizer name, or NULL. */
const char *gk_tok_bpe_pattern(const char *name);
/* The two tokens whose merge makes token id under rank order (1), or 0 when
 * the merges below its rank do not end in exactly two parts. */
int gk_tok_bpe_last_merge(const gk_tokenizer *t, int32_t id, int32_t *left, int32_t *right);
/* The pre-tokenizer's pieces of text: writes up to cap end offsets and returns
 * the count (for tests). */
int gk_tok_bpe_pieces(const gk_tokenizer *t, const char *text, size_t len, size_t *ends, int cap,
                      gk_err *err);
int gk_tok_bpe_encode(const gk_tokenizer *t, const char *text, size_t len, gk_tok_vec *out,
                      gk_err *err);

/* Assigns t->chat, stops, eos from the special tokens present. */
void gk_tok_detect_specials(gk_tokenizer *t);

#endif
