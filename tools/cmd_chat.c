/*
 * cmd_chat.c - `grok chat`: an interactive conversation with a model.
 *
 * A chat model (Grok-2: its vocabulary carries the template of spec 7.2) gets
 * the whole conversation rendered with gk_chat_apply and replies until it emits
 * a stop token (<|separator|> or <|eos|>). A base model (Grok-1) has no
 * template: the session is one growing text that the model continues after
 * each input (plain completion).
 *
 * The KV cache is reused across turns: each turn's prompt is tokenized in full
 * and only the tokens after the longest prefix already in the cache are run.
 * When a conversation no longer fits the context (the prompt plus room for a
 * reply of -n tokens), the oldest turns are dropped (a system message stays),
 * and the session says so.
 *
 * Input: one line per message; a line ending in a backslash continues on the
 * next. Commands: /exit (or end of input), /reset, /help.
 */
#include "cli.h"
#include "base/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct chat_opts {
    gk_cli_gen g; /* model, context, threads, numerics, sampling */
    const char *system;
    long n_predict;
    bool verbose;
} chat_opts;

static void usage(FILE *f) {
    fprintf(f,
            "usage: grok chat [-m MODEL] [options]\n"
            "  -s, --system TEXT       system message (chat models)\n"
            "  -n, --n-predict N       longest reply in tokens (default 512)\n"
            GK_CLI_GEN_HELP
            "  -v, --verbose           print timings after each reply\n"
            "The model needs a tokenizer. In the session: /exit (or Ctrl-D) ends it, /reset\n"
            "forgets the conversation, a line ending in \\ continues on the next line.\n");
}

static int parse(int argc, char **argv, chat_opts *o) {
    *o = (chat_opts){.n_predict = 512};
    gk_cli_gen_init(&o->g);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int r = gk_cli_gen_option(argc, argv, &i, &o->g);
        if (r < 0) return -1;
        if (r > 0) continue;
#define VAL() ((v = gk_cli_value(argc, argv, &i)) != NULL)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "-s") || !strcmp(a, "--system")) {
            if (!VAL()) return -1;
            o->system = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            if (!VAL() || !gk_cli_int(a, v, 1, 1 << 24, &o->n_predict)) return -1;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o->verbose = true;
        } else {
            fprintf(stderr, "grok chat: unknown option '%s' (see grok chat --help)\n", a);
            return -1;
        }
#undef VAL
    }
    return 0;
}

/* ------------------------------------------------------------- history --- */

typedef struct turn {
    char *user, *reply; /* reply is NULL until generated */
} turn;

typedef struct chat {
    const gk_tokenizer *tok;
    gk_context *ctx;
    gk_sampler *smp;
    const chat_opts *o;
    bool has_template;
    turn *turns;
    int n_turns, cap_turns;
    int32_t *kv; /* the tokens in the KV cache, in order */
    int n_kv, cap_kv;
    uint32_t n_ctx;
} chat;

static char *xstrdup(const char *s) {
    char *d = strdup(s ? s : "");
    if (!d) {
        fprintf(stderr, "grok chat: out of memory\n");
        exit(1);
    }
    return d;
}

/* Renders turns [first, n_turns) as the prompt text (caller frees). */
static char *render(const chat *c, int first) {
    if (!c->has_template) {
        /* Plain completion: the session is one text, input and continuation. */
        size_t len = 1;
        for (int i = first; i < c->n_turns; i++)
            len += strlen(c->turns[i].user) + (c->turns[i].reply ? strlen(c->turns[i].reply) : 0);
        char *s = malloc(len), *p = s;
        if (!s) return NULL;
        for (int i = first; i < c->n_turns; i++) {
            p = stpcpy(p, c->turns[i].user);
            if (c->turns[i].reply) p = stpcpy(p, c->turns[i].reply);
        }
        *p = 0;
        return s;
    }
    int n = 2 * (c->n_turns - first) + 1, k = 0;
    gk_chat_msg *m = malloc((size_t)n * sizeof *m);
    if (!m) return NULL;
    if (c->o->system) m[k++] = (gk_chat_msg){"system", c->o->system};
    for (int i = first; i < c->n_turns; i++) {
        m[k++] = (gk_chat_msg){"user", c->turns[i].user};
        if (c->turns[i].reply) m[k++] = (gk_chat_msg){"assistant", c->turns[i].reply};
    }
    gk_err err;
    int64_t len = gk_chat_apply(c->tok, m, k, true, NULL, 0, &err);
    char *s = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (s) gk_chat_apply(c->tok, m, k, true, s, (size_t)len + 1, &err);
    free(m);
    return s;
}

/* Tokenizes the conversation from turn `first`; *n gets the count. */
static int32_t *tokens_of(const chat *c, int first, int *n) {
    char *text = render(c, first);
    if (!text) return NULL;
    gk_err err;
    /* The template's <|separator|> must be one token; user text is plain text
     * only for base models, whose transcript has no special tokens to find. */
    bool special = c->has_template;
    int k = gk_tokenize(c->tok, text, strlen(text), special, NULL, 0, &err);
    int32_t *ids = k >= 0 ? malloc(((size_t)k + 1) * sizeof *ids) : NULL;
    if (ids) gk_tokenize(c->tok, text, strlen(text), special, ids, k, &err);
    else fprintf(stderr, "grok chat: %s\n", k < 0 ? err.msg : "out of memory");
    free(text);
    *n = k;
    return ids;
}

