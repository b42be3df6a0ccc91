/* cmd_perplexity.c: `lyra perplexity`, computed exactly as llama.cpp's
 * perplexity tool does:
 *   tokens = the whole file tokenized once (BOS first if the model adds BOS)
 *   n_chunks = floor(n_tokens / ctx); chunk c = tokens[c*ctx, (c+1)*ctx) with
 *   its first token replaced by BOS (if the model adds BOS), evaluated on an
 *   empty KV cache with the logits of every position kept;
 *   NLL of token j+1 from the logits at j, for j = ctx/2 .. ctx-2 (so the
 *   scored tokens are positions ctx/2+1 .. ctx-1), log-softmax in double;
 *   perplexity = exp(mean NLL over all chunks). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "lyra.h"

const char cmd_perplexity_usage[] =
    "usage: lyra perplexity -m MODEL -f FILE [--ctx N] [--threads N] [--batch N]\n"
    "                       [--kv-type f16|f32] [--load-in-8bit | --load-in-4bit]\n"
    "                       [--logits-hash] [--model-config FILE | --no-config]\n"
    "                       [device flags]\n"
    "\n"
    "Perplexity of FILE's text, computed as llama.cpp's perplexity tool does:\n"
    "the file is tokenized once (BOS first if the model adds BOS) and cut into\n"
    "floor(tokens / N) chunks of N tokens; each chunk (its first token set to BOS\n"
    "if the model adds BOS) is evaluated on an empty cache, and the negative\n"
    "log-likelihoods of the tokens at positions N/2+1 .. N-1 are averaged over all\n"
    "chunks; perplexity = exp(mean). Progress goes to stderr; the last stdout line\n"
    "is `perplexity: X` (4 decimals). The file needs at least 2*N tokens.\n"
    "\n"
    "  -m, --model MODEL   GGUF model file (required unless the config file has\n"
    "                      model_id)\n"
    "  -f, --file FILE     text file (required; - = stdin)\n"
    "  -c, --ctx N         chunk (context) size, >= 4 (default 512; the config's\n"
    "                      context_length is not used)\n"
    "  -t, --threads N     CPU threads (default: physical cores)\n"
    "  -b, --batch N       tokens per forward pass (default: N)\n"
    "  --kv-type f16|f32   KV cache element type (default f16)\n"
    "  --load-in-8bit      store F32/F16/BF16 weights as Q8_0 on load\n"
    "  --load-in-4bit      store F32/F16/BF16 weights as 4-bit on load\n"
    "  --dtype D           Hugging Face folders: auto, float32, float16, bfloat16\n"
    "  --revision REV      Hugging Face cache: branch, tag or commit of org/name\n"
    "  --logits-hash       also print `logits-hash: X`, a hash of every logit of\n"
    "                      every chunk (X equal: the logits are bitwise equal)\n"
    "  -q, -v              quieter / more verbose stderr\n"
    APP_CONFIG_USAGE
    APP_DEVFLAGS_USAGE;

/* -log softmax(logits)[target], in double. logits: [n_vocab] */
static double nll_of(const float *logits, int32_t n_vocab, int32_t target) {
    double mx = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++)
        if (logits[i] > mx) mx = logits[i];
    double z = 0.0;
    for (int32_t i = 0; i < n_vocab; i++) z += exp((double)logits[i] - mx);
    return log(z) + mx - (double)logits[target];
}

/* Flags, the config file under them (model, device, KV type and threads;
 * the chunk size and batch are perplexity's own), the model file. */
static int parse_opts(int argc, char **argv, char **model, const char **file, lyra_config **cfg,
                      lyra_model_params *mp, lyra_context_params *cp, int *hash, lyra_error *err) {
    int32_t n_ctx = 512, n_batch = 0; /* batch 0: the chunk size */
    const app_opt opts[] = {
        APP_SWITCH("--logits-hash", hash),
        APP_STR("-f", "--file", file),
        APP_I32("-c", "--ctx", &n_ctx, 4, 1 << 24),
        APP_I32("-b", "--batch", &n_batch, 1, INT32_MAX),
        APP_OPT_END_,
    };
    int rc = args_parse(argc, argv, NULL, opts,
                        APP_CFG_MODEL | APP_CFG_DEVICE | APP_CFG_KV | APP_CFG_THREADS, mp, cfg, err);
    if (!rc) rc = app_config_model(*cfg, model, err);
    if (!rc && !*file) rc = lyra_err(err, LYRA_ERR_INPUT, "-f", "required: the text file");
    if (!rc) rc = app_config_apply(*cfg, mp, cp, NULL, NULL, err);
    (void)cp; /* the context inherits the model's geometry */
    mp->n_ctx = n_ctx;
    mp->n_batch = n_batch ? n_batch : n_ctx;
    return rc;
}

