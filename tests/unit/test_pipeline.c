/* test_pipeline.c: the C API lyra_load_pipeline (include/lyra.h) on
 * stories260K: greedy generation equals `lyra generate --temp 0` (run as a
 * separate process), the callback's pieces make the text and a non-zero
 * return cancels, chat turns reuse the KV cache (only the new tokens are
 * evaluated, and the reply equals a from-scratch greedy continuation of the
 * rendered conversation), a config file by path and by discovery applies,
 * kwargs override it, and the errors (task, bad kwarg, no model_id) are
 * LYRA_ERR_INPUT naming the culprit. API version 5: per-call generation
 * settings (greedy and seeded sampling equal the CLI's with the same
 * flags), the counts and stop reasons, lyra_pipeline_cancel, a chat from a
 * message list equal to the same turns one by one, the error kinds, the
 * effective config as JSON. Runs in a temporary cwd, HOME and
 * XDG_CONFIG_HOME so that no real config is discovered. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lyra.h"
#include "testutil.h"

static const char *g_model; /* stories260K.gguf */
static const char *g_bin;   /* the lyra command */

/* stdout of `lyra generate -m MODEL -p PROMPT -n N --temp 0` without its
 * final newline (malloc'd), NULL on failure. */
static char *cli_greedy(const char *prompt, int n) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' generate --no-config -m '%s' -p '%s' -n %d --temp 0 2>/dev/null", g_bin,
             g_model, prompt, n);
    FILE *f = popen(cmd, "r");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    size_t k;
    while (s && (k = fread(s + len, 1, cap - 1 - len, f)) > 0) len += k;
    int st = pclose(f);
    if (!s) return NULL;
    s[len] = '\0';
    if (st != 0) { /* an older CLI without --no-config: retry without it */
        snprintf(cmd, sizeof cmd, "'%s' generate -m '%s' -p '%s' -n %d --temp 0 2>/dev/null", g_bin, g_model,
                 prompt, n);
        f = popen(cmd, "r");
        len = 0;
        while (f && (k = fread(s + len, 1, cap - 1 - len, f)) > 0) len += k;
        if (!f || pclose(f) != 0) {
            free(s);
            return NULL;
        }
        s[len] = '\0';
    }
    if (len && s[len - 1] == '\n') s[--len] = '\0';
    return s;
}

/* stdout of `lyra generate --no-config -m MODEL -p PROMPT ARGS` without its
 * final newline (malloc'd), NULL on failure. */
static char *cli_gen(const char *prompt, const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' generate --no-config -m '%s' -p '%s' %s 2>/dev/null", g_bin, g_model, prompt,
             args);
    FILE *f = popen(cmd, "r");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0, k;
    char *s = malloc(cap);
    while (s && (k = fread(s + len, 1, cap - 1 - len, f)) > 0) len += k;
    if (pclose(f) != 0 || !s) {
        free(s);
        return NULL;
    }
    s[len] = '\0';
    if (len && s[len - 1] == '\n') s[--len] = '\0';
    return s;
}

/* The callback's state: pieces joined, calls, cancel after cancel_at calls. */
typedef struct sink {
    char buf[1 << 16]; /* the pieces joined */
    size_t n;          /* bytes */
    int calls;         /* calls so far */
    int cancel_at;     /* return 1 at this call (0: never) */
    lyra_pipeline *p;  /* cancel_at: lyra_pipeline_cancel(p) instead of returning 1 */
} sink;

static int on_piece(const char *piece, size_t len, void *user) {
    sink *s = user;
    if (s->n + len < sizeof s->buf) {
        memcpy(s->buf + s->n, piece, len);
        s->n += len;
        s->buf[s->n] = '\0';
    }
    s->calls++;
    if (s->p && s->cancel_at && s->calls == s->cancel_at) {
        lyra_pipeline_cancel(s->p);
        return 0;
    }
    return !s->p && s->cancel_at && s->calls >= s->cancel_at;
}

/* The log lines, to read the chat's "E evaluated, R reused" note. */
static char g_log[1 << 16];
static void on_log(lyra_log_level level, const char *line, void *user) {
    (void)level;
    (void)user;
    size_t n = strlen(g_log);
    snprintf(g_log + n, sizeof g_log - n, "%s\n", line);
}

