/* placement.c: which devices a model runs on and where its modules go: the
 * simulated GPUs of LYRA_SIM_GPUS (CUDA GPUs plug in here) and the CPU, and
 * the plan (plan/plan.h) made from the geometry and lyra_model_params' typed
 * device fields (strategy or explicit map, max_memory, reserve, gpu_layers,
 * tensor_split; parsed from text by config/devspec.h, not here). Used by
 * lyra_model_open and by `lyra plan` (which reads metadata only). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "device/cuda.h"
#include "dist/dist.h"
#include "plan/plan.h"
#include "runtime/objects.h"
#include "runtime/placement.h"

int lyra_runtime_wants_gpu(const lyra_model_params *p) {
    if (!p) return 0;
    if (p->device_strategy == LYRA_DEVICE_MAP_GPU) return 1;
    if (p->device_strategy == LYRA_DEVICE_MAP_EXPLICIT)
        for (int i = 0; i < p->n_device_map && p->device_map; i++)
            if (LYRA_DEVICE_LOCAL(p->device_map[i].device) >= 0) return 1;
    for (int i = 0; i < p->n_max_memory && p->max_memory; i++)
        if (LYRA_DEVICE_LOCAL(p->max_memory[i].device) >= 0) return 1;
    for (int i = 0; i < p->n_reserve && p->reserve; i++)
        if (LYRA_DEVICE_LOCAL(p->reserve[i].device) >= 0) return 1;
    return (p->gpu_layers != 0 && p->gpu_layers != LYRA_GPU_LAYERS_UNSET) || p->n_tensor_split > 0;
}

int lyra_runtime_devices(const lyra_backend_params *bp, int n_threads, int gpu_asked,
                         lyra_device **dev, int *n_dev, lyra_error *err) {
    lyra_backend_params env;
    if (!bp) {
        env = lyra_backend_params_from_env();
        bp = &env;
    }
    lyra_sim_spec specs[LYRA_SIM_MAX_GPUS];
    int n = 0, set = bp->sim_gpus != NULL, rc;
    *n_dev = 0;
    if ((rc = lyra_sim_parse(bp->sim_gpus, specs, LYRA_SIM_MAX_GPUS, &n, err))) return rc;
    if (set) {
        LYRA_INFO("LYRA_SIM_GPUS is set: %d simulated GPU%s, no CUDA GPUs", n, n == 1 ? "" : "s");
        if (n && (rc = lyra_sim_devices_open(specs, n, n_threads, bp->cpu_path, dev, err))) return rc;
    }
    /* without LYRA_SIM_GPUS: the CUDA GPUs (none in builds without CUDA, or
     * without a driver or a device: one note, then the CPU alone) */
    if (!set && (rc = lyra_cuda_devices_open(bp->cuda_devices, gpu_asked, n_threads, dev,
                                             LYRA_MAX_DEVICES - 1, &n, err)))
        return rc;
    if ((rc = lyra_cpu_device_open(n_threads, bp->cpu_path, &dev[n], err))) {
        for (int i = 0; i < n; i++) lyra_device_free(dev[i]);
        return rc;
    }
    int armed = 0;
    if ((rc = lyra_device_fault_parse(bp->fail_alloc, dev, n + 1, &armed, err))) {
        for (int i = 0; i <= n; i++) lyra_device_free(dev[i]);
        return rc;
    }
    if (armed) LYRA_WARN("LYRA_FAIL_ALLOC=%s: fault injection armed", bp->fail_alloc);
    *n_dev = n + 1;
    return LYRA_OK;
}

lyra_geometry lyra_runtime_geometry(const lyra_llama *a, const lyra_model_params *p) {
    lyra_geometry g = {p->n_ctx, p->n_batch, (int)p->kv_type, p->n_threads, p->n_seq};
    return lyra_geometry_resolve(g, lyra_geometry_default_ctx(a->hp.n_ctx_train));
}

