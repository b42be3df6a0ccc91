/* rankdev.c: a cluster's devices from a JSON file (rankdev.h): parsed with
 * jansson, every field checked, one-line errors naming the file and the
 * field. */
#include "config/rankdev.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/size.h"

/* "FILE: FIELD" for size messages. */
static const char *at(char *buf, size_t cap, const char *where, const char *field) {
    snprintf(buf, cap, "%.200s: %.100s", where, field);
    return buf;
}

/* Keys of o outside allowed[] are an error. */
static int only_keys(const json_t *o, const char *const *allowed, const char *where, const char *field,
                     lyra_error *err) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        int ok = 0;
        for (int i = 0; allowed[i] && !ok; i++) ok = !strcmp(k, allowed[i]);
        if (!ok) {
            char q[64];
            return lyra_err(err, LYRA_ERR_INPUT, where, "%s: unknown key \"%s\"", field,
                            lyra_size_quote(k, strlen(k), q, sizeof q) ? q : "");
        }
    }
    return LYRA_OK;
}

/* A device's memory: SIZE or {"memory", "free", "budget" (, "backend")}. */
static int parse_mem(const json_t *v, int gpu, const char *where, const char *field, lyra_rankdev_mem *m,
                     lyra_error *err) {
    char f[160], w[320];
    memset(m, 0, sizeof *m);
    if (!json_is_object(v)) {
        int rc = lyra_size_from_json(v, at(w, sizeof w, where, field), &m->memory, err);
        m->free = m->memory;
        if (!rc && !m->memory) rc = lyra_err(err, LYRA_ERR_INPUT, where, "%s: a size of 0 bytes", field);
        return rc;
    }
    static const char *const gk[] = {"memory", "free", "budget", "backend", NULL};
    static const char *const ck[] = {"memory", "free", "budget", NULL};
    int rc = only_keys(v, gpu ? gk : ck, where, field, err);
    if (rc) return rc;
    const json_t *mem = json_object_get(v, "memory"), *fr = json_object_get(v, "free"),
                 *bu = json_object_get(v, "budget"), *be = json_object_get(v, "backend");
    if (!mem) return lyra_err(err, LYRA_ERR_INPUT, where, "%s: \"memory\" is missing", field);
    snprintf(f, sizeof f, "%s.memory", field);
    if ((rc = lyra_size_from_json(mem, at(w, sizeof w, where, f), &m->memory, err))) return rc;
    if (!m->memory) return lyra_err(err, LYRA_ERR_INPUT, where, "%s: a size of 0 bytes", f);
    m->free = m->memory;
    snprintf(f, sizeof f, "%s.free", field);
    if (fr && (rc = lyra_size_from_json(fr, at(w, sizeof w, where, f), &m->free, err))) return rc;
    if (m->free > m->memory)
        return lyra_err(err, LYRA_ERR_INPUT, where, "%s: %llu bytes free of %llu bytes of memory", f,
                        (unsigned long long)m->free, (unsigned long long)m->memory);
    snprintf(f, sizeof f, "%s.budget", field);
    if (bu && (rc = lyra_size_from_json(bu, at(w, sizeof w, where, f), &m->budget, err))) return rc;
    if (bu && m->budget > m->free)
        return lyra_err(err, LYRA_ERR_INPUT, where, "%s: a budget of %llu bytes over the %llu bytes free", f,
                        (unsigned long long)m->budget, (unsigned long long)m->free);
    m->has_budget = bu != NULL;
    if (be) {
        snprintf(f, sizeof f, "%s.backend", field);
        if (!json_is_string(be) || (strcmp(json_string_value(be), "cuda") && strcmp(json_string_value(be), "sim")))
            return lyra_err(err, LYRA_ERR_INPUT, where, "%s: expected \"cuda\" or \"sim\"", f);
        m->sim = !strcmp(json_string_value(be), "sim");
    }
    return LYRA_OK;
}

