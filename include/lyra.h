/* lyra.h: the public C API of liblyra, a local LLM runtime.
 *
 * Conventions:
 *  - Status: every fallible call returns an int status, LYRA_OK (0) or one of
 *    the exit codes below, and fills a caller-provided lyra_error (may be
 *    NULL) with one line "WHERE: WHAT".
 *  - Constructors: int lyra_X_new/open(..., lyra_X **out, lyra_error *err);
 *    *out is set on success (NULL on failure). Objects are opaque and freed
 *    by their *_free function (NULL is accepted). The documented exceptions
 *    return the object itself: lyra_detok_new, lyra_sampler_new and
 *    lyra_kwargs_new (they can only run out of memory: NULL), and
 *    lyra_load_pipeline (NULL with err filled; lyra_pipeline_open is the
 *    same with a status).
 *  - Outputs: text goes into caller-owned buffers (buf, cap) and the call
 *    returns the text's full length, as snprintf does (a result > cap, or
 *    >= cap where the text is NUL-terminated, means it was cut); only
 *    lyra_detok_feed and lyra_detok_flush return the bytes written. Token
 *    lists and generated texts the library allocates are malloc'd and freed
 *    by the caller with free() (said at each call). Pointers returned by
 *    getters (lyra_version, lyra_get_logits, lyra_pipeline_model) stay owned
 *    by the library.
 *  - Only the functions below are exported by liblyra.so (LYRA_API).
 *  - No global state but the log sink: two models in one process are
 *    independent; backend settings come from lyra_backend_params (by
 *    default from the environment, read at lyra_model_open).
 *
 * Threads: the library starts its own worker threads; its objects are not
 * locked. A model and the contexts made from it are used by one thread at a
 * time (lyra_eval on two contexts of one model must not overlap: they share
 * the model's devices, and the fallback may move the model's layers). The
 * vocabulary never changes after lyra_model_open, so the tokenizer calls
 * (lyra_tokenize, lyra_token_*, lyra_model_meta_str, a lyra_detok of the
 * model) may run on any threads at once, also while another thread
 * evaluates, but not after lyra_model_free has begun. Samplers, detoks,
 * kwargs and pipelines are used by one thread at a time each (but for
 * lyra_pipeline_cancel, callable from anywhere while one runs); different
 * objects (and different models) may be used on different threads at once.
 * lyra_log_set and the log sink are safe from any thread (one mutex; the
 * sink is called with it held, one line at a time, so it must not call into
 * lyra). lyra_version, lyra_build_features and the *_default_params calls
 * may be called anywhere.
 *
 * A minimal program:
 *   lyra_error err; lyra_model *m; lyra_context *c;
 *   if (lyra_model_open("model.gguf", NULL, &m, &err)) { puts(err.msg); ... }
 *   lyra_context_params cp = lyra_context_default_params();
 *   lyra_context_new(m, &cp, &c, &err);
 *   ... lyra_tokenize(), lyra_eval(), lyra_get_logits(), lyra_sampler_sample() ...
 */
#ifndef LYRA_H
#define LYRA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the exported functions (liblyra.so is built with hidden visibility). */
#if defined(__GNUC__) || defined(__clang__)
#define LYRA_API __attribute__((visibility("default")))
#else
#define LYRA_API
#endif

#define LYRA_VERSION "0.1.0"
/* 2: the pipeline; 3: lyra_backend_params, the vocabulary and metadata
 * accessors, lyra_pipeline_open;
 * 4: typed device settings (device map entries, budgets, gpu_layers,
 * tensor_split, strategy enum) and the geometry contexts inherit;
 * 5: lyra_error.kind, lyra_api_version, per-call generation settings and
 * results (lyra_pipeline_generate_ex), chat from a message list
 * (lyra_pipeline_chat_messages), lyra_pipeline_cancel, lyra_pipeline_config;
 * 6: several sequences per context (lyra_context_params.n_seq), batched
 * evaluation (lyra_batch, lyra_decode, lyra_get_logits_ith), per-sequence
 * lyra_context_seq_pos / lyra_context_seq_truncate;
 * 7: sessions (lyra_session_save/load, lyra_pipeline_session_*,
 * lyra_pipeline_n_evaluated, lyra_free, lyra_backend_params.fail_io);
 * 8: the engine (lyra_engine_*: concurrent requests on one model, batched,
 * with per-request sessions) */
#define LYRA_API_VERSION 8

/* Status codes; they are also the CLI's exit codes. */
enum {
    LYRA_OK = 0,
    LYRA_ERR_RUNTIME = 1,       /* failure not caused by input: I/O, internal */
    LYRA_ERR_INPUT = 2,         /* invalid flags, env vars, model files, configs */
    LYRA_ERR_OOM = 3,           /* out of memory with no way left */
    LYRA_ERR_INTERRUPTED = 130, /* interrupted (SIGINT) */
};

/* What an error is about (lyra_error.kind), for front ends that map errors
 * to their own classes (the Python package's exceptions). The pipeline and
 * kwargs calls set it; elsewhere it is LYRA_KIND_OTHER. */
typedef enum lyra_error_kind {
    LYRA_KIND_OTHER = 0,
    LYRA_KIND_CONFIG = 1,          /* a config file, a setting's value, its discovery */
    LYRA_KIND_UNKNOWN_KEY = 2,     /* a keyword argument lyra does not know (here) */
    LYRA_KIND_MODEL_NOT_FOUND = 3, /* model_id names no model file */
    LYRA_KIND_MODEL = 4,           /* the model file or its placement failed at open */
    LYRA_KIND_ARGUMENT = 5         /* a call's argument: task, prompt, messages */
} lyra_error_kind;

/* One error: the status code, a one-line message "WHERE: WHAT" and (API
 * version 5) what it is about. */
typedef struct lyra_error {
    int code;
    char msg[1024];
    int kind; /* lyra_error_kind */
} lyra_error;

/* Library version string, and the build features ("avx2 avx512 no-CUDA"). */
LYRA_API const char *lyra_version(void);
/* LYRA_API_VERSION of the library (a binding checks the one it loaded). */
LYRA_API int lyra_api_version(void);
LYRA_API const char *lyra_build_features(void);
/* Free memory the library allocated for the caller (token lists, texts,
 * session buffers): the same as free(), for bindings that cannot call the
 * C library's free. NULL is accepted. */
LYRA_API void lyra_free(void *ptr);