/* opts' strategy and map from p's typed device fields. */
static int map_opts(const lyra_model_params *p, lyra_plan_opts *o, lyra_error *err) {
    static const lyra_plan_strategy st[] = {
        [LYRA_DEVICE_MAP_AUTO] = LYRA_PLAN_AUTO,
        [LYRA_DEVICE_MAP_BALANCED] = LYRA_PLAN_BALANCED,
        [LYRA_DEVICE_MAP_BALANCED_LOW_0] = LYRA_PLAN_BALANCED_LOW_0,
        [LYRA_DEVICE_MAP_SEQUENTIAL] = LYRA_PLAN_SEQUENTIAL,
        [LYRA_DEVICE_MAP_CPU] = LYRA_PLAN_CPU,
        [LYRA_DEVICE_MAP_GPU] = LYRA_PLAN_GPU,
        [LYRA_DEVICE_MAP_EXPLICIT] = LYRA_PLAN_MAP,
    };
    const char *where = p->device_map_source && p->device_map_source[0] ? p->device_map_source
                                                                         : "device_map";
    snprintf(o->map_where, sizeof o->map_where, "%.120s", where);
    if ((int)p->device_strategy < 0 || p->device_strategy > LYRA_DEVICE_MAP_EXPLICIT)
        return lyra_err(err, LYRA_ERR_INPUT, "device_strategy", "unknown strategy %d",
                        (int)p->device_strategy);
    o->strategy = st[p->device_strategy];
    if (o->strategy == LYRA_PLAN_GPU) {
        if (p->device_gpu < 0)
            return lyra_err(err, LYRA_ERR_INPUT, "device_gpu", "GPU index %d out of range",
                            (int)p->device_gpu);
        o->gpu = p->device_gpu;
    }
    if (o->strategy == LYRA_PLAN_MAP) {
        if (p->n_device_map < 0 || (p->n_device_map && !p->device_map))
            return lyra_err(err, LYRA_ERR_INPUT, "device_map", "%d entries but no array",
                            (int)p->n_device_map);
        o->map = p->device_map;
        o->n_map = p->n_device_map;
    }
    if (p->gpu_layers != LYRA_GPU_LAYERS_UNSET) {
        if (p->gpu_layers < LYRA_GPU_LAYERS_ALL)
            return lyra_err(err, LYRA_ERR_INPUT, "gpu_layers",
                            "%d: the number of GPU layers cannot be negative (0.., "
                            "LYRA_GPU_LAYERS_ALL or LYRA_GPU_LAYERS_UNSET)",
                            (int)p->gpu_layers);
        o->gpu_layers = p->gpu_layers == LYRA_GPU_LAYERS_ALL ? LYRA_PLAN_ALL_LAYERS : p->gpu_layers;
    }
    if (p->n_tensor_split) {
        if (p->n_tensor_split < 0 || p->n_tensor_split > LYRA_MAX_TENSOR_SPLIT || !p->tensor_split)
            return lyra_err(err, LYRA_ERR_INPUT, "tensor_split", "%d proportions (1 to %d)",
                            (int)p->n_tensor_split, LYRA_MAX_TENSOR_SPLIT);
        int any = 0;
        for (int i = 0; i < p->n_tensor_split; i++) {
            float x = p->tensor_split[i];
            if (!(x >= 0.0f) || x > 1e6f)
                return lyra_err(err, LYRA_ERR_INPUT, "tensor_split",
                                "entry %d: expected a number from 0 to 1000000", i);
            o->split[i] = (uint64_t)llround((double)x * LYRA_PLAN_SPLIT_ONE);
            any |= o->split[i] != 0;
        }
        if (!any) return lyra_err(err, LYRA_ERR_INPUT, "tensor_split", "every proportion is 0");
        o->n_split = p->n_tensor_split;
    }
    return LYRA_OK;
}

int lyra_runtime_rank_devices(const lyra_model_params *p, int rank, const lyra_plan_device *pd, int n,
                              lyra_plan_rank *out, lyra_plan_notes *notes, lyra_error *err) {
    memset(out, 0, sizeof *out);
    for (int i = 0; i < n && out->n_devices < LYRA_PLAN_MAX_DEVICES - 1; i++) out->dev[out->n_devices++] = pd[i];
    lyra_plan_device_disk(&out->dev[out->n_devices++]);
    void *mem = NULL;
    lyra_model_params lp;
    lyra_plan_memspec mm, rs;
    int rc = lyra_runtime_localize(p, rank, &lp, &mem, err);
    if (!rc) rc = lyra_plan_memspec_from(lp.max_memory, lp.n_max_memory, "max_memory", &mm, err);
    if (!rc) rc = lyra_plan_memspec_from(lp.reserve, lp.n_reserve, "reserve", &rs, err);
    if (!rc) rc = lyra_plan_budgets(out->dev, out->n_devices, &mm, &rs, notes, err);
    free(mem);
    return rc;
}

