/* test_quant_ref.c: lyra's reference dequantizers and quantizers against the
 * PyPI gguf package, bit for bit. Runs tests/reference/quant_ref.py (with
 * $LYRA_PYTHON) into a scratch dir, or reads $LYRA_QUANT_REF_DIR if set.
 * Checks: dequantize of random valid blocks for F16 BF16 (all 65536 bit
 * patterns) Q8_0 Q4_0 Q5_0 Q4_K Q5_K Q6_K == gguf.quants.dequantize bitwise;
 * quantize of F16 BF16 Q8_0 Q4_0 Q5_0 == gguf.quants.quantize bytewise (for F16 a
 * NaN input only has to give a NaN: numpy keeps payload bits, lyra makes it
 * quiet). Skips (77) when the Python has no gguf/numpy. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fp16.h"
#include "quant/quant.h"
#include "testutil.h"

static char dir[4096];

static void *load(const char *type, const char *ext, size_t *len) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.%s", dir, type, ext);
    void *p = test_read_file(path, len);
    if (!p) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(1);
    }
    return p;
}

static void check_dequant(lyra_type t) {
    const char *name = lyra_type_name(t);
    size_t nb, nd;
    uint8_t *blocks = load(name, "blocks", &nb);
    float *want = load(name, "deq", &nd);
    int64_t n = (int64_t)(nb / lyra_type_block_bytes(t)) * lyra_type_block(t);
    CHECK((size_t)n * 4 == nd, "%s: %zu block bytes vs %zu float bytes", name, nb, nd);
    float *got = malloc(nd);
    lyra_dequantize_row(t, blocks, got, n);
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (lyra_bits_from_f32(got[i]) != lyra_bits_from_f32(want[i])) {
            if (first < 0) first = i;
            bad++;
        }
    CHECK(bad == 0, "%s dequantize: %lld of %lld differ from gguf, first at %lld: %.9g (0x%08x) vs %.9g (0x%08x)",
          name, (long long)bad, (long long)n, (long long)first, first >= 0 ? got[first] : 0.0,
          first >= 0 ? lyra_bits_from_f32(got[first]) : 0, first >= 0 ? want[first] : 0.0,
          first >= 0 ? lyra_bits_from_f32(want[first]) : 0);
    printf("dequantize %-5s %8lld values: %lld differ from gguf\n", name, (long long)n, (long long)bad);
    free(blocks);
    free(want);
    free(got);
}

static void check_quant(lyra_type t) {
    const char *name = lyra_type_name(t);
    size_t ns, nq;
    float *src = load(name, "src", &ns);
    uint8_t *want = load(name, "quant", &nq);
    int64_t n = (int64_t)(ns / 4);
    size_t bytes = lyra_row_bytes(t, n);
    CHECK(bytes == nq, "%s: quantized size %zu, gguf %zu", name, bytes, nq);
    uint8_t *got = malloc(bytes);
    lyra_quantize_row(t, src, got, n);
    int64_t bad = 0, first = -1;
    if (t == LYRA_TYPE_F16 || t == LYRA_TYPE_BF16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t g, w;
            memcpy(&g, got + 2 * i, 2);
            memcpy(&w, want + 2 * i, 2);
            int ok = g == w;
            if (!ok && t == LYRA_TYPE_F16 && isnan(src[i])) ok = (g & 0x7c00) == 0x7c00 && (g & 0x3ff);
            if (!ok) {
                if (first < 0) first = i;
                bad++;
            }
        }
    } else {
        for (size_t i = 0; i < bytes; i++)
            if (got[i] != want[i]) {
                if (first < 0) first = (int64_t)i;
                bad++;
            }
    }
    CHECK(bad == 0, "%s quantize: %lld differ from gguf, first at %lld", name, (long long)bad,
          (long long)first);
    printf("quantize   %-5s %8lld values: %lld differ from gguf\n", name, (long long)n, (long long)bad);
    free(src);
    free(want);
    free(got);
}

int main(void) {
    const char *given = getenv("LYRA_QUANT_REF_DIR");
    if (given && *given) {
        snprintf(dir, sizeof dir, "%s", given);
    } else {
        const char *py = getenv("LYRA_PYTHON"), *src = getenv("LYRA_SRC_DIR");
        if (!py || !*py) py = "python3";
        if (!src || !*src) src = ".";
        char cmd[16384];
        snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy, gguf' >/dev/null 2>&1", py);
        if (system(cmd) != 0) test_skip("no Python with numpy and gguf (set LYRA_PYTHON)");
        snprintf(dir, sizeof dir, "%s/qref", test_tmp_dir());
        snprintf(cmd, sizeof cmd, "'%s' '%s/tests/reference/quant_ref.py' '%s' >'%s.log' 2>&1", py, src,
                 dir, dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "quant_ref.py failed, see %s.log\n", dir);
            return 1;
        }
    }
    lyra_type deq[] = {LYRA_TYPE_F16, LYRA_TYPE_BF16, LYRA_TYPE_Q8_0, LYRA_TYPE_Q4_0, LYRA_TYPE_Q5_0,
                       LYRA_TYPE_Q4_K, LYRA_TYPE_Q5_K, LYRA_TYPE_Q6_K};
    for (size_t i = 0; i < sizeof deq / sizeof deq[0]; i++) check_dequant(deq[i]);
    lyra_type q[] = {LYRA_TYPE_F16, LYRA_TYPE_BF16, LYRA_TYPE_Q8_0, LYRA_TYPE_Q4_0, LYRA_TYPE_Q5_0};
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) check_quant(q[i]);
    return test_done();
}
