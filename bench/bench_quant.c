/* bench_quant.c: quick throughput numbers for lyra_matmul (not a test).
 *   bench_quant [path] [rows cols [types]]   path = scalar|avx2|avx512 (default:
 *   best); types: comma-separated weight types to run (default: all below)
 * For each weight type: decode (ntok = 1) GB/s of weights read, with 1 and 2
 * threads, from one cache-resident matrix ("hot") and cycling through copies
 * totalling > 1.2 GB, more than the L3, so the weights stream from DRAM
 * ("dram"); beside the DRAM numbers the plain read bandwidth of the same
 * buffers with the same threads (AVX2 sum), measured alternately as the
 * yardstick. Prompt (ntok = 128) in GFLOP/s (2*rows*cols*ntok). Every number
 * is the best single call of several rounds (the machine may be shared).
 * Build (x86-64, from the checkout, with a built build/liblyra.a):
 *   cc -O2 -std=c11 -D_GNU_SOURCE -DLYRA_X86=1 -Iinclude -Isrc bench/bench_quant.c \
 *      build/liblyra.a -ljansson -lpcre2-8 -lm -lpthread -o bench_quant */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/pool.h"
#include "core/rng.h"
#include "kernels/kernels.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Plain read bandwidth over buf (threads of pool each sum a slice of 64-bit
 * words with AVX2): the yardstick for the matmul numbers. */
typedef struct { const uint64_t *m; size_t n; uint64_t sum[16]; } rd_job;

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2"))) static uint64_t sum_words(const uint64_t *m, size_t i0, size_t i1) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    size_t i = i0;
    for (; i + 16 <= i1; i += 16) {
        a = _mm256_add_epi64(a, _mm256_loadu_si256((const __m256i *)(m + i)));
        b = _mm256_add_epi64(b, _mm256_loadu_si256((const __m256i *)(m + i + 4)));
        c = _mm256_add_epi64(c, _mm256_loadu_si256((const __m256i *)(m + i + 8)));
        d = _mm256_add_epi64(d, _mm256_loadu_si256((const __m256i *)(m + i + 12)));
    }
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d)));
    uint64_t s = out[0] + out[1] + out[2] + out[3];
    for (; i < i1; i++) s += m[i];
    return s;
}
#else
static uint64_t sum_words(const uint64_t *m, size_t i0, size_t i1) {
    uint64_t s = 0;
    for (size_t i = i0; i < i1; i++) s += m[i];
    return s;
}
#endif

static void rd_fn(void *arg, int ith, int nth) {
    rd_job *j = arg;
    long i0, i1;
    lyra_split_rows((long)j->n, ith, nth, &i0, &i1);
    j->sum[ith & 15] = sum_words(j->m, (size_t)i0, (size_t)i1);
}

static double read_bw(lyra_pool *pool, const void *buf, size_t bytes) {
    rd_job j = {.m = buf, .n = bytes / 8};
    double t0 = now();
    lyra_pool_run(pool, rd_fn, &j);
    return (double)bytes / (now() - t0) / 1e9;
}

