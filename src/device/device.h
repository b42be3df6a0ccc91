/* device.h: what computes and what holds memory. A device has an id ("cpu",
 * "0", "1", ...), a kind, memory (total/free), allocation that fails by return
 * value (never an abort), copies in and out, adopt() for memory-mapped weights
 * the CPU uses in place, and the ops of the forward pass. Each device counts
 * its own allocations (calls, bytes held, peak).
 *
 * Pointers handed to ops are device pointers: memory this device allocated or
 * adopted. Code outside a device never dereferences another device's memory;
 * hand-offs go through copy_in / copy_out. All ops are row-partitioned over
 * the device's threads, so results do not depend on the thread count.
 *
 * Shapes in comments: [a][b] is row-major, b contiguous. */
#ifndef LYRA_DEVICE_H
#define LYRA_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "kernels/kernels.h"

typedef struct lyra_device lyra_device;

/* RoPE parameters of a model. theta_i = pos * freq_scale * base^(-2i/n_rot)
 * / (freq_factors ? freq_factors[i] : 1), i < n_rot/2. n_rot may be less than
 * head_dim (partial rotary, Phi-2): dims [n_rot, head_dim) of every head pass
 * through unchanged. */
typedef struct lyra_rope {
    int n_rot;            /* rotated dims per head (= head_dim for Llama) */
    float freq_base;      /* theta, default 10000 */
    float freq_scale;     /* 1 / linear scaling factor, default 1 */
    const float *freq_factors; /* [n_rot/2] divisors (rope_freqs.weight) or NULL; device memory */
    int neox;             /* 0: rotate pairs (2i, 2i+1) (Llama); 1: NeoX style, pairs
                             (i, i + n_rot/2) (Qwen2/3, Phi-2/3, Gemma) */
} lyra_rope;

/* A layer's KV cache: positions stored in chunks of chunk_len positions; a
 * chunk holds chunk_len * n_kv_head * head_dim elements of kv_type (F16 or
 * F32) for K and as many for V. The layout inside a chunk is the device's
 * (kv_store writes it, attention reads it; the CPU's is in cpu.c: K
 * transposed [n_kv_head][head_dim][chunk_len], V [chunk_len][kv_dim]). */
typedef struct lyra_kv_view {
    void *const *k_chunks;  /* [n_chunks] device pointers */
    void *const *v_chunks;
    int32_t chunk_len;
    lyra_type kv_type;      /* LYRA_TYPE_F16 or LYRA_TYPE_F32 */
    int32_t n_ring;         /* 0: position p lives in chunk p / chunk_len (grows);
                               > 0: sliding-window layer: a ring of n_ring chunks, position p
                               lives in chunk (p / chunk_len) % n_ring at offset p % chunk_len.
                               The runtime allocates n_ring >= ceil(window / chunk_len) + 1
                               chunks, so the last `window` positions before and including the
                               newest batch's tokens are always present. With a batch of ntok
                               tokens the ring must hold window + ntok - 1 positions: the
                               runtime sizes n_ring = ceil((window + n_batch - 1) / chunk_len) + 1. */
} lyra_kv_view;

/* The chunk holding position pos (kv_store and attention index through this). */
static inline int32_t lyra_kv_chunk(const lyra_kv_view *kv, int32_t pos) {
    int32_t c = pos / kv->chunk_len;
    return kv->n_ring > 0 ? c % kv->n_ring : c;
}

/* Attention parameters. */
typedef struct lyra_attn_params {
    int n_head, n_kv_head, head_dim;
    float scale;      /* multiplies q.k (usually 1/sqrt(head_dim)) */
    float softcap;    /* > 0: score = softcap * tanh(score / softcap) after scaling, before the
                         mask (Gemma 2) */
    int32_t window;   /* > 0: token at position p attends to positions max(0, p - window + 1)
                         .. p only */
} lyra_attn_params;

