/* devspec.c: the one parser of the device settings (see devspec.h):
 * strategies and device maps (inline JSON or a map file), gpu_layers,
 * tensor_split and per-device sizes, from flag strings and config JSON
 * values alike, into lyra_model_params' typed fields. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/devspec.h"
#include "core/size.h"

#define SPLIT_ONE 1000000 /* proportions are checked in fixed point: 1.0 */

void lyra_devspec_init(lyra_devspec *d) {
    memset(d, 0, sizeof *d);
    d->strategy = LYRA_DEVICE_MAP_AUTO;
    d->gpu_layers = LYRA_GPU_LAYERS_UNSET;
}

void lyra_devspec_free(lyra_devspec *d) {
    free(d->map);
    free(d->names);
    free(d->source);
    lyra_devspec_init(d);
}

void lyra_devspec_apply(const lyra_devspec *d, lyra_model_params *mp) {
    mp->device_strategy = d->strategy;
    mp->device_gpu = d->gpu;
    mp->device_map = d->n_map ? d->map : NULL;
    mp->n_device_map = d->n_map;
    mp->device_map_source = d->source;
    mp->max_memory = d->n_max_memory ? d->max_memory : NULL;
    mp->n_max_memory = d->n_max_memory;
    mp->reserve = d->n_reserve ? d->reserve : NULL;
    mp->n_reserve = d->n_reserve;
    mp->gpu_layers = d->gpu_layers;
    mp->tensor_split = d->n_tensor_split ? d->tensor_split : NULL;
    mp->n_tensor_split = d->n_tensor_split;
}

const char *lyra_devspec_device_name(int32_t device, char *buf, size_t cap) {
    int32_t d = LYRA_DEVICE_LOCAL(device), r = LYRA_DEVICE_RANK(device);
    char at[16] = "";
    if (r >= 0) snprintf(at, sizeof at, "@%d", (int)r);
    if (d == LYRA_DEVICE_CPU) snprintf(buf, cap, "cpu%s", at);
    else if (d == LYRA_DEVICE_DISK) snprintf(buf, cap, "disk%s", at);
    else snprintf(buf, cap, "%d%s", (int)d, at);
    return buf;
}

/* A rank suffix "@R" (R: 1 to 4 digits) at the end of s[0, *len): *len
 * shortened to before it, *rank = R; no suffix: *rank = -1. 0 when
 * malformed ("0@", "0@x"). */
static int rank_suffix(const char *s, size_t *len, int *rank) {
    *rank = -1;
    const char *at = memchr(s, '@', *len);
    if (!at) return 1;
    size_t k = *len - (size_t)(at - s) - 1;
    if (!k || k > 4 || strspn(at + 1, "0123456789") < k) return 0;
    *rank = atoi(at + 1);
    *len = (size_t)(at - s);
    return 1;
}

/* Digits only, value < 1000: a GPU index. 1 on success. */
static int gpu_index(const char *s, size_t len, int *out) {
    if (!len || len > 3) return 0;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

/* "N", "cuda:N": a GPU index. 1 on success. */
static int gpu_spec(const char *s, size_t len, int *out) {
    if (len > 5 && !strncmp(s, "cuda:", 5)) return gpu_index(s + 5, len - 5, out);
    return gpu_index(s, len, out);
}

/* ------------------------------------------------------------- strategies */

int lyra_devspec_is_strategy(const char *s) {
    static const char *names[] = {"auto", "balanced", "balanced_low_0", "sequential", "cpu", "cuda"};
    int g;
    if (!s) return 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(s, names[i])) return 1;
    return gpu_spec(s, strlen(s), &g);
}

