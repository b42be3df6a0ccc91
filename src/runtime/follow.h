/* follow.h: a rank other than 0 under mpirun (docs/distributed.md) runs
 * rank 0's evaluations on its share of the modules until rank 0 quits. */
#ifndef LYRA_RUNTIME_FOLLOW_H
#define LYRA_RUNTIME_FOLLOW_H

#include "runtime/objects.h"

/* On a rank > 0 of a model split over ranks: evaluate what rank 0 sends,
 * into c, until rank 0 sends QUIT (LYRA_OK) or an error (a dead rank 0, a
 * timeout). LYRA_OK at once on rank 0 or with one rank. */
int lyra_runtime_follow(lyra_context *c, lyra_error *err);

#endif
