/* cfgflags.c: the command line's side of model configuration files
 * (docs/config.md): the flag of every config key, --model-config and
 * --no-config, collected by a command's parse loop (each value checked at
 * once, errors naming the flag as typed) and applied over the config file
 * after discovery, so that flags win whatever their position. Used by
 * generate, perplexity, bench, plan, config show and chat. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "config/model_ref.h"

/* One flag of a config key. */
typedef struct cfg_flag {
    const char *flag;   /* as typed: "-c" */
    const char *canon;  /* long form, for the source "flag:--ctx" */
    const char *key;    /* config key */
    const char *fixed;  /* value of a flag without one ("true"), else NULL */
    unsigned group;     /* APP_CFG_* */
    int gpus;           /* budgets: the GPUs they name must be here */
} cfg_flag;

static const cfg_flag g_flags[] = {
    {"-m", "--model", "model_id", NULL, APP_CFG_MODEL, 0},
    {"--model", "--model", "model_id", NULL, APP_CFG_MODEL, 0},
    {"--revision", "--revision", "revision", NULL, APP_CFG_MODEL, 0},
    {"--device-map", "--device-map", "device_map", NULL, APP_CFG_DEVICE, 0},
    {"--max-memory", "--max-memory", "max_memory", NULL, APP_CFG_DEVICE, 1},
    {"--reserve", "--reserve", "reserve", NULL, APP_CFG_DEVICE, 1},
    {"--gpu-layers", "--gpu-layers", "gpu_layers", NULL, APP_CFG_DEVICE, 0},
    {"--tensor-split", "--tensor-split", "tensor_split", NULL, APP_CFG_DEVICE, 0},
    {"--gpu-layers-fallback", "--gpu-layers-fallback", "gpu_layers_fallback", NULL, APP_CFG_DEVICE, 0},
    {"--fallback", "--fallback", "enable_progressive_fallback", "true", APP_CFG_DEVICE, 0},
    {"--no-fallback", "--no-fallback", "enable_progressive_fallback", "false", APP_CFG_DEVICE, 0},
    {"--fallback-policy", "--fallback-policy", "fallback_policy", NULL, APP_CFG_DEVICE, 0},
    {"--fallback-across-ranks", "--fallback-across-ranks", "fallback_across_ranks", "true", APP_CFG_DEVICE, 0},
    {"--load-in-8bit", "--load-in-8bit", "load_in_8bit", "true", APP_CFG_DEVICE, 0},
    {"--load-in-4bit", "--load-in-4bit", "load_in_4bit", "true", APP_CFG_DEVICE, 0},
    {"--dtype", "--dtype", "dtype", NULL, APP_CFG_DEVICE, 0},
    {"-c", "--ctx", "context_length", NULL, APP_CFG_CONTEXT, 0},
    {"--ctx", "--ctx", "context_length", NULL, APP_CFG_CONTEXT, 0},
    {"-b", "--batch", "batch_size", NULL, APP_CFG_CONTEXT, 0},
    {"--batch", "--batch", "batch_size", NULL, APP_CFG_CONTEXT, 0},
    {"--kv-type", "--kv-type", "kv_cache_type", NULL, APP_CFG_KV, 0},
    {"-t", "--threads", "threads", NULL, APP_CFG_THREADS, 0},
    {"--threads", "--threads", "threads", NULL, APP_CFG_THREADS, 0},
    {"--seed", "--seed", "seed", NULL, APP_CFG_SAMPLE, 0},
    {"--temp", "--temp", "temperature", NULL, APP_CFG_SAMPLE, 0},
    {"--temperature", "--temp", "temperature", NULL, APP_CFG_SAMPLE, 0},
    {"--greedy", "--greedy", "do_sample", "false", APP_CFG_SAMPLE, 0},
    {"--do-sample", "--do-sample", "do_sample", "true", APP_CFG_SAMPLE, 0},
    {"--do_sample", "--do-sample", "do_sample", "true", APP_CFG_SAMPLE, 0},
    {"--top-k", "--top-k", "top_k", NULL, APP_CFG_SAMPLE, 0},
    {"--top_k", "--top-k", "top_k", NULL, APP_CFG_SAMPLE, 0},
    {"--top-p", "--top-p", "top_p", NULL, APP_CFG_SAMPLE, 0},
    {"--top_p", "--top-p", "top_p", NULL, APP_CFG_SAMPLE, 0},
    {"--min-p", "--min-p", "min_p", NULL, APP_CFG_SAMPLE, 0},
    {"--min_p", "--min-p", "min_p", NULL, APP_CFG_SAMPLE, 0},
    {"--repeat-penalty", "--repeat-penalty", "repetition_penalty", NULL, APP_CFG_SAMPLE, 0},
    {"--repetition_penalty", "--repeat-penalty", "repetition_penalty", NULL, APP_CFG_SAMPLE, 0},
    {"--repetition-penalty", "--repeat-penalty", "repetition_penalty", NULL, APP_CFG_SAMPLE, 0},
    {"-n", "--n-predict", "max_new_tokens", NULL, APP_CFG_GEN, 0},
    {"--n-predict", "--n-predict", "max_new_tokens", NULL, APP_CFG_GEN, 0},
    {"--max-new-tokens", "--max-new-tokens", "max_new_tokens", NULL, APP_CFG_GEN, 0},
    {"--max_new_tokens", "--max-new-tokens", "max_new_tokens", NULL, APP_CFG_GEN, 0},
    {"--stop", "--stop", "stop", NULL, APP_CFG_GEN, 0},
    {"--system-prompt", "--system-prompt", "system_prompt", NULL, APP_CFG_CHAT, 0},
    {"--chat-template", "--chat-template", "chat_template", NULL, APP_CFG_CHAT, 0},
    {"--host", "--host", "server_host", NULL, APP_CFG_SERVE, 0},
    {"--port", "--port", "server_port", NULL, APP_CFG_SERVE, 0},
    {"--parallel", "--parallel", "server_parallel", NULL, APP_CFG_SERVE, 0},
    {"-np", "--parallel", "server_parallel", NULL, APP_CFG_SERVE, 0},
    {"--queue", "--queue", "server_queue", NULL, APP_CFG_SERVE, 0},
};
#define N_FLAGS (sizeof g_flags / sizeof g_flags[0])

