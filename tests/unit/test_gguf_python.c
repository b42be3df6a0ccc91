/* test_gguf_python.c: lyra's GGUF reader and writer against the Python gguf
 * package (the reference implementation, env LYRA_PYTHON):
 *  - the metadata and tensor table of every shared model and vocab file,
 *    dumped through lyra's getters, equal line for line the dump of
 *    tests/reference/gguf_dump.py (GGUFReader); tensor bytes by checksum;
 *  - files written by GGUFWriter (every value type, nested arrays, strings
 *    with escapes, 6 tensor types, alignment 64, a 3-part split) read the same;
 *  - files written by lyra's writer (empty arrays, strings with NUL bytes,
 *    nested arrays copied with copy_kv) read the same in GGUFReader.
 * Skipped (77) when LYRA_PYTHON has no gguf package. */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/gguf.h"
#include "testutil.h"

static const char *py, *src;
static char tmp[4096];

/* ------------------------------------------------------------ the C dump */

/* A growing string. */
typedef struct sb { char *p; size_t n, cap; } sb;

static void sb_add(sb *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sb *s, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(s->p ? s->p + s->n : NULL, s->p ? s->cap - s->n : 0, fmt, ap);
        va_end(ap);
        if (s->p && (size_t)k < s->cap - s->n) { s->n += (size_t)k; return; }
        s->cap = (s->cap + (size_t)k + 1) * 2;
        s->p = realloc(s->p, s->cap);
    }
}

static void sb_strq(sb *s, const char *p, uint64_t n) {
    sb_add(s, "\"");
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') sb_add(s, "%c", c);
        else sb_add(s, "\\x%02x", c);
    }
    sb_add(s, "\"");
}

static void sb_float(sb *s, double v, int digits) {
    if (isnan(v)) sb_add(s, "nan");
    else if (isinf(v)) sb_add(s, v > 0 ? "inf" : "-inf");
    else sb_add(s, "%.*g", digits, v);
}

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* One numeric element of type t, raw little endian at p. */
static void sb_num(sb *s, lyra_gguf_vtype t, const uint8_t *p) {
    float f;
    double d;
    uint32_t u;
    uint64_t q;
    switch (t) {
    case LYRA_GGUF_U8: sb_add(s, "%u", p[0]); break;
    case LYRA_GGUF_I8: sb_add(s, "%d", (int8_t)p[0]); break;
    case LYRA_GGUF_U16: sb_add(s, "%u", (unsigned)le(p, 2)); break;
    case LYRA_GGUF_I16: sb_add(s, "%d", (int16_t)le(p, 2)); break;
    case LYRA_GGUF_U32: sb_add(s, "%u", (unsigned)le(p, 4)); break;
    case LYRA_GGUF_I32: sb_add(s, "%d", (int32_t)le(p, 4)); break;
    case LYRA_GGUF_U64: sb_add(s, "%" PRIu64, le(p, 8)); break;
    case LYRA_GGUF_I64: sb_add(s, "%" PRId64, (int64_t)le(p, 8)); break;
    case LYRA_GGUF_F32: u = (uint32_t)le(p, 4); memcpy(&f, &u, 4); sb_float(s, f, 9); break;
    case LYRA_GGUF_F64: q = le(p, 8); memcpy(&d, &q, 8); sb_float(s, d, 17); break;
    case LYRA_GGUF_BOOL: sb_add(s, "%s", p[0] ? "true" : "false"); break;
    default: sb_add(s, "?"); break;
    }
}

static const char *vname(lyra_gguf_vtype t) { return lyra_gguf_vtype_name(t); }

static int is_unsigned(lyra_gguf_vtype t) {
    return t == LYRA_GGUF_U8 || t == LYRA_GGUF_U16 || t == LYRA_GGUF_U32 || t == LYRA_GGUF_U64;
}