/* -------------------------------------------------------------------- log */
/* Library messages (notes, warnings) go to one sink: by default stderr at
 * level WARN and above. The CLI sets it from -q/-v/LYRA_LOG. */
typedef enum lyra_log_level {
    LYRA_LOG_ERROR = 0, LYRA_LOG_WARN = 1, LYRA_LOG_INFO = 2, LYRA_LOG_DEBUG = 3
} lyra_log_level;
typedef void (*lyra_log_fn)(lyra_log_level level, const char *line, void *user);
/* fn NULL = stderr. Messages above max_level are dropped. Safe from any
 * thread; the sink gets one line at a time under the library's log mutex
 * (so it must not call into lyra), and is not called once this returns. */
LYRA_API void lyra_log_set(lyra_log_fn fn, lyra_log_level max_level, void *user);

/* ------------------------------------------------------------------ model */
typedef struct lyra_model lyra_model;
typedef struct lyra_context lyra_context;

/* Backend settings: what the environment variables of the same names set
 * when a model is opened without them (docs/api.md lists them).
 * Strings are borrowed for the call they are passed to; values are checked
 * there and a bad one fails with LYRA_ERR_INPUT, the message naming the
 * variable ("LYRA_SIM_GPUS: ..."), as for the environment. */
typedef struct lyra_backend_params {
    const char *sim_gpus;     /* LYRA_SIM_GPUS: simulated GPUs "SIZE[@REPORTED],..."
                                 (e.g. "6GiB,500KiB@64MiB") replacing the CUDA GPUs;
                                 NULL: none (the CUDA GPUs); "": no GPU at all */
    const char *cuda_devices; /* LYRA_CUDA_DEVICES: CUDA ordinals to use ("0,1"; "0,0"
                                 splits card 0 in two); NULL: every card; "": none */
    const char *cpu_path;     /* LYRA_CPU: CPU kernels "scalar", "avx2" or "avx512";
                                 NULL or "": the best this CPU runs */
    const char *fail_alloc;   /* LYRA_FAIL_ALLOC: fault injection "ID:N[+],..." (the N-th
                                 allocation on device ID fails; with +: also every later
                                 one); NULL or "": none */
    int alloc_stats;          /* LYRA_ALLOC_STATS (set and not "0"): 1 logs each device's
                                 allocation count and peak (WARN) at lyra_model_free */
    const char *fail_io;      /* LYRA_FAIL_IO: fault injection of the session writes
                                 "OP:N[+],..." (OP open, write, fsync or rename: its N-th
                                 call, counted per model, fails with EIO; with +: also
                                 every later one); NULL or "": none (API version 7) */
} lyra_backend_params;

/* Everything off: no simulated GPU, every CUDA card, the best CPU kernels. */
LYRA_API lyra_backend_params lyra_backend_default_params(void);
/* The settings the environment gives now (the default of lyra_model_open);
 * the strings point into the environment. */
LYRA_API lyra_backend_params lyra_backend_params_from_env(void);

/* KV cache element type (lyra_model_params, lyra_context_params). */
typedef enum lyra_kv_type {
    LYRA_KV_DEFAULT = 0, /* model: F16; context: the model's */
    LYRA_KV_F16 = 1,
    LYRA_KV_F32 = 2
} lyra_kv_type;

/* Where the weights go (docs/sharding.md). Devices are the GPUs (0, 1, ...;
 * simulated ones from LYRA_SIM_GPUS, which replaces CUDA when set), the CPU
 * and the disk tier (modules run on the CPU straight from the file mapping,
 * released after use). At open, the planner puts every module
 * (model.embed_tokens, model.layers.N, model.norm, lm_head) on a device under
 * the memory budgets, counting weights, the KV cache for n_ctx positions and
 * scratch for n_batch tokens exactly; the budgets then cap what lyra
 * allocates on each device.
 *
 * The device fields are typed: the library parses no text and reads no file
 * for them (the CLI's flags, config files and lyra_kwargs_set parse their
 * strings into these fields; examples/device_map.c sets them directly). Bad
 * values fail with LYRA_ERR_INPUT naming the field and the entry, before any
 * weight is read. */
typedef enum lyra_device_strategy {
    LYRA_DEVICE_MAP_AUTO = 0,       /* = balanced (the default) */
    LYRA_DEVICE_MAP_BALANCED,       /* GPUs in proportion to their budgets, then cpu, disk */
    LYRA_DEVICE_MAP_BALANCED_LOW_0, /* as balanced, GPU 0 gets what the others cannot take */
    LYRA_DEVICE_MAP_SEQUENTIAL,     /* fill GPU 0, 1, ..., then the cpu, then disk */
    LYRA_DEVICE_MAP_CPU,            /* no GPUs: the cpu, then disk */
    LYRA_DEVICE_MAP_GPU,            /* everything on GPU device_gpu */
    LYRA_DEVICE_MAP_EXPLICIT        /* the explicit map device_map[n_device_map] */
} lyra_device_strategy;

/* Device numbers in maps and budgets: a GPU index (0, 1, ...), the CPU, the
 * disk tier (maps only). */
#define LYRA_DEVICE_CPU (-1)
#define LYRA_DEVICE_DISK (-2)
/* A device of MPI rank r (docs/distributed.md; "0@1" is GPU 0 of rank 1,
 * "cpu@2" the CPU of rank 2) in device maps, max_memory and reserve: d (a GPU
 * index, LYRA_DEVICE_CPU or LYRA_DEVICE_DISK) encoded with r; a value without
 * a rank has LYRA_DEVICE_RANK -1. */
#define LYRA_DEVICE_AT(d, r) (((r) + 1) * 4096 + (d) + 2)
#define LYRA_DEVICE_RANK(v) ((v) >= 4096 ? (v) / 4096 - 1 : -1)
#define LYRA_DEVICE_LOCAL(v) ((v) >= 4096 ? (v) % 4096 - 2 : (v))

/* One entry of an explicit map: a module name or a dot-boundary prefix
 * ("" covers all, "model.layers" every layer; Hugging Face and GGUF
 * spellings accepted; the longest key wins) and its device. */
typedef struct lyra_device_map_entry {
    const char *module; /* must outlive lyra_model_open */
    int32_t device;     /* GPU index, LYRA_DEVICE_CPU or LYRA_DEVICE_DISK (or
                           LYRA_DEVICE_AT one of them and a rank) */
} lyra_device_map_entry;

