/*
 * test_tok_llamacpp.c - llama.cpp's tokenizer test vectors for the two
 * vocabulary-only GGUFs in ../shared/testdata/llamacpp-vocab (GPT-2 byte-level
 * BPE and LLaMA's SentencePiece): every text must give exactly the ids of the
 * .out file (no BOS, special tokens not parsed), and decode back to itself.
 */
#include "gk_test.h"
#include "grok.h"

#include <stdint.h>

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[len] = 0;
    *n = (size_t)len;
    return buf;
}

static void run_vocab(const char *dir, const char *name) {
    char path[1024], inp[1100], outp[1100];
    snprintf(path, sizeof path, "%s/llamacpp-vocab/%s", dir, name);
    snprintf(inp, sizeof inp, "%s.inp", path);
    snprintf(outp, sizeof outp, "%s.out", path);
    gk_err err;
    gk_tokenizer *t = gk_tokenizer_load(path, &err);
    CHECK_MSG(t != NULL, "%s", err.msg);
    if (!t) return;
    size_t ni, no;
    char *in = slurp(inp, &ni), *out = slurp(outp, &no);
    CHECK(in && out);
    if (!in || !out) return;
    /* Texts are separated by "\n__ggml_vocab_test__\n"; the .out file has one
     * line of ids per text (llama.cpp's test-tokenizer-0 reads them so). */
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t sl = strlen(sep), pos = 0;
    char *line = out;
    int n_tests = 0, n_fail = 0;
    while (pos < ni) {
        char *next = strstr(in + pos, sep);
        size_t len = next ? (size_t)(next - (in + pos)) : ni - pos;
        char *eol = strchr(line, '\n');
        CHECK(eol != NULL);
        if (!eol) break;
        *eol = 0;
        int32_t want[512], got[512];
        int nw = 0;
        for (char *p = line; *p;) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p) break;
            want[nw++] = (int32_t)v;
            p = end;
        }
        int ng = gk_tokenize(t, in + pos, len, false, got, 512, &err);
        bool same = ng == nw && memcmp(want, got, (size_t)nw * sizeof *got) == 0;
        if (!same) {
            n_fail++;
            fprintf(stderr, "%s test %d '%.*s':\n  want", name, n_tests, (int)len, in + pos);
            for (int i = 0; i < nw; i++) fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n  got ");
            for (int i = 0; i < ng; i++) fprintf(stderr, " %d", got[i]);
            fprintf(stderr, "\n");
        }
        /* Decoding gives the text back (both vocabularies cover every byte). */
        if (ng > 0 && ng <= 512) {
            char dec[4096];
            int m = 0;
            gk_detok d;
            gk_detok_init(&d, t);
            d.first = true; /* a whole text: drop SentencePiece's dummy prefix */
            for (int i = 0; i < ng; i++) m += gk_detok_push(&d, got[i], dec + m, (int)sizeof dec - m);
            m += gk_detok_flush(&d, dec + m, (int)sizeof dec - m);
            CHECK_MSG((size_t)m == len && memcmp(dec, in + pos, len) == 0,
                      "%s test %d: decodes to '%.*s'", name, n_tests, m, dec);
        }
        n_tests++;
        line = eol + 1;
        pos += len + (next ? sl : 0);
    }
    CHECK_MSG(n_fail == 0, "%s: %d of %d vectors differ", name, n_fail, n_tests);
    CHECK_MSG(n_tests >= 40, "%s: only %d vectors read", name, n_tests);
    printf("%s: %d vectors, %d differ\n", name, n_tests, n_fail);
    free(in);
    free(out);
    gk_tokenizer_free(t);
}

int main(void) {
    const char *dir = gk_test_data_dir();
    if (!dir) return GK_TEST_SKIP;
    run_vocab(dir, "ggml-vocab-gpt-2.gguf");
    run_vocab(dir, "ggml-vocab-llama-spm.gguf");
    return gk_test_done();
}
