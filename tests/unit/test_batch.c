/* test_batch.c: several sequences in one context, evaluated in mixed
 * batches (lyra_decode). On stories260K, a random dim-256 Q8_0 model made
 * with `lyra mkmodel`, and random Gemma 2 (Q4_0, sliding window 5 with KV
 * chunks of 4 positions, so every window layer's ring wraps) and Qwen3
 * files from tests/reference/arch_model.py, checks that the logits of every
 * token of every sequence are BITWISE equal to evaluating that sequence
 * alone (lyra_eval of all its tokens), for 1..8 sequences of different
 * lengths fed in random batches that mix prompt chunks (longer than n_batch
 * too) with single decode tokens, in random order, with every token's
 * logits or (logits NULL) each sequence's last; likewise
 *  - split over two simulated GPUs (LYRA_SIM_GPUS);
 *  - with a KV chunk allocation failing in the middle of the run on the
 *    (simulated) GPU, and on the CPU: the fallback moves a layer with every
 *    sequence's cache between two batches and the logits stay equal;
 *  - after lyra_context_seq_truncate of one sequence and evaluating its
 *    rest again;
 * and that bad batches (position, sequence, token, overflow) are
 * LYRA_ERR_INPUT and change nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/runtime.h"
#include "testutil.h"

#define MAXS 8      /* sequences at most */
#define MAXLEN 40   /* tokens per sequence at most */
#define N_CTX 64
#define N_BATCH 8
#define KV_CHUNK 4

typedef struct seqdef {
    int n;
    int32_t tok[MAXLEN];
} seqdef;

