/* jinja.h: the subset of Jinja2 that chat templates use, rendered as
 * Hugging Face transformers renders them (jinja2's sandboxed environment
 * with trim_blocks, lstrip_blocks and the loopcontrols extension; the
 * tojson filter with ensure_ascii=False; the globals raise_exception and
 * strftime_now; no autoescape).
 *
 * Supported: text, {{ }}, {# #}, whitespace control ({%- -%} {{- -}} {%+),
 * statements if/elif/else, for (with else, a filter condition, loop.index,
 * index0, revindex, revindex0, first, last, length, previtem, nextitem,
 * depth, cycle), break/continue, set (names, tuples, namespace attributes,
 * block set), macro (with defaults and keyword arguments), with, generation
 * (rendered as its body); expressions with literals (strings, numbers,
 * true/false/none, lists, tuples, dicts), attributes, subscripts, slices,
 * calls, filters, tests, arithmetic, ~, comparisons, and/or/not, in/not in,
 * inline if/else; the filters, tests and Python string/dict methods listed in
 * docs/chat.md. Anything else is an error naming the template's line:
 * unknown statements, filters and tests when parsing, the rest when
 * rendering. Values: undefined, none, booleans, 64-bit integers (overflow is
 * an error), doubles, UTF-8 strings (lengths, indexes and slices count code
 * points), lists, tuples and insertion-ordered dicts.
 *
 * Limits against hostile templates (lyra_jinja_limits): output size (also
 * the size of any one string), memory a render allocates, loop iterations and
 * macro calls, nesting of calls and values; parsing bounds the nesting of
 * expressions and blocks. Each is an error naming the line.
 *
 * A render's values live in a lyra_jinja_vars (one arena, freed at once):
 * the caller builds the variables there (messages, bos_token, ...), renders,
 * and frees it. A template may be rendered any number of times. */
#ifndef LYRA_JINJA_H
#define LYRA_JINJA_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef struct lyra_jinja lyra_jinja;           /* a parsed template */
typedef struct lyra_jinja_vars lyra_jinja_vars; /* a render's variables and values */
typedef struct lyra_jv lyra_jv;                 /* a value (owned by its vars) */

/* Bounds of one render; 0 in a field: its default. */
typedef struct lyra_jinja_limits {
    size_t max_output;  /* bytes of output, and of any one string (16 MiB) */
    size_t max_memory;  /* bytes the render may allocate (256 MiB) */
    int64_t max_steps;  /* loop iterations and macro calls in all (1,000,000) */
    int max_depth;      /* nesting of macro calls (64) */
    int64_t now;        /* strftime_now's time, seconds since the epoch, shown in
                           local time (0: the current time) */
} lyra_jinja_limits;

/* Parse src[0..len) (newlines \r\n and \r read as \n, one trailing newline
 * dropped, as jinja2 does). name is WHERE in messages ("NAME:LINE: what").
 * LYRA_ERR_INPUT for a syntax error or an unsupported construct, naming the
 * line; LYRA_ERR_OOM. */
int lyra_jinja_parse(const char *src, size_t len, const char *name, lyra_jinja **out, lyra_error *err);
void lyra_jinja_free(lyra_jinja *t);

/* An empty set of variables; NULL when out of memory. */
lyra_jinja_vars *lyra_jinja_vars_new(void);
void lyra_jinja_vars_free(lyra_jinja_vars *v);

/* Values made in v (NULL when out of memory; every function taking a value
 * accepts NULL and then fails with LYRA_ERR_OOM, so a chain of calls needs
 * one check). Strings are copied; n == (size_t)-1: strlen(s). */
lyra_jv *lyra_jv_str(lyra_jinja_vars *v, const char *s, size_t n);
lyra_jv *lyra_jv_int(lyra_jinja_vars *v, int64_t i);
lyra_jv *lyra_jv_float(lyra_jinja_vars *v, double f);
lyra_jv *lyra_jv_bool(lyra_jinja_vars *v, int b);
lyra_jv *lyra_jv_none(lyra_jinja_vars *v);
lyra_jv *lyra_jv_list(lyra_jinja_vars *v);
lyra_jv *lyra_jv_dict(lyra_jinja_vars *v);
/* Append item to list. LYRA_OK, LYRA_ERR_OOM. */
int lyra_jv_push(lyra_jinja_vars *v, lyra_jv *list, lyra_jv *item);
/* dict[key] = val (replacing an existing key). LYRA_OK, LYRA_ERR_OOM. */
int lyra_jv_set(lyra_jinja_vars *v, lyra_jv *dict, const char *key, lyra_jv *val);
/* The template variable name = val. LYRA_OK, LYRA_ERR_OOM. */
int lyra_jinja_vars_set(lyra_jinja_vars *v, const char *name, lyra_jv *val);

/* Render t with the variables v (values the template makes are added to v;
 * free v after). lim may be NULL (defaults). *out malloc'd, NUL-terminated,
 * *out_len its length (may be NULL). Errors (LYRA_ERR_INPUT) name the line:
 * raise_exception's message, undefined values used, type errors, limits. */
int lyra_jinja_render(const lyra_jinja *t, lyra_jinja_vars *v, const lyra_jinja_limits *lim, char **out,
                      size_t *out_len, lyra_error *err);

#endif
