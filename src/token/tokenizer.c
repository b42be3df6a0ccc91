/* tokenizer.c: loading a tokenizer from GGUF metadata, splitting text at
 * special tokens, decoding token pieces and the streaming detokenizer. The
 * merges themselves live in tok_spm.c (SentencePiece) and tok_bpe.c (BPE). */
#include "token/tok_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/log.h"

/* ------------------------------------------------------------ strings */

/* FNV-1a over n bytes. */
static uint32_t tok_hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static const char *tok_str(const lyra_tokenizer *t, int32_t id, size_t *n) {
    *n = (size_t)(t->str_off[id + 1] - t->str_off[id]);
    return t->text + t->str_off[id];
}

int32_t lyra_tokint_find(const lyra_tokenizer *t, const char *s, size_t n) {
    uint32_t mask = t->hash_cap - 1;
    for (uint32_t h = tok_hash_bytes(s, n) & mask;; h = (h + 1) & mask) {
        int32_t id = t->hash[h];
        if (id < 0) return -1;
        size_t m;
        const char *p = tok_str(t, id, &m);
        if (m == n && (n == 0 || memcmp(p, s, n) == 0)) return id;
    }
}

/* Put string id into the hash table; a later id with the same text replaces
 * the earlier one (as llama.cpp's token_to_id map does). */
static void tok_hash_put(lyra_tokenizer *t, int32_t id) {
    size_t n;
    const char *s = tok_str(t, id, &n);
    uint32_t mask = t->hash_cap - 1;
    for (uint32_t h = tok_hash_bytes(s, n) & mask;; h = (h + 1) & mask) {
        int32_t old = t->hash[h];
        if (old < 0) { t->hash[h] = id; return; }
        size_t m;
        const char *p = tok_str(t, old, &m);
        if (m == n && (n == 0 || memcmp(p, s, n) == 0)) { t->hash[h] = id; return; }
    }
}

/* (Re)build the hash table with room for at least want strings. */
static int tok_hash_build(lyra_tokenizer *t, uint32_t want) {
    uint32_t cap = 16;
    while (cap < want * 2u) cap *= 2;
    int32_t *h = malloc((size_t)cap * sizeof *h);
    if (!h) return LYRA_ERR_OOM;
    memset(h, 0xff, (size_t)cap * sizeof *h);
    free(t->hash);
    t->hash = h;
    t->hash_cap = cap;
    for (int32_t i = 0; i < t->n_strs; i++) tok_hash_put(t, i);
    return LYRA_OK;
}

/* Append a string to the text arena as string id t->n_strs (no hashing). */
static int tok_add_str(lyra_tokenizer *t, const char *s, size_t n) {
    if (t->n_strs >= t->cap_strs) {
        int32_t cap = t->cap_strs ? t->cap_strs * 2 : 256;
        uint64_t *o = realloc(t->str_off, ((size_t)cap + 1) * sizeof *o);
        if (!o) return LYRA_ERR_OOM;
        t->str_off = o;
        t->cap_strs = cap;
    }
    if (!t->text || t->text_len + n > t->text_cap) { /* never NULL, even when all strings are empty */
        uint64_t cap = t->text_cap ? t->text_cap * 2 : 4096;
        while (cap < t->text_len + n) cap *= 2;
        char *p = realloc(t->text, (size_t)cap);
        if (!p) return LYRA_ERR_OOM;
        t->text = p;
        t->text_cap = cap;
    }
    if (n) memcpy(t->text + t->text_len, s, n);
    t->str_off[t->n_strs] = t->text_len;
    t->text_len += n;
    t->n_strs++;
    t->str_off[t->n_strs] = t->text_len;
    return LYRA_OK;
}

int32_t lyra_tokint_intern(lyra_tokenizer *t, const char *s, size_t n) {
    int32_t id = lyra_tokint_find(t, s, n);
    if (id >= 0) return id;
    if ((uint32_t)(t->n_strs + 1) * 2u > t->hash_cap &&
        tok_hash_build(t, (uint32_t)t->n_strs * 2u + 2u))
        return -1;
    if (tok_add_str(t, s, n)) return -1;
    tok_hash_put(t, t->n_strs - 1);
    return t->n_strs - 1;
}

int lyra_tokint_push(tok_vec *out, int32_t id) {
    if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 64;
        int32_t *v = realloc(out->v, cap * sizeof *v);
        if (!v) return LYRA_ERR_OOM;
        out->v = v;
        out->cap = cap;
    }
    out->v[out->n++] = id;
    return LYRA_OK;
}

/* ------------------------------------------------------------ loading */

/* A token id from key into *id: dflt when absent, -1 when out of range (-1 /
 * 0xFFFFFFFF are the converters' "none"; other out-of-range values are warned
 * about). A value that is not an integer (a string, a float) is an error. */
