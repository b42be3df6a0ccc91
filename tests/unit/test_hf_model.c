/* test_hf_model.c: Hugging Face folders (tests/data/hf, made by
 * tests/reference/make_hf_snapshots.py with transformers) against
 * transformers' logits and greedy tokens: each folder loaded with
 * lyra_model_open (F32 within 1e-4 of the largest logit, F16/BF16 2e-3),
 * then written as a GGUF (lyra convert's path) and read back: identical
 * logits. --dtype and load_in_8bit on a folder.
 * Also: the Q/K permutation and Gemma's 1 + w (tensors against the raw
 * safetensors), dtype conversion, and the error table of config.json. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fp16.h"
#include "format/gguf.h"
#include "format/hf_model.h"
#include "format/safetensors.h"
#include "lyra.h"
#include "testutil.h"

static const int32_t PROMPT[] = {1, 15, 27, 100, 200, 300, 42, 7, 511, 3};
#define NP ((int)(sizeof PROMPT / sizeof PROMPT[0]))
#define NV 512

static char src_dir[4096];

static const char *fixture(const char *name) {
    static char buf[4200];
    snprintf(buf, sizeof buf, "%s/tests/data/hf/%s", src_dir, name);
    return buf;
}

/* g (with a stand-in llama vocabulary of NV tokens) written to path. */
static int write_with_vocab(const lyra_gguf *g, const char *path, lyra_error *err) {
    lyra_gguf_writer *w = lyra_gguf_writer_new();
    lyra_gguf_writer_copy_kv(w, g, NULL, NULL);
    static char names[NV][16];
    const char *tok[NV];
    float scores[NV];
    int32_t types[NV];
    for (int i = 0; i < NV; i++) {
        if (i == 0) snprintf(names[i], sizeof names[i], "<unk>");
        else if (i == 1) snprintf(names[i], sizeof names[i], "<s>");
        else if (i == 2) snprintf(names[i], sizeof names[i], "</s>");
        else snprintf(names[i], sizeof names[i], "t%d", i);
        tok[i] = names[i];
        scores[i] = -(float)i;
        types[i] = i < 3 ? 3 : 1;
    }
    if (lyra_gguf_find_key(g, "tokenizer.ggml.model") < 0) {
        lyra_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
        lyra_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", tok, NULL, NV);
        lyra_gguf_writer_add_arr(w, "tokenizer.ggml.scores", LYRA_GGUF_F32, scores, NV);
        lyra_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", LYRA_GGUF_I32, types, NV);
        lyra_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1);
        lyra_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2);
    }
    for (int64_t i = 0; i < lyra_gguf_n_tensors(g); i++) {
        const lyra_gguf_tensor *t = lyra_gguf_tensor_at(g, i);
        lyra_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data);
    }
    int rc = lyra_gguf_writer_write(w, path, err);
    lyra_gguf_writer_free(w);
    return rc;
}

/* Logits of the prompt [NP][NV] and 8 greedy tokens after it, from the
 * model at path (a folder or a GGUF) opened with mp. */
static int run_model(const char *path, const lyra_model_params *mp, float *logits, int *greedy) {
    lyra_error err;
    lyra_model *m = NULL;
    int rc = lyra_model_open(path, mp, &m, &err);
    CHECK(rc == 0, "%s: model: %s", path, err.msg);
    if (rc) return rc;
    lyra_context *c = NULL;
    lyra_context_params cp = lyra_context_default_params();
    cp.kv_type = LYRA_KV_F32;
    rc = lyra_context_new(m, &cp, &c, &err);
    CHECK(rc == 0, "%s: context: %s", path, err.msg);
    if (!rc) rc = lyra_eval(c, PROMPT, NP, 1, &err);
    CHECK(rc == 0, "%s: eval: %s", path, err.msg);
    for (int i = 0; !rc && i < NP; i++) memcpy(logits + i * NV, lyra_get_logits(c, i), NV * sizeof(float));
    for (int k = 0; !rc && k < 8; k++) {
        const float *l = lyra_get_logits(c, -1);
        int32_t t = 0;
        for (int v = 1; v < NV; v++) if (l[v] > l[t]) t = v;
        greedy[k] = t;
        rc = lyra_eval(c, &t, 1, 0, &err);
    }
    lyra_context_free(c);
    lyra_model_free(m);
    return rc;
}

