/* kernels.h: the CPU kernels (scalar / AVX2 / AVX-512) chosen at run time:
 * path selection (LYRA_CPU), activation quantization, dot products and the
 * threaded, tiled lyra_matmul (matmul*.c); the small vector kernels of the
 * CPU device are vec.h's (vec*.c).
 *
 * Quantized dot products take the activation quantized to
 * lyra_vec_dot_type(t) (Q8_0 for Q4_0/Q8_0, Q8_K for K-quants, F32 for float
 * weights), as llama.cpp does, so decode is memory-bound. */
#ifndef LYRA_KERNELS_H
#define LYRA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/pool.h"
#include "quant/quant.h"

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

/* Activation type that weights of type t are dotted with: Q8_0 for Q8_0,
 * Q4_0 and Q5_0, Q8_K for Q4_K/Q5_K/Q6_K, F32 for F32/F16/BF16 (and anything else). */
lyra_type lyra_vec_dot_type(lyra_type t);
/* Convert a row of activations to lyra_vec_dot_type(wt) (copy for F32); the
 * bytes are the same on every path (= lyra_quantize_row of that type). */
void lyra_quantize_act(lyra_cpu_path p, lyra_type wt, const float *x, void *dst, int64_t n);
/* Dot of one weight row (type wt, n elements) with an activation row already
 * converted by lyra_quantize_act (int8 activations must not hold -128, which
 * lyra_quantize_act never writes). Every path evaluates the sum in the same
 * fixed order (see kernels_impl.h), so all paths return the same bits. */
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
