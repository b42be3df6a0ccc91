/* fallback.c: putting a model's weights on its devices, with the progressive
 * fallback (docs/fallback.md), and the step-down between two tokens
 * (fallback.h).
 *
 * A load attempt takes an assignment (module -> device or disk) and allocates
 * every buffer it needs before copying any weight: the weight copies (GPUs,
 * and the CPU with use_mmap = 0) and, as probes freed right away, each
 * device's scratch and KV cache for the whole context. When an allocation
 * fails (the device's own failure, or fault injection), the attempt frees what
 * it took and the search tries a smaller assignment: on a GPU failure fewer
 * GPU layers (gpu_layers_fallback first, then a binary search for the largest
 * count that loads, down to all-CPU), on a CPU failure the highest-index CPU
 * layers go to disk; with the context policy the context is halved first. The
 * file stays mapped across attempts; weights are read only by the attempt
 * that succeeds. During generation an allocation that fails moves one layer
 * down a tier (lyra_runtime_step_down, through residency.h's move). Every
 * step is logged ("fallback: ...") and kept in the model's history. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "dist/dist.h"
#include "runtime/fallback.h"
#include "runtime/placement.h"

/* ---------------------------------------------------------------- history */

lyra_fallback_step *lyra_runtime_fallback_add(lyra_model *m) {
    if (m->n_steps == m->cap_steps) {
        int cap = m->cap_steps ? 2 * m->cap_steps : 8;
        lyra_fallback_step *s = realloc(m->steps, (size_t)cap * sizeof *s);
        if (!s) return NULL;
        m->steps = s;
        m->cap_steps = cap;
    }
    lyra_fallback_step *s = &m->steps[m->n_steps++];
    memset(s, 0, sizeof *s);
    return s;
}

int lyra_runtime_fallback_step(lyra_model *m, int phase, int32_t token, const lyra_oom *oom,
                               const char *what, int32_t from, int32_t to) {
    lyra_fallback_step *s = lyra_runtime_fallback_add(m);
    if (!s) return LYRA_ERR_OOM;
    s->phase = phase;
    s->token = phase == LYRA_PHASE_GENERATE ? token : -1;
    snprintf(s->device, sizeof s->device, "%s", m->dev[oom->dev]->id);
    s->asked = oom->asked;
    s->free = oom->room;
    snprintf(s->what, sizeof s->what, "%s", what);
    s->from_k = from;
    s->to_k = to;
    char why[160], at[64] = "";
    lyra_runtime_oom_text(m, oom, why, sizeof why);
    if (phase == LYRA_PHASE_GENERATE) snprintf(at, sizeof at, "during generation at token %d: ", (int)token);
    if (m->quiet_steps) return LYRA_OK;
    if (!strcmp(what, "gpu"))
        LYRA_WARN("fallback: %s%d -> %d GPU layers (%s)", at, (int)from, (int)to, why);
    else if (!strcmp(what, "cpu"))
        LYRA_WARN("fallback: %s%d -> %d CPU layers, the others on disk (%s)", at, (int)from, (int)to,
                  why);
    else
        LYRA_WARN("fallback: %scontext %d -> %d positions (%s)", at, (int)from, (int)to, why);
    return LYRA_OK;
}


/* ------------------------------------------------------------- attempts */

/* One weight tensor of an attempt on one device. */
typedef struct entry {
    int dev;            /* device index */
    lyra_weight *w;     /* first weight using it */
    const void *host;   /* bytes in the mapping */
    uint64_t n_bytes;   /* size */
    int copy;           /* 1: allocated and copied in; 0: adopted in place (CPU, mmap) */
    void *ptr;          /* the allocation (copy) */
} entry;

/* Assignments: asg[i] is module i's device index, or n_dev for the disk. */
#define DISK(m) ((m)->n_dev)

/* The device that runs module i under asg (disk modules: the CPU). */
static int runs_on(const lyra_model *m, const int *asg, int i) {
    return asg[i] == DISK(m) ? m->cpu : asg[i];
}

static int is_gpu(const lyra_model *m, int di) { return di < m->n_dev && strcmp(m->dev[di]->kind, "cpu"); }

/* What an attempt needs: the entries, and per device the mapped bytes. */
typedef struct attempt {
    entry *e;                               /* [n] */
    int n, cap;
    uint64_t mapped[LYRA_MAX_DEVICES];      /* adopted bytes per device */
    uint64_t disk;                          /* weight bytes left on disk */
    uint64_t n_bytes, n_params;             /* the model, each tensor once */
} attempt;

static int entry_find(const attempt *t, int dev, const void *host) {
    for (int j = 0; j < t->n; j++)
        if (t->e[j].dev == dev && t->e[j].host == host) return j;
    return -1;
}

static int entry_add(attempt *t, int dev, lyra_weight *w, int copy) {
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        entry *e = realloc(t->e, (size_t)cap * sizeof *e);
        if (!e) return LYRA_ERR_OOM;
        t->e = e;
        t->cap = cap;
    }
    entry *e = &t->e[t->n++];
    e->dev = dev;
    e->w = w;
    e->host = w->data;
    e->n_bytes = w->n_bytes;
    e->copy = copy;
    e->ptr = NULL;
    if (!copy) t->mapped[dev] += w->n_bytes;
    return LYRA_OK;
}

