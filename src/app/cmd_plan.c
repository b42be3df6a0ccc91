/* cmd_plan.c: `lyra plan`: where a model's modules would go under the device
 * flags, with the exact bytes per device, from the model's metadata alone
 * (no weight is read), as a table or as JSON (docs/sharding.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "arch/llama.h"
#include "config/rankdev.h"
#include "dist/dist.h"
#include "format/gguf.h"
#include "format/hf_model.h"
#include "plan/plan.h"
#include "runtime/runtime.h"

const char cmd_plan_usage[] =
    "usage: lyra plan -m MODEL [--device-map STRATEGY|FILE.json]\n"
    "                 [--max-memory 0=6GiB,cpu=16GiB] [--reserve LIST]\n"
    "                 [--gpu-layers N] [--tensor-split P,Q] [--ctx N]\n"
    "                 [--batch N] [--kv-type f16|f32] [--json] [--probe]\n"
    "                 [--load-in-8bit | --load-in-4bit] [--parallel N]\n"
    "                 [--ranks N [--rank-devices FILE]]\n"
    "                 [--model-config FILE | --no-config]\n"
    "\n"
    "Print where each module of MODEL would run and the bytes every device would\n"
    "hold: free memory, reserve, budget, planned weights, KV cache (for --ctx\n"
    "positions) and scratch (for --batch tokens), and its modules. Reads the\n"
    "model's metadata only (no weights). The same inputs give the same plan.\n"
    "\n"
    "  -m, --model MODEL      GGUF model file (required unless the config file\n"
    "                         has model_id)\n"
    "  -c, --ctx N            context the KV cache is planned for\n"
    "                         (default: min(model's, 4096); 0 = that too)\n"
    "  -b, --batch N          tokens per forward pass (default 512)\n"
    "  --kv-type f16|f32      KV cache element type (default f16)\n"
    "  --json                 one JSON object: {\"ctx\",\"batch\",\"devices\":[...],\n"
    "                         \"map\":{module: device}} (bytes as integers)\n"
    "  --probe                find the map that loads now: the fallback's search\n"
    "                         with real allocations on the devices (no weight is\n"
    "                         read, nothing stays allocated); prints the --json\n"
    "                         format with \"probe\": true and the fallback steps\n"
    "  --ranks N              also print which modules each of N MPI ranks would\n"
    "                         run (`mpirun -np N`, docs/distributed.md): lines\n"
    "                         `rank R  MODULES` (--json: \"ranks\":{module: R});\n"
    "                         under mpirun every rank reports its devices and\n"
    "                         rank 0 prints the whole map: each rank's plan, then\n"
    "                         the rank lines (--json: \"ranks\", \"map\":{module:\n"
    "                         \"ID@RANK\"}, \"plans\":[each rank's plan])\n"
    "  --rank-devices FILE    plan for the cluster FILE describes, without MPI, as\n"
    "                         mpirun with those devices would: {\"ranks\":[{\"gpus\":\n"
    "                         [\"24GiB\",...],\"cpu\":\"64GiB\",\"disk\":\"1TB\"},...]}\n"
    "                         (docs/distributed.md); --max-memory/--reserve apply\n"
    "  --load-in-8bit         plan F32/F16/BF16 weights as Q8_0 (quantized on load)\n"
    "  --load-in-4bit         plan F32/F16/BF16 weights as 4-bit\n"
    "  --dtype D              Hugging Face folders: weights in memory as auto (as\n"
    "                         stored), float32, float16 or bfloat16 (docs/hf.md)\n"
    "  --revision REV         Hugging Face cache: the branch, tag or commit of\n"
    "                         org/name (default refs/main; config: revision)\n"
    "  --parallel N, -np N    sequences, each with a KV cache of --ctx positions\n"
    "                         (lyra serve --parallel N; default 1)\n"
    APP_CONFIG_USAGE
    APP_DEVFLAGS_USAGE
    "  -q, -v                 quieter / more verbose stderr\n";

/* --probe: open the model as a probe (the load's search with real
 * allocations, no weights read, nothing kept) and print the map it found. */
