/* test_model_ref.c: -m / model_id resolution (src/config/model_ref.h) on
 * fake trees built in a temp dir: plain files, split models, directories,
 * and Hugging Face hub caches laid out as huggingface_hub writes them
 * (models--org--name/{blobs/HASH, refs/main, snapshots/REV/FILE -> ../../blobs/HASH}):
 * tags, refs/main, several snapshots, ambiguity, split files, broken links,
 * subfolders, and the HF_HUB_CACHE / HF_HOME / HOME order. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "config/model_ref.h"
#include "testutil.h"

static char g_root[1024]; /* the test's scratch directory */

/* mkdir -p of root/rel. */
static void mkdirs(const char *rel) {
    char p[2048];
    snprintf(p, sizeof p, "%.1000s/%.1000s", g_root, rel);
    for (char *s = p + strlen(g_root) + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0755);
            *s = '/';
        }
    mkdir(p, 0755);
}

/* A file root/rel holding text (its directories made). */
static void touch(const char *rel, const char *text) {
    char p[2048], d[2048];
    snprintf(p, sizeof p, "%s/%s", g_root, rel);
    snprintf(d, sizeof d, "%s", rel);
    char *s = strrchr(d, '/');
    if (s) {
        *s = '\0';
        mkdirs(d);
    }
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL, "create %s: %s", p, strerror(errno));
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* A symlink root/rel -> target (as written, relative or not). */
static void link_to(const char *target, const char *rel) {
    char p[2048], d[2048];
    snprintf(p, sizeof p, "%s/%s", g_root, rel);
    snprintf(d, sizeof d, "%s", rel);
    char *s = strrchr(d, '/');
    if (s) {
        *s = '\0';
        mkdirs(d);
    }
    unlink(p);
    CHECK(symlink(target, p) == 0, "symlink %s: %s", p, strerror(errno));
}

/* A hub file: blob HASH with text and snapshots/REV/FILE linking to it. */
static void hub_file(const char *repo, const char *rev, const char *file, const char *hash) {
    char rel[1024], target[512];
    snprintf(rel, sizeof rel, "hub/%s/blobs/%s", repo, hash);
    touch(rel, "GGUF");
    snprintf(rel, sizeof rel, "hub/%s/snapshots/%s/%s", repo, rev, file);
    int depth = 0; /* ../ for each directory level of file below the snapshot */
    for (const char *c = file; *c; c++) depth += *c == '/';
    target[0] = '\0';
    for (int i = 0; i < depth + 2; i++) strcat(target, "../");
    strcat(target, "blobs/");
    strcat(target, hash);
    link_to(target, rel);
}

/* Resolve ref; return the path relative to g_root (static), or NULL with
 * *code and msg set. */
static const char *resolve(const char *ref, int *code, char *msg, size_t cap) {
    static char rel[2048];
    char *path = NULL;
    lyra_error err;
    lyra_err_clear(&err);
    int rc = lyra_model_ref_resolve(ref, "-m", &path, &err);
    *code = rc;
    snprintf(msg, cap, "%s", err.msg);
    if (rc) {
        CHECK(path == NULL, "%s: path set on failure", ref);
        CHECK(strncmp(err.msg, "-m: ", 4) == 0, "%s: message does not start with the flag: %s", ref, err.msg);
        CHECK(strchr(err.msg, '\n') == NULL, "%s: message is not one line", ref);
        return NULL;
    }
    size_t k = strlen(g_root);
    snprintf(rel, sizeof rel, "%s", !strncmp(path, g_root, k) && path[k] == '/' ? path + k + 1 : path);
    free(path);
    return rel;
}

/* ref resolves to want (relative to g_root). */
static void expect_path(const char *ref, const char *want) {
    int code;
    char msg[1024];
    const char *got = resolve(ref, &code, msg, sizeof msg);
    CHECK(got && !strcmp(got, want), "%s: got %s (%s), want %s", ref, got ? got : "error", msg, want);
}

/* ref fails with exit 2 and a message holding each of the NULL-terminated
 * substrings. */
static void expect_error(const char *ref, ...) {
    int code;
    char msg[1024];
    const char *got = resolve(ref, &code, msg, sizeof msg);
    CHECK(!got && code == LYRA_ERR_INPUT, "%s: want error 2, got %s code %d", ref, got ? got : "-", code);
    va_list ap;
    va_start(ap, ref);
    for (const char *s; (s = va_arg(ap, const char *)) != NULL;)
        CHECK(strstr(msg, s) != NULL, "%s: message lacks '%s': %s", ref, s, msg);
    va_end(ap);
}

