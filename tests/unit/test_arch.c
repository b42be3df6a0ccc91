/* test_arch.c: the architectures of the Llama family (arch/llama.h) end to
 * end on random-weight models this test writes (lyra's GGUF writer, tensor
 * and key names as llama.cpp's converter writes them): llama, mistral (llama
 * with a sliding window), qwen2, qwen3, phi2 (separate and fused Q/K/V), phi3
 * (long-context rope factors), gemma, gemma2, gemma3. For each:
 *  - it loads, and its description and module names are what the file says;
 *  - logits of a prompt (one batch) and of decoded tokens are finite, and
 *    BITWISE equal between all-CPU and splits over two simulated GPUs and the
 *    CPU (gpu_layers + tensor_split; an explicit map with the head on a GPU);
 *  - moving layers between devices between two tokens (their KV cache, a
 *    ring for windowed layers, with them), by lyra_context_move_layer and by
 *    the fallback when GPU allocations fail mid-generation, keeps them
 *    bitwise equal;
 *  - a device without an op the architecture needs is refused by name;
 *  - load_in_8bit and load_in_4bit run and stay close to F32;
 *  - sliding windows: generation far past the window works, the windowed
 *    layers' KV memory stops growing at the ring, the logits agree with a
 *    run whose cache is not a ring (chunks larger than the context), and
 *    truncating into what a ring overwrote forgets the whole sequence.
 * LYRA_ARCH_KEEP=DIR keeps the models and writes DIR/ARCH.logits (all-CPU
 * logits of the token list, [N_STEPS][n_vocab] float32) for comparing with
 * other implementations (llama.cpp). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "format/gguf.h"
#include "runtime/runtime.h"
#include "testutil.h"

#define N_PROMPT 20
#define N_GEN 6
#define N_STEPS (N_PROMPT + N_GEN)
#define N_VOCAB 288 /* <unk> <s> </s>, 256 byte tokens, 5 special, 24 words */

/* ---------------------------------------------------------- model writer */

typedef struct variant {
    const char *label;    /* file name and messages */
    const char *arch;     /* general.architecture */
    int n_embd, n_head, n_kv, head_dim, n_rot, n_ff, n_layer;
    int key_length;       /* write attention.key_length (head_dim may differ from n_embd/n_head) */
    int fused_qkv;        /* attn_qkv */
    int window;           /* attention.sliding_window (0: none) */
    int tied;             /* no output.weight */
} variant;

static const variant VARIANTS[] = {
    /* label       arch      E   nh kv hd  rot  F   L  kl fu win tied */
    {"llama",    "llama",  64, 4, 2, 16, 16, 96,  4, 0, 0, 0,  0},
    {"mistral",  "llama",  64, 4, 2, 16, 16, 96,  4, 0, 0, 10, 0},
    {"qwen2",    "qwen2",  64, 4, 2, 16, 16, 96,  4, 0, 0, 0,  1},
    {"qwen3",    "qwen3",  64, 4, 2, 32, 32, 96,  4, 1, 0, 0,  0},
    {"phi2",     "phi2",   64, 4, 4, 16, 8,  128, 4, 0, 0, 0,  0},
    {"phi2qkv",  "phi2",   64, 4, 4, 16, 8,  128, 4, 0, 1, 0,  0},
    {"phi3",     "phi3",   64, 4, 4, 16, 16, 96,  4, 0, 1, 0,  0},
    {"gemma",    "gemma",  64, 4, 1, 32, 32, 128, 4, 1, 0, 0,  1},
    {"gemma2",   "gemma2", 64, 4, 2, 32, 32, 128, 4, 1, 0, 10, 1},
    {"gemma3",   "gemma3", 64, 4, 2, 32, 32, 128, 7, 1, 0, 10, 1},
};
#define N_VARIANTS (int)(sizeof VARIANTS / sizeof VARIANTS[0])

static lyra_rng rng;
static float frand(void) { return lyra_rng_f32(&rng) * 2.0f - 1.0f; }

/* Tensors to write: their data lives until the file is written. */
typedef struct tlist {
    float *data[512];
    int n;
} tlist;

/* A random tensor [rows][cols] (rows 0: a vector): matrices uniform with
 * scale 1/sqrt(cols) * gain, vectors mean + spread * uniform. */
