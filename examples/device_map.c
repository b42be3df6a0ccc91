/* device_map.c: place a model with liblyra's typed device settings, no
 * strings parsed: an explicit device map (the embedding and layers 0-1 on
 * GPU 0, everything else on the CPU) and a CPU budget, then a greedy
 * continuation with the low-level API (tokenize, eval, sample), and where
 * the modules went.
 *
 *   cc examples/device_map.c $(pkg-config --cflags --libs lyra) -o device_map
 *   LYRA_SIM_GPUS=8MiB ./device_map model.gguf "Once upon a time" 32
 *
 * LYRA_SIM_GPUS simulates GPU 0 on a machine without one (with CUDA GPUs,
 * leave it unset). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lyra.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [PROMPT] [MAX_NEW_TOKENS]\n", argv[0]);
        return 2;
    }
    const char *prompt = argc > 2 ? argv[2] : "Once upon a time";
    int n_new = argc > 3 ? atoi(argv[3]) : 32;
    lyra_error err;

    /* module names or dot-boundary prefixes: the longest key wins, "" covers all */
    static const lyra_device_map_entry map[] = {
        {"", LYRA_DEVICE_CPU},
        {"model.embed_tokens", 0},
        {"model.layers.0", 0},
        {"model.layers.1", 0},
    };
    static const lyra_device_bytes budgets[] = {{LYRA_DEVICE_CPU, 4ull << 30}}; /* cpu=4GiB */
    lyra_model_params mp = lyra_model_default_params();
    mp.device_strategy = LYRA_DEVICE_MAP_EXPLICIT;
    mp.device_map = map;
    mp.n_device_map = (int32_t)(sizeof map / sizeof map[0]);
    mp.max_memory = budgets;
    mp.n_max_memory = 1;
    mp.fallback = 0; /* a missing GPU 0 is an error here, not a note */
    mp.fallback_policy = LYRA_FALLBACK_NONE;
    mp.n_ctx = 256;  /* the geometry the map is planned for; the context inherits it */

    lyra_model *m = NULL;
    if (lyra_model_open(argv[1], &mp, &m, &err)) {
        fprintf(stderr, "device_map: error: %s\n", err.msg);
        return err.code;
    }
    lyra_context *ctx = NULL;
    lyra_context_params cp = lyra_context_default_params(); /* all 0: the model's geometry */
    int rc = lyra_context_new(m, &cp, &ctx, &err);
    int32_t *toks = NULL;
    size_t n_toks = 0;
    if (!rc) rc = lyra_tokenize(m, prompt, strlen(prompt), -1, 0, &toks, &n_toks, &err);
    if (!rc) rc = lyra_eval(ctx, toks, (int32_t)n_toks, 0, &err);

    /* greedy: temperature 0 takes the largest logit */
    lyra_sampler_params sp = lyra_sampler_default_params();
    sp.temperature = 0.0f;
    lyra_sampler *s = rc ? NULL : lyra_sampler_new(&sp, lyra_model_n_vocab(m));
    lyra_detok *d = rc ? NULL : lyra_detok_new(m);
    char piece[256];
    for (int i = 0; !rc && s && d && i < n_new && lyra_context_pos(ctx) < lyra_context_n_ctx(ctx); i++) {
        int32_t t = lyra_sampler_sample(s, lyra_get_logits(ctx, -1));
        if (lyra_token_is_eog(m, t)) break;
        size_t k = lyra_detok_feed(d, t, piece, sizeof piece);
        fwrite(piece, 1, k, stdout);
        fflush(stdout);
        lyra_sampler_accept(s, t);
        rc = lyra_eval(ctx, &t, 1, 0, &err);
    }
    if (d) fwrite(piece, 1, lyra_detok_flush(d, piece, sizeof piece), stdout);
    putchar('\n');
    if (rc) fprintf(stderr, "device_map: error: %s\n", err.msg);

    char where[1 << 14];
    if (lyra_model_device_map(m, where, sizeof where) < sizeof where)
        fprintf(stderr, "device map: %s\n", where);
    lyra_detok_free(d);
    lyra_sampler_free(s);
    free(toks);
    lyra_context_free(ctx);
    lyra_model_free(m);
    return rc;
}