/* The dump gguf_dump.py makes, through the public getters only. */
static char *c_dump(const lyra_gguf *g) {
    sb s = {0};
    sb_add(&s, "version %u\nkv %lld\n", lyra_gguf_version(g), (long long)lyra_gguf_n_kv(g));
    for (int64_t i = 0; i < lyra_gguf_n_kv(g); i++) {
        const char *key = lyra_gguf_kv_key(g, i);
        lyra_gguf_vtype t = lyra_gguf_kv_type(g, i);
        CHECK(lyra_gguf_find_key(g, key) == i, "find_key %s", key);
        sb_add(&s, "key %s %s ", key, vname(t));
        if (t == LYRA_GGUF_STRING) {
            lyra_gguf_str v;
            CHECK(lyra_gguf_get_str(g, key, &v), "get_str %s", key);
            sb_strq(&s, v.ptr, v.len);
        } else if (t == LYRA_GGUF_F32 || t == LYRA_GGUF_F64) {
            double d = 0;
            CHECK(lyra_gguf_get_f64(g, key, &d), "get_f64 %s", key);
            sb_float(&s, d, t == LYRA_GGUF_F32 ? 9 : 17);
        } else if (t == LYRA_GGUF_BOOL) {
            int b = 0;
            CHECK(lyra_gguf_get_bool(g, key, &b), "get_bool %s", key);
            sb_add(&s, "%s", b ? "true" : "false");
        } else if (is_unsigned(t)) {
            uint64_t u = 0;
            CHECK(lyra_gguf_get_u64(g, key, &u), "get_u64 %s", key);
            sb_add(&s, "%" PRIu64, u);
        } else if (t != LYRA_GGUF_ARRAY) {
            int64_t v = 0;
            CHECK(lyra_gguf_get_i64(g, key, &v), "get_i64 %s", key);
            sb_add(&s, "%" PRId64, v);
        } else {
            lyra_gguf_vtype et;
            uint64_t n;
            CHECK(lyra_gguf_get_arr(g, key, &et, &n), "get_arr %s", key);
            s.n--; /* "array[T;N]" replaces "array " */
            sb_add(&s, "[%s;%" PRIu64 "]", vname(et), n);
            if (et != LYRA_GGUF_ARRAY) {
                sb_add(&s, " ");
                const uint8_t *d = lyra_gguf_arr_data(g, key);
                CHECK((et == LYRA_GGUF_STRING) == (d == NULL), "arr_data %s", key);
                uint64_t sz = et == LYRA_GGUF_STRING ? 0 : (et == LYRA_GGUF_U8 || et == LYRA_GGUF_I8 || et == LYRA_GGUF_BOOL) ? 1
                            : (et == LYRA_GGUF_U16 || et == LYRA_GGUF_I16) ? 2
                            : (et == LYRA_GGUF_U64 || et == LYRA_GGUF_I64 || et == LYRA_GGUF_F64) ? 8 : 4;
                for (uint64_t k = 0; k < n; k++) {
                    if (k) sb_add(&s, ",");
                    if (et == LYRA_GGUF_STRING) {
                        lyra_gguf_str v = lyra_gguf_arr_str(g, key, k);
                        sb_strq(&s, v.ptr, v.len);
                    } else if (d) {
                        sb_num(&s, et, d + k * sz);
                    }
                }
            }
        }
        sb_add(&s, "\n");
    }
    sb_add(&s, "tensors %lld\n", (long long)lyra_gguf_n_tensors(g));
    for (int64_t i = 0; i < lyra_gguf_n_tensors(g); i++) {
        const lyra_gguf_tensor *t = lyra_gguf_tensor_at(g, i);
        sb_add(&s, "tensor %lld part %d name ", (long long)i, t->part);
        sb_strq(&s, t->name, strlen(t->name));
        sb_add(&s, " type %d ne [", (int)t->type);
        for (int d = 0; d < t->n_dims; d++) sb_add(&s, "%s%lld", d ? "," : "", (long long)t->ne[d]);
        uint64_t sum = 0;
        const uint8_t *p = t->data;
        for (uint64_t k = 0; k < t->n_bytes; k++) sum += (uint64_t)p[k] * (k % 251 + 1);
        sb_add(&s, "] offset %" PRIu64 " nbytes %" PRIu64 " sum %" PRIu64 "\n", t->offset, t->n_bytes, sum);
        CHECK(lyra_gguf_find_tensor(g, t->name) == t, "find_tensor %s", t->name);
    }
    return s.p;
}

