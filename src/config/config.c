/* config.c: the configuration's layers (see config.h): defaults, file
 * discovery, loading and validating one file, setting keys from strings
 * (flags, API setters) or JSON, and the merge rules between layers. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config_impl.h"
#include "config/devspec.h"
#include "core/log.h"
#include "core/size.h"

#define PK "pipeline_kwargs."
#define PK_LEN (sizeof PK - 1)
#define MAX_FILE_BYTES ((size_t)4 << 20)
#define MAX_NOTES 32

/* ------------------------------------------------------------- new / free */

lyra_config *lyra_config_new(void) {
    lyra_config *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    lyra_devspec_init(&c->dev);
    for (int k = 0; k < LYRA_CFG_N_KEYS; k++) {
        c->value[k] = json_loads(lyra_cfg_defs[k].defval, JSON_DECODE_ANY, NULL);
        c->source[k] = lyra_cfg_strdup("default");
        if (!c->value[k] || !c->source[k]) {
            lyra_config_free(c);
            return NULL;
        }
    }
    c->entry_source[0] = json_object();
    c->entry_source[1] = json_object();
    if (!c->entry_source[0] || !c->entry_source[1]) {
        lyra_config_free(c);
        return NULL;
    }
    c->how = "none";
    return c;
}

void lyra_config_free(lyra_config *c) {
    if (!c) return;
    for (int k = 0; k < LYRA_CFG_N_KEYS; k++) {
        json_decref(c->value[k]);
        free(c->source[k]);
    }
    json_decref(c->entry_source[0]);
    json_decref(c->entry_source[1]);
    free(c->path);
    lyra_devspec_free(&c->dev);
    free(c->stop);
    free(c);
}

lyra_config *lyra_config_copy(const lyra_config *c) {
    lyra_config *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    lyra_devspec_init(&d->dev);
    int ok = 1;
    for (int k = 0; k < LYRA_CFG_N_KEYS; k++) {
        d->value[k] = json_deep_copy(c->value[k]);
        d->source[k] = lyra_cfg_strdup(c->source[k]);
        ok = ok && d->value[k] && d->source[k];
    }
    for (int i = 0; i < 2; i++) ok = ok && (d->entry_source[i] = json_deep_copy(c->entry_source[i]));
    d->map_is_file = c->map_is_file;
    d->strict = c->strict;
    d->how = c->how;
    if (c->path) ok = ok && (d->path = lyra_cfg_strdup(c->path));
    if (!ok) {
        lyra_config_free(d);
        return NULL;
    }
    return d;
}

/* ------------------------------------------------------------------ merge */

/* Replace c's value of k by v (a reference taken) from source. */
static int put(lyra_config *c, int k, json_t *v, const char *source) {
    char *s = lyra_cfg_strdup(source);
    if (!s) {
        json_decref(v);
        return -1;
    }
    json_decref(c->value[k]);
    free(c->source[k]);
    c->value[k] = v;
    c->source[k] = s;
    return 0;
}

/* Two sources of one layer: the same file (or setter), or both flags (the
 * command line is one layer whatever the flags' names). */
static int same_layer(const char *a, const char *b) {
    if (!strncmp(a, "flag:", 5) && !strncmp(b, "flag:", 5)) return 1;
    return !strcmp(a, b);
}

/* A setting from source b overrides a related key set from source a unless
 * both come from the same file (a file is read as a whole). */
static int later_wins(const char *a, const char *b) {
    return strcmp(a, b) || strncmp(a, "file:", 5);
}

static int is_explicit_map(const lyra_config *c) {
    return json_is_object(c->value[LYRA_CFG_DEVICE_MAP]) || c->map_is_file;
}

/* The cross-key check that can fail: load_in_8bit and load_in_4bit both
 * true from the same source. */
static int check_conflict(const lyra_config *c, int k, const json_t *v, const char *source,
                          const char *where, lyra_error *err) {
    if ((k == LYRA_CFG_LOAD_IN_8BIT || k == LYRA_CFG_LOAD_IN_4BIT) && json_is_true(v)) {
        int o = k == LYRA_CFG_LOAD_IN_8BIT ? LYRA_CFG_LOAD_IN_4BIT : LYRA_CFG_LOAD_IN_8BIT;
        if (json_is_true(c->value[o]) && same_layer(c->source[o], source))
            return lyra_err(err, LYRA_ERR_INPUT, where, "conflicts with %s (%s): choose one",
                            lyra_cfg_defs[o].name, c->source[o]);
    }
    /* dtype and torch_dtype from one setter source (pipeline kwargs): one key twice */
    if (k == LYRA_CFG_DTYPE && !strncmp(source, "api", 3) && !strcmp(c->source[k], source) &&
        !json_equal(c->value[k], v))
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "\"%s\" conflicts with \"%s\" given before (%s): dtype and torch_dtype are one "
                        "key, keep one", json_string_value(v), json_string_value(c->value[k]), source);
    return LYRA_OK;
}

/* Apply the normalized value v of key k (a reference taken) from source.
 * is_file: device_map v is a map file's path; append: stop strings from the
 * same source are appended. Returns 0, or -1 when out of memory. */
