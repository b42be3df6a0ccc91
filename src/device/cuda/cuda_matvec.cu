/* cuda_matvec.cu: the CUDA device's matmul, Y[ntok][rows] = X[ntok][cols] *
 * W[rows][cols]^T, for every weight type (F32 F16 BF16 Q8_0 Q4_0 Q5_0 Q4_K Q5_K
 * Q6_K).
 *
 * Decode (ntok <= LC_MV_TOK): activations are quantized on the GPU exactly
 * as the CPU quantizes them (Q8_0 / Q8_K, cuda_math.cuh), then the weights
 * are read directly, 8 units (whole blocks, contiguous) per warp step with 4
 * lanes per unit (integer dp4a dot products per part, float accumulation for
 * up to LC_MV_TOK tokens at once), the lanes' sums reduced by shuffles. The
 * device's mv_kernel (LYRA_CUDA_MATVEC) picks k_matvec (1: one warp per row)
 * or k_matvec_rows (2, and 3 the default: a block of warps per row, several
 * groups of loads in flight; 3 stages quantized groups through shared memory
 * with 16-byte loads).
 * matmul_multi covers several matrices sharing X in one launch.
 *
 * Prompts (ntok > LC_MV_TOK): cuBLAS. X is converted to F16 (quantized and
 * dequantized like the CPU's activations for quantized weights, so results
 * stay within the CPU's), weights are dequantized tile by tile into F16 in
 * the work memory, and cublasGemmEx multiplies with F32 accumulation. F16
 * weights are used as they are; F32 weights use an F32 GEMM on X directly;
 * BF16 tiles are widened to F32 (F16 could overflow) for an F32 GEMM.
 *
 * Work memory (matmul_work_size / set_work), carved in 256-byte aligned
 * regions from its first 256-byte boundary: decode: the quantized activations (lc_act); prompts: cuBLAS's
 * workspace, then X in F16 [ntok][cols], then one weight tile. */
#include <stdint.h>

#include "cuda_impl.cuh"

#define MV_WARPS 4 /* rows (warps) per block of the decode kernel */

/* --------------------------------------------------------- work layout */

size_t lc_act_bytes(lyra_type wt, int64_t cols, int ntok) {
    lyra_type at = lyra_vec_dot_type(wt);
    if (at == LYRA_TYPE_F32) return 0;
    size_t n = (size_t)cols * (size_t)ntok;
    size_t ablk = at == LYRA_TYPE_Q8_K ? 256 : 32;
    return lc_align(n) + lc_align(n / ablk * sizeof(float));
}

lc_act lc_act_carve(uint8_t *base, lyra_type wt, int64_t cols, int ntok) {
    lc_act a;
    size_t n = (size_t)cols * (size_t)ntok;
    a.n = cols;
    a.ablk = lyra_vec_dot_type(wt) == LYRA_TYPE_Q8_K ? 256 : 32;
    a.q = (int8_t *)base;
    a.d = (float *)(base + lc_align(n));
    return a;
}

/* Rows of one dequantized weight tile for cols columns of es bytes. */
static int64_t tile_rows(int64_t cols, size_t es) {
    int64_t r = (int64_t)(LC_TILE_BYTES / ((size_t)cols * es));
    if (r > LC_TILE_MAX_ROWS) r = LC_TILE_MAX_ROWS;
    if (r >= 128) r -= r % 128;
    return r < 1 ? 1 : r;
}

/* Bytes of the tile for weight type wt (0: the GEMM reads W directly). */
static size_t tile_bytes(lyra_type wt, int64_t cols) {
    if (wt == LYRA_TYPE_F32 || wt == LYRA_TYPE_F16) return 0;
    size_t es = wt == LYRA_TYPE_BF16 ? 4 : 2;
    return lc_align((size_t)tile_rows(cols, es) * (size_t)cols * es);
}

/* Bytes of X in F16 (F32 and BF16 weights use X as it is). */
static size_t xh_bytes(lyra_type wt, int64_t cols, int ntok) {
    if (wt == LYRA_TYPE_F32 || wt == LYRA_TYPE_BF16) return 0;
    return lc_align((size_t)cols * (size_t)ntok * 2);
}

