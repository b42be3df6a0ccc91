/* test_attention.c: the CPU device's attention op (query-tiled, online
 * softmax over cache chunks) against a scalar float64 reference at several
 * depths, batch sizes, head counts and GQA ratios, sliding windows (a plain
 * cache and a ring), Gemma 2's soft-capping, chunks shorter and longer than
 * the softmax block, F16 and F32 caches, on every CPU path available; and its
 * determinism: the same bits with 1, 2 and 3 threads, and a token's output
 * the same bits whether it is evaluated alone (decode) or in a batch with
 * others, whatever the batch's start. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fp16.h"
#include "core/rng.h"
#include "device/device.h"
#include "testutil.h"

static lyra_rng rng;

typedef struct {
    int nh, nkv, hd;   /* heads, KV heads, head size */
    int32_t window;    /* 0: full causal */
    float softcap;     /* 0: none */
    int chunk, ring;   /* chunk length; ring: a sliding window's ring of chunks */
    int pos0, ntok;    /* the batch: tokens at positions pos0..pos0+ntok-1 */
} att_case;

typedef struct {
    lyra_kv_view view;
    void **k, **v;
    int n;
} cache;

static void cache_init(cache *c, const att_case *tc, lyra_type t) {
    int npos = tc->pos0 + tc->ntok, kv_dim = tc->nkv * tc->hd;
    size_t es = t == LYRA_TYPE_F16 ? 2 : 4;
    c->n = tc->ring ? (tc->window + tc->ntok - 1 + tc->chunk - 1) / tc->chunk + 1
                    : (npos + tc->chunk - 1) / tc->chunk;
    c->k = calloc((size_t)c->n, sizeof(void *));
    c->v = calloc((size_t)c->n, sizeof(void *));
    for (int i = 0; i < c->n; i++) {
        c->k[i] = calloc((size_t)tc->chunk * kv_dim, es);
        c->v[i] = calloc((size_t)tc->chunk * kv_dim, es);
    }
    c->view = (lyra_kv_view){c->k, c->v, tc->chunk, t, tc->ring ? c->n : 0};
}

static void cache_free(cache *c) {
    for (int i = 0; i < c->n; i++) { free(c->k[i]); free(c->v[i]); }
    free(c->k);
    free(c->v);
}

/* What the cache holds of x (F16: rounded to nearest). */
static double held(lyra_type t, float x) {
    return t == LYRA_TYPE_F16 ? (double)lyra_fp16_to_f32(lyra_f32_to_fp16(x)) : (double)x;
}

static void reference(const att_case *tc, lyra_type t, const float *q, const float *K,
                      const float *V, double *out) {
    int kv_dim = tc->nkv * tc->hd, grp = tc->nh / tc->nkv;
    double *s = malloc(sizeof(double) * (size_t)(tc->pos0 + tc->ntok));
    for (int tk = 0; tk < tc->ntok; tk++)
        for (int h = 0; h < tc->nh; h++) {
            int32_t n = tc->pos0 + tk + 1, first = tc->window > 0 && n > tc->window ? n - tc->window : 0;
            const float *qv = q + ((size_t)tk * tc->nh + h) * tc->hd;
            const int kvh = h / grp;
            double mx = -1e300, sum = 0;
            for (int p = first; p < n; p++) {
                double a = 0;
                for (int j = 0; j < tc->hd; j++)
                    a += (double)qv[j] * held(t, K[(size_t)p * kv_dim + kvh * tc->hd + j]);
                a /= sqrt((double)tc->hd);
                if (tc->softcap > 0) a = tc->softcap * tanh(a / tc->softcap);
                s[p] = a;
                mx = a > mx ? a : mx;
            }
            for (int p = first; p < n; p++) { s[p] = exp(s[p] - mx); sum += s[p]; }
            double *o = out + ((size_t)tk * tc->nh + h) * tc->hd;
            for (int j = 0; j < tc->hd; j++) {
                double a = 0;
                for (int p = first; p < n; p++) a += s[p] * held(t, V[(size_t)p * kv_dim + kvh * tc->hd + j]);
                o[j] = a / sum;
            }
        }
    free(s);
}

static void run_att(lyra_device *d, const att_case *tc, const cache *c, const float *q, int32_t pos0,
                    int ntok, float *out) {
    lyra_attn_params ap = {tc->nh, tc->nkv, tc->hd, 1.0f / sqrtf((float)tc->hd), tc->softcap, tc->window};
    d->ops->attention(d, q, &c->view, pos0, ntok, &ap, out);
    lyra_error err;
    CHECK(d->ops->sync(d, &err) == 0, "attention: %s", err.msg);
}

