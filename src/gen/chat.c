/* chat.c: chat templates (see chat.h): detection from a template string,
 * and rendering a conversation as each format's Jinja template does.
 *
 * Every format is written as the same four pieces, so that the full prompt
 * and the incremental text agree by construction:
 *   head(system)  user(i) gen  reply(A0) end  user(i+1) gen  ...  user(n-1) gen
 * where gen (the generation prompt) is exactly the header the template puts
 * before a reply. */
#include "chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ text buffer */

/* A growable byte string. */
typedef struct sbuf {
    char *p;    /* bytes (NUL-terminated when not oom) */
    size_t n;   /* length */
    size_t cap; /* allocated */
    int oom;    /* an allocation failed: everything after is dropped */
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t len) {
    if (b->oom) return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (len) memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* ------------------------------------------------------------ whitespace */

/* Python's str.isspace() for one code point. */
static int py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Decode the UTF-8 character at s[0..n): its code point and byte length
 * (an invalid byte counts as one byte, code point 0xFFFD: never a space). */
static uint32_t utf8_at(const unsigned char *s, size_t n, size_t *len) {
    unsigned char c = s[0];
    size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (k == 0 || k > n) {
        *len = 1;
        return 0xfffd;
    }
    uint32_t cp = k == 1 ? c : k == 2 ? (c & 0x1fu) : k == 3 ? (c & 0x0fu) : (c & 0x07u);
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *len = 1;
            return 0xfffd;
        }
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    *len = k;
    return cp;
}

/* s trimmed as Python's str.strip() (Jinja's trim filter): *start, *len. */
static void trim_span(const char *s, size_t n, size_t *start, size_t *len) {
    const unsigned char *u = (const unsigned char *)s;
    size_t a = 0, b = 0; /* [a, b): the text after the leading spaces, up to the
                            end of its last non-space character */
    size_t k;
    while (a < n && py_space(utf8_at(u + a, n - a, &k))) a += k;
    for (size_t i = a; i < n; i += k)
        if (!py_space(utf8_at(u + i, n - i, &k))) b = i + k;
    *start = a;
    *len = b > a ? b - a : 0;
}

static void sb_trim(sbuf *b, const char *s) {
    size_t a, len;
    trim_span(s, strlen(s), &a, &len);
    sb_add(b, s + a, len);
}

/* ------------------------------------------------------------ names */

static const char *const g_names[] = {
    [LYRA_CHAT_NONE] = "none",   [LYRA_CHAT_PLAIN] = "plain",   [LYRA_CHAT_CHATML] = "chatml",
    [LYRA_CHAT_LLAMA2] = "llama2", [LYRA_CHAT_LLAMA3] = "llama3", [LYRA_CHAT_PHI3] = "phi3",
    [LYRA_CHAT_GEMMA] = "gemma", [LYRA_CHAT_ZEPHYR] = "zephyr", [LYRA_CHAT_PHI2] = "phi2",
};
#define N_KINDS ((int)(sizeof g_names / sizeof g_names[0]))

const char *lyra_chat_kind_name(lyra_chat_kind kind) {
    return (int)kind >= 0 && (int)kind < N_KINDS ? g_names[kind] : "?";
}

static int ieq(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        char x = *a >= 'A' && *a <= 'Z' ? (char)(*a + 32) : *a;
        if (x != *b) return 0;
    }
    return *a == *b;
}

int lyra_chat_kind_from_name(const char *name, lyra_chat_kind *out) {
    for (int i = 0; name && i < N_KINDS; i++)
        if (ieq(name, g_names[i])) {
            *out = (lyra_chat_kind)i;
            return 0;
        }
    return -1;
}

/* ------------------------------------------------------------ detection */

/* First occurrence of needle in s[0..n) at or after from; -1 if none. */
static long find(const char *s, size_t n, size_t from, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = from; k <= n && i + k <= n; i++)
        if (!memcmp(s + i, needle, k)) return (long)i;
    return -1;
}

