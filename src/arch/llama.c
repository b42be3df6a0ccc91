/* llama.c: the Llama family (see llama.h): the table of architectures and
 * what each changes, loading and validating the hyper-parameters,
 * description and weights of a GGUF, the module list, and the forward pass
 * over device ops (one layer_forward with branches on the description). */
#include "arch/llama.h"
#include "device/prof.h"
#include "dist/dist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ hyper-params */

#define LYRA_LLAMA_MAX_LAYERS 65536 /* sanity bound on llama.block_count */

/* The architectures of the family: what each changes from Llama (the rest of
 * its description comes from the file). Conventions are llama.cpp's: its
 * converter writes Gemma's RMSNorm weights as (1 + w) and permutes Llama's
 * Q/K rows for the pairwise rotation; the others use NeoX rotation. */
typedef struct arch_def {
    const char *name;      /* general.architecture */
    lyra_norm_kind norm;   /* LayerNorm: Phi-2 */
    lyra_ffn_kind ffn;     /* GeGLU: Gemma*, GELU without gate: Phi-2 */
    int neox;              /* NeoX rope */
    int parallel;          /* Phi-2 */
    int post_norms;        /* Gemma 2/3 */
    int qk_norm;           /* Qwen3, Gemma 3 */
    int embed_scale;       /* Gemma*: sqrt(n_embd) */
    int qkv_bias;          /* Q/K/V biases required (Qwen2, Phi-2) */
    int all_bias;          /* every linear layer and the head have biases (Phi-2) */
    int fusable;           /* attn_qkv accepted (Phi-2, Phi-3) */
    int fused_gate_up;     /* ffn_up holds gate then up (Phi-3) */
    int window;            /* sliding windows: 0 none (key ignored), 1 every layer when the
                              key is there (Mistral), n > 1: pattern of period n */
    int32_t window_default;/* window when the key is absent (Gemma 2: 4096); -1: required */
    int32_t big_layers;    /* block_count of the 27B (Gemma 2/3: 1/sqrt(n_embd/n_head)) */
    int softcaps;          /* attention / final soft-caps from the keys (Gemma 2) */
    int rope_swa;          /* windowed layers: rope base 10000, no scaling (Gemma 3) */
    int min_tensors;       /* tensors per block at least (block_count sanity check) */
} arch_def;

static const arch_def ARCHS[] = {
    /* name      norm            ffn              nx par post qkn emb qb ab fu gu win  wdef big cap swa min */
    {"llama",  LYRA_NORM_RMS,   LYRA_FFN_SWIGLU, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,    0,  0, 0, 9},
    {"qwen2",  LYRA_NORM_RMS,   LYRA_FFN_SWIGLU, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0,    0,  0, 0, 12},
    {"qwen3",  LYRA_NORM_RMS,   LYRA_FFN_SWIGLU, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,    0,  0, 0, 11},
    {"phi2",   LYRA_NORM_LAYER, LYRA_FFN_GELU,   1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0,    0,  0, 0, 8},
    {"phi3",   LYRA_NORM_RMS,   LYRA_FFN_SWIGLU, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0,    0,  0, 0, 5},
    {"gemma",  LYRA_NORM_RMS,   LYRA_FFN_GEGLU,  1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,    0,  0, 0, 9},
    {"gemma2", LYRA_NORM_RMS,   LYRA_FFN_GEGLU,  1, 0, 1, 0, 1, 0, 0, 0, 0, 2, 4096, 46, 1, 0, 11},
    {"gemma3", LYRA_NORM_RMS,   LYRA_FFN_GEGLU,  1, 0, 1, 1, 1, 0, 0, 0, 0, 6, -1,   62, 0, 1, 13},
};
#define N_ARCHS (sizeof ARCHS / sizeof ARCHS[0])

const char *lyra_llama_arch_names(void) {
    return "llama, qwen2, qwen3, phi2, phi3, gemma, gemma2, gemma3";
}

/* "ARCH.suffix" into buf. */
static const char *akey(const lyra_arch_desc *d, const char *suffix, char *buf, size_t cap) {
    snprintf(buf, cap, "%s.%s", d->name, suffix);
    return buf;
}

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

/* The rope scaling keys: linear factor (freq_scale), "longrope" (Phi-3's
 * factor tensors), the original context and the attention factor. */
