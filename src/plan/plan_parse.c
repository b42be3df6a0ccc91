/* plan_parse.c: the planner's inputs from flags and configs (see plan.h):
 * strategies and device maps, gpu_layers, tensor_split, --max-memory and
 * --reserve specs, and the budgets they give the devices. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/size.h"
#include "plan/plan.h"

#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)

lyra_plan_opts lyra_plan_default_opts(void) {
    lyra_plan_opts o;
    memset(&o, 0, sizeof o);
    o.strategy = LYRA_PLAN_AUTO;
    o.gpu_layers = -1;
    o.ctx = 4096;
    o.batch = 512;
    o.kv_chunk = 256;
    o.fallback = 1;
    return o;
}

void lyra_plan_note(lyra_plan_notes *notes, const char *fmt, ...) {
    if (!notes || notes->n >= LYRA_PLAN_MAX_NOTES) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(notes->line[notes->n], sizeof notes->line[0], fmt, ap);
    va_end(ap);
    for (char *p = notes->line[notes->n]; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    notes->n++;
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

int lyra_plan_is_strategy(const char *s) {
    static const char *names[] = {"auto", "balanced", "balanced_low_0", "sequential", "cpu", "cuda"};
    int g;
    if (!s) return 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(s, names[i])) return 1;
    return gpu_spec(s, strlen(s), &g);
}

int lyra_plan_strategy_parse(const char *s, const char *where, lyra_plan_opts *o,
                             lyra_error *err) {
    int g;
    if (!s) s = "";
    if (!strcmp(s, "auto")) o->strategy = LYRA_PLAN_AUTO;
    else if (!strcmp(s, "balanced")) o->strategy = LYRA_PLAN_BALANCED;
    else if (!strcmp(s, "balanced_low_0")) o->strategy = LYRA_PLAN_BALANCED_LOW_0;
    else if (!strcmp(s, "sequential")) o->strategy = LYRA_PLAN_SEQUENTIAL;
    else if (!strcmp(s, "cpu")) o->strategy = LYRA_PLAN_CPU;
    else if (!strcmp(s, "cuda")) { o->strategy = LYRA_PLAN_GPU; o->gpu = 0; }
    else if (gpu_spec(s, strlen(s), &g)) { o->strategy = LYRA_PLAN_GPU; o->gpu = g; }
    else {
        char q[256];
        lyra_size_quote(s, strlen(s), q, sizeof q);
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "unknown device map \"%s\" (auto, balanced, balanced_low_0, sequential, "
                        "cpu, cuda, cuda:N, N or a JSON map)",
                        q);
    }
    o->map = NULL;
    snprintf(o->map_where, sizeof o->map_where, "%s", where ? where : "device_map");
    return LYRA_OK;
}

int lyra_plan_device_map_from_json(const json_t *v, const char *where, lyra_plan_opts *o,
                                   lyra_error *err) {
    if (json_is_string(v)) return lyra_plan_strategy_parse(json_string_value(v), where, o, err);
    if (json_is_integer(v)) {
        json_int_t g = json_integer_value(v);
        if (g < 0 || g >= 1000)
            return lyra_err(err, LYRA_ERR_INPUT, where, "GPU index %lld out of range", (long long)g);
        o->strategy = LYRA_PLAN_GPU;
        o->gpu = (int)g;
        o->map = NULL;
    } else if (json_is_object(v)) {
        o->strategy = LYRA_PLAN_MAP;
        o->map = v;
    } else {
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "expected a strategy name, a GPU index or an object mapping modules to "
                        "devices");
    }
    snprintf(o->map_where, sizeof o->map_where, "%s", where ? where : "device_map");
    return LYRA_OK;
}

/* ------------------------------------------------------------- gpu_layers */

int lyra_plan_gpu_layers_parse(const char *s, const char *where, int32_t *out, lyra_error *err) {
    char q[256];
    if (!s) s = "";
    lyra_size_quote(s, strlen(s), q, sizeof q);
    if (!strcmp(s, "all")) {
        *out = LYRA_PLAN_ALL_LAYERS;
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
        if (v < LYRA_PLAN_ALL_LAYERS) v = v * 10 + (*p - '0');
    }
    *out = v >= LYRA_PLAN_ALL_LAYERS ? LYRA_PLAN_ALL_LAYERS : (int32_t)v;
    return LYRA_OK;
}

