/* gguf_write.c: the GGUF writer. Collects key/values (encoded at once, so the
 * caller's buffers may go away) and tensors (by pointer), then writes a v3
 * little-endian file: header, tensor infos, padding, and the tensor data in
 * the order of add_tensor, each tensor at an aligned offset and padded. The
 * file goes to PATH.tmp.PID.XXXXXX and is renamed to PATH only when
 * complete; on any failure (or a cancel) the temporary file is removed and
 * PATH is left untouched. A PATH that exists and is not a regular file (a
 * device, FIFO, symlink, directory) is refused. Temporary files of PATH whose
 * PID is no longer running (a writer killed mid-way) are removed first. */
#include "format/gguf_impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/rng.h"

typedef unsigned long long ull;

/* ".tmp." + a pid (up to 10 digits) + "." + 6 characters */
#define GGUF_TMP_SUFFIX_MAX (5 + 10 + 1 + 6)
#define GGUF_WRITE_CHUNK (64u << 20) /* bytes between checks of the cancel flag */

/* A growing byte buffer; oom is set (and nothing more appended) on failure. */
typedef struct wbuf {
    uint8_t *p;  /* [cap] bytes, n used */
    size_t n;    /* bytes used */
    size_t cap;  /* bytes allocated */
    int oom;     /* 1 after a failed allocation */
} wbuf;

static void wb_put(wbuf *b, const void *src, size_t n) {
    if (b->oom || n == 0) return;
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 2) { b->oom = 1; return; }
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

/* Append v as n little-endian bytes (n <= 8). */
static void wb_le(wbuf *b, uint64_t v, int n) {
    uint8_t x[8];
    for (int i = 0; i < n; i++) x[i] = (uint8_t)(v >> (8 * i));
    wb_put(b, x, (size_t)n);
}

static void wb_str(wbuf *b, const char *s, uint64_t len) {
    wb_le(b, len, 8);
    wb_put(b, s, (size_t)len);
}

/* One key/value with its value already encoded. */
typedef struct wkv {
    char *key;         /* NUL-terminated copy */
    uint32_t type;     /* value type id */
    uint8_t *val;      /* [val_bytes] encoded value (malloc'd) */
    size_t val_bytes;  /* bytes of the encoded value */
} wkv;

/* One tensor to write. */
typedef struct wtensor {
    char *name;        /* NUL-terminated copy */
    lyra_type type;    /* weight type */
    int n_dims;        /* 1..4 */
    int64_t ne[4];     /* shape, ne[0] contiguous */
    uint64_t n_bytes;  /* bytes of data */
    const void *data;  /* [n_bytes] the caller's buffer */
} wtensor;

/* A hash set of names (open addressing, linear probing). A slot holds the
 * name's 32-bit hash (high half) and its index in the owner's array + 1
 * (low half; 0 = empty), so probes compare hashes and only a matching hash
 * reads the name, and growing rehashes without reading names. Keeps adding
 * N keys or tensors O(N) instead of comparing each with every earlier one. */
typedef struct wset {
    uint64_t *slot; /* [cap] */
    size_t cap;     /* a power of two, or 0 */
} wset;

struct lyra_gguf_writer {
    uint32_t alignment;  /* data alignment, a power of two */
    wkv *kv;             /* [n_kv] in order of first addition */
    int64_t n_kv;        /* key/values */
    int64_t cap_kv;      /* allocated */
    wset kv_set;         /* kv by key */
    wtensor *t;          /* [n_t] in order of add_tensor */
    int64_t n_t;         /* tensors */
    int64_t cap_t;       /* allocated */
    wset t_set;          /* t by name */
    const volatile sig_atomic_t *cancel; /* non-zero stops lyra_gguf_writer_write; may be NULL */
    lyra_error first;    /* first failure of an add call (code LYRA_OK: none) */
};

static uint32_t wset_hash(const char *s) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* The first slot to probe for hash h (before masking): all its bits mixed. */
static size_t wset_home(uint32_t h) { return (size_t)(((uint64_t)h * 0x9E3779B97F4A7C15ull) >> 32); }

/* The slot of name (hash h) in set: the one holding it, else the empty one
 * where it would go. names(w, i): the name of index i. set->cap > 0. */
