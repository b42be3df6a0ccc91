/* test_cuda_forward.c: the whole forward pass on CUDA GPUs (needs a GPU:
 * skipped with exit 77 otherwise, and in builds without CUDA).
 * stories260K, greedy, 64 tokens after "Once upon a time", placed
 *   cpu      everything on the CPU (the reference),
 *   gpu      everything on GPU 0 (device_map "0"),
 *   split    embedding + layers 0-1 on GPU 0, the rest on the CPU
 *            (gpu_layers 2: hand-offs GPU -> CPU every token),
 *   two      LYRA_CUDA_DEVICES=0,0 (two devices on one card), every module
 *            on the GPUs, split by the balanced strategy (GPU -> GPU),
 * and required: the modules really are on CUDA devices; every step's logits
 * within 1e-3 relative RMS of the CPU's; the same tokens as the CPU; the
 * text equal to the golden (llama2.c). On a divergence the first step and
 * the CPU's top-2 logit margin there are printed. Then the whole sequence
 * evaluated again as one batch (69 tokens: the cuBLAS path) with the logits
 * of every position, within 1e-3 of the CPU's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/devspec.h"

#include "build_info.h"
#include "device/cuda.h"
#include "lyra.h"
#include "runtime/runtime.h"
#include "testutil.h"

#if !LYRA_BUILD_HAVE_CUDA
int main(void) {
    test_skip("built without CUDA (LYRA_CUDA=OFF or no nvcc)");
    return 77;
}
#else

#define NGEN 64
#define PROMPT "Once upon a time"
#define NALL (NGEN + 5) /* the batch: BOS + 4 prompt tokens + NGEN generated */

typedef struct run_out {
    int32_t toks[NGEN];   /* generated tokens */
    float *logits;        /* [NGEN + 1][n_vocab]: after the prompt, then after each token */
    int32_t all[NALL];    /* the prompt tokens, then the generated ones */
    int n_all;            /* their count */
    float *batch;         /* [n_all][n_vocab]: all of them evaluated as one batch */
    char text[4096];      /* prompt + generated text */
    int ok;               /* the run completed */
} run_out;

static int n_vocab;

/* Modules of m on CUDA devices; *n_devs = CUDA devices holding some. */
static int cuda_modules(const lyra_model *m, int *n_devs) {
    int n = 0, used[LYRA_MAX_DEVICES] = {0};
    for (int i = 0; i < lyra_llama_n_modules(m->arch); i++) {
        int di = m->module_dev[i];
        if (lyra_device_is_cuda(m->dev[di])) {
            n++;
            used[di] = 1;
        }
    }
    *n_devs = 0;
    for (int i = 0; i < LYRA_MAX_DEVICES; i++) *n_devs += used[i];
    return n;
}

/* want_cuda: modules that must be on CUDA devices (-1: all); want_devs: on
 * that many CUDA devices. */
static void run(const char *path, const char *name, const char *device_map, const char *gpu_layers,
                int want_cuda, int want_devs, run_out *o) {
    memset(o, 0, sizeof *o);
    lyra_model_params mp = lyra_model_default_params();
    lyra_error perr;
    if (device_map) /* the typed fields through the CLI's parser (config/devspec.h) */
        CHECK(lyra_devspec_strategy_parse(device_map, "device_map", &mp.device_strategy,
                                          &mp.device_gpu, &perr) == 0, "%s", perr.msg);
    if (gpu_layers)
        CHECK(lyra_devspec_gpu_layers_parse(gpu_layers, "gpu_layers", &mp.gpu_layers, &perr) == 0,
              "%s", perr.msg);
    mp.fallback = 0; /* a GPU that is not used must fail the test, not fall back */
    lyra_model *m = NULL;
    lyra_error err;
    int rc = lyra_model_open(path, &mp, &m, &err);
    CHECK(rc == 0, "%s: open: %s", name, err.msg);
    if (rc) return;
    int nd, nc = cuda_modules(m, &nd), nmod = lyra_llama_n_modules(m->arch);
    printf("%s: %d of %d modules on %d CUDA devices (%d devices in all)\n", name, nc, nmod, nd,
           m->n_dev);
    CHECK(nd == want_devs, "%s: modules on %d CUDA devices, want %d", name, nd, want_devs);
    if (want_cuda < 0) CHECK(nc == nmod, "%s: only %d of %d modules on CUDA GPUs", name, nc, nmod);
    else CHECK(nc == want_cuda, "%s: %d modules on CUDA GPUs, want %d", name, nc, want_cuda);
    n_vocab = lyra_model_n_vocab(m);
    lyra_context_params cp = lyra_context_default_params();
    lyra_context *c = NULL;
    rc = lyra_context_new(m, &cp, &c, &err);
    CHECK(rc == 0, "%s: context: %s", name, err.msg);
    int32_t *toks = NULL;
    size_t n = 0;
    if (!rc) rc = lyra_tokenize(m, PROMPT, strlen(PROMPT), 1, 0, &toks, &n, &err);
    CHECK(rc == 0 && n == 5, "%s: tokenize (%zu tokens, want BOS + 4)", name, n);
    if (!rc && n != 5) rc = 1;
    o->logits = malloc(sizeof(float) * (size_t)(NGEN + 1) * n_vocab);
    snprintf(o->text, sizeof o->text, "%s", PROMPT);
    if (!rc) rc = lyra_eval(c, toks, (int32_t)n, 0, &err); /* 5 tokens: the decode kernel */
    for (int step = 0; !rc && step <= NGEN; step++) {
        const float *l = lyra_get_logits(c, -1);
        memcpy(o->logits + (size_t)step * n_vocab, l, sizeof(float) * n_vocab);
        if (step == NGEN) break;
        int best = 0;
        for (int i = 1; i < n_vocab; i++)
            if (l[i] > l[best]) best = i;
        o->toks[step] = best;
        char piece[64];
        size_t k = lyra_token_to_piece(m, best, 0, piece, sizeof piece - 1);
        size_t len = strlen(o->text);
        if (len + k < sizeof o->text) {
            memcpy(o->text + len, piece, k);
            o->text[len + k] = '\0';
        }
        rc = lyra_eval(c, &best, 1, 0, &err);
    }
    CHECK(rc == 0, "%s: eval: %s", name, err.msg);
    o->ok = rc == 0;
    /* the whole sequence again, as one batch, every position's logits */
    if (!rc) {
        memcpy(o->all, toks, sizeof(int32_t) * n);
        memcpy(o->all + n, o->toks, sizeof(int32_t) * NGEN);
        o->n_all = (int)n + NGEN;
        lyra_context_free(c);
        c = NULL;
        rc = lyra_context_new(m, &cp, &c, &err);
        if (!rc) rc = lyra_eval(c, o->all, o->n_all, 1, &err);
        CHECK(rc == 0, "%s: batch eval: %s", name, err.msg);
        if (!rc) {
            o->batch = malloc(sizeof(float) * (size_t)o->n_all * n_vocab);
            for (int i = 0; i < o->n_all; i++)
                memcpy(o->batch + (size_t)i * n_vocab, lyra_get_logits(c, i), sizeof(float) * n_vocab);
        }
    }
    free(toks);
    lyra_context_free(c);
    lyra_model_free(m);
}

