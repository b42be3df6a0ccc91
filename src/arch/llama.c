/* llama.c: the Llama architecture (see llama.h): loading and validating the
 * hyper-parameters and weights of a GGUF, the module list, and the forward
 * pass over device ops. */
#include "arch/llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ hyper-params */

#define LYRA_LLAMA_MAX_LAYERS 65536 /* sanity bound on llama.block_count */

/* Read a required positive integer key into *out. */
static int get_int(const lyra_gguf *g, const char *key, int required, int32_t def,
                   int32_t *out, lyra_error *err) {
    const char *path = lyra_gguf_path(g);
    int64_t v;
    if (lyra_gguf_find_key(g, key) < 0) {
        if (required) return lyra_err(err, LYRA_ERR_INPUT, path, "missing metadata key %s", key);
        *out = def;
        return LYRA_OK;
    }
    if (!lyra_gguf_get_i64(g, key, &v))
        return lyra_err(err, LYRA_ERR_INPUT, path, "metadata key %s is not an integer", key);
    if (v <= 0 || v > INT32_MAX)
        return lyra_err(err, LYRA_ERR_INPUT, path, "metadata key %s = %lld is out of range", key,
                        (long long)v);
    *out = (int32_t)v;
    return LYRA_OK;
}

static int get_float(const lyra_gguf *g, const char *key, float def, float *out,
                     lyra_error *err) {
    if (lyra_gguf_find_key(g, key) < 0) {
        *out = def;
        return LYRA_OK;
    }
    if (!lyra_gguf_get_f32(g, key, out) || !isfinite(*out))
        return lyra_err(err, LYRA_ERR_INPUT, lyra_gguf_path(g),
                        "metadata key %s is not a finite number", key);
    return LYRA_OK;
}

static int str_eq(lyra_gguf_str s, const char *z) {
    return s.len == strlen(z) && memcmp(s.ptr, z, s.len) == 0;
}

