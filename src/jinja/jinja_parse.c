/* jinja_parse.c: template text to syntax tree (jinja_impl.h). The lexer
 * follows jinja2's with trim_blocks and lstrip_blocks (Hugging Face's
 * settings): text, {{ }}, {% %} and {# #} tags with their whitespace
 * control, then the tokens inside tags; the parser is jinja2's grammar
 * (precedence: if-else < or < and < not < comparisons < + - < ~ < * / // % <
 * ** < unary - + < postfix . [] () and filters | and tests is). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja/jinja_impl.h"

/* ------------------------------------------------------------------ tokens */

typedef enum tok_kind {
    T_EOF = 0,
    T_TEXT,   /* template text (s, n: decoded) */
    T_VBEGIN, /* {{ */
    T_VEND,   /* }} */
    T_BBEGIN, /* {% */
    T_BEND,   /* %} */
    T_NAME,
    T_STR,    /* s, n: the decoded string */
    T_INT,
    T_FLOAT,
    T_OP,     /* s: the operator ("+", "//", ...) */
} tok_kind;

typedef struct tok {
    tok_kind kind;
    int line;
    const char *s;
    size_t n;
    int64_t i;
    double f;
} tok;

typedef struct parser {
    jarena *a;
    const char *name;
    lyra_error *err;
    int failed;
    tok *t;
    size_t nt, cap;
    size_t pos;
    int depth;      /* nesting of expressions and blocks */
    int loops;      /* for-loops around the current statement (break/continue) */
} parser;

#define MAX_PARSE_DEPTH 100

static int perr(parser *p, int line, const char *fmt, ...) LYRA_PRINTF(3, 4);
static int perr(parser *p, int line, const char *fmt, ...) {
    if (p->failed) return -1;
    p->failed = 1;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lyra_err(p->err, LYRA_ERR_INPUT, NULL, "%s:%d: %s", p->name, line, msg);
    return -1;
}

static int poom(parser *p) {
    if (p->failed) return -1;
    p->failed = 1;
    lyra_err(p->err, LYRA_ERR_OOM, p->name, "out of memory");
    return -1;
}

static tok *push_tok(parser *p, tok_kind k, int line) {
    if (p->nt == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        tok *t = realloc(p->t, cap * sizeof *t);
        if (!t) {
            poom(p);
            return NULL;
        }
        p->t = t;
        p->cap = cap;
    }
    tok *t = &p->t[p->nt++];
    memset(t, 0, sizeof *t);
    t->kind = k;
    t->line = line;
    return t;
}

/* ------------------------------------------------------------------ lexer */

static int is_space_at(const char *s, size_t n, size_t i, size_t *len) {
    size_t j = i;
    uint32_t c = ju_next(s, n, &j);
    *len = j - i;
    return ju_space(c);
}

/* End of the whitespace starting at i. */
static size_t skip_ws(const char *s, size_t n, size_t i) {
    size_t k;
    while (i < n && is_space_at(s, n, i, &k)) i += k;
    return i;
}

/* Start of the whitespace that ends text s[from..to). */
static size_t rstrip_at(const char *s, size_t from, size_t to) {
    size_t end = from, k;
    for (size_t i = from; i < to;) {
        if (!is_space_at(s, to, i, &k)) end = i + k;
        i += k;
    }
    return end;
}

static int count_lines(const char *s, size_t from, size_t to) {
    int c = 0;
    for (size_t i = from; i < to; i++) c += s[i] == '\n';
    return c;
}

/* Decode a string literal's body as Python's unicode-escape does. */
static int decode_str(parser *p, int line, const char *s, size_t n, tok *t) {
    jbuf b = {0};
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) {
            jb_char(&b, s[i]);
            continue;
        }
        char c = s[++i];
        uint32_t cp;
        int digits = 0;
        switch (c) {
        case '\n': break; /* line continuation */
        case '\\': jb_char(&b, '\\'); break;
        case '\'': jb_char(&b, '\''); break;
        case '"': jb_char(&b, '"'); break;
        case 'a': jb_char(&b, '\a'); break;
        case 'b': jb_char(&b, '\b'); break;
        case 'f': jb_char(&b, '\f'); break;
        case 'n': jb_char(&b, '\n'); break;
        case 'r': jb_char(&b, '\r'); break;
        case 't': jb_char(&b, '\t'); break;
        case 'v': jb_char(&b, '\v'); break;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        case 'N':
            free(b.p);
            return perr(p, line, "string escapes \\N{...} are not supported");
        default:
            if (c >= '0' && c <= '7') {
                cp = 0;
                int k = 0;
                while (k < 3 && i < n && s[i] >= '0' && s[i] <= '7') cp = cp * 8 + (uint32_t)(s[i++] - '0'), k++;
                i--;
                jb_utf8(&b, cp);
            } else { /* unknown escape: kept as written */
                jb_char(&b, '\\');
                jb_char(&b, c);
            }
        }
        if (digits) {
            cp = 0;
            for (int k = 0; k < digits; k++) {
                char h = i + 1 < n ? s[i + 1] : 0;
                int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                                       : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                if (d < 0) {
                    free(b.p);
                    return perr(p, line, "truncated \\%c escape in a string", c);
                }
                cp = cp * 16 + (uint32_t)d;
                i++;
            }
            if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
                free(b.p);
                return perr(p, line, "string escape \\%c of an invalid code point", c);
            }
            jb_utf8(&b, cp);
        }
    }
    if (b.fail) {
        free(b.p);
        return poom(p);
    }
    t->s = ja_strdup(p->a, b.p ? b.p : "", b.n);
    t->n = b.n;
    free(b.p);
    return t->s ? 0 : poom(p);
}

