/* objects.h: the runtime's objects behind lyra.h's opaque lyra_model and
 * lyra_context (internal: for the library and its tests; the runtime's
 * lowest header, every other runtime header builds on it).
 *
 * A model owns the file (GGUF mapping), the architecture, the tokenizer and
 * the devices holding its weights, with the placement of every module on a
 * device (GPUs, the CPU, or the disk tier: a module run on the CPU straight
 * from the mapping), the fallback history and the on-load quantized weights.
 * A context owns what its sequences need on those devices: a KV cache per
 * sequence (n_seq of them; lyra_eval uses sequence 0, lyra_decode any),
 * grown in chunks of kv_chunk positions as the sequence grows (a sliding-window layer's stops growing at a ring of
 * n_ring chunks, reused in turn: device.h lyra_kv_view), and scratch for n_batch tokens (activations, logits,
 * matmul work), all allocated through the devices so their accounting is
 * exact. Contexts of one model share its devices (and the CPU's threads):
 * evaluate them from one thread at a time. */
#ifndef LYRA_RUNTIME_OBJECTS_H
#define LYRA_RUNTIME_OBJECTS_H

#include <stddef.h>
#include <stdint.h>

#include "arch/llama.h"
#include "core/afile.h"
#include "device/device.h"
#include "format/gguf.h"
#include "lyra.h"
#include "plan/plan.h"
#include "token/tokenizer.h"

/* Positions per KV cache chunk. */
#define LYRA_KV_CHUNK 256 /* default; lyra_model_params.kv_chunk changes it */
/* The most sequences one context holds (lyra_context_params.n_seq). */
#define LYRA_MAX_SEQ 256

struct lyra_plan;

/* One weight allocation or adoption, to undo at close. */
typedef struct lyra_placed {
    int dev;            /* device index */
    lyra_weight *w;     /* the weight (the first one, for a tied tensor) */
    const void *host;   /* the tensor in the mapping */
    void *ptr;          /* allocated copy (use_mmap = 0, or a GPU), else NULL (adopted) */
    uint64_t n_bytes;   /* its size */
    int locked;         /* 1: mlock'ed (adopted on the CPU with use_mlock) */
} lyra_placed;

struct lyra_model {
    lyra_gguf *gguf;                        /* the file(s), mapped */
    lyra_llama *arch;                       /* hyper-parameters and weights */
    lyra_tokenizer *tok;                    /* tokenizer from the metadata */
    int n_dev;                              /* devices: GPUs ascending, then the CPU */
    int cpu;                                /* index of the CPU device (= n_dev - 1) */
    lyra_device *dev[LYRA_MAX_DEVICES];     /* [n_dev], owned */
    int *module_dev;                        /* [n_modules] device running each module */
    unsigned char *module_disk;             /* [n_modules] 1: a disk module (runs on the
                                               CPU from the mapping, not resident) */
    int *module_rank;                       /* [n_modules] the MPI rank running each module
                                               (dist/dist.h), NULL with one rank; another
                                               rank's module is a disk module never run
                                               here (its pages never read) */
    int rank;                               /* this process's rank (with module_rank) */
    lyra_placed *placed;                    /* [n_placed] distinct weights placed */
    int n_placed;                           /* their count */
    int cap_placed;                         /* entries allocated */
    const void *rope_dev[LYRA_MAX_DEVICES]; /* rope_freqs.weight on each device running a
                                               layer (NULL elsewhere / without it) */
    uint64_t dev_weights[LYRA_MAX_DEVICES]; /* weight bytes placed on each device */
    uint64_t disk_weights;                  /* weight bytes of disk modules (the mapping) */
    uint64_t n_bytes;                       /* weight bytes, each tensor once */
    uint64_t n_params;                      /* weight elements, each tensor once */
    struct lyra_plan *plan;                 /* the plan the placement follows */
    int use_mmap;                           /* lyra_model_params.use_mmap */
    int use_mlock;                          /* lyra_model_params.use_mlock */
    int n_contexts;                         /* live contexts (move_layer needs one) */
    lyra_geometry geom;                     /* the geometry asked for, defaults resolved
                                               (contexts inherit it) */
    int32_t ctx_asked;                      /* lyra_model_params.n_ctx (0: the default) */
    int32_t n_ctx;                          /* context the load fitted (planned; the
                                               context policy may have halved it) */
    int32_t kv_chunk;                       /* positions per KV cache chunk */
    int fallback;                           /* progressive fallback on (load done) */
    int across_ranks;                       /* mpirun: --fallback-across-ranks (also during
                                               generation: lyra_kv_reserve) */
    int policy;                             /* lyra_fallback_policy */
    int probe;                              /* 1: a probe: only the map, no weights */
    int quiet_steps;                        /* 1: fallback steps are recorded, not logged
                                               (the probes of --fallback-across-ranks) */
    int alloc_stats;                        /* lyra_backend_params.alloc_stats */
    char *qbuf;                             /* on-load quantized weights (host), or NULL */
    uint64_t qbuf_bytes;                    /* its size */
    lyra_fallback_step *steps;              /* [n_steps] fallback history */
    int n_steps;                            /* its length */
    int cap_steps;                          /* entries allocated */
    uint64_t fingerprint;                   /* hash of the GGUF metadata and tensor
                                               tables (every part) and load_in_bits:
                                               names the model in session files */
    lyra_fail_io fail_io;                   /* session write fault injection (fail_io) */
};

