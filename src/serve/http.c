/*
 * http.c - the HTTP side of `grok serve` on libmicrohttpd, one thread per
 * connection: a handler parses and checks the request, tokenizes the prompt
 * (the tokenizer is thread-safe), queues a job on the engine and then either
 * waits for the whole reply or streams it as Server-Sent Events in OpenAI's
 * chunk format. The connection's thread never touches the model.
 *
 * A client that goes away is noticed while its job waits (the socket is
 * polled for a hang-up between waits of 100 ms) or when a write fails; either
 * cancels the job, and the engine frees its slot at its next step.
 *
 * Safety: the listening address is given (127.0.0.1 unless told otherwise);
 * with an API key every path but the page and /health needs "Authorization:
 * Bearer KEY", compared in constant time; a body larger than max_body is a 413
 * (from its Content-Length, before it is read); JSON nesting is bounded before
 * parsing; the prompt length is checked before the job is queued.
 */
#define _GNU_SOURCE
#include "serve/serve.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 100 /* between checks of a waiting client's socket */

extern const unsigned char gk_serve_page_js[], gk_serve_page_css[];
extern const size_t gk_serve_page_js_len, gk_serve_page_css_len;

static const int counted_status[] = {200, 400, 401, 404, 405, 413, 500, 503};
#define N_COUNTED (int)(sizeof counted_status / sizeof counted_status[0])

struct gk_serve_http {
    struct MHD_Daemon *d;
    gk_serve_http_params p;
    char *api_key, *model_name;
    _Atomic(const gk_tokenizer *) tok;
    _Atomic(gk_serve_engine *) eng;
    atomic_uint_fast64_t n_status[N_COUNTED], seed_counter;
    atomic_int active; /* replies being generated or sent (stream objects alive) */
    time_t started;
    uint32_t id_salt;
};

/* Per connection-request state: the body as it arrives. */
typedef struct req {
    char *body;
    size_t n, cap;
    bool too_big, checked;
} req;

static void logf_(gk_serve_http *h, const char *fmt, ...) {
    if (!h->p.log) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    h->p.log(h->p.log_user, buf);
}

static void count_status(gk_serve_http *h, int status) {
    for (int i = 0; i < N_COUNTED; i++)
        if (counted_status[i] == status) atomic_fetch_add(&h->n_status[i], 1);
}

/* ------------------------------------------------------------- replies --- */

static enum MHD_Result reply(gk_serve_http *h, struct MHD_Connection *c, int status,
                             const char *type, const char *body, size_t len) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    if (status == 405) MHD_add_response_header(r, "Allow", "GET, POST");
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    count_status(h, status);
    return rc;
}

static enum MHD_Result reply_json(gk_serve_http *h, struct MHD_Connection *c, int status,
                                  cJSON *j) {
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!s) return reply(h, c, 500, "application/json", "{}", 2);
    enum MHD_Result rc = reply(h, c, status, "application/json", s, strlen(s));
    free(s);
    return rc;
}

static cJSON *error_json(const gk_serve_error *e) {
    cJSON *root = cJSON_CreateObject(), *o = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(o, "message", e->message);
    cJSON_AddStringToObject(o, "type", e->type ? e->type : "invalid_request_error");
    if (e->param[0])
        cJSON_AddStringToObject(o, "param", e->param);
    else
        cJSON_AddNullToObject(o, "param");
    if (e->code)
        cJSON_AddStringToObject(o, "code", e->code);
    else
        cJSON_AddNullToObject(o, "code");
    return root;
}

static enum MHD_Result reply_error(gk_serve_http *h, struct MHD_Connection *c,
                                   const gk_serve_error *e) {
    return reply_json(h, c, e->status, error_json(e));
}

static enum MHD_Result fail(gk_serve_http *h, struct MHD_Connection *c, int status,
                            const char *param, const char *code, const char *msg) {
    gk_serve_error e;
    gk_serve_fail(&e, status, param, code, "%s", msg);
    return reply_error(h, c, &e);
}

/* ----------------------------------------------------------- utilities --- */

/* Equal strings, in time that depends only on the lengths. */
static bool same_secret(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b), n = na > nb ? na : nb;
    unsigned char diff = (unsigned char)(na != nb);
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < na ? (unsigned char)a[i] : 0, y = i < nb ? (unsigned char)b[i] : 0;
        diff |= (unsigned char)(x ^ y);
    }
    return diff == 0;
}

/* True while the client is connected: no hang-up and no EOF waiting to be read. */
static bool client_alive(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return true;
    struct pollfd pf = {.fd = ci->connect_fd, .events = POLLIN | POLLRDHUP};
    if (poll(&pf, 1, 0) <= 0) return true;
    if (pf.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return false;
    char b;
    ssize_t r = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return r != 0;
}

/* Valid UTF-8 of n bytes with each bad byte as U+FFFD (for token pieces). */
static char *utf8_clean(const char *s, size_t n) {
    char *o = malloc(3 * n + 1), *p = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        int l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = l > 0 && i + (size_t)l <= n;
        for (int k = 1; ok && k < l; k++) ok = ((unsigned char)s[i + k] >> 6) == 2;
        if (ok && l == 2 && c < 0xC2) ok = false;
        if (ok && l == 3) {
            unsigned c1 = (unsigned char)s[i + 1];
            if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0)) ok = false;
        }
        if (ok && l == 4) {
            unsigned c1 = (unsigned char)s[i + 1];
            if ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 >= 0x90) || c > 0xF4) ok = false;
        }
        if (ok && c == 0) ok = false;
        if (!ok) {
            p = stpcpy(p, "\xEF\xBF\xBD");
            i++;
        } else {
            memcpy(p, s + i, (size_t)l);
            p += l;
            i += (size_t)l;
        }
    }
    *p = 0;
    return o;
}

