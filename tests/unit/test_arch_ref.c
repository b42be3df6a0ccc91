/* test_arch_ref.c: every architecture of issue 13 (llama, Mistral's window,
 * Llama 3 rope_freqs, linear rope scaling, phi2 fused/separate QKV, qwen2
 * tied/untied, qwen3, gemma, gemma2, gemma3 (also with linear rope scaling
 * on global layers, and rope.freq_base_swa on window layers), phi3 (also
 * long-context files: longrope factors, long and short)) on
 * random-weight GGUF files written by tests/reference/arch_model.py (the
 * gguf package, independent of lyra),
 * against the float64 reference tests/reference/arch_ref.py (both validated
 * against llama.cpp: tests/reference/README.md). Per variant:
 *  - F32 weights: logits of 16 positions (longer than the 5-position windows)
 *    as one batch, in batches of 5 and token by token within max |diff|
 *    1e-4 x max |logit|; batch and token by token bitwise equal;
 *  - greedy ids from BOS equal to the reference's (up to a near tie);
 *  - split over two simulated GPUs, the CPU and disk: logits bitwise equal
 *    to all-CPU; a KV allocation failing mid-generation on the GPU (layers
 *    step down to the CPU) and on the CPU (to disk), at token 8 and 20
 *    (Mistral, all layers windowed, may allocate nothing at 20): every
 *    step's logits bitwise equal to all-CPU;
 *  - on-load 8-bit quantization (against the reference on the F32 file),
 *    and files written as F16, Q8_0 and Q4_0 (against the reference on the
 *    same file): within QTOL x max |logit| (F16: 1e-3).
 * Needs $LYRA_PYTHON with numpy and gguf (skipped without). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"
#include "testutil.h"

#define NTOK 16
#define NGREEDY 12
#define NSEQ 24 /* positions of the fallback runs */
#define REF_CTX 64 /* the context of the runs compared with the reference */
/* Quantized weights (files, on-load): max |diff| / max |logit|. Activations
 * are quantized too (Q8_0), which these random, untrained models amplify:
 * llama.cpp itself is up to 0.068 from the reference on the same files
 * (tests/reference/README.md); a wrong layout or scale gives O(1). */
#define QTOL 0.1

static const int32_t TOKENS[NTOK] = {1, 300, 50, 7, 99, 260, 270, 280, 290, 310, 3, 120, 64, 301, 33, 200};

typedef struct variant {
    const char *label, *arch, *opts;
} variant;

static const variant VARIANTS[] = {
    {"llama", "llama", ""},
    {"llama-tied", "llama", "--tied"},
    {"llama3-ropefreqs8", "llama", "--rope-freqs 8"},
    {"llama-linear4", "llama", "--rope-scale 4"},
    {"mistral-win5", "mistral", ""},
    {"phi2-fused", "phi2", ""},
    {"phi2-separate", "phi2", "--separate-qkv"},
    {"qwen2-tied", "qwen2", ""},
    {"qwen2-untied", "qwen2", "--untied"},
    {"qwen2-base1e4-linear2", "qwen2", "--rope-base 10000 --rope-scale 2"},
    {"qwen3", "qwen3", ""},
    {"gemma", "gemma", ""},
    {"gemma2", "gemma2", ""},
    {"gemma3", "gemma3", ""},
    {"gemma3-linear4", "gemma3", "--rope-scale 4"},
    {"gemma3-swabase5000", "gemma3", "--swa-base 5000"},
    {"phi3", "phi3", ""},
    /* longrope: context 64 past the original 32 (long factors), within 512 (short) */
    {"phi3-longrope-long", "phi3", "--rope-long 4 --orig-ctx 32"},
    {"phi3-longrope-short", "phi3", "--rope-long 4 --orig-ctx 512 --ctx 1024"},
};

static const char *py(void) {
    const char *p = getenv("LYRA_PYTHON");
    return p && *p ? p : "python3";
}

static const char *src_dir(void) {
    const char *s = getenv("LYRA_SRC_DIR");
    return s && *s ? s : ".";
}

