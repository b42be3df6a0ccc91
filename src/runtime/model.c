/* model.c: lyra_model (lyra.h): opening a GGUF, loading the architecture and
 * the tokenizer, then placing it (fallback.c: plan, progressive fallback,
 * weights on devices), the model getters (fallback history, device map) and
 * the tokenizer wrappers; also the library's version and build features. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "build_info.h"
#include "core/log.h"
#include "format/hf_model.h"
#include "dist/dist.h"
#include "runtime/fallback.h"
#include "runtime/placement.h"
#include "runtime/quantize_load.h"
#include "runtime/residency.h"

/* ----------------------------------------------------------------- version */

const char *lyra_version(void) { return LYRA_BUILD_VERSION; }

void lyra_free(void *ptr) { free(ptr); }

/* The model's fingerprint: a 64-bit FNV-1a over the bytes before the data
 * section of every part (header, metadata, tensor table), words at a time,
 * and the on-load quantization. */
static uint64_t fingerprint(const lyra_gguf *g, int load_in_bits) {
    uint64_t h = 0xcbf29ce484222325ull;
    const uint64_t prime = 0x100000001b3ull;
    for (int i = 0; i < lyra_gguf_n_parts(g); i++) {
        const unsigned char *p = lyra_gguf_part_map(g, i);
        uint64_t n = lyra_gguf_data_start(g, i), k = 0;
        for (; k + 8 <= n; k += 8) {
            uint64_t w;
            memcpy(&w, p + k, 8);
            h = (h ^ w) * prime;
            h ^= h >> 29;
        }
        for (; k < n; k++) h = (h ^ p[k]) * prime;
        h = (h ^ n) * prime;
    }
    return (h ^ (uint64_t)load_in_bits) * prime;
}

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
#if LYRA_BUILD_HAVE_MPI
    size_t o = strlen(buf);
    snprintf(buf + o, sizeof buf - o, "; MPI"); /* mpirun -np N (docs/distributed.md) */
#endif
    return buf;
}

/* ------------------------------------------------------------------- model */

lyra_model_params lyra_model_default_params(void) {
    lyra_model_params p;
    memset(&p, 0, sizeof p);
    p.use_mmap = 1;
    p.device_strategy = LYRA_DEVICE_MAP_AUTO;
    p.gpu_layers = LYRA_GPU_LAYERS_UNSET;
    p.fallback = 1;
    p.gpu_layers_fallback = -1;
    return p;
}

int lyra_model_open(const char *path, const lyra_model_params *params, lyra_model **out,
                    lyra_error *err) {
    *out = NULL;
    lyra_model_params p = params ? *params : lyra_model_default_params();
    lyra_geometry g = {p.n_ctx, p.n_batch, (int)p.kv_type, p.n_threads, p.n_seq};
    int rc = lyra_geometry_check(&g, err);
    if (rc) return rc;
    if (p.fallback_policy < LYRA_FALLBACK_LAYERS || p.fallback_policy > LYRA_FALLBACK_NONE)
        return lyra_err(err, LYRA_ERR_INPUT, "fallback_policy", "unknown policy %d", p.fallback_policy);
    if (p.gpu_layers_fallback < -1)
        return lyra_err(err, LYRA_ERR_INPUT, "gpu_layers_fallback", "must be >= 0 (or -1: none), got %d",
                        (int)p.gpu_layers_fallback);
    if (p.min_ctx < 0)
        return lyra_err(err, LYRA_ERR_INPUT, "min_ctx", "must be >= 0, got %d", (int)p.min_ctx);
    if (p.kv_chunk < 0)
        return lyra_err(err, LYRA_ERR_INPUT, "kv_chunk", "must be >= 0, got %d", (int)p.kv_chunk);
    if (p.load_in_bits != 0 && p.load_in_bits != 4 && p.load_in_bits != 8)
        return lyra_err(err, LYRA_ERR_INPUT, "load_in_bits", "must be 0, 4 or 8, got %d", p.load_in_bits);
    /* the backend settings, read from the environment once when not given */
    lyra_backend_params bp = p.backend ? *p.backend : lyra_backend_params_from_env();
    p.backend = &bp;
    lyra_model *m = calloc(1, sizeof *m);
    if (!m) return lyra_err(err, LYRA_ERR_OOM, path, "out of memory");
    m->alloc_stats = bp.alloc_stats != 0;
    m->use_mmap = p.use_mmap != 0;
    m->use_mlock = p.use_mlock != 0;
    rc = lyra_fail_io_parse(bp.fail_io, &m->fail_io, err);
    if (!rc) rc = lyra_dist_check_file(path, err); /* mpirun: every rank has rank 0's file */
    if (!rc && (p.dtype < 0 || p.dtype > 3))
        rc = lyra_err(err, LYRA_ERR_INPUT, "dtype", "must be 0 (auto) to 3 (bfloat16), got %d", p.dtype);
    if (!rc) rc = lyra_hf_open_path(path, (lyra_hf_dtype)p.dtype, &m->gguf, err); /* a GGUF or a folder */
    if (!rc) m->fingerprint = fingerprint(m->gguf, p.load_in_bits);
    if (!rc) rc = lyra_llama_load(m->gguf, &m->arch, err);
    if (!rc) lyra_llama_set_context(m->arch, lyra_runtime_geometry(m->arch, &p).n_ctx);
    if (!rc) rc = lyra_tokenizer_load(m->gguf, &m->tok, err);
    if (!rc && lyra_tok_n_vocab(m->tok) > m->arch->hp.n_vocab)
        rc = lyra_err(err, LYRA_ERR_INPUT, path,
                      "the tokenizer has %d tokens but the model only %d embeddings",
                      (int)lyra_tok_n_vocab(m->tok), (int)m->arch->hp.n_vocab);
    if (!rc && p.load_in_bits) rc = lyra_runtime_quantize_on_load(m, p.load_in_bits, err);
    if (!rc) rc = lyra_runtime_load(m, &p, err);
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
    for (int i = 0; i < m->n_dev; i++) {
        if (m->alloc_stats)
            LYRA_WARN("alloc: %s calls=%llu peak=%llu", m->dev[i]->id,
                      (unsigned long long)m->dev[i]->stats.alloc_calls,
                      (unsigned long long)m->dev[i]->stats.peak);
        lyra_device_free(m->dev[i]);
    }
    free(m->steps);
    free(m->qbuf);
    free(m->module_dev);
    free(m->module_disk);
    free(m->module_rank);
    lyra_plan_free(m->plan);
    lyra_tokenizer_free(m->tok);
    lyra_llama_free(m->arch);
    lyra_gguf_close(m->gguf);
    free(m);
}