static int load_hparams(const lyra_gguf *g, lyra_llama_hparams *hp, lyra_error *err) {
    const char *path = lyra_gguf_path(g);
    lyra_gguf_str arch;
    if (!lyra_gguf_get_str(g, "general.architecture", &arch))
        return lyra_err(err, LYRA_ERR_INPUT, path, "missing metadata key general.architecture");
    if (!str_eq(arch, "llama"))
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "general.architecture is '%.*s'; lyra supports only 'llama'",
                        (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
    int rc;
    if ((rc = get_int(g, "llama.context_length", 1, 0, &hp->n_ctx_train, err)) ||
        (rc = get_int(g, "llama.embedding_length", 1, 0, &hp->n_embd, err)) ||
        (rc = get_int(g, "llama.block_count", 1, 0, &hp->n_layer, err)) ||
        (rc = get_int(g, "llama.feed_forward_length", 1, 0, &hp->n_ff, err)) ||
        (rc = get_int(g, "llama.attention.head_count", 1, 0, &hp->n_head, err)) ||
        (rc = get_int(g, "llama.attention.head_count_kv", 0, hp->n_head, &hp->n_head_kv, err)))
        return rc;
    int64_t n_expert = 0;
    if (lyra_gguf_get_i64(g, "llama.expert_count", &n_expert) && n_expert > 0)
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "llama.expert_count = %lld: mixture-of-experts models are not supported",
                        (long long)n_expert);
    if (hp->n_head_kv > hp->n_head || hp->n_head % hp->n_head_kv)
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "llama.attention.head_count_kv = %d does not divide head_count = %d",
                        hp->n_head_kv, hp->n_head);
    if (hp->n_embd % hp->n_head)
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "llama.embedding_length = %d is not a multiple of head_count = %d",
                        hp->n_embd, hp->n_head);
    int32_t kl = 0, vl = 0;
    if ((rc = get_int(g, "llama.attention.key_length", 0, hp->n_embd / hp->n_head, &kl, err)) ||
        (rc = get_int(g, "llama.attention.value_length", 0, kl, &vl, err)))
        return rc;
    if (kl != vl)
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "llama.attention.key_length = %d differs from value_length = %d", kl, vl);
    hp->head_dim = kl;
    int32_t n_rot = 0;
    if ((rc = get_int(g, "llama.rope.dimension_count", 0, hp->head_dim, &n_rot, err))) return rc;
    if (n_rot > hp->head_dim || n_rot % 2 || n_rot > 1024)
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "llama.rope.dimension_count = %d must be even and at most the head size %d",
                        n_rot, hp->head_dim < 1024 ? hp->head_dim : 1024);
    hp->rope.n_rot = n_rot;
    if ((rc = get_float(g, "llama.attention.layer_norm_rms_epsilon", 1e-5f, &hp->eps, err)) ||
        (rc = get_float(g, "llama.rope.freq_base", 10000.0f, &hp->rope.freq_base, err)))
        return rc;
    if (hp->eps < 0 || hp->rope.freq_base <= 0)
        return lyra_err(err, LYRA_ERR_INPUT, path, "%s must be positive",
                        hp->eps < 0 ? "llama.attention.layer_norm_rms_epsilon"
                                    : "llama.rope.freq_base");
    hp->rope.freq_scale = 1.0f;
    lyra_gguf_str st;
    float factor = 0;
    const char *fkey = NULL; /* the key the factor came from */
    if (lyra_gguf_get_str(g, "llama.rope.scaling.type", &st) && !str_eq(st, "none")) {
        if (!str_eq(st, "linear"))
            return lyra_err(err, LYRA_ERR_INPUT, path,
                            "llama.rope.scaling.type '%.*s' is not supported (none, linear)",
                            (int)(st.len > 64 ? 64 : st.len), st.ptr);
        fkey = "llama.rope.scaling.factor";
    } else if (lyra_gguf_find_key(g, "llama.rope.scale_linear") >= 0) {
        fkey = "llama.rope.scale_linear";
    }
    if (fkey) {
        if ((rc = get_float(g, fkey, 1.0f, &factor, err))) return rc;
        /* 0 is not "unset" here: a file that names a factor means it */
        if (!(factor > 0) || !isfinite(1.0f / factor))
            return lyra_err(err, LYRA_ERR_INPUT, path,
                            "%s = %g: the rope scaling factor must be a positive number", fkey,
                            (double)factor);
        hp->rope.freq_scale = 1.0f / factor;
    }
    /* vocabulary: llama.vocab_size, else the tokenizer's token count */
    uint64_t ntok = 0;
    lyra_gguf_vtype et;
    if (lyra_gguf_find_key(g, "llama.vocab_size") >= 0) {
        if ((rc = get_int(g, "llama.vocab_size", 1, 0, &hp->n_vocab, err))) return rc;
    } else if (lyra_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &ntok) && ntok > 0 &&
               ntok <= INT32_MAX) {
        hp->n_vocab = (int32_t)ntok;
    } else {
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "no vocabulary size: neither llama.vocab_size nor tokenizer.ggml.tokens");
    }
    return LYRA_OK;
}

/* ----------------------------------------------------------------- weights */

