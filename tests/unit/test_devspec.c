/* test_devspec.c: the one parser of the device settings (config/devspec.h).
 * A flag's string and a config file's JSON value give equal typed fields
 * (lyra_model_params' strategy, map entries, budgets, gpu_layers,
 * tensor_split); errors name the flag, the config key or the map file; and
 * typed fields set directly through the API place a model exactly as the
 * flag does (stories260K on two simulated GPUs, skipped without it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/devspec.h"
#include "testutil.h"

/* A config from flags (key, value pairs, NULL-terminated, set as the CLI
 * does: source flag:--NAME, where the flag). */
static lyra_config *from_flags(const char *const *kv, lyra_error *err) {
    lyra_config *c = lyra_config_new();
    for (int i = 0; c && kv[i]; i += 2) {
        char src[80], flag[64];
        snprintf(flag, sizeof flag, "%s", lyra_config_key_flag(lyra_config_key_find(kv[i])));
        snprintf(src, sizeof src, "flag:%s", flag);
        if (lyra_config_set(c, kv[i], kv[i + 1], src, flag, err)) {
            lyra_config_free(c);
            return NULL;
        }
    }
    return c;
}

static lyra_config *from_file(const char *json, lyra_error *err) {
    lyra_config *c = lyra_config_new();
    if (c && lyra_config_load_buffer(c, json, strlen(json), "cfg.json", err)) {
        lyra_config_free(c);
        return NULL;
    }
    return c;
}

/* The device fields of a and b are equal (entries compared by value). */
static int same_devices(const lyra_model_params *a, const lyra_model_params *b) {
    if (a->device_strategy != b->device_strategy || a->device_gpu != b->device_gpu ||
        a->n_device_map != b->n_device_map || a->n_max_memory != b->n_max_memory ||
        a->n_reserve != b->n_reserve || a->gpu_layers != b->gpu_layers ||
        a->n_tensor_split != b->n_tensor_split)
        return 0;
    for (int i = 0; i < a->n_device_map; i++)
        if (strcmp(a->device_map[i].module, b->device_map[i].module) ||
            a->device_map[i].device != b->device_map[i].device)
            return 0;
    for (int i = 0; i < a->n_max_memory; i++)
        if (a->max_memory[i].device != b->max_memory[i].device ||
            a->max_memory[i].bytes != b->max_memory[i].bytes)
            return 0;
    for (int i = 0; i < a->n_reserve; i++)
        if (a->reserve[i].device != b->reserve[i].device || a->reserve[i].bytes != b->reserve[i].bytes)
            return 0;
    for (int i = 0; i < a->n_tensor_split; i++)
        if (a->tensor_split[i] != b->tensor_split[i]) return 0;
    return 1;
}