static void add(lyra_gguf_writer *w, tlist *tl, const char *name, int64_t cols, int64_t rows,
                float mean, float spread) {
    int64_t n = cols * (rows ? rows : 1);
    float *d = malloc((size_t)n * sizeof *d);
    float s = rows ? spread / sqrtf((float)cols) : spread;
    for (int64_t i = 0; i < n; i++) d[i] = mean + s * frand();
    int64_t ne[2] = {cols, rows};
    CHECK(lyra_gguf_writer_add_tensor(w, name, LYRA_TYPE_F32, rows ? 2 : 1, ne, d) == 0, "add %s", name);
    tl->data[tl->n++] = d;
}

static void kv_u32(lyra_gguf_writer *w, const variant *v, const char *suffix, uint32_t x) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", v->arch, suffix);
    lyra_gguf_writer_add_u32(w, k, x);
}

static void kv_f32(lyra_gguf_writer *w, const variant *v, const char *suffix, float x) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", v->arch, suffix);
    lyra_gguf_writer_add_f32(w, k, x);
}

/* An SPM vocabulary llama.cpp also reads: <unk> <s> </s>, the 256 byte
 * tokens, a few words. */
static void add_vocab(lyra_gguf_writer *w) {
    static char names[N_VOCAB][16];
    static const char *const special[5] = {"<|endoftext|>", "<|end|>", "<|user|>", "<|assistant|>",
                                           "<|system|>"}; /* llama.cpp's phi3 vocabulary looks for them */
    const char *tok[N_VOCAB];
    float score[N_VOCAB];
    int32_t type[N_VOCAB];
    for (int i = 0; i < N_VOCAB; i++) {
        if (i < 3) snprintf(names[i], sizeof names[i], "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (i < 259) snprintf(names[i], sizeof names[i], "<0x%02X>", i - 3);
        else if (i < 264) snprintf(names[i], sizeof names[i], "%s", special[i - 259]);
        else snprintf(names[i], sizeof names[i], "\xe2\x96\x81w%d", i - 264);
        tok[i] = names[i];
        score[i] = i < 264 ? 0.0f : -(float)(i - 264);
        type[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : i < 264 ? 3 : 1;
    }
    lyra_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    lyra_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", tok, NULL, N_VOCAB);
    lyra_gguf_writer_add_arr(w, "tokenizer.ggml.scores", LYRA_GGUF_F32, score, N_VOCAB);
    lyra_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", LYRA_GGUF_I32, type, N_VOCAB);
    lyra_gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    lyra_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1);
    lyra_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2);
}