static double rel_rms(const float *got, const float *want, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        double e = (double)got[i] - want[i];
        num += e * e;
        den += (double)want[i] * want[i];
    }
    if (!(num == num)) return INFINITY;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Top-2 margin of logits l. */
static double margin(const float *l) {
    int a = 0, b = -1;
    for (int i = 1; i < n_vocab; i++) {
        if (l[i] > l[a]) { b = a; a = i; }
        else if (b < 0 || l[i] > l[b]) b = i;
    }
    return (double)l[a] - l[b];
}

static void compare(const char *name, const run_out *ref, const run_out *got, const char *golden) {
    if (!ref->ok || !got->ok) return;
    double worst = 0;
    int wstep = 0, div = -1;
    for (int s = 0; s <= NGEN; s++) {
        if (div < 0 && s < NGEN && got->toks[s] != ref->toks[s]) div = s;
        if (div >= 0 && s > div) break; /* after a divergence the inputs differ */
        double e = rel_rms(got->logits + (size_t)s * n_vocab, ref->logits + (size_t)s * n_vocab, n_vocab);
        if (!(e <= worst)) { worst = e; wstep = s; }
    }
    printf("%s: logits vs CPU: worst rel rms %.2e (step %d), bound 1e-3\n", name, worst, wstep);
    CHECK(worst <= 1e-3, "%s: logits rel rms %g at step %d", name, worst, wstep);
    if (div >= 0)
        printf("%s: first divergence at generated token %d (gpu %d, cpu %d); CPU top-2 margin "
               "there %.4g\n",
               name, div, got->toks[div], ref->toks[div], margin(ref->logits + (size_t)div * n_vocab));
    CHECK(div < 0, "%s: tokens diverge from the CPU's at %d", name, div);
    CHECK(!strcmp(got->text, ref->text), "%s: text differs from the CPU's:\n%s\n", name, got->text);
    size_t gl = strlen(got->text) < strlen(golden) ? strlen(got->text) : strlen(golden);
    CHECK(gl > 100 && !strncmp(got->text, golden, gl), "%s: text differs from the golden:\n%s\n",
          name, got->text);
    if (div < 0 && ref->batch && got->batch) {
        double e = rel_rms(got->batch, ref->batch, got->n_all * n_vocab);
        printf("%s: one batch of %d tokens, all logits vs CPU: rel rms %.2e\n", name, got->n_all, e);
        CHECK(e <= 1e-3, "%s: batch logits rel rms %g", name, e);
    }
}

int main(void) {
    char why[256];
    if (lyra_cuda_count(why, sizeof why) == 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "no CUDA GPU (%s)", why);
        test_skip(msg);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s", test_shared_path("models/stories260K.gguf"));
    char *golden = test_read_file(test_shared_path("models/golden/stories260K_t0_n256_once_upon_a_time.txt"), NULL);
    CHECK(golden != NULL, "golden text");
    if (!golden) return test_done();
    unsetenv("LYRA_SIM_GPUS");
    setenv("LYRA_CUDA_DEVICES", "0", 1);
    static run_out cpu, gpu, split, two;
    run(path, "cpu", "cpu", NULL, 0, 0, &cpu);
    CHECK(cpu.ok && !strncmp(cpu.text, golden, strlen(cpu.text)), "the CPU reference is not the golden: %s", cpu.text);
    run(path, "gpu", "0", NULL, -1, 1, &gpu);
    compare("gpu", &cpu, &gpu, golden);
    run(path, "split", NULL, "2", 3, 1, &split); /* embedding + 2 layers */
    compare("split", &cpu, &split, golden);
    setenv("LYRA_CUDA_DEVICES", "0,0", 1);
    run(path, "two", "balanced", "all", -1, 2, &two);
    compare("two devices on card 0", &cpu, &two, golden);
    printf("gpu text: %s\n", gpu.text);
    run_out *all[4] = {&cpu, &gpu, &split, &two};
    for (int i = 0; i < 4; i++) {
        free(all[i]->logits);
        free(all[i]->batch);
    }
    free(golden);
    return test_done();
}
#endif
