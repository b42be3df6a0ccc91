/* test_quant.c: the quant module's kernels and quantizers.
 *  1. type table: GGML block sizes, names, parsing, supported/known sets.
 *  2. for every CPU path this machine has (the others are printed as NOT
 *     tested) and every supported weight type:
 *     - lyra_quantize_act gives the same bytes as the scalar reference;
 *     - lyra_vec_dot vs a float64 dot of the dequantized weights and the
 *       dequantized activations: |err| <= 1e-5 * sum|w_i*x_i| + 1e-30;
 *     - lyra_vec_dot of a SIMD path == scalar, bit for bit (all paths share
 *       one canonical evaluation order: tolerance 0);
 *     - lyra_matmul for ntok = 1 and ntok = 13 with 1, 2 and 3 threads: every
 *       Y element bit-identical to lyra_vec_dot (so results do not depend on
 *       the thread count, the tile shape or the batch size).
 *  3. quantize -> dequantize round trip of Gaussian data: relative RMS error
 *     per type below a stated bound (and the measured value is printed).
 *  4. F16/BF16 conversions: all 65536 halves/bfloats round-trip exactly,
 *     round-to-nearest-even on ties, overflow to inf, NaN stays NaN.
 *  5. non-finite input (NaN, inf) only affects its own block.
 *  6. LYRA_CPU: forced paths, malformed values -> LYRA_ERR_INPUT "LYRA_CPU: ...". */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L /* setenv */
#endif
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fp16.h"
#include "core/pool.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "testutil.h"

static lyra_rng rng;

