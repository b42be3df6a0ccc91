/* test_gguf.c: the GGUF reader and writer.
 *  - the shared models: key facts from ../shared/models/README.md, and tensor
 *    bytes equal to the same weights in llama2.c's stories260K.bin;
 *  - the vocab GGUFs (no tensors, 50k-entry string arrays);
 *  - writer round trip of every value type and 7 tensor types, copy_kv
 *    rewrite byte-identical, alignment 64, atomic write (no output and no
 *    temp file on failure, including a write that fails half way);
 *  - malformed files: a hand-built file with every field at a known offset,
 *    each lie (counts, lengths, type ids, dims, offsets...) must be a
 *    LYRA_ERR_INPUT naming that offset; truncation at every byte;
 *  - split models written as two and three parts.
 * Comparisons with the Python gguf package are in test_gguf_python.c. */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "format/gguf.h"
#include "testutil.h"

/* ------------------------------------------------------------ helpers */

static lyra_gguf *open_ok(const char *path) {
    lyra_error err;
    lyra_gguf *g = NULL;
    int rc = lyra_gguf_open(path, &g, &err);
    CHECK(rc == LYRA_OK, "open %s: %s", path, err.msg);
    return rc == LYRA_OK ? g : NULL;
}

static uint32_t u32_of(const lyra_gguf *g, const char *key) {
    uint32_t v = 0xdeadbeef;
    CHECK(lyra_gguf_get_u32(g, key, &v), "u32 %s", key);
    return v;
}

static int str_is(lyra_gguf_str s, const char *want) {
    return s.ptr && s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

/* Read n bytes at off of a file. */
static int read_at(const char *path, long off, void *dst, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int ok = fseek(f, off, SEEK_SET) == 0 && fread(dst, 1, n, f) == n;
    fclose(f);
    return ok;
}

/* Files in dir whose name starts with prefix. */
static int count_files(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    if (!d) return -1;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
    closedir(d);
    return n;
}

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

/* ------------------------------------------------------- shared models */

/* stories260K.gguf against README facts and the llama2.c checkpoint. */
static void test_stories260k(void) {
    const char *path = test_shared_path("models/stories260K.gguf");
    char gpath[4096], bpath[4096];
    snprintf(gpath, sizeof gpath, "%s", path);
    snprintf(bpath, sizeof bpath, "%s", test_shared_path("models/stories260K.bin"));
    lyra_gguf *g = open_ok(gpath);
    if (!g) return;
    CHECK(lyra_gguf_version(g) == 3, "version %u", lyra_gguf_version(g));
    CHECK(lyra_gguf_n_parts(g) == 1, "parts");
    CHECK(lyra_gguf_n_kv(g) == 19, "n_kv %lld", (long long)lyra_gguf_n_kv(g));
    CHECK(lyra_gguf_n_tensors(g) == 48, "n_tensors %lld", (long long)lyra_gguf_n_tensors(g));
    CHECK(u32_of(g, "llama.embedding_length") == 64, "dim");
    CHECK(u32_of(g, "llama.feed_forward_length") == 172, "hidden");
    CHECK(u32_of(g, "llama.block_count") == 5, "layers");
    CHECK(u32_of(g, "llama.attention.head_count") == 8, "heads");
    CHECK(u32_of(g, "llama.attention.head_count_kv") == 4, "kv heads");
    CHECK(u32_of(g, "llama.context_length") == 2048, "ctx");
    CHECK(u32_of(g, "tokenizer.ggml.seperator_token_id") == 4294967295u, "u32 max");
    CHECK(lyra_gguf_find_key(g, "llama.rope.freq_base") == -1, "no freq_base key");
    lyra_gguf_str s;
    CHECK(lyra_gguf_get_str(g, "general.architecture", &s) && str_is(s, "llama"), "arch");
    float eps = 0;
    CHECK(lyra_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps) && eps == 1e-5f, "eps %g", eps);
    lyra_gguf_vtype et;
    uint64_t n = 0;
    CHECK(lyra_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n) && et == LYRA_GGUF_STRING && n == 512, "tokens");
    CHECK(str_is(lyra_gguf_arr_str(g, "tokenizer.ggml.tokens", 0), "<unk>"), "tok 0");
    CHECK(str_is(lyra_gguf_arr_str(g, "tokenizer.ggml.tokens", 1), "<s>"), "tok 1");
    CHECK(str_is(lyra_gguf_arr_str(g, "tokenizer.ggml.tokens", 3), "<0x00>"), "tok 3");
    CHECK(lyra_gguf_arr_str(g, "tokenizer.ggml.tokens", 512).ptr == NULL, "tok 512 out of range");
    CHECK(lyra_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n) && et == LYRA_GGUF_I32 && n == 512, "types");
    int64_t tt = 0;
    CHECK(lyra_gguf_arr_get_i64(g, "tokenizer.ggml.token_type", 0, &tt) && tt == 2, "type 0 = %lld", (long long)tt);
    CHECK(lyra_gguf_arr_get_i64(g, "tokenizer.ggml.token_type", 3, &tt) && tt == 6, "type 3 = %lld", (long long)tt);
    CHECK(lyra_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &n) && et == LYRA_GGUF_F32 && n == 512, "scores");

    /* tensors: shapes, and bytes equal to the llama2.c checkpoint */
    const lyra_gguf_tensor *te = lyra_gguf_find_tensor(g, "token_embd.weight");
    CHECK(te && te->type == LYRA_TYPE_F32 && te->n_dims == 2 && te->ne[0] == 64 && te->ne[1] == 512 &&
          te->n_bytes == 64 * 512 * 4, "token_embd shape");
    const lyra_gguf_tensor *out = lyra_gguf_find_tensor(g, "output.weight");
    CHECK(out && out->ne[0] == 64 && out->ne[1] == 512, "output.weight (tied, stored as a copy)");
    const lyra_gguf_tensor *ff = lyra_gguf_find_tensor(g, "blk.4.ffn_down.weight");
    CHECK(ff && ff->ne[0] == 172 && ff->ne[1] == 64, "ffn_down shape");
    uint64_t sum = 0;
    for (int64_t i = 0; i < lyra_gguf_n_tensors(g); i++) {
        const lyra_gguf_tensor *t = lyra_gguf_tensor_at(g, i);
        sum += t->n_bytes;
        const uint8_t *base = lyra_gguf_part_map(g, 0);
        CHECK((const uint8_t *)t->data == base + lyra_gguf_data_start(g, 0) + t->offset, "zero-copy %s", t->name);
        CHECK(((uintptr_t)t->data & 31) == 0, "aligned %s", t->name);
    }
    CHECK(sum == lyra_gguf_data_bytes(g), "data bytes %llu", (unsigned long long)sum);
    CHECK(lyra_gguf_tensor_at(g, 48) == NULL && lyra_gguf_tensor_at(g, -1) == NULL, "tensor_at bounds");
    /* llama2.c layout: 7 int32, token embedding [512][64], rms_att [5][64],
     * wq [5][64][64], ... rms_final [64] */
    static float ref[512 * 64];
    long o_tok = 28, o_att = o_tok + 512 * 64 * 4, o_wq = o_att + 5 * 64 * 4;
    long o_final = o_wq + (5L * 64 * 64 * 2 + 5L * 64 * 32 * 2 + 5 * 64 + 3L * 5 * 172 * 64) * 4;
    struct { const char *name; long off; size_t n; } cmp[] = {
        {"token_embd.weight", o_tok, 512 * 64}, {"blk.0.attn_norm.weight", o_att, 64},
        {"blk.1.attn_norm.weight", o_att + 64 * 4, 64}, {"blk.0.attn_q.weight", o_wq, 64 * 64},
        {"output_norm.weight", o_final, 64}};
    for (size_t k = 0; k < sizeof cmp / sizeof cmp[0]; k++) {
        const lyra_gguf_tensor *t = lyra_gguf_find_tensor(g, cmp[k].name);
        CHECK(t && t->n_bytes == cmp[k].n * 4, "%s size", cmp[k].name);
        CHECK(read_at(bpath, cmp[k].off, ref, cmp[k].n * 4), "read %s", bpath);
        CHECK(t && memcmp(t->data, ref, cmp[k].n * 4) == 0, "%s bytes equal stories260K.bin", cmp[k].name);
    }
    lyra_gguf_close(g);
}