static int run_probe(const char *model, lyra_model_params *mp, lyra_error *err) {
    lyra_model *m = NULL;
    mp->probe = 1;
    int rc = lyra_model_open(model, mp, &m, err);
    if (rc) return rc;
    json_t *j = lyra_plan_json(m->plan);
    json_t *steps = json_array();
    rc = j && steps ? LYRA_OK : LYRA_ERR_OOM;
    for (int i = 0; !rc && i < lyra_model_fallback_steps(m); i++) {
        lyra_fallback_step s;
        lyra_model_fallback_step(m, i, &s);
        json_t *o = json_pack("{s:s,s:s,s:I,s:I,s:s,s:i,s:i}", "phase", "load", "device", s.device,
                              "asked", (json_int_t)s.asked, "free", (json_int_t)s.free, "what", s.what,
                              "from", (int)s.from_k, "to", (int)s.to_k);
        if (!o || json_array_append_new(steps, o)) rc = LYRA_ERR_OOM;
    }
    if (!rc && (json_object_set_new(j, "probe", json_true()) ||
                json_object_set_new(j, "fallback", steps)))
        rc = LYRA_ERR_OOM;
    else if (!rc)
        steps = NULL; /* owned by j */
    char *s = rc ? NULL : json_dumps(j, JSON_COMPACT);
    if (!s) rc = lyra_err(err, LYRA_ERR_OOM, "plan", "out of memory");
    else printf("%s\n", s);
    free(s);
    json_decref(steps);
    json_decref(j);
    lyra_model_free(m);
    return rc;
}

static int plan_run(const char *model, int json, int32_t ranks, lyra_model_params *mp,
                    lyra_error *err);
static int plan_cluster(const char *model, int json, int32_t ranks, const char *rank_devices,
                        lyra_model_params *mp, lyra_error *err);

int cmd_plan(int argc, char **argv, lyra_error *err) {
    int json = 0, probe = 0;
    int32_t ranks = 0;
    const char *rank_devices = NULL;
    lyra_model_params mp = lyra_model_default_params();
    lyra_context_params cp = lyra_context_default_params();
    const app_opt opts[] = {
        APP_SWITCH("--json", &json),
        APP_SWITCH("--probe", &probe),
        APP_I32("--parallel", "-np", &mp.n_seq, 1, 256),
        APP_I32("--ranks", NULL, &ranks, 1, 4096),
        APP_STR("--rank-devices", NULL, &rank_devices),
        APP_OPT_END_,
    };
    lyra_config *cfg = NULL; /* owns mp's strings */
    char *model = NULL;
    int rc = args_parse(argc, argv, NULL, opts, APP_CFG_MODEL | APP_CFG_DEVICE | APP_CFG_CONTEXT | APP_CFG_KV,
                        &mp, &cfg, err);
    if (!rc) rc = app_config_model(cfg, &model, err);
    if (!rc) rc = app_config_apply(cfg, &mp, &cp, NULL, NULL, err);
    if (!rc && probe && (ranks || rank_devices || lyra_dist_size() > 1))
        rc = lyra_err(err, LYRA_ERR_INPUT, "--ranks", "not with --probe");
    if (!rc && rank_devices && lyra_dist_size() > 1)
        rc = lyra_err(err, LYRA_ERR_INPUT, "--rank-devices", "not under mpirun (the ranks report their devices)");
    if (!rc && lyra_dist_size() > 1 && ranks && ranks != lyra_dist_size())
        rc = lyra_err(err, LYRA_ERR_INPUT, "--ranks", "%d, but mpirun started %d ranks", (int)ranks,
                      lyra_dist_size());
    if (rc && lyra_dist_size() > 1) lyra_dist_set_failed_together(); /* every rank alike: rank 0 says it */
    if (!rc) {
        mp.n_threads = 1; /* nothing computes */
        if (probe) rc = run_probe(model, &mp, err);
        else if (rank_devices || lyra_dist_size() > 1)
            rc = plan_cluster(model, json, ranks, rank_devices, &mp, err);
        else rc = plan_run(model, json, ranks, &mp, err);
    }
    free(model);
    lyra_config_free(cfg);
    return rc;
}