static float gauss(void) {
    double u1 = lyra_rng_f64(&rng), u2 = lyra_rng_f64(&rng);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* ------------------------------------------------------------ 1. table */
static void test_table(void) {
    struct { lyra_type t; const char *name; int64_t block; size_t bytes; int sup; } want[] = {
        {LYRA_TYPE_F32, "F32", 1, 4, 1},      {LYRA_TYPE_F16, "F16", 1, 2, 1},
        {LYRA_TYPE_Q4_0, "Q4_0", 32, 18, 1},  {LYRA_TYPE_Q4_1, "Q4_1", 32, 20, 0},
        {LYRA_TYPE_Q5_0, "Q5_0", 32, 22, 1},  {LYRA_TYPE_Q5_1, "Q5_1", 32, 24, 0},
        {LYRA_TYPE_Q8_0, "Q8_0", 32, 34, 1},  {LYRA_TYPE_Q8_1, "Q8_1", 32, 40, 0},
        {LYRA_TYPE_Q2_K, "Q2_K", 256, 84, 0}, {LYRA_TYPE_Q3_K, "Q3_K", 256, 110, 0},
        {LYRA_TYPE_Q4_K, "Q4_K", 256, 144, 1}, {LYRA_TYPE_Q5_K, "Q5_K", 256, 176, 1},
        {LYRA_TYPE_Q6_K, "Q6_K", 256, 210, 1}, {LYRA_TYPE_Q8_K, "Q8_K", 256, 292, 0},
        {LYRA_TYPE_IQ2_XXS, "IQ2_XXS", 256, 66, 0}, {LYRA_TYPE_IQ4_NL, "IQ4_NL", 32, 18, 0},
        {LYRA_TYPE_IQ4_XS, "IQ4_XS", 256, 136, 0},  {LYRA_TYPE_BF16, "BF16", 1, 2, 1},
        {LYRA_TYPE_TQ2_0, "TQ2_0", 256, 66, 0}, {LYRA_TYPE_MXFP4, "MXFP4", 32, 17, 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        lyra_type t = want[i].t, p = LYRA_TYPE_COUNT;
        CHECK(lyra_type_known(t), "%s known", want[i].name);
        CHECK(lyra_type_name(t) && !strcmp(lyra_type_name(t), want[i].name), "name of %d", (int)t);
        CHECK(lyra_type_block(t) == want[i].block, "%s block", want[i].name);
        CHECK(lyra_type_block_bytes(t) == want[i].bytes, "%s bytes", want[i].name);
        CHECK(lyra_type_supported(t) == want[i].sup, "%s supported", want[i].name);
        char lower[16];
        size_t k = 0;
        for (; want[i].name[k] && k < 15; k++) lower[k] = (char)tolower((unsigned char)want[i].name[k]);
        lower[k] = 0;
        CHECK(lyra_type_parse(lower, &p) == LYRA_OK && p == t, "parse %s", lower);
    }
    lyra_type p;
    CHECK(lyra_type_parse("q4_k_m", &p) == LYRA_ERR_INPUT, "parse q4_k_m rejected");
    CHECK(lyra_type_parse("", &p) == LYRA_ERR_INPUT, "parse empty rejected");
    CHECK(!lyra_type_known((lyra_type)4) && !lyra_type_known((lyra_type)31) &&
              !lyra_type_known(LYRA_TYPE_COUNT) && !lyra_type_known((lyra_type)-1),
          "unused ids unknown");
    CHECK(lyra_type_name((lyra_type)5) == NULL, "no name for id 5");
    CHECK(lyra_row_bytes(LYRA_TYPE_Q4_K, 4096) == 16 * 144, "row bytes");
    CHECK(lyra_row_bytes(LYRA_TYPE_F16, 7) == 14, "row bytes f16");
}

/* ------------------------------------------------------------ 2. kernels */

/* Weight rows for type t: quantized Gaussian data; every other row instead
 * random bytes with sane scale fields (Q6_K negative scales, Q8_0 -128...). */
static void make_weights(lyra_type t, uint8_t *W, int64_t rows, int64_t cols) {
    size_t rb = lyra_row_bytes(t, cols);
    float *x = malloc((size_t)cols * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        float scale = (float)(0.02 + 0.2 * lyra_rng_f64(&rng));
        for (int64_t c = 0; c < cols; c++) x[c] = gauss() * scale;
        uint8_t *row = W + (size_t)r * rb;
        lyra_quantize_row(t, x, row, cols);
        if ((r & 1) && t != LYRA_TYPE_F32 && t != LYRA_TYPE_F16 && t != LYRA_TYPE_BF16) {
            size_t bb = lyra_type_block_bytes(t);
            for (size_t i = 0; i < rb; i++) row[i] = (uint8_t)lyra_rng_u64(&rng);
            for (size_t b = 0; b < rb / bb; b++) {
                uint8_t *blk = row + b * bb;
                uint16_t h1 = lyra_f32_to_fp16((float)(0.001 + 0.01 * lyra_rng_f64(&rng)));
                uint16_t h2 = lyra_f32_to_fp16((float)(0.001 + 0.01 * lyra_rng_f64(&rng)));
                if (t == LYRA_TYPE_Q6_K) memcpy(blk + 208, &h1, 2);
                else memcpy(blk, &h1, 2);
                if (t == LYRA_TYPE_Q4_K || t == LYRA_TYPE_Q5_K) memcpy(blk + 2, &h2, 2);
            }
        }
    }
    free(x);
}

typedef struct {
    lyra_type t;
    int64_t cols;
} kcase;

static void test_kernels(lyra_cpu_path path, lyra_pool **pools) {
    const kcase cases[] = {
        {LYRA_TYPE_Q8_0, 32},   {LYRA_TYPE_Q8_0, 96},  {LYRA_TYPE_Q8_0, 2048}, {LYRA_TYPE_Q8_0, 1056},
        {LYRA_TYPE_Q4_0, 32},   {LYRA_TYPE_Q4_0, 160}, {LYRA_TYPE_Q4_0, 2048}, {LYRA_TYPE_Q4_0, 608},
        {LYRA_TYPE_Q4_0, 1440}, {LYRA_TYPE_Q4_0, 5632}, {LYRA_TYPE_Q5_0, 32},  {LYRA_TYPE_Q5_0, 160},
        {LYRA_TYPE_Q5_0, 640},  {LYRA_TYPE_Q5_0, 2048}, {LYRA_TYPE_Q5_0, 608},  {LYRA_TYPE_Q4_K, 256},
        {LYRA_TYPE_Q4_K, 1280}, {LYRA_TYPE_Q5_K, 256}, {LYRA_TYPE_Q5_K, 768},  {LYRA_TYPE_Q6_K, 256},
        {LYRA_TYPE_Q6_K, 1792}, {LYRA_TYPE_F32, 1},    {LYRA_TYPE_F32, 70},    {LYRA_TYPE_F32, 1024},
        {LYRA_TYPE_F16, 13},    {LYRA_TYPE_F16, 64},   {LYRA_TYPE_F16, 1000},  {LYRA_TYPE_BF16, 33},
        {LYRA_TYPE_BF16, 512},
    };
    const int64_t rows = 37, ntok = 13;
    const char *pn = lyra_cpu_path_name(path);
    double worst_rel = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        lyra_type t = cases[ci].t, at = lyra_vec_dot_type(t);
        int64_t cols = cases[ci].cols;
        size_t wrow = lyra_row_bytes(t, cols), arow = lyra_row_bytes(at, cols);
        uint8_t *W = malloc(wrow * rows);
        float *X = malloc(sizeof(float) * cols * ntok), *wd = malloc(sizeof(float) * cols),
              *xd = malloc(sizeof(float) * cols);
        uint8_t *A = malloc(arow * ntok), *Aref = malloc(arow * ntok);
        float *dots = malloc(sizeof(float) * rows * ntok), *Y = malloc(sizeof(float) * rows * ntok);
        make_weights(t, W, rows, cols);
        for (int64_t i = 0; i < cols * ntok; i++) X[i] = gauss() * (i % 7 == 0 ? 3.0f : 1.0f);
        /* activations: same bytes as the scalar reference */
        int act_bad = 0;
        for (int64_t k = 0; k < ntok; k++) {
            lyra_quantize_act(path, t, X + k * cols, A + k * arow, cols);
            lyra_quantize_act(LYRA_CPU_SCALAR, t, X + k * cols, Aref + k * arow, cols);
        }
        act_bad = memcmp(A, Aref, arow * ntok) != 0;
        CHECK(!act_bad, "%s %s cols=%lld: quantize_act differs from scalar", pn, lyra_type_name(t),
              (long long)cols);
        /* vec_dot vs float64 and vs scalar */
        int nbad = 0, nmis = 0;
        for (int64_t k = 0; k < ntok; k++) {
            lyra_dequantize_row(at, Aref + k * arow, xd, cols);
            for (int64_t r = 0; r < rows; r++) {
                const uint8_t *w = W + r * wrow;
                lyra_dequantize_row(t, w, wd, cols);
                double ref = 0, mag = 0;
                for (int64_t c = 0; c < cols; c++) {
                    ref += (double)wd[c] * (double)xd[c];
                    mag += fabs((double)wd[c] * (double)xd[c]);
                }
                float got = lyra_vec_dot(path, t, cols, w, A + k * arow);
                float sc = lyra_vec_dot(LYRA_CPU_SCALAR, t, cols, w, Aref + k * arow);
                double err = fabs((double)got - ref);
                if (mag > 0 && err / mag > worst_rel) worst_rel = err / mag;
                if (!(err <= 1e-5 * mag + 1e-30)) {
                    if (!nbad++)
                        fprintf(stderr, "%s %s cols=%lld r=%lld t=%lld: %.9g vs f64 %.9g (mag %.3g)\n", pn,
                                lyra_type_name(t), (long long)cols, (long long)r, (long long)k, got, ref, mag);
                }
                if (lyra_bits_from_f32(got) != lyra_bits_from_f32(sc)) {
                    if (!nmis++)
                        fprintf(stderr, "%s %s cols=%lld r=%lld t=%lld: %.9g vs scalar %.9g\n", pn,
                                lyra_type_name(t), (long long)cols, (long long)r, (long long)k, got, sc);
                }
                dots[k * rows + r] = got;
            }
        }
        CHECK(nbad == 0, "%s %s cols=%lld: %d dots off the float64 reference", pn, lyra_type_name(t),
              (long long)cols, nbad);
        CHECK(nmis == 0, "%s %s cols=%lld: %d dots differ from scalar", pn, lyra_type_name(t),
              (long long)cols, nmis);
        /* matmul: ntok = 1 per token and ntok = 13 at once, 1/2/3 threads */
        void *work = malloc(lyra_matmul_work_size(t, cols, ntok) + 1);
        for (int pi = 0; pi < 3; pi++) {
            for (int mode = 0; mode < 2; mode++) {
                memset(Y, 0xff, sizeof(float) * rows * ntok);
                if (mode == 0)
                    for (int64_t k = 0; k < ntok; k++)
                        lyra_matmul(path, t, W, rows, cols, X + k * cols, 1, Y + k * rows, work, pools[pi]);
                else
                    lyra_matmul(path, t, W, rows, cols, X, ntok, Y, work, pools[pi]);
                int diff = 0;
                for (int64_t i = 0; i < rows * ntok; i++)
                    diff += lyra_bits_from_f32(Y[i]) != lyra_bits_from_f32(dots[i]);
                CHECK(diff == 0, "%s %s cols=%lld threads=%d %s: %d Y elements differ from vec_dot", pn,
                      lyra_type_name(t), (long long)cols, pi + 1, mode ? "ntok=13" : "ntok=1 x13", diff);
            }
        }
        free(work);
        free(W); free(X); free(wd); free(xd); free(A); free(Aref); free(dots); free(Y);
    }
    printf("path %-6s: vec_dot/matmul checked for %zu cases, worst |err|/sum|w*x| vs float64 = %.3g\n", pn,
           sizeof cases / sizeof cases[0], worst_rel);
}

/* ------------------------------------------------------------ 3. round trip */
static void test_roundtrip(void) {
    struct { lyra_type t; double bound; } cases[] = {
        {LYRA_TYPE_F16, 3.0e-4}, {LYRA_TYPE_BF16, 2.5e-3}, {LYRA_TYPE_Q8_0, 0.007},
        {LYRA_TYPE_Q4_0, 0.11},  {LYRA_TYPE_Q5_0, 0.055},  {LYRA_TYPE_Q4_K, 0.10},
        {LYRA_TYPE_Q5_K, 0.05},
        {LYRA_TYPE_Q6_K, 0.025}, {LYRA_TYPE_Q8_K, 0.009},
    };
    const int64_t n = 256 * 64;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
    uint8_t *q = malloc(lyra_row_bytes(LYRA_TYPE_F32, n));
    for (int64_t i = 0; i < n; i++) x[i] = gauss() * (float)(1 + (i / 256) % 5) * 0.01f;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        lyra_type t = cases[k].t;
        lyra_quantize_row(t, x, q, n);
        lyra_dequantize_row(t, q, y, n);
        double se = 0, sx = 0;
        for (int64_t i = 0; i < n; i++) {
            se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
            sx += (double)x[i] * x[i];
        }
        double rel = sqrt(se / sx);
        printf("round trip %-5s: relative RMS error %.5f (bound %.4f)\n", lyra_type_name(t), rel, cases[k].bound);
        CHECK(rel < cases[k].bound, "%s round trip error %g >= %g", lyra_type_name(t), rel, cases[k].bound);
        /* zero input stays exactly zero, and quantizing is deterministic */
        uint8_t *q2 = malloc(lyra_row_bytes(t, n));
        lyra_quantize_row(t, x, q2, n);
        CHECK(!memcmp(q, q2, lyra_row_bytes(t, n)), "%s quantize deterministic", lyra_type_name(t));
        float z[256] = {0}, zo[256];
        lyra_quantize_row(t, z, q2, 256);
        lyra_dequantize_row(t, q2, zo, 256);
        int nz = 0;
        for (int i = 0; i < 256; i++) nz += zo[i] != 0.0f;
        CHECK(nz == 0, "%s: zeros do not round-trip (%d nonzero)", lyra_type_name(t), nz);
        free(q2);
    }
    free(x);
    free(y);
    free(q);
}

