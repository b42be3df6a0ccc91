/* cuda_ops.cu: the CUDA device's ops other than matmul: get_rows, rmsnorm,
 * layernorm, rope, kv_store, attention, swiglu, add, add_bias, gelu, geglu,
 * scale, softcap. The per-element math is cuda_math.cuh's (also run on the
 * host by cuda_check.cu for the tests). Each follows the CPU device's
 * formula (cpu.c) with the same float operations where the CPU defines an
 * order (rope, dequantization), so results differ from the CPU's only by
 * summation order (reductions) and the last bit of expf.
 *
 * Host arrays (token ids, positions, KV chunk pointers) reach the kernels as
 * kernel parameters, LC_IDS_MAX entries per launch: nothing is allocated.
 *
 * KV cache layout inside a chunk of L positions: device.h's "rows", K and V
 * both [L][kv_dim] by position (element j of position p at p*kv_dim + j), so
 * a warp reads one position's head as contiguous memory; the ops table leaves
 * kv_to_rows / kv_from_rows NULL, and the runtime converts when a layer's
 * cache moves to or from the CPU (whose K is transposed). */
#include <stdint.h>

#include "cuda_impl.cuh"

/* ------------------------------------------------------------------ small */

/* Sum over a block of blockDim.x (a multiple of 32, <= 1024) threads; every
 * thread gets it. sh: 32 floats of shared memory. */
static __device__ float block_sum(float v, float *sh) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = lc_warp_sum(v);
    __syncthreads(); /* sh may still be read from a previous call */
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    return lc_warp_sum(v);
}

/* Token ids or positions of one launch. */
typedef struct lc_ids {
    int32_t v[LC_IDS_MAX]; /* host values, copied as kernel parameters */
} lc_ids;

/* -------------------------------------------------------------- get_rows */

/* out[t][:] = row ids[t] of table, dequantized; one thread per part (8
 * elements). */
template <int T>
__global__ void k_get_rows(const uint8_t *table, size_t rb, int64_t n, lc_ids ids, int ntok,
                           float *out) {
    const int64_t np = (n + LC_PART - 1) / LC_PART; /* parts per row */
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < np * ntok;
         i += (int64_t)gridDim.x * blockDim.x) {
        int t = (int)(i / np);
        int64_t pi = i % np;
        float v[LC_PART];
        int nv = lc_dequant_part<T>(table + (size_t)ids.v[t] * rb, pi / 4, (int)(pi % 4), n, v);
        float *o = out + (size_t)t * n + (size_t)pi * LC_PART;
        if (nv == LC_PART) {
#pragma unroll
            for (int k = 0; k < LC_PART; k++) o[k] = v[k];
        } else {
            for (int k = 0; k < nv; k++) o[k] = v[k];
        }
    }
}

template <int T>
static void launch_get_rows(lyra_device *d, const uint8_t *table, size_t rb, int64_t n,
                            const lc_ids *ids, int nt, float *out) {
    int64_t work = nt * ((n + LC_PART - 1) / LC_PART);
    k_get_rows<T><<<lc_blocks(work, 128), 128, 0, LC(d)->stream>>>(table, rb, n, *ids, nt, out);
}

void lc_get_rows(lyra_device *d, lyra_type t, const void *table, int64_t n, const int32_t *ids,
                 int ntok, float *out) {
    if (ntok <= 0 || n <= 0 || !lc_use(d)) return;
    if (!lc_type_ok(t) || n % lyra_type_block(t)) {
        lc_fail(d, "get_rows: type %s with %lld columns is not supported (internal error)",
                lyra_type_name(t) ? lyra_type_name(t) : "?", (long long)n);
        return;
    }
    size_t rb = lyra_row_bytes(t, n);
    for (int t0 = 0; t0 < ntok; t0 += LC_IDS_MAX) {
        int nt = ntok - t0 < LC_IDS_MAX ? ntok - t0 : LC_IDS_MAX;
        lc_ids p;
        memcpy(p.v, ids + t0, (size_t)nt * sizeof(int32_t));
        LC_TYPE_DISPATCH(t, launch_get_rows, d, (const uint8_t *)table, rb, n, &p, nt,
                         out + (size_t)t0 * n);
        if (!lc_launched(d, "get_rows")) return;
    }
}

/* --------------------------------------------------------------- rmsnorm */

