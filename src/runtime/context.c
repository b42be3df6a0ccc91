/* context.c: lyra_context (lyra.h): the KV cache (chunks of kv_chunk
 * positions allocated through the devices as the sequence grows), scratch
 * for n_batch tokens, lyra_eval in batches, logits, the map lines and the
 * device usage, moving a layer between devices, and the progressive
 * fallback between two tokens (step_down). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/pool.h"
#include "runtime/runtime.h"
#include "plan/size.h"

lyra_context_params lyra_context_default_params(void) {
    lyra_context_params p = {.n_ctx = 0, .n_batch = 512, .n_threads = 0, .kv_type = LYRA_KV_F16};
    return p;
}

static size_t kv_elem_bytes(lyra_kv_type t) { return t == LYRA_KV_F32 ? 4 : 2; }

/* Device of layer l. */
static int layer_dev(const lyra_context *c, int l) { return c->model->module_dev[l + 1]; }

/* Free everything the context allocated on the devices. */
static void release(lyra_context *c) {
    lyra_model *m = c->model;
    if (c->kv_ptrs)
        for (int l = 0; l < m->arch->hp.n_layer; l++) {
            lyra_device *d = m->dev[layer_dev(c, l)];
            for (int32_t k = 0; k < c->n_chunks_max; k++) {
                void *p = c->kv_ptrs[(size_t)l * 2 * c->n_chunks_max + k];
                if (p) d->ops->free(d, p, c->chunk_bytes);
            }
        }
    for (int i = 0; i < m->n_dev; i++) {
        lyra_device *d = m->dev[i];
        lyra_ctx_dev *cd = &c->cd[i];
        if (cd->scratch) d->ops->free(d, cd->scratch, cd->scratch_bytes);
        if (d->ops->set_work) d->ops->set_work(d, NULL, 0);
    }
}

void lyra_context_free(lyra_context *c) {
    if (!c) return;
    release(c);
    c->model->n_contexts--;
    free(c->kv_ptrs);
    free(c->kv);
    free(c->pos_buf);
    free(c->stage);
    free(c->logits);
    free(c);
}

static lyra_scratch_need need_of(const lyra_context *c, int di) {
    return lyra_runtime_scratch_need(c->model, c->model->module_dev, di, c->n_batch);
}

/* Adopt a new scratch p (NULL when none is needed) of need s for device di,
 * freeing the old one, and carve the buffers. */