/* A number of bytes for one device (max_memory, reserve). */
typedef struct lyra_device_bytes {
    int32_t device;     /* GPU index or LYRA_DEVICE_CPU (or LYRA_DEVICE_AT one and a rank) */
    uint64_t bytes;
} lyra_device_bytes;

#define LYRA_GPU_LAYERS_ALL (-1)   /* gpu_layers: every layer (as any N >= the layer count) */
#define LYRA_GPU_LAYERS_UNSET (-2) /* gpu_layers: not given (the strategy decides) */
#define LYRA_MAX_TENSOR_SPLIT 16   /* tensor_split entries at most */

typedef struct lyra_model_params {
    int use_mmap; /* 1 (default): weights are used in place from the mapping;
                     0: CPU weights are copied into allocated memory */
    int use_mlock;            /* 1: lock the CPU's mapped weights in RAM (failure: a warning) */
    lyra_device_strategy device_strategy; /* default LYRA_DEVICE_MAP_AUTO */
    int32_t device_gpu;       /* LYRA_DEVICE_MAP_GPU: the GPU index */
    const lyra_device_map_entry *device_map; /* LYRA_DEVICE_MAP_EXPLICIT: [n_device_map] */
    int32_t n_device_map;
    const char *device_map_source; /* names the device map setting in messages (a
                                 file path, "device_map"); NULL: "device_map" */
    const lyra_device_bytes *max_memory; /* [n_max_memory] budgets (reserve 0) */
    int32_t n_max_memory;
    const lyra_device_bytes *reserve; /* [n_reserve] memory kept free on devices
                                 without a max_memory entry (default: cpu
                                 max(1 GiB, 10%), CUDA max(512 MiB, 5%), simulated 0) */
    int32_t n_reserve;
    int32_t gpu_layers;       /* embedding + first N layers on GPUs, LYRA_GPU_LAYERS_ALL,
                                 or LYRA_GPU_LAYERS_UNSET (default) */
    const float *tensor_split;/* [n_tensor_split] GPU layer proportions (3, 1), each
                                 0..1000000, used to 6 decimals; needs strategy auto
                                 or balanced */
    int32_t n_tensor_split;   /* 0: not given; at most LYRA_MAX_TENSOR_SPLIT */
    /* The geometry the model is planned for; contexts inherit what they leave
     * 0. Defaults (in one place): n_ctx min(the model's context_length, 4096),
     * n_batch 512 (at most n_ctx), kv_type F16, n_threads physical cores. */
    int32_t n_ctx;            /* context the KV cache is planned for; 0 = default */
    int32_t n_batch;          /* tokens per forward pass planned for; 0 = default */
    lyra_kv_type kv_type;     /* KV cache type planned for; 0 = default (F16) */
    int32_t n_threads;        /* threads of the CPU and each simulated GPU; 0 = default */
    int fallback;             /* 1 (default): progressive fallback (docs/fallback.md):
                                 when a GPU allocation fails at load or during
                                 generation, layers step down to the CPU (and CPU
                                 layers to disk) instead of failing; a gpu_layers
                                 count that does not fit the budgets is planned
                                 smaller (a "fallback: at plan" step); a map naming a
                                 GPU that is not here puts its modules on the CPU
                                 with a note. 0: these are errors (exit 3 / 2) */
    int fallback_policy;      /* lyra_fallback_policy: LAYERS (default) or CONTEXT
                                 (shrink the context first); NONE = fallback 0 */
    int32_t gpu_layers_fallback; /* first GPU layer count tried after a failure
                                 (or when gpu_layers does not fit the plan);
                                 -1 (default): none, binary search at once */
    int32_t min_ctx;          /* CONTEXT policy: n_ctx is halved down to this; 0 = 2048 */
    int probe;                /* 1: run the load search with real allocations but
                                 read no weight and keep nothing allocated
                                 (lyra plan --probe); the model only plans */
    int load_in_bits;         /* on-load quantization of F32/F16/BF16 weights:
                                 0 (default) as stored, 8 (Q8_0) or 4 (Q4_K) */
    int32_t kv_chunk;         /* the KV cache grows in chunks of this many positions
                                 (each an allocation per layer); 0 = 256 */
    int dtype;                /* Hugging Face folders (docs/hf.md): the type of the
                                 weight matrices in memory: 0 (default) as stored,
                                 1 float32, 2 float16, 3 bfloat16 */
    const lyra_backend_params *backend; /* NULL (default): from the environment
                                 (lyra_backend_params_from_env at lyra_model_open) */
    int32_t n_seq;            /* sequences the KV cache is planned for (each up to
                                 n_ctx positions: lyra serve's --parallel); contexts
                                 leaving n_seq 0 get this many; 0 = 1 */
    int fallback_across_ranks; /* under mpirun (docs/distributed.md): 1: a rank that
                                 cannot hold its share, even after stepping down on
                                 its own devices, hands its last modules to the next
                                 rank; 0 (default): that is an error */
} lyra_model_params;

typedef enum lyra_fallback_policy {
    LYRA_FALLBACK_LAYERS = 0, LYRA_FALLBACK_CONTEXT = 1, LYRA_FALLBACK_NONE = 2
} lyra_fallback_policy;

LYRA_API lyra_model_params lyra_model_default_params(void);

/* One step of the progressive fallback (docs/fallback.md). */
typedef enum lyra_fallback_phase { LYRA_PHASE_LOAD = 0, LYRA_PHASE_GENERATE = 1 } lyra_fallback_phase;
typedef struct lyra_fallback_step {
    int phase;          /* lyra_fallback_phase */
    int32_t token;      /* generate: tokens in the context then; load: -1 */
    char device[16];    /* device whose allocation failed ("0", "cpu") */
    uint64_t asked;     /* bytes it was asked for */
    uint64_t free;      /* bytes it could still give then (free memory within its budget) */
    char what[8];       /* what from_k / to_k count: "gpu" (layers on GPUs), "cpu" (layers
                           resident on the CPU, the rest going to disk), "ctx" (context) */
    int32_t from_k;     /* before the step */
    int32_t to_k;       /* after it */
} lyra_fallback_step;

/* Open a GGUF file (or the first part of a split GGUF). Reads and validates the
 * metadata and tensor table, maps the weights. params may be NULL. */
LYRA_API int lyra_model_open(const char *path, const lyra_model_params *params,
                             lyra_model **out, lyra_error *err);
LYRA_API void lyra_model_free(lyra_model *model);