/* The planner's options for p (localized) and geometry g (fixed: a map that loaded). */
static int plan_opts(const lyra_model_params *p, const lyra_geometry *g, const char *const *fixed,
                     lyra_plan_opts *o, lyra_error *err) {
    *o = lyra_plan_default_opts();
    o->ctx = g->n_ctx;
    o->batch = g->n_batch < g->n_ctx ? g->n_batch : g->n_ctx; /* as lyra_context_new */
    o->n_seq = g->n_seq;
    o->kv_chunk = p->kv_chunk > 0 ? p->kv_chunk : LYRA_KV_CHUNK;
    o->fallback = p->fallback;
    /* gpu_layers that do not fit step down when the progressive fallback is on */
    o->step_down = p->fallback != 0 && p->fallback_policy != LYRA_FALLBACK_NONE;
    o->gpu_layers_fallback = p->gpu_layers_fallback;
    if (fixed) {
        o->strategy = LYRA_PLAN_FIXED;
        o->fixed = fixed;
        return LYRA_OK;
    }
    return map_opts(p, o, err);
}

int lyra_runtime_plan_share(const lyra_llama *a, const lyra_model_params *p0, const lyra_geometry *g,
                            const lyra_plan_rank *rd, int rank, const int *module_rank,
                            const char *const *fixed, lyra_plan **out, lyra_error *err) {
    *out = NULL;
    void *mem = NULL;
    lyra_model_params lp;
    lyra_plan_opts o;
    lyra_plan_model pm;
    int rc = lyra_runtime_localize(p0, rank, &lp, &mem, err);
    if (!rc) rc = plan_opts(&lp, g, fixed, &o, err);
    if (rc) {
        free(mem);
        return rc;
    }
    if ((rc = lyra_plan_model_from_llama(a, o.batch, g->kv_type, &pm, err))) {
        free(mem);
        return rc;
    }
    int n_ranks = lyra_dist_size(), named = lyra_runtime_named_rank(p0);
    if (n_ranks == 1 && named > 0) n_ranks = named + 1; /* lyra plan: rank 0's share */
    if (module_rank || n_ranks > 1) { /* the other ranks' modules cost nothing here */
        int *mr = module_rank ? NULL : malloc((size_t)pm.n_modules * sizeof *mr);
        if (!module_rank && !mr) rc = lyra_err(err, LYRA_ERR_OOM, "plan", "out of memory");
        if (!rc && mr) rc = lyra_runtime_ranks(a, p0, n_ranks, mr, err);
        const int *use = module_rank ? module_rank : mr;
        for (int i = 0; !rc && i < pm.n_modules; i++) {
            if (use[i] == rank) continue;
            lyra_plan_module *pmi = (lyra_plan_module *)&pm.modules[i]; /* the builder's memory */
            pmi->n_tensors = 0;
            pmi->kv_per_pos = 0;
            pmi->scratch = 0;
        }
        free(mr);
    }
    if (!rc) rc = lyra_plan_make(&pm, rd->dev, rd->n_devices, &o, out, err);
    lyra_plan_model_release(&pm);
    free(mem);
    return rc;
}

/* Plan a on this rank's dev[n_dev] for geometry g (fixed: the map that
 * loaded, else p's device fields; module_rank: the split, NULL: the even
 * split or the map's). */
