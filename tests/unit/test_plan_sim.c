/* test_plan_sim.c: simulated GPUs (device/sim.c): LYRA_SIM_GPUS parsing and
 * its errors, the allocation cap (allocated + n <= CAP exactly), CAP@REPORTED
 * (total and free as reported), copies, and every op bitwise equal to the
 * CPU device's (the reference: a simulated GPU must compute exactly what the
 * CPU computes). Debug builds: an operand that is not the device's memory is
 * refused and reported by sync. */
#ifdef LYRA_DEBUG /* before any header (core/log.h has a LYRA_DEBUG macro) */
#define SIM_CHECKS 1
#endif
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "device/device.h"
#include "testutil.h"

static void test_parse(void) {
    lyra_sim_spec s[LYRA_SIM_MAX_GPUS];
    int n = -1;
    lyra_error err;
    CHECK(lyra_sim_parse("", s, LYRA_SIM_MAX_GPUS, &n, &err) == LYRA_OK && n == 0, "empty: %d", n);
    CHECK(lyra_sim_parse("  ", s, LYRA_SIM_MAX_GPUS, &n, &err) == LYRA_OK && n == 0, "blank");
    CHECK(lyra_sim_parse("6GiB", s, LYRA_SIM_MAX_GPUS, &n, &err) == LYRA_OK && n == 1 &&
              s[0].cap == 6442450944ull && s[0].reported == 6442450944ull,
          "6GiB");
    CHECK(lyra_sim_parse("500KiB@64MiB, 1GB ,0B", s, LYRA_SIM_MAX_GPUS, &n, &err) == LYRA_OK &&
              n == 3 && s[0].cap == 512000 && s[0].reported == 67108864 &&
              s[1].cap == 1000000000 && s[1].reported == 1000000000 && s[2].cap == 0,
          "three: n %d (%s)", n, err.msg);
    struct { const char *v, *has; } bad[] = {
        {"6Gb", "LYRA_SIM_GPUS entry \"6Gb\": bad size \"6Gb\": lowercase b means bits; bits? write 6GB or 6GiB"},
        {"1GiB,,2GiB", "LYRA_SIM_GPUS: entry 2 is empty"},
        {"1GiB,", "LYRA_SIM_GPUS: entry 2 is empty"},
        {",1GiB", "LYRA_SIM_GPUS: entry 1 is empty"},
        {"1GiB@2GiB@3GiB", "LYRA_SIM_GPUS entry \"1GiB@2GiB@3GiB\": more than one '@'"},
        {"@1GiB", "LYRA_SIM_GPUS entry \"@1GiB\": bad size \"\": empty"},
        {"1GiB@", "LYRA_SIM_GPUS entry \"1GiB@\": bad size \"\": empty"},
        {"500KiB@64Mb", "LYRA_SIM_GPUS entry \"500KiB@64Mb\": bad size \"64Mb\""},
        {"6", "LYRA_SIM_GPUS entry \"6\": bad size \"6\": no unit"},
        {"gpu", "LYRA_SIM_GPUS entry \"gpu\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lyra_err_clear(&err);
        n = -1;
        int rc = lyra_sim_parse(bad[i].v, s, LYRA_SIM_MAX_GPUS, &n, &err);
        CHECK(rc == LYRA_ERR_INPUT && n == 0, "\"%s\": rc %d n %d", bad[i].v, rc, n);
        CHECK(!strncmp(err.msg, bad[i].has, strlen(bad[i].has)), "\"%s\": \"%s\" does not start with \"%s\"",
              bad[i].v, err.msg, bad[i].has);
    }
    char many[256] = "";
    for (int i = 0; i < LYRA_SIM_MAX_GPUS + 1; i++) strcat(many, i ? ",1MiB" : "1MiB");
    CHECK(lyra_sim_parse(many, s, LYRA_SIM_MAX_GPUS, &n, &err) == LYRA_ERR_INPUT &&
              strstr(err.msg, "more than 15 GPUs"),
          "too many: %s", err.msg);
    /* the environment */
    int set = -1;
    unsetenv("LYRA_SIM_GPUS");
    CHECK(lyra_sim_from_env(s, LYRA_SIM_MAX_GPUS, &n, &set, &err) == LYRA_OK && set == 0 && n == 0,
          "unset");
    setenv("LYRA_SIM_GPUS", "", 1);
    CHECK(lyra_sim_from_env(s, LYRA_SIM_MAX_GPUS, &n, &set, &err) == LYRA_OK && set == 1 && n == 0,
          "set empty: no GPUs");
    setenv("LYRA_SIM_GPUS", "2GiB,1GiB", 1);
    CHECK(lyra_sim_from_env(s, LYRA_SIM_MAX_GPUS, &n, &set, &err) == LYRA_OK && set == 1 && n == 2 &&
              s[1].cap == 1073741824ull,
          "two");
    setenv("LYRA_SIM_GPUS", "2GiB,1Gb", 1);
    CHECK(lyra_sim_from_env(s, LYRA_SIM_MAX_GPUS, &n, &set, &err) == LYRA_ERR_INPUT && set == 1 &&
              strstr(err.msg, "LYRA_SIM_GPUS entry \"1Gb\""),
          "malformed: %s", err.msg);
    unsetenv("LYRA_SIM_GPUS");
}

static lyra_device *new_sim(int index, uint64_t cap, uint64_t reported) {
    lyra_error err;
    lyra_device *cpu = NULL, *d = NULL;
    lyra_sim_spec sp = {cap, reported};
    if (lyra_cpu_device_new(2, &cpu, &err) || lyra_sim_device_new(index, &sp, cpu, &d, &err)) {
        fprintf(stderr, "cannot make a simulated GPU: %s\n", err.msg);
        exit(1);
    }
    return d;
}

static void test_alloc(void) {
    lyra_device *d = new_sim(0, 1000, 1000);
    CHECK(!strcmp(d->id, "0") && !strcmp(d->kind, "gpu") && !strcmp(d->backend, "sim") &&
              lyra_device_is_sim(d) && lyra_sim_device_cap(d) == 1000 && d->total == 1000,
          "identity %s %s %s", d->id, d->kind, d->backend);
    void *a, *b, *c = (void *)1;
    CHECK(d->ops->alloc(d, 600, &a) == LYRA_OK && a, "600");
    CHECK(d->ops->alloc(d, 400, &b) == LYRA_OK && b, "400: exactly the cap");
    CHECK(d->ops->alloc(d, 1, &c) == LYRA_ERR_OOM && c == NULL, "1 more: OOM");
    CHECK(d->stats.allocated == 1000 && d->stats.peak == 1000 && d->stats.alloc_calls == 3,
          "stats %llu %llu %llu", (unsigned long long)d->stats.allocated,
          (unsigned long long)d->stats.peak, (unsigned long long)d->stats.alloc_calls);
    CHECK(lyra_device_free_mem(d) == 0, "free 0");
    d->ops->free(d, a, 600);
    CHECK(d->stats.allocated == 400 && lyra_device_free_mem(d) == 600, "after free");
    CHECK(d->ops->alloc(d, 601, &c) == LYRA_ERR_OOM && !c, "601 > 600 left");
    CHECK(d->ops->alloc(d, 600, &a) == LYRA_OK, "600 again");
    d->ops->free(d, a, 600);
    /* the budget caps too */
    d->budget = 500;
    CHECK(d->ops->alloc(d, 101, &a) == LYRA_ERR_OOM, "budget 500: 400 + 101 refused");
    CHECK(d->ops->alloc(d, 100, &a) == LYRA_OK, "budget 500: 400 + 100 fits");
    d->ops->free(d, a, 100);
    d->budget = 0;
    CHECK(d->ops->alloc(d, 0, &a) == LYRA_OK && a, "0 bytes");
    d->ops->free(d, a, 0);
    CHECK(d->ops->adopt(d, b, 10) != LYRA_OK, "a GPU cannot adopt host memory");
    d->ops->free(d, b, 400);
    CHECK(d->stats.allocated == 0, "all freed");
    lyra_error err;
    CHECK(d->ops->sync(d, &err) == LYRA_OK, "sync ok");
    lyra_device_free(d);

    /* CAP@REPORTED: another program took memory */
    d = new_sim(1, 500 * 1024, 64ull << 20);
    CHECK(d->total == (64ull << 20) && lyra_device_free_mem(d) == (64ull << 20), "reported total");
    CHECK(d->ops->alloc(d, 500 * 1024, &a) == LYRA_OK, "cap");
    CHECK(lyra_device_free_mem(d) == (64ull << 20) - 500 * 1024, "free = reported - allocated");
    CHECK(d->ops->alloc(d, 1, &b) == LYRA_ERR_OOM, "over the cap though 'free' says 63.5 MiB");
    CHECK(!strcmp(d->id, "1") && strstr(d->name, "500.0 KiB usable of 64.0 MiB"), "name %s", d->name);
    d->ops->free(d, a, 500 * 1024);
    lyra_device_free(d);

    /* several from specs */
    lyra_sim_spec sp[2] = {{1 << 20, 1 << 20}, {2 << 20, 2 << 20}};
    lyra_device *ds[2];
    CHECK(lyra_sim_devices_new(sp, 2, 1, ds, &err) == LYRA_OK, "devices_new");
    CHECK(!strcmp(ds[0]->id, "0") && !strcmp(ds[1]->id, "1") && ds[1]->total == (2u << 20) &&
              lyra_cpu_device_threads(lyra_sim_device_compute(ds[0])) == 1,
          "ids");
    lyra_device_free(ds[0]);
    lyra_device_free(ds[1]);
}

static void fill_random(lyra_rng *r, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = lyra_rng_f32(r) * 2.0f - 1.0f;
}

/* Allocate n bytes on d and copy host into it. */
static void *put(lyra_device *d, const void *host, size_t n) {
    void *p = NULL;
    if (d->ops->alloc(d, n, &p) || (host && d->ops->copy_in(d, p, host, n))) {
        fprintf(stderr, "put %zu bytes failed\n", n);
        exit(1);
    }
    if (!host) memset(p, 0, n); /* cpu: direct; sim: its memory is host memory too */
    return p;
}

static int same(lyra_device *a, const void *pa, lyra_device *b, const void *pb, size_t n) {
    void *x = malloc(n), *y = malloc(n);
    a->ops->copy_out(a, x, pa, n);
    b->ops->copy_out(b, y, pb, n);
    int eq = !memcmp(x, y, n);
    free(x);
    free(y);
    return eq;
}

/* Every op on the CPU device and on a simulated GPU, from the same inputs:
 * the outputs must be bitwise equal. */
static void test_ops(void) {
    lyra_error err;
    lyra_device *cpu = NULL;
    if (lyra_cpu_device_new(2, &cpu, &err)) { fprintf(stderr, "%s\n", err.msg); exit(1); }
    lyra_device *sim = new_sim(0, 64ull << 20, 64ull << 20);
    lyra_device *dv[2] = {cpu, sim};
    lyra_rng r;
    lyra_rng_seed(&r, 42);
    enum { NTOK = 5, E = 256, ROWS = 96, NH = 4, NKV = 2, HD = 64, CH = 16, NPOS = 40 };
    static float x[NTOK * E], w[E], wf[ROWS * E], q[NTOK * NH * HD], k[NTOK * NKV * HD],
        v[NTOK * NKV * HD], ffac[HD / 2];
    fill_random(&r, x, NTOK * E);
    fill_random(&r, w, E);
    fill_random(&r, wf, ROWS * E);
    fill_random(&r, q, NTOK * NH * HD);
    fill_random(&r, k, NTOK * NKV * HD);
    fill_random(&r, v, NTOK * NKV * HD);
    for (int i = 0; i < HD / 2; i++) ffac[i] = 1.0f + (float)i / 16.0f;
    lyra_type types[] = {LYRA_TYPE_F32, LYRA_TYPE_F16, LYRA_TYPE_Q8_0, LYRA_TYPE_Q4_0, LYRA_TYPE_Q4_K,
                         LYRA_TYPE_Q6_K};
    int32_t ids[NTOK] = {3, 0, 95, 3, 17}, pos[NTOK];
    void *out[2][8];
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        lyra_type t = types[ti];
        size_t rb = lyra_row_bytes(t, E), wb = rb * ROWS;
        uint8_t *wq = malloc(wb);
        for (int row = 0; row < ROWS; row++) {
            if (t == LYRA_TYPE_F32) memcpy(wq + row * rb, wf + row * E, rb);
            else lyra_quantize_row(t, wf + row * E, wq + row * rb, E);
        }
        for (int di = 0; di < 2; di++) {
            lyra_device *d = dv[di];
            size_t ws = d->ops->matmul_work_size(d, t, E, NTOK);
            void *work = ws ? put(d, NULL, ws) : NULL;
            d->ops->set_work(d, work, ws);
            void *W = put(d, wq, wb), *X = put(d, x, sizeof x);
            out[di][0] = put(d, NULL, NTOK * ROWS * 4);
            out[di][1] = put(d, NULL, NTOK * E * 4);
            d->ops->matmul(d, t, W, ROWS, E, X, NTOK, out[di][0]);
            d->ops->get_rows(d, t, W, E, ids, NTOK, out[di][1]);
            CHECK(d->ops->sync(d, &err) == LYRA_OK, "%s sync: %s", d->id, err.msg);
            d->ops->free(d, W, wb);
            d->ops->free(d, X, sizeof x);
            if (work) d->ops->free(d, work, ws);
            d->ops->set_work(d, NULL, 0);
        }
        CHECK(same(cpu, out[0][0], sim, out[1][0], NTOK * ROWS * 4), "matmul %s bitwise",
              lyra_type_name(t));
        CHECK(same(cpu, out[0][1], sim, out[1][1], NTOK * E * 4), "get_rows %s bitwise",
              lyra_type_name(t));
        for (int di = 0; di < 2; di++) {
            dv[di]->ops->free(dv[di], out[di][0], NTOK * ROWS * 4);
            dv[di]->ops->free(dv[di], out[di][1], NTOK * E * 4);
        }
        free(wq);
    }
    /* rmsnorm, rope (with freq factors), kv_store + attention over chunks
     * (positions 0..NPOS-1 in chunks of CH, F16 and F32), swiglu, add */
    for (int kvt = 0; kvt < 2; kvt++) {
        lyra_type kt = kvt ? LYRA_TYPE_F32 : LYRA_TYPE_F16;
        size_t chunk = (size_t)CH * NKV * HD * (kvt ? 4 : 2);
        int nch = (NPOS + CH - 1) / CH;
        for (int di = 0; di < 2; di++) {
            lyra_device *d = dv[di];
            void *X = put(d, x, sizeof x), *Wn = put(d, w, sizeof w), *F = put(d, ffac, sizeof ffac);
            void *Q = put(d, q, sizeof q), *K = put(d, k, sizeof k), *V = put(d, v, sizeof v);
            void *kc[8], *vc[8];
            for (int c = 0; c < nch; c++) {
                kc[c] = put(d, NULL, chunk);
                vc[c] = put(d, NULL, chunk);
            }
            lyra_kv_view kv = {kc, vc, CH, kt, 0};
            lyra_rope rope = {HD, 10000.0f, 0.5f, F, 0};
            out[di][2] = put(d, NULL, sizeof x);
            out[di][3] = put(d, NULL, sizeof q);
            out[di][4] = put(d, NULL, sizeof x);
            d->ops->rmsnorm(d, X, Wn, 1e-5f, E, NTOK, out[di][2]);
            /* fill the cache: NPOS positions in batches of NTOK, then attend */
            for (int p0 = 0; p0 < NPOS; p0 += NTOK) {
                for (int t = 0; t < NTOK; t++) pos[t] = p0 + t;
                d->ops->copy_in(d, Q, q, sizeof q);
                d->ops->copy_in(d, K, k, sizeof k);
                d->ops->rope(d, Q, NTOK, NH, HD, pos, &rope);
                d->ops->rope(d, K, NTOK, NKV, HD, pos, &rope);
                d->ops->kv_store(d, &kv, p0, NTOK, NKV * HD, K, V);
                d->ops->attention(d, Q, &kv, p0, NTOK, &(lyra_attn_params){NH, NKV, HD, 0.125f, 0, 0}, out[di][3]);
            }
            d->ops->swiglu(d, X, out[di][2], NTOK * E, out[di][4]);
            d->ops->add(d, out[di][4], X, NTOK * E);
            CHECK(d->ops->sync(d, &err) == LYRA_OK, "%s sync: %s", d->id, err.msg);
            out[di][5] = kc[nch - 1];
            for (int c = 0; c < nch - 1; c++) {
                d->ops->free(d, kc[c], chunk);
                d->ops->free(d, vc[c], chunk);
            }
            d->ops->free(d, vc[nch - 1], chunk);
            d->ops->free(d, X, sizeof x);
            d->ops->free(d, Wn, sizeof w);
            d->ops->free(d, F, sizeof ffac);
            d->ops->free(d, Q, sizeof q);
            d->ops->free(d, K, sizeof k);
            d->ops->free(d, V, sizeof v);
        }
        CHECK(same(cpu, out[0][2], sim, out[1][2], sizeof x), "rmsnorm bitwise");
        CHECK(same(cpu, out[0][3], sim, out[1][3], sizeof q), "rope+attention (%s KV) bitwise",
              kvt ? "F32" : "F16");
        CHECK(same(cpu, out[0][4], sim, out[1][4], sizeof x), "swiglu+add bitwise");
        CHECK(same(cpu, out[0][5], sim, out[1][5], chunk), "kv_store bitwise");
        /* not trivially equal: attention output is not all zeros */
        float probe[4];
        sim->ops->copy_out(sim, probe, out[1][3], sizeof probe);
        CHECK(probe[0] != 0.0f || probe[1] != 0.0f, "attention computed something");
        for (int di = 0; di < 2; di++) {
            dv[di]->ops->free(dv[di], out[di][2], sizeof x);
            dv[di]->ops->free(dv[di], out[di][3], sizeof q);
            dv[di]->ops->free(dv[di], out[di][4], sizeof x);
            dv[di]->ops->free(dv[di], out[di][5], chunk);
        }
    }
    CHECK(sim->stats.allocated == 0, "sim: everything freed (%llu)",
          (unsigned long long)sim->stats.allocated);
    lyra_device_free(cpu);
    lyra_device_free(sim);
}

