/* tok_internal.h: the tokenizer's private state, shared by tokenizer.c (load,
 * special tokens, pieces, streaming), tok_spm.c (SentencePiece merge) and
 * tok_bpe.c (byte-level BPE). Not part of the module's interface. */
#ifndef LYRA_TOK_INTERNAL_H
#define LYRA_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "token/tokenizer.h"

/* GGUF token types (tokenizer.ggml.token_type). */
enum {
    TOK_UNDEFINED = 0, TOK_NORMAL = 1, TOK_UNKNOWN = 2, TOK_CONTROL = 3,
    TOK_USER_DEFINED = 4, TOK_UNUSED = 5, TOK_BYTE = 6,
};

typedef enum { TOK_MODEL_SPM = 0, TOK_MODEL_BPE = 1 } tok_model;

/* Unicode normalization forms (tokenizer.json's NFC, NFKC, NFD, NFKD). */
enum { TOK_NORM_NONE = 0, TOK_NORM_NFC, TOK_NORM_NFKC, TOK_NORM_NFD, TOK_NORM_NFKD };

/* Maximum regexes in one pre-tokenizer sequence. */
#define TOK_MAX_REGEX 6

/* One growable array of token ids (the encoder's output). */
typedef struct tok_vec {
    int32_t *v;  /* [cap] ids */
    size_t n;    /* ids used */
    size_t cap;  /* ids allocated */
} tok_vec;

/* One BPE merge: (left string id, right string id) -> rank and result. */
typedef struct tok_merge {
    uint64_t key;  /* (uint64)left << 32 | right; ~0 = empty slot */
    int32_t rank;  /* position in tokenizer.ggml.merges (lower merges first) */
    int32_t result;/* string id of left+right */
} tok_merge;

struct lyra_tokenizer {
    tok_model model;       /* SPM ("llama") or BPE ("gpt2") */
    int32_t n_vocab;       /* tokens in the vocabulary */
    int32_t n_strs;        /* n_vocab + extra strings interned for BPE merges */
    int32_t cap_strs;      /* strings allocated in str_off */
    char *text;            /* [text_len] all token texts (and extra strings), concatenated */
    uint64_t text_len;     /* bytes used in text */
    uint64_t text_cap;     /* bytes allocated for text */
    uint64_t *str_off;     /* [cap_strs + 1] string i is text[str_off[i] .. str_off[i+1]) */
    float *scores;         /* [n_vocab] SPM merge scores (0 when absent) */
    uint8_t *types;        /* [n_vocab] TOK_* token types (TOK_NORMAL when absent) */
    char *pieces;          /* decoded bytes of every token, concatenated */
    uint64_t *piece_off;   /* [n_vocab + 1] token i decodes to pieces[piece_off[i] .. piece_off[i+1]) */
    int32_t *hash;         /* [hash_cap] open-addressing table: string id or -1 */
    uint32_t hash_cap;     /* slots in hash (power of two) */
    tok_merge *merges;     /* [merge_cap] BPE merge table (open addressing) */
    uint32_t merge_cap;    /* slots in merges (power of two; 0 for SPM) */
    int32_t byte_tok[256]; /* SPM: token of <0xNN> (or the 1-byte piece), -1 if none */
    int32_t byte_sym[256]; /* BPE: string id of the GPT-2 mapped char of each byte, -1 if none */
    int32_t *special;      /* [n_special] ids matched in text, longest text first */
    int32_t n_special;     /* entries in special */
    int32_t bos, eos, eot, eom, unk, pad; /* special ids, -1 when none */
    int add_bos;           /* the model's default for adding BOS */
    int add_eos;           /* the model's add_eos_token (never applied by encode) */
    int add_space_prefix;  /* SPM: prepend ' ' to text at the start / after a special */
    int prepend_scheme;    /* SPM from a Metaspace: 0 none (llama.cpp's rule), 1 "always",
                              2 "first" (tokenizer.lyra.prepend_scheme; no prefix before ' ') */
    int bpe_prefix_step;   /* BPE, tokenizer.lyra.add_prefix_space: 1 + the regex step
                              before which every piece not starting with ' ' gets one
                              (tokenizer.lyra.prefix_space_step); 0: never */
    int ignore_merges;     /* BPE: a piece that is a whole token is that token, unmerged
                              (tokenizer.lyra.ignore_merges, tokenizer.json's ignore_merges) */
    int spm_split_words;   /* SPM: no piece has U+2581 after another character */
    int normalize;         /* TOK_NORM_*: the Unicode normalization form applied to the text
                              between special tokens (tokenizer.lyra.normalizer) */
    uint8_t *eog;          /* [n_vocab] 1 for end-of-generation tokens */
    uint8_t *strip;        /* [n_vocab] added tokens that take the whitespace beside them
                              (tokenizer.lyra.lstrip_ids: bit 1, rstrip_ids: bit 2), or NULL */
    char pre[64];          /* BPE pre-tokenizer name (tokenizer.ggml.pre) */
    int n_regex;           /* BPE: regexes applied in sequence */
    void *regex[TOK_MAX_REGEX]; /* BPE: compiled pcre2_code_8 pointers */
};