static cJSON *token_json_bytes(const gk_tokenizer *tok, int32_t id, char **text) {
    int n = gk_token_to_bytes(tok, id, false, NULL, 0);
    char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || n < 0 || gk_token_to_bytes(tok, id, false, buf, n) != n) n = 0;
    *text = utf8_clean(buf ? buf : "", (size_t)n);
    cJSON *b = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(b, cJSON_CreateNumber((unsigned char)buf[i]));
    free(buf);
    return b;
}

/* Chat logprobs: {"content":[{"token","logprob","bytes","top_logprobs":[...]}],"refusal":null} */
static cJSON *chat_logprobs(const gk_tokenizer *tok, const gk_serve_tokrec *r, int n) {
    cJSON *lp = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(lp, "content");
    for (int i = 0; i < n; i++) {
        cJSON *t = cJSON_CreateObject();
        char *s = NULL;
        cJSON *bytes = token_json_bytes(tok, r[i].id, &s);
        cJSON_AddStringToObject(t, "token", s ? s : "");
        free(s);
        cJSON_AddNumberToObject(t, "logprob", r[i].logprob);
        cJSON_AddItemToObject(t, "bytes", bytes);
        cJSON *top = cJSON_AddArrayToObject(t, "top_logprobs");
        for (int k = 0; k < r[i].n_top; k++) {
            cJSON *a = cJSON_CreateObject();
            cJSON *b = token_json_bytes(tok, r[i].top_id[k], &s);
            cJSON_AddStringToObject(a, "token", s ? s : "");
            free(s);
            cJSON_AddNumberToObject(a, "logprob", r[i].top_lp[k]);
            cJSON_AddItemToObject(a, "bytes", b);
            cJSON_AddItemToArray(top, a);
        }
        cJSON_AddItemToArray(content, t);
    }
    cJSON_AddNullToObject(lp, "refusal");
    return lp;
}

/* Completion logprobs: {"tokens","token_logprobs","top_logprobs":[{tok:lp}],"text_offset"} */
static cJSON *completion_logprobs(const gk_tokenizer *tok, const gk_serve_tokrec *r, int n,
                                  size_t *offset) {
    cJSON *lp = cJSON_CreateObject(), *toks = cJSON_AddArrayToObject(lp, "tokens"),
          *lps = cJSON_AddArrayToObject(lp, "token_logprobs"),
          *tops = cJSON_AddArrayToObject(lp, "top_logprobs"),
          *offs = cJSON_AddArrayToObject(lp, "text_offset");
    for (int i = 0; i < n; i++) {
        char *s = NULL;
        cJSON_Delete(token_json_bytes(tok, r[i].id, &s));
        cJSON_AddItemToArray(toks, cJSON_CreateString(s ? s : ""));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)*offset));
        *offset += s ? strlen(s) : 0;
        free(s);
        cJSON_AddItemToArray(lps, cJSON_CreateNumber(r[i].logprob));
        cJSON *top = cJSON_CreateObject();
        for (int k = 0; k < r[i].n_top; k++) {
            cJSON_Delete(token_json_bytes(tok, r[i].top_id[k], &s));
            if (s && !cJSON_GetObjectItemCaseSensitive(top, s))
                cJSON_AddNumberToObject(top, s, r[i].top_lp[k]);
            free(s);
        }
        cJSON_AddItemToArray(tops, top);
    }
    return lp;
}

static cJSON *usage_json(uint32_t prompt, uint32_t gen, uint32_t cached) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", gen);
    cJSON_AddNumberToObject(u, "total_tokens", (double)prompt + gen);
    cJSON *pd = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(pd, "cached_tokens", cached);
    cJSON *cd = cJSON_AddObjectToObject(u, "completion_tokens_details");
    cJSON_AddNumberToObject(cd, "reasoning_tokens", 0);
    return u;
}

static const char *finish_name(gk_serve_finish f) {
    return f == GK_SERVE_STOP ? "stop" : f == GK_SERVE_LENGTH ? "length" : NULL;
}

/* ---------------------------------------------------------- a reply job --- */

typedef struct stream {
    gk_serve_http *h;
    struct MHD_Connection *conn;
    gk_serve_job *job;
    const gk_tokenizer *tok;
    gk_serve_kind kind;
    bool include_usage, sent_role, done, logprobs;
    char id[48];
    time_t created;
    size_t text_pos, lp_offset;
    int rec_pos;
    char *buf; /* SSE bytes not yet handed to MHD */
    size_t n_buf, off_buf, cap_buf;
    double t_last_write;
} stream;

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The frame every response and chunk shares: id, object, created, model. */
static cJSON *frame(const stream *s, const char *object) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", s->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)s->created);
    cJSON_AddStringToObject(o, "model", s->h->model_name);
    if (s->kind == GK_SERVE_CHAT)
        cJSON_AddStringToObject(o, "system_fingerprint", "grok.c-" GK_VERSION);
    return o;
}