static int load_rope_scaling(const lyra_gguf *g, const lyra_arch_desc *ad, lyra_llama_hparams *hp,
                             float *attn_factor, lyra_error *err) {
    const char *path = lyra_gguf_path(g);
    char k1[96], k2[96];
    int rc;
    hp->rope.freq_scale = 1.0f;
    lyra_gguf_str st;
    float factor = 0;
    const char *fkey = NULL; /* the key the factor came from */
    if (lyra_gguf_get_str(g, akey(ad, "rope.scaling.type", k1, sizeof k1), &st) && !str_eq(st, "none") &&
        !str_eq(st, "longrope")) {
        if (!str_eq(st, "linear"))
            return lyra_err(err, LYRA_ERR_INPUT, path,
                            "%s '%.*s' is not supported (none, linear)", k1,
                            (int)(st.len > 64 ? 64 : st.len), st.ptr);
        fkey = akey(ad, "rope.scaling.factor", k2, sizeof k2);
    } else if (lyra_gguf_find_key(g, akey(ad, "rope.scale_linear", k2, sizeof k2)) >= 0) {
        fkey = k2;
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
    if ((rc = get_int(g, akey(ad, "rope.scaling.original_context_length", k1, sizeof k1), 0,
                      hp->n_ctx_train, &hp->n_ctx_orig, err)) ||
        (rc = get_float(g, akey(ad, "rope.scaling.attn_factor", k1, sizeof k1), 1.0f, attn_factor,
                        err)))
        return rc;
    if (!(*attn_factor > 0))
        return lyra_err(err, LYRA_ERR_INPUT, path, "%s = %g must be positive", k1, (double)*attn_factor);
    return LYRA_OK;
}

static int load_hparams(const lyra_gguf *g, lyra_arch_desc *ad, lyra_llama_hparams *hp,
                        const arch_def **def_out, lyra_error *err) {
    const char *path = lyra_gguf_path(g);
    lyra_gguf_str arch;
    if (!lyra_gguf_get_str(g, "general.architecture", &arch))
        return lyra_err(err, LYRA_ERR_INPUT, path, "missing metadata key general.architecture");
    const arch_def *def = NULL;
    for (size_t i = 0; i < N_ARCHS && !def; i++)
        if (str_eq(arch, ARCHS[i].name)) def = &ARCHS[i];
    if (!def)
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "general.architecture is '%.*s'; lyra supports %s",
                        (int)(arch.len > 64 ? 64 : arch.len), arch.ptr, lyra_llama_arch_names());
    *def_out = def;
    snprintf(ad->name, sizeof ad->name, "%s", def->name);
    ad->norm = def->norm;
    ad->ffn = def->ffn;
    ad->parallel = def->parallel;
    ad->post_norms = def->post_norms;
    ad->qk_norm = def->qk_norm;
    ad->fused_gate_up = def->fused_gate_up;
    char key[96], key2[96];
#define K(suffix) akey(ad, suffix, key, sizeof key)
    int rc;
    if ((rc = get_int(g, K("context_length"), 1, 0, &hp->n_ctx_train, err)) ||
        (rc = get_int(g, K("embedding_length"), 1, 0, &hp->n_embd, err)) ||
        (rc = get_int(g, K("block_count"), 1, 0, &hp->n_layer, err)) ||
        (rc = get_int(g, K("feed_forward_length"), 1, 0, &hp->n_ff, err)) ||
        (rc = get_int(g, K("attention.head_count"), 1, 0, &hp->n_head, err)) ||
        (rc = get_int(g, K("attention.head_count_kv"), 0, hp->n_head, &hp->n_head_kv, err)))
        return rc;
    int64_t n_expert = 0;
    if (lyra_gguf_get_i64(g, K("expert_count"), &n_expert) && n_expert > 0)
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "%s = %lld: mixture-of-experts models are not supported", key,
                        (long long)n_expert);
    if (hp->n_head_kv > hp->n_head || hp->n_head % hp->n_head_kv)
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "%s.attention.head_count_kv = %d does not divide head_count = %d",
                        ad->name, hp->n_head_kv, hp->n_head);
    int has_kl = lyra_gguf_find_key(g, K("attention.key_length")) >= 0;
    if (!has_kl && hp->n_embd % hp->n_head)
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "%s.embedding_length = %d is not a multiple of head_count = %d", ad->name,
                        hp->n_embd, hp->n_head);
    int32_t kl = 0, vl = 0;
    if ((rc = get_int(g, K("attention.key_length"), 0, hp->n_embd / hp->n_head, &kl, err)) ||
        (rc = get_int(g, akey(ad, "attention.value_length", key2, sizeof key2), 0, kl, &vl, err)))
        return rc;
    if (kl != vl)
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "%s.attention.key_length = %d differs from value_length = %d", ad->name, kl, vl);
    if (kl > 4096)
        return lyra_err(err, LYRA_ERR_INPUT, path, "%s.attention.key_length = %d is too large",
                        ad->name, kl);
    hp->head_dim = kl;
    int32_t n_rot = 0;
    if ((rc = get_int(g, K("rope.dimension_count"), 0, hp->head_dim, &n_rot, err))) return rc;
    if (n_rot > hp->head_dim || n_rot % 2 || n_rot > 1024)
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "%s.rope.dimension_count = %d must be even and at most the head size %d",
                        ad->name, n_rot, hp->head_dim < 1024 ? hp->head_dim : 1024);
    hp->rope.n_rot = n_rot;
    hp->rope.neox = def->neox;
    const char *eps_key = def->norm == LYRA_NORM_LAYER ? "attention.layer_norm_epsilon"
                                                       : "attention.layer_norm_rms_epsilon";
    if ((rc = get_float(g, K(eps_key), 1e-5f, &hp->eps, err)) ||
        (rc = get_float(g, akey(ad, "rope.freq_base", key2, sizeof key2), 10000.0f,
                        &hp->rope.freq_base, err)))
        return rc;
    if (hp->eps < 0 || hp->rope.freq_base <= 0)
        return lyra_err(err, LYRA_ERR_INPUT, path, "%s must be positive",
                        hp->eps < 0 ? key : key2);
    float attn_factor = 1.0f;
    if ((rc = load_rope_scaling(g, ad, hp, &attn_factor, err))) return rc;
    /* the attention scale: 1/sqrt(head_dim); Gemma 2/3 27B: 1/sqrt(n_embd/n_head) */
    ad->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    if (def->big_layers && hp->n_layer == def->big_layers)
        ad->attn_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_head));
    if (attn_factor != 1.0f) { /* cos and sin of the rotated dims scaled: q.k by its square */
        if (n_rot != hp->head_dim)
            return lyra_err(err, LYRA_ERR_INPUT, path,
                            "%s.rope.scaling.attn_factor = %g with partial rotary (%d of %d dims) "
                            "is not supported", ad->name, (double)attn_factor, n_rot, hp->head_dim);
        ad->attn_scale *= attn_factor * attn_factor;
    }
    if (def->embed_scale) ad->embed_scale = sqrtf((float)hp->n_embd);
    if (def->softcaps &&
        ((rc = get_float(g, K("attn_logit_softcapping"), 50.0f, &ad->attn_softcap, err)) ||
         (rc = get_float(g, K("final_logit_softcapping"), 30.0f, &ad->final_softcap, err))))
        return rc;
    if (ad->attn_softcap < 0 || ad->final_softcap < 0)
        return lyra_err(err, LYRA_ERR_INPUT, path, "%s.*_logit_softcapping must not be negative",
                        ad->name);
    /* sliding windows */
    if (def->window) {
        int has = lyra_gguf_find_key(g, K("attention.sliding_window")) >= 0;
        if (!has && def->window_default < 0)
            return lyra_err(err, LYRA_ERR_INPUT, path, "missing metadata key %s", key);
        if (has || def->window_default > 0)
            if ((rc = get_int(g, key, 0, def->window_default, &ad->window, err))) return rc;
        ad->swa_period = def->window > 1 ? def->window : 0;
        int32_t period = 0;
        int64_t pv = 0;
        /* a period given as a number (an array of per-layer flags is not read) */
        if (ad->swa_period && lyra_gguf_get_i64(g, K("attention.sliding_window_pattern"), &pv)) {
            if ((rc = get_int(g, key, 0, 0, &period, err))) return rc;
            ad->swa_period = period;
        }
    }
    hp->rope_swa = hp->rope;
    if (def->rope_swa) {
        /* ARCH.rope.freq_base_swa when the converter wrote it (newer files), else 10000 */
        ad->rope_swa = 1;
        char key3[96];
        if ((rc = get_float(g, akey(ad, "rope.freq_base_swa", key3, sizeof key3), 10000.0f,
                            &hp->rope_swa.freq_base, err)))
            return rc;
        if (hp->rope_swa.freq_base <= 0)
            return lyra_err(err, LYRA_ERR_INPUT, path, "%s must be positive", key3);
        hp->rope_swa.freq_scale = 1.0f;
    }
    /* vocabulary: ARCH.vocab_size, else the tokenizer's token count */
    uint64_t ntok = 0;
    lyra_gguf_vtype et;
    if (lyra_gguf_find_key(g, K("vocab_size")) >= 0) {
        if ((rc = get_int(g, key, 1, 0, &hp->n_vocab, err))) return rc;
    } else if (lyra_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &ntok) && ntok > 0 &&
               ntok <= INT32_MAX) {
        hp->n_vocab = (int32_t)ntok;
    } else {
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "no vocabulary size: neither %s nor tokenizer.ggml.tokens", key);
    }