/* The last "prompt N tokens: E evaluated, R reused" note; 0 when found. */
static int last_eval_note(int *n, int *e, int *r) {
    const char *p = g_log, *last = NULL;
    while ((p = strstr(p, "pipeline: prompt "))) last = p++;
    if (!last) return -1;
    return sscanf(last, "pipeline: prompt %d tokens: %d evaluated, %d reused", n, e, r) == 3 ? 0 : -1;
}

static lyra_pipeline *load_greedy(int n, lyra_error *err) {
    lyra_kwargs *kw = lyra_kwargs_new();
    char v[32];
    snprintf(v, sizeof v, "%d", n);
    int rc = lyra_kwargs_set(kw, "max_new_tokens", v, err);
    if (!rc) rc = lyra_kwargs_set(kw, "temperature", "0", err);
    lyra_pipeline *p = rc ? NULL : lyra_load_pipeline(g_model, "text-generation", NULL, kw, err);
    lyra_kwargs_free(kw);
    return p;
}

static void test_generate(void) {
    const char *prompt = "Once upon a time";
    char *ref = cli_greedy(prompt, 40);
    CHECK(ref && strlen(ref) > 20, "CLI greedy text: %s", ref ? ref : "(failed)");
    lyra_error err;
    lyra_pipeline *p = load_greedy(40, &err);
    CHECK(p, "load: %s", err.msg);
    if (!p || !ref) {
        free(ref);
        lyra_pipeline_free(p);
        return;
    }
    sink s = {0};
    char *text = NULL;
    int rc = lyra_pipeline_generate(p, prompt, on_piece, &s, &text, &err);
    CHECK(rc == LYRA_OK, "generate: %s", err.msg);
    CHECK(text && !strcmp(text, ref), "pipeline text\n  '%s'\n!= CLI\n  '%s'", text ? text : "", ref);
    CHECK(text && !strcmp(s.buf, text), "callback pieces '%s' != text '%s'", s.buf, text ? text : "");
    CHECK(s.calls >= 10, "callback called %d times for 40 tokens", s.calls);
    free(text);
    /* again: the same text (the KV cache starts empty each call) */
    rc = lyra_pipeline_generate(p, prompt, NULL, NULL, &text, &err);
    CHECK(rc == LYRA_OK && text && !strcmp(text, ref), "second generate: '%s'", text ? text : err.msg);
    free(text);
    /* cancel after 3 pieces: the text stops there and is a prefix of ref */
    sink c = {0};
    c.cancel_at = 3;
    rc = lyra_pipeline_generate(p, prompt, on_piece, &c, &text, &err);
    CHECK(rc == LYRA_OK, "cancelled generate: %s", err.msg);
    CHECK(c.calls == 3, "callback called %d times after cancelling at 3", c.calls);
    CHECK(text && strlen(text) < strlen(ref) && !strncmp(text, ref, strlen(text)) && !strcmp(text, c.buf),
          "cancelled text '%s' (pieces '%s') is not a short prefix of '%s'", text ? text : "", c.buf, ref);
    CHECK(lyra_context_pos(lyra_pipeline_context(p)) < 10,
          "cancel stopped early: %d positions in the cache", (int)lyra_context_pos(lyra_pipeline_context(p)));
    free(text);
    /* the device map and fallback history are readable */
    char map[4096];
    size_t k = lyra_model_device_map(lyra_pipeline_model(p), map, sizeof map);
    CHECK(k > 0 && k < sizeof map && strstr(map, "\"lm_head\":\"cpu\"") && strstr(map, "model.layers.4"),
          "device map: %s", map);
    CHECK(lyra_model_fallback_steps(lyra_pipeline_model(p)) == 0, "fallback steps: %d",
          lyra_model_fallback_steps(lyra_pipeline_model(p)));
    lyra_pipeline_free(p);
    /* a stop string (a word from the middle of ref): the text ends before
     * its first occurrence, and the callback never sees any of it */
    char stop[8];
    snprintf(stop, sizeof stop, "%.5s", ref + strlen(ref) / 2);
    lyra_kwargs *kw = lyra_kwargs_new();
    int ok = !lyra_kwargs_set(kw, "max_new_tokens", "40", &err) && !lyra_kwargs_set(kw, "do_sample", "false", &err) &&
             !lyra_kwargs_set(kw, "stop", "ZZZ", &err) && !lyra_kwargs_set(kw, "stop", stop, &err);
    CHECK(ok, "kwargs: %s", err.msg);
    p = ok ? lyra_load_pipeline(g_model, NULL, NULL, kw, &err) : NULL;
    lyra_kwargs_free(kw);
    CHECK(p, "load with stop: %s", err.msg);
    sink t = {0};
    rc = p ? lyra_pipeline_generate(p, prompt, on_piece, &t, &text, &err) : -1;
    size_t cut = (size_t)(strstr(ref, stop) - ref);
    CHECK(rc == LYRA_OK && text && strlen(text) == cut && !strncmp(text, ref, cut) && !strcmp(t.buf, text),
          "stop '%s': '%s' (pieces '%s'), expected '%.*s'", stop, text ? text : err.msg, t.buf, (int)cut, ref);
    free(text);
    lyra_pipeline_free(p);
    free(ref);
}