static size_t gemm_bytes(const lc_dev *c, lyra_type wt, int64_t cols, int ntok) {
    return c->blas_ws + xh_bytes(wt, cols, ntok) + tile_bytes(wt, cols);
}

size_t lc_matmul_work_size(lyra_device *d, lyra_type wt, int64_t cols, int ntok) {
    /* enough for every ntok up to this one: the decode path for up to
     * LC_MV_TOK tokens, the GEMM path above */
    int mv = ntok < LC_MV_TOK ? ntok : LC_MV_TOK;
    size_t b = lc_act_bytes(wt, cols, mv);
    if (ntok > LC_MV_TOK) {
        size_t g = gemm_bytes(LC(d), wt, cols, ntok);
        if (g > b) b = g;
    }
    return b ? b + 256 : 0; /* + aligning the start to 256 bytes (set_work) */
}

/* ------------------------------------------------ activation quantization */

/* Q8_0: 8 lanes per 32-element block (4 elements each); nblk blocks of X
 * (all tokens, contiguous). DEQ: write the dequantized values d*q as F16 to
 * xh instead of q and d to a. */
template <bool DEQ>
__global__ void k_quant_q8_0(const float *X, int64_t nblk, lc_act a, __half *xh) {
    int64_t g = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t b = g >> 3;
    int sub = (int)(g & 7);
    bool live = b < nblk;
    float x[4], amax = 0.0f;
    for (int i = 0; i < 4; i++) {
        x[i] = live ? X[b * 32 + sub * 4 + i] : 0.0f;
        amax = fmaxf(amax, fabsf(x[i]));
    }
    for (int o = 1; o < 8; o <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    if (!live) return;
    float d, id;
    lc_q8_scale(amax, &d, &id);
    float dh = lc_h2f(lc_f2h(d)); /* the scale as the dot products read it */
    int q[4];
    for (int i = 0; i < 4; i++) q[i] = lc_q8_val(x[i], id);
    if (DEQ) {
        for (int i = 0; i < 4; i++)
            xh[b * 32 + sub * 4 + i] = __float2half_rn(lc_mul((float)(int8_t)q[i], dh));
    } else {
        ((int *)a.q)[b * 8 + sub] = lc_pack4(q[0], q[1], q[2], q[3]);
        if (sub == 0) a.d[b] = dh;
    }
}

/* Q8_K: one warp per 256-element super-block (8 elements per lane); nsb
 * super-blocks of X. DEQ as above. */
template <bool DEQ>
__global__ void k_quant_q8_k(const float *X, int64_t nsb, lc_act a, __half *xh) {
    int64_t sb = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (sb >= nsb) return; /* whole warps */
    const float *xs = X + sb * 256 + lane * 8;
    float x[8], amax = 0.0f;
    for (int i = 0; i < 8; i++) {
        x[i] = xs[i];
        amax = fmaxf(amax, fabsf(x[i]));
    }
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    float d, id;
    lc_q8_scale(amax, &d, &id);
    int q[8];
    for (int i = 0; i < 8; i++) q[i] = lc_q8_val(x[i], id);
    if (DEQ) {
        for (int i = 0; i < 8; i++)
            xh[sb * 256 + lane * 8 + i] = __float2half_rn(lc_mul(d, (float)(int8_t)q[i]));
        return;
    }
    int *qo = (int *)(a.q + sb * 256 + lane * 8);
    qo[0] = lc_pack4(q[0], q[1], q[2], q[3]);
    qo[1] = lc_pack4(q[4], q[5], q[6], q[7]);
    if (lane == 0) a.d[sb] = d;
}

/* x[n] -> F16 */
__global__ void k_to_half(const float *x, int64_t n, __half *y) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = __float2half_rn(x[i]);
}

/* Quantize (DEQ: quantize and dequantize to F16 at xh) ntok rows of X for
 * weights of type wt. */
