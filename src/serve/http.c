/* http.c: `lyra serve`'s HTTP side on libmicrohttpd (serve.h): the daemon
 * (one thread per connection, idle timeout, connection and header limits),
 * routing, the bearer key, body limits, the chat template and tokenizer
 * turning a parsed request into the engine's lyra_engine_req, the answers (whole or
 * as server-sent events), /health, /metrics, /v1/models and the page at /,
 * model loading, and the graceful shutdown.
 *
 * A connection's thread waits for its request's output under the request's
 * mutex and checks, while it waits, whether the client closed its socket:
 * then the request is cancelled and the engine frees the slot at its next
 * step. */
#include "serve/serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "gen/chat.h"
#include "gen/chat_session.h"
#include "serve/oai.h"
#include "serve/request.h"
#include "gen/engine.h"

#if MHD_VERSION < 0x00097002
typedef int MHD_Result_t;
#else
typedef enum MHD_Result MHD_Result_t;
#endif

enum { SRV_LOADING = 0, SRV_READY = 1, SRV_FAILED = 2 };

typedef struct srv {
    const lyra_serve_opts *o;
    struct MHD_Daemon *d;
    pthread_mutex_t mu;          /* state, engine pointer, counters */
    int state;                   /* SRV_* */
    lyra_model *m;               /* set once loaded (read-only after) */
    lyra_engine *eng;
    lyra_engine_chat chat;
    char *tmpl_text;             /* the model's chat template text (owned) */
    const char *system;          /* default system prompt */
    char fingerprint[64];
    int64_t created;
    oai_http_counts http;
    uint64_t next_id;
    uint64_t id_salt;
} srv;

/* Per HTTP request (MHD's con_cls). */
typedef struct conn {
    char *body;
    size_t n, cap;
    int too_big;  /* the body passed max_body: answer 413 at the end */
    int answered; /* a response is queued */
} conn;

/* ---------------------------------------------------------------- replies */

static void count_status(srv *S, unsigned status) {
    pthread_mutex_lock(&S->mu);
    int i = status / 100 == 2 ? 0 : status == 400 ? 1 : status == 401 ? 2 : status == 404 ? 3
          : status == 413 ? 4 : status == 429 ? 5 : -1;
    if (i >= 0) S->http.by_status[i]++;
    else S->http.other++;
    pthread_mutex_unlock(&S->mu);
}

/* Queue body (taken: freed here) with status and content type. */
static MHD_Result_t reply(srv *S, struct MHD_Connection *c, unsigned status, char *body, const char *ctype) {
    if (!body) {
        status = 500;
        body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,"
                      "\"code\":null}}");
        if (!body) return MHD_NO;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ctype);
    if (status == 429 || status == 503) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    MHD_Result_t ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    count_status(S, status);
    return ret;
}

static MHD_Result_t reply_error(srv *S, struct MHD_Connection *c, const srv_error *e) {
    return reply(S, c, (unsigned)e->status, oai_error_text(e), "application/json");
}

static MHD_Result_t fail(srv *S, struct MHD_Connection *c, int status, const char *type, const char *code,
                         const char *msg) {
    srv_error e;
    srv_fail(&e, status, type, code, NULL, "%s", msg);
    return reply_error(S, c, &e);
}

/* ------------------------------------------------------------------ checks */

/* a == b in time independent of where they differ (and of b's content). */
static int key_equal(const char *a, size_t na, const char *b, size_t nb) {
    unsigned char d = (unsigned char)(na != nb);
    for (size_t i = 0; i < nb; i++) d |= (unsigned char)((i < na ? (unsigned char)a[i] : 0) ^ (unsigned char)b[i]);
    return d == 0;
}

static int authorized(srv *S, struct MHD_Connection *c) {
    const char *key = S->o->api_key;
    if (!key || !key[0]) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) return 0;
    h += 7;
    while (*h == ' ') h++;
    return key_equal(h, strlen(h), key, strlen(key));
}

