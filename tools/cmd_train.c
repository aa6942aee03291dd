/*
 * cmd_train.c - `grok train`: pretrain (--config) or fine-tune (--init) a
 * Grok-architecture model on text files, with checkpoints, exact resume and
 * data parallelism over MPI processes (mpirun -np N grok train ...).
 *
 * Per step: every process runs `accum` micro-batches of B sequences of T
 * tokens (its share of the global batch of size*accum*B sequences, drawn by
 * gk_corpus_batch from the step number alone), the gradients are summed over
 * processes, and every process applies the same AdamW update. Rank 0 prints,
 * evaluates the held-out split's loss (shared out over the processes), writes
 * checkpoints, a log (train.tsv) and a loss plot (loss.svg) in --out.
 */
#include "cli.h"
#include "base/base.h"
#include "base/progress.h"
#include "train/ckpt.h"
#include "train/data.h"
#include "dist/dist.h"
#include "train/train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    const char **data;
    int n_data;
    const char *init, *config, *out, *resume, *tokenizer, *cache, *save_type, *name, *trace;
    long vocab, steps, batch, ctx, accum, warmup, seed, threads, eval_every, val_tokens, save_every,
        keep, log_every, stop_after;
    double lr, min_lr, wd, clip, beta1, beta2, aux, val_frac, time_limit, init_std, peak_gflops;
    gk_numerics numerics;
    bool quiet;
} train_opts;

static void train_usage(FILE *f) {
    fprintf(
        f,
        "usage: grok train --data FILE... (--config SPEC | --init MODEL.gguf | --resume DIR) "
        "[options]\n"
        "  --data FILE...        UTF-8 text files (every argument up to the next option)\n"
        "  --config SPEC         pretrain a new model: key=value list or file, keys: variant\n"
        "                        (grok1|grok2) layers dim heads kv_heads head_dim ff ff_exp "
        "experts\n"
        "                        experts_used ctx rope_base vocab (the spm_train vocabulary size)\n"
        "  --init FILE           fine-tune this model (its embedded tokenizer is used)\n"
        "  --resume PATH         continue a run from a checkpoint directory or step-N.gguf\n"
        "  --tokenizer FILE      tokenizer for --config (else spm_train builds one from the "
        "data);\n"
        "                        with --init it must match the model's\n"
        "  -o, --out DIR         checkpoints, log, plot, final model.gguf (default train-out)\n"
        "  --steps N             optimizer steps (default 1000)\n"
        "  --batch B             sequences per micro-batch per process (default 8)\n"
        "  --ctx T               tokens per sequence (default 128)\n"
        "  --accum N             micro-batches per step (gradient accumulation, default 1)\n"
        "  --lr X --min-lr X     peak and final learning rate (default 1e-3, lr/10)\n"
        "  --warmup N            linear warmup steps (default 100), then cosine decay\n"
        "  --wd X                AdamW weight decay on matrices (default 0.1)\n"
        "  --beta1 X --beta2 X   (default 0.9, 0.95)\n"
        "  --clip X              gradient-norm clip (default 1.0, 0 = off)\n"
        "  --aux X               load-balancing loss weight (default 0.01)\n"
        "  --seed N              data order and initialisation seed (default 1)\n"
        "  --init-std X          std of new weights (default 0.02)\n"
        "  --val-frac X          held-out share of the tokens (default 0.05)\n"
        "  --val-tokens N        tokens per validation (default 32768)\n"
        "  --eval-every N        validate every N steps (default 100)\n"
        "  --save-every N        checkpoint every N steps (default 500)\n"
        "  --keep N              checkpoints kept (default 2)\n"
        "  --log-every N         progress line every N steps (default 10)\n"
        "  --stop-after N        stop (with a checkpoint) after step N, as if interrupted\n"
        "  --time-limit SEC      stop (with a checkpoint) after this much training time\n"
        "  --save-type T         type of the final model.gguf: f32 (default), bf16, f16, q8_0\n"
        "  --name S              general.name of saved models\n"
        "  --numerics MODE       reference (default) or llamacpp\n"
        "  --trace FILE          append every step's loss and gradient norm (%%.17g) to FILE\n"
        "  --cache DIR           token cache (default OUT/cache)\n"
        "  --peak-gflops X       peak used for the MFU estimate (default: threads x GHz x 32)\n"
        "  -t, --threads N       threads per process (default: all cores / processes)\n"
        "  -q, --quiet           no progress lines\n");
}