LYRA_API const char *lyra_model_arch(const lyra_model *model); /* "llama", "qwen2", "gemma3", ... */
LYRA_API int32_t lyra_model_n_vocab(const lyra_model *model);
LYRA_API int32_t lyra_model_n_layer(const lyra_model *model);
LYRA_API int32_t lyra_model_n_embd(const lyra_model *model);
LYRA_API int32_t lyra_model_n_ctx_train(const lyra_model *model);
/* Weight bytes used (a tied embedding once). */
LYRA_API uint64_t lyra_model_n_bytes(const lyra_model *model);
/* Weight elements (parameters); like n_bytes, a tied embedding counts once. */
LYRA_API uint64_t lyra_model_n_params(const lyra_model *model);
/* Context positions the load fitted (n_ctx, or less after the context policy). */
LYRA_API int32_t lyra_model_n_ctx(const lyra_model *model);
/* The fallback history: steps taken at load and during generation, oldest first. */
LYRA_API int lyra_model_fallback_steps(const lyra_model *model);
/* Step i (0-based); LYRA_ERR_INPUT when out of range. */
LYRA_API int lyra_model_fallback_step(const lyra_model *model, int i, lyra_fallback_step *out);
/* Where every module is now, as Hugging Face's hf_device_map JSON text:
 * {"model.embed_tokens":"0","model.layers.0":"0",...,"lm_head":"cpu"} (values
 * are device ids or "disk"). Returns the bytes needed (as snprintf). */
LYRA_API size_t lyra_model_device_map(const lyra_model *model, char *buf, size_t cap);
/* A string of the model's GGUF metadata by key ("general.name",
 * "tokenizer.chat_template"), NUL-terminated into buf[cap] (cut to cap - 1
 * bytes; buf may be NULL when cap is 0). Returns the string's length, or -1
 * (buf untouched) when the key is absent or its value is not a string. */
LYRA_API int64_t lyra_model_meta_str(const lyra_model *model, const char *key, char *buf,
                                     size_t cap);
/* The model's chat template (tokenizer.chat_template) as lyra_model_meta_str. */
LYRA_API int64_t lyra_model_chat_template(const lyra_model *model, char *buf, size_t cap);

/* --------------------------------------------------------------- tokenizer */
/* Tokenize len bytes of text. *out is malloc'd (free with free()), *n_out its
 * length. add_bos: 1 add, 0 don't, -1 as the model's metadata says. */
LYRA_API int lyra_tokenize(const lyra_model *model, const char *text, size_t len,
                           int add_bos, int parse_special, int32_t **out,
                           size_t *n_out, lyra_error *err);
/* The bytes of one token (byte tokens <0xNN> give that byte; special tokens
 * give "" unless render_special). Returns the byte count, written up to cap. */
LYRA_API size_t lyra_token_to_piece(const lyra_model *model, int32_t token,
                                    int render_special, char *buf, size_t cap);
LYRA_API int32_t lyra_token_bos(const lyra_model *model); /* -1 when none */
LYRA_API int32_t lyra_token_eos(const lyra_model *model);
LYRA_API int lyra_token_is_eog(const lyra_model *model, int32_t token);
LYRA_API int lyra_add_bos_default(const lyra_model *model);
/* The token's text as stored in the vocabulary ("<s>", "<|im_end|>", "\xe2\x96\x81the"),
 * not NUL-terminated. Returns its length (0 for an id out of range) and
 * writes up to cap bytes of it. */
LYRA_API size_t lyra_token_text(const lyra_model *model, int32_t token, char *buf, size_t cap);
/* The token whose vocabulary text is exactly text[0..len), -1 if none. */
LYRA_API int32_t lyra_token_find(const lyra_model *model, const char *text, size_t len);

/* Streaming detokenizer: feeds token pieces and emits only complete, valid
 * UTF-8. Bytes of a character split over several tokens are held back until
 * it is complete; ill-formed bytes (a lone continuation byte, an overlong or
 * surrogate form, a sequence cut short) become U+FFFD, one per maximal
 * invalid subpart (as Python's errors="replace"); an incomplete character at
 * the end becomes one U+FFFD on flush. lyra_token_to_piece gives the raw
 * bytes. */
typedef struct lyra_detok lyra_detok;
LYRA_API lyra_detok *lyra_detok_new(const lyra_model *model); /* NULL: out of memory */
/* Append the piece of token; write the text now decided (whole characters,
 * U+FFFD for bytes that cannot become valid) to buf. Returns the byte count
 * (at most cap; what does not fit comes out on the next feed or flush). */
LYRA_API size_t lyra_detok_feed(lyra_detok *d, int32_t token, char *buf, size_t cap);
LYRA_API size_t lyra_detok_flush(lyra_detok *d, char *buf, size_t cap);
LYRA_API void lyra_detok_free(lyra_detok *d);

/* ---------------------------------------------------------------- context */
/* A context's geometry: 0 (all fields, the default) inherits the model's
 * (lyra_model_params): n_ctx the context the model's load fitted, n_batch
 * (at most n_ctx), kv_type and n_threads as the model was opened with. */
typedef struct lyra_context_params {
    int32_t n_ctx;       /* context size; 0 = the model's */
    int32_t n_batch;     /* prompt tokens per forward pass; 0 = the model's */
    int32_t n_threads;   /* 0 = the model's */
    lyra_kv_type kv_type;/* LYRA_KV_DEFAULT = the model's */
    int32_t n_seq;       /* sequences (each its own KV cache), 1..256; 0 = 1 */
} lyra_context_params;
/* KV chunks follow the model's kv_chunk. An n_ctx (given or inherited)
 * larger than the context the load fitted after the context policy shrank it
 * is clamped to that (with a note). When the progressive fallback is on and a KV
 * chunk or scratch allocation fails during lyra_eval, layers move off the
 * failing device between two tokens (GPU -> CPU, CPU -> disk) and evaluation
 * goes on with the same results; the step is in the model's history. */

LYRA_API lyra_context_params lyra_context_default_params(void);
LYRA_API int lyra_context_new(lyra_model *model, const lyra_context_params *params,
                              lyra_context **out, lyra_error *err);
