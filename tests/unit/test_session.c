/* test_session.c: session files (src/gen/session.c, docs/sessions.md).
 * Round trips on stories260K, a random llama and a gemma2 with a small
 * sliding window that wraps its ring: saved with the layers on the CPU,
 * restored on the CPU, on simulated GPUs and with layers on the disk tier,
 * the logits after the restore bitwise equal to the uninterrupted run's;
 * corrupted (a byte flipped in each region), truncated (a sweep of
 * lengths), wrong-model, wrong-KV-type, wrong-geometry and newer-version
 * files each give their error and change nothing; a fault-injection sweep
 * over the save path leaves the old file or the new one, never another;
 * the pipeline's session calls continue a conversation without evaluating
 * it again. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/afile.h"
#include "gen/session.h"
#include "lyra.h"
#include "runtime/objects.h"
#include "testutil.h"

#define N_CTX 256
#define N_C 10 /* tokens evaluated after the save point */

typedef struct setup {
    const char *label;
    const char *path;
    int32_t kv_chunk; /* model param (0: default) */
    int32_t n_batch;  /* context param (0: default) */
} setup;

/* placements: 0 the CPU, 1 simulated GPUs (layers split over two), 2 a layer on disk */
static int open_model(const setup *s, int placement, lyra_kv_type kvt, lyra_model **m, lyra_context **c,
                      lyra_error *err) {
    lyra_backend_params bp = lyra_backend_default_params();
    lyra_model_params mp = lyra_model_default_params();
    lyra_device_map_entry map[] = {
        {"", LYRA_DEVICE_CPU}, {"model.layers.0", 0}, {"model.layers.1", 1}, {"lm_head", 0},
    };
    lyra_device_map_entry dmap[] = {{"", LYRA_DEVICE_CPU}, {"model.layers.1", LYRA_DEVICE_DISK}};
    bp.sim_gpus = placement == 1 ? "256MiB,256MiB" : "";
    mp.backend = &bp;
    mp.kv_chunk = s->kv_chunk;
    mp.n_ctx = N_CTX;
    mp.kv_type = kvt;
    if (placement == 1) {
        mp.device_strategy = LYRA_DEVICE_MAP_EXPLICIT;
        mp.device_map = map;
        mp.n_device_map = 4;
    } else if (placement == 2) {
        mp.device_strategy = LYRA_DEVICE_MAP_EXPLICIT;
        mp.device_map = dmap;
        mp.n_device_map = 2;
    }
    *c = NULL;
    int rc = lyra_model_open(s->path, &mp, m, err);
    if (rc) return rc;
    lyra_context_params cp = lyra_context_default_params();
    cp.n_ctx = N_CTX;
    cp.n_batch = s->n_batch;
    cp.n_threads = 2;
    rc = lyra_context_new(*m, &cp, c, err);
    if (rc) {
        lyra_model_free(*m);
        *m = NULL;
    }
    return rc;
}