/* The weights of an assignment: one entry per (tensor, device); a tied
 * tensor read by two modules of one device once; disk modules none;
 * rope_freqs.weight on every device running a layer. */
static int plan_entries(lyra_model *m, const int *asg, attempt *t) {
    lyra_llama *a = m->arch;
    int n_mod = lyra_llama_n_modules(a);
    int runs_layer[LYRA_MAX_DEVICES] = {0};
    const void **seen = calloc((size_t)n_mod * LYRA_MODULE_MAX_WEIGHTS + 1, sizeof *seen);
    int n_seen = 0;
    if (!seen) return LYRA_ERR_OOM;
    for (int i = 0; i < n_mod; i++) {
        lyra_weight *w[LYRA_MODULE_MAX_WEIGHTS];
        int n = lyra_llama_module_weights(a, i, w);
        if (lyra_llama_module_kind(a, i, NULL) == LYRA_MODULE_LAYER) runs_layer[runs_on(m, asg, i)] = 1;
        for (int k = 0; k < n; k++) {
            if (a->has_rope_freqs && w[k] == &a->rope_freqs) continue;
            const void *host = w[k]->data;
            int dup = 0;
            for (int j = 0; j < n_seen && !dup; j++) dup = seen[j] == host;
            if (!dup) {
                seen[n_seen++] = host;
                t->n_bytes += w[k]->n_bytes;
                t->n_params += (uint64_t)(w[k]->cols * w[k]->rows);
            }
            if (asg[i] == DISK(m)) { /* (another rank's module: not a disk byte here) */
                if (!dup && !(m->module_rank && m->module_rank[i] != m->rank)) t->disk += w[k]->n_bytes;
                continue;
            }
            if (entry_find(t, asg[i], host) >= 0) continue;
            int copy = !(m->use_mmap && asg[i] == m->cpu);
            if (entry_add(t, asg[i], w[k], copy)) {
                free(seen);
                return LYRA_ERR_OOM;
            }
        }
    }
    /* a tensor both resident somewhere and read from disk elsewhere is not a disk byte */
    free(seen);
    if (a->has_rope_freqs) {
        t->n_bytes += a->rope_freqs.n_bytes;
        t->n_params += (uint64_t)a->rope_freqs.cols;
        for (int di = 0; di < m->n_dev; di++)
            if (runs_layer[di] && entry_add(t, di, &a->rope_freqs, !(m->use_mmap && di == m->cpu)))
                return LYRA_ERR_OOM;
    }
    return LYRA_OK;
}

static void attempt_release(lyra_model *m, attempt *t) {
    for (int j = 0; j < t->n; j++)
        if (t->e[j].ptr) {
            lyra_device *d = m->dev[t->e[j].dev];
            d->ops->free(d, t->e[j].ptr, t->e[j].n_bytes);
            t->e[j].ptr = NULL;
        }
}

/* What the search knows. */
typedef struct search {
    lyra_model *m;
    const lyra_model_params *p;
    int *asg0;                   /* [n_mod] the plan's assignment */
    int *asg;                    /* [n_mod] the assignment being tried */
    int n_mod;
    int32_t ctx, min_ctx;        /* context tried; the context policy's floor */
    int32_t batch;               /* tokens per forward pass (scratch) */
    int policy;                  /* lyra_fallback_policy (NONE when fallback is off) */
    int cpu_disk;                /* CPU layers moved to disk (highest index first) */
    uint64_t budget[LYRA_MAX_DEVICES]; /* the plan's budgets (0: none) */
    int tries;                   /* attempts made */
} search;

/* asg = asg0 with only the first k GPU layers (by index) left on their GPUs
 * (k = 0: everything on the CPU), then the highest-index cpu_disk layers
 * resident on the CPU moved to disk. */
static void make_asg(search *S, int k) {
    lyra_model *m = S->m;
    const lyra_llama *a = m->arch;
    int kept = 0;
    for (int i = 0; i < S->n_mod; i++) {
        int d = S->asg0[i];
        if (is_gpu(m, d)) {
            if (lyra_llama_module_kind(a, i, NULL) == LYRA_MODULE_LAYER) d = kept++ < k ? d : m->cpu;
            else if (k == 0) d = m->cpu;
        }
        S->asg[i] = d;
    }
    int moved = 0;
    for (int i = S->n_mod - 1; i >= 0 && moved < S->cpu_disk; i--)
        if (S->asg[i] == m->cpu && lyra_llama_module_kind(a, i, NULL) == LYRA_MODULE_LAYER) {
            S->asg[i] = DISK(m);
            moved++;
        }
}

static int count_layers(const search *S, int cpu) {
    const lyra_model *m = S->m;
    int n = 0;
    for (int i = 0; i < S->n_mod; i++)
        if (lyra_llama_module_kind(m->arch, i, NULL) == LYRA_MODULE_LAYER &&
            (cpu ? S->asg[i] == m->cpu : is_gpu(m, S->asg[i])))
            n++;
    return n;
}

enum { TRY_PROBE = 0, TRY_LOAD = 1 };

/* One attempt at S->asg and S->ctx. TRY_LOAD: on success the weights are
 * placed (m->placed, w->data, module_dev). TRY_PROBE: nothing stays. On an
 * allocation failure: LYRA_ERR_OOM with *oom, nothing held. */
