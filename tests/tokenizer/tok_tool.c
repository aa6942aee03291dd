/*
 * tok_tool.c - a test helper that encodes files with a grok.c tokenizer, for
 * comparisons with reference tokenizers (spm_encode, npm peers):
 *
 *   tok_tool lines TOKENIZER FILE     one line of ids per input line (no newline
 *                                     in the text), like spm_encode --output_format=id
 *   tok_tool whole TOKENIZER FILE     the ids of the whole file, one per line
 *   tok_tool roundtrip TOKENIZER FILE checks decode(encode(line)) == line per line
 *                                     (and for the whole file); prints failures
 *   tok_tool bench TOKENIZER FILE [SECONDS]  encoding speed in MB/s on one core
 */
#include "grok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    fclose(f);
    *n = len;
    return buf;
}

static int32_t *encode(const gk_tokenizer *t, const char *s, size_t n, int *count) {
    gk_err err;
    int cap = (int)(n + 16);
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    int k = gk_tokenize(t, s, n, false, ids, cap, &err);
    if (k < 0) {
        fprintf(stderr, "encode: %s\n", err.msg);
        exit(1);
    }
    if (k > cap) {
        ids = realloc(ids, (size_t)k * sizeof *ids);
        gk_tokenize(t, s, n, false, ids, k, &err);
    }
    *count = k;
    return ids;
}

/* Decodes with the streaming decoder, the way the CLI prints. */
static char *decode(const gk_tokenizer *t, const int32_t *ids, int n, size_t *len) {
    size_t cap = 64, m = 0;
    char *out = malloc(cap);
    gk_detok d;
    gk_detok_init(&d, t);
    d.first = true; /* a whole text */
    char buf[4096];
    for (int i = 0; i <= n; i++) {
        int k = i < n ? gk_detok_push(&d, ids[i], buf, sizeof buf) : gk_detok_flush(&d, buf, sizeof buf);
        if (k < 0) {
            fprintf(stderr, "decode failed at token %d\n", i);
            exit(1);
        }
        while (m + (size_t)k + 1 > cap) out = realloc(out, cap *= 2);
        memcpy(out + m, buf, (size_t)k);
        m += (size_t)k;
    }
    out[m] = 0;
    *len = m;
    return out;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: tok_tool lines|whole|roundtrip|bench TOKENIZER FILE [SECONDS]\n");
        return 2;
    }
    gk_err err;
    gk_tokenizer *t = gk_tokenizer_load(argv[2], &err);
    if (!t) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    size_t n;
    char *text = read_file(argv[3], &n);
    if (!text) {
        fprintf(stderr, "cannot read %s\n", argv[3]);
        return 1;
    }
    const char *mode = argv[1];
    int bad = 0;
    if (!strcmp(mode, "whole")) {
        int k;
        int32_t *ids = encode(t, text, n, &k);
        for (int i = 0; i < k; i++) printf("%d\n", ids[i]);
        free(ids);
    } else if (!strcmp(mode, "lines") || !strcmp(mode, "roundtrip")) {
        bool rt = !strcmp(mode, "roundtrip");
        size_t lineno = 0;
        for (size_t p = 0; p < n;) {
            const char *e = memchr(text + p, '\n', n - p);
            size_t l = e ? (size_t)(e - text - p) : n - p;
            int k;
            int32_t *ids = encode(t, text + p, l, &k);
            lineno++;
            if (rt) {
                size_t dl;
                char *dec = decode(t, ids, k, &dl);
                if (dl != l || memcmp(dec, text + p, l) != 0) {
                    if (bad++ < 10) printf("line %zu: round trip differs\n", lineno);
                }
                free(dec);
            } else {
                for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
                printf("\n");
            }
            free(ids);
            p += l + (e ? 1 : 0);
        }
        if (rt) {
            int k;
            int32_t *ids = encode(t, text, n, &k);
            size_t dl;
            char *dec = decode(t, ids, k, &dl);
            if (dl != n || memcmp(dec, text, n) != 0) {
                printf("whole file: round trip differs\n");
                bad++;
            }
            free(dec);
            free(ids);
            printf("%s: %zu lines, %d failures\n", bad ? "FAIL" : "ok", lineno, bad);
        }
    } else if (!strcmp(mode, "bench")) {
        double secs = argc > 4 ? atof(argv[4]) : 2.0;
        int k = 0, reps = 0;
        int cap = (int)(n + 16);
        int32_t *ids = malloc((size_t)cap * sizeof *ids);
        double t0 = now(), t1;
        do {
            k = gk_tokenize(t, text, n, false, ids, cap, &err);
            reps++;
            t1 = now();
        } while (t1 - t0 < secs);
        printf("%.2f MB/s (%d tokens, %zu bytes, %d runs)\n", (double)n * reps / (t1 - t0) / 1e6, k, n,
               reps);
        free(ids);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    free(text);
    gk_tokenizer_free(t);
    return bad ? 1 : 0;
}
