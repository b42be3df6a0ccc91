/* engine.h: the engine (lyra.h's lyra_engine, docs/api.md; `lyra serve`
 * runs on it): N slots on one model, a bounded queue, and one engine thread
 * running continuous batching at the step level.
 *
 * The engine has one lyra_context of N sequences; a slot is one sequence
 * (its own KV cache) with the tokens in that cache, a sampler, a
 * detokenizer and a text stream. A step (engine.c, engine_step) has three
 * phases:
 *   1. plan: every active slot decides what it feeds: a chunk of its prompt,
 *      or (its prompt done) the token it samples now from its last logits;
 *      finished and cancelled slots are freed here;
 *   2. eval: what the slots feed is evaluated as one batch (step_eval: one
 *      lyra_decode over every slot's tokens, each weight read once per
 *      forward pass; slot by slot only after a failure, so that it falls on
 *      its own slot);
 *   3. commit: the fed tokens join each slot's cache record.
 * Between two steps new requests leave the queue for free slots (the slot
 * whose cache shares the longest prefix with the prompt: its KV is kept up
 * to that prefix), so a request joins the running batch at the next step,
 * and a cancelled request (a client that went away) frees its slot at the
 * next step. Each request has its own sampler seeded from its seed, and a
 * sequence's logits do not depend on the batch (lyra_decode), so a
 * request's tokens do not depend on what else runs.
 *
 * Sessions: a request may bring a session (a slot's state saved at the end
 * of an earlier one, gen/session.h, any sequence); when its tokens share a
 * longer prefix with the prompt than the slot's cache does, it is restored
 * into the slot's sequence before the prompt is fed. A request with
 * keep_session exports its slot's state when it ends (engine thread).
 *
 * Threads: front-end threads (the server's HTTP threads, callers of
 * lyra_engine_submit) create requests (lyra_engine_req_new), submit them
 * and read their output under the request's mutex; the engine thread alone
 * touches the model and the slots. The engine's mutex guards the queue, the
 * counters and the slots' request pointers. */
#ifndef LYRA_GEN_ENGINE_H
#define LYRA_GEN_ENGINE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "gen/chat.h"
#include "lyra.h"

/* One request as the engine sees it (lyra.h's opaque lyra_engine_req).
 * Refcounted: the front end and the engine each hold a reference while
 * they use it. */
struct lyra_engine_req {
    /* set before lyra_engine_submit_req, then read-only */
    int chat;                  /* chat template stops apply */
    int32_t *prompt;           /* [n_prompt] tokens (owned) */
    int32_t n_prompt;
    int64_t max_tokens;        /* -1: until an end token or a full context */
    lyra_sampler_params sp;    /* sampler settings, seed included */
    float freq_pen, pres_pen;  /* OpenAI's frequency / presence penalties */
    char *stops[8];            /* the request's stop strings (owned) */
    int n_stops;
    int logprobs;              /* 1: record the logprob of each token */
    int top_logprobs;          /* alternatives per token */
    int trim;                  /* chat: no white space at either end of the text */
    /* output, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;         /* signalled on new text, logprobs and at the end */
    char *text;                /* [n_text] the text decided so far (owned) */
    size_t n_text, cap_text;
    json_t *lp;                /* array of {token, logprob, bytes, top_logprobs}, or NULL */
    int done;                  /* finished: finish / err_* are final */
    const char *finish;        /* "stop" or "length" */
    int err_status;            /* non-zero: the request failed with this HTTP status */
    char err_msg[256];
    int32_t n_cached;          /* prompt tokens found in the slot's cache */
    int32_t n_gen;             /* tokens generated */
    int cancelled;             /* set by the HTTP side: the client went away */
    int refs;
    /* API version 8 (lyra_engine_submit): set before submitting */
    lyra_token_cb cb;          /* also called with each piece (engine thread), or NULL */
    void *cb_user;
    unsigned char *sess_in;    /* [n_sess_in] a session to restore (owned), or NULL */
    size_t n_sess_in;
    int keep_session;          /* export the slot's state at the end */
    /* output, under mu */
    void *sess_out;            /* [n_sess_out] the slot's state at the end (owned) */
    size_t n_sess_out;
    int restored;              /* sess_in was restored */
    int64_t n_eval;            /* tokens evaluated for it */
    int stop;                  /* lyra_stop_reason */
    int32_t slot;              /* its slot */
};

lyra_engine_req *lyra_engine_req_new(void); /* one reference; NULL when out of memory */
void lyra_engine_req_unref(lyra_engine_req *r);
/* The front end gives up on r (client gone): the engine frees the slot. */
void lyra_engine_req_cancel(lyra_engine_req *r);

/* The model's chat setup that rendering and the engine share. */
typedef struct lyra_engine_chat {
    lyra_chat tmpl;                        /* the chat template */
    const char *stops[LYRA_CHAT_MAX_STOPS];/* its stop texts */
    int n_stops;
    int32_t eot[LYRA_CHAT_MAX_STOPS];      /* tokens whose text is a stop text */
    int n_eot;
} lyra_engine_chat;

/* Start the engine on model m (borrowed; outlives the engine): a context
 * with cp of n_slots sequences, a queue of at most queue_cap waiting requests. */
int lyra_engine_start(lyra_model *m, const lyra_context_params *cp, int n_slots, int queue_cap,
                     const lyra_engine_chat *chat, lyra_engine **out, lyra_error *err);
/* Queue r (takes a reference). 0, 429 when the queue is full, 503 when the
 * engine stops. */
int lyra_engine_submit_req(lyra_engine *e, lyra_engine_req *r);
/* Stop: no new requests (submit answers 503); running and queued ones get
 * grace_s seconds to finish, then fail with 503; joins the thread. Stats
 * and submit stay valid until lyra_engine_free. */
void lyra_engine_stop(lyra_engine *e, double grace_s);
void lyra_engine_free(lyra_engine *e); /* stops (no grace) if not stopped; NULL ok */
void lyra_engine_get_stats(lyra_engine *e, lyra_engine_stats *out);
/* Context size of a slot (a prompt must be shorter). */
int32_t lyra_engine_n_ctx(const lyra_engine *e);

/* The template and system prompt lyra_engine_submit renders chat requests
 * with (borrowed; outlive e), and lyra_engine_default_request's settings. */
void lyra_engine_set_render(lyra_engine *e, const lyra_chat *tmpl, const char *system,
                            const lyra_sampler_params *sp, int64_t max_tokens);

/* Monotonic seconds. */
double lyra_gen_now(void);

#endif