static int attempt_run(search *S, int mode, lyra_oom *oom, lyra_error *err) {
    lyra_model *m = S->m;
    const lyra_llama_hparams *hp = &m->arch->hp;
    attempt t;
    memset(&t, 0, sizeof t);
    int rc = LYRA_OK;
    S->tries++;
    if (plan_entries(m, S->asg, &t)) {
        free(t.e);
        return lyra_err(err, LYRA_ERR_OOM, "model", "out of memory");
    }
    /* budgets: GPUs the plan's; the CPU the plan's minus what it maps in place */
    for (int di = 0; di < m->n_dev; di++) {
        uint64_t b = S->budget[di];
        if (di == m->cpu && b && t.mapped[di]) {
            if (t.mapped[di] >= b) { /* the mapped weights alone exceed the CPU budget */
                oom->dev = di;
                oom->asked = t.mapped[di];
                oom->room = b;
                free(t.e);
                return LYRA_ERR_OOM;
            }
            b -= t.mapped[di];
        }
        m->dev[di]->budget = b;
    }
    /* 1. every weight copy */
    for (int j = 0; j < t.n && !rc; j++)
        if (t.e[j].copy) rc = lyra_runtime_alloc(m, t.e[j].dev, t.e[j].n_bytes, &t.e[j].ptr, oom);
    /* 2. probes: each device's KV cache for the whole context and its scratch */
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    size_t elem = S->m->geom.kv_type == LYRA_KV_F32 ? 4 : 2;
    size_t chunk = 2 * (size_t)m->kv_chunk * kv_dim * elem;
    size_t n_chunks = ((size_t)S->ctx + (size_t)m->kv_chunk - 1) / (size_t)m->kv_chunk;
    if (m->geom.n_seq > 1) n_chunks *= (size_t)m->geom.n_seq; /* a cache per sequence */
    int *runs = malloc((size_t)S->n_mod * sizeof *runs);
    if (!runs) {
        attempt_release(m, &t);
        free(t.e);
        oom->dev = -1; /* the host, not a device: no fallback for this */
        return lyra_err(err, LYRA_ERR_OOM, "model", "out of memory");
    }
    for (int i = 0; i < S->n_mod; i++) runs[i] = runs_on(m, S->asg, i);
    for (int di = 0; di < m->n_dev && !rc; di++) {
        size_t layers = 0;
        for (int i = 0; i < S->n_mod; i++)
            if (runs[i] == di && lyra_llama_module_kind(m->arch, i, NULL) == LYRA_MODULE_LAYER) layers++;
        lyra_scratch_need sn = lyra_runtime_scratch_need(m, runs, di, S->batch);
        void *kv = NULL, *scr = NULL;
        if (layers && (rc = lyra_runtime_alloc(m, di, layers * n_chunks * chunk, &kv, oom))) break;
        if (sn.any && (rc = lyra_runtime_alloc(m, di, sn.bytes, &scr, oom))) {
            m->dev[di]->ops->free(m->dev[di], kv, layers * n_chunks * chunk);
            break;
        }
        if (scr) m->dev[di]->ops->free(m->dev[di], scr, sn.bytes);
        if (kv) m->dev[di]->ops->free(m->dev[di], kv, layers * n_chunks * chunk);
    }
    free(runs);
    if (rc || mode == TRY_PROBE) {
        attempt_release(m, &t);
        free(t.e);
        return rc;
    }
    /* 3. commit: copy the weights in, adopt the mapped ones, record */
    for (int j = 0; j < t.n && !rc; j++) {
        entry *e = &t.e[j];
        lyra_device *d = m->dev[e->dev];
        if (e->copy && (rc = d->ops->copy_in(d, e->ptr, e->host, e->n_bytes)))
            rc = lyra_err(err, rc, d->id, "cannot load weight %s", e->w->name);
        else if (!e->copy && (rc = d->ops->adopt(d, e->host, e->n_bytes)))
            rc = lyra_err(err, rc, d->id, "cannot map weight %s", e->w->name);
        if (rc) {
            for (int i = 0; i < j; i++)
                if (!t.e[i].copy) m->dev[t.e[i].dev]->ops->unadopt(m->dev[t.e[i].dev], t.e[i].host, t.e[i].n_bytes);
            attempt_release(m, &t);
            free(t.e);
            return rc;
        }
    }
    for (int j = 0; j < t.n; j++) {
        entry *e = &t.e[j];
        lyra_placed *pl = NULL;
        if (lyra_runtime_add_placed(m, &pl, err)) { /* cannot fail past the first: reserve below */
            rc = LYRA_ERR_OOM;
            break;
        }
        pl->dev = e->dev;
        pl->w = e->w;
        pl->host = e->host;
        pl->ptr = e->ptr;
        pl->n_bytes = e->n_bytes;
        if (!e->copy) pl->locked = lyra_runtime_make_resident(e->host, e->n_bytes, m->use_mlock);
        m->n_placed++;
        m->dev_weights[e->dev] += e->n_bytes;
        e->ptr = NULL; /* owned by m->placed now */
    }
    if (rc) { /* out of host memory for the table: undo everything */
        for (int j = 0; j < m->n_placed; j++) lyra_runtime_unplace(m, j);
        m->n_placed = 0;
        for (int j = 0; j < t.n; j++)
            if (t.e[j].ptr) m->dev[t.e[j].dev]->ops->free(m->dev[t.e[j].dev], t.e[j].ptr, t.e[j].n_bytes);
        free(t.e);
        return rc;
    }
    /* point every module weight at its device copy */
    lyra_llama *a = m->arch;
    for (int i = 0; i < S->n_mod; i++) {
        m->module_dev[i] = runs_on(m, S->asg, i);
        m->module_disk[i] = S->asg[i] == DISK(m);
        if (m->module_disk[i]) continue;
        lyra_weight *w[LYRA_MODULE_MAX_WEIGHTS];
        int n = lyra_llama_module_weights(a, i, w);
        for (int k = 0; k < n; k++) {
            if (a->has_rope_freqs && w[k] == &a->rope_freqs) continue;
            for (int j = 0; j < m->n_placed; j++)
                if (m->placed[j].dev == S->asg[i] && m->placed[j].host == w[k]->data) {
                    if (m->placed[j].ptr) w[k]->data = m->placed[j].ptr;
                    break;
                }
        }
    }
    for (int j = 0; j < m->n_placed; j++)
        if (a->has_rope_freqs && m->placed[j].w == &a->rope_freqs)
            m->rope_dev[m->placed[j].dev] = m->placed[j].ptr ? m->placed[j].ptr : m->placed[j].host;
    m->disk_weights = t.disk;
    m->n_bytes = t.n_bytes;
    m->n_params = t.n_params;
    free(t.e);
    return LYRA_OK;
}