static int tok_get_id(const lyra_gguf *g, const char *key, int32_t n_vocab, int32_t dflt,
                      const char *where, int32_t *id, lyra_error *err) {
    int64_t v;
    *id = dflt;
    if (lyra_gguf_find_key(g, key) < 0) return LYRA_OK;
    if (!lyra_gguf_get_i64(g, key, &v))
        return lyra_err(err, LYRA_ERR_INPUT, where, "%s: is not an integer token id", key);
    *id = -1;
    if (v >= 0 && v < n_vocab) *id = (int32_t)v;
    else if (v != -1 && v != 0xffffffffll)
        LYRA_WARN("%s: %s = %lld is not a token id (vocabulary of %d); ignored", where, key,
                  (long long)v, (int)n_vocab);
    return LYRA_OK;
}

static int tok_get_flag(const lyra_gguf *g, const char *key, int dflt) {
    int v;
    return lyra_gguf_get_bool(g, key, &v) ? (v != 0) : dflt;
}

/* The decoded bytes of token id into dst (at most 4 * text length bytes). */
static size_t tok_decode_token(const lyra_tokenizer *t, int32_t id, char *dst) {
    size_t n;
    const char *s = tok_str(t, id, &n);
    uint8_t ty = t->types[id];
    if (ty == TOK_BYTE && n == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>') {
        char hex[3] = {s[3], s[4], 0};
        char *end;
        long b = strtol(hex, &end, 16);
        if (*end == 0) { dst[0] = (char)b; return 1; }
    }
    if (ty == TOK_CONTROL || ty == TOK_UNKNOWN || ty == TOK_USER_DEFINED) {
        if (n) memcpy(dst, s, n);
        return n;
    }
    size_t k = 0;
    if (t->model == TOK_MODEL_SPM) { /* U+2581 (e2 96 81) -> ' ' */
        for (size_t i = 0; i < n; i++) {
            if (i + 2 < n && (uint8_t)s[i] == 0xe2 && (uint8_t)s[i + 1] == 0x96 &&
                (uint8_t)s[i + 2] == 0x81) {
                dst[k++] = ' ';
                i += 2;
            } else {
                dst[k++] = s[i];
            }
        }
        return k;
    }
    /* BPE: every code point of the GPT-2 byte map back to its byte; others
     * (and invalid UTF-8) are kept as they are. */
    for (size_t i = 0; i < n;) {
        uint8_t c = (uint8_t)s[i];
        if (c >= 0xc0 && c < 0xe0 && i + 1 < n && ((uint8_t)s[i + 1] & 0xc0) == 0x80) {
            uint32_t cp = ((uint32_t)(c & 0x1f) << 6) | ((uint8_t)s[i + 1] & 0x3f);
            int b = lyra_tokint_bpe_cp_to_byte(cp);
            if (b >= 0) dst[k++] = (char)b;
            else { dst[k++] = s[i]; dst[k++] = s[i + 1]; }
            i += 2;
        } else if (c < 0x80) {
            int b = lyra_tokint_bpe_cp_to_byte(c);
            dst[k++] = b >= 0 ? (char)b : (char)c;
            i++;
        } else {
            dst[k++] = s[i++];
        }
    }
    return k;
}

static int tok_build_pieces(lyra_tokenizer *t) {
    t->piece_off = malloc(((size_t)t->n_vocab + 1) * sizeof *t->piece_off);
    size_t tot = (size_t)t->str_off[t->n_vocab];
    t->pieces = malloc(tot + 1); /* decoding never grows a token's text */
    if (!t->piece_off || !t->pieces) return LYRA_ERR_OOM;
    uint64_t k = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        t->piece_off[i] = k;
        k += tok_decode_token(t, i, t->pieces + k);
    }
    t->piece_off[t->n_vocab] = k;
    return LYRA_OK;
}

/* Specials matched in text: unknown, control and user-defined tokens with a
 * non-empty text, longest text first (then lowest id). */
typedef struct tok_lenid {
    uint64_t len; /* bytes of the token's text */
    int32_t id;   /* token id */
} tok_lenid;

static int tok_cmp_special(const void *a, const void *b) {
    const tok_lenid *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int tok_build_specials(lyra_tokenizer *t) {
    tok_lenid *v = malloc(((size_t)t->n_vocab + 1) * sizeof *v);
    t->special = malloc(((size_t)t->n_vocab + 1) * sizeof *t->special);
    if (!v || !t->special) { free(v); return LYRA_ERR_OOM; }
    int32_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        uint8_t ty = t->types[i];
        uint64_t len = t->str_off[i + 1] - t->str_off[i];
        if ((ty == TOK_UNKNOWN || ty == TOK_CONTROL || ty == TOK_USER_DEFINED) && len > 0)
            v[n++] = (tok_lenid){len, i};
    }
    qsort(v, (size_t)n, sizeof *v, tok_cmp_special);
    for (int32_t i = 0; i < n; i++) t->special[i] = v[i].id;
    t->n_special = n;
    free(v);
    return LYRA_OK;
}

