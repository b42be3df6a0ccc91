/* session.c: session files (session.h, docs/sessions.md): writing a
 * sequence's tokens, KV cache, sampler state and conversation, reading
 * them back after checking every byte. All numbers are little-endian. */
#include "gen/session.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/afile.h"
#include "gen/sampler.h"
#include "runtime/kvstate.h"

#define MAGIC "LYRASESS"
#define CONV_MAGIC "LYRACONV"
#define FIXED_BYTES 128u   /* the header before the layer table */
#define LAYER_BYTES 16u    /* one entry of the layer table */
#define MAX_LAYERS 65536
#define MAX_CTX (1 << 26)
#define FLUSH_BYTES (64u << 10) /* file writes go out in pieces of this size */

/* ------------------------------------------------------------------ crc32 */

typedef struct crc32 {
    uint32_t table[256];
    uint32_t v; /* running value (pre-inverted) */
} crc32;

static void crc_init(crc32 *c) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t x = i;
        for (int k = 0; k < 8; k++) x = x & 1 ? (x >> 1) ^ 0xedb88320u : x >> 1;
        c->table[i] = x;
    }
    c->v = 0xffffffffu;
}

static void crc_add(crc32 *c, const void *p, size_t n) {
    const unsigned char *b = p;
    uint32_t v = c->v;
    for (size_t i = 0; i < n; i++) v = c->table[(v ^ b[i]) & 0xff] ^ (v >> 8);
    c->v = v;
}

static uint32_t crc_take(crc32 *c) {
    uint32_t r = c->v ^ 0xffffffffu;
    c->v = 0xffffffffu;
    return r;
}

/* ------------------------------------------------------ little-endian bytes */

static void le32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void le64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static int32_t rdi32(const unsigned char *p) { return (int32_t)rd32(p); }

int32_t lyra_session_token(const lyra_session_view *v, int32_t i) { return rdi32(v->tokens + 4 * (size_t)i); }

/* ----------------------------------------------------------------- writer */

/* Bytes going to a file (buffered, atomic) or to memory, with the crc of
 * the current section. */
typedef struct writer {
    lyra_afile *f;        /* NULL: memory */
    unsigned char *buf;   /* pending bytes (file) or everything (memory) */
    size_t len, cap;
    crc32 crc;
    lyra_error *err;
} writer;

static int w_flush(writer *w) {
    if (!w->f || !w->len) return LYRA_OK;
    int rc = lyra_afile_write(w->f, w->buf, w->len, w->err);
    w->len = 0;
    return rc;
}

static int w_put(writer *w, const void *p, size_t n) {
    crc_add(&w->crc, p, n);
    const unsigned char *b = p;
    while (n > 0) {
        if (w->len == w->cap) {
            int rc = w->f ? w_flush(w) : LYRA_OK;
            if (rc) return rc;
            if (w->len == w->cap) { /* memory: grow */
                size_t cap = w->cap ? 2 * w->cap : FLUSH_BYTES;
                unsigned char *nb = realloc(w->buf, cap);
                if (!nb) return lyra_err(w->err, LYRA_ERR_OOM, "session", "out of memory");
                w->buf = nb;
                w->cap = cap;
            }
        }
        size_t k = w->cap - w->len < n ? w->cap - w->len : n;
        memcpy(w->buf + w->len, b, k);
        w->len += k;
        b += k;
        n -= k;
    }
    return LYRA_OK;
}

/* End a section: its crc. */
static int w_crc(writer *w) {
    unsigned char b[4];
    le32(b, crc_take(&w->crc));
    int rc = w_put(w, b, 4);
    crc_take(&w->crc);
    return rc;
}

