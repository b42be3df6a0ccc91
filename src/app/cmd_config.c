/* cmd_config.c: `lyra config show [--json] [FLAGS]` (the effective
 * configuration, every key with its value and source) and `lyra config
 * validate FILE...` (docs/config.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "arch/llama.h"
#include "config/model_ref.h"
#include "core/log.h"
#include "format/gguf.h"
#include "format/hf_model.h"
#include "plan/plan.h"
#include "runtime/runtime.h"

const char cmd_config_usage[] =
    "usage: lyra config show [--json] [--model-config FILE | --no-config] [FLAGS]\n"
    "       lyra config validate [--strict] [-m MODEL] FILE...\n"
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
    "                         default, model:/abs/generation_config.json (a\n"
    "                         Hugging Face snapshot's), file:/abs/path,\n"
    "                         env:NAME or flag:--name\n"
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
    "                         any is invalid; notes (keys from Hugging Face\n"
    "                         configs that lyra ignores) on stderr\n"
    "  --strict               every note is an error\n"
    "  -m, --model MODEL      check an explicit device map against MODEL (the\n"
    "                         file's model_id when not given; metadata only)\n"
    "  -q, -v                 quieter / more verbose stderr\n";

static int show(int argc, char **argv, lyra_error *err) {
    int json = 0;
    const app_opt opts[] = {APP_SWITCH("--json", &json), APP_OPT_END_};
    lyra_config *c = NULL;
    int rc = args_parse(argc, argv, "config", opts, APP_CFG_ALL, NULL, &c, err);
    if (rc) return rc;
    const json_t *m = c->value[LYRA_CFG_MODEL_ID];
    char *path = NULL;
    lyra_error e2;
    /* a Hugging Face snapshot's generation_config.json shows as its own source;
     * a model that does not resolve is left to the commands that open it */
    if (json_is_string(m) && !lyra_config_resolve_model(c, json_string_value(m), "-m", &path, &e2))
        rc = lyra_config_load_generation(c, path, err);
    free(path);
    if (rc) {
        lyra_config_free(c);
        return rc;
    }
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

/* A file's explicit device map checked against the model (-m, else its
 * model_id): the model's metadata is opened and planned, no weights read.
 * A model_id from the file that is not on this machine leaves the map
 * unchecked (a note); -m must resolve. */
static int check_map(lyra_config *c, const char *model_flag, lyra_error *err) {
    const json_t *map = c->value[LYRA_CFG_DEVICE_MAP], *m = c->value[LYRA_CFG_MODEL_ID];
    if (!json_is_object(map) && !c->map_is_file) return LYRA_OK;
    if (!model_flag && !json_is_string(m)) return LYRA_OK;
    char *path = NULL;
    char where[1200];
    snprintf(where, sizeof where, "%s: model_id", c->path ? c->path : "config");
    int rc = model_flag ? lyra_config_resolve_model(c, model_flag, "-m", &path, err)
                        : lyra_config_resolve_model(c, json_string_value(m), where, &path, err);
    if (rc && !model_flag) {
        LYRA_INFO("%s; the device map is not checked against the model (-m checks it)", err->msg);
        lyra_err_clear(err);
        return LYRA_OK;
    }
    lyra_model_params mp = lyra_model_default_params();
    if (!rc) rc = lyra_config_apply_model(c, &mp, err);
    lyra_gguf *g = NULL;
    lyra_llama *arch = NULL;
    lyra_device *dev[LYRA_MAX_DEVICES];
    int n_dev = 0;
    lyra_plan *plan = NULL;
    if (!rc) rc = lyra_hf_open_path(path, (lyra_hf_dtype)mp.dtype, &g, err); /* a GGUF or a folder */
    if (!rc) rc = lyra_llama_load(g, &arch, err);
    /* the CUDA GPUs only when the settings name one: no CUDA (no driver
     * loaded, no note) for a map of the CPU and disk alone */
    lyra_backend_params bp = lyra_backend_params_from_env();
    int want = lyra_runtime_wants_gpu(&mp);
    if (!want) bp.cuda_devices = "";
    if (!rc) rc = lyra_runtime_devices(&bp, 1, want, dev, &n_dev, err);
    lyra_geometry geom = arch ? lyra_runtime_geometry(arch, &mp) : (lyra_geometry){0, 0, 0, 0, 0};
    if (!rc) rc = lyra_runtime_plan(arch, &mp, &geom, dev, n_dev, &plan, err);
    lyra_plan_free(plan);
    for (int i = 0; i < n_dev; i++) lyra_device_free(dev[i]);
    lyra_llama_free(arch);
    lyra_gguf_close(g);
    free(path);
    return rc;
}

/* Every file is checked; the last error is returned (main prints it), the
 * earlier ones are printed here in the same form. */
static int validate(int argc, char **argv, lyra_error *err) {
    app_args a;
    args_init(&a, argc, argv);
    a.cmd = "config";
    const char *arg, *model = NULL;
    int is_flag, rc = 0, n_files = 0, bad = 0, strict = 0;
    const char **files = calloc((size_t)argc + 1, sizeof *files);
    if (!files) return lyra_err(err, LYRA_ERR_OOM, "config validate", "out of memory");
    while (args_next(&a, &arg, &is_flag)) {
        if (is_flag && args_common(&a)) continue;
        if (is_flag && !strcmp(arg, "--strict")) {
            strict = 1;
        } else if (is_flag && (!strcmp(arg, "-m") || !strcmp(arg, "--model"))) {
            if ((rc = args_str(&a, &model, err))) break;
        } else if (is_flag) {
            rc = args_unknown(&a, arg, err);
            break;
        } else {
            files[n_files++] = arg;
        }
    }
    if (!rc && !n_files) rc = lyra_err(err, LYRA_ERR_INPUT, "config validate", "give one or more FILEs");
    if (rc) {
        free(files);
        return rc;
    }
    lyra_error last;
    lyra_err_clear(&last);
    for (int i = 0; i < n_files; i++) {
        lyra_config *c = lyra_config_new();
        lyra_error e;
        lyra_err_clear(&e);
        if (c) c->strict = strict;
        rc = c ? lyra_config_load_file(c, files[i], &e) : lyra_err(&e, LYRA_ERR_OOM, files[i], "out of memory");
        if (!rc) rc = check_map(c, model, &e);
        lyra_config_free(c);
        if (!rc) {
            printf("%s: ok\n", files[i]);
            continue;
        }
        if (bad++) { /* the previous error: printed now, in main's form */
            fflush(stdout);
            fprintf(stderr, "lyra: error: %s\n", last.msg);
        }
        last = e;
    }
    free(files);
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
