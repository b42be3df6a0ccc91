/* plan.c: placing modules on devices (see plan.h): the accounting of one
 * device, the greedy contiguous fill, the strategies (balanced by a search
 * for the smallest budget fraction that fits), gpu_layers, tensor_split and
 * explicit maps with per-architecture aliases, the step-down of a gpu_layers
 * count that does not fit. Integer arithmetic only, no
 * dependence on hash order: the same inputs give the same plan. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/size.h"
#include "plan/plan.h"

#define ALIGN64(n) (((n) + 63) & ~(uint64_t)63)
/* Balanced search: budget fractions in steps of 1/LAMBDA_ONE. */
#define LAMBDA_ONE ((uint64_t)1 << 16)

/* The planner's working state. */
typedef struct P {
    const lyra_plan_model *m;   /* the model */
    const lyra_plan_opts *o;    /* the options */
    int n;                      /* modules */
    int nd;                     /* devices */
    lyra_plan_device *dev;      /* [nd] GPUs ascending, cpu, disk */
    int ngpu;                   /* GPUs: dev[0..ngpu) */
    int cpu, disk;              /* their indices */
    uint64_t *w;                /* [n][nd] weight bytes of module on device */
    uint64_t *work;             /* [n][nd] matmul work bytes (disk: run on the CPU) */
    uint64_t *kv;               /* [n] KV bytes at the planned positions */
    uint64_t extra[LYRA_PLAN_MAX_DEVICES]; /* [nd] extras' bytes on a device running a layer */
    int *where;                 /* [n] device of each module, -1 unplaced */
    int embed, head;            /* module indices of the embedding and head, -1 if none */
    lyra_plan_notes *notes;     /* where notes go */
    int n_windowed;             /* sliding-window layers */
    int32_t window;             /* their largest window */
    uint64_t kv_all, kv_unwindowed; /* KV bytes of all layers, with and without rings */
    lyra_plan_step step;        /* the gpu_layers step-down (from -1: none) */
} P;

/* ------------------------------------------------------------- accounting */

/* Bytes of t as type ty; 0 with an error when the shape does not fit ty. */
static int tensor_bytes(const lyra_plan_tensor *t, lyra_type ty, uint64_t *out, lyra_error *err) {
    *out = 0;
    if (!lyra_type_known(ty) || !lyra_type_block_bytes(ty))
        return lyra_err(err, LYRA_ERR_INPUT, t->name, "unknown tensor type %d", (int)ty);
    int64_t blk = lyra_type_block(ty);
    if (t->cols < 0 || t->rows < 0 || (blk > 0 && t->cols % blk))
        return lyra_err(err, LYRA_ERR_INPUT, t->name,
                        "%lld columns are not a multiple of the %s block (%lld)",
                        (long long)t->cols, lyra_type_name(ty), (long long)blk);
    uint64_t row = (uint64_t)(t->cols / blk) * lyra_type_block_bytes(ty);
    if (t->rows && row > UINT64_MAX / (uint64_t)t->rows)
        return lyra_err(err, LYRA_ERR_INPUT, t->name, "too large");
    *out = row * (uint64_t)t->rows;
    return LYRA_OK;
}

static lyra_type type_on(const P *p, const lyra_plan_tensor *t, int d) {
    if (d == p->disk || !p->m->target_type) return t->type;
    return p->m->target_type(p->m->user, t, &p->dev[d]);
}

static uint64_t work_of(const P *p, const lyra_plan_tensor *t, int d) {
    /* disk modules run on the CPU with the file's types */
    int run = d == p->disk ? p->cpu : d;
    lyra_type ty = type_on(p, t, d);
    if (p->m->work_size) return p->m->work_size(p->m->user, &p->dev[run], ty, t->cols, p->o->batch);
    return lyra_matmul_work_size(ty, t->cols, p->o->batch);
}

/* Fill w, work, kv and extra. */
static int precompute(P *p, lyra_error *err) {
    const lyra_plan_model *m = p->m;
    uint64_t pos = p->o->ctx > 0 ? (uint64_t)p->o->ctx : 0;
    if (p->o->kv_chunk > 1) pos = (pos + (uint64_t)p->o->kv_chunk - 1) / (uint64_t)p->o->kv_chunk *
                                  (uint64_t)p->o->kv_chunk;
    const uint64_t ns = p->o->n_seq > 1 ? (uint64_t)p->o->n_seq : 1; /* a cache per sequence */
    for (int i = 0; i < p->n; i++) {
        const lyra_plan_module *mod = &m->modules[i];
        if (mod->kv_per_pos && pos > UINT64_MAX / mod->kv_per_pos / ns)
            return lyra_err(err, LYRA_ERR_INPUT, mod->name, "KV cache size overflows");
        p->kv[i] = mod->kv_per_pos * pos * ns;
        p->kv_unwindowed += p->kv[i];
        if (mod->kv_window > 0) { /* a ring, as the runtime sizes it (lyra_llama_ring_chunks) */
            uint64_t L = p->o->kv_chunk > 0 ? (uint64_t)p->o->kv_chunk : 1;
            uint64_t ring = ((uint64_t)mod->kv_window + (uint64_t)p->o->batch - 1 + L - 1) / L + 1;
            if (ring * L < pos) p->kv[i] = mod->kv_per_pos * ring * L * ns;
            p->n_windowed++;
            if (mod->kv_window > p->window) p->window = mod->kv_window;
        }
        p->kv_all += p->kv[i];
        for (int d = 0; d < p->nd; d++) {
            uint64_t sum = 0, wk = 0;
            for (int k = 0; k < mod->n_tensors; k++) {
                const lyra_plan_tensor *t = &mod->tensors[k];
                uint64_t b;
                int rc = tensor_bytes(t, type_on(p, t, d), &b, err);
                if (rc) return rc;
                sum += b;
                if (t->matmul) {
                    uint64_t x = work_of(p, t, d);
                    if (x > wk) wk = x;
                }
            }
            p->w[(size_t)i * p->nd + d] = sum;
            p->work[(size_t)i * p->nd + d] = wk;
        }
    }
    for (int d = 0; d < p->nd; d++) {
        p->extra[d] = 0;
        for (int k = 0; k < m->n_extras; k++) {
            uint64_t b;
            int rc = tensor_bytes(&m->extras[k], type_on(p, &m->extras[k], d), &b, err);
            if (rc) return rc;
            p->extra[d] += b;
        }
    }
    return LYRA_OK;
}