/* One block per token: out = x * (1/sqrt(mean(x^2) + eps)) * w. */
__global__ void k_rmsnorm(const float *x, const float *w, float eps, int64_t n, float *out) {
    __shared__ float sh[32];
    const float *xr = x + (size_t)blockIdx.x * n;
    float *o = out + (size_t)blockIdx.x * n;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, sh);
    float s = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = lc_mul(lc_mul(xr[i], s), w[i]);
}

void lc_rmsnorm(lyra_device *d, const float *x, const float *w, float eps, int64_t n, int ntok,
                float *out) {
    if (ntok <= 0 || n <= 0 || !lc_use(d)) return;
    k_rmsnorm<<<(unsigned)ntok, 256, 0, LC(d)->stream>>>(x, w, eps, n, out);
    lc_launched(d, "rmsnorm");
}

/* ------------------------------------------------------------------ rope */

/* Pairs i < n_rot/2 ((2i, 2i+1), or (i, i + n_rot/2) NeoX style) of every
 * head of nt tokens rotated by theta_i = pos * freq_scale * base^(-2i/n_rot)
 * / freq_factors[i], the angle and its cos/sin in double as the CPU computes
 * its table; dims n_rot.. are left alone. */
__global__ void k_rope(float *x, int nt, int n_head, int head_dim, lc_ids pos, int n_rot,
                       int neox, float base, float fscale, const float *ff) {
    const int half = n_rot / 2;
    const int64_t total = (int64_t)nt * n_head * half;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int k = (int)(i % half);
        int64_t th_ = i / half;
        int h = (int)(th_ % n_head), t = (int)(th_ / n_head);
        float cs, sn;
        int e0, e1;
        lc_rope_cs(pos.v[t], k, n_rot, base, fscale, ff, &cs, &sn);
        lc_rope_pair(k, n_rot, neox, &e0, &e1);
        float *v = x + ((size_t)t * n_head + h) * head_dim;
        lc_rope_rot(v[e0], v[e1], cs, sn, &v[e0], &v[e1]);
    }
}

void lc_rope(lyra_device *d, float *x, int ntok, int n_head, int head_dim, const int32_t *pos,
             const lyra_rope *rope) {
    if (ntok <= 0 || n_head <= 0 || !lc_use(d)) return;
    if (rope->n_rot <= 0 || rope->n_rot > head_dim || rope->n_rot % 2) {
        lc_fail(d, "rope: unsupported rotation size %d (internal error)", rope->n_rot);
        return;
    }
    for (int t0 = 0; t0 < ntok; t0 += LC_IDS_MAX) {
        int nt = ntok - t0 < LC_IDS_MAX ? ntok - t0 : LC_IDS_MAX;
        lc_ids p;
        memcpy(p.v, pos + t0, (size_t)nt * sizeof(int32_t));
        int64_t work = (int64_t)nt * n_head * (rope->n_rot / 2);
        k_rope<<<lc_blocks(work, 256), 256, 0, LC(d)->stream>>>(
            x + (size_t)t0 * n_head * head_dim, nt, n_head, head_dim, p, rope->n_rot,
            rope->neox != 0, rope->freq_base, rope->freq_scale, rope->freq_factors);
        if (!lc_launched(d, "rope")) return;
    }
}

/* -------------------------------------------------------------- kv_store */

/* Positions r0..r0+n-1 of one chunk from k, v [n][kv_dim]. */
__global__ void k_kv_store(void *K, void *V, int f16, int r0, int n, int64_t kv_dim,
                           const float *k, const float *v) {
    const int64_t total = (int64_t)n * kv_dim;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        size_t o = (size_t)r0 * kv_dim + i;
        if (f16) {
            ((uint16_t *)K)[o] = lc_f2h(k[i]);
            ((uint16_t *)V)[o] = lc_f2h(v[i]);
        } else {
            ((float *)K)[o] = k[i];
            ((float *)V)[o] = v[i];
        }
    }
}

void lc_kv_store(lyra_device *d, const lyra_kv_view *kv, int32_t pos0, int ntok, int64_t kv_dim,
                 const float *k, const float *v) {
    if (ntok <= 0 || kv_dim <= 0 || !lc_use(d)) return;
    const int L = kv->chunk_len, f16 = kv->kv_type == LYRA_TYPE_F16;
    for (int32_t p = pos0; p < pos0 + ntok;) { /* the positions of one chunk per launch */
        int c = lyra_kv_chunk(kv, p), r = p % L;
        int n = L - r < pos0 + ntok - p ? L - r : pos0 + ntok - p;
        size_t off = (size_t)(p - pos0) * kv_dim;
        k_kv_store<<<lc_blocks((int64_t)n * kv_dim, 256), 256, 0, LC(d)->stream>>>(
            kv->k_chunks[c], kv->v_chunks[c], f16, r, n, kv_dim, k + off, v + off);
        if (!lc_launched(d, "kv_store")) return;
        p += n;
    }
}

