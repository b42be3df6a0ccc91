/* jinja_builtin.c: the filters, tests, globals and methods of src/jinja/
 * (jinja_impl.h), with jinja2's and Python's semantics:
 *   filters  trim length count tojson upper lower default d items join
 *            replace capitalize title list first last selectattr rejectattr
 *            select reject map string int float abs round sum min max unique
 *            sort reverse safe escape e indent dictsort attr
 *   tests    defined undefined none boolean true false integer float number
 *            string mapping iterable sequence callable sameas escaped odd even
 *            divisibleby eq equalto == ne != lt lessthan < le <= gt
 *            greaterthan > ge >= in lower upper
 *   globals  range namespace dict raise_exception strftime_now
 *   methods  str: strip lstrip rstrip split rsplit splitlines startswith
 *            endswith upper lower title capitalize replace find rfind count
 *            join isdigit isalpha isalnum isspace islower isupper;
 *            dict: items keys values get; list: index count; loop.cycle
 * (dict and list methods that modify are refused, as jinja2's immutable
 * sandbox does). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jinja/jinja_impl.h"

/* ------------------------------------------------------------------ arguments */

typedef struct jargs {
    const lyra_jv *const *a; /* positional (after the value, for filters) */
    size_t n;
    const char *const *kwn;
    const lyra_jv *const *kwv;
    size_t nkw;
} jargs;

/* Parameter pos (0-based) or keyword name; NULL when not given. */
static const lyra_jv *arg(const jargs *A, size_t pos, const char *name) {
    if (pos < A->n) return A->a[pos];
    for (size_t i = 0; name && i < A->nkw; i++)
        if (!strcmp(A->kwn[i], name)) return A->kwv[i];
    return NULL;
}

/* At most max positional arguments; keywords among names (NULL-ended). */
static int check_args(jstate *st, const jargs *A, size_t max, const char *const *names, const char *what) {
    if (A->n > max) {
        jfail(st, "%s takes at most %zu argument(s), %zu given", what, max, A->n);
        return -1;
    }
    for (size_t i = 0; i < A->nkw; i++) {
        size_t k = 0;
        while (names && names[k] && strcmp(names[k], A->kwn[i])) k++;
        if (!names || !names[k]) {
            jfail(st, "%s got an unexpected keyword argument '%s'", what, A->kwn[i]);
            return -1;
        }
        if (k < A->n) {
            jfail(st, "%s got multiple values for '%s'", what, A->kwn[i]);
            return -1;
        }
    }
    return 0;
}

static int want_str(jstate *st, const lyra_jv *v, const char *what) {
    if (v->t == JV_STR) return 0;
    jfail(st, "%s must be a string, not %s", what, jv_type_name(v));
    return -1;
}

static int want_int(jstate *st, const lyra_jv *v, const char *what, int64_t *out) {
    if (jv_is_int(v)) {
        *out = v->t == JV_INT ? v->u.i : v->u.b;
        return 0;
    }
    jfail(st, "%s must be an integer, not %s", what, jv_type_name(v));
    return -1;
}

/* str(v) as a value (v itself when a string). */
static const lyra_jv *to_str(jstate *st, const lyra_jv *v) {
    if (v->t == JV_STR) return v;
    jbuf b = {.limit = st->lim->max_output};
    if (jv_str(&b, v, 0)) {
        free(b.p);
        return jfail(st, "a value nested too deeply");
    }
    return jv_mkstr_own(st, &b);
}

/* ------------------------------------------------------------------ small helpers */

static lyra_jv *mkfunc(jstate *st, int kind, const char *name, const lyra_jv *self) {
    jfunc *f = ja_alloc(st->a, sizeof *f);
    lyra_jv *v = f ? ja_alloc(st->a, sizeof *v) : NULL;
    if (!v) {
        joom(st);
        return NULL;
    }
    f->kind = kind;
    f->name = name;
    f->self = self;
    v->t = JV_FUNC;
    v->u.fn = f;
    return v;
}

static const lyra_jv *mk_undef_msg(jstate *st, const char *msg) {
    lyra_jv *v = ja_alloc(st->a, sizeof *v);
    char *s = v ? ja_strdup(st->a, msg, strlen(msg)) : NULL;
    if (!s) return joom(st);
    v->t = JV_UNDEF;
    v->u.undef = s;
    return v;
}

static int items_of(jstate *st, const lyra_jv *v, const lyra_jv *const **items, size_t *n, const char *what) {
    switch (v->t) {
    case JV_UNDEF: *items = NULL; *n = 0; return 0;
    case JV_LIST: *items = v->u.c.v; *n = v->u.c.n; return 0;
    case JV_DICT:
        if (v->ns) break;
        *items = v->u.c.k;
        *n = v->u.c.n;
        return 0;
    case JV_STR: {
        size_t cnt = ju_count(v->u.s.p, v->u.s.n), k = 0;
        const lyra_jv **out = ja_alloc(st->a, (cnt ? cnt : 1) * sizeof *out);
        if (!out) return joom(st), -1;
        for (size_t i = 0; i < v->u.s.n;) {
            size_t at = i;
            ju_next(v->u.s.p, v->u.s.n, &i);
            if (!(out[k++] = jv_mkstr(st, v->u.s.p + at, i - at))) return -1;
        }
        *items = out;
        *n = cnt;
        return 0;
    }
    default: break;
    }
    jfail(st, "%s: '%s' object is not iterable", what, jv_type_name(v));
    return -1;
}

static lyra_jv *list_of(jstate *st, const lyra_jv *const *items, size_t n) {
    lyra_jv *l = jv_mklist(st, n);
    if (!l) return NULL;
    for (size_t i = 0; i < n; i++) l->u.c.v[l->u.c.n++] = items[i];
    return l;
}

static const lyra_jv *tuple2(jstate *st, const lyra_jv *a, const lyra_jv *b) {
    lyra_jv *t = jv_mklist(st, 2);
    if (!t) return NULL;
    t->tuple = 1;
    t->u.c.v[0] = a;
    t->u.c.v[1] = b;
    t->u.c.n = 2;
    return t;
}

static const lyra_jv *dict_items(jstate *st, const lyra_jv *d) {
    lyra_jv *l = jv_mklist(st, d->u.c.n);
    if (!l) return NULL;
    for (size_t i = 0; i < d->u.c.n; i++)
        if (!(l->u.c.v[l->u.c.n++] = tuple2(st, d->u.c.k[i], d->u.c.v[i]))) return NULL;
    return l;
}

/* Code points of a string into a malloc'd array. */
static uint32_t *cps(const lyra_jv *s, size_t *n) {
    uint32_t *c = malloc((s->u.s.n + 1) * sizeof *c);
    if (!c) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < s->u.s.n;) c[k++] = ju_next(s->u.s.p, s->u.s.n, &i);
    *n = k;
    return c;
}

/* Byte offset of code point index cp in s. */
static size_t cp_count_to(const char *s, size_t bytes) { return ju_count(s, bytes); }

/* ------------------------------------------------------------------ string functions */

/* strip (which: 1 left, 2 right, 3 both) with chars (NULL: white space). */
static const lyra_jv *s_strip(jstate *st, const lyra_jv *s, const lyra_jv *chars, int which) {
    uint32_t *set = NULL;
    size_t nset = 0;
    if (chars && chars->t != JV_NONE) {
        if (want_str(st, chars, "strip's characters")) return NULL;
        if (!(set = cps(chars, &nset))) return joom(st);
    }
    const char *p = s->u.s.p;
    size_t n = s->u.s.n, a = 0, b = n, i = 0;
    /* left */
    if (which & 1) {
        while (i < n) {
            size_t at = i;
            uint32_t c = ju_next(p, n, &i);
            int in = 0;
            if (set) {
                for (size_t k = 0; k < nset && !in; k++) in = set[k] == c;
            } else in = ju_space(c);
            if (!in) {
                i = at;
                break;
            }
        }
        a = i;
    }
    if (which & 2) {
        b = a;
        for (size_t j = a; j < n;) {
            uint32_t c = ju_next(p, n, &j);
            int in = 0;
            if (set) {
                for (size_t k = 0; k < nset && !in; k++) in = set[k] == c;
            } else in = ju_space(c);
            if (!in) b = j;
        }
    }
    free(set);
    if (a == 0 && b == n) return s;
    return jv_mkstr(st, p + a, b - a);
}

static void case_map(jbuf *b, const char *s, size_t n, int mode) { /* 1 upper, 2 lower */
    for (size_t i = 0; i < n;) {
        uint32_t c = ju_next(s, n, &i);
        if (mode == 1 && c == 0xdf) jb_puts(b, "SS"); /* the one one-to-many mapping lyra has */
        else jb_utf8(b, mode == 1 ? ju_upper(c) : ju_lower(c));
    }
}

