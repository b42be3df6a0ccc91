/* plan.h: the planner. It puts a model's modules (model.embed_tokens,
 * model.layers.N, model.norm, lm_head) on devices (GPUs "0", "1", ..., "cpu",
 * and the "disk" tier) under memory budgets, with exact accounting of what
 * the runtime will allocate on each device, and prints the plan as a table or
 * as JSON. It reads no weights: a module is a list of tensors (shapes and
 * types), KV bytes per position and scratch bytes.
 *
 * Accounting on a device d (all integers, bytes):
 *   weights = sum of its modules' tensors in the type they have on d
 *             (model.target_type; the disk keeps the file's types), a tied
 *             head counted once when on the embedding's device, plus the
 *             extras (rope_freqs.weight ...) when d runs a layer;
 *   kv      = sum over the layers d runs of kv_per_pos * positions, positions
 *             = ctx rounded up to whole kv_chunk chunks; a sliding-window
 *             layer (kv_window > 0) keeps a ring of ceil((window + batch - 1) /
 *             kv_chunk) + 1 chunks when that is fewer; times n_seq (the
 *             sequences of a context: lyra serve's slots);
 *   scratch = 0 if d runs nothing, else scratch_base + for each module kind
 *             the largest scratch of its modules on d + the largest matmul work
 *             of its modules rounded up to 64 bytes;
 *   total   = weights + kv + scratch <= budget.
 * Disk modules run on the CPU from the file mapping: their weights are counted
 * on "disk" (in no budget), their KV cache and scratch on the CPU.
 *
 * Budgets (lyra_plan_budgets): a device with a max_memory entry gets that
 * budget (reserve 0), at most its free memory (a note when it is cut); any other budget = free - reserve, with the reserve from
 * --reserve or the default: CUDA max(512 MiB, 5% of total), CPU max(1 GiB, 10%
 * of available), simulated GPUs and disk 0.
 *
 * Placement (lyra_plan_make), always contiguous in module order over GPU 0,
 * GPU 1, ..., cpu, disk for strategies; a layer is never split; the same
 * inputs give the same plan, byte for byte:
 *   auto = balanced  GPUs in proportion to their budgets (each GPU filled up
 *                    to lambda * budget with the smallest lambda that fits the
 *                    GPU part of the model); what the GPUs cannot hold goes to
 *                    the CPU, and what the CPU cannot hold to disk.
 *   balanced_low_0   as accelerate: the other GPUs balanced, GPU 0 gets only
 *                    what they cannot take.
 *   sequential       fill GPU 0, then 1, ..., then the CPU, then disk.
 *   cpu              no GPUs: the CPU, then disk.
 *   cuda, cuda:N, N  everything on that GPU (an error if it does not fit).
 *   explicit map     entries (key, device): keys are module names or
 *                    dot-boundary prefixes ("" covers all, "model.layers"
 *                    every layer), Hugging Face / GGUF spellings accepted
 *                    (aliases per architecture: phi2's model.final_layernorm
 *                    = model.norm, gpt2's transformer.h.N = model.layers.N,
 *                    GGUF's blk.N = model.layers.N ...); the longest key wins;
 *                    devices: a GPU index, LYRA_DEVICE_CPU, LYRA_DEVICE_DISK. Errors:
 *                    a key below a module ("model.layers.3.mlp": a layer is
 *                    never split), a key matching no module, two keys naming
 *                    the same thing ("model.norm" and "output_norm"), a module
 *                    no key covers, an unknown device value, a device over its
 *                    budget. A GPU that is not here: its modules go to the CPU
 *                    with a note when opts.fallback (default), else an error.
 *   gpu_layers N     model.embed_tokens and model.layers.0..N-1 on the GPUs
 *                    (split by the strategy; an error if they do not fit, or
 *                    with opts.step_down fewer layers, below), the rest on the
 *                    CPU (then disk); N >= n_layers (or "all"): everything on
 *                    the GPUs; 0: nothing on the GPUs.
 *   tensor_split     llama.cpp's --tensor-split: the GPU layers are split in
 *                    these proportions (layer j of L goes to the first GPU i
 *                    with j / L < (p0 + .. + pi) / sum); the embedding goes
 *                    with the first GPU layer, norm and head (when on GPUs)
 *                    with the last. Without gpu_layers all modules are GPU
 *                    modules. Needs strategy auto/balanced.
 * Step-down (opts.step_down, the runtime's progressive fallback): when the
 * GPU part of gpu_layers N does not fit (any strategy taking gpu_layers,
 * tensor_split too), the plan puts K1 < K = min(N, n_layers) layers there
 * instead: opts.gpu_layers_fallback first when smaller than K and it fits,
 * else the largest count below that fits (0: nothing on the GPUs), and
 * reports it in plan.step and a note "fallback: at plan: K -> K1 GPU layers
 * (WHY)". Strategies and maps without gpu_layers keep their errors.
 * Errors are LYRA_ERR_INPUT with one line naming the entry, module or device
 * and the bytes. Notes (ignored max_memory entries, missing GPUs) are returned,
 * never printed. The planner parses no text: its inputs are typed
 * (lyra_model_params' device fields; config/devspec.h parses the strings). */
