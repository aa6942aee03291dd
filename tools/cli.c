/*
 * cli.c - argument helpers shared by the subcommands.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

bool gk_cli_int(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "grok: %s expects a whole number in [%ld, %ld], got '%s'\n", opt, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

bool gk_cli_float(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "grok: %s expects a number in [%g, %g], got '%s'\n", opt, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

const char *gk_cli_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "grok: option %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

const char *gk_cli_model_path(const char *given) {
    if (given) return given;
    struct stat st;
    if (stat(GK_DEFAULT_MODEL, &st) != 0) {
        fprintf(stderr, "grok: no model given (-m FILE) and the default model %s is missing\n",
                GK_DEFAULT_MODEL);
        return NULL;
    }
    return GK_DEFAULT_MODEL;
}

bool gk_cli_numerics(const char *s, gk_numerics *out) {
    if (!strcmp(s, "reference")) *out = GK_NUMERICS_REFERENCE;
    else if (!strcmp(s, "llamacpp")) *out = GK_NUMERICS_LLAMACPP;
    else {
        fprintf(stderr, "grok: --numerics expects 'reference' or 'llamacpp', got '%s'\n", s);
        return false;
    }
    return true;
}

bool gk_cli_cache_type(const char *s, gk_cache_type *out) {
    int t = gk_cache_type_from_name(s);
    if (t < 0) {
        fprintf(stderr, "grok: --cache-type expects f32, f16 or q8_0, got '%s'\n", s);
        return false;
    }
    *out = (gk_cache_type)t;
    return true;
}

void gk_cli_gen_init(gk_cli_gen *g) {
    *g = (gk_cli_gen){.numerics = GK_NUMERICS_REFERENCE, .sp = gk_sampler_default_params()};
}

int gk_cli_gen_option(int argc, char **argv, int *i, gk_cli_gen *g) {
    static const char *const opts[] = {"-m", "--model", "-c", "--ctx-size", "-t", "--threads",
                                       "--numerics", "--temp", "--top-k", "--top-p", "--min-p",
                                       "--repeat-penalty", "--repeat-last-n", "--seed",
                                       "--cache-type"};
    const char *a = argv[*i], *v;
    size_t k = 0;
    while (k < sizeof opts / sizeof opts[0] && strcmp(a, opts[k])) k++;
    if (k == sizeof opts / sizeof opts[0]) return 0;
    if (!(v = gk_cli_value(argc, argv, i))) return -1;
    long n = 0;
    double x = 0;
    switch (k) {
    case 0: case 1: g->model = v; return 1;
    case 2: case 3: return gk_cli_int(a, v, 8, 1 << 24, &g->n_ctx) ? 1 : -1;
    case 4: case 5: return gk_cli_int(a, v, 1, 256, &g->threads) ? 1 : -1;
    case 6: return gk_cli_numerics(v, &g->numerics) ? 1 : -1;
    case 7: if (!gk_cli_float(a, v, 0, 100, &x)) return -1;
        g->sp.temperature = (float)x;
        return 1;
    case 8: if (!gk_cli_int(a, v, 0, 1 << 30, &n)) return -1;
        g->sp.top_k = (int32_t)n;
        return 1;
    case 9: if (!gk_cli_float(a, v, 1e-6, 1, &x)) return -1;
        g->sp.top_p = (float)x;
        return 1;
    case 10: if (!gk_cli_float(a, v, 0, 1, &x)) return -1;
        g->sp.min_p = (float)x;
        return 1;
    case 11: if (!gk_cli_float(a, v, 1e-3, 100, &x)) return -1;
        g->sp.repeat_penalty = (float)x;
        return 1;
    case 12: if (!gk_cli_int(a, v, 0, 1 << 24, &n)) return -1;
        g->sp.repeat_last_n = (int32_t)n;
        return 1;
    case 13: if (!gk_cli_int(a, v, 0, 0x7fffffffL, &n)) return -1;
        g->sp.seed = (uint64_t)n;
        return 1;
    default: return gk_cli_cache_type(v, &g->cache_type) ? 1 : -1;
    }
}

static volatile sig_atomic_t interrupted;
static struct sigaction old_sigint;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

volatile sig_atomic_t *gk_cli_catch_sigint(void) {
    struct sigaction sa = {.sa_handler = on_sigint};
    interrupted = 0;
    sigaction(SIGINT, &sa, &old_sigint);
    return &interrupted;
}

void gk_cli_release_sigint(void) { sigaction(SIGINT, &old_sigint, NULL); }

void gk_cli_write_init(gk_cli_write *w, const char *cmd, gk_quant_policy *policy,
                       gk_quant_out_opts *out) {
    *w = (gk_cli_write){.cmd = cmd, .policy = policy, .out = out};
    policy->keep = w->keep;
}

int gk_cli_write_option(int argc, char **argv, int *i, gk_cli_write *w) {
    const char *a = argv[*i], *v;
    long n;
    if (!strcmp(a, "--keep")) {
        if (!(v = gk_cli_value(argc, argv, i))) return -1;
        if (w->policy->n_keep == GK_CLI_MAX_KEEP) {
            fprintf(stderr, "grok %s: at most %d --keep patterns\n", w->cmd, GK_CLI_MAX_KEEP);
            return -1;
        }
        w->keep[w->policy->n_keep++] = v;
    } else if (!strcmp(a, "--quantize-embedding")) {
        w->policy->quantize_embedding = true;
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        if (!(v = gk_cli_value(argc, argv, i)) || !gk_cli_int(a, v, 1, 1024, &n)) return -1;
        w->out->n_threads = (int)n;
    } else if (!strcmp(a, "--no-verify")) {
        w->out->verify_data = false;
    } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
        w->quiet = true;
    } else {
        return 0;
    }
    return 1;
}

bool gk_cli_write_type(gk_cli_write *w, const char *name) {
    gk_quant_mix mix;
    gk_dtype base;
    if (gk_quant_mix_from_name(name, &mix, &base) == 0) { /* llama.cpp's mixes first */
        w->policy->mix = mix;
        w->policy->type = base;
        return true;
    }
    int t = gk_quant_type_from_name(name);
    if (t < 0) {
        char list[256];
        gk_quant_type_list(list, sizeof list);
        fprintf(stderr,
                "grok %s: unknown or unsupported type '%s' (choose from %s; or a mix: %s)\n",
                w->cmd, name, list, gk_quant_mix_list());
        return false;
    }
    w->policy->mix = GK_MIX_NONE;
    w->policy->type = (gk_dtype)t;
    return true;
}

void gk_cli_write_begin(gk_cli_write *w) {
    gk_progress_init(&w->bar, w->quiet ? NULL : stderr);
    w->out->progress = gk_progress_cb;
    w->out->progress_ud = &w->bar;
    w->out->cancel = gk_cli_catch_sigint();
}

void gk_cli_write_end(gk_cli_write *w) {
    gk_progress_finish(&w->bar);
    gk_cli_release_sigint();
}
