/* args.h: the lyra command's shared pieces: flag-value parsing with one-line
 * errors naming the flag (exit code 2), verbosity (-q/-v/LYRA_LOG), the
 * SIGINT flag, file reading, and the commands' entry points.
 *
 * A command is `int cmd_NAME(int argc, char **argv, lyra_error *err)`: argv[0]
 * is the command name; it returns an exit code and, when non-zero, fills err
 * (main prints "lyra: error: <msg>"). Results go to stdout, everything else
 * to stderr through lyra_log. */
#ifndef LYRA_APP_ARGS_H
#define LYRA_APP_ARGS_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/err.h"
#include "core/log.h"

/* Set by the SIGINT handler; commands poll it and stop with exit code 130. */
extern volatile sig_atomic_t app_interrupted;

/* Flag walking: args_next() returns the current argv entry's flag name, and
 * with the value of a flag that takes one (both "--flag V" and "--flag=V"). */
typedef struct app_args {
    int argc;          /* from main, minus the command prefix */
    char **argv;       /* argv[0] is the command name */
    int i;             /* index of the entry being looked at */
    const char *cmd;   /* command name, for messages */
    char flag[64];     /* the current flag without any "=value" part */
    const char *eq;    /* the value after '=' in "--flag=V", or NULL */
    int only_pos;      /* after "--": every entry is positional */
} app_args;

void args_init(app_args *a, int argc, char **argv);
/* Advance to the next entry; 0 at the end. *is_flag: it starts with '-' (and
 * is not "-" alone) and no "--" came before it ("--" itself is skipped). */
int args_next(app_args *a, const char **arg, int *is_flag);
/* The value of the current flag (from "=V" or the next entry). */
int args_value(app_args *a, const char **val, lyra_error *err);
/* An unknown flag / unexpected positional: exit 2 naming it. */
int args_unknown(const app_args *a, const char *arg, lyra_error *err);
/* -q/--quiet, -v/--verbose: handled (returns 1) for every command. */
int args_common(app_args *a);

/* Typed values of the current flag; range-checked; LYRA_ERR_INPUT naming the
 * flag on failure. */
int args_int(app_args *a, int64_t min, int64_t max, int64_t *out, lyra_error *err);
int args_i32(app_args *a, int32_t min, int32_t max, int32_t *out, lyra_error *err);
int args_u64(app_args *a, uint64_t *out, lyra_error *err);
int args_float(app_args *a, double min, double max, float *out, lyra_error *err);
int args_str(app_args *a, const char **out, lyra_error *err);

/* A thread count (0 = the default) checked against this machine's CPUs:
 * a warning above their number, LYRA_ERR_INPUT naming where above 4x. */
int app_check_threads(int64_t n, const char *where, lyra_error *err);

/* Parse a whole string as an integer / float; 0 ok, -1 malformed. */
int parse_i64(const char *s, int64_t *out);
int parse_u64(const char *s, uint64_t *out);
int parse_f64(const char *s, double *out);

/* Verbosity: LYRA_LOG (error|warn|info|debug) sets the base level (default
 * info); -q sets error, -v debug. Applies it with lyra_log_set. */
int app_log_init(lyra_error *err);
void app_log_level(lyra_log_level level);

/* Read a whole file ("-" = stdin) as bytes; *buf malloc'd (NUL-terminated). */
int app_read_file(const char *path, char **buf, size_t *len, lyra_error *err);

/* Log the context's map line(s) (lyra_context_map_lines) at INFO. */
void app_log_map(const lyra_context *ctx);

/* Under mpirun (docs/distributed.md), on a rank other than 0: evaluate
 * what rank 0 asks on ctx until it quits (*rc: the status) and return 1, so
 * that the command only cleans up; else 0 (rank 0, or one rank). */
int app_follow(lyra_context *ctx, int *rc, lyra_error *err);

/* The device flags (devflags.c): --no-mmap, --mlock, --kv-chunk, --min-ctx
 * and the fallback's flags onto mp. Returns 1 when the current flag is one
 * of them (*rc: its status, errors naming the flag), else 0. --device-map,
 * --max-memory, --reserve, --gpu-layers and --tensor-split are config keys
 * (app_cfgflag); check_gpus fails naming flag when a --max-memory /
 * --reserve object (the config's value) names a GPU this machine does not
 * have. APP_DEVFLAGS_USAGE is their help. The geometry (--ctx, --batch,
 * --kv-type, --threads) is the model's (lyra_model_params); contexts
 * inherit it. */
