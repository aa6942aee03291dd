/*
 * tok_gguf.c - the tokenizer.ggml.* keys of a GGUF: building a tokenizer from
 * them, and writing a tokenizer into them (llama.cpp-compatible).
 *
 *   tokenizer.ggml.model       "llama" (SentencePiece) or "gpt2" (byte-level BPE)
 *   tokenizer.ggml.pre         the BPE pre-tokenizer ("grok-2", "gpt-2", ...)
 *   tokenizer.ggml.tokens      pieces; for "gpt2" in GPT-2's byte-to-unicode form
 *   tokenizer.ggml.scores      f32 (SentencePiece merge priority)
 *   tokenizer.ggml.token_type  i32: 1 normal 2 unknown 3 control 4 user 5 unused 6 byte
 *   tokenizer.ggml.merges      "left right", lowest line merges first ("gpt2")
 *   tokenizer.ggml.{bos,eos,unknown,padding}_token_id, add_bos_token,
 *   add_space_prefix, remove_extra_whitespaces, precompiled_charsmap
 *
 * Our own keys (llama.cpp ignores them):
 *   tokenizer.gk.rank_by_id    bool: the BPE merges by token rank = id, the way
 *                              tiktoken does (Grok-2's tokenizer.tok.json); the
 *                              merges are still written for llama.cpp
 *   tokenizer.gk.pattern       the regex when tokenizer.ggml.pre is "gk-custom"
 *   tokenizer.gk.unk_surface   how SentencePiece shows the unknown piece, when it
 *                              is not the default " \u2047 " (Grok-1: "[UNK]")
 */
#include "tokenizer/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int get_id(const gk_gguf *g, const char *key, int32_t n_vocab, int32_t *out, gk_err *err) {
    uint32_t v;
    int r = gk_gguf_get_u32(g, key, &v, err);
    if (r < 0) return -1;
    if (r == 0) return 0;
    if (v >= (uint32_t)n_vocab) {
        /* llama.cpp writes ids of tokens that do not exist in some files; treat
         * them as absent rather than refusing the model. */
        return 0;
    }
    *out = (int32_t)v;
    return 0;
}

static int load_common(gk_tokenizer *t, const gk_gguf *g, const gk_gguf_array *tokens,
                       gk_gguf_array *types, gk_gguf_array *scores, gk_err *err) {
    int r = gk_gguf_get_arr(g, "tokenizer.ggml.token_type", GK_GGUF_INT32, types, err);
    if (r < 0) return -1;
    if (r == 0) types->n = 0;
    else if (types->n != tokens->n)
        return gk_fail(err, "tokenizer.ggml.token_type has %llu entries for %llu tokens",
                       (unsigned long long)types->n, (unsigned long long)tokens->n);
    r = gk_gguf_get_arr(g, "tokenizer.ggml.scores", GK_GGUF_FLOAT32, scores, err);
    if (r < 0) return -1;
    if (r == 0) scores->n = 0;
    else if (scores->n != tokens->n)
        return gk_fail(err, "tokenizer.ggml.scores has %llu entries for %llu tokens",
                       (unsigned long long)scores->n, (unsigned long long)tokens->n);
    for (uint64_t i = 0; i < types->n; i++) {
        int32_t ty = gk_gguf_arr_i32(types, i);
        if (ty < GK_TOK_NORMAL || ty > GK_TOK_BYTE)
            return gk_fail(err, "token %llu has unknown token_type %d", (unsigned long long)i, ty);
    }
    (void)t;
    return 0;
}