/* Largest |a - b| over the largest |b|. */
static double rel_diff(const float *a, const float *b, size_t n) {
    double md = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d;
        if (fabs(b[i]) > mx) mx = fabs(b[i]);
    }
    return mx > 0 ? md / mx : md;
}

static void check_snapshot(const char *name, double tol, int32_t n_ctx) {
    lyra_error err;
    char lp[4300], ep[4300];
    snprintf(lp, sizeof lp, "%s/logits.bin", fixture(name));
    snprintf(ep, sizeof ep, "%s/expected.json", fixture(name));
    size_t len = 0;
    float *ref = (float *)test_read_file(lp, &len);
    char *js = test_read_file(ep, NULL);
    CHECK(ref && len == sizeof(float) * NP * NV && js, "%s: logits.bin, expected.json", name);
    const char *gp = js ? strstr(js, "\"greedy\": [") : NULL;
    int want[8], ok = gp != NULL;
    for (int k = 0; ok && k < 8; k++) {
        gp = k ? strchr(gp, ',') : strchr(gp, '[');
        ok = gp && sscanf(gp + 1, "%d", &want[k]) == 1;
        if (ok) gp++;
    }
    CHECK(ok, "%s: expected.json greedy", name);
    static float direct[NP * NV], conv[NP * NV];
    int g1[8], g2[8];
    lyra_model_params mp = lyra_model_default_params();
    mp.n_ctx = n_ctx ? n_ctx : 64;
    /* the folder itself */
    if (ref && ok && run_model(fixture(name), &mp, direct, g1) == 0) {
        double d = rel_diff(direct, ref, NP * NV);
        CHECK(d <= tol, "%s: logits differ from transformers' by %g of the largest (tolerance %g)", name, d, tol);
        for (int k = 0; k < 8; k++)
            CHECK(g1[k] == want[k], "%s: greedy token %d is %d, transformers %d", name, k, g1[k], want[k]);
    }
    /* written as a GGUF (what lyra convert does), read back: the same logits */
    lyra_gguf *g = NULL;
    int rc = lyra_hf_open_path(fixture(name), LYRA_HF_DTYPE_AUTO, &g, &err);
    CHECK(rc == 0, "%s: open: %s", name, err.msg);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.gguf", test_tmp_dir(), name);
    if (!rc) {
        rc = write_with_vocab(g, path, &err);
        CHECK(rc == 0, "%s: write: %s", name, err.msg);
    }
    lyra_gguf_close(g);
    if (!rc && run_model(path, &mp, conv, g2) == 0)
        CHECK(!memcmp(conv, direct, sizeof conv) && !memcmp(g1, g2, sizeof g1),
              "%s: the GGUF's logits differ from the folder's (by %g)", name, rel_diff(conv, direct, NP * NV));
    free(ref);
    free(js);
}

/* Logits of the last rows of tokens[n] from the model at path, context n_ctx. */
static int run_tail(const char *path, int32_t n_ctx, const int32_t *tokens, int n, int rows, float *out) {
    lyra_error err;
    lyra_model_params mp = lyra_model_default_params();
    mp.n_ctx = n_ctx;
    lyra_model *m = NULL;
    int rc = lyra_model_open(path, &mp, &m, &err);
    CHECK(rc == 0, "%s: model: %s", path, err.msg);
    if (rc) return rc;
    lyra_context *c = NULL;
    lyra_context_params cp = lyra_context_default_params();
    cp.kv_type = LYRA_KV_F32;
    rc = lyra_context_new(m, &cp, &c, &err);
    if (!rc) rc = lyra_eval(c, tokens, n, 1, &err);
    CHECK(rc == 0, "%s: eval: %s", path, err.msg);
    for (int i = 0; !rc && i < rows; i++) memcpy(out + i * NV, lyra_get_logits(c, n - rows + i), NV * sizeof(float));
    lyra_context_free(c);
    lyra_model_free(m);
    return rc;
}

