/* hf_model.c: config.json + safetensors -> an in-memory GGUF (hf_model.h).
 * Reads config.json (jansson), maps the architecture and its
 * hyper-parameters to llama.cpp's metadata keys with Hugging Face's defaults
 * for absent keys, maps each tensor name to its GGUF name and decides per
 * tensor whether it is used in place or converted (type, Q/K permutation,
 * Gemma's 1 + w), converts into one shared anonymous mapping (so releasing
 * its pages, as the disk tier does for file maps, never loses data) and hands
 * everything to lyra_gguf_writer_to_gguf. */
#include "format/hf_model.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "core/fp16.h"
#include "format/hf_tokenizer.h"
#include "format/safetensors.h"

/* ------------------------------------------------------------ architectures */

typedef struct hf_arch {
    const char *hf;       /* config.json "architectures" entry */
    const char *gguf;     /* general.architecture */
    const char *act;      /* expected hidden_act ("" none checked) */
    int gemma;            /* 1 + w norms, hidden_activation, GeGLU */
    int permute_qk;       /* Llama's converter permutes Q/K rows */
    int sandwich;         /* Gemma 2/3: pre/post feed-forward norms */
    /* defaults of the transformers config class */
    int vocab, hidden, inter, layers, heads, kv, head_dim, max_pos;
    double eps, theta;
    int tie;
} hf_arch;

static const hf_arch ARCHS[] = {
    {"LlamaForCausalLM", "llama", "silu", 0, 1, 0, 32000, 4096, 11008, 32, 32, 0, 0, 2048, 1e-6, 10000, 0},
    {"MistralForCausalLM", "llama", "silu", 0, 1, 0, 32000, 4096, 14336, 32, 32, 8, 0, 131072, 1e-6, 10000, 0},
    {"PhiForCausalLM", "phi2", "gelu_new", 0, 0, 0, 51200, 2048, 8192, 24, 32, 0, 0, 2048, 1e-5, 10000, 0},
    {"Qwen2ForCausalLM", "qwen2", "silu", 0, 0, 0, 151936, 4096, 22016, 32, 32, 32, 0, 32768, 1e-6, 10000, 0},
    {"Qwen3ForCausalLM", "qwen3", "silu", 0, 0, 0, 151936, 4096, 22016, 32, 32, 32, 128, 32768, 1e-6, 10000, 0},
    {"GemmaForCausalLM", "gemma", "", 1, 0, 0, 256000, 3072, 24576, 28, 16, 16, 256, 8192, 1e-6, 10000, 1},
    {"Gemma2ForCausalLM", "gemma2", "", 1, 0, 1, 256000, 2304, 9216, 26, 8, 4, 256, 8192, 1e-6, 10000, 1},
    {"Gemma3ForCausalLM", "gemma3", "", 1, 0, 1, 262208, 2304, 9216, 26, 8, 4, 256, 131072, 1e-6, 1e6, 1},
    {"Gemma3ForConditionalGeneration", "gemma3", "", 1, 0, 1, 262208, 2304, 9216, 26, 8, 4, 256, 131072, 1e-6, 1e6, 1},
    {"Phi3ForCausalLM", "phi3", "silu", 0, 0, 0, 32064, 3072, 8192, 32, 32, 0, 0, 4096, 1e-5, 10000, 0},
};
#define N_ARCHS (sizeof ARCHS / sizeof ARCHS[0])

const char *lyra_hf_arch_names(void) {
    return "LlamaForCausalLM, MistralForCausalLM, PhiForCausalLM, Qwen2ForCausalLM, "
           "Qwen3ForCausalLM, GemmaForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM, "
           "Gemma3ForConditionalGeneration (text), Phi3ForCausalLM";
}

/* ------------------------------------------------------------------ dtype */

int lyra_hf_dtype_parse(const char *s, lyra_hf_dtype *out) {
    static const struct { const char *name; lyra_hf_dtype d; } N[] = {
        {"auto", LYRA_HF_DTYPE_AUTO}, {"float32", LYRA_HF_DTYPE_F32}, {"f32", LYRA_HF_DTYPE_F32},
        {"fp32", LYRA_HF_DTYPE_F32},  {"float", LYRA_HF_DTYPE_F32},   {"float16", LYRA_HF_DTYPE_F16},
        {"f16", LYRA_HF_DTYPE_F16},   {"fp16", LYRA_HF_DTYPE_F16},    {"half", LYRA_HF_DTYPE_F16},
        {"bfloat16", LYRA_HF_DTYPE_BF16}, {"bf16", LYRA_HF_DTYPE_BF16},
    };
    if (!s) return 0;
    if (!strncmp(s, "torch.", 6)) s += 6;
    for (size_t i = 0; i < sizeof N / sizeof N[0]; i++)
        if (!strcasecmp(s, N[i].name)) {
            *out = N[i].d;
            return 1;
        }
    return 0;
}

