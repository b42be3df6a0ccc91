/* request.c: OpenAI request bodies -> srv_request (request.h). */
#include "serve/request.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int srv_fail(srv_error *e, int status, const char *type, const char *code, const char *param,
             const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

#define BAD(e, param, ...) srv_fail((e), 400, "invalid_request_error", NULL, (param), __VA_ARGS__)

int srv_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) { i++; continue; }
        size_t k;
        unsigned min, cp;
        if ((c & 0xe0) == 0xc0) { k = 1; min = 0x80; cp = c & 0x1f; }
        else if ((c & 0xf0) == 0xe0) { k = 2; min = 0x800; cp = c & 0x0f; }
        else if ((c & 0xf8) == 0xf0) { k = 3; min = 0x10000; cp = c & 0x07; }
        else return 0;
        if (n - i <= k) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += k + 1;
    }
    return 1;
}

/* Deepest [ / { nesting of the JSON text (outside strings); stops counting
 * past limit. */
static int json_depth(const char *s, size_t n, int limit) {
    int d = 0, max = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++d > max && (max = d) > limit) return max;
        } else if (c == ']' || c == '}') {
            d--;
        }
    }
    return max;
}

static char *dupn(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* An optional number field in [lo, hi]: 0 absent (or null), 1 set, -1 error. */
static int get_num(json_t *o, const char *key, double lo, double hi, double *out, srv_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return BAD(e, key, "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return BAD(e, key, "'%s' must be between %g and %g, got %g", key, lo, hi, x);
    *out = x;
    return 1;
}

/* An optional integer field in [lo, hi]. */
static int get_int(json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out, srv_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return BAD(e, key, "'%s' must be an integer", key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return BAD(e, key, "'%s' must be between %lld and %lld, got %lld", key, (long long)lo,
                   (long long)hi, (long long)x);
    *out = x;
    return 1;
}

static int get_bool(json_t *o, const char *key, int *out, srv_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return BAD(e, key, "'%s' must be a boolean", key);
    *out = json_is_true(v);
    return 1;
}

/* Message content: a string, or an array of {"type": "text", "text": S} parts
 * (joined). */
static int get_content(json_t *c, int i, char **out, srv_error *e) {
    char param[64];
    snprintf(param, sizeof param, "messages[%d].content", i);
    if (!c || json_is_null(c)) {
        *out = dupn("", 0);
        return *out ? 0 : srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (json_is_string(c)) {
        *out = dupn(json_string_value(c), json_string_length(c));
        return *out ? 0 : srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (!json_is_array(c)) return BAD(e, param, "'%s' must be a string or an array of text parts", param);
    size_t total = 0, k;
    json_t *part;
    json_array_foreach(c, k, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) || strcmp(json_string_value(type), "text"))
            return BAD(e, param, "'%s[%zu]': only parts of type \"text\" are supported", param, k);
        if (!json_is_string(text)) return BAD(e, param, "'%s[%zu].text' must be a string", param, k);
        total += json_string_length(text);
    }
    char *s = malloc(total + 1);
    if (!s) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    size_t at = 0;
    json_array_foreach(c, k, part) {
        json_t *text = json_object_get(part, "text");
        memcpy(s + at, json_string_value(text), json_string_length(text));
        at += json_string_length(text);
    }
    s[at] = '\0';
    *out = s;
    return 0;
}

static int parse_messages(json_t *o, srv_request *r, srv_error *e) {
    json_t *m = json_object_get(o, "messages");
    if (!m) return BAD(e, "messages", "'messages' is required");
    if (!json_is_array(m)) return BAD(e, "messages", "'messages' must be an array");
    size_t n = json_array_size(m);
    if (n == 0) return BAD(e, "messages", "'messages' must have at least one message");
    if (n > 100000) return BAD(e, "messages", "'messages' has too many entries");
    r->msgs = calloc(n, sizeof *r->msgs);
    if (!r->msgs) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *msg = json_array_get(m, i), *role = json_object_get(msg, "role");
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(msg)) return BAD(e, param, "'%s' must be an object", param);
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!json_is_string(role)) return BAD(e, param, "'%s' must be a string", param);
        const char *rs = json_string_value(role);
        srv_role ro;
        if (!strcmp(rs, "system") || !strcmp(rs, "developer")) ro = SRV_SYSTEM;
        else if (!strcmp(rs, "user")) ro = SRV_USER;
        else if (!strcmp(rs, "assistant")) ro = SRV_ASSISTANT;
        else
            return BAD(e, param, "'%s': unsupported role '%.32s' (system, developer, user or assistant)",
                       param, rs);
        r->msgs[i].role = ro;
        r->n_msgs = (int)i + 1;
        if (get_content(json_object_get(msg, "content"), (int)i, &r->msgs[i].text, e)) return -1;
    }
    return 0;
}

