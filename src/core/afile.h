/* afile.h: atomic file replacement and I/O fault injection.
 *
 * lyra_afile writes a file so that its destination holds either the old
 * content or the complete new one, never a partial file: the bytes go to a
 * temporary file in the same directory (PATH.tmp.XXXXXX, mode 0600), which is fsync'ed,
 * renamed over PATH, and the directory fsync'ed. Any failure removes the
 * temporary file and leaves PATH as it was.
 *
 * Fault injection (tests, LYRA_FAIL_IO / lyra_backend_params.fail_io): a
 * list "OP:N[+],..." with OP one of open, write, fsync, rename: the N-th call
 * of that operation made through one lyra_fail_io (counted from 1; with +
 * every later one too) fails with EIO as the system call would. */
#ifndef LYRA_AFILE_H
#define LYRA_AFILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

enum { LYRA_IO_OPEN = 0, LYRA_IO_WRITE, LYRA_IO_FSYNC, LYRA_IO_RENAME, LYRA_IO_N };

/* Armed faults and the calls counted so far (all zero: none). */
typedef struct lyra_fail_io {
    uint64_t at[LYRA_IO_N];    /* the call number that fails, 0: none */
    int after[LYRA_IO_N];      /* 1: every later call fails too */
    uint64_t calls[LYRA_IO_N]; /* calls made */
} lyra_fail_io;

/* Parse a LYRA_FAIL_IO value into *f (zeroed first). NULL or "": nothing.
 * A malformed entry is LYRA_ERR_INPUT naming LYRA_FAIL_IO. */
int lyra_fail_io_parse(const char *value, lyra_fail_io *f, lyra_error *err);
/* Count one call of op; 1 when it must fail. f may be NULL (never). */
int lyra_fail_io_hit(lyra_fail_io *f, int op);

typedef struct lyra_afile {
    int fd;             /* the temporary file, -1 when closed */
    char *path;         /* destination (owned) */
    char *tmp;          /* temporary file (owned) */
    lyra_fail_io *fail; /* fault injection, may be NULL */
} lyra_afile;

/* Create the temporary file for path. */
int lyra_afile_open(lyra_afile *f, const char *path, lyra_fail_io *fail, lyra_error *err);
/* Append n bytes. */
int lyra_afile_write(lyra_afile *f, const void *p, size_t n, lyra_error *err);
/* fsync, close, rename over the destination, fsync the directory. On
 * failure the temporary file is removed (the destination unchanged, but
 * for a failed directory fsync after the rename: the new file is in place,
 * its durability unknown). f is closed either way. */
int lyra_afile_commit(lyra_afile *f, lyra_error *err);
/* Close and remove the temporary file (after a failure; f may be closed). */
void lyra_afile_abort(lyra_afile *f);

#endif