/* The device that runs module i (disk modules run on the CPU), -1 if unplaced. */
static int runs_on(const P *p, int i) {
    int d = p->where[i];
    return d == p->disk ? p->cpu : d;
}

/* What device d holds under the current p->where. */
static lyra_plan_usage usage(const P *p, int d) {
    lyra_plan_usage u = {0, 0, 0, 0};
    uint64_t scr_kind[4] = {0, 0, 0, 0}, wk = 0;
    int runs_any = 0, runs_layer = 0;
    for (int i = 0; i < p->n; i++) {
        if (p->where[i] == d) u.weights += p->w[(size_t)i * p->nd + d];
        if (runs_on(p, i) != d) continue;
        const lyra_plan_module *mod = &p->m->modules[i];
        runs_any = 1;
        if (mod->kind == LYRA_PLAN_LAYER) runs_layer = 1;
        u.kv += p->kv[i];
        int k = (int)mod->kind & 3;
        if (mod->scratch > scr_kind[k]) scr_kind[k] = mod->scratch;
        uint64_t x = p->work[(size_t)i * p->nd + p->where[i]];
        if (x > wk) wk = x;
    }
    if (p->m->tied_head && p->embed >= 0 && p->head >= 0 && p->where[p->embed] == d &&
        p->where[p->head] == d)
        u.weights -= p->w[(size_t)p->head * p->nd + d]; /* one copy serves both */
    if (runs_layer) u.weights += p->extra[d];
    if (runs_any)
        u.scratch = p->m->scratch_base + scr_kind[0] + scr_kind[1] + scr_kind[2] + scr_kind[3] +
                    ALIGN64(wk);
    u.total = u.weights + u.kv + u.scratch;
    return u;
}

static int fits(const P *p, int d) { return usage(p, d).total <= p->dev[d].budget; }

/* --------------------------------------------------------------- placing */

static void unplace(P *p, int s, int e) {
    for (int i = s; i < e; i++) p->where[i] = -1;
}

/* Greedy contiguous fill of modules [s, e) over devs[k] with caps[k]: each
 * device takes modules while its total stays within its cap. Returns the
 * first module left unplaced (e when all are placed). */
static int fill(P *p, int s, int e, const int *devs, const uint64_t *caps, int k) {
    unplace(p, s, e);
    int j = s;
    for (int i = 0; i < k && j < e; i++) {
        while (j < e) {
            p->where[j] = devs[i];
            if (usage(p, devs[i]).total > caps[i]) {
                p->where[j] = -1;
                break;
            }
            j++;
        }
    }
    return j;
}

static const char *fmt_bytes(uint64_t n, char *buf, size_t cap) {
    lyra_size_format(n, buf, cap);
    return buf;
}

/* Modules [s, n) on the CPU, then disk: the CPU takes the longest prefix whose
 * weights fit beside the KV cache and scratch of all of them (disk modules
 * run on the CPU). */
static int tail(P *p, int s, lyra_error *err) {
    const int cpu = p->cpu;
    for (int i = s; i < p->n; i++) p->where[i] = p->disk;
    if (!fits(p, cpu)) { /* even all on disk: find the first module that overflows */
        unplace(p, s, p->n);
        for (int i = s; i < p->n; i++) {
            p->where[i] = p->disk;
            if (!fits(p, cpu)) {
                lyra_plan_usage u = usage(p, cpu);
                char a[32], b[32];
                return lyra_err(err, LYRA_ERR_INPUT, "plan",
                                "%s fits nowhere: run from disk it needs the cpu to hold %llu "
                                "bytes of KV cache and scratch (%s in all), but the cpu budget is "
                                "%llu bytes (%s)",
                                p->m->modules[i].name, (unsigned long long)(u.kv + u.scratch),
                                fmt_bytes(u.total, a, sizeof a),
                                (unsigned long long)p->dev[cpu].budget,
                                fmt_bytes(p->dev[cpu].budget, b, sizeof b));
            }
        }
    }
    for (int i = s; i < p->n; i++) {
        p->where[i] = cpu;
        if (!fits(p, cpu)) {
            p->where[i] = p->disk;
            break;
        }
    }
    return LYRA_OK;
}

/* floor(a * k / LAMBDA_ONE) for k <= LAMBDA_ONE, without overflow. */
static uint64_t scale(uint64_t a, uint64_t k) {
    return (a >> 16) * k + (((a & 0xffff) * k) >> 16);
}

/* Modules [0, e) over the GPUs by strategy; returns the first module left
 * unplaced. balanced: the smallest fraction lambda of every budget such that
 * all fit, or full budgets when none does. */
