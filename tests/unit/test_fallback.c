/* test_fallback.c: the progressive fallback (docs/fallback.md) with simulated
 * GPUs (LYRA_SIM_GPUS, CAP@REPORTED: the planner believes REPORTED, the
 * allocations really fail past CAP) and fault injection. Checks, on
 * stories260K and a random dim-256 model made with `lyra mkmodel`:
 *  - at load: the search ends at the largest GPU layer count whose planned
 *    bytes fit the real cap (computed independently from the planner's
 *    accounting of each candidate map), within ceil(log2(K+1))+1 failed
 *    tries, with one history step per failure; gpu_layers_fallback is tried
 *    first; --no-fallback is LYRA_ERR_OOM naming the device and leaks
 *    nothing; the context policy halves the context down to min_ctx before
 *    moving layers; a probe finds the same map and keeps nothing allocated;
 *  - during generation: a KV chunk allocation failing at token 1, 50 and
 *    near the end (fault injection, kv_chunk 1 so every token allocates)
 *    moves the last GPU layer to the CPU (and, all on the CPU, the last CPU
 *    layer to disk) between two tokens; the logits of every step stay
 *    BITWISE equal to an all-CPU run; the history records phase, token and
 *    the layer counts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"
#include "testutil.h"

#define N_PROMPT 8
#define N_TOK 64 /* positions evaluated in the generation tests */

static int open_with(const char *path, const char *sim, const lyra_model_params *p, lyra_model **m,
                     lyra_error *err) {
    if (sim) setenv("LYRA_SIM_GPUS", sim, 1);
    else unsetenv("LYRA_SIM_GPUS");
    return lyra_model_open(path, p, m, err);
}

/* Planned bytes on GPU "0" of the map "first k layers (and the other modules)
 * on GPU 0, layers k.. on the cpu" (k = 0: all on the cpu), as the planner
 * accounts them. */
static uint64_t planned_gpu_bytes(lyra_model *m, const lyra_model_params *p, int k, int32_t ctx) {
    int n_mod = lyra_llama_n_modules(m->arch);
    const char **ids = calloc((size_t)n_mod, sizeof *ids);
    for (int i = 0; i < n_mod; i++) {
        int layer = -1;
        lyra_module_kind kind = lyra_llama_module_kind(m->arch, i, &layer);
        ids[i] = k == 0 || (kind == LYRA_MODULE_LAYER && layer >= k) ? "cpu" : "0";
    }
    lyra_plan *pl = NULL;
    lyra_error err;
    int rc = lyra_runtime_plan_fixed(m->arch, p, m->dev, m->n_dev, ids, ctx, &pl, &err);
    free(ids);
    CHECK(rc == 0, "plan_fixed: %s", err.msg);
    if (rc) return 0;
    uint64_t t = pl->use[lyra_plan_device_index(pl, "0")].total;
    lyra_plan_free(pl);
    return t;
}

static int ceil_log2(int x) {
    int r = 0;
    while ((1 << r) < x) r++;
    return r;
}

static int count_steps(const lyra_model *m, const char *what, int phase) {
    int n = 0;
    for (int i = 0; i < lyra_model_fallback_steps(m); i++) {
        lyra_fallback_step s;
        lyra_model_fallback_step(m, i, &s);
        n += !strcmp(s.what, what) && s.phase == phase;
    }
    return n;
}

/* Load-time search on one GPU whose real cap lies between the planned bytes
 * of k_want and k_want + 1 GPU layers. */
