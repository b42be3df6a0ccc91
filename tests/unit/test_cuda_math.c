/* test_cuda_math.c: the CUDA device's parts that run without a GPU.
 *   - LYRA_CUDA_DEVICES parsing (every build);
 *   - builds without CUDA: no GPU reported, silently;
 *   - CUDA builds on a machine without a GPU (CI): lyra_cuda_devices_new
 *     succeeds with no device and exactly one note per process;
 *   - CUDA builds: the kernels' arithmetic run on the host (cuda.h,
 *     lyra_cuda_host_*: the same host+device functions the kernels call)
 *     against lyra's CPU reference, on random rows of every weight type:
 *     activation quantization byte for byte equal to lyra_quantize_act,
 *     dequantization bit for bit equal to lyra_dequantize_row, and the decode
 *     kernel's dot product (unit by unit in lane order) within 2e-6 of
 *     lyra_vec_dot relative to sum |w_i x_i| (only the float summation order
 *     differs; a layout error is off by O(1));
 *   - CUDA builds: the other ops' kernels run on the host the same way
 *     (issue 13's ops) against scalar references written here from
 *     device.h's formulas: rope (normal, NeoX, partial n_rot, freq_factors)
 *     bit for bit (the same float operations, the same libm cos/sin);
 *     add_bias, scale and geglu-vs-gelu bit for bit; layernorm within 1e-6
 *     of a double reference (only the summation order differs); gelu,
 *     geglu and softcap within a few ulp of the double formula (tanhf is
 *     libm's here and CUDA's on the GPU: neither is exact); kv_store +
 *     attention (grouped-query, F16/F32 cache, soft-capping, sliding window
 *     with and without a ring of chunks, batches across chunk and ring
 *     boundaries) within 1e-5 of a double reference that reads positions
 *     from flat arrays (a wrong chunk, row or window is off by O(1)).
 * What needs a GPU (launch indexing, shuffles, cuBLAS) is test_cuda_ops. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "build_info.h"
#include "core/fp16.h"
#include "core/rng.h"
#include "device/cuda.h"
#include "lyra.h"
#include "testutil.h"

static void test_parse(void) {
    int ord[8], n = -1;
    lyra_error err;
    CHECK(lyra_cuda_parse_devices("0,0", 1, ord, 8, &n, &err) == 0 && n == 2 && ord[0] == 0 &&
              ord[1] == 0,
          "0,0: n %d", n);
    CHECK(lyra_cuda_parse_devices("1,0,1", 2, ord, 8, &n, &err) == 0 && n == 3 && ord[0] == 1 &&
              ord[1] == 0 && ord[2] == 1,
          "1,0,1: n %d", n);
    CHECK(lyra_cuda_parse_devices("", 1, ord, 8, &n, &err) == 0 && n == 0, "empty: n %d", n);
    const char *bad[] = {"a", "0,,1", "0,", ",0", "-1", "1", "0 ", "99999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = lyra_cuda_parse_devices(bad[i], 1, ord, 8, &n, &err);
        CHECK(rc == LYRA_ERR_INPUT && !strncmp(err.msg, "LYRA_CUDA_DEVICES: ", 19),
              "'%s': rc %d msg %s", bad[i], rc, err.msg);
    }
    int rc = lyra_cuda_parse_devices("0,0,0", 1, ord, 2, &n, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "at most 2"), "max: rc %d %s", rc, err.msg);
    rc = lyra_cuda_parse_devices("2", 2, ord, 8, &n, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "entry \"2\"") && strstr(err.msg, "0..1"),
          "range: %s", err.msg);
}

/* Notes on the log sink, counted. */
static int n_notes;
static char last_note[512];
static void sink(lyra_log_level level, const char *line, void *user) {
    (void)user;
    if (level <= LYRA_LOG_WARN) {
        n_notes++;
        snprintf(last_note, sizeof last_note, "%s", line);
    }
}

