/*
 * cmd_convert.c - `grok convert DIR -o OUT.gguf`: imports an official Grok
 * checkpoint folder (xai-org/grok-2: sharded bf16 safetensors, config.json,
 * tokenizer.tok.json) into one GGUF, optionally quantized, with a progress bar.
 * Ctrl-C stops it cleanly: the library notices at the next chunk and removes
 * its temporary file.
 */
#include "cli.h"
#include "format/convert.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    char list[128];
    gk_quant_type_list(list, sizeof list);
    fprintf(f,
            "usage: grok convert DIR -o OUT.gguf [options]\n"
            "  DIR holds an official Grok-2 checkpoint as downloaded from xai-org/grok-2:\n"
            "  config.json, tokenizer.tok.json and the *-TP-common / *-TP-NNN safetensors.\n"
            "  --type TYPE            weight type: %s (default bf16),\n"
            "                         or a llama.cpp mix: %s\n"
            "  --keep PATTERN         keep tensors whose GGUF name matches (glob) in the\n"
            "                         checkpoint's precision; repeatable. Norms and the router\n"
            "                         are f32 and the embedding keeps its precision anyway\n"
            "  --quantize-embedding   give token_embd.weight the chosen type too\n"
            "  --name NAME            general.name (default: the folder's name)\n"
            "  -t, --threads N        threads for converting (default: all CPUs)\n"
            "  --no-verify            skip re-reading the output to compare checksums\n"
            "  -q, --quiet            no progress bar or summary\n",
            list, gk_quant_mix_list());
}

int gk_cmd_convert(int argc, char **argv) {
    const char *dir = NULL, *out = NULL, *v;
    gk_convert_params p = gk_convert_default_params();
    gk_cli_write w;
    gk_cli_write_init(&w, "convert", &p.policy, &p.out);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = gk_cli_write_option(argc, argv, &i, &w);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!(out = gk_cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--type")) {
            if (!(v = gk_cli_value(argc, argv, &i)) || !gk_cli_write_type(&w, v)) return 2;
        } else if (!strcmp(a, "--name")) {
            if (!(p.name = gk_cli_value(argc, argv, &i))) return 2;
        } else if (a[0] == '-') {
            fprintf(stderr, "grok convert: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!dir) {
            dir = a;
        } else {
            fprintf(stderr, "grok convert: one folder only ('%s' and '%s')\n", dir, a);
            return 2;
        }
    }
    if (!dir || !out) {
        usage(stderr);
        return 2;
    }
    gk_cli_write_begin(&w);
    gk_convert_info info;
    gk_err err;
    int rc = gk_convert(dir, out, &p, &info, &err);
    gk_cli_write_end(&w);
    if (rc != 0) {
        fprintf(stderr, "grok convert: %s\n", err.msg);
        return 1;
    }
    if (!w.quiet) {
        char in_s[32], out_s[32];
        gk_format_bytes(info.bytes_in, in_s, sizeof in_s);
        gk_format_bytes(info.bytes_out, out_s, sizeof out_s);
        fprintf(stderr,
                "grok convert: %s (%d files, %d rank%s, %s of tensors) -> %s (%lld tensors, %s, "
                "%s) in %.1f s, %.0f MB/s\n",
                dir, info.n_files, info.n_ranks, info.n_ranks == 1 ? "" : "s", in_s, out,
                (long long)info.n_tensors, gk_type_name(p.policy.type), out_s, info.seconds,
                info.seconds > 0 ? (double)info.bytes_in / info.seconds / 1e6 : 0.0);
    }
    return 0;
}
