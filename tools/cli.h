/*
 * cli.h - shared pieces of the grok command-line tool: one function per
 * subcommand (tools/cmd_*.c) and small argument helpers. Only tools/ prints.
 */
#ifndef GK_CLI_H
#define GK_CLI_H

#include "grok.h"

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

/* Parses a whole decimal number into *out within [lo, hi]; prints an error naming
 * the option and returns false otherwise. */
bool gk_cli_int(const char *opt, const char *s, long lo, long hi, long *out);
bool gk_cli_float(const char *opt, const char *s, double lo, double hi, double *out);
/* Returns argv[++*i], or prints "option needs a value" and returns NULL. */
const char *gk_cli_value(int argc, char **argv, int *i);
/* The model to use: the -m value, or the default model (with a check that it exists). */
const char *gk_cli_model_path(const char *given);

#endif
