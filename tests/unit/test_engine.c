/* test_engine.c: lyra.h's engine (API version 8) on stories260K: requests
 * run together give the same text as each alone (prompts, chat, sampled),
 * in batched steps; the text callback and the pull calls see the same
 * text; a slot's state kept at the end of a request and restored into a
 * slot of another engine (while another request generates) continues as
 * if evaluated again, evaluating only the new tokens; cancel; errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lyra.h"
#include "testutil.h"

typedef struct {
    char buf[8192];
    size_t n;
} sink;

static int on_text(const char *piece, size_t len, void *user) {
    sink *s = user;
    if (s->n + len < sizeof s->buf) {
        memcpy(s->buf + s->n, piece, len);
        s->n += len;
    }
    return 0;
}

/* The whole text of a finished request (malloc'd). */
static char *text_of(lyra_engine_req *r) {
    lyra_engine_req_wait(r, 0, -1);
    while (!lyra_engine_req_wait(r, (size_t)-1 / 2, -1)) {}
    size_t n = lyra_engine_req_text(r, 0, NULL, 0);
    char *t = malloc(n + 1);
    lyra_engine_req_text(r, 0, t, n);
    t[n] = '\0';
    return t;
}

static lyra_engine_req *submit(lyra_engine *e, const char *prompt, const lyra_chat_message *msgs, int n_msgs,
                               uint64_t seed, float temp, int64_t max_tokens, const void *sess, size_t sess_len,
                               int keep, sink *cb) {
    lyra_engine_request rq = lyra_engine_default_request(e);
    rq.prompt = prompt;
    rq.messages = msgs;
    rq.n_messages = n_msgs;
    rq.sampler.seed = seed;
    rq.sampler.temperature = temp;
    rq.max_tokens = max_tokens;
    rq.session = sess;
    rq.session_len = sess_len;
    rq.keep_session = keep;
    if (cb) {
        rq.cb = on_text;
        rq.user = cb;
    }
    lyra_engine_req *r = NULL;
    lyra_error err;
    int rc = lyra_engine_submit(e, &rq, &r, &err);
    CHECK(rc == LYRA_OK, "submit: %s", err.msg);
    return r;
}

static void test_together(lyra_pipeline *p) {
    const char *prompts[3] = {"Once upon a time", "The little cat", "A big red ball"};
    lyra_engine_params ep = lyra_engine_default_params();
    ep.n_slots = 3;
    lyra_engine *e;
    lyra_error err;
    CHECK(lyra_engine_open(p, &ep, &e, &err) == LYRA_OK, "open: %s", err.msg);
    if (!e) return;
    for (int pass = 0; pass < 2; pass++) {
        float temp = pass ? 0.9f : 0.0f;
        char *alone[3];
        for (int i = 0; i < 3; i++) {
            lyra_engine_req *r = submit(e, prompts[i], NULL, 0, 40 + (uint64_t)i, temp, 100, NULL, 0, 0, NULL);
            alone[i] = text_of(r);
            lyra_engine_req_free(r);
        }
        lyra_engine_stats st0;
        lyra_engine_get_stats(e, &st0);
        lyra_engine_req *r[3];
        sink cb = {{0}, 0};
        for (int i = 0; i < 3; i++)
            r[i] = submit(e, prompts[i], NULL, 0, 40 + (uint64_t)i, temp, 100, NULL, 0, 0, i == 1 ? &cb : NULL);
        for (int i = 0; i < 3; i++) {
            char *t = text_of(r[i]);
            CHECK(!strcmp(t, alone[i]), "pass %d request %d: '%s' together, '%s' alone", pass, i, t, alone[i]);
            if (i == 1) CHECK(cb.n == strlen(t) && !memcmp(cb.buf, t, cb.n), "the callback's text differs");
            lyra_engine_result res;
            CHECK(lyra_engine_req_result(r[i], &res, &err) == LYRA_OK, "result: %s", err.msg);
            CHECK(res.n_gen > 0 && res.n_prompt > 0 && res.stop != LYRA_STOP_CANCELLED, "result counts");
            free(t);
            free(alone[i]);
            lyra_engine_req_free(r[i]);
        }
        lyra_engine_stats st;
        lyra_engine_get_stats(e, &st);
        CHECK(st.batched_steps > st0.batched_steps && st.max_batch >= 2, "no batched step (max %d)", st.max_batch);
    }
    /* cancel, errors */
    lyra_engine_req *r = submit(e, "Once", NULL, 0, 1, 0.0f, 1500, NULL, 0, 0, NULL);
    lyra_engine_req_cancel(r);
    while (!lyra_engine_req_wait(r, (size_t)-1 / 2, -1)) {}
    lyra_engine_result res;
    CHECK(lyra_engine_req_result(r, &res, &err) == LYRA_OK && res.stop == LYRA_STOP_CANCELLED, "cancel: stop %d",
          res.stop);
    void *buf;
    size_t len;
    CHECK(lyra_engine_req_session(r, &buf, &len, &err) == LYRA_ERR_INPUT && strstr(err.msg, "keep_session"),
          "a session without keep_session: %s", err.msg);
    lyra_engine_req_free(r);
    lyra_engine_request rq = lyra_engine_default_request(e);
    CHECK(lyra_engine_submit(e, &rq, &r, &err) == LYRA_ERR_INPUT && !r, "nothing to say accepted");
    lyra_chat_message bad[1] = {{"assistant", "hi"}};
    rq.messages = bad;
    rq.n_messages = 1;
    CHECK(lyra_engine_submit(e, &rq, &r, &err) == LYRA_ERR_INPUT && strstr(err.msg, "messages"), "bad messages: %s",
          err.msg);
    lyra_engine_free(e);
}

