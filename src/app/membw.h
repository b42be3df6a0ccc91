/* membw.h: memory read bandwidth measurement for `lyra bench`. */
#ifndef LYRA_APP_MEMBW_H
#define LYRA_APP_MEMBW_H

#include <stddef.h>

#include "core/err.h"
#include "core/pool.h"

/* Best of reps timed reads of a bytes-sized buffer (first written once),
 * split over pool's threads; *gbs in GB/s (1e9 bytes). */
int app_membw(lyra_pool *pool, size_t bytes, int reps, double *gbs, lyra_error *err);

#endif