/* ------------------------------------------------------------- running */

/* Run "PY SCRIPT ARGS" with stdout to out (may be NULL). 0 on success. */
static int run_py(const char *script, const char *args, const char *out) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' '%s/tests/reference/%s' %s > '%s' 2> '%s/py.err'", py, src, script, args,
             out ? out : "/dev/null", tmp);
    int rc = system(cmd);
    if (rc != 0) {
        char ep[4200];
        snprintf(ep, sizeof ep, "%s/py.err", tmp);
        char *e = test_read_file(ep, NULL);
        fprintf(stderr, "python failed (%d): %s\n%s\n", rc, cmd, e ? e : "");
        free(e);
    }
    return rc;
}

/* Compare the C dump of the file(s) (first path opens all parts) with the
 * Python dump of the listed files. */
static void compare(const char *open_path, const char *py_files) {
    char out[4200];
    snprintf(out, sizeof out, "%s/dump.txt", tmp);
    CHECK(run_py("gguf_dump.py", py_files, out) == 0, "gguf_dump.py %s", py_files);
    char *want = test_read_file(out, NULL);
    lyra_error err;
    lyra_gguf *g = NULL;
    CHECK(lyra_gguf_open(open_path, &g, &err) == 0, "open %s: %s", open_path, err.msg);
    if (!g || !want) { free(want); lyra_gguf_close(g); return; }
    char *got = c_dump(g);
    lyra_gguf_close(g);
    /* first differing line */
    const char *a = got, *b = want;
    int line = 1;
    while (*a && *a == *b) { if (*a == '\n') line++; a++; b++; }
    if (*a || *b) {
        const char *la = a, *lb = b;
        while (la > got && la[-1] != '\n') la--;
        while (lb > want && lb[-1] != '\n') lb--;
        CHECK(0, "%s: line %d differs:\n  lyra:   %.300s\n  python: %.300s", open_path, line, la, lb);
    } else {
        CHECK(1, "same");
        printf("%s: %d lines equal\n", open_path, line - 1);
    }
    free(got);
    free(want);
}

/* Shell words: each argument quoted, until a NULL. */
static void q(char *dst, size_t cap, ...) {
    va_list ap;
    va_start(ap, cap);
    dst[0] = 0;
    for (const char *a; (a = va_arg(ap, const char *));)
        snprintf(dst + strlen(dst), cap - strlen(dst), "%s'%s'", dst[0] ? " " : "", a);
    va_end(ap);
}

/* ---------------------------------------------------------------- tests */

static void test_shared(void) {
    const char *files[] = {"models/stories260K.gguf", "models/babyllama105.gguf",
                           "models/vocab/ggml-vocab-gpt-2.gguf", "models/vocab/ggml-vocab-llama-spm.gguf"};
    for (int i = 0; i < 4; i++) {
        char p[4200], a[4300];
        snprintf(p, sizeof p, "%s", test_shared_path(files[i]));
        q(a, sizeof a, p, NULL);
        compare(p, a);
    }
}

