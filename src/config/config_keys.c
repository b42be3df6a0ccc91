/* config_keys.c: the config keys (names, flags, types, ranges, defaults),
 * the checker every value goes through (files, flags and API setters alike),
 * and the "did you mean" suggestions for unknown keys. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_impl.h"
#include "config/devspec.h"
#include "core/size.h"

#define I32 INT32_MAX
#define CTX_MAX (1 << 24) /* context_length: 16M positions, far past any model's */

/* name, flag, type, nullable, imin, imax, dmin, dmax, dmin_open, choices, default */
const cfg_def lyra_cfg_defs[LYRA_CFG_N_KEYS] = {
    [LYRA_CFG_MODEL_ID] = {"model_id", "--model", CFG_STRING, 1, 0, 0, 0, 0, 0, NULL, "null"},
    [LYRA_CFG_REVISION] = {"revision", "--revision", CFG_STRING, 1, 0, 0, 0, 0, 0, NULL, "null"},
    [LYRA_CFG_DEVICE_MAP] = {"device_map", "--device-map", CFG_DEVICE_MAP, 0, 0, 0, 0, 0, 0, NULL,
                             "\"auto\""},
    [LYRA_CFG_MAX_MEMORY] = {"max_memory", "--max-memory", CFG_MEMSPEC, 0, 0, 0, 0, 0, 0, NULL, "{}"},
    [LYRA_CFG_RESERVE] = {"reserve", "--reserve", CFG_MEMSPEC, 0, 0, 0, 0, 0, 0, NULL, "{}"},
    [LYRA_CFG_GPU_LAYERS] = {"gpu_layers", "--gpu-layers", CFG_GPU_LAYERS, 1, 0, 0, 0, 0, 0, NULL,
                             "null"},
    [LYRA_CFG_TENSOR_SPLIT] = {"tensor_split", "--tensor-split", CFG_SPLIT, 1, 0, 0, 0, 0, 0, NULL,
                               "null"},
    [LYRA_CFG_GPU_LAYERS_FALLBACK] = {"gpu_layers_fallback", "--gpu-layers-fallback", CFG_INT, 1, -1,
                                      I32, 0, 0, 0, NULL, "null"},
    [LYRA_CFG_FALLBACK] = {"enable_progressive_fallback", "--fallback", CFG_BOOL, 0, 0, 0, 0, 0, 0,
                           NULL, "true"},
    [LYRA_CFG_FALLBACK_POLICY] = {"fallback_policy", "--fallback-policy", CFG_STRING, 0, 0, 0, 0, 0,
                                  0, "layers|context|none", "\"layers\""},
    [LYRA_CFG_LOAD_IN_8BIT] = {"load_in_8bit", "--load-in-8bit", CFG_BOOL, 0, 0, 0, 0, 0, 0, NULL,
                               "false"},
    [LYRA_CFG_LOAD_IN_4BIT] = {"load_in_4bit", "--load-in-4bit", CFG_BOOL, 0, 0, 0, 0, 0, 0, NULL,
                               "false"},
    [LYRA_CFG_DTYPE] = {"dtype", "--dtype", CFG_STRING, 0, 0, 0, 0, 0, 0, "auto|float32|float16|bfloat16",
                        "\"auto\""},
    [LYRA_CFG_CONTEXT_LENGTH] = {"context_length", "--ctx", CFG_INT, 0, 0, CTX_MAX, 0, 0, 0, NULL, "0"},
    [LYRA_CFG_BATCH_SIZE] = {"batch_size", "--batch", CFG_INT, 0, 1, I32, 0, 0, 0, NULL, "512"},
    [LYRA_CFG_KV_CACHE_TYPE] = {"kv_cache_type", "--kv-type", CFG_STRING, 0, 0, 0, 0, 0, 0, "f16|f32",
                                "\"f16\""},
    [LYRA_CFG_THREADS] = {"threads", "--threads", CFG_INT, 0, 0, 4096, 0, 0, 0, NULL, "0"},
    [LYRA_CFG_SEED] = {"seed", "--seed", CFG_SEED, 1, 0, 0, 0, 0, 0, NULL, "null"},
    [LYRA_CFG_SYSTEM_PROMPT] = {"system_prompt", "--system-prompt", CFG_STRING, 1, 0, 0, 0, 0, 0, NULL,
                                "null"},
    [LYRA_CFG_CHAT_TEMPLATE] = {"chat_template", "--chat-template", CFG_STRING, 1, 0, 0, 0, 0, 0,
                                "auto|chatml|llama2|llama3|phi3|gemma|zephyr|plain|none", "null"},
    [LYRA_CFG_MAX_NEW_TOKENS] = {"pipeline_kwargs.max_new_tokens", "--n-predict", CFG_INT, 0, -1, I32,
                                 0, 0, 0, NULL, "256"},
    [LYRA_CFG_TEMPERATURE] = {"pipeline_kwargs.temperature", "--temp", CFG_NUMBER, 0, 0, 0, 0.0,
                              HUGE_VAL, 0, NULL, "0.8"},
    [LYRA_CFG_DO_SAMPLE] = {"pipeline_kwargs.do_sample", "--greedy", CFG_BOOL, 0, 0, 0, 0, 0, 0, NULL,
                            "true"},
    [LYRA_CFG_TOP_K] = {"pipeline_kwargs.top_k", "--top-k", CFG_INT, 0, 0, I32, 0, 0, 0, NULL, "40"},
    [LYRA_CFG_TOP_P] = {"pipeline_kwargs.top_p", "--top-p", CFG_NUMBER, 0, 0, 0, 0.0, 1.0, 0, NULL,
                        "0.95"},
    [LYRA_CFG_MIN_P] = {"pipeline_kwargs.min_p", "--min-p", CFG_NUMBER, 0, 0, 0, 0.0, 1.0, 0, NULL,
                        "0.05"},
    [LYRA_CFG_REPETITION_PENALTY] = {"pipeline_kwargs.repetition_penalty", "--repeat-penalty",
                                     CFG_NUMBER, 0, 0, 0, 0.0, HUGE_VAL, 1, NULL, "1.0"},
    [LYRA_CFG_STOP] = {"pipeline_kwargs.stop", "--stop", CFG_STOP, 0, 0, 0, 0, 0, 0, NULL, "[]"},
    [LYRA_CFG_SERVER_HOST] = {"server_host", "--host", CFG_STRING, 0, 0, 0, 0, 0, 0, NULL, "\"127.0.0.1\""},
    [LYRA_CFG_SERVER_PORT] = {"server_port", "--port", CFG_INT, 0, 0, 65535, 0, 0, 0, NULL, "8080"},
    [LYRA_CFG_SERVER_PARALLEL] = {"server_parallel", "--parallel", CFG_INT, 0, 1, 256, 0, 0, 0, NULL, "4"},
    [LYRA_CFG_SERVER_QUEUE] = {"server_queue", "--queue", CFG_INT, 0, 1, 65536, 0, 0, 0, NULL, "64"},
    [LYRA_CFG_FALLBACK_ACROSS_RANKS] = {"fallback_across_ranks", "--fallback-across-ranks", CFG_BOOL, 0, 0,
                                        0, 0, 0, 0, NULL, "false"},
};