static int plan_with(const lyra_llama *a, const lyra_model_params *p, const lyra_geometry *g,
                     lyra_device *const *dev, int n_dev, const char *const *fixed,
                     const int *module_rank, lyra_plan **out, lyra_error *err) {
    *out = NULL;
    lyra_plan_device pd[LYRA_PLAN_MAX_DEVICES];
    int n = 0, rank = lyra_dist_rank();
    for (int i = 0; i < n_dev && n < LYRA_PLAN_MAX_DEVICES - 1; i++) lyra_plan_device_from(dev[i], &pd[n++]);
    lyra_plan_rank rd;
    lyra_plan_notes notes;
    memset(&notes, 0, sizeof notes);
    int rc = lyra_runtime_rank_devices(p, rank, pd, n, &rd, &notes, err);
    if (rc) return rc;
    if (!fixed)
        for (int i = 0; i < notes.n; i++) LYRA_WARN("%s", notes.line[i]);
    rc = lyra_runtime_plan_share(a, p, g, &rd, rank, module_rank, fixed, out, err);
    if (!rc && !fixed)
        for (int i = 0; i < (*out)->notes.n; i++) LYRA_WARN("%s", (*out)->notes.line[i]);
    return rc;
}

int lyra_runtime_plan(const lyra_llama *a, const lyra_model_params *p, const lyra_geometry *g,
                      lyra_device *const *dev, int n_dev, lyra_plan **out, lyra_error *err) {
    return plan_with(a, p, g, dev, n_dev, NULL, NULL, out, err);
}

int lyra_runtime_plan_ranked(const lyra_llama *a, const lyra_model_params *p, const lyra_geometry *g,
                             lyra_device *const *dev, int n_dev, const int *module_rank,
                             lyra_plan **out, lyra_error *err) {
    return plan_with(a, p, g, dev, n_dev, NULL, module_rank, out, err);
}

int lyra_runtime_plan_fixed(const lyra_llama *a, const lyra_model_params *p,
                            lyra_device *const *dev, int n_dev, const char *const *ids,
                            int32_t n_ctx, lyra_plan **out, lyra_error *err) {
    return lyra_runtime_plan_fixed_ranked(a, p, dev, n_dev, ids, n_ctx, NULL, out, err);
}

int lyra_runtime_plan_fixed_ranked(const lyra_llama *a, const lyra_model_params *p,
                                   lyra_device *const *dev, int n_dev, const char *const *ids,
                                   int32_t n_ctx, const int *module_rank, lyra_plan **out,
                                   lyra_error *err) {
    lyra_geometry g = lyra_runtime_geometry(a, p);
    g.n_ctx = n_ctx;
    return plan_with(a, p, &g, dev, n_dev, ids, module_rank, out, err);
}

int lyra_runtime_named_rank(const lyra_model_params *p) {
    int r = -1;
    if (p->device_strategy == LYRA_DEVICE_MAP_EXPLICIT)
        for (int i = 0; p->device_map && i < p->n_device_map; i++)
            if (LYRA_DEVICE_RANK(p->device_map[i].device) > r) r = LYRA_DEVICE_RANK(p->device_map[i].device);
    for (int i = 0; p->max_memory && i < p->n_max_memory; i++)
        if (LYRA_DEVICE_RANK(p->max_memory[i].device) > r) r = LYRA_DEVICE_RANK(p->max_memory[i].device);
    for (int i = 0; p->reserve && i < p->n_reserve; i++)
        if (LYRA_DEVICE_RANK(p->reserve[i].device) > r) r = LYRA_DEVICE_RANK(p->reserve[i].device);
    return r;
}

/* 1 when p's explicit device map names a rank. */
static int map_has_ranks(const lyra_model_params *p) {
    if (p->device_strategy != LYRA_DEVICE_MAP_EXPLICIT) return 0;
    for (int i = 0; p->device_map && i < p->n_device_map; i++)
        if (LYRA_DEVICE_RANK(p->device_map[i].device) >= 0) return 1;
    return 0;
}

/* The rank of map entry e (an entry without one: rank 0). */
static int entry_rank(const lyra_device_map_entry *e) {
    int r = LYRA_DEVICE_RANK(e->device);
    return r < 0 ? 0 : r;
}