static void test_python_written(void) {
    char p[4200], a[13000], p1[4300], p2[4300], p3[4300];
    snprintf(p, sizeof p, "%s/sample.gguf", tmp);
    q(a, sizeof a, "sample", p, NULL);
    if (run_py("gguf_write_sample.py", a, NULL) != 0) { CHECK(0, "write sample"); return; }
    q(a, sizeof a, p, NULL);
    compare(p, a);
    /* a few values by hand as well */
    lyra_gguf *g = NULL;
    lyra_error err;
    if (lyra_gguf_open(p, &g, &err) == 0) {
        uint64_t u = 0;
        int64_t i = 0;
        double d = 0;
        lyra_gguf_str s;
        CHECK(lyra_gguf_get_u64(g, "t.u64", &u) && u == 18000000000000000000ull, "t.u64");
        CHECK(lyra_gguf_get_i64(g, "t.i64", &i) && i == -9000000000000000000ll, "t.i64");
        CHECK(lyra_gguf_get_f64(g, "t.f64", &d) && d == 2.718281828459045, "t.f64");
        CHECK(lyra_gguf_get_str(g, "t.str", &s) && s.len == 19 && memcmp(s.ptr, "h\xc3\xa9llo \"w\\orld\"\n\xe2\x98\x83", 19) == 0, "t.str");
        CHECK(lyra_gguf_get_i64(g, "t.after.nested", &i) && i == 12345, "after nested");
        const lyra_gguf_tensor *t = lyra_gguf_find_tensor(g, "f32.2d");
        CHECK(t && t->ne[0] == 8 && t->ne[1] == 3 && ((const float *)t->data)[9] == 9 - 5.5f, "f32.2d");
        t = lyra_gguf_find_tensor(g, "f32.4d");
        CHECK(t && t->n_dims == 4 && t->ne[0] == 4 && t->ne[1] == 3 && t->ne[2] == 1 && t->ne[3] == 2, "4d");
        t = lyra_gguf_find_tensor(g, "q4_k.raw");
        CHECK(t && t->type == LYRA_TYPE_Q4_K && t->ne[0] == 256 && t->n_bytes == 288, "q4_k");

        /* copy_kv (nested arrays included) into lyra's writer: GGUFReader
         * must read the copy's metadata exactly as the original's */
        char c[4200], dump1[4300], dump2[4300];
        snprintf(c, sizeof c, "%s/copy.gguf", tmp);
        lyra_gguf_writer *w = lyra_gguf_writer_new();
        CHECK(lyra_gguf_writer_copy_kv(w, g, NULL, NULL) == 0, "copy_kv");
        for (int64_t k = 0; k < lyra_gguf_n_tensors(g); k++) {
            const lyra_gguf_tensor *x = lyra_gguf_tensor_at(g, k);
            lyra_gguf_writer_add_tensor(w, x->name, x->type, x->n_dims, x->ne, x->data);
        }
        CHECK(lyra_gguf_writer_write(w, c, &err) == 0, "write copy: %s", err.msg);
        lyra_gguf_writer_free(w);
        lyra_gguf_close(g);
        snprintf(dump1, sizeof dump1, "%s/d1.txt", tmp);
        snprintf(dump2, sizeof dump2, "%s/d2.txt", tmp);
        q(a, sizeof a, p, NULL);
        run_py("gguf_dump.py", a, dump1);
        q(a, sizeof a, c, NULL);
        run_py("gguf_dump.py", a, dump2);
        char *x1 = test_read_file(dump1, NULL), *x2 = test_read_file(dump2, NULL);
        CHECK(x1 && x2 && strcmp(x1, x2) == 0, "python reads lyra's copy as the original");
        free(x1);
        free(x2);
        compare(c, a);
        remove(c);
    } else {
        CHECK(0, "open sample: %s", err.msg);
    }
    remove(p);

    snprintf(p, sizeof p, "%s/align64.gguf", tmp);
    q(a, sizeof a, "align64", p, NULL);
    CHECK(run_py("gguf_write_sample.py", a, NULL) == 0, "write align64");
    q(a, sizeof a, p, NULL);
    compare(p, a);
    remove(p);

    snprintf(p, sizeof p, "%s/sp", tmp);
    q(a, sizeof a, "split", p, NULL);
    CHECK(run_py("gguf_write_sample.py", a, NULL) == 0, "write split");
    snprintf(p1, sizeof p1, "%s-00001-of-00003.gguf", p);
    snprintf(p2, sizeof p2, "%s-00002-of-00003.gguf", p);
    snprintf(p3, sizeof p3, "%s-00003-of-00003.gguf", p);
    q(a, sizeof a, p1, p2, p3, NULL);
    compare(p1, a);
    lyra_gguf *s = NULL;
    if (lyra_gguf_open(p1, &s, &err) == 0) {
        CHECK(lyra_gguf_n_parts(s) == 3 && lyra_gguf_n_tensors(s) == 5, "python split parts");
        const lyra_gguf_tensor *t4 = lyra_gguf_find_tensor(s, "t4");
        CHECK(t4 && t4->part == 2 && t4->ne[1] == 5 && ((const float *)t4->data)[19] == 4.0f, "t4");
        lyra_gguf_close(s);
    } else {
        CHECK(0, "open python split: %s", err.msg);
    }
    remove(p1);
    remove(p2);
    remove(p3);
}

