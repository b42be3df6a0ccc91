/* textstream.c: stop strings held back and white space trimmed on
 * generated text (textstream.h). */
#include "gen/textstream.h"

#include <stdlib.h>
#include <string.h>

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Append s[k] to t->p, keeping it NUL-terminated. */
static int ts_add(lyra_textstream *t, const char *s, size_t k, lyra_error *err) {
    if (t->n + k + 1 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        while (cap < t->n + k + 1) cap *= 2;
        char *q = realloc(t->p, cap);
        if (!q) return lyra_err(err, LYRA_ERR_OOM, t->where, "out of memory");
        t->p = q;
        t->cap = cap;
    }
    if (k) memcpy(t->p + t->n, s, k);
    t->n += k;
    t->p[t->n] = '\0';
    return LYRA_OK;
}

int lyra_textstream_init(lyra_textstream *t, const char *const *stops, int n_stops, int trim,
                         lyra_token_cb cb, void *user, const char *where, lyra_error *err) {
    memset(t, 0, sizeof *t);
    t->stops = stops;
    t->n_stops = n_stops;
    t->trim = trim;
    t->cb = cb;
    t->user = user;
    t->where = where;
    return ts_add(t, "", 0, err);
}

/* Pass t->p[shown, limit) to the callback (trim: without the text's
 * leading white space, holding back white space at the end). */
static void ts_show(lyra_textstream *t, size_t limit) {
    size_t i = t->shown, end = limit;
    if (t->trim) {
        if (!t->started) {
            while (i < limit && is_space(t->p[i])) i++;
            t->shown = i;
            if (i == limit) return;
            t->started = 1;
        }
        while (end > i && is_space(t->p[end - 1])) end--;
    }
    if (end > i && t->cb && !t->cancelled && t->cb(t->p + i, end - i, t->user)) t->cancelled = 1;
    if (end > t->shown) t->shown = end;
}

/* Where the first stop string starts in t (from byte from on), or -1;
 * *hold: the longest tail of t that begins a stop string. */
static long ts_find_stop(const lyra_textstream *t, size_t from, size_t *hold) {
    long best = -1;
    *hold = 0;
    for (int i = 0; i < t->n_stops; i++) {
        size_t k = strlen(t->stops[i]);
        if (k == 0) continue; /* never matches (callers reject empty stop strings) */
        for (size_t j = from; j + k <= t->n; j++)
            if (!memcmp(t->p + j, t->stops[i], k)) {
                if (best < 0 || (long)j < best) best = (long)j;
                break;
            }
        for (size_t h = k - 1; h > *hold; h--)
            if (h <= t->n && !memcmp(t->p + t->n - h, t->stops[i], h)) {
                *hold = h;
                break;
            }
    }
    return best;
}

int lyra_textstream_feed(lyra_textstream *t, const char *buf, size_t k, lyra_error *err) {
    if (t->stopped) return LYRA_OK;
    size_t longest = 0; /* a stop string completed now starts at most this far back */
    for (int i = 0; i < t->n_stops; i++)
        if (strlen(t->stops[i]) > longest) longest = strlen(t->stops[i]);
    size_t from = t->n > longest ? t->n - longest : 0;
    int rc = ts_add(t, buf, k, err);
    if (rc) return rc;
    size_t hold;
    long at = ts_find_stop(t, from, &hold);
    if (at >= 0) {
        t->n = (size_t)at;
        t->p[t->n] = '\0';
        t->stopped = 1;
        hold = 0;
    }
    ts_show(t, t->n - hold);
    return LYRA_OK;
}

void lyra_textstream_finish(lyra_textstream *t) { ts_show(t, t->n); }

char *lyra_textstream_take(lyra_textstream *t) {
    char *p = t->p;
    t->p = NULL;
    t->n = t->cap = 0;
    return p;
}

void lyra_textstream_free(lyra_textstream *t) {
    free(t->p);
    t->p = NULL;
    t->n = t->cap = 0;
}
