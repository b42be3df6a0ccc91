/* pool.c: persistent worker threads waiting for the next job generation:
 * a bounded, adaptive spin, then a sleep on a condition variable (the
 * caller waits for the workers the same way).
 *
 * A job's nth shares are claimed (by index, each exactly once) by whichever
 * threads get there first, the caller included: when another process holds
 * a worker's core, the caller runs that worker's share itself instead of
 * waiting a scheduler time slice for it (on a 2-core machine with one core
 * busy, 2 threads used to decode slower than 1). A share's rows depend only
 * on (ith, nth), never on the thread that runs it, so results are the same
 * either way.
 *
 * Spinning only pays when every thread has a core of its own: with more
 * threads than CPUs (or CPUs busy with other work) a spinning thread takes
 * the core from the thread everyone is waiting for. So the spin budget is
 * per thread and adaptive: it halves each time the thread was preempted
 * while spinning (its core was wanted elsewhere) and doubles back (up to
 * SPIN_MAX) each time the spin caught the work; every SPIN_RESET waits it
 * starts again from SPIN_MAX, so a preemption long past does not keep it low. A wait that outlasted the
 * spin (a pause between jobs: sampling, I/O) leaves it as it is: halving
 * there let the budget collapse and every job then woke sleeping workers,
 * 10x slower decode on a small model.
 *
 * With more threads than the CPUs this process may use, nothing spins, and
 * only a few workers (one per CPU) are woken per job rather than each
 * worker waking for its own share: waking thousands of threads per job
 * would cost more than the job.
 *
 * lyra_default_threads: the physical cores, fewer when the affinity mask or
 * a cgroup CPU quota (v2 cpu.max, v1 cpu.cfs_quota_us) allows fewer. */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

struct lyra_pool {
    int n;                 /* threads including the caller (= shares per job) */
    int claim;             /* 1: oversubscribed: no spinning, n_wake woken per job */
    int n_wake;            /* oversubscribed: workers woken per job */
    int caller_budget;     /* the caller's spin budget (adaptive) */
    unsigned caller_waits; /* the caller's waits so far (budget resets) */
    pthread_t *threads;    /* [n-1] workers */
    pthread_mutex_t mu;
    pthread_cond_t cv;     /* workers wait here for a new generation */
    pthread_cond_t done;   /* the caller waits here for all shares done */
    /* (generation << 32) | next unclaimed share: a generation is bumped per
     * job */
    _Atomic uint64_t work;
    atomic_int n_done;     /* shares of the current job finished */
    atomic_int stop;
    lyra_pool_fn fn;       /* current job */
    void *arg;
};

typedef struct { lyra_pool *p; int ith; } worker_arg;

#define SPIN_MAX 16384 /* pause iterations, a few tens of microseconds */
#define SPIN_MIN 64
#define SPIN_RESET 256 /* waits after which the budget starts again from SPIN_MAX */
#define WAIT_SLACK_S 20e-6 /* the caller's spin: its own shares' time plus this */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline uint32_t work_gen(uint64_t w) { return (uint32_t)(w >> 32); }

/* Involuntary context switches of the calling thread so far. */
static long preemptions(void) {
#ifdef RUSAGE_THREAD
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) == 0) return ru.ru_nivcsw;
#endif
    return 0;
}

/* The new spin budget after a wait: caught (the spin saw the work),
 * preempted (the thread lost its core meanwhile). */
static int adapt(int budget, int caught, int preempted, unsigned *waits) {
    if (++*waits % SPIN_RESET == 0) return SPIN_MAX; /* a preemption long past: try again */
    if (preempted) return budget / 2 > SPIN_MIN ? budget / 2 : SPIN_MIN;
    if (!caught) return budget; /* a long pause (sampling, I/O): says nothing of the core */
    return budget * 2 < SPIN_MAX ? budget * 2 : SPIN_MAX;
}

