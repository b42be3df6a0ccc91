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
    /* known layouts lyra cannot compute with (sizes only) */
    LYRA_TYPE_IQ2_XXS = 16,
    LYRA_TYPE_IQ2_XS = 17,
    LYRA_TYPE_IQ3_XXS = 18,
    LYRA_TYPE_IQ1_S = 19,
    LYRA_TYPE_IQ4_NL = 20,
    LYRA_TYPE_IQ3_S = 21,
    LYRA_TYPE_IQ2_S = 22,
    LYRA_TYPE_IQ4_XS = 23,
    LYRA_TYPE_I8 = 24,
    LYRA_TYPE_I16 = 25,
    LYRA_TYPE_I32 = 26,
    LYRA_TYPE_I64 = 27,
    LYRA_TYPE_F64 = 28,
    LYRA_TYPE_IQ1_M = 29,
    LYRA_TYPE_BF16 = 30,
    LYRA_TYPE_TQ1_0 = 34,
    LYRA_TYPE_TQ2_0 = 35,
    LYRA_TYPE_MXFP4 = 39,
    LYRA_TYPE_NVFP4 = 40,
    LYRA_TYPE_Q1_0 = 41,
    LYRA_TYPE_COUNT = 42 /* ids >= this are unknown */
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
/* n elements (a multiple of the block size) of a supported type, or Q8_K.
 * Bit-exact with gguf.quants.dequantize. Other types write zeros. */
void lyra_dequantize_row(lyra_type t, const void *src, float *dst, int64_t n);
/* Deterministic reference quantizer for F32 F16 BF16 Q8_0 Q4_0 Q4_K Q5_K Q6_K
 * and Q8_K (n a multiple of the block size; other types write nothing).
 * F16/BF16/Q8_0/Q4_0 give gguf.quants.quantize's bytes (F16 NaN: any NaN);
 * K-quants use the published K-quant algorithm (weighted least-squares search
 * of sub-block scales/mins, no imatrix). Q8_K (activations): d = amax/127
 * (f32), q = round(x/d) in [-127, 127], bsums = sums of 16. */
void lyra_quantize_row(lyra_type t, const float *src, void *dst, int64_t n);

/* ---- CPU kernel paths ---- */
typedef enum { LYRA_CPU_SCALAR = 0, LYRA_CPU_AVX2 = 1, LYRA_CPU_AVX512 = 2 } lyra_cpu_path;

const char *lyra_cpu_path_name(lyra_cpu_path p);   /* "scalar" "avx2" "avx512" */
int lyra_cpu_path_compiled(lyra_cpu_path p);      /* built into this binary */
int lyra_cpu_path_available(lyra_cpu_path p);     /* compiled and the CPU has it */
/* The path to use: name (a LYRA_CPU value: scalar|avx2|avx512) when not NULL
 * or "", else the best available. A malformed or unavailable name is
 * LYRA_ERR_INPUT naming LYRA_CPU. */
int lyra_cpu_path_parse(const char *name, lyra_cpu_path *out, lyra_error *err);
/* The same with LYRA_CPU from the environment. */
int lyra_cpu_path_select(lyra_cpu_path *out, lyra_error *err);

/* Activation type that weights of type t are dotted with: Q8_0 for Q8_0 and
 * Q4_0, Q8_K for Q4_K/Q5_K/Q6_K, F32 for F32/F16/BF16 (and anything else). */
lyra_type lyra_vec_dot_type(lyra_type t);
/* Convert a row of activations to lyra_vec_dot_type(wt) (copy for F32); the
 * bytes are the same on every path (= lyra_quantize_row of that type). */
void lyra_quantize_act(lyra_cpu_path p, lyra_type wt, const float *x, void *dst, int64_t n);
/* Dot of one weight row (type wt, n elements) with an activation row already
 * converted by lyra_quantize_act (int8 activations must not hold -128, which
 * lyra_quantize_act never writes). Every path evaluates the sum in the same
 * fixed order (see quant_impl.h), so all paths return the same bits. */
float lyra_vec_dot(lyra_cpu_path p, lyra_type wt, int64_t n, const void *w, const void *act);

/* Bytes of work memory lyra_matmul needs for ntok tokens of cols columns
 * (0 for float weights: X is used directly). */
size_t lyra_matmul_work_size(lyra_type wt, int64_t cols, int64_t ntok);
/* Y[t][r] = sum_c W[r][c] * X[t][c]
 *   W: rows x cols, type wt (row-major, rows of lyra_row_bytes(wt, cols)),
 *      cols a multiple of the block size
 *   X: ntok x cols f32;  Y: ntok x rows f32;  work: lyra_matmul_work_size bytes
 *   pool: NULL runs on the calling thread
 * The activations are converted once (threads split tokens), then threads
 * split output rows and compute tiles of rows x tokens. Each Y element equals
 * lyra_vec_dot(p, wt, cols, W row, lyra_quantize_act(X row)) bit for bit, so
 * results do not depend on the thread count, the path, or how tokens are
 * batched (ntok = 1 calls give the same bits as one ntok = N call). */
void lyra_matmul(lyra_cpu_path p, lyra_type wt, const void *W, int64_t rows,
                 int64_t cols, const float *X, int64_t ntok, float *Y,
                 void *work, lyra_pool *pool);

#endif
