/* test_shard.c: running a model split over simulated GPUs, the CPU and the
 * disk tier. Checks, on stories260K and on a random model with dim 256
 * (made with `lyra mkmodel`):
 *  - logits BITWISE equal to all-CPU for several maps (explicit GPU -> CPU ->
 *    GPU over two GPUs with disk modules, all on one GPU, gpu_layers +
 *    tensor_split, balanced, all disk, --no-mmap, a CPU budget smaller than
 *    the model so that the planner spills to disk);
 *  - accounting: after filling the whole context, on every device the peak of
 *    bytes allocated (plus the mapped bytes of the CPU's weights) is <= the
 *    planned total and >= 98% of it (the runtime and planner agree exactly,
 *    so these are deterministic byte counts);
 *  - the disk tier: disk modules are not mapped/counted on the CPU;
 *  - lyra_context_move_layer between two tokens (GPU -> CPU, CPU -> GPU,
 *    GPU -> GPU, disk -> GPU) keeps the logits bitwise equal, and a move that
 *    does not fit fails with LYRA_ERR_OOM leaving everything as it was;
 *  - plan determinism: 5 plans from the same inputs are the same bytes. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "runtime/runtime.h"
#include "testutil.h"

#define N_PROMPT 40
#define N_GEN 8
#define N_STEPS (N_PROMPT + N_GEN)

static char what_buf[128]; /* a label */

/* Tokens, deterministic. */
static void make_tokens(int32_t *t, int n, int32_t n_vocab) {
    uint32_t s = 12345;
    for (int i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        t[i] = (int32_t)((s >> 8) % (uint32_t)n_vocab);
    }
}

/* Open path with env LYRA_SIM_GPUS = sim (NULL: unset) and params. */
static int open_with(const char *path, const char *sim, const lyra_model_params *p, lyra_model **m,
                     lyra_error *err) {
    if (sim) setenv("LYRA_SIM_GPUS", sim, 1);
    else unsetenv("LYRA_SIM_GPUS");
    return lyra_model_open(path, p, m, err);
}

/* A move to do before step `at` (-1: none). */
typedef struct move_op {
    int at;           /* step index before which to move */
    int layer;        /* layer */
    const char *dev;  /* target device id */
    int expect;       /* expected status */
} move_op;

/* Evaluate the fixed sequence on m: N_PROMPT tokens in one call (logits of
 * all), then N_GEN single tokens; logits out [N_STEPS][n_vocab]. */
static int run_seq(lyra_model *m, int32_t n_ctx, int32_t n_batch, const move_op *moves, int n_moves,
                   float *out, lyra_error *err) {
    lyra_context_params cp = lyra_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_threads = 2;
    lyra_context *c;
    int rc = lyra_context_new(m, &cp, &c, err);
    if (rc) return rc;
    int32_t nv = lyra_model_n_vocab(m), toks[N_STEPS];
    make_tokens(toks, N_STEPS, nv);
    rc = lyra_eval(c, toks, N_PROMPT, 1, err);
    for (int i = 0; !rc && i < N_PROMPT; i++)
        memcpy(out + (size_t)i * nv, lyra_get_logits(c, i), (size_t)nv * sizeof(float));
    for (int s = N_PROMPT; !rc && s < N_STEPS; s++) {
        for (int k = 0; k < n_moves; k++) {
            if (moves[k].at != s) continue;
            lyra_error e2;
            int r2 = lyra_context_move_layer(c, moves[k].layer, moves[k].dev, &e2);
            CHECK(r2 == moves[k].expect, "move layer %d to %s: status %d (%s), expected %d",
                  moves[k].layer, moves[k].dev, r2, r2 ? e2.msg : "", moves[k].expect);
            if (!r2) {
                const char *id = c->model->dev[c->model->module_dev[moves[k].layer + 1]]->id;
                CHECK(!strcmp(id, moves[k].dev), "layer %d now on %s", moves[k].layer, id);
            }
        }
        rc = lyra_eval(c, &toks[s], 1, 0, err);
        if (!rc) memcpy(out + (size_t)s * nv, lyra_get_logits(c, -1), (size_t)nv * sizeof(float));
    }
    lyra_context_free(c);
    return rc;
}