static void shape_str(int n_dims, const int64_t *ne, char *buf, size_t cap) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n_dims && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)ne[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Find tensor name, check its shape ([cols] when rows == 0, else [cols, rows])
 * and type (float_only: must be F32), fill w. */
static int get_weight(const lyra_gguf *g, const char *name, int64_t cols, int64_t rows,
                      int float_only, lyra_weight *w, lyra_error *err) {
    const char *path = lyra_gguf_path(g);
    const lyra_gguf_tensor *t = lyra_gguf_find_tensor(g, name);
    if (!t) return lyra_err(err, LYRA_ERR_INPUT, path, "tensor %s is missing", name);
    int want_dims = rows ? 2 : 1;
    int64_t want[2] = {cols, rows};
    int ok = t->ne[0] == cols && (rows ? t->ne[1] == rows : 1);
    for (int i = want_dims; i < 4; i++) ok = ok && t->ne[i] == 1;
    if (!ok) {
        char a[96], b[96];
        shape_str(want_dims, want, a, sizeof a);
        shape_str(t->n_dims, t->ne, b, sizeof b);
        return lyra_err(err, LYRA_ERR_INPUT, path, "tensor %s has shape %s, expected %s", name,
                        b, a);
    }
    const char *tn = lyra_type_name(t->type);
    char tid[32];
    if (!tn) {
        snprintf(tid, sizeof tid, "type id %d", (int)t->type);
        tn = tid;
    }
    if (!lyra_type_supported(t->type))
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "tensor %s has type %s, which lyra does not support", name, tn);
    if (float_only && t->type != LYRA_TYPE_F32)
        return lyra_err(err, LYRA_ERR_INPUT, path, "tensor %s has type %s, expected F32", name, tn);
    if (cols % lyra_type_block(t->type))
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "tensor %s: rows of %lld elements are not whole %s blocks of %lld", name,
                        (long long)cols, tn, (long long)lyra_type_block(t->type));
    if (t->n_bytes != lyra_row_bytes(t->type, cols) * (uint64_t)(rows ? rows : 1))
        return lyra_err(err, LYRA_ERR_INPUT, path, "tensor %s: %llu bytes do not match its shape",
                        name, (unsigned long long)t->n_bytes);
    w->name = t->name;
    w->type = t->type;
    w->cols = cols;
    w->rows = rows ? rows : 1;
    w->data = t->data;
    w->n_bytes = t->n_bytes;
    return LYRA_OK;
}

/* llama.block_count against the file: 9 tensors per block, and the last
 * block's first tensor present (before anything is allocated per block). */
static int check_block_count(const lyra_gguf *g, int32_t n_layer, lyra_error *err) {
    const char *path = lyra_gguf_path(g);
    int64_t n_t = lyra_gguf_n_tensors(g);
    char name[96];
    snprintf(name, sizeof name, "blk.%d.attn_norm.weight", (int)n_layer - 1);
    if (n_layer > LYRA_LLAMA_MAX_LAYERS || (int64_t)n_layer * 9 > n_t || !lyra_gguf_find_tensor(g, name))
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "llama.block_count = %d does not match the file's %lld tensors (9 per block, "
                        "at most %d blocks; %s %s)",
                        (int)n_layer, (long long)n_t, LYRA_LLAMA_MAX_LAYERS, name,
                        lyra_gguf_find_tensor(g, name) ? "present" : "missing");
    return LYRA_OK;
}

int lyra_llama_load(const lyra_gguf *g, lyra_llama **out, lyra_error *err) {
    *out = NULL;
    lyra_llama *m = calloc(1, sizeof *m);
    if (!m) return lyra_err(err, LYRA_ERR_OOM, "llama", "out of memory");
    int rc = load_hparams(g, &m->hp, err);
    if (rc) { free(m); return rc; }
    const lyra_llama_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim,
                  KV = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff, V = hp->n_vocab;
    /* the counts allocations are sized by must match tensors the file has:
     * a block_count of 2^31 must not become a 7 GB calloc */
    if ((rc = check_block_count(g, hp->n_layer, err))) { free(m); return rc; }
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) { free(m); return lyra_err(err, LYRA_ERR_OOM, "llama", "out of memory"); }
    if ((rc = get_weight(g, "token_embd.weight", E, V, 0, &m->tok_embd, err))) goto fail;
    for (int l = 0; l < hp->n_layer; l++) {
        lyra_llama_layer *L = &m->layers[l];
        struct { const char *suffix; int64_t cols, rows; int f32; lyra_weight *w; } spec[9] = {
            {"attn_norm", E, 0, 1, &L->attn_norm}, {"attn_q", E, Q, 0, &L->wq},
            {"attn_k", E, KV, 0, &L->wk},          {"attn_v", E, KV, 0, &L->wv},
            {"attn_output", Q, E, 0, &L->wo},      {"ffn_norm", E, 0, 1, &L->ffn_norm},
            {"ffn_gate", E, F, 0, &L->w_gate},     {"ffn_up", E, F, 0, &L->w_up},
            {"ffn_down", F, E, 0, &L->w_down},
        };
        for (int i = 0; i < 9; i++) {
            char name[96];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, spec[i].suffix);
            if ((rc = get_weight(g, name, spec[i].cols, spec[i].rows, spec[i].f32, spec[i].w, err)))
                goto fail;
        }
    }
    if ((rc = get_weight(g, "output_norm.weight", E, 0, 1, &m->output_norm, err))) goto fail;
    if (lyra_gguf_find_tensor(g, "output.weight")) {
        if ((rc = get_weight(g, "output.weight", E, V, 0, &m->output, err))) goto fail;
    } else {
        m->output = m->tok_embd;
        m->tied = 1;
    }
    if (lyra_gguf_find_tensor(g, "rope_freqs.weight")) {
        if ((rc = get_weight(g, "rope_freqs.weight", hp->rope.n_rot / 2, 0, 1, &m->rope_freqs, err)))
            goto fail;
        m->has_rope_freqs = 1;
        m->hp.rope.freq_factors = m->rope_freqs.data;
    }
    *out = m;
    return LYRA_OK;