/* Texts of control tokens that end a turn (besides eos/eot/eom ids). */
static const char *const tok_eog_names[] = {
    "<|eot_id|>", "<|eom_id|>", "<|end|>", "<|im_end|>", "<end_of_turn>",
    "<|endoftext|>", "<|end_of_text|>", "<EOT>", "<|return|>", NULL,
};

static int32_t tok_find_control(const lyra_tokenizer *t, const char *name) {
    int32_t id = lyra_tokint_find(t, name, strlen(name));
    return (id >= 0 && id < t->n_vocab && t->types[id] == TOK_CONTROL) ? id : -1;
}

static int tok_build_eog(lyra_tokenizer *t, const lyra_gguf *g) {
    t->eog = calloc((size_t)t->n_vocab, 1);
    if (!t->eog) return LYRA_ERR_OOM;
    uint64_t n = 0; /* generation_config.json's eos_token_id list */
    if (lyra_gguf_get_arr(g, "tokenizer.lyra.eog_ids", NULL, &n))
        for (uint64_t i = 0; i < n; i++) {
            int64_t id;
            if (lyra_gguf_arr_get_i64(g, "tokenizer.lyra.eog_ids", i, &id) && id >= 0 && id < t->n_vocab)
                t->eog[id] = 1;
        }
    if (t->eos >= 0) t->eog[t->eos] = 1;
    if (t->eot >= 0) t->eog[t->eot] = 1;
    if (t->eom >= 0) t->eog[t->eom] = 1;
    for (int i = 0; tok_eog_names[i]; i++) {
        int32_t id = tok_find_control(t, tok_eog_names[i]);
        if (id >= 0) t->eog[id] = 1;
    }
    return LYRA_OK;
}

/* Read tokens, scores and token types. */
static int tok_load_vocab(lyra_tokenizer *t, const lyra_gguf *g, const char *where,
                          lyra_error *err) {
    lyra_gguf_vtype et;
    uint64_t n;
    if (!lyra_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n))
        return lyra_err(err, LYRA_ERR_INPUT, where, "tokenizer.ggml.tokens: missing (no vocabulary)");
    if (et != LYRA_GGUF_STRING)
        return lyra_err(err, LYRA_ERR_INPUT, where, "tokenizer.ggml.tokens: array of %s, expected strings",
                        lyra_gguf_vtype_name(et));
    if (n == 0 || n > (uint64_t)INT32_MAX / 4)
        return lyra_err(err, LYRA_ERR_INPUT, where, "tokenizer.ggml.tokens: %llu tokens is not a usable vocabulary size",
                        (unsigned long long)n);
    t->n_vocab = (int32_t)n;
    for (uint64_t i = 0; i < n; i++) {
        lyra_gguf_str s = lyra_gguf_arr_str(g, "tokenizer.ggml.tokens", i);
        if (!s.ptr && s.len) return lyra_err(err, LYRA_ERR_INPUT, where, "tokenizer.ggml.tokens[%llu]: unreadable", (unsigned long long)i);
        if (s.len > (1u << 20))
            return lyra_err(err, LYRA_ERR_INPUT, where, "tokenizer.ggml.tokens[%llu]: %llu bytes is too long for a token",
                            (unsigned long long)i, (unsigned long long)s.len);
        if (tok_add_str(t, s.ptr, (size_t)s.len)) return lyra_err(err, LYRA_ERR_OOM, where, "out of memory reading the vocabulary");
    }
    t->scores = calloc(n, sizeof *t->scores);
    t->types = malloc(n);
    if (!t->scores || !t->types) return lyra_err(err, LYRA_ERR_OOM, where, "out of memory reading the vocabulary");
    memset(t->types, TOK_NORMAL, n);

    uint64_t m;
    if (lyra_gguf_get_arr(g, "tokenizer.ggml.scores", &et, &m)) {
        if (m != n)
            return lyra_err(err, LYRA_ERR_INPUT, where, "tokenizer.ggml.scores: %llu entries but %llu tokens",
                            (unsigned long long)m, (unsigned long long)n);
        for (uint64_t i = 0; i < n; i++)
            if (!lyra_gguf_arr_get_f32(g, "tokenizer.ggml.scores", i, &t->scores[i]))
                return lyra_err(err, LYRA_ERR_INPUT, where, "tokenizer.ggml.scores: array of %s, expected numbers",
                                lyra_gguf_vtype_name(et));
    }
    if (lyra_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &m)) {
        if (m != n)
            return lyra_err(err, LYRA_ERR_INPUT, where, "tokenizer.ggml.token_type: %llu entries but %llu tokens",
                            (unsigned long long)m, (unsigned long long)n);
        for (uint64_t i = 0; i < n; i++) {
            int64_t v;
            if (!lyra_gguf_arr_get_i64(g, "tokenizer.ggml.token_type", i, &v))
                return lyra_err(err, LYRA_ERR_INPUT, where, "tokenizer.ggml.token_type: array of %s, expected integers",
                                lyra_gguf_vtype_name(et));
            if (v < 0 || v > TOK_BYTE)
                return lyra_err(err, LYRA_ERR_INPUT, where, "tokenizer.ggml.token_type[%llu]: %lld is not a token type (0..6)",
                                (unsigned long long)i, (long long)v);
            t->types[i] = (uint8_t)v;
        }
    } else if (t->model == TOK_MODEL_SPM) { /* no types: <0xNN> pieces are still bytes */
        for (uint64_t i = 0; i < n; i++) {
            size_t len;
            const char *s = tok_str(t, (int32_t)i, &len);
            if (len == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' && isxdigit((unsigned char)s[3]) &&
                isxdigit((unsigned char)s[4]))
                t->types[i] = TOK_BYTE;
        }
    }
    if (tok_hash_build(t, (uint32_t)n)) return lyra_err(err, LYRA_ERR_OOM, where, "out of memory reading the vocabulary");
    return LYRA_OK;
}

