/*
 * request.c - the body of an OpenAI chat or completion request, checked field by
 * field into a gk_serve_request. A field the server does not implement (n > 1,
 * tools, response_format, ...) is refused with a 400 that names it, never
 * ignored: a client that relies on it must learn that it had no effect.
 * Accepted beyond OpenAI's fields: llama.cpp's top_k, min_p, repeat_penalty,
 * repeat_last_n and ignore_eos.
 */
#include "serve/serve.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int gk_serve_fail(gk_serve_error *e, int status, const char *param, const char *code,
                  const char *fmt, ...) {
    if (!e) return -1;
    e->status = status;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    e->code = code;
    e->type = status == 401   ? "authentication_error"
              : status == 404 ? "not_found_error"
              : status == 503 ? "server_overloaded"
              : status >= 500 ? "server_error"
                              : "invalid_request_error";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

int gk_serve_json_depth(const char *s, size_t len) {
    int depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max) max = depth;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return max;
}

void gk_serve_request_free(gk_serve_request *r) {
    if (!r) return;
    for (int i = 0; i < r->n_msgs; i++) {
        free((char *)r->msgs[i].role);
        free((char *)r->msgs[i].content);
    }
    free(r->msgs);
    free(r->prompt);
    free(r->prompt_ids);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

/* Fields refused by name: OpenAI features this server does not have. */
static const char *const unsupported[] = {"tools",
                                          "tool_choice",
                                          "functions",
                                          "function_call",
                                          "response_format",
                                          "audio",
                                          "modalities",
                                          "prediction",
                                          "suffix",
                                          "web_search_options",
                                          "reasoning_effort",
                                          "parallel_tool_calls",
                                          "logit_bias",
                                          "grammar",
                                          "json_schema",
                                          NULL};

/* Fields accepted without effect on the output. */
static const char *const harmless[] = {"model", "user", "store", "metadata", "service_tier", NULL};

static bool in_list(const char *const *l, const char *s) {
    for (; *l; l++)
        if (!strcmp(*l, s)) return true;
    return false;
}

static int number(const cJSON *v, const char *name, double lo, double hi, double *out,
                  gk_serve_error *e) {
    if (!cJSON_IsNumber(v))
        return gk_serve_fail(e, 400, name, "invalid_type", "'%s' must be a number", name);
    double x = v->valuedouble;
    if (!isfinite(x) || x < lo || x > hi)
        return gk_serve_fail(e, 400, name, "invalid_value", "'%s' must be in [%g, %g]", name, lo,
                             hi);
    *out = x;
    return 0;
}

static int integer(const cJSON *v, const char *name, double lo, double hi, int64_t *out,
                   gk_serve_error *e) {
    double x;
    if (number(v, name, lo, hi, &x, e) < 0) return -1;
    if (x != floor(x))
        return gk_serve_fail(e, 400, name, "invalid_type", "'%s' must be an integer", name);
    *out = (int64_t)x;
    return 0;
}

static char *dup_str(const char *s, gk_serve_error *e) {
    char *d = strdup(s);
    if (!d) gk_serve_fail(e, 500, "", NULL, "out of memory");
    return d;
}

/* A message's content: a string, or an array of {"type":"text","text":...} parts. */
static char *content_text(const cJSON *c, int i, gk_serve_error *e) {
    char param[64];
    snprintf(param, sizeof param, "messages[%d].content", i);
    if (!c || cJSON_IsNull(c)) return dup_str("", e);
    if (cJSON_IsString(c)) return dup_str(c->valuestring, e);
    if (!cJSON_IsArray(c)) {
        gk_serve_fail(e, 400, param, "invalid_type", "'%s' must be a string or an array of parts",
                      param);
        return NULL;
    }
    size_t len = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, c) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") || !cJSON_IsString(text)) {
            gk_serve_fail(e, 400, param, "unsupported_content",
                          "'%s': only text parts ({\"type\":\"text\",\"text\":...}) are supported",
                          param);
            return NULL;
        }
        len += strlen(text->valuestring);
    }
    char *s = malloc(len + 1), *q = s;
    if (!s) {
        gk_serve_fail(e, 500, "", NULL, "out of memory");
        return NULL;
    }
    cJSON_ArrayForEach(p, c) q =
        stpcpy(q, cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring);
    *q = 0;
    return s;
}