/* One share done; the last one wakes a sleeping caller. */
static void share_done(lyra_pool *p) {
    if (atomic_fetch_add_explicit(&p->n_done, 1, memory_order_acq_rel) + 1 == p->n) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

/* Run unclaimed shares of generation g until none is left. */
static void claim_shares(lyra_pool *p, uint32_t g) {
    uint64_t w = atomic_load_explicit(&p->work, memory_order_acquire);
    while (work_gen(w) == g && (uint32_t)w < (uint32_t)p->n) {
        if (!atomic_compare_exchange_weak_explicit(&p->work, &w, w + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* w reloaded */
        p->fn(p->arg, (int)(uint32_t)w, p->n);
        share_done(p);
        w = atomic_load_explicit(&p->work, memory_order_acquire);
    }
}

static void *worker_main(void *varg) {
    worker_arg wa = *(worker_arg *)varg;
    free(varg);
    lyra_pool *p = wa.p;
    uint32_t seen = 0;
    int budget = p->claim ? 0 : SPIN_MAX;
    unsigned waits = 0;
    for (;;) {
        uint32_t g;
        int spins = 0, caught = 1;
        long pre = budget ? preemptions() : 0;
        while ((g = work_gen(atomic_load_explicit(&p->work, memory_order_acquire))) == seen &&
               !atomic_load(&p->stop)) {
            if (spins >= budget) {
                caught = 0;
                pthread_mutex_lock(&p->mu);
                while (work_gen(atomic_load(&p->work)) == seen && !atomic_load(&p->stop))
                    pthread_cond_wait(&p->cv, &p->mu);
                pthread_mutex_unlock(&p->mu);
                continue;
            }
            spins++;
            cpu_relax();
        }
        if (spins && budget) budget = adapt(budget, caught, preemptions() != pre, &waits);
        if (atomic_load(&p->stop)) break;
        seen = g;
        claim_shares(p, g);
    }
    return NULL;
}

/* CPUs this process may run on. */
static int usable_cpus(void) {
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}

/* The first line of a small file into buf (0), or -1. */
static int read_line(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char *r = fgets(buf, (int)cap, f);
    fclose(f);
    return r ? 0 : -1;
}

/* ceil(quota / period) >= 1, or 0 for no limit. */
static int quota_cpus(long long quota, long long period) {
    if (quota <= 0 || period <= 0) return 0;
    long long n = (quota + period - 1) / period;
    return n < 1 ? 1 : n > 1 << 20 ? 1 << 20 : (int)n;
}

/* The quota of one cgroup directory (v2 cpu.max, else v1 cfs files): CPUs or 0. */
static int dir_quota(const char *dir) {
    char path[4200], line[128];
    snprintf(path, sizeof path, "%s/cpu.max", dir);
    if (!read_line(path, line, sizeof line)) {
        long long q, per;
        if (sscanf(line, "%lld %lld", &q, &per) == 2) return quota_cpus(q, per);
        return 0; /* "max PERIOD" */
    }
    long long q = 0, per = 0;
    snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir);
    if (read_line(path, line, sizeof line) || sscanf(line, "%lld", &q) != 1) return 0;
    snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir);
    if (read_line(path, line, sizeof line) || sscanf(line, "%lld", &per) != 1) return 0;
    return quota_cpus(q, per);
}

/* The smallest quota of base+path and each of its ancestors (0: none). */
static int path_quota(const char *base, const char *path) {
    char dir[4096];
    int best = 0;
    size_t len = strlen(path);
    while (len && path[len - 1] == '/') len--;
    for (;;) {
        snprintf(dir, sizeof dir, "%s%.*s", base, (int)len, path);
        int n = dir_quota(dir);
        if (n && (!best || n < best)) best = n;
        if (!len) break;
        while (len && path[len - 1] != '/') len--; /* the parent */
        while (len && path[len - 1] == '/') len--;
    }
    return best;
}

int lyra_cgroup_cpus(const char *root, const char *proc_cgroup) {
    FILE *f = fopen(proc_cgroup, "r");
    if (!f) return 0;
    char line[4096], base[4096];
    int best = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c1 = '\0';
        *c2 = '\0';
        const char *ctrl = c1 + 1, *path = c2 + 1;
        int n = 0;
        if (!strcmp(line, "0") && !*ctrl) { /* v2 unified hierarchy */
            snprintf(base, sizeof base, "%s", root);
            n = path_quota(base, path);
        } else { /* v1: the hierarchy with the cpu controller */
            int has_cpu = 0;
            for (const char *t = ctrl; *t;) {
                size_t l = strcspn(t, ",");
                if (l == 3 && !strncmp(t, "cpu", 3)) has_cpu = 1;
                t += l + (t[l] == ',');
            }
            if (!has_cpu) continue;
            snprintf(base, sizeof base, "%s/%s", root, ctrl);
            n = path_quota(base, path);
            if (!n) {
                snprintf(base, sizeof base, "%s/cpu", root);
                n = path_quota(base, path);
            }
        }
        if (n && (!best || n < best)) best = n;
    }
    fclose(f);
    return best;
}