/* Try k GPU layers: on a failure the context policy halves the context, and
 * a CPU failure sends CPU layers to disk, each step retrying; a GPU failure
 * (or one with no way left) returns LYRA_ERR_OOM with *oom. *dead = 1: no
 * way left at all (CPU failure with every layer on disk, or fallback off). */
static int try_k(search *S, int k, int mode, lyra_oom *oom, int *dead, lyra_error *err) {
    lyra_model *m = S->m;
    *dead = 0;
    for (;;) {
        make_asg(S, k);
        oom->dev = -1;
        int rc = attempt_run(S, mode, oom, err);
        if (rc != LYRA_ERR_OOM || oom->dev < 0) return rc;
        if (S->policy == LYRA_FALLBACK_NONE) {
            *dead = 1;
            return rc;
        }
        if (S->policy == LYRA_FALLBACK_CONTEXT && S->ctx > S->min_ctx) {
            int32_t to = S->ctx / 2 > S->min_ctx ? S->ctx / 2 : S->min_ctx;
            lyra_runtime_fallback_step(m, LYRA_PHASE_LOAD, -1, oom, "ctx", S->ctx, to);
            S->ctx = to;
            if (S->batch > S->ctx) S->batch = S->ctx;
            continue;
        }
        if (is_gpu(m, oom->dev)) return rc;
        /* the CPU: the highest-index resident CPU layers go to disk, enough
         * of them to cover the shortfall (at least one) */
        int n_cpu = count_layers(S, 1);
        if (n_cpu == 0) {
            *dead = 1;
            return rc;
        }
        uint64_t short_by = oom->asked > oom->room ? oom->asked - oom->room : 1, freed = 0;
        int move = 0;
        for (int i = S->n_mod - 1; i >= 0 && freed < short_by && move < n_cpu; i--) {
            if (S->asg[i] != m->cpu || lyra_llama_module_kind(m->arch, i, NULL) != LYRA_MODULE_LAYER)
                continue;
            lyra_weight *w[LYRA_MODULE_MAX_WEIGHTS];
            int n = lyra_llama_module_weights(m->arch, i, w);
            for (int j = 0; j < n; j++) freed += w[j]->n_bytes;
            move++;
        }
        if (move == 0) move = 1;
        lyra_runtime_fallback_step(m, LYRA_PHASE_LOAD, -1, oom, "cpu", n_cpu, n_cpu - move);
        S->cpu_disk += move;
    }
}

/* The error of a load that found no way. */
static int no_way(search *S, const lyra_oom *oom, lyra_error *err) {
    char why[160];
    lyra_runtime_oom_text(S->m, oom, why, sizeof why);
    if (S->policy == LYRA_FALLBACK_NONE)
        return lyra_err(err, LYRA_ERR_OOM, S->m->dev[oom->dev]->id,
                        "%s (progressive fallback is off)", why);
    return lyra_err(err, LYRA_ERR_OOM, S->m->dev[oom->dev]->id,
                    "%s, and there is no way left: every layer is on disk already (the KV cache "
                    "and scratch must be in memory)",
                    why);
}