void app_cfgflags_init(app_cfgflags *cf, unsigned groups) {
    memset(cf, 0, sizeof *cf);
    cf->groups = groups;
}

void app_cfgflags_free(app_cfgflags *cf) {
    lyra_config_free(cf->scratch);
    free(cf->rec);
    memset(cf, 0, sizeof *cf);
}

const char *app_cfgflag_at(unsigned groups, size_t i) {
    for (size_t j = 0; j < N_FLAGS; j++)
        if ((g_flags[j].group & groups) && !i--) return g_flags[j].flag;
    return NULL;
}

/* Keys whose flag may be repeated (entries merge or append). */
static int repeatable(const char *key) {
    return !strcmp(key, "stop") || !strcmp(key, "max_memory") || !strcmp(key, "reserve");
}

/* --device-map V: a strategy, a JSON object, or a map file; a bare word
 * that is none of them (no '/', no ".json", not a file here) is a typo. */
static int check_map(const char *typed, const char *v, lyra_error *err) {
    if (v[0] == '{' || strchr(v, '/') || strstr(v, ".json") || lyra_devspec_is_strategy(v) ||
        access(v, F_OK) == 0)
        return LYRA_OK;
    return lyra_err(err, LYRA_ERR_INPUT, typed,
                    "unknown strategy '%s': expected auto, balanced, balanced_low_0, sequential, "
                    "cpu, cuda, cuda:N, a GPU index N, a JSON object or a map FILE.json", v);
}

/* Record flag f with value v (checked on the scratch config first). */
static int record(app_cfgflags *cf, const cfg_flag *f, const char *typed, const char *v,
                  lyra_error *err) {
    char src[80];
    snprintf(src, sizeof src, "flag:%s", f->canon);
    if (!f->fixed && !repeatable(f->key))
        for (int i = 0; i < cf->n; i++)
            if (!strcmp(cf->rec[i].key, f->key))
                return lyra_err(err, LYRA_ERR_INPUT, typed, "given more than once (also as %s)",
                                cf->rec[i].typed);
    if (!strcmp(f->key, "device_map")) {
        int rc = check_map(typed, v, err);
        if (rc) return rc;
    }
    if (!cf->scratch && !(cf->scratch = lyra_config_new()))
        return lyra_err(err, LYRA_ERR_OOM, typed, "out of memory");
    int rc;
    if (f->gpus && v[0] == '{') { /* a flag takes the list form only: its parser's error */
        lyra_device_bytes e[LYRA_DEVSPEC_MAX_BYTES];
        int n = 0;
        if ((rc = lyra_devspec_bytes_parse(v, typed, e, &n, err))) return rc;
    }
    rc = lyra_config_set(cf->scratch, f->key, v, src, typed, err);
    if (!rc && f->gpus)
        rc = app_devflags_check_gpus(typed, cf->scratch->value[lyra_config_key_find(f->key)], err);
    if (rc) return rc;
    if (cf->n == cf->cap) {
        int cap = cf->cap ? cf->cap * 2 : 16;
        app_cfgrec *r = realloc(cf->rec, sizeof *r * (size_t)cap);
        if (!r) return lyra_err(err, LYRA_ERR_OOM, typed, "out of memory");
        cf->rec = r;
        cf->cap = cap;
    }
    app_cfgrec *r = &cf->rec[cf->n++];
    r->key = f->key;
    r->value = v;
    r->typed = f->flag;
    snprintf(r->source, sizeof r->source, "%s", src);
    return LYRA_OK;
}

