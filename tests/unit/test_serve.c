/*
 * test_serve.c - grok serve's library side without HTTP: the request parser
 * (fields, ranges, refusals naming the field), the base-model chat transcript,
 * and the engine driven step by step on the shipped model: jobs finish with the
 * right reason and counts, a stop string is cut and never released in part, two
 * jobs side by side give what each gives alone, a repeated prompt reuses the
 * cache, and a cancelled job frees its slot at the next step.
 */
#include "gk_test.h"
#include "serve/serve.h"

#include <stdlib.h>
#include <string.h>

static int parse(gk_serve_kind k, const char *body, gk_serve_request *r, gk_serve_error *e) {
    return gk_serve_parse_request(r, k, body, strlen(body), 64, e);
}

static void test_parse(void) {
    gk_serve_request r;
    gk_serve_error e;
    CHECK(parse(GK_SERVE_CHAT,
                "{\"model\":\"x\",\"messages\":[{\"role\":\"developer\",\"content\":\"s\"},"
                "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                "{\"type\":\"text\",\"text\":\"b\"}]}],\"max_completion_tokens\":5,"
                "\"temperature\":0,\"stop\":[\"x\",\"\",\"yz\"],\"logprobs\":true,"
                "\"top_logprobs\":3,\"seed\":-1,\"stream\":true,"
                "\"stream_options\":{\"include_usage\":true}}",
                &r, &e) == 0);
    CHECK(r.n_msgs == 2 && !strcmp(r.msgs[0].role, "system") && !strcmp(r.msgs[1].content, "ab"));
    CHECK(r.max_tokens == 5 && r.temperature == 0.0f && r.n_stop == 2 && !strcmp(r.stop[1], "yz"));
    CHECK(r.logprobs && r.top_logprobs == 3 && r.has_seed && r.stream && r.include_usage);
    gk_serve_request_free(&r);

    CHECK(parse(GK_SERVE_COMPLETION, "{\"prompt\":[[5,6,7]],\"logprobs\":2}", &r, &e) == 0);
    CHECK(r.n_prompt_ids == 3 && r.prompt_ids[2] == 7 && r.logprobs && r.top_logprobs == 2);
    CHECK(r.max_tokens == -1 && r.temperature == 1.0f && r.top_p == 1.0f);
    gk_serve_request_free(&r);
    /* a top_p too small for a float is still > 0 (fuzz_serve_request found it stored as 0) */
    CHECK(parse(GK_SERVE_COMPLETION, "{\"prompt\":\"x\",\"top_p\":1e-50}", &r, &e) == 0);
    CHECK(r.top_p > 0.0f && r.top_p < 1e-30f);
    gk_serve_request_free(&r);

    static const struct {
        gk_serve_kind k;
        const char *body, *param;
    } bad[] = {
        {GK_SERVE_CHAT, "{\"messages\":[", ""},
        {GK_SERVE_CHAT, "[]", ""},
        {GK_SERVE_CHAT, "{}", "messages"},
        {GK_SERVE_CHAT, "{\"messages\":[]}", "messages"},
        {GK_SERVE_CHAT, "{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
         "messages[0].role"},
        {GK_SERVE_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[]}]}",
         "messages[0].tool_calls"},
        {GK_SERVE_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}", "n"},
        {GK_SERVE_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":0}",
         "top_p"},
        {GK_SERVE_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"a\",\"b\",\"c\",\"d\","
         "\"e\"]}",
         "stop"},
        {GK_SERVE_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream_options\":{}}",
         "stream_options"},
        {GK_SERVE_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[1]}",
         "tools"},
        {GK_SERVE_COMPLETION, "{\"prompt\":\"x\",\"echo\":true}", "echo"},
        {GK_SERVE_COMPLETION, "{\"prompt\":[1,-2]}", "prompt"},
        {GK_SERVE_COMPLETION, "{\"prompt\":[1.5]}", "prompt"},
        {GK_SERVE_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":0}", "max_tokens"},
        {GK_SERVE_COMPLETION, "{\"prompt\":\"x\",\"logprobs\":21}", "logprobs"},
        {GK_SERVE_COMPLETION, "{\"prompt\":\"x\",\"messages\":[]}", "messages"},
        /* a field given twice (found by fuzz_serve_request: the first value leaked) */
        {GK_SERVE_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":3,\"prompt\":\"b\"}", "prompt"},
        {GK_SERVE_COMPLETION, "{\"prompt\":\"a\",\"stop\":[\"x\",\"y\"],\"stop\":[\"z\",\"w\"]}",
         "stop"},
        {GK_SERVE_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"messages\":[]}",
         "messages"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        e = (gk_serve_error){0};
        CHECK_MSG(parse(bad[i].k, bad[i].body, &r, &e) < 0, "accepted %s", bad[i].body);
        CHECK_MSG(e.status == 400 && !strcmp(e.param, bad[i].param) && e.message[0],
                  "%s: status %d param '%s' (want '%s')", bad[i].body, e.status, e.param,
                  bad[i].param);
        CHECK(r.n_msgs == 0 && r.prompt == NULL && r.n_stop == 0);
    }
    /* a prompt of token ids longer than the context, and nesting beyond the limit */
    char ids[1024] = "{\"prompt\":[";
    for (int i = 0; i < 70; i++) strcat(ids, i ? ",1" : "1");
    strcat(ids, "]}");
    CHECK(parse(GK_SERVE_COMPLETION, ids, &r, &e) < 0 &&
          !strcmp(e.code, "context_length_exceeded"));
    char deep[256] = "{\"prompt\":";
    for (int i = 0; i < 40; i++) strcat(deep, "[");
    CHECK(parse(GK_SERVE_COMPLETION, deep, &r, &e) < 0 && e.status == 400);
    CHECK(gk_serve_json_depth("{\"a\":\"[[[[\",\"b\":[{}]}", 20) == 3);
}

