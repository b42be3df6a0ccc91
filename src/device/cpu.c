/* cpu.c: the CPU device (see device.h). Memory is the process heap (64-byte
 * aligned) with per-device accounting and an optional budget; weights are the
 * GGUF mapping used in place (adopt). Ops run on the device's thread pool,
 * every op partitioned by output rows (tokens, heads, or 64-element blocks),
 * each output computed by one thread in a fixed order, so results do not
 * depend on the thread count. Ops too small to be worth a dispatch run on the
 * calling thread (same arithmetic). Matrix products are lyra_matmul's; the
 * vector kernels are src/kernels/vec*.c, chosen by the same path (LYRA_CPU).
 *
 * Work memory: matmul needs lyra_matmul_work_size bytes; the runtime sizes and
 * allocates it through this device (it is counted as scratch) and hands it
 * over with set_work. A too-small work buffer is a deferred error reported by
 * sync (the op computes nothing). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/env.h"
#include "core/fp16.h"
#include "core/pool.h"
#include "kernels/vec.h"
#include "device/device.h"

/* Below this many output elements an op runs on the calling thread. */
#define CPU_INLINE_ELEMS 32768
/* Attention: positions per softmax block, and heads sharing K/V per pass. */
#define ATT_BLOCK 256
#define ATT_MAXG LYRA_ATT_MAXG
/* Attention: tokens per query tile (they share each K/V chunk while cached). */
#define ATT_TILE 16
/* Largest rotated dimension count rope supports (validated by the arch). */
#define ROPE_MAX_ROT 1024

typedef struct cpu_impl {
    lyra_pool *pool;              /* worker threads, the caller included */
    int n_threads;                /* pool size */
    lyra_cpu_path path;           /* kernel path for lyra_matmul */
    const lyra_cpu_kernels *k;    /* vector kernels of the same path */
    void *work;                   /* matmul work memory (set_work) */
    size_t work_size;             /* its bytes */
    int failed;                   /* deferred error code for sync (0: none) */
    char failed_msg[256];         /* its message */
    /* rope table of the last single-token call (decode reuses it per layer) */
    int rope_valid;               /* 1 when the fields below are set */
    int32_t rope_pos;             /* position it was computed for */
    lyra_rope rope_key;           /* parameters it was computed with */
    float rope_cos[ROPE_MAX_ROT / 2]; /* cos(theta_i), i < n_rot/2 */
    float rope_sin[ROPE_MAX_ROT / 2]; /* sin(theta_i) */
} cpu_impl;

static cpu_impl *IMPL(lyra_device *d) { return (cpu_impl *)d->impl; }

static void cpu_fail(lyra_device *d, const char *msg) {
    cpu_impl *c = IMPL(d);
    if (!c->failed) {
        c->failed = LYRA_ERR_RUNTIME;
        snprintf(c->failed_msg, sizeof c->failed_msg, "%s", msg);
    }
}

/* Run fn on the pool, or inline when the op is small. */
static void cpu_run(lyra_device *d, int64_t elems, lyra_pool_fn fn, void *arg) {
    cpu_impl *c = IMPL(d);
    if (elems < CPU_INLINE_ELEMS || c->n_threads == 1) fn(arg, 0, 1);
    else lyra_pool_run(c->pool, fn, arg);
}

/* ------------------------------------------------------------------ memory */

static int cpu_alloc(lyra_device *d, size_t size, void **ptr) {
    *ptr = NULL;
    d->stats.alloc_calls++;
    if (d->budget && (size > d->budget || d->stats.allocated > d->budget - size))
        return LYRA_ERR_OOM;
    size_t sz = (size + 63) & ~(size_t)63;
    if (sz < size) return LYRA_ERR_OOM; /* overflow */
    void *p = NULL;
    if (posix_memalign(&p, 64, sz ? sz : 64) != 0 || !p) return LYRA_ERR_OOM;
    d->stats.allocated += size;
    if (d->stats.allocated > d->stats.peak) d->stats.peak = d->stats.allocated;
    *ptr = p;
    return LYRA_OK;
}

static void cpu_free(lyra_device *d, void *ptr, size_t size) {
    if (!ptr) return;
    free(ptr);
    d->stats.allocated -= size <= d->stats.allocated ? size : d->stats.allocated;
}

static int cpu_adopt(lyra_device *d, const void *ptr, size_t size) {
    (void)ptr;
    d->stats.mapped += size;
    return LYRA_OK;
}

static void cpu_unadopt(lyra_device *d, const void *ptr, size_t size) {
    (void)ptr;
    d->stats.mapped -= size <= d->stats.mapped ? size : d->stats.mapped;
}

static int cpu_copy(lyra_device *d, void *dst, const void *src, size_t n) {
    (void)d;
    if (n) memmove(dst, src, n);
    return LYRA_OK;
}

static int cpu_sync(lyra_device *d, lyra_error *err) {
    cpu_impl *c = IMPL(d);
    if (!c->failed) return LYRA_OK;
    int code = c->failed;
    c->failed = 0;
    return lyra_err(err, code, "cpu", "%s", c->failed_msg);
}