static int assign(lyra_config *c, int k, json_t *v, const char *source, int is_file, int append) {
    if (k == LYRA_CFG_MAX_MEMORY || k == LYRA_CFG_RESERVE) {
        json_t *dst = c->value[k], *srcs = c->entry_source[k == LYRA_CFG_RESERVE];
        const char *key;
        json_t *e;
        int bad = 0;
        json_object_foreach(v, key, e) {
            bad |= json_object_set(dst, key, e);
            bad |= json_object_set_new(srcs, key, json_string(source));
        }
        int n = (int)json_object_size(v);
        json_decref(v);
        if (bad) return -1;
        if (n) {
            char *s = lyra_cfg_strdup(source);
            if (!s) return -1;
            free(c->source[k]);
            c->source[k] = s;
        }
        return 0;
    }
    if (k == LYRA_CFG_STOP && append && !strcmp(c->source[k], source)) {
        int bad = json_array_extend(c->value[k], v);
        json_decref(v);
        return bad ? -1 : 0;
    }
    if (k == LYRA_CFG_GPU_LAYERS && !json_is_null(v) && is_explicit_map(c) &&
        !same_layer(c->source[LYRA_CFG_DEVICE_MAP], source)) {
        /* --gpu-layers over a config's explicit map: the map goes */
        json_t *a = json_string("auto");
        if (!a || put(c, LYRA_CFG_DEVICE_MAP, a, source)) {
            json_decref(v);
            return -1;
        }
        c->map_is_file = 0;
    }
    if (k == LYRA_CFG_DEVICE_MAP) {
        int explicit_map = json_is_object(v) || is_file;
        if (explicit_map && !json_is_null(c->value[LYRA_CFG_GPU_LAYERS]) &&
            !same_layer(c->source[LYRA_CFG_GPU_LAYERS], source)) {
            if (put(c, LYRA_CFG_GPU_LAYERS, json_null(), source)) {
                json_decref(v);
                return -1;
            }
        }
        c->map_is_file = is_file;
    }
    if ((k == LYRA_CFG_LOAD_IN_8BIT || k == LYRA_CFG_LOAD_IN_4BIT) && json_is_true(v)) {
        int o = k == LYRA_CFG_LOAD_IN_8BIT ? LYRA_CFG_LOAD_IN_4BIT : LYRA_CFG_LOAD_IN_8BIT;
        if (json_is_true(c->value[o]) && put(c, o, json_false(), source)) {
            json_decref(v);
            return -1;
        }
    }
    /* --fallback over policy "none" means layers; a policy that falls back
     * over enable_progressive_fallback false turns it on (a later setting
     * wins; within one file both stand, and fallback is on only when both
     * say so) */
    const char *fb_src = c->source[LYRA_CFG_FALLBACK], *po_src = c->source[LYRA_CFG_FALLBACK_POLICY];
    json_t *po = c->value[LYRA_CFG_FALLBACK_POLICY];
    if (k == LYRA_CFG_FALLBACK && json_is_true(v) && !strcmp(json_string_value(po), "none") &&
        later_wins(po_src, source)) {
        json_t *l = json_string("layers");
        if (!l || put(c, LYRA_CFG_FALLBACK_POLICY, l, source)) {
            json_decref(v);
            return -1;
        }
    }
    if (k == LYRA_CFG_FALLBACK_POLICY && strcmp(json_string_value(v), "none") &&
        json_is_false(c->value[LYRA_CFG_FALLBACK]) && later_wins(fb_src, source)) {
        if (put(c, LYRA_CFG_FALLBACK, json_true(), source)) {
            json_decref(v);
            return -1;
        }
    }
    return put(c, k, v, source);
}

/* ---------------------------------------------------------------- setters */

static int oom(const char *where, lyra_error *err) {
    return lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
}

/* The notes of a flag's or setter's max_memory / reserve (disk, mps). */
static void setter_notes(const json_t *v, const char *where);

int lyra_config_set_json(lyra_config *c, const char *key, const json_t *value,
                         const char *source, const char *where, lyra_error *err) {
    int k = lyra_config_key_find(key);
    char q[256], hint[160];
    if (k < 0) {
        lyra_config_suggest(key ? key : "", 1, hint, sizeof hint);
        return lyra_err(err, LYRA_ERR_INPUT, where ? where : lyra_cfg_quote(key ? key : "", q, sizeof q),
                        "unknown key%s%s%s", hint[0] ? " (" : "", hint, hint[0] ? ")" : "");
    }
    if (!where) where = k == LYRA_CFG_DTYPE && !strcmp(key, LYRA_CFG_TORCH_DTYPE) ? key : lyra_cfg_defs[k].name;
    if (!source) source = "api";
    json_t *v = NULL;
    int rc = lyra_cfg_check(k, value, where, &v, err);
    if (!rc) rc = check_conflict(c, k, v, source, where, err);
    if (rc) {
        json_decref(v);
        return rc;
    }
    if (k == LYRA_CFG_MAX_MEMORY || k == LYRA_CFG_RESERVE) setter_notes(v, where);
    if (assign(c, k, v, source, 0, 0)) return oom(where, err);
    return LYRA_OK;
}

/* Strict integer (decimal, optional sign, nothing else); 0 ok. */
static int str_i64(const char *s, long long *out) {
    if (!s || !*s) return -1;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s) return -1;
    *out = v;
    return 0;
}

/* "0=6GB, cpu=16GB" (already checked by the memspec parser) -> {"0": "6GB",
 * "cpu": "16GB"} with the parser's canonical keys, in order. */
