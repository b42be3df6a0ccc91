/* fallback.h: the progressive fallback (fallback.c, docs/fallback.md): the
 * load, which plans the model (placement.h) and searches for the largest
 * placement that allocates; the step-down between two tokens, which moves
 * one layer a tier down (residency.h) when an allocation fails during
 * generation; and the history of both. */
#ifndef LYRA_RUNTIME_FALLBACK_H
#define LYRA_RUNTIME_FALLBACK_H

#include <stdint.h>

#include "lyra.h"
#include "runtime/objects.h"
#include "runtime/residency.h"

/* Place the model: plan, then load with progressive fallback (docs/fallback.md). */
int lyra_runtime_load(lyra_model *m, const lyra_model_params *p, lyra_error *err);
/* The progressive fallback between two tokens of context c (the model's only
 * one): after the allocation *oom failed, move one layer off that device (a
 * GPU's highest-index layer to the CPU, the CPU's highest-index resident
 * layer to disk; a GPU with no layer left: its embedding, norm or head),
 * record the step (token: the position being evaluated, for phase
 * LYRA_PHASE_GENERATE) and return LYRA_OK so that the caller retries.
 * LYRA_ERR_OOM (err says why) when there is nothing left to move. */
int lyra_runtime_step_down(lyra_context *c, const lyra_oom *oom, int phase, int32_t token,
                           lyra_error *err);
/* mpirun, --fallback-across-ranks during generation (every rank calls it
 * alike): module mi, the last layer of rank from, goes to rank from + 1.
 * Rank from sends its KV cache (every sequence's chunks, as rows) to rank
 * from + 1 and frees it and the layer's weights; rank from + 1 makes the
 * layer resident on its CPU (from its own mapping of the file) with that
 * cache; every rank updates module_rank. An error here is the rank's own
 * (fatal, as any rank's error during an evaluation). */
int lyra_runtime_pass_layer(lyra_context *c, int mi, int from, lyra_error *err);
/* Append a zeroed history step (NULL when out of memory). */
lyra_fallback_step *lyra_runtime_fallback_add(lyra_model *m);
/* Append a history step and log its line (what: "gpu", "cpu" or "ctx"). */
int lyra_runtime_fallback_step(lyra_model *m, int phase, int32_t token, const lyra_oom *oom,
                               const char *what, int32_t from, int32_t to);
/* Layers resident on GPUs / on the CPU (not disk) now. */
int lyra_runtime_gpu_layers(const lyra_model *m);
int lyra_runtime_cpu_layers(const lyra_model *m);

#endif
