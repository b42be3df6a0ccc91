/* hf_tokenizer.c: tokenizer.json (+ tokenizer_config.json,
 * special_tokens_map.json, chat_template.jinja) -> GGUF tokenizer keys on an
 * in-memory lyra_gguf (see hf_tokenizer.h). Parsed with jansson; every
 * string set is copied, so nothing refers to the JSON afterwards. */
#include "format/hf_tokenizer.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GPT-2's pre-tokenizer regex (tokenizers' ByteLevel with use_regex). */
#define HF_RX_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define HF_RX_LLAMA3                                                                              \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*" \
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define HF_RX_QWEN2                                                                               \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"     \
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

#define HF_MAX_RX 6 /* = TOK_MAX_REGEX in src/token */

enum { T_NORMAL = 1, T_UNKNOWN = 2, T_CONTROL = 3, T_USER = 4, T_UNUSED = 5, T_BYTE = 6 };

/* Everything gathered before the keys are set. */
typedef struct hf_tok {
    const char *where;   /* file name for messages */
    lyra_error *err;
    int64_t n;           /* tokens (highest id + 1) */
    const char **text;   /* [n] token texts (into the JSON or pad), NULL: gap */
    uint64_t *len;       /* [n] their lengths */
    uint8_t *type;       /* [n] token types */
    char *pads;          /* [n * 16] texts of the [PADn] fillers of id holes */
    char **rx;           /* [n_rx] pre-tokenizer regexes (malloc'd) */
    int n_rx;
    int byte_level;      /* a ByteLevel pre-tokenizer: "gpt2" */
    int add_prefix_space;/* ByteLevel(add_prefix_space): 1 + its step (regexes before it) */
    int metaspace;       /* Metaspace / Prepend+Replace: "llama" */
    int space_prefix;    /* "llama": prepend U+2581 */
    const char *prepend_scheme; /* Metaspace's prepend_scheme, or NULL */
    const char *normalizer;     /* "NFC", "NFKC", "NFD" or "NFKD" (a static string), or NULL */
} hf_tok;

static int hf_fail(hf_tok *h, const char *fmt, ...) LYRA_PRINTF(2, 3);
static int hf_fail(hf_tok *h, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lyra_err(h->err, LYRA_ERR_INPUT, h->where, "%s", msg);
}

static const char *jstr(const json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

static int jtype_is(const json_t *o, const char *type) {
    const char *t = jstr(o, "type");
    return t && strcmp(t, type) == 0;
}

/* A token's content: a string, or an AddedToken object's "content". */
static const char *token_content(const json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return jstr(v, "content");
    return NULL;
}

static int add_rx(hf_tok *h, const char *rx, size_t n) {
    if (h->n_rx >= HF_MAX_RX) return hf_fail(h, "pre_tokenizer: more than %d splitting steps", HF_MAX_RX);
    char *s = malloc(n + 1);
    if (!s) return lyra_err(h->err, LYRA_ERR_OOM, h->where, "out of memory");
    memcpy(s, rx, n);
    s[n] = 0;
    h->rx[h->n_rx++] = s;
    return LYRA_OK;
}

/* A literal string as a PCRE2 pattern: ASCII punctuation escaped. */
static int add_literal_rx(hf_tok *h, const char *lit, size_t n) {
    char *s = malloc(2 * n + 1);
    if (!s) return lyra_err(h->err, LYRA_ERR_OOM, h->where, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)lit[i];
        if (c < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
            if (c >= 0x20 && c < 0x7f) s[k++] = '\\';
            else { k += (size_t)sprintf(s + k, "\\x%02x", c) ; continue; }
        }
        s[k++] = (char)c;
    }
    int rc = add_rx(h, s, k);
    free(s);
    return rc;
}

/* Bytes of the UTF-8 character led by c (1 for a stray byte). */
static uint64_t utf8_len(unsigned char c) {
    return c < 0xc0 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}

/* ---------------------------------------------------------------- parts */

