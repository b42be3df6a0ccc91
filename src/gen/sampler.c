/* sampler.c: choosing the next token from logits (lyra_sampler_* in lyra.h).
 *
 * The stages, in llama.cpp's order:
 *   repetition penalty over the last repeat_last_n accepted tokens (a token
 *   seen there once or more: positive logit / penalty, negative * penalty)
 *   -> top-k -> top-p -> min-p -> temperature -> a draw with lyra's PRNG.
 * top-p and min-p look at the probabilities at temperature 1 (temperature is
 * applied last, as in llama.cpp). temperature <= 0 is argmax of the penalised
 * logits, the lowest id winning ties. Candidates are always ordered by logit
 * (descending), then id (ascending), so every draw is a pure function of the
 * seed, the accepted tokens and the logits. */
#include "lyra.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "gen/sampler.h"

/* One candidate token. */
typedef struct {
    float logit; /* its (penalised) logit */
    int32_t id;  /* token id */
} cand;

struct lyra_sampler {
    lyra_sampler_params p; /* parameters as given (repeat_last_n clamped >= 0) */
    int32_t n_vocab;       /* logits per call */
    lyra_rng rng;          /* draws; seeded from p.seed, reseeded by reset */
    int32_t *window;       /* [p.repeat_last_n] ring of the last accepted tokens */
    int32_t n_window;      /* entries filled (<= repeat_last_n) */
    int32_t head;          /* next slot of window to write */
    cand *cands;           /* [n_vocab] scratch candidates */
    uint8_t *seen;         /* [n_vocab] scratch marks: token already penalised */
};

lyra_sampler_params lyra_sampler_default_params(void) {
    lyra_sampler_params p;
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    p.seed = 0;
    return p;
}

lyra_sampler *lyra_sampler_new(const lyra_sampler_params *params, int32_t n_vocab) {
    if (n_vocab <= 0) return NULL;
    lyra_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = params ? *params : lyra_sampler_default_params();
    if (s->p.repeat_last_n < 0) s->p.repeat_last_n = 0;
    s->n_vocab = n_vocab;
    s->window = malloc(sizeof *s->window * (size_t)(s->p.repeat_last_n > 0 ? s->p.repeat_last_n : 1));
    s->cands = malloc(sizeof *s->cands * (size_t)n_vocab);
    s->seen = calloc((size_t)n_vocab, 1);
    if (!s->window || !s->cands || !s->seen) {
        lyra_sampler_free(s);
        return NULL;
    }
    lyra_sampler_reset(s);
    return s;
}

void lyra_sampler_free(lyra_sampler *s) {
    if (!s) return;
    free(s->window);
    free(s->cands);
    free(s->seen);
    free(s);
}

void lyra_sampler_reset(lyra_sampler *s) {
    if (!s) return;
    s->n_window = 0;
    s->head = 0;
    lyra_rng_seed(&s->rng, s->p.seed);
}

void lyra_sampler_accept(lyra_sampler *s, int32_t token) {
    if (!s || s->p.repeat_last_n <= 0) return;
    s->window[s->head] = token;
    s->head = (s->head + 1) % s->p.repeat_last_n;
    if (s->n_window < s->p.repeat_last_n) s->n_window++;
}

/* Total order: higher logit first, then lower id. */
static int cand_before(const cand *a, const cand *b) {
    if (a->logit != b->logit) return a->logit > b->logit;
    return a->id < b->id;
}

static int cand_cmp(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (cand_before(a, b)) return -1;
    if (cand_before(b, a)) return 1;
    return 0;
}

/* Restore the min-heap property (worst candidate at the root) below i. */
static void heap_down(cand *h, int32_t n, int32_t i) {
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && cand_before(&h[w], &h[l])) w = l;
        if (r < n && cand_before(&h[w], &h[r])) w = r;
        if (w == i) return;
        cand t = h[i]; h[i] = h[w]; h[w] = t;
        i = w;
    }
}

/* Keep the best k of c[0..n) in c[0..k), sorted. O(n log k). */
static void select_top_k(cand *c, int32_t n, int32_t k) {
    for (int32_t i = k / 2 - 1; i >= 0; i--) heap_down(c, k, i);
    for (int32_t i = k; i < n; i++) {
        if (cand_before(&c[i], &c[0])) {
            c[0] = c[i];
            heap_down(c, k, 0);
        }
    }
    qsort(c, (size_t)k, sizeof *c, cand_cmp);
}

