/*
 * data.c - training data: text files checked (non-empty, no NUL bytes, valid
 * UTF-8), tokenized with the model's tokenizer in chunks cut at line ends, and
 * cached as one binary token file keyed by a hash of the texts, the tokenizer
 * and the split; a validation split of every k-th block of 1024 tokens; and
 * the deterministic window order of the training batches.
 *
 * Cache file (little-endian): "GKTOKENS" | u32 version 1 | u32 bytes per token
 * (2 or 4) | u64 key | u64 n_train | u64 n_val | u64 FNV-1a of the token bytes
 * | train tokens | val tokens.
 */
#include "train/data.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOCK 1024
#define CHUNK (64 * 1024)

uint64_t gk_fnv1a(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

int gk_text_check(const uint8_t *p, size_t n, const char *name, gk_err *err) {
    if (n == 0) return gk_fail(err, "%s: the file is empty", name);
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        if (c == 0)
            return gk_fail(err, "%s: NUL byte at offset %zu: a binary file, not text", name, i);
        if (c < 0x80) {
            i++;
            continue;
        }
        int len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        bool ok = len > 0 && i + (size_t)len <= n;
        uint32_t cp = ok ? c & (0x7F >> len) : 0;
        for (int k = 1; ok && k < len; k++) {
            ok = (p[i + k] & 0xC0) == 0x80;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        /* no overlong forms, surrogates or code points past U+10FFFF */
        if (ok)
            ok = !(len == 2 && cp < 0x80) && !(len == 3 && cp < 0x800) &&
                 !(len == 4 && cp < 0x10000) && !(cp >= 0xD800 && cp <= 0xDFFF) && cp <= 0x10FFFF;
        if (!ok)
            return gk_fail(err,
                           "%s: invalid UTF-8 at byte offset %zu (0x%02x): the corpus must "
                           "be UTF-8 text",
                           name, i, c);
        i += (size_t)len;
    }
    return 0;
}

static int read_file(const char *path, uint8_t **out, size_t *n, gk_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return gk_fail(err, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return gk_fail(err, "%s: not a regular file", path);
    }
    uint8_t *buf = gk_malloc((size_t)st.st_size + 1, err);
    if (!buf) {
        fclose(f);
        return -1;
    }
    size_t got = fread(buf, 1, (size_t)st.st_size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != (size_t)st.st_size) {
        free(buf);
        return gk_fail(err, "%s: read error", path);
    }
    *out = buf;
    *n = got;
    return 0;
}

int gk_text_check_file(const char *path, gk_err *err) {
    uint8_t *buf;
    size_t n;
    if (read_file(path, &buf, &n, err) < 0) return -1;
    int rc = gk_text_check(buf, n, path, err);
    free(buf);
    return rc;
}

/* A fingerprint of the tokenizer: its kind, size and every piece. */
static uint64_t tok_hash(const gk_tokenizer *t) {
    int32_t n = gk_tokenizer_n_vocab(t);
    int kind = (int)gk_tokenizer_get_kind(t);
    uint64_t h = gk_fnv1a(0xcbf29ce484222325ull, &n, sizeof n);
    h = gk_fnv1a(h, &kind, sizeof kind);
    for (int32_t i = 0; i < n; i++) {
        const char *p = gk_token_piece(t, i);
        if (p) h = gk_fnv1a(h, p, strlen(p) + 1);
    }
    return h;
}

typedef struct {
    int32_t *v;
    size_t n, cap;
} ivec;

static int ivec_push(ivec *a, const int32_t *src, size_t n, gk_err *err) {
    if (n == 0) return 0; /* a->v is NULL before the first push: no memcpy(NULL, ., 0) */
    if (a->n + n > a->cap) {
        size_t cap = a->cap ? a->cap : 1 << 16;
        while (cap < a->n + n) cap *= 2;
        int32_t *v = realloc(a->v, cap * sizeof(int32_t));
        if (!v) return gk_fail(err, "out of memory for %zu tokens", cap);
        a->v = v, a->cap = cap;
    }
    memcpy(a->v + a->n, src, n * sizeof(int32_t));
    a->n += n;
    return 0;
}

/* Tokenizes a text in chunks of about CHUNK bytes cut after a newline (the
 * SentencePiece dummy prefix then only starts a chunk, as it starts a prompt). */
static int tokenize_text(const gk_tokenizer *t, const uint8_t *p, size_t n, ivec *out, int32_t *buf,
                         int cap, const char *name, gk_err *err) {
    for (size_t pos = 0; pos < n;) {
        size_t end = pos + CHUNK < n ? pos + CHUNK : n;
        while (end < n && p[end - 1] != '\n' && end - pos < 4 * CHUNK) end++;
        /* never cut inside a UTF-8 character */
        while (end < n && (p[end] & 0xC0) == 0x80) end++;
        int k = gk_tokenize(t, (const char *)p + pos, end - pos, false, buf, cap, err);
        if (k < 0) {
            gk_err_prefix(err, "%s: at byte %zu", name, pos);
            return -1;
        }
        if (k > cap) return gk_fail(err, "%s: chunk at byte %zu has too many tokens", name, pos);
        if (ivec_push(out, buf, (size_t)k, err) < 0) return -1;
        pos = end;
    }
    return 0;
}

static int write_cache(const char *path, const gk_corpus *c, uint64_t key, int bpt, gk_err *err) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return gk_fail(err, "cache path too long");
    FILE *f = fopen(tmp, "wb");
    if (!f) return gk_fail(err, "%s: %s", tmp, strerror(errno));
    uint64_t h = 0xcbf29ce484222325ull;
    size_t total = c->n_train + c->n_val;
    uint8_t *bytes = malloc(total * (size_t)bpt + 1);
    bool ok = bytes != NULL;
    if (ok) {
        for (size_t i = 0; i < total; i++) {
            uint32_t v = (uint32_t)(i < c->n_train ? c->train[i] : c->val[i - c->n_train]);
            if (bpt == 2) {
                uint16_t s16 = (uint16_t)v;
                memcpy(bytes + 2 * i, &s16, 2);
            } else {
                memcpy(bytes + 4 * i, &v, 4);
            }
        }
        h = gk_fnv1a(h, bytes, total * (size_t)bpt);
        uint32_t ver = 1, b32 = (uint32_t)bpt;
        uint64_t nt = c->n_train, nv = c->n_val;
        ok = fwrite("GKTOKENS", 1, 8, f) == 8 && fwrite(&ver, 4, 1, f) == 1 &&
             fwrite(&b32, 4, 1, f) == 1 && fwrite(&key, 8, 1, f) == 1 &&
             fwrite(&nt, 8, 1, f) == 1 && fwrite(&nv, 8, 1, f) == 1 && fwrite(&h, 8, 1, f) == 1 &&
             fwrite(bytes, (size_t)bpt, total, f) == total;
    }
    free(bytes);
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return gk_fail(err, "writing token cache %s: %s", path, strerror(e));
    }
    return 0;
}