static int read_normalizer(hf_tok *h, const json_t *n) {
    if (!n || json_is_null(n)) return LYRA_OK;
    const char *t = jstr(n, "type");
    if (!t) return hf_fail(h, "normalizer: no type");
    if (!strcmp(t, "Sequence")) {
        const json_t *v = json_object_get(n, "normalizers");
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e) {
            int rc = read_normalizer(h, e);
            if (rc) return rc;
        }
        return LYRA_OK;
    }
    static const char *const forms[] = {"NFC", "NFKC", "NFD", "NFKD"};
    for (int i = 0; i < 4; i++) { /* a Unicode normalization form (the tokenizer applies it: libutf8proc) */
        if (strcmp(t, forms[i])) continue;
        if (h->normalizer && strcmp(h->normalizer, forms[i]))
            return hf_fail(h, "normalizer %s after %s is not supported (one normalization form)", forms[i],
                           h->normalizer);
        if (h->metaspace)
            return hf_fail(h, "normalizer %s after Prepend/Replace is not supported (lyra applies it first)",
                           forms[i]);
        h->normalizer = forms[i];
        return LYRA_OK;
    }
    if (!strcmp(t, "Prepend")) {
        const char *p = jstr(n, "prepend");
        if (p && !strcmp(p, "\xe2\x96\x81")) { h->space_prefix = 1; h->metaspace = 1; return LYRA_OK; }
        return hf_fail(h, "normalizer Prepend('%.32s') is not supported (only U+2581)", p ? p : "");
    }
    if (!strcmp(t, "Replace")) {
        const json_t *pat = json_object_get(n, "pattern");
        const char *from = jstr(pat, "String"), *to = jstr(n, "content");
        if (from && to && !strcmp(from, " ") && !strcmp(to, "\xe2\x96\x81")) { h->metaspace = 1; return LYRA_OK; }
        return hf_fail(h, "normalizer Replace('%.32s' -> '%.32s') is not supported (only ' ' -> U+2581)",
                       from ? from : "(regex)", to ? to : "");
    }
    return hf_fail(h, "normalizer %.40s is not supported", t);
}

static int read_pretok(hf_tok *h, const json_t *p) {
    if (!p || json_is_null(p)) return LYRA_OK;
    const char *t = jstr(p, "type");
    if (!t) return hf_fail(h, "pre_tokenizer: no type");
    if (!strcmp(t, "Sequence")) {
        const json_t *v = json_object_get(p, "pretokenizers");
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e) {
            int rc = read_pretok(h, e);
            if (rc) return rc;
        }
        return LYRA_OK;
    }
    if (!strcmp(t, "ByteLevel")) {
        h->byte_level = 1;
        if (json_is_true(json_object_get(p, "add_prefix_space"))) h->add_prefix_space = 1 + h->n_rx;
        const json_t *ur = json_object_get(p, "use_regex");
        if (!ur || json_is_true(ur)) return add_rx(h, HF_RX_GPT2, strlen(HF_RX_GPT2));
        return LYRA_OK;
    }
    if (!strcmp(t, "Split")) {
        const char *beh = jstr(p, "behavior");
        if (json_is_true(json_object_get(p, "invert")) || !beh || strcmp(beh, "Isolated"))
            return hf_fail(h, "pre_tokenizer Split with behavior %.32s%s is not supported (only Isolated)",
                           beh ? beh : "(none)", json_is_true(json_object_get(p, "invert")) ? " inverted" : "");
        const json_t *pat = json_object_get(p, "pattern");
        const json_t *rx = json_object_get(pat, "Regex"), *s = json_object_get(pat, "String");
        if (json_is_string(rx)) return add_rx(h, json_string_value(rx), json_string_length(rx));
        if (json_is_string(s)) return add_literal_rx(h, json_string_value(s), json_string_length(s));
        return hf_fail(h, "pre_tokenizer Split: no pattern");
    }
    if (!strcmp(t, "Digits")) {
        const char *rx = json_is_true(json_object_get(p, "individual_digits")) ? "\\p{N}" : "\\p{N}+";
        return add_rx(h, rx, strlen(rx));
    }
    if (!strcmp(t, "Metaspace")) {
        const char *r = jstr(p, "replacement");
        if (r && strcmp(r, "\xe2\x96\x81"))
            return hf_fail(h, "pre_tokenizer Metaspace with replacement '%.16s' is not supported", r);
        h->metaspace = 1;
        const char *ps = jstr(p, "prepend_scheme");
        const json_t *aps = json_object_get(p, "add_prefix_space");
        if (ps) {
            h->prepend_scheme = ps;
            h->space_prefix = strcmp(ps, "never") != 0;
        } else {
            h->prepend_scheme = "always";
            h->space_prefix = !aps || json_is_true(aps);
        }
        return LYRA_OK;
    }
    return hf_fail(h, "pre_tokenizer %.40s is not supported", t);
}

