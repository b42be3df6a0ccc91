/* vec_avx2.c: AVX2/FMA/F16C versions of the CPU device's vector
 * kernels (see vec.h). Compiled with -mavx2 -mfma -mf16c; used only
 * when the CPU has them. exp is a Cephes-style polynomial (about 1 ulp), used for
 * every element (tails too), so an element's result does not depend on where
 * it sits in the range. */
#include "kernels/vec.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "core/fp16.h"
#include "kernels/prefetch.h"

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* exp(x) for x in [-87, 88] (clamped outside). */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500E-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
    __m256 y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

#define LOAD8_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define LOAD8_F32(p) _mm256_loadu_ps(p)
#define TOF_F16(x) lyra_fp16_to_f32(x)
#define TOF_F32(x) (x)

/* Scores: 8 positions per vector, G heads at once (the K vector is loaded
 * once for all); leftover positions with scalar fmaf, which rounds exactly as
 * a vector lane does. */
#define DEF_SCORES(NAME, T, LOAD, TOF)                                                       \
    static inline __attribute__((always_inline)) void NAME##_g(                              \
        const int G, const float *const *q, const T *K, size_t ld, int nb, int hd,          \
        float scale, float *s, size_t ss, float *mx) {                                      \
        __m256 vmax[LYRA_ATT_MAXG];                                                          \
        const __m256 sc = _mm256_set1_ps(scale);                                             \
        for (int h = 0; h < G; h++) vmax[h] = _mm256_set1_ps(-INFINITY);                     \
        int p0 = 0;                                                                          \
        for (; p0 + 8 <= nb; p0 += 8) {                                                      \
            __m256 acc[LYRA_ATT_MAXG];                                                       \
            for (int h = 0; h < G; h++) acc[h] = _mm256_setzero_ps();                        \
            const T *k = K + p0;                                                             \
            for (int j = 0; j < hd; j++, k += ld) {                                          \
                if (!(p0 & 31)) lyra_prefetch_ahead(k, LYRA_ATT_PF_POS * sizeof(T));                     \
                __m256 kv = LOAD(k);                                                         \
                for (int h = 0; h < G; h++)                                                  \
                    acc[h] = _mm256_fmadd_ps(_mm256_broadcast_ss(q[h] + j), kv, acc[h]);     \
            }                                                                                \
            for (int h = 0; h < G; h++) {                                                    \
                __m256 v = _mm256_mul_ps(acc[h], sc);                                        \
                _mm256_storeu_ps(s + h * ss + p0, v);                                        \
                vmax[h] = _mm256_max_ps(vmax[h], v);                                         \
            }                                                                                \
        }                                                                                    \
        for (int h = 0; h < G; h++) {                                                        \
            float m = hmax8(vmax[h]);                                                        \
            for (int p = p0; p < nb; p++) {                                                  \
                float a = 0.0f;                                                              \
                for (int j = 0; j < hd; j++) a = fmaf(q[h][j], TOF(K[(size_t)j * ld + p]), a); \
                a *= scale;                                                                  \
                s[h * ss + p] = a;                                                           \
                m = a > m ? a : m;                                                           \
            }                                                                                \
            mx[h] = m;                                                                       \
        }                                                                                    \
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

DEF_SCORES(scores_f16, uint16_t, LOAD8_F16, TOF_F16)
DEF_SCORES(scores_f32, float, LOAD8_F32, TOF_F32)

/* Accumulation: columns in slices of 16 (2 registers), then 8, then scalar
 * fmaf; up to 4 heads share each V load. Per element the same fma chain. */
#define DEF_ACCUM(NAME, T, LOAD, TOF)                                                        \
    static inline __attribute__((always_inline)) void NAME##_g(                              \
        const int G, float *const *acc, const float *e, size_t es, const T *V,              \
        size_t stride, int nb, int hd) {                                                     \
        int j0 = 0;                                                                          \
        for (; j0 + 16 <= hd; j0 += 16) {                                                    \
            __m256 a0[4], a1[4];                                                             \
            for (int h = 0; h < G; h++) {                                                    \
                a0[h] = _mm256_loadu_ps(acc[h] + j0);                                        \
                a1[h] = _mm256_loadu_ps(acc[h] + j0 + 8);                                    \
            }                                                                                \
            const T *v = V + j0;                                                             \
            for (int p = 0; p < nb; p++, v += stride) {                                      \
                lyra_prefetch_ahead(v, LYRA_ATT_PF_ROWS * stride * sizeof(T));                           \
                __m256 v0 = LOAD(v), v1 = LOAD(v + 8);                                       \
                for (int h = 0; h < G; h++) {                                                \
                    __m256 ep = _mm256_broadcast_ss(e + h * es + p);                         \
                    a0[h] = _mm256_fmadd_ps(ep, v0, a0[h]);                                  \
                    a1[h] = _mm256_fmadd_ps(ep, v1, a1[h]);                                  \
                }                                                                            \
            }                                                                                \
            for (int h = 0; h < G; h++) {                                                    \
                _mm256_storeu_ps(acc[h] + j0, a0[h]);                                        \
                _mm256_storeu_ps(acc[h] + j0 + 8, a1[h]);                                    \
            }                                                                                \
        }                                                                                    \
        for (; j0 + 8 <= hd; j0 += 8) {                                                      \
            __m256 a0[4];                                                                    \
            for (int h = 0; h < G; h++) a0[h] = _mm256_loadu_ps(acc[h] + j0);                \
            const T *v = V + j0;                                                             \
            for (int p = 0; p < nb; p++, v += stride) {                                      \
                __m256 v0 = LOAD(v);                                                         \
                for (int h = 0; h < G; h++)                                                  \
                    a0[h] = _mm256_fmadd_ps(_mm256_broadcast_ss(e + h * es + p), v0, a0[h]); \
            }                                                                                \
            for (int h = 0; h < G; h++) _mm256_storeu_ps(acc[h] + j0, a0[h]);                \
        }                                                                                    \
        for (; j0 < hd; j0++)                                                                \
            for (int h = 0; h < G; h++) {                                                    \
                float a = acc[h][j0];                                                        \
                for (int p = 0; p < nb; p++)                                                 \
                    a = fmaf(e[h * es + p], TOF(V[(size_t)p * stride + j0]), a);             \
                acc[h][j0] = a;                                                              \
            }                                                                                \
    }                                                                                        \
    static void NAME(float *const *acc, int g, const float *e, size_t es, const T *V,        \
                     size_t stride, int nb, int hd) {                                        \
        for (int h0 = 0; h0 < g; h0 += 4) {                                                  \
            switch (g - h0 < 4 ? g - h0 : 4) {                                               \
            case 1: NAME##_g(1, acc + h0, e + h0 * es, es, V, stride, nb, hd); break;        \
            case 2: NAME##_g(2, acc + h0, e + h0 * es, es, V, stride, nb, hd); break;        \
            case 3: NAME##_g(3, acc + h0, e + h0 * es, es, V, stride, nb, hd); break;        \
            default: NAME##_g(4, acc + h0, e + h0 * es, es, V, stride, nb, hd); break;       \
            }                                                                                \
        }                                                                                    \
    }

