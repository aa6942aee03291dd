/*
 * cmd_bench.c - `grok bench`: prompt and generation throughput, and generation
 * speed as a share of the memory-bandwidth limit measured in the same run.
 *
 * Generating one token reads every active weight once (attention, router, the
 * chosen experts, the dense MLP, the output matrix), so bytes-per-token divided
 * by the machine's read bandwidth is the fastest a CPU can go; the bench
 * measures that bandwidth itself (gk_bw_meter: SIMD streaming reads by the same
 * number of threads over a buffer four times the last-level cache, just before
 * and just after each timed generation) and reports the achieved fraction of
 * the limit around the fastest generation; the KV cache a token reads counts
 * with its weights.
 */
#include "cli.h"
#include "kernels/stream.h"
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t wbytes(const gk_weight *w) {
    return (uint64_t)w->nb_mat;
}

/* Bytes of weights read to generate one token. */
static uint64_t active_bytes(const gk_model *m) {
    const gk_hparams *hp = &m->hp;
    uint64_t b = m->output.nb_mat + m->tok_embd.nb_row;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        const gk_layer *L = &m->layers[l];
        b += wbytes(&L->wq) + wbytes(&L->wk) + wbytes(&L->wv) + wbytes(&L->wo) + wbytes(&L->router);
        b += (uint64_t)hp->n_expert_used *
             (L->gate_exps.nb_mat + L->up_exps.nb_mat + L->down_exps.nb_mat);
        if (hp->variant == GK_VARIANT_GROK2)
            b += wbytes(&L->ffn_gate) + wbytes(&L->ffn_up) + wbytes(&L->ffn_down);
    }
    return b;
}

