/* model_ref.c: resolving -m / model_id to a GGUF path or a Hugging Face
 * snapshot directory (see model_ref.h):
 * plain files, directories, and the local Hugging Face hub cache
 * (models--org--name/{refs/main, snapshots/REV/...} with files linked to
 * ../../blobs/HASH). Nothing is downloaded; nothing is printed. */
#include "model_ref.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "format/gguf.h"

#define REF_PATH 4096 /* longest path handled */
#define REF_DEPTH 2   /* directory levels searched below a snapshot / directory */
#define REF_LIST 480  /* bytes of file lists in messages */

/* ------------------------------------------------------------ small helpers */

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int ieq(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (lower((unsigned char)*a) != lower((unsigned char)*b)) return 0;
    return *a == *b;
}

static int ends_with_ci(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && ieq(s + n - k, suffix);
}

/* Where TAG occurs case-insensitively in s from position from on; -1 if not. */
static long find_ci(const char *s, size_t from, const char *tag) {
    size_t n = strlen(s), k = strlen(tag);
    for (size_t i = from; k && i + k <= n; i++) {
        size_t j = 0;
        while (j < k && lower((unsigned char)s[i + j]) == lower((unsigned char)tag[j])) j++;
        if (j == k) return (long)i;
    }
    return -1;
}