static void set_env(const char *hub_cache, const char *hf_home, const char *home) {
    if (hub_cache) setenv("HF_HUB_CACHE", hub_cache, 1); else unsetenv("HF_HUB_CACHE");
    if (hf_home) setenv("HF_HOME", hf_home, 1); else unsetenv("HF_HOME");
    if (home) setenv("HOME", home, 1); else unsetenv("HOME");
}

static void test_files_and_dirs(void) {
    touch("plain/model.gguf", "GGUF");
    expect_path("plain/model.gguf", "plain/model.gguf");
    expect_path("plain", "plain/model.gguf");
    expect_error("plain/missing.gguf", "plain/missing.gguf", "no such file", NULL);
    expect_error("", "empty", NULL);

    /* split: the first part counts once, later parts are refused */
    touch("split/big-00001-of-00003.gguf", "GGUF");
    touch("split/big-00002-of-00003.gguf", "GGUF");
    touch("split/big-00003-of-00003.gguf", "GGUF");
    expect_path("split", "split/big-00001-of-00003.gguf");
    expect_path("split/big-00001-of-00003.gguf", "split/big-00001-of-00003.gguf");
    expect_error("split/big-00002-of-00003.gguf", "part 2 of 3", "split/big-00001-of-00003.gguf", NULL);

    /* several: an error listing them; DIR:TAG picks; mmproj is not a model */
    touch("many/m-Q4_K_M.gguf", "GGUF");
    touch("many/m-Q8_0.gguf", "GGUF");
    touch("many/mmproj-m-f16.gguf", "GGUF");
    touch("many/README.md", "x");
    expect_error("many", "2 GGUF model files", "m-Q4_K_M.gguf, m-Q8_0.gguf", "looked in: many", NULL);
    expect_path("many:q8_0", "many/m-Q8_0.gguf");
    expect_path("many:Q4_K_M", "many/m-Q4_K_M.gguf");
    expect_error("many:Q5_K_M", "no GGUF model file matches the tag 'Q5_K_M'", "m-Q8_0.gguf", NULL);
    mkdirs("empty");
    expect_error("empty", "no GGUF model file", "looked in: empty", NULL);
    expect_error("plain/model.gguf:Q4", "is a file", NULL);

    /* a symlinked model file and a symlinked directory */
    {
        char tgt[2048];
        snprintf(tgt, sizeof tgt, "%s/plain/model.gguf", g_root);
        link_to(tgt, "linked.gguf");
        snprintf(tgt, sizeof tgt, "%s/split", g_root);
        link_to(tgt, "splitlink");
    }
    expect_path("linked.gguf", "linked.gguf");
    expect_path("splitlink", "splitlink/big-00001-of-00003.gguf");
}

