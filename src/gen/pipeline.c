/* pipeline.c: the one-call C API (include/lyra.h, docs/api.md):
 * lyra_pipeline_open (and lyra_load_pipeline) resolves a model and its
 * settings from a config file (src/config/config.h, the one module below
 * lyra.h that src/gen uses) and keyword arguments, opens the model and a
 * context; lyra_pipeline_generate continues a plain prompt (the same tokens
 * and sampling as `lyra generate`), lyra_pipeline_chat answers one chat turn
 * with the model's template, keeping the conversation in the KV cache so a
 * turn evaluates only its new tokens (as `lyra chat` does). Generated text
 * goes to a callback piece by piece (complete UTF-8, stop strings held back
 * until decided); a non-zero return from it cancels. The conversation, the
 * KV cache and the sampling loop are src/gen/chat_session.h's, shared with
 * `lyra chat`. API version 5 adds per-call generation settings (a copy of
 * the config with the call's keys over it, a sampler and stop list of the
 * call's own swapped into the session while it runs), the counts and stop
 * reason of a generation, a chat from a whole message list, cancellation
 * from another thread and the error kinds the front ends map to their
 * classes. API version 6 adds sessions (the conversation, KV tokens, cache
 * and sampler to a file or buffer and back: src/gen/session.h) and the
 * count of evaluated tokens. API version 8 opens an engine (gen/engine.h)
 * on a pipeline's model, template and system prompt. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/model_ref.h"
#include "core/log.h"
#include "gen/chat_session.h"
#include "gen/engine.h"
#include "gen/session.h"
#include "lyra.h"

int lyra_api_version(void) { return LYRA_API_VERSION; }

/* Mark err (may be NULL) as being about kind when rc is a failure; rc. */
static int kind_of(lyra_error *err, int rc, lyra_error_kind kind) {
    if (rc && err && rc != LYRA_ERR_OOM) err->kind = kind;
    return rc;
}

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
    if (rc)
        return kind_of(err, rc, lyra_config_key_find(key) < 0 ? LYRA_KIND_UNKNOWN_KEY : LYRA_KIND_CONFIG);
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
    lyra_config *cfg;      /* the effective configuration */
    lyra_config_gen gen;   /* max_new_tokens, stop, system prompt (into cfg) */
    lyra_chat_session cs;  /* model, context, sampler, template, turns, KV tokens */
    uint64_t seed;         /* the sampler's seed (configured, or drawn at load) */
    char *system;          /* the system message of lyra_pipeline_chat_messages (owned) */
    volatile sig_atomic_t cancel; /* lyra_pipeline_cancel: stop before the next token */
};

lyra_model *lyra_pipeline_model(lyra_pipeline *p) { return p ? p->cs.m : NULL; }
lyra_context *lyra_pipeline_context(lyra_pipeline *p) { return p ? p->cs.ctx : NULL; }

/* The config's system prompt (the messages' one forgotten). */
static void config_system(lyra_pipeline *p) {
    free(p->system);
    p->system = NULL;
    p->cs.system = p->gen.system_prompt && p->gen.system_prompt[0] ? p->gen.system_prompt : NULL;
}

void lyra_pipeline_reset(lyra_pipeline *p) {
    if (!p) return;
    if (p->cs.n_turns) lyra_chat_session_drop(&p->cs, p->cs.n_turns);
    lyra_context_truncate(p->cs.ctx, 0);
    p->cs.n_kv = 0;
    config_system(p);
}

void lyra_pipeline_cancel(lyra_pipeline *p) {
    if (p) p->cancel = 1;
}

size_t lyra_pipeline_config(const lyra_pipeline *p, char *buf, size_t cap) {
    if (cap) buf[0] = '\0';
    json_t *j = p ? lyra_config_show_json(p->cfg) : NULL;
    char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(j);
    if (!s) return 0;
    size_t n = strlen(s);
    if (cap) {
        size_t k = n < cap ? n : cap - 1;
        memcpy(buf, s, k);
        buf[k] = '\0';
    }
    free(s);
    return n;
}

void lyra_pipeline_free(lyra_pipeline *p) {
    if (!p) return;
    lyra_chat_session_free(&p->cs);
    lyra_config_free(p->cfg);
    free(p->system);
    free(p);
}

/* The chat template: chat_template of the config (a format name or a Jinja
 * file), else the model's tokenizer.chat_template rendered as Jinja (when it
 * does not parse: the format it shows, with a note, or the error), else
 * plain turns (a note). */
