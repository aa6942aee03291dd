/*
 * cmd_serve.c - `grok serve`: an OpenAI-compatible HTTP server (src/serve/).
 *
 * Threads: libmicrohttpd's (one per connection) parse, queue and stream; one
 * engine thread loads the model and then runs gk_serve_engine_run, owning the
 * context, KV cache and samplers; the main thread waits for SIGINT/SIGTERM and
 * then stops the engine (queued and running requests end with an error event),
 * the HTTP server, and frees everything. /health answers 503 while loading.
 */
#include "cli.h"
#include "serve/serve.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct serve_opts {
    const char *model, *host, *api_key, *api_key_file;
    long port, slots, n_ctx, n_batch, threads, max_queue, max_body_kb, keepalive_ms;
    gk_numerics numerics;
    gk_cache_type cache_type;
    bool verbose;
} serve_opts;

static void usage(FILE *f) {
    fprintf(f, "usage: grok serve [-m MODEL] [options]\n"
               "An OpenAI-compatible server: /v1/chat/completions, /v1/completions, /v1/models,\n"
               "/health, /metrics, /tokenize, /detokenize, /apply-template, /slots, and a chat\n"
               "page at /.\n"
               "  -m, --model FILE        GGUF model (default: " GK_DEFAULT_MODEL ")\n"
               "  --host ADDR             address to listen on (default 127.0.0.1; 0.0.0.0 = all)\n"
               "  --port N                (default 8080; 0 = any free port)\n"
               "  -np, --parallel N       slots: requests generated at once (default 4)\n"
               "  -c, --ctx-size N        context per slot in tokens (default: min(train, 4096))\n"
               "  -b, --batch-size N      most tokens per forward pass (default 64)\n"
               "  --max-queue N           requests waiting for a slot before 503 (default 64)\n"
               "  --api-key KEY           require 'Authorization: Bearer KEY'\n"
               "  --api-key-file FILE     the same, key read from the first line of FILE\n"
               "  --max-body KB           largest request body (default 8192 KiB)\n"
               "  --sse-keepalive-ms N    comment on a quiet stream after N ms (default 5000)\n"
               "  -t, --threads N         threads (default: all cores)\n"
               "  --numerics MODE         reference (default) or llamacpp\n"
               "  -v, --verbose           log more\n");
}

static int parse(int argc, char **argv, serve_opts *o) {
    *o = (serve_opts){.host = "127.0.0.1",
                      .port = 8080,
                      .slots = 4,
                      .n_batch = 64,
                      .max_queue = 64,
                      .max_body_kb = 8192};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
#define VAL() ((v = gk_cli_value(argc, argv, &i)) != NULL)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!VAL()) return -1;
            o->model = v;
        } else if (!strcmp(a, "--host")) {
            if (!VAL()) return -1;
            o->host = v;
        } else if (!strcmp(a, "--port")) {
            if (!VAL() || !gk_cli_int(a, v, 0, 65535, &o->port)) return -1;
        } else if (!strcmp(a, "-np") || !strcmp(a, "--parallel")) {
            if (!VAL() || !gk_cli_int(a, v, 1, 256, &o->slots)) return -1;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            if (!VAL() || !gk_cli_int(a, v, 8, 1 << 20, &o->n_ctx)) return -1;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) {
            if (!VAL() || !gk_cli_int(a, v, 1, 8192, &o->n_batch)) return -1;
        } else if (!strcmp(a, "--max-queue")) {
            if (!VAL() || !gk_cli_int(a, v, 0, 1 << 20, &o->max_queue)) return -1;
        } else if (!strcmp(a, "--max-body")) {
            if (!VAL() || !gk_cli_int(a, v, 1, 1 << 20, &o->max_body_kb)) return -1;
        } else if (!strcmp(a, "--sse-keepalive-ms")) {
            if (!VAL() || !gk_cli_int(a, v, 10, 3600000, &o->keepalive_ms)) return -1;
        } else if (!strcmp(a, "--api-key")) {
            if (!VAL()) return -1;
            o->api_key = v;
        } else if (!strcmp(a, "--api-key-file")) {
            if (!VAL()) return -1;
            o->api_key_file = v;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!VAL() || !gk_cli_int(a, v, 1, 1024, &o->threads)) return -1;
        } else if (!strcmp(a, "--numerics")) {
            if (!VAL() || !gk_cli_numerics(v, &o->numerics)) return -1;
        } else if (!strcmp(a, "--cache-type")) {
            if (!VAL() || !gk_cli_cache_type(v, &o->cache_type)) return -1;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o->verbose = true;
        } else {
            fprintf(stderr, "grok serve: unknown option '%s' (see grok serve --help)\n", a);
            return -1;
        }
