/*
 * cmd_run.c - `grok run`: generate text from a prompt, streaming it to stdout.
 *
 * The prompt comes from -p, from stdin, or as token ids (--tokens 1,2,3). The
 * prompt runs through the model in batches of --batch tokens (the KV-cache path
 * when smaller than the prompt), then one token per step until -n tokens, a stop
 * token, or the context is full. --dump-logits writes the raw fp32 logits of
 * every position (prompt and generated) to a file, atomically.
 */
#include "cli.h"
#include "base/base.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    gk_cli_gen g; /* model, context, threads, numerics, sampling */
    const char *prompt, *tokens, *dump;
    long n_predict, n_batch;
    bool ignore_eos, verbose, no_echo;
} run_opts;

static void run_usage(FILE *f) {
    fprintf(f, "usage: grok run [-m MODEL] [-p PROMPT | --tokens 1,2,3 | < prompt.txt] [options]\n"
               "  -p, --prompt TEXT       prompt text (default: read stdin)\n"
               "  --tokens IDS            prompt as comma-separated token ids\n"
               "  -n, --n-predict N       tokens to generate (default 128)\n" GK_CLI_GEN_HELP
               "  --ignore-eos            keep generating past stop tokens\n"
               "  --no-echo               print only the continuation, not the prompt text\n"
               "  -b, --batch N           prompt tokens per forward pass (default 64)\n"
               "  --ubatch N              same as --batch\n"
               "  --dump-logits FILE      write fp32 logits of every position (n_pos x n_vocab)\n"
               "  -v, --verbose           print timings\n");
}

static int parse(int argc, char **argv, run_opts *o) {
    *o = (run_opts){.n_predict = 128};
    gk_cli_gen_init(&o->g);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int r = gk_cli_gen_option(argc, argv, &i, &o->g);
        if (r < 0) return -1;
        if (r > 0) continue;
#define VAL() ((v = gk_cli_value(argc, argv, &i)) != NULL)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            run_usage(stdout);
            exit(0);
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!VAL()) return -1;
            o->prompt = v;
        } else if (!strcmp(a, "--tokens")) {
            if (!VAL()) return -1;
            o->tokens = v;
        } else if (!strcmp(a, "--dump-logits")) {
            if (!VAL()) return -1;
            o->dump = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            if (!VAL() || !gk_cli_int(a, v, 0, 1 << 24, &o->n_predict)) return -1;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch") || !strcmp(a, "--ubatch")) {
            if (!VAL() || !gk_cli_int(a, v, 1, 1 << 16, &o->n_batch)) return -1;
        } else if (!strcmp(a, "--ignore-eos")) {
            o->ignore_eos = true;
        } else if (!strcmp(a, "--no-echo")) {
            o->no_echo = true;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o->verbose = true;
        } else {
            fprintf(stderr, "grok run: unknown option '%s' (see grok run --help)\n", a);
            return -1;
        }
#undef VAL
    }
    if (o->prompt && o->tokens) {
        fprintf(stderr, "grok run: give either -p or --tokens, not both\n");
        return -1;
    }
    return 0;
}

/* Parses "1,2,3" into a new array; every id must be a whole number. */
static int32_t *parse_ids(const char *s, int *n_out) {
    int cap = 16, n = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    const char *p = s;
    while (ids && *p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "grok run: --tokens: bad token id at '%.20s'\n", p);
            free(ids);
            return NULL;
        }
        if (n == cap) {
            int32_t *t = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (!t) break;
            ids = t;
        }
        ids[n++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (!ids || n == 0) {
        fprintf(stderr, "grok run: --tokens: no token ids given\n");
        free(ids);
        return NULL;
    }
    *n_out = n;
    return ids;
}

static char *read_stdin(size_t *len) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += r;
        if (n == cap) {
            char *t = realloc(buf, cap *= 2);
            if (!t) {
                free(buf);
                return NULL;
            }
            buf = t;
        }
    }
    *len = n;
    return buf;
}

/* Logits go to PATH.tmp and are renamed into place only when complete. */
typedef struct {
    FILE *f;
    char tmp[4096];
    const char *path;
} dump_file;

/* The temporary file of the dump, removed by a terminating signal: under mpirun,
 * a rank that dies makes mpirun end the others with SIGTERM. */
static char dump_tmp_path[4096];

static void on_term(int sig) {
    if (dump_tmp_path[0]) unlink(dump_tmp_path);
    signal(sig, SIG_DFL);
    raise(sig);
}

static int dump_open(dump_file *d, const char *path) {
    d->path = path;
    snprintf(d->tmp, sizeof d->tmp, "%s.tmp.%d", path, (int)getpid());
    memcpy(dump_tmp_path, d->tmp, sizeof dump_tmp_path);
    signal(SIGTERM, on_term);
    signal(SIGHUP, on_term);
    d->f = fopen(d->tmp, "wb");
    if (!d->f) fprintf(stderr, "grok run: cannot create %s: %s\n", d->tmp, strerror(errno));
    return d->f ? 0 : -1;
}