/* Flags and config keys give equal typed fields. */
static void test_equal(void) {
    struct {
        const char *flags[12];
        const char *file;
    } cases[] = {
        {{"device_map", "sequential", NULL}, "{\"device_map\": \"sequential\"}"},
        {{"device_map", "cuda:1", NULL}, "{\"device_map\": 1}"},
        {{"device_map", "{\"\": \"cpu\", \"model.layers.0\": \"cuda:0\", \"lm_head\": \"disk\"}", NULL},
         "{\"device_map\": {\"lm_head\": \"disk\", \"\": \"cpu\", \"model.layers.0\": 0}}"},
        {{"max_memory", "0=6GiB, cpu=16GB", "reserve", "cuda:1=1GiB", NULL},
         "{\"max_memory\": {\"0\": \"6GiB\", \"cpu\": 16000000000}, \"reserve\": {\"1\": \"1GiB\"}}"},
        {{"gpu_layers", "all", "tensor_split", "3,1.5", NULL},
         "{\"gpu_layers\": \"all\", \"tensor_split\": [3, 1.5]}"},
        {{"gpu_layers", "7", "tensor_split", "0.6,0.4", NULL},
         "{\"gpu_layers\": 7, \"tensor_split\": \"0.6,0.4\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lyra_error err;
        lyra_config *a = from_flags(cases[i].flags, &err);
        CHECK(a, "case %zu flags: %s", i, err.msg);
        lyra_config *b = from_file(cases[i].file, &err);
        CHECK(b, "case %zu file: %s", i, err.msg);
        if (!a || !b) {
            lyra_config_free(a);
            lyra_config_free(b);
            continue;
        }
        lyra_model_params ma = lyra_model_default_params(), mb = ma;
        CHECK(lyra_config_apply_model(a, &ma, &err) == 0, "case %zu apply: %s", i, err.msg);
        CHECK(lyra_config_apply_model(b, &mb, &err) == 0, "case %zu apply: %s", i, err.msg);
        CHECK(same_devices(&ma, &mb), "case %zu: flags and config differ", i);
        lyra_config_free(a);
        lyra_config_free(b);
    }
    /* the typed values themselves */
    lyra_error err;
    const char *kv2[] = {"max_memory", "cpu=1KiB,0=2MiB", "tensor_split", "1,3", "gpu_layers", "2", NULL};
    lyra_config *c = from_flags(kv2, &err);
    lyra_model_params mp = lyra_model_default_params();
    CHECK(c && lyra_config_apply_model(c, &mp, &err) == 0, "%s", err.msg);
    CHECK(mp.n_max_memory == 2 && mp.max_memory[0].device == LYRA_DEVICE_CPU &&
              mp.max_memory[0].bytes == 1024 && mp.max_memory[1].device == 0 &&
              mp.max_memory[1].bytes == 2u << 20,
          "max_memory in the given order");
    CHECK(mp.n_tensor_split == 2 && mp.tensor_split[0] == 1.0f && mp.tensor_split[1] == 3.0f &&
              mp.gpu_layers == 2, "split, gpu_layers");
    lyra_config_free(c);
}

/* Errors name the flag, the config key (with its file) or the map file. */
static void test_errors(void) {
    struct {
        const char *key, *value, *want;
    } flags[] = {
        {"max_memory", "cpu=lots", "--max-memory entry \"cpu=lots\": bad size \"lots\": expected a "
                                   "number of bytes and a unit (e.g. 6GiB or 6GB)"},
        {"reserve", "gpu0=1GiB", "--reserve: entry \"gpu0=1GiB\": unknown device (a GPU index N, "
                                 "cuda:N or cpu)"},
        {"gpu_layers", "-1", "--gpu-layers: \"-1\": the number of GPU layers cannot be negative "
                             "(0.. or all)"},
        {"tensor_split", "1,x", "--tensor-split: \"x\" is not a proportion (e.g. 3,1 or 0.6,0.4)"},
        {"device_map", "", "--device-map: expected a strategy or a JSON file"},
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        lyra_error err;
        const char *kv[] = {flags[i].key, flags[i].value, NULL};
        lyra_config *c = from_flags(kv, &err);
        if (flags[i].want)
            CHECK(!c && err.code == LYRA_ERR_INPUT && !strcmp(err.msg, flags[i].want), "%s: %s",
                  flags[i].value, c ? "accepted" : err.msg);
        lyra_config_free(c);
    }
    struct {
        const char *file, *want;
    } files[] = {
        {"{\"max_memory\": {\"cpu\": \"lots\"}}",
         "cfg.json: max_memory.cpu: bad size \"lots\""},
        {"{\"gpu_layers\": -1}", "cfg.json: gpu_layers: -1: the number of GPU layers cannot be negative"},
        {"{\"tensor_split\": [1, \"x\"]}", "cfg.json: tensor_split: entry 1: expected a number"},
        {"{\"device_map\": {\"\": \"tpu\"}}", "cfg.json: device_map.: unknown device a string (\"tpu\")"},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        lyra_error err;
        lyra_config *c = from_file(files[i].file, &err);
        CHECK(!c && err.code == LYRA_ERR_INPUT && strstr(err.msg, files[i].want) == err.msg,
              "%s: %s", files[i].file, c ? "accepted" : err.msg);
        lyra_config_free(c);
    }
    /* a map file: its errors name the file, at apply (before anything loads) */
    char path[1200];
    snprintf(path, sizeof path, "%s/bad_map.json", test_tmp_dir());
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("{\"\": \"cpu\", \"model.layers.0\": \"gpu\"}", f);
        fclose(f);
    }
    lyra_error err;
    const char *kv[] = {"device_map", path, NULL};
    lyra_config *c = from_flags(kv, &err);
    CHECK(c, "a map file is accepted as a flag: %s", err.msg);
    lyra_model_params mp = lyra_model_default_params();
    char want[1400];
    snprintf(want, sizeof want,
             "%s: \"model.layers.0\": unknown device \"gpu\" (0, \"0\", \"cuda:0\", \"cpu\" or \"disk\")",
             path);
    CHECK(c && lyra_config_apply_model(c, &mp, &err) == LYRA_ERR_INPUT && !strcmp(err.msg, want),
          "map file value: %s", err.msg);
    lyra_config_free(c);
    /* the parser directly: where is the caller's */
    int32_t n;
    CHECK(lyra_devspec_gpu_layers_parse("x", "api", &n, &err) == LYRA_ERR_INPUT &&
              !strcmp(err.msg, "api: \"x\" is not a number of layers (0.. or all)"), "%s", err.msg);
}