static void test_chat(void) {
    lyra_error err;
    lyra_pipeline *p = load_greedy(16, &err);
    CHECK(p, "load: %s", err.msg);
    if (!p) return;
    lyra_context *ctx = lyra_pipeline_context(p);
    lyra_log_set(on_log, LYRA_LOG_DEBUG, NULL);
    char *r1 = NULL, *r2 = NULL;
    int rc = lyra_pipeline_chat(p, "Tell me a story.", NULL, NULL, &r1, &err);
    CHECK(rc == LYRA_OK && r1, "chat 1: %s", err.msg);
    int n1 = 0, e1 = 0, u1 = 0, n2 = 0, e2 = 0, u2 = 0;
    CHECK(last_eval_note(&n1, &e1, &u1) == 0 && e1 == n1 && u1 == 0, "turn 1: %d tokens, %d evaluated, %d reused",
          n1, e1, u1);
    int32_t pos1 = lyra_context_pos(ctx);
    CHECK(pos1 > n1, "after turn 1: %d positions, prompt %d", (int)pos1, n1);
    g_log[0] = '\0';
    sink s = {0};
    rc = lyra_pipeline_chat(p, "What happened next?", on_piece, &s, &r2, &err);
    lyra_log_set(NULL, LYRA_LOG_WARN, NULL);
    CHECK(rc == LYRA_OK && r2, "chat 2: %s", err.msg);
    CHECK(last_eval_note(&n2, &e2, &u2) == 0, "no evaluation note in the log:\n%s", g_log);
    fprintf(stderr, "chat: turn 1 prompt %d tokens, cache %d after the reply '%s'; turn 2 prompt %d tokens: %d "
            "evaluated, %d reused\n", n1, (int)pos1, r1 ? r1 : "", n2, e2, u2);
    /* only the new tokens: everything of turn 1 but at most the reply's last
     * two tokens (retokenized at the boundary) is reused */
    CHECK(e2 + u2 == n2 && u2 >= pos1 - 2 && e2 <= n2 - (pos1 - 2) && e2 < n2,
          "turn 2: %d tokens, %d evaluated, %d reused; turn 1 left %d in the cache", n2, e2, u2, (int)pos1);
    CHECK(lyra_context_pos(ctx) >= n2, "after turn 2: %d positions < prompt %d", (int)lyra_context_pos(ctx), n2);
    CHECK(r2 && !strcmp(s.buf, r2), "chat pieces '%s' != reply '%s'", s.buf, r2 ? r2 : "");
    /* the reply equals a fresh greedy continuation of the rendered
     * conversation (stories260K has no template: plain User:/Assistant:) */
    char conv[4096];
    snprintf(conv, sizeof conv, "User: Tell me a story.\nAssistant: %s\nUser: What happened next?\nAssistant:",
             r1 ? r1 : "");
    char *fresh = NULL;
    rc = lyra_pipeline_generate(p, conv, NULL, NULL, &fresh, &err);
    const char *f = fresh ? fresh : "";
    while (*f == ' ' || *f == '\n') f++;
    CHECK(rc == LYRA_OK && r2 && !strncmp(f, r2, strlen(r2)), "reply with the cache '%s' is not the start of the "
          "fresh continuation '%s'", r2 ? r2 : "", f);
    free(fresh);
    /* reset: the next turn evaluates its whole prompt again */
    lyra_pipeline_reset(p);
    CHECK(lyra_context_pos(ctx) == 0, "after reset: %d positions", (int)lyra_context_pos(ctx));
    free(r1);
    free(r2);
    lyra_pipeline_free(p);

    /* a context of 64: the oldest turns are dropped (a warning), a message
     * that cannot fit is LYRA_ERR_INPUT and the chat goes on */
    lyra_kwargs *kw = lyra_kwargs_new();
    int ok = !lyra_kwargs_set(kw, "max_new_tokens", "16", &err) && !lyra_kwargs_set(kw, "do_sample", "false", &err) &&
             !lyra_kwargs_set(kw, "context_length", "64", &err);
    CHECK(ok, "kwargs: %s", err.msg);
    p = ok ? lyra_load_pipeline(g_model, NULL, NULL, kw, &err) : NULL;
    lyra_kwargs_free(kw);
    CHECK(p && lyra_context_n_ctx(lyra_pipeline_context(p)) == 64, "load with context_length 64: %s", err.msg);
    if (!p) return;
    g_log[0] = '\0';
    lyra_log_set(on_log, LYRA_LOG_WARN, NULL);
    const char *msgs[] = {"Tell me a story.", "What happened next?", "And then?"};
    for (int i = 0; i < 3; i++) {
        char *r = NULL;
        rc = lyra_pipeline_chat(p, msgs[i], NULL, NULL, &r, &err);
        CHECK(rc == LYRA_OK && r, "small context, turn %d: %s", i + 1, err.msg);
        CHECK(lyra_context_pos(lyra_pipeline_context(p)) <= 64, "turn %d: %d positions", i + 1,
              (int)lyra_context_pos(lyra_pipeline_context(p)));
        free(r);
    }
    CHECK(strstr(g_log, "chat: dropped the"), "no notice of dropped turns:\n%s", g_log);
    char big[2048] = "";
    for (int i = 0; i < 60; i++) strcat(big, "the big dog ran. ");
    rc = lyra_pipeline_chat(p, big, NULL, NULL, NULL, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "context"), "too long a message: %d '%s'", rc, err.msg);
    char *r = NULL;
    rc = lyra_pipeline_chat(p, "Hi.", NULL, NULL, &r, &err);
    CHECK(rc == LYRA_OK && r, "after the refused message: %s", err.msg);
    free(r);
    lyra_log_set(NULL, LYRA_LOG_WARN, NULL);
    lyra_pipeline_free(p);
}

