/*
 * engine.c - the scheduler of `grok serve`: continuous batching over KV sequences.
 *
 * One thread (the caller of gk_serve_engine_run) owns the context, its KV cache
 * and every sampler. HTTP threads only submit jobs, cancel them and read their
 * output; everything they share with the engine is guarded by one mutex (e->mu)
 * and each job's condition variable tells its reader that output arrived.
 *
 * A slot is one KV sequence of the context. It remembers the tokens its sequence
 * holds (cache[]), so that a new job goes to the idle slot whose cache shares the
 * longest prefix with its prompt, keeps that prefix (gk_kv_seq_keep) and only
 * runs the rest: a repeated or extended prompt (a chat that grows by a turn)
 * reuses its KV cache. Each step is one gk_decode_batch holding one token of
 * every generating slot, then pending prompt tokens up to n_batch in total, so a
 * long prompt advances in chunks between the tokens of the other streams.
 *
 * Output: generated text is released to the reader only when no stop string can
 * begin in it (a tail that is a prefix of a stop string is held back), so a stop
 * string is never partly streamed; streamed and non-streamed replies read the
 * same released text.
 */
#define _GNU_SOURCE /* memmem */
#include "serve/serve.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const double gk_serve_hist_bounds[GK_SERVE_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1,  0.25,
                                                            0.5,   1.0,  2.5,   5.0,  10.0, 30.0};

typedef enum { SLOT_IDLE = 0, SLOT_PREFILL = 1, SLOT_GEN = 2 } slot_state;

struct gk_serve_job {
    uint64_t id;
    gk_serve_engine *eng;
    int refs; /* under eng->mu: the submitter's and the engine's */
    /* what was asked (immutable after submit) */
    int32_t *prompt;
    int n_prompt;
    int64_t max_tokens;
    gk_sampler_params sp;
    float presence, frequency;
    char *stop[GK_SERVE_MAX_STOP + 2];
    int n_stop;
    size_t max_stop_len;
    bool logprobs, trim, ignore_eos;
    int top_logprobs;
    /* engine thread only */
    gk_sampler *smp;
    gk_detok detok;
    char *gen; /* all text generated so far (after trimming), n_gen bytes */
    size_t n_gen, cap_gen, n_released;
    uint32_t *counts; /* per-token counts for presence/frequency penalties */
    int32_t *seen;    /* distinct generated ids (for the penalties) */
    int n_seen, cap_seen;
    gk_serve_tokrec *pend; /* logprob records not yet released */
    int n_pend, cap_pend;
    double t_submit, t_last;
    /* shared with the reader, under eng->mu */
    char *out;
    size_t n_out, cap_out;
    gk_serve_tokrec *recs;
    int n_recs, cap_recs;
    gk_serve_finish finish;
    char error[256];
    uint32_t n_cached, n_generated;
    bool cancelled, admitted;
    pthread_cond_t cv;
    gk_serve_job *next; /* queue link */
};

typedef struct slot {
    slot_state state;
    gk_serve_job *job;
    int32_t *cache; /* tokens in this KV sequence */
    uint32_t n_cache;
    int32_t last;      /* sampled token to feed next (SLOT_GEN) */
    int batch_idx;     /* index of its logits in the current batch, -1 = none */
    uint32_t n_before; /* n_cache before the current batch (to roll back) */
    uint64_t last_used;
} slot;

