/* quant.c: the scalar reference dequantizers and quantizers of the weight
 * types' block layouts (the type table itself is core/wtype.c).
 *
 * Dequantizers are bit-exact with gguf-py (gguf.quants.dequantize): every
 * float operation is done in the same order with float32 rounding, so no FMA
 * contraction is allowed in this file. Q8_0/Q4_0/Q5_0/BF16/F16 quantizers match
 * gguf.quants.quantize bit for bit; the K-quant quantizers follow the
 * published K-quant reference algorithm (weighted least-squares search for the
 * sub-block scales and mins, then 6-bit / 8-bit packed super-block scales). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
#include "quant/quant.h"

#include <math.h>
#include <string.h>

#include "core/fp16.h"

/* ------------------------------------------------------ small helpers */

static inline uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline float rdh(const uint8_t *p) { return lyra_fp16_to_f32(rd16(p)); }

/* float -> int by truncation; NaN and out-of-range values (only from non-finite
 * input) give 0 instead of undefined behaviour. */
static inline int to_int(float x) { return x > -2147483520.0f && x < 2147483520.0f ? (int)x : 0; }
/* Round half away from zero (C roundf), as an int. */
static inline int nearest_int(float x) { return to_int(roundf(x)); }

void lyra_q4k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Pack 8 six-bit scales and mins into the 12-byte Q4_K/Q5_K layout. */
static void q4k_pack_scales(const int sc[8], const int m[8], uint8_t s[12]) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
    }
}

/* Q6_K element e (0..255) of a block: 6-bit value 0..63 (subtract 32). */
int lyra_q6k_value(const uint8_t *blk, int e) {
    const uint8_t *ql = blk, *qh = blk + 128;
    int h = e >> 7, p = e & 127, s = p >> 5, i = p & 31;
    int lo = p < 64 ? (ql[64 * h + p] & 0xF) : (ql[64 * h + p - 64] >> 4);
    int hi = (qh[32 * h + i] >> (2 * s)) & 3;
    return lo | (hi << 4);
}

/* Q4_K/Q5_K element e: the 4 low bits. */
static inline int q4k_low(const uint8_t *qs, int e) {
    int g = e >> 6, p = e & 63;
    return p < 32 ? (qs[32 * g + p] & 0xF) : (qs[32 * g + p - 32] >> 4);
}

/* ---------------------------------------------------------- dequantize */

static void deq_q8_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 34, y += 32) {
        float d = rdh(b);
        for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
    }
}

static void deq_q4_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 18, y += 32) {
        float d = rdh(b);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)((b[2 + j] & 0xF) - 8);
            y[j + 16] = d * (float)((b[2 + j] >> 4) - 8);
        }
    }
}

/* Q5_0: f16 d, qh (bit j: the 5th bit of element j), qs[16] (element j
 * and j+16: low and high nibble of qs[j]); value d * (q - 16). */
static void deq_q5_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 22, y += 32) {
        float d = rdh(b);
        uint32_t qh;
        memcpy(&qh, b + 2, 4);
        for (int j = 0; j < 16; j++) {
            int lo = (b[6 + j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int hi = (b[6 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = d * (float)(lo - 16);
            y[j + 16] = d * (float)(hi - 16);
        }
    }
}

static void deq_q4_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 144, y += 256) {
        float d = rdh(b), dmin = rdh(b + 2);
        const uint8_t *s = b + 4, *qs = b + 16;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            lyra_q4k_scale_min(s, j, &sc, &m);
            float dj = d * (float)sc, mj = dmin * (float)m;
            for (int k = 0; k < 32; k++) {
                float v = dj * (float)q4k_low(qs, 32 * j + k);
                y[32 * j + k] = v - mj;
            }
        }
    }
}

static void deq_q5_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 176, y += 256) {
        float d = rdh(b), dmin = rdh(b + 2);
        const uint8_t *s = b + 4, *qh = b + 16, *qs = b + 48;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            lyra_q4k_scale_min(s, j, &sc, &m);
            float dj = d * (float)sc, mj = dmin * (float)m;
            for (int k = 0; k < 32; k++) {
                int q = q4k_low(qs, 32 * j + k) | (((qh[k] >> j) & 1) << 4);
                float v = dj * (float)q;
                y[32 * j + k] = v - mj;
            }
        }
    }
}

static void deq_q6_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 210, y += 256) {
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = rdh(b + 208);
        for (int e = 0; e < 256; e++) {
            float ds = d * (float)sc[e >> 4];
            y[e] = ds * (float)(lyra_q6k_value(b, e) - 32);
        }
    }
}