static const char *const g_ops[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "/", "*", "%", "~", "[",
                                    "]",  "(",  ")",  "{",  "}",  ",",  ".", ":", "|", "<", ">", "=", ";"};

/* The tokens inside a tag, from s[*i], up to and including its end.
 * kind: T_VBEGIN or T_BBEGIN. Sets *strip (the end was -}} / -%}) and *plus
 * (+%}); *i after the end marker. */
static int lex_tag(parser *p, const char *s, size_t n, size_t *i, int *line, tok_kind kind, int *strip,
                   int *plus) {
    int depth = 0;
    char close = kind == T_VBEGIN ? '}' : '%';
    int open_line = *line;
    for (;;) {
        size_t j = skip_ws(s, n, *i);
        *line += count_lines(s, *i, j);
        *i = j;
        if (j >= n)
            return perr(p, open_line, "unexpected end of template: %s not closed",
                        kind == T_VBEGIN ? "'{{'" : "'{%'");
        if (depth == 0) {
            int m = s[j] == '-' || (s[j] == '+' && kind == T_BBEGIN);
            if (j + 1 + m < n && s[j + m] == close && s[j + m + 1] == '}') {
                *strip = s[j] == '-';
                *plus = s[j] == '+';
                *i = j + 2 + m;
                return push_tok(p, kind == T_VBEGIN ? T_VEND : T_BEND, *line) ? 0 : -1;
            }
        }
        char c = s[j];
        if (c == '\'' || c == '"') {
            size_t k = j + 1;
            while (k < n && s[k] != c) k += s[k] == '\\' ? 2 : 1;
            if (k >= n) return perr(p, *line, "unterminated string");
            tok *t = push_tok(p, T_STR, *line);
            if (!t || decode_str(p, *line, s + j + 1, k - j - 1, t)) return -1;
            *line += count_lines(s, j, k);
            *i = k + 1;
            continue;
        }
        if (c >= '0' && c <= '9') {
            size_t k = j;
            int is_float = 0;
            while (k < n && ((s[k] >= '0' && s[k] <= '9') || (s[k] == '_' && k + 1 < n && s[k + 1] >= '0' &&
                                                              s[k + 1] <= '9')))
                k++;
            if (k + 1 < n && s[k] == '.' && s[k + 1] >= '0' && s[k + 1] <= '9' && (j == 0 || s[j - 1] != '.')) {
                is_float = 1;
                k++;
                while (k < n && ((s[k] >= '0' && s[k] <= '9') || s[k] == '_')) k++;
            }
            if (k < n && (s[k] == 'e' || s[k] == 'E')) {
                size_t e = k + 1;
                if (e < n && (s[e] == '+' || s[e] == '-')) e++;
                if (e < n && s[e] >= '0' && s[e] <= '9') {
                    is_float = 1;
                    k = e;
                    while (k < n && s[k] >= '0' && s[k] <= '9') k++;
                }
            }
            char num[64];
            size_t m = 0;
            for (size_t q = j; q < k && m + 1 < sizeof num; q++)
                if (s[q] != '_') num[m++] = s[q];
            num[m] = '\0';
            tok *t = push_tok(p, is_float ? T_FLOAT : T_INT, *line);
            if (!t) return -1;
            errno = 0;
            if (is_float) t->f = strtod(num, NULL);
            else {
                t->i = strtoll(num, NULL, 10);
                if (errno || k - j >= sizeof num - 1) return perr(p, *line, "integer %s is too large", num);
            }
            *i = k;
            continue;
        }
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
            size_t k = j;
            while (k < n && ((s[k] >= 'a' && s[k] <= 'z') || (s[k] >= 'A' && s[k] <= 'Z') || s[k] == '_' ||
                             (s[k] >= '0' && s[k] <= '9')))
                k++;
            tok *t = push_tok(p, T_NAME, *line);
            if (!t) return -1;
            t->s = ja_strdup(p->a, s + j, k - j);
            t->n = k - j;
            if (!t->s) return poom(p);
            *i = k;
            continue;
        }
        const char *op = NULL;
        for (size_t k = 0; k < sizeof g_ops / sizeof g_ops[0] && !op; k++) {
            size_t m = strlen(g_ops[k]);
            if (j + m <= n && !memcmp(s + j, g_ops[k], m)) op = g_ops[k];
        }
        if (!op) {
            size_t k = j;
            uint32_t cp = ju_next(s, n, &k);
            return perr(p, *line, "unexpected character '%.*s' (U+%04X) in a tag", (int)(k - j), s + j, cp);
        }
        if (strchr("([{", op[0])) depth++;
        if (strchr(")]}", op[0]) && depth > 0) depth--;
        tok *t = push_tok(p, T_OP, *line);
        if (!t) return -1;
        t->s = op;
        t->n = strlen(op);
        *i = j + t->n;
    }
}