/* The search over GPU layer counts (docs/fallback.md). */
static int search_run(search *S, int K, lyra_error *err) {
    int mode = S->p->probe ? TRY_PROBE : TRY_LOAD, dead = 0;
    lyra_oom oom;
    int rc = try_k(S, K, mode, &oom, &dead, err);
    if (rc != LYRA_ERR_OOM || oom.dev < 0) return rc;
    if (dead) return no_way(S, &oom, err);
    /* a GPU failed with K GPU layers */
    int32_t g = S->p->gpu_layers_fallback;
    int kf = K;
    if (g >= 0 && g < K) {
        lyra_runtime_fallback_step(S->m, LYRA_PHASE_LOAD, -1, &oom, "gpu", K, g);
        rc = try_k(S, g, mode, &oom, &dead, err);
        if (rc != LYRA_ERR_OOM || oom.dev < 0) return rc;
        if (dead) return no_way(S, &oom, err);
        kf = g;
    }
    for (;;) { /* largest count in [0, kf) that loads */
        int lo = 0, hi = kf - 1, best = -1, from = kf;
        while (lo < hi) {
            int mid = lo + (hi - lo + 1) / 2;
            if (from >= 0) lyra_runtime_fallback_step(S->m, LYRA_PHASE_LOAD, -1, &oom, "gpu", from, mid);
            else LYRA_INFO("load: %d GPU layers fit; trying %d", best, mid);
            int final = mid == hi;
            rc = try_k(S, mid, final ? mode : TRY_PROBE, &oom, &dead, err);
            if (rc == LYRA_OK) {
                if (final) return LYRA_OK;
                best = lo = mid;
                from = -1;
            } else if (rc == LYRA_ERR_OOM && oom.dev >= 0 && !dead) {
                hi = mid - 1;
                from = mid;
            } else {
                return dead ? no_way(S, &oom, err) : rc;
            }
        }
        /* lo == hi: load it (again, when it succeeded as a probe) */
        if (from >= 0) lyra_runtime_fallback_step(S->m, LYRA_PHASE_LOAD, -1, &oom, "gpu", from, lo);
        else LYRA_INFO("load: loading %d GPU layers", lo);
        rc = try_k(S, lo, mode, &oom, &dead, err);
        if (rc != LYRA_ERR_OOM || oom.dev < 0) return rc;
        if (dead || lo == 0) return no_way(S, &oom, err);
        kf = lo; /* memory changed since the probe: search below it */
    }
}

int lyra_runtime_gpu_layers(const lyra_model *m) {
    int n = 0;
    for (int l = 0; l < m->arch->hp.n_layer; l++) n += is_gpu(m, m->module_dev[l + 1]) && !m->module_disk[l + 1];
    return n;
}

int lyra_runtime_cpu_layers(const lyra_model *m) {
    int n = 0;
    for (int l = 0; l < m->arch->hp.n_layer; l++) n += m->module_dev[l + 1] == m->cpu && !m->module_disk[l + 1];
    return n;
}

/* The planner's step-down of gpu_layers (plan.h lyra_plan_step) as the first
 * load step of the history; its line was the plan's note. */
static int plan_step(lyra_model *m, const lyra_plan_step *ps) {
    lyra_fallback_step *s = lyra_runtime_fallback_add(m);
    if (!s) return LYRA_ERR_OOM;
    s->phase = LYRA_PHASE_LOAD;
    s->token = -1;
    snprintf(s->device, sizeof s->device, "%s", ps->device);
    s->asked = ps->asked;
    s->free = ps->room;
    snprintf(s->what, sizeof s->what, "gpu");
    s->from_k = ps->from;
    s->to_k = ps->to;
    return LYRA_OK;
}

/* Replace m->plan by the plan of the map that loaded (module_dev, disk). */
static int plan_final(lyra_model *m, const lyra_model_params *p, lyra_error *err) {
    int n_mod = lyra_llama_n_modules(m->arch);
    const char **ids = malloc((size_t)n_mod * sizeof *ids);
    if (!ids) return lyra_err(err, LYRA_ERR_OOM, "model", "out of memory");
    for (int i = 0; i < n_mod; i++) ids[i] = m->module_disk[i] ? "disk" : m->dev[m->module_dev[i]]->id;
    lyra_plan *pl = NULL;
    int rc = lyra_runtime_plan_fixed_ranked(m->arch, p, m->dev, m->n_dev, ids, m->n_ctx, m->module_rank, &pl, err);
    free(ids);
    if (rc) return rc;
    lyra_plan_free(m->plan);
    m->plan = pl;
    return LYRA_OK;
}

static int load_share(lyra_model *m, const lyra_model_params *p, lyra_error *err);
static int across_ranks(lyra_model *m, const lyra_model_params *p, lyra_error *err);

int lyra_runtime_load(lyra_model *m, const lyra_model_params *p, lyra_error *err) {
    m->geom = lyra_runtime_geometry(m->arch, p);
    m->ctx_asked = p->n_ctx;
    int rc = lyra_runtime_devices(p->backend, m->geom.n_threads, lyra_runtime_wants_gpu(p), m->dev, &m->n_dev, err);
    if (rc) return rc;
    m->cpu = m->n_dev - 1;
    m->kv_chunk = p->kv_chunk > 0 ? p->kv_chunk : LYRA_KV_CHUNK;
    m->fallback = p->fallback != 0 && p->fallback_policy != LYRA_FALLBACK_NONE;
    m->policy = m->fallback ? p->fallback_policy : LYRA_FALLBACK_NONE;
    m->probe = p->probe != 0;
    m->across_ranks = p->fallback_across_ranks != 0;
    if (lyra_dist_size() == 1 && lyra_runtime_named_rank(p) > 0)
        return lyra_err(err, LYRA_ERR_INPUT, "device_map",
                        "a device of rank %d is named: run under mpirun -np %d (docs/distributed.md)",
                        lyra_runtime_named_rank(p), lyra_runtime_named_rank(p) + 1);
    int n_mod = lyra_llama_n_modules(m->arch);
    if (lyra_dist_size() > 1) { /* mpirun: the ranks report their devices, rank 0 splits */
        m->rank = lyra_dist_rank();
        m->module_rank = calloc((size_t)n_mod, sizeof *m->module_rank);
        if (!m->module_rank) return lyra_err(err, LYRA_ERR_OOM, "model", "out of memory");
        if ((rc = lyra_runtime_cluster(m->arch, p, m->dev, m->n_dev, m->module_rank, NULL, err))) return rc;
        if (p->fallback_across_ranks && !p->probe && (rc = across_ranks(m, p, err))) return rc;
    }
    return load_share(m, p, err);
}

