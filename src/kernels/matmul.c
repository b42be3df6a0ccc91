/* matmul.c: CPU kernel path selection (scalar / AVX2 / AVX-512), the
 * scalar kernels that define the canonical evaluation order of every dot
 * product (see kernels_impl.h), activation quantization dispatch and the
 * threaded, tiled lyra_matmul. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
#include "kernels/kernels.h"
#include "kernels/kernels_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/env.h"
#include "core/fp16.h"

#if LYRA_X86
#include <cpuid.h>
#endif

/* ------------------------------------------------------------- paths */

const char *lyra_cpu_path_name(lyra_cpu_path p) {
    switch (p) {
    case LYRA_CPU_SCALAR: return "scalar";
    case LYRA_CPU_AVX2: return "avx2";
    case LYRA_CPU_AVX512: return "avx512";
    }
    return "?";
}

int lyra_cpu_path_compiled(lyra_cpu_path p) {
    if (p == LYRA_CPU_SCALAR) return 1;
#if LYRA_X86
    return p == LYRA_CPU_AVX2 || p == LYRA_CPU_AVX512;
#else
    return 0;
#endif
}

int lyra_cpu_path_available(lyra_cpu_path p) {
    if (!lyra_cpu_path_compiled(p)) return 0;
    if (p == LYRA_CPU_SCALAR) return 1;
#if LYRA_X86
    __builtin_cpu_init();
    /* F16C via cpuid (leaf 1, ecx bit 29): clang's builtin lacks the name */
    unsigned eax, ebx, ecx = 0, edx;
    int f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29));
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
    if (p == LYRA_CPU_AVX2) return avx2;
    if (p == LYRA_CPU_AVX512)
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vnni");
#endif
    return 0;
}

int lyra_cpu_path_select(lyra_cpu_path *out, lyra_error *err) {
    return lyra_cpu_path_parse(lyra_backend_params_from_env().cpu_path, out, err);
}

int lyra_cpu_path_parse(const char *env, lyra_cpu_path *out, lyra_error *err) {
    if (env && *env) {
        lyra_cpu_path p;
        if (!strcmp(env, "scalar")) p = LYRA_CPU_SCALAR;
        else if (!strcmp(env, "avx2")) p = LYRA_CPU_AVX2;
        else if (!strcmp(env, "avx512")) p = LYRA_CPU_AVX512;
        else
            return lyra_err(err, LYRA_ERR_INPUT, "LYRA_CPU",
                            "unknown CPU path '%.64s' (expected scalar, avx2 or avx512)", env);
        if (!lyra_cpu_path_available(p))
            return lyra_err(err, LYRA_ERR_INPUT, "LYRA_CPU", "CPU path '%s' is not %s", env,
                            lyra_cpu_path_compiled(p) ? "supported by this CPU"
                                                      : "built into this binary");
        *out = p;
        return LYRA_OK;
    }
    *out = lyra_cpu_path_available(LYRA_CPU_AVX512) ? LYRA_CPU_AVX512
           : lyra_cpu_path_available(LYRA_CPU_AVX2) ? LYRA_CPU_AVX2
                                                    : LYRA_CPU_SCALAR;
    return LYRA_OK;
}

lyra_type lyra_vec_dot_type(lyra_type t) {
    switch (t) {
    case LYRA_TYPE_Q8_0: case LYRA_TYPE_Q4_0: case LYRA_TYPE_Q5_0: return LYRA_TYPE_Q8_0;
    case LYRA_TYPE_Q4_K: case LYRA_TYPE_Q5_K: case LYRA_TYPE_Q6_K: return LYRA_TYPE_Q8_K;
    default: return LYRA_TYPE_F32;
    }
}

/* ------------------------------------------------- scalar kernels */

static inline float rdh(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return lyra_fp16_to_f32(v); }
static inline int16_t rdi16(const uint8_t *p) { int16_t v; memcpy(&v, p, 2); return v; }

/* Fixed halving sums of the canonical lanes. */
static float reduce16(float *acc) {
    for (int l = 0; l < 8; l++) acc[l] = acc[l] + acc[l + 8];
    for (int l = 0; l < 4; l++) acc[l] = acc[l] + acc[l + 4];
    for (int l = 0; l < 2; l++) acc[l] = acc[l] + acc[l + 2];
    return acc[0] + acc[1];
}

