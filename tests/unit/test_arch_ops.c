/* test_arch_ops.c: the device ops the architectures beyond Llama need
 * (device.h), on the CPU device against naive double-precision loops, on
 * every kernel path this CPU has: NeoX and partial rope, layernorm (with and
 * without bias), add_bias, gelu, geglu (in place), scale, softcap, attention
 * with soft-capping and a sliding window over F32/F16 caches; a ring cache
 * (lyra_kv_view.n_ring) gives BITWISE the attention of a full cache with the
 * window; results do not depend on the thread count; a simulated GPU gives
 * BITWISE the CPU's results. */
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
    lyra_device *d = NULL;
    lyra_error err;
    int rc = lyra_cpu_device_open(threads, lyra_cpu_path_name(p), &d, &err);
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

static double gelu_ref(double x) { return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }

/* ------------------------------------------------------------------ rope */

static void naive_rope(double *x, int ntok, int nh, int hd, const int32_t *pos, const lyra_rope *r) {
    int half = r->n_rot / 2;
    for (int t = 0; t < ntok; t++)
        for (int h = 0; h < nh; h++) {
            double *v = x + ((size_t)t * nh + h) * hd;
            for (int i = 0; i < half; i++) {
                double f = r->freq_scale * pow(r->freq_base, -2.0 * i / r->n_rot);
                if (r->freq_factors) f /= r->freq_factors[i];
                double th = pos[t] * f;
                int i0 = r->neox ? i : 2 * i, i1 = r->neox ? i + half : 2 * i + 1;
                double a = v[i0], b = v[i1];
                v[i0] = a * cos(th) - b * sin(th);
                v[i1] = a * sin(th) + b * cos(th);
            }
        }
}

static void test_rope(lyra_device *d) {
    enum { NT = 5, NH = 3, HD = 32 };
    float ff[HD / 2];
    for (int i = 0; i < HD / 2; i++) ff[i] = 1.0f + (float)i * 0.5f;
    lyra_rope variants[4] = {{HD, 10000.0f, 1.0f, NULL, 1},   /* NeoX */
                             {HD, 1e6f, 0.5f, ff, 1},          /* NeoX, scaled, factors */
                             {8, 10000.0f, 1.0f, NULL, 1},     /* NeoX partial (Phi-2) */
                             {12, 10000.0f, 1.0f, NULL, 0}};   /* pairwise partial */
    int32_t pos[NT] = {0, 1, 9, 300, 4095};
    for (int v = 0; v < 4; v++)
        for (int ntok = 1; ntok <= NT; ntok += NT - 1) { /* 1 (the decode table) and 5 */
            float x[NT * NH * HD];
            double ref[NT * NH * HD];
            fill(x, sizeof x / sizeof x[0], 1.0f);
            for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) ref[i] = x[i];
            int32_t p[NT];
            for (int t = 0; t < ntok; t++) p[t] = pos[ntok == 1 ? 3 + v % 2 : t];
            d->ops->rope(d, x, ntok, NH, HD, p, &variants[v]);
            naive_rope(ref, ntok, NH, HD, p, &variants[v]);
            double md = maxdiff(x, ref, (size_t)ntok * NH * HD);
            CHECK(md < 2e-6, "rope variant %d ntok %d: max diff %g", v, ntok, md);
        }
}

/* ------------------------------------------------------ elementwise, norms */

