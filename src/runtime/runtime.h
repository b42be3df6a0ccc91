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
#include "token/tokenizer.h"

/* Positions per KV cache chunk. */
#define LYRA_KV_CHUNK 256

/* One weight allocation or adoption, to undo at close. */
typedef struct lyra_placed {
    int dev;            /* device index */
    const void *host;   /* the tensor in the mapping */
    void *ptr;          /* allocated copy (use_mmap = 0), else NULL (adopted) */
    uint64_t n_bytes;   /* its size */
} lyra_placed;

struct lyra_model {
    lyra_gguf *gguf;                        /* the file(s), mapped */
    lyra_llama *arch;                       /* hyper-parameters and weights */
    lyra_tokenizer *tok;                    /* tokenizer from the metadata */
    int n_dev;                              /* devices holding modules */
    lyra_device *dev[LYRA_MAX_DEVICES];     /* [n_dev], owned */
    int *module_dev;                        /* [n_modules] device of each module */
    lyra_placed *placed;                    /* [n_placed] distinct weights placed */
    int n_placed;                           /* their count */
    uint64_t dev_weights[LYRA_MAX_DEVICES]; /* weight bytes on each device */
    uint64_t n_bytes;                       /* weight bytes, each tensor once */
    uint64_t n_params;                      /* weight elements, each tensor once */
};

/* A device's share of a context. */
typedef struct lyra_ctx_dev {
    void *scratch;          /* activations (+ logits) + matmul work, one allocation */
    size_t scratch_bytes;   /* its size */
    void *work;             /* the matmul work inside scratch */
    size_t work_bytes;      /* its size */
    int n_layers;           /* layers whose cache lives here */
    size_t chunk_bytes;     /* one KV chunk for all of them (K and V) */
    void **chunks;          /* [n_chunks_max] allocated chunks */
    uint64_t kv_bytes;      /* KV bytes allocated */
} lyra_ctx_dev;

struct lyra_context {
    lyra_model *model;        /* not owned */
    int32_t n_ctx;            /* positions the cache may hold */
    int32_t n_batch;          /* tokens per forward call */
    int32_t n_threads;        /* CPU threads */
    lyra_kv_type kv_type;     /* cache element type */
    int32_t pos;              /* tokens in the cache */
    int32_t n_chunks;         /* KV chunks allocated (on every device) */
    int32_t n_chunks_max;     /* ceil(n_ctx / LYRA_KV_CHUNK) */
    lyra_ctx_dev cd[LYRA_MAX_DEVICES]; /* per model device */
    void **kv_ptrs;           /* [n_layer][2][n_chunks_max] chunk pointers (K, V) */
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