static int place_gpus(P *p, int e, lyra_plan_strategy st) {
    int devs[LYRA_PLAN_MAX_GPUS];
    uint64_t caps[LYRA_PLAN_MAX_GPUS];
    int k = p->ngpu;
    for (int i = 0; i < k; i++) {
        devs[i] = i;
        caps[i] = p->dev[i].budget;
    }
    if (!k || !e) return 0;
    if (st == LYRA_PLAN_SEQUENTIAL || fill(p, 0, e, devs, caps, k) < e)
        return fill(p, 0, e, devs, caps, k); /* sequential, or it does not fit: GPUs full */
    if (st == LYRA_PLAN_BALANCED_LOW_0 && k > 1) {
        caps[0] = 0;
        if (fill(p, 0, e, devs, caps, k) < e) {
            /* the others cannot take it all: GPU 0 gets the least that works */
            uint64_t lo = 0, hi = p->dev[0].budget; /* hi fits, lo does not */
            while (hi - lo > 1) {
                uint64_t mid = lo + (hi - lo) / 2;
                caps[0] = mid;
                if (fill(p, 0, e, devs, caps, k) == e) hi = mid;
                else lo = mid;
            }
            caps[0] = hi;
            return fill(p, 0, e, devs, caps, k);
        }
        /* the others take it all: balance over them, GPU 0 empty */
    }
    int first = st == LYRA_PLAN_BALANCED_LOW_0 && k > 1 ? 1 : 0;
    uint64_t lo = 0, hi = LAMBDA_ONE; /* hi fits */
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        for (int i = first; i < k; i++) caps[i] = scale(p->dev[i].budget, mid);
        if (fill(p, 0, e, devs, caps, k) == e) hi = mid;
        else lo = mid;
    }
    for (int i = first; i < k; i++) caps[i] = scale(p->dev[i].budget, hi);
    return fill(p, 0, e, devs, caps, k);
}

/* Index of the first module not in the GPU part for gpu_layers = g. */
static int gpu_end(const P *p, int32_t g) {
    if (g == 0) return 0;
    for (int i = 0; i < p->n; i++)
        if (p->m->modules[i].kind == LYRA_PLAN_LAYER && p->m->modules[i].layer >= g) return i;
    return p->n;
}

/* The error for module i that did not fit on the GPUs. */
static int gpu_overflow(P *p, int i, const char *what, lyra_error *err) {
    char msg[600];
    size_t o = 0;
    char a[32];
    o += (size_t)snprintf(msg + o, sizeof msg - o, "budgets");
    for (int d = 0; d < p->ngpu && o < sizeof msg; d++)
        o += (size_t)snprintf(msg + o, sizeof msg - o, "%s GPU %s %s", d ? "," : "",
                              p->dev[d].id, fmt_bytes(p->dev[d].budget, a, sizeof a));
    if (!p->ngpu) snprintf(msg, sizeof msg, "no GPUs");
    uint64_t need = p->w[(size_t)i * p->nd + 0] + p->kv[i];
    return lyra_err(err, LYRA_ERR_INPUT, what,
                    "%s (%llu bytes of weights and KV cache) does not fit on the GPUs (%s)",
                    p->m->modules[i].name, (unsigned long long)need, msg);
}

/* tensor_split: more proportions than GPUs is an error. */
static int split_check(const P *p, lyra_error *err) {
    if (p->o->n_split > p->ngpu)
        return lyra_err(err, LYRA_ERR_INPUT, "tensor_split", "%d proportions but %d GPU%s",
                        p->o->n_split, p->ngpu, p->ngpu == 1 ? "" : "s");
    return LYRA_OK;
}

/* tensor_split: GPU layers in the given proportions; modules [0, e).
 * Returns the first GPU over its budget, -1 when none is. */
static int split_assign(P *p, int e) {
    const lyra_plan_opts *o = p->o;
    uint64_t cum[LYRA_PLAN_MAX_GPUS], sum = 0;
    for (int i = 0; i < p->ngpu; i++) {
        sum += i < o->n_split ? o->split[i] : 0;
        cum[i] = sum;
    }
    uint64_t L = 0;
    for (int i = 0; i < e; i++) L += p->m->modules[i].kind == LYRA_PLAN_LAYER;
    int j = 0, first = -1, last = -1;
    for (int i = 0; i < e; i++) {
        if (p->m->modules[i].kind != LYRA_PLAN_LAYER) continue;
        int g = 0; /* first GPU with j / L < cum[g] / sum */
        while (g < p->ngpu - 1 && !((uint64_t)j * sum < L * cum[g])) g++;
        p->where[i] = g;
        if (first < 0) first = g;
        last = g;
        j++;
    }
    for (int i = 0; i < e; i++) {
        if (p->m->modules[i].kind == LYRA_PLAN_LAYER) continue;
        int before = i < p->n && (p->m->modules[i].kind == LYRA_PLAN_EMBED);
        p->where[i] = before ? (first >= 0 ? first : 0) : (last >= 0 ? last : p->ngpu - 1);
    }
    for (int d = 0; d < p->ngpu; d++)
        if (!fits(p, d)) return d;
    return -1;
}

/* The error of a tensor_split whose GPU d is over its budget. */
static int split_over(P *p, int d, lyra_error *err) {
    lyra_plan_usage u = usage(p, d);
    char a[32], b[32];
    return lyra_err(err, LYRA_ERR_INPUT, "tensor_split",
                    "GPU %s would hold %llu bytes (%s) but its budget is %llu bytes (%s)",
                    p->dev[d].id, (unsigned long long)u.total, fmt_bytes(u.total, a, sizeof a),
                    (unsigned long long)p->dev[d].budget, fmt_bytes(p->dev[d].budget, b, sizeof b));
}

/* ------------------------------------------------------------- step-down */

/* The GPU part of gpu_layers k (modules [0, gpu_end(k))) placed by strategy
 * st (g: LYRA_PLAN_GPU's device; tensor_split when given), nothing else
 * placed. Returns 1 when all of it fits; else *end is its first module left
 * unplaced (the greedy fills) and *over a GPU over its budget (tensor_split),
 * -1 for none. */
