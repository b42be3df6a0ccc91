/* jinja_value.c: the values of src/jinja/ (jinja_impl.h): the arena they
 * live in, UTF-8 helpers, and Python's semantics for them: truth, ==, <,
 * str(), repr(), json.dumps(). The public constructors of jinja.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja/jinja_impl.h"

/* ------------------------------------------------------------------ arena */

typedef struct jchunk {
    struct jchunk *next;
    size_t used, cap;
    max_align_t data[];
} jchunk;

#define JA_CHUNK (64u * 1024u)

void *ja_alloc(jarena *a, size_t n) {
    if (a->over) return NULL;
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (!n) n = sizeof(max_align_t);
    if (a->limit && (n > a->limit || a->used > a->limit - n)) {
        a->over = 2;
        return NULL;
    }
    jchunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > JA_CHUNK / 2 ? n : JA_CHUNK;
        c = malloc(sizeof *c + cap);
        if (!c) {
            a->over = 1;
            return NULL;
        }
        c->cap = cap;
        c->used = 0;
        if (n > JA_CHUNK / 2 && a->head) { /* a big block: keep the current chunk first */
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    a->used += n;
    memset(p, 0, n);
    return p;
}

char *ja_strdup(jarena *a, const char *s, size_t n) {
    char *p = ja_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void ja_free(jarena *a) {
    for (jchunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->head = NULL;
    a->used = 0;
    a->over = 0;
}

/* ------------------------------------------------------------------ text */

void jb_add(jbuf *b, const char *s, size_t n) {
    if (b->fail) return;
    if (b->limit && (n > b->limit || b->n > b->limit - n)) {
        b->fail = 2;
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->fail = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void jb_puts(jbuf *b, const char *s) { jb_add(b, s, strlen(s)); }
void jb_char(jbuf *b, char c) { jb_add(b, &c, 1); }

void jb_utf8(jbuf *b, uint32_t c) {
    char t[4];
    if (c < 0x80) {
        t[0] = (char)c;
        jb_add(b, t, 1);
    } else if (c < 0x800) {
        t[0] = (char)(0xc0 | (c >> 6));
        t[1] = (char)(0x80 | (c & 0x3f));
        jb_add(b, t, 2);
    } else if (c < 0x10000) {
        t[0] = (char)(0xe0 | (c >> 12));
        t[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        t[2] = (char)(0x80 | (c & 0x3f));
        jb_add(b, t, 3);
    } else {
        t[0] = (char)(0xf0 | (c >> 18));
        t[1] = (char)(0x80 | ((c >> 12) & 0x3f));
        t[2] = (char)(0x80 | ((c >> 6) & 0x3f));
        t[3] = (char)(0x80 | (c & 0x3f));
        jb_add(b, t, 4);
    }
}

uint32_t ju_next(const char *s, size_t n, size_t *i) {
    const unsigned char *u = (const unsigned char *)s + *i;
    size_t left = n - *i;
    unsigned char c = u[0];
    size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (k == 0 || k > left) {
        *i += 1;
        return 0xfffd;
    }
    uint32_t cp = k == 1 ? c : k == 2 ? (c & 0x1fu) : k == 3 ? (c & 0x0fu) : (c & 0x07u);
    for (size_t j = 1; j < k; j++) {
        if ((u[j] & 0xc0) != 0x80) {
            *i += 1;
            return 0xfffd;
        }
        cp = (cp << 6) | (u[j] & 0x3fu);
    }
    *i += k;
    return cp;
}

size_t ju_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n;) {
        ju_next(s, n, &i);
        c++;
    }
    return c;
}

int ju_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
           c == 0x3000;
}

uint32_t ju_upper(uint32_t c) {
    if (c >= 'a' && c <= 'z') return c - 32;
    if (c < 0x80) return c;
    if (c >= 0xe0 && c <= 0xfe && c != 0xf7) return c - 32;
    if (c == 0xff) return 0x178;
    if (c >= 0x3b1 && c <= 0x3c9 && c != 0x3c2) return c - 32;
    if (c == 0x3c2) return 0x3a3;
    if (c == 0x3ac) return 0x386;
    if (c >= 0x3ad && c <= 0x3af) return c - 37;
    if (c == 0x3cc) return 0x38c;
    if (c == 0x3cd || c == 0x3ce) return c - 63;
    if (c >= 0x430 && c <= 0x44f) return c - 32;
    if (c >= 0x450 && c <= 0x45f) return c - 80;
    return c;
}

uint32_t ju_lower(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c < 0x80) return c;
    if (c >= 0xc0 && c <= 0xde && c != 0xd7) return c + 32;
    if (c == 0x178) return 0xff;
    if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2) return c + 32;
    if (c == 0x386) return 0x3ac;
    if (c >= 0x388 && c <= 0x38a) return c + 37;
    if (c == 0x38c) return 0x3cc;
    if (c == 0x38e || c == 0x38f) return c + 63;
    if (c >= 0x410 && c <= 0x42f) return c + 32;
    if (c >= 0x400 && c <= 0x40f) return c + 80;
    return c;
}

int ju_alpha(uint32_t c) { return ju_upper(c) != c || ju_lower(c) != c || c == 0xdf; }

/* ------------------------------------------------------------------ constants */

const lyra_jv jv_undef_c = {.t = JV_UNDEF};
const lyra_jv jv_none_c = {.t = JV_NONE};
const lyra_jv jv_true_c = {.t = JV_BOOL, .u.b = 1};
const lyra_jv jv_false_c = {.t = JV_BOOL, .u.b = 0};

/* ------------------------------------------------------------------ construction */

static lyra_jv *mk(jarena *a, jv_type t) {
    lyra_jv *v = ja_alloc(a, sizeof *v);
    if (v) v->t = t;
    return v;
}

static lyra_jv *mkstr(jarena *a, const char *s, size_t n) {
    lyra_jv *v = mk(a, JV_STR);
    char *p = v ? ja_strdup(a, s, n) : NULL;
    if (!p) return NULL;
    v->u.s.p = p;
    v->u.s.n = n;
    return v;
}

int jv_append(jarena *a, lyra_jv *l, const lyra_jv *item) {
    if (!l || !item) return -1;
    if (l->u.c.n == l->u.c.cap) {
        size_t cap = l->u.c.cap ? l->u.c.cap * 2 : 4;
        const lyra_jv **v = ja_alloc(a, cap * sizeof *v);
        if (!v) return -1;
        if (l->u.c.n) memcpy(v, l->u.c.v, l->u.c.n * sizeof *v);
        if (l->t == JV_DICT) {
            const lyra_jv **k = ja_alloc(a, cap * sizeof *k);
            if (!k) return -1;
            if (l->u.c.n) memcpy(k, l->u.c.k, l->u.c.n * sizeof *k);
            l->u.c.k = k;
        }
        l->u.c.v = v;
        l->u.c.cap = cap;
    }
    l->u.c.v[l->u.c.n++] = item;
    return 0;
}

/* Python hashes 1, 1.0 and True alike: keys equal under == are one key. */
const lyra_jv *jv_dget(const lyra_jv *d, const lyra_jv *key) {
    for (size_t i = 0; i < d->u.c.n; i++)
        if (jv_eq(d->u.c.k[i], key, 0) == 1) return d->u.c.v[i];
    return NULL;
}

const lyra_jv *jv_dget_s(const lyra_jv *d, const char *key) {
    size_t n = strlen(key);
    for (size_t i = 0; i < d->u.c.n; i++) {
        const lyra_jv *k = d->u.c.k[i];
        if (k->t == JV_STR && k->u.s.n == n && !memcmp(k->u.s.p, key, n)) return d->u.c.v[i];
    }
    return NULL;
}

int jv_dset(jarena *a, lyra_jv *d, const lyra_jv *key, const lyra_jv *val) {
    if (!d || !key || !val) return -1;
    for (size_t i = 0; i < d->u.c.n; i++)
        if (jv_eq(d->u.c.k[i], key, 0) == 1) {
            d->u.c.v[i] = val;
            return 0;
        }
    if (jv_append(a, d, val)) return -1;
    d->u.c.k[d->u.c.n - 1] = key;
    return 0;
}

/* ------------------------------------------------------------------ public constructors */

struct lyra_jinja_vars {
    jarena a;
    lyra_jv *globals; /* a dict: name -> value */
};

jarena *jinja_vars_arena(lyra_jinja_vars *v);
const lyra_jv *jinja_vars_globals(const lyra_jinja_vars *v);
jarena *jinja_vars_arena(lyra_jinja_vars *v) { return &v->a; }
const lyra_jv *jinja_vars_globals(const lyra_jinja_vars *v) { return v->globals; }

lyra_jinja_vars *lyra_jinja_vars_new(void) {
    lyra_jinja_vars *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->globals = mk(&v->a, JV_DICT);
    if (!v->globals) {
        ja_free(&v->a);
        free(v);
        return NULL;
    }
    return v;
}

void lyra_jinja_vars_free(lyra_jinja_vars *v) {
    if (!v) return;
    ja_free(&v->a);
    free(v);
}

lyra_jv *lyra_jv_str(lyra_jinja_vars *v, const char *s, size_t n) {
    if (!v || !s) return NULL;
    return mkstr(&v->a, s, n == (size_t)-1 ? strlen(s) : n);
}

lyra_jv *lyra_jv_int(lyra_jinja_vars *v, int64_t i) {
    lyra_jv *r = v ? mk(&v->a, JV_INT) : NULL;
    if (r) r->u.i = i;
    return r;
}

lyra_jv *lyra_jv_float(lyra_jinja_vars *v, double f) {
    lyra_jv *r = v ? mk(&v->a, JV_FLOAT) : NULL;
    if (r) r->u.f = f;
    return r;
}

lyra_jv *lyra_jv_bool(lyra_jinja_vars *v, int b) {
    lyra_jv *r = v ? mk(&v->a, JV_BOOL) : NULL;
    if (r) r->u.b = b != 0;
    return r;
}

lyra_jv *lyra_jv_none(lyra_jinja_vars *v) { return v ? mk(&v->a, JV_NONE) : NULL; }
lyra_jv *lyra_jv_list(lyra_jinja_vars *v) { return v ? mk(&v->a, JV_LIST) : NULL; }
lyra_jv *lyra_jv_dict(lyra_jinja_vars *v) { return v ? mk(&v->a, JV_DICT) : NULL; }

int lyra_jv_push(lyra_jinja_vars *v, lyra_jv *list, lyra_jv *item) {
    if (!v || !list || !item || list->t != JV_LIST) return LYRA_ERR_OOM;
    return jv_append(&v->a, list, item) ? LYRA_ERR_OOM : LYRA_OK;
}

int lyra_jv_set(lyra_jinja_vars *v, lyra_jv *dict, const char *key, lyra_jv *val) {
    if (!v || !dict || !key || !val || dict->t != JV_DICT) return LYRA_ERR_OOM;
    lyra_jv *k = mkstr(&v->a, key, strlen(key));
    return jv_dset(&v->a, dict, k, val) ? LYRA_ERR_OOM : LYRA_OK;
}

int lyra_jinja_vars_set(lyra_jinja_vars *v, const char *name, lyra_jv *val) {
    if (!v) return LYRA_ERR_OOM;
    return lyra_jv_set(v, v->globals, name, val);
}

/* ------------------------------------------------------------------ render-time constructors */

const lyra_jv *jv_mkstr(jstate *st, const char *s, size_t n) {
    if (st->lim->max_output && n > st->lim->max_output)
        return jfail(st, "a string of %zu bytes is over the output limit (%zu bytes)", n, st->lim->max_output);
    lyra_jv *v = mkstr(st->a, s, n);
    return v ? v : joom(st);
}

const lyra_jv *jv_mkstr_own(jstate *st, jbuf *b) {
    const lyra_jv *v;
    if (b->fail == 2)
        v = jfail(st, "a string is over the output limit (%zu bytes)", st->lim->max_output);
    else if (b->fail)
        v = joom(st);
    else
        v = jv_mkstr(st, b->p ? b->p : "", b->n);
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
    return v;
}

const lyra_jv *jv_mkint(jstate *st, int64_t i) {
    lyra_jv *v = mk(st->a, JV_INT);
    if (!v) return joom(st);
    v->u.i = i;
    return v;
}

const lyra_jv *jv_mkfloat(jstate *st, double f) {
    lyra_jv *v = mk(st->a, JV_FLOAT);
    if (!v) return joom(st);
    v->u.f = f;
    return v;
}

lyra_jv *jv_mklist(jstate *st, size_t cap) {
    lyra_jv *v = mk(st->a, JV_LIST);
    if (!v) {
        joom(st);
        return NULL;
    }
    if (cap) {
        v->u.c.v = ja_alloc(st->a, cap * sizeof *v->u.c.v);
        if (!v->u.c.v) {
            joom(st);
            return NULL;
        }
        v->u.c.cap = cap;
    }
    return v;
}

lyra_jv *jv_mkdict(jstate *st) {
    lyra_jv *v = mk(st->a, JV_DICT);
    if (!v) joom(st);
    return v;
}

/* ------------------------------------------------------------------ semantics */

int jv_truthy(const lyra_jv *v) {
    switch (v->t) {
    case JV_UNDEF:
    case JV_NONE: return 0;
    case JV_BOOL: return v->u.b;
    case JV_INT: return v->u.i != 0;
    case JV_FLOAT: return v->u.f != 0.0;
    case JV_STR: return v->u.s.n != 0;
    case JV_LIST:
    case JV_DICT: return v->u.c.n != 0;
    default: return 1;
    }
}

int jv_is_int(const lyra_jv *v) { return v->t == JV_INT || v->t == JV_BOOL; }

static int is_num(const lyra_jv *v) { return v->t == JV_INT || v->t == JV_BOOL || v->t == JV_FLOAT; }
static double num(const lyra_jv *v) {
    return v->t == JV_FLOAT ? v->u.f : v->t == JV_INT ? (double)v->u.i : (double)v->u.b;
}
static int64_t inum(const lyra_jv *v) { return v->t == JV_INT ? v->u.i : v->u.b; }

#define JV_MAX_DEPTH 200

int jv_eq(const lyra_jv *a, const lyra_jv *b, int depth) {
    if (depth > JV_MAX_DEPTH) return 0;
    if (is_num(a) && is_num(b)) {
        if (a->t != JV_FLOAT && b->t != JV_FLOAT) return inum(a) == inum(b);
        return num(a) == num(b);
    }
    if (a->t != b->t) return 0;
    switch (a->t) {
    case JV_UNDEF:
    case JV_NONE: return 1;
    case JV_STR: return a->u.s.n == b->u.s.n && !memcmp(a->u.s.p, b->u.s.p, a->u.s.n);
    case JV_LIST:
        if (a->tuple != b->tuple || a->u.c.n != b->u.c.n) return 0;
        for (size_t i = 0; i < a->u.c.n; i++)
            if (!jv_eq(a->u.c.v[i], b->u.c.v[i], depth + 1)) return 0;
        return 1;
    case JV_DICT:
        if (a->ns || b->ns) return a == b;
        if (a->u.c.n != b->u.c.n) return 0;
        for (size_t i = 0; i < a->u.c.n; i++) {
            const lyra_jv *w = NULL;
            for (size_t j = 0; j < b->u.c.n && !w; j++)
                if (jv_eq(a->u.c.k[i], b->u.c.k[j], depth + 1)) w = b->u.c.v[j];
            if (!w || !jv_eq(a->u.c.v[i], w, depth + 1)) return 0;
        }
        return 1;
    default: return a == b;
    }
}

int jv_cmp(const lyra_jv *a, const lyra_jv *b, int depth) {
    if (depth > JV_MAX_DEPTH) return -2;
    if (is_num(a) && is_num(b)) {
        if (a->t != JV_FLOAT && b->t != JV_FLOAT) return inum(a) < inum(b) ? -1 : inum(a) > inum(b);
        double x = num(a), y = num(b);
        return x < y ? -1 : x > y ? 1 : 0; /* NaN: 0 (neither < nor >) */
    }
    if (a->t == JV_STR && b->t == JV_STR) { /* UTF-8 byte order = code point order */
        size_t n = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
        int c = memcmp(a->u.s.p, b->u.s.p, n);
        if (c) return c < 0 ? -1 : 1;
        return a->u.s.n < b->u.s.n ? -1 : a->u.s.n > b->u.s.n;
    }
    if (a->t == JV_LIST && b->t == JV_LIST && a->tuple == b->tuple) {
        for (size_t i = 0; i < a->u.c.n && i < b->u.c.n; i++) {
            if (jv_eq(a->u.c.v[i], b->u.c.v[i], depth + 1)) continue;
            return jv_cmp(a->u.c.v[i], b->u.c.v[i], depth + 1);
        }
        return a->u.c.n < b->u.c.n ? -1 : a->u.c.n > b->u.c.n;
    }
    return -2;
}

const char *jv_type_name(const lyra_jv *v) {
    switch (v->t) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return v->tuple ? "tuple" : "list";
    case JV_DICT: return v->ns ? "Namespace" : "dict";
    case JV_FUNC: return "function";
    case JV_LOOP: return "LoopContext";
    }
    return "?";
}

