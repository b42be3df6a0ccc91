/* test_device_ops.c: the CPU device's ops against naive double-precision
 * loops (rope, grouped-query attention over a chunked F32/F16 cache, rmsnorm,
 * swiglu, add, get_rows, matmul), on every kernel path this CPU has; bitwise
 * equality across thread counts 1, 2, 3; F16 vs F32 cache; memory accounting
 * (stats, budget -> LYRA_ERR_OOM, adopt). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/fp16.h"
#include "core/rng.h"
#include "device/device.h"
#include "testutil.h"

static lyra_rng rng;
static float frand(void) { return lyra_rng_f32(&rng) * 2.0f - 1.0f; }
static void fill(float *x, size_t n, float s) { for (size_t i = 0; i < n; i++) x[i] = frand() * s; }

static lyra_device *new_dev(lyra_cpu_path p, int threads) {
    setenv("LYRA_CPU", lyra_cpu_path_name(p), 1);
    lyra_device *d = NULL;
    lyra_error err;
    int rc = lyra_cpu_device_new(threads, &d, &err);
    CHECK(rc == 0, "device: %s", err.msg);
    return d;
}

static double maxdiff(const float *a, const double *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

/* ---- rope ---- */
static void naive_rope(double *x, int ntok, int nh, int hd, const int32_t *pos, const lyra_rope *r) {
    for (int t = 0; t < ntok; t++)
        for (int h = 0; h < nh; h++) {
            double *v = x + ((size_t)t * nh + h) * hd;
            for (int i = 0; i < r->n_rot / 2; i++) {
                double f = r->freq_scale * pow(r->freq_base, -2.0 * i / r->n_rot);
                if (r->freq_factors) f /= r->freq_factors[i];
                double th = pos[t] * f, a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * cos(th) - b * sin(th);
                v[2 * i + 1] = a * sin(th) + b * cos(th);
            }
        }
}

static void test_rope(lyra_device *d) {
    enum { NT = 5, NH = 4, HD = 32 };
    float ff[HD / 2];
    for (int i = 0; i < HD / 2; i++) ff[i] = 1.0f + (float)i * 0.25f;
    lyra_rope variants[3] = {{HD, 10000.0f, 1.0f, NULL, 0}, {HD, 500000.0f, 0.25f, ff, 0}, {16, 10000.0f, 1.0f, NULL, 0}};
    int32_t pos[NT] = {0, 1, 7, 300, 4095};
    for (int v = 0; v < 3; v++) {
        for (int ntok = 1; ntok <= NT; ntok += NT - 1) { /* 1 (decode cache) and 5 */
            float x[NT * NH * HD];
            double ref[NT * NH * HD];
            fill(x, sizeof x / sizeof x[0], 1.0f);
            for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) ref[i] = x[i];
            int32_t p[NT];
            for (int t = 0; t < ntok; t++) p[t] = pos[ntok == 1 ? 3 : t];
            d->ops->rope(d, x, ntok, NH, HD, p, &variants[v]);
            naive_rope(ref, ntok, NH, HD, p, &variants[v]);
            double md = maxdiff(x, ref, (size_t)ntok * NH * HD);
            CHECK(md < 2e-6, "rope variant %d ntok %d: max diff %g", v, ntok, md);
        }
    }
}

/* ---- kv store + attention ---- */
enum { NCHUNK_MAX = 8, CHUNK = 256 };

typedef struct {
    lyra_kv_view view;
    void *k[NCHUNK_MAX], *v[NCHUNK_MAX];
} test_cache;

static void cache_init(test_cache *c, lyra_type t, int kv_dim) {
    size_t es = t == LYRA_TYPE_F16 ? 2 : 4;
    for (int i = 0; i < NCHUNK_MAX; i++) {
        c->k[i] = calloc(CHUNK * (size_t)kv_dim, es);
        c->v[i] = calloc(CHUNK * (size_t)kv_dim, es);
    }
    c->view.k_chunks = c->k;
    c->view.v_chunks = c->v;
    c->view.chunk_len = CHUNK;
    c->view.kv_type = t;
}

static void cache_free(test_cache *c) {
    for (int i = 0; i < NCHUNK_MAX; i++) { free(c->k[i]); free(c->v[i]); }
}