static json_t *memspec_object(const char *s, const lyra_device_bytes *ms, int n_ms) {
    json_t *o = json_object();
    size_t len = strlen(s);
    int n = 0;
    for (size_t i = 0; o && len && i <= len && n < n_ms;) {
        size_t j = i;
        while (j < len && s[j] != ',') j++;
        const char *eq = memchr(s + i, '=', j - i);
        if (eq) {
            size_t a = (size_t)(eq - s) + 1, b = j;
            while (a < b && (s[a] == ' ' || s[a] == '\t')) a++;
            while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t')) b--;
            json_t *v = json_stringn(s + a, b - a);
            char name[16];
            if (!v || json_object_set_new(o, lyra_devspec_device_name(ms[n].device, name, sizeof name), v)) {
                json_decref(o);
                return NULL;
            }
            n++;
        }
        i = j + 1;
    }
    return o;
}

/* A flag's or setter's string as the JSON value of key k (*is_file: a map
 * file path). Parse errors name where. */
static int from_string(int k, const char *s, const char *where, json_t **out, int *is_file,
                       lyra_error *err) {
    const cfg_def *def = &lyra_cfg_defs[k];
    json_error_t je;
    long long iv = 0;
    *out = NULL;
    *is_file = 0;
    switch (def->type) {
    case CFG_STRING:
    case CFG_STOP:
        *out = json_string(s);
        if (!*out) return lyra_err(err, LYRA_ERR_INPUT, where, "not valid UTF-8");
        return LYRA_OK;
    case CFG_DEVICE_MAP:
        if (lyra_devspec_is_strategy(s)) {
            *out = json_string(s);
        } else if (s[0] == '{') {
            *out = json_loads(s, JSON_REJECT_DUPLICATES, &je);
            if (!*out)
                return lyra_err(err, LYRA_ERR_INPUT, where, "invalid JSON at column %d: %s",
                                je.column, je.text);
        } else if (!s[0]) {
            return lyra_err(err, LYRA_ERR_INPUT, where, "expected a strategy or a JSON file");
        } else { /* a JSON map file, read by the runtime */
            *out = json_string(s);
            *is_file = 1;
            if (!*out) return lyra_err(err, LYRA_ERR_INPUT, where, "not valid UTF-8");
        }
        break;
    case CFG_MEMSPEC: {
        if (s[0] == '{') {
            *out = json_loads(s, JSON_REJECT_DUPLICATES, &je);
            if (!*out)
                return lyra_err(err, LYRA_ERR_INPUT, where, "invalid JSON at column %d: %s",
                                je.column, je.text);
            break;
        }
        lyra_device_bytes ms[LYRA_DEVSPEC_MAX_BYTES];
        int n_ms = 0;
        int rc = lyra_devspec_bytes_parse(s, where, ms, &n_ms, err);
        if (rc) return rc;
        *out = memspec_object(s, ms, n_ms);
        break;
    }
    case CFG_GPU_LAYERS: {
        int32_t n = 0;
        int rc = lyra_devspec_gpu_layers_parse(s, where, &n, err);
        if (rc) return rc;
        *out = n == LYRA_GPU_LAYERS_ALL ? json_string("all") : json_integer(n);
        break;
    }
    case CFG_SPLIT: {
        float split[LYRA_MAX_TENSOR_SPLIT];
        int n = 0;
        int rc = lyra_devspec_split_parse(s, where, split, &n, err);
        if (rc) return rc;
        *out = json_string(s);
        break;
    }
    case CFG_INT:
        if (str_i64(s, &iv)) return lyra_err(err, LYRA_ERR_INPUT, where, "expected an integer, got '%s'", s);
        *out = json_integer(iv);
        break;
    case CFG_BOOL:
        if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "yes") || !strcmp(s, "on"))
            *out = json_true();
        else if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "no") || !strcmp(s, "off"))
            *out = json_false();
        else
            return lyra_err(err, LYRA_ERR_INPUT, where, "expected true or false, got '%s'", s);
        break;
    case CFG_SEED: {
        int ok = s[0] != '\0';
        for (const char *p = s; *p; p++) ok &= *p >= '0' && *p <= '9';
        if (!ok)
            return lyra_err(err, LYRA_ERR_INPUT, where,
                            "expected an unsigned 64-bit integer, got '%s'", s);
        json_t *t = json_string(s);
        if (!t) return oom(where, err);
        int rc = lyra_cfg_check(k, t, where, out, err);
        json_decref(t);
        return rc;
    }
    case CFG_NUMBER: {
        char *end = NULL;
        errno = 0;
        double x = s[0] ? strtod(s, &end) : 0.0;
        if (!s[0] || errno || *end || !isfinite(x))
            return lyra_err(err, LYRA_ERR_INPUT, where, "expected a number, got '%s'", s);
        *out = json_real(x);
        break;
    }
    }
    return *out ? LYRA_OK : oom(where, err);
}