static uint64_t meminfo_field(const char *key) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    uint64_t v = 0;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            v = strtoull(line + kl + 1, NULL, 10) * 1024;
            break;
        }
    }
    fclose(f);
    return v;
}

static uint64_t cpu_free_mem(const lyra_device *d) {
    (void)d;
    return meminfo_field("MemAvailable");
}

/* ---------------------------------------------------------------- get_rows */

typedef struct {
    lyra_type t; const void *table; int64_t n; const int32_t *ids; int ntok; float *out;
} rows_args;

static void rows_fn(void *arg, int ith, int nth) {
    rows_args *a = arg;
    long t0, t1;
    lyra_split_rows(a->ntok, ith, nth, &t0, &t1);
    size_t rb = lyra_row_bytes(a->t, a->n);
    for (long t = t0; t < t1; t++) {
        const uint8_t *row = (const uint8_t *)a->table + (size_t)a->ids[t] * rb;
        float *o = a->out + t * a->n;
        if (a->t == LYRA_TYPE_F32) memcpy(o, row, (size_t)a->n * sizeof(float));
        else lyra_dequantize_row(a->t, row, o, a->n);
    }
}

static void cpu_get_rows(lyra_device *d, lyra_type t, const void *table, int64_t n,
                         const int32_t *ids, int ntok, float *out) {
    rows_args a = {t, table, n, ids, ntok, out};
    cpu_run(d, n * ntok, rows_fn, &a);
}

/* ----------------------------------------------------------------- rmsnorm */

typedef struct {
    const lyra_cpu_kernels *k; const float *x, *w; float eps; int64_t n; int ntok; float *out;
} norm_args;

static void norm_fn(void *arg, int ith, int nth) {
    norm_args *a = arg;
    long t0, t1;
    lyra_split_rows(a->ntok, ith, nth, &t0, &t1);
    for (long t = t0; t < t1; t++) {
        const float *x = a->x + t * a->n;
        float ss = a->k->sumsq(x, (int)a->n);
        float s = 1.0f / sqrtf(ss / (float)a->n + a->eps);
        a->k->scale_mul(a->out + t * a->n, x, s, a->w, (int)a->n);
    }
}

static void cpu_rmsnorm(lyra_device *d, const float *x, const float *w, float eps,
                        int64_t n, int ntok, float *out) {
    norm_args a = {IMPL(d)->k, x, w, eps, n, ntok, out};
    cpu_run(d, n * ntok, norm_fn, &a);
}

/* ------------------------------------------------------------------ matmul */

static size_t cpu_matmul_work_size(lyra_device *d, lyra_type wt, int64_t cols, int ntok) {
    (void)d;
    return lyra_matmul_work_size(wt, cols, ntok);
}

static void cpu_set_work(lyra_device *d, void *work, size_t size) {
    IMPL(d)->work = work;
    IMPL(d)->work_size = size;
}

static void cpu_matmul(lyra_device *d, lyra_type wt, const void *W, int64_t rows,
                       int64_t cols, const float *X, int ntok, float *Y) {
    cpu_impl *c = IMPL(d);
    if (lyra_matmul_work_size(wt, cols, ntok) > c->work_size) {
        cpu_fail(d, "matmul work buffer too small (internal error)");
        return;
    }
    lyra_matmul(c->path, wt, W, rows, cols, X, ntok, Y, c->work, c->pool);
}

/* Decode (one token): several matrices sharing X in one dispatch. Threads
 * split the concatenated rows in blocks of 32 and run lyra_matmul on their
 * slices without the pool, each converting X into its own stack buffer; each
 * output element is computed as lyra_matmul always computes it. */
#define MMX_MAX 4
#define MMX_STACK_WORK 32768

typedef struct {
    lyra_cpu_path path; int n; const lyra_type *wt; const void *const *W; const int64_t *rows;
    int64_t cols; const float *X; float *const *Y; int64_t total;
} mmx_args;

static void mmx_fn(void *arg, int ith, int nth) {
    mmx_args *a = arg;
    _Alignas(64) uint8_t work[MMX_STACK_WORK];
    long b0, b1;
    lyra_split_rows((long)((a->total + 31) / 32), ith, nth, &b0, &b1);
    int64_t r0 = (int64_t)b0 * 32, r1 = (int64_t)b1 * 32 < a->total ? (int64_t)b1 * 32 : a->total;
    int64_t base = 0;
    for (int i = 0; i < a->n; i++) {
        int64_t lo = r0 > base ? r0 : base, hi = r1 < base + a->rows[i] ? r1 : base + a->rows[i];
        if (lo < hi) {
            size_t rb = lyra_row_bytes(a->wt[i], a->cols);
            lyra_matmul(a->path, a->wt[i], (const uint8_t *)a->W[i] + (size_t)(lo - base) * rb, hi - lo,
                        a->cols, a->X, 1, a->Y[i] + (lo - base), work, NULL);
        }
        base += a->rows[i];
    }
}

