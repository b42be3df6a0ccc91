/* textstream.h: generated text on its way out, shared by `lyra generate`,
 * `lyra chat` and the pipeline API. Decoded bytes are appended as they come;
 * the part that is decided goes to a callback. Bytes that could be the start
 * of a stop string are held back until decided; a complete stop string ends
 * the text before it (it and what follows are never shown). In trim mode
 * (chat replies) white space at either end of the text is not shown: the
 * leading white space is skipped, trailing white space is held back until
 * other text follows. */
#ifndef LYRA_TEXTSTREAM_H
#define LYRA_TEXTSTREAM_H

#include <stddef.h>

#include "core/err.h"
#include "lyra.h"

typedef struct lyra_textstream {
    char *p;                  /* [n + 1] the text so far, NUL-terminated (owned) */
    size_t n;                 /* its length (ends before a stop string once one is seen) */
    size_t cap;               /* bytes allocated at p */
    size_t shown;             /* bytes [0, shown) were passed to cb (or skipped as white space) */
    int trim;                 /* 1: no white space at either end of the text is shown */
    int started;              /* trim: a non-space byte was shown */
    const char *const *stops; /* [n_stops] strings that end the text (not part of it; not owned) */
    int n_stops;              /* their count */
    lyra_token_cb cb;         /* receiver of the shown text, may be NULL */
    void *user;               /* cb's argument */
    const char *where;        /* WHERE of the out-of-memory message ("chat", ...) */
    int stopped;              /* a stop string appeared */
    int cancelled;            /* cb returned non-zero: nothing more is passed to it */
} lyra_textstream;

/* Start an empty text (allocates). stops are borrowed and must outlive t. */
int lyra_textstream_init(lyra_textstream *t, const char *const *stops, int n_stops, int trim,
                         lyra_token_cb cb, void *user, const char *where, lyra_error *err);

/* Append buf[k] (decoded bytes) and pass on what is decided; sets
 * t->stopped when a stop string completes (then nothing more is added). */
int lyra_textstream_feed(lyra_textstream *t, const char *buf, size_t k, lyra_error *err);

/* The end of the text: pass on what was held back (trim: but trailing white
 * space). */
void lyra_textstream_finish(lyra_textstream *t);

/* The text (malloc'd, the caller frees it); t no longer owns it. */
char *lyra_textstream_take(lyra_textstream *t);

void lyra_textstream_free(lyra_textstream *t);

#endif
