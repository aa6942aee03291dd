/*
 * cli.h - shared pieces of the grok command-line tool: one function per
 * subcommand (tools/cmd_*.c) and small argument helpers. Only tools/ prints.
 */
#ifndef GK_CLI_H
#define GK_CLI_H

#include "grok.h"
#include "base/progress.h"
#include "format/quantize.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

/* Path of the model shipped in models/, used when no -m is given. */
#define GK_DEFAULT_MODEL "models/default.gguf"

int gk_cmd_run(int argc, char **argv);
int gk_cmd_info(int argc, char **argv);
int gk_cmd_bench(int argc, char **argv);
int gk_cmd_tokenize(int argc, char **argv);
int gk_cmd_chat(int argc, char **argv);
int gk_cmd_convert(int argc, char **argv);
int gk_cmd_quantize(int argc, char **argv);
int gk_cmd_train(int argc, char **argv);
int gk_cmd_shard(int argc, char **argv);
int gk_cmd_plan(int argc, char **argv);
int gk_cmd_serve(int argc, char **argv);

/* Parses a whole decimal number into *out within [lo, hi]; prints an error naming
 * the option and returns false otherwise. */
bool gk_cli_int(const char *opt, const char *s, long lo, long hi, long *out);
bool gk_cli_float(const char *opt, const char *s, double lo, double hi, double *out);
/* Returns argv[++*i], or prints "option needs a value" and returns NULL. */
const char *gk_cli_value(int argc, char **argv, int *i);
/* The model to use: the -m value, or the default model (with a check that it exists). */
const char *gk_cli_model_path(const char *given);
/* Ctrl-C for long jobs: gk_cli_catch_sigint() installs a handler that sets the
 * returned flag (which the library's cancel pointers watch) instead of killing
 * the process, so the job can remove its temporary file; gk_cli_release_sigint()
 * restores the previous handler. */
volatile sig_atomic_t *gk_cli_catch_sigint(void);
void gk_cli_release_sigint(void);

/* Options of the commands that write model files (convert, quantize). */
#define GK_CLI_MAX_KEEP 64
typedef struct gk_cli_write {
    const char *cmd; /* for messages: "convert", "quantize" */
    gk_quant_policy *policy;
    gk_quant_out_opts *out;
    const char *keep[GK_CLI_MAX_KEEP]; /* policy->keep points here */
    bool quiet;
    gk_progress bar;
} gk_cli_write;

void gk_cli_write_init(gk_cli_write *w, const char *cmd, gk_quant_policy *policy,
                       gk_quant_out_opts *out);
/* --keep, --quantize-embedding, -t/--threads, --no-verify, -q/--quiet; same
 * return contract as gk_cli_gen_option. */
int gk_cli_write_option(int argc, char **argv, int *i, gk_cli_write *w);
/* Sets policy->type from a name, or prints the writable types and returns false. */
bool gk_cli_write_type(gk_cli_write *w, const char *name);
/* Around the job: the progress bar (unless quiet) and Ctrl-C catching. */
void gk_cli_write_begin(gk_cli_write *w);
void gk_cli_write_end(gk_cli_write *w);

/* Parses a --numerics value ("reference" or "llamacpp"); prints an error otherwise. */
bool gk_cli_numerics(const char *s, gk_numerics *out);

/* Parses a --cache-type value (f32, f16, q8_0); prints an error otherwise. */
bool gk_cli_cache_type(const char *s, gk_cache_type *out);

/* Options shared by the commands that generate text (run, chat). */
typedef struct gk_cli_gen {
    const char *model;
    long n_ctx, threads;
    gk_numerics numerics;
    gk_cache_type cache_type;
    gk_sampler_params sp;
    int dist_wire;   /* gk_dist_wire */
    bool dist_check; /* --dist-check */
} gk_cli_gen;

/* Defaults: no model (the default one), automatic context and threads, reference
 * numerics, gk_sampler_default_params(). */
void gk_cli_gen_init(gk_cli_gen *g);
/* If argv[*i] is a shared option (-m, -c, -t, --numerics, --temp, --top-k, --top-p,
 * --min-p, --repeat-penalty, --repeat-last-n, --seed, --cache-type), parses it, advancing *i past
 * its value, and returns 1; returns 0 for any other option, -1 after printing why a
 * value is bad. */
int gk_cli_gen_option(int argc, char **argv, int *i, gk_cli_gen *g);
#define GK_CLI_GEN_HELP                                                                            \
    "  -m, --model FILE        GGUF model (default: " GK_DEFAULT_MODEL ")\n"                       \
    "  --temp T                temperature, 0 = greedy (default 0.8)\n"                            \
    "  --top-k K               (default 40, 0 = off)\n"                                            \
    "  --top-p P               (default 0.95, 1 = off)\n"                                          \
    "  --min-p P               (default 0.05, 0 = off)\n"                                          \
    "  --repeat-penalty X      (default 1.0 = off)\n"                                              \
    "  --repeat-last-n N       tokens the penalty looks back on (default 64)\n"                    \
    "  --seed S                sampling seed (default 0)\n"                                        \
    "  -c, --ctx-size N        context length (default: min(train, 4096))\n"                       \
    "  -t, --threads N         threads (default: all cores)\n"                                     \
    "  --numerics MODE         reference (default) or llamacpp\n"                                  \
    "  --cache-type T          KV cache f32, f16 or q8_0 (default: f32 with reference\n"           \
    "                          numerics, f16 with llamacpp numerics, as llama.cpp)\n"              \
    "  --dist-wire F           under mpirun: all-reduce wire format f32 (default), bf16, q8_0\n"   \
    "  --dist-check            under mpirun: check after each layer that every rank agrees\n"
/* Tensor parallelism (mpirun -np N grok run|chat|bench): joins the process group;
 * prints why and returns NULL on failure. */
gk_dist *gk_cli_dist(const char *cmd, int *argc, char ***argv);
/* After an error was printed: with several ranks, ends every rank (MPI_Abort) so
 * that none waits for the others; with one process, returns. */
void gk_cli_dist_abort(gk_dist *d);
/* "" with one process, else " (rank R of N)" for messages. */
const char *gk_cli_dist_who(const gk_dist *d);

#endif
