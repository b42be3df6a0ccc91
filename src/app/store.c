/* store.c: the scratch file that stages tensor data for the GGUF writer, and
 * parallel row conversion (see store.h). */
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define STORE_PAD 64
#define STORE_CHUNK (32u << 20)

int app_store_open(app_store *s, const char *near_path, lyra_error *err) {
    memset(s, 0, sizeof *s);
    s->fd = -1;
    /* the directory and the scratch name are sized to the path: no fixed
     * buffer that a long directory would overflow or truncate */
    const char *slash = strrchr(near_path, '/');
    size_t dlen = !slash ? 1 : slash == near_path ? 1 : (size_t)(slash - near_path);
    s->where = malloc(dlen + 1);
    char *path = malloc(dlen + sizeof "/.lyra-scratch-XXXXXX");
    if (!s->where || !path) {
        free(path);
        return lyra_err(err, LYRA_ERR_OOM, "store", "out of memory");
    }
    if (!slash) memcpy(s->where, ".", 2);
    else if (slash == near_path) memcpy(s->where, "/", 2);
    else {
        memcpy(s->where, near_path, dlen);
        s->where[dlen] = '\0';
    }
    sprintf(path, "%s/.lyra-scratch-XXXXXX", strcmp(s->where, "/") ? s->where : "");
    s->fd = mkstemp(path);
    if (s->fd < 0) {
        int e = errno;
        free(path);
        return lyra_err(err, LYRA_ERR_INPUT, s->where, "cannot create a scratch file: %s", strerror(e));
    }
    unlink(path); /* gone from the directory; lives until closed */
    free(path);
    return LYRA_OK;
}

static int write_all(app_store *s, const void *buf, size_t n, lyra_error *err) {
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t k = write(s->fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            return lyra_err(err, LYRA_ERR_RUNTIME, s->where, "writing the scratch file: %s",
                            k < 0 ? strerror(errno) : "short write");
        p += k;
        n -= (size_t)k;
        s->size += (uint64_t)k;
    }
    return LYRA_OK;
}

static int pad(app_store *s, lyra_error *err) {
    static const uint8_t zeros[STORE_PAD];
    size_t r = (size_t)(s->size % STORE_PAD);
    return r ? write_all(s, zeros, STORE_PAD - r, err) : LYRA_OK;
}

int app_store_append(app_store *s, const void *buf, size_t n, uint64_t *off, lyra_error *err) {
    *off = s->size;
    int rc = write_all(s, buf, n, err);
    return rc ? rc : pad(s, err);
}

int app_store_map(app_store *s, lyra_error *err) {
    if (s->size == 0) return LYRA_OK;
    void *m = mmap(NULL, (size_t)s->size, PROT_READ, MAP_SHARED, s->fd, 0);
    if (m == MAP_FAILED)
        return lyra_err(err, errno == ENOMEM ? LYRA_ERR_OOM : LYRA_ERR_RUNTIME, s->where,
                        "mapping the scratch file: %s", strerror(errno));
    madvise(m, (size_t)s->size, MADV_SEQUENTIAL); /* read once, in order, by the writer */
    s->map = m;
    return LYRA_OK;
}

const void *app_store_ptr(const app_store *s, uint64_t off) { return s->map + off; }

void app_store_close(app_store *s) {
    if (s->map) munmap(s->map, (size_t)s->size);
    if (s->fd >= 0) close(s->fd);
    free(s->where);
    s->map = NULL;
    s->fd = -1;
    s->where = NULL;
}

/* One conversion job for the pool. */
typedef struct rows_job {
    lyra_type t;       /* output type */
    int64_t cols;      /* elements per row */
    int64_t r0, r1;    /* rows to produce */
    app_row_fn fn;     /* row producer */
    void *user;        /* its argument */
    float *scratch;    /* [nth][cols] */
    uint8_t *out;      /* [(r1-r0)] rows of lyra_row_bytes(t, cols) */
    size_t row_bytes;  /* lyra_row_bytes(t, cols) */
} rows_job;

static void rows_worker(void *arg, int ith, int nth) {
    rows_job *j = arg;
    long a, b;
    lyra_split_rows((long)(j->r1 - j->r0), ith, nth, &a, &b);
    float *x = j->scratch + (size_t)ith * (size_t)j->cols;
    for (long i = a; i < b; i++) {
        j->fn(j->user, j->r0 + i, x, j->cols);
        lyra_quantize_row(j->t, x, j->out + (size_t)i * j->row_bytes, j->cols);
    }
}

void app_rows_convert(lyra_pool *pool, lyra_type t, int64_t cols, int64_t r0, int64_t r1,
                      app_row_fn fn, void *user, float *scratch, void *out) {
    rows_job j = {t, cols, r0, r1, fn, user, scratch, out, lyra_row_bytes(t, cols)};
    lyra_pool_run(pool, rows_worker, &j);
}

int app_store_tensor(app_store *s, lyra_pool *pool, lyra_type t, int64_t cols, int64_t rows,
                     app_row_fn fn, void *user, uint64_t *off, lyra_error *err) {
    size_t row_bytes = lyra_row_bytes(t, cols);
    int64_t per = row_bytes ? (int64_t)(STORE_CHUNK / row_bytes) : rows;
    if (per < 1) per = 1;
    if (per > rows) per = rows;
    int nth = pool ? lyra_pool_size(pool) : 1;
    uint8_t *buf = malloc((size_t)per * row_bytes);
    float *scratch = malloc(sizeof *scratch * (size_t)cols * (size_t)nth);
    int rc = LYRA_OK;
    if (!buf || !scratch) rc = lyra_err(err, LYRA_ERR_OOM, "store", "out of memory");
    *off = s->size;
    for (int64_t r = 0; !rc && r < rows; r += per) {
        int64_t r1 = r + per < rows ? r + per : rows;
        app_rows_convert(pool, t, cols, r, r1, fn, user, scratch, buf);
        rc = write_all(s, buf, (size_t)(r1 - r) * row_bytes, err);
    }
    if (!rc) rc = pad(s, err);
    free(buf);
    free(scratch);
    return rc;
}

uint32_t app_file_type(lyra_type t) {
    switch (t) {
    case LYRA_TYPE_F32: return 0;
    case LYRA_TYPE_F16: return 1;
    case LYRA_TYPE_Q4_0: return 2;
    case LYRA_TYPE_Q8_0: return 7;
    case LYRA_TYPE_Q4_K: return 14; /* Q4_K_S */
    case LYRA_TYPE_Q5_K: return 16; /* Q5_K_S */
    case LYRA_TYPE_Q6_K: return 18;
    case LYRA_TYPE_BF16: return 32;
    default: return 0;
    }
}
