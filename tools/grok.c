/*
 * grok.c - the command-line tool: dispatches to one function per subcommand
 * (tools/cmd_*.c). Only tools/ prints; libgrok reports through gk_err.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"run", gk_cmd_run, "generate text from a prompt"},
    {"chat", gk_cmd_chat, "interactive chat with the model's template"},
    {"info", gk_cmd_info, "describe a model file"},
    {"serve", gk_cmd_serve, "OpenAI-compatible HTTP server with a chat page"},
    {"bench", gk_cmd_bench, "prompt and generation throughput"},
    {"tokenize", gk_cmd_tokenize, "print the ids and pieces of a text"},
    {"convert", gk_cmd_convert, "import an official checkpoint to GGUF"},
    {"quantize", gk_cmd_quantize, "re-encode a model's weights"},
    {"train", gk_cmd_train, "pretrain or fine-tune a model on text"},
    {"shard", gk_cmd_shard, "write one file per rank for tensor-parallel runs"},
    {"plan", gk_cmd_plan, "memory, speed, training time and power of a model on a fleet"},
};

static void usage(FILE *f) {
    fprintf(f, "grok %s - run, serve and train Grok-architecture models\n\n"
               "usage: grok COMMAND [options]   (grok COMMAND --help for its options)\n\n",
            GK_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("grok %s (kernels: %s)\n", GK_VERSION, gk_kernels_name());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "grok: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
