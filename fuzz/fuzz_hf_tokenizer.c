/* fuzz_hf_tokenizer.c: libFuzzer target for the tokenizer.json reader
 * (format/hf_tokenizer.h). Input: the tokenizer.json text, optionally
 * followed by a NUL byte and a tokenizer_config.json text. Whatever it
 * accepts must load as a tokenizer (or fail with a message) and encode a
 * fixed text (special tokens parsed, normalizers applied) to ids within the vocabulary; nothing
 * may crash, leak or trip a sanitizer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format/hf_tokenizer.h"
#include "token/tokenizer.h"

/* ASCII, accents composed and decomposed, CJK, a ligature, full-width
 * letters, a superscript and a stray byte (for the NFC/NFKC normalizers) */
static const char fz_text[] = "Hello, world! 123 h\xc3\xa9llo he\xcc\x81llo  \xe6\x97\xa5\xe6\x9c\xac \xef\xac\x81 "
                              "\xef\xbc\xa1\xef\xbd\x82 x\xc2\xb2 \xff <s></s><|endoftext|>\n\t x";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *tj = (const char *)data, *cj = NULL;
    size_t tn = size, cn = 0;
    const uint8_t *nul = memchr(data, 0, size);
    if (nul) {
        tn = (size_t)(nul - data);
        cj = (const char *)nul + 1;
        cn = size - tn - 1;
    }
    lyra_error err;
    lyra_gguf *g = lyra_gguf_new_empty("fuzz");
    if (!g) return 0;
    if (lyra_hf_tokenizer_meta_text(tj, tn, cj, cn, "tokenizer.json", g, &err) == 0) {
        lyra_tokenizer *t = NULL;
        if (lyra_tokenizer_load(g, &t, &err) == 0) {
            int32_t *ids = NULL;
            size_t n = 0;
            if (lyra_tok_encode(t, fz_text, sizeof fz_text - 1, 1, 1, &ids, &n, &err) == 0) {
                for (size_t i = 0; i < n; i++)
                    if (ids[i] < 0 || ids[i] >= lyra_tok_n_vocab(t)) abort();
                free(ids);
            }
            lyra_tokenizer_free(t);
        }
    }
    lyra_gguf_close(g);
    return 0;
}