static int load_spm(gk_tokenizer *t, const gk_gguf *g, const gk_gguf_array *tokens, gk_err *err) {
    gk_gguf_array types, scores;
    if (load_common(t, g, tokens, &types, &scores, err) < 0) return -1;
    int n_bytes = 0;
    for (uint64_t i = 0; i < tokens->n; i++) {
        const gk_str *s = &tokens->strs[i];
        int type = types.n ? gk_gguf_arr_i32(&types, i) : GK_TOK_NORMAL;
        if (s->len == 0) return gk_fail(err, "token %llu is empty", (unsigned long long)i);
        if (memchr(s->ptr, 0, s->len))
            return gk_fail(err, "token %llu contains a NUL byte", (unsigned long long)i);
        if (s->len > GK_TOK_MAX_LEN)
            return gk_fail(err, "token %llu is too long", (unsigned long long)i);
        char *piece = malloc(s->len + 1);
        if (!piece) return gk_fail(err, "out of memory");
        memcpy(piece, s->ptr, s->len);
        piece[s->len] = 0;
        float score = scores.n ? gk_gguf_arr_f32(&scores, i) : 0.0f;
        int rc = gk_tok_push(t, s->ptr, s->len, piece, type, score, GK_TOK_NO_RANK, err);
        free(piece);
        if (rc < 0) return -1;
        if (type == GK_TOK_BYTE) n_bytes++;
    }
    bool b;
    if (gk_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b, err) < 0) return -1;
    else t->add_dummy_prefix = gk_gguf_find(g, "tokenizer.ggml.add_space_prefix") ? b : true;
    t->remove_extra_ws = false;
    if (gk_gguf_get_bool(g, "tokenizer.ggml.remove_extra_whitespaces", &b, err) < 0) return -1;
    if (gk_gguf_find(g, "tokenizer.ggml.remove_extra_whitespaces")) t->remove_extra_ws = b;
    gk_gguf_array cm;
    int r = gk_gguf_get_arr(g, "tokenizer.ggml.precompiled_charsmap", -1, &cm, err);
    if (r < 0) return -1;
    if (r > 0 && cm.n) {
        if (cm.type != GK_GGUF_UINT8 && cm.type != GK_GGUF_INT8)
            return gk_fail(err, "tokenizer.ggml.precompiled_charsmap is not a byte array");
        t->charsmap = gk_malloc(cm.n, err);
        if (!t->charsmap) return -1;
        memcpy(t->charsmap, cm.data, cm.n);
        t->charsmap_len = cm.n;
    }
    t->byte_fallback = n_bytes == 256;
    gk_str us = {" \xe2\x81\x87 ", 5};
    if (gk_gguf_get_str(g, "tokenizer.gk.unk_surface", &us, err) < 0) return -1;
    t->unk_surface = malloc(us.len + 1);
    if (!t->unk_surface) return gk_fail(err, "out of memory");
    memcpy(t->unk_surface, us.ptr, us.len);
    t->unk_surface[us.len] = 0;
    return 0;
}

static int load_bpe(gk_tokenizer *t, const gk_gguf *g, const gk_gguf_array *tokens, gk_err *err) {
    gk_gguf_array types, scores;
    if (load_common(t, g, tokens, &types, &scores, err) < 0) return -1;
    uint8_t *raw = NULL;
    size_t raw_cap = 0;
    for (uint64_t i = 0; i < tokens->n; i++) {
        const gk_str *s = &tokens->strs[i];
        int type = types.n ? gk_gguf_arr_i32(&types, i) : GK_TOK_NORMAL;
        if (s->len > GK_TOK_MAX_LEN)
            return gk_fail(err, "token %llu is too long", (unsigned long long)i);
        if (s->len + 1 > raw_cap) {
            raw_cap = 2 * s->len + 64;
            uint8_t *nr = realloc(raw, raw_cap);
            if (!nr) {
                free(raw);
                return gk_fail(err, "out of memory");
            }
            raw = nr;
        }
        long n = -1;
        if (type != GK_TOK_CONTROL && type != GK_TOK_USER) n = gk_gpt2_decode(s->ptr, s->len, raw);
        /* Control and user-defined tokens are stored as plain text; so is any
         * token that is not in byte-to-unicode form. */
        if (n < 0) {
            memcpy(raw, s->ptr, s->len);
            n = (long)s->len;
        }
        if (n == 0 && type != GK_TOK_UNUSED) {
            free(raw);
            return gk_fail(err, "token %llu is empty", (unsigned long long)i);
        }
        char *piece = malloc(s->len + 1);
        if (!piece) {
            free(raw);
            return gk_fail(err, "out of memory");
        }
        memcpy(piece, s->ptr, s->len);
        piece[s->len] = 0;
        int rc = gk_tok_push(t, raw, (size_t)n, piece, type, 0, GK_TOK_NO_RANK, err);
        free(piece);
        if (rc < 0) {
            free(raw);
            return -1;
        }
    }
    free(raw);
    return 0;
}