fail:
    lyra_llama_free(m);
    return rc;
}

void lyra_llama_free(lyra_llama *m) {
    if (!m) return;
    free(m->layers);
    free(m);
}

/* ----------------------------------------------------------------- modules */

int lyra_llama_n_modules(const lyra_llama *m) { return m->hp.n_layer + 3; }

lyra_module_kind lyra_llama_module_kind(const lyra_llama *m, int i, int *layer) {
    if (layer) *layer = -1;
    if (i == 0) return LYRA_MODULE_EMBED;
    if (i <= m->hp.n_layer) {
        if (layer) *layer = i - 1;
        return LYRA_MODULE_LAYER;
    }
    return i == m->hp.n_layer + 1 ? LYRA_MODULE_NORM : LYRA_MODULE_HEAD;
}

int lyra_llama_module_name(const lyra_llama *m, int i, char *buf, size_t cap) {
    int layer;
    switch (lyra_llama_module_kind(m, i, &layer)) {
    case LYRA_MODULE_EMBED: return snprintf(buf, cap, "model.embed_tokens");
    case LYRA_MODULE_LAYER: return snprintf(buf, cap, "model.layers.%d", layer);
    case LYRA_MODULE_NORM: return snprintf(buf, cap, "model.norm");
    default: return snprintf(buf, cap, "lm_head");
    }
}

int lyra_llama_module_weights(lyra_llama *m, int i, lyra_weight **w) {
    int layer;
    switch (lyra_llama_module_kind(m, i, &layer)) {
    case LYRA_MODULE_EMBED: w[0] = &m->tok_embd; return 1;
    case LYRA_MODULE_LAYER: {
        lyra_llama_layer *L = &m->layers[layer];
        lyra_weight *all[9] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo,
                               &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down};
        int n = 0;
        for (int k = 0; k < 9; k++) w[n++] = all[k];
        if (m->has_rope_freqs && layer == 0) w[n++] = &m->rope_freqs; /* shared: counted once */
        return n;
    }
    case LYRA_MODULE_NORM: w[0] = &m->output_norm; return 1;
    default: w[0] = &m->output; return 1;
    }
}

/* ----------------------------------------------------------------- scratch */

#define ALIGN64(n) (((n) + 63) & ~(size_t)63)

/* Sizes in floats of the buffers, in lyra_llama_buffers order. */
static void buffer_sizes(const lyra_llama *m, int nb, int has_layers, int has_head, size_t sz[9]) {
    const lyra_llama_hparams *hp = &m->hp;
    size_t B = (size_t)nb, E = (size_t)hp->n_embd, Q = (size_t)hp->n_head * hp->head_dim,
           KV = (size_t)hp->n_head_kv * hp->head_dim, F = (size_t)hp->n_ff;
    sz[0] = B * E;
    sz[1] = B * E;
    sz[2] = has_layers ? B * Q : 0;
    sz[3] = has_layers ? B * KV : 0;
    sz[4] = has_layers ? B * KV : 0;
    sz[5] = has_layers ? B * Q : 0;
    sz[6] = has_layers ? B * F : 0;
    sz[7] = has_layers ? B * F : 0;
    sz[8] = has_head ? B * (size_t)hp->n_vocab : 0;
}

