/* dist.c: the ranks of a run over MPI (dist.h): init and finish, messages
 * polled against a deadline, the model file's fingerprint. Built without MPI
 * (LYRA_HAVE_MPI 0) it is one rank and nothing to send. */
#include "dist/dist.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if LYRA_HAVE_MPI
#include <mpi.h>
#endif

/* The process-wide state (MPI's is anyway). */
static struct {
    int on;         /* MPI initialized by lyra_dist_init */
    int rank, size; /* this rank, the ranks */
    int quit_sent;  /* rank 0 sent QUIT */
    double timeout; /* seconds */
    int together;   /* every rank failed the same check (lyra_dist_check_file) */
} g_dist = {0, 0, 1, 0, 30.0, 0};

int lyra_dist_built(void) { return LYRA_HAVE_MPI; }
int lyra_dist_rank(void) { return g_dist.rank; }
int lyra_dist_size(void) { return g_dist.size; }
double lyra_dist_timeout(void) { return g_dist.timeout; }
int lyra_dist_failed_together(void) { return g_dist.together; }
void lyra_dist_set_failed_together(void) { g_dist.together = 1; }


static int read_timeout(lyra_error *err) {
    const char *s = getenv("LYRA_MPI_TIMEOUT");
    if (!s || !*s) return LYRA_OK;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !(v > 0) || v > 1e6)
        return lyra_err(err, LYRA_ERR_INPUT, "LYRA_MPI_TIMEOUT", "'%s' is not a number of seconds > 0", s);
    g_dist.timeout = v;
    return LYRA_OK;
}

#if LYRA_HAVE_MPI

/* 1 when a launcher (mpirun, srun with PMI) started this process. */
static int launched(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int mpi_fail(lyra_error *err, int mrc, int peer, const char *what) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(mrc, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", mrc);
    char where[32];
    snprintf(where, sizeof where, "mpi: rank %d", peer);
    return lyra_err(err, LYRA_ERR_RUNTIME, where, "%s: %s", what, s);
}

int lyra_dist_init(int *argc, char ***argv, lyra_error *err) {
    int rc = read_timeout(err);
    if (rc || !launched() || g_dist.on) return rc;
    int prov = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &prov) != MPI_SUCCESS)
        return lyra_err(err, LYRA_ERR_RUNTIME, "mpi", "MPI_Init failed");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_dist.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_dist.size);
    g_dist.on = 1;
    return LYRA_OK;
}

void lyra_dist_finish(void) {
    if (!g_dist.on) return;
    if (g_dist.rank == 0 && g_dist.size > 1 && !g_dist.quit_sent) {
        lyra_dist_cmd q = {LYRA_DIST_QUIT, 0, 0, 0, 0, 0, 0};
        lyra_error e;
        lyra_dist_command(&q, NULL, &e);
    }
    MPI_Finalize();
    g_dist.on = 0;
}

void lyra_dist_abort(int code) {
    if (g_dist.on && g_dist.size > 1) MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
}

/* Wait for req until done or the deadline (timeout_s <= 0: none), spinning
 * briefly, then sleeping a little more each time (up to 1 ms) so that a
 * waiting rank leaves the cores to the ranks computing on the same host. */
static int wait_req(MPI_Request *req, int peer, double timeout_s, const char *what, lyra_error *err) {
    double t0 = now_s();
    long spins = 0, nap_ns = 0;
    for (;;) {
        int done = 0;
        MPI_Status st;
        int mrc = MPI_Test(req, &done, &st);
        if (mrc != MPI_SUCCESS) return mpi_fail(err, mrc, peer, what);
        if (done) return LYRA_OK;
        if (++spins < 2000) continue;
        if (timeout_s > 0 && now_s() - t0 > timeout_s) {
            char where[32];
            snprintf(where, sizeof where, "mpi: rank %d", peer);
            return lyra_err(err, LYRA_ERR_RUNTIME, where,
                            "%s: no answer within %.0f s (the rank died or hangs; LYRA_MPI_TIMEOUT)",
                            what, timeout_s);
        }
        nap_ns = nap_ns < 100000 ? nap_ns + 5000 : 100000;
        struct timespec ts = {0, nap_ns};
        nanosleep(&ts, NULL);
    }
}

static int check_count(size_t bytes, int peer, lyra_error *err) {
    if (bytes > INT_MAX) {
        char where[32];
        snprintf(where, sizeof where, "mpi: rank %d", peer);
        return lyra_err(err, LYRA_ERR_INPUT, where, "a message of %zu bytes is over MPI's 2 GiB", bytes);
    }
    return LYRA_OK;
}