static int gpu_part(P *p, int32_t k, lyra_plan_strategy st, int g, int *end, int *over) {
    int e = gpu_end(p, k);
    unplace(p, 0, p->n);
    *over = -1;
    *end = e;
    if (p->o->n_split) {
        *over = split_assign(p, e);
        return *over < 0;
    }
    if (st == LYRA_PLAN_GPU) {
        int devs[1] = {g};
        uint64_t caps[1] = {p->dev[g].budget};
        *end = fill(p, 0, e, devs, caps, 1);
    } else {
        *end = place_gpus(p, e, st);
    }
    return *end == e;
}

/* The first module in order whose device d goes over its budget under the
 * current placement (n when none does). */
static int first_over(P *p, int d) {
    int *saved = malloc((size_t)p->n * sizeof *saved);
    if (!saved) return p->n;
    memcpy(saved, p->where, (size_t)p->n * sizeof *saved);
    unplace(p, 0, p->n);
    int culprit = p->n;
    for (int m = 0; m < p->n; m++) {
        p->where[m] = saved[m];
        if (runs_on(p, m) == d && !fits(p, d)) {
            culprit = m;
            break;
        }
    }
    memcpy(p->where, saved, (size_t)p->n * sizeof *saved);
    free(saved);
    return culprit;
}

/* gpu_layers whose GPU part did not fit (end, over: as gpu_part left them)
 * with opts.step_down: fewer layers (plan.h, docs/fallback.md "At plan"),
 * placed, recorded in p->step and noted. Returns the end of the new GPU part. */
static int step_down(P *p, lyra_plan_strategy st, int g, int end, int over) {
    int32_t K = 0;
    for (int i = 0; i < p->n; i++) K += p->m->modules[i].kind == LYRA_PLAN_LAYER;
    if (p->o->gpu_layers < K) K = p->o->gpu_layers;
    /* what did not fit, and where */
    lyra_plan_step *s = &p->step;
    char why[200], a[32], b[32];
    size_t o = 0;
    if (over >= 0) {
        int c = first_over(p, over);
        lyra_plan_usage u = usage(p, over);
        snprintf(s->device, sizeof s->device, "%s", p->dev[over].id);
        snprintf(s->module, sizeof s->module, "%s", c < p->n ? p->m->modules[c].name : "");
        s->asked = u.total;
        s->room = p->dev[over].budget;
        snprintf(why, sizeof why, "tensor_split: GPU %s would hold %s, budget %s", p->dev[over].id,
                 fmt_bytes(u.total, a, sizeof a), fmt_bytes(p->dev[over].budget, b, sizeof b));
    } else {
        int d = st == LYRA_PLAN_GPU ? g : p->ngpu - 1; /* the last GPU the fill tried */
        lyra_plan_usage u = usage(p, d);
        snprintf(s->device, sizeof s->device, "%s", p->dev[d].id);
        snprintf(s->module, sizeof s->module, "%s", p->m->modules[end].name);
        p->where[end] = d; /* what it would add there: weights, KV cache, scratch */
        s->asked = usage(p, d).total - u.total;
        p->where[end] = -1;
        s->room = p->dev[d].budget > u.total ? p->dev[d].budget - u.total : 0;
        o += (size_t)snprintf(why, sizeof why, "%s does not fit: budget%s", p->m->modules[end].name,
                              st == LYRA_PLAN_GPU ? "" : "s");
        int listed = 0;
        for (int i = 0; i < p->ngpu && o < sizeof why; i++)
            if (st != LYRA_PLAN_GPU || i == g)
                o += (size_t)snprintf(why + o, sizeof why - o, "%s GPU %s %s", listed++ ? "," : "",
                                      p->dev[i].id, fmt_bytes(p->dev[i].budget, a, sizeof a));
    }
    /* gpu_layers_fallback first when smaller, then the largest count that fits */
    int32_t gf = p->o->gpu_layers_fallback, kf = K, to = -1;
    int e1, o1;
    if (gf >= 0 && gf < K) {
        if (gpu_part(p, gf, st, g, &e1, &o1)) to = gf;
        else kf = gf;
    }
    if (to < 0) {
        int32_t lo = 0, hi = kf - 1; /* 0 always fits: nothing on the GPUs */
        while (lo < hi) {
            int32_t mid = lo + (hi - lo + 1) / 2;
            if (gpu_part(p, mid, st, g, &e1, &o1)) lo = mid;
            else hi = mid - 1;
        }
        to = lo;
    }
    gpu_part(p, to, st, g, &e1, &o1);
    s->from = K;
    s->to = to;
    lyra_plan_note(p->notes, "fallback: at plan: %d -> %d GPU layers (%s)", (int)K, (int)to, why);
    return gpu_end(p, to);
}

/* --------------------------------------------------------- explicit maps */

/* Aliases: a key equal to `from` or starting with `from` + "." is read with
 * `to` in its place. Longest first within an architecture; the GGUF names
 * apply to every architecture. */
typedef struct alias { const char *arch, *from, *to; } alias;
static const alias ALIASES[] = {
    {"phi2", "model.final_layernorm", "model.norm"},
    {"gpt2", "transformer.wte", "model.embed_tokens"},
    {"gpt2", "transformer.ln_f", "model.norm"},
    {"gpt2", "transformer.h", "model.layers"},
    {"gpt2", "transformer", "model"},
    {"falcon", "transformer.word_embeddings", "model.embed_tokens"},
    {"falcon", "transformer.ln_f", "model.norm"},
    {"falcon", "transformer.h", "model.layers"},
    {"falcon", "transformer", "model"},
    {"gptneox", "gpt_neox.final_layer_norm", "model.norm"},
    {"gptneox", "gpt_neox.embed_in", "model.embed_tokens"},
    {"gptneox", "gpt_neox.layers", "model.layers"},
    {"gptneox", "gpt_neox", "model"},
    {"gptneox", "embed_out", "lm_head"},
    {"*", "token_embd", "model.embed_tokens"},
    {"*", "output_norm", "model.norm"},
    {"*", "output", "lm_head"},
    {"*", "blk", "model.layers"},
};