const char *lyra_hf_dtype_name(lyra_hf_dtype d) {
    switch (d) {
    case LYRA_HF_DTYPE_F32: return "float32";
    case LYRA_HF_DTYPE_F16: return "float16";
    case LYRA_HF_DTYPE_BF16: return "bfloat16";
    default: return "auto";
    }
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int lyra_hf_is_model(const char *path, char *dir, size_t cap) {
    struct stat st;
    if (!path || stat(path, &st)) return 0;
    if (S_ISDIR(st.st_mode)) {
        char cfg[4096];
        if ((size_t)snprintf(cfg, sizeof cfg, "%s/config.json", path) >= sizeof cfg) return 0;
        if (stat(cfg, &st) || !S_ISREG(st.st_mode)) return 0;
        snprintf(dir, cap, "%s", path);
        return 1;
    }
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strcmp(base, "config.json")) return 0;
    size_t n = (size_t)(base - path);
    if (n > 1) n--; /* drop the slash, keep "/" itself */
    if (n == 0) snprintf(dir, cap, ".");
    else snprintf(dir, cap, "%.*s", (int)n, path);
    return 1;
}

/* ---------------------------------------------------------------- config */

typedef struct cfg {
    json_t *root;     /* config.json */
    json_t *c;        /* the text model's object (root, or root.text_config) */
    const char *path; /* config.json's path for messages */
    lyra_error *err;
} cfg;

static json_t *cget(const cfg *c, const char *key) {
    json_t *v = json_object_get(c->c, key);
    return json_is_null(v) ? NULL : v;
}

static int cint(const cfg *c, const char *key, int64_t def, int64_t min, int64_t *out) {
    json_t *v = cget(c, key);
    if (!v) {
        *out = def;
        return LYRA_OK;
    }
    if (!json_is_integer(v))
        return lyra_err(c->err, LYRA_ERR_INPUT, c->path, "%s is not an integer", key);
    *out = json_integer_value(v);
    if (*out < min || *out > INT32_MAX)
        return lyra_err(c->err, LYRA_ERR_INPUT, c->path, "%s = %lld is out of range", key, (long long)*out);
    return LYRA_OK;
}

static int cnum(const cfg *c, const json_t *obj, const char *key, double def, double *out) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return LYRA_OK;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return lyra_err(c->err, LYRA_ERR_INPUT, c->path, "%s is not a finite number", key);
    *out = json_number_value(v);
    return LYRA_OK;
}

static int cbool(const cfg *c, const char *key, int def) {
    json_t *v = cget(c, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

static const char *cstr(const cfg *c, const char *key) { return json_string_value(cget(c, key)); }

/* ------------------------------------------------------------- conversion */

/* What is done to one tensor. */
typedef struct plan_t {
    const lyra_st_tensor *src;
    char name[96];        /* GGUF name */
    lyra_type type;       /* stored type in the GGUF */
    int permute;          /* heads for Llama's Q/K permutation, 0: none */
    int plus_one;         /* Gemma norms */
    int copy;             /* converted into the arena */
    uint64_t n_bytes;
    uint64_t arena_off;
    int n_dims;
    int64_t ne[4];
} plan_t;

typedef struct owner {
    lyra_st *st;
    void *arena;
    size_t arena_size;
    float *rope_freqs; /* llama3 rope factors */
    float *rope_long;  /* longrope (Phi-3): long_factor then short_factor, n_rope_factors each */
    int n_rope_factors;
} owner;

static void owner_free(void *p) {
    owner *o = p;
    if (!o) return;
    if (o->arena) munmap(o->arena, o->arena_size);
    lyra_st_close(o->st);
    free(o->rope_freqs);
    free(o->rope_long);
    free(o);
}

static float src_at(const lyra_st_tensor *t, int64_t i) {
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case LYRA_ST_F32: { float f; memcpy(&f, p + 4 * i, 4); return f; }
    case LYRA_ST_F16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return lyra_fp16_to_f32(h); }
    case LYRA_ST_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return lyra_bf16_to_f32(h); }
    default: return 0;
    }
}

static void convert(const plan_t *pl, uint8_t *dst) {
    const lyra_st_tensor *t = pl->src;
    int64_t cols = pl->ne[0], rows = t->n_elements / (cols ? cols : 1);
    int64_t hd = pl->permute ? rows / pl->permute : 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t sr = r;
        if (pl->permute) { /* out (h, i, j) <- in (h, j, i) for (heads, hd/2, 2) <- (heads, 2, hd/2) */
            int64_t h = r / hd, k = r % hd, i = k / 2, j = k % 2;
            sr = h * hd + j * (hd / 2) + i;
        }
        for (int64_t c = 0; c < cols; c++) {
            float v = src_at(t, sr * cols + c);
            if (pl->plus_one) v += 1.0f;
            int64_t o = r * cols + c;
            switch (pl->type) {
            case LYRA_TYPE_F32: memcpy(dst + 4 * o, &v, 4); break;
            case LYRA_TYPE_F16: { uint16_t h = lyra_f32_to_fp16(v); memcpy(dst + 2 * o, &h, 2); break; }
            default: { uint16_t h = lyra_f32_to_bf16(v); memcpy(dst + 2 * o, &h, 2); break; }
            }
        }
    }
}

