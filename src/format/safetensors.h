/* safetensors.h: reading Hugging Face safetensors files (one file, or the
 * shards a model.safetensors.index.json names) through read-only memory maps.
 *
 * A file is an 8-byte little-endian header length N, N bytes of JSON
 * {"NAME": {"dtype": "F32", "shape": [..], "data_offsets": [BEGIN, END]},
 *  "__metadata__": {..}} and the data section (offsets relative to its start).
 * Opening validates everything before anything is used: the header length
 * (at most LYRA_ST_MAX_HEADER and inside the file), the JSON, each tensor's
 * dtype, shape and offsets (inside the file, END - BEGIN = elements x dtype
 * size, no two tensors overlapping). Every problem is one LYRA_ERR_INPUT line
 * "FILE: tensor NAME: WHAT" (or "FILE: WHAT" for the file itself). Tensor
 * data is used in place (zero-copy). */
#ifndef LYRA_SAFETENSORS_H
#define LYRA_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define LYRA_ST_MAX_HEADER (100u << 20) /* bytes of JSON header accepted */
#define LYRA_ST_MAX_DIMS 8

typedef enum lyra_st_dtype {
    LYRA_ST_F32, LYRA_ST_F16, LYRA_ST_BF16, LYRA_ST_I8, LYRA_ST_U8,
} lyra_st_dtype;

typedef struct lyra_st_tensor {
    char *name;                      /* NUL-terminated copy */
    lyra_st_dtype dtype;
    int n_dims;                      /* 0..LYRA_ST_MAX_DIMS (0: a scalar) */
    int64_t shape[LYRA_ST_MAX_DIMS]; /* row-major: shape[n_dims-1] contiguous */
    int64_t n_elements;
    uint64_t n_bytes;
    const void *data;                /* in its file's map */
    int file;                        /* index of its file (shards) */
} lyra_st_tensor;

typedef struct lyra_st lyra_st;

/* Open path: a .safetensors file, a model.safetensors.index.json (every shard
 * it names, from its folder), or a folder holding model.safetensors or the
 * index. */
int lyra_st_open(const char *path, lyra_st **out, lyra_error *err);
/* Parse an in-memory buffer (fuzzing, tests); buf must outlive the result. */
int lyra_st_open_buffer(const void *buf, size_t size, const char *name, lyra_st **out,
                        lyra_error *err);
void lyra_st_close(lyra_st *s);

int64_t lyra_st_n_tensors(const lyra_st *s);
const lyra_st_tensor *lyra_st_tensor_at(const lyra_st *s, int64_t i); /* NULL out of range */
const lyra_st_tensor *lyra_st_find(const lyra_st *s, const char *name);
int lyra_st_n_files(const lyra_st *s);
const char *lyra_st_file(const lyra_st *s, int i); /* path of file i */
/* "F32", "F16", "BF16", "I8", "U8" and bytes per element. */
const char *lyra_st_dtype_name(lyra_st_dtype d);
size_t lyra_st_dtype_size(lyra_st_dtype d);

#endif