static void deq_q8_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 292, y += 256) {
        float d;
        memcpy(&d, b, 4);
        for (int j = 0; j < 256; j++) y[j] = d * (float)(int8_t)b[4 + j];
    }
}

void lyra_dequantize_row(lyra_type t, const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    switch (t) {
    case LYRA_TYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
    case LYRA_TYPE_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = lyra_fp16_to_f32(rd16(b + 2 * i));
        break;
    case LYRA_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = lyra_bf16_to_f32(rd16(b + 2 * i));
        break;
    case LYRA_TYPE_Q8_0: deq_q8_0(b, dst, n / 32); break;
    case LYRA_TYPE_Q4_0: deq_q4_0(b, dst, n / 32); break;
    case LYRA_TYPE_Q5_0: deq_q5_0(b, dst, n / 32); break;
    case LYRA_TYPE_Q4_K: deq_q4_k(b, dst, n / 256); break;
    case LYRA_TYPE_Q5_K: deq_q5_k(b, dst, n / 256); break;
    case LYRA_TYPE_Q6_K: deq_q6_k(b, dst, n / 256); break;
    case LYRA_TYPE_Q8_K: deq_q8_k(b, dst, n / 256); break;
    default:
        for (int64_t i = 0; i < n; i++) dst[i] = 0.0f; /* unsupported: see header */
        break;
    }
}

/* ------------------------------------------------------------ quantize */

/* Q8_0: d = amax/127, q = round(x/d) with the float32 (not f16) d, as gguf-py. */
static void q_q8_0(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32, b += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr16(b, lyra_f32_to_fp16(d));
        for (int j = 0; j < 32; j++) {
            float v = x[j] * id;
            b[2 + j] = (uint8_t)(int8_t)nearest_int(v);
        }
    }
}

/* Q4_0: d = -(value of largest magnitude)/8, q = min(15, trunc(x/d + 8.5)). */
static void q_q4_0(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32, b += 18) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++)
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
        float d = max / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr16(b, lyra_f32_to_fp16(d));
        uint8_t q[32];
        for (int j = 0; j < 32; j++) {
            float v = x[j] * id;
            v = v + 8.5f;
            int qi = to_int(v);
            q[j] = (uint8_t)(qi < 0 ? 0 : qi > 15 ? 15 : qi);
        }
        for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(q[j] | (q[j + 16] << 4));
    }
}

static void q_q5_0(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32, b += 22) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++)
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
        float d = max / -16.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr16(b, lyra_f32_to_fp16(d));
        uint8_t q[32];
        uint32_t qh = 0;
        for (int j = 0; j < 32; j++) {
            float v = x[j] * id;
            v = v + 16.5f;
            int qi = to_int(v);
            q[j] = (uint8_t)(qi < 0 ? 0 : qi > 31 ? 31 : qi);
            qh |= (uint32_t)(q[j] >> 4) << j;
        }
        memcpy(b + 2, &qh, 4);
        for (int j = 0; j < 16; j++) b[6 + j] = (uint8_t)((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
    }
}

/* Fit x[i] ~ scale * L[i] + min (min <= 0, L in 0..nmax) minimising the
 * weighted squared error: start from the min/max grid, then try nstep
 * slightly different grids, refitting scale and min by least squares on each
 * rounding. Returns scale; *neg_min = -min (>= 0). */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           float *neg_min, float rmin, float rdelta, int nstep) {
    float lo = x[0], hi = x[0], sw = w[0], swx = w[0] * x[0];
    for (int i = 1; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
        sw += w[i];
        swx += w[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi == lo) {
        memset(L, 0, (size_t)n);
        *neg_min = -lo;
        return 0.0f;
    }
    float iscale = (float)nmax / (hi - lo), scale = 1.0f / iscale;
    float best = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - lo));
        L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        float e = scale * (float)L[i] + lo - x[i];
        best += w[i] * e * e;
    }
    uint8_t La[32];
    for (int s = 0; s <= nstep; s++) {
        float is = (rmin + rdelta * (float)s + (float)nmax) / (hi - lo);
        float sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(is * (x[i] - lo));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            La[i] = (uint8_t)l;
            sl += w[i] * (float)l;
            sl2 += w[i] * (float)l * (float)l;
            sxl += w[i] * (float)l * x[i];
        }
        float D = sw * sl2 - sl * sl;
        if (D <= 0) continue;
        float sc = (sw * sxl - swx * sl) / D;
        float mn = (sl2 * swx - sl * sxl) / D;
        if (mn > 0) {
            mn = 0;
            sc = sxl / sl2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float e = sc * (float)La[i] + mn - x[i];
            err += w[i] * e * e;
        }
        if (err < best) {
            best = err;
            memcpy(L, La, (size_t)n);
            scale = sc;
            lo = mn;
        }
    }
    *neg_min = -lo;
    return scale;
}