/* Reads tokenizer.ggml.merges into the pair map (after gk_tok_finish). */
static int load_merges(gk_tokenizer *t, const gk_gguf *g, gk_err *err) {
    gk_gguf_array m;
    int r = gk_gguf_get_arr(g, "tokenizer.ggml.merges", GK_GGUF_STRING, &m, err);
    if (r < 0) return -1;
    if (r == 0 || m.n == 0) return gk_fail(err, "a gpt2 vocabulary needs tokenizer.ggml.merges");
    if (m.n >= INT32_MAX) return gk_fail(err, "too many merges");
    if (gk_tok_pairs_init(&t->pairs, (uint32_t)m.n, err) < 0) return -1;
    uint8_t *buf = NULL;
    size_t cap = 0;
    int rc = -1;
    for (uint64_t i = 0; i < m.n; i++) {
        const gk_str *s = &m.strs[i];
        const char *sp = s->len ? memchr(s->ptr + 1, ' ', s->len - 1) : NULL;
        if (!sp || sp == s->ptr + s->len - 1) {
            gk_fail(err, "merge %llu is not 'left right'", (unsigned long long)i);
            goto done;
        }
        if (s->len * 2 + 2 > cap) {
            cap = s->len * 2 + 64;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                gk_fail(err, "out of memory");
                goto done;
            }
            buf = nb;
        }
        size_t ln = (size_t)(sp - s->ptr), rn = s->len - ln - 1;
        long a = gk_gpt2_decode(s->ptr, ln, buf);
        long b = a >= 0 ? gk_gpt2_decode(sp + 1, rn, buf + a) : -1;
        if (a <= 0 || b <= 0) continue; /* not in byte form: no byte-level pair to merge */
        int32_t l = gk_tok_find(t, buf, (size_t)a), rr = gk_tok_find(t, buf + a, (size_t)b);
        int32_t mg = gk_tok_find(t, buf, (size_t)(a + b));
        /* llama.cpp would merge and then fall back to bytes when the result is
         * not a token; no real vocabulary has such a merge, so it is skipped. */
        if (l < 0 || rr < 0 || mg < 0) continue;
        if (gk_tok_pairs_add(&t->pairs, l, rr, (int32_t)i, mg)) t->n_merges++;
        if (t->tok[mg].rank == GK_TOK_NO_RANK) t->tok[mg].rank = (int32_t)i;
    }
    rc = 0;
done:
    free(buf);
    return rc;
}

gk_tokenizer *gk_tokenizer_from_gguf(const gk_gguf *g, gk_err *err) {
    gk_str model;
    if (err) err->msg[0] = 0;
    int r = gk_gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (r < 0) return NULL;
    if (r == 0) {
        if (err) err->msg[0] = 0;
        return NULL;
    }
    gk_tokenizer_kind kind;
    if ((model.len == 4 && memcmp(model.ptr, "none", 4) == 0) ||
        (model.len == 8 && memcmp(model.ptr, "no_vocab", 8) == 0)) {
        if (err) err->msg[0] = 0; /* llama.cpp's way of saying "no tokenizer" */
        return NULL;
    }
    if (model.len == 5 && memcmp(model.ptr, "llama", 5) == 0) kind = GK_TOKENIZER_SPM;
    else if (model.len == 4 && memcmp(model.ptr, "gpt2", 4) == 0) kind = GK_TOKENIZER_BPE;
    else
        return gk_failp(err, "tokenizer.ggml.model '%.*s' is not supported (llama, gpt2)",
                        (int)(model.len > 64 ? 64 : model.len), model.ptr);
    gk_gguf_array tokens;
    r = gk_gguf_get_arr(g, "tokenizer.ggml.tokens", GK_GGUF_STRING, &tokens, err);
    if (r < 0) return NULL;
    if (r == 0 || tokens.n == 0) return gk_failp(err, "no tokenizer.ggml.tokens");
    if (tokens.n >= INT32_MAX) return gk_failp(err, "too many tokens");
    gk_tokenizer *t = gk_tok_new(kind, err);
    if (!t) return NULL;
    int32_t n = (int32_t)tokens.n;
    if (get_id(g, "tokenizer.ggml.bos_token_id", n, &t->bos, err) < 0 ||
        get_id(g, "tokenizer.ggml.eos_token_id", n, &t->eos, err) < 0 ||
        get_id(g, "tokenizer.ggml.unknown_token_id", n, &t->unk, err) < 0 ||
        get_id(g, "tokenizer.ggml.padding_token_id", n, &t->pad, err) < 0)
        goto fail;
    bool b;
    if (gk_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, err) < 0) goto fail;
    t->add_bos = gk_gguf_find(g, "tokenizer.ggml.add_bos_token") ? b : kind == GK_TOKENIZER_SPM;
    if (kind == GK_TOKENIZER_SPM) {
        if (load_spm(t, g, &tokens, err) < 0) goto fail;
        if (gk_tok_finish(t, true, err) < 0 || gk_tok_spm_setup(t, err) < 0) goto fail;
        return t;
    }
    if (load_bpe(t, g, &tokens, err) < 0) goto fail;
    gk_str pre = {"gpt-2", 5};
    if (gk_gguf_get_str(g, "tokenizer.ggml.pre", &pre, err) < 0) goto fail;
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(pre.len > 63 ? 63 : pre.len), pre.ptr);
    if (strcmp(name, "default") == 0) snprintf(name, sizeof name, "gpt-2");
    if (strcmp(name, "gk-custom") == 0) {
        gk_str pat;
        r = gk_gguf_get_str(g, "tokenizer.gk.pattern", &pat, err);
        if (r <= 0) {
            if (r == 0) gk_fail(err, "tokenizer.ggml.pre is gk-custom but tokenizer.gk.pattern is missing");
            goto fail;
        }
        char *p = malloc(pat.len + 1);
        if (!p) goto fail;
        memcpy(p, pat.ptr, pat.len);
        p[pat.len] = 0;
        r = gk_tok_bpe_set_pre(t, NULL, p, err);
        free(p);
        if (r < 0) goto fail;
    } else if (gk_tok_bpe_set_pre(t, name, NULL, err) < 0) {
        goto fail;
    }
    if (gk_tok_finish(t, true, err) < 0) goto fail;
    bool by_id = false;
    if (gk_gguf_get_bool(g, "tokenizer.gk.rank_by_id", &by_id, err) < 0) goto fail;
    if (by_id) {
        t->mode = GK_BPE_RANKS;
        t->whole_word = true;
        for (int32_t id = 0; id < t->n_vocab; id++)
            if (t->tok[id].type == GK_TOK_NORMAL) t->tok[id].rank = id;
    } else {
        t->mode = GK_BPE_MERGES;
        /* tiktoken-derived vocabularies emit a piece that is a token whole
         * (llama.cpp's ignore_merges for llama-bpe); GPT-2 does not. */
        t->whole_word = strcmp(t->pre, "gpt-2") != 0;
        if (load_merges(t, g, err) < 0) goto fail;
    }
    if (gk_tok_bpe_byte_pairs(t, err) < 0) goto fail;
    return t;
