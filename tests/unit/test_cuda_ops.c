/* test_cuda_ops.c: every op of the CUDA device against the CPU device on the
 * same random inputs (needs a GPU: skipped with exit 77 otherwise, and in
 * builds without CUDA). Measured as relative RMS error,
 * sqrt(sum (gpu - cpu)^2 / sum cpu^2), printed for every case:
 *   - matmul, all weight types (F32 F16 BF16 Q8_0 Q4_0 Q5_0 Q4_K Q5_K Q6_K), odd
 *     row counts, 1..8 tokens (decode kernel) and 9, 64 (cuBLAS), columns
 *     not a multiple of 32 for float weights: <= 1e-3 (the bound);
 *     matmul_multi bit for bit equal to separate matmuls;
 *   - get_rows (every type, more than 256 ids) and kv_store (the CPU's cache
 *     converted to rows, lyra_cpu_kv_to_rows): bit for bit;
 *   - rmsnorm, rope (freq_factors, 300 tokens), swiglu, add, attention (head
 *     dims 8/64/128, grouped-query, F16/F32 cache, positions across chunk
 *     boundaries, more than 16 chunks): <= 1e-5 (same formulas; only the
 *     summation order and expf's last bit differ);
 *   - issue 13's ops against the host emulation of their kernels (cuda.h,
 *     lyra_cuda_host_*, itself checked against scalar references by
 *     test_cuda_math) and, when the CPU device has the op, against the CPU:
 *     layernorm, add_bias and scale bit for bit (the same float operations
 *     in the same order); gelu, geglu, softcap <= 1e-6 (CUDA's tanhf vs
 *     libm's); rope NeoX and partial <= 1e-5; kv_store into a ring bit for
 *     bit; attention with soft-capping and sliding windows (whole cache and
 *     ring) <= 1e-5;
 *   - memory: stats, budget and a huge allocation -> LYRA_ERR_OOM with the
 *     device still usable, adopt refused, free memory, copies larger than the
 *     staging buffer, deferred errors reported by sync;
 *   - LYRA_CUDA_DEVICES=0,0: two devices on one card with separate
 *     accounting and half the memory each. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build_info.h"
#include "core/fp16.h"
#include "core/rng.h"
#include "device/cuda.h"
#include "device/device.h"
#include "testutil.h"

#if !LYRA_BUILD_HAVE_CUDA
int main(void) {
    test_skip("built without CUDA (LYRA_CUDA=OFF or no nvcc)");
    return 77;
}
#else

static lyra_rng rng;
static float frand(void) { return lyra_rng_f32(&rng) * 2.0f - 1.0f; }
static void fill(float *x, size_t n, float s) { for (size_t i = 0; i < n; i++) x[i] = frand() * s; }

static lyra_device *cpu, *gpu;

/* Device copy of n host bytes (alloc + copy_in), NULL on failure. */
static void *up(lyra_device *d, const void *host, size_t n) {
    void *p = NULL;
    int rc = d->ops->alloc(d, n, &p);
    CHECK(rc == 0, "alloc %zu on %s: %d", n, d->id, rc);
    if (rc) return NULL;
    if (host) CHECK(d->ops->copy_in(d, p, host, n) == 0, "copy_in %zu", n);
    return p;
}

static void down(lyra_device *d, void *host, const void *p, size_t n) {
    CHECK(d->ops->copy_out(d, host, p, n) == 0, "copy_out %zu", n);
}

static void release(lyra_device *d, void *p, size_t n) { d->ops->free(d, p, n); }

static void synced(lyra_device *d, const char *what) {
    lyra_error err;
    int rc = d->ops->sync(d, &err);
    CHECK(rc == 0, "%s: sync: %s", what, err.msg);
}

static double rel_rms(const float *got, const float *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)got[i] - want[i];
        num += e * e;
        den += (double)want[i] * want[i];
    }
    if (!(num == num)) return INFINITY; /* NaN */
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Work memory of d for these shapes (max over types and columns). */
static void *work_for(lyra_device *d, const lyra_type *t, int nt, const int64_t *cols, int nc,
                      int ntok, size_t *size) {
    size_t ws = 0;
    for (int i = 0; i < nt; i++)
        for (int j = 0; j < nc; j++) {
            if (cols[j] % lyra_type_block(t[i])) continue;
            size_t w = d->ops->matmul_work_size(d, t[i], cols[j], ntok);
            if (w > ws) ws = w;
        }
    void *p = NULL;
    if (ws) p = up(d, NULL, ws);
    d->ops->set_work(d, p, ws);
    *size = ws;
    return p;
}

/* ------------------------------------------------------------------ matmul */

static const lyra_type TYPES[] = {LYRA_TYPE_F32, LYRA_TYPE_F16, LYRA_TYPE_BF16, LYRA_TYPE_Q8_0,
                                  LYRA_TYPE_Q4_0, LYRA_TYPE_Q5_0, LYRA_TYPE_Q4_K, LYRA_TYPE_Q5_K,
                                  LYRA_TYPE_Q6_K};
#define NTYPES ((int)(sizeof TYPES / sizeof TYPES[0]))