/* Python's repr(float): the shortest digits that read back the same; fixed
 * notation for exponents -4..15, else d.ddde+XX. */
void jv_float_repr(jbuf *b, double f) {
    if (isnan(f)) {
        jb_puts(b, "nan");
        return;
    }
    if (isinf(f)) {
        jb_puts(b, f < 0 ? "-inf" : "inf");
        return;
    }
    char t[64];
    int p;
    for (p = 1; p < 17; p++) {
        snprintf(t, sizeof t, "%.*e", p - 1, f);
        if (strtod(t, NULL) == f) break;
    }
    snprintf(t, sizeof t, "%.*e", p - 1, f);
    /* t: [-]d[.ddd]e[+-]XX */
    char digits[32];
    int nd = 0, neg = t[0] == '-';
    const char *q = t + neg;
    for (; *q && *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    int exp = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    if (neg) jb_char(b, '-');
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            jb_puts(b, "0.");
            for (int i = 0; i < -exp - 1; i++) jb_char(b, '0');
            jb_add(b, digits, (size_t)nd);
        } else {
            for (int i = 0; i <= exp; i++) jb_char(b, i < nd ? digits[i] : '0');
            jb_char(b, '.');
            if (nd > exp + 1) jb_add(b, digits + exp + 1, (size_t)(nd - exp - 1));
            else jb_char(b, '0');
        }
    } else {
        jb_char(b, digits[0]);
        if (nd > 1) {
            jb_char(b, '.');
            jb_add(b, digits + 1, (size_t)(nd - 1));
        }
        snprintf(t, sizeof t, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
        jb_puts(b, t);
    }
}