static void test_errors(void) {
    lyra_error err;
    lyra_pipeline *p = lyra_load_pipeline(g_model, "summarization", NULL, NULL, &err);
    CHECK(!p && err.code == LYRA_ERR_INPUT && strstr(err.msg, "task") && strstr(err.msg, "summarization"),
          "task: code %d '%s'", err.code, err.msg);
    lyra_pipeline_free(p);
    lyra_kwargs *kw = lyra_kwargs_new();
    int rc = lyra_kwargs_set(kw, "max_new_tokens", "-5", &err);
    CHECK(rc == LYRA_ERR_INPUT && err.code == LYRA_ERR_INPUT && strstr(err.msg, "max_new_tokens") &&
          !strchr(err.msg, '\n'), "max_new_tokens=-5: %d '%s'", rc, err.msg);
    rc = lyra_kwargs_set(kw, "max_new_tokens", "x", &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "max_new_tokens"), "max_new_tokens=x: %d '%s'", rc, err.msg);
    rc = lyra_kwargs_set(kw, "max_new_tokenz", "4", &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "max_new_tokenz"), "unknown key: %d '%s'", rc, err.msg);
    rc = lyra_kwargs_set(kw, "max_memory", "cpu=6XB", &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "max_memory"), "max_memory=cpu=6XB: %d '%s'", rc, err.msg);
    lyra_kwargs_free(kw);
    p = lyra_load_pipeline(NULL, NULL, NULL, NULL, &err);
    CHECK(!p && err.code == LYRA_ERR_INPUT && !strncmp(err.msg, "model_id", 8), "no model_id: %d '%s'", err.code,
          err.msg);
    lyra_pipeline_free(p);
    p = lyra_load_pipeline("/nonexistent/model.gguf", NULL, NULL, NULL, &err);
    CHECK(!p && err.code == LYRA_ERR_INPUT && strstr(err.msg, "/nonexistent/model.gguf"), "missing model: %d '%s'",
          err.code, err.msg);
    p = lyra_load_pipeline(NULL, NULL, "/nonexistent/cfg.json", NULL, &err);
    CHECK(!p && err.code == LYRA_ERR_INPUT && strstr(err.msg, "/nonexistent/cfg.json"), "missing config: %d '%s'",
          err.code, err.msg);
}