static int is_alnum(int c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* TAG occurs in s standing alone: not followed by a letter, digit or '_'
 * (and not preceded by a letter or digit). */
static int tag_alone(const char *s, const char *tag) {
    size_t k = strlen(tag);
    for (long at = find_ci(s, 0, tag); at >= 0; at = find_ci(s, (size_t)at + 1, tag)) {
        char before = at > 0 ? s[at - 1] : '/', after = s[at + (long)k];
        if (!is_alnum((unsigned char)before) && !is_alnum((unsigned char)after) && after != '_') return 1;
    }
    return 0;
}

/* Split-model part of a file name "...-NNNNN-of-MMMMM.gguf": 1 and *no,
 * *count set, else 0 (the GGUF reader's rule). */
static int split_part(const char *name, int *no, int *count) {
    size_t prefix;
    return lyra_gguf_split_name(name, &prefix, no, count);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* snprintf into a path buffer; -1 when it does not fit. */
static int join(char out[REF_PATH], const char *a, const char *b) {
    int k = snprintf(out, REF_PATH, "%s/%s", a, b);
    return k < 0 || k >= REF_PATH ? -1 : 0;
}

/* ------------------------------------------------------------ candidates */

/* The model files found under a directory. */
typedef struct cand_list {
    char **v;   /* [n] paths relative to the directory searched, malloc'd */
    int n;      /* count */
    int cap;    /* allocated */
    int broken; /* .gguf entries whose link target is missing (an unfinished download) */
    int oom;    /* an allocation failed */
} cand_list;

static void cands_free(cand_list *c) {
    for (int i = 0; i < c->n; i++) free(c->v[i]);
    free(c->v);
    memset(c, 0, sizeof *c);
}

static void cands_add(cand_list *c, const char *rel) {
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 8;
        char **v = realloc(c->v, sizeof *v * (size_t)cap);
        if (!v) {
            c->oom = 1;
            return;
        }
        c->v = v;
        c->cap = cap;
    }
    char *s = strdup(rel);
    if (!s) {
        c->oom = 1;
        return;
    }
    c->v[c->n++] = s;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collect the model GGUFs below dir (rel: the path so far, "" at the top):
 * *.gguf files that are not a later part of a split model and not a
 * multimodal projector (mmproj). Hidden entries are skipped. Symlinks are
 * followed (the HF cache's snapshot files are links into blobs/). */
static void scan(const char *dir, const char *rel, int depth, cand_list *c) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && !c->oom) {
        const char *name = e->d_name;
        if (name[0] == '.') continue;
        char path[REF_PATH], sub[REF_PATH];
        if (join(path, dir, name)) continue;
        int k = rel[0] ? snprintf(sub, sizeof sub, "%s/%s", rel, name) : snprintf(sub, sizeof sub, "%s", name);
        if (k < 0 || k >= (int)sizeof sub) continue;
        struct stat st;
        if (stat(path, &st) != 0) {
            if (ends_with_ci(name, ".gguf")) c->broken++;
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            if (depth < REF_DEPTH) scan(path, sub, depth + 1, c);
            continue;
        }
        int no, count;
        if (!S_ISREG(st.st_mode) || !ends_with_ci(name, ".gguf")) continue;
        if (split_part(name, &no, &count) && no != 1) continue;
        if (find_ci(name, 0, "mmproj") >= 0) continue;
        cands_add(c, sub);
    }
    closedir(d);
    if (c->n > 1) qsort(c->v, (size_t)c->n, sizeof *c->v, cmp_str);
}

/* "a.gguf, b.gguf" (only those matching tag when tag is given) into
 * out[cap], cut with ", ..." when long. */
static void list_names(const cand_list *c, const char *tag, char *out, size_t cap) {
    size_t o = 0;
    int shown = 0, total = 0;
    out[0] = '\0';
    for (int i = 0; i < c->n; i++) {
        if (tag && find_ci(c->v[i], 0, tag) < 0) continue;
        total++;
        size_t k = strlen(c->v[i]);
        if (o + k + 16 >= cap) continue;
        o += (size_t)snprintf(out + o, cap - o, "%s%s", shown ? ", " : "", c->v[i]);
        shown++;
    }
    if (shown < total) snprintf(out + o, cap - o, "%s... (%d more)", shown ? ", " : "", total - shown);
}

/* Pick one candidate of c by tag (NULL: the only one). Returns its index,
 * or -1 with err set: none, or several. what: the reference as typed, place:
 * where the search ran ("DIR", with why). */
static int choose(const cand_list *c, const char *tag, const char *where, const char *what,
                  const char *place, lyra_error *err) {
    char names[REF_LIST];
    char broken[64] = "";
    if (c->broken) snprintf(broken, sizeof broken, "; %d broken link%s skipped", c->broken, c->broken == 1 ? "" : "s");
    if (!tag) {
        if (c->n == 1) return 0;
        list_names(c, NULL, names, sizeof names);
        if (c->n == 0)
            lyra_err(err, LYRA_ERR_INPUT, where, "%s: no GGUF model file%s; looked in: %s", what, broken, place);
        else
            lyra_err(err, LYRA_ERR_INPUT, where,
                     "%s: %d GGUF model files, add :TAG (a part of the file name, e.g. :Q4_K_M) to pick "
                     "one; looked in: %s; found: %s", what, c->n, place, names);
        return -1;
    }
    int n_match = 0, n_alone = 0, i_match = -1, i_alone = -1;
    for (int i = 0; i < c->n; i++) {
        if (find_ci(c->v[i], 0, tag) < 0) continue;
        n_match++;
        i_match = i;
        if (tag_alone(c->v[i], tag)) {
            n_alone++;
            i_alone = i;
        }
    }
    if (n_match == 1) return i_match;
    if (n_alone == 1) return i_alone;
    if (n_match == 0) {
        list_names(c, NULL, names, sizeof names);
        lyra_err(err, LYRA_ERR_INPUT, where, "%s: no GGUF model file matches the tag '%s'%s; looked in: %s; found: %s",
                 what, tag, broken, place, c->n ? names : "none");
    } else {
        list_names(c, tag, names, sizeof names);
        lyra_err(err, LYRA_ERR_INPUT, where, "%s: %d GGUF model files match the tag '%s', give more of the name; "
                 "looked in: %s; found: %s", what, n_match, tag, place, names);
    }
    return -1;
}

static int is_dir(const char *p);

static int has_file(const char *dir, const char *name) {
    char p[REF_PATH];
    struct stat st;
    return !join(p, dir, name) && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* 1 if dir holds a *.safetensors file (a link to a present blob). */
static int has_safetensors(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d)) != NULL)
        found = e->d_name[0] != '.' && ends_with_ci(e->d_name, ".safetensors") && has_file(dir, e->d_name);
    closedir(d);
    return found;
}

/* dir as the model: a Hugging Face snapshot (config.json: it must have
 * tokenizer.json and safetensors weights) or a tokenizer-only directory
 * (tokenizer.json, no config.json: enough for `lyra tokenize`). */