/* Tokenize the (normalized) template s[0..n). */
static int lex(parser *p, const char *s, size_t n) {
    size_t i = 0;
    int line = 1;
    int line_starting = 1; /* the text at i starts a line */
    while (i <= n) {
        /* the next tag */
        size_t q = i;
        while (q + 1 < n && !(s[q] == '{' && (s[q + 1] == '{' || s[q + 1] == '%' || s[q + 1] == '#'))) q++;
        if (q + 1 >= n) q = n;
        size_t end = q; /* the text is s[i..end) */
        char kind = q < n ? s[q + 1] : 0;
        char sign = q + 2 < n ? s[q + 2] : 0;
        if (q < n && sign == '-') end = rstrip_at(s, i, q);
        else if (q < n && sign != '+' && kind != '{') { /* lstrip_blocks */
            size_t l = q;
            while (l > i && s[l - 1] != '\n') l--;
            if (l > i || line_starting) {
                size_t w = skip_ws(s, q, l);
                if (w == q && q > l) end = l;
            }
        }
        if (end > i) {
            tok *t = push_tok(p, T_TEXT, line);
            if (!t) return -1;
            t->s = s + i;
            t->n = end - i;
        }
        line += count_lines(s, i, q);
        if (q >= n) break;
        int tag_line = line;
        size_t j = q + 2 + (sign == '-' || sign == '+');
        int strip = 0, plus = 0;
        if (kind == '#') {
            size_t k = j;
            while (k + 1 < n && !(s[k] == '#' && s[k + 1] == '}')) k++;
            if (k + 1 >= n) return perr(p, tag_line, "unexpected end of template: comment not closed");
            strip = k > j && s[k - 1] == '-';
            plus = k > j && s[k - 1] == '+';
            line += count_lines(s, j, k);
            j = k + 2;
        } else {
            if (!push_tok(p, kind == '{' ? T_VBEGIN : T_BBEGIN, tag_line)) return -1;
            if (lex_tag(p, s, n, &j, &line, kind == '{' ? T_VBEGIN : T_BBEGIN, &strip, &plus)) return -1;
        }
        line_starting = 0;
        if (strip) {
            size_t k = skip_ws(s, n, j);
            line += count_lines(s, j, k);
            line_starting = k > j && s[k - 1] == '\n';
            j = k;
        } else if (kind != '{' && !plus && j < n && s[j] == '\n') { /* trim_blocks */
            j++;
            line++;
            line_starting = 1;
        }
        i = j;
    }
    return push_tok(p, T_EOF, line) ? 0 : -1;
}

/* ------------------------------------------------------------------ parser helpers */

static tok *cur(parser *p) { return &p->t[p->pos]; }
static tok *peek(parser *p, size_t k) { return p->pos + k < p->nt ? &p->t[p->pos + k] : &p->t[p->nt - 1]; }
static void adv(parser *p) {
    if (p->pos + 1 < p->nt) p->pos++;
}
static int is_op(const tok *t, const char *op) { return t->kind == T_OP && !strcmp(t->s, op); }
static int is_name(const tok *t, const char *name) { return t->kind == T_NAME && !strcmp(t->s, name); }

static const char *tok_desc(const tok *t, char *buf, size_t cap) {
    switch (t->kind) {
    case T_EOF: return "end of template";
    case T_TEXT: return "template text";
    case T_VBEGIN: return "'{{'";
    case T_VEND: return "'}}'";
    case T_BBEGIN: return "'{%'";
    case T_BEND: return "'%}'";
    case T_STR: return "a string";
    case T_INT: return "an integer";
    case T_FLOAT: return "a number";
    default: snprintf(buf, cap, "'%s'", t->s); return buf;
    }
}

static int unexpected(parser *p, const char *wanted) {
    char b[80];
    tok *t = cur(p);
    if (wanted) return perr(p, t->line, "expected %s, got %s", wanted, tok_desc(t, b, sizeof b));
    return perr(p, t->line, "unexpected %s", tok_desc(t, b, sizeof b));
}

static int expect_op(parser *p, const char *op) {
    if (!is_op(cur(p), op)) {
        char w[16];
        snprintf(w, sizeof w, "'%s'", op);
        return unexpected(p, w);
    }
    adv(p);
    return 0;
}

static int expect_kind(parser *p, tok_kind k, const char *what) {
    if (cur(p)->kind != k) return unexpected(p, what);
    adv(p);
    return 0;
}

static jnode *node(parser *p, jnode_kind k, int line) {
    jnode *n = ja_alloc(p->a, sizeof *n);
    if (!n) {
        poom(p);
        return NULL;
    }
    n->kind = k;
    n->line = line;
    return n;
}

static int lpush(parser *p, jlist *l, jnode *n) {
    if (!n) return -1;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        jnode **v = ja_alloc(p->a, cap * sizeof *v);
        if (!v) return poom(p);
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = n;
    return 0;
}

/* Grow a pointer array of n elements in the arena by one (capacities are
 * powers of two: it is full when n is 0 or a power of two). */
static int grow(parser *p, void **arr, size_t n, size_t elem) {
    if (n && (n & (n - 1))) return 0;
    size_t cap = n ? n * 2 : 1;
    void *v = ja_alloc(p->a, cap * elem);
    if (!v) return poom(p);
    if (n) memcpy(v, *arr, n * elem);
    *arr = v;
    return 0;
}

static int add_target(parser *p, jnode *n, const char *name) {
    if (grow(p, (void **)&n->targets, n->n_targets, sizeof *n->targets)) return -1;
    n->targets[n->n_targets++] = name;
    return 0;
}