static int32_t argmax(const float *l, int n) {
    int32_t b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

/* Tokens of the conversation before the save: n_a in one batch, then 5 generated. */
static int prefix(lyra_context *c, int V, int n_a, int32_t *toks, int32_t *n, lyra_error *err) {
    for (int i = 0; i < n_a; i++) toks[i] = 1 + (i * 37 + 11) % (V - 1 < 200 ? V - 1 : 200);
    int rc = lyra_eval(c, toks, n_a, 0, err);
    *n = n_a;
    for (int k = 0; !rc && k < 5; k++) {
        int32_t t = argmax(lyra_get_logits(c, -1), V);
        toks[(*n)++] = t;
        rc = lyra_eval(c, &t, 1, 0, err);
    }
    return rc;
}

static void c_tokens(int32_t *t, int V) {
    for (int i = 0; i < N_C; i++) t[i] = 1 + (i * 53 + 7) % (V - 1 < 150 ? V - 1 : 150);
}

/* The round trip of one model: save at the prefix, the logits of N_C more
 * tokens against restores in each placement (and an f32 cache too). */
static void test_round_trip(const setup *s, int n_a, const char *dir) {
    for (int kvt = LYRA_KV_F16; kvt <= LYRA_KV_F32; kvt++) {
        lyra_error err;
        lyra_model *m;
        lyra_context *c;
        if (open_model(s, 0, (lyra_kv_type)kvt, &m, &c, &err)) {
            CHECK(0, "%s: open: %s", s->label, err.msg);
            return;
        }
        int V = lyra_model_n_vocab(m);
        int32_t toks[N_CTX], n = 0, ct[N_C];
        c_tokens(ct, V);
        char path[700];
        snprintf(path, sizeof path, "%s/%s-%d.lyrasession", dir, s->label, kvt);
        lyra_sampler_params sp = lyra_sampler_default_params();
        sp.seed = 42;
        sp.repeat_last_n = 8;
        lyra_sampler *smp = lyra_sampler_new(&sp, V);
        for (int i = 0; i < 11; i++) lyra_sampler_accept(smp, i);
        int rc = prefix(c, V, n_a, toks, &n, &err);
        if (!rc) rc = lyra_session_save(c, toks, n, smp, path, &err);
        CHECK(rc == 0, "%s: save: %s", s->label, err.msg);
        float *ref = malloc(sizeof(float) * (size_t)V * N_C), *ref_s = malloc(sizeof(float) * (size_t)V);
        if (!rc) rc = lyra_eval(c, ct, N_C, 1, &err);
        CHECK(rc == 0, "%s: eval: %s", s->label, err.msg);
        int32_t draw_ref = lyra_sampler_sample(smp, lyra_get_logits(c, 0));
        if (!rc) memcpy(ref, lyra_get_logits(c, 0), sizeof(float) * (size_t)V * N_C);
        (void)ref_s;
        lyra_sampler_free(smp);
        lyra_context_free(c);
        lyra_model_free(m);
        for (int pl = 0; !rc && pl < 3; pl++) {
            if (open_model(s, pl, (lyra_kv_type)kvt, &m, &c, &err)) {
                CHECK(0, "%s: open placement %d: %s", s->label, pl, err.msg);
                continue;
            }
            lyra_sampler *s2 = lyra_sampler_new(&sp, V);
            int32_t *got = NULL, ng = 0;
            rc = lyra_session_load(c, s2, path, &got, &ng, &err);
            CHECK(rc == 0, "%s: load placement %d: %s", s->label, pl, err.msg);
            CHECK(rc || (ng == n && !memcmp(got, toks, sizeof *toks * (size_t)n)), "%s: tokens back", s->label);
            CHECK(rc || lyra_context_pos(c) == n, "%s: position %d, want %d", s->label, (int)lyra_context_pos(c), (int)n);
            if (!rc) rc = lyra_eval(c, ct, N_C, 1, &err);
            CHECK(rc == 0, "%s: eval after load (placement %d): %s", s->label, pl, err.msg);
            CHECK(rc || !memcmp(ref, lyra_get_logits(c, 0), sizeof(float) * (size_t)V * N_C),
                  "%s (kv %d): logits after the restore (placement %d) differ from the uninterrupted run", s->label,
                  kvt, pl);
            CHECK(rc || lyra_sampler_sample(s2, lyra_get_logits(c, 0)) == draw_ref,
                  "%s: the restored sampler draws another token", s->label);
            lyra_free(got);
            lyra_sampler_free(s2);
            lyra_context_free(c);
            lyra_model_free(m);
        }
        free(ref);
        free(ref_s);
    }
}

static unsigned char *slurp(const char *path, size_t *len) { return (unsigned char *)test_read_file(path, len); }

static int write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t k = fwrite(b, 1, n, f);
    fclose(f);
    return k == n ? 0 : -1;
}

/* Load bytes b[n] into c: must fail with LYRA_ERR_INPUT, the message
 * containing want, the context unchanged. */
static void expect_fail(lyra_context *c, const char *path, const void *b, size_t n, const char *want,
                        const char *what) {
    lyra_error err;
    write_bytes(path, b, n);
    int32_t pos = lyra_context_pos(c);
    int32_t *t = NULL, nt = -1;
    int rc = lyra_session_load(c, NULL, path, &t, &nt, &err);
    CHECK(rc == LYRA_ERR_INPUT, "%s: rc %d (%s)", what, rc, err.msg);
    CHECK(!want || strstr(err.msg, want), "%s: message '%s' lacks '%s'", what, err.msg, want);
    CHECK(strstr(err.msg, path) == err.msg, "%s: message '%s' does not start with the file", what, err.msg);
    CHECK(lyra_context_pos(c) == pos && !t && nt == 0, "%s: the context changed", what);
}