static int parse_messages(gk_serve_request *r, const cJSON *m, gk_serve_error *e) {
    if (!cJSON_IsArray(m))
        return gk_serve_fail(e, 400, "messages", "invalid_type", "'messages' must be an array");
    int n = cJSON_GetArraySize(m);
    if (n < 1) return gk_serve_fail(e, 400, "messages", "invalid_value", "'messages' is empty");
    if (n > GK_SERVE_MAX_MESSAGES)
        return gk_serve_fail(e, 400, "messages", "invalid_value", "more than %d messages",
                             GK_SERVE_MAX_MESSAGES);
    r->msgs = calloc((size_t)n, sizeof *r->msgs);
    if (!r->msgs) return gk_serve_fail(e, 500, "", NULL, "out of memory");
    const cJSON *msg;
    cJSON_ArrayForEach(msg, m) {
        int i = r->n_msgs;
        char param[64];
        snprintf(param, sizeof param, "messages[%d]", i);
        if (!cJSON_IsObject(msg))
            return gk_serve_fail(e, 400, param, "invalid_type", "'%s' must be an object", param);
        const cJSON *f;
        cJSON_ArrayForEach(f, msg) {
            if (!strcmp(f->string, "role") || !strcmp(f->string, "content") ||
                !strcmp(f->string, "name"))
                continue;
            snprintf(param, sizeof param, "messages[%d].%.40s", i, f->string);
            return gk_serve_fail(e, 400, param, "unsupported_parameter", "'%s' is not supported",
                                 param);
        }
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        snprintf(param, sizeof param, "messages[%d].role", i);
        if (!cJSON_IsString(role))
            return gk_serve_fail(e, 400, param, "invalid_type", "'%s' must be a string", param);
        const char *rs = role->valuestring;
        if (!strcmp(rs, "developer")) rs = "system";
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant"))
            return gk_serve_fail(e, 400, param, "invalid_value",
                                 "'%s': role '%.40s' is not supported (system, developer, user, "
                                 "assistant)",
                                 param, role->valuestring);
        char *content = content_text(cJSON_GetObjectItemCaseSensitive(msg, "content"), i, e);
        if (!content) return -1;
        char *rd = dup_str(rs, e);
        if (!rd) {
            free(content);
            return -1;
        }
        r->msgs[i] = (gk_chat_msg){rd, content};
        r->n_msgs++;
    }
    return 0;
}

static int parse_prompt(gk_serve_request *r, const cJSON *p, int max_ids, gk_serve_error *e) {
    if (cJSON_IsString(p)) {
        r->prompt = dup_str(p->valuestring, e);
        return r->prompt ? 0 : -1;
    }
    /* A one-element array of a string or of a token list is one prompt; more
     * would be a batch of prompts (n choices), which is not supported. */
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 &&
        (cJSON_IsString(p->child) || cJSON_IsArray(p->child)))
        return parse_prompt(r, p->child, max_ids, e);
    if (!cJSON_IsArray(p))
        return gk_serve_fail(e, 400, "prompt", "invalid_type",
                             "'prompt' must be a string or an array of token ids");
    int n = cJSON_GetArraySize(p);
    if (n < 1) return gk_serve_fail(e, 400, "prompt", "invalid_value", "'prompt' is empty");
    if (n > max_ids)
        return gk_serve_fail(e, 400, "prompt", "context_length_exceeded",
                             "the prompt has %d tokens; the context holds %d", n, max_ids);
    r->prompt_ids = malloc((size_t)n * sizeof *r->prompt_ids);
    if (!r->prompt_ids) return gk_serve_fail(e, 500, "", NULL, "out of memory");
    const cJSON *t;
    cJSON_ArrayForEach(t, p) {
        if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) || t->valuedouble < 0 ||
            t->valuedouble > INT32_MAX)
            return gk_serve_fail(e, 400, "prompt", "invalid_type",
                                 "'prompt' must be a string, or an array of token ids (a batch "
                                 "of several prompts is not supported)");
        r->prompt_ids[r->n_prompt_ids++] = (int32_t)t->valuedouble;
    }
    return 0;
}

