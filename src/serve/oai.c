/* oai.c: OpenAI-shaped JSON and the /metrics text (oai.h). */
#include "serve/oai.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* json_dumps with the body's flags; NULL on failure. */
static char *dump(json_t *o) {
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return s;
}

static json_t *nullable_str(const char *s) { return s && s[0] ? json_string(s) : json_null(); }

char *oai_error_text(const srv_error *e) {
    json_t *o = json_pack("{s:{s:s,s:s,s:o,s:o}}", "error", "message", e->message, "type",
                          e->type ? e->type : "invalid_request_error", "param", nullable_str(e->param),
                          "code", nullable_str(e->code));
    char *s = dump(o);
    if (!s) s = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                       "\"param\":null,\"code\":null}}");
    return s;
}

char *oai_error_event(const srv_error *e, size_t *len) {
    char *body = oai_error_text(e);
    if (!body) return NULL;
    size_t n = strlen(body) + 9;
    char *s = malloc(n);
    if (s) *len = (size_t)snprintf(s, n, "data: %s\n\n", body);
    free(body);
    return s;
}

static json_t *usage_json(const oai_usage *u) {
    return json_pack("{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", (json_int_t)u->prompt, "completion_tokens",
                     (json_int_t)u->completion, "total_tokens", (json_int_t)(u->prompt + u->completion),
                     "prompt_tokens_details", "cached_tokens", (json_int_t)u->cached);
}

/* Logprobs of items lp[from..to): chat {"content": [...]}, completions the
 * legacy {tokens, token_logprobs, top_logprobs, text_offset}; text_base is
 * the text offset of the first item (completions). */
static json_t *logprobs_json(int chat, json_t *lp, size_t from, size_t to, size_t *text_base) {
    if (!lp) return json_null();
    if (chat) {
        json_t *content = json_array();
        for (size_t i = from; i < to; i++) json_array_append(content, json_array_get(lp, i));
        return json_pack("{s:o,s:n}", "content", content, "refusal");
    }
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    for (size_t i = from; i < to; i++) {
        json_t *it = json_array_get(lp, i), *top = json_object(), *alt;
        size_t k;
        json_array_append(tokens, json_object_get(it, "token"));
        json_array_append(lps, json_object_get(it, "logprob"));
        json_array_foreach(json_object_get(it, "top_logprobs"), k, alt)
            json_object_set(top, json_string_value(json_object_get(alt, "token")), json_object_get(alt, "logprob"));
        json_array_append_new(tops, top);
        json_array_append_new(offs, json_integer((json_int_t)*text_base));
        *text_base += json_string_length(json_object_get(it, "token"));
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops,
                     "text_offset", offs);
}

char *oai_completion_text(const oai_meta *m, const char *text, size_t n_text, const char *finish,
                          json_t *lp, const oai_usage *u) {
    size_t base = 0;
    json_t *choice;
    if (m->chat)
        choice = json_pack("{s:i,s:{s:s,s:s%,s:n},s:o,s:s}", "index", 0, "message", "role", "assistant",
                           "content", text ? text : "", n_text, "refusal", "logprobs",
                           logprobs_json(1, lp, 0, json_array_size(lp), &base), "finish_reason", finish);
    else
        choice = json_pack("{s:s%,s:i,s:o,s:s}", "text", text ? text : "", n_text, "index", 0, "logprobs",
                           logprobs_json(0, lp, 0, json_array_size(lp), &base), "finish_reason", finish);
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:s,s:[o],s:o}", "id", m->id, "object",
                          m->chat ? "chat.completion" : "text_completion", "created", (json_int_t)m->created,
                          "model", m->model, "system_fingerprint", m->fingerprint, "choices", choice,
                          "usage", usage_json(u));
    return dump(o);
}

char *oai_chunk_event(const oai_meta *m, const char *text, size_t n_text, json_t *lp, size_t lp_from,
                      size_t lp_to, int first, const char *finish, const oai_usage *u, size_t *len) {
    json_t *choices = json_array();
    if (!u) {
        size_t base = 0;
        json_t *lpj = lp && lp_to > lp_from ? logprobs_json(m->chat, lp, lp_from, lp_to, &base) : json_null();
        json_t *choice;
        if (m->chat) {
            json_t *delta = json_object();
            if (first) json_object_set_new(delta, "role", json_string("assistant"));
            if (text || first) json_object_set_new(delta, "content", json_stringn(text ? text : "", n_text));
            choice = json_pack("{s:i,s:o,s:o,s:o}", "index", 0, "delta", delta, "logprobs", lpj,
                               "finish_reason", finish ? json_string(finish) : json_null());
        } else {
            choice = json_pack("{s:s%,s:i,s:o,s:o}", "text", text ? text : "", text ? n_text : 0, "index", 0,
                               "logprobs", lpj, "finish_reason", finish ? json_string(finish) : json_null());
        }
        json_array_append_new(choices, choice);
    }
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:s,s:o}", "id", m->id, "object",
                          m->chat ? "chat.completion.chunk" : "text_completion", "created",
                          (json_int_t)m->created, "model", m->model, "system_fingerprint", m->fingerprint,
                          "choices", choices);
    if (o && u) json_object_set_new(o, "usage", usage_json(u));
    else if (o && m->chat) json_object_set_new(o, "usage", json_null());
    char *body = dump(o);
    if (!body) return NULL;
    size_t n = strlen(body) + 9;
    char *s = malloc(n);
    if (s) *len = (size_t)snprintf(s, n, "data: %s\n\n", body);
    free(body);
    return s;
}