#undef K
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

/* ARCH.block_count against the file: min tensors per block, and the last
 * block's first tensor present (before anything is allocated per block). */
static int check_block_count(const lyra_gguf *g, const lyra_arch_desc *ad, int min_tensors,
                             int32_t n_layer, lyra_error *err) {
    const char *path = lyra_gguf_path(g);
    int64_t n_t = lyra_gguf_n_tensors(g);
    char name[96];
    snprintf(name, sizeof name, "blk.%d.attn_norm.weight", (int)n_layer - 1);
    if (n_layer > LYRA_LLAMA_MAX_LAYERS || (int64_t)n_layer * min_tensors > n_t ||
        !lyra_gguf_find_tensor(g, name))
        return lyra_err(err, LYRA_ERR_INPUT, path,
                        "%s.block_count = %d does not match the file's %lld tensors (%d per block, "
                        "at most %d blocks; %s %s)",
                        ad->name, (int)n_layer, (long long)n_t, min_tensors, LYRA_LLAMA_MAX_LAYERS,
                        name, lyra_gguf_find_tensor(g, name) ? "present" : "missing");
    return LYRA_OK;
}

/* Tensor name (prefix "blk.N." when layer >= 0, suffix ".weight"/".bias"). */
static const char *tname(int layer, const char *base, const char *suffix, char *buf, size_t cap) {
    if (layer >= 0) snprintf(buf, cap, "blk.%d.%s.%s", layer, base, suffix);
    else snprintf(buf, cap, "%s.%s", base, suffix);
    return buf;
}

/* A weight that must be there (req) or may be (absent: w stays zero). */
static int weight(const lyra_gguf *g, int layer, const char *base, const char *suffix, int req,
                  int64_t cols, int64_t rows, int f32, lyra_weight *w, lyra_error *err) {
    char name[96];
    tname(layer, base, suffix, name, sizeof name);
    if (!req && !lyra_gguf_find_tensor(g, name)) return LYRA_OK;
    return get_weight(g, name, cols, rows, f32, w, err);
}

