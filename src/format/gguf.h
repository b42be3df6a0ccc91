/* gguf.h: reading GGUF files (v2 and v3, split files NAME-00001-of-0000N.gguf)
 * safely through a read-only memory map, and writing them.
 *
 * lyra_gguf_open validates everything before anything is used: magic, version,
 * counts, string and array lengths, value and tensor type ids, tensor offsets,
 * alignment and byte sizes against the file size. Every problem is a
 * LYRA_ERR_INPUT naming the file and the byte offset; no read goes out of
 * bounds. Tensor data is used in place (zero-copy). Metadata of a split model
 * comes from the first part; tensors from all parts. */
#ifndef LYRA_GGUF_H
#define LYRA_GGUF_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/wtype.h"

typedef enum lyra_gguf_vtype {
    LYRA_GGUF_U8 = 0, LYRA_GGUF_I8 = 1, LYRA_GGUF_U16 = 2, LYRA_GGUF_I16 = 3,
    LYRA_GGUF_U32 = 4, LYRA_GGUF_I32 = 5, LYRA_GGUF_F32 = 6, LYRA_GGUF_BOOL = 7,
    LYRA_GGUF_STRING = 8, LYRA_GGUF_ARRAY = 9, LYRA_GGUF_U64 = 10,
    LYRA_GGUF_I64 = 11, LYRA_GGUF_F64 = 12,
    LYRA_GGUF_NONE = -1, /* returned for a missing key / index */
} lyra_gguf_vtype;

/* Limits the reader enforces (and the writer respects). */
#define LYRA_GGUF_MAX_NAME 64        /* bytes of a tensor name */
#define LYRA_GGUF_MAX_KEY 65535      /* bytes of a key */
#define LYRA_GGUF_MAX_DEPTH 8        /* nesting of arrays of arrays */
#define LYRA_GGUF_DEFAULT_ALIGNMENT 32

typedef struct lyra_gguf_str {
    const char *ptr; /* into the map; NOT NUL-terminated */
    uint64_t len;
} lyra_gguf_str;

typedef struct lyra_gguf_tensor {
    char *name;          /* NUL-terminated copy */
    lyra_type type;
    int n_dims;          /* 1..4 */
    int64_t ne[4];       /* ne[0] = elements per row (contiguous), unused = 1 */
    int64_t n_elements;
    uint64_t n_bytes;
    uint64_t offset;     /* from the start of its part's data section */
    int part;            /* which file of a split model */
    const void *data;    /* in the map */
    uint64_t info_offset;/* where its entry in its part's tensor table starts */
} lyra_gguf_tensor;

typedef struct lyra_gguf lyra_gguf;

/* Open and validate. A path NAME-00001-of-0000N.gguf opens all N parts. */
/* If path ends in "-NNNNN-of-MMMMM.gguf" (1 <= NNNNN <= MMMMM), the name of
 * one part of a split model: set the prefix length, part number and count
 * and return 1; else 0. */
int lyra_gguf_split_name(const char *path, size_t *prefix_len, int *no, int *count);
int lyra_gguf_open(const char *path, lyra_gguf **out, lyra_error *err);
/* Parse an in-memory buffer (fuzzing, tests); buf must outlive the result.
 * Tensor data is aligned only as far as buf is. split.* keys are not checked. */
int lyra_gguf_open_buffer(const void *buf, size_t size, const char *name,
                          lyra_gguf **out, lyra_error *err);
void lyra_gguf_close(lyra_gguf *g);

const char *lyra_gguf_path(const lyra_gguf *g);   /* first part's path */
uint32_t lyra_gguf_version(const lyra_gguf *g);
int lyra_gguf_n_parts(const lyra_gguf *g);
uint64_t lyra_gguf_part_size(const lyra_gguf *g, int part);
const void *lyra_gguf_part_map(const lyra_gguf *g, int part); /* whole mapping */
uint64_t lyra_gguf_data_bytes(const lyra_gguf *g); /* sum of tensor bytes */

/* ---- metadata ---- */
int64_t lyra_gguf_n_kv(const lyra_gguf *g);
const char *lyra_gguf_kv_key(const lyra_gguf *g, int64_t i); /* NUL-terminated copy */
lyra_gguf_vtype lyra_gguf_kv_type(const lyra_gguf *g, int64_t i);
int64_t lyra_gguf_find_key(const lyra_gguf *g, const char *key); /* -1 if absent */