static void cpu_matmul_multi(lyra_device *d, int n, const lyra_type *wt, const void *const *W,
                             const int64_t *rows, int64_t cols, const float *X, int ntok,
                             float *const *Y) {
    cpu_impl *c = IMPL(d);
    int fuse = ntok == 1 && n <= MMX_MAX && c->n_threads > 1;
    int64_t total = 0;
    for (int i = 0; i < n && fuse; i++) {
        fuse = lyra_matmul_work_size(wt[i], cols, 1) <= MMX_STACK_WORK;
        total += rows[i];
    }
    if (!fuse) {
        for (int i = 0; i < n; i++) cpu_matmul(d, wt[i], W[i], rows[i], cols, X, ntok, Y[i]);
        return;
    }
    mmx_args a = {c->path, n, wt, W, rows, cols, X, Y, total};
    lyra_pool_run(c->pool, mmx_fn, &a);
}

/* -------------------------------------------------------------------- rope */

/* cos/sin of the n_rot/2 angles of position pos, computed in double:
 * theta_i = pos * freq_scale * base^(-2i/n_rot) / freq_factors[i]. */
static void rope_table(const lyra_rope *r, int32_t pos, float *cs, float *sn) {
    for (int i = 0; i < r->n_rot / 2; i++) {
        double f = (double)r->freq_scale * pow((double)r->freq_base, -2.0 * i / r->n_rot);
        if (r->freq_factors) f /= (double)r->freq_factors[i];
        double th = (double)pos * f;
        cs[i] = (float)cos(th);
        sn[i] = (float)sin(th);
    }
}

/* Rotate pairs (2i, 2i+1) (neox: (i, i + n_rot/2)), i < n_rot/2, of each of
 * the n_head heads of one token; dims n_rot.. of a head stay. */
static void rope_apply(float *x, int n_head, int head_dim, int n_rot, int neox, const float *cs,
                       const float *sn) {
    const int half = n_rot / 2;
    for (int h = 0; h < n_head; h++) {
        float *v = x + (size_t)h * head_dim;
        if (neox) {
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * cs[i] - b * sn[i];
                v[i + half] = a * sn[i] + b * cs[i];
            }
            continue;
        }
        for (int i = 0; i < half; i++) {
            float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * cs[i] - b * sn[i];
            v[2 * i + 1] = a * sn[i] + b * cs[i];
        }
    }
}

typedef struct {
    float *x; int ntok, n_head, head_dim; const int32_t *pos; const lyra_rope *rope;
} rope_args;

static void rope_fn(void *arg, int ith, int nth) {
    rope_args *a = arg;
    float cs[ROPE_MAX_ROT / 2], sn[ROPE_MAX_ROT / 2];
    long t0, t1;
    lyra_split_rows(a->ntok, ith, nth, &t0, &t1);
    for (long t = t0; t < t1; t++) {
        rope_table(a->rope, a->pos[t], cs, sn);
        rope_apply(a->x + (size_t)t * a->n_head * a->head_dim, a->n_head, a->head_dim,
                   a->rope->n_rot, a->rope->neox, cs, sn);
    }
}

static void cpu_rope(lyra_device *d, float *x, int ntok, int n_head, int head_dim,
                     const int32_t *pos, const lyra_rope *rope) {
    cpu_impl *c = IMPL(d);
    if (rope->n_rot > ROPE_MAX_ROT || rope->n_rot > head_dim || rope->n_rot % 2) {
        cpu_fail(d, "rope: unsupported rotation size (internal error)");
        return;
    }
    if (ntok == 1) { /* decode: the same table serves every layer */
        if (!c->rope_valid || c->rope_pos != pos[0] || c->rope_key.n_rot != rope->n_rot ||
            c->rope_key.freq_base != rope->freq_base ||
            c->rope_key.freq_scale != rope->freq_scale ||
            c->rope_key.freq_factors != rope->freq_factors) {
            rope_table(rope, pos[0], c->rope_cos, c->rope_sin);
            c->rope_valid = 1;
            c->rope_pos = pos[0];
            c->rope_key = *rope;
        }
        rope_apply(x, n_head, head_dim, rope->n_rot, rope->neox, c->rope_cos, c->rope_sin);
        return;
    }
    rope_args a = {x, ntok, n_head, head_dim, pos, rope};
    cpu_run(d, (int64_t)ntok * n_head * head_dim, rope_fn, &a);
}

/* ---------------------------------------------------------------- kv_store */

/* The CPU's cache layout inside a chunk of L positions (L = chunk_len):
 *   K: [n_kv_head][head_dim][L]  transposed, so scores run over positions
 *      in SIMD lanes without horizontal sums;
 *   V: [L][n_kv_head * head_dim]  by rows. */

typedef struct {
    const lyra_cpu_kernels *k; const lyra_kv_view *kv; int32_t pos0; int ntok;
    int64_t kv_dim; const float *kx, *vx;
} kvs_args;

/* Store dims [j0, j1) of token t: K's go to one element of each of their rows
 * (a cache line each), V's to a row. F16 conversion is elementwise: any
 * split of the dims gives the same bits. */