fail:
    gk_tokenizer_free(t);
    return NULL;
}

/* ---------------------------------------------------------------- writer --- */

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Appends merge n (rank; left and right token ids), growing both arrays. */
static int push_merge(int64_t **order, int32_t **lr, size_t *n, size_t *cap, int64_t rank,
                      int32_t l, int32_t r) {
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 1024;
        int64_t *no = realloc(*order, c * sizeof *no);
        if (!no) return -1;
        *order = no;
        int32_t *nlr = realloc(*lr, c * 2 * sizeof *nlr);
        if (!nlr) return -1;
        *lr = nlr;
        *cap = c;
    }
    (*lr)[2 * *n] = l;
    (*lr)[2 * *n + 1] = r;
    (*order)[*n] = (rank << 32) | (int64_t)*n;
    (*n)++;
    return 0;
}

/* The merges, as "left right" pieces in rank order. For a rank BPE each token
 * of two or more bytes is split where the merges below its rank leave two
 * parts; tokens that cannot be reached that way get no merge line. */
static int build_merges(const gk_tokenizer *t, char ***out, uint64_t *n_out, gk_err *err) {
    int64_t *order = NULL; /* (rank << 32) | packed index */
    int32_t *lr = NULL;    /* left, right per entry */
    size_t n = 0, cap = 0;
    int rc = -1;
    char **lines = NULL;
    uint64_t nl = 0;
    if (t->mode == GK_BPE_MERGES) {
        for (uint32_t i = 0; i <= t->pairs.mask; i++) {
            if (!t->pairs.key[i]) continue;
            if (push_merge(&order, &lr, &n, &cap, t->pairs.rank[i],
                           (int32_t)(t->pairs.key[i] >> 32) - 1,
                           (int32_t)(uint32_t)t->pairs.key[i] - 1) < 0)
                goto oom;
        }
    } else {
        for (int32_t id = 0; id < t->n_vocab; id++) {
            const gk_tok_info *ti = &t->tok[id];
            if (ti->type != GK_TOK_NORMAL || ti->len < 2 || ti->rank == GK_TOK_NO_RANK) continue;
            int32_t l, r;
            if (gk_tok_bpe_last_merge(t, id, &l, &r) <= 0) continue;
            if (push_merge(&order, &lr, &n, &cap, ti->rank, l, r) < 0) goto oom;
        }
    }
    if (n) qsort(order, n, sizeof *order, cmp_i64); /* order is NULL when there are no merges */
    lines = calloc(n ? n : 1, sizeof *lines);
    if (!lines) goto oom;
    for (size_t i = 0; i < n; i++) {
        size_t k = (size_t)(order[i] & 0xffffffff);
        const char *a = gk_token_piece(t, lr[2 * k]), *b = gk_token_piece(t, lr[2 * k + 1]);
        size_t la = strlen(a), lb = strlen(b);
        lines[nl] = malloc(la + lb + 2);
        if (!lines[nl]) goto oom;
        memcpy(lines[nl], a, la);
        lines[nl][la] = ' ';
        memcpy(lines[nl] + la + 1, b, lb + 1);
        nl++;
    }
    *out = lines;
    *n_out = nl;
    lines = NULL;
    rc = 0;
    goto done;
oom:
    gk_fail(err, "out of memory (merges)");
done:
    if (lines) {
        for (uint64_t i = 0; i < nl; i++) free(lines[i]);
        free(lines);
    }
    free(order);
    free(lr);
    return rc;
}

