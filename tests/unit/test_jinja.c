/* test_jinja.c: the Jinja renderer (src/jinja/jinja.h) against jinja2.
 *   1. every real chat template of tests/data/chat_templates/cases.json
 *      (23 models; SOURCES.md says where each came from) x every
 *      conversation, byte for byte against expected/ (rendered by jinja2
 *      with Hugging Face's settings: tests/reference/render_chat.py), and
 *      the same error where jinja2 raised one;
 *   2. the snippets of tests/data/jinja/snippets.json (statements, loop
 *      variables, whitespace control, filters, tests, methods, operators,
 *      value printing) against snippets.expected.json
 *      (tests/reference/render_jinja.py);
 *   3. what jinja2 has no reference for: errors naming the line,
 *      unsupported constructs, the limits against hostile templates, the
 *      value-building API. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jinja/jinja.h"
#include "testutil.h"

#define NOW 1721995200 /* render_jinja.py's NOW, and cases.json's "now" */

static char g_src[2048];

static const char *esc(const char *s, size_t n) {
    static char buf[2][4096];
    static int which = 0;
    char *b = buf[which ^= 1];
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < sizeof buf[0]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') o += (size_t)snprintf(b + o, sizeof buf[0] - o, "\\n");
        else if (c < 0x20) o += (size_t)snprintf(b + o, sizeof buf[0] - o, "\\x%02x", c);
        else b[o++] = (char)c;
    }
    b[o] = '\0';
    return b;
}

/* A JSON value as a template value. */
static lyra_jv *from_json(lyra_jinja_vars *v, json_t *j) {
    switch (json_typeof(j)) {
    case JSON_STRING: return lyra_jv_str(v, json_string_value(j), json_string_length(j));
    case JSON_INTEGER: return lyra_jv_int(v, json_integer_value(j));
    case JSON_REAL: return lyra_jv_float(v, json_real_value(j));
    case JSON_TRUE: return lyra_jv_bool(v, 1);
    case JSON_FALSE: return lyra_jv_bool(v, 0);
    case JSON_NULL: return lyra_jv_none(v);
    case JSON_ARRAY: {
        lyra_jv *l = lyra_jv_list(v);
        for (size_t i = 0; i < json_array_size(j); i++)
            if (lyra_jv_push(v, l, from_json(v, json_array_get(j, i)))) return NULL;
        return l;
    }
    case JSON_OBJECT: {
        lyra_jv *d = lyra_jv_dict(v);
        const char *k;
        json_t *x;
        json_object_foreach(j, k, x) if (lyra_jv_set(v, d, k, from_json(v, x))) return NULL;
        return d;
    }
    }
    return NULL;
}

/* Parse and render src with vars (a JSON object, may be NULL). *out
 * malloc'd on success; err filled on failure. */
static int render(const char *src, size_t len, json_t *vars, const lyra_jinja_limits *lim, char **out,
                  size_t *olen, lyra_error *err) {
    lyra_jinja *t = NULL;
    *out = NULL;
    int rc = lyra_jinja_parse(src, len, "t", &t, err);
    if (rc) return rc;
    lyra_jinja_vars *v = lyra_jinja_vars_new();
    const char *k;
    json_t *x;
    if (vars) json_object_foreach(vars, k, x) if (lyra_jinja_vars_set(v, k, from_json(v, x))) rc = LYRA_ERR_OOM;
    lyra_jinja_limits l = lim ? *lim : (lyra_jinja_limits){0};
    if (!l.now) l.now = NOW;
    if (!rc) rc = lyra_jinja_render(t, v, &l, out, olen, err);
    lyra_jinja_vars_free(v);
    lyra_jinja_free(t);
    return rc;
}

static int render_str(const char *src, json_t *vars, char **out, lyra_error *err) {
    size_t n;
    return render(src, strlen(src), vars, NULL, out, &n, err);
}

/* ---------------------------------------------------------------- 1. chat templates */

static json_t *messages_of(json_t *c) {
    json_t *m = json_array();
    const char *sys = json_string_value(json_object_get(c, "system"));
    if (sys) json_array_append_new(m, json_pack("{s:s,s:s}", "role", "system", "content", sys));
    json_t *turns = json_object_get(c, "turns");
    for (size_t i = 0; i < json_array_size(turns); i++) {
        json_t *t = json_array_get(turns, i);
        json_array_append_new(m, json_pack("{s:s,s:O}", "role", "user", "content", json_array_get(t, 0)));
        if (json_is_string(json_array_get(t, 1)))
            json_array_append_new(m, json_pack("{s:s,s:O}", "role", "assistant", "content", json_array_get(t, 1)));
    }
    return m;
}

