/*
 * cmd_info.c - `grok info MODEL`: what a model file holds. The architecture and
 * variant, every hyper-parameter with where it came from (the file, or
 * llama.cpp's default for old Grok-1 files), what the numerics mode decides,
 * the tensors by type with their bytes, and the tokenizer. Any GGUF is
 * described, split ones included; for one that the engine cannot run (another
 * architecture, a tensor type without kernels, a shape the keys contradict) the
 * description ends with why.
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

/* One value, short: strings cut at 72 bytes, arrays as their type and length. */
static void print_value(const gk_gguf_value *v) {
    switch (v->type) {
    case GK_GGUF_STRING: {
        int n = (int)(v->v.str.len > 72 ? 72 : v->v.str.len);
        printf("'");
        for (int i = 0; i < n; i++) {
            unsigned char c = (unsigned char)v->v.str.ptr[i];
            putchar(c >= 0x20 && c < 0x7f ? c : '?');
        }
        printf("'%s", v->v.str.len > 72 ? "..." : "");
        break;
    }
    case GK_GGUF_ARRAY:
        printf("[%llu x %s]", (unsigned long long)v->v.arr.n, gk_gguf_type_name(v->v.arr.type));
        break;
    case GK_GGUF_FLOAT32:
    case GK_GGUF_FLOAT64:
        printf("%.9g", v->v.f64);
        break;
    case GK_GGUF_INT8:
    case GK_GGUF_INT16:
    case GK_GGUF_INT32:
    case GK_GGUF_INT64:
        printf("%lld", (long long)v->v.i64);
        break;
    case GK_GGUF_BOOL:
        printf("%s", v->v.u64 ? "true" : "false");
        break;
    default:
        printf("%llu", (unsigned long long)v->v.u64);
    }
}

/* What any GGUF holds, whether or not this engine can run it: the files, the
 * metadata, the tensors by type. The architecture's own keys are listed raw
 * only for a model that does not run (one that runs gets the hyper-parameter
 * table, with defaults, instead). */
