/*
 * cmd_quantize.c - `grok quantize IN.gguf OUT.gguf TYPE`: re-encodes a model's
 * weight matrices; norms, the router and (unless asked) the embedding stay as
 * they are. Ctrl-C stops it cleanly, leaving no output file.
 */
#include "cli.h"
#include "format/quantize.h"

#include <stdio.h>
#include <string.h>

#define MAX_KEEP 64

static void usage(FILE *f) {
    char list[128];
    gk_quant_type_list(list, sizeof list);
    fprintf(f,
            "usage: grok quantize IN.gguf OUT.gguf TYPE [options]\n"
            "  TYPE                   %s\n"
            "  --keep PATTERN         leave tensors whose name matches (glob) as they are;\n"
            "                         repeatable. Norms, the router and the embedding are left\n"
            "                         as they are anyway\n"
            "  --quantize-embedding   give token_embd.weight the chosen type too\n"
            "  --allow-requantize     accept weights that are already quantized\n"
            "  -t, --threads N        threads (default: all CPUs)\n"
            "  --no-verify            skip re-reading the output to compare checksums\n"
            "  -q, --quiet            no progress bar\n",
            list);
}

int gk_cmd_quantize(int argc, char **argv) {
    const char *pos[3] = {0}, *keep[MAX_KEEP], *v;
    int n_pos = 0;
    gk_quantize_params p = gk_quantize_default_params();
    p.policy.keep = keep;
    bool quiet = false;
    long n;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--keep")) {
            if (!(v = gk_cli_value(argc, argv, &i))) return 2;
            if (p.policy.n_keep == MAX_KEEP) {
                fprintf(stderr, "grok quantize: at most %d --keep patterns\n", MAX_KEEP);
                return 2;
            }
            keep[p.policy.n_keep++] = v;
        } else if (!strcmp(a, "--quantize-embedding")) {
            p.policy.quantize_embedding = true;
        } else if (!strcmp(a, "--allow-requantize")) {
            p.allow_requantize = true;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = gk_cli_value(argc, argv, &i)) || !gk_cli_int(a, v, 1, 1024, &n)) return 2;
            p.out.n_threads = (int)n;
        } else if (!strcmp(a, "--no-verify")) {
            p.out.verify_data = false;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
        } else if (a[0] == '-') {
            fprintf(stderr, "grok quantize: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (n_pos < 3) {
            pos[n_pos++] = a;
        } else {
            fprintf(stderr, "grok quantize: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (n_pos != 3) {
        usage(stderr);
        return 2;
    }
    int t = gk_quant_type_from_name(pos[2]);
    if (t < 0) {
        char list[128];
        gk_quant_type_list(list, sizeof list);
        fprintf(stderr, "grok quantize: unknown or unsupported type '%s' (choose from %s)\n",
                pos[2], list);
        return 2;
    }
    p.policy.type = (gk_dtype)t;
    gk_progress bar;
    gk_progress_init(&bar, quiet ? NULL : stderr);
    p.out.progress = gk_progress_cb;
    p.out.progress_ud = &bar;
    p.out.cancel = gk_cli_catch_sigint();
    gk_err err;
    int rc = gk_quantize(pos[0], pos[1], &p, &err);
    gk_progress_finish(&bar);
    gk_cli_release_sigint();
    if (rc != 0) {
        fprintf(stderr, "grok quantize: %s\n", err.msg);
        return 1;
    }
    return 0;
}
