/* runtime.h: the runtime's objects behind lyra.h's opaque lyra_model and
 * lyra_context (internal: for the library and its tests).
 *
 * A model owns the file (GGUF mapping), the architecture, the tokenizer and
 * the devices holding its weights, with the placement of every module on a
 * device (today: everything on the CPU, weights adopted in place from the
 * mapping). A context owns what one sequence needs on those devices: the KV
 * cache, grown in chunks of LYRA_KV_CHUNK positions as the sequence grows,
 * and scratch for n_batch tokens (activations, logits, matmul work), all
 * allocated through the devices so their accounting is exact. Contexts of
 * one model share its devices (and the CPU's threads): evaluate them from one
 * thread at a time. */
#ifndef LYRA_RUNTIME_H
#define LYRA_RUNTIME_H

#include <stdint.h>

#include "arch/llama.h"
#include "device/device.h"
#include "format/gguf.h"
#include "lyra.h"
#include "plan/plan.h"
#include "token/tokenizer.h"

/* Positions per KV cache chunk. */
#define LYRA_KV_CHUNK 256

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
};

/* ---- placement (placement.c) ---- */
/* The devices a model runs on: the simulated GPUs of LYRA_SIM_GPUS (when set,
 * they replace CUDA; said on stderr at INFO), then the CPU; n_threads for
 * each (0 = physical cores). On failure none is left. */
int lyra_runtime_devices(int n_threads, lyra_device **dev, int *n_dev, lyra_error *err);
/* Plan a's modules on dev[n_dev] (lyra_runtime_devices' order) from p's
 * device fields; notes go to the log (WARN). */
int lyra_runtime_plan(const lyra_llama *a, const lyra_model_params *p, lyra_device *const *dev,
                      int n_dev, struct lyra_plan **out, lyra_error *err);

/* ---- weights (model.c) ---- */
/* Place weight w (whose bytes are host, in the mapping) on device di: adopted
 * in place on the CPU with use_mmap (made resident, mlock'ed with use_mlock),
 * else allocated there and copied in; appends to m->placed. */
int lyra_runtime_place(lyra_model *m, int di, lyra_weight *w, const void *host, lyra_error *err);
/* Free / unadopt m->placed[j] (the caller removes the entry). */
void lyra_runtime_unplace(lyra_model *m, int j);
/* madvise(MADV_DONTNEED) the whole pages inside [p, p+n) of the mapping. */
void lyra_runtime_release_pages(const void *p, size_t n);

/* A device's share of a context. */
typedef struct lyra_ctx_dev {
    void *scratch;          /* activations (+ logits) + matmul work, one allocation */
    size_t scratch_bytes;   /* its size */
    void *work;             /* the matmul work inside scratch */
    size_t work_bytes;      /* its size */
    int has_layers;         /* the scratch holds layer buffers */
    int has_head;           /* the scratch holds the logits */
    uint64_t kv_bytes;      /* KV bytes allocated (layers' chunks on this device) */
} lyra_ctx_dev;

struct lyra_context {
    lyra_model *model;        /* not owned */
    int32_t n_ctx;            /* positions the cache may hold */
    int32_t n_batch;          /* tokens per forward call */
    int32_t n_threads;        /* CPU threads */
    lyra_kv_type kv_type;     /* cache element type */
    int32_t pos;              /* tokens in the cache */
    int32_t n_chunks;         /* KV chunks allocated (for every layer) */
    int32_t n_chunks_max;     /* ceil(n_ctx / LYRA_KV_CHUNK) */
    size_t chunk_bytes;       /* one layer's chunk: K then V (one allocation) */
    lyra_ctx_dev cd[LYRA_MAX_DEVICES]; /* per model device */
    void **kv_ptrs;           /* [n_layer][2][n_chunks_max] chunk pointers (K, V); the K
                                 pointer is the allocation, V lies in its second half */
    lyra_kv_view *kv;         /* [n_layer] views over kv_ptrs */
    lyra_llama_run run;       /* forward-pass state */
    int32_t *pos_buf;         /* [n_batch] host positions (run.pos) */
    float *stage;             /* [n_batch][n_embd] host staging (several devices) */
    float *logits;            /* [logits_rows][n_vocab] host logits of the last eval */
    size_t logits_cap;        /* floats allocated in logits */
    int32_t n_last;           /* tokens of the last eval (0: none) */
    int logits_all;           /* the last eval kept every position */
};

#endif