static void test_load_search(const char *path, const char *label) {
    lyra_error err;
    lyra_model_params p = lyra_model_default_params();
    p.n_ctx = 512;
    p.n_batch = 64;
    p.n_threads = 1;
    lyra_model *m = NULL;
    /* the plan sees 1 GiB and puts everything on GPU 0 */
    if (open_with(path, "1GiB", &p, &m, &err)) {
        CHECK(0, "%s: open: %s", label, err.msg);
        return;
    }
    const int L = lyra_model_n_layer(m);
    CHECK(lyra_runtime_gpu_layers(m) == L && lyra_model_fallback_steps(m) == 0, "%s: all on GPU", label);
    uint64_t need[64];
    for (int k = 0; k <= L && k < 64; k++) need[k] = planned_gpu_bytes(m, &p, k, 512);
    lyra_model_free(m);
    for (int k_want = 0; k_want < L; k_want++) {
        uint64_t cap = k_want ? (need[k_want] + need[k_want + 1]) / 2 : need[1] / 2;
        char sim[64];
        snprintf(sim, sizeof sim, "%lluB@1GiB", (unsigned long long)cap);
        if (open_with(path, sim, &p, &m, &err)) {
            CHECK(0, "%s: open with cap %s: %s", label, sim, err.msg);
            continue;
        }
        int got = lyra_runtime_gpu_layers(m), steps = count_steps(m, "gpu", LYRA_PHASE_LOAD);
        CHECK(got == k_want, "%s: cap %s: %d GPU layers, want %d", label, sim, got, k_want);
        CHECK(steps >= 1 && steps <= ceil_log2(L + 1) + 1, "%s: %d failed tries for K=%d", label, steps, L);
        lyra_fallback_step s;
        CHECK(lyra_model_fallback_step(m, 0, &s) == 0 && s.phase == LYRA_PHASE_LOAD && s.from_k == L &&
                  !strcmp(s.device, "0") && s.asked > 0 && s.token == -1,
              "%s: first step", label);
        /* the device's allocations are what the plan of that map says */
        uint64_t held = m->dev[0]->stats.allocated;
        CHECK(k_want == 0 ? held == 0 : held > 0 && held <= need[k_want], "%s: held %llu", label,
              (unsigned long long)held);
        char map[4096];
        lyra_model_device_map(m, map, sizeof map);
        CHECK(strstr(map, "\"lm_head\":") != NULL, "%s: device map %s", label, map);
        lyra_model_free(m);
    }
    /* gpu_layers_fallback: tried first */
    {
        int g = L / 2;
        uint64_t cap = (need[g] + need[g + 1]) / 2;
        char sim[64];
        snprintf(sim, sizeof sim, "%lluB@1GiB", (unsigned long long)cap);
        lyra_model_params q = p;
        q.gpu_layers_fallback = g;
        CHECK(open_with(path, sim, &q, &m, &err) == 0, "%s: gpu_layers_fallback: %s", label, err.msg);
        if (m) {
            lyra_fallback_step s;
            CHECK(lyra_model_fallback_steps(m) == 1 && lyra_model_fallback_step(m, 0, &s) == 0 &&
                      s.from_k == L && s.to_k == g && lyra_runtime_gpu_layers(m) == g,
                  "%s: gpu_layers_fallback %d: %d steps, %d layers", label, g,
                  lyra_model_fallback_steps(m), lyra_runtime_gpu_layers(m));
            lyra_model_free(m);
        }
    }
    /* no fallback: exit 3 naming the device, nothing loaded */
    {
        char sim[64];
        snprintf(sim, sizeof sim, "%lluB@1GiB", (unsigned long long)(need[L] / 2));
        lyra_model_params q = p;
        q.fallback = 0;
        q.fallback_policy = LYRA_FALLBACK_NONE;
        m = NULL;
        int rc = open_with(path, sim, &q, &m, &err);
        CHECK(rc == LYRA_ERR_OOM && !m && !strncmp(err.msg, "0: out of memory on 0: asked ", 29) &&
                  strstr(err.msg, "fallback is off"),
              "%s: no fallback: rc %d %s", label, rc, err.msg);
    }
    /* probe: the same map, nothing stays */
    {
        uint64_t cap = (need[2] + need[3]) / 2;
        char sim[64];
        snprintf(sim, sizeof sim, "%lluB@1GiB", (unsigned long long)cap);
        lyra_model_params q = p;
        q.probe = 1;
        CHECK(open_with(path, sim, &q, &m, &err) == 0, "%s: probe: %s", label, err.msg);
        if (m) {
            CHECK(lyra_runtime_gpu_layers(m) == 2 && m->dev[0]->stats.allocated == 0 &&
                      m->dev[m->cpu]->stats.allocated == 0 && m->dev[m->cpu]->stats.mapped == 0 &&
                      m->n_placed == 0,
                  "%s: probe found %d layers, holds %llu", label, lyra_runtime_gpu_layers(m),
                  (unsigned long long)m->dev[0]->stats.allocated);
            CHECK(!strcmp(lyra_plan_module_device(m->plan, "model.layers.1"), "0") &&
                      !strcmp(lyra_plan_module_device(m->plan, "model.layers.2"), "cpu"),
                  "%s: probe plan", label);
            lyra_context *c = NULL;
            CHECK(lyra_context_new(m, NULL, &c, &err) == LYRA_ERR_INPUT, "%s: no context on a probe", label);
            lyra_model_free(m);
        }
    }
    /* the context policy: halve 2048 -> 1024 -> 512 before moving layers */
    {
        lyra_model_params q = p;
        q.n_ctx = 2048;
        q.fallback_policy = LYRA_FALLBACK_CONTEXT;
        q.min_ctx = 256;
        CHECK(open_with(path, "1GiB", &q, &m, &err) == 0, "%s: open: %s", label, err.msg);
        uint64_t n512 = m ? planned_gpu_bytes(m, &q, L, 512) : 0;
        uint64_t n1024 = m ? planned_gpu_bytes(m, &q, L, 1024) : 0;
        lyra_model_free(m);
        char sim[64];
        snprintf(sim, sizeof sim, "%lluB@1GiB", (unsigned long long)((n512 + n1024) / 2));
        m = NULL;
        CHECK(open_with(path, sim, &q, &m, &err) == 0, "%s: context policy: %s", label, err.msg);
        if (m) {
            CHECK(lyra_model_n_ctx(m) == 512 && lyra_runtime_gpu_layers(m) == L &&
                      count_steps(m, "ctx", LYRA_PHASE_LOAD) == 2 && count_steps(m, "gpu", LYRA_PHASE_LOAD) == 0,
                  "%s: context policy: ctx %d, %d layers, %d steps", label, (int)lyra_model_n_ctx(m),
                  lyra_runtime_gpu_layers(m), lyra_model_fallback_steps(m));
            lyra_context_params cp = lyra_context_default_params();
            cp.n_ctx = 2048;
            lyra_context *c = NULL;
            cp.n_batch = 64;
            int rc = lyra_context_new(m, &cp, &c, &err);
            CHECK(rc == 0 && c && lyra_context_n_ctx(c) == 512, "%s: the context follows the fitted size: %s",
                  label, rc ? err.msg : "");
            lyra_context_free(c);
            lyra_model_free(m);
        }
        /* below min_ctx nothing halves: layers move */
        q.min_ctx = 2048;
        m = NULL;
        CHECK(open_with(path, sim, &q, &m, &err) == 0, "%s: min_ctx: %s", label, err.msg);
        if (m) {
            CHECK(lyra_model_n_ctx(m) == 2048 && lyra_runtime_gpu_layers(m) < L &&
                      count_steps(m, "ctx", LYRA_PHASE_LOAD) == 0,
                  "%s: min_ctx 2048: ctx %d, %d layers", label, (int)lyra_model_n_ctx(m),
                  lyra_runtime_gpu_layers(m));
            lyra_model_free(m);
        }
    }
    unsetenv("LYRA_SIM_GPUS");
}