/* ------------------------------------------------------------- attention */

/* The KV chunks one launch may read: chunk c of the cache (lc_kv_chunk) is
 * entry c - c_lo. */
template <int MAXC>
struct lc_kvp {
    const void *k[MAXC]; /* K chunk pointers (device) */
    const void *v[MAXC]; /* V chunk pointers */
};

/* Element e of position r of a chunk (F16 or F32). */
static __device__ __forceinline__ float kv_at(const void *chunk, size_t e, int f16) {
    return f16 ? lc_h2f(((const uint16_t *)chunk)[e]) : ((const float *)chunk)[e];
}

/* What a launch attends with (the cache's shape and the layer's parameters). */
typedef struct lc_attp {
    int32_t pos0;        /* token t is at position pos0 + t */
    int n_head, grp, hd; /* heads, heads per KV head, head_dim */
    int L;               /* chunk_len */
    int32_t n_ring;      /* 0, or the ring's chunks */
    int c_lo;            /* the chunk in entry 0 of lc_kvp */
    int64_t kv_dim;
    float scale, softcap;
    int32_t window;
    int f16;
} lc_attp;

/* One block per (token t, head h); warp w takes positions first + w,
 * first + w + LC_ATT_WARPS, ... of first..pos0+t (first: lc_att_first) with an
 * online softmax (running max m, sum l, weighted V acc), then the warps'
 * states are merged. Lane l holds elements l + 32*i (i < EPL) of the head.
 * cuda_check.cu's host_attention runs the same steps on the host. */
