/* cuda_check.cu: host emulation of the CUDA kernels' arithmetic (cuda.h,
 * lyra_cuda_host_*): the same host+device functions the kernels call
 * (cuda_math.cuh), run on the CPU in the kernels' order, so a test can check
 * block layouts, activation quantization and the integer dot products
 * against lyra's CPU reference on a machine without a GPU; likewise the
 * other ops' math (rope pairs, layernorm in its threads' summation order,
 * GELU, soft-capping, the KV ring and the attention window). What this cannot
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

/* A lane's accumulator after part k of unit u (as the decode kernels add
 * it). span (kernel 3's staging, else 0): the weights are unpacked from a
 * copy of the unit's group of 8 (span bytes) as unit u % 8 of the copy. */
template <int T>
static float part_acc(float acc, const uint8_t *row, int64_t u, int k, int64_t n, const float *x,
                      const host_act *a, size_t span) {
    const int64_t e0 = u * LC_UNIT + LC_PART * k;
    if (T == LYRA_TYPE_F32 || T == LYRA_TYPE_F16 || T == LYRA_TYPE_BF16) {
        if (e0 >= n) return acc;
        float w[LC_PART];
        int nv = lc_dequant_part<T>(row, u, k, n, w);
        return lc_float_acc(acc, w, x + e0, nv);
    }
    lc_wq w;
    if (span) {
        uint8_t stage[16 * LC_MV_SPAN16];
        memcpy(stage, row + (size_t)(u / 8) * span, span);
        lc_unpack<T>(stage, u % 8, k, &w);
    } else {
        lc_unpack<T>(row, u, k, &w);
    }
    int xi[2];
    memcpy(xi, a->q + e0, sizeof xi);
    return acc + lc_part_dot<T>(&w, xi, a->d[e0 / a->ablk]);
}

/* The decode kernels' order (cuda_math.cuh) with nw warps per row (kernel
 * 1: nw 1): lane 4*v + k of warp w takes part k of units 8w + v,
 * 8w + v + 8 nw, ...; each warp's butterfly (lc_warp_sum), then the warps'
 * sums added in warp order. */
template <int T>
static void host_dot(const uint8_t *row, const float *x, int64_t n, const host_act *a, int nw,
                     size_t span, float *out) {
    int64_t nu = (n + LC_UNIT - 1) / LC_UNIT;
    float total = 0.0f;
    for (int w = 0; w < nw; w++) {
        float lane[32] = {0};
        for (int l = 0; l < 32; l++)
            for (int64_t u = 8 * w + (l >> 2); u < nu; u += 8 * nw)
                lane[l] = part_acc<T>(lane[l], row, u, l & 3, n, x, a, span);
        for (int o = 16; o > 0; o >>= 1) { /* the butterfly of lc_warp_sum */
            float t[32];
            for (int l = 0; l < 32; l++) t[l] = lane[l] + lane[l ^ o];
            memcpy(lane, t, sizeof t);
        }
        total = w == 0 ? lane[0] : total + lane[0];
    }
    *out = total;
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
    return lyra_cuda_host_dot_kernel(wt, w, x, n, 3);
}

float lyra_cuda_host_dot_kernel(lyra_type wt, const void *w, const float *x, int64_t n, int kernel) {
    const int nw = kernel == 1 ? 1 : LC_MV_ROW_WARPS;
    /* kernel 3 stages groups of 8 units when they are whole 16-byte words
     * (matvec_group's test, the alignment of the rows aside) */
    size_t span = kernel == 3 ? lc_mv_span(wt, n) : 0;
    host_act a;
    memset(&a, 0, sizeof a);
    if (lyra_vec_dot_type(wt) != LYRA_TYPE_F32 && host_quantize(wt, x, n, &a)) {
        host_act_free(&a);
        return NAN;
    }
    float r = NAN;
    if (lc_type_ok(wt)) LC_TYPE_DISPATCH(wt, host_dot, (const uint8_t *)w, x, n, &a, nw, span, &r);
    host_act_free(&a);
    return r;
}

