/* sim.c: simulated GPUs (see device.h), so that every sharding and fallback
 * path runs on machines without a GPU. A simulated GPU holds its memory in
 * separate host allocations under an exact cap (CAP), reports a total
 * (REPORTED) that may differ from the cap (another program took memory after
 * lyra asked), and computes with a private CPU device, so logits are bitwise
 * equal to all-CPU.
 *
 * Allocations are kept in a table sorted by address: free checks its pointer,
 * and debug builds (LYRA_DEBUG) check that every operand of every op lies
 * inside one allocation of this device (code outside a device must never hand
 * it another device's memory). A failed check skips the op and is reported by
 * sync, like a deferred CUDA error. */
/* Decided before any header: core/log.h defines a LYRA_DEBUG(...) logging
 * macro that would make #ifdef LYRA_DEBUG true in release builds too. */
#ifdef LYRA_DEBUG
#define LYRA_SIM_CHECKS 1
#else
#define LYRA_SIM_CHECKS 0
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/env.h"
#include "core/size.h"
#include "device/device.h"

/* One allocation. */
typedef struct sim_block {
    uintptr_t base;  /* address */
    size_t size;     /* bytes asked for */
} sim_block;

typedef struct sim_impl {
    lyra_device *cpu;     /* private compute device (owned) */
    uint64_t cap;         /* alloc succeeds iff allocated + n <= cap */
    uint64_t reported;    /* total memory the device reports */
    sim_block *blocks;    /* [n_blocks] live allocations, sorted by base */
    size_t n_blocks;      /* their count */
    size_t cap_blocks;    /* capacity of blocks */
    int failed;           /* deferred error code for sync (0: none) */
    char failed_msg[256]; /* its message */
} sim_impl;

static sim_impl *IMPL(const lyra_device *d) { return (sim_impl *)d->impl; }

/* --------------------------------------------------------- allocation table */

/* Index of the first block with base > p. */
static size_t upper_index(const sim_impl *s, uintptr_t p) {
    size_t lo = 0, hi = s->n_blocks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->blocks[mid].base <= p) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static int table_insert(sim_impl *s, uintptr_t base, size_t size) {
    if (s->n_blocks == s->cap_blocks) {
        size_t nc = s->cap_blocks ? s->cap_blocks * 2 : 64;
        sim_block *nb = realloc(s->blocks, nc * sizeof *nb);
        if (!nb) return 0;
        s->blocks = nb;
        s->cap_blocks = nc;
    }
    size_t i = upper_index(s, base);
    memmove(s->blocks + i + 1, s->blocks + i, (s->n_blocks - i) * sizeof *s->blocks);
    s->blocks[i].base = base;
    s->blocks[i].size = size;
    s->n_blocks++;
    return 1;
}

/* Remove the block starting at base; its size, or (size_t)-1 if none. */
static size_t table_remove(sim_impl *s, uintptr_t base) {
    size_t i = upper_index(s, base);
    if (i == 0 || s->blocks[i - 1].base != base) return (size_t)-1;
    size_t size = s->blocks[i - 1].size;
    memmove(s->blocks + i - 1, s->blocks + i, (s->n_blocks - i) * sizeof *s->blocks);
    s->n_blocks--;
    return size;
}

/* 1 when [a, a + n) lies inside one allocation (n = 0: a inside or at its end). */
static int owns_addr(const sim_impl *s, uintptr_t a, size_t n) {
    size_t i = upper_index(s, a);
    if (i == 0) return 0;
    const sim_block *b = &s->blocks[i - 1];
    return a - b->base <= b->size && n <= b->size - (a - b->base);
}

static int owns(const sim_impl *s, const void *p, size_t n) { return owns_addr(s, (uintptr_t)p, n); }

static void sim_fail(lyra_device *d, const char *fmt, const char *what, const void *p) {
    sim_impl *s = IMPL(d);
    if (s->failed) return;
    s->failed = LYRA_ERR_RUNTIME;
    snprintf(s->failed_msg, sizeof s->failed_msg, fmt, what, p);
}

