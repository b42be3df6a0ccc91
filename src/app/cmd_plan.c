/* cmd_plan.c: `lyra plan`: where a model's modules would go under the device
 * flags, with the exact bytes per device, from the model's metadata alone
 * (no weight is read), as a table or as JSON (docs/sharding.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "arch/llama.h"
#include "format/gguf.h"
#include "plan/plan.h"
#include "runtime/runtime.h"

const char cmd_plan_usage[] =
    "usage: lyra plan -m MODEL [--device-map STRATEGY|FILE.json]\n"
    "                 [--max-memory 0=6GiB,cpu=16GiB] [--reserve LIST]\n"
    "                 [--gpu-layers N] [--tensor-split P,Q] [--ctx N]\n"
    "                 [--batch N] [--kv-type f16|f32] [--json]\n"
    "\n"
    "Print where each module of MODEL would run and the bytes every device would\n"
    "hold: free memory, reserve, budget, planned weights, KV cache (for --ctx\n"
    "positions) and scratch (for --batch tokens), and its modules. Reads the\n"
    "model's metadata only (no weights). The same inputs give the same plan.\n"
    "\n"
    "  -m, --model MODEL      GGUF model file (required)\n"
    "  -c, --ctx N            context the KV cache is planned for\n"
    "                         (default: min(model's, 4096))\n"
    "  -b, --batch N          tokens per forward pass (default 512)\n"
    "  --kv-type f16|f32      KV cache element type (default f16)\n"
    "  --json                 one JSON object: {\"ctx\",\"batch\",\"devices\":[...],\n"
    "                         \"map\":{module: device}} (bytes as integers)\n"
    APP_DEVFLAGS_USAGE
    "  -q, -v                 quieter / more verbose stderr\n";

int cmd_plan(int argc, char **argv, lyra_error *err) {
    const char *model = NULL;
    int json = 0, rc = 0;
    lyra_model_params mp = lyra_model_default_params();
    lyra_context_params cp = lyra_context_default_params();
    app_args a;
    args_init(&a, argc, argv);
    const char *arg;
    int is_flag;
    while (!rc && args_next(&a, &arg, &is_flag)) {
        const char *f = a.flag;
        if (!is_flag) {
            rc = args_unknown(&a, arg, err);
        } else if (args_common(&a)) {
        } else if (app_devflag(&a, &mp, &rc, err)) {
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) {
            rc = args_str(&a, &model, err);
        } else if (!strcmp(f, "-c") || !strcmp(f, "--ctx")) {
            rc = args_i32(&a, 1, INT32_MAX, &cp.n_ctx, err);
        } else if (!strcmp(f, "-b") || !strcmp(f, "--batch")) {
            rc = args_i32(&a, 1, INT32_MAX, &cp.n_batch, err);
        } else if (!strcmp(f, "--kv-type")) {
            const char *v = NULL;
            rc = args_str(&a, &v, err);
            if (!rc && !strcmp(v, "f16")) cp.kv_type = LYRA_KV_F16;
            else if (!rc && !strcmp(v, "f32")) cp.kv_type = LYRA_KV_F32;
            else if (!rc) rc = lyra_err(err, LYRA_ERR_INPUT, f, "expected f16 or f32, got '%s'", v);
        } else if (!strcmp(f, "--json") && !a.eq) {
            json = 1;
        } else {
            rc = args_unknown(&a, arg, err);
        }
    }
    if (!rc && !model) rc = lyra_err(err, LYRA_ERR_INPUT, "-m", "required: the model file");
    if (rc) return rc;
    app_devflags_finish(&mp, &cp);
    mp.n_threads = 1; /* nothing computes */
    lyra_gguf *g = NULL;
    lyra_llama *arch = NULL;
    lyra_device *dev[LYRA_MAX_DEVICES];
    int n_dev = 0;
    lyra_plan *plan = NULL;
    rc = lyra_gguf_open(model, &g, err);
    if (!rc) rc = lyra_llama_load(g, &arch, err);
    if (!rc) rc = lyra_runtime_devices(1, dev, &n_dev, err);
    if (!rc) rc = lyra_runtime_plan(arch, &mp, dev, n_dev, &plan, err);
    if (!rc) {
        char *s = json ? lyra_plan_json_string(plan) : lyra_plan_table(plan);
        if (!s) rc = lyra_err(err, LYRA_ERR_OOM, "plan", "out of memory");
        else fputs(s, stdout);
        free(s);
    }
    lyra_plan_free(plan);
    for (int i = 0; i < n_dev; i++) lyra_device_free(dev[i]);
    lyra_llama_free(arch);
    lyra_gguf_close(g);
    return rc;
}