static const lyra_jv *s_case(jstate *st, const lyra_jv *s, int mode) {
    jbuf b = {.limit = st->lim->max_output};
    if (mode <= 2) case_map(&b, s->u.s.p, s->u.s.n, mode);
    else if (mode == 3) { /* capitalize */
        size_t i = 0;
        int first = 1;
        while (i < s->u.s.n) {
            uint32_t c = ju_next(s->u.s.p, s->u.s.n, &i);
            jb_utf8(&b, first ? ju_upper(c) : ju_lower(c));
            first = 0;
        }
    } else if (mode == 4) { /* Python's str.title */
        int prev = 0;
        for (size_t i = 0; i < s->u.s.n;) {
            uint32_t c = ju_next(s->u.s.p, s->u.s.n, &i);
            int cased = ju_alpha(c);
            jb_utf8(&b, cased ? (prev ? ju_lower(c) : ju_upper(c)) : c);
            prev = cased;
        }
    } else { /* jinja2's title filter: words split at white space - ( { [ < */
        int start = 1;
        for (size_t i = 0; i < s->u.s.n;) {
            uint32_t c = ju_next(s->u.s.p, s->u.s.n, &i);
            int sep = ju_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
            if (sep) {
                jb_utf8(&b, c);
                start = 1;
            } else {
                jb_utf8(&b, start ? ju_upper(c) : ju_lower(c));
                start = 0;
            }
        }
    }
    return jv_mkstr_own(st, &b);
}

static long find_bytes(const char *s, size_t n, const char *t, size_t m, size_t from) {
    if (m == 0) return from <= n ? (long)from : -1;
    for (size_t i = from; i + m <= n; i++)
        if (!memcmp(s + i, t, m)) return (long)i;
    return -1;
}

static const lyra_jv *s_replace(jstate *st, const lyra_jv *s, const lyra_jv *old, const lyra_jv *new_,
                                int64_t count) {
    jbuf b = {.limit = st->lim->max_output};
    const char *p = s->u.s.p;
    size_t n = s->u.s.n, i = 0;
    int64_t done = 0;
    if (!old->u.s.n) { /* "" : new_ before every character and at the end */
        while (i <= n) {
            if (count < 0 || done < count) {
                jb_add(&b, new_->u.s.p, new_->u.s.n);
                done++;
            }
            if (i == n) break;
            size_t at = i;
            ju_next(p, n, &i);
            jb_add(&b, p + at, i - at);
        }
        return jv_mkstr_own(st, &b);
    }
    for (;;) {
        long k = count >= 0 && done >= count ? -1 : find_bytes(p, n, old->u.s.p, old->u.s.n, i);
        if (k < 0) break;
        jb_add(&b, p + i, (size_t)k - i);
        jb_add(&b, new_->u.s.p, new_->u.s.n);
        i = (size_t)k + old->u.s.n;
        done++;
    }
    jb_add(&b, p + i, n - i);
    return jv_mkstr_own(st, &b);
}

static const lyra_jv *s_split(jstate *st, const lyra_jv *s, const lyra_jv *sep, int64_t maxsplit, int right) {
    lyra_jv *l = jv_mklist(st, 0);
    if (!l) return NULL;
    const char *p = s->u.s.p;
    size_t n = s->u.s.n;
    if (sep && sep->t != JV_NONE) {
        if (want_str(st, sep, "the separator")) return NULL;
        if (!sep->u.s.n) return jfail(st, "empty separator");
        size_t m = sep->u.s.n;
        if (!right) {
            size_t i = 0;
            int64_t done = 0;
            for (;;) {
                long k = maxsplit >= 0 && done >= maxsplit ? -1 : find_bytes(p, n, sep->u.s.p, m, i);
                if (k < 0) break;
                if (jv_append(st->a, l, jv_mkstr(st, p + i, (size_t)k - i))) return joom(st);
                i = (size_t)k + m;
                done++;
            }
            if (jv_append(st->a, l, jv_mkstr(st, p + i, n - i))) return joom(st);
            return l;
        }
        /* from the right: collect pieces reversed, then flip */
        size_t end = n;
        int64_t done = 0;
        long k = (long)n - (long)m;
        while (k >= 0 && (maxsplit < 0 || done < maxsplit)) {
            if (!memcmp(p + k, sep->u.s.p, m)) {
                if (jv_append(st->a, l, jv_mkstr(st, p + k + m, end - (size_t)k - m))) return joom(st);
                end = (size_t)k;
                done++;
                k -= (long)m;
            } else k--;
        }
        if (jv_append(st->a, l, jv_mkstr(st, p, end))) return joom(st);
        for (size_t i = 0, j = l->u.c.n - 1; i < j; i++, j--) {
            const lyra_jv *t = l->u.c.v[i];
            l->u.c.v[i] = l->u.c.v[j];
            l->u.c.v[j] = t;
        }
        return l;
    }
    if (right && maxsplit >= 0) return jfail(st, "rsplit with no separator and maxsplit is not supported");
    /* white space runs */
    size_t i = 0;
    int64_t done = 0;
    for (;;) {
        size_t k;
        while (i < n) { /* skip spaces */
            k = i;
            if (!ju_space(ju_next(p, n, &k))) break;
            i = k;
        }
        if (i >= n) break;
        if (maxsplit >= 0 && done >= maxsplit) { /* the rest, as it is */
            if (jv_append(st->a, l, jv_mkstr(st, p + i, n - i))) return joom(st);
            break;
        }
        size_t w = i;
        while (w < n) {
            k = w;
            if (ju_space(ju_next(p, n, &k))) break;
            w = k;
        }
        if (jv_append(st->a, l, jv_mkstr(st, p + i, w - i))) return joom(st);
        done++;
        i = w;
    }
    return l;
}

/* Python's str.splitlines line ends. */
static size_t line_end(const char *p, size_t n, size_t i, size_t *after) {
    while (i < n) {
        size_t at = i;
        uint32_t c = ju_next(p, n, &i);
        if (c == '\r' && i < n && p[i] == '\n') {
            *after = i + 1;
            return at;
        }
        if (c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d || c == 0x1e ||
            c == 0x85 || c == 0x2028 || c == 0x2029) {
            *after = i;
            return at;
        }
    }
    *after = n;
    return n;
}

static const lyra_jv *s_splitlines(jstate *st, const lyra_jv *s, int keepends) {
    lyra_jv *l = jv_mklist(st, 0);
    if (!l) return NULL;
    size_t i = 0, n = s->u.s.n;
    while (i < n) {
        size_t after, e = line_end(s->u.s.p, n, i, &after);
        if (jv_append(st->a, l, jv_mkstr(st, s->u.s.p + i, (keepends ? after : e) - i))) return joom(st);
        i = after;
    }
    return l;
}

static int starts_ends(jstate *st, const lyra_jv *s, const lyra_jv *x, int ends) {
    if (x->t == JV_LIST && x->tuple) {
        for (size_t i = 0; i < x->u.c.n; i++) {
            int r = starts_ends(st, s, x->u.c.v[i], ends);
            if (r) return r;
        }
        return 0;
    }
    if (x->t != JV_STR) {
        jfail(st, "%s first arg must be str or a tuple of str, not %s", ends ? "endswith" : "startswith",
              jv_type_name(x));
        return -1;
    }
    if (x->u.s.n > s->u.s.n) return 0;
    return !memcmp(s->u.s.p + (ends ? s->u.s.n - x->u.s.n : 0), x->u.s.p, x->u.s.n);
}

static int s_class(const lyra_jv *s, int which) { /* 1 digit, 2 alpha, 3 alnum, 4 space, 5 lower, 6 upper */
    if (!s->u.s.n) return 0;
    int cased = 0;
    for (size_t i = 0; i < s->u.s.n;) {
        uint32_t c = ju_next(s->u.s.p, s->u.s.n, &i);
        int d = c >= '0' && c <= '9', a = ju_alpha(c) || (c > 0x7f && !ju_space(c) && c != 0xfffd);
        switch (which) {
        case 1: if (!d) return 0; break;
        case 2: if (!a) return 0; break;
        case 3: if (!a && !d) return 0; break;
        case 4: if (!ju_space(c)) return 0; break;
        case 5:
            if (ju_lower(c) != c) return 0;
            cased |= ju_upper(c) != c;
            break;
        default:
            if (ju_upper(c) != c) return 0;
            cased |= ju_lower(c) != c;
            break;
        }
    }
    return which >= 5 ? cased : 1;
}

static const lyra_jv *s_join(jstate *st, const lyra_jv *sep, const lyra_jv *seq, int convert) {
    const lyra_jv *const *items;
    size_t n;
    if (items_of(st, seq, &items, &n, "join")) return NULL;
    jbuf b = {.limit = st->lim->max_output};
    for (size_t i = 0; i < n; i++) {
        if (i) jb_add(&b, sep->u.s.p, sep->u.s.n);
        if (items[i]->t != JV_STR && !convert) {
            free(b.p);
            return jfail(st, "sequence item %zu: expected str instance, %s found", i, jv_type_name(items[i]));
        }
        if (jv_str(&b, items[i], 0)) {
            free(b.p);
            return jfail(st, "a value nested too deeply");
        }
    }
    return jv_mkstr_own(st, &b);
}