/* SPM byte tokens: <0xNN>, else the one-byte piece, else none. */
static void tok_find_bytes(lyra_tokenizer *t) {
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char s[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        int32_t id = lyra_tokint_find(t, s, 6);
        if (id < 0 || id >= t->n_vocab) {
            char c = (char)b;
            id = lyra_tokint_find(t, &c, 1);
            if (id >= t->n_vocab) id = -1;
        }
        t->byte_tok[b] = id;
    }
}

/* 1 if no token has U+2581 after a character other than U+2581. */
static int tok_no_inner_space(const lyra_tokenizer *t) {
    for (int32_t i = 0; i < t->n_vocab; i++) {
        size_t n;
        const char *s = tok_str(t, i, &n);
        int other = 0; /* seen a character that is not U+2581 */
        for (size_t j = 0; j < n;) {
            if (j + 3 <= n && memcmp(s + j, "\xe2\x96\x81", 3) == 0) {
                if (other) return 0;
                j += 3;
            } else {
                other = 1;
                j++;
            }
        }
    }
    return 1;
}

int lyra_tokenizer_load(const lyra_gguf *g, lyra_tokenizer **out, lyra_error *err) {
    *out = NULL;
    const char *where = lyra_gguf_path(g);
    if (!where || !*where) where = "gguf";
    lyra_gguf_str ms;
    if (!lyra_gguf_get_str(g, "tokenizer.ggml.model", &ms))
        return lyra_err(err, LYRA_ERR_INPUT, where, "tokenizer.ggml.model: missing (no tokenizer in this file)");
    tok_model model;
    if (ms.len == 5 && memcmp(ms.ptr, "llama", 5) == 0) model = TOK_MODEL_SPM;
    else if (ms.len == 4 && memcmp(ms.ptr, "gpt2", 4) == 0) model = TOK_MODEL_BPE;
    else
        return lyra_err(err, LYRA_ERR_INPUT, where, "tokenizer.ggml.model: unsupported tokenizer '%.*s' (supported: llama, gpt2)",
                        (int)(ms.len > 64 ? 64 : ms.len), ms.ptr);

    lyra_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
    t->model = model;
    int rc = tok_load_vocab(t, g, where, err);
    if (rc) goto fail;

    int spm = model == TOK_MODEL_SPM;
    int32_t nv = t->n_vocab;
    /* SPM files from old converters omit the ids: llama's 0/1/2 then. */
    if ((rc = tok_get_id(g, "tokenizer.ggml.unknown_token_id", nv, spm && nv > 0 ? 0 : -1, where, &t->unk, err)) ||
        (rc = tok_get_id(g, "tokenizer.ggml.bos_token_id", nv, spm && nv > 1 ? 1 : -1, where, &t->bos, err)) ||
        (rc = tok_get_id(g, "tokenizer.ggml.eos_token_id", nv, spm && nv > 2 ? 2 : -1, where, &t->eos, err)) ||
        (rc = tok_get_id(g, "tokenizer.ggml.padding_token_id", nv, -1, where, &t->pad, err)) ||
        (rc = tok_get_id(g, "tokenizer.ggml.eot_token_id", nv, -1, where, &t->eot, err)) ||
        (rc = tok_get_id(g, "tokenizer.ggml.eom_token_id", nv, -1, where, &t->eom, err)))
        goto fail;
    if (t->eot < 0) {
        static const char *const eot_names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<EOT>", NULL};
        for (int i = 0; eot_names[i] && t->eot < 0; i++) t->eot = tok_find_control(t, eot_names[i]);
    }
    if (t->eom < 0) t->eom = tok_find_control(t, "<|eom_id|>");
    t->add_bos = tok_get_flag(g, "tokenizer.ggml.add_bos_token", spm ? 1 : 0);
    t->add_eos = tok_get_flag(g, "tokenizer.ggml.add_eos_token", 0);
    t->add_space_prefix = spm ? tok_get_flag(g, "tokenizer.ggml.add_space_prefix", 1) : 0;
    t->ignore_merges = !spm && tok_get_flag(g, "tokenizer.lyra.ignore_merges", 0);
    if (!spm && tok_get_flag(g, "tokenizer.lyra.add_prefix_space", 0)) {
        uint32_t step = 0;
        lyra_gguf_get_u32(g, "tokenizer.lyra.prefix_space_step", &step);
        t->bpe_prefix_step = step < TOK_MAX_REGEX ? (int)step + 1 : TOK_MAX_REGEX + 1;
    }
    lyra_gguf_str nf;
    if (lyra_gguf_get_str(g, "tokenizer.lyra.normalizer", &nf)) { /* tokenizer.json's NFC, NFKC, NFD, NFKD */
        static const char *const forms[] = {"NFC", "NFKC", "NFD", "NFKD"};
        for (int i = 0; i < 4 && !t->normalize; i++)
            if (nf.len == strlen(forms[i]) && !memcmp(nf.ptr, forms[i], nf.len)) t->normalize = TOK_NORM_NFC + i;
        if (!t->normalize) {
            rc = lyra_err(err, LYRA_ERR_INPUT, where, "tokenizer.lyra.normalizer: '%.*s' is not NFC, NFKC, NFD or NFKD",
                          (int)(nf.len > 32 ? 32 : nf.len), nf.ptr);
            goto fail;
        }
    }
    lyra_gguf_str scheme;
    if (spm && lyra_gguf_get_str(g, "tokenizer.lyra.prepend_scheme", &scheme)) {
        if (scheme.len == 6 && !memcmp(scheme.ptr, "always", 6)) t->prepend_scheme = 1;
        else if (scheme.len == 5 && !memcmp(scheme.ptr, "first", 5)) t->prepend_scheme = 2;
        else if (scheme.len == 5 && !memcmp(scheme.ptr, "never", 5)) t->add_space_prefix = 0;
        else {
            rc = lyra_err(err, LYRA_ERR_INPUT, where, "tokenizer.lyra.prepend_scheme: '%.*s' is not always, first or never",
                          (int)(scheme.len > 32 ? 32 : scheme.len), scheme.ptr);
            goto fail;
        }
    }

    for (int side = 0; side < 2; side++) { /* tokenizer.json's lstrip/rstrip added tokens */
        const char *key = side ? "tokenizer.lyra.rstrip_ids" : "tokenizer.lyra.lstrip_ids";
        lyra_gguf_vtype et;
        uint64_t m;
        if (!lyra_gguf_get_arr(g, key, &et, &m)) continue;
        if (!t->strip && !(t->strip = calloc((size_t)nv, 1))) {
            rc = lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
            goto fail;
        }
        for (uint64_t i = 0; i < m; i++) {
            int64_t id;
            if (!lyra_gguf_arr_get_i64(g, key, i, &id) || id < 0 || id >= nv) {
                rc = lyra_err(err, LYRA_ERR_INPUT, where, "%s[%llu]: not a token id", key, (unsigned long long)i);
                goto fail;
            }
            t->strip[id] |= (uint8_t)(side ? 2 : 1);
        }
    }
    tok_find_bytes(t);
    t->spm_split_words = spm && tok_no_inner_space(t);
    if (!spm) {
        rc = lyra_tokint_bpe_init(t, g, where, err);
        if (rc) goto fail;
    }
    if (tok_build_pieces(t) || tok_build_specials(t) || tok_build_eog(t, g)) {
        rc = lyra_err(err, LYRA_ERR_OOM, where, "out of memory building the tokenizer");
        goto fail;
    }
    *out = t;
    return LYRA_OK;
fail:
    lyra_tokenizer_free(t);
    return rc;
}