static void kvs_token(const kvs_args *a, long t, size_t j0, size_t j1) {
    const lyra_kv_view *kv = a->kv;
    const size_t L = (size_t)kv->chunk_len, D = (size_t)a->kv_dim;
    int32_t p = a->pos0 + (int32_t)t;
    int32_t ci = lyra_kv_chunk(kv, p), r = p % kv->chunk_len;
    const float *ks = a->kx + t * a->kv_dim, *vs = a->vx + t * a->kv_dim;
    if (kv->kv_type == LYRA_TYPE_F16) {
        uint16_t *K = (uint16_t *)kv->k_chunks[ci] + r;
        uint16_t tmp[1024];
        for (size_t b0 = j0; b0 < j1; b0 += 1024) {
            size_t n = j1 - b0 < 1024 ? j1 - b0 : 1024;
            a->k->to_f16(tmp, ks + b0, (int)n);
            for (size_t j = 0; j < n; j++) K[(b0 + j) * L] = tmp[j];
        }
        a->k->to_f16((uint16_t *)kv->v_chunks[ci] + (size_t)r * D + j0, vs + j0, (int)(j1 - j0));
    } else {
        float *K = (float *)kv->k_chunks[ci] + r;
        for (size_t j = j0; j < j1; j++) K[j * L] = ks[j];
        memcpy((float *)kv->v_chunks[ci] + (size_t)r * D + j0, vs + j0, (j1 - j0) * sizeof(float));
    }
}

static void kvs_fn(void *arg, int ith, int nth) {
    kvs_args *a = arg;
    long t0, t1;
    lyra_split_rows(a->ntok, ith, nth, &t0, &t1);
    for (long t = t0; t < t1; t++) kvs_token(a, t, 0, (size_t)a->kv_dim);
}

/* One token, its dims split between the threads in blocks of 64. */
static void kvs_dims_fn(void *arg, int ith, int nth) {
    kvs_args *a = arg;
    long b0, b1;
    lyra_split_rows((long)((a->kv_dim + 63) / 64), ith, nth, &b0, &b1);
    size_t j0 = (size_t)b0 * 64, j1 = (size_t)b1 * 64 < (size_t)a->kv_dim ? (size_t)b1 * 64 : (size_t)a->kv_dim;
    if (j1 > j0) kvs_token(a, 0, j0, j1);
}

/* A K dim costs a cache line (the scatter: Phi-2's 2048 dims take ~45 us
 * of a 1-thread decode step per layer), so a decode token's store goes to
 * the pool from this many dims. */
#define KVS_POOL_DIMS 1024

static void cpu_kv_store(lyra_device *d, const lyra_kv_view *kv, int32_t pos0, int ntok,
                         int64_t kv_dim, const float *k, const float *v) {
    kvs_args a = {IMPL(d)->k, kv, pos0, ntok, kv_dim, k, v};
    if (ntok == 1 && kv_dim >= KVS_POOL_DIMS && IMPL(d)->n_threads > 1) {
        lyra_pool_run(IMPL(d)->pool, kvs_dims_fn, &a);
        return;
    }
    cpu_run(d, 2 * kv_dim * ntok, kvs_fn, &a);
}

/* --------------------------------------------------------------- attention */

typedef struct {
    const lyra_cpu_kernels *k; const float *q; const lyra_kv_view *kv; int32_t pos0;
    int ntok, n_head, n_kv_head, head_dim; float scale; float softcap; int32_t window;
    float *out;
} att_args;

/* Soft-capping of g rows of nb scores (row stride ss): s = cap * tanh(s / cap),
 * and mx[h] = the largest of row h again. */
static void att_softcap(const lyra_cpu_kernels *k, float *s, int g, size_t ss, int nb, float cap, float *mx) {
    for (int h = 0; h < g; h++) {
        float m = -INFINITY, *r = s + (size_t)h * ss;
        k->softcap(r, nb, cap);
        for (int p = 0; p < nb; p++) m = r[p] > m ? r[p] : m;
        mx[h] = m;
    }
}

/* One query (token t, heads h0..h1-1 of one KV group) of a tile: its
 * positions [first, n_pos), online-softmax state and outputs. */
typedef struct {
    int32_t first, n_pos;
    float m[ATT_MAXG], l[ATT_MAXG];
    const float *q[ATT_MAXG];
    float *acc[ATT_MAXG];
} att_query;

/* Positions off..clen-1 of one cache chunk for query aq, in blocks of at
 * most ATT_BLOCK from off: scores, the online-softmax update, the V
 * accumulation. K: this KV head's rows of the chunk (element j of position p
 * at K[j*ld + p]), V: its columns (V[p*vs + j]), F16 (f16) or F32. s is
 * scratch for ATT_MAXG x ATT_BLOCK scores. */