/* "rank R  MODULES" lines (layers as ranges) or JSON {module: R} for the
 * split mr (NULL: lyra_runtime_ranks). */
static int print_split(const lyra_llama *a, const lyra_model_params *mp, int32_t ranks, const int *given,
                       json_t *j, lyra_error *err) {
    int n_mod = lyra_llama_n_modules(a);
    int *mr = malloc((size_t)n_mod * sizeof *mr);
    if (!mr) return lyra_err(err, LYRA_ERR_OOM, "plan", "out of memory");
    int rc = LYRA_OK;
    if (given) memcpy(mr, given, (size_t)n_mod * sizeof *mr);
    else rc = lyra_runtime_ranks(a, mp, ranks, mr, err);
    json_t *o = j ? json_object() : NULL;
    for (int r = 0; !rc && r < ranks; r++) {
        if (!j) printf("rank %-3d", r);
        for (int i = 0; i < n_mod; i++) {
            if (mr[i] != r) continue;
            char name[64];
            lyra_llama_module_name(a, i, name, sizeof name);
            if (j) {
                json_object_set_new(o, name, json_integer(r));
                continue;
            }
            int layer, k = i;
            if (lyra_llama_module_kind(a, i, &layer) == LYRA_MODULE_LAYER) {
                while (k + 1 < n_mod && mr[k + 1] == r &&
                       lyra_llama_module_kind(a, k + 1, NULL) == LYRA_MODULE_LAYER)
                    k++;
                if (k > i) snprintf(name, sizeof name, "model.layers.%d-%d", layer, layer + k - i);
            }
            printf(" %s", name);
            i = k;
        }
        if (!j) printf("\n");
    }
    if (j && !rc) json_object_set_new(j, "ranks", o);
    else json_decref(o);
    free(mr);
    return rc;
}

/* --ranks: the even split or the map's. */
static int print_ranks(const lyra_llama *a, const lyra_model_params *mp, int32_t ranks, json_t *j,
                       lyra_error *err) {
    return print_split(a, mp, ranks, NULL, j, err);
}

/* The plan from the model's metadata alone, as a table or JSON. */
static int plan_run(const char *model, int json, int32_t ranks, lyra_model_params *mp,
                    lyra_error *err) {
    int rc;
    lyra_gguf *g = NULL;
    lyra_llama *arch = NULL;
    lyra_device *dev[LYRA_MAX_DEVICES];
    int n_dev = 0;
    lyra_plan *plan = NULL;
    rc = lyra_hf_open_path(model, (lyra_hf_dtype)mp->dtype, &g, err); /* a GGUF or a folder */
    if (!rc) rc = lyra_llama_load(g, &arch, err);
    if (!rc) rc = lyra_runtime_devices(NULL, 1, lyra_runtime_wants_gpu(mp), dev, &n_dev, err);
    lyra_geometry geom = arch ? lyra_runtime_geometry(arch, mp) : (lyra_geometry){0, 0, 0, 0, 0};
    if (!rc) rc = lyra_runtime_plan(arch, mp, &geom, dev, n_dev, &plan, err);
    if (!rc && ranks > arch->hp.n_layer)
        rc = lyra_err(err, LYRA_ERR_INPUT, "--ranks", "%d ranks for %d layers: each rank needs a layer",
                      (int)ranks, (int)arch->hp.n_layer);
    if (!rc && json && ranks) { /* the plan's JSON with "ranks" */
        json_t *j = lyra_plan_json(plan);
        if (!j) rc = lyra_err(err, LYRA_ERR_OOM, "plan", "out of memory");
        if (!rc) rc = print_ranks(arch, mp, ranks, j, err);
        char *s = rc ? NULL : json_dumps(j, JSON_COMPACT);
        if (!rc && !s) rc = lyra_err(err, LYRA_ERR_OOM, "plan", "out of memory");
        if (s) printf("%s\n", s);
        free(s);
        json_decref(j);
    } else if (!rc) {
        char *s = json ? lyra_plan_json_string(plan) : lyra_plan_table(plan);
        if (!s) rc = lyra_err(err, LYRA_ERR_OOM, "plan", "out of memory");
        else fputs(s, stdout);
        free(s);
        if (s && ranks) {
            printf("ranks: %d (mpirun -np %d; each rank plans its modules on its own devices)\n",
                   (int)ranks, (int)ranks);
            rc = print_ranks(arch, mp, ranks, NULL, err);
        }
    }
    lyra_plan_free(plan);
    for (int i = 0; i < n_dev; i++) lyra_device_free(dev[i]);
    lyra_llama_free(arch);
    lyra_gguf_close(g);
    return rc;
}

