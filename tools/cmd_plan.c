/*
 * cmd_plan.c - `grok plan`: what a model costs on a fleet, from the library's
 * cost model (src/plan):
 *
 *   grok plan infer --model grok-2 --fleet 8xH100 --type q4_k_m --ctx 8192
 *   grok plan train --model grok-2 --tokens 15e12 --fleet 16384xH100 --mfu 0.4
 *   grok plan fleet --devices 50e6 --kind H100
 *   grok plan presets
 *   grok plan calibrate [-o FILE]        (measures this machine into a preset file)
 *
 * Tables by default, --json for machines, --svg FILE for a plot.
 */
#include "cli.h"
#include "kernels/ops.h"
#include "tensor/dtype.h"
#include "dist/dist.h"
#include "kernels/gemm.h"
#include "kernels/stream.h"
#include "train/train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef struct {
    const char *model, *type, *fleet, *kind, *svg, *out, *types;
    bool json, type_given;
    double ctx, batch, tokens, mfu, pue, seq, devices, eff_flops, eff_bw, kv_bytes, wire;
    double prompt, gen, step_tokens;
    long tp, threads;
    /* hypothetical sizes over the model's */
    long variant, layers, embd, heads, kv_heads, head_dim, ff, ff_exp, experts, experts_used, vocab;
} plan_opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: grok plan infer --model M --fleet NxDEV [--type T] [--ctx N] [options]\n"
            "       grok plan train --model M --tokens N --fleet NxDEV [--mfu X] [--pue X]\n"
            "       grok plan fleet --devices N --kind DEV [--mfu X] [--pue X]\n"
            "       grok plan presets\n"
            "       grok plan calibrate [-o FILE] [-t THREADS] [--types f32,f16,q8_0,...]\n"
            "                          (mpirun -np 2: also the link and an MPI process's size)\n\n"
            "  --model M          a preset (grok-1, grok-2, llama-3.1-405b, deepseek-v3,\n"
            "                     gpt-3-175b, chinchilla-70b) or a .gguf file\n"
            "  --type T           weight type or mix: bf16, f16, q8_0, q4_0, q4_k, q6_k,\n"
            "                     q4_k_m, q5_k_m ... (default: bf16; a .gguf: its own types)\n"
            "  --fleet NxDEV      e.g. 8xH100, 16384xH100, 1x./this.preset (see presets)\n"
            "  hypothetical sizes: --variant 1|2 --layers --embd --heads --kv-heads --head-dim\n"
            "                     --ff --ff-exp --experts --experts-used --vocab\n"
            "infer: --ctx N (context per sequence) --batch N (prompt batch, 512) --tp N\n"
            "       --eff-flops X (0.5) --eff-bw X (0.8) --kv-bytes B --wire f32|bf16|q8_0\n"
            "       --prompt N --gen N (prompt length; generated tokens after it)\n"
            "train: --tokens N --seq N (sequence length) --mfu X (0.4) --pue X (1.2)\n"
            "       --step-tokens N (tokens per optimizer step: the measured tokens/s of a\n"
            "       calibrated machine counts the AdamW step over them)\n"
            "all:   --json, --svg FILE (infer: tokens/s against ranks and link speed;\n"
            "       train: days against fleet size)\n");
}

static bool num(const char *opt, const char *v, double lo, double hi, double *out) {
    return gk_cli_float(opt, v, lo, hi, out);
}

static int parse(int argc, char **argv, plan_opts *o) {
    memset(o, 0, sizeof *o);
    o->variant = o->layers = o->embd = o->heads = o->kv_heads = o->head_dim = o->ff = o->ff_exp =
        o->experts = o->experts_used = o->vocab = -1;
    o->mfu = 0.4;
    o->pue = 1.2;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(a, "--json")) {
            o->json = true;
            continue;
        }
        if (!(v = gk_cli_value(argc, argv, &i))) return -1;
        bool ok = true;
        long *lp = NULL;
        if (!strcmp(a, "--model") || !strcmp(a, "-m"))
            o->model = v;
        else if (!strcmp(a, "--type"))
            o->type = v, o->type_given = true;
        else if (!strcmp(a, "--fleet"))
            o->fleet = v;
        else if (!strcmp(a, "--kind"))
            o->kind = v;
        else if (!strcmp(a, "--svg"))
            o->svg = v;
        else if (!strcmp(a, "--types"))
            o->types = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output"))
            o->out = v;
        else if (!strcmp(a, "--ctx") || !strcmp(a, "-c"))
            ok = num(a, v, 1, 1e8, &o->ctx);
        else if (!strcmp(a, "--batch") || !strcmp(a, "-b"))
            ok = num(a, v, 1, 1e6, &o->batch);
        else if (!strcmp(a, "--tokens"))
            ok = num(a, v, 1, 1e18, &o->tokens);
        else if (!strcmp(a, "--mfu"))
            ok = num(a, v, 1e-4, 1, &o->mfu);
        else if (!strcmp(a, "--pue"))
            ok = num(a, v, 1, 5, &o->pue);
        else if (!strcmp(a, "--seq"))
            ok = num(a, v, 1, 1e7, &o->seq);
        else if (!strcmp(a, "--devices"))
            ok = num(a, v, 1, 1e12, &o->devices);
        else if (!strcmp(a, "--eff-flops"))
            ok = num(a, v, 1e-4, 1, &o->eff_flops);
        else if (!strcmp(a, "--eff-bw"))
            ok = num(a, v, 1e-4, 1, &o->eff_bw);
        else if (!strcmp(a, "--kv-bytes"))
            ok = num(a, v, 0.1, 8, &o->kv_bytes);
        else if (!strcmp(a, "--prompt"))
            ok = num(a, v, 1, 1e8, &o->prompt);
        else if (!strcmp(a, "--step-tokens"))
            ok = num(a, v, 1, 1e12, &o->step_tokens);
        else if (!strcmp(a, "--gen"))
            ok = num(a, v, 1, 1e8, &o->gen);
        else if (!strcmp(a, "--wire")) {
            if (!strcmp(v, "f32"))
                o->wire = 4;
            else if (!strcmp(v, "bf16"))
                o->wire = 2;
            else if (!strcmp(v, "q8_0"))
                o->wire = 34.0 / 32.0;
            else {
                fprintf(stderr, "grok plan: --wire expects f32, bf16 or q8_0, not '%s'\n", v);
                return -1;
            }
        } else if (!strcmp(a, "--tp"))
            ok = gk_cli_int(a, v, 1, 4096, &o->tp);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
            ok = gk_cli_int(a, v, 1, 256, &o->threads);
        else if (!strcmp(a, "--variant"))
            ok = gk_cli_int(a, v, 1, 2, &o->variant);
        else if (!strcmp(a, "--layers"))
            lp = &o->layers;
        else if (!strcmp(a, "--embd"))
            lp = &o->embd;
        else if (!strcmp(a, "--heads"))
            lp = &o->heads;
        else if (!strcmp(a, "--kv-heads"))
            lp = &o->kv_heads;
        else if (!strcmp(a, "--head-dim"))
            lp = &o->head_dim;
        else if (!strcmp(a, "--ff"))
            lp = &o->ff;
        else if (!strcmp(a, "--ff-exp"))
            lp = &o->ff_exp;
        else if (!strcmp(a, "--experts"))
            lp = &o->experts;
        else if (!strcmp(a, "--experts-used"))
            lp = &o->experts_used;
        else if (!strcmp(a, "--vocab"))
            lp = &o->vocab;
        else {
            fprintf(stderr, "grok plan: unknown option '%s'\n", a);
            return -1;
        }
        if (lp) ok = gk_cli_int(a, v, 0, 1L << 24, lp);
        if (!ok) return -1;
    }
    return 0;
}

