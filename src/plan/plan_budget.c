/* plan_budget.c: the planner's typed inputs (see plan.h): default options,
 * the geometry's one validation and defaults, per-device byte entries as
 * memspecs, and the budgets they give the devices. The strings of flags and
 * configs are parsed by config/devspec.c, not here. */
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
    o.gpu_layers_fallback = -1;
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

/* --------------------------------------------------------------- geometry */

int lyra_geometry_check(const lyra_geometry *g, lyra_error *err) {
    if (g->n_ctx < 0) return lyra_err(err, LYRA_ERR_INPUT, "n_ctx", "must be >= 0, got %d", g->n_ctx);
    if (g->n_batch < 0)
        return lyra_err(err, LYRA_ERR_INPUT, "n_batch", "must be >= 0, got %d", g->n_batch);
    if (g->n_threads < 0)
        return lyra_err(err, LYRA_ERR_INPUT, "n_threads", "must be >= 0, got %d", g->n_threads);
    if (g->n_seq < 0 || g->n_seq > 256)
        return lyra_err(err, LYRA_ERR_INPUT, "n_seq", "must be 0..256, got %d", g->n_seq);
    if (g->kv_type != LYRA_KV_DEFAULT && g->kv_type != LYRA_KV_F16 && g->kv_type != LYRA_KV_F32)
        return lyra_err(err, LYRA_ERR_INPUT, "kv_type", "unknown KV cache type %d", g->kv_type);
    return LYRA_OK;
}

int32_t lyra_geometry_default_ctx(int32_t n_ctx_train) {
    return n_ctx_train < 4096 ? n_ctx_train : 4096;
}

lyra_geometry lyra_geometry_resolve(lyra_geometry g, int32_t ctx_default) {
    if (g.n_ctx <= 0) g.n_ctx = ctx_default;
    if (g.n_batch <= 0) g.n_batch = 512;
    if (g.n_batch > g.n_ctx) g.n_batch = g.n_ctx;
    if (g.kv_type == LYRA_KV_DEFAULT) g.kv_type = LYRA_KV_F16;
    if (g.n_seq <= 0) g.n_seq = 1;
    return g;
}

/* ---------------------------------------------------------------- memspec */

int lyra_plan_memspec_from(const lyra_device_bytes *e, int n, const char *where,
                           lyra_plan_memspec *out, lyra_error *err) {
    memset(out, 0, sizeof *out);
    snprintf(out->where, sizeof out->where, "%s", where ? where : "max_memory");
    if (n > 0 && !e) return lyra_err(err, LYRA_ERR_INPUT, where, "%d entries but no array", n);
    for (int i = 0; i < n; i++) {
        char key[16];
        if (e[i].device == LYRA_DEVICE_CPU) snprintf(key, sizeof key, "cpu");
        else if (e[i].device >= 0 && e[i].device < 1000) snprintf(key, sizeof key, "%d", (int)e[i].device);
        else
            return lyra_err(err, LYRA_ERR_INPUT, where,
                            "entry %d: unknown device %d (a GPU index or LYRA_DEVICE_CPU)", i,
                            (int)e[i].device);
        for (int j = 0; j < out->n; j++)
            if (!strcmp(out->key[j], key))
                return lyra_err(err, LYRA_ERR_INPUT, where, "device %s given twice", key);
        if (out->n == LYRA_PLAN_MAX_DEVICES)
            return lyra_err(err, LYRA_ERR_INPUT, where, "too many entries");
        snprintf(out->key[out->n], sizeof out->key[0], "%s", key);
        out->bytes[out->n] = e[i].bytes;
        out->n++;
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
            if (d->budget > d->free) { /* a budget cannot make memory */
                char b[32], f[32];
                lyra_size_format(d->budget, b, sizeof b);
                lyra_size_format(d->free, f, sizeof f);
                lyra_plan_note(notes, "%s: %s: budget %s is more than the device's free memory %s; "
                               "planning with %s", max_memory->where, d->id, b, f, f);
                d->budget = d->free;
            }
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
