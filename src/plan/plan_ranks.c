/* plan_ranks.c: the split of a model over MPI ranks from every rank's
 * devices (plan.h lyra_plan_ranks, docs/distributed.md "How the model is
 * split"): each rank one consecutive run of modules, the ranks' GPUs filled
 * first (balanced over all of them, or rank by rank for sequential), then
 * the ranks' CPUs, then the last rank's disk. A share fits a rank when the
 * planner itself (lyra_plan_make, the other ranks' modules costing nothing)
 * puts it on the allowed devices under the scaled budgets. */
#include <stdlib.h>
#include <string.h>

#include "plan/plan.h"

#define ONE ((uint64_t)1 << 16) /* budget fractions, as plan.c's balanced search */

/* floor(a * k / ONE) for k <= ONE, without overflow. */
static uint64_t scale(uint64_t a, uint64_t k) { return (a >> 16) * k + (((a & 0xffff) * k) >> 16); }

typedef struct S {
    const lyra_plan_model *m;
    lyra_plan_module *mods;     /* [n] the model's modules, others' zeroed per check */
    const lyra_plan_rank *ranks;
    int n_ranks, n;
    const lyra_plan_opts *o;
    int *first_layer_after;     /* [n + 1] layers in modules [i, n) */
} S;

enum { TIER_GPU = 0, TIER_CPU = 1, TIER_DISK = 2 };

/* 1 when modules [s, e) fit rank r's devices: tier GPU: on its GPUs with
 * budgets scaled by k; tier CPU: GPUs full, the CPU scaled by k; tier DISK:
 * anywhere (the last rank's overflow). */
static int share_fits(S *x, int r, int s, int e, int tier, uint64_t k) {
    const lyra_plan_rank *rd = &x->ranks[r];
    lyra_plan_device dv[LYRA_PLAN_MAX_DEVICES];
    int nd = rd->n_devices < LYRA_PLAN_MAX_DEVICES ? rd->n_devices : LYRA_PLAN_MAX_DEVICES;
    for (int d = 0; d < nd; d++) {
        dv[d] = rd->dev[d];
        if (tier == TIER_GPU && !strcmp(dv[d].kind, "gpu")) dv[d].budget = scale(dv[d].budget, k);
        if (tier == TIER_CPU && !strcmp(dv[d].kind, "cpu")) dv[d].budget = scale(dv[d].budget, k);
    }
    for (int i = 0; i < x->n; i++) {
        x->mods[i] = x->m->modules[i];
        if (i >= s && i < e) continue;
        x->mods[i].n_tensors = 0;
        x->mods[i].kv_per_pos = 0;
        x->mods[i].scratch = 0;
    }
    lyra_plan_model mm = *x->m;
    mm.modules = x->mods;
    lyra_plan *pl = NULL;
    lyra_error e2;
    if (lyra_plan_make(&mm, dv, nd, x->o, &pl, &e2)) return 0;
    int ok = 1;
    for (int i = s; i < e && ok; i++) {
        const char *kind = pl->dev[pl->module_dev[i]].kind;
        if (tier == TIER_GPU) ok = !strcmp(kind, "gpu");
        else if (tier == TIER_CPU) ok = strcmp(kind, "disk") != 0;
    }
    lyra_plan_free(pl);
    return ok;
}

/* Layers among modules [s, e). */
static int layers_in(const S *x, int s, int e) {
    return x->first_layer_after[s] - x->first_layer_after[e];
}

/* Consecutive shares at fill level lam (balanced: every rank's fraction is
 * lam, lam <= ONE; sequential: rank r's is clamp(lam - r * ONE, 0, ONE)):
 * each rank takes the longest run that fits, leaving a layer for every later
 * rank and taking at least one. 1 when every module is placed (mr set). */
static int pack(S *x, int tier, uint64_t lam, int seq, int *mr) {
    int s = 0;
    for (int r = 0; r < x->n_ranks; r++) {
        uint64_t k = lam;
        if (seq) {
            uint64_t lo = (uint64_t)r * ONE;
            k = lam <= lo ? 0 : lam - lo >= ONE ? ONE : lam - lo;
        }
        int later = x->n_ranks - 1 - r, e;
        if (!later) {
            e = x->n;
            if (!layers_in(x, s, e) || !share_fits(x, r, s, e, tier, k)) return 0;
        } else {
            e = s;
            while (e < x->n && layers_in(x, e + 1, x->n) >= later && share_fits(x, r, s, e + 1, tier, k)) e++;
            if (!layers_in(x, s, e)) return 0;
        }
        for (int i = s; i < e; i++) mr[i] = r;
        s = e;
    }
    return 1;
}

int lyra_plan_ranks(const lyra_plan_model *model, const lyra_plan_rank *ranks, int n_ranks,
                    const lyra_plan_opts *opts, int *module_rank, lyra_error *err) {
    const int n = model->n_modules;
    int layers = 0;
    for (int i = 0; i < n; i++) layers += model->modules[i].kind == LYRA_PLAN_LAYER;
    if (n_ranks < 1 || n_ranks > layers)
        return lyra_err(err, LYRA_ERR_INPUT, "mpi", "%d ranks for %d layers: each rank needs a layer",
                        n_ranks, layers);
    S x = {model, calloc((size_t)n, sizeof *x.mods), ranks, n_ranks, n, opts,
           calloc((size_t)n + 1, sizeof *x.first_layer_after)};
    int *mr = malloc((size_t)n * sizeof *mr);
    int rc = LYRA_OK;
    if (!x.mods || !x.first_layer_after || !mr) {
        rc = lyra_err(err, LYRA_ERR_OOM, "plan", "out of memory");
        goto done;
    }
    for (int i = n - 1; i >= 0; i--)
        x.first_layer_after[i] = x.first_layer_after[i + 1] + (model->modules[i].kind == LYRA_PLAN_LAYER);
    int seq = opts && opts->strategy == LYRA_PLAN_SEQUENTIAL;
    uint64_t top = seq ? (uint64_t)n_ranks * ONE : ONE;
    int done = 0;
    for (int tier = TIER_GPU; tier <= TIER_CPU && !done; tier++) {
        if (!pack(&x, tier, top, seq, mr)) continue;
        uint64_t lo = 0, hi = top; /* hi packs */
        while (hi - lo > 1) {
            uint64_t mid = lo + (hi - lo) / 2;
            if (pack(&x, tier, mid, seq, mr)) hi = mid;
            else lo = mid;
        }
        pack(&x, tier, hi, seq, mr);
        done = 1;
    }
    if (!done) { /* every rank full on its GPUs and CPU, the rest on the last rank's disk */
        int s = 0;
        for (int r = 0; r < n_ranks; r++) {
            int later = n_ranks - 1 - r, e = s;
            if (!later) e = n;
            else
                while (e < n && layers_in(&x, e + 1, n) >= later && share_fits(&x, r, s, e + 1, TIER_CPU, ONE)) e++;
            if (!layers_in(&x, s, e) && later)
                while (e < n && !layers_in(&x, s, e)) e++; /* at least a layer: the rest to disk */
            for (int i = s; i < e; i++) mr[i] = r;
            s = e;
        }
    }
    memcpy(module_rank, mr, (size_t)n * sizeof *mr);
done:
    free(x.mods);
    free(x.first_layer_after);
    free(mr);
    return rc;
}
