/* testutil.h: tiny test helpers. CHECK records a failure and continues;
 * test_done() prints "N passed, N failed" and returns the exit code.
 * test_shared_path() finds test data in $LYRA_SHARED_DIR (read at run time),
 * else $LYRA_SHARED_DIR_DEFAULT (set by ctest: ../shared beside the checkout),
 * and skips the test (exit 77) when it is absent, or fails when
 * LYRA_REQUIRE_SHARED=1. A skip after a failed CHECK exits 1. */
#ifndef LYRA_TESTUTIL_H
#define LYRA_TESTUTIL_H

#include <stdio.h>

extern int test_failures, test_checks;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        test_checks++;                                                       \
        if (!(cond)) {                                                       \
            test_failures++;                                                 \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
        }                                                                    \
    } while (0)

/* Path of a file under the shared dir (static buffer); exits 77/1 if absent. */
const char *test_shared_path(const char *rel);
/* The test data directory (see above). */
const char *test_shared_dir(void);
/* Skip the whole test with a reason (exit 77; 1 if a CHECK failed). */
void test_skip(const char *reason);
int test_done(void);
/* Read a whole file (malloc'd, NUL-terminated); NULL on failure. */
char *test_read_file(const char *path, size_t *len);
/* A scratch directory for this test (created). */
const char *test_tmp_dir(void);

#endif