void lyra_cuda_host_dequant(lyra_type wt, const void *row, int64_t n, float *out) {
    LC_TYPE_DISPATCH(wt, host_dequant, (const uint8_t *)row, n, out);
}

/* ---- the other ops ---- */

void lyra_cuda_host_rope(float *x, int n_head, int head_dim, int32_t pos, const lyra_rope *rope) {
    for (int h = 0; h < n_head; h++) /* k_rope's items (t, h, k) */
        for (int k = 0; k < rope->n_rot / 2; k++) {
            float cs, sn;
            int e0, e1;
            lc_rope_cs(pos, k, rope->n_rot, rope->freq_base, rope->freq_scale, rope->freq_factors,
                       &cs, &sn);
            lc_rope_pair(k, rope->n_rot, rope->neox, &e0, &e1);
            float *v = x + (size_t)h * head_dim;
            lc_rope_rot(v[e0], v[e1], cs, sn, &v[e0], &v[e1]);
        }
}

/* block_sum (cuda_ops.cu) over LC_NORM_THREADS threads' values: each warp's
 * butterfly, then the warps' sums (lanes past the warp count 0) once more. */
static float host_block_sum(const float *v) {
    const int nw = LC_NORM_THREADS / 32;
    float sh[32], lane[32], t[32];
    for (int w = 0; w < nw; w++) {
        memcpy(lane, v + 32 * w, sizeof lane);
        for (int o = 16; o > 0; o >>= 1) {
            for (int l = 0; l < 32; l++) t[l] = lane[l] + lane[l ^ o];
            memcpy(lane, t, sizeof t);
        }
        sh[w] = lane[0];
    }
    for (int l = 0; l < 32; l++) lane[l] = l < nw ? sh[l] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) {
        for (int l = 0; l < 32; l++) t[l] = lane[l] + lane[l ^ o];
        memcpy(lane, t, sizeof t);
    }
    return lane[0];
}

void lyra_cuda_host_layernorm(const float *x, const float *w, const float *b, float eps, int64_t n,
                              float *out) {
    float part[LC_NORM_THREADS];
    for (int th = 0; th < LC_NORM_THREADS; th++) {
        part[th] = 0.0f;
        for (int64_t i = th; i < n; i += LC_NORM_THREADS) part[th] = lc_add(part[th], x[i]);
    }
    const float mean = lc_div(host_block_sum(part), (float)n);
    for (int th = 0; th < LC_NORM_THREADS; th++) {
        part[th] = 0.0f;
        for (int64_t i = th; i < n; i += LC_NORM_THREADS) {
            float dv = lc_sub(x[i], mean);
            part[th] = lc_add(part[th], lc_mul(dv, dv));
        }
    }
    const float rstd = lc_ln_rstd(host_block_sum(part), n, eps);
    for (int64_t i = 0; i < n; i++) out[i] = lc_ln_elem(x[i], mean, rstd, w[i], b ? b[i] : 0.0f, b != NULL);
}

void lyra_cuda_host_add_bias(float *x, const float *bias, int64_t n, int ntok) {
    for (int64_t i = 0; i < n * ntok; i++) x[i] = lc_add(x[i], bias[i % n]);
}

void lyra_cuda_host_gelu(const float *x, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = lc_gelu(x[i]);
}

void lyra_cuda_host_geglu(const float *gate, const float *up, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = lc_mul(lc_gelu(gate[i]), up[i]);
}

void lyra_cuda_host_scale(float *x, int64_t n, float s) {
    for (int64_t i = 0; i < n; i++) x[i] = lc_mul(x[i], s);
}

void lyra_cuda_host_softcap(float *x, int64_t n, float cap) {
    for (int64_t i = 0; i < n; i++) x[i] = lc_softcap(x[i], cap);
}

