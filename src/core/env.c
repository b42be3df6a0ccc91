/* env.c: the backend settings from the environment (env.h, lyra.h's
 * lyra_backend_params) and the comma-list splitter. */
#include "env.h"

#include <stdlib.h>
#include <string.h>

lyra_backend_params lyra_backend_default_params(void) {
    lyra_backend_params p;
    memset(&p, 0, sizeof p);
    return p;
}

lyra_backend_params lyra_backend_params_from_env(void) {
    lyra_backend_params p = lyra_backend_default_params();
    p.sim_gpus = getenv("LYRA_SIM_GPUS");
    p.cuda_devices = getenv("LYRA_CUDA_DEVICES");
    p.cpu_path = getenv("LYRA_CPU");
    p.fail_alloc = getenv("LYRA_FAIL_ALLOC");
    p.fail_io = getenv("LYRA_FAIL_IO");
    const char *st = getenv("LYRA_ALLOC_STATS");
    p.alloc_stats = st && st[0] && strcmp(st, "0");
    return p;
}

int lyra_list_next(const char **cur, const char **entry, size_t *len) {
    const char *s = *cur;
    if (!s) return 0;
    size_t n = strcspn(s, ",");
    *entry = s;
    *len = n;
    *cur = s[n] == ',' ? s + n + 1 : NULL;
    return 1;
}