#define PK "pipeline_kwargs."
#define PK_LEN (sizeof PK - 1)
#define MAX_STOP 64

/* ------------------------------------------------------------------ names */

int lyra_config_key_find(const char *name) {
    if (!name) return -1;
    if (!strcmp(name, LYRA_CFG_TORCH_DTYPE)) return LYRA_CFG_DTYPE; /* transformers 4's name */
    for (int k = 0; k < LYRA_CFG_N_KEYS; k++) {
        const char *n = lyra_cfg_defs[k].name;
        if (!strcmp(name, n)) return k;
        if (!strncmp(n, PK, PK_LEN) && !strcmp(name, n + PK_LEN)) return k;
    }
    return -1;
}

const char *lyra_config_key_name(int k) {
    return k >= 0 && k < LYRA_CFG_N_KEYS ? lyra_cfg_defs[k].name : "?";
}

const char *lyra_config_key_flag(int k) {
    return k >= 0 && k < LYRA_CFG_N_KEYS ? lyra_cfg_defs[k].flag : "?";
}

int lyra_config_key_quiet(const lyra_config *c, int k) {
    return k == LYRA_CFG_FALLBACK_ACROSS_RANKS && !strcmp(c->source[k], "default") && json_is_false(c->value[k]);
}

const char *lyra_config_key_default(int k) {
    return k >= 0 && k < LYRA_CFG_N_KEYS ? lyra_cfg_defs[k].defval : "null";
}

