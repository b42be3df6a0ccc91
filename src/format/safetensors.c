/* safetensors.c: the safetensors reader (see safetensors.h). Maps each file
 * read-only, parses the bounded JSON header with jansson, validates every
 * tensor (dtype, shape, offsets inside the data section, byte count, no
 * overlap) with checked arithmetic, then serves the tensors in place.
 * Sharded models: the index's weight_map names the shard of each tensor;
 * shard names are plain file names in the index's folder. */
#include "format/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef unsigned long long ull;

typedef struct st_file {
    char *path;           /* path (or the buffer's name) */
    const uint8_t *map;   /* [size] */
    uint64_t size;
    int mapped;           /* 1: munmap on close */
} st_file;

struct lyra_st {
    st_file *files;       /* [n_files] */
    int n_files;
    lyra_st_tensor *t;    /* [n_t] in header order, file by file */
    int64_t n_t;
    int64_t *by_name;     /* [n_t] indices sorted by name */
};

static const char *DT_NAMES[] = {"F32", "F16", "BF16", "I8", "U8"};
static const size_t DT_SIZES[] = {4, 2, 2, 1, 1};

const char *lyra_st_dtype_name(lyra_st_dtype d) { return (unsigned)d < 5 ? DT_NAMES[d] : "?"; }
size_t lyra_st_dtype_size(lyra_st_dtype d) { return (unsigned)d < 5 ? DT_SIZES[d] : 0; }

int64_t lyra_st_n_tensors(const lyra_st *s) { return s->n_t; }
const lyra_st_tensor *lyra_st_tensor_at(const lyra_st *s, int64_t i) {
    return i >= 0 && i < s->n_t ? &s->t[i] : NULL;
}
int lyra_st_n_files(const lyra_st *s) { return s->n_files; }
const char *lyra_st_file(const lyra_st *s, int i) {
    return i >= 0 && i < s->n_files ? s->files[i].path : NULL;
}

/* A printable, bounded form of a name for messages. */
static const char *show(const char *s, char *buf, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; s[i] && o + 8 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (i == 80) { memcpy(buf + o, "...", 3); o += 3; break; }
        if (ch >= 0x20 && ch < 0x7f) buf[o++] = (char)ch;
        else o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
    }
    buf[o] = '\0';
    return buf;
}

static int tbad(lyra_error *err, const char *file, const char *name, const char *what, ...)
    LYRA_PRINTF(4, 5);
static int tbad(lyra_error *err, const char *file, const char *name, const char *what, ...) {
    char msg[600], nb[128];
    va_list ap;
    va_start(ap, what);
    vsnprintf(msg, sizeof msg, what, ap);
    va_end(ap);
    return lyra_err(err, LYRA_ERR_INPUT, file, "tensor %s: %s", show(name, nb, sizeof nb), msg);
}

static int dtype_parse(const char *s, lyra_st_dtype *out) {
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, DT_NAMES[i])) {
            *out = (lyra_st_dtype)i;
            return 1;
        }
    return 0;
}

typedef struct span { uint64_t b, e; const char *name; } span;
static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->b < y->b ? -1 : x->b > y->b ? 1 : (x->e < y->e ? -1 : x->e > y->e);
}