#if LYRA_SIM_CHECKS
/* Debug builds: check an operand; on failure record the error, return 0. */
#define OWN_ADDR(d, name, a, n)                                                               \
    (owns_addr(IMPL(d), (a), (n)) ||                                                          \
     (sim_fail((d), "operand %s (%p) is not memory of this device (internal error)", (name), \
               (const void *)(a)),                                                            \
      0))
#else
#define OWN_ADDR(d, name, a, n) ((void)(d), (void)(a), (void)(n), 1)
#endif
#define OWN(d, name, p, n) OWN_ADDR(d, name, (uintptr_t)(const void *)(p), (size_t)(n))

/* ------------------------------------------------------------------ memory */

static int sim_alloc(lyra_device *d, size_t size, void **ptr) {
    sim_impl *s = IMPL(d);
    *ptr = NULL;
    d->stats.alloc_calls++;
    uint64_t held = d->stats.allocated;
    if ((uint64_t)size > s->cap || held > s->cap - (uint64_t)size) return LYRA_ERR_OOM;
    if (d->budget && ((uint64_t)size > d->budget || held > d->budget - (uint64_t)size))
        return LYRA_ERR_OOM;
    size_t sz = (size + 63) & ~(size_t)63;
    if (sz < size) return LYRA_ERR_OOM;
    void *p = NULL;
    if (posix_memalign(&p, 64, sz ? sz : 64) != 0 || !p) return LYRA_ERR_OOM;
    if (!table_insert(s, (uintptr_t)p, size)) {
        free(p);
        return LYRA_ERR_OOM;
    }
    d->stats.allocated += size;
    if (d->stats.allocated > d->stats.peak) d->stats.peak = d->stats.allocated;
    *ptr = p;
    return LYRA_OK;
}

static void sim_free(lyra_device *d, void *ptr, size_t size) {
    if (!ptr) return;
    sim_impl *s = IMPL(d);
    size_t had = table_remove(s, (uintptr_t)ptr);
    if (had == (size_t)-1) { /* not ours: leave it alone, report at sync */
        sim_fail(d, "free of %s %p, which this device did not allocate (internal error)",
                 "pointer", ptr);
        return;
    }
    (void)size; /* the table knows the size; the caller's is the same by contract */
    free(ptr);
    d->stats.allocated -= had <= d->stats.allocated ? had : d->stats.allocated;
}

static int sim_adopt(lyra_device *d, const void *ptr, size_t size) {
    (void)d; (void)ptr; (void)size;
    return LYRA_ERR_RUNTIME; /* a GPU cannot use host memory in place */
}

static void sim_unadopt(lyra_device *d, const void *ptr, size_t size) {
    (void)d; (void)ptr; (void)size;
}

static int sim_copy_in(lyra_device *d, void *dst, const void *host_src, size_t n) {
    if (!owns(IMPL(d), dst, n)) return LYRA_ERR_RUNTIME;
    if (n) memcpy(dst, host_src, n);
    return LYRA_OK;
}

static int sim_copy_out(lyra_device *d, void *host_dst, const void *src, size_t n) {
    if (!owns(IMPL(d), src, n)) return LYRA_ERR_RUNTIME;
    if (n) memcpy(host_dst, src, n);
    return LYRA_OK;
}

static int sim_sync(lyra_device *d, lyra_error *err) {
    sim_impl *s = IMPL(d);
    char where[32];
    snprintf(where, sizeof where, "gpu %s (sim)", d->id);
    if (s->failed) {
        int code = s->failed;
        s->failed = 0;
        return lyra_err(err, code, where, "%s", s->failed_msg);
    }
    lyra_error e;
    lyra_err_clear(&e);
    int rc = s->cpu->ops->sync(s->cpu, &e);
    if (rc) return lyra_err(err, rc, where, "%s", e.msg);
    return LYRA_OK;
}