static void test_babyllama(void) {
    lyra_gguf *g = open_ok(test_shared_path("models/babyllama105.gguf"));
    if (!g) return;
    CHECK(u32_of(g, "llama.embedding_length") == 128, "dim");
    CHECK(u32_of(g, "llama.feed_forward_length") == 352, "hidden");
    CHECK(u32_of(g, "llama.block_count") == 5, "layers");
    CHECK(u32_of(g, "llama.attention.head_count") == 8, "heads");
    CHECK(u32_of(g, "llama.attention.head_count_kv") == 4, "kv heads");
    CHECK(u32_of(g, "llama.context_length") == 256, "ctx");
    uint64_t n = 0;
    CHECK(lyra_gguf_get_arr(g, "tokenizer.ggml.tokens", NULL, &n) && n == 105, "vocab %llu", (unsigned long long)n);
    CHECK(lyra_gguf_n_tensors(g) == 48, "tensors");
    const lyra_gguf_tensor *t = lyra_gguf_find_tensor(g, "token_embd.weight");
    CHECK(t && t->ne[0] == 128 && t->ne[1] == 105, "embd shape");
    t = lyra_gguf_find_tensor(g, "blk.0.ffn_gate.weight");
    CHECK(t && t->ne[0] == 128 && t->ne[1] == 352, "ffn_gate shape");
    lyra_gguf_close(g);
}

static void test_vocab_files(void) {
    lyra_gguf *g = open_ok(test_shared_path("models/vocab/ggml-vocab-gpt-2.gguf"));
    if (g) {
        uint64_t n = 0;
        lyra_gguf_vtype et;
        CHECK(lyra_gguf_n_tensors(g) == 0 && lyra_gguf_data_bytes(g) == 0, "no tensors");
        CHECK(lyra_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n) && n == 50257, "gpt2 tokens %llu", (unsigned long long)n);
        CHECK(str_is(lyra_gguf_arr_str(g, "tokenizer.ggml.tokens", 0), "!"), "tok 0");
        CHECK(lyra_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n) && et == LYRA_GGUF_STRING && n == 50000, "merges");
        CHECK(str_is(lyra_gguf_arr_str(g, "tokenizer.ggml.merges", 0), "\xc4\xa0 t"), "merge 0");
        CHECK(u32_of(g, "tokenizer.ggml.bos_token_id") == 50256, "bos");
        lyra_gguf_str s;
        CHECK(lyra_gguf_get_str(g, "tokenizer.ggml.pre", &s) && str_is(s, "gpt-2"), "pre");
        lyra_gguf_close(g);
    }
    g = open_ok(test_shared_path("models/vocab/ggml-vocab-llama-spm.gguf"));
    if (g) {
        uint64_t n = 0;
        int b = -1;
        CHECK(lyra_gguf_get_arr(g, "tokenizer.ggml.scores", NULL, &n) && n == 32000, "spm scores");
        CHECK(u32_of(g, "llama.vocab_size") == 32000, "vocab_size");
        CHECK(lyra_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) && b == 1, "add_bos");
        CHECK(lyra_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b) && b == 0, "add_eos");
        float sc = 0;
        CHECK(str_is(lyra_gguf_arr_str(g, "tokenizer.ggml.tokens", 31999), "\xe7\xbb\x99"), "last token");
        CHECK(str_is(lyra_gguf_arr_str(g, "tokenizer.ggml.tokens", 259), "\xe2\x96\x81\xe2\x96\x81"), "token 259");
        CHECK(lyra_gguf_arr_get_f32(g, "tokenizer.ggml.scores", 31999, &sc) && sc == -31740.0f, "score %g", sc);
        lyra_gguf_close(g);
    }
}

/* --------------------------------------------------- writer round trip */

static const lyra_type tensor_types[] = {LYRA_TYPE_F32, LYRA_TYPE_F16, LYRA_TYPE_BF16, LYRA_TYPE_Q8_0,
                                         LYRA_TYPE_Q4_0, LYRA_TYPE_Q4_K, LYRA_TYPE_Q6_K};
#define N_TT ((int)(sizeof tensor_types / sizeof tensor_types[0]))

/* Fill buf with n pseudo-random bytes from seed. */
static void fill(uint8_t *buf, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        buf[i] = (uint8_t)(seed >> 24);
    }
}

/* Tensor data for the round trip: type k, shape [blk*3, 2]. */
static uint8_t *tdata[N_TT];
static int64_t tne[N_TT][2];

static void add_all_values(lyra_gguf_writer *w) {
    uint8_t u8 = 250; int8_t i8 = -120; uint16_t u16 = 65535; int16_t i16 = -32768;
    uint32_t u32 = 4294967295u; int32_t i32 = -2147483647 - 1; float f32 = -1.5e-7f;
    uint8_t bt = 1; uint64_t u64 = UINT64_MAX; int64_t i64 = INT64_MIN; double f64 = 1.0 / 3.0;
    CHECK(lyra_gguf_writer_add_val(w, "v.u8", LYRA_GGUF_U8, &u8) == 0, "u8");
    CHECK(lyra_gguf_writer_add_val(w, "v.i8", LYRA_GGUF_I8, &i8) == 0, "i8");
    CHECK(lyra_gguf_writer_add_val(w, "v.u16", LYRA_GGUF_U16, &u16) == 0, "u16");
    CHECK(lyra_gguf_writer_add_val(w, "v.i16", LYRA_GGUF_I16, &i16) == 0, "i16");
    CHECK(lyra_gguf_writer_add_val(w, "v.u32", LYRA_GGUF_U32, &u32) == 0, "u32");
    CHECK(lyra_gguf_writer_add_val(w, "v.i32", LYRA_GGUF_I32, &i32) == 0, "i32");
    CHECK(lyra_gguf_writer_add_val(w, "v.f32", LYRA_GGUF_F32, &f32) == 0, "f32");
    CHECK(lyra_gguf_writer_add_val(w, "v.bool", LYRA_GGUF_BOOL, &bt) == 0, "bool");
    CHECK(lyra_gguf_writer_add_val(w, "v.u64", LYRA_GGUF_U64, &u64) == 0, "u64");
    CHECK(lyra_gguf_writer_add_val(w, "v.i64", LYRA_GGUF_I64, &i64) == 0, "i64");
    CHECK(lyra_gguf_writer_add_val(w, "v.f64", LYRA_GGUF_F64, &f64) == 0, "f64");
    CHECK(lyra_gguf_writer_add_u32(w, "w.u32", 7) == 0 && lyra_gguf_writer_add_i32(w, "w.i32", -7) == 0 &&
          lyra_gguf_writer_add_f32(w, "w.f32", 0.25f) == 0 && lyra_gguf_writer_add_bool(w, "w.bool", 0) == 0,
          "typed adders");
    CHECK(lyra_gguf_writer_add_str(w, "s.str", "h\xc3\xa9llo") == 0, "str");
    CHECK(lyra_gguf_writer_add_str(w, "s.empty", "") == 0, "empty str");
    const char *strs[] = {"a", "", "with\0nul", "\xe2\x98\x83"};
    uint64_t lens[] = {1, 0, 8, 3};
    CHECK(lyra_gguf_writer_add_arr_str(w, "a.str", strs, lens, 4) == 0, "arr str");
    CHECK(lyra_gguf_writer_add_arr_str(w, "a.str0", strs, NULL, 0) == 0, "empty arr str");
    int32_t ai[] = {1, -2, 2147483647};
    float af[] = {0.5f, -0.0f, 3e38f};
    double ad[] = {1e300, -2.5};
    uint8_t ab[] = {1, 0, 1, 1};
    uint64_t au[] = {0, UINT64_MAX};
    int16_t ah[] = {-5, 5};
    CHECK(lyra_gguf_writer_add_arr(w, "a.i32", LYRA_GGUF_I32, ai, 3) == 0, "arr i32");
    CHECK(lyra_gguf_writer_add_arr(w, "a.f32", LYRA_GGUF_F32, af, 3) == 0, "arr f32");
    CHECK(lyra_gguf_writer_add_arr(w, "a.f64", LYRA_GGUF_F64, ad, 2) == 0, "arr f64");
    CHECK(lyra_gguf_writer_add_arr(w, "a.bool", LYRA_GGUF_BOOL, ab, 4) == 0, "arr bool");
    CHECK(lyra_gguf_writer_add_arr(w, "a.u64", LYRA_GGUF_U64, au, 2) == 0, "arr u64");
    CHECK(lyra_gguf_writer_add_arr(w, "a.i16", LYRA_GGUF_I16, ah, 2) == 0, "arr i16");
    CHECK(lyra_gguf_writer_add_arr(w, "a.u8.empty", LYRA_GGUF_U8, NULL, 0) == 0, "empty arr");
    /* replacing a key keeps its place and takes the new value */
    CHECK(lyra_gguf_writer_add_str(w, "general.name", "first") == 0 &&
          lyra_gguf_writer_add_str(w, "general.name", "second") == 0, "replace");
}

