/* jinja_impl.h: what the files of src/jinja/ share (private): the arena,
 * values, the syntax tree, and the render state. */
#ifndef LYRA_JINJA_IMPL_H
#define LYRA_JINJA_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "jinja/jinja.h"

/* ------------------------------------------------------------------ arena */

typedef struct jarena {
    struct jchunk *head; /* chunks, newest first */
    size_t used;         /* bytes allocated in all */
    size_t limit;        /* most bytes (0: none) */
    int over;            /* an allocation failed or passed the limit */
} jarena;

void *ja_alloc(jarena *a, size_t n); /* zeroed; NULL on failure (a->over set) */
char *ja_strdup(jarena *a, const char *s, size_t n);
void ja_free(jarena *a);

/* ------------------------------------------------------------------ values */

typedef enum jv_type {
    JV_UNDEF = 0,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST, /* also tuples (tuple = 1) */
    JV_DICT, /* also namespaces (ns = 1) */
    JV_FUNC,
    JV_LOOP,
} jv_type;

typedef struct jnode jnode;
typedef struct jscope jscope;

/* A callable: a global, a bound method, a macro, loop.cycle. */
typedef struct jfunc {
    int kind;            /* JF_* (jinja_builtin.c) or JF_MACRO */
    const char *name;    /* for messages */
    const lyra_jv *self; /* bound object (methods), NULL */
    const jnode *macro;  /* JF_MACRO: its node */
    jscope *closure;     /* JF_MACRO: the scope it was defined in */
} jfunc;

typedef struct jloop {
    const lyra_jv *const *items; /* the items iterated */
    size_t i, n;                 /* current index, count */
    int depth;                   /* 1 for the outermost loop */
} jloop;

struct lyra_jv {
    jv_type t;
    int tuple;  /* JV_LIST: a tuple (printed with parentheses) */
    int ns;     /* JV_DICT: a namespace (attributes may be set) */
    union {
        int b;
        int64_t i;
        double f;
        struct {
            const char *p; /* UTF-8, NUL-terminated */
            size_t n;      /* bytes */
        } s;
        struct {
            const lyra_jv **v; /* JV_LIST: items; JV_DICT: values */
            const lyra_jv **k; /* JV_DICT: keys */
            size_t n, cap;
        } c;
        jfunc *fn;
        jloop *loop;
        const char *undef; /* JV_UNDEF: what is undefined, for messages (may be NULL) */
    } u;
};

extern const lyra_jv jv_undef_c, jv_none_c, jv_true_c, jv_false_c;
#define JV_UNDEFINED (&jv_undef_c)
#define JV_NONEV (&jv_none_c)
#define JV_TRUE (&jv_true_c)
#define JV_FALSE (&jv_false_c)
#define JV_BOOLV(x) ((x) ? JV_TRUE : JV_FALSE)

/* ------------------------------------------------------------------ text */

/* A growable byte string (malloc'd). */
typedef struct jbuf {
    char *p;
    size_t n, cap;
    size_t limit; /* most bytes (0: none) */
    int fail;     /* 1: out of memory, 2: over the limit */
} jbuf;

void jb_add(jbuf *b, const char *s, size_t n);
void jb_puts(jbuf *b, const char *s);
void jb_char(jbuf *b, char c);
void jb_utf8(jbuf *b, uint32_t cp);

/* UTF-8 decoding of s[0..n) at *i (advanced); an invalid byte counts as one
 * code point 0xFFFD. */
uint32_t ju_next(const char *s, size_t n, size_t *i);
size_t ju_count(const char *s, size_t n); /* code points */
int ju_space(uint32_t c);                 /* Python's str.isspace */
uint32_t ju_upper(uint32_t c);            /* ASCII, Latin-1, Greek, Cyrillic */
uint32_t ju_lower(uint32_t c);
int ju_alpha(uint32_t c); /* a cased letter (ju_upper or ju_lower changes it) */

/* ------------------------------------------------------------------ render state */

typedef struct jstate {
    jarena *a;               /* the render's arena (vars') */
    const lyra_jinja *t;     /* the template */
    const lyra_jinja_limits *lim;
    int64_t steps;           /* loop iterations and calls so far */
    int depth;               /* macro call nesting */
    int edepth;              /* evaluation nesting */
    lyra_error *err;
    int failed;              /* an error is in err */
    int line;                /* line of the node being evaluated */
} jstate;