/* One configuration: open, run, compare bitwise with ref. */
static void check_map(const char *path, const char *what, const char *sim, lyra_model_params p,
                      const float *ref, int32_t n_ctx, const move_op *moves, int n_moves) {
    lyra_error err;
    lyra_model *m;
    p.n_ctx = n_ctx;
    int rc = open_with(path, sim, &p, &m, &err);
    CHECK(rc == 0, "%s: open: %s", what, err.msg);
    if (rc) return;
    int32_t nv = lyra_model_n_vocab(m);
    float *got = malloc((size_t)N_STEPS * nv * sizeof(float));
    rc = run_seq(m, n_ctx, 16, moves, n_moves, got, &err);
    CHECK(rc == 0, "%s: eval: %s", what, err.msg);
    if (!rc) {
        int bad = -1;
        for (int s = 0; s < N_STEPS && bad < 0; s++)
            if (memcmp(got + (size_t)s * nv, ref + (size_t)s * nv, (size_t)nv * sizeof(float))) bad = s;
        CHECK(bad < 0, "%s: logits of step %d differ from all-CPU", what, bad);
    }
    free(got);
    lyra_model_free(m);
}

/* Fill the whole context of a model opened with p and compare each device's
 * peak (+ CPU mapped weights) with the plan's total. Returns the CPU's held. */
static uint64_t check_accounting(const char *path, const char *what, const char *sim,
                                 lyra_model_params p, int32_t n_ctx) {
    lyra_error err;
    lyra_model *m;
    p.n_ctx = n_ctx;
    p.n_batch = 64;
    int rc = open_with(path, sim, &p, &m, &err);
    CHECK(rc == 0, "%s: open: %s", what, err.msg);
    if (rc) return 0;
    lyra_context_params cp = lyra_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = 64;
    cp.n_threads = 2;
    lyra_context *c;
    rc = lyra_context_new(m, &cp, &c, &err);
    CHECK(rc == 0, "%s: context: %s", what, err.msg);
    int32_t *toks = malloc((size_t)n_ctx * sizeof *toks);
    make_tokens(toks, n_ctx, lyra_model_n_vocab(m));
    if (!rc) rc = lyra_eval(c, toks, n_ctx - 8, 0, &err); /* prompt in batches */
    for (int i = n_ctx - 8; !rc && i < n_ctx; i++) rc = lyra_eval(c, &toks[i], 1, 0, &err);
    CHECK(rc == 0, "%s: eval to a full context: %s", what, err.msg);
    uint64_t cpu_held = 0;
    const lyra_plan *pl = m->plan;
    for (int d = 0; d < m->n_dev; d++) {
        const lyra_device *dv = m->dev[d];
        int pi = lyra_plan_device_index(pl, dv->id);
        uint64_t held = dv->stats.peak + dv->stats.mapped, planned = pl->use[pi].total;
        if (d == m->cpu) cpu_held = held;
        CHECK(held <= planned, "%s: device %s holds %llu bytes at peak, planned %llu", what, dv->id,
              (unsigned long long)held, (unsigned long long)planned);
        CHECK((double)held >= 0.98 * (double)planned, "%s: device %s holds %llu < 98%% of planned %llu",
              what, dv->id, (unsigned long long)held, (unsigned long long)planned);
        printf("%s: device %s: held %llu planned %llu\n", what, dv->id, (unsigned long long)held,
               (unsigned long long)planned);
    }
    free(toks);
    lyra_context_free(c);
    lyra_model_free(m);
    return cpu_held;
}

static void write_file(const char *path, const char *s) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(s, f);
        fclose(f);
    }
}

/* q's device settings from config keys as strings (the CLI's and
 * lyra_kwargs_set's path: config/devspec.h parses them into the typed
 * fields); pairs of key, value, then NULL. The configs own the entries and
 * live until the end. */
static lyra_config *g_cfg[64];
static int g_ncfg;
static void devset(lyra_model_params *q, ...) {
    lyra_error err;
    lyra_config *c = lyra_config_new();
    CHECK(c && g_ncfg < 64, "config");
    if (!c || g_ncfg >= 64) return;
    g_cfg[g_ncfg++] = c;
    va_list ap;
    va_start(ap, q);
    for (const char *k; (k = va_arg(ap, const char *));) {
        const char *v = va_arg(ap, const char *);
        CHECK(lyra_config_set(c, k, v, "api", NULL, &err) == 0, "%s=%s: %s", k, v, err.msg);
    }
    va_end(ap);
    lyra_model_params t = *q;
    CHECK(lyra_config_apply_model(c, &t, &err) == 0, "apply: %s", err.msg);
    q->device_strategy = t.device_strategy;
    q->device_gpu = t.device_gpu;
    q->device_map = t.device_map;
    q->n_device_map = t.n_device_map;
    q->device_map_source = t.device_map_source;
    q->max_memory = t.max_memory;
    q->n_max_memory = t.n_max_memory;
    q->reserve = t.reserve;
    q->n_reserve = t.n_reserve;
    q->gpu_layers = t.gpu_layers;
    q->tensor_split = t.tensor_split;
    q->n_tensor_split = t.n_tensor_split;
}