#ifndef LYRA_PLAN_PLAN_H
#define LYRA_PLAN_PLAN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/wtype.h"
#include "device/device.h"

#define LYRA_PLAN_MAX_GPUS 16
#define LYRA_PLAN_MAX_DEVICES (LYRA_PLAN_MAX_GPUS + 2) /* + cpu + disk */
#define LYRA_PLAN_MAX_NOTES 16
#define LYRA_PLAN_ALL_LAYERS INT32_MAX                 /* gpu_layers "all" */
#define LYRA_PLAN_SPLIT_ONE 1000000                    /* tensor_split fixed point: 1.0 */

/* ------------------------------------------------------------------ input */

typedef enum lyra_plan_kind {
    LYRA_PLAN_EMBED = 0, LYRA_PLAN_LAYER = 1, LYRA_PLAN_NORM = 2, LYRA_PLAN_HEAD = 3
} lyra_plan_kind;

/* One weight tensor of a module. */
typedef struct lyra_plan_tensor {
    const char *name;   /* GGUF name ("blk.0.attn_q.weight"); must outlive the call */
    lyra_type type;     /* type in the file */
    int64_t cols;       /* elements per row (ne[0]) */
    int64_t rows;       /* number of rows (product of the other dims) */
    int matmul;         /* 1: multiplied with activations (needs matmul work memory) */
} lyra_plan_tensor;

/* One module, in forward order. */
typedef struct lyra_plan_module {
    char name[48];              /* canonical name: "model.embed_tokens", "model.layers.3",
                                   "model.norm", "lm_head" */
    lyra_plan_kind kind;        /* what it is */
    int layer;                  /* layer index (LYRA_PLAN_LAYER), else -1 */
    const lyra_plan_tensor *tensors; /* [n_tensors] its weights */
    int n_tensors;              /* their count */
    uint64_t kv_per_pos;        /* KV cache bytes per position (layers: n_kv_heads *
                                   head_dim * 2 * bytes of the KV type), else 0 */
    int32_t kv_window;          /* > 0: a sliding-window layer: its KV cache is a ring
                                   (arch/llama.h lyra_llama_ring_chunks), else 0 */
    uint64_t scratch;           /* activation bytes of this kind of module for the batch
                                   (shared by the modules of one kind on a device: the
                                   head's holds batch x vocab floats) */
} lyra_plan_module;

typedef struct lyra_plan_device lyra_plan_device;

/* A model as the planner sees it. */
typedef struct lyra_plan_model {
    const char *arch;               /* "llama", "phi2", ...: the alias table for maps */
    const lyra_plan_module *modules;/* [n_modules] in forward order */
    int n_modules;                  /* their count */
    const lyra_plan_tensor *extras; /* [n_extras] replicated on every device running a layer */
    int n_extras;                   /* their count */
    int tied_head;                  /* the head's tensors are the embedding's (counted once
                                       on a device holding both) */
    uint64_t scratch_base;          /* activation bytes every device running a module needs */
    /* Type tensor t will have on device d (on-load quantization); NULL: the
     * file's type. Not called for the disk. */
    lyra_type (*target_type)(void *user, const lyra_plan_tensor *t, const lyra_plan_device *d);
    /* Matmul work bytes on d for a weight of type wt and cols columns at
     * n_batch tokens; NULL: lyra_matmul_work_size (the CPU's and the
     * simulated GPUs'). */
    size_t (*work_size)(void *user, const lyra_plan_device *d, lyra_type wt, int64_t cols,
                        int n_batch);
    void *user;                     /* for the callbacks */
    void *owned;                    /* memory of a builder (lyra_plan_model_release) */
} lyra_plan_model;

