/* fuzz_serve_request.c: libFuzzer target for lyra serve's request parser
 * (src/serve/request.h): arbitrary bytes as the body of a chat and of a
 * completions request. Checked beyond "no crash / no sanitizer report":
 *   - a failure has an HTTP status of 400 (or 500 for out of memory), a
 *     non-empty message, and its OpenAI error JSON (oai_error_text) parses;
 *   - an accepted body gives fields in OpenAI's ranges: at most 4 stop
 *     strings, top_logprobs 0..20, temperature 0..2, top_p and min_p 0..1,
 *     penalties -2..2, max_tokens -1..2^31-1, and messages / prompt texts
 *     that are valid UTF-8. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/oai.h"
#include "serve/request.h"

static void fz_fail(const char *what, const uint8_t *d, size_t n) {
    fprintf(stderr, "fuzz_serve_request: %s on input of %zu bytes: \"%.*s\"\n", what, n, (int)n, (const char *)d);
    abort();
}

static void check(const uint8_t *d, size_t n, int chat) {
    srv_request r;
    srv_error e;
    memset(&e, 0, sizeof e);
    if (srv_request_parse((const char *)d, n, chat, &r, &e)) {
        if ((e.status != 400 && e.status != 500) || !e.message[0]) fz_fail("error status/message", d, n);
        char *t = oai_error_text(&e);
        json_t *j = t ? json_loads(t, 0, NULL) : NULL;
        if (!j || !json_is_object(json_object_get(j, "error"))) fz_fail("error JSON", d, n);
        json_decref(j);
        free(t);
    } else {
        if (r.n_stop < 0 || r.n_stop > SRV_MAX_STOPS) fz_fail("stops", d, n);
        if (r.top_logprobs < 0 || r.top_logprobs > SRV_MAX_TOP_LOGPROBS) fz_fail("top_logprobs", d, n);
        if (r.has_temperature && !(r.temperature >= 0 && r.temperature <= 2)) fz_fail("temperature", d, n);
        if (r.has_top_p && !(r.top_p >= 0 && r.top_p <= 1)) fz_fail("top_p", d, n);
        if (r.has_min_p && !(r.min_p >= 0 && r.min_p <= 1)) fz_fail("min_p", d, n);
        if (!(r.frequency_penalty >= -2 && r.frequency_penalty <= 2)) fz_fail("frequency_penalty", d, n);
        if (!(r.presence_penalty >= -2 && r.presence_penalty <= 2)) fz_fail("presence_penalty", d, n);
        if (r.max_tokens < -1 || r.max_tokens > INT32_MAX) fz_fail("max_tokens", d, n);
        if (chat && r.n_msgs < 1) fz_fail("messages", d, n);
        for (int i = 0; i < r.n_msgs; i++)
            if (!srv_utf8_valid(r.msgs[i].text, strlen(r.msgs[i].text))) fz_fail("message UTF-8", d, n);
        if (!chat && !r.prompt && r.n_prompt_tokens < 1) fz_fail("prompt", d, n);
        if (r.prompt && !srv_utf8_valid(r.prompt, strlen(r.prompt))) fz_fail("prompt UTF-8", d, n);
    }
    srv_request_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    check(d, n, 1);
    check(d, n, 0);
    return 0;
}