static uint64_t sim_free_mem(const lyra_device *d) {
    const sim_impl *s = IMPL(d);
    return d->stats.allocated < s->reported ? s->reported - d->stats.allocated : 0;
}

/* -------------------------------------------------------------------- ops */

static size_t kv_elem(lyra_type t) { return t == LYRA_TYPE_F32 ? 4 : 2; }

/* Debug: the chunks holding positions [p0, p1] of a KV view belong to d. */
static int own_kv(lyra_device *d, const lyra_kv_view *kv, int64_t kv_dim, int32_t p0, int32_t p1) {
    if (!LYRA_SIM_CHECKS) return 1;
    size_t bytes = (size_t)kv->chunk_len * (size_t)kv_dim * kv_elem(kv->kv_type);
    for (int32_t c = p0 / kv->chunk_len; c <= p1 / kv->chunk_len; c++) {
        int32_t ci = lyra_kv_chunk(kv, c * kv->chunk_len);
        if (!OWN(d, "k cache chunk", kv->k_chunks[ci], bytes) ||
            !OWN(d, "v cache chunk", kv->v_chunks[ci], bytes))
            return 0;
    }
    return 1;
}

static void sim_get_rows(lyra_device *d, lyra_type t, const void *table, int64_t n,
                         const int32_t *ids, int ntok, float *out) {
    size_t rb = lyra_row_bytes(t, n);
    for (int i = 0; LYRA_SIM_CHECKS && i < ntok; i++)
        if (!OWN_ADDR(d, "table row", (uintptr_t)table + (uintptr_t)(int64_t)ids[i] * rb, rb))
            return;
    if (!OWN(d, "out", out, (size_t)ntok * (size_t)n * 4)) return;
    lyra_device *c = IMPL(d)->cpu;
    c->ops->get_rows(c, t, table, n, ids, ntok, out);
}

static void sim_rmsnorm(lyra_device *d, const float *x, const float *w, float eps, int64_t n,
                        int ntok, float *out) {
    size_t act = (size_t)ntok * (size_t)n * 4;
    if (!OWN(d, "x", x, act) || !OWN(d, "w", w, (size_t)n * 4) || !OWN(d, "out", out, act))
        return;
    lyra_device *c = IMPL(d)->cpu;
    c->ops->rmsnorm(c, x, w, eps, n, ntok, out);
}

static void sim_matmul(lyra_device *d, lyra_type wt, const void *W, int64_t rows, int64_t cols,
                       const float *X, int ntok, float *Y) {
    if (!OWN(d, "W", W, (size_t)rows * lyra_row_bytes(wt, cols)) ||
        !OWN(d, "X", X, (size_t)ntok * (size_t)cols * 4) ||
        !OWN(d, "Y", Y, (size_t)ntok * (size_t)rows * 4))
        return;
    lyra_device *c = IMPL(d)->cpu;
    c->ops->matmul(c, wt, W, rows, cols, X, ntok, Y);
}

static void sim_rope(lyra_device *d, float *x, int ntok, int n_head, int head_dim,
                     const int32_t *pos, const lyra_rope *rope) {
    if (!OWN(d, "x", x, (size_t)ntok * (size_t)n_head * (size_t)head_dim * 4)) return;
    if (rope->freq_factors &&
        !OWN(d, "rope freq_factors", rope->freq_factors, (size_t)(rope->n_rot / 2) * 4))
        return;
    lyra_device *c = IMPL(d)->cpu;
    c->ops->rope(c, x, ntok, n_head, head_dim, pos, rope);
}

static void sim_kv_store(lyra_device *d, const lyra_kv_view *kv, int32_t pos0, int ntok,
                         int64_t kv_dim, const float *k, const float *v) {
    size_t act = (size_t)ntok * (size_t)kv_dim * 4;
    if (ntok > 0 &&
        (!own_kv(d, kv, kv_dim, pos0, pos0 + ntok - 1) ||
         !OWN(d, "k", k, act) || !OWN(d, "v", v, act)))
        return;
    lyra_device *c = IMPL(d)->cpu;
    c->ops->kv_store(c, kv, pos0, ntok, kv_dim, k, v);
}

