/* args.c: flag parsing, verbosity, file reading and timing shared by the
 * lyra command's subcommands (see args.h). */
#include "args.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dist/dist.h"
#include "runtime/runtime.h"

volatile sig_atomic_t app_interrupted = 0;

void args_init(app_args *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->argc = argc;
    a->argv = argv;
    a->i = 0;
    a->cmd = argc > 0 ? argv[0] : "lyra";
}

int args_next(app_args *a, const char **arg, int *is_flag) {
    if (++a->i >= a->argc) return 0;
    if (!a->only_pos && !strcmp(a->argv[a->i], "--")) {
        a->only_pos = 1;
        if (++a->i >= a->argc) return 0;
    }
    const char *s = a->argv[a->i];
    *arg = s;
    a->eq = NULL;
    a->flag[0] = '\0';
    *is_flag = !a->only_pos && s[0] == '-' && s[1] != '\0';
    if (!*is_flag) return 1;
    size_t n = strlen(s);
    if (s[1] == '-') {
        const char *e = strchr(s, '=');
        if (e) {
            n = (size_t)(e - s);
            a->eq = e + 1;
        }
    }
    if (n >= sizeof a->flag) n = sizeof a->flag - 1;
    memcpy(a->flag, s, n);
    a->flag[n] = '\0';
    return 1;
}

int args_value(app_args *a, const char **val, lyra_error *err) {
    if (a->eq) {
        *val = a->eq;
        return LYRA_OK;
    }
    if (a->i + 1 >= a->argc)
        return lyra_err(err, LYRA_ERR_INPUT, a->flag, "missing value");
    *val = a->argv[++a->i];
    return LYRA_OK;
}

int args_unknown(const app_args *a, const char *arg, lyra_error *err) {
    if (arg[0] == '-' && arg[1] != '\0')
        return lyra_err(err, LYRA_ERR_INPUT, a->flag, "unknown flag for '%s' (see lyra %s --help)",
                        a->cmd, a->cmd);
    return lyra_err(err, LYRA_ERR_INPUT, arg, "unexpected argument for '%s' (see lyra %s --help)",
                    a->cmd, a->cmd);
}

int args_common(app_args *a) {
    if (a->eq) return 0;
    if (!strcmp(a->flag, "-q") || !strcmp(a->flag, "--quiet")) {
        app_log_level(LYRA_LOG_ERROR);
        return 1;
    }
    if (!strcmp(a->flag, "-v") || !strcmp(a->flag, "--verbose")) {
        app_log_level(LYRA_LOG_DEBUG);
        return 1;
    }
    return 0;
}

int app_check_threads(int64_t n, const char *where, lyra_error *err) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1) cpus = 1;
    if (n > 4 * (int64_t)cpus)
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "%lld threads is more than 4x this machine's %ld CPU cores (at most %ld)",
                        (long long)n, cpus, 4 * cpus);
    if (n > cpus)
        lyra_log(LYRA_LOG_WARN, "%s: %lld threads on %ld CPU cores: oversubscribed, expect it slower",
                 where, (long long)n, cpus);
    return LYRA_OK;
}

int parse_i64(const char *s, int64_t *out) {
    if (!s || !*s) return -1;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end != '\0' || end == s) return -1;
    *out = (int64_t)v;
    return 0;
}

int parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s || s[0] == '-' || s[0] == '+') return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end != '\0' || end == s) return -1;
    *out = (uint64_t)v;
    return 0;
}