static void set_scratch(lyra_context *c, int di, const lyra_scratch_need *s, void *p) {
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

static int step_down(lyra_context *c, const lyra_oom *oom, int phase, lyra_error *err);

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

/* Allocate scratch on every device: activations for n_batch tokens (logits
 * on the head's device) and the largest matmul work its modules need. A GPU
 * that cannot hold it gives up layers (progressive fallback). */
static int alloc_scratch(lyra_context *c, lyra_error *err) {
    lyra_model *m = c->model;
    for (int di = 0; di < m->n_dev; di++) {
        lyra_device *d = m->dev[di];
        lyra_scratch_need s = need_of(c, di);
        if (!s.any || (c->cd[di].scratch && c->cd[di].scratch_bytes == s.bytes)) continue;
        void *p;
        lyra_oom oom;
        int rc = lyra_runtime_alloc(m, di, s.bytes, &p, &oom);
        if (rc) {
            char why[160];
            lyra_runtime_oom_text(m, &oom, why, sizeof why);
            lyra_err(err, rc, d->id, "scratch for n_batch %d: %s", (int)c->n_batch, why);
            if (!m->fallback || (rc = step_down(c, &oom, LYRA_PHASE_LOAD, err))) return rc;
            di = -1; /* placements changed: look at every device again */
            continue;
        }
        set_scratch(c, di, &s, p);
    }
    return LYRA_OK;
}

/* Threads of the CPU and of the simulated GPUs' compute devices. */
static int set_threads(lyra_context *c, lyra_error *err) {
    lyra_model *m = c->model;
    for (int di = 0; di < m->n_dev; di++) {
        lyra_device *d = m->dev[di];
        if (lyra_device_is_sim(d)) d = lyra_sim_device_compute(d);
        else if (strcmp(d->backend, "cpu")) continue;
        int rc = lyra_cpu_device_set_threads(d, c->n_threads, err);
        if (rc) return rc;
    }
    return LYRA_OK;
}

/* The disk tier: after a disk module ran, drop its pages from memory (a
 * tensor that some device also uses in place is kept). */
static void after_module(void *user, int i) {
    lyra_context *c = user;
    lyra_model *m = c->model;
    if (!m->module_disk[i]) return;
    lyra_weight *w[10];
    int n = lyra_llama_module_weights(m->arch, i, w);
    for (int k = 0; k < n; k++) {
        if (w[k] == &m->arch->rope_freqs) continue;
        int used = 0;
        for (int j = 0; j < m->n_placed; j++)
            if (m->placed[j].host == w[k]->data) used = 1;
        if (!used && !lyra_runtime_in_qbuf(m, w[k]->data)) /* quantized on load: heap, keep */
            lyra_runtime_release_pages(w[k]->data, w[k]->n_bytes);
    }
}

int lyra_context_new(lyra_model *m, const lyra_context_params *params, lyra_context **out,
                     lyra_error *err) {
    *out = NULL;
    lyra_context_params p = params ? *params : lyra_context_default_params();
    const lyra_llama *a = m->arch;
    const lyra_llama_hparams *hp = &a->hp;
    if (m->probe)
        return lyra_err(err, LYRA_ERR_INPUT, "context", "the model was opened as a probe (no weights)");
    if (p.n_ctx < 0) return lyra_err(err, LYRA_ERR_INPUT, "n_ctx", "must be >= 0, got %d", p.n_ctx);
    if (p.n_batch < 0)
        return lyra_err(err, LYRA_ERR_INPUT, "n_batch", "must be >= 0, got %d", p.n_batch);
    if (p.n_threads < 0)
        return lyra_err(err, LYRA_ERR_INPUT, "n_threads", "must be >= 0, got %d", p.n_threads);
    if (p.kv_type != LYRA_KV_F16 && p.kv_type != LYRA_KV_F32)
        return lyra_err(err, LYRA_ERR_INPUT, "kv_type", "unknown KV cache type %d", (int)p.kv_type);
    int shrunk = 0; /* the context policy halved the context at load */
    for (int i = 0; i < m->n_steps; i++)
        shrunk |= m->steps[i].phase == LYRA_PHASE_LOAD && !strcmp(m->steps[i].what, "ctx");
    if (shrunk && p.n_ctx > m->n_ctx) {
        LYRA_WARN("context: %d positions, not %d: the fallback's context policy shrank it at load",
                  (int)m->n_ctx, (int)p.n_ctx);
        p.n_ctx = m->n_ctx;
    }
    lyra_context *c = calloc(1, sizeof *c);
    if (!c) return lyra_err(err, LYRA_ERR_OOM, "context", "out of memory");
    c->model = m;
    m->n_contexts++;
    c->n_ctx = p.n_ctx ? p.n_ctx : m->n_ctx;
    c->n_batch = p.n_batch ? p.n_batch : 512;
    if (c->n_batch > c->n_ctx) c->n_batch = c->n_ctx;
    c->n_threads = p.n_threads ? p.n_threads : lyra_physical_cores();
    c->kv_type = p.kv_type;
    c->kv_chunk = m->kv_chunk;
    if (p.n_ctx > hp->n_ctx_train)
        LYRA_WARN("n_ctx %d is larger than the %d positions the model was trained on",
                  (int)p.n_ctx, (int)hp->n_ctx_train);
    int rc = LYRA_OK;
    /* KV cache bookkeeping (memory comes chunk by chunk in lyra_eval) */
    c->n_chunks_max = (c->n_ctx + c->kv_chunk - 1) / c->kv_chunk;
    c->kv_ptrs = calloc((size_t)hp->n_layer * 2 * (size_t)c->n_chunks_max, sizeof *c->kv_ptrs);
    c->kv = calloc((size_t)hp->n_layer, sizeof *c->kv);
    c->pos_buf = calloc((size_t)c->n_batch, sizeof *c->pos_buf);
    if (!c->kv_ptrs || !c->kv || !c->pos_buf) {
        rc = lyra_err(err, LYRA_ERR_OOM, "context", "out of memory");
        goto fail;
    }
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    c->chunk_bytes = 2 * (size_t)c->kv_chunk * kv_dim * kv_elem_bytes(c->kv_type);
    for (int l = 0; l < hp->n_layer; l++) {
        c->kv[l].k_chunks = c->kv_ptrs + (size_t)l * 2 * c->n_chunks_max;
        c->kv[l].v_chunks = c->kv_ptrs + ((size_t)l * 2 + 1) * c->n_chunks_max;
        c->kv[l].chunk_len = c->kv_chunk;
        c->kv[l].kv_type = c->kv_type == LYRA_KV_F32 ? LYRA_TYPE_F32 : LYRA_TYPE_F16;
    }
    if (m->n_dev > 1) {
        c->stage = malloc((size_t)c->n_batch * (size_t)hp->n_embd * sizeof(float));
        if (!c->stage) {
            rc = lyra_err(err, LYRA_ERR_OOM, "context", "out of memory");
            goto fail;
        }
    }
    c->run.n_dev = m->n_dev;
    for (int di = 0; di < m->n_dev; di++) c->run.dev[di] = m->dev[di];
    c->run.module_dev = m->module_dev;
    c->run.kv = c->kv;
    c->run.n_batch = c->n_batch;
    c->run.pos = c->pos_buf;
    c->run.stage = c->stage;
    c->run.rope_freqs = m->rope_dev;
    c->run.after_module = after_module; /* the disk tier (layers may go there later) */
    c->run.user = c;
    c->making = 1;
    rc = alloc_scratch(c, err);
    c->making = 0;
    if (rc) goto fail;
    if ((rc = set_threads(c, err))) goto fail;
    *out = c;
    return LYRA_OK;
fail:
    lyra_context_free(c);
    return rc;
}

int32_t lyra_context_n_ctx(const lyra_context *c) { return c->n_ctx; }
int32_t lyra_context_pos(const lyra_context *c) { return c->pos; }

void lyra_context_truncate(lyra_context *c, int32_t pos) {
    if (pos < 0) pos = 0;
    if (pos < c->pos) c->pos = pos;
}

/* Make the cache hold positions [0, n_pos): allocate the missing chunk of
 * every layer on its device. On failure (*oom says where) nothing the caller
 * sees changes (chunks already added stay as spare capacity). */
static int grow_kv(lyra_context *c, int32_t n_pos, lyra_oom *oom, lyra_error *err) {
    lyra_model *m = c->model;
    const lyra_llama_hparams *hp = &m->arch->hp;
    int32_t need = (n_pos + c->kv_chunk - 1) / c->kv_chunk;
    size_t half = c->chunk_bytes / 2; /* K or V of one layer */
    while (c->n_chunks < need) {
        int32_t k = c->n_chunks;
        for (int l = 0; l < hp->n_layer; l++) {
            void **kp = &c->kv_ptrs[(size_t)l * 2 * c->n_chunks_max + k];
            if (*kp) continue;
            int di = layer_dev(c, l);
            void *p;
            int rc = lyra_runtime_alloc(m, di, c->chunk_bytes, &p, oom);
            if (rc) {
                char why[160];
                lyra_runtime_oom_text(m, oom, why, sizeof why);
                return lyra_err(err, rc, m->dev[di]->id, "the KV cache of layer %d at position %d: %s",
                                l, (int)k * c->kv_chunk, why);
            }
            *kp = p;
            c->kv_ptrs[((size_t)l * 2 + 1) * c->n_chunks_max + k] = (char *)p + half;
            c->cd[di].kv_bytes += c->chunk_bytes;
        }
        c->n_chunks++;
    }
    return LYRA_OK;
}

int lyra_eval(lyra_context *c, const int32_t *tokens, int32_t n, int logits_all, lyra_error *err) {
    lyra_model *m = c->model;
    const lyra_llama_hparams *hp = &m->arch->hp;
    if (n <= 0) return lyra_err(err, LYRA_ERR_INPUT, "eval", "no tokens to evaluate");
    if (n > c->n_ctx - c->pos)
        return lyra_err(err, LYRA_ERR_INPUT, "eval",
                        "%d tokens at position %d overflow the context of %d", (int)n, (int)c->pos,
                        (int)c->n_ctx);
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= hp->n_vocab)
            return lyra_err(err, LYRA_ERR_INPUT, "eval", "token %d (at %d) is not in the vocabulary of %d",
                            (int)tokens[i], (int)i, (int)hp->n_vocab);
    int rc;
    for (;;) { /* the KV cache; out of memory: step down between two tokens */
        lyra_oom oom;
        oom.dev = -1;
        rc = grow_kv(c, c->pos + n, &oom, err);
        if (rc != LYRA_ERR_OOM || oom.dev < 0 || !m->fallback) break;
        if ((rc = step_down(c, &oom, LYRA_PHASE_GENERATE, err))) break;
    }
    if (rc) return rc;
    size_t rows = logits_all ? (size_t)n : 1, need = rows * (size_t)hp->n_vocab;
    if (need > c->logits_cap) {
        float *l = malloc(need * sizeof(float));
        if (!l)
            return lyra_err(err, LYRA_ERR_OOM, "eval", "out of memory for %zu logits", need);
        free(c->logits);
        c->logits = l;
        c->logits_cap = need;
    }
    if ((rc = set_threads(c, err))) return rc;
    for (int di = 0; di < m->n_dev; di++) {
        lyra_device *d = m->dev[di];
        if (d->ops->set_work) d->ops->set_work(d, c->cd[di].work, c->cd[di].work_bytes);
    }
    c->n_last = 0;
    for (int32_t i0 = 0; i0 < n; i0 += c->n_batch) {
        int nb = n - i0 < c->n_batch ? (int)(n - i0) : (int)c->n_batch;
        int last = i0 + nb == n;
        int n_out = logits_all ? nb : (last ? 1 : 0);
        float *dst = logits_all ? c->logits + (size_t)i0 * hp->n_vocab : c->logits;
        rc = lyra_llama_forward(m->arch, &c->run, tokens + i0, nb, c->pos + i0, n_out, dst, err);
        if (rc) return rc;
    }
    c->pos += n;
    c->n_last = n;
    c->logits_all = logits_all != 0;
    return LYRA_OK;
}