static int setup_template(lyra_pipeline *p, lyra_error *err) {
    const char *where = "lyra_load_pipeline";
    lyra_chat_kind kind;
    if (p->gen.chat_template && lyra_chat_template_is_file(p->gen.chat_template))
        return lyra_chat_session_template_jinja(&p->cs, p->gen.chat_template, p->gen.stop, p->gen.n_stop, where, err);
    if (p->gen.chat_template) {
        if (lyra_chat_kind_from_name(p->gen.chat_template, &kind))
            return lyra_err(err, LYRA_ERR_INPUT, "chat_template", "unknown template '%s' (expected %s)",
                            p->gen.chat_template, LYRA_CHAT_NAMES);
    } else {
        int known = 0, has = 0;
        kind = lyra_chat_session_detect(&p->cs, &known, &has);
        if (has) {
            int rc = lyra_chat_session_template_jinja(&p->cs, NULL, p->gen.stop, p->gen.n_stop, where, err);
            if (!rc || !known || rc != LYRA_ERR_INPUT) return rc;
            lyra_log(LYRA_LOG_INFO, "pipeline: %s; chat uses lyra's %s format instead", err->msg,
                     lyra_chat_kind_name(kind));
            lyra_err_clear(err);
        } else
            lyra_log(LYRA_LOG_INFO, "pipeline: the model has no chat template (tokenizer.chat_template); chat uses "
                     "plain User:/Assistant: turns");
    }
    return lyra_chat_session_template(&p->cs, kind, p->gen.stop, p->gen.n_stop, where, err);
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
    if (!rc) rc = lyra_config_settle_sampling(p->cfg, err);
    if (!rc) rc = lyra_config_apply_gen(p->cfg, &p->gen, err);
    return kind_of(err, rc, LYRA_KIND_CONFIG);
}

/* Open the model and context, make the sampler and the template. */
static int open_model(lyra_pipeline *p, const char *ref, lyra_error *err) {
    char *path = NULL;
    /* at the config's revision (a kwarg, the file's key) */
    int rc = kind_of(err, lyra_config_resolve_model(p->cfg, ref, "model_id", &path, err), LYRA_KIND_MODEL_NOT_FOUND);
    if (!rc) { /* a snapshot's generation_config.json, below the config and kwargs */
        rc = lyra_config_load_generation(p->cfg, path, err);
        if (!rc) rc = lyra_config_apply_gen(p->cfg, &p->gen, err);
        rc = kind_of(err, rc, LYRA_KIND_CONFIG);
    }
    lyra_model_params mp = lyra_model_default_params();
    if (!rc) rc = kind_of(err, lyra_config_apply_model(p->cfg, &mp, err), LYRA_KIND_CONFIG);
    lyra_context_params cp = lyra_context_default_params(); /* the model's geometry */
    if (!rc)
        rc = kind_of(err, lyra_chat_session_open(&p->cs, path, &mp, &cp, "lyra_load_pipeline", err),
                     LYRA_KIND_MODEL);
    free(path);
    if (rc) return rc;
    config_system(p);
    lyra_sampler_params sp = lyra_sampler_default_params();
    if (!lyra_config_apply_sampler(p->cfg, &sp)) sp.seed = lyra_gen_random_seed();
    lyra_log(LYRA_LOG_INFO, "seed: %llu", (unsigned long long)sp.seed);
    p->seed = sp.seed;
    rc = lyra_chat_session_sampler(&p->cs, &sp, "lyra_load_pipeline", err);
    return rc ? rc : kind_of(err, setup_template(p, err), LYRA_KIND_CONFIG);
}

int lyra_pipeline_open(const char *model_id, const char *task, const char *config_path,
                       const lyra_kwargs *pipeline_kwargs, lyra_pipeline **out, lyra_error *err) {
    lyra_error local;
    if (!err) err = &local;
    lyra_err_clear(err);
    *out = NULL;
    if (task && strcmp(task, "text-generation"))
        return kind_of(err,
                       lyra_err(err, LYRA_ERR_INPUT, "task", "'%s' is not supported (only \"text-generation\")",
                                task),
                       LYRA_KIND_ARGUMENT);
    lyra_pipeline *p = calloc(1, sizeof *p);
    if (!p) return lyra_err(err, LYRA_ERR_OOM, "lyra_load_pipeline", "out of memory");
    int rc = load_config(p, config_path, pipeline_kwargs, err);
    const char *ref = model_id ? model_id : p->gen.model_id;
    if (!rc && !ref)
        rc = kind_of(err,
                     lyra_err(err, LYRA_ERR_INPUT, "model_id",
                              "not given: pass a model_id or set \"model_id\" in a config file (%s)",
                              p->cfg->path ? p->cfg->path : "none was found"),
                     LYRA_KIND_ARGUMENT);
    if (!rc) rc = open_model(p, ref, err);
    if (rc) {
        lyra_pipeline_free(p);
        return rc;
    }
    *out = p;
    return LYRA_OK;
}