static int parse_prompt(json_t *o, srv_request *r, srv_error *e) {
    json_t *p = json_object_get(o, "prompt");
    if (!p) return BAD(e, "prompt", "'prompt' is required");
    if (json_is_string(p)) {
        r->prompt = dupn(json_string_value(p), json_string_length(p));
        return r->prompt ? 0 : srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (!json_is_array(p)) return BAD(e, "prompt", "'prompt' must be a string, [string] or [token ids]");
    size_t n = json_array_size(p);
    if (n == 1 && json_is_string(json_array_get(p, 0))) {
        json_t *s = json_array_get(p, 0);
        r->prompt = dupn(json_string_value(s), json_string_length(s));
        return r->prompt ? 0 : srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (n == 0) return BAD(e, "prompt", "'prompt' must not be empty");
    if (n > (1u << 24)) return BAD(e, "prompt", "'prompt' has too many tokens");
    r->prompt_tokens = malloc(sizeof *r->prompt_tokens * n);
    if (!r->prompt_tokens) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(p, i);
        if (json_is_string(t)) return BAD(e, "prompt", "'prompt': one prompt per request (n = 1)");
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > INT32_MAX)
            return BAD(e, "prompt", "'prompt[%zu]' must be a token id (integer >= 0)", i);
        r->prompt_tokens[i] = (int32_t)json_integer_value(t);
    }
    r->n_prompt_tokens = (int)n;
    return 0;
}