int gk_cmd_bench(int argc, char **argv) {
    const char *path = NULL;
    long n_prompt = 128, n_gen = 32, threads = 0, reps = 3, n_batch = 0;
    int wire = GK_DIST_WIRE_F32;
    gk_model_params mp = gk_model_default_params();
    gk_cache_type cache = GK_CACHE_DEFAULT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: grok bench [-m MODEL] [-p N_PROMPT] [-n N_GEN] [-t THREADS] [-b BATCH] "
                   "[-r REPS] [--numerics MODE] [--cache-type f32|f16|q8_0]\n"
                   "       [--dist-wire f32|bf16|q8_0]\n"
                   "under mpirun -np N: one model split over N ranks; rank 0 reports, per token,\n"
                   "compute, communication and the bytes sent next to the theoretical volume\n");
            return 0;
        }
        if (!(v = gk_cli_value(argc, argv, &i))) return 2;
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            path = v;
        else if (!strcmp(a, "-p")) {
            if (!gk_cli_int(a, v, 1, 1 << 20, &n_prompt)) return 2;
        } else if (!strcmp(a, "-n")) {
            if (!gk_cli_int(a, v, 1, 1 << 20, &n_gen)) return 2;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!gk_cli_int(a, v, 1, 256, &threads)) return 2;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) {
            if (!gk_cli_int(a, v, 1, 1 << 16, &n_batch)) return 2;
        } else if (!strcmp(a, "--numerics")) {
            if (!gk_cli_numerics(v, &mp.numerics)) return 2;
        } else if (!strcmp(a, "--cache-type")) {
            if (!gk_cli_cache_type(v, &cache)) return 2;
        } else if (!strcmp(a, "-r")) {
            if (!gk_cli_int(a, v, 1, 100, &reps)) return 2;
        } else if (!strcmp(a, "--dist-wire")) {
            if ((wire = gk_dist_wire_from_name(v)) < 0) {
                fprintf(stderr, "grok bench: --dist-wire: unknown format '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "grok bench: unknown option '%s'\n", a);
            return 2;
        }
    }
    if (!(path = gk_cli_model_path(path))) return 1;
    gk_dist *dist = gk_cli_dist("bench", &argc, &argv);
    if (!dist) return 1;
    const int n_ranks = gk_dist_size(dist);
    mp.dist = dist;
    gk_err err;
    gk_model *m = gk_model_load(path, &mp, &err);
    if (!m) {
        fprintf(stderr, "grok bench%s: %s\n", gk_cli_dist_who(dist), err.msg);
        gk_dist_free(dist);
        return 1;
    }
    const gk_hparams *hp = gk_model_hparams(m);
    gk_context_params cp = gk_context_default_params();
    cp.n_ctx = (uint32_t)(n_prompt + n_gen);
    cp.n_threads = (int)threads;
    cp.n_batch = (uint32_t)n_batch;
    cp.dist_wire = wire;
    cp.cache_type = cache;
    gk_context *c = gk_context_new(m, &cp, &err);
    if (!c) {
        fprintf(stderr, "grok bench%s: %s\n", gk_cli_dist_who(dist), err.msg);
        gk_model_free(m);
        gk_dist_free(dist);
        return 1;
    }
    if (gk_dist_rank(dist) > 0) { /* followers: run rank 0's calls */
        int rc = gk_dist_follow(c, &err) < 0 ? 1 : 0;
        if (rc) fprintf(stderr, "grok bench%s: %s\n", gk_cli_dist_who(dist), err.msg);
        if (rc) gk_cli_dist_abort(dist);
        gk_context_free(c);
        gk_model_free(m);
        gk_dist_free(dist);
        return rc;
    }
    int nt = threads ? (int)threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    gk_pool *bw_pool = NULL;
    gk_bw_meter *meter = NULL;
    int32_t *toks = malloc((size_t)n_prompt * sizeof *toks);
    if (!toks) return 1;
    uint64_t x = 12345;
    for (long i = 0; i < n_prompt; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (int32_t)((x >> 33) % hp->n_vocab);
    }
    printf("model: %s (%.1f MiB, %u layers, %u experts top-%u), kernels %s, %d threads", path,
           gk_model_file_size(m) / 1048576.0, hp->n_layer, hp->n_expert, hp->n_expert_used,
           gk_kernels_name(), nt);
    if (n_ranks > 1)
        printf(" per rank, %d ranks (tensor parallel, wire %s)", n_ranks,
               gk_dist_wire_name((gk_dist_wire)wire));
    if (m->n_packed)
        printf("; %d matrices (%.1f MiB) packed for the GEMM, %d of them in gate/up pairs",
               m->n_packed, m->packed_bytes / 1048576.0, m->n_paired);
    int per_rank, chunks = gk_model_sum_chunks(m, &per_rank);
    printf("; sums over %d column chunks, %d here%s\n", chunks, per_rank,
           chunks % n_ranks ? " (the count does not divide them: equal to one process up to "
                              "rounding)"
                            : "");
    /* the limit: streaming reads by as many threads over a buffer much larger than the
     * last-level cache, measured around each generation (the best of 3 passes just
     * before it and 3 just after), since other tenants' traffic can halve what this
     * machine's memory gives from one second to the next */
    bw_pool = gk_pool_new(nt, &err);
    meter = bw_pool ? gk_bw_meter_new(bw_pool, 0, &err) : NULL;
    if (!meter) goto fail;
    /* one untimed prompt first, as llama-bench warms up: the timed runs then
     * find the weights' pages mapped and the buffers touched */
    if (gk_decode(c, toks, (int)n_prompt, &err) < 0) goto fail;
    double best_pp = 0, best_tg = 0;
    gk_dist_stats st_pp = {0}, st_tg = {0}; /* of the best repetitions */
    gk_decode_stats ds_pp = {0}, ds_tg = {0};
    gk_bandwidth bwm = {0};             /* around the best generation */
    double bw_lo = INFINITY, bw_hi = 0; /* the run's */
    for (long r = 0; r < reps; r++) {
        gk_context_truncate(c, 0);
        gk_dist_reset_stats(dist);
        gk_context_stats_reset(c);
        double t0 = gk_time_s();
        if (gk_decode(c, toks, (int)n_prompt, &err) < 0) goto fail;
        double t1 = gk_time_s();
        gk_dist_stats s1 = gk_dist_get_stats(dist);
        gk_decode_stats d1 = gk_context_stats(c);
        gk_bandwidth before, after;
        if (gk_bw_meter_run(meter, 3, &before, &err) < 0) goto fail;
        /* the meter's idle worker spins for up to 2 ms before it sleeps: let it, so that
         * the generation does not share the cores with it */
        nanosleep(&(struct timespec){.tv_nsec = 3000000}, NULL);
        gk_dist_reset_stats(dist);
        gk_context_stats_reset(c);
        int32_t tok = toks[0];
        double t2 = gk_time_s();
        for (long i = 0; i < n_gen; i++)
            if (gk_decode(c, &tok, 1, &err) < 0) goto fail;
        double t3 = gk_time_s();
        if (gk_bw_meter_run(meter, 3, &after, &err) < 0) goto fail;
        gk_bandwidth around = before.bytes_per_s >= after.bytes_per_s ? before : after;
        around.worst_bytes_per_s = fmin(before.worst_bytes_per_s, after.worst_bytes_per_s);
        around.reps = before.reps + after.reps;
        bw_lo = fmin(bw_lo, around.bytes_per_s);
        bw_hi = fmax(bw_hi, around.bytes_per_s);
        double pp = n_prompt / (t1 - t0), tg = n_gen / (t3 - t2);
        if (pp > best_pp) best_pp = pp, st_pp = s1, st_pp.forward_s = t1 - t0, ds_pp = d1;
        if (tg > best_tg || r == 0) {
            best_tg = tg, st_tg = gk_dist_get_stats(dist), st_tg.forward_s = t3 - t2;
            ds_tg = gk_context_stats(c);
            bwm = around;
        }
    }
    gk_bw_meter_free(meter);
    gk_pool_free(bw_pool);
    double bw = bwm.bytes_per_s;
    uint64_t ab = active_bytes(m);
    /* a generated token reads the weights it uses and the KV cache of every earlier
     * position: the limit is their bytes over the bandwidth (the cache's as this
     * rank's engine counted them, mean over the best repetition's tokens) */
    const double kvb = n_gen > 0 ? ds_tg.kv_bytes_read / (double)n_gen : 0.0;
    printf("prompt:     %8.2f tokens/s  (%ld tokens, best of %ld)\n", best_pp, n_prompt, reps);
    printf("generation: %8.2f tokens/s  (%ld tokens after the prompt, best of %ld)\n", best_tg,
           n_gen, reps);
    printf("memory:     %.1f MiB of weights and %.2f MiB of KV cache (%s, mean) read per "
           "generated token; read bandwidth %.2f GB/s around that generation (%s streaming "
           "reads of %zu MiB, %d threads, best of %d passes just before and after it, worst "
           "%.2f; %.2f to %.2f GB/s around the %ld generations)\n",
           ab / 1048576.0, kvb / 1048576.0, gk_cache_type_name(gk_context_cache_type(c)), bw / 1e9,
           bwm.isa, bwm.bytes >> 20, bwm.threads, bwm.reps, bwm.worst_bytes_per_s / 1e9,
           bw_lo / 1e9, bw_hi / 1e9, reps);
    printf("            generation reaches %.1f%% of the bandwidth limit (%.2f tokens/s; of the "
           "weights' alone %.1f%%, %.2f tokens/s)\n",
           100.0 * best_tg * ((double)ab + kvb) / bw, bw / ((double)ab + kvb),
           100.0 * best_tg * (double)ab / bw, bw / (double)ab);
    /* where the best repetitions' time went (the engine's clocks around its calls) */
    const gk_decode_stats *dss[2] = {&ds_pp, &ds_tg};
    for (int k = 0; k < 2; k++) {
        const gk_decode_stats *s = dss[k];
        double per = k ? (double)n_gen : 1.0, ms = 1e3 / per;
        double other = s->forward_s - s->matmul_s - s->attn_s - s->geglu_s - s->softcap_s;
        printf("%s %.4g ms = matmuls %.4g + attention %.4g + GeGLU %.4g + softcap %.4g + "
               "other %.4g  (%.0f pool jobs)\n",
               k ? "parts, per generated token:" : "parts, prompt:", s->forward_s * ms,
               s->matmul_s * ms, s->attn_s * ms, s->geglu_s * ms, s->softcap_s * ms, other * ms,
               s->pool_runs / per);
    }
    if (n_ranks > 1) {
        /* two all-reduces of d values per layer and the embedding's, per token, plus
         * the logits' gather: a ring all-reduce moves 2(N-1)/N of its payload */
        double d4 = (double)hp->n_embd * 4, ring = 2.0 * (n_ranks - 1) / n_ranks;
        double theory = (2.0 * hp->n_layer + 1) * d4 * ring;
        const gk_dist_stats *ss[2] = {&st_pp, &st_tg};
        const char *names[2] = {"prompt", "generation"};
        for (int k = 0; k < 2; k++) {
            const gk_dist_stats *s = ss[k];
            double tk = s->tokens ? (double)s->tokens : 1;
            printf("dist %-10s per token: compute %.3f ms, communication %.3f ms (link model "
                   "%.3f ms, waiting and MPI %.3f ms); sent %.0f bytes (ideal %.0f; theory "
                   "%.0f fp32 for the all-reduces)\n",
                   names[k], 1e3 * (s->forward_s - s->comm_s) / tk, 1e3 * s->comm_s / tk,
                   1e3 * s->link_s / tk, 1e3 * (s->comm_s - s->link_s) / tk,
                   (double)s->bytes_sent / tk, (double)s->bytes_ideal / tk, theory);
        }
    }
    free(toks);
    gk_context_free(c);
    gk_model_free(m);
    gk_dist_free(dist);
    return 0;
fail:
    fprintf(stderr, "grok bench: %s\n", err.msg);
    gk_cli_dist_abort(dist);
    gk_bw_meter_free(meter);
    gk_pool_free(bw_pool);
    free(toks);
    gk_context_free(c);
    gk_model_free(m);
    gk_dist_free(dist);
    return 1;
}