/* ------------------------------------------------------------------ sorting */

typedef struct sortctx {
    jstate *st;
    int case_sensitive;
    int bad;
} sortctx;

static int key_cmp(sortctx *c, const lyra_jv *a, const lyra_jv *b) {
    if (!c->case_sensitive && a->t == JV_STR && b->t == JV_STR) {
        size_t i = 0, j = 0;
        while (i < a->u.s.n && j < b->u.s.n) {
            uint32_t x = ju_lower(ju_next(a->u.s.p, a->u.s.n, &i)), y = ju_lower(ju_next(b->u.s.p, b->u.s.n, &j));
            if (x != y) return x < y ? -1 : 1;
        }
        return (i < a->u.s.n) - (j < b->u.s.n);
    }
    int r = jv_cmp(a, b, 0);
    if (r == -2) {
        if (!c->bad)
            jfail(c->st, "'<' not supported between instances of '%s' and '%s'", jv_type_name(a), jv_type_name(b));
        c->bad = 1;
        return 0;
    }
    return r;
}

/* Stable merge sort of idx[n] by keys[idx]. */
static void msort(sortctx *c, size_t *idx, size_t *tmp, size_t n, const lyra_jv *const *keys) {
    if (n < 2) return;
    size_t h = n / 2;
    msort(c, idx, tmp, h, keys);
    msort(c, idx + h, tmp, n - h, keys);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = key_cmp(c, keys[idx[j]], keys[idx[i]]) < 0 ? idx[j++] : idx[i++];
    while (i < h) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, n * sizeof *idx);
}

/* getattr or getitem by a dotted attribute path (jinja2's make_attrgetter). */
static const lyra_jv *attr_path(jstate *st, const lyra_jv *v, const lyra_jv *attr) {
    if (jv_is_int(attr)) {
        if (v->t == JV_LIST) {
            int64_t i = attr->t == JV_INT ? attr->u.i : attr->u.b;
            if (i < 0) i += (int64_t)v->u.c.n;
            return i >= 0 && i < (int64_t)v->u.c.n ? v->u.c.v[i] : JV_UNDEFINED;
        }
        return JV_UNDEFINED;
    }
    if (attr->t != JV_STR) return jfail(st, "the attribute must be a string, not %s", jv_type_name(attr));
    const char *p = attr->u.s.p, *end = p + attr->u.s.n;
    while (v && p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t len = dot ? (size_t)(dot - p) : (size_t)(end - p);
        char name[128];
        if (len >= sizeof name) return JV_UNDEFINED;
        memcpy(name, p, len);
        name[len] = '\0';
        if (v->t == JV_UNDEF) return v;
        const lyra_jv *w = NULL;
        if (v->t == JV_DICT && !v->ns) w = jv_dget_s(v, name);
        else if (v->t == JV_LIST && len && name[0] >= '0' && name[0] <= '9') {
            long i = atol(name);
            w = (size_t)i < v->u.c.n ? v->u.c.v[i] : NULL;
        }
        v = w ? w : jb_getattr(st, v, name);
        if (!dot) break;
        p = dot + 1;
    }
    return v;
}

static const lyra_jv *sorted(jstate *st, const lyra_jv *seq, int reverse, int cs, const lyra_jv *attr,
                             const lyra_jv *const *keys_in) {
    const lyra_jv *const *items;
    size_t n;
    if (items_of(st, seq, &items, &n, "sort")) return NULL;
    const lyra_jv **keys = ja_alloc(st->a, (n ? n : 1) * sizeof *keys);
    size_t *idx = malloc((n ? n : 1) * sizeof *idx), *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!keys || !idx || !tmp) {
        free(idx);
        free(tmp);
        return joom(st);
    }
    for (size_t i = 0; i < n; i++) {
        idx[i] = i;
        keys[i] = keys_in ? keys_in[i] : attr ? attr_path(st, items[i], attr) : items[i];
        if (!keys[i]) {
            free(idx);
            free(tmp);
            return NULL;
        }
    }
    sortctx c = {st, cs, 0};
    if (reverse) /* Python's sort(reverse=True) keeps equal items in order: reverse, sort, reverse */
        for (size_t i = 0; i < n / 2; i++) {
            size_t t = idx[i];
            idx[i] = idx[n - 1 - i];
            idx[n - 1 - i] = t;
        }
    msort(&c, idx, tmp, n, keys);
    lyra_jv *l = c.bad ? NULL : jv_mklist(st, n);
    if (l)
        for (size_t i = 0; i < n; i++) l->u.c.v[l->u.c.n++] = items[idx[reverse ? n - 1 - i : i]];
    free(idx);
    free(tmp);
    return l;
}

/* ------------------------------------------------------------------ tests */

enum {
    T_DEFINED, T_UNDEFINED, T_NONE, T_BOOLEAN, T_FALSE, T_TRUE, T_INTEGER, T_FLOAT, T_NUMBER, T_STRING,
    T_MAPPING, T_ITERABLE, T_SEQUENCE, T_CALLABLE, T_SAMEAS, T_ESCAPED, T_ODD, T_EVEN, T_DIVISIBLEBY, T_EQ,
    T_NE, T_LT, T_LE, T_GT, T_GE, T_IN, T_LOWER, T_UPPER,
};

static const struct {
    const char *name;
    int id;
} g_tests[] = {
    {"defined", T_DEFINED}, {"undefined", T_UNDEFINED}, {"none", T_NONE}, {"boolean", T_BOOLEAN},
    {"false", T_FALSE}, {"true", T_TRUE}, {"integer", T_INTEGER}, {"float", T_FLOAT}, {"number", T_NUMBER},
    {"string", T_STRING}, {"mapping", T_MAPPING}, {"iterable", T_ITERABLE}, {"sequence", T_SEQUENCE},
    {"callable", T_CALLABLE}, {"sameas", T_SAMEAS}, {"escaped", T_ESCAPED}, {"odd", T_ODD}, {"even", T_EVEN},
    {"divisibleby", T_DIVISIBLEBY}, {"eq", T_EQ}, {"equalto", T_EQ}, {"==", T_EQ}, {"ne", T_NE}, {"!=", T_NE},
    {"lt", T_LT}, {"lessthan", T_LT}, {"<", T_LT}, {"le", T_LE}, {"<=", T_LE}, {"gt", T_GT},
    {"greaterthan", T_GT}, {">", T_GT}, {"ge", T_GE}, {">=", T_GE}, {"in", T_IN}, {"lower", T_LOWER},
    {"upper", T_UPPER},
};

int jb_test_id(const char *name) {
    for (size_t i = 0; i < sizeof g_tests / sizeof g_tests[0]; i++)
        if (!strcmp(g_tests[i].name, name)) return g_tests[i].id;
    return -1;
}

static const char *test_name(int id) {
    for (size_t i = 0; i < sizeof g_tests / sizeof g_tests[0]; i++)
        if (g_tests[i].id == id) return g_tests[i].name;
    return "?";
}

static int want_n(jstate *st, size_t n, size_t want, const char *what) {
    if (n == want) return 0;
    jfail(st, "the test '%s' takes %zu argument(s), %zu given", what, want, n);
    return -1;
}