/* Element j of position p (the CPU's layout: K [kv_dim][CHUNK], V [CHUNK][kv_dim]). */
static double cache_get(const test_cache *c, int kv, int p, int j, int kv_dim) {
    void *const *ch = kv ? c->v : c->k;
    size_t o = kv ? (size_t)(p % CHUNK) * kv_dim + j : (size_t)j * CHUNK + (size_t)(p % CHUNK);
    if (c->view.kv_type == LYRA_TYPE_F16) return lyra_fp16_to_f32(((uint16_t *)ch[p / CHUNK])[o]);
    return ((float *)ch[p / CHUNK])[o];
}

static void naive_attention(const float *q, const test_cache *c, int pos0, int ntok, int nh,
                            int nkv, int hd, double *out) {
    int kv_dim = nkv * hd;
    double *s = malloc(sizeof(double) * (size_t)(pos0 + ntok));
    for (int t = 0; t < ntok; t++)
        for (int h = 0; h < nh; h++) {
            int kvh = h / (nh / nkv), np = pos0 + t + 1;
            const float *qv = q + ((size_t)t * nh + h) * hd;
            double mx = -1e300, sum = 0;
            for (int p = 0; p < np; p++) {
                double acc = 0;
                for (int j = 0; j < hd; j++) acc += qv[j] * cache_get(c, 0, p, kvh * hd + j, kv_dim);
                s[p] = acc / sqrt((double)hd);
                if (s[p] > mx) mx = s[p];
            }
            for (int p = 0; p < np; p++) { s[p] = exp(s[p] - mx); sum += s[p]; }
            double *o = out + ((size_t)t * nh + h) * hd;
            for (int j = 0; j < hd; j++) {
                double acc = 0;
                for (int p = 0; p < np; p++) acc += s[p] * cache_get(c, 1, p, kvh * hd + j, kv_dim);
                o[j] = acc / sum;
            }
        }
    free(s);
}

/* Fill positions [0, npos) of cache through kv_store in uneven batches. */
static void store_all(lyra_device *d, test_cache *c, int npos, int kv_dim, const float *K,
                      const float *V) {
    int batches[] = {1, 7, 250, 3, 300, 64};
    int p = 0, b = 0;
    while (p < npos) {
        int n = batches[b++ % 6];
        if (n > npos - p) n = npos - p;
        d->ops->kv_store(d, &c->view, p, n, kv_dim, K + (size_t)p * kv_dim, V + (size_t)p * kv_dim);
        p += n;
    }
}

static void test_attention(lyra_device *d, int hd, int nh, int nkv) {
    int kv_dim = nkv * hd, npos = 700, ntok = 9, pos0 = npos - ntok;
    float *K = malloc(sizeof(float) * (size_t)npos * kv_dim);
    float *V = malloc(sizeof(float) * (size_t)npos * kv_dim);
    float *q = malloc(sizeof(float) * (size_t)ntok * nh * hd);
    float *out = malloc(sizeof(float) * (size_t)ntok * nh * hd);
    float *out32 = malloc(sizeof(float) * (size_t)ntok * nh * hd);
    double *ref = malloc(sizeof(double) * (size_t)ntok * nh * hd);
    fill(K, (size_t)npos * kv_dim, 1.0f);
    fill(V, (size_t)npos * kv_dim, 1.0f);
    fill(q, (size_t)ntok * nh * hd, 1.5f);
    size_t n_out = (size_t)ntok * nh * hd;
    for (int ty = 0; ty < 2; ty++) {
        test_cache c;
        cache_init(&c, ty ? LYRA_TYPE_F16 : LYRA_TYPE_F32, kv_dim);
        store_all(d, &c, npos, kv_dim, K, V);
        /* the store itself: exact for F32, round-to-nearest for F16 */
        int store_ok = 1;
        for (int p = 0; p < npos; p += 37)
            for (int j = 0; j < kv_dim; j++) {
                float want = ty ? lyra_fp16_to_f32(lyra_f32_to_fp16(K[(size_t)p * kv_dim + j]))
                                : K[(size_t)p * kv_dim + j];
                if ((float)cache_get(&c, 0, p, j, kv_dim) != want) store_ok = 0;
            }
        CHECK(store_ok, "kv_store type %d hd %d: stored values differ", ty, hd);
        /* a batch of ntok at pos0 and a single decode token at the end */
        d->ops->attention(d, q, &c.view, pos0, ntok, &(lyra_attn_params){nh, nkv, hd, 1.0f / sqrtf((float)hd), 0, 0}, out);
        naive_attention(q, &c, pos0, ntok, nh, nkv, hd, ref);
        double md = maxdiff(out, ref, n_out);
        CHECK(md < 2e-5, "attention type %d hd %d nh %d nkv %d: max diff %g", ty, hd, nh, nkv, md);
        const float *ql = q + (size_t)(ntok - 1) * nh * hd;
        float *o1 = malloc(sizeof(float) * (size_t)nh * hd);
        d->ops->attention(d, ql, &c.view, npos - 1, 1, &(lyra_attn_params){nh, nkv, hd, 1.0f / sqrtf((float)hd), 0, 0}, o1);
        md = maxdiff(o1, ref + (size_t)(ntok - 1) * nh * hd, (size_t)nh * hd);
        CHECK(md < 2e-5, "attention decode type %d hd %d: max diff %g", ty, hd, md);
        /* F16 cache close to F32 */
        if (ty == 0) memcpy(out32, out, sizeof(float) * n_out);
        else {
            double m16 = 0;
            for (size_t i = 0; i < n_out; i++) m16 = fmax(m16, fabs((double)out[i] - out32[i]));
            CHECK(m16 < 2e-3, "attention F16 vs F32 cache hd %d: max diff %g", hd, m16);
        }
        free(o1);
        cache_free(&c);
    }
    free(K); free(V); free(q); free(out); free(out32); free(ref);
}

