/* test_plan.c: the planner (plan/plan.h) on synthetic module lists whose
 * costs are round numbers, so every expected placement below is worked out by
 * hand in the comments (not by running the planner):
 *   embed 1000 B, each layer 10000 B of weights + 10 B/position of KV cache,
 *   norm 40 B, head 1000 B; scratch: base 100 on every device running
 *   something, + 500 with a layer, + 700 with the head; no matmul work.
 * At ctx 100 a layer costs 11000 B, a GPU holding the embedding and k layers
 * 1600 + 11000 k, a GPU holding k layers, the norm and the head
 * 2340 + 11000 k. Covered: every strategy, gpu_layers, tensor_split, explicit
 * maps (prefixes, "", aliases, GPU -> CPU -> GPU, errors), disk spill,
 * budgets and reserves, the gpu_layers step-down, the spec parsers, tied
 * heads, extras, target types, determinism (5 runs, same bytes) and the
 * exact JSON format. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "config/devspec.h"
#include "core/size.h"
#include "plan/plan.h"
#include "testutil.h"

#define NL 8

typedef struct synth {
    lyra_plan_module mods[NL + 3];   /* embed, layers, norm, head */
    lyra_plan_tensor t[NL + 3];      /* one tensor each */
    char names[NL + 3][32];          /* tensor names */
    lyra_plan_model m;
} synth;

static void synth_make(synth *s, const char *arch) {
    memset(s, 0, sizeof *s);
    int n = NL + 3;
    for (int i = 0; i < n; i++) {
        lyra_plan_module *md = &s->mods[i];
        lyra_plan_tensor *t = &s->t[i];
        t->type = LYRA_TYPE_F32;
        t->rows = 1;
        md->layer = -1;
        md->tensors = t;
        md->n_tensors = 1;
        t->name = s->names[i];
        if (i == 0) {
            strcpy(md->name, "model.embed_tokens");
            md->kind = LYRA_PLAN_EMBED;
            t->cols = 250;
            strcpy(s->names[i], "token_embd.weight");
        } else if (i <= NL) {
            snprintf(md->name, sizeof md->name, "model.layers.%d", i - 1);
            md->kind = LYRA_PLAN_LAYER;
            md->layer = i - 1;
            t->cols = 2500;
            md->kv_per_pos = 10;
            md->scratch = 500;
            snprintf(s->names[i], sizeof s->names[i], "blk.%d.w", i - 1);
        } else if (i == NL + 1) {
            strcpy(md->name, "model.norm");
            md->kind = LYRA_PLAN_NORM;
            t->cols = 10;
            strcpy(s->names[i], "output_norm.weight");
        } else {
            strcpy(md->name, "lm_head");
            md->kind = LYRA_PLAN_HEAD;
            t->cols = 250;
            md->scratch = 700;
            strcpy(s->names[i], "output.weight");
        }
    }
    s->m.arch = arch;
    s->m.modules = s->mods;
    s->m.n_modules = n;
    s->m.scratch_base = 100;
}

static lyra_plan_device dev_gpu(const char *id, uint64_t budget) {
    lyra_plan_device d;
    memset(&d, 0, sizeof d);
    snprintf(d.id, sizeof d.id, "%s", id);
    strcpy(d.kind, "gpu");
    strcpy(d.backend, "sim");
    d.free = d.total = d.budget = budget;
    return d;
}

static lyra_plan_device dev_cpu(uint64_t budget) {
    lyra_plan_device d;
    memset(&d, 0, sizeof d);
    strcpy(d.id, "cpu");
    strcpy(d.kind, "cpu");
    strcpy(d.backend, "cpu");
    d.free = d.total = d.budget = budget;
    return d;
}

static lyra_plan_opts opts_ctx100(void) {
    lyra_plan_opts o = lyra_plan_default_opts();
    o.ctx = 100;
    o.batch = 4;
    o.kv_chunk = 0;
    return o;
}

/* The planner reads typed inputs: strings go through config/devspec.h
 * (as flags and configs do) and become options the way the runtime's
 * placement makes them. */
static int strategy(const char *s, lyra_plan_opts *o, lyra_error *err) {
    static const lyra_plan_strategy st[] = {LYRA_PLAN_AUTO, LYRA_PLAN_BALANCED,
                                            LYRA_PLAN_BALANCED_LOW_0, LYRA_PLAN_SEQUENTIAL,
                                            LYRA_PLAN_CPU, LYRA_PLAN_GPU, LYRA_PLAN_MAP};
    lyra_device_strategy ds;
    int32_t g = 0;
    int rc = lyra_devspec_strategy_parse(s, "--device-map", &ds, &g, err);
    if (rc) return rc;
    o->strategy = st[ds];
    o->gpu = g;
    o->map = NULL;
    snprintf(o->map_where, sizeof o->map_where, "--device-map");
    return LYRA_OK;
}

static void split_opts(const float *f, int n, lyra_plan_opts *o) {
    for (int i = 0; i < n; i++) o->split[i] = (uint64_t)llround((double)f[i] * LYRA_PLAN_SPLIT_ONE);
    o->n_split = n;
}

static int split(const char *s, lyra_plan_opts *o, lyra_error *err) {
    float f[LYRA_MAX_TENSOR_SPLIT];
    int n = 0, rc = lyra_devspec_split_parse(s, "--tensor-split", f, &n, err);
    if (!rc) split_opts(f, n, o);
    return rc;
}

static int split_json(const json_t *v, lyra_plan_opts *o, lyra_error *err) {
    float f[LYRA_MAX_TENSOR_SPLIT];
    int n = 0, rc = lyra_devspec_split_from_json(v, "tensor_split", f, &n, err);
    if (!rc) split_opts(f, n, o);
    return rc;
}

static int memspec(const char *s, const char *where, lyra_plan_memspec *out, lyra_error *err) {
    lyra_device_bytes e[LYRA_DEVSPEC_MAX_BYTES];
    int n = 0, rc = lyra_devspec_bytes_parse(s, where, e, &n, err);
    return rc ? rc : lyra_plan_memspec_from(e, n, where, out, err);
}

static int memspec_json(const json_t *v, const char *where, lyra_plan_memspec *out,
                        lyra_error *err) {
    lyra_device_bytes e[LYRA_DEVSPEC_MAX_BYTES];
    int n = 0, rc = lyra_devspec_bytes_from_json(v, where, e, &n, err);
    return rc ? rc : lyra_plan_memspec_from(e, n, where, out, err);
}

static lyra_devspec g_map; /* the entries of json_map's last map */

/* o's explicit map from JSON, through the devspec parser. */
static void json_map(lyra_plan_opts *o, const json_t *j) {
    lyra_error err;
    lyra_devspec_free(&g_map);
    CHECK(lyra_devspec_map_from_json(&g_map, j, "m.json", &err) == LYRA_OK, "map: %s", err.msg);
    o->map = g_map.map;
    o->n_map = g_map.n_map;
}

/* "0:RANGES|1:RANGES|cpu:RANGES|disk:RANGES" */
static const char *map_str(const lyra_plan *p) {
    static char buf[2048];
    size_t o = 0;
    buf[0] = '\0';
    for (int d = 0; d < p->n_devices; d++) {
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s:", d ? "|" : "", p->dev[d].id);
        o += lyra_plan_module_ranges(p, d, buf + o, sizeof buf - o);
    }
    return buf;
}

/* Plan and compare the map; returns the plan (caller frees) or NULL. */
static lyra_plan *expect_map(const synth *s, const lyra_plan_device *devs, int n,
                             const lyra_plan_opts *o, const char *want, const char *what) {
    lyra_plan *p = NULL;
    lyra_error err;
    lyra_err_clear(&err);
    int rc = lyra_plan_make(&s->m, devs, n, o, &p, &err);
    CHECK(rc == LYRA_OK, "%s: rc %d: %s", what, rc, err.msg);
    if (rc) return NULL;
    CHECK(!strcmp(map_str(p), want), "%s:\n  got  %s\n  want %s", what, map_str(p), want);
    /* every device within its budget (disk: unlimited) */
    for (int d = 0; d < p->n_devices; d++) {
        const lyra_plan_usage *u = &p->use[d];
        CHECK(u->total == u->weights + u->kv + u->scratch, "%s: total", what);
        if (strcmp(p->dev[d].kind, "disk"))
            CHECK(u->total <= p->dev[d].budget, "%s: %s over budget %llu > %llu", what,
                  p->dev[d].id, (unsigned long long)u->total, (unsigned long long)p->dev[d].budget);
    }
    return p;
}

