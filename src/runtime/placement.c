/* placement.c: which devices a model runs on and where its modules go: the
 * simulated GPUs of LYRA_SIM_GPUS (CUDA GPUs plug in here) and the CPU, and
 * the plan (plan/plan.h) made from lyra_model_params' device fields (device
 * map or strategy, max_memory, reserve, gpu_layers, tensor_split). Used by
 * lyra_model_open and by `lyra plan` (which reads metadata only). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "device/cuda.h"
#include "plan/plan.h"
#include "runtime/objects.h"
#include "runtime/placement.h"

int lyra_runtime_devices(const lyra_backend_params *bp, int n_threads, lyra_device **dev,
                         int *n_dev, lyra_error *err) {
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
    if (!set && (rc = lyra_cuda_devices_open(bp->cuda_devices, n_threads, dev, LYRA_MAX_DEVICES - 1,
                                             &n, err)))
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

/* opts' device map from p (device_map_json wins over device_map); *keep
 * holds the JSON the map borrows (json_decref after planning). */
static int map_opts(const lyra_model_params *p, lyra_plan_opts *o, json_t **keep, lyra_error *err) {
    json_error_t je;
    *keep = NULL;
    if (p->device_map_json && p->device_map_json[0]) {
        json_t *v = json_loads(p->device_map_json, JSON_DECODE_ANY, &je);
        if (!v)
            return lyra_err(err, LYRA_ERR_INPUT, "device_map", "invalid JSON: line %d: %s", je.line,
                            je.text);
        *keep = v;
        snprintf(o->map_where, sizeof o->map_where, "device_map");
        return lyra_plan_device_map_from_json(v, "device_map", o, err);
    }
    const char *s = p->device_map;
    if (!s || !s[0]) return LYRA_OK; /* auto */
    if (lyra_plan_is_strategy(s)) return lyra_plan_strategy_parse(s, "device_map", o, err);
    json_t *v = json_load_file(s, JSON_DECODE_ANY, &je);
    if (!v) {
        if (je.line <= 0) return lyra_err(err, LYRA_ERR_INPUT, s, "cannot read device map: %s", je.text);
        return lyra_err(err, LYRA_ERR_INPUT, s, "line %d: invalid JSON: %s", je.line, je.text);
    }
    *keep = v;
    snprintf(o->map_where, sizeof o->map_where, "%.120s", s);
    return lyra_plan_device_map_from_json(v, s, o, err);
}

static int plan_with(const lyra_llama *a, const lyra_model_params *p, lyra_device *const *dev,
                     int n_dev, const char *const *fixed, int32_t n_ctx, lyra_plan **out,
                     lyra_error *err) {
    *out = NULL;
    const lyra_llama_hparams *hp = &a->hp;
    lyra_plan_device pd[LYRA_PLAN_MAX_DEVICES];
    int n = 0, rc;
    for (int i = 0; i < n_dev && n < LYRA_PLAN_MAX_DEVICES - 1; i++) lyra_plan_device_from(dev[i], &pd[n++]);
    lyra_plan_device_disk(&pd[n++]);
    /* budgets */
    lyra_plan_memspec mm, rs;
    memset(&mm, 0, sizeof mm);
    memset(&rs, 0, sizeof rs);
    if (p->max_memory && (rc = lyra_plan_memspec_parse(p->max_memory, "max_memory", &mm, err)))
        return rc;
    if (p->reserve && (rc = lyra_plan_memspec_parse(p->reserve, "reserve", &rs, err))) return rc;
    lyra_plan_notes notes;
    memset(&notes, 0, sizeof notes);
    if ((rc = lyra_plan_budgets(pd, n, &mm, &rs, &notes, err))) return rc;
    if (!fixed)
        for (int i = 0; i < notes.n; i++) LYRA_WARN("%s", notes.line[i]);
    /* options */
    lyra_plan_opts o = lyra_plan_default_opts();
    o.ctx = p->n_ctx > 0 ? p->n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    o.batch = p->n_batch > 0 ? p->n_batch : 512;
    if (o.batch > o.ctx) o.batch = o.ctx; /* as lyra_context_new */
    o.kv_chunk = p->kv_chunk > 0 ? p->kv_chunk : LYRA_KV_CHUNK;
    o.fallback = p->fallback;
    json_t *keep = NULL;
    if (fixed) {
        o.strategy = LYRA_PLAN_FIXED;
        o.fixed = fixed;
        o.ctx = n_ctx;
        if (o.batch > o.ctx) o.batch = o.ctx;
    } else {
        if ((rc = map_opts(p, &o, &keep, err))) goto done;
        if (p->gpu_layers && p->gpu_layers[0] &&
            (rc = lyra_plan_gpu_layers_parse(p->gpu_layers, "gpu_layers", &o.gpu_layers, err)))
            goto done;
        if (p->tensor_split && p->tensor_split[0] &&
            (rc = lyra_plan_split_parse(p->tensor_split, "tensor_split", &o, err)))
            goto done;
    }
    lyra_plan_model pm;
    if ((rc = lyra_plan_model_from_llama(a, o.batch, p->kv_type, &pm, err))) goto done;
    rc = lyra_plan_make(&pm, pd, n, &o, out, err);
    lyra_plan_model_release(&pm);
    if (!rc && !fixed)
        for (int i = 0; i < (*out)->notes.n; i++) LYRA_WARN("%s", (*out)->notes.line[i]);
done:
    json_decref(keep);
    return rc;
}

int lyra_runtime_plan(const lyra_llama *a, const lyra_model_params *p, lyra_device *const *dev,
                      int n_dev, lyra_plan **out, lyra_error *err) {
    return plan_with(a, p, dev, n_dev, NULL, 0, out, err);
}

int lyra_runtime_plan_fixed(const lyra_llama *a, const lyra_model_params *p,
                            lyra_device *const *dev, int n_dev, const char *const *ids,
                            int32_t n_ctx, lyra_plan **out, lyra_error *err) {
    return plan_with(a, p, dev, n_dev, ids, n_ctx, out, err);
}