void lyra_tokenizer_free(lyra_tokenizer *t) {
    if (!t) return;
    lyra_tokint_bpe_free(t);
    free(t->text);
    free(t->str_off);
    free(t->scores);
    free(t->types);
    free(t->pieces);
    free(t->piece_off);
    free(t->hash);
    free(t->merges);
    free(t->special);
    free(t->eog);
    free(t->strip);
    free(t);
}

/* ------------------------------------------------------------ queries */

int32_t lyra_tok_n_vocab(const lyra_tokenizer *t) { return t->n_vocab; }
int32_t lyra_tok_bos(const lyra_tokenizer *t) { return t->bos; }
int32_t lyra_tok_eos(const lyra_tokenizer *t) { return t->eos; }
int32_t lyra_tok_eot(const lyra_tokenizer *t) { return t->eot; }
int32_t lyra_tok_unk(const lyra_tokenizer *t) { return t->unk; }
int lyra_tok_add_bos(const lyra_tokenizer *t) { return t->add_bos; }
int lyra_tok_add_eos(const lyra_tokenizer *t) { return t->add_eos; }
int lyra_tok_add_space_prefix(const lyra_tokenizer *t) { return t->add_space_prefix; }
int lyra_tok_is_spm(const lyra_tokenizer *t) { return t->model == TOK_MODEL_SPM; }