static void test_chat_templates(void) {
    char dir[2100], path[2600];
    snprintf(dir, sizeof dir, "%s/tests/data/chat_templates", g_src);
    snprintf(path, sizeof path, "%s/cases.json", dir);
    json_error_t jerr;
    json_t *spec = json_load_file(path, 0, &jerr);
    CHECK(spec != NULL, "%s: %s", path, jerr.text);
    if (!spec) return;
    json_t *templates = json_object_get(spec, "templates"), *cases = json_object_get(spec, "cases");
    CHECK(json_integer_value(json_object_get(spec, "now")) == NOW, "cases.json's now");
    int n_ok = 0, n_err = 0;
    for (size_t ti = 0; ti < json_array_size(templates); ti++) {
        json_t *jt = json_array_get(templates, ti);
        const char *file = json_string_value(json_object_get(jt, "file"));
        snprintf(path, sizeof path, "%s/%s", dir, file);
        size_t tlen = 0;
        char *tmpl = test_read_file(path, &tlen);
        CHECK(tmpl != NULL, "cannot read %s", path);
        if (!tmpl) continue;
        lyra_jinja *t = NULL;
        lyra_error err;
        int rc = lyra_jinja_parse(tmpl, tlen, file, &t, &err);
        CHECK(rc == 0, "%s: %s", file, err.msg);
        for (size_t ci = 0; t && ci < json_array_size(cases); ci++) {
            json_t *jc = json_array_get(cases, ci);
            const char *cname = json_string_value(json_object_get(jc, "name"));
            char stem[2900];
            snprintf(stem, sizeof stem, "%s/expected/%.*s.%s", dir, (int)(strlen(file) - strlen(".jinja")), file,
                     cname);
            lyra_jinja_vars *v = lyra_jinja_vars_new();
            json_t *msgs = messages_of(jc);
            json_t *agp = json_object_get(jc, "add_generation_prompt");
            int vrc = lyra_jinja_vars_set(v, "messages", from_json(v, msgs)) |
                      lyra_jinja_vars_set(v, "tools", lyra_jv_none(v)) |
                      lyra_jinja_vars_set(v, "documents", lyra_jv_none(v)) |
                      lyra_jinja_vars_set(v, "add_generation_prompt", lyra_jv_bool(v, !json_is_false(agp))) |
                      lyra_jinja_vars_set(v, "bos_token", lyra_jv_str(v, json_string_value(json_object_get(jt, "bos")), (size_t)-1)) |
                      lyra_jinja_vars_set(v, "eos_token", lyra_jv_str(v, json_string_value(json_object_get(jt, "eos")), (size_t)-1));
            CHECK(vrc == 0, "vars");
            json_decref(msgs);
            lyra_jinja_limits lim = {.now = NOW};
            char *out = NULL;
            size_t olen = 0;
            rc = lyra_jinja_render(t, v, &lim, &out, &olen, &err);
            char epath[3000];
            snprintf(epath, sizeof epath, "%s.txt", stem);
            size_t elen = 0;
            char *expect = test_read_file(epath, &elen);
            if (expect) {
                CHECK(rc == 0, "%s %s: %s", file, cname, err.msg);
                if (!rc) {
                    CHECK(olen == elen && !memcmp(out, expect, elen), "%s %s:\n  got  [%s]\n  want [%s]", file, cname,
                          esc(out, olen), esc(expect, elen));
                    n_ok++;
                }
            } else {
                snprintf(epath, sizeof epath, "%s.error.txt", stem);
                expect = test_read_file(epath, &elen);
                CHECK(expect != NULL, "neither %s.txt nor .error.txt", stem);
                if (expect) {
                    if (elen && expect[elen - 1] == '\n') expect[--elen] = '\0';
                    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, expect) && !strncmp(err.msg, file, strlen(file)),
                          "%s %s: want the error [%s], got rc %d [%s]", file, cname, expect, rc,
                          rc ? err.msg : esc(out, olen));
                    n_err++;
                }
            }
            free(expect);
            free(out);
            lyra_jinja_vars_free(v);
        }
        lyra_jinja_free(t);
        free(tmpl);
    }
    CHECK(json_array_size(templates) >= 23, "only %zu templates", json_array_size(templates));
    CHECK(n_ok >= 200 && n_err >= 10, "only %d renderings and %d errors compared", n_ok, n_err);
    json_decref(spec);
}

/* ---------------------------------------------------------------- 2. snippets */

