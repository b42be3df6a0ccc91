/* test_matmul_batch.c: a row's lyra_matmul result does not depend on how many
 * tokens share the batch (the server batches sequences and needs each one's
 * logits bitwise equal alone or batched). For every supported weight type and
 * every CPU path this machine has: Y of ntok = 1, 2, 7, 64 and 512 (windows of
 * the same 512 activation rows, at several offsets), with 1, 2 and 3
 * threads (scalar: 1), equals lyra_vec_dot of the scalar path bit for bit.
 * On AVX-512 also the tiles on raw weights and the batched activation
 * layout, which lyra_matmul falls back on when it cannot allocate the buffer
 * for a repacked row block. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fp16.h"
#include "core/pool.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "kernels/kernels_impl.h"
#include "quant/quant.h"
#include "testutil.h"

static lyra_rng rng;

static float gauss(void) {
    float s = 0;
    for (int i = 0; i < 4; i++) s += lyra_rng_f32(&rng) - 0.5f;
    return s;
}

#if LYRA_X86
/* lyra_mm_tile_avx512 for 2 and 9 tokens on activations from
 * lyra_mm_act_avx512: the same bits as ref ([token][row] of the first
 * tokens). */
static void check_raw_tiles(lyra_type t, int64_t cols, const uint8_t *W, size_t wrow, int64_t rows, const float *X,
                            const float *ref) {
    size_t ab = lyra_mm_act_bytes_avx512(t, cols);
    if (!ab || !lyra_cpu_path_available(LYRA_CPU_AVX512)) return;
    for (int64_t nt = 2; nt <= 9; nt += 7) {
        uint8_t *A = malloc(ab * (size_t)nt);
        float *Y = malloc(sizeof(float) * (size_t)(rows * nt));
        for (int64_t k = 0; k < nt; k++) lyra_mm_act_avx512(t, nt, X + k * cols, A + (size_t)k * ab, cols);
        memset(Y, 0xff, sizeof(float) * (size_t)(rows * nt));
        lyra_mm_tile_avx512(t, nt)(t, cols, W, wrow, (int)rows, A, ab, (int)nt, Y, (size_t)rows);
        int diff = 0;
        for (int64_t i = 0; i < rows * nt; i++) diff += lyra_bits_from_f32(Y[i]) != lyra_bits_from_f32(ref[i]);
        CHECK(diff == 0, "avx512 %s raw-weight tile, %lld tokens: %d of %lld results differ from ntok=1",
              lyra_type_name(t), (long long)nt, diff, (long long)(rows * nt));
        free(A);
        free(Y);
    }
}
#endif

int main(void) {
    lyra_rng_seed(&rng, 7);
    const lyra_type types[] = {LYRA_TYPE_F32,  LYRA_TYPE_F16,  LYRA_TYPE_BF16, LYRA_TYPE_Q8_0, LYRA_TYPE_Q4_0,
                               LYRA_TYPE_Q5_0, LYRA_TYPE_Q4_K, LYRA_TYPE_Q5_K, LYRA_TYPE_Q6_K};
    /* rows: not a multiple of any tile height; cols: odd block counts */
    const int64_t rows = 11, NT = 512;
    const int batches[] = {1, 2, 7, 64, 512};
    lyra_pool *pools[3] = {lyra_pool_new(1), lyra_pool_new(2), lyra_pool_new(3)};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        lyra_type t = types[ti], at = lyra_vec_dot_type(t);
        int64_t cols = lyra_type_block(t) == 256 ? 768 : lyra_type_block(t) == 32 ? 544 : 530;
        size_t wrow = lyra_row_bytes(t, cols), arow = lyra_row_bytes(at, cols);
        uint8_t *W = malloc(wrow * rows), *A = malloc(arow);
        float *X = malloc(sizeof(float) * cols * NT), *ref = malloc(sizeof(float) * rows * NT),
              *Y = malloc(sizeof(float) * rows * NT), *src = malloc(sizeof(float) * cols);
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t c = 0; c < cols; c++) src[c] = gauss() * 0.2f;
            lyra_quantize_row(t, src, W + wrow * r, cols);
        }
        for (int64_t i = 0; i < cols * NT; i++) X[i] = gauss() * (i % 11 == 0 ? 4.0f : 1.0f);
        for (int64_t k = 0; k < NT; k++) {
            lyra_quantize_act(LYRA_CPU_SCALAR, t, X + k * cols, A, cols);
            for (int64_t r = 0; r < rows; r++)
                ref[k * rows + r] = lyra_vec_dot(LYRA_CPU_SCALAR, t, cols, W + wrow * r, A);
        }
        void *work = malloc(lyra_matmul_work_size(t, cols, NT) + 1);
        for (int k = LYRA_CPU_SCALAR; k <= LYRA_CPU_AVX512; k++) {
            lyra_cpu_path p = (lyra_cpu_path)k;
            if (!lyra_cpu_path_available(p)) continue;
            for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
                int64_t nb = batches[bi];
                for (int pi = 0; pi < 3; pi++) {
                    if (p == LYRA_CPU_SCALAR && pi > 0) continue; /* the reference path: keep it quick */
                    memset(Y, 0xff, sizeof(float) * rows * NT);
                    /* windows of nb tokens covering the 512, at a shifted start */
                    int64_t off = nb == NT ? 0 : (nb * 3 + 5) % nb;
                    for (int64_t s = off - (off ? nb : 0); s < NT; s += nb) {
                        int64_t s0 = s < 0 ? 0 : s, s1 = s + nb < NT ? s + nb : NT;
                        lyra_matmul(p, t, W, rows, cols, X + s0 * cols, s1 - s0, Y + s0 * rows, work, pools[pi]);
                    }
                    int diff = 0;
                    for (int64_t i = 0; i < rows * NT; i++)
                        diff += lyra_bits_from_f32(Y[i]) != lyra_bits_from_f32(ref[i]);
                    CHECK(diff == 0, "%s %s cols=%lld batch=%lld threads=%d: %d of %lld results differ from ntok=1",
                          lyra_cpu_path_name(p), lyra_type_name(t), (long long)cols, (long long)nb, pi + 1, diff,
                          (long long)(rows * NT));
                }
            }
        }
#if LYRA_X86
        check_raw_tiles(t, cols, W, wrow, rows, X, ref);
#endif
        printf("%-5s cols %4lld: batch 1/2/7/64/512 bitwise equal on every available path\n", lyra_type_name(t),
               (long long)cols);
        free(work); free(W); free(A); free(X); free(ref); free(Y); free(src);
    }
    for (int i = 0; i < 3; i++) lyra_pool_free(pools[i]);
    return test_done();
}