static uint64_t *wset_find(const wset *set, const char *name, uint32_t h,
                           const char *(*names)(const lyra_gguf_writer *, int64_t),
                           const lyra_gguf_writer *w) {
    size_t mask = set->cap - 1;
    for (size_t i = wset_home(h) & mask;; i = (i + 1) & mask) {
        uint64_t *s = &set->slot[i];
        if (*s == 0) return s;
        if ((uint32_t)(*s >> 32) == h && strcmp(names(w, (int64_t)(uint32_t)*s - 1), name) == 0) return s;
    }
}

/* Make room for n entries (load <= 1/2). */
static int wset_reserve(wset *set, int64_t n) {
    if ((uint64_t)n * 2 <= set->cap) return 0;
    if (n >= (int64_t)UINT32_MAX) return -1;
    size_t cap = set->cap ? set->cap : 64;
    while ((uint64_t)n * 2 > cap) {
        if (cap > SIZE_MAX / 2 / sizeof *set->slot) return -1;
        cap *= 2;
    }
    wset nw = {calloc(cap, sizeof *nw.slot), cap};
    if (!nw.slot) return -1;
    for (size_t j = 0; j < set->cap; j++) {
        uint64_t e = set->slot[j];
        if (!e) continue;
        size_t i = wset_home((uint32_t)(e >> 32)) & (cap - 1);
        while (nw.slot[i]) i = (i + 1) & (cap - 1);
        nw.slot[i] = e;
    }
    free(set->slot);
    *set = nw;
    return 0;
}

static const char *kv_name(const lyra_gguf_writer *w, int64_t i) { return w->kv[i].key; }
static const char *t_name(const lyra_gguf_writer *w, int64_t i) { return w->t[i].name; }

static int wfail(lyra_gguf_writer *w, int code, const char *fmt, ...) LYRA_PRINTF(3, 4);
static int wfail(lyra_gguf_writer *w, int code, const char *fmt, ...) {
    if (w->first.code == LYRA_OK) {
        char msg[900];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        lyra_err(&w->first, code, "gguf writer", "%s", msg);
    }
    return code;
}

