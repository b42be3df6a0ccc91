/* engine.c: the engine thread, its slots and its queue (engine.h), and
 * lyra.h's lyra_engine calls on them. */
#include "gen/engine.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "gen/session.h"
#include "gen/textstream.h"

#define SRV_TOP_MAX 20 /* top_logprobs at most (request.h) */

double lyra_gen_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- requests */

lyra_engine_req *lyra_engine_req_new(void) {
    lyra_engine_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->refs = 1;
    r->max_tokens = -1;
    return r;
}

void lyra_engine_req_unref(lyra_engine_req *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left) return;
    free(r->prompt);
    for (int i = 0; i < r->n_stops; i++) free(r->stops[i]);
    free(r->text);
    free(r->sess_in);
    free(r->sess_out);
    json_decref(r->lp);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

static void req_ref(lyra_engine_req *r) {
    pthread_mutex_lock(&r->mu);
    r->refs++;
    pthread_mutex_unlock(&r->mu);
}

void lyra_engine_req_cancel(lyra_engine_req *r) {
    pthread_mutex_lock(&r->mu);
    r->cancelled = 1;
    pthread_mutex_unlock(&r->mu);
}

static int req_cancelled(lyra_engine_req *r) {
    pthread_mutex_lock(&r->mu);
    int c = r->cancelled;
    pthread_mutex_unlock(&r->mu);
    return c;
}