int main(int argc, char **argv) {
    lyra_cpu_path path;
    lyra_error err;
    if (lyra_cpu_path_select(&path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    int64_t rows = 5632, cols = 2048;
    if (argc > 1) {
        if (!strcmp(argv[1], "scalar")) path = LYRA_CPU_SCALAR;
        else if (!strcmp(argv[1], "avx2")) path = LYRA_CPU_AVX2;
        else if (!strcmp(argv[1], "avx512")) path = LYRA_CPU_AVX512;
    }
    if (argc > 3) {
        rows = atoll(argv[2]);
        cols = atoll(argv[3]);
    }
    printf("path %s, W %lld x %lld (rows x cols); decode GB/s of weights (ntok=1), in ()\n"
           "the plain read bandwidth of the same buffers measured alternately; prompt\n"
           "(ntok=128) GFLOP/s. Each number: the best single call of several rounds.\n",
           lyra_cpu_path_name(path), (long long)rows, (long long)cols);
    lyra_type types[] = {LYRA_TYPE_Q8_0, LYRA_TYPE_Q4_0, LYRA_TYPE_Q4_K, LYRA_TYPE_Q5_K,
                         LYRA_TYPE_Q6_K, LYRA_TYPE_F16,  LYRA_TYPE_BF16, LYRA_TYPE_F32};
    const char *only = argc > 4 ? argv[4] : NULL; /* "q4_0,q8_0": run just these */
    lyra_pool *pools[2] = {lyra_pool_new(1), lyra_pool_new(2)};
    lyra_rng rng;
    lyra_rng_seed(&rng, 1);
    const int64_t ntok_pp = 128;
    float *X = malloc(sizeof(float) * cols * ntok_pp), *Y = malloc(sizeof(float) * rows * ntok_pp);
    for (int64_t i = 0; i < cols * ntok_pp; i++) X[i] = lyra_rng_f32(&rng) - 0.5f;
    float *src = malloc(sizeof(float) * cols);
    printf("%-5s %6s | %7s %7s | %15s %15s | %7s %7s\n", "type", "MB", "hot 1t", "hot 2t", "dram 1t (read)",
           "dram 2t (read)", "pp 1t", "pp 2t");
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        lyra_type t = types[ti];
        if (only) {
            char list[256];
            snprintf(list, sizeof list, "%s", only);
            int want = 0;
            for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
                lyra_type u;
                if (lyra_type_parse(tok, &u) == LYRA_OK && u == t) want = 1;
            }
            if (!want) continue;
        }
        size_t wrow = lyra_row_bytes(t, cols), wbytes = wrow * (size_t)rows;
        int ncopy = (int)(((size_t)1200 << 20) / wbytes) + 1;
        uint8_t *W = malloc(wbytes * (size_t)ncopy);
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t c = 0; c < cols; c++) src[c] = (lyra_rng_f32(&rng) - 0.5f) * 0.1f;
            lyra_quantize_row(t, src, W + wrow * (size_t)r, cols);
        }
        for (int k = 1; k < ncopy; k++) memcpy(W + wbytes * (size_t)k, W, wbytes);
        void *work = malloc(lyra_matmul_work_size(t, cols, ntok_pp) + 64);
        double res[6] = {0}, rd[2] = {0};
        for (int round = 0; round < 3; round++)
            for (int th = 0; th < 2; th++) {
                /* hot: the same matrix again and again */
                double t0, v, start = now();
                do {
                    t0 = now();
                    lyra_matmul(path, t, W, rows, cols, X, 1, Y, work, pools[th]);
                    if ((v = (double)wbytes / (now() - t0) / 1e9) > res[th]) res[th] = v;
                } while (now() - start < 0.2);
                /* dram: cycle through the copies; the read yardstick alternately */
                for (int k = 0; k < ncopy; k++) {
                    t0 = now();
                    lyra_matmul(path, t, W + wbytes * (size_t)k, rows, cols, X, 1, Y, work, pools[th]);
                    if ((v = (double)wbytes / (now() - t0) / 1e9) > res[2 + th]) res[2 + th] = v;
                    int k2 = (k + ncopy / 2) % ncopy;
                    if ((v = read_bw(pools[th], W + wbytes * (size_t)k2, wbytes)) > rd[th]) rd[th] = v;
                }
                /* prompt */
                start = now();
                do {
                    t0 = now();
                    lyra_matmul(path, t, W, rows, cols, X, ntok_pp, Y, work, pools[th]);
                    v = 2.0 * (double)rows * (double)cols * (double)ntok_pp / (now() - t0) / 1e9;
                    if (v > res[4 + th]) res[4 + th] = v;
                } while (now() - start < 0.3);
            }
        printf("%-5s %6.1f | %7.1f %7.1f | %6.1f (%5.1f) %6.1f (%5.1f) | %7.1f %7.1f\n", lyra_type_name(t),
               (double)wbytes / 1e6, res[0], res[1], res[2], rd[0], res[3], rd[1], res[4], res[5]);
        fflush(stdout);
        free(work);
        free(W);
    }
    free(src);
    free(X);
    free(Y);
    lyra_pool_free(pools[0]);
    lyra_pool_free(pools[1]);
    return 0;
}