int lyra_plan_gpu_layers_from_json(const json_t *v, const char *where, int32_t *out,
                                   lyra_error *err) {
    if (json_is_string(v)) return lyra_plan_gpu_layers_parse(json_string_value(v), where, out, err);
    if (!json_is_integer(v))
        return lyra_err(err, LYRA_ERR_INPUT, where, "expected a number of layers or \"all\"");
    json_int_t n = json_integer_value(v);
    if (n < 0)
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "%lld: the number of GPU layers cannot be negative (0.. or all)",
                        (long long)n);
    *out = n >= LYRA_PLAN_ALL_LAYERS ? LYRA_PLAN_ALL_LAYERS : (int32_t)n;
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
        if (ip <= LYRA_PLAN_SPLIT_ONE) ip = ip * 10 + (uint64_t)(s[i] - '0');
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
    if (ip > LYRA_PLAN_SPLIT_ONE)
        return lyra_err(err, LYRA_ERR_INPUT, where, "\"%s\": proportions are at most 1000000", q);
    *out = ip * LYRA_PLAN_SPLIT_ONE + fp;
    return LYRA_OK;
}

static int split_check(const lyra_plan_opts *o, const char *where, lyra_error *err) {
    for (int i = 0; i < o->n_split; i++)
        if (o->split[i]) return LYRA_OK;
    return lyra_err(err, LYRA_ERR_INPUT, where, "every proportion is 0");
}

int lyra_plan_split_parse(const char *s, const char *where, lyra_plan_opts *o, lyra_error *err) {
    if (!s || !*s) return lyra_err(err, LYRA_ERR_INPUT, where, "empty (e.g. 3,1)");
    size_t len = strlen(s);
    int n = 0;
    for (size_t i = 0; i <= len;) {
        size_t j = i;
        while (j < len && s[j] != ',') j++;
        if (n == LYRA_PLAN_MAX_GPUS)
            return lyra_err(err, LYRA_ERR_INPUT, where, "more than %d proportions",
                            LYRA_PLAN_MAX_GPUS);
        size_t a = i, b = j;
        while (a < b && s[a] == ' ') a++;
        while (b > a && s[b - 1] == ' ') b--;
        int rc = split_value(s + a, b - a, where, &o->split[n], err);
        if (rc) return rc;
        n++;
        i = j + 1;
    }
    o->n_split = n;
    return split_check(o, where, err);
}

int lyra_plan_split_from_json(const json_t *v, const char *where, lyra_plan_opts *o,
                              lyra_error *err) {
    if (json_is_string(v)) return lyra_plan_split_parse(json_string_value(v), where, o, err);
    if (!json_is_array(v) || json_array_size(v) == 0)
        return lyra_err(err, LYRA_ERR_INPUT, where, "expected an array of proportions, e.g. [3, 1]");
    if (json_array_size(v) > LYRA_PLAN_MAX_GPUS)
        return lyra_err(err, LYRA_ERR_INPUT, where, "more than %d proportions", LYRA_PLAN_MAX_GPUS);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        double x = json_is_integer(e) ? (double)json_integer_value(e)
                   : json_is_real(e)  ? json_real_value(e) : -1.0;
        if (!json_is_number(e) || !(x >= 0.0) || x > 1e6)
            return lyra_err(err, LYRA_ERR_INPUT, where,
                            "entry %zu: expected a number from 0 to 1000000", i);
        o->split[i] = (uint64_t)llround(x * LYRA_PLAN_SPLIT_ONE);
    }
    o->n_split = (int)json_array_size(v);
    return split_check(o, where, err);
}

/* ---------------------------------------------------------------- memspec */

/* Canonical key of a memspec entry: "cpu" or a GPU index; 1 on success. */
static int memspec_key(const char *s, size_t len, char *key) {
    int g;
    if (len == 3 && !strncmp(s, "cpu", 3)) {
        strcpy(key, "cpu");
        return 1;
    }
    if (!gpu_spec(s, len, &g)) return 0;
    snprintf(key, 16, "%d", g);
    return 1;
}

