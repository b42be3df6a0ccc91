/* fuzz_tokenizer.c: libFuzzer target for the tokenizers. Loads the shared
 * test vocabularies once (llama-spm and gpt-2 vocab GGUFs, babyllama105) from
 * $LYRA_SHARED_DIR, ../shared (from the working directory) or ../shared next
 * to the checkout; without them every input is skipped (a note is printed).
 *
 * Input: byte 0 chooses the vocabulary (bits 0-1), parse_special (bit 2),
 * add_bos (bit 3) and the stream's flags (bits 4-5); the rest is the text.
 * Checked beyond "no crash / no sanitizer report":
 *   - every id is in range;
 *   - without parse_special, decoding gives the text back exactly (gpt-2:
 *     always; llama-spm: when the text has no literal U+2581, which decodes
 *     as a space);
 *   - the streaming detokenizer (with a tiny output buffer) returns the same
 *     bytes as the concatenated pieces. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/gguf.h"
#include "token/tokenizer.h"

/* One loaded vocabulary. */
typedef struct fz_vocab {
    lyra_gguf *g;        /* open file, or NULL */
    lyra_tokenizer *t;   /* its tokenizer, or NULL */
    int lossless;        /* 1: decode(encode(x)) == x is checked */
} fz_vocab;

static fz_vocab fz_v[3];
static int fz_n;

static void fz_load(const char *dir, const char *rel, int lossless) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    if (access(path, R_OK) != 0) return;
    lyra_error err;
    fz_vocab v = {0};
    v.lossless = lossless;
    if (lyra_gguf_open(path, &v.g, &err) == 0 && lyra_tokenizer_load(v.g, &v.t, &err) == 0) {
        fz_v[fz_n++] = v;
    } else {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        lyra_gguf_close(v.g);
    }
}

static const char *fz_dir(void) {
    static char buf[4096];
    const char *env = getenv("LYRA_SHARED_DIR");
    if (env && *env) return env;
    if (access("../shared/models", R_OK) == 0) return "../shared";
    /* the source tree: fuzz/fuzz_tokenizer.c -> ../../shared */
    snprintf(buf, sizeof buf, "%s", __FILE__);
    char *slash = strrchr(buf, '/');
    if (!slash) return "../shared";
    *slash = 0;
    size_t n = strlen(buf);
    snprintf(buf + n, sizeof buf - n, "/../../shared");
    return buf;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *dir = fz_dir();
    fz_load(dir, "models/vocab/ggml-vocab-llama-spm.gguf", 1);
    fz_load(dir, "models/vocab/ggml-vocab-gpt-2.gguf", 1);
    fz_load(dir, "models/babyllama105.gguf", 0);
    if (fz_n == 0) fprintf(stderr, "fuzz_tokenizer: no vocabularies under %s (set LYRA_SHARED_DIR); inputs are skipped\n", dir);
    return 0;
}

#define FZ_ASSERT(c) do { if (!(c)) { fprintf(stderr, "fuzz_tokenizer: %s failed\n", #c); abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fz_n == 0 || size == 0) return 0;
    uint8_t ctl = data[0];
    const fz_vocab *v = &fz_v[(ctl & 3) % fz_n];
    const lyra_tokenizer *t = v->t;
    int parse_special = (ctl >> 2) & 1, add_bos = (ctl >> 3) & 1;
    int flags = (ctl >> 4) & 3; /* RENDER_SPECIAL, STRIP_AFTER_BOS */
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    int32_t *ids = NULL;
    size_t n = 0;
    lyra_error err;
    if (lyra_tok_encode(t, text, len, add_bos, parse_special, &ids, &n, &err) != 0) return 0;
    int32_t nv = lyra_tok_n_vocab(t);
    for (size_t i = 0; i < n; i++) FZ_ASSERT(ids[i] >= 0 && ids[i] < nv);

    /* pieces, concatenated; one leading space of the first non-empty piece
     * after BOS (STRIP_AFTER_BOS) or of the first one (lossless check) */
    int render = flags & LYRA_TOK_STREAM_RENDER_SPECIAL;
    size_t cap = 16;
    for (size_t i = 0; i < n; i++) cap += lyra_tok_piece(t, ids[i], render, NULL, 0);
    char *cat = malloc(cap), *str = malloc(cap);
    size_t k = 0;
    int strip = 0, spm_prefix = lyra_tok_add_space_prefix(t);
    for (size_t i = 0; i < n; i++) {
        size_t m = lyra_tok_piece(t, ids[i], render, cat + k, cap - k);
        FZ_ASSERT(m <= cap - k);
        if (m && strip) {
            if (cat[k] == ' ') { memmove(cat + k, cat + k + 1, m - 1); m--; }
            strip = 0;
        }
        if (ids[i] == lyra_tok_bos(t) && (flags & LYRA_TOK_STREAM_STRIP_AFTER_BOS) && spm_prefix) strip = 1;
        k += m;
    }

    /* the stream, with a 3-byte output buffer */
    lyra_tok_stream *s = lyra_tok_stream_new(t, flags);
    size_t ks = 0;
    if (s) {
        for (size_t i = 0; i < n; i++) {
            ks += lyra_tok_stream_feed(s, ids[i], str + ks, 3 < cap - ks ? 3 : cap - ks);
            FZ_ASSERT(ks <= cap);
        }
        while (lyra_tok_stream_pending(s) && ks < cap) ks += lyra_tok_stream_flush(s, str + ks, 3 < cap - ks ? 3 : cap - ks);
        FZ_ASSERT(lyra_tok_stream_pending(s) == 0);
        FZ_ASSERT(ks == k && memcmp(str, cat, k) == 0);
        lyra_tok_stream_free(s);
    }

    /* lossless: without specials, the text comes back */
    if (v->lossless && !parse_special && !add_bos && !memmem(text, len, "\xe2\x96\x81", 3)) {
        size_t off = 0;
        if (spm_prefix && k > 0 && cat[0] == ' ') off = 1;
        FZ_ASSERT(k - off == len && memcmp(cat + off, text, len) == 0);
    }
    free(cat);
    free(str);
    free(ids);
    return 0;
}