static int parse_stop(json_t *o, srv_request *r, srv_error *e) {
    json_t *s = json_object_get(o, "stop");
    if (!s || json_is_null(s)) return 0;
    json_t *one[1] = {s};
    size_t n = 1;
    if (json_is_array(s)) {
        n = json_array_size(s);
        if (n > SRV_MAX_STOPS) return BAD(e, "stop", "'stop' has at most %d strings", SRV_MAX_STOPS);
    } else if (!json_is_string(s)) {
        return BAD(e, "stop", "'stop' must be a string or an array of strings");
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_is_array(s) ? json_array_get(s, i) : one[0];
        if (!json_is_string(v)) return BAD(e, "stop", "'stop[%zu]' must be a string", i);
        if (json_string_length(v) == 0) continue; /* an empty stop string stops nothing */
        if (json_string_length(v) > 1024) return BAD(e, "stop", "'stop[%zu]' is longer than 1024 bytes", i);
        r->stop[r->n_stop] = dupn(json_string_value(v), json_string_length(v));
        if (!r->stop[r->n_stop++]) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    return 0;
}

/* Fields OpenAI has that lyra does not do: an error when set to something
 * that would change the answer. */
static int unsupported(json_t *o, srv_error *e) {
    static const char *keys[] = {"tools", "functions", "tool_choice", "function_call", "suffix"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *v = json_object_get(o, keys[i]);
        if (v && !json_is_null(v) && !(json_is_array(v) && json_array_size(v) == 0) &&
            !(json_is_string(v) && (!strcmp(json_string_value(v), "none") || !json_string_length(v))))
            return BAD(e, keys[i], "'%s' is not supported by lyra", keys[i]);
    }
    json_t *rf = json_object_get(o, "response_format");
    if (rf && !json_is_null(rf)) {
        json_t *t = json_object_get(rf, "type");
        if (!json_is_object(rf) || !json_is_string(t) || strcmp(json_string_value(t), "text"))
            return BAD(e, "response_format", "'response_format': only {\"type\": \"text\"} is supported");
    }
    return 0;
}

int srv_request_parse(const char *body, size_t len, int chat, srv_request *r, srv_error *e) {
    memset(r, 0, sizeof *r);
    r->chat = chat;
    r->max_tokens = -1;
    if (!srv_utf8_valid(body, len))
        return BAD(e, NULL, "the request body is not valid UTF-8");
    if (json_depth(body, len, SRV_MAX_DEPTH) > SRV_MAX_DEPTH)
        return BAD(e, NULL, "the request body nests deeper than %d levels", SRV_MAX_DEPTH);
    json_error_t je;
    json_t *o = json_loadb(body, len, 0, &je);
    if (!o) return BAD(e, NULL, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    int rc = -1;
    if (!json_is_object(o)) {
        BAD(e, NULL, "the request body must be a JSON object");
        goto out;
    }
    json_t *model = json_object_get(o, "model");
    if (model && !json_is_null(model)) {
        if (!json_is_string(model)) {
            BAD(e, "model", "'model' must be a string");
            goto out;
        }
        r->model = dupn(json_string_value(model), json_string_length(model));
        if (!r->model) {
            srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
            goto out;
        }
    }
    if (chat ? parse_messages(o, r, e) : parse_prompt(o, r, e)) goto out;
    if (unsupported(o, e) || parse_stop(o, r, e)) goto out;
    double d;
    int64_t i;
    int k;
    const double big = 1e300;
    if ((k = get_int(o, "max_tokens", 0, INT32_MAX, &i, e)) < 0) goto out;
    if (k) r->max_tokens = i;
    if ((k = get_int(o, "max_completion_tokens", 0, INT32_MAX, &i, e)) < 0) goto out;
    if (k) r->max_tokens = i;
    if ((k = get_int(o, "n", 1, 1, &i, e)) < 0) {
        BAD(e, "n", "'n' must be 1 (lyra returns one choice)");
        goto out;
    }
    if ((k = get_num(o, "temperature", 0, 2, &d, e)) < 0) goto out;
    if ((r->has_temperature = k)) r->temperature = (float)d;
    if ((k = get_num(o, "top_p", 0, 1, &d, e)) < 0) goto out;
    if ((r->has_top_p = k)) r->top_p = (float)d;
    if ((k = get_num(o, "min_p", 0, 1, &d, e)) < 0) goto out;
    if ((r->has_min_p = k)) r->min_p = (float)d;
    if ((k = get_int(o, "top_k", 0, INT32_MAX, &i, e)) < 0) goto out;
    if ((r->has_top_k = k)) r->top_k = (int32_t)i;
    if ((k = get_num(o, "frequency_penalty", -2, 2, &d, e)) < 0) goto out;
    if (k) r->frequency_penalty = (float)d;
    if ((k = get_num(o, "presence_penalty", -2, 2, &d, e)) < 0) goto out;
    if (k) r->presence_penalty = (float)d;
    if ((k = get_num(o, "repetition_penalty", 0, big, &d, e)) < 0) goto out;
    if (k && !(d > 0 && d <= 100)) {
        BAD(e, "repetition_penalty", "'repetition_penalty' must be > 0 and <= 100, got %g", d);
        goto out;
    }
    if ((r->has_rep_pen = k)) r->rep_pen = (float)d;
    json_t *seed = json_object_get(o, "seed");
    if (seed && !json_is_null(seed)) {
        if (!json_is_integer(seed)) {
            BAD(e, "seed", "'seed' must be an integer");
            goto out;
        }
        r->has_seed = 1;
        r->seed = (uint64_t)json_integer_value(seed); /* negative seeds wrap, as two's complement */
    }
    if (get_bool(o, "stream", &r->stream, e) < 0) goto out;
    json_t *so = json_object_get(o, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) {
            BAD(e, "stream_options", "'stream_options' must be an object");
            goto out;
        }
        if (get_bool(so, "include_usage", &r->include_usage, e) < 0) {
            snprintf(e->param, sizeof e->param, "stream_options.include_usage");
            goto out;
        }
    }
    if (chat) {
        if (get_bool(o, "logprobs", &r->logprobs, e) < 0) goto out;
        if ((k = get_int(o, "top_logprobs", 0, SRV_MAX_TOP_LOGPROBS, &i, e)) < 0) goto out;
        if (k) {
            if (!r->logprobs) {
                BAD(e, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
                goto out;
            }
            r->top_logprobs = (int)i;
        }
    } else {
        if ((k = get_int(o, "logprobs", 0, 5, &i, e)) < 0) goto out;
        if (k) {
            r->logprobs = 1;
            r->top_logprobs = (int)i;
        }
        int echo = 0;
        if (get_bool(o, "echo", &echo, e) < 0) goto out;
        if (echo) {
            BAD(e, "echo", "'echo' is not supported by lyra");
            goto out;
        }
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

void srv_request_free(srv_request *r) {
    free(r->model);
    for (int i = 0; i < r->n_msgs; i++) free(r->msgs[i].text);
    free(r->msgs);
    free(r->prompt);
    free(r->prompt_tokens);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}