int cmd_perplexity(int argc, char **argv, lyra_error *err) {
    char *model = NULL;
    const char *file = NULL;
    lyra_config *cfg = NULL; /* owns mp's strings */
    lyra_context_params cp = lyra_context_default_params();
    lyra_model_params mp = lyra_model_default_params();
    int hash = 0; /* --logits-hash */
    int rc = parse_opts(argc, argv, &model, &file, &cfg, &mp, &cp, &hash, err);
    if (rc) {
        free(model);
        lyra_config_free(cfg);
        return rc;
    }
    const int32_t n_ctx = mp.n_ctx;

    char *text = NULL;
    size_t len = 0;
    lyra_model *m = NULL;
    lyra_context *ctx = NULL;
    int32_t *toks = NULL, *chunk = NULL;
    size_t n_toks = 0;
    rc = app_read_file(file, &text, &len, err);
    if (!rc) rc = lyra_model_open(model, &mp, &m, err);
    int add_bos = 0;
    int32_t bos = -1;
    if (!rc) {
        add_bos = lyra_add_bos_default(m);
        bos = lyra_token_bos(m);
        double t0 = app_now();
        rc = lyra_tokenize(m, text, len, add_bos, 0, &toks, &n_toks, err);
        if (!rc && n_toks < 2 * (size_t)n_ctx)
            rc = lyra_err(err, LYRA_ERR_INPUT, file,
                          "%zu token%s; perplexity with --ctx %d needs at least %lld", n_toks,
                          n_toks == 1 ? "" : "s",
                          (int)n_ctx, 2 * (long long)n_ctx);
        if (!rc)
            lyra_log(LYRA_LOG_INFO, "perplexity: tokenized %zu bytes into %zu tokens in %.2f s", len,
                     n_toks, app_now() - t0);
    }
    if (!rc) rc = lyra_context_new(m, &cp, &ctx, err);
    if (!rc && lyra_context_n_ctx(ctx) < n_ctx)
        rc = lyra_err(err, LYRA_ERR_INPUT, "--ctx", "the context holds only %d tokens",
                      (int)lyra_context_n_ctx(ctx));
    int follower = !rc && app_follow(ctx, &rc, err); /* mpirun: a rank other than 0 */
    if (!rc && !follower) {
        app_log_map(ctx);
        chunk = malloc(sizeof *chunk * (size_t)n_ctx);
        if (!chunk) rc = lyra_err(err, LYRA_ERR_OOM, "perplexity", "out of memory");
    }
    size_t n_chunks = rc || follower ? 0 : n_toks / (size_t)n_ctx;
    const int32_t first = n_ctx / 2, n_vocab = rc ? 0 : lyra_model_n_vocab(m);
    double nll = 0.0;
    long long count = 0;
    uint64_t lh = 1469598103934665603ULL; /* --logits-hash: FNV-1a 64 of every logit's bytes */
    double t_start = app_now();
    if (!rc && !follower)
        lyra_log(LYRA_LOG_INFO, "perplexity: %zu chunks of %d tokens, scoring %d tokens each",
                 n_chunks, (int)n_ctx, (int)(n_ctx - 1 - first));
    for (size_t c = 0; !rc && c < n_chunks; c++) {
        if (app_interrupted) {
            rc = lyra_err(err, LYRA_ERR_INTERRUPTED, "perplexity", "interrupted");
            break;
        }
        memcpy(chunk, toks + c * (size_t)n_ctx, sizeof *chunk * (size_t)n_ctx);
        if (add_bos && bos >= 0) chunk[0] = bos;
        lyra_context_truncate(ctx, 0);
        rc = lyra_eval(ctx, chunk, n_ctx, 1, err);
        if (rc) break;
        for (int32_t j = first; j < n_ctx - 1; j++) {
            const float *lg = lyra_get_logits(ctx, j);
            if (!lg) {
                rc = lyra_err(err, LYRA_ERR_RUNTIME, "perplexity", "no logits at position %d", (int)j);
                break;
            }
            nll += nll_of(lg, n_vocab, toks[c * (size_t)n_ctx + (size_t)j + 1]);
            count++;
        }
        for (int32_t j = 0; !rc && hash && j < n_ctx; j++) {
            const unsigned char *b = (const unsigned char *)lyra_get_logits(ctx, j);
            for (size_t k = 0; b && k < (size_t)n_vocab * sizeof(float); k++) {
                lh ^= b[k];
                lh *= 1099511628211ULL;
            }
        }
        if (rc) break;
        double el = app_now() - t_start;
        lyra_log(LYRA_LOG_INFO, "[%zu/%zu] perplexity so far %.4f (%.2f s/chunk, ~%.0f s left)",
                 c + 1, n_chunks, exp(nll / (double)count), el / (double)(c + 1),
                 el / (double)(c + 1) * (double)(n_chunks - c - 1));
    }
    if (!rc && !follower) {
        double ppl = exp(nll / (double)count);
        lyra_log(LYRA_LOG_INFO, "perplexity: %lld tokens scored, mean NLL %.6f", count,
                 nll / (double)count);
        if (hash) printf("logits-hash: %016llx\n", (unsigned long long)lh);
        printf("perplexity: %.4f\n", ppl);
    }
    free(chunk);
    free(toks);
    free(text);
    lyra_context_free(ctx);
    lyra_model_free(m);
    lyra_config_free(cfg);
    free(model);
    return rc;
}