/* A lyra_kwargs from "key=value" strings (NULL-terminated); NULL on error. */
static lyra_kwargs *kwargs_of(const char *const *kv, lyra_error *err) {
    lyra_kwargs *kw = lyra_kwargs_new();
    for (int i = 0; kw && kv[i]; i++) {
        char key[64];
        const char *eq = strchr(kv[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - kv[i]), kv[i]);
        if (lyra_kwargs_set(kw, key, eq + 1, err)) {
            lyra_kwargs_free(kw);
            return NULL;
        }
    }
    return kw;
}

static void test_v5(void) {
    CHECK(lyra_api_version() == LYRA_API_VERSION && LYRA_API_VERSION >= 5, "api version %d", lyra_api_version());
    const char *prompt = "Once upon a time";
    char *greedy = cli_gen(prompt, "-n 12 --temp 0");
    char *seeded = cli_gen(prompt, "-n 24 --temp 0.9 --top-k 40 --top-p 0.95 --min-p 0.05 --seed 7");
    char *stopped = cli_gen(prompt, "-n 24 --temp 0.9 --top-k 40 --top-p 0.95 --min-p 0.05 --seed 7 --stop the");
    CHECK(greedy && seeded && stopped, "CLI runs failed");
    lyra_error err;
    lyra_pipeline *p = lyra_load_pipeline(g_model, NULL, NULL, NULL, &err); /* lyra's sampling defaults */
    CHECK(p, "load: %s", err.msg);
    if (!p || !greedy || !seeded || !stopped) goto out;
    /* per call: greedy, 12 tokens */
    const char *kv1[] = {"max_new_tokens=12", "do_sample=false", NULL};
    lyra_kwargs *kw = kwargs_of(kv1, &err);
    lyra_generate_result res;
    char *text = NULL;
    int rc = kw ? lyra_pipeline_generate_ex(p, prompt, kw, NULL, NULL, &text, &res, &err) : -1;
    CHECK(rc == LYRA_OK && text && !strcmp(text, greedy), "per-call greedy '%s' != CLI '%s'", text ? text : err.msg,
          greedy);
    CHECK(rc == LYRA_OK && res.n_gen == 12 && res.stop == LYRA_STOP_LENGTH && res.n_reused == 0 && res.n_prompt >= 4,
          "result: prompt %d reused %d gen %lld stop %d", res.n_prompt, res.n_reused, (long long)res.n_gen,
          res.stop);
    free(text);
    lyra_kwargs_free(kw);
    /* per call: seeded sampling as the CLI's flags (lyra's knobs given) */
    const char *kv2[] = {"max_new_tokens=24", "temperature=0.9", "top_k=40", "top_p=0.95", "min_p=0.05", "seed=7", NULL};
    kw = kwargs_of(kv2, &err);
    rc = kw ? lyra_pipeline_generate_ex(p, prompt, kw, NULL, NULL, &text, &res, &err) : -1;
    CHECK(rc == LYRA_OK && text && !strcmp(text, seeded), "per-call seeded '%s' != CLI '%s'", text ? text : err.msg,
          seeded);
    free(text);
    /* the same kwargs plus a stop string (replacing the pipeline's list) */
    CHECK(kw && lyra_kwargs_set(kw, "stop", "the", &err) == 0, "stop: %s", err.msg);
    rc = kw ? lyra_pipeline_generate_ex(p, prompt, kw, NULL, NULL, &text, &res, &err) : -1;
    CHECK(rc == LYRA_OK && text && !strcmp(text, stopped) &&
              (strlen(stopped) < strlen(seeded) ? res.stop == LYRA_STOP_STRING : 1),
          "per-call stop '%s' (stop %d) != CLI '%s'", text ? text : err.msg, res.stop, stopped);
    free(text);
    lyra_kwargs_free(kw);
    /* a load setting per call: refused, kind UNKNOWN_KEY; the pipeline goes on */
    const char *kv3[] = {"device_map=cpu", NULL};
    kw = kwargs_of(kv3, &err);
    rc = kw ? lyra_pipeline_generate_ex(p, prompt, kw, NULL, NULL, &text, &res, &err) : -1;
    CHECK(rc == LYRA_ERR_INPUT && err.kind == LYRA_KIND_UNKNOWN_KEY && !strncmp(err.msg, "device_map: ", 12) &&
              !text,
          "device_map per call: %d kind %d '%s'", rc, err.kind, err.msg);
    lyra_kwargs_free(kw);
    /* cancel from the callback's thread (as another thread would): the
     * generation stops before the next token */
    sink c = {0};
    c.cancel_at = 3;
    c.p = p;
    kw = kwargs_of(kv1, &err);
    rc = lyra_pipeline_generate_ex(p, prompt, kw, on_piece, &c, &text, &res, &err);
    CHECK(rc == LYRA_OK && res.stop == LYRA_STOP_CANCELLED && c.calls == 3 && res.n_gen == 3 && text &&
              !strcmp(text, c.buf) && !strncmp(text, greedy, strlen(text)),
          "cancel: rc %d stop %d calls %d gen %lld '%s'", rc, res.stop, c.calls, (long long)res.n_gen,
          text ? text : err.msg);
    free(text);
    /* the next call is not cancelled */
    rc = lyra_pipeline_generate_ex(p, prompt, kw, NULL, NULL, &text, &res, &err);
    CHECK(rc == LYRA_OK && text && !strcmp(text, greedy), "after cancel: '%s'", text ? text : err.msg);
    free(text);
    /* a chat from a message list equals the same turns one by one */
    char *r1 = NULL, *r2 = NULL, *m2 = NULL;
    lyra_pipeline *q = load_greedy(12, &err);
    CHECK(q, "load: %s", err.msg);
    if (q) {
        lyra_pipeline_chat(q, "Tell me a story.", NULL, NULL, &r1, &err);
        lyra_pipeline_chat(q, "What happened next?", NULL, NULL, &r2, &err);
    }
    lyra_chat_message msgs[3] = {{"user", "Tell me a story."}, {"assistant", r1 ? r1 : ""},
                                 {"user", "What happened next?"}};
    rc = lyra_pipeline_chat_messages(p, msgs, 3, kw, NULL, NULL, &m2, &res, &err);
    CHECK(rc == LYRA_OK && r2 && m2 && !strcmp(m2, r2), "messages reply '%s' != turn by turn '%s'",
          m2 ? m2 : err.msg, r2 ? r2 : "");
    CHECK(res.n_prompt > 10 && res.n_reused <= 1 && res.n_gen >= 1, "messages: prompt %d reused %d gen %lld",
          res.n_prompt, res.n_reused, (long long)res.n_gen);
    free(m2);
    /* again with one more turn: the common prefix is reused */
    lyra_chat_message more[5] = {msgs[0], msgs[1], msgs[2], {"assistant", r2 ? r2 : ""}, {"user", "And then?"}};
    rc = lyra_pipeline_chat_messages(p, more, 5, kw, NULL, NULL, &m2, &res, &err);
    CHECK(rc == LYRA_OK && m2 && res.n_reused > 10, "5 messages: rc %d reused %d '%s'", rc, res.n_reused,
          m2 ? m2 : err.msg);
    free(m2);
    lyra_kwargs_free(kw);
    free(r1);
    free(r2);
    lyra_pipeline_free(q);
    /* bad message lists: LYRA_KIND_ARGUMENT naming the message */
    lyra_chat_message bad1[2] = {{"user", "a"}, {"user", "b"}};
    rc = lyra_pipeline_chat_messages(p, bad1, 2, NULL, NULL, NULL, &m2, NULL, &err);
    CHECK(rc == LYRA_ERR_INPUT && err.kind == LYRA_KIND_ARGUMENT && strstr(err.msg, "messages[1].role") && !m2,
          "user, user: %d kind %d '%s'", rc, err.kind, err.msg);
    lyra_chat_message bad2[2] = {{"system", "s"}, {"user", NULL}};
    rc = lyra_pipeline_chat_messages(p, bad2, 2, NULL, NULL, NULL, &m2, NULL, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "messages[1].content"), "NULL content: %d '%s'", rc, err.msg);
    lyra_chat_message bad3[2] = {{"user", "a"}, {"assistant", "b"}};
    rc = lyra_pipeline_chat_messages(p, bad3, 2, NULL, NULL, NULL, &m2, NULL, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "messages: ends with the assistant"), "ends with assistant: '%s'",
          err.msg);
    rc = lyra_pipeline_chat_messages(p, bad3, 0, NULL, NULL, NULL, &m2, NULL, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "messages: empty"), "no messages: '%s'", err.msg);
    /* the effective config as JSON */
    size_t need = lyra_pipeline_config(p, NULL, 0);
    char *js = malloc(need + 1);
    CHECK(js && lyra_pipeline_config(p, js, need + 1) == need && strstr(js, "\"pipeline_kwargs.max_new_tokens\"") &&
              strstr(js, "\"source\": \"default\""),
          "config json (%zu bytes): %.200s", need, js ? js : "");
    free(js);
    lyra_pipeline_free(p);
