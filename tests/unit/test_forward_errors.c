/* test_forward_errors.c: models the Llama loader must refuse, made from
 * stories260K.gguf with the GGUF writer in a temp dir: wrong architecture,
 * missing tensor, wrong shape, unsupported type, non-F32 norm, bad head
 * counts, unknown rope scaling. Each is LYRA_ERR_INPUT whose message names
 * the file and the tensor or key (with the expected and found shape/type).
 * Also accepted variants: output.weight absent (tied, counted once), linear
 * rope scaling, rope_freqs.weight, llama.vocab_size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "lyra.h"
#include "runtime/runtime.h"
#include "testutil.h"

static lyra_gguf *src;

/* A variant of the source model: key edits and tensor edits. */
typedef struct {
    const char *skip_key;        /* key left out (NULL: none) */
    const char *set_str_key, *set_str;  /* string key added/replaced */
    const char *set_u32_key; uint32_t set_u32;
    const char *set_f32_key; float set_f32;
    const char *drop_tensor;     /* tensor left out */
    const char *reshape_tensor; int64_t ne0, ne1; /* tensor given another shape */
    const char *retype_tensor; lyra_type type;    /* tensor given another type (zero data) */
    int add_rope_freqs;          /* add rope_freqs.weight (all 1) */
} variant;

static int skip_fn(const char *key, void *user) {
    const variant *v = user;
    return (v->skip_key && !strcmp(key, v->skip_key)) ||
           (v->set_str_key && !strcmp(key, v->set_str_key)) ||
           (v->set_u32_key && !strcmp(key, v->set_u32_key)) ||
           (v->set_f32_key && !strcmp(key, v->set_f32_key));
}

static const char *make(const char *name, const variant *v) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s.gguf", test_tmp_dir(), name);
    lyra_gguf_writer *w = lyra_gguf_writer_new();
    lyra_gguf_writer_copy_kv(w, src, skip_fn, (void *)v);
    if (v->set_str_key) lyra_gguf_writer_add_str(w, v->set_str_key, v->set_str);
    if (v->set_u32_key) lyra_gguf_writer_add_u32(w, v->set_u32_key, v->set_u32);
    if (v->set_f32_key) lyra_gguf_writer_add_f32(w, v->set_f32_key, v->set_f32);
    void *buf[4] = {0};
    int nb = 0;
    for (int64_t i = 0; i < lyra_gguf_n_tensors(src); i++) {
        const lyra_gguf_tensor *t = lyra_gguf_tensor_at(src, i);
        if (v->drop_tensor && !strcmp(t->name, v->drop_tensor)) continue;
        if (v->reshape_tensor && !strcmp(t->name, v->reshape_tensor)) {
            int64_t ne[2] = {v->ne0, v->ne1};
            buf[nb] = calloc((size_t)(v->ne0 * v->ne1), 4);
            lyra_gguf_writer_add_tensor(w, t->name, t->type, 2, ne, buf[nb++]);
            continue;
        }
        if (v->retype_tensor && !strcmp(t->name, v->retype_tensor)) {
            size_t bytes = lyra_row_bytes(v->type, t->ne[0]) * (size_t)t->ne[1];
            buf[nb] = calloc(bytes, 1);
            lyra_gguf_writer_add_tensor(w, t->name, v->type, t->n_dims, t->ne, buf[nb++]);
            continue;
        }
        lyra_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data);
    }
    static float ones[4] = {1, 1, 1, 1};
    if (v->add_rope_freqs) {
        int64_t ne[1] = {4};
        lyra_gguf_writer_add_tensor(w, "rope_freqs.weight", LYRA_TYPE_F32, 1, ne, ones);
    }
    lyra_error err;
    int rc = lyra_gguf_writer_write(w, path, &err);
    CHECK(rc == 0, "write %s: %s", name, err.msg);
    lyra_gguf_writer_free(w);
    for (int i = 0; i < nb; i++) free(buf[i]);
    return path;
}

/* Opening must fail with LYRA_ERR_INPUT and a message holding all of want[]. */
static void expect_error(const char *name, const variant *v, const char *const *want) {
    const char *path = make(name, v);
    lyra_model *m = NULL;
    lyra_error err;
    int rc = lyra_model_open(path, NULL, &m, &err);
    remove(path);
    CHECK(rc == LYRA_ERR_INPUT && m == NULL, "%s: rc %d (%s)", name, rc, rc ? err.msg : "opened");
    if (rc != LYRA_ERR_INPUT) { lyra_model_free(m); return; }
    CHECK(strstr(err.msg, path) != NULL, "%s: message lacks the path: %s", name, err.msg);
    for (int i = 0; want[i]; i++)
        CHECK(strstr(err.msg, want[i]) != NULL, "%s: message lacks '%s': %s", name, want[i], err.msg);
    printf("%s: %s\n", name, err.msg);
}

static lyra_model *expect_ok(const char *name, const variant *v) {
    const char *path = make(name, v);
    lyra_model *m = NULL;
    lyra_error err;
    int rc = lyra_model_open(path, NULL, &m, &err);
    remove(path); /* the mapping stays valid */
    CHECK(rc == 0, "%s: %s", name, err.msg);
    return m;
}

/* Greedy 20 tokens from BOS; returns the ids in out. */
static void greedy(lyra_model *m, int32_t *out, int n) {
    lyra_context *c = NULL;
    lyra_error err;
    lyra_context_params cp = lyra_context_default_params();
    CHECK(lyra_context_new(m, &cp, &c, &err) == 0, "ctx: %s", err.msg);
    int32_t t = 1;
    for (int i = 0; i < n; i++) {
        CHECK(lyra_eval(c, &t, 1, 0, &err) == 0, "eval: %s", err.msg);
        const float *l = lyra_get_logits(c, -1);
        int best = 0;
        for (int k = 1; k < lyra_model_n_vocab(m); k++) if (l[k] > l[best]) best = k;
        out[i] = t = best;
    }
    lyra_context_free(c);
}

