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
 * `lyra chat`. */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/model_ref.h"
#include "core/log.h"
#include "gen/chat_session.h"
#include "lyra.h"

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
    lyra_config *cfg;      /* the effective configuration */
    lyra_config_gen gen;   /* max_new_tokens, stop, system prompt (into cfg) */
    lyra_chat_session cs;  /* model, context, sampler, template, turns, KV tokens */
};

lyra_model *lyra_pipeline_model(lyra_pipeline *p) { return p ? p->cs.m : NULL; }
lyra_context *lyra_pipeline_context(lyra_pipeline *p) { return p ? p->cs.ctx : NULL; }

void lyra_pipeline_reset(lyra_pipeline *p) {
    if (!p) return;
    lyra_chat_session_drop(&p->cs, p->cs.n_turns);
    lyra_context_truncate(p->cs.ctx, 0);
    p->cs.n_kv = 0;
}

void lyra_pipeline_free(lyra_pipeline *p) {
    if (!p) return;
    lyra_chat_session_free(&p->cs);
    lyra_config_free(p->cfg);
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
    return rc;
}

/* Open the model and context, make the sampler and the template. */
static int open_model(lyra_pipeline *p, const char *ref, lyra_error *err) {
    char *path = NULL;
    int rc = lyra_model_ref_resolve(ref, "model_id", &path, err);
    lyra_model_params mp = lyra_model_default_params();
    if (!rc) rc = lyra_config_apply_model(p->cfg, &mp, err);
    lyra_context_params cp = lyra_context_default_params(); /* the model's geometry */
    if (!rc) rc = lyra_chat_session_open(&p->cs, path, &mp, &cp, "lyra_load_pipeline", err);
    free(path);
    if (rc) return rc;
    p->cs.system = p->gen.system_prompt && p->gen.system_prompt[0] ? p->gen.system_prompt : NULL;
    lyra_sampler_params sp = lyra_sampler_default_params();
    if (!lyra_config_apply_sampler(p->cfg, &sp)) sp.seed = lyra_gen_random_seed();
    lyra_log(LYRA_LOG_INFO, "seed: %llu", (unsigned long long)sp.seed);
    rc = lyra_chat_session_sampler(&p->cs, &sp, "lyra_load_pipeline", err);
    return rc ? rc : setup_template(p, err);
}

