/* tokenizer.h: tokenizers read from GGUF metadata.
 *   tokenizer.ggml.model = "llama": SentencePiece-style. Spaces become U+2581,
 *     one space is prepended at the start of the text and after every special
 *     token (tokenizer.ggml.add_space_prefix, default 1), UTF-8 characters are
 *     merged by score (highest first, leftmost on ties), pieces the vocabulary
 *     lacks become byte tokens <0xNN>, or one <unk> per character when the
 *     vocabulary has no byte tokens. add_bos default when the key is absent: 1.
 *   tokenizer.ggml.model = "gpt2": byte-level BPE. Text is split by the
 *     pre-tokenizer regexes of tokenizer.ggml.pre (PCRE2, UTF + UCP), bytes
 *     are mapped to GPT-2's printable code points, then merged by rank
 *     (tokenizer.ggml.merges). add_bos default when absent: 0. Known pre
 *     names (missing key: default): GPT-2's regex: default, gpt-2, gpt2, mpt,
 *     olmo, phi-2, jais, trillion; Llama 3's: llama-bpe, llama3, dbrx,
 *     smaug-bpe, chatglm-bpe; qwen2, stablelm2, hunyuan; starcoder, refact,
 *     command-r, smollm, codeshell, exaone, minerva; falcon; deepseek-coder;
 *     deepseek-llm (letter class approximated by cased letters); gpt-4o,
 *     minimax-m2; tekken. Any other is an error naming it.
 * Special tokens, as llama.cpp: control (type 3) and unknown (type 2) tokens
 * are matched in the text only when parse_special; user-defined tokens
 * (type 4) are always matched (they are ordinary added words). Longer special
 * texts are matched first. Encoding never appends EOS. */
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
int32_t lyra_tok_eot(const lyra_tokenizer *t);      /* -1 when none */
int32_t lyra_tok_unk(const lyra_tokenizer *t);      /* -1 when none */
int lyra_tok_add_bos(const lyra_tokenizer *t);      /* the model's default */
int lyra_tok_add_eos(const lyra_tokenizer *t);      /* metadata flag only */
int lyra_tok_add_space_prefix(const lyra_tokenizer *t); /* SPM space prefix */
int lyra_tok_is_spm(const lyra_tokenizer *t);       /* 1 "llama", 0 "gpt2" */
/* End of generation: eos, eot, eom and control tokens named <|eot_id|>,
 * <|eom_id|>, <|end|>, <|im_end|>, <end_of_turn>, <|endoftext|>, ... */
int lyra_tok_is_eog(const lyra_tokenizer *t, int32_t id);
/* Token type (0 undefined, 1 normal, 2 unknown, 3 control, 4 user-defined,
 * 5 unused, 6 byte), -1 for an id out of range. */
int lyra_tok_type(const lyra_tokenizer *t, int32_t id);
/* The token's text as stored in the vocabulary (not NUL-terminated). */
const char *lyra_tok_text(const lyra_tokenizer *t, int32_t id, size_t *len);
/* The id whose vocabulary text is exactly text[0..len), -1 if none. */
int32_t lyra_tok_find(const lyra_tokenizer *t, const char *text, size_t len);

/* Encode len bytes of any content: invalid UTF-8 is kept (byte tokens), so
 * decoding gives the text back whenever the vocabulary has byte tokens or
 * byte-level BPE (SPM: a literal U+2581 in the text comes back as ' ').
 * add_bos: 1/0 (nothing is added when the model has no BOS). *ids is
 * malloc'd (non-NULL on success, even for 0 ids); caller frees. Safe to call
 * from several threads on one tokenizer. */
int lyra_tok_encode(const lyra_tokenizer *t, const char *text, size_t len,
                    int add_bos, int parse_special, int32_t **ids, size_t *n,
                    lyra_error *err);
/* The raw bytes of a token's piece as it appears in text (SPM: U+2581 ->
 * ' ', <0xNN> -> byte; BPE: byte-level unmapping; user-defined tokens: their
 * text). Control and unknown tokens give 0 bytes unless render_special (then
 * their text); ids out of range give 0 bytes. Returns the piece's full length
 * (like snprintf) and writes min(length, cap) bytes: a result > cap means the
 * piece was cut. No leading space is ever removed here. */
size_t lyra_tok_piece(const lyra_tokenizer *t, int32_t id, int render_special,
                      char *buf, size_t cap);

/* ---- streaming detokenizer ----
 * Feeds tokens one at a time and returns only complete UTF-8: bytes of a
 * character split over several tokens (e.g. <0xE2><0x96><0x81>) are held
 * until the character is complete; bytes that cannot become valid UTF-8 are
 * returned as they are as soon as that is certain (with
 * LYRA_TOK_STREAM_REPLACE_INVALID: replaced by U+FFFD, one per maximal
 * invalid subpart as in the Unicode standard's practice and Python's
 * errors="replace", so that every byte returned is valid UTF-8).
 *
 * Leading space (SPM with add_space_prefix only; ignored otherwise): the
 * tokenizer put one ' ' in front of the text, and the caller says whether to
 * take it off again:
 *   LYRA_TOK_STREAM_STRIP_AFTER_BOS: the first non-empty piece after each BOS
 *     token fed loses one leading ' ' (llama2.c's rule when printing a prompt
 *     and its continuation from BOS: "<s> Once" shows as "Once").
 *   LYRA_TOK_STREAM_STRIP_FIRST: the first non-empty piece of the stream (or
 *     after lyra_tok_stream_reset) loses one leading ' ' (llama.cpp's
 *     llama_detokenize of tokens without BOS, the inverse of encode).
 *   neither: every space is kept (decoding a continuation: what follows a
 *     prompt keeps its spaces, as llama.cpp's token_to_piece does).
 * LYRA_TOK_STREAM_RENDER_SPECIAL: control/unknown tokens show their text. */
enum {
    LYRA_TOK_STREAM_RENDER_SPECIAL = 1,
    LYRA_TOK_STREAM_STRIP_AFTER_BOS = 2,
    LYRA_TOK_STREAM_STRIP_FIRST = 4,
    LYRA_TOK_STREAM_REPLACE_INVALID = 8,
};
typedef struct lyra_tok_stream lyra_tok_stream;
/* NULL when out of memory. t must outlive the stream. */
lyra_tok_stream *lyra_tok_stream_new(const lyra_tokenizer *t, int flags);
/* Add token id's piece; write the bytes now decided (whole characters, up
 * to cap) to buf and return their count. Bytes that do not fit stay pending
 * and come out on the next feed or flush. */
size_t lyra_tok_stream_feed(lyra_tok_stream *s, int32_t id, char *buf, size_t cap);
/* Write what is pending (an incomplete tail too, as is or, with
 * REPLACE_INVALID, as one U+FFFD), up to cap; call
 * again while lyra_tok_stream_pending() > 0 if cap was small. With cap >= 4
 * characters are never cut; a smaller cap may cut one to make progress. */
size_t lyra_tok_stream_flush(lyra_tok_stream *s, char *buf, size_t cap);
size_t lyra_tok_stream_pending(const lyra_tok_stream *s);
/* Drop pending bytes and start over (STRIP_FIRST applies again). */
void lyra_tok_stream_reset(lyra_tok_stream *s);
void lyra_tok_stream_free(lyra_tok_stream *s);

#endif
