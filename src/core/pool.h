/* pool.h: a fixed thread pool. lyra_pool_run(fn) calls fn(arg, ith, nth) on
 * every thread (the caller is thread 0) and returns when all are done. Work is
 * split by the callee, always by output rows, so results never depend on nth. */
#ifndef LYRA_POOL_H
#define LYRA_POOL_H

typedef struct lyra_pool lyra_pool;
typedef void (*lyra_pool_fn)(void *arg, int ith, int nth);

/* n_threads >= 1 (1: no worker threads, run inline). NULL on failure. */
lyra_pool *lyra_pool_new(int n_threads);
void lyra_pool_free(lyra_pool *pool);
int lyra_pool_size(const lyra_pool *pool);
/* Run fn on all threads. pool may be NULL (runs fn(arg, 0, 1)). */
void lyra_pool_run(lyra_pool *pool, lyra_pool_fn fn, void *arg);

/* Rows [*r0, *r1) of n for thread ith of nth, contiguous and balanced. */
static inline void lyra_split_rows(long n, int ith, int nth, long *r0, long *r1) {
    long per = n / nth, extra = n % nth;
    *r0 = ith * per + (ith < extra ? ith : extra);
    *r1 = *r0 + per + (ith < extra ? 1 : 0);
}

/* Number of physical cores (falls back to online CPUs). */
int lyra_physical_cores(void);
/* The default thread count: the physical cores, fewer when the affinity
 * mask or a cgroup CPU quota lets this process use fewer CPUs; *why (may be
 * NULL): "physical cores", "cpu affinity mask" or "cgroup cpu quota". */
int lyra_default_threads(const char **why);
/* The CPUs a cgroup quota allows this process (ceil(quota / period)), 0 for
 * none: proc_cgroup is /proc/self/cgroup's format (v2 "0::PATH", v1
 * "N:cpu,cpuacct:PATH"), root the cgroup mount (/sys/fs/cgroup). */
int lyra_cgroup_cpus(const char *root, const char *proc_cgroup);

#endif
