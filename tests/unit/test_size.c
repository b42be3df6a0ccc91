/* test_size.c: the size parser and formatter (core/size.h): every unit, exact
 * fractions, the bits error, missing/unknown units, overflow, JSON values,
 * and the formatter's units and rounding. Expected values are written out by
 * hand (powers of 10 and 2), not computed by the code under test. */
#include <string.h>

#include "core/size.h"
#include "testutil.h"

typedef struct ok_case { const char *s; uint64_t want; } ok_case;
typedef struct bad_case { const char *s; const char *msg_has; } bad_case;

static const ok_case OK[] = {
    {"6GB", 6000000000ull},
    {"6GiB", 6442450944ull},
    {"6000MiB", 6291456000ull},
    {"1.5GiB", 1610612736ull},
    {"0.1GB", 100000000ull},
    {"0.3GB", 300000000ull},          /* 0.3 is not exact in binary floating point */
    {"0.7GiB", 751619276ull},         /* floor(0.7 * 2^30 = 751619276.8) */
    {"1.000000001GB", 1000000001ull},
    {"1.0000000001GB", 1000000000ull}, /* 0.1 byte rounds down */
    {"512B", 512},
    {"1.5B", 1},
    {"0B", 0},
    {"6gB", 6000000000ull},
    {"6GIB", 6442450944ull},
    {"6giB", 6442450944ull},
    {"1KB", 1000},
    {"1kB", 1000},
    {"1KiB", 1024},
    {"1MB", 1000000},
    {"1MiB", 1048576},
    {"1TB", 1000000000000ull},
    {"1TiB", 1099511627776ull},
    {"2.5TiB", 2748779069440ull},
    {"500KiB", 512000},
    {"64MiB", 67108864},
    {" 6 GiB ", 6442450944ull},
    {"007GB", 7000000000ull},
    {"18446744073709551615B", 18446744073709551615ull},
    {"16777215.999999TiB", 18446744073708452104ull}, /* (2^24 - 1e-6) TiB, floored */
    {"16777215.9999999999999999999999999999TiB", 18446744073709551615ull}, /* floors to 2^64-1 */
    {"0.000000000001TB", 1},
};

static const bad_case BAD[] = {
    {"6Gb", "bits? write 6GB or 6GiB"},
    {"6gb", "bits? write 6GB or 6GiB"},
    {"6kb", "bits? write 6KB or 6KiB"},
    {"1.5Mb", "bits? write 1.5MB or 1.5MiB"},
    {"6Gib", "bits? write 6GiB"},
    {"512b", "bits? write 512B"},
    {"6G", "ambiguous; write 6GB or 6GiB"},
    {"6", "no unit"},
    {"6XB", "unknown unit \"XB\""},
    {"6PB", "unknown unit"},
    {"6GBs", "unknown unit"},
    {"6 G B", "unknown unit"},
    {"", "empty"},
    {"   ", "empty"},
    {"GB", "expected a number"},
    {"-1GB", "expected a number"},
    {"+1GB", "expected a number"},
    {".5GB", "expected a number"},
    {"1.GB", "digits after the decimal point"},
    {"1e9B", "unknown unit"},
    {"0x10B", "unknown unit"},
    {"18446744073709551616B", "too large"},
    {"16777216TiB", "too large"},
    {"18446744073709551615KB", "too large"},
    {"99999999999999999999999GB", "too large"},
    {"18446744073709551615.5KiB", "too large"},
};

static void test_ok(void) {
    for (size_t i = 0; i < sizeof OK / sizeof OK[0]; i++) {
        uint64_t v = 12345;
        lyra_error err;
        lyra_err_clear(&err);
        int rc = lyra_size_parse(OK[i].s, "--max-memory", &v, &err);
        CHECK(rc == LYRA_OK, "\"%s\": rc %d (%s)", OK[i].s, rc, err.msg);
        CHECK(v == OK[i].want, "\"%s\" = %llu, want %llu", OK[i].s, (unsigned long long)v,
              (unsigned long long)OK[i].want);
    }
}