static void quantize_act(lyra_device *d, lyra_type wt, const float *X, int64_t cols, int ntok,
                         lc_act a, __half *xh, bool deq) {
    lc_dev *c = LC(d);
    int64_t n = cols * ntok;
    if (lyra_vec_dot_type(wt) == LYRA_TYPE_Q8_0) {
        int64_t threads = n / 32 * 8;
        unsigned blocks = (unsigned)((threads + 255) / 256);
        if (deq) k_quant_q8_0<true><<<blocks, 256, 0, c->stream>>>(X, n / 32, a, xh);
        else k_quant_q8_0<false><<<blocks, 256, 0, c->stream>>>(X, n / 32, a, xh);
    } else {
        int64_t threads = n / 256 * 32;
        unsigned blocks = (unsigned)((threads + 255) / 256);
        if (deq) k_quant_q8_k<true><<<blocks, 256, 0, c->stream>>>(X, n / 256, a, xh);
        else k_quant_q8_k<false><<<blocks, 256, 0, c->stream>>>(X, n / 256, a, xh);
    }
    lc_launched(d, "matmul: quantizing activations");
}

/* ------------------------------------------------------------- decode */

/* One launch: nm matrices of one type sharing X, rows concatenated. */
typedef struct mv_args {
    const uint8_t *W[LC_MV_MAXM]; /* weights [rows[i]][cols] */
    float *Y[LC_MV_MAXM];         /* outputs [ntok][rows[i]] */
    int64_t rows[LC_MV_MAXM];     /* rows of each */
    int nm;                       /* matrices */
    int64_t total;                /* sum of rows */
    int64_t cols;                 /* columns (elements per row) */
    size_t rb;                    /* bytes per weight row */
    const float *X;               /* float weights: activations [ntok][cols] */
    lc_act act;                   /* quantized weights: activations */
    int ntok;                     /* tokens, 1..LC_MV_TOK */
    int vec;                      /* float weights: 16-byte loads (aligned, cols % 32 == 0) */
    int span;                     /* kernel 3: bytes of 8 units (a multiple of 16, every row
                                   * 16-byte aligned, cols % 256 == 0), staged through shared
                                   * memory with 16-byte loads; 0: read in place */
} mv_args;

/* The raw bytes of a float part read with 16-byte loads (F32: 32 bytes in
 * v[0..1], F16/BF16: 16 bytes in v[0]). */
typedef struct lc_fraw {
    uint4 v[2];
} lc_fraw;

template <int T>
static __device__ __forceinline__ void float_load(const uint8_t *row, int64_t e0, lc_fraw *r) {
    if (T == LYRA_TYPE_F32) {
        const uint4 *p = (const uint4 *)(row + e0 * 4);
        r->v[0] = p[0];
        r->v[1] = p[1];
    } else {
        r->v[0] = *(const uint4 *)(row + e0 * 2);
    }
}

/* acc[j] += w[i] * x[j][i] over a full part's elements in order (as
 * lc_float_acc), from its raw bytes; X read with 16-byte loads. */
template <int T, int NT = LC_MV_TOK>
static __device__ __forceinline__ void float_dot(const lc_fraw *r, int64_t e0, const mv_args &a,
                                                 float *acc) {
    const int nt = a.ntok;
    float w[LC_PART];
    if (T == LYRA_TYPE_F32) {
        uint32_t u[8] = {r->v[0].x, r->v[0].y, r->v[0].z, r->v[0].w,
                         r->v[1].x, r->v[1].y, r->v[1].z, r->v[1].w};
#pragma unroll
        for (int i = 0; i < 8; i++) w[i] = __uint_as_float(u[i]);
    } else {
        uint32_t h[4] = {r->v[0].x, r->v[0].y, r->v[0].z, r->v[0].w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            uint16_t lo = (uint16_t)(h[k] & 0xFFFF), hi = (uint16_t)(h[k] >> 16);
            w[2 * k] = T == LYRA_TYPE_F16 ? lc_h2f(lo) : lc_bf2f(lo);
            w[2 * k + 1] = T == LYRA_TYPE_F16 ? lc_h2f(hi) : lc_bf2f(hi);
        }
    }
#pragma unroll
    for (int j = 0; j < NT; j++) {
        if (j >= nt) break;
        const float4 *x = (const float4 *)(a.X + (size_t)j * a.cols + e0);
        float4 x0 = x[0], x1 = x[1];
        float xv[LC_PART] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
#pragma unroll
        for (int i = 0; i < LC_PART; i++) acc[j] += w[i] * xv[i];
    }
}