/* The GGUF name of HF tensor name (its model prefix removed), or "" to
 * skip it; 0 when it is not a tensor of the architecture. */
static int map_name(const hf_arch *a, const char *n, char *out, size_t cap) {
    static const struct { const char *hf, *gg; } TOP[] = {
        {"embed_tokens", "token_embd"}, {"norm", "output_norm"}, {"final_layernorm", "output_norm"},
    };
    static const struct { const char *hf, *gg; } LAYER[] = {
        {"input_layernorm", "attn_norm"},
        {"self_attn.q_proj", "attn_q"}, {"self_attn.k_proj", "attn_k"}, {"self_attn.v_proj", "attn_v"},
        {"self_attn.o_proj", "attn_output"}, {"self_attn.dense", "attn_output"},
        {"self_attn.qkv_proj", "attn_qkv"},
        {"self_attn.q_norm", "attn_q_norm"}, {"self_attn.k_norm", "attn_k_norm"},
        {"pre_feedforward_layernorm", "ffn_norm"}, {"post_feedforward_layernorm", "post_ffw_norm"},
        {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"}, {"mlp.down_proj", "ffn_down"},
        {"mlp.gate_up_proj", "ffn_up"}, {"mlp.fc1", "ffn_up"}, {"mlp.fc2", "ffn_down"},
    };
    const char *suf = NULL;
    if (ends_with(n, ".weight")) suf = "weight";
    else if (ends_with(n, ".bias")) suf = "bias";
    if (ends_with(n, "rotary_emb.inv_freq")) {
        out[0] = '\0';
        return 1;
    }
    if (!suf) return 0;
    size_t base_len = strlen(n) - strlen(suf) - 1;
    char base[128];
    if (base_len >= sizeof base) return 0;
    memcpy(base, n, base_len);
    base[base_len] = '\0';
    if (!strcmp(base, "lm_head")) {
        snprintf(out, cap, "output.%s", suf);
        return 1;
    }
    if (strncmp(base, "model.", 6)) return 0;
    const char *b = base + 6;
    for (size_t i = 0; i < sizeof TOP / sizeof TOP[0]; i++)
        if (!strcmp(b, TOP[i].hf)) {
            snprintf(out, cap, "%s.%s", TOP[i].gg, suf);
            return 1;
        }
    int layer = -1, k = 0;
    if (sscanf(b, "layers.%d.%n", &layer, &k) != 1 || k == 0 || layer < 0) return 0;
    const char *rest = b + k;
    if (!strcmp(rest, "post_attention_layernorm")) {
        snprintf(out, cap, "blk.%d.%s.%s", layer, a->sandwich ? "post_attention_norm" : "ffn_norm", suf);
        return 1;
    }
    for (size_t i = 0; i < sizeof LAYER / sizeof LAYER[0]; i++)
        if (!strcmp(rest, LAYER[i].hf)) {
            snprintf(out, cap, "blk.%d.%s.%s", layer, LAYER[i].gg, suf);
            return 1;
        }
    return 0;
}

/* ------------------------------------------------------------------ open */

typedef struct hp {
    int64_t vocab, hidden, inter, layers, heads, kv, head_dim, max_pos;
} hp;

/* One factor list of a longrope rope_scaling: n finite positive numbers. */
static int rope_factor_list(const cfg *c, const json_t *rs, const char *key, int64_t n, float *out) {
    const json_t *v = json_object_get(rs, key);
    if (!json_is_array(v) || (int64_t)json_array_size(v) != n)
        return lyra_err(c->err, LYRA_ERR_INPUT, c->path,
                        "rope_scaling.%s must be a list of %lld numbers (rotary dimensions / 2), got %s%lld",
                        key, (long long)n, json_is_array(v) ? "" : "no list, ",
                        json_is_array(v) ? (long long)json_array_size(v) : 0LL);
    for (int64_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, (size_t)i);
        double x = json_number_value(e);
        if (!json_is_number(e) || !isfinite(x) || !(x > 0))
            return lyra_err(c->err, LYRA_ERR_INPUT, c->path, "rope_scaling.%s[%lld] is not a positive number", key,
                            (long long)i);
        out[i] = (float)x;
    }
    return LYRA_OK;
}

/* longrope (Phi-3 128k, Phi-3.5): the GGUF keys and tensors llama.cpp's Phi-3
 * files have: rope_factors_long/short.weight (divisors of each rotary
 * frequency; the model picks long when its context exceeds the original
 * one), rope.scaling.original_context_length and rope.scaling.attn_factor
 * (cos and sin scaled by it). The original length and the attention factor
 * as transformers computes them: original_max_position_embeddings from the
 * config's top level, else rope_scaling's, else max_position_embeddings;
 * attention_factor as given, else sqrt(1 + ln(s) / ln(original)) with s =
 * rope_scaling.factor or max_position_embeddings / original (1 when s <= 1). */