int lyra_config_set(lyra_config *c, const char *key, const char *value, const char *source,
                    const char *where, lyra_error *err) {
    int k = lyra_config_key_find(key);
    char q[256], hint[160];
    if (k < 0) {
        lyra_config_suggest(key ? key : "", 1, hint, sizeof hint);
        return lyra_err(err, LYRA_ERR_INPUT, where ? where : lyra_cfg_quote(key ? key : "", q, sizeof q),
                        "unknown key%s%s%s", hint[0] ? " (" : "", hint, hint[0] ? ")" : "");
    }
    if (!where) where = k == LYRA_CFG_DTYPE && !strcmp(key, LYRA_CFG_TORCH_DTYPE) ? key : lyra_cfg_defs[k].name;
    if (!source) source = "api";
    if (!value) return lyra_err(err, LYRA_ERR_INPUT, where, "missing value");
    json_t *raw = NULL, *v = NULL;
    int is_file = 0;
    int rc = from_string(k, value, where, &raw, &is_file, err);
    if (!rc && is_file) {
        v = raw; /* a map file's path: the runtime reads and checks it */
        raw = NULL;
    } else if (!rc) {
        rc = lyra_cfg_check(k, raw, where, &v, err);
    }
    json_decref(raw);
    if (!rc) rc = check_conflict(c, k, v, source, where, err);
    if (rc) {
        json_decref(v);
        return rc;
    }
    if (k == LYRA_CFG_MAX_MEMORY || k == LYRA_CFG_RESERVE) setter_notes(v, where);
    if (assign(c, k, v, source, is_file, 1)) return oom(where, err);
    return LYRA_OK;
}

/* -------------------------------------------------------------- discovery */

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

int lyra_config_discover(const char *explicit_path, int no_config, char **path,
                         const char **how, lyra_error *err) {
    *path = NULL;
    *how = "none";
    if (explicit_path && no_config)
        return lyra_err(err, LYRA_ERR_INPUT, "--no-config", "conflicts with --model-config");
    if (no_config) {
        *how = "--no-config";
        return LYRA_OK;
    }
    char q[256];
    if (explicit_path) {
        if (!explicit_path[0]) return lyra_err(err, LYRA_ERR_INPUT, "--model-config", "empty path");
        if (!exists(explicit_path)) {
            int e = errno;
            return lyra_err(err, LYRA_ERR_INPUT, "--model-config", "%s: %s",
                            lyra_cfg_quote(explicit_path, q, sizeof q), strerror(e));
        }
        *how = "--model-config";
        *path = lyra_cfg_strdup(explicit_path);
        return *path ? LYRA_OK : oom("--model-config", err);
    }
    const char *env = getenv("LYRA_MODEL_CONFIG");
    if (env && env[0]) {
        if (!strcmp(env, "none")) {
            *how = "LYRA_MODEL_CONFIG=none";
            return LYRA_OK;
        }
        if (!exists(env)) {
            int e = errno;
            return lyra_err(err, LYRA_ERR_INPUT, "LYRA_MODEL_CONFIG",
                            "%s: %s (LYRA_MODEL_CONFIG=none turns discovery off)",
                            lyra_cfg_quote(env, q, sizeof q), strerror(e));
        }
        *how = "LYRA_MODEL_CONFIG";
        *path = lyra_cfg_strdup(env);
        return *path ? LYRA_OK : oom("LYRA_MODEL_CONFIG", err);
    }
    if (exists("config/model_config.json")) {
        *how = "./config/model_config.json";
        *path = lyra_cfg_strdup("config/model_config.json");
        return *path ? LYRA_OK : oom("config", err);
    }
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    const char *dir = NULL, *rest = NULL; /* the candidate is dir + rest (sized to fit) */
    if (xdg && xdg[0] == '/') { /* the XDG spec: relative values are ignored */
        dir = xdg;
        rest = "/lyra/model_config.json";
        *how = "$XDG_CONFIG_HOME";
    } else if (home && home[0]) {
        dir = home;
        rest = "/.config/lyra/model_config.json";
        *how = "$HOME/.config";
    }
    if (dir) {
        size_t n = strlen(dir) + strlen(rest) + 1;
        char *cand = malloc(n);
        if (!cand) return oom("config", err);
        snprintf(cand, n, "%s%s", dir, rest);
        if (exists(cand)) {
            *path = cand;
            return LYRA_OK;
        }
        free(cand);
    }
    *how = "none";
    return LYRA_OK;
}

/* ------------------------------------------------------------------- load */

/* "file:" + the absolute form of name; malloc'd. */
static char *file_source(const char *name) {
    char *abs = realpath(name, NULL), *cwd = NULL;
    const char *p = abs ? abs : name;
    char *s;
    size_t n;
    if (!abs && name[0] != '/' && (cwd = getcwd(NULL, 0))) { /* sized by libc */
        n = strlen(cwd) + strlen(name) + 8;
        s = malloc(n);
        if (s) snprintf(s, n, "file:%s/%s", cwd, name);
        free(cwd);
    } else {
        n = strlen(p) + 6;
        s = malloc(n);
        if (s) snprintf(s, n, "file:%s", p);
    }
    free(abs);
    return s;
}