int app_cfgflag(app_args *a, app_cfgflags *cf, int *rc, lyra_error *err) {
    const char *flag = a->flag, *v = NULL;
    *rc = LYRA_OK;
    if (!strcmp(flag, "--model-config")) {
        *rc = args_str(a, &cf->model_config, err);
        return 1;
    }
    if (!strcmp(flag, "--no-config") && !a->eq) {
        cf->no_config = 1;
        return 1;
    }
    for (size_t i = 0; i < N_FLAGS; i++) {
        const cfg_flag *f = &g_flags[i];
        if (strcmp(flag, f->flag) || !(cf->groups & f->group)) continue;
        if (f->fixed) {
            if (a->eq) return 0; /* "--greedy=x": not this flag */
            *rc = record(cf, f, flag, f->fixed, err);
            return 1;
        }
        if ((*rc = args_str(a, &v, err))) return 1;
        *rc = record(cf, f, flag, v, err);
        return 1;
    }
    return 0;
}

int app_cfgflags_load(app_cfgflags *cf, lyra_config **out, lyra_error *err) {
    lyra_config *c = lyra_config_new();
    *out = NULL;
    if (!c) return lyra_err(err, LYRA_ERR_OOM, "config", "out of memory");
    int rc = lyra_config_load_auto(c, cf->model_config, cf->no_config, err);
    for (int i = 0; !rc && i < cf->n; i++)
        rc = lyra_config_set(c, cf->rec[i].key, cf->rec[i].value, cf->rec[i].source,
                             cf->rec[i].typed, err);
    if (!rc) rc = lyra_config_settle_sampling(c, err);
    if (!rc) {
        const char *src = c->source[LYRA_CFG_THREADS];
        char where[1200];
        if (!strncmp(src, "flag:", 5)) snprintf(where, sizeof where, "--threads");
        else if (!strncmp(src, "file:", 5)) snprintf(where, sizeof where, "%s: threads", src + 5);
        else snprintf(where, sizeof where, "threads");
        rc = app_check_threads(json_integer_value(c->value[LYRA_CFG_THREADS]), where, err);
    }
    if (rc) {
        lyra_config_free(c);
        return rc;
    }
    *out = c;
    return LYRA_OK;
}

int app_config_model(lyra_config *c, char **path, lyra_error *err) {
    const json_t *m = c->value[LYRA_CFG_MODEL_ID];
    *path = NULL;
    if (!json_is_string(m))
        return lyra_err(err, LYRA_ERR_INPUT, "-m",
                        "required: the model file (or model_id in a config file, docs/config.md)");
    const char *src = c->source[LYRA_CFG_MODEL_ID];
    char where[1200] = "";
    if (!strncmp(src, "file:", 5)) snprintf(where, sizeof where, "%s: model_id", src + 5);
    /* from -m: messages start with the name as typed */
    int rc = lyra_config_resolve_model(c, json_string_value(m), where, path, err); /* at the revision key */
    if (!rc) rc = lyra_config_load_generation(c, *path, err); /* a snapshot's generation_config.json */
    if (rc) {
        free(*path);
        *path = NULL;
    }
    return rc;
}

int app_config_apply(lyra_config *c, lyra_model_params *mp, lyra_context_params *cp,
                     lyra_sampler_params *sp, int *seed_given, lyra_error *err) {
    int rc = LYRA_OK;
    (void)cp; /* contexts inherit the model's geometry */
    if (mp) rc = lyra_config_apply_model(c, mp, err);
    if (sp) {
        int s = lyra_config_apply_sampler(c, sp);
        if (seed_given) *seed_given = s;
    }
    return rc;
}
