/*
 * tokenizer.c - the public tokenizer API of grok.h: loading by content,
 * special-token splitting, encoding, decoding to bytes, the streaming UTF-8
 * decoder and the chat template.
 *
 * Special tokens: the text is first cut at special tokens (longest match,
 * leftmost first). CONTROL tokens are cut out only when the caller allows
 * special tokens; USER_DEFINED tokens of a BPE vocabulary always are (as
 * llama.cpp does). SentencePiece's user-defined symbols are not cut here: its
 * normalizer handles them, always, with its own rules (tok_spm.c). Each piece
 * of text between special tokens is encoded on its own.
 */
#include "tokenizer/tok_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static void tok_free_parts(gk_tokenizer *t) {
    free(t->tok);
    free(t->bytes);
    free(t->pieces);
    free(t->map.slot);
    free(t->map.tag);
    free(t->bp_rank);
    free(t->bp_id);
    gk_tok_trie_free(&t->special);
    gk_tok_trie_free(&t->user);
    gk_tok_pairs_free(&t->pairs);
    free(t->pattern);
    if (t->re) pcre2_code_free(t->re);
    free(t->charsmap);
    free(t->unk_surface);
}

void gk_tokenizer_free(gk_tokenizer *t) {
    if (!t) return;
    tok_free_parts(t);
    free(t);
}

/* --------------------------------------------------------------- loading --- */

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Does the text start like a .tiktoken file ("<base64> <digits>\n")? */
static bool b64_line(const uint8_t *d, size_t n) {
    size_t i = 0;
    while (i < n && (isalnum(d[i]) || d[i] == '+' || d[i] == '/' || d[i] == '=')) i++;
    if (i == 0 || i >= n || d[i] != ' ') return false;
    size_t j = ++i;
    while (i < n && d[i] >= '0' && d[i] <= '9') i++;
    return i > j && (i == n || d[i] == '\n' || d[i] == '\r');
}

gk_tokenizer *gk_tokenizer_load_memory(const void *data, size_t n, const char *name,
                                       gk_err *err) {
    const uint8_t *d = data;
    if (n == 0) return gk_failp(err, "empty tokenizer file");
    if (n >= 4 && memcmp(d, "GGUF", 4) == 0) {
        gk_gguf *g = gk_gguf_open_memory(data, n, err);
        if (!g) return NULL;
        if (err) err->msg[0] = 0;
        gk_tokenizer *t = gk_tokenizer_from_gguf(g, err);
        gk_gguf_close(g);
        if (!t && err && !err->msg[0]) gk_fail(err, "the GGUF file has no tokenizer");
        return t;
    }
    size_t i = 0;
    while (i < n && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r' || d[i] == '\n')) i++;
    if (i < n && (d[i] == '{' || d[i] == '[')) return gk_tok_bpe_load_tokjson(data, n, err);
    /* A SentencePiece model starts with its first piece: field 1, length-delimited. */
    if (d[0] == 0x0A) return gk_tok_spm_load_proto(d, n, err);
    /* A .tiktoken file is lines of base64 and a rank. */
    if (b64_line(d, n)) return gk_tok_bpe_load_tiktoken(data, n, name, err);
    return gk_failp(err, "unrecognised tokenizer format (expected tokenizer.model, "
                         "tokenizer.tok.json, a .tiktoken file or a GGUF)");
}

gk_tokenizer *gk_tokenizer_load(const char *path, gk_err *err) {
    gk_mmap m;
    if (gk_mmap_open(&m, path, err) < 0) return NULL;
    gk_tokenizer *t = gk_tokenizer_load_memory(m.data, m.size, base_name(path), err);
    gk_mmap_close(&m);
    if (!t) gk_err_prefix(err, "%s", path);
    return t;
}

/* ------------------------------------------------------------ accessors --- */

gk_tokenizer_kind gk_tokenizer_get_kind(const gk_tokenizer *t) { return t->kind; }
int32_t gk_tokenizer_n_vocab(const gk_tokenizer *t) { return t->n_vocab; }
int32_t gk_tokenizer_bos(const gk_tokenizer *t) { return t->bos; }
int32_t gk_tokenizer_eos(const gk_tokenizer *t) { return t->eos; }
const char *gk_tokenizer_pre(const gk_tokenizer *t) {
    return t->kind == GK_TOKENIZER_BPE ? t->pre : "";
}

bool gk_tokenizer_is_stop(const gk_tokenizer *t, int32_t id) {
    for (int i = 0; i < t->n_stops; i++)
        if (t->stops[i] == id) return true;
    return false;
}

bool gk_tokenizer_is_control(const gk_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->tok[id].type == GK_TOK_CONTROL;
}

const char *gk_token_piece(const gk_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_vocab) return NULL;
    return t->pieces + t->tok[id].piece;
}

/* -------------------------------------------------------------- encoding --- */

static int encode_plain(const gk_tokenizer *t, const char *s, size_t n, gk_tok_vec *v,
                        gk_err *err) {
    if (!n) return 0;
    return t->kind == GK_TOKENIZER_SPM ? gk_tok_spm_encode(t, s, n, v, err)
                                       : gk_tok_bpe_encode(t, s, n, v, err);
}

