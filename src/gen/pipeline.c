/* pipeline.c: the one-call C API (include/lyra.h, docs/api.md):
 * lyra_load_pipeline resolves a model and its settings from a config file
 * (src/config/config.h) and keyword arguments, opens the model and a
 * context; lyra_pipeline_generate continues a plain prompt (the same tokens
 * and sampling as `lyra generate`), lyra_pipeline_chat answers one chat turn
 * with the model's template, keeping the conversation in the KV cache so a
 * turn evaluates only its new tokens (as `lyra chat` does). Generated text
 * goes to a callback piece by piece (complete UTF-8, stop strings held back
 * until decided); a non-zero return from it cancels. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "config/model_ref.h"
#include "core/log.h"
#include "gen/chat.h"
#include "lyra.h"
#include "runtime/runtime.h"

#define PIPE_MAX_STOPS 64 /* stop strings of the config plus the template's */

/* ----------------------------------------------------------------- kwargs */

/* Keyword arguments: (key, value) pairs in the order set, already valid. */
struct lyra_kwargs {
    lyra_config *check; /* a scratch config the pairs are validated against */
    char **key;         /* [n] key names as given (owned) */
    char **val;         /* [n] values as given (owned) */
    int n;              /* pairs set */
    int cap;            /* allocated */
};

lyra_kwargs *lyra_kwargs_new(void) {
    lyra_kwargs *kw = calloc(1, sizeof *kw);
    if (!kw) return NULL;
    kw->check = lyra_config_new();
    if (!kw->check) {
        free(kw);
        return NULL;
    }
    return kw;
}

void lyra_kwargs_free(lyra_kwargs *kw) {
    if (!kw) return;
    for (int i = 0; i < kw->n; i++) {
        free(kw->key[i]);
        free(kw->val[i]);
    }
    free(kw->key);
    free(kw->val);
    lyra_config_free(kw->check);
    free(kw);
}

int lyra_kwargs_set(lyra_kwargs *kw, const char *key, const char *value, lyra_error *err) {
    if (!kw) return lyra_err(err, LYRA_ERR_INPUT, "lyra_kwargs_set", "kw is NULL");
    if (!key) return lyra_err(err, LYRA_ERR_INPUT, "lyra_kwargs_set", "key is NULL");
    if (kw->n == kw->cap) {
        int cap = kw->cap ? 2 * kw->cap : 8;
        char **k = realloc(kw->key, sizeof *k * (size_t)cap);
        if (k) kw->key = k;
        char **v = k ? realloc(kw->val, sizeof *v * (size_t)cap) : NULL;
        if (!v) return lyra_err(err, LYRA_ERR_OOM, key, "out of memory");
        kw->val = v;
        kw->cap = cap;
    }
    /* validation (and, for the same key again, the config's replace/append) */
    int rc = lyra_config_set(kw->check, key, value, "api", NULL, err);
    if (rc) return rc;
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return lyra_err(err, LYRA_ERR_OOM, key, "out of memory");
    }
    kw->key[kw->n] = k;
    kw->val[kw->n] = v;
    kw->n++;
    return LYRA_OK;
}

/* --------------------------------------------------------------- pipeline */

struct lyra_pipeline {
    lyra_config *cfg;                  /* the effective configuration */
    lyra_config_gen gen;               /* max_new_tokens, stop, system prompt (into cfg) */
    lyra_model *m;                     /* the model */
    lyra_context *ctx;                 /* its context (KV cache) */
    lyra_sampler *s;                   /* the sampler, reset at each call */
    lyra_chat tmpl;                    /* the chat template */
    const char *chat_stops[LYRA_CHAT_MAX_STOPS]; /* texts that end a reply (the template's) */
    int n_chat_stops;                  /* their count */
    int32_t eot[LYRA_CHAT_MAX_STOPS];  /* token ids whose text is a template stop */
    int n_eot;                         /* their count */
    char **user;                       /* [n_turns] the users' messages (owned) */
    char **reply;                      /* [n_turns] the replies (owned; NULL while asked) */
    int n_turns;                       /* chat turns kept */
    int cap_turns;                     /* allocated */
    int32_t *kv;                       /* [n_ctx] the tokens in the KV cache */
    int32_t n_kv;                      /* their count (= the context's position) */
    int32_t n_ctx;                     /* context size */
};

lyra_model *lyra_pipeline_model(lyra_pipeline *p) { return p ? p->m : NULL; }
lyra_context *lyra_pipeline_context(lyra_pipeline *p) { return p ? p->ctx : NULL; }

