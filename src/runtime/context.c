/* context.c: lyra_context (lyra.h): the KV cache (chunks of LYRA_KV_CHUNK
 * positions allocated through the devices as the sequence grows), scratch
 * for n_batch tokens, lyra_eval in batches, logits, the map lines and the
 * device usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/pool.h"
#include "runtime/runtime.h"

lyra_context_params lyra_context_default_params(void) {
    lyra_context_params p = {.n_ctx = 0, .n_batch = 512, .n_threads = 0, .kv_type = LYRA_KV_F16};
    return p;
}

static size_t kv_elem_bytes(lyra_kv_type t) { return t == LYRA_KV_F32 ? 4 : 2; }

/* Free everything the context allocated on the devices. */
static void release(lyra_context *c) {
    lyra_model *m = c->model;
    for (int i = 0; i < m->n_dev; i++) {
        lyra_device *d = m->dev[i];
        lyra_ctx_dev *cd = &c->cd[i];
        if (cd->chunks) {
            for (int32_t k = 0; k < c->n_chunks; k++)
                if (cd->chunks[k]) d->ops->free(d, cd->chunks[k], cd->chunk_bytes);
            free(cd->chunks);
        }
        if (cd->scratch) d->ops->free(d, cd->scratch, cd->scratch_bytes);
        if (d->ops->set_work) d->ops->set_work(d, NULL, 0);
    }
}

void lyra_context_free(lyra_context *c) {
    if (!c) return;
    release(c);
    free(c->kv_ptrs);
    free(c->kv);
    free(c->pos_buf);
    free(c->stage);
    free(c->logits);
    free(c);
}

/* Allocate scratch on every device: activations for n_batch tokens (logits
 * on the head's device) and the largest matmul work its modules need. */
static int alloc_scratch(lyra_context *c, lyra_error *err) {
    lyra_model *m = c->model;
    const lyra_llama *a = m->arch;
    int n_mod = lyra_llama_n_modules(a);
    for (int di = 0; di < m->n_dev; di++) {
        lyra_device *d = m->dev[di];
        lyra_ctx_dev *cd = &c->cd[di];
        int has_layers = 0, has_head = 0, any = 0;
        size_t work = 0;
        for (int i = 0; i < n_mod; i++) {
            if (m->module_dev[i] != di) continue;
            any = 1;
            lyra_module_kind k = lyra_llama_module_kind(a, i, NULL);
            if (k == LYRA_MODULE_LAYER) has_layers = 1;
            if (k == LYRA_MODULE_HEAD) has_head = 1;
            size_t w = lyra_llama_work_bytes(a, d, i, i + 1, c->n_batch);
            if (w > work) work = w;
        }
        if (!any) continue;
        size_t act = lyra_llama_buffers_bytes(a, c->n_batch, has_layers, has_head);
        cd->work_bytes = work;
        cd->scratch_bytes = act + ((work + 63) & ~(size_t)63);
        int rc = d->ops->alloc(d, cd->scratch_bytes, &cd->scratch);
        if (rc)
            return lyra_err(err, rc, d->id, "out of memory for %zu bytes of scratch (n_batch %d)",
                            cd->scratch_bytes, (int)c->n_batch);
        lyra_llama_buffers_carve(a, c->n_batch, has_layers, has_head, cd->scratch, &c->run.buf[di]);
        cd->work = work ? (char *)cd->scratch + act : NULL;
    }
    return LYRA_OK;
}