static int longrope(const cfg *c, const json_t *rs, const hp *h, int64_t n_rot, lyra_gguf_writer *w, owner *o,
                    char *k, size_t kcap, const char *A) {
    int rc;
    double orig = (double)h->max_pos, f = 0, att = 0;
    if ((rc = cnum(c, rs, "original_max_position_embeddings", orig, &orig)) ||
        (rc = cnum(c, c->c, "original_max_position_embeddings", orig, &orig)))
        return rc;
    if (!(orig >= 1) || orig > INT32_MAX)
        return lyra_err(c->err, LYRA_ERR_INPUT, c->path, "original_max_position_embeddings = %g must be positive",
                        orig);
    if ((rc = cnum(c, rs, "factor", (double)h->max_pos / orig, &f))) return rc;
    if ((rc = cnum(c, rs, "attention_factor", f <= 1.0 ? 1.0 : sqrt(1 + log(f) / log(orig)), &att))) return rc;
    if (!(att > 0))
        return lyra_err(c->err, LYRA_ERR_INPUT, c->path, "rope_scaling.attention_factor = %g must be positive", att);
    int64_t n = n_rot / 2;
    o->rope_long = malloc((size_t)(n ? 2 * n : 1) * sizeof *o->rope_long);
    if (!o->rope_long) return lyra_err(c->err, LYRA_ERR_OOM, c->path, "out of memory");
    if ((rc = rope_factor_list(c, rs, "long_factor", n, o->rope_long)) ||
        (rc = rope_factor_list(c, rs, "short_factor", n, o->rope_long + n)))
        return rc;
    o->n_rope_factors = (int)n;
    snprintf(k, kcap, "%s.rope.scaling.original_context_length", A);
    lyra_gguf_writer_add_u32(w, k, (uint32_t)orig);
    snprintf(k, kcap, "%s.rope.scaling.attn_factor", A);
    lyra_gguf_writer_add_f32(w, k, (float)att);
    return LYRA_OK;
}