/* Forget chat turns [0, k). */
static void drop_turns(lyra_pipeline *p, int k) {
    for (int i = 0; i < k; i++) {
        free(p->user[i]);
        free(p->reply[i]);
    }
    memmove(p->user, p->user + k, sizeof *p->user * (size_t)(p->n_turns - k));
    memmove(p->reply, p->reply + k, sizeof *p->reply * (size_t)(p->n_turns - k));
    p->n_turns -= k;
}

void lyra_pipeline_reset(lyra_pipeline *p) {
    if (!p) return;
    drop_turns(p, p->n_turns);
    lyra_context_truncate(p->ctx, 0);
    p->n_kv = 0;
}

void lyra_pipeline_free(lyra_pipeline *p) {
    if (!p) return;
    if (p->user) drop_turns(p, p->n_turns);
    free(p->user);
    free(p->reply);
    free(p->kv);
    lyra_sampler_free(p->s);
    lyra_context_free(p->ctx);
    lyra_model_free(p->m);
    lyra_config_free(p->cfg);
    free(p);
}

static uint64_t random_seed(void) {
    uint64_t s = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(&s, sizeof s, 1, f) != 1) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 32);
    }
    if (f) fclose(f);
    return s;
}

/* Text of token id from the vocabulary into buf[cap] ("" for none / too long). */
static const char *token_text(const lyra_model *m, int32_t id, char *buf, size_t cap) {
    size_t len = 0;
    const char *t = id >= 0 ? lyra_tok_text(m->tok, id, &len) : NULL;
    if (!t || len >= cap) len = 0;
    if (len) memcpy(buf, t, len);
    buf[len] = '\0';
    return buf;
}

/* The chat template: chat_template of the config, else the model's
 * tokenizer.chat_template, else plain turns (a warning). */
static int setup_template(lyra_pipeline *p, lyra_error *err) {
    lyra_gguf_str s = {0};
    int has = lyra_gguf_get_str(p->m->gguf, "tokenizer.chat_template", &s) && s.len > 0;
    lyra_chat_kind kind;
    if (p->gen.chat_template) {
        if (lyra_chat_kind_from_name(p->gen.chat_template, &kind))
            return lyra_err(err, LYRA_ERR_INPUT, "chat_template", "unknown template '%s' (expected %s)",
                            p->gen.chat_template, LYRA_CHAT_NAMES);
    } else {
        int known = 0;
        kind = lyra_chat_detect(has ? s.ptr : NULL, has ? (size_t)s.len : 0, &known);
        if (!known)
            lyra_log(LYRA_LOG_INFO, "pipeline: %s; chat uses plain User:/Assistant: turns",
                     has ? "the model's chat template is not one lyra knows"
                         : "the model has no chat template (tokenizer.chat_template)");
    }
    char bos[128], eos[128];
    token_text(p->m, lyra_token_bos(p->m), bos, sizeof bos);
    token_text(p->m, lyra_token_eos(p->m), eos, sizeof eos);
    lyra_chat_init(&p->tmpl, kind, bos, eos, has ? s.ptr : NULL, has ? (size_t)s.len : 0);
    p->n_chat_stops = lyra_chat_stops(&p->tmpl, p->chat_stops);
    for (int i = 0; i < p->n_chat_stops; i++) {
        int32_t id = lyra_tok_find(p->m->tok, p->chat_stops[i], strlen(p->chat_stops[i]));
        if (id >= 0) p->eot[p->n_eot++] = id;
    }
    return LYRA_OK;
}

/* The configuration: defaults, the file (config_path or discovery), kwargs. */
static int load_config(lyra_pipeline *p, const char *config_path, const lyra_kwargs *kw,
                       lyra_error *err) {
    p->cfg = lyra_config_new();
    if (!p->cfg) return lyra_err(err, LYRA_ERR_OOM, "lyra_load_pipeline", "out of memory");
    int rc = lyra_config_load_auto(p->cfg, config_path, 0, err);
    if (!rc && p->cfg->path) lyra_log(LYRA_LOG_INFO, "pipeline: config %s", p->cfg->path);
    for (int i = 0; !rc && kw && i < kw->n; i++)
        rc = lyra_config_set(p->cfg, kw->key[i], kw->val[i], "api", NULL, err);
    if (!rc) rc = lyra_config_apply_gen(p->cfg, &p->gen, err);
    return rc;
}