int lyra_runtime_localize(const lyra_model_params *p, int rank, lyra_model_params *lp, void **mem,
                          lyra_error *err) {
    *lp = *p;
    *mem = NULL;
    if (lyra_runtime_named_rank(p) < 0) return LYRA_OK;
    size_t n = (size_t)(p->n_device_map > 0 ? p->n_device_map : 0) * sizeof(lyra_device_map_entry) +
               (size_t)(p->n_max_memory + p->n_reserve) * sizeof(lyra_device_bytes) + 1;
    char *m = malloc(n);
    if (!m) return lyra_err(err, LYRA_ERR_OOM, "device_map", "out of memory");
    *mem = m;
    lyra_device_map_entry *map = (lyra_device_map_entry *)m;
    lyra_device_bytes *b = (lyra_device_bytes *)(map + (p->n_device_map > 0 ? p->n_device_map : 0));
    if (p->device_strategy == LYRA_DEVICE_MAP_EXPLICIT && p->device_map) {
        for (int i = 0; i < p->n_device_map; i++) { /* another rank's module: on the CPU, free */
            map[i] = p->device_map[i];
            map[i].device = entry_rank(&map[i]) == rank ? LYRA_DEVICE_LOCAL(map[i].device) : LYRA_DEVICE_CPU;
        }
        lp->device_map = map;
    }
    int k = 0;
    for (int pass = 0; pass < 2; pass++) { /* max_memory, reserve: this rank's and unranked */
        const lyra_device_bytes *src = pass ? p->reserve : p->max_memory;
        int ns = pass ? p->n_reserve : p->n_max_memory, k0 = k;
        for (int i = 0; src && i < ns; i++) {
            int r = LYRA_DEVICE_RANK(src[i].device);
            if (r >= 0 && r != rank) continue;
            b[k] = src[i];
            b[k++].device = LYRA_DEVICE_LOCAL(src[i].device);
        }
        if (pass) lp->reserve = b + k0, lp->n_reserve = k - k0;
        else lp->max_memory = b + k0, lp->n_max_memory = k - k0;
    }
    return LYRA_OK;
}

int lyra_runtime_ranks(const lyra_llama *a, const lyra_model_params *p, int n_ranks, int *module_rank,
                       lyra_error *err) {
    return lyra_runtime_split(a, p, NULL, n_ranks, module_rank, err);
}

/* 1 when the split follows the ranks' devices: some rank has a GPU with a
 * budget, and p asks for a strategy that fills devices (auto, balanced,
 * balanced_low_0, sequential) without gpu_layers or tensor_split. */
static int split_by_devices(const lyra_model_params *p, const lyra_plan_rank *ranks, int n_ranks) {
    if (!ranks || p->gpu_layers != LYRA_GPU_LAYERS_UNSET || p->n_tensor_split) return 0;
    if (p->device_strategy != LYRA_DEVICE_MAP_AUTO && p->device_strategy != LYRA_DEVICE_MAP_BALANCED &&
        p->device_strategy != LYRA_DEVICE_MAP_BALANCED_LOW_0 && p->device_strategy != LYRA_DEVICE_MAP_SEQUENTIAL)
        return 0;
    for (int r = 0; r < n_ranks; r++)
        for (int d = 0; d < ranks[r].n_devices; d++)
            if (!strcmp(ranks[r].dev[d].kind, "gpu") && ranks[r].dev[d].budget > 0) return 1;
    return 0;
}

