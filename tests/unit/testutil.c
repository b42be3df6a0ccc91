/* testutil.c: see testutil.h. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int test_failures = 0, test_checks = 0;

/* A skip after a failed check would hide the failure: fail instead. */
void test_skip(const char *reason) {
    if (test_failures) {
        fprintf(stderr, "FAILED: %d checks failed before the test was skipped (%s)\n",
                test_failures, reason);
        exit(1);
    }
    printf("SKIPPED: %s\n", reason);
    exit(77);
}

/* $LYRA_SHARED_DIR at run time, else the configured default that ctest passes
 * as $LYRA_SHARED_DIR_DEFAULT, else ../shared. */
const char *test_shared_dir(void) {
    const char *dir = getenv("LYRA_SHARED_DIR");
    if (!dir || !*dir) dir = getenv("LYRA_SHARED_DIR_DEFAULT");
    if (!dir || !*dir) dir = "../shared";
    return dir;
}

const char *test_shared_path(const char *rel) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", test_shared_dir(), rel);
    if (access(buf, R_OK) != 0) {
        const char *req = getenv("LYRA_REQUIRE_SHARED");
        if (req && strcmp(req, "1") == 0) {
            fprintf(stderr, "FAILED: required test data %s is missing (LYRA_REQUIRE_SHARED=1)\n", buf);
            exit(1);
        }
        char why[4200];
        snprintf(why, sizeof why, "test data %s not found (set LYRA_SHARED_DIR)", buf);
        test_skip(why);
    }
    return buf;
}

int test_done(void) {
    printf("%d passed, %d failed\n", test_checks - test_failures, test_failures);
    return test_failures ? 1 : 0;
}

char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    if (b) { b[n] = 0; if (len) *len = (size_t)n; }
    return b;
}

const char *test_tmp_dir(void) {
    static char buf[4096];
    const char *base = getenv("LYRA_TEST_TMP");
    if (!base || !*base) base = "/tmp";
    mkdir(base, 0755);
    snprintf(buf, sizeof buf, "%s/t%d", base, (int)getpid());
    mkdir(buf, 0755);
    return buf;
}
