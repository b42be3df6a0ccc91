/* model.c: lyra_model (lyra.h): opening a GGUF, loading the architecture and
 * the tokenizer, planning (placement.c) and placing the weights on devices
 * (GPUs: allocated and copied in; the CPU: adopted in place from the mapping
 * and made resident, or copied with use_mmap = 0; the disk tier: left in the
 * mapping), the model getters and the tokenizer wrappers; also the library's
 * version and build features. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "build_info.h"
#include "core/log.h"
#include "runtime/runtime.h"

/* ----------------------------------------------------------------- version */

const char *lyra_version(void) { return LYRA_BUILD_VERSION; }

const char *lyra_build_features(void) {
    static _Thread_local char buf[256];
    lyra_cpu_path p;
    lyra_error e;
    char sel[64];
    if (lyra_cpu_path_select(&p, &e) == LYRA_OK)
        snprintf(sel, sizeof sel, "%s", lyra_cpu_path_name(p));
    else
        snprintf(sel, sizeof sel, "none (LYRA_CPU is invalid)");
#if LYRA_BUILD_HAVE_CUDA
    snprintf(buf, sizeof buf, "simd: %s (selected: %s); CUDA (archs %s)", LYRA_BUILD_SIMD, sel,
             LYRA_BUILD_CUDA_ARCHS);
#else
    snprintf(buf, sizeof buf, "simd: %s (selected: %s); no CUDA", LYRA_BUILD_SIMD, sel);
#endif
    return buf;
}

/* ------------------------------------------------------------------- model */

lyra_model_params lyra_model_default_params(void) {
    lyra_model_params p;
    memset(&p, 0, sizeof p);
    p.use_mmap = 1;
    p.n_batch = 512;
    p.kv_type = LYRA_KV_F16;
    p.fallback = 1;
    return p;
}

/* ------------------------------------------------------------ residency */

static size_t page_size(void) {
    long ps = sysconf(_SC_PAGESIZE);
    return ps > 0 ? (size_t)ps : 4096;
}

/* Make [p, p+n) of the mapping resident: read one byte per page; with lock,
 * mlock it (outward to pages). Returns 1 when locked. */
static int make_resident(const void *p, size_t n, int lock) {
    size_t ps = page_size();
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(ps - 1), e = (uintptr_t)p + n;
    madvise((void *)a, e - a, MADV_WILLNEED);
    volatile unsigned char sink = 0;
    for (uintptr_t q = (uintptr_t)p; q < e; q += ps) sink ^= *(const volatile unsigned char *)q;
    if (n) sink ^= *((const volatile unsigned char *)p + n - 1);
    (void)sink;
    if (!lock) return 0;
    if (mlock((void *)a, e - a)) {
        LYRA_WARN("--mlock: cannot lock %zu bytes of weights in RAM: %s (raise ulimit -l)", n,
                  strerror(errno));
        return 0;
    }
    return 1;
}

static void unlock(const void *p, size_t n) {
    size_t ps = page_size();
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(ps - 1), e = (uintptr_t)p + n;
    munlock((void *)a, e - a);
}

/* Drop the pages of [p, p+n) of the mapping (inward to whole pages, so no
 * neighbour's page goes): the disk tier after a module ran. */
void lyra_runtime_release_pages(const void *p, size_t n) {
    size_t ps = page_size();
    uintptr_t a = ((uintptr_t)p + ps - 1) & ~(uintptr_t)(ps - 1);
    uintptr_t e = ((uintptr_t)p + n) & ~(uintptr_t)(ps - 1);
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}

/* --------------------------------------------------------------- placing */

static int add_placed(lyra_model *m, lyra_placed **out, lyra_error *err) {
    if (m->n_placed == m->cap_placed) {
        int cap = m->cap_placed ? 2 * m->cap_placed : 64;
        lyra_placed *p = realloc(m->placed, (size_t)cap * sizeof *p);
        if (!p) return lyra_err(err, LYRA_ERR_OOM, "model", "out of memory");
        m->placed = p;
        m->cap_placed = cap;
    }
    *out = &m->placed[m->n_placed];
    memset(*out, 0, sizeof **out);
    return LYRA_OK;
}

