/* prof.c: op timing (see prof.h): a wrapper per forward-pass op that reads
 * the clocks around the device's own op and adds the time under its key. */
#include "device/prof.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double clk(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct { double wall, cpu; } stamp;

static stamp start(void) { return (stamp){clk(CLOCK_MONOTONIC), clk(CLOCK_PROCESS_CPUTIME_ID)}; }

/* Add the time since s under "TAG OP DETAIL". */
static void stop(lyra_device *d, stamp s, const char *op, const char *detail, double bytes) {
    stamp e = start();
    lyra_prof *p = d->prof;
    char key[sizeof p->e[0].key];
    snprintf(key, sizeof key, "%s %s%s%s", p->tag ? p->tag : "-", op, detail ? " " : "",
             detail ? detail : "");
    lyra_prof_entry *en = NULL;
    for (int i = 0; i < p->n && !en; i++)
        if (!strcmp(p->e[i].key, key)) en = &p->e[i];
    if (!en && p->n < LYRA_PROF_MAX) {
        en = &p->e[p->n++];
        memset(en, 0, sizeof *en);
        snprintf(en->key, sizeof en->key, "%s", key);
    }
    if (!en) en = &p->e[LYRA_PROF_MAX];
    en->calls++;
    en->wall += e.wall - s.wall;
    en->cpu += e.cpu - s.cpu;
    en->bytes += bytes;
}

#define IN(d) ((d)->prof->inner)
/* Time the call `call` of op `name` (no detail, no bytes). */
#define TIMED(d, name, call)                                                                       \
    do {                                                                                           \
        stamp s_ = start();                                                                        \
        call;                                                                                      \
        stop(d, s_, name, NULL, 0);                                                                \
    } while (0)

static void p_get_rows(lyra_device *d, lyra_type t, const void *table, int64_t n, const int32_t *ids,
                       int ntok, float *out) {
    TIMED(d, "get_rows", IN(d)->get_rows(d, t, table, n, ids, ntok, out));
}
static void p_rmsnorm(lyra_device *d, const float *x, const float *w, float eps, int64_t n, int ntok,
                      float *out) {
    TIMED(d, "rmsnorm", IN(d)->rmsnorm(d, x, w, eps, n, ntok, out));
}
static void p_matmul(lyra_device *d, lyra_type wt, const void *W, int64_t rows, int64_t cols,
                     const float *X, int ntok, float *Y) {
    stamp s = start();
    IN(d)->matmul(d, wt, W, rows, cols, X, ntok, Y);
    char det[48];
    snprintf(det, sizeof det, "%s %lldx%lld", lyra_type_name(wt), (long long)rows, (long long)cols);
    stop(d, s, "matmul", det, (double)rows * (double)lyra_row_bytes(wt, cols));
}
static void p_matmul_multi(lyra_device *d, int n, const lyra_type *wt, const void *const *W,
                           const int64_t *rows, int64_t cols, const float *X, int ntok,
                           float *const *Y) {
    stamp s = start();
    IN(d)->matmul_multi(d, n, wt, W, rows, cols, X, ntok, Y);
    char det[48];
    size_t o = (size_t)snprintf(det, sizeof det, "%s ", lyra_type_name(wt[0]));
    double bytes = 0;
    for (int i = 0; i < n; i++) {
        if (o < sizeof det)
            o += (size_t)snprintf(det + o, sizeof det - o, "%s%lld", i ? "+" : "", (long long)rows[i]);
        bytes += (double)rows[i] * (double)lyra_row_bytes(wt[i], cols);
    }
    if (o < sizeof det) snprintf(det + o, sizeof det - o, "x%lld", (long long)cols);
    stop(d, s, "matmul", det, bytes);
}
static void p_rope(lyra_device *d, float *x, int ntok, int n_head, int head_dim, const int32_t *pos,
                   const lyra_rope *rope) {
    TIMED(d, "rope", IN(d)->rope(d, x, ntok, n_head, head_dim, pos, rope));
}
static void p_kv_store(lyra_device *d, const lyra_kv_view *kv, int32_t pos0, int ntok, int64_t kv_dim,
                       const float *k, const float *v) {
    TIMED(d, "kv_store", IN(d)->kv_store(d, kv, pos0, ntok, kv_dim, k, v));
}
static void p_attention(lyra_device *d, const float *q, const lyra_kv_view *kv, int32_t pos0, int ntok,
                        const lyra_attn_params *ap, float *out) {
    TIMED(d, "attention", IN(d)->attention(d, q, kv, pos0, ntok, ap, out));
}
static void p_swiglu(lyra_device *d, const float *gate, const float *up, int64_t n, float *out) {
    TIMED(d, "swiglu", IN(d)->swiglu(d, gate, up, n, out));
}
static void p_add(lyra_device *d, float *x, const float *y, int64_t n) {
    TIMED(d, "add", IN(d)->add(d, x, y, n));
}
static void p_layernorm(lyra_device *d, const float *x, const float *w, const float *b, float eps,
                        int64_t n, int ntok, float *out) {
    TIMED(d, "layernorm", IN(d)->layernorm(d, x, w, b, eps, n, ntok, out));
}
static void p_add_bias(lyra_device *d, float *x, const float *bias, int64_t n, int ntok) {
    TIMED(d, "add_bias", IN(d)->add_bias(d, x, bias, n, ntok));
}
static void p_gelu(lyra_device *d, const float *x, int64_t n, float *out) {
    TIMED(d, "gelu", IN(d)->gelu(d, x, n, out));
}
static void p_geglu(lyra_device *d, const float *gate, const float *up, int64_t n, float *out) {
    TIMED(d, "geglu", IN(d)->geglu(d, gate, up, n, out));
}
static void p_scale(lyra_device *d, float *x, int64_t n, float s) {
    TIMED(d, "scale", IN(d)->scale(d, x, n, s));
}
static void p_softcap(lyra_device *d, float *x, int64_t n, float cap) {
    TIMED(d, "softcap", IN(d)->softcap(d, x, n, cap));
}

