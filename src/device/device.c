/* device.c: the backend-independent parts of the device interface: free
 * memory, the allocation entry point with fault injection (a LYRA_FAIL_ALLOC
 * value), and freeing a device. */
#include "device/device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/env.h"

uint64_t lyra_device_free_mem(const lyra_device *d) {
    return d && d->ops && d->ops->free_mem ? d->ops->free_mem(d) : 0;
}

uint64_t lyra_device_room(const lyra_device *d) {
    uint64_t f = lyra_device_free_mem(d);
    if (d->budget) {
        uint64_t left = d->budget > d->stats.allocated ? d->budget - d->stats.allocated : 0;
        if (left < f) f = left;
    }
    return f;
}

int lyra_device_alloc(lyra_device *d, size_t size, void **ptr) {
    uint64_t call = d->stats.alloc_calls + 1;
    if (d->fail_at && (call == d->fail_at || (d->fail_after && call > d->fail_at))) {
        d->stats.alloc_calls = call; /* a failed call counts as a call */
        *ptr = NULL;
        return LYRA_ERR_OOM;
    }
    return d->ops->alloc(d, size, ptr);
}

int lyra_device_fault_parse(const char *v, lyra_device *const *dev, int n, int *armed,
                            lyra_error *err) {
    *armed = 0;
    if (!v || !v[0]) return LYRA_OK;
    const char *cur = v, *s;
    size_t len;
    while (lyra_list_next(&cur, &s, &len)) {
        if (len == 0 && !s[0]) break; /* a trailing comma */
        char entry[64];
        if (len == 0 || len >= sizeof entry)
            return lyra_err(err, LYRA_ERR_INPUT, "LYRA_FAIL_ALLOC",
                            "\"%s\": expected ID:N[+][,ID:N[+]...] (e.g. 0:3,cpu:2+)", v);
        memcpy(entry, s, len);
        entry[len] = '\0';
        char *colon = strrchr(entry, ':');
        if (!colon || colon == entry)
            return lyra_err(err, LYRA_ERR_INPUT, "LYRA_FAIL_ALLOC",
                            "entry \"%s\": expected ID:N or ID:N+ (N >= 1)", entry);
        *colon = '\0';
        const char *num = colon + 1;
        size_t nl = strlen(num);
        int plus = nl > 0 && num[nl - 1] == '+';
        uint64_t at = 0;
        size_t digits = nl - (size_t)plus;
        for (size_t i = 0; i < digits; i++) {
            if (num[i] < '0' || num[i] > '9' || at > (UINT64_MAX - 9) / 10) { digits = 0; break; }
            at = at * 10 + (uint64_t)(num[i] - '0');
        }
        if (digits == 0 || at == 0)
            return lyra_err(err, LYRA_ERR_INPUT, "LYRA_FAIL_ALLOC",
                            "entry \"%s:%s\": N must be an integer >= 1, optionally followed by +",
                            entry, num);
        int found = -1;
        for (int i = 0; i < n; i++)
            if (!strcmp(dev[i]->id, entry)) found = i;
        if (found < 0) {
            char ids[128] = "";
            for (int i = 0; i < n; i++) {
                size_t o = strlen(ids);
                snprintf(ids + o, sizeof ids - o, "%s%s", i ? ", " : "", dev[i]->id);
            }
            return lyra_err(err, LYRA_ERR_INPUT, "LYRA_FAIL_ALLOC",
                            "entry \"%s:%s\": no device \"%s\" (devices here: %s)", entry, num,
                            entry, ids);
        }
        dev[found]->fail_at = at;
        dev[found]->fail_after = plus;
        (*armed)++;
    }
    return LYRA_OK;
}

const lyra_device_ops *lyra_device_own_ops(const lyra_device *d) {
    return d->own_ops ? d->own_ops : d->ops;
}

void lyra_device_free(lyra_device *d) {
    if (!d) return;
    if (d->prof) { /* op timing on (device/prof.c): the device's own table back */
        d->ops = d->own_ops;
        free(d->prof);
        d->prof = NULL;
    }
    if (d->ops && d->ops->destroy) d->ops->destroy(d);
    else free(d);
}