static void test_errors(const setup *s, const setup *other, const char *dir) {
    lyra_error err;
    lyra_model *m;
    lyra_context *c;
    if (open_model(s, 0, LYRA_KV_F16, &m, &c, &err)) {
        CHECK(0, "errors: open: %s", err.msg);
        return;
    }
    int V = lyra_model_n_vocab(m);
    int32_t toks[N_CTX], n = 0;
    char path[700], bad[700];
    snprintf(path, sizeof path, "%s/err.lyrasession", dir);
    snprintf(bad, sizeof bad, "%s/bad.lyrasession", dir);
    lyra_sampler *smp = lyra_sampler_new(NULL, V);
    int rc = prefix(c, V, 20, toks, &n, &err);
    CHECK(lyra_session_save(c, toks, n - 1, NULL, path, &err) == LYRA_ERR_INPUT, "save with a wrong count");
    if (!rc) rc = lyra_session_save(c, toks, n, smp, path, &err);
    CHECK(rc == 0, "errors: save: %s", err.msg);
    size_t len = 0;
    unsigned char *b = slurp(path, &len);
    unsigned char *cp = malloc(len + 1);
    if (rc || !b || !cp) {
        CHECK(0, "errors: no file");
        goto out;
    }
    /* the regions, from the parsed view */
    lyra_session_view v;
    CHECK(lyra_session_parse(b, len, path, &v, &err) == 0, "parse: %s", err.msg);
    size_t tok_off = (size_t)(v.tokens - b), smp_off = (size_t)(v.window - b) - 40, app_off = (size_t)(v.app - b),
           kv_off = (size_t)(v.kv - b);
    struct { size_t off; const char *want; const char *what; } flips[] = {
        {0, "not a lyra session file", "magic"},
        {9, "newer", "version"},
        {20, NULL, "file size"},
        {26, "checksum mismatch in the header", "fingerprint"},
        {37, "checksum mismatch in the header", "n_ctx"},
        {130, "checksum mismatch in the header", "layer table"},
        {tok_off + 1, "checksum mismatch in the tokens", "tokens"},
        {smp_off + 3, "checksum mismatch in the sampler state", "sampler"},
        {app_off - 1, "checksum mismatch in the sampler state", "sampler crc"},
        {kv_off + 5, "checksum mismatch in the KV cache of layer 0", "kv layer 0"},
        {len - 6, "KV cache of layer", "last layer"},
        {len - 1, "KV cache of layer", "last crc"},
    };
    /* a context with something in it: a failed load must leave it */
    lyra_context_truncate(c, 3);
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        memcpy(cp, b, len);
        cp[flips[i].off] ^= 0x10;
        expect_fail(c, bad, cp, len, flips[i].want, flips[i].what);
    }
    /* every byte of the header flipped: an error each time */
    for (size_t off = 0; off < (size_t)(v.tokens - b); off++) {
        memcpy(cp, b, len);
        cp[off] ^= 0x01;
        char what[64];
        snprintf(what, sizeof what, "header byte %zu", off);
        expect_fail(c, bad, cp, len, NULL, what);
    }
    /* newer version */
    memcpy(cp, b, len);
    cp[8] = 2;
    expect_fail(c, bad, cp, len, "format version 2 is newer", "version 2");
    /* truncations (every length up to the KV, then a bounded sweep), trailing bytes */
    size_t step = len / 150 > 0 ? len / 150 : 1;
    for (size_t k = 0; k < len; k += k < kv_off + 8 ? 1 : step) {
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu", k);
        expect_fail(c, bad, b, k, k < 8 ? NULL : k < 16 ? "truncated" : NULL, what);
    }
    memcpy(cp, b, len);
    cp[len] = 0;
    expect_fail(c, bad, cp, len + 1, "trailing bytes", "one byte more");
    expect_fail(c, bad, "", 0, "not a lyra session file", "empty");
    CHECK(lyra_session_load(c, NULL, "/nonexistent/x.lyrasession", NULL, NULL, &err) == LYRA_ERR_INPUT,
          "missing file");
    /* another KV type, another context size */
    {
        lyra_model *m2;
        lyra_context *c2;
        if (!open_model(s, 0, LYRA_KV_F32, &m2, &c2, &err)) {
            expect_fail(c2, bad, b, len, "KV type f16, this context's is f32", "kv type");
            lyra_context_free(c2);
            lyra_context_params cpp = lyra_context_default_params();
            cpp.n_ctx = N_CTX / 2;
            cpp.kv_type = LYRA_KV_F16;
            if (!lyra_context_new(m2, &cpp, &c2, &err)) {
                expect_fail(c2, bad, b, len, "context of 256 positions, this one has 128", "n_ctx");
                lyra_context_free(c2);
            }
            lyra_model_free(m2);
        }
    }
    /* another model */
    if (other) {
        lyra_model *m2;
        lyra_context *c2;
        if (!open_model(other, 0, LYRA_KV_F16, &m2, &c2, &err)) {
            expect_fail(c2, bad, b, len, "saved for another model", "another model");
            lyra_context_free(c2);
            lyra_model_free(m2);
        }
    }
    /* the conversation decoder on garbage */
    {
        lyra_session_conv cv;
        CHECK(lyra_session_conv_decode("LYRACONV\1\0\0\0\5\0\0\0", 16, "x", &cv, &err) == LYRA_ERR_INPUT,
              "conv cut short");
        char *u[1] = {"hi"}, *r[1] = {NULL};
        void *e = NULL;
        size_t el = 0;
        CHECK(!lyra_session_conv_encode("sys", u, r, 1, &e, &el, &err), "conv encode");
        CHECK(!lyra_session_conv_decode(e, el, "x", &cv, &err) && cv.n_turns == 1 && !strcmp(cv.system, "sys") &&
                  !strcmp(cv.user[0], "hi") && !cv.reply[0],
              "conv round trip");
        lyra_session_conv_free(&cv);
        free(e);
    }
