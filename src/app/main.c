/* main.c: the `lyra` command: global flags, dispatch to one subcommand (one
 * file each: cmd_*.c), and the single error line "lyra: error: WHERE: WHAT".
 * `lyra` with no command chats with the configured model (a config file
 * with model_id), else prints the usage on stderr and exits 2.
 * Exit codes: 0 ok, 1 runtime, 2 invalid input, 3 out of memory, 130 SIGINT,
 * 143 SIGTERM (both stop the command cleanly: no partial output files). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "dist/dist.h"
#include "lyra.h"

/* One subcommand. */
typedef struct app_cmd {
    const char *name;    /* as typed */
    int (*run)(int argc, char **argv, lyra_error *err); /* entry point */
    const char *usage;   /* its --help text */
    const char *summary; /* one line for lyra --help */
    int mpi;             /* 1: runs under mpirun with several ranks (docs/distributed.md) */
} app_cmd;

static const app_cmd g_cmds[] = {
    {"generate", cmd_generate, cmd_generate_usage, "generate text from a prompt", 1},
    {"chat", cmd_chat, cmd_chat_usage, "chat with a model (the KV cache kept between turns)", 1},
    {"serve", cmd_serve, cmd_serve_usage, "OpenAI-compatible HTTP server with a chat page", 1},
    {"tokenize", cmd_tokenize, cmd_tokenize_usage, "print the token ids of a text", 0},
    {"perplexity", cmd_perplexity, cmd_perplexity_usage, "perplexity of a text (llama.cpp's method)", 1},
    {"bench", cmd_bench, cmd_bench_usage, "prompt/generation speed and memory bandwidth", 1},
    {"mkmodel", cmd_mkmodel, cmd_mkmodel_usage, "write a random-weight GGUF (Llama, Phi, Qwen, Gemma...)", 0},
    {"quantize", cmd_quantize, cmd_quantize_usage, "convert a GGUF's weights to another type", 0},
    {"convert", cmd_convert, cmd_convert_usage, "write a Hugging Face model folder as a GGUF", 0},
    {"plan", cmd_plan, cmd_plan_usage, "where a model's modules would run (metadata only)", 1},
    {"devices", cmd_devices, cmd_devices_usage, "list GPUs, cpu and disk with their memory", 0},
    {"config", cmd_config, cmd_config_usage, "show or validate model configuration files", 0},
};
#define N_CMDS (sizeof g_cmds / sizeof g_cmds[0])

