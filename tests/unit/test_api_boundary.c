/* test_api_boundary.c: the public API that replaced internal calls and
 * environment variables: lyra_backend_params (given to lyra_model_open
 * instead of LYRA_SIM_GPUS / LYRA_CPU / LYRA_FAIL_ALLOC, with the same
 * messages as the environment's), the vocabulary and metadata accessors
 * (lyra_token_text, lyra_token_find, lyra_model_meta_str,
 * lyra_model_chat_template), lyra_pipeline_open's status, the one comma-list
 * splitter (core/env.h) and the log sink used from several threads. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/env.h"
#include "core/log.h"
#include "lyra.h"
#include "testutil.h"

static const char *g_model;

/* Open g_model with backend bp (NULL: the environment) and the device map
 * into map; returns the status, err filled. */
static int open_with(const lyra_backend_params *bp, char *map, size_t cap, lyra_error *err) {
    lyra_model_params mp = lyra_model_default_params();
    mp.backend = bp;
    lyra_model *m;
    int rc = lyra_model_open(g_model, &mp, &m, err);
    if (map) map[0] = '\0';
    if (rc) return rc;
    if (map) lyra_model_device_map(m, map, cap);
    lyra_model_free(m);
    return LYRA_OK;
}

/* The error of bp's value given through the API equals the environment's. */
static void same_error(const char *var, const lyra_backend_params *bp, const char *value) {
    lyra_error e_api, e_env;
    int rc_api = open_with(bp, NULL, 0, &e_api);
    setenv(var, value, 1);
    int rc_env = open_with(NULL, NULL, 0, &e_env);
    unsetenv(var);
    CHECK(rc_api == LYRA_ERR_INPUT && rc_env == rc_api, "%s=%s: rc %d / %d", var, value, rc_api, rc_env);
    CHECK(!strcmp(e_api.msg, e_env.msg), "%s=%s: api [%s] env [%s]", var, value, e_api.msg, e_env.msg);
    CHECK(!strncmp(e_api.msg, var, strlen(var)), "%s: message names it: %s", var, e_api.msg);
}

static void test_backend(void) {
    unsetenv("LYRA_SIM_GPUS");
    setenv("LYRA_CPU", "scalar", 1);
    setenv("LYRA_ALLOC_STATS", "0", 1);
    lyra_backend_params e = lyra_backend_params_from_env();
    CHECK(!e.sim_gpus && e.cpu_path && !strcmp(e.cpu_path, "scalar") && !e.alloc_stats, "from env");
    setenv("LYRA_ALLOC_STATS", "1", 1);
    CHECK(lyra_backend_params_from_env().alloc_stats == 1, "LYRA_ALLOC_STATS=1");
    unsetenv("LYRA_ALLOC_STATS");
    unsetenv("LYRA_CPU");
    lyra_backend_params d = lyra_backend_default_params();
    CHECK(!d.sim_gpus && !d.cuda_devices && !d.cpu_path && !d.fail_alloc && !d.alloc_stats, "defaults");

    char map[4096];
    lyra_error err;
    /* simulated GPUs from the API, none in the environment */
    lyra_backend_params bp = lyra_backend_default_params();
    bp.sim_gpus = "64MiB";
    CHECK(open_with(&bp, map, sizeof map, &err) == LYRA_OK, "sim_gpus: %s", err.msg);
    CHECK(strstr(map, "\"model.layers.0\":\"0\"") != NULL, "a layer on simulated GPU 0: %s", map);
    /* the API's settings win over the environment's (a malformed one here) */
    setenv("LYRA_SIM_GPUS", "bogus", 1);
    setenv("LYRA_CPU", "bogus", 1);
    bp = lyra_backend_default_params();
    CHECK(open_with(&bp, map, sizeof map, &err) == LYRA_OK, "env ignored: %s", err.msg);
    CHECK(strstr(map, "\"0\"") == NULL, "no GPU: %s", map);
    unsetenv("LYRA_SIM_GPUS");
    unsetenv("LYRA_CPU");
    /* bad values: the same message and code as the environment's */
    bp = lyra_backend_default_params();
    bp.sim_gpus = "6GiB,,1GiB";
    same_error("LYRA_SIM_GPUS", &bp, "6GiB,,1GiB");
    bp = lyra_backend_default_params();
    bp.cpu_path = "avx9";
    same_error("LYRA_CPU", &bp, "avx9");
    bp = lyra_backend_default_params();
    bp.fail_alloc = "cpu:1,zz:2";
    same_error("LYRA_FAIL_ALLOC", &bp, "cpu:1,zz:2");
}

