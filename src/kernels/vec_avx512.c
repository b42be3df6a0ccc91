/* vec_avx512.c: AVX-512 versions of the CPU device's vector kernels
 * (see vec.h). Compiled with -mavx512f (and friends); used only when
 * the CPU has AVX-512 (F, BW, VL, DQ). exp is the same Cephes-style polynomial as the AVX2 one. */
#include "kernels/vec.h"

#include <immintrin.h>
#include <math.h>

#include "core/fp16.h"
#include "kernels/prefetch.h"

/* exp(x) for x in [-87, 88] (clamped outside). */
static inline __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    __m512 y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(fx), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}

#define LOAD16_F16(p, m) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16((m), (p)))
#define LOAD16_F32(p, m) _mm512_maskz_loadu_ps((m), (p))

static inline __mmask16 lanes(int n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1); }

/* Scores: 32 positions (two vectors) per step, G heads at once, leftover
 * positions in masked vectors: every lane computes the same fma chain. */
#define DEF_SCORES(NAME, T, LOAD)                                                            \
    static inline __attribute__((always_inline)) void NAME##_g(                              \
        const int G, const float *const *q, const T *K, size_t ld, int nb, int hd,          \
        float scale, float *s, size_t ss, float *mx) {                                      \
        __m512 vmax[LYRA_ATT_MAXG];                                                          \
        const __m512 sc = _mm512_set1_ps(scale);                                             \
        for (int h = 0; h < G; h++) vmax[h] = _mm512_set1_ps(-INFINITY);                     \
        int p0 = 0;                                                                          \
        for (; p0 + 32 <= nb; p0 += 32) {                                                    \
            __m512 a0[LYRA_ATT_MAXG], a1[LYRA_ATT_MAXG];                                     \
            for (int h = 0; h < G; h++) a0[h] = a1[h] = _mm512_setzero_ps();                 \
            const T *k = K + p0;                                                             \
            for (int j = 0; j < hd; j++, k += ld) {                                          \
                lyra_prefetch_ahead(k, LYRA_ATT_PF_POS * sizeof(T));                                      \
                __m512 k0 = LOAD(k, 0xffff), k1 = LOAD(k + 16, 0xffff);                      \
                for (int h = 0; h < G; h++) {                                                \
                    __m512 qj = _mm512_set1_ps(q[h][j]);                                     \
                    a0[h] = _mm512_fmadd_ps(qj, k0, a0[h]);                                  \
                    a1[h] = _mm512_fmadd_ps(qj, k1, a1[h]);                                  \
                }                                                                            \
            }                                                                                \
            for (int h = 0; h < G; h++) {                                                    \
                __m512 v0 = _mm512_mul_ps(a0[h], sc), v1 = _mm512_mul_ps(a1[h], sc);         \
                _mm512_storeu_ps(s + h * ss + p0, v0);                                       \
                _mm512_storeu_ps(s + h * ss + p0 + 16, v1);                                  \
                vmax[h] = _mm512_max_ps(vmax[h], _mm512_max_ps(v0, v1));                     \
            }                                                                                \
        }                                                                                    \
        for (; p0 < nb; p0 += 16) {                                                          \
            __mmask16 m = lanes(nb - p0);                                                    \
            __m512 a0[LYRA_ATT_MAXG];                                                        \
            for (int h = 0; h < G; h++) a0[h] = _mm512_setzero_ps();                         \
            const T *k = K + p0;                                                             \
            for (int j = 0; j < hd; j++, k += ld) {                                          \
                __m512 k0 = LOAD(k, m);                                                      \
                for (int h = 0; h < G; h++)                                                  \
                    a0[h] = _mm512_fmadd_ps(_mm512_set1_ps(q[h][j]), k0, a0[h]);             \
            }                                                                                \
            for (int h = 0; h < G; h++) {                                                    \
                __m512 v0 = _mm512_mul_ps(a0[h], sc);                                        \
                _mm512_mask_storeu_ps(s + h * ss + p0, m, v0);                               \
                vmax[h] = _mm512_mask_max_ps(vmax[h], m, vmax[h], v0);                       \
            }                                                                                \
        }                                                                                    \
        for (int h = 0; h < G; h++) mx[h] = _mm512_reduce_max_ps(vmax[h]);                   \
    }                                                                                        \
    static void NAME(const float *const *q, int g, const T *K, size_t ld, int nb, int hd,    \
                     float scale, float *s, size_t ss, float *mx) {                          \
        switch (g) {                                                                         \
        case 1: NAME##_g(1, q, K, ld, nb, hd, scale, s, ss, mx); break;                      \
        case 2: NAME##_g(2, q, K, ld, nb, hd, scale, s, ss, mx); break;                      \
        case 3: NAME##_g(3, q, K, ld, nb, hd, scale, s, ss, mx); break;                      \
        case 4: NAME##_g(4, q, K, ld, nb, hd, scale, s, ss, mx); break;                      \
        case 5: NAME##_g(5, q, K, ld, nb, hd, scale, s, ss, mx); break;                      \
        case 6: NAME##_g(6, q, K, ld, nb, hd, scale, s, ss, mx); break;                      \
        case 7: NAME##_g(7, q, K, ld, nb, hd, scale, s, ss, mx); break;                      \
        default: NAME##_g(8, q, K, ld, nb, hd, scale, s, ss, mx); break;                     \
        }                                                                                    \
    }