char *oai_models_text(const char *model, int64_t created) {
    json_t *o = json_pack("{s:s,s:[{s:s,s:s,s:I,s:s}]}", "object", "list", "data", "id", model, "object",
                          "model", "created", (json_int_t)created, "owned_by", "lyra");
    return dump(o);
}

/* Append printf text to the growing buffer b (n used, cap allocated). */
static void put(char **b, size_t *n, size_t *cap, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
#include <stdarg.h>
static void put(char **b, size_t *n, size_t *cap, const char *fmt, ...) {
    if (!*b) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(*b + *n, *cap - *n, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if ((size_t)k < *cap - *n) {
            *n += (size_t)k;
            return;
        }
        char *nb = realloc(*b, *cap * 2);
        if (!nb) {
            free(*b);
            *b = NULL;
            return;
        }
        *b = nb;
        *cap *= 2;
    }
}

static void metric(char **b, size_t *n, size_t *cap, const char *name, const char *type, const char *help,
                   double v) {
    put(b, n, cap, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

char *oai_metrics_text(const lyra_engine_stats *s, const oai_http_counts *h, int loaded) {
    size_t n = 0, cap = 4096;
    char *b = malloc(cap);
    if (b) b[0] = '\0';
    metric(&b, &n, &cap, "lyra_model_loaded", "gauge", "1 once the model is loaded", loaded);
    metric(&b, &n, &cap, "lyra_requests_total", "counter", "completion requests finished", (double)s->requests);
    metric(&b, &n, &cap, "lyra_requests_failed_total", "counter", "completion requests that failed",
           (double)s->failed);
    metric(&b, &n, &cap, "lyra_requests_cancelled_total", "counter",
           "completion requests whose client went away", (double)s->cancelled);
    metric(&b, &n, &cap, "lyra_requests_rejected_total", "counter", "requests refused: queue full",
           (double)s->rejected);
    metric(&b, &n, &cap, "lyra_prompt_tokens_total", "counter", "prompt tokens of started requests",
           (double)s->prompt_tokens);
    metric(&b, &n, &cap, "lyra_prompt_tokens_cached_total", "counter",
           "prompt tokens reused from a slot's KV cache", (double)s->cached_tokens);
    metric(&b, &n, &cap, "lyra_generated_tokens_total", "counter", "tokens generated", (double)s->gen_tokens);
    metric(&b, &n, &cap, "lyra_tokens_per_second", "gauge", "generated tokens per second, last seconds",
           s->tokens_per_second);
    metric(&b, &n, &cap, "lyra_queue_depth", "gauge", "requests waiting for a slot", s->queue_depth);
    metric(&b, &n, &cap, "lyra_slots_busy", "gauge", "slots serving a request", s->slots_busy);
    metric(&b, &n, &cap, "lyra_slots", "gauge", "slots (--parallel)", s->slots);
    metric(&b, &n, &cap, "lyra_engine_steps_total", "counter", "engine steps", (double)s->steps);
    metric(&b, &n, &cap, "lyra_engine_busy_seconds_total", "counter", "seconds spent in engine steps",
           s->busy_seconds);
    metric(&b, &n, &cap, "lyra_fallback_steps_total", "counter",
           "progressive fallback steps (load and generation)", (double)s->fallback_steps);
    static const char *codes[6] = {"2xx", "400", "401", "404", "413", "429"};
    put(&b, &n, &cap, "# HELP lyra_http_responses_total HTTP responses by status\n"
                      "# TYPE lyra_http_responses_total counter\n");
    for (int i = 0; i < 6; i++)
        put(&b, &n, &cap, "lyra_http_responses_total{code=\"%s\"} %llu\n", codes[i],
            (unsigned long long)h->by_status[i]);
    put(&b, &n, &cap, "lyra_http_responses_total{code=\"other\"} %llu\n", (unsigned long long)h->other);
    return b;
}
