/* log.h: the library's one message sink (see lyra_log_set in lyra.h). Results
 * never go here; only notes, warnings and debug lines, on stderr by default. */
#ifndef LYRA_LOG_H
#define LYRA_LOG_H

#include "err.h"

void lyra_log(lyra_log_level level, const char *fmt, ...) LYRA_PRINTF(2, 3);
int lyra_log_enabled(lyra_log_level level);

#define LYRA_WARN(...) lyra_log(LYRA_LOG_WARN, __VA_ARGS__)
#define LYRA_INFO(...) lyra_log(LYRA_LOG_INFO, __VA_ARGS__)
#define LYRA_DBG(...) lyra_log(LYRA_LOG_DEBUG, __VA_ARGS__)

#endif
