/* gguf_mem.c: key/values set in memory on a lyra_gguf (lyra_gguf_new_empty,
 * lyra_gguf_set_*). Each value is encoded exactly as in a GGUF file (the
 * bytes after the type id) into its own malloc'd buffer that the gguf_kv
 * points into, so the getters, copy_kv and the writer treat it like a value
 * read from a map. */
#include "format/gguf_impl.h"

#include <stdlib.h>
#include <string.h>

lyra_gguf *lyra_gguf_new_empty(const char *name) {
    lyra_gguf *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->parts = calloc(1, sizeof *g->parts);
    if (!g->parts || !(g->parts[0].path = strdup(name ? name : "<memory>"))) {
        free(g->parts);
        free(g);
        return NULL;
    }
    g->n_parts = 1;
    g->parts[0].version = 3;
    g->parts[0].alignment = LYRA_GGUF_DEFAULT_ALIGNMENT;
    return g;
}

static void put_le(uint8_t *p, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* The bits of one scalar of type at v, as an integer to write LE. */
static uint64_t scalar_bits(lyra_gguf_vtype type, const void *v) {
    switch (type) {
    case LYRA_GGUF_U8: case LYRA_GGUF_BOOL: return *(const uint8_t *)v;
    case LYRA_GGUF_I8: return (uint8_t)*(const int8_t *)v;
    case LYRA_GGUF_U16: return *(const uint16_t *)v;
    case LYRA_GGUF_I16: return (uint16_t)*(const int16_t *)v;
    case LYRA_GGUF_U32: return *(const uint32_t *)v;
    case LYRA_GGUF_I32: return (uint32_t)*(const int32_t *)v;
    case LYRA_GGUF_U64: return *(const uint64_t *)v;
    case LYRA_GGUF_I64: return (uint64_t)*(const int64_t *)v;
    case LYRA_GGUF_F32: { uint32_t u; memcpy(&u, v, 4); return u; }
    case LYRA_GGUF_F64: { uint64_t u; memcpy(&u, v, 8); return u; }
    default: return 0;
    }
}

static int cmp_kv_name(const void *a, const void *b) {
    const gguf_name_idx *x = a, *y = b;
    return strcmp(x->name, y->name);
}

/* Install kv (its key, type and encoded value set; key and owned are taken)
 * under its key: replacing an existing one or appended. */
static int install(lyra_gguf *g, gguf_kv *kv, lyra_error *err) {
    gguf_part *pt = &g->parts[0];
    int64_t i = lyra_gguf_find_key(g, kv->key);
    if (i >= 0) {
        gguf_kv *old = &pt->kv[i];
        free(old->arr_strs);
        free(old->owned);
        free(kv->key);
        kv->key = old->key; /* kv_by_name points at it */
        *old = *kv;
        return LYRA_OK;
    }
    gguf_kv *nk = realloc(pt->kv, ((size_t)pt->n_kv + 1) * sizeof *nk);
    if (nk) pt->kv = nk;
    gguf_name_idx *ni = nk ? realloc(pt->kv_by_name, ((size_t)pt->n_kv + 1) * sizeof *ni) : NULL;
    if (!ni) {
        free(kv->key);
        free(kv->arr_strs);
        free(kv->owned);
        return lyra_err(err, LYRA_ERR_OOM, pt->path, "out of memory setting metadata");
    }
    pt->kv_by_name = ni;
    pt->kv[pt->n_kv] = *kv;
    pt->kv_by_name[pt->n_kv] = (gguf_name_idx){pt->kv[pt->n_kv].key, pt->n_kv};
    pt->n_kv++;
    qsort(pt->kv_by_name, (size_t)pt->n_kv, sizeof *ni, cmp_kv_name);
    return LYRA_OK;
}

/* A new kv for key with an owned buffer of n bytes, or an error. */
static int begin(lyra_gguf *g, const char *key, lyra_gguf_vtype type, uint64_t n, gguf_kv *kv,
                 lyra_error *err) {
    memset(kv, 0, sizeof *kv);
    size_t kl = key ? strlen(key) : 0;
    if (kl == 0 || kl > LYRA_GGUF_MAX_KEY)
        return lyra_err(err, LYRA_ERR_INPUT, g->parts[0].path, "metadata key '%.64s' is empty or too long",
                        key ? key : "");
    if (n > SIZE_MAX / 2) return lyra_err(err, LYRA_ERR_OOM, g->parts[0].path, "%s: value too large", key);
    kv->key = strdup(key);
    kv->owned = malloc(n ? (size_t)n : 1);
    if (!kv->key || !kv->owned) {
        free(kv->key);
        free(kv->owned);
        return lyra_err(err, LYRA_ERR_OOM, g->parts[0].path, "out of memory setting %s", key);
    }
    kv->type = type;
    kv->arr_type = LYRA_GGUF_NONE;
    kv->val = kv->owned;
    kv->val_bytes = n;
    return LYRA_OK;
}

int lyra_gguf_set_val(lyra_gguf *g, const char *key, lyra_gguf_vtype type, const void *v,
                      lyra_error *err) {
    size_t sz = lyra_gguf_scalar_size((uint32_t)type);
    if (!sz) return lyra_err(err, LYRA_ERR_INPUT, g->parts[0].path, "%s: not a scalar type", key ? key : "");
    gguf_kv kv;
    int rc = begin(g, key, type, sz, &kv, err);
    if (rc) return rc;
    uint64_t bits = scalar_bits(type, v);
    if (type == LYRA_GGUF_BOOL) bits = bits != 0;
    put_le(kv.owned, bits, sz);
    return install(g, &kv, err);
}

int lyra_gguf_set_str(lyra_gguf *g, const char *key, const char *s, size_t len, lyra_error *err) {
    gguf_kv kv;
    int rc = begin(g, key, LYRA_GGUF_STRING, 8 + (uint64_t)len, &kv, err);
    if (rc) return rc;
    put_le(kv.owned, len, 8);
    if (len) memcpy(kv.owned + 8, s, len);
    return install(g, &kv, err);
}

int lyra_gguf_set_arr(lyra_gguf *g, const char *key, lyra_gguf_vtype elem_type, const void *data,
                      uint64_t count, lyra_error *err) {
    size_t sz = lyra_gguf_scalar_size((uint32_t)elem_type);
    if (!sz) return lyra_err(err, LYRA_ERR_INPUT, g->parts[0].path, "%s: not a numeric element type", key ? key : "");
    if (count > (SIZE_MAX / 2) / sz) return lyra_err(err, LYRA_ERR_OOM, g->parts[0].path, "%s: too many elements", key);
    gguf_kv kv;
    int rc = begin(g, key, LYRA_GGUF_ARRAY, 12 + count * sz, &kv, err);
    if (rc) return rc;
    put_le(kv.owned, (uint32_t)elem_type, 4);
    put_le(kv.owned + 4, count, 8);
    const uint8_t *src = data;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t bits = scalar_bits(elem_type, src + i * sz);
        if (elem_type == LYRA_GGUF_BOOL) bits = bits != 0;
        put_le(kv.owned + 12 + i * sz, bits, sz);
    }
    kv.arr_type = elem_type;
    kv.arr_count = count;
    kv.arr_data = kv.owned + 12;
    return install(g, &kv, err);
}