/* The sampler section's bytes for smp (*n 0: none). */
static unsigned char *sampler_bytes(const lyra_sampler *smp, size_t *n) {
    *n = 0;
    if (!smp) return NULL;
    int32_t cap = lyra_sampler_window_cap(smp);
    int32_t *win = malloc(sizeof *win * (size_t)(cap > 0 ? cap : 1));
    unsigned char *b = win ? malloc(40 + 4 * (size_t)cap) : NULL;
    if (!b) {
        free(win);
        return NULL;
    }
    lyra_sampler_state st;
    lyra_sampler_state_get(smp, &st, win, cap);
    for (int i = 0; i < 4; i++) le64(b + 8 * i, st.rng[i]);
    le32(b + 32, (uint32_t)st.n_window);
    le32(b + 36, 0);
    for (int32_t i = 0; i < st.n_window; i++) le32(b + 40 + 4 * (size_t)i, (uint32_t)st.window[i]);
    *n = 40 + 4 * (size_t)st.n_window;
    free(win);
    return b;
}

int lyra_session_write_seq(lyra_context *c, int32_t seq, const int32_t *tokens, int32_t n, const lyra_sampler *smp,
                       const void *app, size_t app_len, const char *path, void **buf, size_t *len,
                       lyra_error *err) {
    const char *name = path ? path : "session";
    lyra_kv_layout g;
    lyra_kv_state_layout(c, seq, &g);
    if (buf) *buf = NULL;
    if (len) *len = 0;
    if (n != g.pos)
        return lyra_err(err, LYRA_ERR_INPUT, name, "%d tokens given, but the KV cache holds %d", (int)n, (int)g.pos);
    if (n > 0 && !tokens) return lyra_err(err, LYRA_ERR_INPUT, name, "tokens is NULL");
    int nl = g.n_layer;
    size_t smp_n = 0;
    unsigned char *smp_b = sampler_bytes(smp, &smp_n);
    size_t hdr_n = FIXED_BYTES + LAYER_BYTES * (size_t)nl + 4;
    unsigned char *hdr = calloc(1, hdr_n);
    void *rows = malloc(g.chunk_bytes), *tmp = malloc(g.chunk_bytes);
    if ((smp && !smp_b) || !hdr || !rows || !tmp) {
        free(smp_b);
        free(hdr);
        free(rows);
        free(tmp);
        return lyra_err(err, LYRA_ERR_OOM, name, "out of memory");
    }
    /* the header */
    uint64_t kv_total = 0;
    for (int l = 0; l < nl; l++) {
        int32_t k = lyra_kv_state_chunks(c, seq, l);
        unsigned char *e = hdr + FIXED_BYTES + LAYER_BYTES * (size_t)l;
        le32(e, (uint32_t)g.width);
        le32(e + 4, (uint32_t)lyra_kv_state_ring(c, seq, l));
        le32(e + 8, (uint32_t)k);
        kv_total += (uint64_t)k * g.chunk_bytes;
    }
    uint64_t total = hdr_n + (4 * (uint64_t)n + 4) + (smp_n ? smp_n + 4 : 0) + (app_len + 4) + kv_total +
                     4 * (uint64_t)nl;
    memcpy(hdr, MAGIC, 8);
    le32(hdr + 8, LYRA_SESSION_VERSION);
    le32(hdr + 12, (uint32_t)hdr_n);
    le64(hdr + 16, total);
    le64(hdr + 24, g.fingerprint);
    le32(hdr + 32, (uint32_t)g.kv_type);
    le32(hdr + 36, (uint32_t)g.n_ctx);
    le32(hdr + 40, (uint32_t)g.kv_chunk);
    le32(hdr + 44, (uint32_t)nl);
    le32(hdr + 48, (uint32_t)g.n_vocab);
    le32(hdr + 52, (uint32_t)g.pos);
    le32(hdr + 56, (uint32_t)g.top);
    le32(hdr + 60, (uint32_t)n);
    le64(hdr + 64, g.chunk_bytes);
    le32(hdr + 72, (uint32_t)smp_n);
    le64(hdr + 80, app_len);
    le64(hdr + 88, kv_total);
    lyra_afile f;
    writer w = {0};
    w.err = err;
    crc_init(&w.crc);
    int rc = LYRA_OK;
    if (path) {
        w.f = &f;
        w.cap = FLUSH_BYTES;
        w.buf = malloc(w.cap);
        if (!w.buf) rc = lyra_err(err, LYRA_ERR_OOM, name, "out of memory");
        if (!rc) rc = lyra_afile_open(&f, path, lyra_kv_state_fail_io(c), err);
        if (rc) w.f = NULL; /* nothing to abort */
    }
    if (!rc) rc = w_put(&w, hdr, hdr_n - 4);
    if (!rc) rc = w_crc(&w);
    for (int32_t i = 0; !rc && i < n; i++) {
        unsigned char b[4];
        le32(b, (uint32_t)tokens[i]);
        rc = w_put(&w, b, 4);
    }
    if (!rc) rc = w_crc(&w);
    if (!rc && smp_n) rc = w_put(&w, smp_b, smp_n);
    if (!rc && smp_n) rc = w_crc(&w);
    if (!rc && app_len) rc = w_put(&w, app, app_len);
    if (!rc) rc = w_crc(&w);
    for (int l = 0; !rc && l < nl; l++) {
        int32_t k = lyra_kv_state_chunks(c, seq, l);
        for (int32_t j = 0; !rc && j < k; j++) {
            rc = lyra_kv_state_get(c, seq, l, j, rows, tmp, err);
            if (!rc) rc = w_put(&w, rows, (size_t)g.chunk_bytes);
        }
        if (!rc) rc = w_crc(&w);
    }
    if (!rc && path) rc = w_flush(&w);
    if (!rc && path) rc = lyra_afile_commit(&f, err);
    else if (rc && w.f) lyra_afile_abort(&f);
    if (!rc && !path) {
        *buf = w.buf;
        *len = w.len;
        w.buf = NULL;
    }
    free(w.buf);
    free(smp_b);
    free(hdr);
    free(rows);
    free(tmp);
    return rc;
}