static float reduce32(float *acc) {
    for (int l = 0; l < 16; l++) acc[l] = acc[l] + acc[l + 16];
    return reduce16(acc);
}

/* w: n/32 blocks of Q8_0; a: Q8_0 blocks. */
static float dot_q8_0(int64_t n, const uint8_t *w, const uint8_t *a) {
    float acc[16] = {0};
    for (int64_t b = 0; b < n / 32; b++, w += 34, a += 34) {
        float s = rdh(w) * rdh(a);
        const int8_t *x = (const int8_t *)(a + 2);
        int base = (int)(b & 1) * 8;
        for (int l = 0; l < 8; l++) {
            int p = 0;
            for (int i = 4 * l; i < 4 * l + 4; i++) p += (int8_t)w[2 + i] * x[i];
            acc[base + l] = fmaf((float)p, s, acc[base + l]);
        }
    }
    return reduce16(acc);
}

/* w: n/32 blocks of Q4_0; a: Q8_0 blocks. One exact int32 sum per block,
 * one FMA into lane LYRA_Q4_LANE(b). */
static float dot_q4_0(int64_t n, const uint8_t *w, const uint8_t *a) {
    float acc[16] = {0};
    for (int64_t b = 0; b < n / 32; b++, w += 18, a += 34) {
        const int8_t *x = (const int8_t *)(a + 2);
        int s = 0;
        for (int i = 0; i < 16; i++) s += ((w[2 + i] & 0xF) - 8) * x[i] + ((w[2 + i] >> 4) - 8) * x[i + 16];
        int l = LYRA_Q4_LANE(b);
        acc[l] = fmaf((float)s, rdh(w) * rdh(a), acc[l]);
    }
    return reduce16(acc);
}

/* w: n/32 blocks of Q5_0; a: Q8_0 blocks. As Q4_0: one exact int32 sum of
 * (q-16)*x per block, one FMA into lane LYRA_Q4_LANE(b). */
static float dot_q5_0(int64_t n, const uint8_t *w, const uint8_t *a) {
    float acc[16] = {0};
    for (int64_t b = 0; b < n / 32; b++, w += 22, a += 34) {
        const int8_t *x = (const int8_t *)(a + 2);
        uint32_t qh;
        memcpy(&qh, w + 2, 4);
        int s = 0;
        for (int i = 0; i < 16; i++) {
            int lo = (w[6 + i] & 0xF) | (int)((qh >> i) & 1) << 4;
            int hi = (w[6 + i] >> 4) | (int)((qh >> (i + 16)) & 1) << 4;
            s += (lo - 16) * x[i] + (hi - 16) * x[i + 16];
        }
        int l = LYRA_Q4_LANE(b);
        acc[l] = fmaf((float)s, rdh(w) * rdh(a), acc[l]);
    }
    return reduce16(acc);
}

/* Q4_K (kind 4), Q5_K (5), Q6_K (6) weights x Q8_K activations: one exact
 * int32 sum per sub-block, one FMA per sub-block into its canonical lane
 * (kernels_impl.h). */