/* A device as the planner sees it. */
struct lyra_plan_device {
    char id[16];        /* "0", "1", ..., "cpu", "disk" */
    char kind[8];       /* "gpu", "cpu", "disk" */
    char backend[8];    /* "cuda", "sim", "cpu", "mmap" (disk) */
    uint64_t free;      /* bytes free now (disk: 0, not counted) */
    uint64_t total;     /* bytes of memory (disk: 0) */
    uint64_t reserve;   /* bytes kept free (lyra_plan_budgets) */
    uint64_t budget;    /* bytes lyra may use on it (lyra_plan_budgets; disk: 0, unlimited) */
    int has_max;        /* 1: budget given by a max_memory entry */
};

typedef enum lyra_plan_strategy {
    LYRA_PLAN_AUTO = 0,         /* = balanced */
    LYRA_PLAN_BALANCED,
    LYRA_PLAN_BALANCED_LOW_0,
    LYRA_PLAN_SEQUENTIAL,
    LYRA_PLAN_CPU,
    LYRA_PLAN_GPU,              /* everything on GPU opts.gpu ("cuda", "cuda:N", N) */
    LYRA_PLAN_MAP,              /* explicit map opts.map */
    LYRA_PLAN_FIXED             /* opts.fixed[i] is module i's device id; budgets not
                                   checked (a map the runtime really loaded) */
} lyra_plan_strategy;

typedef struct lyra_plan_opts {
    lyra_plan_strategy strategy;  /* default auto */
    int gpu;                      /* LYRA_PLAN_GPU: the GPU index */
    const lyra_device_map_entry *map; /* LYRA_PLAN_MAP: [n_map] entries (borrowed) */
    int n_map;                    /* their count */
    char map_where[128];          /* where the map/strategy came from, for messages
                                     ("m.json", "device_map") */
    int32_t gpu_layers;           /* -1: not given; 0..; LYRA_PLAN_ALL_LAYERS */
    int n_split;                  /* tensor_split entries (0: not given) */
    uint64_t split[LYRA_PLAN_MAX_GPUS]; /* proportions, LYRA_PLAN_SPLIT_ONE = 1.0 */
    int32_t ctx;                  /* context positions the KV cache is planned for */
    int32_t batch;                /* tokens per forward pass (scratch) */
    int32_t n_seq;                /* sequences, each with its own KV cache; 0 or 1: one */
    int32_t kv_chunk;             /* the KV cache grows in chunks of this many positions
                                     (the runtime's LYRA_KV_CHUNK); 0 or 1: exact */
    int fallback;                 /* 1 (default): a map naming a missing GPU puts its
                                     modules on the CPU with a note; 0: error */
    const char *const *fixed;     /* LYRA_PLAN_FIXED: [n_modules] device ids */
    int step_down;                /* 1: gpu_layers that do not fit step down (above);
                                     0 (default): an error */
    int32_t gpu_layers_fallback;  /* step_down: the count tried first; -1 (default): none */
} lyra_plan_opts;

/* auto, no gpu_layers, no split, ctx 4096, batch 512, kv_chunk 256, fallback 1,
 * step_down 0, gpu_layers_fallback -1. */
lyra_plan_opts lyra_plan_default_opts(void);

/* The geometry a model is planned for (lyra_model_params' n_ctx, n_batch,
 * kv_type, n_threads): an explicit input of planning, and what contexts
 * inherit. */
typedef struct lyra_geometry {
    int32_t n_ctx;      /* positions the KV cache holds; 0 = default */
    int32_t n_batch;    /* tokens per forward pass; 0 = default */
    int kv_type;        /* lyra_kv_type; LYRA_KV_DEFAULT = default */
    int32_t n_threads;  /* threads; 0 = physical cores */
    int32_t n_seq;      /* sequences, each a KV cache of n_ctx positions; 0 = 1 */
} lyra_geometry;
/* The one validation: negative sizes or an unknown KV type are
 * LYRA_ERR_INPUT naming the field ("n_ctx: must be >= 0, got -5"). */
int lyra_geometry_check(const lyra_geometry *g, lyra_error *err);
/* The one place for defaults: n_ctx 0 -> ctx_default, n_batch 0 -> 512,
 * then n_batch at most n_ctx, kv_type default -> F16 (n_threads stays: 0
 * means physical cores to the devices). */