static void att_chunk(const att_args *a, att_query *aq, int g, const void *K, size_t ld,
                      const void *V, size_t vs, int f16, int32_t off, int32_t clen, float *s) {
    const lyra_cpu_kernels *k = a->k;
    const int hd = a->head_dim;
    const size_t es = f16 ? 2 : 4;
    float mx[ATT_MAXG];
    for (int32_t b0 = off; b0 < clen; b0 += ATT_BLOCK) {
        int nb = clen - b0 < ATT_BLOCK ? (int)(clen - b0) : ATT_BLOCK;
        const char *kb = (const char *)K + (size_t)b0 * es;
        const char *vb = (const char *)V + (size_t)b0 * vs * es;
        if (f16)
            k->scores_f16(aq->q, g, (const uint16_t *)kb, ld, nb, hd, a->scale, s, ATT_BLOCK, mx);
        else
            k->scores_f32(aq->q, g, (const float *)kb, ld, nb, hd, a->scale, s, ATT_BLOCK, mx);
        if (a->softcap > 0) att_softcap(a->k, s, g, ATT_BLOCK, nb, a->softcap, mx);
        for (int i = 0; i < g; i++) {
            if (mx[i] > aq->m[i]) {
                if (aq->l[i] > 0.0f) {
                    float corr = expf(aq->m[i] - mx[i]);
                    aq->l[i] *= corr;
                    k->scale(aq->acc[i], corr, hd);
                }
                aq->m[i] = mx[i];
            }
            aq->l[i] += k->exp_sum(s + (size_t)i * ATT_BLOCK, nb, aq->m[i]);
        }
        if (f16)
            k->accum_f16(aq->acc, g, s, ATT_BLOCK, (const uint16_t *)vb, vs, nb, hd);
        else
            k->accum_f32(aq->acc, g, s, ATT_BLOCK, (const float *)vb, vs, nb, hd);
    }
}

/* Heads h0..h1-1 (all of one KV head's group, at most ATT_MAXG) of tokens
 * t0..t1-1 (at most ATT_TILE): query-tiled, chunk by chunk, so each chunk's
 * K and V come from memory once for the whole tile and stay in cache while
 * its queries use them. Each query keeps its own online softmax over blocks
 * of at most ATT_BLOCK positions that never straddle a cache chunk (from its
 * window's start, chunks through lyra_kv_chunk: the ring of a sliding-window
 * layer), in ascending order: its arithmetic is the untiled one, whatever the
 * tile, the grouping of heads or the thread count. */
static void attend(const att_args *a, int t0, int t1, int h0, int h1) {
    const lyra_kv_view *kv = a->kv;
    const int hd = a->head_dim, g = h1 - h0, nq = t1 - t0;
    const int kvh = h0 / (a->n_head / a->n_kv_head);
    const int32_t L = kv->chunk_len;
    const int f16 = kv->kv_type == LYRA_TYPE_F16;
    const size_t es = f16 ? 2 : 4, kv_dim = (size_t)a->n_kv_head * hd;
    float s[ATT_MAXG * ATT_BLOCK];
    att_query aqs[ATT_TILE];
    if (nq < 1 || nq > ATT_TILE) return;
    for (int u = 0; u < nq; u++) {
        att_query *aq = &aqs[u];
        int t = t0 + u;
        aq->n_pos = a->pos0 + t + 1;
        aq->first = a->window > 0 && aq->n_pos > a->window ? aq->n_pos - a->window : 0;
        for (int i = 0; i < g; i++) {
            aq->q[i] = a->q + ((size_t)t * a->n_head + h0 + i) * hd;
            aq->acc[i] = a->out + ((size_t)t * a->n_head + h0 + i) * hd;
            memset(aq->acc[i], 0, (size_t)hd * sizeof(float));
            aq->m[i] = -INFINITY;
            aq->l[i] = 0.0f;
        }
    }
    /* first and n_pos grow with t: chunks from the first query's first
     * position to the last query's last */
    for (int32_t cc = aqs[0].first / L; cc <= (aqs[nq - 1].n_pos - 1) / L; cc++) {
        int32_t ci = lyra_kv_chunk(kv, cc * L);
        const char *K = (const char *)kv->k_chunks[ci] + (size_t)kvh * hd * L * es;
        const char *V = (const char *)kv->v_chunks[ci] + (size_t)kvh * hd * es;
        for (int u = 0; u < nq; u++) {
            int32_t lo = aqs[u].first > cc * L ? aqs[u].first : cc * L;
            int32_t hi = aqs[u].n_pos < (cc + 1) * L ? aqs[u].n_pos : (cc + 1) * L;
            if (lo >= hi) continue;
            att_chunk(a, &aqs[u], g, K, (size_t)L, V, kv_dim, f16, lo - cc * L, hi - cc * L, s);
        }
    }
    for (int u = 0; u < nq; u++)
        for (int i = 0; i < g; i++) a->k->scale(aqs[u].acc[i], 1.0f / aqs[u].l[i], hd);
}

/* Work units: (tile of tq <= ATT_TILE tokens) x (part of at most ATT_MAXG
 * heads of a KV group), tile-major; each thread takes a contiguous run of
 * units of about equal cost (positions attended x heads); tq is smaller when
 * the batch is too short to give every thread a few units. Decode (one
 * token): heads split over the threads. None of this changes the results. */
static int att_parts(const att_args *a) {
    const int grp = a->n_head / a->n_kv_head;
    return a->n_kv_head * ((grp + ATT_MAXG - 1) / ATT_MAXG);
}