static int parse(int argc, char **argv, train_opts *o) {
    *o = (train_opts){.out = "train-out",
                      .vocab = 4096,
                      .steps = 1000,
                      .batch = 8,
                      .ctx = 128,
                      .accum = 1,
                      .warmup = 100,
                      .seed = 1,
                      .eval_every = 100,
                      .val_tokens = 32768,
                      .save_every = 500,
                      .keep = 2,
                      .log_every = 10,
                      .stop_after = -1,
                      .lr = 1e-3,
                      .min_lr = -1,
                      .wd = 0.1,
                      .clip = 1.0,
                      .beta1 = 0.9,
                      .beta2 = 0.95,
                      .aux = 0.01,
                      .val_frac = 0.05,
                      .init_std = 0.02,
                      .save_type = "f32"};
    o->data = calloc((size_t)argc, sizeof(char *));
    if (!o->data) return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
#define VAL() ((v = gk_cli_value(argc, argv, &i)) != NULL)
#define INT(lo, hi, dst) (VAL() && gk_cli_int(a, v, lo, hi, dst))
#define FLT(lo, hi, dst) (VAL() && gk_cli_float(a, v, lo, hi, dst))
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            train_usage(stdout);
            return -1;
        } else if (!strcmp(a, "--data")) {
            while (i + 1 < argc && argv[i + 1][0] != '-') o->data[o->n_data++] = argv[++i];
            if (o->n_data == 0) ok = false, fprintf(stderr, "grok: --data needs files\n");
        } else if (!strcmp(a, "--config"))
            ok = VAL() && (o->config = v);
        else if (!strcmp(a, "--init"))
            ok = VAL() && (o->init = v);
        else if (!strcmp(a, "--resume"))
            ok = VAL() && (o->resume = v);
        else if (!strcmp(a, "--tokenizer"))
            ok = VAL() && (o->tokenizer = v);
        else if (!strcmp(a, "-o") || !strcmp(a, "--out"))
            ok = VAL() && (o->out = v);
        else if (!strcmp(a, "--cache"))
            ok = VAL() && (o->cache = v);
        else if (!strcmp(a, "--save-type"))
            ok = VAL() && (o->save_type = v);
        else if (!strcmp(a, "--name"))
            ok = VAL() && (o->name = v);
        else if (!strcmp(a, "--trace"))
            ok = VAL() && (o->trace = v);
        else if (!strcmp(a, "--steps"))
            ok = INT(1, 100000000, &o->steps);
        else if (!strcmp(a, "--batch"))
            ok = INT(1, 65536, &o->batch);
        else if (!strcmp(a, "--ctx"))
            ok = INT(2, 65536, &o->ctx);
        else if (!strcmp(a, "--accum"))
            ok = INT(1, 65536, &o->accum);
        else if (!strcmp(a, "--warmup"))
            ok = INT(0, 100000000, &o->warmup);
        else if (!strcmp(a, "--seed"))
            ok = INT(0, 2147483647, &o->seed);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
            ok = INT(1, 256, &o->threads);
        else if (!strcmp(a, "--eval-every"))
            ok = INT(0, 100000000, &o->eval_every);
        else if (!strcmp(a, "--val-tokens"))
            ok = INT(1, 1000000000, &o->val_tokens);
        else if (!strcmp(a, "--save-every"))
            ok = INT(0, 100000000, &o->save_every);
        else if (!strcmp(a, "--keep"))
            ok = INT(1, 1000, &o->keep);
        else if (!strcmp(a, "--log-every"))
            ok = INT(1, 100000000, &o->log_every);
        else if (!strcmp(a, "--stop-after"))
            ok = INT(0, 100000000, &o->stop_after);
        else if (!strcmp(a, "--vocab"))
            ok = INT(300, 1000000, &o->vocab);
        else if (!strcmp(a, "--lr"))
            ok = FLT(0, 10, &o->lr);
        else if (!strcmp(a, "--min-lr"))
            ok = FLT(0, 10, &o->min_lr);
        else if (!strcmp(a, "--wd"))
            ok = FLT(0, 10, &o->wd);
        else if (!strcmp(a, "--clip"))
            ok = FLT(0, 1e9, &o->clip);
        else if (!strcmp(a, "--beta1"))
            ok = FLT(0, 0.999999, &o->beta1);
        else if (!strcmp(a, "--beta2"))
            ok = FLT(0, 0.999999, &o->beta2);
        else if (!strcmp(a, "--aux"))
            ok = FLT(0, 100, &o->aux);
        else if (!strcmp(a, "--val-frac"))
            ok = FLT(0.001, 0.49, &o->val_frac);
        else if (!strcmp(a, "--time-limit"))
            ok = FLT(0, 1e9, &o->time_limit);
        else if (!strcmp(a, "--init-std"))
            ok = FLT(1e-6, 10, &o->init_std);
        else if (!strcmp(a, "--peak-gflops"))
            ok = FLT(1e-3, 1e9, &o->peak_gflops);
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet"))
            o->quiet = true;
        else if (!strcmp(a, "--numerics")) {
            ok = VAL();
            if (ok && !strcmp(v, "reference"))
                o->numerics = GK_NUMERICS_REFERENCE;
            else if (ok && !strcmp(v, "llamacpp"))
                o->numerics = GK_NUMERICS_LLAMACPP;
            else if (ok)
                ok = false, fprintf(stderr, "grok: --numerics is reference or llamacpp\n");
        } else {
            fprintf(stderr, "grok: train: unknown option '%s' (see grok train --help)\n", a);
            return 1;
        }
        if (!ok) return 1;
#undef VAL
#undef INT
#undef FLT
    }
    int modes = !!o->config + !!o->init + !!o->resume;
    if (modes != 1) {
        fprintf(stderr, "grok: train: give exactly one of --config, --init and --resume\n");
        return 1;
    }
    if (o->n_data == 0) {
        fprintf(stderr, "grok: train: no --data files given\n");
        return 1;
    }
    if (o->min_lr < 0) o->min_lr = o->lr / 10;
    return 0;
}

/* ----------------------------------------------------------- config --- */