int lyra_devspec_strategy_parse(const char *s, const char *where, lyra_device_strategy *st,
                                int32_t *gpu, lyra_error *err) {
    int g;
    if (!s) s = "";
    if (!strcmp(s, "auto")) *st = LYRA_DEVICE_MAP_AUTO;
    else if (!strcmp(s, "balanced")) *st = LYRA_DEVICE_MAP_BALANCED;
    else if (!strcmp(s, "balanced_low_0")) *st = LYRA_DEVICE_MAP_BALANCED_LOW_0;
    else if (!strcmp(s, "sequential")) *st = LYRA_DEVICE_MAP_SEQUENTIAL;
    else if (!strcmp(s, "cpu")) *st = LYRA_DEVICE_MAP_CPU;
    else if (!strcmp(s, "cuda")) { *st = LYRA_DEVICE_MAP_GPU; *gpu = 0; }
    else if (gpu_spec(s, strlen(s), &g)) { *st = LYRA_DEVICE_MAP_GPU; *gpu = g; }
    else {
        char q[256];
        lyra_size_quote(s, strlen(s), q, sizeof q);
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "unknown device map \"%s\" (auto, balanced, balanced_low_0, sequential, "
                        "cpu, cuda, cuda:N, N or a JSON map)",
                        q);
    }
    return LYRA_OK;
}

/* ---------------------------------------------------------- explicit maps */

/* The device of a map value: 0, "0", "cuda:0", "cuda", "cpu", "disk"; an
 * error naming the key (quoted in q) otherwise. */
static int map_device(const json_t *v, const char *where, const char *q, int32_t *out,
                      lyra_error *err) {
    int g = -1;
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x >= 0 && x < 1000) g = (int)x;
    } else if (json_is_string(v) && json_string_length(v) < 32) {
        char s0[32];
        size_t n = json_string_length(v);
        int rank = -1;
        if (rank_suffix(json_string_value(v), &n, &rank)) { /* "ID@RANK" (docs/distributed.md) */
            memcpy(s0, json_string_value(v), n);
            s0[n] = '\0';
            const char *s = s0;
            int d = -3;
            if (!strcmp(s, "cpu")) d = LYRA_DEVICE_CPU;
            else if (!strcmp(s, "disk")) d = LYRA_DEVICE_DISK;
            else if (!strcmp(s, "cuda")) d = 0;
            else {
                if (n > 5 && !strncmp(s, "cuda:", 5)) s += 5, n -= 5;
                if (n >= 1 && n <= 3 && strspn(s, "0123456789") == n) d = atoi(s);
            }
            if (d > -3) {
                *out = rank >= 0 ? LYRA_DEVICE_AT(d, rank) : d;
                return LYRA_OK;
            }
        }
    }
    if (g >= 0) {
        *out = g;
        return LYRA_OK;
    }
    char vq[160];
    if (json_is_string(v)) { /* "gpu" */
        char t[150];
        lyra_size_quote(json_string_value(v), json_string_length(v), t, sizeof t);
        snprintf(vq, sizeof vq, "\"%s\"", t);
    } else { /* -1, true, null, [..] */
        char *vs = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        snprintf(vq, sizeof vq, "%.60s%s", vs ? vs : "?", vs && strlen(vs) > 60 ? "..." : "");
        for (char *c = vq; *c; c++)
            if ((unsigned char)*c < 0x20) *c = ' ';
        free(vs);
    }
    return lyra_err(err, LYRA_ERR_INPUT, where,
                    "\"%s\": unknown device %s (0, \"0\", \"cuda:0\", \"cpu\" or \"disk\")", q, vq);
}

/* A key's last part as a layer range: "N-M" (as lyra prints maps) needs
 * N <= M; "N+" (N and above) is always fine. The plan matches them. */
static int map_key(const char *key, const char *where, const char *q, lyra_error *err) {
    const char *dot = strrchr(key, '.'), *r = dot ? dot + 1 : key;
    const char *dash = strchr(r, '-');
    size_t a = dash ? (size_t)(dash - r) : 0, b = dash ? strlen(dash + 1) : 0;
    if (!dash || !a || !b || a > 9 || b > 9 || strspn(r, "0123456789") != a ||
        strspn(dash + 1, "0123456789") != b)
        return LYRA_OK;
    if (atol(r) > atol(dash + 1))
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "\"%s\": empty range (N-M needs N <= M; N+ is N and above)", q);
    return LYRA_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* An object {module: device} into d's map (entries in sorted key order, so
 * errors do not depend on the object's order). */