static bool buf_add(stream *s, const char *a, size_t n) {
    if (s->n_buf + n + 1 > s->cap_buf) {
        size_t cap = s->cap_buf ? s->cap_buf : 1024;
        while (cap < s->n_buf + n + 1) cap *= 2;
        char *b = realloc(s->buf, cap);
        if (!b) return false;
        s->buf = b;
        s->cap_buf = cap;
    }
    memcpy(s->buf + s->n_buf, a, n);
    s->n_buf += n;
    return true;
}

static bool sse_event(stream *s, cJSON *o) {
    char *j = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!j) return false;
    bool ok = buf_add(s, "data: ", 6) && buf_add(s, j, strlen(j)) && buf_add(s, "\n\n", 2);
    free(j);
    return ok;
}

/* One chunk carrying a delta (text, records) and possibly the finish reason. */
static bool sse_chunk(stream *s, const gk_serve_delta *d, const char *finish) {
    bool chat = s->kind == GK_SERVE_CHAT;
    cJSON *o = frame(s, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *ch = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", 0);
    if (chat) {
        cJSON *delta = cJSON_AddObjectToObject(c, "delta");
        if (!s->sent_role) {
            cJSON_AddStringToObject(delta, "role", "assistant");
            s->sent_role = true;
        }
        if (!finish || d->n_text) cJSON_AddStringToObject(delta, "content", d->text ? d->text : "");
    } else {
        cJSON_AddStringToObject(c, "text", d->text ? d->text : "");
    }
    if (s->logprobs && d->n_recs)
        cJSON_AddItemToObject(c, "logprobs",
                              chat
                                  ? chat_logprobs(s->tok, d->recs, d->n_recs)
                                  : completion_logprobs(s->tok, d->recs, d->n_recs, &s->lp_offset));
    else
        cJSON_AddNullToObject(c, "logprobs");
    if (finish)
        cJSON_AddStringToObject(c, "finish_reason", finish);
    else
        cJSON_AddNullToObject(c, "finish_reason");
    cJSON_AddItemToArray(ch, c);
    if (s->include_usage) cJSON_AddNullToObject(o, "usage");
    return sse_event(s, o);
}

static void stream_free(void *cls) {
    stream *s = cls;
    if (!s) return;
    if (s->job) {
        gk_serve_job_cancel(s->job); /* no effect when it has finished */
        gk_serve_job_release(s->job);
    }
    atomic_fetch_sub(&s->h->active, 1);
    free(s->buf);
    free(s);
}

/* Fills s->buf with the next events: blocks until the job produced something,
 * ended, or a keep-alive comment is due. Returns false when the client left. */
static bool stream_fill(stream *s) {
    for (;;) {
        if (!client_alive(s->conn)) return false;
        gk_serve_delta d;
        int r = gk_serve_job_wait(s->job, &s->text_pos, &s->rec_pos, WAIT_MS, &d);
        if (r < 0) return false;
        if (r == 0) {
            if (mono_s() - s->t_last_write >= s->h->p.keepalive_ms / 1000.0) {
                s->t_last_write = mono_s();
                return buf_add(s, ": keep-alive\n\n", 14);
            }
            continue;
        }
        bool ok = true;
        const char *fin = finish_name(d.finish);
        if (d.finish == GK_SERVE_CANCELLED || d.finish == GK_SERVE_FAILED) {
            if (d.n_text || d.n_recs) ok = sse_chunk(s, &d, NULL);
            gk_serve_error e;
            gk_serve_fail(&e, d.finish == GK_SERVE_CANCELLED ? 503 : 500, "", NULL, "%s",
                          d.error[0] ? d.error : "the request failed");
            ok = ok && sse_event(s, error_json(&e)) && buf_add(s, "data: [DONE]\n\n", 14);
            s->done = true;
        } else if (fin) {
            ok = sse_chunk(s, &d, fin);
            if (ok && s->include_usage) {
                cJSON *o = frame(s, s->kind == GK_SERVE_CHAT ? "chat.completion.chunk"
                                                             : "text_completion");
                cJSON_AddArrayToObject(o, "choices");
                cJSON_AddItemToObject(o, "usage",
                                      usage_json(d.n_prompt, d.n_generated, d.n_cached));
                ok = sse_event(s, o);
            }
            ok = ok && buf_add(s, "data: [DONE]\n\n", 14);
            s->done = true;
        } else if (d.n_text || d.n_recs || !s->sent_role) {
            ok = sse_chunk(s, &d, NULL);
        }
        gk_serve_delta_free(&d);
        if (!ok) return false;
        if (s->n_buf > s->off_buf || s->done) {
            s->t_last_write = mono_s();
            return true;
        }
    }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
    stream *s = cls;
    if (s->off_buf == s->n_buf) {
        s->off_buf = s->n_buf = 0;
        if (s->done) return MHD_CONTENT_READER_END_OF_STREAM;
        if (!stream_fill(s)) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (s->n_buf == 0) return MHD_CONTENT_READER_END_OF_STREAM;
    }
    size_t n = s->n_buf - s->off_buf;
    if (n > max) n = max;
    memcpy(out, s->buf + s->off_buf, n);
    s->off_buf += n;
    return (ssize_t)n;
}

/* Waits for the whole reply and answers it as one JSON document. */
static enum MHD_Result reply_whole(stream *s) {
    gk_serve_http *h = s->h;
    char *text = NULL;
    size_t n_text = 0;
    gk_serve_tokrec *recs = NULL;
    int n_recs = 0;
    gk_serve_delta d = {0};
    for (;;) {
        if (!client_alive(s->conn)) {
            free(text);
            free(recs);
            return MHD_NO; /* stream_free cancels the job */
        }
        int r = gk_serve_job_wait(s->job, &s->text_pos, &s->rec_pos, WAIT_MS, &d);
        if (r < 0) break;
        if (r == 0) continue;
        char *t = realloc(text, n_text + d.n_text + 1);
        if (t) text = t;
        gk_serve_tokrec *rr =
            d.n_recs ? realloc(recs, (size_t)(n_recs + d.n_recs) * sizeof *recs) : recs;
        if (rr) recs = rr;
        if (!t || (d.n_recs && !rr)) {
            free(text);
            free(recs);
            gk_serve_delta_free(&d);
            return fail(h, s->conn, 500, "", NULL, "out of memory");
        }
        memcpy(text + n_text, d.text, d.n_text);
        n_text += d.n_text;
        text[n_text] = 0;
        if (d.n_recs) memcpy(recs + n_recs, d.recs, (size_t)d.n_recs * sizeof *recs);
        n_recs += d.n_recs;
        gk_serve_finish f = d.finish;
        gk_serve_delta_free(&d);
        if (f != GK_SERVE_RUNNING) break;
    }
    enum MHD_Result rc;
    if (d.finish == GK_SERVE_CANCELLED || d.finish == GK_SERVE_FAILED ||
        d.finish == GK_SERVE_RUNNING) {
        gk_serve_error e;
        gk_serve_fail(&e, d.finish == GK_SERVE_CANCELLED ? 503 : 500, "", NULL, "%s",
                      d.error[0] ? d.error : "the request failed");
        rc = reply_error(h, s->conn, &e);
    } else {
        bool chat = s->kind == GK_SERVE_CHAT;
        cJSON *o = frame(s, chat ? "chat.completion" : "text_completion");
        cJSON *ch = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
        cJSON_AddNumberToObject(c, "index", 0);
        if (chat) {
            cJSON *m = cJSON_AddObjectToObject(c, "message");
            cJSON_AddStringToObject(m, "role", "assistant");
            cJSON_AddStringToObject(m, "content", text ? text : "");
            cJSON_AddNullToObject(m, "refusal");
        } else {
            cJSON_AddStringToObject(c, "text", text ? text : "");
        }
        if (s->logprobs)
            cJSON_AddItemToObject(c, "logprobs",
                                  chat ? chat_logprobs(s->tok, recs, n_recs)
                                       : completion_logprobs(s->tok, recs, n_recs, &s->lp_offset));
        else
            cJSON_AddNullToObject(c, "logprobs");
        cJSON_AddStringToObject(c, "finish_reason", finish_name(d.finish));
        cJSON_AddItemToArray(ch, c);
        cJSON_AddItemToObject(o, "usage", usage_json(d.n_prompt, d.n_generated, d.n_cached));
        rc = reply_json(h, s->conn, 200, o);
    }
    free(text);
    free(recs);
    return rc;
}

/* ------------------------------------------------------- completions --- */

static int32_t *tokenize(const gk_tokenizer *tok, const char *text, bool special, int *n,
                         gk_serve_error *e) {
    gk_err err;
    size_t len = strlen(text);
    int k = gk_tokenize(tok, text, len, special, NULL, 0, &err);
    if (k < 0) {
        gk_serve_fail(e, 400, "", NULL, "tokenizing: %s", err.msg);
        return NULL;
    }
    int32_t *ids = malloc(((size_t)k + 1) * sizeof *ids);
    if (!ids) {
        gk_serve_fail(e, 500, "", NULL, "out of memory");
        return NULL;
    }
    gk_tokenize(tok, text, len, special, ids, k, &err);
    *n = k;
    return ids;
}

static enum MHD_Result generate(gk_serve_http *h, struct MHD_Connection *c, gk_serve_kind kind,
                                const req *rq) {
    gk_serve_engine *eng = atomic_load(&h->eng);
    const gk_tokenizer *tok = atomic_load(&h->tok);
    uint32_t n_ctx = gk_serve_engine_n_ctx(eng);
    gk_serve_request r;
    gk_serve_error e;
    if (gk_serve_parse_request(&r, kind, rq->body ? rq->body : "", rq->n, (int)n_ctx, &e) < 0)
        return reply_error(h, c, &e);
    int32_t *ids = NULL;
    int n = 0;
    const char *stops[GK_SERVE_MAX_STOP + 2];
    int n_stop = 0;
    for (int i = 0; i < r.n_stop; i++) stops[n_stop++] = r.stop[i];
    const char *param = kind == GK_SERVE_CHAT ? "messages" : "prompt";
    if (kind == GK_SERVE_CHAT) {
        bool templated;
        char *text = gk_serve_render_chat(tok, r.msgs, r.n_msgs, &templated, &e);
        if (text) ids = tokenize(tok, text, templated, &n, &e);
        free(text);
        /* a base model's transcript ends where it starts the next turn itself */
        if (!templated) stops[n_stop++] = "\nHuman:", stops[n_stop++] = "\nSystem:";
    } else if (r.prompt) {
        ids = tokenize(tok, r.prompt, false, &n, &e);
        if (ids && n == 0 && gk_tokenizer_bos(tok) >= 0) ids[n++] = gk_tokenizer_bos(tok);
    } else {
        ids = r.prompt_ids;
        n = r.n_prompt_ids;
        r.prompt_ids = NULL;
        r.n_prompt_ids = 0;
    }
    if (!ids) goto fail;
    if (n == 0) {
        gk_serve_fail(&e, 400, param, "invalid_value", "the prompt is empty");
        goto fail;
    }
    if ((uint32_t)n >= n_ctx) {
        gk_serve_fail(&e, 400, param, "context_length_exceeded",
                      "the prompt has %d tokens; the context holds %u (prompt and reply)", n,
                      n_ctx);
        goto fail;
    }
    gk_serve_job_params jp = {.prompt = ids,
                              .n_prompt = n,
                              .max_tokens = r.max_tokens,
                              .presence_penalty = r.presence_penalty,
                              .frequency_penalty = r.frequency_penalty,
                              .stop = stops,
                              .n_stop = n_stop,
                              .logprobs = r.logprobs,
                              .top_logprobs = r.top_logprobs,
                              .trim_leading_space = kind == GK_SERVE_CHAT,
                              .ignore_eos = r.ignore_eos};
    jp.sp = gk_sampler_default_params();
    jp.sp.temperature = r.temperature;
    jp.sp.top_k = r.top_k;
    jp.sp.top_p = r.top_p;
    jp.sp.min_p = r.min_p;
    jp.sp.repeat_penalty = r.repeat_penalty;
    jp.sp.repeat_last_n = r.repeat_last_n;
    jp.sp.seed = r.has_seed ? r.seed
                            : (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull +
                                  atomic_fetch_add(&h->seed_counter, 1);
    gk_serve_job *job = gk_serve_submit(eng, &jp, &e);
    if (!job) goto fail;
    free(ids);
    ids = NULL;
    stream *s = calloc(1, sizeof *s);
    if (!s) {
        gk_serve_job_cancel(job);
        gk_serve_job_release(job);
        gk_serve_fail(&e, 500, "", NULL, "out of memory");
        goto fail;
    }
    s->h = h;
    atomic_fetch_add(&h->active, 1);
    s->conn = c;
    s->job = job;
    s->tok = tok;
    s->kind = kind;
    s->include_usage = r.include_usage;
    s->logprobs = r.logprobs;
    s->created = time(NULL);
    s->t_last_write = mono_s();
    snprintf(s->id, sizeof s->id, "%s-%08x%08llx", kind == GK_SERVE_CHAT ? "chatcmpl" : "cmpl",
             h->id_salt, (unsigned long long)gk_serve_job_id(job));
    bool streaming = r.stream;
    gk_serve_request_free(&r);
    if (!streaming) {
        enum MHD_Result rc = reply_whole(s);
        stream_free(s);
        return rc;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, s, stream_free);
    if (!resp) {
        stream_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    enum MHD_Result rc = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    count_status(h, 200);
    return rc;
fail:
    free(ids);
    gk_serve_request_free(&r);
    return reply_error(h, c, &e);
}

/* ------------------------------------------------------- small routes --- */

static cJSON *parse_body(const req *rq, gk_serve_error *e) {
    if (gk_serve_json_depth(rq->body ? rq->body : "", rq->n) > GK_SERVE_MAX_JSON_DEPTH) {
        gk_serve_fail(e, 400, "", "invalid_json", "the JSON body is nested too deep");
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(rq->body ? rq->body : "", rq->n);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        gk_serve_fail(e, 400, "", "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    return j;
}

static enum MHD_Result route_tokenize(gk_serve_http *h, struct MHD_Connection *c, const req *rq) {
    gk_serve_error e;
    cJSON *j = parse_body(rq, &e);
    if (!j) return reply_error(h, c, &e);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(j, "content");
    const cJSON *special = cJSON_GetObjectItemCaseSensitive(j, "parse_special");
    const cJSON *pieces = cJSON_GetObjectItemCaseSensitive(j, "with_pieces");
    if (!cJSON_IsString(content)) {
        cJSON_Delete(j);
        return fail(h, c, 400, "content", "invalid_type", "'content' must be a string");
    }
    const gk_tokenizer *tok = atomic_load(&h->tok);
    int n;
    int32_t *ids = tokenize(tok, content->valuestring, cJSON_IsTrue(special), &n, &e);
    if (!ids) {
        cJSON_Delete(j);
        return reply_error(h, c, &e);
    }
    cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "tokens");
    for (int i = 0; i < n; i++) {
        if (cJSON_IsTrue(pieces)) {
            cJSON *t = cJSON_CreateObject();
            char *s = NULL;
            cJSON_Delete(token_json_bytes(tok, ids[i], &s));
            cJSON_AddNumberToObject(t, "id", ids[i]);
            cJSON_AddStringToObject(t, "piece", s ? s : "");
            free(s);
            cJSON_AddItemToArray(a, t);
        } else {
            cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
        }
    }
    free(ids);
    cJSON_Delete(j);
    return reply_json(h, c, 200, o);
}

static enum MHD_Result route_detokenize(gk_serve_http *h, struct MHD_Connection *c, const req *rq) {
    gk_serve_error e;
    cJSON *j = parse_body(rq, &e);
    if (!j) return reply_error(h, c, &e);
    const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(j, "tokens"), *t;
    const gk_tokenizer *tok = atomic_load(&h->tok);
    if (!cJSON_IsArray(tokens)) {
        cJSON_Delete(j);
        return fail(h, c, 400, "tokens", "invalid_type", "'tokens' must be an array of ids");
    }
    int32_t nv = gk_tokenizer_n_vocab(tok);
    size_t cap = 64, n = 0;
    char *out = malloc(cap);
    gk_detok d;
    gk_detok_init(&d, tok);
    d.first = true;
    cJSON_ArrayForEach(t, tokens) {
        if (!out) break;
        if (!cJSON_IsNumber(t) || t->valuedouble < 0 || t->valuedouble >= nv ||
            t->valuedouble != (double)(int32_t)t->valuedouble) {
            free(out);
            cJSON_Delete(j);
            return fail(h, c, 400, "tokens", "invalid_value",
                        "'tokens' must hold token ids within the vocabulary");
        }
        /* room for the piece, held bytes, and each byte as U+FFFD at worst */
        int32_t id = (int32_t)t->valuedouble;
        size_t need = 3 * ((size_t)gk_token_to_bytes(tok, id, false, NULL, 0) + 8) + 1;
        if (n + need > cap) {
            while (n + need > cap) cap *= 2;
            char *o2 = realloc(out, cap);
            if (!o2) free(out);
            out = o2;
            if (!out) break;
        }
        int k = gk_detok_push(&d, (int32_t)t->valuedouble, out + n, (int)(cap - n - 1));
        if (k > 0) n += (size_t)k;
    }
    if (out) {
        int k = gk_detok_flush(&d, out + n, (int)(cap - n - 1));
        if (k > 0) n += (size_t)k;
        out[n] = 0;
    }
    cJSON_Delete(j);
    if (!out) return fail(h, c, 500, "", NULL, "out of memory");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "content", out);
    free(out);
    return reply_json(h, c, 200, o);
}

static enum MHD_Result route_template(gk_serve_http *h, struct MHD_Connection *c, const req *rq) {
    gk_serve_request r;
    gk_serve_error e;
    /* the same checks as a chat request: only 'messages' (and harmless fields) */
    if (gk_serve_parse_request(&r, GK_SERVE_CHAT, rq->body ? rq->body : "", rq->n, 0, &e) < 0)
        return reply_error(h, c, &e);
    bool templated;
    char *text = gk_serve_render_chat(atomic_load(&h->tok), r.msgs, r.n_msgs, &templated, &e);
    gk_serve_request_free(&r);
    if (!text) return reply_error(h, c, &e);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "prompt", text);
    cJSON_AddBoolToObject(o, "templated", templated);
    free(text);
    return reply_json(h, c, 200, o);
}

static enum MHD_Result route_slots(gk_serve_http *h, struct MHD_Connection *c) {
    gk_serve_engine *eng = atomic_load(&h->eng);
    gk_serve_slot_info info[256];
    int n = gk_serve_engine_slots(eng, info, 256);
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n && i < 256; i++) {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddNumberToObject(s, "id", info[i].id);
        cJSON_AddStringToObject(s, "state", info[i].state);
        cJSON_AddBoolToObject(s, "is_processing", strcmp(info[i].state, "idle") != 0);
        cJSON_AddNumberToObject(s, "n_cached", info[i].n_cached);
        cJSON_AddNumberToObject(s, "n_prompt", info[i].n_prompt);
        cJSON_AddNumberToObject(s, "n_prompt_done", info[i].n_prompt_done);
        cJSON_AddNumberToObject(s, "n_generated", info[i].n_generated);
        cJSON_AddNumberToObject(s, "request", (double)info[i].job_id);
        cJSON_AddItemToArray(a, s);
    }
    return reply_json(h, c, 200, a);
}

static bool grow_str(char **s, size_t *n, size_t *cap, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(*s ? *s + *n : NULL, *s ? *cap - *n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return false;
        if (*s && *n + (size_t)k < *cap) {
            *n += (size_t)k;
            return true;
        }
        size_t c = *cap ? *cap * 2 : 4096;
        while (c < *n + (size_t)k + 1) c *= 2;
        char *t = realloc(*s, c);
        if (!t) return false;
        *s = t;
        *cap = c;
    }
}

static void hist_text(char **s, size_t *n, size_t *cap, const char *name, const char *help,
                      const gk_serve_hist *hh) {
    grow_str(s, n, cap, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < GK_SERVE_HIST_BUCKETS; i++) {
        cum += hh->count[i];
        grow_str(s, n, cap, "%s_bucket{le=\"%g\"} %llu\n", name, gk_serve_hist_bounds[i],
                 (unsigned long long)cum);
    }
    cum += hh->count[GK_SERVE_HIST_BUCKETS];
    grow_str(s, n, cap, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
             (unsigned long long)cum, name, hh->sum, name, (unsigned long long)cum);
}

static enum MHD_Result route_metrics(gk_serve_http *h, struct MHD_Connection *c) {
    gk_serve_stats st;
    gk_serve_engine_stats(atomic_load(&h->eng), &st);
    char *s = NULL;
    size_t n = 0, cap = 0;
#define COUNTER(name, help, v)                                                                     \
    grow_str(&s, &n, &cap, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %llu\n",   \
             (unsigned long long)(v))
#define GAUGE(name, help, v)                                                                       \
    grow_str(&s, &n, &cap, "# HELP " name " " help "\n# TYPE " name " gauge\n" name " %llu\n",     \
             (unsigned long long)(v))
    grow_str(&s, &n, &cap,
             "# HELP grok_http_responses_total HTTP responses by status.\n"
             "# TYPE grok_http_responses_total counter\n");
    for (int i = 0; i < N_COUNTED; i++)
        grow_str(&s, &n, &cap, "grok_http_responses_total{code=\"%d\"} %llu\n", counted_status[i],
                 (unsigned long long)atomic_load(&h->n_status[i]));
    COUNTER("grok_requests_total", "Generation requests queued.", st.jobs_submitted);
    COUNTER("grok_requests_rejected_total", "Generation requests refused (queue full).",
            st.jobs_rejected);
    static const char *const why[] = {"running", "stop", "length", "cancelled", "failed"};
    grow_str(&s, &n, &cap,
             "# HELP grok_requests_finished_total Generation requests ended, by reason.\n"
             "# TYPE grok_requests_finished_total counter\n");
    for (int i = 1; i < 5; i++)
        grow_str(&s, &n, &cap, "grok_requests_finished_total{reason=\"%s\"} %llu\n", why[i],
                 (unsigned long long)st.jobs_finished[i]);
    COUNTER("grok_prompt_tokens_total", "Prompt tokens of admitted requests.", st.prompt_tokens);
    COUNTER("grok_prompt_tokens_cached_total", "Prompt tokens reused from the KV cache.",
            st.cached_tokens);
    COUNTER("grok_generated_tokens_total", "Tokens generated.", st.generated_tokens);
    COUNTER("grok_decode_steps_total", "Batched forward passes.", st.steps);
    GAUGE("grok_queue_length", "Requests waiting for a slot.", st.queued);
    GAUGE("grok_slots_busy", "Slots serving a request.", st.busy_slots);
    GAUGE("grok_slots_total", "Slots (parallel sequences).", st.n_slots);
    hist_text(&s, &n, &cap, "grok_time_to_first_token_seconds",
              "From queueing to the first generated token.", &st.ttft);
    hist_text(&s, &n, &cap, "grok_inter_token_seconds", "Between consecutive generated tokens.",
              &st.itl);
#undef COUNTER
#undef GAUGE
    if (!s) return fail(h, c, 500, "", NULL, "out of memory");
    enum MHD_Result rc = reply(h, c, 200, "text/plain; version=0.0.4", s, n);
    free(s);
    return rc;
}

static enum MHD_Result route_models(gk_serve_http *h, struct MHD_Connection *c) {
    cJSON *o = cJSON_CreateObject(), *a;
    cJSON_AddStringToObject(o, "object", "list");
    a = cJSON_AddArrayToObject(o, "data");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", h->model_name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)h->started);
    cJSON_AddStringToObject(m, "owned_by", "grok.c");
    cJSON_AddItemToArray(a, m);
    return reply_json(h, c, 200, o);
}

static enum MHD_Result static_file(gk_serve_http *h, struct MHD_Connection *c, const char *type,
                                   const unsigned char *data, size_t len) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    /* The page's own script and style only: even if model output reached the DOM
     * as HTML, an inline script or an onerror handler would not run. */
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; script-src 'self'; style-src 'self'; "
                            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                            "form-action 'none'; frame-ancestors 'none'");
    enum MHD_Result rc = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    count_status(h, 200);
    return rc;
}

