/* config_apply.c: a configuration's effect (see config.h): the public
 * parameter structs filled from it (lyra_model_params with the typed device
 * settings of config/devspec.h and the geometry contexts inherit,
 * lyra_sampler_params, generation options), and its display for
 * `lyra config show` (text, JSON) and as a config file. */
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config_impl.h"
#include "config/model_ref.h"

#define PK "pipeline_kwargs."
#define PK_LEN (sizeof PK - 1)

/* ----------------------------------------------------------------- apply */

int lyra_config_resolve_model(const lyra_config *c, const char *ref, const char *where, char **path,
                              lyra_error *err) {
    const json_t *r = c->value[LYRA_CFG_REVISION];
    const char *rev = json_is_string(r) ? json_string_value(r) : NULL;
    const char *at = ref ? strchr(ref, '@') : NULL, *slash = ref ? strchr(ref, '/') : NULL;
    if (rev && at && slash && at > slash && access(ref, F_OK) != 0) { /* org/name@REV[:TAG] too */
        const char *end = strchr(at, ':');
        size_t n = end ? (size_t)(end - at - 1) : strlen(at + 1);
        if (n != strlen(rev) || strncmp(at + 1, rev, n)) {
            const char *src = c->source[LYRA_CFG_REVISION];
            char key[1200];
            if (!strncmp(src, "flag:", 5)) snprintf(key, sizeof key, "%s", src + 5);
            else if (!strncmp(src, "file:", 5)) snprintf(key, sizeof key, "revision in %s", src + 5);
            else snprintf(key, sizeof key, "revision (%s)", src);
            return lyra_err(err, LYRA_ERR_INPUT, where ? where : "model",
                            "%s names revision %.*s but %s says %s: keep one", ref, (int)n, at + 1, key, rev);
        }
    }
    return lyra_model_ref_resolve_rev(ref, rev, where, path, err);
}

static int32_t int_of(const lyra_config *c, int k) {
    return (int32_t)json_integer_value(c->value[k]);
}

static int is(const lyra_config *c, int k, const char *s) {
    return json_is_string(c->value[k]) && !strcmp(json_string_value(c->value[k]), s);
}

int lyra_config_apply_model(lyra_config *c, lyra_model_params *mp, lyra_error *err) {
    lyra_devspec *d = &c->dev;
    lyra_devspec_free(d);
    const json_t *map = c->value[LYRA_CFG_DEVICE_MAP], *v;
    int rc;
    if (json_is_string(map) && c->map_is_file) /* a flag's map file */
        rc = lyra_devspec_map_file(d, json_string_value(map), err);
    else
        rc = lyra_devspec_map_from_json(d, map, "device_map", err);
    const char *msrc = c->source[LYRA_CFG_DEVICE_MAP];
    if (!rc && !c->map_is_file && json_is_object(map) && !strncmp(msrc, "file:", 5)) {
        /* a config file's inline map: the plan's errors name the file and key */
        size_t n = strlen(msrc) + 16;
        if (!(d->source = malloc(n))) rc = lyra_err(err, LYRA_ERR_OOM, "device_map", "out of memory");
        else snprintf(d->source, n, "%s: device_map", msrc + 5);
    }
    if (!rc)
        rc = lyra_devspec_bytes_from_json(c->value[LYRA_CFG_MAX_MEMORY], "max_memory", d->max_memory,
                                          &d->n_max_memory, err);
    if (!rc)
        rc = lyra_devspec_bytes_from_json(c->value[LYRA_CFG_RESERVE], "reserve", d->reserve,
                                          &d->n_reserve, err);
    if (!rc && !json_is_null(v = c->value[LYRA_CFG_GPU_LAYERS]))
        rc = lyra_devspec_gpu_layers_from_json(v, "gpu_layers", &d->gpu_layers, err);
    if (!rc && !json_is_null(v = c->value[LYRA_CFG_TENSOR_SPLIT]))
        rc = lyra_devspec_split_from_json(v, "tensor_split", d->tensor_split, &d->n_tensor_split, err);
    if (rc) {
        lyra_devspec_free(d);
        return rc;
    }
    lyra_devspec_apply(d, mp);
    int policy = is(c, LYRA_CFG_FALLBACK_POLICY, "context") ? LYRA_FALLBACK_CONTEXT
                 : is(c, LYRA_CFG_FALLBACK_POLICY, "none")  ? LYRA_FALLBACK_NONE
                                                            : LYRA_FALLBACK_LAYERS;
    int on = json_is_true(c->value[LYRA_CFG_FALLBACK]) && policy != LYRA_FALLBACK_NONE;
    mp->fallback = on;
    mp->fallback_policy = on ? policy : LYRA_FALLBACK_NONE;
    mp->fallback_across_ranks = json_is_true(c->value[LYRA_CFG_FALLBACK_ACROSS_RANKS]);
    mp->gpu_layers_fallback = json_is_null(c->value[LYRA_CFG_GPU_LAYERS_FALLBACK])
                                  ? -1 : int_of(c, LYRA_CFG_GPU_LAYERS_FALLBACK);
    mp->load_in_bits = json_is_true(c->value[LYRA_CFG_LOAD_IN_8BIT])   ? 8
                       : json_is_true(c->value[LYRA_CFG_LOAD_IN_4BIT]) ? 4 : 0;
    mp->dtype = is(c, LYRA_CFG_DTYPE, "float32") ? 1 : is(c, LYRA_CFG_DTYPE, "float16") ? 2
                : is(c, LYRA_CFG_DTYPE, "bfloat16") ? 3 : 0;
    mp->n_ctx = int_of(c, LYRA_CFG_CONTEXT_LENGTH);
    mp->n_batch = int_of(c, LYRA_CFG_BATCH_SIZE);
    mp->kv_type = is(c, LYRA_CFG_KV_CACHE_TYPE, "f32") ? LYRA_KV_F32 : LYRA_KV_F16;
    mp->n_threads = int_of(c, LYRA_CFG_THREADS);
    return LYRA_OK;
}