static int parse_stop(gk_serve_request *r, const cJSON *s, gk_serve_error *e) {
    if (cJSON_IsNull(s)) return 0;
    if (cJSON_IsString(s)) {
        if (!s->valuestring[0]) return 0;
        if (strlen(s->valuestring) > GK_SERVE_MAX_STOP_LEN)
            return gk_serve_fail(e, 400, "stop", "invalid_value",
                                 "a stop string is longer than %d bytes", GK_SERVE_MAX_STOP_LEN);
        r->stop[0] = dup_str(s->valuestring, e);
        if (!r->stop[0]) return -1;
        r->n_stop = 1;
        return 0;
    }
    if (!cJSON_IsArray(s))
        return gk_serve_fail(e, 400, "stop", "invalid_type",
                             "'stop' must be a string or an array of strings");
    if (cJSON_GetArraySize(s) > GK_SERVE_MAX_STOP)
        return gk_serve_fail(e, 400, "stop", "invalid_value", "at most %d stop strings",
                             GK_SERVE_MAX_STOP);
    const cJSON *x;
    cJSON_ArrayForEach(x, s) {
        if (!cJSON_IsString(x))
            return gk_serve_fail(e, 400, "stop", "invalid_type",
                                 "'stop' must be a string or an array of strings");
        if (strlen(x->valuestring) > GK_SERVE_MAX_STOP_LEN)
            return gk_serve_fail(e, 400, "stop", "invalid_value",
                                 "a stop string is longer than %d bytes", GK_SERVE_MAX_STOP_LEN);
        if (!x->valuestring[0]) continue;
        if (!(r->stop[r->n_stop] = dup_str(x->valuestring, e))) return -1;
        r->n_stop++;
    }
    return 0;
}

