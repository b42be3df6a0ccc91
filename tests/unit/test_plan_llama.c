/* test_plan_llama.c: the planner's accounting of a real model against what
 * the runtime really allocates. stories260K and babyllama105 (../shared) are
 * opened, a context is filled to its last position, and the CPU device's
 * weights / KV / scratch bytes (lyra_context_device_usage) must equal the
 * plan's exactly; the device's peak (allocations + mapped weights) must lie
 * within [98%, 100%] of the planned total (the sharding issue's criterion).
 * Then the same model is planned over simulated GPUs with every strategy
 * (a sanity check that the llama module list plans: totals add up). */
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "plan/plan.h"
#include "runtime/runtime.h"
#include "testutil.h"

static void check_model(const char *rel, int32_t n_ctx, int32_t n_batch, lyra_kv_type kvt) {
    const char *path = test_shared_path(rel);
    lyra_error err;
    lyra_model *m = NULL;
    lyra_model_params mp = lyra_model_default_params(); /* planned as the context will run */
    mp.n_ctx = n_ctx;
    mp.n_batch = n_batch;
    mp.kv_type = (int)kvt;
    int rc = lyra_model_open(path, &mp, &m, &err);
    CHECK(rc == LYRA_OK, "%s: %s", rel, err.msg);
    if (rc) return;
    lyra_context_params cp = lyra_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_threads = 1;
    cp.kv_type = kvt;
    lyra_context *c = NULL;
    rc = lyra_context_new(m, &cp, &c, &err);
    CHECK(rc == LYRA_OK, "%s: context: %s", rel, err.msg);
    if (rc) {
        lyra_model_free(m);
        return;
    }
    /* fill the whole context with arbitrary tokens */
    int32_t n_vocab = lyra_model_n_vocab(m);
    int32_t *tok = malloc((size_t)n_ctx * sizeof *tok);
    lyra_rng r;
    lyra_rng_seed(&r, 7);
    for (int32_t i = 0; i < n_ctx; i++) tok[i] = (int32_t)lyra_rng_below(&r, (uint64_t)n_vocab);
    rc = lyra_eval(c, tok, n_ctx, 0, &err);
    CHECK(rc == LYRA_OK, "%s: eval: %s", rel, err.msg);
    free(tok);
    lyra_device_usage u;
    CHECK(lyra_context_n_devices(c) == 1 && lyra_context_device_usage(c, 0, &u) == LYRA_OK,
          "usage");

    /* the plan: everything on the CPU, the runtime's batch and KV chunks */
    lyra_plan_model pm;
    rc = lyra_plan_model_from_llama(m->arch, c->n_batch, (int)kvt, &pm, &err);
    CHECK(rc == LYRA_OK, "from_llama: %s", err.msg);
    if (rc) goto out;
    CHECK(pm.n_modules == lyra_model_n_layer(m) + 3 && !strcmp(pm.modules[0].name, "model.embed_tokens") &&
              !strcmp(pm.modules[pm.n_modules - 1].name, "lm_head"), "modules");
    lyra_plan_device cpu;
    lyra_plan_device_from(m->dev[0], &cpu);
    cpu.budget = (uint64_t)1 << 40;
    lyra_plan_opts o = lyra_plan_default_opts();
    o.strategy = LYRA_PLAN_CPU;
    o.ctx = c->n_ctx;
    o.batch = c->n_batch;
    o.kv_chunk = LYRA_KV_CHUNK;
    lyra_plan *p = NULL;
    rc = lyra_plan_make(&pm, &cpu, 1, &o, &p, &err);
    CHECK(rc == LYRA_OK, "plan: %s", err.msg);
    if (!rc) {
        const lyra_plan_usage *pu = &p->use[lyra_plan_device_index(p, "cpu")];
        CHECK(pu->weights == u.weights, "%s: weights planned %llu, runtime %llu", rel,
              (unsigned long long)pu->weights, (unsigned long long)u.weights);
        CHECK(pu->kv == u.kv, "%s: kv planned %llu, runtime %llu", rel, (unsigned long long)pu->kv,
              (unsigned long long)u.kv);
        CHECK(pu->scratch == u.scratch, "%s: scratch planned %llu, runtime %llu", rel,
              (unsigned long long)pu->scratch, (unsigned long long)u.scratch);
        const lyra_device *d = m->dev[0];
        uint64_t peak = d->stats.peak + d->stats.mapped;
        CHECK(peak <= pu->total && peak * 100 >= pu->total * 98, "%s: peak %llu vs planned %llu",
              rel, (unsigned long long)peak, (unsigned long long)pu->total);
        printf("%s ctx %d batch %d kv %s: weights %llu kv %llu scratch %llu, peak %llu of %llu\n",
               rel, (int)c->n_ctx, (int)c->n_batch, kvt == LYRA_KV_F32 ? "f32" : "f16",
               (unsigned long long)pu->weights, (unsigned long long)pu->kv,
               (unsigned long long)pu->scratch, (unsigned long long)peak,
               (unsigned long long)pu->total);
        lyra_plan_free(p);
    }
    /* every strategy over two simulated GPUs that cannot hold it all */
    uint64_t total = 0;
    lyra_plan_device dv[3];
    {
        lyra_plan *pc = NULL;
        lyra_plan_make(&pm, &cpu, 1, &o, &pc, &err);
        total = pc ? pc->use[0].total : 0;
        lyra_plan_free(pc);
    }
    for (int i = 0; i < 2; i++) {
        memset(&dv[i], 0, sizeof dv[i]);
        snprintf(dv[i].id, sizeof dv[i].id, "%d", i);
        strcpy(dv[i].kind, "gpu");
        strcpy(dv[i].backend, "sim");
        dv[i].free = dv[i].total = dv[i].budget = total / (i ? 3 : 2);
    }
    dv[2] = cpu;
    const lyra_plan_strategy st[] = {LYRA_PLAN_AUTO, LYRA_PLAN_BALANCED_LOW_0, LYRA_PLAN_SEQUENTIAL};
    for (int k = 0; k < 3; k++) {
        o.strategy = st[k];
        p = NULL;
        rc = lyra_plan_make(&pm, dv, 3, &o, &p, &err);
        CHECK(rc == LYRA_OK, "strategy %d: %s", (int)st[k], err.msg);
        if (rc) continue;
        int on_gpu = 0;
        for (int i = 0; i < p->n_modules; i++) on_gpu += p->module_dev[i] < 2;
        CHECK(on_gpu > 0 && on_gpu < p->n_modules, "strategy %d: some modules on GPUs (%d)",
              (int)st[k], on_gpu);
        for (int d = 0; d < p->n_devices; d++)
            CHECK(p->use[d].total <= p->dev[d].budget || !strcmp(p->dev[d].kind, "disk"),
                  "within budget");
        lyra_plan_free(p);
    }
    lyra_plan_model_release(&pm);
out:
    lyra_context_free(c);
    lyra_model_free(m);
}

int main(void) {
    check_model("models/stories260K.gguf", 300, 64, LYRA_KV_F16);
    check_model("models/stories260K.gguf", 512, 512, LYRA_KV_F32);
    check_model("models/babyllama105.gguf", 256, 7, LYRA_KV_F16);
    return test_done();
}