static void test_snippets(void) {
    char path[2600];
    snprintf(path, sizeof path, "%s/tests/data/jinja/snippets.json", g_src);
    json_error_t jerr;
    json_t *snips = json_load_file(path, 0, &jerr);
    CHECK(snips != NULL, "%s: %s", path, jerr.text);
    snprintf(path, sizeof path, "%s/tests/data/jinja/snippets.expected.json", g_src);
    json_t *want = json_load_file(path, 0, &jerr);
    CHECK(want != NULL, "%s: %s", path, jerr.text);
    if (!snips || !want) return;
    CHECK(json_array_size(snips) == json_array_size(want), "snippets.expected.json is stale");
    for (size_t i = 0; i < json_array_size(snips) && i < json_array_size(want); i++) {
        json_t *s = json_array_get(snips, i), *w = json_array_get(want, i);
        json_t *t = json_object_get(s, "t");
        char *out = NULL;
        size_t olen = 0;
        lyra_error err = {0};
        int rc = render(json_string_value(t), json_string_length(t), json_object_get(s, "v"), NULL, &out, &olen, &err);
        json_t *wo = json_object_get(w, "out");
        if (wo) {
            CHECK(rc == 0, "snippet %zu [%s]: %s", i, json_string_value(t), err.msg);
            if (!rc)
                CHECK(olen == json_string_length(wo) && !memcmp(out, json_string_value(wo), olen),
                      "snippet %zu [%s]:\n  got  [%s]\n  want [%s]", i, esc(json_string_value(t), json_string_length(t)),
                      esc(out, olen), esc(json_string_value(wo), json_string_length(wo)));
        } else {
            const char *we = json_string_value(json_object_get(w, "error"));
            CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, we), "snippet %zu [%s]: want the error [%s], got rc %d [%s]",
                  i, json_string_value(t), we, rc, rc ? err.msg : esc(out, olen));
        }
        free(out);
    }
    json_decref(snips);
    json_decref(want);
}

/* ---------------------------------------------------------------- 3. errors and limits */

/* src fails (parse or render) with a message containing want. */
static void fails(const char *src, const char *want) {
    char *out = NULL;
    lyra_error err = {0};
    int rc = render_str(src, NULL, &out, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, want), "[%s]: want rc 2 and [%s], got rc %d [%s]", src, want, rc,
          rc ? err.msg : out);
    free(out);
}

static void test_errors(void) {
    /* syntax errors and unsupported constructs name the line */
    fails("a\nb\n{% if x %}", "t:3: unexpected end of template: 'elif' missing");
    fails("{% for x in y %}\n{% endif %}", "t:2: unexpected 'endif'");
    fails("{% endfor %}", "t:1: unexpected 'endfor' (no block is open)");
    fails("\n\n{% include 'x.j2' %}", "t:3: the 'include' statement is not supported");
    fails("{% extends 'base' %}", "t:1: the 'extends' statement is not supported");
    fails("{% frobnicate %}", "t:1: unknown statement 'frobnicate'");
    fails("x\n{{ y | wordwrap }}", "t:2: unknown or unsupported filter 'wordwrap'");
    fails("{{ y is prime }}", "t:1: unknown or unsupported test 'prime'");
    fails("{{ 'abc }}", "t:1: unterminated string");
    fails("{{ 1 + }}", "t:1: unexpected '}}'");
    fails("{{ x", "t:1: unexpected end of template: '{{' not closed");
    fails("{% break %}", "t:1: 'break' outside a for loop");
    fails("{% for x in y recursive %}{% endfor %}", "recursive for loops are not supported");
    fails("{{ f(*a) }}", "*args and **kwargs in calls are not supported");
    fails("{{ '%s' % 1 }}", "printf-style string formatting");
    fails("{{ 'a'.format(1) }}", "the string method 'format' is not supported");
    fails("{{ 1 + 'a' }}", "unsupported operand type(s) for +: 'int' and 'str'");
    fails("{{ 1 // 0 }}", "integer division or modulo by zero");
    fails("{{ 9223372036854775807 + 1 }}", "integer overflow");
    fails("{% set l = [1] %}{{ l.append(2) }}", "access to attribute 'append' of 'list' object is unsafe");
    fails("\n\n\n{{ raise_exception('No system role') }}", "t:4: No system role");
    fails("{% set x = 1 %}{% set x.a = 2 %}", "cannot assign attribute on non-namespace object");
    fails("{% for a, b in [1] %}{% endfor %}", "cannot unpack");
    fails("{{ [1] < 'a' }}", "'<' not supported between instances of 'list' and 'str'");
    fails("{{ range(1000000) }}", "Range too big");
    fails("{{ 'x' | tojson(ensure_ascii=true) }}", "ensure_ascii=True) is not supported");
    fails("{{ u | tojson }}", "Undefined is not JSON serializable");
    fails("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", "macro 'm' takes not more than 1 argument(s)");
    fails("{{ '\\N{DASH}' }}", "\\N{...} are not supported");
    fails("{{ a \x01 }}", "unexpected character");
    /* deep nesting is refused, not a crash */
    char deep[2000];
    size_t k = 0;
    k += (size_t)snprintf(deep + k, sizeof deep - k, "{{ ");
    for (int i = 0; i < 300; i++) deep[k++] = '(';
    deep[k++] = '1';
    for (int i = 0; i < 300; i++) deep[k++] = ')';
    snprintf(deep + k, sizeof deep - k, " }}");
    fails(deep, "nested too deeply");
    k = 0;
    for (int i = 0; i < 150; i++) k += (size_t)snprintf(deep + k, sizeof deep - k, "{%% if 1 %%}");
    fails(deep, "nested too deeply");
}