int lyra_tok_is_eog(const lyra_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->eog[id];
}

int lyra_tok_type(const lyra_tokenizer *t, int32_t id) {
    return (id >= 0 && id < t->n_vocab) ? t->types[id] : -1;
}

const char *lyra_tok_text(const lyra_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) { *len = 0; return ""; }
    return tok_str(t, id, len);
}

int32_t lyra_tok_find(const lyra_tokenizer *t, const char *text, size_t len) {
    int32_t id = lyra_tokint_find(t, text, len);
    return id < t->n_vocab ? id : -1;
}

/* ------------------------------------------------------------ encoding */

/* One piece of the input: text to run through the model's merge, or a
 * special token found in it. */
typedef struct tok_frag {
    size_t off, len; /* bytes of the input */
    int32_t id;      /* -1: text; else the special token */
} tok_frag;

typedef struct tok_frags {
    tok_frag *v;  /* [cap] fragments in text order */
    size_t n;     /* used */
    size_t cap;   /* allocated */
} tok_frags;

static int tok_frag_push(tok_frags *f, size_t off, size_t len, int32_t id) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        tok_frag *v = realloc(f->v, cap * sizeof *v);
        if (!v) return LYRA_ERR_OOM;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = (tok_frag){off, len, id};
    return LYRA_OK;
}

/* Trigram filter: bit set for every 3-byte window of the text (hashed to 16
 * bits), so a special whose trigrams are not all there is skipped without a
 * scan. */
static uint16_t tok_tri(const char *p) {
    uint32_t x = (uint32_t)(uint8_t)p[0] | (uint32_t)(uint8_t)p[1] << 8 | (uint32_t)(uint8_t)p[2] << 16;
    return (uint16_t)((x * 2654435761u) >> 16);
}

static int tok_maybe_in(const uint64_t *bits, const char *s, size_t n) {
    for (size_t i = 0; i + 3 <= n; i++) {
        uint16_t h = tok_tri(s + i);
        if (!(bits[h >> 6] >> (h & 63) & 1)) return 0;
    }
    return 1;
}

static int tok_is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Split text at special tokens, as llama.cpp does: each special (longest
 * first) is searched in every text fragment left from the previous ones.
 * Control and unknown tokens only when parse_special; user-defined always. */
static int tok_partition(const lyra_tokenizer *t, const char *text, size_t len,
                         int parse_special, tok_frags *out) {
    tok_frags cur = {0}, nxt = {0};
    int rc = LYRA_OK;
    if (len == 0) { *out = cur; return LYRA_OK; }
    if ((rc = tok_frag_push(&cur, 0, len, -1))) goto done;
    uint64_t *bits = NULL;
    if (t->n_special > 8 && len >= 3) {
        bits = calloc(1024, sizeof *bits);
        if (!bits) { rc = LYRA_ERR_OOM; goto done; }
        for (size_t i = 0; i + 3 <= len; i++) {
            uint16_t h = tok_tri(text + i);
            bits[h >> 6] |= 1ull << (h & 63);
        }
    }
    for (int32_t k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        uint8_t ty = t->types[id];
        if (!parse_special && ty != TOK_USER_DEFINED) continue;
        size_t sn;
        const char *s = tok_str(t, id, &sn);
        if (sn > len) continue;
        if (bits && !tok_maybe_in(bits, s, sn)) continue;
        nxt.n = 0;
        int found = 0;
        for (size_t f = 0; f < cur.n; f++) {
            tok_frag fr = cur.v[f];
            if (fr.id >= 0 || fr.len < sn) {
                if ((rc = tok_frag_push(&nxt, fr.off, fr.len, fr.id))) goto done_bits;
                continue;
            }
            size_t pos = fr.off, end = fr.off + fr.len;
            while (pos < end) {
                const char *hit = memmem(text + pos, end - pos, s, sn);
                if (!hit) break;
                size_t at = (size_t)(hit - text), e = at + sn;
                if (t->strip && (t->strip[id] & 1)) /* lstrip: whitespace before it is its own */
                    while (at > pos && tok_is_space(text[at - 1])) at--;
                if (t->strip && (t->strip[id] & 2))
                    while (e < end && tok_is_space(text[e])) e++;
                if (at > pos && (rc = tok_frag_push(&nxt, pos, at - pos, -1))) goto done_bits;
                if ((rc = tok_frag_push(&nxt, at, e - at, id))) goto done_bits;
                pos = e;
                found = 1;
            }
            if (pos < end && (rc = tok_frag_push(&nxt, pos, end - pos, -1))) goto done_bits;
        }
        if (found) { tok_frags tmp = cur; cur = nxt; nxt = tmp; }
    }
done_bits:
    free(bits);
done:
    free(nxt.v);
    if (rc) { free(cur.v); cur = (tok_frags){0}; }
    *out = cur;
    return rc;
}