int lyra_session_write(lyra_context *c, const int32_t *tokens, int32_t n, const lyra_sampler *smp,
                       const void *app, size_t app_len, const char *path, void **buf, size_t *len,
                       lyra_error *err) {
    return lyra_session_write_seq(c, 0, tokens, n, smp, app, app_len, path, buf, len, err);
}

/* ----------------------------------------------------------------- reader */

/* A section of n bytes at *off followed by its crc: bounds and checksum. */
static int section(const unsigned char *b, size_t len, uint64_t *off, uint64_t n, const char *name,
                   const char *what, crc32 *crc, lyra_error *err) {
    if (n > len || *off > len - n || len - n - *off < 4)
        return lyra_err(err, LYRA_ERR_INPUT, name, "truncated in %s (%zu bytes)", what, len);
    if (!crc) { /* not checked */
        *off += n + 4;
        return LYRA_OK;
    }
    crc_add(crc, b + *off, (size_t)n);
    uint32_t want = rd32(b + *off + n), got = crc_take(crc);
    if (want != got)
        return lyra_err(err, LYRA_ERR_INPUT, name, "checksum mismatch in %s: the file is corrupted", what);
    *off += n + 4;
    return LYRA_OK;
}

int lyra_session_parse(const void *buf, size_t len, const char *name, lyra_session_view *v, lyra_error *err) {
    return lyra_session_parse_ex(buf, len, name, 1, v, err);
}