out:
    free(b);
    free(cp);
    lyra_sampler_free(smp);
    lyra_context_free(c);
    lyra_model_free(m);
}

/* Files in dir whose name starts with prefix. */
static int count_files(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    if (d) closedir(d);
    return n;
}

static void test_faults(const setup *s, const char *dir) {
    lyra_error err;
    lyra_model *m;
    lyra_context *c;
    CHECK(lyra_fail_io_parse("write:2+,fsync:1", &(lyra_fail_io){0}, &err) == 0, "fail_io parse");
    CHECK(lyra_fail_io_parse("write", &(lyra_fail_io){0}, &err) == LYRA_ERR_INPUT, "fail_io bad");
    CHECK(lyra_fail_io_parse("seek:1", &(lyra_fail_io){0}, &err) == LYRA_ERR_INPUT, "fail_io bad op");
    if (open_model(s, 0, LYRA_KV_F16, &m, &c, &err)) {
        CHECK(0, "faults: open: %s", err.msg);
        return;
    }
    int V = lyra_model_n_vocab(m);
    int32_t toks[N_CTX], n = 0;
    char sub[700], path[800], newp[800];
    snprintf(sub, sizeof sub, "%s/faults", dir);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", sub);
    CHECK(system(cmd) == 0, "mkdir");
    snprintf(path, sizeof path, "%s/s.lyrasession", sub);
    snprintf(newp, sizeof newp, "%s/new.bin", dir);
    int rc = prefix(c, V, 12, toks, &n, &err);
    if (!rc) rc = lyra_session_save(c, toks, n, NULL, path, &err); /* the old file */
    size_t old_n = 0, new_n = 0;
    unsigned char *old = slurp(path, &old_n);
    int32_t t = 5;
    if (!rc) rc = lyra_eval(c, &t, 1, 0, &err);
    toks[n++] = t;
    if (!rc) rc = lyra_session_save(c, toks, n, NULL, newp, &err); /* the new one, as it must come out */
    unsigned char *nw = slurp(newp, &new_n);
    CHECK(rc == 0 && old && nw, "faults: setup: %s", err.msg);
    static const char *const ops[] = {"open", "write", "fsync", "rename"};
    for (int op = 0; !rc && op < LYRA_IO_N; op++) {
        for (uint64_t k = 1; k <= 40; k++) {
            /* put the old file back, arm the k-th call of op */
            write_bytes(path, old, old_n);
            memset(&m->fail_io, 0, sizeof m->fail_io);
            m->fail_io.at[op] = k;
            int r = lyra_session_save(c, toks, n, NULL, path, &err);
            size_t got_n = 0;
            unsigned char *got = slurp(path, &got_n);
            int is_old = got && got_n == old_n && !memcmp(got, old, old_n);
            int is_new = got && got_n == new_n && !memcmp(got, nw, new_n);
            CHECK(is_old || is_new, "%s:%llu: the file is neither the old nor the new one", ops[op],
                  (unsigned long long)k);
            CHECK(r == 0 || r == LYRA_ERR_RUNTIME, "%s:%llu: rc %d", ops[op], (unsigned long long)k, r);
            CHECK(r != 0 || is_new, "%s:%llu: success but not the new file", ops[op], (unsigned long long)k);
            CHECK(count_files(sub, "s.lyrasession.tmp") == 0, "%s:%llu: a temporary file was left", ops[op],
                  (unsigned long long)k);
            free(got);
            if (m->fail_io.calls[op] < k) break; /* the k-th call never came: swept */
        }
    }
    memset(&m->fail_io, 0, sizeof m->fail_io);
    free(old);
    free(nw);
    lyra_context_free(c);
    lyra_model_free(m);
}