static uint32_t rnd(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static lyra_model *open_model(const char *path, const char *sim) {
    if (sim) setenv("LYRA_SIM_GPUS", sim, 1);
    else unsetenv("LYRA_SIM_GPUS");
    lyra_model_params p = lyra_model_default_params();
    p.n_ctx = N_CTX;
    p.n_batch = N_BATCH;
    p.kv_chunk = KV_CHUNK;
    p.n_threads = 2;
    lyra_model *m = NULL;
    lyra_error err;
    int rc = lyra_model_open(path, &p, &m, &err);
    CHECK(rc == 0, "%s (sim %s): open: %s", path, sim ? sim : "-", err.msg);
    unsetenv("LYRA_SIM_GPUS");
    return rc ? NULL : m;
}

static lyra_context *new_ctx(lyra_model *m, int n_seq) {
    lyra_context_params cp = lyra_context_default_params();
    cp.n_ctx = N_CTX;
    cp.n_batch = N_BATCH;
    cp.n_seq = n_seq;
    lyra_context *c = NULL;
    lyra_error err;
    int rc = lyra_context_new(m, &cp, &c, &err);
    CHECK(rc == 0, "context of %d sequences: %s", n_seq, err.msg);
    return rc ? NULL : c;
}

/* The logits [n][V] of sequence q alone (one lyra_eval of all its tokens). */
static float *alone(lyra_model *m, const seqdef *q, int V) {
    lyra_context *c = new_ctx(m, 1);
    if (!c) return NULL;
    float *out = malloc(sizeof(float) * (size_t)q->n * (size_t)V);
    lyra_error err;
    int rc = lyra_eval(c, q->tok, q->n, 1, &err);
    CHECK(rc == 0, "eval alone: %s", err.msg);
    for (int i = 0; !rc && i < q->n; i++) memcpy(out + (size_t)i * V, lyra_get_logits(c, i), sizeof(float) * V);
    lyra_context_free(c);
    if (rc) {
        free(out);
        return NULL;
    }
    return out;
}

/* Mixed batches over sequences sq[0..S) in context c until all are fed;
 * before batch fail_step the next allocation on device fail_dev fails.
 * Returns the tokens whose logits differ from ref[s] (the sequence alone). */
static int batched(lyra_model *m, lyra_context *c, int S, const seqdef *sq, float *const *ref, int V,
                   uint32_t seed, int fail_dev, int fail_step, const char *what) {
    int fed[MAXS] = {0}, bad = 0, step = 0;
    int32_t tok[MAXS * MAXLEN], pos[MAXS * MAXLEN], sid[MAXS * MAXLEN];
    int8_t keep[MAXS * MAXLEN];
    for (;;) {
        int order[MAXS], n_ord = 0;
        for (int s = 0; s < S; s++)
            if (fed[s] < sq[s].n) order[n_ord++] = s;
        if (!n_ord) break;
        for (int i = n_ord - 1; i > 0; i--) { /* shuffle */
            int j = (int)(rnd(&seed) % (uint32_t)(i + 1)), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        int n = 0;
        for (int k = 0; k < n_ord; k++) {
            int s = order[k];
            if (n_ord > 1 && rnd(&seed) % 4 == 0) continue; /* not in this batch */
            int chunk = rnd(&seed) % 2 ? 1 : 1 + (int)(rnd(&seed) % 12); /* decode or a prompt chunk */
            if (chunk > sq[s].n - fed[s]) chunk = sq[s].n - fed[s];
            for (int j = 0; j < chunk; j++, n++) {
                tok[n] = sq[s].tok[fed[s] + j];
                pos[n] = lyra_context_seq_pos(c, s) + j;
                sid[n] = s;
                keep[n] = 1;
            }
        }
        if (!n) continue;
        int all = step % 3 != 2; /* else logits NULL: each sequence's last token */
        lyra_batch b = {n, tok, pos, sid, all ? keep : NULL};
        if (step == fail_step && fail_dev >= 0) {
            lyra_device *d = m->dev[fail_dev];
            d->fail_at = d->stats.alloc_calls + 1;
            d->fail_after = 0;
        }
        lyra_error err;
        int rc = lyra_decode(c, &b, &err);
        CHECK(rc == 0, "%s: decode step %d (%d tokens): %s", what, step, n, err.msg);
        if (rc) return bad + 1;
        for (int i = 0; i < n; i++) {
            int s = sid[i], last = 1;
            for (int j = i + 1; j < n; j++) last &= sid[j] != s;
            const float *l = lyra_get_logits_ith(c, i);
            if (!all && !last) {
                CHECK(l == NULL, "%s: logits of a token not asked for", what);
                continue;
            }
            if (!l || memcmp(l, ref[s] + (size_t)pos[i] * V, sizeof(float) * V)) {
                if (!bad)
                    fprintf(stderr, "%s: step %d token %d (seq %d pos %d): %s\n", what, step, i, s,
                            (int)pos[i], l ? "logits differ" : "no logits");
                bad++;
            }
        }
        for (int s = 0; s < S; s++) fed[s] = lyra_context_seq_pos(c, s);
        step++;
    }
    return bad;
}

/* S sequences of lengths 1..MAXLEN from seed. */
static void make_seqs(int S, int V, uint32_t seed, seqdef *sq) {
    for (int s = 0; s < S; s++) {
        sq[s].n = 1 + (int)(rnd(&seed) % MAXLEN);
        if (s == 0) sq[s].n = MAXLEN; /* one long enough to wrap a ring */
        for (int i = 0; i < sq[s].n; i++) sq[s].tok[i] = (int32_t)(rnd(&seed) % (uint32_t)V);
    }
}

static void test_model(const char *path, const char *label) {
    lyra_model *m = open_model(path, NULL);
    if (!m) return;
    const int V = lyra_model_n_vocab(m);
    seqdef sq[MAXS];
    make_seqs(MAXS, V, 1234, sq);
    float *ref[MAXS];
    for (int s = 0; s < MAXS; s++) ref[s] = alone(m, &sq[s], V);
    for (int s = 0; s < MAXS; s++)
        if (!ref[s]) goto done;
    char what[160];
    /* all on the CPU: 1, 2, 5 and 8 sequences */
    static const int NS[] = {1, 2, 5, 8};
    for (size_t k = 0; k < sizeof NS / sizeof NS[0]; k++) {
        for (uint32_t seed = 1; seed <= 2; seed++) {
            lyra_context *c = new_ctx(m, NS[k]);
            if (!c) continue;
            snprintf(what, sizeof what, "%s: %d sequences, seed %u", label, NS[k], (unsigned)seed);
            int bad = batched(m, c, NS[k], sq, ref, V, seed * 77 + (uint32_t)k, -1, -1, what);
            CHECK(bad == 0, "%s: %d tokens' logits differ from the sequence alone", what, bad);
            lyra_context_free(c);
        }
    }
    /* bad batches change nothing; truncate one sequence and evaluate its rest again */
    {
        lyra_context *c = new_ctx(m, 3);
        if (c) {
            lyra_error err;
            int bad = batched(m, c, 3, sq, ref, V, 5, -1, -1, label);
            CHECK(bad == 0, "%s: 3 sequences", label);
            int32_t p1 = lyra_context_seq_pos(c, 1), t0 = 0, s9 = 9, s1 = 1, pbad = p1 + 1;
            lyra_batch b = {1, &t0, &pbad, &s1, NULL};
            CHECK(lyra_decode(c, &b, &err) == LYRA_ERR_INPUT && lyra_context_seq_pos(c, 1) == p1,
                  "%s: a wrong position", label);
            b.pos = &p1;
            b.seq_id = &s9;
            CHECK(lyra_decode(c, &b, &err) == LYRA_ERR_INPUT, "%s: sequence 9 of 3", label);
            int32_t tv = V;
            b.seq_id = &s1;
            b.token = &tv;
            CHECK(lyra_decode(c, &b, &err) == LYRA_ERR_INPUT, "%s: a token out of the vocabulary", label);
            CHECK(lyra_context_seq_pos(c, 5) == -1 && lyra_context_n_seq(c) == 3, "%s: seq_pos", label);
            lyra_context_seq_truncate(c, 0, sq[0].n / 2);
            int32_t p0 = lyra_context_seq_pos(c, 0); /* 0 when a ring lost the window */
            CHECK(p0 == sq[0].n / 2 || p0 == 0, "%s: truncate to %d: %d", label, sq[0].n / 2, (int)p0);
            CHECK(lyra_context_seq_pos(c, 1) == p1, "%s: truncating sequence 0 moved sequence 1", label);
            int n = sq[0].n - p0;
            int32_t pos[MAXLEN], sid[MAXLEN];
            int8_t keep[MAXLEN];
            for (int i = 0; i < n; i++) {
                pos[i] = p0 + i;
                sid[i] = 0;
                keep[i] = 1;
            }
            lyra_batch r = {n, sq[0].tok + p0, pos, sid, keep};
            int rc = lyra_decode(c, &r, &err);
            CHECK(rc == 0, "%s: decode after truncate: %s", label, err.msg);
            for (int i = 0; !rc && i < n; i++) {
                const float *l = lyra_get_logits_ith(c, i);
                CHECK(l && !memcmp(l, ref[0] + (size_t)pos[i] * V, sizeof(float) * V),
                      "%s: logits at %d after truncate", label, (int)pos[i]);
            }
            int32_t big[N_CTX], bp[N_CTX], bs[N_CTX];
            int32_t q2 = lyra_context_seq_pos(c, 2);
            for (int i = 0; i < N_CTX; i++) {
                big[i] = 1;
                bp[i] = q2 + i;
                bs[i] = 2;
            }
            lyra_batch o = {N_CTX - q2 + 1, big, bp, bs, NULL};
            CHECK(lyra_decode(c, &o, &err) == LYRA_ERR_INPUT && lyra_context_seq_pos(c, 2) == q2,
                  "%s: overflow", label);
            lyra_context_free(c);
        }
    }
    lyra_model_free(m);
    m = NULL;
    /* two simulated GPUs; then a KV allocation failing mid-run on a GPU and on the CPU */
    for (int mode = 0; mode < 3; mode++) {
        const char *sim = mode == 0 ? "64MiB,64MiB" : mode == 1 ? "1GiB" : NULL;
        lyra_model *g = open_model(path, sim);
        if (!g) continue;
        lyra_context *c = new_ctx(g, MAXS);
        if (c) {
            int fail_dev = mode == 0 ? -1 : mode == 1 ? 0 : g->cpu;
            snprintf(what, sizeof what, "%s: 8 sequences, %s", label,
                     mode == 0 ? "two simulated GPUs" : mode == 1 ? "fallback GPU -> CPU" : "fallback CPU -> disk");
            int bad = batched(g, c, MAXS, sq, ref, V, 99, fail_dev, 4, what);
            CHECK(bad == 0, "%s: %d tokens' logits differ from the sequence alone", what, bad);
            if (mode) {
                lyra_fallback_step st;
                CHECK(lyra_model_fallback_steps(g) >= 1 && lyra_model_fallback_step(g, 0, &st) == 0 &&
                          st.phase == LYRA_PHASE_GENERATE && !strcmp(st.what, mode == 1 ? "gpu" : "cpu"),
                      "%s: %d fallback steps", what, lyra_model_fallback_steps(g));
            }
            lyra_context_free(c);
        }
        lyra_model_free(g);
    }
done:
    for (int s = 0; s < MAXS; s++) free(ref[s]);
    lyra_model_free(m);
}

static const char *py(void) {
    const char *p = getenv("LYRA_PYTHON");
    return p && *p ? p : "python3";
}

int main(void) {
    char path[1200], cmd[3000];
    unsetenv("LYRA_FAIL_ALLOC");
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", test_shared_dir());
    if (access(path, R_OK) == 0) test_model(path, "stories260K");
    else printf("stories260K: skipped (no %s)\n", path);
    const char *bin = getenv("LYRA_BIN");
    if (bin) {
        snprintf(path, sizeof path, "%s/batch_rand256.gguf", test_tmp_dir());
        snprintf(cmd, sizeof cmd,
                 "\"%s\" -q mkmodel -o \"%s\" --preset tiny --dim 256 --layers 4 --type Q8_0 --seed 7 "
                 "--threads 1",
                 bin, path);
        CHECK(system(cmd) == 0, "mkmodel failed: %s", cmd);
        test_model(path, "rand256");
        remove(path);
    } else {
        printf("mkmodel: skipped (LYRA_BIN not set)\n");
    }
    snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy, gguf' >/dev/null 2>&1", py());
    if (system(cmd) == 0) {
        static const char *const ARCH[][2] = {{"gemma2", "q4_0"}, {"qwen3", "f32"}};
        const char *src = getenv("LYRA_SRC_DIR");
        for (int i = 0; i < 2; i++) {
            snprintf(path, sizeof path, "%s/batch_%s.gguf", test_tmp_dir(), ARCH[i][0]);
            snprintf(cmd, sizeof cmd, "'%s' '%s/tests/reference/arch_model.py' %s '%s' --type %s >/dev/null 2>&1",
                     py(), src && *src ? src : ".", ARCH[i][0], path, ARCH[i][1]);
            int st = system(cmd);
            CHECK(st == 0, "arch_model.py %s failed", ARCH[i][0]);
            if (!st) test_model(path, ARCH[i][0]);
            remove(path);
        }
    } else {
        printf("gemma2, qwen3: skipped ($LYRA_PYTHON has no numpy or gguf)\n");
    }
    return test_done();
}