int gk_tok_encode_vec(const gk_tokenizer *t, const char *text, size_t len, bool allow_special,
                      gk_tok_vec *v, gk_err *err) {
    unsigned mask = 0;
    if (allow_special) mask |= 1u << GK_TOK_CONTROL;
    if (t->kind == GK_TOKENIZER_BPE && t->has_user_special) mask |= 1u << GK_TOK_USER;
    if (!mask || !t->special.n_entries) return encode_plain(t, text, len, v, err);
    size_t seg = 0;
    for (size_t p = 0; p < len;) {
        int32_t id;
        size_t m = t->special.first[(uint8_t)text[p]]
                       ? gk_tok_trie_match(&t->special, t, text + p, len - p, mask, &id)
                       : 0;
        if (!m) {
            p++;
            continue;
        }
        if (encode_plain(t, text + seg, p - seg, v, err) < 0) return -1;
        if (gk_tok_vec_push(v, id, err) < 0) return -1;
        p += m;
        seg = p;
    }
    return encode_plain(t, text + seg, len - seg, v, err);
}

int gk_tokenize(const gk_tokenizer *t, const char *text, size_t len, bool allow_special,
                int32_t *out, int cap, gk_err *err) {
    if (!t) return gk_fail(err, "no tokenizer");
    if (!text && len) return gk_fail(err, "text is NULL");
    if (cap < 0 || (cap > 0 && !out)) return gk_fail(err, "bad output buffer");
    gk_tok_vec v = {0};
    if (gk_tok_encode_vec(t, text, len, allow_special, &v, err) < 0) {
        free(v.v);
        return -1;
    }
    if (v.n > INT32_MAX) {
        free(v.v);
        return gk_fail(err, "text gives %zu tokens, more than an int can count", v.n);
    }
    size_t k = v.n < (size_t)cap ? v.n : (size_t)cap;
    if (k) memcpy(out, v.v, k * sizeof *out);
    free(v.v);
    return (int)v.n;
}

/* -------------------------------------------------------------- decoding --- */

int gk_token_to_bytes(const gk_tokenizer *t, int32_t id, bool first, char *buf, int cap) {
    if (!t || id < 0 || id >= t->n_vocab) return -1;
    const gk_tok_info *ti = &t->tok[id];
    const char *s = gk_tok_raw(t, id);
    size_t n = ti->len;
    if (t->kind == GK_TOKENIZER_BPE) {
        if ((size_t)cap >= n && n) memcpy(buf, s, n);
        return (int)n;
    }
    switch (ti->type) {
    case GK_TOK_CONTROL: return 0;
    case GK_TOK_BYTE: {
        int b = -1;
        for (int i = 0; i < 256 && b < 0; i++)
            if (t->byte_id[i] == id) b = i;
        if (b < 0) return 0;
        if (cap >= 1) buf[0] = (char)b;
        return 1;
    }
    case GK_TOK_UNKNOWN: {
        size_t un = strlen(t->unk_surface);
        if ((size_t)cap >= un && un) memcpy(buf, t->unk_surface, un);
        return (int)un;
    }
    default: break;
    }
    /* U+2581 stands for a space; the first piece of a text loses the one the
     * encoder prepended (add_dummy_prefix). */
    if (first && t->add_dummy_prefix && n >= 3 && memcmp(s, "\xe2\x96\x81", 3) == 0) s += 3, n -= 3;
    size_t out = 0;
    for (size_t i = 0; i < n;) {
        if (t->escape_ws && i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
            if (out < (size_t)cap) buf[out] = ' ';
            out++;
            i += 3;
        } else {
            if (out < (size_t)cap) buf[out] = s[i];
            out++;
            i++;
        }
    }
    return (int)out;
}

void gk_detok_init(gk_detok *d, const gk_tokenizer *t) {
    memset(d, 0, sizeof *d);
    d->tok = t;
    d->first = false;
}

/* Does s[0..n) (n < the length its lead byte announces) start a valid character? */
static bool utf8_prefix_ok(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0xC2 || c > 0xF4) return false;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return false;
        if (i == 1) {
            if (c == 0xE0 && s[1] < 0xA0) return false;
            if (c == 0xED && s[1] > 0x9F) return false;
            if (c == 0xF0 && s[1] < 0x90) return false;
            if (c == 0xF4 && s[1] > 0x8F) return false;
        }
    }
    return true;
}

/* Copies the whole characters of s to out (cap bytes), invalid bytes as U+FFFD,
 * and returns how many trailing bytes start an incomplete character (*held),
 * or -1 if out is too small. */