const float *lyra_get_logits(const lyra_context *c, int32_t i) {
    if (c->n_last <= 0) return NULL;
    if (i == -1) i = c->n_last - 1;
    if (i < 0 || i >= c->n_last) return NULL;
    if (c->logits_all) return c->logits + (size_t)i * (size_t)c->model->arch->hp.n_vocab;
    return i == c->n_last - 1 ? c->logits : NULL;
}

/* ------------------------------------------------------------ usage, maps */

int lyra_context_n_devices(const lyra_context *c) { return c->model->n_dev; }

int lyra_context_device_usage(const lyra_context *c, int i, lyra_device_usage *out) {
    const lyra_model *m = c->model;
    if (i < 0 || i >= m->n_dev) return LYRA_ERR_INPUT;
    memset(out, 0, sizeof *out);
    snprintf(out->id, sizeof out->id, "%s", m->dev[i]->id);
    snprintf(out->kind, sizeof out->kind, "%s", m->dev[i]->kind);
    out->weights = m->dev_weights[i];
    out->kv = c->cd[i].kv_bytes;
    out->scratch = c->cd[i].scratch_bytes;
    return LYRA_OK;
}

size_t lyra_format_bytes(uint64_t n, char *buf, size_t cap) {
    if (n < 1024) { /* lyra.h: always one decimal ("512.0 B") */
        int k = snprintf(buf, cap, "%llu.0 B", (unsigned long long)n);
        return k < 0 ? 0 : (size_t)k;
    }
    return lyra_size_format(n, buf, cap); /* one formatter: plan/size.h */
}