static void test_small_ops(lyra_device *d) {
    enum { N = 200, T = 3, M = 1000 };
    float x[N * T], w[N], b[N], out[N * T];
    double ref[N * T];
    fill(x, N * T, 3.0f);
    for (int i = 0; i < N * T; i++) x[i] += 0.5f; /* a mean to remove */
    fill(w, N, 1.0f);
    fill(b, N, 1.0f);
    for (int with_b = 0; with_b < 2; with_b++) {
        d->ops->layernorm(d, x, w, with_b ? b : NULL, 1e-5f, N, T, out);
        for (int t = 0; t < T; t++) {
            double mean = 0, var = 0;
            for (int i = 0; i < N; i++) mean += x[t * N + i];
            mean /= N;
            for (int i = 0; i < N; i++) var += (x[t * N + i] - mean) * (x[t * N + i] - mean);
            var /= N;
            for (int i = 0; i < N; i++)
                ref[t * N + i] = (x[t * N + i] - mean) / sqrt(var + 1e-5) * w[i] + (with_b ? b[i] : 0);
        }
        double md = maxdiff(out, ref, N * T);
        CHECK(md < 1e-5, "layernorm (bias %d): max diff %g", with_b, md);
    }
    memcpy(out, x, sizeof x);
    d->ops->add_bias(d, out, b, N, T);
    for (int i = 0; i < N * T; i++) ref[i] = (float)(x[i] + b[i % N]);
    CHECK(maxdiff(out, ref, N * T) == 0, "add_bias");
    float g[M], u[M], o[M];
    double r[M];
    fill(g, M, 6.0f);
    fill(u, M, 2.0f);
    d->ops->gelu(d, g, M, o);
    for (int i = 0; i < M; i++) r[i] = gelu_ref(g[i]);
    CHECK(maxdiff(o, r, M) < 1e-5, "gelu: max diff %g", maxdiff(o, r, M));
    memcpy(o, g, sizeof g);
    d->ops->gelu(d, o, M, o); /* in place */
    CHECK(maxdiff(o, r, M) < 1e-5, "gelu in place");
    memcpy(o, g, sizeof g);
    d->ops->geglu(d, o, u, M, o); /* out == gate */
    for (int i = 0; i < M; i++) r[i] = gelu_ref(g[i]) * u[i];
    CHECK(maxdiff(o, r, M) < 1e-5, "geglu: max diff %g", maxdiff(o, r, M));
    memcpy(o, g, sizeof g);
    d->ops->scale(d, o, M, 8.0f);
    for (int i = 0; i < M; i++) r[i] = (double)g[i] * 8.0;
    CHECK(maxdiff(o, r, M) == 0, "scale");
    memcpy(o, g, sizeof g);
    d->ops->softcap(d, o, M, 2.5f);
    for (int i = 0; i < M; i++) r[i] = 2.5 * tanh(g[i] / 2.5);
    CHECK(maxdiff(o, r, M) < 1e-6, "softcap: max diff %g", maxdiff(o, r, M));

    /* relative accuracy of the tanh behind softcap and gelu over a sweep:
     * tiny values (where the series is used), both sides of |y| = 0.5 (the
     * switch to the exp form), large ones (saturation) */
    enum { S = 4001 };
    static float sx[S], so[S];
    for (int i = 0; i < S; i++) {
        double t = (i - S / 2) / (double)(S / 2); /* -1..1 */
        sx[i] = (float)(t * fabs(t) * t * 40.0); /* dense near 0, out to +-40 */
    }
    sx[0] = 0.5f; sx[1] = -0.5f; sx[2] = 0.49999997f; sx[3] = 1e-7f; sx[4] = -3e-30f; sx[5] = 0.0f;
    double worst = 0;
    memcpy(so, sx, sizeof sx);
    d->ops->softcap(d, so, S, 1.0f);
    for (int i = 0; i < S; i++) {
        double want = tanh((double)sx[i]);
        double e = fabs(so[i] - want) / fmax(fabs(want), 1e-30);
        if (want != 0 || so[i] != 0) worst = fmax(worst, e);
    }
    CHECK(worst < 3e-7, "softcap (tanh): max rel error %g", worst);
    d->ops->gelu(d, sx, S, so);
    worst = 0;
    for (int i = 0; i < S; i++) {
        double want = gelu_ref(sx[i]);
        if (fabs(want) > 1e-20) worst = fmax(worst, fabs(so[i] - want) / fabs(want));
    }
    CHECK(worst < 1e-6, "gelu: max rel error %g", worst);
}

/* ------------------------------------------------------------- attention */

enum { CH = 16, NCH = 64 }; /* positions per chunk, chunk slots */

typedef struct {
    lyra_kv_view view;
    void *k[NCH], *v[NCH];
    int n;
} cache;

/* n chunk slots; ring > 0: a ring of that many. */
static void cache_init(cache *c, lyra_type t, int kv_dim, int n, int ring) {
    size_t es = t == LYRA_TYPE_F16 ? 2 : 4;
    memset(c, 0, sizeof *c);
    for (int i = 0; i < n; i++) {
        c->k[i] = calloc(CH * (size_t)kv_dim, es);
        c->v[i] = calloc(CH * (size_t)kv_dim, es);
    }
    c->n = n;
    c->view.k_chunks = c->k;
    c->view.v_chunks = c->v;
    c->view.chunk_len = CH;
    c->view.kv_type = t;
    c->view.n_ring = ring;
}

static void cache_free(cache *c) {
    for (int i = 0; i < c->n; i++) { free(c->k[i]); free(c->v[i]); }
}

/* Scores s = scale q.k, soft-capped, causal and windowed, softmax, V. K/V as
 * stored (F16 rounding applied to the inputs). */
