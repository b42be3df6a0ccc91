/* plan_out.c: a plan for people (a table) and for programs (JSON, the format
 * plan.h and the sharding issue fix: fields may be added, never renamed). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/size.h"
#include "plan/plan.h"

/* Append to buf (bounded); returns the new length needed. */
static size_t put(char *buf, size_t cap, size_t o, const char *fmt, ...) LYRA_PRINTF(4, 5);
static size_t put(char *buf, size_t cap, size_t o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o < cap ? buf + o : NULL, o < cap ? cap - o : 0, fmt, ap);
    va_end(ap);
    return o + (k > 0 ? (size_t)k : 0);
}

size_t lyra_plan_module_ranges(const lyra_plan *p, int d, char *buf, size_t cap) {
    size_t o = 0;
    if (cap) buf[0] = '\0';
    for (int i = 0; i < p->n_modules; i++) {
        if (p->module_dev[i] != d) continue;
        const lyra_plan_module *m = &p->modules[i];
        const char *sep = o ? " " : "";
        if (m->kind == LYRA_PLAN_LAYER) { /* a run of consecutive layers */
            int j = i;
            while (j + 1 < p->n_modules && p->module_dev[j + 1] == d &&
                   p->modules[j + 1].kind == LYRA_PLAN_LAYER &&
                   p->modules[j + 1].layer == p->modules[j].layer + 1)
                j++;
            if (j > i) o = put(buf, cap, o, "%smodel.layers.%d-%d", sep, m->layer, p->modules[j].layer);
            else o = put(buf, cap, o, "%s%s", sep, m->name);
            i = j;
        } else {
            o = put(buf, cap, o, "%s%s", sep, m->name);
        }
    }
    return o;
}

static json_t *jint(uint64_t v) {
    return json_integer(v > (uint64_t)INT64_MAX ? (json_int_t)INT64_MAX : (json_int_t)v);
}

json_t *lyra_plan_device_json(const lyra_plan_device *v, const lyra_plan_usage *u) {
    json_t *o = json_object();
    if (!o || json_object_set_new(o, "id", json_string(v->id)) ||
        json_object_set_new(o, "kind", json_string(v->kind)) ||
        json_object_set_new(o, "backend", json_string(v->backend)) ||
        json_object_set_new(o, "free", jint(v->free)) ||
        json_object_set_new(o, "reserve", jint(v->reserve)) ||
        json_object_set_new(o, "budget", jint(v->budget)) ||
        (u && (json_object_set_new(o, "weights", jint(u->weights)) ||
               json_object_set_new(o, "kv", jint(u->kv)) ||
               json_object_set_new(o, "scratch", jint(u->scratch)) ||
               json_object_set_new(o, "total", jint(u->total))))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *lyra_plan_json(const lyra_plan *p) {
    json_t *root = json_object(), *devs = json_array(), *map = json_object();
    if (!root || !devs || !map) goto oom;
    if (json_object_set_new(root, "ctx", json_integer(p->ctx)) ||
        json_object_set_new(root, "batch", json_integer(p->batch)) ||
        (p->n_seq > 1 && json_object_set_new(root, "n_seq", json_integer(p->n_seq))))
        goto oom;
    for (int d = 0; d < p->n_devices; d++) {
        json_t *o = lyra_plan_device_json(&p->dev[d], &p->use[d]);
        if (!o || json_array_append_new(devs, o)) goto oom;
    }
    if (json_object_set_new(root, "devices", devs)) { devs = NULL; goto oom; }
    devs = NULL;
    for (int i = 0; i < p->n_modules; i++)
        if (p->module_dev[i] >= 0 && /* < 0: another rank's (lyra plan under mpirun) */
            json_object_set_new(map, p->modules[i].name, json_string(p->dev[p->module_dev[i]].id)))
            goto oom;
    if (json_object_set_new(root, "map", map)) { map = NULL; goto oom; }
    map = NULL;
    if (p->step.from >= 0) { /* the step-down, as lyra plan --probe lists steps */
        json_t *st = json_pack("[{s:s,s:s,s:I,s:I,s:s,s:i,s:i}]", "phase", "load", "device",
                               p->step.device, "asked", (json_int_t)p->step.asked, "free",
                               (json_int_t)p->step.room, "what", "gpu", "from", (int)p->step.from,
                               "to", (int)p->step.to);
        if (!st || json_object_set_new(root, "fallback", st)) goto oom;
    }
    return root;
oom:
    json_decref(root);
    json_decref(devs);
    json_decref(map);
    return NULL;
}

char *lyra_plan_json_string(const lyra_plan *p) {
    json_t *j = lyra_plan_json(p);
    if (!j) return NULL;
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!s) return NULL;
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return NULL;
    }
    t[n] = '\n';
    t[n + 1] = '\0';
    return t;
}

char *lyra_plan_table(const lyra_plan *p) {
    /* two passes: measure, then write */
    char *buf = NULL;
    size_t cap = 0, o = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (p->n_seq > 1)
            o = put(buf, cap, 0, "plan: ctx %d, batch %d, %d sequences\n", (int)p->ctx, (int)p->batch,
                    (int)p->n_seq);
        else
            o = put(buf, cap, 0, "plan: ctx %d, batch %d\n", (int)p->ctx, (int)p->batch);
        o = put(buf, cap, o, "%-6s %-5s %-7s %10s %10s %10s %10s %10s %10s %10s  %s\n", "device",
                "kind", "backend", "free", "reserve", "budget", "weights", "kv", "scratch",
                "total", "modules");
        for (int d = 0; d < p->n_devices; d++) {
            const lyra_plan_device *v = &p->dev[d];
            const lyra_plan_usage *u = &p->use[d];
            char f[32], r[32], b[32], w[32], k[32], s[32], t[32];
            int disk = !strcmp(v->kind, "disk");
            if (disk) {
                strcpy(f, "-");
                strcpy(r, "-");
                strcpy(b, "-");
            } else {
                lyra_size_format(v->free, f, sizeof f);
                lyra_size_format(v->reserve, r, sizeof r);
                lyra_size_format(v->budget, b, sizeof b);
            }
            lyra_size_format(u->weights, w, sizeof w);
            lyra_size_format(u->kv, k, sizeof k);
            lyra_size_format(u->scratch, s, sizeof s);
            lyra_size_format(u->total, t, sizeof t);
            o = put(buf, cap, o, "%-6s %-5s %-7s %10s %10s %10s %10s %10s %10s %10s  ", v->id,
                    v->kind, v->backend, f, r, b, w, k, s, t);
            size_t need = lyra_plan_module_ranges(p, d, o < cap ? buf + o : NULL,
                                                  o < cap ? cap - o : 0);
            if (!need) o = put(buf, cap, o, "-");
            else o += need;
            o = put(buf, cap, o, "\n");
        }
        if (p->n_windowed) { /* what the rings of the sliding-window layers save */
            char a[32], b[32];
            lyra_size_format(p->kv_all, a, sizeof a);
            lyra_size_format(p->kv_unwindowed, b, sizeof b);
            o = put(buf, cap, o, "kv: %s for all layers (%d with a sliding window of %d "
                    "positions, kept as rings); %s without the rings\n",
                    a, p->n_windowed, (int)p->window, b);
        }
        if (pass == 0) {
            cap = o + 1;
            buf = malloc(cap);
            if (!buf) return NULL;
        }
    }
    return buf;
}
