/* test_hf_tokenizer.c: tokenizer.json -> GGUF keys -> lyra's tokenizer.
 *   - the in-memory metadata API (lyra_gguf_new_empty, lyra_gguf_set_*);
 *   - every family under tests/data/tokenizers (and under the directories
 *     given as arguments: tests/cli/test_cli_hftok.sh passes big ones made at
 *     test time) encodes the corpus (tests/data/tokenizers/corpus.json) to
 *     exactly the ids of the `tokenizers` library (expected.json, made by
 *     tests/reference/hf_tok_ref.py): without special tokens added
 *     ("plain") and with them ("special": BOS as the post-processor adds it),
 *     special-token texts always matched as tokenizers does;
 *   - errors: no tokenizer.json, unsupported parts, bad JSON. */
#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "format/hf_tokenizer.h"
#include "testutil.h"
#include "token/tokenizer.h"

static void test_mem_api(void) {
    lyra_error err;
    lyra_gguf *g = lyra_gguf_new_empty("snap");
    CHECK(g != NULL, "new_empty");
    CHECK(!strcmp(lyra_gguf_path(g), "snap"), "path");
    CHECK(lyra_gguf_n_kv(g) == 0 && lyra_gguf_n_tensors(g) == 0, "empty");
    uint32_t u = 7;
    float f = 1.5f;
    uint8_t b = 1;
    CHECK(lyra_gguf_set_val(g, "a.u32", LYRA_GGUF_U32, &u, &err) == 0, "%s", err.msg);
    CHECK(lyra_gguf_set_val(g, "a.f32", LYRA_GGUF_F32, &f, &err) == 0, "%s", err.msg);
    CHECK(lyra_gguf_set_val(g, "a.bool", LYRA_GGUF_BOOL, &b, &err) == 0, "%s", err.msg);
    CHECK(lyra_gguf_set_str(g, "a.str", "hello", 5, &err) == 0, "%s", err.msg);
    int32_t arr[3] = {-1, 2, 3};
    CHECK(lyra_gguf_set_arr(g, "a.arr", LYRA_GGUF_I32, arr, 3, &err) == 0, "%s", err.msg);
    const char *ss[2] = {"x", "yz"};
    CHECK(lyra_gguf_set_arr_str(g, "a.strs", ss, NULL, 2, &err) == 0, "%s", err.msg);
    uint32_t ru;
    float rf;
    int rb;
    lyra_gguf_str rs;
    int64_t ri;
    CHECK(lyra_gguf_get_u32(g, "a.u32", &ru) && ru == 7, "u32");
    CHECK(lyra_gguf_get_f32(g, "a.f32", &rf) && rf == 1.5f, "f32");
    CHECK(lyra_gguf_get_bool(g, "a.bool", &rb) && rb == 1, "bool");
    CHECK(lyra_gguf_get_str(g, "a.str", &rs) && rs.len == 5 && !memcmp(rs.ptr, "hello", 5), "str");
    CHECK(lyra_gguf_arr_get_i64(g, "a.arr", 0, &ri) && ri == -1, "arr");
    rs = lyra_gguf_arr_str(g, "a.strs", 1);
    CHECK(rs.len == 2 && !memcmp(rs.ptr, "yz", 2), "arr str");
    u = 9; /* replace in place */
    CHECK(lyra_gguf_set_val(g, "a.u32", LYRA_GGUF_U32, &u, &err) == 0, "%s", err.msg);
    CHECK(lyra_gguf_get_u32(g, "a.u32", &ru) && ru == 9 && lyra_gguf_n_kv(g) == 6, "replace");
    CHECK(!strcmp(lyra_gguf_kv_key(g, 0), "a.u32"), "order kept");
    lyra_gguf_unset(g, "a.f32");
    CHECK(lyra_gguf_find_key(g, "a.f32") < 0 && lyra_gguf_n_kv(g) == 5, "unset");
    CHECK(lyra_gguf_get_str(g, "a.str", &rs) && rs.len == 5, "after unset");
    CHECK(lyra_gguf_set_str(g, "", "x", 1, &err) == LYRA_ERR_INPUT, "empty key");
    /* the writer copies in-memory keys like a file's */
    lyra_gguf_writer *w = lyra_gguf_writer_new();
    CHECK(lyra_gguf_writer_copy_kv(w, g, NULL, NULL) == 0, "copy_kv");
    char path[512];
    snprintf(path, sizeof path, "%s/mem.gguf", test_tmp_dir());
    CHECK(lyra_gguf_writer_write(w, path, &err) == 0, "%s", err.msg);
    lyra_gguf_writer_free(w);
    lyra_gguf *r = NULL;
    CHECK(lyra_gguf_open(path, &r, &err) == 0, "%s", err.msg);
    if (r) {
        rs = lyra_gguf_arr_str(r, "a.strs", 0);
        CHECK(rs.len == 1 && rs.ptr[0] == 'x', "written strs");
        CHECK(lyra_gguf_get_u32(r, "a.u32", &ru) && ru == 9, "written u32");
        lyra_gguf_close(r);
    }
    lyra_gguf_close(g);
}