/* Q4_K (nbits 4) and Q5_K (nbits 5): 8 sub-blocks of 32, each fitted with a
 * scale and min, which are then quantized to 6 bits against f16 d / dmin. */
static void q_q45_k(const float *x, uint8_t *b, int nbits) {
    int nmax = (1 << nbits) - 1;
    float scales[8], mins[8], w[32];
    uint8_t L[256];
    for (int j = 0; j < 8; j++) {
        const float *xj = x + 32 * j;
        float s2 = 0;
        for (int i = 0; i < 32; i++) s2 += xj[i] * xj[i];
        float av = sqrtf(s2 / 32.0f);
        for (int i = 0; i < 32; i++) w[i] = av + fabsf(xj[i]);
        scales[j] = nbits == 4 ? fit_scale_min(32, nmax, xj, w, L + 32 * j, &mins[j], -1.0f, 0.1f, 20)
                               : fit_scale_min(32, nmax, xj, w, L + 32 * j, &mins[j], -0.5f, 0.1f, 15);
    }
    float max_s = 0, max_m = 0;
    for (int j = 0; j < 8; j++) {
        max_s = fmaxf(max_s, scales[j]);
        max_m = fmaxf(max_m, mins[j]);
    }
    float is = max_s > 0 ? 63.0f / max_s : 0.0f, im = max_m > 0 ? 63.0f / max_m : 0.0f;
    int sc[8], mq[8];
    for (int j = 0; j < 8; j++) {
        int a = nearest_int(is * scales[j]), c = nearest_int(im * mins[j]);
        sc[j] = a > 63 ? 63 : a;
        mq[j] = c > 63 ? 63 : c;
    }
    uint16_t dh = lyra_f32_to_fp16(max_s / 63.0f), mh = lyra_f32_to_fp16(max_m / 63.0f);
    wr16(b, dh);
    wr16(b + 2, mh);
    q4k_pack_scales(sc, mq, b + 4);
    float d = lyra_fp16_to_f32(dh), dmin = lyra_fp16_to_f32(mh);
    /* requantize against the stored (rounded) scales */
    for (int j = 0; j < 8; j++) {
        float dj = d * (float)sc[j], mj = dmin * (float)mq[j];
        for (int i = 0; i < 32; i++) {
            int l = 0;
            if (dj != 0.0f) l = nearest_int((x[32 * j + i] + mj) / dj);
            L[32 * j + i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        }
    }
    uint8_t *qs = nbits == 4 ? b + 16 : b + 48;
    for (int g = 0; g < 4; g++)
        for (int i = 0; i < 32; i++)
            qs[32 * g + i] = (uint8_t)((L[64 * g + i] & 0xF) | ((L[64 * g + 32 + i] & 0xF) << 4));
    if (nbits == 5) {
        uint8_t *qh = b + 16;
        memset(qh, 0, 32);
        for (int j = 0; j < 8; j++)
            for (int i = 0; i < 32; i++) qh[i] |= (uint8_t)((L[32 * j + i] >> 4) << j);
    }
}

/* Symmetric fit of 16 values to L in [-nmax, nmax-1] with weights x^2: the
 * max-magnitude grid and 18 nearby grids, keeping the best least-squares
 * scale. Returns the scale (L[i] stored + nmax). */
static float fit_scale_sym(const float *x, int nmax, uint8_t *L) {
    float amax = 0, max = 0;
    for (int i = 0; i < 16; i++)
        if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); max = x[i]; }
    if (amax == 0.0f) {
        for (int i = 0; i < 16; i++) L[i] = (uint8_t)nmax;
        return 0.0f;
    }
    float best_scale = 0, best_num = 0, best_den = 1;
    int have = 0;
    for (int s = -9; s <= 9; s++) {
        float is = -((float)nmax + 0.1f * (float)s) / max;
        float sxl = 0, sl2 = 0;
        int l[16];
        for (int i = 0; i < 16; i++) {
            int v = nearest_int(is * x[i]);
            l[i] = v < -nmax ? -nmax : v > nmax - 1 ? nmax - 1 : v;
            float w = x[i] * x[i];
            sxl += w * x[i] * (float)l[i];
            sl2 += w * (float)l[i] * (float)l[i];
        }
        /* pick the grid maximising sxl^2/sl2 (the error reduction) */
        if (sl2 > 0 && (!have || sxl * sxl * best_den > best_num * sl2)) {
            have = 1;
            best_num = sxl * sxl;
            best_den = sl2;
            best_scale = sxl / sl2;
            for (int i = 0; i < 16; i++) L[i] = (uint8_t)(l[i] + nmax);
        }
    }
    if (!have) {
        for (int i = 0; i < 16; i++) L[i] = (uint8_t)nmax;
        return 0.0f;
    }
    return best_scale;
}