/* Keys of Hugging Face configs and pipeline() calls that lyra has no use
 * for: level 0 top level only, 1 inside pipeline_kwargs only, 2 both. */
static const struct hf_key {
    const char *name;
    int level;
    const char *why;
} HF_KEYS[] = {
    {"trust_remote_code", 0, "lyra runs no code from model repositories"},
    {"low_cpu_mem_usage", 0, "lyra always maps the weights (see --no-mmap)"},
    {"offload_folder", 0, "the disk tier reads straight from the model file"},
    {"attn_implementation", 0, "lyra has one attention kernel per backend"},
    {"device", 0, "device_map places the model (\"cpu\", \"cuda:0\", \"auto\")"},
    {"tokenizer", 0, "the tokenizer comes with the model (GGUF metadata or the snapshot's tokenizer.json)"},
    {"use_fast", 0, "lyra has one tokenizer, read from the model"},
    {"framework", 0, "lyra runs GGUF and safetensors models itself"},
    {"token", 0, "lyra downloads nothing (models come from the local Hugging Face cache)"},
    {"use_auth_token", 0, "lyra downloads nothing (models come from the local Hugging Face cache)"},
    {"return_full_text", 2, "lyra prints only the new text"},
    {"max_length", 2, "use pipeline_kwargs.max_new_tokens and context_length"},
    {"num_beams", 2, "lyra decodes one sequence: 1 is the only value"},
    {"pad_token_id", 2, "lyra runs one sequence at a time: nothing is padded"},
    {"eos_token_id", 2, "the model's end-of-generation tokens stop it (see pipeline_kwargs.stop)"},
    {"num_return_sequences", 2, "lyra returns one sequence: 1 is the only value"},
    {"clean_up_tokenization_spaces", 2, "lyra's detokenizer follows the model's tokenizer"},
    {"return_tensors", 2, "lyra returns text"},
};

const char *lyra_cfg_hf_ignored(const char *name, int in_pipeline) {
    for (size_t i = 0; i < sizeof HF_KEYS / sizeof HF_KEYS[0]; i++)
        if (!strcmp(name, HF_KEYS[i].name) && HF_KEYS[i].level != (in_pipeline ? 0 : 1))
            return HF_KEYS[i].why;
    return NULL;
}

char *lyra_cfg_strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

const char *lyra_cfg_quote(const char *s, char *buf, size_t cap) {
    return lyra_size_quote(s, strlen(s), buf, cap);
}

/* -------------------------------------------------------------- did you mean */

/* Optimal string alignment distance of a and b, compared without case and
 * with '-' = '_' (names are short: at most 63 bytes are looked at). */
int lyra_config_name_distance(const char *a, const char *b) {
    char x[64], y[64];
    size_t n = 0, m = 0;
    for (; a[n] && n < 63; n++) x[n] = (char)(a[n] == '-' ? '_' : (a[n] >= 'A' && a[n] <= 'Z' ? a[n] + 32 : a[n]));
    for (; b[m] && m < 63; m++) y[m] = (char)(b[m] == '-' ? '_' : (b[m] >= 'A' && b[m] <= 'Z' ? b[m] + 32 : b[m]));
    int d[64][64];
    for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            int c = x[i - 1] != y[j - 1];
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + c < v) v = d[i - 1][j - 1] + c;
            if (i > 1 && j > 1 && x[i - 1] == y[j - 2] && x[i - 2] == y[j - 1] && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[n][m];
}

/* Keep cand (displayed as shown) when it is closer than the best so far. */
static void consider(const char *name, const char *cand, const char *shown, int *best,
                     char *buf, size_t cap) {
    size_t len = strlen(name);
    int limit = len <= 3 ? 1 : len <= 6 ? 2 : 3;
    int d = lyra_config_name_distance(name, cand);
    if (d <= limit && d < *best) {
        *best = d;
        snprintf(buf, cap, "%s", shown);
    }
}