/* Encode each corpus text (DIR/corpus.json's when there is one, as the
 * normalizer families have) and compare with expected.json's ids. */
static void check_family(const char *dir, const json_t *corpus) {
    char p[1100];
    snprintf(p, sizeof p, "%.1000s/expected.json", dir);
    json_error_t je;
    json_t *exp = json_load_file(p, 0, &je);
    if (!exp) return; /* not a family */
    snprintf(p, sizeof p, "%.1000s/corpus.json", dir);
    json_t *own = json_load_file(p, 0, &je);
    if (own) corpus = own;
    lyra_error err;
    lyra_gguf *g = lyra_gguf_new_empty(dir);
    lyra_tokenizer *t = NULL;
    int rc = lyra_hf_tokenizer_meta(dir, g, &err);
    CHECK(rc == 0, "%s: %s", dir, err.msg);
    if (!rc) {
        rc = lyra_tokenizer_load(g, &t, &err);
        CHECK(rc == 0, "%s: load: %s", dir, err.msg);
    }
    int bad = 0;
    for (int mode = 0; t && mode < 2; mode++) {
        const json_t *want_all = json_object_get(exp, mode ? "special" : "plain");
        for (size_t i = 0; i < json_array_size(corpus); i++) {
            const json_t *s = json_array_get(corpus, i);
            int32_t *ids = NULL;
            size_t n = 0;
            rc = lyra_tok_encode(t, json_string_value(s), json_string_length(s), mode ? lyra_tok_add_bos(t) : 0,
                                 1, &ids, &n, &err);
            CHECK(rc == 0, "%s: encode: %s", dir, err.msg);
            const json_t *want = json_array_get(want_all, i);
            int same = rc == 0 && n == json_array_size(want);
            for (size_t k = 0; same && k < n; k++) same = ids[k] == json_integer_value(json_array_get(want, k));
            if (!same && bad++ < 3) {
                fprintf(stderr, "%s: %s text %zu '%.60s':\n  lyra:", dir, mode ? "special" : "plain", i,
                        json_string_value(s));
                for (size_t k = 0; k < n; k++) fprintf(stderr, " %d", ids[k]);
                fprintf(stderr, "\n  want:");
                for (size_t k = 0; k < json_array_size(want); k++)
                    fprintf(stderr, " %lld", (long long)json_integer_value(json_array_get(want, k)));
                fputc('\n', stderr);
            }
            CHECK(same, "%s: %s ids of text %zu differ", dir, mode ? "special" : "plain", i);
            free(ids);
        }
    }
    if (t) fprintf(stderr, "%s: %zu texts x 2 %s\n", dir, json_array_size(corpus), bad ? "DIFFER" : "equal");
    lyra_tokenizer_free(t);
    lyra_gguf_close(g);
    json_decref(exp);
    json_decref(own);
}