template <int EPL, int MAXC>
__global__ void __launch_bounds__(32 * LC_ATT_WARPS)
    k_attention(const float *q, float *out, lc_kvp<MAXC> kv, lc_attp a) {
    __shared__ float sm_m[LC_ATT_WARPS], sm_l[LC_ATT_WARPS], sm_acc[LC_ATT_WARPS][EPL * 32];
    const int t = blockIdx.x / a.n_head, h = blockIdx.x % a.n_head, kvh = h / a.grp;
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, hd = a.hd;
    const float *qh = q + ((size_t)t * a.n_head + h) * hd;
    float qv[EPL], acc[EPL];
#pragma unroll
    for (int i = 0; i < EPL; i++) {
        int e = lane + 32 * i;
        qv[i] = e < hd ? qh[e] : 0.0f;
        acc[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    const int32_t last = a.pos0 + t, first = lc_att_first(last, a.window);
    for (int32_t p = first + w; p <= last; p += LC_ATT_WARPS) {
        const int c = lc_kv_chunk(p, a.L, a.n_ring) - a.c_lo;
        const size_t base = (size_t)(p % a.L) * a.kv_dim + (size_t)kvh * hd;
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < EPL; i++) {
            int e = lane + 32 * i;
            if (e < hd) s += qv[i] * kv_at(kv.k[c], base + e, a.f16);
        }
        float pe, corr = lc_softmax_add(lc_att_score(lc_warp_sum(s), a.scale, a.softcap), &m, &l, &pe);
        if (corr != 1.0f) {
#pragma unroll
            for (int i = 0; i < EPL; i++) acc[i] *= corr;
        }
#pragma unroll
        for (int i = 0; i < EPL; i++) {
            int e = lane + 32 * i;
            if (e < hd) acc[i] += pe * kv_at(kv.v[c], base + e, a.f16);
        }
    }
    if (lane == 0) {
        sm_m[w] = m;
        sm_l[w] = l;
    }
#pragma unroll
    for (int i = 0; i < EPL; i++) sm_acc[w][lane + 32 * i] = acc[i];
    __syncthreads();
    if (w != 0) return;
    float f[LC_ATT_WARPS]; /* warp 0 always has position `first` */
    const float sum = lc_softmax_merge(sm_m, sm_l, LC_ATT_WARPS, f);
    float *o = out + ((size_t)t * a.n_head + h) * hd;
#pragma unroll
    for (int i = 0; i < EPL; i++) {
        int e = lane + 32 * i;
        if (e >= hd) continue;
        float v = 0.0f;
        for (int j = 0; j < LC_ATT_WARPS; j++) v += sm_acc[j][e] * f[j];
        o[e] = v / sum;
    }
}

template <int EPL, int MAXC>
static void launch_attention(lyra_device *d, const float *q, const lyra_kv_view *kv, int nc,
                             int ntok, const lc_attp *a, float *out) {
    lc_kvp<MAXC> p;
    memset(&p, 0, sizeof p);
    for (int c = 0; c < nc; c++) {
        p.k[c] = kv->k_chunks[a->c_lo + c];
        p.v[c] = kv->v_chunks[a->c_lo + c];
    }
    k_attention<EPL, MAXC><<<(unsigned)(ntok * a->n_head), 32 * LC_ATT_WARPS, 0, LC(d)->stream>>>(
        q, out, p, *a);
}

template <int EPL>
static void launch_attention_c(lyra_device *d, const float *q, const lyra_kv_view *kv, int nc,
                               int ntok, const lc_attp *a, float *out) {
    if (nc <= 16)
        launch_attention<EPL, 16>(d, q, kv, nc, ntok, a, out);
    else
        launch_attention<EPL, 1024>(d, q, kv, nc, ntok, a, out);
}

void lc_attention(lyra_device *d, const float *q, const lyra_kv_view *kv, int32_t pos0, int ntok,
                  const lyra_attn_params *ap, float *out) {
    if (ntok <= 0 || !lc_use(d)) return;
    const int n_head = ap->n_head, n_kv_head = ap->n_kv_head, head_dim = ap->head_dim;
    if (n_kv_head <= 0 || n_head % n_kv_head) {
        lc_fail(d, "attention: head counts not grouped (internal error)");
        return;
    }
    if (head_dim <= 0 || head_dim > 256) {
        lc_fail(d, "attention: head_dim %d is not supported on the CUDA device (at most 256)",
                head_dim);
        return;
    }
    if ((int64_t)ntok * n_head > INT32_MAX) {
        lc_fail(d, "attention: %d tokens x %d heads is too many for one launch", ntok, n_head);
        return;
    }
    lc_attp a;
    memset(&a, 0, sizeof a);
    a.pos0 = pos0;
    a.n_head = n_head;
    a.grp = n_head / n_kv_head;
    a.hd = head_dim;
    a.L = kv->chunk_len;
    a.n_ring = kv->n_ring > 0 ? kv->n_ring : 0;
    a.kv_dim = (int64_t)n_kv_head * head_dim;
    a.scale = ap->scale;
    a.softcap = ap->softcap > 0.0f ? ap->softcap : 0.0f;
    a.window = ap->window > 0 ? ap->window : 0;
    a.f16 = kv->kv_type == LYRA_TYPE_F16;
    /* the chunks read: a ring's all; else those from the batch's first
     * attended position to its last */
    int nc;
    if (a.n_ring) {
        nc = a.n_ring;
    } else {
        a.c_lo = lc_att_first(pos0, a.window) / a.L;
        nc = (pos0 + ntok - 1) / a.L - a.c_lo + 1;
    }
    if (a.n_ring && (pos0 + ntok - 1) / a.L - lc_att_first(pos0, a.window) / a.L >= a.n_ring) {
        lc_fail(d, "attention: a KV ring of %d chunks of %d cannot hold positions %d..%d "
                "(internal error)", a.n_ring, a.L, (int)lc_att_first(pos0, a.window),
                (int)(pos0 + ntok - 1));
        return;
    }
    if (nc > 1024) {
        lc_fail(d, "attention: %d KV chunks of %d positions, at most 1024 on the CUDA device", nc,
                kv->chunk_len);
        return;
    }
    if (head_dim <= 32)
        launch_attention_c<1>(d, q, kv, nc, ntok, &a, out);
    else if (head_dim <= 64)
        launch_attention_c<2>(d, q, kv, nc, ntok, &a, out);
    else if (head_dim <= 128)
        launch_attention_c<4>(d, q, kv, nc, ntok, &a, out);
    else
        launch_attention_c<8>(d, q, kv, nc, ntok, &a, out);
    lc_launched(d, "attention");
}

/* ---------------------------------------------------------- elementwise */

/* out = gate / (1 + exp(-gate)) * up (out may be gate). */
__global__ void k_swiglu(const float *g, const float *u, int64_t n, float *out) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float x = g[i];
        out[i] = x / (1.0f + expf(-x)) * u[i];
    }
}

void lc_swiglu(lyra_device *d, const float *gate, const float *up, int64_t n, float *out) {
    if (n <= 0 || !lc_use(d)) return;
    k_swiglu<<<lc_blocks(n, 256), 256, 0, LC(d)->stream>>>(gate, up, n, out);
    lc_launched(d, "swiglu");
}

