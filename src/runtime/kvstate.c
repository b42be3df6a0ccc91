/* kvstate.c: a sequence's KV cache to and from host rows (kvstate.h).
 * Under mpirun rank 0 reads and writes the layers of the other ranks
 * through them (follow.c answers): the session file is the same as one
 * process's. */
#include "runtime/kvstate.h"

#include <string.h>

#include "dist/dist.h"
#include "runtime/objects.h"
#include "runtime/residency.h"

/* mpirun, rank 0: the rank of layer l when another rank holds it, else -1. */
static int remote_rank(const lyra_context *c, int l) {
    const lyra_model *m = c->model;
    if (!m->module_rank || m->rank != 0 || m->module_rank[l + 1] == 0) return -1;
    return m->module_rank[l + 1];
}

/* mpirun, rank 0: a KV command to the other ranks. */
static int kv_command(const lyra_context *c, int op, int s, int l, int32_t k, int64_t n, int64_t pos,
                      lyra_error *err) {
    if (!c->model->module_rank || c->model->rank != 0) return LYRA_OK;
    lyra_dist_cmd cmd = {op, n, 0, pos, s, l, k};
    return lyra_dist_command(&cmd, NULL, err);
}

static int layer_dev(const lyra_context *c, int l) { return c->model->module_dev[l + 1]; }

static int64_t kv_dim(const lyra_context *c) {
    const lyra_llama_hparams *hp = &c->model->arch->hp;
    return (int64_t)hp->n_head_kv * hp->head_dim;
}

int32_t lyra_kv_state_chunks(const lyra_context *c, int s, int l) {
    const lyra_kv_seq *q = &c->seq[s];
    int32_t r = q->view[l].n_ring;
    if (r > 0) {
        int32_t n = (q->top + c->kv_chunk - 1) / c->kv_chunk;
        return n < r ? n : r;
    }
    return (q->pos + c->kv_chunk - 1) / c->kv_chunk;
}

int lyra_kv_state_get(const lyra_context *c, int s, int l, int32_t k, void *rows, void *tmp,
                      lyra_error *err) {
    int rr = remote_rank(c, l);
    if (rr > 0) {
        int rc = kv_command(c, LYRA_DIST_KV_GET, s, l, k, 0, 0, err);
        return rc ? rc : lyra_dist_recv(rr, LYRA_DIST_TAG_KV, rows, c->chunk_bytes, lyra_dist_timeout(), err);
    }
    void *p = *lyra_kv_slot(c, s, l, 0, k);
    if (!p) return lyra_err(err, LYRA_ERR_RUNTIME, "session", "layer %d has no KV chunk %d", l, (int)k);
    return lyra_runtime_kv_rows_out(c, layer_dev(c, l), l, p, rows, tmp, err);
}

int lyra_kv_state_begin(lyra_context *c, int s, int32_t n_pos, lyra_error *err) {
    lyra_kv_seq *q = &c->seq[s];
    q->pos = 0;
    q->top = 0;
    c->n_last = 0; /* the logits are not the restored sequence's */
    int rc = kv_command(c, LYRA_DIST_KV_BEGIN, s, 0, 0, n_pos, 0, err);
    if (rc) return rc;
    return n_pos > 0 ? lyra_kv_reserve(c, s, n_pos, err) : LYRA_OK;
}

int lyra_kv_state_put(lyra_context *c, int s, int l, int32_t k, const void *rows, void *tmp,
                      lyra_error *err) {
    int rr = remote_rank(c, l);
    if (rr > 0) {
        int rc = kv_command(c, LYRA_DIST_KV_PUT, s, l, k, 0, 0, err);
        return rc ? rc : lyra_dist_send(rr, LYRA_DIST_TAG_KV, rows, c->chunk_bytes, err);
    }
    void *p = *lyra_kv_slot(c, s, l, 0, k);
    if (!p) return lyra_err(err, LYRA_ERR_RUNTIME, "session", "layer %d has no KV chunk %d", l, (int)k);
    return lyra_runtime_kv_rows_in(c, layer_dev(c, l), l, p, rows, tmp, err);
}

void lyra_kv_state_end(lyra_context *c, int s, int32_t pos, int32_t top) {
    lyra_error e; /* a rank gone: the next evaluation says so */
    kv_command(c, LYRA_DIST_KV_END, s, 0, 0, top, pos, &e);
    c->seq[s].pos = pos;
    c->seq[s].top = top > pos ? top : pos;
}

void lyra_kv_state_layout(const lyra_context *c, int s, lyra_kv_layout *g) {
    const lyra_llama_hparams *hp = &c->model->arch->hp;
    g->fingerprint = c->model->fingerprint;
    g->kv_type = (int32_t)c->kv_type;
    g->n_ctx = c->n_ctx;
    g->kv_chunk = c->kv_chunk;
    g->n_layer = hp->n_layer;
    g->n_vocab = hp->n_vocab;
    g->width = (int32_t)kv_dim(c);
    g->pos = c->seq[s].pos;
    g->top = c->seq[s].top;
    g->chunk_bytes = c->chunk_bytes;
}

int32_t lyra_kv_state_ring(const lyra_context *c, int s, int l) { return c->seq[s].view[l].n_ring; }

uint64_t lyra_kv_state_fingerprint(const lyra_model *m) { return m->fingerprint; }

lyra_fail_io *lyra_kv_state_fail_io(lyra_context *c) { return &c->model->fail_io; }