/* Open the model and context, make the sampler and the template. */
static int open_model(lyra_pipeline *p, const char *ref, lyra_error *err) {
    char *path = NULL;
    int rc = lyra_model_ref_resolve(ref, "model_id", &path, err);
    lyra_model_params mp = lyra_model_default_params();
    if (!rc) rc = lyra_config_apply_model(p->cfg, &mp, err);
    if (!rc) rc = lyra_model_open(path, &mp, &p->m, err);
    free(path);
    if (rc) return rc;
    lyra_context_params cp = lyra_context_default_params();
    lyra_config_apply_context(p->cfg, &cp);
    rc = lyra_context_new(p->m, &cp, &p->ctx, err);
    if (rc) return rc;
    p->n_ctx = lyra_context_n_ctx(p->ctx);
    lyra_sampler_params sp = lyra_sampler_default_params();
    if (!lyra_config_apply_sampler(p->cfg, &sp)) sp.seed = random_seed();
    lyra_log(LYRA_LOG_INFO, "seed: %llu", (unsigned long long)sp.seed);
    p->kv = malloc(sizeof *p->kv * (size_t)p->n_ctx);
    p->s = lyra_sampler_new(&sp, lyra_model_n_vocab(p->m));
    if (!p->kv || !p->s) return lyra_err(err, LYRA_ERR_OOM, "lyra_load_pipeline", "out of memory");
    return setup_template(p, err);
}

lyra_pipeline *lyra_load_pipeline(const char *model_id, const char *task, const char *config_path,
                                  const lyra_kwargs *pipeline_kwargs, lyra_error *err) {
    lyra_error local;
    if (!err) err = &local;
    err->code = LYRA_OK;
    err->msg[0] = '\0';
    if (task && strcmp(task, "text-generation")) {
        lyra_err(err, LYRA_ERR_INPUT, "task", "'%s' is not supported (only \"text-generation\")", task);
        return NULL;
    }
    lyra_pipeline *p = calloc(1, sizeof *p);
    if (!p) {
        lyra_err(err, LYRA_ERR_OOM, "lyra_load_pipeline", "out of memory");
        return NULL;
    }
    int rc = load_config(p, config_path, pipeline_kwargs, err);
    const char *ref = model_id ? model_id : p->gen.model_id;
    if (!rc && !ref)
        rc = lyra_err(err, LYRA_ERR_INPUT, "model_id",
                      "not given: pass a model_id or set \"model_id\" in a config file (%s)",
                      p->cfg->path ? p->cfg->path : "none was found");
    if (!rc) rc = open_model(p, ref, err);
    if (rc) {
        lyra_pipeline_free(p);
        return NULL;
    }
    return p;
}

/* ----------------------------------------------------------------- stream */

/* Generated text on its way to the callback: decoded bytes, how much is
 * shown, the stop strings that end it. */
typedef struct text_stream {
    char *p;                  /* the decoded text, NUL-terminated */
    size_t n;                 /* its length */
    size_t cap;               /* allocated */
    size_t shown;             /* bytes [0, shown) passed to cb (or skipped) */
    int trim;                 /* chat: no white space at either end is shown */
    int started;              /* trim: a non-space byte was shown */
    const char *const *stops; /* [n_stops] strings that end the text (not part of it) */
    int n_stops;              /* their count */
    lyra_token_cb cb;         /* receiver, may be NULL */
    void *user;               /* its argument */
    int stopped;              /* a stop string appeared */
    int cancelled;            /* cb returned non-zero */
} text_stream;

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int ts_add(text_stream *t, const char *s, size_t k, lyra_error *err) {
    if (t->n + k + 1 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        while (cap < t->n + k + 1) cap *= 2;
        char *q = realloc(t->p, cap);
        if (!q) return lyra_err(err, LYRA_ERR_OOM, "pipeline", "out of memory");
        t->p = q;
        t->cap = cap;
    }
    if (k) memcpy(t->p + t->n, s, k);
    t->n += k;
    t->p[t->n] = '\0';
    return LYRA_OK;
}

/* Pass t->p[shown, limit) to the callback (trim: without the reply's
 * leading white space, holding back white space at the end). */
static void ts_show(text_stream *t, size_t limit) {
    size_t i = t->shown, end = limit;
    if (t->trim) {
        if (!t->started) {
            while (i < limit && is_space(t->p[i])) i++;
            t->shown = i;
            if (i == limit) return;
            t->started = 1;
        }
        while (end > i && is_space(t->p[end - 1])) end--;
    }
    if (end > i && t->cb && !t->cancelled && t->cb(t->p + i, end - i, t->user)) t->cancelled = 1;
    if (end > t->shown) t->shown = end;
}

