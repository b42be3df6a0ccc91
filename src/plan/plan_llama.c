/* plan_llama.c: the planner's view of a loaded model of the Llama family
 * (arch/llama.h): its modules with their tensors, KV bytes per position (and
 * the sliding window of a layer whose cache is a ring) and scratch, computed
 * exactly as the runtime allocates them (lyra_llama_buffers_bytes for the
 * activations, the matmul work of the weights multiplied, rope_freqs.weight
 * as an extra replicated on every device running a layer). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/llama.h"
#include "plan/plan.h"

/* What the builder allocates (plan model's owned). */
typedef struct llama_owned {
    lyra_plan_module *modules;  /* [n_modules] */
    lyra_plan_tensor *tensors;  /* all modules' tensors */
    lyra_plan_tensor extra;     /* rope_freqs.weight */
} llama_owned;

static lyra_plan_tensor tensor_of(const lyra_weight *w, int matmul) {
    lyra_plan_tensor t;
    t.name = w->name;
    t.type = w->type;
    t.cols = w->cols;
    t.rows = w->rows;
    t.matmul = matmul && w->rows > 1;
    return t;
}

int lyra_plan_model_from_llama(const struct lyra_llama *a, int n_batch, int kv_type,
                               lyra_plan_model *out, lyra_error *err) {
    memset(out, 0, sizeof *out);
    if (n_batch <= 0) return lyra_err(err, LYRA_ERR_INPUT, "plan", "batch must be > 0");
    lyra_llama *m = (lyra_llama *)a; /* module_weights takes a mutable model; nothing changes */
    const lyra_llama_hparams *hp = &a->hp;
    int n_mod = lyra_llama_n_modules(a), n_t = 0;
    for (int i = 0; i < n_mod; i++) {
        lyra_weight *w[LYRA_MODULE_MAX_WEIGHTS];
        n_t += lyra_llama_module_weights(m, i, w);
    }
    llama_owned *own = calloc(1, sizeof *own);
    if (own) {
        own->modules = calloc((size_t)n_mod, sizeof *own->modules);
        own->tensors = calloc((size_t)n_t + 1, sizeof *own->tensors);
    }
    if (!own || !own->modules || !own->tensors) {
        if (own) {
            free(own->modules);
            free(own->tensors);
        }
        free(own);
        return lyra_err(err, LYRA_ERR_OOM, "plan", "out of memory");
    }
    size_t base = lyra_llama_buffers_bytes(a, n_batch, 0, 0);
    size_t layer_scr = lyra_llama_buffers_bytes(a, n_batch, 1, 0) - base;
    size_t head_scr = lyra_llama_buffers_bytes(a, n_batch, 0, 1) - base;
    uint64_t kv_pos = (uint64_t)2 * (uint64_t)hp->n_head_kv * (uint64_t)hp->head_dim *
                      (kv_type == LYRA_KV_F32 ? 4u : 2u);
    int k = 0;
    for (int i = 0; i < n_mod; i++) {
        lyra_plan_module *pm = &own->modules[i];
        int layer;
        lyra_module_kind kind = lyra_llama_module_kind(a, i, &layer);
        lyra_llama_module_name(a, i, pm->name, sizeof pm->name);
        pm->kind = kind == LYRA_MODULE_EMBED   ? LYRA_PLAN_EMBED
                   : kind == LYRA_MODULE_LAYER ? LYRA_PLAN_LAYER
                   : kind == LYRA_MODULE_NORM  ? LYRA_PLAN_NORM
                                               : LYRA_PLAN_HEAD;
        pm->layer = kind == LYRA_MODULE_LAYER ? layer : -1;
        pm->tensors = own->tensors + k;
        int mm = kind == LYRA_MODULE_LAYER || kind == LYRA_MODULE_HEAD;
        lyra_weight *w[LYRA_MODULE_MAX_WEIGHTS];
        int n = lyra_llama_module_weights(m, i, w);
        for (int j = 0; j < n; j++) {
            if (a->has_rope_freqs && w[j] == &a->rope_freqs) continue; /* an extra */
            own->tensors[k++] = tensor_of(w[j], mm);
            pm->n_tensors++;
        }
        pm->kv_per_pos = kind == LYRA_MODULE_LAYER ? kv_pos : 0;
        pm->kv_window = kind == LYRA_MODULE_LAYER ? lyra_llama_layer_window(a, layer) : 0;
        pm->scratch = kind == LYRA_MODULE_LAYER  ? layer_scr
                      : kind == LYRA_MODULE_HEAD ? head_scr
                                                 : 0;
    }
    if (a->has_rope_freqs) {
        own->extra = tensor_of(&a->rope_freqs, 0);
        out->extras = &own->extra;
        out->n_extras = 1;
    }
    out->arch = a->desc.name; /* the alias table for maps (phi2: model.final_layernorm) */
    out->modules = own->modules;
    out->n_modules = n_mod;
    out->tied_head = a->tied;
    out->scratch_base = base;
    out->owned = own;
    return LYRA_OK;
}

void lyra_plan_model_release(lyra_plan_model *m) {
    if (!m) return;
    llama_owned *own = m->owned;
    if (own) {
        free(own->modules);
        free(own->tensors);
        free(own);
    }
    memset(m, 0, sizeof *m);
}