struct gk_serve_engine {
    gk_model *model;
    gk_context *ctx;
    const gk_tokenizer *tok;
    gk_serve_engine_params p;
    int32_t n_vocab;
    slot *slots;
    /* batch buffers */
    int32_t *b_tok, *b_seq;
    bool *b_logits;
    float *scratch; /* logits with penalties applied */
    pthread_mutex_t mu;
    pthread_cond_t work; /* signalled on submit, cancel, stop */
    gk_serve_job *q_head, *q_tail;
    int n_queued, n_idle;
    bool stopping;
    uint64_t next_id, tick;
    int rr; /* first slot offered a place in the batch (rotates when slots > n_batch) */
    gk_serve_stats st;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void hist_add(gk_serve_hist *h, double v) {
    int i = 0;
    while (i < GK_SERVE_HIST_BUCKETS && v > gk_serve_hist_bounds[i]) i++;
    h->count[i]++;
    h->sum += v;
}

/* ------------------------------------------------------------- engine --- */

gk_serve_engine *gk_serve_engine_new(gk_model *m, gk_context *ctx, const gk_serve_engine_params *p,
                                     gk_err *err) {
    const gk_tokenizer *tok = gk_model_tokenizer(m);
    if (!tok) {
        gk_context_free(ctx);
        if (err) snprintf(err->msg, sizeof err->msg, "serve: the model has no tokenizer");
        return NULL;
    }
    if (p->n_slots < 1 || (uint32_t)p->n_slots > gk_context_n_seq(ctx) || p->n_batch < 1 ||
        p->max_queue < 0) {
        gk_context_free(ctx);
        if (err)
            snprintf(err->msg, sizeof err->msg,
                     "serve: bad engine parameters (slots %d for %u sequences, batch %u)",
                     p->n_slots, gk_context_n_seq(ctx), p->n_batch);
        return NULL;
    }
    gk_serve_engine *e = calloc(1, sizeof *e);
    if (!e) goto oom;
    e->model = m;
    e->ctx = ctx;
    e->tok = tok;
    e->p = *p;
    if (e->p.n_ctx == 0 || e->p.n_ctx > gk_context_n_ctx(ctx)) e->p.n_ctx = gk_context_n_ctx(ctx);
    e->n_vocab = (int32_t)gk_model_hparams(m)->n_vocab;
    e->slots = calloc((size_t)p->n_slots, sizeof *e->slots);
    e->b_tok = malloc(p->n_batch * sizeof *e->b_tok);
    e->b_seq = malloc(p->n_batch * sizeof *e->b_seq);
    e->b_logits = malloc(p->n_batch * sizeof *e->b_logits);
    e->scratch = malloc((size_t)e->n_vocab * sizeof *e->scratch);
    if (!e->slots || !e->b_tok || !e->b_seq || !e->b_logits || !e->scratch) goto oom;
    for (int s = 0; s < p->n_slots; s++) {
        e->slots[s].cache = malloc(e->p.n_ctx * sizeof(int32_t));
        if (!e->slots[s].cache) goto oom;
        e->slots[s].batch_idx = -1;
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->work, &ca);
    pthread_condattr_destroy(&ca);
    e->n_idle = p->n_slots;
    e->next_id = 1;
    e->st.n_slots = p->n_slots;
    return e;
oom:
    if (e) {
        e->ctx = NULL;
        if (e->slots)
            for (int s = 0; s < p->n_slots; s++) free(e->slots[s].cache);
        free(e->slots);
        free(e->b_tok);
        free(e->b_seq);
        free(e->b_logits);
        free(e->scratch);
        free(e);
    }
    gk_context_free(ctx);
    if (err) snprintf(err->msg, sizeof err->msg, "serve: out of memory");
    return NULL;
}

uint32_t gk_serve_engine_n_ctx(const gk_serve_engine *e) {
    return e->p.n_ctx;
}

static void job_free(gk_serve_job *j) {
    free(j->prompt);
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    gk_sampler_free(j->smp);
    free(j->gen);
    free(j->counts);
    free(j->seen);
    free(j->pend);
    free(j->out);
    free(j->recs);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* Drops one reference; e->mu held. */
static void unref_locked(gk_serve_job *j) {
    if (--j->refs == 0) job_free(j);
}

void gk_serve_job_release(gk_serve_job *j) {
    if (!j) return;
    gk_serve_engine *e = j->eng;
    pthread_mutex_lock(&e->mu);
    unref_locked(j);
    pthread_mutex_unlock(&e->mu);
}

uint64_t gk_serve_job_id(const gk_serve_job *j) {
    return j->id;
}

void gk_serve_job_cancel(gk_serve_job *j) {
    gk_serve_engine *e = j->eng;
    pthread_mutex_lock(&e->mu);
    if (j->finish == GK_SERVE_RUNNING) {
        j->cancelled = true;
        pthread_cond_signal(&e->work);
    }
    pthread_mutex_unlock(&e->mu);
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

/* Moves the engine's pending records and text [n_released, upto) to the
 * reader's side; e->mu held. */
static bool publish_locked(gk_serve_job *j, size_t upto) {
    size_t n = upto > j->n_released ? upto - j->n_released : 0;
    if (n) {
        if (!grow((void **)&j->out, &j->cap_out, j->n_out + n + 1, 1)) return false;
        memcpy(j->out + j->n_out, j->gen + j->n_released, n);
        j->n_out += n;
        j->out[j->n_out] = 0;
        j->n_released = upto;
    }
    if (j->n_pend && (n || j->finish != GK_SERVE_RUNNING)) {
        size_t cap = (size_t)j->cap_recs;
        if (!grow((void **)&j->recs, &cap, (size_t)(j->n_recs + j->n_pend), sizeof *j->recs))
            return false;
        j->cap_recs = (int)cap;
        memcpy(j->recs + j->n_recs, j->pend, (size_t)j->n_pend * sizeof *j->pend);
        j->n_recs += j->n_pend;
        j->n_pend = 0;
    }
    if (n || j->finish != GK_SERVE_RUNNING) pthread_cond_broadcast(&j->cv);
    return true;
}

/* Ends a job with a reason; e->mu held. The slot (if any) becomes idle. */
static void finish_locked(gk_serve_engine *e, slot *s, gk_serve_job *j, gk_serve_finish why,
                          const char *msg) {
    j->finish = why;
    if (msg) snprintf(j->error, sizeof j->error, "%s", msg);
    if (why == GK_SERVE_STOP || why == GK_SERVE_LENGTH)
        publish_locked(j, j->n_gen); /* out of memory here leaves the text short */
    else
        pthread_cond_broadcast(&j->cv);
    e->st.jobs_finished[why]++;
    if (s) {
        s->job = NULL;
        s->state = SLOT_IDLE;
        s->last_used = ++e->tick;
        e->n_idle++;
    }
    gk_sampler_free(j->smp);
    j->smp = NULL;
    unref_locked(j);
}

void gk_serve_engine_stop(gk_serve_engine *e) {
    pthread_mutex_lock(&e->mu);
    e->stopping = true;
    pthread_cond_broadcast(&e->work);
    pthread_mutex_unlock(&e->mu);
}

/* Cancels everything (at stop); e->mu held. */
static void drain_locked(gk_serve_engine *e) {
    for (int i = 0; i < e->p.n_slots; i++)
        if (e->slots[i].job)
            finish_locked(e, &e->slots[i], e->slots[i].job, GK_SERVE_CANCELLED,
                          "the server is shutting down");
    while (e->q_head) {
        gk_serve_job *j = e->q_head;
        e->q_head = j->next;
        e->n_queued--;
        finish_locked(e, NULL, j, GK_SERVE_CANCELLED, "the server is shutting down");
    }
    e->q_tail = NULL;
}

void gk_serve_engine_free(gk_serve_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    drain_locked(e);
    pthread_mutex_unlock(&e->mu);
    for (int s = 0; s < e->p.n_slots; s++) free(e->slots[s].cache);
    free(e->slots);
    free(e->b_tok);
    free(e->b_seq);
    free(e->b_logits);
    free(e->scratch);
    gk_context_free(e->ctx);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->work);
    free(e);
}

/* ---------------------------------------------------------------- jobs --- */

gk_serve_job *gk_serve_submit(gk_serve_engine *e, const gk_serve_job_params *p,
                              gk_serve_error *err) {
    if (p->n_prompt < 1) {
        gk_serve_fail(err, 400, "prompt", "invalid_value", "the prompt is empty");
        return NULL;
    }
    if ((uint32_t)p->n_prompt >= e->p.n_ctx) {
        gk_serve_fail(err, 400, "prompt", "context_length_exceeded",
                      "the prompt has %d tokens; the context holds %u (prompt and reply)",
                      p->n_prompt, e->p.n_ctx);
        return NULL;
    }
    for (int i = 0; i < p->n_prompt; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= e->n_vocab) {
            gk_serve_fail(err, 400, "prompt", "invalid_value",
                          "token id %d is out of range (vocabulary %d)", p->prompt[i], e->n_vocab);
            return NULL;
        }
    if (p->n_stop > GK_SERVE_MAX_STOP + 2) {
        gk_serve_fail(err, 400, "stop", "invalid_value", "too many stop strings");
        return NULL;
    }
    gk_err gerr;
    gk_serve_job *j = calloc(1, sizeof *j);
    if (!j) goto oom;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    j->eng = e;
    j->refs = 2;
    j->prompt = malloc((size_t)p->n_prompt * sizeof *j->prompt);
    if (!j->prompt) goto oom;
    memcpy(j->prompt, p->prompt, (size_t)p->n_prompt * sizeof *j->prompt);
    j->n_prompt = p->n_prompt;
    j->max_tokens = p->max_tokens;
    j->sp = p->sp;
    j->presence = p->presence_penalty;
    j->frequency = p->frequency_penalty;
    for (int i = 0; i < p->n_stop; i++) {
        if (!(j->stop[i] = strdup(p->stop[i]))) goto oom;
        j->n_stop++;
        size_t l = strlen(p->stop[i]);
        if (l > j->max_stop_len) j->max_stop_len = l;
    }
    j->logprobs = p->logprobs;
    j->top_logprobs = p->top_logprobs < 0                           ? 0
                      : p->top_logprobs > GK_SERVE_MAX_TOP_LOGPROBS ? GK_SERVE_MAX_TOP_LOGPROBS
                                                                    : p->top_logprobs;
    j->trim = p->trim_leading_space;
    j->ignore_eos = p->ignore_eos;
    /* the sampler checks its parameters now, so a bad one is a 400, not a failed job */
    j->smp = gk_sampler_new(&j->sp, e->n_vocab, &gerr);
    if (!j->smp) {
        gk_serve_fail(err, 400, "temperature", "invalid_value", "%s", gerr.msg);
        j->refs = 1;
        job_free(j);
        return NULL;
    }
    if (j->presence != 0.0f || j->frequency != 0.0f) {
        j->counts = calloc((size_t)e->n_vocab, sizeof *j->counts);
        if (!j->counts) goto oom;
    }
    gk_detok_init(&j->detok, e->tok);
    j->t_submit = now_s();

    pthread_mutex_lock(&e->mu);
    if (e->stopping || e->n_queued >= e->p.max_queue + e->n_idle) {
        bool stopping = e->stopping;
        e->st.jobs_rejected++;
        pthread_mutex_unlock(&e->mu);
        if (stopping)
            gk_serve_fail(err, 503, "", NULL, "the server is shutting down");
        else
            gk_serve_fail(err, 503, "", "queue_full",
                          "the server is busy: %d requests are waiting; retry later",
                          e->p.max_queue);
        job_free(j);
        return NULL;
    }
    j->id = e->next_id++;
    if (e->q_tail)
        e->q_tail->next = j;
    else
        e->q_head = j;
    e->q_tail = j;
    e->n_queued++;
    e->st.jobs_submitted++;
    pthread_cond_signal(&e->work);
    pthread_mutex_unlock(&e->mu);
    return j;
oom:
    if (j) {
        j->refs = 1;
        job_free(j);
    }
    gk_serve_fail(err, 500, "", NULL, "out of memory");
    return NULL;
}

int gk_serve_job_wait(gk_serve_job *j, size_t *text_pos, int *rec_pos, int timeout_ms,
                      gk_serve_delta *d) {
    gk_serve_engine *e = j->eng;
    memset(d, 0, sizeof *d);
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&e->mu);
    while (j->n_out == *text_pos && j->n_recs == *rec_pos && j->finish == GK_SERVE_RUNNING)
        if (pthread_cond_timedwait(&j->cv, &e->mu, &dl) != 0) break;
    int rc = 0;
    if (j->n_out > *text_pos || j->n_recs > *rec_pos || j->finish != GK_SERVE_RUNNING) {
        rc = 1;
        size_t n = j->n_out - *text_pos;
        d->text = malloc(n + 1);
        int nr = j->n_recs - *rec_pos;
        d->recs = nr ? malloc((size_t)nr * sizeof *d->recs) : NULL;
        if (!d->text || (nr && !d->recs)) {
            free(d->text);
            free(d->recs);
            d->text = NULL;
            d->recs = NULL;
            rc = -1;
        } else {
            if (n) memcpy(d->text, j->out + *text_pos, n); /* out is NULL before any text */
            d->text[n] = 0;
            d->n_text = n;
            if (nr) memcpy(d->recs, j->recs + *rec_pos, (size_t)nr * sizeof *d->recs);
            d->n_recs = nr;
            *text_pos = j->n_out;
            *rec_pos = j->n_recs;
            d->finish = j->finish;
            snprintf(d->error, sizeof d->error, "%s", j->error);
        }
    }
    d->n_prompt = (uint32_t)j->n_prompt;
    d->n_cached = j->n_cached;
    d->n_generated = j->n_generated;
    pthread_mutex_unlock(&e->mu);
    return rc;
}

void gk_serve_delta_free(gk_serve_delta *d) {
    free(d->text);
    free(d->recs);
    d->text = NULL;
    d->recs = NULL;
}

void gk_serve_engine_stats(gk_serve_engine *e, gk_serve_stats *s) {
    pthread_mutex_lock(&e->mu);
    *s = e->st;
    s->queued = e->n_queued;
    s->busy_slots = e->p.n_slots - e->n_idle;
    pthread_mutex_unlock(&e->mu);
}

int gk_serve_engine_slots(gk_serve_engine *e, gk_serve_slot_info *out, int cap) {
    static const char *const names[] = {"idle", "prefill", "generating"};
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < e->p.n_slots && i < cap; i++) {
        slot *s = &e->slots[i];
        out[i] =
            (gk_serve_slot_info){.id = i,
                                 .state = names[s->state],
                                 .n_cached = s->n_cache,
                                 .n_prompt = s->job ? (uint32_t)s->job->n_prompt : 0,
                                 .n_prompt_done = s->job ? (s->n_cache < (uint32_t)s->job->n_prompt
                                                                ? s->n_cache
                                                                : (uint32_t)s->job->n_prompt)
                                                         : 0,
                                 .n_generated = s->job ? s->job->n_generated : 0,
                                 .job_id = s->job ? s->job->id : 0};
    }
    pthread_mutex_unlock(&e->mu);
    return e->p.n_slots;
}