/* The model: a preset or a GGUF, with hypothetical sizes applied. */
static int load_model(const plan_opts *o, gk_plan_model *pm) {
    gk_err err;
    if (!o->model) {
        fprintf(stderr, "grok plan: --model is required (a preset such as grok-2, or a .gguf)\n");
        return -1;
    }
    gk_plan_shape s;
    gk_model *m = NULL;
    size_t len = strlen(o->model);
    bool gguf = len > 5 && !strcasecmp(o->model + len - 5, ".gguf");
    if (gguf) {
        m = gk_model_load(o->model, NULL, &err);
        if (!m) {
            fprintf(stderr, "grok plan: %s\n", err.msg);
            return -1;
        }
        const char *base = strrchr(o->model, '/');
        gk_plan_shape_from_hparams(gk_model_hparams(m), base ? base + 1 : o->model, &s);
    } else if (gk_plan_shape_preset(o->model, &s, &err) < 0) {
        fprintf(stderr, "grok plan: %s\n", err.msg);
        return -1;
    }
    bool changed = false;
#define SET(f, v)                                                                                  \
    if ((v) >= 0) s.f = (uint32_t)(v), changed = true
    SET(n_layer, o->layers);
    SET(n_embd, o->embd);
    SET(n_head, o->heads);
    SET(n_head_kv, o->kv_heads);
    SET(head_dim, o->head_dim);
    SET(n_ff, o->ff);
    SET(n_ff_exp, o->ff_exp);
    SET(n_expert, o->experts);
    SET(n_expert_used, o->experts_used);
    SET(n_vocab, o->vocab);
#undef SET
    if (o->variant > 0) s.variant = (gk_variant)o->variant, changed = true;
    if (o->variant == 1) s.n_ff = 0;
    if (changed) {
        char name[48];
        snprintf(name, sizeof name, "%.30s (resized)", s.name);
        snprintf(s.name, sizeof s.name, "%s", name);
    }
    int rc;
    if (m && !changed && !o->type_given) {
        rc = gk_plan_model_from_model(m, pm, &err);
        snprintf(pm->s.name, sizeof pm->s.name, "%s", s.name);
    } else
        rc = gk_plan_model_build(&s, o->type ? o->type : "bf16", pm, &err);
    gk_model_free(m);
    if (rc < 0) {
        fprintf(stderr, "grok plan: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static const char *si(double v, const char *unit, char *buf, size_t cap) {
    static const char *p[] = {"", "k", "M", "G", "T", "P", "E", "Z", "Y"};
    int i = 0;
    double a = fabs(v);
    while (a >= 1000 && i < 8) a /= 1000, v /= 1000, i++;
    snprintf(buf, cap, "%.3g %s%s", v, p[i], unit);
    return buf;
}
#define SI(v, u) si((v), (u), (char[32]){0}, 32)

/* A rate for a table column: whole numbers up to 10^7, then SI; "n/a" when unknown. */
static const char *rate(double v, char *buf, size_t cap) {
    if (!isfinite(v)) return snprintf(buf, cap, "n/a"), buf;
    if (v >= 1e7) return si(v, "", buf, cap);
    snprintf(buf, cap, v >= 100 ? "%.0f" : "%.3g", v);
    return buf;
}
#define RATE(v) rate((v), (char[32]){0}, 32)

/* JSON: a number, or null when it is unknown (NaN) or infinite; a string with its
 * quotes, backslashes and control characters escaped. Each call fills the next of a
 * few rotating buffers, so that one printf may use several. */
static char jbuf[24][640];
static int jnext;
static const char *jnum(double v) {
    char *b = jbuf[jnext++ % 24];
    if (!isfinite(v))
        snprintf(b, 640, "null");
    else
        snprintf(b, 640, "%.6g", v);
    return b;
}
static const char *jstr(const char *s) {
    char *b = jbuf[jnext++ % 24];
    size_t n = 0;
    for (; *s && n + 8 < 640; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            b[n++] = '\\', b[n++] = (char)ch;
        else if (ch < 0x20)
            n += (size_t)snprintf(b + n, 640 - n, "\\u%04x", ch);
        else
            b[n++] = (char)ch;
    }
    b[n] = 0;
    return b;
}

/* The seconds of a forward by part, as a JSON object (null when not computed). */
static const char *jparts(const gk_plan_parts *p) {
    char *b = jbuf[jnext++ % 24];
    if (!(p->total > 0))
        snprintf(b, 640, "null");
    else
        snprintf(b, 640,
                 "{\"matmul\": %.6g, \"dispatch\": %.6g, \"pool_jobs\": %.0f, \"geglu\": %.6g, "
                 "\"attention\": %.6g, \"elementwise_pool\": %.6g, \"elementwise_serial\": "
                 "%.6g, \"total\": %.6g}",
                 p->matmul, p->dispatch, p->pool_runs, p->geglu, p->attention, p->ew_pool,
                 p->ew_serial, p->total);
    return b;
}

/* ------------------------------------------------------------- svg --- */

typedef struct {
    const char *label;
    int n;
    double x[64], y[64];
} series;

/* A log-log (or log-x) line plot, written atomically. */
static int write_svg(const char *path, const char *title, const char *xl, const char *yl,
                     const series *s, int ns, bool logy) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "grok plan: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            double lx = log10(s[k].x[i]), ly = logy ? log10(s[k].y[i]) : s[k].y[i];
            x0 = fmin(x0, lx), x1 = fmax(x1, lx), y0 = fmin(y0, ly), y1 = fmax(y1, ly);
        }
    if (!logy) y0 = 0;
    if (x1 <= x0) x1 = x0 + 1;
    if (y1 <= y0) y1 = y0 + 1;
    const double W = 720, H = 440, L = 80, R = 200, T = 40, B = 60;
    const char *col[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
    fprintf(f,
            "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' "
            "font-family='sans-serif' font-size='12'>\n<rect width='100%%' height='100%%' "
            "fill='white'/>\n<text x='%.0f' y='24' font-size='15'>%s</text>\n",
            W, H, L, title);
    fprintf(f, "<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='none' stroke='#444'/>\n",
            L, T, W - L - R, H - T - B);
    for (int i = (int)floor(x0); i <= (int)ceil(x1); i++) {
        double px = L + (i - x0) / (x1 - x0) * (W - L - R);
        if (px < L - 0.5 || px > W - R + 0.5) continue;
        fprintf(f,
                "<line x1='%.1f' y1='%.0f' x2='%.1f' y2='%.0f' stroke='#ddd'/><text x='%.1f' "
                "y='%.0f' text-anchor='middle'>1e%d</text>\n",
                px, T, px, H - B, px, H - B + 16, i);
    }
    for (int i = 0; i <= 4; i++) {
        double v = y0 + (y1 - y0) * i / 4, py = H - B - (double)i / 4 * (H - T - B);
        fprintf(f, "<text x='%.0f' y='%.1f' text-anchor='end'>%.3g</text>\n", L - 6, py + 4,
                logy ? pow(10, v) : v);
    }
    fprintf(f, "<text x='%.0f' y='%.0f' text-anchor='middle'>%s</text>\n", (L + W - R) / 2, H - 20,
            xl);
    fprintf(f,
            "<text x='16' y='%.0f' transform='rotate(-90 16 %.0f)' text-anchor='middle'>%s"
            "</text>\n",
            (T + H - B) / 2, (T + H - B) / 2, yl);
    for (int k = 0; k < ns; k++) {
        fprintf(f, "<polyline fill='none' stroke-width='2' stroke='%s' points='", col[k % 6]);
        for (int i = 0; i < s[k].n; i++) {
            double lx = log10(s[k].x[i]), ly = logy ? log10(s[k].y[i]) : s[k].y[i];
            fprintf(f, "%.1f,%.1f ", L + (lx - x0) / (x1 - x0) * (W - L - R),
                    H - B - (ly - y0) / (y1 - y0) * (H - T - B));
        }
        fprintf(f, "'/>\n<text x='%.0f' y='%.0f' fill='%s'>%s</text>\n", W - R + 10,
                T + 16 + 18 * k, col[k % 6], s[k].label);
    }
    fprintf(f, "</svg>\n");
    bool ok = !ferror(f);
    if (fclose(f) != 0 || !ok || rename(tmp, path) != 0) {
        unlink(tmp);
        fprintf(stderr, "grok plan: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ infer --- */

static void model_summary(const gk_plan_model *pm, const char *type, bool json) {
    double p = gk_plan_params(pm), a = gk_plan_params_active(pm), b = gk_plan_weight_bytes(pm);
    if (json) {
        printf("\"model\": {\"name\": \"%s\", \"type\": \"%s\", \"params\": %.17g, "
               "\"active_params\": %.17g, \"weight_bytes\": %.17g, \"kv_bytes_per_token_bf16\": "
               "%.17g},\n",
               pm->s.name, type, p, a, b, gk_plan_kv_bytes_per_token(&pm->s, 2));
        return;
    }
    printf("model %s, weights %s: %s parameters (%s active per token), %s of weights "
           "(%.2f bits each)\n",
           pm->s.name, type, SI(p, ""), SI(a, ""), SI(b, "B"), 8 * b / p);
}

static int cmd_infer(const plan_opts *o) {
    gk_plan_model pm;
    gk_plan_hw hw;
    gk_err err;
    double n;
    if (load_model(o, &pm) < 0) return 1;
    if (!o->fleet) {
        fprintf(stderr, "grok plan infer: --fleet is required (e.g. 8xH100)\n");
        return 2;
    }
    if (gk_plan_fleet_parse(o->fleet, &n, &hw, &err) < 0) {
        fprintf(stderr, "grok plan infer: %s\n", err.msg);
        return 1;
    }
    gk_plan_infer_opts io = {.n_ctx = o->ctx > 0 ? o->ctx : (pm.s.n_ctx < 8192 ? pm.s.n_ctx : 8192),
                             .n_batch = o->batch,
                             .kv_elt_bytes = o->kv_bytes,
                             .wire_bytes = o->wire,
                             .eff_flops = o->eff_flops,
                             .eff_bw = o->eff_bw,
                             .n_prompt = o->prompt,
                             .n_threads = (int)o->threads};
    if (o->gen > 0) io.gen_pos = (o->prompt > 0 ? o->prompt : 0) + (o->gen - 1) / 2.0;
    uint32_t heads = pm.s.attn == GK_PLAN_ATTN_MLA ? pm.s.n_head : pm.s.n_head_kv;
    gk_plan_infer rows[64];
    int nr = 0;
    for (uint32_t tp = 1; tp <= heads && nr < 64; tp++) {
        if (heads % tp || tp > n || (o->tp && (long)tp != o->tp)) continue;
        /* the fewest pipeline stages that hold the model */
        gk_plan_infer r = {0};
        bool found = false;
        for (double pp = 1; pp * tp <= n && pp <= pm.s.n_layer; pp++) {
            if (gk_plan_infer_eval(&pm, &hw, pp * tp, (int)tp, &io, &r, &err) < 0) {
                fprintf(stderr, "grok plan infer: %s\n", err.msg);
                return 1;
            }
            if (r.fits) {
                found = true;
                break;
            }
        }
        if (found) rows[nr++] = r;
    }
    char type[64];
    snprintf(type, sizeof type, "%s",
             o->type ? o->type : (o->model && strstr(o->model, ".gguf") ? "as stored" : "bf16"));
    if (!nr) {
        gk_plan_split one = {1, 1, 1, 1};
        double need = gk_plan_weight_bytes_per_device(&pm, &one);
        if (o->tp && (heads % (uint32_t)o->tp || o->tp > n))
            fprintf(stderr,
                    "grok plan infer: --tp %ld is not a valid split of %s (it must divide "
                    "the %u KV heads and not exceed %.0f devices)\n",
                    o->tp, o->fleet, heads, n);
        else
            fprintf(stderr,
                    "grok plan infer: the fleet is too small: %s (%s weights + KV cache of one "
                    "%.0f-token sequence) does not fit on %s (%s of memory in all)\n",
                    pm.s.name, SI(need, "B"), io.n_ctx, o->fleet, SI(n * hw.mem_bytes, "B"));
        return 1;
    }
    if (o->json) {
        printf("{\n");
        model_summary(&pm, type, true);
        printf("\"fleet\": {\"devices\": %.0f, \"kind\": \"%s\", \"source\": \"%s\"},\n"
               "\"ctx\": %.0f,\n\"splits\": [\n",
               n, jstr(hw.name), jstr(hw.source), io.n_ctx);
        for (int i = 0; i < nr; i++) {
            gk_plan_infer *r = &rows[i];
            printf("  {\"tp\": %d, \"pp\": %d, \"replicas\": %.0f, \"weight_bytes_per_device\": "
                   "%s, \"kv_bytes_per_seq_per_device\": %s, \"max_seqs\": %.0f, "
                   "\"prompt_tps_bound\": %s, \"prompt_tps\": %s, \"gen_tps_bound\": %s, "
                   "\"gen_tps\": %s, \"gen_comm_s\": %s, \"batch_seqs\": %.0f, "
                   "\"batch_tps_bound\": %s, \"rank_mem\": {\"weights\": %s, "
                   "\"replicated\": %s, \"kv\": %s, \"context\": %s, \"base\": %s, "
                   "\"total\": %s}, \"prompt_parts_s\": %s, \"gen_parts_s\": %s}%s\n",
                   r->split.tp, r->split.pp, floor(n / (r->split.tp * r->split.pp)),
                   jnum(r->weight_bytes_dev), jnum(r->kv_bytes_seq_dev), r->max_seqs,
                   jnum(r->prompt_bound), jnum(r->prompt_expect), jnum(r->gen_bound),
                   jnum(r->gen_expect), jnum(r->gen_comm_s), r->gen_batch_seqs,
                   jnum(r->gen_batch_bound), jnum(r->rank_mem.weights),
                   jnum(r->rank_mem.replicated), jnum(r->rank_mem.kv), jnum(r->rank_mem.context),
                   jnum(r->rank_mem.base), jnum(r->rank_mem.total), jparts(&r->prompt_parts),
                   jparts(&r->gen_parts), i + 1 < nr ? "," : "");
            jnext = 0;
        }
        printf("]\n}\n");
    } else {
        model_summary(&pm, type, false);
        printf("fleet %s: %s (%s memory, %s/s, %s BF16 each)\n", o->fleet, hw.desc,
               SI(hw.mem_bytes, "B"), SI(hw.mem_bw, "B"), SI(hw.bf16_flops, "FLOP/s"));
        printf("context %.0f tokens per sequence; expected figures at %.0f%% of peak FLOPs and "
               "%.0f%% of peak bandwidth%s\n\n",
               io.n_ctx, 100 * (o->eff_flops > 0 ? o->eff_flops : 0.5),
               100 * (o->eff_bw > 0 ? o->eff_bw : 0.8),
               hw.mm_bw1[8] > 0 || hw.mm_bw1[0] > 0 ? " (measured matmul rates)" : "");
        printf("%4s %4s %5s %11s %11s %8s | %17s | %17s | %9s | %s\n", "tp", "pp", "repl",
               "weights/dev", "KV/seq/dev", "seqs", "prompt tok/s", "gen tok/s (1 seq)", "comm/tok",
               "batched gen tok/s");
        printf("%4s %4s %5s %11s %11s %8s | %8s %8s | %8s %8s | %9s |\n", "", "", "", "", "", "",
               "bound", "expect", "bound", "expect", "");
        bool any_unknown = false;
        for (int i = 0; i < nr; i++) {
            gk_plan_infer *r = &rows[i];
            char comm[32] = "n/a";
            if (isfinite(r->gen_comm_s))
                snprintf(comm, sizeof comm, "%.3g ms", 1e3 * r->gen_comm_s);
            else
                any_unknown = true;
            printf("%4d %4d %5.0f %11s %11s %8.0f | %8s %8s | %8s %8s | %9s | %s "
                   "(%.0f seqs)\n",
                   r->split.tp, r->split.pp, floor(n / (r->split.tp * r->split.pp)),
                   SI(r->weight_bytes_dev, "B"), SI(r->kv_bytes_seq_dev, "B"), r->max_seqs,
                   RATE(r->prompt_bound), RATE(r->prompt_expect), RATE(r->gen_bound),
                   RATE(r->gen_expect), comm, RATE(r->gen_batch_bound), r->gen_batch_seqs);
        }
        for (int i = 0; i < nr; i++) {
            const gk_plan_infer *r = &rows[i];
            for (int k = 0; k < 2; k++) {
                const gk_plan_parts *p = k ? &r->gen_parts : &r->prompt_parts;
                if (!(p->total > 0)) continue;
                if (!i && !k) printf("\ntime by part (calibrated rates, forward.c's calls):\n");
                printf("  tp %d, %s: %.4g ms = matmuls %.3g + %.0f pool jobs %.3g + GeGLU %.3g + "
                       "attention %.3g + elementwise %.3g (pool) %.3g (one thread)\n",
                       r->split.tp, k ? "one generated token" : "the whole prompt", 1e3 * p->total,
                       1e3 * p->matmul, p->pool_runs, 1e3 * p->dispatch, 1e3 * p->geglu,
                       1e3 * p->attention, 1e3 * p->ew_pool, 1e3 * p->ew_serial);
            }
        }
        bool any_mem = false;
        for (int i = 0; i < nr; i++) any_mem |= rows[i].rank_mem.total > 0;
        if (any_mem) {
            printf("\npeak memory of one grok.c process (rank 0 of mpirun -np tp, batch %.0f, "
                   "%d threads):\n",
                   io.n_batch > 0 ? io.n_batch : 512,
                   io.n_threads > 0 ? io.n_threads
                   : hw.threads > 0 ? hw.threads
                                    : 1);
            printf("%4s %11s %11s %11s %11s %11s %11s\n", "tp", "weights", "replicated", "KV",
                   "context", "process", "total");
            for (int i = 0; i < nr; i++) {
                const gk_plan_rank_mem *k = &rows[i].rank_mem;
                if (k->total <= 0) continue;
                char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32];
                printf("%4d %11s %11s %11s %11s %11s %11s\n", rows[i].split.tp,
                       si(k->weights, "B", b1, 32), si(k->replicated, "B", b2, 32),
                       si(k->kv, "B", b3, 32), si(k->context, "B", b4, 32),
                       si(k->base, "B", b5, 32), si(k->total, "B", b6, 32));
            }
        }
        printf("\ntp: tensor parallel as grok.c splits (two all-reduces of %u values per layer "
               "per token); pp: pipeline stages needed to fit; repl: independent replicas.\n",
               pm.s.n_embd);
        if (any_unknown)
            printf("n/a: the device preset gives no bandwidth (link_bw / net_bw) for the link "
                   "this split needs, so its communication time is unknown.\n");
    }
    if (o->svg) {
        /* tokens/s of one sequence against TP ranks for several links */
        static const struct {
            const char *label;
            double bw, lat;
        } links[] = {{"NVLink-class 450 GB/s, 3 us", 450e9, 3e-6},
                     {"InfiniBand 50 GB/s, 6 us", 50e9, 6e-6},
                     {"10 GbE (1.25 GB/s, 30 us)", 1.25e9, 30e-6},
                     {"1 GbE (125 MB/s, 100 us)", 125e6, 100e-6}};
        series s[4];
        int ns = 0;
        for (int k = 0; k < 4; k++) {
            s[ns] = (series){.label = links[k].label};
            gk_plan_hw h = hw;
            h.link_bw = h.net_bw = links[k].bw;
            h.link_lat = h.net_lat = links[k].lat;
            for (uint32_t tp = 1; tp <= heads && s[ns].n < 64; tp++) {
                if (heads % tp) continue;
                gk_plan_infer r;
                if (gk_plan_infer_eval(&pm, &h, tp, (int)tp, &io, &r, &err) < 0) continue;
                s[ns].x[s[ns].n] = tp;
                s[ns].y[s[ns].n++] = r.gen_expect;
            }
            if (s[ns].n) ns++;
        }
        char title[160];
        snprintf(title, sizeof title, "%s on %s: generation tokens/s against TP ranks", pm.s.name,
                 hw.name);
        if (write_svg(o->svg, title, "tensor-parallel ranks", "tokens/s (1 sequence)", s, ns,
                      false) < 0)
            return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ train --- */

/* How the weights are typed: --type, a file's own types, or bf16. */
static const char *type_label(const plan_opts *o) {
    if (o->type) return o->type;
    return o->model && strstr(o->model, ".gguf") ? "as stored" : "bf16";
}

static int cmd_train(const plan_opts *o) {
    gk_plan_model pm;
    gk_plan_hw hw;
    gk_err err;
    double n;
    if (load_model(o, &pm) < 0) return 1;
    if (!o->fleet || !o->tokens) {
        fprintf(stderr, "grok plan train: --fleet and --tokens are required "
                        "(e.g. --tokens 15e12 --fleet 16384xH100)\n");
        return 2;
    }
    if (gk_plan_fleet_parse(o->fleet, &n, &hw, &err) < 0) {
        fprintf(stderr, "grok plan train: %s\n", err.msg);
        return 1;
    }
    double seq = o->seq > 0 ? o->seq : (pm.s.n_ctx < 8192 ? pm.s.n_ctx : 8192);
    gk_plan_train t;
    if (gk_plan_train_eval(&pm, &hw, n, o->tokens, seq, o->mfu, o->pue, &t, &err) < 0) {
        fprintf(stderr, "grok plan train: %s\n", err.msg);
        return 1;
    }
    gk_plan_train_cost tc = gk_plan_train_per_token(&pm, seq);
    double P = gk_plan_params(&pm), A = gk_plan_params_active(&pm);
    if (o->json) {
        printf("{\n");
        model_summary(&pm, type_label(o), true);
        printf("\"fleet\": {\"devices\": %.0f, \"kind\": \"%s\", \"source\": \"%s\"},\n"
               "\"tokens\": %.6g, \"seq\": %.0f, \"mfu\": %g, \"pue\": %g,\n"
               "\"flops_per_token\": %.6g, \"fwd_matmul_flops_per_token\": %.6g, "
               "\"fwd_attn_flops_per_token\": %.6g, \"flops\": %.6g, \"days\": %.6g, "
               "\"device_hours\": %.6g, \"energy_mwh\": %.6g, \"avg_power_w\": %.6g, "
               "\"state_bytes_per_device\": %.6g, \"measured_tokens_per_s\": %.6g}\n",
               n, hw.name, hw.source, o->tokens, seq, o->mfu, o->pue, tc.flops, tc.fwd_matmul_flops,
               tc.fwd_attn_flops, t.flops, t.days, t.device_hours, t.energy_mwh, t.avg_power_w,
               t.mem_state_dev,
               gk_plan_train_tokens_per_s_measured(&pm, &hw, seq,
                                                   o->step_tokens > 0 ? o->step_tokens : seq * 8));
    } else {
        model_summary(&pm, type_label(o), false);
        printf("fleet %s: %s, %s BF16 peak each, %.0f W each\n", o->fleet, hw.desc,
               SI(hw.bf16_flops, "FLOP/s"), hw.tdp_w);
        printf("training on %s tokens in sequences of %.0f, MFU %.2f, PUE %.2f:\n",
               SI(o->tokens, ""), seq, o->mfu, o->pue);
        printf("  FLOPs per token    %s = 3 x (matmuls %s + attention %s)  [6N = %s]\n",
               SI(tc.flops, ""), SI(tc.fwd_matmul_flops, ""), SI(tc.fwd_attn_flops, ""),
               SI(6 * A, ""));
        printf("  total FLOPs        %.3g\n", t.flops);
        printf("  time               %.1f days (%.3g s)\n", t.days, t.seconds);
        printf("  device-hours       %.4g\n", t.device_hours);
        printf("  energy             %.4g MWh at %s average (%.0f devices x %.0f W x PUE %.2f)\n",
               t.energy_mwh, SI(t.avg_power_w, "W"), n, hw.tdp_w, o->pue);
        printf("  optimizer state    %s per device (16 B per parameter fully sharded over "
               "%.0f devices; %s parameters)\n",
               SI(t.mem_state_dev, "B"), n, SI(P, ""));
        printf("  activations        %s per sequence with fused attention, %s with the scores "
               "kept (bf16, no recomputation, no model parallelism: Korthikanti et al. 2022)\n",
               SI(gk_plan_train_act_bytes_per_token(&pm.s, seq, true) * seq, "B"),
               SI(gk_plan_train_act_bytes_per_token(&pm.s, seq, false) * seq, "B"));
        double mt = gk_plan_train_tokens_per_s_measured(
            &pm, &hw, seq, o->step_tokens > 0 ? o->step_tokens : seq * 8);
        if (mt > 0) {
            double stok = o->step_tokens > 0 ? o->step_tokens : seq * 8;
            gk_plan_train_times tt;
            gk_plan_train_step_time(&pm, &hw, seq, stok, &tt);
            printf("  measured rates     %.4g tokens/s per process (grok train on this machine, "
                   "steps of %.0f tokens: %.3g s each)\n",
                   mt, stok, tt.total);
            /* in the order of grok train's "time per step" line */
            printf("                     per step (ms): %.2f = products %.2f + attention %.2f + "
                   "elementwise on the pool %.2f + on one thread %.2f + optimizer %.2f + pool "
                   "steps %.2f\n",
                   1e3 * tt.total, 1e3 * tt.gemm, 1e3 * tt.attn, 1e3 * tt.ew_par, 1e3 * tt.ew_ser,
                   1e3 * tt.opt, 1e3 * tt.pool);
        }
        double dp = gk_plan_dp_bytes_per_step(&pm, (int)(n < 1e9 ? n : 1e9), 2);
        printf("  DP all-reduce      %s sent per replica per step (bf16 gradients, ring)\n",
               SI(dp, "B"));
    }
    if (o->svg) {
        series s[3];
        const double mfus[3] = {o->mfu, o->mfu / 2, fmin(1.0, o->mfu * 1.5)};
        for (int k = 0; k < 3; k++) {
            static char lab[3][48];
            snprintf(lab[k], sizeof lab[k], "MFU %.2f", mfus[k]);
            s[k] = (series){.label = lab[k]};
            for (double f = n / 64 < 1 ? 1 : n / 64; f <= n * 64 && s[k].n < 64; f *= 2) {
                gk_plan_train r;
                if (gk_plan_train_eval(&pm, &hw, floor(f), o->tokens, seq, mfus[k], o->pue, &r,
                                       &err) < 0)
                    continue;
                s[k].x[s[k].n] = floor(f);
                s[k].y[s[k].n++] = r.days;
            }
        }
        char title[160];
        snprintf(title, sizeof title, "%s, %s tokens on %s: days to train", pm.s.name,
                 SI(o->tokens, ""), hw.name);
        if (write_svg(o->svg, title, "devices", "days", s, 3, true) < 0) return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ fleet --- */

static int cmd_fleet(const plan_opts *o) {
    gk_plan_hw hw;
    gk_err err;
    if (!o->devices || !o->kind) {
        fprintf(stderr, "grok plan fleet: --devices and --kind are required "
                        "(e.g. --devices 50e6 --kind H100)\n");
        return 2;
    }
    if (o->svg) {
        fprintf(stderr, "grok plan fleet: no plot here (--svg is for infer and train)\n");
        return 2;
    }
    if (gk_plan_hw_find(o->kind, &hw, &err) < 0) {
        fprintf(stderr, "grok plan fleet: %s\n", err.msg);
        return 1;
    }
    gk_plan_fleet f;
    if (gk_plan_fleet_eval(&hw, o->devices, o->mfu, o->pue, &f, &err) < 0) {
        fprintf(stderr, "grok plan fleet: %s\n", err.msg);
        return 1;
    }
    if (o->json) {
        printf("{\"devices\": %.6g, \"kind\": \"%s\", \"source\": \"%s\", \"mfu\": %g, \"pue\": "
               "%g, \"power_w\": %.6g, \"energy_mwh_year\": %.6g, \"flops_per_s\": %.6g, "
               "\"flops_year\": %.6g, \"chinchilla_params\": %.6g, \"chinchilla_tokens\": "
               "%.6g}\n",
               f.devices, hw.name, hw.source, o->mfu, o->pue, f.power_w, f.energy_mwh_year,
               f.flops_per_s, f.flops_year, f.chinchilla_params, f.chinchilla_tokens);
        return 0;
    }
    printf("fleet: %s x %s (%s)\n", SI(f.devices, ""), hw.name, hw.desc);
    printf("  power draw          %s (%.0f W each x PUE %.2f)\n", SI(f.power_w, "W"), hw.tdp_w,
           o->pue);
    printf("  energy per year     %.4g TWh\n", f.energy_mwh_year / 1e6);
    printf("  peak BF16           %.3g FLOP/s; at MFU %.2f: %.3g FLOP/s\n",
           f.devices * hw.bf16_flops, o->mfu, f.flops_per_s);
    printf("  training compute    %.3g FLOPs per year\n", f.flops_year);
    printf("  compute-optimal     %s parameters on %s tokens in one year\n",
           SI(f.chinchilla_params, ""), SI(f.chinchilla_tokens, ""));
    printf("                      (Chinchilla, Hoffmann et al. 2022: C = 6 N D and D = 20 N, "
           "so N = sqrt(C / 120))\n");
    printf("  Llama 3.1 405B's 3.8e25 FLOPs would take %.3g hours\n",
           3.8e25 / f.flops_per_s / 3600);
    return 0;
}

/* ---------------------------------------------------------- presets --- */

static int cmd_presets(const plan_opts *o) {
    if (o->json)
        printf("{\"models\": [");
    else
        printf("model presets (--model):\n");
    for (int i = 0; gk_plan_model_preset_name(i); i++) {
        gk_plan_shape s;
        gk_plan_model pm;
        gk_plan_shape_preset(gk_plan_model_preset_name(i), &s, NULL);
        if (gk_plan_model_build(&s, "bf16", &pm, NULL) < 0) continue;
        if (o->json)
            printf("%s{\"name\": \"%s\", \"params\": %.17g, \"active_params\": %.17g}",
                   i ? ", " : "", s.name, gk_plan_params(&pm), gk_plan_params_active(&pm));
        else
            printf("  %-16s %8s parameters, %8s active, %u layers, d %u\n", s.name,
                   SI(gk_plan_params(&pm), ""), SI(gk_plan_params_active(&pm), ""), s.n_layer,
                   s.n_embd);
    }
    if (o->json)
        printf("], \"devices\": [");
    else
        printf("\ndevice presets (--fleet NxNAME, --kind NAME):\n");
    for (int i = 0; gk_plan_hw_preset(i); i++) {
        const gk_plan_hw *h = gk_plan_hw_preset(i);
        if (o->json) {
            printf("%s{\"name\": \"%s\", \"bf16_flops\": %.6g, \"fp8_flops\": %.6g, \"mem_bytes\": "
                   "%.6g, \"mem_bw\": %.6g, \"link_bw\": %.6g, \"link_lat\": %.6g, \"domain\": %u, "
                   "\"net_bw\": %.6g, \"net_lat\": %.6g, \"tdp_w\": %.6g, \"source\": \"%s\"}",
                   i ? ", " : "", h->name, h->bf16_flops, h->fp8_flops, h->mem_bytes, h->mem_bw,
                   h->link_bw, h->link_lat, h->domain, h->net_bw, h->net_lat, h->tdp_w, h->source);
            continue;
        }
        printf("  %-15s %s\n", h->name, h->desc);
        printf("      BF16 %s, FP8 %s dense; %s at %s/s; link %s/s x %u, %.0f us; net %s/s, "
               "%.0f us; %.0f W\n",
               SI(h->bf16_flops, "FLOP/s"), h->fp8_flops > 0 ? SI(h->fp8_flops, "FLOP/s") : "none",
               SI(h->mem_bytes, "B"), SI(h->mem_bw, "B"), SI(h->link_bw, "B"), h->domain,
               h->link_lat * 1e6, SI(h->net_bw, "B"), h->net_lat * 1e6, h->tdp_w);
        printf("      source: %s\n", h->source);
    }
    if (o->json)
        printf("]}\n");
    else
        printf("\naliases: H100 = H100-SXM, A100 = A100-80GB, GB200 = GB200-NVL72, CPU = "
               "CPU-2xEPYC9654\n");
    return 0;
}

/* -------------------------------------------------------- calibrate --- */

typedef struct {
    const float *buf;
    size_t n;
    double sum[256];
} bw_job;

/* Reads the buffer with the f32 dot kernel (SIMD), in 64 KiB pieces. */
static void bw_part(void *arg, int ith, int nth) {
    bw_job *j = arg;
    gk_vec_dot_fn dot = gk_type_traits_of(GK_TYPE_F32)->vec_dot;
    const int64_t piece = 16384;
    int64_t lo, hi;
    gk_split((int64_t)j->n / piece, ith, nth, &lo, &hi);
    double s = 0;
    for (int64_t i = lo; i < hi; i++) s += dot(piece, j->buf + i * piece, j->buf);
    j->sum[ith] = s;
}

/* Every figure is timed over at least CAL_MIN_S seconds in trials of at least
 * CAL_TRIAL_S (3 or more), and is the median trial's time per repetition: on a quiet
 * machine the same as the best, on shared cores the typical share of them over a
 * stretch as long as a layer's work, as a `grok bench` run of a second sees it (a
 * mean would let one descheduled trial count for many). */
#define CAL_MIN_S 0.3
#define CAL_TRIAL_S 0.02

typedef struct {
    double min_s, start, t0, best; /* best: the median trial's seconds per repetition */
    long reps, trials;
    double per[256];
} cal_timer;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static cal_timer cal_start(double min_s) {
    double now = gk_time_s();
    return (cal_timer){.min_s = min_s, .start = now, .t0 = now};
}

/* Counts one repetition; false when the timing is done (ct->best then holds the
 * seconds of one repetition). */
static bool cal_more(cal_timer *ct) {
    double now = gk_time_s();
    ct->reps++;
    if (now - ct->t0 >= CAL_TRIAL_S) {
        if (ct->trials < 256) ct->per[ct->trials++] = (now - ct->t0) / ct->reps;
        ct->reps = 0;
        ct->t0 = gk_time_s();
    }
    if (now - ct->start < ct->min_s || ct->trials < 3) return true;
    qsort(ct->per, (size_t)ct->trials, sizeof(double), cmp_double);
    ct->best = ct->per[ct->trials / 2];
    return false;
}

/* Seconds of a call of gk_matmul with T tokens (cal_timer's figure). */
static double time_matmul(gk_pool *pool, const void *w, gk_dtype t, size_t nb_row, int64_t rows,
                          int64_t cols, const float *x, float *y, int T, void *qbuf, double min_s) {
    cal_timer ct = cal_start(min_s);
    do gk_matmul(pool, y, w, t, nb_row, rows, x, cols, T, qbuf);
    while (cal_more(&ct));
    return ct.best;
}

static void noop_job(void *arg, int ith, int nth) {
    (void)arg, (void)ith, (void)nth;
}

/* One of calibrate's T grids (T = 8, 32, 128, 512 by two row lengths), in GFLOP/s. */
static void print_grid(const char *type, const char *what, int c0, int c1, const double (*g)[2]) {
    printf("          %-5s         %s rows of %d: %.1f / %.1f / %.1f / %.1f GFLOP/s; of %d: %.1f "
           "/ %.1f / %.1f / %.1f\n",
           type, what, c0, g[0][0] / 1e9, g[1][0] / 1e9, g[2][0] / 1e9, g[3][0] / 1e9, c1,
           g[0][1] / 1e9, g[1][1] / 1e9, g[2][1] / 1e9, g[3][1] / 1e9);
}

/* Whether type name t is in the comma-separated list (NULL: every type). */
static bool type_listed(const char *list, const char *t) {
    if (!list) return true;
    size_t n = strlen(t);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncasecmp(p, t, n)) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

/* Resident bytes of this process now (/proc/self/status VmRSS), 0 if unknown. */
static double rss_now(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    double kib = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kib = atof(line + 6);
    fclose(f);
    return kib * 1024.0;
}

/* Items of the engine's attention job (forward.c attn_part) over an f32 cache: each
 * thread runs `items` of them, a run of nq query heads over the nk keys of a K and V.
 * Warm (n_reg 1): every item on the same K and V, shared by the threads as a KV
 * group's rows are by a prompt's tokens. Cold: each item on K and V of its own, in
 * turn from an arena far past the caches, as a generated token finds a layer's cache
 * after a whole forward's weights went by. */
typedef struct {
    const float *kv; /* n_reg regions of K [nk][hd] then V [nk][hd] */
    const float *q;
    float *scores, *out; /* [nt][GK_ATTN_QMAX][nk], [nt][GK_ATTN_QMAX][hd] */
    int hd, nq, items;
    int64_t nk, n_reg, next; /* next: the region of the call's first item */
} attn_cal_job;

static void attn_cal_part(void *arg, int ith, int nth) {
    attn_cal_job *j = arg;
    float *s = j->scores + (size_t)ith * GK_ATTN_QMAX * j->nk;
    float *out = j->out + (size_t)ith * GK_ATTN_QMAX * j->hd;
    const size_t row = (size_t)j->hd * sizeof(float), reg = 2 * (size_t)j->nk * j->hd;
    for (int it = 0; it < j->items; it++) {
        const float *K = j->kv + (size_t)((j->next + (int64_t)it * nth + ith) % j->n_reg) * reg;
        const float *V = K + (size_t)j->nk * j->hd;
        gk_attn_dots(s, (size_t)j->nk, K, row, GK_TYPE_F32, j->q, j->nq, j->nk, j->hd);
        for (int i = 0; i < j->nq; i++)
            gk_attn_softmax(s + (size_t)i * j->nk, j->nk, 0.0883883461f, 30.0f, 1.0f, false);
        gk_attn_wsum(out, V, row, GK_TYPE_F32, s, (size_t)j->nk, j->nq, j->nk, j->hd);
    }
}

/* The summation tree's job at batch 1 where gk_matmul_chunks cannot run it
 * (forward.c chunk_part with one chunk a thread): thread i multiplies its chunk of
 * the columns (cw of them, the row stride the whole row's) on its own, no pool under
 * it, into a result of its own. */
typedef struct {
    const uint8_t *w;
    gk_dtype t;
    size_t nb_row, qsize;
    int64_t rows, cw;
    const float *x;
    float *y;   /* [nt][rows] */
    uint8_t *q; /* [nt][qsize] */
} tree_cal_job;

static void tree_cal_part(void *arg, int ith, int nth) {
    (void)nth;
    tree_cal_job *j = arg;
    size_t off = gk_gemm_col_offset(j->t, ith * j->cw);
    gk_matmul(NULL, j->y + (size_t)ith * j->rows, j->w + off, j->t, j->nb_row, j->rows,
              j->x + ith * j->cw, j->cw, 1, j->q + (size_t)ith * j->qsize);
}

/* The arena's rows (rows x cols of type t) as the engine holds them: packed for the
 * GEMM (gk_gemm_pack, strip by strip) where this CPU has a packed layout for t (the
 * first context packs them). Returns the type to time them as; matrices cut from a
 * packed arena must have whole strips (rows a multiple of 16). */
static gk_dtype cal_layout(gk_dtype t, uint8_t *w, size_t nb_row, int64_t rows, int64_t cols) {
    if (!gk_gemm_packable(t, GK_GEMM_STRIP, cols)) return t;
    size_t strip = GK_GEMM_STRIP * nb_row;
    uint8_t *tmp = malloc(strip);
    if (!tmp) return t; /* timed as rows: what an engine short of memory would run */
    for (int64_t s = 0; s < rows / GK_GEMM_STRIP; s++) {
        gk_gemm_pack(t, w + (size_t)s * strip, nb_row, GK_GEMM_STRIP, cols, tmp);
        memcpy(w + (size_t)s * strip, tmp, strip);
    }
    free(tmp);
    return (gk_dtype)(t | GK_GEMM_PACKED);
}

/* One product of the tree's job as forward.c's chunk_products runs it at batch 1:
 * every chunk in one pass of the threads over whole rows (gk_matmul_chunks) where
 * the kernels allow, else each thread on its own chunk (chunk_part). */
static void tree_cal_run(gk_pool *pool, tree_cal_job *j, int nt) {
    float *ys[64];
    for (int ch = 0; ch < nt && ch < 64; ch++) ys[ch] = j->y + (size_t)ch * j->rows;
    if (nt > 64 || !gk_matmul_chunks(pool, ys, j->w, j->t, j->nb_row, j->rows, j->x, j->cw * nt, nt,
                                     j->q, (size_t)nt * j->qsize))
        gk_pool_run(pool, tree_cal_part, j);
}

/* A short grok train step on a small model of calibrate's own (Grok-2 shape, d 256,
 * 2 layers, 4 experts of 256 with 2 used, a dense MLP of 512, vocabulary 1024; 2
 * sequences of 128 tokens), timed by part as src/train counts them (gk_tstate_stats,
 * the optimizer around gk_adamw_step with the gradients' zeroing): each part's mean
 * over the steps after two warm-up steps, over the time hw's separate figures give it
 * (gk_plan_train_step_time without factors), into hw->train_k_*. Its shape is unlike
 * the shipped model's (d 128, 4 layers, 8 experts, vocabulary 4096, 512-token steps),
 * so that grok plan's prediction of that model's training stays a check. */
static int cal_train_step(gk_pool *pool, gk_plan_hw *hw, bool quiet, gk_err *err) {
    gk_hparams hp = {.variant = GK_VARIANT_GROK2,
                     .n_vocab = 1024,
                     .n_ctx_train = 128,
                     .n_embd = 256,
                     .n_layer = 2,
                     .n_head = 8,
                     .n_head_kv = 2,
                     .head_dim = 32,
                     .n_rot = 32,
                     .n_ff = 512,
                     .n_ff_exp = 256,
                     .n_expert = 4,
                     .n_expert_used = 2,
                     .norm_eps = 1e-5f,
                     .rope_freq_base = 10000,
                     .embedding_scale = 16.0f,
                     .attn_out_scale = 0.18f,
                     .logit_scale = 0.5f,
                     .attn_softcap = 30,
                     .router_softcap = 30,
                     .final_softcap = 50,
                     .attn_temp_len = 128};
    enum { B = 2, T = 128, N = B * T };
    int rc = -1;
    float *m = NULL, *v = NULL;
    gk_tstate *st = NULL;
    gk_tmodel *tm = gk_tmodel_new(&hp, GK_NUMERICS_REFERENCE, err);
    if (!tm) return -1;
    gk_tmodel_init(tm, 7, 0.02f);
    st = gk_tstate_new(tm, B, T, pool, err);
    m = calloc(tm->n_params, sizeof(float));
    v = calloc(tm->n_params, sizeof(float));
    if (!st) goto done;
    if (!m || !v) {
        gk_fail(err, "out of memory for calibrate's training step");
        goto done;
    }
    int32_t in[N], tg[N];
    uint32_t r = 12345;
    for (int i = 0; i < N; i++) {
        r = r * 1664525u + 1013904223u, in[i] = (int32_t)(r >> 8) % 1024;
        r = r * 1664525u + 1013904223u, tg[i] = (int32_t)(r >> 8) % 1024;
    }
    gk_adamw_cfg ac = {.lr_max = 1e-3f,
                       .lr_min = 1e-4f,
                       .total_steps = 1000,
                       .beta1 = 0.9f,
                       .beta2 = 0.95f,
                       .eps = 1e-8f,
                       .weight_decay = 0.1f,
                       .clip = 1.0f};
    gk_tstats s0 = {0};
    double opt = 0, t_begin = 0;
    int timed = 0;
    for (int i = 0;; i++) {
        if (i == 2) s0 = gk_tstate_stats(st), t_begin = gk_time_s();
        double t0 = gk_time_s();
        memset(tm->g, 0, tm->n_params * sizeof(float));
        double t1 = gk_time_s();
        gk_tloss l;
        if (gk_tforward(st, in, tg, &l, err) < 0) goto done;
        gk_tbackward(st, 1.0f / N, 0.01f);
        double t2 = gk_time_s();
        gk_adamw_step(tm, m, v, i + 1, &ac, pool);
        double t3 = gk_time_s();
        if (i >= 2) opt += (t1 - t0) + (t3 - t2), timed++;
        if (timed >= 3 && gk_time_s() - t_begin >= CAL_MIN_S) break;
    }
    double ser;
    gk_tstats d = gk_tstats_since(st, &s0, timed, &ser);
    double fb = d.forward_s + d.backward_s;
    opt /= timed;
    gk_plan_shape shape;
    gk_plan_shape_from_hparams(&hp, "calibrate's training model", &shape);
    gk_plan_model pm;
    if (gk_plan_model_build(&shape, "f32", &pm, err) < 0) goto done;
    gk_plan_hw h0 = *hw;
    h0.train_k_gemm = h0.train_k_attn = h0.train_k_pool = h0.train_k_ser = h0.train_k_opt = 0;
    gk_plan_train_times tt;
    if (gk_plan_train_step_time(&pm, &h0, T, N, &tt) <= 0) {
        gk_fail(err, "calibrate's training step: the plan has no rates to model it with");
        goto done;
    }
    hw->train_k_gemm = d.gemm_s / tt.gemm;
    hw->train_k_attn = d.attn_s / tt.attn;
    hw->train_k_pool = d.pool_ew_s / tt.ew_par;
    hw->train_k_ser = (ser > 0 ? ser : 0.1 * tt.ew_ser) / tt.ew_ser;
    hw->train_k_opt = opt / tt.opt;
    if (!quiet)
        printf("training step (d 256, 256 tokens) %.2f ms, measured / modelled by part: products "
               "%.2f, attention %.2f, pool jobs %.2f, one thread %.2f, optimizer %.2f\n",
               1e3 * (fb + opt), hw->train_k_gemm, hw->train_k_attn, hw->train_k_pool,
               hw->train_k_ser, hw->train_k_opt);
    rc = 0;
done:
    free(m), free(v);
    gk_tstate_free(st);
    gk_tmodel_free(tm);
    return rc;
}

static int cmd_calibrate(int argc, char **argv, const plan_opts *o) {
    gk_dist dist;
    gk_err err;
    if (gk_dist_init(&dist, &argc, &argv, &err) < 0) {
        fprintf(stderr, "grok plan calibrate: %s\n", err.msg);
        return 1;
    }
    int nt = o->threads > 0 ? (int)o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    gk_pool *pool = gk_pool_new(nt, &err);
    if (!pool) {
        fprintf(stderr, "grok plan calibrate: %s\n", err.msg);
        gk_dist_finalize(&dist);
        return 1;
    }
    gk_plan_hw hw = {0};
    /* a started process (MPI initialised under mpirun, the pool's threads), before any
     * buffer: what a grok.c rank holds besides its model and context */
    hw.rss_base = rss_now();
    snprintf(hw.name, sizeof hw.name, "this-machine");
    long cores = sysconf(_SC_NPROCESSORS_ONLN), pages = sysconf(_SC_PHYS_PAGES),
         psz = sysconf(_SC_PAGESIZE);
    snprintf(hw.desc, sizeof hw.desc,
             "measured by grok plan calibrate: %ld CPUs, kernels %s, "
             "%d threads",
             cores, gk_kernels_name(), nt);
    snprintf(hw.source, sizeof hw.source,
             "grok plan calibrate (grok %s): memory read bandwidth, "
             "pool dispatch, gk_matmul per weight type at batch 1 by size and at T = 8..512, "
             "gk_geglu, f32 "
             "dot, libm, MPI all-reduce",
             GK_VERSION);
    hw.threads = nt;
    hw.mem_bytes = (double)pages * psz;
    hw.domain = 1;
    hw.tdp_w = 0;
    bool quiet = o->json;
    /* memory bandwidth: read a 512 MiB buffer (well past any cache) */
    size_t nbw = (size_t)128 << 20;
    float *buf = gk_malloc_aligned(nbw * sizeof(float), &err);
    if (!buf) {
        fprintf(stderr, "grok plan calibrate: %s\n", err.msg);
        gk_pool_free(pool);
        gk_dist_finalize(&dist);
        return 1;
    }
    for (size_t i = 0; i < nbw; i++) buf[i] = (float)(i & 7);
    /* the link first, with every rank; then only rank 0 measures the machine (a rank
     * waiting in MPI would spin on a core the measurements need) */
    hw.link_bw = hw.net_bw = 0;
    hw.link_lat = hw.net_lat = 0;
    if (dist.size >= 2) {
        /* MPI all-reduce: latency of 1 value, bandwidth of 4 Mi values (means, as the
         * other rates) */
        float one = 1;
        double t0 = gk_time_s(), tl, tbw;
        int r = 0;
        gk_dist_barrier(&dist);
        for (; r < 500; r++)
            if (gk_dist_sum_f32(&dist, &one, 1, &err) < 0) break;
        tl = (gk_time_s() - t0) / (r ? r : 1);
        size_t nbig = (size_t)4 << 20;
        gk_dist_barrier(&dist);
        t0 = gk_time_s();
        for (r = 0; r < 4; r++)
            if (gk_dist_sum_f32(&dist, buf, nbig, &err) < 0) break;
        tbw = (gk_time_s() - t0) / (r ? r : 1);
        double nr = dist.size;
        /* a ring all-reduce moves 2 (n-1)/n of the data per rank */
        hw.net_lat = hw.link_lat = tl / (2 * (nr - 1));
        hw.net_bw = hw.link_bw = 2 * (nr - 1) / nr * nbig * 4 / tbw;
        hw.domain = (uint32_t)dist.size;
        if (!quiet && dist.rank == 0)
            printf("MPI all-reduce (np %d)   latency %.1f us per step, %.2f GB/s\n", dist.size,
                   hw.net_lat * 1e6, hw.net_bw / 1e9);
    }
    if (dist.rank != 0) {
        /* asleep until rank 0 is done: MPI_Finalize would spin on a core */
        gk_free_aligned(buf);
        gk_pool_free(pool);
        gk_dist_barrier_idle(&dist);
        gk_dist_finalize(&dist);
        return 0;
    }
    bw_job bj = {.buf = buf, .n = nbw};
    cal_timer ct = cal_start(CAL_MIN_S);
    do gk_pool_run(pool, bw_part, &bj);
    while (cal_more(&ct));
    hw.mem_bw = nbw * sizeof(float) / ct.best;
    if (!quiet && dist.rank == 0) printf("memory read bandwidth   %.2f GB/s\n", hw.mem_bw / 1e9);
    /* matmuls: at batch 1 matrices of up to 96 MiB read in turn from a 512 MiB arena,
     * past the caches, so they stream from memory as generation does on a model of real
     * size; at batch 512 a 1024 x 4096 one (compute-bound, as in a prompt) */
    const int64_t cols = 4096, rows512 = 1024;
    const size_t big = (size_t)96 << 20, arena = (size_t)512 << 20;
    const int T = 512;
    float *x = gk_malloc_aligned((size_t)T * cols * sizeof(float), &err);
    float *y = gk_malloc_aligned((size_t)T * 32768 * sizeof(float), &err);
    void *qbuf = gk_malloc_aligned(gk_matmul_qbuf_size(cols, T), &err);
    uint8_t *w = gk_malloc_aligned(arena, &err);
    int rc = 0;
    if (!x || !y || !qbuf || !w) {
        fprintf(stderr, "grok plan calibrate: %s\n", err.msg);
        rc = 1;
        goto done;
    }
    /* streaming reads of buffers of 4 .. 512 MiB, each read again and again: where the
     * caches end (some machines hold 96 MiB and more) */
    for (int k = 0; k < 8; k++) {
        gk_bandwidth rb;
        const size_t sz = (size_t)4 << k << 20;
        if (gk_read_bandwidth(pool, sz, (int)(((size_t)1 << 30) / sz) + 4, &rb, &err) < 0) {
            fprintf(stderr, "grok plan calibrate: %s\n", err.msg);
            rc = 1;
            goto done;
        }
        hw.read_bw_at[k] = rb.bytes_per_s;
    }
    if (!quiet)
        printf("streaming reads again and again, 4 / 16 / 64 / 128 / 256 / 512 MiB: %.1f / %.1f / "
               "%.1f / %.1f / %.1f / %.1f GB/s\n",
               hw.read_bw_at[0] / 1e9, hw.read_bw_at[2] / 1e9, hw.read_bw_at[4] / 1e9,
               hw.read_bw_at[5] / 1e9, hw.read_bw_at[6] / 1e9, hw.read_bw_at[7] / 1e9);
    for (int64_t i = 0; i < (int64_t)T * cols; i++)
        x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (int t = 0; t < GK_PLAN_N_TYPES; t++) {
        const gk_type_traits *tt = gk_type_traits_of((uint32_t)t);
        if (!gk_type_is_supported((uint32_t)t) || !tt->from_float ||
            !type_listed(o->types, tt->name))
            continue;
        size_t nb = gk_row_size((uint32_t)t, cols);
        if (!nb) continue;
        double t5 = time_matmul(pool, w, (gk_dtype)t, nb, rows512, cols, x, y, T, qbuf, CAL_MIN_S);
        hw.mm_flops512[t] = 2.0 * rows512 * cols * T / t5;
        if (!quiet && dist.rank == 0)
            printf("gk_matmul %-5s         batch 512: %7.2f GFLOP/s (%d pool jobs a call)\n",
                   tt->name, hw.mm_flops512[t] / 1e9, gk_plan_matmul_runs((uint32_t)t, T));
        hw.bf16_flops = fmax(hw.bf16_flops, hw.mm_flops512[t]);
        /* prompt chunks and an expert's share of one: T = 8 .. 512 tokens on 1024-row
         * matrices of 512- and 4096-wide rows, a different one of the arena each call as
         * a forward meets a model's (the weights written again for each width) */
        for (int c = 0; c < 2; c++) {
            int64_t wc = 512 << (3 * c);
            size_t nbc = gk_row_size((uint32_t)t, wc);
            if (!nbc) continue;
            for (int64_t r = 0; r < (int64_t)(big / nbc); r++)
                tt->from_float(x + (r % T) * wc, w + r * nbc, wc);
            const gk_dtype lt = cal_layout((gk_dtype)t, w, nbc, (int64_t)(big / nbc), wc);
            /* 1024 rows, and 4096 (a call's fixed part and its part per row) */
            for (int g = 0; g < 2; g++) {
                int64_t rows = 1024 << (2 * g), n_mat = (int64_t)(big / ((size_t)rows * nbc));
                for (int k = 0; k < 4; k++) {
                    int Tk = 8 << (2 * k);
                    int64_t mi = 0;
                    cal_timer ct = cal_start(CAL_MIN_S / 2);
                    do
                        gk_matmul(pool, y, w + (mi++ % n_mat) * rows * nbc, lt, nbc, rows, x, wc,
                                  Tk, qbuf);
                    while (cal_more(&ct));
                    (g ? hw.mm_flops_at4k : hw.mm_flops_at)[t][k][c] =
                        2.0 * rows * wc * Tk / ct.best;
                }
            }
        }
        /* narrow rows (64 and 128 wide) on 128-row matrices, as small models have them,
         * from 16 MiB of the arena (compute-bound: no need to pass the caches) */
        for (int c = 0; c < 2; c++) {
            int64_t wc = 64 << c, rows = 128;
            size_t nbc = gk_row_size((uint32_t)t, wc);
            if (!nbc || wc % tt->blck_size) continue;
            int64_t n_mat = (int64_t)((big / 6) / ((size_t)rows * nbc));
            for (int64_t r = 0; r < n_mat * rows; r++)
                tt->from_float(x + (r % T) * wc, w + r * nbc, wc);
            const gk_dtype lt = cal_layout((gk_dtype)t, w, nbc, n_mat * rows, wc);
            for (int k = 0; k < 4; k++) {
                int Tk = 8 << (2 * k);
                int64_t mi = 0;
                cal_timer ct = cal_start(CAL_MIN_S / 4);
                do
                    gk_matmul(pool, y, w + (mi++ % n_mat) * rows * nbc, lt, nbc, rows, x, wc, Tk,
                              qbuf);
                while (cal_more(&ct));
                hw.mm_flops_narrow[t][k][c] = 2.0 * rows * wc * Tk / ct.best;
            }
        }
        if (!quiet && dist.rank == 0) {
            if (hw.mm_flops_narrow[t][3][0] > 0)
                print_grid(tt->name, "128 rows:   ", 64, 128, hw.mm_flops_narrow[t]);
            print_grid(tt->name, "T = 8 / 32 / 128 / 512,", 512, 4096, hw.mm_flops_at[t]);
            print_grid(tt->name, "4096 rows:  ", 512, 4096, hw.mm_flops_at4k[t]);
        }
        /* batch 1 (generation): matrices of 256 KiB .. 96 MiB with rows 1024 and 4096
         * wide, each read once in turn from the 512 MiB arena as a model's are (past the
         * caches; the smaller ones pay their dispatches as a model's small matrices do) */
        for (int c = 0; c < 2; c++) {
            int64_t wc = 1024 << (2 * c);
            size_t nbc = gk_row_size((uint32_t)t, wc);
            if (!nbc) continue;
            for (int64_t r = 0; r < (int64_t)(big / nbc); r++)
                tt->from_float(x + (r % T) * wc, w + r * nbc, wc);
            const gk_dtype lt = cal_layout((gk_dtype)t, w, nbc, (int64_t)(big / nbc), wc);
            /* the arena: the first 96 MiB again and again, in whole strips of rows */
            const size_t unit = big / (GK_GEMM_STRIP * nbc) * GK_GEMM_STRIP * nbc;
            for (size_t o = unit; o + unit <= arena; o += unit) memcpy(w + o, w, unit);
            const size_t cold = arena / unit * unit;
            for (int k = 0; k < 4; k++) {
                size_t msz = k < 3 ? (size_t)256 << (10 + 3 * k) : big;
                int64_t rows = (int64_t)(msz / nbc);
                if (lt != (gk_dtype)t) rows &= ~(int64_t)(GK_GEMM_STRIP - 1); /* whole strips */
                int64_t n_mat = (int64_t)(cold / (rows * nbc));
                cal_timer ct = cal_start(CAL_MIN_S / 2);
                do
                    for (int64_t mi = 0; mi < n_mat; mi++)
                        gk_matmul(pool, y, w + mi * rows * nbc, lt, nbc, rows, x, wc, 1, qbuf);
                while (cal_more(&ct));
                hw.mm_bw1_at[t][k][c] = (double)n_mat * rows * nbc / ct.best;
                /* 256 KiB and 2 MiB matrices in turn from a 4 MiB arena (warm) */
                int64_t n_warm = k < 2 ? (int64_t)(((size_t)4 << 20) / (rows * nbc)) : 0;
                if (n_warm > 0) {
                    ct = cal_start(CAL_MIN_S / 2);
                    do
                        for (int64_t mi = 0; mi < n_warm; mi++)
                            gk_matmul(pool, y, w + mi * rows * nbc, lt, nbc, rows, x, wc, 1, qbuf);
                    while (cal_more(&ct));
                    hw.mm_bw1_warm[t][k][c] = (double)n_warm * rows * nbc / ct.best;
                }
                /* the same matrices as the summation tree runs attn_output and the downs:
                 * a chunk of the columns on each thread (when whole blocks split so) */
                int64_t cw = wc / nt;
                if (nt < 2 || wc % nt || !gk_row_size((uint32_t)t, cw)) continue;
                tree_cal_job tj = {.t = lt,
                                   .nb_row = nbc,
                                   .qsize = gk_matmul_qbuf_size(cw, 1),
                                   .rows = rows,
                                   .cw = cw,
                                   .x = x,
                                   .y = y,
                                   .q = qbuf};
                ct = cal_start(CAL_MIN_S / 2);
                do
                    for (int64_t mi = 0; mi < n_mat; mi++) {
                        tj.w = w + mi * rows * nbc;
                        tree_cal_run(pool, &tj, nt);
                    }
                while (cal_more(&ct));
                hw.mm_tree1_at[t][k][c] = (double)n_mat * rows * nbc / ct.best;
                if (n_warm > 0) {
                    ct = cal_start(CAL_MIN_S / 2);
                    do
                        for (int64_t mi = 0; mi < n_warm; mi++) {
                            tj.w = w + mi * rows * nbc;
                            tree_cal_run(pool, &tj, nt);
                        }
                    while (cal_more(&ct));
                    hw.mm_tree1_warm[t][k][c] = (double)n_warm * rows * nbc / ct.best;
                }
            }
        }
        hw.mm_bw1[t] = hw.mm_bw1_at[t][3][1];
        if (!quiet && dist.rank == 0)
            for (int c = 0; c < 2; c++)
                printf("          %-5s         batch 1, rows of %d, 256 KiB / 2 MiB / 16 MiB / 96 "
                       "MiB matrices: %.2f / %.2f / %.2f / %.2f GB/s\n",
                       tt->name, 1024 << (2 * c), hw.mm_bw1_at[t][0][c] / 1e9,
                       hw.mm_bw1_at[t][1][c] / 1e9, hw.mm_bw1_at[t][2][c] / 1e9,
                       hw.mm_bw1_at[t][3][c] / 1e9);
        if (!quiet && dist.rank == 0 && hw.mm_tree1_at[t][0][0] > 0)
            for (int c = 0; c < 2; c++)
                printf("          %-5s         batch 1, a chunk of rows of %d a thread (the "
                       "summation tree): %.2f / %.2f / %.2f / %.2f GB/s\n",
                       tt->name, 1024 << (2 * c), hw.mm_tree1_at[t][0][c] / 1e9,
                       hw.mm_tree1_at[t][1][c] / 1e9, hw.mm_tree1_at[t][2][c] / 1e9,
                       hw.mm_tree1_at[t][3][c] / 1e9);
        if (!quiet && dist.rank == 0)
            for (int c = 0; c < 2; c++)
                printf("          %-5s         batch 1, rows of %d, 256 KiB / 2 MiB matrices from "
                       "a 4 MiB arena (warm): %.2f / %.2f GB/s; the tree's %.2f / %.2f\n",
                       tt->name, 1024 << (2 * c), hw.mm_bw1_warm[t][0][c] / 1e9,
                       hw.mm_bw1_warm[t][1][c] / 1e9, hw.mm_tree1_warm[t][0][c] / 1e9,
                       hw.mm_tree1_warm[t][1][c] / 1e9);
    }
    /* attention's inner loop: f32 dots of head_dim 128 over a cached K (one thread,
     * as each (token, head) item runs on one) times the threads */
    {
        gk_vec_dot_fn dot = gk_type_traits_of(GK_TYPE_F32)->vec_dot;
        const int keys = 8192, hd = 128;
        volatile float sink = 0;
        cal_timer ct = cal_start(CAL_MIN_S);
        do {
            float s = 0;
            for (int k = 0; k < keys; k++) s += dot(hd, x, buf + (size_t)k * hd);
            sink += s;
        } while (cal_more(&ct));
        (void)sink;
        double tb = ct.best;
        /* q.k and P.V: two of these per key; P.V is a scalar-times-row loop of the same size */
        hw.attn_flops = 2.0 * hd * keys / tb * nt;
        if (!quiet && dist.rank == 0)
            printf("attention (f32 dot)     %.2f GFLOP/s over %d threads\n", hw.attn_flops / 1e9,
                   nt);
    }
    /* the training GEMM: a matrix's three products over 1024 tokens as src/train
     * calls them, Y = X W^T (gk_matmul), dX = dY W and dW += dY^T X (gk_sgemm, dY
     * transposed first), for square matrices of 128 to 1024 (small models run them
     * far from their peak) */
    for (int k = 0; k < 4; k++) {
        const int64_t Tn = 1024, nd = 128 << k;
        float *a = y, *b = x, *wm = b + Tn * nd, *dw = (float *)w, *scr = y + Tn * nd;
        gk_sgemm gx = {
            .C = a, .ldc = nd, .A = b, .lda = nd, .B = wm, .ldb = nd, .M = Tn, .N = nd, .K = nd};
        gk_sgemm gw = {.C = dw,
                       .ldc = nd,
                       .A = b,
                       .lda = nd,
                       .a_trans = true,
                       .B = wm,
                       .ldb = nd,
                       .M = nd,
                       .N = nd,
                       .K = Tn,
                       .acc = true};
        cal_timer ct = cal_start(CAL_MIN_S);
        do {
            gk_matmul(pool, a, wm, GK_TYPE_F32, (size_t)nd * sizeof(float), nd, b, nd, (int)Tn,
                      NULL);
            gk_sgemm_run(pool, &gx, NULL);
            gk_sgemm_run(pool, &gw, scr);
        } while (cal_more(&ct));
        double tp = ct.best;
        hw.tgemm_at[k] = 3.0 * 2.0 * Tn * nd * nd / tp;
        hw.tgemm_flops = hw.tgemm_at[k];
        if (!quiet && dist.rank == 0)
            printf("training GEMM %4d x %-4d %.2f GFLOP/s (forward, dX, dW over 1024 tokens)\n",
                   (int)nd, (int)nd, hw.tgemm_at[k] / 1e9);
    }
    /* attention's dot for the head sizes of small models (same loop, one thread) */
    for (int k = 0; k < 2; k++) {
        gk_vec_dot_fn dot = gk_type_traits_of(GK_TYPE_F32)->vec_dot;
        const int keys = 8192, hd = 32 << k;
        volatile float sink = 0;
        cal_timer ct = cal_start(CAL_MIN_S);
        do {
            float sacc = 0;
            for (int kk = 0; kk < keys; kk++) sacc += dot(hd, x, buf + (size_t)kk * hd);
            sink += sacc;
        } while (cal_more(&ct));
        (void)sink;
        double tb = ct.best;
        hw.attn_at[k] = 2.0 * hd * keys / tb * nt;
    }
    hw.attn_at[2] = hw.attn_flops;
    if (!quiet)
        printf("attention, heads of 32 / 64 / 128: %.2f / %.2f / %.2f GFLOP/s\n",
               hw.attn_at[0] / 1e9, hw.attn_at[1] / 1e9, hw.attn_at[2] / 1e9);
    /* the engine's attention job itself: items of runs of 1, 2, 4 query heads of 32, 64,
     * 128 over 64, 512, 4096 keys of an f32 cache (unit-scale rows), every thread running
     * such items at once as the job's threads do, warm and cold (attn_cal_job); enough
     * items per job that its dispatch (charged apart) is a small part */
    {
        const int64_t arena = (int64_t)64 << 20, nkmax = 4096; /* floats: 256 MiB */
        float *kv = buf, *qv = buf + arena, *sc = qv + GK_ATTN_QMAX * 128;
        float *ao = sc + (size_t)nt * GK_ATTN_QMAX * nkmax;
        for (int64_t i = 0; i < arena + GK_ATTN_QMAX * 128; i++)
            buf[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
        for (int cold = 0; cold < 2; cold++)
            for (int h = 0; h < 3; h++)
                for (int qi = 0; qi < 3; qi++)
                    for (int ki = 0; ki < 3; ki++) {
                        int64_t nk = (int64_t)64 << (3 * ki), hd = 32 << h;
                        attn_cal_job aj = {.kv = kv,
                                           .q = qv,
                                           .scores = sc,
                                           .out = ao,
                                           .hd = (int)hd,
                                           .nq = 1 << qi,
                                           .nk = nk,
                                           .items = (int)(nkmax * 8 / nk),
                                           .n_reg = cold ? arena / (2 * nk * hd) : 1};
                        cal_timer ct = cal_start(CAL_MIN_S / 4);
                        do {
                            gk_pool_run(pool, attn_cal_part, &aj);
                            aj.next = (aj.next + (int64_t)aj.items * nt) % aj.n_reg;
                        } while (cal_more(&ct));
                        (cold ? hw.attn_cold : hw.attn_item)[h][qi][ki] = ct.best / aj.items;
                    }
        if (!quiet)
            for (int cold = 0; cold < 2; cold++)
                for (int h = 0; h < 3; h++) {
                    double(*a)[3] = (cold ? hw.attn_cold : hw.attn_item)[h];
                    printf("attention job, %s, heads of %3d, runs of 1 / 2 / 4 heads over 64 / "
                           "512 / 4096 keys: %.2f %.2f %.2f / %.2f %.2f %.2f / %.2f %.2f %.2f us "
                           "an item\n",
                           cold ? "cold" : "warm", 32 << h, a[0][0] * 1e6, a[0][1] * 1e6,
                           a[0][2] * 1e6, a[1][0] * 1e6, a[1][1] * 1e6, a[1][2] * 1e6,
                           a[2][0] * 1e6, a[2][1] * 1e6, a[2][2] * 1e6);
                }
    }
    /* the engine's vector math of the elementwise passes (GELU, softmax, softcaps),
     * one thread: values per second over 4096 arguments as GELU gets them,
     * activations of unit scale (standard normal, by Box-Muller from a fixed LCG) */
    {
        const int n = 4096;
        float *in = buf, *outv = buf + n;
        uint64_t lcg = 12345;
        for (int i = 0; i < n; i += 2) {
            double u[2];
            for (int k = 0; k < 2; k++) {
                lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
                u[k] = ((double)(lcg >> 11) + 0.5) / 9007199254740992.0;
            }
            double rad = sqrt(-2.0 * log(u[0]));
            in[i] = (float)(rad * cos(6.283185307179586 * u[1]));
            in[i + 1] = (float)(rad * sin(6.283185307179586 * u[1]));
        }
        for (int fn = 0; fn < 3; fn++) {
            cal_timer ct = cal_start(CAL_MIN_S);
            long r = 0;
            do {
                gk_vmath(fn == 0 ? GK_VM_EXP : fn == 1 ? GK_VM_ERF : GK_VM_TANH, outv, in, n);
                in[r % n] += outv[(r * 7) % n] * 1e-30f; /* keep the loops live */
                r++;
            } while (cal_more(&ct));
            double rate = (double)n / ct.best;
            *(fn == 0 ? &hw.exp_rate : fn == 1 ? &hw.erf_rate : &hw.tanh_rate) = rate;
        }
        if (!quiet)
            printf("vector math, one thread exp %.1f M/s, erf %.1f M/s, tanh %.1f M/s\n",
                   hw.exp_rate / 1e6, hw.erf_rate / 1e6, hw.tanh_rate / 1e6);
        /* the engine's GeGLU (gk_geglu over the pool, both GELUs) on 2^20 elements (a
         * 512-token prompt's expert rows of 2048) of the same unit-scale activations,
         * restored before each call (that copy timed apart and taken off) */
        const int64_t ng = (int64_t)1 << 20;
        float *ga = buf + 2 * n, *gb = ga + ng, *gsrc = gb + ng;
        for (int64_t i = 0; i < ng; i++) gsrc[i] = in[i % n], gb[i] = in[(i * 7 + 3) % n];
        cal_timer cc = cal_start(CAL_MIN_S / 2);
        do memcpy(ga, gsrc, (size_t)ng * sizeof(float));
        while (cal_more(&cc));
        for (int g = 0; g < 2; g++) {
            cal_timer ct = cal_start(CAL_MIN_S);
            do {
                memcpy(ga, gsrc, (size_t)ng * sizeof(float));
                gk_geglu(pool, ga, gb, ng, g == 0 ? GK_GELU_ERF : GK_GELU_TANH);
            } while (cal_more(&ct));
            double tg = ct.best - cc.best;
            if (tg < 0.25 * ct.best) tg = 0.25 * ct.best;
            *(g == 0 ? &hw.geglu_erf : &hw.geglu_tanh) = (double)ng / tg;
        }
        /* and a call of 4096 elements (a generated token's expert rows), its dispatch in */
        const int64_t ns = 4096;
        cal_timer cs = cal_start(CAL_MIN_S / 4);
        do memcpy(ga, gsrc, (size_t)ns * sizeof(float));
        while (cal_more(&cs));
        for (int g = 0; g < 2; g++) {
            cal_timer ct = cal_start(CAL_MIN_S / 2);
            do {
                memcpy(ga, gsrc, (size_t)ns * sizeof(float));
                gk_geglu(pool, ga, gb, ns, g == 0 ? GK_GELU_ERF : GK_GELU_TANH);
            } while (cal_more(&ct));
            double tg = ct.best - cs.best;
            *(g == 0 ? &hw.geglu_erf_4k : &hw.geglu_tanh_4k) = tg > 0 ? tg : ct.best;
        }
        if (!quiet)
            printf("GeGLU (gk_geglu), %d threads: erf %.1f M/s, tanh %.1f M/s elements; a call "
                   "of 4096: erf %.2f us, tanh %.2f us\n",
                   nt, hw.geglu_erf / 1e6, hw.geglu_tanh / 1e6, hw.geglu_erf_4k * 1e6,
                   hw.geglu_tanh_4k * 1e6);
    }
    /* an elementwise pass on one thread (y = a x + b, f32: 12 bytes, 2 FLOPs per
     * element) over arrays of 256 KiB to 128 MiB in all */
    for (int k = 0; k < 4; k++) {
        size_t total = (size_t)256 << (10 + 3 * k), n = total / 12;
        float *a = buf, *b = buf + n, *yv = buf + 2 * n;
        cal_timer ct = cal_start(CAL_MIN_S);
        long r = 0;
        do {
            float sc = 1.0f + (float)(r & 1) * 1e-7f;
            for (size_t i = 0; i < n; i++) yv[i] = a[i] * sc + b[i];
            r++;
        } while (cal_more(&ct));
        hw.ew_bw_at[k] = 12.0 * n / ct.best;
    }
    if (!quiet)
        printf("elementwise pass, one thread, 256 KiB / 2 MiB / 16 MiB / 128 MiB: %.2f / %.2f / "
               "%.2f / %.2f GB/s\n",
               hw.ew_bw_at[0] / 1e9, hw.ew_bw_at[1] / 1e9, hw.ew_bw_at[2] / 1e9,
               hw.ew_bw_at[3] / 1e9);
    /* one job handed to the pool with no work in it (gk_pool_run): the dispatch the
     * engine pays per parallel step (the median trial; on shared cores it
     * includes the waits for a descheduled thread) */
    {
        cal_timer ct = cal_start(CAL_MIN_S);
        do
            for (int i = 0; i < 64; i++) gk_pool_run(pool, noop_job, NULL);
        while (cal_more(&ct));
        hw.call_s = ct.best / 64;
        if (!quiet && dist.rank == 0) printf("pool job (no work)      %.2f us\n", hw.call_s * 1e6);
    }
    /* a parallel step with a little work in it, a 64 x 64 matmul of one token: what each
     * of a training step's many small steps costs (the wait for the slower thread
     * included) */
    {
        cal_timer ct = cal_start(CAL_MIN_S);
        do gk_matmul(pool, y, w, GK_TYPE_F32, 64 * sizeof(float), 64, x, 64, 1, qbuf);
        while (cal_more(&ct));
        hw.step_s = ct.best;
        if (!quiet && dist.rank == 0) printf("pool step (64x64 matmul) %.2f us\n", hw.step_s * 1e6);
    }
    /* a parallel step after serial work on the calling thread of 5, 10, ... 640 us:
     * once the workers have stopped spinning and sleep, it waits for their wake-up
     * (median of 64 trials) */
    if (nt > 1) {
        for (int g = 0; g < 8; g++) {
            double t[64], gap = (5 << g) * 1e-6;
            for (int i = 0; i < 64; i++) {
                double t0 = gk_time_s();
                while (gk_time_s() - t0 < gap) continue;
                t0 = gk_time_s();
                gk_pool_run(pool, noop_job, NULL);
                t[i] = gk_time_s() - t0;
            }
            qsort(t, 64, sizeof t[0], cmp_double);
            hw.wake_at[g] = t[32];
        }
        if (!quiet && dist.rank == 0) {
            printf("pool step after serial work of 5, 10, ... 640 us:");
            for (int g = 0; g < 8; g++) printf(" %.1f", hw.wake_at[g] * 1e6);
            printf(" us\n");
        }
    }
    if (cal_train_step(pool, &hw, quiet, &err) < 0) {
        fprintf(stderr, "grok plan calibrate: %s\n", err.msg);
        rc = 1;
        goto done;
    }
    if (dist.size < 2) {
        /* not measured: ranks on this machine, through its memory */
        hw.link_bw = hw.net_bw = hw.mem_bw / 2;
        if (!quiet)
            printf("MPI link                not measured (run under mpirun -np 2 to measure it); "
                   "assumed half the memory bandwidth, no latency\n");
    }
    if (dist.rank == 0) {
        const char *path = o->out ? o->out : "this-machine.preset";
        if (gk_plan_hw_save(&hw, path, &err) < 0) {
            fprintf(stderr, "grok plan calibrate: %s\n", err.msg);
            rc = 1;
        } else if (!quiet)
            printf("wrote %s (use: grok plan infer --fleet 1x%s%s ...)\n", path,
                   strchr(path, '/') ? "" : "./", path);
        if (o->json) printf("{\"preset\": \"%s\", \"mem_bw\": %.6g}\n", path, hw.mem_bw);
    }
done:
    gk_free_aligned(x);
    gk_free_aligned(y);
    gk_free_aligned(qbuf);
    gk_free_aligned(w);
    gk_free_aligned(buf);
    gk_pool_free(pool);
    if (dist.rank == 0) gk_dist_barrier_idle(&dist); /* the other ranks wait asleep there */
    gk_dist_finalize(&dist);
    return rc;
}

int gk_cmd_plan(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    plan_opts o;
    int p = parse(argc, argv, &o);
    if (p) return p < 0 ? 2 : 0;
    const char *sub = argv[1];
    if (!strcmp(sub, "infer")) return cmd_infer(&o);
    if (!strcmp(sub, "train")) return cmd_train(&o);
    if (!strcmp(sub, "fleet")) return cmd_fleet(&o);
    if (!strcmp(sub, "presets")) return cmd_presets(&o);
    if (!strcmp(sub, "calibrate")) return cmd_calibrate(argc, argv, &o);
    fprintf(stderr,
            "grok plan: unknown subcommand '%s' (infer, train, fleet, presets, "
            "calibrate)\n",
            sub);
    return 2;
}