int lyra_dist_send(int to, int tag, const void *buf, size_t bytes, lyra_error *err) {
    int rc = check_count(bytes, to, err);
    if (rc) return rc;
    MPI_Request req;
    int mrc = MPI_Isend(buf, (int)bytes, MPI_BYTE, to, tag, MPI_COMM_WORLD, &req);
    if (mrc != MPI_SUCCESS) return mpi_fail(err, mrc, to, "send");
    return wait_req(&req, to, g_dist.timeout, "send", err);
}

int lyra_dist_recv(int from, int tag, void *buf, size_t bytes, double timeout_s, lyra_error *err) {
    int rc = check_count(bytes, from, err);
    if (rc) return rc;
    MPI_Request req;
    int mrc = MPI_Irecv(buf, (int)bytes, MPI_BYTE, from, tag, MPI_COMM_WORLD, &req);
    if (mrc != MPI_SUCCESS) return mpi_fail(err, mrc, from, "receive");
    return wait_req(&req, from, timeout_s, "receive", err);
}

int lyra_dist_gather(const void *mine, void *all, size_t bytes, lyra_error *err) {
    int rc = check_count(bytes, 0, err);
    if (rc) return rc;
    if (!g_dist.on) {
        memcpy(all, mine, bytes);
        return LYRA_OK;
    }
    MPI_Request req;
    int mrc = MPI_Igather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD, &req);
    if (mrc != MPI_SUCCESS) return mpi_fail(err, mrc, 0, "gather");
    return wait_req(&req, 0, g_dist.timeout, "gather", err);
}

int lyra_dist_bcast(void *buf, size_t bytes, lyra_error *err) {
    int rc = check_count(bytes, 0, err);
    if (rc || !g_dist.on) return rc;
    MPI_Request req;
    int mrc = MPI_Ibcast(buf, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD, &req);
    if (mrc != MPI_SUCCESS) return mpi_fail(err, mrc, 0, "broadcast");
    return wait_req(&req, 0, g_dist.timeout, "broadcast", err);
}

_Static_assert(sizeof(MPI_Request) <= sizeof(uint64_t), "lyra_dist_req holds an MPI_Request");

int lyra_dist_irecv(int from, int tag, void *buf, size_t bytes, lyra_dist_req *req, lyra_error *err) {
    req->active = 0;
    req->peer = from;
    int rc = check_count(bytes, from, err);
    if (rc) return rc;
    MPI_Request q;
    int mrc = MPI_Irecv(buf, (int)bytes, MPI_BYTE, from, tag, MPI_COMM_WORLD, &q);
    if (mrc != MPI_SUCCESS) return mpi_fail(err, mrc, from, "receive");
    memcpy(&req->h, &q, sizeof q);
    req->active = 1;
    return LYRA_OK;
}

int lyra_dist_wait(lyra_dist_req *req, double timeout_s, lyra_error *err) {
    if (!req->active) return LYRA_OK;
    MPI_Request q;
    memcpy(&q, &req->h, sizeof q);
    req->active = 0;
    int rc = wait_req(&q, req->peer, timeout_s, "receive", err);
    if (rc && q != MPI_REQUEST_NULL) { /* given up: no late write into the buffer */
        MPI_Cancel(&q);
        MPI_Request_free(&q);
    }
    return rc;
}