lyra_pipeline *lyra_load_pipeline(const char *model_id, const char *task, const char *config_path,
                                  const lyra_kwargs *pipeline_kwargs, lyra_error *err) {
    lyra_pipeline *p;
    lyra_pipeline_open(model_id, task, config_path, pipeline_kwargs, &p, err);
    return p;
}

/* ------------------------------------------------------------- generation */

/* The keys a call may set (lyra_pipeline_generate_ex). */
static int is_gen_key(int k) {
    switch (k) {
    case LYRA_CFG_MAX_NEW_TOKENS: case LYRA_CFG_TEMPERATURE: case LYRA_CFG_DO_SAMPLE:
    case LYRA_CFG_TOP_K: case LYRA_CFG_TOP_P: case LYRA_CFG_MIN_P:
    case LYRA_CFG_REPETITION_PENALTY: case LYRA_CFG_STOP: case LYRA_CFG_SEED:
        return 1;
    default:
        return 0;
    }
}

/* One call's settings: the pipeline's, or (gen_kwargs given) a copy of its
 * config with the call's keys over it; the call's sampler and (chat) stop
 * list are swapped into the session while it runs, the pipeline's kept. */
typedef struct call_set {
    lyra_config *cfg;        /* the copy; NULL: the pipeline's settings */
    lyra_config_gen gen;     /* max_new_tokens, stop of the call */
    lyra_sampler *saved_s;   /* the pipeline's sampler, NULL when not swapped */
    const char **saved_stops;/* the session's stop list, NULL when not swapped */
    int saved_n_stops;
} call_set;

/* Put the pipeline's sampler and stop list back; free the call's. */
static void call_end(lyra_pipeline *p, call_set *c) {
    if (c->saved_s) {
        lyra_sampler_free(p->cs.s);
        p->cs.s = c->saved_s;
    }
    if (c->saved_stops) {
        free(p->cs.stops);
        p->cs.stops = c->saved_stops;
        p->cs.n_stops = c->saved_n_stops;
    }
    lyra_config_free(c->cfg);
    memset(c, 0, sizeof *c);
}

static int call_begin(lyra_pipeline *p, const lyra_kwargs *kw, int chat, call_set *c, lyra_error *err) {
    memset(c, 0, sizeof *c);
    c->gen = p->gen;
    p->cancel = 0;
    if (!kw || kw->n == 0) return LYRA_OK;
    for (int i = 0; i < kw->n; i++)
        if (!is_gen_key(lyra_config_key_find(kw->key[i])))
            return kind_of(err,
                           lyra_err(err, LYRA_ERR_INPUT, kw->key[i],
                                    "not a generation setting (max_new_tokens, temperature, do_sample, top_k, "
                                    "top_p, min_p, repetition_penalty, stop, seed): give it when the pipeline "
                                    "is loaded"),
                           LYRA_KIND_UNKNOWN_KEY);
    c->cfg = lyra_config_copy(p->cfg);
    if (!c->cfg) return lyra_err(err, LYRA_ERR_OOM, "pipeline", "out of memory");
    int rc = LYRA_OK;
    for (int i = 0; !rc && i < kw->n; i++) rc = lyra_config_set(c->cfg, kw->key[i], kw->val[i], "call", NULL, err);
    if (!rc) rc = lyra_config_settle_sampling(c->cfg, err);
    if (!rc) rc = lyra_config_apply_gen(c->cfg, &c->gen, err);
    if (rc) {
        call_end(p, c);
        return kind_of(err, rc, LYRA_KIND_CONFIG);
    }
    lyra_sampler_params sp = lyra_sampler_default_params();
    if (!lyra_config_apply_sampler(c->cfg, &sp)) sp.seed = p->seed;
    lyra_sampler *s = lyra_sampler_new(&sp, lyra_model_n_vocab(p->cs.m));
    if (!s) {
        call_end(p, c);
        return lyra_err(err, LYRA_ERR_OOM, "pipeline", "out of memory");
    }
    c->saved_s = p->cs.s;
    p->cs.s = s;
    if (chat) { /* the template's stops, then the call's */
        int nt = p->cs.n_tmpl_stops;
        const char **st = malloc(sizeof *st * (size_t)(nt + c->gen.n_stop + 1));
        if (!st) {
            call_end(p, c);
            return lyra_err(err, LYRA_ERR_OOM, "pipeline", "out of memory");
        }
        memcpy(st, p->cs.stops, sizeof *st * (size_t)nt);
        for (int i = 0; i < c->gen.n_stop; i++) st[nt + i] = c->gen.stop[i];
        c->saved_stops = p->cs.stops;
        c->saved_n_stops = p->cs.n_stops;
        p->cs.stops = st;
        p->cs.n_stops = nt + c->gen.n_stop;
    }
    return LYRA_OK;
}

