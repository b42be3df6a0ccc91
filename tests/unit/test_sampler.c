/* test_sampler.c: the sampler's stages against hand-computed distributions.
 *
 * Each case draws N = 100000 tokens with a fixed seed and compares the
 * observed frequencies with the expected truncated, renormalised
 * distribution: |freq - p| < 0.006 for every token (the binomial standard
 * deviation is at most sqrt(0.25 / N) = 0.0016, so this is ~3.8 sigma), and
 * tokens the stage must remove are never drawn (count exactly 0). Plus argmax
 * ties, the repetition window, determinism and reset. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lyra.h"
#include "testutil.h"

#define N_DRAWS 100000
#define TOL 0.006

/* Draw N_DRAWS tokens and compare with want[n] (probabilities). */
static void check_dist(const char *name, const lyra_sampler_params *p,
                       const float *logits, int n, const double *want) {
    lyra_sampler *s = lyra_sampler_new(p, n);
    CHECK(s != NULL, "%s: sampler_new", name);
    if (!s) return;
    long count[64] = {0}, out_of_range = 0;
    for (int i = 0; i < N_DRAWS; i++) {
        int32_t t = lyra_sampler_sample(s, logits);
        if (t >= 0 && t < n) count[t]++;
        else out_of_range++;
    }
    CHECK(out_of_range == 0, "%s: %ld tokens out of range", name, out_of_range);
    for (int i = 0; i < n; i++) {
        double f = (double)count[i] / N_DRAWS;
        if (want[i] == 0.0)
            CHECK(count[i] == 0, "%s: token %d drawn %ld times, must be excluded", name, i, count[i]);
        else
            CHECK(fabs(f - want[i]) < TOL, "%s: token %d freq %.4f want %.4f", name, i, f, want[i]);
    }
    lyra_sampler_free(s);
}

/* Params with every stage off and temperature 1. */
static lyra_sampler_params plain(void) {
    lyra_sampler_params p = lyra_sampler_default_params();
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.seed = 1234;
    return p;
}

/* Probabilities 0.05 0.40 0.10 0.30 0.15 (ids deliberately not in order). */
static const double P5[5] = {0.05, 0.40, 0.10, 0.30, 0.15};

static void logits_of(const double *p, int n, float *out, float shift) {
    for (int i = 0; i < n; i++) out[i] = (float)log(p[i]) + shift;
}

static void test_defaults(void) {
    lyra_sampler_params p = lyra_sampler_default_params();
    CHECK(fabsf(p.temperature - 0.8f) < 1e-7f, "temp %g", p.temperature);
    CHECK(p.top_k == 40, "top_k %d", (int)p.top_k);
    CHECK(fabsf(p.top_p - 0.95f) < 1e-7f, "top_p %g", p.top_p);
    CHECK(fabsf(p.min_p - 0.05f) < 1e-7f, "min_p %g", p.min_p);
    CHECK(p.repeat_penalty == 1.0f, "repeat_penalty %g", p.repeat_penalty);
    CHECK(p.repeat_last_n == 64, "repeat_last_n %d", (int)p.repeat_last_n);
}

static void test_stages(void) {
    float lg[5];
    logits_of(P5, 5, lg, 3.0f); /* a shift changes nothing */

    lyra_sampler_params p = plain();
    check_dist("plain", &p, lg, 5, P5);

    /* top-k 3: {0.40, 0.30, 0.15} / 0.85 */
    p = plain(); p.top_k = 3;
    double k3[5] = {0, 0.40 / 0.85, 0, 0.30 / 0.85, 0.15 / 0.85};
    check_dist("top-k 3", &p, lg, 5, k3);

    /* top-p 0.75: cumulative 0.40, 0.70, 0.85 -> keeps 3, same as top-k 3 */
    p = plain(); p.top_p = 0.75f;
    check_dist("top-p 0.75", &p, lg, 5, k3);

    /* top-p 0.3: the first token alone reaches it */
    p = plain(); p.top_p = 0.3f;
    double only1[5] = {0, 1, 0, 0, 0};
    check_dist("top-p 0.3", &p, lg, 5, only1);

    /* min-p 0.3: keeps p >= 0.12 -> {0.40, 0.30, 0.15} */
    p = plain(); p.min_p = 0.3f;
    check_dist("min-p 0.3", &p, lg, 5, k3);

    /* min-p 0.2: keeps p >= 0.08 -> {0.40, 0.30, 0.15, 0.10} / 0.95 */
    p = plain(); p.min_p = 0.2f;
    double m2[5] = {0, 0.40 / 0.95, 0.10 / 0.95, 0.30 / 0.95, 0.15 / 0.95};
    check_dist("min-p 0.2", &p, lg, 5, m2);

    /* temperature 2: p^(1/2) renormalised */
    p = plain(); p.temperature = 2.0f;
    double t2[5], z = 0;
    for (int i = 0; i < 5; i++) z += (t2[i] = sqrt(P5[i]));
    for (int i = 0; i < 5; i++) t2[i] /= z;
    check_dist("temp 2", &p, lg, 5, t2);

    /* temperature 0.5: p^2 renormalised */
    p = plain(); p.temperature = 0.5f;
    double th[5];
    z = 0;
    for (int i = 0; i < 5; i++) z += (th[i] = P5[i] * P5[i]);
    for (int i = 0; i < 5; i++) th[i] /= z;
    check_dist("temp 0.5", &p, lg, 5, th);

    /* order: top-p 0.8 on the temperature-1 probabilities keeps 3 (0.85 >=
     * 0.8), THEN temperature 2 flattens those three: sqrt(p) over 3 */
    p = plain(); p.top_p = 0.8f; p.temperature = 2.0f;
    double o[5] = {0};
    z = sqrt(0.40) + sqrt(0.30) + sqrt(0.15);
    o[1] = sqrt(0.40) / z; o[3] = sqrt(0.30) / z; o[4] = sqrt(0.15) / z;
    check_dist("top-p then temp", &p, lg, 5, o);

    /* all stages: top-k 4 {.40 .30 .15 .10}; top-p 0.9 over those
     * renormalised (/.95: .421 .737 .895 >= .9? no -> 1.0) keeps 4; min-p
     * 0.3 of the max (.4*.3 = .12) drops .10 -> 3; temperature 0.5 squares */
    p = plain(); p.top_k = 4; p.top_p = 0.9f; p.min_p = 0.3f; p.temperature = 0.5f;
    double a[5] = {0};
    z = 0.16 + 0.09 + 0.0225;
    a[1] = 0.16 / z; a[3] = 0.09 / z; a[4] = 0.0225 / z;
    check_dist("all stages", &p, lg, 5, a);
}