/* Runs CMD and returns its whole stdout (malloc'd) and exit status. */
static char *run_cmd(const char *cmd, int *status) {
    FILE *f = popen(cmd, "r");
    if (!f) { *status = -1; return NULL; }
    size_t cap = 1 << 16, len = 0, k;
    char *buf = malloc(cap);
    while ((k = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += k;
        if (cap - len < 2) buf = realloc(buf, cap *= 2);
    }
    buf[len] = 0;
    *status = pclose(f);
    return buf;
}

static int write_model(const variant *v, const char *type, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s-%s.gguf", test_tmp_dir(), v->label, type);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' '%s/tests/reference/arch_model.py' %s '%s' --type %s %s 2>&1", py(),
             src_dir(), v->arch, path, type, v->opts);
    int st;
    char *out = run_cmd(cmd, &st);
    CHECK(st == 0, "%s: arch_model.py failed (%d): %.400s", v->label, st, out ? out : "");
    free(out);
    return st == 0;
}

/* Reference logits [NTOK][V] of TOKENS; NULL on failure (a failed check). */
static double *reference(const char *label, const char *model, int V) {
    char cmd[2048];
    int o = snprintf(cmd, sizeof cmd, "'%s' '%s/tests/reference/arch_ref.py' '%s' ", py(), src_dir(), model);
    for (int i = 0; i < NTOK; i++) o += snprintf(cmd + o, sizeof cmd - (size_t)o, "%s%d", i ? "," : "", TOKENS[i]);
    snprintf(cmd + o, sizeof cmd - (size_t)o, " --n-ctx %d 2>&1", REF_CTX);
    int st;
    char *buf = run_cmd(cmd, &st);
    if (!buf) { CHECK(0, "%s: cannot run the reference", label); return NULL; }
    double *out = malloc(sizeof(double) * NTOK * (size_t)V);
    char *p = buf, *end;
    int got = 0;
    for (; got < NTOK * V; got++) {
        out[got] = strtod(p, &end);
        if (end == p) break;
        p = end;
    }
    CHECK(st == 0 && got == NTOK * V, "%s: reference failed (status %d, %d of %d values): %.300s", label, st, got,
          NTOK * V, buf);
    free(buf);
    if (st != 0 || got != NTOK * V) { free(out); return NULL; }
    return out;
}

/* The reference's greedy ids from BOS; returns how many were read. */
static int reference_greedy(const char *model, int32_t *ids, int n) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' '%s/tests/reference/arch_ref.py' '%s' 1 --greedy %d --n-ctx %d 2>&1", py(),
             src_dir(), model, n, REF_CTX);
    int st, got = 0;
    char *buf = run_cmd(cmd, &st);
    char *p = buf, *end;
    while (buf && got < n) {
        long v = strtol(p, &end, 10);
        if (end == p) break;
        ids[got++] = (int32_t)v;
        p = end;
    }
    free(buf);
    return st == 0 ? got : 0;
}

static int open_model(const char *path, const char *sim, const lyra_model_params *p, lyra_model **m,
                      lyra_error *err) {
    if (sim) setenv("LYRA_SIM_GPUS", sim, 1);
    else unsetenv("LYRA_SIM_GPUS");
    lyra_model_params dp = lyra_model_default_params();
    dp.n_ctx = REF_CTX; /* the context size picks Phi-3's long or short rope factors */
    return lyra_model_open(path, p ? p : &dp, m, err);
}

/* Logits [NTOK][V] of TOKENS: batches of n_batch, or one token at a time. */
static float *run(lyra_model *m, int n_batch, int one_by_one) {
    int V = lyra_model_n_vocab(m);
    lyra_context_params cp = lyra_context_default_params();
    cp.kv_type = LYRA_KV_F32;
    cp.n_threads = 2;
    cp.n_batch = n_batch;
    cp.n_ctx = REF_CTX;
    lyra_context *c = NULL;
    lyra_error err;
    if (lyra_context_new(m, &cp, &c, &err)) { CHECK(0, "context: %s", err.msg); return NULL; }
    float *out = malloc(sizeof(float) * NTOK * (size_t)V);
    int rc = 0;
    for (int i = 0; i < NTOK && !rc; i += one_by_one ? 1 : NTOK) {
        int n = one_by_one ? 1 : NTOK;
        rc = lyra_eval(c, TOKENS + i, n, 1, &err);
        CHECK(rc == 0, "eval: %s", err.msg);
        for (int j = 0; !rc && j < n; j++) {
            const float *l = lyra_get_logits(c, j);
            CHECK(l != NULL, "logits %d", i + j);
            if (l) memcpy(out + (size_t)(i + j) * V, l, sizeof(float) * V);
        }
    }
    lyra_context_free(c);
    if (rc) { free(out); return NULL; }
    return out;
}