static int write_model(const variant *v, const char *path) {
    lyra_gguf_writer *w = lyra_gguf_writer_new();
    tlist tl = {{0}, 0};
    const int E = v->n_embd, Q = v->n_head * v->head_dim, KV = v->n_kv * v->head_dim, F = v->n_ff;
    const int phi2 = !strcmp(v->arch, "phi2"), phi3 = !strcmp(v->arch, "phi3");
    const int gemma = !strncmp(v->arch, "gemma", 5), qwen2 = !strcmp(v->arch, "qwen2");
    const int qk_norm = !strcmp(v->arch, "qwen3") || !strcmp(v->arch, "gemma3");
    const int post = !strcmp(v->arch, "gemma2") || !strcmp(v->arch, "gemma3");
    lyra_gguf_writer_add_str(w, "general.architecture", v->arch);
    lyra_gguf_writer_add_str(w, "general.name", v->label);
    kv_u32(w, v, "context_length", 512);
    kv_u32(w, v, "embedding_length", (uint32_t)E);
    kv_u32(w, v, "block_count", (uint32_t)v->n_layer);
    kv_u32(w, v, "feed_forward_length", (uint32_t)F);
    kv_u32(w, v, "attention.head_count", (uint32_t)v->n_head);
    kv_u32(w, v, "attention.head_count_kv", (uint32_t)v->n_kv);
    if (v->key_length) {
        kv_u32(w, v, "attention.key_length", (uint32_t)v->head_dim);
        kv_u32(w, v, "attention.value_length", (uint32_t)v->head_dim);
    }
    kv_u32(w, v, "rope.dimension_count", (uint32_t)v->n_rot);
    if (phi2) kv_f32(w, v, "attention.layer_norm_epsilon", 1e-5f);
    else kv_f32(w, v, "attention.layer_norm_rms_epsilon", 1e-6f);
    kv_f32(w, v, "rope.freq_base", !strcmp(v->arch, "qwen2") || !strcmp(v->arch, "gemma3") ? 1e6f : 10000.0f);
    if (v->window) kv_u32(w, v, "attention.sliding_window", (uint32_t)v->window);
    if (!strcmp(v->arch, "gemma2")) { /* small caps, so that they matter */
        kv_f32(w, v, "attn_logit_softcapping", 0.5f);
        kv_f32(w, v, "final_logit_softcapping", 2.0f);
    }
    if (!strcmp(v->arch, "gemma3")) { /* linear scaling on the global layers */
        char k[64];
        snprintf(k, sizeof k, "%s.rope.scaling.type", v->arch);
        lyra_gguf_writer_add_str(w, k, "linear");
        kv_f32(w, v, "rope.scaling.factor", 2.0f);
    }
    if (phi3) {
        kv_u32(w, v, "rope.scaling.original_context_length", 64);
        kv_f32(w, v, "rope.scaling.attn_factor", 1.1f);
    }
    add_vocab(w);
    add(w, &tl, "token_embd.weight", E, N_VOCAB, 0.0f, gemma ? 1.0f : 8.0f);
    if (phi3) {
        add(w, &tl, "rope_factors_long.weight", v->n_rot / 2, 0, 2.0f, 1.0f);
        add(w, &tl, "rope_factors_short.weight", v->n_rot / 2, 0, 1.2f, 0.2f);
    }
    for (int l = 0; l < v->n_layer; l++) {
        char n[96];
#define T(base, suffix) (snprintf(n, sizeof n, "blk.%d.%s.%s", l, base, suffix), n)
        add(w, &tl, T("attn_norm", "weight"), E, 0, 1.0f, 0.2f);
        if (phi2) add(w, &tl, T("attn_norm", "bias"), E, 0, 0.0f, 0.2f);
        if (v->fused_qkv) {
            add(w, &tl, T("attn_qkv", "weight"), E, Q + 2 * KV, 0.0f, 1.0f);
            if (phi2) add(w, &tl, T("attn_qkv", "bias"), Q + 2 * KV, 0, 0.0f, 0.2f);
        } else {
            add(w, &tl, T("attn_q", "weight"), E, Q, 0.0f, 1.0f);
            add(w, &tl, T("attn_k", "weight"), E, KV, 0.0f, 1.0f);
            add(w, &tl, T("attn_v", "weight"), E, KV, 0.0f, 1.0f);
            if (phi2 || qwen2) {
                add(w, &tl, T("attn_q", "bias"), Q, 0, 0.0f, 0.2f);
                add(w, &tl, T("attn_k", "bias"), KV, 0, 0.0f, 0.2f);
                add(w, &tl, T("attn_v", "bias"), KV, 0, 0.0f, 0.2f);
            }
        }
        if (qk_norm) {
            add(w, &tl, T("attn_q_norm", "weight"), v->head_dim, 0, 1.0f, 0.2f);
            add(w, &tl, T("attn_k_norm", "weight"), v->head_dim, 0, 1.0f, 0.2f);
        }
        add(w, &tl, T("attn_output", "weight"), Q, E, 0.0f, 1.0f);
        if (phi2) add(w, &tl, T("attn_output", "bias"), E, 0, 0.0f, 0.2f);
        if (post) add(w, &tl, T("post_attention_norm", "weight"), E, 0, 1.0f, 0.2f);
        if (!phi2) add(w, &tl, T("ffn_norm", "weight"), E, 0, 1.0f, 0.2f);
        if (phi3) {
            add(w, &tl, T("ffn_up", "weight"), E, 2 * F, 0.0f, 1.0f);
        } else {
            if (!phi2) add(w, &tl, T("ffn_gate", "weight"), E, F, 0.0f, 1.0f);
            add(w, &tl, T("ffn_up", "weight"), E, F, 0.0f, 1.0f);
            if (phi2) add(w, &tl, T("ffn_up", "bias"), F, 0, 0.0f, 0.2f);
        }
        add(w, &tl, T("ffn_down", "weight"), F, E, 0.0f, 1.0f);
        if (phi2) add(w, &tl, T("ffn_down", "bias"), E, 0, 0.0f, 0.2f);
        if (post) add(w, &tl, T("post_ffw_norm", "weight"), E, 0, 1.0f, 0.2f);
#undef T
    }
    add(w, &tl, "output_norm.weight", E, 0, 1.0f, 0.2f);
    if (phi2) add(w, &tl, "output_norm.bias", E, 0, 0.0f, 0.2f);
    if (!v->tied) add(w, &tl, "output.weight", E, N_VOCAB, 0.0f, 4.0f);
    if (phi2) add(w, &tl, "output.bias", N_VOCAB, 0, 0.0f, 0.5f);
    lyra_error err;
    int rc = lyra_gguf_writer_write(w, path, &err);
    CHECK(rc == 0, "write %s: %s", path, err.msg);
    lyra_gguf_writer_free(w);
    for (int i = 0; i < tl.n; i++) free(tl.data[i]);
    return rc;
}