/* Place one tensor (mapping host, n bytes) on device di: adopt it in place
 * on the CPU with use_mmap (made resident, locked with use_mlock), else
 * allocate and copy it in. The entry is added only on success. */
int lyra_runtime_place(lyra_model *m, int di, lyra_weight *w, const void *host, lyra_error *err) {
    lyra_device *d = m->dev[di];
    lyra_placed *pl = NULL;
    int rc = add_placed(m, &pl, err);
    if (rc) return rc;
    pl->dev = di;
    pl->w = w;
    pl->host = host;
    pl->n_bytes = w->n_bytes;
    if (m->use_mmap && !strcmp(d->kind, "cpu") && d->ops->adopt(d, host, w->n_bytes) == LYRA_OK) {
        pl->locked = make_resident(host, w->n_bytes, m->use_mlock);
    } else {
        void *p;
        rc = d->ops->alloc(d, w->n_bytes, &p);
        if (rc)
            return lyra_err(err, rc, d->id, "out of memory for weight %s (%llu bytes)", w->name,
                            (unsigned long long)w->n_bytes);
        if ((rc = d->ops->copy_in(d, p, host, w->n_bytes))) {
            d->ops->free(d, p, w->n_bytes);
            return lyra_err(err, rc, d->id, "cannot load weight %s", w->name);
        }
        pl->ptr = p;
    }
    m->n_placed++;
    m->dev_weights[di] += w->n_bytes;
    return LYRA_OK;
}

/* Undo placed entry j (it stays in the array; the caller compacts). */
void lyra_runtime_unplace(lyra_model *m, int j) {
    lyra_placed *pl = &m->placed[j];
    lyra_device *d = m->dev[pl->dev];
    if (pl->ptr) d->ops->free(d, pl->ptr, pl->n_bytes);
    else {
        if (pl->locked) unlock(pl->host, pl->n_bytes);
        d->ops->unadopt(d, pl->host, pl->n_bytes);
    }
    m->dev_weights[pl->dev] -= pl->n_bytes;
}

/* Place every module's weights on its device; a tensor read by several
 * modules of one device (the tied embedding) is placed once; disk modules
 * stay in the mapping (not placed, not counted); rope_freqs.weight goes to
 * every device running a layer. */
static int place_weights(lyra_model *m, lyra_error *err) {
    lyra_llama *a = m->arch;
    int n_mod = lyra_llama_n_modules(a), rc;
    int runs_layer[LYRA_MAX_DEVICES] = {0};
    const void **seen_disk = calloc((size_t)n_mod * 10 + 1, sizeof *seen_disk);
    int n_seen_disk = 0;
    if (!seen_disk) return lyra_err(err, LYRA_ERR_OOM, "model", "out of memory");
    for (int i = 0; i < n_mod; i++) {
        lyra_weight *w[10];
        int n = lyra_llama_module_weights(a, i, w), di = m->module_dev[i];
        if (lyra_llama_module_kind(a, i, NULL) == LYRA_MODULE_LAYER) runs_layer[di] = 1;
        for (int k = 0; k < n; k++) {
            if (a->has_rope_freqs && w[k] == &a->rope_freqs) continue; /* below */
            const void *host = w[k]->data;
            int seen = -1, elsewhere = 0;
            for (int j = 0; j < m->n_placed; j++) {
                if (m->placed[j].host != host) continue;
                if (m->placed[j].dev == di) { seen = j; break; }
                elsewhere = 1;
            }
            for (int j = 0; j < n_seen_disk; j++)
                if (seen_disk[j] == host) elsewhere = 1;
            if (m->module_disk[i]) { /* read through the mapping when used */
                if (!elsewhere) m->disk_weights += w[k]->n_bytes;
                seen_disk[n_seen_disk++] = host;
            } else if (seen >= 0) { /* tied: reuse the placed copy */
                if (m->placed[seen].ptr) w[k]->data = m->placed[seen].ptr;
                continue;
            } else {
                if ((rc = lyra_runtime_place(m, di, w[k], host, err))) goto done;
                if (m->placed[m->n_placed - 1].ptr) w[k]->data = m->placed[m->n_placed - 1].ptr;
            }
            if (!elsewhere && seen < 0) { /* the model's size counts each tensor once */
                m->n_bytes += w[k]->n_bytes;
                m->n_params += (uint64_t)(w[k]->cols * w[k]->rows);
            }
        }
    }
    rc = LYRA_OK;
    if (a->has_rope_freqs) {
        const void *host = a->rope_freqs.data;
        m->n_bytes += a->rope_freqs.n_bytes;
        m->n_params += (uint64_t)a->rope_freqs.cols;
        for (int di = 0; di < m->n_dev && !rc; di++) {
            if (!runs_layer[di]) continue;
            if ((rc = lyra_runtime_place(m, di, &a->rope_freqs, host, err))) break;
            lyra_placed *pl = &m->placed[m->n_placed - 1];
            m->rope_dev[di] = pl->ptr ? pl->ptr : host;
        }
    }
done:
    free(seen_disk);
    return rc;
}

