/* cuda_math.cuh: the CUDA device's per-block arithmetic, written once as
 * host+device functions: the kernels call them on the GPU, and the host
 * emulation (cuda_check.cu, lyra_cuda_host_* in cuda.h) calls the same code
 * on the CPU so tests check it against lyra's reference without a GPU.
 *
 * A "unit" is 32 consecutive elements of a weight row: a Q8_0/Q4_0 block,
 * one 32-element sub-block of a K-quant super-block, or 32 floats; a "part"
 * is a quarter of a unit (8 elements). The decode kernel gives part k of
 * unit u to lane 4*(u % 8) + k of a warp.
 *
 * Activations dotted with quantized weights are quantized exactly as the CPU
 * quantizes them (lyra_vec_dot_type: Q8_0 for Q8_0/Q4_0, Q8_K for K-quants;
 * d = amax/127, q = round-half-away(x * (1/d))), so each unit's integer dot
 * product equals the CPU's and only the float summation order differs. On
 * the GPU they live in the device's own layout (lc_act below), not in
 * blocks. Dequantization repeats the CPU's float operations one by one with
 * non-contracted multiplies (lc_mul/lc_sub), so get_rows is bit-exact.
 *
 * The other ops' per-element math (rope pairs and angles, layernorm, GELU,
 * soft-capping, the attention window, ring chunks and online softmax) is
 * here too, at the end, in the same host+device form. */
#ifndef LYRA_CUDA_MATH_CUH
#define LYRA_CUDA_MATH_CUH

#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

