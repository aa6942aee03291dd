/*
 * decode_batch_bench.c - the decode step of continuous batching (what one step
 * of `grok serve` runs): gk_decode_batch with one token of each of S sequences,
 * S = 1, 2, 4, 8, 16, timed step by step, next to the bandwidth-bound ceiling.
 *
 * A decode step reads every weight it uses once, whatever its token count: the
 * attention, dense MLP and output matrices, and each expert that at least one
 * token of the step was routed to (the engine groups the tokens by expert). With
 * 8 experts and top-2, S tokens touch about 8 (1 - (6/8)^S) experts: 2 for one
 * token, 5.5 for four. When a step is bound by memory bandwidth its time grows
 * with its weight bytes, so S streams can give at most S * bytes(1) / bytes(S)
 * times the tokens/s of one: the "ceiling" column, from the bytes the engine
 * counted (gk_context_stats). "x1" is what the step achieves.
 *
 * Build and run (after building libgrok in build/):
 *   cc -O2 -Isrc -Iinclude bench/decode_batch_bench.c build/libgrok.a \
 *      $(pkg-config --libs libpcre2-8 libcjson) -lm -lpthread \
 *      -o build/decode_batch_bench
 *   flock /tmp/bench.lock build/decode_batch_bench MODEL [THREADS] [STEPS] [REPS]
 * (add the MPI library when libgrok was built with it:
 *  /usr/lib/x86_64-linux-gnu/openmpi/lib/libmpi.so). Each row is the best of
 * REPS rounds (default 3) of STEPS steps (default 10); the rounds alternate the
 * batch sizes, so a machine that gets busier part way through shows in all of
 * them alike.
 */
#include "grok.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_S 16
#define PROMPT 24

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: decode_batch_bench MODEL [THREADS] [STEPS] [REPS]\n");
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 0, steps = argc > 3 ? atoi(argv[3]) : 10,
        reps = argc > 4 ? atoi(argv[4]) : 3;
    if (steps < 1 || reps < 1 || threads < 0) {
        fprintf(stderr, "decode_batch_bench: STEPS and REPS must be >= 1, THREADS >= 0\n");
        return 2;
    }
    gk_err err;
    gk_model_params mp = gk_model_default_params();
    gk_model *m = gk_model_load(argv[1], &mp, &err);
    if (!m) {
        fprintf(stderr, "decode_batch_bench: %s\n", err.msg);
        return 1;
    }
    const int32_t V = (int32_t)gk_model_hparams(m)->n_vocab;
    gk_context_params cp = gk_context_default_params();
    cp.n_ctx = PROMPT + (uint32_t)steps + 8;
    cp.n_seq = MAX_S;
    cp.n_threads = threads;
    gk_context *c = gk_context_new(m, &cp, &err);
    if (!c) {
        fprintf(stderr, "decode_batch_bench: %s\n", err.msg);
        gk_model_free(m);
        return 1;
    }
    /* every sequence holds a short prompt; each round grows them by STEPS tokens
     * and then cuts them back, so every round sees the same cache lengths */
    int32_t tok[MAX_S * PROMPT], seq[MAX_S * PROMPT];
    bool keep[MAX_S];
    for (int s = 0; s < MAX_S; s++) {
        for (int i = 0; i < PROMPT; i++) {
            tok[i] = (int32_t)((100 + s * 37 + i * 11) % V);
            seq[i] = s;
        }
        gk_batch b = {.n = PROMPT, .token = tok, .seq = seq};
        if (gk_decode_batch(c, &b, &err) < 0) goto fail;
    }
    static const int sizes[] = {1, 2, 4, 8, 16};
    enum { N_SIZES = sizeof sizes / sizeof sizes[0] };
    double best[N_SIZES], mean[N_SIZES], bytes[N_SIZES];
    for (int k = 0; k < N_SIZES; k++) best[k] = 1e30, mean[k] = 0;
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < N_SIZES; k++) {
            const int S = sizes[k];
            gk_context_stats_reset(c);
            double sum = 0;
            for (int st = 0; st < steps; st++) {
                for (int s = 0; s < S; s++) {
                    tok[s] = (int32_t)((200 + s * 13 + st * 7 + r * 3) % V);
                    seq[s] = s;
                    keep[s] = true;
                }
                gk_batch b = {.n = S, .token = tok, .seq = seq, .logits = keep};
                double t0 = now();
                if (gk_decode_batch(c, &b, &err) < 0) goto fail;
                sum += now() - t0;
            }
            bytes[k] = gk_context_stats(c).weight_bytes / steps;
            if (sum / steps < best[k]) best[k] = sum / steps;
            mean[k] += sum / steps / reps;
            for (int s = 0; s < S; s++)
                if (gk_kv_seq_keep(c, s, PROMPT, &err) < 0) goto fail;
        }
    printf("seqs  step_ms(best)  step_ms(mean)  tok/s  weight_MB/step  GB/s   x1    ceiling\n");
    for (int k = 0; k < N_SIZES; k++) {
        const int S = sizes[k];
        printf("%4d  %13.2f  %13.2f  %5.1f  %14.1f  %5.1f  %4.2f  %7.2f\n", S, best[k] * 1e3,
               mean[k] * 1e3, S / best[k], bytes[k] / 1e6, bytes[k] / best[k] / 1e9,
               S / best[k] / (1.0 / best[0]), S * bytes[0] / bytes[k]);
    }
    gk_context_free(c);
    gk_model_free(m);
    return 0;
fail:
    fprintf(stderr, "decode_batch_bench: %s\n", err.msg);
    gk_context_free(c);
    gk_model_free(m);
    return 1;
}