static void expect_err(const synth *s, const lyra_plan_device *devs, int n, const lyra_plan_opts *o,
                       const char *has, const char *what) {
    lyra_plan *p = NULL;
    lyra_error err;
    lyra_err_clear(&err);
    int rc = lyra_plan_make(&s->m, devs, n, o, &p, &err);
    CHECK(rc == LYRA_ERR_INPUT && p == NULL, "%s: rc %d, want an input error", what, rc);
    CHECK(strstr(err.msg, has) != NULL, "%s: message \"%s\" lacks \"%s\"", what, err.msg, has);
    CHECK(!strchr(err.msg, '\n'), "%s: one line", what);
    lyra_plan_free(p);
}

static uint64_t use_of(const lyra_plan *p, const char *id, int what) {
    int d = lyra_plan_device_index(p, id);
    if (d < 0) return (uint64_t)-1;
    const lyra_plan_usage *u = &p->use[d];
    return what == 0 ? u->weights : what == 1 ? u->kv : what == 2 ? u->scratch : u->total;
}

static void test_strategies(void) {
    synth s;
    synth_make(&s, "llama");
    lyra_plan_opts o = opts_ctx100();
    lyra_plan *p;

    /* balanced, does not fit (90000 of GPU budget for 91340+): GPUs full in
     * order: GPU 0 1600 + 5 layers = 56600 <= 60000 (6: 67600); GPU 1
     * 600 + 2 layers = 22600 <= 30000 (3: 33600); the rest on the CPU. */
    lyra_plan_device d1[] = {dev_cpu(1000000000), dev_gpu("1", 30000), dev_gpu("0", 60000)};
    p = expect_map(&s, d1, 3, &o, "0:model.embed_tokens model.layers.0-4|1:model.layers.5-6|"
                   "cpu:model.layers.7 model.norm lm_head|disk:", "balanced, too big");
    if (p) {
        CHECK(use_of(p, "0", 3) == 56600 && use_of(p, "1", 3) == 22600, "totals %llu %llu",
              (unsigned long long)use_of(p, "0", 3), (unsigned long long)use_of(p, "1", 3));
        /* cpu: 10040 + 1000 weights, kv 1000, scratch 100+500+700 */
        CHECK(use_of(p, "cpu", 0) == 11040 && use_of(p, "cpu", 1) == 1000 &&
                  use_of(p, "cpu", 2) == 1300, "cpu use");
        lyra_plan_free(p);
    }
    /* balanced, fits (budgets 2:1): the smallest lambda: GPU 0 embed + 6
     * layers = 67600 (lambda 0.338), GPU 1 2 layers + norm + head = 24340;
     * embed + 5 layers would need lambda 35340/100000 on GPU 1 */
    lyra_plan_device d2[] = {dev_gpu("0", 200000), dev_gpu("1", 100000), dev_cpu(1000000000)};
    p = expect_map(&s, d2, 3, &o, "0:model.embed_tokens model.layers.0-5|1:model.layers.6-7 "
                   "model.norm lm_head|cpu:|disk:", "balanced fits");
    if (p) {
        CHECK(use_of(p, "0", 3) == 67600 && use_of(p, "1", 3) == 24340, "balanced totals");
        CHECK(use_of(p, "cpu", 3) == 0 && use_of(p, "disk", 3) == 0, "cpu, disk empty");
        lyra_plan_free(p);
    }
    o.strategy = LYRA_PLAN_BALANCED; /* = auto */
    p = expect_map(&s, d2, 3, &o, "0:model.embed_tokens model.layers.0-5|1:model.layers.6-7 "
                   "model.norm lm_head|cpu:|disk:", "balanced = auto");
    lyra_plan_free(p);
    /* equal budgets: embed + 4 layers = 45600 vs 4 layers + norm + head = 46340 */
    lyra_plan_device d2e[] = {dev_gpu("0", 100000), dev_gpu("1", 100000), dev_cpu(1000000000)};
    p = expect_map(&s, d2e, 3, &o, "0:model.embed_tokens model.layers.0-3|1:model.layers.4-7 "
                   "model.norm lm_head|cpu:|disk:", "balanced equal budgets");
    lyra_plan_free(p);

    /* balanced_low_0: GPU 1 alone holds all (91340 <= 100000): GPU 0 empty */
    o.strategy = LYRA_PLAN_BALANCED_LOW_0;
    p = expect_map(&s, d2, 3, &o, "0:|1:model.embed_tokens model.layers.0-7 model.norm lm_head|"
                   "cpu:|disk:", "balanced_low_0, GPU 1 takes all");
    lyra_plan_free(p);
    /* GPU 1 of 50000: it takes 2340 + 11000 k <= 50000, k = 4; GPU 0 the rest */
    lyra_plan_device d3[] = {dev_gpu("0", 200000), dev_gpu("1", 50000), dev_cpu(1000000000)};
    p = expect_map(&s, d3, 3, &o, "0:model.embed_tokens model.layers.0-3|1:model.layers.4-7 "
                   "model.norm lm_head|cpu:|disk:", "balanced_low_0, GPU 0 the least");
    lyra_plan_free(p);
    /* three GPUs, 1 and 2 balanced between them, GPU 0 empty */
    lyra_plan_device d3b[] = {dev_gpu("0", 200000), dev_gpu("1", 100000), dev_gpu("2", 100000),
                              dev_cpu(1000000000)};
    p = expect_map(&s, d3b, 4, &o, "0:|1:model.embed_tokens model.layers.0-3|2:model.layers.4-7 "
                   "model.norm lm_head|cpu:|disk:", "balanced_low_0, three GPUs");
    lyra_plan_free(p);
    /* one GPU: as sequential */
    lyra_plan_device d3c[] = {dev_gpu("0", 50000), dev_cpu(1000000000)};
    p = expect_map(&s, d3c, 2, &o, "0:model.embed_tokens model.layers.0-3|cpu:model.layers.4-7 "
                   "model.norm lm_head|disk:", "balanced_low_0, one GPU");
    lyra_plan_free(p);

    /* sequential: all on GPU 0 when it fits; GPU 0 of 50000: 4 layers */
    o.strategy = LYRA_PLAN_SEQUENTIAL;
    p = expect_map(&s, d2, 3, &o, "0:model.embed_tokens model.layers.0-7 model.norm lm_head|1:|"
                   "cpu:|disk:", "sequential fits on 0");
    lyra_plan_free(p);
    lyra_plan_device d4[] = {dev_gpu("0", 50000), dev_gpu("1", 100000), dev_cpu(1000000000)};
    p = expect_map(&s, d4, 3, &o, "0:model.embed_tokens model.layers.0-3|1:model.layers.4-7 "
                   "model.norm lm_head|cpu:|disk:", "sequential 0 then 1");
    lyra_plan_free(p);

    /* cpu */
    o.strategy = LYRA_PLAN_CPU;
    p = expect_map(&s, d2, 3, &o, "0:|1:|cpu:model.embed_tokens model.layers.0-7 model.norm "
                   "lm_head|disk:", "cpu");
    if (p) {
        /* 1000 + 80000 + 40 + 1000 weights, 8000 kv, 1300 scratch */
        CHECK(use_of(p, "cpu", 0) == 82040 && use_of(p, "cpu", 1) == 8000 &&
                  use_of(p, "cpu", 2) == 1300 && use_of(p, "cpu", 3) == 91340, "cpu use");
        lyra_plan_free(p);
    }

    /* disk spill, no GPUs, cpu budget 40000: everything on disk costs the CPU
     * 100 + 500 + 700 + 8000 = 9300; then embed (10300), layer 0 (20300),
     * layer 1 (30300); layer 2 would make 40300 */
    o.strategy = LYRA_PLAN_AUTO;
    lyra_plan_device d5[] = {dev_cpu(40000)};
    p = expect_map(&s, d5, 1, &o, "cpu:model.embed_tokens model.layers.0-1|disk:model.layers.2-7 "
                   "model.norm lm_head", "disk spill");
    if (p) {
        CHECK(use_of(p, "cpu", 0) == 21000 && use_of(p, "cpu", 1) == 8000 &&
                  use_of(p, "cpu", 2) == 1300 && use_of(p, "cpu", 3) == 30300, "cpu with disk");
        CHECK(use_of(p, "disk", 0) == 61040 && use_of(p, "disk", 1) == 0 &&
                  use_of(p, "disk", 2) == 0, "disk: weights only");
        lyra_plan_free(p);
    }
    /* and with GPUs first (sequential, GPU 0 of 50000) */
    o.strategy = LYRA_PLAN_SEQUENTIAL;
    lyra_plan_device d6[] = {dev_gpu("0", 50000), dev_cpu(40000)};
    p = expect_map(&s, d6, 2, &o, "0:model.embed_tokens model.layers.0-3|cpu:model.layers.4-6|"
                   "disk:model.layers.7 model.norm lm_head", "GPU, CPU, disk");
    lyra_plan_free(p);
    /* a budget so small that a module fits nowhere: 100 + 1500 + 1000 k > 5000
     * first at layer 4 */
    lyra_plan_device d7[] = {dev_cpu(5000)};
    expect_err(&s, d7, 1, &o, "model.layers.4 fits nowhere", "fits nowhere");
    lyra_plan_device d7b[] = {dev_cpu(50)};
    expect_err(&s, d7b, 1, &o, "model.embed_tokens fits nowhere", "not even the embedding");
    /* a GPU with budget 0 takes nothing */
    lyra_plan_device d8[] = {dev_gpu("0", 0), dev_gpu("1", 200000), dev_cpu(1000000000)};
    o.strategy = LYRA_PLAN_AUTO;
    p = expect_map(&s, d8, 3, &o, "0:|1:model.embed_tokens model.layers.0-7 model.norm lm_head|"
                   "cpu:|disk:", "zero budget GPU");
    lyra_plan_free(p);
}

