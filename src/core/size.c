/* size.c: parsing and formatting memory sizes (see size.h). All arithmetic is
 * on integers so "0.1GB" is exactly 100000000 bytes and every input has one
 * answer on every machine. */
#include "size.h"

#include <stdio.h>
#include <string.h>

/* Longest value quoted in a message. */
#define QUOTE_MAX 48

const char *lyra_size_quote(const char *s, size_t len, char *buf, size_t cap) {
    size_t o = 0;
    if (!cap) return buf;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[8];
        if (i == QUOTE_MAX) {
            snprintf(tmp, sizeof tmp, "...");
        } else if (c == '"' || c == '\\') {
            snprintf(tmp, sizeof tmp, "\\%c", c);
        } else if (c >= 0x20 && c < 0x7f) {
            tmp[0] = (char)c;
            tmp[1] = '\0';
        } else {
            snprintf(tmp, sizeof tmp, "\\x%02x", c);
        }
        size_t k = strlen(tmp);
        if (o + k >= cap) break;
        memcpy(buf + o, tmp, k);
        o += k;
        if (i == QUOTE_MAX) break;
    }
    buf[o] = '\0';
    return buf;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_space(char c) { return c == ' ' || c == '\t'; }
static char upper(char c) { return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c; }

/* Multiplier of prefix letter p (uppercase) in base 1000 or 1024; 0 if unknown. */
static uint64_t prefix_mult(char p, int binary) {
    static const char letters[] = "KMGT";
    const char *q = strchr(letters, p);
    if (!p || !q) return 0;
    int e = (int)(q - letters) + 1;
    uint64_t m = 1;
    for (int i = 0; i < e; i++) m *= binary ? 1024 : 1000;
    return m;
}

/* floor(0.f1 f2 ... fk * mult) exactly: Horner from the last digit,
 * w = floor((f_j * mult + w) / 10), using floor((a + floor(b)) / 10) =
 * floor((a + b) / 10) for integer a. w < mult throughout, so no overflow for
 * mult <= 2^40. */
static uint64_t frac_times(const char *f, size_t k, uint64_t mult) {
    uint64_t w = 0;
    for (size_t j = k; j-- > 0;) w = ((uint64_t)(f[j] - '0') * mult + w) / 10;
    return w;
}

int lyra_size_parse_n(const char *s, size_t len, const char *where, uint64_t *out,
                      lyra_error *err) {
    char q[QUOTE_MAX * 4 + 8];
    *out = 0;
    lyra_size_quote(s, len, q, sizeof q);
    if (memchr(s, '\0', len))
        return lyra_err(err, LYRA_ERR_INPUT, where, "bad size \"%s\": contains a NUL byte", q);
    size_t a = 0, b = len;
    while (a < b && is_space(s[a])) a++;
    while (b > a && is_space(s[b - 1])) b--;
    if (a == b)
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "bad size \"%s\": empty (write a number and a unit, e.g. 6GiB or 6GB)", q);
    /* number: digits [. digits] */
    size_t i = a;
    uint64_t ip = 0;
    int overflow = 0;
    while (i < b && is_digit(s[i])) {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (ip > (UINT64_MAX - d) / 10) overflow = 1;
        else ip = ip * 10 + d;
        i++;
    }
    if (i == a)
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "bad size \"%s\": expected a number of bytes and a unit (e.g. 6GiB or 6GB)",
                        q);
    const char *frac = NULL;
    size_t nfrac = 0;
    if (i < b && s[i] == '.') {
        i++;
        frac = s + i;
        while (i < b && is_digit(s[i])) i++;
        nfrac = (size_t)(s + i - frac);
        if (!nfrac)
            return lyra_err(err, LYRA_ERR_INPUT, where,
                            "bad size \"%s\": expected digits after the decimal point", q);
    }
    size_t num_end = i;
    char num[64];
    snprintf(num, sizeof num, "%.*s", (int)(num_end - a < 40 ? num_end - a : 40), s + a);
    while (i < b && is_space(s[i])) i++;
    const char *u = s + i;
    size_t ul = b - i;
    if (!ul)
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "bad size \"%s\": no unit (write %sB, %sGB or %sGiB; B, KB, MB, GB, TB "
                        "are powers of 10, KiB, MiB, GiB, TiB powers of 2)",
                        q, num, num, num);
    /* unit: [K|M|G|T] [i] B, the final b uppercase */
    char p = ul >= 2 ? upper(u[0]) : 0;
    int binary = ul == 3 && upper(u[1]) == 'I';
    uint64_t mult = 0;
    int unit_ok = 0;
    if (ul == 1 && upper(u[0]) == 'B') {
        mult = 1;
        unit_ok = 1;
    } else if ((ul == 2 || binary) && prefix_mult(p, binary)) {
        mult = prefix_mult(p, binary);
        unit_ok = upper(u[ul - 1]) == 'B';
    }
    if (unit_ok && u[ul - 1] == 'b') { /* bits */
        if (ul == 1)
            return lyra_err(err, LYRA_ERR_INPUT, where,
                            "bad size \"%s\": lowercase b means bits; bits? write %sB for bytes", q,
                            num);
        if (binary)
            return lyra_err(err, LYRA_ERR_INPUT, where,
                            "bad size \"%s\": lowercase b means bits; bits? write %s%ciB", q, num, p);
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "bad size \"%s\": lowercase b means bits; bits? write %s%cB or %s%ciB", q,
                        num, p, num, p);
    }
    if (!unit_ok) {
        char uq[QUOTE_MAX * 4 + 8];
        lyra_size_quote(u, ul, uq, sizeof uq);
        if (ul == 1 && prefix_mult(upper(u[0]), 0))
            return lyra_err(err, LYRA_ERR_INPUT, where,
                            "bad size \"%s\": unit \"%s\" is ambiguous; write %s%cB or %s%ciB", q,
                            uq, num, upper(u[0]), num, upper(u[0]));
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "bad size \"%s\": unknown unit \"%s\" (B, KB, MB, GB, TB, KiB, MiB, GiB, "
                        "TiB)",
                        q, uq);
    }
    /* value = ip * mult + floor(0.frac * mult) */
    uint64_t f = frac ? frac_times(frac, nfrac, mult) : 0;
    if (overflow || (mult > 1 && ip > UINT64_MAX / mult) || ip * mult > UINT64_MAX - f)
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "bad size \"%s\": too large (more than %llu bytes)", q,
                        (unsigned long long)UINT64_MAX);
    *out = ip * mult + f;
    return LYRA_OK;
}