static float dot_k(int kind, int64_t n, const uint8_t *w, const uint8_t *a) {
    float acc[16] = {0};
    size_t wb = kind == 4 ? 144 : kind == 5 ? 176 : 210;
    for (int64_t b = 0; b < n / 256; b++, w += wb, a += 292) {
        const int8_t *x = (const int8_t *)(a + 4);
        float ad;
        memcpy(&ad, a, 4);
        if (kind == 6) {
            const int8_t *sc = (const int8_t *)(w + 192);
            float d = rdh(w + 208);
            for (int j = 0; j < 16; j++) {
                int D = 0;
                for (int e = 16 * j; e < 16 * j + 16; e++) D += (lyra_q6k_value(w, e) - 32) * x[e];
                int l = LYRA_K6_LANE(j);
                acc[l] = fmaf((float)D, ((float)sc[j] * d) * ad, acc[l]);
            }
            continue;
        }
        const uint8_t *qs = kind == 4 ? w + 16 : w + 48, *qh = w + 16;
        float d = rdh(w), dmin = rdh(w + 2);
        for (int j = 0; j < 8; j++) {
            int sc, m, D = 0;
            lyra_q4k_scale_min(w + 4, j, &sc, &m);
            for (int e = 32 * j; e < 32 * j + 32; e++) {
                int g = e >> 6, p = e & 63;
                int q = p < 32 ? (qs[32 * g + p] & 0xF) : (qs[32 * g + p - 32] >> 4);
                if (kind == 5) q |= ((qh[e & 31] >> j) & 1) << 4;
                D += q * x[e];
            }
            int B = rdi16(a + 260 + 4 * j) + rdi16(a + 262 + 4 * j);
            int l = LYRA_K4_LANE(b, j);
            acc[l] = fmaf((float)D, ((float)sc * d) * ad, acc[l]);
            acc[l] = fmaf((float)B * ad, -((float)m * dmin), acc[l]);
        }
    }
    return reduce16(acc);
}

/* Float weights (F32, F16, BF16) x F32 activations. */
static float dot_float(lyra_type wt, int64_t n, const uint8_t *w, const float *x) {
    float acc[32] = {0};
    for (int64_t i = 0; i < n; i++) {
        float v;
        if (wt == LYRA_TYPE_F32) memcpy(&v, w + 4 * i, 4);
        else if (wt == LYRA_TYPE_F16) v = rdh(w + 2 * i);
        else v = lyra_bf16_to_f32((uint16_t)rdi16(w + 2 * i));
        acc[i & 31] = fmaf(v, x[i], acc[i & 31]);
    }
    return reduce32(acc);
}

static float dot_scalar(lyra_type wt, int64_t n, const uint8_t *w, const uint8_t *a) {
    switch (wt) {
    case LYRA_TYPE_Q8_0: return dot_q8_0(n, w, a);
    case LYRA_TYPE_Q4_0: return dot_q4_0(n, w, a);
    case LYRA_TYPE_Q5_0: return dot_q5_0(n, w, a);
    case LYRA_TYPE_Q4_K: return dot_k(4, n, w, a);
    case LYRA_TYPE_Q5_K: return dot_k(5, n, w, a);
    case LYRA_TYPE_Q6_K: return dot_k(6, n, w, a);
    case LYRA_TYPE_F32: case LYRA_TYPE_F16: case LYRA_TYPE_BF16:
        return dot_float(wt, n, w, (const float *)(const void *)a);
    default: return 0.0f;
    }
}

int lyra_tile_scalar(lyra_type wt, int64_t n, const uint8_t *w, size_t wstride, int nr,
                     const uint8_t *a, size_t astride, int nt, float *y, size_t ys) {
    if (!lyra_type_supported(wt)) return 0;
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < nr; r++)
            y[(size_t)t * ys + r] = dot_scalar(wt, n, w + (size_t)r * wstride, a + (size_t)t * astride);
    return 1;
}

static void shape_scalar(lyra_type wt, int64_t ntok, int *R, int *T) {
    (void)wt;
    (void)ntok;
    *R = 4;
    *T = 1;
}

/* ------------------------------------------------------ dispatch */

static lyra_tile_fn path_tile(lyra_cpu_path p) {
#if LYRA_X86
    if (p == LYRA_CPU_AVX2) return lyra_tile_avx2;
    if (p == LYRA_CPU_AVX512) return lyra_tile_avx512;
#endif
    (void)p;
    return lyra_tile_scalar;
}

/* The tile kernel for wt on path p: the path's own, else (AVX-512 lacks
 * Q5_0) AVX2's, else scalar; *tp: the path whose tile shape goes with it. */
static lyra_tile_fn tile_for(lyra_cpu_path p, lyra_type wt, lyra_cpu_path *tp) {
    *tp = p;
    lyra_tile_fn f = path_tile(p);
    if (f(wt, 0, NULL, 0, 0, NULL, 0, 0, NULL, 0)) return f;
    if (p == LYRA_CPU_AVX512) {
        f = path_tile(LYRA_CPU_AVX2);
        *tp = LYRA_CPU_AVX2;
        if (f(wt, 0, NULL, 0, 0, NULL, 0, 0, NULL, 0)) return f;
    }
    *tp = LYRA_CPU_SCALAR;
    return lyra_tile_scalar;
}