/* The metadata keys of a (parsed hp) into w. */
static int put_meta(const cfg *c, const hf_arch *a, const hp *h, lyra_gguf_writer *w, owner *o,
                    int *rope_freqs_n, const char *dir) {
    char k[128];
    const char *A = a->gguf;
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", A, s), k)
    const char *base = strrchr(dir, '/');
    base = base && base[1] ? base + 1 : dir;
    lyra_gguf_writer_add_str(w, "general.architecture", A);
    lyra_gguf_writer_add_str(w, "general.name", base);
    lyra_gguf_writer_add_u32(w, KEY("context_length"), (uint32_t)h->max_pos);
    lyra_gguf_writer_add_u32(w, KEY("embedding_length"), (uint32_t)h->hidden);
    lyra_gguf_writer_add_u32(w, KEY("block_count"), (uint32_t)h->layers);
    lyra_gguf_writer_add_u32(w, KEY("feed_forward_length"), (uint32_t)h->inter);
    lyra_gguf_writer_add_u32(w, KEY("attention.head_count"), (uint32_t)h->heads);
    lyra_gguf_writer_add_u32(w, KEY("attention.head_count_kv"), (uint32_t)h->kv);
    lyra_gguf_writer_add_u32(w, KEY("vocab_size"), (uint32_t)h->vocab);
    if (h->head_dim != h->hidden / h->heads || h->hidden % h->heads) {
        lyra_gguf_writer_add_u32(w, KEY("attention.key_length"), (uint32_t)h->head_dim);
        lyra_gguf_writer_add_u32(w, KEY("attention.value_length"), (uint32_t)h->head_dim);
    }
    int rc;
    double eps = 0;
    if (!strcmp(A, "phi2")) {
        if ((rc = cnum(c, c->c, "layer_norm_eps", 1e-5, &eps))) return rc;
        lyra_gguf_writer_add_f32(w, KEY("attention.layer_norm_epsilon"), (float)eps);
    } else {
        if ((rc = cnum(c, c->c, "rms_norm_eps", a->eps, &eps))) return rc;
        lyra_gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), (float)eps);
    }
    /* rope: rope_theta and rope_scaling (transformers 4), or rope_parameters (5) */
    json_t *rp = cget(c, "rope_parameters");
    if (rp && json_is_object(rp) && json_object_get(rp, "full_attention")) {
        json_t *sw = json_object_get(rp, "sliding_attention");
        double sb = 0;
        if (json_is_object(sw) && !(rc = cnum(c, sw, "rope_theta", 10000.0, &sb)))
            lyra_gguf_writer_add_f32(w, KEY("rope.freq_base_swa"), (float)sb);
        if (rc) return rc;
        rp = json_object_get(rp, "full_attention");
    }
    json_t *rs = cget(c, "rope_scaling");
    if (!rs) rs = rp;
    double theta = 0;
    if ((rc = cnum(c, c->c, "rope_theta", a->theta, &theta))) return rc;
    if (!cget(c, "rope_theta") && json_is_object(rp) && (rc = cnum(c, rp, "rope_theta", a->theta, &theta)))
        return rc;
    lyra_gguf_writer_add_f32(w, KEY("rope.freq_base"), (float)theta);
    if (cget(c, "rope_local_base_freq")) {
        double lb = 10000.0;
        if ((rc = cnum(c, c->c, "rope_local_base_freq", 10000.0, &lb))) return rc;
        lyra_gguf_writer_add_f32(w, KEY("rope.freq_base_swa"), (float)lb);
    }
    double prf = 0;
    if ((rc = cnum(c, c->c, "partial_rotary_factor", !strcmp(A, "phi2") ? 0.5 : 1.0, &prf))) return rc;
    if (!(prf > 0 && prf <= 1))
        return lyra_err(c->err, LYRA_ERR_INPUT, c->path, "partial_rotary_factor = %g must be in (0, 1]", prf);
    int64_t n_rot = (int64_t)(h->head_dim * prf);
    lyra_gguf_writer_add_u32(w, KEY("rope.dimension_count"), (uint32_t)n_rot);
    if (rs && json_is_object(rs)) {
        const char *t = json_string_value(json_object_get(rs, "rope_type"));
        if (!t) t = json_string_value(json_object_get(rs, "type"));
        if (!t) t = "default";
        double f = 0;
        if (!strcmp(t, "default")) {
        } else if (!strcmp(t, "linear")) {
            if ((rc = cnum(c, rs, "factor", 1.0, &f))) return rc;
            if (!(f > 0)) return lyra_err(c->err, LYRA_ERR_INPUT, c->path, "rope_scaling.factor = %g must be positive", f);
            lyra_gguf_writer_add_str(w, KEY("rope.scaling.type"), "linear");
            lyra_gguf_writer_add_f32(w, KEY("rope.scaling.factor"), (float)f);
        } else if (!strcmp(t, "llama3")) {
            double lo, hi, old;
            if ((rc = cnum(c, rs, "factor", 8.0, &f)) || (rc = cnum(c, rs, "low_freq_factor", 1.0, &lo)) ||
                (rc = cnum(c, rs, "high_freq_factor", 4.0, &hi)) ||
                (rc = cnum(c, rs, "original_max_position_embeddings", 8192, &old)))
                return rc;
            if (!(f > 0) || !(lo > 0) || !(hi > lo) || !(old > 0))
                return lyra_err(c->err, LYRA_ERR_INPUT, c->path,
                                "rope_scaling (llama3): factor, low_freq_factor < high_freq_factor and "
                                "original_max_position_embeddings must be positive");
            int n = (int)(n_rot / 2);
            o->rope_freqs = malloc((size_t)(n ? n : 1) * sizeof *o->rope_freqs);
            if (!o->rope_freqs) return lyra_err(c->err, LYRA_ERR_OOM, c->path, "out of memory");
            double lw = old / lo, hw = old / hi;
            for (int i = 0; i < n; i++) {
                double freq = 1.0 / pow(theta, (2.0 * i) / (double)n_rot), wl = 2 * M_PI / freq;
                if (wl < hw) o->rope_freqs[i] = 1.0f;
                else if (wl > lw) o->rope_freqs[i] = (float)f;
                else {
                    double s = (old / wl - lo) / (hi - lo);
                    o->rope_freqs[i] = (float)(1.0 / ((1 - s) / f + s));
                }
            }
            *rope_freqs_n = n;
        } else if (!strcmp(t, "longrope") || !strcmp(t, "su")) {
            if ((rc = longrope(c, rs, h, n_rot, w, o, k, sizeof k, A))) return rc;
        } else {
            return lyra_err(c->err, LYRA_ERR_INPUT, c->path,
                            "rope_scaling type '%.40s' is not supported (default, linear, llama3, longrope%s)", t,
                            !strcmp(t, "yarn") || !strcmp(t, "dynamic")
                                ? "; lyra's forward pass has no YaRN or dynamic NTK rope" : "");
        }
    }
    /* activation */
    if (a->gemma) {
        const char *act = cstr(c, "hidden_activation");
        if (!act) act = "gelu_pytorch_tanh";
        if (strcmp(act, "gelu_pytorch_tanh") && strcmp(act, "gelu_new"))
            return lyra_err(c->err, LYRA_ERR_INPUT, c->path,
                            "hidden_activation '%.40s' is not supported for %s (gelu_pytorch_tanh)", act, a->hf);
    } else {
        const char *act = cstr(c, "hidden_act");
        if (!act) act = a->act;
        int ok = !strcmp(act, a->act) ||
                 (!strcmp(a->act, "gelu_new") && !strcmp(act, "gelu_pytorch_tanh"));
        if (!ok)
            return lyra_err(c->err, LYRA_ERR_INPUT, c->path, "hidden_act '%.40s' is not supported for %s (%s)",
                            act, a->hf, a->act);
    }
    /* sliding windows, soft-caps, attention scale */
    if (!strcmp(a->hf, "MistralForCausalLM") || !strcmp(A, "phi3")) {
        int64_t sw;
        if ((rc = cint(c, "sliding_window", 0, 0, &sw))) return rc;
        if (sw > 0) lyra_gguf_writer_add_u32(w, KEY("attention.sliding_window"), (uint32_t)sw);
    } else if (!strcmp(A, "qwen2") || !strcmp(A, "qwen3")) {
        if (cbool(c, "use_sliding_window", 0))
            return lyra_err(c->err, LYRA_ERR_INPUT, c->path, "use_sliding_window = true is not supported for %s", a->hf);
    } else if (!strcmp(A, "gemma2") || !strcmp(A, "gemma3")) {
        int64_t sw, pat = !strcmp(A, "gemma2") ? 2 : 6;
        if ((rc = cint(c, "sliding_window", 4096, 1, &sw))) return rc;
        lyra_gguf_writer_add_u32(w, KEY("attention.sliding_window"), (uint32_t)sw);
        if (!strcmp(A, "gemma3")) {
            if ((rc = cint(c, "sliding_window_pattern", 6, 1, &pat))) return rc;
            json_t *lt = cget(c, "layer_types");
            if (json_is_array(lt)) { /* transformers 5: one entry per layer */
                size_t n = json_array_size(lt), first_full = n;
                for (size_t i = 0; i < n && first_full == n; i++)
                    if (!strcmp(json_string_value(json_array_get(lt, i)) ? json_string_value(json_array_get(lt, i)) : "",
                                "full_attention"))
                        first_full = i;
                pat = first_full < n ? (int64_t)first_full + 1 : (int64_t)n + 1;
                for (size_t i = 0; i < n; i++) {
                    const char *s = json_string_value(json_array_get(lt, i));
                    int full = s && !strcmp(s, "full_attention");
                    if (full != ((int64_t)(i % (size_t)pat) == pat - 1))
                        return lyra_err(c->err, LYRA_ERR_INPUT, c->path,
                                        "layer_types: layer %zu breaks the every-%lld-layers global pattern", i,
                                        (long long)pat);
                }
            }
            lyra_gguf_writer_add_u32(w, KEY("attention.sliding_window_pattern"), (uint32_t)pat);
        }
        double cap1, cap2;
        int g2 = !strcmp(A, "gemma2");
        if ((rc = cnum(c, c->c, "attn_logit_softcapping", g2 ? 50.0 : 0, &cap1)) ||
            (rc = cnum(c, c->c, "final_logit_softcapping", g2 ? 30.0 : 0, &cap2)))
            return rc;
        if (g2) {
            lyra_gguf_writer_add_f32(w, KEY("attn_logit_softcapping"), (float)cap1);
            lyra_gguf_writer_add_f32(w, KEY("final_logit_softcapping"), (float)cap2);
        } else if (cap1 != 0 || cap2 != 0) {
            return lyra_err(c->err, LYRA_ERR_INPUT, c->path, "%s with logit soft-capping is not supported", a->hf);
        }
        double q;
        int64_t big = g2 ? 46 : 62;
        double want = h->layers == big ? (double)(h->hidden / h->heads) : (double)h->head_dim;
        if ((rc = cnum(c, c->c, "query_pre_attn_scalar", 256, &q))) return rc;
        if (q != want)
            return lyra_err(c->err, LYRA_ERR_INPUT, c->path,
                            "query_pre_attn_scalar = %g is not supported (lyra uses %g for this model)", q, want);
    }
    if (cbool(c, "qk_layernorm", 0))
        return lyra_err(c->err, LYRA_ERR_INPUT, c->path, "qk_layernorm = true is not supported");
