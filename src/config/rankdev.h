/* rankdev.h: a cluster described in a JSON file for `lyra plan --ranks N
 * --rank-devices FILE` (docs/distributed.md "Sizing a cluster on paper"):
 * each MPI rank's GPUs, CPU and disk with their memory, free memory and
 * budgets, parsed and validated into typed fields (rankdev.c). Schema:
 *
 *   {"ranks": [                                   1 .. 4096 ranks
 *     {"gpus": [SIZE | {"memory": SIZE,           0 .. 16 GPUs
 *                       "free": SIZE,             default: memory
 *                       "budget": SIZE,           default: free - reserve
 *                       "backend": "cuda"|"sim"}],  default cuda
 *      "cpu": SIZE | {"memory": SIZE, "free": SIZE, "budget": SIZE},  required
 *      "disk": SIZE}, ...]}                       optional (disk is unlimited)
 *
 * SIZE: core/size.h ("24GiB", "64GB" or a byte count). free <= memory,
 * budget <= free. A budget is that device's max_memory (a --max-memory entry
 * for it wins). Every error is LYRA_ERR_INPUT, one line "WHERE: FIELD: WHAT"
 * (WHERE the file's name, FIELD as "ranks[1].gpus[0].memory"). */
#ifndef LYRA_CONFIG_RANKDEV_H
#define LYRA_CONFIG_RANKDEV_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define LYRA_RANKDEV_MAX_RANKS 4096
#define LYRA_RANKDEV_MAX_GPUS 16

/* One device's memory. */
typedef struct lyra_rankdev_mem {
    uint64_t memory;    /* bytes of memory */
    uint64_t free;      /* bytes free (memory when not given) */
    uint64_t budget;    /* with has_budget: bytes lyra may use */
    int has_budget;     /* 1: budget given */
    int sim;            /* GPUs: 1 "sim" (a simulated GPU, reserve 0), 0 "cuda" */
} lyra_rankdev_mem;

/* One rank's devices. */
typedef struct lyra_rankdev_rank {
    int n_gpus;                                 /* 0 .. LYRA_RANKDEV_MAX_GPUS */
    lyra_rankdev_mem gpu[LYRA_RANKDEV_MAX_GPUS];/* [n_gpus] */
    lyra_rankdev_mem cpu;                       /* its CPU memory */
    uint64_t disk;                              /* bytes of disk (0: not given) */
} lyra_rankdev_rank;

typedef struct lyra_rankdev {
    int n_ranks;                /* ranks */
    lyra_rankdev_rank *rank;    /* [n_ranks] (lyra_rankdev_free) */
} lyra_rankdev;

/* Parse len bytes of text (where names it in messages). On failure *out is
 * empty. */
int lyra_rankdev_parse(const char *text, size_t len, const char *where, lyra_rankdev *out,
                       lyra_error *err);
/* Read and parse the file at path. */
int lyra_rankdev_load(const char *path, lyra_rankdev *out, lyra_error *err);
void lyra_rankdev_free(lyra_rankdev *rd);

#endif