static void test_hub(void) {
    char hub[1200];
    snprintf(hub, sizeof hub, "%s/hub", g_root);
    set_env(hub, NULL, NULL);
    const char *r = "models--TheOrg--Tiny-GGUF";
    hub_file(r, "aaa111", "tiny-Q4_K_M.gguf", "h1");
    hub_file(r, "aaa111", "tiny-Q8_0.gguf", "h2");
    hub_file(r, "aaa111", "tiny-Q4_0.gguf", "h3");
    hub_file(r, "aaa111", "tiny-Q4_0_4_4.gguf", "h4");
    hub_file(r, "aaa111", "mmproj-tiny-F16.gguf", "h5");
    touch("hub/models--TheOrg--Tiny-GGUF/snapshots/aaa111/README.md", "x");
    touch("hub/models--TheOrg--Tiny-GGUF/refs/main", "aaa111\n");

    /* tags, case-insensitive, the snapshot link (not the blob) returned */
    expect_path("TheOrg/Tiny-GGUF:Q8_0", "hub/models--TheOrg--Tiny-GGUF/snapshots/aaa111/tiny-Q8_0.gguf");
    expect_path("TheOrg/Tiny-GGUF:q4_k_m", "hub/models--TheOrg--Tiny-GGUF/snapshots/aaa111/tiny-Q4_K_M.gguf");
    expect_path("hf.co/TheOrg/Tiny-GGUF:Q8_0", "hub/models--TheOrg--Tiny-GGUF/snapshots/aaa111/tiny-Q8_0.gguf");
    /* Q4_0 stands alone in tiny-Q4_0.gguf only (not in Q4_0_4_4) */
    expect_path("TheOrg/Tiny-GGUF:Q4_0", "hub/models--TheOrg--Tiny-GGUF/snapshots/aaa111/tiny-Q4_0.gguf");
    /* Q4 is in three names, alone in none: ambiguous */
    expect_error("TheOrg/Tiny-GGUF:Q4", "3 GGUF model files match the tag 'Q4'", "tiny-Q4_0.gguf", NULL);
    /* the repo id case-insensitively */
    expect_path("theorg/tiny-gguf:Q8_0", "hub/models--TheOrg--Tiny-GGUF/snapshots/aaa111/tiny-Q8_0.gguf");
    /* no tag, several: every candidate (not mmproj), the place, refs/main, the variable */
    expect_error("TheOrg/Tiny-GGUF", "4 GGUF model files", "add :TAG",
                 "tiny-Q4_0.gguf, tiny-Q4_0_4_4.gguf, tiny-Q4_K_M.gguf, tiny-Q8_0.gguf",
                 "snapshots/aaa111 (refs/main; cache from HF_HUB_CACHE)", NULL);
    /* a tag nothing has */
    expect_error("TheOrg/Tiny-GGUF:IQ2_XS", "no GGUF model file matches the tag 'IQ2_XS'", "found: tiny-Q4_0.gguf",
                 NULL);
    /* a repo not in the cache: both places named */
    expect_error("TheOrg/Other:Q4_K_M", "not found", "TheOrg/Other:Q4_K_M (no such file or directory)",
                 "hub/models--TheOrg--Other", "from HF_HUB_CACHE", NULL);
    /* the repo directory itself */
    {
        char p[1400];
        snprintf(p, sizeof p, "%s/hub/models--TheOrg--Tiny-GGUF/:Q8_0", g_root);
        int code;
        char msg[1024];
        const char *got = resolve(p, &code, msg, sizeof msg);
        CHECK(got && !strcmp(got, "hub/models--TheOrg--Tiny-GGUF/snapshots/aaa111/tiny-Q8_0.gguf"),
              "repo dir: %s", got ? got : msg);
    }

    /* refs/main picks among several snapshots; without it: an error, or the only one */
    const char *r2 = "models--o--revs";
    hub_file(r2, "old000", "revs-Q8_0.gguf", "b1");
    hub_file(r2, "new111", "revs-Q8_0.gguf", "b2");
    touch("hub/models--o--revs/refs/main", "new111");
    expect_path("o/revs", "hub/models--o--revs/snapshots/new111/revs-Q8_0.gguf");
    touch("hub/models--o--revs/refs/main", "gone222\n");
    expect_error("o/revs", "refs/main names revision gone222", NULL);
    {
        char p[1400];
        snprintf(p, sizeof p, "%s/hub/models--o--revs/refs/main", g_root);
        unlink(p);
    }
    expect_error("o/revs", "2 snapshots and no refs/main", "new111", "old000", NULL);
    const char *r3 = "models--o--single";
    hub_file(r3, "only999", "single.gguf", "c1");
    expect_path("o/single", "hub/models--o--single/snapshots/only999/single.gguf");

    /* split files: only the first part is a candidate, also in a subfolder */
    const char *r4 = "models--o--split";
    hub_file(r4, "s1", "Q4_K_M/big-Q4_K_M-00001-of-00002.gguf", "d1");
    hub_file(r4, "s1", "Q4_K_M/big-Q4_K_M-00002-of-00002.gguf", "d2");
    hub_file(r4, "s1", "big-Q8_0.gguf", "d3");
    touch("hub/models--o--split/refs/main", "s1");
    expect_path("o/split:Q4_K_M", "hub/models--o--split/snapshots/s1/Q4_K_M/big-Q4_K_M-00001-of-00002.gguf");
    expect_error("o/split", "2 GGUF model files", "Q4_K_M/big-Q4_K_M-00001-of-00002.gguf, big-Q8_0.gguf", NULL);
    { /* the repo directory itself (a trailing slash too) */
        char p[1400], msg[1024];
        int code;
        snprintf(p, sizeof p, "%s/hub/models--o--split/", g_root);
        const char *got = resolve(p, &code, msg, sizeof msg);
        CHECK(!got && strstr(msg, "2 GGUF model files") && strstr(msg, "snapshots/s1 (refs/main)"),
              "repo dir with a slash, no tag: %s", got ? got : msg);
    }

    /* a broken link (blob missing: an unfinished download) is skipped */
    const char *r5 = "models--o--broken";
    hub_file(r5, "x1", "ok-Q8_0.gguf", "e1");
    link_to("../../blobs/missing", "hub/models--o--broken/snapshots/x1/bad-Q4_K_M.gguf");
    expect_path("o/broken", "hub/models--o--broken/snapshots/x1/ok-Q8_0.gguf");
    expect_error("o/broken:Q4_K_M", "no GGUF model file matches the tag 'Q4_K_M'", "1 broken link skipped", NULL);

    /* a repo with no snapshots (nothing downloaded) */
    mkdirs("hub/models--o--nothing/refs");
    expect_error("o/nothing", "has no snapshots/", NULL);

    /* not an org/name form, not a file */
    expect_error("a/b/c:Q4", "no such file or directory", NULL);
}