/* Evaluate what of toks[n] is not in the KV cache already (keep_prefix 0:
 * all of it, from an empty cache); the counts go to the debug log and res. */
static int eval_prompt(lyra_pipeline *p, const int32_t *toks, size_t n, int keep_prefix,
                       lyra_generate_result *res, lyra_error *err) {
    if (n == 0) return kind_of(err, lyra_err(err, LYRA_ERR_INPUT, "prompt", "no tokens"), LYRA_KIND_ARGUMENT);
    if (n >= (size_t)p->cs.n_ctx)
        return kind_of(err,
                       lyra_err(err, LYRA_ERR_INPUT, "prompt", "%zu token%s; the context (context_length) holds %d",
                                n, n == 1 ? "" : "s", (int)p->cs.n_ctx),
                       LYRA_KIND_ARGUMENT);
    int32_t keep = 0;
    int rc = lyra_chat_session_eval(&p->cs, toks, n, keep_prefix, &keep, err);
    if (rc) return rc;
    lyra_log(LYRA_LOG_DEBUG, "pipeline: prompt %zu tokens: %zu evaluated, %d reused from the cache", n,
             n - (size_t)keep, (int)keep);
    res->n_prompt = (int32_t)n;
    res->n_reused = keep;
    return LYRA_OK;
}

/* Sample into t from the prompt in the cache (chat: the template's
 * end-of-turn tokens end it too; lstrip: drop one leading space); the
 * count and the stop reason into res. */
static int gen_loop(lyra_pipeline *p, const lyra_config_gen *g, lyra_textstream *t, int chat, int lstrip,
                    lyra_generate_result *res, lyra_error *err) {
    lyra_gen_opts o = {g->max_new_tokens, chat, lstrip, &p->cancel, "pipeline"};
    lyra_gen_result r;
    int rc = lyra_chat_session_generate(&p->cs, t, &o, &r, err);
    if (!rc && r.full)
        lyra_log(LYRA_LOG_INFO, "pipeline: the context is full (%d tokens); stopping", (int)p->cs.n_ctx);
    res->n_gen = r.n_gen;
    if (r.interrupted || t->cancelled) res->stop = LYRA_STOP_CANCELLED;
    else if (t->stopped) res->stop = LYRA_STOP_STRING;
    else if (g->max_new_tokens >= 0 && r.n_gen >= g->max_new_tokens) res->stop = LYRA_STOP_LENGTH;
    else if (r.full) res->stop = LYRA_STOP_CONTEXT;
    else res->stop = LYRA_STOP_EOG;
    return rc;
}

/* The prompt's tokens (*lstrip: BOS alone, drop the dummy space). */
static int plain_tokens(lyra_pipeline *p, const char *prompt, int32_t **toks, size_t *n, int *lstrip,
                        lyra_error *err) {
    lyra_model *m = p->cs.m;
    int rc = LYRA_OK;
    *toks = NULL;
    *n = 0;
    *lstrip = 0;
    if (prompt && prompt[0]) rc = lyra_tokenize(m, prompt, strlen(prompt), -1, 0, toks, n, err);
    if (!rc && *n == 0) { /* BOS alone */
        free(*toks);
        *toks = NULL;
        int32_t bos = lyra_token_bos(m);
        if (bos < 0)
            return kind_of(err, lyra_err(err, LYRA_ERR_INPUT, "prompt", "the model has no BOS token: give a prompt"),
                           LYRA_KIND_ARGUMENT);
        *toks = malloc(sizeof **toks);
        if (!*toks) return lyra_err(err, LYRA_ERR_OOM, "pipeline", "out of memory");
        (*toks)[0] = bos;
        *n = 1;
        *lstrip = lyra_gen_space_prefix(m);
    }
    return rc;
}

