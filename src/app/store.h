/* store.h: staging tensor data for the GGUF writer (mkmodel, quantize).
 *
 * The writer needs every tensor's data pointer alive until it writes. To keep
 * a 7B model from living in memory (twice), tensors are produced one by one
 * (rows converted in parallel on a thread pool) and appended to an unlinked
 * scratch file beside the output; the scratch file is then mapped read-only
 * and its pages handed to the writer: they are page cache, not heap. */
#ifndef LYRA_APP_STORE_H
#define LYRA_APP_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/pool.h"
#include "quant/quant.h"

typedef struct app_store {
    int fd;            /* the scratch file (already unlinked), -1 when closed */
    uint64_t size;     /* bytes appended */
    uint8_t *map;      /* read-only mapping of [0, size) after app_store_map */
    char *where;       /* directory of the scratch file, for messages (malloc'd) */
} app_store;

/* Create the scratch file in the directory of near_path. */
int app_store_open(app_store *s, const char *near_path, lyra_error *err);
/* Append n bytes (padded to 64) and return their offset in *off. */
int app_store_append(app_store *s, const void *buf, size_t n, uint64_t *off, lyra_error *err);
/* Map what was appended; afterwards app_store_ptr(off) is valid until close. */
int app_store_map(app_store *s, lyra_error *err);
const void *app_store_ptr(const app_store *s, uint64_t off);
void app_store_close(app_store *s);

/* Row producer: fill dst (cols floats) with the values of row r. */
typedef void (*app_row_fn)(void *user, int64_t r, float *dst, int64_t cols);

/* Produce rows [r0, r1) of a tensor of type t, cols per row, into out
 * ((r1-r0) * lyra_row_bytes(t, cols) bytes), the rows split over the pool's
 * threads. Each row depends only on its index, so the bytes do not depend on
 * the thread count. scratch: [lyra_pool_size(pool)][cols] floats. */
void app_rows_convert(lyra_pool *pool, lyra_type t, int64_t cols, int64_t r0, int64_t r1,
                      app_row_fn fn, void *user, float *scratch, void *out);

/* Stage a whole [rows][cols] tensor of type t through a chunk buffer of about
 * 32 MiB: rows produced by fn, converted on the pool, appended to s. */
int app_store_tensor(app_store *s, lyra_pool *pool, lyra_type t, int64_t cols, int64_t rows,
                     app_row_fn fn, void *user, uint64_t *off, lyra_error *err);

/* llama.cpp's general.file_type of a model whose weights are mostly type t
 * (0 ALL_F32, 1 F16, 2 Q4_0, 7 Q8_0, 14 Q4_K_S, 16 Q5_K_S, 18 Q6_K, 32 BF16). */
uint32_t app_file_type(lyra_type t);

#endif
