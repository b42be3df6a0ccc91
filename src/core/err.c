/* err.c: filling lyra_error values (see err.h). */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int lyra_err(lyra_error *err, int code, const char *where, const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    err->kind = LYRA_KIND_OTHER;
    size_t off = 0;
    if (where && *where) {
        int k = snprintf(err->msg, sizeof err->msg, "%s: ", where);
        off = k < 0 ? 0 : (size_t)k;
        if (off >= sizeof err->msg) off = sizeof err->msg - 1;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg + off, sizeof err->msg - off, fmt, ap);
    va_end(ap);
    /* one line: fold any newline */
    for (char *p = err->msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return code;
}

void lyra_err_clear(lyra_error *err) {
    if (!err) return;
    err->code = LYRA_OK;
    err->msg[0] = '\0';
    err->kind = LYRA_KIND_OTHER;
}