int lyra_session_parse_ex(const void *buf, size_t len, const char *name, int check_crc, lyra_session_view *v,
                          lyra_error *err) {
    const unsigned char *b = buf;
    memset(v, 0, sizeof *v);
    if (len < 16 || memcmp(b, MAGIC, 8)) {
        if (len >= 8 && !memcmp(b, MAGIC, 8))
            return lyra_err(err, LYRA_ERR_INPUT, name, "truncated: %zu bytes, not even a header", len);
        return lyra_err(err, LYRA_ERR_INPUT, name, "not a lyra session file (no LYRASESS magic)");
    }
    v->version = rd32(b + 8);
    if (v->version > LYRA_SESSION_VERSION)
        return lyra_err(err, LYRA_ERR_INPUT, name,
                        "format version %u is newer than this lyra reads (%d): use a newer lyra", v->version,
                        LYRA_SESSION_VERSION);
    if (v->version < 1) return lyra_err(err, LYRA_ERR_INPUT, name, "bad format version 0: the file is corrupted");
    uint64_t hdr_n = rd32(b + 12);
    if (len < FIXED_BYTES + 4 || len < hdr_n)
        return lyra_err(err, LYRA_ERR_INPUT, name, "truncated: %zu bytes, the header alone is %llu", len,
                        (unsigned long long)(hdr_n > FIXED_BYTES + 4 ? hdr_n : FIXED_BYTES + 4));
    if (hdr_n < FIXED_BYTES + 4 || (hdr_n - FIXED_BYTES - 4) % LAYER_BYTES)
        return lyra_err(err, LYRA_ERR_INPUT, name, "bad header size %llu: the file is corrupted",
                        (unsigned long long)hdr_n);
    crc32 crc_state, *crc = check_crc ? &crc_state : NULL;
    crc_init(&crc_state);
    uint64_t off = 0;
    int rc = section(b, len, &off, hdr_n - 4, name, "the header", crc, err);
    if (rc) return rc;
    uint64_t total = rd64(b + 16);
    if (total != len)
        return lyra_err(err, LYRA_ERR_INPUT, name, "%s: %zu bytes, the header says %llu",
                        len < total ? "truncated" : "trailing bytes", len, (unsigned long long)total);
    v->fingerprint = rd64(b + 24);
    v->kv_type = rdi32(b + 32);
    v->n_ctx = rdi32(b + 36);
    v->kv_chunk = rdi32(b + 40);
    v->n_layer = rdi32(b + 44);
    v->n_vocab = rdi32(b + 48);
    v->pos = rdi32(b + 52);
    v->top = rdi32(b + 56);
    v->n_tokens = rdi32(b + 60);
    v->chunk_bytes = rd64(b + 64);
    uint64_t smp_n = rd32(b + 72), app_n = rd64(b + 80), kv_total = rd64(b + 88);
    if (v->kv_type != LYRA_KV_F16 && v->kv_type != LYRA_KV_F32)
        return lyra_err(err, LYRA_ERR_INPUT, name, "bad KV type %d: the file is corrupted", (int)v->kv_type);
    if (v->n_ctx < 1 || v->n_ctx > MAX_CTX || v->kv_chunk < 1 || v->kv_chunk > v->n_ctx * 2 || v->n_layer < 1 ||
        v->n_layer > MAX_LAYERS || (uint64_t)v->n_layer != (hdr_n - FIXED_BYTES - 4) / LAYER_BYTES ||
        v->n_vocab < 1 || v->pos < 0 || v->pos > v->n_ctx || v->top < v->pos || v->top > v->n_ctx ||
        v->n_tokens != v->pos || v->chunk_bytes == 0 || v->chunk_bytes > ((uint64_t)1 << 40))
        return lyra_err(err, LYRA_ERR_INPUT, name, "inconsistent header: the file is corrupted");
    v->layer_table = b + FIXED_BYTES;
    uint64_t sum = 0, esz = v->kv_type == LYRA_KV_F32 ? 4 : 2;
    int32_t max_chunks = (v->n_ctx + v->kv_chunk - 1) / v->kv_chunk;
    for (int l = 0; l < v->n_layer; l++) {
        const unsigned char *e = v->layer_table + LAYER_BYTES * (size_t)l;
        int32_t dim = rdi32(e), ring = rdi32(e + 4), nk = rdi32(e + 8);
        int32_t want = ring > 0 ? (v->top + v->kv_chunk - 1) / v->kv_chunk : (v->pos + v->kv_chunk - 1) / v->kv_chunk;
        if (ring > 0 && want > ring) want = ring;
        if (dim < 1 || ring < 0 || ring > max_chunks || nk != want ||
            2 * (uint64_t)v->kv_chunk * (uint64_t)dim * esz != v->chunk_bytes)
            return lyra_err(err, LYRA_ERR_INPUT, name, "inconsistent layer %d in the header: the file is corrupted", l);
        sum += (uint64_t)nk * v->chunk_bytes;
    }
    if (sum != kv_total) return lyra_err(err, LYRA_ERR_INPUT, name, "inconsistent header: the file is corrupted");
    v->tokens = b + off;
    if ((rc = section(b, len, &off, 4 * (uint64_t)v->n_tokens, name, "the tokens", crc, err))) return rc;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        int32_t t = lyra_session_token(v, i);
        if (t < 0 || t >= v->n_vocab)
            return lyra_err(err, LYRA_ERR_INPUT, name, "token %d (at %d) is not in the vocabulary of %d", (int)t,
                            (int)i, (int)v->n_vocab);
    }
    if (smp_n) {
        const unsigned char *s = b + off;
        if ((rc = section(b, len, &off, smp_n, name, "the sampler state", crc, err))) return rc;
        if (smp_n < 40 || (uint64_t)rdi32(s + 32) != (smp_n - 40) / 4 || (smp_n - 40) % 4)
            return lyra_err(err, LYRA_ERR_INPUT, name, "inconsistent sampler state: the file is corrupted");
        v->has_sampler = 1;
        for (int i = 0; i < 4; i++) v->rng[i] = rd64(s + 8 * i);
        v->n_window = rdi32(s + 32);
        v->window = s + 40;
    }
    v->app = b + off;
    v->app_bytes = app_n;
    if ((rc = section(b, len, &off, app_n, name, "the conversation", crc, err))) return rc;
    v->kv = b + off;
    for (int l = 0; l < v->n_layer; l++) {
        char what[64];
        snprintf(what, sizeof what, "the KV cache of layer %d", l);
        uint64_t nk = (uint64_t)rdi32(v->layer_table + LAYER_BYTES * (size_t)l + 8);
        if ((rc = section(b, len, &off, nk * v->chunk_bytes, name, what, crc, err))) return rc;
    }
    if (off != len) return lyra_err(err, LYRA_ERR_INPUT, name, "inconsistent sizes: the file is corrupted");
    return LYRA_OK;
}

