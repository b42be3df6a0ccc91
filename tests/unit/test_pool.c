/* test_pool.c: the default thread count's inputs (core/pool.h): cgroup CPU
 * quotas read from a fake cgroup tree (v2 cpu.max, v1 cfs files, a parent's
 * quota, no quota), and lyra_default_threads within [1, physical cores].
 * (The pool's shares are checked in test_harden.c.) */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/pool.h"
#include "testutil.h"

static void put(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "create %s", path);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void mk(const char *path) { mkdir(path, 0755); }

int main(void) {
    const char *tmp = test_tmp_dir();
    char root[1024], p[1400], self[1400];
    snprintf(root, sizeof root, "%s/cg", tmp);
    mk(root);
    snprintf(self, sizeof self, "%s/self", tmp);

    /* v2: 1.5 CPUs on the process's group -> 2 */
    snprintf(p, sizeof p, "%s/a", root); mk(p);
    snprintf(p, sizeof p, "%s/a/b", root); mk(p);
    snprintf(p, sizeof p, "%s/a/b/cpu.max", root); put(p, "150000 100000\n");
    put(self, "0::/a/b\n");
    CHECK(lyra_cgroup_cpus(root, self) == 2, "v2 quota: %d", lyra_cgroup_cpus(root, self));
    /* v2: no limit on the group, 1 CPU on its parent -> 1 */
    snprintf(p, sizeof p, "%s/a/b/cpu.max", root); put(p, "max 100000\n");
    snprintf(p, sizeof p, "%s/a/cpu.max", root); put(p, "100000 100000\n");
    CHECK(lyra_cgroup_cpus(root, self) == 1, "v2 parent quota: %d", lyra_cgroup_cpus(root, self));
    /* v2: none anywhere -> 0 */
    put(p, "max 100000\n");
    CHECK(lyra_cgroup_cpus(root, self) == 0, "v2 no quota: %d", lyra_cgroup_cpus(root, self));
    /* v1: cpu,cpuacct hierarchy, 3 CPUs; -1 is no limit */
    snprintf(p, sizeof p, "%s/cpu,cpuacct", root); mk(p);
    snprintf(p, sizeof p, "%s/cpu,cpuacct/g", root); mk(p);
    snprintf(p, sizeof p, "%s/cpu,cpuacct/g/cpu.cfs_quota_us", root); put(p, "300000\n");
    snprintf(p, sizeof p, "%s/cpu,cpuacct/g/cpu.cfs_period_us", root); put(p, "100000\n");
    put(self, "5:memory:/x\n4:cpu,cpuacct:/g\n0::/\n");
    CHECK(lyra_cgroup_cpus(root, self) == 3, "v1 quota: %d", lyra_cgroup_cpus(root, self));
    snprintf(p, sizeof p, "%s/cpu,cpuacct/g/cpu.cfs_quota_us", root); put(p, "-1\n");
    CHECK(lyra_cgroup_cpus(root, self) == 0, "v1 no quota: %d", lyra_cgroup_cpus(root, self));
    /* a missing file or tree: no limit */
    snprintf(p, sizeof p, "%s/none", tmp);
    CHECK(lyra_cgroup_cpus(root, p) == 0, "no /proc/self/cgroup");
    CHECK(lyra_cgroup_cpus(p, self) == 0, "no cgroup mount");

    const char *why = NULL;
    int n = lyra_default_threads(&why);
    CHECK(n >= 1 && n <= lyra_physical_cores() && why, "default threads %d", n);
    printf("default threads: %d (%s)\n", n, why ? why : "?");
    return test_done();
}
