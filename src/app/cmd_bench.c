/* cmd_bench.c: `lyra bench`: prompt-processing and generation speed, the
 * machine's memory read bandwidth measured in the same run with the same
 * threads, and the generation speed that bandwidth allows:
 *   tg_bound_tps = bandwidth / bytes read per generated token
 * where the bytes per token (lyra_context_bytes_per_token) are every weight
 * except the token embedding table (one row of it is read; all of it when
 * it is also the classifier), plus the KV cache read, averaged over the
 * positions of the tg run.
 * Each test: one warm-up run, then the median of 5. With -d N every test
 * starts at KV position N instead of 0: the cache is filled once by
 * evaluating a prompt of N random tokens (real keys and values, not faked
 * positions), and each run truncates back to N. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "core/pool.h"
#include "core/rng.h"
#include "lyra.h"
#include "membw.h"

const char cmd_bench_usage[] =
    "usage: lyra bench -m MODEL [-p N[,N...]] [-n N] [-d N] [--threads N]\n"
    "                  [--kv-type f16|f32] [--json] [--profile] [--load-in-8bit |\n"
    "                  --load-in-4bit] [--model-config FILE | --no-config]\n"
    "                  [device flags]\n"
    "\n"
    "Measure prompt processing (pp: N prompt tokens in one evaluation on an\n"
    "empty cache, for each size given to -p) and generation (tg: -n tokens\n"
    "evaluated one at a time from an empty cache): one warm-up run, then the\n"
    "median of 5 runs. Also the memory read bandwidth (best of 5 reads of a\n"
    "1 GiB buffer by the same threads, GB = 1e9 bytes), and the generation bound\n"
    "it implies: tg_bound_tps = bandwidth / bytes read per token (the weights\n"
    "except the embedding table, plus one embedding row, plus the KV cache at\n"
    "the run's mean position); tg_ratio = tg_tps / tg_bound_tps.\n"
    "\n"
    "  -m, --model MODEL   GGUF model file (required unless the config file has\n"
    "                      model_id)\n"
    "  -p, --n-prompt LIST prompt sizes, comma-separated (default 128)\n"
    "  -n, --n-gen N       generated tokens (default 64; the config's\n"
    "                      max_new_tokens and context_length are not used)\n"
    "  -d, --depth N       run pp and tg at KV position N (default 0): the cache\n"
    "                      is filled once by evaluating N random tokens, not\n"
    "                      timed, and each run starts again from position N\n"
    "  -t, --threads N     CPU threads (default: physical cores)\n"
    "  --kv-type f16|f32   KV cache element type (default f16)\n"
    "  --json              one JSON object instead of the table\n"
    "  --profile           time every op of the tg runs and print a table per\n"
    "                      op kind and module (ms per token, GB/s of weights\n"
    "                      read) after the results (on stderr with --json)\n"
    "  --load-in-8bit      store F32/F16/BF16 weights as Q8_0 on load\n"
    "  --load-in-4bit      store F32/F16/BF16 weights as 4-bit on load\n"
    "  --dtype D           Hugging Face folders: auto, float32, float16, bfloat16\n"
    "  --revision REV      Hugging Face cache: branch, tag or commit of org/name\n"
    "  -q, -v              quieter / more verbose stderr\n"
    APP_CONFIG_USAGE
    APP_DEVFLAGS_USAGE
    "\n"
    "JSON fields: model, model_bytes, threads, cpu, kv_type, runs, pp_tokens\n"
    "(array, one entry per -p size), pp_tps (array, same order), tg_tokens,\n"
    "tg_tps, bandwidth_gbs, bytes_per_token, tg_bound_tps, tg_ratio; with -d\n"
    "also depth and fill_s (seconds the fill took).\n";

#define BENCH_RUNS 5
#define BENCH_MAX_PP 16

/* Everything bench's flags and config set. */
typedef struct bench_opts {
    char *model;                  /* the model file (-m or model_id, resolved; malloc'd) */
    lyra_config *cfg;             /* the effective configuration (owns mp's strings) */
    int32_t pp[BENCH_MAX_PP];     /* -p sizes */
    int n_pp;                     /* their count */
    int32_t tg;                   /* -n */
    int32_t depth;                /* -d: KV position the tests start at */
    lyra_context_params cp;       /* threads, kv type */
    lyra_model_params mp;         /* device flags */
    int json;                     /* --json */
    int profile;                  /* --profile */
} bench_opts;

