/* gguf_read.c: the GGUF reader. Maps a file read-only, validates the whole
 * header (counts, lengths, type ids, alignment, tensor shapes and offsets)
 * against the file size with checked arithmetic before anything is used,
 * then serves typed getters that never read outside the map. Split models
 * (NAME-00001-of-0000N.gguf) open every part; tensors point into their own
 * part's map. Opening reads only the header: O(header size).
 *
 * Layout (little endian), as the GGUF spec gives it:
 *   "GGUF" u32 version, u64 n_tensors, u64 n_kv,
 *   n_kv x { string key, u32 type, value },
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset },
 *   padding to the alignment, then the data section.
 *   string = u64 length + bytes; array = u32 element type, u64 count, elements. */
#include "format/gguf_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_HEADER_BYTES 24
#define GGUF_MIN_KV_BYTES 14     /* key length 8 + key >= 1 + type 4 + value >= 1 */
#define GGUF_MIN_TENSOR_BYTES 33 /* name length 8 + name >= 1 + n_dims 4 + ne 8 + type 4 + offset 8 */

typedef unsigned long long ull;

/* ------------------------------------------------------------ small helpers */

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

size_t lyra_gguf_scalar_size(uint32_t type) {
    switch (type) {
    case LYRA_GGUF_U8: case LYRA_GGUF_I8: case LYRA_GGUF_BOOL: return 1;
    case LYRA_GGUF_U16: case LYRA_GGUF_I16: return 2;
    case LYRA_GGUF_U32: case LYRA_GGUF_I32: case LYRA_GGUF_F32: return 4;
    case LYRA_GGUF_U64: case LYRA_GGUF_I64: case LYRA_GGUF_F64: return 8;
    default: return 0;
    }
}

static int vtype_valid(uint32_t t) { return t <= LYRA_GGUF_F64; }

const char *lyra_gguf_vtype_name(lyra_gguf_vtype t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                  "bool", "string", "array", "u64", "i64", "f64"};
    return (int)t >= 0 && (int)t <= LYRA_GGUF_F64 ? names[t] : "?";
}

/* Printable form of n bytes for messages: at most 60 characters, others \xNN. */
static const char *show(const char *s, uint64_t n, char *buf, size_t cap) {
    size_t o = 0;
    for (uint64_t i = 0; i < n && o + 8 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (i == 60) { memcpy(buf + o, "...", 3); o += 3; break; }
        if (ch >= 0x20 && ch < 0x7f && ch != '\'') buf[o++] = (char)ch;
        else o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
    }
    buf[o] = '\0';
    return buf;
}

/* ------------------------------------------------------------------ cursor */

/* A read position in one file. */
typedef struct cur {
    const uint8_t *p;  /* [size] the file (NULL when size is 0) */
    uint64_t size;     /* bytes in the file */
    uint64_t off;      /* read position, <= size */
    const char *name;  /* file name for messages */
    lyra_error *err;   /* where failures go */
} cur;

static int bad(cur *c, uint64_t off, const char *fmt, ...) LYRA_PRINTF(3, 4);
static int bad(cur *c, uint64_t off, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lyra_err(c->err, LYRA_ERR_INPUT, c->name, "offset %llu: %s", (ull)off, msg);
}

static int oom(cur *c) { return lyra_err(c->err, LYRA_ERR_OOM, c->name, "out of memory reading the header"); }

static uint64_t left(const cur *c) { return c->size - c->off; }

static int need(cur *c, uint64_t n, const char *what) {
    if (n > left(c))
        return bad(c, c->off, "%s: needs %llu bytes but the file ends after %llu", what, (ull)n, (ull)left(c));
    return LYRA_OK;
}

static int rd_u32(cur *c, uint32_t *v, const char *what) {
    if (need(c, 4, what)) return LYRA_ERR_INPUT;
    *v = le32(c->p + c->off);
    c->off += 4;
    return LYRA_OK;
}

static int rd_u64(cur *c, uint64_t *v, const char *what) {
    if (need(c, 8, what)) return LYRA_ERR_INPUT;
    *v = le64(c->p + c->off);
    c->off += 8;
    return LYRA_OK;
}

static int rd_str(cur *c, lyra_gguf_str *s, const char *what) {
    uint64_t at = c->off, n;
    if (rd_u64(c, &n, what)) return LYRA_ERR_INPUT;
    if (n > left(c))
        return bad(c, at, "%s: string length %llu runs past the end of the file (%llu bytes left)",
                   what, (ull)n, (ull)left(c));
    s->ptr = (const char *)c->p + c->off;
    s->len = n;
    c->off += n;
    return LYRA_OK;
}

/* --------------------------------------------------------------- values */

/* Validate one value of type (its type id already read and valid) and move
 * past it. kv (top level only) receives the array fields. */
