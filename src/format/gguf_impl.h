/* gguf_impl.h: the in-memory layout of an opened GGUF, private to the format
 * module (gguf_read.c parses it; gguf_write.c reads it for copy_kv). */
#ifndef LYRA_GGUF_IMPL_H
#define LYRA_GGUF_IMPL_H

#include "format/gguf.h"

/* One key/value of a part, validated; every pointer points into the map. */
typedef struct gguf_kv {
    char *key;                /* NUL-terminated copy of the key */
    lyra_gguf_vtype type;     /* value type */
    const uint8_t *val;       /* encoded value in the map (just after the type id) */
    uint64_t val_bytes;       /* bytes of the encoded value */
    lyra_gguf_vtype arr_type; /* arrays: element type (else LYRA_GGUF_NONE) */
    uint64_t arr_count;       /* arrays: element count */
    const uint8_t *arr_data;  /* arrays: first element in the map */
    const uint8_t **arr_strs; /* string arrays: [arr_count] pointers to each
                                 element's u64 length (malloc'd), else NULL */
    uint8_t *owned;           /* set in memory (gguf_mem.c): the malloc'd value
                                 val points into, freed on close; else NULL */
} gguf_kv;

/* A name and the index it belongs to, sorted by name for lookups. */
typedef struct gguf_name_idx {
    const char *name; /* points at a gguf_kv key or a tensor name */
    int64_t idx;      /* index into the kv or tensor array */
} gguf_name_idx;

/* One file of a (possibly split) model. */
typedef struct gguf_part {
    char *path;            /* path (or the buffer's name), malloc'd */
    const uint8_t *map;    /* [size] whole file, read-only */
    uint64_t size;         /* bytes in the file */
    int mapped;            /* 1: map came from mmap and is unmapped on close */
    uint32_t version;      /* 2 or 3 */
    uint32_t alignment;    /* general.alignment or 32 */
    uint64_t data_start;   /* aligned offset of the data section */
    gguf_kv *kv;           /* [n_kv] key/values in file order */
    int64_t n_kv;          /* number of key/values */
    gguf_name_idx *kv_by_name; /* [n_kv] sorted by key */
    int64_t n_tensors;     /* tensors stored in this part */
} gguf_part;

struct lyra_gguf {
    gguf_part *parts;            /* [n_parts] */
    int n_parts;                 /* 1, or N of a split model */
    lyra_gguf_tensor *tensors;   /* [n_tensors] of all parts, in file order */
    int64_t n_tensors;           /* total over the parts */
    gguf_name_idx *tensor_by_name; /* [n_tensors] sorted by name */
    uint64_t data_bytes;         /* sum of tensor bytes */
    void *owned;                 /* in memory (writer_to_gguf): the encoded header, freed on close */
    void (*release)(void *);     /* in memory: called with release_arg on close */
    void *release_arg;
};

/* Parse hdr (a GGUF header with no tensors, malloc'd; taken even on failure)
 * and add the n tensors t (names copied, data used in place). */
int lyra_gguf_open_mem(void *hdr, size_t size, const char *name, const lyra_gguf_tensor *t,
                       int64_t n, lyra_gguf **out, lyra_error *err);

/* Size in bytes of a scalar value type; 0 for STRING / ARRAY / unknown ids. */
size_t lyra_gguf_scalar_size(uint32_t type);

/* The kv of the first part named key, or NULL. */
const gguf_kv *lyra_gguf_kv_find(const lyra_gguf *g, const char *key);

#endif