static void test_no_gpu(void) {
    char why[256] = "";
    int cards = lyra_cuda_count(why, sizeof why);
    CHECK(cards >= 0, "count %d", cards);
    CHECK(lyra_cuda_available() == (cards > 0), "available vs count");
    if (cards > 0) {
        printf("note: %d CUDA GPU%s here: the no-GPU checks do not apply\n", cards,
               cards == 1 ? "" : "s");
        return;
    }
    CHECK(why[0] != '\0', "no reason given for 0 GPUs");
    printf("no CUDA GPU here: %s\n", why);
    lyra_log_set(sink, LYRA_LOG_DEBUG, NULL);
    lyra_device *dev[4];
    lyra_error err;
    int n0 = -1;
    setenv("LYRA_CUDA_DEVICES", "", 1); /* hidden on purpose: silently none */
    CHECK(lyra_cuda_devices_new(0, dev, 4, &n0, &err) == 0 && n0 == 0 && n_notes == 0,
          "LYRA_CUDA_DEVICES empty: n %d, %d notes", n0, n_notes);
    unsetenv("LYRA_CUDA_DEVICES");
    for (int i = 0; i < 2; i++) {
        int n = -1;
        int rc = lyra_cuda_devices_new(0, dev, 4, &n, &err);
        CHECK(rc == 0 && n == 0, "devices_new without a GPU: rc %d n %d (%s)", rc, n, err.msg);
    }
#if LYRA_BUILD_HAVE_CUDA
    CHECK(n_notes == 1 && strstr(last_note, "CUDA: no usable GPU (") &&
              strstr(last_note, "); running on the CPU"),
          "want one note, got %d: %s", n_notes, last_note);
#else
    CHECK(n_notes == 0, "a build without CUDA printed %d notes: %s", n_notes, last_note);
    CHECK(strstr(why, "without CUDA") != NULL, "reason: %s", why);
#endif
    lyra_log_set(NULL, LYRA_LOG_WARN, NULL);
}

#if LYRA_BUILD_HAVE_CUDA
static lyra_rng rng;
static float frand(void) { return lyra_rng_f32(&rng) * 2.0f - 1.0f; }

/* Rows of type t from random floats (with an all-zero block and a wide
 * dynamic range, so scales and mins take many values). */
static void make_rows(lyra_type t, int rows, int64_t n, float *x, uint8_t *w) {
    size_t rb = lyra_row_bytes(t, n);
    for (int r = 0; r < rows; r++) {
        float *xr = x + (size_t)r * n;
        for (int64_t i = 0; i < n; i++) xr[i] = frand() * (1.0f + (float)(i % 7)) * 0.5f;
        if (n >= 512)
            for (int i = 256; i < 288; i++) xr[i] = 0.0f; /* an all-zero block */
        lyra_quantize_row(t, xr, w + (size_t)r * rb, n);
    }
}

