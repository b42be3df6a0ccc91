/* fuzz_config.c: libFuzzer target for model configuration files
 * (config/config.h): arbitrary bytes loaded as a config file. Checked beyond
 * "no crash / no sanitizer report":
 *   - a failure is LYRA_ERR_INPUT (or OOM) with one line starting with the
 *     file's name, and leaves the config exactly as it was;
 *   - an accepted file round-trips: written back as a config file
 *     (lyra_config_file_json) and loaded again, every key has the same value;
 *   - the apply functions succeed, and the strings they hand to the runtime
 *     re-parse with the planner's parsers (budgets, gpu_layers, tensor_split,
 *     device map JSON). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "plan/plan.h"

static void fz_fail(const char *what, const uint8_t *d, size_t n) {
    fprintf(stderr, "fuzz_config: %s on input of %zu bytes: \"%.*s\"\n", what, n, (int)n,
            (const char *)d);
    abort();
}

/* The runtime's view of the applied params must parse. */
static void check_apply(lyra_config *c, const uint8_t *d, size_t n) {
    lyra_error err;
    lyra_model_params mp = lyra_model_default_params();
    if (lyra_config_apply_model(c, &mp, &err)) fz_fail("apply_model failed", d, n);
    lyra_plan_memspec ms;
    if (mp.max_memory && lyra_plan_memspec_parse(mp.max_memory, "fuzz", &ms, &err))
        fz_fail("max_memory string does not parse", d, n);
    if (mp.reserve && lyra_plan_memspec_parse(mp.reserve, "fuzz", &ms, &err))
        fz_fail("reserve string does not parse", d, n);
    int32_t g;
    if (mp.gpu_layers && lyra_plan_gpu_layers_parse(mp.gpu_layers, "fuzz", &g, &err))
        fz_fail("gpu_layers string does not parse", d, n);
    lyra_plan_opts o = lyra_plan_default_opts();
    if (mp.tensor_split && lyra_plan_split_parse(mp.tensor_split, "fuzz", &o, &err))
        fz_fail("tensor_split string does not parse", d, n);
    if (mp.device_map_json) {
        json_t *v = json_loads(mp.device_map_json, JSON_DECODE_ANY, NULL);
        if (!v || lyra_plan_device_map_from_json(v, "fuzz", &o, &err))
            fz_fail("device_map JSON does not parse", d, n);
        json_decref(v);
    } else if (!mp.device_map || lyra_plan_strategy_parse(mp.device_map, "fuzz", &o, &err)) {
        fz_fail("device_map strategy does not parse", d, n);
    }
    if (mp.load_in_bits != 0 && mp.load_in_bits != 4 && mp.load_in_bits != 8)
        fz_fail("load_in_bits", d, n);
    lyra_context_params cp = lyra_context_default_params();
    lyra_config_apply_context(c, &cp);
    if (cp.n_batch < 1 || cp.n_ctx < 0) fz_fail("context params", d, n);
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
