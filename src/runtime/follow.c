/* follow.c: the other ranks' side of a run under mpirun (follow.h): rank 0's
 * lyra_eval and lyra_decode send each evaluation (tokens, positions,
 * sequences) to every rank, which evaluates the same on its own modules
 * (context.c; the forward pass of arch/llama.c moves the hidden state
 * between ranks); rank 0's session save and restore (kvstate.c) read and
 * write the KV chunks of this rank's layers through here. */
#include <stdlib.h>

#include "dist/dist.h"
#include "runtime/follow.h"
#include "runtime/kvstate.h"

/* The state of a follower between commands. */
typedef struct follower {
    lyra_context *c;
    int32_t *toks; /* EVAL: [n]; DECODE: token, pos, seq_id, logits [4][n] */
    size_t cap;    /* int32 in toks */
    void *rows, *tmp; /* KV_GET / KV_PUT: one chunk each */
} follower;

static int bad_cmd(const lyra_dist_cmd *cmd, lyra_error *err) {
    return lyra_err(err, LYRA_ERR_RUNTIME, "mpi: rank 0", "a bad command (op %lld, n %lld, seq %lld)",
                    (long long)cmd->op, (long long)cmd->n, (long long)cmd->seq);
}

static int recv_tokens(follower *f, size_t n, lyra_error *err) {
    if (n > f->cap) {
        free(f->toks);
        f->cap = n;
        if (!(f->toks = malloc(n * sizeof *f->toks))) {
            f->cap = 0;
            return lyra_err(err, LYRA_ERR_OOM, "mpi", "out of memory");
        }
    }
    return lyra_dist_recv(0, LYRA_DIST_TAG_TOKENS, f->toks, n * sizeof *f->toks, lyra_dist_timeout(), err);
}

static int follow_eval(follower *f, const lyra_dist_cmd *cmd, lyra_error *err) {
    lyra_context *c = f->c;
    if (cmd->n <= 0 || cmd->n > c->n_ctx || cmd->pos < 0) return bad_cmd(cmd, err);
    int rc = recv_tokens(f, (size_t)cmd->n, err);
    if (rc) return rc;
    lyra_context_truncate(c, (int32_t)cmd->pos);
    if (c->seq[0].pos != cmd->pos)
        return lyra_err(err, LYRA_ERR_RUNTIME, "mpi", "rank %d holds %d positions, rank 0 %lld", c->model->rank,
                        (int)c->seq[0].pos, (long long)cmd->pos);
    return lyra_eval(c, f->toks, (int32_t)cmd->n, (int)cmd->logits_all, err);
}

/* A batch: each sequence first truncates to its first position in it (rank
 * 0 truncated it the same way: lyra_context_seq_truncate, prefix reuse). */
static int follow_decode(follower *f, const lyra_dist_cmd *cmd, lyra_error *err) {
    lyra_context *c = f->c;
    if (cmd->n <= 0 || cmd->n > (int64_t)c->n_ctx * c->n_seq) return bad_cmd(cmd, err);
    const int32_t n = (int32_t)cmd->n;
    int rc = recv_tokens(f, 4 * (size_t)n, err);
    if (rc) return rc;
    const int32_t *pos = f->toks + n, *seq = f->toks + 2 * (size_t)n;
    int8_t *lg = (int8_t *)(f->toks + 3 * (size_t)n); /* the flags, packed in place */
    for (int32_t i = 0; i < n; i++) lg[i] = (int8_t)(f->toks[3 * (size_t)n + i] != 0);
    for (int32_t i = 0; i < n; i++) {
        int32_t s = seq[i];
        if (s < 0 || s >= c->n_seq) return bad_cmd(cmd, err);
        int first = 1;
        for (int32_t j = 0; j < i && first; j++) first = seq[j] != s;
        if (!first) continue;
        lyra_context_seq_truncate(c, s, pos[i]);
        if (c->seq[s].pos != pos[i])
            return lyra_err(err, LYRA_ERR_RUNTIME, "mpi", "rank %d holds %d positions of sequence %d, rank 0 %d",
                            c->model->rank, (int)c->seq[s].pos, (int)s, (int)pos[i]);
    }
    lyra_batch b = {n, f->toks, pos, seq, cmd->logits_all ? lg : NULL};
    return lyra_decode(c, &b, err);
}