/* ------------------------------------------------------------- routing --- */

typedef enum {
    R_NONE,
    R_PAGE,
    R_JS,
    R_CSS,
    R_HEALTH,
    R_MODELS,
    R_CHAT,
    R_COMPL,
    R_METRICS,
    R_TOKENIZE,
    R_DETOKENIZE,
    R_TEMPLATE,
    R_SLOTS
} route_id;

static const struct {
    const char *path;
    const char *method;
    route_id id;
} routes[] = {
    {"/", "GET", R_PAGE},
    {"/index.html", "GET", R_PAGE},
    {"/page.js", "GET", R_JS},
    {"/page.css", "GET", R_CSS},
    {"/health", "GET", R_HEALTH},
    {"/v1/health", "GET", R_HEALTH},
    {"/v1/models", "GET", R_MODELS},
    {"/v1/chat/completions", "POST", R_CHAT},
    {"/chat/completions", "POST", R_CHAT},
    {"/v1/completions", "POST", R_COMPL},
    {"/completions", "POST", R_COMPL},
    {"/metrics", "GET", R_METRICS},
    {"/tokenize", "POST", R_TOKENIZE},
    {"/detokenize", "POST", R_DETOKENIZE},
    {"/apply-template", "POST", R_TEMPLATE},
    {"/slots", "GET", R_SLOTS},
};

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls) {
    gk_serve_http *h = cls;
    req *rq = *con_cls;
    route_id id = R_NONE;
    bool path_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(url, routes[i].path)) {
            path_known = true;
            if (!strcmp(method, routes[i].method) ||
                (!strcmp(method, "HEAD") && !strcmp(routes[i].method, "GET")))
                id = routes[i].id;
        }
    if (!rq) {
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        *con_cls = rq;
        /* Checks that need no body answer at once, before the body is read. */
        if (!path_known) return fail(h, c, 404, "", "not_found", "no such endpoint");
        if (id == R_NONE)
            return fail(h, c, 405, "", "method_not_allowed", "method not allowed here");
        if (h->api_key && id != R_PAGE && id != R_JS && id != R_CSS && id != R_HEALTH) {
            const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
            bool ok = auth && !strncmp(auth, "Bearer ", 7) && same_secret(auth + 7, h->api_key);
            if (!ok)
                return fail(h, c, 401, "", "invalid_api_key",
                            auth ? "invalid API key" : "missing API key (Authorization: Bearer)");
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > h->p.max_body)
            return fail(h, c, 413, "", "request_too_large", "the request body is too large");
        rq->checked = true;
        return MHD_YES;
    }
    if (!rq->checked) return MHD_YES; /* answered already; the rest is discarded */
    if (*upload_size) {
        if (rq->n + *upload_size > h->p.max_body)
            rq->too_big = true;
        else {
            if (rq->n + *upload_size + 1 > rq->cap) {
                size_t cap = rq->cap ? rq->cap : 4096;
                while (cap < rq->n + *upload_size + 1) cap *= 2;
                char *b = realloc(rq->body, cap);
                if (!b) return MHD_NO;
                rq->body = b;
                rq->cap = cap;
            }
            memcpy(rq->body + rq->n, upload, *upload_size);
            rq->n += *upload_size;
            rq->body[rq->n] = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    rq->checked = false; /* one answer per request */
    if (rq->too_big)
        return fail(h, c, 413, "", "request_too_large", "the request body is too large");
    switch (id) {
    case R_PAGE:
        return static_file(h, c, "text/html; charset=utf-8", gk_serve_page, gk_serve_page_len);
    case R_JS:
        return static_file(h, c, "text/javascript; charset=utf-8", gk_serve_page_js,
                           gk_serve_page_js_len);
    case R_CSS:
        return static_file(h, c, "text/css; charset=utf-8", gk_serve_page_css,
                           gk_serve_page_css_len);
    default:
        break;
    }
    if (!atomic_load(&h->eng)) {
        if (id == R_HEALTH) return fail(h, c, 503, "", "loading", "loading the model");
        return fail(h, c, 503, "", "loading", "the model is still loading");
    }
    switch (id) {
    case R_HEALTH: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "ok");
        return reply_json(h, c, 200, o);
    }
    case R_MODELS:
        return route_models(h, c);
    case R_CHAT:
        return generate(h, c, GK_SERVE_CHAT, rq);
    case R_COMPL:
        return generate(h, c, GK_SERVE_COMPLETION, rq);
    case R_METRICS:
        return route_metrics(h, c);
    case R_TOKENIZE:
        return route_tokenize(h, c, rq);
    case R_DETOKENIZE:
        return route_detokenize(h, c, rq);
    case R_TEMPLATE:
        return route_template(h, c, rq);
    case R_SLOTS:
        return route_slots(h, c);
    default:
        return fail(h, c, 404, "", "not_found", "no such endpoint");
    }
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
    req *rq = *con_cls;
    if (rq) {
        free(rq->body);
        free(rq);
    }
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    gk_serve_http *h = cls;
    if (!h->p.log) return;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && buf[n - 1] == '\n') buf[--n] = 0;
    h->p.log(h->p.log_user, buf);
}