int lyra_context_new(lyra_model *m, const lyra_context_params *params, lyra_context **out,
                     lyra_error *err) {
    *out = NULL;
    lyra_context_params p = params ? *params : lyra_context_default_params();
    const lyra_llama *a = m->arch;
    const lyra_llama_hparams *hp = &a->hp;
    if (p.n_ctx < 0) return lyra_err(err, LYRA_ERR_INPUT, "n_ctx", "must be >= 0, got %d", p.n_ctx);
    if (p.n_batch < 0)
        return lyra_err(err, LYRA_ERR_INPUT, "n_batch", "must be >= 0, got %d", p.n_batch);
    if (p.n_threads < 0)
        return lyra_err(err, LYRA_ERR_INPUT, "n_threads", "must be >= 0, got %d", p.n_threads);
    if (p.kv_type != LYRA_KV_F16 && p.kv_type != LYRA_KV_F32)
        return lyra_err(err, LYRA_ERR_INPUT, "kv_type", "unknown KV cache type %d", (int)p.kv_type);
    lyra_context *c = calloc(1, sizeof *c);
    if (!c) return lyra_err(err, LYRA_ERR_OOM, "context", "out of memory");
    c->model = m;
    c->n_ctx = p.n_ctx ? p.n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    c->n_batch = p.n_batch ? p.n_batch : 512;
    if (c->n_batch > c->n_ctx) c->n_batch = c->n_ctx;
    c->n_threads = p.n_threads ? p.n_threads : lyra_physical_cores();
    c->kv_type = p.kv_type;
    if (p.n_ctx > hp->n_ctx_train)
        LYRA_WARN("n_ctx %d is larger than the %d positions the model was trained on",
                  (int)p.n_ctx, (int)hp->n_ctx_train);
    int rc = LYRA_OK;
    /* KV cache bookkeeping (memory comes chunk by chunk in lyra_eval) */
    c->n_chunks_max = (c->n_ctx + LYRA_KV_CHUNK - 1) / LYRA_KV_CHUNK;
    c->kv_ptrs = calloc((size_t)hp->n_layer * 2 * (size_t)c->n_chunks_max, sizeof *c->kv_ptrs);
    c->kv = calloc((size_t)hp->n_layer, sizeof *c->kv);
    c->pos_buf = calloc((size_t)c->n_batch, sizeof *c->pos_buf);
    if (!c->kv_ptrs || !c->kv || !c->pos_buf) {
        rc = lyra_err(err, LYRA_ERR_OOM, "context", "out of memory");
        goto fail;
    }
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    for (int l = 0; l < hp->n_layer; l++) {
        c->kv[l].k_chunks = c->kv_ptrs + (size_t)l * 2 * c->n_chunks_max;
        c->kv[l].v_chunks = c->kv_ptrs + ((size_t)l * 2 + 1) * c->n_chunks_max;
        c->kv[l].chunk_len = LYRA_KV_CHUNK;
        c->kv[l].kv_type = c->kv_type == LYRA_KV_F32 ? LYRA_TYPE_F32 : LYRA_TYPE_F16;
        c->cd[m->module_dev[l + 1]].n_layers++;
    }
    for (int di = 0; di < m->n_dev; di++) {
        lyra_ctx_dev *cd = &c->cd[di];
        cd->chunk_bytes = (size_t)cd->n_layers * 2 * LYRA_KV_CHUNK * kv_dim * kv_elem_bytes(c->kv_type);
        if (cd->n_layers) {
            cd->chunks = calloc((size_t)c->n_chunks_max, sizeof *cd->chunks);
            if (!cd->chunks) {
                rc = lyra_err(err, LYRA_ERR_OOM, "context", "out of memory");
                goto fail;
            }
        }
    }
    if (m->n_dev > 1) {
        c->stage = malloc((size_t)c->n_batch * (size_t)hp->n_embd * sizeof(float));
        if (!c->stage) {
            rc = lyra_err(err, LYRA_ERR_OOM, "context", "out of memory");
            goto fail;
        }
    }
    if ((rc = alloc_scratch(c, err))) goto fail;
    for (int di = 0; di < m->n_dev; di++)
        if (!strcmp(m->dev[di]->backend, "cpu") &&
            (rc = lyra_cpu_device_set_threads(m->dev[di], c->n_threads, err)))
            goto fail;
    c->run.n_dev = m->n_dev;
    for (int di = 0; di < m->n_dev; di++) c->run.dev[di] = m->dev[di];
    c->run.module_dev = m->module_dev;
    c->run.kv = c->kv;
    c->run.n_batch = c->n_batch;
    c->run.pos = c->pos_buf;
    c->run.stage = c->stage;
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

/* Make the cache hold positions [0, n_pos): allocate the missing chunks on
 * every device holding layers. On failure nothing the caller sees changes
 * (chunks already added stay as spare capacity). */
static int grow_kv(lyra_context *c, int32_t n_pos, lyra_error *err) {
    lyra_model *m = c->model;
    const lyra_llama_hparams *hp = &m->arch->hp;
    int32_t need = (n_pos + LYRA_KV_CHUNK - 1) / LYRA_KV_CHUNK;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    size_t half = LYRA_KV_CHUNK * kv_dim * kv_elem_bytes(c->kv_type); /* K or V of one layer */
    while (c->n_chunks < need) {
        int32_t k = c->n_chunks;
        for (int di = 0; di < m->n_dev; di++) {
            lyra_ctx_dev *cd = &c->cd[di];
            if (!cd->n_layers || cd->chunks[k]) continue;
            lyra_device *d = m->dev[di];
            int rc = d->ops->alloc(d, cd->chunk_bytes, &cd->chunks[k]);
            if (rc)
                return lyra_err(err, rc, d->id,
                                "out of memory for the KV cache at position %d (%zu more bytes)",
                                (int)k * LYRA_KV_CHUNK, cd->chunk_bytes);
            cd->kv_bytes += cd->chunk_bytes;
        }
        /* point each layer's views at its slices of the chunk */
        int slot[LYRA_MAX_DEVICES] = {0};
        for (int l = 0; l < hp->n_layer; l++) {
            int di = m->module_dev[l + 1];
            char *base = (char *)c->cd[di].chunks[k] + (size_t)slot[di]++ * 2 * half;
            c->kv_ptrs[(size_t)l * 2 * c->n_chunks_max + k] = base;
            c->kv_ptrs[((size_t)l * 2 + 1) * c->n_chunks_max + k] = base + half;
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
    int rc = grow_kv(c, c->pos + n, err);
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
    for (int di = 0; di < m->n_dev; di++) {
        lyra_device *d = m->dev[di];
        if (!strcmp(d->backend, "cpu") && (rc = lyra_cpu_device_set_threads(d, c->n_threads, err)))
            return rc;
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
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    double v = (double)n;
    while (u < 6 && n >= ((uint64_t)1 << (10 * (u + 1)))) u++;
    v = (double)n / (double)((uint64_t)1 << (10 * u));
    int k = snprintf(buf, cap, "%.1f %s", v, unit[u]);
    return k < 0 ? 0 : (size_t)k;
}

/* Append to buf (bounded); returns the new total length. */
static size_t put(char *buf, size_t cap, size_t o, const char *fmt, const char *s) {
    int k = snprintf(o < cap ? buf + o : NULL, o < cap ? cap - o : 0, fmt, s);
    return o + (k > 0 ? (size_t)k : 0);
}

size_t lyra_context_map_lines(const lyra_context *c, char *buf, size_t cap) {
    const lyra_model *m = c->model;
    const lyra_llama *a = m->arch;
    int n_mod = lyra_llama_n_modules(a);
    size_t o = 0;
    if (cap) buf[0] = '\0';
    for (int di = 0; di < m->n_dev; di++) {
        char tmp[160];
        snprintf(tmp, sizeof tmp, "map: %s (%s)", m->dev[di]->id, m->dev[di]->kind);
        o = put(buf, cap, o, "%s", tmp);
        for (int i = 0; i < n_mod; i++) {
            if (m->module_dev[i] != di) continue;
            int layer;
            if (lyra_llama_module_kind(a, i, &layer) == LYRA_MODULE_LAYER) {
                int j = i; /* run of consecutive layers on this device */
                while (j + 1 < n_mod && m->module_dev[j + 1] == di &&
                       lyra_llama_module_kind(a, j + 1, NULL) == LYRA_MODULE_LAYER)
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
        char w[32], kv[32], sc[32];
        lyra_format_bytes(m->dev_weights[di], w, sizeof w);
        lyra_format_bytes(c->cd[di].kv_bytes, kv, sizeof kv);
        lyra_format_bytes(c->cd[di].scratch_bytes, sc, sizeof sc);
        snprintf(tmp, sizeof tmp, " weights %s kv %s scratch %s\n", w, kv, sc);
        o = put(buf, cap, o, "%s", tmp);
    }
    return o;
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