/* Parse file fi of s (its map set) and append its tensors. */
static int parse_file(lyra_st *s, int fi, lyra_error *err) {
    st_file *f = &s->files[fi];
    const char *p = f->path;
    if (f->size < 8)
        return lyra_err(err, LYRA_ERR_INPUT, p, "%llu bytes: too short for a safetensors header",
                        (ull)f->size);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | f->map[i];
    if (hl > LYRA_ST_MAX_HEADER)
        return lyra_err(err, LYRA_ERR_INPUT, p, "header length %llu exceeds the limit of %u bytes",
                        (ull)hl, LYRA_ST_MAX_HEADER);
    if (hl < 2 || hl > f->size - 8)
        return lyra_err(err, LYRA_ERR_INPUT, p, "header length %llu does not fit the file of %llu bytes",
                        (ull)hl, (ull)f->size);
    const uint64_t data0 = 8 + hl, dsize = f->size - data0;
    json_error_t je;
    json_t *root = json_loadb((const char *)f->map + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return lyra_err(err, LYRA_ERR_INPUT, p, "header JSON: %s at byte %d", je.text, je.position);
    if (!json_is_object(root)) {
        json_decref(root);
        return lyra_err(err, LYRA_ERR_INPUT, p, "header JSON is not an object");
    }
    size_t n = json_object_size(root);
    lyra_st_tensor *nt = realloc(s->t, ((size_t)s->n_t + n + 1) * sizeof *nt);
    span *sp = malloc((n + 1) * sizeof *sp);
    if (nt) s->t = nt;
    if (!nt || !sp) {
        free(sp);
        json_decref(root);
        return lyra_err(err, LYRA_ERR_OOM, p, "out of memory reading the header");
    }
    int rc = LYRA_OK;
    size_t ns = 0;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(v)) { rc = lyra_err(err, LYRA_ERR_INPUT, p, "__metadata__ is not an object"); break; }
            continue;
        }
        if (!*key) { rc = tbad(err, p, key, "empty name"); break; }
        if (!json_is_object(v)) { rc = tbad(err, p, key, "entry is not an object"); break; }
        json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
               *jo = json_object_get(v, "data_offsets");
        if (!json_is_string(jd)) { rc = tbad(err, p, key, "dtype is missing or not a string"); break; }
        lyra_st_dtype dt;
        if (!dtype_parse(json_string_value(jd), &dt)) {
            char b[64];
            rc = tbad(err, p, key, "dtype %s is not supported (F32, F16, BF16, I8, U8)",
                      show(json_string_value(jd), b, sizeof b));
            break;
        }
        if (!json_is_array(js)) { rc = tbad(err, p, key, "shape is missing or not an array"); break; }
        size_t nd = json_array_size(js);
        if (nd > LYRA_ST_MAX_DIMS) { rc = tbad(err, p, key, "shape has %zu dimensions (at most %d)", nd, LYRA_ST_MAX_DIMS); break; }
        lyra_st_tensor t;
        memset(&t, 0, sizeof t);
        t.dtype = dt;
        t.n_dims = (int)nd;
        t.file = fi;
        uint64_t ne = 1;
        for (size_t d = 0; d < nd && !rc; d++) {
            json_t *x = json_array_get(js, d);
            if (!json_is_integer(x) || json_integer_value(x) < 0)
                rc = tbad(err, p, key, "shape[%zu] is not a non-negative integer", d);
            else if (__builtin_mul_overflow(ne, (uint64_t)json_integer_value(x), &ne) || ne > (1ull << 48))
                rc = tbad(err, p, key, "shape has too many elements");
            else
                t.shape[d] = (int64_t)json_integer_value(x);
        }
        if (rc) break;
        t.n_elements = (int64_t)ne;
        t.n_bytes = ne * DT_SIZES[dt];
        if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
            !json_is_integer(json_array_get(jo, 1))) {
            rc = tbad(err, p, key, "data_offsets is not a pair of integers");
            break;
        }
        json_int_t b = json_integer_value(json_array_get(jo, 0)), e = json_integer_value(json_array_get(jo, 1));
        if (b < 0 || e < b) { rc = tbad(err, p, key, "data_offsets [%lld, %lld] are not ordered", (long long)b, (long long)e); break; }
        if ((uint64_t)e > dsize) {
            rc = tbad(err, p, key, "data_offsets [%lld, %lld] go past the data section of %llu bytes",
                      (long long)b, (long long)e, (ull)dsize);
            break;
        }
        if ((uint64_t)(e - b) != t.n_bytes) {
            rc = tbad(err, p, key, "data_offsets span %llu bytes but shape x %s needs %llu",
                      (ull)(e - b), DT_NAMES[dt], (ull)t.n_bytes);
            break;
        }
        t.data = f->map + data0 + (uint64_t)b;
        t.name = strdup(key);
        if (!t.name) { rc = lyra_err(err, LYRA_ERR_OOM, p, "out of memory"); break; }
        s->t[s->n_t++] = t;
        if (t.n_bytes) sp[ns++] = (span){(uint64_t)b, (uint64_t)e, s->t[s->n_t - 1].name};
    }
    if (!rc) {
        qsort(sp, ns, sizeof *sp, cmp_span);
        for (size_t i = 1; i < ns && !rc; i++)
            if (sp[i].b < sp[i - 1].e)
                rc = tbad(err, p, sp[i].name, "data overlaps tensor %s", sp[i - 1].name);
    }
    free(sp);
    json_decref(root);
    return rc;
}