static double rel_diff(const float *a, const double *ref, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - ref[i]);
        if (!(x <= d)) d = x;
        if (fabs(ref[i]) > r) r = fabs(ref[i]);
    }
    return d / (r > 0 ? r : 1);
}

/* Greedy ids from BOS with lyra; *n_sure: steps before the first near tie
 * (top two within 1e-3 of the logit range), which the comparison stops at. */
static void lyra_greedy(lyra_model *m, int32_t *ids, int n, int *n_sure) {
    int V = lyra_model_n_vocab(m);
    lyra_context_params cp = lyra_context_default_params();
    cp.kv_type = LYRA_KV_F32;
    cp.n_ctx = REF_CTX;
    lyra_context *c = NULL;
    lyra_error err;
    *n_sure = 0;
    if (lyra_context_new(m, &cp, &c, &err)) { CHECK(0, "context: %s", err.msg); return; }
    int32_t t = 1;
    int sure = 1;
    for (int i = 0; i < n; i++) {
        if (lyra_eval(c, &t, 1, 0, &err)) { CHECK(0, "greedy eval: %s", err.msg); break; }
        const float *l = lyra_get_logits(c, -1);
        int b = 0, b2 = -1;
        double range = 0;
        for (int j = 0; j < V; j++) {
            if (fabs(l[j]) > range) range = fabs(l[j]);
            if (l[j] > l[b]) { b2 = b; b = j; }
            else if (j != b && (b2 < 0 || l[j] > l[b2])) b2 = j;
        }
        if (sure && b2 >= 0 && (double)l[b] - l[b2] < 1e-3 * range) sure = 0;
        if (sure) *n_sure = i + 1;
        ids[i] = t = b;
    }
    lyra_context_free(c);
}

/* A fixed sequence, the first 8 positions at once and then one at a time,
 * KV chunks of 1 position (every token allocates); before position fail_at
 * the next allocation on device index fail_dev fails. logits [NSEQ-7][V]. */
static int run_seq(const char *path, const char *sim, int fail_dev, int fail_at, float *logits, int V,
                   lyra_model **out) {
    lyra_model_params p = lyra_model_default_params();
    p.n_ctx = NSEQ;
    p.n_batch = 8;
    p.kv_chunk = 1;
    p.n_threads = 1;
    lyra_error err;
    lyra_model *m = NULL;
    if (open_model(path, sim, &p, &m, &err)) { CHECK(0, "%s: open: %s", path, err.msg); return 1; }
    lyra_context_params cp = lyra_context_default_params();
    cp.n_ctx = NSEQ;
    cp.n_batch = 8;
    cp.n_threads = 1;
    cp.kv_type = LYRA_KV_F32;
    lyra_context *c = NULL;
    int rc = lyra_context_new(m, &cp, &c, &err);
    int32_t tok[NSEQ];
    for (int i = 0; i < NSEQ; i++) tok[i] = TOKENS[i % NTOK];
    if (!rc) rc = lyra_eval(c, tok, 8, 0, &err);
    if (!rc) memcpy(logits, lyra_get_logits(c, -1), sizeof(float) * (size_t)V);
    for (int t = 8; !rc && t < NSEQ; t++) {
        if (t == fail_at && fail_dev >= 0) {
            lyra_device *d = m->dev[fail_dev];
            d->fail_at = d->stats.alloc_calls + 1;
            d->fail_after = 0;
        }
        rc = lyra_eval(c, &tok[t], 1, 0, &err);
        if (!rc) memcpy(logits + (size_t)(t - 7) * V, lyra_get_logits(c, -1), sizeof(float) * (size_t)V);
    }
    CHECK(rc == 0, "%s: sequence run (sim %s, fail %d at %d): %s", path, sim ? sim : "-", fail_dev, fail_at,
          err.msg);
    lyra_context_free(c);
    *out = m;
    return rc;
}

