/* tok_spm.c: the SentencePiece-style encoder ("llama" vocabularies).
 *
 * The text (spaces replaced by U+2581, a U+2581 prepended when asked) is split
 * into UTF-8 characters; then, repeatedly, the adjacent pair whose
 * concatenation is the vocabulary piece with the highest score is merged
 * (leftmost pair on ties), until no adjacent pair forms a piece. Pieces are
 * looked up among normal, user-defined, unused and undefined tokens only
 * (SentencePiece never produces control, unknown or byte tokens by merging).
 * A final symbol missing from the vocabulary (a single character) becomes its
 * bytes' <0xNN> tokens, or one <unk> when some byte has no token. Text that
 * is not valid UTF-8 is split into its valid characters and single bytes
 * (llama.cpp would take the length from each lead byte alone). */
#include "token/tok_internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/heap.h"

/* One symbol: a run of bytes of the escaped text, in a linked list. */
typedef struct spm_sym {
    int32_t prev, next; /* neighbours (-1: none) */
    uint32_t off;       /* first byte in the escaped text */
    uint32_t n;         /* bytes; 0 once merged into its left neighbour */
} spm_sym;

/* A candidate merge of symbols left and right. */
typedef struct spm_pair {
    float score;    /* score of the merged piece */
    int32_t left;   /* left symbol */
    int32_t right;  /* right symbol */
    uint32_t size;  /* bytes of the merged piece (stale check) */
} spm_pair;

/* The merge queue's order: higher score first, then smaller left. */
static int spm_before(const void *pa, const void *pb) {
    const spm_pair *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score;
    return a->left < b->left;
}

/* Token of s[0..n) usable as a merged piece, or -1. */
static int32_t spm_piece(const lyra_tokenizer *t, const char *s, size_t n) {
    int32_t id = lyra_tokint_find(t, s, n);
    if (id < 0 || id >= t->n_vocab) return -1;
    uint8_t ty = t->types[id];
    if (ty == TOK_UNKNOWN || ty == TOK_CONTROL || ty == TOK_BYTE) return -1;
    return id;
}

static int spm_try_pair(const lyra_tokenizer *t, const char *esc, const spm_sym *sym,
                        int32_t l, int32_t r, lyra_heap *h) {
    if (l < 0 || r < 0) return LYRA_OK;
    uint32_t size = sym[l].n + sym[r].n;
    int32_t id = spm_piece(t, esc + sym[l].off, size);
    if (id < 0) return LYRA_OK;
    spm_pair p = {t->scores[id], l, r, size};
    return lyra_heap_push(h, &p, sizeof p, spm_before);
}

/* Output one final symbol: its token, or byte tokens, or <unk>. */
static int spm_emit(const lyra_tokenizer *t, const char *s, size_t n, tok_vec *out) {
    int32_t id = spm_piece(t, s, n);
    if (id >= 0) return lyra_tokint_push(out, id);
    int all = 1;
    for (size_t i = 0; i < n; i++)
        if (t->byte_tok[(uint8_t)s[i]] < 0) all = 0;
    if (all) {
        for (size_t i = 0; i < n; i++)
            if (lyra_tokint_push(out, t->byte_tok[(uint8_t)s[i]])) return LYRA_ERR_OOM;
        return LYRA_OK;
    }
    return t->unk >= 0 ? lyra_tokint_push(out, t->unk) : LYRA_OK;
}

/* 1 if s[0..n) is U+2581. */
static int spm_is_space(const char *s, uint32_t n) {
    return n == 3 && memcmp(s, "\xe2\x96\x81", 3) == 0;
}

/* Merge the symbols [a, b) (one word) and emit their tokens. */
static int spm_segment(const lyra_tokenizer *t, const char *esc, spm_sym *sym, int32_t a,
                       int32_t b, lyra_heap *h, tok_vec *out) {
    for (int32_t i = a; i < b; i++) {
        sym[i].prev = i > a ? i - 1 : -1;
        sym[i].next = i + 1 < b ? i + 1 : -1;
    }
    h->n = 0;
    for (int32_t i = a + 1; i < b; i++)
        if (spm_try_pair(t, esc, sym, i - 1, i, h)) return LYRA_ERR_OOM;
    while (h->n) {
        spm_pair p;
        lyra_heap_pop(h, &p, sizeof p, spm_before);
        spm_sym *l = &sym[p.left], *r = &sym[p.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = p.left;
        if (spm_try_pair(t, esc, sym, l->prev, p.left, h) ||
            spm_try_pair(t, esc, sym, p.left, l->next, h))
            return LYRA_ERR_OOM;
    }
    for (int32_t i = a < b ? a : -1; i >= 0; i = sym[i].next)
        if (spm_emit(t, esc + sym[i].off, sym[i].n, out)) return LYRA_ERR_OOM;
    return LYRA_OK;
}

int lyra_tokint_spm_encode(const lyra_tokenizer *t, const char *text, size_t len, int prefix,
                   tok_vec *out, lyra_error *err) {
    if (len > (size_t)(INT32_MAX / 4))
        return lyra_err(err, LYRA_ERR_INPUT, "tokenize", "text of %zu bytes is too long (limit %d)", len,
                        INT32_MAX / 4);
    /* escaped text: [3 * len + 3] at most */
    char *esc = malloc(3 * len + 3);
    spm_sym *sym = malloc((len + 1) * sizeof *sym); /* one per character at most */
    lyra_heap h = {0};
    int rc = LYRA_OK;
    if (!esc || !sym) goto oom;
    size_t k = 0;
    if (prefix) { memcpy(esc, "\xe2\x96\x81", 3); k = 3; }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') { memcpy(esc + k, "\xe2\x96\x81", 3); k += 3; }
        else esc[k++] = text[i];
    }
    /* characters; each invalid UTF-8 byte is a character of its own */
    int32_t ns = 0;
    for (size_t i = 0; i < k;) {
        size_t n = tok_utf8_char(esc + i, k - i);
        sym[ns++] = (spm_sym){-1, -1, (uint32_t)i, (uint32_t)n};
        i += n;
    }
    /* When no piece has U+2581 after another character, no merge crosses
     * the start of a space run: such words are merged one at a time (same
     * result, a small heap). */
    int32_t a = 0;
    for (int32_t i = 1; i < ns && t->spm_split_words; i++) {
        if (spm_is_space(esc + sym[i].off, sym[i].n) && !spm_is_space(esc + sym[i - 1].off, sym[i - 1].n)) {
            if (spm_segment(t, esc, sym, a, i, &h, out)) goto oom;
            a = i;
        }
    }
    if (spm_segment(t, esc, sym, a, ns, &h, out)) goto oom;
    goto done;
oom:
    rc = lyra_err(err, LYRA_ERR_OOM, "tokenize", "out of memory");
done:
    lyra_heap_free(&h);
    free(sym);
    free(esc);
    return rc;
}