static void test_types(void) {
    lyra_type types[] = {LYRA_TYPE_F32, LYRA_TYPE_F16, LYRA_TYPE_BF16, LYRA_TYPE_Q8_0,
                         LYRA_TYPE_Q4_0, LYRA_TYPE_Q5_0, LYRA_TYPE_Q4_K, LYRA_TYPE_Q5_K,
                         LYRA_TYPE_Q6_K};
    const int64_t sizes[] = {256, 4096, 11008 / 256 * 256, 172};
    const int ROWS = 5;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        lyra_type t = types[ti];
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            int64_t n = sizes[si];
            if (n % lyra_type_block(t)) continue;
            size_t rb = lyra_row_bytes(t, n);
            float *x = malloc(sizeof(float) * (size_t)n * ROWS);
            float *act = malloc(sizeof(float) * (size_t)n);
            float *deq = malloc(sizeof(float) * (size_t)n), *ref = malloc(sizeof(float) * (size_t)n);
            uint8_t *w = malloc(rb * ROWS);
            make_rows(t, ROWS, n, x, w);
            lyra_type at = lyra_vec_dot_type(t);
            size_t ab = lyra_row_bytes(at, n);
            uint8_t *qa = malloc(ab), *qc = malloc(ab);
            int deq_ok = 1, act_ok = 1, same3 = 1, same23 = 1;
            double worst = 0, worst_k[3] = {0, 0, 0};
            float g2 = 0.0f;
            for (int r = 0; r < ROWS; r++) {
                const uint8_t *row = w + (size_t)r * rb;
                /* dequantization, bit for bit */
                lyra_cuda_host_dequant(t, row, n, deq);
                lyra_dequantize_row(t, row, ref, n);
                deq_ok &= memcmp(deq, ref, sizeof(float) * (size_t)n) == 0;
                /* activations: another random row, with a zero block and ties */
                for (int64_t i = 0; i < n; i++) act[i] = frand() * 3.0f;
                if (n >= 64) for (int i = 32; i < 64; i++) act[i] = 0.0f;
                if (at != LYRA_TYPE_F32) {
                    lyra_quantize_act(LYRA_CPU_SCALAR, t, act, qc, n);
                    int rc = lyra_cuda_host_quantize_act(t, act, n, qa);
                    act_ok &= rc == 0 && memcmp(qa, qc, ab) == 0;
                } else {
                    memcpy(qc, act, ab);
                    CHECK(lyra_cuda_host_quantize_act(t, act, n, qa) == LYRA_ERR_INPUT,
                          "%s: float weights have no quantized activations", lyra_type_name(t));
                }
                /* the decode kernel's dot product vs the CPU's */
                float got = lyra_cuda_host_dot(t, row, act, n);
                float want = lyra_vec_dot(LYRA_CPU_SCALAR, t, n, row, qc);
                double mag = 0;
                for (int64_t i = 0; i < n; i++) mag += fabs((double)ref[i] * act[i]);
                double e = fabs((double)got - want) / (mag > 0 ? mag : 1);
                if (!(e <= worst)) worst = e;
                /* every decode kernel (LYRA_CUDA_MATVEC): 2 and 3 add alike */
                for (int kern = 1; kern <= 3; kern++) {
                    float gk = lyra_cuda_host_dot_kernel(t, row, act, n, kern);
                    double ek = fabs((double)gk - want) / (mag > 0 ? mag : 1);
                    if (!(ek <= worst_k[kern - 1])) worst_k[kern - 1] = ek;
                    if (kern == 3) same3 &= memcmp(&gk, &got, sizeof gk) == 0;
                    if (kern == 3) same23 &= memcmp(&gk, &g2, sizeof gk) == 0;
                    if (kern == 2) g2 = gk;
                }
            }
            CHECK(deq_ok, "%s n %lld: host dequantization differs from lyra_dequantize_row",
                  lyra_type_name(t), (long long)n);
            CHECK(act_ok, "%s n %lld: activation quantization differs from lyra_quantize_act",
                  lyra_type_name(t), (long long)n);
            CHECK(worst <= 2e-6, "%s n %lld: dot differs from lyra_vec_dot by %g of sum|w x|",
                  lyra_type_name(t), (long long)n, worst);
            for (int kern = 1; kern <= 3; kern++)
                CHECK(worst_k[kern - 1] <= 2e-6,
                      "%s n %lld: kernel %d's dot differs from lyra_vec_dot by %g of sum|w x|",
                      lyra_type_name(t), (long long)n, kern, worst_k[kern - 1]);
            CHECK(same3 && same23, "%s n %lld: the default dot is not kernel 3's, or 2 and 3 differ",
                  lyra_type_name(t), (long long)n);
            printf("%-5s n %5lld: dot vs CPU %.2g (of sum |w x|; kernel 1 %.2g)\n",
                   lyra_type_name(t), (long long)n, worst, worst_k[0]);
            free(x); free(act); free(deq); free(ref); free(w); free(qa); free(qc);
        }
    }
}

/* ------------------------------------------------------ issue 13's ops */

/* rope from device.h's definition, written out: bit for bit the kernel's
 * float operations (rotations non-contracted, angles in double). */
