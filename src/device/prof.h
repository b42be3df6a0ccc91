/* prof.h: op timing for a device (lyra bench --profile). lyra_prof_attach
 * swaps the device's ops table for one whose forward-pass ops time the inner
 * op (wall and process CPU time) and count it under a key: the module tag the
 * forward pass set (lyra_prof_tag), the op and, for matrix products, the
 * weight type and shape (with the bytes of weights read, for a GB/s figure).
 * Nothing changes and nothing is spent while no profile is attached: the
 * plain ops table is the device's own. Times are of the op's call: on a
 * device that queues work (CUDA) that is the time to queue it. */
#ifndef LYRA_PROF_H
#define LYRA_PROF_H

#include "device/device.h"

#define LYRA_PROF_MAX 96 /* distinct keys; later ones count under "other" */

typedef struct lyra_prof_entry {
    char key[80];     /* "layer matmul Q4_0 2048x2048" */
    uint64_t calls;
    double wall, cpu; /* seconds */
    double bytes;     /* weight bytes read (matrix products), else 0 */
} lyra_prof_entry;

typedef struct lyra_prof {
    const lyra_device_ops *inner; /* the device's own ops */
    lyra_device_ops ops;          /* the timing wrappers */
    const char *tag;              /* module tag of the ops that follow ("layer", "head") */
    int n;                        /* entries used */
    lyra_prof_entry e[LYRA_PROF_MAX + 1]; /* the last: "other" */
} lyra_prof;

/* Start timing d's ops (counts reset): LYRA_OK or LYRA_ERR_OOM. Attaching an
 * attached device only resets its counts. */
int lyra_prof_attach(lyra_device *d);
/* Stop timing d's ops (its own table back); no-op when not attached. */
void lyra_prof_detach(lyra_device *d);
/* The module tag of the ops that follow on d (a string constant); no-op
 * when d is not profiled. */
static inline void lyra_prof_tag(lyra_device *d, const char *tag) {
    if (d->prof) d->prof->tag = tag;
}
/* A table of the n devices' counts, each op's time divided by per (tokens),
 * sorted by time, with the totals per module tag. Returns snprintf's count. */
size_t lyra_prof_report(lyra_device *const *devs, int n, double per, char *buf, size_t cap);

#endif
