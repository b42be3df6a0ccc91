/* config.h: model configuration files (docs/config.md). A config is one JSON
 * object per model and machine, in the seed's format:
 *
 *   {"model_id": "microsoft/phi-2", "device_map": "auto",
 *    "max_memory": {"0": "6GB", "cpu": "16GB"}, "gpu_layers_fallback": 16,
 *    "enable_progressive_fallback": true,
 *    "pipeline_kwargs": {"max_new_tokens": 4000}}
 *
 * A lyra_config holds every key with its value and where the value came
 * from: "default", "model:/abs/path" (a snapshot's generation_config.json),
 * "file:/abs/path", "env:NAME" or "flag:--name". Layers are
 * applied in order of precedence, lowest first: defaults (lyra_config_new),
 * one file (lyra_config_load_file, found by lyra_config_discover), then the
 * command line or API (lyra_config_set). A later layer replaces a key's
 * value, except that max_memory and reserve merge per device entry, and
 * pipeline_kwargs per key (each is its own key here). A layer is one file,
 * one setter source, or the whole command line (every "flag:" source).
 * Cross-key rules: gpu_layers set from another layer than an explicit device
 * map drops the map (back to "auto"), and an explicit map set from another
 * layer than gpu_layers drops gpu_layers; load_in_8bit / load_in_4bit set
 * true turns the other one off when it came from another layer, and is an
 * error within one layer.
 *
 * Every value is validated as it enters, with the device settings' parser
 * (config/devspec.h) for memory specs, strategies, maps, gpu_layers and
 * tensor_split. Errors are
 * LYRA_ERR_INPUT with one line naming the file and JSON path
 * ("cfg.json: max_memory.0: bad size ...", "cfg.json:3:7: invalid JSON: ...")
 * or the flag; on error nothing changes. The "apply" functions fill the
 * public parameter structs; what they point to (device map entries, budgets,
 * strings) is owned by the config (valid until the next apply or
 * lyra_config_free). */
#ifndef LYRA_CONFIG_CONFIG_H
#define LYRA_CONFIG_CONFIG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "config/devspec.h"
#include "core/err.h"

/* The keys, in the order `lyra config show` prints them. */
typedef enum lyra_cfg_key {
    LYRA_CFG_MODEL_ID = 0,         /* string: GGUF path / dir / org/name[:TAG] */
    LYRA_CFG_REVISION,             /* string: branch, tag or commit of a Hugging Face cache repo; null = refs/main */
    LYRA_CFG_DEVICE_MAP,           /* strategy string, GPU index or explicit map object */
    LYRA_CFG_MAX_MEMORY,           /* {device: size} budgets */
    LYRA_CFG_RESERVE,              /* {device: size} memory kept free */
    LYRA_CFG_GPU_LAYERS,           /* integer >= 0 or "all"; null = not given */
    LYRA_CFG_TENSOR_SPLIT,         /* [3, 1] or "3,1"; null = not given */
    LYRA_CFG_GPU_LAYERS_FALLBACK,  /* integer >= 0; null = none */
    LYRA_CFG_FALLBACK,             /* enable_progressive_fallback: bool */
    LYRA_CFG_FALLBACK_POLICY,      /* "layers" | "context" | "none" */
    LYRA_CFG_LOAD_IN_8BIT,         /* bool */
    LYRA_CFG_LOAD_IN_4BIT,         /* bool */
    LYRA_CFG_DTYPE,                /* "auto" | "float32" | "float16" | "bfloat16" (Hugging Face folders; also torch_dtype) */
    LYRA_CFG_CONTEXT_LENGTH,       /* integer >= 0; 0 = min(model's, 4096) */
    LYRA_CFG_BATCH_SIZE,           /* integer >= 1 */
    LYRA_CFG_KV_CACHE_TYPE,        /* "f16" | "f32" */
    LYRA_CFG_THREADS,              /* integer 0..4096; 0 = physical cores */
    LYRA_CFG_SEED,                 /* integer 0..2^64-1 (a digit string above 2^63-1); null = random */
    LYRA_CFG_SYSTEM_PROMPT,        /* string or null */
    LYRA_CFG_CHAT_TEMPLATE,        /* chatml|llama2|llama3|phi3|gemma|zephyr|plain|none|auto; null = auto */
    LYRA_CFG_MAX_NEW_TOKENS,       /* pipeline_kwargs.max_new_tokens: integer >= -1 (default 256); -1 = no limit */
    LYRA_CFG_TEMPERATURE,          /* pipeline_kwargs.temperature: number >= 0 */
    LYRA_CFG_DO_SAMPLE,            /* pipeline_kwargs.do_sample: bool; false = greedy */
    LYRA_CFG_TOP_K,                /* pipeline_kwargs.top_k: integer >= 0 */
    LYRA_CFG_TOP_P,                /* pipeline_kwargs.top_p: number 0..1 */
    LYRA_CFG_MIN_P,                /* pipeline_kwargs.min_p: number 0..1 */
    LYRA_CFG_REPETITION_PENALTY,   /* pipeline_kwargs.repetition_penalty: number > 0 */
    LYRA_CFG_STOP,                 /* pipeline_kwargs.stop: array of non-empty strings */
    LYRA_CFG_SERVER_HOST,          /* lyra serve: address to bind (default "127.0.0.1") */
    LYRA_CFG_SERVER_PORT,          /* lyra serve: TCP port 0..65535 (default 8080) */
    LYRA_CFG_SERVER_PARALLEL,      /* lyra serve: slots 1..256 (default 4) */
    LYRA_CFG_SERVER_QUEUE,         /* lyra serve: waiting requests at most, 1..65536 (default 64) */
    LYRA_CFG_FALLBACK_ACROSS_RANKS,/* bool (mpirun): a rank that cannot hold its share hands
                                      modules to the next; `show` lists it only when set */
    LYRA_CFG_N_KEYS
} lyra_cfg_key;