static int dump_rows(dump_file *d, const gk_context *c, int n, uint32_t n_vocab) {
    for (int i = 0; i < n; i++)
        if (fwrite(gk_get_logits(c, i), sizeof(float), n_vocab, d->f) != n_vocab) {
            fprintf(stderr, "grok run: writing %s: %s\n", d->tmp, strerror(errno));
            return -1;
        }
    return 0;
}

static int dump_close(dump_file *d, bool ok) {
    if (!d->f) return 0;
    if (fclose(d->f) != 0 && ok) {
        fprintf(stderr, "grok run: writing %s: %s\n", d->tmp, strerror(errno));
        ok = false;
    }
    d->f = NULL;
    dump_tmp_path[0] = 0;
    if (ok && rename(d->tmp, d->path) != 0) {
        fprintf(stderr, "grok run: cannot rename %s to %s: %s\n", d->tmp, d->path, strerror(errno));
        ok = false;
    }
    if (!ok) unlink(d->tmp);
    return ok ? 0 : -1;
}

int gk_cmd_run(int argc, char **argv) {
    run_opts o;
    if (parse(argc, argv, &o) < 0) return 2;
    const char *path = gk_cli_model_path(o.g.model);
    if (!path) return 1;
    /* under mpirun: one model split over the ranks; rank 0 does the talking */
    gk_dist *dist = gk_cli_dist("run", &argc, &argv);
    if (!dist) return 1;
    const bool lead = gk_dist_rank(dist) == 0;
    /* a failed decode or follow may leave ranks inside a collective: end them all;
     * other failures are rank 0's alone and stop the followers cleanly */
    bool broken = false;

    int rc = 1;
    gk_err err = {{0}};
    gk_model *m = NULL;
    gk_context *c = NULL;
    gk_sampler *s = NULL;
    int32_t *ids = NULL;
    int n_prompt = 0;
    char *text = NULL;
    dump_file dump = {0};

    gk_model_params mp = {.numerics = o.g.numerics, .dist = dist};
    m = gk_model_load(path, &mp, &err);
    if (!m) {
        fprintf(stderr, "grok run%s: %s\n", gk_cli_dist_who(dist), err.msg);
        goto done;
    }
    const gk_hparams *hp = gk_model_hparams(m);
    const gk_tokenizer *tok = gk_model_tokenizer(m);

    gk_context_params cp = gk_context_default_params();
    cp.n_ctx = (uint32_t)o.g.n_ctx;
    cp.n_batch = (uint32_t)o.n_batch;
    cp.n_threads = (int)o.g.threads;
    cp.cache_type = o.g.cache_type;
    cp.all_logits = o.dump != NULL;
    cp.dist_wire = o.g.dist_wire;
    cp.dist_check = o.g.dist_check;
    c = gk_context_new(m, &cp, &err);
    if (!c) {
        fprintf(stderr, "grok run%s: %s\n", gk_cli_dist_who(dist), err.msg);
        goto done;
    }
    if (!lead) { /* the other ranks run rank 0's calls until it stops them */
        if (gk_dist_follow(c, &err) < 0) {
            broken = true;
            fprintf(stderr, "grok run%s: %s\n", gk_cli_dist_who(dist), err.msg);
            goto done;
        }
        rc = 0;
        goto done;
    }

    const char *ptext = NULL; /* the prompt as text (len bytes), when not given as ids */
    size_t len = 0;
    if (o.tokens) {
        ids = parse_ids(o.tokens, &n_prompt);
        if (!ids) goto done;
    } else {
        if (o.prompt) {
            len = strlen(o.prompt);
        } else {
            if (isatty(0))
                fprintf(stderr, "grok run: reading the prompt from stdin (end with Ctrl-D)\n");
            text = read_stdin(&len);
            if (!text) {
                fprintf(stderr, "grok run: cannot read stdin\n");
                goto done;
            }
        }
        ptext = o.prompt ? o.prompt : text;
        if (!tok) {
            fprintf(stderr, "grok run: %s has no tokenizer; give the prompt as --tokens\n", path);
            goto done;
        }
        int n = gk_tokenize(tok, ptext, len, false, NULL, 0, &err);
        if (n < 0) {
            fprintf(stderr, "grok run: tokenizing the prompt: %s\n", err.msg);
            goto done;
        }
        ids = malloc((size_t)(n > 0 ? n : 1) * sizeof *ids);
        if (!ids || gk_tokenize(tok, ptext, len, false, ids, n, &err) != n) {
            fprintf(stderr, "grok run: tokenizing the prompt failed\n");
            goto done;
        }
        n_prompt = n;
        if (n_prompt == 0) {
            int32_t bos = gk_tokenizer_bos(tok);
            if (bos < 0) {
                fprintf(stderr, "grok run: the prompt is empty\n");
                goto done;
            }
            ids[n_prompt++] = bos;
        }
    }
    for (int i = 0; i < n_prompt; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= hp->n_vocab) {
            fprintf(stderr, "grok run: token id %d is out of range (vocabulary %u)\n", ids[i],
                    hp->n_vocab);
            goto done;
        }

    uint32_t n_ctx = gk_context_n_ctx(c);
    if ((uint64_t)n_prompt + (uint64_t)o.n_predict > n_ctx) {
        fprintf(stderr,
                "grok run: the prompt (%d tokens) plus -n %ld exceeds the context length %u; "
                "use a shorter prompt, a smaller -n, or a larger --ctx-size (the model was "
                "trained with %u)\n",
                n_prompt, o.n_predict, n_ctx, hp->n_ctx_train);
        goto done;
    }
    s = gk_sampler_new(&o.g.sp, (int32_t)hp->n_vocab, &err);
    if (!s) {
        fprintf(stderr, "grok run: %s\n", err.msg);
        goto done;
    }
    if (o.dump && dump_open(&dump, o.dump) < 0) goto done;

    /* the prompt, in batches (each batch's logits are dumped before the next runs) */
    double t0 = gk_time_s();
    int nb = o.n_batch > 0 ? (int)o.n_batch : 64, last_T = 0;
    for (int done = 0; done < n_prompt;) {
        int T = n_prompt - done < nb ? n_prompt - done : nb;
        if (gk_decode(c, ids + done, T, &err) < 0) {
            broken = true;
            fprintf(stderr, "grok run: %s\n", err.msg);
            goto done;
        }
        if (o.dump && dump_rows(&dump, c, T, hp->n_vocab) < 0) goto done;
        done += T;
        last_T = T;
    }
    double t1 = gk_time_s();

    /* generation */
    int32_t *hist = realloc(ids, (size_t)(n_prompt + o.n_predict + 1) * sizeof *ids);
    if (!hist) goto done;
    ids = hist;
    int n_hist = n_prompt, n_gen = 0;
    gk_detok dt;
    if (tok) gk_detok_init(&dt, tok);
    char buf[512];
    const float *logits = gk_get_logits(c, last_T - 1);
    /* like llama.cpp, show the text prompt before its continuation */
    if (ptext && !o.no_echo && o.n_predict > 0) fwrite(ptext, 1, len, stdout);
    while (n_gen < o.n_predict) {
        int32_t id = gk_sampler_sample(s, logits, ids, n_hist);
        ids[n_hist++] = id;
        n_gen++;
        if (tok && !o.ignore_eos && gk_tokenizer_is_stop(tok, id)) break;
        if (tok) {
            int w = gk_detok_push(&dt, id, buf, sizeof buf);
            if (w > 0) fwrite(buf, 1, (size_t)w, stdout);
        } else {
            printf("%s%d", n_gen > 1 ? " " : "", id);
        }
        fflush(stdout);
        if (n_gen == o.n_predict) break;
        if (gk_decode(c, &id, 1, &err) < 0) {
            broken = true;
            fprintf(stderr, "\ngrok run: %s\n", err.msg);
            goto done;
        }
        if (o.dump && dump_rows(&dump, c, 1, hp->n_vocab) < 0) goto done;
        logits = gk_get_logits(c, 0);
    }
    if (tok) {
        int w = gk_detok_flush(&dt, buf, sizeof buf);
        if (w > 0) fwrite(buf, 1, (size_t)w, stdout);
    }
    if (n_gen > 0) putchar('\n');
    fflush(stdout); /* the text before the timings on stderr */
    double t2 = gk_time_s();
    if (o.verbose)
        fprintf(stderr,
                "prompt: %d tokens in %.3f s (%.2f tok/s); generation: %d tokens in %.3f s "
                "(%.2f tok/s)\n",
                n_prompt, t1 - t0, n_prompt / (t1 - t0 > 0 ? t1 - t0 : 1e-9), n_gen, t2 - t1,
                n_gen > 1 ? (n_gen - 1) / (t2 - t1) : 0.0);
    if (o.verbose && gk_dist_size(dist) > 1) {
        gk_dist_stats st = gk_dist_get_stats(dist);
        int per_rank, chunks = gk_model_sum_chunks(m, &per_rank);
        fprintf(stderr,
                "dist: %d ranks, wire %s: %.3f s in collectives of %.3f s forward; "
                "%.0f bytes sent per token (ideal %.0f); sums over %d column chunks, %d per "
                "rank\n",
                gk_dist_size(dist), gk_dist_wire_name((gk_dist_wire)o.g.dist_wire), st.comm_s,
                st.forward_s, st.tokens ? (double)st.bytes_sent / st.tokens : 0.0,
                st.tokens ? (double)st.bytes_ideal / st.tokens : 0.0, chunks, per_rank);
    }
    rc = 0;
done:
    if (dump_close(&dump, rc == 0) < 0) rc = 1;
    if (rc != 0 && broken) gk_cli_dist_abort(dist);
    gk_sampler_free(s);
    gk_context_free(c);
    gk_model_free(m);
    gk_dist_free(dist);
    free(ids);
    free(text);
    return rc;
}
