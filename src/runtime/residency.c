/* residency.c: where a model's bytes live and how they move (residency.h):
 * making mapped weights resident (mlock), releasing pages, allocating on a
 * device with the reason of a failure, placing and unplacing weights, the
 * scratch a device needs and a context's scratch on it, and moving a module
 * (a layer with its KV cache, or the embedding, norm or head) between
 * devices or to the disk tier (lyra_context_move_layer, and the fallback's
 * step-down; a sliding-window layer's KV ring moves with it). Knows nothing
 * of the load search or of evaluation. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/log.h"
#include "runtime/residency.h"

/* ------------------------------------------------------------ residency */

static size_t page_size(void) {
    long ps = sysconf(_SC_PAGESIZE);
    return ps > 0 ? (size_t)ps : 4096;
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif

/* Make [p, p+n) of the mapping resident: MADV_POPULATE_READ fills the page
 * tables in one call (from a warm page cache about 5x faster than a fault
 * per page: it took most of the load time of a 1.1B model); on older
 * kernels, read one byte per page. With lock, mlock it (outward to pages).
 * Returns 1 when locked. */
int lyra_runtime_make_resident(const void *p, size_t n, int lock) {
    size_t ps = page_size();
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(ps - 1), e = (uintptr_t)p + n;
    if (e > a && madvise((void *)a, e - a, MADV_POPULATE_READ)) {
        madvise((void *)a, e - a, MADV_WILLNEED);
        volatile unsigned char sink = 0;
        for (uintptr_t q = (uintptr_t)p; q < e; q += ps) sink ^= *(const volatile unsigned char *)q;
        if (n) sink ^= *((const volatile unsigned char *)p + n - 1);
        (void)sink;
    }
    if (!lock) return 0;
    if (mlock((void *)a, e - a)) {
        LYRA_WARN("--mlock: cannot lock %zu bytes of weights in RAM: %s (raise ulimit -l)", n,
                  strerror(errno));
        return 0;
    }
    return 1;
}

static void unlock(const void *p, size_t n) {
    size_t ps = page_size();
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(ps - 1), e = (uintptr_t)p + n;
    munlock((void *)a, e - a);
}

void lyra_runtime_release_pages(const void *p, size_t n) {
    size_t ps = page_size();
    uintptr_t a = ((uintptr_t)p + ps - 1) & ~(uintptr_t)(ps - 1);
    uintptr_t e = ((uintptr_t)p + n) & ~(uintptr_t)(ps - 1);
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}

/* ----------------------------------------------------------- allocation */

int lyra_runtime_alloc(lyra_model *m, int di, size_t n, void **p, lyra_oom *oom) {
    lyra_device *d = m->dev[di];
    int rc = lyra_device_alloc(d, n, p);
    if (rc && oom) {
        oom->dev = di;
        oom->asked = n;
        oom->room = lyra_device_room(d);
    }
    return rc;
}

void lyra_runtime_oom_text(const lyra_model *m, const lyra_oom *oom, char *buf, size_t cap) {
    char a[32], f[32];
    lyra_format_bytes(oom->asked, a, sizeof a);
    lyra_format_bytes(oom->room, f, sizeof f);
    snprintf(buf, cap, "out of memory on %s: asked %s, free %s", m->dev[oom->dev]->id, a, f);
}

/* ------------------------------------------------------------ placements */

/* Undo placed entry j (it stays in the array; the caller compacts). */
void lyra_runtime_unplace(lyra_model *m, int j) {
    lyra_placed *pl = &m->placed[j];
    lyra_device *d = m->dev[pl->dev];
    if (pl->ptr) d->ops->free(d, pl->ptr, pl->n_bytes);
    else {
        if (pl->locked) unlock(pl->host, pl->n_bytes);
        d->ops->unadopt(d, pl->host, pl->n_bytes);
    }
    m->dev_weights[pl->dev] -= pl->n_bytes;
}

int lyra_runtime_add_placed(lyra_model *m, lyra_placed **out, lyra_error *err) {
    if (m->n_placed == m->cap_placed) {
        int cap = m->cap_placed ? 2 * m->cap_placed : 64;
        lyra_placed *p = realloc(m->placed, (size_t)cap * sizeof *p);
        if (!p) return lyra_err(err, LYRA_ERR_OOM, "model", "out of memory");
        m->placed = p;
        m->cap_placed = cap;
    }
    *out = &m->placed[m->n_placed];
    memset(*out, 0, sizeof **out);
    return LYRA_OK;
}

int lyra_runtime_place(lyra_model *m, int di, lyra_weight *w, const void *host, lyra_oom *oom,
                       lyra_error *err) {
    lyra_device *d = m->dev[di];
    lyra_placed *pl = NULL;
    int rc = lyra_runtime_add_placed(m, &pl, err);
    if (rc) return rc;
    pl->dev = di;
    pl->w = w;
    pl->host = host;
    pl->n_bytes = w->n_bytes;
    if (m->use_mmap && !strcmp(d->kind, "cpu") && d->ops->adopt(d, host, w->n_bytes) == LYRA_OK) {
        pl->locked = lyra_runtime_make_resident(host, w->n_bytes, m->use_mlock);
    } else {
        void *p;
        lyra_oom o;
        rc = lyra_runtime_alloc(m, di, w->n_bytes, &p, &o);
        if (rc) {
            char why[160];
            if (oom) *oom = o;
            lyra_runtime_oom_text(m, &o, why, sizeof why);
            return lyra_err(err, rc, d->id, "weight %s: %s", w->name, why);
        }
        if ((rc = d->ops->copy_in(d, p, host, w->n_bytes))) {
            d->ops->free(d, p, w->n_bytes);
            return lyra_err(err, rc, d->id, "cannot load weight %s", w->name);
        }
        pl->ptr = p;
    }
    m->n_placed++;
    m->dev_weights[di] += w->n_bytes;
    return LYRA_OK;
}

/* ------------------------------------------------------- KV chunks as rows */

static lyra_type kv_elem(const lyra_context *c) { return c->kv_type == LYRA_KV_F32 ? LYRA_TYPE_F32 : LYRA_TYPE_F16; }

static int64_t kv_width(const lyra_context *c) {
    return (int64_t)c->model->arch->hp.n_head_kv * c->model->arch->hp.head_dim;
}

int lyra_runtime_kv_rows_out(const lyra_context *c, int di, int l, const void *p, void *rows, void *tmp,
                             lyra_error *err) {
    lyra_device *d = c->model->dev[di];
    if (d->ops->copy_out(d, d->ops->kv_to_rows ? tmp : rows, p, c->chunk_bytes))
        return lyra_err(err, LYRA_ERR_RUNTIME, d->id, "copying the KV cache of layer %d", l);
    if (d->ops->kv_to_rows) d->ops->kv_to_rows(tmp, rows, c->kv_chunk, kv_width(c), kv_elem(c));
    return LYRA_OK;
}

int lyra_runtime_kv_rows_in(const lyra_context *c, int di, int l, void *p, const void *rows, void *tmp,
                            lyra_error *err) {
    lyra_device *d = c->model->dev[di];
    const void *src = rows;
    if (d->ops->kv_from_rows) {
        d->ops->kv_from_rows(rows, tmp, c->kv_chunk, kv_width(c), kv_elem(c));
        src = tmp;
    }
    if (d->ops->copy_in(d, p, src, c->chunk_bytes))
        return lyra_err(err, LYRA_ERR_RUNTIME, d->id, "copying the KV cache of layer %d", l);
    return LYRA_OK;
}

/* ---------------------------------------------------------------- scratch */

lyra_scratch_need lyra_runtime_scratch_need(const lyra_model *m, const int *module_dev, int di,
                                            int n_batch) {
    const lyra_llama *a = m->arch;
    lyra_device *d = m->dev[di];
    lyra_scratch_need s = {0, 0, 0, 0, 0};
    int n_mod = lyra_llama_n_modules(a);
    for (int i = 0; i < n_mod; i++) {
        if (module_dev[i] != di) continue;
        if (m->module_rank && m->module_rank[i] != m->rank) continue; /* another rank's */
        s.any = 1;
        lyra_module_kind k = lyra_llama_module_kind(a, i, NULL);
        if (k == LYRA_MODULE_LAYER) s.has_layers = 1;
        if (k == LYRA_MODULE_HEAD) s.has_head = 1;
        size_t w = lyra_llama_work_bytes(a, d, i, i + 1, n_batch);
        if (w > s.work) s.work = w;
    }
    if (s.any)
        s.bytes = lyra_llama_buffers_bytes(a, n_batch, s.has_layers, s.has_head) +
                  ((s.work + 63) & ~(size_t)63);
    return s;
}

/* The scratch device di needs for the model's placement now. */
static lyra_scratch_need need_of(const lyra_context *c, int di) {
    return lyra_runtime_scratch_need(c->model, c->model->module_dev, di, c->n_batch);
}

/* Adopt a new scratch p (NULL when none is needed) of need s for device di,
 * freeing the old one, and carve the buffers. */
void lyra_runtime_set_scratch(lyra_context *c, int di, const lyra_scratch_need *s, void *p) {
    lyra_device *d = c->model->dev[di];
    lyra_ctx_dev *cd = &c->cd[di];
    if (cd->scratch) d->ops->free(d, cd->scratch, cd->scratch_bytes);
    memset(&c->run.buf[di], 0, sizeof c->run.buf[di]);
    cd->scratch = p;
    cd->scratch_bytes = p ? s->bytes : 0;
    cd->work_bytes = p ? s->work : 0;
    cd->has_layers = s->has_layers;
    cd->has_head = s->has_head;
    cd->work = NULL;
    if (!p) return;
    size_t act = lyra_llama_buffers_bytes(c->model->arch, c->n_batch, s->has_layers, s->has_head);
    lyra_llama_buffers_carve(c->model->arch, c->n_batch, s->has_layers, s->has_head, p, &c->run.buf[di]);
    cd->work = s->work ? (char *)p + act : NULL;
}

/* Lay the buffers of need s out again in device di's current scratch (at
 * least s->bytes long), keeping the allocation. */
static void recarve(lyra_context *c, int di, const lyra_scratch_need *s) {
    lyra_ctx_dev *cd = &c->cd[di];
    memset(&c->run.buf[di], 0, sizeof c->run.buf[di]);
    cd->has_layers = s->has_layers;
    cd->has_head = s->has_head;
    cd->work_bytes = s->work;
    size_t act = lyra_llama_buffers_bytes(c->model->arch, c->n_batch, s->has_layers, s->has_head);
    lyra_llama_buffers_carve(c->model->arch, c->n_batch, s->has_layers, s->has_head, cd->scratch,
                             &c->run.buf[di]);
    cd->work = s->work ? (char *)cd->scratch + act : NULL;
}


/* ---------------------------------------------------------- move a module */

/* 1 when some layer (resident or on disk) runs on device di. */
static int runs_a_layer(const lyra_model *m, int di) {
    for (int l = 0; l < m->arch->hp.n_layer; l++)
        if (m->module_dev[l + 1] == di) return 1;
    return 0;
}

/* 1 when a module other than mi, resident on device di, reads bytes p. */
static int used_elsewhere(lyra_model *m, int mi, int di, const void *p) {
    int n_mod = lyra_llama_n_modules(m->arch);
    for (int j = 0; j < n_mod; j++) {
        if (j == mi || m->module_dev[j] != di || m->module_disk[j]) continue;
        lyra_weight *w[LYRA_MODULE_MAX_WEIGHTS];
        int n = lyra_llama_module_weights(m->arch, j, w);
        for (int k = 0; k < n; k++)
            if (w[k]->data == p) return 1;
    }
    return 0;
}

/* Move module mi (a layer with its KV cache, or the embedding, norm or head)
 * to device dst (to_disk: the disk tier; dst is then the CPU, which runs disk
 * modules and holds their KV cache). Everything on the target is allocated
 * before anything is freed; on failure (*oom says where when it is an
 * allocation) nothing changes. */
int lyra_runtime_move_module(lyra_context *c, int mi, int dst, int to_disk, lyra_oom *oom,
                             lyra_error *err) {
    lyra_model *m = c->model;
    lyra_llama *a = m->arch;
    const lyra_llama_hparams *hp = &a->hp;
    int layer = -1;
    const int is_layer = lyra_llama_module_kind(a, mi, &layer) == LYRA_MODULE_LAYER;
    const int src = m->module_dev[mi], was_disk = m->module_disk[mi];
    oom->dev = -1;
    if (src == dst && was_disk == to_disk) return LYRA_OK;
    lyra_device *ds = m->dev[src], *dd = m->dev[dst];
    const char *op = lyra_llama_module_missing_op(a, mi, dd);
    if (op) {
        char name[64];
        lyra_llama_module_name(a, mi, name, sizeof name);
        return lyra_err(err, LYRA_ERR_INPUT, "move_layer",
                        "%s (%s) needs the device op '%s', which device %s (%s) does not have",
                        name, a->desc.name, op, dd->id, dd->backend);
    }
    lyra_weight *w[LYRA_MODULE_MAX_WEIGHTS];
    int nw = lyra_llama_module_weights(a, mi, w), rc = LYRA_OK;
    int old_placed = m->n_placed;
    const int kv_moves = is_layer && src != dst; /* the KV cache lives where the layer runs */
    int32_t nk = 0; /* KV chunks to move: the layer's, in every sequence */
    for (int q = 0; q < c->n_seq && kv_moves; q++) /* (a layer handed to another rank has none left) */
        for (int32_t k = 0; k < lyra_kv_layer_chunks(c, q, layer); k++) nk += *lyra_kv_slot(c, q, layer, 0, k) != NULL;
    void **kvp = malloc(((size_t)nk + 1) * sizeof *kvp);
    void *host_kv = malloc(c->chunk_bytes ? c->chunk_bytes : 1);
    /* the two devices' KV layouts differ: convert through rows on the host */
    const int convert = kv_moves && (ds->ops->kv_to_rows != dd->ops->kv_to_rows ||
                                     ds->ops->kv_from_rows != dd->ops->kv_from_rows);
    void *rows_kv = convert ? malloc(c->chunk_bytes ? c->chunk_bytes : 1) : NULL;
    void *scr = NULL;
    uint64_t cpu_mapped0 = m->dev[m->cpu]->stats.mapped;
    if (!kvp || !host_kv || (convert && !rows_kv)) {
        free(kvp);
        free(host_kv);
        free(rows_kv);
        return lyra_err(err, LYRA_ERR_OOM, "move_layer", "out of memory");
    }
    /* 1. weights on the target (from the mapping), rope_freqs if it has none */
    const void *host[LYRA_MODULE_MAX_WEIGHTS], *old[LYRA_MODULE_MAX_WEIGHTS];
    for (int k = 0; k < nw; k++) {
        host[k] = old[k] = w[k]->data;
        if (w[k] == &a->rope_freqs) continue;
        for (int j = 0; j < m->n_placed; j++)
            if (m->placed[j].dev == src && m->placed[j].ptr && m->placed[j].ptr == w[k]->data)
                host[k] = m->placed[j].host;
    }
    for (int k = 0; k < nw && !rc && !to_disk; k++) {
        if (w[k] == &a->rope_freqs) continue;
        int dup = -1; /* a tensor already on the target (the tied embedding) */
        for (int j = 0; j < m->n_placed && dup < 0; j++)
            if (m->placed[j].dev == dst && m->placed[j].host == host[k]) dup = j;
        if (dup >= 0) continue;
        if ((rc = lyra_runtime_place(m, dst, w[k], host[k], oom, err))) break;
    }
    if (!rc && is_layer && a->has_rope_freqs && !m->rope_dev[dst])
        rc = lyra_runtime_place(m, dst, &a->rope_freqs, a->rope_freqs.data, oom, err);
    /* 2. the KV chunks on the target */
    int32_t got = 0;
    for (; !rc && got < nk; got++) {
        if ((rc = lyra_runtime_alloc(m, dst, c->chunk_bytes, &kvp[got], oom))) {
            char why[160];
            lyra_runtime_oom_text(m, oom, why, sizeof why);
            rc = lyra_err(err, rc, dd->id, "the KV cache of layer %d: %s", layer, why);
            break;
        }
    }
    /* 3. scratch on the target, sized for the new placement (not while the
     * context is being made: alloc_scratch does it) */
    int saved_dev = m->module_dev[mi];
    unsigned char saved_disk = m->module_disk[mi];
    m->module_dev[mi] = dst;
    m->module_disk[mi] = (unsigned char)to_disk;
    lyra_scratch_need sn = need_of(c, dst);
    int grow = !rc && sn.bytes != c->cd[dst].scratch_bytes && (c->cd[dst].scratch || !c->making);
    if (grow && (rc = lyra_runtime_alloc(m, dst, sn.bytes, &scr, oom))) {
        char why[160];
        lyra_runtime_oom_text(m, oom, why, sizeof why);
        rc = lyra_err(err, rc, dd->id, "scratch: %s", why);
    }
    if (rc) { /* roll back: free what was added, nothing else changed */
        m->module_dev[mi] = saved_dev;
        m->module_disk[mi] = saved_disk;
        for (int32_t k = 0; k < got; k++) dd->ops->free(dd, kvp[k], c->chunk_bytes);
        for (int j = m->n_placed - 1; j >= old_placed; j--) {
            if (m->placed[j].w == &a->rope_freqs) m->rope_dev[dst] = NULL;
            lyra_runtime_unplace(m, j);
        }
        m->n_placed = old_placed;
        free(kvp);
        free(host_kv);
        free(rows_kv);
        return rc;
    }
    /* 4. commit: copy the KV cache over, switch pointers, free the old */
    const int64_t kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    const lyra_type kvt = c->kv_type == LYRA_KV_F32 ? LYRA_TYPE_F32 : LYRA_TYPE_F16;
    int32_t ki = 0; /* index into kvp: sequence by sequence, chunk by chunk */
    for (int q = 0; q < c->n_seq && kv_moves; q++)
        for (int32_t k = 0; k < lyra_kv_layer_chunks(c, q, layer); k++) {
            void **kp = lyra_kv_slot(c, q, layer, 0, k);
            if (!*kp) continue;
            void *in = host_kv;
            int r2 = ds->ops->copy_out(ds, host_kv, *kp, c->chunk_bytes);
            if (!r2 && convert) {
                void *rows = host_kv;
                if (ds->ops->kv_to_rows) {
                    ds->ops->kv_to_rows(host_kv, rows_kv, c->kv_chunk, kv_dim, kvt);
                    rows = rows_kv;
                }
                in = rows == host_kv ? rows_kv : host_kv;
                if (dd->ops->kv_from_rows) dd->ops->kv_from_rows(rows, in, c->kv_chunk, kv_dim, kvt);
                else in = rows;
            }
            if (!r2) r2 = dd->ops->copy_in(dd, kvp[ki], in, c->chunk_bytes);
            if (r2 && !rc) rc = lyra_err(err, r2, "move_layer", "copying the KV cache of layer %d", layer);
            ds->ops->free(ds, *kp, c->chunk_bytes);
            c->cd[src].kv_bytes -= c->chunk_bytes;
            c->cd[dst].kv_bytes += c->chunk_bytes;
            *kp = kvp[ki];
            *lyra_kv_slot(c, q, layer, 1, k) = (char *)kvp[ki] + c->chunk_bytes / 2;
            ki++;
        }
    /* spare chunks (allocated ahead by a failed grow) stay behind: free them */
    for (int q = 0; q < c->n_seq && kv_moves; q++)
        for (int32_t k = lyra_kv_layer_chunks(c, q, layer); k < c->n_chunks_max; k++) {
            void **kp = lyra_kv_slot(c, q, layer, 0, k);
            if (!*kp) continue;
            ds->ops->free(ds, *kp, c->chunk_bytes);
            c->cd[src].kv_bytes -= c->chunk_bytes;
            *kp = NULL;
            *lyra_kv_slot(c, q, layer, 1, k) = NULL;
        }
    for (int j = old_placed; j < m->n_placed; j++)
        if (m->placed[j].w == &a->rope_freqs)
            m->rope_dev[dst] = m->placed[j].ptr ? m->placed[j].ptr : m->placed[j].host;
    for (int k = 0; k < nw; k++) { /* the module's weights: their copy on the target */
        if (w[k] == &a->rope_freqs) continue;
        w[k]->data = host[k];
        if (to_disk) continue; /* read through the mapping from now on */
        for (int j = 0; j < m->n_placed; j++)
            if (m->placed[j].dev == dst && m->placed[j].host == host[k]) {
                if (m->placed[j].ptr) w[k]->data = m->placed[j].ptr;
                break;
            }
    }
    /* the module's old weights: unplaced unless another module there reads them */
    int o = 0;
    for (int j = 0; j < m->n_placed; j++) {
        lyra_placed *pl = &m->placed[j];
        int mine = 0;
        if (j < old_placed && pl->dev == src && pl->w != &a->rope_freqs && !was_disk)
            for (int k = 0; k < nw; k++)
                mine |= w[k] != &a->rope_freqs && (pl->ptr ? pl->ptr : pl->host) == old[k];
        if (mine && used_elsewhere(m, mi, src, pl->ptr ? pl->ptr : pl->host)) mine = 0;
        if (mine) lyra_runtime_unplace(m, j);
        else m->placed[o++] = *pl;
    }
    m->n_placed = o;
    for (int k = 0; k < nw; k++) { /* the disk tier's bytes */
        if (w[k] == &a->rope_freqs) continue;
        if (was_disk) m->disk_weights -= w[k]->n_bytes;
        if (to_disk) m->disk_weights += w[k]->n_bytes;
    }
    /* the source's rope_freqs goes when it runs no layer any more */
    if (a->has_rope_freqs && !runs_a_layer(m, src) && m->rope_dev[src]) {
        for (int j = 0; j < m->n_placed; j++)
            if (m->placed[j].dev == src && m->placed[j].w == &a->rope_freqs) {
                lyra_runtime_unplace(m, j);
                m->placed[j] = m->placed[--m->n_placed];
                break;
            }
        m->rope_dev[src] = NULL;
    }
    /* the CPU's budget caps what it allocates next to what it maps in place:
     * weights mapped on (or off) the CPU take from (or give back to) it */
    lyra_device *cpu = m->dev[m->cpu];
    uint64_t cpu_mapped1 = cpu->stats.mapped;
    if (cpu->budget) {
        if (cpu_mapped1 > cpu_mapped0) {
            uint64_t dlt = cpu_mapped1 - cpu_mapped0;
            cpu->budget = cpu->budget > dlt ? cpu->budget - dlt : 1;
        } else {
            cpu->budget += cpu_mapped0 - cpu_mapped1;
        }
    }
    if (grow) lyra_runtime_set_scratch(c, dst, &sn, scr);
    /* the source's scratch shrinks to what it still needs; when the smaller
     * one cannot be allocated, the larger one it has serves */
    lyra_scratch_need ss = need_of(c, src);
    if (!ss.any) {
        if (c->cd[src].scratch) lyra_runtime_set_scratch(c, src, &ss, NULL);
    } else if (c->cd[src].scratch && ss.bytes != c->cd[src].scratch_bytes) {
        void *p = NULL;
        if (lyra_device_alloc(ds, ss.bytes, &p) == LYRA_OK) lyra_runtime_set_scratch(c, src, &ss, p);
        else if (ss.bytes <= c->cd[src].scratch_bytes) recarve(c, src, &ss);
        else if (!rc)
            rc = lyra_err(err, LYRA_ERR_OOM, ds->id, "out of memory for %zu bytes of scratch", ss.bytes);
    }
    if (m->n_dev > 1 && !c->stage) {
        c->stage = malloc((size_t)c->n_batch * (size_t)hp->n_embd * sizeof(float));
        c->run.stage = c->stage;
        if (!c->stage && !rc) rc = lyra_err(err, LYRA_ERR_OOM, "move_layer", "out of memory");
    }
    free(kvp);
    free(host_kv);
    free(rows_kv);
    return rc;
}

int lyra_context_move_layer(lyra_context *c, int32_t layer, const char *device_id, lyra_error *err) {
    lyra_model *m = c->model;
    const lyra_llama_hparams *hp = &m->arch->hp;
    if (layer < 0 || layer >= hp->n_layer)
        return lyra_err(err, LYRA_ERR_INPUT, "move_layer", "no layer %d (the model has %d)", (int)layer,
                        (int)hp->n_layer);
    int dst = -1, to_disk = device_id && !strcmp(device_id, "disk");
    if (to_disk) dst = m->cpu;
    for (int j = 0; j < m->n_dev && !to_disk; j++)
        if (device_id && !strcmp(m->dev[j]->id, device_id)) dst = j;
    if (dst < 0)
        return lyra_err(err, LYRA_ERR_INPUT, "move_layer", "no device \"%s\"", device_id ? device_id : "");
    if (m->n_contexts != 1)
        return lyra_err(err, LYRA_ERR_INPUT, "move_layer",
                        "the model has %d contexts; a layer moves with one context only", m->n_contexts);
    lyra_oom oom;
    return lyra_runtime_move_module(c, layer + 1, dst, to_disk, &oom, err);
}
