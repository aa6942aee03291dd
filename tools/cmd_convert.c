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

#define MAX_KEEP 64

static void usage(FILE *f) {
    char list[128];
    gk_quant_type_list(list, sizeof list);
    fprintf(f,
            "usage: grok convert DIR -o OUT.gguf [options]\n"
            "  DIR holds an official Grok-2 checkpoint as downloaded from xai-org/grok-2:\n"
            "  config.json, tokenizer.tok.json and the *-TP-common / *-TP-NNN safetensors.\n"
            "  --type TYPE            weight type: %s (default bf16)\n"
            "  --keep PATTERN         keep tensors whose GGUF name matches (glob) in the\n"
            "                         checkpoint's precision; repeatable. Norms and the router\n"
            "                         are f32 and the embedding keeps its precision anyway\n"
            "  --quantize-embedding   give token_embd.weight the chosen type too\n"
            "  --name NAME            general.name (default: the folder's name)\n"
            "  -t, --threads N        threads for converting (default: all CPUs)\n"
            "  --no-verify            skip re-reading the output to compare checksums\n"
            "  -q, --quiet            no progress bar or summary\n",
            list);
}

int gk_cmd_convert(int argc, char **argv) {
    const char *dir = NULL, *out = NULL, *keep[MAX_KEEP], *v;
    gk_convert_params p = gk_convert_default_params();
    p.policy.keep = keep;
    bool quiet = false;
    long n;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!(out = gk_cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--type")) {
            if (!(v = gk_cli_value(argc, argv, &i))) return 2;
            int t = gk_quant_type_from_name(v);
            if (t < 0) {
                char list[128];
                gk_quant_type_list(list, sizeof list);
                fprintf(stderr, "grok convert: unknown or unsupported type '%s' (choose from %s)\n",
                        v, list);
                return 2;
            }
            p.policy.type = (gk_dtype)t;
        } else if (!strcmp(a, "--keep")) {
            if (!(v = gk_cli_value(argc, argv, &i))) return 2;
            if (p.policy.n_keep == MAX_KEEP) {
                fprintf(stderr, "grok convert: at most %d --keep patterns\n", MAX_KEEP);
                return 2;
            }
            keep[p.policy.n_keep++] = v;
        } else if (!strcmp(a, "--quantize-embedding")) {
            p.policy.quantize_embedding = true;
        } else if (!strcmp(a, "--name")) {
            if (!(p.name = gk_cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = gk_cli_value(argc, argv, &i)) || !gk_cli_int(a, v, 1, 1024, &n)) return 2;
            p.out.n_threads = (int)n;
        } else if (!strcmp(a, "--no-verify")) {
            p.out.verify_data = false;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
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
    gk_progress bar;
    gk_progress_init(&bar, quiet ? NULL : stderr);
    p.out.progress = gk_progress_cb;
    p.out.progress_ud = &bar;
    p.out.cancel = gk_cli_catch_sigint();
    gk_convert_info info;
    gk_err err;
    int rc = gk_convert(dir, out, &p, &info, &err);
    gk_progress_finish(&bar);
    gk_cli_release_sigint();
    if (rc != 0) {
        fprintf(stderr, "grok convert: %s\n", err.msg);
        return 1;
    }
    if (!quiet) {
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