static void test_single_gpu(void) {
    synth s;
    synth_make(&s, "llama");
    lyra_plan_opts o = opts_ctx100();
    lyra_error err;
    CHECK(strategy("cuda:1", &o, &err) == LYRA_OK &&
              o.strategy == LYRA_PLAN_GPU && o.gpu == 1, "cuda:1");
    lyra_plan_device d[] = {dev_gpu("0", 200000), dev_gpu("1", 100000), dev_cpu(1000000000)};
    lyra_plan *p = expect_map(&s, d, 3, &o, "0:|1:model.embed_tokens model.layers.0-7 model.norm "
                              "lm_head|cpu:|disk:", "cuda:1");
    lyra_plan_free(p);
    lyra_plan_device d2[] = {dev_gpu("0", 200000), dev_gpu("1", 50000), dev_cpu(1000000000)};
    expect_err(&s, d2, 3, &o, "model.layers.4 does not fit on GPU 1", "cuda:1 too small");
    CHECK(strategy("0", &o, &err) == LYRA_OK && o.gpu == 0, "0");
    p = expect_map(&s, d2, 3, &o, "0:model.embed_tokens model.layers.0-7 model.norm lm_head|1:|"
                   "cpu:|disk:", "0");
    lyra_plan_free(p);
    CHECK(strategy("cuda", &o, &err) == LYRA_OK && o.gpu == 0,
          "cuda");
    /* a GPU that is not here: the CPU with a note, or an error without fallback */
    CHECK(strategy("cuda:5", &o, &err) == LYRA_OK, "cuda:5");
    p = expect_map(&s, d, 3, &o, "0:|1:|cpu:model.embed_tokens model.layers.0-7 model.norm "
                   "lm_head|disk:", "missing GPU: fallback");
    if (p) {
        CHECK(p->notes.n == 1 && strstr(p->notes.line[0], "no GPU 5"), "note: %s",
              p->notes.n ? p->notes.line[0] : "(none)");
        lyra_plan_free(p);
    }
    o.fallback = 0;
    expect_err(&s, d, 3, &o, "no GPU 5 on this machine", "missing GPU: no fallback");
}

static void test_gpu_layers(void) {
    synth s;
    synth_make(&s, "llama");
    lyra_plan_opts o = opts_ctx100();
    lyra_plan *p;
    lyra_plan_device d[] = {dev_gpu("0", 100000), dev_gpu("1", 100000), dev_cpu(1000000000)};
    /* embed + layers 0-2 balanced: 12600 / 22600 beats 23600 / 11600 */
    o.gpu_layers = 3;
    p = expect_map(&s, d, 3, &o, "0:model.embed_tokens model.layers.0|1:model.layers.1-2|"
                   "cpu:model.layers.3-7 model.norm lm_head|disk:", "gpu_layers 3");
    lyra_plan_free(p);
    o.strategy = LYRA_PLAN_SEQUENTIAL;
    p = expect_map(&s, d, 3, &o, "0:model.embed_tokens model.layers.0-2|1:|"
                   "cpu:model.layers.3-7 model.norm lm_head|disk:", "gpu_layers 3 sequential");
    lyra_plan_free(p);
    o.strategy = LYRA_PLAN_AUTO;
    o.gpu_layers = LYRA_PLAN_ALL_LAYERS;
    p = expect_map(&s, d, 3, &o, "0:model.embed_tokens model.layers.0-3|1:model.layers.4-7 "
                   "model.norm lm_head|cpu:|disk:", "gpu_layers all");
    lyra_plan_free(p);
    o.gpu_layers = 8; /* = n_layers: all */
    p = expect_map(&s, d, 3, &o, "0:model.embed_tokens model.layers.0-3|1:model.layers.4-7 "
                   "model.norm lm_head|cpu:|disk:", "gpu_layers 8");
    lyra_plan_free(p);
    o.gpu_layers = 7; /* norm and head stay on the CPU; 34600 / 44600 beats 45600 / 33600 */
    p = expect_map(&s, d, 3, &o, "0:model.embed_tokens model.layers.0-2|1:model.layers.3-6|"
                   "cpu:model.layers.7 model.norm lm_head|disk:", "gpu_layers 7");
    lyra_plan_free(p);
    o.gpu_layers = 0;
    p = expect_map(&s, d, 3, &o, "0:|1:|cpu:model.embed_tokens model.layers.0-7 model.norm "
                   "lm_head|disk:", "gpu_layers 0");
    lyra_plan_free(p);
    /* GPUs too small for 6 layers: 0 takes embed + 2 (23600), 1 takes 2 (22600) */
    lyra_plan_device ds[] = {dev_gpu("0", 30000), dev_gpu("1", 30000), dev_cpu(1000000000)};
    o.gpu_layers = 6;
    expect_err(&s, ds, 3, &o, "model.layers.4 (11000 bytes of weights and KV cache) does not fit on "
               "the GPUs", "gpu_layers too many");
    o.gpu_layers = -5;
    expect_err(&s, ds, 3, &o, "cannot be negative", "negative gpu_layers");
    /* no GPUs: a note, all on the CPU */
    o.gpu_layers = 4;
    lyra_plan_device dc[] = {dev_cpu(1000000000)};
    p = expect_map(&s, dc, 1, &o, "cpu:model.embed_tokens model.layers.0-7 model.norm lm_head|disk:",
                   "gpu_layers without GPUs");
    if (p) {
        CHECK(p->notes.n == 1 && strstr(p->notes.line[0], "no GPUs"), "note");
        lyra_plan_free(p);
    }
    o.strategy = LYRA_PLAN_CPU;
    expect_err(&s, d, 3, &o, "conflict", "gpu_layers with cpu");
    /* the parsers */
    int32_t g = 0;
    lyra_error err;
    CHECK(lyra_devspec_gpu_layers_parse("all", "--gpu-layers", &g, &err) == LYRA_OK &&
              g == LYRA_GPU_LAYERS_ALL, "all");
    CHECK(lyra_devspec_gpu_layers_parse("12", "--gpu-layers", &g, &err) == LYRA_OK && g == 12, "12");
    CHECK(lyra_devspec_gpu_layers_parse("99999999999", "--gpu-layers", &g, &err) == LYRA_OK &&
              g == LYRA_GPU_LAYERS_ALL, "huge = all");
    CHECK(lyra_devspec_gpu_layers_parse("-1", "--gpu-layers", &g, &err) == LYRA_ERR_INPUT &&
              strstr(err.msg, "--gpu-layers: \"-1\": the number of GPU layers cannot be negative"),
          "-1: %s", err.msg);
    CHECK(lyra_devspec_gpu_layers_parse("1x", "--gpu-layers", &g, &err) == LYRA_ERR_INPUT, "1x");
    CHECK(lyra_devspec_gpu_layers_parse("", "--gpu-layers", &g, &err) == LYRA_ERR_INPUT, "empty");
    json_t *j = json_integer(-2);
    CHECK(lyra_devspec_gpu_layers_from_json(j, "gpu_layers", &g, &err) == LYRA_ERR_INPUT, "json -2");
    json_decref(j);
    j = json_string("all");
    CHECK(lyra_devspec_gpu_layers_from_json(j, "gpu_layers", &g, &err) == LYRA_OK &&
              g == LYRA_GPU_LAYERS_ALL, "json all");
    json_decref(j);
}

