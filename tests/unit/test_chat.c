/* test_chat.c: chat templates (src/gen/chat.h) against real models' Jinja
 * templates. tests/data/chat_templates/ holds each model's chat_template
 * string (SOURCES.md says where from) and, in expected/, what Hugging Face's
 * Jinja rendering gives for the conversations of cases.json (generated once
 * by tests/reference/render_chat.py --write, checked by --check in
 * test_cli_chat.sh when jinja2 is installed). Here: detection of each
 * template, byte-exact rendering, the incremental text (P(n-1) + reply +
 * next == P(n)), plain and none (specified by chat.h, no Jinja source),
 * stop strings, names and malformed conversations. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen/chat.h"
#include "testutil.h"

static char g_dir[2048]; /* tests/data/chat_templates */

/* s with control characters escaped, for failure messages (static buffer). */
static const char *esc(const char *s, size_t n) {
    static char buf[2][8192];
    static int which = 0;
    char *b = buf[which ^= 1];
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < sizeof buf[0]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') o += (size_t)snprintf(b + o, sizeof buf[0] - o, "\\n");
        else if (c == '\t') o += (size_t)snprintf(b + o, sizeof buf[0] - o, "\\t");
        else if (c < 0x20) o += (size_t)snprintf(b + o, sizeof buf[0] - o, "\\x%02x", c);
        else b[o++] = (char)c;
    }
    b[o] = '\0';
    return b;
}

/* The turns of a case: json [[user, reply|null], ...]; *n set. */
static lyra_chat_turn *case_turns(json_t *jt, size_t *n) {
    *n = json_array_size(jt);
    lyra_chat_turn *t = calloc(*n ? *n : 1, sizeof *t);
    for (size_t i = 0; i < *n; i++) {
        json_t *pair = json_array_get(jt, i);
        t[i].user = json_string_value(json_array_get(pair, 0));
        t[i].assistant = json_string_value(json_array_get(pair, 1)); /* NULL for null */
    }
    return t;
}

/* P(k-1) + render_reply(turn k-2) + render_next(first k turns) == P(k). */
static void check_incremental(const lyra_chat *c, const char *sys, const lyra_chat_turn *turns, size_t n,
                              const char *what) {
    for (size_t k = 2; k <= n; k++) {
        lyra_chat_turn *t = malloc(sizeof *t * k);
        memcpy(t, turns, sizeof *t * k);
        t[k - 1].assistant = NULL;
        char *full = NULL, *prev = NULL, *reply = NULL, *next = NULL;
        size_t nf = 0, np = 0, nr = 0, nn = 0;
        lyra_error err;
        int rc = lyra_chat_render(c, sys, t, k, &full, &nf, &err);
        const char *ans = t[k - 2].assistant;
        t[k - 2].assistant = NULL;
        rc |= lyra_chat_render(c, sys, t, k - 1, &prev, &np, &err);
        t[k - 2].assistant = ans;
        rc |= lyra_chat_render_reply(c, ans, &reply, &nr, &err);
        rc |= lyra_chat_render_next(c, sys, t, k, &next, &nn, &err);
        CHECK(rc == 0, "%s: k=%zu: %s", what, k, err.msg);
        if (!rc) {
            int same = np + nr + nn == nf && !memcmp(full, prev, np) && !memcmp(full + np, reply, nr) &&
                       !memcmp(full + np + nr, next, nn);
            CHECK(same, "%s: k=%zu: P(k-1)+reply+next != P(k): next=[%s] full=[%s]", what, k, esc(next, nn),
                  esc(full, nf));
        }
        free(full);
        free(prev);
        free(reply);
        free(next);
        free(t);
    }
}

