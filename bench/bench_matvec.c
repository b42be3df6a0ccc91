/* bench_matvec.c: the CUDA decode matmul's speed (not a test; built only as
 * `cmake --build BUILD --target bench_matvec` in a CUDA build, run by
 * scripts/gpu-ab.sh on a lent GPU).
 *   bench_matvec [types [shapes [kernels]]]
 *   types: comma-separated (default q8_0,q4_0,f16,q4_k,q6_k); shapes:
 *   ROWSxCOLS,... (default 16384x16384,4096x4096,11008x4096,4096x11008: one
 *   big matrix, then the 7B shape's q/o, gate/up and down); kernels: the
 *   LYRA_CUDA_MATVEC values to compare (default v1,v2,v3).
 * One token (decode). Per type, shape and kernel: a fresh CUDA device (the
 * kernel is read from the environment when the device opens), enough copies
 * of the weights to pass 256 MiB (so that the card's L2 cannot hold them),
 * calls one after another for at least 0.2 s, timed on the host around
 * sync: us per call and GB/s (weight bytes / time), and the host's time to
 * queue a call (quantized weights: two launches); when that is as long as a
 * call, the figure is the host's, not the kernel's. "sum" is a checksum of the outputs: kernels 2 and 3 add in
 * the same order and must print the same sum; kernel 1's differs in the last
 * bits. Weights are random bytes with sane scales (no NaN or Inf). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/fp16.h"
#include "core/rng.h"
#include "core/wtype.h"
#include "device/cuda.h"
#include "device/device.h"
#include "kernels/kernels.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* An f16 scale in [2^-12, 2^-11) or so: finite, small products. */
static uint16_t small_half(uint32_t r) { return lyra_f32_to_fp16(ldexpf(1.0f + (float)(r & 1023) / 1024.0f, -12)); }

/* Random weight bytes with every scale field set to a small finite f16, and
 * float elements finite. */
static void fill_weights(lyra_type t, uint8_t *w, size_t n, lyra_rng *rng) {
    for (size_t i = 0; i + 4 <= n; i += 4) {
        uint32_t r = (uint32_t)lyra_rng_u64(rng);
        memcpy(w + i, &r, 4);
    }
    size_t bs = lyra_type_block_bytes(t); /* bytes per block */
    for (size_t b = 0; b + bs <= n; b += bs) {
        uint8_t *p = w + b;
        uint16_t h = small_half((uint32_t)lyra_rng_u64(rng));
        switch (t) {
        case LYRA_TYPE_Q8_0: case LYRA_TYPE_Q4_0: case LYRA_TYPE_Q5_0: memcpy(p, &h, 2); break;
        case LYRA_TYPE_Q4_K: case LYRA_TYPE_Q5_K: memcpy(p, &h, 2); memcpy(p + 2, &h, 2); break;
        case LYRA_TYPE_Q6_K: memcpy(p + 208, &h, 2); break;
        case LYRA_TYPE_F16: case LYRA_TYPE_BF16:
            for (size_t i = 0; i < bs; i += 2) p[i + 1] &= 0xBF; /* exponent's top bit off */
            break;
        case LYRA_TYPE_F32:
            for (size_t i = 0; i < bs; i += 4) p[i + 3] &= 0xBF;
            break;
        default: break;
        }
    }
}