static void test_matmul(void) {
    const int64_t shapes[][2] = {{67, 256}, {1001, 4096}, {37, 172}, {4, 2048}};
    const int toks[] = {1, 2, 7, 8, 9, 64};
    const int64_t cols_all[] = {256, 4096, 172, 2048};
    size_t gws, cws;
    void *gw = work_for(gpu, TYPES, NTYPES, cols_all, 4, 64, &gws);
    void *cw = work_for(cpu, TYPES, NTYPES, cols_all, 4, 64, &cws);
    double worst = 0;
    for (int ti = 0; ti < NTYPES; ti++) {
        lyra_type t = TYPES[ti];
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            int64_t rows = shapes[si][0], cols = shapes[si][1];
            if (cols % lyra_type_block(t)) continue;
            size_t rb = lyra_row_bytes(t, cols);
            uint8_t *W = malloc(rb * (size_t)rows);
            float *row = malloc(sizeof(float) * (size_t)cols);
            for (int64_t r = 0; r < rows; r++) {
                fill(row, (size_t)cols, 0.5f + (float)(r % 5));
                lyra_quantize_row(t, row, W + (size_t)r * rb, cols);
            }
            float *X = malloc(sizeof(float) * (size_t)cols * 64);
            fill(X, (size_t)cols * 64, 2.0f);
            float *Yc = malloc(sizeof(float) * (size_t)rows * 64), *Yg = malloc(sizeof(float) * (size_t)rows * 64);
            void *dW = up(gpu, W, rb * (size_t)rows), *dX = up(gpu, X, sizeof(float) * (size_t)cols * 64);
            void *dY = up(gpu, NULL, sizeof(float) * (size_t)rows * 64);
            for (size_t k = 0; k < sizeof toks / sizeof toks[0] && dW && dX && dY; k++) {
                int nt = toks[k];
                cpu->ops->matmul(cpu, t, W, rows, cols, X, nt, Yc);
                gpu->ops->matmul(gpu, t, dW, rows, cols, dX, nt, dY);
                down(gpu, Yg, dY, sizeof(float) * (size_t)rows * nt);
                synced(gpu, "matmul");
                double e = rel_rms(Yg, Yc, (size_t)rows * nt);
                CHECK(e <= 1e-3, "matmul %s %lldx%lld ntok %d: rel rms %g", lyra_type_name(t),
                      (long long)rows, (long long)cols, nt, e);
                printf("matmul %-5s %5lld x %-5lld ntok %2d: rel rms %.2e\n", lyra_type_name(t),
                       (long long)rows, (long long)cols, nt, e);
                if (!(e <= worst)) worst = e;
            }
            release(gpu, dW, rb * (size_t)rows);
            release(gpu, dX, sizeof(float) * (size_t)cols * 64);
            release(gpu, dY, sizeof(float) * (size_t)rows * 64);
            free(W); free(row); free(X); free(Yc); free(Yg);
        }
    }
    printf("matmul: worst rel rms %.2e (bound 1e-3)\n", worst);
    gpu->ops->set_work(gpu, NULL, 0);
    cpu->ops->set_work(cpu, NULL, 0);
    if (gw) release(gpu, gw, gws);
    if (cw) release(cpu, cw, cws);
}

/* matmul_multi gives the bits of separate matmuls (fused groups, mixed types). */
static void test_matmul_multi(void) {
    const lyra_type sets[2][3] = {{LYRA_TYPE_Q4_K, LYRA_TYPE_Q4_K, LYRA_TYPE_Q6_K},
                                  {LYRA_TYPE_Q8_0, LYRA_TYPE_Q4_0, LYRA_TYPE_F16}};
    const int64_t rows[3] = {96, 40, 41}, cols = 512;
    const lyra_type all[6] = {LYRA_TYPE_Q4_K, LYRA_TYPE_Q6_K, LYRA_TYPE_Q8_0, LYRA_TYPE_Q4_0,
                              LYRA_TYPE_F16, LYRA_TYPE_F32};
    size_t ws;
    void *work = work_for(gpu, all, 6, &cols, 1, 5, &ws);
    float X[5 * 512];
    fill(X, 5 * 512, 1.0f);
    void *dX = up(gpu, X, sizeof X);
    for (int s = 0; s < 2; s++) {
        void *dW[3], *dY[3], *dR[3];
        size_t wb[3];
        for (int i = 0; i < 3; i++) {
            size_t rb = lyra_row_bytes(sets[s][i], cols);
            wb[i] = rb * (size_t)rows[i];
            uint8_t *W = malloc(wb[i]);
            float row[512];
            for (int64_t r = 0; r < rows[i]; r++) {
                fill(row, 512, 1.0f);
                lyra_quantize_row(sets[s][i], row, W + (size_t)r * rb, cols);
            }
            dW[i] = up(gpu, W, wb[i]);
            dY[i] = up(gpu, NULL, sizeof(float) * 5 * (size_t)rows[i]);
            dR[i] = up(gpu, NULL, sizeof(float) * 5 * (size_t)rows[i]);
            free(W);
        }
        for (int nt = 1; nt <= 5; nt += 4) {
            for (int i = 0; i < 3; i++)
                gpu->ops->matmul(gpu, sets[s][i], dW[i], rows[i], cols, dX, nt, dR[i]);
            gpu->ops->matmul_multi(gpu, 3, sets[s], (const void *const *)dW, rows, cols, dX, nt,
                                   (float *const *)dY);
            for (int i = 0; i < 3; i++) {
                size_t n = sizeof(float) * (size_t)nt * (size_t)rows[i];
                float *a = malloc(n), *b = malloc(n);
                down(gpu, a, dY[i], n);
                down(gpu, b, dR[i], n);
                CHECK(!memcmp(a, b, n), "matmul_multi set %d matrix %d ntok %d differs", s, i, nt);
                free(a); free(b);
            }
        }
        synced(gpu, "matmul_multi");
        for (int i = 0; i < 3; i++) {
            release(gpu, dW[i], wb[i]);
            release(gpu, dY[i], sizeof(float) * 5 * (size_t)rows[i]);
            release(gpu, dR[i], sizeof(float) * 5 * (size_t)rows[i]);
        }
    }
    release(gpu, dX, sizeof X);
    gpu->ops->set_work(gpu, NULL, 0);
    if (work) release(gpu, work, ws);
}