const char *lyra_model_arch(const lyra_model *m) { return m->arch->desc.name; }
int32_t lyra_model_n_vocab(const lyra_model *m) { return m->arch->hp.n_vocab; }
int32_t lyra_model_n_layer(const lyra_model *m) { return m->arch->hp.n_layer; }
int32_t lyra_model_n_embd(const lyra_model *m) { return m->arch->hp.n_embd; }
int32_t lyra_model_n_ctx_train(const lyra_model *m) { return m->arch->hp.n_ctx_train; }
uint64_t lyra_model_n_bytes(const lyra_model *m) { return m->n_bytes; }
uint64_t lyra_model_n_params(const lyra_model *m) { return m->n_params; }
int32_t lyra_model_n_ctx(const lyra_model *m) { return m->n_ctx; }
int lyra_model_fallback_steps(const lyra_model *m) { return m->n_steps; }

int lyra_model_fallback_step(const lyra_model *m, int i, lyra_fallback_step *out) {
    if (i < 0 || i >= m->n_steps) return LYRA_ERR_INPUT;
    *out = m->steps[i];
    return LYRA_OK;
}

size_t lyra_model_device_map(const lyra_model *m, char *buf, size_t cap) {
    size_t o = 0;
    int n_mod = lyra_llama_n_modules(m->arch);
    for (int i = 0; i < n_mod; i++) {
        char name[64];
        lyra_llama_module_name(m->arch, i, name, sizeof name);
        const char *id = m->module_disk[i] ? "disk" : m->dev[m->module_dev[i]]->id;
        int k = snprintf(o < cap ? buf + o : NULL, o < cap ? cap - o : 0, "%s\"%s\":\"%s\"",
                         i ? "," : "{", name, id);
        o += k > 0 ? (size_t)k : 0;
    }
    int k = snprintf(o < cap ? buf + o : NULL, o < cap ? cap - o : 0, "}");
    o += k > 0 ? (size_t)k : 0;
    return o;
}

int64_t lyra_model_meta_str(const lyra_model *m, const char *key, char *buf, size_t cap) {
    lyra_gguf_str v;
    if (!key || !lyra_gguf_get_str(m->gguf, key, &v)) return -1;
    if (buf && cap) {
        size_t k = v.len < cap - 1 ? (size_t)v.len : cap - 1;
        memcpy(buf, v.ptr, k);
        buf[k] = '\0';
    }
    return v.len > INT64_MAX ? INT64_MAX : (int64_t)v.len;
}

int64_t lyra_model_chat_template(const lyra_model *m, char *buf, size_t cap) {
    return lyra_model_meta_str(m, "tokenizer.chat_template", buf, cap);
}

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

size_t lyra_token_text(const lyra_model *m, int32_t token, char *buf, size_t cap) {
    size_t len = 0;
    const char *t = token >= 0 ? lyra_tok_text(m->tok, token, &len) : NULL;
    if (!t) return 0;
    if (buf) memcpy(buf, t, len < cap ? len : cap);
    return len;
}

int32_t lyra_token_find(const lyra_model *m, const char *text, size_t len) {
    return text ? lyra_tok_find(m->tok, text, len) : -1;
}

/* The public streaming detokenizer is the tokenizer's stream with every space
 * kept (the continuation of a prompt) and ill-formed UTF-8 replaced by
 * U+FFFD (lyra_token_to_piece gives the raw bytes). */
struct lyra_detok {
    lyra_tok_stream *s; /* the tokenizer module's stream */
};

lyra_detok *lyra_detok_new(const lyra_model *m) {
    lyra_detok *d = malloc(sizeof *d);
    if (!d) return NULL;
    d->s = lyra_tok_stream_new(m->tok, LYRA_TOK_STREAM_REPLACE_INVALID);
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