/* Typed fields set directly give the same map as the flag's file. */
static void test_api_map(void) {
    const char *model = test_shared_path("models/stories260K.gguf");
    if (!model) return;
    setenv("LYRA_SIM_GPUS", "8MiB,8MiB", 1);
    char path[1200];
    snprintf(path, sizeof path, "%s/map.json", test_tmp_dir());
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("{\"model.embed_tokens\": 0, \"model.layers.0\": 1, \"model.layers.1\": \"cpu\","
              " \"model.layers.2\": 1, \"model.layers.3\": \"disk\", \"model.layers.4\": 0,"
              " \"model.norm\": \"cpu\", \"lm_head\": 0}", f);
        fclose(f);
    }
    lyra_error err;
    char by_flag[4096] = "", by_api[4096] = "";
    /* the flag's way: --device-map FILE --max-memory cpu=4GiB --ctx 256 */
    const char *kv[] = {"device_map", path, "max_memory", "cpu=4GiB", "context_length", "256", NULL};
    lyra_config *c = from_flags(kv, &err);
    lyra_model_params mp = lyra_model_default_params();
    lyra_model *m = NULL;
    CHECK(c && lyra_config_apply_model(c, &mp, &err) == 0, "%s", err.msg);
    CHECK(lyra_model_open(model, &mp, &m, &err) == 0, "open (flag): %s", err.msg);
    if (m) lyra_model_device_map(m, by_flag, sizeof by_flag);
    lyra_model_free(m);
    lyra_config_free(c);
    /* the API's way: the same settings as typed fields */
    static const lyra_device_map_entry map[] = {
        {"model.embed_tokens", 0}, {"model.layers.0", 1}, {"model.layers.1", LYRA_DEVICE_CPU},
        {"model.layers.2", 1}, {"model.layers.3", LYRA_DEVICE_DISK}, {"model.layers.4", 0},
        {"model.norm", LYRA_DEVICE_CPU}, {"lm_head", 0},
    };
    static const lyra_device_bytes budget[] = {{LYRA_DEVICE_CPU, 4ull << 30}};
    lyra_model_params ap = lyra_model_default_params();
    ap.device_strategy = LYRA_DEVICE_MAP_EXPLICIT;
    ap.device_map = map;
    ap.n_device_map = 8;
    ap.max_memory = budget;
    ap.n_max_memory = 1;
    ap.n_ctx = 256;
    m = NULL;
    CHECK(lyra_model_open(model, &ap, &m, &err) == 0, "open (api): %s", err.msg);
    if (m) lyra_model_device_map(m, by_api, sizeof by_api);
    lyra_model_free(m);
    CHECK(by_flag[0] && !strcmp(by_flag, by_api), "maps differ:\n  flag %s\n  api  %s", by_flag, by_api);
    CHECK(strstr(by_api, "\"model.layers.3\":\"disk\"") && strstr(by_api, "\"model.layers.0\":\"1\""),
          "the map: %s", by_api);
    /* an API map error names device_map_source (or "device_map") */
    static const lyra_device_map_entry bad[] = {{"", LYRA_DEVICE_CPU}, {"model.bogus", 0}};
    ap.device_map = bad;
    ap.n_device_map = 2;
    ap.device_map_source = "my_map";
    CHECK(lyra_model_open(model, &ap, &m, &err) == LYRA_ERR_INPUT &&
              !strcmp(err.msg, "my_map: \"model.bogus\" matches no module of this model"),
          "%s", err.msg);
    ap.gpu_layers = -7;
    ap.device_strategy = LYRA_DEVICE_MAP_AUTO;
    CHECK(lyra_model_open(model, &ap, &m, &err) == LYRA_ERR_INPUT && !strncmp(err.msg, "gpu_layers: -7", 14),
          "%s", err.msg);
    unsetenv("LYRA_SIM_GPUS");
}

int main(void) {
    lyra_log_set(NULL, LYRA_LOG_ERROR, NULL);
    test_equal();
    test_errors();
    test_api_map();
    return test_done();
}