LYRA_API void lyra_context_free(lyra_context *ctx);
LYRA_API int32_t lyra_context_n_ctx(const lyra_context *ctx);
LYRA_API int32_t lyra_context_pos(const lyra_context *ctx); /* tokens in the KV cache */
/* Forget positions >= pos (pos 0: empty the cache). A model with sliding-window
 * layers keeps only a ring of their last positions: when the window before pos
 * was overwritten since, the whole cache is emptied (lyra_context_pos says
 * where evaluation continues). */
LYRA_API void lyra_context_truncate(lyra_context *ctx, int32_t pos);

/* Evaluate n tokens at the next positions, in batches of n_batch. With
 * logits_all the logits of every one of the n positions are kept, else only
 * the last one's. Fails with LYRA_ERR_INPUT when the context would overflow. */
LYRA_API int lyra_eval(lyra_context *ctx, const int32_t *tokens, int32_t n,
                       int logits_all, lyra_error *err);
/* Logits (n_vocab floats) of the i-th token of the last lyra_eval (i = -1:
 * the last one). NULL if i was not kept. After lyra_decode: of the batch's
 * token i (lyra_get_logits_ith). */
LYRA_API const float *lyra_get_logits(const lyra_context *ctx, int32_t i);

/* ---- several sequences ----
 * A context of n_seq sequences holds one KV cache per sequence (grown chunk
 * by chunk as it fills: an idle sequence costs nothing). lyra_eval,
 * lyra_context_pos and lyra_context_truncate work on sequence 0. */
LYRA_API int32_t lyra_context_n_seq(const lyra_context *ctx);
LYRA_API int32_t lyra_context_seq_pos(const lyra_context *ctx, int32_t seq); /* -1: no such seq */
/* lyra_context_truncate for sequence seq (ignored when out of range). */
LYRA_API void lyra_context_seq_truncate(lyra_context *ctx, int32_t seq, int32_t pos);

/* A batch of tokens from several sequences for one lyra_decode (arrays owned
 * by the caller). Token i of sequence seq_id[i] goes at position pos[i]: each
 * sequence's tokens, in batch order, continue its cache (the first at
 * lyra_context_seq_pos, then +1 each); prompt chunks and single decode tokens
 * may be mixed. logits[i] != 0 keeps token i's logits; logits NULL keeps the
 * last token of each sequence in the batch. */
typedef struct lyra_batch {
    int32_t n_tokens;
    const int32_t *token;   /* [n_tokens] */
    const int32_t *pos;     /* [n_tokens] */
    const int32_t *seq_id;  /* [n_tokens] 0..n_seq-1 */
    const int8_t *logits;   /* [n_tokens] or NULL */
} lyra_batch;
/* Evaluate a batch: forward passes of up to n_batch tokens, each over every
 * sequence in it at once (each weight read once per pass; a token attends to
 * its own sequence only). A sequence's logits are bitwise the same as when
 * it is evaluated alone (lyra_eval, or a batch with nothing else in it),
 * however the batch is made up. Input errors (LYRA_ERR_INPUT: a bad token,
 * sequence or position, a sequence overflowing n_ctx) change nothing. Out of
 * memory for a KV chunk steps down as lyra_eval does, every sequence's cache
 * moving with its layer. */
LYRA_API int lyra_decode(lyra_context *ctx, const lyra_batch *batch, lyra_error *err);
/* Logits (n_vocab floats) of token i (-1: the last) of the last lyra_decode,
 * NULL if not kept. */
LYRA_API const float *lyra_get_logits_ith(const lyra_context *ctx, int32_t i);

/* Devices in use: count, then per device its id ("cpu", "0"), kind ("cpu",
 * "gpu"), bytes of weights / kv / scratch actually allocated or mapped, and
 * the map line "map: cpu (cpu) model.embed_tokens ... weights 1.1 GiB ...". */
typedef struct lyra_device_usage {
    char id[16];
    char kind[16];
    uint64_t weights, kv, scratch;
} lyra_device_usage;
LYRA_API int lyra_context_n_devices(const lyra_context *ctx);
LYRA_API int lyra_context_device_usage(const lyra_context *ctx, int i, lyra_device_usage *out);
/* The map line(s), one per device, each ending in '\n'. Returns bytes needed. */
LYRA_API size_t lyra_context_map_lines(const lyra_context *ctx, char *buf, size_t cap);
/* Move layer (0-based) with its weights and KV cache to device id ("cpu",
 * "0", ...) between two evaluations; the next lyra_eval gives the same
 * logits as before the move. All memory on the target is allocated before
 * anything is freed: on failure (LYRA_ERR_OOM, LYRA_ERR_INPUT for an unknown
 * layer or device, or a model with several contexts) nothing changes. */
LYRA_API int lyra_context_move_layer(lyra_context *ctx, int32_t layer, const char *device_id,
                                     lyra_error *err);
/* Bytes a decode step reads at position pos (for bandwidth figures): every
 * weight but the embedding table, one embedding row, and the K and V of
 * positions 0..pos in every layer. */
LYRA_API uint64_t lyra_context_bytes_per_token(const lyra_context *ctx, int32_t pos);
/* Op timing (lyra bench --profile): on != 0 starts timing every forward-pass
 * op on the model's devices (counts reset; this costs two clock reads per
 * op), 0 stops it (the untimed ops back). LYRA_OK or LYRA_ERR_OOM. The
 * devices are the model's: not while another thread evaluates with it. */
LYRA_API int lyra_context_profile(lyra_context *ctx, int on, lyra_error *err);
/* The counts since lyra_context_profile(ctx, 1) as a table: per op key
 * (module tag: embed, attn, ffn, norm, head; op; weight type and shape),
 * calls, wall and process CPU milliseconds, each divided by n_tokens, the
 * share of the op time, and GB/s of weights read for matrix products; then
 * the totals per module tag. Returns snprintf's count ("" when off). */
LYRA_API size_t lyra_context_profile_report(const lyra_context *ctx, int32_t n_tokens, char *buf,
                                            size_t cap);
/* n bytes as the map lines print them: one decimal in the largest binary unit
 * giving a value >= 1 ("512.0 B", "1.5 KiB", "1.1 GiB"). Returns snprintf's count. */
LYRA_API size_t lyra_format_bytes(uint64_t n, char *buf, size_t cap);