/* Every check on one model (n_layer >= 4). */
static void test_model(const char *path, const char *tag) {
    lyra_error err;
    lyra_model *m;
    lyra_model_params p = lyra_model_default_params();
    devset(&p, "device_map", "cpu", NULL);
    int32_t n_ctx = 256;
    p.n_ctx = n_ctx;
    int rc = open_with(path, NULL, &p, &m, &err);
    CHECK(rc == 0, "%s: open all-CPU: %s", tag, err.msg);
    if (rc) return;
    int32_t nv = lyra_model_n_vocab(m), nl = lyra_model_n_layer(m);
    uint64_t model_bytes = lyra_model_n_bytes(m);
    float *ref = malloc((size_t)N_STEPS * nv * sizeof(float));
    rc = run_seq(m, n_ctx, 16, NULL, 0, ref, &err);
    CHECK(rc == 0, "%s: eval all-CPU: %s", tag, err.msg);
    lyra_model_free(m);
    if (rc) {
        free(ref);
        return;
    }
    char mapf[512], what[128], json[1024];
    snprintf(mapf, sizeof mapf, "%s/shard_%s_map.json", test_tmp_dir(), tag);
    /* explicit: GPU 0 -> GPU 1 -> CPU -> GPU 1 -> disk -> GPU 0 ... */
    snprintf(json, sizeof json,
             "{\"model.embed_tokens\": 0, \"model.layers\": \"cpu\", \"model.layers.0\": \"1\","
             " \"model.layers.1\": \"cpu\", \"model.layers.2\": \"cuda:1\", \"model.layers.%d\": \"disk\","
             " \"model.norm\": \"disk\", \"lm_head\": 0}", nl - 1);
    write_file(mapf, json);
    lyra_model_params q = lyra_model_default_params();
    devset(&q, "device_map", mapf, NULL);
    snprintf(what, sizeof what, "%s explicit GPU/CPU/GPU/disk", tag);
    check_map(path, what, "64MiB,64MiB", q, ref, n_ctx, NULL, 0);
    /* all on GPU 0 */
    q = lyra_model_default_params();
    devset(&q, "device_map", "0", NULL);
    snprintf(what, sizeof what, "%s all on GPU 0", tag);
    check_map(path, what, "64MiB", q, ref, n_ctx, NULL, 0);
    /* gpu_layers + tensor_split over two GPUs */
    q = lyra_model_default_params();
    devset(&q, "gpu_layers", "3", "tensor_split", "1,2", NULL);
    snprintf(what, sizeof what, "%s gpu_layers 3 split 1,2", tag);
    check_map(path, what, "64MiB,64MiB", q, ref, n_ctx, NULL, 0);
    /* balanced over two GPUs, via JSON text */
    q = lyra_model_default_params();
    devset(&q, "device_map", "balanced", NULL);
    snprintf(what, sizeof what, "%s balanced", tag);
    check_map(path, what, "64MiB,32MiB", q, ref, n_ctx, NULL, 0);
    /* everything on disk; and CPU weights copied (--no-mmap) with --mlock */
    q = lyra_model_default_params();
    devset(&q, "device_map", "{\"\": \"disk\"}", NULL);
    snprintf(what, sizeof what, "%s all disk", tag);
    check_map(path, what, NULL, q, ref, n_ctx, NULL, 0);
    q = lyra_model_default_params();
    devset(&q, "device_map", "cpu", NULL);
    q.use_mmap = 0;
    q.use_mlock = 1;
    snprintf(what, sizeof what, "%s no-mmap", tag);
    check_map(path, what, "", q, ref, n_ctx, NULL, 0);
    /* moves between two tokens */
    q = lyra_model_default_params();
    devset(&q, "device_map", "sequential", NULL);
    move_op mv[] = {
        {N_PROMPT + 1, 0, "cpu", 0},     /* GPU -> CPU */
        {N_PROMPT + 2, 1, "1", 0},       /* GPU -> GPU */
        {N_PROMPT + 3, 0, "1", 0},       /* CPU -> GPU */
        {N_PROMPT + 4, nl - 1, "cpu", 0},
        {N_PROMPT + 5, 2, "7", LYRA_ERR_INPUT},
        {N_PROMPT + 5, nl, "cpu", LYRA_ERR_INPUT},
    };
    snprintf(what, sizeof what, "%s moves", tag);
    check_map(path, what, "64MiB,64MiB", q, ref, n_ctx, mv, (int)(sizeof mv / sizeof mv[0]));
    /* disk -> GPU, and a move that does not fit (GPU 1 too small): OOM */
    q = lyra_model_default_params();
    snprintf(json, sizeof json, "{\"\": \"cpu\", \"model.layers.1\": \"disk\", \"model.layers.2\": 0}");
    devset(&q, "device_map", json, NULL);
    move_op mv2[] = {
        {N_PROMPT + 2, 1, "0", 0},
        {N_PROMPT + 3, 3, "1", LYRA_ERR_OOM},
        {N_PROMPT + 4, 2, "cpu", 0},
    };
    snprintf(what, sizeof what, "%s disk move + OOM move", tag);
    check_map(path, what, "64MiB,1KiB", q, ref, n_ctx, mv2, (int)(sizeof mv2 / sizeof mv2[0]));

    /* accounting after a full context */
    q = lyra_model_default_params();
    devset(&q, "device_map", mapf, NULL);
    snprintf(what, sizeof what, "%s accounting explicit", tag);
    check_accounting(path, what, "64MiB,64MiB", q, n_ctx);
    q = lyra_model_default_params();
    devset(&q, "gpu_layers", "2", NULL);
    snprintf(what, sizeof what, "%s accounting gpu_layers 2", tag);
    check_accounting(path, what, "64MiB", q, n_ctx);
    q = lyra_model_default_params();
    devset(&q, "device_map", "cpu", NULL);
    q.use_mmap = 0;
    snprintf(what, sizeof what, "%s accounting no-mmap", tag);
    check_accounting(path, what, "", q, n_ctx);

    /* disk tier: a CPU budget smaller than the model. The budget leaves room
     * for the KV cache, scratch and about half the weights. */
    {
        lyra_model_params z = lyra_model_default_params();
        devset(&z, "device_map", "cpu", NULL);
        z.n_ctx = n_ctx;
        z.n_batch = 64;
        lyra_model *mz;
        rc = open_with(path, "", &z, &mz, &err);
        CHECK(rc == 0, "%s: open for the disk budget: %s", tag, err.msg);
        if (!rc) {
            int ci = lyra_plan_device_index(mz->plan, "cpu");
            uint64_t non_w = mz->plan->use[ci].kv + mz->plan->use[ci].scratch;
            uint64_t budget = non_w + model_bytes / 2;
            lyra_model_free(mz);
            char mm[64];
            snprintf(mm, sizeof mm, "cpu=%lluB", (unsigned long long)budget);
            q = lyra_model_default_params();
            devset(&q, "max_memory", mm, "device_map", "cpu", NULL);
            q.n_batch = 64; /* as the budget was computed for */
            snprintf(what, sizeof what, "%s disk tier (cpu budget %llu < model %llu)", tag,
                     (unsigned long long)budget, (unsigned long long)model_bytes);
            CHECK(budget < model_bytes, "%s: the budget is below the model size", tag);
            check_map(path, what, "", q, ref, n_ctx, NULL, 0);
            uint64_t held = check_accounting(path, what, "", q, n_ctx);
            CHECK(held <= budget, "%s: cpu held %llu > budget %llu", what, (unsigned long long)held,
                  (unsigned long long)budget);
            /* some modules are on disk, the map line shows them */
            q.n_ctx = n_ctx;
            q.n_batch = 64;
            rc = open_with(path, "", &q, &mz, &err);
            if (!rc) {
                int nd = 0;
                for (int i = 0; i < nl + 3; i++) nd += mz->module_disk[i];
                CHECK(nd > 0, "%s: no module on disk", what);
                CHECK(mz->disk_weights > 0 && mz->dev[mz->cpu]->stats.mapped + mz->disk_weights >= model_bytes - 4096,
                      "%s: mapped %llu + disk %llu vs model %llu", what,
                      (unsigned long long)mz->dev[mz->cpu]->stats.mapped,
                      (unsigned long long)mz->disk_weights, (unsigned long long)model_bytes);
                lyra_context_params cp = lyra_context_default_params();
                cp.n_ctx = n_ctx;
                cp.n_batch = 64;
                lyra_context *c;
                if (!lyra_context_new(mz, &cp, &c, &err)) {
                    char line[2048];
                    lyra_context_map_lines(c, line, sizeof line);
                    CHECK(strstr(line, "map: disk (disk)") != NULL, "%s: map lines: %s", what, line);
                    lyra_context_free(c);
                }
                lyra_model_free(mz);
            }
        }
    }
    free(ref);
}

