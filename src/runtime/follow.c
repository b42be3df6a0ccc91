/* follow.c: the other ranks' side of a run under mpirun (follow.h): rank 0's
 * lyra_eval sends each evaluation (tokens, position, logits_all) to every
 * rank, which evaluates the same on its own modules (context.c, the forward
 * pass of arch/llama.c moves the hidden state between ranks). */
#include <stdlib.h>

#include "dist/dist.h"
#include "runtime/follow.h"

int lyra_runtime_follow(lyra_context *c, lyra_error *err) {
    lyra_model *m = c->model;
    if (!m->module_rank || m->rank == 0) return LYRA_OK;
    int32_t *toks = NULL;
    size_t cap = 0;
    int rc = LYRA_OK;
    for (;;) {
        lyra_dist_cmd cmd;
        /* no deadline: rank 0 may wait for a person; mpirun ends this rank if rank 0 dies */
        if ((rc = lyra_dist_recv(0, LYRA_DIST_TAG_CMD, &cmd, sizeof cmd, 0, err))) break;
        if (cmd.op == LYRA_DIST_QUIT) break;
        if (cmd.op != LYRA_DIST_EVAL || cmd.n <= 0 || cmd.n > c->n_ctx || cmd.pos < 0) {
            rc = lyra_err(err, LYRA_ERR_RUNTIME, "mpi: rank 0", "a bad command (op %lld, %lld tokens)",
                          (long long)cmd.op, (long long)cmd.n);
            break;
        }
        if ((size_t)cmd.n > cap) {
            free(toks);
            cap = (size_t)cmd.n;
            if (!(toks = malloc(cap * sizeof *toks))) {
                rc = lyra_err(err, LYRA_ERR_OOM, "mpi", "out of memory");
                break;
            }
        }
        if ((rc = lyra_dist_recv(0, LYRA_DIST_TAG_TOKENS, toks, (size_t)cmd.n * sizeof *toks,
                                 lyra_dist_timeout(), err)))
            break;
        lyra_context_truncate(c, (int32_t)cmd.pos);
        if (c->seq[0].pos != cmd.pos) {
            rc = lyra_err(err, LYRA_ERR_RUNTIME, "mpi", "rank %d holds %d positions, rank 0 %lld",
                          m->rank, (int)c->seq[0].pos, (long long)cmd.pos);
            break;
        }
        if ((rc = lyra_eval(c, toks, (int32_t)cmd.n, (int)cmd.logits_all, err))) break;
    }
    free(toks);
    return rc;
}