/* Typed getters: return 1 and set *out when the key exists and its value
 * converts exactly (any integer type that fits; f32/f64 for floats, an f64
 * rounded to float for get_f32 when within float range), else 0. bool only
 * from BOOL, strings only from STRING. */
int lyra_gguf_get_u32(const lyra_gguf *g, const char *key, uint32_t *out);
int lyra_gguf_get_i64(const lyra_gguf *g, const char *key, int64_t *out);
int lyra_gguf_get_f32(const lyra_gguf *g, const char *key, float *out);
int lyra_gguf_get_bool(const lyra_gguf *g, const char *key, int *out);
int lyra_gguf_get_str(const lyra_gguf *g, const char *key, lyra_gguf_str *out);
/* Arrays: element type and count; elements of numeric arrays are read with
 * lyra_gguf_arr_data (raw little-endian, element size by type), strings with
 * lyra_gguf_arr_str. Return 0 if the key is absent or not an array. */
int lyra_gguf_get_arr(const lyra_gguf *g, const char *key,
                      lyra_gguf_vtype *elem_type, uint64_t *count);
const void *lyra_gguf_arr_data(const lyra_gguf *g, const char *key);
lyra_gguf_str lyra_gguf_arr_str(const lyra_gguf *g, const char *key, uint64_t i);

/* Additions: 64-bit getters, and element access with type and bound checks
 * (return 0 when the key is absent, the type does not convert or i >= count). */
int lyra_gguf_get_u64(const lyra_gguf *g, const char *key, uint64_t *out);
int lyra_gguf_get_f64(const lyra_gguf *g, const char *key, double *out);
int lyra_gguf_arr_get_i64(const lyra_gguf *g, const char *key, uint64_t i, int64_t *out);
int lyra_gguf_arr_get_f32(const lyra_gguf *g, const char *key, uint64_t i, float *out);
/* Byte offset of a part's data section (aligned) in its file. */
uint64_t lyra_gguf_data_start(const lyra_gguf *g, int part);
/* "u32", "string", "array"...; "?" for an unknown id. */
const char *lyra_gguf_vtype_name(lyra_gguf_vtype t);

/* ---- tensors ---- */
int64_t lyra_gguf_n_tensors(const lyra_gguf *g);
const lyra_gguf_tensor *lyra_gguf_tensor_at(const lyra_gguf *g, int64_t i);
const lyra_gguf_tensor *lyra_gguf_find_tensor(const lyra_gguf *g, const char *name);

/* ---- metadata set in memory ----
 * A model directory that is not GGUF (a Hugging Face snapshot) is presented
 * to lyra as a lyra_gguf made in memory, with llama.cpp's key names.
 * lyra_gguf_new_empty: no file, no keys, no tensors; its path is name (NULL
 * when out of memory). The set functions copy their arguments (strings need
 * not be NUL-terminated), replace the value of a key that exists (in place:
 * file order is kept) and work on any lyra_gguf (an opened file's metadata
 * too; the map is never written). They return LYRA_OK, LYRA_ERR_OOM, or
 * LYRA_ERR_INPUT for an empty/over-long key or a type they do not take;
 * messages go to err, which may be NULL. */
lyra_gguf *lyra_gguf_new_empty(const char *name);
/* A scalar: type one of U8..F64 or BOOL, v as for lyra_gguf_writer_add_val. */
int lyra_gguf_set_val(lyra_gguf *g, const char *key, lyra_gguf_vtype type, const void *v,
                      lyra_error *err);
int lyra_gguf_set_str(lyra_gguf *g, const char *key, const char *s, size_t len, lyra_error *err);
/* Array of numbers (elem_type a scalar type, data count values of its C type). */
int lyra_gguf_set_arr(lyra_gguf *g, const char *key, lyra_gguf_vtype elem_type, const void *data,
                      uint64_t count, lyra_error *err);
/* Array of strings; lens NULL: each string NUL-terminated. */
int lyra_gguf_set_arr_str(lyra_gguf *g, const char *key, const char *const *v, const uint64_t *lens,
                          uint64_t count, lyra_error *err);
/* Remove a key (no-op when absent). */
void lyra_gguf_unset(lyra_gguf *g, const char *key);