/* ---- rmsnorm, swiglu, add, get_rows, matmul ---- */
static void test_small_ops(lyra_device *d) {
    enum { N = 200, T = 3 };
    float x[N * T], w[N], out[N * T];
    double ref[N * T];
    fill(x, N * T, 2.0f);
    fill(w, N, 1.0f);
    d->ops->rmsnorm(d, x, w, 1e-5f, N, T, out);
    for (int t = 0; t < T; t++) {
        double ss = 0;
        for (int i = 0; i < N; i++) ss += (double)x[t * N + i] * x[t * N + i];
        double s = 1.0 / sqrt(ss / N + 1e-5);
        for (int i = 0; i < N; i++) ref[t * N + i] = x[t * N + i] * s * w[i];
    }
    CHECK(maxdiff(out, ref, N * T) < 1e-5, "rmsnorm: max diff %g", maxdiff(out, ref, N * T));

    float g[N * T], u[N * T];
    fill(g, N * T, 8.0f);
    fill(u, N * T, 1.0f);
    g[0] = 100.0f; g[1] = -100.0f; /* exp clamping */
    d->ops->swiglu(d, g, u, N * T, out);
    for (int i = 0; i < N * T; i++) ref[i] = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
    double md = 0;
    for (int i = 0; i < N * T; i++) md = fmax(md, fabs(out[i] - ref[i]) / fmax(1.0, fabs(ref[i])));
    CHECK(md < 1e-6, "swiglu: max rel diff %g", md);
    memcpy(out, g, sizeof g); /* in place, as the forward pass uses it */
    d->ops->swiglu(d, out, u, N * T, out);
    double md2 = 0;
    for (int i = 0; i < N * T; i++) md2 = fmax(md2, fabs(out[i] - ref[i]) / fmax(1.0, fabs(ref[i])));
    CHECK(md2 < 1e-6, "swiglu in place: max rel diff %g", md2);

    memcpy(out, x, sizeof x);
    d->ops->add(d, out, g, N * T);
    int add_ok = 1;
    for (int i = 0; i < N * T; i++) add_ok &= out[i] == x[i] + g[i];
    CHECK(add_ok, "add: not exact");

    /* get_rows of F32, F16 and Q8_0 tables against lyra_dequantize_row */
    enum { R = 10, C = 64 };
    float tab[R * C];
    fill(tab, R * C, 1.0f);
    lyra_type types[3] = {LYRA_TYPE_F32, LYRA_TYPE_F16, LYRA_TYPE_Q8_0};
    int32_t ids[4] = {3, 0, 9, 3};
    for (int k = 0; k < 3; k++) {
        size_t rb = lyra_row_bytes(types[k], C);
        uint8_t *q = malloc(rb * R);
        for (int r = 0; r < R; r++) lyra_quantize_row(types[k], tab + r * C, q + r * rb, C);
        float got[4 * C], want[C];
        d->ops->get_rows(d, types[k], q, C, ids, 4, got);
        int ok = 1;
        for (int t = 0; t < 4; t++) {
            lyra_dequantize_row(types[k], q + (size_t)ids[t] * rb, want, C);
            ok &= memcmp(got + t * C, want, sizeof want) == 0;
        }
        CHECK(ok, "get_rows %s differs from lyra_dequantize_row", lyra_type_name(types[k]));
        free(q);
    }

    /* matmul of F32 weights (the kernels are test_quant's; this checks the wiring) */
    enum { MR = 48, MC = 64, MT = 5 };
    float W[MR * MC], X[MT * MC], Y[MT * MR];
    double Yr[MT * MR];
    fill(W, MR * MC, 1.0f);
    fill(X, MT * MC, 1.0f);
    size_t ws = d->ops->matmul_work_size(d, LYRA_TYPE_F32, MC, MT);
    void *work = NULL;
    if (ws) CHECK(d->ops->alloc(d, ws, &work) == 0, "alloc work");
    d->ops->set_work(d, work, ws);
    d->ops->matmul(d, LYRA_TYPE_F32, W, MR, MC, X, MT, Y);
    for (int t = 0; t < MT; t++)
        for (int r = 0; r < MR; r++) {
            double s = 0;
            for (int c2 = 0; c2 < MC; c2++) s += (double)W[r * MC + c2] * X[t * MC + c2];
            Yr[t * MR + r] = s;
        }
    CHECK(maxdiff(Y, Yr, MT * MR) < 1e-4, "matmul: max diff %g", maxdiff(Y, Yr, MT * MR));
    lyra_error err;
    CHECK(d->ops->sync(d, &err) == 0, "sync after matmul: %s", err.msg);
    /* a matmul bigger than the work buffer is a deferred error, not a crash */
    if (lyra_matmul_work_size(LYRA_TYPE_Q8_0, MC, MT) > ws) {
        d->ops->matmul(d, LYRA_TYPE_Q8_0, W, 1, MC, X, MT, Y);
        CHECK(d->ops->sync(d, &err) == LYRA_ERR_RUNTIME, "small work buffer not reported");
    }
    d->ops->set_work(d, NULL, 0);
    if (work) d->ops->free(d, work, ws);
}