/* A device's share of a context. */
typedef struct lyra_ctx_dev {
    void *scratch;          /* activations (+ logits) + matmul work, one allocation */
    size_t scratch_bytes;   /* its size */
    void *work;             /* the matmul work inside scratch */
    size_t work_bytes;      /* its size */
    int has_layers;         /* the scratch holds layer buffers */
    int has_head;           /* the scratch holds the logits */
    uint64_t kv_bytes;      /* KV bytes allocated (layers' chunks on this device, every
                               sequence) */
} lyra_ctx_dev;

/* One sequence's KV cache: for each layer, chunks of kv_chunk positions on
 * the layer's device. */
typedef struct lyra_kv_seq {
    int32_t pos;            /* tokens in the cache */
    int32_t top;            /* the highest position written + 1 since the cache was last
                               emptied (what a ring may have overwritten) */
    int32_t n_chunks;       /* chunks of positions in use (every layer; a ring layer holds
                               at most its n_ring of them: lyra_kv_layer_chunks) */
    void **ptrs;            /* [n_layer][2][n_chunks_max] chunk pointers (K, V) in the
                               context's kv_ptrs; the K pointer is the allocation, V lies
                               in its second half */
    lyra_kv_view *view;     /* [n_layer] views over ptrs (in the context's kv) */
} lyra_kv_seq;

struct lyra_context {
    lyra_model *model;        /* not owned */
    int32_t n_ctx;            /* positions each sequence's cache may hold */
    int32_t n_batch;          /* tokens per forward call */
    int32_t n_threads;        /* CPU threads */
    lyra_kv_type kv_type;     /* cache element type */
    int32_t n_seq;            /* sequences (lyra_eval evaluates sequence 0; lyra_decode any) */
    lyra_kv_seq *seq;         /* [n_seq] their caches */
    int32_t n_chunks_max;     /* ceil(n_ctx / kv_chunk) */
    int32_t kv_chunk;         /* positions per chunk (the model's) */
    size_t chunk_bytes;       /* one layer's chunk: K then V (one allocation) */
    lyra_ctx_dev cd[LYRA_MAX_DEVICES]; /* per model device */
    void **kv_ptrs;           /* [n_seq][n_layer][2][n_chunks_max]: every seq[s].ptrs */
    lyra_kv_view *kv;         /* [n_seq][n_layer]: every seq[s].view */
    lyra_llama_run run;       /* forward-pass state (run.kv: the evaluated sequence's views) */
    int32_t *pos_buf;         /* [n_batch] host positions (run.pos) */
    float *stage;             /* [n_batch][n_embd] host staging (several devices) */
    float *logits;            /* [logits_rows][n_vocab] host logits of the last eval */
    size_t logits_cap;        /* floats allocated in logits */
    int32_t n_last;           /* tokens of the last eval (0: none) */
    int logits_all;           /* the last eval kept every position */
    int decoded;              /* the last evaluation was a lyra_decode (out_idx applies) */
    int32_t *out_idx;         /* [out_cap] lyra_decode: batch index -> logits row, or -1 */
    int32_t out_cap;          /* entries allocated in out_idx */
    lyra_llama_seg *segs;     /* [n_batch] a forward pass's segments */
    int32_t *out_rows;        /* [n_batch] a forward pass's output rows */
    int32_t *seq_n;           /* [n_seq] lyra_decode: tokens per sequence */
    int32_t *seq_last;        /* [n_seq] lyra_decode: the sequence's last batch index */
    int making;               /* 1 inside lyra_context_new (scratch comes after moves) */
};

/* Chunks layer l of sequence s holds: n_chunks, at most its ring. */
static inline int32_t lyra_kv_layer_chunks(const lyra_context *c, int s, int l) {
    int32_t n = c->seq[s].n_chunks, r = c->seq[s].view[l].n_ring;
    return r > 0 && r < n ? r : n;
}

/* The slot of chunk k of layer l's K (v = 0) or V (v = 1) in sequence s. */
static inline void **lyra_kv_slot(const lyra_context *c, int s, int l, int v, int32_t k) {
    return &c->seq[s].ptrs[((size_t)l * 2 + (size_t)v) * (size_t)c->n_chunks_max + (size_t)k];
}

#endif