int lyra_prof_attach(lyra_device *d) {
    lyra_prof *p = d->prof;
    if (!p) {
        if (!(p = calloc(1, sizeof *p))) return LYRA_ERR_OOM;
        const lyra_device_ops *in = d->ops;
        p->inner = in;
        p->ops = *in;
        /* wrap the ops the device has (a NULL optional op stays NULL) */
#define WRAP(f) p->ops.f = in->f ? p_##f : NULL
        WRAP(get_rows);
        WRAP(rmsnorm);
        WRAP(matmul);
        WRAP(matmul_multi);
        WRAP(rope);
        WRAP(kv_store);
        WRAP(attention);
        WRAP(swiglu);
        WRAP(add);
        WRAP(layernorm);
        WRAP(add_bias);
        WRAP(gelu);
        WRAP(geglu);
        WRAP(scale);
        WRAP(softcap);
#undef WRAP
        d->prof = p;
        d->own_ops = in;
        d->ops = &p->ops;
    }
    p->n = 0;
    memset(&p->e[LYRA_PROF_MAX], 0, sizeof p->e[0]);
    snprintf(p->e[LYRA_PROF_MAX].key, sizeof p->e[0].key, "other");
    p->tag = NULL;
    return LYRA_OK;
}

void lyra_prof_detach(lyra_device *d) {
    if (!d->prof) return;
    d->ops = d->prof->inner;
    d->own_ops = NULL;
    free(d->prof);
    d->prof = NULL;
}

/* ------------------------------------------------------------------ report */

static int by_wall(const void *a, const void *b) {
    const lyra_prof_entry *x = *(const lyra_prof_entry *const *)a, *y = *(const lyra_prof_entry *const *)b;
    return x->wall < y->wall ? 1 : x->wall > y->wall ? -1 : strcmp(x->key, y->key);
}

#define PUT(...)                                                                                   \
    do {                                                                                           \
        int k_ = snprintf(o < cap ? buf + o : NULL, o < cap ? cap - o : 0, __VA_ARGS__);          \
        if (k_ > 0) o += (size_t)k_;                                                               \
    } while (0)

size_t lyra_prof_report(lyra_device *const *devs, int n, double per, char *buf, size_t cap) {
    size_t o = 0;
    if (cap) buf[0] = 0;
    if (per <= 0) per = 1;
    for (int di = 0; di < n; di++) {
        lyra_prof *p = devs[di]->prof;
        if (!p) continue;
        int ne = 0;
        const lyra_prof_entry *list[LYRA_PROF_MAX + 1];
        double wall = 0, cpu = 0;
        for (int i = 0; i <= LYRA_PROF_MAX; i++) {
            if (i >= p->n && i < LYRA_PROF_MAX) continue;
            if (!p->e[i].calls) continue;
            list[ne++] = &p->e[i];
            wall += p->e[i].wall;
            cpu += p->e[i].cpu;
        }
        if (!ne) continue; /* a device that ran nothing */
        qsort(list, (size_t)ne, sizeof list[0], by_wall);
        PUT("device %s: op time per token (%.0f tokens): %.3f ms wall, %.3f ms CPU\n", devs[di]->id,
            per, 1e3 * wall / per, 1e3 * cpu / per);
        PUT("%-44s %8s %10s %10s %7s %8s\n", "module op [type rows x cols]", "calls/t", "wall ms/t",
            "CPU ms/t", "wall %", "GB/s");
        for (int i = 0; i < ne; i++) {
            const lyra_prof_entry *e = list[i];
            char gbs[16] = "-";
            if (e->bytes > 0 && e->wall > 0) snprintf(gbs, sizeof gbs, "%.2f", e->bytes / e->wall / 1e9);
            PUT("%-44s %8.1f %10.3f %10.3f %7.1f %8s\n", e->key, (double)e->calls / per,
                1e3 * e->wall / per, 1e3 * e->cpu / per, wall > 0 ? 100 * e->wall / wall : 0.0, gbs);
        }
        /* totals per module tag (the key's first word) */
        char tags[8][24];
        double tw[8] = {0}, tc[8] = {0}, tb[8] = {0};
        int nt = 0;
        for (int i = 0; i < ne; i++) {
            char t[24];
            size_t l = strcspn(list[i]->key, " ");
            snprintf(t, sizeof t, "%.*s", (int)(l < sizeof t ? l : sizeof t - 1), list[i]->key);
            int j = 0;
            while (j < nt && strcmp(tags[j], t)) j++;
            if (j == nt) {
                if (nt == 8) continue;
                snprintf(tags[nt++], sizeof tags[0], "%s", t);
            }
            tw[j] += list[i]->wall;
            tc[j] += list[i]->cpu;
            tb[j] += list[i]->bytes;
        }
        for (int j = 0; j < nt; j++) {
            char gbs[16] = "-";
            if (tb[j] > 0 && tw[j] > 0) snprintf(gbs, sizeof gbs, "%.2f", tb[j] / tw[j] / 1e9);
            PUT("%-44s %8s %10.3f %10.3f %7.1f %8s\n", tags[j], "(total)", 1e3 * tw[j] / per,
                1e3 * tc[j] / per, wall > 0 ? 100 * tw[j] / wall : 0.0, gbs);
        }
    }
    return o;
}