static int map_object(lyra_devspec *d, const json_t *v, const char *where, lyra_error *err) {
    size_t n = json_object_size(v), bytes = 0, i = 0;
    const char **keys = malloc((n ? n : 1) * sizeof *keys);
    lyra_device_map_entry *map = malloc((n ? n : 1) * sizeof *map);
    char *names = NULL;
    int rc = keys && map ? LYRA_OK : lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
    const char *k;
    json_t *val;
    if (!rc) json_object_foreach((json_t *)v, k, val) {
        keys[i++] = k;
        bytes += strlen(k) + 1;
    }
    if (!rc) qsort(keys, n, sizeof *keys, cmp_str);
    if (!rc && !(names = malloc(bytes ? bytes : 1))) rc = lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
    size_t off = 0;
    for (i = 0; !rc && i < n; i++) {
        char q[256];
        lyra_size_quote(keys[i], strlen(keys[i]), q, sizeof q);
        rc = map_device(json_object_get(v, keys[i]), where, q, &map[i].device, err);
        if (!rc) rc = map_key(keys[i], where, q, err);
        size_t len = strlen(keys[i]) + 1;
        memcpy(names + off, keys[i], len);
        map[i].module = names + off;
        off += len;
    }
    free(keys);
    if (rc) {
        free(map);
        free(names);
        return rc;
    }
    free(d->map);
    free(d->names);
    d->map = map;
    d->names = names;
    d->n_map = (int)n;
    d->strategy = LYRA_DEVICE_MAP_EXPLICIT;
    return LYRA_OK;
}

int lyra_devspec_map_from_json(lyra_devspec *d, const json_t *v, const char *where,
                               lyra_error *err) {
    if (json_is_string(v))
        return lyra_devspec_strategy_parse(json_string_value(v), where, &d->strategy, &d->gpu, err);
    if (json_is_integer(v)) {
        json_int_t g = json_integer_value(v);
        if (g < 0 || g >= 1000)
            return lyra_err(err, LYRA_ERR_INPUT, where, "GPU index %lld out of range", (long long)g);
        d->strategy = LYRA_DEVICE_MAP_GPU;
        d->gpu = (int32_t)g;
        return LYRA_OK;
    }
    if (json_is_object(v)) return map_object(d, v, where, err);
    return lyra_err(err, LYRA_ERR_INPUT, where,
                    "expected a strategy name, a GPU index or an object mapping modules to "
                    "devices");
}

int lyra_devspec_map_file(lyra_devspec *d, const char *path, lyra_error *err) {
    struct stat st; /* a FIFO or a device would block or never end */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return lyra_err(err, LYRA_ERR_INPUT, path, "cannot read device map: not a regular file");
    json_error_t je;
    json_t *v = json_load_file(path, JSON_DECODE_ANY, &je);
    if (!v) {
        if (je.line <= 0) return lyra_err(err, LYRA_ERR_INPUT, path, "cannot read device map: %s", je.text);
        return lyra_err(err, LYRA_ERR_INPUT, path, "line %d: invalid JSON: %s", je.line, je.text);
    }
    int rc = lyra_devspec_map_from_json(d, v, path, err);
    json_decref(v);
    if (rc) return rc;
    size_t n = strlen(path) + 1;
    char *s = malloc(n);
    if (!s) return lyra_err(err, LYRA_ERR_OOM, path, "out of memory");
    memcpy(s, path, n);
    free(d->source);
    d->source = s;
    return LYRA_OK;
}

/* ------------------------------------------------------------- gpu_layers */