DEF_ACCUM(accum_f16, uint16_t, LOAD8_F16, TOF_F16)
DEF_ACCUM(accum_f32, float, LOAD8_F32, TOF_F32)

static float exp_sum(float *s, int n, float m) {
    __m256 mv = _mm256_set1_ps(m), sum = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 y = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + i), mv));
        _mm256_storeu_ps(s + i, y);
        sum = _mm256_add_ps(sum, y);
    }
    if (i < n) { /* tail through a padded vector: the same polynomial */
        float tmp[8] = {0};
        memcpy(tmp, s + i, sizeof(float) * (size_t)(n - i));
        __m256 y = exp8(_mm256_sub_ps(_mm256_loadu_ps(tmp), mv));
        _mm256_storeu_ps(tmp, y);
        for (int j = n - i; j < 8; j++) tmp[j] = 0.0f;
        memcpy(s + i, tmp, sizeof(float) * (size_t)(n - i));
        sum = _mm256_add_ps(sum, _mm256_loadu_ps(tmp));
    }
    return hsum8(sum);
}

static void scale(float *y, float a, int n) {
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), av));
    for (; i < n; i++) y[i] *= a;
}

static void to_f16(uint16_t *dst, const float *src, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = lyra_f32_to_fp16(src[i]);
}

static float sumsq(const float *x, int n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
        __m256 x2 = _mm256_loadu_ps(x + i + 16), x3 = _mm256_loadu_ps(x + i + 24);
        a0 = _mm256_fmadd_ps(x0, x0, a0); a1 = _mm256_fmadd_ps(x1, x1, a1);
        a2 = _mm256_fmadd_ps(x2, x2, a2); a3 = _mm256_fmadd_ps(x3, x3, a3);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 x0 = _mm256_loadu_ps(x + i);
        a0 = _mm256_fmadd_ps(x0, x0, a0);
    }
    float t = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) t += x[i] * x[i];
    return t;
}

static void scale_mul(float *out, const float *x, float s, const float *w, int n) {
    __m256 sv = _mm256_set1_ps(s);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sv),
                                                _mm256_loadu_ps(w + i)));
    for (; i < n; i++) out[i] = x[i] * s * w[i];
}

