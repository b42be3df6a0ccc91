/* vec.c: the portable scalar versions of the CPU device's vector
 * kernels (see vec.h); the reference for the SIMD ones. */
#include "kernels/vec.h"

#include <math.h>

#include "core/fp16.h"

static void scores_f16(const float *const *q, int g, const uint16_t *K, size_t ld, int nb,
                       int hd, float scale, float *s, size_t ss, float *mx) {
    for (int h = 0; h < g; h++) {
        float m = -INFINITY;
        for (int p = 0; p < nb; p++) {
            float sum = 0.0f;
            for (int j = 0; j < hd; j++) sum += q[h][j] * lyra_fp16_to_f32(K[(size_t)j * ld + p]);
            s[h * ss + p] = sum * scale;
            m = s[h * ss + p] > m ? s[h * ss + p] : m;
        }
        mx[h] = m;
    }
}

static void scores_f32(const float *const *q, int g, const float *K, size_t ld, int nb,
                       int hd, float scale, float *s, size_t ss, float *mx) {
    for (int h = 0; h < g; h++) {
        float m = -INFINITY;
        for (int p = 0; p < nb; p++) {
            float sum = 0.0f;
            for (int j = 0; j < hd; j++) sum += q[h][j] * K[(size_t)j * ld + p];
            s[h * ss + p] = sum * scale;
            m = s[h * ss + p] > m ? s[h * ss + p] : m;
        }
        mx[h] = m;
    }
}

static void accum_f16(float *const *acc, int g, const float *e, size_t es, const uint16_t *V,
                      size_t stride, int nb, int hd) {
    for (int p = 0; p < nb; p++) {
        const uint16_t *v = V + (size_t)p * stride;
        for (int h = 0; h < g; h++)
            for (int j = 0; j < hd; j++) acc[h][j] += e[h * es + p] * lyra_fp16_to_f32(v[j]);
    }
}

static void accum_f32(float *const *acc, int g, const float *e, size_t es, const float *V,
                      size_t stride, int nb, int hd) {
    for (int p = 0; p < nb; p++) {
        const float *v = V + (size_t)p * stride;
        for (int h = 0; h < g; h++)
            for (int j = 0; j < hd; j++) acc[h][j] += e[h * es + p] * v[j];
    }
}

static float exp_sum(float *s, int n, float m) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        s[i] = expf(s[i] - m);
        sum += s[i];
    }
    return sum;
}

static void scale(float *y, float a, int n) {
    for (int i = 0; i < n; i++) y[i] *= a;
}

static void to_f16(uint16_t *dst, const float *src, int n) {
    for (int i = 0; i < n; i++) dst[i] = lyra_f32_to_fp16(src[i]);
}

static float sumsq(const float *x, int n) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) sum += x[i] * x[i];
    return sum;
}

static void scale_mul(float *out, const float *x, float s, const float *w, int n) {
    for (int i = 0; i < n; i++) out[i] = x[i] * s * w[i];
}

static void swiglu(float *out, const float *g, const float *u, int n) {
    for (int i = 0; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void add(float *x, const float *y, int n) {
    for (int i = 0; i < n; i++) x[i] += y[i];
}

static void gelu(float *out, const float *x, const float *u, int n) {
    const float c = 0.79788456080286535588f; /* sqrt(2/pi) */
    for (int i = 0; i < n; i++) {
        float v = x[i];
        float y = 0.5f * v * (1.0f + tanhf(c * (v + 0.044715f * v * v * v)));
        out[i] = u ? y * u[i] : y;
    }
}

static void softcap(float *x, int n, float cap) {
    for (int i = 0; i < n; i++) x[i] = cap * tanhf(x[i] / cap);
}

static const lyra_cpu_kernels k_scalar = {
    .scores_f16 = scores_f16, .scores_f32 = scores_f32,
    .accum_f16 = accum_f16, .accum_f32 = accum_f32,
    .exp_sum = exp_sum, .scale = scale, .to_f16 = to_f16, .sumsq = sumsq,
    .scale_mul = scale_mul, .swiglu = swiglu, .add = add,
    .gelu = gelu, .softcap = softcap,
};

const lyra_cpu_kernels *lyra_cpu_kernels_scalar(void) { return &k_scalar; }