/* Where the first stop string starts in t (from byte from on), or -1;
 * *hold: the longest tail of t that begins a stop string. */
static long ts_find_stop(const text_stream *t, size_t from, size_t *hold) {
    long best = -1;
    *hold = 0;
    for (int i = 0; i < t->n_stops; i++) {
        size_t k = strlen(t->stops[i]);
        for (size_t j = from; j + k <= t->n; j++)
            if (!memcmp(t->p + j, t->stops[i], k)) {
                if (best < 0 || (long)j < best) best = (long)j;
                break;
            }
        for (size_t h = k - 1; h > *hold; h--)
            if (h <= t->n && !memcmp(t->p + t->n - h, t->stops[i], h)) {
                *hold = h;
                break;
            }
    }
    return best;
}

/* Append k decoded bytes and show what is decided. */
static int ts_feed(text_stream *t, const char *buf, size_t k, lyra_error *err) {
    size_t longest = 0;
    for (int i = 0; i < t->n_stops; i++)
        if (strlen(t->stops[i]) > longest) longest = strlen(t->stops[i]);
    size_t from = t->n > longest ? t->n - longest : 0;
    int rc = ts_add(t, buf, k, err);
    if (rc) return rc;
    size_t hold;
    long at = ts_find_stop(t, from, &hold);
    if (at >= 0) {
        t->n = (size_t)at;
        t->p[t->n] = '\0';
        t->stopped = 1;
        hold = 0;
    }
    ts_show(t, t->n - hold);
    return LYRA_OK;
}

/* ------------------------------------------------------------- generation */

/* Evaluate what of toks[n] is not in the KV cache already (keep_prefix 0:
 * all of it, from an empty cache); the counts go to the debug log. */
static int eval_prompt(lyra_pipeline *p, const int32_t *toks, size_t n, int keep_prefix,
                       lyra_error *err) {
    if (n == 0) return lyra_err(err, LYRA_ERR_INPUT, "prompt", "no tokens");
    if (n >= (size_t)p->n_ctx)
        return lyra_err(err, LYRA_ERR_INPUT, "prompt", "%zu tokens; the context (context_length) holds %d",
                        n, (int)p->n_ctx);
    int32_t keep = 0;
    while (keep_prefix && keep < p->n_kv && (size_t)keep < n && p->kv[keep] == toks[keep]) keep++;
    if ((size_t)keep == n) keep--; /* the last token again, for its logits */
    lyra_context_truncate(p->ctx, keep);
    p->n_kv = keep;
    int rc = lyra_eval(p->ctx, toks + keep, (int32_t)(n - (size_t)keep), 0, err);
    if (rc) return rc;
    memcpy(p->kv + keep, toks + keep, sizeof *toks * (n - (size_t)keep));
    p->n_kv = (int32_t)n;
    lyra_log(LYRA_LOG_DEBUG, "pipeline: prompt %zu tokens: %zu evaluated, %d reused from the cache", n,
             n - (size_t)keep, (int)keep);
    return LYRA_OK;
}

static int is_stop_token(const lyra_pipeline *p, int32_t t, int chat) {
    if (lyra_token_is_eog(p->m, t)) return 1;
    for (int i = 0; chat && i < p->n_eot; i++)
        if (p->eot[i] == t) return 1;
    return 0;
}

/* Sample from the prompt in the cache until an end-of-generation token, a
 * stop string, max_new_tokens, a full context or a cancel. lstrip: drop one
 * leading space (a SentencePiece continuation of BOS alone). */