/* A checked number (finite, >= 0) as a float, within [FLT_MIN, FLT_MAX] when > 0. */
static float float_of(const lyra_config *c, int k) {
    double x = json_number_value(c->value[k]);
    if (x > FLT_MAX) return FLT_MAX;
    if (x > 0.0 && x < FLT_MIN) return FLT_MIN; /* a positive value stays positive */
    return (float)x;
}

int lyra_config_apply_sampler(const lyra_config *c, lyra_sampler_params *sp) {
    sp->temperature = float_of(c, LYRA_CFG_TEMPERATURE);
    if (json_is_false(c->value[LYRA_CFG_DO_SAMPLE])) sp->temperature = 0.0f; /* greedy */
    sp->top_k = int_of(c, LYRA_CFG_TOP_K);
    sp->top_p = float_of(c, LYRA_CFG_TOP_P);
    sp->min_p = float_of(c, LYRA_CFG_MIN_P);
    sp->repeat_penalty = float_of(c, LYRA_CFG_REPETITION_PENALTY);
    const json_t *seed = c->value[LYRA_CFG_SEED];
    if (json_is_integer(seed)) {
        sp->seed = (uint64_t)json_integer_value(seed);
        return 1;
    }
    if (json_is_string(seed)) { /* above 2^63-1, checked digits */
        sp->seed = strtoull(json_string_value(seed), NULL, 10);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------- sampling */

/* Layer of a source: default 0 < model (generation_config.json) 1 < file 2
 * < env / api 3 < flag 4. */
static int layer_of(const char *src) {
    if (!strncmp(src, "default", 7)) return 0;
    if (!strncmp(src, "model:", 6)) return 1;
    if (!strncmp(src, "file:", 5)) return 2;
    if (!strncmp(src, "flag:", 5)) return 4;
    return 3;
}

/* Replace key k's value (stolen) and source; -1 when out of memory. */
static int replace(lyra_config *c, int k, json_t *v, const char *src) {
    char *s = lyra_cfg_strdup(src);
    if (!v || !s) {
        json_decref(v);
        free(s);
        return -1;
    }
    json_decref(c->value[k]);
    c->value[k] = v;
    free(c->source[k]);
    c->source[k] = s;
    return 0;
}

int lyra_config_settle_sampling(lyra_config *c, lyra_error *err) {
    static const int knobs[] = {LYRA_CFG_TEMPERATURE, LYRA_CFG_TOP_K, LYRA_CFG_TOP_P, LYRA_CFG_MIN_P};
    const int ds = LYRA_CFG_DO_SAMPLE;
    /* sampling keys from generation_config.json, a file or the API: transformers' defaults for the rest */
    int hf = layer_of(c->source[ds]) >= 1 && layer_of(c->source[ds]) <= 3;
    for (size_t i = 0; i < sizeof knobs / sizeof knobs[0]; i++) {
        int l = layer_of(c->source[knobs[i]]);
        if (l >= 1 && l <= 3) hf = 1;
    }
    /* a sampling knob from a later layer than do_sample false turns sampling on */
    if (json_is_false(c->value[ds])) {
        int best = -1, top = layer_of(c->source[ds]);
        for (size_t i = 0; i < sizeof knobs / sizeof knobs[0]; i++) {
            int l = layer_of(c->source[knobs[i]]);
            if (l > top) top = l, best = knobs[i];
        }
        if (best >= 0) {
            char src[2048];
            snprintf(src, sizeof src, "%s", c->source[best]);
            if (replace(c, ds, json_true(), src)) goto oom;
        }
    }
    if (!hf) return LYRA_OK;
    static const struct { int k; double v; } hf_def[] = {
        {LYRA_CFG_TEMPERATURE, 1.0}, {LYRA_CFG_TOP_K, 50}, {LYRA_CFG_TOP_P, 1.0}, {LYRA_CFG_MIN_P, 0.0}};
    for (size_t i = 0; i < sizeof hf_def / sizeof hf_def[0]; i++) {
        int k = hf_def[i].k;
        if (strcmp(c->source[k], "default")) continue;
        json_t *v = k == LYRA_CFG_TOP_K ? json_integer((json_int_t)hf_def[i].v) : json_real(hf_def[i].v);
        if (replace(c, k, v, LYRA_CFG_SOURCE_HF)) goto oom;
    }
    return LYRA_OK;
oom:
    return lyra_err(err, LYRA_ERR_OOM, "config", "out of memory");
}

int lyra_config_chain(const lyra_config *c, char *buf, size_t cap) {
    lyra_sampler_params sp;
    memset(&sp, 0, sizeof sp);
    lyra_config_apply_sampler(c, &sp);
    size_t n = 0;
    int w;
#define ADD(...)                                                               \
    do {                                                                       \
        w = snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__);             \
        if (w > 0) n += (size_t)w;                                             \
    } while (0)
    if (cap) buf[0] = '\0';
    if (sp.repeat_penalty != 1.0f) ADD("repetition_penalty %g -> ", (double)sp.repeat_penalty);
    if (!(sp.temperature > 0.0f)) {
        ADD("greedy (%s)", json_is_false(c->value[LYRA_CFG_DO_SAMPLE]) ? "do_sample false"
                                                                       : "temperature 0");
        return (int)n;
    }
    if (sp.top_k > 0) ADD("top_k %d -> ", (int)sp.top_k);
    if (sp.min_p > 0.0f) ADD("min_p %g -> ", (double)sp.min_p);
    if (sp.top_p < 1.0f) ADD("top_p %g -> ", (double)sp.top_p);
    ADD("temperature %g -> draw", (double)sp.temperature);
#undef ADD
    return (int)n;
}

int lyra_config_apply_gen(lyra_config *c, lyra_config_gen *g, lyra_error *err) {
    const json_t *stop = c->value[LYRA_CFG_STOP];
    size_t n = json_array_size(stop);
    const char **p = malloc((n ? n : 1) * sizeof *p);
    if (!p) return lyra_err(err, LYRA_ERR_OOM, "stop", "out of memory");
    for (size_t i = 0; i < n; i++) p[i] = json_string_value(json_array_get(stop, i));
    free(c->stop);
    c->stop = p;
    c->n_stop = (int)n;
    const json_t *m = c->value[LYRA_CFG_MODEL_ID], *sys = c->value[LYRA_CFG_SYSTEM_PROMPT],
                 *tpl = c->value[LYRA_CFG_CHAT_TEMPLATE];
    g->model_id = json_is_string(m) ? json_string_value(m) : NULL;
    g->max_new_tokens = (int64_t)json_integer_value(c->value[LYRA_CFG_MAX_NEW_TOKENS]);
    g->stop = c->stop;
    g->n_stop = c->n_stop;
    g->system_prompt = json_is_string(sys) ? json_string_value(sys) : NULL;
    g->chat_template = json_is_string(tpl) && strcmp(json_string_value(tpl), "auto")
                           ? json_string_value(tpl) : NULL;
    return LYRA_OK;
}

void lyra_config_apply_serve(const lyra_config *c, lyra_config_serve *s) {
    const json_t *h = c->value[LYRA_CFG_SERVER_HOST];
    s->host = json_is_string(h) ? json_string_value(h) : "127.0.0.1";
    s->port = (int32_t)json_integer_value(c->value[LYRA_CFG_SERVER_PORT]);
    s->parallel = (int32_t)json_integer_value(c->value[LYRA_CFG_SERVER_PARALLEL]);
    s->queue = (int32_t)json_integer_value(c->value[LYRA_CFG_SERVER_QUEUE]);
}

/* ------------------------------------------------------------------ show */

json_t *lyra_config_show_json(const lyra_config *c) {
    json_t *o = json_object();
    for (int k = 0; o && k < LYRA_CFG_N_KEYS; k++) {
        if (lyra_config_key_quiet(c, k)) continue;
        json_t *e = json_pack("{s:O,s:s}", "value", c->value[k], "source", c->source[k]);
        if (!e || json_object_set_new(o, lyra_cfg_defs[k].name, e)) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

/* The source column of max_memory / reserve: one source, or per entry. */
static void entry_sources(const lyra_config *c, int k, char *buf, size_t cap) {
    const json_t *es = c->entry_source[k == LYRA_CFG_RESERVE];
    const json_t *v = c->value[k];
    const char *key, *first = NULL;
    json_t *s;
    int mixed = 0;
    json_object_foreach((json_t *)v, key, s) {
        const char *src = json_string_value(json_object_get(es, key));
        if (!src) continue;
        if (!first) first = src;
        else if (strcmp(first, src)) mixed = 1;
    }
    if (!mixed) {
        snprintf(buf, cap, "%s", c->source[k]);
        return;
    }
    size_t n = 0;
    json_object_foreach((json_t *)v, key, s) {
        const char *src = json_string_value(json_object_get(es, key));
        int w = snprintf(buf + n, cap - n, "%s%s: %s", n ? ", " : "", key, src ? src : "?");
        if (w < 0 || (size_t)w >= cap - n) break;
        n += (size_t)w;
    }
}

char *lyra_config_show_text(const lyra_config *c) {
    size_t cap = 4096, n = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    int w = snprintf(out, cap, "config file: %s (%s)\n", c->path ? c->path : "none",
                     c->how ? c->how : "none");
    n = w > 0 ? (size_t)w : 0;
    for (int k = 0; k < LYRA_CFG_N_KEYS; k++) {
        if (lyra_config_key_quiet(c, k)) continue;
        char *val = json_dumps(c->value[k], JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(15));
        char src[2048];
        if (!val) {
            free(out);
            return NULL;
        }
        if (k == LYRA_CFG_MAX_MEMORY || k == LYRA_CFG_RESERVE) entry_sources(c, k, src, sizeof src);
        else snprintf(src, sizeof src, "%s", c->source[k]);
        size_t need = strlen(lyra_cfg_defs[k].name) + strlen(val) + strlen(src) + 80;
        if (n + need > cap) {
            while (n + need > cap) cap *= 2;
            char *nb = realloc(out, cap);
            if (!nb) {
                free(val);
                free(out);
                return NULL;
            }
            out = nb;
        }
        w = snprintf(out + n, cap - n, "%-35s %-24s %s\n", lyra_cfg_defs[k].name, val, src);
        if (w > 0) n += (size_t)w;
        free(val);
    }
    char chain[512];
    lyra_config_chain(c, chain, sizeof chain);
    if (n + strlen(chain) + 16 > cap) {
        char *nb = realloc(out, n + strlen(chain) + 16);
        if (!nb) {
            free(out);
            return NULL;
        }
        out = nb;
        cap = n + strlen(chain) + 16;
    }
    snprintf(out + n, cap - n, "sampling: %s\n", chain);
    return out;
}

json_t *lyra_config_file_json(const lyra_config *c) {
    json_t *o = json_object(), *pk = json_object();
    if (!o || !pk) goto fail;
    for (int k = 0; k < LYRA_CFG_N_KEYS; k++) {
        json_t *def = json_loads(lyra_cfg_defs[k].defval, JSON_DECODE_ANY, NULL);
        int same = (def && json_equal(def, c->value[k])) || !strncmp(c->source[k], "default", 7);
        json_decref(def);
        if (same) continue;
        const char *name = lyra_cfg_defs[k].name;
        int in_pk = !strncmp(name, PK, PK_LEN);
        if (json_object_set(in_pk ? pk : o, in_pk ? name + PK_LEN : name, c->value[k])) goto fail;
    }
    if (json_object_size(pk) && json_object_set(o, "pipeline_kwargs", pk)) goto fail;
    json_decref(pk);
    return o;
fail:
    json_decref(pk);
    json_decref(o);
    return NULL;
}