static int take_snapshot(const char *dir, const char *where, const char *what, char **path, lyra_error *err) {
    if (!has_file(dir, "tokenizer.json"))
        return lyra_err(err, LYRA_ERR_INPUT, where, "%s: tokenizer.json not found in %s; lyra needs it", what, dir);
    if (has_file(dir, "config.json") && !has_file(dir, "model.safetensors.index.json") && !has_safetensors(dir))
        return lyra_err(err, LYRA_ERR_INPUT, where, "%s: no model.safetensors (nor model.safetensors.index.json) "
                        "in %s; lyra needs the weights in safetensors form", what, dir);
    if (!(*path = strdup(dir))) return lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
    return LYRA_OK;
}

/* The candidate of directory dir picked by tag, as a malloc'd path: a GGUF
 * file, or dir itself when it is a Hugging Face snapshot (config.json)
 * without GGUF files, or when tag is "safetensors". A snapshot with
 * safetensors weights that also holds GGUF files is, without a tag, an error
 * naming both (a GGUF repo's config.json alone does not count). */
static int pick_in_dir(const char *dir, const char *tag, const char *where, const char *what,
                       const char *place, char **path, lyra_error *err) {
    int snapshot = has_file(dir, "config.json");
    if (tag && ieq(tag, "safetensors") && snapshot) return take_snapshot(dir, where, what, path, err);
    cand_list c = {0};
    scan(dir, "", 0, &c);
    int rc = LYRA_OK;
    if (c.oom) rc = lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
    if (!rc && !tag && c.n == 0 && (snapshot || has_file(dir, "tokenizer.json"))) {
        cands_free(&c);
        return take_snapshot(dir, where, what, path, err);
    }
    if (!rc && !tag && snapshot && (has_file(dir, "model.safetensors.index.json") || has_safetensors(dir))) {
        char names[REF_LIST];
        list_names(&c, NULL, names, sizeof names);
        rc = lyra_err(err, LYRA_ERR_INPUT, where, "%s: both a Hugging Face snapshot (config.json) and %d GGUF "
                      "model file%s (%s); add :safetensors for the snapshot or :TAG (part of a file name) for a "
                      "GGUF file; looked in: %s", what, c.n, c.n == 1 ? "" : "s", names, place);
    }
    int i = rc ? -1 : choose(&c, tag, where, what, place, err);
    if (!rc && i < 0) rc = LYRA_ERR_INPUT;
    if (!rc) {
        char full[REF_PATH];
        if (join(full, dir, c.v[i])) rc = lyra_err(err, LYRA_ERR_INPUT, where, "%s: path too long", what);
        else if (!(*path = strdup(full))) rc = lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
    }
    cands_free(&c);
    return rc;
}

/* ------------------------------------------------------------ Hugging Face */

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int lyra_model_ref_hf_cache(char *buf, size_t cap, const char **source) {
    const char *home = getenv("HOME"), *v, *src, *suffix;
    if ((v = getenv("HF_HUB_CACHE")) && *v) {
        src = "HF_HUB_CACHE";
        suffix = "";
    } else if ((v = getenv("HF_HOME")) && *v) {
        src = "HF_HOME";
        suffix = "/hub";
    } else if (home && *home) {
        src = "HOME";
        v = "~";
        suffix = "/.cache/huggingface/hub";
    } else {
        return -1;
    }
    int k;
    if (v[0] == '~' && (v[1] == '/' || !v[1])) { /* expanded as huggingface_hub does */
        if (!home || !*home) return -1;
        k = snprintf(buf, cap, "%s%s%s", home, v + 1, suffix);
    } else {
        k = snprintf(buf, cap, "%s%s", v, suffix);
    }
    if (k < 0 || (size_t)k >= cap) return -1;
    if (source) *source = src;
    return 0;
}

/* Parse "org/name[:TAG]" (after an optional hf.co/ or huggingface.co/):
 * org, name and tag copied out (tag "" when absent). 1 if ref has that
 * form, else 0. Names: letters, digits, '-', '_', '.'. */