static void naive_attention(const float *q, const float *K, const float *V, int f16, int pos0, int ntok,
                            const lyra_attn_params *ap, double *out) {
    int nh = ap->n_head, nkv = ap->n_kv_head, hd = ap->head_dim, kv_dim = nkv * hd;
    double *s = malloc(sizeof(double) * (size_t)(pos0 + ntok));
#define KV_AT(A, p, j) (f16 ? (double)lyra_fp16_to_f32(lyra_f32_to_fp16(A[(size_t)(p) * kv_dim + (j)])) \
                            : (double)A[(size_t)(p) * kv_dim + (j)])
    for (int t = 0; t < ntok; t++)
        for (int h = 0; h < nh; h++) {
            int kvh = h / (nh / nkv), np = pos0 + t + 1;
            int p0 = ap->window > 0 && np > ap->window ? np - ap->window : 0;
            const float *qv = q + ((size_t)t * nh + h) * hd;
            double mx = -1e300, sum = 0;
            for (int p = p0; p < np; p++) {
                double acc = 0;
                for (int j = 0; j < hd; j++) acc += qv[j] * KV_AT(K, p, kvh * hd + j);
                acc *= ap->scale;
                if (ap->softcap > 0) acc = ap->softcap * tanh(acc / ap->softcap);
                s[p] = acc;
                if (acc > mx) mx = acc;
            }
            for (int p = p0; p < np; p++) { s[p] = exp(s[p] - mx); sum += s[p]; }
            double *o = out + ((size_t)t * nh + h) * hd;
            for (int j = 0; j < hd; j++) {
                double acc = 0;
                for (int p = p0; p < np; p++) acc += s[p] * KV_AT(V, p, kvh * hd + j);
                o[j] = acc / sum;
            }
        }
#undef KV_AT
    free(s);
}

/* Store positions [0, npos) through kv_store in uneven batches of at most
 * max_batch (a ring must be sized for it). */
static void store_all(lyra_device *d, cache *c, int npos, int kv_dim, const float *K, const float *V,
                      int max_batch) {
    int batches[] = {1, 7, 5, 3, 16, 2};
    int p = 0, b = 0;
    while (p < npos) {
        int n = batches[b++ % 6];
        if (n > max_batch) n = max_batch;
        if (n > npos - p) n = npos - p;
        d->ops->kv_store(d, &c->view, p, n, kv_dim, K + (size_t)p * kv_dim, V + (size_t)p * kv_dim);
        p += n;
    }
}

/* Windowed and soft-capped attention against the naive loop; a ring cache
 * against the full one, bitwise. */
static void test_attention(lyra_device *d, int hd, int nh, int nkv, int window, float softcap) {
    enum { NPOS = 300, NT = 6 };
    int kv_dim = nkv * hd, pos0 = NPOS - NT;
    float *K = malloc(sizeof(float) * NPOS * (size_t)kv_dim), *V = malloc(sizeof(float) * NPOS * (size_t)kv_dim);
    float *q = malloc(sizeof(float) * NT * (size_t)nh * hd), *out = malloc(sizeof(float) * NT * (size_t)nh * hd);
    float *out_ring = malloc(sizeof(float) * NT * (size_t)nh * hd);
    double *ref = malloc(sizeof(double) * NT * (size_t)nh * hd);
    fill(K, (size_t)NPOS * kv_dim, 1.0f);
    fill(V, (size_t)NPOS * kv_dim, 1.0f);
    fill(q, (size_t)NT * nh * hd, 3.0f);
    const size_t n_out = (size_t)NT * nh * hd;
    lyra_attn_params ap = {nh, nkv, hd, 1.0f / sqrtf((float)hd), softcap, window};
    for (int ty = 0; ty < 2; ty++) {
        lyra_type t = ty ? LYRA_TYPE_F16 : LYRA_TYPE_F32;
        cache full;
        cache_init(&full, t, kv_dim, (NPOS + CH - 1) / CH, 0);
        store_all(d, &full, NPOS, kv_dim, K, V, 16);
        d->ops->attention(d, q, &full.view, pos0, NT, &ap, out);
        naive_attention(q, K, V, ty, pos0, NT, &ap, ref);
        double md = maxdiff(out, ref, n_out);
        CHECK(md < 2e-5, "attention %s hd %d nh %d nkv %d window %d softcap %g: max diff %g",
              lyra_type_name(t), hd, nh, nkv, window, (double)softcap, md);
        /* decode: the last token alone */
        float *o1 = malloc(sizeof(float) * (size_t)nh * hd);
        d->ops->attention(d, q + (size_t)(NT - 1) * nh * hd, &full.view, NPOS - 1, 1, &ap, o1);
        md = maxdiff(o1, ref + (size_t)(NT - 1) * nh * hd, (size_t)nh * hd);
        CHECK(md < 2e-5, "attention decode %s hd %d window %d: max diff %g", lyra_type_name(t), hd, window, md);
        free(o1);
        if (window > 0) { /* the same through a ring sized for batches of 16 */
            int ring = (window + 16 - 1 + CH - 1) / CH + 1;
            cache rc;
            cache_init(&rc, t, kv_dim, ring, ring);
            store_all(d, &rc, pos0, kv_dim, K, V, 16);
            d->ops->kv_store(d, &rc.view, pos0, NT, kv_dim, K + (size_t)pos0 * kv_dim, V + (size_t)pos0 * kv_dim);
            d->ops->attention(d, q, &rc.view, pos0, NT, &ap, out_ring);
            CHECK(!memcmp(out_ring, out, n_out * sizeof(float)),
                  "ring of %d chunks vs full cache %s hd %d window %d: not bitwise equal", ring,
                  lyra_type_name(t), hd, window);
            cache_free(&rc);
        }
        cache_free(&full);
    }
    free(K); free(V); free(q); free(out); free(out_ring); free(ref);
}