/* ---- writer ----
 * Collects key/values and tensors, then writes a v3 file atomically (a
 * temporary file renamed into place: no partial output on failure). Tensor
 * data pointers must stay valid until lyra_gguf_writer_write returns.
 * Adding a key that exists replaces its value in place. The add functions
 * return LYRA_OK or an error code; the first error is kept and also returned
 * (with its message) by lyra_gguf_writer_write, which then writes nothing.
 * The writer's alignment is authoritative: general.alignment is written with
 * it when the alignment is not 32 or when the key was added or copied. */
typedef struct lyra_gguf_writer lyra_gguf_writer;
lyra_gguf_writer *lyra_gguf_writer_new(void);
void lyra_gguf_writer_free(lyra_gguf_writer *w);
void lyra_gguf_writer_set_alignment(lyra_gguf_writer *w, uint32_t alignment); /* default 32 */
int lyra_gguf_writer_add_u32(lyra_gguf_writer *w, const char *key, uint32_t v);
int lyra_gguf_writer_add_i32(lyra_gguf_writer *w, const char *key, int32_t v);
int lyra_gguf_writer_add_f32(lyra_gguf_writer *w, const char *key, float v);
int lyra_gguf_writer_add_bool(lyra_gguf_writer *w, const char *key, int v);
int lyra_gguf_writer_add_str(lyra_gguf_writer *w, const char *key, const char *v);
/* Array of strings (count entries, each NUL-terminated or given lengths). */
int lyra_gguf_writer_add_arr_str(lyra_gguf_writer *w, const char *key,
                                 const char *const *v, const uint64_t *lens, uint64_t count);
/* Array of numbers: elem_type one of the numeric vtypes (or BOOL), data count
 * values of that C type, as for lyra_gguf_writer_add_val (written LE). */
int lyra_gguf_writer_add_arr(lyra_gguf_writer *w, const char *key,
                             lyra_gguf_vtype elem_type, const void *data, uint64_t count);
/* Copy every key/value of g (of its first part, in file order, arrays and
 * nested arrays included) except those for which skip(key, user) returns 1
 * (skip may be NULL) and the split.* keys, which describe g's own files. */
int lyra_gguf_writer_copy_kv(lyra_gguf_writer *w, const lyra_gguf *g,
                             int (*skip)(const char *key, void *user), void *user);
/* Any scalar: type one of U8..F64 or BOOL, v points to a value of that C type
 * (uint8_t, int8_t, ..., float, uint64_t, int64_t, double; BOOL: uint8_t 0/1). */
int lyra_gguf_writer_add_val(lyra_gguf_writer *w, const char *key,
                             lyra_gguf_vtype type, const void *v);
int lyra_gguf_writer_add_tensor(lyra_gguf_writer *w, const char *name, lyra_type type,
                                int n_dims, const int64_t *ne, const void *data);
/* Write the file to path: through path.tmp.PID.XXXXXX (temporary files of
 * path left by dead processes are removed first), renamed into place when
 * complete. Refused (LYRA_ERR_INPUT) when path exists and is not a regular
 * file, or when its name is too long for the temporary name; cancelled
 * (LYRA_ERR_INTERRUPTED, nothing left behind) when the cancel flag is set. */
int lyra_gguf_writer_write(lyra_gguf_writer *w, const char *path, lyra_error *err);
/* The checks lyra_gguf_writer_write makes on path, for a command to make
 * before long work: LYRA_ERR_INPUT naming path, or LYRA_OK. */
int lyra_gguf_writer_check_path(const char *path, lyra_error *err);
/* A lyra_gguf in memory made of a writer's key/values and tensors (a
 * Hugging Face snapshot presented as a GGUF, hf_model.h): the key/values are
 * encoded into memory the result owns, tensor data is used in place (it must
 * stay valid until the result is closed). lyra_gguf_path gives name.
 * release(arg) runs when the result is closed (release may be NULL), not on
 * failure. The writer stays usable (and must still be freed). */
int lyra_gguf_writer_to_gguf(lyra_gguf_writer *w, const char *name, void (*release)(void *),
                             void *arg, lyra_gguf **out, lyra_error *err);
/* Stop lyra_gguf_writer_write (between 64 MiB chunks) when *flag becomes
 * non-zero, e.g. the CLI's SIGINT/SIGTERM flag; NULL: never. */
void lyra_gguf_writer_set_cancel(lyra_gguf_writer *w, const volatile sig_atomic_t *flag);

#endif