/* ---------------------------------------------------------------- session */
/* A session file (docs/sessions.md) holds sequence 0's tokens, its KV
 * cache (read from whatever devices its layers live on, stored in a
 * device-independent layout) and, when a sampler is given, the sampler's
 * state (its PRNG and repetition window), under a versioned header naming
 * the model (a fingerprint of its metadata and tensor table), the context
 * geometry and KV type, with checksums. Writes are atomic (a temporary file
 * beside path, fsync, rename, fsync of the directory): path holds the old
 * file or the new one, never a partial one. Loading a file of another model,
 * KV type or geometry, a newer format version, or a truncated or corrupted
 * file is LYRA_ERR_INPUT with one line naming the file and what differs,
 * and changes nothing; restoring evaluates nothing: the next lyra_eval
 * continues as if the saved conversation had never stopped (bitwise equal
 * logits on the CPU). */
typedef struct lyra_sampler lyra_sampler;
/* Save tokens[n_tokens] (what the cache holds: n_tokens must equal
 * lyra_context_pos) and the cache; smp may be NULL. */
LYRA_API int lyra_session_save(lyra_context *ctx, const int32_t *tokens, int32_t n_tokens,
                               const lyra_sampler *smp, const char *path, lyra_error *err);
/* Restore a file saved by lyra_session_save for this model and geometry:
 * the cache (lyra_context_pos becomes *n_tokens), the sampler state when
 * smp is given and the file has one; *tokens (malloc'd, free with lyra_free)
 * and *n_tokens (both may be NULL) receive the tokens. */
LYRA_API int lyra_session_load(lyra_context *ctx, lyra_sampler *smp, const char *path,
                               int32_t **tokens, int32_t *n_tokens, lyra_error *err);

/* ---------------------------------------------------------------- sampler */
typedef struct lyra_sampler_params {
    float temperature;    /* 0 = argmax (lowest id on ties); default 0.8 */
    int32_t top_k;        /* <= 0: off; default 40 */
    float top_p;          /* 1.0: off; default 0.95 */
    float min_p;          /* 0: off; default 0.05 */
    float repeat_penalty; /* 1.0: off; default 1.0 */
    int32_t repeat_last_n;/* default 64 */
    uint64_t seed;
} lyra_sampler_params;

LYRA_API lyra_sampler_params lyra_sampler_default_params(void);
/* NULL: out of memory, or n_vocab <= 0. params may be NULL (the defaults). */
LYRA_API lyra_sampler *lyra_sampler_new(const lyra_sampler_params *params, int32_t n_vocab);
/* Sample from logits (not modified). */
LYRA_API int32_t lyra_sampler_sample(lyra_sampler *s, const float *logits);
/* Record a token in the repetition window (prompt tokens and sampled ones). */
LYRA_API void lyra_sampler_accept(lyra_sampler *s, int32_t token);
LYRA_API void lyra_sampler_reset(lyra_sampler *s);
LYRA_API void lyra_sampler_free(lyra_sampler *s);

/* --------------------------------------------------------------- pipeline */
/* The one-call API (docs/api.md), the analogue of Hugging Face's pipeline():
 * a model, its context and its generation settings from a config file
 * (docs/config.md) and keyword arguments.
 *
 *   lyra_error err;
 *   lyra_kwargs *kw = lyra_kwargs_new();
 *   lyra_kwargs_set(kw, "max_new_tokens", "64", &err);
 *   lyra_pipeline *p = lyra_load_pipeline("model.gguf", "text-generation", NULL, kw, &err);
 *   lyra_kwargs_free(kw);
 *   if (!p) { fprintf(stderr, "%s\n", err.msg); return err.code; }
 *   char *text; lyra_pipeline_generate(p, "Once upon a time", NULL, NULL, &text, &err);
 */
typedef struct lyra_pipeline lyra_pipeline;
typedef struct lyra_kwargs lyra_kwargs;

/* Keyword arguments: config keys by their JSON names, pipeline_kwargs ones
 * bare or as "pipeline_kwargs.NAME" ("max_new_tokens", "temperature", "stop",
 * ...) and every top-level key ("device_map", "max_memory", "load_in_8bit",
 * ...), values as strings the way the command-line flags take them. */
LYRA_API lyra_kwargs *lyra_kwargs_new(void); /* NULL when out of memory */
/* Validated at once (source "api"): LYRA_ERR_INPUT naming the key for an
 * unknown key or a bad value; nothing changes then. "stop" appends. */
LYRA_API int lyra_kwargs_set(lyra_kwargs *kw, const char *key, const char *value, lyra_error *err);
LYRA_API void lyra_kwargs_free(lyra_kwargs *kw);

/* Load a pipeline. model_id: a GGUF path, a directory holding one, or
 * org/name[:TAG] in the local Hugging Face cache; NULL: the config's
 * model_id. task: "text-generation" (or NULL); others are LYRA_ERR_INPUT.
 * config_path: a config file; NULL: discovery (LYRA_MODEL_CONFIG,
 * ./config/model_config.json, $XDG_CONFIG_HOME/lyra/model_config.json).
 * pipeline_kwargs (may be NULL) override the config. Returns NULL on
 * failure, with err->code the exit code and err->msg one line. */
LYRA_API lyra_pipeline *lyra_load_pipeline(const char *model_id, const char *task,
                                           const char *config_path,
                                           const lyra_kwargs *pipeline_kwargs, lyra_error *err);
/* The same with the library's convention: a status, *out on success. */
LYRA_API int lyra_pipeline_open(const char *model_id, const char *task, const char *config_path,
                                const lyra_kwargs *pipeline_kwargs, lyra_pipeline **out,
                                lyra_error *err);

/* Called with each piece of generated text (complete UTF-8, stop strings
 * held back); a non-zero return cancels (the call then returns LYRA_OK with
 * the text so far). */
typedef int (*lyra_token_cb)(const char *piece, size_t len, void *user);

/* Continue prompt (plain text, no template): max_new_tokens, stop and the
 * sampling settings of the config and kwargs. cb may be NULL; *out_text
 * (out_text may be NULL) is the whole continuation, malloc'd. Starts from an
 * empty KV cache. */
LYRA_API int lyra_pipeline_generate(lyra_pipeline *p, const char *prompt, lyra_token_cb cb,
                                    void *user, char **out_text, lyra_error *err);
/* One chat turn: user_message after the turns so far, rendered with the
 * model's chat template (or chat_template) and system_prompt; the KV cache
 * keeps the conversation, so only the new tokens are evaluated. *out_reply
 * (may be NULL) is the reply, malloc'd, without white space around it. */
LYRA_API int lyra_pipeline_chat(lyra_pipeline *p, const char *user_message, lyra_token_cb cb,
                                void *user, char **out_reply, lyra_error *err);