int lyra_devspec_gpu_layers_parse(const char *s, const char *where, int32_t *out, lyra_error *err) {
    char q[256];
    if (!s) s = "";
    lyra_size_quote(s, strlen(s), q, sizeof q);
    if (!strcmp(s, "all")) {
        *out = LYRA_GPU_LAYERS_ALL;
        return LYRA_OK;
    }
    if (s[0] == '-' && s[1] >= '0' && s[1] <= '9')
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "\"%s\": the number of GPU layers cannot be negative (0.. or all)", q);
    if (!*s) return lyra_err(err, LYRA_ERR_INPUT, where, "empty (a number of layers or all)");
    int64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return lyra_err(err, LYRA_ERR_INPUT, where,
                            "\"%s\" is not a number of layers (0.. or all)", q);
        if (v < INT32_MAX) v = v * 10 + (*p - '0');
    }
    *out = v >= INT32_MAX ? LYRA_GPU_LAYERS_ALL : (int32_t)v;
    return LYRA_OK;
}

int lyra_devspec_gpu_layers_from_json(const json_t *v, const char *where, int32_t *out,
                                      lyra_error *err) {
    if (json_is_string(v)) return lyra_devspec_gpu_layers_parse(json_string_value(v), where, out, err);
    if (!json_is_integer(v))
        return lyra_err(err, LYRA_ERR_INPUT, where, "expected a number of layers or \"all\"");
    json_int_t n = json_integer_value(v);
    if (n < 0)
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "%lld: the number of GPU layers cannot be negative (0.. or all)",
                        (long long)n);
    *out = n >= INT32_MAX ? LYRA_GPU_LAYERS_ALL : (int32_t)n;
    return LYRA_OK;
}

/* ----------------------------------------------------------- tensor_split */

/* One proportion "3" / "0.25" (<= 6 decimals, <= 1000000) to fixed point. */
static int split_value(const char *s, size_t len, const char *where, uint64_t *out,
                       lyra_error *err) {
    char q[256];
    lyra_size_quote(s, len, q, sizeof q);
    uint64_t ip = 0, fp = 0;
    size_t i = 0, nd = 0, nf = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        if (ip <= SPLIT_ONE) ip = ip * 10 + (uint64_t)(s[i] - '0');
        i++;
        nd++;
    }
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (nf < 6) fp = fp * 10 + (uint64_t)(s[i] - '0');
            else if (s[i] != '0')
                return lyra_err(err, LYRA_ERR_INPUT, where, "\"%s\": at most 6 decimals", q);
            i++;
            nf++;
        }
        if (!nf) nd = 0;
    }
    if (!nd || i != len)
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "\"%s\" is not a proportion (e.g. 3,1 or 0.6,0.4)", q);
    for (size_t k = nf < 6 ? nf : 6; k < 6; k++) fp *= 10;
    if (ip > SPLIT_ONE)
        return lyra_err(err, LYRA_ERR_INPUT, where, "\"%s\": proportions are at most 1000000", q);
    *out = ip * SPLIT_ONE + fp;
    return LYRA_OK;
}

/* Fixed-point proportions fx[n] into out as floats; at least one > 0. */
static int split_out(const uint64_t *fx, int n, const char *where, float *out, int *n_out,
                     lyra_error *err) {
    int any = 0;
    for (int i = 0; i < n; i++) any |= fx[i] != 0;
    if (!any) return lyra_err(err, LYRA_ERR_INPUT, where, "every proportion is 0");
    for (int i = 0; i < n; i++) out[i] = (float)((double)fx[i] / SPLIT_ONE);
    *n_out = n;
    return LYRA_OK;
}