/* The devices of rank r of the file (as lyra_plan_device_from would report
 * them), budgets as that rank would set them. */
static int file_rank(const lyra_model_params *mp, const lyra_rankdev_rank *fr, int r, lyra_plan_rank *out,
                     lyra_error *err) {
    lyra_plan_device pd[LYRA_PLAN_MAX_DEVICES];
    const lyra_rankdev_mem *mem[LYRA_PLAN_MAX_DEVICES];
    int n = 0;
    for (int i = 0; i < fr->n_gpus && n < LYRA_PLAN_MAX_GPUS; i++, n++) {
        memset(&pd[n], 0, sizeof pd[n]);
        snprintf(pd[n].id, sizeof pd[n].id, "%d", i);
        snprintf(pd[n].kind, sizeof pd[n].kind, "gpu");
        snprintf(pd[n].backend, sizeof pd[n].backend, "%s", fr->gpu[i].sim ? "sim" : "cuda");
        pd[n].total = fr->gpu[i].memory;
        pd[n].free = fr->gpu[i].free;
        mem[n] = &fr->gpu[i];
    }
    memset(&pd[n], 0, sizeof pd[n]);
    snprintf(pd[n].id, sizeof pd[n].id, "cpu");
    snprintf(pd[n].kind, sizeof pd[n].kind, "cpu");
    snprintf(pd[n].backend, sizeof pd[n].backend, "cpu");
    pd[n].total = fr->cpu.memory;
    pd[n].free = fr->cpu.free;
    mem[n++] = &fr->cpu;
    lyra_plan_notes notes;
    memset(&notes, 0, sizeof notes);
    int rc = lyra_runtime_rank_devices(mp, r, pd, n, out, &notes, err);
    for (int i = 0; !rc && i < n; i++) /* the file's budget: that device's max_memory, unless given */
        if (mem[i]->has_budget && !out->dev[i].has_max) {
            out->dev[i].budget = mem[i]->budget;
            out->dev[i].reserve = 0;
            out->dev[i].has_max = 1;
        }
    return rc;
}

/* The whole map over the ranks: under mpirun every rank reports its devices
 * (rank 0 prints), else the devices of the file rank_devices. */