/* Forget the chat turns and empty the KV cache. */
LYRA_API void lyra_pipeline_reset(lyra_pipeline *p);

/* Why a generation ended (lyra_generate_result.stop). */
typedef enum lyra_stop_reason {
    LYRA_STOP_EOG = 0,      /* an end-of-generation token (chat: or end of turn) */
    LYRA_STOP_STRING = 1,   /* a stop string */
    LYRA_STOP_LENGTH = 2,   /* max_new_tokens */
    LYRA_STOP_CONTEXT = 3,  /* the context is full */
    LYRA_STOP_CANCELLED = 4 /* the callback returned non-zero, or lyra_pipeline_cancel */
} lyra_stop_reason;

/* What one generation did. */
typedef struct lyra_generate_result {
    int32_t n_prompt; /* prompt tokens (chat: the rendered conversation) */
    int32_t n_reused; /* of them, found in the KV cache (not evaluated again) */
    int64_t n_gen;    /* tokens generated (an end-of-generation token not counted) */
    int stop;         /* lyra_stop_reason */
} lyra_generate_result;

/* lyra_pipeline_generate with this call's own generation settings:
 * gen_kwargs (may be NULL) holds keys of pipeline_kwargs (max_new_tokens,
 * temperature, do_sample, top_k, top_p, min_p, repetition_penalty, stop) and
 * seed, layered over the pipeline's settings for this call only (a later
 * layer than the load's kwargs: "stop" replaces the list, sampling keys
 * settle as in docs/config.md); any other key is LYRA_ERR_INPUT
 * (LYRA_KIND_UNKNOWN_KEY). Without seed the call samples with the
 * pipeline's seed. res (may be NULL) receives the counts and the stop
 * reason. */
LYRA_API int lyra_pipeline_generate_ex(lyra_pipeline *p, const char *prompt,
                                       const lyra_kwargs *gen_kwargs, lyra_token_cb cb, void *user,
                                       char **out_text, lyra_generate_result *res, lyra_error *err);

/* One chat message: role "system", "user" or "assistant", and its text. */
typedef struct lyra_chat_message {
    const char *role;
    const char *content;
} lyra_chat_message;

/* The assistant's reply to a whole conversation: msgs[n] is an optional
 * system message (else the config's system_prompt) then user and assistant
 * messages alternating, starting and ending with a user message. It
 * replaces the pipeline's conversation (the KV cache still reuses the
 * common prefix with the last one), is rendered with the chat template and
 * answered as lyra_pipeline_chat does (the oldest turns dropped when it does
 * not fit, a warning); afterwards the conversation is msgs plus the reply,
 * which lyra_pipeline_chat continues. gen_kwargs, res: as
 * lyra_pipeline_generate_ex. A bad role or order is LYRA_ERR_INPUT
 * (LYRA_KIND_ARGUMENT) naming the message ("messages[2].role"). */
LYRA_API int lyra_pipeline_chat_messages(lyra_pipeline *p, const lyra_chat_message *msgs, int n,
                                         const lyra_kwargs *gen_kwargs, lyra_token_cb cb,
                                         void *user, char **out_reply, lyra_generate_result *res,
                                         lyra_error *err);

/* Stop the generation running on p before its next token (the call returns
 * LYRA_OK with the text so far, stop reason LYRA_STOP_CANCELLED). The one
 * pipeline call that may be made from another thread, or from a signal
 * handler, while p generates; without a generation running it does nothing
 * (each generation starts uncancelled). */
LYRA_API void lyra_pipeline_cancel(lyra_pipeline *p);

/* The pipeline's effective configuration as JSON text,
 * {"KEY": {"value": V, "source": S}, ...} as `lyra config show --json`
 * prints it, NUL-terminated into buf[cap]; returns the length (as snprintf),
 * 0 when out of memory. */
LYRA_API size_t lyra_pipeline_config(const lyra_pipeline *p, char *buf, size_t cap);
/* The model and context (owned by the pipeline), for lyra_model_device_map,
 * lyra_model_fallback_step, lyra_context_map_lines, lyra_context_pos, ... */
LYRA_API lyra_model *lyra_pipeline_model(lyra_pipeline *p);
LYRA_API lyra_context *lyra_pipeline_context(lyra_pipeline *p);
LYRA_API void lyra_pipeline_free(lyra_pipeline *p);

/* Sessions of a pipeline (docs/sessions.md): a session file as
 * lyra_session_save writes it, with the pipeline's conversation (the system
 * prompt and the turns) in it too. After a load, lyra_pipeline_chat
 * continues the restored conversation and lyra_pipeline_chat_messages with
 * messages extending it evaluates only the new tokens (res.n_reused: the
 * restored prefix). A failed load (LYRA_ERR_INPUT: another model, KV type
 * or geometry, a newer version, a truncated or corrupted file) leaves the
 * pipeline as it was (but for running out of memory while the cache is
 * restored: then the pipeline is reset). The _mem forms write to a buffer
 * (*buf malloc'd, free with lyra_free) and read from one. */
LYRA_API int lyra_pipeline_session_save(lyra_pipeline *p, const char *path, lyra_error *err);
LYRA_API int lyra_pipeline_session_load(lyra_pipeline *p, const char *path, lyra_error *err);
LYRA_API int lyra_pipeline_session_save_mem(lyra_pipeline *p, void **buf, size_t *len, lyra_error *err);
LYRA_API int lyra_pipeline_session_load_mem(lyra_pipeline *p, const void *buf, size_t len,
                                            lyra_error *err);
/* Tokens the model evaluated for p since it opened (prompt tokens not found
 * in the cache, and each generated token fed back): a restored session adds
 * nothing. */
LYRA_API uint64_t lyra_pipeline_n_evaluated(const lyra_pipeline *p);

/* ----------------------------------------------------------------- engine */
/* Concurrent generation on one model (docs/api.md), what `lyra serve` runs
 * on: n_slots sequences of one context, one engine thread running
 * continuous batching (each step evaluates every running request's tokens
 * in one lyra_decode), a FIFO queue for requests waiting for a slot, and
 * prefix reuse (a request takes the free slot whose KV cache shares the
 * longest prefix with its prompt). A request's tokens do not depend on what
 * else runs (its own seeded sampler; a sequence's logits do not depend on
 * the batch). All calls below are safe from any thread; the text callback
 * runs on the engine thread (it must not block for long, nor call
 * lyra_engine_free). While an engine is open on a pipeline, the pipeline
 * must not generate (they share the model); its tokenizer calls may run. */
