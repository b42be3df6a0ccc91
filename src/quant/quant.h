/* quant.h: weight types (GGML's numbering, as GGUF stores them), their block
 * layouts, scalar reference (de)quantizers and dot products, and the CPU
 * kernels (scalar / AVX2 / AVX-512) chosen at run time.
 *
 * A row of n elements of type t is n / lyra_type_block(t) blocks of
 * lyra_type_block_bytes(t) bytes. Quantized dot products take the activation
 * quantized to lyra_vec_dot_type(t) (Q8_0 for Q4_0/Q8_0, Q8_K for K-quants,
 * F32 for float weights), as llama.cpp does, so decode is memory-bound. */
#ifndef LYRA_QUANT_H
#define LYRA_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/pool.h"

typedef enum lyra_type {
    LYRA_TYPE_F32 = 0,
    LYRA_TYPE_F16 = 1,
    LYRA_TYPE_Q4_0 = 2,
    LYRA_TYPE_Q4_1 = 3,
    LYRA_TYPE_Q5_0 = 6,
    LYRA_TYPE_Q5_1 = 7,
    LYRA_TYPE_Q8_0 = 8,
    LYRA_TYPE_Q8_1 = 9,
    LYRA_TYPE_Q2_K = 10,
    LYRA_TYPE_Q3_K = 11,
    LYRA_TYPE_Q4_K = 12,
    LYRA_TYPE_Q5_K = 13,
    LYRA_TYPE_Q6_K = 14,
    LYRA_TYPE_Q8_K = 15,
    LYRA_TYPE_BF16 = 30,
    LYRA_TYPE_COUNT = 40 /* ids >= this are unknown */
} lyra_type;

#define LYRA_QK8_0 32
#define LYRA_QK4_0 32
#define LYRA_QK_K 256

/* Name as llama.cpp prints it ("Q4_K"), or NULL for an id lyra does not know. */
const char *lyra_type_name(lyra_type t);
/* Parse "q4_k" / "Q4_K" / "f16" ... (case-insensitive). LYRA_OK or LYRA_ERR_INPUT. */
int lyra_type_parse(const char *name, lyra_type *out);
/* 1 for types lyra can load and compute with: F32 F16 BF16 Q8_0 Q4_0 Q4_K Q5_K Q6_K. */
int lyra_type_supported(lyra_type t);
/* 1 for any id GGUF may contain whose layout lyra knows (for size checks). */
int lyra_type_known(lyra_type t);
int64_t lyra_type_block(lyra_type t);        /* elements per block (1: float types) */
size_t lyra_type_block_bytes(lyra_type t);   /* bytes per block */
/* Bytes of a row of n elements; n must be a multiple of the block size. */
size_t lyra_row_bytes(lyra_type t, int64_t n);

/* ---- scalar reference, bit-exact with GGML/gguf-py ---- */
void lyra_dequantize_row(lyra_type t, const void *src, float *dst, int64_t n);
/* Deterministic reference quantizer (same results as gguf-py's quantize where
 * it has one; K-quants follow llama.cpp's reference algorithm, no imatrix). */
void lyra_quantize_row(lyra_type t, const float *src, void *dst, int64_t n);

/* ---- CPU kernel paths ---- */
typedef enum { LYRA_CPU_SCALAR = 0, LYRA_CPU_AVX2 = 1, LYRA_CPU_AVX512 = 2 } lyra_cpu_path;

const char *lyra_cpu_path_name(lyra_cpu_path p);   /* "scalar" "avx2" "avx512" */
int lyra_cpu_path_compiled(lyra_cpu_path p);      /* built into this binary */
int lyra_cpu_path_available(lyra_cpu_path p);     /* compiled and the CPU has it */
/* The path to use: LYRA_CPU (scalar|avx2|avx512) when set, else the best
 * available. A malformed or unavailable LYRA_CPU is LYRA_ERR_INPUT. */
int lyra_cpu_path_select(lyra_cpu_path *out, lyra_error *err);

/* Activation type that weights of type t are dotted with. */
lyra_type lyra_vec_dot_type(lyra_type t);
/* Quantize a row of activations to lyra_vec_dot_type(wt) (or copy for F32). */
void lyra_quantize_act(lyra_cpu_path p, lyra_type wt, const float *x, void *dst, int64_t n);
/* Dot of one weight row (type wt, n elements) with an activation row already
 * converted by lyra_quantize_act. */
float lyra_vec_dot(lyra_cpu_path p, lyra_type wt, int64_t n, const void *w, const void *act);

/* Bytes of work memory lyra_matmul needs for ntok tokens of cols columns. */
size_t lyra_matmul_work_size(lyra_type wt, int64_t cols, int64_t ntok);
/* Y[t][r] = sum_c W[r][c] * X[t][c]
 *   W: rows x cols, type wt (row-major, rows of lyra_row_bytes(wt, cols))
 *   X: ntok x cols f32;  Y: ntok x rows f32;  work: lyra_matmul_work_size bytes
 * Threads split output rows; each Y element is computed by one thread in a
 * fixed order, so results do not depend on the thread count. */
void lyra_matmul(lyra_cpu_path p, lyra_type wt, const void *W, int64_t rows,
                 int64_t cols, const float *X, int64_t ntok, float *Y,
                 void *work, lyra_pool *pool);

#endif
