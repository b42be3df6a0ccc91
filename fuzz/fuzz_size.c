/* fuzz_size.c: libFuzzer target for the size grammar (core/size.h) and the
 * lists built on it (LYRA_SIM_GPUS, --max-memory / --reserve specs, and
 * config/devspec.h's tensor_split and gpu_layers).
 * Checked beyond "no crash / no sanitizer report":
 *   - every failure is LYRA_ERR_INPUT with a one-line message;
 *   - an accepted size agrees with an independent oracle (128-bit integer
 *     arithmetic) whenever the number is short enough for it;
 *   - the value re-parses from its byte form ("%lluB") and from the input
 *     surrounded by spaces;
 *   - the formatter's output is short and starts with a digit. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/devspec.h"
#include "core/size.h"
#include "device/device.h"

static void fz_fail(const char *what, const uint8_t *d, size_t n) {
    fprintf(stderr, "fuzz_size: %s on input of %zu bytes: \"%.*s\"\n", what, n, (int)n,
            (const char *)d);
    abort();
}

static void check_err(int rc, const lyra_error *err, const uint8_t *d, size_t n) {
    if (rc != LYRA_ERR_INPUT) fz_fail("error code is not LYRA_ERR_INPUT", d, n);
    if (err->code != rc || !err->msg[0] || strchr(err->msg, '\n')) fz_fail("bad message", d, n);
}

/* The oracle: strict grammar digits[.digits] spaces unit, computed with
 * unsigned __int128; returns 0 when it cannot judge (too long, other form). */
static int oracle(const char *s, size_t n, uint64_t *out, int *ok) {
    size_t a = 0, b = n;
    while (a < b && (s[a] == ' ' || s[a] == '\t')) a++;
    while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t')) b--;
    unsigned __int128 ip = 0, fr = 0, den = 1;
    size_t i = a, nd = 0, nf = 0;
    while (i < b && s[i] >= '0' && s[i] <= '9') { ip = ip * 10 + (unsigned)(s[i++] - '0'); nd++; }
    if (!nd || nd > 19) return 0;
    if (i < b && s[i] == '.') {
        i++;
        while (i < b && s[i] >= '0' && s[i] <= '9') {
            fr = fr * 10 + (unsigned)(s[i++] - '0');
            den *= 10;
            nf++;
        }
        if (!nf || nf > 19) return 0;
    }
    if (nd + nf > 25) return 0; /* (ip * den + fr) * 2^40 must fit in 128 bits */
    while (i < b && (s[i] == ' ' || s[i] == '\t')) i++;
    char u[4] = {0};
    size_t ul = b - i;
    if (ul < 1 || ul > 3) return 0;
    memcpy(u, s + i, ul);
    uint64_t mult = 0;
    if (ul == 1 && u[0] == 'B') mult = 1;
    const char *pre = "KMGT";
    for (int k = 0; k < 4 && ul > 1; k++) {
        char lo = (char)(pre[k] + 32);
        if (u[0] != pre[k] && u[0] != lo) continue;
        if (ul == 2 && u[1] == 'B') { mult = 1; for (int e = 0; e <= k; e++) mult *= 1000; }
        if (ul == 3 && (u[1] == 'i' || u[1] == 'I') && u[2] == 'B') mult = (uint64_t)1 << (10 * (k + 1));
    }
    if (!mult) return 0;
    unsigned __int128 v = (ip * den + fr) * mult / den;
    *ok = v <= UINT64_MAX;
    *out = (uint64_t)v;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    const char *s = (const char *)data;
    lyra_error err;
    uint64_t v = 0;
    int rc = lyra_size_parse_n(s, size, "fuzz", &v, &err);
    uint64_t want;
    int ok;
    if (oracle(s, size, &want, &ok)) {
        if (ok != (rc == LYRA_OK)) fz_fail("accept/reject differs from the oracle", data, size);
        if (ok && v != want) fz_fail("value differs from the oracle", data, size);
    }
    char buf[64];
    if (rc) {
        check_err(rc, &err, data, size);
        if (v != 0) fz_fail("value set on error", data, size);
    } else {
        snprintf(buf, sizeof buf, "%lluB", (unsigned long long)v);
        uint64_t v2;
        if (lyra_size_parse(buf, "fuzz", &v2, &err) || v2 != v) fz_fail("byte form", data, size);
        char *padded = malloc(size + 3);
        padded[0] = ' ';
        memcpy(padded + 1, data, size);
        padded[size + 1] = '\t';
        if (lyra_size_parse_n(padded, size + 2, "fuzz", &v2, &err) || v2 != v)
            fz_fail("surrounding blanks", data, size);
        free(padded);
        size_t k = lyra_size_format(v, buf, sizeof buf);
        if (k >= 16 || buf[0] < '0' || buf[0] > '9') fz_fail("format", data, size);
    }
    /* the lists: NUL-terminated copies */
    char *z = malloc(size + 1);
    memcpy(z, data, size);
    z[size] = '\0';
    lyra_sim_spec specs[LYRA_SIM_MAX_GPUS];
    int n = -1;
    rc = lyra_sim_parse(z, specs, LYRA_SIM_MAX_GPUS, &n, &err);
    if (rc) check_err(rc, &err, data, size);
    else if (n < 0 || n > LYRA_SIM_MAX_GPUS) fz_fail("sim count", data, size);
    lyra_device_bytes ms[LYRA_DEVSPEC_MAX_BYTES];
    int n_ms = -1;
    rc = lyra_devspec_bytes_parse(z, "fuzz", ms, &n_ms, &err);
    if (rc) check_err(rc, &err, data, size);
    else if (n_ms < 0 || n_ms > LYRA_DEVSPEC_MAX_BYTES) fz_fail("memspec count", data, size);
    float split[LYRA_MAX_TENSOR_SPLIT];
    int n_split = 0;
    rc = lyra_devspec_split_parse(z, "fuzz", split, &n_split, &err);
    if (rc) check_err(rc, &err, data, size);
    else if (n_split < 1 || n_split > LYRA_MAX_TENSOR_SPLIT) fz_fail("split count", data, size);
    int32_t g;
    rc = lyra_devspec_gpu_layers_parse(z, "fuzz", &g, &err);
    if (rc) check_err(rc, &err, data, size);
    else if (g < 0 && g != LYRA_GPU_LAYERS_ALL) fz_fail("negative gpu_layers accepted", data, size);
    free(z);
    return 0;
}