/* ---- tokenizer.c helpers used by the encoders ---- */
/* Id of the string s[0..n) (vocab token or interned extra), -1 if absent. */
int32_t lyra_tokint_find(const lyra_tokenizer *t, const char *s, size_t n);
/* Append id; 0 or LYRA_ERR_OOM. */
int lyra_tokint_push(tok_vec *out, int32_t id);
/* Bytes of the UTF-8 sequence starting with lead byte c (1 for invalid
 * leads), as SentencePiece/llama.cpp split text into characters. */
static inline size_t tok_utf8_len(uint8_t c) {
    static const uint8_t lens[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lens[c >> 4];
}

/* Length of the UTF-8 unit at p[0..n): a complete valid character, or 1 for
 * a byte that cannot start/continue a valid one. 0 when p holds the valid
 * beginning of a character whose rest has not arrived (the streaming
 * detokenizer waits for more). */
static inline size_t tok_utf8_unit(const uint8_t *p, size_t n) {
    uint8_t c = p[0];
    if (c < 0x80) return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) need = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else return 1; /* continuation byte or invalid lead */
    for (size_t i = 1; i < need; i++) {
        if (i >= n) return 0; /* valid so far; wait for more */
        uint8_t b = p[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf)) return 1;
    }
    return need;
}

/* Bytes of the character at s[0..n): the length of a valid UTF-8 sequence,
 * else 1 (an invalid or truncated sequence is taken byte by byte). */
static inline size_t tok_utf8_char(const char *s, size_t n) {
    size_t u = tok_utf8_unit((const uint8_t *)s, n);
    return u ? u : 1;
}

/* ---- tok_spm.c ---- */
/* Encode one text fragment (no specials inside) with the SentencePiece merge;
 * prefix: prepend the space prefix. Returns LYRA_OK or an error code. */
int lyra_tokint_spm_encode(const lyra_tokenizer *t, const char *text, size_t len, int prefix,
                   tok_vec *out, lyra_error *err);

/* ---- tok_bpe.c ---- */
/* Set up the pre-tokenizer named t->pre (compiles its regexes), the GPT-2 byte
 * map (byte_sym) and the merge table from tokenizer.ggml.merges. where: the
 * file path for messages. */
int lyra_tokint_bpe_init(lyra_tokenizer *t, const lyra_gguf *g, const char *where, lyra_error *err);
void lyra_tokint_bpe_free(lyra_tokenizer *t);
/* Encode one text fragment (no specials inside). */
int lyra_tokint_bpe_encode(const lyra_tokenizer *t, const char *text, size_t len, tok_vec *out,
                   lyra_error *err);
/* The pre-tokenizer's pieces of text: *spans (malloc'd) holds n pairs
 * (offset, length) in text order. For tests. */
int lyra_tokint_bpe_pretok(const lyra_tokenizer *t, const char *text, size_t len, size_t **spans,
                           size_t *n, lyra_error *err);
/* GPT-2 byte -> code point map; and the inverse (code point -> byte, -1). */
uint32_t lyra_tokint_bpe_byte_to_cp(uint8_t b);
int lyra_tokint_bpe_cp_to_byte(uint32_t cp);
/* Intern the string s[0..n): its id (existing or new extra), -1 on OOM. */
int32_t lyra_tokint_intern(lyra_tokenizer *t, const char *s, size_t n);

#endif
