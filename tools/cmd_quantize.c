/*
 * cmd_quantize.c - `grok quantize IN.gguf OUT.gguf TYPE`: re-encodes a model's
 * weight matrices; norms, the router and (unless asked) the embedding stay as
 * they are. Ctrl-C stops it cleanly, leaving no output file.
 */
#include "cli.h"
#include "format/quantize.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    char list[128];
    gk_quant_type_list(list, sizeof list);
    fprintf(f,
            "usage: grok quantize IN.gguf OUT.gguf TYPE [options]\n"
            "  TYPE                   %s\n"
            "                         or a llama.cpp mix: %s (q2_k and q6_k\n"
            "                         name the mixes: attn_k/attn_v q8_0, output q6_k, ...)\n"
            "  --keep PATTERN         leave tensors whose name matches (glob) as they are;\n"
            "                         repeatable. Norms, the router and the embedding are left\n"
            "                         as they are anyway\n"
            "  --quantize-embedding   give token_embd.weight the chosen type too\n"
            "  --allow-requantize     accept weights that are already quantized\n"
            "  -t, --threads N        threads (default: all CPUs)\n"
            "  --no-verify            skip re-reading the output to compare checksums\n"
            "  -q, --quiet            no progress bar\n",
            list, gk_quant_mix_list());
}

int gk_cmd_quantize(int argc, char **argv) {
    const char *pos[3] = {0};
    int n_pos = 0;
    gk_quantize_params p = gk_quantize_default_params();
    gk_cli_write w;
    gk_cli_write_init(&w, "quantize", &p.policy, &p.out);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = gk_cli_write_option(argc, argv, &i, &w);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--allow-requantize")) {
            p.allow_requantize = true;
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
    if (!gk_cli_write_type(&w, pos[2])) return 2;
    gk_cli_write_begin(&w);
    gk_err err;
    int rc = gk_quantize(pos[0], pos[1], &p, &err);
    gk_cli_write_end(&w);
    if (rc != 0) {
        fprintf(stderr, "grok quantize: %s\n", err.msg);
        return 1;
    }
    return 0;
}
