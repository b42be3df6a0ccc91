/* chat_session.h: one conversation with a model, shared by `lyra chat`
 * (src/app/cmd_chat.c) and the pipeline API (src/gen/pipeline.c): the
 * model, its context and sampler, the chat template and the texts and
 * tokens that end a reply, the turns kept, and the tokens in the KV cache.
 *
 * A turn: lyra_chat_session_ask (the user's message), lyra_chat_session_fit
 * (render the conversation with the template and tokenize, dropping the
 * oldest turns while it and the room for the reply do not fit the context;
 * the system prompt is always kept), lyra_chat_session_eval (evaluate what is
 * not in the KV cache already: the common prefix is reused), then
 * lyra_chat_session_generate (sample until an end-of-turn token, a stop
 * string, the token limit, a full context, a cancel or an interrupt; the
 * text goes through a lyra_textstream) and lyra_chat_session_answer (the
 * reply kept for the next turns). Messages about what happened (dropped
 * turns, counts, a full context) are the caller's: the functions report
 * numbers. The plain-prompt generation of the pipeline uses the same
 * eval/generate functions. */
#ifndef LYRA_CHAT_SESSION_H
#define LYRA_CHAT_SESSION_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "gen/chat.h"
#include "gen/textstream.h"
#include "lyra.h"

typedef struct lyra_chat_session {
    lyra_model *m;                    /* the model (owned) */
    lyra_context *ctx;                /* its context, the KV cache (owned) */
    lyra_sampler *s;                  /* the sampler, reset at each reply (owned) */
    lyra_chat tmpl;                   /* the chat template */
    char *template_text;              /* the model's tokenizer.chat_template (owned),
                                         NULL: none or empty */
    size_t template_len;              /* its length */
    const char **stops;               /* [n_stops] texts that end a reply: the template's
                                         n_tmpl_stops first, then the caller's (malloc'd
                                         array; the caller's strings are borrowed) */
    int n_stops;                      /* their count */
    int n_tmpl_stops;                 /* how many of them are the template's */
    int32_t eot[LYRA_CHAT_MAX_STOPS]; /* token ids whose text is a template stop text */
    int n_eot;                        /* their count */
    const char *system;               /* system prompt, NULL = none (borrowed) */
    char **user;                      /* [n_turns] the users' messages (owned) */
    char **reply;                     /* [n_turns] the replies as generated (owned; NULL
                                         while asked) */
    int n_turns;                      /* turns kept */
    int cap_turns;                    /* allocated */
    int32_t *kv;                      /* [n_ctx] the tokens in the KV cache */
    int32_t n_kv;                     /* their count (= the context's position) */
    int32_t n_ctx;                    /* context size */
    uint64_t n_evaluated;             /* tokens evaluated since the open (prompts' new
                                         tokens, generated tokens fed back) */
} lyra_chat_session;

/* How lyra_chat_session_generate samples. */
typedef struct lyra_gen_opts {
    int64_t max_tokens;                    /* tokens at most, -1 = no limit */
    int chat;                              /* 1: the template's end-of-turn tokens end it too */
    int lstrip;                            /* drop one leading space of the text (BOS alone
                                              as the prompt of a SentencePiece model) */
    volatile sig_atomic_t *interrupt;      /* non-zero (e.g. set by Ctrl-C) stops it; may be NULL */
    const char *where;                     /* WHERE of its error messages ("chat", ...) */
} lyra_gen_opts;

/* What lyra_chat_session_generate did. */
typedef struct lyra_gen_result {
    int64_t n_gen;     /* tokens generated (the end-of-turn token not counted) */
    int full;          /* it stopped at a full context */
    int interrupted;   /* opts.interrupt stopped it */
} lyra_gen_result;

/* A random sampling seed (/dev/urandom, else the clock). */
uint64_t lyra_gen_random_seed(void);
/* 1 when the tokenizer puts a space before the first word (SentencePiece's
 * dummy prefix): the piece of "a"'s first token starts with ' '. Text
 * generated from BOS alone drops that one leading space. */