/* One configuration: values, their sources, and the strings handed out. */
typedef struct lyra_config {
    json_t *value[LYRA_CFG_N_KEYS];  /* [key] normalized value, never NULL (json null = not given) */
    char *source[LYRA_CFG_N_KEYS];   /* [key] "default", "file:/abs", "env:NAME", "flag:--name" (malloc'd) */
    json_t *entry_source[2];         /* max_memory [0] and reserve [1]: {device: source} */
    int map_is_file;                 /* device_map is the path of a JSON map file */
    int strict;                      /* load: a note (an ignored key) is an error */
    char *path;                      /* absolute path of the file loaded, or NULL */
    const char *how;                 /* lyra_config_load_auto: the discovery rung (static) */
    lyra_devspec dev;                /* apply: the typed device settings mp points into */
    const char **stop;               /* apply: [n_stop] pointers into value[LYRA_CFG_STOP] */
    int n_stop;                      /* apply: stop strings */
} lyra_config;

/* ----------------------------------------------------------------- keys */

/* Key by name: the JSON path ("max_memory", "pipeline_kwargs.top_k") or, for
 * pipeline_kwargs, the bare name ("top_k"); -1 when unknown. */
int lyra_config_key_find(const char *name);
/* JSON path of key k ("pipeline_kwargs.top_k"). */
const char *lyra_config_key_name(int k);
/* The long command-line flag of key k ("--top-k"; "--fallback" for
 * enable_progressive_fallback, "--greedy" for do_sample). */
const char *lyra_config_key_flag(int k);
/* The default value of key k as JSON text ("0.8", "\"auto\"", "null"). */
const char *lyra_config_key_default(int k);
/* 1 when `config show` leaves key k out: fallback_across_ranks (an MPI key)
 * while it has its default from no source. */
int lyra_config_key_quiet(const lyra_config *c, int k);
/* "did you mean X?" for an unknown key name (at top level when
 * in_pipeline is 0, inside pipeline_kwargs otherwise); "" when nothing is
 * close. Writes into buf and returns it. */
/* Optimal string alignment distance of two names, compared without case and
 * with '-' = '_' (the first 63 bytes): "did you mean" for keys and flags. */
int lyra_config_name_distance(const char *a, const char *b);
const char *lyra_config_suggest(const char *name, int in_pipeline, char *buf, size_t cap);

/* --------------------------------------------------------------- layers */

/* A config holding the defaults; NULL when out of memory. */
lyra_config *lyra_config_new(void);
void lyra_config_free(lyra_config *c);
/* A copy of c's values, sources and file (not what apply handed out); NULL
 * when out of memory. A later layer set on the copy leaves c alone. */
lyra_config *lyra_config_copy(const lyra_config *c);

/* Which file applies (docs/config.md): explicit (--model-config; must exist)
 * > LYRA_MODEL_CONFIG (must exist; "none" = off) > ./config/model_config.json
 * > $XDG_CONFIG_HOME/lyra/model_config.json ($HOME/.config/... when unset) >
 * none. no_config (--no-config) turns discovery off (with explicit: an
 * error). *path: malloc'd, or NULL for none; *how: a static label of the rung
 * ("--model-config", "LYRA_MODEL_CONFIG", "./config/model_config.json",
 * "$XDG_CONFIG_HOME", "$HOME/.config", "--no-config", "LYRA_MODEL_CONFIG=none",
 * "none"). */
int lyra_config_discover(const char *explicit_path, int no_config, char **path,
                         const char **how, lyra_error *err);

/* Validate the file at path and apply it over c (its keys replace c's).
 * Notes ("torch_dtype: ignored") go to LYRA_WARN after success. On error
 * nothing changes. */
int lyra_config_load_file(lyra_config *c, const char *path, lyra_error *err);
/* The same for len bytes already read; name is used in messages and, made
 * absolute, in the sources. */
int lyra_config_load_buffer(lyra_config *c, const char *buf, size_t len, const char *name,
                            lyra_error *err);
/* Discovery then load: the front ends' one call. */
int lyra_config_load_auto(lyra_config *c, const char *explicit_path, int no_config,
                          lyra_error *err);