static void test_transcript(void) {
    gk_chat_msg m[] = {
        {"system", "  sys \n"}, {"user", "hi"}, {"assistant", " yo "}, {"user", "q"}};
    bool templated = true;
    gk_serve_error e;
    char *s = gk_serve_render_chat(NULL, m, 4, &templated, &e);
    CHECK(s && !templated);
    CHECK(s && !strcmp(s, "System: sys\n\nHuman: hi\n\nAssistant:  yo \n\nHuman: q\n\nAssistant:"));
    free(s);
}

/* Runs steps until every job is done; returns the text of j. */
static char *drain(gk_serve_engine *e, gk_serve_job *j, gk_serve_delta *last) {
    size_t pos = 0;
    int rec = 0;
    char *text = calloc(1, 1);
    size_t n = 0;
    for (int guard = 0; guard < 100000; guard++) {
        gk_serve_engine_step(e);
        gk_serve_delta d;
        if (gk_serve_job_wait(j, &pos, &rec, 0, &d) == 1) {
            text = realloc(text, n + d.n_text + 1);
            memcpy(text + n, d.text, d.n_text + 1);
            n += d.n_text;
            gk_serve_finish f = d.finish;
            if (f != GK_SERVE_RUNNING) {
                *last = d;
                last->text = NULL;
                last->recs = NULL;
            }
            gk_serve_delta_free(&d);
            if (f != GK_SERVE_RUNNING) break;
        }
    }
    return text;
}

static gk_serve_job *submit(gk_serve_engine *e, const gk_tokenizer *tok, const char *prompt,
                            int max_tokens, const char *stop) {
    int32_t ids[256];
    int n = gk_tokenize(tok, prompt, strlen(prompt), false, ids, 256, NULL);
    gk_serve_job_params p = {.prompt = ids, .n_prompt = n, .max_tokens = max_tokens};
    p.sp = gk_sampler_default_params();
    p.sp.temperature = 0;
    const char *stops[1] = {stop};
    p.stop = stops;
    p.n_stop = stop ? 1 : 0;
    gk_serve_error err;
    gk_serve_job *j = gk_serve_submit(e, &p, &err);
    CHECK_MSG(j != NULL, "submit: %s", err.message);
    return j;
}