/* ------------------------------------------------------------------ runs */

static void make_tokens(int32_t *t, int n, uint32_t seed) {
    uint32_t s = seed;
    for (int i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        t[i] = (int32_t)(3 + (s >> 8) % (N_VOCAB - 3));
    }
}

typedef struct move_op { int at, layer; const char *dev; } move_op;

/* Open path (sim: LYRA_SIM_GPUS or NULL), evaluate N_PROMPT tokens in one
 * call (all logits) and N_GEN single tokens with the moves; out
 * [N_STEPS][n_vocab]. */
static int run_ex(const char *path, const char *sim, lyra_model_params p, int32_t n_ctx, int n_batch,
                  const int32_t *toks, int n_steps, int n_prompt, const move_op *moves, int n_moves,
                  int fail_gpus, int *steps, float *out, lyra_error *err) {
    if (sim) setenv("LYRA_SIM_GPUS", sim, 1);
    else unsetenv("LYRA_SIM_GPUS");
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    lyra_model *m;
    int rc = lyra_model_open(path, &p, &m, err);
    if (rc) return rc;
    lyra_context_params cp = lyra_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_threads = 2;
    lyra_context *c;
    rc = lyra_context_new(m, &cp, &c, err);
    if (rc) {
        lyra_model_free(m);
        return rc;
    }
    rc = lyra_eval(c, toks, n_prompt, 1, err);
    for (int i = 0; !rc && i < n_prompt; i++)
        memcpy(out + (size_t)i * N_VOCAB, lyra_get_logits(c, i), N_VOCAB * sizeof(float));
    for (int d = 0; fail_gpus && d < m->n_dev; d++) /* every later GPU allocation fails */
        if (strcmp(m->dev[d]->kind, "cpu")) {
            m->dev[d]->fail_at = m->dev[d]->stats.alloc_calls + 1;
            m->dev[d]->fail_after = 1;
        }
    for (int s = n_prompt; !rc && s < n_steps; s++) {
        for (int k = 0; k < n_moves; k++)
            if (moves[k].at == s && (rc = lyra_context_move_layer(c, moves[k].layer, moves[k].dev, err)))
                break;
        if (!rc) rc = lyra_eval(c, &toks[s], 1, 0, err);
        if (!rc) memcpy(out + (size_t)s * N_VOCAB, lyra_get_logits(c, -1), N_VOCAB * sizeof(float));
    }
    if (steps) *steps = lyra_model_fallback_steps(m);
    lyra_context_free(c);
    lyra_model_free(m);
    return rc;
}

static int run(const char *path, const char *sim, lyra_model_params p, int32_t n_ctx, int n_batch,
               const int32_t *toks, int n_steps, int n_prompt, const move_op *moves, int n_moves,
               float *out, lyra_error *err) {
    return run_ex(path, sim, p, n_ctx, n_batch, toks, n_steps, n_prompt, moves, n_moves, 0, NULL, out, err);
}

static int first_diff(const float *a, const float *b, int n_steps) {
    for (int s = 0; s < n_steps; s++)
        if (memcmp(a + (size_t)s * N_VOCAB, b + (size_t)s * N_VOCAB, N_VOCAB * sizeof(float))) return s;
    return -1;
}

/* max |a - b| / max |b| */
static double rel_diff(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d;
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    return mb > 0 ? md / mb : md;
}

/* ----------------------------------------------------------------- tests */