/* x += y */
__global__ void k_add(float *x, const float *y, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        x[i] += y[i];
}

void lc_add(lyra_device *d, float *x, const float *y, int64_t n) {
    if (n <= 0 || !lc_use(d)) return;
    k_add<<<lc_blocks(n, 256), 256, 0, LC(d)->stream>>>(x, y, n);
    lc_launched(d, "add");
}

/* ------------------------------------------------------------- layernorm */

/* One block of LC_NORM_THREADS per row: mean, then the sum of squared
 * deviations (two passes: no cancellation), then lc_ln_elem. Sums use
 * non-contracted operations in a fixed order, so the host emulation
 * (cuda_check.cu) gives the same bits. */
__global__ void __launch_bounds__(LC_NORM_THREADS)
    k_layernorm(const float *x, const float *w, const float *b, float eps, int64_t n, float *out) {
    __shared__ float sh[32];
    const float *xr = x + (size_t)blockIdx.x * n;
    float *o = out + (size_t)blockIdx.x * n;
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s = lc_add(s, xr[i]);
    const float mean = lc_div(block_sum(s, sh), (float)n);
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        float dv = lc_sub(xr[i], mean);
        ss = lc_add(ss, lc_mul(dv, dv));
    }
    const float rstd = lc_ln_rstd(block_sum(ss, sh), n, eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        o[i] = lc_ln_elem(xr[i], mean, rstd, w[i], b ? b[i] : 0.0f, b != NULL);
}

void lc_layernorm(lyra_device *d, const float *x, const float *w, const float *b, float eps,
                  int64_t n, int ntok, float *out) {
    if (ntok <= 0 || n <= 0 || !lc_use(d)) return;
    k_layernorm<<<(unsigned)ntok, LC_NORM_THREADS, 0, LC(d)->stream>>>(x, w, b, eps, n, out);
    lc_launched(d, "layernorm");
}

/* ------------------------------------------- elementwise (architectures) */

/* x[t][i] += bias[i] over ntok rows of n */
__global__ void k_add_bias(float *x, const float *bias, int64_t n, int64_t total) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x)
        x[i] = lc_add(x[i], bias[i % n]);
}

void lc_add_bias(lyra_device *d, float *x, const float *bias, int64_t n, int ntok) {
    if (n <= 0 || ntok <= 0 || !lc_use(d)) return;
    const int64_t total = n * ntok;
    k_add_bias<<<lc_blocks(total, 256), 256, 0, LC(d)->stream>>>(x, bias, n, total);
    lc_launched(d, "add_bias");
}

/* out = gelu(x), or gelu(x) * up when up is given (out may be x) */
__global__ void k_gelu(const float *x, const float *up, int64_t n, float *out) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float g = lc_gelu(x[i]);
        out[i] = up ? lc_mul(g, up[i]) : g;
    }
}

void lc_gelu_op(lyra_device *d, const float *x, int64_t n, float *out) {
    if (n <= 0 || !lc_use(d)) return;
    k_gelu<<<lc_blocks(n, 256), 256, 0, LC(d)->stream>>>(x, NULL, n, out);
    lc_launched(d, "gelu");
}

void lc_geglu(lyra_device *d, const float *gate, const float *up, int64_t n, float *out) {
    if (n <= 0 || !lc_use(d)) return;
    k_gelu<<<lc_blocks(n, 256), 256, 0, LC(d)->stream>>>(gate, up, n, out);
    lc_launched(d, "geglu");
}

/* x *= s, or x = cap * tanh(x / cap) when cap (> 0) is given */
__global__ void k_scale(float *x, int64_t n, float s, float cap) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        x[i] = cap > 0.0f ? lc_softcap(x[i], cap) : lc_mul(x[i], s);
}

void lc_scale(lyra_device *d, float *x, int64_t n, float s) {
    if (n <= 0 || !lc_use(d)) return;
    k_scale<<<lc_blocks(n, 256), 256, 0, LC(d)->stream>>>(x, n, s, 0.0f);
    lc_launched(d, "scale");
}

void lc_softcap_op(lyra_device *d, float *x, int64_t n, float cap) {
    if (n <= 0 || !lc_use(d)) return;
    if (!(cap > 0.0f)) {
        lc_fail(d, "softcap: cap %g is not positive (internal error)", (double)cap);
        return;
    }
    k_scale<<<lc_blocks(n, 256), 256, 0, LC(d)->stream>>>(x, n, 1.0f, cap);
    lc_launched(d, "softcap");
}