static void test_tensor_split(void) {
    synth s;
    synth_make(&s, "llama");
    lyra_plan_opts o = opts_ctx100();
    lyra_error err;
    lyra_plan *p;
    lyra_plan_device d[] = {dev_gpu("0", 1000000), dev_gpu("1", 1000000), dev_cpu(1000000000)};
    /* 3:1 of 8 layers: layer j on GPU 0 while j/8 < 3/4, i.e. j < 6 */
    CHECK(split("3,1", &o, &err) == LYRA_OK && o.n_split == 2 &&
              o.split[0] == 3000000 && o.split[1] == 1000000, "parse 3,1");
    p = expect_map(&s, d, 3, &o, "0:model.embed_tokens model.layers.0-5|1:model.layers.6-7 "
                   "model.norm lm_head|cpu:|disk:", "split 3,1");
    lyra_plan_free(p);
    /* with gpu_layers 4: j/4 < 3/4, j < 3 */
    o.gpu_layers = 4;
    p = expect_map(&s, d, 3, &o, "0:model.embed_tokens model.layers.0-2|1:model.layers.3|"
                   "cpu:model.layers.4-7 model.norm lm_head|disk:", "split 3,1 gpu_layers 4");
    lyra_plan_free(p);
    o.gpu_layers = -1;
    CHECK(split("0,1", &o, &err) == LYRA_OK, "0,1");
    p = expect_map(&s, d, 3, &o, "0:|1:model.embed_tokens model.layers.0-7 model.norm lm_head|"
                   "cpu:|disk:", "split 0,1");
    lyra_plan_free(p);
    CHECK(split("0.6, 0.4", &o, &err) == LYRA_OK &&
              o.split[0] == 600000 && o.split[1] == 400000, "0.6,0.4");
    /* j/8 < 0.6: j <= 4 */
    p = expect_map(&s, d, 3, &o, "0:model.embed_tokens model.layers.0-4|1:model.layers.5-7 "
                   "model.norm lm_head|cpu:|disk:", "split 0.6,0.4");
    lyra_plan_free(p);
    /* over a budget */
    lyra_plan_device ds[] = {dev_gpu("0", 30000), dev_gpu("1", 1000000), dev_cpu(1000000000)};
    expect_err(&s, ds, 3, &o, "GPU 0 would hold 56600 bytes", "split over budget");
    CHECK(split("1,1,1", &o, &err) == LYRA_OK, "1,1,1");
    expect_err(&s, d, 3, &o, "3 proportions but 2 GPUs", "too many proportions");
    o.strategy = LYRA_PLAN_SEQUENTIAL;
    expect_err(&s, d, 3, &o, "needs the auto", "split with sequential");
    /* parse errors */
    CHECK(split("0,0", &o, &err) == LYRA_ERR_INPUT &&
              strstr(err.msg, "every proportion is 0"), "0,0");
    CHECK(split("1.1234567", &o, &err) == LYRA_ERR_INPUT, "7 decimals");
    CHECK(split("1,-1", &o, &err) == LYRA_ERR_INPUT, "negative");
    CHECK(split("1,", &o, &err) == LYRA_ERR_INPUT, "trailing comma");
    CHECK(split("a", &o, &err) == LYRA_ERR_INPUT &&
              strstr(err.msg, "--tensor-split: \"a\" is not a proportion"), "a: %s", err.msg);
    json_error_t je;
    json_t *j = json_loads("[3, 1.5]", 0, &je);
    CHECK(split_json(j, &o, &err) == LYRA_OK && o.n_split == 2 &&
              o.split[0] == 3000000 && o.split[1] == 1500000, "json [3, 1.5]");
    json_decref(j);
    j = json_loads("[1, \"x\"]", 0, &je);
    CHECK(split_json(j, &o, &err) == LYRA_ERR_INPUT, "json bad");
    json_decref(j);
}

/* Plan with an explicit map given as JSON text. */
static lyra_plan *map_plan(const synth *s, const lyra_plan_device *d, int n, const char *json,
                           int fallback, const char *want, const char *what) {
    json_error_t je;
    json_t *j = json_loads(json, 0, &je);
    CHECK(j != NULL, "%s: bad test JSON %s", what, je.text);
    lyra_plan_opts o = opts_ctx100();
    lyra_error err;
    lyra_devspec ds;
    lyra_devspec_init(&ds);
    lyra_plan *p = NULL;
    int rc = lyra_devspec_map_from_json(&ds, j, "m.json", &err);
    json_decref(j);
    if (rc) { /* a value the parser rejects (the planner never sees it) */
        CHECK(want[0] == '!' && strstr(err.msg, want + 1) && !strncmp(err.msg, "m.json: ", 8),
              "%s: parse error %s", what, err.msg);
        return NULL;
    }
    CHECK(ds.strategy == LYRA_DEVICE_MAP_EXPLICIT, "%s: from json", what);
    o.strategy = LYRA_PLAN_MAP;
    o.map = ds.map;
    o.n_map = ds.n_map;
    snprintf(o.map_where, sizeof o.map_where, "m.json");
    o.fallback = fallback;
    if (want[0] == '!') expect_err(s, d, n, &o, want + 1, what);
    else p = expect_map(s, d, n, &o, want, what);
    lyra_devspec_free(&ds);
    return p;
}