static void sim_attention(lyra_device *d, const float *q, const lyra_kv_view *kv, int32_t pos0,
                          int ntok, const lyra_attn_params *ap, float *out) {
    size_t act = (size_t)ntok * (size_t)ap->n_head * (size_t)ap->head_dim * 4;
    int32_t first = ap->window > 0 && pos0 + 1 > ap->window ? pos0 + 1 - ap->window : 0;
    if (ntok > 0 &&
        (!own_kv(d, kv, (int64_t)ap->n_kv_head * ap->head_dim, first, pos0 + ntok - 1) ||
         !OWN(d, "q", q, act) || !OWN(d, "out", out, act)))
        return;
    lyra_device *c = IMPL(d)->cpu;
    c->ops->attention(c, q, kv, pos0, ntok, ap, out);
}

static void sim_swiglu(lyra_device *d, const float *gate, const float *up, int64_t n, float *out) {
    size_t b = (size_t)n * 4;
    if (!OWN(d, "gate", gate, b) || !OWN(d, "up", up, b) || !OWN(d, "out", out, b)) return;
    lyra_device *c = IMPL(d)->cpu;
    c->ops->swiglu(c, gate, up, n, out);
}

static void sim_add(lyra_device *d, float *x, const float *y, int64_t n) {
    size_t b = (size_t)n * 4;
    if (!OWN(d, "x", x, b) || !OWN(d, "y", y, b)) return;
    lyra_device *c = IMPL(d)->cpu;
    c->ops->add(c, x, y, n);
}

static void sim_layernorm(lyra_device *d, const float *x, const float *w, const float *b,
                          float eps, int64_t n, int ntok, float *out) {
    size_t act = (size_t)ntok * (size_t)n * 4;
    if (!OWN(d, "x", x, act) || !OWN(d, "w", w, (size_t)n * 4) ||
        (b && !OWN(d, "b", b, (size_t)n * 4)) || !OWN(d, "out", out, act))
        return;
    lyra_device *c = IMPL(d)->cpu;
    c->ops->layernorm(c, x, w, b, eps, n, ntok, out);
}

static void sim_add_bias(lyra_device *d, float *x, const float *bias, int64_t n, int ntok) {
    if (!OWN(d, "x", x, (size_t)ntok * (size_t)n * 4) || !OWN(d, "bias", bias, (size_t)n * 4)) return;
    lyra_device *c = IMPL(d)->cpu;
    c->ops->add_bias(c, x, bias, n, ntok);
}

static void sim_gelu(lyra_device *d, const float *x, int64_t n, float *out) {
    size_t b = (size_t)n * 4;
    if (!OWN(d, "x", x, b) || !OWN(d, "out", out, b)) return;
    lyra_device *c = IMPL(d)->cpu;
    c->ops->gelu(c, x, n, out);
}

static void sim_geglu(lyra_device *d, const float *gate, const float *up, int64_t n, float *out) {
    size_t b = (size_t)n * 4;
    if (!OWN(d, "gate", gate, b) || !OWN(d, "up", up, b) || !OWN(d, "out", out, b)) return;
    lyra_device *c = IMPL(d)->cpu;
    c->ops->geglu(c, gate, up, n, out);
}

static void sim_scale(lyra_device *d, float *x, int64_t n, float s) {
    if (!OWN(d, "x", x, (size_t)n * 4)) return;
    lyra_device *c = IMPL(d)->cpu;
    c->ops->scale(c, x, n, s);
}

static void sim_softcap(lyra_device *d, float *x, int64_t n, float cap) {
    if (!OWN(d, "x", x, (size_t)n * 4)) return;
    lyra_device *c = IMPL(d)->cpu;
    c->ops->softcap(c, x, n, cap);
}

