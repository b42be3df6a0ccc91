/* request.h: the body of an OpenAI request (POST /v1/chat/completions and
 * /v1/completions) parsed and checked into a srv_request, without the model:
 * JSON (jansson) -> typed fields with OpenAI's ranges, or an OpenAI-shaped
 * error (HTTP status, message naming the field, type, param, code). Bodies
 * come from the network: every field is checked, nesting is bounded before
 * jansson sees the text, strings are valid UTF-8 (jansson checks), nothing
 * here allocates more than a small multiple of the body. The fuzz target
 * fuzz/fuzz_serve_request.c drives srv_request_parse. */
#ifndef LYRA_SERVE_REQUEST_H
#define LYRA_SERVE_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define SRV_MAX_STOPS 4        /* OpenAI's limit on `stop` */
#define SRV_MAX_TOP_LOGPROBS 20
#define SRV_MAX_DEPTH 32       /* JSON nesting a request may have */

/* An error for the client: status and OpenAI's error object. */
typedef struct srv_error {
    int status;         /* HTTP status: 400, 401, 404, 413, 429, 500, 503 */
    const char *type;   /* "invalid_request_error", "authentication_error", ... */
    const char *code;   /* OpenAI's code ("model_not_found", ...) or NULL */
    char param[64];     /* the field at fault, "" for none */
    char message[512];  /* one line */
} srv_error;

/* Fill e; returns -1 (so that parsers can `return srv_fail(...)`). */
int srv_fail(srv_error *e, int status, const char *type, const char *code, const char *param,
             const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

/* One chat message, flattened: role and text (content parts joined). */
typedef enum srv_role { SRV_SYSTEM = 0, SRV_USER, SRV_ASSISTANT } srv_role;
typedef struct srv_message {
    srv_role role;
    char *text; /* malloc'd, valid UTF-8 */
} srv_message;

/* A parsed request. Absent optional numbers have their has_* flag 0. */
typedef struct srv_request {
    int chat;                  /* 1: /v1/chat/completions, 0: /v1/completions */
    char *model;               /* "model", NULL when absent (malloc'd) */
    srv_message *msgs;         /* chat: [n_msgs] messages */
    int n_msgs;
    char *prompt;              /* completions: the prompt text (malloc'd), or NULL */
    int32_t *prompt_tokens;    /* completions: a prompt given as token ids, or NULL */
    int n_prompt_tokens;
    int64_t max_tokens;        /* max_tokens / max_completion_tokens, -1 = not given */
    int has_temperature, has_top_p, has_top_k, has_min_p, has_rep_pen, has_seed;
    float temperature, top_p, min_p, rep_pen;
    int32_t top_k;
    float frequency_penalty, presence_penalty; /* 0 = off */
    uint64_t seed;
    char *stop[SRV_MAX_STOPS]; /* malloc'd */
    int n_stop;
    int stream;                /* "stream": true */
    int include_usage;         /* stream_options.include_usage */
    int logprobs;              /* chat: logprobs true; completions: logprobs N >= 0 given */
    int top_logprobs;          /* alternatives per token, 0..20 */
} srv_request;

/* Parse body[len] for the chat (chat = 1) or completions endpoint into r
 * (zeroed first; free with srv_request_free also on failure). 0, or -1 with
 * e filled (status 400 for anything wrong in the body). */
int srv_request_parse(const char *body, size_t len, int chat, srv_request *r, srv_error *e);
void srv_request_free(srv_request *r);

/* 1 when s[n] is valid UTF-8 (no overlongs, surrogates or bytes > U+10FFFF). */
int srv_utf8_valid(const char *s, size_t n);

#endif