/* Set *id to the id of token text s (vocab or added), or -1. */
static int64_t find_id(const json_t *vocab, const json_t *added, const char *s) {
    if (!s) return -1;
    size_t i;
    const json_t *e;
    json_array_foreach(added, i, e) {
        const char *c = jstr(e, "content");
        if (c && !strcmp(c, s) && json_is_integer(json_object_get(e, "id")))
            return json_integer_value(json_object_get(e, "id"));
    }
    const json_t *v = json_object_get(vocab, s);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

static int set_id(lyra_gguf *g, const char *key, int64_t id, int64_t n, lyra_error *err) {
    if (id < 0 || id >= n) return LYRA_OK;
    uint32_t v = (uint32_t)id;
    return lyra_gguf_set_val(g, key, LYRA_GGUF_U32, &v, err);
}

static int set_bool(lyra_gguf *g, const char *key, int b, lyra_error *err) {
    uint8_t v = b != 0;
    return lyra_gguf_set_val(g, key, LYRA_GGUF_BOOL, &v, err);
}

/* The post-processor's template: first/last item a special token? */
static void read_post(const json_t *pp, const char **first, const char **last) {
    if (!pp || json_is_null(pp)) return;
    if (jtype_is(pp, "Sequence")) {
        size_t i;
        const json_t *e;
        json_array_foreach(json_object_get(pp, "processors"), i, e) read_post(e, first, last);
        return;
    }
    if (jtype_is(pp, "TemplateProcessing")) {
        const json_t *single = json_object_get(pp, "single");
        size_t n = json_array_size(single);
        if (!n) return;
        const json_t *a = json_object_get(json_array_get(single, 0), "SpecialToken");
        const json_t *b = json_object_get(json_array_get(single, n - 1), "SpecialToken");
        if (a) *first = jstr(a, "id");
        if (b) *last = jstr(b, "id");
        return;
    }
    if (jtype_is(pp, "RobertaProcessing") || jtype_is(pp, "BertProcessing")) {
        const json_t *cls = json_object_get(pp, "cls"), *sep = json_object_get(pp, "sep");
        if (json_is_array(cls)) *first = json_string_value(json_array_get(cls, 0));
        if (json_is_array(sep)) *last = json_string_value(json_array_get(sep, 0));
    }
}

/* The regexes match one of the pre-tokenizers llama.cpp names. */
static const char *pre_name(const hf_tok *h) {
    if (h->n_rx == 1 && !strcmp(h->rx[0], HF_RX_GPT2)) return "gpt-2";
    if (h->n_rx == 1 && !strcmp(h->rx[0], HF_RX_LLAMA3)) return "llama-bpe";
    if (h->n_rx == 1 && !strcmp(h->rx[0], HF_RX_QWEN2)) return "qwen2";
    if (h->n_rx == 2 && !strcmp(h->rx[0], "\\p{N}") && !strcmp(h->rx[1], HF_RX_GPT2)) return "starcoder";
    return "lyra-regex"; /* lyra's tokenizer.lyra.pre_regex; unknown to llama.cpp */
}

/* ---------------------------------------------------------------- main */

static int convert(hf_tok *h, const json_t *root, const json_t *cfg, const json_t *stmap,
                   const char *tmpl_file, lyra_gguf *g) {
    lyra_error *err = h->err;
    if (!json_is_object(root)) return hf_fail(h, "not a JSON object");
    const json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return hf_fail(h, "no \"model\" object");
    const char *mtype = jstr(model, "type");
    if (mtype && strcmp(mtype, "BPE"))
        return hf_fail(h, "model type %.32s is not supported (lyra reads BPE tokenizers)", mtype);
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab)) return hf_fail(h, "model.vocab: missing or not an object");
    if (merges && !json_is_array(merges)) return hf_fail(h, "model.merges: not an array");
    const json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_array(added)) return hf_fail(h, "added_tokens: not an array");

    int rc = read_normalizer(h, json_object_get(root, "normalizer"));
    if (!rc) rc = read_pretok(h, json_object_get(root, "pre_tokenizer"));
    if (rc) return rc;
    int byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    if (h->byte_level && h->metaspace)
        return hf_fail(h, "both ByteLevel and Metaspace/U+2581 handling: not supported");
    int spm = !h->byte_level;
    if (spm && h->n_rx)
        return hf_fail(h, "pre_tokenizer Split/Digits without ByteLevel is not supported");

    /* ids */
    int64_t max = -1;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)vocab, k, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= (1 << 26))
            return hf_fail(h, "model.vocab['%.40s']: not a token id", k);
        if (json_integer_value(v) > max) max = json_integer_value(v);
    }
    size_t i;
    json_array_foreach(added, i, v) {
        const json_t *id = json_object_get(v, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= (1 << 26) ||
            !json_is_string(json_object_get(v, "content")))
            return hf_fail(h, "added_tokens[%zu]: no id or content", i);
        if (json_integer_value(id) > max) max = json_integer_value(id);
    }
    if (max < 0) return hf_fail(h, "model.vocab: empty");
    size_t count = json_object_size(vocab) + json_array_size(added);
    if ((uint64_t)max >= (uint64_t)count * 4 + 65536) /* holes are filled: bound what they cost */
        return hf_fail(h, "token id %lld is far beyond the %zu tokens given", (long long)max, count);
    h->n = max + 1;
    h->text = calloc((size_t)h->n, sizeof *h->text);
    h->len = calloc((size_t)h->n, sizeof *h->len);
    h->type = malloc((size_t)h->n);
    char *pads = h->pads = malloc((size_t)h->n * 16);
    if (!h->text || !h->len || !h->type || !pads) {
        return lyra_err(err, LYRA_ERR_OOM, h->where, "out of memory");
    }
    memset(h->type, T_NORMAL, (size_t)h->n);
    json_object_foreach((json_t *)vocab, k, v) {
        int64_t id = json_integer_value(v);
        h->text[id] = k;
        h->len[id] = strlen(k); /* object keys are NUL-terminated by jansson */
    }
    json_array_foreach(added, i, v) {
        int64_t id = json_integer_value(json_object_get(v, "id"));
        const json_t *c = json_object_get(v, "content");
        h->text[id] = json_string_value(c);
        h->len[id] = json_string_length(c);
        h->type[id] = json_is_true(json_object_get(v, "special")) ? T_CONTROL : T_USER;
    }
    for (int64_t id = 0; id < h->n; id++) {
        if (!h->text[id]) { /* a hole in the ids */
            int m = snprintf(pads + id * 16, 16, "[PAD%lld]", (long long)id);
            h->text[id] = pads + id * 16;
            h->len[id] = (uint64_t)m;
            h->type[id] = T_UNUSED;
        } else if (spm && byte_fallback && h->len[id] == 6 && !memcmp(h->text[id], "<0x", 3) &&
                   h->text[id][5] == '>' && h->type[id] == T_NORMAL) {
            h->type[id] = T_BYTE;
        }
    }
    for (int side = 0; side < 2; side++) { /* added tokens that take the whitespace beside them */
        int32_t *ids = malloc((json_array_size(added) + 1) * sizeof *ids);
        if (!ids) return lyra_err(err, LYRA_ERR_OOM, h->where, "out of memory");
        uint64_t m = 0;
        json_array_foreach(added, i, v)
            if (json_is_true(json_object_get(v, side ? "rstrip" : "lstrip")))
                ids[m++] = (int32_t)json_integer_value(json_object_get(v, "id"));
        rc = m ? lyra_gguf_set_arr(g, side ? "tokenizer.lyra.rstrip_ids" : "tokenizer.lyra.lstrip_ids",
                                   LYRA_GGUF_I32, ids, m, err) : LYRA_OK;
        free(ids);
        if (rc) return rc;
    }
    const char *unk = jstr(model, "unk_token");
    int64_t unk_id = find_id(vocab, added, unk);
    if (unk_id >= 0 && h->type[unk_id] != T_UNUSED) h->type[unk_id] = T_UNKNOWN;

    if ((rc = lyra_gguf_set_str(g, "tokenizer.ggml.model", spm ? "llama" : "gpt2", spm ? 5 : 4, err)) ||
        (rc = lyra_gguf_set_arr_str(g, "tokenizer.ggml.tokens", h->text, h->len, (uint64_t)h->n, err)))
        goto out;
    {
        int32_t *tt = malloc((size_t)h->n * sizeof *tt);
        if (!tt) { rc = lyra_err(err, LYRA_ERR_OOM, h->where, "out of memory"); goto out; }
        for (int64_t id = 0; id < h->n; id++) tt[id] = h->type[id];
        rc = lyra_gguf_set_arr(g, "tokenizer.ggml.token_type", LYRA_GGUF_I32, tt, (uint64_t)h->n, err);
        free(tt);
        if (rc) goto out;
    }

    /* merges: "a b" strings (both JSON forms accepted) */
    size_t nm = json_array_size(merges);
    char **ms = calloc(nm ? nm : 1, sizeof *ms);
    float *scores = spm ? malloc((size_t)h->n * sizeof *scores) : NULL;
    if (!ms || (spm && !scores)) {
        free(ms);
        free(scores);
        rc = lyra_err(err, LYRA_ERR_OOM, h->where, "out of memory");
        goto out;
    }
    if (spm) for (int64_t id = 0; id < h->n; id++) scores[id] = h->type[id] == T_NORMAL ? -1e9f : 0.0f;
    for (i = 0; i < nm && !rc; i++) {
        const json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t la, lb;
        if (json_is_string(m)) {
            const char *s = json_string_value(m);
            const char *sp = json_string_length(m) > 1 ? strchr(s + 1, ' ') : NULL;
            if (!sp) { rc = hf_fail(h, "model.merges[%zu]: '%.40s' is not two pieces", i, s); break; }
            a = s; la = (size_t)(sp - s); b = sp + 1; lb = strlen(b);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0)); la = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1)); lb = json_string_length(json_array_get(m, 1));
        } else {
            rc = hf_fail(h, "model.merges[%zu]: neither \"a b\" nor [\"a\", \"b\"]", i);
            break;
        }
        ms[i] = malloc(la + lb + 2);
        if (!ms[i]) { rc = lyra_err(err, LYRA_ERR_OOM, h->where, "out of memory"); break; }
        memcpy(ms[i], a, la);
        ms[i][la] = ' ';
        memcpy(ms[i] + la + 1, b, lb);
        ms[i][la + 1 + lb] = 0;
        if (spm) { /* the merged piece's score: minus the rank of its first merge */
            memmove(ms[i] + la, ms[i] + la + 1, lb + 1);
            int64_t id = find_id(vocab, NULL, ms[i]);
            if (id >= 0 && scores[id] == -1e9f) scores[id] = -(float)i;
            memmove(ms[i] + la + 1, ms[i] + la, lb + 1);
            ms[i][la] = ' ';
        }
    }
    if (!rc) rc = lyra_gguf_set_arr_str(g, "tokenizer.ggml.merges", (const char *const *)ms, NULL, nm, err);
    if (!rc && spm) {
        for (int64_t id = 0; id < h->n; id++) /* single characters and unreachable pieces */
            if (scores[id] == -1e9f && h->len[id] && h->len[id] <= 4 &&
                utf8_len((unsigned char)h->text[id][0]) == h->len[id])
                scores[id] = 0.0f;
        rc = lyra_gguf_set_arr(g, "tokenizer.ggml.scores", LYRA_GGUF_F32, scores, (uint64_t)h->n, err);
    }
    for (i = 0; i < nm; i++) free(ms[i]);
    free(ms);
    free(scores);
    if (rc) goto out;

    if (h->normalizer && (rc = lyra_gguf_set_str(g, "tokenizer.lyra.normalizer", h->normalizer,
                                                 strlen(h->normalizer), err)))
        goto out;

    /* pre-tokenizer / space prefix */
    if (!spm) {
        const char *pn = pre_name(h);
        if ((rc = lyra_gguf_set_str(g, "tokenizer.ggml.pre", pn, strlen(pn), err)) ||
            (rc = lyra_gguf_set_arr_str(g, "tokenizer.lyra.pre_regex", (const char *const *)h->rx, NULL,
                                        (uint64_t)h->n_rx, err)))
            goto out;
        if (json_is_true(json_object_get(model, "ignore_merges")) &&
            (rc = set_bool(g, "tokenizer.lyra.ignore_merges", 1, err)))
            goto out;
        if (h->add_prefix_space) {
            uint32_t step = (uint32_t)h->add_prefix_space - 1;
            if ((rc = set_bool(g, "tokenizer.lyra.add_prefix_space", 1, err)) ||
                (rc = lyra_gguf_set_val(g, "tokenizer.lyra.prefix_space_step", LYRA_GGUF_U32, &step, err)))
                goto out;
        }
    } else {
        if ((rc = set_bool(g, "tokenizer.ggml.add_space_prefix", h->space_prefix, err))) goto out;
        if (h->prepend_scheme &&
            (rc = lyra_gguf_set_str(g, "tokenizer.lyra.prepend_scheme", h->prepend_scheme,
                                    strlen(h->prepend_scheme), err)))
            goto out;
    }

    /* special ids and flags */
    {
        const json_t *src[2] = {cfg, stmap};
        const char *bos = NULL, *eos = NULL, *pad = NULL, *cunk = NULL;
        for (int s = 0; s < 2; s++) {
            if (!src[s]) continue;
            if (!bos) bos = token_content(json_object_get(src[s], "bos_token"));
            if (!eos) eos = token_content(json_object_get(src[s], "eos_token"));
            if (!pad) pad = token_content(json_object_get(src[s], "pad_token"));
            if (!cunk) cunk = token_content(json_object_get(src[s], "unk_token"));
        }
        const char *first = NULL, *last = NULL;
        read_post(json_object_get(root, "post_processor"), &first, &last);
        if (!bos && first) bos = first;
        if (!eos && last) eos = last;
        if (unk_id < 0) unk_id = find_id(vocab, added, cunk);
        int add_bos = first != NULL, add_eos = last != NULL;
        const json_t *pp = json_object_get(root, "post_processor");
        if (!pp || json_is_null(pp)) { /* no post-processor: the config's flags */
            add_bos = json_is_true(json_object_get(cfg, "add_bos_token"));
            add_eos = json_is_true(json_object_get(cfg, "add_eos_token"));
        }
        int64_t bos_id = find_id(vocab, added, first && add_bos ? first : bos);
        if ((rc = set_id(g, "tokenizer.ggml.bos_token_id", bos_id, h->n, err)) ||
            (rc = set_id(g, "tokenizer.ggml.eos_token_id", find_id(vocab, added, eos), h->n, err)) ||
            (rc = set_id(g, "tokenizer.ggml.unknown_token_id", unk_id, h->n, err)) ||
            (rc = set_id(g, "tokenizer.ggml.padding_token_id", find_id(vocab, added, pad), h->n, err)) ||
            (rc = set_bool(g, "tokenizer.ggml.add_bos_token", add_bos && bos_id >= 0, err)) ||
            (rc = set_bool(g, "tokenizer.ggml.add_eos_token", add_eos, err)))
            goto out;
    }

    /* chat template: chat_template.jinja, else tokenizer_config's */
    if (tmpl_file) {
        rc = lyra_gguf_set_str(g, "tokenizer.chat_template", tmpl_file, strlen(tmpl_file), err);
    } else if (cfg) {
        const json_t *ct = json_object_get(cfg, "chat_template");
        if (json_is_string(ct)) {
            rc = lyra_gguf_set_str(g, "tokenizer.chat_template", json_string_value(ct), json_string_length(ct), err);
        } else if (json_is_array(ct)) { /* [{name, template}]: "default" as the template, others by name */
            json_array_foreach(ct, i, v) {
                const char *name = jstr(v, "name");
                const json_t *tt = json_object_get(v, "template");
                if (!name || !json_is_string(tt)) continue;
                char key[160];
                if (!strcmp(name, "default")) snprintf(key, sizeof key, "tokenizer.chat_template");
                else snprintf(key, sizeof key, "tokenizer.chat_template.%.100s", name);
                rc = lyra_gguf_set_str(g, key, json_string_value(tt), json_string_length(tt), err);
                if (rc) break;
            }
        }
    }