/* Non-finite input stays in its block: quantizing a row with a NaN and an
 * inf changes no other block (and is free of undefined behaviour: run under
 * the sanitizers). Checked for every quantizer and every path's activations. */
static void test_nonfinite(void) {
    const int64_t n = 1024;
    float clean[1024], dirty[1024];
    for (int64_t i = 0; i < n; i++) clean[i] = dirty[i] = gauss();
    dirty[5] = NAN;
    dirty[700] = INFINITY;
    lyra_type ts[] = {LYRA_TYPE_F16, LYRA_TYPE_BF16, LYRA_TYPE_Q8_0, LYRA_TYPE_Q4_0,
                      LYRA_TYPE_Q5_0, LYRA_TYPE_Q4_K, LYRA_TYPE_Q5_K, LYRA_TYPE_Q6_K, LYRA_TYPE_Q8_K};
    uint8_t a[4096], b[4096];
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
        lyra_type t = ts[k];
        int64_t bs = lyra_type_block(t) == 1 ? 32 : lyra_type_block(t);
        size_t bb = lyra_row_bytes(t, bs);
        for (int p = -1; p <= LYRA_CPU_AVX512; p++) {
            if (p >= 0 && (!lyra_cpu_path_available((lyra_cpu_path)p) || (t != LYRA_TYPE_Q8_0 && t != LYRA_TYPE_Q8_K)))
                continue;
            lyra_type wt = t == LYRA_TYPE_Q8_K ? LYRA_TYPE_Q4_K : t;
            if (p < 0) {
                lyra_quantize_row(t, clean, a, n);
                lyra_quantize_row(t, dirty, b, n);
            } else {
                lyra_quantize_act((lyra_cpu_path)p, wt, clean, a, n);
                lyra_quantize_act((lyra_cpu_path)p, wt, dirty, b, n);
            }
            int bad = 0;
            for (int64_t blk = 0; blk < n / bs; blk++) {
                int special = (5 >= blk * bs && 5 < (blk + 1) * bs) || (700 >= blk * bs && 700 < (blk + 1) * bs);
                if (!special) bad += memcmp(a + blk * bb, b + blk * bb, bb) != 0;
            }
            CHECK(bad == 0, "%s (%s): %d blocks changed by a NaN/inf elsewhere", lyra_type_name(t),
                  p < 0 ? "quantize_row" : lyra_cpu_path_name((lyra_cpu_path)p), bad);
        }
    }
}