static void add_all_tensors(lyra_gguf_writer *w) {
    for (int k = 0; k < N_TT; k++) {
        lyra_type t = tensor_types[k];
        tne[k][0] = lyra_type_block(t) * 3;
        tne[k][1] = 2;
        size_t n = lyra_row_bytes(t, tne[k][0]) * 2;
        tdata[k] = malloc(n);
        fill(tdata[k], n, (uint32_t)k + 1);
        char name[32];
        snprintf(name, sizeof name, "t.%s", lyra_type_name(t));
        CHECK(lyra_gguf_writer_add_tensor(w, name, t, 2, tne[k], tdata[k]) == 0, "add %s", name);
    }
}

static void check_all(const lyra_gguf *g) {
    uint32_t u32; int64_t i64; uint64_t u64; float f32; double f64; int b; lyra_gguf_str s;
    CHECK(lyra_gguf_get_u32(g, "v.u8", &u32) && u32 == 250, "u8");
    CHECK(lyra_gguf_get_i64(g, "v.i8", &i64) && i64 == -120, "i8");
    CHECK(lyra_gguf_get_u32(g, "v.u16", &u32) && u32 == 65535, "u16");
    CHECK(lyra_gguf_get_i64(g, "v.i16", &i64) && i64 == -32768, "i16");
    CHECK(lyra_gguf_get_u32(g, "v.u32", &u32) && u32 == 4294967295u, "u32");
    CHECK(lyra_gguf_get_i64(g, "v.i32", &i64) && i64 == INT32_MIN, "i32");
    CHECK(lyra_gguf_get_f32(g, "v.f32", &f32) && f32 == -1.5e-7f, "f32");
    CHECK(lyra_gguf_get_bool(g, "v.bool", &b) && b == 1, "bool");
    CHECK(lyra_gguf_get_u64(g, "v.u64", &u64) && u64 == UINT64_MAX, "u64");
    CHECK(lyra_gguf_get_i64(g, "v.i64", &i64) && i64 == INT64_MIN, "i64");
    CHECK(lyra_gguf_get_f64(g, "v.f64", &f64) && f64 == 1.0 / 3.0, "f64");
    CHECK(lyra_gguf_get_f32(g, "v.f64", &f32) && f32 == (float)(1.0 / 3.0), "f64 as f32");
    CHECK(lyra_gguf_get_u32(g, "w.u32", &u32) && u32 == 7, "w.u32");
    CHECK(lyra_gguf_get_i64(g, "w.i32", &i64) && i64 == -7, "w.i32");
    CHECK(lyra_gguf_get_f32(g, "w.f32", &f32) && f32 == 0.25f, "w.f32");
    CHECK(lyra_gguf_get_bool(g, "w.bool", &b) && b == 0, "w.bool");
    CHECK(lyra_gguf_get_str(g, "s.str", &s) && str_is(s, "h\xc3\xa9llo"), "str");
    CHECK(lyra_gguf_get_str(g, "s.empty", &s) && s.len == 0, "empty str");
    CHECK(lyra_gguf_get_str(g, "general.name", &s) && str_is(s, "second"), "replaced");
    /* type checks: nothing converts that should not */
    CHECK(!lyra_gguf_get_u32(g, "v.i8", &u32), "negative as u32");
    CHECK(!lyra_gguf_get_u32(g, "v.u64", &u32), "u64 max as u32");
    CHECK(!lyra_gguf_get_i64(g, "v.u64", &i64), "u64 max as i64");
    CHECK(!lyra_gguf_get_u64(g, "v.i64", &u64), "negative as u64");
    CHECK(!lyra_gguf_get_f32(g, "v.u32", &f32), "int as f32");
    CHECK(!lyra_gguf_get_u32(g, "v.f32", &u32), "float as u32");
    CHECK(!lyra_gguf_get_bool(g, "v.u8", &b), "u8 as bool");
    CHECK(!lyra_gguf_get_str(g, "v.u8", &s), "u8 as str");
    CHECK(!lyra_gguf_get_u32(g, "v.bool", &u32), "bool as u32");
    CHECK(!lyra_gguf_get_u32(g, "no.such.key", &u32), "absent");
    CHECK(!lyra_gguf_get_arr(g, "s.str", NULL, NULL), "str as arr");
    CHECK(lyra_gguf_arr_data(g, "a.str") == NULL, "arr_data of strings");
    CHECK(lyra_gguf_arr_str(g, "a.i32", 0).ptr == NULL, "arr_str of ints");
    /* arrays */
    lyra_gguf_vtype et; uint64_t n;
    CHECK(lyra_gguf_get_arr(g, "a.str", &et, &n) && et == LYRA_GGUF_STRING && n == 4, "a.str");
    s = lyra_gguf_arr_str(g, "a.str", 2);
    CHECK(s.len == 8 && memcmp(s.ptr, "with\0nul", 8) == 0, "string with NUL");
    CHECK(str_is(lyra_gguf_arr_str(g, "a.str", 3), "\xe2\x98\x83"), "utf-8");
    CHECK(lyra_gguf_arr_str(g, "a.str", 1).len == 0 && lyra_gguf_arr_str(g, "a.str", 1).ptr, "empty element");
    CHECK(lyra_gguf_arr_str(g, "a.str", 4).ptr == NULL, "out of range");
    CHECK(lyra_gguf_get_arr(g, "a.str0", &et, &n) && et == LYRA_GGUF_STRING && n == 0, "empty str arr");
    CHECK(lyra_gguf_get_arr(g, "a.u8.empty", &et, &n) && et == LYRA_GGUF_U8 && n == 0, "empty arr");
    CHECK(lyra_gguf_arr_get_i64(g, "a.i32", 2, &i64) && i64 == 2147483647, "a.i32[2]");
    CHECK(lyra_gguf_arr_get_i64(g, "a.i32", 1, &i64) && i64 == -2, "a.i32[1]");
    CHECK(!lyra_gguf_arr_get_i64(g, "a.i32", 3, &i64), "a.i32[3] out of range");
    CHECK(!lyra_gguf_arr_get_i64(g, "a.f32", 0, &i64), "float as int");
    CHECK(!lyra_gguf_arr_get_i64(g, "a.u64", 1, &i64), "u64 max as i64");
    CHECK(lyra_gguf_arr_get_i64(g, "a.i16", 0, &i64) && i64 == -5, "a.i16[0]");
    CHECK(lyra_gguf_arr_get_f32(g, "a.f32", 2, &f32) && f32 == 3e38f, "a.f32[2]");
    CHECK(!lyra_gguf_arr_get_f32(g, "a.f64", 0, &f32), "1e300 does not fit f32");
    CHECK(lyra_gguf_arr_get_f32(g, "a.f64", 1, &f32) && f32 == -2.5f, "a.f64[1]");
    const uint8_t *bd = lyra_gguf_arr_data(g, "a.bool");
    CHECK(bd && bd[0] == 1 && bd[1] == 0 && bd[3] == 1, "bool array data");
    const uint8_t *ud = lyra_gguf_arr_data(g, "a.u64");
    CHECK(ud && ud[0] == 0 && ud[8] == 0xff && ud[15] == 0xff, "u64 array data LE");
    /* tensors */
    CHECK(lyra_gguf_n_tensors(g) == N_TT, "n tensors");
    uint64_t prev_end = 0;
    for (int k = 0; k < N_TT; k++) {
        const lyra_gguf_tensor *t = lyra_gguf_tensor_at(g, k);
        char name[32];
        snprintf(name, sizeof name, "t.%s", lyra_type_name(tensor_types[k]));
        CHECK(t && strcmp(t->name, name) == 0 && lyra_gguf_find_tensor(g, name) == t, "tensor %d name", k);
        if (!t) continue;
        size_t nb = lyra_row_bytes(tensor_types[k], tne[k][0]) * 2;
        CHECK(t->type == tensor_types[k] && t->n_dims == 2 && t->ne[0] == tne[k][0] && t->ne[1] == 2 &&
              t->ne[2] == 1 && t->ne[3] == 1 && t->n_elements == tne[k][0] * 2 && t->n_bytes == nb,
              "tensor %s shape", name);
        CHECK(memcmp(t->data, tdata[k], nb) == 0, "tensor %s bytes", name);
        CHECK(t->offset % 32 == 0 && t->offset >= prev_end, "tensor %s offset in add order", name);
        prev_end = t->offset + t->n_bytes;
    }
}