static int has(const char *s, size_t n, const char *needle) { return find(s, n, 0, needle) >= 0; }

lyra_chat_kind lyra_chat_detect(const char *t, size_t n, int *known) {
    lyra_chat_kind k = LYRA_CHAT_PLAIN;
    int ok = 1;
    if (!t || !n) ok = 0;
    else if (has(t, n, "<|im_start|>")) k = LYRA_CHAT_CHATML;
    else if (has(t, n, "<|start_header_id|>")) k = LYRA_CHAT_LLAMA3;
    else if (has(t, n, "[INST]")) k = LYRA_CHAT_LLAMA2;
    else if (has(t, n, "<|user|>") && has(t, n, "<|end|>")) k = LYRA_CHAT_PHI3;
    else if (has(t, n, "<start_of_turn>")) k = LYRA_CHAT_GEMMA;
    else if (has(t, n, "<|user|>") && (has(t, n, "</s>") || has(t, n, "eos_token"))) k = LYRA_CHAT_ZEPHYR;
    else ok = 0;
    if (known) *known = ok;
    return k;
}

lyra_chat_kind lyra_chat_for_arch(const char *arch, int *known) {
    static const struct { const char *arch; lyra_chat_kind kind; } t[] = {
        {"qwen2", LYRA_CHAT_CHATML}, {"qwen3", LYRA_CHAT_CHATML}, {"gemma", LYRA_CHAT_GEMMA},
        {"gemma2", LYRA_CHAT_GEMMA}, {"gemma3", LYRA_CHAT_GEMMA}, {"phi3", LYRA_CHAT_PHI3},
        {"phi2", LYRA_CHAT_PHI2},
    };
    for (size_t i = 0; arch && i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(arch, t[i].arch)) {
            if (known) *known = 1;
            return t[i].kind;
        }
    if (known) *known = 0;
    return LYRA_CHAT_PLAIN;
}

/* The literal system prompt a ChatML template writes when none is given:
 * "<|im_start|>system" + a newline (real or the escape \n) + plain text up to
 * "<|im_end|>", the text holding no quote, brace, '+' or backslash (so it is
 * a literal, not an expression). Copied to out[cap]; "" when none. */
static void chatml_default_system(const char *t, size_t n, char *out, size_t cap) {
    const char *open = "<|im_start|>system";
    out[0] = '\0';
    for (long at = find(t, n, 0, open); at >= 0; at = find(t, n, (size_t)at + 1, open)) {
        size_t i = (size_t)at + strlen(open);
        if (i < n && t[i] == '\n') i += 1;
        else if (i + 1 < n && t[i] == '\\' && t[i + 1] == 'n') i += 2;
        else continue;
        long end = find(t, n, i, "<|im_end|>");
        if (end < 0 || (size_t)end == i || (size_t)end - i >= cap) continue;
        int literal = 1;
        for (size_t j = i; j < (size_t)end && literal; j++)
            literal = !strchr("'\"{}+\\", t[j]);
        if (!literal) continue;
        memcpy(out, t + i, (size_t)end - i);
        out[(size_t)end - i] = '\0';
        return;
    }
}

static void copy_cut(char *dst, size_t cap, const char *src) {
    size_t k = src ? strlen(src) : 0;
    if (k >= cap) k = cap - 1;
    if (k) memcpy(dst, src, k);
    dst[k] = '\0';
}

void lyra_chat_init(lyra_chat *c, lyra_chat_kind kind, const char *bos, const char *eos,
                    const char *tmpl, size_t len) {
    memset(c, 0, sizeof *c);
    c->kind = kind;
    copy_cut(c->bos, sizeof c->bos, bos);
    copy_cut(c->eos, sizeof c->eos, eos);
    if (kind == LYRA_CHAT_CHATML && tmpl)
        chatml_default_system(tmpl, len, c->default_system, sizeof c->default_system);
}

/* ------------------------------------------------------------ the pieces */

