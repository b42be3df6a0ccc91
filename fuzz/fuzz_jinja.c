/* fuzz_jinja.c: libFuzzer target for the Jinja renderer (jinja/jinja.h):
 * arbitrary bytes parsed as a chat template and, when they parse, rendered
 * with a small conversation under tight limits. Checked beyond "no crash /
 * no sanitizer report": a failure is LYRA_ERR_INPUT (or OOM) with one line
 * naming the template ("tmpl:LINE: ..." or "tmpl: ..."); a success returns
 * a NUL-terminated text of the length it reports, within the output limit. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja/jinja.h"

static void fz_fail(const char *what, const uint8_t *d, size_t n, const char *msg) {
    fprintf(stderr, "fuzz_jinja: %s on input of %zu bytes: \"%.*s\": %s\n", what, n, (int)n, (const char *)d, msg);
    abort();
}

static void check_err(int rc, const lyra_error *err, const uint8_t *d, size_t n) {
    if (rc != LYRA_ERR_INPUT && rc != LYRA_ERR_OOM) fz_fail("unexpected status", d, n, err->msg);
    if (strncmp(err->msg, "tmpl:", 5) || strchr(err->msg, '\n')) fz_fail("message", d, n, err->msg);
}

static lyra_jv *message(lyra_jinja_vars *v, const char *role, const char *content) {
    lyra_jv *m = lyra_jv_dict(v);
    lyra_jv_set(v, m, "role", lyra_jv_str(v, role, (size_t)-1));
    lyra_jv_set(v, m, "content", lyra_jv_str(v, content, (size_t)-1));
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lyra_jinja *t = NULL;
    lyra_error err = {0};
    int rc = lyra_jinja_parse((const char *)data, size, "tmpl", &t, &err);
    if (rc) {
        check_err(rc, &err, data, size);
        return 0;
    }
    lyra_jinja_vars *v = lyra_jinja_vars_new();
    lyra_jv *msgs = lyra_jv_list(v);
    lyra_jv_push(v, msgs, message(v, "system", "Be brief."));
    lyra_jv_push(v, msgs, message(v, "user", "Hi {{ there }} é"));
    lyra_jv_push(v, msgs, message(v, "assistant", " <think>x</think> Hello "));
    lyra_jv_push(v, msgs, message(v, "user", "Bye"));
    lyra_jinja_vars_set(v, "messages", msgs);
    lyra_jinja_vars_set(v, "add_generation_prompt", lyra_jv_bool(v, 1));
    lyra_jinja_vars_set(v, "bos_token", lyra_jv_str(v, "<s>", (size_t)-1));
    lyra_jinja_vars_set(v, "eos_token", lyra_jv_str(v, "</s>", (size_t)-1));
    lyra_jinja_vars_set(v, "tools", lyra_jv_none(v));
    lyra_jinja_limits lim = {.max_output = 1 << 16, .max_memory = 8 << 20, .max_steps = 20000, .max_depth = 16,
                             .now = 1721995200};
    char *out = NULL;
    size_t n = 0;
    rc = lyra_jinja_render(t, v, &lim, &out, &n, &err);
    if (rc) check_err(rc, &err, data, size);
    else if (!out || out[n] != '\0' || n > lim.max_output)
        fz_fail("bad output", data, size, "");
    free(out);
    lyra_jinja_vars_free(v);
    lyra_jinja_free(t);
    return 0;
}