out:
    return rc;
}

static void hf_free(hf_tok *h) {
    free(h->pads);
    for (int i = 0; i < h->n_rx; i++) free(h->rx[i]);
    free(h->rx);
    free(h->len);
    free(h->type);
    free(h->text);
}

/* generation_config.json's eos_token_id (a number or a list): the ids that
 * end generation, as tokenizer.lyra.eog_ids. */
static int set_eog(const json_t *gen, lyra_gguf *g, int64_t n_vocab, lyra_error *err) {
    const json_t *e = json_object_get(gen, "eos_token_id");
    int32_t ids[64];
    uint64_t n = 0;
    if (json_is_integer(e)) {
        if (json_integer_value(e) >= 0 && json_integer_value(e) < n_vocab) ids[n++] = (int32_t)json_integer_value(e);
    } else if (json_is_array(e)) {
        size_t i;
        const json_t *v;
        json_array_foreach(e, i, v)
            if (n < 64 && json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < n_vocab)
                ids[n++] = (int32_t)json_integer_value(v);
    }
    return n ? lyra_gguf_set_arr(g, "tokenizer.lyra.eog_ids", LYRA_GGUF_I32, ids, n, err) : LYRA_OK;
}

static int run(const char *where, const json_t *root, const json_t *cfg, const json_t *stmap,
               const char *tmpl, lyra_gguf *g, lyra_error *err) {
    hf_tok h = {0};
    h.where = where;
    h.err = err;
    h.rx = calloc(HF_MAX_RX, sizeof *h.rx);
    if (!h.rx) return lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
    int rc = convert(&h, root, cfg, stmap, tmpl, g);
    hf_free(&h);
    return rc;
}

