/* test_harden_model.c: counts read from a model file are checked against
 * the tensors it really has before anything is allocated by them (issue 12),
 * with variants of stories260K.gguf written in a temp dir:
 *  - llama.block_count = 2147483647 (was a 7.2 GB calloc, exit 3) and 6 (one
 *    block more than the file has): LYRA_ERR_INPUT naming the key;
 *  - a rope scaling factor of 0 (llama.rope.scaling.factor with type linear,
 *    llama.rope.scale_linear): LYRA_ERR_INPUT naming the key;
 *  - tokenizer.ggml.eos_token_id as a string: LYRA_ERR_INPUT naming it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "lyra.h"
#include "testutil.h"

static lyra_gguf *src;

/* A variant of the source model: keys replaced or added. */
typedef struct {
    const char *str_key, *str_val;
    const char *u32_key; uint32_t u32_val;
    const char *f32_key; float f32_val;
} variant;

static int skip_fn(const char *key, void *user) {
    const variant *v = user;
    return (v->str_key && !strcmp(key, v->str_key)) || (v->u32_key && !strcmp(key, v->u32_key)) ||
           (v->f32_key && !strcmp(key, v->f32_key));
}

static const char *make(const char *name, const variant *v) {
    static char path[2048];
    snprintf(path, sizeof path, "%s/%s.gguf", test_tmp_dir(), name);
    lyra_gguf_writer *w = lyra_gguf_writer_new();
    lyra_gguf_writer_copy_kv(w, src, skip_fn, (void *)v);
    if (v->str_key) lyra_gguf_writer_add_str(w, v->str_key, v->str_val);
    if (v->u32_key) lyra_gguf_writer_add_u32(w, v->u32_key, v->u32_val);
    if (v->f32_key) lyra_gguf_writer_add_f32(w, v->f32_key, v->f32_val);
    for (int64_t i = 0; i < lyra_gguf_n_tensors(src); i++) {
        const lyra_gguf_tensor *t = lyra_gguf_tensor_at(src, i);
        lyra_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data);
    }
    lyra_error err;
    CHECK(lyra_gguf_writer_write(w, path, &err) == 0, "write %s: %s", name, err.msg);
    lyra_gguf_writer_free(w);
    return path;
}

static void expect_error(const char *name, const variant *v, const char *want) {
    const char *path = make(name, v);
    lyra_model *m = NULL;
    lyra_error err;
    int rc = lyra_model_open(path, NULL, &m, &err);
    remove(path);
    CHECK(rc == LYRA_ERR_INPUT && m == NULL && strstr(err.msg, want), "%s: rc %d (%s)", name, rc,
          rc ? err.msg : "opened");
    if (m) lyra_model_free(m);
    printf("%s: %s\n", name, rc ? err.msg : "opened");
}

int main(void) {
    char model[2048];
    snprintf(model, sizeof model, "%s", test_shared_path("models/stories260K.gguf"));
    lyra_error err;
    if (lyra_gguf_open(model, &src, &err)) { CHECK(0, "open: %s", err.msg); return test_done(); }

    { variant v = {.u32_key = "llama.block_count", .u32_val = 2147483647u};
      expect_error("blocks_huge", &v, "llama.block_count"); }
    { variant v = {.u32_key = "llama.block_count", .u32_val = 6};
      expect_error("blocks_one_more", &v, "llama.block_count"); }
    { variant v = {.str_key = "llama.rope.scaling.type", .str_val = "linear",
                   .f32_key = "llama.rope.scaling.factor", .f32_val = 0.0f};
      expect_error("rope_factor_0", &v, "llama.rope.scaling.factor"); }
    { variant v = {.f32_key = "llama.rope.scale_linear", .f32_val = 0.0f};
      expect_error("scale_linear_0", &v, "llama.rope.scale_linear"); }
    { variant v = {.str_key = "tokenizer.ggml.eos_token_id", .str_val = "2"};
      expect_error("eos_string", &v, "tokenizer.ggml.eos_token_id"); }
    { /* fewer blocks than the file has still loads (the extra tensors unused) */
        variant v = {.u32_key = "llama.block_count", .u32_val = 4};
        const char *path = make("blocks_fewer", &v);
        lyra_model *m = NULL;
        CHECK(lyra_model_open(path, NULL, &m, &err) == LYRA_OK, "4 of 5 blocks: %s", err.msg);
        lyra_model_free(m);
        remove(path);
    }
    lyra_gguf_close(src);
    return test_done();
}