/* ------------------------------------------------------------- small ops */

static void test_get_rows(void) {
    enum { R = 10, C = 256, NT = 300 };
    int32_t ids[NT];
    for (int i = 0; i < NT; i++) ids[i] = (i * 7 + 3) % R;
    float *tab = malloc(sizeof(float) * R * C), *a = malloc(sizeof(float) * NT * C),
          *b = malloc(sizeof(float) * NT * C);
    fill(tab, R * C, 1.0f);
    for (int ti = 0; ti < NTYPES; ti++) {
        lyra_type t = TYPES[ti];
        size_t rb = lyra_row_bytes(t, C);
        uint8_t *q = malloc(rb * R);
        for (int r = 0; r < R; r++) lyra_quantize_row(t, tab + r * C, q + r * rb, C);
        void *dq = up(gpu, q, rb * R), *dout = up(gpu, NULL, sizeof(float) * NT * C);
        cpu->ops->get_rows(cpu, t, q, C, ids, NT, a);
        gpu->ops->get_rows(gpu, t, dq, C, ids, NT, dout);
        down(gpu, b, dout, sizeof(float) * NT * C);
        synced(gpu, "get_rows");
        CHECK(!memcmp(a, b, sizeof(float) * NT * C), "get_rows %s differs from the CPU's",
              lyra_type_name(t));
        release(gpu, dq, rb * R);
        release(gpu, dout, sizeof(float) * NT * C);
        free(q);
    }
    free(tab); free(a); free(b);
}

static void test_elementwise(void) {
    enum { N = 70000, E = 4096, T = 3 };
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N), *a = malloc(sizeof(float) * N),
          *b = malloc(sizeof(float) * N), *w = malloc(sizeof(float) * E);
    fill(x, N, 8.0f);
    fill(y, N, 1.0f);
    fill(w, E, 1.0f);
    x[0] = 100.0f;
    x[1] = -100.0f;
    void *dx = up(gpu, x, sizeof(float) * N), *dy = up(gpu, y, sizeof(float) * N);
    void *dw = up(gpu, w, sizeof(float) * E), *dout = up(gpu, NULL, sizeof(float) * N);
    /* rmsnorm */
    cpu->ops->rmsnorm(cpu, x, w, 1e-5f, E, T, a);
    gpu->ops->rmsnorm(gpu, dx, dw, 1e-5f, E, T, dout);
    down(gpu, b, dout, sizeof(float) * E * T);
    double e = rel_rms(b, a, (size_t)E * T);
    CHECK(e <= 1e-5, "rmsnorm: rel rms %g", e);
    printf("rmsnorm: rel rms %.2e\n", e);
    /* swiglu, then in place */
    cpu->ops->swiglu(cpu, x, y, N, a);
    gpu->ops->swiglu(gpu, dx, dy, N, dout);
    down(gpu, b, dout, sizeof(float) * N);
    e = rel_rms(b, a, N);
    CHECK(e <= 1e-5, "swiglu: rel rms %g", e);
    printf("swiglu: rel rms %.2e\n", e);
    gpu->ops->copy_in(gpu, dout, x, sizeof(float) * N);
    gpu->ops->swiglu(gpu, dout, dy, N, dout);
    down(gpu, b, dout, sizeof(float) * N);
    CHECK(rel_rms(b, a, N) <= 1e-5, "swiglu in place: rel rms %g", rel_rms(b, a, N));
    /* add: exact */
    memcpy(a, x, sizeof(float) * N);
    cpu->ops->add(cpu, a, y, N - 3);
    gpu->ops->add(gpu, dx, dy, N - 3);
    down(gpu, b, dx, sizeof(float) * N);
    CHECK(!memcmp(a, b, sizeof(float) * N), "add differs from the CPU's");
    synced(gpu, "elementwise");
    release(gpu, dx, sizeof(float) * N);
    release(gpu, dy, sizeof(float) * N);
    release(gpu, dw, sizeof(float) * E);
    release(gpu, dout, sizeof(float) * N);
    free(x); free(y); free(a); free(b); free(w);
}

static void test_rope(void) {
    enum { NT = 300, NH = 4, HD = 32 };
    float ff[HD / 2];
    for (int i = 0; i < HD / 2; i++) ff[i] = 1.0f + (float)i * 0.25f;
    void *dff = up(gpu, ff, sizeof ff);
    lyra_rope cv[3] = {{HD, 10000.0f, 1.0f, NULL, 0}, {HD, 500000.0f, 0.25f, ff, 0},
                       {16, 10000.0f, 1.0f, NULL, 0}};
    size_t n = (size_t)NT * NH * HD;
    float *x = malloc(sizeof(float) * n), *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    int32_t pos[NT];
    for (int t = 0; t < NT; t++) pos[t] = t * 13 + (t % 3);
    void *dx = up(gpu, NULL, sizeof(float) * n);
    for (int v = 0; v < 3; v++)
        for (int nt = 1; nt <= NT; nt += NT - 1) {
            fill(x, n, 1.0f);
            memcpy(a, x, sizeof(float) * n);
            gpu->ops->copy_in(gpu, dx, x, sizeof(float) * n);
            lyra_rope gv = cv[v];
            if (gv.freq_factors) gv.freq_factors = dff;
            cpu->ops->rope(cpu, a, nt, NH, HD, pos, &cv[v]);
            gpu->ops->rope(gpu, dx, nt, NH, HD, pos, &gv);
            down(gpu, b, dx, sizeof(float) * (size_t)nt * NH * HD);
            double e = rel_rms(b, a, (size_t)nt * NH * HD);
            CHECK(e <= 1e-5, "rope variant %d ntok %d: rel rms %g", v, nt, e);
            printf("rope variant %d ntok %3d: rel rms %.2e\n", v, nt, e);
        }
    synced(gpu, "rope");
    release(gpu, dx, sizeof(float) * n);
    release(gpu, dff, sizeof ff);
    free(x); free(a); free(b);
}