static void ref_rope(float *x, int nh, int hd, int32_t pos, const lyra_rope *r) {
    for (int h = 0; h < nh; h++) {
        float *v = x + (size_t)h * hd;
        for (int i = 0; i < r->n_rot / 2; i++) {
            double f = (double)r->freq_scale * pow((double)r->freq_base, -2.0 * i / r->n_rot);
            if (r->freq_factors) f /= (double)r->freq_factors[i];
            double th = (double)pos * f;
            float cs = (float)cos(th), sn = (float)sin(th);
            int a = r->neox ? i : 2 * i, b = r->neox ? i + r->n_rot / 2 : 2 * i + 1;
            float xa = v[a], xb = v[b];
            float p1 = xa * cs, p2 = xb * sn, p3 = xa * sn, p4 = xb * cs;
            v[a] = p1 - p2;
            v[b] = p3 + p4;
        }
    }
}

static void test_rope(void) {
    enum { NH = 3, HD = 80 };
    float ff[HD / 2];
    for (int i = 0; i < HD / 2; i++) ff[i] = 1.0f + (float)i * 0.5f;
    const lyra_rope cases[] = {
        {HD, 10000.0f, 1.0f, NULL, 0},      /* Llama */
        {HD, 1000000.0f, 1.0f, NULL, 1},    /* Qwen2: NeoX */
        {32, 10000.0f, 1.0f, NULL, 1},      /* Phi-2: partial NeoX, 32 of 80 */
        {HD, 500000.0f, 0.125f, ff, 1},     /* scaled, freq_factors */
        {16, 10000.0f, 1.0f, ff, 0},        /* partial, normal pairs */
    };
    const int32_t pos[] = {0, 1, 17, 4095, 131071};
    float x[NH * HD], a[NH * HD], b[NH * HD];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (size_t pi = 0; pi < sizeof pos / sizeof pos[0]; pi++) {
            for (int i = 0; i < NH * HD; i++) x[i] = frand() * 2.0f;
            memcpy(a, x, sizeof x);
            memcpy(b, x, sizeof x);
            lyra_cuda_host_rope(a, NH, HD, pos[pi], &cases[c]);
            ref_rope(b, NH, HD, pos[pi], &cases[c]);
            CHECK(!memcmp(a, b, sizeof a), "rope case %zu pos %d: differs from the reference", c,
                  (int)pos[pi]);
            int kept = 1; /* dims n_rot.. of every head untouched */
            for (int h = 0; h < NH; h++)
                for (int i = cases[c].n_rot; i < HD; i++) kept &= a[h * HD + i] == x[h * HD + i];
            CHECK(kept, "rope case %zu: dims past n_rot changed", c);
        }
}

static void test_layernorm(void) {
    const int64_t sizes[] = {1, 7, 256, 300, 2560, 5000};
    double worst = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (int variant = 0; variant < 3; variant++) { /* bias, no bias, offset rows */
            int64_t n = sizes[si];
            float *x = malloc(sizeof(float) * (size_t)n), *w = malloc(sizeof(float) * (size_t)n);
            float *b = malloc(sizeof(float) * (size_t)n), *o = malloc(sizeof(float) * (size_t)n);
            const float off = variant == 2 ? 50.0f : 0.3f;
            for (int64_t i = 0; i < n; i++) {
                x[i] = off + frand() * (1.0f + (float)(i % 5));
                w[i] = 1.0f + frand() * 0.5f;
                b[i] = frand();
            }
            const float *bb = variant == 1 ? NULL : b;
            lyra_cuda_host_layernorm(x, w, bb, 1e-5f, n, o);
            double mean = 0, var = 0;
            for (int64_t i = 0; i < n; i++) mean += x[i];
            mean /= (double)n;
            for (int64_t i = 0; i < n; i++) var += ((double)x[i] - mean) * ((double)x[i] - mean);
            var /= (double)n;
            double rstd = 1.0 / sqrt(var + 1e-5), e = 0, mag = 0, xmax = 0;
            for (int64_t i = 0; i < n; i++) {
                double r = ((double)x[i] - mean) * rstd * w[i] + (bb ? bb[i] : 0.0);
                if (fabs(r - o[i]) > e) e = fabs(r - o[i]);
                if (fabs(r) > mag) mag = fabs(r);
                if (fabs(x[i]) > xmax) xmax = fabs(x[i]);
            }
            /* the float mean is off by up to ~ulp(|x|) from the exact one: the
             * bound scales with |x| / std (offset rows) */
            double bound = 1e-6 * (mag + 2.0 * xmax * rstd);
            CHECK(e <= bound, "layernorm n %lld variant %d: max diff %g > %g", (long long)n, variant,
                  e, bound);
            if (e / (mag + 2.0 * xmax * rstd) > worst) worst = e / (mag + 2.0 * xmax * rstd);
            free(x); free(w); free(b); free(o);
        }
    printf("layernorm: worst %.2g of the bound's scale (bound 1e-6)\n", worst);
}