int lyra_pipeline_generate_ex(lyra_pipeline *p, const char *prompt, const lyra_kwargs *gen_kwargs,
                              lyra_token_cb cb, void *user, char **out_text, lyra_generate_result *res,
                              lyra_error *err) {
    lyra_generate_result local;
    if (!res) res = &local;
    memset(res, 0, sizeof *res);
    if (out_text) *out_text = NULL;
    if (!p) return lyra_err(err, LYRA_ERR_INPUT, "lyra_pipeline_generate", "p is NULL");
    call_set c;
    int rc = call_begin(p, gen_kwargs, 0, &c, err);
    if (rc) return rc;
    int32_t *toks = NULL;
    size_t n = 0;
    int lstrip = 0;
    rc = plain_tokens(p, prompt, &toks, &n, &lstrip, err);
    if (!rc) rc = eval_prompt(p, toks, n, 0, res, err);
    free(toks);
    lyra_textstream t = {0};
    if (!rc) rc = lyra_textstream_init(&t, c.gen.stop, c.gen.n_stop, 0, cb, user, "pipeline", err);
    if (!rc) rc = gen_loop(p, &c.gen, &t, 0, lstrip, res, err);
    call_end(p, &c);
    if (rc) {
        lyra_textstream_free(&t);
        return rc;
    }
    char *text = lyra_textstream_take(&t);
    if (out_text) *out_text = text;
    else free(text);
    return LYRA_OK;
}

int lyra_pipeline_generate(lyra_pipeline *p, const char *prompt, lyra_token_cb cb, void *user,
                           char **out_text, lyra_error *err) {
    return lyra_pipeline_generate_ex(p, prompt, NULL, cb, user, out_text, NULL, err);
}

/* ------------------------------------------------------------------- chat */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Tokens of the prompt for the last turn, dropping the oldest turns while
 * the prompt and room for the reply (max_new_tokens, else a quarter of the
 * context, at most half) do not fit. The system prompt is always kept. */
static int chat_fit(lyra_pipeline *p, const lyra_config_gen *g, int32_t **toks, size_t *n, lyra_error *err) {
    int dropped = 0, fits = 1;
    int rc = lyra_chat_session_fit(&p->cs, g->max_new_tokens, toks, n, &dropped, &fits, err);
    if (!rc && !fits)
        return kind_of(err,
                       lyra_err(err, LYRA_ERR_INPUT, "user_message",
                                "%zu token%s with the system prompt; the context (context_length) holds %d", *n,
                                *n == 1 ? "" : "s", (int)p->cs.n_ctx),
                       LYRA_KIND_ARGUMENT);
    if (!rc && dropped)
        lyra_log(LYRA_LOG_WARN, "chat: dropped the %d oldest turn%s to fit the context of %d tokens", dropped,
                 dropped == 1 ? "" : "s", (int)p->cs.n_ctx);
    return rc;
}

/* One turn: user_message after the turns kept, answered with the call's
 * settings. */
static int chat_turn(lyra_pipeline *p, const char *user_message, const lyra_kwargs *kw, lyra_token_cb cb,
                     void *user, char **out_reply, lyra_generate_result *res, lyra_error *err) {
    call_set c;
    int rc = call_begin(p, kw, 1, &c, err);
    if (!rc) rc = lyra_chat_session_ask(&p->cs, user_message, err);
    if (rc) {
        call_end(p, &c);
        return rc;
    }
    int32_t *toks = NULL;
    size_t n = 0;
    rc = chat_fit(p, &c.gen, &toks, &n, err);
    if (!rc) rc = eval_prompt(p, toks, n, 1, res, err);
    free(toks);
    lyra_textstream t = {0};
    if (!rc) rc = lyra_textstream_init(&t, p->cs.stops, p->cs.n_stops, 1, cb, user, "pipeline", err);
    if (!rc) rc = gen_loop(p, &c.gen, &t, 1, 0, res, err);
    call_end(p, &c);
    if (rc) {
        lyra_textstream_free(&t);
        lyra_chat_session_unask(&p->cs); /* the turn is not kept */
        return rc;
    }
    /* the reply as generated (the template trims it when rendering) */
    size_t len = t.n;
    char *text = lyra_textstream_take(&t);
    lyra_chat_session_answer(&p->cs, text);
    if (out_reply) {
        size_t a = 0, b = len;
        while (a < b && is_space(text[a])) a++;
        while (b > a && is_space(text[b - 1])) b--;
        char *r = malloc(b - a + 1);
        if (!r) return lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
        memcpy(r, text + a, b - a);
        r[b - a] = '\0';
        *out_reply = r;
    }
    return LYRA_OK;
}

