/* model.c: lyra_model (lyra.h): opening a GGUF, loading the architecture and
 * the tokenizer, placing the weights on devices (the CPU: adopted in place
 * from the mapping), the model getters and the tokenizer wrappers; also the
 * library's version and build features. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    lyra_model_params p = {.use_mmap = 1};
    return p;
}

/* Place every module's weights on its device: adopt the mapping (use_mmap,
 * on a device that can use host memory) or allocate and copy; a tensor read
 * by several modules of one device (the tied embedding) is placed once. */
static int place_weights(lyra_model *m, int use_mmap, lyra_error *err) {
    lyra_llama *a = m->arch;
    int n_mod = lyra_llama_n_modules(a);
    int cap = 0;
    for (int i = 0; i < n_mod; i++) {
        lyra_weight *w[10];
        cap += lyra_llama_module_weights(a, i, w);
    }
    m->placed = calloc((size_t)cap, sizeof *m->placed);
    if (!m->placed) return lyra_err(err, LYRA_ERR_OOM, "model", "out of memory");
    for (int i = 0; i < n_mod; i++) {
        lyra_weight *w[10];
        int n = lyra_llama_module_weights(a, i, w), di = m->module_dev[i];
        lyra_device *d = m->dev[di];
        for (int k = 0; k < n; k++) {
            const void *host = w[k]->data;
            int seen = -1, elsewhere = 0;
            for (int j = 0; j < m->n_placed; j++) {
                if (m->placed[j].host != host) continue;
                if (m->placed[j].dev == di) { seen = j; break; }
                elsewhere = 1;
            }
            if (seen >= 0) { /* tied: reuse the placed copy */
                if (m->placed[seen].ptr) w[k]->data = m->placed[seen].ptr;
                continue;
            }
            lyra_placed *pl = &m->placed[m->n_placed];
            pl->dev = di;
            pl->host = host;
            pl->n_bytes = w[k]->n_bytes;
            int rc;
            if (use_mmap && d->ops->adopt(d, host, w[k]->n_bytes) == LYRA_OK) {
                /* used in place */
            } else { /* no mmap, or a device that cannot use host memory */
                void *p;
                rc = d->ops->alloc(d, w[k]->n_bytes, &p);
                if (rc)
                    return lyra_err(err, rc, d->id, "out of memory for weight %s (%llu bytes)",
                                    w[k]->name, (unsigned long long)w[k]->n_bytes);
                pl->ptr = p;
                rc = d->ops->copy_in(d, p, host, w[k]->n_bytes);
                if (rc) {
                    m->n_placed++;
                    return lyra_err(err, rc, d->id, "cannot load weight %s", w[k]->name);
                }
                w[k]->data = p;
            }
            m->n_placed++;
            m->dev_weights[di] += w[k]->n_bytes;
            if (!elsewhere) { /* the model's size counts each tensor once */
                m->n_bytes += w[k]->n_bytes;
                m->n_params += (uint64_t)(w[k]->cols * w[k]->rows);
            }
        }
    }
    /* rope_freqs lives with layer 0 (placing it on every device holding
     * layers is the sharding work's) */
    if (a->has_rope_freqs) a->hp.rope.freq_factors = a->rope_freqs.data;
    return LYRA_OK;
}

int lyra_model_open(const char *path, const lyra_model_params *params, lyra_model **out,
                    lyra_error *err) {
    *out = NULL;
    lyra_model_params p = params ? *params : lyra_model_default_params();
    lyra_model *m = calloc(1, sizeof *m);
    if (!m) return lyra_err(err, LYRA_ERR_OOM, path, "out of memory");
    int rc = lyra_gguf_open(path, &m->gguf, err);
    if (!rc) rc = lyra_llama_load(m->gguf, &m->arch, err);
    if (!rc) rc = lyra_tokenizer_load(m->gguf, &m->tok, err);
    if (!rc && lyra_tok_n_vocab(m->tok) > m->arch->hp.n_vocab)
        rc = lyra_err(err, LYRA_ERR_INPUT, path,
                      "the tokenizer has %d tokens but the model only %d embeddings",
                      (int)lyra_tok_n_vocab(m->tok), (int)m->arch->hp.n_vocab);
    if (!rc) { /* placement: every module on the CPU */
        rc = lyra_cpu_device_new(1, &m->dev[0], err);
        if (!rc) m->n_dev = 1;
    }
    if (!rc) {
        m->module_dev = calloc((size_t)lyra_llama_n_modules(m->arch), sizeof *m->module_dev);
        if (!m->module_dev) rc = lyra_err(err, LYRA_ERR_OOM, path, "out of memory");
    }
    if (!rc) rc = place_weights(m, p.use_mmap, err);
    if (rc) {
        lyra_model_free(m);
        return rc;
    }
    *out = m;
    return LYRA_OK;
}

void lyra_model_free(lyra_model *m) {
    if (!m) return;
    for (int j = 0; j < m->n_placed; j++) {
        lyra_placed *pl = &m->placed[j];
        lyra_device *d = m->dev[pl->dev];
        if (pl->ptr) d->ops->free(d, pl->ptr, pl->n_bytes);
        else d->ops->unadopt(d, pl->host, pl->n_bytes);
    }
    free(m->placed);
    for (int i = 0; i < m->n_dev; i++) lyra_device_free(m->dev[i]);
    free(m->module_dev);
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