/* ---- matmul_multi: the same bits as separate matmuls ---- */
static void test_matmul_multi(lyra_cpu_path p) {
    enum { C = 256, T = 3 };
    int64_t rows[3] = {96, 40, 40};
    lyra_type types[3] = {LYRA_TYPE_Q4_0, LYRA_TYPE_Q8_0, LYRA_TYPE_F16};
    void *W[3];
    float *Y[3], *Yr[3];
    float X[T * C];
    fill(X, T * C, 1.0f);
    for (int i = 0; i < 3; i++) {
        size_t rb = lyra_row_bytes(types[i], C);
        W[i] = malloc(rb * (size_t)rows[i]);
        float row[C];
        for (int r = 0; r < rows[i]; r++) {
            fill(row, C, 1.0f);
            lyra_quantize_row(types[i], row, (uint8_t *)W[i] + rb * (size_t)r, C);
        }
        Y[i] = malloc(sizeof(float) * T * (size_t)rows[i]);
        Yr[i] = malloc(sizeof(float) * T * (size_t)rows[i]);
    }
    for (int th = 1; th <= 3; th++) {
        lyra_device *d = new_dev(p, th);
        if (!d) break;
        size_t ws = 0;
        for (int i = 0; i < 3; i++) {
            size_t w = d->ops->matmul_work_size(d, types[i], C, T);
            ws = w > ws ? w : ws;
        }
        void *work = NULL;
        d->ops->alloc(d, ws, &work);
        d->ops->set_work(d, work, ws);
        for (int ntok = 1; ntok <= T; ntok += T - 1) {
            for (int i = 0; i < 3; i++) d->ops->matmul(d, types[i], W[i], rows[i], C, X, ntok, Yr[i]);
            d->ops->matmul_multi(d, 3, types, (const void *const *)W, rows, C, X, ntok, Y);
            for (int i = 0; i < 3; i++)
                CHECK(!memcmp(Y[i], Yr[i], sizeof(float) * (size_t)ntok * (size_t)rows[i]),
                      "%s threads %d ntok %d: matmul_multi %d differs", lyra_cpu_path_name(p), th, ntok, i);
        }
        d->ops->set_work(d, NULL, 0);
        d->ops->free(d, work, ws);
        lyra_device_free(d);
    }
    for (int i = 0; i < 3; i++) { free(W[i]); free(Y[i]); free(Yr[i]); }
}