static const char *kv_name(int t) { return t == LYRA_KV_F32 ? "f32" : "f16"; }

int lyra_session_check(const lyra_context *c, const lyra_session_view *v, const char *name, lyra_error *err) {
    lyra_kv_layout g;
    lyra_kv_state_layout(c, 0, &g);
    if (v->fingerprint != g.fingerprint)
        return lyra_err(err, LYRA_ERR_INPUT, name,
                        "saved for another model (fingerprint %016llx, this model's %016llx)",
                        (unsigned long long)v->fingerprint, (unsigned long long)g.fingerprint);
    if (v->kv_type != g.kv_type)
        return lyra_err(err, LYRA_ERR_INPUT, name, "KV type %s, this context's is %s", kv_name(v->kv_type),
                        kv_name(g.kv_type));
    if (v->n_ctx != g.n_ctx)
        return lyra_err(err, LYRA_ERR_INPUT, name, "saved with a context of %d positions, this one has %d",
                        (int)v->n_ctx, (int)g.n_ctx);
    if (v->kv_chunk != g.kv_chunk)
        return lyra_err(err, LYRA_ERR_INPUT, name, "saved with KV chunks of %d positions, this context's are %d",
                        (int)v->kv_chunk, (int)g.kv_chunk);
    if (v->n_layer != g.n_layer || v->n_vocab != g.n_vocab || v->chunk_bytes != g.chunk_bytes)
        return lyra_err(err, LYRA_ERR_INPUT, name, "saved for %d layers and %d tokens, this model has %d and %d",
                        (int)v->n_layer, (int)v->n_vocab, (int)g.n_layer, (int)g.n_vocab);
    for (int l = 0; l < v->n_layer; l++) {
        const unsigned char *e = v->layer_table + LAYER_BYTES * (size_t)l;
        if (rdi32(e) != g.width)
            return lyra_err(err, LYRA_ERR_INPUT, name, "layer %d: KV width %d, this model's %d", l, (int)rdi32(e),
                            (int)g.width);
        if (rdi32(e + 4) != lyra_kv_state_ring(c, 0, l))
            return lyra_err(err, LYRA_ERR_INPUT, name,
                            "layer %d: a sliding-window ring of %d chunks, this context's has %d (another n_batch?)",
                            l, (int)rdi32(e + 4), (int)lyra_kv_state_ring(c, 0, l));
    }
    return LYRA_OK;
}

