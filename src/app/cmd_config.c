/* cmd_config.c: `lyra config show [--json] [FLAGS]` (the effective
 * configuration, every key with its value and source) and `lyra config
 * validate FILE...` (docs/config.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"

const char cmd_config_usage[] =
    "usage: lyra config show [--json] [--model-config FILE | --no-config] [FLAGS]\n"
    "       lyra config validate FILE...\n"
    "\n"
    "Model configuration files (docs/config.md): one JSON object per model and\n"
    "machine, such as\n"
    "  {\"model_id\": \"microsoft/phi-2\", \"device_map\": \"auto\",\n"
    "   \"max_memory\": {\"0\": \"6GB\", \"cpu\": \"16GB\"}, \"gpu_layers_fallback\": 16,\n"
    "   \"enable_progressive_fallback\": true,\n"
    "   \"pipeline_kwargs\": {\"max_new_tokens\": 4000}}\n"
    "generate, chat, perplexity, bench and plan read the first of: --model-config\n"
    "FILE, $LYRA_MODEL_CONFIG, ./config/model_config.json,\n"
    "$XDG_CONFIG_HOME/lyra/model_config.json (~/.config/lyra/model_config.json\n"
    "when unset); --no-config or LYRA_MODEL_CONFIG=none read none. Flags win over\n"
    "the file, the file over the defaults; max_memory, reserve and\n"
    "pipeline_kwargs merge per entry, device_map is replaced whole.\n"
    "\n"
    "  show                   every key's effective value and its source:\n"
    "                         default, file:/abs/path, env:NAME or flag:--name\n"
    "  --json                 one JSON object {\"KEY\": {\"value\": V, \"source\": S},\n"
    "                         ...} with pipeline_kwargs keys as\n"
    "                         \"pipeline_kwargs.NAME\"\n"
    "  --model-config FILE    read FILE instead of discovering one\n"
    "  --no-config            read no file\n"
    "  FLAGS                  any config flag of generate (-m, -c, -b, -t,\n"
    "                         --kv-type, --seed, -n, --temp, --greedy, --top-k,\n"
    "                         --top-p, --min-p, --repeat-penalty, --stop,\n"
    "                         --system-prompt, --chat-template, the device and\n"
    "                         fallback flags, --load-in-8bit, --load-in-4bit)\n"
    "  validate FILE...       check each FILE: \"FILE: ok\" on stdout, or one\n"
    "                         error line on stderr naming the file and the JSON\n"
    "                         path (line:column for syntax errors); exit 2 when\n"
    "                         any is invalid\n"
    "  -q, -v                 quieter / more verbose stderr\n";

static int show(int argc, char **argv, lyra_error *err) {
    int json = 0;
    const app_opt opts[] = {APP_SWITCH("--json", &json), APP_OPT_END_};
    lyra_config *c = NULL;
    int rc = args_parse(argc, argv, "config", opts, APP_CFG_ALL, NULL, &c, err);
    if (rc) return rc;
    char *out = NULL;
    if (json) {
        json_t *j = lyra_config_show_json(c);
        out = j ? json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(15)) : NULL;
        json_decref(j);
    } else {
        out = lyra_config_show_text(c);
    }
    if (!out) rc = lyra_err(err, LYRA_ERR_OOM, "config show", "out of memory");
    else if (fputs(out, stdout) < 0 || (json && fputc('\n', stdout) == EOF))
        rc = lyra_err(err, LYRA_ERR_RUNTIME, "<stdout>", "write failed");
    free(out);
    lyra_config_free(c);
    return rc;
}

/* Every file is checked; the last error is returned (main prints it), the
 * earlier ones are printed here in the same form. */
static int validate(int argc, char **argv, lyra_error *err) {
    app_args a;
    args_init(&a, argc, argv);
    a.cmd = "config";
    const char *arg;
    int is_flag, rc = 0, n_files = 0, bad = 0;
    lyra_error last;
    lyra_err_clear(&last);
    while (args_next(&a, &arg, &is_flag)) {
        if (is_flag && args_common(&a)) continue;
        if (is_flag) return args_unknown(&a, arg, err);
        n_files++;
        lyra_config *c = lyra_config_new();
        lyra_error e;
        lyra_err_clear(&e);
        rc = c ? lyra_config_load_file(c, arg, &e) : lyra_err(&e, LYRA_ERR_OOM, arg, "out of memory");
        lyra_config_free(c);
        if (!rc) {
            printf("%s: ok\n", arg);
            continue;
        }
        if (bad++) { /* the previous error: printed now, in main's form */
            fflush(stdout);
            fprintf(stderr, "lyra: error: %s\n", last.msg);
        }
        last = e;
    }
    if (!n_files) return lyra_err(err, LYRA_ERR_INPUT, "config validate", "give one or more FILEs");
    if (bad) {
        *err = last;
        return last.code ? last.code : LYRA_ERR_INPUT;
    }
    return LYRA_OK;
}

int cmd_config(int argc, char **argv, lyra_error *err) {
    if (argc < 2)
        return lyra_err(err, LYRA_ERR_INPUT, "config", "expected show or validate (see lyra config --help)");
    if (!strcmp(argv[1], "show")) return show(argc - 1, argv + 1, err);
    if (!strcmp(argv[1], "validate")) return validate(argc - 1, argv + 1, err);
    return lyra_err(err, LYRA_ERR_INPUT, argv[1],
                    "unknown config command: expected show or validate (see lyra config --help)");
}