static double gelu_ref(double x) {
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

static void test_elementwise(void) {
    enum { N = 20000 };
    float *x = malloc(sizeof(float) * N), *u = malloc(sizeof(float) * N), *a = malloc(sizeof(float) * N),
          *b = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) {
        x[i] = i < N / 2 ? -12.0f + 24.0f * (float)i / (N / 2) : frand() * 6.0f;
        u[i] = frand() * 2.0f;
    }
    x[0] = 0.0f; x[1] = -0.0f; x[2] = 100.0f; x[3] = -100.0f; x[4] = 1e-20f; x[5] = -3e4f;
    /* gelu: within a few ulp of the exact value; the cancellation in 1 + tanh
     * for negative x costs ulps of 0.5|x|, hence the |x| term */
    lyra_cuda_host_gelu(x, N, a);
    double worst = 0;
    int ok = 1;
    for (int i = 0; i < N; i++) {
        double r = gelu_ref(x[i]), e = fabs(a[i] - r), tol = 4e-7 * (fabs(r) + 0.5 * fabs(x[i])) + 1e-37;
        ok &= e <= tol;
        if (e / tol > worst) worst = e / tol;
    }
    CHECK(ok, "gelu: beyond the tolerance (worst %.2g of it)", worst);
    printf("gelu: worst %.2g of the tolerance 4e-7 (|gelu| + |x|/2)\n", worst);
    /* geglu: gelu(gate) * up, the same bits as gelu then a product */
    lyra_cuda_host_geglu(x, u, N, b);
    ok = 1;
    for (int i = 0; i < N; i++) {
        float want = a[i] * u[i];
        ok &= memcmp(&want, &b[i], sizeof want) == 0;
    }
    CHECK(ok, "geglu differs from gelu(gate) * up");
    /* softcap: within a few ulp of cap * tanh(x / cap) */
    const float caps[] = {30.0f, 50.0f};
    for (int c = 0; c < 2; c++) {
        for (int i = 0; i < N; i++) a[i] = x[i] * 20.0f;
        lyra_cuda_host_softcap(a, N, caps[c]);
        worst = 0;
        ok = 1;
        for (int i = 0; i < N; i++) {
            double r = caps[c] * tanh((double)x[i] * 20.0 / caps[c]), e = fabs(a[i] - r);
            double tol = 4e-7 * fabs(r) + 1e-37;
            ok &= e <= tol && fabs(a[i]) <= caps[c];
            if (e / tol > worst) worst = e / tol;
        }
        CHECK(ok, "softcap %g: beyond the tolerance (worst %.2g of it)", caps[c], worst);
        printf("softcap %g: worst %.2g of the tolerance 4e-7 |ref|\n", caps[c], worst);
    }
    /* scale and add_bias: one float operation each, bit for bit */
    memcpy(a, x, sizeof(float) * N);
    lyra_cuda_host_scale(a, N, 0.0625f * 3.0f);
    ok = 1;
    for (int i = 0; i < N; i++) {
        float want = x[i] * (0.0625f * 3.0f);
        ok &= memcmp(&want, &a[i], sizeof want) == 0;
    }
    CHECK(ok, "scale differs from x * s");
    memcpy(a, x, sizeof(float) * N);
    lyra_cuda_host_add_bias(a, u, 1000, N / 1000);
    ok = 1;
    for (int i = 0; i < N; i++) {
        float want = x[i] + u[i % 1000];
        ok &= memcmp(&want, &a[i], sizeof want) == 0;
    }
    CHECK(ok, "add_bias differs from x + bias");
    free(x); free(u); free(a); free(b);
}

