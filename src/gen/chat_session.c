/* chat_session.c: one conversation with a model, its turns and its KV
 * cache (chat_session.h). */
#include "gen/chat_session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

uint64_t lyra_gen_random_seed(void) {
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

int lyra_gen_space_prefix(const lyra_model *m) {
    int32_t *t = NULL;
    size_t n = 0;
    char piece[64];
    int r = 0;
    if (lyra_tokenize(m, "a", 1, 0, 0, &t, &n, NULL) == LYRA_OK && n > 0)
        r = lyra_token_to_piece(m, t[0], 0, piece, sizeof piece) > 0 && piece[0] == ' ';
    free(t);
    return r;
}

int lyra_chat_session_open(lyra_chat_session *cs, const char *path, const lyra_model_params *mp,
                           const lyra_context_params *cp, const char *where, lyra_error *err) {
    memset(cs, 0, sizeof *cs);
    int rc = lyra_model_open(path, mp, &cs->m, err);
    if (!rc) rc = lyra_context_new(cs->m, cp, &cs->ctx, err);
    if (rc) return rc;
    cs->n_ctx = lyra_context_n_ctx(cs->ctx);
    cs->kv = malloc(sizeof *cs->kv * (size_t)cs->n_ctx);
    if (!cs->kv) return lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
    int64_t tl = lyra_model_chat_template(cs->m, NULL, 0);
    if (tl > 0) {
        cs->template_text = malloc((size_t)tl + 1);
        if (!cs->template_text) return lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
        lyra_model_chat_template(cs->m, cs->template_text, (size_t)tl + 1);
        cs->template_len = (size_t)tl;
    }
    return LYRA_OK;
}

int lyra_chat_session_sampler(lyra_chat_session *cs, const lyra_sampler_params *sp, const char *where,
                              lyra_error *err) {
    cs->s = lyra_sampler_new(sp, lyra_model_n_vocab(cs->m));
    if (!cs->s) return lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
    return LYRA_OK;
}

lyra_chat_kind lyra_chat_session_detect(const lyra_chat_session *cs, int *known, int *has) {
    *has = cs->template_text != NULL;
    int k = 0;
    lyra_chat_kind kind = lyra_chat_detect(cs->template_text, cs->template_len, &k);
    if (!k) { /* no template lyra knows: the architecture's usual one */
        kind = lyra_chat_for_arch(lyra_model_arch(cs->m), &k);
        if (k) k = 2;
    }
    if (known) *known = k;
    return kind;
}

/* Text of token id from the vocabulary as a NUL-terminated string into
 * buf[cap] ("" for none / too long). */
static const char *token_text(const lyra_model *m, int32_t id, char *buf, size_t cap) {
    size_t len = id >= 0 ? lyra_token_text(m, id, buf, cap) : 0;
    if (len >= cap) len = 0;
    buf[len] = '\0';
    return buf;
}

/* The texts and tokens that end a reply: the template's, then stop[n_stop]. */
static int set_stops(lyra_chat_session *cs, const char *const *stop, int n_stop, const char *where,
                     lyra_error *err) {
    free(cs->stops);
    cs->n_stops = cs->n_tmpl_stops = cs->n_eot = 0;
    cs->stops = malloc(sizeof *cs->stops * (size_t)(LYRA_CHAT_MAX_STOPS + n_stop));
    if (!cs->stops) return lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
    cs->n_stops = cs->n_tmpl_stops = lyra_chat_stops(&cs->tmpl, cs->stops);
    for (int i = 0; i < cs->n_stops; i++) {
        int32_t id = lyra_token_find(cs->m, cs->stops[i], strlen(cs->stops[i]));
        if (id >= 0) cs->eot[cs->n_eot++] = id;
    }
    for (int i = 0; i < n_stop; i++) cs->stops[cs->n_stops++] = stop[i];
    return LYRA_OK;
}

int lyra_chat_session_template(lyra_chat_session *cs, lyra_chat_kind kind, const char *const *stop,
                               int n_stop, const char *where, lyra_error *err) {
    char bos[128], eos[128];
    token_text(cs->m, lyra_token_bos(cs->m), bos, sizeof bos);
    token_text(cs->m, lyra_token_eos(cs->m), eos, sizeof eos);
    lyra_chat_free(&cs->tmpl);
    lyra_chat_init(&cs->tmpl, kind, bos, eos, cs->template_text, cs->template_len);
    return set_stops(cs, stop, n_stop, where, err);
}

int lyra_chat_template_is_file(const char *v) {
    size_t n = v ? strlen(v) : 0;
    return n && (strchr(v, '/') || (n > 6 && !strcmp(v + n - 6, ".jinja")) || (n > 3 && !strcmp(v + n - 3, ".j2")));
}

/* The whole file at path (malloc'd, NUL-terminated). */
static int read_file(const char *path, char **out, size_t *len, lyra_error *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return lyra_err(err, LYRA_ERR_INPUT, path, "cannot read the chat template: %s", strerror(errno));
    char *b = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > ((size_t)64 << 20)) {
                free(b);
                fclose(f);
                return lyra_err(err, LYRA_ERR_INPUT, path, "a chat template over 64 MiB");
            }
            char *p = realloc(b, cap);
            if (!p) {
                free(b);
                fclose(f);
                return lyra_err(err, LYRA_ERR_OOM, path, "out of memory");
            }
            b = p;
        }
        size_t k = fread(b + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        return lyra_err(err, LYRA_ERR_INPUT, path, "cannot read the chat template");
    }
    b[n] = '\0';
    *out = b;
    *len = n;
    return LYRA_OK;
}

