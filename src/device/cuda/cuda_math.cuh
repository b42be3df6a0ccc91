/* cuda_math.cuh: the CUDA device's per-block arithmetic, written once as
 * host+device functions: the kernels call them on the GPU, and the host
 * emulation (cuda_check.cu, lyra_cuda_host_* in cuda.h) calls the same code
 * on the CPU so tests check it against lyra's reference without a GPU.
 *
 * A "unit" is 32 consecutive elements of a weight row: a Q8_0/Q4_0 block,
 * one 32-element sub-block of a K-quant super-block, or 32 floats. The
 * decode kernel gives unit u of a row to lane u % 32 of a warp.
 *
 * Activations dotted with quantized weights are quantized exactly as the CPU
 * quantizes them (lyra_vec_dot_type: Q8_0 for Q8_0/Q4_0, Q8_K for K-quants;
 * d = amax/127, q = round-half-away(x * (1/d))), so each unit's integer dot
 * product equals the CPU's and only the float summation order differs. On
 * the GPU they live in the device's own layout (lc_act below), not in
 * blocks. Dequantization repeats the CPU's float operations one by one with
 * non-contracted multiplies (lc_mul/lc_sub), so get_rows is bit-exact. */
#ifndef LYRA_CUDA_MATH_CUH
#define LYRA_CUDA_MATH_CUH

#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

extern "C" {
#include "core/fp16.h"
#include "quant/quant.h"
}

#define LC_HD __host__ __device__ __forceinline__
#define LC_UNIT 32 /* elements per unit */

/* ------------------------------------------------------------ primitives */

/* 16 bits at p (2-byte aligned: every block field lyra reads is). */
LC_HD uint16_t lc_ld16(const uint8_t *p) {
#ifdef __CUDA_ARCH__
    return *(const uint16_t *)p;
#else
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
#endif
}

/* 32 bits at a 2-byte aligned p (blocks of 34, 18 and 210 bytes leave
 * nothing better than 2-byte alignment), little-endian. */
LC_HD uint32_t lc_ld32(const uint8_t *p) {
    return (uint32_t)lc_ld16(p) | (uint32_t)lc_ld16(p + 2) << 16;
}

LC_HD float lc_h2f(uint16_t h) {
#ifdef __CUDA_ARCH__
    return __half2float(__ushort_as_half(h));
#else
    return lyra_fp16_to_f32(h);
#endif
}

/* float -> half bits, round to nearest even (as lyra_f32_to_fp16). */
LC_HD uint16_t lc_f2h(float f) {
#ifdef __CUDA_ARCH__
    return __half_as_ushort(__float2half_rn(f));
#else
    return lyra_f32_to_fp16(f);
#endif
}

LC_HD float lc_bf2f(uint16_t b) {
#ifdef __CUDA_ARCH__
    return __uint_as_float((uint32_t)b << 16);
#else
    return lyra_bf16_to_f32(b);
#endif
}

/* c + the dot product of the four signed bytes of a and b. */
LC_HD int lc_dp4a(int a, int b, int c) {
#ifdef __CUDA_ARCH__
    return __dp4a(a, b, c);
#else
    for (int i = 0; i < 4; i++)
        c += (int)(int8_t)(uint8_t)((uint32_t)a >> (8 * i)) *
             (int)(int8_t)(uint8_t)((uint32_t)b >> (8 * i));
    return c;
#endif
}

/* a * b and a - b, never contracted into an FMA (the CPU's dequantizers
 * round every product). */
