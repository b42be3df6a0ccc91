/* residency.h: where a model's bytes live and how they move between devices
 * (residency.c): mapped pages made resident or released, allocations with
 * the reason of a failure (lyra_oom), weights placed on and removed from
 * devices, the scratch each device needs, and moving one module (with its
 * KV cache) to another device or to the disk tier. The load search and the
 * step-down (fallback.h) and the context (context.c) build on it; it calls
 * nothing of theirs. */
#ifndef LYRA_RUNTIME_RESIDENCY_H
#define LYRA_RUNTIME_RESIDENCY_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/objects.h"

/* Why an allocation failed: device index, bytes asked, and what the device
 * could still give then (lyra_device_room). */
typedef struct lyra_oom {
    int dev;            /* index into model->dev */
    uint64_t asked;     /* bytes asked */
    uint64_t room;      /* bytes it could still give */
} lyra_oom;

/* ---- pages of the mapping ---- */
/* Make [p, p+n) of the mapping resident: read one byte per page; with lock,
 * mlock it (outward to pages). Returns 1 when locked. */
int lyra_runtime_make_resident(const void *p, size_t n, int lock);
/* madvise(MADV_DONTNEED) the whole pages inside [p, p+n) of the mapping. */
void lyra_runtime_release_pages(const void *p, size_t n);

/* ---- allocation ---- */
/* Allocate on m->dev[di]; on failure fill *oom and return LYRA_ERR_OOM. */
int lyra_runtime_alloc(lyra_model *m, int di, size_t n, void **p, lyra_oom *oom);
/* The "out of memory on ID: asked X, free Y" text of oom. */
void lyra_runtime_oom_text(const lyra_model *m, const lyra_oom *oom, char *buf, size_t cap);

/* ---- weights ---- */
/* A zeroed entry at m->placed[m->n_placed] (the array grown as needed); the
 * caller fills it and increments n_placed. */
int lyra_runtime_add_placed(lyra_model *m, lyra_placed **out, lyra_error *err);
/* Place weight w (whose bytes are host, in the mapping) on device di: adopted
 * in place on the CPU with use_mmap (made resident, mlock'ed with use_mlock),
 * else allocated there and copied in; appends to m->placed. */
int lyra_runtime_place(lyra_model *m, int di, lyra_weight *w, const void *host, lyra_oom *oom,
                       lyra_error *err);
/* Free / unadopt m->placed[j] (the caller removes the entry). */
void lyra_runtime_unplace(lyra_model *m, int j);

/* ---- scratch ---- */
/* Scratch a device needs when the modules run where module_dev says (disk
 * modules: the CPU), for n_batch tokens. */
typedef struct lyra_scratch_need {
    int any, has_layers, has_head; /* runs a module / a layer / the head */
    size_t work, bytes;            /* matmul work; the whole scratch */
} lyra_scratch_need;
lyra_scratch_need lyra_runtime_scratch_need(const lyra_model *m, const int *module_dev, int di,
                                            int n_batch);
/* Adopt a new scratch p (NULL when none is needed) of need s for device di
 * of context c, freeing the old one, and carve the buffers. */
void lyra_runtime_set_scratch(lyra_context *c, int di, const lyra_scratch_need *s, void *p);

/* ---- KV chunks as rows ---- */
/* Chunk p of layer l (device di's layout) out to host rows, and host rows
 * into chunk p (tmp: scratch of chunk_bytes; the device's kv_to_rows /
 * kv_from_rows, if it has them, undo / make its layout). */
int lyra_runtime_kv_rows_out(const lyra_context *c, int di, int l, const void *p, void *rows, void *tmp,
                             lyra_error *err);
int lyra_runtime_kv_rows_in(const lyra_context *c, int di, int l, void *p, const void *rows, void *tmp,
                            lyra_error *err);

/* ---- moves ---- */
/* Move module mi (a layer with its KV cache in every sequence, or the
 * embedding, norm or head) to device dst (to_disk: the disk tier; dst is
 * then the CPU, which runs disk modules and holds their KV cache). Every
 * allocation on the target comes before anything is freed; on failure
 * (*oom says where when it is an allocation) nothing changes. c must be the
 * model's only context. */
int lyra_runtime_move_module(lyra_context *c, int mi, int dst, int to_disk, lyra_oom *oom,
                             lyra_error *err);

#endif