/* The weights of block l. */
static int load_layer(const lyra_gguf *g, lyra_llama *m, const arch_def *def, int l, lyra_error *err) {
    const lyra_llama_hparams *hp = &m->hp;
    lyra_arch_desc *ad = &m->desc;
    lyra_llama_layer *L = &m->layers[l];
    const int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim,
                  KV = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff, HD = hp->head_dim;
    const int layer_norm = ad->norm == LYRA_NORM_LAYER;
    char name[96];
    int rc;
    if ((rc = weight(g, l, "attn_norm", "weight", 1, E, 0, 1, &L->attn_norm, err)) ||
        (rc = weight(g, l, "attn_norm", "bias", layer_norm, E, 0, 1, &L->attn_norm_b, err)))
        return rc;
    /* fused or not: as block 0 has it, then the same in every block */
    if (l == 0 && def->fusable && lyra_gguf_find_tensor(g, tname(0, "attn_qkv", "weight", name, sizeof name)))
        ad->fused_qkv = 1;
    if (ad->fused_qkv) {
        if ((rc = weight(g, l, "attn_qkv", "weight", 1, E, Q + 2 * KV, 0, &L->wqkv, err)) ||
            (rc = weight(g, l, "attn_qkv", "bias", def->qkv_bias, Q + 2 * KV, 0, 1, &L->bqkv, err)))
            return rc;
    } else {
        if ((rc = weight(g, l, "attn_q", "weight", 1, E, Q, 0, &L->wq, err)) ||
            (rc = weight(g, l, "attn_k", "weight", 1, E, KV, 0, &L->wk, err)) ||
            (rc = weight(g, l, "attn_v", "weight", 1, E, KV, 0, &L->wv, err)) ||
            (rc = weight(g, l, "attn_q", "bias", def->qkv_bias, Q, 0, 1, &L->bq, err)) ||
            (rc = weight(g, l, "attn_k", "bias", def->qkv_bias, KV, 0, 1, &L->bk, err)) ||
            (rc = weight(g, l, "attn_v", "bias", def->qkv_bias, KV, 0, 1, &L->bv, err)))
            return rc;
    }
    if (ad->qk_norm &&
        ((rc = weight(g, l, "attn_q_norm", "weight", 1, HD, 0, 1, &L->q_norm, err)) ||
         (rc = weight(g, l, "attn_k_norm", "weight", 1, HD, 0, 1, &L->k_norm, err))))
        return rc;
    if ((rc = weight(g, l, "attn_output", "weight", 1, Q, E, 0, &L->wo, err)) ||
        (rc = weight(g, l, "attn_output", "bias", def->all_bias, E, 0, 1, &L->bo, err)))
        return rc;
    if (ad->post_norms &&
        ((rc = weight(g, l, "post_attention_norm", "weight", 1, E, 0, 1, &L->post_attn_norm, err)) ||
         (rc = weight(g, l, "post_ffw_norm", "weight", 1, E, 0, 1, &L->post_ffn_norm, err))))
        return rc;
    if (!ad->parallel && (rc = weight(g, l, "ffn_norm", "weight", 1, E, 0, 1, &L->ffn_norm, err)))
        return rc;
    if (ad->fused_gate_up) {
        if ((rc = weight(g, l, "ffn_up", "weight", 1, E, 2 * F, 0, &L->w_up, err))) return rc;
    } else {
        if (ad->ffn != LYRA_FFN_GELU &&
            ((rc = weight(g, l, "ffn_gate", "weight", 1, E, F, 0, &L->w_gate, err)) ||
             (rc = weight(g, l, "ffn_gate", "bias", 0, F, 0, 1, &L->b_gate, err))))
            return rc;
        if ((rc = weight(g, l, "ffn_up", "weight", 1, E, F, 0, &L->w_up, err)) ||
            (rc = weight(g, l, "ffn_up", "bias", def->all_bias, F, 0, 1, &L->b_up, err)))
            return rc;
    }
    if ((rc = weight(g, l, "ffn_down", "weight", 1, F, E, 0, &L->w_down, err)) ||
        (rc = weight(g, l, "ffn_down", "bias", def->all_bias, E, 0, 1, &L->b_down, err)))
        return rc;
    const lyra_weight *b[] = {&L->bq, &L->bk, &L->bv, &L->bqkv, &L->bo, &L->b_gate, &L->b_up, &L->b_down};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) ad->biases |= b[i]->name != NULL;
    return LYRA_OK;
}