static void test_maps(void) {
    synth s;
    synth_make(&s, "llama");
    lyra_plan *p;
    lyra_plan_device d[] = {dev_gpu("0", 1000000), dev_gpu("1", 1000000), dev_cpu(1000000000)};
    /* GPU -> CPU -> GPU over two GPUs */
    p = map_plan(&s, d, 3,
                 "{\"\": \"cpu\", \"model.embed_tokens\": 0, \"model.layers.0\": \"0\", "
                 "\"model.layers.1\": \"cuda:0\", \"model.layers.6\": \"cuda:1\", "
                 "\"model.layers.7\": 1, \"lm_head\": \"1\"}", 1,
                 "0:model.embed_tokens model.layers.0-1|1:model.layers.6-7 lm_head|"
                 "cpu:model.layers.2-5 model.norm|disk:", "GPU -> CPU -> GPU");
    if (p) {
        CHECK(!strcmp(lyra_plan_module_device(p, "model.layers.3"), "cpu") &&
                  !strcmp(lyra_plan_module_device(p, "lm_head"), "1"), "module_device");
        lyra_plan_free(p);
    }
    /* GPU 0 -> GPU 1 -> GPU 0: ranges split */
    p = map_plan(&s, d, 3, "{\"\": 0, \"model.layers.3\": 1, \"model.layers.4\": 1}", 1,
                 "0:model.embed_tokens model.layers.0-2 model.layers.5-7 model.norm lm_head|"
                 "1:model.layers.3-4|cpu:|disk:", "0 -> 1 -> 0");
    lyra_plan_free(p);
    /* prefixes: the longest key wins; "model" covers all but lm_head */
    p = map_plan(&s, d, 3, "{\"model.layers\": \"cpu\", \"model.layers.3\": 0, \"model\": \"disk\", "
                 "\"lm_head\": 1}", 1,
                 "0:model.layers.3|1:lm_head|cpu:model.layers.0-2 model.layers.4-7|"
                 "disk:model.embed_tokens model.norm", "prefixes");
    lyra_plan_free(p);
    /* dot boundary: "model.layers.1" is not a prefix of model.layers.10 (none here), and
     * "model.lay" covers nothing */
    map_plan(&s, d, 3, "{\"\": \"cpu\", \"model.lay\": 0}", 1, "!\"model.lay\" matches no module",
             "not a dot-boundary prefix");
    /* errors */
    map_plan(&s, d, 3, "{\"model.layers\": \"cpu\"}", 1, "!no key covers model.embed_tokens",
             "uncovered");
    map_plan(&s, d, 3, "{\"\": \"cpu\", \"model.layers.3.mlp\": 0}", 1,
             "!\"model.layers.3.mlp\" is inside model.layers.3: a layer is never split", "split layer");
    map_plan(&s, d, 3, "{\"\": \"cpu\", \"blk.3.attn_q\": 0}", 1,
             "!a layer is never split", "split layer, GGUF name");
    map_plan(&s, d, 3, "{\"\": \"cpu\", \"model.norm.weight\": 0}", 1,
             "!a module is never split", "below a module");
    map_plan(&s, d, 3, "{\"\": \"cpu\", \"model.layers.99\": 0}", 1,
             "!\"model.layers.99\" matches no module", "no such layer");
    map_plan(&s, d, 3, "{\"\": \"gpu\"}", 1, "!\"\": unknown device \"gpu\"", "unknown device");
    map_plan(&s, d, 3, "{\"\": -1}", 1, "!unknown device -1", "negative device");
    map_plan(&s, d, 3, "{\"\": \"cuda:x\"}", 1, "!unknown device", "cuda:x");
    map_plan(&s, d, 3, "{\"\": true}", 1, "!unknown device true", "bool device");
    map_plan(&s, d, 3, "{\"\": \"mps\"}", 1, "!unknown device", "mps");
    map_plan(&s, d, 3, "{}", 1, "!the map is empty", "empty map");
    /* same key length covering the same module (after aliases) */
    map_plan(&s, d, 3, "{\"\": \"cpu\", \"model.norm\": 0, \"output_norm\": 1}", 1,
             "!\"model.norm\" and \"output_norm\" both name model.norm", "same length");
    /* a missing GPU: the CPU with one note, or an error */
    p = map_plan(&s, d, 3, "{\"\": 0, \"model.layers.2\": 5, \"model.layers.3\": 5, \"lm_head\": 7}",
                 1, "0:model.embed_tokens model.layers.0-1 model.layers.4-7 model.norm|1:|"
                 "cpu:model.layers.2-3 lm_head|disk:", "missing GPUs: fallback");
    if (p) {
        CHECK(p->notes.n == 2 && strstr(p->notes.line[0], "m.json: no GPU 5 on this machine") &&
                  strstr(p->notes.line[1], "no GPU 7"), "notes %d", p->notes.n);
        lyra_plan_free(p);
    }
    map_plan(&s, d, 3, "{\"\": 0, \"model.layers.2\": 5}", 0,
             "!\"model.layers.2\": no GPU 5 on this machine (fallback is off)", "missing GPU: error");
    /* over a budget: GPU 0 of 50000 reaches 56600 at layer 4 */
    lyra_plan_device ds[] = {dev_gpu("0", 50000), dev_cpu(1000000000)};
    map_plan(&s, ds, 2, "{\"\": 0}", 1,
             "!GPU 0 would hold 91340 bytes (89.2 KiB) but its budget is 50000 bytes (48.8 KiB); "
             "over from model.layers.4 on", "map over budget");
    /* disk in a map: its KV and scratch are the CPU's */
    p = map_plan(&s, d, 3, "{\"\": \"disk\", \"model.embed_tokens\": \"cpu\"}", 1,
                 "0:|1:|cpu:model.embed_tokens|disk:model.layers.0-7 model.norm lm_head", "disk map");
    if (p) {
        CHECK(use_of(p, "cpu", 0) == 1000 && use_of(p, "cpu", 1) == 8000 &&
                  use_of(p, "cpu", 2) == 1300 && use_of(p, "disk", 0) == 81040, "disk map use");
        lyra_plan_free(p);
    }
    lyra_plan_device dsc[] = {dev_cpu(5000)};
    map_plan(&s, dsc, 1, "{\"\": \"disk\"}", 1,
             "!the cpu would hold 9300 bytes (9.1 KiB) but its budget is 5000 bytes (4.9 KiB); "
             "over from model.layers.4 on", "disk map, cpu too small");

    /* aliases */
    synth phi;
    synth_make(&phi, "phi2");
    p = map_plan(&phi, d, 3, "{\"\": \"cpu\", \"model.final_layernorm\": 0}", 1,
                 "0:model.norm|1:|cpu:model.embed_tokens model.layers.0-7 lm_head|disk:", "phi2 alias");
    lyra_plan_free(p);
    map_plan(&phi, d, 3, "{\"\": \"cpu\", \"model.final_layernorm\": 0, \"model.norm\": 1}", 1,
             "!both name model.norm", "phi2 alias duplicate");
    map_plan(&s, d, 3, "{\"\": \"cpu\", \"model.final_layernorm\": 0}", 1,
             "!matches no module", "phi2 alias is not llama's");
    synth g2;
    synth_make(&g2, "gpt2");
    p = map_plan(&g2, d, 3, "{\"transformer\": \"cpu\", \"transformer.h.1\": 0, \"lm_head\": 1, "
                 "\"transformer.wte\": \"disk\"}", 1,
                 "0:model.layers.1|1:lm_head|cpu:model.layers.0 model.layers.2-7 model.norm|"
                 "disk:model.embed_tokens", "gpt2 aliases");
    lyra_plan_free(p);
    p = map_plan(&s, d, 3, "{\"\": \"cpu\", \"blk.2\": 1, \"output\": \"disk\", \"token_embd\": 0}",
                 1, "0:model.embed_tokens|1:model.layers.2|cpu:model.layers.0-1 model.layers.3-7 "
                 "model.norm|disk:lm_head", "GGUF names");
    lyra_plan_free(p);
    /* device_map JSON forms */
    lyra_devspec dm;
    lyra_devspec_init(&dm);
    lyra_error err;
    json_t *j = json_integer(1);
    CHECK(lyra_devspec_map_from_json(&dm, j, "device_map", &err) == LYRA_OK &&
              dm.strategy == LYRA_DEVICE_MAP_GPU && dm.gpu == 1, "json 1");
    json_decref(j);
    j = json_string("balanced_low_0");
    CHECK(lyra_devspec_map_from_json(&dm, j, "device_map", &err) == LYRA_OK &&
              dm.strategy == LYRA_DEVICE_MAP_BALANCED_LOW_0, "json balanced_low_0");
    json_decref(j);
    j = json_string("fastest");
    CHECK(lyra_devspec_map_from_json(&dm, j, "config.json: device_map", &err) == LYRA_ERR_INPUT &&
              strstr(err.msg, "config.json: device_map: unknown device map \"fastest\""), "%s", err.msg);
    json_decref(j);
    j = json_real(1.5);
    CHECK(lyra_devspec_map_from_json(&dm, j, "device_map", &err) == LYRA_ERR_INPUT, "json real");
    json_decref(j);
    lyra_devspec_free(&dm);
    CHECK(lyra_devspec_is_strategy("auto") && lyra_devspec_is_strategy("balanced") &&
              lyra_devspec_is_strategy("balanced_low_0") && lyra_devspec_is_strategy("sequential") &&
              lyra_devspec_is_strategy("cpu") && lyra_devspec_is_strategy("cuda") &&
              lyra_devspec_is_strategy("cuda:1") && lyra_devspec_is_strategy("0") &&
              !lyra_devspec_is_strategy("map.json") && !lyra_devspec_is_strategy("cuda:") &&
              !lyra_devspec_is_strategy(""), "is_strategy");
}

/* Tied head, extras, target types and matmul work. */
static lyra_type to_f16_on_gpu(void *user, const lyra_plan_tensor *t, const lyra_plan_device *d) {
    (void)user;
    return !strcmp(d->kind, "gpu") && t->type == LYRA_TYPE_F32 ? LYRA_TYPE_F16 : t->type;
}

static size_t work_cols(void *user, const lyra_plan_device *d, lyra_type wt, int64_t cols, int nb) {
    (void)user;
    (void)d;
    return (size_t)cols * (size_t)nb * (wt == LYRA_TYPE_F16 ? 1 : 2); /* any rule; checked below */
}