/* Every template x case of cases.json against its Jinja rendering. */
static void test_real_templates(void) {
    char path[2600];
    snprintf(path, sizeof path, "%s/cases.json", g_dir);
    json_error_t jerr;
    json_t *spec = json_load_file(path, 0, &jerr);
    CHECK(spec != NULL, "%s: %s", path, jerr.text);
    if (!spec) return;
    json_t *templates = json_object_get(spec, "templates"), *cases = json_object_get(spec, "cases");
    int n_compared = 0;
    for (size_t ti = 0; ti < json_array_size(templates); ti++) {
        json_t *jt = json_array_get(templates, ti);
        const char *file = json_string_value(json_object_get(jt, "file"));
        const char *kind_name = json_string_value(json_object_get(jt, "kind"));
        if (!kind_name) continue; /* no hand-written template: tests/unit/test_jinja.c's */
        int no_system = json_is_true(json_object_get(jt, "no_system"));
        snprintf(path, sizeof path, "%s/%s", g_dir, file);
        size_t tlen = 0;
        char *tmpl = test_read_file(path, &tlen);
        CHECK(tmpl != NULL, "cannot read %s", path);
        if (!tmpl) continue;
        int known = 0;
        lyra_chat_kind want, got = lyra_chat_detect(tmpl, tlen, &known);
        CHECK(lyra_chat_kind_from_name(kind_name, &want) == 0, "%s: kind %s", file, kind_name);
        CHECK(known && got == want, "%s: detected %s (known %d), want %s", file, lyra_chat_kind_name(got), known,
              kind_name);
        lyra_chat c;
        lyra_chat_init(&c, got, json_string_value(json_object_get(jt, "bos")),
                       json_string_value(json_object_get(jt, "eos")), tmpl, tlen);
        for (size_t ci = 0; ci < json_array_size(cases); ci++) {
            json_t *jc = json_array_get(cases, ci);
            const char *cname = json_string_value(json_object_get(jc, "name"));
            const char *sys = json_string_value(json_object_get(jc, "system"));
            if ((no_system && sys) || json_is_false(json_object_get(jc, "add_generation_prompt"))) continue;
            char stem[256], exp_path[2900];
            snprintf(stem, sizeof stem, "%.*s", (int)(strlen(file) - strlen(".jinja")), file);
            snprintf(exp_path, sizeof exp_path, "%s/expected/%s.%s.txt", g_dir, stem, cname);
            size_t elen = 0;
            char *expect = test_read_file(exp_path, &elen);
            CHECK(expect != NULL, "cannot read %s", exp_path);
            size_t n;
            lyra_chat_turn *turns = case_turns(json_object_get(jc, "turns"), &n);
            char *out = NULL;
            size_t olen = 0;
            lyra_error err;
            int rc = lyra_chat_render(&c, sys, turns, n, &out, &olen, &err);
            CHECK(rc == 0, "%s %s: %s", file, cname, err.msg);
            if (!rc && expect) {
                CHECK(olen == elen && !memcmp(out, expect, elen), "%s %s:\n  got  [%s]\n  want [%s]", file, cname,
                      esc(out, olen), esc(expect, elen));
                n_compared++;
            }
            char what[512];
            snprintf(what, sizeof what, "%s %s", file, cname);
            check_incremental(&c, sys, turns, n, what);
            free(out);
            free(expect);
            free(turns);
        }
        free(tmpl);
    }
    CHECK(n_compared >= 40, "only %d renderings compared", n_compared);
    json_decref(spec);
}