/* lyra's writer -> GGUFReader: things GGUFWriter cannot write. */
static void test_lyra_written(void) {
    char p[4200], a[4300];
    snprintf(p, sizeof p, "%s/lyra.gguf", tmp);
    lyra_gguf_writer *w = lyra_gguf_writer_new();
    const char *strs[] = {"", "nul\0in", "\x01\x7f\xff"};
    uint64_t lens[] = {0, 6, 3};
    lyra_gguf_writer_add_arr_str(w, "a.str", strs, lens, 3);
    lyra_gguf_writer_add_arr(w, "a.empty", LYRA_GGUF_F32, NULL, 0);
    lyra_gguf_writer_add_arr_str(w, "a.str.empty", strs, NULL, 0);
    lyra_gguf_writer_add_str(w, "s.empty", "");
    float fs[] = {NAN, INFINITY, -INFINITY, 1e-40f};
    lyra_gguf_writer_add_arr(w, "a.f32", LYRA_GGUF_F32, fs, 4);
    double nd = -NAN;
    lyra_gguf_writer_add_val(w, "v.nan", LYRA_GGUF_F64, &nd);
    int8_t i8 = -1;
    lyra_gguf_writer_add_val(w, "v.i8", LYRA_GGUF_I8, &i8);
    lyra_gguf_writer_set_alignment(w, 128);
    static uint8_t q6[2 * 210], q4[4 * 18];
    for (int i = 0; i < (int)sizeof q6; i++) q6[i] = (uint8_t)(i * 7);
    for (int i = 0; i < (int)sizeof q4; i++) q4[i] = (uint8_t)(i * 13);
    int64_t ne6[2] = {256, 2}, ne4[3] = {64, 1, 2};
    lyra_gguf_writer_add_tensor(w, "q6", LYRA_TYPE_Q6_K, 2, ne6, q6);
    lyra_gguf_writer_add_tensor(w, "q4", LYRA_TYPE_Q4_0, 3, ne4, q4);
    lyra_error err;
    CHECK(lyra_gguf_writer_write(w, p, &err) == 0, "write: %s", err.msg);
    lyra_gguf_writer_free(w);
    q(a, sizeof a, p, NULL);
    compare(p, a);
    remove(p);
}

int main(void) {
    py = getenv("LYRA_PYTHON");
    src = getenv("LYRA_SRC_DIR");
    if (!py || !*py) py = "python3";
    if (!src || !*src) src = ".";
    snprintf(tmp, sizeof tmp, "%s", test_tmp_dir());
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import gguf, numpy' >/dev/null 2>&1", py);
    if (system(cmd) != 0) test_skip("LYRA_PYTHON has no gguf/numpy package (pip install numpy gguf)");
    snprintf(cmd, sizeof cmd, "%s/tests/reference/gguf_dump.py", src);
    FILE *f = fopen(cmd, "r");
    if (!f) test_skip("tests/reference/gguf_dump.py not found (set LYRA_SRC_DIR)");
    fclose(f);
    test_python_written();
    test_lyra_written();
    test_shared();
    const char *left[] = {"dump.txt", "d1.txt", "d2.txt", "py.err"};
    for (int i = 0; i < 4; i++) {
        snprintf(cmd, sizeof cmd, "%s/%s", tmp, left[i]);
        remove(cmd);
    }
    rmdir(tmp);
    return test_done();
}