/* jansson's error text made printable (one line, no control bytes). */
static void clean_text(const char *in, char *out, size_t cap) {
    size_t j = 0;
    for (size_t i = 0; in[i] && j + 1 < cap; i++) {
        unsigned char ch = (unsigned char)in[i];
        out[j++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    out[j] = '\0';
}

/* Column of the first character of the token jansson names ("near 'yes'"):
 * it reports the last one. */
static int token_column(const json_error_t *je) {
    const char *t = strstr(je->text, " near '");
    int col = je->column;
    if (!t || strstr(je->text, "near end of file")) return col;
    t += 7;
    size_t len = strlen(t);
    if (len < 1 || t[len - 1] != '\'') return col;
    int chars = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (t[i] == '\n') return col;
        if (((unsigned char)t[i] & 0xc0) != 0x80) chars++;
    }
    return col - chars + 1 >= 1 ? col - chars + 1 : col;
}

/* Notes collected while checking a file, printed once it is valid (or,
 * under strict, the first one is the error). */
typedef struct notes {
    int n;                        /* lines */
    char line[MAX_NOTES][1200];   /* [n] */
} notes;

static void note(notes *nt, const char *where, const char *why) {
    if (nt->n < MAX_NOTES && snprintf(nt->line[nt->n], sizeof nt->line[0], "%s: ignored (%s)", where, why) >= 0)
        nt->n++;
}

/* max_memory / reserve keys kept for accelerate's configs but unused. */
static void memspec_notes(const json_t *v, const char *where, const char *sep, notes *nt) {
    char w[1000];
    if (!json_is_object(v)) return;
    if (json_object_get(v, "disk")) {
        snprintf(w, sizeof w, "%s%sdisk", where, sep);
        note(nt, w, "the disk tier has no cap: it holds what the other devices do not");
    }
    if (json_object_get(v, "mps")) {
        snprintf(w, sizeof w, "%s%smps", where, sep);
        note(nt, w, "lyra has no Apple GPU backend");
    }
}

static void setter_notes(const json_t *v, const char *where) {
    notes *nt = calloc(1, sizeof *nt);
    if (!nt) return;
    memspec_notes(v, where, ": ", nt);
    for (int i = 0; i < nt->n; i++) LYRA_WARN("%s", nt->line[i]);
    free(nt);
}

/* A file's staging: the checked values and what goes with them. */
typedef struct stage {
    const char *name;                /* the file as named, for messages */
    const char *dir;                 /* its directory (absolute), or NULL: paths as written */
    json_t *v[LYRA_CFG_N_KEYS];      /* checked values (references), NULL when absent */
    json_t *quant[2];                /* quantization_config's load_in_8bit, load_in_4bit */
    json_t *torch_dtype;             /* torch_dtype's value (dtype's other name), or NULL */
    int dtype_torch;                 /* v[dtype] came from torch_dtype */
    int map_file;                    /* v[device_map] is a map file's (resolved) path */
    notes nt;
} stage;

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* p as written in a config file in directory dir: "~" and "~/..." from
 * $HOME, relative paths joined to dir. repo_ok: a model_id that names no
 * file there and reads as a Hugging Face repo id (org/name[:TAG]) stays as
 * written. malloc'd (NULL when out of memory). */
static char *resolve_path(const char *p, const char *dir, int repo_ok) {
    const char *home = getenv("HOME");
    char *out;
    size_t n;
    if (p[0] == '~' && (p[1] == '/' || !p[1]) && home && home[0]) {
        n = strlen(home) + strlen(p) + 1;
        if ((out = malloc(n))) snprintf(out, n, "%s%s", home, p + 1);
        return out;
    }
    if (p[0] == '/' || !dir) return lyra_cfg_strdup(p);
    n = strlen(dir) + strlen(p) + 2;
    if (!(out = malloc(n))) return NULL;
    snprintf(out, n, "%s/%s", dir, p);
    if (!repo_ok || exists(out)) return out;
    char *colon = strrchr(out, ':'); /* DIR:TAG */
    if (colon && !strchr(colon, '/')) {
        *colon = '\0';
        int there = exists(out);
        *colon = ':';
        if (there) return out;
    }
    const char *slash = strchr(p, '/');
    int repo_like = slash && !strchr(slash + 1, '/') && p[0] != '.' && !ends_with(p, ".gguf");
    if (repo_like) {
        free(out);
        return lyra_cfg_strdup(p);
    }
    return out;
}

/* A device_map string that names a map file rather than a strategy. */
static int is_map_path(const char *s) {
    return !lyra_devspec_is_strategy(s) && (strchr(s, '/') || ends_with(s, ".json"));
}

/* "task": text-generation only. */
static int stage_task(const json_t *val, const char *where, lyra_error *err) {
    char q[256];
    if (!json_is_string(val)) {
        lyra_cfg_describe(val, q, sizeof q);
        return lyra_err(err, LYRA_ERR_INPUT, where, "expected a string, got %s", q);
    }
    if (!strcmp(json_string_value(val), "text-generation")) return LYRA_OK;
    lyra_cfg_quote(json_string_value(val), q, sizeof q);
    return lyra_err(err, LYRA_ERR_INPUT, where,
                    "unknown task \"%s\" (the valid one: \"text-generation\")", q);
}

/* quantization_config (transformers' BitsAndBytesConfig): load_in_8bit /
 * load_in_4bit are read, the rest noted. */
static int stage_quant(stage *s, const json_t *val, const char *where, lyra_error *err) {
    char q[256], w[1200];
    if (!json_is_object(val)) {
        lyra_cfg_describe(val, q, sizeof q);
        return lyra_err(err, LYRA_ERR_INPUT, where, "expected an object, got %s", q);
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)val, key, v) {
        lyra_cfg_quote(key, q, sizeof q);
        snprintf(w, sizeof w, "%s.%s", where, q);
        int i = !strcmp(key, "load_in_8bit") ? 0 : !strcmp(key, "load_in_4bit") ? 1 : -1;
        if (i < 0) {
            note(&s->nt, w, !strncmp(key, "bnb_4bit_", 9)
                                ? "lyra's 4-bit format is its own: see load_in_4bit"
                                : "lyra reads only load_in_8bit and load_in_4bit here");
            continue;
        }
        json_t *out = NULL;
        int rc = lyra_cfg_check(i ? LYRA_CFG_LOAD_IN_4BIT : LYRA_CFG_LOAD_IN_8BIT, v, w, &out, err);
        if (rc) return rc;
        json_decref(s->quant[i]);
        s->quant[i] = out;
    }
    return LYRA_OK;
}