static int kv_push(chat *c, int32_t id) {
    if (c->n_kv == c->cap_kv) {
        int cap = c->cap_kv ? c->cap_kv * 2 : 1024;
        int32_t *nk = realloc(c->kv, (size_t)cap * sizeof *nk);
        if (!nk) return -1;
        c->kv = nk;
        c->cap_kv = cap;
    }
    c->kv[c->n_kv++] = id;
    return 0;
}

/* Runs the prompt through the model, reusing the cached prefix. */
static int feed(chat *c, const int32_t *ids, int n) {
    int common = 0;
    while (common < n && common < c->n_kv && c->kv[common] == ids[common]) common++;
    if (common == n) common = n - 1; /* the last token must run to give logits */
    if (common < c->n_kv) {
        gk_context_truncate(c->ctx, (uint32_t)common);
        c->n_kv = common;
    }
    gk_err err;
    if (gk_decode(c->ctx, ids + common, n - common, &err) < 0) {
        fprintf(stderr, "grok chat: %s\n", err.msg);
        gk_context_truncate(c->ctx, 0);
        c->n_kv = 0;
        return -1;
    }
    for (int i = common; i < n; i++)
        if (kv_push(c, ids[i]) < 0) return -1;
    return n - common;
}

static void drop_turns(chat *c, int k) {
    for (int i = 0; i < k; i++) {
        free(c->turns[i].user);
        free(c->turns[i].reply);
    }
    memmove(c->turns, c->turns + k, (size_t)(c->n_turns - k) * sizeof *c->turns);
    c->n_turns -= k;
}

/* One exchange: the prompt of the whole conversation, then the reply. */
static int respond(chat *c) {
    int n, first = 0;
    int32_t *ids = tokens_of(c, 0, &n);
    if (!ids) return -1;
    if (n == 0) { /* nothing to run (an empty line to a base model) */
        free(ids);
        c->n_turns--;
        free(c->turns[c->n_turns].user);
        return 0;
    }
    /* Keep room for a reply of up to -n tokens. */
    uint32_t room = (uint32_t)c->o->n_predict < c->n_ctx / 2 ? (uint32_t)c->o->n_predict : c->n_ctx / 2;
    while ((uint32_t)n + room > c->n_ctx && first < c->n_turns - 1) {
        free(ids);
        first++;
        ids = tokens_of(c, first, &n);
        if (!ids) return -1;
    }
    if ((uint32_t)n + room > c->n_ctx) {
        fprintf(stderr, "[this message is %d tokens: too long for the context of %u tokens; "
                        "it is dropped]\n",
                n, c->n_ctx);
        free(ids);
        c->n_turns--;
        free(c->turns[c->n_turns].user);
        return 0;
    }
    if (first > 0) {
        fprintf(stderr, "[dropped the oldest %d turn%s to stay within the context of %u tokens]\n",
                first, first > 1 ? "s" : "", c->n_ctx);
        drop_turns(c, first);
    }
    double t0 = gk_time_s();
    int ran = feed(c, ids, n);
    free(ids);
    if (ran < 0) return -1;
    double t1 = gk_time_s();

    /* Generation: stream whole characters; stop on a stop token, -n, or a full context. */
    size_t cap = 256, len = 0;
    char *reply = malloc(cap);
    gk_detok d;
    gk_detok_init(&d, c->tok); /* a continuation: the reply's first space is real */
    char buf[1024];
    int n_gen = 0;
    bool full = false;
    const float *logits = gk_get_logits(c->ctx, ran - 1);
    gk_err err;
    for (;;) {
        int32_t id = gk_sampler_sample(c->smp, logits, c->kv, c->n_kv);
        if (gk_tokenizer_is_stop(c->tok, id)) break;
        int w = gk_detok_push(&d, id, buf, sizeof buf);
        if (w > 0) {
            fwrite(buf, 1, (size_t)w, stdout);
            fflush(stdout);
            while (len + (size_t)w + 1 > cap) reply = realloc(reply, cap *= 2);
            memcpy(reply + len, buf, (size_t)w);
            len += (size_t)w;
        }
        n_gen++;
        if (n_gen >= c->o->n_predict) break;
        if ((uint32_t)c->n_kv + 1 > c->n_ctx) {
            full = true;
            break;
        }
        if (gk_decode(c->ctx, &id, 1, &err) < 0) {
            fprintf(stderr, "\ngrok chat: %s\n", err.msg);
            free(reply);
            return -1;
        }
        kv_push(c, id);
        logits = gk_get_logits(c->ctx, 0);
    }
    int w = gk_detok_flush(&d, buf, sizeof buf);
    if (w > 0) {
        fwrite(buf, 1, (size_t)w, stdout);
        while (len + (size_t)w + 1 > cap) reply = realloc(reply, cap *= 2);
        memcpy(reply + len, buf, (size_t)w);
        len += (size_t)w;
    }
    reply[len] = 0;
    printf("\n");
    if (full) fprintf(stderr, "[the context of %u tokens is full: the reply was cut]\n", c->n_ctx);
    else if (n_gen >= c->o->n_predict) fprintf(stderr, "[reply cut at -n %ld tokens]\n", c->o->n_predict);
    double t2 = gk_time_s();
    if (c->o->verbose)
        fprintf(stderr, "[prompt: %d new tokens in %.2f s; reply: %d tokens in %.2f s; context %d/%u]\n",
                ran, t1 - t0, n_gen, t2 - t1, c->n_kv, c->n_ctx);
    /* A chat model's reply follows "Assistant:"; the template writes it after
     * "Assistant: ", so its leading space is the template's. */
    char *r = reply;
    if (c->has_template)
        while (*r == ' ') r++;
    c->turns[c->n_turns - 1].reply = xstrdup(r);
    free(reply);
    return 0;
}

