/* cuda_check.cu: host emulation of the CUDA kernels' arithmetic (cuda.h,
 * lyra_cuda_host_*): the same host+device functions the kernels call
 * (cuda_math.cuh), run on the CPU in the kernels' order, so a test can check
 * block layouts, activation quantization and the integer dot products
 * against lyra's CPU reference on a machine without a GPU. What this cannot
 * check (indexing of threads and warps, shuffles, launches) is left to the
 * GPU tests (tests/unit/test_cuda_ops.c). */
#include <stdlib.h>
#include <string.h>

#include "cuda_impl.cuh"

/* Quantized activations of one row, in the device's layout (host memory). */
typedef struct host_act {
    int8_t *q;   /* [n] */
    float *d;    /* [n / ablk] */
    int ablk;    /* 32 (Q8_0) or 256 (Q8_K) */
} host_act;

/* As k_quant_q8_0 / k_quant_q8_k: amax of each block, lc_q8_scale, lc_q8_val
 * (Q8_0 keeps the f16-rounded scale); the memory is malloc'd (host_act_free). */
static int host_quantize(lyra_type wt, const float *x, int64_t n, host_act *a) {
    lyra_type at = lyra_vec_dot_type(wt);
    if (at == LYRA_TYPE_F32) return LYRA_ERR_INPUT;
    a->ablk = at == LYRA_TYPE_Q8_K ? 256 : 32;
    a->q = (int8_t *)malloc((size_t)n);
    a->d = (float *)malloc(sizeof(float) * (size_t)(n / a->ablk + 1));
    if (!a->q || !a->d) return LYRA_ERR_OOM;
    for (int64_t b = 0; b < n / a->ablk; b++) {
        const float *xb = x + b * a->ablk;
        float amax = 0.0f, d, id;
        for (int i = 0; i < a->ablk; i++) amax = fmaxf(amax, fabsf(xb[i]));
        lc_q8_scale(amax, &d, &id);
        a->d[b] = a->ablk == 32 ? lc_h2f(lc_f2h(d)) : d;
        for (int i = 0; i < a->ablk; i++) a->q[b * a->ablk + i] = (int8_t)lc_q8_val(xb[i], id);
    }
    return LYRA_OK;
}

static void host_act_free(host_act *a) {
    free(a->q);
    free(a->d);
}

/* A lane's accumulator after part k of unit u (as k_matvec adds it). */
template <int T>
static float part_acc(float acc, const uint8_t *row, int64_t u, int k, int64_t n, const float *x,
                      const host_act *a) {
    const int64_t e0 = u * LC_UNIT + LC_PART * k;
    if (T == LYRA_TYPE_F32 || T == LYRA_TYPE_F16 || T == LYRA_TYPE_BF16) {
        if (e0 >= n) return acc;
        float w[LC_PART];
        int nv = lc_dequant_part<T>(row, u, k, n, w);
        return lc_float_acc(acc, w, x + e0, nv);
    }
    lc_wq w;
    lc_unpack<T>(row, u, k, &w);
    int xi[2];
    memcpy(xi, a->q + e0, sizeof xi);
    return acc + lc_part_dot<T>(&w, xi, a->d[e0 / a->ablk]);
}

/* k_matvec's lane order: lane 4*v + k takes part k of units v, v+8, ... */
template <int T>
static void host_dot(const uint8_t *row, const float *x, int64_t n, const host_act *a, float *out) {
    float lane[32] = {0};
    int64_t nu = (n + LC_UNIT - 1) / LC_UNIT;
    for (int l = 0; l < 32; l++)
        for (int64_t u = l >> 2; u < nu; u += 8) lane[l] = part_acc<T>(lane[l], row, u, l & 3, n, x, a);
    for (int o = 16; o > 0; o >>= 1) { /* the butterfly of lc_warp_sum */
        float t[32];
        for (int l = 0; l < 32; l++) t[l] = lane[l] + lane[l ^ o];
        memcpy(lane, t, sizeof t);
    }
    *out = lane[0];
}

template <int T>
static void host_dequant(const uint8_t *row, int64_t n, float *out) {
    int64_t np = (n + LC_PART - 1) / LC_PART;
    for (int64_t p = 0; p < np; p++) {
        float v[LC_PART];
        int nv = lc_dequant_part<T>(row, p / 4, (int)(p % 4), n, v);
        memcpy(out + p * LC_PART, v, sizeof(float) * (size_t)nv);
    }
}

extern "C" {

int lyra_cuda_host_quantize_act(lyra_type wt, const float *x, int64_t n, void *out) {
    host_act a;
    memset(&a, 0, sizeof a);
    int rc = host_quantize(wt, x, n, &a);
    if (rc) {
        host_act_free(&a);
        return rc;
    }
    uint8_t *o = (uint8_t *)out;
    if (a.ablk == 32) { /* block_q8_0: d f16, qs[32] */
        for (int64_t b = 0; b < n / 32; b++, o += 34) {
            uint16_t h = lc_f2h(a.d[b]);
            memcpy(o, &h, 2);
            memcpy(o + 2, a.q + b * 32, 32);
        }
    } else { /* block_q8_K: d f32, qs[256], bsums[16] int16 (sums of 16 q) */
        for (int64_t b = 0; b < n / 256; b++, o += 292) {
            memcpy(o, &a.d[b], 4);
            memcpy(o + 4, a.q + b * 256, 256);
            for (int g = 0; g < 16; g++) {
                int s = 0;
                for (int i = 0; i < 16; i++) s += a.q[b * 256 + g * 16 + i];
                int16_t s16 = (int16_t)s;
                memcpy(o + 260 + 2 * g, &s16, 2);
            }
        }
    }
    host_act_free(&a);
    return LYRA_OK;
}

float lyra_cuda_host_dot(lyra_type wt, const void *w, const float *x, int64_t n) {
    host_act a;
    memset(&a, 0, sizeof a);
    if (lyra_vec_dot_type(wt) != LYRA_TYPE_F32 && host_quantize(wt, x, n, &a)) {
        host_act_free(&a);
        return NAN;
    }
    float r = NAN;
    if (lc_type_ok(wt)) LC_TYPE_DISPATCH(wt, host_dot, (const uint8_t *)w, x, n, &a, &r);
    host_act_free(&a);
    return r;
}

void lyra_cuda_host_dequant(lyra_type wt, const void *row, int64_t n, float *out) {
    LC_TYPE_DISPATCH(wt, host_dequant, (const uint8_t *)row, n, out);
}

} /* extern "C" */