const char *lyra_config_suggest(const char *name, int in_pipeline, char *buf, size_t cap) {
    char best_s[96] = "";
    int best = 1000;
    if (cap) buf[0] = '\0';
    if (!name || strlen(name) > 63) return buf;
    /* a dotted path written as one key: "pipeline_kwargs.top_k", "max_memory.0" */
    const char *dot = strchr(name, '.');
    if (!in_pipeline && dot && dot[1]) {
        int len = (int)(dot - name);
        int known = len == (int)PK_LEN - 1 && !strncmp(name, PK, PK_LEN - 1);
        for (int k = 0; k < LYRA_CFG_N_KEYS && !known; k++)
            known = (int)strlen(lyra_cfg_defs[k].name) == len && !strncmp(lyra_cfg_defs[k].name, name, (size_t)len);
        if (known) {
            snprintf(buf, cap, "did you mean {\"%.*s\": {\"%s\": ...}}?", len, name, dot + 1);
            return buf;
        }
    }
    /* the same level first, then the other level (a key put in the wrong place) */
    for (int pass = 0; pass < 2; pass++) {
        int want_pk = pass == 0 ? in_pipeline : !in_pipeline;
        for (int k = 0; k < LYRA_CFG_N_KEYS; k++) {
            const char *n = lyra_cfg_defs[k].name;
            int is_pk = !strncmp(n, PK, PK_LEN);
            if (is_pk != want_pk) continue;
            const char *bare = is_pk ? n + PK_LEN : n;
            char shown[96];
            if (pass == 0) snprintf(shown, sizeof shown, "%s", bare);
            else if (is_pk) snprintf(shown, sizeof shown, "%s (inside pipeline_kwargs)", n);
            else snprintf(shown, sizeof shown, "the top-level key %s", n);
            consider(name, bare, shown, &best, best_s, sizeof best_s);
        }
        if (!want_pk) {
            const char *shown = pass == 0 ? "pipeline_kwargs" : "the top-level key pipeline_kwargs";
            consider(name, "pipeline_kwargs", shown, &best, best_s, sizeof best_s);
            consider(name, "task", pass == 0 ? "task" : "the top-level key task", &best, best_s,
                     sizeof best_s);
            consider(name, "quantization_config", "quantization_config", &best, best_s, sizeof best_s);
            consider(name, LYRA_CFG_TORCH_DTYPE, pass == 0 ? LYRA_CFG_TORCH_DTYPE : "the top-level key torch_dtype",
                     &best, best_s, sizeof best_s);
        }
        for (size_t i = 0; i < sizeof HF_KEYS / sizeof HF_KEYS[0]; i++)
            if ((HF_KEYS[i].level == 2 || HF_KEYS[i].level == (want_pk ? 1 : 0)) &&
                strcmp(name, HF_KEYS[i].name))
                consider(name, HF_KEYS[i].name, HF_KEYS[i].name, &best, best_s, sizeof best_s);
        if (best == 0) break;
    }
    if (best_s[0]) snprintf(buf, cap, "did you mean %s?", best_s);
    return buf;
}

/* ------------------------------------------------------------------ check */

void lyra_cfg_describe(const json_t *v, char *buf, size_t cap) {
    char q[256];
    switch (json_typeof(v)) {
    case JSON_STRING:
        lyra_size_quote(json_string_value(v), json_string_length(v), q, sizeof q);
        snprintf(buf, cap, "a string (\"%s\")", q);
        break;
    case JSON_INTEGER: snprintf(buf, cap, "%lld", (long long)json_integer_value(v)); break;
    case JSON_REAL: snprintf(buf, cap, "%g", json_real_value(v)); break;
    case JSON_TRUE: snprintf(buf, cap, "true"); break;
    case JSON_FALSE: snprintf(buf, cap, "false"); break;
    case JSON_NULL: snprintf(buf, cap, "null"); break;
    case JSON_OBJECT: snprintf(buf, cap, "an object"); break;
    case JSON_ARRAY: snprintf(buf, cap, "an array"); break;
    default: snprintf(buf, cap, "?"); break;
    }
}

/* "expected WHAT, got V" */
static int wrong_type(const json_t *v, const char *where, const char *what, lyra_error *err) {
    char d[300];
    lyra_cfg_describe(v, d, sizeof d);
    return lyra_err(err, LYRA_ERR_INPUT, where, "expected %s, got %s", what, d);
}