/* ----------------------------------------- threads, simulated GPU (bitwise) */

typedef struct outs {
    float *att, *rope, *ln, *ew;
} outs;

enum { B_HD = 32, B_NH = 8, B_NKV = 2, B_NPOS = 200, B_NT = 12, B_N = 70000, B_E = 1000 };

/* A device pointer of d holding host[n] (NULL: n zero bytes). */
static void *put(lyra_device *d, const void *host, size_t n) {
    void *p = NULL;
    CHECK(d->ops->alloc(d, n, &p) == 0, "alloc %zu on %s", n, d->id);
    if (!p) return NULL;
    if (host) d->ops->copy_in(d, p, host, n);
    else {
        void *z = calloc(1, n);
        d->ops->copy_in(d, p, z, n);
        free(z);
    }
    return p;
}

/* The new ops, big enough for the thread pool, on d (inputs made from seed). */
static void run_big(lyra_device *d, outs *o) {
    lyra_rng_seed(&rng, 77);
    const int kv_dim = B_NKV * B_HD, ring = (10 + B_NT - 1 + CH - 1) / CH + 1;
    size_t nk = (size_t)B_NPOS * kv_dim, nq = (size_t)B_NT * B_NH * B_HD;
    float *K = malloc(nk * 4), *V = malloc(nk * 4), *q = malloc(nq * 4);
    float *x = malloc((size_t)B_N * 4), *w = malloc(B_E * 4), *b = malloc(B_E * 4);
    fill(K, nk, 1.0f);
    fill(V, nk, 1.0f);
    fill(q, nq, 2.0f);
    fill(x, B_N, 3.0f);
    fill(w, B_E, 1.0f);
    fill(b, B_E, 1.0f);
    size_t chunk = (size_t)CH * kv_dim * 2;
    void *kc[NCH], *vc[NCH];
    for (int c = 0; c < ring; c++) {
        kc[c] = put(d, NULL, chunk);
        vc[c] = put(d, NULL, chunk);
    }
    lyra_kv_view kv = {kc, vc, CH, LYRA_TYPE_F16, ring};
    float *dK = put(d, K, nk * 4), *dV = put(d, V, nk * 4), *dq = put(d, q, nq * 4);
    float *datt = put(d, NULL, nq * 4), *drope = put(d, q, nq * 4);
    lyra_attn_params ap = {B_NH, B_NKV, B_HD, 0.17f, 1.5f, 10};
    for (int p0 = 0; p0 < B_NPOS; p0 += B_NT) {
        int n = B_NPOS - p0 < B_NT ? B_NPOS - p0 : B_NT;
        d->ops->kv_store(d, &kv, p0, n, kv_dim, dK + (size_t)p0 * kv_dim, dV + (size_t)p0 * kv_dim);
        d->ops->attention(d, dq, &kv, p0, n, &ap, datt);
    }
    int32_t pos[B_NT];
    for (int t = 0; t < B_NT; t++) pos[t] = 50 + 7 * t;
    lyra_rope r = {B_HD / 2, 1e6f, 0.5f, NULL, 1};
    d->ops->rope(d, drope, B_NT, B_NH, B_HD, pos, &r);
    float *dx = put(d, x, (size_t)B_N * 4), *dw = put(d, w, B_E * 4), *db = put(d, b, B_E * 4);
    float *dln = put(d, NULL, (size_t)B_N * 4), *dew = put(d, NULL, (size_t)B_N * 4);
    d->ops->layernorm(d, dx, dw, db, 1e-5f, B_E, B_N / B_E, dln);
    d->ops->add_bias(d, dln, db, B_E, B_N / B_E);
    d->ops->gelu(d, dx, B_N, dew);
    d->ops->geglu(d, dew, dln, B_N, dew);
    d->ops->scale(d, dew, B_N, 0.75f);
    d->ops->softcap(d, dew, B_N, 4.0f);
    lyra_error err;
    CHECK(d->ops->sync(d, &err) == 0, "%s: sync: %s", d->id, err.msg);
    o->att = malloc(nq * 4);
    o->rope = malloc(nq * 4);
    o->ln = malloc((size_t)B_N * 4);
    o->ew = malloc((size_t)B_N * 4);
    d->ops->copy_out(d, o->att, datt, nq * 4);
    d->ops->copy_out(d, o->rope, drope, nq * 4);
    d->ops->copy_out(d, o->ln, dln, (size_t)B_N * 4);
    d->ops->copy_out(d, o->ew, dew, (size_t)B_N * 4);
    void *ptrs[] = {dK, dV, dq, datt, drope, dx, dw, db, dln, dew};
    size_t sizes[] = {nk * 4, nk * 4, nq * 4, nq * 4, nq * 4, (size_t)B_N * 4, B_E * 4, B_E * 4,
                      (size_t)B_N * 4, (size_t)B_N * 4};
    for (int i = 0; i < 10; i++) d->ops->free(d, ptrs[i], sizes[i]);
    for (int c = 0; c < ring; c++) {
        d->ops->free(d, kc[c], chunk);
        d->ops->free(d, vc[c], chunk);
    }
    free(K); free(V); free(q); free(x); free(w); free(b);
}