int lyra_tok_encode(const lyra_tokenizer *t, const char *text, size_t len,
                    int add_bos, int parse_special, int32_t **ids, size_t *n,
                    lyra_error *err) {
    *ids = NULL;
    *n = 0;
    tok_vec out = {0};
    tok_frags fr = {0};
    int rc = LYRA_OK;
    if (!text && len) return lyra_err(err, LYRA_ERR_INPUT, "tokenize", "NULL text");
    if (add_bos && t->bos >= 0 && (rc = lyra_tokint_push(&out, t->bos))) goto oom;
    if ((rc = tok_partition(t, text, len, parse_special, &fr))) goto oom;
    int prev_special = 1; /* SPM: the space prefix goes at the start and after specials */
    for (size_t i = 0; i < fr.n; i++) {
        tok_frag f = fr.v[i];
        if (f.id >= 0) {
            if ((rc = lyra_tokint_push(&out, f.id))) goto oom;
            prev_special = 1;
            continue;
        }
        const char *ft = text + f.off;
        size_t fl = f.len;
        uint8_t *norm = NULL; /* the fragment in the tokenizer's normalization form */
        if (t->normalize && fl) {
            static const utf8proc_option_t opt[] = {
                [TOK_NORM_NFC] = UTF8PROC_STABLE | UTF8PROC_COMPOSE,
                [TOK_NORM_NFKC] = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT,
                [TOK_NORM_NFD] = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE,
                [TOK_NORM_NFKD] = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT};
            utf8proc_ssize_t nn = utf8proc_map((const uint8_t *)ft, (utf8proc_ssize_t)fl, &norm, opt[t->normalize]);
            if (nn == UTF8PROC_ERROR_NOMEM) goto oom;
            if (nn >= 0) { /* invalid UTF-8 (an error): the bytes as they are */
                ft = (const char *)norm;
                fl = (size_t)nn;
            }
        }
        int lead_space = fl && ft[0] == ' ';
        if (t->model == TOK_MODEL_SPM) {
            int prefix = t->add_space_prefix && prev_special;
            if (t->prepend_scheme) { /* Metaspace: not before a space or U+2581; "first": only at the start */
                lead_space |= fl >= 3 && !memcmp(ft, "\xe2\x96\x81", 3);
                prefix = t->add_space_prefix && !lead_space && (t->prepend_scheme == 1 || f.off == 0);
            }
            rc = lyra_tokint_spm_encode(t, ft, fl, prefix, &out, err);
        } else {
            rc = lyra_tokint_bpe_encode(t, ft, fl, &out, err);
        }
        free(norm);
        if (rc) goto fail;
        prev_special = 0;
    }
    free(fr.v);
    if (out.n == 0) { /* a valid empty result: give a non-NULL pointer anyway */
        free(out.v);
        out.v = malloc(sizeof *out.v);
        if (!out.v) { rc = LYRA_ERR_OOM; goto oom; }
    }
    *ids = out.v;
    *n = out.n;
    return LYRA_OK;
oom:
    rc = lyra_err(err, LYRA_ERR_OOM, "tokenize", "out of memory");
fail:
    free(fr.v);
    free(out.v);
    return rc;
}

/* ------------------------------------------------------------ decoding */

/* Pointer to and length of the bytes token id shows as, or NULL/0 for a
 * control/unknown token when !render_special or an out-of-range id. */
static const char *tok_piece_ptr(const lyra_tokenizer *t, int32_t id, int render_special,
                                 size_t *len) {
    *len = 0;
    if (id < 0 || id >= t->n_vocab) return NULL;
    uint8_t ty = t->types[id];
    if (!render_special && (ty == TOK_CONTROL || ty == TOK_UNKNOWN)) return NULL;
    *len = (size_t)(t->piece_off[id + 1] - t->piece_off[id]);
    return t->pieces + t->piece_off[id];
}

size_t lyra_tok_piece(const lyra_tokenizer *t, int32_t id, int render_special,
                      char *buf, size_t cap) {
    size_t n;
    const char *p = tok_piece_ptr(t, id, render_special, &n);
    if (p && buf) memcpy(buf, p, n < cap ? n : cap);
    return n;
}

/* ------------------------------------------------------------ streaming */

struct lyra_tok_stream {
    const lyra_tokenizer *t; /* the vocabulary (not owned) */
    int flags;               /* LYRA_TOK_STREAM_* */
    int strip;               /* 1: drop one leading ' ' of the next non-empty piece */
    char *buf;               /* [cap] bytes not yet returned */
    size_t n;                /* bytes held in buf */
    size_t ok;               /* REPLACE_INVALID: buf[0, ok) is checked (valid UTF-8) */
    size_t cap;              /* bytes allocated */
};

