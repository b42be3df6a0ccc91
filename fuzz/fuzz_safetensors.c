/* fuzz_safetensors.c: libFuzzer target for the safetensors reader. Parses
 * the input with lyra_st_open_buffer; a rejected input must come with
 * LYRA_ERR_INPUT (or OOM) and a one-line message naming the file; an accepted
 * one has every tensor inside the buffer, sized by its shape and dtype,
 * findable by name, and its bytes are read so ASan sees every pointer.
 * Run (see fuzz/CMakeLists.txt):
 *   fuzz_safetensors -max_total_time=60 NEW_CORPUS_DIR fuzz/corpus/safetensors */
#include <stdint.h>
#include <string.h>

#include "format/safetensors.h"

#define ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lyra_st *s = NULL;
    lyra_error err;
    err.msg[0] = 0;
    int rc = lyra_st_open_buffer(data, size, "fuzz.safetensors", &s, &err);
    if (rc != LYRA_OK) {
        ASSERT(s == NULL && (rc == LYRA_ERR_INPUT || rc == LYRA_ERR_OOM) && err.code == rc);
        ASSERT(strncmp(err.msg, "fuzz.safetensors: ", 18) == 0 && !strchr(err.msg, '\n'));
        return 0;
    }
    ASSERT(s && lyra_st_n_files(s) == 1);
    for (int64_t i = 0; i < lyra_st_n_tensors(s); i++) {
        const lyra_st_tensor *t = lyra_st_tensor_at(s, i);
        ASSERT(t && lyra_st_find(s, t->name) == t);
        ASSERT(t->n_dims >= 0 && t->n_dims <= LYRA_ST_MAX_DIMS);
        ASSERT(t->n_bytes == (uint64_t)t->n_elements * lyra_st_dtype_size(t->dtype));
        const uint8_t *p = t->data;
        ASSERT(p >= data + 8 && t->n_bytes <= (uint64_t)(data + size - p));
        uint64_t sum = 0;
        for (uint64_t k = 0; k < t->n_bytes; k++) sum += p[k];
        sink += sum;
    }
    ASSERT(lyra_st_tensor_at(s, lyra_st_n_tensors(s)) == NULL);
    lyra_st_close(s);
    return 0;
}
