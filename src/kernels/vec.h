/* vec.h: the CPU device's small vector kernels (attention, norms,
 * activations), one table per instruction set: scalar (vec.c), AVX2
 * (vec_avx2.c), AVX-512 (vec_avx512.c). Matrix products are not here: they
 * are lyra_matmul's (kernels.h).
 *
 * Every kernel computes each output element with a fixed sequence of
 * operations that depends only on its inputs and sizes, never on how the
 * caller partitioned the work, so results do not depend on the thread count.
 * Half-precision rows are IEEE binary16 bit patterns (uint16_t). */
#ifndef LYRA_KERNELS_VEC_H
#define LYRA_KERNELS_VEC_H

#include <stddef.h>
#include <stdint.h>

/* Attention works on one KV head's block of nb positions of a cache chunk:
 * K stored transposed, element j of position p at K[j*ld + p] (ld = the
 * chunk's length), V by rows, element j of position p at V[p*stride + j].
 * g (1..LYRA_ATT_MAXG) query heads share the block. */
#define LYRA_ATT_MAXG 8

typedef struct lyra_cpu_kernels {
    /* s[h*ss + p] = scale * sum_j q[h][j] * K[j*ld + p] for h < g, p < nb (j
     * ascending); mx[h] = the largest of them. Each s value is computed the
     * same way whatever g, nb and its place in the block. */
    void (*scores_f16)(const float *const *q, int g, const uint16_t *K, size_t ld, int nb,
                       int hd, float scale, float *s, size_t ss, float *mx);
    void (*scores_f32)(const float *const *q, int g, const float *K, size_t ld, int nb,
                       int hd, float scale, float *s, size_t ss, float *mx);
    /* acc[h][j] += sum_p e[h*es + p] * V[p*stride + j] for h < g, j < hd
     * (p ascending); the same per element whatever g. */
    void (*accum_f16)(float *const *acc, int g, const float *e, size_t es, const uint16_t *V,
                      size_t stride, int nb, int hd);
    void (*accum_f32)(float *const *acc, int g, const float *e, size_t es, const float *V,
                      size_t stride, int nb, int hd);
    /* s[i] = exp(s[i] - m); returns the sum of the new s[i]. */
    float (*exp_sum)(float *s, int n, float m);
    /* y[i] *= a */
    void (*scale)(float *y, float a, int n);
    /* dst[i] = half(src[i]), round to nearest even */
    void (*to_f16)(uint16_t *dst, const float *src, int n);
    /* sum of x[i]^2 */
    float (*sumsq)(const float *x, int n);
    /* out[i] = x[i] * s * w[i] */
    void (*scale_mul)(float *out, const float *x, float s, const float *w, int n);
    /* out[i] = g[i] / (1 + exp(-g[i])) * u[i] */
    void (*swiglu)(float *out, const float *g, const float *u, int n);
    /* x[i] += y[i] */
    void (*add)(float *x, const float *y, int n);
    /* out[i] = gelu(x[i]) * u[i] (u NULL: gelu(x[i])), GELU in its tanh form
     * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); out may be x */
    void (*gelu)(float *out, const float *x, const float *u, int n);
    /* x[i] = cap * tanh(x[i] / cap) */
    void (*softcap)(float *x, int n, float cap);
} lyra_cpu_kernels;

const lyra_cpu_kernels *lyra_cpu_kernels_scalar(void);
#if LYRA_X86
const lyra_cpu_kernels *lyra_cpu_kernels_avx2(void);
const lyra_cpu_kernels *lyra_cpu_kernels_avx512(void);
#endif

#endif