static int skip_v(const char *key, void *user) {
    (void)user;
    return strncmp(key, "v.", 2) == 0;
}

static void test_roundtrip(void) {
    char path[4200], path2[4200];
    snprintf(path, sizeof path, "%s/rt.gguf", test_tmp_dir());
    snprintf(path2, sizeof path2, "%s/rt2.gguf", test_tmp_dir());
    lyra_gguf_writer *w = lyra_gguf_writer_new();
    add_all_values(w);
    add_all_tensors(w);
    lyra_error err;
    CHECK(lyra_gguf_writer_write(w, path, &err) == 0, "write: %s", err.msg);
    lyra_gguf_writer_free(w);
    CHECK(count_files(test_tmp_dir(), "rt.gguf.tmp") == 0, "no temp file left");
    lyra_gguf *g = open_ok(path);
    if (!g) return;
    CHECK(lyra_gguf_version(g) == 3, "v3");
    CHECK(lyra_gguf_find_key(g, "general.alignment") == -1, "no alignment key at 32");
    CHECK(lyra_gguf_n_kv(g) == 27, "n_kv %lld", (long long)lyra_gguf_n_kv(g));
    CHECK(strcmp(lyra_gguf_kv_key(g, 0), "v.u8") == 0 && lyra_gguf_kv_type(g, 0) == LYRA_GGUF_U8, "order");
    CHECK(lyra_gguf_kv_key(g, 27) == NULL && lyra_gguf_kv_type(g, -1) == LYRA_GGUF_NONE, "kv bounds");
    check_all(g);
    /* file size: data start + tensors padded to 32 */
    uint64_t end = lyra_gguf_data_start(g, 0);
    for (int k = 0; k < N_TT; k++) end += (lyra_gguf_tensor_at(g, k)->n_bytes + 31) / 32 * 32;
    CHECK(lyra_gguf_part_size(g, 0) == end, "file size %llu want %llu",
          (unsigned long long)lyra_gguf_part_size(g, 0), (unsigned long long)end);

    /* rewrite from the opened file: copy_kv + tensors -> byte-identical */
    w = lyra_gguf_writer_new();
    CHECK(lyra_gguf_writer_copy_kv(w, g, NULL, NULL) == 0, "copy_kv");
    for (int64_t i = 0; i < lyra_gguf_n_tensors(g); i++) {
        const lyra_gguf_tensor *t = lyra_gguf_tensor_at(g, i);
        lyra_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data);
    }
    CHECK(lyra_gguf_writer_write(w, path2, &err) == 0, "rewrite: %s", err.msg);
    lyra_gguf_writer_free(w);
    size_t n1 = 0, n2 = 0;
    char *b1 = test_read_file(path, &n1), *b2 = test_read_file(path2, &n2);
    CHECK(b1 && b2 && n1 == n2 && memcmp(b1, b2, n1) == 0, "copy is byte-identical (%zu vs %zu bytes)", n1, n2);
    free(b2);

    /* the same bytes parse from memory too */
    lyra_gguf *gm = NULL;
    CHECK(lyra_gguf_open_buffer(b1, n1, "mem", &gm, &err) == 0, "open_buffer: %s", err.msg);
    if (gm) { check_all(gm); lyra_gguf_close(gm); }
    free(b1);

    /* copy_kv with a skip function */
    w = lyra_gguf_writer_new();
    CHECK(lyra_gguf_writer_copy_kv(w, g, skip_v, NULL) == 0, "copy_kv skip");
    CHECK(lyra_gguf_writer_write(w, path2, &err) == 0, "write skip: %s", err.msg);
    lyra_gguf_writer_free(w);
    lyra_gguf_close(g);
    g = open_ok(path2);
    if (g) {
        CHECK(lyra_gguf_n_kv(g) == 27 - 11 && lyra_gguf_find_key(g, "v.u8") == -1 &&
              lyra_gguf_find_key(g, "a.str") >= 0 && lyra_gguf_n_tensors(g) == 0, "skipped v.*");
        lyra_gguf_close(g);
    }
    for (int k = 0; k < N_TT; k++) free(tdata[k]);
    remove(path);
    remove(path2);
}

static void test_alignment64(void) {
    char path[4200];
    snprintf(path, sizeof path, "%s/a64.gguf", test_tmp_dir());
    float a[5] = {1, 2, 3, 4, 5}, b[3] = {6, 7, 8};
    int64_t na = 5, nb = 3;
    lyra_gguf_writer *w = lyra_gguf_writer_new();
    lyra_gguf_writer_set_alignment(w, 64);
    lyra_gguf_writer_add_str(w, "general.name", "x");
    lyra_gguf_writer_add_tensor(w, "a", LYRA_TYPE_F32, 1, &na, a);
    lyra_gguf_writer_add_tensor(w, "b", LYRA_TYPE_F32, 1, &nb, b);
    lyra_error err;
    CHECK(lyra_gguf_writer_write(w, path, &err) == 0, "write: %s", err.msg);
    lyra_gguf_writer_free(w);
    lyra_gguf *g = open_ok(path);
    if (!g) return;
    uint32_t al = 0;
    CHECK(lyra_gguf_get_u32(g, "general.alignment", &al) && al == 64, "alignment key %u", al);
    CHECK(lyra_gguf_data_start(g, 0) % 64 == 0, "data start aligned");
    const lyra_gguf_tensor *t = lyra_gguf_find_tensor(g, "b");
    CHECK(t && t->offset == 64 && memcmp(t->data, b, sizeof b) == 0, "b at 64");
    CHECK(lyra_gguf_part_size(g, 0) == lyra_gguf_data_start(g, 0) + 128, "padded size");
    /* copying into a default writer rewrites general.alignment to 32 */
    w = lyra_gguf_writer_new();
    lyra_gguf_writer_copy_kv(w, g, NULL, NULL);
    lyra_gguf_writer_add_tensor(w, "b", LYRA_TYPE_F32, 1, &nb, b);
    CHECK(lyra_gguf_writer_write(w, path, &err) == 0, "rewrite: %s", err.msg);
    lyra_gguf_writer_free(w);
    lyra_gguf_close(g);
    g = open_ok(path);
    if (g) {
        CHECK(lyra_gguf_get_u32(g, "general.alignment", &al) && al == 32, "alignment now %u", al);
        lyra_gguf_close(g);
    }
    remove(path);
    w = lyra_gguf_writer_new();
    lyra_gguf_writer_set_alignment(w, 48);
    CHECK(lyra_gguf_writer_write(w, path, &err) == LYRA_ERR_INPUT && strstr(err.msg, "power of two"), "align 48: %s", err.msg);
    lyra_gguf_writer_free(w);
}

