/* bench_attn.c: speed of the CPU device's attention op (not a test).
 *   bench_attn [depth [ntok [threads]]]   defaults 4000, 1, 1
 *   NH / NKV / HD / WINDOW in the environment: the head geometry (default 32,
 *   4, 64, 0: the 1.1B Llama's), F32=1: an F32 cache instead of F16.
 * Fills a chunked cache (256 positions a chunk) with depth + ntok random
 * positions through kv_store, then times attention of ntok tokens at
 * positions depth..depth+ntok-1: process CPU time of one call, best of the
 * calls in 1.5 s of CPU time (CPU time, not wall time: see bench_gemm.c).
 * Prints microseconds per call and per token, and a checksum of the output
 * (compare two builds for identical results).
 * Build (from the checkout, with a built build/liblyra.a):
 *   cc -O2 -std=c11 -D_GNU_SOURCE -DLYRA_X86=1 -Iinclude -Isrc bench/bench_attn.c \
 *      build/liblyra.a -ljansson -lpcre2-8 -lm -lpthread -o bench_attn */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/rng.h"
#include "device/device.h"

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    int depth = argc > 1 ? atoi(argv[1]) : 4000;
    int ntok = argc > 2 ? atoi(argv[2]) : 1;
    int nth = argc > 3 ? atoi(argv[3]) : 1;
    int nh = getenv("NH") ? atoi(getenv("NH")) : 32;
    int nkv = getenv("NKV") ? atoi(getenv("NKV")) : 4;
    int hd = getenv("HD") ? atoi(getenv("HD")) : 64;
    int window = getenv("WINDOW") ? atoi(getenv("WINDOW")) : 0;
    int f32 = getenv("F32") && atoi(getenv("F32"));
    const int L = 256;
    int npos = depth + ntok, nch = (npos + L - 1) / L, kv_dim = nkv * hd;
    lyra_error err;
    lyra_device *d;
    if (lyra_cpu_device_new(nth, &d, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    size_t es = f32 ? 4 : 2;
    void **kc = malloc(sizeof(void *) * (size_t)nch), **vc = malloc(sizeof(void *) * (size_t)nch);
    for (int i = 0; i < nch; i++) {
        kc[i] = aligned_alloc(64, (size_t)L * kv_dim * es);
        vc[i] = aligned_alloc(64, (size_t)L * kv_dim * es);
    }
    lyra_kv_view kv = {kc, vc, L, f32 ? LYRA_TYPE_F32 : LYRA_TYPE_F16, 0};
    lyra_rng rng;
    lyra_rng_seed(&rng, 1);
    float *k = malloc(sizeof(float) * (size_t)kv_dim * 256), *v = malloc(sizeof(float) * (size_t)kv_dim * 256);
    for (int p = 0; p < npos; p += 256) {
        int n = npos - p < 256 ? npos - p : 256;
        for (int i = 0; i < n * kv_dim; i++) {
            k[i] = 2.0f * lyra_rng_f32(&rng) - 1.0f;
            v[i] = 2.0f * lyra_rng_f32(&rng) - 1.0f;
        }
        d->ops->kv_store(d, &kv, p, n, kv_dim, k, v);
    }
    size_t nq = (size_t)ntok * nh * hd;
    float *q = malloc(sizeof(float) * nq), *out = malloc(sizeof(float) * nq);
    for (size_t i = 0; i < nq; i++) q[i] = 2.0f * lyra_rng_f32(&rng) - 1.0f;
    lyra_attn_params ap = {nh, nkv, hd, 1.0f / sqrtf((float)hd), 0, window};
    double best = 1e30, start = cpu_now();
    int it = 0;
    do {
        double t0 = cpu_now();
        d->ops->attention(d, q, &kv, depth, ntok, &ap, out);
        double t = cpu_now() - t0;
        if (t < best) best = t;
        it++;
    } while (cpu_now() - start < 1.5 || it < 3);
    if (d->ops->sync(d, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    double ck = 0;
    for (size_t i = 0; i < nq; i++) ck += out[i] * (double)((i % 7) + 1);
    printf("attention %s depth %d ntok %d heads %d/%d hd %d window %d threads %d: %9.1f us/call %8.2f us/token (checksum %.12g)\n",
           f32 ? "f32" : "f16", depth, ntok, nh, nkv, hd, window, nth, best * 1e6, best * 1e6 / ntok, ck);
    for (int i = 0; i < nch; i++) { free(kc[i]); free(vc[i]); }
    free(kc); free(vc); free(k); free(v); free(q); free(out);
    lyra_device_free(d);
    return 0;
}