/* HF_HUB_CACHE > HF_HOME/hub > HOME/.cache/huggingface/hub. */
static void test_cache_order(void) {
    char a[1200], b[1200], c[1200], buf[2048];
    const char *src = NULL;
    snprintf(a, sizeof a, "%s/envA", g_root);
    snprintf(b, sizeof b, "%s/envB", g_root);
    snprintf(c, sizeof c, "%s/envC", g_root);
    /* the same repo in each place, a different file in each */
    touch("envA/models--o--where/snapshots/r/a.gguf", "GGUF");
    touch("envB/hub/models--o--where/snapshots/r/b.gguf", "GGUF");
    touch("envC/.cache/huggingface/hub/models--o--where/snapshots/r/c.gguf", "GGUF");

    set_env(a, b, c);
    CHECK(lyra_model_ref_hf_cache(buf, sizeof buf, &src) == 0 && !strcmp(buf, a) && !strcmp(src, "HF_HUB_CACHE"),
          "HF_HUB_CACHE: %s %s", buf, src ? src : "");
    expect_path("o/where", "envA/models--o--where/snapshots/r/a.gguf");
    set_env(NULL, b, c);
    expect_path("o/where", "envB/hub/models--o--where/snapshots/r/b.gguf");
    CHECK(lyra_model_ref_hf_cache(buf, sizeof buf, &src) == 0 && !strcmp(src, "HF_HOME"), "HF_HOME: %s", buf);
    set_env("", "", c); /* empty counts as unset */
    expect_path("o/where", "envC/.cache/huggingface/hub/models--o--where/snapshots/r/c.gguf");
    CHECK(lyra_model_ref_hf_cache(buf, sizeof buf, &src) == 0 && !strcmp(src, "HOME"), "HOME: %s", buf);
    expect_error("o/absent", "from ~/.cache/huggingface/hub", NULL);
    /* ~ in HF_HOME is HOME */
    set_env(NULL, "~/.cache/huggingface", c);
    expect_path("o/where", "envC/.cache/huggingface/hub/models--o--where/snapshots/r/c.gguf");
    set_env(NULL, NULL, NULL);
    CHECK(lyra_model_ref_hf_cache(buf, sizeof buf, &src) == -1, "no cache without HOME: %s", buf);
    expect_error("o/where", "no Hugging Face cache", NULL);
}

/* Hugging Face snapshots (safetensors): a directory, or the cache's; refs,
 * revisions, a GGUF beside a snapshot, missing files. */
/* The config's revision key (--revision, a file's "revision", a pipeline
 * kwarg) through lyra_config_resolve_model, on the st/hub cache of
 * test_snapshots: a branch, a commit, refs/main by name, org/name@REV that
 * agrees, one that does not (an error naming both and the key's source),
 * and a local directory, which has no revisions. */
static void revision_case(lyra_config *c, const char *ref, const char *want, const char *msg_part) {
    char *path = NULL;
    lyra_error err;
    lyra_err_clear(&err);
    int rc = lyra_config_resolve_model(c, ref, "-m", &path, &err);
    if (want) CHECK(rc == 0 && path && strstr(path, want), "%s: got %s, want %s", ref, path ? path : err.msg, want);
    else CHECK(rc == LYRA_ERR_INPUT && !path && strstr(err.msg, msg_part) && !strchr(err.msg, '\n'),
               "%s: want an error with '%s', got %s", ref, msg_part, path ? path : err.msg);
    free(path);
}