int lyra_runtime_split(const lyra_llama *a, const lyra_model_params *p, const lyra_plan_rank *ranks,
                       int n_ranks, int *module_rank, lyra_error *err) {
    int L = a->hp.n_layer, n_mod = lyra_llama_n_modules(a);
    int named = lyra_runtime_named_rank(p);
    if (named >= n_ranks)
        return lyra_err(err, LYRA_ERR_INPUT, "device_map",
                        "a device of rank %d is named, but the run has %d rank%s (mpirun -np N)", named,
                        n_ranks, n_ranks == 1 ? "" : "s");
    if (!map_has_ranks(p) && split_by_devices(p, ranks, n_ranks)) { /* the ranks' devices, fast first */
        lyra_geometry g = lyra_runtime_geometry(a, p);
        lyra_plan_opts o;
        lyra_plan_model pm;
        int rc = plan_opts(p, &g, NULL, &o, err);
        if (!rc) rc = lyra_plan_model_from_llama(a, o.batch, g.kv_type, &pm, err);
        if (rc) return rc;
        rc = lyra_plan_ranks(&pm, ranks, n_ranks, &o, module_rank, err);
        lyra_plan_model_release(&pm);
        if (!rc && p->fallback_across_ranks) rc = lyra_runtime_hand_on(a, p, ranks, n_ranks, module_rank, err);
        return rc;
    }
    if (!map_has_ranks(p)) { /* even shares of consecutive layers */
        if (n_ranks < 1 || n_ranks > L)
            return lyra_err(err, LYRA_ERR_INPUT, "mpi", "%d ranks for %d layers: each rank needs a layer",
                            n_ranks, L);
        for (int i = 0; i < n_mod; i++) {
            int layer;
            lyra_module_kind k = lyra_llama_module_kind(a, i, &layer);
            if (k == LYRA_MODULE_EMBED) module_rank[i] = 0;
            else if (k == LYRA_MODULE_LAYER) module_rank[i] = (int)(((int64_t)layer * n_ranks) / L);
            else module_rank[i] = n_ranks - 1;
        }
        return ranks && p->fallback_across_ranks ? lyra_runtime_hand_on(a, p, ranks, n_ranks, module_rank, err)
                                                 : LYRA_OK;
    }
    /* the map's ranks: the planner resolves its keys (aliases, ranges, the longest
     * key), once per rank: that rank's entries on a CPU without limit, the others on disk */
    lyra_geometry g = lyra_runtime_geometry(a, p);
    lyra_plan_model pm;
    int rc = lyra_plan_model_from_llama(a, g.n_batch < g.n_ctx ? g.n_batch : g.n_ctx, g.kv_type, &pm, err);
    if (rc) return rc;
    lyra_device_map_entry *map = malloc((size_t)p->n_device_map * sizeof *map);
    if (!map) rc = lyra_err(err, LYRA_ERR_OOM, "device_map", "out of memory");
    for (int i = 0; i < n_mod; i++) module_rank[i] = -1;
    for (int r = 0; !rc && r < n_ranks; r++) {
        lyra_plan_device pd[2];
        memset(pd, 0, sizeof pd);
        snprintf(pd[0].id, sizeof pd[0].id, "cpu");
        snprintf(pd[0].kind, sizeof pd[0].kind, "cpu");
        snprintf(pd[0].backend, sizeof pd[0].backend, "cpu");
        pd[0].free = pd[0].total = pd[0].budget = UINT64_MAX / 4;
        lyra_plan_device_disk(&pd[1]);
        for (int i = 0; i < p->n_device_map; i++) {
            map[i] = p->device_map[i];
            map[i].device = entry_rank(&map[i]) == r ? LYRA_DEVICE_CPU : LYRA_DEVICE_DISK;
        }
        lyra_plan_opts o = lyra_plan_default_opts();
        o.strategy = LYRA_PLAN_MAP;
        o.map = map;
        o.n_map = p->n_device_map;
        snprintf(o.map_where, sizeof o.map_where, "%.120s",
                 p->device_map_source && p->device_map_source[0] ? p->device_map_source : "device_map");
        o.ctx = g.n_ctx;
        o.batch = g.n_batch < g.n_ctx ? g.n_batch : g.n_ctx;
        lyra_plan *pl = NULL;
        if ((rc = lyra_plan_make(&pm, pd, 2, &o, &pl, err))) break;
        for (int i = 0; i < n_mod; i++)
            if (!strcmp(pl->dev[pl->module_dev[i]].id, "cpu")) module_rank[i] = r;
        lyra_plan_free(pl);
    }
    free(map);
    lyra_plan_model_release(&pm);
    return rc;
}