static int skip_value(cur *c, uint32_t type, int depth, const char *ctx, gguf_kv *kv) {
    size_t sz = lyra_gguf_scalar_size(type);
    if (sz) {
        if (need(c, sz, ctx)) return LYRA_ERR_INPUT;
        if (type == LYRA_GGUF_BOOL && c->p[c->off] > 1)
            return bad(c, c->off, "%s: bool value %u is neither 0 nor 1", ctx, c->p[c->off]);
        c->off += sz;
        return LYRA_OK;
    }
    if (type == LYRA_GGUF_STRING) {
        lyra_gguf_str s;
        return rd_str(c, &s, ctx);
    }
    /* an array: u32 element type, u64 count, elements */
    uint64_t at = c->off, n;
    uint32_t et;
    if (depth >= LYRA_GGUF_MAX_DEPTH)
        return bad(c, at, "%s: arrays nested more than %d deep", ctx, LYRA_GGUF_MAX_DEPTH);
    if (rd_u32(c, &et, ctx)) return LYRA_ERR_INPUT;
    if (!vtype_valid(et)) return bad(c, at, "%s: unknown array element type id %u", ctx, et);
    if (rd_u64(c, &n, ctx)) return LYRA_ERR_INPUT;
    size_t esz = lyra_gguf_scalar_size(et);
    uint64_t min = esz ? esz : et == LYRA_GGUF_STRING ? 8 : 12; /* bytes per element at least */
    if (n > left(c) / min)
        return bad(c, at + 4, "%s: array count %llu exceeds what the file can hold (%llu bytes left)",
                   ctx, (ull)n, (ull)left(c));
    if (kv) {
        kv->arr_type = (lyra_gguf_vtype)et;
        kv->arr_count = n;
        kv->arr_data = c->p + c->off;
    }
    if (esz) {
        if (et == LYRA_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (c->p[c->off + i] > 1)
                    return bad(c, c->off + i, "%s: bool element %llu is %u, neither 0 nor 1", ctx,
                               (ull)i, c->p[c->off + i]);
        c->off += n * esz; /* n * esz <= left: checked above */
        return LYRA_OK;
    }
    if (et == LYRA_GGUF_STRING) {
        if (kv) {
            kv->arr_strs = malloc(n ? n * sizeof *kv->arr_strs : 1); /* n <= size / 8 */
            if (!kv->arr_strs) return oom(c);
        }
        for (uint64_t i = 0; i < n; i++) {
            lyra_gguf_str s;
            if (kv) kv->arr_strs[i] = c->p + c->off;
            if (rd_str(c, &s, ctx)) return LYRA_ERR_INPUT;
        }
        return LYRA_OK;
    }
    for (uint64_t i = 0; i < n; i++) /* array of arrays: each element is an array body */
        if (skip_value(c, LYRA_GGUF_ARRAY, depth + 1, ctx, NULL)) return LYRA_ERR_INPUT;
    return LYRA_OK;
}

/* Integer value of a kv as sign and magnitude. 0 if not an integer type. */
static int kv_int(const gguf_kv *kv, int *neg, uint64_t *mag) {
    const uint8_t *p = kv->val;
    int64_t s;
    *neg = 0;
    switch (kv->type) {
    case LYRA_GGUF_U8: *mag = p[0]; return 1;
    case LYRA_GGUF_U16: *mag = (uint16_t)(p[0] | p[1] << 8); return 1;
    case LYRA_GGUF_U32: *mag = le32(p); return 1;
    case LYRA_GGUF_U64: *mag = le64(p); return 1;
    case LYRA_GGUF_I8: s = (int8_t)p[0]; break;
    case LYRA_GGUF_I16: s = (int16_t)(uint16_t)(p[0] | p[1] << 8); break;
    case LYRA_GGUF_I32: s = (int32_t)le32(p); break;
    case LYRA_GGUF_I64: s = (int64_t)le64(p); break;
    default: return 0;
    }
    if (s < 0) { *neg = 1; *mag = (uint64_t)0 - (uint64_t)s; }
    else *mag = (uint64_t)s;
    return 1;
}

/* ---------------------------------------------------------------- sorting */

static int cmp_name(const void *a, const void *b) {
    const gguf_name_idx *x = a, *y = b;
    int r = strcmp(x->name, y->name);
    return r ? r : (x->idx > y->idx) - (x->idx < y->idx);
}

static int64_t find_name(const gguf_name_idx *v, int64_t n, const char *name) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int r = strcmp(v[mid].name, name);
        if (r == 0) return v[mid].idx;
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* Tensors of a part ordered by data offset (overlap check). */
typedef struct off_idx {
    uint64_t off; /* data offset */
    int64_t idx;  /* tensor index */
} off_idx;

static int cmp_off(const void *a, const void *b) {
    const off_idx *x = a, *y = b;
    if (x->off != y->off) return x->off < y->off ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* ----------------------------------------------------------------- parsing */

/* Header: magic, version, counts. */
static int parse_header(cur *c, gguf_part *pt, uint64_t *n_tensors, uint64_t *n_kv) {
    char buf[64];
    if (c->size < 4)
        return bad(c, 0, "file is too small to be GGUF (%llu bytes)", (ull)c->size);
    if (memcmp(c->p, "GGUF", 4) != 0)
        return bad(c, 0, "not a GGUF file (magic is '%s', expected 'GGUF')",
                   show((const char *)c->p, 4, buf, sizeof buf));
    c->off = 4;
    uint32_t v;
    if (rd_u32(c, &v, "version")) return LYRA_ERR_INPUT;
    uint32_t swapped = (v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
    if (v == 1) return bad(c, 4, "GGUF version 1 is not supported (only versions 2 and 3)");
    if (v != 2 && v != 3) {
        if (swapped >= 1 && swapped <= 3)
            return bad(c, 4, "big-endian GGUF (version %u) is not supported", swapped);
        return bad(c, 4, "GGUF version %u is not supported (only versions 2 and 3)", v);
    }
    pt->version = v;
    if (rd_u64(c, n_tensors, "tensor count") || rd_u64(c, n_kv, "key/value count"))
        return LYRA_ERR_INPUT;
    if (*n_tensors > left(c) / GGUF_MIN_TENSOR_BYTES)
        return bad(c, 8, "tensor count %llu exceeds what the file can hold", (ull)*n_tensors);
    if (*n_kv > left(c) / GGUF_MIN_KV_BYTES)
        return bad(c, 16, "key/value count %llu exceeds what the file can hold", (ull)*n_kv);
    if (*n_tensors * GGUF_MIN_TENSOR_BYTES + *n_kv * GGUF_MIN_KV_BYTES > left(c)) /* each <= left */
        return bad(c, 8, "tensor count %llu and key/value count %llu exceed what the file can hold",
                   (ull)*n_tensors, (ull)*n_kv);
    return LYRA_OK;
}

/* Offset in the file where a kv's entry (its key length) starts. */
static uint64_t kv_offset(const cur *c, const gguf_kv *kv) {
    return (uint64_t)(kv->val - c->p) - 4 - strlen(kv->key) - 8;
}

/* Key/values, their sorted index, duplicates and general.alignment. */
static int parse_kvs(cur *c, gguf_part *pt, uint64_t n_kv) {
    char ctx[320], buf[256];
    pt->kv = calloc(n_kv ? n_kv : 1, sizeof *pt->kv);
    pt->kv_by_name = calloc(n_kv ? n_kv : 1, sizeof *pt->kv_by_name);
    if (!pt->kv || !pt->kv_by_name) return oom(c);
    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_kv *kv = &pt->kv[i];
        uint64_t at = c->off;
        lyra_gguf_str k = {NULL, 0};
        snprintf(ctx, sizeof ctx, "key of key/value %llu", (ull)i);
        if (rd_str(c, &k, ctx)) return LYRA_ERR_INPUT;
        if (k.len == 0) return bad(c, at, "key/value %llu has an empty key", (ull)i);
        if (k.len > LYRA_GGUF_MAX_KEY)
            return bad(c, at, "key/value %llu: key length %llu exceeds %d", (ull)i, (ull)k.len, LYRA_GGUF_MAX_KEY);
        if (memchr(k.ptr, 0, k.len))
            return bad(c, at, "key '%s' contains a NUL byte", show(k.ptr, k.len, buf, sizeof buf));
        kv->key = malloc(k.len + 1);
        if (!kv->key) return oom(c);
        memcpy(kv->key, k.ptr, k.len);
        kv->key[k.len] = '\0';
        pt->n_kv = (int64_t)i + 1; /* so close frees it */
        kv->arr_type = LYRA_GGUF_NONE;
        snprintf(ctx, sizeof ctx, "key '%s'", show(k.ptr, k.len, buf, sizeof buf));
        uint64_t type_at = c->off;
        uint32_t type;
        if (rd_u32(c, &type, ctx)) return LYRA_ERR_INPUT;
        if (!vtype_valid(type)) return bad(c, type_at, "%s: unknown value type id %u", ctx, type);
        kv->type = (lyra_gguf_vtype)type;
        kv->val = c->p + c->off;
        uint64_t val_at = c->off;
        int rc = skip_value(c, type, 0, ctx, kv);
        if (rc) return rc;
        kv->val_bytes = c->off - val_at;
        pt->kv_by_name[i].name = kv->key;
        pt->kv_by_name[i].idx = (int64_t)i;
    }
    qsort(pt->kv_by_name, n_kv, sizeof *pt->kv_by_name, cmp_name);
    for (uint64_t i = 1; i < n_kv; i++)
        if (strcmp(pt->kv_by_name[i - 1].name, pt->kv_by_name[i].name) == 0) {
            const gguf_kv *kv = &pt->kv[pt->kv_by_name[i].idx];
            return bad(c, kv_offset(c, kv), "duplicate key '%s'", show(kv->key, strlen(kv->key), buf, sizeof buf));
        }
    pt->alignment = LYRA_GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = find_name(pt->kv_by_name, (int64_t)n_kv, "general.alignment");
    if (ai >= 0) {
        const gguf_kv *kv = &pt->kv[ai];
        if (kv->type != LYRA_GGUF_U32)
            return bad(c, kv_offset(c, kv), "general.alignment has type %s, expected u32",
                       lyra_gguf_vtype_name(kv->type));
        uint32_t a = le32(kv->val);
        if (a == 0 || (a & (a - 1)))
            return bad(c, kv_offset(c, kv), "general.alignment %u is not a power of two", a);
        pt->alignment = a;
    }
    return LYRA_OK;
}

/* One tensor info entry: name, shape, type, offset; sizes with checked math. */
static int parse_tensor_info(cur *c, const gguf_part *pt, uint64_t i, lyra_gguf_tensor *t) {
    char ctx[320], buf[256];
    uint64_t at = c->off;
    lyra_gguf_str nm;
    snprintf(ctx, sizeof ctx, "name of tensor %llu", (ull)i);
    if (rd_str(c, &nm, ctx)) return LYRA_ERR_INPUT;
    show(nm.ptr, nm.len, buf, sizeof buf);
    if (nm.len == 0) return bad(c, at, "tensor %llu has an empty name", (ull)i);
    if (nm.len > LYRA_GGUF_MAX_NAME)
        return bad(c, at, "tensor '%s': name is %llu bytes, more than %d", buf, (ull)nm.len, LYRA_GGUF_MAX_NAME);
    if (memchr(nm.ptr, 0, nm.len)) return bad(c, at, "tensor '%s': name contains a NUL byte", buf);
    t->name = malloc(nm.len + 1);
    if (!t->name) return oom(c);
    memcpy(t->name, nm.ptr, nm.len);
    t->name[nm.len] = '\0';
    t->info_offset = at;
    snprintf(ctx, sizeof ctx, "tensor '%s'", buf);

    uint64_t dims_at = c->off;
    uint32_t n_dims;
    if (rd_u32(c, &n_dims, ctx)) return LYRA_ERR_INPUT;
    if (n_dims < 1 || n_dims > 4) return bad(c, dims_at, "%s: n_dims %u is not in 1..4", ctx, n_dims);
    t->n_dims = (int)n_dims;
    int64_t nel = 1;
    for (int d = 0; d < 4; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        uint64_t ne_at = c->off, ne;
        if (rd_u64(c, &ne, ctx)) return LYRA_ERR_INPUT;
        if (ne < 1 || ne > (uint64_t)INT64_MAX)
            return bad(c, ne_at, "%s: ne[%u] = %llu is not in 1..2^63-1", ctx, d, (ull)ne);
        t->ne[d] = (int64_t)ne;
        if (__builtin_mul_overflow(nel, (int64_t)ne, &nel))
            return bad(c, ne_at, "%s: element count overflows 64 bits", ctx);
    }
    t->n_elements = nel;

    uint64_t type_at = c->off;
    uint32_t type;
    if (rd_u32(c, &type, ctx)) return LYRA_ERR_INPUT;
    if (type >= LYRA_TYPE_COUNT || !lyra_type_known((lyra_type)type))
        return bad(c, type_at, "%s: unknown tensor type id %u", ctx, type);
    t->type = (lyra_type)type;
    int64_t blk = lyra_type_block(t->type);
    uint64_t bb = lyra_type_block_bytes(t->type);
    if (blk < 1 || bb < 1) return bad(c, type_at, "%s: type id %u has no block layout", ctx, type);
    if (t->ne[0] % blk != 0)
        return bad(c, dims_at + 4, "%s: ne[0] = %lld is not a multiple of the %s block size %lld", ctx,
                   (long long)t->ne[0], lyra_type_name(t->type), (long long)blk);
    uint64_t row, nbytes;
    if (__builtin_mul_overflow((uint64_t)(t->ne[0] / blk), bb, &row) ||
        __builtin_mul_overflow(row, (uint64_t)(nel / t->ne[0]), &nbytes))
        return bad(c, dims_at, "%s: byte size overflows 64 bits", ctx);
    t->n_bytes = nbytes;

    uint64_t off_at = c->off;
    if (rd_u64(c, &t->offset, ctx)) return LYRA_ERR_INPUT;
    if (t->offset % pt->alignment)
        return bad(c, off_at, "%s: data offset %llu is not a multiple of the alignment %u", ctx,
                   (ull)t->offset, pt->alignment);
    return LYRA_OK;
}

/* Tensor infos, the data section, and every tensor's place in it. */
static int parse_tensors(cur *c, gguf_part *pt, uint64_t n, lyra_gguf_tensor *t, int part) {
    char buf[256], buf2[256];
    for (uint64_t i = 0; i < n; i++) {
        t[i].part = part;
        int rc = parse_tensor_info(c, pt, i, &t[i]);
        if (rc) return rc;
    }
    uint64_t start;
    if (__builtin_add_overflow(c->off, (uint64_t)pt->alignment - 1, &start))
        return bad(c, c->off, "data section start overflows");
    start -= start % pt->alignment;
    pt->data_start = start;
    uint64_t data_size = c->size > start ? c->size - start : 0;
    for (uint64_t i = 0; i < n; i++) {
        if (t[i].offset > data_size || t[i].n_bytes > data_size - t[i].offset)
            return bad(c, t[i].info_offset, "tensor '%s': data at offset %llu + %llu bytes runs past the end "
                       "of the file (the data section at %llu holds %llu bytes)",
                       show(t[i].name, strlen(t[i].name), buf, sizeof buf), (ull)t[i].offset,
                       (ull)t[i].n_bytes, (ull)start, (ull)data_size);
        t[i].data = c->p + start + t[i].offset;
    }
    if (n > 1) { /* no two tensors may share bytes */
        off_idx *o = malloc(n * sizeof *o);
        if (!o) return oom(c);
        for (uint64_t i = 0; i < n; i++) o[i] = (off_idx){t[i].offset, (int64_t)i};
        qsort(o, n, sizeof *o, cmp_off);
        for (uint64_t i = 1; i < n; i++) {
            const lyra_gguf_tensor *a = &t[o[i - 1].idx], *b = &t[o[i].idx];
            if (a->offset + a->n_bytes > b->offset) {
                int r = bad(c, b->info_offset, "tensor '%s' (data offset %llu) overlaps tensor '%s' "
                            "(data offset %llu, %llu bytes)", show(b->name, strlen(b->name), buf, sizeof buf),
                            (ull)b->offset, show(a->name, strlen(a->name), buf2, sizeof buf2),
                            (ull)a->offset, (ull)a->n_bytes);
                free(o);
                return r;
            }
        }
        free(o);
    }
    return LYRA_OK;
}

/* Parse one whole file into pt and a malloc'd tensor array (*tens, *n_tens). */
static int parse_part(gguf_part *pt, int part, lyra_gguf_tensor **tens, lyra_error *err) {
    cur c = {pt->map, pt->size, 0, pt->path, err};
    uint64_t n_tensors, n_kv;
    *tens = NULL;
    if (parse_header(&c, pt, &n_tensors, &n_kv)) return LYRA_ERR_INPUT;
    int rc = parse_kvs(&c, pt, n_kv);
    if (rc) return rc;
    *tens = calloc(n_tensors ? n_tensors : 1, sizeof **tens);
    if (!*tens) return oom(&c);
    pt->n_tensors = (int64_t)n_tensors; /* names freed up to the first NULL */
    return parse_tensors(&c, pt, n_tensors, *tens, part);
}

/* ------------------------------------------------------------ files, split */

static int map_file(gguf_part *pt, lyra_error *err) {
    int fd = open(pt->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return lyra_err(err, e == ENOMEM ? LYRA_ERR_OOM : e == EIO || e == EMFILE || e == ENFILE ? LYRA_ERR_RUNTIME : LYRA_ERR_INPUT,
                        pt->path, "cannot open: %s", strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return lyra_err(err, LYRA_ERR_RUNTIME, pt->path, "cannot stat: %s", strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return lyra_err(err, LYRA_ERR_INPUT, pt->path, "not a regular file");
    }
    pt->size = (uint64_t)st.st_size;
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return lyra_err(err, LYRA_ERR_INPUT, pt->path, "file of %llu bytes is too large to map", (ull)pt->size);
    }
    if (pt->size == 0) { /* nothing to map: the parser reports it */
        close(fd);
        return LYRA_OK;
    }
    void *m = mmap(NULL, (size_t)pt->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED)
        return lyra_err(err, e == ENOMEM ? LYRA_ERR_OOM : LYRA_ERR_RUNTIME, pt->path, "cannot map the file: %s", strerror(e));
    pt->map = m;
    pt->mapped = 1;
    return LYRA_OK;
}

int lyra_gguf_split_name(const char *path, size_t *prefix_len, int *no, int *count) {
    size_t n = strlen(path);
    if (n < 20) return 0;
    const char *s = path + n - 20;
    if (s[0] != '-' || memcmp(s + 6, "-of-", 4) != 0 || memcmp(s + 15, ".gguf", 5) != 0) return 0;
    int a = 0, b = 0;
    for (int i = 0; i < 5; i++) {
        if (s[1 + i] < '0' || s[1 + i] > '9' || s[10 + i] < '0' || s[10 + i] > '9') return 0;
        a = a * 10 + (s[1 + i] - '0');
        b = b * 10 + (s[10 + i] - '0');
    }
    if (a < 1 || a > b) return 0;
    *prefix_len = n - 20;
    *no = a;
    *count = b;
    return 1;
}

static const gguf_kv *part_kv(const gguf_part *pt, const char *key) {
    int64_t i = find_name(pt->kv_by_name, pt->n_kv, key);
    return i < 0 ? NULL : &pt->kv[i];
}

/* split.count / split.no / split.tensors.count, where present, must agree with
 * the file names (n_parts; 1 for a plain name) and the tensors found. */
static int check_split_keys(const lyra_gguf *g, lyra_error *err) {
    for (int i = 0; i < g->n_parts; i++) {
        const gguf_part *pt = &g->parts[i];
        cur c = {pt->map, pt->size, 0, pt->path, err};
        const gguf_kv *kv;
        int neg;
        uint64_t v;
        if ((kv = part_kv(pt, "split.count"))) {
            if (!kv_int(kv, &neg, &v) || neg) return bad(&c, kv_offset(&c, kv), "split.count is not a count");
            if (v != (uint64_t)g->n_parts) {
                if (g->n_parts == 1)
                    return bad(&c, kv_offset(&c, kv), "split.count is %llu but the file name does not end in "
                               "-00001-of-%05llu.gguf: open the first part by its split name", (ull)v, (ull)v);
                return bad(&c, kv_offset(&c, kv), "split.count is %llu but the file names say %d parts",
                           (ull)v, g->n_parts);
            }
        }
        if ((kv = part_kv(pt, "split.no"))) {
            if (!kv_int(kv, &neg, &v) || neg) return bad(&c, kv_offset(&c, kv), "split.no is not a count");
            if (v != (uint64_t)i)
                return bad(&c, kv_offset(&c, kv), "split.no is %llu but the file name says part %d "
                           "(split.no counts from 0)", (ull)v, i + 1);
        }
        if (i == 0 && (kv = part_kv(pt, "split.tensors.count"))) {
            if (!kv_int(kv, &neg, &v) || neg || v != (uint64_t)g->n_tensors)
                return bad(&c, kv_offset(&c, kv), "split.tensors.count says %s%llu tensors but the %d part(s) "
                           "hold %lld", neg ? "-" : "", (ull)v, g->n_parts, (long long)g->n_tensors);
        }
    }
    return LYRA_OK;
}

/* Append a part's tensors to g (taking the names). */
static int add_tensors(lyra_gguf *g, lyra_gguf_tensor *t, int64_t n, lyra_error *err, const char *path) {
    if (n == 0) return LYRA_OK;
    lyra_gguf_tensor *nt = realloc(g->tensors, (size_t)(g->n_tensors + n) * sizeof *nt);
    if (!nt) return lyra_err(err, LYRA_ERR_OOM, path, "out of memory reading the header");
    memcpy(nt + g->n_tensors, t, (size_t)n * sizeof *t);
    g->tensors = nt;
    g->n_tensors += n;
    return LYRA_OK;
}

/* Index the tensors of all parts by name; names must be unique. */
static int index_tensors(lyra_gguf *g, lyra_error *err) {
    char buf[256];
    int64_t n = g->n_tensors;
    g->tensor_by_name = malloc((size_t)(n ? n : 1) * sizeof *g->tensor_by_name);
    if (!g->tensor_by_name) return lyra_err(err, LYRA_ERR_OOM, g->parts[0].path, "out of memory");
    g->data_bytes = 0;
    for (int64_t i = 0; i < n; i++) {
        g->tensor_by_name[i] = (gguf_name_idx){g->tensors[i].name, i};
        g->data_bytes += g->tensors[i].n_bytes; /* disjoint ranges of real files: no overflow */
    }
    qsort(g->tensor_by_name, (size_t)n, sizeof *g->tensor_by_name, cmp_name);
    for (int64_t i = 1; i < n; i++)
        if (strcmp(g->tensor_by_name[i - 1].name, g->tensor_by_name[i].name) == 0) {
            const lyra_gguf_tensor *a = &g->tensors[g->tensor_by_name[i - 1].idx];
            const lyra_gguf_tensor *b = &g->tensors[g->tensor_by_name[i].idx];
            const gguf_part *pt = &g->parts[b->part];
            cur c = {pt->map, pt->size, 0, pt->path, err};
            if (a->part != b->part)
                return bad(&c, b->info_offset, "duplicate tensor name '%s' (also in %s)",
                           show(b->name, strlen(b->name), buf, sizeof buf), g->parts[a->part].path);
            return bad(&c, b->info_offset, "duplicate tensor name '%s'", show(b->name, strlen(b->name), buf, sizeof buf));
        }
    return LYRA_OK;
}

/* Parse part i (already mapped or given) and add its tensors. */
static int load_part(lyra_gguf *g, int i, lyra_error *err) {
    lyra_gguf_tensor *t = NULL;
    int rc = parse_part(&g->parts[i], i, &t, err);
    if (rc == LYRA_OK) rc = add_tensors(g, t, g->parts[i].n_tensors, err, g->parts[i].path);
    if (rc != LYRA_OK && t)
        for (int64_t k = 0; k < g->parts[i].n_tensors; k++) free(t[k].name);
    free(t);
    g->parts[i].n_tensors = rc == LYRA_OK ? g->parts[i].n_tensors : 0;
    return rc;
}

static lyra_gguf *new_gguf(int n_parts) {
    lyra_gguf *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->parts = calloc((size_t)n_parts, sizeof *g->parts);
    if (!g->parts) { free(g); return NULL; }
    g->n_parts = n_parts;
    return g;
}

int lyra_gguf_open(const char *path, lyra_gguf **out, lyra_error *err) {
    *out = NULL;
    size_t plen = 0;
    int no = 0, count = 0, split = lyra_gguf_split_name(path, &plen, &no, &count);
    if (split && no != 1)
        return lyra_err(err, LYRA_ERR_INPUT, path, "this is part %d of %d of a split model: open the first part, "
                        "%.*s-00001-of-%05d.gguf", no, count, (int)plen, path, count);
    lyra_gguf *g = new_gguf(split ? count : 1);
    if (!g) return lyra_err(err, LYRA_ERR_OOM, path, "out of memory");
    int rc = LYRA_OK;
    for (int i = 0; i < g->n_parts && rc == LYRA_OK; i++) {
        gguf_part *pt = &g->parts[i];
        size_t n = split ? plen + 21 : strlen(path) + 1;
        pt->path = malloc(n);
        if (!pt->path) { rc = lyra_err(err, LYRA_ERR_OOM, path, "out of memory"); break; }
        if (split) snprintf(pt->path, n, "%.*s-%05d-of-%05d.gguf", (int)plen, path, i + 1, count);
        else memcpy(pt->path, path, n);
        rc = map_file(pt, err);
        if (rc == LYRA_OK) rc = load_part(g, i, err);
    }
    if (rc == LYRA_OK) rc = index_tensors(g, err);
    if (rc == LYRA_OK) rc = check_split_keys(g, err);
    if (rc != LYRA_OK) {
        lyra_gguf_close(g);
        return rc;
    }
    *out = g;
    return LYRA_OK;
}

int lyra_gguf_open_buffer(const void *buf, size_t size, const char *name, lyra_gguf **out, lyra_error *err) {
    *out = NULL;
    if (!name) name = "<buffer>";
    lyra_gguf *g = new_gguf(1);
    if (!g || !(g->parts[0].path = strdup(name))) {
        lyra_gguf_close(g);
        return lyra_err(err, LYRA_ERR_OOM, name, "out of memory");
    }
    g->parts[0].map = size ? buf : NULL;
    g->parts[0].size = size;
    int rc = load_part(g, 0, err);
    if (rc == LYRA_OK) rc = index_tensors(g, err);
    if (rc != LYRA_OK) {
        lyra_gguf_close(g);
        return rc;
    }
    *out = g;
    return LYRA_OK;
}

int lyra_gguf_open_mem(void *hdr, size_t size, const char *name, const lyra_gguf_tensor *t,
                       int64_t n, lyra_gguf **out, lyra_error *err) {
    *out = NULL;
    lyra_gguf *g = new_gguf(1);
    if (!g || !(g->parts[0].path = strdup(name))) {
        lyra_gguf_close(g);
        free(hdr);
        return lyra_err(err, LYRA_ERR_OOM, name, "out of memory");
    }
    g->owned = hdr;
    g->parts[0].map = size ? hdr : NULL;
    g->parts[0].size = size;
    int rc = load_part(g, 0, err);
    if (rc == LYRA_OK && g->n_tensors)
        rc = lyra_err(err, LYRA_ERR_INPUT, name, "an in-memory header must have no tensors");
    if (rc == LYRA_OK && n > 0 && !(g->tensors = calloc((size_t)n, sizeof *g->tensors)))
        rc = lyra_err(err, LYRA_ERR_OOM, name, "out of memory");
    for (int64_t i = 0; rc == LYRA_OK && i < n; i++) {
        g->tensors[i] = t[i];
        g->tensors[i].part = 0;
        if (!(g->tensors[i].name = strdup(t[i].name))) rc = lyra_err(err, LYRA_ERR_OOM, name, "out of memory");
        else g->n_tensors++;
    }
    if (rc == LYRA_OK) rc = index_tensors(g, err);
    if (rc != LYRA_OK) {
        lyra_gguf_close(g);
        return rc;
    }
    *out = g;
    return LYRA_OK;
}

void lyra_gguf_close(lyra_gguf *g) {
    if (!g) return;
    if (g->release) g->release(g->release_arg);
    free(g->owned);
    for (int i = 0; i < g->n_parts; i++) {
        gguf_part *pt = &g->parts[i];
        for (int64_t k = 0; k < pt->n_kv; k++) {
            free(pt->kv[k].key);
            free(pt->kv[k].arr_strs);
            free(pt->kv[k].owned);
        }
        free(pt->kv);
        free(pt->kv_by_name);
        if (pt->mapped) munmap((void *)pt->map, (size_t)pt->size);
        free(pt->path);
    }
    for (int64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->tensors);
    free(g->tensor_by_name);
    free(g->parts);
    free(g);
}

/* ------------------------------------------------------------------ getters */

const char *lyra_gguf_path(const lyra_gguf *g) { return g->parts[0].path; }
uint32_t lyra_gguf_version(const lyra_gguf *g) { return g->parts[0].version; }
int lyra_gguf_n_parts(const lyra_gguf *g) { return g->n_parts; }
uint64_t lyra_gguf_part_size(const lyra_gguf *g, int part) {
    return part >= 0 && part < g->n_parts ? g->parts[part].size : 0;
}
const void *lyra_gguf_part_map(const lyra_gguf *g, int part) {
    return part >= 0 && part < g->n_parts ? g->parts[part].map : NULL;
}
uint64_t lyra_gguf_data_start(const lyra_gguf *g, int part) {
    return part >= 0 && part < g->n_parts ? g->parts[part].data_start : 0;
}
uint64_t lyra_gguf_data_bytes(const lyra_gguf *g) { return g->data_bytes; }

int64_t lyra_gguf_n_kv(const lyra_gguf *g) { return g->parts[0].n_kv; }
const char *lyra_gguf_kv_key(const lyra_gguf *g, int64_t i) {
    return i >= 0 && i < g->parts[0].n_kv ? g->parts[0].kv[i].key : NULL;
}
lyra_gguf_vtype lyra_gguf_kv_type(const lyra_gguf *g, int64_t i) {
    return i >= 0 && i < g->parts[0].n_kv ? g->parts[0].kv[i].type : LYRA_GGUF_NONE;
}
int64_t lyra_gguf_find_key(const lyra_gguf *g, const char *key) {
    return key ? find_name(g->parts[0].kv_by_name, g->parts[0].n_kv, key) : -1;
}
const gguf_kv *lyra_gguf_kv_find(const lyra_gguf *g, const char *key) {
    int64_t i = lyra_gguf_find_key(g, key);
    return i < 0 ? NULL : &g->parts[0].kv[i];
}

int lyra_gguf_get_u32(const lyra_gguf *g, const char *key, uint32_t *out) {
    uint64_t v;
    if (!lyra_gguf_get_u64(g, key, &v) || v > UINT32_MAX) return 0;
    *out = (uint32_t)v;
    return 1;
}

int lyra_gguf_get_u64(const lyra_gguf *g, const char *key, uint64_t *out) {
    const gguf_kv *kv = lyra_gguf_kv_find(g, key);
    int neg;
    uint64_t mag;
    if (!kv || !kv_int(kv, &neg, &mag) || neg) return 0;
    *out = mag;
    return 1;
}

int lyra_gguf_get_i64(const lyra_gguf *g, const char *key, int64_t *out) {
    const gguf_kv *kv = lyra_gguf_kv_find(g, key);
    int neg;
    uint64_t mag;
    if (!kv || !kv_int(kv, &neg, &mag)) return 0;
    if (neg) {
        if (mag > (uint64_t)INT64_MAX + 1) return 0;
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    } else {
        if (mag > (uint64_t)INT64_MAX) return 0;
        *out = (int64_t)mag;
    }
    return 1;
}

int lyra_gguf_get_f64(const lyra_gguf *g, const char *key, double *out) {
    const gguf_kv *kv = lyra_gguf_kv_find(g, key);
    if (!kv) return 0;
    if (kv->type == LYRA_GGUF_F32) { uint32_t u = le32(kv->val); float f; memcpy(&f, &u, 4); *out = f; return 1; }
    if (kv->type == LYRA_GGUF_F64) { uint64_t u = le64(kv->val); memcpy(out, &u, 8); return 1; }
    return 0;
}

/* d rounded to float; 0 when d is finite but outside the float range. */
static int f64_to_f32(double d, float *out) {
    if (isfinite(d) && (d > FLT_MAX || d < -FLT_MAX)) return 0;
    *out = (float)d;
    return 1;
}

/* f32, or f64 rounded to the nearest float when it is within float range. */
int lyra_gguf_get_f32(const lyra_gguf *g, const char *key, float *out) {
    double d;
    return lyra_gguf_get_f64(g, key, &d) && f64_to_f32(d, out);
}

int lyra_gguf_get_bool(const lyra_gguf *g, const char *key, int *out) {
    const gguf_kv *kv = lyra_gguf_kv_find(g, key);
    if (!kv || kv->type != LYRA_GGUF_BOOL) return 0;
    *out = kv->val[0] != 0;
    return 1;
}

int lyra_gguf_get_str(const lyra_gguf *g, const char *key, lyra_gguf_str *out) {
    const gguf_kv *kv = lyra_gguf_kv_find(g, key);
    if (!kv || kv->type != LYRA_GGUF_STRING) return 0;
    out->len = le64(kv->val);
    out->ptr = (const char *)kv->val + 8;
    return 1;
}

int lyra_gguf_get_arr(const lyra_gguf *g, const char *key, lyra_gguf_vtype *elem_type, uint64_t *count) {
    const gguf_kv *kv = lyra_gguf_kv_find(g, key);
    if (!kv || kv->type != LYRA_GGUF_ARRAY) return 0;
    if (elem_type) *elem_type = kv->arr_type;
    if (count) *count = kv->arr_count;
    return 1;
}

const void *lyra_gguf_arr_data(const lyra_gguf *g, const char *key) {
    const gguf_kv *kv = lyra_gguf_kv_find(g, key);
    if (!kv || kv->type != LYRA_GGUF_ARRAY || !lyra_gguf_scalar_size(kv->arr_type)) return NULL;
    return kv->arr_data;
}

lyra_gguf_str lyra_gguf_arr_str(const lyra_gguf *g, const char *key, uint64_t i) {
    lyra_gguf_str s = {NULL, 0};
    const gguf_kv *kv = lyra_gguf_kv_find(g, key);
    if (!kv || kv->type != LYRA_GGUF_ARRAY || kv->arr_type != LYRA_GGUF_STRING || i >= kv->arr_count) return s;
    s.len = le64(kv->arr_strs[i]);
    s.ptr = (const char *)kv->arr_strs[i] + 8;
    return s;
}

int lyra_gguf_arr_get_i64(const lyra_gguf *g, const char *key, uint64_t i, int64_t *out) {
    const gguf_kv *kv = lyra_gguf_kv_find(g, key);
    if (!kv || kv->type != LYRA_GGUF_ARRAY || i >= kv->arr_count) return 0;
    size_t sz = lyra_gguf_scalar_size(kv->arr_type);
    if (!sz || kv->arr_type == LYRA_GGUF_BOOL || kv->arr_type == LYRA_GGUF_F32 || kv->arr_type == LYRA_GGUF_F64)
        return 0;
    gguf_kv e = {0}; /* the element as a scalar kv */
    e.type = kv->arr_type;
    e.val = kv->arr_data + i * sz;
    int neg;
    uint64_t mag;
    kv_int(&e, &neg, &mag);
    if (!neg && mag > (uint64_t)INT64_MAX) return 0;
    *out = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
    return 1;
}

int lyra_gguf_arr_get_f32(const lyra_gguf *g, const char *key, uint64_t i, float *out) {
    const gguf_kv *kv = lyra_gguf_kv_find(g, key);
    if (!kv || kv->type != LYRA_GGUF_ARRAY || i >= kv->arr_count) return 0;
    if (kv->arr_type == LYRA_GGUF_F32) {
        uint32_t u = le32(kv->arr_data + i * 4);
        memcpy(out, &u, 4);
        return 1;
    }
    if (kv->arr_type == LYRA_GGUF_F64) {
        uint64_t u = le64(kv->arr_data + i * 8);
        double d;
        memcpy(&d, &u, 8);
        return f64_to_f32(d, out);
    }
    return 0;
}

int64_t lyra_gguf_n_tensors(const lyra_gguf *g) { return g->n_tensors; }
const lyra_gguf_tensor *lyra_gguf_tensor_at(const lyra_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}
const lyra_gguf_tensor *lyra_gguf_find_tensor(const lyra_gguf *g, const char *name) {
    int64_t i = name ? find_name(g->tensor_by_name, g->n_tensors, name) : -1;
    return i < 0 ? NULL : &g->tensors[i];
}