int jb_test(jstate *st, int id, const lyra_jv *v, const lyra_jv *const *args, size_t n) {
    size_t want = id == T_SAMEAS || id == T_DIVISIBLEBY || (id >= T_EQ && id <= T_IN) ? 1 : 0;
    if (want_n(st, n, want, test_name(id))) return -1;
    switch (id) {
    case T_DEFINED: return v->t != JV_UNDEF;
    case T_UNDEFINED: return v->t == JV_UNDEF;
    case T_NONE: return v->t == JV_NONE;
    case T_BOOLEAN: return v->t == JV_BOOL;
    case T_FALSE: return v->t == JV_BOOL && !v->u.b;
    case T_TRUE: return v->t == JV_BOOL && v->u.b;
    case T_INTEGER: return v->t == JV_INT;
    case T_FLOAT: return v->t == JV_FLOAT;
    case T_NUMBER: return v->t == JV_INT || v->t == JV_FLOAT || v->t == JV_BOOL;
    case T_STRING: return v->t == JV_STR;
    case T_MAPPING: return v->t == JV_DICT && !v->ns;
    case T_ITERABLE: return v->t == JV_UNDEF || v->t == JV_STR || v->t == JV_LIST || (v->t == JV_DICT && !v->ns);
    case T_SEQUENCE: return v->t == JV_UNDEF || v->t == JV_STR || v->t == JV_LIST || (v->t == JV_DICT && !v->ns);
    case T_CALLABLE: return v->t == JV_FUNC;
    case T_SAMEAS: {
        const lyra_jv *o = args[0];
        if (v == o) return 1;
        if (v->t != o->t) return 0;
        if (v->t == JV_NONE || v->t == JV_UNDEF) return v->t == JV_NONE;
        if (v->t == JV_BOOL) return v->u.b == o->u.b;
        return 0;
    }
    case T_ESCAPED: return 0;
    case T_ODD:
    case T_EVEN:
    case T_DIVISIBLEBY: {
        int64_t x, d = 2;
        if (want_int(st, v, "the value", &x)) return -1;
        if (id == T_DIVISIBLEBY && want_int(st, args[0], "divisibleby's argument", &d)) return -1;
        if (d == 0) {
            jfail(st, "integer division or modulo by zero");
            return -1;
        }
        int64_t m = d == -1 ? 0 : x % d;
        return id == T_ODD ? m != 0 : m == 0;
    }
    case T_EQ: return jv_eq(v, args[0], 0);
    case T_NE: return !jv_eq(v, args[0], 0);
    case T_LT:
    case T_LE:
    case T_GT:
    case T_GE: {
        int c = jv_cmp(v, args[0], 0);
        if (c == -2) {
            jfail(st, "'%s' not supported between instances of '%s' and '%s'", test_name(id), jv_type_name(v),
                  jv_type_name(args[0]));
            return -1;
        }
        return id == T_LT ? c < 0 : id == T_LE ? c <= 0 : id == T_GT ? c > 0 : c >= 0;
    }
    case T_IN: {
        const lyra_jv *c = args[0];
        if (c->t == JV_STR) {
            if (v->t != JV_STR) {
                jfail(st, "'in <string>' requires string as left operand, not %s", jv_type_name(v));
                return -1;
            }
            return find_bytes(c->u.s.p, c->u.s.n, v->u.s.p, v->u.s.n, 0) >= 0;
        }
        if (c->t == JV_DICT && !c->ns) return jv_dget(c, v) != NULL;
        if (c->t == JV_LIST) {
            for (size_t i = 0; i < c->u.c.n; i++)
                if (jv_eq(v, c->u.c.v[i], 0)) return 1;
            return 0;
        }
        if (c->t == JV_UNDEF) return 0;
        jfail(st, "argument of type '%s' is not iterable", jv_type_name(c));
        return -1;
    }
    case T_LOWER:
    case T_UPPER: {
        const lyra_jv *s = to_str(st, v);
        if (!s) return -1;
        return s_class(s, id == T_LOWER ? 5 : 6);
    }
    }
    jfail(st, "internal error: test %d", id);
    return -1;
}

/* A test named by a string argument (select, selectattr): id or -1 (failed). */
static int test_by_value(jstate *st, const lyra_jv *name) {
    if (want_str(st, name, "the test name")) return -1;
    int id = jb_test_id(name->u.s.p);
    if (id < 0) jfail(st, "no test named '%s'", name->u.s.p);
    return id;
}

/* ------------------------------------------------------------------ filters */

enum {
    F_TRIM, F_LENGTH, F_TOJSON, F_UPPER, F_LOWER, F_DEFAULT, F_ITEMS, F_JOIN, F_REPLACE, F_CAPITALIZE, F_TITLE,
    F_LIST, F_FIRST, F_LAST, F_SELECTATTR, F_REJECTATTR, F_SELECT, F_REJECT, F_MAP, F_STRING, F_INT, F_FLOAT,
    F_ABS, F_ROUND, F_SUM, F_MIN, F_MAX, F_UNIQUE, F_SORT, F_REVERSE, F_SAFE, F_ESCAPE, F_INDENT, F_DICTSORT,
    F_ATTR,
};

static const struct {
    const char *name;
    int id;
} g_filters[] = {
    {"trim", F_TRIM}, {"length", F_LENGTH}, {"count", F_LENGTH}, {"tojson", F_TOJSON}, {"upper", F_UPPER},
    {"lower", F_LOWER}, {"default", F_DEFAULT}, {"d", F_DEFAULT}, {"items", F_ITEMS}, {"join", F_JOIN},
    {"replace", F_REPLACE}, {"capitalize", F_CAPITALIZE}, {"title", F_TITLE}, {"list", F_LIST},
    {"first", F_FIRST}, {"last", F_LAST}, {"selectattr", F_SELECTATTR}, {"rejectattr", F_REJECTATTR},
    {"select", F_SELECT}, {"reject", F_REJECT}, {"map", F_MAP}, {"string", F_STRING}, {"int", F_INT},
    {"float", F_FLOAT}, {"abs", F_ABS}, {"round", F_ROUND}, {"sum", F_SUM}, {"min", F_MIN}, {"max", F_MAX},
    {"unique", F_UNIQUE}, {"sort", F_SORT}, {"reverse", F_REVERSE}, {"safe", F_SAFE}, {"escape", F_ESCAPE},
    {"e", F_ESCAPE}, {"indent", F_INDENT}, {"dictsort", F_DICTSORT}, {"attr", F_ATTR},
};

int jb_filter_id(const char *name) {
    for (size_t i = 0; i < sizeof g_filters / sizeof g_filters[0]; i++)
        if (!strcmp(g_filters[i].name, name)) return g_filters[i].id;
    return -1;
}

static const char *filter_name(int id) {
    for (size_t i = 0; i < sizeof g_filters / sizeof g_filters[0]; i++)
        if (g_filters[i].id == id) return g_filters[i].name;
    return "?";
}

static const lyra_jv *f_tojson(jstate *st, const lyra_jv *v, const jargs *A) {
    static const char *const names[] = {"indent", "separators", "sort_keys", "ensure_ascii", NULL};
    if (check_args(st, A, 3, names, "tojson")) return NULL;
    const lyra_jv *ind = arg(A, 0, "indent"), *sep = arg(A, 1, "separators"), *sk = arg(A, 2, "sort_keys");
    const lyra_jv *ea = arg(A, 99, "ensure_ascii");
    int64_t indent = -1;
    if (ind && ind->t != JV_NONE) {
        if (want_int(st, ind, "tojson's indent", &indent)) return NULL;
        if (indent < 0) indent = 0;
        if (indent > 64) return jfail(st, "tojson's indent %lld is too large", (long long)indent);
    }
    if (ea && jv_truthy(ea)) return jfail(st, "tojson(ensure_ascii=True) is not supported");
    char isep[16], ksep[16];
    const char *is = NULL, *ks = NULL;
    if (sep && sep->t != JV_NONE) {
        if (sep->t != JV_LIST || sep->u.c.n != 2 || sep->u.c.v[0]->t != JV_STR || sep->u.c.v[1]->t != JV_STR ||
            sep->u.c.v[0]->u.s.n >= sizeof isep || sep->u.c.v[1]->u.s.n >= sizeof ksep)
            return jfail(st, "tojson's separators must be two short strings");
        snprintf(isep, sizeof isep, "%s", sep->u.c.v[0]->u.s.p);
        snprintf(ksep, sizeof ksep, "%s", sep->u.c.v[1]->u.s.p);
        is = isep;
        ks = ksep;
    }
    jbuf b = {.limit = st->lim->max_output};
    const lyra_jv *bad = NULL;
    int r = jv_json(&b, v, (int)indent, is, ks, sk && jv_truthy(sk), 0, &bad);
    if (r) {
        free(b.p);
        if (r == -1) return jfail(st, "tojson: a value nested too deeply");
        if (bad && bad->t == JV_UNDEF) return jfail(st, "tojson: Object of type Undefined is not JSON serializable");
        return jfail(st, "tojson: Object of type %s is not JSON serializable", bad ? jv_type_name(bad) : "?");
    }
    return jv_mkstr_own(st, &b);
}

static const lyra_jv *f_select(jstate *st, int id, const lyra_jv *v, const jargs *A) {
    int attr = id == F_SELECTATTR || id == F_REJECTATTR, keep = id == F_SELECTATTR || id == F_SELECT;
    if (A->nkw) return jfail(st, "%s takes no keyword arguments", filter_name(id));
    if (attr && A->n < 1) return jfail(st, "%s needs an attribute", filter_name(id));
    const lyra_jv *const *items;
    size_t n;
    if (items_of(st, v, &items, &n, filter_name(id))) return NULL;
    size_t t0 = (size_t)attr; /* the test name's position */
    int tid = -1;
    if (A->n > t0 && (tid = test_by_value(st, A->a[t0])) < 0) return NULL;
    lyra_jv *l = jv_mklist(st, 0);
    if (!l) return NULL;
    for (size_t i = 0; i < n; i++) {
        const lyra_jv *x = attr ? attr_path(st, items[i], A->a[0]) : items[i];
        if (!x) return NULL;
        int t;
        if (tid < 0) t = jv_truthy(x);
        else if ((t = jb_test(st, tid, x, A->a + t0 + 1, A->n - t0 - 1)) < 0) return NULL;
        if (t == keep && jv_append(st->a, l, items[i])) return joom(st);
    }
    return l;
}