/* Returns 1 when a valid cache with this key was read, 0 when there is none
 * (or it is stale or damaged: it is then rebuilt). */
static int read_cache(const char *path, uint64_t key, int32_t n_vocab, gk_corpus *c) {
    uint8_t *buf;
    size_t n;
    gk_err e;
    if (read_file(path, &buf, &n, &e) < 0) return 0;
    int rc = 0;
    uint32_t ver, bpt;
    uint64_t k, nt, nv, h;
    if (n < 48 || memcmp(buf, "GKTOKENS", 8)) goto done;
    memcpy(&ver, buf + 8, 4), memcpy(&bpt, buf + 12, 4), memcpy(&k, buf + 16, 8);
    memcpy(&nt, buf + 24, 8), memcpy(&nv, buf + 32, 8), memcpy(&h, buf + 40, 8);
    if (ver != 1 || (bpt != 2 && bpt != 4) || k != key || nt > n || nv > n ||
        48 + (nt + nv) * bpt != n || gk_fnv1a(0xcbf29ce484222325ull, buf + 48, n - 48) != h)
        goto done;
    c->train = malloc((nt + 1) * sizeof(int32_t));
    c->val = malloc((nv + 1) * sizeof(int32_t));
    if (!c->train || !c->val) goto done;
    for (uint64_t i = 0; i < nt + nv; i++) {
        uint32_t v = 0;
        memcpy(&v, buf + 48 + i * bpt, bpt);
        if ((int64_t)v >= n_vocab) goto done;
        if (i < nt)
            c->train[i] = (int32_t)v;
        else
            c->val[i - nt] = (int32_t)v;
    }
    c->n_train = nt, c->n_val = nv;
    rc = 1;
done:
    if (!rc) {
        free(c->train), free(c->val);
        c->train = c->val = NULL;
    }
    free(buf);
    return rc;
}