static void test_penalty(void) {
    /* logits 2, 1, -1, 0.5; penalty 2 on tokens 0 and 2 (token 0 twice:
     * penalised once) -> 1, 1, -2, 0.5 */
    float lg[4] = {2.0f, 1.0f, -1.0f, 0.5f};
    lyra_sampler_params p = plain();
    p.repeat_penalty = 2.0f;
    lyra_sampler *s = lyra_sampler_new(&p, 4);
    lyra_sampler_accept(s, 0);
    lyra_sampler_accept(s, 2);
    lyra_sampler_accept(s, 0);
    long count[4] = {0};
    for (int i = 0; i < N_DRAWS; i++) count[lyra_sampler_sample(s, lg)]++;
    double e[4] = {exp(1.0), exp(1.0), exp(-2.0), exp(0.5)}, z = 0;
    for (int i = 0; i < 4; i++) z += e[i];
    for (int i = 0; i < 4; i++) {
        double f = (double)count[i] / N_DRAWS;
        CHECK(fabs(f - e[i] / z) < TOL, "penalty: token %d freq %.4f want %.4f", i, f, e[i] / z);
    }
    lyra_sampler_free(s);

    /* greedy sees the penalised logits: 1 == 1 -> lowest id 0; with token 1
     * also penalised (1 -> 0.5) token 0 wins alone, and penalising only 0
     * makes 1 the unique max */
    p.temperature = 0.0f;
    s = lyra_sampler_new(&p, 4);
    lyra_sampler_accept(s, 0);
    CHECK(lyra_sampler_sample(s, lg) == 0, "greedy tie after penalty must pick id 0");
    lyra_sampler_free(s);
    float lg2[4] = {2.0f, 1.5f, -1.0f, 0.5f};
    s = lyra_sampler_new(&p, 4);
    lyra_sampler_accept(s, 0); /* 2 -> 1 < 1.5 */
    CHECK(lyra_sampler_sample(s, lg2) == 1, "greedy after penalty: want 1");
    lyra_sampler_free(s);

    /* the window holds only the last repeat_last_n tokens */
    p.repeat_last_n = 3;
    s = lyra_sampler_new(&p, 4);
    lyra_sampler_accept(s, 0);
    lyra_sampler_accept(s, 3);
    lyra_sampler_accept(s, 3);
    CHECK(lyra_sampler_sample(s, lg2) == 1, "token 0 still in the window (2/2 = 1 < 1.5): want 1");
    lyra_sampler_free(s);
    s = lyra_sampler_new(&p, 4);
    lyra_sampler_accept(s, 0);
    lyra_sampler_accept(s, 3);
    lyra_sampler_accept(s, 3);
    lyra_sampler_accept(s, 3); /* 0 falls out of the window */
    CHECK(lyra_sampler_sample(s, lg2) == 0, "token 0 left the window: want 0");
    lyra_sampler_free(s);
    /* negative logits are multiplied: -1 * 4 = -4 < -3 */
    float lg3[2] = {-1.0f, -3.0f};
    p.repeat_penalty = 4.0f;
    p.repeat_last_n = 64;
    s = lyra_sampler_new(&p, 2);
    CHECK(lyra_sampler_sample(s, lg3) == 0, "no penalty yet: want 0");
    lyra_sampler_accept(s, 0);
    CHECK(lyra_sampler_sample(s, lg3) == 1, "negative logit * penalty: want 1");
    lyra_sampler_free(s);
}