lyra_gguf_writer *lyra_gguf_writer_new(void) {
    lyra_gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->alignment = LYRA_GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void lyra_gguf_writer_free(lyra_gguf_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (int64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv_set.slot);
    free(w->t_set.slot);
    free(w->kv);
    free(w->t);
    free(w);
}

void lyra_gguf_writer_set_alignment(lyra_gguf_writer *w, uint32_t alignment) {
    if (alignment == 0 || (alignment & (alignment - 1)))
        wfail(w, LYRA_ERR_INPUT, "alignment %u is not a power of two", alignment);
    else
        w->alignment = alignment;
}

/* Store key = encoded value (taking b's bytes), replacing an existing key. */
static int set_kv(lyra_gguf_writer *w, const char *key, uint32_t type, wbuf *b) {
    size_t klen = key ? strlen(key) : 0;
    if (b->oom) { free(b->p); return wfail(w, LYRA_ERR_OOM, "key '%s': out of memory", key ? key : ""); }
    if (klen == 0 || klen > LYRA_GGUF_MAX_KEY) {
        free(b->p);
        return wfail(w, LYRA_ERR_INPUT, "key of %zu bytes (must be 1..%d)", klen, LYRA_GGUF_MAX_KEY);
    }
    if (wset_reserve(&w->kv_set, w->n_kv + 1)) {
        free(b->p);
        return wfail(w, LYRA_ERR_OOM, "key '%s': out of memory", key);
    }
    uint32_t h = wset_hash(key);
    uint64_t *slot = wset_find(&w->kv_set, key, h, kv_name, w);
    if (*slot) {
        wkv *kv = &w->kv[(uint32_t)*slot - 1];
        free(kv->val);
        kv->type = type;
        kv->val = b->p;
        kv->val_bytes = b->n;
        return LYRA_OK;
    }
    if (w->n_kv == w->cap_kv) {
        int64_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        wkv *kv = realloc(w->kv, (size_t)cap * sizeof *kv);
        if (!kv) { free(b->p); return wfail(w, LYRA_ERR_OOM, "key '%s': out of memory", key); }
        w->kv = kv;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) { free(b->p); return wfail(w, LYRA_ERR_OOM, "key '%s': out of memory", key); }
    w->kv[w->n_kv] = (wkv){k, type, b->p, b->n};
    *slot = (uint64_t)h << 32 | (uint64_t)(w->n_kv + 1);
    w->n_kv++;
    return LYRA_OK;
}

/* Encode a scalar of type (v: that C type) as little endian. */
static int put_scalar(wbuf *b, lyra_gguf_vtype type, const void *v) {
    switch (lyra_gguf_scalar_size((uint32_t)type)) {
    case 1: { uint8_t x; memcpy(&x, v, 1); if (type == LYRA_GGUF_BOOL && x > 1) return 0; wb_le(b, x, 1); return 1; }
    case 2: { uint16_t x; memcpy(&x, v, 2); wb_le(b, x, 2); return 1; }
    case 4: { uint32_t x; memcpy(&x, v, 4); wb_le(b, x, 4); return 1; }
    case 8: { uint64_t x; memcpy(&x, v, 8); wb_le(b, x, 8); return 1; }
    default: return 0;
    }
}

int lyra_gguf_writer_add_val(lyra_gguf_writer *w, const char *key, lyra_gguf_vtype type, const void *v) {
    wbuf b = {0};
    if (!put_scalar(&b, type, v)) {
        free(b.p);
        return wfail(w, LYRA_ERR_INPUT, "key '%s': not a scalar of type %s (bools are 0 or 1)",
                     key ? key : "", lyra_gguf_vtype_name(type));
    }
    return set_kv(w, key, (uint32_t)type, &b);
}

/* v[n] through add_val in an 8-byte buffer: once add_val is inlined (the
 * library's functions are hidden, so gcc may), gcc cannot see that
 * put_scalar reads only the type's size and warns about the wider cases. */
static int add_typed(lyra_gguf_writer *w, const char *key, lyra_gguf_vtype type, const void *v,
                     size_t n) {
    unsigned char x[8] = {0};
    memcpy(x, v, n);
    return lyra_gguf_writer_add_val(w, key, type, x);
}

int lyra_gguf_writer_add_u32(lyra_gguf_writer *w, const char *key, uint32_t v) {
    return add_typed(w, key, LYRA_GGUF_U32, &v, sizeof v);
}
int lyra_gguf_writer_add_i32(lyra_gguf_writer *w, const char *key, int32_t v) {
    return add_typed(w, key, LYRA_GGUF_I32, &v, sizeof v);
}
int lyra_gguf_writer_add_f32(lyra_gguf_writer *w, const char *key, float v) {
    return add_typed(w, key, LYRA_GGUF_F32, &v, sizeof v);
}
int lyra_gguf_writer_add_bool(lyra_gguf_writer *w, const char *key, int v) {
    uint8_t x = v != 0;
    return add_typed(w, key, LYRA_GGUF_BOOL, &x, sizeof x);
}

int lyra_gguf_writer_add_str(lyra_gguf_writer *w, const char *key, const char *v) {
    wbuf b = {0};
    if (!v) return wfail(w, LYRA_ERR_INPUT, "key '%s': NULL string", key ? key : "");
    wb_str(&b, v, strlen(v));
    return set_kv(w, key, LYRA_GGUF_STRING, &b);
}

int lyra_gguf_writer_add_arr_str(lyra_gguf_writer *w, const char *key, const char *const *v,
                                 const uint64_t *lens, uint64_t count) {
    wbuf b = {0};
    wb_le(&b, LYRA_GGUF_STRING, 4);
    wb_le(&b, count, 8);
    for (uint64_t i = 0; i < count; i++) {
        if (!v[i]) {
            free(b.p);
            return wfail(w, LYRA_ERR_INPUT, "key '%s': string %llu is NULL", key ? key : "", (ull)i);
        }
        wb_str(&b, v[i], lens ? lens[i] : strlen(v[i]));
    }
    return set_kv(w, key, LYRA_GGUF_ARRAY, &b);
}

int lyra_gguf_writer_add_arr(lyra_gguf_writer *w, const char *key, lyra_gguf_vtype elem_type,
                             const void *data, uint64_t count) {
    size_t sz = lyra_gguf_scalar_size((uint32_t)elem_type);
    if (!sz || (count && !data) || count > SIZE_MAX / sz)
        return wfail(w, LYRA_ERR_INPUT, "key '%s': cannot store %llu elements of type %s", key ? key : "",
                     (ull)count, lyra_gguf_vtype_name(elem_type));
    wbuf b = {0};
    wb_le(&b, (uint32_t)elem_type, 4);
    wb_le(&b, count, 8);
    const uint8_t *p = data;
    for (uint64_t i = 0; i < count; i++)
        if (!put_scalar(&b, elem_type, p + i * sz)) {
            free(b.p);
            return wfail(w, LYRA_ERR_INPUT, "key '%s': bool element %llu is neither 0 nor 1",
                         key ? key : "", (ull)i);
        }
    return set_kv(w, key, LYRA_GGUF_ARRAY, &b);
}

int lyra_gguf_writer_copy_kv(lyra_gguf_writer *w, const lyra_gguf *g,
                             int (*skip)(const char *key, void *user), void *user) {
    for (int64_t i = 0; i < lyra_gguf_n_kv(g); i++) {
        const gguf_kv *kv = &g->parts[0].kv[i];
        if (strncmp(kv->key, "split.", 6) == 0) continue;
        if (skip && skip(kv->key, user)) continue;
        wbuf b = {0};
        wb_put(&b, kv->val, (size_t)kv->val_bytes);
        int rc = set_kv(w, kv->key, (uint32_t)kv->type, &b);
        if (rc) return rc;
    }
    return LYRA_OK;
}

int lyra_gguf_writer_add_tensor(lyra_gguf_writer *w, const char *name, lyra_type type, int n_dims,
                                const int64_t *ne, const void *data) {
    size_t nlen = name ? strlen(name) : 0;
    if (nlen == 0 || nlen > LYRA_GGUF_MAX_NAME)
        return wfail(w, LYRA_ERR_INPUT, "tensor name of %zu bytes (must be 1..%d)", nlen, LYRA_GGUF_MAX_NAME);
    if (wset_reserve(&w->t_set, w->n_t + 1)) return wfail(w, LYRA_ERR_OOM, "tensor '%s': out of memory", name);
    uint32_t h = wset_hash(name);
    uint64_t *slot = wset_find(&w->t_set, name, h, t_name, w);
    if (*slot) return wfail(w, LYRA_ERR_INPUT, "tensor '%s' added twice", name);
    if ((unsigned)type >= LYRA_TYPE_COUNT || !lyra_type_known(type))
        return wfail(w, LYRA_ERR_INPUT, "tensor '%s': unknown type id %d", name, (int)type);
    if (n_dims < 1 || n_dims > 4 || !ne)
        return wfail(w, LYRA_ERR_INPUT, "tensor '%s': n_dims %d is not in 1..4", name, n_dims);
    if (!data) return wfail(w, LYRA_ERR_INPUT, "tensor '%s': no data", name);
    wtensor t = {0};
    t.type = type;
    t.n_dims = n_dims;
    int64_t nel = 1;
    for (int d = 0; d < 4; d++) t.ne[d] = d < n_dims ? ne[d] : 1;
    for (int d = 0; d < n_dims; d++)
        if (t.ne[d] < 1 || __builtin_mul_overflow(nel, t.ne[d], &nel))
            return wfail(w, LYRA_ERR_INPUT, "tensor '%s': bad shape (ne[%d] = %lld)", name, d, (long long)t.ne[d]);
    int64_t blk = lyra_type_block(type);
    if (t.ne[0] % blk)
        return wfail(w, LYRA_ERR_INPUT, "tensor '%s': ne[0] = %lld is not a multiple of the %s block size %lld",
                     name, (long long)t.ne[0], lyra_type_name(type), (long long)blk);
    uint64_t row;
    if (__builtin_mul_overflow((uint64_t)(t.ne[0] / blk), (uint64_t)lyra_type_block_bytes(type), &row) ||
        __builtin_mul_overflow(row, (uint64_t)(nel / t.ne[0]), &t.n_bytes))
        return wfail(w, LYRA_ERR_INPUT, "tensor '%s': byte size overflows", name);
    t.data = data;
    if (w->n_t == w->cap_t) {
        int64_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *nt = realloc(w->t, (size_t)cap * sizeof *nt);
        if (!nt) return wfail(w, LYRA_ERR_OOM, "tensor '%s': out of memory", name);
        w->t = nt;
        w->cap_t = cap;
    }
    if (!(t.name = strdup(name))) return wfail(w, LYRA_ERR_OOM, "tensor '%s': out of memory", name);
    w->t[w->n_t] = t;
    *slot = (uint64_t)h << 32 | (uint64_t)(w->n_t + 1);
    w->n_t++;
    return LYRA_OK;
}

/* ------------------------------------------------------------------ output */

static int write_all(int fd, const void *p, uint64_t n) {
    const uint8_t *b = p;
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t k = write(fd, b, chunk);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        b += k;
        n -= (uint64_t)k;
    }
    return 0;
}