static int parse_repo(const char *ref, char *org, char *name, char *tag, size_t cap) {
    static const char *const prefixes[] = {"https://huggingface.co/", "https://hf.co/", "huggingface.co/", "hf.co/"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (!strncmp(ref, prefixes[i], strlen(prefixes[i]))) {
            ref += strlen(prefixes[i]);
            break;
        }
    const char *slash = strchr(ref, '/'), *colon = strchr(ref, ':');
    if (!slash || (colon && colon < slash)) return 0;
    size_t lo = (size_t)(slash - ref);
    const char *n0 = slash + 1;
    size_t ln = colon ? (size_t)(colon - n0) : strlen(n0);
    const char *t0 = colon ? colon + 1 : "";
    if (!lo || !ln || lo >= cap || ln >= cap || strlen(t0) >= cap) return 0;
    if (colon && !*t0) return 0;
    for (size_t i = 0; i < lo + 1 + ln; i++) {
        char ch = ref[i];
        if (i == lo) continue; /* the slash */
        if (!is_alnum((unsigned char)ch) && ch != '-' && ch != '_' && ch != '.') return 0;
    }
    if (ref[0] == '.' || n0[0] == '.') return 0;
    for (const char *p = t0; *p; p++)
        if (!is_alnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.') return 0;
    memcpy(org, ref, lo);
    org[lo] = '\0';
    memcpy(name, n0, ln);
    name[ln] = '\0';
    strcpy(tag, t0);
    return 1;
}

/* The repo directory hub/models--org--name, or a case-insensitive match of
 * it when the exact one is absent (the hub treats ids so). 0 when found. */
static int repo_dir(const char *hub, const char *org, const char *name, char out[REF_PATH]) {
    char want[600];
    snprintf(want, sizeof want, "models--%s--%s", org, name);
    if (join(out, hub, want)) return -1;
    if (is_dir(out)) return 0;
    DIR *d = opendir(hub);
    if (!d) return -1;
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)) != NULL) {
        char p[REF_PATH];
        if (ieq(e->d_name, want) && !join(p, hub, e->d_name) && is_dir(p) && ++found == 1)
            snprintf(out, REF_PATH, "%s", p);
    }
    closedir(d);
    return found == 1 ? 0 : -1;
}

/* The snapshot directory of repo: refs/main's revision, else the only one.
 * why: how it was chosen, for messages. */
static int snapshot_dir(const char *repo, const char *revision, const char *where, const char *what,
                        const char *place, char out[REF_PATH], char *why, size_t why_cap, lyra_error *err) {
    char p[REF_PATH], snaps[REF_PATH], refname[300];
    if (join(snaps, repo, "snapshots")) return lyra_err(err, LYRA_ERR_INPUT, where, "%s: path too long", what);
    if (revision && *revision) { /* a branch or tag (refs/REV), else a commit (snapshots/REV) */
        if (strstr(revision, "..") || revision[0] == '/' || strlen(revision) > 255)
            return lyra_err(err, LYRA_ERR_INPUT, where, "%s: revision '%.64s' is not a branch, tag or commit name",
                            what, revision);
        snprintf(refname, sizeof refname, "refs/%s", revision);
        if (join(p, repo, refname)) return lyra_err(err, LYRA_ERR_INPUT, where, "%s: path too long", what);
        struct stat st;
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
            if (!join(out, snaps, revision) && is_dir(out)) {
                snprintf(why, why_cap, "revision %.40s", revision);
                return LYRA_OK;
            }
            return lyra_err(err, LYRA_ERR_INPUT, where, "%s: revision %s not found (neither %s nor %s/%s); "
                            "looked in: %s", what, revision, p, snaps, revision, place);
        }
    } else {
        snprintf(refname, sizeof refname, "refs/main");
        if (join(p, repo, "refs/main")) return lyra_err(err, LYRA_ERR_INPUT, where, "%s: path too long", what);
    }
    FILE *f = fopen(p, "r");
    if (f) {
        char rev[256] = "";
        if (!fgets(rev, sizeof rev, f)) rev[0] = '\0';
        fclose(f);
        size_t k = strlen(rev);
        while (k && (rev[k - 1] == '\n' || rev[k - 1] == '\r' || rev[k - 1] == ' ')) rev[--k] = '\0';
        if (!k || strchr(rev, '/') || !strcmp(rev, "..") || !strcmp(rev, "."))
            return lyra_err(err, LYRA_ERR_INPUT, where, "%s: %s holds no revision; looked in: %s", what, p, place);
        if (join(out, snaps, rev) || !is_dir(out))
            return lyra_err(err, LYRA_ERR_INPUT, where, "%s: %s names revision %s but %s/%s is missing; "
                            "looked in: %s", what, refname, rev, snaps, rev, place);
        snprintf(why, why_cap, "%.60s", refname);
        return LYRA_OK;
    }
    DIR *d = opendir(snaps);
    if (!d) return lyra_err(err, LYRA_ERR_INPUT, where, "%s: %s has no snapshots/ (no files downloaded); looked in: %s",
                            what, repo, place);
    struct dirent *e;
    int n = 0;
    char list[REF_LIST] = "";
    size_t o = 0;
    while ((e = readdir(d)) != NULL) {
        char s[REF_PATH];
        if (e->d_name[0] == '.' || join(s, snaps, e->d_name) || !is_dir(s)) continue;
        if (++n == 1) snprintf(out, REF_PATH, "%s", s);
        if (o + strlen(e->d_name) + 8 < sizeof list)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", o ? ", " : "", e->d_name);
    }
    closedir(d);
    if (n == 1) {
        snprintf(why, why_cap, "the only snapshot");
        return LYRA_OK;
    }
    if (n == 0)
        return lyra_err(err, LYRA_ERR_INPUT, where, "%s: %s is empty (no files downloaded); looked in: %s", what,
                        snaps, place);
    return lyra_err(err, LYRA_ERR_INPUT, where, "%s: %d snapshots and no refs/main to choose (%s); looked in: %s",
                    what, n, list, place);
}