/* Parses "key=value,key=value" (or a file of key=value lines) into hparams. */
static int parse_config(const char *spec, gk_hparams *hp, long *vocab, gk_err *err) {
    char text[4096];
    FILE *f = strchr(spec, '=') ? NULL : fopen(spec, "rb");
    if (f) {
        size_t n = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[n] = 0;
    } else if (strchr(spec, '=')) {
        snprintf(text, sizeof text, "%s", spec);
    } else {
        return gk_fail(err, "--config %s: neither a key=value list nor a readable file", spec);
    }
    long variant = 2, layers = 4, dim = 256, heads = 4, kv = 2, head_dim = 0, ff = 512,
         ff_exp = 512, experts = 4, used = 2, ctx = 1024;
    double rope = 10000.0;
    char *save = NULL;
    for (char *tok = strtok_r(text, ",\n\r", &save); tok; tok = strtok_r(NULL, ",\n\r", &save)) {
        while (*tok == ' ') tok++;
        if (!*tok || *tok == '#') continue;
        char *eq = strchr(tok, '=');
        if (!eq) return gk_fail(err, "--config: '%s' is not key=value", tok);
        *eq = 0;
        const char *k = tok, *v = eq + 1;
        char *end;
        if (!strcmp(k, "variant")) {
            if (!strcmp(v, "grok1"))
                variant = 1;
            else if (!strcmp(v, "grok2"))
                variant = 2;
            else
                return gk_fail(err, "--config: variant is grok1 or grok2, not '%s'", v);
            continue;
        }
        if (!strcmp(k, "rope_base")) {
            rope = strtod(v, &end);
            if (*end || !(rope > 1)) return gk_fail(err, "--config: bad rope_base '%s'", v);
            continue;
        }
        long x = strtol(v, &end, 10);
        if (*end || end == v || x < 1 || x > (1 << 20))
            return gk_fail(err, "--config: %s=%s is not a whole number in 1..%d", k, v, 1 << 20);
        if (!strcmp(k, "layers"))
            layers = x;
        else if (!strcmp(k, "dim"))
            dim = x;
        else if (!strcmp(k, "heads"))
            heads = x;
        else if (!strcmp(k, "kv_heads"))
            kv = x;
        else if (!strcmp(k, "head_dim"))
            head_dim = x;
        else if (!strcmp(k, "ff"))
            ff = x;
        else if (!strcmp(k, "ff_exp"))
            ff_exp = x;
        else if (!strcmp(k, "experts"))
            experts = x;
        else if (!strcmp(k, "experts_used"))
            used = x;
        else if (!strcmp(k, "ctx"))
            ctx = x;
        else if (!strcmp(k, "vocab"))
            *vocab = x;
        else
            return gk_fail(err, "--config: unknown key '%s'", k);
    }
    if (!head_dim) head_dim = dim / heads;
    if (head_dim < 2 || head_dim % 2 || heads % kv || used > experts || layers > 1024)
        return gk_fail(err,
                       "--config: inconsistent shape (head_dim %ld must be even, kv_heads "
                       "%ld must divide heads %ld, experts_used %ld <= experts %ld)",
                       head_dim, kv, heads, used, experts);
    memset(hp, 0, sizeof *hp);
    hp->variant = variant == 1 ? GK_VARIANT_GROK1 : GK_VARIANT_GROK2;
    hp->n_ctx_train = (uint32_t)ctx;
    hp->n_embd = (uint32_t)dim;
    hp->n_layer = (uint32_t)layers;
    hp->n_head = (uint32_t)heads;
    hp->n_head_kv = (uint32_t)kv;
    hp->head_dim = hp->n_rot = (uint32_t)head_dim;
    hp->n_ff = variant == 2 ? (uint32_t)ff : (uint32_t)ff_exp;
    hp->n_ff_exp = (uint32_t)ff_exp;
    hp->n_expert = (uint32_t)experts;
    hp->n_expert_used = (uint32_t)used;
    hp->norm_eps = 1e-5f;
    hp->rope_freq_base = (float)rope;
    /* the release's choices (spec 1), scaled to this width */
    hp->embedding_scale = sqrtf((float)dim);
    hp->attn_out_scale = 1.0f / sqrtf((float)head_dim);
    hp->logit_scale = variant == 2 ? 0.5f : 0.5773502691896257f;
    hp->attn_softcap = 30.0f;
    hp->router_softcap = 30.0f;
    hp->final_softcap = variant == 2 ? 50.0f : 0.0f;
    hp->attn_temp_len = variant == 2 ? 1024 : 0;
    hp->tied_output = variant == 1;
    return 0;
}

/* Trains a SentencePiece BPE vocabulary with Debian's spm_train (byte fallback,
 * identity normalisation, Grok-1's special ids: pad 0, BOS 1, EOS 2, UNK 3). */
static int run_spm_train(const train_opts *o, const char *prefix) {
    size_t n = 16;
    for (int i = 0; i < o->n_data; i++) n += strlen(o->data[i]) + 1;
    char *input = malloc(n), args[16][4400];
    if (!input) return -1;
    snprintf(input, n, "--input=");
    for (int i = 0; i < o->n_data; i++) {
        if (i) strcat(input, ",");
        strcat(input, o->data[i]);
    }
    const char *fmt[] = {"--model_prefix=%s",
                         "--vocab_size=%ld",
                         "--model_type=bpe",
                         "--byte_fallback=true",
                         "--character_coverage=1.0",
                         "--pad_id=0",
                         "--bos_id=1",
                         "--eos_id=2",
                         "--unk_id=3",
                         "--input_sentence_size=300000",
                         "--shuffle_input_sentence=true",
                         "--max_sentence_length=8192",
                         "--normalization_rule_name=identity",
                         "--remove_extra_whitespaces=false",
                         "--split_digits=true",
                         "--minloglevel=2"};
    char *av[20];
    av[0] = "spm_train";
    av[1] = input;
    for (int i = 0; i < 16; i++) {
        if (i == 0)
            snprintf(args[i], sizeof args[i], fmt[i], prefix);
        else if (i == 1)
            snprintf(args[i], sizeof args[i], fmt[i], o->vocab);
        else
            snprintf(args[i], sizeof args[i], "%s", fmt[i]);
        av[2 + i] = args[i];
    }
    av[18] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execvp("spm_train", av);
        fprintf(stderr, "grok: cannot run spm_train (install Debian's sentencepiece): %s\n",
                strerror(errno));
        _exit(127);
    }
    free(input);
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "grok: spm_train failed (status %d)\n",
                WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        return -1;
    }
    return 0;
}

