/*
 * cli.c - argument helpers shared by the subcommands.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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