static void test_revision_key(void) {
    lyra_error err;
    lyra_config *c = lyra_config_new();
    CHECK(c != NULL, "config");
    if (!c) return;
    revision_case(c, "org/snap", "snapshots/aaa111", NULL); /* no key: refs/main */
    CHECK(lyra_config_set(c, "revision", "dev", "flag:--revision", "--revision", &err) == 0, "%s", err.msg);
    revision_case(c, "org/snap", "snapshots/bbb222", NULL);
    revision_case(c, "org/snap:safetensors", "snapshots/bbb222", NULL);
    revision_case(c, "org/snap@dev", "snapshots/bbb222", NULL);
    revision_case(c, "org/snap@aaa111", NULL, "-m: org/snap@aaa111 names revision aaa111 but --revision says dev: keep one");
    revision_case(c, "stdir", "stdir", NULL); /* a local snapshot directory: no revisions */
    CHECK(lyra_config_set(c, "revision", "main", "api", NULL, &err) == 0, "%s", err.msg);
    revision_case(c, "org/snap", "snapshots/aaa111", NULL);
    CHECK(lyra_config_set(c, "revision", "aaa111", "api", NULL, &err) == 0, "%s", err.msg);
    revision_case(c, "org/snap", "snapshots/aaa111", NULL);
    CHECK(lyra_config_set(c, "revision", "v9", "api", NULL, &err) == 0, "%s", err.msg);
    revision_case(c, "org/snap", NULL, "revision v9 not found");
    CHECK(lyra_config_set(c, "revision", "../x", "api", NULL, &err) == LYRA_ERR_INPUT &&
              strstr(err.msg, "revision: \"../x\" is not a branch, tag or commit name"), "%s", err.msg);
    CHECK(lyra_config_set(c, "revision", "", "api", NULL, &err) == LYRA_ERR_INPUT, "empty revision");
    /* a file's key: the message names the file */
    const char *cfg = "{\"model_id\": \"org/snap@dev\", \"revision\": \"aaa111\"}";
    char name[1300];
    snprintf(name, sizeof name, "%s/rev.json", g_root);
    CHECK(lyra_config_load_buffer(c, cfg, strlen(cfg), name, &err) == 0, "%s", err.msg);
    revision_case(c, "org/snap", "snapshots/aaa111", NULL);
    revision_case(c, json_string_value(c->value[LYRA_CFG_MODEL_ID]), NULL, "but revision in ");
    revision_case(c, json_string_value(c->value[LYRA_CFG_MODEL_ID]), NULL, "rev.json says aaa111");
    lyra_config_free(c);
}

