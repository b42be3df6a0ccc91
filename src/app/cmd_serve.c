/* cmd_serve.c: `lyra serve`: an OpenAI-compatible HTTP server
 * (docs/server.md). Flags and config keys here; the server is src/serve/.
 * SIGINT and SIGTERM shut it down gracefully: exit 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "dist/dist.h"
#include "serve/serve.h"

const char cmd_serve_usage[] =
    "usage: lyra serve -m MODEL [--host ADDR] [--port N] [--parallel N]\n"
    "                  [--queue N] [--api-key KEY] [--max-body BYTES]\n"
    "                  [--max-header BYTES] [--timeout S] [--max-connections N]\n"
    "                  [--grace S] [sampling, context and device flags]\n"
    "\n"
    "Serve the model over HTTP with OpenAI's API: POST /v1/chat/completions and\n"
    "/v1/completions (streaming with server-sent events), GET /v1/models,\n"
    "/health, /metrics (Prometheus) and a chat page at /. Ctrl-C or SIGTERM\n"
    "stops it: running requests get --grace seconds, then exit 0.\n"
    "\n"
    "  -m, --model MODEL      GGUF model file, a directory holding one, or\n"
    "                         org/name[:TAG] in the Hugging Face cache\n"
    "  --host ADDR            address to listen on (default 127.0.0.1; a\n"
    "                         non-loopback address without --api-key warns)\n"
    "                         (config: server_host)\n"
    "  --port N               TCP port, 0 = any free one (default 8080)\n"
    "                         (config: server_port)\n"
    "  --parallel N, -np N    slots: requests generated at once, 1..256\n"
    "                         (default 4) (config: server_parallel)\n"
    "  --queue N              requests waiting for a slot at most; more get\n"
    "                         429 with Retry-After (default 64) (config: server_queue)\n"
    "  --api-key KEY          require `Authorization: Bearer KEY` (also\n"
    "                         LYRA_API_KEY; the flag wins)\n"
    "  --max-body BYTES       largest request body (default 4194304); more: 413\n"
    "  --max-header BYTES     memory for the request line and headers per\n"
    "                         connection (default 32768)\n"
    "  --timeout S            close connections idle for S seconds (default 30)\n"
    "  --max-connections N    concurrent connections at most (default 256)\n"
    "  --grace S              on shutdown, seconds running requests may take\n"
    "                         before they are failed (default 3)\n"
    "  -n, --n-predict N      default max_tokens of a request (default: until\n"
    "                         an end token or the context is full)\n"
    "  --temp T, --top-k K, --top-p P, --min-p P, --repeat-penalty R, --seed S\n"
    "                         defaults for the fields a request leaves out\n"
    "  --system-prompt TEXT   system prompt of chats that send none\n"
    "  --chat-template NAME   chatml, llama2, llama3, phi3, gemma, zephyr, plain,\n"
    "                         none or auto (default: from the model)\n"
    "  -t, --threads N, -c, --ctx N (each slot's context), -b, --batch N,\n"
    "  --kv-type f16|f32, --load-in-8bit, --load-in-4bit, --dtype D, --revision REV\n"
    "  -q, -v                 quieter / more verbose stderr\n"
    APP_CONFIG_USAGE
    APP_DEVFLAGS_USAGE;

/* mpirun, a rank other than 0: the model and the slots' context as rank 0's
 * engine opens them (serve/sched.c), then rank 0's batches until it quits. */
static int serve_follow(const lyra_serve_opts *o, lyra_error *err) {
    lyra_model *m = NULL;
    lyra_context *ctx = NULL;
    int rc = lyra_model_open(o->model_path, &o->mp, &m, err);
    lyra_context_params p = o->cp;
    p.n_seq = o->parallel;
    if (!rc) rc = lyra_context_new(m, &p, &ctx, err);
    if (!rc) app_follow(ctx, &rc, err);
    lyra_context_free(ctx);
    lyra_model_free(m);
    return rc;
}

int cmd_serve(int argc, char **argv, lyra_error *err) {
    lyra_serve_opts o;
    memset(&o, 0, sizeof o);
    o.mp = lyra_model_default_params();
    o.cp = lyra_context_default_params();
    o.sp = lyra_sampler_default_params();
    const char *key = NULL;
    int32_t max_body = 4 << 20, max_header = 32 << 10, timeout = 30, max_conns = 256, grace = 3;
    const app_opt opts[] = {
        APP_STR("--api-key", NULL, &key),
        APP_I32("--max-body", NULL, &max_body, 64, 1 << 30),
        APP_I32("--max-header", NULL, &max_header, 4096, 1 << 24),
        APP_I32("--timeout", NULL, &timeout, 1, 86400),
        APP_I32("--max-connections", NULL, &max_conns, 1, 65536),
        APP_I32("--grace", NULL, &grace, 0, 3600),
        APP_OPT_END_,
    };
    lyra_config *cfg = NULL;
    char *model = NULL;
    int rc = args_parse(argc, argv, NULL, opts, APP_CFG_ALL | APP_CFG_SERVE, &o.mp, &cfg, err);
    if (!rc) rc = app_config_model(cfg, &model, err);
    if (!rc) rc = app_config_apply(cfg, &o.mp, &o.cp, &o.sp, &o.seed_given, err);
    lyra_config_gen g;
    if (!rc) rc = lyra_config_apply_gen(cfg, &g, err);
    if (rc) {
        free(model);
        lyra_config_free(cfg);
        return rc;
    }
    lyra_config_serve sv;
    lyra_config_apply_serve(cfg, &sv);
    /* -n given (flag or file): the default max_tokens; else no limit but the context */
    const char *src = cfg->source[LYRA_CFG_MAX_NEW_TOKENS];
    o.max_tokens = src && strcmp(src, "default") ? g.max_new_tokens : -1;
    o.system_prompt = g.system_prompt;
    o.chat_template = g.chat_template;
    o.host = sv.host;
    o.port = sv.port;
    o.parallel = sv.parallel;
    o.mp.n_seq = sv.parallel; /* the plan counts a KV cache per slot */
    o.queue = sv.queue;
    o.api_key = key ? key : getenv("LYRA_API_KEY");
    o.max_body = (size_t)max_body;
    o.max_header = (size_t)max_header;
    o.timeout_s = timeout;
    o.max_conns = max_conns;
    o.grace_s = grace;
    o.model_path = model;
    /* the id clients name: the file name without .gguf */
    const char *base = strrchr(model, '/');
    base = base ? base + 1 : model;
    char id[256];
    snprintf(id, sizeof id, "%s", base);
    size_t n = strlen(id);
    if (n > 5 && !strcmp(id + n - 5, ".gguf")) id[n - 5] = '\0';
    o.model_id = id;
    o.stop = &app_interrupted;
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-write is an error return, not a signal */
    rc = lyra_dist_rank() > 0 ? serve_follow(&o, err) : lyra_serve_run(&o, err);
    free(model);
    lyra_config_free(cfg);
    return rc;
}