static void test_limits(void) {
    char *out = NULL;
    size_t n = 0;
    lyra_error err = {0};
    /* output */
    lyra_jinja_limits lim = {.max_output = 1000};
    const char *big = "{% for i in range(2000) %}x{% endfor %}";
    int rc = render(big, strlen(big), NULL, &lim, &out, &n, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "t:1: the output is over 1000 bytes"), "output limit: %s", err.msg);
    free(out);
    /* a doubling string */
    const char *dbl = "{% set s = namespace(v='ab') %}{% for i in range(40) %}{% set s.v = s.v + s.v %}{% endfor %}";
    rc = render(dbl, strlen(dbl), NULL, &lim, &out, &n, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "over the output limit"), "string limit: %s", err.msg);
    free(out);
    /* steps */
    lyra_jinja_limits lim2 = {.max_steps = 5000};
    const char *loops = "{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}";
    rc = render(loops, strlen(loops), NULL, &lim2, &out, &n, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "more than 5000 loop iterations"), "steps: %s", err.msg);
    free(out);
    /* macro recursion */
    const char *rec = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}\n{{ f(0) }}";
    rc = render(rec, strlen(rec), NULL, NULL, &out, &n, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "macro calls nested more than 64 deep"), "depth: %s", err.msg);
    free(out);
    /* memory */
    lyra_jinja_limits lim3 = {.max_memory = 1 << 20};
    const char *mem = "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + [i] %}{% endfor %}";
    rc = render(mem, strlen(mem), NULL, &lim3, &out, &n, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "more than 1048576 bytes of memory"), "memory: %s", err.msg);
    free(out);
    /* a namespace holding itself prints without recursing forever */
    const char *cyc = "{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}";
    rc = render(cyc, strlen(cyc), NULL, NULL, &out, &n, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "nested too deeply"), "cycle: rc %d %s", rc, rc ? err.msg : out);
    free(out);
}

static void test_api(void) {
    /* a template renders again with other variables; strftime_now's time */
    lyra_jinja *t = NULL;
    lyra_error err;
    const char *src = "{{ name }} {{ strftime_now('%Y-%m-%d') }}\n";
    CHECK(lyra_jinja_parse(src, strlen(src), "api", &t, &err) == 0, "%s", err.msg);
    for (int i = 0; t && i < 2; i++) {
        lyra_jinja_vars *v = lyra_jinja_vars_new();
        CHECK(lyra_jinja_vars_set(v, "name", lyra_jv_str(v, i ? "b" : "a", (size_t)-1)) == 0, "set");
        lyra_jinja_limits lim = {.now = NOW};
        char *out = NULL;
        size_t n = 0;
        CHECK(lyra_jinja_render(t, v, &lim, &out, &n, &err) == 0, "%s", err.msg);
        CHECK(out && !strcmp(out, i ? "b 2024-07-26" : "a 2024-07-26") && n == strlen(out), "render %d: [%s]", i,
              out ? out : "");
        free(out);
        lyra_jinja_vars_free(v);
    }
    lyra_jinja_free(t);
    /* NULL values fail as out of memory, without crashing */
    lyra_jinja_vars *v = lyra_jinja_vars_new();
    CHECK(lyra_jv_push(v, lyra_jv_list(v), NULL) == LYRA_ERR_OOM, "push NULL");
    CHECK(lyra_jv_set(v, NULL, "k", lyra_jv_none(v)) == LYRA_ERR_OOM, "set on NULL");
    CHECK(lyra_jinja_vars_set(v, "x", NULL) == LYRA_ERR_OOM, "vars_set NULL");
    lyra_jinja_vars_free(v);
    /* an empty template */
    char *out = NULL;
    CHECK(render_str("", NULL, &out, &err) == 0 && out && !*out, "empty");
    free(out);
}

int main(void) {
    setenv("TZ", "UTC", 1); /* strftime_now: the references are in UTC */
    tzset();
    const char *src = getenv("LYRA_SRC_DIR");
    snprintf(g_src, sizeof g_src, "%s", src && *src ? src : ".");
    test_chat_templates();
    test_snippets();
    test_errors();
    test_limits();
    test_api();
    return test_done();
}