/* A KV cache in host memory, the CUDA layout (rows), nch chunks of L. */
#define TMAXCH 64
typedef struct hcache {
    void *k[TMAXCH], *v[TMAXCH];
    lyra_kv_view view;
} hcache;

static void hcache_new(hcache *c, lyra_type t, int L, int nch, int n_ring, int64_t kv_dim) {
    memset(c, 0, sizeof *c);
    size_t bytes = (size_t)L * (size_t)kv_dim * (t == LYRA_TYPE_F16 ? 2 : 4);
    for (int i = 0; i < nch; i++) {
        c->k[i] = malloc(bytes);
        c->v[i] = malloc(bytes);
        memset(c->k[i], 0xff, bytes); /* NaN: a position never stored shows */
        memset(c->v[i], 0xff, bytes);
    }
    c->view.k_chunks = c->k;
    c->view.v_chunks = c->v;
    c->view.chunk_len = L;
    c->view.kv_type = t;
    c->view.n_ring = n_ring;
}

static void hcache_free(hcache *c) {
    for (int i = 0; i < TMAXCH; i++) {
        free(c->k[i]);
        free(c->v[i]);
    }
}

/* device.h's attention in double from flat K, V [npos][kv_dim] (as stored:
 * F16-rounded for an F16 cache). */
static void ref_attention(const float *q, const float *K, const float *V, int64_t kv_dim,
                          int32_t pos0, int ntok, const lyra_attn_params *ap, float *out) {
    const int hd = ap->head_dim, grp = ap->n_head / ap->n_kv_head;
    double *s = malloc(sizeof(double) * (size_t)(pos0 + ntok));
    for (int t = 0; t < ntok; t++)
        for (int h = 0; h < ap->n_head; h++) {
            const float *qh = q + ((size_t)t * ap->n_head + h) * hd;
            int32_t last = pos0 + t, first = 0;
            if (ap->window > 0 && last - ap->window + 1 > 0) first = last - ap->window + 1;
            double mx = -INFINITY, sum = 0;
            for (int32_t p = first; p <= last; p++) {
                double d = 0;
                for (int e = 0; e < hd; e++)
                    d += (double)qh[e] * K[(size_t)p * kv_dim + (size_t)(h / grp) * hd + e];
                d *= ap->scale;
                if (ap->softcap > 0) d = ap->softcap * tanh(d / ap->softcap);
                s[p] = d;
                if (d > mx) mx = d;
            }
            for (int32_t p = first; p <= last; p++) sum += s[p] = exp(s[p] - mx);
            float *o = out + ((size_t)t * ap->n_head + h) * hd;
            for (int e = 0; e < hd; e++) {
                double acc = 0;
                for (int32_t p = first; p <= last; p++)
                    acc += s[p] * V[(size_t)p * kv_dim + (size_t)(h / grp) * hd + e];
                o[e] = (float)(acc / sum);
            }
        }
    free(s);
}

/* Positions 0..npos-1 stored in batches and attended after each batch, as a
 * generation does (a ring is overwritten as it goes). */
