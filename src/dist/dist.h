/* dist.h: lyra over MPI (docs/distributed.md): the ranks of one run
 * (`mpirun -np N lyra ...`), point-to-point messages with a deadline, and
 * the model file's fingerprint compared across ranks.
 *
 * MPI's state is process-wide by nature, so this module's is too: one
 * lyra_dist_init at the start of the command (it initializes MPI only when
 * launched by mpirun: Open MPI's OMPI_COMM_WORLD_SIZE, or PMI/PMIx variables),
 * one lyra_dist_finish at the end. Without MPI in the build, or outside
 * mpirun, the run has one rank and every call here is a no-op.
 *
 * Errors are returned (MPI_ERRORS_RETURN, never fatal); every wait polls
 * (MPI_Test) against a deadline of LYRA_MPI_TIMEOUT seconds (default 30),
 * so a dead rank ends the run with one line naming it instead of a hang. */
#ifndef LYRA_DIST_DIST_H
#define LYRA_DIST_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* Message tags. */
enum {
    LYRA_DIST_TAG_CMD = 1,    /* rank 0 -> every rank: lyra_dist_cmd */
    LYRA_DIST_TAG_TOKENS = 2, /* rank 0 -> every rank: the command's tokens */
    LYRA_DIST_TAG_HIDDEN = 3, /* rank r -> rank r+1..: the hidden state [rows][n_embd] */
    LYRA_DIST_TAG_LOGITS = 4, /* the head's rank -> rank 0: logits [n_out][n_vocab] */
    LYRA_DIST_TAG_KV = 5,     /* a KV chunk's rows, between rank 0 and the layer's rank */
    LYRA_DIST_TAG_MOVE = 6    /* rank r -> r+1: the KV chunks' rows of a layer handed on */
};

/* What rank 0 asks the other ranks to do (lyra_runtime_follow). */
typedef struct lyra_dist_cmd {
    int64_t op;         /* LYRA_DIST_EVAL, ... below */
    int64_t n;          /* EVAL, DECODE: tokens (sent next with LYRA_DIST_TAG_TOKENS);
                           KV_BEGIN, RESERVE: positions to reserve; KV_END: top */
    int64_t logits_all; /* EVAL: lyra_eval's logits_all; DECODE: 1 when the batch has logits flags */
    int64_t pos;        /* EVAL: the position of the first token (the others truncate to it);
                           KV_END: the sequence's position */
    int64_t seq;        /* KV_*, RESERVE: the sequence */
    int64_t layer;      /* KV_GET, KV_PUT: the layer (only its rank answers) */
    int64_t chunk;      /* KV_GET, KV_PUT: the chunk */
} lyra_dist_cmd;
/* EVAL: lyra_eval of sequence 0. DECODE: lyra_decode of a batch (tokens, then
 * positions, sequence ids and logits flags: 4 x n int32 in one message; each
 * sequence first truncates to its first position). KV_BEGIN / KV_GET /
 * KV_PUT / KV_END: a session's KV cache saved or restored by rank 0
 * (kvstate.h), the chunk's rows going with LYRA_DIST_TAG_KV. RESERVE: every
 * rank grows the sequence's KV cache together, handing layers on when one
 * is out of memory (--fallback-across-ranks, lyra_kv_reserve). QUIT: the end. */
enum {
    LYRA_DIST_EVAL = 1,
    LYRA_DIST_QUIT = 2,
    LYRA_DIST_DECODE = 3,
    LYRA_DIST_KV_BEGIN = 4,
    LYRA_DIST_KV_GET = 5,
    LYRA_DIST_KV_PUT = 6,
    LYRA_DIST_KV_END = 7,
    LYRA_DIST_RESERVE = 8
};

/* 1 when the build has MPI. */
int lyra_dist_built(void);
/* Initialize MPI when launched by mpirun (see above); a no-op otherwise. */
int lyra_dist_init(int *argc, char ***argv, lyra_error *err);
/* Rank 0 sends QUIT to every other rank (once); then MPI_Finalize. */
void lyra_dist_finish(void);
/* End every rank now (MPI_Abort with code) after an error; a no-op with one rank. */
void lyra_dist_abort(int code);
/* 1 when every rank failed the same collective check (a model file differs):
 * no abort is needed, and rank 0's error line says it all. */
int lyra_dist_failed_together(void);
/* Say so (a check every rank makes alike failed). */
void lyra_dist_set_failed_together(void);
/* This process's rank (0 with one) and the number of ranks (1 without MPI). */
int lyra_dist_rank(void);
int lyra_dist_size(void);
/* The seconds a wait may take (LYRA_MPI_TIMEOUT). */
double lyra_dist_timeout(void);

/* Send bytes of buf to rank `to` / receive exactly bytes from rank `from`
 * with tag, waiting at most the timeout (timeout_s <= 0: no deadline, for a
 * rank waiting for its next command). Errors name the other rank. */
int lyra_dist_send(int to, int tag, const void *buf, size_t bytes, lyra_error *err);
int lyra_dist_recv(int from, int tag, void *buf, size_t bytes, double timeout_s, lyra_error *err);
/* A receive under way (lyra_dist_irecv), waited for with lyra_dist_wait. */
typedef struct lyra_dist_req {
    int peer;   /* the rank it comes from */
    int active; /* posted and not yet waited for */
    uint64_t h; /* the MPI_Request */
} lyra_dist_req;
/* Post a receive of exactly bytes from rank `from` into buf, returning at
 * once; lyra_dist_wait waits for it (timeout_s as lyra_dist_recv; a request
 * not active is done). */
int lyra_dist_irecv(int from, int tag, void *buf, size_t bytes, lyra_dist_req *req, lyra_error *err);
int lyra_dist_wait(lyra_dist_req *req, double timeout_s, lyra_error *err);

/* Rank 0: send cmd to every other rank, with tokens[cmd->n] for EVAL and
 * tokens[4 * cmd->n] for DECODE. */
int lyra_dist_command(const lyra_dist_cmd *cmd, const int32_t *tokens, lyra_error *err);

/* Collectives (every rank calls them at the same point), with the deadline:
 * rank 0 receives every rank's `bytes` bytes of mine into all[size][bytes]
 * (all is unused on the other ranks); rank 0's buf[bytes] to every rank.
 * With one rank: gather copies mine to all, bcast does nothing. */
int lyra_dist_gather(const void *mine, void *all, size_t bytes, lyra_error *err);
int lyra_dist_bcast(void *buf, size_t bytes, lyra_error *err);

/* The fingerprint of a model file: FNV-1a 64 of its size, its first MiB and
 * 64 KiB samples at 64 evenly spaced places. */
int lyra_dist_fingerprint(const char *path, uint64_t *out, lyra_error *err);
/* Every rank: compare path's fingerprint with rank 0's (collective); a
 * different file on some rank is LYRA_ERR_INPUT naming the lowest such rank
 * (on every rank). */
int lyra_dist_check_file(const char *path, lyra_error *err);

#endif
