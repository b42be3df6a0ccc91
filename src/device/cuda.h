/* cuda.h: NVIDIA GPUs as lyra devices (kind "gpu", backend "cuda"), behind
 * the same interface as the CPU and the simulated GPUs (device.h). The
 * device itself is src/device/cuda/ (built when CMake finds nvcc >= 12, see
 * LYRA_CUDA); builds without CUDA get the same functions from cuda_host.c,
 * reporting no GPU, so callers never need #if.
 *
 * Which GPUs: every card the CUDA runtime sees, once, in its order
 * (CUDA_VISIBLE_DEVICES applies first); LYRA_CUDA_DEVICES=LIST picks cards
 * by CUDA ordinal instead, and may name a card several times: "0,0" makes two
 * lyra devices "0" and "1" on card 0, each reporting half of its memory and
 * tracking its own allocations and budget (multi-GPU splits on one card).
 * An empty LYRA_CUDA_DEVICES hides every GPU.
 *
 * Memory: cudaMalloc per allocation; a failure returns LYRA_ERR_OOM to the
 * caller (the fallback's signal) and never aborts. The device allocates
 * nothing on the GPU behind the runtime's back: matmul's work memory (which
 * also holds cuBLAS's workspace) comes from matmul_work_size/set_work. What
 * the CUDA runtime and cuBLAS take when a device is created (the context,
 * cuBLAS's handle) is outside lyra's accounting and already missing from the
 * free memory the planner sees. Copies to and from the host go through a
 * pinned staging buffer (2 x 8 MiB of page-locked host memory per device);
 * when it cannot be had the device says so once and copies from pageable
 * memory (correct, slower). */
#ifndef LYRA_CUDA_H
#define LYRA_CUDA_H

#include <stddef.h>

#include "device/device.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest number of lyra devices LYRA_CUDA_DEVICES may name. */
#define LYRA_CUDA_MAX_DEVICES 16

/* Usable CUDA GPUs (cards, before LYRA_CUDA_DEVICES): 0 in builds without
 * CUDA, without a driver or without a device; then why (may be NULL) gets
 * the reason, e.g. "no NVIDIA driver, or one too old for CUDA 13.0". */
int lyra_cuda_count(char *why, size_t why_cap);
/* 1 when lyra_cuda_count() > 0. */
int lyra_cuda_available(void);

/* Parse a LYRA_CUDA_DEVICES value: comma-separated CUDA ordinals, each
 * < n_cards; *n = entries ("" gives 0). Malformed, out of range or more than
 * max entries: LYRA_ERR_INPUT naming LYRA_CUDA_DEVICES and the entry. */
int lyra_cuda_parse_devices(const char *value, int n_cards, int *ordinals, int max, int *n,
                            lyra_error *err);

/* The CUDA GPUs as lyra devices out[0..*n) with ids "0", "1", ... (see
 * above), the cards pick names (a LYRA_CUDA_DEVICES value,
 * lyra_backend_params.cuda_devices; NULL: every card, "": none). No driver,
 * no device, or a card that cannot be opened: those devices are left out
 * with one note per process ("CUDA: no usable GPU (REASON); running on the
 * CPU"; LYRA_WARN when asked (the user asked for a GPU), else LYRA_DEBUG)
 * and the call succeeds. A malformed pick, or more devices than
 * max: LYRA_ERR_INPUT. n_threads is accepted for symmetry with the other
 * constructors (GPUs use none). */
int lyra_cuda_devices_open(const char *pick, int asked, int n_threads, lyra_device **out, int max,
                           int *n, lyra_error *err);
/* The same with pick from the environment (LYRA_CUDA_DEVICES), asked 1. */
int lyra_cuda_devices_new(int n_threads, lyra_device **out, int max, int *n, lyra_error *err);
/* 1 for a device made by lyra_cuda_devices_new. */
int lyra_device_is_cuda(const lyra_device *d);

/* ---- host emulation of the kernels' arithmetic (tests; CUDA builds) ----
 * The kernels' per-block math (activation quantization, weight unpacking,
 * the integer dot products, dequantization) is written once as host+device
 * functions; these run it on the host, so tests check it against the CPU's
 * reference without a GPU. */
/* x[n] quantized as the GPU quantizes matmul activations, written in the
 * CPU's layout of lyra_vec_dot_type(wt) (the bytes lyra_quantize_act
 * writes). 0, or LYRA_ERR_INPUT for a weight type that has no quantized
 * activations. */
int lyra_cuda_host_quantize_act(lyra_type wt, const float *x, int64_t n, void *out);
/* One output of the decode kernel: the dot product of a weight row w (type
 * wt, n elements) with activations x[n], quantized and accumulated unit by
 * unit in the kernel's lane order and reduced as the warp reduces. */
float lyra_cuda_host_dot(lyra_type wt, const void *w, const float *x, int64_t n);
/* The same for decode kernel 1, 2 or 3 (LYRA_CUDA_MATVEC; 2 and 3 add in
 * the same order); lyra_cuda_host_dot is kernel 3, whose sums are
 * bit for bit those of kernel 2, the default. */
float lyra_cuda_host_dot_kernel(lyra_type wt, const void *w, const float *x, int64_t n, int kernel);
/* A row of n elements dequantized as get_rows and the GEMM weight tiles do. */
void lyra_cuda_host_dequant(lyra_type wt, const void *row, int64_t n, float *out);
/* The other ops' kernels, on host memory (freq_factors, chunks: host
 * pointers), step for step: */
/* rope of one token's heads x [n_head][head_dim] at position pos. */
void lyra_cuda_host_rope(float *x, int n_head, int head_dim, int32_t pos, const lyra_rope *rope);
/* layernorm of one row, summed in the kernel's thread and reduction order
 * (the GPU's bits); b may be NULL. */
void lyra_cuda_host_layernorm(const float *x, const float *w, const float *b, float eps, int64_t n,
                              float *out);
void lyra_cuda_host_add_bias(float *x, const float *bias, int64_t n, int ntok);
void lyra_cuda_host_gelu(const float *x, int64_t n, float *out);
void lyra_cuda_host_geglu(const float *gate, const float *up, int64_t n, float *out);
void lyra_cuda_host_scale(float *x, int64_t n, float s);
void lyra_cuda_host_softcap(float *x, int64_t n, float cap);
/* kv_store and attention on a cache in the CUDA device's chunk layout (K
 * [chunk_len][kv_dim], V the same), chunks picked as the kernels pick them
 * (lyra_kv_chunk, rings); attention in the kernel's order of positions,
 * lanes and warps (the GPU's expf and tanhf may differ in the last bit). */
void lyra_cuda_host_kv_store(const lyra_kv_view *kv, int32_t pos0, int ntok, int64_t kv_dim,
                             const float *k, const float *v);
void lyra_cuda_host_attention(const float *q, const lyra_kv_view *kv, int32_t pos0, int ntok,
                              const lyra_attn_params *ap, float *out);

#ifdef __cplusplus
}
#endif

#endif
