/* prefetch.h: the SIMD kernels' software prefetch (not a public interface).
 * Decode streams weights and, at depth, the KV cache from memory in orders
 * the hardware prefetchers do not follow; the kernels ask for the lines they
 * will read `ahead` bytes later. The address is formed as an integer: it may
 * lie past the buffer, and a prefetch never faults. */
#ifndef LYRA_KERNELS_PREFETCH_H
#define LYRA_KERNELS_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

/* Prefetch into L1 (prefetcht0) the line at p + ahead bytes. */
static inline __attribute__((always_inline)) void lyra_prefetch_ahead(const void *p, size_t ahead) {
    __builtin_prefetch((const void *)(uintptr_t)((uintptr_t)p + ahead), 0, 3);
}

/* Decode attention at depth (vec_avx2.c, vec_avx512.c): the scores walk 64
 * transposed K rows side by side, the accumulation reads V rows kv_dim
 * apart; each prefetches what it reads ATT_PF_POS positions (K) or
 * ATT_PF_ROWS rows (V) later. 1.1B Q4_0 at depth 4000, 2 threads: the
 * attention op 10.0 -> 6.2 ms per token (docs/PERF.md). */
#define LYRA_ATT_PF_POS 64
#define LYRA_ATT_PF_ROWS 16

#endif