static json_t *load_json_text(const char *s, size_t n, const char *where, lyra_error *err, int *rc) {
    json_error_t je;
    json_t *j = json_loadb(s, n, JSON_ALLOW_NUL, &je);
    *rc = LYRA_OK;
    if (!j) *rc = lyra_err(err, LYRA_ERR_INPUT, where, "line %d: invalid JSON: %s", je.line, je.text);
    return j;
}

int lyra_hf_tokenizer_meta_text(const char *tokenizer_json, size_t len, const char *config_json,
                                size_t config_len, const char *where, lyra_gguf *g,
                                lyra_error *err) {
    int rc;
    json_t *root = load_json_text(tokenizer_json, len, where, err, &rc);
    if (!root) return rc;
    json_t *cfg = NULL;
    if (config_json) {
        cfg = load_json_text(config_json, config_len, "tokenizer_config.json", err, &rc);
        if (!cfg) { json_decref(root); return rc; }
    }
    rc = run(where, root, cfg, NULL, NULL, g, err);
    json_decref(cfg);
    json_decref(root);
    return rc;
}

/* Read DIR/name into a malloc'd NUL-terminated buffer; NULL when absent. */
static char *read_file(const char *path, size_t *n, int *rc, lyra_error *err) {
    FILE *f = fopen(path, "rb");
    *rc = LYRA_OK;
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); *rc = lyra_err(err, LYRA_ERR_OOM, path, "out of memory"); return NULL; }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, 65536, f);
        len += r;
        if (r < 65536) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); *rc = lyra_err(err, LYRA_ERR_RUNTIME, path, "read error"); return NULL; }
    buf[len] = 0;
    *n = len;
    return buf;
}