/* A copy of src with rope_freqs.weight added: head_dim/2 factors 1.0, 1.25,
 * 1.5, ... (not all 1, so using a wrong or missing copy changes the logits).
 * Returns 0 on success. */
static int add_rope_freqs(const char *src, const char *dst) {
    lyra_error err;
    lyra_gguf *g;
    lyra_llama *a;
    if (lyra_gguf_open(src, &g, &err)) return -1;
    if (lyra_llama_load(g, &a, &err)) {
        lyra_gguf_close(g);
        return -1;
    }
    int n = a->hp.rope.n_rot / 2;
    float *f = malloc((size_t)n * sizeof *f);
    for (int i = 0; i < n; i++) f[i] = 1.0f + 0.25f * (float)(i % 8);
    lyra_gguf_writer *w = lyra_gguf_writer_new();
    lyra_gguf_writer_copy_kv(w, g, NULL, NULL);
    for (int64_t i = 0; i < lyra_gguf_n_tensors(g); i++) {
        const lyra_gguf_tensor *t = lyra_gguf_tensor_at(g, i);
        lyra_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data);
    }
    int64_t ne[1] = {n};
    lyra_gguf_writer_add_tensor(w, "rope_freqs.weight", LYRA_TYPE_F32, 1, ne, f);
    int rc = lyra_gguf_writer_write(w, dst, &err);
    if (rc) printf("writing %s: %s\n", dst, err.msg);
    lyra_gguf_writer_free(w);
    free(f);
    lyra_llama_free(a);
    lyra_gguf_close(g);
    return rc;
}