int lyra_size_parse(const char *s, const char *where, uint64_t *out, lyra_error *err) {
    if (!s) {
        *out = 0;
        return lyra_err(err, LYRA_ERR_INPUT, where, "missing size");
    }
    return lyra_size_parse_n(s, strlen(s), where, out, err);
}

int lyra_size_from_json(const json_t *v, const char *where, uint64_t *out, lyra_error *err) {
    *out = 0;
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n < 0)
            return lyra_err(err, LYRA_ERR_INPUT, where, "bad size %lld: negative", (long long)n);
        *out = (uint64_t)n;
        return LYRA_OK;
    }
    if (json_is_string(v))
        return lyra_size_parse_n(json_string_value(v), json_string_length(v), where, out, err);
    return lyra_err(err, LYRA_ERR_INPUT, where,
                    "bad size: expected a byte count (integer) or a string like \"6GiB\"");
}

size_t lyra_size_format(uint64_t n, char *buf, size_t cap) {
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int k;
    if (n < 1024) {
        k = snprintf(buf, cap, "%llu B", (unsigned long long)n);
        return k < 0 ? 0 : (size_t)k;
    }
    int u = 1;
    while (u < 6 && (n >> (10 * (u + 1))) != 0) u++;
    /* tenths = round(n * 10 / 2^(10u)), split so nothing overflows */
    unsigned sh = 10u * (unsigned)u;
    uint64_t q = n >> sh, r = n & (((uint64_t)1 << sh) - 1);
    uint64_t tenths = q * 10 + ((r * 10 + ((uint64_t)1 << (sh - 1))) >> sh);
    if (tenths >= 10240 && u < 6) { /* 1023.96 MiB -> 1.0 GiB */
        u++;
        sh += 10;
        q = n >> sh;
        r = n & (((uint64_t)1 << sh) - 1);
        tenths = q * 10 + ((r * 10 + ((uint64_t)1 << (sh - 1))) >> sh);
    }
    k = snprintf(buf, cap, "%llu.%llu %s", (unsigned long long)(tenths / 10),
                 (unsigned long long)(tenths % 10), unit[u]);
    return k < 0 ? 0 : (size_t)k;
}

/* lyra.h's lyra_format_bytes: lyra_size_format, except below 1 KiB, where
 * the public API always shows one decimal ("512.0 B"). */
size_t lyra_format_bytes(uint64_t n, char *buf, size_t cap) {
    if (n < 1024) { /* lyra.h: always one decimal ("512.0 B") */
        int k = snprintf(buf, cap, "%llu.0 B", (unsigned long long)n);
        return k < 0 ? 0 : (size_t)k;
    }
    return lyra_size_format(n, buf, cap); /* one formatter */
}