static int memspec_add(lyra_plan_memspec *m, const char *key, uint64_t bytes, const char *where,
                       const char *raw, lyra_error *err) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->key[i], key))
            return lyra_err(err, LYRA_ERR_INPUT, where, "device %s given twice (\"%s\")", key, raw);
    if (m->n == LYRA_PLAN_MAX_DEVICES)
        return lyra_err(err, LYRA_ERR_INPUT, where, "too many entries");
    snprintf(m->key[m->n], sizeof m->key[0], "%s", key);
    m->bytes[m->n] = bytes;
    m->n++;
    return LYRA_OK;
}

int lyra_plan_memspec_parse(const char *s, const char *where, lyra_plan_memspec *out,
                            lyra_error *err) {
    memset(out, 0, sizeof *out);
    snprintf(out->where, sizeof out->where, "%s", where ? where : "max_memory");
    if (!s) return LYRA_OK;
    size_t len = strlen(s);
    if (!len) return LYRA_OK;
    for (size_t i = 0; i <= len;) {
        size_t j = i;
        while (j < len && s[j] != ',') j++;
        size_t a = i, b = j;
        while (a < b && s[a] == ' ') a++;
        while (b > a && s[b - 1] == ' ') b--;
        char q[256], w[400], key[16];
        lyra_size_quote(s + a, b - a, q, sizeof q);
        const char *eq = memchr(s + a, '=', b - a);
        if (a == b)
            return lyra_err(err, LYRA_ERR_INPUT, where, "empty entry (expected e.g. 0=6GiB,cpu=16GiB)");
        if (!eq)
            return lyra_err(err, LYRA_ERR_INPUT, where,
                            "entry \"%s\": expected DEVICE=SIZE (e.g. 0=6GiB or cpu=16GiB)", q);
        size_t ka = a, kb = (size_t)(eq - s);
        while (kb > ka && s[kb - 1] == ' ') kb--;
        if (!memspec_key(s + ka, kb - ka, key))
            return lyra_err(err, LYRA_ERR_INPUT, where,
                            "entry \"%s\": unknown device (a GPU index N, cuda:N or cpu)", q);
        snprintf(w, sizeof w, "%s entry \"%s\"", where ? where : "max_memory", q);
        size_t va = (size_t)(eq - s) + 1;
        uint64_t bytes;
        int rc = lyra_size_parse_n(s + va, b - va, w, &bytes, err);
        if (!rc) rc = memspec_add(out, key, bytes, where, q, err);
        if (rc) return rc;
        i = j + 1;
    }
    return LYRA_OK;
}

int lyra_plan_memspec_from_json(const json_t *v, const char *where, lyra_plan_memspec *out,
                                lyra_error *err) {
    memset(out, 0, sizeof *out);
    snprintf(out->where, sizeof out->where, "%s", where ? where : "max_memory");
    if (!json_is_object(v))
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "expected an object such as {\"0\": \"6GiB\", \"cpu\": \"16GiB\"}");
    /* keys in sorted order, so errors do not depend on the hash order */
    const char *keys[LYRA_PLAN_MAX_DEVICES];
    size_t n = 0;
    const char *k;
    json_t *val;
    json_object_foreach((json_t *)v, k, val) {
        if (n == LYRA_PLAN_MAX_DEVICES) return lyra_err(err, LYRA_ERR_INPUT, where, "too many entries");
        size_t i = n++;
        while (i > 0 && strcmp(keys[i - 1], k) > 0) {
            keys[i] = keys[i - 1];
            i--;
        }
        keys[i] = k;
    }
    for (size_t i = 0; i < n; i++) {
        char key[16], q[256], w[400];
        lyra_size_quote(keys[i], strlen(keys[i]), q, sizeof q);
        if (!memspec_key(keys[i], strlen(keys[i]), key))
            return lyra_err(err, LYRA_ERR_INPUT, where,
                            "key \"%s\": unknown device (a GPU index N, cuda:N or cpu)", q);
        snprintf(w, sizeof w, "%s.%s", where ? where : "max_memory", q);
        uint64_t bytes;
        int rc = lyra_size_from_json(json_object_get(v, keys[i]), w, &bytes, err);
        if (!rc) rc = memspec_add(out, key, bytes, where, q, err);
        if (rc) return rc;
    }
    return LYRA_OK;
}