/* The system prompt in use: the given one, else the template's default. */
static const char *system_of(const lyra_chat *c, const char *system) {
    if (system) return system;
    return c->default_system[0] ? c->default_system : NULL;
}

/* Everything before the first user message. */
static void put_head(sbuf *b, const lyra_chat *c, const char *sys) {
    switch (c->kind) {
    case LYRA_CHAT_NONE:
        if (sys) sb_puts(b, sys);
        break;
    case LYRA_CHAT_PLAIN:
        if (sys) {
            sb_trim(b, sys);
            sb_puts(b, "\n\n");
        }
        break;
    case LYRA_CHAT_CHATML:
        if (sys) {
            sb_puts(b, "<|im_start|>system\n");
            sb_puts(b, sys);
            sb_puts(b, "<|im_end|>\n");
        }
        break;
    case LYRA_CHAT_LLAMA2: /* the system block goes into the first message */
        break;
    case LYRA_CHAT_LLAMA3:
        if (sys) {
            sb_puts(b, c->bos);
            sb_puts(b, "<|start_header_id|>system<|end_header_id|>\n\n");
            sb_trim(b, sys);
            sb_puts(b, "<|eot_id|>");
        }
        break;
    case LYRA_CHAT_PHI3:
        if (sys) {
            sb_puts(b, "<|system|>\n");
            sb_puts(b, sys);
            sb_puts(b, "<|end|>\n");
        }
        break;
    case LYRA_CHAT_GEMMA:
        sb_puts(b, c->bos);
        break;
    case LYRA_CHAT_ZEPHYR:
        if (sys) {
            sb_puts(b, "<|system|>\n");
            sb_puts(b, sys);
            sb_puts(b, c->eos);
            sb_puts(b, "\n");
        }
        break;
    case LYRA_CHAT_PHI2:
        if (sys) {
            sb_trim(b, sys);
            sb_puts(b, "\n");
        }
        break;
    }
}

/* User message i (0-based) of the conversation whose system prompt is sys. */
static void put_user(sbuf *b, const lyra_chat *c, const char *sys, size_t i, const char *u) {
    switch (c->kind) {
    case LYRA_CHAT_NONE:
        sb_puts(b, u);
        break;
    case LYRA_CHAT_PLAIN:
        sb_puts(b, "User: ");
        sb_trim(b, u);
        sb_puts(b, "\n");
        break;
    case LYRA_CHAT_CHATML:
        sb_puts(b, "<|im_start|>user\n");
        sb_puts(b, u);
        sb_puts(b, "<|im_end|>\n");
        break;
    case LYRA_CHAT_LLAMA2: {
        /* content = (first and system: "<<SYS>>\nS\n<</SYS>>\n\n" + U), stripped */
        sbuf t = {0};
        if (i == 0 && sys) {
            sb_puts(&t, "<<SYS>>\n");
            sb_puts(&t, sys);
            sb_puts(&t, "\n<</SYS>>\n\n");
        }
        sb_puts(&t, u);
        sb_puts(b, c->bos);
        sb_puts(b, "[INST] ");
        if (t.oom) b->oom = 1;
        else sb_trim(b, t.p);
        sb_puts(b, " [/INST]");
        free(t.p);
        break;
    }
    case LYRA_CHAT_LLAMA3:
        if (i == 0 && !sys) sb_puts(b, c->bos);
        sb_puts(b, "<|start_header_id|>user<|end_header_id|>\n\n");
        sb_trim(b, u);
        sb_puts(b, "<|eot_id|>");
        break;
    case LYRA_CHAT_PHI3:
        sb_puts(b, "<|user|>\n");
        sb_puts(b, u);
        sb_puts(b, "<|end|>\n");
        break;
    case LYRA_CHAT_GEMMA:
        sb_puts(b, "<start_of_turn>user\n");
        if (i == 0 && sys) {
            sb_puts(b, sys);
            sb_puts(b, "\n\n");
        }
        sb_trim(b, u);
        sb_puts(b, "<end_of_turn>\n");
        break;
    case LYRA_CHAT_ZEPHYR:
        sb_puts(b, "<|user|>\n");
        sb_puts(b, u);
        sb_puts(b, c->eos);
        sb_puts(b, "\n");
        break;
    case LYRA_CHAT_PHI2:
        sb_puts(b, "Instruct: ");
        sb_trim(b, u);
        sb_puts(b, "\n");
        break;
    }
}