/* Reads one message (lines ending in a backslash continue); NULL at end of input. */
static char *read_message(void) {
    size_t cap = 256, len = 0;
    char *s = malloc(cap);
    int ch;
    bool any = false;
    while (s && (ch = getchar()) != EOF) {
        any = true;
        if (ch == '\n') {
            if (len > 0 && s[len - 1] == '\\') {
                s[len - 1] = '\n';
                continue;
            }
            break;
        }
        if (len + 2 > cap) {
            char *ns = realloc(s, cap *= 2);
            if (!ns) free(s);
            s = ns;
            if (!s) break;
        }
        s[len++] = (char)ch;
    }
    if (!s) return NULL;
    if (!any) {
        free(s);
        return NULL;
    }
    s[len] = 0;
    return s;
}

int gk_cmd_chat(int argc, char **argv) {
    chat_opts o;
    if (parse(argc, argv, &o) < 0) return 2;
    const char *path = gk_cli_model_path(o.g.model);
    if (!path) return 1;
    gk_err err = {{0}};
    int rc = 1;
    chat c = {.o = &o};
    gk_model_params mp = {.numerics = o.g.numerics};
    gk_model *m = gk_model_load(path, &mp, &err);
    if (!m) {
        fprintf(stderr, "grok chat: %s\n", err.msg);
        return 1;
    }
    c.tok = gk_model_tokenizer(m);
    if (!c.tok) {
        fprintf(stderr, "grok chat: %s has no tokenizer (chat needs text in and out)\n", path);
        goto done;
    }
    c.has_template = gk_tokenizer_has_chat(c.tok);
    gk_context_params cp = gk_context_default_params();
    cp.n_ctx = (uint32_t)o.g.n_ctx;
    cp.n_threads = (int)o.g.threads;
    cp.cache_type = o.g.cache_type;
    c.ctx = gk_context_new(m, &cp, &err);
    if (!c.ctx || !(c.smp = gk_sampler_new(&o.g.sp, (int32_t)gk_model_hparams(m)->n_vocab, &err))) {
        fprintf(stderr, "grok chat: %s\n", err.msg);
        goto done;
    }
    c.n_ctx = gk_context_n_ctx(c.ctx);
    bool tty = isatty(0);
    fprintf(stderr, "%s: %s, context %u tokens. /exit or Ctrl-D ends, /reset forgets.\n", path,
            c.has_template ? "chat model (Grok-2 template)"
                           : "base model, no chat template: your text is continued",
            c.n_ctx);
    if (o.system && !c.has_template)
        fprintf(stderr, "[--system is ignored: a base model has no system message]\n");
    for (;;) {
        if (tty) {
            printf("> ");
            fflush(stdout);
        }
        char *msg = read_message();
        if (!msg || !strcmp(msg, "/exit") || !strcmp(msg, "/quit")) {
            free(msg);
            break;
        }
        if (!strcmp(msg, "/reset")) {
            drop_turns(&c, c.n_turns);
            fprintf(stderr, "[conversation forgotten]\n");
            free(msg);
            continue;
        }
        if (!strcmp(msg, "/help")) {
            usage(stdout);
            free(msg);
            continue;
        }
        if (c.n_turns == c.cap_turns) {
            c.cap_turns = c.cap_turns ? c.cap_turns * 2 : 16;
            turn *nt = realloc(c.turns, (size_t)c.cap_turns * sizeof *nt);
            if (!nt) {
                free(msg);
                goto done;
            }
            c.turns = nt;
        }
        c.turns[c.n_turns++] = (turn){msg, NULL};
        if (respond(&c) < 0) goto done;
    }
    rc = 0;
done:
    drop_turns(&c, c.n_turns);
    free(c.turns);
    free(c.kv);
    gk_sampler_free(c.smp);
    gk_context_free(c.ctx);
    gk_model_free(m);
    return rc;
}