static void check_desc(const variant *v, const char *path) {
    lyra_gguf *g = NULL;
    lyra_llama *a = NULL;
    lyra_error err;
    int rc = lyra_gguf_open(path, &g, &err);
    if (!rc) rc = lyra_llama_load(g, &a, &err);
    CHECK(rc == 0, "%s: load: %s", v->label, err.msg);
    if (rc) {
        lyra_gguf_close(g);
        return;
    }
    const lyra_arch_desc *d = &a->desc;
    CHECK(!strcmp(d->name, v->arch), "%s: arch %s", v->label, d->name);
    CHECK(a->hp.head_dim == v->head_dim && a->hp.rope.n_rot == v->n_rot, "%s: head_dim %d n_rot %d",
          v->label, a->hp.head_dim, a->hp.rope.n_rot);
    CHECK(a->hp.rope.neox == !!strcmp(v->arch, "llama"), "%s: neox %d", v->label, a->hp.rope.neox);
    CHECK(d->fused_qkv == v->fused_qkv, "%s: fused_qkv %d", v->label, d->fused_qkv);
    CHECK(a->tied == v->tied, "%s: tied %d", v->label, a->tied);
    CHECK(d->window == v->window, "%s: window %d", v->label, d->window);
    int n_win = 0;
    for (int l = 0; l < a->hp.n_layer; l++) n_win += lyra_llama_layer_window(a, l) > 0;
    int want = !v->window ? 0 : !strcmp(v->arch, "gemma2") ? v->n_layer / 2 + v->n_layer % 2
             : !strcmp(v->arch, "gemma3") ? v->n_layer - v->n_layer / 6 : v->n_layer;
    CHECK(n_win == want, "%s: %d windowed layers, expected %d", v->label, n_win, want);
    if (!strcmp(v->arch, "gemma3"))
        CHECK(lyra_llama_layer_window(a, 5) == 0 && lyra_llama_layer_window(a, 4) == v->window &&
                  d->rope_swa && a->hp.rope_swa.freq_base == 10000.0f &&
                  a->hp.rope.freq_scale == 0.5f,
              "gemma3: layer 5 global, local rope base 10000, global scale 1/2");
    if (!strcmp(v->arch, "gemma2"))
        CHECK(lyra_llama_layer_window(a, 0) == v->window && lyra_llama_layer_window(a, 1) == 0 &&
                  d->attn_softcap == 0.5f && d->final_softcap == 2.0f,
              "gemma2: even layers local, soft-caps from the file");
    if (!strncmp(v->arch, "gemma", 5))
        CHECK(d->embed_scale == sqrtf((float)v->n_embd) && d->ffn == LYRA_FFN_GEGLU, "%s: embed scale, geglu",
              v->label);
    if (!strcmp(v->arch, "phi2"))
        CHECK(d->norm == LYRA_NORM_LAYER && d->parallel && d->ffn == LYRA_FFN_GELU && d->biases &&
                  a->output_b.name && a->output_norm_b.name,
              "phi2: layernorm, parallel, gelu, biases");
    if (!strcmp(v->arch, "phi3")) {
        CHECK(d->fused_gate_up && a->has_rope_freqs, "phi3: fused gate_up, rope factors");
        lyra_llama_set_context(a, 64);
        CHECK(a->rope_freqs.data == a->rope_short.data, "phi3: short factors up to the original context");
        lyra_llama_set_context(a, 65);
        CHECK(a->rope_freqs.data == a->rope_long.data, "phi3: long factors above it");
        CHECK(fabsf(d->attn_scale - 1.21f / 4.0f) < 1e-6f, "phi3: attn_factor^2 in the scale: %g",
              (double)d->attn_scale);
    }
    if (!strcmp(v->arch, "qwen3") || !strcmp(v->arch, "gemma3"))
        CHECK(d->qk_norm, "%s: q/k norms", v->label);
    /* the names: Hugging Face's, per module */
    char name[64];
    lyra_llama_module_name(a, lyra_llama_n_modules(a) - 2, name, sizeof name);
    CHECK(!strcmp(name, "model.norm"), "%s: norm module %s", v->label, name);
    /* a device without the ops an architecture needs beyond Llama's */
    lyra_device_ops ops;
    memset(&ops, 0, sizeof ops);
    lyra_device bare;
    memset(&bare, 0, sizeof bare);
    bare.ops = &ops;
    int any = 0;
    for (int i = 0; i < lyra_llama_n_modules(a); i++) any |= lyra_llama_module_missing_op(a, i, &bare) != NULL;
    int needs = strcmp(v->arch, "llama") && strcmp(v->arch, "qwen3") && strcmp(v->arch, "phi3");
    CHECK(any == needs, "%s: missing ops reported: %d", v->label, any);
    lyra_llama_free(a);
    lyra_gguf_close(g);
}