static void test_accounting(void) {
    synth s;
    synth_make(&s, "llama");
    lyra_plan_opts o = opts_ctx100();
    lyra_plan *p;
    /* tied: the head reads the embedding's tensor */
    s.m.tied_head = 1;
    s.mods[NL + 2].tensors = &s.t[0];
    lyra_plan_device d[] = {dev_gpu("0", 1000000), dev_gpu("1", 1000000), dev_cpu(1000000000)};
    o.strategy = LYRA_PLAN_CPU;
    p = expect_map(&s, d, 3, &o, "0:|1:|cpu:model.embed_tokens model.layers.0-7 model.norm lm_head|"
                   "disk:", "tied, same device");
    if (p) {
        CHECK(use_of(p, "cpu", 0) == 81040, "tied counted once: %llu",
              (unsigned long long)use_of(p, "cpu", 0));
        lyra_plan_free(p);
    }
    json_error_t je;
    json_t *j = json_loads("{\"\": \"cpu\", \"model.embed_tokens\": 0}", 0, &je);
    o.strategy = LYRA_PLAN_MAP;
    json_map(&o, j);
    p = expect_map(&s, d, 3, &o, "0:model.embed_tokens|1:|cpu:model.layers.0-7 model.norm lm_head|"
                   "disk:", "tied, two devices");
    if (p) {
        CHECK(use_of(p, "0", 0) == 1000 && use_of(p, "cpu", 0) == 81040, "tied copy on both");
        CHECK(use_of(p, "0", 2) == 100 && use_of(p, "0", 1) == 0, "embed only: base scratch");
        lyra_plan_free(p);
    }
    json_decref(j);
    s.m.tied_head = 0;
    s.mods[NL + 2].tensors = &s.t[NL + 2];
    /* extras (rope_freqs 32 floats = 128 B) on every device running a layer,
     * the CPU included when its layers are on disk */
    lyra_plan_tensor rf = {"rope_freqs.weight", LYRA_TYPE_F32, 32, 1, 0};
    s.m.extras = &rf;
    s.m.n_extras = 1;
    j = json_loads("{\"\": \"cpu\", \"model.layers.0\": 0, \"model.embed_tokens\": 1, "
                   "\"model.layers.7\": \"disk\", \"lm_head\": \"disk\"}", 0, &je);
    json_map(&o, j);
    p = expect_map(&s, d, 3, &o, "0:model.layers.0|1:model.embed_tokens|cpu:model.layers.1-6 "
                   "model.norm|disk:model.layers.7 lm_head", "extras");
    if (p) {
        CHECK(use_of(p, "0", 0) == 10128, "GPU 0 layer + extra: %llu",
              (unsigned long long)use_of(p, "0", 0));
        CHECK(use_of(p, "1", 0) == 1000, "GPU 1 no layer, no extra");
        CHECK(use_of(p, "cpu", 0) == 60040 + 128, "cpu: 6 layers, norm, extra");
        CHECK(use_of(p, "cpu", 1) == 7000 && use_of(p, "cpu", 2) == 1300, "cpu runs disk's too");
        CHECK(use_of(p, "disk", 0) == 11000, "disk: no extra");
        lyra_plan_free(p);
    }
    json_decref(j);
    s.m.extras = NULL;
    s.m.n_extras = 0;
    /* target types: F32 becomes F16 on GPUs (half the bytes); work per matmul
     * tensor: cols * batch * (1 for F16, 2 else), the largest of a device,
     * rounded up to 64; the disk's modules use the file's type, on the CPU */
    s.m.target_type = to_f16_on_gpu;
    s.m.work_size = work_cols;
    for (int i = 1; i <= NL + 2; i++) s.t[i].matmul = 1;
    s.t[NL + 1].matmul = 0;
    j = json_loads("{\"\": 0, \"model.layers.6\": \"cpu\", \"model.layers.7\": \"disk\", "
                   "\"model.norm\": \"cpu\", \"lm_head\": \"cpu\"}", 0, &je);
    json_map(&o, j);
    p = expect_map(&s, d, 3, &o, "0:model.embed_tokens model.layers.0-5|1:|cpu:model.layers.6 "
                   "model.norm lm_head|disk:model.layers.7", "target types");
    if (p) {
        /* GPU 0: (1000 + 6 * 10000) / 2 weights; work 2500 * 4 * 1 = 10000 -> 10048 */
        CHECK(use_of(p, "0", 0) == 30500, "f16 on GPU: %llu", (unsigned long long)use_of(p, "0", 0));
        CHECK(use_of(p, "0", 2) == 100 + 500 + 10048, "GPU work: %llu",
              (unsigned long long)use_of(p, "0", 2));
        /* cpu: F32 10000 + 40 + 1000; work max(2500*4*2 (layer 6 and disk's 7),
         * 250*4*2) = 20000 -> 20032 */
        CHECK(use_of(p, "cpu", 0) == 11040 && use_of(p, "cpu", 2) == 100 + 500 + 700 + 20032,
              "cpu work: %llu", (unsigned long long)use_of(p, "cpu", 2));
        lyra_plan_free(p);
    }
    json_decref(j);
    /* default work size: lyra_matmul_work_size */
    s.m.work_size = NULL;
    s.m.target_type = NULL;
    o.strategy = LYRA_PLAN_CPU;
    p = expect_map(&s, d, 3, &o, "0:|1:|cpu:model.embed_tokens model.layers.0-7 model.norm "
                   "lm_head|disk:", "default work");
    if (p) {
        uint64_t w = lyra_matmul_work_size(LYRA_TYPE_F32, 2500, 4);
        CHECK(use_of(p, "cpu", 2) == 1300 + ((w + 63) & ~(uint64_t)63), "default work %llu",
              (unsigned long long)w);
        lyra_plan_free(p);
    }
    /* the KV cache is planned in whole chunks: ctx 100 in chunks of 64 = 128 */
    o.kv_chunk = 64;
    p = expect_map(&s, d, 3, &o, "0:|1:|cpu:model.embed_tokens model.layers.0-7 model.norm "
                   "lm_head|disk:", "kv chunks");
    if (p) {
        CHECK(use_of(p, "cpu", 1) == 8 * 10 * 128, "kv chunks %llu",
              (unsigned long long)use_of(p, "cpu", 1));
        lyra_plan_free(p);
    }
    /* a tensor whose columns do not fit the target type's blocks */
    lyra_plan_tensor bad = {"blk.0.bad", LYRA_TYPE_Q4_0, 100, 2, 1};
    s.mods[1].tensors = &bad;
    expect_err(&s, d, 3, &o, "blk.0.bad: 100 columns are not a multiple of the Q4_0 block (32)",
               "bad block");
}