/* Failures leave neither the output nor a temp file. */
static void test_writer_failures(void) {
    const char *dir = test_tmp_dir();
    char path[4200];
    lyra_error err;
    float x[32] = {0};
    int64_t ne = 32, ne_bad = 33, ne_neg = -1;

    snprintf(path, sizeof path, "%s/no/such/dir/out.gguf", dir);
    lyra_gguf_writer *w = lyra_gguf_writer_new();
    CHECK(lyra_gguf_writer_write(w, path, &err) == LYRA_ERR_INPUT && strstr(err.msg, "No such file"),
          "missing dir: %s", err.msg);
    lyra_gguf_writer_free(w);

    snprintf(path, sizeof path, "%s/fail.gguf", dir);
    struct { const char *what; int expect_add; } cases[] = {
        {"duplicate tensor", LYRA_ERR_INPUT}, {"q8_0 ne0 33", LYRA_ERR_INPUT}, {"unknown type", LYRA_ERR_INPUT},
        {"negative dim", LYRA_ERR_INPUT}, {"n_dims 5", LYRA_ERR_INPUT}, {"long name", LYRA_ERR_INPUT},
        {"empty key", LYRA_ERR_INPUT}, {"bad bool", LYRA_ERR_INPUT}, {"null data", LYRA_ERR_INPUT},
    };
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); c++) {
        w = lyra_gguf_writer_new();
        lyra_gguf_writer_add_tensor(w, "ok", LYRA_TYPE_F32, 1, &ne, x);
        int rc = -1;
        uint8_t two = 2;
        char longname[80];
        memset(longname, 'n', 65);
        longname[65] = 0;
        switch (c) {
        case 0: rc = lyra_gguf_writer_add_tensor(w, "ok", LYRA_TYPE_F32, 1, &ne, x); break;
        case 1: rc = lyra_gguf_writer_add_tensor(w, "q", LYRA_TYPE_Q8_0, 1, &ne_bad, x); break;
        case 2: rc = lyra_gguf_writer_add_tensor(w, "u", (lyra_type)4, 1, &ne, x); break;
        case 3: rc = lyra_gguf_writer_add_tensor(w, "n", LYRA_TYPE_F32, 1, &ne_neg, x); break;
        case 4: rc = lyra_gguf_writer_add_tensor(w, "d", LYRA_TYPE_F32, 5, &ne, x); break;
        case 5: rc = lyra_gguf_writer_add_tensor(w, longname, LYRA_TYPE_F32, 1, &ne, x); break;
        case 6: rc = lyra_gguf_writer_add_u32(w, "", 1); break;
        case 7: rc = lyra_gguf_writer_add_val(w, "b", LYRA_GGUF_BOOL, &two); break;
        case 8: rc = lyra_gguf_writer_add_tensor(w, "z", LYRA_TYPE_F32, 1, &ne, NULL); break;
        }
        CHECK(rc == cases[c].expect_add, "%s: add returned %d", cases[c].what, rc);
        lyra_gguf_writer_add_u32(w, "later", 1); /* later calls do not clear the error */
        int wr = lyra_gguf_writer_write(w, path, &err);
        CHECK(wr == LYRA_ERR_INPUT && strncmp(err.msg, "gguf writer: ", 13) == 0, "%s: write %d '%s'",
              cases[c].what, wr, err.msg);
        CHECK(!file_exists(path) && count_files(dir, "fail.gguf.tmp") == 0, "%s: no output", cases[c].what);
        lyra_gguf_writer_free(w);
    }

    /* a write that fails half way (file size limit): temp removed, old file kept */
    FILE *f = fopen(path, "wb");
    fputs("old", f);
    fclose(f);
    size_t big = 1 << 20;
    float *data = calloc(big / 4, 4);
    int64_t nbig = (int64_t)(big / 4);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 64 * 1024;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    if (old.rlim_cur == RLIM_INFINITY || old.rlim_cur > lim.rlim_cur) {
        setrlimit(RLIMIT_FSIZE, &lim);
        w = lyra_gguf_writer_new();
        lyra_gguf_writer_add_tensor(w, "big", LYRA_TYPE_F32, 1, &nbig, data);
        int wr = lyra_gguf_writer_write(w, path, &err);
        setrlimit(RLIMIT_FSIZE, &old);
        CHECK(wr == LYRA_ERR_RUNTIME && strstr(err.msg, "cannot write"), "short write: %d %s", wr, err.msg);
        lyra_gguf_writer_free(w);
        size_t n = 0;
        char *b = test_read_file(path, &n);
        CHECK(b && n == 3 && memcmp(b, "old", 3) == 0, "old file untouched");
        free(b);
        CHECK(count_files(dir, "fail.gguf.tmp") == 0, "temp removed after a failed write");
    }
    signal(SIGXFSZ, prev);
    /* and a good write replaces it */
    w = lyra_gguf_writer_new();
    lyra_gguf_writer_add_tensor(w, "big", LYRA_TYPE_F32, 1, &nbig, data);
    CHECK(lyra_gguf_writer_write(w, path, &err) == 0, "replace: %s", err.msg);
    lyra_gguf_writer_free(w);
    lyra_gguf *g = open_ok(path);
    if (g) {
        CHECK(lyra_gguf_n_tensors(g) == 1 && lyra_gguf_tensor_at(g, 0)->n_bytes == big, "replaced");
        lyra_gguf_close(g);
    }
    free(data);
    remove(path);
}

/* ------------------------------------------------------- malformed files */

/* A byte builder that remembers offsets. */
typedef struct bb { uint8_t p[4096]; size_t n; } bb;
static size_t put(bb *b, const void *s, size_t n) { size_t at = b->n; memcpy(b->p + b->n, s, n); b->n += n; return at; }
static size_t put_u32(bb *b, uint32_t v) { uint8_t x[4]; for (int i = 0; i < 4; i++) x[i] = (uint8_t)(v >> 8 * i); return put(b, x, 4); }
static size_t put_u64(bb *b, uint64_t v) { uint8_t x[8]; for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> 8 * i); return put(b, x, 8); }
static size_t put_str(bb *b, const char *s) { size_t at = put_u64(b, strlen(s)); put(b, s, strlen(s)); return at; }
static void set_u32(bb *b, size_t at, uint32_t v) { for (int i = 0; i < 4; i++) b->p[at + i] = (uint8_t)(v >> 8 * i); }
static void set_u64(bb *b, size_t at, uint64_t v) { for (int i = 0; i < 8; i++) b->p[at + i] = (uint8_t)(v >> 8 * i); }

/* Offsets of the fields of the mini file. */
typedef struct mini_off {
    size_t version, n_tensors, n_kv;
    size_t k0_len, k1_len, k1_type, k1_val, k2_len, k2_type, k2_etype, k2_count, k2_e0_len;
    size_t k3_len, k3_val; /* bool */
    size_t t0_len, t0_ndims, t0_ne0, t0_ne1, t0_type, t0_off;
    size_t t1_len, t1_name, t1_ndims, t1_ne0, t1_type, t1_off;
    size_t data, end_t0;
} mini_off;

/* mini: 4 kvs (string, u32, string array, bool), tensors w (Q8_0 [32,2],
 * 68 bytes at 0) and v (F32 [4], at 96), no padding after v: the last byte
 * of the file is the last byte of v. */