int lyra_session_apply_seq(lyra_context *c, int32_t seq, lyra_sampler *smp, const lyra_session_view *v, lyra_error *err) {
    size_t cb = (size_t)v->chunk_bytes; /* = the context's (lyra_session_check) */
    void *rows = malloc(cb), *tmp = malloc(cb);
    int rc = rows && tmp ? LYRA_OK : lyra_err(err, LYRA_ERR_OOM, "session", "out of memory");
    if (!rc) rc = lyra_kv_state_begin(c, seq, v->top, err);
    const unsigned char *p = v->kv;
    for (int l = 0; !rc && l < v->n_layer; l++) {
        int32_t nk = rdi32(v->layer_table + LAYER_BYTES * (size_t)l + 8);
        for (int32_t k = 0; !rc && k < nk; k++, p += cb) {
            memcpy(rows, p, cb); /* aligned, and kv_from_rows may want it writable */
            rc = lyra_kv_state_put(c, seq, l, k, rows, tmp, err);
        }
        p += 4;
    }
    free(rows);
    free(tmp);
    if (rc) {
        lyra_kv_state_end(c, seq, 0, 0);
        return rc;
    }
    lyra_kv_state_end(c, seq, v->pos, v->top);
    if (smp && v->has_sampler) {
        int32_t *win = malloc(sizeof *win * (size_t)(v->n_window > 0 ? v->n_window : 1));
        if (!win) return lyra_err(err, LYRA_ERR_OOM, "session", "out of memory");
        for (int32_t i = 0; i < v->n_window; i++) win[i] = rdi32(v->window + 4 * (size_t)i);
        lyra_sampler_state st;
        memcpy(st.rng, v->rng, sizeof st.rng);
        st.n_window = v->n_window;
        st.window = win;
        lyra_sampler_state_set(smp, &st);
        free(win);
    }
    return LYRA_OK;
}

int lyra_session_apply(lyra_context *c, lyra_sampler *smp, const lyra_session_view *v, lyra_error *err) {
    return lyra_session_apply_seq(c, 0, smp, v, err);
}

uint64_t lyra_session_fingerprint(const lyra_model *m) { return lyra_kv_state_fingerprint(m); }

int lyra_session_map(const char *path, void **map, size_t *len, lyra_error *err) {
    *map = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lyra_err(err, errno == ENOENT ? LYRA_ERR_INPUT : LYRA_ERR_RUNTIME, path, "cannot open: %s",
                        strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return lyra_err(err, LYRA_ERR_INPUT, path, "not a regular file");
    }
    if (st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            return lyra_err(err, LYRA_ERR_RUNTIME, path, "cannot map: %s", strerror(e));
        }
        *map = m;
        *len = (size_t)st.st_size;
    }
    close(fd);
    return LYRA_OK;
}

void lyra_session_unmap(void *map, size_t len) {
    if (map) munmap(map, len);
}

/* ---------------------------------------------------------- conversation */

static int put_str(writer *w, const char *s) {
    unsigned char b[4];
    size_t n = s ? strlen(s) : 0;
    le32(b, s ? (uint32_t)n : 0xffffffffu);
    int rc = w_put(w, b, 4);
    return rc || !n ? rc : w_put(w, s, n);
}

int lyra_session_conv_encode(const char *system, char *const *user, char *const *reply, int n_turns,
                             void **out, size_t *len, lyra_error *err) {
    writer w = {0};
    w.err = err;
    crc_init(&w.crc);
    unsigned char h[16];
    memcpy(h, CONV_MAGIC, 8);
    le32(h + 8, 1);
    le32(h + 12, (uint32_t)n_turns);
    int rc = w_put(&w, h, sizeof h);
    if (!rc) rc = put_str(&w, system);
    for (int i = 0; !rc && i < n_turns; i++) {
        rc = put_str(&w, user[i]);
        if (!rc) rc = put_str(&w, reply[i]);
    }
    if (rc) {
        free(w.buf);
        return rc;
    }
    *out = w.buf;
    *len = w.len;
    return LYRA_OK;
}

