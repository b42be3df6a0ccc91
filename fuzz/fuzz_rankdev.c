/* fuzz_rankdev.c: libFuzzer target for cluster descriptions (`lyra plan
 * --rank-devices FILE`, config/rankdev.h): arbitrary bytes parsed. Checked
 * beyond "no crash / no sanitizer report":
 *   - a failure is LYRA_ERR_INPUT (or OOM) with one printable line starting
 *     with the file's name, and leaves nothing allocated;
 *   - an accepted file is in range: 1..4096 ranks, 0..16 GPUs each, every
 *     memory > 0, free <= memory, a budget <= free. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/rankdev.h"

static void fz_fail(const char *what, const uint8_t *d, size_t n) {
    fprintf(stderr, "fuzz_rankdev: %s on input of %zu bytes: \"%.*s\"\n", what, n, (int)n, (const char *)d);
    abort();
}

static void check_mem(const lyra_rankdev_mem *m, const uint8_t *d, size_t n) {
    if (!m->memory || m->free > m->memory || (m->has_budget && m->budget > m->free)) fz_fail("memory", d, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 65536) return 0;
    lyra_rankdev rd;
    lyra_error err;
    lyra_err_clear(&err);
    int rc = lyra_rankdev_parse((const char *)data, size, "fuzz.json", &rd, &err);
    if (rc) {
        if (rc != LYRA_ERR_INPUT && rc != LYRA_ERR_OOM) fz_fail("error code", data, size);
        if (err.code != rc || strncmp(err.msg, "fuzz.json", 9)) fz_fail("bad message", data, size);
        for (const char *c = err.msg; *c; c++)
            if ((unsigned char)*c < 0x20) fz_fail("message not one printable line", data, size);
        if (rd.rank || rd.n_ranks) fz_fail("a failed parse left ranks", data, size);
        return 0;
    }
    if (rd.n_ranks < 1 || rd.n_ranks > LYRA_RANKDEV_MAX_RANKS || !rd.rank) fz_fail("ranks", data, size);
    for (int r = 0; r < rd.n_ranks; r++) {
        if (rd.rank[r].n_gpus < 0 || rd.rank[r].n_gpus > LYRA_RANKDEV_MAX_GPUS) fz_fail("gpus", data, size);
        for (int g = 0; g < rd.rank[r].n_gpus; g++) check_mem(&rd.rank[r].gpu[g], data, size);
        check_mem(&rd.rank[r].cpu, data, size);
    }
    lyra_rankdev_free(&rd);
    return 0;
}