/* "discord": the Discord bot's section (python -m lyra.discord; docs/discord.md).
 * The engine has no use for it and the bot checks its keys: here it only has
 * to be an object, accepted silently. */
static int stage_discord(const json_t *val, const char *where, lyra_error *err) {
    char q[256];
    if (json_is_object(val)) return LYRA_OK;
    lyra_cfg_describe(val, q, sizeof q);
    return lyra_err(err, LYRA_ERR_INPUT, where, "expected an object (the Discord bot's settings), got %s", q);
}

/* num_beams, num_return_sequences: 1 is noted, anything else an error. */
static int only_one(const char *key) {
    return !strcmp(key, "num_beams") || !strcmp(key, "num_return_sequences");
}

/* Check one key of the file (top level or inside pipeline_kwargs) into s. */
static int stage_key(stage *s, const char *key, const json_t *val, int in_pk, lyra_error *err) {
    char q[256], where[900], full[300], hint[160];
    lyra_cfg_quote(key, q, sizeof q);
    snprintf(where, sizeof where, "%s: %s%s", s->name, in_pk ? PK : "", q);
    snprintf(full, sizeof full, "%s%s", in_pk ? PK : "", key);
    if (!in_pk && !strcmp(key, "task")) return stage_task(val, where, err);
    if (!in_pk && !strcmp(key, "quantization_config")) return stage_quant(s, val, where, err);
    if (!in_pk && !strcmp(key, "discord")) return stage_discord(val, where, err);
    if (!in_pk && !strcmp(key, LYRA_CFG_TORCH_DTYPE)) { /* dtype as transformers 4 names it */
        json_decref(s->torch_dtype);
        s->torch_dtype = NULL;
        return lyra_cfg_check(LYRA_CFG_DTYPE, val, where, &s->torch_dtype, err);
    }
    int k = -1;
    for (int i = 0; i < LYRA_CFG_N_KEYS && (in_pk || strncmp(key, PK, PK_LEN)); i++)
        if (!strcmp(lyra_cfg_defs[i].name, full)) k = i;
    if (k < 0) {
        const char *why = lyra_cfg_hf_ignored(key, in_pk);
        if (why && only_one(key) && !(json_is_integer(val) && json_integer_value(val) == 1)) {
            lyra_cfg_describe(val, q, sizeof q);
            return lyra_err(err, LYRA_ERR_INPUT, where, "got %s: %s", q, why);
        }
        if (why) {
            note(&s->nt, where, why);
            return LYRA_OK;
        }
        lyra_config_suggest(key, in_pk, hint, sizeof hint);
        return lyra_err(err, LYRA_ERR_INPUT, where, "unknown key (%s)",
                        hint[0] ? hint : "see docs/config.md for the keys");
    }
    json_decref(s->v[k]); /* (keys are unique at each level: NULL) */
    s->v[k] = NULL;
    if (k == LYRA_CFG_DEVICE_MAP && json_is_string(val) && is_map_path(json_string_value(val))) {
        /* a map file, relative to the config file; read now to check it */
        char *p = resolve_path(json_string_value(val), s->dir, 0);
        if (!p) return oom(where, err);
        lyra_devspec d;
        lyra_devspec_init(&d);
        int rc = lyra_devspec_map_file(&d, p, err);
        lyra_devspec_free(&d);
        if (rc && err) { /* the file's error, under this config file's key */
            char inner[sizeof err->msg];
            snprintf(inner, sizeof inner, "%s", err->msg);
            lyra_err(err, rc, where, "%s", inner);
        }
        if (!rc && !(s->v[k] = json_string(p))) rc = oom(where, err);
        free(p);
        s->map_file = !rc;
        return rc;
    }
    int rc = lyra_cfg_check(k, val, where, &s->v[k], err);
    if (rc) return rc;
    if (k == LYRA_CFG_MAX_MEMORY || k == LYRA_CFG_RESERVE) memspec_notes(s->v[k], where, ".", &s->nt);
    if (k == LYRA_CFG_MODEL_ID && json_is_string(s->v[k])) {
        char *p = resolve_path(json_string_value(s->v[k]), s->dir, 1);
        json_t *r = p ? json_string(p) : NULL;
        free(p);
        if (!r) return oom(where, err);
        json_decref(s->v[k]);
        s->v[k] = r;
    }
    return LYRA_OK;
}