static void test_bad(void) {
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        uint64_t v = 1;
        lyra_error err;
        lyra_err_clear(&err);
        int rc = lyra_size_parse(BAD[i].s, "--max-memory", &v, &err);
        CHECK(rc == LYRA_ERR_INPUT, "\"%s\": rc %d, want %d", BAD[i].s, rc, LYRA_ERR_INPUT);
        CHECK(err.code == LYRA_ERR_INPUT && v == 0, "\"%s\": err.code %d v %llu", BAD[i].s,
              err.code, (unsigned long long)v);
        CHECK(strstr(err.msg, BAD[i].msg_has) != NULL, "\"%s\": message \"%s\" lacks \"%s\"",
              BAD[i].s, err.msg, BAD[i].msg_has);
        CHECK(!strncmp(err.msg, "--max-memory: bad size \"", 24), "\"%s\": message \"%s\"",
              BAD[i].s, err.msg);
        CHECK(strchr(err.msg, '\n') == NULL, "one line");
    }
    /* the value is named, with odd bytes escaped; long values are cut */
    lyra_error err;
    uint64_t v;
    CHECK(lyra_size_parse("6Gb", "LYRA_SIM_GPUS", &v, &err) == LYRA_ERR_INPUT &&
              !strcmp(err.msg, "LYRA_SIM_GPUS: bad size \"6Gb\": lowercase b means bits; bits? "
                               "write 6GB or 6GiB"),
          "exact message: %s", err.msg);
    CHECK(lyra_size_parse_n("6\nGB", 4, "x", &v, &err) == LYRA_ERR_INPUT &&
              strstr(err.msg, "\"6\\x0aGB\"") && !strchr(err.msg, '\n'),
          "escaped: %s", err.msg);
    CHECK(lyra_size_parse_n("6G\0B", 4, "x", &v, &err) == LYRA_ERR_INPUT &&
              strstr(err.msg, "NUL"),
          "NUL inside: %s", err.msg);
    char big[300];
    memset(big, '7', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK(lyra_size_parse(big, "x", &v, &err) == LYRA_ERR_INPUT && strstr(err.msg, "...\"") &&
              strlen(err.msg) < 300,
          "cut: %s", err.msg);
    /* parse_n honours the length */
    CHECK(lyra_size_parse_n("6GiBxyz", 4, "x", &v, &err) == LYRA_OK && v == 6442450944ull,
          "parse_n length");
}

static void test_json(void) {
    json_error_t je;
    struct { const char *json; int rc; uint64_t want; } cases[] = {
        {"6442450944", LYRA_OK, 6442450944ull},
        {"0", LYRA_OK, 0},
        {"9223372036854775807", LYRA_OK, 9223372036854775807ull},
        {"\"6GiB\"", LYRA_OK, 6442450944ull},
        {"\"1.5GiB\"", LYRA_OK, 1610612736ull},
        {"\"6Gb\"", LYRA_ERR_INPUT, 0},
        {"\"6\"", LYRA_ERR_INPUT, 0},
        {"-1", LYRA_ERR_INPUT, 0},
        {"6.5", LYRA_ERR_INPUT, 0},
        {"6e9", LYRA_ERR_INPUT, 0},
        {"true", LYRA_ERR_INPUT, 0},
        {"null", LYRA_ERR_INPUT, 0},
        {"[1]", LYRA_ERR_INPUT, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *j = json_loads(cases[i].json, JSON_DECODE_ANY, &je);
        CHECK(j != NULL, "json %s", cases[i].json);
        if (!j) continue;
        uint64_t v = 7;
        lyra_error err;
        lyra_err_clear(&err);
        int rc = lyra_size_from_json(j, "config.json: max_memory.0", &v, &err);
        CHECK(rc == cases[i].rc, "json %s: rc %d want %d (%s)", cases[i].json, rc, cases[i].rc,
              err.msg);
        CHECK(v == cases[i].want, "json %s: %llu", cases[i].json, (unsigned long long)v);
        if (rc)
            CHECK(!strncmp(err.msg, "config.json: max_memory.0: ", 27), "where: %s", err.msg);
        json_decref(j);
    }
}

static void test_format(void) {
    struct { uint64_t n; const char *want; } cases[] = {
        {0, "0 B"},
        {512, "512 B"},
        {1023, "1023 B"},
        {1024, "1.0 KiB"},
        {1536, "1.5 KiB"},
        {1126, "1.1 KiB"},           /* 1.0996 */
        {1177, "1.1 KiB"},           /* 1.1494 */
        {1178, "1.2 KiB"},           /* 1.1504 */
        {1048524, "1023.9 KiB"},      /* 1023.94 */
        {1048525, "1.0 MiB"},         /* 1023.95 rounds to 1024.0: next unit */
        {1181116006ull, "1.1 GiB"},
        {6442450944ull, "6.0 GiB"},
        {1099511627776ull, "1.0 TiB"},
        {1125899906842624ull, "1.0 PiB"},
        {1152921504606846976ull, "1.0 EiB"},
        {18446744073709551615ull, "16.0 EiB"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        size_t k = lyra_size_format(cases[i].n, buf, sizeof buf);
        CHECK(!strcmp(buf, cases[i].want) && k == strlen(buf), "%llu -> \"%s\", want \"%s\"",
              (unsigned long long)cases[i].n, buf, cases[i].want);
    }
    char small[4];
    size_t k = lyra_size_format(6442450944ull, small, sizeof small);
    CHECK(k == 7 && !strcmp(small, "6.0"), "truncated: %zu \"%s\"", k, small);
}

int main(void) {
    test_ok();
    test_bad();
    test_json();
    test_format();
    return test_done();
}