static void test_splits(const variant *v, const char *path, const float *cpu, int V, int L) {
    /* embed on GPU 0, layer 0 on GPU 1, layer 1 on GPU 0 (with 4+ layers),
     * the last layer on disk, the rest and the norm on the CPU, head on GPU 0 */
    char last[32];
    snprintf(last, sizeof last, "model.layers.%d", L - 1);
    lyra_device_map_entry map[] = {
        {"", LYRA_DEVICE_CPU}, {"model.embed_tokens", 0}, {"model.layers.0", 1},
        {last, LYRA_DEVICE_DISK}, {"lm_head", 0}, {"model.layers.1", 0},
    };
    lyra_model_params p = lyra_model_default_params();
    p.n_ctx = REF_CTX;
    p.device_strategy = LYRA_DEVICE_MAP_EXPLICIT;
    p.device_map = map;
    p.n_device_map = L >= 4 ? 6 : 5;
    lyra_model *m = NULL;
    lyra_error err;
    if (open_model(path, "64MiB,64MiB", &p, &m, &err)) {
        CHECK(0, "%s: open split: %s", v->label, err.msg);
        unsetenv("LYRA_SIM_GPUS");
        return;
    }
    size_t n = (size_t)NTOK * V;
    float *b = run(m, 512, 0), *s = run(m, 512, 1);
    CHECK(b && !memcmp(b, cpu, n * sizeof(float)), "%s: split over GPUs/CPU/disk: batch logits differ from all-CPU",
          v->label);
    CHECK(s && !memcmp(s, cpu, n * sizeof(float)), "%s: split: token-by-token logits differ from all-CPU",
          v->label);
    free(b);
    free(s);
    lyra_model_free(m);

    /* fallback during generation: GPU -> CPU, CPU -> disk, at token 8 and 20 */
    size_t ns = (size_t)(NSEQ - 7) * V;
    float *ref = calloc(ns, sizeof(float)), *got = calloc(ns, sizeof(float));
    lyra_model *mm = NULL;
    if (!run_seq(path, NULL, -1, -1, ref, V, &mm)) {
        lyra_model_free(mm);
        const int at[2] = {8, 20};
        for (int i = 0; i < 2; i++) {
            for (int gpu = 1; gpu >= 0; gpu--) {
                memset(got, 0, ns * sizeof(float));
                mm = NULL;
                if (run_seq(path, gpu ? "1GiB" : NULL, 0, at[i], got, V, &mm)) { lyra_model_free(mm); continue; }
                lyra_fallback_step st;
                /* every layer windowed (Mistral): the KV stops growing once the
                 * window is full, no allocation is left to fail late on */
                int all_window = !strcmp(v->arch, "mistral");
                if (all_window && at[i] > 8 && lyra_model_fallback_steps(mm) == 0) {
                    CHECK(!memcmp(got, ref, ns * sizeof(float)), "%s: logits differ from all-CPU", v->label);
                    lyra_model_free(mm);
                    continue;
                }
                CHECK(lyra_model_fallback_steps(mm) == 1 && lyra_model_fallback_step(mm, 0, &st) == 0 &&
                          st.phase == LYRA_PHASE_GENERATE && st.token == at[i] &&
                          !strcmp(st.what, gpu ? "gpu" : "cpu") && st.to_k == L - 1,
                      "%s: %s fallback step at %d: %d steps", v->label, gpu ? "GPU" : "CPU", at[i],
                      lyra_model_fallback_steps(mm));
                CHECK(!memcmp(got, ref, ns * sizeof(float)),
                      "%s: logits differ from all-CPU after a %s fallback at token %d", v->label,
                      gpu ? "GPU -> CPU" : "CPU -> disk", at[i]);
                lyra_model_free(mm);
            }
        }
    } else {
        lyra_model_free(mm);
    }
    free(ref);
    free(got);
    unsetenv("LYRA_SIM_GPUS");
}