/* The generation prompt: the header before a reply. */
static void put_gen(sbuf *b, const lyra_chat *c) {
    static const char *const gen[] = {
        [LYRA_CHAT_NONE] = "",
        [LYRA_CHAT_PLAIN] = "Assistant:",
        [LYRA_CHAT_CHATML] = "<|im_start|>assistant\n",
        [LYRA_CHAT_LLAMA2] = "",
        [LYRA_CHAT_LLAMA3] = "<|start_header_id|>assistant<|end_header_id|>\n\n",
        [LYRA_CHAT_PHI3] = "<|assistant|>\n",
        [LYRA_CHAT_GEMMA] = "<start_of_turn>model\n",
        [LYRA_CHAT_ZEPHYR] = "<|assistant|>\n",
        [LYRA_CHAT_PHI2] = "Output:",
    };
    sb_puts(b, gen[c->kind]);
}

/* A reply as written after the generation prompt. */
static void put_reply(sbuf *b, const lyra_chat *c, const char *a) {
    switch (c->kind) {
    case LYRA_CHAT_PLAIN:
    case LYRA_CHAT_LLAMA2:
    case LYRA_CHAT_PHI2:
        sb_puts(b, " ");
        sb_trim(b, a);
        break;
    case LYRA_CHAT_LLAMA3:
    case LYRA_CHAT_GEMMA:
        sb_trim(b, a);
        break;
    default:
        sb_puts(b, a);
        break;
    }
}

/* What closes a reply's turn. */
static void put_end(sbuf *b, const lyra_chat *c) {
    switch (c->kind) {
    case LYRA_CHAT_NONE: break;
    case LYRA_CHAT_PLAIN:
    case LYRA_CHAT_PHI2: sb_puts(b, "\n"); break;
    case LYRA_CHAT_CHATML: sb_puts(b, "<|im_end|>\n"); break;
    case LYRA_CHAT_LLAMA2:
        sb_puts(b, " ");
        sb_puts(b, c->eos);
        break;
    case LYRA_CHAT_LLAMA3: sb_puts(b, "<|eot_id|>"); break;
    case LYRA_CHAT_PHI3: sb_puts(b, "<|end|>\n"); break;
    case LYRA_CHAT_GEMMA: sb_puts(b, "<end_of_turn>\n"); break;
    case LYRA_CHAT_ZEPHYR:
        sb_puts(b, c->eos);
        sb_puts(b, "\n");
        break;
    }
}

/* ------------------------------------------------------------ rendering */

static int check_turns(const lyra_chat *c, const lyra_chat_turn *turns, size_t n, size_t min_n,
                       lyra_error *err) {
    if ((int)c->kind < 0 || (int)c->kind >= N_KINDS)
        return lyra_err(err, LYRA_ERR_INPUT, "chat", "unknown template kind %d", (int)c->kind);
    if (!turns || n < min_n)
        return lyra_err(err, LYRA_ERR_INPUT, "chat", "%zu turns given, at least %zu needed", n, min_n);
    for (size_t i = 0; i < n; i++) {
        if (!turns[i].user) return lyra_err(err, LYRA_ERR_INPUT, "chat", "turn %zu has no user message", i);
        if ((i + 1 < n) != (turns[i].assistant != NULL))
            return lyra_err(err, LYRA_ERR_INPUT, "chat", "turn %zu %s", i,
                            i + 1 < n ? "has no reply (only the last turn may lack one)"
                                      : "already has a reply (the last turn is the one asked)");
    }
    return LYRA_OK;
}