/* ----------------------------------------------------------- scheduling --- */

static uint32_t common_prefix(const int32_t *a, uint32_t na, const int32_t *b, uint32_t nb) {
    uint32_t n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* Cancels what was asked to stop and gives queued jobs to idle slots: the one
 * whose cache shares the longest prefix with the prompt (ties: least recently
 * used, so that other cached prefixes live longer). e->mu held. */
static void admit_locked(gk_serve_engine *e) {
    for (int i = 0; i < e->p.n_slots; i++) {
        slot *s = &e->slots[i];
        if (s->job && s->job->cancelled)
            finish_locked(e, s, s->job, GK_SERVE_CANCELLED, "cancelled by the client");
    }
    for (gk_serve_job **pp = &e->q_head, *prev = NULL; *pp;) {
        gk_serve_job *j = *pp;
        if (j->cancelled) {
            *pp = j->next;
            if (e->q_tail == j) e->q_tail = prev;
            e->n_queued--;
            finish_locked(e, NULL, j, GK_SERVE_CANCELLED, "cancelled by the client");
        } else {
            prev = j;
            pp = &j->next;
        }
    }
    while (e->q_head && e->n_idle > 0) {
        gk_serve_job *j = e->q_head;
        int best = -1;
        uint32_t best_len = 0;
        for (int i = 0; i < e->p.n_slots; i++) {
            slot *s = &e->slots[i];
            if (s->state != SLOT_IDLE) continue;
            uint32_t l = common_prefix(s->cache, s->n_cache, (const int32_t *)j->prompt,
                                       (uint32_t)j->n_prompt);
            if (best < 0 || l > best_len ||
                (l == best_len && s->last_used < e->slots[best].last_used)) {
                best = i;
                best_len = l;
            }
        }
        slot *s = &e->slots[best];
        /* the last prompt token always runs: its logits give the first token */
        uint32_t keep = best_len < (uint32_t)j->n_prompt ? best_len : (uint32_t)j->n_prompt - 1;
        gk_err err;
        if (gk_kv_seq_keep(e->ctx, best, keep, &err) < 0) keep = 0, s->n_cache = 0;
        s->n_cache = keep;
        s->job = j;
        s->state = SLOT_PREFILL;
        s->batch_idx = -1;
        e->n_idle--;
        e->q_head = j->next;
        if (!e->q_head) e->q_tail = NULL;
        j->next = NULL;
        e->n_queued--;
        j->admitted = true;
        j->n_cached = keep;
        e->st.prompt_tokens += (uint64_t)j->n_prompt;
        e->st.cached_tokens += keep;
    }
}

/* log-softmax of the raw logits at id, and the top n alternatives */
static void logprob_rec(const float *l, int32_t V, int32_t id, int n, gk_serve_tokrec *r) {
    float mx = -INFINITY;
    for (int32_t i = 0; i < V; i++)
        if (l[i] > mx) mx = l[i];
    double sum = 0.0;
    for (int32_t i = 0; i < V; i++) sum += exp((double)l[i] - mx);
    double lse = mx + log(sum);
    r->id = id;
    r->logprob = (float)(l[id] - lse);
    r->n_top = 0;
    for (int32_t i = 0; i < V && n > 0; i++) {
        float x = l[i];
        if (r->n_top == n && x <= r->top_lp[n - 1]) continue;
        int k = r->n_top < n ? r->n_top++ : n - 1;
        while (k > 0 && r->top_lp[k - 1] < x) {
            r->top_lp[k] = r->top_lp[k - 1];
            r->top_id[k] = r->top_id[k - 1];
            k--;
        }
        r->top_lp[k] = x;
        r->top_id[k] = i;
    }
    for (int k = 0; k < r->n_top; k++) r->top_lp[k] = (float)(r->top_lp[k] - lse);
}

/* The first stop string in gen at or after `from`: its offset, or -1. */
static long find_stop(const gk_serve_job *j, size_t from) {
    long best = -1;
    if (!j->gen) return -1; /* no text yet */
    for (int i = 0; i < j->n_stop; i++) {
        const char *hit = memmem(j->gen + from, j->n_gen - from, j->stop[i], strlen(j->stop[i]));
        if (hit && (best < 0 || hit - j->gen < best)) best = hit - j->gen;
    }
    return best;
}

/* Bytes at the end of gen (after `from`) that could begin a stop string. */
static size_t held_tail(const gk_serve_job *j, size_t from) {
    size_t hold = 0;
    for (int i = 0; i < j->n_stop; i++) {
        size_t ls = strlen(j->stop[i]);
        for (size_t k = ls - 1; k > hold; k--) {
            if (k > j->n_gen - from) continue;
            if (!memcmp(j->gen + j->n_gen - k, j->stop[i], k)) {
                hold = k;
                break;
            }
        }
    }
    return hold;
}

static bool append_gen(gk_serve_job *j, const char *s, size_t n) {
    if (j->trim && j->n_gen == 0)
        while (n && strchr(" \t\n\r", *s)) s++, n--;
    if (!grow((void **)&j->gen, &j->cap_gen, j->n_gen + n + 1, 1)) return false;
    memcpy(j->gen + j->n_gen, s, n);
    j->n_gen += n;
    j->gen[j->n_gen] = 0;
    return true;
}

/* Samples the next token of slot s from its logits and handles what it ends. */
static void take_token(gk_serve_engine *e, int si, const float *logits) {
    slot *s = &e->slots[si];
    gk_serve_job *j = s->job;
    const float *l = logits;
    if (j->counts) {
        memcpy(e->scratch, logits, (size_t)e->n_vocab * sizeof *e->scratch);
        for (int i = 0; i < j->n_seen; i++) {
            int32_t id = j->seen[i];
            e->scratch[id] -= (float)j->counts[id] * j->frequency + j->presence;
        }
        l = e->scratch;
    }
    int32_t id = gk_sampler_sample(j->smp, l, s->cache, (int)s->n_cache);
    double t = now_s();
    gk_serve_finish why = GK_SERVE_RUNNING;
    const char *fail = NULL;
    if (j->counts) {
        if (j->counts[id]++ == 0) {
            size_t cap = (size_t)j->cap_seen;
            if (grow((void **)&j->seen, &cap, (size_t)j->n_seen + 1, sizeof *j->seen)) {
                j->cap_seen = (int)cap;
                j->seen[j->n_seen++] = id;
            }
        }
    }
    if (j->logprobs) {
        size_t cap = (size_t)j->cap_pend;
        if (grow((void **)&j->pend, &cap, (size_t)j->n_pend + 1, sizeof *j->pend)) {
            j->cap_pend = (int)cap;
            logprob_rec(logits, e->n_vocab, id, j->top_logprobs, &j->pend[j->n_pend++]);
        } else {
            fail = "out of memory";
        }
    }
    size_t upto = j->n_released;
    if (!j->ignore_eos && gk_tokenizer_is_stop(e->tok, id)) {
        why = GK_SERVE_STOP;
    } else {
        char buf[4096]; /* a piece and held bytes, each as U+FFFD at worst */
        int n = gk_detok_push(&j->detok, id, buf, sizeof buf);
        if (n < 0) fail = "a token's text is too long to decode";
        if (n > 0 && !append_gen(j, buf, (size_t)n)) fail = "out of memory";
        bool full = j->max_tokens >= 0 && (int64_t)j->n_generated + 1 >= j->max_tokens;
        bool ctx_full = s->n_cache + 1 >= e->p.n_ctx;
        if (full || ctx_full) {
            n = gk_detok_flush(&j->detok, buf, sizeof buf);
            if (n > 0 && !append_gen(j, buf, (size_t)n)) fail = "out of memory";
            why = GK_SERVE_LENGTH;
        }
        long at = j->n_stop ? find_stop(j, j->n_released) : -1;
        if (at >= 0) {
            j->n_gen = (size_t)at;
            why = GK_SERVE_STOP;
        }
        upto = why != GK_SERVE_RUNNING ? j->n_gen : j->n_gen - held_tail(j, j->n_released);
    }
    pthread_mutex_lock(&e->mu);
    j->n_generated++;
    e->st.generated_tokens++;
    if (j->n_generated == 1)
        hist_add(&e->st.ttft, t - j->t_submit);
    else
        hist_add(&e->st.itl, t - j->t_last);
    j->t_last = t;
    if (fail) {
        finish_locked(e, s, j, GK_SERVE_FAILED, fail);
    } else if (why != GK_SERVE_RUNNING) {
        finish_locked(e, s, j, why, NULL);
    } else {
        if (!publish_locked(j, upto))
            finish_locked(e, s, j, GK_SERVE_FAILED, "out of memory");
        else {
            s->last = id;
            s->state = SLOT_GEN;
        }
    }
    pthread_mutex_unlock(&e->mu);
}

bool gk_serve_engine_step(gk_serve_engine *e) {
    pthread_mutex_lock(&e->mu);
    admit_locked(e);
    pthread_mutex_unlock(&e->mu);
    /* Slots only change state on this thread, so the batch is built unlocked;
     * a cancel that arrives meanwhile is handled at the next step. */
    int n = 0;
    const int cap = (int)e->p.n_batch;
    for (int i = 0; i < e->p.n_slots; i++) {
        e->slots[i].batch_idx = -1;
        e->slots[i].n_before = e->slots[i].n_cache;
    }
    for (int k = 0; k < e->p.n_slots; k++) {
        int i = (e->rr + k) % e->p.n_slots;
        slot *s = &e->slots[i];
        if (s->state != SLOT_GEN || n == cap) continue;
        e->b_tok[n] = s->last;
        e->b_seq[n] = i;
        e->b_logits[n] = true;
        s->batch_idx = n++;
        s->cache[s->n_cache++] = s->last;
    }
    if (e->p.n_slots > cap) e->rr = (e->rr + cap) % e->p.n_slots;
    /* prompt chunks, oldest job first, in the room that is left */
    for (;;) {
        int pick = -1;
        for (int i = 0; i < e->p.n_slots; i++) {
            slot *s = &e->slots[i];
            if (s->state == SLOT_PREFILL && s->batch_idx < 0 &&
                s->n_cache < (uint32_t)s->job->n_prompt &&
                (pick < 0 || s->job->id < e->slots[pick].job->id))
                pick = i;
        }
        if (pick < 0 || n == cap) break;
        slot *s = &e->slots[pick];
        gk_serve_job *j = s->job;
        int k = j->n_prompt - (int)s->n_cache;
        if (k > cap - n) k = cap - n;
        for (int t = 0; t < k; t++) {
            e->b_tok[n] = j->prompt[s->n_cache];
            e->b_seq[n] = pick;
            e->b_logits[n] = false;
            s->cache[s->n_cache] = j->prompt[s->n_cache];
            s->n_cache++;
            n++;
        }
        if (s->n_cache == (uint32_t)j->n_prompt) {
            e->b_logits[n - 1] = true;
            s->batch_idx = n - 1;
        } else {
            s->batch_idx = -2; /* in this batch, no logits yet */
        }
    }
    if (n == 0) return false;
    gk_batch b = {.n = n, .token = e->b_tok, .seq = e->b_seq, .logits = e->b_logits};
    gk_err err;
    if (gk_decode_batch(e->ctx, &b, &err) < 0) {
        pthread_mutex_lock(&e->mu);
        for (int i = 0; i < e->p.n_slots; i++) {
            slot *s = &e->slots[i];
            if (s->batch_idx == -1) continue;
            s->n_cache = s->n_before;
            finish_locked(e, s, s->job, GK_SERVE_FAILED, err.msg);
        }
        pthread_mutex_unlock(&e->mu);
        return true;
    }
    pthread_mutex_lock(&e->mu);
    e->st.steps++;
    pthread_mutex_unlock(&e->mu);
    for (int i = 0; i < e->p.n_slots; i++) {
        slot *s = &e->slots[i];
        if (s->batch_idx >= 0 && s->job) take_token(e, i, gk_get_logits(e->ctx, s->batch_idx));
        s->batch_idx = -1;
    }
    return true;
}

void gk_serve_engine_run(gk_serve_engine *e) {
    for (;;) {
        pthread_mutex_lock(&e->mu);
        if (e->stopping) {
            drain_locked(e);
            pthread_mutex_unlock(&e->mu);
            return;
        }
        pthread_mutex_unlock(&e->mu);
        if (gk_serve_engine_step(e)) continue;
        pthread_mutex_lock(&e->mu);
        if (!e->stopping && !e->q_head) {
            struct timespec dl;
            clock_gettime(CLOCK_MONOTONIC, &dl);
            dl.tv_nsec += 200000000L;
            if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&e->work, &e->mu, &dl);
        }
        pthread_mutex_unlock(&e->mu);
    }
}