static const lyra_jv *f_map(jstate *st, const lyra_jv *v, const jargs *A) {
    const lyra_jv *const *items;
    size_t n;
    if (items_of(st, v, &items, &n, "map")) return NULL;
    const lyra_jv *attr = arg(A, 99, "attribute"), *def = arg(A, 99, "default");
    lyra_jv *l = jv_mklist(st, n);
    if (!l) return NULL;
    if (attr) {
        if (A->n) return jfail(st, "map(attribute=...) takes no positional arguments");
        for (size_t i = 0; i < n; i++) {
            const lyra_jv *x = attr_path(st, items[i], attr);
            if (!x) return NULL;
            if (x->t == JV_UNDEF && def) x = def;
            l->u.c.v[l->u.c.n++] = x;
        }
        return l;
    }
    if (A->n < 1 || A->a[0]->t != JV_STR) return jfail(st, "map needs a filter name or attribute=");
    int fid = jb_filter_id(A->a[0]->u.s.p);
    if (fid < 0) return jfail(st, "no filter named '%s'", A->a[0]->u.s.p);
    for (size_t i = 0; i < n; i++) {
        const lyra_jv *x = jb_filter(st, fid, items[i], A->a + 1, A->n - 1, A->kwn, A->kwv, A->nkw);
        if (!x) return NULL;
        l->u.c.v[l->u.c.n++] = x;
    }
    return l;
}

static const lyra_jv *f_indent(jstate *st, const lyra_jv *v, const jargs *A) {
    static const char *const names[] = {"width", "first", "blank", NULL};
    if (check_args(st, A, 3, names, "indent")) return NULL;
    const lyra_jv *w = arg(A, 0, "width"), *first = arg(A, 1, "first"), *blank = arg(A, 2, "blank");
    const lyra_jv *s = to_str(st, v);
    if (!s) return NULL;
    jbuf ind = {0};
    if (w && w->t == JV_STR) jb_add(&ind, w->u.s.p, w->u.s.n);
    else {
        int64_t k = 4;
        if (w && want_int(st, w, "indent's width", &k)) return NULL;
        for (int64_t i = 0; i < k && i < 256; i++) jb_char(&ind, ' ');
    }
    if (ind.fail) return joom(st);
    const char *ip = ind.p ? ind.p : "";
    jbuf src = {0}, b = {.limit = st->lim->max_output};
    jb_add(&src, s->u.s.p, s->u.s.n);
    jb_char(&src, '\n'); /* jinja2 adds one, so that splitlines sees the last line */
    if (src.fail) {
        free(ind.p);
        return joom(st);
    }
    size_t i = 0, n = src.n;
    int line = 0;
    while (i < n) {
        size_t after, e = line_end(src.p, n, i, &after);
        int is_blank = e == i;
        if (line) {
            jb_char(&b, '\n');
            if (blank && jv_truthy(blank)) jb_add(&b, ip, ind.n);
            else if (!is_blank) jb_add(&b, ip, ind.n);
        }
        jb_add(&b, src.p + i, e - i);
        i = after;
        line++;
    }
    free(src.p);
    if (first && jv_truthy(first)) {
        jbuf c = {.limit = st->lim->max_output};
        jb_add(&c, ip, ind.n);
        jb_add(&c, b.p ? b.p : "", b.n);
        free(b.p);
        b = c;
    }
    free(ind.p);
    return jv_mkstr_own(st, &b);
}

static const lyra_jv *f_minmax(jstate *st, int id, const lyra_jv *v, const jargs *A) {
    const lyra_jv *cs = arg(A, 0, "case_sensitive"), *attr = arg(A, 1, "attribute");
    const lyra_jv *s = sorted(st, v, 0, cs && jv_truthy(cs), attr, NULL);
    if (!s) return NULL;
    if (!s->u.c.n) return mk_undef_msg(st, id == F_MIN ? "No aggregated item, sequence was empty." : "No aggregated item, sequence was empty.");
    return s->u.c.v[id == F_MIN ? 0 : s->u.c.n - 1];
}