int lyra_gguf_set_arr_str(lyra_gguf *g, const char *key, const char *const *v, const uint64_t *lens,
                          uint64_t count, lyra_error *err) {
    uint64_t n = 12;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t l = lens ? lens[i] : strlen(v[i]);
        if (l > SIZE_MAX / 4 || n > SIZE_MAX / 4) return lyra_err(err, LYRA_ERR_OOM, g->parts[0].path, "%s: too large", key);
        n += 8 + l;
    }
    gguf_kv kv;
    int rc = begin(g, key, LYRA_GGUF_ARRAY, n, &kv, err);
    if (rc) return rc;
    kv.arr_strs = malloc(count ? (size_t)count * sizeof *kv.arr_strs : 1);
    if (!kv.arr_strs) {
        free(kv.key);
        free(kv.owned);
        return lyra_err(err, LYRA_ERR_OOM, g->parts[0].path, "out of memory setting %s", key);
    }
    put_le(kv.owned, LYRA_GGUF_STRING, 4);
    put_le(kv.owned + 4, count, 8);
    uint8_t *p = kv.owned + 12;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t l = lens ? lens[i] : strlen(v[i]);
        kv.arr_strs[i] = p;
        put_le(p, l, 8);
        if (l) memcpy(p + 8, v[i], (size_t)l);
        p += 8 + l;
    }
    kv.arr_type = LYRA_GGUF_STRING;
    kv.arr_count = count;
    kv.arr_data = kv.owned + 12;
    return install(g, &kv, err);
}

void lyra_gguf_unset(lyra_gguf *g, const char *key) {
    gguf_part *pt = &g->parts[0];
    int64_t i = lyra_gguf_find_key(g, key);
    if (i < 0) return;
    free(pt->kv[i].key);
    free(pt->kv[i].arr_strs);
    free(pt->kv[i].owned);
    memmove(&pt->kv[i], &pt->kv[i + 1], (size_t)(pt->n_kv - i - 1) * sizeof *pt->kv);
    pt->n_kv--;
    for (int64_t k = 0; k < pt->n_kv; k++) pt->kv_by_name[k] = (gguf_name_idx){pt->kv[k].key, k};
    qsort(pt->kv_by_name, (size_t)pt->n_kv, sizeof *pt->kv_by_name, cmp_kv_name);
}