static int parse_rank(const json_t *v, int r, const char *where, lyra_rankdev_rank *out, lyra_error *err) {
    char field[64], f[96], w[320];
    snprintf(field, sizeof field, "ranks[%d]", r);
    memset(out, 0, sizeof *out);
    if (!json_is_object(v))
        return lyra_err(err, LYRA_ERR_INPUT, where, "%s: expected an object {\"gpus\", \"cpu\", \"disk\"}", field);
    static const char *const keys[] = {"gpus", "cpu", "disk", NULL};
    int rc = only_keys(v, keys, where, field, err);
    if (rc) return rc;
    const json_t *g = json_object_get(v, "gpus"), *c = json_object_get(v, "cpu"), *d = json_object_get(v, "disk");
    if (g) {
        if (!json_is_array(g))
            return lyra_err(err, LYRA_ERR_INPUT, where, "%s.gpus: expected an array of sizes", field);
        if (json_array_size(g) > LYRA_RANKDEV_MAX_GPUS)
            return lyra_err(err, LYRA_ERR_INPUT, where, "%s.gpus: %zu GPUs, at most %d", field,
                            json_array_size(g), LYRA_RANKDEV_MAX_GPUS);
        for (size_t i = 0; i < json_array_size(g); i++) {
            snprintf(f, sizeof f, "%s.gpus[%zu]", field, i);
            if ((rc = parse_mem(json_array_get(g, i), 1, where, f, &out->gpu[i], err))) return rc;
            out->n_gpus++;
        }
    }
    if (!c) return lyra_err(err, LYRA_ERR_INPUT, where, "%s.cpu: missing (every rank has a CPU)", field);
    snprintf(f, sizeof f, "%s.cpu", field);
    if ((rc = parse_mem(c, 0, where, f, &out->cpu, err))) return rc;
    snprintf(f, sizeof f, "%s.disk", field);
    if (d && (rc = lyra_size_from_json(d, at(w, sizeof w, where, f), &out->disk, err))) return rc;
    return LYRA_OK;
}

int lyra_rankdev_parse(const char *text, size_t len, const char *where, lyra_rankdev *out, lyra_error *err) {
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        for (char *c = je.text; *c; c++) /* one printable line */
            if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f) *c = '?';
        return lyra_err(err, LYRA_ERR_INPUT, where, "line %d: %s", je.line, je.text);
    }
    int rc = LYRA_OK;
    static const char *const keys[] = {"ranks", NULL};
    const json_t *rs = json_is_object(j) ? json_object_get(j, "ranks") : NULL;
    if (!json_is_object(j)) rc = lyra_err(err, LYRA_ERR_INPUT, where, "expected an object {\"ranks\": [...]}");
    else if (!(rc = only_keys(j, keys, where, "top level", err)) && !json_is_array(rs))
        rc = lyra_err(err, LYRA_ERR_INPUT, where, "ranks: %s", rs ? "expected an array" : "missing");
    size_t n = rc ? 0 : json_array_size(rs);
    if (!rc && (n < 1 || n > LYRA_RANKDEV_MAX_RANKS))
        rc = lyra_err(err, LYRA_ERR_INPUT, where, "ranks: %zu ranks (1 to %d)", n, LYRA_RANKDEV_MAX_RANKS);
    if (!rc && !(out->rank = calloc(n, sizeof *out->rank))) rc = lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
    for (size_t r = 0; !rc && r < n; r++) rc = parse_rank(json_array_get(rs, r), (int)r, where, &out->rank[r], err);
    if (!rc) out->n_ranks = (int)n;
    else lyra_rankdev_free(out);
    json_decref(j);
    return rc;
}

int lyra_rankdev_load(const char *path, lyra_rankdev *out, lyra_error *err) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return lyra_err(err, LYRA_ERR_INPUT, path, "%s", strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    int rc = buf ? LYRA_OK : lyra_err(err, LYRA_ERR_OOM, path, "out of memory");
    while (!rc) {
        if (n == cap) {
            if (cap >= (64u << 20)) {
                rc = lyra_err(err, LYRA_ERR_INPUT, path, "over 64 MiB: not a cluster description");
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = lyra_err(err, LYRA_ERR_OOM, path, "out of memory");
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) rc = lyra_err(err, LYRA_ERR_INPUT, path, "read error");
            break;
        }
    }
    fclose(f);
    if (!rc) rc = lyra_rankdev_parse(buf, n, path, out, err);
    free(buf);
    return rc;
}

void lyra_rankdev_free(lyra_rankdev *rd) {
    free(rd->rank);
    rd->rank = NULL;
    rd->n_ranks = 0;
}