/* Devices, plan, budgets and the module placement of m from p. */
static int place_modules(lyra_model *m, const lyra_model_params *p, lyra_error *err) {
    int rc = lyra_runtime_devices(p->n_threads, m->dev, &m->n_dev, err);
    if (rc) return rc;
    m->cpu = m->n_dev - 1;
    if ((rc = lyra_runtime_plan(m->arch, p, m->dev, m->n_dev, &m->plan, err))) return rc;
    const lyra_plan *pl = m->plan;
    int n_mod = lyra_llama_n_modules(m->arch);
    m->module_dev = calloc((size_t)n_mod, sizeof *m->module_dev);
    m->module_disk = calloc((size_t)n_mod, 1);
    if (!m->module_dev || !m->module_disk) return lyra_err(err, LYRA_ERR_OOM, "model", "out of memory");
    if (pl->n_modules != n_mod) return lyra_err(err, LYRA_ERR_RUNTIME, "model", "plan has %d modules, not %d", pl->n_modules, n_mod);
    for (int i = 0; i < n_mod; i++) {
        const lyra_plan_device *d = &pl->dev[pl->module_dev[i]];
        if (!strcmp(d->kind, "disk")) {
            m->module_dev[i] = m->cpu;
            m->module_disk[i] = 1;
            continue;
        }
        int di = -1;
        for (int j = 0; j < m->n_dev; j++)
            if (!strcmp(m->dev[j]->id, d->id)) di = j;
        if (di < 0) return lyra_err(err, LYRA_ERR_RUNTIME, "model", "planned device %s is not here", d->id);
        m->module_dev[i] = di;
    }
    /* budgets cap what lyra allocates: a GPU its plan budget, the CPU its
     * budget minus the planned weights it maps in place */
    for (int j = 0; j < m->n_dev; j++) {
        int pi = lyra_plan_device_index(pl, m->dev[j]->id);
        if (pi < 0) continue;
        uint64_t b = pl->dev[pi].budget;
        if (j == m->cpu && m->use_mmap) b = b > pl->use[pi].weights ? b - pl->use[pi].weights : 1;
        m->dev[j]->budget = b;
    }
    return place_weights(m, err);
}

int lyra_model_open(const char *path, const lyra_model_params *params, lyra_model **out,
                    lyra_error *err) {
    *out = NULL;
    lyra_model_params p = params ? *params : lyra_model_default_params();
    if (p.n_ctx < 0) return lyra_err(err, LYRA_ERR_INPUT, "n_ctx", "must be >= 0, got %d", p.n_ctx);
    if (p.n_batch < 0) return lyra_err(err, LYRA_ERR_INPUT, "n_batch", "must be >= 0, got %d", p.n_batch);
    if (p.n_threads < 0)
        return lyra_err(err, LYRA_ERR_INPUT, "n_threads", "must be >= 0, got %d", p.n_threads);
    if (p.kv_type != LYRA_KV_F16 && p.kv_type != LYRA_KV_F32)
        return lyra_err(err, LYRA_ERR_INPUT, "kv_type", "unknown KV cache type %d", p.kv_type);
    lyra_model *m = calloc(1, sizeof *m);
    if (!m) return lyra_err(err, LYRA_ERR_OOM, path, "out of memory");
    m->use_mmap = p.use_mmap != 0;
    m->use_mlock = p.use_mlock != 0;
    int rc = lyra_gguf_open(path, &m->gguf, err);
    if (!rc) rc = lyra_llama_load(m->gguf, &m->arch, err);
    if (!rc) rc = lyra_tokenizer_load(m->gguf, &m->tok, err);
    if (!rc && lyra_tok_n_vocab(m->tok) > m->arch->hp.n_vocab)
        rc = lyra_err(err, LYRA_ERR_INPUT, path,
                      "the tokenizer has %d tokens but the model only %d embeddings",
                      (int)lyra_tok_n_vocab(m->tok), (int)m->arch->hp.n_vocab);
    if (!rc) rc = place_modules(m, &p, err);
    if (rc) {
        lyra_model_free(m);
        return rc;
    }
    *out = m;
    return LYRA_OK;
}