/* Digits s[0..len) as a number (at most 9 digits); -1 if not. */
static long digits(const char *s, size_t len) {
    long v = 0;
    if (!len || len > 9) return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* A key whose last part is a layer range as lyra prints them, "N-M", or a
 * tail "N+" (N and above): 1 with *plen the length of the part before the
 * dot and [*lo, *hi]. */
static int key_range(const char *key, size_t *plen, long *lo, long *hi) {
    const char *dot = strrchr(key, '.');
    if (!dot) return 0;
    const char *r = dot + 1;
    size_t n = strlen(r);
    const char *dash = strchr(r, '-');
    if (n >= 2 && r[n - 1] == '+') {
        *lo = digits(r, n - 1);
        *hi = 1000000000L;
    } else if (dash) {
        *lo = digits(r, (size_t)(dash - r));
        *hi = digits(dash + 1, n - (size_t)(dash - r) - 1);
        if (*hi < 0) return 0;
    } else {
        return 0;
    }
    *plen = (size_t)(dot - key);
    return *lo >= 0 && *lo <= *hi;
}

/* 1 when key is s or a dot-boundary prefix of it ("" covers everything); a
 * key ending in a range "PREFIX.N-M" / "PREFIX.N+" covers PREFIX.I (and
 * what is inside it) for I in the range. */
static int covers(const char *key, const char *s) {
    size_t k = strlen(key), pl;
    long lo, hi;
    if (!k) return 1;
    if (key_range(key, &pl, &lo, &hi)) {
        if (strncmp(key, s, pl) || s[pl] != '.') return 0;
        const char *i = s + pl + 1, *e = strchr(i, '.');
        long x = digits(i, e ? (size_t)(e - i) : strlen(i));
        return x >= lo && x <= hi;
    }
    return !strncmp(key, s, k) && (s[k] == '\0' || s[k] == '.');
}

/* How specific a key is (the longest covering key wins): its length; a
 * range counts as just below one index at its level. */
static size_t key_rank(const char *key) {
    size_t pl;
    long lo, hi;
    return key_range(key, &pl, &lo, &hi) ? pl + 1 : strlen(key);
}

/* 1 when two range keys with the same prefix overlap. */
static int ranges_overlap(const char *a, const char *b) {
    size_t pa, pb;
    long la, ha, lb, hb;
    if (!key_range(a, &pa, &la, &ha) || !key_range(b, &pb, &lb, &hb)) return 0;
    return pa == pb && !strncmp(a, b, pa) && la <= hb && lb <= ha;
}

/* The canonical form of key for arch, into out. */
static void canonical_key(const char *arch, const char *key, char *out, size_t cap) {
    for (size_t i = 0; i < sizeof ALIASES / sizeof ALIASES[0]; i++) {
        const alias *a = &ALIASES[i];
        if (strcmp(a->arch, "*") && (!arch || strcmp(a->arch, arch))) continue;
        if (covers(a->from, key) && *key) {
            snprintf(out, cap, "%s%s", a->to, key + strlen(a->from));
            return;
        }
    }
    snprintf(out, cap, "%s", key);
}

/* One key of a map. */
typedef struct mkey {
    const char *raw;      /* as written */
    int32_t value;        /* the entry's device */
    char canon[256];      /* canonical */
    int dev;              /* device index, or -1: a GPU that is not here */
    int gpu;              /* the GPU index asked for (dev == -1) */
} mkey;

static int cmp_raw(const void *a, const void *b) {
    return strcmp(((const mkey *)a)->raw, ((const mkey *)b)->raw);
}

/* Device index for a map entry's device; -1 for a missing GPU (*gpu set). */
static int map_value(P *p, int32_t v, const char *where, const char *q, int *dev, int *gpu,
                     lyra_error *err) {
    if (v == LYRA_DEVICE_CPU) { *dev = p->cpu; return LYRA_OK; }
    if (v == LYRA_DEVICE_DISK) { *dev = p->disk; return LYRA_OK; }
    if (v < 0)
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "\"%s\": unknown device %d (a GPU index, LYRA_DEVICE_CPU or LYRA_DEVICE_DISK)",
                        q, (int)v);
    *gpu = (int)v;
    *dev = -1;
    char id[16];
    snprintf(id, sizeof id, "%d", (int)v);
    for (int d = 0; d < p->ngpu; d++)
        if (!strcmp(p->dev[d].id, id)) *dev = d;
    return LYRA_OK;
}