/* ------------------------------------------------------- kv cache, attention */

#define MAXCH 32

typedef struct {
    lyra_device *d;        /* owner */
    void *k[MAXCH], *v[MAXCH];
    size_t bytes;          /* per chunk half */
    lyra_kv_view view;
} cache;

static void cache_new(cache *c, lyra_device *d, lyra_type t, int L, int nch, int kv_dim) {
    memset(c, 0, sizeof *c);
    c->d = d;
    c->bytes = (size_t)L * kv_dim * (t == LYRA_TYPE_F16 ? 2 : 4);
    for (int i = 0; i < nch; i++) { /* one allocation per chunk, K then V, as the runtime */
        void *p = up(d, NULL, 2 * c->bytes);
        c->k[i] = p;
        c->v[i] = p ? (char *)p + c->bytes : NULL;
    }
    c->view.k_chunks = c->k;
    c->view.v_chunks = c->v;
    c->view.chunk_len = L;
    c->view.kv_type = t;
}

static void cache_free(cache *c) {
    for (int i = 0; i < MAXCH; i++)
        if (c->k[i]) release(c->d, c->k[i], 2 * c->bytes);
}

static void test_attention(int hd, int nh, int nkv, int L) {
    const int kv_dim = nkv * hd, npos = 700, ntok = 9, pos0 = npos - ntok;
    const int nch = (npos + L - 1) / L;
    size_t nkvf = (size_t)npos * kv_dim, nq = (size_t)ntok * nh * hd;
    float *K = malloc(sizeof(float) * nkvf), *V = malloc(sizeof(float) * nkvf);
    float *q = malloc(sizeof(float) * nq), *a = malloc(sizeof(float) * nq), *b = malloc(sizeof(float) * nq);
    fill(K, nkvf, 1.0f);
    fill(V, nkvf, 1.0f);
    fill(q, nq, 1.5f);
    void *dK = up(gpu, K, sizeof(float) * nkvf), *dV = up(gpu, V, sizeof(float) * nkvf);
    void *dq = up(gpu, q, sizeof(float) * nq), *dout = up(gpu, NULL, sizeof(float) * nq);
    for (int ty = 0; ty < 2; ty++) {
        lyra_type t = ty ? LYRA_TYPE_F16 : LYRA_TYPE_F32;
        cache cc, gc;
        cache_new(&cc, cpu, t, L, nch, kv_dim);
        cache_new(&gc, gpu, t, L, nch, kv_dim);
        const int batches[] = {1, 7, 250, 3, 300, 64};
        for (int p = 0, bi = 0; p < npos; bi++) {
            int n = batches[bi % 6] < npos - p ? batches[bi % 6] : npos - p;
            size_t off = (size_t)p * kv_dim;
            cpu->ops->kv_store(cpu, &cc.view, p, n, kv_dim, K + off, V + off);
            gpu->ops->kv_store(gpu, &gc.view, p, n, kv_dim, (float *)dK + off, (float *)dV + off);
            p += n;
        }
        /* the stored values: the GPU's chunk layout is "rows" (K [L][kv_dim]
         * then V [L][kv_dim]); the CPU's converted to rows must be the same
         * bytes for every stored position */
        size_t es = ty ? 2 : 4, rowb = (size_t)kv_dim * es;
        int ok = 1;
        uint8_t *gch = malloc(2 * gc.bytes), *crows = malloc(2 * cc.bytes);
        for (int c = 0; c < nch; c++) {
            down(gpu, gch, gc.k[c], 2 * gc.bytes);
            lyra_cpu_kv_to_rows(cc.k[c], crows, L, kv_dim, t);
            for (int r = 0; r < L && c * L + r < npos; r++)
                ok &= !memcmp(gch + r * rowb, crows + r * rowb, rowb) &&
                      !memcmp(gch + gc.bytes + r * rowb, crows + cc.bytes + r * rowb, rowb);
        }
        free(gch);
        free(crows);
        CHECK(ok, "kv_store %s hd %d L %d: stored values differ", lyra_type_name(t), hd, L);
        const lyra_attn_params ap = {nh, nkv, hd, 1.0f / sqrtf((float)hd), 0.0f, 0};
        cpu->ops->attention(cpu, q, &cc.view, pos0, ntok, &ap, a);
        gpu->ops->attention(gpu, dq, &gc.view, pos0, ntok, &ap, dout);
        down(gpu, b, dout, sizeof(float) * nq);
        double e = rel_rms(b, a, nq);
        CHECK(e <= 1e-5, "attention %s hd %d nh %d nkv %d L %d: rel rms %g", lyra_type_name(t), hd,
              nh, nkv, L, e);
        printf("attention %s hd %3d nh %2d nkv %d L %3d (%2d chunks) ntok %d: rel rms %.2e\n",
               lyra_type_name(t), hd, nh, nkv, L, nch, ntok, e);
        /* decode: one token at the last position */
        size_t last = (size_t)(ntok - 1) * nh * hd;
        cpu->ops->attention(cpu, q + last, &cc.view, npos - 1, 1, &ap, a);
        gpu->ops->attention(gpu, (float *)dq + last, &gc.view, npos - 1, 1, &ap, dout);
        down(gpu, b, dout, sizeof(float) * (size_t)nh * hd);
        e = rel_rms(b, a, (size_t)nh * hd);
        CHECK(e <= 1e-5, "attention decode %s hd %d: rel rms %g", lyra_type_name(t), hd, e);
        synced(gpu, "attention");
        cache_free(&cc);
        cache_free(&gc);
    }
    release(gpu, dK, sizeof(float) * nkvf);
    release(gpu, dV, sizeof(float) * nkvf);
    release(gpu, dq, sizeof(float) * nq);
    release(gpu, dout, sizeof(float) * nq);
    free(K); free(V); free(q); free(a); free(b);
}

