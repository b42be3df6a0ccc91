/* kvstate.h: a sequence's KV cache to and from host memory, for session
 * files (src/gen/session.c): chunk by chunk, read from (or written to)
 * whatever device holds each layer, in the device-independent row layout
 * (K [chunk_len][kv_dim] then V [chunk_len][kv_dim], as device.h's
 * kv_to_rows gives it). Every function takes the sequence s (today 0). */
#ifndef LYRA_RUNTIME_KVSTATE_H
#define LYRA_RUNTIME_KVSTATE_H

#include <stdint.h>

#include "core/afile.h"
#include "lyra.h"

/* What a session file records of a context and its sequence s. */
typedef struct lyra_kv_layout {
    uint64_t fingerprint; /* the model's (objects.h) */
    int32_t kv_type;      /* lyra_kv_type: F16 or F32 */
    int32_t n_ctx, kv_chunk, n_layer, n_vocab;
    int32_t width;        /* K (or V) values per position: n_head_kv * head_dim */
    int32_t pos, top;     /* tokens in the cache, the highest position written + 1 */
    uint64_t chunk_bytes; /* one layer's chunk, K then V */
} lyra_kv_layout;

void lyra_kv_state_layout(const lyra_context *c, int s, lyra_kv_layout *g);
/* Ring chunks of layer l (0: a full layer). */
int32_t lyra_kv_state_ring(const lyra_context *c, int s, int l);
/* The model's fingerprint; its session write fault injection. */
uint64_t lyra_kv_state_fingerprint(const lyra_model *m);
lyra_fail_io *lyra_kv_state_fail_io(lyra_context *c);

/* Make sequence s's cache hold positions [0, n_pos) (chunks allocated on
 * the layers' devices; out of memory steps down as lyra_eval does).
 * Implemented in context.c, which grows the cache the same way. */
int lyra_kv_reserve(lyra_context *c, int s, int32_t n_pos, lyra_error *err);
/* mpirun with --fallback-across-ranks, every rank alike (rank 0 from
 * lyra_kv_reserve after its RESERVE command, the others from follow.c): each
 * rank grows its layers' share, stepping down within its devices; while the
 * first rank that cannot is out of memory, has a next rank and keeps another
 * layer, its last layer goes to the next rank (lyra_runtime_pass_layer) and
 * all try again. When none can go every rank fails alike (*together = 1;
 * rank 0's error names the rank) and the run goes on following rank 0. */
int lyra_kv_reserve_ranks(lyra_context *c, int s, int32_t n_pos, int *together, lyra_error *err);

/* Chunks of layer l a session keeps: a full layer the ones covering
 * [0, pos), a sliding-window ring the slots written since the cache was
 * last emptied (at most its ring). */
int32_t lyra_kv_state_chunks(const lyra_context *c, int s, int l);

/* Chunk k of layer l as rows into rows[chunk_bytes] (tmp: chunk_bytes of
 * scratch). */
int lyra_kv_state_get(const lyra_context *c, int s, int l, int32_t k, void *rows, void *tmp,
                      lyra_error *err);

/* A restore: begin empties the sequence and reserves n_pos positions; put
 * writes chunk k of layer l from rows (tmp: scratch; rows may be
 * overwritten); end sets the position (pos) and the highest written (top). */
int lyra_kv_state_begin(lyra_context *c, int s, int32_t n_pos, lyra_error *err);
int lyra_kv_state_put(lyra_context *c, int s, int l, int32_t k, const void *rows, void *tmp,
                      lyra_error *err);
void lyra_kv_state_end(lyra_context *c, int s, int32_t pos, int32_t top);

#endif