static void test_variant(const variant *v) {
    char path[1024];
    if (!write_model(v, "f32", path, sizeof path)) return;
    lyra_model *m = NULL;
    lyra_error err;
    if (open_model(path, NULL, NULL, &m, &err)) { CHECK(0, "%s: open: %s", v->label, err.msg); return; }
    int V = lyra_model_n_vocab(m), L = lyra_model_n_layer(m);
    size_t n = (size_t)NTOK * V;
    double *ref = reference(v->label, path, V);
    float *b = run(m, 512, 0), *b5 = run(m, 5, 0), *s = run(m, 512, 1);
    if (ref && b && b5 && s) {
        double d1 = rel_diff(b, ref, n), d2 = rel_diff(b5, ref, n), d3 = rel_diff(s, ref, n);
        printf("%-26s f32: max rel diff vs arch_ref.py: batch %.3g, batches of 5 %.3g, token by token %.3g\n",
               v->label, d1, d2, d3);
        CHECK(d1 <= 1e-4 && d2 <= 1e-4 && d3 <= 1e-4, "%s: logits vs reference: %g %g %g", v->label, d1, d2, d3);
        CHECK(!memcmp(b, s, n * sizeof(float)), "%s: batch vs token by token differ", v->label);
    }
    /* greedy from BOS */
    int32_t mine[NGREEDY], theirs[NGREEDY];
    int sure = 0;
    lyra_greedy(m, mine, NGREEDY, &sure);
    int got = reference_greedy(path, theirs, NGREEDY);
    CHECK(got == NGREEDY, "%s: reference greedy gave %d ids", v->label, got);
    int same = got == NGREEDY && !memcmp(mine, theirs, sizeof(int32_t) * (size_t)sure);
    printf("%-26s greedy from BOS: %s over %d of %d steps (the rest after a near tie)\n", v->label,
           same ? "equal" : "DIFFERENT", sure, NGREEDY);
    CHECK(same, "%s: greedy ids differ from the reference", v->label);
    lyra_model_free(m);
    /* on-load 8-bit */
    lyra_model_params p = lyra_model_default_params();
    p.n_ctx = REF_CTX;
    p.load_in_bits = 8;
    if (open_model(path, NULL, &p, &m, &err) == 0) {
        float *q = run(m, 512, 0);
        if (q && ref) {
            double d = rel_diff(q, ref, n);
            printf("%-26s --load-in-8bit: max rel diff %.3g\n", v->label, d);
            CHECK(d <= QTOL, "%s: load-in-8bit vs reference: %g", v->label, d);
        }
        free(q);
        lyra_model_free(m);
    } else {
        CHECK(0, "%s: open load-in-8bit: %s", v->label, err.msg);
    }
    if (b) test_splits(v, path, b, V, L);
    free(ref); free(b); free(b5); free(s);
    remove(path);
    /* weights stored quantized: against the reference on the same file */
    static const struct { const char *type; double tol; } Q[] = {{"f16", 1e-3}, {"q8_0", QTOL}, {"q4_0", QTOL}};
    for (size_t i = 0; i < sizeof Q / sizeof Q[0]; i++) {
        if (!write_model(v, Q[i].type, path, sizeof path)) continue;
        if (open_model(path, NULL, NULL, &m, &err)) {
            CHECK(0, "%s %s: open: %s", v->label, Q[i].type, err.msg);
            continue;
        }
        double *r = reference(v->label, path, V);
        float *q = run(m, 512, 0);
        if (r && q) {
            double d = rel_diff(q, r, n);
            printf("%-26s %s: max rel diff %.3g\n", v->label, Q[i].type, d);
            CHECK(d <= Q[i].tol, "%s %s: vs reference %g (tolerance %g)", v->label, Q[i].type, d, Q[i].tol);
        }
        free(r);
        free(q);
        lyra_model_free(m);
        remove(path);
    }
}

int main(int argc, char **argv) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy, gguf' >/dev/null 2>&1", py());
    if (system(cmd) != 0) test_skip("$LYRA_PYTHON has no numpy or gguf (scripts/test.sh installs them)");
    unsetenv("LYRA_FAIL_ALLOC");
    for (size_t i = 0; i < sizeof VARIANTS / sizeof VARIANTS[0]; i++) {
        int want = argc < 2;
        for (int a = 1; a < argc; a++) want |= !strcmp(argv[a], VARIANTS[i].label) || !strcmp(argv[a], VARIANTS[i].arch);
        if (want) test_variant(&VARIANTS[i]);
    }
    return test_done();
}
