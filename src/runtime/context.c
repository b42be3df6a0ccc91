/* context.c: lyra_context (lyra.h): the KV cache of each sequence (chunks
 * of kv_chunk positions allocated through the devices as the sequence grows,
 * a ring of chunks for a sliding-window layer), scratch for n_batch tokens,
 * lyra_eval (sequence 0) in batches, lyra_decode (a batch of several
 * sequences, one forward pass per n_batch tokens), logits, the map lines and
 * the device usage. Running out of
 * memory steps down (fallback.h); scratch and moves are residency.h's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/pool.h"
#include "device/prof.h"
#include "dist/dist.h"
#include "runtime/fallback.h"
#include "runtime/kvstate.h"
#include "runtime/objects.h"
#include "runtime/placement.h"
#include "runtime/quantize_load.h"
#include "runtime/residency.h"

lyra_context_params lyra_context_default_params(void) {
    lyra_context_params p = {.n_ctx = 0, .n_batch = 0, .n_threads = 0, .kv_type = LYRA_KV_DEFAULT,
                             .n_seq = 0};
    return p;
}

static size_t kv_elem_bytes(lyra_kv_type t) { return t == LYRA_KV_F32 ? 4 : 2; }

/* Device of layer l. */
static int layer_dev(const lyra_context *c, int l) { return c->model->module_dev[l + 1]; }

