/* devflags.c: the device flags shared by generate, perplexity, bench and
 * plan (--device-map, --max-memory, --reserve, --gpu-layers, --tensor-split,
 * --no-mmap, --mlock, and the fallback's --fallback/--no-fallback,
 * --fallback-policy, --gpu-layers-fallback, --min-ctx, --kv-chunk), each
 * value checked at once so that an error names the flag and the entry
 * before anything loads. The first five are config keys: cfgflags.c records
 * them, parsed once by config/devspec.h (as a config file's values are),
 * and they reach lyra_model_params' typed fields when the config is
 * applied; here only the GPUs a budget names are checked against the
 * machine. The others are set on lyra_model_params here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"
#include "args.h"
#include "config/devspec.h"
#include "device/cuda.h"
#include "device/device.h"

/* GPUs this machine has (simulated ones when LYRA_SIM_GPUS is set, else the
 * CUDA GPUs as LYRA_CUDA_DEVICES picks them); -1 with err set when
 * LYRA_SIM_GPUS or LYRA_CUDA_DEVICES is malformed. */
static int n_gpus(lyra_error *err) {
    lyra_sim_spec specs[LYRA_SIM_MAX_GPUS];
    int n = 0, set = 0;
    if (lyra_sim_from_env(specs, LYRA_SIM_MAX_GPUS, &n, &set, err)) return -1;
    if (set) return n;
    int cards = lyra_cuda_count(NULL, 0);
    const char *pick = lyra_backend_params_from_env().cuda_devices;
    if (!cards || !pick) return cards;
    int ord[LYRA_CUDA_MAX_DEVICES];
    if (lyra_cuda_parse_devices(pick, cards, ord, LYRA_CUDA_MAX_DEVICES, &n, err)) return -1;
    return n;
}

/* Every GPU key of a --max-memory / --reserve value must name a GPU that is
 * here (a config may name absent ones: a note; a flag typed here: an error). */
static int check_keys(const char *flag, const lyra_device_bytes *e, int n_e, lyra_error *err) {
    for (int i = 0; i < n_e; i++) {
        int r = LYRA_DEVICE_RANK(e[i].device); /* "0@1": only rank 1 knows its GPUs */
        if (LYRA_DEVICE_LOCAL(e[i].device) == LYRA_DEVICE_CPU || (r >= 0 && r != lyra_dist_rank()))
            continue;
        int g = LYRA_DEVICE_LOCAL(e[i].device), n = n_gpus(err);
        if (n < 0) return err->code;
        if (g >= n)
            return lyra_err(err, LYRA_ERR_INPUT, flag, "%d: unknown device (this machine has %d GPU%s%s)",
                            g, n, n == 1 ? "" : "s", n ? "" : "; LYRA_SIM_GPUS simulates some");
    }
    return LYRA_OK;
}

const char *const app_devflag_names[] = {"--no-mmap", "--mlock", "--fallback", "--no-fallback",
                                         "--gpu-layers-fallback", "--min-ctx", "--kv-chunk",
                                         "--fallback-policy", NULL};

int app_devflag(app_args *a, lyra_model_params *mp, int *rc, lyra_error *err) {
    const char *f = a->flag, *v = NULL;
    *rc = LYRA_OK;
    if (!strcmp(f, "--no-mmap") && !a->eq) {
        mp->use_mmap = 0;
        return 1;
    }
    if (!strcmp(f, "--mlock") && !a->eq) {
        mp->use_mlock = 1;
        return 1;
    }
    if (!strcmp(f, "--fallback") && !a->eq) {
        mp->fallback = 1;
        if (mp->fallback_policy == LYRA_FALLBACK_NONE) mp->fallback_policy = LYRA_FALLBACK_LAYERS;
        return 1;
    }
    if (!strcmp(f, "--no-fallback") && !a->eq) {
        mp->fallback = 0;
        mp->fallback_policy = LYRA_FALLBACK_NONE;
        return 1;
    }
    if (!strcmp(f, "--gpu-layers-fallback")) {
        *rc = args_i32(a, 0, INT32_MAX, &mp->gpu_layers_fallback, err);
        return 1;
    }
    if (!strcmp(f, "--min-ctx")) {
        *rc = args_i32(a, 1, INT32_MAX, &mp->min_ctx, err);
        return 1;
    }
    if (!strcmp(f, "--kv-chunk")) {
        *rc = args_i32(a, 1, 1 << 20, &mp->kv_chunk, err);
        return 1;
    }
    if (!strcmp(f, "--fallback-policy")) {
        if ((*rc = args_str(a, &v, err))) return 1;
        if (!strcmp(v, "layers")) mp->fallback_policy = LYRA_FALLBACK_LAYERS, mp->fallback = 1;
        else if (!strcmp(v, "context")) mp->fallback_policy = LYRA_FALLBACK_CONTEXT, mp->fallback = 1;
        else if (!strcmp(v, "none")) mp->fallback_policy = LYRA_FALLBACK_NONE, mp->fallback = 0;
        else *rc = lyra_err(err, LYRA_ERR_INPUT, f, "expected layers, context or none, got '%s'", v);
        return 1;
    }
    return 0;
}

int app_devflags_check_gpus(const char *flag, const json_t *sizes, lyra_error *err) {
    lyra_device_bytes e[LYRA_DEVSPEC_MAX_BYTES];
    int n = 0;
    int rc = lyra_devspec_bytes_from_json(sizes, flag, e, &n, err);
    return rc ? rc : check_keys(flag, e, n, err);
}
