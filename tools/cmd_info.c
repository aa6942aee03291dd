/*
 * cmd_info.c - `grok info MODEL`: what a model file holds. The architecture and
 * variant, every hyper-parameter with where it came from (the file, or
 * llama.cpp's default for old Grok-1 files), what the numerics mode decides,
 * the tensors by type with their bytes, and the tokenizer.
 */
#include "cli.h"
#include "format/gguf.h"
#include "model/model.h"

#include <stdio.h>
#include <string.h>

static void info_usage(FILE *f) {
    fprintf(f, "usage: grok info [-m] MODEL [--numerics reference|llamacpp] [--tensors]\n"
               "  --tensors   list every tensor (name, type, shape)\n");
}

int gk_cmd_info(int argc, char **argv) {
    const char *path = NULL;
    bool list = false;
    gk_model_params mp = gk_model_default_params();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            info_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) {
            if (!(path = gk_cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(argv[i], "--tensors")) {
            list = true;
        } else if (!strcmp(argv[i], "--numerics")) {
            const char *v = gk_cli_value(argc, argv, &i);
            if (!v || !gk_cli_numerics(v, &mp.numerics)) return 2;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "grok info: unknown option '%s'\n", argv[i]);
            info_usage(stderr);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!(path = gk_cli_model_path(path))) return 1;
    gk_err err;
    gk_model *m = gk_model_load(path, &mp, &err);
    if (!m) {
        fprintf(stderr, "grok info: %s\n", err.msg);
        return 1;
    }
    const gk_hparams *hp = gk_model_hparams(m);
    printf("file:          %s (%.2f MiB, GGUF v%u, alignment %llu)\n", path,
           gk_model_file_size(m) / 1048576.0, gk_gguf_version(m->gguf),
           (unsigned long long)gk_gguf_alignment(m->gguf));
    printf("architecture:  grok, variant %s\n",
           hp->variant == GK_VARIANT_GROK2 ? "Grok-2 (MoE + dense residual MLP)" : "Grok-1 (MoE)");
    printf("parameters:    %llu (%.3f B)\n", (unsigned long long)gk_model_n_params(m),
           gk_model_n_params(m) / 1e9);
    printf("vocabulary:    %u (from token_embd.weight), output %s\n", hp->n_vocab,
           hp->tied_output ? "tied to the embedding" : "separate (output.weight)");

    printf("\nhyper-parameters (* = default, not in the file):\n");
    gk_hparam_info hi[GK_MAX_HPARAM_INFO];
    int n = gk_model_hparam_info(m, hi, GK_MAX_HPARAM_INFO);
    for (int i = 0; i < n && i < GK_MAX_HPARAM_INFO; i++)
        printf("  %c %-44s %s\n", hi[i].from_file ? ' ' : '*', hi[i].name, hi[i].value);

    const gk_numerics_cfg *cfg = &m->cfg;
    printf("\nnumerics:      %s\n", gk_model_numerics(m) == GK_NUMERICS_REFERENCE
                                        ? "reference (xAI JAX for Grok-1, SGLang for Grok-2)"
                                        : "llamacpp (llama.cpp's Grok graph)");
    printf("  top-k gates:        %s\n", cfg->renorm_topk ? "renormalised to sum 1" : "softmax probabilities, not renormalised");
    if (cfg->router_softcap > 0)
        printf("  router softcap:     %g * tanh(g / %g)\n", cfg->router_softcap, cfg->router_softcap);
    else
        printf("  router softcap:     none\n");
    if (cfg->attn_temp_len) printf("  attn temperature:   log2(p)/log2(%u) past position %u\n", cfg->attn_temp_len, cfg->attn_temp_len);
    else printf("  attn temperature:   none\n");
    printf("  GELU:               %s\n", cfg->gelu_erf ? "exact (erf)" : "tanh approximation");
    if (cfg->rope.yarn)
        printf("  RoPE:               YaRN, freq_scale %g, ext_factor %g, mscale %g, corr dims [%g, %g]\n",
               cfg->rope.freq_scale, cfg->rope.ext_factor, cfg->rope.mscale, cfg->rope.corr_lo,
               cfg->rope.corr_hi);
    else
        printf("  RoPE:               NeoX, theta %g, freq_scale %g%s\n", hp->rope_freq_base,
               cfg->rope.freq_scale,
               hp->rope_scaling != GK_ROPE_SCALING_NONE && gk_model_numerics(m) == GK_NUMERICS_REFERENCE
                   ? " (the file's rope.scaling keys are ignored: spec Decisions 4)"
                   : "");

    /* tensors by type */
    uint64_t count[GK_TYPE_COUNT] = {0}, bytes[GK_TYPE_COUNT] = {0};
    int64_t nt = gk_gguf_n_tensors(m->gguf);
    for (int64_t i = 0; i < nt; i++) {
        const gk_gguf_tensor *t = gk_gguf_tensor_at(m->gguf, i);
        count[t->type]++;
        bytes[t->type] += t->nbytes;
    }
    printf("\ntensors:       %lld\n", (long long)nt);
    for (int t = 0; t < GK_TYPE_COUNT; t++)
        if (count[t])
            printf("  %-6s %6llu tensors %12.2f MiB\n", gk_type_name((uint32_t)t),
                   (unsigned long long)count[t], bytes[t] / 1048576.0);
    if (list)
        for (int64_t i = 0; i < nt; i++) {
            const gk_gguf_tensor *t = gk_gguf_tensor_at(m->gguf, i);
            printf("  %-40s %-5s {%lld, %lld, %lld}\n", t->name, gk_type_name(t->type),
                   (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2]);
        }

    const gk_tokenizer *tok = gk_model_tokenizer(m);
    if (tok)
        printf("\ntokenizer:     %s, %d tokens, bos %d, eos %d\n",
               gk_tokenizer_get_kind(tok) == GK_TOKENIZER_SPM ? "SentencePiece BPE (llama)"
                                                              : "byte-level rank BPE (gpt2)",
               gk_tokenizer_n_vocab(tok), gk_tokenizer_bos(tok), gk_tokenizer_eos(tok));
    else
        printf("\ntokenizer:     none (give prompts as --tokens)\n");
    gk_model_free(m);
    return 0;
}