static lyra_act_fn path_act(lyra_cpu_path p) {
#if LYRA_X86
    if (p == LYRA_CPU_AVX2) return lyra_act_avx2;
    if (p == LYRA_CPU_AVX512) return lyra_act_avx512;
#endif
    (void)p;
    return NULL;
}

static lyra_shape_fn path_shape(lyra_cpu_path p) {
#if LYRA_X86
    if (p == LYRA_CPU_AVX2) return lyra_shape_avx2;
    if (p == LYRA_CPU_AVX512) return lyra_shape_avx512;
#endif
    (void)p;
    return shape_scalar;
}

void lyra_quantize_act(lyra_cpu_path p, lyra_type wt, const float *x, void *dst, int64_t n) {
    lyra_type at = lyra_vec_dot_type(wt);
    if (at == LYRA_TYPE_F32) {
        memmove(dst, x, (size_t)n * sizeof(float));
        return;
    }
    lyra_act_fn fn = path_act(p);
    if (fn && fn(at, x, dst, n)) return;
    if (at == LYRA_TYPE_Q8_0) lyra_quantize_q8_0_ref(x, dst, n);
    else lyra_quantize_q8_k_ref(x, dst, n);
}

float lyra_vec_dot(lyra_cpu_path p, lyra_type wt, int64_t n, const void *w, const void *act) {
    float y = 0.0f;
    lyra_cpu_path tp;
    tile_for(p, wt, &tp)(wt, n, w, 0, 1, act, 0, 1, &y, 1);
    return y;
}

/* ------------------------------------------------------ matmul */

size_t lyra_matmul_work_size(lyra_type wt, int64_t cols, int64_t ntok) {
    lyra_type at = lyra_vec_dot_type(wt);
    if (at == LYRA_TYPE_F32) return 0; /* X is used as is */
    size_t row = lyra_row_bytes(at, cols);
#if LYRA_X86
    /* room for the AVX-512 path's private layouts */
    size_t packed = lyra_mm_act_bytes_avx512(wt, cols);
    if (packed > row) row = packed;
#endif
    return row * (size_t)ntok;
}

typedef struct {
    lyra_cpu_path p;     /* kernel path */
    lyra_type wt;        /* weight type */
    lyra_type at;        /* activation type (lyra_vec_dot_type(wt)) */
    const uint8_t *W;    /* [rows][wrow bytes] */
    int64_t rows, cols;  /* W's shape */
    const float *X;      /* [ntok][cols] */
    int64_t ntok;        /* tokens */
    float *Y;            /* [ntok][rows] */
    uint8_t *A;          /* [ntok][arow bytes] activations (X itself for F32) */
    size_t wrow, arow;   /* bytes per weight / activation row */
    lyra_tile_fn tile;   /* kernel (tile_for: another path's when p lacks one for wt) */
    int R, T;            /* tile shape */
    int packed;          /* activations in the path's private layout */
    size_t prow;         /* >0: bytes per row of repacked weights (AVX-512 batches) */
    lyra_tile_fn ptile;  /* the tile on repacked weights, and its shape */
    int PR, PT;
} mm_job;

/* Repacked weights: bytes of a thread's row block (it stays in L2 while
 * every token tile passes over it). */
#ifndef LYRA_MM_PACK_BYTES
#define LYRA_MM_PACK_BYTES (512 * 1024)
#endif

/* Threads split tokens: convert X rows to the activation type. */
static void mm_quantize(void *arg, int ith, int nth) {
    mm_job *j = arg;
    long t0, t1;
    lyra_split_rows((long)j->ntok, ith, nth, &t0, &t1);
    for (long t = t0; t < t1; t++) {
        const float *x = j->X + (size_t)t * (size_t)j->cols;
        uint8_t *dst = j->A + (size_t)t * j->arow;
#if LYRA_X86
        if (j->packed) {
            lyra_mm_act_avx512(j->wt, j->ntok, x, dst, j->cols);
            continue;
        }
#endif
        lyra_quantize_act(j->p, j->wt, x, dst, j->cols);
    }
}