/* Python's str.isprintable, close enough: controls, C1, the separators other
 * than ' ', format characters and surrogates are not. */
static int printable(uint32_t c) {
    if (c < 0x20 || (c >= 0x7f && c <= 0xa0) || c == 0xad) return 0;
    if (c == 0x1680 || (c >= 0x2000 && c <= 0x200f) || (c >= 0x2028 && c <= 0x202f) ||
        (c >= 0x205f && c <= 0x206f) || c == 0x3000 || c == 0xfeff || (c >= 0xd800 && c <= 0xdfff) ||
        c == 0xfffe || c == 0xffff)
        return 0;
    return 1;
}

static void repr_str(jbuf *b, const char *s, size_t n) {
    int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    jb_char(b, q);
    for (size_t i = 0; i < n;) {
        size_t at = i;
        uint32_t c = ju_next(s, n, &i);
        char t[16];
        if (c == (uint32_t)q || c == '\\') {
            jb_char(b, '\\');
            jb_char(b, (char)c);
        } else if (c == '\n') jb_puts(b, "\\n");
        else if (c == '\r') jb_puts(b, "\\r");
        else if (c == '\t') jb_puts(b, "\\t");
        else if (!printable(c)) {
            if (c < 0x100) snprintf(t, sizeof t, "\\x%02x", c);
            else if (c < 0x10000) snprintf(t, sizeof t, "\\u%04x", c);
            else snprintf(t, sizeof t, "\\U%08x", c);
            jb_puts(b, t);
        } else jb_add(b, s + at, i - at);
    }
    jb_char(b, q);
}