int lyra_devspec_split_parse(const char *s, const char *where, float *out, int *n_out,
                             lyra_error *err) {
    if (!s || !*s) return lyra_err(err, LYRA_ERR_INPUT, where, "empty (e.g. 3,1)");
    uint64_t fx[LYRA_MAX_TENSOR_SPLIT];
    size_t len = strlen(s);
    int n = 0;
    for (size_t i = 0; i <= len;) {
        size_t j = i;
        while (j < len && s[j] != ',') j++;
        if (n == LYRA_MAX_TENSOR_SPLIT)
            return lyra_err(err, LYRA_ERR_INPUT, where, "more than %d proportions",
                            LYRA_MAX_TENSOR_SPLIT);
        size_t a = i, b = j;
        while (a < b && s[a] == ' ') a++;
        while (b > a && s[b - 1] == ' ') b--;
        int rc = split_value(s + a, b - a, where, &fx[n], err);
        if (rc) return rc;
        n++;
        i = j + 1;
    }
    return split_out(fx, n, where, out, n_out, err);
}

int lyra_devspec_split_from_json(const json_t *v, const char *where, float *out, int *n_out,
                                 lyra_error *err) {
    if (json_is_string(v)) return lyra_devspec_split_parse(json_string_value(v), where, out, n_out, err);
    if (!json_is_array(v) || json_array_size(v) == 0)
        return lyra_err(err, LYRA_ERR_INPUT, where, "expected an array of proportions, e.g. [3, 1]");
    if (json_array_size(v) > LYRA_MAX_TENSOR_SPLIT)
        return lyra_err(err, LYRA_ERR_INPUT, where, "more than %d proportions", LYRA_MAX_TENSOR_SPLIT);
    uint64_t fx[LYRA_MAX_TENSOR_SPLIT];
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        double x = json_is_integer(e) ? (double)json_integer_value(e)
                   : json_is_real(e)  ? json_real_value(e) : -1.0;
        if (!json_is_number(e) || !(x >= 0.0) || x > 1e6)
            return lyra_err(err, LYRA_ERR_INPUT, where,
                            "entry %zu: expected a number from 0 to 1000000", i);
        fx[i] = (uint64_t)llround(x * SPLIT_ONE);
    }
    return split_out(fx, (int)json_array_size(v), where, out, n_out, err);
}

/* ------------------------------------------------------ per-device sizes */

/* The device of a sizes key: "cpu", N or cuda:N; 1 on success. */
static int bytes_key(const char *s, size_t len, int32_t *dev) {
    int g, rank;
    if (!rank_suffix(s, &len, &rank)) return 0; /* "ID@RANK" (docs/distributed.md) */
    if (len == 3 && !strncmp(s, "cpu", 3)) g = LYRA_DEVICE_CPU;
    else if (!gpu_spec(s, len, &g)) return 0;
    *dev = rank >= 0 ? LYRA_DEVICE_AT(g, rank) : g;
    return 1;
}

int lyra_devspec_bytes_unused(const char *s, size_t len) {
    return (len == 4 && !strncmp(s, "disk", 4)) || (len == 3 && !strncmp(s, "mps", 3));
}

static int bytes_add(lyra_device_bytes *out, int *n, int32_t dev, uint64_t bytes,
                     const char *where, const char *raw, lyra_error *err) {
    char name[16];
    for (int i = 0; i < *n; i++)
        if (out[i].device == dev)
            return lyra_err(err, LYRA_ERR_INPUT, where, "device %s given twice (\"%s\")",
                            lyra_devspec_device_name(dev, name, sizeof name), raw);
    if (*n == LYRA_DEVSPEC_MAX_BYTES) return lyra_err(err, LYRA_ERR_INPUT, where, "too many entries");
    out[*n].device = dev;
    out[*n].bytes = bytes;
    (*n)++;
    return LYRA_OK;
}