#undef KEY
    return LYRA_OK;
}

/* Read the config into c (root and text model), find the architecture. */
static int read_config(const char *dir, cfg *c, char *path, size_t cap, const hf_arch **arch, lyra_error *err) {
    snprintf(path, cap, "%s/config.json", dir);
    c->path = path;
    c->err = err;
    json_error_t je;
    c->root = json_load_file(path, 0, &je);
    if (!c->root) {
        struct stat st;
        if (stat(path, &st)) return lyra_err(err, LYRA_ERR_INPUT, path, "cannot read: %s", strerror(errno));
        return lyra_err(err, LYRA_ERR_INPUT, path, "line %d: %s", je.line, je.text);
    }
    if (!json_is_object(c->root)) return lyra_err(err, LYRA_ERR_INPUT, path, "not a JSON object");
    c->c = c->root;
    json_t *archs = json_object_get(c->root, "architectures");
    const char *name = json_string_value(json_array_get(archs, 0));
    if (!name) {
        const char *mt = json_string_value(json_object_get(c->root, "model_type"));
        static const char *MT[][2] = {{"llama", "LlamaForCausalLM"}, {"mistral", "MistralForCausalLM"},
                                      {"phi", "PhiForCausalLM"},     {"qwen2", "Qwen2ForCausalLM"},
                                      {"qwen3", "Qwen3ForCausalLM"}, {"gemma", "GemmaForCausalLM"},
                                      {"gemma2", "Gemma2ForCausalLM"}, {"gemma3_text", "Gemma3ForCausalLM"},
                                      {"gemma3", "Gemma3ForConditionalGeneration"}, {"phi3", "Phi3ForCausalLM"}};
        for (size_t i = 0; mt && i < sizeof MT / sizeof MT[0]; i++)
            if (!strcmp(mt, MT[i][0])) name = MT[i][1];
        if (!name)
            return lyra_err(err, LYRA_ERR_INPUT, path, "neither architectures nor a known model_type (%.40s); lyra supports %s",
                            mt ? mt : "absent", lyra_hf_arch_names());
    }
    for (size_t i = 0; i < N_ARCHS; i++)
        if (!strcmp(name, ARCHS[i].hf)) *arch = &ARCHS[i];
    if (!*arch)
        return lyra_err(err, LYRA_ERR_INPUT, path, "architecture %.60s is not supported; lyra supports %s", name,
                        lyra_hf_arch_names());
    if (!strcmp(name, "Gemma3ForConditionalGeneration")) {
        json_t *tc = json_object_get(c->root, "text_config");
        if (!json_is_object(tc))
            return lyra_err(err, LYRA_ERR_INPUT, path, "Gemma3ForConditionalGeneration without a text_config object");
        c->c = tc;
    }
    return LYRA_OK;
}