static void att_unit(const att_args *a, int tq, long u, int *t0, int *t1, int *h0, int *h1) {
    const int grp = a->n_head / a->n_kv_head, per = (grp + ATT_MAXG - 1) / ATT_MAXG;
    const int parts = att_parts(a);
    long tile = u / parts;
    int part = (int)(u % parts), kvh = part / per, j = part % per;
    *t0 = (int)(tile * tq);
    *t1 = *t0 + tq < a->ntok ? *t0 + tq : a->ntok;
    /* the group's heads split evenly over its parts */
    *h0 = kvh * grp + (int)((long)grp * j / per);
    *h1 = kvh * grp + (int)((long)grp * (j + 1) / per);
}

static double att_cost(const att_args *a, int t0, int t1, int h0, int h1) {
    double c = 0;
    for (int t = t0; t < t1; t++) {
        int32_t n = a->pos0 + t + 1;
        c += a->window > 0 && n > a->window ? a->window : n;
    }
    return c * (h1 - h0);
}

static void att_fn(void *arg, int ith, int nth) {
    att_args *a = arg;
    if (a->ntok == 1) { /* decode: split the heads (groups kept whole where they fit) */
        long i0, i1;
        lyra_split_rows(a->n_head, ith, nth, &i0, &i1);
        const int grp = a->n_head / a->n_kv_head;
        for (long i = i0; i < i1;) {
            int h = (int)i, h1 = (h / grp + 1) * grp; /* end of this KV group */
            if (h1 - h > ATT_MAXG) h1 = h + ATT_MAXG;
            if (h1 > i1) h1 = (int)i1;
            attend(a, 0, 1, h, h1);
            i += h1 - h;
        }
        return;
    }
    long tq = (long)a->ntok * att_parts(a) / (4L * nth);
    tq = tq < 1 ? 1 : tq > ATT_TILE ? ATT_TILE : tq;
    const long n_units = (long)((a->ntok + tq - 1) / tq) * att_parts(a);
    double total = 0, run = 0;
    int t0, t1, h0, h1;
    for (long u = 0; u < n_units; u++) {
        att_unit(a, (int)tq, u, &t0, &t1, &h0, &h1);
        total += att_cost(a, t0, t1, h0, h1);
    }
    /* unit u goes to the thread whose share holds the middle of its cost */
    for (long u = 0; u < n_units; u++) {
        att_unit(a, (int)tq, u, &t0, &t1, &h0, &h1);
        double c = att_cost(a, t0, t1, h0, h1);
        int owner = (int)((run + 0.5 * c) / total * nth);
        run += c;
        if (owner >= nth) owner = nth - 1;
        if (owner == ith) attend(a, t0, t1, h0, h1);
    }
}

static void cpu_attention(lyra_device *d, const float *q, const lyra_kv_view *kv, int32_t pos0,
                          int ntok, const lyra_attn_params *ap, float *out) {
    const int n_head = ap->n_head, n_kv_head = ap->n_kv_head, head_dim = ap->head_dim;
    if (n_kv_head <= 0 || n_head % n_kv_head) {
        cpu_fail(d, "attention: head counts not grouped (internal error)");
        return;
    }
    att_args a = {IMPL(d)->k, q, kv, pos0, ntok, n_head, n_kv_head, head_dim, ap->scale,
                  ap->softcap, ap->window, out};
    /* work ~ positions attended x heads x head_dim */
    int64_t span = pos0 + ntok;
    if (ap->window > 0 && span > ap->window + ntok) span = ap->window + ntok;
    int64_t work = (int64_t)ntok * n_head * head_dim * span;
    cpu_run(d, work / 4, att_fn, &a);
}

/* ------------------------------------------------------ elementwise (swiglu, add) */

/* Elements are split in blocks of 64 so every element takes the same (vector
 * or tail) path whatever the thread count. */
#define EW_BLOCK 64

typedef struct {
    const lyra_cpu_kernels *k; const float *g, *u; float *x; int64_t n; float *out;
} ew_args;

static void ew_range(const ew_args *a, int ith, int nth, int64_t *e0, int64_t *e1) {
    long b0, b1;
    lyra_split_rows((long)((a->n + EW_BLOCK - 1) / EW_BLOCK), ith, nth, &b0, &b1);
    *e0 = (int64_t)b0 * EW_BLOCK;
    *e1 = (int64_t)b1 * EW_BLOCK < a->n ? (int64_t)b1 * EW_BLOCK : a->n;
}

static void swiglu_fn(void *arg, int ith, int nth) {
    ew_args *a = arg;
    int64_t e0, e1;
    ew_range(a, ith, nth, &e0, &e1);
    if (e1 > e0) a->k->swiglu(a->out + e0, a->g + e0, a->u + e0, (int)(e1 - e0));
}

static void cpu_swiglu(lyra_device *d, const float *gate, const float *up, int64_t n, float *out) {
    ew_args a = {IMPL(d)->k, gate, up, NULL, n, out};
    cpu_run(d, n / 2, swiglu_fn, &a);
}

static void add_fn(void *arg, int ith, int nth) {
    ew_args *a = arg;
    int64_t e0, e1;
    ew_range(a, ith, nth, &e0, &e1);
    if (e1 > e0) a->k->add(a->x + e0, a->g + e0, (int)(e1 - e0));
}

static void cpu_add(lyra_device *d, float *x, const float *y, int64_t n) {
    ew_args a = {IMPL(d)->k, y, NULL, x, n, NULL};
    cpu_run(d, n / 8, add_fn, &a);
}


