/* tok_bpe.c: the byte-level BPE encoder ("gpt2" vocabularies).
 *
 * 1. Pre-tokenizer: the text is split by the regexes of tokenizer.ggml.pre
 *    (PCRE2 with UTF + UCP), applied in sequence: each regex splits every
 *    piece left by the previous one into its matches and the gaps between
 *    them (both kept, in order). Invalid UTF-8 never matches and ends up in a
 *    gap, so any byte string round-trips.
 * 2. Each piece's bytes are GPT-2 mapped characters (byte_sym); the adjacent
 *    pair with the lowest merge rank is merged (leftmost on ties) until no
 *    pair has a merge. Strings are interned: a pair is two ids, the merge
 *    table maps it to its rank and the id of the merged string.
 * 3. A final symbol that is not a vocabulary token (only possible with
 *    merges whose result is not a token) is emitted byte by byte. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "token/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/heap.h"

/* ------------------------------------------------------------ byte map */

/* GPT-2 keeps the printable bytes 33..126, 161..172 and 174..255 as code
 * points; the other 68 bytes (0..32, 127..160, 173) become 256, 257, ... in
 * byte order. */
uint32_t lyra_tokint_bpe_byte_to_cp(uint8_t b) {
    if (b <= 32) return 256u + b;
    if (b >= 127 && b <= 160) return 256u + 33u + (b - 127u);
    if (b == 173) return 256u + 67u;
    return b;
}

int lyra_tokint_bpe_cp_to_byte(uint32_t cp) {
    if (cp < 256) {
        if (cp <= 32 || (cp >= 127 && cp <= 160) || cp == 173) return -1;
        return (int)cp;
    }
    uint32_t n = cp - 256;
    if (n < 33) return (int)n;
    if (n < 67) return (int)(127 + (n - 33));
    if (n == 67) return 173;
    return -1;
}

/* ------------------------------------------------------------ pre-tokenizers */

#define RX_CONTRACTIONS "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
/* GPT-2's pattern (the trailing \s+ only ever matches what would be a gap). */
#define RX_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
/* Llama 3 (tiktoken cl100k-style): digits in groups of up to 3. */
#define RX_LLAMA3                                                              \
    RX_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"               \
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* Qwen2: as Llama 3 with single digits. */
#define RX_QWEN2                                                               \
    RX_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"                    \
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* GPT-4o (o200k): case-aware words. */
#define RX_UPPER "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]"
#define RX_LOWER "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]"
#define RX_GPT4O                                                               \
    "[^\\r\\n\\p{L}\\p{N}]?" RX_UPPER "*" RX_LOWER "+" RX_CONTRACTIONS "?"     \
    "|[^\\r\\n\\p{L}\\p{N}]?" RX_UPPER "+" RX_LOWER "*" RX_CONTRACTIONS "?"    \
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* Mistral tekken: as GPT-4o without contractions, single digits. */
#define RX_TEKKEN                                                              \
    "[^\\r\\n\\p{L}\\p{N}]?" RX_UPPER "*" RX_LOWER "+"                         \
    "|[^\\r\\n\\p{L}\\p{N}]?" RX_UPPER "+" RX_LOWER "*"                        \
    "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* CJK runs (DeepSeek): U+4E00..U+9FA5, U+0800..U+4E00, U+AC00..U+D7FF. */
#define RX_CJK "[\\x{4e00}-\\x{9fa5}\\x{0800}-\\x{4e00}\\x{ac00}-\\x{d7ff}]+"

/* One named pre-tokenizer: its regexes, applied in order. */
typedef struct tok_pre {
    const char *names;              /* '|'-separated tokenizer.ggml.pre values */
    const char *rx[TOK_MAX_REGEX];  /* NULL-terminated */
} tok_pre;