/* The model prefix the tensor names have ("model." is part of the names;
 * Gemma 3 multimodal: "language_model." or "model.language_model" -> "model."). */
static const char *strip_prefix(const char *n, char *buf, size_t cap, int multimodal) {
    if (!multimodal) return n;
    static const char *P[][2] = {{"model.language_model.", "model."}, {"language_model.model.", "model."},
                                 {"language_model.lm_head.", "lm_head."}};
    for (size_t i = 0; i < sizeof P / sizeof P[0]; i++) {
        size_t l = strlen(P[i][0]);
        if (!strncmp(n, P[i][0], l)) {
            snprintf(buf, cap, "%s%s", P[i][1], n + l);
            return buf;
        }
    }
    if (!strcmp(n, "lm_head.weight")) return n;
    return NULL; /* the vision tower and projector: not used */
}

int lyra_hf_open(const char *dir, lyra_hf_dtype dtype, lyra_gguf **out, lyra_error *err) {
    *out = NULL;
    char path[4200];
    cfg c = {0};
    const hf_arch *a = NULL;
    owner *o = calloc(1, sizeof *o);
    plan_t *pl = NULL;
    lyra_gguf_writer *w = NULL;
    int rc = o ? read_config(dir, &c, path, sizeof path, &a, err) : lyra_err(err, LYRA_ERR_OOM, dir, "out of memory");
    hp h = {0};
    int nf = 0;
    if (!rc &&
        ((rc = cint(&c, "vocab_size", a->vocab, 1, &h.vocab)) || (rc = cint(&c, "hidden_size", a->hidden, 1, &h.hidden)) ||
         (rc = cint(&c, "intermediate_size", a->inter, 1, &h.inter)) ||
         (rc = cint(&c, "num_hidden_layers", a->layers, 1, &h.layers)) ||
         (rc = cint(&c, "num_attention_heads", a->heads, 1, &h.heads)) ||
         (rc = cint(&c, "num_key_value_heads", a->kv ? a->kv : h.heads, 1, &h.kv)) ||
         (rc = cint(&c, "max_position_embeddings", a->max_pos, 1, &h.max_pos))))
        goto done;
    if (!rc) {
        if ((rc = cint(&c, "head_dim", a->head_dim ? a->head_dim : h.hidden / h.heads, 1, &h.head_dim))) goto done;
        if (h.head_dim == 0 || h.heads % h.kv) {
            rc = lyra_err(err, LYRA_ERR_INPUT, path, "num_key_value_heads = %lld does not divide num_attention_heads = %lld",
                          (long long)h.kv, (long long)h.heads);
            goto done;
        }
    }
    if (rc) goto done;
    if (!(w = lyra_gguf_writer_new())) { rc = lyra_err(err, LYRA_ERR_OOM, dir, "out of memory"); goto done; }
    if ((rc = put_meta(&c, a, &h, w, o, &nf, dir))) goto done;
    int tied = cbool(&c, "tie_word_embeddings", a->tie);
    if (c.c != c.root && !cget(&c, "tie_word_embeddings")) { /* multimodal: the outer config's */
        json_t *tv = json_object_get(c.root, "tie_word_embeddings");
        if (json_is_boolean(tv)) tied = json_is_true(tv);
    }
    if ((rc = lyra_st_open(dir, &o->st, err))) goto done;
    int64_t n = lyra_st_n_tensors(o->st), np = 0;
    pl = calloc((size_t)(n ? n : 1), sizeof *pl);
    if (!pl) { rc = lyra_err(err, LYRA_ERR_OOM, dir, "out of memory"); goto done; }
    int multimodal = c.c != c.root;
    uint64_t arena = 0;
    for (int64_t i = 0; i < n; i++) {
        const lyra_st_tensor *t = lyra_st_tensor_at(o->st, i);
        const char *file = lyra_st_file(o->st, t->file);
        char buf[512];
        const char *hn = strip_prefix(t->name, buf, sizeof buf, multimodal);
        if (!hn) continue;
        plan_t *p = &pl[np];
        if (!map_name(a, hn, p->name, sizeof p->name)) {
            rc = lyra_err(err, LYRA_ERR_INPUT, file, "tensor %.100s: not a tensor of %s", t->name, a->hf);
            goto done;
        }
        if (!p->name[0]) continue;
        if (tied && !strncmp(p->name, "output.", 7)) continue;
        if (t->dtype != LYRA_ST_F32 && t->dtype != LYRA_ST_F16 && t->dtype != LYRA_ST_BF16) {
            rc = lyra_err(err, LYRA_ERR_INPUT, file, "tensor %.100s: dtype %s is not a float type lyra can load",
                          t->name, lyra_st_dtype_name(t->dtype));
            goto done;
        }
        if (t->n_dims < 1 || t->n_dims > 4 || t->n_elements == 0) {
            rc = lyra_err(err, LYRA_ERR_INPUT, file, "tensor %.100s: %d dimensions (1 to 4, none empty expected)",
                          t->name, t->n_dims);
            goto done;
        }
        p->src = t;
        p->n_dims = t->n_dims;
        for (int d = 0; d < 4; d++) p->ne[d] = d < t->n_dims ? t->shape[t->n_dims - 1 - d] : 1;
        lyra_type st = t->dtype == LYRA_ST_F32 ? LYRA_TYPE_F32 : t->dtype == LYRA_ST_F16 ? LYRA_TYPE_F16 : LYRA_TYPE_BF16;
        lyra_type want = dtype == LYRA_HF_DTYPE_F32 ? LYRA_TYPE_F32 : dtype == LYRA_HF_DTYPE_F16 ? LYRA_TYPE_F16
                       : dtype == LYRA_HF_DTYPE_BF16 ? LYRA_TYPE_BF16 : st;
        if (t->n_dims == 1) want = LYRA_TYPE_F32; /* norms and biases: F32, as llama.cpp stores them */
        p->type = want;
        if (a->permute_qk) {
            int q = strstr(p->name, ".attn_q.") != NULL, k = strstr(p->name, ".attn_k.") != NULL;
            if (q || k) {
                int64_t heads = q ? h.heads : h.kv, rows = t->n_dims == 1 ? p->ne[0] : p->ne[1];
                if (rows % (2 * heads)) {
                    rc = lyra_err(err, LYRA_ERR_INPUT, file, "tensor %.100s: %lld rows do not split into %lld heads",
                                  t->name, (long long)rows, (long long)heads);
                    goto done;
                }
                p->permute = (int)heads;
                if (t->n_dims == 1) { /* a bias: permute it as a column */
                    p->ne[1] = p->ne[0];
                    p->ne[0] = 1;
                }
            }
        }
        p->plus_one = a->gemma && ends_with(p->name, "norm.weight");
        p->copy = p->permute || p->plus_one || p->type != st;
        p->n_bytes = (uint64_t)t->n_elements * (p->type == LYRA_TYPE_F32 ? 4 : 2);
        if (p->copy) {
            p->arena_off = arena;
            arena += (p->n_bytes + 63) & ~(uint64_t)63;
        }
        np++;
    }
    if (arena) {
        o->arena_size = (size_t)arena;
        void *m = mmap(NULL, o->arena_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            rc = lyra_err(err, LYRA_ERR_OOM, dir, "cannot map %llu bytes for converted tensors: %s",
                          (unsigned long long)arena, strerror(errno));
            goto done;
        }
        o->arena = m;
    }
    for (int64_t i = 0; i < np; i++) {
        plan_t *p = &pl[i];
        const void *data = p->src->data;
        if (p->copy) {
            convert(p, (uint8_t *)o->arena + p->arena_off);
            data = (uint8_t *)o->arena + p->arena_off;
        }
        if (p->permute && p->n_dims == 1) { /* back to a vector */
            p->ne[0] = p->ne[1];
            p->ne[1] = 1;
        }
        lyra_gguf_writer_add_tensor(w, p->name, p->type, p->n_dims, p->ne, data);
    }
    if (nf) {
        int64_t ne[1] = {nf};
        lyra_gguf_writer_add_tensor(w, "rope_freqs.weight", LYRA_TYPE_F32, 1, ne, o->rope_freqs);
    }
    if (o->n_rope_factors) { /* longrope */
        int64_t ne[1] = {o->n_rope_factors};
        lyra_gguf_writer_add_tensor(w, "rope_factors_long.weight", LYRA_TYPE_F32, 1, ne, o->rope_long);
        lyra_gguf_writer_add_tensor(w, "rope_factors_short.weight", LYRA_TYPE_F32, 1, ne,
                                    o->rope_long + o->n_rope_factors);
    }
    rc = lyra_gguf_writer_to_gguf(w, dir, owner_free, o, out, err);
    if (!rc) o = NULL; /* the result owns it */
done:
    lyra_gguf_writer_free(w);
    free(pl);
    owner_free(o);
    json_decref(c.root);
    return rc;
}

int lyra_hf_open_path(const char *path, lyra_hf_dtype dtype, lyra_gguf **out, lyra_error *err) {
    char dir[4096];
    if (!lyra_hf_is_model(path, dir, sizeof dir)) return lyra_gguf_open(path, out, err);
    int rc = lyra_hf_open(dir, dtype, out, err);
    if (!rc && (rc = lyra_hf_tokenizer_meta(dir, *out, err))) {
        lyra_gguf_close(*out);
        *out = NULL;
    }
    return rc;
}