/* ------------------------------------------------- issue 13's ops */

/* d's result of an op vs the host emulation's (and the CPU device's when it
 * has the op): bit for bit when exact, else within tol. */
static void compare(const char *what, const float *gpu_out, const float *emu, const float *cpu_out,
                    size_t n, int exact, double tol) {
    if (exact) {
        CHECK(!memcmp(gpu_out, emu, sizeof(float) * n), "%s: differs from the host emulation", what);
    } else {
        double e = rel_rms(gpu_out, emu, n);
        CHECK(e <= tol, "%s: rel rms %g vs the host emulation", what, e);
        printf("%s: rel rms %.2e vs the host emulation\n", what, e);
    }
    if (cpu_out) {
        double e = rel_rms(gpu_out, cpu_out, n);
        CHECK(e <= 1e-5, "%s: rel rms %g vs the CPU", what, e);
        printf("%s: rel rms %.2e vs the CPU\n", what, e);
    }
}

static void test_arch_ops(void) {
    enum { E = 2560, T = 5, N = E * T };
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N), *w = malloc(sizeof(float) * E),
          *bias = malloc(sizeof(float) * E), *g = malloc(sizeof(float) * N), *emu = malloc(sizeof(float) * N),
          *c = malloc(sizeof(float) * N);
    fill(x, N, 4.0f);
    fill(y, N, 1.0f);
    fill(w, E, 1.0f);
    fill(bias, E, 1.0f);
    for (int i = 0; i < E; i++) x[i] += 30.0f; /* a row with an offset mean */
    void *dx = up(gpu, x, sizeof(float) * N), *dy = up(gpu, y, sizeof(float) * N);
    void *dw = up(gpu, w, sizeof(float) * E), *db = up(gpu, bias, sizeof(float) * E);
    void *dout = up(gpu, NULL, sizeof(float) * N);
    /* layernorm, with and without bias; per-row (n = 64, many rows) */
    for (int v = 0; v < 3; v++) {
        int64_t n = v == 2 ? 64 : E;
        int rows = (int)(N / n);
        const float *bb = v == 1 ? NULL : bias;
        gpu->ops->layernorm(gpu, dx, dw, v == 1 ? NULL : db, 1e-5f, n, rows, dout);
        down(gpu, g, dout, sizeof(float) * N);
        for (int r = 0; r < rows; r++)
            lyra_cuda_host_layernorm(x + (size_t)r * n, w, bb, 1e-5f, n, emu + (size_t)r * n);
        int have_cpu = cpu->ops->layernorm != NULL;
        if (have_cpu) cpu->ops->layernorm(cpu, x, w, bb, 1e-5f, n, rows, c);
        char what[64];
        snprintf(what, sizeof what, "layernorm n %lld%s", (long long)n, bb ? " bias" : "");
        compare(what, g, emu, have_cpu ? c : NULL, N, 1, 0);
    }
    /* add_bias */
    gpu->ops->copy_in(gpu, dout, x, sizeof(float) * N);
    gpu->ops->add_bias(gpu, dout, db, E, T);
    down(gpu, g, dout, sizeof(float) * N);
    memcpy(emu, x, sizeof(float) * N);
    lyra_cuda_host_add_bias(emu, bias, E, T);
    if (cpu->ops->add_bias) {
        memcpy(c, x, sizeof(float) * N);
        cpu->ops->add_bias(cpu, c, bias, E, T);
    }
    compare("add_bias", g, emu, cpu->ops->add_bias ? c : NULL, N, 1, 0);
    /* scale */
    gpu->ops->copy_in(gpu, dout, x, sizeof(float) * N);
    gpu->ops->scale(gpu, dout, N - 7, 0.37f);
    down(gpu, g, dout, sizeof(float) * N);
    memcpy(emu, x, sizeof(float) * N);
    lyra_cuda_host_scale(emu, N - 7, 0.37f);
    if (cpu->ops->scale) {
        memcpy(c, x, sizeof(float) * N);
        cpu->ops->scale(cpu, c, N - 7, 0.37f);
    }
    compare("scale", g, emu, cpu->ops->scale ? c : NULL, N, 1, 0);
    /* softcap (final logits: values well past the cap) */
    for (int i = 0; i < N; i++) emu[i] = x[i] * 10.0f;
    gpu->ops->copy_in(gpu, dout, emu, sizeof(float) * N);
    if (cpu->ops->softcap) {
        memcpy(c, emu, sizeof(float) * N);
        cpu->ops->softcap(cpu, c, N, 30.0f);
    }
    gpu->ops->softcap(gpu, dout, N, 30.0f);
    down(gpu, g, dout, sizeof(float) * N);
    lyra_cuda_host_softcap(emu, N, 30.0f);
    compare("softcap", g, emu, cpu->ops->softcap ? c : NULL, N, 0, 1e-6);
    /* gelu (out of place, then in place), geglu */
    gpu->ops->gelu(gpu, dx, N, dout);
    down(gpu, g, dout, sizeof(float) * N);
    lyra_cuda_host_gelu(x, N, emu);
    if (cpu->ops->gelu) cpu->ops->gelu(cpu, x, N, c);
    compare("gelu", g, emu, cpu->ops->gelu ? c : NULL, N, 0, 1e-6);
    gpu->ops->copy_in(gpu, dout, x, sizeof(float) * N);
    gpu->ops->gelu(gpu, dout, N, dout);
    down(gpu, c, dout, sizeof(float) * N);
    CHECK(!memcmp(c, g, sizeof(float) * N), "gelu in place differs");
    gpu->ops->geglu(gpu, dx, dy, N, dout);
    down(gpu, g, dout, sizeof(float) * N);
    lyra_cuda_host_geglu(x, y, N, emu);
    if (cpu->ops->geglu) cpu->ops->geglu(cpu, x, y, N, c);
    compare("geglu", g, emu, cpu->ops->geglu ? c : NULL, N, 0, 1e-6);
    synced(gpu, "issue 13 elementwise");
    release(gpu, dx, sizeof(float) * N);
    release(gpu, dy, sizeof(float) * N);
    release(gpu, dw, sizeof(float) * E);
    release(gpu, db, sizeof(float) * E);
    release(gpu, dout, sizeof(float) * N);
    free(x); free(y); free(w); free(bias); free(g); free(emu); free(c);
}