int lyra_default_threads(const char **why) {
    int n = lyra_physical_cores();
    const char *w = "physical cores";
    int aff = usable_cpus();
    if (aff < n) { n = aff; w = "cpu affinity mask"; }
    int q = lyra_cgroup_cpus("/sys/fs/cgroup", "/proc/self/cgroup");
    if (q && q < n) { n = q; w = "cgroup cpu quota"; }
    if (why) *why = w;
    return n;
}

lyra_pool *lyra_pool_new(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    lyra_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    int cpus = usable_cpus();
    p->n = n_threads;
    p->claim = n_threads > cpus;
    p->n_wake = cpus > 1 ? cpus - 1 : 1;
    p->caller_budget = p->claim ? 0 : SPIN_MAX;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->work, 0);
    atomic_init(&p->n_done, 0);
    atomic_init(&p->stop, 0);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) { free(p); return NULL; }
        /* workers start with every signal blocked (they inherit the mask):
         * a Ctrl-C goes to the application's own thread, which may be
         * waiting for input and must see it */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        for (int i = 1; i < n_threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (!wa || pthread_create(&p->threads[i - 1], NULL, worker_main, wa ? (wa->p = p, wa->ith = i, wa) : NULL) != 0) {
                free(wa);
                p->n = i; /* keep the ones that started */
                break;
            }
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    return p;
}

int lyra_pool_size(const lyra_pool *p) { return p ? p->n : 1; }

void lyra_pool_run(lyra_pool *p, lyra_pool_fn fn, void *arg) {
    if (!p || p->n == 1) { fn(arg, 0, 1); return; }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->n_done, 0);
    uint32_t g = work_gen(atomic_load(&p->work)) + 1;
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->work, (uint64_t)g << 32, memory_order_release);
    if (p->claim)
        for (int i = 0; i < p->n_wake; i++) pthread_cond_signal(&p->cv);
    else
        pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    /* the caller claims shares like the workers: those of a worker that has
     * not started (its core taken by another process) are run here */
    double t0 = p->claim ? 0.0 : now_s();
    claim_shares(p, g);
    /* wait for the other shares: spin (within the budget, and no longer than
     * the caller's own shares took plus WAIT_SLACK_S: a worker later than
     * that has lost its core), then sleep until the last one signals (a
     * sleeping caller frees its core for the worker that lost its own) */
    int spins = 0, caught = 1, budget = p->caller_budget;
    long pre = budget ? preemptions() : 0;
    double t_end = 0.0;
    if (budget) {
        double t1 = now_s();
        t_end = t1 + (t1 - t0) + WAIT_SLACK_S;
    }
    while (atomic_load_explicit(&p->n_done, memory_order_acquire) < p->n) {
        if (spins >= budget || ((spins & 63) == 63 && now_s() > t_end)) {
            caught = 0;
            pthread_mutex_lock(&p->mu);
            while (atomic_load_explicit(&p->n_done, memory_order_acquire) < p->n)
                pthread_cond_wait(&p->done, &p->mu);
            pthread_mutex_unlock(&p->mu);
            break;
        }
        spins++;
        cpu_relax();
    }
    if (spins && budget) p->caller_budget = adapt(budget, caught, preemptions() != pre, &p->caller_waits);
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
    pthread_cond_destroy(&p->done);
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