int lyra_devspec_bytes_parse(const char *s, const char *where, lyra_device_bytes *out, int *n_out,
                             lyra_error *err) {
    lyra_device_bytes e[LYRA_DEVSPEC_MAX_BYTES];
    int n = 0;
    size_t len = s ? strlen(s) : 0;
    for (size_t i = 0; len && i <= len;) {
        size_t j = i;
        while (j < len && s[j] != ',') j++;
        size_t a = i, b = j;
        while (a < b && s[a] == ' ') a++;
        while (b > a && s[b - 1] == ' ') b--;
        char q[256], w[400];
        int32_t dev;
        lyra_size_quote(s + a, b - a, q, sizeof q);
        const char *eq = memchr(s + a, '=', b - a);
        if (a == b)
            return lyra_err(err, LYRA_ERR_INPUT, where, "empty entry (expected e.g. 0=6GiB,cpu=16GiB)");
        if (!eq)
            return lyra_err(err, LYRA_ERR_INPUT, where,
                            "entry \"%s\": expected DEVICE=SIZE (e.g. 0=6GiB or cpu=16GiB)", q);
        size_t ka = a, kb = (size_t)(eq - s);
        while (kb > ka && s[kb - 1] == ' ') kb--;
        if (!bytes_key(s + ka, kb - ka, &dev))
            return lyra_err(err, LYRA_ERR_INPUT, where,
                            "entry \"%s\": unknown device (a GPU index N, cuda:N or cpu)", q);
        snprintf(w, sizeof w, "%s entry \"%s\"", where ? where : "max_memory", q);
        size_t va = (size_t)(eq - s) + 1;
        uint64_t bytes;
        int rc = lyra_size_parse_n(s + va, b - va, w, &bytes, err);
        if (!rc) rc = bytes_add(e, &n, dev, bytes, where, q, err);
        if (rc) return rc;
        i = j + 1;
    }
    memcpy(out, e, (size_t)n * sizeof *e);
    *n_out = n;
    return LYRA_OK;
}

int lyra_devspec_bytes_from_json(const json_t *v, const char *where, lyra_device_bytes *out,
                                 int *n_out, lyra_error *err) {
    if (!json_is_object(v))
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "expected an object such as {\"0\": \"6GiB\", \"cpu\": \"16GiB\"}");
    /* checked in sorted key order, so errors do not depend on the object's order */
    const char *keys[LYRA_DEVSPEC_MAX_BYTES];
    size_t n = 0;
    const char *k;
    json_t *val;
    json_object_foreach((json_t *)v, k, val) {
        if (n == LYRA_DEVSPEC_MAX_BYTES) return lyra_err(err, LYRA_ERR_INPUT, where, "too many entries");
        size_t i = n++;
        while (i > 0 && strcmp(keys[i - 1], k) > 0) {
            keys[i] = keys[i - 1];
            i--;
        }
        keys[i] = k;
    }
    lyra_device_bytes e[LYRA_DEVSPEC_MAX_BYTES];
    int ne = 0;
    for (size_t i = 0; i < n; i++) {
        char q[256], w[400];
        int32_t dev;
        lyra_size_quote(keys[i], strlen(keys[i]), q, sizeof q);
        int unused = lyra_devspec_bytes_unused(keys[i], strlen(keys[i]));
        if (!unused && !bytes_key(keys[i], strlen(keys[i]), &dev))
            return lyra_err(err, LYRA_ERR_INPUT, where,
                            "key \"%s\": unknown device (a GPU index N, cuda:N or cpu)", q);
        snprintf(w, sizeof w, "%s.%s", where ? where : "max_memory", q);
        uint64_t bytes;
        int rc = lyra_size_from_json(json_object_get(v, keys[i]), w, &bytes, err);
        if (!rc && !unused) rc = bytes_add(e, &ne, dev, bytes, where, q, err);
        if (rc) return rc;
    }
    /* the entries in the object's order */
    int m = 0;
    json_object_foreach((json_t *)v, k, val) {
        int32_t dev = 0;
        if (!bytes_key(k, strlen(k), &dev)) continue; /* disk, mps */
        for (int i = 0; i < ne; i++)
            if (e[i].device == dev) out[m++] = e[i];
    }
    *n_out = m;
    return LYRA_OK;
}