void lyra_model_free(lyra_model *m) {
    if (!m) return;
    for (int j = 0; j < m->n_placed; j++) lyra_runtime_unplace(m, j);
    free(m->placed);
    for (int i = 0; i < m->n_dev; i++) lyra_device_free(m->dev[i]);
    free(m->module_dev);
    free(m->module_disk);
    lyra_plan_free(m->plan);
    lyra_tokenizer_free(m->tok);
    lyra_llama_free(m->arch);
    lyra_gguf_close(m->gguf);
    free(m);
}

const char *lyra_model_arch(const lyra_model *m) { (void)m; return "llama"; }
int32_t lyra_model_n_vocab(const lyra_model *m) { return m->arch->hp.n_vocab; }
int32_t lyra_model_n_layer(const lyra_model *m) { return m->arch->hp.n_layer; }
int32_t lyra_model_n_embd(const lyra_model *m) { return m->arch->hp.n_embd; }
int32_t lyra_model_n_ctx_train(const lyra_model *m) { return m->arch->hp.n_ctx_train; }
uint64_t lyra_model_n_bytes(const lyra_model *m) { return m->n_bytes; }
uint64_t lyra_model_n_params(const lyra_model *m) { return m->n_params; }

/* --------------------------------------------------------------- tokenizer */

int lyra_tokenize(const lyra_model *m, const char *text, size_t len, int add_bos,
                  int parse_special, int32_t **out, size_t *n_out, lyra_error *err) {
    if (add_bos < 0) add_bos = lyra_tok_add_bos(m->tok);
    return lyra_tok_encode(m->tok, text, len, add_bos != 0, parse_special, out, n_out, err);
}

size_t lyra_token_to_piece(const lyra_model *m, int32_t token, int render_special, char *buf,
                           size_t cap) {
    return lyra_tok_piece(m->tok, token, render_special, buf, cap);
}

int32_t lyra_token_bos(const lyra_model *m) { return lyra_tok_bos(m->tok); }
int32_t lyra_token_eos(const lyra_model *m) { return lyra_tok_eos(m->tok); }
int lyra_token_is_eog(const lyra_model *m, int32_t token) { return lyra_tok_is_eog(m->tok, token); }
int lyra_add_bos_default(const lyra_model *m) { return lyra_tok_add_bos(m->tok); }

/* The public streaming detokenizer is the tokenizer's stream with every space
 * kept (the continuation of a prompt). */
struct lyra_detok {
    lyra_tok_stream *s; /* the tokenizer module's stream */
};

lyra_detok *lyra_detok_new(const lyra_model *m) {
    lyra_detok *d = malloc(sizeof *d);
    if (!d) return NULL;
    d->s = lyra_tok_stream_new(m->tok, 0);
    if (!d->s) {
        free(d);
        return NULL;
    }
    return d;
}

size_t lyra_detok_feed(lyra_detok *d, int32_t token, char *buf, size_t cap) {
    return lyra_tok_stream_feed(d->s, token, buf, cap);
}

size_t lyra_detok_flush(lyra_detok *d, char *buf, size_t cap) {
    return lyra_tok_stream_flush(d->s, buf, cap);
}

void lyra_detok_free(lyra_detok *d) {
    if (!d) return;
    lyra_tok_stream_free(d->s);
    free(d);
}