static int gen_loop(lyra_pipeline *p, text_stream *t, int chat, int lstrip, lyra_error *err) {
    char buf[512];
    lyra_detok *d = lyra_detok_new(p->m);
    if (!d) return lyra_err(err, LYRA_ERR_OOM, "pipeline", "out of memory");
    lyra_sampler_reset(p->s); /* the repetition window holds the prompt, as generate's does */
    for (int32_t i = 0; i < p->n_kv; i++) lyra_sampler_accept(p->s, p->kv[i]);
    int64_t max = p->gen.max_new_tokens, n_gen = 0;
    int rc = LYRA_OK;
    while (!t->stopped && !t->cancelled && (max < 0 || n_gen < max)) {
        const float *logits = lyra_get_logits(p->ctx, -1);
        if (!logits) {
            rc = lyra_err(err, LYRA_ERR_RUNTIME, "pipeline", "no logits");
            break;
        }
        int32_t tok = lyra_sampler_sample(p->s, logits);
        lyra_sampler_accept(p->s, tok);
        if (is_stop_token(p, tok, chat)) break;
        n_gen++;
        size_t k = lyra_detok_feed(d, tok, buf, sizeof buf);
        const char *q = buf;
        if (lstrip && k > 0) {
            if (buf[0] == ' ') { q++; k--; }
            lstrip = 0;
        }
        rc = ts_feed(t, q, k, err);
        if (rc || t->stopped || t->cancelled || (max >= 0 && n_gen >= max)) break;
        if (p->n_kv >= p->n_ctx) {
            lyra_log(LYRA_LOG_INFO, "pipeline: the context is full (%d tokens); stopping", (int)p->n_ctx);
            break;
        }
        rc = lyra_eval(p->ctx, &tok, 1, 0, err);
        if (!rc) p->kv[p->n_kv++] = tok;
    }
    if (!rc && !t->stopped) {
        size_t k = lyra_detok_flush(d, buf, sizeof buf);
        rc = ts_feed(t, buf, k, err);
    }
    if (!rc) ts_show(t, t->n);
    lyra_detok_free(d);
    return rc;
}

/* 1 when the tokenizer puts a space before the first word (SentencePiece's
 * dummy prefix): the piece of "a"'s first token starts with ' '. */
static int has_space_prefix(const lyra_model *m) {
    int32_t *t = NULL;
    size_t n = 0;
    char piece[64];
    int r = 0;
    if (lyra_tokenize(m, "a", 1, 0, 0, &t, &n, NULL) == LYRA_OK && n > 0)
        r = lyra_token_to_piece(m, t[0], 0, piece, sizeof piece) > 0 && piece[0] == ' ';
    free(t);
    return r;
}

/* Hand the stream's text to *out (or free it). */
static void give_text(text_stream *t, char **out) {
    if (out) *out = t->p;
    else free(t->p);
    t->p = NULL;
}

int lyra_pipeline_generate(lyra_pipeline *p, const char *prompt, lyra_token_cb cb, void *user,
                           char **out_text, lyra_error *err) {
    if (out_text) *out_text = NULL;
    if (!p) return lyra_err(err, LYRA_ERR_INPUT, "lyra_pipeline_generate", "p is NULL");
    int32_t *toks = NULL;
    size_t n = 0;
    int rc = LYRA_OK, lstrip = 0;
    if (prompt && prompt[0]) rc = lyra_tokenize(p->m, prompt, strlen(prompt), -1, 0, &toks, &n, err);
    if (!rc && n == 0) { /* BOS alone */
        free(toks);
        int32_t bos = lyra_token_bos(p->m);
        if (bos < 0) return lyra_err(err, LYRA_ERR_INPUT, "prompt", "the model has no BOS token: give a prompt");
        toks = malloc(sizeof *toks);
        if (!toks) return lyra_err(err, LYRA_ERR_OOM, "pipeline", "out of memory");
        toks[0] = bos;
        n = 1;
        lstrip = has_space_prefix(p->m);
    }
    if (!rc) rc = eval_prompt(p, toks, n, 0, err);
    free(toks);
    if (rc) return rc;
    text_stream t = {0};
    t.stops = p->gen.stop;
    t.n_stops = p->gen.n_stop;
    t.cb = cb;
    t.user = user;
    rc = ts_add(&t, "", 0, err);
    if (!rc) rc = gen_loop(p, &t, 0, lstrip, err);
    if (rc) {
        free(t.p);
        return rc;
    }
    give_text(&t, out_text);
    return LYRA_OK;
}

/* ------------------------------------------------------------------- chat */

static int add_turn(lyra_pipeline *p, const char *text, lyra_error *err) {
    if (p->n_turns == p->cap_turns) {
        int cap = p->cap_turns ? 2 * p->cap_turns : 16;
        char **u = realloc(p->user, sizeof *u * (size_t)cap);
        if (u) p->user = u;
        char **r = u ? realloc(p->reply, sizeof *r * (size_t)cap) : NULL;
        if (!r) return lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
        p->reply = r;
        p->cap_turns = cap;
    }
    char *s = strdup(text);
    if (!s) return lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
    p->user[p->n_turns] = s;
    p->reply[p->n_turns] = NULL;
    p->n_turns++;
    return LYRA_OK;
}

/* Render turns [first, n_turns) (the last one asked) and tokenize: *toks
 * malloc'd. BOS is added as the model says unless the text starts with it. */