/* rope_freqs.weight is replicated on every device running a layer: maps over
 * two GPUs, the CPU and disk give the all-CPU logits, and the factors are
 * used (the logits differ from the model without them). */
static void test_rope_freqs(const char *path, const char *plain) {
    lyra_error err;
    lyra_model *m;
    lyra_model_params p = lyra_model_default_params();
    devset(&p, "device_map", "cpu", NULL);
    p.n_ctx = 256;
    if (open_with(path, NULL, &p, &m, &err)) {
        CHECK(0, "rope model: %s", err.msg);
        return;
    }
    CHECK(m->arch->has_rope_freqs, "rope_freqs.weight not loaded");
    int32_t nv = lyra_model_n_vocab(m);
    float *ref = malloc((size_t)N_STEPS * nv * sizeof(float));
    float *pl = malloc((size_t)N_STEPS * nv * sizeof(float));
    CHECK(run_seq(m, 256, 16, NULL, 0, ref, &err) == 0, "rope eval: %s", err.msg);
    lyra_model_free(m);
    if (!open_with(plain, NULL, &p, &m, &err)) {
        CHECK(run_seq(m, 256, 16, NULL, 0, pl, &err) == 0, "eval: %s", err.msg);
        CHECK(memcmp(ref, pl, (size_t)N_STEPS * nv * sizeof(float)) != 0,
              "rope_freqs.weight changes nothing: the test model is useless");
        lyra_model_free(m);
    }
    lyra_model_params q = lyra_model_default_params();
    devset(&q, "device_map", "{\"\": \"cpu\", \"model.layers.0\": 0, \"model.layers.1\": 1,"
                        " \"model.layers.2\": \"disk\", \"model.layers.4\": 1}", NULL);
    check_map(path, "rope_freqs over GPU 0, GPU 1, cpu, disk", "64MiB,64MiB", q, ref, 256, NULL, 0);
    q = lyra_model_default_params();
    devset(&q, "device_map", "1", NULL);
    move_op mv[] = {{N_PROMPT + 1, 3, "0", 0}, {N_PROMPT + 2, 0, "cpu", 0}};
    check_map(path, "rope_freqs follows moved layers", "64MiB,64MiB", q, ref, 256, mv, 2);
    q = lyra_model_default_params();
    devset(&q, "device_map", "{\"\": 0, \"model.layers.1\": 1}", NULL);
    snprintf(what_buf, sizeof what_buf, "rope_freqs accounting");
    check_accounting(path, what_buf, "64MiB,64MiB", q, 256);
    free(ref);
    free(pl);
}