static int check_string(const cfg_def *def, const json_t *v, const char *where, lyra_error *err) {
    if (!json_is_string(v)) return wrong_type(v, where, "a string", err);
    const char *s = json_string_value(v);
    if (def == &lyra_cfg_defs[LYRA_CFG_MODEL_ID] && !s[0])
        return lyra_err(err, LYRA_ERR_INPUT, where, "empty (a GGUF file, a directory or org/name)");
    if (def == &lyra_cfg_defs[LYRA_CFG_REVISION] &&
        (!s[0] || strstr(s, "..") || s[0] == '/' || strlen(s) > 255 || strpbrk(s, ":@\\"))) {
        char q[256];
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "\"%s\" is not a branch, tag or commit name (e.g. \"main\", \"v1.0\" or a commit hash)",
                        lyra_cfg_quote(s, q, sizeof q));
    }
    if (!def->choices) return LYRA_OK;
    size_t n = strlen(s);
    /* chat_template: also a Jinja template file (a path with a '/' or ending
     * in .jinja or .j2; src/gen/chat_session.h lyra_chat_template_is_file) */
    if (def == &lyra_cfg_defs[LYRA_CFG_CHAT_TEMPLATE] && n &&
        (strchr(s, '/') || (n > 6 && !strcmp(s + n - 6, ".jinja")) || (n > 3 && !strcmp(s + n - 3, ".j2"))))
        return LYRA_OK;
    for (const char *c = def->choices; *c;) {
        const char *e = strchr(c, '|');
        size_t len = e ? (size_t)(e - c) : strlen(c);
        if (len == n && !strncmp(c, s, n)) return LYRA_OK;
        c += len + (e ? 1 : 0);
    }
    /* "a, b or c" */
    char q[256], list[256];
    size_t j = 0;
    const char *last = strrchr(def->choices, '|');
    for (const char *c = def->choices; *c && j + 5 < sizeof list; c++) {
        if (*c != '|') list[j++] = *c;
        else if (c == last) { memcpy(list + j, " or ", 4); j += 4; }
        else { list[j++] = ','; list[j++] = ' '; }
    }
    list[j] = '\0';
    lyra_cfg_quote(s, q, sizeof q);
    return lyra_err(err, LYRA_ERR_INPUT, where, "expected %s, got \"%s\"", list, q);
}

/* One value of an explicit map: a GPU index (0, "0", "cuda:0", "cuda"),
 * "cpu" or "disk". */
static int check_map_device(const json_t *d, const char *where, lyra_error *err) {
    if (json_is_integer(d) && json_integer_value(d) >= 0 && json_integer_value(d) < 1000)
        return LYRA_OK;
    if (json_is_string(d) && json_string_length(d) < 32) {
        char s0[32];
        const char *s = json_string_value(d), *at = strchr(s, '@');
        if (at && at[1] && strlen(at + 1) <= 4 && strspn(at + 1, "0123456789") == strlen(at + 1)) {
            /* "ID@RANK": a device of an MPI rank (docs/distributed.md) */
            memcpy(s0, s, (size_t)(at - s));
            s0[at - s] = '\0';
            s = s0;
        }
        if (!strcmp(s, "cpu") || !strcmp(s, "disk")) return LYRA_OK;
        lyra_device_strategy st = LYRA_DEVICE_MAP_AUTO;
        int32_t g = 0;
        if (lyra_devspec_is_strategy(s) && !lyra_devspec_strategy_parse(s, where, &st, &g, NULL) &&
            st == LYRA_DEVICE_MAP_GPU)
            return LYRA_OK;
    }
    char desc[300];
    lyra_cfg_describe(d, desc, sizeof desc);
    return lyra_err(err, LYRA_ERR_INPUT, where,
                    "unknown device %s (a GPU index such as 0, \"0\" or \"cuda:0\", \"cpu\" or "
                    "\"disk\")",
                    desc);
}