static int check_families(const char *root, const json_t *corpus) {
    DIR *d = opendir(root);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    char **names = NULL;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        names = realloc(names, (size_t)(n + 1) * sizeof *names);
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    for (int i = 0; i < n; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", root, names[i]);
        struct stat st;
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) check_family(p, corpus);
        free(names[i]);
    }
    free(names);
    return n;
}

static void test_errors(void) {
    lyra_error err;
    lyra_gguf *g = lyra_gguf_new_empty("x");
    int rc = lyra_hf_tokenizer_meta("/nonexistent-dir", g, &err);
    CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, "tokenizer.json not found in /nonexistent-dir; lyra needs it"),
          "missing: %s", err.msg);
    static const struct { const char *json, *want; } cases[] = {
        {"{", "invalid JSON"},
        {"[]", "not a JSON object"},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", "model type Unigram is not supported"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":{\"type\":\"Lowercase\"}}",
         "normalizer Lowercase is not supported"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":{\"type\":\"Sequence\","
         "\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"NFKD\"}]}}", "normalizer NFKD after NFC is not supported"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":{\"type\":\"Sequence\","
         "\"normalizers\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\u2581\"},"
         "{\"type\":\"NFKC\"}]}}", "normalizer NFKC after Prepend/Replace is not supported"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"ab\"]},\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}",
         "model.merges[0]"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-3},\"merges\":[]}}", "not a token id"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Split\","
         "\"pattern\":{\"Regex\":\"x\"},\"behavior\":\"Removed\",\"invert\":false}}", "only Isolated"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rc = lyra_hf_tokenizer_meta_text(cases[i].json, strlen(cases[i].json), NULL, 0, "tokenizer.json", g, &err);
        CHECK(rc == LYRA_ERR_INPUT && strstr(err.msg, cases[i].want), "case %zu: rc %d: %s", i, rc, err.msg);
    }
    /* a tiny byte-level one: ids with a hole, pair merges, a bad regex fails at load */
    const char *ok = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":3},\"merges\":[[\"a\",\"b\"]]},"
                     "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"use_regex\":false}}";
    rc = lyra_hf_tokenizer_meta_text(ok, strlen(ok), NULL, 0, "tokenizer.json", g, &err);
    CHECK(rc == 0, "tiny: %s", err.msg);
    lyra_tokenizer *t = NULL;
    if (rc == 0 && lyra_tokenizer_load(g, &t, &err) == 0) {
        int32_t *ids;
        size_t n;
        CHECK(lyra_tok_n_vocab(t) == 4 && lyra_tok_type(t, 2) == 5, "hole filled");
        CHECK(lyra_tok_encode(t, "abba", 4, 0, 1, &ids, &n, &err) == 0 && n == 3 && ids[0] == 3 && ids[1] == 1 &&
                  ids[2] == 0, "tiny encode");
        free(ids);
        lyra_tokenizer_free(t);
    } else CHECK(0, "tiny load: %s", err.msg);
    lyra_gguf_close(g);
}

int main(int argc, char **argv) {
    test_mem_api();
    test_errors();
    const char *src = getenv("LYRA_SRC_DIR");
    char p[1024];
    snprintf(p, sizeof p, "%s/tests/data/tokenizers/corpus.json", src ? src : ".");
    json_error_t je;
    json_t *corpus = json_load_file(p, 0, &je);
    CHECK(corpus != NULL, "%s: %s", p, je.text);
    if (corpus) {
        snprintf(p, sizeof p, "%s/tests/data/tokenizers", src ? src : ".");
        CHECK(check_families(p, corpus) >= 6, "families in %s", p);
        for (int i = 1; i < argc; i++) check_families(argv[i], corpus);
    }
    json_decref(corpus);
    return test_done();
}