/* Float weights: acc[j] += w[i] * x[j][i] over the part's elements in
 * order (as lc_float_acc). vec: a full part read with 16-byte loads (F32: two,
 * F16/BF16: one); else element by element. */
template <int T, int NT = LC_MV_TOK>
static __device__ __forceinline__ void float_part(const uint8_t *row, int64_t e0, const mv_args &a,
                                                  float *acc) {
    const int nt = a.ntok;
    if (!a.vec) {
        int64_t left = a.cols - e0;
        int nv = left < LC_PART ? (int)left : LC_PART;
        for (int i = 0; i < nv; i++) {
            float w = lc_float_elem<T>(row, e0 + i);
#pragma unroll
            for (int j = 0; j < NT; j++)
                if (j < nt) acc[j] += w * a.X[(size_t)j * a.cols + e0 + i];
        }
        return;
    }
    lc_fraw r;
    float_load<T>(row, e0, &r);
    float_dot<T, NT>(&r, e0, a, acc);
}

/* Kernel 1: one warp per output row (rows of the nm matrices concatenated); lane
 * 4*v + k takes part k of units v, v+8, v+16, ... so each step of the warp
 * reads 8 consecutive units as contiguous memory; the lanes' sums are then
 * reduced by shuffles. */
template <int T>
__global__ void __launch_bounds__(32 * MV_WARPS) k_matvec(mv_args a) {
    const int lane = threadIdx.x & 31, k = lane & 3;
    int64_t r = (int64_t)blockIdx.x * MV_WARPS + (threadIdx.x >> 5);
    if (r >= a.total) return; /* whole warps */
    int mi = 0;
    while (mi + 1 < a.nm && r >= a.rows[mi]) r -= a.rows[mi++];
    const uint8_t *row = a.W[mi] + (size_t)r * a.rb;
    const int64_t nu = (a.cols + LC_UNIT - 1) / LC_UNIT;
    const int nt = a.ntok;
    float acc[LC_MV_TOK];
#pragma unroll
    for (int j = 0; j < LC_MV_TOK; j++) acc[j] = 0.0f;
    const bool is_float = T == LYRA_TYPE_F32 || T == LYRA_TYPE_F16 || T == LYRA_TYPE_BF16;
    for (int64_t u = lane >> 2; u < nu; u += 8) {
        const int64_t e0 = u * LC_UNIT + LC_PART * k; /* the part's first element */
        if (is_float) {
            if (e0 < a.cols) float_part<T>(row, e0, a, acc);
        } else {
            lc_wq w;
            lc_unpack<T>(row, u, k, &w);
#pragma unroll
            for (int j = 0; j < LC_MV_TOK; j++) {
                if (j >= nt) break;
                int2 xv = *(const int2 *)(a.act.q + (size_t)j * a.cols + e0);
                int x[2] = {xv.x, xv.y};
                float dx = a.act.d[(int64_t)j * (a.cols / a.act.ablk) + e0 / a.act.ablk];
                acc[j] += lc_part_dot<T>(&w, x, dx);
            }
        }
    }
#pragma unroll
    for (int j = 0; j < LC_MV_TOK; j++) {
        if (j >= nt) break;
        float s = lc_warp_sum(acc[j]);
        if (lane == 0) a.Y[mi][(size_t)j * a.rows[mi] + r] = s;
    }
}

/* Groups of 8 units each warp of k_matvec_rows reads before it computes
 * (loads in flight). */
#define MV_STEPS 4
/* Blocks per SM k_matvec_rows is compiled for (registers capped to fit:
 * more warps, more loads in flight). */
#define MV_MIN_BLOCKS 8

static constexpr __host__ __device__ bool mv_is_float(int T) {
    return T == LYRA_TYPE_F32 || T == LYRA_TYPE_F16 || T == LYRA_TYPE_BF16;
}