/* ------------------------------- layernorm, bias, gelu, geglu, scale, softcap */

typedef struct {
    const float *x, *w, *b; float eps; int64_t n; int ntok; float *out;
} ln_args;

static void ln_fn(void *arg, int ith, int nth) {
    ln_args *a = arg;
    long t0, t1;
    lyra_split_rows(a->ntok, ith, nth, &t0, &t1);
    for (long t = t0; t < t1; t++) {
        const float *x = a->x + t * a->n;
        float *o = a->out + t * a->n;
        float sum = 0.0f;
        for (int64_t i = 0; i < a->n; i++) sum += x[i];
        float mean = sum / (float)a->n, var = 0.0f;
        for (int64_t i = 0; i < a->n; i++) var += (x[i] - mean) * (x[i] - mean);
        float s = 1.0f / sqrtf(var / (float)a->n + a->eps);
        for (int64_t i = 0; i < a->n; i++)
            o[i] = (x[i] - mean) * s * a->w[i] + (a->b ? a->b[i] : 0.0f);
    }
}

static void cpu_layernorm(lyra_device *d, const float *x, const float *w, const float *b,
                          float eps, int64_t n, int ntok, float *out) {
    ln_args a = {x, w, b, eps, n, ntok, out};
    cpu_run(d, n * ntok, ln_fn, &a);
}

typedef struct {
    float *x; const float *bias; int64_t n; int ntok;
} bias_args;

static void bias_fn(void *arg, int ith, int nth) {
    bias_args *a = arg;
    long t0, t1;
    lyra_split_rows(a->ntok, ith, nth, &t0, &t1);
    for (long t = t0; t < t1; t++) {
        float *x = a->x + t * a->n;
        for (int64_t i = 0; i < a->n; i++) x[i] += a->bias[i];
    }
}

static void cpu_add_bias(lyra_device *d, float *x, const float *bias, int64_t n, int ntok) {
    bias_args a = {x, bias, n, ntok};
    cpu_run(d, n * ntok / 8, bias_fn, &a);
}

/* Elementwise ops with one scalar parameter: blocks of EW_BLOCK elements. */
typedef struct {
    int op; const float *x, *u; float *out; int64_t n; float s; const lyra_cpu_kernels *k;
} ew1_args;

enum { EW1_GELU, EW1_GEGLU, EW1_SCALE, EW1_SOFTCAP };

static void ew1_fn(void *arg, int ith, int nth) {
    ew1_args *a = arg;
    long b0, b1;
    lyra_split_rows((long)((a->n + EW_BLOCK - 1) / EW_BLOCK), ith, nth, &b0, &b1);
    int64_t e0 = (int64_t)b0 * EW_BLOCK, e1 = (int64_t)b1 * EW_BLOCK < a->n ? (int64_t)b1 * EW_BLOCK : a->n;
    switch (a->op) {
    case EW1_GELU:
        if (e1 > e0) a->k->gelu(a->out + e0, a->x + e0, NULL, (int)(e1 - e0));
        break;
    case EW1_GEGLU:
        if (e1 > e0) a->k->gelu(a->out + e0, a->x + e0, a->u + e0, (int)(e1 - e0));
        break;
    case EW1_SCALE:
        for (int64_t i = e0; i < e1; i++) a->out[i] = a->x[i] * a->s;
        break;
    default:
        if (e1 > e0) a->k->softcap(a->out + e0, (int)(e1 - e0), a->s);
        break;
    }
}

static void cpu_gelu(lyra_device *d, const float *x, int64_t n, float *out) {
    ew1_args a = {EW1_GELU, x, NULL, out, n, 0.0f, IMPL(d)->k};
    cpu_run(d, n / 2, ew1_fn, &a);
}

static void cpu_geglu(lyra_device *d, const float *gate, const float *up, int64_t n, float *out) {
    ew1_args a = {EW1_GEGLU, gate, up, out, n, 0.0f, IMPL(d)->k};
    cpu_run(d, n / 2, ew1_fn, &a);
}

static void cpu_scale(lyra_device *d, float *x, int64_t n, float s) {
    ew1_args a = {EW1_SCALE, x, NULL, x, n, s, IMPL(d)->k};
    cpu_run(d, n / 8, ew1_fn, &a);
}

static void cpu_softcap(lyra_device *d, float *x, int64_t n, float cap) {
    ew1_args a = {EW1_SOFTCAP, x, NULL, x, n, cap, IMPL(d)->k};
    cpu_run(d, n / 2, ew1_fn, &a);
}

/* ------------------------------------------------------------------ device */

static void cpu_destroy(lyra_device *d) {
    cpu_impl *c = IMPL(d);
    if (c) lyra_pool_free(c->pool);
    free(c);
    free(d);
}

/* K [kv_dim][L] <-> [L][kv_dim]; V is [L][kv_dim] in both. */
static void kv_transpose(const char *src, char *dst, size_t rows, size_t cols, size_t es) {
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) memcpy(dst + (c * rows + r) * es, src + (r * cols + c) * es, es);
}