static int utf8_drain(const unsigned char *s, size_t n, char *out, int cap, int *written,
                      int *held) {
    int w = 0;
    size_t i = 0;
    *held = 0;
    while (i < n) {
        int need = gk_utf8_lead_len(s[i]);
        if (s[i] >= 0x80 && (size_t)need > n - i && utf8_prefix_ok(s + i, n - i)) {
            *held = (int)(n - i);
            break;
        }
        int l = gk_utf8_valid_len(s + i, n - i);
        const char *src = (const char *)s + i;
        if (l == 0) src = "\xEF\xBF\xBD";
        int k = l ? l : 3;
        if (w + k > cap) return -1;
        memcpy(out + w, src, (size_t)k);
        w += k;
        i += l ? (size_t)l : 1;
    }
    *written = w;
    return 0;
}

int gk_detok_push(gk_detok *d, int32_t id, char *out, int cap) {
    const gk_tokenizer *t = d->tok;
    if (!t || id < 0 || id >= t->n_vocab || cap < 0) return -1;
    if (t->tok[id].type == GK_TOK_CONTROL) return 0; /* never shown */
    unsigned char local[256];
    int n = gk_token_to_bytes(t, id, d->first, NULL, 0);
    if (n < 0) return -1;
    size_t total = (size_t)d->n_pending + (size_t)n;
    unsigned char *buf = total <= sizeof local ? local : malloc(total);
    if (!buf) return -1;
    memcpy(buf, d->pending, (size_t)d->n_pending);
    gk_token_to_bytes(t, id, d->first, (char *)buf + d->n_pending, n);
    int written = 0, held = 0;
    int rc = utf8_drain(buf, total, out, cap, &written, &held);
    if (rc == 0) {
        memcpy(d->pending, buf + total - held, (size_t)held);
        d->n_pending = held;
        d->first = false;
    }
    if (buf != local) free(buf);
    return rc < 0 ? -1 : written;
}

int gk_detok_flush(gk_detok *d, char *out, int cap) {
    int need = 3 * d->n_pending;
    if (need > cap) return -1;
    for (int i = 0; i < d->n_pending; i++) memcpy(out + 3 * i, "\xEF\xBF\xBD", 3);
    d->n_pending = 0;
    return need;
}

/* ------------------------------------------------------------------ chat --- */

bool gk_tokenizer_has_chat(const gk_tokenizer *t) { return t && t->chat != GK_TOK_CHAT_NONE; }

/* Python's str.strip(): Unicode white space, which is what the Jinja template
 * of spec 7.2 applies to user and system messages. */
static size_t space_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return 1;
    int l = gk_utf8_valid_len(s, n);
    if (l < 2) return 0;
    uint32_t cp = l == 2 ? ((c & 0x1Fu) << 6) | (s[1] & 0x3Fu)
                         : l == 3 ? ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu)
                                  : 0;
    bool ws = cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
              cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
    return ws ? (size_t)l : 0;
}

static void strip(const char **s, size_t *n) {
    const unsigned char *p = (const unsigned char *)*s;
    size_t m = *n, k;
    while (m && (k = space_len(p, m))) p += k, m -= k;
    /* From the end: step back over a trailing white-space character. */
    for (;;) {
        size_t back = 0;
        for (size_t l = 1; l <= 3 && l <= m; l++) {
            if (space_len(p + m - l, l) == l) {
                back = l;
                break;
            }
        }
        if (!back) break;
        m -= back;
    }
    *s = (const char *)p;
    *n = m;
}

typedef struct cbuf {
    char *buf;
    size_t cap, n;
} cbuf;

static void cput(cbuf *b, const char *s, size_t n) {
    if (b->n < b->cap) {
        size_t k = b->cap - b->n < n ? b->cap - b->n : n;
        memcpy(b->buf + b->n, s, k);
    }
    b->n += n;
}

int64_t gk_chat_apply(const gk_tokenizer *t, const gk_chat_msg *msgs, int n, bool add_assistant,
                      char *buf, size_t cap, gk_err *err) {
    if (!gk_tokenizer_has_chat(t))
        return gk_fail(err, "this model has no chat template (a base model: give it plain text)");
    if (n < 0 || (n > 0 && !msgs)) return gk_fail(err, "bad message list");
    cbuf b = {buf, cap, 0};
    for (int i = 0; i < n; i++) {
        const char *role = msgs[i].role, *c = msgs[i].content ? msgs[i].content : "";
        size_t cn = strlen(c);
        const char *head;
        if (role && strcmp(role, "user") == 0) head = "Human: ";
        else if (role && strcmp(role, "system") == 0) head = "System: ";
        else if (role && strcmp(role, "assistant") == 0) head = "Assistant: ";
        else return gk_fail(err, "message %d: unknown role '%s'", i, role ? role : "(null)");
        /* The template strips user and system text but not the assistant's. */
        if (head[0] != 'A') strip(&c, &cn);
        cput(&b, head, strlen(head));
        cput(&b, c, cn);
        cput(&b, "<|separator|>\n\n", 15);
    }
    if (add_assistant) cput(&b, "Assistant:", 10);
    if (b.n < cap) buf[b.n] = 0;
    else if (cap) buf[cap - 1] = 0;
    if (b.n > INT64_MAX / 2) return gk_fail(err, "chat text too long");
    return (int64_t)b.n;
}