static void test_argmax(void) {
    enum { V = 1000 };
    float *lg = malloc(sizeof *lg * V);
    for (int i = 0; i < V; i++) lg[i] = (float)(i % 7) * 0.1f;
    lg[500] = 3.0f; lg[200] = 3.0f; lg[900] = 3.0f;
    lyra_sampler_params p = lyra_sampler_default_params();
    p.temperature = 0.0f;
    lyra_sampler *s = lyra_sampler_new(&p, V);
    for (int r = 0; r < 3; r++)
        CHECK(lyra_sampler_sample(s, lg) == 200, "argmax tie: want lowest id 200");
    p.temperature = -1.0f;
    lyra_sampler *s2 = lyra_sampler_new(&p, V);
    CHECK(lyra_sampler_sample(s2, lg) == 200, "negative temperature is argmax too");
    /* NaN never wins */
    lg[0] = NAN;
    CHECK(lyra_sampler_sample(s2, lg) == 200, "NaN logit must not win");
    lyra_sampler_free(s);
    lyra_sampler_free(s2);

    /* top-k 1 with ties is the lowest id as well, even when sampling */
    for (int i = 0; i < V; i++) lg[i] = 0.0f;
    lg[700] = 5.0f; lg[300] = 5.0f;
    p = plain(); p.top_k = 1;
    s = lyra_sampler_new(&p, V);
    for (int r = 0; r < 100; r++)
        CHECK(lyra_sampler_sample(s, lg) == 300, "top-k 1 tie: want 300");
    lyra_sampler_free(s);
    free(lg);
}

/* Same seed -> same sequence; other seed -> another; reset replays. */
static void test_determinism(void) {
    enum { V = 32000, T = 300 };
    float *lg = malloc(sizeof *lg * V);
    uint64_t x = 99;
    for (int i = 0; i < V; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        lg[i] = (float)((x >> 33) % 1000) / 100.0f; /* 0 .. 9.99, many ties */
    }
    lyra_sampler_params p = lyra_sampler_default_params();
    p.seed = 7;
    p.repeat_penalty = 1.1f;
    p.top_k = 0; /* exercise the full sort */
    lyra_sampler *a = lyra_sampler_new(&p, V), *b = lyra_sampler_new(&p, V);
    p.seed = 8;
    lyra_sampler *c = lyra_sampler_new(&p, V);
    int32_t first[T];
    int same_ab = 1, same_ac = 1;
    for (int i = 0; i < T; i++) {
        int32_t ta = lyra_sampler_sample(a, lg), tb = lyra_sampler_sample(b, lg),
                tc = lyra_sampler_sample(c, lg);
        first[i] = ta;
        same_ab &= ta == tb;
        same_ac &= ta == tc;
        lyra_sampler_accept(a, ta); lyra_sampler_accept(b, tb); lyra_sampler_accept(c, tc);
    }
    CHECK(same_ab, "same seed must give the same tokens");
    CHECK(!same_ac, "seeds 7 and 8 gave the same %d tokens", T);
    lyra_sampler_reset(a);
    int replay = 1;
    for (int i = 0; i < T; i++) {
        int32_t t = lyra_sampler_sample(a, lg);
        replay &= t == first[i];
        lyra_sampler_accept(a, t);
    }
    CHECK(replay, "reset must replay the same tokens");
    lyra_sampler_free(a); lyra_sampler_free(b); lyra_sampler_free(c);
    free(lg);
    CHECK(lyra_sampler_new(NULL, 0) == NULL, "n_vocab 0 must fail");
}

/* Defaults on a realistic vocabulary: only tokens within top-k 40 and
 * min-p 0.05 of the max may ever appear. */
static void test_defaults_truncate(void) {
    enum { V = 512 };
    float lg[V];
    for (int i = 0; i < V; i++) lg[i] = -0.01f * (float)i; /* decreasing */
    lg[100] = 2.0f; /* p_max; min-p keeps logit >= 2 + ln 0.05 = -0.996 */
    lyra_sampler_params p = lyra_sampler_default_params();
    p.seed = 5;
    lyra_sampler *s = lyra_sampler_new(&p, V);
    int bad = 0;
    for (int i = 0; i < 20000; i++) {
        int32_t t = lyra_sampler_sample(s, lg);
        if (t != 100 && t >= 39) bad++; /* top-40 = {100, 0..38} */
    }
    CHECK(bad == 0, "%d draws outside top-k 40", bad);
    lyra_sampler_free(s);
}

int main(void) {
    test_defaults();
    test_stages();
    test_penalty();
    test_argmax();
    test_determinism();
    test_defaults_truncate();
    return test_done();
}