#undef VAL
    }
    if (o->api_key && o->api_key_file) {
        fprintf(stderr, "grok serve: give --api-key or --api-key-file, not both\n");
        return -1;
    }
    return 0;
}

/* The first line of the file, without its newline; NULL after an error. */
static char *read_key(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "grok serve: --api-key-file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char buf[1024];
    char *line = fgets(buf, sizeof buf, f);
    fclose(f);
    size_t n = line ? strcspn(buf, "\r\n") : 0;
    if (n == 0) {
        fprintf(stderr, "grok serve: --api-key-file %s: the first line is empty\n", path);
        return NULL;
    }
    buf[n] = 0;
    return strdup(buf);
}

static void log_line(void *user, const char *msg) {
    (void)user;
    time_t t = time(NULL);
    struct tm tm;
    char ts[32];
    strftime(ts, sizeof ts, "%H:%M:%S", localtime_r(&t, &tm));
    fprintf(stderr, "[%s] grok serve: %s\n", ts, msg);
}

typedef struct loader {
    const serve_opts *o;
    const char *path;
    gk_dist *dist; /* under mpirun: this is rank 0, which leads the others */
    gk_serve_http *http;
    gk_model *model;
    _Atomic(gk_serve_engine *) eng;
    atomic_bool stop;
    pthread_t main_thread;
    bool failed;
} loader;

static gk_context_params context_params(const serve_opts *o) {
    gk_context_params cp = gk_context_default_params();
    cp.n_ctx = (uint32_t)o->n_ctx;
    cp.n_batch = (uint32_t)o->n_batch;
    cp.n_threads = (int)o->threads;
    cp.n_seq = (uint32_t)o->slots;
    cp.cache_type = o->cache_type;
    return cp;
}

/* Rank 0's exit: ends the other ranks too when they may be waiting for it. */
static int end_ranks(gk_dist *dist, int rc) {
    if (rc && gk_dist_size(dist) > 1) gk_cli_dist_abort(dist);
    gk_dist_free(dist);
    return rc;
}

/* Under mpirun, ranks > 0: load their share of the model, then run rank 0's
 * batches until it stops. Returns the exit status. */
static int follow(const serve_opts *o, const char *path, gk_dist *dist) {
    gk_err err;
    gk_model_params mp = gk_model_default_params();
    mp.numerics = o->numerics;
    mp.dist = dist;
    gk_model *m = gk_model_load(path, &mp, &err);
    gk_context_params cp = context_params(o);
    gk_context *c = m ? gk_context_new(m, &cp, &err) : NULL;
    int rc = c && gk_dist_follow(c, &err) == 0 ? 0 : 1;
    if (rc) fprintf(stderr, "grok serve%s: %s\n", gk_cli_dist_who(dist), err.msg);
    gk_context_free(c);
    gk_model_free(m);
    if (rc && m && c) gk_cli_dist_abort(dist); /* a broken follow may strand rank 0 */
    return rc;
}