static int check_device_map(const json_t *v, const char *where, lyra_error *err) {
    lyra_devspec d;
    lyra_devspec_init(&d);
    int rc = json_is_object(v) ? LYRA_OK : lyra_devspec_map_from_json(&d, v, where, err);
    if (rc || !json_is_object(v)) return rc;
    if (json_object_size(v) == 0)
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "empty map (e.g. {\"\": \"cpu\"} puts everything on the cpu)");
    const char *key;
    json_t *dv;
    json_object_foreach((json_t *)v, key, dv) {
        char q[256], w[700];
        lyra_cfg_quote(key, q, sizeof q);
        snprintf(w, sizeof w, "%s.%s", where, q);
        if ((rc = check_map_device(dv, w, err))) return rc;
    }
    rc = lyra_devspec_map_from_json(&d, v, where, err); /* the entries, as apply makes them */
    lyra_devspec_free(&d);
    return rc;
}

/* {device: size}: each entry through the memspec parser (canonical keys,
 * errors naming WHERE.DEVICE), then the whole object (duplicates such as
 * "0" and "cuda:0"). *out: {canonical device: the value as given}. */
static int check_memspec(const json_t *v, const char *where, json_t **out, lyra_error *err) {
    lyra_device_bytes ms[LYRA_DEVSPEC_MAX_BYTES];
    int n = 0;
    char name[16];
    if (!json_is_object(v)) return lyra_devspec_bytes_from_json(v, where, ms, &n, err);
    json_t *res = json_object();
    if (!res) return lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
    const char *key;
    json_t *val;
    int rc = LYRA_OK;
    json_object_foreach((json_t *)v, key, val) {
        json_t *one = json_object();
        if (!one || json_object_set(one, key, val)) {
            json_decref(one);
            rc = lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
            break;
        }
        n = 0;
        rc = lyra_devspec_bytes_from_json(one, where, ms, &n, err);
        json_decref(one);
        if (rc) break;
        if (json_object_set(res, n ? lyra_devspec_device_name(ms[0].device, name, sizeof name) : key,
                            val)) {
            rc = lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
            break;
        }
    }
    if (!rc) rc = lyra_devspec_bytes_from_json(v, where, ms, &n, err);
    if (rc) {
        json_decref(res);
        return rc;
    }
    *out = res;
    return LYRA_OK;
}

static int check_int(const cfg_def *def, const json_t *v, const char *where, lyra_error *err) {
    if (!json_is_integer(v)) return wrong_type(v, where, "an integer", err);
    long long x = (long long)json_integer_value(v);
    if (x >= def->imin && x <= def->imax) return LYRA_OK;
    if (def->imax == INT32_MAX) {
        if (x < def->imin)
            return lyra_err(err, LYRA_ERR_INPUT, where, "must be >= %lld, got %lld",
                            (long long)def->imin, x);
        return lyra_err(err, LYRA_ERR_INPUT, where, "must be at most %d, got %lld", INT32_MAX, x);
    }
    return lyra_err(err, LYRA_ERR_INPUT, where, "must be between %lld and %lld, got %lld",
                    (long long)def->imin, (long long)def->imax, x);
}

static int check_number(const cfg_def *def, const json_t *v, const char *where, double *x,
                        lyra_error *err) {
    if (!json_is_number(v)) return wrong_type(v, where, "a number", err);
    *x = json_number_value(v);
    if (!isfinite(*x)) return wrong_type(v, where, "a finite number", err);
    if (!isfinite((float)*x)) /* the values are used as floats: 1e39 would become inf */
        return lyra_err(err, LYRA_ERR_INPUT, where, "%g is out of range (at most %g)", *x, (double)FLT_MAX);
    int low = def->dmin_open ? !(*x > def->dmin) : !(*x >= def->dmin);
    if (!low && *x <= def->dmax) return LYRA_OK;
    if (isinf(def->dmax))
        return lyra_err(err, LYRA_ERR_INPUT, where, "must be %s %g, got %g",
                        def->dmin_open ? ">" : ">=", def->dmin, *x);
    return lyra_err(err, LYRA_ERR_INPUT, where, "must be between %g and %g, got %g", def->dmin,
                    def->dmax, *x);
}