int lyra_chat_session_template_jinja(lyra_chat_session *cs, const char *path, const char *const *stop,
                                     int n_stop, const char *where, lyra_error *err) {
    char bos[128], eos[128];
    token_text(cs->m, lyra_token_bos(cs->m), bos, sizeof bos);
    token_text(cs->m, lyra_token_eos(cs->m), eos, sizeof eos);
    lyra_chat_free(&cs->tmpl);
    char *text = NULL;
    size_t len = 0;
    int rc;
    if (path) rc = read_file(path, &text, &len, err);
    else if (!cs->template_text) rc = lyra_err(err, LYRA_ERR_INPUT, where, "the model has no tokenizer.chat_template");
    else rc = LYRA_OK;
    if (!rc)
        rc = lyra_chat_init_jinja(&cs->tmpl, path ? text : cs->template_text, path ? len : cs->template_len,
                                  path ? path : "tokenizer.chat_template", bos, eos, err);
    free(text);
    return rc ? rc : set_stops(cs, stop, n_stop, where, err);
}

void lyra_chat_session_drop(lyra_chat_session *cs, int k) {
    for (int i = 0; i < k; i++) {
        free(cs->user[i]);
        free(cs->reply[i]);
    }
    memmove(cs->user, cs->user + k, sizeof *cs->user * (size_t)(cs->n_turns - k));
    memmove(cs->reply, cs->reply + k, sizeof *cs->reply * (size_t)(cs->n_turns - k));
    cs->n_turns -= k;
}

void lyra_chat_session_free(lyra_chat_session *cs) {
    if (cs->user) lyra_chat_session_drop(cs, cs->n_turns);
    free(cs->user);
    free(cs->reply);
    free(cs->kv);
    free(cs->stops);
    free(cs->template_text);
    lyra_chat_free(&cs->tmpl);
    lyra_sampler_free(cs->s);
    lyra_context_free(cs->ctx);
    lyra_model_free(cs->m);
    memset(cs, 0, sizeof *cs);
}

int lyra_chat_session_ask(lyra_chat_session *cs, const char *text, lyra_error *err) {
    if (cs->n_turns == cs->cap_turns) {
        int cap = cs->cap_turns ? 2 * cs->cap_turns : 16;
        char **u = realloc(cs->user, sizeof *u * (size_t)cap);
        if (u) cs->user = u;
        char **r = u ? realloc(cs->reply, sizeof *r * (size_t)cap) : NULL;
        if (!r) return lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
        cs->reply = r;
        cs->cap_turns = cap;
    }
    char *t = strdup(text);
    if (!t) return lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
    cs->user[cs->n_turns] = t;
    cs->reply[cs->n_turns] = NULL;
    cs->n_turns++;
    return LYRA_OK;
}

void lyra_chat_session_unask(lyra_chat_session *cs) { free(cs->user[--cs->n_turns]); }

/* Render turns [first, n_turns) (the last one asked) and tokenize: *toks
 * malloc'd. BOS is added as the model says unless the text starts with it. */
static int prompt_tokens(lyra_chat_session *cs, int first, int32_t **toks, size_t *n, lyra_error *err) {
    int k = cs->n_turns - first;
    lyra_chat_turn *t = malloc(sizeof *t * (size_t)k);
    if (!t) return lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
    for (int i = 0; i < k; i++) {
        t[i].user = cs->user[first + i];
        t[i].assistant = cs->reply[first + i];
    }
    char *text = NULL;
    size_t len = 0;
    int rc = lyra_chat_render(&cs->tmpl, cs->system, t, (size_t)k, &text, &len, err);
    free(t);
    if (rc) return rc;
    size_t nb = strlen(cs->tmpl.bos);
    int add_bos = nb && len >= nb && !memcmp(text, cs->tmpl.bos, nb) ? 0 : -1;
    lyra_log(LYRA_LOG_DEBUG, "chat: prompt text (%zu bytes): %s", len, text);
    rc = lyra_tokenize(cs->m, text, len, add_bos, 1, toks, n, err);
    free(text);
    return rc;
}