/* -p LIST into the bench_opts at dst. */
static int parse_pp_list(app_args *a, const char *arg, void *dst, lyra_error *err) {
    (void)arg;
    bench_opts *o = dst;
    const char *v;
    int rc = args_str(a, &v, err);
    if (rc) return rc;
    o->n_pp = 0;
    const char *s = v;
    for (;;) {
        const char *c = strchr(s, ',');
        size_t len = c ? (size_t)(c - s) : strlen(s);
        char num[32];
        int64_t x;
        if (len == 0 || len >= sizeof num)
            return lyra_err(err, LYRA_ERR_INPUT, a->flag, "expected sizes like 128,512, got '%s'", v);
        memcpy(num, s, len);
        num[len] = '\0';
        if (parse_i64(num, &x) || x < 1 || x > (1 << 20))
            return lyra_err(err, LYRA_ERR_INPUT, a->flag, "expected sizes 1..1048576 like 128,512, got '%s'", v);
        if (o->n_pp == BENCH_MAX_PP)
            return lyra_err(err, LYRA_ERR_INPUT, a->flag, "at most %d sizes", BENCH_MAX_PP);
        o->pp[o->n_pp++] = (int32_t)x;
        if (!c) break;
        s = c + 1;
    }
    return LYRA_OK;
}

static int parse_opts(int argc, char **argv, bench_opts *o, lyra_error *err) {
    memset(o, 0, sizeof *o);
    o->pp[0] = 128;
    o->n_pp = 1;
    o->tg = 64;
    o->cp = lyra_context_default_params();
    o->mp = lyra_model_default_params();
    const app_opt opts[] = {
        APP_FN("-p", "--n-prompt", parse_pp_list, o),
        APP_I32("-n", "--n-gen", &o->tg, 1, 1 << 20),
        APP_I32("-d", "--depth", &o->depth, 0, 1 << 20),
        APP_SWITCH("--json", &o->json),
        APP_SWITCH("--profile", &o->profile),
        APP_OPT_END_,
    };
    int rc = args_parse(argc, argv, NULL, opts,
                        APP_CFG_MODEL | APP_CFG_DEVICE | APP_CFG_KV | APP_CFG_THREADS, &o->mp, &o->cfg, err);
    if (!rc) rc = app_config_model(o->cfg, &o->model, err);
    if (!rc) rc = app_config_apply(o->cfg, &o->mp, &o->cp, NULL, NULL, err);
    o->mp.n_ctx = 0; /* bench sizes its own contexts and batches */
    o->mp.n_batch = 512;
    return rc;
}

/* "model name" from /proc/cpuinfo (or "unknown"). */
static void cpu_name(char *out, size_t cap) {
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10)) continue;
        char *c = strchr(line, ':');
        if (!c) continue;
        c++;
        while (*c == ' ' || *c == '\t') c++;
        size_t n = strlen(c);
        while (n && (c[n - 1] == '\n' || c[n - 1] == ' ')) c[--n] = '\0';
        snprintf(out, cap, "%s", c);
        break;
    }
    fclose(f);
}