/* Greedy-free fixed sequence: N_PROMPT prompt tokens at once, then single
 * tokens up to N_TOK positions; before the single token at position `fail_at`
 * the next allocation on device `dev` (index) fails. logits [N_TOK][V] (the
 * prompt's rows are its last token's only). Returns the model (caller frees). */
static lyra_model *run_seq(const char *path, const char *sim, int fail_dev, int fail_at, float *logits,
                           int32_t V, lyra_error *err) {
    lyra_model_params p = lyra_model_default_params();
    p.n_ctx = N_TOK;
    p.n_batch = N_PROMPT;
    p.kv_chunk = 1;
    p.n_threads = 1;
    lyra_model *m = NULL;
    if (open_with(path, sim, &p, &m, err)) return NULL;
    lyra_context_params cp = lyra_context_default_params();
    cp.n_ctx = N_TOK;
    cp.n_batch = N_PROMPT;
    cp.n_threads = 1;
    lyra_context *c = NULL;
    if (lyra_context_new(m, &cp, &c, err)) {
        lyra_model_free(m);
        return NULL;
    }
    int32_t tok[N_TOK];
    uint32_t s = 777;
    for (int i = 0; i < N_TOK; i++) {
        s = s * 1664525u + 1013904223u;
        tok[i] = (int32_t)((s >> 8) % (uint32_t)V);
    }
    int rc = lyra_eval(c, tok, N_PROMPT, 0, err);
    if (!rc) memcpy(logits, lyra_get_logits(c, -1), (size_t)V * sizeof(float));
    for (int t = N_PROMPT; !rc && t < N_TOK; t++) {
        if (t == fail_at && fail_dev >= 0) {
            lyra_device *d = m->dev[fail_dev];
            d->fail_at = d->stats.alloc_calls + 1;
            d->fail_after = 0;
        }
        rc = lyra_eval(c, &tok[t], 1, 0, err);
        if (!rc) memcpy(logits + (size_t)(t - N_PROMPT + 1) * V, lyra_get_logits(c, -1), (size_t)V * sizeof(float));
    }
    lyra_context_free(c);
    if (rc) {
        lyra_model_free(m);
        return NULL;
    }
    return m;
}