/* rope NeoX and partial vs the host emulation (and the CPU once it has them) */
static void test_rope_neox(void) {
    enum { NT = 300, NH = 4, HD = 80 };
    float ff[HD / 2];
    for (int i = 0; i < HD / 2; i++) ff[i] = 1.0f + (float)i * 0.25f;
    void *dff = up(gpu, ff, sizeof ff);
    const lyra_rope cv[3] = {{HD, 1000000.0f, 1.0f, NULL, 1}, {32, 10000.0f, 1.0f, NULL, 1},
                             {HD, 10000.0f, 0.5f, ff, 1}};
    size_t n = (size_t)NT * NH * HD;
    float *x = malloc(sizeof(float) * n), *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    int32_t pos[NT];
    for (int t = 0; t < NT; t++) pos[t] = t * 13 + (t % 3);
    void *dx = up(gpu, NULL, sizeof(float) * n);
    for (int v = 0; v < 3; v++) {
        fill(x, n, 1.0f);
        memcpy(a, x, sizeof(float) * n);
        gpu->ops->copy_in(gpu, dx, x, sizeof(float) * n);
        lyra_rope gv = cv[v];
        if (gv.freq_factors) gv.freq_factors = dff;
        gpu->ops->rope(gpu, dx, NT, NH, HD, pos, &gv);
        for (int t = 0; t < NT; t++) lyra_cuda_host_rope(a + (size_t)t * NH * HD, NH, HD, pos[t], &cv[v]);
        down(gpu, b, dx, sizeof(float) * n);
        double e = rel_rms(b, a, n);
        CHECK(e <= 1e-5, "rope neox variant %d: rel rms %g vs the host emulation", v, e);
        printf("rope neox variant %d (n_rot %d): rel rms %.2e vs the host emulation\n", v, cv[v].n_rot, e);
        int kept = 1;
        for (size_t i = 0; i < n; i++)
            if ((int)(i % HD) >= cv[v].n_rot) kept &= b[i] == x[i];
        CHECK(kept, "rope neox variant %d: dims past n_rot changed", v);
    }
    synced(gpu, "rope neox");
    release(gpu, dx, sizeof(float) * n);
    release(gpu, dff, sizeof ff);
    free(x); free(a); free(b);
}

/* Soft-capping and sliding windows (whole cache and ring), stored and
 * attended batch by batch as a generation does, vs the host emulation; the
 * ring's chunks bit for bit. */