static size_t sim_matmul_work_size(lyra_device *d, lyra_type wt, int64_t cols, int ntok) {
    lyra_device *c = IMPL(d)->cpu;
    return c->ops->matmul_work_size ? c->ops->matmul_work_size(c, wt, cols, ntok) : 0;
}

static void sim_set_work(lyra_device *d, void *work, size_t size) {
    if (work && !OWN(d, "work", work, size)) return;
    lyra_device *c = IMPL(d)->cpu;
    if (c->ops->set_work) c->ops->set_work(c, work, size);
}

/* ------------------------------------------------------------------ device */

static void sim_destroy(lyra_device *d) {
    sim_impl *s = IMPL(d);
    if (s) {
        for (size_t i = 0; i < s->n_blocks; i++) free((void *)s->blocks[i].base);
        free(s->blocks);
        lyra_device_free(s->cpu);
    }
    free(s);
    free(d);
}

static const lyra_device_ops sim_ops = {
    .alloc = sim_alloc, .free = sim_free, .adopt = sim_adopt, .unadopt = sim_unadopt,
    .copy_in = sim_copy_in, .copy_out = sim_copy_out, .sync = sim_sync,
    .get_rows = sim_get_rows, .rmsnorm = sim_rmsnorm, .matmul = sim_matmul,
    .rope = sim_rope, .kv_store = sim_kv_store, .attention = sim_attention,
    .swiglu = sim_swiglu, .add = sim_add,
    .layernorm = sim_layernorm, .add_bias = sim_add_bias, .gelu = sim_gelu, .geglu = sim_geglu,
    .scale = sim_scale, .softcap = sim_softcap,
    .matmul_work_size = sim_matmul_work_size, .set_work = sim_set_work,
    .destroy = sim_destroy, .free_mem = sim_free_mem,
    .kv_to_rows = lyra_cpu_kv_to_rows, .kv_from_rows = lyra_cpu_kv_from_rows, /* its CPU's */
};

int lyra_sim_device_new(int index, const lyra_sim_spec *spec, lyra_device *compute,
                        lyra_device **out, lyra_error *err) {
    *out = NULL;
    if (!compute || strcmp(compute->backend, "cpu") != 0) {
        lyra_device_free(compute);
        return lyra_err(err, LYRA_ERR_RUNTIME, "sim", "a simulated GPU needs a CPU device");
    }
    if (index < 0 || index >= 1000) {
        lyra_device_free(compute);
        return lyra_err(err, LYRA_ERR_RUNTIME, "sim", "bad GPU index %d", index);
    }
    lyra_device *d = calloc(1, sizeof *d);
    sim_impl *s = calloc(1, sizeof *s);
    if (!d || !s) {
        free(d);
        free(s);
        lyra_device_free(compute);
        return lyra_err(err, LYRA_ERR_OOM, "sim", "out of memory creating a simulated GPU");
    }
    s->cpu = compute;
    s->cap = spec->cap;
    s->reported = spec->reported;
    d->impl = s;
    d->ops = &sim_ops;
    snprintf(d->id, sizeof d->id, "%d", index);
    snprintf(d->kind, sizeof d->kind, "gpu");
    snprintf(d->backend, sizeof d->backend, "sim");
    char cap[32], rep[32], name[128];
    lyra_size_format(spec->cap, cap, sizeof cap);
    lyra_size_format(spec->reported, rep, sizeof rep);
    if (spec->cap == spec->reported)
        snprintf(name, sizeof name, "simulated GPU %d (%s)", index, cap);
    else
        snprintf(name, sizeof name, "simulated GPU %d (%s usable of %s)", index, cap, rep);
    snprintf(d->name, sizeof d->name, "%.63s", name);
    d->total = spec->reported;
    *out = d;
    return LYRA_OK;
}

