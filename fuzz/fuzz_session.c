/* fuzz_session.c: libFuzzer target for the session file reader
 * (src/gen/session.h). The first byte chooses whether the checksums are
 * checked (even: yes; odd: skipped, so that mutations reach the structure
 * behind them); the rest is the file. Checked beyond "no crash / no
 * sanitizer report": a failure is LYRA_ERR_INPUT with one line starting with
 * the file's name; an accepted file's sections lie inside the input, its
 * tokens inside its vocabulary, and its conversation decodes or fails the
 * same way. The conversation decoder also gets the raw bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen/session.h"

static void fz_fail(const char *what, size_t n) {
    fprintf(stderr, "fuzz_session: %s on input of %zu bytes\n", what, n);
    abort();
}

static void check_err(int rc, const lyra_error *err, size_t n) {
    if (rc != LYRA_ERR_INPUT && rc != LYRA_ERR_OOM) fz_fail("a failure that is not LYRA_ERR_INPUT", n);
    if (rc == LYRA_ERR_INPUT && (strncmp(err->msg, "f.lyrasession: ", 15) || strchr(err->msg, '\n')))
        fz_fail("an error message not naming the file on one line", n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int check = !(data[0] & 1);
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    /* a copy of exactly n bytes: reads past it are caught */
    uint8_t *b = malloc(n ? n : 1);
    if (!b) return 0;
    memcpy(b, d, n);
    lyra_error err;
    lyra_session_view v;
    int rc = lyra_session_parse_ex(b, n, "f.lyrasession", check, &v, &err);
    if (rc) check_err(rc, &err, n);
    else {
        const uint8_t *end = b + n;
        if (v.tokens < b || v.tokens + 4 * (size_t)v.n_tokens > end || v.app + v.app_bytes > end || v.kv > end)
            fz_fail("a section outside the input", n);
        for (int32_t i = 0; i < v.n_tokens; i++) {
            int32_t t = lyra_session_token(&v, i);
            if (t < 0 || t >= v.n_vocab) fz_fail("a token outside the vocabulary", n);
        }
        lyra_session_conv cv;
        int r2 = lyra_session_conv_decode(v.app, (size_t)v.app_bytes, "f.lyrasession", &cv, &err);
        if (r2) check_err(r2, &err, n);
        else lyra_session_conv_free(&cv);
    }
    lyra_session_conv cv;
    rc = lyra_session_conv_decode(b, n, "f.lyrasession", &cv, &err);
    if (rc) check_err(rc, &err, n);
    else {
        for (int i = 0; i < cv.n_turns; i++)
            if (!cv.user[i] || (i + 1 < cv.n_turns && !cv.reply[i])) fz_fail("a missing message accepted", n);
        lyra_session_conv_free(&cv);
    }
    free(b);
    return 0;
}