static void test_attention_window(int hd, int nh, int nkv, int L, float softcap, int window, int ring,
                                  lyra_type t) {
    const int npos = 300, bat[] = {1, 37, 2, 64, 1, 9};
    const int nb_max = 64, kv_dim = nkv * hd;
    const int n_ring = ring ? (window + nb_max - 1 + L - 1) / L + 1 : 0;
    const int nch = ring ? n_ring : (npos + L - 1) / L;
    size_t nkvf = (size_t)npos * kv_dim, nq = (size_t)nb_max * nh * hd;
    float *K = malloc(sizeof(float) * nkvf), *V = malloc(sizeof(float) * nkvf);
    float *q = malloc(sizeof(float) * nq), *a = malloc(sizeof(float) * nq), *b = malloc(sizeof(float) * nq);
    fill(K, nkvf, 1.0f);
    fill(V, nkvf, 1.0f);
    void *dK = up(gpu, K, sizeof(float) * nkvf), *dV = up(gpu, V, sizeof(float) * nkvf);
    void *dq = up(gpu, NULL, sizeof(float) * nq), *dout = up(gpu, NULL, sizeof(float) * nq);
    cache gc;
    cache_new(&gc, gpu, t, L, nch, kv_dim);
    gc.view.n_ring = n_ring;
    /* the host copy: the same layout, host memory */
    size_t cb = gc.bytes;
    void *hk[MAXCH], *hv[MAXCH];
    for (int i = 0; i < nch; i++) {
        hk[i] = calloc(1, cb);
        hv[i] = calloc(1, cb);
    }
    lyra_kv_view hview = gc.view;
    hview.k_chunks = hk;
    hview.v_chunks = hv;
    const lyra_attn_params ap = {nh, nkv, hd, 1.0f / sqrtf((float)hd), softcap, window};
    double worst = 0;
    int chunks_ok = 1;
    uint8_t *back = malloc(2 * cb);
    for (int p = 0, bi = 0; p < npos; bi++) {
        int n = bat[bi % 6] < npos - p ? bat[bi % 6] : npos - p;
        fill(q, (size_t)n * nh * hd, softcap > 0 ? 12.0f : 1.5f);
        gpu->ops->copy_in(gpu, dq, q, sizeof(float) * (size_t)n * nh * hd);
        size_t off = (size_t)p * kv_dim;
        gpu->ops->kv_store(gpu, &gc.view, p, n, kv_dim, (float *)dK + off, (float *)dV + off);
        gpu->ops->attention(gpu, dq, &gc.view, p, n, &ap, dout);
        lyra_cuda_host_kv_store(&hview, p, n, kv_dim, K + off, V + off);
        lyra_cuda_host_attention(q, &hview, p, n, &ap, a);
        down(gpu, b, dout, sizeof(float) * (size_t)n * nh * hd);
        double e = rel_rms(b, a, (size_t)n * nh * hd);
        if (!(e <= worst)) worst = e;
        p += n;
    }
    for (int i = 0; i < nch; i++) { /* every chunk was written (npos > the ring) */
        down(gpu, back, gc.k[i], 2 * cb);
        chunks_ok &= !memcmp(back, hk[i], cb) && !memcmp(back + cb, hv[i], cb);
    }
    synced(gpu, "attention window");
    CHECK(ring == 0 || chunks_ok, "kv_store ring %d: chunks differ from the host emulation", n_ring);
    CHECK(worst <= 1e-5, "attention %s hd %d softcap %g window %d ring %d: rel rms %g",
          lyra_type_name(t), hd, softcap, window, n_ring, worst);
    printf("attention %s hd %3d nh %d nkv %d L %d softcap %g window %d ring %d: rel rms %.2e vs the host emulation\n",
           lyra_type_name(t), hd, nh, nkv, L, softcap, window, n_ring, worst);
    for (int i = 0; i < nch; i++) {
        free(hk[i]);
        free(hv[i]);
    }
    free(back);
    cache_free(&gc);
    release(gpu, dK, sizeof(float) * nkvf);
    release(gpu, dV, sizeof(float) * nkvf);
    release(gpu, dq, sizeof(float) * nq);
    release(gpu, dout, sizeof(float) * nq);
    free(K); free(V); free(q); free(a); free(b);
}

/* ------------------------------------------------------ memory and errors */

static void test_memory(void) {
    lyra_error err;
    uint64_t f = lyra_device_free_mem(gpu);
    CHECK(f > 0 && f <= gpu->total, "free %llu total %llu", (unsigned long long)f,
          (unsigned long long)gpu->total);
    printf("gpu %s: %s, total %.1f GiB, free %.1f GiB\n", gpu->id, gpu->name, gpu->total / 1073741824.0,
           f / 1073741824.0);
    CHECK(!strcmp(gpu->kind, "gpu") && !strcmp(gpu->backend, "cuda") && lyra_device_is_cuda(gpu),
          "kind %s backend %s", gpu->kind, gpu->backend);
    CHECK(gpu->ops->adopt(gpu, &f, sizeof f) != 0, "adopt must fail on a GPU");
    /* copies through the staging buffer, larger than it, at odd offsets */
    size_t n = (size_t)20 << 20;
    uint8_t *h = malloc(n + 3), *back = malloc(n + 3);
    for (size_t i = 0; i < n + 3; i++) h[i] = (uint8_t)(lyra_rng_u64(&rng) >> 56);
    uint64_t a0 = gpu->stats.allocated, calls = gpu->stats.alloc_calls;
    void *p = up(gpu, NULL, n + 3);
    CHECK(gpu->stats.allocated == a0 + n + 3 && gpu->stats.alloc_calls == calls + 1, "stats");
    CHECK(gpu->ops->copy_in(gpu, (char *)p + 3, h + 3, n) == 0 &&
              gpu->ops->copy_in(gpu, p, h, 3) == 0,
          "copy_in");
    memset(back, 0, n + 3);
    down(gpu, back, p, n + 3);
    CHECK(!memcmp(h, back, n + 3), "round trip of %zu bytes", n + 3);
    release(gpu, p, n + 3);
    CHECK(gpu->stats.allocated == a0, "allocated after free");
    /* a real out-of-memory: 1 PiB */
    void *q = (void *)1;
    int rc = gpu->ops->alloc(gpu, (size_t)1 << 50, &q);
    CHECK(rc == LYRA_ERR_OOM && q == NULL && gpu->stats.allocated == a0, "huge alloc: rc %d", rc);
    CHECK(gpu->ops->sync(gpu, &err) == 0, "sync after a failed allocation: %s", err.msg);
    p = up(gpu, h, 4096);
    if (p) release(gpu, p, 4096);
    /* budget */
    gpu->budget = gpu->stats.allocated + 1000;
    rc = gpu->ops->alloc(gpu, 2000, &q);
    CHECK(rc == LYRA_ERR_OOM && q == NULL, "over budget: rc %d", rc);
    gpu->budget = 0;
    /* deferred errors: a work buffer too small, an unsupported type */
    float X[256], Y[4];
    memset(X, 0, sizeof X);
    void *dX = up(gpu, X, sizeof X), *dY = up(gpu, NULL, sizeof Y), *dW = up(gpu, NULL, 34 * 8 * 4);
    gpu->ops->set_work(gpu, NULL, 0);
    gpu->ops->matmul(gpu, LYRA_TYPE_Q8_0, dW, 4, 256, dX, 1, dY);
    rc = gpu->ops->sync(gpu, &err);
    CHECK(rc == LYRA_ERR_RUNTIME && strstr(err.msg, "work memory"), "small work: rc %d %s", rc, err.msg);
    gpu->ops->matmul(gpu, LYRA_TYPE_Q4_1, dW, 4, 256, dX, 1, dY);
    rc = gpu->ops->sync(gpu, &err);
    CHECK(rc == LYRA_ERR_RUNTIME && strstr(err.msg, "not supported"), "Q4_1: rc %d %s", rc, err.msg);
    CHECK(gpu->ops->sync(gpu, &err) == 0, "error reported once: %s", err.msg);
    release(gpu, dX, sizeof X);
    release(gpu, dY, sizeof Y);
    release(gpu, dW, 34 * 8 * 4);
    free(h); free(back);
}