/* Kernels 2 and 3 (cuda_math.cuh, LC_MV_ROW_WARPS): one block of
 * LC_MV_ROW_WARPS warps per output row (grid-stride over the rows of the nm
 * matrices concatenated). Warp w reads groups w, w + W, w + 2W, ... of 8
 * consecutive units (W = LC_MV_ROW_WARPS), MV_STEPS groups at a time: all
 * their loads first, then the dot products in unit order, so a lane adds
 * exactly what kernel 1's order would add for its units. STAGE (kernel 3,
 * a.span != 0): the group's bytes (a multiple of 16, 16-byte aligned) come
 * in with 16-byte loads by the first span/16 lanes into the warp's shared
 * memory and each lane unpacks its part from there (whole-line loads instead
 * of 2-byte ones: blocks of 34, 18 and 22 bytes are only 2-byte aligned).
 * Then each warp's butterfly, and thread j (< ntok) adds the warps' sums in
 * warp order. */
template <int T, bool STAGE, int NT>
__global__ void __launch_bounds__(32 * LC_MV_ROW_WARPS, MV_MIN_BLOCKS) k_matvec_rows(mv_args a) {
    constexpr int NW = LC_MV_ROW_WARPS;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, k = lane & 3, v = lane >> 2;
    __shared__ uint4 stage[STAGE ? NW * MV_STEPS * LC_MV_SPAN16 : 1];
    __shared__ float red[NW][NT];
    const int64_t nu = (a.cols + LC_UNIT - 1) / LC_UNIT, ng = (nu + 7) / 8;
    const int nt = NT == 1 ? 1 : a.ntok, span16 = a.span / 16;
    /* log2 of the elements per activation scale (Q8_K: 256, Q8_0: 32) */
    constexpr int ASH = T == LYRA_TYPE_Q4_K || T == LYRA_TYPE_Q5_K || T == LYRA_TYPE_Q6_K ? 8 : 5;
    for (int64_t rr = blockIdx.x; rr < a.total; rr += gridDim.x) {
        int64_t r = rr;
        int mi = 0;
        while (mi + 1 < a.nm && r >= a.rows[mi]) r -= a.rows[mi++];
        const uint8_t *row = a.W[mi] + (size_t)r * a.rb;
        float acc[NT];
#pragma unroll
        for (int j = 0; j < NT; j++) acc[j] = 0.0f;
        for (int64_t g0 = w; g0 < ng; g0 += NW * MV_STEPS) {
            if (mv_is_float(T)) {
                if (a.vec) { /* cols % 32 == 0: every unit of the row is whole */
                    lc_fraw fr[MV_STEPS];
#pragma unroll
                    for (int s = 0; s < MV_STEPS; s++) {
                        const int64_t u = 8 * (g0 + NW * s) + v;
                        if (u < nu) float_load<T>(row, u * LC_UNIT + LC_PART * k, &fr[s]);
                    }
#pragma unroll
                    for (int s = 0; s < MV_STEPS; s++) {
                        const int64_t u = 8 * (g0 + NW * s) + v;
                        if (u < nu) float_dot<T, NT>(&fr[s], u * LC_UNIT + LC_PART * k, a, acc);
                    }
                } else {
#pragma unroll
                    for (int s = 0; s < MV_STEPS; s++) {
                        const int64_t e0 = (8 * (g0 + NW * s) + v) * LC_UNIT + LC_PART * k;
                        if (e0 < a.cols) float_part<T, NT>(row, e0, a, acc);
                    }
                }
                continue;
            }
            lc_wq wq[MV_STEPS];
            if (STAGE) { /* nu % 8 == 0: every group is whole */
                uint4 *sw = stage + w * MV_STEPS * LC_MV_SPAN16;
                uint4 raw[MV_STEPS];
#pragma unroll
                for (int s = 0; s < MV_STEPS; s++)
                    if (g0 + NW * s < ng && lane < span16)
                        raw[s] = ((const uint4 *)(row + (size_t)(g0 + NW * s) * a.span))[lane];
                __syncwarp(); /* the last round's parts are read */
#pragma unroll
                for (int s = 0; s < MV_STEPS; s++)
                    if (g0 + NW * s < ng && lane < span16) sw[s * LC_MV_SPAN16 + lane] = raw[s];
                __syncwarp();
#pragma unroll
                for (int s = 0; s < MV_STEPS; s++)
                    if (g0 + NW * s < ng)
                        lc_unpack<T>((const uint8_t *)(sw + s * LC_MV_SPAN16), v, k, &wq[s]);
            } else {
#pragma unroll
                for (int s = 0; s < MV_STEPS; s++) {
                    const int64_t u = 8 * (g0 + NW * s) + v;
                    if (u < nu) lc_unpack<T>(row, u, k, &wq[s]);
                }
            }
#pragma unroll
            for (int s = 0; s < MV_STEPS; s++) {
                const int64_t u = 8 * (g0 + NW * s) + v;
                if (u >= nu) break;
                const int64_t e0 = u * LC_UNIT + LC_PART * k;
#pragma unroll
                for (int j = 0; j < NT; j++) {
                    if (j >= nt) break;
                    int2 xv = *(const int2 *)(a.act.q + (size_t)j * a.cols + e0);
                    int x[2] = {xv.x, xv.y};
                    float dx = a.act.d[((int64_t)j * a.cols + e0) >> ASH];
                    acc[j] += lc_part_dot<T>(&wq[s], x, dx);
                }
            }
        }
#pragma unroll
        for (int j = 0; j < NT; j++) {
            if (j >= nt) break;
            float sum = lc_warp_sum(acc[j]);
            if (lane == 0) red[w][j] = sum;
        }
        __syncthreads();
        if (threadIdx.x < nt) {
            const int j = threadIdx.x;
            float sum = red[0][j];
#pragma unroll
            for (int ww = 1; ww < NW; ww++) sum += red[ww][j];
            a.Y[mi][(size_t)j * a.rows[mi] + r] = sum;
        }
        __syncthreads(); /* red is free for the next row */
    }
}