/* Look org/name[:tag] up in the cache. tried: the places already looked in
 * ("./org/name (no such file or directory)"), for messages. */
static int from_hf(const char *ref, const char *org, const char *name, const char *tag, const char *revision,
                   const char *tried, const char *where, char **path, lyra_error *err) {
    char hub[REF_PATH], repo[REF_PATH], snap[REF_PATH], place[REF_PATH + 160], why[64];
    const char *src = NULL;
    if (lyra_model_ref_hf_cache(hub, sizeof hub, &src))
        return lyra_err(err, LYRA_ERR_INPUT, where, "%s: not found; looked in: %s; no Hugging Face cache "
                        "(HF_HUB_CACHE, HF_HOME and HOME unset)", ref, tried);
    char origin[64];
    snprintf(origin, sizeof origin, "%s", !strcmp(src, "HOME") ? "~/.cache/huggingface/hub" : src);
    if (repo_dir(hub, org, name, repo)) {
        char want[REF_PATH + 600];
        snprintf(want, sizeof want, "%s/models--%s--%s", hub, org, name);
        return lyra_err(err, LYRA_ERR_INPUT, where, "%s: not found; looked in: %s, %s (not in the Hugging Face "
                        "cache, from %s; lyra does not download)", ref, tried, want, origin);
    }
    snprintf(place, sizeof place, "%s (from %s)", repo, origin);
    int rc = snapshot_dir(repo, revision, where, ref, place, snap, why, sizeof why, err);
    if (rc) return rc;
    snprintf(place, sizeof place, "%s (%s; cache from %s)", snap, why, origin);
    return pick_in_dir(snap, tag[0] ? tag : NULL, where, ref, place, path, err);
}

/* ------------------------------------------------------------ the entry */

/* A directory: a hub cache repo (models--org--name with snapshots/) or a
 * folder of GGUF files. */