DEF_SCORES(scores_f16, uint16_t, LOAD16_F16)
DEF_SCORES(scores_f32, float, LOAD16_F32)

/* Accumulation: columns in slices of up to 4 registers (masked at the end of
 * the row), up to 4 heads sharing each V load. Per element the same fma chain. */
#define DEF_ACCUM(NAME, T, LOAD)                                                             \
    static inline __attribute__((always_inline)) void NAME##_g(                              \
        const int G, const int NV, float *const *acc, const float *e, size_t es,            \
        const T *V, size_t stride, int nb, int j0, int hd) {                                 \
        __m512 a[4][4];                                                                      \
        __mmask16 m[4];                                                                      \
        for (int i = 0; i < NV; i++) m[i] = lanes(hd - j0 - 16 * i);                         \
        for (int h = 0; h < G; h++)                                                          \
            for (int i = 0; i < NV; i++) a[h][i] = _mm512_maskz_loadu_ps(m[i], acc[h] + j0 + 16 * i); \
        const T *v = V + j0;                                                                 \
        for (int p = 0; p < nb; p++, v += stride) {                                          \
            for (int i = 0; i < NV; i += 64 / (16 * (int)sizeof(T)))                         \
                lyra_prefetch_ahead(v, (LYRA_ATT_PF_ROWS * stride + 16 * (size_t)i) * sizeof(T));        \
            __m512 vv[4];                                                                    \
            for (int i = 0; i < NV; i++) vv[i] = LOAD(v + 16 * i, m[i]);                     \
            for (int h = 0; h < G; h++) {                                                    \
                __m512 ep = _mm512_set1_ps(e[h * es + p]);                                   \
                for (int i = 0; i < NV; i++) a[h][i] = _mm512_fmadd_ps(ep, vv[i], a[h][i]);  \
            }                                                                                \
        }                                                                                    \
        for (int h = 0; h < G; h++)                                                          \
            for (int i = 0; i < NV; i++) _mm512_mask_storeu_ps(acc[h] + j0 + 16 * i, m[i], a[h][i]); \
    }                                                                                        \
    static void NAME##_nv(const int NV, float *const *acc, int g, const float *e, size_t es, \
                          const T *V, size_t stride, int nb, int j0, int hd) {               \
        for (int h0 = 0; h0 < g; h0 += 4) {                                                  \
            switch (g - h0 < 4 ? g - h0 : 4) {                                               \
            case 1: NAME##_g(1, NV, acc + h0, e + h0 * es, es, V, stride, nb, j0, hd); break; \
            case 2: NAME##_g(2, NV, acc + h0, e + h0 * es, es, V, stride, nb, j0, hd); break; \
            case 3: NAME##_g(3, NV, acc + h0, e + h0 * es, es, V, stride, nb, j0, hd); break; \
            default: NAME##_g(4, NV, acc + h0, e + h0 * es, es, V, stride, nb, j0, hd); break; \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    static void NAME(float *const *acc, int g, const float *e, size_t es, const T *V,        \
                     size_t stride, int nb, int hd) {                                        \
        for (int j0 = 0; j0 < hd; j0 += 64) {                                                \
            int nv = (hd - j0 + 15) / 16;                                                    \
            switch (nv > 4 ? 4 : nv) {                                                       \
            case 1: NAME##_nv(1, acc, g, e, es, V, stride, nb, j0, hd); break;               \
            case 2: NAME##_nv(2, acc, g, e, es, V, stride, nb, j0, hd); break;               \
            case 3: NAME##_nv(3, acc, g, e, es, V, stride, nb, j0, hd); break;               \
            default: NAME##_nv(4, acc, g, e, es, V, stride, nb, j0, hd); break;              \
            }                                                                                \
        }                                                                                    \
    }

DEF_ACCUM(accum_f16, uint16_t, LOAD16_F16)
DEF_ACCUM(accum_f32, float, LOAD16_F32)

static float exp_sum(float *s, int n, float m) {
    __m512 mv = _mm512_set1_ps(m), sum = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 y = exp16(_mm512_sub_ps(_mm512_loadu_ps(s + i), mv));
        _mm512_storeu_ps(s + i, y);
        sum = _mm512_add_ps(sum, y);
    }
    if (i < n) { /* masked tail: same polynomial */
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        __m512 y = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + i), mv));
        _mm512_mask_storeu_ps(s + i, k, y);
        sum = _mm512_mask_add_ps(sum, k, sum, y);
    }
    return _mm512_reduce_add_ps(sum);
}