static void test_sessions(lyra_pipeline *p) {
    lyra_chat_message conv[3] = {{"user", "Tell me about a cat."}, {"assistant", NULL}, {"user", "And then?"}};
    lyra_engine_params ep = lyra_engine_default_params();
    ep.n_slots = 2;
    lyra_engine *e;
    lyra_error err;
    CHECK(lyra_engine_open(p, &ep, &e, &err) == LYRA_OK, "open: %s", err.msg);
    if (!e) return;
    lyra_engine_req *r = submit(e, NULL, conv, 1, 3, 0.0f, 40, NULL, 0, 1, NULL);
    char *first = text_of(r);
    void *sess = NULL;
    size_t n_sess = 0;
    CHECK(lyra_engine_req_session(r, &sess, &n_sess, &err) == LYRA_OK && n_sess > 0, "session: %s", err.msg);
    void *sess2;
    size_t n_sess2;
    CHECK(lyra_engine_req_session(r, &sess2, &n_sess2, &err) == LYRA_ERR_INPUT && !sess2, "a session taken twice");
    lyra_engine_req_free(r);
    conv[1].content = first;
    /* the next turn evaluated from scratch */
    r = submit(e, NULL, conv, 3, 3, 0.0f, 40, NULL, 0, 0, NULL);
    char *again = text_of(r);
    lyra_engine_req_free(r);
    lyra_engine_free(e);
    /* restored into another engine while a request generates there */
    CHECK(lyra_engine_open(p, &ep, &e, &err) == LYRA_OK, "open: %s", err.msg);
    lyra_engine_req *busy = submit(e, "Once upon a time", NULL, 0, 1, 0.0f, 300, NULL, 0, 0, NULL);
    lyra_engine_req_wait(busy, 0, -1);
    r = submit(e, NULL, conv, 3, 3, 0.0f, 40, sess, n_sess, 0, NULL);
    char *restored = text_of(r);
    lyra_engine_result res;
    CHECK(lyra_engine_req_result(r, &res, &err) == LYRA_OK, "result: %s", err.msg);
    CHECK(res.restored && res.n_cached > res.n_prompt / 2, "not restored (cached %d of %d)", (int)res.n_cached,
          (int)res.n_prompt);
    CHECK(res.n_evaluated <= res.n_prompt - res.n_cached + res.n_gen, "evaluated %lld", (long long)res.n_evaluated);
    CHECK(!strcmp(restored, again), "restored: '%s', evaluated again: '%s'", restored, again);
    free(text_of(busy));
    CHECK(lyra_engine_req_result(busy, &res, &err) == LYRA_OK && res.n_gen > 0, "the other request failed: %s",
          err.msg);
    /* a damaged session is not restored: the prompt is evaluated */
    ((unsigned char *)sess)[n_sess / 2] ^= 0x55;
    lyra_engine_req *r2 = submit(e, NULL, conv, 3, 3, 0.0f, 40, sess, n_sess, 0, NULL);
    char *t2 = text_of(r2);
    CHECK(lyra_engine_req_result(r2, &res, &err) == LYRA_OK && !res.restored, "a damaged session restored");
    free(t2);
    lyra_engine_req_free(r2);
    lyra_engine_req_free(r);
    lyra_engine_req_free(busy);
    lyra_engine_free(e);
    lyra_free(sess);
    free(first);
    free(again);
    free(restored);
}

int main(void) {
    const char *model = test_shared_path("models/stories260K.gguf");
    lyra_log_set(NULL, LYRA_LOG_ERROR, NULL);
    CHECK(lyra_api_version() == 8, "api version %d", lyra_api_version());
    lyra_error err;
    lyra_pipeline *p = NULL;
    CHECK(lyra_pipeline_open(model, NULL, NULL, NULL, &p, &err) == LYRA_OK, "open: %s", err.msg);
    if (p) {
        test_together(p);
        test_sessions(p);
    }
    lyra_pipeline_free(p);
    return test_done();
}