gk_serve_http *gk_serve_http_start(const gk_serve_http_params *p, gk_err *err) {
    gk_serve_http *h = calloc(1, sizeof *h);
    if (!h) {
        if (err) snprintf(err->msg, sizeof err->msg, "serve: out of memory");
        return NULL;
    }
    h->p = *p;
    if (!h->p.host) h->p.host = "127.0.0.1";
    if (!h->p.max_body) h->p.max_body = 8u << 20;
    if (!h->p.max_connections) h->p.max_connections = 256;
    if (h->p.keepalive_ms <= 0) h->p.keepalive_ms = 5000;
    h->api_key = p->api_key ? strdup(p->api_key) : NULL;
    h->model_name = strdup(p->model_name ? p->model_name : "grok");
    h->started = time(NULL);
    h->id_salt = (uint32_t)(h->started * 2654435761u) ^ (uint32_t)getpid();
    struct sockaddr_storage ss = {0};
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_ERROR_LOG | MHD_USE_ITC;
    const char *host = !strcmp(h->p.host, "localhost") ? "127.0.0.1" : h->p.host;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)p->port);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)p->port);
        flags |= MHD_USE_IPv6;
    } else {
        if (err)
            snprintf(err->msg, sizeof err->msg, "serve: --host '%s' is not an IPv4 or IPv6 address",
                     p->host);
        goto fail;
    }
    if (!h->model_name || (p->api_key && !h->api_key)) goto fail;
    h->d = MHD_start_daemon(flags, (uint16_t)p->port, NULL, NULL, handler, h,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED, completed, h,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)h->p.max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_END);
    if (!h->d) {
        if (err)
            snprintf(err->msg, sizeof err->msg, "serve: cannot listen on %s port %d (in use?)",
                     p->host ? p->host : "127.0.0.1", p->port);
        goto fail;
    }
    logf_(h, "listening on http://%s:%d", h->p.host, gk_serve_http_port(h));
    return h;
fail:
    free(h->api_key);
    free(h->model_name);
    free(h);
    return NULL;
}

void gk_serve_http_attach(gk_serve_http *h, const gk_tokenizer *tok, gk_serve_engine *e) {
    atomic_store(&h->tok, tok);
    atomic_store(&h->eng, e);
}

int gk_serve_http_port(const gk_serve_http *h) {
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    return di ? di->port : h->p.port;
}

void gk_serve_http_stop(gk_serve_http *h) {
    if (!h) return;
    /* No new connections; replies under way (which end at once when the engine
     * has stopped: an error event and [DONE]) get up to 3 s to reach their
     * clients before the remaining connections are closed. */
    MHD_socket ls = MHD_quiesce_daemon(h->d);
    for (int i = 0; i < 300 && atomic_load(&h->active) > 0; i++) usleep(10000);
    MHD_stop_daemon(h->d);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    free(h->api_key);
    free(h->model_name);
    free(h);
}