/* Fail the render: "NAME:LINE: fmt". Returns NULL (for expressions). */
const lyra_jv *jfail(jstate *st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
const lyra_jv *joom(jstate *st); /* the arena's failure: memory limit or OOM */

/* Value constructors in the render's arena (NULL after jfail/joom). */
const lyra_jv *jv_mkstr(jstate *st, const char *s, size_t n);    /* copies */
const lyra_jv *jv_mkstr_own(jstate *st, jbuf *b);                  /* b's text, b freed */
const lyra_jv *jv_mkint(jstate *st, int64_t i);
const lyra_jv *jv_mkfloat(jstate *st, double f);
lyra_jv *jv_mklist(jstate *st, size_t cap);
lyra_jv *jv_mkdict(jstate *st);
int jv_append(jarena *a, lyra_jv *list, const lyra_jv *item);      /* 0 or -1 */
int jv_dset(jarena *a, lyra_jv *dict, const lyra_jv *key, const lyra_jv *val);
const lyra_jv *jv_dget(const lyra_jv *dict, const lyra_jv *key);  /* NULL: absent */
const lyra_jv *jv_dget_s(const lyra_jv *dict, const char *key);

int jv_truthy(const lyra_jv *v);
int jv_is_int(const lyra_jv *v); /* JV_INT or JV_BOOL */
/* Python's ==; < (-2: not comparable). depth guards nesting. */
int jv_eq(const lyra_jv *a, const lyra_jv *b, int depth);
int jv_cmp(const lyra_jv *a, const lyra_jv *b, int depth);
/* str(v) and repr(v) appended to b; -1 when nested too deep. */
int jv_str(jbuf *b, const lyra_jv *v, int depth);
int jv_repr(jbuf *b, const lyra_jv *v, int depth);
/* json.dumps(v, ensure_ascii=False, indent, separators, sort_keys): 0, -1 nested
 * too deep, -2 not serializable (*bad: that value). indent < 0: none;
 * item_sep/key_sep NULL: the defaults. */
int jv_json(jbuf *b, const lyra_jv *v, int indent, const char *item_sep, const char *key_sep,
            int sort_keys, int level, const lyra_jv **bad);
const char *jv_type_name(const lyra_jv *v); /* Python's type name: "str", "dict", ... */
/* Python's float repr. */
void jv_float_repr(jbuf *b, double f);

/* A string value's text ("" for others). */
#define JS(v) ((v)->u.s.p)
#define JN(v) ((v)->u.s.n)

/* ------------------------------------------------------------------ syntax tree */

typedef enum jnode_kind {
    /* statements */
    JN_TEXT = 1, /* s */
    JN_OUT,      /* a */
    JN_IF,       /* a = cond, body, orelse */
    JN_FOR,      /* targets (names), a = iter, b = filter cond, body, orelse */
    JN_SET,      /* targets, a = value (or body: block set); attr: ns attribute */
    JN_MACRO,    /* s = name, params (names) + defaults (exprs), body */
    JN_BREAK,
    JN_CONTINUE,
    JN_WITH,     /* targets + values (exprs), body */
    JN_BODY,     /* body only (generation) */
    /* expressions */
    JN_LIT,      /* v */
    JN_NAME,     /* s */
    JN_ATTR,     /* a . s */
    JN_ITEM,     /* a [ b ] */
    JN_SLICE,    /* a [ b : c : d ] (any may be NULL) */
    JN_CALL,     /* a ( args, kwargs ) */
    JN_FILTER,   /* a | s ( args, kwargs ) */
    JN_TEST,     /* a is [not] s ( args ) ; op = negated */
    JN_BIN,      /* a op b */
    JN_CMP,      /* args[0] ops[i] args[i+1] ... (a chain) */
    JN_NOT,      /* not a */
    JN_NEG,      /* - a */
    JN_POS,      /* + a */
    JN_AND,
    JN_OR,
    JN_COND,     /* b if a else c (c NULL: undefined) */
    JN_LIST,     /* args */
    JN_TUPLE,    /* args */
    JN_DICT,     /* args = keys, kwargs = values */
} jnode_kind;

/* Binary / comparison operators. */
enum { JO_ADD = 1, JO_SUB, JO_MUL, JO_DIV, JO_FDIV, JO_MOD, JO_POW, JO_CAT,
       JO_EQ, JO_NE, JO_LT, JO_LE, JO_GT, JO_GE, JO_IN, JO_NOTIN };

typedef struct jlist {
    jnode **v;
    size_t n, cap;
} jlist;

struct jnode {
    jnode_kind kind;
    int line;
    int op;              /* JN_BIN operator; JN_TEST negated; JN_FOR recursive */
    const char *s;       /* name, text, attribute */
    size_t sn;           /* its length (JN_TEXT) */
    const char *attr;    /* JN_SET: namespace attribute (targets[0] the namespace) */
    jnode *a, *b, *c, *d;
    const lyra_jv *v;    /* JN_LIT */
    jlist args;          /* arguments, list items, dict keys, params' defaults */
    jlist kwargs;        /* keyword argument values, dict values */
    const char **kwnames; /* [kwargs.n] */
    const char **targets; /* JN_FOR, JN_SET, JN_WITH, JN_MACRO params */
    size_t n_targets;
    int *ops;            /* JN_CMP: [args.n - 1] */
    jlist body, orelse;
    int fid;             /* JN_FILTER / JN_TEST: the builtin's index */
};

struct lyra_jinja {
    jarena a;        /* nodes, literals, names */
    jlist body;      /* the template */
    char name[256];  /* WHERE of messages */
};

/* ------------------------------------------------------------------ builtins */

/* Filters and tests by name: index, or -1. */
int jb_filter_id(const char *name);
int jb_test_id(const char *name);
/* Apply filter / test fid to v with the arguments. */
const lyra_jv *jb_filter(jstate *st, int fid, const lyra_jv *v, const lyra_jv *const *args, size_t n,
                         const char *const *kwn, const lyra_jv *const *kwv, size_t nkw);
int jb_test(jstate *st, int fid, const lyra_jv *v, const lyra_jv *const *args, size_t n); /* -1: error */
/* obj.name: a value, a bound method, or undefined. */
const lyra_jv *jb_getattr(jstate *st, const lyra_jv *obj, const char *name);
/* A global function by name (range, namespace, ...), NULL if none. */
const lyra_jv *jb_global(jstate *st, const char *name);
/* Call a builtin function (not a macro). */
const lyra_jv *jb_call(jstate *st, const jfunc *f, const lyra_jv *const *args, size_t n,
                       const char *const *kwn, const lyra_jv *const *kwv, size_t nkw);

#endif