/* longrope (phi3_longrope: original_max_position_embeddings 32, 128 in
 * all): check_snapshot ran the short prompt with a context of 32 (the short
 * factors, as transformers within 32 positions); here a 40-token prompt in
 * a context of 64 takes the long factors, as transformers does past 32: its
 * last rows against logits_long.bin, from the folder and from its GGUF. The
 * short prompt in the long context must differ from transformers' short
 * logits (the factors matter). */
static void check_longrope(void) {
    enum { NL = 4 * NP, ROWS = 8 };
    int32_t toks[NL];
    for (int i = 0; i < NL; i++) toks[i] = PROMPT[i % NP];
    char lp[4300];
    snprintf(lp, sizeof lp, "%s/logits_long.bin", fixture("phi3_longrope"));
    size_t len = 0;
    float *ref = (float *)test_read_file(lp, &len);
    CHECK(ref && len == sizeof(float) * ROWS * NV, "phi3_longrope: logits_long.bin");
    static float got[ROWS * NV], short_ctx[NP * NV];
    if (ref && run_tail(fixture("phi3_longrope"), 64, toks, NL, ROWS, got) == 0) {
        double d = rel_diff(got, ref, ROWS * NV);
        CHECK(d <= 1e-4, "phi3_longrope: positions %d..%d (long factors) differ from transformers' by %g", NL - ROWS,
              NL - 1, d);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/phi3_longrope.gguf", test_tmp_dir()); /* check_snapshot wrote it */
    static float got2[ROWS * NV];
    if (ref && run_tail(path, 64, toks, NL, ROWS, got2) == 0)
        CHECK(!memcmp(got, got2, sizeof got), "phi3_longrope: the GGUF's long logits differ from the folder's");
    free(ref);
    snprintf(lp, sizeof lp, "%s/logits.bin", fixture("phi3_longrope"));
    ref = (float *)test_read_file(lp, &len);
    if (ref && len == sizeof(float) * NP * NV && run_tail(fixture("phi3_longrope"), 64, PROMPT, NP, NP, short_ctx) == 0)
        CHECK(rel_diff(short_ctx, ref, NP * NV) > 1e-3, "phi3_longrope: the long factors change nothing (%g)",
              rel_diff(short_ctx, ref, NP * NV));
    free(ref);
}

/* dtype and load_in_8bit on a folder: close to the F32 reference. */
static void check_dtype_and_8bit(void) {
    char lp[4300];
    snprintf(lp, sizeof lp, "%s/logits.bin", fixture("llama"));
    size_t len = 0;
    float *ref = (float *)test_read_file(lp, &len);
    static float out[NP * NV];
    int gr[8];
    const struct { int dtype, bits; double tol; } V[] = {{2, 0, 2e-3}, {3, 0, 2e-2}, {0, 8, 0.2}, {1, 0, 1e-4}};
    for (size_t i = 0; ref && i < sizeof V / sizeof V[0]; i++) {
        lyra_model_params mp = lyra_model_default_params();
        mp.n_ctx = 64;
        mp.dtype = V[i].dtype;
        mp.load_in_bits = V[i].bits;
        if (run_model(fixture("llama"), &mp, out, gr) == 0) {
            double d = rel_diff(out, ref, NP * NV);
            CHECK(d <= V[i].tol, "dtype %d bits %d: %g of the largest (tolerance %g)",
                  V[i].dtype, V[i].bits, d, V[i].tol);
        }
    }
    lyra_model_params mp = lyra_model_default_params();
    mp.dtype = 7;
    lyra_model *m = NULL;
    lyra_error err;
    CHECK(lyra_model_open(fixture("llama"), &mp, &m, &err) == LYRA_ERR_INPUT && !m &&
              !strcmp(err.msg, "dtype: must be 0 (auto) to 3 (bfloat16), got 7"), "bad dtype: %s", err.msg);
    free(ref);
}

/* blk.0.attn_q rows are Llama's permutation of q_proj's; Gemma norms 1 + w. */
static void test_conventions(void) {
    lyra_error err;
    lyra_gguf *g = NULL;
    lyra_st *st = NULL;
    CHECK(lyra_hf_open(fixture("llama"), LYRA_HF_DTYPE_AUTO, &g, &err) == 0, "open: %s", err.msg);
    CHECK(lyra_st_open(fixture("llama"), &st, &err) == 0, "st: %s", err.msg);
    if (g && st) {
        const lyra_gguf_tensor *q = lyra_gguf_find_tensor(g, "blk.0.attn_q.weight");
        const lyra_st_tensor *s = lyra_st_find(st, "model.layers.0.self_attn.q_proj.weight");
        CHECK(q && s && q->ne[0] == 32 && q->ne[1] == 32, "q shape");
        /* heads of 8 rows: row (i*2 + j) of a head is row (j*4 + i) of q_proj */
        const float *a = q->data, *b = s->data;
        int bad = 0;
        for (int h = 0; h < 4; h++)
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 2; j++)
                    bad += memcmp(a + (h * 8 + i * 2 + j) * 32, b + (h * 8 + j * 4 + i) * 32, 32 * 4) != 0;
        CHECK(bad == 0, "q rows permuted: %d rows differ", bad);
        const lyra_gguf_tensor *v = lyra_gguf_find_tensor(g, "blk.0.attn_v.weight");
        CHECK(v && !memcmp(v->data, lyra_st_find(st, "model.layers.0.self_attn.v_proj.weight")->data, 32 * 16 * 4),
              "v as stored");
    }
    lyra_st_close(st);
    lyra_gguf_close(g);
    g = NULL;
    st = NULL;
    CHECK(lyra_hf_open(fixture("gemma"), LYRA_HF_DTYPE_AUTO, &g, &err) == 0, "open: %s", err.msg);
    CHECK(lyra_st_open(fixture("gemma"), &st, &err) == 0, "st: %s", err.msg);
    if (g && st) {
        const lyra_gguf_tensor *n = lyra_gguf_find_tensor(g, "blk.1.attn_norm.weight");
        const lyra_st_tensor *s = lyra_st_find(st, "model.layers.1.input_layernorm.weight");
        CHECK(n && s && n->type == LYRA_TYPE_F32, "norm");
        if (n && s)
            for (int i = 0; i < 32; i++)
                CHECK(((const float *)n->data)[i] == ((const float *)s->data)[i] + 1.0f, "1 + w at %d", i);
        CHECK(!lyra_gguf_find_tensor(g, "output.weight"), "tied head");
    }
    lyra_st_close(st);
    lyra_gguf_close(g);
    /* dtype: bf16 stored -> matrices F16 when asked, norms F32 */
    g = NULL;
    CHECK(lyra_hf_open(fixture("llama_bf16"), LYRA_HF_DTYPE_AUTO, &g, &err) == 0, "open: %s", err.msg);
    if (g) {
        CHECK(lyra_gguf_find_tensor(g, "blk.0.ffn_up.weight")->type == LYRA_TYPE_BF16, "bf16 in place");
        CHECK(lyra_gguf_find_tensor(g, "blk.0.ffn_norm.weight")->type == LYRA_TYPE_F32, "norm f32");
    }
    lyra_gguf_close(g);
    g = NULL;
    CHECK(lyra_hf_open(fixture("llama_bf16"), LYRA_HF_DTYPE_F32, &g, &err) == 0, "open: %s", err.msg);
    if (g) CHECK(lyra_gguf_find_tensor(g, "blk.0.ffn_up.weight")->type == LYRA_TYPE_F32, "to f32");
    lyra_gguf_close(g);
}