int gk_corpus_load(gk_corpus *c, const gk_tokenizer *tok, const char *const *files, int n_files,
                   const char *cache_dir, float val_frac, gk_err *err) {
    memset(c, 0, sizeof *c);
    if (n_files < 1) return gk_fail(err, "no data files given");
    if (!(val_frac > 0.0f && val_frac < 0.5f))
        return gk_fail(err, "validation fraction %g must be in (0, 0.5)", val_frac);
    int32_t n_vocab = gk_tokenizer_n_vocab(tok);
    /* the key: every text, the tokenizer, the split */
    uint64_t key = gk_fnv1a(0xcbf29ce484222325ull, &val_frac, sizeof val_frac);
    uint64_t th = tok_hash(tok);
    key = gk_fnv1a(key, &th, sizeof th);
    uint8_t **texts = gk_calloc((size_t)n_files, sizeof(uint8_t *), err);
    size_t *lens = gk_calloc((size_t)n_files, sizeof(size_t), err);
    int32_t *buf = NULL;
    ivec all = {0};
    int rc = -1;
    if (!texts || !lens) goto done;
    for (int i = 0; i < n_files; i++) {
        if (read_file(files[i], &texts[i], &lens[i], err) < 0 ||
            gk_text_check(texts[i], lens[i], files[i], err) < 0)
            goto done;
        key = gk_fnv1a(key, &lens[i], sizeof lens[i]);
        key = gk_fnv1a(key, texts[i], lens[i]);
    }
    snprintf(c->cache_path, sizeof c->cache_path, "%s/tokens-%016llx.bin", cache_dir,
             (unsigned long long)key);
    if (read_cache(c->cache_path, key, n_vocab, c) == 1) {
        c->from_cache = true;
        rc = 0;
        goto done;
    }
    int cap = 8 * CHUNK + 16;
    buf = gk_malloc((size_t)cap * sizeof(int32_t), err);
    if (!buf) goto done;
    for (int i = 0; i < n_files; i++) {
        if (tokenize_text(tok, texts[i], lens[i], &all, buf, cap, files[i], err) < 0) goto done;
        c->n_bytes += lens[i];
    }
    if (all.n < 4 * BLOCK) {
        gk_fail(err, "the corpus has only %zu tokens; at least %d are needed", all.n, 4 * BLOCK);
        goto done;
    }
    /* every k-th block of BLOCK tokens to validation */
    size_t every = (size_t)(1.0f / val_frac + 0.5f);
    c->train = gk_malloc(all.n * sizeof(int32_t), err);
    c->val = gk_malloc(all.n * sizeof(int32_t), err);
    if (!c->train || !c->val) goto done;
    for (size_t b = 0; b * BLOCK < all.n; b++) {
        size_t lo = b * BLOCK, n = all.n - lo < BLOCK ? all.n - lo : BLOCK;
        bool val = b % every == every - 1;
        int32_t *dst = val ? c->val + c->n_val : c->train + c->n_train;
        memcpy(dst, all.v + lo, n * sizeof(int32_t));
        if (val)
            c->n_val += n;
        else
            c->n_train += n;
    }
    rc = write_cache(c->cache_path, c, key, n_vocab <= 65536 ? 2 : 4, err);
done:
    if (texts)
        for (int i = 0; i < n_files; i++) free(texts[i]);
    free(texts);
    free(lens);
    free(buf);
    free(all.v);
    if (rc < 0) gk_corpus_free(c);
    return rc;
}

void gk_corpus_free(gk_corpus *c) {
    free(c->train);
    free(c->val);
    c->train = c->val = NULL;
    c->n_train = c->n_val = 0;
}

static uint64_t mix(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t gk_corpus_window(const gk_corpus *c, uint64_t seed, uint64_t step, uint64_t seq, int T) {
    uint64_t span = c->n_train - (uint64_t)T - 1;
    return mix(mix(seed ^ mix(step)) ^ seq) % span;
}

void gk_corpus_batch(const gk_corpus *c, uint64_t seed, uint64_t step, uint64_t seq0, int B, int T,
                     int32_t *inp, int32_t *tgt) {
    for (int b = 0; b < B; b++) {
        uint64_t off = gk_corpus_window(c, seed, step, seq0 + (uint64_t)b, T);
        memcpy(inp + (size_t)b * T, c->train + off, (size_t)T * sizeof(int32_t));
        memcpy(tgt + (size_t)b * T, c->train + off + 1, (size_t)T * sizeof(int32_t));
    }
}

double gk_corpus_unigram_entropy(const gk_corpus *c, int32_t n_vocab) {
    double *cnt = calloc((size_t)n_vocab, sizeof(double));
    if (!cnt) return 0.0;
    for (size_t i = 0; i < c->n_train; i++) cnt[c->train[i]] += 1.0;
    double h = 0.0, n = (double)c->n_train;
    /* entropy of the training unigram distribution measured on the validation
     * tokens (add-one smoothing): what a model that ignores context achieves */
    for (size_t i = 0; i < c->n_val; i++) h -= log((cnt[c->val[i]] + 1.0) / (n + n_vocab));
    free(cnt);
    return c->n_val ? h / (double)c->n_val : 0.0;
}