int lyra_plan_memspec_merge(lyra_plan_memspec *dst, const lyra_plan_memspec *src,
                            lyra_error *err) {
    for (int i = 0; i < src->n; i++) {
        int j = 0;
        while (j < dst->n && strcmp(dst->key[j], src->key[i])) j++;
        if (j == dst->n) {
            if (dst->n == LYRA_PLAN_MAX_DEVICES)
                return lyra_err(err, LYRA_ERR_INPUT, src->where, "too many entries");
            snprintf(dst->key[j], sizeof dst->key[0], "%s", src->key[i]);
            dst->n++;
        }
        dst->bytes[j] = src->bytes[i];
    }
    return LYRA_OK;
}

/* ---------------------------------------------------------------- devices */

void lyra_plan_device_from(const lyra_device *d, lyra_plan_device *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->id, sizeof out->id, "%s", d->id);
    snprintf(out->kind, sizeof out->kind, "%s", d->kind);
    snprintf(out->backend, sizeof out->backend, "%s", d->backend);
    out->free = lyra_device_free_mem(d);
    out->total = d->total;
}

void lyra_plan_device_disk(lyra_plan_device *out) {
    memset(out, 0, sizeof *out);
    strcpy(out->id, "disk");
    strcpy(out->kind, "disk");
    strcpy(out->backend, "mmap");
}

uint64_t lyra_plan_default_reserve(const lyra_plan_device *d) {
    if (!strcmp(d->kind, "cpu")) {
        uint64_t r = d->free / 10;
        return r > GiB ? r : GiB;
    }
    if (!strcmp(d->kind, "gpu") && !strcmp(d->backend, "cuda")) {
        uint64_t r = d->total / 20;
        return r > 512 * MiB ? r : 512 * MiB;
    }
    return 0; /* simulated GPUs, disk */
}

/* Index in m of device dev's entry, or -1. */
static int memspec_find(const lyra_plan_memspec *m, const lyra_plan_device *dev) {
    for (int i = 0; m && i < m->n; i++)
        if (!strcmp(m->key[i], dev->id)) return i;
    return -1;
}

/* Note the entries of m naming no device in devs. */
static void note_missing(const lyra_plan_memspec *m, const lyra_plan_device *devs, int n,
                         lyra_plan_notes *notes) {
    for (int i = 0; m && i < m->n; i++) {
        int found = 0;
        for (int j = 0; j < n; j++)
            if (!strcmp(m->key[i], devs[j].id)) found = 1;
        if (!found)
            lyra_plan_note(notes, "%s: no GPU %s on this machine; entry ignored", m->where,
                           m->key[i]);
    }
}

int lyra_plan_budgets(lyra_plan_device *devs, int n, const lyra_plan_memspec *max_memory,
                      const lyra_plan_memspec *reserve, lyra_plan_notes *notes,
                      lyra_error *err) {
    (void)err;
    note_missing(max_memory, devs, n, notes);
    note_missing(reserve, devs, n, notes);
    for (int i = 0; i < n; i++) {
        lyra_plan_device *d = &devs[i];
        if (!strcmp(d->kind, "disk")) {
            d->reserve = d->budget = 0;
            d->has_max = 0;
            continue;
        }
        int mi = memspec_find(max_memory, d), ri = memspec_find(reserve, d);
        if (mi >= 0) {
            d->has_max = 1;
            d->reserve = 0;
            d->budget = max_memory->bytes[mi];
            if (ri >= 0)
                lyra_plan_note(notes, "%s: %s ignored; %s sets its budget", reserve->where, d->id,
                               max_memory->where);
        } else {
            d->has_max = 0;
            d->reserve = ri >= 0 ? reserve->bytes[ri] : lyra_plan_default_reserve(d);
            d->budget = d->free > d->reserve ? d->free - d->reserve : 0;
        }
    }
    return LYRA_OK;
}