static int write_zeros(int fd, uint64_t n) {
    static const uint8_t zeros[4096];
    while (n > 0) {
        uint64_t k = n < sizeof zeros ? n : sizeof zeros;
        if (write_all(fd, zeros, k)) return -1;
        n -= k;
    }
    return 0;
}

static uint64_t pad_to(uint64_t x, uint32_t a) { return (a - x % a) % a; }

/* Header, key/values and tensor infos (with their offsets), padded. */
static int build_header(lyra_gguf_writer *w, wbuf *h, const char *path, lyra_error *err) {
    wb_put(h, "GGUF", 4);
    wb_le(h, 3, 4);
    wb_le(h, (uint64_t)w->n_t, 8);
    wb_le(h, (uint64_t)w->n_kv, 8);
    for (int64_t i = 0; i < w->n_kv; i++) {
        wb_str(h, w->kv[i].key, strlen(w->kv[i].key));
        wb_le(h, w->kv[i].type, 4);
        wb_put(h, w->kv[i].val, w->kv[i].val_bytes);
    }
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        wb_str(h, t->name, strlen(t->name));
        wb_le(h, (uint64_t)t->n_dims, 4);
        for (int d = 0; d < t->n_dims; d++) wb_le(h, (uint64_t)t->ne[d], 8);
        wb_le(h, (uint64_t)t->type, 4);
        wb_le(h, off, 8);
        if (__builtin_add_overflow(off, t->n_bytes, &off) ||
            __builtin_add_overflow(off, pad_to(off, w->alignment), &off))
            return lyra_err(err, LYRA_ERR_INPUT, path, "tensor data exceeds 2^64 bytes");
    }
    static const uint8_t zeros[64];
    for (uint64_t pad = pad_to(h->n, w->alignment); pad > 0;) {
        uint64_t k = pad < sizeof zeros ? pad : sizeof zeros;
        wb_put(h, zeros, (size_t)k);
        pad -= k;
    }
    if (h->oom) return lyra_err(err, LYRA_ERR_OOM, path, "out of memory building the header");
    return LYRA_OK;
}