int lyra_pipeline_open(const char *model_id, const char *task, const char *config_path,
                       const lyra_kwargs *pipeline_kwargs, lyra_pipeline **out, lyra_error *err) {
    lyra_error local;
    if (!err) err = &local;
    err->code = LYRA_OK;
    err->msg[0] = '\0';
    *out = NULL;
    if (task && strcmp(task, "text-generation"))
        return lyra_err(err, LYRA_ERR_INPUT, "task", "'%s' is not supported (only \"text-generation\")",
                        task);
    lyra_pipeline *p = calloc(1, sizeof *p);
    if (!p) return lyra_err(err, LYRA_ERR_OOM, "lyra_load_pipeline", "out of memory");
    int rc = load_config(p, config_path, pipeline_kwargs, err);
    const char *ref = model_id ? model_id : p->gen.model_id;
    if (!rc && !ref)
        rc = lyra_err(err, LYRA_ERR_INPUT, "model_id",
                      "not given: pass a model_id or set \"model_id\" in a config file (%s)",
                      p->cfg->path ? p->cfg->path : "none was found");
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

/* Evaluate what of toks[n] is not in the KV cache already (keep_prefix 0:
 * all of it, from an empty cache); the counts go to the debug log. */
static int eval_prompt(lyra_pipeline *p, const int32_t *toks, size_t n, int keep_prefix,
                       lyra_error *err) {
    if (n == 0) return lyra_err(err, LYRA_ERR_INPUT, "prompt", "no tokens");
    if (n >= (size_t)p->cs.n_ctx)
        return lyra_err(err, LYRA_ERR_INPUT, "prompt", "%zu token%s; the context (context_length) holds %d",
                        n, n == 1 ? "" : "s", (int)p->cs.n_ctx);
    int32_t keep = 0;
    int rc = lyra_chat_session_eval(&p->cs, toks, n, keep_prefix, &keep, err);
    if (rc) return rc;
    lyra_log(LYRA_LOG_DEBUG, "pipeline: prompt %zu tokens: %zu evaluated, %d reused from the cache", n,
             n - (size_t)keep, (int)keep);
    return LYRA_OK;
}

/* Sample into t from the prompt in the cache (chat: the template's
 * end-of-turn tokens end it too; lstrip: drop one leading space). */
static int gen_loop(lyra_pipeline *p, lyra_textstream *t, int chat, int lstrip, lyra_error *err) {
    lyra_gen_opts o = {p->gen.max_new_tokens, chat, lstrip, NULL, "pipeline"};
    lyra_gen_result res;
    int rc = lyra_chat_session_generate(&p->cs, t, &o, &res, err);
    if (!rc && res.full)
        lyra_log(LYRA_LOG_INFO, "pipeline: the context is full (%d tokens); stopping", (int)p->cs.n_ctx);
    return rc;
}

int lyra_pipeline_generate(lyra_pipeline *p, const char *prompt, lyra_token_cb cb, void *user,
                           char **out_text, lyra_error *err) {
    if (out_text) *out_text = NULL;
    if (!p) return lyra_err(err, LYRA_ERR_INPUT, "lyra_pipeline_generate", "p is NULL");
    lyra_model *m = p->cs.m;
    int32_t *toks = NULL;
    size_t n = 0;
    int rc = LYRA_OK, lstrip = 0;
    if (prompt && prompt[0]) rc = lyra_tokenize(m, prompt, strlen(prompt), -1, 0, &toks, &n, err);
    if (!rc && n == 0) { /* BOS alone */
        free(toks);
        int32_t bos = lyra_token_bos(m);
        if (bos < 0) return lyra_err(err, LYRA_ERR_INPUT, "prompt", "the model has no BOS token: give a prompt");
        toks = malloc(sizeof *toks);
        if (!toks) return lyra_err(err, LYRA_ERR_OOM, "pipeline", "out of memory");
        toks[0] = bos;
        n = 1;
        lstrip = lyra_gen_space_prefix(m);
    }
    if (!rc) rc = eval_prompt(p, toks, n, 0, err);
    free(toks);
    if (rc) return rc;
    lyra_textstream t;
    rc = lyra_textstream_init(&t, p->gen.stop, p->gen.n_stop, 0, cb, user, "pipeline", err);
    if (!rc) rc = gen_loop(p, &t, 0, lstrip, err);
    if (rc) {
        lyra_textstream_free(&t);
        return rc;
    }
    char *text = lyra_textstream_take(&t);
    if (out_text) *out_text = text;
    else free(text);
    return LYRA_OK;
}

/* ------------------------------------------------------------------- chat */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Tokens of the prompt for the last turn, dropping the oldest turns while
 * the prompt and room for the reply (max_new_tokens, else a quarter of the
 * context, at most half) do not fit. The system prompt is always kept. */
static int chat_fit(lyra_pipeline *p, int32_t **toks, size_t *n, lyra_error *err) {
    int dropped = 0, fits = 1;
    int rc = lyra_chat_session_fit(&p->cs, p->gen.max_new_tokens, toks, n, &dropped, &fits, err);
    if (!rc && !fits)
        return lyra_err(err, LYRA_ERR_INPUT, "user_message",
                        "%zu token%s with the system prompt; the context (context_length) holds %d", *n,
                        *n == 1 ? "" : "s",
                        (int)p->cs.n_ctx);
    if (!rc && dropped)
        lyra_log(LYRA_LOG_WARN, "chat: dropped the %d oldest turn%s to fit the context of %d tokens", dropped,
                 dropped == 1 ? "" : "s", (int)p->cs.n_ctx);
    return rc;
}

int lyra_pipeline_chat(lyra_pipeline *p, const char *user_message, lyra_token_cb cb, void *user,
                       char **out_reply, lyra_error *err) {
    if (out_reply) *out_reply = NULL;
    if (!p) return lyra_err(err, LYRA_ERR_INPUT, "lyra_pipeline_chat", "p is NULL");
    if (!user_message) return lyra_err(err, LYRA_ERR_INPUT, "user_message", "is NULL");
    int rc = lyra_chat_session_ask(&p->cs, user_message, err);
    if (rc) return rc;
    int32_t *toks = NULL;
    size_t n = 0;
    rc = chat_fit(p, &toks, &n, err);
    if (rc) {
        lyra_chat_session_unask(&p->cs); /* the message is not kept */
        return rc;
    }
    rc = eval_prompt(p, toks, n, 1, err);
    free(toks);
    lyra_textstream t = {0};
    if (!rc) rc = lyra_textstream_init(&t, p->cs.stops, p->cs.n_stops, 1, cb, user, "pipeline", err);
    if (!rc) rc = gen_loop(p, &t, 1, 0, err);
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
