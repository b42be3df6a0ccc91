/* test_cuda_math.c: the CUDA device's parts that run without a GPU.
 *   - LYRA_CUDA_DEVICES parsing (every build);
 *   - builds without CUDA: no GPU reported, silently;
 *   - CUDA builds on a machine without a GPU (CI): lyra_cuda_devices_new
 *     succeeds with no device and exactly one note per process;
 *   - CUDA builds: the kernels' arithmetic run on the host (cuda.h,
 *     lyra_cuda_host_*: the same host+device functions the kernels call)
 *     against lyra's CPU reference, on random rows of every weight type:
 *     activation quantization byte for byte equal to lyra_quantize_act,
 *     dequantization bit for bit equal to lyra_dequantize_row, and the decode
 *     kernel's dot product (unit by unit in lane order) within 2e-6 of
 *     lyra_vec_dot relative to sum |w_i x_i| (only the float summation order
 *     differs; a layout error is off by O(1)).
 * What needs a GPU (launch indexing, shuffles, cuBLAS) is test_cuda_ops. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "build_info.h"
#include "core/rng.h"
#include "device/cuda.h"
#include "lyra.h"
#include "testutil.h"

static void test_parse(void) {
    int ord[8], n = -1;
    lyra_error err;
    CHECK(lyra_cuda_parse_devices("0,0", 1, ord, 8, &n, &err) == 0 && n == 2 && ord[0] == 0 &&
              ord[1] == 0,
          "0,0: n %d", n);
    CHECK(lyra_cuda_parse_devices("1,0,1", 2, ord, 8, &n, &err) == 0 && n == 3 && ord[0] == 1 &&
              ord[1] == 0 && ord[2] == 1,
          "1,0,1: n %d", n);
    CHECK(lyra_cuda_parse_devices("", 1, ord, 8, &n, &err) == 0 && n == 0, "empty: n %d", n);
    const char *bad[] = {"a", "0,,1", "0,", ",0", "-1", "1", "0 ", "99999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = lyra_cuda_parse_devices(bad[i], 1, ord, 8, &n, &err);
        CHECK(rc == LYRA_ERR_INPUT && !strncmp(err.msg, "LYRA_CUDA_DEVICES: ", 19),
              "'%s': rc %d msg %s", bad[i], rc, err.msg);
    }
    int rc = lyra_cuda_parse_devices("0,0,0", 1, ord, 2, &n, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "at most 2"), "max: rc %d %s", rc, err.msg);
    rc = lyra_cuda_parse_devices("2", 2, ord, 8, &n, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "entry \"2\"") && strstr(err.msg, "0..1"),
          "range: %s", err.msg);
}

/* Notes on the log sink, counted. */
static int n_notes;
static char last_note[512];
static void sink(lyra_log_level level, const char *line, void *user) {
    (void)user;
    if (level <= LYRA_LOG_WARN) {
        n_notes++;
        snprintf(last_note, sizeof last_note, "%s", line);
    }
}

static void test_no_gpu(void) {
    char why[256] = "";
    int cards = lyra_cuda_count(why, sizeof why);
    CHECK(cards >= 0, "count %d", cards);
    CHECK(lyra_cuda_available() == (cards > 0), "available vs count");
    if (cards > 0) {
        printf("note: %d CUDA GPU%s here: the no-GPU checks do not apply\n", cards,
               cards == 1 ? "" : "s");
        return;
    }
    CHECK(why[0] != '\0', "no reason given for 0 GPUs");
    printf("no CUDA GPU here: %s\n", why);
    lyra_log_set(sink, LYRA_LOG_DEBUG, NULL);
    lyra_device *dev[4];
    lyra_error err;
    int n0 = -1;
    setenv("LYRA_CUDA_DEVICES", "", 1); /* hidden on purpose: silently none */
    CHECK(lyra_cuda_devices_new(0, dev, 4, &n0, &err) == 0 && n0 == 0 && n_notes == 0,
          "LYRA_CUDA_DEVICES empty: n %d, %d notes", n0, n_notes);
    unsetenv("LYRA_CUDA_DEVICES");
    for (int i = 0; i < 2; i++) {
        int n = -1;
        int rc = lyra_cuda_devices_new(0, dev, 4, &n, &err);
        CHECK(rc == 0 && n == 0, "devices_new without a GPU: rc %d n %d (%s)", rc, n, err.msg);
    }
#if LYRA_BUILD_HAVE_CUDA
    CHECK(n_notes == 1 && strstr(last_note, "CUDA: no usable GPU (") &&
              strstr(last_note, "); running on the CPU"),
          "want one note, got %d: %s", n_notes, last_note);
#else
    CHECK(n_notes == 0, "a build without CUDA printed %d notes: %s", n_notes, last_note);
    CHECK(strstr(why, "without CUDA") != NULL, "reason: %s", why);
#endif
    lyra_log_set(NULL, LYRA_LOG_WARN, NULL);
}