void lyra_session_conv_free(lyra_session_conv *cv) {
    for (int i = 0; i < cv->n_turns; i++) {
        if (cv->user) free(cv->user[i]);
        if (cv->reply) free(cv->reply[i]);
    }
    free(cv->user);
    free(cv->reply);
    free(cv->system);
    memset(cv, 0, sizeof *cv);
}

/* A string at *off (NULL allowed when null_ok); *s malloc'd. */
static int get_str(const unsigned char *b, size_t len, size_t *off, const char *name, int null_ok, char **s,
                   lyra_error *err) {
    *s = NULL;
    if (len - *off < 4) return lyra_err(err, LYRA_ERR_INPUT, name, "the conversation is cut short");
    uint32_t n = rd32(b + *off);
    *off += 4;
    if (n == 0xffffffffu) {
        if (!null_ok) return lyra_err(err, LYRA_ERR_INPUT, name, "a message of the conversation is missing");
        return LYRA_OK;
    }
    if (n > len - *off) return lyra_err(err, LYRA_ERR_INPUT, name, "the conversation is cut short");
    if (memchr(b + *off, 0, n)) return lyra_err(err, LYRA_ERR_INPUT, name, "a message holds a NUL byte");
    *s = malloc((size_t)n + 1);
    if (!*s) return lyra_err(err, LYRA_ERR_OOM, name, "out of memory");
    memcpy(*s, b + *off, n);
    (*s)[n] = '\0';
    *off += n;
    return LYRA_OK;
}

int lyra_session_conv_decode(const void *buf, size_t len, const char *name, lyra_session_conv *cv,
                             lyra_error *err) {
    const unsigned char *b = buf;
    memset(cv, 0, sizeof *cv);
    if (len == 0) return LYRA_OK; /* none: a session of lyra_session_save */
    if (len < 16 || memcmp(b, CONV_MAGIC, 8) || rd32(b + 8) != 1)
        return lyra_err(err, LYRA_ERR_INPUT, name, "the conversation is not in a format this lyra reads");
    uint32_t n = rd32(b + 12);
    if (n > (len - 16) / 8) return lyra_err(err, LYRA_ERR_INPUT, name, "the conversation is cut short");
    size_t off = 16;
    int rc = get_str(b, len, &off, name, 1, &cv->system, err);
    if (rc) return rc;
    cv->user = calloc(n ? n : 1, sizeof *cv->user);
    cv->reply = calloc(n ? n : 1, sizeof *cv->reply);
    if (!cv->user || !cv->reply) {
        lyra_session_conv_free(cv);
        return lyra_err(err, LYRA_ERR_OOM, name, "out of memory");
    }
    cv->n_turns = (int)n;
    for (uint32_t i = 0; !rc && i < n; i++) {
        rc = get_str(b, len, &off, name, 0, &cv->user[i], err);
        if (!rc) rc = get_str(b, len, &off, name, i + 1 == n, &cv->reply[i], err);
    }
    if (!rc && off != len) rc = lyra_err(err, LYRA_ERR_INPUT, name, "trailing bytes after the conversation");
    if (rc) lyra_session_conv_free(cv);
    return rc;
}

/* ------------------------------------------------------------ chat session */

int lyra_chat_session_save(lyra_chat_session *cs, const char *path, void **buf, size_t *len, lyra_error *err) {
    void *app = NULL;
    size_t app_len = 0;
    int rc = lyra_session_conv_encode(cs->system, cs->user, cs->reply, cs->n_turns, &app, &app_len, err);
    if (!rc) rc = lyra_session_write(cs->ctx, cs->kv, cs->n_kv, cs->s, app, app_len, path, buf, len, err);
    free(app);
    return rc;
}