static int parse_fields(gk_serve_request *r, const cJSON *root, int max_ids, gk_serve_error *e) {
    bool chat = r->kind == GK_SERVE_CHAT;
    const char *main_field = chat ? "messages" : "prompt";
    bool seen_main = false, seen_stream_options = false;
    const cJSON *f;
    cJSON_ArrayForEach(f, root) {
        const char *k = f->string;
        double d;
        int64_t i;
        /* A field given twice would be parsed twice (its first value leaked, a second
         * "stop" list appended past the first); JSON leaves the meaning open, so it
         * is refused. Every earlier field was accepted and distinct, and the accepted
         * names are a short fixed list, so this scan stays short. */
        for (const cJSON *g = root->child; g != f; g = g->next)
            if (!strcmp(g->string, k))
                return gk_serve_fail(e, 400, k, "invalid_value", "'%.40s' is given twice", k);
        if (!strcmp(k, main_field)) {
            seen_main = true;
            if ((chat ? parse_messages(r, f, e) : parse_prompt(r, f, max_ids, e)) < 0) return -1;
        } else if (in_list(harmless, k)) {
            if (!strcmp(k, "model") && !cJSON_IsString(f))
                return gk_serve_fail(e, 400, k, "invalid_type", "'model' must be a string");
        } else if (in_list(unsupported, k)) {
            /* an explicit null or empty object/array asks for nothing */
            if (cJSON_IsNull(f) || ((cJSON_IsObject(f) || cJSON_IsArray(f)) && !f->child)) continue;
            return gk_serve_fail(e, 400, k, "unsupported_parameter", "'%s' is not supported", k);
        } else if (!strcmp(k, "stream")) {
            if (!cJSON_IsBool(f) && !cJSON_IsNull(f))
                return gk_serve_fail(e, 400, k, "invalid_type", "'stream' must be a boolean");
            r->stream = cJSON_IsTrue(f);
        } else if (!strcmp(k, "stream_options")) {
            if (cJSON_IsNull(f)) continue;
            if (!cJSON_IsObject(f))
                return gk_serve_fail(e, 400, k, "invalid_type",
                                     "'stream_options' must be an object");
            seen_stream_options = true;
            const cJSON *o;
            cJSON_ArrayForEach(o, f) {
                if (!strcmp(o->string, "include_usage")) {
                    if (!cJSON_IsBool(o))
                        return gk_serve_fail(e, 400, "stream_options.include_usage", "invalid_type",
                                             "'include_usage' must be a boolean");
                    r->include_usage = cJSON_IsTrue(o);
                } else {
                    return gk_serve_fail(e, 400, "stream_options", "unsupported_parameter",
                                         "'stream_options.%.40s' is not supported", o->string);
                }
            }
        } else if (!strcmp(k, "max_tokens") || !strcmp(k, "max_completion_tokens")) {
            if (cJSON_IsNull(f)) continue;
            if (integer(f, k, 1, 1e9, &i, e) < 0) return -1;
            r->max_tokens = i;
        } else if (!strcmp(k, "temperature")) {
            if (cJSON_IsNull(f)) continue;
            if (number(f, k, 0, 2, &d, e) < 0) return -1;
            r->temperature = (float)d;
        } else if (!strcmp(k, "top_p")) {
            if (cJSON_IsNull(f)) continue;
            if (number(f, k, 0, 1, &d, e) < 0) return -1;
            if (d == 0) return gk_serve_fail(e, 400, k, "invalid_value", "'top_p' must be > 0");
            /* a positive top_p below float's range (1e-50) still means "the top token", not
             * the 0 that the sampler refuses (found by fuzz_serve_request) */
            r->top_p = d < FLT_MIN ? FLT_MIN : (float)d;
        } else if (!strcmp(k, "top_k")) {
            if (cJSON_IsNull(f)) continue;
            if (integer(f, k, 0, 1e9, &i, e) < 0) return -1;
            r->top_k = (int32_t)i;
        } else if (!strcmp(k, "min_p")) {
            if (cJSON_IsNull(f)) continue;
            if (number(f, k, 0, 1, &d, e) < 0) return -1;
            r->min_p = (float)d;
        } else if (!strcmp(k, "repeat_penalty")) {
            if (cJSON_IsNull(f)) continue;
            if (number(f, k, 0.01, 100, &d, e) < 0) return -1;
            r->repeat_penalty = (float)d;
        } else if (!strcmp(k, "repeat_last_n")) {
            if (cJSON_IsNull(f)) continue;
            if (integer(f, k, 0, 1 << 20, &i, e) < 0) return -1;
            r->repeat_last_n = (int32_t)i;
        } else if (!strcmp(k, "presence_penalty") || !strcmp(k, "frequency_penalty")) {
            if (cJSON_IsNull(f)) continue;
            if (number(f, k, -2, 2, &d, e) < 0) return -1;
            if (k[0] == 'p')
                r->presence_penalty = (float)d;
            else
                r->frequency_penalty = (float)d;
        } else if (!strcmp(k, "ignore_eos")) {
            if (!cJSON_IsBool(f) && !cJSON_IsNull(f))
                return gk_serve_fail(e, 400, k, "invalid_type", "'ignore_eos' must be a boolean");
            r->ignore_eos = cJSON_IsTrue(f);
        } else if (!strcmp(k, "seed")) {
            if (cJSON_IsNull(f)) continue;
            if (integer(f, k, -9.2e18, 9.2e18, &i, e) < 0) return -1;
            r->has_seed = true;
            r->seed = (uint64_t)i;
        } else if (!strcmp(k, "stop")) {
            if (parse_stop(r, f, e) < 0) return -1;
        } else if (!strcmp(k, "n") || !strcmp(k, "best_of")) {
            if (cJSON_IsNull(f)) continue;
            if (integer(f, k, 1, 1e9, &i, e) < 0) return -1;
            if (i != 1)
                return gk_serve_fail(e, 400, k, "unsupported_parameter",
                                     "'%s' > 1 is not supported", k);
        } else if (!strcmp(k, "echo") && !chat) {
            if (!cJSON_IsBool(f) && !cJSON_IsNull(f))
                return gk_serve_fail(e, 400, k, "invalid_type", "'echo' must be a boolean");
            if (cJSON_IsTrue(f))
                return gk_serve_fail(e, 400, k, "unsupported_parameter", "'echo' is not supported");
        } else if (!strcmp(k, "logprobs")) {
            if (cJSON_IsNull(f)) continue;
            if (chat) {
                if (!cJSON_IsBool(f))
                    return gk_serve_fail(e, 400, k, "invalid_type", "'logprobs' must be a boolean");
                r->logprobs = cJSON_IsTrue(f);
            } else {
                /* completions: logprobs is the number of alternatives (0..5 in OpenAI's API) */
                if (integer(f, k, 0, GK_SERVE_MAX_TOP_LOGPROBS, &i, e) < 0) return -1;
                r->logprobs = true;
                r->top_logprobs = (int)i;
            }
        } else if (!strcmp(k, "top_logprobs") && chat) {
            if (cJSON_IsNull(f)) continue;
            if (integer(f, k, 0, GK_SERVE_MAX_TOP_LOGPROBS, &i, e) < 0) return -1;
            r->top_logprobs = (int)i;
        } else {
            return gk_serve_fail(e, 400, k, "unknown_parameter",
                                 "unrecognized request argument '%.40s'", k);
        }
    }
    if (!seen_main)
        return gk_serve_fail(e, 400, main_field, "missing_required_parameter", "'%s' is required",
                             main_field);
    if (chat && r->top_logprobs > 0 && !r->logprobs)
        return gk_serve_fail(e, 400, "top_logprobs", "invalid_value",
                             "'top_logprobs' needs 'logprobs' set to true");
    if (seen_stream_options && !r->stream)
        return gk_serve_fail(e, 400, "stream_options", "invalid_value",
                             "'stream_options' is only allowed with 'stream' set to true");
    return 0;
}