static void test_snapshots(void) {
    char hub[1200], msg[1024];
    int code;
    snprintf(hub, sizeof hub, "%s/st/hub", g_root);
    set_env(hub, NULL, NULL);
    /* a plain snapshot directory */
    touch("stdir/config.json", "{}");
    touch("stdir/tokenizer.json", "{}");
    touch("stdir/model.safetensors", "x");
    expect_path("stdir", "stdir");
    /* sharded: the index counts */
    touch("stshard/config.json", "{}");
    touch("stshard/tokenizer.json", "{}");
    touch("stshard/model.safetensors.index.json", "{}");
    expect_path("stshard", "stshard");
    /* missing files are named */
    touch("stnotok/config.json", "{}");
    touch("stnotok/model.safetensors", "x");
    expect_error("stnotok", "tokenizer.json not found in stnotok; lyra needs it", NULL);
    touch("stnow/config.json", "{}");
    touch("stnow/tokenizer.json", "{}");
    expect_error("stnow", "no model.safetensors", "stnow", NULL);
    /* tokenizer-only directory */
    touch("tokonly/tokenizer.json", "{}");
    expect_path("tokonly", "tokonly");
    /* a GGUF beside a snapshot: an error naming both; :safetensors / :TAG pick */
    touch("both/config.json", "{}");
    touch("both/tokenizer.json", "{}");
    touch("both/model.safetensors", "x");
    touch("both/model-Q8_0.gguf", "GGUF");
    expect_error("both", "both a Hugging Face snapshot (config.json) and 1 GGUF model file (model-Q8_0.gguf)",
                 ":safetensors", NULL);
    expect_path("both:safetensors", "both");
    expect_path("both:Q8_0", "both/model-Q8_0.gguf");
    /* a GGUF repo with a config.json but no safetensors: its GGUF as before */
    touch("ggufrepo/config.json", "{}");
    touch("ggufrepo/m.gguf", "GGUF");
    expect_path("ggufrepo", "ggufrepo/m.gguf");

    /* the cache: refs/main, another branch, a commit, a missing revision */
    touch("st/hub/models--org--snap/refs/main", "aaa111\n");
    touch("st/hub/models--org--snap/refs/dev", "bbb222");
    const char *revs[2] = {"aaa111", "bbb222"};
    for (int i = 0; i < 2; i++) {
        hub_file("models--org--snap", revs[i], "config.json", i ? "h1" : "h0");
        hub_file("models--org--snap", revs[i], "tokenizer.json", i ? "h3" : "h2");
        hub_file("models--org--snap", revs[i], "model.safetensors", i ? "h5" : "h4");
    }
    /* hub_file's root is hub/: move the repo where HF_HUB_CACHE points */
    char from[1400], to[1400];
    snprintf(from, sizeof from, "%s/hub/models--org--snap/snapshots", g_root);
    snprintf(to, sizeof to, "%s/st/hub/models--org--snap/snapshots", g_root);
    CHECK(rename(from, to) == 0, "rename %s", strerror(errno));
    snprintf(from, sizeof from, "%s/hub/models--org--snap/blobs", g_root);
    snprintf(to, sizeof to, "%s/st/hub/models--org--snap/blobs", g_root);
    CHECK(rename(from, to) == 0, "rename %s", strerror(errno));
    expect_path("org/snap", "st/hub/models--org--snap/snapshots/aaa111");
    char *path = NULL;
    lyra_error err;
    CHECK(lyra_model_ref_resolve_rev("org/snap", "dev", "-m", &path, &err) == 0 && path &&
              strstr(path, "snapshots/bbb222"), "revision dev: %s", path ? path : err.msg);
    free(path);
    path = NULL;
    CHECK(lyra_model_ref_resolve_rev("org/snap", "bbb222", "-m", &path, &err) == 0 && path &&
              strstr(path, "snapshots/bbb222"), "revision commit: %s", path ? path : err.msg);
    free(path);
    path = NULL;
    CHECK(lyra_model_ref_resolve_rev("org/snap", "v9", "-m", &path, &err) == LYRA_ERR_INPUT &&
              strstr(err.msg, "revision v9 not found"), "missing revision: %s", err.msg);
    CHECK(lyra_model_ref_resolve_rev("org/snap", "../x", "-m", &path, &err) == LYRA_ERR_INPUT,
          "bad revision: %s", err.msg);
    expect_path("org/snap@dev", "st/hub/models--org--snap/snapshots/bbb222");
    expect_path("org/snap@aaa111", "st/hub/models--org--snap/snapshots/aaa111");
    expect_path("org/snap@dev:safetensors", "st/hub/models--org--snap/snapshots/bbb222");
    expect_error("org/snap@nope", "revision nope not found", NULL);
    test_revision_key();
    /* a snapshot missing tokenizer.json, through the cache */
    touch("st/hub/models--org--notok/refs/main", "c1");
    touch("st/hub/models--org--notok/snapshots/c1/config.json", "{}");
    touch("st/hub/models--org--notok/snapshots/c1/model.safetensors", "x");
    expect_error("org/notok", "tokenizer.json not found in", "models--org--notok/snapshots/c1; lyra needs it", NULL);
    (void)resolve;
    (void)code;
    (void)msg;
    set_env(NULL, NULL, NULL);
}

int main(void) {
    snprintf(g_root, sizeof g_root, "%s/model_ref", test_tmp_dir());
    mkdir(g_root, 0755);
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    if (chdir(g_root) != 0) {
        fprintf(stderr, "chdir %s failed\n", g_root);
        return 1;
    }
    test_files_and_dirs();
    test_hub();
    test_cache_order();
    test_snapshots();
    if (old_home) setenv("HOME", old_home, 1);
    free(old_home);
    return test_done();
}