lyra_geometry lyra_geometry_resolve(lyra_geometry g, int32_t ctx_default);
/* The default context of a model trained on n_ctx_train positions:
 * min(n_ctx_train, 4096). */
int32_t lyra_geometry_default_ctx(int32_t n_ctx_train);

/* ---------------------------------------------------------------- budgets */

/* Notes for the user (one line each, "WHERE: WHAT"), returned, never printed. */
typedef struct lyra_plan_notes {
    int n;                                   /* lines */
    char line[LYRA_PLAN_MAX_NOTES][256];     /* [n] */
} lyra_plan_notes;
void lyra_plan_note(lyra_plan_notes *notes, const char *fmt, ...) LYRA_PRINTF(2, 3);

/* Per device bytes (max_memory, reserve) as the budgets use them. */
typedef struct lyra_plan_memspec {
    int n;                                   /* entries */
    char key[LYRA_PLAN_MAX_DEVICES][16];     /* [n] "0", "1", ... or "cpu" */
    uint64_t bytes[LYRA_PLAN_MAX_DEVICES];   /* [n] */
    char where[64];                          /* source ("--max-memory"), for notes */
} lyra_plan_memspec;

/* Typed entries (lyra_model_params' max_memory, reserve) as a memspec:
 * GPU index N -> key "N", LYRA_DEVICE_CPU -> "cpu". Other devices and
 * duplicates are LYRA_ERR_INPUT naming where. */
int lyra_plan_memspec_from(const lyra_device_bytes *e, int n, const char *where,
                           lyra_plan_memspec *out, lyra_error *err);

/* A plan device from a live device (free = lyra_device_free_mem, total). */
void lyra_plan_device_from(const lyra_device *d, lyra_plan_device *out);
/* The disk tier. */
void lyra_plan_device_disk(lyra_plan_device *out);
/* Default reserve: cuda max(512 MiB, 5% of total), cpu max(1 GiB, 10% of
 * free), sim and disk 0. */
uint64_t lyra_plan_default_reserve(const lyra_plan_device *d);
/* Set reserve and budget of devs[n] from max_memory and reserve (either may be
 * NULL). Entries for a GPU that is not here are ignored with a note. */
int lyra_plan_budgets(lyra_plan_device *devs, int n, const lyra_plan_memspec *max_memory,
                      const lyra_plan_memspec *reserve, lyra_plan_notes *notes,
                      lyra_error *err);

/* ------------------------------------------------------------------- plan */

typedef struct lyra_plan_usage {
    uint64_t weights;   /* weight bytes */
    uint64_t kv;        /* KV cache bytes at the planned context */
    uint64_t scratch;   /* activations + logits + matmul work */
    uint64_t total;     /* the sum */
} lyra_plan_usage;

/* A plan-time step-down of gpu_layers (opts.step_down). */
typedef struct lyra_plan_step {
    int32_t from;       /* GPU layers asked (at most the model's); -1: no step-down */
    int32_t to;         /* GPU layers planned */
    char device[16];    /* the GPU that could not take `module` */
    char module[48];    /* the first module that did not fit */
    uint64_t asked;     /* what it would add there (weights, KV cache, scratch;
                           tensor_split: the GPU's whole share) */
    uint64_t room;      /* what that GPU had left within its budget */
} lyra_plan_step;

typedef struct lyra_plan {
    int32_t ctx;                                /* opts.ctx */
    int32_t batch;                              /* opts.batch */
    int32_t n_seq;                              /* opts.n_seq (at least 1) */
    int n_devices;                              /* GPUs ascending, then cpu, then disk */
    lyra_plan_device dev[LYRA_PLAN_MAX_DEVICES];/* [n_devices] */
    lyra_plan_usage use[LYRA_PLAN_MAX_DEVICES]; /* [n_devices] planned bytes */
    int n_modules;                              /* model order */
    lyra_plan_module *modules;                  /* [n_modules] copies (tensors NULL) */
    int *module_dev;                            /* [n_modules] index into dev; -1: another
                                                   rank's module (shown by no device) */
    lyra_plan_notes notes;                      /* missing GPUs etc. */
    int n_windowed;                             /* sliding-window layers */
    int32_t window;                             /* their (largest) window */
    uint64_t kv_all;                            /* KV bytes of every layer */
    uint64_t kv_unwindowed;                     /* the same without rings (full context) */
    lyra_plan_step step;                        /* the gpu_layers step-down (from -1: none) */
} lyra_plan;