static void scale(float *y, float a, int n) {
    __m512 av = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), av));
    for (; i < n; i++) y[i] *= a;
}

static void to_f16(uint16_t *dst, const float *src, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = lyra_f32_to_fp16(src[i]);
}

static float sumsq(const float *x, int n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
        __m512 x2 = _mm512_loadu_ps(x + i + 32), x3 = _mm512_loadu_ps(x + i + 48);
        a0 = _mm512_fmadd_ps(x0, x0, a0); a1 = _mm512_fmadd_ps(x1, x1, a1);
        a2 = _mm512_fmadd_ps(x2, x2, a2); a3 = _mm512_fmadd_ps(x3, x3, a3);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 x0 = _mm512_loadu_ps(x + i);
        a0 = _mm512_fmadd_ps(x0, x0, a0);
    }
    float t = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (; i < n; i++) t += x[i] * x[i];
    return t;
}

static void scale_mul(float *out, const float *x, float s, const float *w, int n) {
    __m512 sv = _mm512_set1_ps(s);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), sv),
                                                _mm512_loadu_ps(w + i)));
    for (; i < n; i++) out[i] = x[i] * s * w[i];
}

static void swiglu(float *out, const float *g, const float *u, int n) {
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 gv = _mm512_loadu_ps(g + i);
        __m512 ex = exp16(_mm512_sub_ps(zero, gv));
        __m512 y = _mm512_div_ps(gv, _mm512_add_ps(one, ex));
        _mm512_storeu_ps(out + i, _mm512_mul_ps(y, _mm512_loadu_ps(u + i)));
    }
    if (i < n) { /* masked tail: the same polynomial */
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        __m512 gv = _mm512_maskz_loadu_ps(k, g + i);
        __m512 y = _mm512_div_ps(gv, _mm512_add_ps(one, exp16(_mm512_sub_ps(zero, gv))));
        _mm512_mask_storeu_ps(out + i, k, _mm512_mul_ps(y, _mm512_maskz_loadu_ps(k, u + i)));
    }
}