int lyra_runtime_cluster(const lyra_llama *a, const lyra_model_params *p, lyra_device *const *dev, int n_dev,
                         int *module_rank, lyra_plan_rank *all, lyra_error *err) {
    int n_ranks = lyra_dist_size(), rank = lyra_dist_rank(), n_mod = lyra_llama_n_modules(a);
    lyra_plan_device pd[LYRA_PLAN_MAX_DEVICES];
    int n = 0;
    for (int i = 0; i < n_dev && n < LYRA_PLAN_MAX_DEVICES - 1; i++) lyra_plan_device_from(dev[i], &pd[n++]);
    lyra_plan_rank mine;
    lyra_plan_notes notes; /* said by each rank's own plan */
    memset(&notes, 0, sizeof notes);
    int rc = lyra_runtime_rank_devices(p, rank, pd, n, &mine, &notes, err);
    /* every rank reaches the collectives, failed or not: a rank that failed
     * sends no devices (n_devices -1) and rank 0 names it */
    if (rc) mine.n_devices = -1;
    lyra_plan_rank *buf = rank == 0 ? (all ? all : malloc((size_t)n_ranks * sizeof *buf)) : NULL;
    if (rank == 0 && !buf) return lyra_err(err, LYRA_ERR_OOM, "mpi", "out of memory"); /* the others time out */
    lyra_error e2;
    int rc2 = lyra_dist_gather(&mine, buf ? (void *)buf : (void *)&mine, sizeof mine, rc ? &e2 : err);
    if (rc2 && !rc) return rc2;
    int32_t status = 0;
    if (rank == 0) {
        for (int r = 1; !rc && r < n_ranks; r++)
            if (buf[r].n_devices < 1 || buf[r].n_devices > LYRA_PLAN_MAX_DEVICES) {
                char where[32];
                snprintf(where, sizeof where, "mpi: rank %d", r);
                rc = lyra_err(err, LYRA_ERR_INPUT, where, "could not report its devices (its budgets)");
            }
        if (!rc) rc = lyra_runtime_split(a, p, buf, n_ranks, module_rank, err);
        status = rc;
        if (buf != all) free(buf);
    }
    if ((rc2 = lyra_dist_bcast(&status, sizeof status, rc ? &e2 : err)) && !rc) return rc2;
    if (!status && (rc2 = lyra_dist_bcast(module_rank, (size_t)n_mod * sizeof *module_rank, err))) return rc2;
    if (status && !rc) {
        lyra_dist_set_failed_together(); /* rank 0's error line says it */
        return lyra_err(err, status, "mpi: rank 0", "could not plan the split over the ranks");
    }
    if (rc && rank > 0) lyra_dist_set_failed_together();
    return rc;
}

int lyra_runtime_last_layer(const lyra_llama *a, int r, const int *module_rank) {
    int n_mod = lyra_llama_n_modules(a), last = -1, layers = 0;
    for (int i = 0; i < n_mod; i++)
        if (module_rank[i] == r) {
            last = i;
            layers += lyra_llama_module_kind(a, i, NULL) == LYRA_MODULE_LAYER;
        }
    return last >= 0 && layers >= 2 && lyra_llama_module_kind(a, last, NULL) == LYRA_MODULE_LAYER ? last : -1;
}

int lyra_runtime_move_last(const lyra_llama *a, int r, int *module_rank, char *moved, size_t cap) {
    int last = lyra_runtime_last_layer(a, r, module_rank);
    if (last < 0) return 0;
    module_rank[last] = r + 1;
    lyra_llama_module_name(a, last, moved, cap);
    return 1;
}

int lyra_runtime_hand_on(const lyra_llama *a, const lyra_model_params *p, const lyra_plan_rank *ranks,
                         int n_ranks, int *module_rank, lyra_error *err) {
    lyra_geometry g = lyra_runtime_geometry(a, p);
    for (int r = 0; r + 1 < n_ranks; r++) {
        for (;;) {
            lyra_plan *pl = NULL;
            lyra_error why;
            int rc = lyra_runtime_plan_share(a, p, &g, &ranks[r], r, module_rank, NULL, &pl, &why);
            lyra_plan_free(pl);
            if (rc != LYRA_ERR_INPUT && rc != LYRA_ERR_OOM) {
                if (rc) *err = why;
                if (rc) return rc;
                break;
            }
            char name[64];
            if (!lyra_runtime_move_last(a, r, module_rank, name, sizeof name)) break; /* its own plan says why */
            LYRA_WARN("fallback across ranks: rank %d cannot hold its share (%s): %s moves to rank %d", r,
                      why.msg, name, r + 1);
        }
    }
    return LYRA_OK;
}