int lyra_chat_session_load(lyra_chat_session *cs, const void *buf, size_t len, const char *name, char **system,
                           lyra_error *err) {
    *system = NULL;
    lyra_session_view v;
    lyra_session_conv cv;
    int rc = lyra_session_parse(buf, len, name, &v, err);
    if (!rc) rc = lyra_session_check(cs->ctx, &v, name, err);
    if (!rc && v.n_tokens > cs->n_ctx)
        rc = lyra_err(err, LYRA_ERR_INPUT, name, "%d tokens do not fit the context of %d", (int)v.n_tokens,
                      (int)cs->n_ctx);
    if (rc) return rc;
    if ((rc = lyra_session_conv_decode(v.app, (size_t)v.app_bytes, name, &cv, err))) return rc;
    /* the turns: room first, so that nothing fails after the cache changed */
    int need = cv.n_turns;
    if (need > cs->cap_turns) {
        char **u = realloc(cs->user, sizeof *u * (size_t)need);
        if (u) cs->user = u;
        char **r = u ? realloc(cs->reply, sizeof *r * (size_t)need) : NULL;
        if (r) cs->reply = r;
        if (!r) {
            lyra_session_conv_free(&cv);
            return lyra_err(err, LYRA_ERR_OOM, name, "out of memory");
        }
        cs->cap_turns = need;
    }
    rc = lyra_session_apply(cs->ctx, cs->s, &v, err);
    if (cs->n_turns) lyra_chat_session_drop(cs, cs->n_turns);
    if (rc) {
        cs->n_kv = 0;
        lyra_session_conv_free(&cv);
        return rc;
    }
    for (int32_t i = 0; i < v.n_tokens; i++) cs->kv[i] = lyra_session_token(&v, i);
    cs->n_kv = v.n_tokens;
    for (int i = 0; i < cv.n_turns; i++) {
        cs->user[i] = cv.user[i];
        cs->reply[i] = cv.reply[i];
    }
    cs->n_turns = cv.n_turns;
    *system = cv.system;
    free(cv.user);
    free(cv.reply);
    return LYRA_OK;
}

/* ------------------------------------------------------------- lyra.h */

int lyra_session_save(lyra_context *ctx, const int32_t *tokens, int32_t n_tokens, const lyra_sampler *smp,
                      const char *path, lyra_error *err) {
    if (!ctx || !path) return lyra_err(err, LYRA_ERR_INPUT, "lyra_session_save", "ctx or path is NULL");
    return lyra_session_write(ctx, tokens, n_tokens, smp, NULL, 0, path, NULL, NULL, err);
}

int lyra_session_load(lyra_context *ctx, lyra_sampler *smp, const char *path, int32_t **tokens,
                      int32_t *n_tokens, lyra_error *err) {
    if (tokens) *tokens = NULL;
    if (n_tokens) *n_tokens = 0;
    if (!ctx || !path) return lyra_err(err, LYRA_ERR_INPUT, "lyra_session_load", "ctx or path is NULL");
    void *map;
    size_t len;
    int rc = lyra_session_map(path, &map, &len, err);
    if (rc) return rc;
    lyra_session_view v;
    int32_t *t = NULL;
    rc = lyra_session_parse(map, len, path, &v, err);
    if (!rc) rc = lyra_session_check(ctx, &v, path, err);
    if (!rc && tokens) {
        t = malloc(sizeof *t * (size_t)(v.n_tokens > 0 ? v.n_tokens : 1));
        if (!t) rc = lyra_err(err, LYRA_ERR_OOM, path, "out of memory");
        for (int32_t i = 0; !rc && i < v.n_tokens; i++) t[i] = lyra_session_token(&v, i);
    }
    if (!rc) rc = lyra_session_apply(ctx, smp, &v, err);
    lyra_session_unmap(map, len);
    if (rc) {
        free(t);
        return rc;
    }
    if (tokens) *tokens = t;
    if (n_tokens) *n_tokens = v.n_tokens;
    return LYRA_OK;
}