static void test_variant(const variant *v, const char *dir, int keep) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.gguf", dir, v->label);
    if (write_model(v, path)) return;
    check_desc(v, path);
    lyra_error err;
    int32_t toks[N_STEPS];
    make_tokens(toks, N_STEPS, 7u + (uint32_t)v->n_layer);
    size_t n_out = (size_t)N_STEPS * N_VOCAB;
    float *ref = malloc(n_out * sizeof(float)), *got = malloc(n_out * sizeof(float));
    lyra_model_params p = lyra_model_default_params();
    p.n_threads = 2;
    p.kv_chunk = 8; /* several chunks, and a ring for windowed layers */
    int rc = run(path, NULL, p, 64, 8, toks, N_STEPS, N_PROMPT, NULL, 0, ref, &err);
    CHECK(rc == 0, "%s: all-CPU: %s", v->label, err.msg);
    if (rc) goto done;
    int finite = 1;
    double mx = 0;
    for (size_t i = 0; i < n_out; i++) {
        finite &= isfinite(ref[i]) != 0;
        if (fabs(ref[i]) > mx) mx = fabs(ref[i]);
    }
    CHECK(finite && mx > 0.1, "%s: logits finite and not flat (max %g)", v->label, mx);
    if (keep) {
        char lp[600];
        snprintf(lp, sizeof lp, "%s/%s.logits", dir, v->label);
        FILE *f = fopen(lp, "wb");
        if (f) {
            fwrite(ref, sizeof(float), n_out, f);
            fclose(f);
        }
        snprintf(lp, sizeof lp, "%s/%s.tokens", dir, v->label);
        f = fopen(lp, "w");
        for (int i = 0; f && i < N_STEPS; i++) fprintf(f, "%d\n", (int)toks[i]);
        if (f) fclose(f);
    }
    /* gpu_layers 3 split 1:2 over two simulated GPUs */
    lyra_model_params q = p;
    q.gpu_layers = 3;
    float split[2] = {1, 2};
    q.tensor_split = split;
    q.n_tensor_split = 2;
    rc = run(path, "64MiB,64MiB", q, 64, 8, toks, N_STEPS, N_PROMPT, NULL, 0, got, &err);
    CHECK(rc == 0, "%s: split: %s", v->label, err.msg);
    if (!rc) CHECK(first_diff(got, ref, N_STEPS) < 0, "%s: gpu_layers 3 split 1,2 differs at step %d",
                   v->label, first_diff(got, ref, N_STEPS));
    /* the same split, every GPU allocation failing after the prompt: the KV
     * chunk at position 24 steps layers down to the CPU between two tokens */
    int steps = 0;
    rc = run_ex(path, "64MiB,64MiB", q, 64, 8, toks, N_STEPS, N_PROMPT, NULL, 0, 1, &steps, got, &err);
    CHECK(rc == 0 && steps > 0, "%s: mid-generation fallback: %s (%d steps)", v->label, rc ? err.msg : "",
          steps);
    if (!rc) CHECK(first_diff(got, ref, N_STEPS) < 0, "%s: mid-generation fallback differs at step %d",
                   v->label, first_diff(got, ref, N_STEPS));
    /* explicit map: embedding on the CPU, layers 0-1 on GPU 1, the rest of the
     * layers on the CPU, norm and head on GPU 0; moves between tokens */
    lyra_device_map_entry map[] = {{"", LYRA_DEVICE_CPU}, {"model.layers.0-1", 1},
                                   {"model.norm", 0}, {"lm_head", 0}};
    q = p;
    q.device_strategy = LYRA_DEVICE_MAP_EXPLICIT;
    q.device_map = map;
    q.n_device_map = 4;
    move_op moves[] = {{N_PROMPT + 1, 0, "cpu"}, {N_PROMPT + 2, 2, "0"}, {N_PROMPT + 3, 1, "0"},
                       {N_PROMPT + 4, 3, "1"}, {N_PROMPT + 5, 2, "disk"}};
    rc = run(path, "64MiB,64MiB", q, 64, 8, toks, N_STEPS, N_PROMPT, moves, 5, got, &err);
    CHECK(rc == 0, "%s: map + moves: %s", v->label, err.msg);
    if (!rc) CHECK(first_diff(got, ref, N_STEPS) < 0, "%s: map + moves differ at step %d", v->label,
                   first_diff(got, ref, N_STEPS));
    /* on-load 8 and 4 bits (norms and biases stay F32) */
    for (int bits = 8; bits >= 4; bits -= 4) {
        q = p;
        q.load_in_bits = bits;
        rc = run(path, NULL, q, 64, 8, toks, N_STEPS, N_PROMPT, NULL, 0, got, &err);
        CHECK(rc == 0, "%s: load_in_%dbit: %s", v->label, bits, err.msg);
        if (!rc) {
            double e = rel_diff(got, ref, n_out);
            CHECK(e < (bits == 8 ? 0.05 : 0.5), /* random 64-wide rows at Q4_0: loose */ "%s: load_in_%dbit: rel diff %g", v->label, bits, e);
        }
    }