static void test_accessors(void) {
    lyra_error err;
    lyra_model *m;
    if (lyra_model_open(g_model, NULL, &m, &err)) {
        CHECK(0, "open: %s", err.msg);
        return;
    }
    char buf[64];
    int32_t bos = lyra_token_bos(m);
    size_t n = lyra_token_text(m, bos, buf, sizeof buf);
    CHECK(n == 3 && !memcmp(buf, "<s>", 3), "BOS text: %zu [%.*s]", n, (int)(n < 64 ? n : 64), buf);
    CHECK(lyra_token_find(m, "<s>", 3) == bos, "find <s>");
    CHECK(lyra_token_find(m, "no such token", 13) == -1, "find: none");
    CHECK(lyra_token_text(m, -1, buf, sizeof buf) == 0, "text of -1");
    CHECK(lyra_token_text(m, lyra_model_n_vocab(m), buf, sizeof buf) == 0, "text out of range");
    CHECK(lyra_token_text(m, bos, buf, 2) == 3 && !memcmp(buf, "<s", 2), "cut text");

    CHECK(lyra_model_meta_str(m, "general.architecture", buf, sizeof buf) == 5 && !strcmp(buf, "llama"),
          "general.architecture: %s", buf);
    CHECK(lyra_model_meta_str(m, "general.architecture", NULL, 0) == 5, "length only");
    CHECK(lyra_model_meta_str(m, "general.architecture", buf, 3) == 5 && !strcmp(buf, "ll"), "cut: %s", buf);
    strcpy(buf, "x");
    CHECK(lyra_model_meta_str(m, "no.such.key", buf, sizeof buf) == -1 && !strcmp(buf, "x"), "absent");
    CHECK(lyra_model_meta_str(m, "llama.context_length", buf, sizeof buf) == -1, "not a string");
    CHECK(lyra_model_chat_template(m, buf, sizeof buf) == -1, "no chat template");
    lyra_model_free(m);

    lyra_pipeline *p = (lyra_pipeline *)&err; /* set to NULL on failure */
    CHECK(lyra_pipeline_open(g_model, "summarization", NULL, NULL, &p, &err) == LYRA_ERR_INPUT && !p &&
              !strncmp(err.msg, "task: ", 6),
          "pipeline_open: bad task: %s", err.msg);
}

static void test_list(void) {
    const char *want[] = {"a", "", "bc", ""};
    const char *cur = "a,,bc,", *e;
    size_t len;
    int i = 0;
    while (lyra_list_next(&cur, &e, &len)) {
        CHECK(i < 4 && len == strlen(want[i]) && !strncmp(e, want[i], len), "entry %d: %.*s", i, (int)len, e);
        i++;
    }
    CHECK(i == 4 && cur == NULL, "4 entries: %d", i);
    cur = "";
    CHECK(lyra_list_next(&cur, &e, &len) == 1 && len == 0 && !lyra_list_next(&cur, &e, &len), "\"\": one empty");
}

static int g_lines;
static void count_sink(lyra_log_level level, const char *line, void *user) {
    (void)level; (void)line; (void)user;
    g_lines++; /* called under the log mutex */
}
static void *log_worker(void *arg) {
    (void)arg;
    for (int i = 0; i < 2000; i++) lyra_log(LYRA_LOG_WARN, "line %d", i);
    return NULL;
}

static void test_log_threads(void) {
    lyra_log_set(count_sink, LYRA_LOG_WARN, NULL);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, log_worker, NULL);
    for (int i = 0; i < 200; i++) lyra_log_set(count_sink, LYRA_LOG_WARN, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    lyra_log_set(NULL, LYRA_LOG_WARN, NULL);
    CHECK(g_lines == 8000, "lines from 4 threads: %d", g_lines);
}

int main(void) {
    g_model = test_shared_path("models/stories260K.gguf");
    test_list();
    test_log_threads();
    test_backend();
    test_accessors();
    return test_done();
}
