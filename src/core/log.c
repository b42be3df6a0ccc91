/* log.c: the message sink. The sink is process-wide by nature (like stderr);
 * the front end sets it, normally before any model is opened. One mutex
 * guards the settings and the emission: lines from several threads never
 * interleave, and once lyra_log_set returns the old sink is not called
 * again. The level is also kept atomically, so that a dropped message costs
 * no lock. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

static struct {
    pthread_mutex_t mu; /* guards fn, user and emission */
    lyra_log_fn fn;
    void *user;
    int max;            /* lyra_log_level; read atomically */
} g_log = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, LYRA_LOG_WARN};

void lyra_log_set(lyra_log_fn fn, lyra_log_level max_level, void *user) {
    pthread_mutex_lock(&g_log.mu);
    g_log.fn = fn;
    g_log.user = user;
    __atomic_store_n(&g_log.max, (int)max_level, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&g_log.mu);
}

int lyra_log_enabled(lyra_log_level level) {
    return (int)level <= __atomic_load_n(&g_log.max, __ATOMIC_RELAXED);
}

void lyra_log(lyra_log_level level, const char *fmt, ...) {
    if (!lyra_log_enabled(level)) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&g_log.mu);
    if ((int)level <= __atomic_load_n(&g_log.max, __ATOMIC_RELAXED)) { /* set meanwhile? */
        if (g_log.fn) {
            g_log.fn(level, line, g_log.user);
        } else {
            fputs(line, stderr);
            fputc('\n', stderr);
        }
    }
    pthread_mutex_unlock(&g_log.mu);
}