/* config.json cases: the exact one-line messages. */
static void test_config_errors(void) {
    static const struct { const char *json, *msg; } C[] = {
        {"{\"architectures\": [\"GPT2LMHeadModel\"]}",
         "config.json: architecture GPT2LMHeadModel is not supported; lyra supports LlamaForCausalLM, "
         "MistralForCausalLM, PhiForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, GemmaForCausalLM, "
         "Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3ForConditionalGeneration (text), Phi3ForCausalLM"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": \"big\"}", "config.json: hidden_size is not an integer"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"num_hidden_layers\": 0}", "config.json: num_hidden_layers = 0 is out of range"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}}",
         "config.json: rope_scaling type 'yarn' is not supported (default, linear, llama3, longrope; lyra's forward "
         "pass has no YaRN or dynamic NTK rope)"},
        {"{\"architectures\": [\"Phi3ForCausalLM\"], \"rope_scaling\": {\"type\": \"longrope\", \"short_factor\": [1], "
         "\"long_factor\": [1]}}",
         "config.json: rope_scaling.long_factor must be a list of 48 numbers (rotary dimensions / 2), got 1"},
        {"{\"architectures\": [\"Phi3ForCausalLM\"], \"hidden_size\": 32, \"num_attention_heads\": 4, \"num_key_value_heads\": 4, "
         "\"rope_scaling\": {\"type\": \"longrope\", \"long_factor\": [1, 2, 3, 4], \"short_factor\": [1, 0, 1, 1]}}",
         "config.json: rope_scaling.short_factor[1] is not a positive number"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_act\": \"relu\"}",
         "config.json: hidden_act 'relu' is not supported for LlamaForCausalLM (silu)"},
        {"{\"architectures\": [\"LlamaForCausalLM\"], \"num_key_value_heads\": 3}",
         "config.json: num_key_value_heads = 3 does not divide num_attention_heads = 32"},
        {"{\"model_type\": \"bert\"}",
         "config.json: neither architectures nor a known model_type (bert); lyra supports LlamaForCausalLM, "
         "MistralForCausalLM, PhiForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, GemmaForCausalLM, "
         "Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3ForConditionalGeneration (text), Phi3ForCausalLM"},
        {"{\"architectures\": [\"LlamaForCausalLM\"]}", "DIR: no model.safetensors or model.safetensors.index.json in this folder"},
        {"[1]", "config.json: not a JSON object"},
    };
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/badcfg", test_tmp_dir());
    mkdir(dir, 0777);
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        char p[4300];
        snprintf(p, sizeof p, "%s/config.json", dir);
        FILE *f = fopen(p, "w");
        fputs(C[i].json, f);
        fclose(f);
        lyra_gguf *g = NULL;
        lyra_error err;
        int rc = lyra_hf_open(dir, LYRA_HF_DTYPE_AUTO, &g, &err);
        char want[8400];
        if (!strncmp(C[i].msg, "DIR: ", 5)) snprintf(want, sizeof want, "%s: %s", dir, C[i].msg + 5);
        else snprintf(want, sizeof want, "%s/%s", dir, C[i].msg);
        CHECK(rc == LYRA_ERR_INPUT && !g && !strcmp(err.msg, want), "case %zu: %d '%s'\n  want '%s'", i, rc,
              err.msg, want);
    }
}

int main(void) {
    const char *s = getenv("LYRA_SRC_DIR");
    snprintf(src_dir, sizeof src_dir, "%s", s ? s : ".");
    test_conventions();
    test_config_errors();
    static const struct { const char *name; double tol; int32_t n_ctx; } S[] = {
        {"llama", 1e-4, 0},  {"llama_sharded", 1e-4, 0}, {"llama3_rope", 1e-4, 0}, {"mistral", 1e-4, 0},
        {"phi2", 1e-4, 0},   {"qwen2", 1e-4, 0},         {"qwen3", 1e-4, 0},       {"gemma", 1e-4, 0},
        {"gemma2", 1e-4, 0}, {"gemma3", 1e-4, 0},        {"phi3", 1e-4, 0},        {"llama_f16", 2e-3, 0},
        {"llama_bf16", 2e-3, 0},
        {"phi3_longrope", 1e-4, 32}, /* within original_max_position_embeddings: the short factors */
    };
    for (size_t i = 0; i < sizeof S / sizeof S[0]; i++) check_snapshot(S[i].name, S[i].tol, S[i].n_ctx);
    check_longrope();
    check_dtype_and_8bit();
    return test_done();
}