/* The --tokenizer must be the model's own: same size and the same pieces. */
static int check_tokenizer(const gk_tokenizer *t, const gk_tokenizer *mt, uint32_t n_vocab,
                           const char *path, gk_err *err) {
    int32_t n = gk_tokenizer_n_vocab(t);
    if ((uint32_t)n > n_vocab)
        return gk_fail(err,
                       "the tokenizer %s has %d tokens but the model's vocabulary is %u: it "
                       "does not belong to this model",
                       path, n, n_vocab);
    if (!mt) return 0;
    if (gk_tokenizer_n_vocab(mt) != n || gk_tokenizer_get_kind(mt) != gk_tokenizer_get_kind(t))
        return gk_fail(err,
                       "the tokenizer %s (%d tokens) does not match the model's embedded "
                       "tokenizer (%d tokens)",
                       path, n, gk_tokenizer_n_vocab(mt));
    for (int32_t i = 0; i < n; i++) {
        const char *a = gk_token_piece(t, i), *b = gk_token_piece(mt, i);
        if ((a == NULL) != (b == NULL) || (a && strcmp(a, b)))
            return gk_fail(err,
                           "the tokenizer %s does not match the model's embedded tokenizer "
                           "(token %d differs)",
                           path, i);
    }
    return 0;
}

/* ------------------------------------------------------------ reports --- */

typedef struct {
    int64_t *step;
    double *loss;
    int n, cap;
} series;

static void series_add(series *s, int64_t step, double v) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 256;
        int64_t *a = realloc(s->step, (size_t)cap * sizeof *a);
        if (a) s->step = a;
        double *b = realloc(s->loss, (size_t)cap * sizeof *b);
        if (b) s->loss = b;
        if (!a || !b) return;
        s->cap = cap;
    }
    s->step[s->n] = step, s->loss[s->n] = v, s->n++;
}

/* loss.svg: training loss (mean of each logging interval) and validation loss. */
static void write_svg(const char *dir, const series *tr, const series *va, double unigram) {
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/loss.svg", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    double lo = 1e30, hi = -1e30;
    int64_t smax = 1;
    const series *all[2] = {tr, va};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < all[k]->n; i++) {
            lo = fmin(lo, all[k]->loss[i]), hi = fmax(hi, all[k]->loss[i]);
            if (all[k]->step[i] > smax) smax = all[k]->step[i];
        }
    if (unigram > 0) lo = fmin(lo, unigram), hi = fmax(hi, unigram);
    if (lo >= hi) lo = hi - 1;
    lo = floor(lo * 2) / 2, hi = ceil(hi * 2) / 2;
    const double W = 720, H = 420, L = 60, R = 20, T = 30, B = 50;
#define X(s) (L + (double)(s) / smax * (W - L - R))
#define Y(v) (T + (hi - (v)) / (hi - lo) * (H - T - B))
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" "
            "height=\"100%%\" fill=\"white\"/>\n",
            W, H);
    fprintf(f, "<text x=\"%g\" y=\"18\" font-size=\"14\">grok train: loss (nats/token)</text>\n",
            L);
    for (double v = lo; v <= hi + 1e-9; v += (hi - lo) > 4 ? 1.0 : 0.5)
        fprintf(f,
                "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" stroke=\"#ddd\"/><text "
                "x=\"%g\" y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n",
                L, Y(v), W - R, Y(v), L - 6, Y(v) + 4, v);
    for (int i = 0; i <= 4; i++)
        fprintf(f, "<text x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%lld</text>\n",
                X(smax * i / 4.0), H - B + 18, (long long)(smax * i / 4));
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">step</text>\n", (W + L) / 2, H - 12);
    const char *col[2] = {"#1f77b4", "#d62728"}, *lab[2] = {"train", "validation"};
    for (int k = 0; k < 2; k++) {
        if (all[k]->n == 0) continue;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", col[k]);
        for (int i = 0; i < all[k]->n; i++)
            fprintf(f, "%.1f,%.1f ", X(all[k]->step[i]), Y(all[k]->loss[i]));
        fprintf(f, "\"/>\n<text x=\"%g\" y=\"%d\" fill=\"%s\">%s</text>\n", W - R - 130,
                (int)T + 16 + 16 * k, col[k], lab[k]);
    }
    if (unigram > 0)
        fprintf(f,
                "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" stroke=\"#888\" "
                "stroke-dasharray=\"4 4\"/><text x=\"%g\" y=\"%.1f\" fill=\"#888\">unigram "
                "entropy %.2f</text>\n",
                L, Y(unigram), W - R, Y(unigram), L + 8, Y(unigram) - 4, unigram);
    fprintf(f, "</svg>\n");
#undef X
#undef Y
    if (fclose(f) == 0)
        rename(tmp, path);
    else
        unlink(tmp);
}