/* The model's own defaults: DIR/generation_config.json of a Hugging Face
 * snapshot (no file, or DIR not a directory: nothing). Its temperature,
 * top_p, top_k, repetition_penalty, max_new_tokens and do_sample apply to
 * the keys still at their defaults (a layer below every file, env and
 * flag), with the source "model:/abs/path/generation_config.json"; then
 * the sampling keys are settled again. A value lyra refuses is a warning
 * and skipped; invalid JSON is LYRA_ERR_INPUT naming the file. Its
 * eos_token_id list ends generation (format/hf_tokenizer.h). */
int lyra_config_load_generation(lyra_config *c, const char *dir, lyra_error *err);

/* Set key (see lyra_config_key_find) from a string, as a flag or setter
 * gives it: integers, numbers, true/false, sizes lists "0=6GB,cpu=16GB" (or a
 * JSON object), device maps (strategy, JSON object text, or the path of a
 * JSON map file), gpu_layers "N"/"all", tensor_split "3,1", a stop string
 * (appended when the stop list already comes from the same source). source:
 * "flag:--temp", "env:NAME", ...; where names the culprit in messages (the
 * flag as typed; NULL: the key's JSON path). */
int lyra_config_set(lyra_config *c, const char *key, const char *value, const char *source,
                    const char *where, lyra_error *err);
/* Set key from a JSON value (borrowed), with the file's validation. */
int lyra_config_set_json(lyra_config *c, const char *key, const json_t *value,
                         const char *source, const char *where, lyra_error *err);

/* ---------------------------------------------------------------- apply */

/* The model ref (the model_id, or -m as given) resolved at the revision key
 * (config/model_ref.h lyra_model_ref_resolve_rev): org/name@REV and a
 * revision key that name different revisions are LYRA_ERR_INPUT naming
 * both and where the key came from. where: as lyra_model_ref_resolve's. */
int lyra_config_resolve_model(const lyra_config *c, const char *ref, const char *where, char **path,
                              lyra_error *err);

/* Fill the device, fallback, quantization and geometry (context, batch, KV
 * type, threads) fields of mp (other fields untouched): the typed device
 * settings come from the values through config/devspec.h; a device map file
 * (a flag's value) is read here, its errors naming the file. Contexts
 * inherit the geometry (lyra_context_params 0). */
int lyra_config_apply_model(lyra_config *c, lyra_model_params *mp, lyra_error *err);
/* Sampling (do_sample false: temperature 0, greedy). Returns 1 when a seed
 * is configured (sp->seed set), 0 when the caller picks a random one. */
int lyra_config_apply_sampler(const lyra_config *c, lyra_sampler_params *sp);
/* Settle the sampling keys once every layer is in (docs/config.md): a
 * sampling knob (temperature, top_k, top_p, min_p) from a later layer than
 * do_sample false turns sampling back on (do_sample true, with that knob's
 * source); when a file or the API gives a sampling key (those four or
 * do_sample), the ones still at lyra's defaults take transformers' instead
 * (temperature 1.0, top_k 50, top_p 1.0, min_p 0 = off; source
 * LYRA_CFG_SOURCE_HF). Idempotent. */
#define LYRA_CFG_SOURCE_HF "default (transformers)"
int lyra_config_settle_sampling(lyra_config *c, lyra_error *err);

/* What generation needs beyond the sampler. */
typedef struct lyra_config_gen {
    const char *model_id;       /* NULL when not given */
    int64_t max_new_tokens;     /* -1: until end of generation or a full context */
    const char *const *stop;    /* [n_stop] stop strings (owned by the config) */
    int n_stop;                 /* their count */
    const char *system_prompt;  /* NULL: none */
    const char *chat_template;  /* NULL: from the model's metadata ("auto") */
} lyra_config_gen;
int lyra_config_apply_gen(lyra_config *c, lyra_config_gen *g, lyra_error *err);

/* `lyra serve`'s keys (strings owned by the config). */
typedef struct lyra_config_serve {
    const char *host;
    int32_t port, parallel, queue;
} lyra_config_serve;
void lyra_config_apply_serve(const lyra_config *c, lyra_config_serve *s);

/* ----------------------------------------------------------------- show */

/* {"KEY": {"value": V, "source": S}, ...} for every key (pipeline_kwargs
 * keys as "pipeline_kwargs.NAME"); a new reference, NULL if out of memory. */
json_t *lyra_config_show_json(const lyra_config *c);
/* One line per key "KEY  VALUE  SOURCE" (merged max_memory / reserve with
 * per-entry sources); malloc'd, NULL if out of memory. */
char *lyra_config_show_text(const lyra_config *c);
/* The effective sampling chain in the sampler's order, e.g. "top_k 50 ->
 * top_p 0.9 -> temperature 0.7 -> draw" or "greedy (do_sample false)",
 * into buf (snprintf's contract); its length. */
int lyra_config_chain(const lyra_config *c, char *buf, size_t cap);
/* The config as a file would hold it (non-default keys, pipeline_kwargs
 * nested); loading it gives the same values. A new reference. */
json_t *lyra_config_file_json(const lyra_config *c);

#endif
