/* test_quantize_load.c: on-load quantization (lyra_model_params.load_in_bits).
 * stories260K (F32) loaded as stored, with 8 bits and with 4 bits: the matrix
 * weights become Q8_0 / Q4_0 (the embedding and head Q8_0 in both) (its rows of 64 are not multiples of 256, so
 * not Q4_K; rows of n_ff that are not a multiple of 32 stay F32), norms stay F32, the
 * model's byte count and the planner's accounting follow the new sizes, and
 * the perplexity on tests/data/stories.txt (our own held-out text, ctx 256,
 * every position after the first of each window scored) stays within the
 * bounds of docs/PERF.md: +1% for 8 bits, +10% for 4 bits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"
#include "testutil.h"

#define CTX 256

static double perplexity(lyra_model *m, const int32_t *tok, size_t n) {
    lyra_context_params cp = lyra_context_default_params();
    cp.n_ctx = CTX;
    cp.n_batch = CTX;
    lyra_context *c = NULL;
    lyra_error err;
    if (lyra_context_new(m, &cp, &c, &err)) {
        CHECK(0, "context: %s", err.msg);
        return 0;
    }
    int32_t V = lyra_model_n_vocab(m);
    double nll = 0;
    size_t scored = 0;
    for (size_t s = 0; s + CTX <= n; s += CTX) {
        lyra_context_truncate(c, 0);
        if (lyra_eval(c, tok + s, CTX, 1, &err)) {
            CHECK(0, "eval: %s", err.msg);
            break;
        }
        for (int i = 0; i + 1 < CTX; i++) {
            const float *l = lyra_get_logits(c, i);
            double mx = l[0], sum = 0;
            for (int v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
            for (int v = 0; v < V; v++) sum += exp(l[v] - mx);
            nll += log(sum) + mx - l[tok[s + i + 1]];
            scored++;
        }
    }
    lyra_context_free(c);
    return scored ? exp(nll / (double)scored) : 0;
}

int main(void) {
    const char *path = test_shared_path("models/stories260K.gguf");
    char model[600], text_path[600];
    snprintf(model, sizeof model, "%s", path);
    snprintf(text_path, sizeof text_path, "%s/tests/data/stories.txt",
             getenv("LYRA_SRC_DIR") ? getenv("LYRA_SRC_DIR") : ".");
    size_t len = 0;
    char *text = test_read_file(text_path, &len);
    if (!text) test_skip("tests/data/stories.txt not found (LYRA_SRC_DIR)");
    unsetenv("LYRA_SIM_GPUS");
    double ppl[3] = {0, 0, 0};
    uint64_t bytes[3] = {0, 0, 0};
    const int bits[3] = {0, 8, 4};
    for (int k = 0; k < 3; k++) {
        lyra_model_params p = lyra_model_default_params();
        p.load_in_bits = bits[k];
        p.n_ctx = CTX;
        p.n_batch = CTX;
        lyra_model *m = NULL;
        lyra_error err;
        if (lyra_model_open(model, &p, &m, &err)) {
            CHECK(0, "open %d bits: %s", bits[k], err.msg);
            continue;
        }
        int32_t *tok = NULL;
        size_t n = 0;
        CHECK(lyra_tokenize(m, text, len, 1, 0, &tok, &n, &err) == 0, "tokenize");
        lyra_llama *a = m->arch;
        lyra_type want = bits[k] == 8 ? LYRA_TYPE_Q8_0 : bits[k] == 4 ? LYRA_TYPE_Q4_0 : LYRA_TYPE_F32;
        lyra_type want_down = a->layers[0].w_down.cols % 32 ? LYRA_TYPE_F32 : want; /* rows of n_ff */
        CHECK(a->layers[0].wq.type == want && a->layers[0].w_gate.type == want &&
                  a->layers[0].w_down.type == want_down &&
                  a->tok_embd.type == (bits[k] ? LYRA_TYPE_Q8_0 : LYRA_TYPE_F32),
              "%d bits: wq %s w_down %s", bits[k], lyra_type_name(a->layers[0].wq.type),
              lyra_type_name(a->layers[0].w_down.type));
        CHECK(a->layers[0].attn_norm.type == LYRA_TYPE_F32, "norms stay F32");
        bytes[k] = lyra_model_n_bytes(m);
        lyra_device_usage u;
        lyra_context *c = NULL;
        lyra_context_params cp = lyra_context_default_params();
        cp.n_ctx = CTX;
        cp.n_batch = CTX;
        if (!lyra_context_new(m, &cp, &c, &err)) {
            lyra_context_device_usage(c, 0, &u);
            CHECK(u.weights == bytes[k] && m->plan->use[lyra_plan_device_index(m->plan, "cpu")].weights == 0 + bytes[k],
                  "%d bits: weights %llu, model %llu", bits[k], (unsigned long long)u.weights,
                  (unsigned long long)bytes[k]);
            lyra_context_free(c);
        }
        ppl[k] = perplexity(m, tok, n);
        printf("stories260K load_in_bits %d: %llu weight bytes, perplexity %.4f (ctx %d, %zu tokens)\n",
               bits[k], (unsigned long long)bytes[k], ppl[k], CTX, n);
        free(tok);
        lyra_model_free(m);
    }
    CHECK(bytes[1] * 2 < bytes[0] && bytes[2] < bytes[1], "sizes %llu %llu %llu", (unsigned long long)bytes[0],
          (unsigned long long)bytes[1], (unsigned long long)bytes[2]);
    CHECK(ppl[0] > 1 && ppl[1] <= ppl[0] * 1.01, "8-bit perplexity %.4f vs %.4f (bound +1%%)", ppl[1], ppl[0]);
    CHECK(ppl[0] > 1 && ppl[2] <= ppl[0] * 1.10, "4-bit perplexity %.4f vs %.4f (bound +10%%)", ppl[2], ppl[0]);
    CHECK(ppl[2] != ppl[0] && ppl[1] != ppl[0], "quantization changed nothing");
    /* rows of 256: Q4_K; the logits stay close to the F32 model's */
    const char *bin = getenv("LYRA_BIN");
    if (bin) {
        char rnd[600], cmd[1400];
        snprintf(rnd, sizeof rnd, "%s/qload_rand256.gguf", test_tmp_dir());
        snprintf(cmd, sizeof cmd,
                 "\"%s\" -q mkmodel -o \"%s\" --preset tiny --dim 256 --layers 2 --type F32 --seed 9 "
                 "--threads 1", bin, rnd);
        CHECK(system(cmd) == 0, "mkmodel: %s", cmd);
        float *ref = NULL;
        int32_t V = 0;
        for (int k = 0; k < 2; k++) {
            lyra_model_params p = lyra_model_default_params();
            p.load_in_bits = k ? 4 : 0;
            lyra_model *m = NULL;
            lyra_error err;
            if (lyra_model_open(rnd, &p, &m, &err)) {
                CHECK(0, "open: %s", err.msg);
                break;
            }
            V = lyra_model_n_vocab(m);
            CHECK(m->arch->layers[1].wq.type == (k ? LYRA_TYPE_Q4_K : LYRA_TYPE_F32), "rand256: wq %s",
                  lyra_type_name(m->arch->layers[1].wq.type));
            lyra_context *c = NULL;
            int32_t t[4] = {1, 5, 9, 13};
            if (!lyra_context_new(m, NULL, &c, &err) && !lyra_eval(c, t, 4, 0, &err)) {
                const float *l = lyra_get_logits(c, -1);
                if (!k) {
                    ref = malloc((size_t)V * sizeof *ref);
                    memcpy(ref, l, (size_t)V * sizeof *ref);
                } else if (ref) {
                    double d = 0, r = 0;
                    for (int v = 0; v < V; v++) {
                        d += (double)(l[v] - ref[v]) * (l[v] - ref[v]);
                        r += (double)ref[v] * ref[v];
                    }
                    printf("rand256 Q4_K vs F32 logits: relative RMS %.4f\n", sqrt(d / r));
                    CHECK(sqrt(d / r) < 0.2, "Q4_K logits relative RMS %.4f", sqrt(d / r));
                }
            } else {
                CHECK(0, "eval: %s", err.msg);
            }
            lyra_context_free(c);
            lyra_model_free(m);
        }
        free(ref);
    }
    free(text);
    return test_done();
}