/* plain and none: the texts chat.h specifies. */
static void test_plain_none(void) {
    lyra_chat_turn t[3] = {{"  Hi, who are you? ", "I am a chatbot.\n"}, {"Tell me a story.", " Once upon a time."},
                           {"line one\nline two\n", NULL}};
    struct {
        lyra_chat_kind kind;
        const char *sys;
        const char *want;
    } cases[] = {
        {LYRA_CHAT_PLAIN, " Be brief.\n",
         "Be brief.\n\nUser: Hi, who are you?\nAssistant: I am a chatbot.\nUser: Tell me a story.\nAssistant: Once "
         "upon a time.\nUser: line one\nline two\nAssistant:"},
        {LYRA_CHAT_PLAIN, NULL,
         "User: Hi, who are you?\nAssistant: I am a chatbot.\nUser: Tell me a story.\nAssistant: Once upon a "
         "time.\nUser: line one\nline two\nAssistant:"},
        {LYRA_CHAT_NONE, "Sys. ",
         "Sys.   Hi, who are you? I am a chatbot.\nTell me a story. Once upon a time.line one\nline two\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lyra_chat c;
        lyra_chat_init(&c, cases[i].kind, "<s>", "</s>", NULL, 0);
        char *out = NULL;
        size_t n = 0;
        lyra_error err;
        int rc = lyra_chat_render(&c, cases[i].sys, t, 3, &out, &n, &err);
        CHECK(rc == 0 && n == strlen(cases[i].want) && !strcmp(out, cases[i].want), "%s case %zu: got [%s]",
              lyra_chat_kind_name(cases[i].kind), i, out ? esc(out, n) : err.msg);
        check_incremental(&c, cases[i].sys, t, 3, lyra_chat_kind_name(cases[i].kind));
        free(out);
    }
}

static void test_detect_names_stops(void) {
    int known = 1;
    CHECK(lyra_chat_detect(NULL, 0, &known) == LYRA_CHAT_PLAIN && !known, "NULL template");
    const char *vicuna = "{%- for message in messages %}{%- if message['role'] == 'user' -%}{{-'USER: ' + "
                         "message['content'] + '\\n'-}}{%- else -%}{{-'ASSISTANT: ' + message['content'] + "
                         "'</s>\\n' -}}{%- endif -%}{%- endfor -%}";
    known = 1;
    CHECK(lyra_chat_detect(vicuna, strlen(vicuna), &known) == LYRA_CHAT_PLAIN && !known, "vicuna is not known");
    const char *mistral = "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' "
                          "+ message['content'] + ' [/INST]' }}{% endif %}{% endfor %}";
    CHECK(lyra_chat_detect(mistral, strlen(mistral), &known) == LYRA_CHAT_LLAMA2 && known, "[INST] is llama2");
    const char *tulu = "<|user|>\n{{ message['content'] }}\n<|assistant|>\n";
    known = 1;
    CHECK(lyra_chat_detect(tulu, strlen(tulu), &known) == LYRA_CHAT_PLAIN && !known,
          "<|user|> alone (no </s>, eos_token or <|end|>) is not known");
    const char *zephyr_lit = "<|user|>\n{{ message['content'] }}</s>";
    CHECK(lyra_chat_detect(zephyr_lit, strlen(zephyr_lit), &known) == LYRA_CHAT_ZEPHYR && known, "zephyr </s>");

    static const char *const names[] = {"chatml", "llama2", "llama3", "phi3", "gemma", "zephyr", "plain", "none"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        lyra_chat_kind k;
        CHECK(lyra_chat_kind_from_name(names[i], &k) == 0 && !strcmp(lyra_chat_kind_name(k), names[i]),
              "name %s", names[i]);
        CHECK(strstr(LYRA_CHAT_NAMES, names[i]) != NULL, "LYRA_CHAT_NAMES lacks %s", names[i]);
    }
    lyra_chat_kind k;
    CHECK(lyra_chat_kind_from_name("ChatML", &k) == 0 && k == LYRA_CHAT_CHATML, "names are case-insensitive");
    CHECK(lyra_chat_kind_from_name("vicuna", &k) == -1, "unknown name");
    CHECK(lyra_chat_kind_from_name(NULL, &k) == -1, "NULL name");

    const char *s[LYRA_CHAT_MAX_STOPS];
    lyra_chat c;
    lyra_chat_init(&c, LYRA_CHAT_CHATML, "", "<|im_end|>", NULL, 0);
    CHECK(lyra_chat_stops(&c, s) == 2 && !strcmp(s[0], "<|im_end|>") && !strcmp(s[1], "<|im_start|>"), "chatml stops");
    lyra_chat_init(&c, LYRA_CHAT_LLAMA2, "<s>", "</s>", NULL, 0);
    CHECK(lyra_chat_stops(&c, s) == 2 && !strcmp(s[0], "</s>") && !strcmp(s[1], "[INST]"), "llama2 stops");
    lyra_chat_init(&c, LYRA_CHAT_ZEPHYR, "", "", NULL, 0);
    CHECK(lyra_chat_stops(&c, s) == 1 && !strcmp(s[0], "<|user|>"), "zephyr without an EOS text");
    lyra_chat_init(&c, LYRA_CHAT_LLAMA3, "", "", NULL, 0);
    CHECK(lyra_chat_stops(&c, s) == 2 && !strcmp(s[0], "<|eot_id|>"), "llama3 stops");
    lyra_chat_init(&c, LYRA_CHAT_PHI3, "", "", NULL, 0);
    CHECK(lyra_chat_stops(&c, s) == 3 && !strcmp(s[0], "<|end|>"), "phi3 stops");
    lyra_chat_init(&c, LYRA_CHAT_GEMMA, "", "", NULL, 0);
    CHECK(lyra_chat_stops(&c, s) == 2 && !strcmp(s[0], "<end_of_turn>"), "gemma stops");
    lyra_chat_init(&c, LYRA_CHAT_PLAIN, "", "", NULL, 0);
    CHECK(lyra_chat_stops(&c, s) == 1 && !strcmp(s[0], "\nUser:"), "plain stops");
    lyra_chat_init(&c, LYRA_CHAT_NONE, "", "", NULL, 0);
    CHECK(lyra_chat_stops(&c, s) == 0, "none has no stops");

    /* the default system prompt of a ChatML template, literal only */
    char path[2600];
    snprintf(path, sizeof path, "%s/qwen2.5-instruct.jinja", g_dir);
    size_t n = 0;
    char *q = test_read_file(path, &n);
    CHECK(q != NULL, "read %s", path);
    if (q) {
        lyra_chat_init(&c, LYRA_CHAT_CHATML, "", "", q, n);
        CHECK(!strcmp(c.default_system, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
              "Qwen default system: [%s]", c.default_system);
        lyra_chat_init(&c, LYRA_CHAT_LLAMA3, "", "", q, n);
        CHECK(c.default_system[0] == '\0', "default system only for chatml");
        free(q);
    }
    const char *expr = "{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}";
    lyra_chat_init(&c, LYRA_CHAT_CHATML, "", "", expr, strlen(expr));
    CHECK(c.default_system[0] == '\0', "an expression is not a default: [%s]", c.default_system);
    /* BOS/EOS texts longer than the fields are cut, not overflowed */
    char longtok[300];
    memset(longtok, 'x', sizeof longtok - 1);
    longtok[sizeof longtok - 1] = '\0';
    lyra_chat_init(&c, LYRA_CHAT_LLAMA2, longtok, longtok, NULL, 0);
    CHECK(strlen(c.bos) == sizeof c.bos - 1 && strlen(c.eos) == sizeof c.eos - 1, "cut BOS/EOS");
}

static void test_errors(void) {
    lyra_chat c;
    lyra_chat_init(&c, LYRA_CHAT_CHATML, "", "", NULL, 0);
    lyra_chat_turn answered[2] = {{"a", "b"}, {"c", "d"}}, open_mid[2] = {{"a", NULL}, {"c", NULL}},
                   no_user[1] = {{NULL, NULL}}, one[1] = {{"a", NULL}};
    char *out = (char *)1;
    lyra_error err;
    CHECK(lyra_chat_render(&c, NULL, one, 0, &out, NULL, &err) == LYRA_ERR_INPUT && !out, "no turns");
    CHECK(lyra_chat_render(&c, NULL, answered, 2, &out, NULL, &err) == LYRA_ERR_INPUT && strstr(err.msg, "turn 1"),
          "last turn answered: %s", err.msg);
    CHECK(lyra_chat_render(&c, NULL, open_mid, 2, &out, NULL, &err) == LYRA_ERR_INPUT && strstr(err.msg, "turn 0"),
          "unanswered middle turn: %s", err.msg);
    CHECK(lyra_chat_render(&c, NULL, no_user, 1, &out, NULL, &err) == LYRA_ERR_INPUT, "no user text");
    CHECK(lyra_chat_render_next(&c, NULL, one, 1, &out, NULL, &err) == LYRA_ERR_INPUT, "next needs 2 turns");
    CHECK(lyra_chat_render_reply(&c, NULL, &out, NULL, &err) == LYRA_ERR_INPUT, "reply NULL");
    c.kind = (lyra_chat_kind)99;
    CHECK(lyra_chat_render(&c, NULL, one, 1, &out, NULL, &err) == LYRA_ERR_INPUT, "bad kind");
    CHECK(!strcmp(lyra_chat_kind_name((lyra_chat_kind)99), "?"), "bad kind name");
    /* an empty system prompt is a system message (as in Jinja), NULL is none */
    lyra_chat_init(&c, LYRA_CHAT_CHATML, "", "", NULL, 0);
    CHECK(lyra_chat_render(&c, "", one, 1, &out, NULL, &err) == 0 &&
              !strcmp(out, "<|im_start|>system\n<|im_end|>\n<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\n"),
          "empty system: [%s]", out);
    free(out);
}

/* Phi-2's QA turns, and the formats architectures use without a template. */
static void test_phi2_arch(void) {
    lyra_chat_turn t[2] = {{"  What is 2+2? ", " 4.\n"}, {"And 3+3?", NULL}};
    const char *want = "Answer briefly.\nInstruct: What is 2+2?\nOutput: 4.\nInstruct: And 3+3?\nOutput:";
    lyra_chat c;
    lyra_chat_init(&c, LYRA_CHAT_PHI2, "", "<|endoftext|>", NULL, 0);
    char *out = NULL;
    size_t n = 0;
    lyra_error err;
    int rc = lyra_chat_render(&c, " Answer briefly. ", t, 2, &out, &n, &err);
    CHECK(rc == 0 && !strcmp(out, want), "phi2: got [%s]", out ? esc(out, n) : err.msg);
    check_incremental(&c, "Answer briefly.", t, 2, "phi2");
    free(out);
    const char *s[LYRA_CHAT_MAX_STOPS];
    CHECK(lyra_chat_stops(&c, s) == 2 && !strcmp(s[0], "\nInstruct:") && !strcmp(s[1], "<|endoftext|>"),
          "phi2 stops");
    lyra_chat_kind k;
    CHECK(lyra_chat_kind_from_name("phi2", &k) == 0 && k == LYRA_CHAT_PHI2, "name phi2");
    static const struct { const char *arch; lyra_chat_kind kind; int known; } a[] = {
        {"qwen2", LYRA_CHAT_CHATML, 1}, {"qwen3", LYRA_CHAT_CHATML, 1}, {"gemma", LYRA_CHAT_GEMMA, 1},
        {"gemma2", LYRA_CHAT_GEMMA, 1}, {"gemma3", LYRA_CHAT_GEMMA, 1}, {"phi3", LYRA_CHAT_PHI3, 1},
        {"phi2", LYRA_CHAT_PHI2, 1},    {"llama", LYRA_CHAT_PLAIN, 0},
    };
    for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) {
        int known = -1;
        CHECK(lyra_chat_for_arch(a[i].arch, &known) == a[i].kind && known == a[i].known, "arch %s", a[i].arch);
    }
}

int main(void) {
    const char *src = getenv("LYRA_SRC_DIR");
    snprintf(g_dir, sizeof g_dir, "%s/tests/data/chat_templates", src && *src ? src : ".");
    test_real_templates();
    test_plain_none();
    test_detect_names_stops();
    test_errors();
    test_phi2_arch();
    return test_done();
}
