/*
 * serve.h - the library side of `grok serve`, an OpenAI-compatible HTTP server.
 *
 * Three parts, each usable alone:
 *   request.c  a JSON body of /v1/chat/completions or /v1/completions parsed and
 *              validated into a plain C struct (gk_serve_request); every field
 *              that is not supported is refused by name (no silent ignoring).
 *   engine.c   the scheduler: one engine thread owns the model context, the KV
 *              cache and the samplers; jobs wait in a bounded queue, go to the
 *              idle slot (KV sequence) with the longest common prompt prefix, and
 *              every step runs one gk_decode_batch holding one token of each
 *              generating slot plus a capped chunk of pending prompt tokens.
 *   http.c     libmicrohttpd glue: routes, auth, limits, SSE streaming and the
 *              OpenAI response/chunk JSON (json.c), the chat page (page.html).
 *
 * The library never prints: the server reports through a log callback.
 */
#ifndef GK_SERVE_H
#define GK_SERVE_H

#include "grok.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GK_SERVE_MAX_STOP 4          /* stop strings a request may give (OpenAI: 4) */
#define GK_SERVE_MAX_STOP_LEN 256    /* bytes of one stop string */
#define GK_SERVE_MAX_TOP_LOGPROBS 20 /* OpenAI's limit */
#define GK_SERVE_MAX_JSON_DEPTH 32   /* nesting of a request body */
#define GK_SERVE_MAX_MESSAGES 4096

/* ------------------------------------------------------------ errors --- */

/* An HTTP error in OpenAI's shape {"error":{"message","type","param","code"}}. */
typedef struct gk_serve_error {
    int status; /* 400, 401, 404, 405, 413, 500, 503 */
    char message[384];
    char param[64];   /* the offending field, "" for none */
    const char *type; /* "invalid_request_error", "authentication_error", ... */
    const char *code; /* NULL or e.g. "context_length_exceeded" */
} gk_serve_error;