static const lyra_jv *lit(parser *p, jv_type t) {
    lyra_jv *v = ja_alloc(p->a, sizeof *v);
    if (!v) poom(p);
    else v->t = t;
    return v;
}

/* ------------------------------------------------------------------ expressions */

static jnode *parse_expr(parser *p, int condexpr);
static jnode *parse_unary(parser *p, int with_filter);

static int enter(parser *p) {
    if (++p->depth > MAX_PARSE_DEPTH) return perr(p, cur(p)->line, "expression or block nested too deeply");
    return 0;
}

/* ( args ) of a call, filter or test: positional, then name=value. */
static int parse_args(parser *p, jnode *n) {
    if (expect_op(p, "(")) return -1;
    while (!is_op(cur(p), ")")) {
        if (n->args.n + n->kwargs.n && expect_op(p, ",")) return -1;
        if (is_op(cur(p), ")")) break;
        if (is_op(cur(p), "*") || is_op(cur(p), "**"))
            return perr(p, cur(p)->line, "*args and **kwargs in calls are not supported");
        if (cur(p)->kind == T_NAME && is_op(peek(p, 1), "=")) {
            const char *name = cur(p)->s;
            adv(p);
            adv(p);
            if (grow(p, (void **)&n->kwnames, n->kwargs.n, sizeof *n->kwnames)) return -1;
            n->kwnames[n->kwargs.n] = name;
            if (lpush(p, &n->kwargs, parse_expr(p, 1))) return -1;
        } else {
            if (n->kwargs.n) return perr(p, cur(p)->line, "a positional argument after a keyword argument");
            if (lpush(p, &n->args, parse_expr(p, 1))) return -1;
        }
    }
    adv(p);
    return 0;
}

/* The name of a filter or test (dotted names are not supported). */
static const char *parse_dotted(parser *p) {
    if (cur(p)->kind != T_NAME) {
        unexpected(p, "a name");
        return NULL;
    }
    const char *s = cur(p)->s;
    adv(p);
    if (is_op(cur(p), ".")) {
        perr(p, cur(p)->line, "dotted filter and test names are not supported");
        return NULL;
    }
    return s;
}

static jnode *parse_subscript(parser *p, jnode *obj) {
    int line = cur(p)->line;
    if (is_op(cur(p), ".")) {
        adv(p);
        tok *t = cur(p);
        if (t->kind == T_NAME) {
            jnode *n = node(p, JN_ATTR, line);
            if (!n) return NULL;
            n->a = obj;
            n->s = t->s;
            adv(p);
            return n;
        }
        if (t->kind == T_INT) {
            jnode *n = node(p, JN_ITEM, line), *k = node(p, JN_LIT, line);
            lyra_jv *v = (lyra_jv *)lit(p, JV_INT);
            if (!n || !k || !v) return NULL;
            v->u.i = t->i;
            k->v = v;
            n->a = obj;
            n->b = k;
            adv(p);
            return n;
        }
        unexpected(p, "an attribute name");
        return NULL;
    }
    adv(p); /* [ */
    jnode *parts[3] = {NULL, NULL, NULL};
    int colons = 0;
    if (!is_op(cur(p), ":")) {
        parts[0] = parse_expr(p, 1);
        if (!parts[0]) return NULL;
    }
    while (is_op(cur(p), ":") && colons < 2) {
        adv(p);
        colons++;
        if (!is_op(cur(p), ":") && !is_op(cur(p), "]") && !is_op(cur(p), ",")) {
            parts[colons] = parse_expr(p, 1);
            if (!parts[colons]) return NULL;
        }
    }
    if (is_op(cur(p), ",")) {
        perr(p, cur(p)->line, "tuple subscripts are not supported");
        return NULL;
    }
    if (expect_op(p, "]")) return NULL;
    jnode *n = node(p, colons ? JN_SLICE : JN_ITEM, line);
    if (!n) return NULL;
    n->a = obj;
    n->b = parts[0];
    n->c = parts[1];
    n->d = parts[2];
    return n;
}

static jnode *parse_postfix(parser *p, jnode *n) {
    while (n) {
        if (is_op(cur(p), ".") || is_op(cur(p), "[")) n = parse_subscript(p, n);
        else if (is_op(cur(p), "(")) {
            jnode *c = node(p, JN_CALL, cur(p)->line);
            if (!c) return NULL;
            c->a = n;
            if (parse_args(p, c)) return NULL;
            n = c;
        } else break;
    }
    return n;
}

static jnode *parse_filter_expr(parser *p, jnode *n) {
    while (n) {
        if (is_op(cur(p), "|")) {
            int line = cur(p)->line;
            adv(p);
            const char *name = parse_dotted(p);
            if (!name) return NULL;
            jnode *f = node(p, JN_FILTER, line);
            if (!f) return NULL;
            f->a = n;
            f->s = name;
            f->fid = jb_filter_id(name);
            if (f->fid < 0) {
                perr(p, line, "unknown or unsupported filter '%s'", name);
                return NULL;
            }
            if (is_op(cur(p), "(") && parse_args(p, f)) return NULL;
            n = f;
        } else if (is_name(cur(p), "is")) {
            int line = cur(p)->line;
            adv(p);
            int neg = 0;
            if (is_name(cur(p), "not")) {
                neg = 1;
                adv(p);
            }
            const char *name = parse_dotted(p);
            if (!name) return NULL;
            jnode *t = node(p, JN_TEST, line);
            if (!t) return NULL;
            t->a = n;
            t->s = name;
            t->op = neg;
            t->fid = jb_test_id(name);
            if (t->fid < 0) {
                perr(p, line, "unknown or unsupported test '%s'", name);
                return NULL;
            }
            tok *c = cur(p);
            if (is_op(c, "(")) {
                if (parse_args(p, t)) return NULL;
            } else if ((c->kind == T_NAME || c->kind == T_STR || c->kind == T_INT || c->kind == T_FLOAT ||
                        is_op(c, "[") || is_op(c, "{")) &&
                       !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
                if (is_name(c, "is")) {
                    perr(p, c->line, "tests cannot be chained with 'is'");
                    return NULL;
                }
                if (enter(p)) return NULL;
                jnode *arg = parse_unary(p, 0); /* primary + postfix */
                p->depth--;
                if (lpush(p, &t->args, arg)) return NULL;
            }
            n = t;
        } else if (is_op(cur(p), "(")) {
            n = parse_postfix(p, n);
        } else break;
    }
    return n;
}