void lyra_cuda_host_kv_store(const lyra_kv_view *kv, int32_t pos0, int ntok, int64_t kv_dim,
                             const float *k, const float *v) {
    const int f16 = kv->kv_type == LYRA_TYPE_F16;
    for (int t = 0; t < ntok; t++) {
        int32_t p = pos0 + t;
        int32_t c = lc_kv_chunk(p, kv->chunk_len, kv->n_ring);
        size_t o = (size_t)(p % kv->chunk_len) * (size_t)kv_dim;
        for (int64_t j = 0; j < kv_dim; j++) {
            float kx = k[(size_t)t * kv_dim + j], vx = v[(size_t)t * kv_dim + j];
            if (f16) {
                ((uint16_t *)kv->k_chunks[c])[o + j] = lc_f2h(kx);
                ((uint16_t *)kv->v_chunks[c])[o + j] = lc_f2h(vx);
            } else {
                ((float *)kv->k_chunks[c])[o + j] = kx;
                ((float *)kv->v_chunks[c])[o + j] = vx;
            }
        }
    }
}

/* Element e of a host chunk (F16 or F32). */
static float host_kv_at(const void *chunk, size_t e, int f16) {
    return f16 ? lc_h2f(((const uint16_t *)chunk)[e]) : ((const float *)chunk)[e];
}

/* k_attention's steps for one (token, head): LC_ATT_WARPS warps taking
 * every fourth position, lane partial dot products reduced by the
 * butterfly, online softmax per warp, then the merge. */
void lyra_cuda_host_attention(const float *q, const lyra_kv_view *kv, int32_t pos0, int ntok,
                              const lyra_attn_params *ap, float *out) {
    enum { NW = LC_ATT_WARPS };
    const int hd = ap->head_dim, grp = ap->n_head / ap->n_kv_head, f16 = kv->kv_type == LYRA_TYPE_F16;
    const int64_t kv_dim = (int64_t)ap->n_kv_head * hd;
    const int32_t L = kv->chunk_len, n_ring = kv->n_ring > 0 ? kv->n_ring : 0;
    const float softcap = ap->softcap > 0.0f ? ap->softcap : 0.0f;
    float *acc = (float *)malloc(sizeof(float) * NW * (size_t)hd);
    if (!acc) return;
    for (int t = 0; t < ntok; t++)
        for (int h = 0; h < ap->n_head; h++) {
            const float *qh = q + ((size_t)t * ap->n_head + h) * hd;
            const int kvh = h / grp;
            const int32_t last = pos0 + t, first = lc_att_first(last, ap->window > 0 ? ap->window : 0);
            float m[NW], l[NW], f[NW];
            for (int w = 0; w < NW; w++) {
                float *aw = acc + (size_t)w * hd;
                memset(aw, 0, sizeof(float) * (size_t)hd);
                m[w] = -INFINITY;
                l[w] = 0.0f;
                for (int32_t p = first + w; p <= last; p += NW) {
                    const int32_t c = lc_kv_chunk(p, L, n_ring);
                    const size_t base = (size_t)(p % L) * kv_dim + (size_t)kvh * hd;
                    float lane[32], tmp[32];
                    for (int ln = 0; ln < 32; ln++) {
                        lane[ln] = 0.0f;
                        for (int e = ln; e < hd; e += 32) lane[ln] += qh[e] * host_kv_at(kv->k_chunks[c], base + e, f16);
                    }
                    for (int o = 16; o > 0; o >>= 1) {
                        for (int ln = 0; ln < 32; ln++) tmp[ln] = lane[ln] + lane[ln ^ o];
                        memcpy(lane, tmp, sizeof lane);
                    }
                    float pe, corr = lc_softmax_add(lc_att_score(lane[0], ap->scale, softcap), &m[w], &l[w], &pe);
                    for (int e = 0; e < hd; e++) {
                        if (corr != 1.0f) aw[e] *= corr;
                        aw[e] += pe * host_kv_at(kv->v_chunks[c], base + e, f16);
                    }
                }
            }
            const float sum = lc_softmax_merge(m, l, NW, f);
            float *o = out + ((size_t)t * ap->n_head + h) * hd;
            for (int e = 0; e < hd; e++) {
                float v = 0.0f;
                for (int w = 0; w < NW; w++) v += acc[(size_t)w * hd + e] * f[w];
                o[e] = v / sum;
            }
        }
    free(acc);
}

} /* extern "C" */