/* ------------------------------------------------------------ 4. f16/bf16 */
static void test_half(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lyra_fp16_to_f32((uint16_t)h);
        int nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (nan) bad += !isnan(f);
        else bad += lyra_f32_to_fp16(f) != h;
        float g = lyra_bf16_to_f32((uint16_t)h);
        int bnan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        if (bnan) bad += !isnan(g);
        else bad += lyra_f32_to_bf16(g) != h;
    }
    CHECK(bad == 0, "%d f16/bf16 values do not round-trip", bad);
    CHECK(lyra_f32_to_fp16(1.0f + 0x1p-11f) == 0x3c00, "f16 tie to even (down)");
    CHECK(lyra_f32_to_fp16(1.0f + 3 * 0x1p-11f) == 0x3c02, "f16 tie to even (up)");
    CHECK(lyra_f32_to_fp16(65520.0f) == 0x7c00 && lyra_f32_to_fp16(65519.0f) == 0x7bff, "f16 overflow");
    CHECK(lyra_f32_to_fp16(0x1p-25f) == 0 && lyra_f32_to_fp16(0x1.8p-25f) == 1, "f16 subnormal rounding");
    CHECK(lyra_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80 && lyra_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82,
          "bf16 tie to even");
    CHECK(isnan(lyra_bf16_to_f32(lyra_f32_to_bf16(NAN))) && isnan(lyra_fp16_to_f32(lyra_f32_to_fp16(NAN))),
          "NaN stays NaN");
}

