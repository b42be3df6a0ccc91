/* chat_jinja.c: chat templates that are Jinja programs (chat.h): the
 * model's tokenizer.chat_template or a template file, rendered by src/jinja/
 * with the variables transformers' apply_chat_template passes. */
#include <stdlib.h>
#include <string.h>

#include "gen/chat.h"
#include "jinja/jinja.h"

int lyra_chat_init_jinja(lyra_chat *c, const char *tmpl, size_t len, const char *name, const char *bos,
                         const char *eos, lyra_error *err) {
    int known = 0;
    lyra_chat_kind kind = lyra_chat_detect(tmpl, len, &known);
    lyra_chat_init(c, known ? kind : LYRA_CHAT_NONE, bos, eos, tmpl, len);
    struct lyra_jinja *t = NULL;
    int rc = lyra_jinja_parse(tmpl ? tmpl : "", tmpl ? len : 0, name, &t, err);
    if (rc) {
        memset(c, 0, sizeof *c);
        return rc;
    }
    c->jinja = t;
    return LYRA_OK;
}

void lyra_chat_free(lyra_chat *c) {
    lyra_jinja_free(c->jinja);
    c->jinja = NULL;
}

static lyra_jv *message(lyra_jinja_vars *v, const char *role, const char *content) {
    lyra_jv *m = lyra_jv_dict(v);
    if (lyra_jv_set(v, m, "role", lyra_jv_str(v, role, (size_t)-1)) ||
        lyra_jv_set(v, m, "content", lyra_jv_str(v, content, (size_t)-1)))
        return NULL;
    return m;
}

int lyra_chat_jinja_render(const lyra_chat *c, const char *system, const lyra_chat_turn *turns, size_t n,
                           char **out, size_t *out_len, lyra_error *err) {
    *out = NULL;
    lyra_jinja_vars *v = lyra_jinja_vars_new();
    lyra_jv *msgs = lyra_jv_list(v);
    int rc = system ? lyra_jv_push(v, msgs, message(v, "system", system)) : LYRA_OK;
    for (size_t i = 0; !rc && i < n; i++) {
        rc = lyra_jv_push(v, msgs, message(v, "user", turns[i].user));
        if (!rc && turns[i].assistant) rc = lyra_jv_push(v, msgs, message(v, "assistant", turns[i].assistant));
    }
    if (!rc) rc = lyra_jinja_vars_set(v, "messages", msgs);
    if (!rc) rc = lyra_jinja_vars_set(v, "tools", lyra_jv_none(v));
    if (!rc) rc = lyra_jinja_vars_set(v, "documents", lyra_jv_none(v));
    if (!rc) rc = lyra_jinja_vars_set(v, "add_generation_prompt", lyra_jv_bool(v, 1));
    if (!rc) rc = lyra_jinja_vars_set(v, "bos_token", lyra_jv_str(v, c->bos, (size_t)-1));
    if (!rc) rc = lyra_jinja_vars_set(v, "eos_token", lyra_jv_str(v, c->eos, (size_t)-1));
    if (rc) rc = lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
    else rc = lyra_jinja_render(c->jinja, v, NULL, out, out_len, err);
    lyra_jinja_vars_free(v);
    return rc;
}