int jv_repr(jbuf *b, const lyra_jv *v, int depth) {
    if (depth > JV_MAX_DEPTH) return -1;
    switch (v->t) {
    case JV_STR: repr_str(b, v->u.s.p, v->u.s.n); return 0;
    case JV_LIST:
        jb_char(b, v->tuple ? '(' : '[');
        for (size_t i = 0; i < v->u.c.n; i++) {
            if (i) jb_puts(b, ", ");
            if (jv_repr(b, v->u.c.v[i], depth + 1)) return -1;
        }
        if (v->tuple && v->u.c.n == 1) jb_char(b, ',');
        jb_char(b, v->tuple ? ')' : ']');
        return 0;
    case JV_DICT:
        if (v->ns) {
            jb_puts(b, "<Namespace ");
            int r = 0;
            lyra_jv d = *v;
            d.ns = 0;
            r = jv_repr(b, &d, depth + 1);
            jb_char(b, '>');
            return r;
        }
        jb_char(b, '{');
        for (size_t i = 0; i < v->u.c.n; i++) {
            if (i) jb_puts(b, ", ");
            if (jv_repr(b, v->u.c.k[i], depth + 1)) return -1;
            jb_puts(b, ": ");
            if (jv_repr(b, v->u.c.v[i], depth + 1)) return -1;
        }
        jb_char(b, '}');
        return 0;
    default: return jv_str(b, v, depth);
    }
}