static void make_mini(bb *b, mini_off *o) {
    b->n = 0;
    put(b, "GGUF", 4);
    o->version = put_u32(b, 3);
    o->n_tensors = put_u64(b, 2);
    o->n_kv = put_u64(b, 4);
    o->k0_len = put_str(b, "general.architecture");
    put_u32(b, LYRA_GGUF_STRING);
    put_str(b, "llama");
    o->k1_len = put_str(b, "a.u32");
    o->k1_type = put_u32(b, LYRA_GGUF_U32);
    o->k1_val = put_u32(b, 7);
    o->k2_len = put_str(b, "a.arr");
    o->k2_type = put_u32(b, LYRA_GGUF_ARRAY);
    o->k2_etype = put_u32(b, LYRA_GGUF_STRING);
    o->k2_count = put_u64(b, 2);
    o->k2_e0_len = put_str(b, "x");
    put_str(b, "yz");
    o->k3_len = put_str(b, "a.b");
    put_u32(b, LYRA_GGUF_BOOL);
    uint8_t one = 1;
    o->k3_val = put(b, &one, 1);
    o->t0_len = put_str(b, "w");
    o->t0_ndims = put_u32(b, 2);
    o->t0_ne0 = put_u64(b, 32);
    o->t0_ne1 = put_u64(b, 2);
    o->t0_type = put_u32(b, LYRA_TYPE_Q8_0);
    o->t0_off = put_u64(b, 0);
    o->t1_len = put_str(b, "v");
    o->t1_name = o->t1_len + 8;
    o->t1_ndims = put_u32(b, 1);
    o->t1_ne0 = put_u64(b, 4);
    o->t1_type = put_u32(b, LYRA_TYPE_F32);
    o->t1_off = put_u64(b, 96);
    while (b->n % 32) b->p[b->n++] = 0;
    o->data = b->n;
    for (int i = 0; i < 96; i++) b->p[b->n++] = (uint8_t)(i < 68 ? i : 0);
    float v[4] = {1, 2, 3, 4};
    put(b, v, 16);
    o->end_t0 = o->data + 68;
}

/* Parse from an exactly-sized heap copy (ASan sees any overread). */
static int parse_mem(const uint8_t *p, size_t n, lyra_error *err) {
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, p, n);
    lyra_gguf *g = NULL;
    int rc = lyra_gguf_open_buffer(copy, n, "mini.gguf", &g, err);
    CHECK((rc == LYRA_OK) == (g != NULL), "out set iff ok");
    lyra_gguf_close(g);
    free(copy);
    return rc;
}

/* Expect LYRA_ERR_INPUT with "mini.gguf: offset AT: " and the substring. */
#define ANY ((size_t)-1)
static void expect_bad(const bb *b, size_t at, const char *sub, const char *what) {
    lyra_error err;
    err.msg[0] = 0;
    int rc = parse_mem(b->p, b->n, &err);
    char want[64];
    if (at == ANY) snprintf(want, sizeof want, "mini.gguf: offset ");
    else snprintf(want, sizeof want, "mini.gguf: offset %zu: ", at);
    CHECK(rc == LYRA_ERR_INPUT && err.code == LYRA_ERR_INPUT, "%s: rc %d (%s)", what, rc, err.msg);
    CHECK(strncmp(err.msg, want, strlen(want)) == 0 && strstr(err.msg, sub), "%s: message '%s' want '%s...%s'",
          what, err.msg, want, sub);
}

static void test_malformed(void) {
    bb b;
    mini_off o;
    lyra_error err;
    make_mini(&b, &o);
    CHECK(parse_mem(b.p, b.n, &err) == LYRA_OK, "mini is valid: %s", err.msg);
    {
        lyra_gguf *g = NULL;
        lyra_gguf_open_buffer(b.p, b.n, "mini.gguf", &g, &err);
        const lyra_gguf_tensor *v = g ? lyra_gguf_find_tensor(g, "v") : NULL;
        CHECK(v && ((const float *)v->data)[3] == 4.0f && v->offset == 96, "mini tensor v");
        CHECK(g && str_is(lyra_gguf_arr_str(g, "a.arr", 1), "yz"), "mini a.arr[1]");
        lyra_gguf_close(g);
    }

#define MUT(stmt, at, sub, what) do { make_mini(&b, &o); stmt; expect_bad(&b, at, sub, what); } while (0)
    MUT(b.p[3] = 'X', 0, "not a GGUF file", "magic");
    MUT(set_u32(&b, o.version, 1), 4, "version 1 is not supported", "v1");
    MUT(set_u32(&b, o.version, 4), 4, "version 4 is not supported", "v4");
    MUT(set_u32(&b, o.version, 0x03000000), 4, "big-endian", "big endian");
    MUT(set_u64(&b, o.n_tensors, 1000000000000000000ull), 8, "tensor count 1000000000000000000 exceeds what the file can hold", "n_tensors huge");
    MUT(set_u64(&b, o.n_kv, UINT64_MAX), 16, "key/value count 18446744073709551615 exceeds", "n_kv huge");
    MUT(set_u64(&b, o.n_kv, 5), ANY, "", "n_kv one too many");
    MUT(set_u64(&b, o.n_tensors, 3), ANY, "", "n_tensors one too many");
    MUT(set_u64(&b, o.k0_len, UINT64_MAX), o.k0_len, "string length 18446744073709551615 runs past the end", "key length huge");
    MUT(set_u64(&b, o.k0_len, 0), o.k0_len, "empty key", "key length 0");
    MUT(b.p[o.k1_len + 9] = 0, o.k1_len, "contains a NUL byte", "NUL in key");
    MUT(set_u32(&b, o.k1_type, 13), o.k1_type, "key 'a.u32': unknown value type id 13", "value type 13");
    MUT(set_u32(&b, o.k1_type, 0xffffffffu), o.k1_type, "unknown value type id 4294967295", "value type -1");
    MUT(set_u32(&b, o.k2_etype, 77), o.k2_etype, "unknown array element type id 77", "array elem type");
    MUT(set_u64(&b, o.k2_count, 1ull << 62), o.k2_count, "array count 4611686018427387904 exceeds", "array count huge");
    MUT(set_u64(&b, o.k2_count, 3), ANY, "", "array count one too many");
    MUT(set_u64(&b, o.k2_e0_len, 1000), o.k2_e0_len, "string length 1000 runs past the end", "element length lie");
    MUT(set_u64(&b, o.k2_e0_len, UINT64_MAX - 3), o.k2_e0_len, "runs past the end", "element length overflow");
    MUT(memcpy(b.p + o.k1_len + 8, "a.arr", 5), o.k2_len, "duplicate key 'a.arr'", "duplicate key");
    MUT(b.p[o.k3_val] = 2, o.k3_val, "bool value 2", "bool 2");
    MUT(set_u64(&b, o.t0_len, 0), o.t0_len, "empty name", "tensor name empty");
    MUT(set_u64(&b, o.t0_len, UINT64_MAX), o.t0_len, "runs past the end", "tensor name huge");
    MUT(set_u64(&b, o.t0_len, 65), o.t0_len, "more than 64", "tensor name 65 bytes");
    MUT(set_u32(&b, o.t0_ndims, 0), o.t0_ndims, "n_dims 0 is not in 1..4", "n_dims 0");
    MUT(set_u32(&b, o.t0_ndims, 5), o.t0_ndims, "n_dims 5 is not in 1..4", "n_dims 5");
    MUT(set_u64(&b, o.t0_ne1, 0), o.t0_ne1, "ne[1] = 0 is not in 1..", "dim 0");
    MUT(set_u64(&b, o.t0_ne1, UINT64_MAX), o.t0_ne1, "ne[1] = 18446744073709551615", "dim 2^64-1");
    MUT((set_u64(&b, o.t0_ne0, 1ull << 32), set_u64(&b, o.t0_ne1, 1ull << 32)), o.t0_ne1, "element count overflows", "element overflow");
    MUT(set_u64(&b, o.t1_ne0, 1ull << 62), o.t1_ndims, "byte size overflows", "byte overflow");
    MUT(set_u64(&b, o.t1_ne0, 1ull << 40), o.t1_len, "runs past the end of the file", "dims larger than the file");
    MUT(set_u32(&b, o.t0_type, 4), o.t0_type, "tensor 'w': unknown tensor type id 4", "type 4");
    MUT(set_u32(&b, o.t0_type, 99), o.t0_type, "unknown tensor type id 99", "type 99");
    MUT(set_u32(&b, o.t0_type, 0xffffffffu), o.t0_type, "unknown tensor type id 4294967295", "type -1");
    MUT(set_u64(&b, o.t0_ne0, 33), o.t0_ne0, "ne[0] = 33 is not a multiple of the Q8_0 block size 32", "block");
    MUT(set_u64(&b, o.t1_off, 97), o.t1_off, "data offset 97 is not a multiple of the alignment 32", "misaligned");
    MUT(set_u64(&b, o.t1_off, 128), o.t1_len, "runs past the end", "offset past end");
    MUT(set_u64(&b, o.t1_off, UINT64_MAX - 31), o.t1_len, "runs past the end", "offset overflow");
    MUT(set_u64(&b, o.t1_off, 64), o.t1_len, "tensor 'v' (data offset 64) overlaps tensor 'w'", "overlap");
    MUT(b.p[o.t1_name] = 'w', o.t1_len, "duplicate tensor name 'w'", "duplicate tensor");
    MUT(b.p[o.t1_name] = 0, o.t1_len, "NUL", "NUL in tensor name");
#undef MUT

    /* truncation at every byte: all fail cleanly */
    make_mini(&b, &o);
    int all = 1;
    for (size_t cut = 0; cut < b.n; cut++) {
        err.msg[0] = 0;
        int rc = parse_mem(b.p, cut, &err);
        char want[64];
        snprintf(want, sizeof want, "mini.gguf: offset ");
        if (rc != LYRA_ERR_INPUT || strncmp(err.msg, want, strlen(want)) != 0) {
            CHECK(0, "cut at %zu: rc %d '%s'", cut, rc, err.msg);
            all = 0;
            break;
        }
    }
    CHECK(all, "every truncation of the %zu-byte file fails", b.n);
}