static const tok_pre tok_pres[] = {
    {"default|gpt-2|gpt2|mpt|olmo|phi-2|jais|trillion", {RX_GPT2, NULL}},
    {"llama-bpe|llama3|dbrx|smaug-bpe|chatglm-bpe", {RX_LLAMA3, NULL}},
    {"qwen2|stablelm2|hunyuan", {RX_QWEN2, NULL}},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva",
     {"\\p{N}", RX_GPT2, NULL}},
    {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RX_GPT2, "[0-9][0-9][0-9]", NULL}},
    {"deepseek-coder", {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RX_CJK, "\\p{N}", NULL}},
    /* DeepSeek LLM: its letter class is, up to a few code points, the cased
     * letters (Lu, Ll, Lt); its punctuation class ASCII and full-width
     * punctuation, quotes and ideographic space/comma/stop. */
    {"deepseek-llm",
     {"[\\r\\n]", "\\s?[\\p{Lu}\\p{Ll}\\p{Lt}]+",
      "\\s?[!-/:-~\\x{ff01}-\\x{ff0f}\\x{ff1a}-\\x{ff5e}\\x{2018}-\\x{201f}\\x{3000}-\\x{3002}]+",
      "\\s+$", RX_CJK, "\\p{N}+"}},
    {"gpt-4o|minimax-m2", {RX_GPT4O, NULL}},
    {"tekken", {RX_TEKKEN, NULL}},
};

/* 1 if name (n bytes) is one of the '|'-separated names. */
static int tok_name_in(const char *names, const char *name, size_t n) {
    for (const char *p = names;;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && memcmp(p, name, n) == 0) return 1;
        if (!bar) return 0;
        p = bar + 1;
    }
}

static int tok_compile(lyra_tokenizer *t, const tok_pre *pre, const char *where, lyra_error *err) {
    for (int i = 0; i < TOK_MAX_REGEX && pre->rx[i]; i++) {
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *c = pcre2_compile((PCRE2_SPTR)pre->rx[i], PCRE2_ZERO_TERMINATED,
                                      PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF |
                                          PCRE2_DOLLAR_ENDONLY,
                                      &ec, &eo, NULL);
        if (!c) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return lyra_err(err, LYRA_ERR_RUNTIME, where, "pre-tokenizer '%s': regex %d at %zu: %s", t->pre, i,
                            (size_t)eo, (const char *)msg);
        }
        pcre2_jit_compile(c, PCRE2_JIT_COMPLETE); /* the interpreter is used if this fails */
        t->regex[t->n_regex++] = c;
    }
    return LYRA_OK;
}

void lyra_tokint_bpe_free(lyra_tokenizer *t) {
    for (int i = 0; i < t->n_regex; i++) pcre2_code_free((pcre2_code *)t->regex[i]);
    t->n_regex = 0;
}

/* ------------------------------------------------------------ merges */

static uint32_t tok_merge_slot(uint64_t key, uint32_t mask) {
    uint64_t h = key * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(h >> 32) & mask;
}

static const tok_merge *tok_merge_find(const lyra_tokenizer *t, int32_t l, int32_t r) {
    if (!t->merge_cap) return NULL;
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    uint32_t mask = t->merge_cap - 1;
    for (uint32_t s = tok_merge_slot(key, mask);; s = (s + 1) & mask) {
        const tok_merge *m = &t->merges[s];
        if (m->key == ~0ull) return NULL;
        if (m->key == key) return m;
    }
}

