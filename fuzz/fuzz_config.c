/* fuzz_config.c: libFuzzer target for model configuration files
 * (config/config.h): arbitrary bytes loaded as a config file. Checked beyond
 * "no crash / no sanitizer report":
 *   - a failure is LYRA_ERR_INPUT (or OOM) with one line starting with the
 *     file's name, and leaves the config exactly as it was;
 *   - an accepted file round-trips: written back as a config file
 *     (lyra_config_file_json) and loaded again, every key has the same value;
 *   - the apply functions succeed, and the typed fields they hand to the
 *     runtime are in range (budgets, gpu_layers, tensor_split, the device
 *     map's entries, the geometry). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

static void fz_fail(const char *what, const uint8_t *d, size_t n) {
    fprintf(stderr, "fuzz_config: %s on input of %zu bytes: \"%.*s\"\n", what, n, (int)n,
            (const char *)d);
    abort();
}

/* The runtime's view of the applied params: typed fields within range. */
static void check_apply(lyra_config *c, const uint8_t *d, size_t n) {
    lyra_error err;
    lyra_model_params mp = lyra_model_default_params();
    if (lyra_config_apply_model(c, &mp, &err)) fz_fail("apply_model failed", d, n);
    if (mp.n_max_memory < 0 || mp.n_max_memory > LYRA_DEVSPEC_MAX_BYTES ||
        (mp.n_max_memory && !mp.max_memory) || mp.n_reserve < 0 ||
        mp.n_reserve > LYRA_DEVSPEC_MAX_BYTES || (mp.n_reserve && !mp.reserve))
        fz_fail("budgets", d, n);
    for (int i = 0; i < mp.n_max_memory; i++)
        if (mp.max_memory[i].device < LYRA_DEVICE_CPU) fz_fail("max_memory device", d, n);
    for (int i = 0; i < mp.n_reserve; i++)
        if (mp.reserve[i].device < LYRA_DEVICE_CPU) fz_fail("reserve device", d, n);
    if (mp.gpu_layers < LYRA_GPU_LAYERS_UNSET) fz_fail("gpu_layers", d, n);
    if (mp.n_tensor_split < 0 || mp.n_tensor_split > LYRA_MAX_TENSOR_SPLIT) fz_fail("split", d, n);
    for (int i = 0; i < mp.n_tensor_split; i++)
        if (!(mp.tensor_split[i] >= 0.0f) || mp.tensor_split[i] > 1e6f) fz_fail("split value", d, n);
    if ((int)mp.device_strategy < 0 || mp.device_strategy > LYRA_DEVICE_MAP_EXPLICIT)
        fz_fail("device strategy", d, n);
    if (mp.device_strategy == LYRA_DEVICE_MAP_EXPLICIT)
        for (int i = 0; i < mp.n_device_map; i++)
            if (!mp.device_map[i].module || mp.device_map[i].device < LYRA_DEVICE_DISK)
                fz_fail("device map entry", d, n);
    if (mp.n_batch < 1 || mp.n_ctx < 0 || (mp.kv_type != LYRA_KV_F16 && mp.kv_type != LYRA_KV_F32))
        fz_fail("geometry", d, n);
    if (mp.load_in_bits != 0 && mp.load_in_bits != 4 && mp.load_in_bits != 8)
        fz_fail("load_in_bits", d, n);
    lyra_sampler_params sp = lyra_sampler_default_params();
    lyra_config_apply_sampler(c, &sp);
    if (!(sp.temperature >= 0.0f) || !(sp.top_p >= 0.0f && sp.top_p <= 1.0f))
        fz_fail("sampler params", d, n);
    lyra_config_gen gen;
    if (lyra_config_apply_gen(c, &gen, &err)) fz_fail("apply_gen failed", d, n);
    for (int i = 0; i < gen.n_stop; i++)
        if (!gen.stop[i] || !gen.stop[i][0]) fz_fail("empty stop string", d, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int quiet;
    if (!quiet) {
        lyra_log_set(NULL, LYRA_LOG_ERROR, NULL); /* no "ignored" notes */
        quiet = 1;
    }
    if (size > 65536) return 0;
    lyra_config *c = lyra_config_new();
    if (!c) return 0;
    lyra_error err;
    lyra_err_clear(&err);
    json_t *before = lyra_config_show_json(c);
    int rc = lyra_config_load_buffer(c, (const char *)data, size, "fuzz.json", &err);
    if (rc) {
        if (rc != LYRA_ERR_INPUT && rc != LYRA_ERR_OOM) fz_fail("error code", data, size);
        if (err.code != rc || strncmp(err.msg, "fuzz.json", 9) || strchr(err.msg, '\n'))
            fz_fail("bad message", data, size);
        json_t *after = lyra_config_show_json(c);
        if (!json_equal(before, after)) fz_fail("a failed load changed the config", data, size);
        json_decref(after);
    } else {
        check_apply(c, data, size);
        json_t *fj = lyra_config_file_json(c);
        char *text = fj ? json_dumps(fj, 0) : NULL;
        lyra_config *c2 = lyra_config_new();
        if (!text || !c2) fz_fail("file_json", data, size);
        if (lyra_config_load_buffer(c2, text, strlen(text), "rt.json", &err))
            fz_fail("the round trip does not load", data, size);
        for (int k = 0; k < LYRA_CFG_N_KEYS; k++)
            if (!json_equal(c->value[k], c2->value[k])) fz_fail("round trip value", data, size);
        lyra_config_free(c2);
        free(text);
        json_decref(fj);
    }
    json_decref(before);
    lyra_config_free(c);
    return 0;
}