int lyra_sim_devices_open(const lyra_sim_spec *specs, int n, int n_threads, const char *cpu_path,
                          lyra_device **out, lyra_error *err) {
    for (int i = 0; i < n; i++) out[i] = NULL;
    for (int i = 0; i < n; i++) {
        lyra_device *cpu;
        int rc = lyra_cpu_device_open(n_threads, cpu_path, &cpu, err);
        if (!rc) rc = lyra_sim_device_new(i, &specs[i], cpu, &out[i], err);
        if (rc) {
            for (int j = 0; j < i; j++) {
                lyra_device_free(out[j]);
                out[j] = NULL;
            }
            return rc;
        }
    }
    return LYRA_OK;
}

int lyra_sim_devices_new(const lyra_sim_spec *specs, int n, int n_threads, lyra_device **out,
                         lyra_error *err) {
    return lyra_sim_devices_open(specs, n, n_threads, lyra_backend_params_from_env().cpu_path, out,
                                 err);
}

int lyra_device_is_sim(const lyra_device *d) { return d && lyra_device_own_ops(d) == &sim_ops; }

lyra_device *lyra_sim_device_compute(lyra_device *d) {
    return lyra_device_is_sim(d) ? IMPL(d)->cpu : NULL;
}

uint64_t lyra_sim_device_cap(const lyra_device *d) {
    return lyra_device_is_sim(d) ? IMPL(d)->cap : 0;
}

/* ------------------------------------------------------------ LYRA_SIM_GPUS */

static int is_blank(char c) { return c == ' ' || c == '\t'; }

int lyra_sim_parse(const char *value, lyra_sim_spec *specs, int max, int *n, lyra_error *err) {
    static const char *var = "LYRA_SIM_GPUS";
    *n = 0;
    if (!value) return LYRA_OK;
    size_t len = strlen(value), a = 0;
    while (a < len && is_blank(value[a])) a++;
    if (a == len) return LYRA_OK; /* empty: no GPUs */
    int count = 0;
    const char *cur = value, *ent;
    size_t el;
    while (lyra_list_next(&cur, &ent, &el)) {
        /* the entry, trimmed: value[e0, e1) */
        size_t e0 = (size_t)(ent - value), e1 = e0 + el;
        while (e0 < e1 && is_blank(value[e0])) e0++;
        while (e1 > e0 && is_blank(value[e1 - 1])) e1--;
        char q[256], where[300];
        lyra_size_quote(value + e0, e1 - e0, q, sizeof q);
        if (e0 == e1)
            return lyra_err(err, LYRA_ERR_INPUT, var,
                            "entry %d is empty (expected SIZE or CAP@REPORTED, e.g. 6GiB or "
                            "500KiB@64MiB)",
                            count + 1);
        if (count == max)
            return lyra_err(err, LYRA_ERR_INPUT, var, "more than %d GPUs (entry %d \"%s\")", max,
                            count + 1, q);
        snprintf(where, sizeof where, "%s entry \"%s\"", var, q);
        const char *at = memchr(value + e0, '@', e1 - e0);
        lyra_sim_spec sp;
        int rc;
        if (!at) {
            rc = lyra_size_parse_n(value + e0, e1 - e0, where, &sp.cap, err);
            sp.reported = sp.cap;
        } else {
            size_t cl = (size_t)(at - (value + e0));
            if (memchr(at + 1, '@', (size_t)(value + e1 - at - 1)))
                return lyra_err(err, LYRA_ERR_INPUT, where,
                                "more than one '@' (expected CAP@REPORTED, e.g. 500KiB@64MiB)");
            rc = lyra_size_parse_n(value + e0, cl, where, &sp.cap, err);
            if (!rc)
                rc = lyra_size_parse_n(at + 1, (size_t)(value + e1 - at - 1), where, &sp.reported,
                                       err);
        }
        if (rc) return rc;
        specs[count++] = sp;
    }
    *n = count;
    return LYRA_OK;
}

int lyra_sim_from_env(lyra_sim_spec *specs, int max, int *n, int *set, lyra_error *err) {
    const char *v = lyra_backend_params_from_env().sim_gpus;
    *n = 0;
    *set = v != NULL;
    return v ? lyra_sim_parse(v, specs, max, n, err) : LYRA_OK;
}