/* Append to buf (bounded); returns the new total length. */
static size_t put(char *buf, size_t cap, size_t o, const char *fmt, const char *s) {
    int k = snprintf(o < cap ? buf + o : NULL, o < cap ? cap - o : 0, fmt, s);
    return o + (k > 0 ? (size_t)k : 0);
}

/* The modules of device di (disk: the disk tier) as " name name-range ...". */
static size_t put_modules(const lyra_context *c, int di, int disk, char *buf, size_t cap, size_t o) {
    const lyra_model *m = c->model;
    const lyra_llama *a = m->arch;
    int n_mod = lyra_llama_n_modules(a);
    char tmp[96];
#define ON(i) (m->module_dev[i] == di && m->module_disk[i] == disk)
    for (int i = 0; i < n_mod; i++) {
        if (!ON(i)) continue;
        int layer;
        if (lyra_llama_module_kind(a, i, &layer) == LYRA_MODULE_LAYER) {
            int j = i; /* run of consecutive layers on this device */
            while (j + 1 < n_mod && ON(j + 1) && lyra_llama_module_kind(a, j + 1, NULL) == LYRA_MODULE_LAYER)
                j++;
            if (j > i) snprintf(tmp, sizeof tmp, " model.layers.%d-%d", layer, layer + j - i);
            else snprintf(tmp, sizeof tmp, " model.layers.%d", layer);
            i = j;
        } else {
            tmp[0] = ' ';
            lyra_llama_module_name(a, i, tmp + 1, sizeof tmp - 1);
        }
        o = put(buf, cap, o, "%s", tmp);
    }
#undef ON
    return o;
}

