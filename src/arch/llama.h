/* llama.h: the Llama architecture: hyper-parameters and weights read from a
 * GGUF (every name, shape and type validated), the list of modules the
 * runtime places on devices, and the forward pass, written once over device
 * ops (device.h) as a loop over modules.
 *
 * Modules, in forward order, with their canonical names:
 *   0            model.embed_tokens   token_embd.weight (get_rows)
 *   1..n_layer   model.layers.N       blk.N.* (attention + feed-forward)
 *   n_layer+1    model.norm           output_norm.weight
 *   n_layer+2    lm_head              output.weight (or token_embd.weight, tied)
 * Each module runs on its own device; the hidden state [ntok][n_embd] is
 * copied (through host memory) only where the device changes. */
#ifndef LYRA_ARCH_LLAMA_H
#define LYRA_ARCH_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "device/device.h"
#include "format/gguf.h"

/* The most devices one forward pass may use. */
#define LYRA_MAX_DEVICES 16

/* One weight tensor as the forward pass uses it. */
typedef struct lyra_weight {
    const char *name;     /* GGUF tensor name (owned by the gguf) */
    lyra_type type;       /* storage type */
    int64_t cols;         /* ne[0]: elements per row (contiguous) */
    int64_t rows;         /* ne[1] (1 for vectors) */
    const void *data;     /* device pointer: the mapping while on the CPU */
    uint64_t n_bytes;     /* bytes of the tensor */
} lyra_weight;

typedef struct lyra_llama_hparams {
    int32_t n_vocab;      /* vocabulary size */
    int32_t n_ctx_train;  /* llama.context_length */
    int32_t n_embd;       /* llama.embedding_length */
    int32_t n_layer;      /* llama.block_count */
    int32_t n_ff;         /* llama.feed_forward_length */
    int32_t n_head;       /* llama.attention.head_count */
    int32_t n_head_kv;    /* llama.attention.head_count_kv (default n_head) */
    int32_t head_dim;     /* n_embd / n_head (or llama.attention.key_length) */
    float eps;            /* llama.attention.layer_norm_rms_epsilon (1e-5) */
    lyra_rope rope;       /* n_rot (rope.dimension_count, default head_dim),
                             freq_base (10000), freq_scale (1/linear factor),
                             freq_factors (rope_freqs.weight or NULL) */
} lyra_llama_hparams;

/* The nine weights of one transformer block (blk.N.*). */
typedef struct lyra_llama_layer {
    lyra_weight attn_norm; /* [n_embd] F32 */
    lyra_weight wq;        /* [n_head*head_dim rows][n_embd] */
    lyra_weight wk;        /* [n_head_kv*head_dim][n_embd] */
    lyra_weight wv;        /* [n_head_kv*head_dim][n_embd] */
    lyra_weight wo;        /* [n_embd][n_head*head_dim] */
    lyra_weight ffn_norm;  /* [n_embd] F32 */
    lyra_weight w_gate;    /* [n_ff][n_embd] */
    lyra_weight w_up;      /* [n_ff][n_embd] */
    lyra_weight w_down;    /* [n_embd][n_ff] */
} lyra_llama_layer;

typedef struct lyra_llama {
    lyra_llama_hparams hp;  /* hyper-parameters */
    lyra_weight tok_embd;   /* [n_vocab][n_embd] */
    lyra_weight output_norm;/* [n_embd] F32 */
    lyra_weight output;     /* [n_vocab][n_embd]; a copy of tok_embd when tied */
    int tied;               /* 1: output.weight absent, the head uses tok_embd */
    lyra_weight rope_freqs; /* [head_dim/2] F32 when has_rope_freqs */
    int has_rope_freqs;     /* rope_freqs.weight present */
    lyra_llama_layer *layers; /* [n_layer] */
} lyra_llama;

/* Read and validate the architecture of g (which must outlive the result).
 * Errors are LYRA_ERR_INPUT naming the file and the key or tensor (with the
 * expected and found shape or type). Weight data pointers are the mapping. */