void lyra_cpu_kv_to_rows(const void *chunk, void *rows, int32_t chunk_len, int64_t kv_dim, lyra_type t) {
    size_t es = t == LYRA_TYPE_F32 ? 4 : 2, L = (size_t)chunk_len, D = (size_t)kv_dim;
    kv_transpose(chunk, rows, D, L, es);
    memcpy((char *)rows + L * D * es, (const char *)chunk + L * D * es, L * D * es);
}

void lyra_cpu_kv_from_rows(const void *rows, void *chunk, int32_t chunk_len, int64_t kv_dim, lyra_type t) {
    size_t es = t == LYRA_TYPE_F32 ? 4 : 2, L = (size_t)chunk_len, D = (size_t)kv_dim;
    kv_transpose(rows, chunk, L, D, es);
    memcpy((char *)chunk + L * D * es, (const char *)rows + L * D * es, L * D * es);
}

static const lyra_device_ops cpu_ops = {
    .alloc = cpu_alloc, .free = cpu_free, .adopt = cpu_adopt, .unadopt = cpu_unadopt,
    .copy_in = cpu_copy, .copy_out = cpu_copy, .sync = cpu_sync,
    .get_rows = cpu_get_rows, .rmsnorm = cpu_rmsnorm, .matmul = cpu_matmul,
    .rope = cpu_rope, .kv_store = cpu_kv_store, .attention = cpu_attention,
    .swiglu = cpu_swiglu, .add = cpu_add,
    .layernorm = cpu_layernorm, .add_bias = cpu_add_bias, .gelu = cpu_gelu, .geglu = cpu_geglu,
    .scale = cpu_scale, .softcap = cpu_softcap,
    .matmul_work_size = cpu_matmul_work_size, .set_work = cpu_set_work,
    .destroy = cpu_destroy, .free_mem = cpu_free_mem, .matmul_multi = cpu_matmul_multi,
    .kv_to_rows = lyra_cpu_kv_to_rows, .kv_from_rows = lyra_cpu_kv_from_rows,
};

static const lyra_cpu_kernels *kernels_for(lyra_cpu_path p) {
#if LYRA_X86
    if (p == LYRA_CPU_AVX512) return lyra_cpu_kernels_avx512();
    if (p == LYRA_CPU_AVX2) return lyra_cpu_kernels_avx2();
#endif
    (void)p;
    return lyra_cpu_kernels_scalar();
}

static void set_name(lyra_device *d) {
    cpu_impl *c = IMPL(d);
    snprintf(d->name, sizeof d->name, "CPU (%s, %d thread%s)", lyra_cpu_path_name(c->path),
             c->n_threads, c->n_threads == 1 ? "" : "s");
}

int lyra_cpu_device_new(int n_threads, lyra_device **out, lyra_error *err) {
    return lyra_cpu_device_open(n_threads, lyra_backend_params_from_env().cpu_path, out, err);
}

int lyra_cpu_device_open(int n_threads, const char *cpu_path, lyra_device **out, lyra_error *err) {
    *out = NULL;
    if (n_threads < 0)
        return lyra_err(err, LYRA_ERR_INPUT, "threads", "must be >= 0, got %d", n_threads);
    lyra_cpu_path path;
    int rc = lyra_cpu_path_parse(cpu_path, &path, err);
    if (rc) return rc;
    lyra_device *d = calloc(1, sizeof *d);
    cpu_impl *c = calloc(1, sizeof *c);
    if (!d || !c) {
        free(d);
        free(c);
        return lyra_err(err, LYRA_ERR_OOM, "cpu", "out of memory creating the device");
    }
    d->impl = c;
    d->ops = &cpu_ops;
    snprintf(d->id, sizeof d->id, "cpu");
    snprintf(d->kind, sizeof d->kind, "cpu");
    snprintf(d->backend, sizeof d->backend, "cpu");
    d->total = meminfo_field("MemTotal");
    c->path = path;
    c->k = kernels_for(path);
    rc = lyra_cpu_device_set_threads(d, n_threads, err);
    if (rc) {
        cpu_destroy(d);
        return rc;
    }
    *out = d;
    return LYRA_OK;
}

int lyra_cpu_device_set_threads(lyra_device *d, int n_threads, lyra_error *err) {
    cpu_impl *c = IMPL(d);
    if (n_threads < 0)
        return lyra_err(err, LYRA_ERR_INPUT, "threads", "must be >= 0, got %d", n_threads);
    if (n_threads == 0) n_threads = lyra_default_threads(NULL);
    if (c->pool && c->n_threads == n_threads) return LYRA_OK;
    lyra_pool *p = lyra_pool_new(n_threads);
    if (!p) return lyra_err(err, LYRA_ERR_RUNTIME, "cpu", "cannot start %d threads", n_threads);
    lyra_pool_free(c->pool);
    c->pool = p;
    c->n_threads = lyra_pool_size(p);
    set_name(d);
    return LYRA_OK;
}

lyra_cpu_path lyra_cpu_device_path(const lyra_device *d) { return ((const cpu_impl *)d->impl)->path; }
int lyra_cpu_device_threads(const lyra_device *d) { return ((const cpu_impl *)d->impl)->n_threads; }
