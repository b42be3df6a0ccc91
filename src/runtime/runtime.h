/* runtime.h: the runtime's internal interface, for the layers above it
 * (gen, app) and the tests: the objects behind lyra.h's opaque lyra_model
 * and lyra_context (objects.h) and every runtime module's header. Files
 * inside src/runtime include the headers they use, never this one.
 *
 *   objects.h        the model and context structures (the KV cache per
 *                    sequence, scratch per device)
 *   residency.h      pages, allocations, weights on devices, scratch, moving
 *                    a module between devices (residency.c)
 *   quantize_load.h  on-load quantization (quantize_load.c)
 *   placement.h      the devices and the plan (placement.c)
 *   fallback.h       the load search and the step-down (fallback.c)
 *   kvstate.h        a sequence's KV cache to and from host rows, for
 *                    session files (kvstate.c; lyra_kv_reserve: context.c)
 *   follow.h         ranks > 0 under mpirun: rank 0's evaluations (follow.c)
 *
 * context.c (KV cache, eval, map lines) and model.c (open, getters,
 * tokenizer) implement lyra.h only. Calls and includes run one way:
 * model, context -> fallback -> placement, residency; quantize_load ->
 * residency; residency -> objects (scripts/include-graph.sh checks it). */
#ifndef LYRA_RUNTIME_H
#define LYRA_RUNTIME_H

#include "runtime/fallback.h"
#include "runtime/kvstate.h"
#include "runtime/follow.h"
#include "runtime/objects.h"
#include "runtime/placement.h"
#include "runtime/quantize_load.h"
#include "runtime/residency.h"

#endif