int lyra_gguf_writer_to_gguf(lyra_gguf_writer *w, const char *name, void (*release)(void *),
                             void *arg, lyra_gguf **out, lyra_error *err) {
    *out = NULL;
    if (w->first.code != LYRA_OK) {
        if (err) *err = w->first;
        return w->first.code;
    }
    lyra_gguf_tensor *t = calloc((size_t)(w->n_t ? w->n_t : 1), sizeof *t);
    if (!t) return lyra_err(err, LYRA_ERR_OOM, name, "out of memory");
    for (int64_t i = 0; i < w->n_t; i++) {
        const wtensor *s = &w->t[i];
        t[i].name = s->name;
        t[i].type = s->type;
        t[i].n_dims = s->n_dims;
        t[i].n_elements = 1;
        for (int d = 0; d < 4; d++) {
            t[i].ne[d] = d < s->n_dims ? s->ne[d] : 1;
            t[i].n_elements *= t[i].ne[d];
        }
        t[i].n_bytes = s->n_bytes;
        t[i].data = s->data;
    }
    wbuf h = {0};
    int64_t n_t = w->n_t;
    w->n_t = 0; /* the key/values only: the tensors are added in memory */
    int rc = build_header(w, &h, name, err);
    w->n_t = n_t;
    if (rc == LYRA_OK) rc = lyra_gguf_open_mem(h.p, h.n, name, t, n_t, out, err);
    else free(h.p);
    free(t);
    if (rc == LYRA_OK) {
        (*out)->release = release;
        (*out)->release_arg = arg;
    }
    return rc;
}