static void swiglu(float *out, const float *g, const float *u, int n) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gv = _mm256_loadu_ps(g + i);
        __m256 ex = exp8(_mm256_sub_ps(zero, gv));
        __m256 y = _mm256_div_ps(gv, _mm256_add_ps(one, ex));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(y, _mm256_loadu_ps(u + i)));
    }
    if (i < n) { /* tail through padded vectors: every element the same way */
        float tg[8] = {0}, tu[8] = {0};
        memcpy(tg, g + i, sizeof(float) * (size_t)(n - i));
        memcpy(tu, u + i, sizeof(float) * (size_t)(n - i));
        __m256 gv = _mm256_loadu_ps(tg);
        __m256 y = _mm256_div_ps(gv, _mm256_add_ps(one, exp8(_mm256_sub_ps(zero, gv))));
        _mm256_storeu_ps(tg, _mm256_mul_ps(y, _mm256_loadu_ps(tu)));
        memcpy(out + i, tg, sizeof(float) * (size_t)(n - i));
    }
}

static void add(float *x, const float *y, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) x[i] += y[i];
}

/* tanh(y): below |y| = 0.5 its odd Taylor series to y^15 (the next term
 * is under 5e-9), above it (1 - e) / (1 + e) with e = exp(-2|y|) and the
 * sign put back; both are computed and one is chosen per lane. */
static inline __m256 tanh8(__m256 y) {
    const __m256 one = _mm256_set1_ps(1.0f), signbit = _mm256_set1_ps(-0.0f);
    __m256 ay = _mm256_andnot_ps(signbit, y), y2 = _mm256_mul_ps(y, y);
    __m256 p = _mm256_set1_ps(-1.45583438705e-3f);
    p = _mm256_fmadd_ps(p, y2, _mm256_set1_ps(3.59212803657e-3f));
    p = _mm256_fmadd_ps(p, y2, _mm256_set1_ps(-8.86323552990e-3f));
    p = _mm256_fmadd_ps(p, y2, _mm256_set1_ps(2.18694885362e-2f));
    p = _mm256_fmadd_ps(p, y2, _mm256_set1_ps(-5.39682539683e-2f));
    p = _mm256_fmadd_ps(p, y2, _mm256_set1_ps(1.33333333333e-1f));
    p = _mm256_fmadd_ps(p, y2, _mm256_set1_ps(-3.33333333333e-1f));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(y, y2), p, y);
    __m256 e = exp8(_mm256_mul_ps(ay, _mm256_set1_ps(-2.0f)));
    __m256 big = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
    big = _mm256_or_ps(big, _mm256_and_ps(signbit, y));
    return _mm256_blendv_ps(big, small, _mm256_cmp_ps(ay, _mm256_set1_ps(0.5f), _CMP_LT_OQ));
}

static inline __m256 gelu8(__m256 x) {
    __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    __m256 y = _mm256_mul_ps(_mm256_set1_ps(0.79788456080286535588f),
                             _mm256_fmadd_ps(x3, _mm256_set1_ps(0.044715f), x));
    __m256 t = _mm256_add_ps(_mm256_set1_ps(1.0f), tanh8(y));
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), t);
}

static void gelu(float *out, const float *x, const float *u, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 y = gelu8(_mm256_loadu_ps(x + i));
        if (u) y = _mm256_mul_ps(y, _mm256_loadu_ps(u + i));
        _mm256_storeu_ps(out + i, y);
    }
    if (i < n) { /* tail through padded vectors: every element the same way */
        float tx[8] = {0}, tu[8] = {0};
        memcpy(tx, x + i, sizeof(float) * (size_t)(n - i));
        if (u) memcpy(tu, u + i, sizeof(float) * (size_t)(n - i));
        __m256 y = gelu8(_mm256_loadu_ps(tx));
        if (u) y = _mm256_mul_ps(y, _mm256_loadu_ps(tu));
        _mm256_storeu_ps(tx, y);
        memcpy(out + i, tx, sizeof(float) * (size_t)(n - i));
    }
}

static void softcap(float *x, int n, float cap) {
    const __m256 c = _mm256_set1_ps(cap);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(c, tanh8(_mm256_div_ps(_mm256_loadu_ps(x + i), c))));
    if (i < n) {
        float t[8] = {0};
        memcpy(t, x + i, sizeof(float) * (size_t)(n - i));
        _mm256_storeu_ps(t, _mm256_mul_ps(c, tanh8(_mm256_div_ps(_mm256_loadu_ps(t), c))));
        memcpy(x + i, t, sizeof(float) * (size_t)(n - i));
    }
}

static const lyra_cpu_kernels k_avx2 = {
    .scores_f16 = scores_f16, .scores_f32 = scores_f32,
    .accum_f16 = accum_f16, .accum_f32 = accum_f32,
    .exp_sum = exp_sum, .scale = scale, .to_f16 = to_f16, .sumsq = sumsq,
    .scale_mul = scale_mul, .swiglu = swiglu, .add = add,
    .gelu = gelu, .softcap = softcap,
};

const lyra_cpu_kernels *lyra_cpu_kernels_avx2(void) { return &k_avx2; }
