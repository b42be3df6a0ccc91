/* pool.c: persistent worker threads that spin briefly, then sleep on a
 * condition variable, waiting for the next job generation. */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct lyra_pool {
    int n;                 /* threads including the caller */
    pthread_t *threads;    /* [n-1] workers */
    pthread_mutex_t mu;
    pthread_cond_t cv;     /* workers wait here for a new generation */
    atomic_uint gen;       /* job generation, bumped per run */
    atomic_int pending;    /* workers still running the current job */
    atomic_int stop;
    lyra_pool_fn fn;       /* current job */
    void *arg;
};

typedef struct { lyra_pool *p; int ith; } worker_arg;

#define SPIN_ITERS 20000

static void *worker_main(void *varg) {
    worker_arg wa = *(worker_arg *)varg;
    free(varg);
    lyra_pool *p = wa.p;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen &&
               !atomic_load(&p->stop)) {
            if (++spins > SPIN_ITERS) {
                pthread_mutex_lock(&p->mu);
                while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                    pthread_cond_wait(&p->cv, &p->mu);
                pthread_mutex_unlock(&p->mu);
                spins = 0;
            }
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
        if (atomic_load(&p->stop)) break;
        seen = g;
        p->fn(p->arg, wa.ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
    return NULL;
}

lyra_pool *lyra_pool_new(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    lyra_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, 0);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) { free(p); return NULL; }
        for (int i = 1; i < n_threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (!wa || pthread_create(&p->threads[i - 1], NULL, worker_main, wa ? (wa->p = p, wa->ith = i, wa) : NULL) != 0) {
                free(wa);
                p->n = i; /* keep the ones that started */
                break;
            }
        }
    }
    return p;
}

int lyra_pool_size(const lyra_pool *p) { return p ? p->n : 1; }

void lyra_pool_run(lyra_pool *p, lyra_pool_fn fn, void *arg) {
    if (!p || p->n == 1) { fn(arg, 0, 1); return; }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->pending, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    /* spin briefly, then yield the core: a worker that is not running (the
     * machine is oversubscribed) must not be starved by our spinning */
    int spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
        if (++spins > SPIN_ITERS / 4) {
            sched_yield();
        } else {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
    }
}

void lyra_pool_free(lyra_pool *p) {
    if (!p) return;
    if (p->threads) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->stop, 1);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        for (int i = 1; i < p->n; i++) pthread_join(p->threads[i - 1], NULL);
        free(p->threads);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

int lyra_physical_cores(void) {
    /* count distinct (physical id, core id) pairs in /proc/cpuinfo */
    FILE *f = fopen("/proc/cpuinfo", "r");
    int n = 0;
    if (f) {
        char line[256];
        int phys = 0, ids[1024][2], nids = 0;
        while (fgets(line, sizeof line, f)) {
            if (!strncmp(line, "physical id", 11)) phys = atoi(strchr(line, ':') + 1);
            else if (!strncmp(line, "core id", 7)) {
                int core = atoi(strchr(line, ':') + 1), seen = 0;
                for (int i = 0; i < nids; i++)
                    if (ids[i][0] == phys && ids[i][1] == core) { seen = 1; break; }
                if (!seen && nids < 1024) { ids[nids][0] = phys; ids[nids][1] = core; nids++; }
            }
        }
        fclose(f);
        n = nids;
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0 || (online > 0 && n > online)) n = online > 0 ? (int)online : 1;
    return n;
}