static int chat_tokens(lyra_pipeline *p, int first, int32_t **toks, size_t *n, lyra_error *err) {
    int k = p->n_turns - first;
    lyra_chat_turn *t = malloc(sizeof *t * (size_t)k);
    if (!t) return lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
    for (int i = 0; i < k; i++) {
        t[i].user = p->user[first + i];
        t[i].assistant = p->reply[first + i];
    }
    char *text = NULL;
    size_t len = 0;
    const char *sys = p->gen.system_prompt && p->gen.system_prompt[0] ? p->gen.system_prompt : NULL;
    int rc = lyra_chat_render(&p->tmpl, sys, t, (size_t)k, &text, &len, err);
    free(t);
    if (rc) return rc;
    size_t nb = strlen(p->tmpl.bos);
    int add_bos = nb && len >= nb && !memcmp(text, p->tmpl.bos, nb) ? 0 : -1;
    rc = lyra_tokenize(p->m, text, len, add_bos, 1, toks, n, err);
    free(text);
    return rc;
}

/* Tokens of the prompt for the last turn, dropping the oldest turns while
 * the prompt and room for the reply (max_new_tokens, else a quarter of the
 * context, at most half) do not fit. The system prompt is always kept. */
static int chat_fit(lyra_pipeline *p, int32_t **toks, size_t *n, lyra_error *err) {
    int64_t room = p->gen.max_new_tokens >= 0 ? p->gen.max_new_tokens : p->n_ctx / 4;
    if (room > p->n_ctx / 2) room = p->n_ctx / 2;
    int first = 0;
    for (;;) {
        int rc = chat_tokens(p, first, toks, n, err);
        if (rc) return rc;
        int last = first == p->n_turns - 1;
        if ((int64_t)*n + room <= p->n_ctx || (last && (int64_t)*n < p->n_ctx)) break;
        free(*toks);
        *toks = NULL;
        if (last)
            return lyra_err(err, LYRA_ERR_INPUT, "user_message",
                            "%zu tokens with the system prompt; the context (context_length) holds %d", *n,
                            (int)p->n_ctx);
        first++;
    }
    if (first) {
        lyra_log(LYRA_LOG_WARN, "chat: dropped the %d oldest turn%s to fit the context of %d tokens", first,
                 first == 1 ? "" : "s", (int)p->n_ctx);
        drop_turns(p, first);
    }
    return LYRA_OK;
}

int lyra_pipeline_chat(lyra_pipeline *p, const char *user_message, lyra_token_cb cb, void *user,
                       char **out_reply, lyra_error *err) {
    if (out_reply) *out_reply = NULL;
    if (!p) return lyra_err(err, LYRA_ERR_INPUT, "lyra_pipeline_chat", "p is NULL");
    if (!user_message) return lyra_err(err, LYRA_ERR_INPUT, "user_message", "is NULL");
    const char *stops[PIPE_MAX_STOPS];
    int n_stops = 0;
    for (int i = 0; i < p->n_chat_stops; i++) stops[n_stops++] = p->chat_stops[i];
    for (int i = 0; i < p->gen.n_stop && n_stops < PIPE_MAX_STOPS; i++) stops[n_stops++] = p->gen.stop[i];
    int rc = add_turn(p, user_message, err);
    if (rc) return rc;
    int32_t *toks = NULL;
    size_t n = 0;
    rc = chat_fit(p, &toks, &n, err);
    if (rc) {
        free(p->user[--p->n_turns]); /* the message is not kept */
        return rc;
    }
    rc = eval_prompt(p, toks, n, 1, err);
    free(toks);
    text_stream t = {0};
    t.trim = 1;
    t.stops = stops;
    t.n_stops = n_stops;
    t.cb = cb;
    t.user = user;
    if (!rc) rc = ts_add(&t, "", 0, err);
    if (!rc) rc = gen_loop(p, &t, 1, 0, err);
    if (rc) {
        free(t.p);
        free(p->user[--p->n_turns]); /* the turn is not kept */
        return rc;
    }
    /* the reply as generated (the template trims it when rendering) */
    p->reply[p->n_turns - 1] = t.p;
    if (out_reply) {
        size_t a = 0, b = t.n;
        while (a < b && is_space(t.p[a])) a++;
        while (b > a && is_space(t.p[b - 1])) b--;
        char *r = malloc(b - a + 1);
        if (!r) return lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
        memcpy(r, t.p + a, b - a);
        r[b - a] = '\0';
        *out_reply = r;
    }
    return LYRA_OK;
}