done:
    free(ref);
    free(got);
    if (!keep) unlink(path);
}

/* Generation far past the window: the windowed layers' KV stops growing, the
 * logits agree with a cache that is not a ring, truncation into overwritten
 * positions forgets the sequence. */
static void test_window(const variant *v, const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s-win.gguf", dir, v->label);
    if (write_model(v, path)) return;
    enum { NS = 100, NP = 30 };
    int32_t toks[NS];
    make_tokens(toks, NS, 99u);
    lyra_error err;
    float *a = malloc((size_t)NS * N_VOCAB * sizeof(float)), *b = malloc((size_t)NS * N_VOCAB * sizeof(float));
    lyra_model_params p = lyra_model_default_params();
    p.n_threads = 2;
    p.kv_chunk = 4; /* ring: ceil((10 + 4 - 1) / 4) + 1 = 5 chunks of 4 */
    int rc = run(path, NULL, p, 128, 4, toks, NS, NP, NULL, 0, a, &err);
    CHECK(rc == 0, "%s: past the window: %s", v->label, err.msg);
    /* against one chunk (no ring, the window as a mask), both with F32 caches:
     * only the softmax blocks differ */
    lyra_model_params p32 = p;
    p32.kv_type = LYRA_KV_F32;
    float *c32 = malloc((size_t)NS * N_VOCAB * sizeof(float));
    if (!rc) rc = run(path, NULL, p32, 128, 4, toks, NS, NP, NULL, 0, c32, &err);
    p32.kv_chunk = 128;
    if (!rc) rc = run(path, NULL, p32, 128, 4, toks, NS, NP, NULL, 0, b, &err);
    CHECK(rc == 0, "%s: no ring: %s", v->label, err.msg);
    if (!rc) {
        double e = rel_diff(c32, b, (size_t)NS * N_VOCAB);
        CHECK(e < 1e-5, "%s: ring vs no ring: rel diff %g", v->label, e);
    }
    free(c32);
    /* split + moves with rings (bitwise against all-CPU with rings) */
    p.kv_chunk = 4;
    lyra_device_map_entry map[] = {{"", LYRA_DEVICE_CPU}, {"model.layers.0-1", 0}, {"model.layers.3", 1}};
    lyra_model_params q = p;
    q.device_strategy = LYRA_DEVICE_MAP_EXPLICIT;
    q.device_map = map;
    q.n_device_map = 3;
    move_op moves[] = {{40, 0, "cpu"}, {55, 2, "1"}, {70, 1, "cpu"}, {80, 0, "0"}};
    if (!rc) rc = run(path, "64MiB,64MiB", q, 128, 4, toks, NS, NP, moves, 4, b, &err);
    CHECK(rc == 0, "%s: rings split and moved: %s", v->label, err.msg);
    if (!rc) CHECK(first_diff(b, a, NS) < 0, "%s: rings split and moved differ at step %d", v->label,
                   first_diff(b, a, NS));
    /* KV memory: windowed layers hold their ring only; truncation */
    unsetenv("LYRA_SIM_GPUS");
    p.n_ctx = 128;
    p.n_batch = 4;
    lyra_model *m = NULL;
    lyra_context *c = NULL;
    lyra_context_params cp = lyra_context_default_params();
    cp.n_ctx = 128;
    cp.n_batch = 4;
    if (!rc) rc = lyra_model_open(path, &p, &m, &err);
    if (!rc) rc = lyra_context_new(m, &cp, &c, &err);
    if (!rc) rc = lyra_eval(c, toks, NS, 0, &err);
    CHECK(rc == 0, "%s: kv: %s", v->label, err.msg);
    if (!rc) {
        lyra_device_usage u;
        lyra_context_device_usage(c, 0, &u);
        uint64_t chunk = 2ull * 4 * (uint64_t)v->n_kv * v->head_dim * 2; /* F16 */
        uint64_t want = 0;
        for (int l = 0; l < v->n_layer; l++)
            want += chunk * (lyra_llama_layer_window(m->arch, l) ? 5 : NS / 4);
        CHECK(u.kv == want, "%s: KV bytes %llu, expected %llu (rings of 5 chunks)", v->label,
              (unsigned long long)u.kv, (unsigned long long)want);
        /* the plan counts the rings the same way (at the full context of 128) */
        uint64_t planned = 0;
        int n_win = 0;
        for (int l = 0; l < v->n_layer; l++) {
            int win = lyra_llama_layer_window(m->arch, l) > 0;
            n_win += win;
            planned += chunk * (win ? 5 : 128 / 4);
        }
        const lyra_plan *pl = m->plan;
        char *table = lyra_plan_table(pl);
        CHECK(pl->n_windowed == n_win && pl->window == v->window && pl->kv_all == planned &&
                  pl->kv_unwindowed == chunk * 32 * (uint64_t)v->n_layer && table && strstr(table, "kv: "),
              "%s: plan: %d windowed, kv %llu (expected %llu), table:\n%s", v->label, pl->n_windowed,
              (unsigned long long)pl->kv_all, (unsigned long long)planned, table ? table : "");
        free(table);
        /* truncate 2 back: the window before it is still there */
        lyra_context_truncate(c, NS - 2);
        CHECK(lyra_context_pos(c) == NS - 2, "%s: truncate by 2 keeps %d", v->label, (int)lyra_context_pos(c));
        rc = lyra_eval(c, &toks[NS - 2], 2, 0, &err);
        CHECK(rc == 0 && !memcmp(lyra_get_logits(c, -1), a + (size_t)(NS - 1) * N_VOCAB, N_VOCAB * 4),
              "%s: re-evaluating after a short truncation gives the same logits", v->label);
        /* truncate far back: overwritten, the sequence is forgotten */
        lyra_context_truncate(c, 50);
        CHECK(lyra_context_pos(c) == 0, "%s: truncating into a ring's past empties the cache (pos %d)",
              v->label, (int)lyra_context_pos(c));
    }
    lyra_context_free(c);
    lyra_model_free(m);
    free(a);
    free(b);
    unlink(path);
}