const lyra_jv *jb_filter(jstate *st, int id, const lyra_jv *v, const lyra_jv *const *args, size_t n,
                         const char *const *kwn, const lyra_jv *const *kwv, size_t nkw) {
    jargs A = {args, n, kwn, kwv, nkw};
    const char *fname = filter_name(id);
    switch (id) {
    case F_TRIM: {
        static const char *const names[] = {"chars", NULL};
        if (check_args(st, &A, 1, names, "trim")) return NULL;
        const lyra_jv *s = to_str(st, v);
        return s ? s_strip(st, s, arg(&A, 0, "chars"), 3) : NULL;
    }
    case F_LENGTH:
        if (check_args(st, &A, 0, NULL, fname)) return NULL;
        if (v->t == JV_STR) return jv_mkint(st, (int64_t)ju_count(v->u.s.p, v->u.s.n));
        if (v->t == JV_LIST || (v->t == JV_DICT && !v->ns)) return jv_mkint(st, (int64_t)v->u.c.n);
        if (v->t == JV_UNDEF) return jv_mkint(st, 0);
        return jfail(st, "object of type '%s' has no len()", jv_type_name(v));
    case F_TOJSON: return f_tojson(st, v, &A);
    case F_UPPER:
    case F_LOWER:
    case F_CAPITALIZE:
    case F_TITLE: {
        if (check_args(st, &A, 0, NULL, fname)) return NULL;
        const lyra_jv *s = to_str(st, v);
        return s ? s_case(st, s, id == F_UPPER ? 1 : id == F_LOWER ? 2 : id == F_CAPITALIZE ? 3 : 5) : NULL;
    }
    case F_DEFAULT: {
        static const char *const names[] = {"default_value", "boolean", NULL};
        if (check_args(st, &A, 2, names, fname)) return NULL;
        const lyra_jv *d = arg(&A, 0, "default_value"), *b = arg(&A, 1, "boolean");
        if (v->t == JV_UNDEF || (b && jv_truthy(b) && !jv_truthy(v))) return d ? d : jv_mkstr(st, "", 0);
        return v;
    }
    case F_ITEMS:
        if (check_args(st, &A, 0, NULL, fname)) return NULL;
        if (v->t == JV_UNDEF) return jv_mklist(st, 0);
        if (v->t != JV_DICT || v->ns) return jfail(st, "Can only get item pairs from a mapping.");
        return dict_items(st, v);
    case F_JOIN: {
        static const char *const names[] = {"d", "attribute", NULL};
        if (check_args(st, &A, 2, names, fname)) return NULL;
        const lyra_jv *d = arg(&A, 0, "d"), *attr = arg(&A, 1, "attribute");
        const lyra_jv *sep = d ? to_str(st, d) : jv_mkstr(st, "", 0);
        if (!sep) return NULL;
        if (attr) {
            jargs M = {NULL, 0, (const char *const[]){"attribute"}, (const lyra_jv *const[]){attr}, 1};
            v = f_map(st, v, &M);
            if (!v) return NULL;
        }
        return s_join(st, sep, v, 1);
    }
    case F_REPLACE: {
        static const char *const names[] = {"old", "new", "count", NULL};
        if (check_args(st, &A, 3, names, fname)) return NULL;
        const lyra_jv *o = arg(&A, 0, "old"), *w = arg(&A, 1, "new"), *c = arg(&A, 2, "count");
        if (!o || !w) return jfail(st, "replace needs old and new");
        int64_t cnt = -1;
        if (c && c->t != JV_NONE && want_int(st, c, "replace's count", &cnt)) return NULL;
        const lyra_jv *s = to_str(st, v), *os = s ? to_str(st, o) : NULL, *ws = os ? to_str(st, w) : NULL;
        return ws ? s_replace(st, s, os, ws, cnt) : NULL;
    }
    case F_LIST: {
        if (check_args(st, &A, 0, NULL, fname)) return NULL;
        const lyra_jv *const *items;
        size_t k;
        if (items_of(st, v, &items, &k, "list")) return NULL;
        return list_of(st, items, k);
    }
    case F_FIRST:
    case F_LAST: {
        if (check_args(st, &A, 0, NULL, fname)) return NULL;
        const lyra_jv *const *items;
        size_t k;
        if (items_of(st, v, &items, &k, fname)) return NULL;
        if (!k) return mk_undef_msg(st, id == F_FIRST ? "No first item, sequence was empty."
                                                      : "No last item, sequence was empty.");
        return items[id == F_FIRST ? 0 : k - 1];
    }
    case F_SELECTATTR:
    case F_REJECTATTR:
    case F_SELECT:
    case F_REJECT: return f_select(st, id, v, &A);
    case F_MAP: return f_map(st, v, &A);
    case F_STRING:
    case F_SAFE:
        if (check_args(st, &A, 0, NULL, fname)) return NULL;
        return to_str(st, v);
    case F_ESCAPE: {
        if (check_args(st, &A, 0, NULL, fname)) return NULL;
        const lyra_jv *s = to_str(st, v);
        if (!s) return NULL;
        jbuf b = {.limit = st->lim->max_output};
        for (size_t i = 0; i < s->u.s.n; i++) {
            char c = s->u.s.p[i];
            if (c == '&') jb_puts(&b, "&amp;");
            else if (c == '<') jb_puts(&b, "&lt;");
            else if (c == '>') jb_puts(&b, "&gt;");
            else if (c == '"') jb_puts(&b, "&#34;");
            else if (c == '\'') jb_puts(&b, "&#39;");
            else jb_char(&b, c);
        }
        return jv_mkstr_own(st, &b);
    }
    case F_INT:
    case F_FLOAT: {
        static const char *const names[] = {"default", "base", NULL};
        if (check_args(st, &A, id == F_INT ? 2 : 1, names, fname)) return NULL;
        const lyra_jv *d = arg(&A, 0, "default");
        if (id == F_INT) {
            if (v->t == JV_INT) return v;
            if (v->t == JV_BOOL) return jv_mkint(st, v->u.b);
            if (v->t == JV_FLOAT && isfinite(v->u.f) && fabs(v->u.f) < 9.2e18) return jv_mkint(st, (int64_t)v->u.f);
            if (v->t == JV_STR) {
                char *end;
                const lyra_jv *t = s_strip(st, v, NULL, 3);
                if (!t) return NULL;
                long long x = strtoll(t->u.s.p, &end, 10);
                if (t->u.s.n && *end == '\0') return jv_mkint(st, x);
                double f = strtod(t->u.s.p, &end);
                if (t->u.s.n && *end == '\0' && isfinite(f) && fabs(f) < 9.2e18) return jv_mkint(st, (int64_t)f);
            }
            return d ? d : jv_mkint(st, 0);
        }
        if (v->t == JV_FLOAT) return v;
        if (jv_is_int(v)) return jv_mkfloat(st, v->t == JV_INT ? (double)v->u.i : v->u.b);
        if (v->t == JV_STR) {
            char *end;
            const lyra_jv *t = s_strip(st, v, NULL, 3);
            if (!t) return NULL;
            double f = strtod(t->u.s.p, &end);
            if (t->u.s.n && *end == '\0') return jv_mkfloat(st, f);
        }
        return d ? d : jv_mkfloat(st, 0.0);
    }
    case F_ABS:
        if (check_args(st, &A, 0, NULL, fname)) return NULL;
        if (v->t == JV_FLOAT) return jv_mkfloat(st, fabs(v->u.f));
        if (jv_is_int(v)) {
            int64_t x = v->t == JV_INT ? v->u.i : v->u.b;
            if (x == INT64_MIN) return jfail(st, "integer overflow");
            return jv_mkint(st, x < 0 ? -x : x);
        }
        return jfail(st, "bad operand type for abs(): '%s'", jv_type_name(v));
    case F_ROUND: {
        static const char *const names[] = {"precision", "method", NULL};
        if (check_args(st, &A, 2, names, fname)) return NULL;
        const lyra_jv *p = arg(&A, 0, "precision"), *m = arg(&A, 1, "method");
        int64_t prec = 0;
        if (p && want_int(st, p, "round's precision", &prec)) return NULL;
        if (!jv_is_int(v) && v->t != JV_FLOAT) return jfail(st, "round needs a number, not %s", jv_type_name(v));
        double x = v->t == JV_FLOAT ? v->u.f : (double)(v->t == JV_INT ? v->u.i : v->u.b);
        double sc = pow(10.0, (double)prec);
        const char *method = m && m->t == JV_STR ? m->u.s.p : "common";
        double y;
        if (!strcmp(method, "ceil")) y = ceil(x * sc) / sc;
        else if (!strcmp(method, "floor")) y = floor(x * sc) / sc;
        else if (!strcmp(method, "common")) {
            double t = x * sc, r = nearbyint(t); /* round half to even, as Python's round */
            y = r / sc;
        } else return jfail(st, "method must be common, ceil or floor");
        if (jv_is_int(v) && !strcmp(method, "common")) return v;
        return jv_mkfloat(st, y);
    }
    case F_SUM: {
        static const char *const names[] = {"attribute", "start", NULL};
        if (check_args(st, &A, 2, names, fname)) return NULL;
        const lyra_jv *attr = arg(&A, 0, "attribute"), *start = arg(&A, 1, "start");
        const lyra_jv *const *items;
        size_t k;
        if (items_of(st, v, &items, &k, "sum")) return NULL;
        int64_t is = 0;
        double fs = 0;
        int fl = 0;
        if (start) {
            if (start->t == JV_FLOAT) fl = 1, fs = start->u.f;
            else if (want_int(st, start, "sum's start", &is)) return NULL;
        }
        for (size_t i = 0; i < k; i++) {
            const lyra_jv *x = attr ? attr_path(st, items[i], attr) : items[i];
            if (!x) return NULL;
            if (x->t == JV_FLOAT) {
                if (!fl) fs = (double)is, fl = 1;
                fs += x->u.f;
            } else if (jv_is_int(x)) {
                int64_t y = x->t == JV_INT ? x->u.i : x->u.b;
                if (fl) fs += (double)y;
                else if (__builtin_add_overflow(is, y, &is)) return jfail(st, "integer overflow");
            } else return jfail(st, "unsupported operand type(s) for +: 'int' and '%s'", jv_type_name(x));
        }
        return fl ? jv_mkfloat(st, fs) : jv_mkint(st, is);
    }
    case F_MIN:
    case F_MAX: {
        static const char *const names[] = {"case_sensitive", "attribute", NULL};
        if (check_args(st, &A, 2, names, fname)) return NULL;
        return f_minmax(st, id, v, &A);
    }
    case F_UNIQUE: {
        static const char *const names[] = {"case_sensitive", "attribute", NULL};
        if (check_args(st, &A, 2, names, fname)) return NULL;
        const lyra_jv *cs = arg(&A, 0, "case_sensitive"), *attr = arg(&A, 1, "attribute");
        const lyra_jv *const *items;
        size_t k;
        if (items_of(st, v, &items, &k, "unique")) return NULL;
        lyra_jv *l = jv_mklist(st, 0), *seen = l ? jv_mklist(st, 0) : NULL;
        if (!seen) return NULL;
        for (size_t i = 0; i < k; i++) {
            const lyra_jv *key = attr ? attr_path(st, items[i], attr) : items[i];
            if (!key) return NULL;
            if (key->t == JV_STR && !(cs && jv_truthy(cs)) && !(key = s_case(st, key, 2))) return NULL;
            int dup = 0;
            for (size_t j = 0; j < seen->u.c.n && !dup; j++) dup = jv_eq(seen->u.c.v[j], key, 0);
            if (dup) continue;
            if (jv_append(st->a, seen, key) || jv_append(st->a, l, items[i])) return joom(st);
        }
        return l;
    }
    case F_SORT: {
        static const char *const names[] = {"reverse", "case_sensitive", "attribute", NULL};
        if (check_args(st, &A, 3, names, fname)) return NULL;
        const lyra_jv *rev = arg(&A, 0, "reverse"), *cs = arg(&A, 1, "case_sensitive"), *attr = arg(&A, 2, "attribute");
        return sorted(st, v, rev && jv_truthy(rev), cs && jv_truthy(cs), attr, NULL);
    }
    case F_DICTSORT: {
        static const char *const names[] = {"case_sensitive", "by", "reverse", NULL};
        if (check_args(st, &A, 3, names, fname)) return NULL;
        const lyra_jv *cs = arg(&A, 0, "case_sensitive"), *by = arg(&A, 1, "by"), *rev = arg(&A, 2, "reverse");
        if (v->t != JV_DICT || v->ns) return jfail(st, "dictsort needs a dict, not %s", jv_type_name(v));
        int by_value = by && by->t == JV_STR && !strcmp(by->u.s.p, "value");
        if (by && !by_value && !(by->t == JV_STR && !strcmp(by->u.s.p, "key")))
            return jfail(st, "You can only sort by either \"key\" or \"value\"");
        const lyra_jv *items = dict_items(st, v);
        if (!items) return NULL;
        return sorted(st, items, rev && jv_truthy(rev), cs && jv_truthy(cs), NULL, by_value ? v->u.c.v : v->u.c.k);
    }
    case F_REVERSE: {
        if (check_args(st, &A, 0, NULL, fname)) return NULL;
        if (v->t == JV_STR) {
            size_t k;
            uint32_t *c = cps(v, &k);
            if (!c) return joom(st);
            jbuf b = {.limit = st->lim->max_output};
            while (k--) jb_utf8(&b, c[k]);
            free(c);
            return jv_mkstr_own(st, &b);
        }
        const lyra_jv *const *items;
        size_t k;
        if (items_of(st, v, &items, &k, "reverse")) return NULL;
        lyra_jv *l = jv_mklist(st, k);
        if (!l) return NULL;
        while (k--) l->u.c.v[l->u.c.n++] = items[k];
        return l;
    }
    case F_INDENT: return f_indent(st, v, &A);
    case F_ATTR:
        if (check_args(st, &A, 1, NULL, fname)) return NULL;
        if (A.n < 1 || want_str(st, A.a[0], "attr's name")) return A.n < 1 ? jfail(st, "attr needs a name") : NULL;
        if (v->t == JV_UNDEF) return jfail(st, "%s", v->u.undef ? v->u.undef : "an undefined value is used");
        return jb_getattr(st, v, A.a[0]->u.s.p);
    }
    return jfail(st, "internal error: filter %d", id);
}