size_t lyra_context_map_lines(const lyra_context *c, char *buf, size_t cap) {
    const lyra_model *m = c->model;
    size_t o = 0;
    if (cap) buf[0] = '\0';
    for (int di = 0; di < m->n_dev; di++) {
        char tmp[160];
        snprintf(tmp, sizeof tmp, "map: %s (%s)", m->dev[di]->id, m->dev[di]->kind);
        o = put(buf, cap, o, "%s", tmp);
        o = put_modules(c, di, 0, buf, cap, o);
        char w[32], kv[32], sc[32];
        lyra_format_bytes(m->dev_weights[di], w, sizeof w);
        lyra_format_bytes(c->cd[di].kv_bytes, kv, sizeof kv);
        lyra_format_bytes(c->cd[di].scratch_bytes, sc, sizeof sc);
        snprintf(tmp, sizeof tmp, " weights %s kv %s scratch %s\n", w, kv, sc);
        o = put(buf, cap, o, "%s", tmp);
    }
    int any_disk = 0;
    for (int i = 0; i < lyra_llama_n_modules(m->arch); i++) any_disk |= m->module_disk[i];
    if (any_disk) { /* the disk tier: run on the CPU from the mapping, KV and scratch there */
        char tmp[160], w[32];
        o = put(buf, cap, o, "%s", "map: disk (disk)");
        o = put_modules(c, m->cpu, 1, buf, cap, o);
        lyra_format_bytes(m->disk_weights, w, sizeof w);
        snprintf(tmp, sizeof tmp, " weights %s (mapped, read on use; kv and scratch on cpu)\n", w);
        o = put(buf, cap, o, "%s", tmp);
    }
    return o;
}

/* ------------------------------------------------------------ move a layer */