/* LYRA_CUDA_DEVICES=0,0: two lyra devices on card 0. */
static void test_split(void) {
    lyra_device *d[4];
    int n = 0;
    lyra_error err;
    setenv("LYRA_CUDA_DEVICES", "0,0", 1);
    int rc = lyra_cuda_devices_new(0, d, 4, &n, &err);
    CHECK(rc == 0 && n == 2, "0,0: rc %d n %d %s", rc, n, err.msg);
    if (rc || n != 2) return;
    CHECK(!strcmp(d[0]->id, "0") && !strcmp(d[1]->id, "1"), "ids %s %s", d[0]->id, d[1]->id);
    CHECK(d[0]->total == d[1]->total && d[0]->total * 2 <= gpu->total + 1 &&
              d[0]->total * 2 + 2 >= gpu->total,
          "halves: %llu %llu of %llu", (unsigned long long)d[0]->total,
          (unsigned long long)d[1]->total, (unsigned long long)gpu->total);
    CHECK(lyra_device_free_mem(d[1]) <= d[1]->total, "free within the half");
    float a[1000], b[1000];
    fill(a, 1000, 1.0f);
    void *p0 = up(d[0], a, sizeof a), *p1 = up(d[1], NULL, sizeof a);
    CHECK(d[0]->stats.allocated == sizeof a && d[1]->stats.allocated == sizeof a, "separate stats");
    down(d[0], b, p0, sizeof b);
    d[1]->ops->copy_in(d[1], p1, b, sizeof b);
    memset(b, 0, sizeof b);
    down(d[1], b, p1, sizeof b);
    CHECK(!memcmp(a, b, sizeof a), "hand-off between two devices on one card");
    release(d[0], p0, sizeof a);
    release(d[1], p1, sizeof a);
    synced(d[0], "split 0");
    synced(d[1], "split 1");
    lyra_device_free(d[0]);
    lyra_device_free(d[1]);
    char bad[16];
    snprintf(bad, sizeof bad, "%d", lyra_cuda_count(NULL, 0));
    setenv("LYRA_CUDA_DEVICES", bad, 1);
    rc = lyra_cuda_devices_new(0, d, 4, &n, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "LYRA_CUDA_DEVICES"), "bad ordinal: %d %s", rc, err.msg);
    setenv("LYRA_CUDA_DEVICES", "0", 1);
}

int main(void) {
    char why[256];
    if (lyra_cuda_count(why, sizeof why) == 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "no CUDA GPU (%s)", why);
        test_skip(msg);
    }
    lyra_rng_seed(&rng, 42);
    lyra_error err;
    int n = 0;
    setenv("LYRA_CUDA_DEVICES", "0", 1);
    lyra_device *gd[1];
    if (lyra_cpu_device_new(0, &cpu, &err) || lyra_cuda_devices_new(0, gd, 1, &n, &err) || n != 1) {
        fprintf(stderr, "cannot create the devices: %s (n %d)\n", err.msg, n);
        return 1;
    }
    gpu = gd[0];
    test_memory();
    test_get_rows();
    test_elementwise();
    test_rope();
    test_attention(64, 8, 2, 256);
    test_attention(128, 32, 8, 256);
    test_attention(8, 8, 4, 256);
    test_attention(64, 4, 4, 32); /* 22 chunks */
    test_arch_ops();
    test_rope_neox();
    for (int ty = 0; ty < 2; ty++) {
        lyra_type t = ty ? LYRA_TYPE_F16 : LYRA_TYPE_F32;
        test_attention_window(64, 8, 2, 16, 0.0f, 0, 0, t);    /* plain, many chunks */
        test_attention_window(256, 8, 4, 32, 50.0f, 0, 0, t);  /* Gemma 2 global layer */
        test_attention_window(256, 8, 4, 32, 50.0f, 40, 1, t); /* Gemma 2 local layer */
        test_attention_window(128, 8, 8, 16, 0.0f, 57, 0, t);  /* Mistral: window, whole cache */
        test_attention_window(64, 4, 1, 16, 0.0f, 23, 1, t);   /* small ring */
    }
    test_matmul();
    test_matmul_multi();
    test_split();
    CHECK(gpu->stats.allocated == 0, "GPU memory left allocated: %llu",
          (unsigned long long)gpu->stats.allocated);
    lyra_device_free(gpu);
    lyra_device_free(cpu);
    return test_done();
}
#endif