static void test_budgets(void) {
    lyra_error err;
    lyra_plan_memspec mm, rs;
    CHECK(memspec("0=6GiB,cpu=16GiB", "--max-memory", &mm, &err) == LYRA_OK &&
              mm.n == 2 && !strcmp(mm.key[0], "0") && mm.bytes[0] == 6442450944ull &&
              !strcmp(mm.key[1], "cpu") && mm.bytes[1] == 17179869184ull, "max-memory parse");
    CHECK(memspec("cuda:1 = 1GB, 3=0.5GiB", "--max-memory", &mm, &err) == LYRA_OK &&
              mm.n == 2 && !strcmp(mm.key[0], "1") && mm.bytes[0] == 1000000000 &&
              mm.bytes[1] == 536870912, "cuda:1: %s", err.msg);
    CHECK(memspec("", "--max-memory", &mm, &err) == LYRA_OK && mm.n == 0, "empty");
    struct { const char *s, *has; } bad[] = {
        {"0=6Gb", "--max-memory entry \"0=6Gb\": bad size \"6Gb\": lowercase b means bits; bits? write 6GB or 6GiB"},
        {"gpu=1GiB", "--max-memory: entry \"gpu=1GiB\": unknown device"},
        {"disk=1GiB", "unknown device"},
        {"0=1GiB,0=2GiB", "--max-memory: device 0 given twice"},
        {"0=1GiB,cuda:0=2GiB", "device 0 given twice"},
        {"0", "expected DEVICE=SIZE"},
        {"0=1GiB,", "empty entry"},
        {"0=", "bad size \"\": empty"},
        {"cpu=16", "no unit"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lyra_err_clear(&err);
        CHECK(memspec(bad[i].s, "--max-memory", &mm, &err) == LYRA_ERR_INPUT &&
                  strstr(err.msg, bad[i].has), "\"%s\": %s", bad[i].s, err.msg);
    }
    json_error_t je;
    json_t *j = json_loads("{\"cpu\": 17179869184, \"0\": \"6GiB\"}", 0, &je);
    CHECK(memspec_json(j, "config.json: max_memory", &mm, &err) == LYRA_OK &&
              mm.n == 2 && !strcmp(mm.key[1], "0") && mm.bytes[1] == 6442450944ull &&
              mm.bytes[0] == 17179869184ull, "json (the object's order)");
    json_decref(j);
    j = json_loads("{\"0\": \"6Gb\"}", 0, &je);
    CHECK(memspec_json(j, "config.json: max_memory", &mm, &err) == LYRA_ERR_INPUT &&
              strstr(err.msg, "config.json: max_memory.0: bad size \"6Gb\""), "json bad: %s", err.msg);
    json_decref(j);

    /* budgets */
    lyra_plan_device d[4];
    memset(d, 0, sizeof d);
    d[0] = dev_gpu("0", 0);
    strcpy(d[0].backend, "cuda");
    d[0].total = 8ull << 30;
    d[0].free = 7ull << 30;
    d[1] = dev_gpu("1", 0);
    strcpy(d[1].backend, "cuda");
    d[1].total = 24ull << 30;
    d[1].free = 20ull << 30;
    d[2] = dev_cpu(0);
    d[2].free = 64ull << 30;
    lyra_plan_device_disk(&d[3]);
    lyra_plan_notes notes = {0};
    CHECK(lyra_plan_budgets(d, 4, NULL, NULL, &notes, &err) == LYRA_OK && notes.n == 0, "defaults");
    /* cuda 8 GiB: 5% = 409.6 MiB < 512 MiB; 24 GiB: 5% = 1288490188; cpu 10% of 64 GiB */
    CHECK(d[0].reserve == 536870912ull && d[0].budget == (7ull << 30) - 536870912ull, "cuda 8G");
    CHECK(d[1].reserve == 1288490188ull && d[1].budget == (20ull << 30) - 1288490188ull, "cuda 24G");
    CHECK(d[2].reserve == 6871947673ull && d[2].budget == (64ull << 30) - 6871947673ull, "cpu 64G");
    CHECK(d[3].reserve == 0 && d[3].budget == 0, "disk");
    d[2].free = 4ull << 30;
    lyra_plan_budgets(d, 4, NULL, NULL, &notes, &err);
    CHECK(d[2].reserve == (1ull << 30) && d[2].budget == (3ull << 30), "cpu: at least 1 GiB");
    d[0].free = 100;
    lyra_plan_budgets(d, 4, NULL, NULL, &notes, &err);
    CHECK(d[0].budget == 0, "free < reserve: budget 0");
    lyra_plan_device sim = dev_gpu("0", 0);
    sim.free = 1000;
    CHECK(lyra_plan_default_reserve(&sim) == 0, "sim reserve 0");
    /* max_memory (budget, no reserve), --reserve, a GPU that is not here */
    CHECK(memspec("1=6GiB,cpu=16GiB,3=1GiB", "--max-memory", &mm, &err) == LYRA_OK,
          "mm");
    CHECK(memspec("0=1GiB,cpu=2GiB,7=1GiB", "--reserve", &rs, &err) == LYRA_OK, "rs");
    d[0].free = 7ull << 30;
    CHECK(lyra_plan_budgets(d, 4, &mm, &rs, &notes, &err) == LYRA_OK, "budgets");
    CHECK(d[0].reserve == (1ull << 30) && d[0].budget == (6ull << 30) && !d[0].has_max, "0 reserve");
    CHECK(d[1].has_max && d[1].reserve == 0 && d[1].budget == 6442450944ull, "1 max_memory");
    /* issue 11 item 10: a budget beyond the free memory is cut to it, noted */
    CHECK(d[2].has_max && d[2].budget == (4ull << 30), "cpu max_memory beyond free: the free");
    CHECK(notes.n == 4 && !strcmp(notes.line[0], "--max-memory: no GPU 3 on this machine; entry ignored") &&
              !strcmp(notes.line[1], "--reserve: no GPU 7 on this machine; entry ignored") &&
              !strcmp(notes.line[2], "--max-memory: cpu: budget 16.0 GiB is more than the device's "
                                     "free memory 4.0 GiB; planning with 4.0 GiB") &&
              strstr(notes.line[3], "--reserve: cpu ignored; --max-memory sets its budget"),
          "notes: %d %s | %s | %s", notes.n, notes.line[0], notes.line[1], notes.line[2]);
}

/* Same inputs, same bytes; and the JSON format exactly. */
static void test_json(void) {
    synth s;
    synth_make(&s, "llama");
    lyra_plan_opts o = opts_ctx100();
    o.strategy = LYRA_PLAN_SEQUENTIAL;
    lyra_plan_device gpu = dev_gpu("0", 50000), cpu = dev_cpu(100000);
    lyra_plan_memspec rs;
    lyra_error err;
    memspec("cpu=60000B", "--reserve", &rs, &err);
    lyra_plan_device d[] = {cpu, gpu};
    lyra_plan_budgets(d, 2, NULL, &rs, NULL, &err);
    /* GPU 0: embed + 4 layers; cpu 40000: layers 4-6 (9300 + 3 * 10000 =
     * 39300 ... exact: 5300 run-from-disk + 30000 = 35300); disk the rest */
    const char *want =
        "{\"ctx\":100,\"batch\":4,\"devices\":["
        "{\"id\":\"0\",\"kind\":\"gpu\",\"backend\":\"sim\",\"free\":50000,\"reserve\":0,"
        "\"budget\":50000,\"weights\":41000,\"kv\":4000,\"scratch\":600,\"total\":45600},"
        "{\"id\":\"cpu\",\"kind\":\"cpu\",\"backend\":\"cpu\",\"free\":100000,\"reserve\":60000,"
        "\"budget\":40000,\"weights\":30000,\"kv\":4000,\"scratch\":1300,\"total\":35300},"
        "{\"id\":\"disk\",\"kind\":\"disk\",\"backend\":\"mmap\",\"free\":0,\"reserve\":0,"
        "\"budget\":0,\"weights\":11040,\"kv\":0,\"scratch\":0,\"total\":11040}],"
        "\"map\":{\"model.embed_tokens\":\"0\",\"model.layers.0\":\"0\",\"model.layers.1\":\"0\","
        "\"model.layers.2\":\"0\",\"model.layers.3\":\"0\",\"model.layers.4\":\"cpu\","
        "\"model.layers.5\":\"cpu\",\"model.layers.6\":\"cpu\",\"model.layers.7\":\"disk\","
        "\"model.norm\":\"disk\",\"lm_head\":\"disk\"}}\n";
    char *first = NULL;
    for (int run = 0; run < 5; run++) {
        lyra_plan *p = NULL;
        int rc = lyra_plan_make(&s.m, d, 2, &o, &p, &err);
        CHECK(rc == LYRA_OK, "run %d: %s", run, err.msg);
        if (rc) return;
        char *js = lyra_plan_json_string(p);
        if (run == 0) {
            CHECK(!strcmp(js, want), "JSON:\n%s\nwant\n%s", js, want);
            first = js;
            char *tab = lyra_plan_table(p);
            CHECK(tab != NULL, "table");
            const char *t = tab ? tab : "";
            CHECK(strstr(t, "plan: ctx 100, batch 4\n"), "table header");
            CHECK(strstr(t, "  model.embed_tokens model.layers.0-3\n") &&
                      strstr(t, "  model.layers.4-6\n") &&
                      strstr(t, "  model.layers.7 model.norm lm_head\n"), "table modules:\n%s", t);
            CHECK(strstr(t, "0      gpu   sim       48.8 KiB        0 B   48.8 KiB   40.0 KiB"
                            "    3.9 KiB      600 B   44.5 KiB  model.embed_tokens"),
                  "table row:\n%s", t);
            printf("%s", t);
            free(tab);
        } else {
            CHECK(!strcmp(js, first), "run %d differs", run);
            free(js);
        }
        lyra_plan_free(p);
    }
    free(first);
    /* determinism of maps whatever the key order in the file */
    const char *maps[] = {"{\"\": \"cpu\", \"model.layers.3\": 0, \"lm_head\": 0, \"model.layers\": 1}",
                          "{\"model.layers\": 1, \"lm_head\": 0, \"model.layers.3\": 0, \"\": \"cpu\"}"};
    char *js[2];
    lyra_plan_device dd[] = {dev_gpu("0", 1000000), dev_gpu("1", 1000000), dev_cpu(1000000)};
    for (int i = 0; i < 2; i++) {
        json_error_t je;
        json_t *j = json_loads(maps[i], 0, &je);
        lyra_plan_opts om = opts_ctx100();
        om.strategy = LYRA_PLAN_MAP;
        json_map(&om, j);
        lyra_plan *p = NULL;
        CHECK(lyra_plan_make(&s.m, dd, 3, &om, &p, &err) == LYRA_OK, "map %d", i);
        js[i] = p ? lyra_plan_json_string(p) : NULL;
        lyra_plan_free(p);
        json_decref(j);
    }
    CHECK(js[0] && js[1] && !strcmp(js[0], js[1]), "key order does not matter");
    free(js[0]);
    free(js[1]);
}

static void test_inputs(void) {
    synth s;
    synth_make(&s, "llama");
    lyra_plan_opts o = opts_ctx100();
    lyra_plan_device two_cpu[] = {dev_cpu(1), dev_cpu(2)};
    expect_err(&s, two_cpu, 2, &o, "need one cpu device", "two cpus");
    lyra_plan_device nocpu[] = {dev_gpu("0", 1)};
    expect_err(&s, nocpu, 1, &o, "need one cpu device", "no cpu");
    lyra_plan_device dup[] = {dev_gpu("0", 1), dev_gpu("0", 1), dev_cpu(1)};
    expect_err(&s, dup, 3, &o, "device 0 listed twice", "duplicate GPU");
    lyra_plan_device odd[] = {dev_gpu("x", 1), dev_cpu(1)};
    expect_err(&s, odd, 2, &o, "is not a GPU, cpu or disk", "odd id");
    lyra_plan_device ok[] = {dev_cpu(1000000000)};
    o.ctx = 0;
    expect_err(&s, ok, 1, &o, "ctx and batch must be > 0", "ctx 0");
    o.ctx = 100;
    /* GPUs sorted numerically: "10" after "2" */
    lyra_plan_device many[] = {dev_gpu("10", 1), dev_gpu("2", 1), dev_cpu(1000000000)};
    lyra_plan *p = NULL;
    lyra_error err;
    CHECK(lyra_plan_make(&s.m, many, 3, &o, &p, &err) == LYRA_OK && p &&
              !strcmp(p->dev[0].id, "2") && !strcmp(p->dev[1].id, "10") &&
              !strcmp(p->dev[2].id, "cpu") && !strcmp(p->dev[3].id, "disk"), "order");
    lyra_plan_free(p);
}

/* opts.step_down (the runtime's progressive fallback): gpu_layers that do
 * not fit put fewer layers on the GPUs (docs/fallback.md "At plan"). */
static lyra_plan *expect_step(const synth *s, const lyra_plan_device *d, int n, const lyra_plan_opts *o,
                              const char *want, int from, int to, const char *note, const char *what) {
    lyra_plan *p = expect_map(s, d, n, o, want, what);
    if (!p) return NULL;
    CHECK(p->step.from == from && p->step.to == to, "%s: step %d -> %d, want %d -> %d", what,
          (int)p->step.from, (int)p->step.to, from, to);
    CHECK(p->notes.n == 1 && !strcmp(p->notes.line[0], note), "%s: note \"%s\"", what,
          p->notes.n ? p->notes.line[0] : "(none)");
    return p;
}

static void test_step_down(void) {
    synth s;
    synth_make(&s, "llama");
    lyra_plan_opts o = opts_ctx100();
    lyra_plan *p;
    o.step_down = 1;
    /* GPUs of 30000: 0 takes embed + 2 layers (23600), 1 takes 2 (22600):
     * 4 layers fit, balanced as embed + 0-1 | 2-3 (no smaller fraction works) */
    lyra_plan_device ds[] = {dev_gpu("0", 30000), dev_gpu("1", 30000), dev_cpu(1000000000)};
    const char *four = "0:model.embed_tokens model.layers.0-1|1:model.layers.2-3|"
                       "cpu:model.layers.4-7 model.norm lm_head|disk:";
    const char *note = "fallback: at plan: 6 -> 4 GPU layers (model.layers.4 does not fit: budgets "
                       "GPU 0 29.3 KiB, GPU 1 29.3 KiB)";
    o.gpu_layers = 6;
    p = expect_step(&s, ds, 3, &o, four, 6, 4, note, "6 -> 4");
    if (p) { /* layer 4 would add 11000 to GPU 1's 22600: 7400 left */
        CHECK(!strcmp(p->step.device, "1") && !strcmp(p->step.module, "model.layers.4") &&
                  p->step.asked == 11000 && p->step.room == 7400,
              "step: %s %s %llu %llu", p->step.device, p->step.module,
              (unsigned long long)p->step.asked, (unsigned long long)p->step.room);
        char *j = lyra_plan_json_string(p);
        CHECK(j && strstr(j, ",\"fallback\":[{\"phase\":\"load\",\"device\":\"1\",\"asked\":11000,"
                             "\"free\":7400,\"what\":\"gpu\",\"from\":6,\"to\":4}]}\n"),
              "json: %s", j ? j : "(null)");
        /* the same inputs, the same plan */
        lyra_plan *p2 = NULL;
        lyra_error err;
        char *j2 = lyra_plan_make(&s.m, ds, 3, &o, &p2, &err) == LYRA_OK ? lyra_plan_json_string(p2) : NULL;
        CHECK(j && j2 && !strcmp(j, j2), "deterministic");
        free(j);
        free(j2);
        lyra_plan_free(p2);
        lyra_plan_free(p);
    }
    /* "all" is the model's 8 layers */
    o.gpu_layers = LYRA_PLAN_ALL_LAYERS;
    p = expect_step(&s, ds, 3, &o, four, 8, 4,
                    "fallback: at plan: 8 -> 4 GPU layers (model.layers.4 does not fit: budgets "
                    "GPU 0 29.3 KiB, GPU 1 29.3 KiB)", "all -> 4");
    lyra_plan_free(p);
    /* gpu_layers_fallback first when smaller and it fits: embed + 0 | 1 (12600 / 11600) */
    o.gpu_layers = 6;
    o.gpu_layers_fallback = 2;
    p = expect_step(&s, ds, 3, &o, "0:model.embed_tokens model.layers.0|1:model.layers.1|"
                    "cpu:model.layers.2-7 model.norm lm_head|disk:", 6, 2,
                    "fallback: at plan: 6 -> 2 GPU layers (model.layers.4 does not fit: budgets "
                    "GPU 0 29.3 KiB, GPU 1 29.3 KiB)", "gpu_layers_fallback 2");
    lyra_plan_free(p);
    /* one that does not fit: the largest count below it; one not smaller: ignored */
    o.gpu_layers_fallback = 5;
    p = expect_step(&s, ds, 3, &o, four, 6, 4, note, "gpu_layers_fallback 5");
    lyra_plan_free(p);
    o.gpu_layers_fallback = 7;
    p = expect_step(&s, ds, 3, &o, four, 6, 4, note, "gpu_layers_fallback 7");
    lyra_plan_free(p);
    o.gpu_layers_fallback = -1;
    /* a count that fits: no step */
    o.gpu_layers = 4;
    p = expect_map(&s, ds, 3, &o, four, "4 fits");
    if (p) {
        CHECK(p->step.from == -1 && p->notes.n == 0, "4 fits: no step");
        char *j = lyra_plan_json_string(p);
        CHECK(j && !strstr(j, "fallback"), "4 fits: no fallback in the JSON");
        free(j);
        lyra_plan_free(p);
    }
    /* GPUs too small for the embedding and one layer: 0 layers, all on the CPU */
    lyra_plan_device dt[] = {dev_gpu("0", 10000), dev_cpu(1000000000)};
    o.gpu_layers = 3;
    p = expect_step(&s, dt, 2, &o, "0:|cpu:model.embed_tokens model.layers.0-7 model.norm lm_head|disk:",
                    3, 0, "fallback: at plan: 3 -> 0 GPU layers (model.layers.0 does not fit: budgets "
                    "GPU 0 9.8 KiB)", "3 -> 0");
    lyra_plan_free(p);
    /* cuda:1 of 50000 holds embed + 4 layers (45600): with gpu_layers the count
     * steps down; without, everything on GPU 1 stays an error */
    lyra_plan_device d2[] = {dev_gpu("0", 200000), dev_gpu("1", 50000), dev_cpu(1000000000)};
    lyra_error err;
    CHECK(strategy("cuda:1", &o, &err) == LYRA_OK, "cuda:1");
    o.gpu_layers = LYRA_PLAN_ALL_LAYERS;
    p = expect_step(&s, d2, 3, &o, "0:|1:model.embed_tokens model.layers.0-3|"
                    "cpu:model.layers.4-7 model.norm lm_head|disk:", 8, 4,
                    "fallback: at plan: 8 -> 4 GPU layers (model.layers.4 does not fit: budget "
                    "GPU 1 48.8 KiB)", "cuda:1 all -> 4");
    lyra_plan_free(p);
    o.gpu_layers = -1;
    expect_err(&s, d2, 3, &o, "model.layers.4 does not fit on GPU 1", "cuda:1 without gpu_layers");
    /* tensor_split 1,1 over GPU 0 of 30000: embed + ceil(k/2) layers fit for k <= 4 */
    CHECK(strategy("auto", &o, &err) == LYRA_OK && split("1,1", &o, &err) == LYRA_OK, "split 1,1");
    lyra_plan_device d3[] = {dev_gpu("0", 30000), dev_gpu("1", 1000000), dev_cpu(1000000000)};
    expect_err(&s, d3, 3, &o, "GPU 0 would hold 45600 bytes", "split without gpu_layers");
    o.gpu_layers = LYRA_PLAN_ALL_LAYERS;
    p = expect_step(&s, d3, 3, &o, four, 8, 4,
                    "fallback: at plan: 8 -> 4 GPU layers (tensor_split: GPU 0 would hold 44.5 KiB, "
                    "budget 29.3 KiB)", "split all -> 4");
    if (p) {
        CHECK(!strcmp(p->step.device, "0") && !strcmp(p->step.module, "model.layers.2") &&
                  p->step.asked == 45600 && p->step.room == 30000,
              "split step: %s %s %llu %llu", p->step.device, p->step.module,
              (unsigned long long)p->step.asked, (unsigned long long)p->step.room);
        lyra_plan_free(p);
    }
    /* step_down off: today's error */
    o.step_down = 0;
    expect_err(&s, d3, 3, &o, "GPU 0 would hold 45600 bytes", "split, no step-down");
    o.n_split = 0;
    o.gpu_layers = 6;
    expect_err(&s, ds, 3, &o, "model.layers.4 (11000 bytes of weights and KV cache) does not fit on "
               "the GPUs", "no step-down");
}

int main(void) {
    test_strategies();
    test_single_gpu();
    test_gpu_layers();
    test_tensor_split();
    test_step_down();
    test_maps();
    test_accounting();
    test_budgets();
    test_json();
    test_inputs();
    lyra_devspec_free(&g_map);
    return test_done();
}