static int check_seed(const json_t *v, const char *where, json_t **out, lyra_error *err) {
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0)
            return lyra_err(err, LYRA_ERR_INPUT, where,
                            "must be between 0 and 18446744073709551615, got %lld",
                            (long long)json_integer_value(v));
        *out = json_integer(json_integer_value(v));
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        uint64_t x = 0;
        size_t n = strlen(s);
        int ok = n > 0 && n <= 20;
        for (size_t i = 0; ok && i < n; i++) {
            unsigned dgt = (unsigned)(s[i] - '0');
            if (s[i] < '0' || s[i] > '9' || x > (UINT64_MAX - dgt) / 10) ok = 0;
            else x = x * 10 + dgt;
        }
        if (!ok) return wrong_type(v, where, "an unsigned 64-bit integer", err);
        *out = x <= (uint64_t)INT64_MAX ? json_integer((json_int_t)x) : json_string(s);
    } else {
        return wrong_type(v, where, "an unsigned 64-bit integer", err);
    }
    return *out ? LYRA_OK : lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
}

static int check_stop(const json_t *v, const char *where, json_t **out, lyra_error *err) {
    if (json_is_string(v)) {
        if (!json_string_length(v)) return lyra_err(err, LYRA_ERR_INPUT, where, "empty stop string");
        *out = json_pack("[s]", json_string_value(v));
        return *out ? LYRA_OK : lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
    }
    if (!json_is_array(v)) return wrong_type(v, where, "an array of strings", err);
    if (json_array_size(v) > MAX_STOP)
        return lyra_err(err, LYRA_ERR_INPUT, where, "more than %d stop strings", MAX_STOP);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        char w[700];
        snprintf(w, sizeof w, "%s.%zu", where, i);
        if (!json_is_string(e)) return wrong_type(e, w, "a string", err);
        if (!json_string_length(e)) return lyra_err(err, LYRA_ERR_INPUT, w, "empty stop string");
    }
    *out = json_deep_copy(v);
    return *out ? LYRA_OK : lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
}

int lyra_cfg_check(int k, const json_t *v, const char *where, json_t **out, lyra_error *err) {
    const cfg_def *def = &lyra_cfg_defs[k];
    int rc = LYRA_OK;
    double x = 0;
    *out = NULL;
    if (json_is_null(v)) {
        if (!def->nullable) {
            const char *what[] = {[CFG_STRING] = "a string", [CFG_DEVICE_MAP] = "a device map",
                                  [CFG_MEMSPEC] = "an object of sizes", [CFG_GPU_LAYERS] = "a number of layers",
                                  [CFG_SPLIT] = "proportions", [CFG_INT] = "an integer",
                                  [CFG_BOOL] = "true or false", [CFG_SEED] = "an integer",
                                  [CFG_NUMBER] = "a number", [CFG_STOP] = "an array of strings"};
            return wrong_type(v, where, what[def->type], err);
        }
        *out = json_null();
        return LYRA_OK;
    }
    switch (def->type) {
    case CFG_STRING:
        rc = check_string(def, v, where, err);
        break;
    case CFG_DEVICE_MAP:
        rc = check_device_map(v, where, err);
        break;
    case CFG_MEMSPEC:
        return check_memspec(v, where, out, err);
    case CFG_GPU_LAYERS: {
        int32_t n = 0;
        if ((rc = lyra_devspec_gpu_layers_from_json(v, where, &n, err))) return rc;
        *out = n == LYRA_GPU_LAYERS_ALL ? json_string("all") : json_integer(n);
        return *out ? LYRA_OK : lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
    }
    case CFG_SPLIT: {
        float split[LYRA_MAX_TENSOR_SPLIT];
        int n = 0;
        rc = lyra_devspec_split_from_json(v, where, split, &n, err);
        break;
    }
    case CFG_INT:
        rc = check_int(def, v, where, err);
        break;
    case CFG_BOOL:
        if (!json_is_boolean(v)) rc = wrong_type(v, where, "true or false", err);
        break;
    case CFG_SEED:
        return check_seed(v, where, out, err);
    case CFG_NUMBER:
        if ((rc = check_number(def, v, where, &x, err))) return rc;
        *out = json_real(x);
        return *out ? LYRA_OK : lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
    case CFG_STOP:
        return check_stop(v, where, out, err);
    }
    if (rc) return rc;
    *out = json_deep_copy(v);
    return *out ? LYRA_OK : lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
}