/* The checks across keys of one file. */
static int stage_conflicts(const char *name, json_t *const *staged, lyra_error *err) {
    char where[900];
    if (staged[LYRA_CFG_LOAD_IN_8BIT] && staged[LYRA_CFG_LOAD_IN_4BIT] &&
        json_is_true(staged[LYRA_CFG_LOAD_IN_8BIT]) && json_is_true(staged[LYRA_CFG_LOAD_IN_4BIT])) {
        snprintf(where, sizeof where, "%s: load_in_4bit", name);
        return lyra_err(err, LYRA_ERR_INPUT, where, "conflicts with load_in_8bit: choose one");
    }
    const json_t *map = staged[LYRA_CFG_DEVICE_MAP], *gl = staged[LYRA_CFG_GPU_LAYERS],
                 *ts = staged[LYRA_CFG_TENSOR_SPLIT];
    if (map && json_is_object(map) && gl && !json_is_null(gl)) {
        snprintf(where, sizeof where, "%s: gpu_layers", name);
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "conflicts with the explicit map in device_map: keep one (--gpu-layers on "
                        "the command line replaces the map)");
    }
    if (map && ts && !json_is_null(ts) &&
        !(json_is_string(map) && (!strcmp(json_string_value(map), "auto") ||
                                  !strcmp(json_string_value(map), "balanced")))) {
        snprintf(where, sizeof where, "%s: tensor_split", name);
        return lyra_err(err, LYRA_ERR_INPUT, where, "needs device_map \"auto\" or \"balanced\"");
    }
    return LYRA_OK;
}

/* Parse and check the whole file into s (references) and its notes. */
static int stage_file(const char *buf, size_t len, stage *s, lyra_error *err) {
    json_error_t je;
    char q[256], where[900], text[200];
    const char *name = s->name;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!root) {
        clean_text(je.text, text, sizeof text);
        if (je.line <= 0) return lyra_err(err, LYRA_ERR_INPUT, name, "invalid JSON: %s", text);
        snprintf(where, sizeof where, "%s:%d:%d", name, je.line, token_column(&je));
        return lyra_err(err, LYRA_ERR_INPUT, where, "invalid JSON: %s", text);
    }
    int rc = LYRA_OK;
    if (!json_is_object(root)) {
        lyra_cfg_describe(root, q, sizeof q);
        rc = lyra_err(err, LYRA_ERR_INPUT, name,
                      "expected a JSON object {\"key\": value, ...} at the top level, got %s", q);
    }
    const char *key;
    json_t *val;
    if (!rc) json_object_foreach(root, key, val) {
        if (strcmp(key, "pipeline_kwargs")) {
            rc = stage_key(s, key, val, 0, err);
        } else if (!json_is_object(val)) {
            lyra_cfg_describe(val, q, sizeof q);
            snprintf(where, sizeof where, "%s: pipeline_kwargs", name);
            rc = lyra_err(err, LYRA_ERR_INPUT, where, "expected an object, got %s", q);
        } else {
            const char *sk;
            json_t *sv;
            json_object_foreach(val, sk, sv) {
                if ((rc = stage_key(s, sk, sv, 1, err))) break;
            }
        }
        if (rc) break;
    }
    /* quantization_config's values where the top level has none */
    for (int i = 0; i < 2; i++) {
        int k = i ? LYRA_CFG_LOAD_IN_4BIT : LYRA_CFG_LOAD_IN_8BIT;
        if (!rc && s->quant[i] && !s->v[k]) {
            s->v[k] = s->quant[i];
            s->quant[i] = NULL;
        }
        json_decref(s->quant[i]);
        s->quant[i] = NULL;
    }
    /* torch_dtype: dtype's value when dtype is absent; both must agree */
    if (!rc && s->torch_dtype && s->v[LYRA_CFG_DTYPE] && !json_equal(s->torch_dtype, s->v[LYRA_CFG_DTYPE])) {
        snprintf(where, sizeof where, "%s: torch_dtype", name);
        rc = lyra_err(err, LYRA_ERR_INPUT, where,
                      "\"%s\" conflicts with dtype \"%s\": they are one key (transformers 4 and 5 "
                      "names), keep one", json_string_value(s->torch_dtype),
                      json_string_value(s->v[LYRA_CFG_DTYPE]));
    }
    if (!rc && s->torch_dtype && !s->v[LYRA_CFG_DTYPE]) {
        s->v[LYRA_CFG_DTYPE] = s->torch_dtype;
        s->torch_dtype = NULL;
        s->dtype_torch = 1;
    }
    json_decref(s->torch_dtype);
    s->torch_dtype = NULL;
    if (!rc) rc = stage_conflicts(name, s->v, err);
    json_decref(root);
    return rc;
}

/* The directory of the file name (absolute), or NULL when it is not one. */
static char *file_dir(const char *name) {
    char *abs = realpath(name, NULL);
    char *slash = abs ? strrchr(abs, '/') : NULL;
    if (!slash) {
        free(abs);
        return NULL;
    }
    if (slash == abs) slash[1] = '\0';
    else *slash = '\0';
    return abs;
}