int jv_str(jbuf *b, const lyra_jv *v, int depth) {
    char t[32];
    switch (v->t) {
    case JV_UNDEF: return 0;
    case JV_NONE: jb_puts(b, "None"); return 0;
    case JV_BOOL: jb_puts(b, v->u.b ? "True" : "False"); return 0;
    case JV_INT:
        snprintf(t, sizeof t, "%lld", (long long)v->u.i);
        jb_puts(b, t);
        return 0;
    case JV_FLOAT: jv_float_repr(b, v->u.f); return 0;
    case JV_STR: jb_add(b, v->u.s.p, v->u.s.n); return 0;
    case JV_LIST:
    case JV_DICT: return jv_repr(b, v, depth);
    case JV_FUNC:
        jb_puts(b, "<function ");
        jb_puts(b, v->u.fn->name ? v->u.fn->name : "?");
        jb_char(b, '>');
        return 0;
    case JV_LOOP: jb_puts(b, "<LoopContext>"); return 0;
    }
    return 0;
}

static void json_str(jbuf *b, const char *s, size_t n) {
    jb_char(b, '"');
    size_t run = 0; /* bytes copied as they are, pending */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *e = NULL;
        char t[8];
        if (c == '"') e = "\\\"";
        else if (c == '\\') e = "\\\\";
        else if (c == '\n') e = "\\n";
        else if (c == '\r') e = "\\r";
        else if (c == '\t') e = "\\t";
        else if (c == '\b') e = "\\b";
        else if (c == '\f') e = "\\f";
        else if (c < 0x20) {
            snprintf(t, sizeof t, "\\u%04x", c);
            e = t;
        }
        if (!e) {
            run++;
            continue;
        }
        jb_add(b, s + i - run, run);
        run = 0;
        jb_puts(b, e);
    }
    jb_add(b, s + n - run, run);
    jb_char(b, '"');
}