/* Reads back train.tsv up to step (resume): the plot continues. */
static void load_log(const char *dir, int64_t upto, series *tr, series *va) {
    char path[4200], line[256];
    snprintf(path, sizeof path, "%s/train.tsv", dir);
    FILE *f = fopen(path, "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        long long s;
        char kind[16];
        double v;
        if (sscanf(line, "%lld %15s %lf", &s, kind, &v) == 3 && s <= upto) {
            if (!strcmp(kind, "train"))
                series_add(tr, s, v);
            else if (!strcmp(kind, "val"))
                series_add(va, s, v);
        }
    }
    fclose(f);
}

static void save_log(const char *dir, const series *tr, const series *va) {
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/train.tsv", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    fprintf(f, "# step\tkind\tloss\n");
    for (int i = 0; i < tr->n; i++)
        fprintf(f, "%lld\ttrain\t%.6f\n", (long long)tr->step[i], tr->loss[i]);
    for (int i = 0; i < va->n; i++)
        fprintf(f, "%lld\tval\t%.6f\n", (long long)va->step[i], va->loss[i]);
    if (fclose(f) == 0)
        rename(tmp, path);
    else
        unlink(tmp);
}

/* Matmul FLOPs per token of a training step (3x the forward's: forward, dX, dW),
 * plus attention's q.k and P.v over the causal half. */
static double flops_per_token(const gk_hparams *hp, int T) {
    double d = hp->n_embd, nq = (double)hp->n_head * hp->head_dim,
           nkv = (double)hp->n_head_kv * hp->head_dim;
    double per_layer = d * nq * 2 + 2 * d * nkv + d * hp->n_expert +
                       (double)hp->n_expert_used * 3 * d * hp->n_ff_exp +
                       (hp->variant == GK_VARIANT_GROK2 ? 3 * d * hp->n_ff : 0) + nq * T;
    return 6.0 * (per_layer * hp->n_layer + d * hp->n_vocab);
}

static double cpu_ghz(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    double mhz = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "cpu MHz : %lf", &mhz) == 1) break;
    if (f) fclose(f);
    return mhz > 0 ? mhz / 1000.0 : 2.5;
}

/* ------------------------------------------------------------- main --- */

#define R0 if (dist.rank == 0 && !o.quiet)

