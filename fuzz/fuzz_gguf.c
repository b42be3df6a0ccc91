/* fuzz_gguf.c: libFuzzer target for the GGUF reader. Parses the input with
 * lyra_gguf_open_buffer; a rejected input must come with LYRA_ERR_INPUT (or
 * OOM) and a one-line message; an accepted one is walked through every
 * getter, every string and array element and every tensor's bytes, and its
 * metadata copied into a writer, so ASan/UBSan see every pointer the reader
 * hands out. Invariant violations trap. Run (see fuzz/CMakeLists.txt):
 *   fuzz_gguf -max_total_time=60 NEW_CORPUS_DIR fuzz/corpus/gguf */
#include <stdint.h>
#include <string.h>

#include "format/gguf.h"

#define ASSERT(c) do { if (!(c)) __builtin_trap(); } while (0)

static volatile uint64_t sink; /* keeps the reads */

static void touch(const void *p, uint64_t n) {
    const uint8_t *b = p;
    uint64_t s = 0;
    for (uint64_t i = 0; i < n; i++) s += b[i];
    sink += s;
}

static int in_buf(const void *p, uint64_t n, const uint8_t *buf, size_t size) {
    const uint8_t *q = p;
    return q >= buf && q <= buf + size && n <= (uint64_t)(buf + size - q);
}

static void walk_key(const lyra_gguf *g, const char *key, const uint8_t *buf, size_t size) {
    uint32_t u32; uint64_t u64; int64_t i64; float f; double d; int b;
    lyra_gguf_str s;
    sink += lyra_gguf_get_u32(g, key, &u32) + lyra_gguf_get_u64(g, key, &u64) + lyra_gguf_get_i64(g, key, &i64) +
            lyra_gguf_get_f32(g, key, &f) + lyra_gguf_get_f64(g, key, &d);
    if (lyra_gguf_get_bool(g, key, &b)) ASSERT(b == 0 || b == 1);
    if (lyra_gguf_get_str(g, key, &s)) {
        ASSERT(in_buf(s.ptr, s.len, buf, size));
        touch(s.ptr, s.len);
    }
    lyra_gguf_vtype et;
    uint64_t n;
    if (!lyra_gguf_get_arr(g, key, &et, &n)) return;
    const void *data = lyra_gguf_arr_data(g, key);
    if (data) ASSERT(in_buf(data, n, buf, size)); /* n elements of >= 1 byte */
    for (uint64_t i = 0; i <= n && i < 100000; i++) { /* i == n: one past the end */
        s = lyra_gguf_arr_str(g, key, i);
        if (s.ptr) {
            ASSERT(i < n && et == LYRA_GGUF_STRING && in_buf(s.ptr, s.len, buf, size));
            touch(s.ptr, s.len);
        }
        if (lyra_gguf_arr_get_i64(g, key, i, &i64)) ASSERT(i < n);
        if (lyra_gguf_arr_get_f32(g, key, i, &f)) ASSERT(i < n);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lyra_gguf *g = NULL;
    lyra_error err;
    err.msg[0] = 0;
    int rc = lyra_gguf_open_buffer(data, size, "fuzz.gguf", &g, &err);
    if (rc != LYRA_OK) {
        ASSERT(g == NULL && (rc == LYRA_ERR_INPUT || rc == LYRA_ERR_OOM) && err.code == rc);
        ASSERT(strncmp(err.msg, "fuzz.gguf: ", 11) == 0 && !strchr(err.msg, '\n'));
        return 0;
    }
    ASSERT(g != NULL);
    ASSERT(lyra_gguf_n_parts(g) == 1 && lyra_gguf_part_size(g, 0) == size);
    ASSERT(lyra_gguf_version(g) == 2 || lyra_gguf_version(g) == 3);
    sink += lyra_gguf_data_start(g, 0) + lyra_gguf_data_bytes(g) + (uintptr_t)lyra_gguf_part_map(g, 1);
    for (int64_t i = 0; i < lyra_gguf_n_kv(g); i++) {
        const char *key = lyra_gguf_kv_key(g, i);
        ASSERT(key && *key && lyra_gguf_find_key(g, key) == i);
        ASSERT((int)lyra_gguf_kv_type(g, i) >= 0 && lyra_gguf_kv_type(g, i) <= LYRA_GGUF_F64);
        walk_key(g, key, data, size);
    }
    ASSERT(lyra_gguf_kv_key(g, lyra_gguf_n_kv(g)) == NULL);
    uint64_t total = 0;
    for (int64_t i = 0; i < lyra_gguf_n_tensors(g); i++) {
        const lyra_gguf_tensor *t = lyra_gguf_tensor_at(g, i);
        ASSERT(t && lyra_gguf_find_tensor(g, t->name) == t);
        ASSERT(t->n_dims >= 1 && t->n_dims <= 4 && t->n_elements >= 1 && lyra_type_known(t->type));
        ASSERT(in_buf(t->data, t->n_bytes, data, size));
        touch(t->data, t->n_bytes);
        total += t->n_bytes;
    }
    ASSERT(total == lyra_gguf_data_bytes(g));
    ASSERT(lyra_gguf_tensor_at(g, lyra_gguf_n_tensors(g)) == NULL);
    lyra_gguf_writer *w = lyra_gguf_writer_new();
    if (w) {
        lyra_gguf_writer_copy_kv(w, g, NULL, NULL);
        lyra_gguf_writer_free(w);
    }
    lyra_gguf_close(g);
    return 0;
}