static int place_map(P *p, lyra_error *err) {
    const lyra_device_map_entry *map = p->o->map;
    const char *where = p->o->map_where[0] ? p->o->map_where : "device_map";
    size_t nk = p->o->n_map > 0 ? (size_t)p->o->n_map : 0;
    if (!nk || !map) return lyra_err(err, LYRA_ERR_INPUT, where, "the map is empty");
    mkey *keys = calloc(nk, sizeof *keys);
    if (!keys) return lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
    int rc = LYRA_OK;
    size_t n = nk;
    for (size_t i = 0; i < n; i++) {
        keys[i].raw = map[i].module ? map[i].module : "";
        keys[i].value = map[i].device;
    }
    qsort(keys, n, sizeof *keys, cmp_raw); /* errors independent of the entries' order */
    for (size_t i = 0; i < n && !rc; i++) {
        mkey *K = &keys[i];
        char q[256];
        lyra_size_quote(K->raw, strlen(K->raw), q, sizeof q);
        canonical_key(p->m->arch, K->raw, K->canon, sizeof K->canon);
        rc = map_value(p, K->value, where, q, &K->dev, &K->gpu, err);
        if (rc) break;
        int any = 0;
        for (int m = 0; m < p->n && !rc; m++) {
            const lyra_plan_module *mod = &p->m->modules[m];
            if (covers(K->canon, mod->name)) any = 1;
            else if (covers(mod->name, K->canon))
                rc = lyra_err(err, LYRA_ERR_INPUT, where,
                              "\"%s\" is inside %s: a %s is never split (map the whole %s)", q,
                              mod->name, mod->kind == LYRA_PLAN_LAYER ? "layer" : "module",
                              mod->name);
        }
        if (!rc && !any)
            rc = lyra_err(err, LYRA_ERR_INPUT, where, "\"%s\" matches no module of this model", q);
        for (size_t j = 0; j < i && !rc; j++)
            if (ranges_overlap(keys[j].canon, K->canon)) {
                char q2[256];
                lyra_size_quote(keys[j].raw, strlen(keys[j].raw), q2, sizeof q2);
                rc = lyra_err(err, LYRA_ERR_INPUT, where, "\"%s\" and \"%s\" overlap", q2, q);
            } else if (!strcmp(keys[j].canon, K->canon)) {
                char q2[256];
                lyra_size_quote(keys[j].raw, strlen(keys[j].raw), q2, sizeof q2);
                rc = lyra_err(err, LYRA_ERR_INPUT, where,
                              "\"%s\" and \"%s\" both name %s (same key length after aliases)",
                              q2, q, K->canon[0] ? K->canon : "everything");
            }
    }
    /* every module: the longest covering key */
    int noted[64], n_noted = 0; /* missing GPUs already noted */
    for (int m = 0; m < p->n && !rc; m++) {
        const mkey *best = NULL;
        for (size_t i = 0; i < n; i++)
            if (covers(keys[i].canon, p->m->modules[m].name) &&
                (!best || key_rank(keys[i].canon) > key_rank(best->canon)))
                best = &keys[i];
        if (!best) {
            rc = lyra_err(err, LYRA_ERR_INPUT, where,
                          "no key covers %s (every module needs a device; \"\" covers all)",
                          p->m->modules[m].name);
            break;
        }
        if (best->dev >= 0) {
            p->where[m] = best->dev;
        } else if (p->o->fallback) {
            p->where[m] = p->cpu;
            int seen = 0; /* one note per missing GPU */
            for (int j = 0; j < n_noted; j++) seen |= noted[j] == best->gpu;
            if (!seen) {
                if (n_noted < (int)(sizeof noted / sizeof noted[0])) noted[n_noted++] = best->gpu;
                lyra_plan_note(p->notes, "%s: no GPU %d on this machine; its modules run on the cpu",
                               where, best->gpu);
            }
        } else {
            char q[256];
            lyra_size_quote(best->raw, strlen(best->raw), q, sizeof q);
            rc = lyra_err(err, LYRA_ERR_INPUT, where,
                          "\"%s\": no GPU %d on this machine (fallback is off)", q, best->gpu);
        }
    }
    free(keys);
    if (rc) return rc;
    /* budgets: name the first module that overflows its device */
    for (int d = 0; d < p->nd; d++) {
        if (d == p->disk || fits(p, d)) continue;
        int *saved = malloc((size_t)p->n * sizeof *saved);
        if (!saved) return lyra_err(err, LYRA_ERR_OOM, where, "out of memory");
        memcpy(saved, p->where, (size_t)p->n * sizeof *saved);
        unplace(p, 0, p->n);
        int culprit = p->n - 1;
        for (int m = 0; m < p->n; m++) {
            p->where[m] = saved[m];
            if (runs_on(p, m) == d && !fits(p, d)) { culprit = m; break; }
        }
        memcpy(p->where, saved, (size_t)p->n * sizeof *saved);
        free(saved);
        lyra_plan_usage u = usage(p, d);
        char a[32], b[32];
        return lyra_err(err, LYRA_ERR_INPUT, where,
                        "%s %s would hold %llu bytes (%s) but its budget is %llu bytes (%s); "
                        "over from %s on",
                        d == p->cpu ? "the" : "GPU", p->dev[d].id, (unsigned long long)u.total,
                        fmt_bytes(u.total, a, sizeof a), (unsigned long long)p->dev[d].budget,
                        fmt_bytes(p->dev[d].budget, b, sizeof b), p->m->modules[culprit].name);
    }
    return LYRA_OK;
}

/* ------------------------------------------------------------- strategies */