/* ------------------------------------------------------------------ methods and globals */

enum {
    JF_RANGE = 1, JF_NAMESPACE, JF_DICT, JF_RAISE, JF_STRFTIME, JF_CYCLE,
    /* str */
    JF_S_STRIP, JF_S_LSTRIP, JF_S_RSTRIP, JF_S_SPLIT, JF_S_RSPLIT, JF_S_SPLITLINES, JF_S_STARTSWITH,
    JF_S_ENDSWITH, JF_S_UPPER, JF_S_LOWER, JF_S_TITLE, JF_S_CAPITALIZE, JF_S_REPLACE, JF_S_FIND, JF_S_RFIND,
    JF_S_COUNT, JF_S_JOIN, JF_S_ISDIGIT, JF_S_ISALPHA, JF_S_ISALNUM, JF_S_ISSPACE, JF_S_ISLOWER, JF_S_ISUPPER,
    /* dict */
    JF_D_ITEMS, JF_D_KEYS, JF_D_VALUES, JF_D_GET,
    /* list */
    JF_L_INDEX, JF_L_COUNT,
};

static const struct {
    const char *name;
    int kind;
} g_str_methods[] = {
    {"strip", JF_S_STRIP}, {"lstrip", JF_S_LSTRIP}, {"rstrip", JF_S_RSTRIP}, {"split", JF_S_SPLIT},
    {"rsplit", JF_S_RSPLIT}, {"splitlines", JF_S_SPLITLINES}, {"startswith", JF_S_STARTSWITH},
    {"endswith", JF_S_ENDSWITH}, {"upper", JF_S_UPPER}, {"lower", JF_S_LOWER}, {"title", JF_S_TITLE},
    {"capitalize", JF_S_CAPITALIZE}, {"replace", JF_S_REPLACE}, {"find", JF_S_FIND}, {"rfind", JF_S_RFIND},
    {"count", JF_S_COUNT}, {"join", JF_S_JOIN}, {"isdigit", JF_S_ISDIGIT}, {"isalpha", JF_S_ISALPHA},
    {"isalnum", JF_S_ISALNUM}, {"isspace", JF_S_ISSPACE}, {"islower", JF_S_ISLOWER}, {"isupper", JF_S_ISUPPER},
};

/* Python str methods lyra does not have: calling one is an error that says so. */
static const char *const g_str_unsupported[] = {"format", "format_map", "center", "ljust", "rjust", "zfill",
    "partition", "rpartition", "swapcase", "casefold", "encode", "expandtabs", "index", "rindex",
    "isnumeric", "isdecimal", "isidentifier", "isprintable", "istitle", "translate", "maketrans",
    "removeprefix", "removesuffix", NULL};

const lyra_jv *jb_getattr(jstate *st, const lyra_jv *obj, const char *name) {
    switch (obj->t) {
    case JV_DICT:
        if (obj->ns) {
            const lyra_jv *v = jv_dget_s(obj, name);
            return v ? v : JV_UNDEFINED;
        }
        if (!strcmp(name, "items")) return mkfunc(st, JF_D_ITEMS, "items", obj);
        if (!strcmp(name, "keys")) return mkfunc(st, JF_D_KEYS, "keys", obj);
        if (!strcmp(name, "values")) return mkfunc(st, JF_D_VALUES, "values", obj);
        if (!strcmp(name, "get")) return mkfunc(st, JF_D_GET, "get", obj);
        {
            const lyra_jv *v = jv_dget_s(obj, name);
            if (v) return v;
        }
        if (!strcmp(name, "update") || !strcmp(name, "pop") || !strcmp(name, "popitem") ||
            !strcmp(name, "setdefault") || !strcmp(name, "clear")) {
            char msg[128];
            snprintf(msg, sizeof msg, "access to attribute '%s' of 'dict' object is unsafe", name);
            return mk_undef_msg(st, msg);
        }
        return JV_UNDEFINED;
    case JV_STR:
        for (size_t i = 0; i < sizeof g_str_methods / sizeof g_str_methods[0]; i++)
            if (!strcmp(g_str_methods[i].name, name)) return mkfunc(st, g_str_methods[i].kind, g_str_methods[i].name, obj);
        for (int i = 0; g_str_unsupported[i]; i++)
            if (!strcmp(g_str_unsupported[i], name)) {
                char msg[128];
                snprintf(msg, sizeof msg, "the string method '%s' is not supported", name);
                return mk_undef_msg(st, msg);
            }
        return JV_UNDEFINED;
    case JV_LIST:
        if (!strcmp(name, "index")) return mkfunc(st, JF_L_INDEX, "index", obj);
        if (!strcmp(name, "count")) return mkfunc(st, JF_L_COUNT, "count", obj);
        if (!obj->tuple && (!strcmp(name, "append") || !strcmp(name, "extend") || !strcmp(name, "insert") ||
                            !strcmp(name, "pop") || !strcmp(name, "remove") || !strcmp(name, "sort") ||
                            !strcmp(name, "reverse") || !strcmp(name, "clear"))) {
            char msg[128];
            snprintf(msg, sizeof msg, "access to attribute '%s' of 'list' object is unsafe", name);
            return mk_undef_msg(st, msg);
        }
        return JV_UNDEFINED;
    case JV_LOOP: {
        const jloop *l = obj->u.loop;
        if (!strcmp(name, "index")) return jv_mkint(st, (int64_t)l->i + 1);
        if (!strcmp(name, "index0")) return jv_mkint(st, (int64_t)l->i);
        if (!strcmp(name, "revindex")) return jv_mkint(st, (int64_t)(l->n - l->i));
        if (!strcmp(name, "revindex0")) return jv_mkint(st, (int64_t)(l->n - l->i - 1));
        if (!strcmp(name, "first")) return JV_BOOLV(l->i == 0);
        if (!strcmp(name, "last")) return JV_BOOLV(l->i + 1 == l->n);
        if (!strcmp(name, "length")) return jv_mkint(st, (int64_t)l->n);
        if (!strcmp(name, "depth")) return jv_mkint(st, l->depth);
        if (!strcmp(name, "depth0")) return jv_mkint(st, l->depth - 1);
        if (!strcmp(name, "previtem"))
            return l->i ? l->items[l->i - 1] : mk_undef_msg(st, "there is no previous item");
        if (!strcmp(name, "nextitem"))
            return l->i + 1 < l->n ? l->items[l->i + 1] : mk_undef_msg(st, "there is no next item");
        if (!strcmp(name, "cycle")) return mkfunc(st, JF_CYCLE, "loop.cycle", obj);
        return JV_UNDEFINED;
    }
    default: return JV_UNDEFINED;
    }
}

const lyra_jv *jb_global(jstate *st, const char *name) {
    static const struct {
        const char *name;
        int kind;
    } g[] = {{"range", JF_RANGE}, {"namespace", JF_NAMESPACE}, {"dict", JF_DICT},
             {"raise_exception", JF_RAISE}, {"strftime_now", JF_STRFTIME}};
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++)
        if (!strcmp(g[i].name, name)) return mkfunc(st, g[i].kind, g[i].name, NULL);
    return NULL;
}