static void free_outs(outs *o) { free(o->att); free(o->rope); free(o->ln); free(o->ew); }

static int same_outs(const outs *a, const outs *b) {
    size_t nq = (size_t)B_NT * B_NH * B_HD * 4, nn = (size_t)B_N * 4;
    return !memcmp(a->att, b->att, nq) && !memcmp(a->rope, b->rope, nq) && !memcmp(a->ln, b->ln, nn) &&
           !memcmp(a->ew, b->ew, nn);
}

static void test_threads_sim(lyra_cpu_path p) {
    outs base = {0};
    for (int th = 1; th <= 3; th++) {
        lyra_device *d = new_dev(p, th);
        if (!d) return;
        outs o = {0};
        run_big(d, &o);
        if (th == 1) base = o;
        else {
            CHECK(same_outs(&o, &base), "%s: results differ with %d threads", lyra_cpu_path_name(p), th);
            free_outs(&o);
        }
        lyra_device_free(d);
    }
    /* a simulated GPU computing with a CPU device of this path */
    lyra_sim_spec spec = {64u << 20, 64u << 20};
    lyra_device *sim = NULL;
    lyra_error err;
    int rc = lyra_sim_device_new(0, &spec, new_dev(p, 2), &sim, &err);
    CHECK(rc == 0, "sim: %s", err.msg);
    if (!rc) {
        outs o = {0};
        run_big(sim, &o);
        CHECK(same_outs(&o, &base), "%s: the simulated GPU differs from the CPU", lyra_cpu_path_name(p));
        free_outs(&o);
        lyra_device_free(sim);
    }
    free_outs(&base);
}

int main(void) {
    lyra_rng_seed(&rng, 4242);
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
        test_attention(d, 64, 8, 2, 0, 0.0f);   /* as Llama */
        test_attention(d, 64, 8, 2, 0, 1.0f);   /* soft-capped (Gemma 2) */
        test_attention(d, 32, 4, 4, 20, 0.0f);  /* window of 20 (chunks of 16) */
        test_attention(d, 24, 6, 2, 33, 2.0f);  /* window and cap, AVX2 tails */
        test_attention(d, 8, 8, 1, 5, 0.0f);    /* window inside one chunk */
        test_attention(d, 128, 4, 2, 256, 0.0f);/* window over ATT_BLOCK-sized spans */
        lyra_device_free(d);
        test_threads_sim(paths[pi]);
    }
    return test_done();
}