typedef struct lyra_device_ops {
    /* ---- memory ---- */
    /* LYRA_OK, or LYRA_ERR_OOM with *ptr = NULL (nothing else changes). */
    int (*alloc)(lyra_device *d, size_t size, void **ptr);
    void (*free)(lyra_device *d, void *ptr, size_t size);
    /* Register host memory (a mapping) used in place; counted as mapped. */
    int (*adopt)(lyra_device *d, const void *ptr, size_t size);
    void (*unadopt)(lyra_device *d, const void *ptr, size_t size);
    int (*copy_in)(lyra_device *d, void *dst, const void *host_src, size_t n);
    int (*copy_out)(lyra_device *d, void *host_dst, const void *src, size_t n);
    /* Wait for queued work; report a deferred failure. */
    int (*sync)(lyra_device *d, lyra_error *err);

    /* ---- forward-pass ops ---- */
    /* out[t][:] = row ids[t] of table [n_rows][n] (type t), dequantized. */
    void (*get_rows)(lyra_device *d, lyra_type t, const void *table, int64_t n,
                     const int32_t *ids /* host */, int ntok, float *out);
    /* out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w;  x,out [ntok][n], w [n] */
    void (*rmsnorm)(lyra_device *d, const float *x, const float *w, float eps,
                    int64_t n, int ntok, float *out);
    /* Y[ntok][rows] = X[ntok][cols] * W[rows][cols]^T; W of type wt. */
    void (*matmul)(lyra_device *d, lyra_type wt, const void *W, int64_t rows,
                   int64_t cols, const float *X, int ntok, float *Y);
    /* In place on x [ntok][n_head][head_dim]; pos[t] (host) is token t's position. */
    void (*rope)(lyra_device *d, float *x, int ntok, int n_head, int head_dim,
                 const int32_t *pos, const lyra_rope *rope);
    /* Store k, v [ntok][n_kv_head*head_dim] at positions pos0.. into the cache. */
    void (*kv_store)(lyra_device *d, const lyra_kv_view *kv, int32_t pos0, int ntok,
                     int64_t kv_dim, const float *k, const float *v);
    /* Causal attention. q [ntok][n_head][head_dim], token t at position pos0+t
     * attends to cache positions 0..pos0+t (ap->window > 0: the last window of
     * them). Grouped-query: head h uses KV head h / (n_head / n_kv_head).
     * out [ntok][n_head][head_dim]. */
    void (*attention)(lyra_device *d, const float *q, const lyra_kv_view *kv, int32_t pos0,
                      int ntok, const lyra_attn_params *ap, float *out);
    /* out = silu(gate) * up, elementwise over n. */
    void (*swiglu)(lyra_device *d, const float *gate, const float *up, int64_t n, float *out);
    /* x += y, elementwise over n. */
    void (*add)(lyra_device *d, float *x, const float *y, int64_t n);
    /* out[t] = (x[t] - mean) / sqrt(var + eps) * w + b (b may be NULL); x,out [ntok][n],
     * var = mean((x-mean)^2) */
    void (*layernorm)(lyra_device *d, const float *x, const float *w, const float *b, float eps,
                      int64_t n, int ntok, float *out);
    /* x[t][i] += bias[i]; x [ntok][n], bias [n] */
    void (*add_bias)(lyra_device *d, float *x, const float *bias, int64_t n, int ntok);
    /* out = gelu(x), tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),
     * elementwise over n (out may == x) */
    void (*gelu)(lyra_device *d, const float *x, int64_t n, float *out);
    /* out = gelu(gate) * up (tanh form), elementwise over n (out may == gate) */
    void (*geglu)(lyra_device *d, const float *gate, const float *up, int64_t n, float *out);
    /* x *= s, elementwise over n */
    void (*scale)(lyra_device *d, float *x, int64_t n, float s);
    /* x = cap * tanh(x / cap), elementwise over n (final-logit soft-capping) */
    void (*softcap)(lyra_device *d, float *x, int64_t n, float cap);
    /* Per-head RMSNorm of Q/K (Qwen3, Gemma 3) uses rmsnorm with n = head_dim
     * and ntok*n_head rows. The new ops above (layernorm .. softcap) may be
     * NULL on a device that lacks them: the runtime never places a module
     * needing one there (lyra_llama_module_ops_missing). */

    /* ---- work memory (added by the engine) ----
     * matmul may need work memory (CPU: the activations quantized to the
     * weight's dot type). The runtime asks for the size of every matmul it will
     * run, allocates the largest through alloc (so it is counted as scratch)
     * and hands it over with set_work before running ops; the device never
     * allocates behind the runtime's back. NULL: the device needs none. */
    size_t (*matmul_work_size)(lyra_device *d, lyra_type wt, int64_t cols, int ntok);
    void (*set_work)(lyra_device *d, void *work, size_t size);
    /* Release the device itself (called by lyra_device_free, after the owner
     * freed what it allocated). */
    void (*destroy)(lyra_device *d);
    /* Free memory as the device reports it now (lyra_device_free_mem). */
    uint64_t (*free_mem)(const lyra_device *d);
    /* Optional (NULL: the caller runs matmul n times). n products sharing X,
     * Y[i] [ntok][rows[i]] = X [ntok][cols] * W[i]^T (W[i] of type wt[i]), in
     * as few dispatches as the device can (Q/K/V, gate/up); results are those
     * of n matmul calls. Needs no more work memory than those calls. */
    void (*matmul_multi)(lyra_device *d, int n, const lyra_type *wt, const void *const *W,
                         const int64_t *rows, int64_t cols, const float *X, int ntok,
                         float *const *Y);
    /* Optional, host side: this device's KV chunk layout (kv_store /
     * attention) to and from rows, so a layer's cache can move between
     * devices whose layouts differ. A chunk is K then V, 2 * chunk_len *
     * kv_dim elements of t; "rows" is K [chunk_len][kv_dim] then V
     * [chunk_len][kv_dim]. src and dst are host copies (copy_out / copy_in).
     * NULL: the device's layout is rows. */
    void (*kv_to_rows)(const void *chunk, void *rows, int32_t chunk_len, int64_t kv_dim, lyra_type t);
    void (*kv_from_rows)(const void *rows, void *chunk, int32_t chunk_len, int64_t kv_dim, lyra_type t);
} lyra_device_ops;

