/* cmd_devices.c: `lyra devices`: the devices lyra would use (simulated GPUs
 * from LYRA_SIM_GPUS, CUDA GPUs, the CPU, the disk tier) with free memory,
 * the default reserve and the budget, as a table or as JSON (the device
 * objects of `lyra plan --json` plus "name"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "core/pool.h"
#include "core/size.h"
#include "plan/plan.h"
#include "runtime/runtime.h"

const char cmd_devices_usage[] =
    "usage: lyra devices [--json] [-t N]\n"
    "\n"
    "List the devices: GPUs (simulated ones when LYRA_SIM_GPUS is set), the cpu\n"
    "and the disk tier, each with its free memory, default reserve and budget;\n"
    "then the CPU threads generation uses (-t/--threads or the config file's\n"
    "threads, else the physical cores, fewer when the CPU affinity mask or a\n"
    "cgroup CPU quota (cpu.max) allows fewer).\n"
    "\n"
    "  --json                 {\"devices\":[{\"id\",\"kind\",\"backend\",\"free\",\n"
    "                         \"reserve\",\"budget\",\"name\"}, ...],\n"
    "                         \"threads\": N} (bytes)\n"
    "  -t, --threads N        the thread count to check and show\n"
    "  -q, -v                 quieter / more verbose stderr\n";

int cmd_devices(int argc, char **argv, lyra_error *err) {
    int json = 0;
    const app_opt opts[] = {APP_SWITCH("--json", &json), APP_OPT_END_};
    lyra_config *cfg = NULL;
    int rc = args_parse(argc, argv, NULL, opts, APP_CFG_THREADS, NULL, &cfg, err);
    if (rc) return rc;
    /* as lyra_context_new picks them */
    int threads = (int)json_integer_value(cfg->value[LYRA_CFG_THREADS]);
    const char *tsrc = cfg->source[LYRA_CFG_THREADS];
    if (!threads) threads = lyra_default_threads(&tsrc);
    char tline[160];
    snprintf(tline, sizeof tline, "threads: %d (%s)", threads, tsrc);
    lyra_config_free(cfg);
    lyra_device *dev[LYRA_MAX_DEVICES];
    int n_dev = 0;
    if ((rc = lyra_runtime_devices(NULL, threads, 0, dev, &n_dev, err))) return rc;
    lyra_plan_device pd[LYRA_PLAN_MAX_DEVICES];
    const char *name[LYRA_PLAN_MAX_DEVICES];
    int n = 0;
    for (int i = 0; i < n_dev; i++) {
        lyra_plan_device_from(dev[i], &pd[n]);
        name[n++] = dev[i]->name;
    }
    lyra_plan_device_disk(&pd[n]);
    name[n++] = "the model file, memory-mapped";
    lyra_plan_notes notes;
    memset(&notes, 0, sizeof notes);
    rc = lyra_plan_budgets(pd, n, NULL, NULL, &notes, err);
    if (!rc && json) {
        json_t *root = json_object(), *arr = json_array();
        for (int i = 0; arr && i < n; i++) {
            json_t *o = lyra_plan_device_json(&pd[i], NULL);
            if (o) json_object_set_new(o, "name", json_string(name[i]));
            json_array_append_new(arr, o);
        }
        char *s = NULL;
        if (root && arr && !json_object_set_new(root, "devices", arr) &&
            !json_object_set_new(root, "threads", json_integer(threads)))
            s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!s) rc = lyra_err(err, LYRA_ERR_OOM, "devices", "out of memory");
        else printf("%s\n", s);
        free(s);
        json_decref(root);
    } else if (!rc) {
        printf("%-5s %-5s %-8s %12s %12s %12s  %s\n", "id", "kind", "backend", "free", "reserve",
               "budget", "name");
        for (int i = 0; i < n; i++) {
            char f[32], r[32], b[32];
            if (!strcmp(pd[i].kind, "disk")) {
                snprintf(f, sizeof f, "-");
                snprintf(r, sizeof r, "-");
                snprintf(b, sizeof b, "unlimited");
            } else {
                lyra_size_format(pd[i].free, f, sizeof f);
                lyra_size_format(pd[i].reserve, r, sizeof r);
                lyra_size_format(pd[i].budget, b, sizeof b);
            }
            printf("%-5s %-5s %-8s %12s %12s %12s  %s\n", pd[i].id, pd[i].kind, pd[i].backend, f, r,
                   b, name[i]);
        }
        printf("%s\n", tline);
    }
    for (int i = 0; i < n_dev; i++) lyra_device_free(dev[i]);
    return rc;
}