typedef struct lyra_engine lyra_engine;
typedef struct lyra_engine_req lyra_engine_req;

typedef struct lyra_engine_params {
    int32_t n_slots;  /* sequences running at once (1..256); default 4 */
    int32_t queue;    /* requests waiting at most (submit fails beyond); default 1024 */
} lyra_engine_params;
LYRA_API lyra_engine_params lyra_engine_default_params(void);

/* Open an engine on the pipeline's model (p must outlive it): a context of
 * n_slots sequences of the pipeline's context size, its chat template,
 * system prompt and template stops. */
LYRA_API int lyra_engine_open(lyra_pipeline *p, const lyra_engine_params *params, lyra_engine **out,
                              lyra_error *err);
/* Stop (running and queued requests fail: "shutting down") and free. NULL ok. */
LYRA_API void lyra_engine_free(lyra_engine *e);
/* Context positions of one slot (a prompt must be shorter). */
LYRA_API int32_t lyra_engine_n_ctx(const lyra_engine *e);

/* One request: exactly one of messages (chat: rendered with the template,
 * as lyra_pipeline_chat_messages takes them: an optional system message
 * (else the pipeline's system prompt), then user and assistant messages
 * alternating, ending with a user message; the template's stops apply and
 * the reply's white space at both ends is trimmed), prompt (plain text,
 * tokenized with BOS) or tokens. */
typedef struct lyra_engine_request {
    const lyra_chat_message *messages; int32_t n_messages;
    const char *prompt;
    const int32_t *tokens; int32_t n_tokens;
    lyra_sampler_params sampler;   /* seed included */
    int64_t max_tokens;            /* -1: until an end token or a full context */
    const char *const *stops;      /* [n_stops] stop strings (at most 8), copied */
    int32_t n_stops;
    lyra_token_cb cb;              /* each piece of text (engine thread); non-zero cancels; may be NULL */
    void *user;
    const void *session;           /* a state from lyra_engine_req_session (copied), or NULL: when */
    size_t session_len;            /* its tokens share a longer prefix with the prompt than the slot's
                                      cache, it is restored into the slot (nothing evaluated again) */
    int keep_session;              /* 1: at the end, the slot's state is kept for lyra_engine_req_session */
} lyra_engine_request;
/* Defaults: nothing to say; e's pipeline's sampling settings (seed
 * included) and max_new_tokens (e NULL: the sampler's defaults, -1). */
LYRA_API lyra_engine_request lyra_engine_default_request(const lyra_engine *e);

/* Queue a request; *out is its handle (free with lyra_engine_req_free).
 * LYRA_ERR_INPUT for a bad request (the messages, a prompt longer than the
 * context), LYRA_ERR_RUNTIME when the queue is full or the engine stops. */
LYRA_API int lyra_engine_submit(lyra_engine *e, const lyra_engine_request *rq, lyra_engine_req **out,
                                lyra_error *err);
/* Wait until the request has more than `have` bytes of text or is over,
 * at most timeout_s seconds (< 0: no limit). Returns 1 when it is over. */
LYRA_API int lyra_engine_req_wait(lyra_engine_req *r, size_t have, double timeout_s);
/* The text so far from byte offset: min(cap, length - offset) bytes into
 * buf (not NUL-terminated); returns the whole length so far. Pieces are
 * complete UTF-8, stop strings held back. */
LYRA_API size_t lyra_engine_req_text(lyra_engine_req *r, size_t offset, char *buf, size_t cap);
/* Stop it before its next token (it ends with LYRA_STOP_CANCELLED). */
LYRA_API void lyra_engine_req_cancel(lyra_engine_req *r);

/* What a finished request did. */
typedef struct lyra_engine_result {
    int32_t n_prompt;     /* prompt tokens */
    int32_t n_cached;     /* of them, found in the slot's cache or its restored session */
    int64_t n_gen;        /* tokens generated */
    int64_t n_evaluated;  /* tokens the model evaluated for it */
    int stop;             /* lyra_stop_reason */
    int restored;         /* 1: its session was restored into the slot */
    int32_t slot;         /* the slot it ran in */
} lyra_engine_result;
/* The request's result once it is over (lyra_engine_req_wait returned 1):
 * LYRA_OK, or its error (LYRA_ERR_OOM, LYRA_ERR_RUNTIME). LYRA_ERR_INPUT
 * while it runs. res may be NULL. */
LYRA_API int lyra_engine_req_result(lyra_engine_req *r, lyra_engine_result *res, lyra_error *err);
/* The slot's state at the end of a request submitted with keep_session (a
 * session as lyra_session_save writes it, without sampler: *buf malloc'd,
 * free with lyra_free); it is handed over once. LYRA_ERR_INPUT when there
 * is none (not asked, still running, failed, taken). */
LYRA_API int lyra_engine_req_session(lyra_engine_req *r, void **buf, size_t *len, lyra_error *err);
/* Release the handle (cancels the request if it still runs). NULL ok. */
LYRA_API void lyra_engine_req_free(lyra_engine_req *r);

/* The engine's counters. */
typedef struct lyra_engine_stats {
    uint64_t requests;         /* requests finished */
    uint64_t failed;           /* of them, failed */
    uint64_t cancelled;        /* of them, cancelled */
    uint64_t rejected;         /* refused: queue full */
    uint64_t prompt_tokens;    /* prompt tokens of started requests */
    uint64_t cached_tokens;    /* of them, reused from a slot's cache or a restored session */
    uint64_t gen_tokens;       /* tokens generated */
    uint64_t steps;            /* engine steps */
    uint64_t fallback_steps;   /* the model's fallback history length */
    double busy_seconds;       /* time spent in steps */
    double tokens_per_second;  /* generated tokens/s over the last few seconds */
    int queue_depth;           /* requests waiting */
    int slots_busy;            /* slots with a request */
    int slots;                 /* slots in all */
    uint64_t evaluated;        /* tokens evaluated */
    uint64_t batched_steps;    /* steps that evaluated several requests in one batch */
    uint64_t restored;         /* sessions restored into a slot */
    int max_batch;             /* most requests in one step */
} lyra_engine_stats;
LYRA_API void lyra_engine_get_stats(lyra_engine *e, lyra_engine_stats *out);

#ifdef __cplusplus
}
#endif
#endif