static lyra_pipeline *open_pipe(const char *model, lyra_error *err) {
    lyra_kwargs *kw = lyra_kwargs_new();
    int rc = lyra_kwargs_set(kw, "max_new_tokens", "12", err);
    if (!rc) rc = lyra_kwargs_set(kw, "temperature", "0.9", err);
    if (!rc) rc = lyra_kwargs_set(kw, "seed", "7", err);
    if (!rc) rc = lyra_kwargs_set(kw, "context_length", "256", err);
    lyra_pipeline *p = rc ? NULL : lyra_load_pipeline(model, NULL, NULL, kw, err);
    lyra_kwargs_free(kw);
    return p;
}

static void test_pipeline(const char *model, const char *dir) {
    lyra_error err;
    lyra_pipeline *a = open_pipe(model, &err), *b = open_pipe(model, &err), *c2 = open_pipe(model, &err);
    if (!a || !b || !c2) {
        CHECK(0, "pipeline: %s", err.msg);
        goto out;
    }
    char *r1 = NULL, *r2 = NULL, *q1 = NULL, *q2 = NULL;
    lyra_generate_result res_a, res_b;
    /* uninterrupted: two turns */
    int rc = lyra_pipeline_chat(a, "Once upon a time", NULL, NULL, &r1, &err);
    uint64_t e1 = lyra_pipeline_n_evaluated(a);
    lyra_chat_message msgs[3] = {{"user", "Once upon a time"}, {"assistant", r1 ? r1 : ""}, {"user", "The end"}};
    if (!rc) rc = lyra_pipeline_chat_messages(a, msgs, 3, NULL, NULL, NULL, &r2, &res_a, &err);
    CHECK(rc == 0, "pipeline a: %s", err.msg);
    uint64_t e2 = lyra_pipeline_n_evaluated(a) - e1;
    /* b: the first turn, saved to memory and to a file, restored into c2 */
    if (!rc) rc = lyra_pipeline_chat(b, "Once upon a time", NULL, NULL, &q1, &err);
    void *buf = NULL;
    size_t len = 0;
    char path[700];
    snprintf(path, sizeof path, "%s/pipe.lyrasession", dir);
    if (!rc) rc = lyra_pipeline_session_save_mem(b, &buf, &len, &err);
    if (!rc) rc = lyra_pipeline_session_save(b, path, &err);
    CHECK(rc == 0, "pipeline b: %s", err.msg);
    size_t fl = 0;
    char *fb = test_read_file(path, &fl);
    CHECK(fb && fl == len && !memcmp(fb, buf, len), "the file and the buffer differ");
    free(fb);
    for (int via_file = 0; !rc && via_file < 2; via_file++) {
        uint64_t e0 = lyra_pipeline_n_evaluated(c2);
        rc = via_file ? lyra_pipeline_session_load(c2, path, &err) : lyra_pipeline_session_load_mem(c2, buf, len, &err);
        CHECK(rc == 0, "pipeline load: %s", err.msg);
        CHECK(lyra_pipeline_n_evaluated(c2) == e0, "the load evaluated tokens");
        CHECK(lyra_context_pos(lyra_pipeline_context(c2)) == lyra_context_pos(lyra_pipeline_context(b)),
              "restored position");
        if (!rc) rc = lyra_pipeline_chat_messages(c2, msgs, 3, NULL, NULL, NULL, &q2, &res_b, &err);
        CHECK(rc == 0, "pipeline c: %s", err.msg);
        CHECK(!rc && r2 && q2 && !strcmp(r2, q2), "the reply after the restore differs: '%s' vs '%s'", r2 ? r2 : "",
              q2 ? q2 : "");
        CHECK(!rc && res_b.n_reused == res_a.n_reused && res_b.n_prompt == res_a.n_prompt,
              "reused %d of %d, uninterrupted %d of %d", (int)res_b.n_reused, (int)res_b.n_prompt,
              (int)res_a.n_reused, (int)res_a.n_prompt);
        CHECK(!rc && lyra_pipeline_n_evaluated(c2) - e0 == e2, "evaluated %llu, uninterrupted %llu",
              (unsigned long long)(lyra_pipeline_n_evaluated(c2) - e0), (unsigned long long)e2);
        free(q2);
        q2 = NULL;
        lyra_pipeline_reset(c2);
    }
    /* lyra_pipeline_chat continues a restored conversation the same way */
    if (!rc) rc = lyra_pipeline_session_load_mem(c2, buf, len, &err);
    if (!rc) rc = lyra_pipeline_chat(c2, "The end", NULL, NULL, &q2, &err);
    CHECK(!rc && r2 && q2 && !strcmp(r2, q2), "chat after the restore differs: '%s' vs '%s'", r2 ? r2 : "",
          q2 ? q2 : "");
    /* a corrupted buffer: an error, the conversation kept */
    if (buf && len > 200) {
        ((unsigned char *)buf)[len / 2] ^= 1;
        int32_t pos = lyra_context_pos(lyra_pipeline_context(c2));
        CHECK(lyra_pipeline_session_load_mem(c2, buf, len, &err) == LYRA_ERR_INPUT, "corrupted buffer loads");
        CHECK(lyra_context_pos(lyra_pipeline_context(c2)) == pos, "a failed load changed the pipeline");
    }
    lyra_free(buf);
    free(r1);
    free(r2);
    free(q1);
    free(q2);
out:
    lyra_pipeline_free(a);
    lyra_pipeline_free(b);
    lyra_pipeline_free(c2);
}