static void add(float *x, const float *y, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, _mm512_add_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    for (; i < n; i++) x[i] += y[i];
}

/* tanh(y): below |y| = 0.5 its odd Taylor series to y^15 (the next term
 * is under 5e-9), above it (1 - e) / (1 + e) with e = exp(-2|y|) and the
 * sign put back; both are computed and one is chosen per lane. */
static inline __m512 tanh16(__m512 y) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 ay = _mm512_abs_ps(y), y2 = _mm512_mul_ps(y, y);
    __m512 p = _mm512_set1_ps(-1.45583438705e-3f); /* -929569/638512875 */
    p = _mm512_fmadd_ps(p, y2, _mm512_set1_ps(3.59212803657e-3f));  /* 21844/6081075 */
    p = _mm512_fmadd_ps(p, y2, _mm512_set1_ps(-8.86323552990e-3f)); /* -1382/155925 */
    p = _mm512_fmadd_ps(p, y2, _mm512_set1_ps(2.18694885362e-2f));  /* 62/2835 */
    p = _mm512_fmadd_ps(p, y2, _mm512_set1_ps(-5.39682539683e-2f)); /* -17/315 */
    p = _mm512_fmadd_ps(p, y2, _mm512_set1_ps(1.33333333333e-1f));  /* 2/15 */
    p = _mm512_fmadd_ps(p, y2, _mm512_set1_ps(-3.33333333333e-1f)); /* -1/3 */
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(y, y2), p, y);
    __m512 e = exp16(_mm512_mul_ps(ay, _mm512_set1_ps(-2.0f)));
    __m512 big = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
    __m512i sign = _mm512_and_si512(_mm512_castps_si512(y), _mm512_set1_epi32((int)0x80000000u));
    big = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(big), sign));
    __mmask16 m = _mm512_cmp_ps_mask(ay, _mm512_set1_ps(0.5f), _CMP_LT_OQ);
    return _mm512_mask_blend_ps(m, big, small);
}

static inline __m512 gelu16(__m512 x) {
    __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
    __m512 y = _mm512_mul_ps(_mm512_set1_ps(0.79788456080286535588f),
                             _mm512_fmadd_ps(x3, _mm512_set1_ps(0.044715f), x));
    __m512 t = _mm512_add_ps(_mm512_set1_ps(1.0f), tanh16(y));
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), t);
}

static void gelu(float *out, const float *x, const float *u, int n) {
    for (int i = 0; i < n; i += 16) { /* the tail in a masked vector: the same lanes' math */
        __mmask16 k = lanes(n - i);
        __m512 y = gelu16(_mm512_maskz_loadu_ps(k, x + i));
        if (u) y = _mm512_mul_ps(y, _mm512_maskz_loadu_ps(k, u + i));
        _mm512_mask_storeu_ps(out + i, k, y);
    }
}

static void softcap(float *x, int n, float cap) {
    const __m512 c = _mm512_set1_ps(cap);
    for (int i = 0; i < n; i += 16) {
        __mmask16 k = lanes(n - i);
        __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(k, x + i), c);
        _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(c, tanh16(v)));
    }
}

static const lyra_cpu_kernels k_avx512 = {
    .scores_f16 = scores_f16, .scores_f32 = scores_f32,
    .accum_f16 = accum_f16, .accum_f32 = accum_f32,
    .exp_sum = exp_sum, .scale = scale, .to_f16 = to_f16, .sumsq = sumsq,
    .scale_mul = scale_mul, .swiglu = swiglu, .add = add,
    .gelu = gelu, .softcap = softcap,
};

const lyra_cpu_kernels *lyra_cpu_kernels_avx512(void) { return &k_avx512; }