int lyra_pipeline_chat(lyra_pipeline *p, const char *user_message, lyra_token_cb cb, void *user,
                       char **out_reply, lyra_error *err) {
    lyra_generate_result res;
    memset(&res, 0, sizeof res);
    if (out_reply) *out_reply = NULL;
    if (!p) return lyra_err(err, LYRA_ERR_INPUT, "lyra_pipeline_chat", "p is NULL");
    if (!user_message)
        return kind_of(err, lyra_err(err, LYRA_ERR_INPUT, "user_message", "is NULL"), LYRA_KIND_ARGUMENT);
    return chat_turn(p, user_message, NULL, cb, user, out_reply, &res, err);
}

/* msgs[n]: an optional system message, then user and assistant ones
 * alternating, ending with a user one. */
static int check_messages(const lyra_chat_message *msgs, int n, lyra_error *err) {
    if (!msgs || n < 1)
        return lyra_err(err, LYRA_ERR_INPUT, "messages", "empty: give at least one user message");
    int first = msgs[0].role && !strcmp(msgs[0].role, "system");
    for (int i = 0; i < n; i++) {
        const char *want = i < first ? "system" : (i - first) % 2 == 0 ? "user" : "assistant";
        char where[48];
        snprintf(where, sizeof where, "messages[%d].role", i);
        if (!msgs[i].role)
            return lyra_err(err, LYRA_ERR_INPUT, where, "missing (expected \"%s\")", want);
        if (strcmp(msgs[i].role, want))
            return lyra_err(err, LYRA_ERR_INPUT, where,
                            "\"%s\" where \"%s\" was expected (an optional system message, then user and "
                            "assistant messages alternating, ending with a user message)",
                            msgs[i].role, want);
        if (!msgs[i].content) {
            snprintf(where, sizeof where, "messages[%d].content", i);
            return lyra_err(err, LYRA_ERR_INPUT, where, "missing");
        }
    }
    if ((n - first) % 2 == 0)
        return lyra_err(err, LYRA_ERR_INPUT, "messages", "%s: the last message must be the user's",
                        n == first ? "no user message" : "ends with the assistant's");
    return LYRA_OK;
}

int lyra_pipeline_chat_messages(lyra_pipeline *p, const lyra_chat_message *msgs, int n,
                                const lyra_kwargs *gen_kwargs, lyra_token_cb cb, void *user,
                                char **out_reply, lyra_generate_result *res, lyra_error *err) {
    lyra_generate_result local;
    if (!res) res = &local;
    memset(res, 0, sizeof *res);
    if (out_reply) *out_reply = NULL;
    if (!p) return lyra_err(err, LYRA_ERR_INPUT, "lyra_pipeline_chat_messages", "p is NULL");
    int rc = kind_of(err, check_messages(msgs, n, err), LYRA_KIND_ARGUMENT);
    if (rc) return rc;
    int first = !strcmp(msgs[0].role, "system");
    char *sys = first ? strdup(msgs[0].content) : NULL;
    if (first && !sys) return lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
    /* the conversation becomes msgs[0..n-1); the KV cache keeps its tokens
     * for the common prefix */
    if (p->cs.n_turns) lyra_chat_session_drop(&p->cs, p->cs.n_turns);
    config_system(p);
    if (sys) p->cs.system = p->system = sys;
    for (int i = first; !rc && i + 1 < n; i += 2) {
        rc = lyra_chat_session_ask(&p->cs, msgs[i].content, err);
        char *a = rc ? NULL : strdup(msgs[i + 1].content);
        if (!rc && !a) {
            lyra_chat_session_unask(&p->cs);
            rc = lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
        }
        if (!rc) lyra_chat_session_answer(&p->cs, a);
    }
    if (rc) return rc;
    return chat_turn(p, msgs[n - 1].content, gen_kwargs, cb, user, out_reply, res, err);
}