static const char GROK2_JINJA[] =
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ 'Human: ' + message['content'] | trim + "
    "'<|separator|>\n\n' }}"
    "{% elif message['role'] == 'system' %}{{ 'System: ' + message['content'] | trim + "
    "'<|separator|>\n\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + "
    "'<|separator|>\n\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

int gk_tokenizer_to_gguf(const gk_tokenizer *t, gk_gguf_writer *w, gk_err *err) {
    int32_t n = t->n_vocab;
    const char **toks = malloc((size_t)n * sizeof *toks);
    int32_t *types = malloc((size_t)n * sizeof *types);
    float *scores = malloc((size_t)n * sizeof *scores);
    char **merges = NULL;
    uint64_t n_merges = 0;
    int rc = -1;
    if (!toks || !types || !scores) {
        gk_fail(err, "out of memory");
        goto done;
    }
    for (int32_t i = 0; i < n; i++) {
        toks[i] = gk_token_piece(t, i);
        types[i] = t->tok[i].type;
        scores[i] = t->tok[i].score;
    }
    int bad = 0;
    bool spm = t->kind == GK_TOKENIZER_SPM;
    bad |= gk_gguf_set_str(w, "tokenizer.ggml.model", spm ? "llama" : "gpt2");
    if (spm) {
        bad |= gk_gguf_set_str(w, "tokenizer.ggml.pre", "default");
    } else if (strcmp(t->pre, "custom") == 0) {
        bad |= gk_gguf_set_str(w, "tokenizer.ggml.pre", "gk-custom");
        bad |= gk_gguf_set_str(w, "tokenizer.gk.pattern", t->pattern);
    } else {
        bad |= gk_gguf_set_str(w, "tokenizer.ggml.pre", t->pre);
    }
    bad |= gk_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)n);
    bad |= gk_gguf_set_arr(w, "tokenizer.ggml.token_type", GK_GGUF_INT32, types, (uint64_t)n);
    if (spm) {
        bad |= gk_gguf_set_arr(w, "tokenizer.ggml.scores", GK_GGUF_FLOAT32, scores, (uint64_t)n);
        bad |= gk_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", t->add_dummy_prefix);
        bad |= gk_gguf_set_bool(w, "tokenizer.ggml.remove_extra_whitespaces", t->remove_extra_ws);
        if (strcmp(t->unk_surface, " \xe2\x81\x87 ") != 0)
            bad |= gk_gguf_set_str(w, "tokenizer.gk.unk_surface", t->unk_surface);
        if (t->charsmap_len)
            bad |= gk_gguf_set_arr(w, "tokenizer.ggml.precompiled_charsmap", GK_GGUF_UINT8,
                                   t->charsmap, t->charsmap_len);
    } else {
        if (build_merges(t, &merges, &n_merges, err) < 0) goto done;
        bad |= gk_gguf_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)merges,
                                   n_merges);
        if (t->mode == GK_BPE_RANKS) bad |= gk_gguf_set_bool(w, "tokenizer.gk.rank_by_id", true);
    }
    if (t->bos >= 0) bad |= gk_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos);
    if (t->eos >= 0) bad |= gk_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos);
    if (t->unk >= 0)
        bad |= gk_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)t->unk);
    if (t->pad >= 0)
        bad |= gk_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)t->pad);
    bad |= gk_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", t->add_bos);
    bad |= gk_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", false);
    if (t->chat == GK_TOK_CHAT_GROK2)
        bad |= gk_gguf_set_str(w, "tokenizer.chat_template", GROK2_JINJA);
    if (bad) {
        gk_fail(err, "writing the tokenizer keys failed");
        goto done;
    }
    rc = 0;
done:
    if (merges) {
        for (uint64_t i = 0; i < n_merges; i++) free(merges[i]);
        free(merges);
    }
    free(toks);
    free(types);
    free(scores);
    return rc;
}