/* Sort the name index by a merge sort (no global context: reentrant). */
static void msort_idx(const lyra_st *s, int64_t *a, int64_t *tmp, int64_t n) {
    if (n < 2) return;
    int64_t h = n / 2;
    msort_idx(s, a, tmp, h);
    msort_idx(s, a + h, tmp, n - h);
    int64_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = strcmp(s->t[a[i]].name, s->t[a[j]].name) <= 0 ? a[i++] : a[j++];
    while (i < h) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, (size_t)n * sizeof *a);
}

static int index_names(lyra_st *s, lyra_error *err) {
    s->by_name = malloc((size_t)(s->n_t ? s->n_t : 1) * sizeof *s->by_name);
    int64_t *tmp = malloc((size_t)(s->n_t ? s->n_t : 1) * sizeof *tmp);
    if (!s->by_name || !tmp) {
        free(tmp);
        return lyra_err(err, LYRA_ERR_OOM, s->files[0].path, "out of memory");
    }
    for (int64_t i = 0; i < s->n_t; i++) s->by_name[i] = i;
    msort_idx(s, s->by_name, tmp, s->n_t);
    free(tmp);
    for (int64_t i = 1; i < s->n_t; i++) {
        const lyra_st_tensor *a = &s->t[s->by_name[i - 1]], *b = &s->t[s->by_name[i]];
        if (!strcmp(a->name, b->name))
            return tbad(err, s->files[b->file].path, b->name, "also in %s", s->files[a->file].path);
    }
    return LYRA_OK;
}

const lyra_st_tensor *lyra_st_find(const lyra_st *s, const char *name) {
    int64_t lo = 0, hi = s->n_t;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->t[s->by_name[mid]].name, name);
        if (c == 0) return &s->t[s->by_name[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static lyra_st *st_new(int n_files) {
    lyra_st *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->files = calloc((size_t)n_files, sizeof *s->files);
    if (!s->files) { free(s); return NULL; }
    s->n_files = n_files;
    return s;
}

void lyra_st_close(lyra_st *s) {
    if (!s) return;
    for (int i = 0; i < s->n_files; i++) {
        if (s->files[i].mapped && s->files[i].size) munmap((void *)s->files[i].map, (size_t)s->files[i].size);
        free(s->files[i].path);
    }
    for (int64_t i = 0; i < s->n_t; i++) free(s->t[i].name);
    free(s->t);
    free(s->by_name);
    free(s->files);
    free(s);
}

int lyra_st_open_buffer(const void *buf, size_t size, const char *name, lyra_st **out, lyra_error *err) {
    *out = NULL;
    if (!name) name = "<buffer>";
    lyra_st *s = st_new(1);
    if (!s || !(s->files[0].path = strdup(name))) {
        lyra_st_close(s);
        return lyra_err(err, LYRA_ERR_OOM, name, "out of memory");
    }
    s->files[0].map = buf;
    s->files[0].size = size;
    int rc = parse_file(s, 0, err);
    if (!rc) rc = index_names(s, err);
    if (rc) {
        lyra_st_close(s);
        return rc;
    }
    *out = s;
    return LYRA_OK;
}

/* Map file i (its path set). */
static int map_file(st_file *f, lyra_error *err) {
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lyra_err(err, LYRA_ERR_INPUT, f->path, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return lyra_err(err, LYRA_ERR_INPUT, f->path, "not a regular file");
    }
    f->size = (uint64_t)st.st_size;
    if (f->size) {
        void *m = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            return lyra_err(err, LYRA_ERR_INPUT, f->path, "mmap: %s", strerror(errno));
        }
        f->map = m;
        f->mapped = 1;
    }
    close(fd);
    return LYRA_OK;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static char *join(const char *dir, size_t dlen, const char *name) {
    size_t n = dlen + 1 + strlen(name) + 1;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%.*s%s%s", (int)dlen, dir, dlen ? "/" : "", name);
    return p;
}

/* The shard file names of an index (unique, in first-use order). */
static int read_index(const char *path, char ***names, int *n_names, json_t **map_out, lyra_error *err) {
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (je.line < 0 || access(path, R_OK))
            return lyra_err(err, LYRA_ERR_INPUT, path, "cannot read: %s", je.text);
        return lyra_err(err, LYRA_ERR_INPUT, path, "line %d: %s", je.line, je.text);
    }
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        json_decref(root);
        return lyra_err(err, LYRA_ERR_INPUT, path, "weight_map is missing, empty or not an object");
    }
    char **nm = calloc(json_object_size(wm), sizeof *nm);
    int n = 0, rc = LYRA_OK;
    const char *key;
    json_t *v;
    if (!nm) rc = lyra_err(err, LYRA_ERR_OOM, path, "out of memory");
    json_object_foreach(wm, key, v) {
        if (rc) break;
        const char *f = json_string_value(v);
        if (!f || !*f || strchr(f, '/') || !strcmp(f, "..") || !strcmp(f, ".")) {
            rc = tbad(err, path, key, "weight_map entry is not a plain file name");
            break;
        }
        int seen = 0;
        for (int i = 0; i < n && !seen; i++) seen = !strcmp(nm[i], f);
        if (!seen && !(nm[n++] = strdup(f))) rc = lyra_err(err, LYRA_ERR_OOM, path, "out of memory");
    }
    if (rc) {
        for (int i = 0; i < n; i++) free(nm[i]);
        free(nm);
        json_decref(root);
        return rc;
    }
    *names = nm;
    *n_names = n;
    *map_out = root;
    return LYRA_OK;
}

