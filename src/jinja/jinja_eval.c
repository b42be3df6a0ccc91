/* jinja_eval.c: rendering a parsed template (jinja_impl.h): scopes (a for
 * loop's body, a macro's body and a with block each get one; set writes to
 * the innermost, lookups go outwards, then to the render's variables, then
 * to the globals), statements, and expressions with Python's semantics and
 * jinja2's Undefined (printed as "", false, iterable as empty, an error when
 * used any other way). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja/jinja_impl.h"

jarena *jinja_vars_arena(lyra_jinja_vars *v);
const lyra_jv *jinja_vars_globals(const lyra_jinja_vars *v);

struct jscope {
    jscope *parent;
    const char **names;
    const lyra_jv **vals;
    size_t n, cap;
};

typedef struct jrender {
    jstate st;
    const lyra_jv *vars; /* the render's variables (a dict) */
} jrender;

#define MAX_EVAL_DEPTH 400

/* ------------------------------------------------------------------ errors */

const lyra_jv *jfail(jstate *st, const char *fmt, ...) {
    if (st->failed) return NULL;
    st->failed = 1;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lyra_err(st->err, LYRA_ERR_INPUT, NULL, "%s:%d: %s", st->t->name, st->line, msg);
    return NULL;
}

const lyra_jv *joom(jstate *st) {
    if (st->failed) return NULL;
    if (st->a->over == 2)
        return jfail(st, "the template used more than %zu bytes of memory", st->lim->max_memory);
    st->failed = 1;
    lyra_err(st->err, LYRA_ERR_OOM, st->t->name, "out of memory");
    return NULL;
}

/* The error for using an undefined value. */
static const lyra_jv *undef_err(jstate *st, const lyra_jv *v) {
    if (v->u.undef) return jfail(st, "%s", v->u.undef);
    return jfail(st, "an undefined value is used");
}

static const lyra_jv *mk_undef(jstate *st, const char *fmt, ...) LYRA_PRINTF(2, 3);
static const lyra_jv *mk_undef(jstate *st, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lyra_jv *v = ja_alloc(st->a, sizeof *v);
    char *s = v ? ja_strdup(st->a, msg, strlen(msg)) : NULL;
    if (!s) return joom(st);
    v->t = JV_UNDEF;
    v->u.undef = s;
    return v;
}

/* ------------------------------------------------------------------ scopes */

static jscope *scope_new(jstate *st, jscope *parent) {
    jscope *s = ja_alloc(st->a, sizeof *s);
    if (!s) {
        joom(st);
        return NULL;
    }
    s->parent = parent;
    return s;
}

static int scope_set(jstate *st, jscope *s, const char *name, const lyra_jv *v) {
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], name)) {
            s->vals[i] = v;
            return 0;
        }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        const char **n = ja_alloc(st->a, cap * sizeof *n);
        const lyra_jv **v2 = ja_alloc(st->a, cap * sizeof *v2);
        if (!n || !v2) {
            joom(st);
            return -1;
        }
        if (s->n) {
            memcpy(n, s->names, s->n * sizeof *n);
            memcpy(v2, s->vals, s->n * sizeof *v2);
        }
        s->names = n;
        s->vals = v2;
        s->cap = cap;
    }
    s->names[s->n] = name;
    s->vals[s->n++] = v;
    return 0;
}

static const lyra_jv *lookup(jrender *r, jscope *s, const char *name) {
    for (; s; s = s->parent)
        for (size_t i = s->n; i-- > 0;)
            if (!strcmp(s->names[i], name)) return s->vals[i];
    const lyra_jv *v = jv_dget_s(r->vars, name);
    if (v) return v;
    v = jb_global(&r->st, name);
    if (v || r->st.failed) return v;
    return mk_undef(&r->st, "'%s' is undefined", name);
}

/* ------------------------------------------------------------------ helpers */

static const lyra_jv *eval(jrender *r, jscope *s, const jnode *n);
static int exec_body(jrender *r, jscope *s, const jlist *body, jbuf *out);

static int step(jstate *st) {
    int64_t max = st->lim->max_steps;
    if (++st->steps > max) {
        jfail(st, "more than %lld loop iterations and calls", (long long)max);
        return -1;
    }
    return 0;
}

/* The items to iterate over v: list items, dict keys, string characters;
 * undefined: none. *items may point into v. */