/* ---- thread-count independence ---- */
typedef struct { float *att, *rope, *norm, *glu, *mm; } outs;

static void run_big(lyra_device *d, outs *o, int pass) {
    lyra_rng_seed(&rng, 1234); /* same inputs for every thread count */
    enum { HD = 64, NH = 8, NKV = 2, NPOS = 600, NT = 16, N = 70000 };
    int kv_dim = NKV * HD;
    float *K = malloc(sizeof(float) * NPOS * kv_dim), *V = malloc(sizeof(float) * NPOS * kv_dim);
    float *q = malloc(sizeof(float) * NT * NH * HD);
    fill(K, (size_t)NPOS * kv_dim, 1.0f);
    fill(V, (size_t)NPOS * kv_dim, 1.0f);
    fill(q, NT * NH * HD, 2.0f);
    test_cache c;
    cache_init(&c, LYRA_TYPE_F16, kv_dim);
    store_all(d, &c, NPOS, kv_dim, K, V);
    o->att = malloc(sizeof(float) * NT * NH * HD);
    d->ops->attention(d, q, &c.view, NPOS - NT, NT, &(lyra_attn_params){NH, NKV, HD, 0.125f, 0, 0}, o->att);
    int32_t pos[NT];
    for (int t = 0; t < NT; t++) pos[t] = 100 + 3 * t;
    lyra_rope r = {HD, 10000.0f, 1.0f, NULL, 0};
    o->rope = malloc(sizeof(float) * NT * NH * HD * 8);
    fill(o->rope, NT * NH * HD * 8, 1.0f);
    int32_t pos8[NT * 8];
    for (int t = 0; t < NT * 8; t++) pos8[t] = t;
    d->ops->rope(d, o->rope, NT * 8, NH, HD, pos8, &r);
    (void)pos;
    float *x = malloc(sizeof(float) * N), *w = malloc(sizeof(float) * 1000);
    fill(x, N, 3.0f);
    fill(w, 1000, 1.0f);
    o->norm = malloc(sizeof(float) * N);
    d->ops->rmsnorm(d, x, w, 1e-6f, 1000, N / 1000, o->norm);
    o->glu = malloc(sizeof(float) * N);
    d->ops->swiglu(d, x, o->norm, N, o->glu);
    d->ops->add(d, o->glu, x, N - 3);
    enum { MR = 300, MC = 256, MT = 7 };
    float *W = malloc(sizeof(float) * MR * MC);
    fill(W, MR * MC, 1.0f);
    o->mm = malloc(sizeof(float) * MT * MR);
    size_t ws = d->ops->matmul_work_size(d, LYRA_TYPE_F32, MC, MT);
    void *work = NULL;
    if (ws) d->ops->alloc(d, ws, &work);
    d->ops->set_work(d, work, ws);
    d->ops->matmul(d, LYRA_TYPE_F32, W, MR, MC, x, MT, o->mm);
    d->ops->set_work(d, NULL, 0);
    if (work) d->ops->free(d, work, ws);
    (void)pass;
    free(W); free(x); free(w); free(K); free(V); free(q);
    cache_free(&c);
}

static void free_outs(outs *o) { free(o->att); free(o->rope); free(o->norm); free(o->glu); free(o->mm); }

static void test_threads(lyra_cpu_path p) {
    outs base = {0};
    for (int th = 1; th <= 3; th++) {
        lyra_device *d = new_dev(p, th);
        if (!d) return;
        CHECK(lyra_cpu_device_threads(d) == th, "threads %d", lyra_cpu_device_threads(d));
        outs o = {0};
        run_big(d, &o, th);
        if (th == 1) base = o;
        else {
            CHECK(!memcmp(o.att, base.att, sizeof(float) * 16 * 8 * 64), "%s: attention differs with %d threads", lyra_cpu_path_name(p), th);
            CHECK(!memcmp(o.rope, base.rope, sizeof(float) * 16 * 8 * 64 * 8), "%s: rope differs with %d threads", lyra_cpu_path_name(p), th);
            CHECK(!memcmp(o.norm, base.norm, sizeof(float) * 70000), "%s: rmsnorm differs with %d threads", lyra_cpu_path_name(p), th);
            CHECK(!memcmp(o.glu, base.glu, sizeof(float) * 70000), "%s: swiglu/add differs with %d threads", lyra_cpu_path_name(p), th);
            CHECK(!memcmp(o.mm, base.mm, sizeof(float) * 7 * 300), "%s: matmul differs with %d threads", lyra_cpu_path_name(p), th);
            free_outs(&o);
        }
        lyra_device_free(d);
    }
    free_outs(&base);
}