#if LYRA_BUILD_HAVE_CUDA
static lyra_rng rng;
static float frand(void) { return lyra_rng_f32(&rng) * 2.0f - 1.0f; }

/* Rows of type t from random floats (with an all-zero block and a wide
 * dynamic range, so scales and mins take many values). */
static void make_rows(lyra_type t, int rows, int64_t n, float *x, uint8_t *w) {
    size_t rb = lyra_row_bytes(t, n);
    for (int r = 0; r < rows; r++) {
        float *xr = x + (size_t)r * n;
        for (int64_t i = 0; i < n; i++) xr[i] = frand() * (1.0f + (float)(i % 7)) * 0.5f;
        if (n >= 512)
            for (int i = 256; i < 288; i++) xr[i] = 0.0f; /* an all-zero block */
        lyra_quantize_row(t, xr, w + (size_t)r * rb, n);
    }
}

static void test_types(void) {
    lyra_type types[] = {LYRA_TYPE_F32, LYRA_TYPE_F16, LYRA_TYPE_BF16, LYRA_TYPE_Q8_0,
                         LYRA_TYPE_Q4_0, LYRA_TYPE_Q4_K, LYRA_TYPE_Q5_K, LYRA_TYPE_Q6_K};
    const int64_t sizes[] = {256, 4096, 11008 / 256 * 256, 172};
    const int ROWS = 5;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        lyra_type t = types[ti];
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            int64_t n = sizes[si];
            if (n % lyra_type_block(t)) continue;
            size_t rb = lyra_row_bytes(t, n);
            float *x = malloc(sizeof(float) * (size_t)n * ROWS);
            float *act = malloc(sizeof(float) * (size_t)n);
            float *deq = malloc(sizeof(float) * (size_t)n), *ref = malloc(sizeof(float) * (size_t)n);
            uint8_t *w = malloc(rb * ROWS);
            make_rows(t, ROWS, n, x, w);
            lyra_type at = lyra_vec_dot_type(t);
            size_t ab = lyra_row_bytes(at, n);
            uint8_t *qa = malloc(ab), *qc = malloc(ab);
            int deq_ok = 1, act_ok = 1;
            double worst = 0;
            for (int r = 0; r < ROWS; r++) {
                const uint8_t *row = w + (size_t)r * rb;
                /* dequantization, bit for bit */
                lyra_cuda_host_dequant(t, row, n, deq);
                lyra_dequantize_row(t, row, ref, n);
                deq_ok &= memcmp(deq, ref, sizeof(float) * (size_t)n) == 0;
                /* activations: another random row, with a zero block and ties */
                for (int64_t i = 0; i < n; i++) act[i] = frand() * 3.0f;
                if (n >= 64) for (int i = 32; i < 64; i++) act[i] = 0.0f;
                if (at != LYRA_TYPE_F32) {
                    lyra_quantize_act(LYRA_CPU_SCALAR, t, act, qc, n);
                    int rc = lyra_cuda_host_quantize_act(t, act, n, qa);
                    act_ok &= rc == 0 && memcmp(qa, qc, ab) == 0;
                } else {
                    memcpy(qc, act, ab);
                    CHECK(lyra_cuda_host_quantize_act(t, act, n, qa) == LYRA_ERR_INPUT,
                          "%s: float weights have no quantized activations", lyra_type_name(t));
                }
                /* the decode kernel's dot product vs the CPU's */
                float got = lyra_cuda_host_dot(t, row, act, n);
                float want = lyra_vec_dot(LYRA_CPU_SCALAR, t, n, row, qc);
                double mag = 0;
                for (int64_t i = 0; i < n; i++) mag += fabs((double)ref[i] * act[i]);
                double e = fabs((double)got - want) / (mag > 0 ? mag : 1);
                if (!(e <= worst)) worst = e;
            }
            CHECK(deq_ok, "%s n %lld: host dequantization differs from lyra_dequantize_row",
                  lyra_type_name(t), (long long)n);
            CHECK(act_ok, "%s n %lld: activation quantization differs from lyra_quantize_act",
                  lyra_type_name(t), (long long)n);
            CHECK(worst <= 2e-6, "%s n %lld: dot differs from lyra_vec_dot by %g of sum|w x|",
                  lyra_type_name(t), (long long)n, worst);
            printf("%-5s n %5lld: dot vs CPU %.2g (of sum |w x|)\n", lyra_type_name(t),
                   (long long)n, worst);
            free(x); free(act); free(deq); free(ref); free(w); free(qa); free(qc);
        }
    }
}
#endif

int main(void) {
    test_parse();
    test_no_gpu();
#if LYRA_BUILD_HAVE_CUDA
    lyra_rng_seed(&rng, 6);
    test_types();
#else
    printf("built without CUDA: host emulation of the kernels not built\n");
#endif
    return test_done();
}
