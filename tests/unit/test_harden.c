/* test_harden.c: hardening found by an outside probe (issue 12), without
 * model files:
 *  - the GGUF writer is linear: 100k keys (or tensors) in one writer cost
 *    < 8x per item what 5k cost (20x fewer: 160x the time of 5k; a
 *    quadratic duplicate check costs 20x per item);
 *  - the writer refuses an output that exists and is not a regular file (a
 *    FIFO, a symlink, a directory) and a name too long for its temporary
 *    name, before writing anything; a cancel flag stops it with no file left;
 *    temporary files PATH.tmp.PID.XXXXXX of dead processes are removed,
 *    those of live ones kept;
 *  - a vocabulary whose tokens are all empty strings loads, encodes and
 *    decodes (UBSan: no memcmp/memcpy on NULL); a token id key that is not
 *    an integer (eos_token_id as a string) is an error naming the key;
 *  - a pool with more threads than CPUs runs every share exactly once per
 *    job, quickly. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/pool.h"
#include "format/gguf.h"
#include "testutil.h"
#include "token/tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int count_prefix(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    if (!d) return -1;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    closedir(d);
    return n;
}

/* ------------------------------------------------------------ writer scaling */

/* Seconds to add n keys (kind 0) or n tensors (kind 1) to a new writer. */
static double add_n(int kind, int n) {
    static float one = 1.0f;
    double t0 = now();
    lyra_gguf_writer *w = lyra_gguf_writer_new();
    char name[64];
    int bad = 0;
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%s.%d.x", kind ? "blk" : "key", i);
        int64_t ne[1] = {1};
        bad |= kind ? lyra_gguf_writer_add_tensor(w, name, LYRA_TYPE_F32, 1, ne, &one)
                    : lyra_gguf_writer_add_u32(w, name, (uint32_t)i);
    }
    /* a duplicate is still found (tensors) / replaced in place (keys) */
    int64_t ne[1] = {1};
    if (kind) CHECK(lyra_gguf_writer_add_tensor(w, "blk.7.x", LYRA_TYPE_F32, 1, ne, &one) == LYRA_ERR_INPUT, "dup tensor");
    else CHECK(lyra_gguf_writer_add_u32(w, "key.7.x", 5) == LYRA_OK, "replace key");
    CHECK(!bad, "adding %d %s", n, kind ? "tensors" : "keys");
    lyra_gguf_writer_free(w);
    return now() - t0;
}

/* 100k items in one writer against 5k items in each of 20 writers (the same
 * work, and a time well above the timer's noise): a linear writer costs
 * about the same per item (a few times more at most: caches), a quadratic
 * one 20 times more. Best of 3: the machine may be busy. */
static void test_writer_linear(void) {
    for (int kind = 0; kind < 2; kind++) {
        double small = 1e9, big = 1e9;
        for (int r = 0; r < 3; r++) {
            double a = 0;
            for (int k = 0; k < 20; k++) a += add_n(kind, 5000);
            double b = add_n(kind, 100000);
            if (a < small) small = a;
            if (b < big) big = b;
        }
        printf("writer: 20 x 5k %s %.4f s, 1 x 100k %.4f s (per item x%.1f)\n", kind ? "tensors" : "keys", small,
               big, big / small);
        CHECK(big < 8 * small, "100k %s took %.3f s, 20 x 5k %.3f s: not linear", kind ? "tensors" : "keys", big,
              small);
    }
}

/* ------------------------------------------------------------ writer output */

static int write_small(const char *path, const volatile sig_atomic_t *cancel, lyra_error *err) {
    static float data[64];
    lyra_gguf_writer *w = lyra_gguf_writer_new();
    lyra_gguf_writer_add_str(w, "general.architecture", "llama");
    int64_t ne[1] = {64};
    lyra_gguf_writer_add_tensor(w, "t", LYRA_TYPE_F32, 1, ne, data);
    if (cancel) lyra_gguf_writer_set_cancel(w, cancel);
    int rc = lyra_gguf_writer_write(w, path, err);
    lyra_gguf_writer_free(w);
    return rc;
}