static jnode *parse_primary(parser *p) {
    tok *t = cur(p);
    int line = t->line;
    if (t->kind == T_NAME) {
        jnode *n = node(p, JN_LIT, line);
        if (!n) return NULL;
        if (is_name(t, "true") || is_name(t, "True")) n->v = JV_TRUE;
        else if (is_name(t, "false") || is_name(t, "False")) n->v = JV_FALSE;
        else if (is_name(t, "none") || is_name(t, "None")) n->v = JV_NONEV;
        else {
            n->kind = JN_NAME;
            n->s = t->s;
        }
        adv(p);
        return n;
    }
    if (t->kind == T_STR) {
        jbuf b = {0};
        while (cur(p)->kind == T_STR) { /* adjacent strings are one */
            jb_add(&b, cur(p)->s, cur(p)->n);
            adv(p);
        }
        jnode *n = node(p, JN_LIT, line);
        lyra_jv *v = (lyra_jv *)lit(p, JV_STR);
        char *s = b.fail ? NULL : ja_strdup(p->a, b.p ? b.p : "", b.n);
        size_t len = b.n;
        free(b.p);
        if (!n || !v || !s) {
            poom(p);
            return NULL;
        }
        v->u.s.p = s;
        v->u.s.n = len;
        n->v = v;
        return n;
    }
    if (t->kind == T_INT || t->kind == T_FLOAT) {
        jnode *n = node(p, JN_LIT, line);
        lyra_jv *v = (lyra_jv *)lit(p, t->kind == T_INT ? JV_INT : JV_FLOAT);
        if (!n || !v) return NULL;
        if (t->kind == T_INT) v->u.i = t->i;
        else v->u.f = t->f;
        n->v = v;
        adv(p);
        return n;
    }
    if (is_op(t, "(")) {
        adv(p);
        jnode *tu = node(p, JN_TUPLE, line);
        if (!tu) return NULL;
        int comma = 0;
        while (!is_op(cur(p), ")")) {
            if (tu->args.n && expect_op(p, ",")) return NULL;
            if (tu->args.n && is_op(cur(p), ")")) {
                comma = 1;
                break;
            }
            if (lpush(p, &tu->args, parse_expr(p, 1))) return NULL;
        }
        adv(p);
        if (tu->args.n == 1 && !comma) return tu->args.v[0];
        return tu;
    }
    if (is_op(t, "[")) {
        adv(p);
        jnode *l = node(p, JN_LIST, line);
        if (!l) return NULL;
        while (!is_op(cur(p), "]")) {
            if (l->args.n && expect_op(p, ",")) return NULL;
            if (is_op(cur(p), "]")) break;
            if (lpush(p, &l->args, parse_expr(p, 1))) return NULL;
        }
        adv(p);
        return l;
    }
    if (is_op(t, "{")) {
        adv(p);
        jnode *d = node(p, JN_DICT, line);
        if (!d) return NULL;
        while (!is_op(cur(p), "}")) {
            if (d->args.n && expect_op(p, ",")) return NULL;
            if (is_op(cur(p), "}")) break;
            if (lpush(p, &d->args, parse_expr(p, 1))) return NULL;
            if (expect_op(p, ":")) return NULL;
            if (lpush(p, &d->kwargs, parse_expr(p, 1))) return NULL;
        }
        adv(p);
        return d;
    }
    unexpected(p, NULL);
    return NULL;
}

static jnode *parse_unary(parser *p, int with_filter) {
    if (enter(p)) return NULL;
    jnode *n;
    int line = cur(p)->line;
    if (is_op(cur(p), "-") || is_op(cur(p), "+")) {
        int neg = is_op(cur(p), "-");
        adv(p);
        n = node(p, neg ? JN_NEG : JN_POS, line);
        if (n && !(n->a = parse_unary(p, 0))) n = NULL;
    } else n = parse_primary(p);
    n = parse_postfix(p, n);
    if (with_filter) n = parse_filter_expr(p, n);
    p->depth--;
    return n;
}

