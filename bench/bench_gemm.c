/* bench_gemm.c: prompt-processing GEMM speed of lyra_matmul (not a test).
 *   bench_gemm [types [ntok [threads]]]   types: comma-separated (default
 *   q8_0,q4_0,f16,bf16,q4_k,q6_k), ntok default 512, threads default 1;
 *   ROWS / COLS in the environment: W's shape (default 5632 x 2048, ffn_up).
 * GFLOP/s = 2*rows*cols*ntok / process CPU time of one call, best of the
 * calls in 1.5 s of CPU time: CPU time, not wall time, so that a shared
 * machine's other processes change the figure less (with 1 thread). The
 * checksum line lets two builds be compared for identical results.
 * Build (x86-64, from the checkout, with a built build/liblyra.a):
 *   cc -O2 -std=c11 -D_GNU_SOURCE -DLYRA_X86=1 -Iinclude -Isrc bench/bench_gemm.c \
 *      build/liblyra.a -ljansson -lpcre2-8 -lm -lpthread -o bench_gemm */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/pool.h"
#include "core/rng.h"
#include "kernels/kernels.h"

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    int64_t rows = getenv("ROWS") ? atoll(getenv("ROWS")) : 5632;
    int64_t cols = getenv("COLS") ? atoll(getenv("COLS")) : 2048;
    const char *types = argc > 1 ? argv[1] : "q8_0,q4_0,f16,bf16,q4_k,q6_k";
    int64_t ntok = argc > 2 ? atoll(argv[2]) : 512;
    int nth = argc > 3 ? atoi(argv[3]) : 1;
    lyra_cpu_path path;
    lyra_error err;
    if (lyra_cpu_path_select(&path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    lyra_pool *pool = lyra_pool_new(nth);
    lyra_rng rng;
    lyra_rng_seed(&rng, 1);
    float *X = malloc(sizeof(float) * (size_t)(cols * ntok)), *Y = malloc(sizeof(float) * (size_t)(rows * ntok));
    float *src = malloc(sizeof(float) * (size_t)cols);
    for (int64_t i = 0; i < cols * ntok; i++) X[i] = lyra_rng_f32(&rng) - 0.5f;
    char list[256];
    snprintf(list, sizeof list, "%s", types);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        lyra_type t;
        if (lyra_type_parse(tok, &t) != LYRA_OK) continue;
        size_t wrow = lyra_row_bytes(t, cols);
        uint8_t *W = malloc(wrow * (size_t)rows);
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t c = 0; c < cols; c++) src[c] = (lyra_rng_f32(&rng) - 0.5f) * 0.1f;
            lyra_quantize_row(t, src, W + wrow * (size_t)r, cols);
        }
        void *work = malloc(lyra_matmul_work_size(t, cols, ntok) + 64);
        double best = 0, start = cpu_now();
        int it = 0;
        do {
            double t0 = cpu_now();
            lyra_matmul(path, t, W, rows, cols, X, ntok, Y, work, pool);
            double v = 2.0 * (double)rows * (double)cols * (double)ntok / (cpu_now() - t0) / 1e9;
            if (v > best) best = v;
            it++;
        } while (cpu_now() - start < 1.5 || it < 3);
        double ck = 0;
        for (int64_t i = 0; i < rows * ntok; i += 97) ck += Y[i];
        printf("%-5s %s %lldx%lld ntok %lld threads %d: %7.1f GFLOP/s (checksum %.9g)\n", lyra_type_name(t),
               lyra_cpu_path_name(path), (long long)rows, (long long)cols, (long long)ntok, nth, best, ck);
        fflush(stdout);
        free(W);
        free(work);
    }
    free(src);
    free(X);
    free(Y);
    lyra_pool_free(pool);
    return 0;
}
