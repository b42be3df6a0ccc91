/* cuda_host.c: the parts of the CUDA device (cuda.h) that need no CUDA: the
 * LYRA_CUDA_DEVICES parser and lyra_cuda_devices_new, and, in builds without CUDA, the entry points
 * reporting that there is no GPU (silently: such a build behaves as before
 * the CUDA device existed). */
#include <stdio.h>
#include <string.h>

#include "build_info.h"
#include "core/env.h"
#include "device/cuda.h"

int lyra_cuda_parse_devices(const char *value, int n_cards, int *ordinals, int max, int *n,
                            lyra_error *err) {
    *n = 0;
    if (!value || !value[0]) return LYRA_OK;
    const char *cur = value, *s;
    size_t len;
    while (lyra_list_next(&cur, &s, &len)) {
        if (len == 0 && !s[0]) /* "" after the last comma */
            return lyra_err(err, LYRA_ERR_INPUT, "LYRA_CUDA_DEVICES",
                            "\"%.64s\": trailing comma", value);
        char entry[16];
        if (len == 0 || len >= sizeof entry)
            return lyra_err(err, LYRA_ERR_INPUT, "LYRA_CUDA_DEVICES",
                            "\"%.64s\": expected CUDA ordinals like 0 or 0,1 or 0,0", value);
        memcpy(entry, s, len);
        entry[len] = '\0';
        int v = 0;
        for (size_t i = 0; i < len; i++) {
            if (entry[i] < '0' || entry[i] > '9' || v > 1000) {
                v = -1;
                break;
            }
            v = v * 10 + (entry[i] - '0');
        }
        if (v < 0)
            return lyra_err(err, LYRA_ERR_INPUT, "LYRA_CUDA_DEVICES",
                            "entry \"%s\": expected a CUDA ordinal (0, 1, ...)", entry);
        if (v >= n_cards)
            return lyra_err(err, LYRA_ERR_INPUT, "LYRA_CUDA_DEVICES",
                            "entry \"%s\": there %s %d CUDA GPU%s (ordinals 0..%d)", entry,
                            n_cards == 1 ? "is" : "are", n_cards, n_cards == 1 ? "" : "s",
                            n_cards - 1);
        if (*n == max)
            return lyra_err(err, LYRA_ERR_INPUT, "LYRA_CUDA_DEVICES",
                            "\"%.64s\": at most %d devices", value, max);
        ordinals[(*n)++] = v;
    }
    return LYRA_OK;
}

int lyra_cuda_devices_new(int n_threads, lyra_device **out, int max, int *n, lyra_error *err) {
    return lyra_cuda_devices_open(lyra_backend_params_from_env().cuda_devices, 1, n_threads, out, max,
                                  n, err);
}

#if !LYRA_BUILD_HAVE_CUDA
int lyra_cuda_count(char *why, size_t why_cap) {
    if (why && why_cap) snprintf(why, why_cap, "this lyra was built without CUDA");
    return 0;
}

int lyra_cuda_available(void) { return 0; }

int lyra_cuda_devices_open(const char *pick, int asked, int n_threads, lyra_device **out, int max,
                           int *n, lyra_error *err) {
    (void)pick; (void)asked; (void)n_threads; (void)out; (void)max; (void)err;
    *n = 0;
    return LYRA_OK;
}

int lyra_device_is_cuda(const lyra_device *d) {
    (void)d;
    return 0;
}
#endif