int gk_serve_parse_request(gk_serve_request *r, gk_serve_kind kind, const char *body, size_t len,
                           int max_ids, gk_serve_error *e) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->max_tokens = -1;
    /* OpenAI's defaults: temperature 1, top_p 1; the llama.cpp extensions off */
    r->temperature = 1.0f;
    r->top_p = 1.0f;
    r->repeat_penalty = 1.0f;
    r->repeat_last_n = 64;
    if (gk_serve_json_depth(body, len) > GK_SERVE_MAX_JSON_DEPTH)
        return gk_serve_fail(e, 400, "", "invalid_json", "the JSON body is nested deeper than %d",
                             GK_SERVE_MAX_JSON_DEPTH);
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= body && at <= body + len ? (long)(at - body) : -1;
        return gk_serve_fail(e, 400, "", "invalid_json",
                             "the body is not valid JSON (near byte %ld)", off);
    }
    int rc = 0;
    if (!cJSON_IsObject(root))
        rc = gk_serve_fail(e, 400, "", "invalid_json", "the body must be a JSON object");
    else
        rc = parse_fields(r, root, max_ids, e);
    cJSON_Delete(root);
    if (rc < 0) {
        gk_serve_request_free(r);
        r->kind = kind;
    }
    return rc;
}

/* ASCII and the common Unicode white space at either end (the template strips
 * user and system text; the transcript does the same). */
static void strip(const char **s, size_t *n) {
    while (*n && strchr(" \t\n\r\f\v", (*s)[0])) (*s)++, (*n)--;
    while (*n && strchr(" \t\n\r\f\v", (*s)[*n - 1])) (*n)--;
}

char *gk_serve_render_chat(const gk_tokenizer *tok, const gk_chat_msg *msgs, int n, bool *templated,
                           gk_serve_error *e) {
    if (gk_tokenizer_has_chat(tok)) {
        gk_err err;
        *templated = true;
        int64_t len = gk_chat_apply(tok, msgs, n, true, NULL, 0, &err);
        if (len < 0) {
            gk_serve_fail(e, 400, "messages", NULL, "%s", err.msg);
            return NULL;
        }
        char *s = malloc((size_t)len + 1);
        if (!s) {
            gk_serve_fail(e, 500, "", NULL, "out of memory");
            return NULL;
        }
        gk_chat_apply(tok, msgs, n, true, s, (size_t)len + 1, &err);
        return s;
    }
    /* A base model: the Grok-2 form as plain text, turns separated by a blank line. */
    *templated = false;
    size_t len = 16;
    for (int i = 0; i < n; i++) len += strlen(msgs[i].content) + 16;
    char *s = malloc(len), *p = s;
    if (!s) {
        gk_serve_fail(e, 500, "", NULL, "out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        const char *c = msgs[i].content;
        size_t cn = strlen(c);
        const char *head = !strcmp(msgs[i].role, "user")     ? "Human: "
                           : !strcmp(msgs[i].role, "system") ? "System: "
                                                             : "Assistant: ";
        if (head[0] != 'A') strip(&c, &cn);
        p = stpcpy(p, head);
        memcpy(p, c, cn);
        p += cn;
        p = stpcpy(p, "\n\n");
    }
    strcpy(p, "Assistant:");
    return s;
}