/* A file of an architecture lyra does not know: the error lists the ones it does. */
static void test_unknown(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/unknown.gguf", dir);
    lyra_gguf_writer *w = lyra_gguf_writer_new();
    lyra_gguf_writer_add_str(w, "general.architecture", "gpt2");
    lyra_error err;
    CHECK(lyra_gguf_writer_write(w, path, &err) == 0, "write: %s", err.msg);
    lyra_gguf_writer_free(w);
    lyra_gguf *g = NULL;
    lyra_llama *a = NULL;
    int rc = lyra_gguf_open(path, &g, &err);
    if (!rc) rc = lyra_llama_load(g, &a, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "'gpt2'") &&
              strstr(err.msg, "llama, qwen2, qwen3, phi2, phi3, gemma, gemma2, gemma3"),
          "unknown arch: %d %s", rc, err.msg);
    lyra_llama_free(a);
    lyra_gguf_close(g);
    unlink(path);
}

int main(void) {
    lyra_rng_seed(&rng, 1234);
    const char *keep = getenv("LYRA_ARCH_KEEP");
    const char *dir = keep && *keep ? keep : test_tmp_dir();
    const char *only = getenv("LYRA_ARCH_ONLY");
    for (int i = 0; i < N_VARIANTS; i++) {
        if (only && *only && strcmp(only, VARIANTS[i].label)) continue;
        printf("%s\n", VARIANTS[i].label);
        fflush(stdout);
        test_variant(&VARIANTS[i], dir, keep && *keep);
        if (VARIANTS[i].window) test_window(&VARIANTS[i], dir);
    }
    test_unknown(dir);
    return test_done();
}