/* Threads split output rows; tiles of R rows x T tokens. A thread's rows go
 * in blocks whose weights (~1 MB) stay in L2 while every token tile passes
 * over them, so each weight byte comes from memory once per matmul and the
 * T activation rows of a tile stay in L1 across the block's row tiles. */
static void mm_compute(void *arg, int ith, int nth) {
    mm_job *j = arg;
    long r0, r1;
    lyra_split_rows((long)j->rows, ith, nth, &r0, &r1);
    lyra_tile_fn tile = j->tile;
    int R = j->R, T = j->T;
    size_t wrow = j->wrow;
    long rb = 0;
    uint8_t *pk = NULL; /* the block's repacked weights (the same results without) */
#if LYRA_X86
    if (j->prow && r1 > r0) {
        rb = (long)(LYRA_MM_PACK_BYTES / j->prow) / j->PR * j->PR;
        if (rb < j->PR) rb = j->PR;
        if (rb > r1 - r0) rb = r1 - r0;
        pk = aligned_alloc(64, (size_t)rb * j->prow);
        if (pk) tile = j->ptile, R = j->PR, T = j->PT, wrow = j->prow;
    }
#endif
    if (!pk) {
        rb = (long)(((size_t)1 << 20) / (j->wrow ? j->wrow : 1)) / R * R;
        if (rb < R) rb = R;
    }
    for (long b0 = r0; b0 < r1; b0 += rb) {
        long b1 = b0 + rb < r1 ? b0 + rb : r1;
        const uint8_t *W = j->W + (size_t)b0 * j->wrow;
#if LYRA_X86
        if (pk) {
            lyra_mm_wpack_avx512(j->wt, j->cols, W, j->wrow, (int)(b1 - b0), pk);
            W = pk;
        }
#endif
        for (int64_t t = 0; t < j->ntok; t += T) {
            int nt = (int)(j->ntok - t < T ? j->ntok - t : T);
            for (long r = b0; r < b1; r += R) {
                int nr = (int)(b1 - r < R ? b1 - r : R);
                tile(j->wt, j->cols, W + (size_t)(r - b0) * wrow, wrow, nr, j->A + (size_t)t * j->arow, j->arow,
                     nt, j->Y + (size_t)t * (size_t)j->rows + r, (size_t)j->rows);
            }
        }
    }
    free(pk);
}

void lyra_matmul(lyra_cpu_path p, lyra_type wt, const void *W, int64_t rows, int64_t cols,
                 const float *X, int64_t ntok, float *Y, void *work, lyra_pool *pool) {
    if (rows <= 0 || ntok <= 0) return;
    mm_job j = {.p = p, .wt = wt, .at = lyra_vec_dot_type(wt), .W = W, .rows = rows, .cols = cols,
                .X = X, .ntok = ntok, .Y = Y, .wrow = lyra_row_bytes(wt, cols)};
    j.arow = lyra_row_bytes(j.at, cols);
    lyra_cpu_path tp;
    j.tile = tile_for(p, wt, &tp);
    path_shape(tp)(wt, ntok, &j.R, &j.T);
#if LYRA_X86
    if (p == LYRA_CPU_AVX512 && lyra_mm_act_bytes_avx512(wt, cols)) {
        j.packed = 1;
        j.arow = lyra_mm_act_bytes_avx512(wt, cols);
        j.tile = lyra_mm_tile_avx512(wt, ntok);
        lyra_mm_shape_avx512(wt, ntok, &j.R, &j.T);
        j.prow = lyra_mm_wpack_bytes_avx512(wt, cols, ntok);
        j.ptile = lyra_mm_wtile_avx512;
        lyra_mm_wshape_avx512(wt, ntok, &j.PR, &j.PT);
    }
#endif
    if (j.at == LYRA_TYPE_F32) {
        j.A = (uint8_t *)(uintptr_t)X;
    } else {
        j.A = work;
        /* a token or two: convert here rather than pay a thread handoff */
        if (ntok <= 2) mm_quantize(&j, 0, 1);
        else lyra_pool_run(pool, mm_quantize, &j);
    }
    lyra_pool_run(pool, mm_compute, &j);
}