/* ---- memory accounting ---- */
static void test_memory(void) {
    lyra_device *d = new_dev(LYRA_CPU_SCALAR, 1);
    if (!d) return;
    void *a = NULL, *b = NULL, *c = NULL;
    CHECK(d->ops->alloc(d, 1000, &a) == 0 && a, "alloc 1000");
    CHECK(d->ops->alloc(d, 5000, &b) == 0 && b, "alloc 5000");
    CHECK(((uintptr_t)a & 63) == 0, "alloc alignment");
    CHECK(d->stats.alloc_calls == 2 && d->stats.allocated == 6000 && d->stats.peak == 6000,
          "stats %llu %llu %llu", (unsigned long long)d->stats.alloc_calls,
          (unsigned long long)d->stats.allocated, (unsigned long long)d->stats.peak);
    d->ops->free(d, a, 1000);
    CHECK(d->stats.allocated == 5000 && d->stats.peak == 6000, "after free");
    d->budget = 8000;
    c = (void *)1;
    CHECK(d->ops->alloc(d, 4000, &c) == LYRA_ERR_OOM && c == NULL, "budget: OOM expected");
    CHECK(d->stats.alloc_calls == 3 && d->stats.allocated == 5000, "failed alloc changes nothing");
    CHECK(d->ops->alloc(d, 3000, &c) == 0 && c, "alloc within the budget");
    d->budget = 0;
    void *huge = (void *)1;
    CHECK(d->ops->alloc(d, SIZE_MAX - 10, &huge) == LYRA_ERR_OOM && huge == NULL, "huge alloc: OOM");
    d->ops->free(d, b, 5000);
    d->ops->free(d, c, 3000);
    CHECK(d->stats.allocated == 0, "all freed");
    static const char map[4096];
    CHECK(d->ops->adopt(d, map, sizeof map) == 0 && d->stats.mapped == sizeof map, "adopt");
    d->ops->unadopt(d, map, sizeof map);
    CHECK(d->stats.mapped == 0, "unadopt");
    CHECK(lyra_device_free_mem(d) > 0 && d->total > 0, "memory sizes");
    lyra_device_free(d);
}

int main(void) {
    lyra_rng_seed(&rng, 42);
    test_memory();
    lyra_cpu_path paths[3] = {LYRA_CPU_SCALAR, LYRA_CPU_AVX2, LYRA_CPU_AVX512};
    for (int pi = 0; pi < 3; pi++) {
        if (!lyra_cpu_path_available(paths[pi])) {
            printf("path %s not available here: not tested\n", lyra_cpu_path_name(paths[pi]));
            continue;
        }
        lyra_device *d = new_dev(paths[pi], 2);
        if (!d) continue;
        printf("path %s\n", lyra_cpu_path_name(paths[pi]));
        test_rope(d);
        test_small_ops(d);
        int hds[3] = {64, 8, 24}; /* SIMD, scalar (hd 8 < 16 on AVX-512) and AVX2 tails */
        for (int i = 0; i < 3; i++) test_attention(d, hds[i], 8, 2);
        test_attention(d, 32, 6, 6); /* no grouping */
        test_attention(d, 16, 16, 1); /* multi-query: groups split over ATT_MAXG */
        test_attention(d, 80, 10, 2);  /* groups of 5; column slices with a masked end */
        test_attention(d, 128, 12, 4); /* two column slices */
        test_attention(d, 64, 32, 32); /* Phi-2: 2048 KV dims, a decode token's store split over the threads */
        test_attention(d, 80, 13, 13); /* 1040 KV dims: the split's last block short */
        lyra_device_free(d);
        test_threads(paths[pi]);
        test_matmul_multi(paths[pi]);
    }
    unsetenv("LYRA_CPU");
    return test_done();
}