/* The CPU's kv_to_rows / kv_from_rows (K transposed; simulated GPUs share
 * the CPU's layout). */
void lyra_cpu_kv_to_rows(const void *chunk, void *rows, int32_t chunk_len, int64_t kv_dim, lyra_type t);
void lyra_cpu_kv_from_rows(const void *rows, void *chunk, int32_t chunk_len, int64_t kv_dim, lyra_type t);

typedef struct lyra_device_stats {
    uint64_t alloc_calls;   /* calls to alloc (successful or not) */
    uint64_t allocated;     /* bytes held now through alloc */
    uint64_t peak;          /* max of allocated over time */
    uint64_t mapped;        /* bytes adopted (mapped weights used in place) */
} lyra_device_stats;

struct lyra_device {
    char id[16];            /* "cpu", "0", "1", ... */
    char kind[8];           /* "cpu" or "gpu" */
    char backend[8];        /* "cpu", "sim", "cuda" */
    char name[64];          /* human-readable */
    uint64_t total;         /* bytes of memory */
    uint64_t budget;        /* cap on allocated (0: none) */
    lyra_device_stats stats;
    uint64_t fail_at;       /* fault injection (LYRA_FAIL_ALLOC): allocation call number
                               fail_at (1-based, counted in stats.alloc_calls) fails;
                               0: none */
    int fail_after;         /* 1: every call after fail_at fails too ("N+") */
    const lyra_device_ops *ops;
    void *impl;             /* backend state */
    struct lyra_prof *prof; /* op timing (device/prof.h) or NULL: off */
    const lyra_device_ops *own_ops; /* while op timing is on: the table ops wraps */
};

/* The device's own ops table: d->ops, or the table op timing wraps while it
 * is on (device/prof.h); what identifies a backend (lyra_device_is_sim...). */
const lyra_device_ops *lyra_device_own_ops(const lyra_device *d);
/* Free memory as the device reports it now (CPU: MemAvailable). */
uint64_t lyra_device_free_mem(const lyra_device *d);
/* What lyra may still allocate on d: free memory, capped by the budget left. */
uint64_t lyra_device_room(const lyra_device *d);

/* Allocate through d->ops->alloc, honouring fault injection: the runtime
 * allocates every weight copy, KV chunk, scratch and staging buffer through
 * this. LYRA_OK, or LYRA_ERR_OOM with *ptr = NULL. */
int lyra_device_alloc(lyra_device *d, size_t size, void **ptr);