static void test_case(const att_case *tc) {
    int npos = tc->pos0 + tc->ntok, kv_dim = tc->nkv * tc->hd;
    size_t nq = (size_t)tc->ntok * tc->nh * tc->hd, tok = (size_t)tc->nh * tc->hd;
    float *K = malloc(sizeof(float) * (size_t)npos * kv_dim), *V = malloc(sizeof(float) * (size_t)npos * kv_dim);
    float *q = malloc(sizeof(float) * nq), *out = malloc(sizeof(float) * nq), *o2 = malloc(sizeof(float) * nq);
    double *ref = malloc(sizeof(double) * nq);
    for (size_t i = 0; i < (size_t)npos * kv_dim; i++) {
        K[i] = 2.0f * lyra_rng_f32(&rng) - 1.0f;
        V[i] = 2.0f * lyra_rng_f32(&rng) - 1.0f;
    }
    for (size_t i = 0; i < nq; i++) q[i] = 3.0f * (2.0f * lyra_rng_f32(&rng) - 1.0f);
    lyra_cpu_path paths[3] = {LYRA_CPU_SCALAR, LYRA_CPU_AVX2, LYRA_CPU_AVX512};
    for (int ty = 0; ty < 2; ty++) {
        lyra_type t = ty ? LYRA_TYPE_F16 : LYRA_TYPE_F32;
        reference(tc, t, q, K, V, ref);
        for (int pi = 0; pi < 3; pi++) {
            if (!lyra_cpu_path_available(paths[pi])) continue;
            setenv("LYRA_CPU", lyra_cpu_path_name(paths[pi]), 1);
            float *base = NULL;
            /* 1, 2 and 3 threads on the widest path, 2 on the others (time) */
            int widest = pi == 2 || !lyra_cpu_path_available(paths[2]);
            for (int th = widest ? 1 : 2; th <= (widest ? 3 : 2); th++) {
                lyra_device *d = NULL;
                lyra_error err;
                if (lyra_cpu_device_new(th, &d, &err)) {
                    CHECK(0, "device: %s", err.msg);
                    continue;
                }
                cache c;
                cache_init(&c, tc, t);
                /* the whole batch's keys and values, stored in two uneven parts */
                int first = tc->ring ? tc->pos0 - tc->window + 1 : 0, split = tc->pos0 + tc->ntok / 3;
                if (first < 0) first = 0;
                d->ops->kv_store(d, &c.view, first, split - first, kv_dim, K + (size_t)first * kv_dim,
                                 V + (size_t)first * kv_dim);
                d->ops->kv_store(d, &c.view, split, npos - split, kv_dim, K + (size_t)split * kv_dim,
                                 V + (size_t)split * kv_dim);
                run_att(d, tc, &c, q, tc->pos0, tc->ntok, out);
                double md = 0;
                for (size_t i = 0; i < nq; i++) {
                    double e = fabs((double)out[i] - ref[i]);
                    if (!(e <= md)) md = e;
                }
                CHECK(md < 2e-5, "%s %s nh %d nkv %d hd %d window %d cap %g chunk %d ring %d pos0 %d ntok %d "
                      "threads %d: max diff %g", lyra_cpu_path_name(paths[pi]), ty ? "f16" : "f32", tc->nh,
                      tc->nkv, tc->hd, tc->window, tc->softcap, tc->chunk, tc->ring, tc->pos0, tc->ntok, th, md);
                if (!base) {
                    base = malloc(sizeof(float) * nq);
                    memcpy(base, out, sizeof(float) * nq);
                } else
                    CHECK(!memcmp(base, out, sizeof(float) * nq), "%s: %d threads give other bits (nh %d pos0 %d ntok %d)",
                          lyra_cpu_path_name(paths[pi]), th, tc->nh, tc->pos0, tc->ntok);
                if (th == 2) {
                    /* every token alone (decode), and the batch in two parts
                     * started elsewhere: the same bits */
                    int same = 1;
                    for (int tk = 0; tk < tc->ntok; tk++) {
                        run_att(d, tc, &c, q + tk * tok, tc->pos0 + tk, 1, o2);
                        if (memcmp(o2, out + tk * tok, sizeof(float) * tok)) same = 0;
                    }
                    CHECK(same, "%s: a token alone differs from the batch (nh %d pos0 %d ntok %d)",
                          lyra_cpu_path_name(paths[pi]), tc->nh, tc->pos0, tc->ntok);
                    int cut = tc->ntok / 2 + 1 < tc->ntok ? tc->ntok / 2 + 1 : tc->ntok - 1;
                    if (cut > 0) {
                        run_att(d, tc, &c, q, tc->pos0, cut, o2);
                        run_att(d, tc, &c, q + cut * tok, tc->pos0 + cut, tc->ntok - cut, o2 + cut * tok);
                        CHECK(!memcmp(o2, out, sizeof(float) * nq), "%s: the batch in two parts differs (nh %d pos0 %d ntok %d)",
                              lyra_cpu_path_name(paths[pi]), tc->nh, tc->pos0, tc->ntok);
                    }
                }
                cache_free(&c);
                lyra_device_free(d);
            }
            free(base);
        }
    }
    unsetenv("LYRA_CPU");
    free(K); free(V); free(q); free(out); free(o2); free(ref);
}

int main(void) {
    lyra_rng_seed(&rng, 7);
    const att_case cases[] = {
        /* nh nkv hd  window cap  chunk ring pos0 ntok */
        {32, 4, 64, 0, 0, 256, 0, 0, 1},      /* the 1.1B's geometry: first token */
        {32, 4, 64, 0, 0, 256, 0, 700, 1},    /* decode at depth */
        {32, 4, 64, 0, 0, 256, 0, 0, 40},     /* a prompt: tiles of 16 and a part one */
        {32, 4, 64, 0, 0, 256, 0, 500, 37},   /* a prompt at depth, across a chunk's end */
        {8, 8, 32, 0, 0, 64, 0, 130, 21},     /* no grouping, short chunks */
        {16, 1, 16, 0, 0, 512, 0, 600, 9},    /* multi-query: groups split over ATT_MAXG; blocks inside a chunk */
        {10, 2, 80, 0, 0, 256, 0, 255, 18},   /* groups of 5, masked column slices */
        {12, 4, 128, 0, 0, 128, 0, 300, 5},
        {8, 2, 64, 100, 0, 64, 0, 400, 33},   /* sliding window, plain cache */
        {8, 2, 64, 100, 0, 64, 1, 400, 33},   /* sliding window in a ring */
        {8, 4, 32, 5, 0, 4, 1, 50, 20},       /* a window shorter than the batch, ring of 4-position chunks */
        {8, 4, 64, 0, 30.0f, 256, 0, 300, 17}, /* soft-capping (Gemma 2) */
        {8, 4, 64, 300, 50.0f, 128, 1, 700, 24},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_case(&cases[i]);
    return test_done();
}