static void json_nl(jbuf *b, int indent, int level) {
    jb_char(b, '\n');
    for (int i = 0; i < indent * level; i++) jb_char(b, ' ');
}

/* A dict key as json.dumps writes it: strings as they are, numbers, bools
 * and None converted; else not serializable. */
static int json_key(jbuf *b, const lyra_jv *k) {
    switch (k->t) {
    case JV_STR: json_str(b, k->u.s.p, k->u.s.n); return 0;
    case JV_BOOL: jb_puts(b, k->u.b ? "\"true\"" : "\"false\""); return 0;
    case JV_NONE: jb_puts(b, "\"null\""); return 0;
    case JV_INT:
    case JV_FLOAT: {
        jbuf t = {0};
        if (k->t == JV_FLOAT && isinf(k->u.f)) jb_puts(&t, k->u.f < 0 ? "-Infinity" : "Infinity");
        else if (k->t == JV_FLOAT && isnan(k->u.f)) jb_puts(&t, "NaN");
        else jv_str(&t, k, 0);
        jb_char(b, '"');
        jb_add(b, t.p ? t.p : "", t.n);
        jb_char(b, '"');
        free(t.p);
        return 0;
    }
    default: return -2;
    }
}

static int key_less(const lyra_jv *a, const lyra_jv *b) { return jv_cmp(a, b, 0) == -1; }