lyra_tok_stream *lyra_tok_stream_new(const lyra_tokenizer *t, int flags) {
    lyra_tok_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->t = t;
    s->flags = flags;
    lyra_tok_stream_reset(s);
    return s;
}

void lyra_tok_stream_reset(lyra_tok_stream *s) {
    s->n = s->ok = 0;
    s->strip = (s->flags & LYRA_TOK_STREAM_STRIP_FIRST) && s->t->add_space_prefix;
}

void lyra_tok_stream_free(lyra_tok_stream *s) {
    if (!s) return;
    free(s->buf);
    free(s);
}

size_t lyra_tok_stream_pending(const lyra_tok_stream *s) { return s->n; }

/* Bytes of the maximal subpart of an ill-formed sequence at p[0..n) (the
 * longest start of a valid character, at least 1): what one U+FFFD stands
 * for. */
static size_t tok_utf8_bad_len(const uint8_t *p, size_t n) {
    uint8_t c = p[0], lo = 0x80, hi = 0xbf;
    size_t need = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 1;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
    size_t i = 1;
    while (i < need && i < n && (i == 1 ? (p[i] >= lo && p[i] <= hi) : (p[i] >= 0x80 && p[i] <= 0xbf))) i++;
    return i;
}

/* REPLACE_INVALID: replace each ill-formed part of buf[ok, n) by U+FFFD
 * (all: the incomplete tail too), advancing ok over what is decided. Out
 * of memory for a longer buffer: '?' instead. */
static void tok_stream_replace(lyra_tok_stream *s, int all) {
    static const char rep[3] = {(char)0xef, (char)0xbf, (char)0xbd};
    while (s->ok < s->n) {
        const uint8_t *p = (const uint8_t *)s->buf + s->ok;
        size_t left = s->n - s->ok, u = tok_utf8_unit(p, left), bad;
        if (u == 0) {
            if (!all) return;
            bad = left; /* an incomplete character: its start is the subpart */
        } else if (u > 1 || p[0] < 0x80) {
            s->ok += u;
            continue;
        } else bad = tok_utf8_bad_len(p, left);
        size_t r = 3;
        if (s->n - bad + r > s->cap) {
            size_t c = s->cap * 2;
            char *b = realloc(s->buf, c);
            if (b) { s->buf = b; s->cap = c; }
            else r = 1;
        }
        memmove(s->buf + s->ok + r, s->buf + s->ok + bad, s->n - s->ok - bad);
        memcpy(s->buf + s->ok, r == 3 ? rep : "?", r);
        s->n = s->n - bad + r;
        s->ok += r;
    }
}

/* Move the decided bytes (whole units, up to cap) from the buffer to out;
 * all: also the undecided tail (flush). */
static size_t tok_stream_emit(lyra_tok_stream *s, char *out, size_t cap, int all) {
    if (s->flags & LYRA_TOK_STREAM_REPLACE_INVALID) tok_stream_replace(s, all);
    size_t k = 0;
    while (k < s->n) {
        size_t u = tok_utf8_unit((const uint8_t *)s->buf + k, s->n - k);
        if (u == 0) {
            if (!all) break;
            u = s->n - k; /* the incomplete tail, as is */
        }
        if (k + u > cap) {
            /* flush with a cap smaller than one character: part of it, so
             * that repeated flushes always make progress */
            if (all && k == 0) k = cap;
            break;
        }
        k += u;
    }
    if (k == 0) return 0;
    if (out) memcpy(out, s->buf, k);
    memmove(s->buf, s->buf + k, s->n - k);
    s->n -= k;
    s->ok = s->ok > k ? s->ok - k : 0;
    return k;
}

size_t lyra_tok_stream_feed(lyra_tok_stream *s, int32_t id, char *buf, size_t cap) {
    size_t n;
    const char *p = tok_piece_ptr(s->t, id, s->flags & LYRA_TOK_STREAM_RENDER_SPECIAL, &n);
    if (n && s->strip) {
        if (p[0] == ' ') { p++; n--; }
        s->strip = 0;
    }
    if (id == s->t->bos && (s->flags & LYRA_TOK_STREAM_STRIP_AFTER_BOS) && s->t->add_space_prefix)
        s->strip = 1;
    if (n) {
        if (s->n + n > s->cap) {
            size_t c = s->cap ? s->cap : 64;
            while (c < s->n + n) c *= 2;
            char *b = realloc(s->buf, c);
            if (b) { s->buf = b; s->cap = c; }
            else n = 0; /* out of memory: the piece is lost, the stream goes on */
        }
        if (n) memcpy(s->buf + s->n, p, n);
        s->n += n;
    }
    return tok_stream_emit(s, buf, cap, 0);
}

size_t lyra_tok_stream_flush(lyra_tok_stream *s, char *buf, size_t cap) {
    return tok_stream_emit(s, buf, cap, 1);
}
