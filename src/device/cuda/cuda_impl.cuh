/* cuda_impl.cuh: internals shared by the CUDA device's files (not an
 * interface): the device state, error bookkeeping, work-memory layout and
 * the ops each file implements.
 *
 * Errors: every CUDA and cuBLAS call is checked. Ops return nothing (the
 * device interface queues work), so a failure is recorded once (the first
 * wins) and reported by sync as LYRA_ERR_RUNTIME, like a deferred CUDA error;
 * nothing is printed and nothing aborts. */
#ifndef LYRA_CUDA_IMPL_CUH
#define LYRA_CUDA_IMPL_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>

extern "C" {
#include "core/log.h"
#include "device/cuda.h"
#include "device/device.h"
}
#include "cuda_math.cuh"

/* Pinned staging: two halves of this many bytes per device. */
#define LC_STAGE_HALF ((size_t)8 << 20)
/* matmul with at most this many tokens runs the decode kernel (quantized
 * weights read directly, once per call); more tokens go through cuBLAS. */
#define LC_MV_TOK 8
/* Matrices one decode launch may cover (matmul_multi: Q/K/V, gate/up). */
#define LC_MV_MAXM 4
/* Host ids / positions passed by value per launch (kernel parameters). */
#define LC_IDS_MAX 256
/* GEMM path: bytes of one dequantized weight tile, and its most rows. */
#define LC_TILE_BYTES ((size_t)32 << 20)
#define LC_TILE_MAX_ROWS 16384

typedef struct lc_dev {
    int ordinal;            /* CUDA device number */
    int part, parts;        /* lyra device `part` (0-based) of `parts` on this card */
    int cc;                 /* compute capability, major * 10 + minor */
    cudaStream_t stream;    /* every copy and kernel of this device, in order */
    cublasHandle_t blas;    /* cuBLAS handle bound to stream */
    size_t blas_ws;         /* cuBLAS workspace wanted at the start of work memory */
    int blas_ws_set;        /* 1: cuBLAS uses work[0, blas_ws) now */
    uint8_t *work;          /* matmul work memory (set_work; device memory) */
    size_t work_size;       /* its bytes */
    uint8_t *stage;         /* pinned host staging [2][LC_STAGE_HALF], NULL: pageable copies */
    cudaEvent_t stage_ev[2];/* the last copy that used each half */
    int stage_next;         /* the half the next chunk uses */
    int failed;             /* deferred error code for sync (0: none) */
    char failed_msg[256];   /* its message */
    int mv_kernel;          /* decode matmul kernel 1, 2 or 3 (LYRA_CUDA_MATVEC; cuda_math.cuh) */
} lc_dev;

static inline lc_dev *LC(const lyra_device *d) { return (lc_dev *)d->impl; }

/* Record a deferred failure (the first one is kept). */
void lc_fail(lyra_device *d, const char *fmt, ...) LYRA_PRINTF(2, 3);
/* 1 if e is cudaSuccess, else records "WHAT: <CUDA error>" and returns 0. */
int lc_ok(lyra_device *d, cudaError_t e, const char *what);
/* The same for a kernel launch just made (cudaGetLastError). */
int lc_launched(lyra_device *d, const char *what);
/* The same for a cuBLAS status. */
int lc_blas_ok(lyra_device *d, cublasStatus_t s, const char *what);

/* cuBLAS, loaded with dlopen when the first GPU is opened (cuda.cu), so that
 * runs without a GPU and commands that need no device never load it. The
 * entry points used, by the names cublas_v2.h gives them. */
typedef struct lc_blas_api {
    decltype(&cublasCreate) create;
    decltype(&cublasDestroy) destroy;
    decltype(&cublasSetStream) set_stream;
    decltype(&cublasSetWorkspace) set_workspace;
    /* the exported cublasGemmEx (C++ adds an inline overload) */
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                              const void *, const void *, cudaDataType, int, const void *, cudaDataType,
                              int, const void *, void *, cudaDataType, int, cublasComputeType_t,
                              cublasGemmAlgo_t);
    decltype(&cublasGetStatusString) status_string;
    decltype(&cublasGetStatusName) status_name;
} lc_blas_api;
/* The loaded entry points (filled once by lc_blas_load, then read-only). */
extern lc_blas_api lc_blas;
/* Load cuBLAS once per process (thread-safe); 0, or -1 with the reason in
 * why (every later call gives the same answer). */
int lc_blas_load(char *why, size_t cap);
/* Make d's card current for this thread; 0 (recorded) on failure. */
int lc_use(lyra_device *d);

/* Round up to 256 bytes (every region of work memory starts aligned). */
static inline size_t lc_align(size_t n) { return (n + 255) & ~(size_t)255; }

/* ---- matmul (cuda_matvec.cu) ---- */
size_t lc_matmul_work_size(lyra_device *d, lyra_type wt, int64_t cols, int ntok);
void lc_matmul(lyra_device *d, lyra_type wt, const void *W, int64_t rows, int64_t cols,
               const float *X, int ntok, float *Y);
void lc_matmul_multi(lyra_device *d, int n, const lyra_type *wt, const void *const *W,
                     const int64_t *rows, int64_t cols, const float *X, int ntok,
                     float *const *Y);
/* Bytes of quantized activations for ntok rows of cols (0: float weights),
 * and their layout carved from base. */
size_t lc_act_bytes(lyra_type wt, int64_t cols, int ntok);
lc_act lc_act_carve(uint8_t *base, lyra_type wt, int64_t cols, int ntok);

/* ---- the other ops (cuda_ops.cu) ---- */
void lc_get_rows(lyra_device *d, lyra_type t, const void *table, int64_t n, const int32_t *ids,
                 int ntok, float *out);
void lc_rmsnorm(lyra_device *d, const float *x, const float *w, float eps, int64_t n, int ntok,
                float *out);
void lc_rope(lyra_device *d, float *x, int ntok, int n_head, int head_dim, const int32_t *pos,
             const lyra_rope *rope);
void lc_kv_store(lyra_device *d, const lyra_kv_view *kv, int32_t pos0, int ntok, int64_t kv_dim,
                 const float *k, const float *v);
void lc_attention(lyra_device *d, const float *q, const lyra_kv_view *kv, int32_t pos0, int ntok,
                  const lyra_attn_params *ap, float *out);
void lc_swiglu(lyra_device *d, const float *gate, const float *up, int64_t n, float *out);
void lc_add(lyra_device *d, float *x, const float *y, int64_t n);
void lc_layernorm(lyra_device *d, const float *x, const float *w, const float *b, float eps,
                  int64_t n, int ntok, float *out);
void lc_add_bias(lyra_device *d, float *x, const float *bias, int64_t n, int ntok);
void lc_gelu_op(lyra_device *d, const float *x, int64_t n, float *out);
void lc_geglu(lyra_device *d, const float *gate, const float *up, int64_t n, float *out);
void lc_scale(lyra_device *d, float *x, int64_t n, float s);
void lc_softcap_op(lyra_device *d, float *x, int64_t n, float cap);

/* Blocks for a grid-stride kernel over n items with bs threads per block. */
static inline unsigned lc_blocks(int64_t n, int bs) {
    int64_t b = (n + bs - 1) / bs;
    return (unsigned)(b < 65536 ? b : 65536);
}

/* Sum of v over the 32 lanes of a warp (every lane gets it). */
static __device__ __forceinline__ float lc_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

#endif