int jv_json(jbuf *b, const lyra_jv *v, int indent, const char *item_sep, const char *key_sep, int sort_keys,
            int level, const lyra_jv **bad) {
    if (level > JV_MAX_DEPTH) return -1;
    const char *isep = item_sep ? item_sep : indent >= 0 ? "," : ", ";
    const char *ksep = key_sep ? key_sep : ": ";
    switch (v->t) {
    case JV_NONE: jb_puts(b, "null"); return 0;
    case JV_BOOL: jb_puts(b, v->u.b ? "true" : "false"); return 0;
    case JV_INT: return jv_str(b, v, 0);
    case JV_FLOAT:
        if (isnan(v->u.f)) jb_puts(b, "NaN");
        else if (isinf(v->u.f)) jb_puts(b, v->u.f < 0 ? "-Infinity" : "Infinity");
        else jv_float_repr(b, v->u.f);
        return 0;
    case JV_STR: json_str(b, v->u.s.p, v->u.s.n); return 0;
    case JV_LIST:
        if (!v->u.c.n) {
            jb_puts(b, "[]");
            return 0;
        }
        jb_char(b, '[');
        for (size_t i = 0; i < v->u.c.n; i++) {
            if (i) jb_puts(b, isep);
            if (indent >= 0) json_nl(b, indent, level + 1);
            int r = jv_json(b, v->u.c.v[i], indent, item_sep, key_sep, sort_keys, level + 1, bad);
            if (r) return r;
        }
        if (indent >= 0) json_nl(b, indent, level);
        jb_char(b, ']');
        return 0;
    case JV_DICT: {
        if (v->ns) break;
        if (!v->u.c.n) {
            jb_puts(b, "{}");
            return 0;
        }
        size_t n = v->u.c.n;
        size_t *order = malloc(n * sizeof *order);
        if (!order) {
            b->fail = 1;
            return 0;
        }
        for (size_t i = 0; i < n; i++) order[i] = i;
        if (sort_keys) /* insertion sort: stable, dicts are small */
            for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && key_less(v->u.c.k[order[j]], v->u.c.k[order[j - 1]]); j--) {
                    size_t t = order[j];
                    order[j] = order[j - 1];
                    order[j - 1] = t;
                }
        jb_char(b, '{');
        int r = 0;
        for (size_t i = 0; i < n && !r; i++) {
            if (i) jb_puts(b, isep);
            if (indent >= 0) json_nl(b, indent, level + 1);
            r = json_key(b, v->u.c.k[order[i]]);
            if (r) {
                *bad = v->u.c.k[order[i]];
                break;
            }
            jb_puts(b, ksep);
            r = jv_json(b, v->u.c.v[order[i]], indent, item_sep, key_sep, sort_keys, level + 1, bad);
        }
        free(order);
        if (r) return r;
        if (indent >= 0) json_nl(b, indent, level);
        jb_char(b, '}');
        return 0;
    }
    default: break;
    }
    *bad = v;
    return -2;
}