static int tok_load_merges(lyra_tokenizer *t, const lyra_gguf *g, const char *where, lyra_error *err) {
    const char *key = "tokenizer.ggml.merges";
    lyra_gguf_vtype et;
    uint64_t n;
    if (!lyra_gguf_get_arr(g, key, &et, &n))
        return lyra_err(err, LYRA_ERR_INPUT, where, "%s: missing (a gpt2 tokenizer needs merges)", key);
    if (et != LYRA_GGUF_STRING)
        return lyra_err(err, LYRA_ERR_INPUT, where, "%s: array of %s, expected strings", key,
                        lyra_gguf_vtype_name(et));
    if (n > (uint64_t)INT32_MAX / 4)
        return lyra_err(err, LYRA_ERR_INPUT, where, "%s: %llu merges is too many", key, (unsigned long long)n);
    uint32_t cap = 16;
    while (cap < n * 2) cap *= 2;
    t->merges = malloc((size_t)cap * sizeof *t->merges);
    if (!t->merges) return lyra_err(err, LYRA_ERR_OOM, where, "out of memory reading %s", key);
    memset(t->merges, 0xff, (size_t)cap * sizeof *t->merges);
    t->merge_cap = cap;
    char *buf = NULL;
    size_t buf_cap = 0;
    int rc = LYRA_OK;
    for (uint64_t i = 0; i < n; i++) {
        lyra_gguf_str s = lyra_gguf_arr_str(g, key, i);
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', (size_t)s.len - 1) : NULL;
        if (!sp) {
            rc = lyra_err(err, LYRA_ERR_INPUT, where, "%s[%llu]: '%.*s' is not two pieces separated by a space", key,
                          (unsigned long long)i, (int)(s.len > 64 ? 64 : s.len), s.ptr ? s.ptr : "");
            break;
        }
        size_t la = (size_t)(sp - s.ptr), lb = (size_t)s.len - la - 1;
        if (la + lb > buf_cap) {
            buf_cap = (la + lb) * 2;
            char *nb = realloc(buf, buf_cap);
            if (!nb) { rc = LYRA_ERR_OOM; break; }
            buf = nb;
        }
        memcpy(buf, s.ptr, la);
        memcpy(buf + la, sp + 1, lb);
        int32_t a = lyra_tokint_intern(t, s.ptr, la);
        int32_t b = lyra_tokint_intern(t, sp + 1, lb);
        int32_t ab = lyra_tokint_intern(t, buf, la + lb);
        if (a < 0 || b < 0 || ab < 0) { rc = LYRA_ERR_OOM; break; }
        uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
        uint32_t mask = cap - 1;
        for (uint32_t sl = tok_merge_slot(k, mask);; sl = (sl + 1) & mask) {
            tok_merge *m = &t->merges[sl];
            if (m->key == k) break; /* a repeated merge keeps its first rank */
            if (m->key == ~0ull) { *m = (tok_merge){k, (int32_t)i, ab}; break; }
        }
    }
    free(buf);
    if (rc == LYRA_ERR_OOM) return lyra_err(err, LYRA_ERR_OOM, where, "out of memory reading %s", key);
    return rc;
}

/* tokenizer.lyra.pre_regex (from a tokenizer.json): its patterns as a
 * pre-tokenizer, into *pre (patterns copied to bufs). 1 when present. */
static int tok_pre_from_meta(const lyra_gguf *g, tok_pre *pre, char **bufs, const char *where,
                             lyra_error *err, int *rc) {
    const char *key = "tokenizer.lyra.pre_regex";
    lyra_gguf_vtype et;
    uint64_t n;
    *rc = LYRA_OK;
    if (!lyra_gguf_get_arr(g, key, &et, &n)) return 0;
    if ((et != LYRA_GGUF_STRING && n) || n > TOK_MAX_REGEX) {
        *rc = lyra_err(err, LYRA_ERR_INPUT, where, "%s: expected at most %d strings", key, TOK_MAX_REGEX);
        return 1;
    }
    memset(pre, 0, sizeof *pre);
    pre->names = "";
    for (uint64_t i = 0; i < n; i++) {
        lyra_gguf_str s = lyra_gguf_arr_str(g, key, i);
        bufs[i] = malloc((size_t)s.len + 1);
        if (!bufs[i]) { *rc = lyra_err(err, LYRA_ERR_OOM, where, "out of memory"); return 1; }
        if (s.len) memcpy(bufs[i], s.ptr, (size_t)s.len);
        bufs[i][s.len] = 0;
        pre->rx[i] = bufs[i];
    }
    return 1;
}

