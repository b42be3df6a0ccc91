/* test_config.c: model configuration files (src/config/config.h): defaults
 * against the library's own default params, the seed's config file, every
 * class of error with the exact file, JSON path and line:column, "nothing
 * loaded" after an error, the merge rules between file and flags, every
 * discovery rung (in a temporary working directory, HOME and
 * XDG_CONFIG_HOME), and the apply functions against the planner's parsers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "config/devspec.h"
#include "core/size.h"
#include "plan/plan.h"
#include "testutil.h"

static char g_dir[1024];   /* scratch directory (absolute) */
static int g_warns;        /* warnings logged since the last reset */
static char g_warn[8][512];/* [g_warns] their text (first 8) */

static void on_log(lyra_log_level level, const char *line, void *user) {
    (void)user;
    if (level > LYRA_LOG_WARN) return;
    if (g_warns < 8) snprintf(g_warn[g_warns], sizeof g_warn[0], "%s", line);
    g_warns++;
}

/* Write text to DIR/name; returns the path (static buffer rotated over 4). */
static const char *write_file(const char *name, const char *text) {
    static char paths[4][1200];
    static int turn;
    char *p = paths[turn++ & 3];
    snprintf(p, sizeof paths[0], "%s/%s", g_dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
    return p;
}

/* Load text as a file into a fresh config: the status and message. */
static int load_text(const char *text, char *msg, size_t cap, const char **path_out) {
    const char *p = write_file("cfg.json", text);
    if (path_out) *path_out = p;
    lyra_config *c = lyra_config_new();
    lyra_error err;
    lyra_err_clear(&err);
    int rc = lyra_config_load_file(c, p, &err);
    snprintf(msg, cap, "%s", err.msg);
    lyra_config_free(c);
    return rc;
}

/* The error for text must be exactly "PATH" + suffix, exit code 2. */
static void expect_error(const char *text, const char *suffix) {
    char msg[1024], want[2048];
    const char *p;
    int rc = load_text(text, msg, sizeof msg, &p);
    snprintf(want, sizeof want, "%s%s", p, suffix);
    CHECK(rc == LYRA_ERR_INPUT, "%s: rc %d", text, rc);
    CHECK(!strcmp(msg, want), "%s:\n  got  [%s]\n  want [%s]", text, msg, want);
}

/* The error's message must start with PATH + prefix. */
static void expect_error_prefix(const char *text, const char *prefix) {
    char msg[1024], want[2048];
    const char *p;
    int rc = load_text(text, msg, sizeof msg, &p);
    snprintf(want, sizeof want, "%s%s", p, prefix);
    CHECK(rc == LYRA_ERR_INPUT, "%s: rc %d", text, rc);
    CHECK(!strncmp(msg, want, strlen(want)), "%s:\n  got  [%s]\n  want [%s...]", text, msg, want);
}

static const char *val_str(const lyra_config *c, int k) {
    return json_is_string(c->value[k]) ? json_string_value(c->value[k]) : "(not a string)";
}

static void test_defaults(void) {
    lyra_config *c = lyra_config_new();
    CHECK(c != NULL, "new");
    for (int k = 0; k < LYRA_CFG_N_KEYS; k++) {
        json_t *d = json_loads(lyra_config_key_default(k), JSON_DECODE_ANY, NULL);
        CHECK(d && json_equal(d, c->value[k]), "default of %s", lyra_config_key_name(k));
        CHECK(!strcmp(c->source[k], "default"), "source of %s", lyra_config_key_name(k));
        json_decref(d);
    }
    /* the config's defaults are the library's */
    lyra_sampler_params sp = lyra_sampler_default_params(), want = sp;
    CHECK(lyra_config_apply_sampler(c, &sp) == 0, "no seed by default");
    CHECK(sp.temperature == want.temperature && sp.top_k == want.top_k && sp.top_p == want.top_p &&
              sp.min_p == want.min_p && sp.repeat_penalty == want.repeat_penalty,
          "sampler defaults: %g %d %g %g %g", sp.temperature, sp.top_k, sp.top_p, sp.min_p,
          sp.repeat_penalty);
    /* contexts inherit the model's geometry: all 0 */
    lyra_context_params cp = lyra_context_default_params();
    CHECK(cp.n_ctx == 0 && cp.n_batch == 0 && cp.n_threads == 0 && cp.kv_type == LYRA_KV_DEFAULT,
          "context defaults: %d %d %d %d", cp.n_ctx, cp.n_batch, cp.n_threads, (int)cp.kv_type);
    lyra_model_params mp = lyra_model_default_params(), mw = mp;
    lyra_error err;
    CHECK(lyra_config_apply_model(c, &mp, &err) == 0, "apply model");
    CHECK(mp.device_strategy == LYRA_DEVICE_MAP_AUTO && !mp.device_map && !mp.n_device_map &&
              !mp.device_map_source, "device_map auto");
    CHECK(!mp.max_memory && !mp.n_max_memory && !mp.reserve && !mp.n_reserve &&
              mp.gpu_layers == LYRA_GPU_LAYERS_UNSET && !mp.tensor_split && !mp.n_tensor_split,
          "no budgets");
    CHECK(mp.fallback == 1 && mw.fallback == 1, "fallback on by default");
    CHECK(mp.gpu_layers_fallback == mw.gpu_layers_fallback, "gpu_layers_fallback %d vs %d",
          mp.gpu_layers_fallback, mw.gpu_layers_fallback);
    /* the config's geometry is the library's defaults, made explicit */
    CHECK(mp.load_in_bits == 0 && mp.n_ctx == 0 && mp.n_batch == 512 && mp.kv_type == LYRA_KV_F16 &&
              mw.n_batch == 0 && mw.kv_type == LYRA_KV_DEFAULT && mp.n_threads == 0,
          "model defaults");
    lyra_config_gen g;
    CHECK(lyra_config_apply_gen(c, &g, &err) == 0, "apply gen");
    CHECK(g.max_new_tokens == 256 && g.n_stop == 0 && !g.model_id && !g.system_prompt &&
              !g.chat_template,
          "gen defaults");
    lyra_config_free(c);
}

static void test_seed_file(void) {
    const char *src = getenv("LYRA_SRC_DIR");
    char path[1200];
    snprintf(path, sizeof path, "%s/config/model_config.example.json", src ? src : ".");
    lyra_config *c = lyra_config_new();
    lyra_error err;
    lyra_err_clear(&err);
    g_warns = 0;
    int rc = lyra_config_load_file(c, path, &err);
    CHECK(rc == 0, "the seed's config validates: %s", err.msg);
    CHECK(g_warns == 0, "no warnings for the seed's config (%d: %s)", g_warns, g_warn[0]);
    CHECK(!strcmp(val_str(c, LYRA_CFG_MODEL_ID), "microsoft/phi-2"), "model_id");
    char *abs = realpath(path, NULL), want[1300];
    snprintf(want, sizeof want, "file:%s", abs ? abs : "?");
    CHECK(!strcmp(c->source[LYRA_CFG_MODEL_ID], want), "source %s want %s",
          c->source[LYRA_CFG_MODEL_ID], want);
    CHECK(!strcmp(c->source[LYRA_CFG_TOP_K], "default"), "top_k stays default");
    free(abs);
    lyra_model_params mp = lyra_model_default_params();
    CHECK(lyra_config_apply_model(c, &mp, &err) == 0, "apply");
    /* "6GB" is decimal, as in accelerate */
    CHECK(mp.n_max_memory == 2 && mp.max_memory[0].device == 0 &&
              mp.max_memory[0].bytes == 6000000000ull && mp.max_memory[1].device == LYRA_DEVICE_CPU &&
              mp.max_memory[1].bytes == 16000000000ull,
          "budgets in bytes");
    CHECK(mp.gpu_layers_fallback == 16 && mp.fallback == 1 &&
              mp.device_strategy == LYRA_DEVICE_MAP_AUTO, "fallback keys");
    lyra_config_gen g;
    lyra_config_apply_gen(c, &g, &err);
    CHECK(g.max_new_tokens == 4000, "max_new_tokens %lld", (long long)g.max_new_tokens);
    lyra_config_free(c);
}

static void test_errors(void) {
    /* syntax: line and column of the offending token */
    expect_error("{\n  \"a\": 1,\n  \"b\": yes\n}", ":3:8: invalid JSON: invalid token near 'yes'");
    expect_error("{\"max_memory\": {\"0\": \"6GB\",}}", ":1:28: invalid JSON: string or '}' expected near '}'");
    expect_error("{\"seed\": 1,\n \"seed\": 2}", ":2:2: invalid JSON: duplicate object key near '\"seed\"'");
    expect_error_prefix("", ":1:0: invalid JSON: ");
    expect_error("[1, 2]", ": expected a JSON object {\"key\": value, ...} at the top level, got an array");
    /* unknown keys with a suggestion */
    expect_error("{\"max_memroy\": {}}", ": max_memroy: unknown key (did you mean max_memory?)");
    expect_error("{\"device-map\": \"auto\"}", ": device-map: unknown key (did you mean device_map?)");
    expect_error("{\"max_new_tokens\": 5}",
                 ": max_new_tokens: unknown key (did you mean pipeline_kwargs.max_new_tokens "
                 "(inside pipeline_kwargs)?)");
    expect_error("{\"pipeline_kwargs\": {\"temprature\": 0.5}}",
                 ": pipeline_kwargs.temprature: unknown key (did you mean temperature?)");
    expect_error("{\"pipeline_kwargs\": {\"seed\": 1}}",
                 ": pipeline_kwargs.seed: unknown key (did you mean the top-level key seed?)");
    expect_error("{\"pipeline_kwargs.top_k\": 1}",
                 ": pipeline_kwargs.top_k: unknown key (did you mean {\"pipeline_kwargs\": {\"top_k\": ...}}?)");
    expect_error("{\"zzzzqqqq\": 1}", ": zzzzqqqq: unknown key (see docs/config.md for the keys)");
    /* wrong types */
    expect_error("{\"pipeline_kwargs\": {\"max_new_tokens\": \"4000\"}}",
                 ": pipeline_kwargs.max_new_tokens: expected an integer, got a string (\"4000\")");
    expect_error("{\"pipeline_kwargs\": {\"max_new_tokens\": 40.5}}",
                 ": pipeline_kwargs.max_new_tokens: expected an integer, got 40.5");
    expect_error("{\"enable_progressive_fallback\": \"yes\"}",
                 ": enable_progressive_fallback: expected true or false, got a string (\"yes\")");
    expect_error("{\"pipeline_kwargs\": [1]}", ": pipeline_kwargs: expected an object, got an array");
    expect_error("{\"batch_size\": null}", ": batch_size: expected an integer, got null");
    expect_error("{\"pipeline_kwargs\": {\"stop\": [\"a\", 3]}}",
                 ": pipeline_kwargs.stop.1: expected a string, got 3");
    /* out of range */
    expect_error("{\"pipeline_kwargs\": {\"top_p\": 1.5}}",
                 ": pipeline_kwargs.top_p: must be between 0 and 1, got 1.5");
    expect_error("{\"pipeline_kwargs\": {\"max_new_tokens\": -5}}",
                 ": pipeline_kwargs.max_new_tokens: must be >= -1, got -5");
    expect_error("{\"pipeline_kwargs\": {\"repetition_penalty\": 0}}",
                 ": pipeline_kwargs.repetition_penalty: must be > 0, got 0");
    expect_error("{\"threads\": 5000}", ": threads: must be between 0 and 4096, got 5000");
    expect_error("{\"context_length\": 3000000000}", ": context_length: must be between 0 and 16777216, got 3000000000");
    expect_error("{\"seed\": -1}", ": seed: must be between 0 and 18446744073709551615, got -1");
    expect_error("{\"kv_cache_type\": \"q8\"}", ": kv_cache_type: expected f16 or f32, got \"q8\"");
    expect_error("{\"chat_template\": \"alpaca\"}",
                 ": chat_template: expected auto, chatml, llama2, llama3, phi3, gemma, zephyr, "
                 "plain or none, got \"alpaca\"");
    expect_error("{\"gpu_layers\": -2}",
                 ": gpu_layers: -2: the number of GPU layers cannot be negative (0.. or all)");
    /* sizes, through the size parser */
    expect_error_prefix("{\"max_memory\": {\"0\": \"6XB\", \"cpu\": \"16GB\"}}",
                        ": max_memory.0: bad size \"6XB\"");
    expect_error_prefix("{\"max_memory\": {\"cpu\": \"16GB\", \"0\": \"6Gb\"}}",
                        ": max_memory.0: bad size \"6Gb\"");
    char msg[1024];
    load_text("{\"max_memory\": {\"0\": \"6Gb\"}}", msg, sizeof msg, NULL);
    CHECK(strstr(msg, "bits? write 6GB or 6GiB") != NULL, "bits hint: %s", msg);
    expect_error_prefix("{\"reserve\": {\"cpu\": \"2\"}}", ": reserve.cpu: bad size \"2\"");
    expect_error_prefix("{\"max_memory\": {\"gpu0\": \"1GB\"}}", ": max_memory: key \"gpu0\": unknown device");
    expect_error_prefix("{\"max_memory\": {\"0\": \"1GB\", \"cuda:0\": \"2GB\"}}",
                        ": max_memory: device 0 given twice");
    expect_error_prefix("{\"device_map\": \"everywhere\"}", ": device_map: unknown device map \"everywhere\"");
    expect_error("{\"device_map\": {\"model.layers\": \"tpu\"}}",
                 ": device_map.model.layers: unknown device a string (\"tpu\") (a GPU index such "
                 "as 0, \"0\" or \"cuda:0\", \"cpu\" or \"disk\")");
    expect_error_prefix("{\"tensor_split\": [3, -1]}", ": tensor_split: entry 1:");
    /* contradictions */
    expect_error("{\"load_in_8bit\": true, \"load_in_4bit\": true}",
                 ": load_in_4bit: conflicts with load_in_8bit: choose one");
    expect_error("{\"device_map\": {\"\": \"cpu\"}, \"gpu_layers\": 4}",
                 ": gpu_layers: conflicts with the explicit map in device_map: keep one "
                 "(--gpu-layers on the command line replaces the map)");
    expect_error("{\"device_map\": \"sequential\", \"tensor_split\": \"3,1\"}",
                 ": tensor_split: needs device_map \"auto\" or \"balanced\"");
    /* one is fine when the other is false */
    CHECK(load_text("{\"load_in_8bit\": true, \"load_in_4bit\": false}", msg, sizeof msg, NULL) == 0,
          "8bit alone: %s", msg);

    /* nothing loaded on error */
    lyra_config *c = lyra_config_new();
    lyra_error err;
    const char *p = write_file("ok.json", "{\"seed\": 7, \"pipeline_kwargs\": {\"top_k\": 5}}");
    CHECK(lyra_config_load_file(c, p, &err) == 0, "ok.json: %s", err.msg);
    json_t *before = lyra_config_show_json(c);
    p = write_file("bad.json", "{\"seed\": 9, \"threads\": 1, \"pipeline_kwargs\": {\"top_k\": -1}}");
    CHECK(lyra_config_load_file(c, p, &err) == LYRA_ERR_INPUT, "bad.json fails");
    json_t *after = lyra_config_show_json(c);
    CHECK(json_equal(before, after), "a failed load changes nothing");
    json_decref(before);
    json_decref(after);
    lyra_config_free(c);

    /* a missing file */
    c = lyra_config_new();
    char miss[1200];
    snprintf(miss, sizeof miss, "%s/nope.json", g_dir);
    CHECK(lyra_config_load_file(c, miss, &err) == LYRA_ERR_INPUT &&
              strstr(err.msg, "nope.json: cannot open") != NULL,
          "missing: %s", err.msg);
    lyra_config_free(c);
}

static void test_hf_keys(void) {
    lyra_config *c = lyra_config_new();
    lyra_error err;
    const char *p = write_file("hf.json",
                               "{\"torch_dtype\": \"float16\", \"trust_remote_code\": true, "
                               "\"low_cpu_mem_usage\": true, \"revision\": \"main\", "
                               "\"offload_folder\": \"off\", \"seed\": 3}");
    g_warns = 0;
    CHECK(lyra_config_load_file(c, p, &err) == 0, "HF keys accepted: %s", err.msg);
    /* torch_dtype is dtype, revision a key: a note for each of the other three */
    CHECK(g_warns == 3, "one note per ignored HF key: %d", g_warns);
    char want[1300];
    snprintf(want, sizeof want, "%s: trust_remote_code: ignored (", p);
    CHECK(!strncmp(g_warn[0], want, strlen(want)), "note: %s", g_warn[0]);
    CHECK(json_integer_value(c->value[LYRA_CFG_SEED]) == 3, "other keys still loaded");
    CHECK(!strcmp(json_string_value(c->value[LYRA_CFG_DTYPE]), "float16"), "torch_dtype is dtype");
    snprintf(want, sizeof want, "file:%s (torch_dtype)", p);
    CHECK(!strcmp(c->source[LYRA_CFG_DTYPE], want), "source names torch_dtype: %s", c->source[LYRA_CFG_DTYPE]);
    CHECK(!strcmp(json_string_value(c->value[LYRA_CFG_REVISION]), "main"), "revision read");
    lyra_config_free(c);
}

/* torch_dtype (transformers 4) and dtype (5): one key. Both in one file
 * agreeing: fine (source plain); differing: an error naming both; a bad
 * value names torch_dtype; the API takes either name, both differing from
 * one setter source is an error. */
static void test_torch_dtype(void) {
    lyra_config *c = lyra_config_new();
    lyra_error err;
    const char *p = write_file("td1.json", "{\"torch_dtype\": \"bfloat16\", \"dtype\": \"bfloat16\"}");
    CHECK(lyra_config_load_file(c, p, &err) == 0, "agreeing: %s", err.msg);
    CHECK(!strcmp(json_string_value(c->value[LYRA_CFG_DTYPE]), "bfloat16") &&
              !strstr(c->source[LYRA_CFG_DTYPE], "torch_dtype"), "agreeing: %s", c->source[LYRA_CFG_DTYPE]);
    p = write_file("td2.json", "{\"dtype\": \"float32\", \"torch_dtype\": \"float16\"}");
    CHECK(lyra_config_load_file(c, p, &err) == LYRA_ERR_INPUT && strstr(err.msg, "td2.json: torch_dtype: \"float16\" "
              "conflicts with dtype \"float32\"") && strstr(err.msg, "keep one"), "conflict: %s", err.msg);
    CHECK(!strcmp(json_string_value(c->value[LYRA_CFG_DTYPE]), "bfloat16"), "nothing changed on error");
    p = write_file("td3.json", "{\"torch_dtype\": \"int8\"}");
    CHECK(lyra_config_load_file(c, p, &err) == LYRA_ERR_INPUT && strstr(err.msg, "td3.json: torch_dtype: expected auto, "
              "float32, float16 or bfloat16, got \"int8\""), "bad value: %s", err.msg);
    lyra_config_free(c);
    c = lyra_config_new();
    CHECK(lyra_config_set(c, "torch_dtype", "float16", "api", NULL, &err) == 0 &&
              !strcmp(json_string_value(c->value[LYRA_CFG_DTYPE]), "float16"), "api torch_dtype: %s", err.msg);
    CHECK(lyra_config_set(c, "dtype", "float16", "api", NULL, &err) == 0, "api same: %s", err.msg);
    CHECK(lyra_config_set(c, "dtype", "float32", "api", NULL, &err) == LYRA_ERR_INPUT &&
              strstr(err.msg, "dtype: \"float32\" conflicts with \"float16\"") && strstr(err.msg, "torch_dtype"),
          "api conflict: %s", err.msg);
    CHECK(lyra_config_set(c, "torch_dtype", "x", "api", NULL, &err) == LYRA_ERR_INPUT &&
              !strncmp(err.msg, "torch_dtype: ", 13), "api bad value names the key: %s", err.msg);
    CHECK(lyra_config_set(c, "dtype", "float32", "flag:--dtype", "--dtype", &err) == 0, "a later layer wins: %s", err.msg);
    lyra_config_free(c);
}

/* "task" (issue 11): text-generation accepted without a note, anything else
 * an error naming the key and the value; strict makes notes errors. */
static void test_task(void) {
    lyra_config *c = lyra_config_new();
    lyra_error err;
    const char *p = write_file("task.json", "{\"task\": \"text-generation\", \"seed\": 4}");
    g_warns = 0;
    CHECK(lyra_config_load_file(c, p, &err) == 0 && g_warns == 0, "task accepted: %s", err.msg);
    CHECK(json_integer_value(c->value[LYRA_CFG_SEED]) == 4, "other keys loaded");
    p = write_file("task2.json", "{\"task\": \"fill-mask\"}");
    CHECK(lyra_config_load_file(c, p, &err) == LYRA_ERR_INPUT && strstr(err.msg, "task: unknown task \"fill-mask\"") &&
              strstr(err.msg, "text-generation"),
          "%s", err.msg);
    p = write_file("task3.json", "{\"trust_remote_code\": false}");
    c->strict = 1;
    CHECK(lyra_config_load_file(c, p, &err) == LYRA_ERR_INPUT && strstr(err.msg, "under --strict"), "%s",
          err.msg);
    lyra_config_free(c);
}

/* "discord" (issue 17): the Discord bot's object, accepted silently with
 * whatever it holds; anything but an object is an error naming the key. */
static void test_discord(void) {
    lyra_config *c = lyra_config_new();
    lyra_error err;
    const char *p = write_file("discord.json", "{\"discord\": {\"channels\": [\"1\"], \"kv_budget\": \"1MB\"}, "
                                               "\"seed\": 5}");
    g_warns = 0;
    c->strict = 1;
    CHECK(lyra_config_load_file(c, p, &err) == 0 && g_warns == 0, "discord accepted: %s", err.msg);
    CHECK(json_integer_value(c->value[LYRA_CFG_SEED]) == 5, "other keys loaded");
    p = write_file("discord2.json", "{\"discord\": [1]}");
    CHECK(lyra_config_load_file(c, p, &err) == LYRA_ERR_INPUT && strstr(err.msg, "discord: expected an object"),
          "%s", err.msg);
    lyra_config_free(c);
}

static void test_set(void) {
    lyra_config *c = lyra_config_new();
    lyra_error err;
    /* flag errors name the flag as typed; same wording as the command line's */
    CHECK(lyra_config_set(c, "temperature", "-1", "flag:--temp", "--temp", &err) == LYRA_ERR_INPUT &&
              !strcmp(err.msg, "--temp: must be >= 0, got -1"),
          "%s", err.msg);
    CHECK(lyra_config_set(c, "temperature", "nan", "flag:--temp", "--temp", &err) == LYRA_ERR_INPUT &&
              !strcmp(err.msg, "--temp: expected a number, got 'nan'"),
          "%s", err.msg);
    CHECK(lyra_config_set(c, "max_new_tokens", "abc", "flag:--n-predict", "-n", &err) ==
                  LYRA_ERR_INPUT && !strcmp(err.msg, "-n: expected an integer, got 'abc'"),
          "%s", err.msg);
    CHECK(lyra_config_set(c, "seed", "-5", "flag:--seed", "--seed", &err) == LYRA_ERR_INPUT &&
              !strcmp(err.msg, "--seed: expected an unsigned 64-bit integer, got '-5'"),
          "%s", err.msg);
    CHECK(lyra_config_set(c, "seed", "18446744073709551616", "flag:--seed", "--seed", &err) ==
              LYRA_ERR_INPUT,
          "2^64");
    CHECK(lyra_config_set(c, "max_memory", "0=6XB", "flag:--max-memory", "--max-memory", &err) ==
                  LYRA_ERR_INPUT && strstr(err.msg, "bad size \"6XB\"") != NULL,
          "%s", err.msg);
    /* the API setter: the key names the culprit */
    CHECK(lyra_config_set(c, "max_new_tokens", "4.5", "api", NULL, &err) == LYRA_ERR_INPUT &&
              !strcmp(err.msg, "pipeline_kwargs.max_new_tokens: expected an integer, got '4.5'"),
          "%s", err.msg);
    CHECK(lyra_config_set(c, "max_new_tokns", "1", "api", NULL, &err) == LYRA_ERR_INPUT &&
              !strcmp(err.msg, "max_new_tokns: unknown key (did you mean max_new_tokens?)"),
          "%s", err.msg);
    /* values */
    CHECK(lyra_config_set(c, "max_new_tokens", "4000", "api", NULL, &err) == 0, "%s", err.msg);
    CHECK(json_integer_value(c->value[LYRA_CFG_MAX_NEW_TOKENS]) == 4000 &&
              !strcmp(c->source[LYRA_CFG_MAX_NEW_TOKENS], "api"),
          "kwargs value");
    CHECK(lyra_config_set(c, "seed", "18446744073709551615", "flag:--seed", "--seed", &err) == 0,
          "%s", err.msg);
    lyra_sampler_params sp = lyra_sampler_default_params();
    CHECK(lyra_config_apply_sampler(c, &sp) == 1 && sp.seed == UINT64_MAX, "max seed");
    CHECK(lyra_config_set(c, "do_sample", "false", "flag:--greedy", "--greedy", &err) == 0, "greedy");
    lyra_config_apply_sampler(c, &sp);
    CHECK(sp.temperature == 0.0f, "do_sample false = greedy: %g", sp.temperature);
    /* stop strings from one source accumulate; another source replaces */
    lyra_config_set(c, "stop", "\n\n", "flag:--stop", "--stop", &err);
    lyra_config_set(c, "stop", "User:", "flag:--stop", "--stop", &err);
    lyra_config_gen g;
    lyra_config_apply_gen(c, &g, &err);
    CHECK(g.n_stop == 2 && !strcmp(g.stop[0], "\n\n") && !strcmp(g.stop[1], "User:"), "stop list %d",
          g.n_stop);
    lyra_config_set(c, "stop", "END", "api", NULL, &err);
    lyra_config_apply_gen(c, &g, &err);
    CHECK(g.n_stop == 1 && !strcmp(g.stop[0], "END"), "stop replaced %d", g.n_stop);
    /* load_in: both from one source is an error, from another the last wins */
    CHECK(lyra_config_set(c, "load_in_8bit", "true", "flag:--load-in-8bit", "--load-in-8bit", &err) == 0,
          "8bit");
    CHECK(lyra_config_set(c, "load_in_4bit", "true", "flag:--load-in-4bit", "--load-in-4bit", &err) ==
                  LYRA_ERR_INPUT &&
              !strcmp(err.msg, "--load-in-4bit: conflicts with load_in_8bit (flag:--load-in-8bit): "
                               "choose one"),
          "8bit + 4bit both flags: %s", err.msg);
    CHECK(lyra_config_set(c, "load_in_4bit", "true", "api", NULL, &err) == 0,
          "4bit from another layer");
    lyra_model_params mp = lyra_model_default_params();
    lyra_config_apply_model(c, &mp, &err);
    CHECK(mp.load_in_bits == 4, "load_in_bits %d", mp.load_in_bits);
    /* tensor_split: an array becomes the planner's fixed point, equal both ways */
    json_t *arr = json_pack("[f,f,i]", 0.6, 0.25, 3);
    CHECK(lyra_config_set_json(c, "tensor_split", arr, "api", NULL, &err) == 0, "%s", err.msg);
    lyra_config_apply_model(c, &mp, &err);
    CHECK(mp.n_tensor_split == 3 && mp.tensor_split[0] == 0.6f && mp.tensor_split[1] == 0.25f &&
              mp.tensor_split[2] == 3.0f, "split %d", (int)mp.n_tensor_split);
    float a[LYRA_MAX_TENSOR_SPLIT], b[LYRA_MAX_TENSOR_SPLIT];
    int na = 0, nb = 0;
    CHECK(lyra_devspec_split_from_json(arr, "t", a, &na, &err) == 0 &&
              lyra_devspec_split_parse("0.6,0.25,3", "t", b, &nb, &err) == 0 && na == 3 &&
              nb == 3 && !memcmp(a, b, sizeof a[0] * 3) && !memcmp(a, mp.tensor_split, sizeof a[0] * 3),
          "split: the array and the string give the same floats");
    json_decref(arr);
    /* gpu_layers "all" */
    lyra_config_set(c, "gpu_layers", "all", "flag:--gpu-layers", "--gpu-layers", &err);
    lyra_config_apply_model(c, &mp, &err);
    CHECK(mp.gpu_layers == LYRA_GPU_LAYERS_ALL, "gpu_layers all");
    /* fallback policy none turns fallback off */
    lyra_config_set(c, "fallback_policy", "none", "flag:--fallback-policy", "--fallback-policy", &err);
    lyra_config_apply_model(c, &mp, &err);
    CHECK(mp.fallback == 0 && mp.fallback_policy == LYRA_FALLBACK_NONE, "policy none");
    lyra_config_set(c, "fallback_policy", "context", "flag:--fallback-policy", "--fallback-policy", &err);
    lyra_config_apply_model(c, &mp, &err);
    CHECK(mp.fallback == 1 && mp.fallback_policy == LYRA_FALLBACK_CONTEXT, "policy context");
    /* as the command line's flags do: a later --no-fallback / --fallback /
     * --fallback-policy wins */
    lyra_config_set(c, "enable_progressive_fallback", "false", "flag:--no-fallback", "--no-fallback", &err);
    lyra_config_apply_model(c, &mp, &err);
    CHECK(mp.fallback == 0 && mp.fallback_policy == LYRA_FALLBACK_NONE, "--no-fallback");
    lyra_config_set(c, "fallback_policy", "layers", "flag:--fallback-policy", "--fallback-policy", &err);
    lyra_config_apply_model(c, &mp, &err);
    CHECK(mp.fallback == 1 && mp.fallback_policy == LYRA_FALLBACK_LAYERS, "policy after --no-fallback");
    lyra_config_set(c, "fallback_policy", "none", "flag:--fallback-policy", "--fallback-policy", &err);
    lyra_config_set(c, "enable_progressive_fallback", "true", "flag:--fallback", "--fallback", &err);
    lyra_config_apply_model(c, &mp, &err);
    CHECK(mp.fallback == 1 && mp.fallback_policy == LYRA_FALLBACK_LAYERS, "--fallback after none");
    lyra_config_free(c);
    /* within one file both stand: fallback only when both say so */
    c = lyra_config_new();
    const char *p = write_file("fb.json", "{\"enable_progressive_fallback\": false, \"fallback_policy\": \"context\"}");
    CHECK(lyra_config_load_file(c, p, &err) == 0, "%s", err.msg);
    lyra_config_apply_model(c, &mp, &err);
    CHECK(mp.fallback == 0, "file: enable false + policy context = off");
    lyra_config_free(c);
}

static void test_merge(void) {
    lyra_config *c = lyra_config_new();
    lyra_error err;
    const char *p = write_file("m.json",
                               "{\"device_map\": {\"\": \"cpu\", \"lm_head\": 0},"
                               " \"max_memory\": {\"0\": \"6GB\", \"cpu\": \"16GB\"},"
                               " \"reserve\": {\"cpu\": \"1GiB\"},"
                               " \"pipeline_kwargs\": {\"max_new_tokens\": 100, \"top_k\": 7}}");
    CHECK(lyra_config_load_file(c, p, &err) == 0, "%s", err.msg);
    char *abs = realpath(p, NULL), fsrc[1300];
    snprintf(fsrc, sizeof fsrc, "file:%s", abs);
    free(abs);
    /* max_memory per entry */
    CHECK(lyra_config_set(c, "max_memory", "cpu=8GiB, 1=2GB", "flag:--max-memory", "--max-memory", &err) == 0,
          "%s", err.msg);
    lyra_model_params mp = lyra_model_default_params();
    CHECK(lyra_config_apply_model(c, &mp, &err) == 0, "%s", err.msg);
    CHECK(mp.n_max_memory == 3 && mp.max_memory[0].device == 0 &&
              mp.max_memory[0].bytes == 6000000000ull && mp.max_memory[1].device == LYRA_DEVICE_CPU &&
              mp.max_memory[1].bytes == (8ull << 30) && mp.max_memory[2].device == 1 &&
              mp.max_memory[2].bytes == 2000000000ull,
          "merged, in order: %d", (int)mp.n_max_memory);
    CHECK(!strcmp(json_string_value(json_object_get(c->entry_source[0], "0")), fsrc) &&
              !strcmp(json_string_value(json_object_get(c->entry_source[0], "cpu")), "flag:--max-memory"),
          "entry sources");
    CHECK(mp.device_strategy == LYRA_DEVICE_MAP_EXPLICIT && mp.n_device_map == 2 &&
              !strcmp(mp.device_map[0].module, "") && mp.device_map[0].device == LYRA_DEVICE_CPU &&
              !strcmp(mp.device_map[1].module, "lm_head") && mp.device_map[1].device == 0 &&
              mp.device_map_source && !strncmp(mp.device_map_source, fsrc + 5, strlen(fsrc + 5)) &&
              !strcmp(mp.device_map_source + strlen(fsrc + 5), ": device_map"),
          "explicit map as typed entries: %d", (int)mp.n_device_map);
    /* pipeline_kwargs per key */
    lyra_config_set(c, "top_k", "9", "flag:--top-k", "--top-k", &err);
    CHECK(json_integer_value(c->value[LYRA_CFG_MAX_NEW_TOKENS]) == 100 &&
              !strcmp(c->source[LYRA_CFG_MAX_NEW_TOKENS], fsrc) &&
              json_integer_value(c->value[LYRA_CFG_TOP_K]) == 9 &&
              !strcmp(c->source[LYRA_CFG_TOP_K], "flag:--top-k"),
          "pipeline_kwargs merge per key");
    /* --gpu-layers replaces the file's explicit map, no contradiction */
    CHECK(lyra_config_set(c, "gpu_layers", "3", "flag:--gpu-layers", "--gpu-layers", &err) == 0,
          "%s", err.msg);
    CHECK(json_is_string(c->value[LYRA_CFG_DEVICE_MAP]) &&
              !strcmp(val_str(c, LYRA_CFG_DEVICE_MAP), "auto") &&
              !strcmp(c->source[LYRA_CFG_DEVICE_MAP], "flag:--gpu-layers"),
          "map replaced");
    lyra_config_apply_model(c, &mp, &err);
    CHECK(mp.gpu_layers == 3 && !mp.n_device_map && mp.device_strategy == LYRA_DEVICE_MAP_AUTO,
          "gpu_layers 3 on auto");
    /* device_map replaced whole; a flag's map file drops a file's gpu_layers */
    lyra_config_free(c);
    c = lyra_config_new();
    p = write_file("g.json", "{\"gpu_layers\": 10, \"device_map\": \"sequential\"}");
    CHECK(lyra_config_load_file(c, p, &err) == 0, "%s", err.msg);
    const char *mf = write_file("map.json", "{\"\": \"disk\", \"model.layers.1\": \"cuda:1\"}");
    lyra_config_set(c, "device_map", mf, "flag:--device-map", "--device-map", &err);
    CHECK(lyra_config_apply_model(c, &mp, &err) == 0, "%s", err.msg);
    CHECK(mp.device_strategy == LYRA_DEVICE_MAP_EXPLICIT && mp.n_device_map == 2 &&
              mp.device_map[0].device == LYRA_DEVICE_DISK && mp.device_map[1].device == 1 &&
              mp.device_map_source && !strcmp(mp.device_map_source, mf) &&
              mp.gpu_layers == LYRA_GPU_LAYERS_UNSET,
          "a flag's map file (read at apply) drops the file's gpu_layers");
    /* a map file that is not there: the error names it, at apply */
    lyra_config_set(c, "device_map", "/nonexistent/m.json", "flag:--device-map", "--device-map", &err);
    CHECK(lyra_config_apply_model(c, &mp, &err) == LYRA_ERR_INPUT &&
              !strncmp(err.msg, "/nonexistent/m.json: cannot read device map: ", 44),
          "missing map file: %s", err.msg);
    lyra_config_set(c, "device_map", "{\"\": 0}", "flag:--device-map", "--device-map", &err);
    lyra_config_apply_model(c, &mp, &err);
    CHECK(mp.device_strategy == LYRA_DEVICE_MAP_EXPLICIT && mp.n_device_map == 1 &&
              mp.device_map[0].device == 0 && !mp.device_map_source, "inline JSON map");
    /* file_json round trip */
    json_t *fj = lyra_config_file_json(c);
    char *text = json_dumps(fj, 0);
    lyra_config *c2 = lyra_config_new();
    CHECK(text && lyra_config_load_buffer(c2, text, strlen(text), "rt.json", &err) == 0, "%s", err.msg);
    for (int k = 0; k < LYRA_CFG_N_KEYS; k++)
        CHECK(json_equal(c->value[k], c2->value[k]), "round trip %s", lyra_config_key_name(k));
    free(text);
    json_decref(fj);
    lyra_config_free(c2);
    lyra_config_free(c);
}

/* Discovery: each rung, in a scratch tree with its own cwd, HOME and XDG. */
static void test_discovery(void) {
    char home[1100], xdg[1100], work[1100], p[1400];
    snprintf(home, sizeof home, "%s/home", g_dir);
    snprintf(xdg, sizeof xdg, "%s/xdg", g_dir);
    snprintf(work, sizeof work, "%s/work", g_dir);
    mkdir(home, 0700);
    snprintf(p, sizeof p, "%s/.config", home); mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/.config/lyra", home); mkdir(p, 0700);
    mkdir(xdg, 0700);
    snprintf(p, sizeof p, "%s/lyra", xdg); mkdir(p, 0700);
    mkdir(work, 0700);
    snprintf(p, sizeof p, "%s/config", work); mkdir(p, 0700);
    char f_home[1200], f_cwd[1200], f_env[1200];
    snprintf(f_home, sizeof f_home, "%s", write_file("home/.config/lyra/model_config.json", "{\"seed\": 1}"));
    write_file("xdg/lyra/model_config.json", "{\"seed\": 2}");
    snprintf(f_cwd, sizeof f_cwd, "%s", write_file("work/config/model_config.json", "{\"seed\": 3}"));
    snprintf(f_env, sizeof f_env, "%s", write_file("env.json", "{\"seed\": 4}"));
    char f_flag[1200];
    snprintf(f_flag, sizeof f_flag, "%s/flag.json", g_dir);
    write_file("flag.json", "{\"seed\": 5}");
    char old[1200];
    if (!getcwd(old, sizeof old)) old[0] = '\0';
    CHECK(chdir(work) == 0, "chdir");
    setenv("HOME", home, 1);
    setenv("XDG_CONFIG_HOME", xdg, 1);
    setenv("LYRA_MODEL_CONFIG", f_env, 1);
    struct { const char *flag; int no; long want; const char *how; } rung[] = {
        {f_flag, 0, 5, "--model-config"},
        {NULL, 0, 4, "LYRA_MODEL_CONFIG"},
        {NULL, 0, 3, "./config/model_config.json"},
        {NULL, 0, 2, "$XDG_CONFIG_HOME"},
        {NULL, 0, 1, "$HOME/.config"},
        {NULL, 0, -1, "none"},
    };
    for (int i = 0; i < 6; i++) {
        if (i == 2) unsetenv("LYRA_MODEL_CONFIG");
        if (i == 3) unlink(f_cwd);
        if (i == 4) unsetenv("XDG_CONFIG_HOME");
        if (i == 5) unlink(f_home);
        lyra_config *c = lyra_config_new();
        lyra_error err;
        lyra_err_clear(&err);
        int rc = lyra_config_load_auto(c, rung[i].flag, rung[i].no, &err);
        long got = json_is_integer(c->value[LYRA_CFG_SEED]) ? (long)json_integer_value(c->value[LYRA_CFG_SEED]) : -1;
        CHECK(rc == 0 && got == rung[i].want && !strcmp(c->how, rung[i].how),
              "rung %d: rc %d seed %ld how %s (%s)", i, rc, got, c->how, err.msg);
        lyra_config_free(c);
    }
    /* --no-config and LYRA_MODEL_CONFIG=none turn discovery off */
    write_file("work/config/model_config.json", "{\"seed\": 3}");
    lyra_config *c = lyra_config_new();
    lyra_error err;
    CHECK(lyra_config_load_auto(c, NULL, 1, &err) == 0 && json_is_null(c->value[LYRA_CFG_SEED]) &&
              !strcmp(c->how, "--no-config"),
          "--no-config");
    setenv("LYRA_MODEL_CONFIG", "none", 1);
    CHECK(lyra_config_load_auto(c, NULL, 0, &err) == 0 && json_is_null(c->value[LYRA_CFG_SEED]) &&
              !strcmp(c->how, "LYRA_MODEL_CONFIG=none"),
          "LYRA_MODEL_CONFIG=none");
    /* a named file that is missing is an error, not a fallback */
    setenv("LYRA_MODEL_CONFIG", "/nonexistent/x.json", 1);
    CHECK(lyra_config_load_auto(c, NULL, 0, &err) == LYRA_ERR_INPUT &&
              !strncmp(err.msg, "LYRA_MODEL_CONFIG: /nonexistent/x.json: ", 40),
          "missing env file: %s", err.msg);
    unsetenv("LYRA_MODEL_CONFIG");
    CHECK(lyra_config_load_auto(c, "/nonexistent/y.json", 0, &err) == LYRA_ERR_INPUT &&
              !strncmp(err.msg, "--model-config: /nonexistent/y.json: ", 37),
          "missing flag file: %s", err.msg);
    CHECK(lyra_config_load_auto(c, f_flag, 1, &err) == LYRA_ERR_INPUT &&
              !strcmp(err.msg, "--no-config: conflicts with --model-config"),
          "both: %s", err.msg);
    /* an invalid discovered file is an error naming it */
    write_file("work/config/model_config.json", "{\"seed\": \"x\"}");
    CHECK(lyra_config_load_auto(c, NULL, 0, &err) == LYRA_ERR_INPUT &&
              !strcmp(err.msg, "config/model_config.json: seed: expected an unsigned 64-bit "
                               "integer, got a string (\"x\")"),
          "invalid discovered: %s", err.msg);
    lyra_config_free(c);
    if (old[0] && chdir(old)) fprintf(stderr, "cannot go back to %s\n", old);
}

int main(void) {
    char *abs = realpath(test_tmp_dir(), NULL); /* the discovery test changes directory */
    snprintf(g_dir, sizeof g_dir, "%s", abs ? abs : test_tmp_dir());
    free(abs);
    lyra_log_set(on_log, LYRA_LOG_WARN, NULL);
    test_defaults();
    test_seed_file();
    test_errors();
    test_hf_keys();
    test_torch_dtype();
    test_task();
    test_discord();
    test_set();
    test_merge();
    test_discovery();
    return test_done();
}