/* --------------------------------------------------------------- sessions */

int lyra_pipeline_session_save(lyra_pipeline *p, const char *path, lyra_error *err) {
    if (!p || !path) return lyra_err(err, LYRA_ERR_INPUT, "lyra_pipeline_session_save", "p or path is NULL");
    return lyra_chat_session_save(&p->cs, path, NULL, NULL, err);
}

int lyra_pipeline_session_save_mem(lyra_pipeline *p, void **buf, size_t *len, lyra_error *err) {
    if (buf) *buf = NULL;
    if (len) *len = 0;
    if (!p || !buf || !len)
        return lyra_err(err, LYRA_ERR_INPUT, "lyra_pipeline_session_save_mem", "p, buf or len is NULL");
    return lyra_chat_session_save(&p->cs, NULL, buf, len, err);
}

/* Restore from buf[len]; the file's system prompt becomes the pipeline's
 * (the config's when it is the same text). */
static int session_load(lyra_pipeline *p, const void *buf, size_t len, const char *name, lyra_error *err) {
    char *sys = NULL;
    int rc = lyra_chat_session_load(&p->cs, buf, len, name, &sys, err);
    if (rc) {
        if (!p->cs.n_turns && !p->cs.n_kv) config_system(p); /* the cache was emptied */
        return rc;
    }
    free(p->system);
    p->system = NULL;
    if (!sys) p->cs.system = NULL;
    else if (p->gen.system_prompt && !strcmp(sys, p->gen.system_prompt)) {
        free(sys);
        p->cs.system = p->gen.system_prompt;
    } else
        p->cs.system = p->system = sys;
    lyra_log(LYRA_LOG_DEBUG, "pipeline: session %s restored: %d turns, %d tokens", name, p->cs.n_turns,
             (int)p->cs.n_kv);
    return LYRA_OK;
}

int lyra_pipeline_session_load_mem(lyra_pipeline *p, const void *buf, size_t len, lyra_error *err) {
    if (!p || (!buf && len))
        return lyra_err(err, LYRA_ERR_INPUT, "lyra_pipeline_session_load_mem", "p or buf is NULL");
    return session_load(p, buf, len, "session", err);
}

int lyra_pipeline_session_load(lyra_pipeline *p, const char *path, lyra_error *err) {
    if (!p || !path) return lyra_err(err, LYRA_ERR_INPUT, "lyra_pipeline_session_load", "p or path is NULL");
    void *map;
    size_t len;
    int rc = lyra_session_map(path, &map, &len, err);
    if (rc) return rc;
    rc = session_load(p, map, len, path, err);
    lyra_session_unmap(map, len);
    return rc;
}

uint64_t lyra_pipeline_n_evaluated(const lyra_pipeline *p) { return p ? p->cs.n_evaluated : 0; }

/* ----------------------------------------------------------------- engine */

int lyra_engine_open(lyra_pipeline *p, const lyra_engine_params *params, lyra_engine **out, lyra_error *err) {
    if (out) *out = NULL;
    if (!p || !out) return lyra_err(err, LYRA_ERR_INPUT, "lyra_engine_open", "p or out is NULL");
    lyra_engine_params ep = params ? *params : lyra_engine_default_params();
    lyra_engine_chat chat;
    memset(&chat, 0, sizeof chat);
    chat.tmpl = p->cs.tmpl;
    for (int i = 0; i < p->cs.n_stops && chat.n_stops < LYRA_CHAT_MAX_STOPS; i++) chat.stops[chat.n_stops++] = p->cs.stops[i];
    chat.n_eot = p->cs.n_eot;
    memcpy(chat.eot, p->cs.eot, sizeof chat.eot);
    lyra_context_params cp = lyra_context_default_params();
    cp.n_ctx = p->cs.n_ctx; /* each slot: the pipeline's context */
    int rc = lyra_engine_start(p->cs.m, &cp, ep.n_slots, ep.queue > 0 ? ep.queue : 1024, &chat, out, err);
    if (rc) return rc;
    lyra_sampler_params sp = lyra_sampler_default_params();
    lyra_config_apply_sampler(p->cfg, &sp);
    sp.seed = p->seed;
    lyra_engine_set_render(*out, &p->cs.tmpl,
                           p->gen.system_prompt && p->gen.system_prompt[0] ? p->gen.system_prompt : NULL, &sp,
                           p->gen.max_new_tokens);
    return LYRA_OK;
}
