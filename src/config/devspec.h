/* devspec.h: the one parser of the device settings (docs/sharding.md). The
 * strings of the command-line flags (--device-map, --max-memory, --reserve,
 * --gpu-layers, --tensor-split), the JSON values of the config keys
 * (device_map, max_memory, reserve, gpu_layers, tensor_split) and device map
 * files become lyra_model_params' typed fields here, and only here: the
 * planner and the runtime read the typed fields, never text or files.
 *
 * Every parser takes `where`, the flag or config key (or "FILE: key") that
 * names the culprit in its LYRA_ERR_INPUT message "WHERE: WHAT". A
 * lyra_devspec owns what the typed fields point to (map entries, their
 * module names, the map's source). */
#ifndef LYRA_CONFIG_DEVSPEC_H
#define LYRA_CONFIG_DEVSPEC_H

#include <jansson.h>
#include <stdint.h>

#include "core/err.h"

#define LYRA_DEVSPEC_MAX_BYTES 18 /* max_memory / reserve entries: 16 GPUs + cpu (+1) */

/* The typed device settings and the memory they point into. */
typedef struct lyra_devspec {
    lyra_device_strategy strategy;   /* LYRA_DEVICE_MAP_AUTO when not given */
    int32_t gpu;                     /* LYRA_DEVICE_MAP_GPU: the GPU index */
    lyra_device_map_entry *map;      /* [n_map] explicit map (malloc'd), keys in sorted order */
    int n_map;                       /* its entries */
    char *names;                     /* the entries' module names (malloc'd) */
    char *source;                    /* where the map setting came from (a file path), or NULL */
    lyra_device_bytes max_memory[LYRA_DEVSPEC_MAX_BYTES]; /* [n_max_memory] */
    int n_max_memory;
    lyra_device_bytes reserve[LYRA_DEVSPEC_MAX_BYTES];    /* [n_reserve] */
    int n_reserve;
    int32_t gpu_layers;              /* LYRA_GPU_LAYERS_UNSET, ALL or N */
    float tensor_split[LYRA_MAX_TENSOR_SPLIT]; /* [n_tensor_split] */
    int n_tensor_split;
} lyra_devspec;

/* Nothing given: auto, no budgets, no gpu_layers, no split. */
void lyra_devspec_init(lyra_devspec *d);
/* Release the map and the source (d is then as after init). */
void lyra_devspec_free(lyra_devspec *d);
/* Point mp's device fields into d (d must outlive their use). */
void lyra_devspec_apply(const lyra_devspec *d, lyra_model_params *mp);

/* 1 when s names a strategy: auto, balanced, balanced_low_0, sequential, cpu,
 * cuda, cuda:N, N (digits). Anything else is, for a flag, a JSON map file. */
int lyra_devspec_is_strategy(const char *s);
/* A strategy name into *st (and *gpu for cuda, cuda:N, N). */
int lyra_devspec_strategy_parse(const char *s, const char *where, lyra_device_strategy *st,
                                int32_t *gpu, lyra_error *err);
/* A device_map JSON value: a strategy string, an integer GPU or an object
 * {module: device} (values 0, "0", "cuda:0", "cuda", "cpu", "disk"). Sets
 * d's strategy, gpu and map; d->source is left alone. */
int lyra_devspec_map_from_json(lyra_devspec *d, const json_t *v, const char *where,
                               lyra_error *err);
/* A JSON map file (any device_map value): read, parsed as above, d->source
 * = path. Errors name the path. */
int lyra_devspec_map_file(lyra_devspec *d, const char *path, lyra_error *err);

/* gpu_layers: "all" or an integer >= 0 (a string), or a JSON integer / "all".
 * "all" and values >= INT32_MAX give LYRA_GPU_LAYERS_ALL. */
int lyra_devspec_gpu_layers_parse(const char *s, const char *where, int32_t *out, lyra_error *err);
int lyra_devspec_gpu_layers_from_json(const json_t *v, const char *where, int32_t *out,
                                      lyra_error *err);

/* tensor_split: "3,1" / "0.6,0.4" (at most 6 decimals, each <= 1000000), or
 * a JSON array of numbers or such a string. At least one entry > 0. out has
 * room for LYRA_MAX_TENSOR_SPLIT. */
int lyra_devspec_split_parse(const char *s, const char *where, float *out, int *n, lyra_error *err);
int lyra_devspec_split_from_json(const json_t *v, const char *where, float *out, int *n,
                                 lyra_error *err);

/* Per-device sizes: "0=6GiB,cpu=16GiB" (keys N, cuda:N or cpu; sizes as
 * core/size.h; "" = no entries), or a JSON object {"0": "6GiB", "cpu":
 * 17179869184} (entries in the object's order; errors in sorted key order).
 * Duplicates and unknown keys are LYRA_ERR_INPUT. out has room for
 * LYRA_DEVSPEC_MAX_BYTES. */
int lyra_devspec_bytes_parse(const char *s, const char *where, lyra_device_bytes *out, int *n,
                             lyra_error *err);
int lyra_devspec_bytes_from_json(const json_t *v, const char *where, lyra_device_bytes *out,
                                 int *n, lyra_error *err);

/* 1 for the sizes keys accelerate configs carry that lyra reads and drops:
 * "disk" (the disk tier has no cap) and "mps" (no Apple GPU backend); their
 * sizes are still checked. The config notes them. Only the JSON form
 * (lyra_devspec_bytes_from_json) accepts them. */
int lyra_devspec_bytes_unused(const char *s, size_t len);

/* A device number's name: "cpu", "disk" or the GPU index; returns buf. */
const char *lyra_devspec_device_name(int32_t device, char *buf, size_t cap);

#endif