/* Files with general.alignment, nested arrays, v2, NUL-free names of 64. */
static void test_variants(void) {
    lyra_error err;
    /* alignment variants: key placed before the tensor infos */
    for (int c = 0; c < 5; c++) {
        bb b;
        b.n = 0;
        put(&b, "GGUF", 4);
        put_u32(&b, 3);
        put_u64(&b, 1);
        put_u64(&b, 1);
        size_t kat = put_str(&b, "general.alignment");
        uint32_t vals[] = {64, 0, 48, 64, 1};
        put_u32(&b, c == 3 ? LYRA_GGUF_U64 : LYRA_GGUF_U32);
        if (c == 3) put_u64(&b, 64);
        else put_u32(&b, vals[c]);
        put_str(&b, "t");
        put_u32(&b, 1);
        put_u64(&b, 4);
        put_u32(&b, LYRA_TYPE_F32);
        put_u64(&b, 0);
        uint32_t al = c == 4 ? 1 : 64;
        while (b.n % al) b.p[b.n++] = 0;
        size_t data = b.n;
        for (int i = 0; i < 16; i++) b.p[b.n++] = (uint8_t)i;
        if (c == 0 || c == 4) {
            lyra_gguf *g = NULL;
            CHECK(lyra_gguf_open_buffer(b.p, b.n, "al.gguf", &g, &err) == 0, "alignment %u: %s", vals[c], err.msg);
            CHECK(g && lyra_gguf_data_start(g, 0) == data, "data start");
            lyra_gguf_close(g);
        } else {
            CHECK(parse_mem(b.p, b.n, &err) == LYRA_ERR_INPUT && strstr(err.msg, c == 3 ? "expected u32" : "power of two"),
                  "alignment case %d: %s", c, err.msg);
            char want[40];
            snprintf(want, sizeof want, "offset %zu:", kat);
            CHECK(strstr(err.msg, want) != NULL, "alignment error offset: %s", err.msg);
        }
    }
    /* nested arrays: depth 8 is fine, 9 is not; nested data is skipped correctly */
    for (int depth = 1; depth <= 9; depth++) {
        bb b;
        b.n = 0;
        put(&b, "GGUF", 4);
        put_u32(&b, 2); /* v2 reads the same */
        put_u64(&b, 0);
        put_u64(&b, 2);
        put_str(&b, "nest");
        put_u32(&b, LYRA_GGUF_ARRAY);
        for (int d = 1; d < depth; d++) { put_u32(&b, LYRA_GGUF_ARRAY); put_u64(&b, 1); }
        put_u32(&b, LYRA_GGUF_STRING);
        put_u64(&b, 2);
        put_str(&b, "p");
        put_str(&b, "q");
        put_str(&b, "after");
        put_u32(&b, LYRA_GGUF_I16);
        put(&b, "\xfe\xff", 2);
        lyra_gguf *g = NULL;
        int rc = lyra_gguf_open_buffer(b.p, b.n, "nest.gguf", &g, &err);
        if (depth <= LYRA_GGUF_MAX_DEPTH) {
            int64_t v = 0;
            lyra_gguf_vtype et = LYRA_GGUF_NONE;
            uint64_t n = 0;
            CHECK(rc == 0, "depth %d: %s", depth, err.msg);
            CHECK(g && lyra_gguf_version(g) == 2 && lyra_gguf_get_i64(g, "after", &v) && v == -2, "after nested %d", depth);
            CHECK(g && lyra_gguf_get_arr(g, "nest", &et, &n) && n == (depth == 1 ? 2u : 1u) &&
                  et == (depth == 1 ? LYRA_GGUF_STRING : LYRA_GGUF_ARRAY), "nest type");
            CHECK(g && (depth == 1) == (lyra_gguf_arr_str(g, "nest", 1).ptr != NULL), "arr_str only at depth 1");
            CHECK(g && lyra_gguf_arr_data(g, "nest") == NULL, "no arr_data");
        } else {
            CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "nested more than 8 deep"), "depth 9: %s", err.msg);
        }
        lyra_gguf_close(g);
    }
    /* a 64-byte tensor name is allowed */
    {
        bb b;
        char name[65];
        memset(name, 'a', 64);
        name[64] = 0;
        b.n = 0;
        put(&b, "GGUF", 4);
        put_u32(&b, 3);
        put_u64(&b, 1);
        put_u64(&b, 0);
        put_str(&b, name);
        put_u32(&b, 1);
        put_u64(&b, 1);
        put_u32(&b, LYRA_TYPE_F32);
        put_u64(&b, 0);
        while (b.n % 32) b.p[b.n++] = 0;
        put_u32(&b, 0);
        CHECK(parse_mem(b.p, b.n, &err) == 0, "64-byte name: %s", err.msg);
    }
    /* files: empty, directory, missing */
    char path[4200];
    snprintf(path, sizeof path, "%s/empty.gguf", test_tmp_dir());
    fclose(fopen(path, "wb"));
    lyra_gguf *g = NULL;
    CHECK(lyra_gguf_open(path, &g, &err) == LYRA_ERR_INPUT && strstr(err.msg, "offset 0: file is too small") && !g,
          "empty: %s", err.msg);
    CHECK(lyra_gguf_open(test_tmp_dir(), &g, &err) == LYRA_ERR_INPUT && strstr(err.msg, "not a regular file"),
          "dir: %s", err.msg);
    snprintf(path, sizeof path, "%s/missing.gguf", test_tmp_dir());
    CHECK(lyra_gguf_open(path, &g, &err) == LYRA_ERR_INPUT && strstr(err.msg, "cannot open"), "missing: %s", err.msg);
    remove(path);
}

