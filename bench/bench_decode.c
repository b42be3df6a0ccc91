/* bench_decode.c: decode (ntok = 1) speed of lyra_matmul on one thread, in
 * process CPU time, for a shared machine (not a test).
 *   bench_decode [path [types [seconds]]]   path = scalar|avx2|avx512 (default
 *   avx512), types comma-separated (default q4_k,q5_k,q6_k,bf16,f16,q4_0,q8_0),
 *   seconds of CPU time per type (default 1.5); ROWS / COLS in the
 *   environment: W's shape (default 5632 x 2048, ffn_up).
 * Per type: GB/s of weights read per call from one matrix called again and
 * again ("hot": in L2 for ROWS=512, in the L3 at the default shape), and
 * cycling through copies totalling > 600 MB ("stream"), beside the plain
 * read bandwidth of the same buffers (an AVX2 sum, measured alternately).
 * Each figure is the best single call, timed in CPU time: other processes
 * on the machine change it less than wall time (run old and new builds
 * alternately all the same). y0 (the first output, hex) lets two builds be
 * compared for identical results.
 * Build (x86-64, from the checkout, with a built build/liblyra.a):
 *   cc -O2 -std=c11 -D_GNU_SOURCE -DLYRA_X86=1 -Iinclude -Isrc bench/bench_decode.c \
 *      build/liblyra.a -ljansson -lpcre2-8 -lm -lpthread -o bench_decode */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "kernels/kernels.h"

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2"))) static uint64_t sum_words(const uint64_t *m, size_t n) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a = _mm256_add_epi64(a, _mm256_loadu_si256((const __m256i *)(const void *)(m + i)));
        b = _mm256_add_epi64(b, _mm256_loadu_si256((const __m256i *)(const void *)(m + i + 4)));
        c = _mm256_add_epi64(c, _mm256_loadu_si256((const __m256i *)(const void *)(m + i + 8)));
        d = _mm256_add_epi64(d, _mm256_loadu_si256((const __m256i *)(const void *)(m + i + 12)));
    }
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)(void *)out, _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d)));
    uint64_t s = out[0] + out[1] + out[2] + out[3];
    for (; i < n; i++) s += m[i];
    return s;
}
#else
static uint64_t sum_words(const uint64_t *m, size_t n) {
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) s += m[i];
    return s;
}
#endif

int main(int argc, char **argv) {
    lyra_cpu_path path = LYRA_CPU_AVX512;
    if (argc > 1) {
        lyra_error err;
        if (lyra_cpu_path_parse(argv[1], &path, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 2;
        }
    } else if (!lyra_cpu_path_available(path)) {
        path = LYRA_CPU_AVX2;
    }
    const char *types = argc > 2 ? argv[2] : "q4_k,q5_k,q6_k,bf16,f16,q4_0,q8_0";
    double secs = argc > 3 ? atof(argv[3]) : 1.5;
    int64_t rows = getenv("ROWS") ? atoll(getenv("ROWS")) : 5632;
    int64_t cols = getenv("COLS") ? atoll(getenv("COLS")) : 2048;
    printf("path %s, W %lld x %lld, 1 thread, GB/s of weights per call (process CPU time, best call)\n",
           lyra_cpu_path_name(path), (long long)rows, (long long)cols);
    lyra_rng rng;
    lyra_rng_seed(&rng, 1);
    float *X = malloc(sizeof(float) * (size_t)cols), *Y = malloc(sizeof(float) * (size_t)rows);
    float *src = malloc(sizeof(float) * (size_t)cols);
    for (int64_t i = 0; i < cols; i++) X[i] = lyra_rng_f32(&rng) - 0.5f;
    char list[256];
    snprintf(list, sizeof list, "%s", types);
    uint64_t sink = 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        lyra_type t;
        if (lyra_type_parse(tok, &t) != LYRA_OK) continue;
        size_t wrow = lyra_row_bytes(t, cols), wb = wrow * (size_t)rows;
        int nc = (int)(((size_t)600 << 20) / wb) + 1;
        uint8_t *W = malloc(wb * (size_t)nc);
        void *work = malloc(lyra_matmul_work_size(t, cols, 1) + 64);
        if (!W || !work) return 1;
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t c = 0; c < cols; c++) src[c] = (lyra_rng_f32(&rng) - 0.5f) * 0.1f;
            lyra_quantize_row(t, src, W + wrow * (size_t)r, cols);
        }
        for (int k = 1; k < nc; k++) memcpy(W + wb * (size_t)k, W, wb);
        double hot = 0, str = 0, rd = 0, t0, v, st = cpu_now();
        do {
            t0 = cpu_now();
            lyra_matmul(path, t, W, rows, cols, X, 1, Y, work, NULL);
            if ((v = (double)wb / (cpu_now() - t0) / 1e9) > hot) hot = v;
        } while (cpu_now() - st < 0.4 * secs);
        st = cpu_now();
        for (int k = 0; cpu_now() - st < 0.6 * secs; k = (k + 1) % nc) {
            t0 = cpu_now();
            lyra_matmul(path, t, W + wb * (size_t)k, rows, cols, X, 1, Y, work, NULL);
            if ((v = (double)wb / (cpu_now() - t0) / 1e9) > str) str = v;
            t0 = cpu_now();
            sink += sum_words((const uint64_t *)(const void *)(W + wb * (size_t)((k + nc / 2) % nc)), wb / 8);
            if ((v = (double)wb / (cpu_now() - t0) / 1e9) > rd) rd = v;
        }
        printf("%-5s %6.1f MB  hot %6.1f  stream %6.1f  read %6.1f  y0=%a\n", lyra_type_name(t), (double)wb / 1e6,
               hot, str, rd, (double)Y[0]);
        fflush(stdout);
        free(W);
        free(work);
    }
    free(src);
    free(X);
    free(Y);
    if (sink == 42) printf("(sum %llu)\n", (unsigned long long)sink); /* keeps the reads */
    return 0;
}