static void test_attention_case(int hd, int nh, int nkv, int L, float softcap, int window,
                                int ring, lyra_type t) {
    const int npos = 211, bat[] = {1, 13, 2, 40, 1, 1, 5};
    const int nb_max = 40;
    const int64_t kv_dim = (int64_t)nkv * hd;
    int n_ring = ring ? (window + nb_max - 1 + L - 1) / L + 1 : 0;
    int nch = ring ? n_ring : (npos + L - 1) / L;
    if (nch > TMAXCH) {
        CHECK(0, "test cache too small");
        return;
    }
    hcache c;
    hcache_new(&c, t, L, nch, n_ring, kv_dim);
    float *K = malloc(sizeof(float) * (size_t)npos * kv_dim), *V = malloc(sizeof(float) * (size_t)npos * kv_dim);
    float *Ks = malloc(sizeof(float) * (size_t)npos * kv_dim), *Vs = malloc(sizeof(float) * (size_t)npos * kv_dim);
    for (int64_t i = 0; i < npos * kv_dim; i++) {
        K[i] = frand();
        V[i] = frand();
        Ks[i] = t == LYRA_TYPE_F16 ? lyra_fp16_to_f32(lyra_f32_to_fp16(K[i])) : K[i];
        Vs[i] = t == LYRA_TYPE_F16 ? lyra_fp16_to_f32(lyra_f32_to_fp16(V[i])) : V[i];
    }
    size_t nq = (size_t)nb_max * nh * hd;
    float *q = malloc(sizeof(float) * nq), *a = malloc(sizeof(float) * nq), *b = malloc(sizeof(float) * nq);
    lyra_attn_params ap = {nh, nkv, hd, 1.0f / sqrtf((float)hd), softcap, window};
    double worst = 0;
    for (int p = 0, bi = 0; p < npos; bi++) {
        int n = bat[bi % 7] < npos - p ? bat[bi % 7] : npos - p;
        for (size_t i = 0; i < (size_t)n * nh * hd; i++) q[i] = frand() * (softcap > 0 ? 12.0f : 1.5f);
        lyra_cuda_host_kv_store(&c.view, p, n, kv_dim, K + (size_t)p * kv_dim, V + (size_t)p * kv_dim);
        lyra_cuda_host_attention(q, &c.view, p, n, &ap, a);
        ref_attention(q, Ks, Vs, kv_dim, p, n, &ap, b);
        for (size_t i = 0; i < (size_t)n * nh * hd; i++) {
            double e = fabs((double)a[i] - b[i]);
            if (!(e <= worst)) worst = e;
        }
        p += n;
    }
    CHECK(worst <= 1e-5, "attention %s hd %d nh %d nkv %d L %d softcap %g window %d ring %d: max diff %g",
          lyra_type_name(t), hd, nh, nkv, L, softcap, window, n_ring, worst);
    printf("attention %-4s hd %3d nh %d nkv %d L %2d softcap %2g window %3d ring %2d: max diff %.2g\n",
           lyra_type_name(t), hd, nh, nkv, L, softcap, window, n_ring, worst);
    hcache_free(&c);
    free(K); free(V); free(Ks); free(Vs); free(q); free(a); free(b);
}

static void test_attention(void) {
    for (int ty = 0; ty < 2; ty++) {
        lyra_type t = ty ? LYRA_TYPE_F16 : LYRA_TYPE_F32;
        test_attention_case(64, 4, 2, 16, 0.0f, 0, 0, t);    /* plain, grouped-query */
        test_attention_case(40, 6, 6, 32, 50.0f, 0, 0, t);   /* soft-capping (Gemma 2) */
        test_attention_case(64, 4, 1, 16, 0.0f, 37, 0, t);   /* window, whole cache (Mistral) */
        test_attention_case(64, 4, 2, 16, 0.0f, 37, 1, t);   /* window in a ring */
        test_attention_case(256, 2, 1, 8, 50.0f, 20, 1, t);  /* Gemma 2 local layer, small chunks */
        test_attention_case(32, 2, 2, 16, 0.0f, 1, 1, t);    /* window 1: only itself */
    }
}
#endif

int main(void) {
    test_parse();
    test_no_gpu();
#if LYRA_BUILD_HAVE_CUDA
    lyra_rng_seed(&rng, 6);
    test_types();
    test_rope();
    test_layernorm();
    test_elementwise();
    test_attention();
#else
    printf("built without CUDA: host emulation of the kernels not built\n");
#endif
    return test_done();
}