static void test_engine(void) {
    const char *src = getenv("GK_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/models/default.gguf", src ? src : ".");
    gk_err err;
    gk_model *m = gk_model_load(path, NULL, &err);
    if (!m) {
        fprintf(stderr, "skip engine tests: %s\n", err.msg);
        return;
    }
    const gk_tokenizer *tok = gk_model_tokenizer(m);
    gk_context_params cp = gk_context_default_params();
    cp.n_ctx = 256;
    cp.n_seq = 2;
    cp.n_threads = 1;
    gk_context *c = gk_context_new(m, &cp, &err);
    CHECK(c != NULL);
    gk_serve_engine_params ep = {.n_slots = 2, .n_ctx = 256, .n_batch = 16, .max_queue = 1};
    gk_serve_engine *e = gk_serve_engine_new(m, c, &ep, &err);
    CHECK(e != NULL);
    if (!e) goto done;

    gk_serve_delta d = {0};
    gk_serve_job *a = submit(e, tok, "The history of", 24, NULL);
    char *alone = drain(e, a, &d);
    CHECK(d.finish == GK_SERVE_LENGTH && d.n_generated == 24 && d.n_prompt == 3);
    gk_serve_job_release(a);

    /* the same prompt again: its cache is reused, the text is the same */
    a = submit(e, tok, "The history of", 24, NULL);
    char *again = drain(e, a, &d);
    CHECK(!strcmp(again, alone) && d.n_cached == 2);
    gk_serve_job_release(a);

    /* beside another job: the same text */
    a = submit(e, tok, "The history of", 24, NULL);
    gk_serve_job *b = submit(e, tok, "Our nation is a great", 30, NULL);
    char *side = drain(e, a, &d);
    CHECK(!strcmp(side, alone));
    gk_serve_delta db;
    free(drain(e, b, &db));
    CHECK(db.finish == GK_SERVE_LENGTH && db.n_generated == 30);
    gk_serve_job_release(a);
    gk_serve_job_release(b);

    /* a stop string across tokens: the text ends before it, and finish is stop */
    const char *at = strstr(alone + 4, " States");
    CHECK(at != NULL);
    if (at) {
        a = submit(e, tok, "The history of", 24, " States");
        char *cut = drain(e, a, &d);
        CHECK(d.finish == GK_SERVE_STOP);
        CHECK(strlen(cut) == (size_t)(strstr(alone, " States") - alone) &&
              !strncmp(cut, alone, strlen(cut)));
        free(cut);
        gk_serve_job_release(a);
    }

    /* the queue: two slots busy, one waiting, the next refused with 503 */
    gk_serve_job *q[3];
    for (int i = 0; i < 3; i++) q[i] = submit(e, tok, "The", 50, NULL);
    int32_t one = 5;
    gk_serve_job_params p = {.prompt = &one, .n_prompt = 1, .max_tokens = 1};
    p.sp = gk_sampler_default_params();
    gk_serve_error qe;
    CHECK(gk_serve_submit(e, &p, &qe) == NULL && qe.status == 503);
    /* cancel one generating and the queued one: their slot is free at the next step */
    gk_serve_engine_step(e);
    gk_serve_engine_step(e);
    gk_serve_job_cancel(q[0]);
    gk_serve_job_cancel(q[2]);
    gk_serve_engine_step(e);
    gk_serve_slot_info si[2];
    gk_serve_engine_slots(e, si, 2);
    int idle = !strcmp(si[0].state, "idle") + !strcmp(si[1].state, "idle");
    CHECK(idle == 1);
    gk_serve_stats st;
    gk_serve_engine_stats(e, &st);
    CHECK(st.queued == 0 && st.jobs_finished[GK_SERVE_CANCELLED] == 2);
    for (int i = 0; i < 3; i++) gk_serve_job_release(q[i]);

    free(alone);
    free(again);
    free(side);
    gk_serve_engine_free(e); /* also cancels the job still running */
    c = NULL;
done:
    gk_context_free(c);
    gk_model_free(m);
}

int main(void) {
    test_parse();
    test_transcript();
    test_engine();
    return gk_test_done();
}
