/* membw.c: memory read bandwidth for `lyra bench`: the best of several
 * timed reads of a large buffer, split over the thread pool, every byte
 * loaded and summed (AVX2 when the CPU has it) so the reads cannot be
 * skipped: a true read bandwidth, GB = 1e9 bytes. */
#include "membw.h"

#include <stdlib.h>
#include <string.h>

#include "args.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MEMBW_X86 1

/* Sum of n bytes (n a multiple of 128, p 32-byte aligned) as 64-bit lanes. */
__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint8_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t l[4];
    _mm256_storeu_si256((__m256i *)l, s);
    return l[0] + l[1] + l[2] + l[3];
}
#endif

static uint64_t sum_scalar(const uint8_t *p, size_t n) {
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (size_t i = 0; i < n; i += 32) {
        uint64_t v[4];
        memcpy(v, p + i, 32);
        a0 += v[0]; a1 += v[1]; a2 += v[2]; a3 += v[3];
    }
    return a0 + a1 + a2 + a3;
}

/* One pass over the buffer, the pool's threads each reading a contiguous
 * slice of 4 KiB pages. */
typedef struct membw_job {
    uint8_t *buf;       /* [n] bytes */
    size_t n;           /* a multiple of 4096 */
    int fill;           /* 1: write the pages (first touch), 0: read */
    int avx2;           /* use the AVX2 reader */
    uint64_t sums[256]; /* per-thread results, so the loads stay live */
} membw_job;

static void membw_worker(void *arg, int ith, int nth) {
    membw_job *j = arg;
    long a, b;
    lyra_split_rows((long)(j->n / 4096), ith, nth, &a, &b);
    uint8_t *p = j->buf + (size_t)a * 4096;
    size_t n = (size_t)(b - a) * 4096;
    if (j->fill) {
        for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 7 + (size_t)ith);
        return;
    }
    uint64_t s;
#ifdef MEMBW_X86
    if (j->avx2) s = sum_avx2(p, n);
    else
#endif
        s = sum_scalar(p, n);
    if (ith < 256) j->sums[ith] += s;
}

int app_membw(lyra_pool *pool, size_t bytes, int reps, double *gbs, lyra_error *err) {
    membw_job *j = calloc(1, sizeof *j);
    if (!j) return lyra_err(err, LYRA_ERR_OOM, "bench", "out of memory");
    j->n = bytes / 4096 * 4096;
    j->buf = aligned_alloc(4096, j->n);
    if (!j->buf) {
        free(j);
        return lyra_err(err, LYRA_ERR_OOM, "bench", "cannot allocate %zu bytes for the bandwidth test", bytes);
    }
#ifdef MEMBW_X86
    __builtin_cpu_init();
    j->avx2 = __builtin_cpu_supports("avx2");
#endif
    j->fill = 1;
    lyra_pool_run(pool, membw_worker, j);
    j->fill = 0;
    double best = 0.0;
    for (int r = 0; r < reps && !app_interrupted; r++) {
        double t0 = app_now();
        lyra_pool_run(pool, membw_worker, j);
        double dt = app_now() - t0;
        double g = (double)j->n / dt / 1e9;
        if (g > best) best = g;
    }
    uint64_t total = 0;
    for (int i = 0; i < 256; i++) total += j->sums[i];
    lyra_log(LYRA_LOG_DEBUG, "bench: bandwidth checksum %llu", (unsigned long long)total);
    free(j->buf);
    free(j);
    if (app_interrupted) return lyra_err(err, LYRA_ERR_INTERRUPTED, "bench", "interrupted");
    *gbs = best;
    return LYRA_OK;
}