/* Plan this rank's share (m->module_rank) and load it: the search over GPU
 * layer counts with the within-rank fallback (p->probe: allocate, keep
 * nothing). */
static int load_share(lyra_model *m, const lyra_model_params *p, lyra_error *err) {
    int rc, n_mod = lyra_llama_n_modules(m->arch);
    m->probe = p->probe != 0;
    if ((rc = lyra_runtime_plan_ranked(m->arch, p, &m->geom, m->dev, m->n_dev, m->module_rank, &m->plan, err)))
        return rc;
    const lyra_plan *pl = m->plan;
    if (pl->step.from >= 0 && (rc = plan_step(m, &pl->step)))
        return lyra_err(err, rc, "model", "out of memory");
    if (pl->n_modules != n_mod)
        return lyra_err(err, LYRA_ERR_RUNTIME, "model", "plan has %d modules, not %d", pl->n_modules, n_mod);
    m->module_dev = calloc((size_t)n_mod, sizeof *m->module_dev);
    m->module_disk = calloc((size_t)n_mod, 1);
    search S;
    memset(&S, 0, sizeof S);
    S.asg0 = malloc((size_t)n_mod * sizeof *S.asg0);
    S.asg = malloc((size_t)n_mod * sizeof *S.asg);
    if (!m->module_dev || !m->module_disk || !S.asg0 || !S.asg) {
        rc = lyra_err(err, LYRA_ERR_OOM, "model", "out of memory");
        goto done;
    }
    S.m = m;
    S.p = p;
    S.n_mod = n_mod;
    S.ctx = pl->ctx;
    S.batch = pl->batch;
    S.min_ctx = p->min_ctx > 0 ? p->min_ctx : 2048;
    S.policy = m->policy;
    int K = 0;
    for (int i = 0; i < n_mod; i++) {
        const lyra_plan_device *d = &pl->dev[pl->module_dev[i]];
        int di = -1;
        if (!strcmp(d->kind, "disk")) di = DISK(m);
        for (int j = 0; j < m->n_dev && di < 0; j++)
            if (!strcmp(m->dev[j]->id, d->id)) di = j;
        if (di < 0) {
            rc = lyra_err(err, LYRA_ERR_RUNTIME, "model", "planned device %s is not here", d->id);
            goto done;
        }
        S.asg0[i] = di;
        if (m->module_rank && m->module_rank[i] != m->rank) { /* another rank's: never read */
            S.asg0[i] = DISK(m);
            continue;
        }
        /* a device without an op the architecture needs (a NULL op) runs none of its modules */
        const char *op = lyra_llama_module_missing_op(m->arch, i, m->dev[runs_on(m, S.asg0, i)]);
        if (op) {
            char name[64];
            lyra_llama_module_name(m->arch, i, name, sizeof name);
            lyra_device *dv = m->dev[runs_on(m, S.asg0, i)];
            rc = lyra_err(err, LYRA_ERR_INPUT, "model",
                          "%s (%s) needs the device op '%s', which device %s (%s) does not have: "
                          "map it to the CPU (--device-map, --gpu-layers)",
                          name, m->arch->desc.name, op, dv->id, dv->backend);
            goto done;
        }
        if (is_gpu(m, di) && lyra_llama_module_kind(m->arch, i, NULL) == LYRA_MODULE_LAYER) K++;
    }
    for (int j = 0; j < m->n_dev; j++) {
        int pi = lyra_plan_device_index(pl, m->dev[j]->id);
        S.budget[j] = pi >= 0 ? pl->dev[pi].budget : 0;
    }
    rc = search_run(&S, K, err);
    if (rc) goto done;
    m->n_ctx = S.ctx;
    if (m->probe) { /* the map found, nothing placed */
        for (int i = 0; i < n_mod; i++) {
            m->module_dev[i] = runs_on(m, S.asg, i);
            m->module_disk[i] = S.asg[i] == DISK(m);
        }
    }
    if (m->n_steps || m->probe) rc = plan_final(m, p, err);
    if (!rc && m->n_steps)
        LYRA_INFO("load: %d GPU layers, %d CPU layers after %d attempt%s",
                  lyra_runtime_gpu_layers(m), lyra_runtime_cpu_layers(m), S.tries,
                  S.tries == 1 ? "" : "s");
done:
    free(S.asg0);
    free(S.asg);
    return rc;
}

/* -------------------------------------------------------------- step-down */

/* The progressive fallback between two tokens: after the allocation *oom
 * failed, move one layer off that device (a GPU's highest-index layer to the
 * CPU, the CPU's highest-index resident layer to disk), record the step, and
 * return LYRA_OK so that the caller retries. When the CPU cannot take the
 * GPU's layer, a CPU layer goes to disk first. LYRA_ERR_OOM (err says why)
 * when there is nothing left to move. */