/* The engine thread: loads the model, attaches it to the server, runs the engine. */
static void *engine_thread(void *arg) {
    loader *L = arg;
    const serve_opts *o = L->o;
    gk_err err;
    gk_model_params mp = gk_model_default_params();
    mp.numerics = o->numerics;
    mp.dist = L->dist;
    L->model = gk_model_load(L->path, &mp, &err);
    if (!L->model) goto fail;
    const gk_tokenizer *tok = gk_model_tokenizer(L->model);
    if (!tok) {
        snprintf(err.msg, sizeof err.msg, "%s has no tokenizer", L->path);
        goto fail;
    }
    gk_context_params cp = context_params(o);
    gk_context *ctx = gk_context_new(L->model, &cp, &err);
    if (!ctx) goto fail;
    gk_serve_engine_params ep = {.n_slots = (int)o->slots,
                                 .n_ctx = gk_context_n_ctx(ctx),
                                 .n_batch = (uint32_t)o->n_batch,
                                 .max_queue = (int)o->max_queue};
    gk_serve_engine *e = gk_serve_engine_new(L->model, ctx, &ep, &err);
    if (!e) goto fail;
    atomic_store(&L->eng, e);
    if (atomic_load(&L->stop)) gk_serve_engine_stop(e);
    gk_serve_http_attach(L->http, tok, e);
    char msg[256];
    snprintf(msg, sizeof msg, "model %s ready: %d slots of %u tokens, batch %ld, %s kernels",
             L->path, (int)o->slots, ep.n_ctx, o->n_batch, gk_kernels_name());
    log_line(NULL, msg);
    if (!gk_tokenizer_has_chat(tok))
        log_line(NULL, "the model has no chat template (a base model): /v1/chat/completions "
                       "continues a plain transcript (System:/Human:/Assistant: turns) and "
                       "stops before a next \"Human:\" or \"System:\" line");
    gk_serve_engine_run(e);
    if (gk_dist_size(L->dist) > 1 && gk_dist_stop(ctx, &err) < 0) log_line(NULL, err.msg);
    return NULL;
fail:
    fprintf(stderr, "grok serve: %s\n", err.msg);
    L->failed = true;
    pthread_kill(L->main_thread, SIGTERM);
    return NULL;
}

int gk_cmd_serve(int argc, char **argv) {
    serve_opts o;
    if (parse(argc, argv, &o) < 0) return 2;
    const char *path = gk_cli_model_path(o.model);
    if (!path) return 1;
    /* under mpirun: one model split over the ranks; rank 0 serves HTTP */
    gk_dist *dist = gk_cli_dist("serve", &argc, &argv);
    if (!dist) return 1;
    if (gk_dist_rank(dist) > 0) {
        int rc = follow(&o, path, dist);
        gk_dist_free(dist);
        return rc;
    }
    char *key = o.api_key ? strdup(o.api_key) : o.api_key_file ? read_key(o.api_key_file) : NULL;
    if (o.api_key_file && !key) return end_ranks(dist, 1);

    /* Signals go to the main thread only (sigwait); threads inherit the mask. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    gk_err err;
    gk_serve_http_params hp = {.host = o.host,
                               .port = (int)o.port,
                               .api_key = key,
                               .max_body = (size_t)o.max_body_kb * 1024,
                               .model_name = NULL,
                               .keepalive_ms = (int)o.keepalive_ms,
                               .log = log_line};
    const char *base = strrchr(path, '/');
    hp.model_name = base ? base + 1 : path;
    gk_serve_http *http = gk_serve_http_start(&hp, &err);
    if (!http) {
        fprintf(stderr, "grok serve: %s\n", err.msg);
        free(key);
        return end_ranks(dist, 1);
    }
    if (strcmp(o.host, "127.0.0.1") && strcmp(o.host, "localhost") && strcmp(o.host, "::1") && !key)
        log_line(NULL, "warning: listening beyond this machine without --api-key");

    loader L = {.o = &o, .path = path, .dist = dist, .http = http, .main_thread = pthread_self()};
    pthread_t th;
    if (pthread_create(&th, NULL, engine_thread, &L) != 0) {
        fprintf(stderr, "grok serve: cannot start the engine thread\n");
        gk_serve_http_stop(http);
        free(key);
        return end_ranks(dist, 1);
    }
    int sig = 0;
    sigwait(&set, &sig);
    if (!L.failed) log_line(NULL, sig == SIGINT ? "interrupted, stopping" : "stopping");
    atomic_store(&L.stop, true);
    gk_serve_engine *e = atomic_load(&L.eng);
    if (e) gk_serve_engine_stop(e);
    /* an engine that is still loading stops right after the load */
    pthread_join(th, NULL);
    e = atomic_load(&L.eng);
    gk_serve_http_stop(http);
    gk_serve_engine_free(e);
    gk_model_free(L.model);
    free(key);
    return end_ranks(dist, L.failed ? 1 : 0);
}