static void test_generation(const char *path, const char *label) {
    lyra_error err;
    lyra_model *m0 = NULL;
    if (open_with(path, NULL, NULL, &m0, &err)) {
        CHECK(0, "%s: open: %s", label, err.msg);
        return;
    }
    int32_t V = lyra_model_n_vocab(m0), L = lyra_model_n_layer(m0);
    lyra_model_free(m0);
    size_t n = (size_t)(N_TOK - N_PROMPT + 1) * (size_t)V;
    float *ref = calloc(n, sizeof *ref), *got = calloc(n, sizeof *got);
    lyra_model *m = run_seq(path, NULL, -1, -1, ref, V, &err); /* all CPU */
    CHECK(m != NULL, "%s: reference run: %s", label, err.msg);
    lyra_model_free(m);
    const int at[3] = {N_PROMPT, 50, N_TOK - 2}; /* tokens: right after the prompt, 50, near the end */
    for (int i = 0; i < 3; i++) {
        /* GPU -> CPU: everything on one simulated GPU, a KV chunk fails there */
        memset(got, 0, n * sizeof *got);
        m = run_seq(path, "1GiB", 0, at[i], got, V, &err);
        CHECK(m != NULL, "%s: GPU run failing at %d: %s", label, at[i], err.msg);
        if (m) {
            lyra_fallback_step s;
            CHECK(lyra_model_fallback_steps(m) == 1 && lyra_model_fallback_step(m, 0, &s) == 0 &&
                      s.phase == LYRA_PHASE_GENERATE && s.token == at[i] && !strcmp(s.what, "gpu") &&
                      s.from_k == L && s.to_k == L - 1 && !strcmp(s.device, "0"),
                  "%s: step at %d: %d steps, token %d, %d -> %d", label, at[i], lyra_model_fallback_steps(m),
                  (int)s.token, (int)s.from_k, (int)s.to_k);
            CHECK(lyra_runtime_gpu_layers(m) == L - 1, "%s: %d GPU layers after", label, lyra_runtime_gpu_layers(m));
            CHECK(!memcmp(got, ref, n * sizeof *got), "%s: logits differ from all-CPU after a migration at %d",
                  label, at[i]);
            lyra_model_free(m);
        }
        /* CPU -> disk: all on the CPU, a KV chunk fails there */
        memset(got, 0, n * sizeof *got);
        m = run_seq(path, NULL, 0, at[i], got, V, &err);
        CHECK(m != NULL, "%s: CPU run failing at %d: %s", label, at[i], err.msg);
        if (m) {
            lyra_fallback_step s;
            CHECK(lyra_model_fallback_steps(m) == 1 && lyra_model_fallback_step(m, 0, &s) == 0 &&
                      s.phase == LYRA_PHASE_GENERATE && s.token == at[i] && !strcmp(s.what, "cpu") &&
                      s.from_k == L && s.to_k == L - 1 && m->module_disk[L],
                  "%s: cpu step at %d", label, at[i]);
            CHECK(!memcmp(got, ref, n * sizeof *got), "%s: logits differ from all-CPU after a move to disk at %d",
                  label, at[i]);
            lyra_model_free(m);
        }
    }
    /* with fallback off the same failure is an error */
    {
        lyra_model_params p = lyra_model_default_params();
        p.fallback = 0;
        p.kv_chunk = 1;
        p.n_ctx = N_TOK;
        lyra_model *mm = NULL;
        CHECK(open_with(path, "1GiB", &p, &mm, &err) == 0, "%s: open: %s", label, err.msg);
        lyra_context_params cp = lyra_context_default_params();
        cp.n_ctx = N_TOK;
        lyra_context *c = NULL;
        if (mm && lyra_context_new(mm, &cp, &c, &err) == 0) {
            int32_t t0 = 1;
            CHECK(lyra_eval(c, &t0, 1, 0, &err) == 0, "eval");
            mm->dev[0]->fail_at = mm->dev[0]->stats.alloc_calls + 1;
            int rc = lyra_eval(c, &t0, 1, 0, &err);
            CHECK(rc == LYRA_ERR_OOM && lyra_context_pos(c) == 1 && strstr(err.msg, "out of memory on 0"),
                  "%s: no fallback mid-generation: rc %d %s", label, rc, err.msg);
            lyra_context_free(c);
        }
        lyra_model_free(mm);
    }
    unsetenv("LYRA_SIM_GPUS");
    free(ref);
    free(got);
}