int lyra_chat_session_fit(lyra_chat_session *cs, int64_t n_predict, int32_t **toks, size_t *n,
                          int *dropped, int *fits, lyra_error *err) {
    int64_t room = n_predict >= 0 ? n_predict : cs->n_ctx / 4;
    if (room > cs->n_ctx / 2) room = cs->n_ctx / 2;
    int first = 0;
    *dropped = 0;
    *fits = 1;
    for (;;) {
        int rc = prompt_tokens(cs, first, toks, n, err);
        if (rc) return rc;
        int last = first == cs->n_turns - 1;
        if ((int64_t)*n + room <= cs->n_ctx || (last && (int64_t)*n < cs->n_ctx)) break;
        free(*toks);
        *toks = NULL;
        if (last) {
            *fits = 0;
            return LYRA_OK;
        }
        first++;
    }
    *dropped = first;
    if (first) lyra_chat_session_drop(cs, first);
    return LYRA_OK;
}

int lyra_chat_session_eval(lyra_chat_session *cs, const int32_t *toks, size_t n, int keep_prefix,
                           int32_t *kept, lyra_error *err) {
    int32_t keep = 0;
    while (keep_prefix && keep < cs->n_kv && (size_t)keep < n && cs->kv[keep] == toks[keep]) keep++;
    if ((size_t)keep == n) keep--; /* the last token again, for its logits */
    lyra_context_truncate(cs->ctx, keep);
    keep = lyra_context_pos(cs->ctx); /* less when a sliding window's ring lost the positions */
    cs->n_kv = keep;
    int rc = lyra_eval(cs->ctx, toks + keep, (int32_t)(n - (size_t)keep), 0, err);
    if (rc) return rc;
    cs->n_evaluated += n - (size_t)keep;
    memcpy(cs->kv + keep, toks + keep, sizeof *toks * (n - (size_t)keep));
    cs->n_kv = (int32_t)n;
    *kept = keep;
    return LYRA_OK;
}

/* t ends the reply: an end-of-generation token, or (chat) a template's. */
static int is_end(const lyra_chat_session *cs, int32_t t, int chat) {
    if (lyra_token_is_eog(cs->m, t)) return 1;
    for (int i = 0; chat && i < cs->n_eot; i++)
        if (cs->eot[i] == t) return 1;
    return 0;
}

int lyra_chat_session_generate(lyra_chat_session *cs, lyra_textstream *t, const lyra_gen_opts *o,
                               lyra_gen_result *res, lyra_error *err) {
    char buf[512];
    memset(res, 0, sizeof *res);
    lyra_detok *d = lyra_detok_new(cs->m);
    if (!d) return lyra_err(err, LYRA_ERR_OOM, o->where, "out of memory");
    lyra_sampler_reset(cs->s); /* the repetition window holds the prompt, as generate's does */
    for (int32_t i = 0; i < cs->n_kv; i++) lyra_sampler_accept(cs->s, cs->kv[i]);
    int64_t max = o->max_tokens;
    int rc = LYRA_OK, lstrip = o->lstrip;
    while (!t->stopped && !t->cancelled && (max < 0 || res->n_gen < max)) {
        if (o->interrupt && *o->interrupt) {
            res->interrupted = 1;
            break;
        }
        const float *logits = lyra_get_logits(cs->ctx, -1);
        if (!logits) {
            rc = lyra_err(err, LYRA_ERR_RUNTIME, o->where, "no logits");
            break;
        }
        int32_t tok = lyra_sampler_sample(cs->s, logits);
        lyra_sampler_accept(cs->s, tok);
        if (is_end(cs, tok, o->chat)) break;
        res->n_gen++;
        size_t k = lyra_detok_feed(d, tok, buf, sizeof buf);
        const char *q = buf;
        if (lstrip && k > 0) {
            if (buf[0] == ' ') {
                q++;
                k--;
            }
            lstrip = 0;
        }
        rc = lyra_textstream_feed(t, q, k, err);
        if (rc || t->stopped || t->cancelled || (max >= 0 && res->n_gen >= max)) break;
        if (cs->n_kv >= cs->n_ctx) {
            res->full = 1;
            break;
        }
        rc = lyra_eval(cs->ctx, &tok, 1, 0, err);
        if (rc) break;
        cs->n_evaluated++;
        cs->kv[cs->n_kv++] = tok;
    }
    if (!rc && !t->stopped) {
        size_t k = lyra_detok_flush(d, buf, sizeof buf);
        rc = lyra_textstream_feed(t, buf, k, err);
    }
    if (!rc) lyra_textstream_finish(t);
    lyra_detok_free(d);
    return rc;
}

void lyra_chat_session_answer(lyra_chat_session *cs, char *reply) { cs->reply[cs->n_turns - 1] = reply; }