/* Debug builds: operands must be the device's memory. */
static void test_operand_checks(void) {
    lyra_device *d = new_sim(0, 1 << 20, 1 << 20);
    lyra_error err;
    float host[64] = {0};
    void *a = put(d, NULL, sizeof host);
    /* copies check the device side in every build */
    CHECK(d->ops->copy_in(d, host, host, sizeof host) != LYRA_OK, "copy_in to host memory refused");
    CHECK(d->ops->copy_in(d, a, host, sizeof host + 4) != LYRA_OK, "copy_in past the end refused");
    CHECK(d->ops->copy_out(d, host, (char *)a + 4, sizeof host) != LYRA_OK, "copy_out past the end");
    CHECK(d->ops->copy_out(d, host, (char *)a + 4, sizeof host - 4) == LYRA_OK, "copy_out inside");
    /* freeing what it did not allocate is reported */
    d->ops->free(d, host, sizeof host);
    CHECK(d->ops->sync(d, &err) == LYRA_ERR_RUNTIME && strstr(err.msg, "did not allocate") &&
              !strncmp(err.msg, "gpu 0 (sim): ", 13),
          "foreign free: %s", err.msg);
    CHECK(d->ops->sync(d, &err) == LYRA_OK, "reported once");
#ifdef SIM_CHECKS
    float *y = a;
    y[0] = 7.0f;
    d->ops->add(d, a, host, 64); /* y is host memory: refused, nothing computed */
    CHECK(d->ops->sync(d, &err) == LYRA_ERR_RUNTIME && strstr(err.msg, "operand y") &&
              strstr(err.msg, "not memory of this device"),
          "host operand: %s", err.msg);
    CHECK(y[0] == 7.0f, "op skipped");
    d->ops->add(d, a, (float *)a + 1, 64); /* one float past the end */
    CHECK(d->ops->sync(d, &err) == LYRA_ERR_RUNTIME, "past the end: %s", err.msg);
    d->ops->add(d, a, a, 64);
    CHECK(d->ops->sync(d, &err) == LYRA_OK && y[0] == 14.0f, "own memory: fine");
    /* another simulated GPU's memory is not this one's */
    lyra_device *d2 = new_sim(1, 1 << 20, 1 << 20);
    void *b = put(d2, NULL, sizeof host);
    d->ops->add(d, a, b, 64);
    CHECK(d->ops->sync(d, &err) == LYRA_ERR_RUNTIME, "other GPU's memory: %s", err.msg);
    d2->ops->free(d2, b, sizeof host);
    lyra_device_free(d2);
#else
    printf("release build: operand checks not compiled\n");
#endif
    d->ops->free(d, a, sizeof host);
    lyra_device_free(d);
}

int main(void) {
    test_parse();
    test_alloc();
    test_ops();
    test_operand_checks();
    return test_done();
}