int lyra_runtime_step_down(lyra_context *c, const lyra_oom *oom, int phase, int32_t token,
                           lyra_error *err) {
    lyra_model *m = c->model;
    const int n_mod = lyra_llama_n_modules(m->arch), di = oom->dev, gpu = is_gpu(m, di);
    int mi = -1;
    for (int i = n_mod - 1; i >= 0 && mi < 0; i--) /* the highest-index layer there */
        if (m->module_dev[i] == di && !m->module_disk[i] &&
            lyra_llama_module_kind(m->arch, i, NULL) == LYRA_MODULE_LAYER)
            mi = i;
    for (int i = n_mod - 1; i >= 0 && mi < 0 && gpu; i--) /* a GPU: then embedding, norm, head */
        if (m->module_dev[i] == di) mi = i;
    if (mi < 0 || m->n_contexts != 1) {
        char why[160];
        lyra_runtime_oom_text(m, oom, why, sizeof why);
        return lyra_err(err, LYRA_ERR_OOM, m->dev[di]->id, "%s, and there is no way left (%s)", why,
                        mi < 0 ? (gpu ? "nothing left on it" : "every layer is on disk already")
                               : "several contexts share the model");
    }
    int is_layer = lyra_llama_module_kind(m->arch, mi, NULL) == LYRA_MODULE_LAYER;
    int from = gpu ? lyra_runtime_gpu_layers(m) : lyra_runtime_cpu_layers(m);
    for (int tries = 0; tries <= n_mod; tries++) {
        lyra_oom o2;
        int rc = lyra_runtime_move_module(c, mi, m->cpu, !gpu, &o2, err);
        if (rc == LYRA_OK) {
            if (is_layer)
                lyra_runtime_fallback_step(m, phase, token, oom, gpu ? "gpu" : "cpu", from, from - 1);
            else {
                char name[64];
                lyra_llama_module_name(m->arch, mi, name, sizeof name);
                lyra_runtime_fallback_step(m, phase, token, oom, "gpu", from, from);
                LYRA_INFO("%s moved to the cpu (out of memory on its GPU)", name);
            }
            return LYRA_OK;
        }
        if (rc != LYRA_ERR_OOM || o2.dev != m->cpu || !gpu) return rc;
        /* the CPU could not take it: make room there first */
        if ((rc = lyra_runtime_step_down(c, &o2, phase, token, err))) return rc;
    }
    return lyra_err(err, LYRA_ERR_OOM, m->dev[di]->id, "the fallback found no placement");
}

/* --fallback-across-ranks at load (docs/distributed.md): every rank probes
 * its share (the load's search with real allocations, nothing kept) and
 * reports whether it holds; rank 0 moves the last layer of the first rank
 * that cannot (out of memory, or no plan, after its own step-downs) to the
 * next rank and sends the new split, until every share holds or the rank
 * cannot give a layer more (then the real load fails there, naming it). */
static int across_ranks(lyra_model *m, const lyra_model_params *p, lyra_error *err) {
    int n_mod = lyra_llama_n_modules(m->arch), n_ranks = lyra_dist_size(), rc = LYRA_OK;
    lyra_model_params pp = *p;
    pp.probe = 1;
    int32_t *st = calloc((size_t)n_ranks, sizeof *st);
    if (!st) return lyra_err(err, LYRA_ERR_OOM, "model", "out of memory");
    for (int round = 0; round < n_mod && !rc; round++) {
        lyra_error why;
        m->quiet_steps = 1; /* the real load says its steps */
        int prc = load_share(m, &pp, &why);
        m->quiet_steps = 0;
        lyra_plan_free(m->plan); /* undo the probe: the real load starts afresh */
        m->plan = NULL;
        free(m->module_dev);
        free(m->module_disk);
        m->module_dev = NULL;
        m->module_disk = NULL;
        m->n_steps = 0;
        int32_t mine = prc == LYRA_ERR_OOM || prc == LYRA_ERR_INPUT ? 1 : 0;
        if ((rc = lyra_dist_gather(&mine, st, sizeof mine, err))) break;
        int32_t again = 0;
        if (m->rank == 0)
            for (int r = 0; r + 1 < n_ranks && !again; r++) {
                if (!st[r]) continue;
                char name[64];
                if (!lyra_runtime_move_last(m->arch, r, m->module_rank, name, sizeof name)) break;
                LYRA_WARN("fallback across ranks: rank %d cannot load its share%s%s%s: %s moves to rank %d", r,
                          r == 0 ? " (" : "", r == 0 ? why.msg : "", r == 0 ? ")" : "", name, r + 1);
                again = 1;
            }
        if ((rc = lyra_dist_bcast(&again, sizeof again, err))) break;
        if (!again) break;
        rc = lyra_dist_bcast(m->module_rank, (size_t)n_mod * sizeof *m->module_rank, err);
    }
    free(st);
    return rc;
}

/* ------------------------------------------ across ranks, during generation */

