/* env.h: the environment, read in one place. The backend's variables
 * (LYRA_SIM_GPUS, LYRA_CUDA_DEVICES, LYRA_CPU, LYRA_FAIL_ALLOC,
 * LYRA_ALLOC_STATS) become a lyra_backend_params (lyra.h) here and nowhere
 * else; the modules below take the values as arguments. Also the one
 * splitter of the comma lists those values are. */
#ifndef LYRA_ENV_H
#define LYRA_ENV_H

#include <stddef.h>

#include "lyra.h"

/* Entries of a comma-separated list, split as Python's str.split(","): "a,b"
 * gives "a" and "b", "a," gives "a" and "", "" gives "" (callers decide what
 * an empty entry means). Start with *cur = value (non-NULL); each call sets
 * *entry and *len to the next entry and returns 1, or returns 0 after the
 * last one (*cur is then NULL). Entries are not trimmed. */
int lyra_list_next(const char **cur, const char **entry, size_t *len);

#endif