int parse_f64(const char *s, double *out) {
    if (!s || !*s) return -1;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end != '\0' || end == s || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int args_str(app_args *a, const char **out, lyra_error *err) {
    return args_value(a, out, err);
}

int args_int(app_args *a, int64_t min, int64_t max, int64_t *out, lyra_error *err) {
    const char *v = NULL;
    int rc = args_value(a, &v, err);
    if (rc) return rc;
    int64_t x = 0;
    if (parse_i64(v, &x))
        return lyra_err(err, LYRA_ERR_INPUT, a->flag, "expected an integer, got '%s'", v);
    if (x < min || x > max) {
        if (max == INT64_MAX || max == INT32_MAX)
            return lyra_err(err, LYRA_ERR_INPUT, a->flag, "must be >= %lld, got %lld",
                            (long long)min, (long long)x);
        return lyra_err(err, LYRA_ERR_INPUT, a->flag, "must be between %lld and %lld, got %lld",
                        (long long)min, (long long)max, (long long)x);
    }
    *out = x;
    return LYRA_OK;
}

int args_i32(app_args *a, int32_t min, int32_t max, int32_t *out, lyra_error *err) {
    int64_t x = 0;
    int rc = args_int(a, min, max, &x, err);
    if (!rc) *out = (int32_t)x;
    return rc;
}

int args_u64(app_args *a, uint64_t *out, lyra_error *err) {
    const char *v = NULL;
    int rc = args_value(a, &v, err);
    if (rc) return rc;
    if (parse_u64(v, out))
        return lyra_err(err, LYRA_ERR_INPUT, a->flag,
                        "expected an unsigned 64-bit integer, got '%s'", v);
    return LYRA_OK;
}

int args_float(app_args *a, double min, double max, float *out, lyra_error *err) {
    const char *v = NULL;
    int rc = args_value(a, &v, err);
    if (rc) return rc;
    double x = 0;
    if (parse_f64(v, &x))
        return lyra_err(err, LYRA_ERR_INPUT, a->flag, "expected a number, got '%s'", v);
    if (x < min || x > max) {
        if (isinf(max))
            return lyra_err(err, LYRA_ERR_INPUT, a->flag, "must be >= %g, got %s", min, v);
        return lyra_err(err, LYRA_ERR_INPUT, a->flag, "must be between %g and %g, got %s", min,
                        max, v);
    }
    *out = (float)x;
    return LYRA_OK;
}

/* The entry of opts[] for the current flag (or, positional, the
 * APP_POSITIONAL one), or NULL. */
static const app_opt *find_opt(const app_args *a, const app_opt *opts, int is_flag) {
    for (const app_opt *o = opts; o && o->kind != APP_OPT_END; o++) {
        if (!is_flag) {
            if (!o->name) return o;
            continue;
        }
        if (!o->name || (strcmp(a->flag, o->name) && (!o->alias || strcmp(a->flag, o->alias))))
            continue;
        if (o->kind == APP_OPT_SWITCH && a->eq) continue; /* "--switch=V": not this flag */
        return o;
    }
    return NULL;
}

/* The value of the current flag into o->dst. */
static int take_opt(app_args *a, const char *arg, const app_opt *o, lyra_error *err) {
    switch (o->kind) {
    case APP_OPT_SWITCH: *(int *)o->dst = 1; return LYRA_OK;
    case APP_OPT_STR: return args_str(a, (const char **)o->dst, err);
    case APP_OPT_I32: return args_i32(a, o->min, o->max, (int32_t *)o->dst, err);
    case APP_OPT_FN: return o->fn(a, arg, o->dst, err);
    case APP_OPT_END: break;
    }
    return args_unknown(a, arg, err);
}

/* The distance of two flags without their leading dashes. */
static int flag_distance(const char *a, const char *b) {
    while (*a == '-') a++;
    while (*b == '-') b++;
    return lyra_config_name_distance(a, b);
}

/* Keep cand when it is close enough to typed and the closest so far. */
static void consider(const char *typed, const char *cand, int *best, const char **out) {
    if (!cand || strlen(cand) < 3) return; /* -m, -n: too short to guess */
    size_t len = strlen(typed);
    while (len && typed[0] == '-') typed++, len--;
    int limit = len <= 3 ? 1 : len <= 6 ? 2 : 3;
    int d = flag_distance(typed, cand);
    if (d <= limit && d < *best) *best = d, *out = cand;
}

/* An unknown flag: args_unknown's error with the closest flag the command
 * takes, when one is close. */
static int unknown_flag(const app_args *a, const char *arg, const app_opt *opts, unsigned groups,
                        int has_dev, lyra_error *err) {
    const char *flag = a->flag, *sugg = NULL;
    int best = 1 << 20;
    size_t len = strlen(flag);
    while (len && *flag == '-') flag++, len--;
    if (len < 3) return args_unknown(a, arg, err);
    static const char *const common[] = {"--quiet", "--verbose", "--help", NULL};
    for (int i = 0; common[i]; i++) consider(a->flag, common[i], &best, &sugg);
    for (const app_opt *o = opts; o && o->kind != APP_OPT_END; o++) {
        consider(a->flag, o->name, &best, &sugg);
        consider(a->flag, o->alias, &best, &sugg);
    }
    if (groups) {
        consider(a->flag, "--model-config", &best, &sugg);
        consider(a->flag, "--no-config", &best, &sugg);
        const char *f;
        for (size_t i = 0; (f = app_cfgflag_at(groups, i)); i++) consider(a->flag, f, &best, &sugg);
    }
    for (int i = 0; has_dev && app_devflag_names[i]; i++)
        consider(a->flag, app_devflag_names[i], &best, &sugg);
    if (!sugg) return args_unknown(a, arg, err);
    return lyra_err(err, LYRA_ERR_INPUT, a->flag,
                    "unknown flag for '%s' (did you mean %s? see lyra %s --help)", a->cmd, sugg,
                    a->cmd);
}

int args_parse(int argc, char **argv, const char *cmd, const app_opt *opts, unsigned groups,
               lyra_model_params *mp, lyra_config **cfg, lyra_error *err) {
    app_cfgflags cf;
    app_cfgflags_init(&cf, groups);
    app_args a;
    args_init(&a, argc, argv);
    if (cmd) a.cmd = cmd;
    const char *arg;
    const void *seen[64]; /* single-valued flags taken: their opts[] entry or name */
    char seen_as[64][64];  /* as typed */
    int is_flag, rc = 0, n_seen = 0;
    while (!rc && args_next(&a, &arg, &is_flag)) {
        const app_opt *o = NULL;
        const void *id = NULL;
        int at = a.i;
        if (is_flag && args_common(&a)) {
        } else if ((o = find_opt(&a, opts, is_flag))) {
            rc = take_opt(&a, arg, o, err);
            if (is_flag && o->kind != APP_OPT_SWITCH) id = o;
        } else if (is_flag && groups && app_cfgflag(&a, &cf, &rc, err)) {
        } else if (is_flag && mp && app_devflag(&a, mp, &rc, err)) {
            for (int i = 0; app_devflag_names[i]; i++)
                if ((a.eq || a.i > at) && !strcmp(a.flag, app_devflag_names[i])) id = app_devflag_names[i];
        } else if (is_flag) {
            rc = unknown_flag(&a, arg, opts, groups, mp != NULL, err);
        } else {
            rc = args_unknown(&a, arg, err);
        }
        for (int i = 0; !rc && id && i < n_seen; i++)
            if (seen[i] == id)
                rc = lyra_err(err, LYRA_ERR_INPUT, a.flag, "given more than once (also as %s)",
                              seen_as[i]);
        if (!rc && id && n_seen < 64) {
            seen[n_seen] = id;
            snprintf(seen_as[n_seen++], sizeof seen_as[0], "%s", a.flag);
        }
    }
    if (!rc && groups) rc = app_cfgflags_load(&cf, cfg, err);
    app_cfgflags_free(&cf);
    return rc;
}

/* ---------------------------------------------------------------- logging */

static lyra_log_level g_base = LYRA_LOG_INFO; /* from LYRA_LOG */

void app_log_level(lyra_log_level level) { lyra_log_set(NULL, level, NULL); }

int app_log_init(lyra_error *err) {
    const char *e = getenv("LYRA_LOG");
    g_base = LYRA_LOG_INFO;
    if (e && *e) {
        static const char *names[] = {"error", "warn", "info", "debug"};
        int found = -1;
        for (int i = 0; i < 4; i++)
            if (!strcmp(e, names[i])) found = i;
        if (found < 0)
            return lyra_err(err, LYRA_ERR_INPUT, "LYRA_LOG",
                            "expected error, warn, info or debug, got '%s'", e);
        g_base = (lyra_log_level)found;
    }
    app_log_level(g_base);
    return LYRA_OK;
}

/* ------------------------------------------------------------------ files */

int app_read_file(const char *path, char **buf, size_t *len, lyra_error *err) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    const char *where = strcmp(path, "-") ? path : "<stdin>";
    if (!f) return lyra_err(err, LYRA_ERR_INPUT, where, "cannot open: %s", strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    if (!b) {
        if (f != stdin) fclose(f);
        return lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                if (f != stdin) fclose(f);
                return lyra_err(err, LYRA_ERR_OOM, where, "out of memory reading the file");
            }
            b = nb;
            cap *= 2;
        }
        size_t k = fread(b + n, 1, cap - 1 - n, f);
        n += k;
        if (k == 0) break;
    }
    int bad = ferror(f);
    int e = errno;
    if (f != stdin) fclose(f);
    if (bad) {
        free(b);
        if (app_interrupted) return lyra_err(err, LYRA_ERR_INTERRUPTED, where, "interrupted");
        return lyra_err(err, e == EISDIR ? LYRA_ERR_INPUT : LYRA_ERR_RUNTIME, where,
                        "read error: %s", strerror(e));
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return LYRA_OK;
}

void app_log_map(const lyra_context *ctx) {
    size_t need = lyra_context_map_lines(ctx, NULL, 0);
    char *map = malloc(need + 1);
    if (!map) return;
    lyra_context_map_lines(ctx, map, need + 1);
    map[need] = '\0';
    while (need && map[need - 1] == '\n') map[--need] = '\0';
    if (need) lyra_log(LYRA_LOG_INFO, "%s", map);
    free(map);
}

int app_follow(lyra_context *ctx, int *rc, lyra_error *err) {
    if (lyra_dist_size() <= 1 || lyra_dist_rank() == 0) return 0;
    signal(SIGINT, SIG_IGN); /* a terminal's Ctrl-C reaches every rank: rank 0 decides */
    *rc = lyra_runtime_follow(ctx, err);
    return 1;
}

double app_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int args_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) return 0;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    }
    return 0;
}