int lyra_runtime_pass_layer(lyra_context *c, int mi, int from, lyra_error *err) {
    lyra_model *m = c->model;
    lyra_llama *a = m->arch;
    const int to = from + 1;
    const size_t cb = c->chunk_bytes;
    int layer = -1;
    if (!m->module_rank || lyra_llama_module_kind(a, mi, &layer) != LYRA_MODULE_LAYER ||
        m->module_rank[mi] != from || to >= lyra_dist_size())
        return lyra_err(err, LYRA_ERR_RUNTIME, "fallback", "module %d cannot go from rank %d to %d (internal error)",
                        mi, from, to);
    m->module_rank[mi] = to; /* every rank: the forward pass hands the hidden state on there now */
    if (m->rank != from && m->rank != to) return LYRA_OK;
    lyra_weight *w[LYRA_MODULE_MAX_WEIGHTS];
    int nw = lyra_llama_module_weights(a, mi, w);
    uint64_t wb = 0; /* the layer's weight bytes (disk accounting) */
    for (int k = 0; k < nw; k++)
        if (w[k] != &a->rope_freqs) wb += w[k]->n_bytes;
    void *rows = malloc(cb ? cb : 1), *tmp = malloc(cb ? cb : 1);
    if (!rows || !tmp) { /* fatal: every rank ends (the abort of a failed rank) */
        free(rows);
        free(tmp);
        return lyra_err(err, LYRA_ERR_OOM, "fallback", "out of memory");
    }
    int rc = LYRA_OK;
    if (m->rank == from) {
        /* its KV cache to the next rank, sequence by sequence, chunk by chunk (sent even after an
         * error, so that the receiver is not left waiting), then freed; its weights to the disk
         * tier (unplaced), which is how a rank keeps the modules of other ranks */
        const int di = m->module_dev[mi];
        lyra_device *d = m->dev[di];
        for (int q = 0; q < c->n_seq; q++) {
            /* its count first: a rank whose growth failed midway holds fewer chunks than the others */
            int32_t n = lyra_kv_layer_chunks(c, q, layer);
            lyra_error e1;
            int r1 = lyra_dist_send(to, LYRA_DIST_TAG_MOVE, &n, sizeof n, rc ? &e1 : err);
            if (!rc) rc = r1;
            for (int32_t k = 0; k < n; k++) {
                lyra_error e2;
                const void *p = *lyra_kv_slot(c, q, layer, 0, k);
                if (!rc && !p) rc = lyra_err(err, LYRA_ERR_RUNTIME, "fallback", "layer %d has no KV chunk %d", layer, (int)k);
                if (!rc) rc = lyra_runtime_kv_rows_out(c, di, layer, p, rows, tmp, err);
                else memset(rows, 0, cb);
                int r2 = lyra_dist_send(to, LYRA_DIST_TAG_MOVE, rows, cb, rc ? &e2 : err);
                if (!rc) rc = r2;
            }
        }
        for (int q = 0; q < c->n_seq; q++)
            for (int32_t k = 0; k < c->n_chunks_max; k++) {
                void **kp = lyra_kv_slot(c, q, layer, 0, k);
                if (!*kp) continue;
                d->ops->free(d, *kp, cb);
                c->cd[di].kv_bytes -= cb;
                *kp = NULL;
                *lyra_kv_slot(c, q, layer, 1, k) = NULL;
            }
        if (!rc && !m->module_disk[mi]) {
            lyra_oom oom;
            rc = lyra_runtime_move_module(c, mi, m->cpu, 1, &oom, err);
        }
        if (!rc) m->disk_weights -= wb; /* another rank's now */
    } else {
        /* the layer was a disk module here (another rank's): now this rank's, resident on its CPU
         * (mapped in place, scratch sized for it), its KV cache there, filled from the sender */
        lyra_oom oom;
        m->disk_weights += wb;
        if (!rc) rc = lyra_runtime_move_module(c, mi, m->cpu, 0, &oom, err);
        const int di = m->module_dev[mi];
        for (int q = 0; q < c->n_seq; q++) {
            int32_t n = 0, own = lyra_kv_layer_chunks(c, q, layer);
            lyra_error e1;
            int r1 = lyra_dist_recv(from, LYRA_DIST_TAG_MOVE, &n, sizeof n, lyra_dist_timeout(), rc ? &e1 : err);
            if (!rc) rc = r1;
            if (!rc && (n < 0 || n > c->n_chunks_max))
                rc = lyra_err(err, LYRA_ERR_RUNTIME, "mpi", "rank %d hands on %d KV chunks of layer %d", from,
                              (int)n, layer);
            /* the sender's chunks, then empty ones up to this rank's count */
            for (int32_t k = 0; !rc && k < (n > own ? n : own); k++) {
                if (k < n) {
                    lyra_error e2;
                    int r2 = lyra_dist_recv(from, LYRA_DIST_TAG_MOVE, rows, cb, lyra_dist_timeout(), rc ? &e2 : err);
                    if (!rc) rc = r2;
                }
                void *p = NULL;
                if (!rc && (rc = lyra_runtime_alloc(m, di, cb, &p, &oom))) {
                    char why[160];
                    lyra_runtime_oom_text(m, &oom, why, sizeof why);
                    rc = lyra_err(err, rc, m->dev[di]->id, "the KV cache of layer %d (handed on by rank %d): %s",
                                  layer, from, why);
                }
                if (rc) continue;
                *lyra_kv_slot(c, q, layer, 0, k) = p;
                *lyra_kv_slot(c, q, layer, 1, k) = (char *)p + cb / 2;
                c->cd[di].kv_bytes += cb;
                if (k < n) rc = lyra_runtime_kv_rows_in(c, di, layer, p, rows, tmp, err);
            }
        }
    }
    free(rows);
    free(tmp);
    return rc;
}