int lyra_st_open(const char *path, lyra_st **out, lyra_error *err) {
    *out = NULL;
    struct stat st;
    if (stat(path, &st)) return lyra_err(err, LYRA_ERR_INPUT, path, "cannot open: %s", strerror(errno));
    char *index = NULL, *single = NULL;
    if (S_ISDIR(st.st_mode)) {
        index = join(path, strlen(path), "model.safetensors.index.json");
        single = join(path, strlen(path), "model.safetensors");
        if (!index || !single) {
            free(index);
            free(single);
            return lyra_err(err, LYRA_ERR_OOM, path, "out of memory");
        }
        if (access(single, F_OK) == 0) {
            free(index);
            index = NULL;
        } else if (access(index, F_OK) == 0) {
            free(single);
            single = NULL;
        } else {
            free(index);
            free(single);
            char *pt = join(path, strlen(path), "pytorch_model.bin");
            int has_pt = pt && access(pt, F_OK) == 0;
            free(pt);
            return lyra_err(err, LYRA_ERR_INPUT, path,
                            "no model.safetensors or model.safetensors.index.json in this folder%s",
                            has_pt ? " (pytorch_model.bin is not read: lyra reads safetensors only)" : "");
        }
    } else if (ends_with(path, ".json")) {
        index = strdup(path);
    } else {
        single = strdup(path);
    }
    if (!index && !single) return lyra_err(err, LYRA_ERR_OOM, path, "out of memory");
    int rc;
    lyra_st *s = NULL;
    if (single) {
        s = st_new(1);
        if (!s) { free(single); return lyra_err(err, LYRA_ERR_OOM, path, "out of memory"); }
        s->files[0].path = single;
        rc = map_file(&s->files[0], err);
        if (!rc) rc = parse_file(s, 0, err);
    } else {
        char **names = NULL;
        int n = 0;
        json_t *root = NULL;
        rc = read_index(index, &names, &n, &root, err);
        if (rc) { free(index); return rc; }
        const char *slash = strrchr(index, '/');
        size_t dlen = slash ? (size_t)(slash - index) : 0;
        s = st_new(n);
        if (!s) rc = lyra_err(err, LYRA_ERR_OOM, path, "out of memory");
        for (int i = 0; !rc && i < n; i++) {
            if (!(s->files[i].path = join(index, dlen, names[i]))) rc = lyra_err(err, LYRA_ERR_OOM, path, "out of memory");
            else rc = map_file(&s->files[i], err);
            if (!rc) rc = parse_file(s, i, err);
        }
        for (int i = 0; i < n; i++) free(names[i]);
        free(names);
        if (!rc) rc = index_names(s, err);
        /* every tensor of the index is in the shard it names */
        const char *key;
        json_t *v;
        json_object_foreach(json_object_get(root, "weight_map"), key, v) {
            if (rc) break;
            const lyra_st_tensor *t = lyra_st_find(s, key);
            if (!t) rc = tbad(err, index, key, "named by the index but in no shard");
            else if (!ends_with(s->files[t->file].path, json_string_value(v)))
                rc = tbad(err, index, key, "the index names %s but it is in %s", json_string_value(v),
                          s->files[t->file].path);
        }
        json_decref(root);
        free(index);
        if (rc) { lyra_st_close(s); return rc; }
        *out = s;
        return LYRA_OK;
    }
    if (!rc) rc = index_names(s, err);
    if (rc) {
        lyra_st_close(s);
        return rc;
    }
    *out = s;
    return LYRA_OK;
}
