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
#define LYRA_KV_CHUNK 256 /* default; lyra_model_params.kv_chunk changes it */

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
    int32_t n_ctx;                          /* context the load fitted (planned; the
                                               context policy may have halved it) */
    int32_t kv_chunk;                       /* positions per KV cache chunk */
    int fallback;                           /* progressive fallback on (load done) */
    int policy;                             /* lyra_fallback_policy */
    int probe;                              /* 1: a probe: only the map, no weights */
    char *qbuf;                             /* on-load quantized weights (host), or NULL */
    uint64_t qbuf_bytes;                    /* its size */
    lyra_fallback_step *steps;              /* [n_steps] fallback history */
    int n_steps;                            /* its length */
    int cap_steps;                          /* entries allocated */
};

/* ---- on-load quantization (quantize_load.c) ---- */
/* Quantize the F32/F16/BF16 matrices to 8 (Q8_0) or 4 bits (Q4_K, else Q4_0)
 * into m->qbuf; the weights point there from then on. */
int lyra_runtime_quantize_on_load(lyra_model *m, int bits, lyra_error *err);
/* 1 when p lies in the model's on-load quantized weights (not the mapping). */
int lyra_runtime_in_qbuf(const lyra_model *m, const void *p);

/* ---- fallback (load.c) ---- */
/* Why an allocation failed: device index, bytes asked, and what the device
 * could still give then (lyra_device_room). */
typedef struct lyra_oom {
    int dev;            /* index into model->dev */
    uint64_t asked;     /* bytes asked */
    uint64_t room;      /* bytes it could still give */
} lyra_oom;
/* Allocate on m->dev[di]; on failure fill *oom and return LYRA_ERR_OOM. */
int lyra_runtime_alloc(lyra_model *m, int di, size_t n, void **p, lyra_oom *oom);
/* Place the model: plan, then load with progressive fallback (docs/fallback.md). */
int lyra_runtime_load(lyra_model *m, const lyra_model_params *p, lyra_error *err);
/* Append a history step and log its line (what: "gpu", "cpu" or "ctx"). */
int lyra_runtime_fallback_step(lyra_model *m, int phase, int32_t token, const lyra_oom *oom,
                               const char *what, int32_t from, int32_t to);
/* The "out of memory on ID: asked X, free Y" text of oom. */
void lyra_runtime_oom_text(const lyra_model *m, const lyra_oom *oom, char *buf, size_t cap);
/* Layers resident on GPUs / on the CPU (not disk) now. */
int lyra_runtime_gpu_layers(const lyra_model *m);
int lyra_runtime_cpu_layers(const lyra_model *m);

/* Scratch a device needs when the modules run where module_dev says (disk
 * modules: the CPU), for n_batch tokens. */
typedef struct lyra_scratch_need {
    int any, has_layers, has_head; /* runs a module / a layer / the head */
    size_t work, bytes;            /* matmul work; the whole scratch */
} lyra_scratch_need;
lyra_scratch_need lyra_runtime_scratch_need(const lyra_model *m, const int *module_dev, int di,
                                            int n_batch);

/* ---- placement (placement.c) ---- */
/* The devices a model runs on: the simulated GPUs of LYRA_SIM_GPUS (when set,
 * they replace CUDA; said on stderr at INFO), then the CPU; n_threads for
 * each (0 = physical cores). On failure none is left. */
int lyra_runtime_devices(int n_threads, lyra_device **dev, int *n_dev, lyra_error *err);
/* Plan a's modules on dev[n_dev] (lyra_runtime_devices' order) from p's
 * device fields; notes go to the log (WARN). */
int lyra_runtime_plan(const lyra_llama *a, const lyra_model_params *p, lyra_device *const *dev,
                      int n_dev, struct lyra_plan **out, lyra_error *err);
/* The plan of a map the runtime chose (ids[i]: device id of module i, "disk"
 * for the disk tier) for n_ctx positions, with p's budgets; not checked
 * against them (the map is what really loaded). */
int lyra_runtime_plan_fixed(const lyra_llama *a, const lyra_model_params *p,
                            lyra_device *const *dev, int n_dev, const char *const *ids,
                            int32_t n_ctx, struct lyra_plan **out, lyra_error *err);

/* ---- weights (model.c) ---- */
/* Place weight w (whose bytes are host, in the mapping) on device di: adopted
 * in place on the CPU with use_mmap (made resident, mlock'ed with use_mlock),
 * else allocated there and copied in; appends to m->placed. */
int lyra_runtime_place(lyra_model *m, int di, lyra_weight *w, const void *host, lyra_oom *oom,
                       lyra_error *err);
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
    int32_t n_chunks_max;     /* ceil(n_ctx / kv_chunk) */
    int32_t kv_chunk;         /* positions per chunk (the model's) */
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
    int making;               /* 1 inside lyra_context_new (scratch comes after moves) */
};

#endif
