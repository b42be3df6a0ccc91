/* test_utf8.c: the streaming detokenizer (lyra_detok_*, include/lyra.h)
 * gives valid UTF-8 only. stories260K spells bytes with byte tokens <0xNN>;
 * feeding them one by one: characters split over tokens pass through
 * unchanged (held back until complete), ill-formed bytes (a lone
 * continuation byte, overlong and surrogate forms, a sequence cut short in
 * the middle or at the end) become U+FFFD, one per maximal invalid subpart
 * (the same as Python's bytes.decode("utf-8", "replace")), while
 * lyra_token_to_piece still gives the raw byte. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lyra.h"
#include "testutil.h"

#define FFFD "\xef\xbf\xbd"

static lyra_model *g_m;
static int32_t g_byte[256]; /* id of <0xNN> */

/* Valid, complete UTF-8 (no overlong, surrogate or > U+10FFFF forms)? */
static int utf8_valid(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i], need, lo = 0x80, hi = 0xbf;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xc2 && c <= 0xdf) need = 2;
        else if (c >= 0xe0 && c <= 0xef) need = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        else if (c >= 0xf0 && c <= 0xf4) need = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        else return 0;
        if (i + need > n) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (unsigned j = 2; j < need; j++)
            if (s[i + j] < 0x80 || s[i + j] > 0xbf) return 0;
        i += need;
    }
    return 1;
}

/* Feed in[0..n) as byte tokens, one token each, then flush with a buffer of
 * cap bytes; returns the text (static). *chunks_ok: every chunk was valid;
 * *held: feeds that returned nothing. */
static const char *run(const char *in, size_t n, size_t cap, int *chunks_ok, int *held) {
    static char out[4096];
    char buf[64];
    size_t k = 0;
    lyra_detok *d = lyra_detok_new(g_m);
    *chunks_ok = 1;
    *held = 0;
    if (!d) return "";
    for (size_t i = 0; i < n; i++) {
        size_t m = lyra_detok_feed(d, g_byte[(unsigned char)in[i]], buf, cap);
        if (!utf8_valid((const unsigned char *)buf, m)) *chunks_ok = 0;
        if (m == 0) (*held)++;
        memcpy(out + k, buf, m);
        k += m;
    }
    size_t m;
    while ((m = lyra_detok_flush(d, buf, cap)) > 0) {
        if (cap >= 4 && !utf8_valid((const unsigned char *)buf, m)) *chunks_ok = 0;
        memcpy(out + k, buf, m);
        k += m;
    }
    out[k] = '\0';
    lyra_detok_free(d);
    return out;
}

static void expect(const char *name, const char *in, const char *want, int want_held) {
    int ok, held;
    const char *got = run(in, strlen(in), 64, &ok, &held);
    CHECK(strcmp(got, want) == 0, "%s: got '%s', want '%s'", name, got, want);
    CHECK(ok, "%s: every chunk is valid UTF-8", name);
    CHECK(utf8_valid((const unsigned char *)got, strlen(got)), "%s: the text is valid UTF-8", name);
    if (want_held >= 0) CHECK(held == want_held, "%s: %d feeds held back, want %d", name, held, want_held);
    /* a tiny buffer: the same text, in smaller pieces */
    got = run(in, strlen(in), 4, &ok, &held);
    CHECK(strcmp(got, want) == 0, "%s (cap 4): got '%s', want '%s'", name, got, want);
    CHECK(ok, "%s (cap 4): every chunk is valid UTF-8", name);
}

int main(void) {
    const char *path = test_shared_path("models/stories260K.gguf");
    lyra_error err = {0};
    if (lyra_model_open(path, NULL, &g_m, &err)) {
        fprintf(stderr, "open %s: %s\n", path, err.msg);
        return 1;
    }
    int have = 1;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        g_byte[b] = lyra_token_find(g_m, name, strlen(name));
        if (g_byte[b] < 0) have = 0;
    }
    CHECK(have, "stories260K has the 256 byte tokens");
    if (!have) {
        lyra_model_free(g_m);
        return test_done();
    }

    /* valid characters split over tokens: unchanged, held until complete */
    expect("check mark and emoji", "\xe2\x9c\x93\xf0\x9f\x98\x80", "\xe2\x9c\x93\xf0\x9f\x98\x80", 5);
    expect("ascii and 2-byte", "caf\xc3\xa9!", "caf\xc3\xa9!", 1);
    /* ill-formed: U+FFFD where Python's errors="replace" puts it */
    expect("lone continuation byte", "a\x80" "b", "a" FFFD "b", 0);
    expect("truncated 3-byte at the end", "x\xe2\x9c", "x" FFFD, 2);
    expect("truncated 3-byte in the middle", "\xe2\x9c" "A", FFFD "A", 2);
    expect("truncated 4-byte", "\xf0\x9f\x98z", FFFD "z", 3);
    expect("overlong 2-byte", "\xc0\xaf", FFFD FFFD, 0);
    expect("overlong 3-byte", "\xe0\x80\xaf", FFFD FFFD FFFD, 1);
    expect("surrogate", "\xed\xa0\x80", FFFD FFFD FFFD, 1);
    expect("above U+10FFFF", "\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD, 1);
    expect("0xFF", "\xff", FFFD, 0);
    expect("invalid between valid", "\xc3\xa9\x80\xe2\x9c\x93", "\xc3\xa9" FFFD "\xe2\x9c\x93", 3);

    /* the raw byte stays available */
    char piece[8];
    size_t n = lyra_token_to_piece(g_m, g_byte[0x80], 0, piece, sizeof piece);
    CHECK(n == 1 && (unsigned char)piece[0] == 0x80, "lyra_token_to_piece(<0x80>) is the raw byte (%zu)", n);

    lyra_model_free(g_m);
    return test_done();
}