/* DIR/name parsed, NULL when absent (*rc LYRA_OK) or bad (*rc set). */
static json_t *load_json_file(const char *dir, const char *name, lyra_error *err, int *rc) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t n = 0;
    char *s = read_file(path, &n, rc, err);
    if (!s) return NULL;
    json_t *j = load_json_text(s, n, path, err, rc);
    free(s);
    return j;
}

int lyra_hf_tokenizer_meta(const char *dir, lyra_gguf *g, lyra_error *err) {
    char path[4096];
    int rc;
    if ((size_t)snprintf(path, sizeof path, "%s/tokenizer.json", dir) >= sizeof path)
        return lyra_err(err, LYRA_ERR_INPUT, dir, "path too long");
    json_t *root = load_json_file(dir, "tokenizer.json", err, &rc);
    if (!root) {
        if (rc) return rc;
        return lyra_err(err, LYRA_ERR_INPUT, NULL, "tokenizer.json not found in %s; lyra needs it", dir);
    }
    json_t *cfg = load_json_file(dir, "tokenizer_config.json", err, &rc);
    json_t *stmap = rc ? NULL : load_json_file(dir, "special_tokens_map.json", err, &rc);
    char *tmpl = NULL;
    if (!rc) {
        char tp[4096];
        size_t n;
        snprintf(tp, sizeof tp, "%s/chat_template.jinja", dir);
        tmpl = read_file(tp, &n, &rc, err);
    }
    if (!rc) rc = run(path, root, cfg, stmap, tmpl, g, err);
    json_t *gen = rc ? NULL : load_json_file(dir, "generation_config.json", err, &rc);
    uint64_t nv = 0;
    if (!rc && gen && lyra_gguf_get_arr(g, "tokenizer.ggml.tokens", NULL, &nv))
        rc = set_eog(gen, g, (int64_t)nv, err);
    json_decref(gen);
    free(tmpl);
    json_decref(stmap);
    json_decref(cfg);
    json_decref(root);
    return rc;
}
