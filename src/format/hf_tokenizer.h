/* hf_tokenizer.h: a Hugging Face tokenizer (tokenizer.json, with
 * tokenizer_config.json, special_tokens_map.json and chat_template.jinja
 * when present) turned into the GGUF tokenizer keys llama.cpp's converter
 * writes, set on an in-memory lyra_gguf (format/gguf.h):
 *   tokenizer.ggml.model  "gpt2" (byte-level BPE) or "llama" (BPE with
 *                         byte_fallback and the U+2581 metaspace),
 *   tokenizer.ggml.tokens / token_type (added special tokens: control,
 *                         others: user-defined; <0xNN>: byte) / merges
 *                         ("a b") / scores ("llama": minus the merge rank),
 *   tokenizer.ggml.{bos,eos,unknown,padding}_token_id, add_bos_token,
 *                         add_eos_token, add_space_prefix, pre,
 *   tokenizer.chat_template,
 * and where GGUF has no name for it, lyra's own keys, which src/token honors:
 *   tokenizer.lyra.pre_regex   the byte-level pre-tokenizer's regexes in order
 *                              (Split Isolated, ByteLevel's GPT-2 regex, Digits),
 *   tokenizer.lyra.eog_ids     generation_config.json's eos_token_id (list),
 *   tokenizer.lyra.ignore_merges  BPE's ignore_merges (a whole piece in the vocabulary wins),
 *   tokenizer.lyra.lstrip_ids / rstrip_ids  added tokens with lstrip / rstrip,
 *   tokenizer.lyra.add_prefix_space  ByteLevel(add_prefix_space), and
 *   tokenizer.lyra.prefix_space_step the regex step it comes before,
 *   tokenizer.lyra.prepend_scheme    Metaspace's prepend_scheme ("llama"),
 *   tokenizer.lyra.normalizer        a normalizer NFC, NFKC, NFD or NFKD (the
 *                                    tokenizer applies it with libutf8proc).
 * Normalizers NFC, NFKC, NFD, NFKD (one form, before any Prepend/Replace),
 * Prepend and Replace(' ', U+2581) are understood.
 * Unsupported parts (a Unigram/WordPiece model, another normalizer, a Split
 * behaviour other than Isolated) are
 * LYRA_ERR_INPUT naming the file and the part. */
#ifndef LYRA_HF_TOKENIZER_H
#define LYRA_HF_TOKENIZER_H

#include <stddef.h>

#include "core/err.h"
#include "format/gguf.h"

/* Read DIR's files (generation_config.json too, for its eos_token_id
 * list) and set the keys on g. No tokenizer.json: LYRA_ERR_INPUT
 * "tokenizer.json not found in DIR; lyra needs it". */
int lyra_hf_tokenizer_meta(const char *dir, lyra_gguf *g, lyra_error *err);

/* The same from texts in memory (tokenizer_config may be NULL); where names
 * the source in messages. For tests and fuzzing. */
int lyra_hf_tokenizer_meta_text(const char *tokenizer_json, size_t len, const char *config_json,
                                size_t config_len, const char *where, lyra_gguf *g,
                                lyra_error *err);

#endif