extern "C" {
#include "core/fp16.h"
#include "kernels/kernels.h"
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

/* a / b and sqrt(a), correctly rounded on both sides (never approximated). */
LC_HD float lc_div(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}

LC_HD float lc_sqrt(float a) {
#ifdef __CUDA_ARCH__
    return __fsqrt_rn(a);
#else
    return sqrtf(a);
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
 * read it) or 256 (Q8_K: d in f32). Q8_K's sums of 16 (bsums) are not kept:
 * the dot products sum the quantized values they read (the same integers). */
typedef struct lc_act {
    int8_t *q;    /* [ntok][n] quantized values */
    float *d;     /* [ntok][n / ablk] block scales */
    int64_t n;    /* elements per row */
    int ablk;     /* elements per scale: 32 (Q8_0) or 256 (Q8_K) */
} lc_act;

/* ------------------------------------------------------ weight parts */

/* A part is a quarter of a unit: elements 8k..8k+7 (k < 4) of unit u, i.e.
 * elements 32u + 8k .. +7 of the row. The decode kernel gives the 4 parts
 * of a unit to 4 neighbouring lanes, so a warp reads 8 consecutive units
 * (whole blocks) per step as contiguous memory. */
#define LC_PART 8

/* Decode kernels (cuda_matvec.cu; LYRA_CUDA_MATVEC picks one, docs/gpu.md):
 * 1: one warp per row, lane 4v + k takes part k of units v, v+8, v+16, ...,
 *    the lanes' sums reduced by the warp's butterfly;
 * 2 (and 3, the default: the same sums, the bytes staged through shared
 *    memory): LC_MV_ROW_WARPS warps per row, warp w's lane 4v + k takes part
 *    k of units 8w + v, 8w + v + 8 LC_MV_ROW_WARPS, ... (a warp reads groups
 *    of 8 consecutive units, the warps interleaved group by group); each
 *    warp's butterfly, then the warps' sums added in order 0, 1, 2, ... */
#define LC_MV_ROW_WARPS 4
/* Kernel 3's staged group of 8 units: at most this many 16-byte words. */
#define LC_MV_SPAN16 18

/* Kernel 3: bytes of a group of 8 units of a row of cols elements of type wt
 * when it is staged (quantized weights, whole groups of 16-byte words; the
 * rows' alignment is the caller's to check), else 0. */
static inline size_t lc_mv_span(lyra_type wt, int64_t cols) {
    size_t span = lyra_row_bytes(wt, 8 * LC_UNIT);
    if (lyra_vec_dot_type(wt) == LYRA_TYPE_F32 || cols % (8 * LC_UNIT) || span % 16 ||
        span > 16 * LC_MV_SPAN16)
        return 0;
    return span;
}

/* One part of a quantized weight row, unpacked for dp4a: q[i] holds the
 * bytes of the part's elements 4i..4i+3 as stored values (Q8_0: signed;
 * Q4_0: 0..15, the -8 applied in the dot; Q5_0: 0..31, the -16 applied in
 * the dot; Q4_K 0..15, Q5_K 0..31, Q6_K 0..63, the -32 applied in the dot). */
typedef struct lc_wq {
    int q[2];    /* packed element values */
    float d;     /* block scale (K-quants: the super-block's d) */
    float dm;    /* Q4_K/Q5_K: the super-block's dmin */
    int sc;      /* K-quants: the part's sub-block scale (Q6_K: of its 16 elements) */
    int m;       /* Q4_K/Q5_K: the sub-block's min */
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

/* Part k of unit u of a row of type T (quantized types only). Block
 * layouts: quant.h. */
template <int T>
LC_HD void lc_unpack(const uint8_t *row, int64_t u, int k, lc_wq *w) {
    if (T == LYRA_TYPE_Q8_0) { /* d f16, qs[32] int8 */
        const uint8_t *b = row + 34 * u;
        w->d = lc_h2f(lc_ld16(b));
        for (int i = 0; i < 2; i++) w->q[i] = (int)lc_ld32(b + 2 + 8 * k + 4 * i);
    } else if (T == LYRA_TYPE_Q4_0) { /* d f16, qs[16]: element e low nibble, e+16 high */
        const uint8_t *b = row + 18 * u;
        const int shift = (k >> 1) * 4;
        w->d = lc_h2f(lc_ld16(b));
        for (int i = 0; i < 2; i++)
            w->q[i] = (int)((lc_ld32(b + 2 + 8 * (k & 1) + 4 * i) >> shift) & 0x0F0F0F0Fu);
    } else if (T == LYRA_TYPE_Q5_0) {
        /* d f16, qh u32 (bit e: the fifth bit of element e), qs[16] as Q4_0's */
        const uint8_t *b = row + 22 * u;
        const int shift = (k >> 1) * 4;
        const uint32_t qh = lc_ld32(b + 2);
        w->d = lc_h2f(lc_ld16(b));
        for (int i = 0; i < 2; i++) {
            uint32_t hb = (qh >> (8 * k + 4 * i)) & 0xFu; /* elements 8k+4i .. +3 */
            hb = (hb & 1u) | (hb & 2u) << 7 | (hb & 4u) << 14 | (hb & 8u) << 21;
            w->q[i] = (int)(((lc_ld32(b + 6 + 8 * (k & 1) + 4 * i) >> shift) & 0x0F0F0F0Fu) | hb << 4);
        }
    } else if (T == LYRA_TYPE_Q4_K || T == LYRA_TYPE_Q5_K) {
        /* d, dmin f16; scales[12]; Q5_K: qh[32]; qs[128]: sub-block j is the
         * low (j even) or high (j odd) nibbles of qs[32*(j/2) ..+32]; Q5_K's
         * fifth bit of element e of sub-block j is bit j of qh[e] */
        const int Q5 = T == LYRA_TYPE_Q5_K;
        const uint8_t *b = row + (Q5 ? 176 : 144) * (u >> 3);
        const int j = (int)(u & 7), shift = (j & 1) * 4;
        w->d = lc_h2f(lc_ld16(b));
        w->dm = lc_h2f(lc_ld16(b + 2));
        lc_q4k_scale_min(b + 4, j, &w->sc, &w->m);
        const uint8_t *qs = b + (Q5 ? 48 : 16) + 32 * (j >> 1) + 8 * k;
        for (int i = 0; i < 2; i++) {
            uint32_t v = (lc_ld32(qs + 4 * i) >> shift) & 0x0F0F0F0Fu;
            if (Q5) v |= ((lc_ld32(b + 16 + 8 * k + 4 * i) >> j) & 0x01010101u) << 4;
            w->q[i] = (int)v;
        }
    } else if (T == LYRA_TYPE_Q6_K) {
        /* ql[128], qh[64], scales[16] int8, d f16. Element e = 32j + p of
         * sub-block j: h = j/4, s = j%4; low 4 bits from ql[64h + 32(s%2) + p]
         * (low nibble for s < 2, high for s >= 2), high 2 bits
         * (qh[32h + p] >> 2s) & 3; scale scales[e/16] */
        const uint8_t *b = row + 210 * (u >> 3);
        const int j = (int)(u & 7), h = j >> 2, s = j & 3;
        const uint8_t *ql = b + 64 * h + 32 * (s & 1) + 8 * k, *qh = b + 128 + 32 * h + 8 * k;
        const int lsh = (s >> 1) * 4;
        for (int i = 0; i < 2; i++) {
            uint32_t lo = (lc_ld32(ql + 4 * i) >> lsh) & 0x0F0F0F0Fu;
            uint32_t hi = (lc_ld32(qh + 4 * i) >> (2 * s)) & 0x03030303u;
            w->q[i] = (int)(lo | hi << 4);
        }
        w->sc = (int8_t)b[192 + 2 * j + (k >> 1)];
        w->d = lc_h2f(lc_ld16(b + 208));
    }
}

/* Contribution of one unpacked part to a dot product with the part's
 * quantized activations x[2] (packed int8) and their block scale dx. The
 * integer part is exact; the float part follows the CPU's formulas
 * (src/kernels/kernels_impl.h). */
template <int T>
LC_HD float lc_part_dot(const lc_wq *w, const int *x, float dx) {
    int s = lc_dp4a(w->q[1], x[1], lc_dp4a(w->q[0], x[0], 0));
    if (T == LYRA_TYPE_Q8_0) return (float)s * (w->d * dx);
    int sx = lc_dp4a(0x01010101, x[1], lc_dp4a(0x01010101, x[0], 0)); /* sum of x */
    if (T == LYRA_TYPE_Q4_0) return (float)(s - 8 * sx) * (w->d * dx); /* sum (q-8)*x */
    if (T == LYRA_TYPE_Q5_0) return (float)(s - 16 * sx) * (w->d * dx); /* sum (q-16)*x */
    if (T == LYRA_TYPE_Q4_K || T == LYRA_TYPE_Q5_K) /* d*sc*sum(q*x)*dx - dmin*m*sum(x)*dx */
        return (float)(w->sc * s) * (w->d * dx) + (float)(w->m * sx) * (-(w->dm * dx));
    if (T == LYRA_TYPE_Q6_K) return (float)(w->sc * (s - 32 * sx)) * (w->d * dx); /* sc*(q-32)*x */
    return 0.0f;
}

/* Element i (0..7) of an unpacked part: its stored byte value. */
LC_HD int lc_wq_byte(const lc_wq *w, int i) {
    return (int)(((uint32_t)w->q[i >> 2] >> (8 * (i & 3))) & 0xFF);
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

/* Part k of unit u of a row of n elements of type T dequantized into v[8]
 * with the CPU's float operations (lyra_dequantize_row); returns the number
 * of valid elements (8, or fewer at the end of a float row). */
template <int T>
LC_HD int lc_dequant_part(const uint8_t *row, int64_t u, int k, int64_t n, float *v) {
    if (T == LYRA_TYPE_F32 || T == LYRA_TYPE_F16 || T == LYRA_TYPE_BF16) {
        int64_t e0 = LC_UNIT * u + LC_PART * k, left = n - e0;
        int nv = left < 0 ? 0 : left < LC_PART ? (int)left : LC_PART;
        for (int i = 0; i < nv; i++) v[i] = lc_float_elem<T>(row, e0 + i);
        return nv;
    }
    lc_wq w;
    lc_unpack<T>(row, u, k, &w);
    if (T == LYRA_TYPE_Q8_0) {
        for (int i = 0; i < 8; i++) v[i] = lc_mul((float)(int8_t)(uint8_t)lc_wq_byte(&w, i), w.d);
    } else if (T == LYRA_TYPE_Q4_0) {
        for (int i = 0; i < 8; i++) v[i] = lc_mul(w.d, (float)(lc_wq_byte(&w, i) - 8));
    } else if (T == LYRA_TYPE_Q5_0) {
        for (int i = 0; i < 8; i++) v[i] = lc_mul(w.d, (float)(lc_wq_byte(&w, i) - 16));
    } else if (T == LYRA_TYPE_Q4_K || T == LYRA_TYPE_Q5_K) {
        float dj = lc_mul(w.d, (float)w.sc), mj = lc_mul(w.dm, (float)w.m);
        for (int i = 0; i < 8; i++) v[i] = lc_sub(lc_mul(dj, (float)lc_wq_byte(&w, i)), mj);
    } else if (T == LYRA_TYPE_Q6_K) {
        float ds = lc_mul(w.d, (float)w.sc);
        for (int i = 0; i < 8; i++) v[i] = lc_mul(ds, (float)(lc_wq_byte(&w, i) - 32));
    }
    return LC_PART;
}

/* acc + w[i] * x[i] for i < nv, added in order (a float part into a lane's
 * accumulator, as the decode kernel adds it). */
LC_HD float lc_float_acc(float acc, const float *w, const float *x, int nv) {
    for (int i = 0; i < nv; i++) acc += w[i] * x[i];
    return acc;
}

/* 1 for the weight types the CUDA device computes with. */
LC_HD int lc_type_ok(int t) {
    return t == LYRA_TYPE_F32 || t == LYRA_TYPE_F16 || t == LYRA_TYPE_BF16 ||
           t == LYRA_TYPE_Q8_0 || t == LYRA_TYPE_Q4_0 || t == LYRA_TYPE_Q5_0 ||
           t == LYRA_TYPE_Q4_K || t == LYRA_TYPE_Q5_K || t == LYRA_TYPE_Q6_K;
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
        case LYRA_TYPE_Q5_0: F<LYRA_TYPE_Q5_0>(__VA_ARGS__); break;          \
        case LYRA_TYPE_Q4_K: F<LYRA_TYPE_Q4_K>(__VA_ARGS__); break;          \
        case LYRA_TYPE_Q5_K: F<LYRA_TYPE_Q5_K>(__VA_ARGS__); break;          \
        case LYRA_TYPE_Q6_K: F<LYRA_TYPE_Q6_K>(__VA_ARGS__); break;          \
        default: break;                                                      \
        }                                                                    \
    } while (0)

/* ------------------------------------------- the other ops' element math */

/* RoPE: the two elements of pair i (< n_rot/2) of a head: (2i, 2i+1), or
 * (i, i + n_rot/2) NeoX style. Dims n_rot.. of a head are never touched. */
LC_HD void lc_rope_pair(int i, int n_rot, int neox, int *e0, int *e1) {
    *e0 = neox ? i : 2 * i;
    *e1 = neox ? i + n_rot / 2 : 2 * i + 1;
}

/* cos and sin of theta_i = pos * fscale * base^(-2i/n_rot) / ff[i] (ff may
 * be NULL), computed in double and rounded, as the CPU computes its table. */
LC_HD void lc_rope_cs(int32_t pos, int i, int n_rot, float base, float fscale, const float *ff,
                      float *cs, float *sn) {
    double f = (double)fscale * pow((double)base, -2.0 * i / n_rot);
    if (ff) f /= (double)ff[i];
    double th = (double)pos * f;
    *cs = (float)cos(th);
    *sn = (float)sin(th);
}

/* The pair (a, b) rotated: (a cs - b sn, a sn + b cs), every product rounded
 * (as the CPU's rope_apply). */
LC_HD void lc_rope_rot(float a, float b, float cs, float sn, float *oa, float *ob) {
    *oa = lc_sub(lc_mul(a, cs), lc_mul(b, sn));
    *ob = lc_add(lc_mul(a, sn), lc_mul(b, cs));
}

/* Threads per block of the row kernels (layernorm): one block per row. */
#define LC_NORM_THREADS 256

/* 1 / sqrt(var + eps) from the sum of squared deviations of n elements. */
LC_HD float lc_ln_rstd(float ssd, int64_t n, float eps) {
    return lc_div(1.0f, lc_sqrt(lc_add(lc_div(ssd, (float)n), eps)));
}

/* A layernorm output: (x - mean) * rstd * w (+ b when has_b). */
LC_HD float lc_ln_elem(float x, float mean, float rstd, float w, float b, int has_b) {
    float y = lc_mul(lc_mul(lc_sub(x, mean), rstd), w);
    return has_b ? lc_add(y, b) : y;
}

/* GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). tanhf is
 * the platform's (CUDA's on the GPU, libm's on the host: a few ulp apart). */
LC_HD float lc_gelu(float x) {
    const float c = 0.79788456080286536f; /* sqrt(2/pi) */
    float u = lc_mul(c, lc_add(x, lc_mul(lc_mul(lc_mul(0.044715f, x), x), x)));
    return lc_mul(lc_mul(0.5f, x), lc_add(1.0f, tanhf(u)));
}

/* cap * tanh(x / cap) (soft-capping of attention scores and final logits). */
LC_HD float lc_softcap(float x, float cap) { return lc_mul(cap, tanhf(lc_div(x, cap))); }

/* The chunk of a KV cache holding position p (device.h's lyra_kv_chunk):
 * p / L, modulo n_ring for a ring (n_ring > 0); its row there is p % L. */
LC_HD int32_t lc_kv_chunk(int32_t p, int32_t L, int32_t n_ring) {
    int32_t c = p / L;
    return n_ring > 0 ? c % n_ring : c;
}

/* Warps per (token, head) of the attention kernel, splitting the positions. */
#define LC_ATT_WARPS 4

/* First position a token at position p attends to: 0, or with a window
 * (> 0) the oldest of the last `window` positions up to p. */
LC_HD int32_t lc_att_first(int32_t p, int32_t window) {
    return window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
}

/* An attention score from q.k: scaled, then soft-capped when softcap > 0
 * (before any mask). */
LC_HD float lc_att_score(float dot, float scale, float softcap) {
    float s = lc_mul(dot, scale);
    return softcap > 0.0f ? lc_softcap(s, softcap) : s;
}

/* Online softmax: score s joins a running max *m and sum *l (start:
 * -INFINITY, 0). *pe = s's weight exp(s - max); returns the factor the
 * values accumulated so far are multiplied by (1 when the max held). */
LC_HD float lc_softmax_add(float s, float *m, float *l, float *pe) {
    float corr = 1.0f;
    if (s > *m) { /* rescale what was summed under the old max */
        corr = expf(*m - s);
        *l *= corr;
        *m = s;
    }
    *pe = expf(s - *m);
    *l += *pe;
    return corr;
}

/* Merge of nw partial softmax states (m[j], l[j]) over disjoint positions:
 * f[j] = the factor of partial j's accumulator (0 for a partial that saw no
 * position); returns the total sum the merged accumulator is divided by. At
 * least one partial must have seen a position. */
LC_HD float lc_softmax_merge(const float *m, const float *l, int nw, float *f) {
    float M = -INFINITY, sum = 0.0f;
    for (int j = 0; j < nw; j++)
        if (l[j] > 0.0f) M = fmaxf(M, m[j]);
    for (int j = 0; j < nw; j++) {
        f[j] = l[j] > 0.0f ? expf(m[j] - M) : 0.0f;
        sum += l[j] * f[j];
    }
    return sum;
}

#endif
