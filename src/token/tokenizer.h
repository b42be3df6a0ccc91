/* tokenizer.h: tokenizers read from GGUF metadata.
 *   tokenizer.ggml.model = "llama": SentencePiece-style (scores, byte
 *     fallback <0xNN>, leading-space rule, add_bos default 1 when absent).
 *   tokenizer.ggml.model = "gpt2": byte-level BPE (merges; pre-tokenizer
 *     from tokenizer.ggml.pre: default, gpt-2, llama-bpe, qwen2, ... through
 *     PCRE2; an unknown one is an error naming it).
 * Special (control) tokens are matched in text only when parse_special. */
#ifndef LYRA_TOKENIZER_H
#define LYRA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "format/gguf.h"

typedef struct lyra_tokenizer lyra_tokenizer;

int lyra_tokenizer_load(const lyra_gguf *g, lyra_tokenizer **out, lyra_error *err);
void lyra_tokenizer_free(lyra_tokenizer *t);

int32_t lyra_tok_n_vocab(const lyra_tokenizer *t);
int32_t lyra_tok_bos(const lyra_tokenizer *t);      /* -1 when none */
int32_t lyra_tok_eos(const lyra_tokenizer *t);      /* -1 when none */
int lyra_tok_add_bos(const lyra_tokenizer *t);      /* the model's default */
int lyra_tok_is_eog(const lyra_tokenizer *t, int32_t id); /* eos, eot, ... */

/* Encode len bytes. add_bos: 1/0. *ids is malloc'd; caller frees. */
int lyra_tok_encode(const lyra_tokenizer *t, const char *text, size_t len,
                    int add_bos, int parse_special, int32_t **ids, size_t *n,
                    lyra_error *err);
/* The raw bytes of a token's piece as it appears in text (SPM: U+2581 ->
 * ' ', <0xNN> -> byte; BPE: byte-level unmapping). Control tokens give 0
 * bytes unless render_special. Returns the count (writes at most cap). */
size_t lyra_tok_piece(const lyra_tokenizer *t, int32_t id, int render_special,
                      char *buf, size_t cap);

#endif