static int place(P *p, lyra_error *err) {
    const lyra_plan_opts *o = p->o;
    lyra_plan_strategy st = o->strategy == LYRA_PLAN_AUTO ? LYRA_PLAN_BALANCED : o->strategy;
    const char *where = o->map_where[0] ? o->map_where : "device_map";
    int has_layers = o->gpu_layers >= 0;
    if (o->gpu_layers < -1) /* a caller that skipped the parser */
        return lyra_err(err, LYRA_ERR_INPUT, "gpu_layers", "%d: cannot be negative", o->gpu_layers);
    if (o->n_split && st != LYRA_PLAN_BALANCED)
        return lyra_err(err, LYRA_ERR_INPUT, "tensor_split",
                        "needs the auto (balanced) strategy, not %s", where);
    if (st == LYRA_PLAN_FIXED) {
        if (!o->fixed) return lyra_err(err, LYRA_ERR_INPUT, "plan", "fixed map missing");
        for (int i = 0; i < p->n; i++) {
            int d = -1;
            for (int j = 0; j < p->nd; j++)
                if (o->fixed[i] && !strcmp(p->dev[j].id, o->fixed[i])) d = j;
            if (d < 0)
                return lyra_err(err, LYRA_ERR_INPUT, "plan", "%s: no device \"%s\"",
                                p->m->modules[i].name, o->fixed[i] ? o->fixed[i] : "");
            p->where[i] = d;
        }
        return LYRA_OK;
    }
    if (st == LYRA_PLAN_MAP) {
        if (has_layers)
            return lyra_err(err, LYRA_ERR_INPUT, "gpu_layers", "conflicts with the map of %s", where);
        return place_map(p, err);
    }
    if (st == LYRA_PLAN_CPU) {
        if (has_layers && o->gpu_layers > 0)
            return lyra_err(err, LYRA_ERR_INPUT, "gpu_layers",
                            "%d GPU layers conflict with the cpu device map", o->gpu_layers);
        return tail(p, 0, err);
    }
    if (st == LYRA_PLAN_GPU) { /* everything (or the gpu_layers part) on one GPU */
        char id[16];
        snprintf(id, sizeof id, "%d", o->gpu);
        int g = -1;
        for (int d = 0; d < p->ngpu; d++)
            if (!strcmp(p->dev[d].id, id)) g = d;
        if (g < 0) {
            if (!o->fallback)
                return lyra_err(err, LYRA_ERR_INPUT, where, "no GPU %d on this machine", o->gpu);
            lyra_plan_note(p->notes, "%s: no GPU %d on this machine; the model runs on the cpu",
                           where, o->gpu);
            return tail(p, 0, err);
        }
        int e = has_layers ? gpu_end(p, o->gpu_layers) : p->n;
        int devs[1] = {g};
        uint64_t caps[1] = {p->dev[g].budget};
        int end = fill(p, 0, e, devs, caps, 1);
        if (end < e && has_layers && o->step_down) return tail(p, step_down(p, st, g, end, -1), err);
        if (end < e) {
            lyra_plan_usage u;
            p->where[end] = g;
            u = usage(p, g);
            p->where[end] = -1;
            char a[32], b[32];
            return lyra_err(err, LYRA_ERR_INPUT, where,
                            "%s does not fit on GPU %d: it would hold %llu bytes (%s), budget %llu "
                            "bytes (%s)",
                            p->m->modules[end].name, o->gpu, (unsigned long long)u.total,
                            fmt_bytes(u.total, a, sizeof a), (unsigned long long)p->dev[g].budget,
                            fmt_bytes(p->dev[g].budget, b, sizeof b));
        }
        return tail(p, e, err);
    }
    /* balanced, balanced_low_0, sequential */
    int e = has_layers ? gpu_end(p, o->gpu_layers) : p->n;
    if (!p->ngpu) {
        if (has_layers && e > 0)
            lyra_plan_note(p->notes, "gpu_layers: no GPUs on this machine; the model runs on the cpu");
        if (o->n_split)
            lyra_plan_note(p->notes, "tensor_split: no GPUs on this machine; ignored");
        return tail(p, 0, err);
    }
    if (o->n_split) {
        int rc = split_check(p, err);
        if (rc) return rc;
        int over = split_assign(p, e);
        if (over >= 0 && has_layers && o->step_down) return tail(p, step_down(p, st, -1, e, over), err);
        return over >= 0 ? split_over(p, over, err) : tail(p, e, err);
    }
    int end = place_gpus(p, e, st);
    if (has_layers && end < e && o->step_down) return tail(p, step_down(p, st, -1, end, -1), err);
    if (has_layers && end < e) return gpu_overflow(p, end, "gpu_layers", err);
    return tail(p, end, err);
}

/* ------------------------------------------------------------------ setup */

/* Order: GPUs by numeric id, then cpu, then disk. */
static int dev_rank(const lyra_plan_device *d, long *num) {
    *num = 0;
    if (!strcmp(d->kind, "disk")) return 2;
    if (!strcmp(d->kind, "cpu")) return 1;
    *num = strtol(d->id, NULL, 10);
    return 0;
}

static int cmp_dev(const void *a, const void *b) {
    long na, nb;
    int ra = dev_rank(a, &na), rb = dev_rank(b, &nb);
    if (ra != rb) return ra < rb ? -1 : 1;
    if (na != nb) return na < nb ? -1 : 1;
    return strcmp(((const lyra_plan_device *)a)->id, ((const lyra_plan_device *)b)->id);
}

static int check_model(const lyra_plan_model *m, lyra_error *err) {
    if (!m || m->n_modules <= 0 || !m->modules)
        return lyra_err(err, LYRA_ERR_INPUT, "plan", "no modules to place");
    if (m->n_modules > 100000)
        return lyra_err(err, LYRA_ERR_INPUT, "plan", "%d modules: too many", m->n_modules);
    for (int i = 0; i < m->n_modules; i++) {
        const lyra_plan_module *a = &m->modules[i];
        if (!a->name[0] || (a->n_tensors && !a->tensors) || a->n_tensors < 0 || (int)a->kind < 0 ||
            (int)a->kind > 3)
            return lyra_err(err, LYRA_ERR_INPUT, "plan", "module %d is malformed", i);
        for (int j = 0; j < i; j++)
            if (!strcmp(m->modules[j].name, a->name))
                return lyra_err(err, LYRA_ERR_INPUT, "plan", "module %s listed twice", a->name);
    }
    return LYRA_OK;
}

