/* oai.h: the JSON the server sends, in OpenAI's shapes: errors, whole
 * completions (chat.completion, text_completion), streamed chunks
 * (chat.completion.chunk, text_completion) as server-sent events, usage,
 * the model list; and the Prometheus text of /metrics. Pure functions of
 * their arguments (no model, no engine). */
#ifndef LYRA_SERVE_OAI_H
#define LYRA_SERVE_OAI_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "serve/request.h"
#include "gen/engine.h"

/* What the responses of one request share. */
typedef struct oai_meta {
    int chat;                 /* chat.completion vs text_completion */
    const char *id;           /* "chatcmpl-..." / "cmpl-..." */
    int64_t created;          /* Unix seconds */
    const char *model;        /* the model's id */
    const char *fingerprint;  /* system_fingerprint */
} oai_meta;

/* Token counts of usage. */
typedef struct oai_usage {
    int32_t prompt, completion, cached;
} oai_usage;

/* {"error": {"message", "type", "param", "code"}} as text (malloc'd). */
char *oai_error_text(const srv_error *e);

/* The whole answer: text, finish reason, logprob items (the engine's array of
 * {token, logprob, bytes, top_logprobs}; NULL: logprobs null), usage. */
char *oai_completion_text(const oai_meta *m, const char *text, size_t n_text, const char *finish,
                          json_t *lp, const oai_usage *u);

/* One SSE event "data: {chunk}\n\n" (malloc'd, *len its length): a delta of
 * text (NULL: none), logprob items lp[from..to) (lp NULL: none), first (the
 * chat's role delta), finish (NULL while running), usage (NULL: none, else
 * the usage chunk with empty choices). */
char *oai_chunk_event(const oai_meta *m, const char *text, size_t n_text, json_t *lp, size_t lp_from,
                      size_t lp_to, int first, const char *finish, const oai_usage *u, size_t *len);

/* "data: {"error": ...}\n\n" for a stream that fails midway. */
char *oai_error_event(const srv_error *e, size_t *len);

/* GET /v1/models. */
char *oai_models_text(const char *model, int64_t created);

/* Server-wide HTTP counters for /metrics. */
typedef struct oai_http_counts {
    uint64_t by_status[6]; /* 2xx, 400, 401, 404, 413, 429 */
    uint64_t other;        /* other statuses (405, 500, 503, ...) */
} oai_http_counts;

/* The Prometheus text of /metrics (malloc'd). */
char *oai_metrics_text(const lyra_engine_stats *s, const oai_http_counts *h, int loaded);

#endif