size_t lyra_llama_buffers_bytes(const lyra_llama *m, int n_batch, int has_layers, int has_head) {
    size_t sz[9], total = 0;
    buffer_sizes(m, n_batch, has_layers, has_head, sz);
    for (int i = 0; i < 9; i++) total += ALIGN64(sz[i] * sizeof(float));
    return total;
}

void lyra_llama_buffers_carve(const lyra_llama *m, int n_batch, int has_layers, int has_head,
                              void *base, lyra_llama_buffers *b) {
    size_t sz[9], off = 0;
    buffer_sizes(m, n_batch, has_layers, has_head, sz);
    float **slot[9] = {&b->x, &b->xb, &b->q, &b->k, &b->v, &b->att, &b->hb, &b->hb2, &b->logits};
    for (int i = 0; i < 9; i++) {
        *slot[i] = sz[i] ? (float *)((char *)base + off) : NULL;
        off += ALIGN64(sz[i] * sizeof(float));
    }
}

size_t lyra_llama_work_bytes(const lyra_llama *m, lyra_device *d, int i0, int i1, int n_batch) {
    if (!d->ops->matmul_work_size) return 0;
    size_t best = 0;
    for (int i = i0; i < i1; i++) {
        lyra_weight *w[10];
        int n = lyra_llama_module_weights((lyra_llama *)m, i, w);
        lyra_module_kind kind = lyra_llama_module_kind(m, i, NULL);
        if (kind == LYRA_MODULE_EMBED || kind == LYRA_MODULE_NORM) continue;
        for (int k = 0; k < n; k++) {
            if (w[k]->rows == 1) continue; /* vectors */
            size_t s = d->ops->matmul_work_size(d, w[k]->type, w[k]->cols, n_batch);
            if (s > best) best = s;
        }
    }
    return best;
}

/* ----------------------------------------------------------------- forward */

/* n (<= 3) weights applied to the same X: Y[i] = X w[i]^T, fused when the
 * device can. */
static void matmuls(lyra_device *d, int n, const lyra_weight *const *w, int64_t cols,
                    const float *X, int ntok, float *const *Y) {
    if (!d->ops->matmul_multi) {
        for (int i = 0; i < n; i++)
            d->ops->matmul(d, w[i]->type, w[i]->data, w[i]->rows, cols, X, ntok, Y[i]);
        return;
    }
    lyra_type wt[3];
    const void *W[3];
    int64_t rows[3];
    for (int i = 0; i < n; i++) {
        wt[i] = w[i]->type;
        W[i] = w[i]->data;
        rows[i] = w[i]->rows;
    }
    d->ops->matmul_multi(d, n, wt, W, rows, cols, X, ntok, Y);
}

/* One transformer block on device d: x [ntok][n_embd] updated in place. */
static void layer_forward(const lyra_llama *m, int l, lyra_device *d, const lyra_llama_buffers *b,
                          const lyra_kv_view *kv, const lyra_rope *rope, const int32_t *pos,
                          int ntok, int32_t pos0) {
    const lyra_llama_hparams *hp = &m->hp;
    const lyra_llama_layer *L = &m->layers[l];
    const lyra_device_ops *op = d->ops;
    const int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim,
                  KV = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    /* attention */
    op->rmsnorm(d, b->x, L->attn_norm.data, hp->eps, E, ntok, b->xb);
    {
        const lyra_weight *w[3] = {&L->wq, &L->wk, &L->wv};
        float *y[3] = {b->q, b->k, b->v};
        matmuls(d, 3, w, E, b->xb, ntok, y);
    }
    op->rope(d, b->q, ntok, hp->n_head, hp->head_dim, pos, rope);
    op->rope(d, b->k, ntok, hp->n_head_kv, hp->head_dim, pos, rope);
    op->kv_store(d, kv, pos0, ntok, KV, b->k, b->v);
    op->attention(d, b->q, kv, pos0, ntok, hp->n_head, hp->n_head_kv, hp->head_dim,
                  1.0f / sqrtf((float)hp->head_dim), b->att);
    op->matmul(d, L->wo.type, L->wo.data, E, Q, b->att, ntok, b->xb);
    op->add(d, b->x, b->xb, E * ntok);
    /* feed-forward */
    op->rmsnorm(d, b->x, L->ffn_norm.data, hp->eps, E, ntok, b->xb);
    {
        const lyra_weight *w[2] = {&L->w_gate, &L->w_up};
        float *y[2] = {b->hb, b->hb2};
        matmuls(d, 2, w, E, b->xb, ntok, y);
    }
    op->swiglu(d, b->hb, b->hb2, F * ntok, b->hb);
    op->matmul(d, L->w_down.type, L->w_down.data, E, F, b->hb, ntok, b->xb);
    op->add(d, b->x, b->xb, E * ntok);
}