out:
    /* error kinds */
    p = lyra_load_pipeline("/nonexistent/model.gguf", NULL, NULL, NULL, &err);
    CHECK(!p && err.kind == LYRA_KIND_MODEL_NOT_FOUND, "missing model: kind %d '%s'", err.kind, err.msg);
    p = lyra_load_pipeline(g_model, "summarization", NULL, NULL, &err);
    CHECK(!p && err.kind == LYRA_KIND_ARGUMENT, "task: kind %d", err.kind);
    p = lyra_load_pipeline(g_model, NULL, "/nonexistent/cfg.json", NULL, &err);
    CHECK(!p && err.kind == LYRA_KIND_CONFIG, "missing config: kind %d '%s'", err.kind, err.msg);
    p = lyra_load_pipeline(test_shared_path("models/tok512.bin"), NULL, NULL, NULL, &err);
    CHECK(!p && err.code == LYRA_ERR_INPUT && err.kind == LYRA_KIND_MODEL, "not a GGUF: %d kind %d '%s'", err.code,
          err.kind, err.msg);
    kw = lyra_kwargs_new();
    rc = lyra_kwargs_set(kw, "max_new_tokenz", "4", &err);
    CHECK(rc && err.kind == LYRA_KIND_UNKNOWN_KEY, "unknown key: kind %d", err.kind);
    rc = lyra_kwargs_set(kw, "max_memory", "cpu=6Gb", &err);
    CHECK(rc && err.kind == LYRA_KIND_CONFIG, "6Gb: kind %d '%s'", err.kind, err.msg);
    lyra_kwargs_free(kw);
    free(greedy);
    free(seeded);
    free(stopped);
}

