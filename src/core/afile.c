/* afile.c: atomic file replacement and I/O fault injection (afile.h). */
#include "core/afile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/env.h"

int lyra_fail_io_parse(const char *value, lyra_fail_io *f, lyra_error *err) {
    static const char *const names[LYRA_IO_N] = {"open", "write", "fsync", "rename"};
    memset(f, 0, sizeof *f);
    if (!value || !value[0]) return LYRA_OK;
    const char *cur = value, *e;
    size_t len;
    while (lyra_list_next(&cur, &e, &len)) {
        const char *colon = memchr(e, ':', len);
        int op = -1;
        for (int i = 0; colon && i < LYRA_IO_N; i++)
            if ((size_t)(colon - e) == strlen(names[i]) && !memcmp(e, names[i], strlen(names[i]))) op = i;
        uint64_t n = 0;
        size_t i = colon ? (size_t)(colon - e) + 1 : len;
        size_t digits = 0;
        while (i < len && e[i] >= '0' && e[i] <= '9' && digits < 18) n = n * 10 + (uint64_t)(e[i++] - '0'), digits++;
        int plus = i < len && e[i] == '+';
        if (plus) i++;
        if (op < 0 || !digits || n == 0 || i != len)
            return lyra_err(err, LYRA_ERR_INPUT, "LYRA_FAIL_IO",
                            "'%.*s': expected OP:N[+] with OP open, write, fsync or rename and N >= 1",
                            (int)len, e);
        f->at[op] = n;
        f->after[op] = plus;
    }
    return LYRA_OK;
}

int lyra_fail_io_hit(lyra_fail_io *f, int op) {
    if (!f) return 0;
    uint64_t k = ++f->calls[op];
    return f->at[op] && (k == f->at[op] || (f->after[op] && k > f->at[op]));
}

int lyra_afile_open(lyra_afile *f, const char *path, lyra_fail_io *fail, lyra_error *err) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->fail = fail;
    size_t n = strlen(path) + 64;
    f->path = strdup(path);
    f->tmp = malloc(n);
    if (!f->path || !f->tmp) {
        lyra_afile_abort(f);
        return lyra_err(err, LYRA_ERR_OOM, path, "out of memory");
    }
    snprintf(f->tmp, n, "%s.tmp.XXXXXX", path); /* mode 0600: sessions are private */
    if (lyra_fail_io_hit(fail, LYRA_IO_OPEN)) errno = EIO;
    else f->fd = mkostemp(f->tmp, O_CLOEXEC);
    if (f->fd < 0) {
        int e = errno;
        free(f->tmp); /* nothing was created */
        f->tmp = NULL;
        lyra_afile_abort(f);
        return lyra_err(err, LYRA_ERR_RUNTIME, path, "cannot create a temporary file beside it: %s", strerror(e));
    }
    return LYRA_OK;
}

int lyra_afile_write(lyra_afile *f, const void *p, size_t n, lyra_error *err) {
    const char *c = p;
    while (n > 0) {
        ssize_t k;
        if (lyra_fail_io_hit(f->fail, LYRA_IO_WRITE)) {
            errno = EIO;
            k = -1;
        } else
            k = write(f->fd, c, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return lyra_err(err, LYRA_ERR_RUNTIME, f->path, "write failed: %s", k < 0 ? strerror(errno) : "no progress");
        c += k;
        n -= (size_t)k;
    }
    return LYRA_OK;
}

/* The directory of path ("." when it has no '/'), malloc'd. */
static char *dir_of(const char *path) {
    const char *s = strrchr(path, '/');
    if (!s) return strdup(".");
    if (s == path) return strdup("/");
    char *d = malloc((size_t)(s - path) + 1);
    if (d) {
        memcpy(d, path, (size_t)(s - path));
        d[s - path] = '\0';
    }
    return d;
}

int lyra_afile_commit(lyra_afile *f, lyra_error *err) {
    int rc = LYRA_OK;
    if (lyra_fail_io_hit(f->fail, LYRA_IO_FSYNC)) errno = EIO, rc = -1;
    else rc = fsync(f->fd);
    if (rc) {
        rc = lyra_err(err, LYRA_ERR_RUNTIME, f->path, "fsync failed: %s", strerror(errno));
        lyra_afile_abort(f);
        return rc;
    }
    int cl = close(f->fd);
    f->fd = -1;
    if (cl) {
        rc = lyra_err(err, LYRA_ERR_RUNTIME, f->path, "close failed: %s", strerror(errno));
        lyra_afile_abort(f);
        return rc;
    }
    if (lyra_fail_io_hit(f->fail, LYRA_IO_RENAME)) errno = EIO, rc = -1;
    else rc = rename(f->tmp, f->path);
    if (rc) {
        rc = lyra_err(err, LYRA_ERR_RUNTIME, f->path, "cannot rename the temporary file over it: %s", strerror(errno));
        lyra_afile_abort(f);
        return rc;
    }
    free(f->tmp);
    f->tmp = NULL;
    /* the rename itself is durable once the directory is */
    char *d = dir_of(f->path);
    int dfd = d ? open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dfd >= 0) {
        if (lyra_fail_io_hit(f->fail, LYRA_IO_FSYNC)) errno = EIO, rc = -1;
        else rc = fsync(dfd);
        if (rc && errno != EINVAL) /* some file systems cannot sync a directory */
            rc = lyra_err(err, LYRA_ERR_RUNTIME, f->path, "fsync of its directory failed: %s", strerror(errno));
        else
            rc = LYRA_OK;
        close(dfd);
    }
    free(d);
    lyra_afile_abort(f);
    return rc;
}

void lyra_afile_abort(lyra_afile *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    if (f->tmp) unlink(f->tmp);
    free(f->tmp);
    free(f->path);
    f->tmp = NULL;
    f->path = NULL;
}