int lyra_llama_forward(const lyra_llama *m, const lyra_llama_run *r, const int32_t *tokens,
                       int ntok, int32_t pos0, int n_out, float *logits_host, lyra_error *err) {
    const lyra_llama_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd;
    if (ntok <= 0 || ntok > r->n_batch || n_out < 0 || n_out > ntok)
        return lyra_err(err, LYRA_ERR_RUNTIME, "forward", "bad batch (%d tokens, %d outputs)",
                        ntok, n_out);
    for (int t = 0; t < ntok; t++) r->pos[t] = pos0 + t;
    const int n_mod = lyra_llama_n_modules(m);
    int cur = -1;        /* device index holding the hidden state */
    const float *h = NULL; /* the hidden state on device cur */
    int rows = ntok;     /* rows of h */
    int rc;
    for (int i = 0; i < n_mod; i++) {
        int layer;
        lyra_module_kind kind = lyra_llama_module_kind(m, i, &layer);
        if ((kind == LYRA_MODULE_NORM || kind == LYRA_MODULE_HEAD) && n_out == 0) break;
        int di = r->module_dev[i];
        lyra_device *d = r->dev[di];
        const lyra_llama_buffers *b = &r->buf[di];
        if (kind != LYRA_MODULE_EMBED && di != cur) {
            /* hand the hidden state over through host memory */
            size_t bytes = (size_t)rows * (size_t)E * sizeof(float);
            lyra_device *from = r->dev[cur];
            if ((rc = from->ops->copy_out(from, r->stage, h, bytes)) ||
                (rc = d->ops->copy_in(d, b->x, r->stage, bytes)))
                return lyra_err(err, rc, "forward", "copying the hidden state from device %s to %s",
                                from->id, d->id);
            h = b->x;
        }
        cur = di;
        switch (kind) {
        case LYRA_MODULE_EMBED:
            d->ops->get_rows(d, m->tok_embd.type, m->tok_embd.data, E, tokens, ntok, b->x);
            h = b->x;
            break;
        case LYRA_MODULE_LAYER: {
            lyra_rope rope = hp->rope; /* with this device's copy of rope_freqs */
            if (r->rope_freqs) rope.freq_factors = r->rope_freqs[di];
            layer_forward(m, layer, d, b, &r->kv[layer], &rope, r->pos, ntok, pos0);
            h = b->x;
            break;
        }
        case LYRA_MODULE_NORM:
            /* keep only the last n_out rows */
            d->ops->rmsnorm(d, h + (size_t)(rows - n_out) * E, m->output_norm.data, hp->eps, E,
                            n_out, b->xb);
            h = b->xb;
            rows = n_out;
            break;
        case LYRA_MODULE_HEAD:
            d->ops->matmul(d, m->output.type, m->output.data, hp->n_vocab, E, h, rows, b->logits);
            if ((rc = d->ops->copy_out(d, logits_host, b->logits,
                                       (size_t)rows * (size_t)hp->n_vocab * sizeof(float))))
                return lyra_err(err, rc, "forward", "copying logits from device %s", d->id);
            break;
        }
        if (r->after_module) {
            if ((rc = d->ops->sync(d, err))) return rc;
            r->after_module(r->user, i);
        }
    }
    for (int i = 0; i < r->n_dev; i++)
        if ((rc = r->dev[i]->ops->sync(r->dev[i], err))) return rc;
    return LYRA_OK;
}