static const lyra_jv *g_range(jstate *st, const jargs *A) {
    if (A->nkw || A->n < 1 || A->n > 3) return jfail(st, "range takes 1 to 3 integer arguments");
    int64_t v[3] = {0, 0, 1};
    for (size_t i = 0; i < A->n; i++)
        if (want_int(st, A->a[i], "range's argument", &v[i])) return NULL;
    int64_t start = A->n == 1 ? 0 : v[0], stop = A->n == 1 ? v[0] : v[1], stp = A->n == 3 ? v[2] : 1;
    if (stp == 0) return jfail(st, "range() arg 3 must not be zero");
    double cnt = stp > 0 ? ((double)stop - (double)start) / (double)stp : ((double)start - (double)stop) / (double)-stp;
    if (cnt > 100000) return jfail(st, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    lyra_jv *l = jv_mklist(st, cnt > 0 ? (size_t)ceil(cnt) : 0);
    if (!l) return NULL;
    for (int64_t i = start; stp > 0 ? i < stop : i > stop; i += stp)
        if (!(l->u.c.v[l->u.c.n++] = jv_mkint(st, i))) return NULL;
    return l;
}

static const lyra_jv *g_strftime(jstate *st, const jargs *A) {
    if (A->nkw || A->n != 1 || want_str(st, A->a[0], "strftime_now's format")) {
        if (!st->failed) jfail(st, "strftime_now takes one format string");
        return NULL;
    }
    time_t t = st->lim->now ? (time_t)st->lim->now : time(NULL);
    struct tm tm;
    if (!localtime_r(&t, &tm)) return jfail(st, "strftime_now: no local time");
    if (!A->a[0]->u.s.n) return jv_mkstr(st, "", 0);
    for (size_t cap = 256; cap <= 65536; cap *= 4) {
        char *buf = malloc(cap);
        if (!buf) return joom(st);
        size_t k = strftime(buf, cap, A->a[0]->u.s.p, &tm);
        if (k) {
            const lyra_jv *v = jv_mkstr(st, buf, k);
            free(buf);
            return v;
        }
        free(buf);
    }
    return jv_mkstr(st, "", 0);
}

const lyra_jv *jb_call(jstate *st, const jfunc *f, const lyra_jv *const *args, size_t n,
                       const char *const *kwn, const lyra_jv *const *kwv, size_t nkw) {
    jargs A = {args, n, kwn, kwv, nkw};
    const lyra_jv *self = f->self;
    switch (f->kind) {
    case JF_RANGE: return g_range(st, &A);
    case JF_NAMESPACE:
    case JF_DICT: {
        lyra_jv *d = jv_mkdict(st);
        if (!d) return NULL;
        d->ns = f->kind == JF_NAMESPACE;
        if (n > 1 || (n == 1 && (args[0]->t != JV_DICT || args[0]->ns)))
            return jfail(st, "%s takes keyword arguments or one dict", f->name);
        if (n == 1)
            for (size_t i = 0; i < args[0]->u.c.n; i++)
                if (jv_dset(st->a, d, args[0]->u.c.k[i], args[0]->u.c.v[i])) return joom(st);
        for (size_t i = 0; i < nkw; i++) {
            const lyra_jv *k = jv_mkstr(st, kwn[i], strlen(kwn[i]));
            if (!k || jv_dset(st->a, d, k, kwv[i])) return joom(st);
        }
        return d;
    }
    case JF_RAISE: {
        jbuf b = {0};
        if (n >= 1) jv_str(&b, args[0], 0);
        const lyra_jv *r = jfail(st, "%s", b.p ? b.p : "raise_exception");
        free(b.p);
        return r;
    }
    case JF_STRFTIME: return g_strftime(st, &A);
    case JF_CYCLE:
        if (!n) return jfail(st, "no items for cycling given");
        return args[self->u.loop->i % n];
    case JF_D_ITEMS:
    case JF_D_KEYS:
    case JF_D_VALUES:
        if (n || nkw) return jfail(st, "%s() takes no arguments", f->name);
        if (f->kind == JF_D_ITEMS) return dict_items(st, self);
        return list_of(st, f->kind == JF_D_KEYS ? self->u.c.k : self->u.c.v, self->u.c.n);
    case JF_D_GET: {
        if (nkw || n < 1 || n > 2) return jfail(st, "get takes 1 or 2 arguments");
        const lyra_jv *v = jv_dget(self, args[0]);
        return v ? v : n == 2 ? args[1] : JV_NONEV;
    }
    case JF_L_INDEX:
    case JF_L_COUNT: {
        if (nkw || n != 1) return jfail(st, "%s takes one argument", f->name);
        int64_t c = 0;
        for (size_t i = 0; i < self->u.c.n; i++)
            if (jv_eq(self->u.c.v[i], args[0], 0)) {
                if (f->kind == JF_L_INDEX) return jv_mkint(st, (int64_t)i);
                c++;
            }
        if (f->kind == JF_L_INDEX) return jfail(st, "list.index(x): x not in list");
        return jv_mkint(st, c);
    }
    default: break;
    }
    /* string methods */
    if (nkw && f->kind != JF_S_SPLIT && f->kind != JF_S_RSPLIT && f->kind != JF_S_SPLITLINES)
        return jfail(st, "str.%s() takes no keyword arguments", f->name);
    switch (f->kind) {
    case JF_S_STRIP:
    case JF_S_LSTRIP:
    case JF_S_RSTRIP:
        if (n > 1) return jfail(st, "%s takes at most 1 argument", f->name);
        return s_strip(st, self, n ? args[0] : NULL, f->kind == JF_S_STRIP ? 3 : f->kind == JF_S_LSTRIP ? 1 : 2);
    case JF_S_SPLIT:
    case JF_S_RSPLIT: {
        static const char *const names[] = {"sep", "maxsplit", NULL};
        if (check_args(st, &A, 2, names, f->name)) return NULL;
        const lyra_jv *sep = arg(&A, 0, "sep"), *ms = arg(&A, 1, "maxsplit");
        int64_t m = -1;
        if (ms && want_int(st, ms, "maxsplit", &m)) return NULL;
        return s_split(st, self, sep, m, f->kind == JF_S_RSPLIT);
    }
    case JF_S_SPLITLINES: {
        static const char *const names[] = {"keepends", NULL};
        if (check_args(st, &A, 1, names, f->name)) return NULL;
        const lyra_jv *k = arg(&A, 0, "keepends");
        return s_splitlines(st, self, k && jv_truthy(k));
    }
    case JF_S_STARTSWITH:
    case JF_S_ENDSWITH: {
        if (n != 1) return jfail(st, "%s takes one argument (start and end are not supported)", f->name);
        int r = starts_ends(st, self, args[0], f->kind == JF_S_ENDSWITH);
        return r < 0 ? NULL : JV_BOOLV(r);
    }
    case JF_S_UPPER:
    case JF_S_LOWER:
    case JF_S_TITLE:
    case JF_S_CAPITALIZE:
        if (n) return jfail(st, "%s() takes no arguments", f->name);
        return s_case(st, self, f->kind == JF_S_UPPER ? 1 : f->kind == JF_S_LOWER ? 2 : f->kind == JF_S_TITLE ? 4 : 3);
    case JF_S_REPLACE: {
        if (n < 2 || n > 3) return jfail(st, "replace takes 2 or 3 arguments");
        if (want_str(st, args[0], "replace's old") || want_str(st, args[1], "replace's new")) return NULL;
        int64_t c = -1;
        if (n == 3 && want_int(st, args[2], "replace's count", &c)) return NULL;
        return s_replace(st, self, args[0], args[1], c);
    }
    case JF_S_FIND:
    case JF_S_RFIND:
    case JF_S_COUNT: {
        if (n != 1) return jfail(st, "%s takes one argument (start and end are not supported)", f->name);
        if (want_str(st, args[0], "the substring")) return NULL;
        const lyra_jv *t = args[0];
        if (f->kind == JF_S_COUNT) {
            if (!t->u.s.n) return jv_mkint(st, (int64_t)ju_count(self->u.s.p, self->u.s.n) + 1);
            int64_t c = 0;
            for (long k = find_bytes(self->u.s.p, self->u.s.n, t->u.s.p, t->u.s.n, 0); k >= 0;
                 k = find_bytes(self->u.s.p, self->u.s.n, t->u.s.p, t->u.s.n, (size_t)k + t->u.s.n))
                c++;
            return jv_mkint(st, c);
        }
        long at = -1;
        for (long k = find_bytes(self->u.s.p, self->u.s.n, t->u.s.p, t->u.s.n, 0); k >= 0;
             k = (size_t)k < self->u.s.n ? find_bytes(self->u.s.p, self->u.s.n, t->u.s.p, t->u.s.n, (size_t)k + 1) : -1) {
            at = k;
            if (f->kind == JF_S_FIND) break;
        }
        return jv_mkint(st, at < 0 ? -1 : (int64_t)cp_count_to(self->u.s.p, (size_t)at));
    }
    case JF_S_JOIN:
        if (n != 1) return jfail(st, "join takes one argument");
        return s_join(st, self, args[0], 0);
    case JF_S_ISDIGIT:
    case JF_S_ISALPHA:
    case JF_S_ISALNUM:
    case JF_S_ISSPACE:
    case JF_S_ISLOWER:
    case JF_S_ISUPPER:
        if (n) return jfail(st, "%s() takes no arguments", f->name);
        return JV_BOOLV(s_class(self, f->kind - JF_S_ISDIGIT + 1));
    default: break;
    }
    return jfail(st, "internal error: function %d", f->kind);
}