int main(void) {
    const char *s260 = test_shared_path("models/stories260K.gguf");
    const char *dir = test_tmp_dir();
    const char *bin = getenv("LYRA_BIN");
    char rnd[600], gem[600], cmd[1600];
    setup st = {"stories260K", s260, 0, 0};
    setup sr = {"rand", rnd, 0, 0}, sg = {"gemma2", gem, 16, 8};
    int have_rand = 0;
    if (bin) {
        snprintf(rnd, sizeof rnd, "%s/sess_rand.gguf", dir);
        snprintf(gem, sizeof gem, "%s/sess_gemma2.gguf", dir);
        snprintf(cmd, sizeof cmd,
                 "\"%s\" -q mkmodel -o \"%s\" --preset tiny --dim 64 --layers 3 --seed 9 --threads 1 && "
                 "\"%s\" -q mkmodel -o \"%s\" --arch gemma2 --preset tiny --window 8 --seed 3 --threads 1",
                 bin, rnd, bin, gem);
        have_rand = system(cmd) == 0;
        CHECK(have_rand, "mkmodel failed: %s", cmd);
    }
    test_round_trip(&st, 40, dir);
    if (have_rand) {
        test_round_trip(&sr, 30, dir);
        test_round_trip(&sg, 60, dir); /* ring of 2 chunks of 16: wraps */
    }
    test_errors(&st, have_rand ? &sr : NULL, dir);
    test_faults(&st, dir);
    test_pipeline(s260, dir);
    return test_done();
}