int app_devflag(app_args *a, lyra_model_params *mp, int *rc, lyra_error *err);
extern const char *const app_devflag_names[]; /* NULL-terminated, for "did you mean" */
int app_devflags_check_gpus(const char *flag, const json_t *sizes, lyra_error *err);
#define APP_DEVFLAGS_USAGE \
    "devices (docs/sharding.md; LYRA_SIM_GPUS=6GiB,4GiB simulates GPUs):\n" \
    "  --device-map MAP       auto (default) | balanced | balanced_low_0 |\n" \
    "                         sequential | cpu | cuda | cuda:N | N, or FILE.json\n" \
    "                         mapping module names/prefixes to 0, \"cpu\", \"disk\"\n" \
    "  --max-memory LIST      budgets per device, e.g. 0=6GiB,cpu=16GiB\n" \
    "  --reserve LIST         memory left free on devices without a budget\n" \
    "                         (default: cpu max(1 GiB, 10%), simulated GPUs 0)\n" \
    "  --gpu-layers N         embedding + first N layers on the GPUs (or all)\n" \
    "  --tensor-split P,Q     proportions of the GPU layers per GPU, e.g. 3,1\n" \
    "  --no-mmap              copy CPU weights into memory instead of mapping\n" \
    "  --mlock                lock the CPU's weights in RAM\n" \
    "fallback on out of memory (docs/fallback.md):\n" \
    "  --fallback, --no-fallback\n" \
    "                         step down (GPU layers to the CPU, CPU layers to\n" \
    "                         disk) instead of failing with exit 3 (default: on)\n" \
    "  --fallback-policy P    layers (default) | context (halve the context\n" \
    "                         first, down to --min-ctx) | none (= --no-fallback)\n" \
    "  --gpu-layers-fallback N  GPU layers to try first after a failure\n" \
    "  --fallback-across-ranks  under mpirun: a rank that cannot hold its share\n" \
    "                         (at load, or its KV cache as it grows) hands its\n" \
    "                         last layers to the next rank\n" \
    "  --min-ctx N            the context policy's floor (default 2048)\n" \
    "  --kv-chunk N           the KV cache grows in chunks of N positions\n" \
    "                         (default 256)\n" \
    "  LYRA_FAIL_ALLOC=ID:N[+],...  fail allocation call N (and later: +) on a\n" \
    "                         device; LYRA_ALLOC_STATS=1 prints the counts\n"

/* Config files (cfgflags.c, docs/config.md): the flag of every config key
 * plus --model-config FILE and --no-config, for the groups a command takes.
 * A command's parse loop calls app_cfgflag (1: the current flag was one of
 * them, *rc its status: each value is checked at once, errors naming the
 * flag as typed; 0: not a config flag of these groups); after the loop
 * app_cfgflags_load discovers and loads the config file and applies the
 * flags over it (flags win wherever they stand). */
#define APP_CFG_MODEL 0x01u   /* -m, --model */
#define APP_CFG_DEVICE 0x02u  /* device map, budgets, gpu/fallback, load_in_8bit/4bit */
#define APP_CFG_CONTEXT 0x04u /* -c/--ctx, -b/--batch */
#define APP_CFG_KV 0x08u      /* --kv-type */
#define APP_CFG_THREADS 0x10u /* -t/--threads */
#define APP_CFG_SAMPLE 0x20u  /* --seed --temp --greedy --top-k --top-p --min-p --repeat-penalty */
#define APP_CFG_GEN 0x40u     /* -n/--n-predict/--max-new-tokens, --stop */
#define APP_CFG_CHAT 0x80u    /* --system-prompt, --chat-template */
#define APP_CFG_ALL 0xffu     /* every group but serve's */
#define APP_CFG_SERVE 0x100u  /* --host --port --parallel --queue (lyra serve) */

/* One recorded flag. */
typedef struct app_cfgrec {
    const char *key;    /* config key */
    const char *value;  /* its value (argv or a constant) */
    const char *typed;  /* the flag as typed, for messages */
    char source[80];    /* "flag:--long-name" */
} app_cfgrec;

/* The config flags of one command line. */
typedef struct app_cfgflags {
    unsigned groups;            /* APP_CFG_* accepted */
    const char *model_config;   /* --model-config FILE, or NULL */
    int no_config;              /* --no-config */
    app_cfgrec *rec;            /* [n] in command-line order */
    int n, cap;                 /* used / allocated */
    lyra_config *scratch;       /* where values are checked as they come */
} app_cfgflags;

void app_cfgflags_init(app_cfgflags *cf, unsigned groups);
/* The i-th config flag of the groups (as typed: "-c", "--ctx"), NULL past
 * the end: the candidates of "did you mean". */
const char *app_cfgflag_at(unsigned groups, size_t i);
int app_cfgflag(app_args *a, app_cfgflags *cf, int *rc, lyra_error *err);
/* Defaults < config file (discovery) < flags; *out freed with lyra_config_free. */
int app_cfgflags_load(app_cfgflags *cf, lyra_config **out, lyra_error *err);
void app_cfgflags_free(app_cfgflags *cf);
/* The model file: model_id (from -m or the config) resolved by
 * config/model_ref.h; *path malloc'd. No model_id: "-m: required". A
 * snapshot directory's generation_config.json is loaded into c
 * (lyra_config_load_generation). */