static int allgather_u64(uint64_t v, uint64_t *all, lyra_error *err) {
    int mrc = MPI_Allgather(&v, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
    return mrc == MPI_SUCCESS ? LYRA_OK : mpi_fail(err, mrc, 0, "allgather");
}

#else /* without MPI: one rank */

int lyra_dist_init(int *argc, char ***argv, lyra_error *err) {
    (void)argc;
    (void)argv;
    return read_timeout(err);
}
void lyra_dist_finish(void) {}
void lyra_dist_abort(int code) { (void)code; }
int lyra_dist_send(int to, int tag, const void *buf, size_t bytes, lyra_error *err) {
    (void)tag, (void)buf, (void)bytes;
    return lyra_err(err, LYRA_ERR_RUNTIME, "mpi", "no rank %d: lyra was built without MPI", to);
}
int lyra_dist_recv(int from, int tag, void *buf, size_t bytes, double timeout_s, lyra_error *err) {
    (void)tag, (void)buf, (void)bytes, (void)timeout_s;
    return lyra_err(err, LYRA_ERR_RUNTIME, "mpi", "no rank %d: lyra was built without MPI", from);
}
int lyra_dist_gather(const void *mine, void *all, size_t bytes, lyra_error *err) {
    (void)err;
    memcpy(all, mine, bytes);
    return LYRA_OK;
}
int lyra_dist_bcast(void *buf, size_t bytes, lyra_error *err) {
    (void)buf, (void)bytes, (void)err;
    return LYRA_OK;
}
int lyra_dist_irecv(int from, int tag, void *buf, size_t bytes, lyra_dist_req *req, lyra_error *err) {
    (void)tag, (void)buf, (void)bytes;
    req->active = 0;
    return lyra_err(err, LYRA_ERR_RUNTIME, "mpi", "no rank %d: lyra was built without MPI", from);
}
int lyra_dist_wait(lyra_dist_req *req, double timeout_s, lyra_error *err) {
    (void)req, (void)timeout_s, (void)err;
    return LYRA_OK;
}
static int allgather_u64(uint64_t v, uint64_t *all, lyra_error *err) {
    (void)err;
    all[0] = v;
    return LYRA_OK;
}

#endif

int lyra_dist_command(const lyra_dist_cmd *cmd, const int32_t *tokens, lyra_error *err) {
    if (g_dist.rank != 0) return LYRA_OK;
    if (cmd->op == LYRA_DIST_QUIT) g_dist.quit_sent = 1;
    for (int r = 1; r < g_dist.size; r++) {
        int rc = lyra_dist_send(r, LYRA_DIST_TAG_CMD, cmd, sizeof *cmd, err);
        size_t nt = cmd->op == LYRA_DIST_EVAL ? (size_t)cmd->n : cmd->op == LYRA_DIST_DECODE ? 4 * (size_t)cmd->n : 0;
        if (!rc && nt) rc = lyra_dist_send(r, LYRA_DIST_TAG_TOKENS, tokens, nt * sizeof *tokens, err);
        if (rc) return rc;
    }
    return LYRA_OK;
}

/* ------------------------------------------------------------ fingerprint */

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

int lyra_dist_fingerprint(const char *path, uint64_t *out, lyra_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lyra_err(err, LYRA_ERR_INPUT, path, "%s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st)) {
        int e = errno;
        close(fd);
        return lyra_err(err, LYRA_ERR_INPUT, path, "%s", strerror(e));
    }
    uint64_t size = (uint64_t)st.st_size, h = 1469598103934665603ULL;
    h = fnv(h, &size, sizeof size);
    enum { HEAD = 1 << 20, SAMPLE = 64 << 10, N_SAMPLES = 64 };
    char *buf = malloc(HEAD);
    if (!buf) {
        close(fd);
        return lyra_err(err, LYRA_ERR_OOM, path, "out of memory");
    }
    int rc = LYRA_OK;
    for (int s = -1; s < N_SAMPLES && !rc; s++) { /* s = -1: the head */
        uint64_t off = s < 0 ? 0 : size / N_SAMPLES * (uint64_t)s;
        size_t want = s < 0 ? HEAD : SAMPLE;
        if (off + want > size) want = (size_t)(size - (off < size ? off : size));
        ssize_t got = want ? pread(fd, buf, want, (off_t)off) : 0;
        if (got < 0) rc = lyra_err(err, LYRA_ERR_INPUT, path, "%s", strerror(errno));
        else h = fnv(h, buf, (size_t)got);
    }
    free(buf);
    close(fd);
    *out = h;
    return rc;
}

int lyra_dist_check_file(const char *path, lyra_error *err) {
    if (g_dist.size <= 1) return LYRA_OK;
    uint64_t mine = 0;
    lyra_error e;
    int bad = lyra_dist_fingerprint(path, &mine, &e) ? 1 : 0;
    uint64_t *all = calloc((size_t)g_dist.size * 2, sizeof *all);
    if (!all) return lyra_err(err, LYRA_ERR_OOM, "mpi", "out of memory");
    /* fingerprints, then who could not read the file */
    int rc = allgather_u64(mine, all, err);
    if (!rc) rc = allgather_u64((uint64_t)bad, all + g_dist.size, err);
    for (int r = 0; !rc && r < g_dist.size; r++) {
        char where[32];
        snprintf(where, sizeof where, "mpi: rank %d", r);
        if (all[g_dist.size + r])
            rc = r == g_dist.rank ? lyra_err(err, LYRA_ERR_INPUT, where, "%s", e.msg)
                                  : lyra_err(err, LYRA_ERR_INPUT, where, "cannot read its model file %s", path);
        else if (all[r] != all[0])
            rc = lyra_err(err, LYRA_ERR_INPUT, where,
                          "its model file is not rank 0's %s (fingerprint %016llx, rank 0's %016llx)",
                          path, (unsigned long long)all[r], (unsigned long long)all[0]);
    }
    if (rc) g_dist.together = 1;
    free(all);
    return rc;
}