/* KV_BEGIN, KV_GET, KV_PUT, KV_END: a session's chunks of this rank's layers. */
static int follow_kv(follower *f, const lyra_dist_cmd *cmd, lyra_error *err) {
    lyra_context *c = f->c;
    const lyra_model *m = c->model;
    if (cmd->seq < 0 || cmd->seq >= c->n_seq) return bad_cmd(cmd, err);
    int s = (int)cmd->seq;
    if (cmd->op == LYRA_DIST_KV_BEGIN) {
        if (cmd->n < 0 || cmd->n > c->n_ctx) return bad_cmd(cmd, err);
        return lyra_kv_state_begin(c, s, (int32_t)cmd->n, err);
    }
    if (cmd->op == LYRA_DIST_KV_END) {
        if (cmd->pos < 0 || cmd->pos > c->n_ctx || cmd->n < 0 || cmd->n > c->n_ctx) return bad_cmd(cmd, err);
        lyra_kv_state_end(c, s, (int32_t)cmd->pos, (int32_t)cmd->n);
        return LYRA_OK;
    }
    if (cmd->layer < 0 || cmd->layer >= m->arch->hp.n_layer || cmd->chunk < 0 || cmd->chunk >= c->n_chunks_max)
        return bad_cmd(cmd, err);
    int l = (int)cmd->layer;
    if (m->module_rank[l + 1] != m->rank) return LYRA_OK; /* another rank's layer */
    if (!f->rows) {
        f->rows = malloc(c->chunk_bytes);
        f->tmp = malloc(c->chunk_bytes);
        if (!f->rows || !f->tmp) return lyra_err(err, LYRA_ERR_OOM, "mpi", "out of memory");
    }
    int rc;
    if (cmd->op == LYRA_DIST_KV_GET) {
        if ((rc = lyra_kv_state_get(c, s, l, (int32_t)cmd->chunk, f->rows, f->tmp, err))) return rc;
        return lyra_dist_send(0, LYRA_DIST_TAG_KV, f->rows, c->chunk_bytes, err);
    }
    if ((rc = lyra_dist_recv(0, LYRA_DIST_TAG_KV, f->rows, c->chunk_bytes, lyra_dist_timeout(), err))) return rc;
    return lyra_kv_state_put(c, s, l, (int32_t)cmd->chunk, f->rows, f->tmp, err);
}

/* RESERVE: the sequence's next KV chunk, grown by every rank together
 * (--fallback-across-ranks); a failure every rank shares is rank 0's to
 * report: this rank goes on following. */
static int follow_reserve(follower *f, const lyra_dist_cmd *cmd, lyra_error *err) {
    lyra_context *c = f->c;
    if (cmd->seq < 0 || cmd->seq >= c->n_seq || cmd->n < 0 || cmd->n > c->n_ctx) return bad_cmd(cmd, err);
    int together = 0;
    int rc = lyra_kv_reserve_ranks(c, (int)cmd->seq, (int32_t)cmd->n, &together, err);
    return together ? LYRA_OK : rc;
}

int lyra_runtime_follow(lyra_context *c, lyra_error *err) {
    lyra_model *m = c->model;
    if (!m->module_rank || m->rank == 0) return LYRA_OK;
    follower f = {c, NULL, 0, NULL, NULL};
    int rc = LYRA_OK;
    for (;;) {
        lyra_dist_cmd cmd;
        /* no deadline: rank 0 may wait for a person; mpirun ends this rank if rank 0 dies */
        if ((rc = lyra_dist_recv(0, LYRA_DIST_TAG_CMD, &cmd, sizeof cmd, 0, err))) break;
        if (cmd.op == LYRA_DIST_QUIT) break;
        if (cmd.op == LYRA_DIST_EVAL) rc = follow_eval(&f, &cmd, err);
        else if (cmd.op == LYRA_DIST_DECODE) rc = follow_decode(&f, &cmd, err);
        else if (cmd.op >= LYRA_DIST_KV_BEGIN && cmd.op <= LYRA_DIST_KV_END) rc = follow_kv(&f, &cmd, err);
        else if (cmd.op == LYRA_DIST_RESERVE) rc = follow_reserve(&f, &cmd, err);
        else rc = bad_cmd(&cmd, err);
        if (rc) break;
    }
    free(f.toks);
    free(f.rows);
    free(f.tmp);
    return rc;
}