template <int T>
static void launch_matvec(lyra_device *d, const mv_args *a) {
    lc_dev *c = LC(d);
    if (c->mv_kernel == 1) {
        unsigned blocks = (unsigned)((a->total + MV_WARPS - 1) / MV_WARPS);
        k_matvec<T><<<blocks, 32 * MV_WARPS, 0, c->stream>>>(*a);
        return;
    }
    unsigned blocks = (unsigned)(a->total < ((int64_t)1 << 30) ? a->total : (int64_t)1 << 30);
    const int bs = 32 * LC_MV_ROW_WARPS;
    constexpr bool ST = !mv_is_float(T); /* (float weights are never staged) */
    if (c->mv_kernel == 3 && a->span) {
        if (a->ntok == 1) k_matvec_rows<T, ST, 1><<<blocks, bs, 0, c->stream>>>(*a);
        else k_matvec_rows<T, ST, LC_MV_TOK><<<blocks, bs, 0, c->stream>>>(*a);
    } else {
        if (a->ntok == 1) k_matvec_rows<T, false, 1><<<blocks, bs, 0, c->stream>>>(*a);
        else k_matvec_rows<T, false, LC_MV_TOK><<<blocks, bs, 0, c->stream>>>(*a);
    }
}

/* Check a weight type and shape; 0 (recorded) when the device cannot. */
static int check_shape(lyra_device *d, lyra_type wt, int64_t rows, int64_t cols) {
    if (!lc_type_ok(wt)) {
        lc_fail(d, "matmul: weight type %s is not supported on the CUDA device",
                lyra_type_name(wt) ? lyra_type_name(wt) : "?");
        return 0;
    }
    if (cols <= 0 || cols % lyra_type_block(wt) || rows > INT32_MAX || cols > INT32_MAX) {
        lc_fail(d, "matmul: bad shape %lld x %lld for %s (internal error)", (long long)rows,
                (long long)cols, lyra_type_name(wt));
        return 0;
    }
    return 1;
}

/* Decode path for matrices [i0, i1) of one type (activations already in
 * work memory when quantized). */
