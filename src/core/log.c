/* log.c: the message sink. The sink is process-wide by nature (like stderr);
 * it is set once by the front end before any model is opened. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

static struct {
    lyra_log_fn fn;
    lyra_log_level max;
    void *user;
} g_log = {NULL, LYRA_LOG_WARN, NULL};

void lyra_log_set(lyra_log_fn fn, lyra_log_level max_level, void *user) {
    g_log.fn = fn;
    g_log.max = max_level;
    g_log.user = user;
}

int lyra_log_enabled(lyra_log_level level) { return level <= g_log.max; }

void lyra_log(lyra_log_level level, const char *fmt, ...) {
    if (level > g_log.max) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (g_log.fn) {
        g_log.fn(level, line, g_log.user);
    } else {
        fputs(line, stderr);
        fputc('\n', stderr);
    }
}