static int run(const char *kernel, lyra_type t, int64_t rows, int64_t cols) {
    setenv("LYRA_CUDA_MATVEC", kernel, 1);
    lyra_device *gd[1];
    int n = 0;
    lyra_error err;
    memset(&err, 0, sizeof err);
    if (lyra_cuda_devices_open("0", 1, 0, gd, 1, &n, &err) || n != 1) {
        fprintf(stderr, "bench_matvec: no CUDA device: %s\n", err.msg);
        return 1;
    }
    lyra_device *d = gd[0];
    size_t rb = lyra_row_bytes(t, cols), wb = rb * (size_t)rows;
    int copies = (int)(((size_t)256 << 20) / wb) + 1;
    uint8_t *hw = malloc(wb);
    float *hx = malloc(sizeof(float) * (size_t)cols), *hy = malloc(sizeof(float) * (size_t)rows);
    void **dw = calloc((size_t)copies, sizeof *dw), *dx = NULL, *dy = NULL, *work = NULL;
    size_t ws = d->ops->matmul_work_size(d, t, cols, 1);
    int rc = 1;
    if (!hw || !hx || !hy || !dw) goto done;
    lyra_rng rng;
    lyra_rng_seed(&rng, 7);
    fill_weights(t, hw, wb, &rng);
    for (int64_t i = 0; i < cols; i++) hx[i] = lyra_rng_f32(&rng) * 2.0f - 1.0f;
    for (int c = 0; c < copies; c++)
        if (d->ops->alloc(d, wb, &dw[c]) || d->ops->copy_in(d, dw[c], hw, wb)) goto done;
    if (d->ops->alloc(d, sizeof(float) * (size_t)cols, &dx) ||
        d->ops->copy_in(d, dx, hx, sizeof(float) * (size_t)cols) ||
        d->ops->alloc(d, sizeof(float) * (size_t)rows, &dy) ||
        (ws && d->ops->alloc(d, ws, &work)))
        goto done;
    d->ops->set_work(d, work, ws);
    for (int c = 0; c < copies; c++) d->ops->matmul(d, t, dw[c], rows, cols, dx, 1, dy); /* warm */
    if (d->ops->sync(d, &err)) goto done;
    long calls = 0;
    double t0 = now(), t1 = t0, enq = 0;
    while (t1 - t0 < 0.2) {
        double e0 = now();
        for (int i = 0; i < 50; i++, calls++)
            d->ops->matmul(d, t, dw[calls % copies], rows, cols, dx, 1, dy);
        enq += now() - e0;
        if (d->ops->sync(d, &err)) goto done;
        t1 = now();
    }
    if (d->ops->copy_out(d, hy, dy, sizeof(float) * (size_t)rows) || d->ops->sync(d, &err)) goto done;
    double sum = 0;
    for (int64_t i = 0; i < rows; i++) sum += hy[i];
    double us = (t1 - t0) / (double)calls * 1e6;
    printf("matvec %s %-5s %5lldx%-5lld: %8.2f us/call %7.1f GB/s (host %.2f us/call to queue; "
           "%d copies) sum %.9e\n",
           kernel, lyra_type_name(t), (long long)rows, (long long)cols, us, (double)wb / us * 1e-3,
           enq / (double)calls * 1e6, copies, sum);
    fflush(stdout);
    rc = 0;
done:
    if (rc) fprintf(stderr, "bench_matvec: %s %s %lldx%lld failed: %s\n", kernel, lyra_type_name(t),
                    (long long)rows, (long long)cols, err.msg);
    d->ops->set_work(d, NULL, 0);
    for (int c = 0; dw && c < copies; c++)
        if (dw[c]) d->ops->free(d, dw[c], wb);
    if (dx) d->ops->free(d, dx, sizeof(float) * (size_t)cols);
    if (dy) d->ops->free(d, dy, sizeof(float) * (size_t)rows);
    if (work) d->ops->free(d, work, ws);
    lyra_device_free(d);
    free(hw); free(hx); free(hy); free(dw);
    return rc;
}

int main(int argc, char **argv) {
    char types[256], shapes[256], kernels[64];
    snprintf(types, sizeof types, "%s", argc > 1 ? argv[1] : "q8_0,q4_0,f16,q4_k,q6_k");
    snprintf(shapes, sizeof shapes, "%s",
             argc > 2 ? argv[2] : "16384x16384,4096x4096,11008x4096,4096x11008");
    snprintf(kernels, sizeof kernels, "%s", argc > 3 ? argv[3] : "v1,v2,v3");
    char why[256] = "";
    if (lyra_cuda_count(why, sizeof why) <= 0) {
        printf("SKIPPED: no CUDA GPU (%s)\n", why);
        return 77;
    }
    int fails = 0;
    char *s1, *s2, *s3;
    for (char *ty = strtok_r(types, ",", &s1); ty; ty = strtok_r(NULL, ",", &s1)) {
        lyra_type t;
        if (lyra_type_parse(ty, &t)) {
            fprintf(stderr, "bench_matvec: unknown type %s\n", ty);
            return 2;
        }
        char sh[256];
        snprintf(sh, sizeof sh, "%s", shapes);
        for (char *s = strtok_r(sh, ",", &s2); s; s = strtok_r(NULL, ",", &s2)) {
            long long rows = 0, cols = 0;
            if (sscanf(s, "%lldx%lld", &rows, &cols) != 2 || rows <= 0 || cols <= 0 ||
                cols % lyra_type_block(t)) {
                fprintf(stderr, "bench_matvec: bad shape %s for %s\n", s, ty);
                continue;
            }
            char ks[64];
            snprintf(ks, sizeof ks, "%s", kernels);
            for (char *k = strtok_r(ks, ",", &s3); k; k = strtok_r(NULL, ",", &s3))
                fails += run(k, t, rows, cols) != 0;
        }
    }
    return fails ? 1 : 0;
}