static void matvec_group(lyra_device *d, const lyra_type wt, const void *const *W,
                         const int64_t *rows, int i0, int i1, int64_t cols, const float *X,
                         int ntok, float *const *Y) {
    mv_args a;
    memset(&a, 0, sizeof a);
    a.nm = i1 - i0;
    a.cols = cols;
    a.rb = lyra_row_bytes(wt, cols);
    a.X = X;
    a.ntok = ntok;
    if (lyra_vec_dot_type(wt) != LYRA_TYPE_F32) a.act = lc_act_carve(LC(d)->work, wt, cols, ntok);
    a.vec = cols % LC_UNIT == 0 && ((uintptr_t)X & 15) == 0;
    for (int i = i0; i < i1; i++) {
        a.W[i - i0] = (const uint8_t *)W[i];
        a.Y[i - i0] = Y[i];
        a.rows[i - i0] = rows[i];
        a.total += rows[i];
        if ((uintptr_t)W[i] & 15) a.vec = 0;
    }
    if (a.total <= 0) return;
    /* kernel 3 stages whole groups of 8 units when they are 16-byte words */
    a.span = (int)lc_mv_span(wt, cols);
    for (int i = i0; i < i1; i++)
        if ((uintptr_t)W[i] & 15) a.span = 0;
    LC_TYPE_DISPATCH(wt, launch_matvec, d, &a);
    lc_launched(d, "matmul (decode kernel)");
}

/* ---------------------------------------------------------------- prompts */

/* Rows [r0, r0+nr) of W dequantized into dst [nr][cols] (F16, or F32 when
 * O is float). One thread per part (8 elements). */
template <int T, typename O>
__global__ void k_dequant_tile(const uint8_t *W, size_t rb, int64_t cols, int64_t nr, O *dst) {
    const int64_t np = (cols + LC_PART - 1) / LC_PART; /* parts per row */
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < nr * np;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / np, pi = i % np;
        float v[LC_PART];
        int nv = lc_dequant_part<T>(W + (size_t)r * rb, pi / 4, (int)(pi % 4), cols, v);
        O *o = dst + (size_t)r * cols + (size_t)pi * LC_PART;
        if (nv == LC_PART) {
#pragma unroll
            for (int k = 0; k < LC_PART; k++) o[k] = (O)v[k];
        } else {
            for (int k = 0; k < nv; k++) o[k] = (O)v[k];
        }
    }
}

template <int T>
static void launch_dequant_half(lyra_device *d, const uint8_t *W, size_t rb, int64_t cols,
                                int64_t nr, __half *dst) {
    int64_t n = nr * ((cols + LC_PART - 1) / LC_PART);
    k_dequant_tile<T, __half><<<lc_blocks(n, 256), 256, 0, LC(d)->stream>>>(W, rb, cols, nr, dst);
}

/* C[rows][ntok] (column-major, = Y row-major [ntok][ldc]) = op(A)^T * B:
 * A a [m][k] row-major weight tile, B [n][k] row-major activations. */
static int gemm(lyra_device *d, int m, int n, int k, const void *A, cudaDataType_t at,
                const void *B, cudaDataType_t bt, float *C, int ldc) {
    const float one = 1.0f, zero = 0.0f;
    return lc_blas_ok(d,
                      lc_blas.gemm_ex(LC(d)->blas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, A, at, k,
                                   B, bt, k, &zero, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT),
                      "matmul: cublasGemmEx");
}

