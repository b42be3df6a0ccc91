/* pipeline.c: the smallest program using liblyra's pipeline API: load a
 * model (a GGUF path or org/name[:TAG] from the Hugging Face cache) with a
 * config discovered as `lyra` does, generate greedily, stream the text,
 * then print where the model's modules went and any fallback steps.
 *
 *   cc examples/pipeline.c $(pkg-config --cflags --libs lyra) -o pipeline
 *   ./pipeline model.gguf "Once upon a time" 64
 */
#include <stdio.h>
#include <stdlib.h>

#include <lyra.h>

/* Print each piece as it comes; returning non-zero would cancel. */
static int on_piece(const char *piece, size_t len, void *user) {
    (void)user;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [PROMPT] [MAX_NEW_TOKENS]\n", argv[0]);
        return 2;
    }
    const char *prompt = argc > 2 ? argv[2] : "Once upon a time";
    const char *n = argc > 3 ? argv[3] : "64";
    lyra_error err;
    lyra_kwargs *kw = lyra_kwargs_new();
    if (!kw) return 3;
    if (lyra_kwargs_set(kw, "max_new_tokens", n, &err) || lyra_kwargs_set(kw, "temperature", "0", &err)) {
        fprintf(stderr, "pipeline: error: %s\n", err.msg);
        lyra_kwargs_free(kw);
        return err.code;
    }
    lyra_pipeline *p = lyra_load_pipeline(argv[1], "text-generation", NULL, kw, &err);
    lyra_kwargs_free(kw);
    if (!p) {
        fprintf(stderr, "pipeline: error: %s\n", err.msg);
        return err.code;
    }
    int rc = lyra_pipeline_generate(p, prompt, on_piece, NULL, NULL, &err);
    putchar('\n');
    if (rc) fprintf(stderr, "pipeline: error: %s\n", err.msg);
    /* where the modules are, and what the progressive fallback did */
    char map[1 << 14];
    lyra_model *m = lyra_pipeline_model(p);
    if (lyra_model_device_map(m, map, sizeof map) < sizeof map) fprintf(stderr, "device map: %s\n", map);
    int steps = lyra_model_fallback_steps(m);
    fprintf(stderr, "fallback steps: %d\n", steps);
    for (int i = 0; i < steps; i++) {
        lyra_fallback_step s;
        if (lyra_model_fallback_step(m, i, &s) == 0)
            fprintf(stderr, "  %s: device %s asked %llu bytes: %s %d -> %d\n",
                    s.phase == LYRA_PHASE_LOAD ? "load" : "generate", s.device,
                    (unsigned long long)s.asked, s.what, (int)s.from_k, (int)s.to_k);
    }
    lyra_pipeline_free(p);
    return rc;
}