/* The end of r: finish reason or error; wakes the HTTP side. */
static void req_done(lyra_engine_req *r, const char *finish, int status, const char *msg) {
    pthread_mutex_lock(&r->mu);
    r->done = 1;
    r->finish = finish;
    r->err_status = status;
    if (msg) snprintf(r->err_msg, sizeof r->err_msg, "%s", msg);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* ------------------------------------------------------------------ engine */

/* One slot: a sequence of the engine's context with the tokens in its KV
 * cache and, while busy, the request it serves with its sampler,
 * detokenizer and text stream. */
typedef struct eng_slot {
    int32_t seq;               /* its sequence in the context (the slot's index) */
    int32_t *kv;               /* [n_ctx] tokens in the KV cache */
    int32_t n_kv;
    lyra_engine_req *req;              /* NULL: free */
    int32_t n_fed;             /* prompt tokens in the cache */
    lyra_sampler *s;
    lyra_detok *d;
    lyra_textstream t;
    int t_live;                /* t is initialised */
    const char *stops[LYRA_CHAT_MAX_STOPS + 8];
    int32_t *count;            /* [n_vocab] generated-token counts (penalties) */
    float *work;               /* [n_vocab] penalised logits */
    const int32_t *feed;       /* this step: tokens to evaluate */
    int32_t n_feed;
    int32_t tok;               /* this step's sampled token */
    int32_t out;               /* the batch index of its last token in the last step */
    float *saved;              /* [n_vocab] its logits when the last step ran slot by slot */
    int saved_ok;              /* saved holds them */
    double used;               /* when it last got a request (LRU among equals) */
} eng_slot;

struct lyra_engine {
    lyra_model *m;
    lyra_context *ctx;         /* one sequence per slot */
    lyra_batch batch;          /* this step's batch (arrays below) */
    int32_t *b_tok, *b_pos, *b_seq; /* [b_cap] */
    int32_t b_cap;
    int32_t n_vocab, n_ctx, n_batch;
    int n_slots;
    eng_slot *slots;
    lyra_engine_chat chat;
    pthread_t th;
    int th_live;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    lyra_engine_req **q;               /* [q_cap] ring of waiting requests */
    int q_head, q_len, q_cap;
    int stopping;              /* no new requests */
    double deadline;           /* stopping: cancel what still runs after this */
    lyra_engine_stats st;
    double tps_t0;             /* tokens/s window start */
    uint64_t tps_tok0;         /* gen_tokens then */
    int n_fallback;            /* fallback steps logged */
    const lyra_chat *rtmpl;    /* lyra_engine_submit's chat template (borrowed), or NULL */
    const char *rsys;          /* its default system prompt, or NULL */
    lyra_sampler_params def_sp;/* lyra_engine_default_request's (def_set) */
    int64_t def_max;
    int def_set;
    int abort;                 /* the grace is over: fail what still runs (engine thread) */
};

int32_t lyra_engine_n_ctx(const lyra_engine *e) { return e->n_ctx; }

static int slot_text_cb(const char *piece, size_t len, void *user) {
    lyra_engine_req *r = user;
    pthread_mutex_lock(&r->mu);
    if (r->n_text + len + 1 > r->cap_text) {
        size_t cap = r->cap_text ? r->cap_text : 256;
        while (cap < r->n_text + len + 1) cap *= 2;
        char *p = realloc(r->text, cap);
        if (!p) {
            pthread_mutex_unlock(&r->mu);
            return 1; /* out of memory: cancels the text */
        }
        r->text = p;
        r->cap_text = cap;
    }
    memcpy(r->text + r->n_text, piece, len);
    r->n_text += len;
    r->text[r->n_text] = '\0';
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (r->cb && r->cb(piece, len, r->cb_user)) lyra_engine_req_cancel(r); /* outside mu: it may read r */
    return 0;
}

/* Free the slot's request with finish reason / error. */
static void slot_finish(lyra_engine *e, eng_slot *s, const char *finish, int status, const char *msg) {
    lyra_engine_req *r = s->req;
    int stopped = s->t_live && s->t.stopped;
    if (!status && s->t_live && !s->t.stopped) {
        char buf[64];
        size_t k = lyra_detok_flush(s->d, buf, sizeof buf);
        lyra_error err;
        if (lyra_textstream_feed(&s->t, buf, k, &err) == LYRA_OK) lyra_textstream_finish(&s->t);
    } else if (!status && s->t_live) {
        lyra_textstream_finish(&s->t);
    }
    if (s->t_live) lyra_textstream_free(&s->t);
    s->t_live = 0;
    lyra_detok_free(s->d);
    s->d = NULL;
    lyra_sampler_free(s->s);
    s->s = NULL;
    for (int32_t i = r->n_prompt; i < s->n_kv; i++) s->count[s->kv[i]] = 0;
    int cancelled = req_cancelled(r);
    void *sb = NULL;
    size_t sn = 0;
    if (!status && r->keep_session && lyra_context_seq_pos(e->ctx, s->seq) == s->n_kv) {
        lyra_error err;
        if (lyra_session_write_seq(e->ctx, s->seq, s->kv, s->n_kv, NULL, NULL, 0, NULL, &sb, &sn, &err))
            lyra_log(LYRA_LOG_WARN, "engine: slot %d: its state is not kept: %s", (int)s->seq, err.msg);
    }
    pthread_mutex_lock(&r->mu);
    r->sess_out = sb;
    r->n_sess_out = sn;
    r->stop = cancelled ? LYRA_STOP_CANCELLED
              : finish && !strcmp(finish, "length") ? (s->n_kv >= e->n_ctx ? LYRA_STOP_CONTEXT : LYRA_STOP_LENGTH)
              : stopped ? LYRA_STOP_STRING : LYRA_STOP_EOG;
    pthread_mutex_unlock(&r->mu);
    req_done(r, finish, status, msg);
    pthread_mutex_lock(&e->mu);
    e->st.requests++;
    if (status) e->st.failed++;
    if (cancelled) e->st.cancelled++;
    e->st.slots_busy--;
    s->req = NULL;
    pthread_mutex_unlock(&e->mu);
    lyra_log(LYRA_LOG_DEBUG, "serve: slot %d: done (%s%s), prompt %d (cached %d), generated %d",
             (int)(s - e->slots), status ? "error: " : finish, status ? msg : "", (int)r->n_prompt,
             (int)r->n_cached, (int)r->n_gen);
    lyra_engine_req_unref(r);
    s->feed = NULL;
    s->n_feed = 0;
}

/* Longest common prefix of the slot's cache and the prompt. */
static int32_t slot_lcp(const eng_slot *s, const lyra_engine_req *r) {
    int32_t k = 0;
    while (k < s->n_kv && k < r->n_prompt && s->kv[k] == r->prompt[k]) k++;
    return k;
}

/* Restore r's session into s when it shares a longer prefix with the
 * prompt than s's cache (engine thread). */
static void slot_restore(lyra_engine *e, eng_slot *s, lyra_engine_req *r) {
    lyra_session_view v;
    lyra_error err;
    if (lyra_session_parse(r->sess_in, r->n_sess_in, "session", &v, &err) ||
        lyra_session_check(e->ctx, &v, "session", &err)) {
        lyra_log(LYRA_LOG_WARN, "engine: slot %d: the request's session is not restored: %s", (int)s->seq, err.msg);
        return;
    }
    int32_t k = 0;
    while (k < v.n_tokens && k < r->n_prompt && lyra_session_token(&v, k) == r->prompt[k]) k++;
    if (k <= slot_lcp(s, r) || v.n_tokens > e->n_ctx) return;
    /* restoring drops the context's last logits: the slots that sample
     * from them next keep a copy (as after a step run slot by slot) */
    for (int i = 0; i < e->n_slots; i++) {
        eng_slot *o = &e->slots[i];
        if (o == s || !o->req || o->saved_ok || o->n_fed < o->req->n_prompt) continue;
        const float *l = lyra_get_logits_ith(e->ctx, o->out);
        if (!o->saved) o->saved = malloc(sizeof *o->saved * (size_t)e->n_vocab);
        if (!l || !o->saved) return; /* not restored: evaluated again */
        memcpy(o->saved, l, sizeof *o->saved * (size_t)e->n_vocab);
        o->saved_ok = 1;
    }
    if (lyra_session_apply_seq(e->ctx, s->seq, NULL, &v, &err)) { /* the sequence is empty then */
        lyra_log(LYRA_LOG_WARN, "engine: slot %d: the request's session is not restored: %s", (int)s->seq, err.msg);
        lyra_context_seq_truncate(e->ctx, s->seq, 0);
        s->n_kv = 0;
        return;
    }
    for (int32_t i = 0; i < v.n_tokens; i++) s->kv[i] = lyra_session_token(&v, i);
    s->n_kv = v.n_tokens;
    r->restored = 1;
    e->st.restored++;
}

/* Give r to slot s (engine thread, e->mu held). */
static int slot_start(lyra_engine *e, eng_slot *s, lyra_engine_req *r) {
    r->slot = s->seq;
    if (r->sess_in) slot_restore(e, s, r);
    int32_t keep = slot_lcp(s, r);
    if (keep == r->n_prompt) keep--; /* the last prompt token again, for its logits */
    lyra_context_seq_truncate(e->ctx, s->seq, keep);
    keep = lyra_context_seq_pos(e->ctx, s->seq); /* less when a sliding window's ring lost the positions */
    s->n_kv = keep;
    s->n_fed = keep;
    s->req = r;
    s->used = lyra_gen_now();
    s->feed = NULL;
    s->n_feed = 0;
    r->n_cached = keep;
    s->s = lyra_sampler_new(&r->sp, e->n_vocab);
    s->d = lyra_detok_new(e->m);
    int n = 0;
    for (int i = 0; r->chat && i < e->chat.n_stops; i++) s->stops[n++] = e->chat.stops[i];
    for (int i = 0; i < r->n_stops; i++) s->stops[n++] = r->stops[i];
    lyra_error err;
    int bad = !s->s || !s->d;
    if (!bad) bad = lyra_textstream_init(&s->t, s->stops, n, r->trim, slot_text_cb, r, "serve", &err) != LYRA_OK;
    s->t_live = !bad;
    e->st.slots_busy++;
    e->st.prompt_tokens += (uint64_t)r->n_prompt;
    e->st.cached_tokens += (uint64_t)keep;
    if (bad) return -1;
    for (int32_t i = 0; i < r->n_prompt; i++) lyra_sampler_accept(s->s, r->prompt[i]);
    return 0;
}

static int is_end(const lyra_engine *e, const lyra_engine_req *r, int32_t t) {
    if (lyra_token_is_eog(e->m, t)) return 1;
    for (int i = 0; r->chat && i < e->chat.n_eot; i++)
        if (e->chat.eot[i] == t) return 1;
    return 0;
}

/* s[n] as a JSON string, each byte that is not part of valid UTF-8 as U+FFFD. */
static json_t *json_str_lossy(const char *p, size_t n) {
    char *buf = malloc(3 * n + 1);
    if (!buf) return NULL;
    size_t o = 0;
    const unsigned char *u = (const unsigned char *)p;
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        size_t k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 9;
        int ok = k != 9 && i + k < n;
        unsigned cp = k == 1 ? c & 0x1f : k == 2 ? c & 0x0f : c & 0x07;
        for (size_t j = 1; ok && j <= k; j++) {
            ok = (u[i + j] & 0xc0) == 0x80;
            cp = (cp << 6) | (u[i + j] & 0x3f);
        }
        if (ok && k) {
            unsigned min = k == 1 ? 0x80 : k == 2 ? 0x800 : 0x10000;
            ok = cp >= min && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
        }
        if (ok && (k || c != 0)) {
            memcpy(buf + o, p + i, k + 1);
            o += k + 1;
            i += k + 1;
        } else {
            memcpy(buf + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    json_t *s = json_stringn(buf, o);
    free(buf);
    return s;
}

/* {"token", "logprob", "bytes"} of token t with log-probability lp. */
static json_t *lp_item(const lyra_engine *e, int32_t t, double lp) {
    char piece[256];
    size_t n = lyra_token_to_piece(e->m, t, 1, piece, sizeof piece);
    if (n > sizeof piece) n = sizeof piece;
    json_t *bytes = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(bytes, json_integer((unsigned char)piece[i]));
    if (!isfinite(lp)) lp = -9999.0; /* JSON has no -inf; OpenAI uses -9999 too */
    return json_pack("{s:o,s:f,s:o}", "token", json_str_lossy(piece, n), "logprob", lp, "bytes", bytes);
}

/* The logprob record of token t from the raw logits (log-softmax). */
static void record_logprobs(lyra_engine *e, lyra_engine_req *r, const float *logits, int32_t t) {
    double mx = -INFINITY;
    for (int32_t i = 0; i < e->n_vocab; i++)
        if (logits[i] > mx) mx = logits[i];
    double z = 0;
    for (int32_t i = 0; i < e->n_vocab; i++) z += exp((double)logits[i] - mx);
    double lse = mx + log(z);
    json_t *item = lp_item(e, t, (double)logits[t] - lse);
    json_t *top = json_array();
    int32_t best[SRV_TOP_MAX];
    int nb = 0;
    for (int32_t i = 0; i < e->n_vocab && r->top_logprobs > 0; i++) { /* insertion into top k */
        int at = nb;
        while (at > 0 && (logits[best[at - 1]] < logits[i])) at--;
        if (at >= r->top_logprobs) continue;
        int end = nb < r->top_logprobs ? nb : r->top_logprobs - 1;
        memmove(best + at + 1, best + at, sizeof *best * (size_t)(end - at));
        best[at] = i;
        if (nb < r->top_logprobs) nb++;
    }
    for (int i = 0; i < nb; i++) json_array_append_new(top, lp_item(e, best[i], (double)logits[best[i]] - lse));
    json_object_set_new(item, "top_logprobs", top);
    pthread_mutex_lock(&r->mu);
    if (!r->lp) r->lp = json_array();
    json_array_append_new(r->lp, item);
    pthread_mutex_unlock(&r->mu);
}

/* Phase 1 for a decoding slot: sample its next token from its last logits
 * and decide whether the request ends; else feed the token. */
static void slot_decode(lyra_engine *e, eng_slot *s) {
    lyra_engine_req *r = s->req;
    if (r->max_tokens == 0) {
        slot_finish(e, s, "length", 0, NULL);
        return;
    }
    const float *logits = s->saved_ok ? s->saved : lyra_get_logits_ith(e->ctx, s->out);
    if (!logits) {
        slot_finish(e, s, NULL, 500, "no logits");
        return;
    }
    const float *use = logits;
    if (r->freq_pen != 0.0f || r->pres_pen != 0.0f) { /* OpenAI's penalties, on the completion's tokens */
        memcpy(s->work, logits, sizeof *s->work * (size_t)e->n_vocab);
        for (int32_t i = r->n_prompt; i < s->n_kv; i++) { /* each distinct token once */
            int32_t t = s->kv[i], c = s->count[t];
            if (c <= 0) continue;
            s->work[t] -= (float)c * r->freq_pen + r->pres_pen;
            s->count[t] = -c;
        }
        for (int32_t i = r->n_prompt; i < s->n_kv; i++)
            if (s->count[s->kv[i]] < 0) s->count[s->kv[i]] = -s->count[s->kv[i]];
        use = s->work;
    }
    int32_t tok = lyra_sampler_sample(s->s, use);
    lyra_sampler_accept(s->s, tok);
    if (r->logprobs) record_logprobs(e, r, logits, tok);
    if (is_end(e, r, tok)) {
        slot_finish(e, s, "stop", 0, NULL);
        return;
    }
    pthread_mutex_lock(&r->mu);
    r->n_gen++;
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_lock(&e->mu);
    e->st.gen_tokens++;
    pthread_mutex_unlock(&e->mu);
    char buf[256];
    size_t k = lyra_detok_feed(s->d, tok, buf, sizeof buf);
    lyra_error err;
    if (lyra_textstream_feed(&s->t, buf, k, &err) != LYRA_OK || s->t.cancelled) {
        slot_finish(e, s, NULL, 500, "out of memory");
        return;
    }
    if (s->t.stopped) {
        slot_finish(e, s, "stop", 0, NULL);
        return;
    }
    if ((r->max_tokens >= 0 && r->n_gen >= r->max_tokens) || s->n_kv >= e->n_ctx) {
        slot_finish(e, s, "length", 0, NULL);
        return;
    }
    s->tok = tok;
    s->feed = &s->tok;
    s->n_feed = 1;
}

/* Evaluate the feeds of act[0..n_act) as one batch (lyra_decode: one
 * forward pass per n_batch tokens over every slot's tokens); each slot's
 * last token's logits stay for its next sample. Returns lyra_decode's
 * status (err says why). */
static int eval_batch(lyra_engine *e, eng_slot **act, int n_act, lyra_error *err) {
    int32_t n = 0;
    for (int i = 0; i < n_act; i++) n += act[i]->n_feed;
    if (n > e->b_cap) {
        int32_t *t = realloc(e->b_tok, sizeof *t * (size_t)n);
        if (t) e->b_tok = t;
        int32_t *p = realloc(e->b_pos, sizeof *p * (size_t)n);
        if (p) e->b_pos = p;
        int32_t *q = realloc(e->b_seq, sizeof *q * (size_t)n);
        if (q) e->b_seq = q;
        if (!t || !p || !q) return lyra_err(err, LYRA_ERR_OOM, "serve", "out of memory");
        e->b_cap = n;
    }
    n = 0;
    for (int i = 0; i < n_act; i++) {
        eng_slot *s = act[i];
        int32_t p0 = lyra_context_seq_pos(e->ctx, s->seq);
        for (int32_t k = 0; k < s->n_feed; k++, n++) {
            e->b_tok[n] = s->feed[k];
            e->b_pos[n] = p0 + k;
            e->b_seq[n] = s->seq;
        }
        s->out = n - 1;
    }
    e->batch = (lyra_batch){n, e->b_tok, e->b_pos, e->b_seq, NULL}; /* logits: each slot's last */
    return lyra_decode(e->ctx, &e->batch, err);
}

/* Phase 2: evaluate what every slot feeds, in one batch. When that fails,
 * each slot alone (the same logits: they do not depend on the batch; each
 * slot's kept in its own copy), so the failure falls on the slot it
 * belongs to and the others go on. */
static void step_eval(lyra_engine *e, eng_slot **act, int n_act) {
    lyra_error err;
    for (int i = 0; i < n_act; i++) act[i]->saved_ok = 0;
    if (!n_act) return;
    int rc = eval_batch(e, act, n_act, &err);
    if (rc == LYRA_OK) return;
    if (n_act > 1) lyra_log(LYRA_LOG_DEBUG, "serve: a batch of %d slots: %s; slot by slot", n_act, err.msg);
    for (int i = 0; i < n_act; i++) {
        eng_slot *s = act[i];
        if (n_act > 1) {
            if (!s->saved) s->saved = malloc(sizeof *s->saved * (size_t)e->n_vocab);
            rc = s->saved ? eval_batch(e, &act[i], 1, &err)
                          : lyra_err(&err, LYRA_ERR_OOM, "serve", "out of memory");
            const float *l = rc ? NULL : lyra_get_logits_ith(e->ctx, s->out);
            if (l) {
                memcpy(s->saved, l, sizeof *s->saved * (size_t)e->n_vocab);
                s->saved_ok = 1;
                continue;
            }
            if (!rc) rc = lyra_err(&err, LYRA_ERR_RUNTIME, "serve", "no logits");
        }
        lyra_context_seq_truncate(e->ctx, s->seq, s->n_kv);
        lyra_log(LYRA_LOG_WARN, "serve: slot %d: %s", (int)(s - e->slots), err.msg);
        slot_finish(e, s, NULL, rc == LYRA_ERR_OOM ? 503 : 500,
                    rc == LYRA_ERR_OOM ? "out of memory while generating" : err.msg);
    }
}

/* One step over the active slots: how many were evaluated (*n_eval tokens). */
static int engine_step(lyra_engine *e, uint64_t *n_eval) {
    eng_slot *act[256];
    int n_act = 0;
    /* 1. plan */
    for (int i = 0; i < e->n_slots; i++) {
        eng_slot *s = &e->slots[i];
        lyra_engine_req *r = s->req;
        if (!r) continue;
        s->feed = NULL;
        s->n_feed = 0;
        if (e->abort) {
            slot_finish(e, s, NULL, 503, "the server is shutting down");
            continue;
        }
        if (req_cancelled(r)) {
            slot_finish(e, s, "stop", 0, NULL);
            continue;
        }
        if (s->n_fed < r->n_prompt) {
            int32_t n = r->n_prompt - s->n_fed;
            if (n > e->n_batch) n = e->n_batch;
            s->feed = r->prompt + s->n_fed;
            s->n_feed = n;
        } else {
            slot_decode(e, s);
        }
        if (s->req && s->n_feed) act[n_act++] = s;
    }
    /* 2. eval */
    step_eval(e, act, n_act);
    /* 3. commit */
    for (int i = 0; i < n_act; i++) {
        eng_slot *s = act[i];
        if (!s->req) continue; /* failed in eval */
        memcpy(s->kv + s->n_kv, s->feed, sizeof *s->feed * (size_t)s->n_feed);
        s->n_kv += s->n_feed;
        pthread_mutex_lock(&s->req->mu);
        s->req->n_eval += s->n_feed;
        pthread_mutex_unlock(&s->req->mu);
        *n_eval += s->n_feed;
        if (s->n_fed < s->req->n_prompt) s->n_fed += s->n_feed;
        else s->count[s->tok]++; /* a generated token */
    }
    int nf = lyra_model_fallback_steps(e->m);
    for (; e->n_fallback < nf; e->n_fallback++) {
        lyra_fallback_step fs;
        if (lyra_model_fallback_step(e->m, e->n_fallback, &fs) == LYRA_OK)
            lyra_log(LYRA_LOG_WARN, "serve: fallback while generating: out of memory on device %s, %s "
                     "layers %d -> %d", fs.device, fs.what, (int)fs.from_k, (int)fs.to_k);
    }
    return n_act;
}

/* A free slot for r: the longest common prefix, then the least recently used. */
static eng_slot *pick_slot(lyra_engine *e, const lyra_engine_req *r) {
    eng_slot *best = NULL;
    int32_t best_k = -1;
    for (int i = 0; i < e->n_slots; i++) {
        eng_slot *s = &e->slots[i];
        if (s->req) continue;
        int32_t k = slot_lcp(s, r);
        if (k > best_k || (k == best_k && s->used < best->used)) {
            best = s;
            best_k = k;
        }
    }
    return best;
}

static void *engine_main(void *arg) {
    lyra_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        /* new requests join between two steps */
        while (e->q_len > 0) {
            lyra_engine_req *r = e->q[e->q_head];
            eng_slot *s = pick_slot(e, r);
            if (!s) break;
            e->q_head = (e->q_head + 1) % e->q_cap;
            e->q_len--;
            if (slot_start(e, s, r)) {
                pthread_mutex_unlock(&e->mu);
                slot_finish(e, s, NULL, 500, "out of memory");
                pthread_mutex_lock(&e->mu);
            }
        }
        e->st.queue_depth = e->q_len;
        if (e->stopping && lyra_gen_now() > e->deadline) { /* grace over: cancel what runs */
            e->abort = 1;
            while (e->q_len > 0) {
                lyra_engine_req *r = e->q[e->q_head];
                e->q_head = (e->q_head + 1) % e->q_cap;
                e->q_len--;
                req_done(r, NULL, 503, "the server is shutting down");
                lyra_engine_req_unref(r);
            }
        }
        if (e->st.slots_busy == 0) {
            if (e->stopping && e->q_len == 0) break;
            if (e->stopping) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 50 * 1000000L;
                if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
                pthread_cond_timedwait(&e->cv, &e->mu, &ts);
            } else {
                pthread_cond_wait(&e->cv, &e->mu);
            }
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        double t0 = lyra_gen_now();
        uint64_t n_eval = 0;
        int n_act = engine_step(e, &n_eval);
        double t1 = lyra_gen_now();
        pthread_mutex_lock(&e->mu);
        e->st.steps++;
        e->st.evaluated += n_eval;
        if (n_act > 1) e->st.batched_steps++;
        if (n_act > e->st.max_batch) e->st.max_batch = n_act;
        e->st.busy_seconds += t1 - t0;
        e->st.fallback_steps = (uint64_t)e->n_fallback;
        if (t1 - e->tps_t0 >= 1.0) {
            e->st.tokens_per_second = (double)(e->st.gen_tokens - e->tps_tok0) / (t1 - e->tps_t0);
            e->tps_t0 = t1;
            e->tps_tok0 = e->st.gen_tokens;
        }
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ------------------------------------------------------------------ public */

static void engine_free(lyra_engine *e) {
    if (!e) return;
    for (int i = 0; e->slots && i < e->n_slots; i++) {
        eng_slot *s = &e->slots[i];
        if (s->req) slot_finish(e, s, NULL, 503, "the server is shutting down");
        free(s->kv);
        free(s->saved);
        free(s->count);
        free(s->work);
    }
    lyra_context_free(e->ctx);
    free(e->b_tok);
    free(e->b_pos);
    free(e->b_seq);
    free(e->slots);
    free(e->q);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

int lyra_engine_start(lyra_model *m, const lyra_context_params *cp, int n_slots, int queue_cap,
                     const lyra_engine_chat *chat, lyra_engine **out, lyra_error *err) {
    *out = NULL;
    if (n_slots < 1 || n_slots > 256) return lyra_err(err, LYRA_ERR_INPUT, "--parallel", "must be 1..256");
    lyra_engine *e = calloc(1, sizeof *e);
    if (!e) return lyra_err(err, LYRA_ERR_OOM, "serve", "out of memory");
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->m = m;
    e->chat = *chat;
    e->n_vocab = lyra_model_n_vocab(m);
    e->n_slots = n_slots;
    e->q_cap = queue_cap > 0 ? queue_cap : 1;
    e->slots = calloc((size_t)n_slots, sizeof *e->slots);
    e->q = calloc((size_t)e->q_cap, sizeof *e->q);
    if (!e->slots || !e->q) {
        engine_free(e);
        return lyra_err(err, LYRA_ERR_OOM, "serve", "out of memory");
    }
    lyra_context_params p = cp ? *cp : lyra_context_default_params();
    p.n_seq = n_slots; /* one sequence per slot, one forward pass for all */
    int rc = lyra_context_new(m, &p, &e->ctx, err);
    if (rc) {
        engine_free(e);
        return rc;
    }
    e->n_ctx = lyra_context_n_ctx(e->ctx);
    for (int i = 0; i < n_slots; i++) {
        eng_slot *s = &e->slots[i];
        s->seq = i;
        s->kv = malloc(sizeof *s->kv * (size_t)e->n_ctx);
        s->count = calloc((size_t)e->n_vocab, sizeof *s->count);
        s->work = malloc(sizeof *s->work * (size_t)e->n_vocab);
        if (!s->kv || !s->count || !s->work) {
            engine_free(e);
            return lyra_err(err, LYRA_ERR_OOM, "serve", "out of memory");
        }
    }
    e->n_batch = cp && cp->n_batch > 0 ? cp->n_batch : 512;
    if (e->n_batch > e->n_ctx) e->n_batch = e->n_ctx;
    e->st.slots = n_slots;
    e->n_fallback = lyra_model_fallback_steps(m); /* load steps are logged by the load */
    e->tps_t0 = lyra_gen_now();
    sigset_t all, old; /* the engine thread takes no signals: the front end's thread does */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int bad = pthread_create(&e->th, NULL, engine_main, e);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (bad) {
        engine_free(e);
        return lyra_err(err, LYRA_ERR_RUNTIME, "serve", "cannot start the engine thread");
    }
    e->th_live = 1;
    *out = e;
    return LYRA_OK;
}

int lyra_engine_submit_req(lyra_engine *e, lyra_engine_req *r) {
    pthread_mutex_lock(&e->mu);
    int rc = 0;
    if (e->stopping) {
        rc = 503;
    } else if (e->q_len >= e->q_cap) {
        e->st.rejected++;
        rc = 429;
    } else {
        req_ref(r);
        e->q[(e->q_head + e->q_len) % e->q_cap] = r;
        e->q_len++;
        e->st.queue_depth = e->q_len;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

void lyra_engine_stop(lyra_engine *e, double grace_s) {
    if (!e || !e->th_live) return;
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    e->deadline = lyra_gen_now() + grace_s;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->th, NULL);
    e->th_live = 0;
}

void lyra_engine_free(lyra_engine *e) {
    lyra_engine_stop(e, 0.0);
    engine_free(e);
}

void lyra_engine_get_stats(lyra_engine *e, lyra_engine_stats *out) {
    pthread_mutex_lock(&e->mu);
    *out = e->st;
    double now = lyra_gen_now();
    if (now - e->tps_t0 > 3.0) out->tokens_per_second = 0.0; /* idle */
    pthread_mutex_unlock(&e->mu);
}

/* ------------------------------------------------------- lyra.h's engine */

void lyra_engine_set_render(lyra_engine *e, const lyra_chat *tmpl, const char *system,
                            const lyra_sampler_params *sp, int64_t max_tokens) {
    e->rtmpl = tmpl;
    e->rsys = system;
    e->def_sp = *sp;
    e->def_max = max_tokens;
    e->def_set = 1;
}

lyra_engine_params lyra_engine_default_params(void) {
    lyra_engine_params p = {4, 1024};
    return p;
}

lyra_engine_request lyra_engine_default_request(const lyra_engine *e) {
    lyra_engine_request rq;
    memset(&rq, 0, sizeof rq);
    rq.sampler = e && e->def_set ? e->def_sp : lyra_sampler_default_params();
    rq.max_tokens = e && e->def_set ? e->def_max : -1;
    return rq;
}

/* The chat request's messages through the template into r->prompt. */
static int render_messages(lyra_engine *e, const lyra_engine_request *rq, lyra_engine_req *r, lyra_error *err) {
    const lyra_chat_message *m = rq->messages;
    int n = rq->n_messages;
    if (!e->rtmpl) return lyra_err(err, LYRA_ERR_INPUT, "lyra_engine_submit", "this engine has no chat template");
    int first = n > 0 && m[0].role && !strcmp(m[0].role, "system");
    for (int i = 0; i < n; i++) {
        const char *want = i < first ? "system" : (i - first) % 2 == 0 ? "user" : "assistant";
        if (!m[i].role || strcmp(m[i].role, want) || !m[i].content)
            return lyra_err(err, LYRA_ERR_INPUT, "messages",
                            "messages[%d]: expected a \"%s\" message with content (an optional system message, "
                            "then user and assistant messages alternating, ending with a user message)", i, want);
    }
    if (n <= first || (n - first) % 2 == 0)
        return lyra_err(err, LYRA_ERR_INPUT, "messages", "the last message must be the user's");
    int nt = (n - first + 1) / 2;
    lyra_chat_turn *t = calloc((size_t)nt, sizeof *t);
    if (!t) return lyra_err(err, LYRA_ERR_OOM, "lyra_engine_submit", "out of memory");
    for (int i = first, k = 0; i < n; i += 2, k++) {
        t[k].user = m[i].content;
        t[k].assistant = i + 1 < n ? m[i + 1].content : NULL;
    }
    char *text = NULL;
    size_t len = 0, np = 0;
    int rc = lyra_chat_render(e->rtmpl, first ? m[0].content : e->rsys, t, (size_t)nt, &text, &len, err);
    free(t);
    if (rc) return rc;
    size_t nb = strlen(e->rtmpl->bos);
    int add_bos = nb && len >= nb && !memcmp(text, e->rtmpl->bos, nb) ? 0 : -1;
    rc = lyra_tokenize(e->m, text, len, add_bos, 1, &r->prompt, &np, err);
    free(text);
    r->n_prompt = (int32_t)np;
    return rc;
}

int lyra_engine_submit(lyra_engine *e, const lyra_engine_request *rq, lyra_engine_req **out, lyra_error *err) {
    if (out) *out = NULL;
    if (!e || !rq || !out) return lyra_err(err, LYRA_ERR_INPUT, "lyra_engine_submit", "e, rq or out is NULL");
    int given = (rq->messages != NULL) + (rq->prompt != NULL) + (rq->tokens != NULL);
    if (given != 1)
        return lyra_err(err, LYRA_ERR_INPUT, "lyra_engine_submit", "give exactly one of messages, prompt and tokens");
    if (rq->n_stops < 0 || rq->n_stops > 8 || (rq->n_stops && !rq->stops))
        return lyra_err(err, LYRA_ERR_INPUT, "stops", "at most 8 stop strings");
    lyra_engine_req *r = lyra_engine_req_new();
    if (!r) return lyra_err(err, LYRA_ERR_OOM, "lyra_engine_submit", "out of memory");
    int rc = LYRA_OK;
    if (rq->messages) {
        rc = render_messages(e, rq, r, err);
        r->chat = r->trim = 1;
    } else if (rq->prompt) {
        size_t np = 0;
        rc = lyra_tokenize(e->m, rq->prompt, strlen(rq->prompt), -1, 0, &r->prompt, &np, err);
        r->n_prompt = (int32_t)np;
    } else {
        r->prompt = malloc(sizeof *r->prompt * (size_t)(rq->n_tokens > 0 ? rq->n_tokens : 1));
        if (!r->prompt) rc = lyra_err(err, LYRA_ERR_OOM, "lyra_engine_submit", "out of memory");
        for (int32_t i = 0; !rc && i < rq->n_tokens; i++) {
            if (rq->tokens[i] < 0 || rq->tokens[i] >= e->n_vocab)
                rc = lyra_err(err, LYRA_ERR_INPUT, "tokens", "tokens[%d]: %d is not in the vocabulary (%d tokens)", (int)i,
                              (int)rq->tokens[i], (int)e->n_vocab);
            else
                r->prompt[i] = rq->tokens[i];
        }
        r->n_prompt = rq->n_tokens;
    }
    if (!rc && r->n_prompt <= 0) rc = lyra_err(err, LYRA_ERR_INPUT, "lyra_engine_submit", "the prompt has no tokens");
    if (!rc && r->n_prompt >= e->n_ctx)
        rc = lyra_err(err, LYRA_ERR_INPUT, "lyra_engine_submit", "the prompt has %d tokens; a slot holds %d",
                      (int)r->n_prompt, (int)e->n_ctx);
    for (int i = 0; !rc && i < rq->n_stops; i++) {
        if (!rq->stops[i] || !(r->stops[i] = strdup(rq->stops[i])))
            rc = lyra_err(err, rq->stops[i] ? LYRA_ERR_OOM : LYRA_ERR_INPUT, "stops", "stops[%d]: %s", i,
                          rq->stops[i] ? "out of memory" : "NULL");
        else
            r->n_stops = i + 1;
    }
    if (!rc && rq->session && rq->session_len) {
        r->sess_in = malloc(rq->session_len);
        if (!r->sess_in) rc = lyra_err(err, LYRA_ERR_OOM, "lyra_engine_submit", "out of memory");
        else memcpy(r->sess_in, rq->session, rq->session_len);
        r->n_sess_in = rq->session_len;
    }
    if (rc) {
        lyra_engine_req_unref(r);
        return rc;
    }
    r->sp = rq->sampler;
    r->max_tokens = rq->max_tokens < 0 ? -1 : rq->max_tokens;
    r->cb = rq->cb;
    r->cb_user = rq->user;
    r->keep_session = rq->keep_session;
    r->slot = -1;
    int sub = lyra_engine_submit_req(e, r);
    if (sub) {
        lyra_engine_req_unref(r);
        return lyra_err(err, LYRA_ERR_RUNTIME, "lyra_engine_submit",
                        sub == 429 ? "the queue is full" : "the engine is stopping");
    }
    *out = r;
    return LYRA_OK;
}

int lyra_engine_req_wait(lyra_engine_req *r, size_t have, double timeout_s) {
    if (!r) return 1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (timeout_s >= 0) {
        double t = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + timeout_s;
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
    }
    pthread_mutex_lock(&r->mu);
    while (!r->done && r->n_text <= have) {
        if (timeout_s < 0) pthread_cond_wait(&r->cv, &r->mu);
        else if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT) break;
    }
    int done = r->done;
    pthread_mutex_unlock(&r->mu);
    return done;
}

size_t lyra_engine_req_text(lyra_engine_req *r, size_t offset, char *buf, size_t cap) {
    if (!r) return 0;
    pthread_mutex_lock(&r->mu);
    size_t n = r->n_text;
    if (offset < n && buf && cap) memcpy(buf, r->text + offset, n - offset < cap ? n - offset : cap);
    pthread_mutex_unlock(&r->mu);
    return n;
}

int lyra_engine_req_result(lyra_engine_req *r, lyra_engine_result *res, lyra_error *err) {
    if (!r) return lyra_err(err, LYRA_ERR_INPUT, "lyra_engine_req_result", "r is NULL");
    pthread_mutex_lock(&r->mu);
    int rc = LYRA_OK;
    if (!r->done) rc = lyra_err(err, LYRA_ERR_INPUT, "lyra_engine_req_result", "the request still runs");
    else if (r->err_status)
        rc = lyra_err(err, r->err_status == 503 && strstr(r->err_msg, "memory") ? LYRA_ERR_OOM : LYRA_ERR_RUNTIME,
                      "engine", "%s", r->err_msg);
    if (res) {
        res->n_prompt = r->n_prompt;
        res->n_cached = r->n_cached;
        res->n_gen = r->n_gen;
        res->n_evaluated = r->n_eval;
        res->stop = r->stop;
        res->restored = r->restored;
        res->slot = r->slot;
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int lyra_engine_req_session(lyra_engine_req *r, void **buf, size_t *len, lyra_error *err) {
    if (buf) *buf = NULL;
    if (len) *len = 0;
    if (!r || !buf || !len) return lyra_err(err, LYRA_ERR_INPUT, "lyra_engine_req_session", "r, buf or len is NULL");
    pthread_mutex_lock(&r->mu);
    int rc = LYRA_OK;
    if (!r->done || !r->sess_out) {
        rc = lyra_err(err, LYRA_ERR_INPUT, "lyra_engine_req_session", "no state kept (%s)",
                      !r->done ? "the request still runs" : !r->keep_session ? "keep_session was not set"
                      : r->err_status ? "the request failed" : "already taken");
    } else {
        *buf = r->sess_out;
        *len = r->n_sess_out;
        r->sess_out = NULL;
        r->n_sess_out = 0;
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void lyra_engine_req_free(lyra_engine_req *r) {
    if (!r) return;
    lyra_engine_req_cancel(r);
    lyra_engine_req_unref(r);
}
