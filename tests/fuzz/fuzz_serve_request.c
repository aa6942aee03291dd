/*
 * fuzz_serve_request.c - libFuzzer target for grok serve's request parser.
 *
 * The first byte picks the endpoint (even: chat, odd: completion), the rest is
 * the body. An accepted request must satisfy every promise of serve.h: at least
 * one message with a known role (chat) or a prompt (completion), at most four
 * non-empty stop strings of bounded length, values within their ranges; the
 * chat transcript renders and has the length it reports. A rejected one must
 * carry a 400 and a message. Under ASan any stray read crashes.
 */
#include "serve/serve.h"

#include <stdlib.h>
#include <string.h>

static volatile size_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    gk_serve_kind kind = (data[0] & 1) ? GK_SERVE_COMPLETION : GK_SERVE_CHAT;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    sink += (size_t)gk_serve_json_depth(body, len);
    gk_serve_request r;
    gk_serve_error e;
    if (gk_serve_parse_request(&r, kind, body, len, 512, &e) < 0) {
        if (e.status != 400 && e.status != 500) __builtin_trap();
        if (!e.message[0] || !e.type) __builtin_trap();
        return 0;
    }
    if (r.kind != kind || r.n_stop < 0 || r.n_stop > GK_SERVE_MAX_STOP) __builtin_trap();
    for (int i = 0; i < r.n_stop; i++) {
        size_t n = strlen(r.stop[i]);
        if (n == 0 || n > GK_SERVE_MAX_STOP_LEN) __builtin_trap();
    }
    if (!(r.temperature >= 0 && r.temperature <= 2) || !(r.top_p > 0 && r.top_p <= 1) ||
        !(r.min_p >= 0 && r.min_p <= 1) || r.top_k < 0 || r.top_logprobs < 0 ||
        r.top_logprobs > GK_SERVE_MAX_TOP_LOGPROBS || r.max_tokens == 0 || r.max_tokens < -1)
        __builtin_trap();
    if (kind == GK_SERVE_CHAT) {
        if (r.n_msgs < 1 || r.n_msgs > GK_SERVE_MAX_MESSAGES) __builtin_trap();
        for (int i = 0; i < r.n_msgs; i++) {
            const char *role = r.msgs[i].role;
            if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant"))
                __builtin_trap();
            sink += strlen(r.msgs[i].content);
        }
        bool templated = true;
        char *text = gk_serve_render_chat(NULL, r.msgs, r.n_msgs, &templated, &e);
        if (!text || templated) __builtin_trap();
        sink += strlen(text);
        free(text);
    } else {
        if (!r.prompt && (r.n_prompt_ids < 1 || r.n_prompt_ids > 512)) __builtin_trap();
        if (r.prompt) sink += strlen(r.prompt);
        for (int i = 0; i < r.n_prompt_ids; i++)
            if (r.prompt_ids[i] < 0) __builtin_trap();
    }
    gk_serve_request_free(&r);
    return 0;
}