static void describe_file(const char *path, const gk_gguf *g, bool list, bool runs) {
    printf("file:          %s (%.2f MiB, GGUF v%u, alignment %llu)\n", path,
           gk_gguf_total_size(g) / 1048576.0, gk_gguf_version(g),
           (unsigned long long)gk_gguf_alignment(g));
    uint32_t ns = gk_gguf_n_shards(g);
    if (ns > 1) {
        printf("split:         %u files (llama-gguf-split)\n", ns);
        for (uint32_t i = 0; i < ns; i++) printf("  %s\n", gk_gguf_shard_path(g, i));
    }
    gk_str arch = {"", 0};
    gk_gguf_get_str(g, "general.architecture", &arch, NULL);
    int alen = (int)(arch.len > 64 ? 64 : arch.len);
    if (!runs)
        printf("architecture:  %.*s\n", alen ? alen : 32,
               alen ? arch.ptr : "(none: no general.architecture)");

    /* general.* first, then the architecture's keys (the hyper-parameters as
     * the file states them); the tokenizer's long arrays are summarised. */
    printf("\nmetadata (%lld keys%s):\n", (long long)gk_gguf_n_kv(g),
           runs ? "; the hyper-parameters are listed below" : "");
    for (int pass = 0; pass < 3; pass++)
        for (int64_t i = 0; i < gk_gguf_n_kv(g); i++) {
            const gk_gguf_kv *kv = gk_gguf_kv_at(g, i);
            bool gen = !strncmp(kv->key, "general.", 8);
            bool own = alen && !strncmp(kv->key, arch.ptr, (size_t)alen) && kv->key[alen] == '.';
            if ((pass == 0 && !gen) || (pass == 1 && (!own || runs)) || (pass == 2 && (gen || own)))
                continue;
            printf("  %-44s ", kv->key);
            print_value(&kv->value);
            printf("\n");
        }

    uint64_t count[GK_TYPE_COUNT] = {0}, bytes[GK_TYPE_COUNT] = {0}, n_params = 0, total = 0;
    int64_t nt = gk_gguf_n_tensors(g);
    for (int64_t i = 0; i < nt; i++) {
        const gk_gguf_tensor *t = gk_gguf_tensor_at(g, i);
        count[t->type]++;
        bytes[t->type] += t->nbytes;
        total += t->nbytes;
        n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
    }
    printf("\ntensors:       %lld, %llu parameters (%.3f B), %.2f MiB, %.2f bits per weight\n",
           (long long)nt, (unsigned long long)n_params, n_params / 1e9, total / 1048576.0,
           n_params ? 8.0 * (double)total / (double)n_params : 0.0);
    for (int t = 0; t < GK_TYPE_COUNT; t++)
        if (count[t])
            printf("  %-8s %6llu tensors %12.2f MiB%s\n", gk_type_name((uint32_t)t),
                   (unsigned long long)count[t], bytes[t] / 1048576.0,
                   gk_type_is_supported((uint32_t)t) ? "" : "   (not supported by this engine)");
    if (list)
        for (int64_t i = 0; i < nt; i++) {
            const gk_gguf_tensor *t = gk_gguf_tensor_at(g, i);
            printf("  %-40s %-8s {%lld, %lld, %lld, %lld}", t->name, gk_type_name(t->type),
                   (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                   (long long)t->ne[3]);
            if (ns > 1) printf("  file %u", t->shard + 1);
            printf("\n");
        }
}

/* After a refusal: every reason a type alone would stop the model. */
static void print_unsupported(const gk_gguf *g) {
    uint64_t count[GK_TYPE_COUNT] = {0};
    const char *example[GK_TYPE_COUNT] = {0};
    for (int64_t i = 0; i < gk_gguf_n_tensors(g); i++) {
        const gk_gguf_tensor *t = gk_gguf_tensor_at(g, i);
        if (gk_type_is_supported(t->type)) continue;
        if (!count[t->type]++) example[t->type] = t->name;
    }
    for (int t = 0; t < GK_TYPE_COUNT; t++)
        if (count[t])
            printf("  type %s is not supported by this engine: %llu tensors (e.g. '%s')\n",
                   gk_type_name((uint32_t)t), (unsigned long long)count[t], example[t]);
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
    gk_gguf *g = gk_gguf_open_split(path, &err);
    gk_model *m = NULL;
    if (!g) {
        /* A later shard, or a split with a broken shard: describe this file
         * alone when it parses, with the split's error as the reason. */
        gk_err e1;
        if (!(g = gk_gguf_open(path, &e1))) {
            fprintf(stderr, "grok info: %s\n", err.msg);
            return 1;
        }
    } else {
        m = gk_model_load(path, &mp, &err);
    }
    describe_file(path, g, list, m != NULL);
    if (!m) {
        printf("\nruns in grok:  no: %s\n", err.msg);
        print_unsupported(g);
        gk_gguf_close(g);
        return 0;
    }
    gk_gguf_close(g);
    printf("\nruns in grok:  yes\n");
    const gk_hparams *hp = gk_model_hparams(m);
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
    printf("  top-k gates:        %s\n",
           cfg->renorm_topk ? "renormalised to sum 1" : "softmax probabilities, not renormalised");
    if (cfg->router_softcap > 0)
        printf("  router softcap:     %g * tanh(g / %g)\n", cfg->router_softcap,
               cfg->router_softcap);
    else
        printf("  router softcap:     none\n");
    if (cfg->attn_temp_len)
        printf("  attn temperature:   log2(p)/log2(%u) past position %u\n", cfg->attn_temp_len,
               cfg->attn_temp_len);
    else
        printf("  attn temperature:   none\n");
    printf("  GELU:               %s\n",
           cfg->gelu == GK_GELU_ERF ? "exact (erf)"
           : cfg->gelu == GK_GELU_TANH
               ? "tanh approximation"
               : "tanh approximation, as llama.cpp's CPU kernel (fp16 table)");
    if (cfg->rope.yarn)
        printf("  RoPE:               YaRN, freq_scale %g, ext_factor %g, mscale %g, corr dims "
               "[%g, %g]\n",
               cfg->rope.freq_scale, cfg->rope.ext_factor, cfg->rope.mscale, cfg->rope.corr_lo,
               cfg->rope.corr_hi);
    else
        printf("  RoPE:               NeoX, theta %g, freq_scale %g%s\n", hp->rope_freq_base,
               cfg->rope.freq_scale,
               hp->rope_scaling != GK_ROPE_SCALING_NONE &&
                       gk_model_numerics(m) == GK_NUMERICS_REFERENCE
                   ? " (the file's rope.scaling keys are ignored: spec Decisions 4)"
                   : "");

    if (m->n_expert_views + m->n_expert_copies)
        printf(
            "\nexperts:       one tensor per expert (an older Grok-1 layout): %d stacks bound in "
            "place, %d copied at load (%.2f MiB)\n",
            m->n_expert_views, m->n_expert_copies, m->expert_copy_bytes / 1048576.0);

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