int gk_cmd_train(int argc, char **argv) {
    gk_dist dist;
    gk_err err;
    if (gk_dist_init(&dist, &argc, &argv, &err) < 0) {
        fprintf(stderr, "grok: train: %s\n", err.msg);
        return 1;
    }
    train_opts o;
    int prc = parse(argc, argv, &o);
    if (prc != 0) {
        free(o.data);
        gk_dist_finalize(&dist);
        return prc < 0 ? 0 : 2;
    }
    int rc = 1;
    gk_model *model = NULL;
    gk_tokenizer *own_tok = NULL;
    const gk_tokenizer *tok = NULL;
    gk_tmodel *tm = NULL;
    gk_pool *pool = NULL;
    gk_tstate *st = NULL;
    gk_corpus corpus = {0};
    float *adam_m = NULL, *adam_v = NULL;
    int32_t *inp = NULL, *tgt = NULL;
    series trs = {0}, vas = {0};
    gk_train_pos pos = {.seed = (uint64_t)o.seed};
    char ck_gguf[4200], ck_opt[4200], path[4200];

    if (mkdir(o.out, 0755) != 0 && errno != EEXIST) {
        gk_fail(&err, "cannot create %s: %s", o.out, strerror(errno));
        goto fail;
    }
    char cache[4200];
    snprintf(cache, sizeof cache, "%s", o.cache ? o.cache : "");
    if (!o.cache) snprintf(cache, sizeof cache, "%s/cache", o.out);
    if (mkdir(cache, 0755) != 0 && errno != EEXIST) {
        gk_fail(&err, "cannot create %s: %s", cache, strerror(errno));
        goto fail;
    }
    gk_model_params mp = gk_model_default_params();
    mp.numerics = o.numerics;
    /* bad text fails here, before a vocabulary is trained on it */
    for (int i = 0; i < o.n_data; i++)
        if (gk_text_check_file(o.data[i], &err) < 0) goto fail;

    /* --- model and tokenizer --- */
    if (o.resume || o.init) {
        const char *mpath = o.init;
        if (o.resume) {
            if (gk_ckpt_resolve(o.resume, ck_gguf, ck_opt, sizeof ck_gguf, &err) < 0) goto fail;
            mpath = ck_gguf;
        }
        model = gk_model_load(mpath, &mp, &err);
        if (!model) goto fail;
        tok = gk_model_tokenizer(model);
        if (o.tokenizer) {
            own_tok = gk_tokenizer_load(o.tokenizer, &err);
            if (!own_tok || check_tokenizer(own_tok, tok, gk_model_hparams(model)->n_vocab,
                                            o.tokenizer, &err) < 0)
                goto fail;
            tok = own_tok;
        }
        if (!tok) {
            gk_fail(&err, "%s has no embedded tokenizer: give --tokenizer FILE", mpath);
            goto fail;
        }
        tm = gk_tmodel_from_model(model, &err);
        if (!tm) goto fail;
    } else {
        gk_hparams hp;
        if (parse_config(o.config, &hp, &o.vocab, &err) < 0) goto fail;
        const char *tpath = o.tokenizer;
        if (!tpath) {
            snprintf(path, sizeof path, "%s/tokenizer", o.out);
            if (dist.rank == 0) {
                R0 fprintf(stderr,
                           "grok train: training a %ld-token SentencePiece BPE vocabulary "
                           "with spm_train\n",
                           o.vocab);
                int32_t bad = run_spm_train(&o, path) < 0;
                gk_dist_bcast_i32(&dist, &bad, &err);
                if (bad) goto fail_quiet;
            } else {
                int32_t bad = 0;
                gk_dist_bcast_i32(&dist, &bad, &err);
                if (bad) goto fail_quiet;
            }
            snprintf(path, sizeof path, "%s/tokenizer.model", o.out);
            tpath = path;
        }
        own_tok = gk_tokenizer_load(tpath, &err);
        if (!own_tok) goto fail;
        tok = own_tok;
        hp.n_vocab = (uint32_t)gk_tokenizer_n_vocab(tok);
        tm = gk_tmodel_new(&hp, o.numerics, &err);
        if (!tm) goto fail;
        gk_tmodel_init(tm, (uint64_t)o.seed, (float)o.init_std);
    }
    const gk_hparams *hp = &tm->hp;
    if ((uint64_t)o.ctx > hp->n_ctx_train) {
        gk_fail(&err, "--ctx %ld exceeds the model's context length %u", o.ctx, hp->n_ctx_train);
        goto fail;
    }

    /* --- data: rank 0 tokenizes (and fills the cache), the others read the cache --- */
    int32_t bad = 0;
    if (dist.rank == 0) {
        R0 fprintf(stderr, "grok train: reading %d file(s)\n", o.n_data);
        bad = gk_corpus_load(&corpus, tok, o.data, o.n_data, cache, (float)o.val_frac, &err) < 0;
    }
    gk_dist_bcast_i32(&dist, &bad, &err);
    if (bad) goto fail;
    if (dist.rank != 0 &&
        gk_corpus_load(&corpus, tok, o.data, o.n_data, cache, (float)o.val_frac, &err) < 0)
        goto fail;
    if (corpus.n_train < (size_t)o.ctx + 2) {
        gk_fail(&err, "the training split (%zu tokens) is shorter than one sequence of %ld",
                corpus.n_train, o.ctx + 1);
        goto fail;
    }
    for (size_t i = 0; i < corpus.n_train + corpus.n_val; i++) {
        int32_t t = i < corpus.n_train ? corpus.train[i] : corpus.val[i - corpus.n_train];
        if (t < 0 || (uint32_t)t >= hp->n_vocab) {
            gk_fail(&err, "token id %d of the data is outside the model's vocabulary (%u)", t,
                    hp->n_vocab);
            goto fail;
        }
    }
    double unigram = gk_corpus_unigram_entropy(&corpus, (int32_t)hp->n_vocab);
    uint64_t data_key = gk_fnv1a(0xcbf29ce484222325ull, corpus.train, corpus.n_train * 4);
    R0 fprintf(stderr,
               "grok train: %zu training and %zu validation tokens%s; unigram entropy "
               "%.3f nats/token\n",
               corpus.n_train, corpus.n_val, corpus.from_cache ? " (cached)" : "", unigram);

    /* --- compute state --- */
    int nt = o.threads ? (int)o.threads : (int)(sysconf(_SC_NPROCESSORS_ONLN) / dist.size);
    if (nt < 1) nt = 1;
    pool = gk_pool_new(nt, &err);
    if (!pool) goto fail;
    const int B = (int)o.batch, T = (int)o.ctx;
    st = gk_tstate_new(tm, B, T, pool, &err);
    adam_m = gk_malloc_aligned(tm->n_params * sizeof(float), &err);
    adam_v = gk_malloc_aligned(tm->n_params * sizeof(float), &err);
    inp = gk_malloc((size_t)B * T * sizeof(int32_t), &err);
    tgt = gk_malloc((size_t)B * T * sizeof(int32_t), &err);
    if (!st || !adam_m || !adam_v || !inp || !tgt) goto fail;
    memset(adam_m, 0, tm->n_params * sizeof(float));
    memset(adam_v, 0, tm->n_params * sizeof(float));
    uint64_t cfg_words[5] = {(uint64_t)B, (uint64_t)T, (uint64_t)o.accum, (uint64_t)dist.size,
                             (uint64_t)o.seed};
    uint64_t cfg_hash = gk_fnv1a(0xcbf29ce484222325ull, cfg_words, sizeof cfg_words);
    if (o.resume) {
        if (gk_ckpt_load_opt(ck_opt, tm, adam_m, adam_v, &pos, &err) < 0) goto fail;
        if (pos.cfg_hash != cfg_hash) {
            gk_fail(&err,
                    "%s was made with other --batch/--ctx/--accum/--seed or another number of "
                    "processes; resume with the same ones",
                    ck_opt);
            goto fail;
        }
        if (pos.data_key != data_key) {
            gk_fail(&err, "%s was trained on other data (the token stream differs)", ck_opt);
            goto fail;
        }
        R0 fprintf(stderr, "grok train: resuming at step %llu from %s\n",
                   (unsigned long long)pos.step, ck_gguf);
        load_log(o.out, (int64_t)pos.step, &trs, &vas);
    }
    pos.seed = (uint64_t)o.seed, pos.cfg_hash = cfg_hash, pos.data_key = data_key;

    gk_adamw_cfg ac = {.lr_max = (float)o.lr,
                       .lr_min = (float)o.min_lr,
                       .warmup = o.warmup,
                       .total_steps = o.steps,
                       .beta1 = (float)o.beta1,
                       .beta2 = (float)o.beta2,
                       .eps = 1e-8f,
                       .weight_decay = (float)o.wd,
                       .clip = (float)o.clip};
    gk_tsave_opts so = {.type = GK_TYPE_F32,
                        .src = model ? model->gguf : NULL,
                        .tok = (model && tok == gk_model_tokenizer(model)) ? NULL : tok,
                        .name = o.name};
    const int64_t seq_per_step = (int64_t)dist.size * o.accum * B;
    const double global_tokens = (double)seq_per_step * T;
    const float ce_scale = (float)(1.0 / global_tokens);
    const float aux_scale = (float)(o.aux / (double)(dist.size * o.accum));
    double peak = o.peak_gflops > 0 ? o.peak_gflops * 1e9 : nt * dist.size * cpu_ghz() * 32e9;
    double fpt = flops_per_token(hp, T);
    int64_t n_val_batches = corpus.n_val > 1 ? (int64_t)((corpus.n_val - 1) / ((size_t)B * T)) : 0;
    int64_t vb_max = o.val_tokens / ((int64_t)B * T);
    if (vb_max < 1) vb_max = 1;
    if (n_val_batches > vb_max) n_val_batches = vb_max;
    R0 fprintf(stderr,
               "grok train: %s model, %zu parameters, %u layers, d=%u, %u experts (top %u), "
               "vocab %u; %d process(es) x %d threads; global batch %lld x %d tokens\n",
               hp->variant == GK_VARIANT_GROK2 ? "Grok-2" : "Grok-1", tm->n_params, hp->n_layer,
               hp->n_embd, hp->n_expert, hp->n_expert_used, hp->n_vocab, dist.size, nt,
               (long long)seq_per_step, T);

    /* validation: windows of T tokens; batch i goes to process i % size */
#define VALIDATE(out_loss)                                                                         \
    do {                                                                                           \
        double vs[2] = {0, 0};                                                                     \
        for (int64_t vb = dist.rank; vb < n_val_batches; vb += dist.size) {                        \
            for (int b = 0; b < B; b++) {                                                          \
                size_t off = ((size_t)vb * B + b) * (size_t)T;                                     \
                memcpy(inp + b * T, corpus.val + off, (size_t)T * 4);                              \
                memcpy(tgt + b * T, corpus.val + off + 1, (size_t)T * 4);                          \
            }                                                                                      \
            gk_tloss vl;                                                                           \
            if (gk_tforward(st, inp, tgt, &vl, &err) < 0) goto fail;                               \
            vs[0] += vl.ce_sum, vs[1] += (double)vl.n_tokens;                                      \
        }                                                                                          \
        if (gk_dist_sum_f64(&dist, vs, 2, &err) < 0) goto fail;                                    \
        out_loss = vs[1] > 0 ? vs[0] / vs[1] : NAN;                                                \
    } while (0)

    double t_start = gk_time_s(), interval_loss = 0, last_val = NAN;
    int interval_n = 0;
    double t_interval = gk_time_s(), tok_interval = 0;
    const double elapsed0 = pos.elapsed_s;
    bool stop = false;
    /* the time by part of this run's steps after its first (whose page faults and cold
     * caches are not the steady state): the passes' parts from gk_tstate_stats, the
     * optimizer (the gradients zeroed, AdamW) and the whole step timed here */
    gk_tstats ts0 = {0};
    double step_s = 0, opt_s = 0;
    uint64_t n_timed = 0, first_step = pos.step;
    while (pos.step < (uint64_t)o.steps && !stop) {
        double t_step = gk_time_s();
        memset(tm->g, 0, tm->n_params * sizeof(float));
        double t_zeroed = gk_time_s();
        double sums[2] = {0, 0}; /* ce sum, aux */
        for (int m = 0; m < o.accum; m++) {
            uint64_t seq0 = ((uint64_t)dist.rank * (uint64_t)o.accum + (uint64_t)m) * (uint64_t)B;
            gk_corpus_batch(&corpus, pos.seed, pos.step, seq0, B, T, inp, tgt);
            gk_tloss l;
            if (gk_tforward(st, inp, tgt, &l, &err) < 0) goto fail;
            gk_tbackward(st, ce_scale, aux_scale);
            sums[0] += l.ce_sum, sums[1] += l.aux;
        }
        if (gk_dist_sum_f32(&dist, tm->g, tm->n_params, &err) < 0 ||
            gk_dist_sum_f64(&dist, sums, 2, &err) < 0)
            goto fail;
        double loss = sums[0] / global_tokens, aux = sums[1] / (double)(dist.size * o.accum);
        float lr = gk_lr_at(&ac, (int64_t)pos.step);
        double t_opt = gk_time_s();
        double gnorm = gk_adamw_step(tm, adam_m, adam_v, (int64_t)pos.step + 1, &ac, pool);
        double t_end = gk_time_s();
        if (pos.step == first_step) {
            ts0 = gk_tstate_stats(st);
        } else {
            step_s += t_end - t_step;
            opt_s += (t_end - t_opt) + (t_zeroed - t_step);
            n_timed++;
        }
        pos.step++;
        pos.tokens += global_tokens;
        pos.elapsed_s = elapsed0 + (gk_time_s() - t_start);
        interval_loss += loss, interval_n++, tok_interval += global_tokens;
        if (o.trace && dist.rank == 0) {
            FILE *tf = fopen(o.trace, "a");
            if (tf) {
                fprintf(tf, "%llu %.17g %.17g\n", (unsigned long long)pos.step, loss, gnorm);
                fclose(tf);
            }
        }
        if (!isfinite(loss)) {
            gk_fail(&err, "the loss diverged (%g) at step %llu: lower --lr", loss,
                    (unsigned long long)pos.step);
            goto fail;
        }
        if (dist.rank == 0 && !o.quiet &&
            (pos.step % (uint64_t)o.log_every == 0 || pos.step == 1)) {
            double now = gk_time_s(), tps = tok_interval / fmax(now - t_interval, 1e-9);
            double eta = (double)(o.steps - (int64_t)pos.step) * global_tokens / fmax(tps, 1e-9);
            char etas[32];
            gk_format_duration(eta, etas, sizeof etas);
            fprintf(stderr,
                    "step %6llu/%ld | loss %.4f | aux %.3f | lr %.2e | gnorm %.3f | "
                    "%.0f tok/s | MFU %.1f%% | ETA %s\n",
                    (unsigned long long)pos.step, o.steps, loss, aux, lr, gnorm, tps,
                    100.0 * tps * fpt / peak, etas);
            t_interval = now, tok_interval = 0;
        }
        if (pos.step % (uint64_t)o.log_every == 0 || pos.step == (uint64_t)o.steps) {
            series_add(&trs, (int64_t)pos.step, interval_loss / interval_n);
            interval_loss = 0, interval_n = 0;
        }
        int32_t halt = (o.stop_after >= 0 && pos.step >= (uint64_t)o.stop_after) ||
                       (o.time_limit > 0 && gk_time_s() - t_start >= o.time_limit);
        if (gk_dist_bcast_i32(&dist, &halt, &err) < 0) goto fail;
        stop = halt;
        bool last = pos.step == (uint64_t)o.steps || stop;
        if (n_val_batches > 0 && o.eval_every > 0 &&
            (pos.step % (uint64_t)o.eval_every == 0 || last)) {
            VALIDATE(last_val);
            series_add(&vas, (int64_t)pos.step, last_val);
            R0 fprintf(stderr, "step %6llu | validation loss %.4f (unigram entropy %.3f)\n",
                       (unsigned long long)pos.step, last_val, unigram);
        }
        if ((o.save_every > 0 && pos.step % (uint64_t)o.save_every == 0) || last) {
            int32_t fail_save = 0;
            if (dist.rank == 0) {
                fail_save = gk_ckpt_save(o.out, tm, adam_m, adam_v, &pos, &so, (int)o.keep, path,
                                         sizeof path, &err) < 0;
                if (!fail_save) {
                    save_log(o.out, &trs, &vas);
                    write_svg(o.out, &trs, &vas, unigram);
                    R0 fprintf(stderr, "grok train: checkpoint %s\n", path);
                }
            }
            if (gk_dist_bcast_i32(&dist, &fail_save, &err) < 0) goto fail;
            if (fail_save) {
                if (dist.rank != 0) gk_fail(&err, "rank 0 failed to write a checkpoint");
                gk_err_prefix(&err, "checkpoint at step %llu (the previous one is intact)",
                              (unsigned long long)pos.step);
                goto fail;
            }
        }
    }
    if (n_timed > 0 && dist.rank == 0 && !o.quiet) {
        double own, n = (double)n_timed, k = 1e3;
        gk_tstats d = gk_tstats_since(st, &ts0, n, &own);
        double step = step_s / n, opt = opt_s / n, fb = d.forward_s + d.backward_s;
        fprintf(stderr,
                "grok train: time per step (steps %llu-%llu, ms): %.2f = products %.2f + "
                "attention %.2f + GeGLU and cross-entropy jobs %.2f + the calling thread's own "
                "work %.2f + optimizer %.2f + other %.2f\n",
                (unsigned long long)first_step + 2, (unsigned long long)pos.step, step * k,
                d.gemm_s * k, d.attn_s * k, d.pool_ew_s * k, own * k, opt * k,
                (step - fb - opt) * k);
    }
    if (pos.step >= (uint64_t)o.steps && dist.rank == 0) {
        gk_dtype ty = GK_TYPE_F32;
        int t = gk_type_from_name(o.save_type);
        if (t == GK_TYPE_F32 || t == GK_TYPE_BF16 || t == GK_TYPE_F16 || t == GK_TYPE_Q8_0)
            ty = (gk_dtype)t;
        else
            fprintf(stderr, "grok train: --save-type %s not supported, using f32\n", o.save_type);
        so.type = ty;
        so.step = pos.step;
        snprintf(path, sizeof path, "%s/model.gguf", o.out);
        if (gk_tmodel_save(tm, path, &so, &err) < 0) goto fail;
        R0 fprintf(stderr,
                   "grok train: done: %llu steps, %.0f tokens in %.0f s; validation loss "
                   "%.4f; model %s\n",
                   (unsigned long long)pos.step, pos.tokens, pos.elapsed_s, last_val, path);
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "grok: train%s: %s\n", dist.size > 1 ? " (MPI)" : "", err.msg);
fail_quiet:
    rc = 1;
done:
    free(trs.step), free(trs.loss), free(vas.step), free(vas.loss);
    free(inp), free(tgt);
    gk_free_aligned(adam_m), gk_free_aligned(adam_v);
    gk_tstate_free(st);
    gk_pool_free(pool);
    gk_corpus_free(&corpus);
    gk_tmodel_free(tm);
    gk_tokenizer_free(own_tok);
    gk_model_free(model);
    free(o.data);
    gk_dist_finalize(&dist);
    return rc;
}