/* Plan model on devs[n_devs] (one "cpu"; GPUs; "disk" added when absent;
 * budgets already set by lyra_plan_budgets) with opts (NULL: defaults). */
int lyra_plan_make(const lyra_plan_model *model, const lyra_plan_device *devs, int n_devs,
                   const lyra_plan_opts *opts, lyra_plan **out, lyra_error *err);
void lyra_plan_free(lyra_plan *p);
/* Index of device id in p->dev, or -1. */
int lyra_plan_device_index(const lyra_plan *p, const char *id);
/* Device id module (canonical name) is planned on, or NULL. */
const char *lyra_plan_module_device(const lyra_plan *p, const char *module);

/* Modules of device index d as ranges: "model.embed_tokens model.layers.0-15";
 * "" when none. Returns the length it needs (as snprintf). */
size_t lyra_plan_module_ranges(const lyra_plan *p, int d, char *buf, size_t cap);
/* {"ctx":N,"batch":N,"devices":[{"id","kind","backend","free","reserve",
 * "budget","weights","kv","scratch","total"}...],"map":{module: id, ...}},
 * and after a step-down "fallback":[{"phase":"load","device","asked","free",
 * "what":"gpu","from","to"}] (the form of lyra plan --probe's steps). */
json_t *lyra_plan_json(const lyra_plan *p);
/* One device object of that JSON: id, kind, backend, free, reserve, budget,
 * and with u (may be NULL) weights, kv, scratch, total ("lyra devices --json"
 * adds "name"). NULL if out of memory. */
json_t *lyra_plan_device_json(const lyra_plan_device *d, const lyra_plan_usage *u);
/* The same, compact, '\n'-terminated; malloc'd (free()), NULL if out of memory. */
char *lyra_plan_json_string(const lyra_plan *p);
/* A table for people, one row per device (and a line comparing the KV cache
 * with and without rings when the model has sliding-window layers);
 * malloc'd (free()). */
char *lyra_plan_table(const lyra_plan *p);

/* ------------------------------------------------------------------ ranks */

/* One MPI rank's devices as the planner sees them (budgets set by
 * lyra_plan_budgets with that rank's max_memory and reserve): GPUs, cpu, disk. */
typedef struct lyra_plan_rank {
    int n_devices;                              /* <= LYRA_PLAN_MAX_DEVICES */
    lyra_plan_device dev[LYRA_PLAN_MAX_DEVICES];/* [n_devices] */
} lyra_plan_rank;

/* The split of model over ranks[n_ranks] (plan_ranks.c, docs/distributed.md):
 * module_rank[i] (n_modules) is the rank of module i; each rank one
 * consecutive run with at least one layer, rank 0 the embedding, the last
 * rank the head. Fast devices first: when the model fits on the GPUs of all
 * ranks, the ranks' shares follow their GPU budgets (balanced: the smallest
 * common fraction of every GPU budget; opts->strategy sequential: rank 0's
 * GPUs full, then rank 1's, ...); else every GPU full and the CPUs filled the
 * same way; else every rank full and the rest on the last rank's disk. A
 * share fits a rank when lyra_plan_make (opts, the other ranks' modules
 * costing nothing) puts it on the allowed devices. More ranks than layers is
 * LYRA_ERR_INPUT. */
int lyra_plan_ranks(const lyra_plan_model *model, const lyra_plan_rank *ranks, int n_ranks,
                    const lyra_plan_opts *opts, int *module_rank, lyra_error *err);

/* ------------------------------------------------------- Llama (arch/llama.h) */
struct lyra_llama;
/* The modules of a loaded Llama with the runtime's exact accounting: tensors
 * from the module weights (rope_freqs.weight as an extra), KV per position
 * for kv_type (0 = F16, 1 = F32, lyra_kv_type), scratch as
 * lyra_llama_buffers_bytes for n_batch tokens. Pass the batch the runtime
 * will use (it clamps n_batch to n_ctx). Release with lyra_plan_model_release. */
int lyra_plan_model_from_llama(const struct lyra_llama *a, int n_batch, int kv_type,
                               lyra_plan_model *out, lyra_error *err);
void lyra_plan_model_release(lyra_plan_model *m);

#endif