/* 1 when the client closed its end (or the socket failed). */
static int peer_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    struct pollfd p = {ci->connect_fd, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL)) return 1;
    if (p.revents & POLLIN) {
        char ch;
        return recv(ci->connect_fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
    }
    return 0;
}

/* Wait on r->cv (r->mu held) for up to ms milliseconds. */
static void wait_ms(lyra_engine_req *r, long ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += ms * 1000000L;
    while (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
}

/* ------------------------------------------------------------- the prompt */

/* Append s[n] (and sep first when b is not empty) to the malloc'd string *b. */
static int join(char **b, const char *sep, const char *s) {
    size_t a = *b ? strlen(*b) : 0, ns = strlen(sep), n = strlen(s);
    char *p = realloc(*b, a + (a ? ns : 0) + n + 1);
    if (!p) return -1;
    if (a) memcpy(p + a, sep, ns), a += ns;
    memcpy(p + a, s, n + 1);
    *b = p;
    return 0;
}

/* The chat messages through the template: system messages (all of them,
 * joined) become the system prompt, user and assistant messages the turns
 * (consecutive ones of a role joined); a conversation ending with an
 * assistant message is continued from that text. *text malloc'd. */
static int render_chat(srv *S, const srv_request *q, char **text, size_t *len, srv_error *e) {
    char *system = NULL, *prefill = NULL;
    int n = 0, rc = -1;
    lyra_chat_turn *t = calloc((size_t)q->n_msgs + 1, sizeof *t);
    char **own = calloc(2 * (size_t)q->n_msgs + 2, sizeof *own); /* joined strings to free */
    int n_own = 0;
    if (!t || !own) goto oom;
    srv_role prev = SRV_SYSTEM;
    for (int i = 0; i < q->n_msgs; i++) {
        const srv_message *m = &q->msgs[i];
        if (m->role == SRV_SYSTEM) {
            if (join(&system, "\n\n", m->text)) goto oom;
            continue;
        }
        if (m->role == SRV_USER) {
            if (n > 0 && prev == SRV_USER) { /* joined to the turn's message */
                char *j = strdup(t[n - 1].user);
                if (!j || join(&j, "\n\n", m->text)) { free(j); goto oom; }
                own[n_own++] = j;
                t[n - 1].user = j;
            } else {
                t[n++].user = m->text;
            }
        } else {
            if (n == 0) t[n++].user = "";
            if (t[n - 1].assistant) {
                char *j = strdup(t[n - 1].assistant);
                if (!j || join(&j, "\n\n", m->text)) { free(j); goto oom; }
                own[n_own++] = j;
                t[n - 1].assistant = j;
            } else {
                t[n - 1].assistant = m->text;
            }
        }
        prev = m->role;
    }
    if (n == 0) t[n++].user = "";
    if (t[n - 1].assistant) { /* continue the last reply */
        prefill = (char *)t[n - 1].assistant;
        t[n - 1].assistant = NULL;
    }
    lyra_error err;
    const char *sys = system ? system : S->system;
    if (lyra_chat_render(&S->chat.tmpl, sys, t, (size_t)n, text, len, &err)) {
        srv_fail(e, err.code == LYRA_ERR_OOM ? 500 : 400, "invalid_request_error", NULL, "messages", "%s", err.msg);
        goto out;
    }
    if (prefill) {
        char *r = NULL;
        size_t rn = 0;
        if (lyra_chat_render_reply(&S->chat.tmpl, prefill, &r, &rn, &err)) goto oom;
        char *p = realloc(*text, *len + rn + 1);
        if (!p) { free(r); goto oom; }
        memcpy(p + *len, r, rn + 1);
        *len += rn;
        *text = p;
        free(r);
    }
    rc = 0;
    goto out;
oom:
    srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
out:
    if (rc && text && *text) { free(*text); *text = NULL; }
    for (int i = 0; own && i < n_own; i++) free(own[i]);
    free(own);
    free(t);
    free(system);
    return rc;
}

/* The engine's request for q: prompt tokens and settings. */
static int prepare(srv *S, const srv_request *q, lyra_engine_req *r, srv_error *e) {
    const lyra_serve_opts *o = S->o;
    lyra_error err;
    size_t n = 0;
    if (q->chat) {
        char *text = NULL;
        size_t len = 0;
        if (render_chat(S, q, &text, &len, e)) return -1;
        size_t nb = strlen(S->chat.tmpl.bos);
        int add_bos = nb && len >= nb && !memcmp(text, S->chat.tmpl.bos, nb) ? 0 : -1;
        int rc = lyra_tokenize(S->m, text, len, add_bos, 1, &r->prompt, &n, &err);
        free(text);
        if (rc) return srv_fail(e, rc == LYRA_ERR_OOM ? 500 : 400, "invalid_request_error", NULL, "messages", "%s", err.msg);
    } else if (q->prompt_tokens) {
        int32_t nv = lyra_model_n_vocab(S->m);
        for (int i = 0; i < q->n_prompt_tokens; i++)
            if (q->prompt_tokens[i] >= nv)
                return srv_fail(e, 400, "invalid_request_error", NULL, "prompt",
                                "'prompt[%d]': token id %d is not in the vocabulary (%d tokens)", i,
                                (int)q->prompt_tokens[i], (int)nv);
        r->prompt = malloc(sizeof *r->prompt * (size_t)q->n_prompt_tokens);
        if (!r->prompt) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        memcpy(r->prompt, q->prompt_tokens, sizeof *r->prompt * (size_t)q->n_prompt_tokens);
        n = (size_t)q->n_prompt_tokens;
    } else {
        int rc = lyra_tokenize(S->m, q->prompt, strlen(q->prompt), -1, 0, &r->prompt, &n, &err);
        if (rc) return srv_fail(e, rc == LYRA_ERR_OOM ? 500 : 400, "invalid_request_error", NULL, "prompt", "%s", err.msg);
    }
    if (n == 0) return srv_fail(e, 400, "invalid_request_error", NULL, q->chat ? "messages" : "prompt",
                                "the prompt has no tokens");
    int32_t n_ctx = lyra_engine_n_ctx(S->eng);
    if (n >= (size_t)n_ctx)
        return srv_fail(e, 400, "invalid_request_error", "context_length_exceeded", q->chat ? "messages" : "prompt",
                        "This model's maximum context length is %d tokens; the prompt has %zu tokens",
                        (int)n_ctx, n);
    r->n_prompt = (int32_t)n;
    r->chat = q->chat;
    r->trim = q->chat;
    r->max_tokens = q->max_tokens >= 0 ? q->max_tokens : o->max_tokens;
    r->sp = o->sp;
    if (q->has_temperature) r->sp.temperature = q->temperature;
    if (q->has_top_p) r->sp.top_p = q->top_p;
    if (q->has_top_k) r->sp.top_k = q->top_k;
    if (q->has_min_p) r->sp.min_p = q->min_p;
    if (q->has_rep_pen) r->sp.repeat_penalty = q->rep_pen;
    r->sp.seed = q->has_seed ? q->seed : o->seed_given ? o->sp.seed : lyra_gen_random_seed();
    r->freq_pen = q->frequency_penalty;
    r->pres_pen = q->presence_penalty;
    for (int i = 0; i < q->n_stop; i++) {
        if (!(r->stops[i] = strdup(q->stop[i]))) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        r->n_stops = i + 1;
    }
    r->logprobs = q->logprobs;
    r->top_logprobs = q->top_logprobs;
    return 0;
}

/* ---------------------------------------------------------------- streams */

typedef struct stream {
    srv *S;
    lyra_engine_req *r;
    struct MHD_Connection *c;
    oai_meta meta;
    char id[48];
    int include_usage;
    char *pend;        /* bytes to send */
    size_t pend_n, pend_off;
    size_t text_sent, lp_sent;
    int first_sent, end_sent;
} stream;

/* Append event ev[n] (taken) to st->pend. */
static int pend_add(stream *st, char *ev, size_t n) {
    if (!ev) return -1;
    char *p = realloc(st->pend, st->pend_n + n);
    if (!p) {
        free(ev);
        return -1;
    }
    memcpy(p + st->pend_n, ev, n);
    st->pend = p;
    st->pend_n += n;
    free(ev);
    return 0;
}

/* pend_add with the length the event builder just wrote into *n (its
 * argument is evaluated first). */
static int pend_ev(stream *st, char *ev, const size_t *n) { return pend_add(st, ev, ev ? *n : 0); }

/* Build the next events into st->pend; -1 when the client went away. */
static int stream_next(stream *st) {
    lyra_engine_req *r = st->r;
    size_t n = 0;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        int more = r->n_text > st->text_sent || (r->lp && json_array_size(r->lp) > st->lp_sent);
        if (more || r->done || (!st->first_sent && st->meta.chat)) break;
        wait_ms(r, 50);
        if (!r->done && !(r->n_text > st->text_sent) && peer_gone(st->c)) {
            r->cancelled = 1;
            pthread_mutex_unlock(&r->mu);
            return -1;
        }
    }
    int rc = 0;
    if (!st->first_sent && st->meta.chat) {
        rc = pend_ev(st, oai_chunk_event(&st->meta, NULL, 0, NULL, 0, 0, 1, NULL, NULL, &n), &n);
        st->first_sent = 1;
    } else if (r->n_text > st->text_sent || (r->lp && json_array_size(r->lp) > st->lp_sent)) {
        size_t lp_to = r->lp ? json_array_size(r->lp) : 0;
        rc = pend_ev(st, oai_chunk_event(&st->meta, r->text + st->text_sent, r->n_text - st->text_sent, r->lp,
                                          st->lp_sent, lp_to, 0, NULL, NULL, &n), &n);
        st->text_sent = r->n_text;
        st->lp_sent = lp_to;
    } else { /* done */
        if (r->err_status) {
            srv_error e;
            srv_fail(&e, r->err_status, r->err_status == 503 ? "server_error" : "server_error", NULL, NULL, "%s",
                     r->err_msg);
            rc = pend_ev(st, oai_error_event(&e, &n), &n);
        } else {
            rc = pend_ev(st, oai_chunk_event(&st->meta, NULL, 0, NULL, 0, 0, 0, r->finish, NULL, &n), &n);
            if (!rc && st->include_usage) {
                oai_usage u = {r->n_prompt, r->n_gen, r->n_cached};
                rc = pend_ev(st, oai_chunk_event(&st->meta, NULL, 0, NULL, 0, 0, 0, NULL, &u, &n), &n);
            }
        }
        if (!rc) rc = pend_add(st, strdup("data: [DONE]\n\n"), 14);
        st->end_sent = 1;
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream *st = cls;
    while (st->pend_off == st->pend_n) {
        free(st->pend);
        st->pend = NULL;
        st->pend_n = st->pend_off = 0;
        if (st->end_sent) return MHD_CONTENT_READER_END_OF_STREAM;
        if (stream_next(st)) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t k = st->pend_n - st->pend_off;
    if (k > max) k = max;
    memcpy(buf, st->pend + st->pend_off, k);
    st->pend_off += k;
    return (ssize_t)k;
}

static void stream_free(void *cls) {
    stream *st = cls;
    lyra_engine_req_cancel(st->r); /* a no-op once it is done */
    lyra_engine_req_unref(st->r);
    free(st->pend);
    free(st);
}

/* ------------------------------------------------------------ completions */

static MHD_Result_t handle_completion(srv *S, struct MHD_Connection *c, conn *cn, int chat) {
    srv_request q;
    srv_error e;
    if (srv_request_parse(cn->body ? cn->body : "", cn->n, chat, &q, &e)) {
        srv_request_free(&q);
        return reply_error(S, c, &e);
    }
    pthread_mutex_lock(&S->mu);
    int state = S->state;
    uint64_t id = ++S->next_id;
    pthread_mutex_unlock(&S->mu);
    const char *mid = S->o->model_id;
    if (q.model && q.model[0] && strcmp(q.model, mid) && strcmp(q.model, S->o->model_path)) {
        srv_fail(&e, 404, "invalid_request_error", "model_not_found", "model",
                 "The model '%.200s' does not exist (this server has '%.200s')", q.model, mid);
        srv_request_free(&q);
        return reply_error(S, c, &e);
    }
    if (state != SRV_READY) {
        srv_request_free(&q);
        return fail(S, c, 503, "server_error", NULL, state == SRV_LOADING ? "the model is loading" : "the model failed to load");
    }
    lyra_engine_req *r = lyra_engine_req_new();
    if (!r) {
        srv_request_free(&q);
        return fail(S, c, 500, "server_error", NULL, "out of memory");
    }
    int rc = prepare(S, &q, r, &e);
    int stream_on = q.stream, usage = q.include_usage;
    srv_request_free(&q);
    if (rc) {
        lyra_engine_req_unref(r);
        return reply_error(S, c, &e);
    }
    int sub = lyra_engine_submit_req(S->eng, r);
    if (sub) {
        lyra_engine_req_unref(r);
        return fail(S, c, sub, sub == 429 ? "rate_limit_error" : "server_error", sub == 429 ? "queue_full" : NULL,
                    sub == 429 ? "the server is busy: too many requests are waiting (--queue); retry later"
                               : "the server is shutting down");
    }
    oai_meta meta = {chat, NULL, (int64_t)time(NULL), mid, S->fingerprint};
    char idbuf[48];
    snprintf(idbuf, sizeof idbuf, "%s-%016llx%08llx", chat ? "chatcmpl" : "cmpl",
             (unsigned long long)S->id_salt, (unsigned long long)id);
    meta.id = idbuf;
    if (stream_on) {
        stream *st = calloc(1, sizeof *st);
        if (!st) {
            lyra_engine_req_cancel(r);
            lyra_engine_req_unref(r);
            return fail(S, c, 500, "server_error", NULL, "out of memory");
        }
        st->S = S;
        st->r = r;
        st->c = c;
        st->meta = meta;
        snprintf(st->id, sizeof st->id, "%s", idbuf);
        st->meta.id = st->id;
        st->include_usage = usage;
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st,
                                                                      stream_free);
        if (!resp) {
            stream_free(st);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        MHD_Result_t ret = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        count_status(S, 200);
        return ret;
    }
    pthread_mutex_lock(&r->mu);
    while (!r->done) {
        wait_ms(r, 50);
        if (!r->done && peer_gone(c)) {
            r->cancelled = 1;
            break;
        }
    }
    int done = r->done;
    pthread_mutex_unlock(&r->mu);
    if (!done) { /* the client went away: no answer */
        lyra_engine_req_unref(r);
        return MHD_NO;
    }
    MHD_Result_t ret;
    if (r->err_status) {
        ret = fail(S, c, r->err_status, "server_error", NULL, r->err_msg);
    } else {
        oai_usage u = {r->n_prompt, r->n_gen, r->n_cached};
        ret = reply(S, c, 200, oai_completion_text(&meta, r->text, r->n_text, r->finish, r->logprobs ? r->lp : NULL, &u),
                    "application/json");
    }
    lyra_engine_req_unref(r);
    return ret;
}

/* ------------------------------------------------------------------ routes */

static MHD_Result_t handle_health(srv *S, struct MHD_Connection *c) {
    pthread_mutex_lock(&S->mu);
    int st = S->state;
    pthread_mutex_unlock(&S->mu);
    const char *body = st == SRV_READY ? "{\"status\":\"ok\"}" : st == SRV_LOADING ? "{\"status\":\"loading\"}"
                                                                                   : "{\"status\":\"error\"}";
    return reply(S, c, st == SRV_READY ? 200 : 503, strdup(body), "application/json");
}

static MHD_Result_t handle_metrics(srv *S, struct MHD_Connection *c) {
    lyra_engine_stats st;
    memset(&st, 0, sizeof st);
    pthread_mutex_lock(&S->mu);
    lyra_engine *eng = S->eng;
    int loaded = S->state == SRV_READY;
    oai_http_counts h = S->http;
    pthread_mutex_unlock(&S->mu);
    if (eng) lyra_engine_get_stats(eng, &st);
    return reply(S, c, 200, oai_metrics_text(&st, &h, loaded), "text/plain; version=0.0.4");
}

/* Which route: 1 chat, 2 completions, 3 models, 4 health, 5 metrics, 6 page; 0 none. */
static int route(const char *url) {
    if (!strcmp(url, "/v1/chat/completions") || !strcmp(url, "/chat/completions")) return 1;
    if (!strcmp(url, "/v1/completions") || !strcmp(url, "/completions")) return 2;
    if (!strcmp(url, "/v1/models") || !strcmp(url, "/models")) return 3;
    if (!strcmp(url, "/health") || !strcmp(url, "/v1/health")) return 4;
    if (!strcmp(url, "/metrics")) return 5;
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) return 6;
    return 0;
}

static MHD_Result_t on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    srv *S = cls;
    conn *cn = *con_cls;
    int rt = route(url);
    int post = !strcmp(method, "POST");
    if (!cn) { /* headers are in: early answers before any body is read */
        cn = calloc(1, sizeof *cn);
        if (!cn) return MHD_NO;
        *con_cls = cn;
        if (rt == 0) {
            cn->answered = 1;
            srv_error e;
            srv_fail(&e, 404, "invalid_request_error", "unknown_url", NULL, "Unknown request URL: %s %.200s",
                     method, url);
            return reply_error(S, c, &e);
        }
        if ((rt <= 2) != post || (!post && strcmp(method, "GET") && strcmp(method, "HEAD"))) {
            cn->answered = 1;
            return fail(S, c, 405, "invalid_request_error", "method_not_allowed",
                        rt <= 2 ? "use POST for this URL" : "use GET for this URL");
        }
        if ((rt <= 3 || rt == 5) && !authorized(S, c)) {
            cn->answered = 1;
            return fail(S, c, 401, "authentication_error", "invalid_api_key",
                        "Incorrect API key provided (Authorization: Bearer KEY; see --api-key)");
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > S->o->max_body) {
            cn->answered = 1;
            srv_error e;
            srv_fail(&e, 413, "invalid_request_error", "request_too_large", NULL,
                     "the request body is larger than %zu bytes (--max-body)", S->o->max_body);
            return reply_error(S, c, &e);
        }
        return MHD_YES;
    }
    if (*upload_size) { /* a piece of the body */
        if (!cn->answered && !cn->too_big) {
            if (cn->n + *upload_size > S->o->max_body) {
                cn->too_big = 1;
                free(cn->body);
                cn->body = NULL;
                cn->n = 0;
            } else {
                if (cn->n + *upload_size + 1 > cn->cap) {
                    size_t cap = cn->cap ? cn->cap : 4096;
                    while (cap < cn->n + *upload_size + 1) cap *= 2;
                    char *p = realloc(cn->body, cap);
                    if (!p) return MHD_NO;
                    cn->body = p;
                    cn->cap = cap;
                }
                memcpy(cn->body + cn->n, upload, *upload_size);
                cn->n += *upload_size;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cn->answered) return MHD_YES;
    cn->answered = 1;
    if (cn->too_big) {
        srv_error e;
        srv_fail(&e, 413, "invalid_request_error", "request_too_large", NULL,
                 "the request body is larger than %zu bytes (--max-body)", S->o->max_body);
        return reply_error(S, c, &e);
    }
    switch (rt) {
    case 1:
    case 2:
        return handle_completion(S, c, cn, rt == 1);
    case 3:
        return reply(S, c, 200, oai_models_text(S->o->model_id, S->created), "application/json");
    case 4:
        return handle_health(S, c);
    case 5:
        return handle_metrics(S, c);
    default: {
        struct MHD_Response *r = MHD_create_response_from_buffer(lyra_serve_page_len, (void *)lyra_serve_page,
                                                                 MHD_RESPMEM_PERSISTENT);
        if (!r) return MHD_NO;
        MHD_add_response_header(r, "Content-Type", "text/html; charset=utf-8");
        MHD_add_response_header(r, "Content-Security-Policy",
                                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'");
        MHD_Result_t ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        count_status(S, 200);
        return ret;
    }
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    conn *cn = *con_cls;
    if (!cn) return;
    free(cn->body);
    free(cn);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    lyra_log(LYRA_LOG_DEBUG, "serve: http: %s", line);
}

/* ------------------------------------------------------------------- run */

static int loopback(const struct sockaddr *a) {
    if (a->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
    if (a->sa_family == AF_INET6) {
        const struct in6_addr *x = &((const struct sockaddr_in6 *)a)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(x);
    }
    return 0;
}

/* The chat template and the texts and tokens that end a reply. */
static int setup_chat(srv *S, lyra_error *err) {
    const lyra_serve_opts *o = S->o;
    lyra_chat_kind kind;
    int64_t tl = lyra_model_chat_template(S->m, NULL, 0);
    size_t tlen = 0;
    if (tl > 0 && (S->tmpl_text = malloc((size_t)tl + 1))) {
        lyra_model_chat_template(S->m, S->tmpl_text, (size_t)tl + 1);
        tlen = (size_t)tl;
    }
    if (o->chat_template && strcmp(o->chat_template, "auto")) {
        if (lyra_chat_kind_from_name(o->chat_template, &kind))
            return lyra_err(err, LYRA_ERR_INPUT, "--chat-template", "unknown template '%s' (expected %s)",
                            o->chat_template, LYRA_CHAT_NAMES);
    } else {
        int known = 0;
        kind = lyra_chat_detect(S->tmpl_text, tlen, &known);
        if (!known) /* the architecture's usual format (Qwen chatml, Gemma, Phi) */
            kind = lyra_chat_for_arch(lyra_model_arch(S->m), &known);
        if (!known)
            lyra_log(LYRA_LOG_WARN, "serve: %s; chat requests use plain User:/Assistant: turns "
                     "(--chat-template NAME to choose: %s)",
                     S->tmpl_text ? "the model's chat template is not one lyra knows"
                                  : "the model has no chat template (tokenizer.chat_template)", LYRA_CHAT_NAMES);
    }
    char bos[128] = "", eos[128] = "";
    int32_t b = lyra_token_bos(S->m), e = lyra_token_eos(S->m);
    size_t nb = b >= 0 ? lyra_token_text(S->m, b, bos, sizeof bos - 1) : 0;
    size_t ne = e >= 0 ? lyra_token_text(S->m, e, eos, sizeof eos - 1) : 0;
    bos[nb < sizeof bos ? nb : 0] = '\0';
    eos[ne < sizeof eos ? ne : 0] = '\0';
    lyra_chat_init(&S->chat.tmpl, kind, bos, eos, S->tmpl_text, tlen);
    S->chat.n_stops = lyra_chat_stops(&S->chat.tmpl, S->chat.stops);
    for (int i = 0; i < S->chat.n_stops; i++) {
        int32_t id = lyra_token_find(S->m, S->chat.stops[i], strlen(S->chat.stops[i]));
        if (id >= 0) S->chat.eot[S->chat.n_eot++] = id;
    }
    lyra_log(LYRA_LOG_INFO, "serve: chat template %s", lyra_chat_kind_name(kind));
    return LYRA_OK;
}

int lyra_serve_run(const lyra_serve_opts *o, lyra_error *err) {
    srv S;
    memset(&S, 0, sizeof S);
    S.o = o;
    pthread_mutex_init(&S.mu, NULL);
    S.created = (int64_t)time(NULL);
    S.system = o->system_prompt && o->system_prompt[0] ? o->system_prompt : NULL;
    S.id_salt = lyra_gen_random_seed() & 0xffffffffffffffffull;
    snprintf(S.fingerprint, sizeof S.fingerprint, "lyra-%s", lyra_version());
    int rc = LYRA_OK;

    /* the address */
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", o->port);
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gai = getaddrinfo(o->host, portstr, &hints, &ai);
    if (gai || !ai) {
        rc = lyra_err(err, LYRA_ERR_INPUT, "--host", "cannot resolve '%s': %s", o->host, gai_strerror(gai));
        goto out;
    }
    if (!loopback(ai->ai_addr) && !(o->api_key && o->api_key[0]))
        lyra_log(LYRA_LOG_WARN, "serve: listening on %s, which is not a loopback address, without an API key: "
                 "anyone who can reach it can use the model (--api-key KEY or LYRA_API_KEY)", o->host);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | MHD_USE_POLL;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    S.d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, &S, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                           MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->timeout_s, MHD_OPTION_CONNECTION_LIMIT,
                           (unsigned)o->max_conns, MHD_OPTION_CONNECTION_MEMORY_LIMIT, o->max_header,
                           MHD_OPTION_NOTIFY_COMPLETED, on_completed, &S, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, &S,
                           MHD_OPTION_THREAD_STACK_SIZE, (size_t)(1u << 20), MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!S.d) {
        rc = lyra_err(err, LYRA_ERR_RUNTIME, "serve", "cannot listen on %s port %d: %s", o->host, o->port,
                      strerror(errno ? errno : EADDRINUSE));
        goto out;
    }
    int port = o->port;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(S.d, MHD_DAEMON_INFO_BIND_PORT);
    if (di) port = di->port;
    lyra_log(LYRA_LOG_INFO, "serve: listening on http://%s%s%s:%d/ (loading the model)",
             strchr(o->host, ':') ? "[" : "", o->host, strchr(o->host, ':') ? "]" : "", port);

    /* the model and the engine */
    lyra_model *m = NULL;
    rc = lyra_model_open(o->model_path, &o->mp, &m, err);
    if (!rc) {
        S.m = m;
        rc = setup_chat(&S, err);
    }
    lyra_engine *eng = NULL;
    if (!rc) rc = lyra_engine_start(m, &o->cp, o->parallel, o->queue, &S.chat, &eng, err);
    pthread_mutex_lock(&S.mu);
    S.eng = eng;
    S.state = rc ? SRV_FAILED : SRV_READY;
    pthread_mutex_unlock(&S.mu);
    if (!rc) {
        lyra_log(LYRA_LOG_INFO, "serve: model %s ready: %d slots of %d positions, queue %d", o->model_id,
                 o->parallel, (int)lyra_engine_n_ctx(eng), o->queue);
        while (!*o->stop) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
        lyra_log(LYRA_LOG_INFO, "serve: shutting down");
    }
    /* stop accepting, let what runs finish (or fail it after the grace),
     * close the connections, then free */
    MHD_socket ls = MHD_quiesce_daemon(S.d);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    lyra_engine_stop(eng, o->grace_s);
    MHD_stop_daemon(S.d);
    lyra_engine_free(eng);
    lyra_model_free(m);
out:
    free(S.tmpl_text);
    pthread_mutex_destroy(&S.mu);
    return rc;
}
