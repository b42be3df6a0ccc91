/* err.h: lyra's error convention, shared by every module.
 *
 * Every fallible function returns an int status (LYRA_OK = 0, else one of the
 * exit codes below) and fills a caller-provided lyra_error with ONE line
 * "WHERE: WHAT". WHERE is a file (with :line:col or @offset where it helps), a
 * --flag, an environment variable or a JSON path. Nothing is printed deep
 * inside: the CLI prints "lyra: error: <msg>" and exits with the code. */
#ifndef LYRA_ERR_H
#define LYRA_ERR_H

#include "lyra.h" /* lyra_error, LYRA_OK, LYRA_ERR_* */

#if defined(__GNUC__)
#define LYRA_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LYRA_PRINTF(a, b)
#endif

/* Fill err (may be NULL) with "where: fmt..." and return code. where may be
 * NULL or "" (then the message is just fmt...). Returns code so callers can
 * write `return lyra_err(err, LYRA_ERR_INPUT, path, "bad magic");`. */
int lyra_err(lyra_error *err, int code, const char *where, const char *fmt, ...)
    LYRA_PRINTF(4, 5);

/* Clear err to LYRA_OK / "". */
void lyra_err_clear(lyra_error *err);

#endif