/* Sets e and returns -1. */
int gk_serve_fail(gk_serve_error *e, int status, const char *param, const char *code,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* ----------------------------------------------------------- request --- */

typedef enum gk_serve_kind { GK_SERVE_CHAT = 1, GK_SERVE_COMPLETION = 2 } gk_serve_kind;

typedef struct gk_serve_request {
    gk_serve_kind kind;
    bool stream, include_usage;
    /* chat: messages (roles "system", "user", "assistant"; "developer" maps to system) */
    gk_chat_msg *msgs;
    int n_msgs;
    /* completion: a text prompt, or token ids */
    char *prompt;
    int32_t *prompt_ids;
    int n_prompt_ids;
    char *stop[GK_SERVE_MAX_STOP];
    int n_stop;
    int64_t max_tokens; /* -1: until a stop or the context is full */
    float temperature, top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty;
    int32_t top_k, repeat_last_n;
    bool has_seed;
    uint64_t seed;
    bool logprobs;
    int top_logprobs; /* 0..20 */
    bool ignore_eos;  /* llama.cpp's: stop tokens do not end the reply (benchmarks) */
} gk_serve_request;

/* Parses and validates a request body (len bytes, need not be NUL-terminated).
 * On failure fills e (status 400 naming the field) and returns -1; r is then
 * empty. max_ids bounds the token-id prompt (the context length). */
int gk_serve_parse_request(gk_serve_request *r, gk_serve_kind kind, const char *body, size_t len,
                           int max_ids, gk_serve_error *e);
void gk_serve_request_free(gk_serve_request *r);
/* Deepest nesting of arrays/objects in a JSON text (strings skipped), without
 * parsing it: checked before cJSON sees the body. */
int gk_serve_json_depth(const char *s, size_t len);

/* The prompt text of a chat: the model's template (Grok-2), or for a base model
 * a plain transcript in the same form without special tokens ("Human: ...\n\n
 * Assistant:"). Caller frees. *templated tells which was used. */
char *gk_serve_render_chat(const gk_tokenizer *tok, const gk_chat_msg *msgs, int n, bool *templated,
                           gk_serve_error *e);

/* ------------------------------------------------------------ engine --- */

typedef enum gk_serve_finish {
    GK_SERVE_RUNNING = 0,
    GK_SERVE_STOP = 1,      /* a stop token or stop string */
    GK_SERVE_LENGTH = 2,    /* max_tokens or the context is full */
    GK_SERVE_CANCELLED = 3, /* the client went away */
    GK_SERVE_FAILED = 4     /* the engine failed (message in job) */
} gk_serve_finish;

/* One generated token as reported in logprobs. */
typedef struct gk_serve_tokrec {
    int32_t id;
    float logprob;
    int n_top;
    int32_t top_id[GK_SERVE_MAX_TOP_LOGPROBS];
    float top_lp[GK_SERVE_MAX_TOP_LOGPROBS];
} gk_serve_tokrec;

typedef struct gk_serve_job gk_serve_job;
typedef struct gk_serve_engine gk_serve_engine;

typedef struct gk_serve_engine_params {
    int n_slots;      /* parallel sequences (KV sequences) */
    uint32_t n_ctx;   /* tokens per slot */
    uint32_t n_batch; /* most tokens per step */
    int max_queue;    /* waiting jobs beyond the slots before 503 */
} gk_serve_engine_params;

/* A snapshot of one slot for GET /slots. */
typedef struct gk_serve_slot_info {
    int id;
    const char *state; /* "idle", "prefill", "generating" */
    uint32_t n_cached; /* tokens in its KV sequence */
    uint32_t n_prompt, n_prompt_done, n_generated;
    uint64_t job_id;
} gk_serve_slot_info;

#define GK_SERVE_HIST_BUCKETS 12
typedef struct gk_serve_hist {
    uint64_t count[GK_SERVE_HIST_BUCKETS + 1]; /* last: +Inf */
    double sum;
} gk_serve_hist;
extern const double gk_serve_hist_bounds[GK_SERVE_HIST_BUCKETS];

typedef struct gk_serve_stats {
    uint64_t jobs_submitted, jobs_rejected, jobs_finished[5];
    uint64_t prompt_tokens, cached_tokens, generated_tokens, steps;
    int queued, busy_slots, n_slots;
    gk_serve_hist ttft, itl;
} gk_serve_stats;

/* The engine takes a context made with n_seq = n_slots and owns it from here
 * (freed by gk_serve_engine_free). */
gk_serve_engine *gk_serve_engine_new(gk_model *m, gk_context *ctx, const gk_serve_engine_params *p,
                                     gk_err *err);
void gk_serve_engine_free(gk_serve_engine *e);
/* Runs steps until gk_serve_engine_stop; all model work happens on the thread
 * that calls this. Jobs still queued or running at the stop are cancelled. */
void gk_serve_engine_run(gk_serve_engine *e);
/* One scheduling step: admit, cancel, decode one batch, sample. Returns false
 * when there was nothing to do (the caller may wait). */
bool gk_serve_engine_step(gk_serve_engine *e);
void gk_serve_engine_stop(gk_serve_engine *e);
uint32_t gk_serve_engine_n_ctx(const gk_serve_engine *e);

/* What a job asks for; tokens are copied. */
typedef struct gk_serve_job_params {
    const int32_t *prompt;
    int n_prompt;
    int64_t max_tokens;
    gk_sampler_params sp;
    float presence_penalty, frequency_penalty;
    const char *const *stop; /* stop strings, never part of the output */
    int n_stop;
    bool logprobs;
    int top_logprobs;
    bool trim_leading_space; /* chat: drop white space before the first text */
    bool ignore_eos;         /* generate through stop tokens */
} gk_serve_job_params;

/* Queues a job; NULL with e->status 503 when the queue is full, 400 for a bad job.
 * The caller holds one reference (gk_serve_job_release). */
gk_serve_job *gk_serve_submit(gk_serve_engine *e, const gk_serve_job_params *p,
                              gk_serve_error *err);
/* Asks the engine to drop the job (queued, prefill or generating); the slot is
 * free by the next step. */
void gk_serve_job_cancel(gk_serve_job *j);
void gk_serve_job_release(gk_serve_job *j);
uint64_t gk_serve_job_id(const gk_serve_job *j);

/* What a job has produced beyond a reader's cursors. */
typedef struct gk_serve_delta {
    char *text; /* new text (malloc'd, NUL-terminated; caller frees) */
    size_t n_text;
    gk_serve_tokrec *recs; /* new logprob records (malloc'd or NULL) */
    int n_recs;
    gk_serve_finish finish;
    uint32_t n_prompt, n_cached, n_generated;
    char error[256];
} gk_serve_delta;

/* Waits up to timeout_ms for output past *text_pos / *rec_pos (or the end),
 * then returns it and advances the cursors. Returns 1 when there is something
 * (text, records or the end), 0 on timeout, -1 out of memory. */
int gk_serve_job_wait(gk_serve_job *j, size_t *text_pos, int *rec_pos, int timeout_ms,
                      gk_serve_delta *d);
void gk_serve_delta_free(gk_serve_delta *d);

void gk_serve_engine_stats(gk_serve_engine *e, gk_serve_stats *s);
/* Fills up to cap slot snapshots; returns the number of slots. */
int gk_serve_engine_slots(gk_serve_engine *e, gk_serve_slot_info *out, int cap);

/* -------------------------------------------------------------- http --- */

typedef void (*gk_serve_log_fn)(void *user, const char *msg);

typedef struct gk_serve_http_params {
    const char *host; /* "127.0.0.1" by default */
    int port;
    const char *api_key;    /* NULL: no auth */
    size_t max_body;        /* bytes (413 beyond) */
    const char *model_name; /* shown by /v1/models */
    int max_connections;
    int keepalive_ms; /* an SSE comment after this long without data (0 = 5000) */
    gk_serve_log_fn log;
    void *log_user;
} gk_serve_http_params;

typedef struct gk_serve_http gk_serve_http;

/* Starts listening; until gk_serve_http_attach the server answers 503 (loading)
 * to everything but the page. */
gk_serve_http *gk_serve_http_start(const gk_serve_http_params *p, gk_err *err);
/* Makes the model available: tok for tokenize/templates, e for jobs. */
void gk_serve_http_attach(gk_serve_http *h, const gk_tokenizer *tok, gk_serve_engine *e);
/* The port actually bound (useful with port 0). */
int gk_serve_http_port(const gk_serve_http *h);
void gk_serve_http_stop(gk_serve_http *h);

/* The chat page, embedded at build time (page.html). */
extern const unsigned char gk_serve_page[];
extern const size_t gk_serve_page_len;

#endif