int lyra_gen_space_prefix(const lyra_model *m);

/* Zero cs, open the model at path and a context for it; cs owns both (also
 * on an error: lyra_chat_session_free). where: WHERE of out-of-memory. */
int lyra_chat_session_open(lyra_chat_session *cs, const char *path, const lyra_model_params *mp,
                           const lyra_context_params *cp, const char *where, lyra_error *err);

/* The sampler (sp->seed as given). */
int lyra_chat_session_sampler(lyra_chat_session *cs, const lyra_sampler_params *sp, const char *where,
                              lyra_error *err);

/* The format the model's tokenizer.chat_template names (lyra_chat_detect,
 * *known = 1), else its architecture's usual one (lyra_chat_for_arch, *known
 * = 2), else plain (*known = 0); *has: the model has such a string. */
lyra_chat_kind lyra_chat_session_detect(const lyra_chat_session *cs, int *known, int *has);

/* Set up the template kind with the model's BOS/EOS texts; the texts that
 * end a reply are the template's then stop[n_stop] (borrowed). */
int lyra_chat_session_template(lyra_chat_session *cs, lyra_chat_kind kind, const char *const *stop,
                               int n_stop, const char *where, lyra_error *err);

/* The same with a Jinja template (lyra_chat_init_jinja): path NULL: the
 * model's tokenizer.chat_template (there must be one), else the template
 * file at path. A template that does not parse is LYRA_ERR_INPUT naming the
 * line (the session keeps no template then). */
int lyra_chat_session_template_jinja(lyra_chat_session *cs, const char *path, const char *const *stop,
                                     int n_stop, const char *where, lyra_error *err);

/* 1 when a chat_template value names a Jinja template file rather than a
 * format: it has a '/' or ends in .jinja or .j2. */
int lyra_chat_template_is_file(const char *value);

void lyra_chat_session_free(lyra_chat_session *cs);

/* Forget turns [0, k). */
void lyra_chat_session_drop(lyra_chat_session *cs, int k);

/* A new turn asking text (copied). */
int lyra_chat_session_ask(lyra_chat_session *cs, const char *text, lyra_error *err);

/* Forget the last turn's message (it was not answered). */
void lyra_chat_session_unask(lyra_chat_session *cs);

/* The tokens of the prompt for the last turn (*toks malloc'd), BOS added as
 * the model says unless the text starts with it. While the prompt and the
 * room for the reply (n_predict >= 0: that, else a quarter of the context;
 * at most half) do not fit, the oldest turns are dropped: *dropped says how
 * many. *fits 0 (nothing allocated, no turn dropped, *n the tokens of the
 * last turn alone) when even the last turn alone does not fit the context. */
int lyra_chat_session_fit(lyra_chat_session *cs, int64_t n_predict, int32_t **toks, size_t *n,
                          int *dropped, int *fits, lyra_error *err);

/* Evaluate toks[n] (n >= 1): keep_prefix 1: only what is not in the KV
 * cache already (*kept tokens reused), 0: all of it from an empty cache. */
int lyra_chat_session_eval(lyra_chat_session *cs, const int32_t *toks, size_t n, int keep_prefix,
                           int32_t *kept, lyra_error *err);

/* Sample from the prompt in the cache (the sampler's repetition window
 * holds the cache's tokens) into t until an end-of-generation token (chat:
 * or a template end-of-turn token), a stop string, max_tokens, a full
 * context, a cancel from t's callback or an interrupt; the decoder's tail
 * is flushed into t unless a stop string ended it, and t is finished. */
int lyra_chat_session_generate(lyra_chat_session *cs, lyra_textstream *t, const lyra_gen_opts *o,
                               lyra_gen_result *res, lyra_error *err);

/* Keep reply (malloc'd, now owned by cs) as the last turn's answer. */
void lyra_chat_session_answer(lyra_chat_session *cs, char *reply);

#endif