int lyra_llama_load(const lyra_gguf *g, lyra_llama **out, lyra_error *err);
void lyra_llama_free(lyra_llama *m);

/* ---- modules ---- */
typedef enum lyra_module_kind {
    LYRA_MODULE_EMBED = 0, LYRA_MODULE_LAYER = 1, LYRA_MODULE_NORM = 2, LYRA_MODULE_HEAD = 3
} lyra_module_kind;

int lyra_llama_n_modules(const lyra_llama *m); /* n_layer + 3 */
/* Kind of module i; *layer (may be NULL) gets the layer index or -1. */
lyra_module_kind lyra_llama_module_kind(const lyra_llama *m, int i, int *layer);
/* Canonical name ("model.layers.3"); returns snprintf's count. */
int lyra_llama_module_name(const lyra_llama *m, int i, char *buf, size_t cap);
/* Pointers to the weights module i reads (at most 9); returns the count. The
 * tied head returns the tok_embd copy in m->output. */
int lyra_llama_module_weights(lyra_llama *m, int i, lyra_weight **w);

/* ---- scratch ----
 * A device's activations for up to n_batch tokens. Buffers a device does not
 * need (no layer / no head on it) are NULL. */
typedef struct lyra_llama_buffers {
    float *x;       /* [n_batch][n_embd] hidden state */
    float *xb;      /* [n_batch][n_embd] normed input / projection output */
    float *q;       /* [n_batch][n_head*head_dim] */
    float *k;       /* [n_batch][n_head_kv*head_dim] */
    float *v;       /* [n_batch][n_head_kv*head_dim] */
    float *att;     /* [n_batch][n_head*head_dim] attention output */
    float *hb;      /* [n_batch][n_ff] gate, then swiglu */
    float *hb2;     /* [n_batch][n_ff] up */
    float *logits;  /* [n_batch][n_vocab] on the head's device */
} lyra_llama_buffers;

/* Bytes of the buffers for n_batch tokens on a device holding layers
 * (has_layers) and/or the head (has_head); carve lays them out in base (64-byte
 * aligned pieces, in that same size). */
size_t lyra_llama_buffers_bytes(const lyra_llama *m, int n_batch, int has_layers, int has_head);
void lyra_llama_buffers_carve(const lyra_llama *m, int n_batch, int has_layers, int has_head,
                              void *base, lyra_llama_buffers *b);
/* Largest matmul work size on device d for the modules [i0, i1) at n_batch tokens. */
size_t lyra_llama_work_bytes(const lyra_llama *m, lyra_device *d, int i0, int i1, int n_batch);

/* ---- forward ---- */
typedef struct lyra_llama_run {
    int n_dev;                           /* devices in use */
    lyra_device *dev[LYRA_MAX_DEVICES];  /* [n_dev] */
    lyra_llama_buffers buf[LYRA_MAX_DEVICES]; /* [n_dev] scratch per device */
    const int *module_dev;               /* [n_modules] device index per module */
    const lyra_kv_view *kv;              /* [n_layer] each layer's cache (on its device) */
    int n_batch;                         /* the most tokens per forward call */
    int32_t *pos;                        /* host [n_batch] positions */
    float *stage;                        /* host [n_batch][n_embd] for device changes,
                                            NULL with one device */
    const void *const *rope_freqs;       /* [n_dev] rope_freqs.weight on each device
                                            (NULL: hp.rope.freq_factors everywhere) */
    void (*after_module)(void *user, int module); /* called after each module ran
                                            (the disk tier releases its pages), or NULL */
    void *user;                          /* for after_module */
} lyra_llama_run;

/* Run ntok (<= n_batch) tokens at positions pos0.. (the KV cache must have
 * room). The logits of the last n_out tokens (0 <= n_out <= ntok; 0 skips the
 * norm and head) are written to logits_host [n_out][n_vocab]. */
int lyra_llama_forward(const lyra_llama *m, const lyra_llama_run *r, const int32_t *tokens,
                       int ntok, int32_t pos0, int n_out, float *logits_host, lyra_error *err);

#endif