static int finish(sbuf *b, char **out, size_t *out_len, lyra_error *err) {
    if (!b->oom && !b->p) sb_add(b, "", 0);
    if (b->oom) {
        free(b->p);
        *out = NULL;
        return lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
    }
    *out = b->p;
    if (out_len) *out_len = b->n;
    return LYRA_OK;
}

int lyra_chat_render(const lyra_chat *c, const char *system, const lyra_chat_turn *turns,
                     size_t n, char **out, size_t *out_len, lyra_error *err) {
    *out = NULL;
    int rc = check_turns(c, turns, n, 1, err);
    if (rc) return rc;
    if (c->jinja) return lyra_chat_jinja_render(c, system, turns, n, out, out_len, err); /* chat_jinja.c */
    const char *sys = system_of(c, system);
    sbuf b = {0};
    put_head(&b, c, sys);
    for (size_t i = 0; i < n; i++) {
        put_user(&b, c, sys, i, turns[i].user);
        put_gen(&b, c);
        if (i + 1 < n) {
            put_reply(&b, c, turns[i].assistant);
            put_end(&b, c);
        }
    }
    return finish(&b, out, out_len, err);
}

int lyra_chat_render_reply(const lyra_chat *c, const char *reply, char **out, size_t *out_len,
                           lyra_error *err) {
    *out = NULL;
    if (!reply) return lyra_err(err, LYRA_ERR_INPUT, "chat", "no reply given");
    if (c->jinja) return lyra_err(err, LYRA_ERR_INPUT, "chat", "a Jinja template renders whole conversations");
    sbuf b = {0};
    put_reply(&b, c, reply);
    return finish(&b, out, out_len, err);
}

int lyra_chat_render_next(const lyra_chat *c, const char *system, const lyra_chat_turn *turns,
                          size_t n, char **out, size_t *out_len, lyra_error *err) {
    *out = NULL;
    int rc = check_turns(c, turns, n, 2, err);
    if (rc) return rc;
    if (c->jinja) return lyra_err(err, LYRA_ERR_INPUT, "chat", "a Jinja template renders whole conversations");
    sbuf b = {0};
    put_end(&b, c);
    put_user(&b, c, system_of(c, system), n - 1, turns[n - 1].user);
    put_gen(&b, c);
    return finish(&b, out, out_len, err);
}

int lyra_chat_stops(const lyra_chat *c, const char *stops[LYRA_CHAT_MAX_STOPS]) {
    const char *s[LYRA_CHAT_MAX_STOPS] = {0};
    switch (c->kind) {
    case LYRA_CHAT_NONE: s[0] = c->jinja ? c->eos : NULL; break; /* a Jinja template of no known format */
    case LYRA_CHAT_PLAIN: s[0] = "\nUser:"; break;
    case LYRA_CHAT_CHATML: s[0] = "<|im_end|>"; s[1] = "<|im_start|>"; break;
    case LYRA_CHAT_LLAMA2: s[0] = c->eos; s[1] = "[INST]"; break;
    case LYRA_CHAT_LLAMA3: s[0] = "<|eot_id|>"; s[1] = "<|start_header_id|>"; break;
    case LYRA_CHAT_PHI3: s[0] = "<|end|>"; s[1] = "<|user|>"; s[2] = "<|endoftext|>"; break;
    case LYRA_CHAT_GEMMA: s[0] = "<end_of_turn>"; s[1] = "<start_of_turn>"; break;
    case LYRA_CHAT_ZEPHYR: s[0] = c->eos; s[1] = "<|user|>"; break;
    case LYRA_CHAT_PHI2: s[0] = "\nInstruct:"; s[1] = c->eos; break;
    }
    int n = 0;
    for (int i = 0; i < LYRA_CHAT_MAX_STOPS; i++)
        if (s[i] && s[i][0]) stops[n++] = s[i];
    return n;
}