static void matmul_gemm(lyra_device *d, lyra_type wt, const void *W, int64_t rows, int64_t cols,
                        const float *X, int ntok, float *Y) {
    lc_dev *c = LC(d);
    if (gemm_bytes(c, wt, cols, ntok) > c->work_size || !c->blas_ws_set) {
        lc_fail(d, "matmul: work memory too small for %d tokens (internal error)", ntok);
        return;
    }
    uint8_t *xh = c->work + c->blas_ws;
    uint8_t *tile = xh + xh_bytes(wt, cols, ntok);
    const int k = (int)cols, ldc = (int)rows;
    if (wt == LYRA_TYPE_F32) {
        gemm(d, (int)rows, ntok, k, W, CUDA_R_32F, X, CUDA_R_32F, Y, ldc);
        return;
    }
    if (wt == LYRA_TYPE_BF16) { /* widened to F32 tile by tile */
        int64_t tr = tile_rows(cols, 4);
        size_t rb = lyra_row_bytes(wt, cols);
        for (int64_t r0 = 0; r0 < rows; r0 += tr) {
            int64_t nr = rows - r0 < tr ? rows - r0 : tr;
            int64_t n = nr * ((cols + LC_PART - 1) / LC_PART);
            k_dequant_tile<LYRA_TYPE_BF16, float><<<lc_blocks(n, 256), 256, 0, c->stream>>>(
                (const uint8_t *)W + (size_t)r0 * rb, rb, cols, nr, (float *)tile);
            if (!lc_launched(d, "matmul: widening BF16 weights") ||
                !gemm(d, (int)nr, ntok, k, tile, CUDA_R_32F, X, CUDA_R_32F, Y + r0, ldc))
                return;
        }
        return;
    }
    int64_t n = cols * ntok;
    if (wt == LYRA_TYPE_F16) {
        k_to_half<<<lc_blocks(n, 256), 256, 0, c->stream>>>(X, n, (__half *)xh);
        if (lc_launched(d, "matmul: activations to F16"))
            gemm(d, (int)rows, ntok, k, W, CUDA_R_16F, xh, CUDA_R_16F, Y, ldc);
        return;
    }
    lc_act none;
    memset(&none, 0, sizeof none);
    quantize_act(d, wt, X, cols, ntok, none, (__half *)xh, true);
    int64_t tr = tile_rows(cols, 2);
    size_t rb = lyra_row_bytes(wt, cols);
    for (int64_t r0 = 0; r0 < rows; r0 += tr) {
        int64_t nr = rows - r0 < tr ? rows - r0 : tr;
        LC_TYPE_DISPATCH(wt, launch_dequant_half, d, (const uint8_t *)W + (size_t)r0 * rb, rb, cols,
                         nr, (__half *)tile);
        if (!lc_launched(d, "matmul: dequantizing a weight tile") ||
            !gemm(d, (int)nr, ntok, k, tile, CUDA_R_16F, xh, CUDA_R_16F, Y + r0, ldc))
            return;
    }
}

/* ------------------------------------------------------------ entry points */

void lc_matmul(lyra_device *d, lyra_type wt, const void *W, int64_t rows, int64_t cols,
               const float *X, int ntok, float *Y) {
    lyra_type t[1] = {wt};
    const void *w[1] = {W};
    int64_t r[1] = {rows};
    float *y[1] = {Y};
    lc_matmul_multi(d, 1, t, w, r, cols, X, ntok, y);
}

void lc_matmul_multi(lyra_device *d, int n, const lyra_type *wt, const void *const *W,
                     const int64_t *rows, int64_t cols, const float *X, int ntok,
                     float *const *Y) {
    lc_dev *c = LC(d);
    if (n <= 0 || ntok <= 0 || !lc_use(d)) return;
    for (int i = 0; i < n; i++)
        if (!check_shape(d, wt[i], rows[i], cols)) return;
    if (ntok > LC_MV_TOK) {
        for (int i = 0; i < n; i++)
            if (rows[i] > 0) matmul_gemm(d, wt[i], W[i], rows[i], cols, X, ntok, Y[i]);
        return;
    }
    /* decode: groups of consecutive matrices of one type; activations are
     * quantized once per activation type in a row of groups */
    lyra_type quantized = LYRA_TYPE_F32; /* activation type now in work memory */
    for (int i0 = 0; i0 < n;) {
        int i1 = i0 + 1;
        while (i1 < n && i1 - i0 < LC_MV_MAXM && wt[i1] == wt[i0]) i1++;
        lyra_type at = lyra_vec_dot_type(wt[i0]);
        if (at != LYRA_TYPE_F32 && at != quantized) {
            if (lc_act_bytes(wt[i0], cols, ntok) > c->work_size) {
                lc_fail(d, "matmul: work memory too small for %d tokens (internal error)", ntok);
                return;
            }
            quantize_act(d, wt[i0], X, cols, ntok, lc_act_carve(c->work, wt[i0], cols, ntok), NULL,
                         false);
            quantized = at;
        }
        matvec_group(d, wt[i0], W, rows, i0, i1, cols, X, ntok, Y);
        i0 = i1;
    }
}