static jnode *binop(parser *p, int op, jnode *a, jnode *b, int line) {
    if (!a || !b) return NULL;
    jnode *n = node(p, JN_BIN, line);
    if (!n) return NULL;
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static jnode *parse_pow(parser *p) {
    jnode *n = parse_unary(p, 1);
    while (n && is_op(cur(p), "**")) {
        int line = cur(p)->line;
        adv(p);
        n = binop(p, JO_POW, n, parse_unary(p, 1), line);
    }
    return n;
}

static jnode *parse_math2(parser *p) {
    jnode *n = parse_pow(p);
    for (;;) {
        int op = is_op(cur(p), "*") ? JO_MUL : is_op(cur(p), "/") ? JO_DIV : is_op(cur(p), "//") ? JO_FDIV
                 : is_op(cur(p), "%") ? JO_MOD : 0;
        if (!n || !op) return n;
        int line = cur(p)->line;
        adv(p);
        n = binop(p, op, n, parse_pow(p), line);
    }
}

static jnode *parse_concat(parser *p) {
    jnode *n = parse_math2(p);
    while (n && is_op(cur(p), "~")) {
        int line = cur(p)->line;
        adv(p);
        n = binop(p, JO_CAT, n, parse_math2(p), line);
    }
    return n;
}

static jnode *parse_math1(parser *p) {
    jnode *n = parse_concat(p);
    for (;;) {
        int op = is_op(cur(p), "+") ? JO_ADD : is_op(cur(p), "-") ? JO_SUB : 0;
        if (!n || !op) return n;
        int line = cur(p)->line;
        adv(p);
        n = binop(p, op, n, parse_concat(p), line);
    }
}

static jnode *parse_compare(parser *p) {
    int line = cur(p)->line;
    jnode *first = parse_math1(p);
    if (!first) return NULL;
    jnode *c = NULL;
    for (;;) {
        tok *t = cur(p);
        int op = is_op(t, "==") ? JO_EQ : is_op(t, "!=") ? JO_NE : is_op(t, "<") ? JO_LT : is_op(t, "<=") ? JO_LE
                 : is_op(t, ">") ? JO_GT : is_op(t, ">=") ? JO_GE : is_name(t, "in") ? JO_IN : 0;
        if (!op && is_name(t, "not") && is_name(peek(p, 1), "in")) {
            op = JO_NOTIN;
            adv(p);
        }
        if (!op) break;
        adv(p);
        if (!c) {
            c = node(p, JN_CMP, line);
            if (!c || lpush(p, &c->args, first)) return NULL;
        }
        if (grow(p, (void **)&c->ops, c->args.n - 1, sizeof *c->ops)) return NULL;
        c->ops[c->args.n - 1] = op;
        if (lpush(p, &c->args, parse_math1(p))) return NULL;
    }
    return c ? c : first;
}

static jnode *parse_not(parser *p) {
    if (is_name(cur(p), "not")) {
        int line = cur(p)->line;
        adv(p);
        if (enter(p)) return NULL;
        jnode *n = node(p, JN_NOT, line);
        if (n && !(n->a = parse_not(p))) n = NULL;
        p->depth--;
        return n;
    }
    return parse_compare(p);
}

static jnode *parse_and(parser *p) {
    jnode *n = parse_not(p);
    while (n && is_name(cur(p), "and")) {
        int line = cur(p)->line;
        adv(p);
        jnode *r = parse_not(p);
        jnode *a = r ? node(p, JN_AND, line) : NULL;
        if (!a) return NULL;
        a->a = n;
        a->b = r;
        n = a;
    }
    return n;
}

static jnode *parse_or(parser *p) {
    jnode *n = parse_and(p);
    while (n && is_name(cur(p), "or")) {
        int line = cur(p)->line;
        adv(p);
        jnode *r = parse_and(p);
        jnode *o = r ? node(p, JN_OR, line) : NULL;
        if (!o) return NULL;
        o->a = n;
        o->b = r;
        n = o;
    }
    return n;
}

static jnode *parse_expr(parser *p, int condexpr) {
    if (enter(p)) return NULL;
    jnode *n = parse_or(p);
    while (condexpr && n && is_name(cur(p), "if")) {
        int line = cur(p)->line;
        adv(p);
        jnode *c = node(p, JN_COND, line);
        if (!c) return NULL;
        c->b = n;
        if (!(c->a = parse_or(p))) return NULL;
        if (is_name(cur(p), "else")) {
            adv(p);
            if (!(c->c = parse_expr(p, 1))) return NULL;
        }
        n = c;
    }
    p->depth--;
    return n;
}

/* An expression, or several separated by commas: a tuple. */
static jnode *parse_tuple_expr(parser *p) {
    int line = cur(p)->line;
    jnode *n = parse_expr(p, 1);
    if (!n || !is_op(cur(p), ",")) return n;
    jnode *t = node(p, JN_TUPLE, line);
    if (!t || lpush(p, &t->args, n)) return NULL;
    while (is_op(cur(p), ",")) {
        adv(p);
        if (cur(p)->kind == T_BEND || cur(p)->kind == T_VEND) break;
        if (lpush(p, &t->args, parse_expr(p, 1))) return NULL;
    }
    return t;
}

/* ------------------------------------------------------------------ statements */

static int parse_body(parser *p, jlist *body, const char *const *ends);

/* Names assigned by for / set: a, b or (a, b). */
static int parse_targets(parser *p, jnode *n) {
    int paren = is_op(cur(p), "(");
    if (paren) adv(p);
    for (;;) {
        if (cur(p)->kind != T_NAME) return unexpected(p, "a name");
        if (add_target(p, n, cur(p)->s)) return -1;
        adv(p);
        if (!is_op(cur(p), ",")) break;
        adv(p);
    }
    if (paren) return expect_op(p, ")");
    return 0;
}

static int end_tag(parser *p) { return expect_kind(p, T_BEND, "'%}'"); }

/* At {% NAME: consume the name and %}. */
static int expect_end(parser *p, const char *name) {
    if (!is_name(cur(p), name)) {
        char w[40];
        snprintf(w, sizeof w, "'%s'", name);
        return unexpected(p, w);
    }
    adv(p);
    return end_tag(p);
}

static jnode *parse_if(parser *p, int line) {
    jnode *n = node(p, JN_IF, line);
    if (!n || !(n->a = parse_tuple_expr(p)) || end_tag(p)) return NULL;
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    if (parse_body(p, &n->body, ends)) return NULL;
    if (is_name(cur(p), "elif")) {
        int l = cur(p)->line;
        adv(p);
        if (lpush(p, &n->orelse, parse_if(p, l))) return NULL;
        return n;
    }
    if (is_name(cur(p), "else")) {
        adv(p);
        static const char *const ends2[] = {"endif", NULL};
        if (end_tag(p) || parse_body(p, &n->orelse, ends2)) return NULL;
    }
    return expect_end(p, "endif") ? NULL : n;
}

static jnode *parse_for(parser *p, int line) {
    jnode *n = node(p, JN_FOR, line);
    if (!n || parse_targets(p, n)) return NULL;
    if (!is_name(cur(p), "in")) {
        unexpected(p, "'in'");
        return NULL;
    }
    adv(p);
    if (!(n->a = parse_expr(p, 0))) return NULL;
    if (is_name(cur(p), "if")) {
        adv(p);
        if (!(n->b = parse_expr(p, 0))) return NULL;
    }
    if (is_name(cur(p), "recursive")) {
        perr(p, cur(p)->line, "recursive for loops are not supported");
        return NULL;
    }
    if (end_tag(p)) return NULL;
    static const char *const ends[] = {"else", "endfor", NULL};
    p->loops++;
    int rc = parse_body(p, &n->body, ends);
    p->loops--;
    if (rc) return NULL;
    if (is_name(cur(p), "else")) {
        adv(p);
        static const char *const ends2[] = {"endfor", NULL};
        if (end_tag(p) || parse_body(p, &n->orelse, ends2)) return NULL;
    }
    return expect_end(p, "endfor") ? NULL : n;
}

static jnode *parse_set(parser *p, int line) {
    jnode *n = node(p, JN_SET, line);
    if (!n) return NULL;
    if (cur(p)->kind == T_NAME && is_op(peek(p, 1), ".")) {
        if (add_target(p, n, cur(p)->s)) return NULL;
        adv(p);
        adv(p);
        if (cur(p)->kind != T_NAME) {
            unexpected(p, "an attribute name");
            return NULL;
        }
        n->attr = cur(p)->s;
        adv(p);
    } else if (parse_targets(p, n)) return NULL;
    if (is_op(cur(p), "=")) {
        adv(p);
        if (!(n->a = parse_tuple_expr(p)) || end_tag(p)) return NULL;
        return n;
    }
    if (n->attr || n->n_targets != 1) {
        unexpected(p, "'='");
        return NULL;
    }
    if (is_op(cur(p), "|")) {
        perr(p, cur(p)->line, "filters on block set are not supported");
        return NULL;
    }
    static const char *const ends[] = {"endset", NULL};
    if (end_tag(p) || parse_body(p, &n->body, ends) || expect_end(p, "endset")) return NULL;
    return n;
}

static jnode *parse_macro(parser *p, int line) {
    jnode *n = node(p, JN_MACRO, line);
    if (!n) return NULL;
    if (cur(p)->kind != T_NAME) {
        unexpected(p, "a macro name");
        return NULL;
    }
    n->s = cur(p)->s;
    adv(p);
    if (expect_op(p, "(")) return NULL;
    while (!is_op(cur(p), ")")) {
        if (n->n_targets && expect_op(p, ",")) return NULL;
        if (cur(p)->kind != T_NAME) {
            unexpected(p, "a parameter name");
            return NULL;
        }
        if (add_target(p, n, cur(p)->s)) return NULL;
        adv(p);
        jnode *def = NULL;
        if (is_op(cur(p), "=")) {
            adv(p);
            if (!(def = parse_expr(p, 1))) return NULL;
        } else if (n->args.n && n->args.v[n->args.n - 1]) {
            perr(p, cur(p)->line, "a parameter without a default after one with a default");
            return NULL;
        }
        /* args holds the defaults, NULL for none (pushed by hand) */
        if (n->args.n == n->args.cap) {
            size_t cap = n->args.cap ? n->args.cap * 2 : 4;
            jnode **v = ja_alloc(p->a, cap * sizeof *v);
            if (!v) {
                poom(p);
                return NULL;
            }
            if (n->args.n) memcpy(v, n->args.v, n->args.n * sizeof *v);
            n->args.v = v;
            n->args.cap = cap;
        }
        n->args.v[n->args.n++] = def;
    }
    adv(p);
    int loops = p->loops;
    p->loops = 0;
    static const char *const ends[] = {"endmacro", NULL};
    int rc = end_tag(p) || parse_body(p, &n->body, ends) || expect_end(p, "endmacro");
    p->loops = loops;
    return rc ? NULL : n;
}

static jnode *parse_with(parser *p, int line) {
    jnode *n = node(p, JN_WITH, line);
    if (!n) return NULL;
    while (cur(p)->kind != T_BEND) {
        if (n->n_targets && expect_op(p, ",")) return NULL;
        if (cur(p)->kind != T_NAME) {
            unexpected(p, "a name");
            return NULL;
        }
        if (add_target(p, n, cur(p)->s)) return NULL;
        adv(p);
        if (expect_op(p, "=") || lpush(p, &n->args, parse_expr(p, 1))) return NULL;
    }
    static const char *const ends[] = {"endwith", NULL};
    if (end_tag(p) || parse_body(p, &n->body, ends) || expect_end(p, "endwith")) return NULL;
    return n;
}

static jnode *parse_stmt(parser *p) {
    tok *t = cur(p);
    int line = t->line;
    if (t->kind != T_NAME) {
        unexpected(p, "a statement name");
        return NULL;
    }
    const char *name = t->s;
    adv(p);
    if (!strcmp(name, "if")) return parse_if(p, line);
    if (!strcmp(name, "for")) return parse_for(p, line);
    if (!strcmp(name, "set")) return parse_set(p, line);
    if (!strcmp(name, "macro")) return parse_macro(p, line);
    if (!strcmp(name, "with")) return parse_with(p, line);
    if (!strcmp(name, "break") || !strcmp(name, "continue")) {
        if (!p->loops) {
            perr(p, line, "'%s' outside a for loop", name);
            return NULL;
        }
        jnode *n = node(p, name[0] == 'b' ? JN_BREAK : JN_CONTINUE, line);
        return n && !end_tag(p) ? n : NULL;
    }
    if (!strcmp(name, "generation")) { /* transformers' AssistantTracker: the body as it is */
        jnode *n = node(p, JN_BODY, line);
        static const char *const ends[] = {"endgeneration", NULL};
        if (!n || end_tag(p) || parse_body(p, &n->body, ends) || expect_end(p, "endgeneration")) return NULL;
        return n;
    }
    static const char *const known[] = {"include", "import", "from", "extends", "block", "call", "filter",
                                        "raw", "autoescape", "do", "print", "trans", NULL};
    for (int i = 0; known[i]; i++)
        if (!strcmp(name, known[i])) {
            perr(p, line, "the '%s' statement is not supported", name);
            return NULL;
        }
    perr(p, line, "unknown statement '%s'", name);
    return NULL;
}

/* Statements until {% END %} with END in ends (the cursor left at END) or,
 * ends NULL, the end of the template. */
static int parse_body(parser *p, jlist *body, const char *const *ends) {
    if (enter(p)) return -1;
    int open_line = cur(p)->line;
    for (;;) {
        tok *t = cur(p);
        if (t->kind == T_EOF) {
            if (!ends) break;
            return perr(p, open_line, "unexpected end of template: '%s' missing (block opened here)", ends[0]);
        }
        if (t->kind == T_TEXT) {
            jnode *n = node(p, JN_TEXT, t->line);
            if (!n) return -1;
            n->s = t->s;
            n->sn = t->n;
            if (lpush(p, body, n)) return -1;
            adv(p);
        } else if (t->kind == T_VBEGIN) {
            adv(p);
            jnode *n = node(p, JN_OUT, t->line);
            if (!n || !(n->a = parse_tuple_expr(p)) || expect_kind(p, T_VEND, "'}}'") || lpush(p, body, n))
                return -1;
        } else if (t->kind == T_BBEGIN) {
            tok *name = peek(p, 1);
            for (int i = 0; ends && ends[i]; i++)
                if (is_name(name, ends[i])) {
                    adv(p);
                    p->depth--;
                    return 0;
                }
            if (name->kind == T_NAME &&
                (!strncmp(name->s, "end", 3) || !strcmp(name->s, "else") || !strcmp(name->s, "elif")))
                return perr(p, name->line, "unexpected '%s'%s", name->s,
                            ends ? "" : " (no block is open)");
            adv(p);
            if (lpush(p, body, parse_stmt(p))) return -1;
        } else return unexpected(p, NULL);
        if (p->failed) return -1;
    }
    p->depth--;
    return 0;
}

/* ------------------------------------------------------------------ entry */

int lyra_jinja_parse(const char *src, size_t len, const char *name, lyra_jinja **out, lyra_error *err) {
    *out = NULL;
    lyra_jinja *t = calloc(1, sizeof *t);
    if (!t) return lyra_err(err, LYRA_ERR_OOM, name, "out of memory");
    snprintf(t->name, sizeof t->name, "%s", name && *name ? name : "template");
    /* newlines normalized to \n, one trailing newline dropped (jinja2's
     * keep_trailing_newline=False) */
    char *s = ja_alloc(&t->a, len + 1);
    if (!s) {
        lyra_jinja_free(t);
        return lyra_err(err, LYRA_ERR_OOM, name, "out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else s[n++] = src[i];
    }
    if (n && s[n - 1] == '\n') n--;
    s[n] = '\0';
    parser p = {.a = &t->a, .name = t->name, .err = err};
    int rc = lex(&p, s, n);
    if (!rc) rc = parse_body(&p, &t->body, NULL);
    free(p.t);
    if (rc || p.failed) {
        lyra_jinja_free(t);
        return err ? err->code : LYRA_ERR_INPUT;
    }
    *out = t;
    return LYRA_OK;
}

void lyra_jinja_free(lyra_jinja *t) {
    if (!t) return;
    ja_free(&t->a);
    free(t);
}