/* Free everything the context allocated on the devices. */
static void release(lyra_context *c) {
    lyra_model *m = c->model;
    for (int s = 0; c->seq && s < c->n_seq; s++)
        for (int l = 0; c->seq[s].ptrs && l < m->arch->hp.n_layer; l++) {
            lyra_device *d = m->dev[layer_dev(c, l)];
            for (int32_t k = 0; k < c->n_chunks_max; k++) {
                void *p = *lyra_kv_slot(c, s, l, 0, k);
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
    free(c->seq);
    free(c->kv_ptrs);
    free(c->kv);
    free(c->pos_buf);
    free(c->stage);
    free(c->logits);
    free(c->out_idx);
    free(c->segs);
    free(c->out_rows);
    free(c->seq_n);
    free(c->seq_last);
    free(c);
}

/* Allocate scratch on every device: activations for n_batch tokens (logits
 * on the head's device) and the largest matmul work its modules need. A GPU
 * that cannot hold it gives up layers (progressive fallback). */
static int alloc_scratch(lyra_context *c, lyra_error *err) {
    lyra_model *m = c->model;
    for (int di = 0; di < m->n_dev; di++) {
        lyra_device *d = m->dev[di];
        lyra_scratch_need s = lyra_runtime_scratch_need(m, m->module_dev, di, c->n_batch);
        if (!s.any || (c->cd[di].scratch && c->cd[di].scratch_bytes == s.bytes)) continue;
        void *p;
        lyra_oom oom;
        int rc = lyra_runtime_alloc(m, di, s.bytes, &p, &oom);
        if (rc) {
            char why[160];
            lyra_runtime_oom_text(m, &oom, why, sizeof why);
            lyra_err(err, rc, d->id, "scratch for n_batch %d: %s", (int)c->n_batch, why);
            if (!m->fallback) return rc;
            if ((rc = lyra_runtime_step_down(c, &oom, LYRA_PHASE_LOAD, c->seq[0].pos, err))) return rc;
            di = -1; /* placements changed: look at every device again */
            continue;
        }
        lyra_runtime_set_scratch(c, di, &s, p);
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
    lyra_weight *w[LYRA_MODULE_MAX_WEIGHTS];
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
    /* the geometry: one validation; 0 inherits the model's */
    lyra_geometry g = {p.n_ctx, p.n_batch, (int)p.kv_type, p.n_threads, p.n_seq};
    int rc = lyra_geometry_check(&g, err);
    if (rc) return rc;
    if (!g.n_batch) g.n_batch = m->geom.n_batch;
    if (g.kv_type == LYRA_KV_DEFAULT) g.kv_type = m->geom.kv_type;
    if (!g.n_threads) g.n_threads = m->geom.n_threads;
    int shrunk = 0; /* the context policy halved the context at load */
    for (int i = 0; i < m->n_steps; i++)
        shrunk |= m->steps[i].phase == LYRA_PHASE_LOAD && !strcmp(m->steps[i].what, "ctx");
    if (!g.n_ctx) g.n_ctx = m->ctx_asked; /* the model's n_ctx as given (0: its default) */
    if (shrunk && g.n_ctx > m->n_ctx) {
        LYRA_WARN("context: %d positions, not %d: the fallback's context policy shrank it at load",
                  (int)m->n_ctx, (int)g.n_ctx);
        g.n_ctx = m->n_ctx;
    }
    if (!g.n_ctx) g.n_ctx = m->n_ctx; /* the context the load fitted */
    lyra_context *c = calloc(1, sizeof *c);
    if (!c) return lyra_err(err, LYRA_ERR_OOM, "context", "out of memory");
    c->model = m;
    m->n_contexts++;
    c->n_ctx = g.n_ctx;
    c->n_batch = g.n_batch < c->n_ctx ? g.n_batch : c->n_ctx;
    c->n_threads = g.n_threads ? g.n_threads : lyra_default_threads(NULL);
    c->kv_type = (lyra_kv_type)g.kv_type;
    c->kv_chunk = m->kv_chunk;
    if (c->n_ctx > hp->n_ctx_train)
        LYRA_WARN("context: %d positions (--ctx, config key context_length) are more than the %d "
                  "the model was trained on",
                  (int)c->n_ctx, (int)hp->n_ctx_train);
    /* KV cache bookkeeping, per sequence (memory comes chunk by chunk in lyra_eval) */
    c->n_seq = p.n_seq ? p.n_seq : m->geom.n_seq > 0 ? m->geom.n_seq : 1; /* 0: the model's */
    c->n_chunks_max = (c->n_ctx + c->kv_chunk - 1) / c->kv_chunk;
    size_t per_seq = (size_t)hp->n_layer * 2 * (size_t)c->n_chunks_max; /* pointers */
    c->seq = calloc((size_t)c->n_seq, sizeof *c->seq);
    c->kv_ptrs = calloc((size_t)c->n_seq * per_seq, sizeof *c->kv_ptrs);
    c->kv = calloc((size_t)c->n_seq * (size_t)hp->n_layer, sizeof *c->kv);
    c->pos_buf = calloc((size_t)c->n_batch, sizeof *c->pos_buf);
    c->segs = calloc((size_t)c->n_batch, sizeof *c->segs);
    c->out_rows = calloc((size_t)c->n_batch, sizeof *c->out_rows);
    c->seq_n = calloc((size_t)c->n_seq, sizeof *c->seq_n);
    c->seq_last = calloc((size_t)c->n_seq, sizeof *c->seq_last);
    if (!c->seq || !c->kv_ptrs || !c->kv || !c->pos_buf || !c->segs || !c->out_rows || !c->seq_n ||
        !c->seq_last) {
        rc = lyra_err(err, LYRA_ERR_OOM, "context", "out of memory");
        goto fail;
    }
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    c->chunk_bytes = 2 * (size_t)c->kv_chunk * kv_dim * kv_elem_bytes(c->kv_type);
    for (int s = 0; s < c->n_seq; s++) {
        lyra_kv_seq *q = &c->seq[s];
        q->ptrs = c->kv_ptrs + (size_t)s * per_seq;
        q->view = c->kv + (size_t)s * (size_t)hp->n_layer;
        for (int l = 0; l < hp->n_layer; l++) {
            q->view[l].k_chunks = lyra_kv_slot(c, s, l, 0, 0);
            q->view[l].v_chunks = lyra_kv_slot(c, s, l, 1, 0);
            q->view[l].chunk_len = c->kv_chunk;
            q->view[l].kv_type = c->kv_type == LYRA_KV_F32 ? LYRA_TYPE_F32 : LYRA_TYPE_F16;
            /* a sliding-window layer: a ring, when it is smaller than the context */
            int32_t win = lyra_llama_layer_window(a, l);
            int32_t ring = win ? lyra_llama_ring_chunks(win, c->n_batch, c->kv_chunk) : 0;
            q->view[l].n_ring = ring < c->n_chunks_max ? ring : 0;
        }
    }
    if (m->n_dev > 1 || m->module_rank) {
        c->stage = malloc((size_t)c->n_batch * (size_t)hp->n_embd * sizeof(float));
        if (!c->stage) {
            rc = lyra_err(err, LYRA_ERR_OOM, "context", "out of memory");
            goto fail;
        }
    }
    c->run.n_dev = m->n_dev;
    for (int di = 0; di < m->n_dev; di++) c->run.dev[di] = m->dev[di];
    c->run.module_dev = m->module_dev;
    c->run.kv = c->seq[0].view; /* lyra_eval runs sequence 0 */
    c->run.n_batch = c->n_batch;
    c->run.pos = c->pos_buf;
    c->run.stage = c->stage;
    c->run.rope_freqs = m->rope_dev;
    c->run.after_module = after_module; /* the disk tier (layers may go there later) */
    c->run.user = c;
    c->run.module_rank = m->module_rank; /* mpirun: the other ranks' modules */
    c->run.rank = m->rank;
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
int32_t lyra_context_pos(const lyra_context *c) { return c->seq[0].pos; }

/* 1 when sequence s can continue at pos: every ring layer still holds the
 * window before pos (no later position overwrote it). */
static int ring_keeps(const lyra_context *c, int s, int32_t pos) {
    const lyra_kv_seq *q = &c->seq[s];
    if (pos <= 0 || q->top <= 0) return 1;
    for (int l = 0; l < c->model->arch->hp.n_layer; l++) {
        int32_t r = q->view[l].n_ring;
        if (r <= 0) continue;
        int32_t win = lyra_llama_layer_window(c->model->arch, l);
        int32_t need = pos - win + 1 > 0 ? pos - win + 1 : 0; /* the oldest position read */
        int32_t lo = ((q->top - 1) / c->kv_chunk - r + 1) * c->kv_chunk; /* the oldest held */
        if (need < lo) return 0;
    }
    return 1;
}

void lyra_context_seq_truncate(lyra_context *c, int32_t s, int32_t pos) {
    if (s < 0 || s >= c->n_seq) return;
    lyra_kv_seq *q = &c->seq[s];
    if (pos < 0) pos = 0;
    if (pos < q->pos) q->pos = pos;
    if (!ring_keeps(c, s, q->pos)) q->pos = 0; /* the window before pos was overwritten */
    if (!q->pos) q->top = 0;
}

void lyra_context_truncate(lyra_context *c, int32_t pos) { lyra_context_seq_truncate(c, 0, pos); }

int32_t lyra_context_n_seq(const lyra_context *c) { return c->n_seq; }

int32_t lyra_context_seq_pos(const lyra_context *c, int32_t s) {
    return s >= 0 && s < c->n_seq ? c->seq[s].pos : -1;
}

/* Make sequence s's cache hold positions [0, n_pos): allocate the missing
 * chunk of every layer on its device. On failure (*oom says where) nothing
 * the caller sees changes (chunks already added stay as spare capacity). */
static int grow_kv(lyra_context *c, int s, int32_t n_pos, lyra_oom *oom, lyra_error *err) {
    lyra_model *m = c->model;
    const lyra_llama_hparams *hp = &m->arch->hp;
    lyra_kv_seq *q = &c->seq[s];
    int32_t need = (n_pos + c->kv_chunk - 1) / c->kv_chunk;
    size_t half = c->chunk_bytes / 2; /* K or V of one layer */
    while (q->n_chunks < need) {
        int32_t k = q->n_chunks;
        for (int l = 0; l < hp->n_layer; l++) {
            int32_t ring = q->view[l].n_ring;
            if (ring > 0 && k >= ring) continue; /* the ring is complete: reused */
            void **kp = lyra_kv_slot(c, s, l, 0, k);
            if (*kp) continue;
            if (m->module_rank && m->module_rank[l + 1] != m->rank) continue; /* another rank's */
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
            *lyra_kv_slot(c, s, l, 1, k) = (char *)p + half;
            c->cd[di].kv_bytes += c->chunk_bytes;
        }
        q->n_chunks++;
    }
    return LYRA_OK;
}

/* Grow sequence s's cache on this rank's layers; out of memory: step down
 * between two tokens, within this process's devices. */
static int reserve_here(lyra_context *c, int s, int32_t n_pos, lyra_error *err) {
    int rc;
    for (;;) {
        lyra_oom oom;
        oom.dev = -1;
        rc = grow_kv(c, s, n_pos, &oom, err);
        if (rc != LYRA_ERR_OOM || oom.dev < 0 || !c->model->fallback) break;
        if ((rc = lyra_runtime_step_down(c, &oom, LYRA_PHASE_GENERATE, c->seq[s].pos, err))) break;
    }
    return rc;
}

int lyra_kv_reserve_ranks(lyra_context *c, int s, int32_t n_pos, int *together, lyra_error *err) {
    typedef struct {
        int32_t code;
        char msg[sizeof err->msg];
    } status;
    lyra_model *m = c->model;
    const int n_ranks = lyra_dist_size(), n_mod = lyra_llama_n_modules(m->arch);
    status *all = calloc((size_t)n_ranks, sizeof *all), *mine = calloc(1, sizeof *mine);
    int rc = all && mine ? LYRA_OK : lyra_err(err, LYRA_ERR_OOM, "kv", "out of memory");
    const int32_t n0 = c->seq[s].n_chunks;
    if (together) *together = 0;
    for (int round = 0; !rc && round <= n_mod; round++) {
        lyra_error e;
        int lrc = reserve_here(c, s, n_pos, &e);
        mine->code = lrc;
        snprintf(mine->msg, sizeof mine->msg, "%s", lrc ? e.msg : "");
        if ((rc = lyra_dist_gather(mine, all, sizeof *mine, err))) break;
        /* rank 0 decides: dec[0] the module to hand on (-1: every rank holds, -2: none can go), dec[1] the
         * first rank that failed */
        int32_t dec[2] = {-1, -1};
        for (int r = 0; r < n_ranks && m->rank == 0; r++) {
            if (!all[r].code) continue;
            dec[0] = -2;
            dec[1] = r;
            int mi = lyra_runtime_last_layer(m->arch, r, m->module_rank);
            if (all[r].code == LYRA_ERR_OOM && r + 1 < n_ranks && mi >= 0) dec[0] = mi;
            break;
        }
        if ((rc = lyra_dist_bcast(dec, sizeof dec, err))) break;
        if (dec[0] == -1) break;
        if (dec[0] == -2) { /* the evaluation fails on every rank alike; rank 0 names the rank, and
                             * the others, alive, end when it does (no abort) */
            if (together) *together = 1;
            if (m->rank == 0) lyra_dist_set_failed_together();
            c->seq[s].n_chunks = n0; /* every rank alike (a grown chunk stays as a spare) */
            if (m->rank == 0 && dec[1] > 0)
                rc = lyra_err(err, all[dec[1]].code, NULL, "rank %d: %s", dec[1], all[dec[1]].msg);
            else if (lrc) {
                *err = e;
                rc = lrc;
            } else rc = lyra_err(err, LYRA_ERR_OOM, "kv", "rank %d is out of memory", dec[1]);
            break;
        }
        if (m->rank == 0) {
            char name[64];
            lyra_llama_module_name(m->arch, dec[0], name, sizeof name);
            LYRA_WARN("fallback across ranks: during generation at token %d: rank %d is out of memory (%s): "
                      "%s moves to rank %d", (int)c->seq[s].pos, dec[1], all[dec[1]].msg, name, dec[1] + 1);
        }
        rc = lyra_runtime_pass_layer(c, dec[0], dec[1], err);
    }
    free(all);
    free(mine);
    return rc;
}

int lyra_kv_reserve(lyra_context *c, int s, int32_t n_pos, lyra_error *err) {
    lyra_model *m = c->model;
    /* mpirun with --fallback-across-ranks: a new chunk (the same on every rank) is grown by all together */
    if (m->module_rank && m->across_ranks && m->rank == 0 &&
        c->seq[s].n_chunks < (n_pos + c->kv_chunk - 1) / c->kv_chunk) {
        lyra_dist_cmd cmd = {LYRA_DIST_RESERVE, n_pos, 0, 0, s, 0, 0};
        int rc = lyra_dist_command(&cmd, NULL, err);
        return rc ? rc : lyra_kv_reserve_ranks(c, s, n_pos, NULL, err);
    }
    return reserve_here(c, s, n_pos, err);
}

/* Before forward passes: room for rows of logits, the threads and each
 * device's matmul work; forgets the last evaluation's logits. */
static int prepare(lyra_context *c, size_t rows, lyra_error *err) {
    lyra_model *m = c->model;
    size_t need = rows * (size_t)m->arch->hp.n_vocab;
    if (need > c->logits_cap) {
        float *l = malloc(need * sizeof(float));
        if (!l)
            return lyra_err(err, LYRA_ERR_OOM, "eval", "out of memory for %zu logits", need);
        free(c->logits);
        c->logits = l;
        c->logits_cap = need;
    }
    int rc = set_threads(c, err);
    if (rc) return rc;
    for (int di = 0; di < m->n_dev; di++) {
        lyra_device *d = m->dev[di];
        if (d->ops->set_work) d->ops->set_work(d, c->cd[di].work, c->cd[di].work_bytes);
    }
    c->n_last = 0;
    return LYRA_OK;
}

int lyra_eval(lyra_context *c, const int32_t *tokens, int32_t n, int logits_all, lyra_error *err) {
    lyra_model *m = c->model;
    const lyra_llama_hparams *hp = &m->arch->hp;
    lyra_kv_seq *q = &c->seq[0]; /* the sequence evaluated (run.kv are its views) */
    if (n <= 0) return lyra_err(err, LYRA_ERR_INPUT, "eval", "no tokens to evaluate");
    if (n > c->n_ctx - q->pos)
        return lyra_err(err, LYRA_ERR_INPUT, "eval",
                        "%d tokens at position %d overflow the context of %d", (int)n, (int)q->pos,
                        (int)c->n_ctx);
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= hp->n_vocab)
            return lyra_err(err, LYRA_ERR_INPUT, "eval", "token %d (at %d) is not in the vocabulary of %d",
                            (int)tokens[i], (int)i, (int)hp->n_vocab);
    int rc = lyra_kv_reserve(c, 0, q->pos + n, err);
    if (rc) return rc;
    if ((rc = prepare(c, logits_all ? (size_t)n : 1, err))) return rc;
    c->decoded = 0;
    if (m->module_rank && m->rank == 0) { /* mpirun: the other ranks evaluate the same */
        lyra_dist_cmd cmd = {LYRA_DIST_EVAL, n, logits_all != 0, q->pos, 0, 0, 0};
        if ((rc = lyra_dist_command(&cmd, tokens, err))) return rc;
    }
    for (int32_t i0 = 0; i0 < n; i0 += c->n_batch) {
        int nb = n - i0 < c->n_batch ? (int)(n - i0) : (int)c->n_batch;
        int last = i0 + nb == n;
        int n_out = logits_all ? nb : (last ? 1 : 0);
        float *dst = logits_all ? c->logits + (size_t)i0 * hp->n_vocab : c->logits;
        rc = lyra_llama_forward(m->arch, &c->run, tokens + i0, nb, q->pos + i0, n_out, dst, err);
        if (rc) return rc;
    }
    q->pos += n;
    if (q->pos > q->top) q->top = q->pos;
    c->n_last = n;
    c->logits_all = logits_all != 0;
    return LYRA_OK;
}

/* The micro-batches of a forward pass of ntok tokens in n_seg segments
 * under mpirun: as many as the ranks (stages), at most one per segment and
 * one per LYRA_MICRO_MIN_TOKENS tokens (a smaller micro-batch reads the
 * weights for too few tokens: the split would cost more than the overlap
 * gains, docs/distributed.md's cost model); 1 (no split) in one process.
 * LYRA_MPI_MICROBATCHES=N sets the number (at most one per segment; 1: off). */
enum { LYRA_MICRO_MIN_TOKENS = 32 };
static int n_micro(const lyra_context *c, int ntok, int n_seg) {
    if (!c->model->module_rank || n_seg <= 1) return 1;
    int g = lyra_dist_size();
    if (ntok / LYRA_MICRO_MIN_TOKENS < g) g = ntok / LYRA_MICRO_MIN_TOKENS;
    const char *e = getenv("LYRA_MPI_MICROBATCHES");
    if (e && *e) {
        int v = atoi(e);
        if (v >= 1) g = v;
    }
    return g < 1 ? 1 : g < n_seg ? g : n_seg;
}

/* One forward pass of the batch's ntok tokens in c->segs[n_seg] (output
 * rows c->out_rows[n_o], logits to dst). Under mpirun a pass over several
 * sequences goes as micro-batches of whole segments, balanced by tokens,
 * one after another on every rank: rank r runs micro-batch m while rank
 * r+1 runs m-1 (each hands the hidden state on as soon as its layers are
 * done), and rank 0 only posts the receive of each micro-batch's logits,
 * waiting for them all at the end (docs/distributed.md, "The schedule").
 * A sequence's logits are bitwise those of the pass in one piece (a
 * forward pass gives each sequence the same logits whatever its
 * batch mates: arch/llama.h). */
static int forward_pass(lyra_context *c, const int32_t *tokens, int ntok, int n_seg, int n_o, float *dst,
                        lyra_error *err) {
    lyra_model *m = c->model;
    const int64_t V = m->arch->hp.n_vocab;
    int g_n = n_micro(c, ntok, n_seg);
    if (g_n <= 1)
        return lyra_llama_forward_batch(m->arch, &c->run, tokens, ntok, c->segs, n_seg, c->out_rows, n_o, dst,
                                        err);
    lyra_dist_req *reqs = calloc((size_t)g_n, sizeof *reqs);
    if (!reqs) return lyra_err(err, LYRA_ERR_OOM, "decode", "out of memory");
    int rc = LYRA_OK, s0 = 0, o0 = 0, g = 0;
    for (; g < g_n && !rc; g++) {
        /* segments [s0, s1): the first whose tokens reach the group's share */
        int t0 = c->segs[s0].t0, s1 = s0, t1 = t0;
        int64_t want = (int64_t)ntok * (g + 1) / g_n;
        while (s1 < n_seg && (s1 == s0 || (t1 < want && n_seg - s1 > g_n - g - 1))) t1 += c->segs[s1++].ntok;
        if (g == g_n - 1) { /* the last takes the rest */
            while (s1 < n_seg) t1 += c->segs[s1++].ntok;
        }
        for (int i = s0; i < s1; i++) c->segs[i].t0 -= t0;
        int o1 = o0;
        while (o1 < n_o && c->out_rows[o1] < t1) c->out_rows[o1++] -= t0;
        c->run.defer = m->rank == 0 ? &reqs[g] : NULL;
        rc = lyra_llama_forward_batch(m->arch, &c->run, tokens + t0, t1 - t0, c->segs + s0, s1 - s0,
                                      c->out_rows + o0, o1 - o0, dst + (size_t)o0 * (size_t)V, err);
        c->run.defer = NULL;
        s0 = s1;
        o0 = o1;
    }
    for (int i = 0; i < g; i++) { /* the logits (every request, also after an error) */
        lyra_error e2;
        int r2 = lyra_dist_wait(&reqs[i], rc ? 1.0 : lyra_dist_timeout(), rc ? &e2 : err);
        if (!rc) rc = r2;
    }
    free(reqs);
    return rc;
}

/* mpirun, rank 0: the other ranks decode the same batch (follow.c). */
static int send_decode(const lyra_batch *b, lyra_error *err) {
    const int32_t n = b->n_tokens;
    int32_t *a = malloc(4 * (size_t)n * sizeof *a);
    if (!a) return lyra_err(err, LYRA_ERR_OOM, "decode", "out of memory");
    memcpy(a, b->token, (size_t)n * sizeof *a);
    memcpy(a + n, b->pos, (size_t)n * sizeof *a);
    memcpy(a + 2 * (size_t)n, b->seq_id, (size_t)n * sizeof *a);
    for (int32_t i = 0; i < n; i++) a[3 * (size_t)n + i] = b->logits ? b->logits[i] != 0 : 0;
    lyra_dist_cmd cmd = {LYRA_DIST_DECODE, n, b->logits != NULL, 0, 0, 0, 0};
    int rc = lyra_dist_command(&cmd, a, err);
    free(a);
    return rc;
}

int lyra_decode(lyra_context *c, const lyra_batch *b, lyra_error *err) {
    lyra_model *m = c->model;
    const lyra_llama_hparams *hp = &m->arch->hp;
    if (!b || b->n_tokens <= 0 || !b->token || !b->pos || !b->seq_id)
        return lyra_err(err, LYRA_ERR_INPUT, "decode", "no tokens to evaluate");
    const int32_t n = b->n_tokens;
    /* validate everything before anything changes */
    memset(c->seq_n, 0, (size_t)c->n_seq * sizeof *c->seq_n);
    for (int32_t i = 0; i < n; i++) {
        int32_t s = b->seq_id[i];
        if (s < 0 || s >= c->n_seq)
            return lyra_err(err, LYRA_ERR_INPUT, "decode", "token %d: sequence %d is not in 0..%d",
                            (int)i, (int)s, (int)c->n_seq - 1);
        if (b->token[i] < 0 || b->token[i] >= hp->n_vocab)
            return lyra_err(err, LYRA_ERR_INPUT, "decode",
                            "token %d (at %d) is not in the vocabulary of %d", (int)b->token[i],
                            (int)i, (int)hp->n_vocab);
        int32_t want = c->seq[s].pos + c->seq_n[s];
        if (b->pos[i] != want)
            return lyra_err(err, LYRA_ERR_INPUT, "decode",
                            "token %d: position %d, but sequence %d continues at %d", (int)i,
                            (int)b->pos[i], (int)s, (int)want);
        if (want >= c->n_ctx)
            return lyra_err(err, LYRA_ERR_INPUT, "decode",
                            "sequence %d: position %d overflows the context of %d", (int)s, (int)want,
                            (int)c->n_ctx);
        c->seq_n[s]++;
        c->seq_last[s] = i;
    }
    if (n > c->out_cap) {
        int32_t *o = realloc(c->out_idx, (size_t)n * sizeof *o);
        if (!o) return lyra_err(err, LYRA_ERR_OOM, "decode", "out of memory");
        c->out_idx = o;
        c->out_cap = n;
    }
    int32_t n_out = 0;
    for (int32_t i = 0; i < n; i++) {
        int keep = b->logits ? b->logits[i] != 0 : c->seq_last[b->seq_id[i]] == i;
        c->out_idx[i] = keep ? n_out++ : -1;
    }
    int rc = LYRA_OK;
    for (int32_t s = 0; s < c->n_seq && !rc; s++) /* the KV caches; out of memory: step down */
        if (c->seq_n[s]) rc = lyra_kv_reserve(c, s, c->seq[s].pos + c->seq_n[s], err);
    if (rc) return rc;
    if ((rc = prepare(c, (size_t)n_out, err))) return rc;
    c->decoded = 1;
    if (m->module_rank && m->rank == 0 && (rc = send_decode(b, err))) return rc;
    int32_t row = 0; /* logits rows written */
    for (int32_t i0 = 0; i0 < n; i0 += c->n_batch) {
        int nb = n - i0 < c->n_batch ? (int)(n - i0) : (int)c->n_batch;
        int n_seg = 0, n_o = 0;
        for (int j = 0; j < nb; j++) {
            int32_t s = b->seq_id[i0 + j];
            if (!n_seg || b->seq_id[i0 + j - 1] != s) /* a new run of one sequence */
                c->segs[n_seg++] = (lyra_llama_seg){j, 0, b->pos[i0 + j], c->seq[s].view};
            c->segs[n_seg - 1].ntok++;
            if (c->out_idx[i0 + j] >= 0) c->out_rows[n_o++] = j;
        }
        rc = forward_pass(c, b->token + i0, nb, n_seg, n_o, c->logits + (size_t)row * (size_t)hp->n_vocab, err);
        if (rc) return rc;
        row += n_o;
    }
    for (int32_t s = 0; s < c->n_seq; s++) {
        lyra_kv_seq *q = &c->seq[s];
        q->pos += c->seq_n[s];
        if (q->pos > q->top) q->top = q->pos;
    }
    c->n_last = n;
    return LYRA_OK;
}

const float *lyra_get_logits_ith(const lyra_context *c, int32_t i) {
    if (!c->decoded) return lyra_get_logits(c, i);
    if (c->n_last <= 0) return NULL;
    if (i == -1) i = c->n_last - 1;
    if (i < 0 || i >= c->n_last || c->out_idx[i] < 0) return NULL;
    return c->logits + (size_t)c->out_idx[i] * (size_t)c->model->arch->hp.n_vocab;
}

const float *lyra_get_logits(const lyra_context *c, int32_t i) {
    if (c->decoded) return lyra_get_logits_ith(c, i);
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

/* Append to buf (bounded); returns the new total length. */
static size_t put(char *buf, size_t cap, size_t o, const char *fmt, const char *s) {
    int k = snprintf(o < cap ? buf + o : NULL, o < cap ? cap - o : 0, fmt, s);
    return o + (k > 0 ? (size_t)k : 0);
}

/* The modules of device di (disk: the disk tier) of rank (under mpirun;
 * -1: any device of that rank) as " name name-range ...". */
static size_t put_modules(const lyra_context *c, int di, int disk, int rank, char *buf, size_t cap,
                          size_t o) {
    const lyra_model *m = c->model;
    const lyra_llama *a = m->arch;
    int n_mod = lyra_llama_n_modules(a);
    char tmp[96];
#define ON(i)                                                                                   \
    ((m->module_rank ? m->module_rank[i] == rank : 1) &&                                        \
     (di < 0 || (m->module_dev[i] == di && m->module_disk[i] == disk)))
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
        o = put_modules(c, di, 0, m->rank, buf, cap, o);
        char w[32], kv[32], sc[32];
        lyra_format_bytes(m->dev_weights[di], w, sizeof w);
        lyra_format_bytes(c->cd[di].kv_bytes, kv, sizeof kv);
        lyra_format_bytes(c->cd[di].scratch_bytes, sc, sizeof sc);
        snprintf(tmp, sizeof tmp, " weights %s kv %s scratch %s\n", w, kv, sc);
        o = put(buf, cap, o, "%s", tmp);
    }
    int any_disk = 0;
    for (int i = 0; i < lyra_llama_n_modules(m->arch); i++)
        any_disk |= m->module_disk[i] && (!m->module_rank || m->module_rank[i] == m->rank);
    if (any_disk) { /* the disk tier: run on the CPU from the mapping, KV and scratch there */
        char tmp[160], w[32];
        o = put(buf, cap, o, "%s", "map: disk (disk)");
        o = put_modules(c, m->cpu, 1, m->rank, buf, cap, o);
        lyra_format_bytes(m->disk_weights, w, sizeof w);
        snprintf(tmp, sizeof tmp, " weights %s (mapped, read on use; kv and scratch on cpu)\n", w);
        o = put(buf, cap, o, "%s", tmp);
    }
    for (int r = 0; m->module_rank && r < lyra_dist_size(); r++) { /* mpirun: the other ranks */
        if (r == m->rank) continue;
        char tmp[64];
        snprintf(tmp, sizeof tmp, "map: rank %d (mpi)", r);
        o = put(buf, cap, o, "%s", tmp);
        o = put_modules(c, -1, 0, r, buf, cap, o);
        o = put(buf, cap, o, "%s", "\n");
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
    for (int l = 0; l < hp->n_layer; l++) { /* a windowed layer reads its window */
        int32_t win = lyra_llama_layer_window(a, l);
        uint64_t n = win && pos + 1 > win ? (uint64_t)win : (uint64_t)pos + 1;
        b += 2 * n * kv_dim * kv_elem_bytes(c->kv_type);
    }
    return b;
}


/* ---------------------------------------------------------------- profile */

int lyra_context_profile(lyra_context *c, int on, lyra_error *err) {
    lyra_model *m = c->model;
    for (int di = 0; di < m->n_dev; di++) {
        if (!on) {
            lyra_prof_detach(m->dev[di]);
        } else if (lyra_prof_attach(m->dev[di])) {
            for (int j = 0; j < di; j++) lyra_prof_detach(m->dev[j]);
            return lyra_err(err, LYRA_ERR_OOM, "profile", "out of memory");
        }
    }
    return LYRA_OK;
}

size_t lyra_context_profile_report(const lyra_context *c, int32_t n_tokens, char *buf, size_t cap) {
    const lyra_model *m = c->model;
    return lyra_prof_report(m->dev, m->n_dev, (double)n_tokens, buf, cap);
}