int lyra_gguf_writer_check_path(const char *path, lyra_error *err) {
    struct stat st;
    if (!path || !*path) return lyra_err(err, LYRA_ERR_INPUT, "gguf writer", "empty output path");
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "exists and is not a regular file (%s); refusing to replace it",
                        S_ISLNK(st.st_mode) ? "a symbolic link" : S_ISDIR(st.st_mode) ? "a directory"
                        : S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISCHR(st.st_mode) ? "a character device"
                        : S_ISBLK(st.st_mode) ? "a block device" : S_ISSOCK(st.st_mode) ? "a socket"
                        : "a special file");
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t blen = strlen(base);
    if (blen == 0) return lyra_err(err, LYRA_ERR_INPUT, path, "names a directory, not a file");
    if (blen + GGUF_TMP_SUFFIX_MAX > NAME_MAX)
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "file name of %zu bytes is too long: the temporary file beside it "
                        "(NAME.tmp.PID.XXXXXX) needs it to be at most %d bytes",
                        blen, NAME_MAX - GGUF_TMP_SUFFIX_MAX);
    return LYRA_OK;
}

/* If name is BASE.tmp.PID.XXXXXX (the writer's temporary name for base),
 * the PID; else 0. */
static long temp_owner(const char *name, const char *base, size_t blen) {
    if (strncmp(name, base, blen) != 0 || strncmp(name + blen, ".tmp.", 5) != 0) return 0;
    const char *q = name + blen + 5;
    long pid = 0;
    int digits = 0;
    for (; *q >= '0' && *q <= '9' && digits < 10; q++, digits++) pid = pid * 10 + (*q - '0');
    if (!digits || *q != '.' || strlen(q + 1) != 6) return 0;
    for (const char *c = q + 1; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9'))) return 0;
    return pid;
}

/* Remove PATH.tmp.PID.XXXXXX files left by processes that are gone (killed
 * while writing PATH). Best effort: errors are ignored. */
static void remove_stale_temps(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t dlen = slash ? (size_t)(slash - path) + 1 : 0, blen = strlen(base);
    char *dir = malloc(dlen + 2);
    if (!dir) return;
    if (dlen) memcpy(dir, path, dlen);
    else dir[dlen++] = '.';
    dir[dlen] = '\0';
    DIR *d = opendir(dir);
    if (!d) { free(dir); return; }
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid = temp_owner(e->d_name, base, blen);
        if (pid <= 0 || pid == (long)getpid() || pid > INT32_MAX) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive (or not ours to judge) */
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *f = malloc(n);
        if (!f) break;
        snprintf(f, n, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", e->d_name);
        struct stat st;
        if (lstat(f, &st) == 0 && S_ISREG(st.st_mode)) unlink(f);
        free(f);
    }
    closedir(d);
    free(dir);
}

/* Create PATH.tmp.PID.XXXXXX exclusively (mode 0666 less the umask). */
static int open_temp(const char *path, char *tmp, size_t cap, lyra_error *err) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)tmp;
    static const char chars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    for (int attempt = 0; attempt < 100; attempt++) {
        uint64_t r = lyra_splitmix64(&seed);
        char suf[7];
        for (int i = 0; i < 6; i++) suf[i] = chars[(r >> (6 * i)) % 36];
        suf[6] = '\0';
        snprintf(tmp, cap, "%s.tmp.%ld.%s", path, (long)getpid(), suf);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) return fd;
        if (errno == EEXIST) continue;
        int e = errno;
        lyra_err(err, e == ENOENT || e == ENOTDIR || e == EACCES || e == EROFS || e == EISDIR ||
                 e == ENAMETOOLONG ? LYRA_ERR_INPUT : LYRA_ERR_RUNTIME,
                 path, "cannot create %s: %s", tmp, strerror(e));
        return -1;
    }
    lyra_err(err, LYRA_ERR_RUNTIME, path, "cannot create a temporary file beside it");
    return -1;
}