LC_HD float lc_mul(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

LC_HD float lc_sub(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}

LC_HD float lc_add(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

/* ------------------------------------------------- activation quantization */

/* Scale of a Q8 block whose largest magnitude is amax: d = amax/127 and its
 * inverse (0 for an all-zero block), as lyra_quantize_row. */
LC_HD void lc_q8_scale(float amax, float *d, float *id) {
    *d = amax / 127.0f;
    *id = *d != 0.0f ? 1.0f / *d : 0.0f;
}

/* round-half-away(x * id) as the CPU's nearest_int: NaN and out-of-range
 * values (only from non-finite input) give 0. */
LC_HD int lc_q8_val(float x, float id) {
    float r = roundf(lc_mul(x, id));
    return r > -2147483520.0f && r < 2147483520.0f ? (int)r : 0;
}

/* Packed int8 bytes of four ints (each in -128..127). */
LC_HD int lc_pack4(int a, int b, int c, int d) {
    return (int)((uint32_t)(uint8_t)a | (uint32_t)(uint8_t)b << 8 | (uint32_t)(uint8_t)c << 16 |
                 (uint32_t)(uint8_t)d << 24);
}

/* Quantized activations of ntok rows of n elements in the device's layout.
 * ablk = 32 (Q8_0: d is the f16-rounded scale, as the CPU's dot products
 * read it) or 256 (Q8_K: d in f32, and bs holds the sums of each 16 q). */
typedef struct lc_act {
    int8_t *q;    /* [ntok][n] quantized values */
    float *d;     /* [ntok][n / ablk] block scales */
    int16_t *bs;  /* [ntok][n / 16] sums of 16 q (Q8_K), else NULL */
    int64_t n;    /* elements per row */
    int ablk;     /* elements per scale: 32 (Q8_0) or 256 (Q8_K) */
} lc_act;

/* ------------------------------------------------------ weight units */

/* One unit of a quantized weight row, unpacked for dp4a: q[i] holds the
 * bytes of elements 4i..4i+3, as stored values (Q8_0: signed; Q4_0: 0..15,
 * the -8 applied in the dot; Q4_K 0..15, Q5_K 0..31, Q6_K 0..63). */
typedef struct lc_wq {
    int q[8];    /* packed element values */
    float d;     /* block scale (K-quants: super-block d) */
    float dm;    /* Q4_K/Q5_K: super-block dmin */
    int sc;      /* K-quants: sub-block scale (Q6_K: of elements 0..15) */
    int m;       /* Q4_K/Q5_K: sub-block min */
    int sc1;     /* Q6_K: scale of elements 16..31 */
} lc_wq;

/* Q4_K/Q5_K: 6-bit scale and min of sub-block j from the 12 bytes s. */
LC_HD void lc_q4k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Unit u of a row of type T (quantized types only). Block layouts: quant.h. */
template <int T>
LC_HD void lc_unpack(const uint8_t *row, int64_t u, lc_wq *w) {
    if (T == LYRA_TYPE_Q8_0) { /* d f16, qs[32] int8 */
        const uint8_t *b = row + 34 * u;
        w->d = lc_h2f(lc_ld16(b));
        for (int i = 0; i < 8; i++) w->q[i] = (int)lc_ld32(b + 2 + 4 * i);
    } else if (T == LYRA_TYPE_Q4_0) { /* d f16, qs[16]: element j low nibble, j+16 high */
        const uint8_t *b = row + 18 * u;
        w->d = lc_h2f(lc_ld16(b));
        for (int i = 0; i < 4; i++) {
            uint32_t v = lc_ld32(b + 2 + 4 * i);
            w->q[i] = (int)(v & 0x0F0F0F0Fu);
            w->q[i + 4] = (int)((v >> 4) & 0x0F0F0F0Fu);
        }
    } else if (T == LYRA_TYPE_Q4_K || T == LYRA_TYPE_Q5_K) {
        /* d, dmin f16; scales[12]; Q5_K: qh[32]; qs[128]: sub-block j is the
         * low (j even) or high (j odd) nibbles of qs[32*(j/2) ..+32] */
        const int Q5 = T == LYRA_TYPE_Q5_K;
        const uint8_t *b = row + (Q5 ? 176 : 144) * (u >> 3);
        const int j = (int)(u & 7), shift = (j & 1) * 4;
        w->d = lc_h2f(lc_ld16(b));
        w->dm = lc_h2f(lc_ld16(b + 2));
        lc_q4k_scale_min(b + 4, j, &w->sc, &w->m);
        const uint8_t *qs = b + (Q5 ? 48 : 16) + 32 * (j >> 1);
        for (int i = 0; i < 8; i++) {
            uint32_t v = (lc_ld32(qs + 4 * i) >> shift) & 0x0F0F0F0Fu;
            if (Q5) v |= ((lc_ld32(b + 16 + 4 * i) >> j) & 0x01010101u) << 4; /* bit j of qh[k] */
            w->q[i] = (int)v;
        }
    } else if (T == LYRA_TYPE_Q6_K) {
        /* ql[128], qh[64], scales[16] int8, d f16. Element e = 32j + k:
         * h = j/4, s = j%4; low 4 bits from ql[64h + 32(s%2) + k] (low nibble
         * for s < 2, high for s >= 2), high 2 bits (qh[32h + k] >> 2s) & 3;
         * scale scales[e/16] */
        const uint8_t *b = row + 210 * (u >> 3);
        const int j = (int)(u & 7), h = j >> 2, s = j & 3;
        const uint8_t *ql = b + 64 * h + 32 * (s & 1), *qh = b + 128 + 32 * h;
        const int lsh = (s >> 1) * 4;
        for (int i = 0; i < 8; i++) {
            uint32_t lo = (lc_ld32(ql + 4 * i) >> lsh) & 0x0F0F0F0Fu;
            uint32_t hi = (lc_ld32(qh + 4 * i) >> (2 * s)) & 0x03030303u;
            w->q[i] = (int)(lo | hi << 4);
        }
        w->sc = (int8_t)b[192 + 2 * j];
        w->sc1 = (int8_t)b[192 + 2 * j + 1];
        w->d = lc_h2f(lc_ld16(b + 208));
    }
}

/* Contribution of one unfolded unit to a dot product with the unit's
 * quantized activations x[8] (packed int8), their block scale dx and (Q8_K)
 * the sums of their two halves bs0, bs1. The integer part is exact; the
 * float part follows the CPU's formulas (quant_impl.h). */
template <int T>
LC_HD float lc_unit_dot(const lc_wq *w, const int *x, float dx, int bs0, int bs1) {
    if (T == LYRA_TYPE_Q8_0) {
        int s = 0;
        for (int i = 0; i < 8; i++) s = lc_dp4a(w->q[i], x[i], s);
        return (float)s * (w->d * dx);
    } else if (T == LYRA_TYPE_Q4_0) { /* sum (q-8)*x = sum q*x - 8*sum x */
        int s = 0, sx = 0;
        for (int i = 0; i < 8; i++) {
            s = lc_dp4a(w->q[i], x[i], s);
            sx = lc_dp4a(0x01010101, x[i], sx);
        }
        return (float)(s - 8 * sx) * (w->d * dx);
    } else if (T == LYRA_TYPE_Q4_K || T == LYRA_TYPE_Q5_K) {
        int s = 0;
        for (int i = 0; i < 8; i++) s = lc_dp4a(w->q[i], x[i], s);
        /* d*sc*sum(q*x)*dx - dmin*m*sum(x)*dx */
        return (float)(w->sc * s) * (w->d * dx) + (float)(w->m * (bs0 + bs1)) * (-(w->dm * dx));
    } else if (T == LYRA_TYPE_Q6_K) { /* sum sc*(q-32)*x over the two halves */
        int s0 = 0, s1 = 0;
        for (int i = 0; i < 4; i++) s0 = lc_dp4a(w->q[i], x[i], s0);
        for (int i = 4; i < 8; i++) s1 = lc_dp4a(w->q[i], x[i], s1);
        int t = w->sc * (s0 - 32 * bs0) + w->sc1 * (s1 - 32 * bs1);
        return (float)t * (w->d * dx);
    }
    return 0.0f;
}

/* Element k (0..31) of an unpacked unit: its stored byte value. */
LC_HD int lc_wq_byte(const lc_wq *w, int k) {
    return (int)(((uint32_t)w->q[k >> 2] >> (8 * (k & 3))) & 0xFF);
}

/* Element i of a float-type row (F32, F16, BF16). */
template <int T>
LC_HD float lc_float_elem(const uint8_t *row, int64_t i) {
    if (T == LYRA_TYPE_F32) {
#ifdef __CUDA_ARCH__
        return ((const float *)row)[i];
#else
        float v;
        memcpy(&v, row + 4 * i, 4);
        return v;
#endif
    }
    if (T == LYRA_TYPE_F16) return lc_h2f(lc_ld16(row + 2 * i));
    return lc_bf2f(lc_ld16(row + 2 * i));
}

/* Unit u of a row of n elements of type T dequantized into v[32] with the
 * CPU's float operations (lyra_dequantize_row); returns the number of valid
 * elements (32, or fewer for the last unit of a float row). */
template <int T>
LC_HD int lc_dequant_unit(const uint8_t *row, int64_t u, int64_t n, float *v) {
    if (T == LYRA_TYPE_F32 || T == LYRA_TYPE_F16 || T == LYRA_TYPE_BF16) {
        int64_t left = n - LC_UNIT * u;
        int nv = left < LC_UNIT ? (int)left : LC_UNIT;
        for (int k = 0; k < nv; k++) v[k] = lc_float_elem<T>(row, LC_UNIT * u + k);
        return nv;
    }
    lc_wq w;
    lc_unpack<T>(row, u, &w);
    if (T == LYRA_TYPE_Q8_0) {
        for (int k = 0; k < 32; k++) v[k] = lc_mul((float)(int8_t)(uint8_t)lc_wq_byte(&w, k), w.d);
    } else if (T == LYRA_TYPE_Q4_0) {
        for (int k = 0; k < 32; k++) v[k] = lc_mul(w.d, (float)(lc_wq_byte(&w, k) - 8));
    } else if (T == LYRA_TYPE_Q4_K || T == LYRA_TYPE_Q5_K) {
        float dj = lc_mul(w.d, (float)w.sc), mj = lc_mul(w.dm, (float)w.m);
        for (int k = 0; k < 32; k++) v[k] = lc_sub(lc_mul(dj, (float)lc_wq_byte(&w, k)), mj);
    } else if (T == LYRA_TYPE_Q6_K) {
        float d0 = lc_mul(w.d, (float)w.sc), d1 = lc_mul(w.d, (float)w.sc1);
        for (int k = 0; k < 32; k++)
            v[k] = lc_mul(k < 16 ? d0 : d1, (float)(lc_wq_byte(&w, k) - 32));
    }
    return 32;
}

/* acc + w[k] * x[k] for k < nv, added in order (a float unit into a
 * lane's accumulator, as the decode kernel adds it). */
LC_HD float lc_float_acc(float acc, const float *w, const float *x, int nv) {
    for (int k = 0; k < nv; k++) acc += w[k] * x[k];
    return acc;
}

/* 1 for the weight types the CUDA device computes with. */
LC_HD int lc_type_ok(int t) {
    return t == LYRA_TYPE_F32 || t == LYRA_TYPE_F16 || t == LYRA_TYPE_BF16 ||
           t == LYRA_TYPE_Q8_0 || t == LYRA_TYPE_Q4_0 || t == LYRA_TYPE_Q4_K ||
           t == LYRA_TYPE_Q5_K || t == LYRA_TYPE_Q6_K;
}

/* Call F<T>(args...) for weight type t (one of lc_type_ok's). */
#define LC_TYPE_DISPATCH(t, F, ...)                                          \
    do {                                                                     \
        switch (t) {                                                         \
        case LYRA_TYPE_F32: F<LYRA_TYPE_F32>(__VA_ARGS__); break;            \
        case LYRA_TYPE_F16: F<LYRA_TYPE_F16>(__VA_ARGS__); break;            \
        case LYRA_TYPE_BF16: F<LYRA_TYPE_BF16>(__VA_ARGS__); break;          \
        case LYRA_TYPE_Q8_0: F<LYRA_TYPE_Q8_0>(__VA_ARGS__); break;          \
        case LYRA_TYPE_Q4_0: F<LYRA_TYPE_Q4_0>(__VA_ARGS__); break;          \
        case LYRA_TYPE_Q4_K: F<LYRA_TYPE_Q4_K>(__VA_ARGS__); break;          \
        case LYRA_TYPE_Q5_K: F<LYRA_TYPE_Q5_K>(__VA_ARGS__); break;          \
        case LYRA_TYPE_Q6_K: F<LYRA_TYPE_Q6_K>(__VA_ARGS__); break;          \
        default: break;                                                      \
        }                                                                    \
    } while (0)

#endif