int lyra_tokint_bpe_init(lyra_tokenizer *t, const lyra_gguf *g, const char *where, lyra_error *err) {
    lyra_gguf_str ps;
    const char *pre = "default";
    size_t pn = 7;
    if (lyra_gguf_get_str(g, "tokenizer.ggml.pre", &ps)) { pre = ps.ptr; pn = (size_t)ps.len; }
    snprintf(t->pre, sizeof t->pre, "%.*s", (int)(pn < sizeof t->pre ? pn : sizeof t->pre - 1), pre);
    tok_pre own;
    char *bufs[TOK_MAX_REGEX] = {0};
    int rc;
    if (tok_pre_from_meta(g, &own, bufs, where, err, &rc)) {
        if (!rc) rc = tok_compile(t, &own, where, err);
        for (int i = 0; i < TOK_MAX_REGEX; i++) free(bufs[i]);
        if (rc) return rc;
    } else {
        const tok_pre *found = NULL;
        for (size_t i = 0; i < sizeof tok_pres / sizeof tok_pres[0] && !found; i++)
            if (tok_name_in(tok_pres[i].names, pre, pn)) found = &tok_pres[i];
        if (!found)
            return lyra_err(err, LYRA_ERR_INPUT, where, "tokenizer.ggml.pre: unknown pre-tokenizer '%.*s'",
                            (int)(pn > 64 ? 64 : pn), pre);
        rc = tok_compile(t, found, where, err);
        if (rc) return rc;
    }
    rc = tok_load_merges(t, g, where, err);
    if (rc) return rc;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = lyra_tokint_bpe_byte_to_cp((uint8_t)b);
        char s[2];
        size_t n;
        if (cp < 0x80) { s[0] = (char)cp; n = 1; }
        else { s[0] = (char)(0xc0 | (cp >> 6)); s[1] = (char)(0x80 | (cp & 0x3f)); n = 2; }
        t->byte_sym[b] = lyra_tokint_find(t, s, n);
    }
    return LYRA_OK;
}

/* ------------------------------------------------------------ encoding */

/* A piece of the text: bytes [off, off + len). */
typedef struct bpe_span {
    size_t off, len;
} bpe_span;

typedef struct bpe_spans {
    bpe_span *v;  /* [cap] */
    size_t n;     /* used */
    size_t cap;   /* allocated */
} bpe_spans;

static int bpe_span_push(bpe_spans *s, size_t off, size_t len) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        bpe_span *v = realloc(s->v, cap * sizeof *v);
        if (!v) return LYRA_ERR_OOM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (bpe_span){off, len};
    return LYRA_OK;
}