/* 5 plans from the same inputs (fixed devices) give the same JSON bytes. */
static void test_determinism(const char *path) {
    lyra_error err;
    lyra_gguf *g;
    lyra_llama *a;
    if (lyra_gguf_open(path, &g, &err)) return;
    if (lyra_llama_load(g, &a, &err)) {
        lyra_gguf_close(g);
        return;
    }
    char *first = NULL;
    for (int r = 0; r < 5; r++) {
        lyra_plan_device pd[4];
        memset(pd, 0, sizeof pd);
        for (int i = 0; i < 2; i++) {
            snprintf(pd[i].id, sizeof pd[i].id, "%d", i);
            snprintf(pd[i].kind, sizeof pd[i].kind, "gpu");
            snprintf(pd[i].backend, sizeof pd[i].backend, "sim");
            pd[i].free = pd[i].total = 600000 + 100000 * (uint64_t)i;
        }
        snprintf(pd[2].id, sizeof pd[2].id, "cpu");
        snprintf(pd[2].kind, sizeof pd[2].kind, "cpu");
        snprintf(pd[2].backend, sizeof pd[2].backend, "cpu");
        pd[2].free = pd[2].total = (uint64_t)4 << 30;
        lyra_plan_device_disk(&pd[3]);
        lyra_plan_notes notes;
        memset(&notes, 0, sizeof notes);
        CHECK(lyra_plan_budgets(pd, 4, NULL, NULL, &notes, &err) == 0, "budgets: %s", err.msg);
        lyra_plan_model pm;
        CHECK(lyra_plan_model_from_llama(a, 64, 0, &pm, &err) == 0, "model: %s", err.msg);
        lyra_plan_opts o = lyra_plan_default_opts();
        o.ctx = 512;
        o.batch = 64;
        lyra_plan *p = NULL;
        CHECK(lyra_plan_make(&pm, pd, 4, &o, &p, &err) == 0, "plan: %s", err.msg);
        char *s = p ? lyra_plan_json_string(p) : NULL;
        if (r == 0) first = s;
        else {
            CHECK(s && first && !strcmp(s, first), "plan %d differs:\n%s\n%s", r, s ? s : "",
                  first ? first : "");
            free(s);
        }
        lyra_plan_free(p);
        lyra_plan_model_release(&pm);
    }
    free(first);
    lyra_llama_free(a);
    lyra_gguf_close(g);
}

int main(void) {
    const char *s260 = test_shared_path("models/stories260K.gguf");
    const char *bin = getenv("LYRA_BIN");
    if (!s260) test_skip("stories260K.gguf not found (LYRA_SHARED_DIR)");
    if (!bin) test_skip("LYRA_BIN not set (needed for `lyra mkmodel`)");
    char rnd[600], cmd[1400];
    snprintf(rnd, sizeof rnd, "%s/shard_rand256.gguf", test_tmp_dir());
    snprintf(cmd, sizeof cmd,
             "\"%s\" -q mkmodel -o \"%s\" --preset tiny --dim 256 --layers 5 --type Q8_0 --seed 3 "
             "--threads 1",
             bin, rnd);
    CHECK(system(cmd) == 0, "mkmodel failed: %s", cmd);
    test_model(s260, "stories260K");
    test_model(rnd, "rand256");
    test_determinism(s260);
    char rope[600];
    snprintf(rope, sizeof rope, "%s/shard_rope.gguf", test_tmp_dir());
    CHECK(add_rope_freqs(s260, rope) == 0, "cannot write %s", rope);
    test_rope_freqs(rope, s260);
    unsetenv("LYRA_SIM_GPUS");
    for (int i = 0; i < g_ncfg; i++) lyra_config_free(g_cfg[i]);
    return test_done();
}