int lyra_llama_load(const lyra_gguf *g, lyra_llama **out, lyra_error *err) {
    *out = NULL;
    lyra_llama *m = calloc(1, sizeof *m);
    if (!m) return lyra_err(err, LYRA_ERR_OOM, "llama", "out of memory");
    const arch_def *def = NULL;
    int rc = load_hparams(g, &m->desc, &m->hp, &def, err);
    if (rc) { free(m); return rc; }
    const lyra_llama_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, V = hp->n_vocab;
    /* the counts allocations are sized by must match tensors the file has:
     * a block_count of 2^31 must not become a 7 GB calloc */
    if ((rc = check_block_count(g, &m->desc, def->min_tensors, hp->n_layer, err))) { free(m); return rc; }
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) { free(m); return lyra_err(err, LYRA_ERR_OOM, "llama", "out of memory"); }
    if ((rc = get_weight(g, "token_embd.weight", E, V, 0, &m->tok_embd, err))) goto fail;
    for (int l = 0; l < hp->n_layer; l++)
        if ((rc = load_layer(g, m, def, l, err))) goto fail;
    const int layer_norm = m->desc.norm == LYRA_NORM_LAYER;
    if ((rc = get_weight(g, "output_norm.weight", E, 0, 1, &m->output_norm, err)) ||
        (rc = weight(g, -1, "output_norm", "bias", layer_norm, E, 0, 1, &m->output_norm_b, err)))
        goto fail;
    if (lyra_gguf_find_tensor(g, "output.weight")) {
        if ((rc = get_weight(g, "output.weight", E, V, 0, &m->output, err))) goto fail;
    } else {
        m->output = m->tok_embd;
        m->tied = 1;
    }
    if ((rc = weight(g, -1, "output", "bias", def->all_bias, V, 0, 1, &m->output_b, err))) goto fail;
    if (lyra_gguf_find_tensor(g, "rope_freqs.weight")) {
        if ((rc = get_weight(g, "rope_freqs.weight", hp->rope.n_rot / 2, 0, 1, &m->rope_freqs, err)))
            goto fail;
        m->has_rope_freqs = 1;
        m->hp.rope.freq_factors = m->rope_freqs.data;
    } else if (lyra_gguf_find_tensor(g, "rope_factors_long.weight") ||
               lyra_gguf_find_tensor(g, "rope_factors_short.weight")) {
        /* Phi-3 long-context files: both, one chosen for the context (set_context) */
        if ((rc = get_weight(g, "rope_factors_long.weight", hp->rope.n_rot / 2, 0, 1, &m->rope_long, err)) ||
            (rc = get_weight(g, "rope_factors_short.weight", hp->rope.n_rot / 2, 0, 1, &m->rope_short, err)))
            goto fail;
        m->has_rope_freqs = 1;
        lyra_llama_set_context(m, hp->n_ctx_orig);
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

void lyra_llama_set_context(lyra_llama *m, int32_t n_ctx) {
    if (!m->rope_long.name) return;
    m->rope_freqs = n_ctx > m->hp.n_ctx_orig ? m->rope_long : m->rope_short;
    m->hp.rope.freq_factors = m->rope_freqs.data;
    m->hp.rope_swa.freq_factors = m->rope_freqs.data;
}

int32_t lyra_llama_layer_window(const lyra_llama *m, int l) {
    const lyra_arch_desc *ad = &m->desc;
    if (ad->window <= 0) return 0;
    if (ad->swa_period > 0 && l % ad->swa_period >= ad->swa_period - 1) return 0;
    return ad->window;
}

int32_t lyra_llama_ring_chunks(int32_t window, int32_t n_batch, int32_t chunk_len) {
    int64_t span = (int64_t)window + n_batch - 1;
    return (int32_t)((span + chunk_len - 1) / chunk_len + 1);
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
    int layer, n = 0;
    switch (lyra_llama_module_kind(m, i, &layer)) {
    case LYRA_MODULE_EMBED: w[0] = &m->tok_embd; return 1;
    case LYRA_MODULE_LAYER: {
        lyra_llama_layer *L = &m->layers[layer];
        lyra_weight *all[] = {&L->attn_norm, &L->attn_norm_b, &L->wq, &L->wk, &L->wv, &L->wqkv,
                              &L->bq, &L->bk, &L->bv, &L->bqkv, &L->q_norm, &L->k_norm, &L->wo,
                              &L->bo, &L->post_attn_norm, &L->ffn_norm, &L->w_gate, &L->w_up,
                              &L->w_down, &L->b_gate, &L->b_up, &L->b_down, &L->post_ffn_norm};
        for (size_t k = 0; k < sizeof all / sizeof all[0]; k++)
            if (all[k]->name) w[n++] = all[k];
        if (m->has_rope_freqs && layer == 0) w[n++] = &m->rope_freqs; /* shared: counted once */
        return n;
    }
    case LYRA_MODULE_NORM:
        w[n++] = &m->output_norm;
        if (m->output_norm_b.name) w[n++] = &m->output_norm_b;
        return n;
    default:
        w[n++] = &m->output;
        if (m->output_b.name) w[n++] = &m->output_b;
        return n;
    }
}

const char *lyra_llama_module_missing_op(const lyra_llama *m, int i, const lyra_device *d) {
    const lyra_arch_desc *ad = &m->desc;
    const lyra_device_ops *o = d->ops;
    switch (lyra_llama_module_kind(m, i, NULL)) {
    case LYRA_MODULE_EMBED:
        if (ad->embed_scale > 0 && !o->scale) return "scale";
        return NULL;
    case LYRA_MODULE_LAYER:
        if (ad->norm == LYRA_NORM_LAYER && !o->layernorm) return "layernorm";
        if (ad->biases && !o->add_bias) return "add_bias";
        if (ad->ffn == LYRA_FFN_GELU && !o->gelu) return "gelu";
        if (ad->ffn == LYRA_FFN_GEGLU && !o->geglu) return "geglu";
        return NULL;
    case LYRA_MODULE_NORM:
        if (ad->norm == LYRA_NORM_LAYER && !o->layernorm) return "layernorm";
        return NULL;
    default:
        if (m->output_b.name && !o->add_bias) return "add_bias";
        if (ad->final_softcap > 0 && !o->softcap) return "softcap";
        return NULL;
    }
}

/* ----------------------------------------------------------------- scratch */

#define ALIGN64(n) (((n) + 63) & ~(size_t)63)
#define N_BUFFERS 11

/* Sizes in floats of the buffers, in lyra_llama_buffers order. */
static void buffer_sizes(const lyra_llama *m, int nb, int has_layers, int has_head,
                         size_t sz[N_BUFFERS]) {
    const lyra_llama_hparams *hp = &m->hp;
    const lyra_arch_desc *ad = &m->desc;
    size_t B = (size_t)nb, E = (size_t)hp->n_embd, Q = (size_t)hp->n_head * hp->head_dim,
           KV = (size_t)hp->n_head_kv * hp->head_dim, F = (size_t)hp->n_ff;
    sz[0] = B * E;
    sz[1] = B * E;
    sz[2] = has_layers ? B * Q : 0;
    sz[3] = has_layers ? B * KV : 0;
    sz[4] = has_layers ? B * KV : 0;
    sz[5] = has_layers ? B * Q : 0;
    sz[6] = has_layers ? B * F : 0;
    sz[7] = has_layers && ad->ffn != LYRA_FFN_GELU ? B * F : 0;
    sz[8] = has_head ? B * (size_t)hp->n_vocab : 0;
    sz[9] = has_layers && (ad->parallel || ad->post_norms) ? B * E : 0;
    sz[10] = has_layers && ad->qk_norm ? B * KV : 0;
}

size_t lyra_llama_buffers_bytes(const lyra_llama *m, int n_batch, int has_layers, int has_head) {
    size_t sz[N_BUFFERS], total = 0;
    buffer_sizes(m, n_batch, has_layers, has_head, sz);
    for (int i = 0; i < N_BUFFERS; i++) total += ALIGN64(sz[i] * sizeof(float));
    return total;
}

void lyra_llama_buffers_carve(const lyra_llama *m, int n_batch, int has_layers, int has_head,
                              void *base, lyra_llama_buffers *b) {
    size_t sz[N_BUFFERS], off = 0;
    buffer_sizes(m, n_batch, has_layers, has_head, sz);
    float **slot[N_BUFFERS] = {&b->x,  &b->xb,  &b->q,      &b->k,   &b->v, &b->att,
                               &b->hb, &b->hb2, &b->logits, &b->xb2, &b->kn};
    for (int i = 0; i < N_BUFFERS; i++) {
        *slot[i] = sz[i] ? (float *)((char *)base + off) : NULL;
        off += ALIGN64(sz[i] * sizeof(float));
    }
}

size_t lyra_llama_work_bytes(const lyra_llama *m, lyra_device *d, int i0, int i1, int n_batch) {
    if (!d->ops->matmul_work_size) return 0;
    size_t best = 0;
    for (int i = i0; i < i1; i++) {
        lyra_weight *w[LYRA_MODULE_MAX_WEIGHTS];
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

static const lyra_weight NO_WEIGHT; /* an absent weight (name NULL) */

/* Rows r0.. of weight w (a device pointer). */
static const void *rows_at(const lyra_weight *w, int64_t r0) {
    return (const char *)w->data + (size_t)r0 * lyra_row_bytes(w->type, w->cols);
}

/* n (<= 3) products sharing X: Y[i] [ntok][rows[i]] = X W[i]^T (W[i] of type
 * wt[i]), fused when the device can. */
static void matmuls(lyra_device *d, int n, const lyra_type *wt, const void *const *W,
                    const int64_t *rows, int64_t cols, const float *X, int ntok, float *const *Y) {
    if (!d->ops->matmul_multi) {
        for (int i = 0; i < n; i++) d->ops->matmul(d, wt[i], W[i], rows[i], cols, X, ntok, Y[i]);
        return;
    }
    d->ops->matmul_multi(d, n, wt, W, rows, cols, X, ntok, Y);
}

/* y [ntok][n] += bias when the weight exists (off: floats into it). */
static void bias(lyra_device *d, float *y, const lyra_weight *b, int64_t off, int64_t n, int ntok) {
    if (b->name) d->ops->add_bias(d, y, (const float *)b->data + off, n, ntok);
}

/* out = norm(x) with weight w (and LayerNorm bias b), rows of n_embd. */
static void norm(const lyra_llama *m, lyra_device *d, const float *x, const lyra_weight *w,
                 const lyra_weight *b, int ntok, float *out) {
    const lyra_llama_hparams *hp = &m->hp;
    if (m->desc.norm == LYRA_NORM_LAYER)
        d->ops->layernorm(d, x, w->data, b->name ? b->data : NULL, hp->eps, hp->n_embd, ntok, out);
    else
        d->ops->rmsnorm(d, x, w->data, hp->eps, hp->n_embd, ntok, out);
}

/* One transformer block on device d: x [ntok][n_embd] updated in place. */
static void layer_forward(const lyra_llama *m, int l, lyra_device *d, const lyra_llama_buffers *b,
                          const lyra_llama_seg *seg, int n_seg, const lyra_rope *rope,
                          const int32_t *pos, int ntok) {
    const lyra_llama_hparams *hp = &m->hp;
    const lyra_arch_desc *ad = &m->desc;
    const lyra_llama_layer *L = &m->layers[l];
    const lyra_device_ops *op = d->ops;
    const int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim,
                  KV = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    /* attention: Q, K, V (fused: rows of one tensor), biases */
    lyra_prof_tag(d, "attn");
    norm(m, d, b->x, &L->attn_norm, &L->attn_norm_b, ntok, b->xb);
    {
        const lyra_weight *w[3] = {&L->wq, &L->wk, &L->wv};
        const int64_t rows[3] = {Q, KV, KV};
        lyra_type wt[3];
        const void *W[3];
        for (int i = 0; i < 3; i++) {
            wt[i] = ad->fused_qkv ? L->wqkv.type : w[i]->type;
            W[i] = ad->fused_qkv ? rows_at(&L->wqkv, i ? Q + (i - 1) * KV : 0) : w[i]->data;
        }
        float *y[3] = {b->q, b->k, b->v};
        matmuls(d, 3, wt, W, rows, E, b->xb, ntok, y);
    }
    if (ad->fused_qkv) {
        bias(d, b->q, &L->bqkv, 0, Q, ntok);
        bias(d, b->k, &L->bqkv, Q, KV, ntok);
        bias(d, b->v, &L->bqkv, Q + KV, KV, ntok);
    } else {
        bias(d, b->q, &L->bq, 0, Q, ntok);
        bias(d, b->k, &L->bk, 0, KV, ntok);
        bias(d, b->v, &L->bv, 0, KV, ntok);
    }
    float *q = b->q, *k = b->k, *att = b->att;
    if (ad->qk_norm) { /* per-head RMSNorm, into other buffers */
        op->rmsnorm(d, b->q, L->q_norm.data, hp->eps, hp->head_dim, ntok * hp->n_head, b->att);
        op->rmsnorm(d, b->k, L->k_norm.data, hp->eps, hp->head_dim, ntok * hp->n_head_kv, b->kn);
        q = b->att;
        k = b->kn;
        att = b->q;
    }
    op->rope(d, q, ntok, hp->n_head, hp->head_dim, pos, rope);
    op->rope(d, k, ntok, hp->n_head_kv, hp->head_dim, pos, rope);
    const lyra_attn_params ap = {hp->n_head, hp->n_head_kv, hp->head_dim, ad->attn_scale,
                                 ad->attn_softcap, lyra_llama_layer_window(m, l)};
    for (int i = 0; i < n_seg; i++) { /* each sequence: its own cache */
        const lyra_llama_seg *sg = &seg[i];
        const size_t t0 = (size_t)sg->t0;
        op->kv_store(d, &sg->kv[l], sg->pos0, sg->ntok, KV, k + t0 * (size_t)KV, b->v + t0 * (size_t)KV);
        op->attention(d, q + t0 * (size_t)Q, &sg->kv[l], sg->pos0, sg->ntok, &ap, att + t0 * (size_t)Q);
    }
    float *ao = ad->parallel || ad->post_norms ? b->xb2 : b->xb; /* attention's output */
    op->matmul(d, L->wo.type, L->wo.data, E, Q, att, ntok, ao);
    bias(d, ao, &L->bo, 0, E, ntok);
    if (ad->post_norms) {
        op->rmsnorm(d, ao, L->post_attn_norm.data, hp->eps, E, ntok, b->xb);
        ao = b->xb;
    }
    if (!ad->parallel) {
        op->add(d, b->x, ao, E * ntok);
        norm(m, d, b->x, &L->ffn_norm, &NO_WEIGHT, ntok, b->xb);
    }
    /* feed-forward from xb */
    lyra_prof_tag(d, "ffn");
    if (ad->ffn == LYRA_FFN_GELU) {
        op->matmul(d, L->w_up.type, L->w_up.data, F, E, b->xb, ntok, b->hb);
        bias(d, b->hb, &L->b_up, 0, F, ntok);
        op->gelu(d, b->hb, F * ntok, b->hb);
    } else {
        const lyra_weight *gate = ad->fused_gate_up ? &L->w_up : &L->w_gate;
        const lyra_type wt[2] = {gate->type, L->w_up.type};
        const void *W[2] = {gate->data, ad->fused_gate_up ? rows_at(&L->w_up, F) : L->w_up.data};
        const int64_t rows[2] = {F, F};
        float *y[2] = {b->hb, b->hb2};
        matmuls(d, 2, wt, W, rows, E, b->xb, ntok, y);
        bias(d, b->hb, &L->b_gate, 0, F, ntok);
        bias(d, b->hb2, &L->b_up, 0, F, ntok);
        if (ad->ffn == LYRA_FFN_GEGLU) op->geglu(d, b->hb, b->hb2, F * ntok, b->hb);
        else op->swiglu(d, b->hb, b->hb2, F * ntok, b->hb);
    }
    float *fo = ad->post_norms ? b->xb2 : b->xb; /* the feed-forward's output */
    op->matmul(d, L->w_down.type, L->w_down.data, E, F, b->hb, ntok, fo);
    bias(d, fo, &L->b_down, 0, E, ntok);
    if (ad->post_norms) {
        op->rmsnorm(d, fo, L->post_ffn_norm.data, hp->eps, E, ntok, b->xb);
        fo = b->xb;
    }
    if (ad->parallel) { /* x + (attn + ffn), as llama.cpp sums them */
        op->add(d, ao, fo, E * ntok);
        fo = ao;
    }
    op->add(d, b->x, fo, E * ntok);
}

int lyra_llama_forward(const lyra_llama *m, const lyra_llama_run *r, const int32_t *tokens,
                       int ntok, int32_t pos0, int n_out, float *logits_host, lyra_error *err) {
    if (ntok <= 0 || ntok > r->n_batch || n_out < 0 || n_out > ntok)
        return lyra_err(err, LYRA_ERR_RUNTIME, "forward", "bad batch (%d tokens, %d outputs)",
                        ntok, n_out);
    const lyra_llama_seg seg = {0, ntok, pos0, r->kv};
    return lyra_llama_forward_batch(m, r, tokens, ntok, &seg, 1, NULL, n_out, logits_host, err);
}

int lyra_llama_forward_batch(const lyra_llama *m, const lyra_llama_run *r, const int32_t *tokens,
                             int ntok, const lyra_llama_seg *seg, int n_seg, const int32_t *out_rows,
                             int n_out, float *logits_host, lyra_error *err) {
    const lyra_llama_hparams *hp = &m->hp;
    const lyra_arch_desc *ad = &m->desc;
    const int64_t E = hp->n_embd;
    if (ntok <= 0 || ntok > r->n_batch || n_out < 0 || n_out > ntok || n_seg <= 0)
        return lyra_err(err, LYRA_ERR_RUNTIME, "forward", "bad batch (%d tokens, %d outputs)",
                        ntok, n_out);
    for (int i = 0, t = 0; i < n_seg; t += seg[i].ntok, i++) {
        if (seg[i].t0 != t || seg[i].ntok <= 0 || t + seg[i].ntok > ntok || seg[i].pos0 < 0 ||
            (i == n_seg - 1 && t + seg[i].ntok != ntok))
            return lyra_err(err, LYRA_ERR_RUNTIME, "forward", "bad batch segment %d", i);
        for (int j = 0; j < seg[i].ntok; j++) r->pos[t + j] = seg[i].pos0 + j;
    }
    /* the output rows: NULL is the last n_out; contiguous rows are normed at once */
    int first = ntok - n_out, contiguous = 1;
    if (out_rows && n_out > 0) {
        first = out_rows[0];
        for (int j = 0; j < n_out; j++) {
            if (out_rows[j] < 0 || out_rows[j] >= ntok || (j && out_rows[j] <= out_rows[j - 1]))
                return lyra_err(err, LYRA_ERR_RUNTIME, "forward", "bad output rows");
            contiguous &= out_rows[j] == first + j;
        }
    }
    const int n_mod = lyra_llama_n_modules(m);
    int cur = -1;        /* device index holding the hidden state */
    const float *h = NULL; /* the hidden state on device cur */
    int rows = ntok;     /* rows of h */
    int rc;
    int cur_rank = r->rank; /* the rank holding the hidden state */
    for (int i = 0; i < n_mod; i++) {
        int layer;
        lyra_module_kind kind = lyra_llama_module_kind(m, i, &layer);
        if ((kind == LYRA_MODULE_NORM || kind == LYRA_MODULE_HEAD) && n_out == 0) break;
        int mr = r->module_rank ? r->module_rank[i] : r->rank;
        if (mr != r->rank) { /* another rank's module */
            if (cur_rank == r->rank && cur >= 0) { /* ours until now: hand it over */
                size_t bytes = (size_t)rows * (size_t)E * sizeof(float);
                lyra_device *from = r->dev[cur];
                if ((rc = from->ops->copy_out(from, r->stage, h, bytes)) ||
                    (rc = from->ops->sync(from, err)) ||
                    (rc = lyra_dist_send(mr, LYRA_DIST_TAG_HIDDEN, r->stage, bytes, err)))
                    return rc;
            }
            cur_rank = mr;
            if (kind == LYRA_MODULE_NORM) rows = n_out;
            continue;
        }
        int di = r->module_dev[i];
        lyra_device *d = r->dev[di];
        const lyra_llama_buffers *b = &r->buf[di];
        if (kind != LYRA_MODULE_EMBED && cur_rank != r->rank) { /* from another rank */
            size_t bytes = (size_t)rows * (size_t)E * sizeof(float);
            if ((rc = lyra_dist_recv(cur_rank, LYRA_DIST_TAG_HIDDEN, r->stage, bytes,
                                     lyra_dist_timeout(), err)) ||
                (rc = d->ops->copy_in(d, b->x, r->stage, bytes)))
                return rc;
            h = b->x;
            cur_rank = r->rank;
        } else if (kind != LYRA_MODULE_EMBED && di != cur) {
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
            lyra_prof_tag(d, "embed");
            d->ops->get_rows(d, m->tok_embd.type, m->tok_embd.data, E, tokens, ntok, b->x);
            if (ad->embed_scale > 0) d->ops->scale(d, b->x, E * ntok, ad->embed_scale);
            h = b->x;
            break;
        case LYRA_MODULE_LAYER: {
            /* this layer's rope, with this device's copy of rope_freqs */
            lyra_rope rope = ad->rope_swa && lyra_llama_layer_window(m, layer) ? hp->rope_swa : hp->rope;
            if (r->rope_freqs) rope.freq_factors = r->rope_freqs[di];
            layer_forward(m, layer, d, b, seg, n_seg, &rope, r->pos, ntok);
            h = b->x;
            break;
        }
        case LYRA_MODULE_NORM:
            /* keep only the output rows (row by row when they are apart) */
            lyra_prof_tag(d, "norm");
            if (contiguous) {
                norm(m, d, h + (size_t)first * E, &m->output_norm, &m->output_norm_b, n_out, b->xb);
            } else {
                for (int j = 0; j < n_out; j++)
                    norm(m, d, h + (size_t)out_rows[j] * E, &m->output_norm, &m->output_norm_b, 1,
                         b->xb + (size_t)j * E);
            }
            h = b->xb;
            rows = n_out;
            break;
        case LYRA_MODULE_HEAD:
            lyra_prof_tag(d, "head");
            d->ops->matmul(d, m->output.type, m->output.data, hp->n_vocab, E, h, rows, b->logits);
            bias(d, b->logits, &m->output_b, 0, hp->n_vocab, rows);
            if (ad->final_softcap > 0)
                d->ops->softcap(d, b->logits, (int64_t)rows * hp->n_vocab, ad->final_softcap);
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
    if (r->module_rank && n_out > 0) { /* the logits go to rank 0 */
        int hr = r->module_rank[n_mod - 1];
        size_t bytes = (size_t)n_out * (size_t)hp->n_vocab * sizeof(float);
        if (hr != 0 && r->rank == hr)
            return lyra_dist_send(0, LYRA_DIST_TAG_LOGITS, logits_host, bytes, err);
        if (hr != 0 && r->rank == 0 && r->defer)
            return lyra_dist_irecv(hr, LYRA_DIST_TAG_LOGITS, logits_host, bytes, r->defer, err);
        if (hr != 0 && r->rank == 0)
            return lyra_dist_recv(hr, LYRA_DIST_TAG_LOGITS, logits_host, bytes, lyra_dist_timeout(), err);
    }
    return LYRA_OK;
}
