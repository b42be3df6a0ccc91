/* fuzz_load.c: libFuzzer target for the whole load path of a model file:
 * GGUF reader -> tokenizer -> Llama hyper-parameters and weights. The input
 * is a whole GGUF (lyra_gguf_open_buffer); the seeds in fuzz/corpus/load are
 * tiny models written by `lyra mkmodel` (a generated BPE vocabulary, F32 and
 * Q8_0), so mutations reach the tokenizer and the loader's checks of counts
 * (block_count, heads, vocabulary) against the tensors the file has.
 * Checked beyond "no crash / no sanitizer report":
 *   - a rejected input is LYRA_ERR_INPUT (or OOM) with a one-line message;
 *   - a loaded tokenizer encodes a few texts into in-range ids, and decodes
 *     every id;
 *   - a loaded model's weights lie inside the input, its modules are
 *     n_layer + 3, and its scratch size is computable for a batch of 1.
 * Run (see fuzz/CMakeLists.txt):
 *   fuzz_load -max_total_time=60 NEW_CORPUS_DIR fuzz/corpus/load */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arch/llama.h"
#include "format/gguf.h"
#include "token/tokenizer.h"

#define ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

static volatile uint64_t sink; /* keeps the reads */

static void check_error(int rc, const lyra_error *err) {
    ASSERT(rc == LYRA_ERR_INPUT || rc == LYRA_ERR_OOM);
    ASSERT(err->code == rc && err->msg[0] && !strchr(err->msg, '\n'));
}

static void walk_tokenizer(const lyra_tokenizer *t) {
    static const char *const texts[] = {"", "Hello world", " a  b\n\tc", "\xe2\x96\x81x<s></s>", "\xff\xfe"};
    int32_t nv = lyra_tok_n_vocab(t);
    ASSERT(nv > 0);
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
        int32_t *ids = NULL;
        size_t n = 0;
        lyra_error err;
        int rc = lyra_tok_encode(t, texts[k], strlen(texts[k]), 1, (int)(k & 1), &ids, &n, &err);
        if (rc == LYRA_OK) {
            for (size_t i = 0; i < n; i++) ASSERT(ids[i] >= 0 && ids[i] < nv);
        } else {
            ASSERT(ids == NULL);
        }
        free(ids);
    }
    char buf[64];
    for (int32_t id = 0; id < nv && id < 4096; id++) sink += lyra_tok_piece(t, id, 1, buf, sizeof buf);
}

static void walk_model(lyra_llama *m, const uint8_t *data, size_t size) {
    int n = lyra_llama_n_modules(m);
    ASSERT(n == m->hp.n_layer + 3);
    for (int i = 0; i < n; i++) {
        lyra_weight *w[16];
        int k = lyra_llama_module_weights(m, i, w);
        ASSERT(k >= 1 && k <= 10);
        for (int j = 0; j < k; j++) {
            const uint8_t *p = w[j]->data;
            ASSERT(p >= data && p <= data + size && w[j]->n_bytes <= (uint64_t)(data + size - p));
            if (w[j]->n_bytes) sink += p[0] + p[w[j]->n_bytes - 1];
        }
    }
    sink += lyra_llama_buffers_bytes(m, 1, 1, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lyra_gguf *g = NULL;
    lyra_error err;
    err.msg[0] = 0;
    int rc = lyra_gguf_open_buffer(data, size, "fuzz.gguf", &g, &err);
    if (rc != LYRA_OK) {
        check_error(rc, &err);
        return 0;
    }
    lyra_tokenizer *t = NULL;
    rc = lyra_tokenizer_load(g, &t, &err);
    if (rc == LYRA_OK) walk_tokenizer(t);
    else check_error(rc, &err);
    lyra_tokenizer_free(t);

    lyra_llama *m = NULL;
    rc = lyra_llama_load(g, &m, &err);
    if (rc == LYRA_OK) walk_model(m, data, size);
    else check_error(rc, &err);
    lyra_llama_free(m);
    lyra_gguf_close(g);
    return 0;
}