int main(void) {
    char model[4096];
    snprintf(model, sizeof model, "%s", test_shared_path("models/stories260K.gguf"));
    lyra_error err;
    if (lyra_gguf_open(model, &src, &err)) { CHECK(0, "open: %s", err.msg); return test_done(); }

    { variant v = {.set_str_key = "general.architecture", .set_str = "gpt2"};
      expect_error("arch", &v, (const char *[]){"general.architecture", "gpt2", NULL}); }
    { variant v = {.drop_tensor = "blk.3.ffn_up.weight"};
      expect_error("missing", &v, (const char *[]){"blk.3.ffn_up.weight", "missing", NULL}); }
    { variant v = {.reshape_tensor = "blk.1.attn_k.weight", .ne0 = 64, .ne1 = 64};
      expect_error("shape", &v, (const char *[]){"blk.1.attn_k.weight", "[64, 64]", "expected [64, 32]", NULL}); }
    { variant v = {.reshape_tensor = "token_embd.weight", .ne0 = 64, .ne1 = 500};
      expect_error("embd_shape", &v, (const char *[]){"token_embd.weight", "[64, 500]", "[64, 512]", NULL}); }
    { variant v = {.retype_tensor = "blk.0.attn_q.weight", .type = LYRA_TYPE_Q4_1};
      expect_error("type", &v, (const char *[]){"blk.0.attn_q.weight", "Q4_1", "not support", NULL}); }
    { variant v = {.retype_tensor = "blk.2.ffn_norm.weight", .type = LYRA_TYPE_F16};
      expect_error("norm_type", &v, (const char *[]){"blk.2.ffn_norm.weight", "F16", "F32", NULL}); }
    { variant v = {.set_u32_key = "llama.attention.head_count_kv", .set_u32 = 3};
      expect_error("kv_heads", &v, (const char *[]){"llama.attention.head_count_kv", NULL}); }
    { variant v = {.set_u32_key = "llama.expert_count", .set_u32 = 8};
      expect_error("moe", &v, (const char *[]){"llama.expert_count", "not supported", NULL}); }
    { variant v = {.skip_key = "llama.block_count"};
      expect_error("no_blocks", &v, (const char *[]){"llama.block_count", NULL}); }
    { variant v = {.set_str_key = "llama.rope.scaling.type", .set_str = "yarn"};
      expect_error("rope_type", &v, (const char *[]){"llama.rope.scaling.type", "yarn", NULL}); }
    { variant v = {.set_u32_key = "llama.vocab_size", .set_u32 = 300};
      expect_error("vocab", &v, (const char *[]){"token_embd.weight", "[64, 300]", NULL}); }

    /* accepted variants */
    int32_t base[20], got[20];
    lyra_model *m = NULL;
    if (!lyra_model_open(model, NULL, &m, &err)) { greedy(m, base, 20); lyra_model_free(m); }
    { /* tied: output.weight absent; stories260K's output is a copy of the embedding */
        variant v = {.drop_tensor = "output.weight"};
        m = expect_ok("tied", &v);
        if (m) {
            CHECK(m->arch->tied && lyra_model_n_bytes(m) == lyra_gguf_data_bytes(src) - 512 * 64 * 4,
                  "tied weights counted once: %llu", (unsigned long long)lyra_model_n_bytes(m));
            CHECK(m->dev[0]->stats.mapped == lyra_model_n_bytes(m), "mapped once");
            greedy(m, got, 20);
            CHECK(!memcmp(base, got, sizeof got), "tied model generates differently");
            lyra_model_free(m);
        }
        /* the same without mmap: one allocated copy of the shared table */
        const char *path = make("tied_copy", &v);
        lyra_model_params mp = lyra_model_default_params();
        mp.use_mmap = 0;
        m = NULL;
        CHECK(lyra_model_open(path, &mp, &m, &err) == 0, "tied, no mmap: %s", err.msg);
        remove(path);
        if (m) {
            CHECK(m->dev[0]->stats.mapped == 0 &&
                  m->dev[0]->stats.allocated == lyra_model_n_bytes(m) &&
                  m->arch->output.data == m->arch->tok_embd.data, "tied copy placed once");
            greedy(m, got, 20);
            CHECK(!memcmp(base, got, sizeof got), "tied model without mmap generates differently");
            lyra_model_free(m);
        }
    }
    { /* rope_freqs of ones and linear scaling 1: same text; factor 2: a valid model */
        variant v = {.add_rope_freqs = 1, .set_str_key = "llama.rope.scaling.type", .set_str = "linear"};
        m = expect_ok("rope_freqs", &v);
        if (m) {
            CHECK(m->arch->has_rope_freqs && m->arch->hp.rope.freq_factors, "rope_freqs loaded");
            greedy(m, got, 20);
            CHECK(!memcmp(base, got, sizeof got), "rope_freqs of ones changes the text");
            lyra_model_free(m);
        }
        variant v2 = {.set_f32_key = "llama.rope.scaling.factor", .set_f32 = 4.0f,
                      .set_str_key = "llama.rope.scaling.type", .set_str = "linear"};
        m = expect_ok("rope_linear", &v2);
        if (m) {
            CHECK(m->arch->hp.rope.freq_scale == 0.25f, "freq_scale %g", (double)m->arch->hp.rope.freq_scale);
            lyra_model_free(m);
        }
    }
    lyra_gguf_close(src);
    return test_done();
}
