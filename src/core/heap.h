/* heap.h: a growable binary heap of fixed-size elements ordered by the
 * caller's "before" function (the element popped first is the one before all
 * others); the tokenizers' merge queues. Like qsort, every call takes the
 * element size and the order; the functions are inline so that a caller's
 * constant size and order compile to a heap of that type. Elements that are
 * not ordered either way pop in an unspecified order: callers whose results
 * depend on it make "before" a strict total order. */
#ifndef LYRA_HEAP_H
#define LYRA_HEAP_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

/* 1 when a must pop before b. */
typedef int (*lyra_heap_before)(const void *a, const void *b);

typedef struct lyra_heap {
    unsigned char *v; /* [cap] heap-ordered elements */
    size_t n;         /* used */
    size_t cap;       /* allocated */
} lyra_heap;          /* {0}: empty */

/* Add a copy of *e; LYRA_OK or LYRA_ERR_OOM (the heap unchanged). */
static inline int lyra_heap_push(lyra_heap *h, const void *e, size_t size, lyra_heap_before before) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        unsigned char *v = realloc(h->v, cap * size);
        if (!v) return LYRA_ERR_OOM;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!before(e, h->v + up * size)) break;
        memcpy(h->v + i * size, h->v + up * size, size);
        i = up;
    }
    memcpy(h->v + i * size, e, size);
    return LYRA_OK;
}

/* Remove the first element into *out; h->n must be > 0. */
static inline void lyra_heap_pop(lyra_heap *h, void *out, size_t size, lyra_heap_before before) {
    memcpy(out, h->v, size);
    const unsigned char *last = h->v + --h->n * size; /* stays put: only slots < n are written */
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && before(h->v + (c + 1) * size, h->v + c * size)) c++;
        if (!before(h->v + c * size, last)) break;
        memcpy(h->v + i * size, h->v + c * size, size);
        i = c;
    }
    if (h->n) memcpy(h->v + i * size, last, size);
}

static inline void lyra_heap_free(lyra_heap *h) {
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}

#endif