static void test_writer_paths(void) {
    char dir[1024], p[2048], q[2048];
    snprintf(dir, sizeof dir, "%s/paths", test_tmp_dir());
    mkdir(dir, 0755);
    lyra_error err;
    struct stat st;

    /* a FIFO stays a FIFO */
    snprintf(p, sizeof p, "%s/fifo.gguf", dir);
    CHECK(mkfifo(p, 0644) == 0, "mkfifo: %s", strerror(errno));
    int rc = write_small(p, NULL, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, p) && strstr(err.msg, "FIFO"), "fifo: %d %s", rc, err.msg);
    CHECK(lstat(p, &st) == 0 && S_ISFIFO(st.st_mode), "the FIFO was replaced");
    CHECK(lyra_gguf_writer_check_path(p, &err) == LYRA_ERR_INPUT, "check_path fifo");

    /* a symlink (to an existing file and dangling) stays, its target untouched */
    snprintf(q, sizeof q, "%s/target", dir);
    FILE *f = fopen(q, "w");
    if (f) { fputs("keep", f); fclose(f); }
    snprintf(p, sizeof p, "%s/link.gguf", dir);
    CHECK(symlink(q, p) == 0, "symlink: %s", strerror(errno));
    rc = write_small(p, NULL, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "symbolic link"), "symlink: %d %s", rc, err.msg);
    CHECK(lstat(p, &st) == 0 && S_ISLNK(st.st_mode) && stat(q, &st) == 0 && st.st_size == 4,
          "the symlink or its target changed");
    snprintf(p, sizeof p, "%s/dangling.gguf", dir);
    CHECK(symlink("nowhere", p) == 0, "symlink");
    CHECK(write_small(p, NULL, &err) == LYRA_ERR_INPUT, "dangling symlink: %s", err.msg);

    /* a directory */
    snprintf(p, sizeof p, "%s/sub.gguf", dir);
    mkdir(p, 0755);
    CHECK(write_small(p, NULL, &err) == LYRA_ERR_INPUT && strstr(err.msg, "directory"), "dir: %s", err.msg);

    /* a name whose temporary name would pass NAME_MAX: a clear error */
    char name[300];
    memset(name, 'n', 250);
    strcpy(name + 250, ".gguf");
    snprintf(p, sizeof p, "%s/%s", dir, name);
    rc = write_small(p, NULL, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "too long"), "long name: %d %s", rc, err.msg);
    /* 230 bytes still fit */
    name[225] = '\0';
    strcat(name, ".gguf");
    snprintf(p, sizeof p, "%s/%s", dir, name);
    CHECK(write_small(p, NULL, &err) == LYRA_OK, "230-byte name: %s", err.msg);

    /* cancelled: LYRA_ERR_INTERRUPTED, no file, no temporary file */
    volatile sig_atomic_t stop = 1;
    snprintf(p, sizeof p, "%s/cancel.gguf", dir);
    rc = write_small(p, &stop, &err);
    CHECK(rc == LYRA_ERR_INTERRUPTED && access(p, F_OK) != 0, "cancel: %d %s", rc, err.msg);
    CHECK(count_prefix(dir, "cancel.gguf") == 0, "cancel left a file");
    stop = 0;
    CHECK(write_small(p, &stop, &err) == LYRA_OK, "flag clear: %s", err.msg);

    /* stale temporary files: a dead writer's are removed, a live one's and
     * names of other shapes are kept */
    pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0);
    char dead[2048], live[2048];
    snprintf(dead, sizeof dead, "%s/out.gguf.tmp.%ld.a1b2c3", dir, (long)child);
    snprintf(live, sizeof live, "%s/out.gguf.tmp.%ld.a1b2c3", dir, (long)getppid());
    char files[5][2048];
    snprintf(files[0], 2048, "%s", dead);
    snprintf(files[1], 2048, "%s", live);
    snprintf(files[2], 2048, "%s/out.gguf.tmp.abcdef", dir);     /* the old naming: owner unknown */
    snprintf(files[3], 2048, "%s/out.gguf.tmp.1x.abcdef", dir);  /* not a pid */
    snprintf(files[4], 2048, "%s/other.gguf.tmp.%ld.abcdef", dir, (long)child);
    for (int i = 0; i < 5; i++) {
        f = fopen(files[i], "w");
        if (f) fclose(f);
    }
    snprintf(p, sizeof p, "%s/out.gguf", dir);
    CHECK(write_small(p, NULL, &err) == LYRA_OK, "out: %s", err.msg);
    CHECK(access(dead, F_OK) != 0, "the dead writer's temporary file was kept");
    for (int i = 1; i < 5; i++) CHECK(access(files[i], F_OK) == 0, "%s was removed", files[i]);
    CHECK(count_prefix(dir, "out.gguf.tmp.") == 3, "temporary files after the write");
}

/* ------------------------------------------------------------ tokenizer */