int app_config_model(lyra_config *c, char **path, lyra_error *err);
/* The config's values into whichever of mp, sp is not NULL (*seed_given: a
 * seed is configured); cp is left to inherit mp's geometry (may be NULL). */
int app_config_apply(lyra_config *c, lyra_model_params *mp, lyra_context_params *cp,
                     lyra_sampler_params *sp, int *seed_given, lyra_error *err);
#define APP_CONFIG_USAGE \
    "config files (docs/config.md):\n" \
    "  --model-config FILE    read FILE; default: the first of $LYRA_MODEL_CONFIG,\n" \
    "                         ./config/model_config.json,\n" \
    "                         $XDG_CONFIG_HOME/lyra/model_config.json\n" \
    "                         (~/.config/lyra/... when unset); flags win\n" \
    "  --no-config            read none (also LYRA_MODEL_CONFIG=none)\n"

/* One parse loop for every command (args_parse), driven by a table of the
 * command's own flags, ended by APP_OPT_END_. */
typedef enum app_opt_kind {
    APP_OPT_END = 0, /* ends the table */
    APP_OPT_SWITCH,  /* no value: *(int *)dst = 1 ("--flag=V" is not this flag) */
    APP_OPT_STR,     /* *(const char **)dst = the value */
    APP_OPT_I32,     /* *(int32_t *)dst = the value, min..max (args_i32) */
    APP_OPT_FN,      /* fn(a, arg, dst, err) takes the value itself (args_*) */
} app_opt_kind;

typedef struct app_opt {
    const char *name;  /* "-p"; NULL: the positional arguments (APP_OPT_FN) */
    const char *alias; /* "--prompt", or NULL */
    app_opt_kind kind;
    void *dst;         /* where the value goes */
    int32_t min, max;  /* APP_OPT_I32's range */
    int (*fn)(app_args *a, const char *arg, void *dst, lyra_error *err); /* APP_OPT_FN */
} app_opt;

#define APP_SWITCH(name, dst) {(name), NULL, APP_OPT_SWITCH, (dst), 0, 0, NULL}
#define APP_STR(name, alias, dst) {(name), (alias), APP_OPT_STR, (dst), 0, 0, NULL}
#define APP_I32(name, alias, dst, lo, hi) {(name), (alias), APP_OPT_I32, (dst), (lo), (hi), NULL}
#define APP_FN(name, alias, fn, dst) {(name), (alias), APP_OPT_FN, (dst), 0, 0, (fn)}
#define APP_POSITIONAL(fn, dst) {NULL, NULL, APP_OPT_FN, (dst), 0, 0, (fn)}
#define APP_OPT_END_ {NULL, NULL, APP_OPT_END, NULL, 0, 0, NULL}

/* Parse a command line (argv[0] the command; cmd names it in messages, NULL:
 * argv[0]): -q/-v (args_common), then the command's own flags opts[] (before
 * the shared ones, so one may take a config flag's name: chat's
 * --chat-template), then the config flags of the groups APP_CFG_* (0: none)
 * and the device flags into mp (mp NULL: none). Anything else, and
 * positional arguments without an APP_POSITIONAL entry, is args_unknown's
 * error, with "did you mean" the closest flag of the command; a flag that
 * takes one value given twice is an error naming it (--stop, --max-memory
 * and --reserve add up); parsing stops at the first error. With groups, the config file is
 * then loaded under the flags into *cfg (app_cfgflags_load; freed with
 * lyra_config_free). */
int args_parse(int argc, char **argv, const char *cmd, const app_opt *opts, unsigned groups,
               lyra_model_params *mp, lyra_config **cfg, lyra_error *err);

/* Monotonic seconds. */
double app_now(void);

/* True when --help / -h is among argv[1..]: print usage, exit 0. */
int args_wants_help(int argc, char **argv);

/* The commands (one file each) and their --help texts. */
int cmd_generate(int argc, char **argv, lyra_error *err);
int cmd_tokenize(int argc, char **argv, lyra_error *err);
int cmd_perplexity(int argc, char **argv, lyra_error *err);
int cmd_bench(int argc, char **argv, lyra_error *err);
int cmd_mkmodel(int argc, char **argv, lyra_error *err);
int cmd_quantize(int argc, char **argv, lyra_error *err);
int cmd_convert(int argc, char **argv, lyra_error *err);
int cmd_plan(int argc, char **argv, lyra_error *err);
int cmd_devices(int argc, char **argv, lyra_error *err);
int cmd_config(int argc, char **argv, lyra_error *err);
int cmd_chat(int argc, char **argv, lyra_error *err);
int cmd_serve(int argc, char **argv, lyra_error *err);
extern const char cmd_chat_usage[], cmd_serve_usage[];
extern const char cmd_generate_usage[], cmd_tokenize_usage[], cmd_perplexity_usage[],
    cmd_bench_usage[], cmd_mkmodel_usage[], cmd_quantize_usage[], cmd_convert_usage[], cmd_plan_usage[],
    cmd_devices_usage[], cmd_config_usage[];

#endif