/* The CPU's KV layout to rows and back: what a move between devices with
 * different layouts (CUDA's is rows) goes through. */
static void test_kv_rows(void) {
    lyra_device *d = NULL;
    lyra_error err;
    CHECK(lyra_cpu_device_new(1, &d, &err) == 0, "cpu device");
    if (!d) return;
    enum { L = 8, D = 12 };
    float k[L][D], v[L][D], rows[2 * L * D], back[2 * L * D], chunk[2 * L * D];
    for (int p = 0; p < L; p++)
        for (int j = 0; j < D; j++) k[p][j] = (float)(p * 100 + j), v[p][j] = (float)(-p * 100 - j);
    void *mem = NULL;
    CHECK(d->ops->alloc(d, sizeof chunk, &mem) == 0, "alloc");
    void *kc[1] = {mem}, *vc[1] = {(char *)mem + sizeof chunk / 2};
    lyra_kv_view view = {kc, vc, L, LYRA_TYPE_F32, 0};
    d->ops->kv_store(d, &view, 0, L, D, &k[0][0], &v[0][0]);
    d->ops->copy_out(d, chunk, mem, sizeof chunk);
    lyra_cpu_kv_to_rows(chunk, rows, L, D, LYRA_TYPE_F32);
    CHECK(!memcmp(rows, k, sizeof k) && !memcmp(rows + L * D, v, sizeof v), "kv to rows");
    lyra_cpu_kv_from_rows(rows, back, L, D, LYRA_TYPE_F32);
    CHECK(!memcmp(back, chunk, sizeof chunk), "rows back to the CPU layout");
    d->ops->free(d, mem, sizeof chunk);
    lyra_device_free(d);
}

int main(void) {
    test_kv_rows();
    const char *s260 = test_shared_path("models/stories260K.gguf");
    const char *bin = getenv("LYRA_BIN");
    if (!bin) test_skip("LYRA_BIN not set (needed for `lyra mkmodel`)");
    char model[600], rnd[600], cmd[1400];
    snprintf(model, sizeof model, "%s", s260);
    snprintf(rnd, sizeof rnd, "%s/fallback_rand256.gguf", test_tmp_dir());
    snprintf(cmd, sizeof cmd,
             "\"%s\" -q mkmodel -o \"%s\" --preset tiny --dim 256 --layers 6 --type Q8_0 --seed 5 "
             "--threads 1",
             bin, rnd);
    CHECK(system(cmd) == 0, "mkmodel failed: %s", cmd);
    unsetenv("LYRA_FAIL_ALLOC");
    test_load_search(model, "stories260K");
    test_load_search(rnd, "rand256");
    test_generation(model, "stories260K");
    test_generation(rnd, "rand256");
    return test_done();
}