/* A LYRA_FAIL_ALLOC value (lyra_backend_params.fail_alloc)
 * "ID:N[+][,ID:N[+]...]": arm fault injection on dev[n] (IDs as `lyra
 * devices` prints them). NULL or empty: nothing. Malformed, or an ID that is
 * not here: LYRA_ERR_INPUT naming LYRA_FAIL_ALLOC and the entry. *armed =
 * number of entries (the caller announces them). */
int lyra_device_fault_parse(const char *value, lyra_device *const *dev, int n, int *armed,
                            lyra_error *err);

/* The CPU device: n_threads workers (0 = physical cores), kernels cpu_path
 * (a LYRA_CPU value: "scalar", "avx2", "avx512"; NULL or "": the best here;
 * lyra_cpu_path_parse). */
int lyra_cpu_device_open(int n_threads, const char *cpu_path, lyra_device **out, lyra_error *err);
/* The same with cpu_path from the environment (LYRA_CPU). */
int lyra_cpu_device_new(int n_threads, lyra_device **out, lyra_error *err);
void lyra_device_free(lyra_device *d);
lyra_cpu_path lyra_cpu_device_path(const lyra_device *d);
int lyra_cpu_device_threads(const lyra_device *d);
/* Change the number of threads (0 = physical cores); the pool is rebuilt only
 * when the count changes. LYRA_ERR_RUNTIME if threads cannot be started. */
int lyra_cpu_device_set_threads(lyra_device *d, int n_threads, lyra_error *err);

/* ---- simulated GPUs (sim.c) ----
 * LYRA_SIM_GPUS, when set (even empty), replaces all CUDA GPUs: a
 * comma-separated list of SIZE or CAP@REPORTED entries (core/size.h grammar)
 * making GPUs "0", "1", ... (kind "gpu", backend "sim"). Memory is separate
 * host allocations; alloc of n succeeds iff allocated + n <= CAP (and within
 * the device budget when one is set), else LYRA_ERR_OOM as cudaMalloc would;
 * total = REPORTED (= CAP when not given), free = REPORTED - allocated. adopt
 * fails (a GPU cannot use host memory in place: alloc + copy_in instead).
 * Ops run on a private CPU device (the compute device given at creation), so
 * results are bitwise equal to all-CPU. Debug builds (LYRA_DEBUG) check that
 * every op's operands lie in this device's allocations; a violation skips the
 * op and is reported by sync as LYRA_ERR_RUNTIME. */
#define LYRA_SIM_MAX_GPUS 15

typedef struct lyra_sim_spec {
    uint64_t cap;       /* bytes that can be allocated */
    uint64_t reported;  /* total the device reports (= cap when not given) */
} lyra_sim_spec;

/* Parse a LYRA_SIM_GPUS value (lyra_backend_params.sim_gpus) into
 * specs[max]; *n = entries ("" gives 0). Malformed: LYRA_ERR_INPUT naming
 * LYRA_SIM_GPUS and the entry. */
int lyra_sim_parse(const char *value, lyra_sim_spec *specs, int max, int *n, lyra_error *err);
/* The same from the environment; *set = 0 (and *n = 0) when LYRA_SIM_GPUS is unset. */
int lyra_sim_from_env(lyra_sim_spec *specs, int max, int *n, int *set, lyra_error *err);
/* Simulated GPU number index (id "0", "1", ...). compute is a CPU device made
 * for this GPU alone (lyra_cpu_device_new); the sim device owns it (freed with
 * it, also on failure). */
int lyra_sim_device_new(int index, const lyra_sim_spec *spec, lyra_device *compute,
                        lyra_device **out, lyra_error *err);
/* n simulated GPUs from specs, each computing with its own CPU device of
 * n_threads threads (0 = physical cores) and kernels cpu_path (as
 * lyra_cpu_device_open). On failure none is left. */
int lyra_sim_devices_open(const lyra_sim_spec *specs, int n, int n_threads, const char *cpu_path,
                          lyra_device **out, lyra_error *err);
/* The same with cpu_path from the environment (LYRA_CPU). */
int lyra_sim_devices_new(const lyra_sim_spec *specs, int n, int n_threads, lyra_device **out,
                         lyra_error *err);
int lyra_device_is_sim(const lyra_device *d);
/* The CPU device a simulated GPU computes with (e.g. to set its threads). */
lyra_device *lyra_sim_device_compute(lyra_device *d);
/* Its allocation cap. */
uint64_t lyra_sim_device_cap(const lyra_device *d);

#endif