static void q_q6_k(const float *x, uint8_t *b) {
    float scales[16];
    uint8_t L[256];
    float amax = 0, max = 0;
    for (int j = 0; j < 16; j++) {
        scales[j] = fit_scale_sym(x + 16 * j, 32, L + 16 * j);
        if (fabsf(scales[j]) > amax) { amax = fabsf(scales[j]); max = scales[j]; }
    }
    int8_t *sc = (int8_t *)(b + 192);
    if (amax == 0.0f) {
        memset(b, 0, 210);
        return;
    }
    float is = -128.0f / max;
    uint16_t dh = lyra_f32_to_fp16(1.0f / is);
    wr16(b + 208, dh);
    float d = lyra_fp16_to_f32(dh);
    for (int j = 0; j < 16; j++) {
        int v = nearest_int(is * scales[j]);
        sc[j] = (int8_t)(v > 127 ? 127 : v < -128 ? -128 : v);
        float dj = d * (float)sc[j];
        for (int i = 0; i < 16; i++) {
            int l = 0;
            if (dj != 0.0f) l = nearest_int(x[16 * j + i] / dj);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            L[16 * j + i] = (uint8_t)(l + 32);
        }
    }
    uint8_t *ql = b, *qh = b + 128;
    memset(ql, 0, 128);
    memset(qh, 0, 64);
    for (int e = 0; e < 256; e++) {
        int h = e >> 7, p = e & 127, s = p >> 5, i = p & 31;
        if (p < 64) ql[64 * h + p] |= (uint8_t)(L[e] & 0xF);
        else ql[64 * h + p - 64] |= (uint8_t)((L[e] & 0xF) << 4);
        qh[32 * h + i] |= (uint8_t)((L[e] >> 4) << (2 * s));
    }
}

/* Q8_K (activations): d = amax/127 (f32), q = round(x/d), bsums of 16. */
void lyra_quantize_q8_k_ref(const float *x, void *dst, int64_t n) {
    uint8_t *b = dst;
    for (int64_t k = 0; k < n / 256; k++, x += 256, b += 292) {
        float amax = 0.0f;
        for (int j = 0; j < 256; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        memcpy(b, &d, 4);
        int8_t *q = (int8_t *)(b + 4);
        for (int j = 0; j < 256; j++) {
            float v = x[j] * id;
            q[j] = (int8_t)nearest_int(v);
        }
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += q[16 * g + j];
            int16_t s16 = (int16_t)s;
            memcpy(b + 260 + 2 * g, &s16, 2);
        }
    }
}

void lyra_quantize_q8_0_ref(const float *x, void *dst, int64_t n) { q_q8_0(x, dst, n / 32); }

void lyra_quantize_row(lyra_type t, const float *src, void *dst, int64_t n) {
    uint8_t *b = dst;
    switch (t) {
    case LYRA_TYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
    case LYRA_TYPE_F16:
        for (int64_t i = 0; i < n; i++) wr16(b + 2 * i, lyra_f32_to_fp16(src[i]));
        break;
    case LYRA_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) wr16(b + 2 * i, lyra_f32_to_bf16(src[i]));
        break;
    case LYRA_TYPE_Q8_0: q_q8_0(src, b, n / 32); break;
    case LYRA_TYPE_Q4_0: q_q4_0(src, b, n / 32); break;
    case LYRA_TYPE_Q5_0: q_q5_0(src, b, n / 32); break;
    case LYRA_TYPE_Q4_K:
        for (int64_t i = 0; i < n / 256; i++) q_q45_k(src + 256 * i, b + 144 * i, 4);
        break;
    case LYRA_TYPE_Q5_K:
        for (int64_t i = 0; i < n / 256; i++) q_q45_k(src + 256 * i, b + 176 * i, 5);
        break;
    case LYRA_TYPE_Q6_K:
        for (int64_t i = 0; i < n / 256; i++) q_q6_k(src + 256 * i, b + 210 * i);
        break;
    case LYRA_TYPE_Q8_K: lyra_quantize_q8_k_ref(src, dst, n); break;
    default: break; /* unsupported: see header */
    }
}