static void usage(FILE *f) {
    fprintf(f,
            "usage: lyra [-q | -v] COMMAND [FLAGS]\n"
            "       lyra [-q | -v]\n"
            "       lyra --version | --help | COMMAND --help\n"
            "\n"
            "lyra runs Llama-family GGUF models on the CPU, split across GPUs, CPU\n"
            "memory and disk under memory budgets when asked (lyra plan --help).\n"
            "\n"
            "Without a COMMAND, lyra runs `lyra chat` when a config file names a model\n"
            "(model_id in $LYRA_MODEL_CONFIG, ./config/model_config.json or\n"
            "$XDG_CONFIG_HOME/lyra/model_config.json, ~/.config/... when unset:\n"
            "docs/config.md); with none it prints this text on stderr and exits 2\n"
            "(stdin is not read).\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < N_CMDS; i++) fprintf(f, "  %-11s %s\n", g_cmds[i].name, g_cmds[i].summary);
    fprintf(f,
            "\n"
            "global flags (also accepted after the command):\n"
            "  -q, --quiet      only errors on stderr\n"
            "  -v, --verbose    debug messages on stderr\n"
            "  --version        print the version and build features\n"
            "  -h, --help       this text; `lyra COMMAND --help` for a command\n"
            "\n"
            "environment:\n"
            "  LYRA_LOG=error|warn|info|debug   stderr verbosity (default info; -q/-v win)\n"
            "  LYRA_CPU=scalar|avx2|avx512      force a CPU kernel path\n"
            "  LYRA_SIM_GPUS=SIZE[,SIZE...]     simulated GPUs instead of CUDA ones\n"
            "  LYRA_MODEL_CONFIG=FILE|none      the config file (none: no discovery)\n"
            "\n"
            "Results go to stdout; logs, progress and the seed to stderr. An error is\n"
            "one stderr line `lyra: error: WHERE: WHAT`. Exit codes: 0 ok, 1 runtime\n"
            "error, 2 invalid input (flags, environment, model files, texts), 3 out of\n"
            "memory, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).\n");
}

/* SIGINT and SIGTERM: the command stops at its next check, removes what it
 * was writing and exits 130 / 143; a second signal kills at once. */
static void on_signal(int sig) {
    app_interrupted = sig;
}

static void install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C kills at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* `lyra` alone: 1 when it should chat: LYRA_MODEL_CONFIG names a file, or
 * the file discovery finds has a model_id (a file that does not parse counts
 * too: chat then reports what is wrong with it). Nothing is read from
 * stdin here. */
static int model_configured(void) {
    char *path = NULL;
    const char *how = "none";
    lyra_error e;
    if (lyra_config_discover(NULL, 0, &path, &how, &e)) return 1; /* chat says why */
    if (!path) return 0;
    int yes = !strcmp(how, "LYRA_MODEL_CONFIG");
    if (!yes) {
        json_t *root = json_load_file(path, 0, NULL);
        yes = !root || !json_is_object(root) ||
              (json_object_get(root, "model_id") && !json_is_null(json_object_get(root, "model_id")));
        json_decref(root);
    }
    free(path);
    return yes;
}

static int fail(const lyra_error *err) {
    fflush(stdout);
    if (lyra_dist_rank() > 0 && lyra_dist_failed_together()) /* rank 0 says it */
        return err->code ? err->code : LYRA_ERR_RUNTIME;
    if (lyra_dist_rank() > 0) /* mpirun: which rank failed */
        fprintf(stderr, "lyra: error: rank %d: %s\n", lyra_dist_rank(), err->msg[0] ? err->msg : "failed");
    else
        fprintf(stderr, "lyra: error: %s\n", err->msg[0] ? err->msg : "failed");
    return err->code ? err->code : LYRA_ERR_RUNTIME;
}

/* Run a command; its exit code (stdout flushed, an error printed). */
static int run_cmd(int (*run)(int, char **, lyra_error *), int argc, char **argv, lyra_error *err) {
    int rc = run(argc, argv, err);
    if (rc == LYRA_OK && fflush(stdout) != 0) {
        lyra_err(err, LYRA_ERR_RUNTIME, "<stdout>", "write failed");
        rc = LYRA_ERR_RUNTIME;
    }
    if (rc == LYRA_OK) return 0;
    if (rc == LYRA_ERR_INTERRUPTED && !err->msg[0] && app_interrupted != SIGTERM) {
        fflush(stdout); /* a quiet Ctrl-C (chat at a terminal): no error line */
        return rc;
    }
    err->code = rc;
    rc = fail(err);
    return rc == LYRA_ERR_INTERRUPTED && app_interrupted == SIGTERM ? 128 + SIGTERM : rc;
}

static int lyra_main(int argc, char **argv);

/* Under mpirun (docs/distributed.md) every rank runs the same command: MPI
 * around it, the logs of ranks other than 0 cut to errors, and an error on
 * any rank ends every rank (MPI_Abort) instead of leaving them waiting. */
int main(int argc, char **argv) {
    lyra_error err;
    lyra_err_clear(&err);
    if (lyra_dist_init(&argc, &argv, &err)) return fail(&err);
    int rc = lyra_main(argc, argv);
    if (rc && lyra_dist_size() > 1 && !lyra_dist_failed_together()) {
        fflush(stdout);
        fflush(stderr);
        lyra_dist_abort(rc);
    }
    lyra_dist_finish();
    return rc;
}

static int lyra_main(int argc, char **argv) {
    lyra_error err;
    lyra_err_clear(&err);
    if (app_log_init(&err)) return fail(&err);
    /* rank 0 speaks for the run; LYRA_LOG set: every rank at that level */
    if (lyra_dist_rank() > 0 && !(getenv("LYRA_LOG") && *getenv("LYRA_LOG"))) app_log_level(LYRA_LOG_ERROR);
    install_signals();

    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("lyra %s\nfeatures: %s\n", lyra_version(), lyra_build_features());
            return 0;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            app_log_level(LYRA_LOG_ERROR);
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            app_log_level(LYRA_LOG_DEBUG);
        } else {
            lyra_err(&err, LYRA_ERR_INPUT, a, "unknown flag (see lyra --help)");
            return fail(&err);
        }
    }
    if (i >= argc) {
        if (model_configured()) {
            char chat[] = "chat";
            char *av[] = {chat, NULL};
            return run_cmd(cmd_chat, 1, av, &err);
        }
        usage(stderr);
        lyra_err(&err, LYRA_ERR_INPUT, "COMMAND", "missing, and no config file names a model to chat with");
        return fail(&err);
    }
    if (!strcmp(argv[i], "help")) { /* `lyra help [CMD]` */
        if (i + 1 < argc)
            for (size_t c = 0; c < N_CMDS; c++)
                if (!strcmp(argv[i + 1], g_cmds[c].name)) {
                    fputs(g_cmds[c].usage, stdout);
                    return 0;
                }
        usage(stdout);
        return 0;
    }
    for (size_t c = 0; c < N_CMDS; c++) {
        if (strcmp(argv[i], g_cmds[c].name)) continue;
        if (args_wants_help(argc - i, argv + i)) {
            fputs(g_cmds[c].usage, stdout);
            return 0;
        }
        if (lyra_dist_size() > 1 && !g_cmds[c].mpi) { /* every rank refuses: rank 0 says it */
            lyra_dist_set_failed_together();
            lyra_err(&err, LYRA_ERR_INPUT, argv[i],
                     "not under mpirun yet (generate, chat, serve, perplexity, bench and plan are: "
                     "docs/distributed.md)");
            return fail(&err);
        }
        return run_cmd(g_cmds[c].run, argc - i, argv + i, &err);
    }
    lyra_err(&err, LYRA_ERR_INPUT, argv[i], "unknown command (see lyra --help)");
    return fail(&err);
}