static int is_gpu_dev(const lyra_model *m, int di) { return strcmp(m->dev[di]->kind, "cpu") != 0; }

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
        lyra_weight *w[10];
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
static int move_module(lyra_context *c, int mi, int dst, int to_disk, lyra_oom *oom, lyra_error *err) {
    lyra_model *m = c->model;
    lyra_llama *a = m->arch;
    const lyra_llama_hparams *hp = &a->hp;
    int layer = -1;
    const int is_layer = lyra_llama_module_kind(a, mi, &layer) == LYRA_MODULE_LAYER;
    const int src = m->module_dev[mi], was_disk = m->module_disk[mi];
    oom->dev = -1;
    if (src == dst && was_disk == to_disk) return LYRA_OK;
    lyra_device *ds = m->dev[src], *dd = m->dev[dst];
    lyra_weight *w[10];
    int nw = lyra_llama_module_weights(a, mi, w), rc = LYRA_OK;
    int old_placed = m->n_placed;
    const int kv_moves = is_layer && src != dst; /* the KV cache lives where the layer runs */
    int32_t nk = kv_moves ? c->n_chunks : 0;
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
    const void *host[10], *old[10];
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
    for (int32_t k = 0; k < nk; k++) {
        void **kp = &c->kv_ptrs[(size_t)layer * 2 * c->n_chunks_max + k];
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
        if (!r2) r2 = dd->ops->copy_in(dd, kvp[k], in, c->chunk_bytes);
        if (r2 && !rc) rc = lyra_err(err, r2, "move_layer", "copying the KV cache of layer %d", layer);
        ds->ops->free(ds, *kp, c->chunk_bytes);
        c->cd[src].kv_bytes -= c->chunk_bytes;
        c->cd[dst].kv_bytes += c->chunk_bytes;
        *kp = kvp[k];
        c->kv_ptrs[((size_t)layer * 2 + 1) * c->n_chunks_max + k] = (char *)kvp[k] + c->chunk_bytes / 2;
    }
    if (kv_moves) /* spare chunks (allocated ahead by a failed grow) stay behind: free them */
        for (int32_t k = c->n_chunks; k < c->n_chunks_max; k++) {
            void **kp = &c->kv_ptrs[(size_t)layer * 2 * c->n_chunks_max + k];
            if (!*kp) continue;
            ds->ops->free(ds, *kp, c->chunk_bytes);
            c->cd[src].kv_bytes -= c->chunk_bytes;
            *kp = NULL;
            c->kv_ptrs[((size_t)layer * 2 + 1) * c->n_chunks_max + k] = NULL;
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
    if (grow) set_scratch(c, dst, &sn, scr);
    /* the source's scratch shrinks to what it still needs; when the smaller
     * one cannot be allocated, the larger one it has serves */
    lyra_scratch_need ss = need_of(c, src);
    if (!ss.any) {
        if (c->cd[src].scratch) set_scratch(c, src, &ss, NULL);
    } else if (c->cd[src].scratch && ss.bytes != c->cd[src].scratch_bytes) {
        void *p = NULL;
        if (lyra_device_alloc(ds, ss.bytes, &p) == LYRA_OK) set_scratch(c, src, &ss, p);
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
    return move_module(c, layer + 1, dst, to_disk, &oom, err);
}

/* The progressive fallback between two tokens: after the allocation *oom
 * failed, move one layer off that device (a GPU's highest-index layer to the
 * CPU, the CPU's highest-index resident layer to disk), record the step, and
 * return LYRA_OK so that the caller retries. When the CPU cannot take the
 * GPU's layer, a CPU layer goes to disk first. LYRA_ERR_OOM (err says why)
 * when there is nothing left to move. */
static int step_down(lyra_context *c, const lyra_oom *oom, int phase, lyra_error *err) {
    lyra_model *m = c->model;
    const int n_mod = lyra_llama_n_modules(m->arch), di = oom->dev, gpu = is_gpu_dev(m, di);
    int mi = -1;
    for (int i = n_mod - 1; i >= 0 && mi < 0; i--) /* the highest-index layer there */
        if (m->module_dev[i] == di && !m->module_disk[i] &&
            lyra_llama_module_kind(m->arch, i, NULL) == LYRA_MODULE_LAYER)
            mi = i;
    for (int i = n_mod - 1; i >= 0 && mi < 0 && gpu; i--) /* a GPU: then embedding, norm, head */
        if (m->module_dev[i] == di) mi = i;
    if (mi < 0 || m->n_contexts != 1) {
        char why[160];
        lyra_runtime_oom_text(m, oom, why, sizeof why);
        return lyra_err(err, LYRA_ERR_OOM, m->dev[di]->id, "%s, and there is no way left (%s)", why,
                        mi < 0 ? (gpu ? "nothing left on it" : "every layer is on disk already")
                               : "several contexts share the model");
    }
    int is_layer = lyra_llama_module_kind(m->arch, mi, NULL) == LYRA_MODULE_LAYER;
    int from = gpu ? lyra_runtime_gpu_layers(m) : lyra_runtime_cpu_layers(m);
    for (int tries = 0; tries <= n_mod; tries++) {
        lyra_oom o2;
        int rc = move_module(c, mi, m->cpu, !gpu, &o2, err);
        if (rc == LYRA_OK) {
            if (is_layer)
                lyra_runtime_fallback_step(m, phase, c->pos, oom, gpu ? "gpu" : "cpu", from, from - 1);
            else {
                char name[64];
                lyra_llama_module_name(m->arch, mi, name, sizeof name);
                lyra_runtime_fallback_step(m, phase, c->pos, oom, "gpu", from, from);
                LYRA_INFO("%s moved to the cpu (out of memory on its GPU)", name);
            }
            return LYRA_OK;
        }
        if (rc != LYRA_ERR_OOM || o2.dev != m->cpu || !gpu) return rc;
        /* the CPU could not take it: make room there first */
        if ((rc = step_down(c, &o2, phase, err))) return rc;
    }
    return lyra_err(err, LYRA_ERR_OOM, m->dev[di]->id, "the fallback found no placement");
}

/* ------------------------------------------------------------- throughput */

uint64_t lyra_context_bytes_per_token(const lyra_context *c, int32_t pos) {
    const lyra_model *m = c->model;
    const lyra_llama *a = m->arch;
    const lyra_llama_hparams *hp = &a->hp;
    if (pos < 0) pos = 0;
    uint64_t b = m->n_bytes;
    if (!a->tied) b -= a->tok_embd.n_bytes; /* only one row of the table is read */
    b += lyra_row_bytes(a->tok_embd.type, hp->n_embd);
    uint64_t kv_dim = (uint64_t)hp->n_head_kv * (uint64_t)hp->head_dim;
    b += (uint64_t)hp->n_layer * 2 * ((uint64_t)pos + 1) * kv_dim * kv_elem_bytes(c->kv_type);
    return b;
}