int lyra_config_load_buffer(lyra_config *c, const char *buf, size_t len, const char *name,
                            lyra_error *err) {
    stage *s = calloc(1, sizeof *s);
    if (!name) name = "<config>";
    if (!s) return oom(name, err);
    s->name = name;
    char *dir = file_dir(name);
    s->dir = dir;
    int rc = stage_file(buf, len, s, err);
    if (!rc && c->strict && s->nt.n) /* lyra config validate --strict */
        rc = lyra_err(err, LYRA_ERR_INPUT, s->nt.line[0], "a note is an error under --strict");
    char *src = rc ? NULL : file_source(name);
    char *abs = src ? lyra_cfg_strdup(src + 5) : NULL;
    if (!rc && (!src || !abs)) rc = oom(name, err);
    for (int k = 0; k < LYRA_CFG_N_KEYS; k++) {
        if (!s->v[k]) continue;
        int is_file = k == LYRA_CFG_DEVICE_MAP && s->map_file;
        char *ksrc = src;
        if (!rc && k == LYRA_CFG_DTYPE && s->dtype_torch) { /* config show names the key: "file:P (torch_dtype)" */
            size_t n = strlen(src) + sizeof " (" LYRA_CFG_TORCH_DTYPE ")";
            if ((ksrc = malloc(n))) snprintf(ksrc, n, "%s (%s)", src, LYRA_CFG_TORCH_DTYPE);
        }
        if (!rc && !ksrc) rc = oom(name, err);
        if (!rc && assign(c, k, s->v[k], ksrc, is_file, 0)) rc = oom(name, err);
        else if (rc) json_decref(s->v[k]);
        if (ksrc != src) free(ksrc);
    }
    if (!rc) {
        free(c->path);
        c->path = abs;
        abs = NULL;
        for (int i = 0; i < s->nt.n; i++) LYRA_WARN("%s", s->nt.line[i]);
    }
    free(abs);
    free(src);
    free(dir);
    free(s);
    return rc;
}

int lyra_config_load_file(lyra_config *c, const char *path, lyra_error *err) {
    /* opened without blocking and checked before reading: a FIFO or a
     * device would block (or never end) */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return lyra_err(err, LYRA_ERR_INPUT, path, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lyra_err(err, LYRA_ERR_INPUT, path, "not a regular file");
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return lyra_err(err, LYRA_ERR_INPUT, path, "cannot open: %s", strerror(errno));
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    int rc = buf ? LYRA_OK : oom(path, err);
    while (!rc) {
        if (n == cap) {
            if (cap >= MAX_FILE_BYTES) {
                rc = lyra_err(err, LYRA_ERR_INPUT, path, "too large for a config (more than %zu bytes)",
                              MAX_FILE_BYTES);
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = oom(path, err);
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) {
            if (ferror(f)) rc = lyra_err(err, LYRA_ERR_INPUT, path, "cannot read: %s", strerror(errno));
            break;
        }
    }
    fclose(f);
    /* a UTF-8 byte order mark (as some Windows editors write) is not JSON: skip it */
    size_t bom = n >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3) ? 3 : 0;
    if (!rc) rc = lyra_config_load_buffer(c, buf + bom, n - bom, path, err);
    free(buf);
    return rc;
}

int lyra_config_load_auto(lyra_config *c, const char *explicit_path, int no_config,
                          lyra_error *err) {
    char *path = NULL;
    const char *how = "none";
    int rc = lyra_config_discover(explicit_path, no_config, &path, &how, err);
    if (!rc && path) rc = lyra_config_load_file(c, path, err);
    if (!rc) c->how = how;
    if (!rc && path) LYRA_INFO("config: %s (%s)", c->path, how);
    free(path);
    return rc;
}

/* ------------------------------------------------------ generation_config */

int lyra_config_load_generation(lyra_config *c, const char *dir, lyra_error *err) {
    static const struct { const char *hf, *key; } keys[] = {
        {"temperature", "temperature"}, {"top_p", "top_p"}, {"top_k", "top_k"},
        {"repetition_penalty", "repetition_penalty"}, {"max_new_tokens", "max_new_tokens"},
        {"do_sample", "do_sample"},
    };
    char path[PATH_MAX + 32], abs_dir[PATH_MAX];
    struct stat st;
    if (!dir || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return LYRA_OK;
    if (!realpath(dir, abs_dir)) snprintf(abs_dir, sizeof abs_dir, "%.*s", (int)sizeof abs_dir - 1, dir);
    snprintf(path, sizeof path, "%s/generation_config.json", abs_dir);
    if (stat(path, &st) != 0) return LYRA_OK;
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        return lyra_err(err, LYRA_ERR_INPUT, path, "%d:%d: invalid JSON object: %s", je.line, je.column, je.text);
    }
    char source[PATH_MAX + 40], where[PATH_MAX + 64];
    snprintf(source, sizeof source, "model:%s", path);
    int rc = LYRA_OK;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && !rc; i++) {
        const json_t *v = json_object_get(j, keys[i].hf);
        int k = lyra_config_key_find(keys[i].key);
        if (!v || json_is_null(v) || k < 0 || strncmp(c->source[k], "default", 7)) continue; /* set above */
        snprintf(where, sizeof where, "%s: %s", path, keys[i].hf);
        lyra_error e2;
        rc = lyra_config_set_json(c, keys[i].key, v, source, where, &e2);
        if (rc == LYRA_ERR_INPUT) { /* the model's own file: a value lyra refuses is skipped */
            LYRA_WARN("%s; ignored", e2.msg);
            rc = LYRA_OK;
        } else if (rc) {
            *err = e2;
        }
    }
    json_decref(j);
    if (!rc) rc = lyra_config_settle_sampling(c, err);
    return rc;
}