/* Split span sp of text by regex re into out (matches and gaps). */
static int bpe_split(const pcre2_code *re, pcre2_match_data *md, const char *text, bpe_span sp,
                     bpe_spans *out, lyra_error *err) {
    PCRE2_SPTR subj = (PCRE2_SPTR)(text + sp.off);
    size_t n = sp.len, pos = 0, gap = 0;
    while (pos < n) {
        int rc = pcre2_match(re, subj, n, pos, 0, md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(re, subj, n, pos, PCRE2_NO_JIT, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return lyra_err(err, LYRA_ERR_RUNTIME, "tokenize", "pre-tokenizer regex failed at byte %zu: %s",
                            sp.off + pos, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t s = ov[0], e = ov[1];
        if (e <= s) { /* empty match: step over one character */
            size_t step = tok_utf8_len(subj[s]);
            pos = s + (step > n - s ? n - s : step);
            if (pos <= s) pos = s + 1;
            continue;
        }
        if (s > gap && bpe_span_push(out, sp.off + gap, s - gap)) return LYRA_ERR_OOM;
        if (bpe_span_push(out, sp.off + s, e - s)) return LYRA_ERR_OOM;
        gap = pos = e;
    }
    if (gap < n && bpe_span_push(out, sp.off + gap, n - gap)) return LYRA_ERR_OOM;
    return LYRA_OK;
}

/* One symbol of a word: a run of its bytes, in a linked list. */
typedef struct bpe_sym {
    int32_t prev, next; /* neighbours (-1: none) */
    int32_t id;         /* string id of its bytes' mapped text (-1: unknown) */
    uint32_t off, n;    /* bytes of the word; n = 0 once merged away */
} bpe_sym;

/* A candidate merge. */
typedef struct bpe_pair {
    int32_t rank;        /* merge rank (lower first) */
    int32_t left, right; /* symbols */
    int32_t lid, rid;    /* their string ids when queued (stale check) */
    int32_t result;      /* string id of the merged symbol */
} bpe_pair;

/* The merge queue's order: lower rank first, then smaller left. */
static int bpe_before(const void *pa, const void *pb) {
    const bpe_pair *a = pa, *b = pb;
    if (a->rank != b->rank) return a->rank < b->rank;
    return a->left < b->left;
}

static int bpe_try_pair(const lyra_tokenizer *t, const bpe_sym *sym, int32_t l, int32_t r, lyra_heap *h) {
    if (l < 0 || r < 0 || sym[l].id < 0 || sym[r].id < 0) return LYRA_OK;
    const tok_merge *m = tok_merge_find(t, sym[l].id, sym[r].id);
    if (!m) return LYRA_OK;
    bpe_pair p = {m->rank, l, r, sym[l].id, sym[r].id, m->result};
    return lyra_heap_push(h, &p, sizeof p, bpe_before);
}

/* Merge the bytes w[0..n) of one pre-tokenized piece and emit its tokens.
 * sym: scratch of at least n entries. */
static int bpe_word(const lyra_tokenizer *t, const uint8_t *w, size_t n, bpe_sym *sym,
                    lyra_heap *h, tok_vec *out) {
    int32_t ns = (int32_t)n;
    for (int32_t i = 0; i < ns; i++)
        sym[i] = (bpe_sym){i - 1, i + 1 < ns ? i + 1 : -1, t->byte_sym[w[i]], (uint32_t)i, 1};
    h->n = 0;
    for (int32_t i = 1; i < ns; i++)
        if (bpe_try_pair(t, sym, i - 1, i, h)) return LYRA_ERR_OOM;
    while (h->n) {
        bpe_pair p;
        lyra_heap_pop(h, &p, sizeof p, bpe_before);
        bpe_sym *l = &sym[p.left], *r = &sym[p.right];
        if (l->n == 0 || r->n == 0 || l->id != p.lid || r->id != p.rid || l->next != p.right)
            continue; /* stale */
        l->n += r->n;
        l->id = p.result;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = p.left;
        if (bpe_try_pair(t, sym, l->prev, p.left, h) || bpe_try_pair(t, sym, p.left, l->next, h))
            return LYRA_ERR_OOM;
    }
    for (int32_t i = ns ? 0 : -1; i >= 0; i = sym[i].next) {
        if (sym[i].id >= 0 && sym[i].id < t->n_vocab) {
            if (lyra_tokint_push(out, sym[i].id)) return LYRA_ERR_OOM;
            continue;
        }
        for (uint32_t j = 0; j < sym[i].n; j++) { /* not a token: byte by byte */
            int32_t id = t->byte_sym[w[sym[i].off + j]];
            if (id < 0 || id >= t->n_vocab) id = t->unk;
            if (id >= 0 && lyra_tokint_push(out, id)) return LYRA_ERR_OOM;
        }
    }
    return LYRA_OK;
}

/* ByteLevel(add_prefix_space): a copy of text with ' ' put before every span
 * of a that does not start with one; a's spans are moved onto the copy. */
static char *bpe_prefix(const char *text, bpe_spans *a) {
    size_t tot = 0;
    for (size_t i = 0; i < a->n; i++) tot += a->v[i].len + 1;
    char *nt = malloc(tot ? tot : 1);
    if (!nt) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < a->n; i++) {
        bpe_span sp = a->v[i];
        size_t at = k;
        if (!sp.len || text[sp.off] != ' ') nt[k++] = ' ';
        memcpy(nt + k, text + sp.off, sp.len);
        k += sp.len;
        a->v[i] = (bpe_span){at, k - at};
    }
    return nt;
}

/* Pre-tokenize text into spans *out (malloc'd, caller frees). With
 * add_prefix_space the spans are of a new text, *owned (caller frees; else
 * NULL), which *textp then points to. */
static int bpe_pretok(const lyra_tokenizer *t, const char **textp, size_t len, bpe_spans *out,
                      char **owned, lyra_error *err) {
    bpe_spans a = {0}, b = {0};
    pcre2_match_data *md = NULL;
    int rc = LYRA_OK;
    *owned = NULL;
    if (bpe_span_push(&a, 0, len)) goto oom;
    for (int r = 0; r <= t->n_regex; r++) {
        if (t->bpe_prefix_step == r + 1 && len) {
            char *nt = bpe_prefix(*textp, &a);
            if (!nt) goto oom;
            free(*owned);
            *owned = nt;
            *textp = nt;
        }
        if (r == t->n_regex) break;
        const pcre2_code *re = t->regex[r];
        pcre2_match_data_free(md);
        md = pcre2_match_data_create_from_pattern(re, NULL);
        if (!md) goto oom;
        b.n = 0;
        for (size_t i = 0; i < a.n; i++) {
            rc = bpe_split(re, md, *textp, a.v[i], &b, err);
            if (rc == LYRA_ERR_OOM) goto oom;
            if (rc) goto done;
        }
        bpe_spans tmp = a; a = b; b = tmp;
    }
    goto done;
oom:
    rc = lyra_err(err, LYRA_ERR_OOM, "tokenize", "out of memory");
done:
    pcre2_match_data_free(md);
    free(b.v);
    if (rc) { free(a.v); a = (bpe_spans){0}; free(*owned); *owned = NULL; }
    *out = a;
    return rc;
}

int lyra_tokint_bpe_pretok(const lyra_tokenizer *t, const char *text, size_t len, size_t **spans,
                           size_t *n, lyra_error *err) {
    bpe_spans a;
    char *owned;
    *spans = NULL;
    *n = 0;
    int rc = bpe_pretok(t, &text, len, &a, &owned, err);
    if (rc) return rc;
    free(owned); /* offsets are then into the prefixed text */
    size_t *v = malloc((a.n ? a.n : 1) * 2 * sizeof *v);
    if (!v) { free(a.v); return lyra_err(err, LYRA_ERR_OOM, "tokenize", "out of memory"); }
    for (size_t i = 0; i < a.n; i++) { v[2 * i] = a.v[i].off; v[2 * i + 1] = a.v[i].len; }
    *spans = v;
    *n = a.n;
    free(a.v);
    return LYRA_OK;
}

int lyra_tokint_bpe_encode(const lyra_tokenizer *t, const char *text, size_t len, tok_vec *out,
                           lyra_error *err) {
    if (len > (size_t)INT32_MAX)
        return lyra_err(err, LYRA_ERR_INPUT, "tokenize", "text of %zu bytes is too long", len);
    bpe_spans a = {0};
    lyra_heap h = {0};
    bpe_sym *sym = NULL;
    char *owned = NULL;
    int rc = bpe_pretok(t, &text, len, &a, &owned, err);
    if (rc) return rc;
    size_t max = 0;
    for (size_t i = 0; i < a.n; i++)
        if (a.v[i].len > max) max = a.v[i].len;
    sym = malloc((max ? max : 1) * sizeof *sym);
    if (!sym) goto oom;
    for (size_t i = 0; i < a.n; i++)
        if (bpe_word(t, (const uint8_t *)text + a.v[i].off, a.v[i].len, sym, &h, out)) goto oom;
    goto done;
oom:
    rc = lyra_err(err, LYRA_ERR_OOM, "tokenize", "out of memory");
done:
    free(owned);
    free(sym);
    lyra_heap_free(&h);
    free(a.v);
    return rc;
}