static int plan_cluster(const char *model, int json, int32_t ranks, const char *rank_devices,
                        lyra_model_params *mp, lyra_error *err) {
    lyra_gguf *g = NULL;
    lyra_llama *arch = NULL;
    lyra_device *dev[LYRA_MAX_DEVICES];
    int n_dev = 0, n_ranks = lyra_dist_size(), *mr = NULL;
    lyra_rankdev rd = {0, NULL};
    lyra_plan_rank *all = NULL;
    json_t *j = NULL, *map = NULL, *plans = NULL;
    int rc = lyra_hf_open_path(model, (lyra_hf_dtype)mp->dtype, &g, err);
    if (!rc) rc = lyra_llama_load(g, &arch, err);
    if (!rc && rank_devices) {
        if (!(rc = lyra_rankdev_load(rank_devices, &rd, err))) n_ranks = rd.n_ranks;
        if (!rc && ranks && ranks != rd.n_ranks)
            rc = lyra_err(err, LYRA_ERR_INPUT, "--ranks", "%d, but %s describes %d rank%s", (int)ranks,
                          rank_devices, rd.n_ranks, rd.n_ranks == 1 ? "" : "s");
    }
    int n_mod = arch ? lyra_llama_n_modules(arch) : 0;
    if (!rc && (!(mr = calloc((size_t)n_mod, sizeof *mr)) || !(all = calloc((size_t)n_ranks, sizeof *all))))
        rc = lyra_err(err, LYRA_ERR_OOM, "plan", "out of memory");
    if (!rc && rank_devices) {
        for (int r = 0; !rc && r < n_ranks; r++) rc = file_rank(mp, &rd.rank[r], r, &all[r], err);
        if (!rc) rc = lyra_runtime_split(arch, mp, all, n_ranks, mr, err);
    } else if (!rc) { /* mpirun: every rank reports, rank 0 splits */
        rc = lyra_runtime_devices(NULL, 1, lyra_runtime_wants_gpu(mp), dev, &n_dev, err);
        if (!rc) rc = lyra_runtime_cluster(arch, mp, dev, n_dev, mr, all, err);
        if (!rc && lyra_dist_rank() > 0) goto done;
    }
    lyra_geometry geom = arch ? lyra_runtime_geometry(arch, mp) : (lyra_geometry){0, 0, 0, 0, 0};
    if (!rc && json) {
        j = json_object();
        map = json_object();
        plans = json_array();
        if (!j || !map || !plans) rc = lyra_err(err, LYRA_ERR_OOM, "plan", "out of memory");
    }
    for (int r = 0; !rc && r < n_ranks; r++) {
        lyra_plan *pl = NULL;
        if ((rc = lyra_runtime_plan_share(arch, mp, &geom, &all[r], r, mr, NULL, &pl, err))) break;
        for (int i = 0; i < n_mod; i++)
            if (mr[i] != r) pl->module_dev[i] = -1; /* another rank's: not in this rank's table */
        if (json) {
            if (!r) {
                json_object_set_new(j, "ctx", json_integer(pl->ctx));
                json_object_set_new(j, "batch", json_integer(pl->batch));
            }
            for (int i = 0; i < n_mod; i++) {
                if (mr[i] != r) continue;
                char name[64], id[40];
                lyra_llama_module_name(arch, i, name, sizeof name);
                snprintf(id, sizeof id, "%s@%d", pl->dev[pl->module_dev[i]].id, r);
                json_object_set_new(map, name, json_string(id));
            }
            json_t *pj = lyra_plan_json(pl);
            if (!pj || json_array_append_new(plans, pj)) rc = lyra_err(err, LYRA_ERR_OOM, "plan", "out of memory");
        } else {
            char *s = lyra_plan_table(pl);
            if (!s) rc = lyra_err(err, LYRA_ERR_OOM, "plan", "out of memory");
            else printf("rank %d of %d\n%s", r, n_ranks, s);
            free(s);
        }
        lyra_plan_free(pl);
    }
    if (!rc && !json) {
        printf("ranks: %d (%s)\n", n_ranks, rank_devices ? rank_devices : "mpirun: every rank's devices");
        rc = print_split(arch, mp, n_ranks, mr, NULL, err);
    }
    if (!rc && json) rc = print_split(arch, mp, n_ranks, mr, j, err);
    if (!rc && json) {
        json_object_set_new(j, "map", map);
        json_object_set_new(j, "plans", plans);
        map = plans = NULL;
        char *s = json_dumps(j, JSON_COMPACT);
        if (!s) rc = lyra_err(err, LYRA_ERR_OOM, "plan", "out of memory");
        else printf("%s\n", s);
        free(s);
    }
done:
    json_decref(j);
    json_decref(map);
    json_decref(plans);
    free(all);
    free(mr);
    lyra_rankdev_free(&rd);
    for (int i = 0; i < n_dev; i++) lyra_device_free(dev[i]);
    lyra_llama_free(arch);
    lyra_gguf_close(g);
    return rc;
}