static int iter_items(jstate *st, const lyra_jv *v, const lyra_jv *const **items, size_t *n) {
    switch (v->t) {
    case JV_UNDEF: *items = NULL; *n = 0; return 0;
    case JV_LIST: *items = v->u.c.v; *n = v->u.c.n; return 0;
    case JV_DICT:
        if (v->ns) break;
        *items = v->u.c.k;
        *n = v->u.c.n;
        return 0;
    case JV_STR: {
        size_t cnt = ju_count(v->u.s.p, v->u.s.n);
        const lyra_jv **out = ja_alloc(st->a, (cnt ? cnt : 1) * sizeof *out);
        if (!out) return joom(st), -1;
        size_t k = 0;
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
    jfail(st, "'%s' object is not iterable", jv_type_name(v));
    return -1;
}

/* Bind targets[nt] to item (unpacking a list or tuple for several). */
static int bind(jrender *r, jscope *s, const char *const *targets, size_t nt, const lyra_jv *item) {
    if (nt == 1) return scope_set(&r->st, s, targets[0], item);
    if (item->t == JV_STR) {
        const lyra_jv *const *it;
        size_t k;
        if (iter_items(&r->st, item, &it, &k)) return -1;
        lyra_jv tmp = {.t = JV_LIST};
        tmp.u.c.v = (const lyra_jv **)it;
        tmp.u.c.n = k;
        return bind(r, s, targets, nt, &tmp);
    }
    if (item->t != JV_LIST) {
        jfail(&r->st, "cannot unpack a '%s' into %zu names", jv_type_name(item), nt);
        return -1;
    }
    if (item->u.c.n != nt) {
        jfail(&r->st, "%s values to unpack (expected %zu, got %zu)", item->u.c.n > nt ? "too many" : "not enough",
              nt, item->u.c.n);
        return -1;
    }
    for (size_t i = 0; i < nt; i++)
        if (scope_set(&r->st, s, targets[i], item->u.c.v[i])) return -1;
    return 0;
}

/* Code point offsets of s: off[i] = byte offset of code point i, off[n] = len. */
static size_t *cp_offsets(jstate *st, const lyra_jv *s, size_t *n) {
    size_t cnt = ju_count(s->u.s.p, s->u.s.n);
    size_t *off = ja_alloc(st->a, (cnt + 1) * sizeof *off);
    if (!off) {
        joom(st);
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < s->u.s.n;) {
        off[k++] = i;
        ju_next(s->u.s.p, s->u.s.n, &i);
    }
    off[cnt] = s->u.s.n;
    *n = cnt;
    return off;
}

/* ------------------------------------------------------------------ subscripts */

static const lyra_jv *getitem(jrender *r, const lyra_jv *obj, const lyra_jv *key) {
    jstate *st = &r->st;
    if (obj->t == JV_UNDEF) return undef_err(st, obj);
    if ((obj->t == JV_LIST || obj->t == JV_STR) && jv_is_int(key)) {
        int64_t i = key->t == JV_INT ? key->u.i : key->u.b;
        if (obj->t == JV_LIST) {
            int64_t n = (int64_t)obj->u.c.n;
            if (i < 0) i += n;
            if (i < 0 || i >= n) return mk_undef(st, "%s index %lld out of range", jv_type_name(obj), (long long)i);
            return obj->u.c.v[i];
        }
        size_t n, *off = NULL;
        if (!(off = cp_offsets(st, obj, &n))) return NULL;
        if (i < 0) i += (int64_t)n;
        if (i < 0 || i >= (int64_t)n) return mk_undef(st, "string index %lld out of range", (long long)i);
        return jv_mkstr(st, obj->u.s.p + off[i], off[i + 1] - off[i]);
    }
    if (obj->t == JV_DICT && !obj->ns) {
        const lyra_jv *v = jv_dget(obj, key);
        if (v) return v;
    }
    if (key->t == JV_STR) {
        const lyra_jv *v = jb_getattr(st, obj, key->u.s.p);
        if (!v || v->t != JV_UNDEF) return v;
        jbuf b = {0};
        jv_repr(&b, key, 0);
        v = mk_undef(st, "'%s object' has no attribute %s", jv_type_name(obj), b.p ? b.p : "?");
        free(b.p);
        return v;
    }
    return mk_undef(st, "'%s object' has no item of that key", jv_type_name(obj));
}

static int slice_index(jstate *st, const lyra_jv *v, int64_t *out, int *given) {
    *given = 0;
    if (!v || v->t == JV_NONE) return 0;
    if (!jv_is_int(v)) {
        jfail(st, "slice indices must be integers or None, not %s", jv_type_name(v));
        return -1;
    }
    *out = v->t == JV_INT ? v->u.i : v->u.b;
    *given = 1;
    return 0;
}

static const lyra_jv *slice(jrender *r, const lyra_jv *obj, const lyra_jv *a, const lyra_jv *b,
                            const lyra_jv *c) {
    jstate *st = &r->st;
    if (obj->t == JV_UNDEF) return undef_err(st, obj);
    if (obj->t != JV_LIST && obj->t != JV_STR) return jfail(st, "'%s' object is not subscriptable", jv_type_name(obj));
    int64_t start = 0, stop = 0, stp = 1;
    int gs, ge, gp;
    if (slice_index(st, a, &start, &gs) || slice_index(st, b, &stop, &ge) || slice_index(st, c, &stp, &gp))
        return NULL;
    if (stp == 0) return jfail(st, "slice step cannot be zero");
    size_t cnt, *off = NULL;
    if (obj->t == JV_STR) {
        if (!(off = cp_offsets(st, obj, &cnt))) return NULL;
    } else cnt = obj->u.c.n;
    int64_t len = (int64_t)cnt;
    if (stp > 0) {
        if (!gs) start = 0;
        else if (start < 0 && (start += len) < 0) start = 0;
        else if (start > len) start = len;
        if (!ge) stop = len;
        else if (stop < 0 && (stop += len) < 0) stop = 0;
        else if (stop > len) stop = len;
    } else {
        if (!gs) start = len - 1;
        else if (start < 0 && (start += len) < 0) start = -1;
        else if (start >= len) start = len - 1;
        if (!ge) stop = -1;
        else if (stop < 0 && (stop += len) < 0) stop = -1;
        else if (stop >= len) stop = len - 1;
    }
    if (obj->t == JV_STR) {
        jbuf buf = {.limit = st->lim->max_output};
        for (int64_t i = start; stp > 0 ? i < stop : i > stop; i += stp)
            jb_add(&buf, obj->u.s.p + off[i], off[i + 1] - off[i]);
        return jv_mkstr_own(st, &buf);
    }
    size_t k = stp > 0 ? (stop > start ? (size_t)((stop - start + stp - 1) / stp) : 0)
                       : (start > stop ? (size_t)((start - stop - stp - 1) / -stp) : 0);
    lyra_jv *l = jv_mklist(st, k);
    if (!l) return NULL;
    l->tuple = obj->tuple;
    for (int64_t i = start; stp > 0 ? i < stop : i > stop; i += stp) l->u.c.v[l->u.c.n++] = obj->u.c.v[i];
    return l;
}

/* ------------------------------------------------------------------ operators */

static int is_num(const lyra_jv *v) { return v->t == JV_INT || v->t == JV_BOOL || v->t == JV_FLOAT; }
static double num(const lyra_jv *v) {
    return v->t == JV_FLOAT ? v->u.f : v->t == JV_INT ? (double)v->u.i : (double)v->u.b;
}
static int64_t inum(const lyra_jv *v) { return v->t == JV_INT ? v->u.i : v->u.b; }

static const char *op_name(int op) {
    static const char *const names[] = {"?", "+", "-", "*", "/", "//", "%", "**", "~",
                                        "==", "!=", "<", "<=", ">", ">=", "in", "not in"};
    return op > 0 && op <= JO_NOTIN ? names[op] : "?";
}

static const lyra_jv *unsupported(jstate *st, int op, const lyra_jv *a, const lyra_jv *b) {
    if (a->t == JV_UNDEF) return undef_err(st, a);
    if (b->t == JV_UNDEF) return undef_err(st, b);
    return jfail(st, "unsupported operand type(s) for %s: '%s' and '%s'", op_name(op), jv_type_name(a),
                 jv_type_name(b));
}

static const lyra_jv *repeat(jstate *st, const lyra_jv *seq, int64_t times) {
    if (times < 0) times = 0;
    if (seq->t == JV_STR) {
        if (seq->u.s.n && (uint64_t)times > st->lim->max_output / seq->u.s.n)
            return jfail(st, "a string repeated %lld times is over the output limit", (long long)times);
        jbuf b = {.limit = st->lim->max_output};
        for (int64_t i = 0; i < times; i++) jb_add(&b, seq->u.s.p, seq->u.s.n);
        return jv_mkstr_own(st, &b);
    }
    if (seq->u.c.n && (uint64_t)times > (st->lim->max_memory / sizeof(void *)) / seq->u.c.n)
        return jfail(st, "a list repeated %lld times is too long", (long long)times);
    lyra_jv *l = jv_mklist(st, (size_t)times * seq->u.c.n);
    if (!l) return NULL;
    l->tuple = seq->tuple;
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < seq->u.c.n; k++) l->u.c.v[l->u.c.n++] = seq->u.c.v[k];
    return l;
}

static const lyra_jv *arith(jstate *st, int op, const lyra_jv *a, const lyra_jv *b) {
    if (op == JO_CAT) {
        jbuf buf = {.limit = st->lim->max_output};
        if (jv_str(&buf, a, 0) || jv_str(&buf, b, 0)) {
            free(buf.p);
            return jfail(st, "a value nested too deeply");
        }
        return jv_mkstr_own(st, &buf);
    }
    if (is_num(a) && is_num(b)) {
        int ints = a->t != JV_FLOAT && b->t != JV_FLOAT;
        int64_t x = ints ? inum(a) : 0, y = ints ? inum(b) : 0, z;
        double f = num(a), g = num(b);
        switch (op) {
        case JO_ADD:
            if (!ints) return jv_mkfloat(st, f + g);
            if (__builtin_add_overflow(x, y, &z)) break;
            return jv_mkint(st, z);
        case JO_SUB:
            if (!ints) return jv_mkfloat(st, f - g);
            if (__builtin_sub_overflow(x, y, &z)) break;
            return jv_mkint(st, z);
        case JO_MUL:
            if (!ints) return jv_mkfloat(st, f * g);
            if (__builtin_mul_overflow(x, y, &z)) break;
            return jv_mkint(st, z);
        case JO_DIV:
            if (g == 0.0) return jfail(st, "division by zero");
            return jv_mkfloat(st, f / g);
        case JO_FDIV:
        case JO_MOD:
            if (ints) {
                if (y == 0) return jfail(st, "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1) break;
                int64_t q = x / y, m = x % y;
                if (m && ((m < 0) != (y < 0))) {
                    q--;
                    m += y;
                }
                return jv_mkint(st, op == JO_FDIV ? q : m);
            }
            if (g == 0.0) return jfail(st, "float division or modulo by zero");
            if (op == JO_FDIV) return jv_mkfloat(st, floor(f / g));
            {
                double m = fmod(f, g);
                if (m != 0.0 && ((m < 0) != (g < 0))) m += g;
                return jv_mkfloat(st, m);
            }
        case JO_POW:
            if (ints && y >= 0) {
                int64_t acc = 1, base = x;
                for (int64_t e = y; e; e >>= 1) {
                    if ((e & 1) && __builtin_mul_overflow(acc, base, &acc)) return jfail(st, "integer overflow");
                    if (e > 1 && __builtin_mul_overflow(base, base, &base)) return jfail(st, "integer overflow");
                }
                return jv_mkint(st, acc);
            }
            if (f == 0.0 && g < 0) return jfail(st, "0.0 cannot be raised to a negative power");
            return jv_mkfloat(st, pow(f, g));
        default: break;
        }
        return jfail(st, "integer overflow (lyra's integers are 64-bit)");
    }
    if (op == JO_ADD && a->t == JV_STR && b->t == JV_STR) {
        if (a->u.s.n + b->u.s.n > st->lim->max_output)
            return jfail(st, "a string of %zu bytes is over the output limit", a->u.s.n + b->u.s.n);
        char *p = ja_alloc(st->a, a->u.s.n + b->u.s.n + 1);
        lyra_jv *v = p ? ja_alloc(st->a, sizeof *v) : NULL;
        if (!v) return joom(st);
        memcpy(p, a->u.s.p, a->u.s.n);
        memcpy(p + a->u.s.n, b->u.s.p, b->u.s.n);
        v->t = JV_STR;
        v->u.s.p = p;
        v->u.s.n = a->u.s.n + b->u.s.n;
        return v;
    }
    if (op == JO_ADD && a->t == JV_LIST && b->t == JV_LIST && a->tuple == b->tuple) {
        lyra_jv *l = jv_mklist(st, a->u.c.n + b->u.c.n);
        if (!l) return NULL;
        l->tuple = a->tuple;
        for (size_t i = 0; i < a->u.c.n; i++) l->u.c.v[l->u.c.n++] = a->u.c.v[i];
        for (size_t i = 0; i < b->u.c.n; i++) l->u.c.v[l->u.c.n++] = b->u.c.v[i];
        return l;
    }
    if (op == JO_MUL && (a->t == JV_STR || a->t == JV_LIST) && jv_is_int(b)) return repeat(st, a, inum(b));
    if (op == JO_MUL && (b->t == JV_STR || b->t == JV_LIST) && jv_is_int(a)) return repeat(st, b, inum(a));
    if (op == JO_MOD && a->t == JV_STR) return jfail(st, "printf-style string formatting ('%%') is not supported");
    return unsupported(st, op, a, b);
}

/* x in container: 1, 0, -1 error. */
static int contains(jstate *st, const lyra_jv *x, const lyra_jv *c) {
    switch (c->t) {
    case JV_UNDEF: return 0;
    case JV_STR:
        if (x->t != JV_STR) {
            jfail(st, "'in <string>' requires string as left operand, not %s", jv_type_name(x));
            return -1;
        }
        if (!x->u.s.n) return 1;
        for (size_t i = 0; i + x->u.s.n <= c->u.s.n; i++)
            if (!memcmp(c->u.s.p + i, x->u.s.p, x->u.s.n)) return 1;
        return 0;
    case JV_LIST:
        for (size_t i = 0; i < c->u.c.n; i++)
            if (jv_eq(x, c->u.c.v[i], 0)) return 1;
        return 0;
    case JV_DICT:
        if (c->ns) break;
        return jv_dget(c, x) != NULL;
    default: break;
    }
    jfail(st, "argument of type '%s' is not iterable", jv_type_name(c));
    return -1;
}

static int compare(jstate *st, int op, const lyra_jv *a, const lyra_jv *b) {
    switch (op) {
    case JO_EQ: return jv_eq(a, b, 0);
    case JO_NE: return !jv_eq(a, b, 0);
    case JO_IN: return contains(st, a, b);
    case JO_NOTIN: {
        int r = contains(st, a, b);
        return r < 0 ? r : !r;
    }
    default: break;
    }
    int c = jv_cmp(a, b, 0);
    if (c == -2) {
        if (a->t == JV_UNDEF) undef_err(st, a);
        else if (b->t == JV_UNDEF) undef_err(st, b);
        else
            jfail(st, "'%s' not supported between instances of '%s' and '%s'", op_name(op), jv_type_name(a),
                  jv_type_name(b));
        return -1;
    }
    switch (op) {
    case JO_LT: return c < 0;
    case JO_LE: return c <= 0 && !(a->t == JV_FLOAT && isnan(a->u.f)) && !(b->t == JV_FLOAT && isnan(b->u.f));
    case JO_GT: return c > 0;
    default: return c >= 0 && !(a->t == JV_FLOAT && isnan(a->u.f)) && !(b->t == JV_FLOAT && isnan(b->u.f));
    }
}

/* ------------------------------------------------------------------ calls */

static const lyra_jv *call_macro(jrender *r, const jfunc *f, const lyra_jv *const *args, size_t n,
                                 const char *const *kwn, const lyra_jv *const *kwv, size_t nkw) {
    jstate *st = &r->st;
    const jnode *m = f->macro;
    if (n > m->n_targets)
        return jfail(st, "macro '%s' takes not more than %zu argument(s)", m->s, m->n_targets);
    if (st->depth >= st->lim->max_depth) return jfail(st, "macro calls nested more than %d deep", st->lim->max_depth);
    if (step(st)) return NULL;
    jscope *s = scope_new(st, f->closure);
    if (!s) return NULL;
    for (size_t k = 0; k < nkw; k++) {
        size_t i = 0;
        while (i < m->n_targets && strcmp(m->targets[i], kwn[k])) i++;
        if (i == m->n_targets) return jfail(st, "macro '%s' has no parameter '%s'", m->s, kwn[k]);
        if (i < n) return jfail(st, "macro '%s' got two values for '%s'", m->s, kwn[k]);
    }
    st->depth++;
    for (size_t i = 0; i < m->n_targets; i++) {
        const lyra_jv *v = i < n ? args[i] : NULL;
        for (size_t k = 0; k < nkw && !v; k++)
            if (!strcmp(m->targets[i], kwn[k])) v = kwv[k];
        if (!v && m->args.v[i]) v = eval(r, s, m->args.v[i]);
        else if (!v) v = mk_undef(st, "macro '%s': no value for parameter '%s'", m->s, m->targets[i]);
        if (!v || scope_set(st, s, m->targets[i], v)) {
            st->depth--;
            return NULL;
        }
    }
    jbuf out = {.limit = st->lim->max_output};
    int line = st->line;
    int rc = exec_body(r, s, &m->body, &out);
    st->line = line;
    st->depth--;
    if (rc < 0) {
        free(out.p);
        return NULL;
    }
    return jv_mkstr_own(st, &out);
}

#define MAX_ARGS 16

/* Evaluate the arguments of n into args / kwv. */
static int eval_args(jrender *r, jscope *s, const jnode *n, const lyra_jv **args, const lyra_jv **kwv) {
    if (n->args.n > MAX_ARGS || n->kwargs.n > MAX_ARGS) {
        jfail(&r->st, "more than %d arguments", MAX_ARGS);
        return -1;
    }
    for (size_t i = 0; i < n->args.n; i++)
        if (!(args[i] = eval(r, s, n->args.v[i]))) return -1;
    for (size_t i = 0; i < n->kwargs.n; i++)
        if (!(kwv[i] = eval(r, s, n->kwargs.v[i]))) return -1;
    return 0;
}

static const lyra_jv *call(jrender *r, jscope *s, const jnode *n) {
    jstate *st = &r->st;
    const lyra_jv *f = eval(r, s, n->a);
    if (!f) return NULL;
    const lyra_jv *args[MAX_ARGS], *kwv[MAX_ARGS];
    if (eval_args(r, s, n, args, kwv)) return NULL;
    st->line = n->line;
    if (f->t == JV_UNDEF) return undef_err(st, f);
    if (f->t != JV_FUNC) return jfail(st, "'%s' object is not callable", jv_type_name(f));
    if (f->u.fn->macro) return call_macro(r, f->u.fn, args, n->args.n, n->kwnames, kwv, n->kwargs.n);
    return jb_call(st, f->u.fn, args, n->args.n, n->kwnames, kwv, n->kwargs.n);
}

/* ------------------------------------------------------------------ expressions */

static const lyra_jv *eval_node(jrender *r, jscope *s, const jnode *n) {
    jstate *st = &r->st;
    st->line = n->line;
    switch (n->kind) {
    case JN_LIT: return n->v;
    case JN_NAME: return lookup(r, s, n->s);
    case JN_ATTR: {
        const lyra_jv *o = eval(r, s, n->a);
        if (!o) return NULL;
        st->line = n->line;
        if (o->t == JV_UNDEF) return undef_err(st, o);
        const lyra_jv *v = jb_getattr(st, o, n->s);
        if (v && v->t == JV_UNDEF && !v->u.undef)
            return mk_undef(st, "'%s object' has no attribute '%s'", jv_type_name(o), n->s);
        return v;
    }
    case JN_ITEM: {
        const lyra_jv *o = eval(r, s, n->a), *k = o ? eval(r, s, n->b) : NULL;
        if (!k) return NULL;
        st->line = n->line;
        return getitem(r, o, k);
    }
    case JN_SLICE: {
        const lyra_jv *o = eval(r, s, n->a), *v[3] = {NULL, NULL, NULL};
        if (!o) return NULL;
        const jnode *parts[3] = {n->b, n->c, n->d};
        for (int i = 0; i < 3; i++)
            if (parts[i] && !(v[i] = eval(r, s, parts[i]))) return NULL;
        st->line = n->line;
        return slice(r, o, v[0], v[1], v[2]);
    }
    case JN_CALL: return call(r, s, n);
    case JN_FILTER:
    case JN_TEST: {
        const lyra_jv *v = eval(r, s, n->a);
        const lyra_jv *args[MAX_ARGS], *kwv[MAX_ARGS];
        if (!v || eval_args(r, s, n, args, kwv)) return NULL;
        st->line = n->line;
        if (n->kind == JN_FILTER)
            return jb_filter(st, n->fid, v, args, n->args.n, n->kwnames, kwv, n->kwargs.n);
        if (n->kwargs.n) return jfail(st, "tests take no keyword arguments");
        int t = jb_test(st, n->fid, v, args, n->args.n);
        if (t < 0) return NULL;
        return JV_BOOLV(n->op ? !t : t);
    }
    case JN_BIN: {
        const lyra_jv *a = eval(r, s, n->a), *b = a ? eval(r, s, n->b) : NULL;
        if (!b) return NULL;
        st->line = n->line;
        return arith(st, n->op, a, b);
    }
    case JN_CMP: {
        const lyra_jv *a = eval(r, s, n->args.v[0]);
        if (!a) return NULL;
        for (size_t i = 1; i < n->args.n; i++) {
            const lyra_jv *b = eval(r, s, n->args.v[i]);
            if (!b) return NULL;
            st->line = n->line;
            int c = compare(st, n->ops[i - 1], a, b);
            if (c < 0) return NULL;
            if (!c) return JV_FALSE;
            a = b;
        }
        return JV_TRUE;
    }
    case JN_NOT: {
        const lyra_jv *a = eval(r, s, n->a);
        return a ? JV_BOOLV(!jv_truthy(a)) : NULL;
    }
    case JN_NEG:
    case JN_POS: {
        const lyra_jv *a = eval(r, s, n->a);
        if (!a) return NULL;
        st->line = n->line;
        if (a->t == JV_FLOAT) return jv_mkfloat(st, n->kind == JN_NEG ? -a->u.f : a->u.f);
        if (jv_is_int(a)) {
            int64_t x = inum(a);
            if (n->kind == JN_NEG && x == INT64_MIN) return jfail(st, "integer overflow");
            return jv_mkint(st, n->kind == JN_NEG ? -x : x);
        }
        if (a->t == JV_UNDEF) return undef_err(st, a);
        return jfail(st, "bad operand type for unary %c: '%s'", n->kind == JN_NEG ? '-' : '+', jv_type_name(a));
    }
    case JN_AND:
    case JN_OR: {
        const lyra_jv *a = eval(r, s, n->a);
        if (!a) return NULL;
        if (jv_truthy(a) == (n->kind == JN_OR)) return a;
        return eval(r, s, n->b);
    }
    case JN_COND: {
        const lyra_jv *c = eval(r, s, n->a);
        if (!c) return NULL;
        if (jv_truthy(c)) return eval(r, s, n->b);
        if (n->c) return eval(r, s, n->c);
        return mk_undef(st, "the inline if expression gave no value (no else)");
    }
    case JN_LIST:
    case JN_TUPLE: {
        lyra_jv *l = jv_mklist(st, n->args.n);
        if (!l) return NULL;
        l->tuple = n->kind == JN_TUPLE;
        for (size_t i = 0; i < n->args.n; i++)
            if (!(l->u.c.v[l->u.c.n++] = eval(r, s, n->args.v[i]))) return NULL;
        return l;
    }
    case JN_DICT: {
        lyra_jv *d = jv_mkdict(st);
        if (!d) return NULL;
        for (size_t i = 0; i < n->args.n; i++) {
            const lyra_jv *k = eval(r, s, n->args.v[i]), *v = k ? eval(r, s, n->kwargs.v[i]) : NULL;
            if (!v) return NULL;
            if (k->t == JV_LIST && !k->tuple) return jfail(st, "unhashable type: 'list'");
            if (k->t == JV_DICT) return jfail(st, "unhashable type: 'dict'");
            if (jv_dset(st->a, d, k, v)) return joom(st);
        }
        return d;
    }
    default: break;
    }
    return jfail(st, "internal error: node %d is not an expression", (int)n->kind);
}

static const lyra_jv *eval(jrender *r, jscope *s, const jnode *n) {
    jstate *st = &r->st;
    if (st->failed) return NULL;
    if (++st->edepth > MAX_EVAL_DEPTH) {
        st->line = n->line;
        st->edepth--;
        return jfail(st, "evaluation nested too deeply");
    }
    const lyra_jv *v = eval_node(r, s, n);
    st->edepth--;
    if (!v && !st->failed) joom(st);
    return v;
}

/* ------------------------------------------------------------------ statements */

enum { X_OK = 0, X_BREAK = 1, X_CONTINUE = 2, X_ERR = -1 };

static int out_value(jrender *r, const lyra_jv *v, jbuf *out) {
    if (jv_str(out, v, 0)) {
        jfail(&r->st, "a value nested too deeply to print");
        return X_ERR;
    }
    return X_OK;
}

static int exec_for(jrender *r, jscope *s, const jnode *n, jbuf *out) {
    jstate *st = &r->st;
    const lyra_jv *it = eval(r, s, n->a);
    if (!it) return X_ERR;
    st->line = n->line;
    const lyra_jv *const *items;
    size_t cnt;
    if (iter_items(st, it, &items, &cnt)) return X_ERR;
    if (n->b) { /* for x in xs if cond: filtered first (loop.length counts what is left) */
        const lyra_jv **kept = ja_alloc(st->a, (cnt ? cnt : 1) * sizeof *kept);
        if (!kept) return joom(st), X_ERR;
        size_t k = 0;
        for (size_t i = 0; i < cnt; i++) {
            if (step(st)) return X_ERR;
            jscope *fs = scope_new(st, s);
            if (!fs || bind(r, fs, n->targets, n->n_targets, items[i])) return X_ERR;
            const lyra_jv *c = eval(r, fs, n->b);
            if (!c) return X_ERR;
            if (jv_truthy(c)) kept[k++] = items[i];
        }
        items = kept;
        cnt = k;
    }
    if (!cnt) return exec_body(r, s, &n->orelse, out) < 0 ? X_ERR : X_OK;
    int depth = 1; /* loop.depth grows only in recursive loops, which lyra has not */
    for (size_t i = 0; i < cnt; i++) {
        if (step(st)) return X_ERR;
        jscope *ls = scope_new(st, s);
        jloop *lp = ls ? ja_alloc(st->a, sizeof *lp) : NULL;
        lyra_jv *lv = lp ? ja_alloc(st->a, sizeof *lv) : NULL;
        if (!lv) return joom(st), X_ERR;
        lp->items = items;
        lp->i = i;
        lp->n = cnt;
        lp->depth = depth;
        lv->t = JV_LOOP;
        lv->u.loop = lp;
        if (scope_set(st, ls, "loop", lv) || bind(r, ls, n->targets, n->n_targets, items[i])) return X_ERR;
        int rc = exec_body(r, ls, &n->body, out);
        if (rc == X_ERR) return X_ERR;
        if (rc == X_BREAK) break;
    }
    return X_OK;
}

static int exec_node(jrender *r, jscope *s, const jnode *n, jbuf *out) {
    jstate *st = &r->st;
    st->line = n->line;
    switch (n->kind) {
    case JN_TEXT: jb_add(out, n->s, n->sn); return X_OK;
    case JN_OUT: {
        const lyra_jv *v = eval(r, s, n->a);
        return v ? out_value(r, v, out) : X_ERR;
    }
    case JN_IF: {
        const lyra_jv *c = eval(r, s, n->a);
        if (!c) return X_ERR;
        return exec_body(r, s, jv_truthy(c) ? &n->body : &n->orelse, out);
    }
    case JN_FOR: return exec_for(r, s, n, out);
    case JN_BREAK: return X_BREAK;
    case JN_CONTINUE: return X_CONTINUE;
    case JN_BODY: return exec_body(r, s, &n->body, out);
    case JN_SET: {
        const lyra_jv *v;
        if (n->a) v = eval(r, s, n->a);
        else {
            jbuf b = {.limit = st->lim->max_output};
            if (exec_body(r, s, &n->body, &b) < 0) {
                free(b.p);
                return X_ERR;
            }
            v = jv_mkstr_own(st, &b);
        }
        if (!v) return X_ERR;
        st->line = n->line;
        if (n->attr) {
            const lyra_jv *ns = lookup(r, s, n->targets[0]);
            if (!ns) return X_ERR;
            if (ns->t != JV_DICT || !ns->ns) {
                jfail(st, "cannot assign attribute on non-namespace object ('%s' is a %s)", n->targets[0],
                      jv_type_name(ns));
                return X_ERR;
            }
            const lyra_jv *key = jv_mkstr(st, n->attr, strlen(n->attr));
            if (!key || jv_dset(st->a, (lyra_jv *)ns, key, v)) return joom(st), X_ERR;
            return X_OK;
        }
        return bind(r, s, n->targets, n->n_targets, v) ? X_ERR : X_OK;
    }
    case JN_MACRO: {
        jfunc *f = ja_alloc(st->a, sizeof *f);
        lyra_jv *v = f ? ja_alloc(st->a, sizeof *v) : NULL;
        if (!v) return joom(st), X_ERR;
        f->kind = -1;
        f->name = n->s;
        f->macro = n;
        f->closure = s;
        v->t = JV_FUNC;
        v->u.fn = f;
        return scope_set(st, s, n->s, v) ? X_ERR : X_OK;
    }
    case JN_WITH: {
        jscope *ws = scope_new(st, s);
        if (!ws) return X_ERR;
        for (size_t i = 0; i < n->n_targets; i++) {
            const lyra_jv *v = eval(r, s, n->args.v[i]);
            if (!v || scope_set(st, ws, n->targets[i], v)) return X_ERR;
        }
        return exec_body(r, ws, &n->body, out);
    }
    default: break;
    }
    jfail(st, "internal error: node %d is not a statement", (int)n->kind);
    return X_ERR;
}

static int exec_body(jrender *r, jscope *s, const jlist *body, jbuf *out) {
    for (size_t i = 0; i < body->n; i++) {
        int rc = exec_node(r, s, body->v[i], out);
        if (rc) return rc;
        if (out->fail) {
            if (out->fail == 2) jfail(&r->st, "the output is over %zu bytes", r->st.lim->max_output);
            else joom(&r->st);
            return X_ERR;
        }
        if (r->st.failed) return X_ERR;
    }
    return X_OK;
}

/* ------------------------------------------------------------------ entry */

int lyra_jinja_render(const lyra_jinja *t, lyra_jinja_vars *v, const lyra_jinja_limits *lim, char **out,
                      size_t *out_len, lyra_error *err) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (!t || !v) return lyra_err(err, LYRA_ERR_OOM, "template", "out of memory");
    lyra_jinja_limits l = lim ? *lim : (lyra_jinja_limits){0};
    if (!l.max_output) l.max_output = 16u << 20;
    if (!l.max_memory) l.max_memory = 256u << 20;
    if (!l.max_steps) l.max_steps = 1000000;
    if (!l.max_depth) l.max_depth = 64;
    jarena *a = jinja_vars_arena(v);
    size_t limit_before = a->limit;
    a->limit = a->used + l.max_memory; /* what the caller built is not counted */
    jrender r = {.st = {.a = a, .t = t, .lim = &l, .err = err}, .vars = jinja_vars_globals(v)};
    jbuf b = {.limit = l.max_output};
    jscope *root = scope_new(&r.st, NULL);
    int rc = root ? exec_body(&r, root, &t->body, &b) : X_ERR;
    a->limit = limit_before;
    a->over = 0;
    if (rc == X_ERR || r.st.failed) {
        free(b.p);
        return err && err->code ? err->code : LYRA_ERR_INPUT;
    }
    if (!b.p) jb_add(&b, "", 0);
    if (b.fail) {
        free(b.p);
        return lyra_err(err, LYRA_ERR_OOM, t->name, "out of memory");
    }
    *out = b.p;
    if (out_len) *out_len = b.n;
    return LYRA_OK;
}