/* ------------------------------------------------------------ 6. LYRA_CPU */
static void test_select(void) {
    lyra_cpu_path p;
    lyra_error err;
    unsetenv("LYRA_CPU");
    CHECK(lyra_cpu_path_select(&p, &err) == LYRA_OK && lyra_cpu_path_available(p), "default path");
    setenv("LYRA_CPU", "scalar", 1);
    CHECK(lyra_cpu_path_select(&p, &err) == LYRA_OK && p == LYRA_CPU_SCALAR, "LYRA_CPU=scalar");
    setenv("LYRA_CPU", "avx3", 1);
    int rc = lyra_cpu_path_select(&p, &err);
    CHECK(rc == LYRA_ERR_INPUT && !strncmp(err.msg, "LYRA_CPU: ", 10), "LYRA_CPU=avx3: rc %d '%s'", rc, err.msg);
    setenv("LYRA_CPU", "AVX2 ", 1);
    CHECK(lyra_cpu_path_select(&p, &err) == LYRA_ERR_INPUT, "LYRA_CPU='AVX2 ' malformed");
    for (int k = LYRA_CPU_AVX2; k <= LYRA_CPU_AVX512; k++) {
        setenv("LYRA_CPU", lyra_cpu_path_name((lyra_cpu_path)k), 1);
        rc = lyra_cpu_path_select(&p, &err);
        if (lyra_cpu_path_available((lyra_cpu_path)k))
            CHECK(rc == LYRA_OK && p == (lyra_cpu_path)k, "LYRA_CPU=%s", lyra_cpu_path_name(p));
        else
            CHECK(rc == LYRA_ERR_INPUT && !strncmp(err.msg, "LYRA_CPU: ", 10), "unavailable %s: %s",
                  lyra_cpu_path_name((lyra_cpu_path)k), err.msg);
    }
    unsetenv("LYRA_CPU");
}

int main(void) {
    lyra_rng_seed(&rng, 42);
    test_table();
    test_half();
    test_select();
    test_roundtrip();
    test_nonfinite();
    lyra_pool *pools[3] = {lyra_pool_new(1), lyra_pool_new(2), lyra_pool_new(3)};
    for (int k = LYRA_CPU_SCALAR; k <= LYRA_CPU_AVX512; k++) {
        lyra_cpu_path p = (lyra_cpu_path)k;
        if (!lyra_cpu_path_available(p)) {
            printf("path %-6s: NOT tested (%s)\n", lyra_cpu_path_name(p),
                   lyra_cpu_path_compiled(p) ? "this CPU lacks it" : "not built in");
            continue;
        }
        test_kernels(p, pools);
    }
    for (int i = 0; i < 3; i++) lyra_pool_free(pools[i]);
    return test_done();
}
