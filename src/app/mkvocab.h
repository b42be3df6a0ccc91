/* mkvocab.h: a deterministic byte-level BPE vocabulary for `lyra mkmodel`
 * (tokenizer.ggml.model "gpt2", pre "default").
 *
 * ids 0..255: the 256 bytes, as GPT-2's byte-to-unicode strings (id = byte
 * value); 256: "<s>" (BOS, control); 257: "</s>" (EOS, control); then one
 * token per merge: first the merges a BPE trainer learns from a built-in
 * English paragraph (most frequent pair first, ties to the lowest ids),
 * then, when the vocabulary is still not full, synthetic merges of
 * word-like tokens ("Ġ"? + letters) with the letters a..z, in id order. */
#ifndef LYRA_APP_MKVOCAB_H
#define LYRA_APP_MKVOCAB_H

#include <stdint.h>

typedef struct mk_vocab {
    char **tokens;     /* [n] NUL-terminated UTF-8 token strings */
    int32_t *types;    /* [n] 1 normal, 3 control */
    char **merges;     /* [n_merges] "LEFT RIGHT" */
    int64_t n;         /* tokens */
    int64_t n_merges;  /* merges */
    int64_t cap;       /* the vocabulary size asked for */
    int32_t *table;    /* [table_size] open-addressing index of tokens, -1 empty */
    uint64_t table_size; /* power of two >= 2 * cap */
} mk_vocab;

#define MK_VOCAB_MIN 258 /* 256 bytes + BOS + EOS */
#define MK_VOCAB_BOS 256
#define MK_VOCAB_EOS 257

/* Build a vocabulary of exactly n_vocab >= MK_VOCAB_MIN tokens. 0 ok, -1 OOM. */
int mk_vocab_build(mk_vocab *v, int64_t n_vocab);
void mk_vocab_free(mk_vocab *v);

#endif