static int from_dir(const char *dir_in, const char *tag, const char *revision, const char *ref, const char *where,
                    char **path, lyra_error *err) {
    char dir[REF_PATH], snaps[REF_PATH], snap[REF_PATH], place[REF_PATH + 160], why[64];
    snprintf(dir, sizeof dir, "%s", dir_in);
    for (size_t k = strlen(dir); k > 1 && dir[k - 1] == '/'; k--) dir[k - 1] = '\0';
    if (!join(snaps, dir, "snapshots") && is_dir(snaps) && !strncmp(base_name(dir), "models--", 8)) {
        snprintf(place, sizeof place, "%s", dir);
        int rc = snapshot_dir(dir, revision, where, ref, place, snap, why, sizeof why, err);
        if (rc) return rc;
        snprintf(place, sizeof place, "%s (%s)", snap, why);
        return pick_in_dir(snap, tag, where, ref, place, path, err);
    }
    snprintf(place, sizeof place, "%s", dir);
    return pick_in_dir(dir, tag, where, ref, place, path, err);
}

int lyra_model_ref_resolve(const char *ref, const char *where, char **path, lyra_error *err) {
    return lyra_model_ref_resolve_rev(ref, NULL, where, path, err);
}

int lyra_model_ref_resolve_rev(const char *ref, const char *revision, const char *where, char **path,
                               lyra_error *err) {
    *path = NULL;
    if (!where) where = "model";
    if (!ref || !*ref) return lyra_err(err, LYRA_ERR_INPUT, where, "empty model name");
    if (strlen(ref) >= REF_PATH) return lyra_err(err, LYRA_ERR_INPUT, where, "model name too long");
    struct stat st;
    if (stat(ref, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return from_dir(ref, NULL, revision, ref, where, path, err);
        if (!S_ISREG(st.st_mode)) return lyra_err(err, LYRA_ERR_INPUT, where, "%s: not a file or directory", ref);
        int no, count;
        if (split_part(base_name(ref), &no, &count) && no != 1)
            return lyra_err(err, LYRA_ERR_INPUT, where, "%s: part %d of %d of a split model: give the first part, "
                            "%.*s-00001-of-%05d.gguf", ref, no, count, (int)(strlen(ref) - 20), ref, count);
        if (!(*path = strdup(ref))) return lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
        return LYRA_OK;
    }
    int e = errno;
    if (e != ENOENT && e != ENOTDIR) return lyra_err(err, LYRA_ERR_INPUT, where, "%s: %s", ref, strerror(e));
    char tried[REF_PATH + 64];
    snprintf(tried, sizeof tried, "%s (no such file or directory)", ref);
    /* DIR:TAG */
    const char *colon = strrchr(ref, ':');
    if (colon && colon[1] && !strchr(colon, '/')) {
        char base[REF_PATH];
        snprintf(base, sizeof base, "%.*s", (int)(colon - ref), ref);
        if (is_dir(base)) return from_dir(base, colon + 1, revision, ref, where, path, err);
        if (stat(base, &st) == 0)
            return lyra_err(err, LYRA_ERR_INPUT, where, "%s: a :TAG picks a file in a directory or a Hugging Face "
                            "repo, and %s is a file", ref, base);
    }
    /* org/name@REV[:TAG]: a revision written in the reference */
    const char *at = strchr(ref, '@'), *slash = strchr(ref, '/');
    if (at && slash && at > slash) {
        char base[REF_PATH], rev[256];
        const char *end = strchr(at, ':');
        size_t rl = end ? (size_t)(end - at - 1) : strlen(at + 1);
        if (rl == 0 || rl >= sizeof rev)
            return lyra_err(err, LYRA_ERR_INPUT, where, "%s: no revision after '@'", ref);
        memcpy(rev, at + 1, rl);
        rev[rl] = '\0';
        if (revision && *revision && strcmp(rev, revision))
            return lyra_err(err, LYRA_ERR_INPUT, where, "%s names revision %s but the revision given is %s: "
                            "keep one", ref, rev, revision);
        snprintf(base, sizeof base, "%.*s%s", (int)(at - ref), ref, end ? end : "");
        char *p = NULL;
        int rc = lyra_model_ref_resolve_rev(base, rev, where, &p, err);
        *path = p;
        return rc;
    }
    char org[256], name[256], tag[256];
    if (!parse_repo(ref, org, name, tag, sizeof org))
        return lyra_err(err, LYRA_ERR_INPUT, where, "%s: no such file or directory (nor a Hugging Face repo "
                        "id org/name[:TAG])", ref);
    return from_hf(ref, org, name, tag, revision, tried, where, path, err);
}