/* Write text to path; 0 on success. */
static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int ok = fputs(text, f) >= 0;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static void test_config(const char *tmp) {
    char path[1200], json[2400];
    snprintf(path, sizeof path, "%s/cfg.json", tmp);
    snprintf(json, sizeof json,
             "{\"model_id\": \"%s\", \"device_map\": \"auto\", \"enable_progressive_fallback\": true,\n"
             " \"pipeline_kwargs\": {\"max_new_tokens\": 5, \"do_sample\": false}}\n", g_model);
    CHECK(write_file(path, json) == 0, "write %s", path);
    char *ref5 = cli_greedy("One day", 5), *ref3 = cli_greedy("One day", 3);
    lyra_error err;
    char *text = NULL;
    lyra_pipeline *p = lyra_load_pipeline(NULL, "text-generation", path, NULL, &err);
    CHECK(p, "config by path: %s", err.msg);
    if (p && ref5) {
        int rc = lyra_pipeline_generate(p, "One day", NULL, NULL, &text, &err);
        CHECK(rc == LYRA_OK && text && !strcmp(text, ref5), "config (5 tokens, greedy): '%s' != CLI '%s'",
              text ? text : err.msg, ref5);
        free(text);
    }
    lyra_pipeline_free(p);
    /* kwargs override the file */
    lyra_kwargs *kw = lyra_kwargs_new();
    CHECK(lyra_kwargs_set(kw, "pipeline_kwargs.max_new_tokens", "3", &err) == 0, "%s", err.msg);
    p = lyra_load_pipeline(NULL, NULL, path, kw, &err);
    lyra_kwargs_free(kw);
    CHECK(p, "config + kwargs: %s", err.msg);
    if (p && ref3) {
        int rc = lyra_pipeline_generate(p, "One day", NULL, NULL, &text, &err);
        CHECK(rc == LYRA_OK && text && !strcmp(text, ref3), "kwargs (3 tokens): '%s' != CLI '%s'",
              text ? text : err.msg, ref3);
        free(text);
    }
    lyra_pipeline_free(p);
    /* a bad file: its path and JSON path in the message */
    snprintf(path, sizeof path, "%s/bad.json", tmp);
    CHECK(write_file(path, "{\"pipeline_kwargs\": {\"max_new_tokens\": \"many\"}}\n") == 0, "write %s", path);
    p = lyra_load_pipeline(g_model, NULL, path, NULL, &err);
    CHECK(!p && err.code == LYRA_ERR_INPUT && strstr(err.msg, "bad.json") &&
          strstr(err.msg, "pipeline_kwargs.max_new_tokens"), "bad config: %d '%s'", err.code, err.msg);
    /* discovery: ./config/model_config.json in the working directory */
    CHECK(mkdir("config", 0755) == 0, "mkdir config");
    CHECK(write_file("config/model_config.json", json) == 0, "write config/model_config.json");
    p = lyra_load_pipeline(NULL, NULL, NULL, NULL, &err);
    CHECK(p, "discovered config: %s", err.msg);
    if (p && ref5) {
        int rc = lyra_pipeline_generate(p, "One day", NULL, NULL, &text, &err);
        CHECK(rc == LYRA_OK && text && !strcmp(text, ref5), "discovered config: '%s' != CLI '%s'",
              text ? text : err.msg, ref5);
        free(text);
    }
    lyra_pipeline_free(p);
    remove("config/model_config.json");
    rmdir("config");
    free(ref5);
    free(ref3);
}

int main(void) {
    CHECK(LYRA_API_VERSION >= 2, "LYRA_API_VERSION %d", LYRA_API_VERSION);
    static char model[1024];
    snprintf(model, sizeof model, "%s", test_shared_path("models/stories260K.gguf"));
    g_model = model;
    g_bin = getenv("LYRA_BIN");
    if (!g_bin || access(g_bin, X_OK)) test_skip("LYRA_BIN (the lyra command) is not set");
    /* a clean environment: no config is discovered, no HF cache */
    static char tmp[1024], home[1100];
    snprintf(tmp, sizeof tmp, "%s/pipeline", test_tmp_dir());
    mkdir(tmp, 0755);
    snprintf(home, sizeof home, "%s/home", tmp);
    mkdir(home, 0755);
    setenv("HOME", home, 1);
    setenv("XDG_CONFIG_HOME", home, 1);
    unsetenv("LYRA_MODEL_CONFIG");
    unsetenv("HF_HOME");
    unsetenv("HF_HUB_CACHE");
    if (chdir(tmp)) test_skip("cannot chdir to the scratch directory");
    remove("config/model_config.json");
    rmdir("config");
    test_errors();
    test_generate();
    test_chat();
    test_config(tmp);
    test_v5();
    return test_done();
}