/* Write a vocabulary-only GGUF: model, n tokens all "", one extra key. */
static const char *vocab_file(const char *name, const char *model, int n, const char *str_key,
                              const char *str_val) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s.gguf", test_tmp_dir(), name);
    lyra_gguf_writer *w = lyra_gguf_writer_new();
    lyra_gguf_writer_add_str(w, "tokenizer.ggml.model", model);
    const char *toks[16];
    for (int i = 0; i < n; i++) toks[i] = "";
    lyra_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, (uint64_t)n);
    if (!strcmp(model, "gpt2")) lyra_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", toks, NULL, 0);
    if (str_key) lyra_gguf_writer_add_str(w, str_key, str_val);
    lyra_error err;
    CHECK(lyra_gguf_writer_write(w, path, &err) == LYRA_OK, "%s: %s", name, err.msg);
    lyra_gguf_writer_free(w);
    return path;
}

static void test_empty_vocab(void) {
    static const char *const models[] = {"llama", "gpt2"};
    for (int k = 0; k < 2; k++) {
        const char *path = vocab_file("empty", models[k], 8, NULL, NULL);
        lyra_gguf *g = NULL;
        lyra_tokenizer *t = NULL;
        lyra_error err;
        CHECK(lyra_gguf_open(path, &g, &err) == LYRA_OK, "open: %s", err.msg);
        if (!g) continue;
        int rc = lyra_tokenizer_load(g, &t, &err);
        CHECK(rc == LYRA_OK, "%s: all-empty vocabulary: %s", models[k], err.msg);
        if (t) {
            int32_t *ids = NULL;
            size_t n = 0;
            rc = lyra_tok_encode(t, "ab c", 4, 1, 1, &ids, &n, &err);
            CHECK(rc == LYRA_OK || rc == LYRA_ERR_INPUT, "%s: encode: %d %s", models[k], rc, err.msg);
            for (size_t i = 0; i < n; i++) CHECK(ids[i] >= 0 && ids[i] < 8, "id %d", ids[i]);
            free(ids);
            char buf[8];
            for (int32_t id = 0; id < 8; id++) CHECK(lyra_tok_piece(t, id, 1, buf, sizeof buf) == 0, "piece");
            CHECK(lyra_tok_find(t, "", 0) >= 0, "the empty token is found");
            lyra_tokenizer_free(t);
        }
        lyra_gguf_close(g);
        remove(path);
    }
    /* a token id key that is not an integer */
    static const char *const keys[] = {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.bos_token_id"};
    for (int k = 0; k < 2; k++) {
        const char *path = vocab_file("eos_str", "llama", 4, keys[k], "2");
        lyra_gguf *g = NULL;
        lyra_tokenizer *t = NULL;
        lyra_error err;
        if (lyra_gguf_open(path, &g, &err)) { CHECK(0, "open: %s", err.msg); continue; }
        int rc = lyra_tokenizer_load(g, &t, &err);
        CHECK(rc == LYRA_ERR_INPUT && t == NULL && strstr(err.msg, keys[k]), "%s as a string: %d %s", keys[k], rc,
              rc ? err.msg : "accepted");
        lyra_tokenizer_free(t);
        lyra_gguf_close(g);
        remove(path);
    }
}

/* ------------------------------------------------------------ pool */

typedef struct {
    _Atomic int hits[512]; /* per share */
    _Atomic int bad;       /* calls with a wrong nth */
    int nth;
} pool_job;

static void pool_fn(void *arg, int ith, int nth) {
    pool_job *j = arg;
    if (nth != j->nth || ith < 0 || ith >= nth) j->bad++;
    else j->hits[ith]++;
}

static void test_pool(void) {
    static const int sizes[] = {2, 3, 64, 300};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int n = sizes[s];
        lyra_pool *p = lyra_pool_new(n);
        CHECK(p && lyra_pool_size(p) == n, "pool of %d", n);
        if (!p) continue;
        static pool_job j;
        memset(&j, 0, sizeof j);
        j.nth = n;
        const int runs = 2000;
        double t0 = now();
        for (int r = 0; r < runs; r++) lyra_pool_run(p, pool_fn, &j);
        double dt = now() - t0;
        int ok = !j.bad;
        for (int i = 0; i < n; i++) ok &= j.hits[i] == runs;
        CHECK(ok, "pool of %d: every share once per run (bad %d)", n, (int)j.bad);
        printf("pool: %d threads, %d runs in %.3f s\n", n, runs, dt);
        /* before: a 300-thread pool spun for minutes on a 2-core machine */
        CHECK(dt < 30, "pool of %d: %d runs took %.1f s", n, runs, dt);
        lyra_pool_free(p);
    }
}

int main(void) {
    test_writer_linear();
    test_writer_paths();
    test_empty_vocab();
    test_pool();
    return test_done();
}