void lyra_gguf_writer_set_cancel(lyra_gguf_writer *w, const volatile sig_atomic_t *flag) {
    w->cancel = flag;
}

/* Write n bytes of p in chunks, stopping when w's cancel flag is set (-2). */
static int write_data(lyra_gguf_writer *w, int fd, const void *p, uint64_t n) {
    const uint8_t *b = p;
    while (n > 0) {
        if (w->cancel && *w->cancel) return -2;
        uint64_t k = n < GGUF_WRITE_CHUNK ? n : GGUF_WRITE_CHUNK;
        if (write_all(fd, b, k)) return -1;
        b += k;
        n -= k;
    }
    return 0;
}

int lyra_gguf_writer_write(lyra_gguf_writer *w, const char *path, lyra_error *err) {
    if (w->first.code != LYRA_OK) {
        if (err) *err = w->first;
        return w->first.code;
    }
    /* the writer's alignment is the file's */
    int has_align = w->kv_set.cap &&
                    *wset_find(&w->kv_set, "general.alignment", wset_hash("general.alignment"), kv_name, w);
    if ((has_align || w->alignment != LYRA_GGUF_DEFAULT_ALIGNMENT) &&
        lyra_gguf_writer_add_u32(w, "general.alignment", w->alignment) != LYRA_OK) {
        if (err) *err = w->first;
        return w->first.code;
    }
    wbuf h = {0};
    int rc = build_header(w, &h, path, err);
    if (rc) { free(h.p); return rc; }

    if ((rc = lyra_gguf_writer_check_path(path, err))) { free(h.p); return rc; }
    remove_stale_temps(path);
    size_t cap = strlen(path) + GGUF_TMP_SUFFIX_MAX + 1;
    char *tmp = malloc(cap);
    if (!tmp) { free(h.p); return lyra_err(err, LYRA_ERR_OOM, path, "out of memory"); }
    int fd = open_temp(path, tmp, cap, err);
    if (fd < 0) { free(h.p); free(tmp); return err ? err->code : LYRA_ERR_RUNTIME; }

    int e = 0, bad = write_all(fd, h.p, h.n) != 0;
    if (bad) e = errno;
    for (int64_t i = 0; i < w->n_t && !bad; i++) {
        int r = write_data(w, fd, w->t[i].data, w->t[i].n_bytes);
        if (r == -2) {
            bad = 2;
        } else if (r || write_zeros(fd, pad_to(w->t[i].n_bytes, w->alignment))) {
            bad = 1;
            e = errno;
        }
    }
    free(h.p);
    if (!bad && w->cancel && *w->cancel) bad = 2;
    if (!bad && fsync(fd) != 0) { bad = 1; e = errno; }
    if (close(fd) != 0 && !bad) { bad = 1; e = errno; }
    /* the output may have become a special file or a link meanwhile */
    if (!bad && (rc = lyra_gguf_writer_check_path(path, err))) {
        unlink(tmp);
        free(tmp);
        return rc;
    }
    if (!bad && rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        rc = lyra_err(err, e == EISDIR || e == ENOTDIR || e == EACCES ? LYRA_ERR_INPUT : LYRA_ERR_RUNTIME,
                      path, "cannot rename %s into place: %s", tmp, strerror(e));
        free(tmp);
        return rc;
    }
    if (bad == 2) {
        unlink(tmp);
        free(tmp);
        return lyra_err(err, LYRA_ERR_INTERRUPTED, path, "interrupted; nothing written");
    }
    if (bad) {
        unlink(tmp);
        rc = lyra_err(err, LYRA_ERR_RUNTIME, path, "cannot write %s: %s", tmp, strerror(e));
        free(tmp);
        return rc;
    }
    free(tmp);
    return LYRA_OK;
}