/* Copy devs into p->dev in order, with a disk; checks ids. */
static int setup_devices(P *p, lyra_plan_device *dev, const lyra_plan_device *devs, int n,
                         lyra_error *err) {
    int nd = 0, ncpu = 0, ndisk = 0;
    for (int i = 0; i < n; i++) {
        const lyra_plan_device *d = &devs[i];
        if (!strcmp(d->kind, "cpu")) ncpu++;
        else if (!strcmp(d->kind, "disk")) ndisk++;
        else if (strcmp(d->kind, "gpu") || !d->id[0] || strspn(d->id, "0123456789") != strlen(d->id))
            return lyra_err(err, LYRA_ERR_INPUT, "plan", "device \"%s\" (%s) is not a GPU, cpu or disk",
                            d->id, d->kind);
        if (nd == LYRA_PLAN_MAX_DEVICES - (ndisk ? 0 : 1))
            return lyra_err(err, LYRA_ERR_INPUT, "plan", "more than %d GPUs", LYRA_PLAN_MAX_GPUS);
        dev[nd++] = *d;
    }
    if (ncpu != 1 || ndisk > 1)
        return lyra_err(err, LYRA_ERR_INPUT, "plan", "need one cpu device (and at most one disk)");
    if (!ndisk) lyra_plan_device_disk(&dev[nd++]);
    qsort(dev, (size_t)nd, sizeof *dev, cmp_dev);
    for (int i = 1; i < nd; i++)
        if (!strcmp(dev[i].id, dev[i - 1].id))
            return lyra_err(err, LYRA_ERR_INPUT, "plan", "device %s listed twice", dev[i].id);
    p->dev = dev;
    p->nd = nd;
    p->ngpu = nd - 2;
    p->cpu = nd - 2;
    p->disk = nd - 1;
    return LYRA_OK;
}

void lyra_plan_free(lyra_plan *p) {
    if (!p) return;
    free(p->modules);
    free(p->module_dev);
    free(p);
}

int lyra_plan_make(const lyra_plan_model *model, const lyra_plan_device *devs, int n_devs,
                   const lyra_plan_opts *opts, lyra_plan **out, lyra_error *err) {
    *out = NULL;
    lyra_plan_opts def = lyra_plan_default_opts();
    const lyra_plan_opts *o = opts ? opts : &def;
    int rc = check_model(model, err);
    if (rc) return rc;
    if (o->ctx <= 0 || o->batch <= 0)
        return lyra_err(err, LYRA_ERR_INPUT, "plan", "ctx and batch must be > 0 (got %d, %d)",
                        (int)o->ctx, (int)o->batch);
    if (o->strategy == LYRA_PLAN_MAP && o->n_map && !o->map)
        return lyra_err(err, LYRA_ERR_INPUT, "plan", "the map strategy needs entries");
    lyra_plan *pl = calloc(1, sizeof *pl);
    P p;
    memset(&p, 0, sizeof p);
    p.m = model;
    p.o = o;
    p.n = model->n_modules;
    if (!pl) return lyra_err(err, LYRA_ERR_OOM, "plan", "out of memory");
    p.notes = &pl->notes;
    rc = setup_devices(&p, pl->dev, devs, n_devs, err);
    if (rc) {
        free(pl);
        return rc;
    }
    p.embed = p.head = -1;
    p.step.from = p.step.to = -1;
    for (int i = 0; i < p.n; i++) {
        if (model->modules[i].kind == LYRA_PLAN_EMBED && p.embed < 0) p.embed = i;
        if (model->modules[i].kind == LYRA_PLAN_HEAD && p.head < 0) p.head = i;
    }
    size_t nm = (size_t)p.n;
    p.w = calloc(nm * (size_t)p.nd, sizeof *p.w);
    p.work = calloc(nm * (size_t)p.nd, sizeof *p.work);
    p.kv = calloc(nm, sizeof *p.kv);
    p.where = malloc(nm * sizeof *p.where);
    pl->modules = calloc(nm, sizeof *pl->modules);
    if (!p.w || !p.work || !p.kv || !p.where || !pl->modules) {
        rc = lyra_err(err, LYRA_ERR_OOM, "plan", "out of memory");
        goto done;
    }
    unplace(&p, 0, p.n);
    rc = precompute(&p, err);
    if (!rc) rc = place(&p, err);
    if (rc) goto done;
    for (int i = 0; i < p.n; i++)
        if (p.where[i] < 0) { /* cannot happen: every path places every module */
            rc = lyra_err(err, LYRA_ERR_RUNTIME, "plan", "%s left unplaced (internal error)",
                          model->modules[i].name);
            goto done;
        }
    pl->ctx = o->ctx;
    pl->batch = o->batch;
    pl->n_seq = o->n_seq > 1 ? o->n_seq : 1;
    pl->n_windowed = p.n_windowed;
    pl->window = p.window;
    pl->kv_all = p.kv_all;
    pl->kv_unwindowed = p.kv_unwindowed;
    pl->step = p.step;
    pl->n_devices = p.nd;
    for (int d = 0; d < p.nd; d++) pl->use[d] = usage(&p, d);
    pl->n_modules = p.n;
    for (int i = 0; i < p.n; i++) {
        pl->modules[i] = model->modules[i];
        pl->modules[i].tensors = NULL;
        pl->modules[i].n_tensors = 0;
    }
    pl->module_dev = p.where;
    p.where = NULL;
done:
    free(p.w);
    free(p.work);
    free(p.kv);
    free(p.where);
    if (rc) {
        lyra_plan_free(pl);
        return rc;
    }
    *out = pl;
    return LYRA_OK;
}

int lyra_plan_device_index(const lyra_plan *p, const char *id) {
    for (int d = 0; d < p->n_devices; d++)
        if (!strcmp(p->dev[d].id, id)) return d;
    return -1;
}

const char *lyra_plan_module_device(const lyra_plan *p, const char *module) {
    for (int i = 0; i < p->n_modules; i++)
        if (!strcmp(p->modules[i].name, module))
            return p->module_dev[i] >= 0 ? p->dev[p->module_dev[i]].id : NULL;
    return NULL;
}