static int dbl_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Back to KV position depth (the fill's tokens are toks[0..depth-1]): a
 * sliding-window model may have emptied its cache, then fill it again. */
static int rewind_to(lyra_context *ctx, const int32_t *toks, int32_t depth, lyra_error *err) {
    lyra_context_truncate(ctx, depth);
    int32_t pos = lyra_context_pos(ctx);
    if (pos >= depth) return LYRA_OK;
    return lyra_eval(ctx, toks + pos, depth - pos, 0, err);
}

/* Seconds of one pp run of n tokens from KV position depth. */
static int run_pp(lyra_context *ctx, const int32_t *toks, int32_t depth, int32_t n, double *sec,
                  lyra_error *err) {
    int rc = rewind_to(ctx, toks, depth, err);
    if (rc) return rc;
    toks += depth;
    double t0 = app_now();
    rc = lyra_eval(ctx, toks, n, 0, err);
    *sec = app_now() - t0;
    return rc;
}

/* Seconds of one tg run: n tokens one at a time from KV position depth. */
static int run_tg(lyra_context *ctx, const int32_t *toks, int32_t depth, int32_t n, double *sec,
                  lyra_error *err) {
    int rc = rewind_to(ctx, toks, depth, err);
    if (rc) return rc;
    toks += depth;
    double t0 = app_now();
    for (int32_t i = 0; i < n; i++) {
        int rc = lyra_eval(ctx, toks + i, 1, 0, err);
        if (rc) return rc;
        if (app_interrupted) return lyra_err(err, LYRA_ERR_INTERRUPTED, "bench", "interrupted");
    }
    *sec = app_now() - t0;
    return LYRA_OK;
}

/* Warm-up + BENCH_RUNS runs; *median seconds. */
static int measure(lyra_context *ctx, const int32_t *toks, int32_t depth, int32_t n, int tg,
                   double *median, lyra_error *err) {
    double t[BENCH_RUNS], warm;
    int rc = tg ? run_tg(ctx, toks, depth, n, &warm, err) : run_pp(ctx, toks, depth, n, &warm, err);
    for (int r = 0; !rc && r < BENCH_RUNS; r++) {
        if (app_interrupted) return lyra_err(err, LYRA_ERR_INTERRUPTED, "bench", "interrupted");
        rc = tg ? run_tg(ctx, toks, depth, n, &t[r], err) : run_pp(ctx, toks, depth, n, &t[r], err);
        lyra_log(LYRA_LOG_DEBUG, "bench: %s%d run %d: %.4f s", tg ? "tg" : "pp", (int)n, r + 1, t[r]);
    }
    if (rc) return rc;
    qsort(t, BENCH_RUNS, sizeof t[0], dbl_cmp);
    *median = t[BENCH_RUNS / 2];
    return LYRA_OK;
}

/* Results. */
typedef struct bench_res {
    double pp_tps[BENCH_MAX_PP]; /* per -p size */
    double tg_tps;               /* generation */
    double gbs;                  /* read bandwidth, GB/s */
    double bpt;                  /* bytes per generated token */
    double bound;                /* gbs * 1e9 / bpt */
    double fill_s;               /* -d: seconds the fill took */
    int threads;                 /* threads used */
    char cpu[256];               /* model name */
    uint64_t model_bytes;        /* weight bytes */
} bench_res;

static int print_json(const bench_opts *o, const bench_res *r, lyra_error *err) {
    json_t *j = json_object(), *ppt = json_array(), *pps = json_array();
    if (!j || !ppt || !pps) {
        json_decref(j); json_decref(ppt); json_decref(pps);
        return lyra_err(err, LYRA_ERR_OOM, "bench", "out of memory");
    }
    for (int i = 0; i < o->n_pp; i++) {
        json_array_append_new(ppt, json_integer(o->pp[i]));
        json_array_append_new(pps, json_real(r->pp_tps[i]));
    }
    json_object_set_new(j, "model", json_string(o->model));
    json_object_set_new(j, "model_bytes", json_integer((json_int_t)r->model_bytes));
    json_object_set_new(j, "threads", json_integer(r->threads));
    json_object_set_new(j, "cpu", json_string(r->cpu));
    json_object_set_new(j, "kv_type", json_string(o->mp.kv_type == LYRA_KV_F32 ? "f32" : "f16"));
    json_object_set_new(j, "runs", json_integer(BENCH_RUNS));
    json_object_set_new(j, "pp_tokens", ppt);
    json_object_set_new(j, "pp_tps", pps);
    json_object_set_new(j, "tg_tokens", json_integer(o->tg));
    json_object_set_new(j, "tg_tps", json_real(r->tg_tps));
    json_object_set_new(j, "bandwidth_gbs", json_real(r->gbs));
    json_object_set_new(j, "bytes_per_token", json_real(r->bpt));
    json_object_set_new(j, "tg_bound_tps", json_real(r->bound));
    json_object_set_new(j, "tg_ratio", json_real(r->bound > 0 ? r->tg_tps / r->bound : 0.0));
    if (o->depth) {
        json_object_set_new(j, "depth", json_integer(o->depth));
        json_object_set_new(j, "fill_s", json_real(r->fill_s));
    }
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(j);
    if (!s) return lyra_err(err, LYRA_ERR_OOM, "bench", "out of memory");
    puts(s);
    free(s);
    return LYRA_OK;
}

static void print_table(const bench_opts *o, const bench_res *r) {
    printf("model: %s (%.1f MB of weights)\n", o->model, (double)r->model_bytes / 1e6);
    printf("cpu: %s, %d threads, kv %s\n", r->cpu, r->threads, o->mp.kv_type == LYRA_KV_F32 ? "f32" : "f16");
    if (o->depth)
        printf("depth: every test from KV position %d (filled once by a %d-token prompt, %.1f s)\n",
               (int)o->depth, (int)o->depth, r->fill_s);
    printf("%-8s %8s %12s\n", "test", "tokens", "tok/s");
    for (int i = 0; i < o->n_pp; i++) {
        char name[32];
        snprintf(name, sizeof name, "pp%d", (int)o->pp[i]);
        printf("%-8s %8d %12.2f\n", name, (int)o->pp[i], r->pp_tps[i]);
    }
    char name[32];
    snprintf(name, sizeof name, "tg%d", (int)o->tg);
    printf("%-8s %8d %12.2f\n", name, (int)o->tg, r->tg_tps);
    printf("memory read bandwidth: %.2f GB/s (best of 5 reads of 1 GiB)\n", r->gbs);
    printf("bytes per token: %.2f MB -> tg bound %.2f tok/s, tg/bound %.3f\n", r->bpt / 1e6, r->bound,
           r->bound > 0 ? r->tg_tps / r->bound : 0.0);
    printf("(median of %d runs after one warm-up)\n", BENCH_RUNS);
}

int cmd_bench(int argc, char **argv, lyra_error *err) {
    bench_opts o;
    int rc = parse_opts(argc, argv, &o, err);
    if (rc) {
        free(o.model);
        lyra_config_free(o.cfg);
        return rc;
    }
    bench_res r;
    memset(&r, 0, sizeof r);
    r.threads = o.mp.n_threads > 0 ? o.mp.n_threads : lyra_default_threads(NULL);
    o.cp.n_threads = r.threads;
    cpu_name(r.cpu, sizeof r.cpu);
    int32_t max_pp = 0;
    for (int i = 0; i < o.n_pp; i++)
        if (o.pp[i] > max_pp) max_pp = o.pp[i];
    o.cp.n_ctx = o.depth + (max_pp > o.tg ? max_pp : o.tg);
    o.cp.n_batch = max_pp > o.depth || max_pp >= 512 ? max_pp : o.depth < 512 ? o.depth : 512;

    lyra_model *m = NULL;
    lyra_context *ctx = NULL;
    lyra_pool *pool = NULL;
    int32_t *toks = NULL;
    rc = lyra_model_open(o.model, &o.mp, &m, err);
    if (!rc) rc = lyra_context_new(m, &o.cp, &ctx, err);
    if (!rc && app_follow(ctx, &rc, err)) { /* mpirun: a rank other than 0 */
        lyra_context_free(ctx);
        lyra_model_free(m);
        return rc;
    }
    if (!rc) {
        r.model_bytes = lyra_model_n_bytes(m);
        app_log_map(ctx);
        int32_t n = o.cp.n_ctx;
        toks = malloc(sizeof *toks * (size_t)n);
        if (!toks) rc = lyra_err(err, LYRA_ERR_OOM, "bench", "out of memory");
        lyra_rng rng;
        lyra_rng_seed(&rng, 1234);
        for (int32_t i = 0; toks && i < n; i++)
            toks[i] = (int32_t)lyra_rng_below(&rng, (uint64_t)lyra_model_n_vocab(m));
    }
    if (!rc && o.depth) {
        lyra_log(LYRA_LOG_INFO, "bench: filling the KV cache to position %d ...", (int)o.depth);
        double t0 = app_now();
        rc = lyra_eval(ctx, toks, o.depth, 0, err);
        r.fill_s = app_now() - t0;
    }
    for (int i = 0; !rc && i < o.n_pp; i++) {
        double sec = 0;
        lyra_log(LYRA_LOG_INFO, "bench: pp%d ...", (int)o.pp[i]);
        rc = measure(ctx, toks, o.depth, o.pp[i], 0, &sec, err);
        if (!rc) r.pp_tps[i] = (double)o.pp[i] / sec;
    }
    if (!rc) {
        double sec = 0;
        lyra_log(LYRA_LOG_INFO, "bench: tg%d ...", (int)o.tg);
        if (o.profile) rc = lyra_context_profile(ctx, 1, err);
        if (!rc) rc = measure(ctx, toks, o.depth, o.tg, 1, &sec, err);
        if (!rc) r.tg_tps = (double)o.tg / sec;
    }
    char *prof = NULL; /* --profile: the table (warm-up and timed runs: (BENCH_RUNS + 1) * tg tokens) */
    if (!rc && o.profile) {
        int32_t nt = (BENCH_RUNS + 1) * o.tg;
        size_t n = lyra_context_profile_report(ctx, nt, NULL, 0) + 1;
        if ((prof = malloc(n))) lyra_context_profile_report(ctx, nt, prof, n);
        lyra_context_profile(ctx, 0, err);
    }
    /* tg evaluates positions depth..depth+n-1: bytes per token averaged over them */
    for (int32_t p = 0; !rc && p < o.tg; p++)
        r.bpt += (double)lyra_context_bytes_per_token(ctx, o.depth + p) / o.tg;
    lyra_context_free(ctx);
    ctx = NULL;
    lyra_model_free(m);
    m = NULL;
    if (!rc) {
        lyra_log(LYRA_LOG_INFO, "bench: memory read bandwidth ...");
        pool = lyra_pool_new(r.threads);
        if (!pool) rc = lyra_err(err, LYRA_ERR_OOM, "bench", "cannot start %d threads", r.threads);
    }
    if (!rc) rc = app_membw(pool, (size_t)1 << 30, 5, &r.gbs, err);
    if (!rc) {
        r.bound = r.bpt > 0 ? r.gbs * 1e9 / r.bpt : 0.0;
        if (o.json) rc = print_json(&o, &r, err);
        else print_table(&o, &r);
        if (prof) fprintf(o.json ? stderr : stdout, "\nop profile (tg runs):\n%s", prof);
    }
    free(prof);
    lyra_pool_free(pool);
    free(toks);
    free(o.model);
    lyra_config_free(o.cfg);
    return rc;
}