/* Opening reads only the header: a 16 GiB sparse data section opens at once. */
static void test_open_is_header_only(void) {
    char path[4200];
    snprintf(path, sizeof path, "%s/sparse.gguf", test_tmp_dir());
    bb b;
    b.n = 0;
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, 1);
    put_u64(&b, 0);
    put_str(&b, "huge");
    put_u32(&b, 2);
    put_u64(&b, 1ull << 16);
    put_u64(&b, 1ull << 16);
    put_u32(&b, LYRA_TYPE_F32);
    put_u64(&b, 0);
    while (b.n % 32) b.p[b.n++] = 0;
    FILE *f = fopen(path, "wb");
    fwrite(b.p, 1, b.n, f);
    fclose(f);
    if (truncate(path, (off_t)(b.n + (16ull << 30))) != 0) {
        printf("note: no sparse 16 GiB file here; header-only check skipped\n");
        remove(path);
        return;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lyra_gguf *g = open_ok(path);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("open of a 16 GiB file: %.2f ms\n", ms);
    CHECK(g && lyra_gguf_data_bytes(g) == 16ull << 30, "16 GiB tensor");
    CHECK(ms < 500, "opening took %.1f ms: it must not read tensor data", ms);
    lyra_gguf_close(g);
    remove(path);

    /* the biggest header here: 100k strings */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    g = open_ok(test_shared_path("models/vocab/ggml-vocab-gpt-2.gguf"));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("open of ggml-vocab-gpt-2.gguf (1.7 MB header): %.2f ms\n",
           (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    lyra_gguf_close(g);
}

/* -------------------------------------------------------------- split */

/* Write part k (1-based) of n with the given tensors and split keys. */
static int write_part(const char *prefix, int k, int n, int no_key, int count_key, int total_key,
                      const char *const *names, int nt, const float *data) {
    char path[4300];
    snprintf(path, sizeof path, "%s-%05d-of-%05d.gguf", prefix, k, n);
    lyra_gguf_writer *w = lyra_gguf_writer_new();
    if (k == 1) {
        lyra_gguf_writer_add_str(w, "general.architecture", "llama");
        lyra_gguf_writer_add_u32(w, "llama.block_count", 2);
    }
    uint16_t v;
    if (no_key >= 0) { v = (uint16_t)no_key; lyra_gguf_writer_add_val(w, "split.no", LYRA_GGUF_U16, &v); }
    if (count_key >= 0) { v = (uint16_t)count_key; lyra_gguf_writer_add_val(w, "split.count", LYRA_GGUF_U16, &v); }
    if (total_key >= 0) lyra_gguf_writer_add_i32(w, "split.tensors.count", total_key);
    int64_t ne[2] = {8, 2};
    for (int i = 0; i < nt; i++) lyra_gguf_writer_add_tensor(w, names[i], LYRA_TYPE_F32, 2, ne, data + 16 * i);
    lyra_error err;
    int rc = lyra_gguf_writer_write(w, path, &err);
    CHECK(rc == 0, "write part: %s", err.msg);
    lyra_gguf_writer_free(w);
    return rc;
}

static void test_split(void) {
    char prefix[4200], p1[4300], p2[4300];
    float data[64];
    for (int i = 0; i < 64; i++) data[i] = (float)i;
    snprintf(prefix, sizeof prefix, "%s/model", test_tmp_dir());
    snprintf(p1, sizeof p1, "%s-00001-of-00002.gguf", prefix);
    snprintf(p2, sizeof p2, "%s-00002-of-00002.gguf", prefix);
    const char *n1[] = {"a", "b"}, *n2[] = {"c", "d"}, *n2dup[] = {"c", "a"};

    write_part(prefix, 1, 2, 0, 2, 4, n1, 2, data);
    write_part(prefix, 2, 2, 1, 2, 4, n2, 2, data + 32);
    lyra_gguf *g = open_ok(p1);
    if (g) {
        CHECK(lyra_gguf_n_parts(g) == 2 && lyra_gguf_n_tensors(g) == 4, "2 parts, 4 tensors");
        CHECK(strcmp(lyra_gguf_path(g), p1) == 0, "path is part 1");
        uint32_t bc = 0;
        CHECK(lyra_gguf_get_u32(g, "llama.block_count", &bc) && bc == 2, "metadata from part 1");
        const char *names[] = {"a", "b", "c", "d"};
        for (int i = 0; i < 4; i++) {
            const lyra_gguf_tensor *t = lyra_gguf_find_tensor(g, names[i]);
            CHECK(t && t->part == i / 2 && memcmp(t->data, data + 16 * i, 64) == 0, "tensor %s in part %d", names[i], i / 2);
            const uint8_t *m = lyra_gguf_part_map(g, i / 2);
            CHECK(t && (const uint8_t *)t->data >= m && (const uint8_t *)t->data + 64 <= m + lyra_gguf_part_size(g, i / 2),
                  "tensor %s points into its part", names[i]);
        }
        CHECK(lyra_gguf_data_bytes(g) == 4 * 64, "data bytes");
        lyra_gguf_close(g);
    }
    lyra_error err;
    CHECK(lyra_gguf_open(p2, &g, &err) == LYRA_ERR_INPUT && strstr(err.msg, "part 2 of 2") &&
          strstr(err.msg, "model-00001-of-00002.gguf"), "open part 2: %s", err.msg);

    /* the same parts without any split keys still open by name */
    write_part(prefix, 1, 2, -1, -1, -1, n1, 2, data);
    write_part(prefix, 2, 2, -1, -1, -1, n2, 2, data + 32);
    g = open_ok(p1);
    CHECK(g && lyra_gguf_n_tensors(g) == 4, "no split keys");
    lyra_gguf_close(g);

    /* lies */
    write_part(prefix, 2, 2, 1, 3, -1, n2, 2, data + 32);
    CHECK(lyra_gguf_open(p1, &g, &err) == LYRA_ERR_INPUT && strstr(err.msg, p2) &&
          strstr(err.msg, "split.count is 3 but the file names say 2 parts"), "count lie: %s", err.msg);
    write_part(prefix, 2, 2, 0, 2, -1, n2, 2, data + 32);
    CHECK(lyra_gguf_open(p1, &g, &err) == LYRA_ERR_INPUT && strstr(err.msg, "split.no is 0 but the file name says part 2"),
          "no lie: %s", err.msg);
    write_part(prefix, 2, 2, 1, 2, -1, n2, 2, data + 32);
    write_part(prefix, 1, 2, 0, 2, 5, n1, 2, data);
    CHECK(lyra_gguf_open(p1, &g, &err) == LYRA_ERR_INPUT && strstr(err.msg, "split.tensors.count says 5"),
          "tensors.count lie: %s", err.msg);
    write_part(prefix, 1, 2, 0, 2, 4, n1, 2, data);
    write_part(prefix, 2, 2, 1, 2, -1, n2dup, 2, data + 32);
    CHECK(lyra_gguf_open(p1, &g, &err) == LYRA_ERR_INPUT && strstr(err.msg, "duplicate tensor name 'a'") &&
          strstr(err.msg, p2) && strstr(err.msg, "also in"), "dup across parts: %s", err.msg);
    remove(p2);
    CHECK(lyra_gguf_open(p1, &g, &err) == LYRA_ERR_INPUT && strstr(err.msg, p2) && strstr(err.msg, "cannot open"),
          "missing part: %s", err.msg);
    /* a plain name whose file says it is one of 2 parts */
    char plain[4300];
    snprintf(plain, sizeof plain, "%s/plain.gguf", test_tmp_dir());
    rename(p1, plain);
    CHECK(lyra_gguf_open(plain, &g, &err) == LYRA_ERR_INPUT && strstr(err.msg, "split.count is 2 but the file name"),
          "plain name: %s", err.msg);
    remove(plain);

    /* three parts, the middle one without tensors */
    char q[4300];
    const char *t1[] = {"x"}, *t3[] = {"y", "z"};
    write_part(prefix, 1, 3, 0, 3, 3, t1, 1, data);
    write_part(prefix, 2, 3, 1, 3, -1, NULL, 0, data);
    write_part(prefix, 3, 3, 2, 3, -1, t3, 2, data + 16);
    snprintf(q, sizeof q, "%s-00001-of-00003.gguf", prefix);
    g = open_ok(q);
    if (g) {
        const lyra_gguf_tensor *z = lyra_gguf_find_tensor(g, "z");
        CHECK(lyra_gguf_n_parts(g) == 3 && lyra_gguf_n_tensors(g) == 3 && z && z->part == 2 &&
              ((const float *)z->data)[0] == 32.0f, "3 parts");
        lyra_gguf_close(g);
    }
    for (int k = 1; k <= 3; k++) {
        snprintf(q, sizeof q, "%s-%05d-of-00003.gguf", prefix, k);
        remove(q);
    }
}

int main(void) {
    test_stories260k();
    test_babyllama();
    test_vocab_files();
    test_roundtrip();
    test_alignment64();
    test_writer_failures();
    test_malformed();
    test_variants();
    test_split();
    test_open_is_header_only();
    char p[4200];
    snprintf(p, sizeof p, "%s/empty.gguf", test_tmp_dir());
    remove(p);
    rmdir(test_tmp_dir());
    return test_done();
}