/* Apply the repetition penalty to c (in id order: c[id].id == id). */
static void apply_penalty(lyra_sampler *s, cand *c) {
    float pen = s->p.repeat_penalty;
    if (pen == 1.0f || s->n_window == 0) return;
    for (int32_t i = 0; i < s->n_window; i++) {
        int32_t t = s->window[i];
        if (t < 0 || t >= s->n_vocab || s->seen[t]) continue;
        s->seen[t] = 1;
        c[t].logit = c[t].logit > 0 ? c[t].logit / pen : c[t].logit * pen;
    }
    for (int32_t i = 0; i < s->n_window; i++) {
        int32_t t = s->window[i];
        if (t >= 0 && t < s->n_vocab) s->seen[t] = 0;
    }
}

int32_t lyra_sampler_sample(lyra_sampler *s, const float *logits) {
    cand *c = s->cands;
    int32_t n = s->n_vocab;
    for (int32_t i = 0; i < n; i++) {
        c[i].logit = isnan(logits[i]) ? -INFINITY : logits[i];
        c[i].id = i;
    }
    apply_penalty(s, c);

    /* temperature <= 0: argmax, lowest id on ties (strict > in id order) */
    if (!(s->p.temperature > 0.0f)) {
        int32_t best = 0;
        for (int32_t i = 1; i < n; i++)
            if (c[i].logit > c[best].logit) best = i;
        return best;
    }

    /* top-k: c[0..n) becomes the k best, sorted */
    int sorted = 0;
    if (s->p.top_k > 0 && s->p.top_k < n) {
        select_top_k(c, n, s->p.top_k);
        n = s->p.top_k;
        sorted = 1;
    }

    /* max logit and the softmax normaliser (temperature 1) of what is left */
    float maxl = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (c[i].logit > maxl) maxl = c[i].logit;
    if (!isfinite(maxl)) { /* all -inf, or a +inf: the first best one */
        int32_t best = 0;
        for (int32_t i = 1; i < n; i++)
            if (cand_before(&c[i], &c[best])) best = i;
        return c[best].id;
    }
    double z = 0.0;
    for (int32_t i = 0; i < n; i++) z += exp((double)c[i].logit - maxl);

    /* min-p keeps a prefix of the sorted order (p_i >= min_p * p_max), and so
     * does top-p, on the same probabilities: filter by min-p first (cheap,
     * unsorted), then sort only the survivors for top-p. */
    if (s->p.min_p > 0.0f) {
        double thr = log((double)s->p.min_p); /* logit - maxl >= log(min_p) */
        if (thr > 0.0) thr = 0.0;              /* min_p > 1: the max alone */
        int32_t m = 0;
        for (int32_t i = 0; i < n; i++)
            if ((double)c[i].logit - maxl >= thr) c[m++] = c[i];
        n = m; /* >= 1: the max always survives (thr <= 0) */
    }

    /* top-p: the smallest prefix whose probability reaches top_p */
    if (s->p.top_p < 1.0f) {
        if (!sorted) qsort(c, (size_t)n, sizeof *c, cand_cmp);
        double cum = 0.0, target = (double)s->p.top_p * z;
        for (int32_t i = 0; i < n; i++) {
            cum += exp((double)c[i].logit - maxl);
            if (cum >= target) { n = i + 1; break; }
        }
    }

    /* temperature, then draw (in sorted order, or id order when nothing
     * needed sorting: either is a fixed order) */
    double inv_t = 1.0 / (double)s->p.temperature, w = 0.0;
    for (int32_t i = 0; i < n; i++) w += exp(((double)c[i].logit - maxl) * inv_t);
    double u = lyra_rng_f64(&s->rng) * w, cum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cum += exp(((double)c[i].logit - maxl) * inv_t);
        if (u < cum) return c[i].id;
    }
    return c[n - 1].id;
}

/* ------------------------------------------------------------------ state */

int32_t lyra_sampler_window_cap(const lyra_sampler *s) { return s->p.repeat_last_n; }

void lyra_sampler_state_get(const lyra_sampler *s, lyra_sampler_state *st, int32_t *buf, int32_t cap) {
    memcpy(st->rng, s->rng.s, sizeof st->rng);
    int32_t n = s->n_window < cap ? s->n_window : cap;
    int32_t r = s->p.repeat_last_n;
    /* the ring's oldest entry: head once full, else 0 */
    int32_t first = s->n_window == r && r > 0 ? s->head : 0;
    for (int32_t i = 0; i < n; i++) buf[i] = s->window[(first + (s->n_window - n) + i) % (r > 0 ? r : 1)];
    st->n_window = n;
    st->window = buf;
}

void lyra_sampler_state_set(lyra_sampler *s, const lyra_sampler_state *st) {
    memcpy(s->rng.s, st->rng, sizeof st->rng);
    s->n_window = 0;
    s->head = 0;
    for (int32_t i = 0; i < st->n_window; i++) lyra_sampler_accept(s, st->window[i]);
}
