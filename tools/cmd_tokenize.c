/*
 * cmd_tokenize.c - `grok tokenize`: the ids and pieces a model's tokenizer gives
 * for a text.
 *
 *   grok tokenize [-m MODEL | --tokenizer FILE] [-p TEXT] [--special] [--ids-only]
 *
 * The text is -p's value or, without -p, all of stdin (exactly as read, final
 * newline included). --tokenizer takes any file gk_tokenizer_load reads
 * (tokenizer.model, tokenizer.tok.json, a .tiktoken file or a GGUF). Output: one
 * line per token, "id<TAB>piece<TAB>text" with the text of the token escaped
 * (\n, \t, \xNN for bytes that are not printable or not whole UTF-8), or with
 * --ids-only the ids on one line, separated by spaces.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: grok tokenize [-m MODEL | --tokenizer FILE] [-p TEXT] [--special] "
               "[--ids-only]\n\n"
               "  -m, --model FILE   the model whose tokenizer to use (default %s)\n"
               "  --tokenizer FILE   a tokenizer file: tokenizer.model, tokenizer.tok.json,\n"
               "                     *.tiktoken, or a GGUF\n"
               "  -p, --prompt TEXT  the text (default: all of stdin)\n"
               "  --special          recognise special tokens written in the text\n"
               "  --ids-only         print only the ids, on one line\n",
            GK_DEFAULT_MODEL);
}

static char *read_stdin(size_t *n) {
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + len, 1, cap - len, stdin);
        len += r;
        if (r == 0) break;
        if (len == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    *n = len;
    return buf;
}

/* Prints bytes with C-style escapes for anything that is not printable text. */
static void print_escaped(const char *s, int n) {
    for (int i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stdout), i++;
        else if (c == '\t') fputs("\\t", stdout), i++;
        else if (c == '\r') fputs("\\r", stdout), i++;
        else if (c == '\\') fputs("\\\\", stdout), i++;
        else if (c >= 0x20 && c < 0x7F) putchar(c), i++;
        else if (c >= 0xC2 && c <= 0xF4) {
            /* Whole multi-byte characters are printed as they are. */
            int need = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4, k = 1;
            while (k < need && i + k < n && ((unsigned char)s[i + k] & 0xC0) == 0x80) k++;
            if (k == need) {
                fwrite(s + i, 1, (size_t)k, stdout);
                i += k;
            } else {
                printf("\\x%02X", c);
                i++;
            }
        } else {
            printf("\\x%02X", c);
            i++;
        }
    }
}

int gk_cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *tokfile = NULL, *prompt = NULL;
    bool special = false, ids_only = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model = gk_cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--tokenizer")) {
            if (!(tokfile = gk_cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(prompt = gk_cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--special")) {
            special = true;
        } else if (!strcmp(a, "--ids-only")) {
            ids_only = true;
        } else {
            fprintf(stderr, "grok tokenize: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (model && tokfile) {
        fprintf(stderr, "grok tokenize: give -m or --tokenizer, not both\n");
        return 2;
    }
    const char *path = tokfile ? tokfile : gk_cli_model_path(model);
    if (!path) return 1;
    gk_err err;
    /* A GGUF's tokenizer is read from its keys alone; the weights are not mapped. */
    gk_tokenizer *t = gk_tokenizer_load(path, &err);
    if (!t) {
        fprintf(stderr, "grok tokenize: %s\n", err.msg);
        return 1;
    }
    size_t len = 0;
    char *text = prompt ? strdup(prompt) : read_stdin(&len);
    if (prompt && text) len = strlen(text);
    if (!text) {
        fprintf(stderr, "grok tokenize: out of memory reading the text\n");
        gk_tokenizer_free(t);
        return 1;
    }
    int rc = 1;
    int n = gk_tokenize(t, text, len, special, NULL, 0, &err);
    int32_t *ids = n >= 0 ? malloc(((size_t)n + 1) * sizeof *ids) : NULL;
    if (n < 0 || !ids || gk_tokenize(t, text, len, special, ids, n, &err) != n) {
        fprintf(stderr, "grok tokenize: %s\n", n < 0 ? err.msg : "out of memory");
        goto done;
    }
    if (ids_only) {
        for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    } else {
        char small[256];
        for (int i = 0; i < n; i++) {
            int k = gk_token_to_bytes(t, ids[i], i == 0, small, sizeof small);
            char *buf = k > (int)sizeof small ? malloc((size_t)k) : small;
            if (buf != small && buf) gk_token_to_bytes(t, ids[i], i == 0, buf, k);
            printf("%d\t", ids[i]);
            const char *piece = gk_token_piece(t, ids[i]);
            print_escaped(piece, (int)strlen(piece));
            printf("\t");
            if (buf) print_escaped(buf, k);
            printf("\n");
            if (buf != small) free(buf);
        }
        fprintf(stderr, "%d tokens, %zu bytes\n", n, len);
    }
    rc = 0;
done:
    free(ids);
    free(text);
    gk_tokenizer_free(t);
    return rc;
}
