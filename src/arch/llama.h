/* llama.h: the Llama family of architectures: Llama (and Mistral), Qwen2,
 * Qwen3, Phi-2, Phi-3, Gemma, Gemma 2, Gemma 3 (GGUF general.architecture
 * llama, qwen2, qwen3, phi2, phi3, gemma, gemma2, gemma3). Each is Llama plus
 * a description of its differences (lyra_arch_desc: norm kind, biases,
 * fused projections, rope style, activation, parallel block, post norms,
 * Q/K norms, soft-caps, sliding windows, embedding scale), read once from the
 * file with the hyper-parameters and weights (every name, shape and type
 * validated, tensor names as llama.cpp's converter writes them). One module
 * list for the runtime to place on devices, and one forward pass over device
 * ops (device.h): a loop over modules, one layer_forward with branches on the
 * description.
 *
 * Modules, in forward order, with their canonical names (Hugging Face's;
 * device maps also take each architecture's own spellings, plan/plan.h):
 *   0            model.embed_tokens   token_embd.weight (get_rows)
 *   1..n_layer   model.layers.N       blk.N.* (attention + feed-forward)
 *   n_layer+1    model.norm           output_norm.weight (+ .bias: Phi-2's
 *                                     model.final_layernorm)
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
/* The most weights one module reads (lyra_llama_module_weights). */
#define LYRA_MODULE_MAX_WEIGHTS 24

/* One weight tensor as the forward pass uses it. */
typedef struct lyra_weight {
    const char *name;     /* GGUF tensor name (owned by the gguf) */
    lyra_type type;       /* storage type */
    int64_t cols;         /* ne[0]: elements per row (contiguous) */
    int64_t rows;         /* ne[1] (1 for vectors) */
    const void *data;     /* device pointer: the mapping while on the CPU */
    uint64_t n_bytes;     /* bytes of the tensor */
} lyra_weight;

/* How a layer normalizes: RMSNorm (Llama) or LayerNorm with bias (Phi-2). */
typedef enum lyra_norm_kind { LYRA_NORM_RMS = 0, LYRA_NORM_LAYER = 1 } lyra_norm_kind;
/* The feed-forward: silu(gate) * up (Llama), gelu(gate) * up (Gemma), or
 * gelu(up) without a gate (Phi-2); then down. */
typedef enum lyra_ffn_kind { LYRA_FFN_SWIGLU = 0, LYRA_FFN_GEGLU = 1, LYRA_FFN_GELU = 2 } lyra_ffn_kind;

/* What an architecture of the family does differently from Llama, read once
 * from the file (general.architecture, its keys and which tensors exist).
 * All zero (and attn_scale 1/sqrt(head_dim)) is Llama. */
typedef struct lyra_arch_desc {
    char name[16];        /* general.architecture: "llama", "qwen2", "phi2", ... */
    lyra_norm_kind norm;  /* layer and output norms */
    lyra_ffn_kind ffn;    /* feed-forward activation */
    int parallel;         /* 1: x + attn(norm(x)) + ffn(norm(x)) from one norm (Phi-2) */
    int post_norms;       /* 1: RMSNorm of the attention and FFN outputs before the residual
                             adds (post_attention_norm, post_ffw_norm: Gemma 2/3) */
    int qk_norm;          /* 1: per-head RMSNorm of Q and K before rope (attn_q_norm,
                             attn_k_norm: Qwen3, Gemma 3) */
    int fused_qkv;        /* 1: attn_qkv.weight, rows Q then K then V (Phi-2/3) */
    int fused_gate_up;    /* 1: ffn_up.weight holds [2*n_ff] rows, gate then up (Phi-3) */
    int biases;           /* 1: some linear layer has a .bias (Phi-2, Qwen2, ...) */
    float embed_scale;    /* > 0: embeddings multiplied by it (Gemma: sqrt(n_embd)) */
    float attn_scale;     /* multiplies q.k (1/sqrt(head_dim); Gemma 2/3 27B:
                             1/sqrt(n_embd/n_head); times rope.scaling.attn_factor^2) */
    float attn_softcap;   /* > 0: attention logit soft-cap (attn_logit_softcapping, Gemma 2) */
    float final_softcap;  /* > 0: final logit soft-cap (final_logit_softcapping, Gemma 2) */
    int32_t window;       /* > 0: sliding window of the windowed layers
                             (attention.sliding_window; Mistral, Gemma 2/3) */
    int32_t swa_period;   /* 0: every layer windowed (when window > 0); n > 0: layer l is
                             windowed when l % n < n - 1 (Gemma 2: 2, Gemma 3: 6) */
    int rope_swa;         /* 1: windowed layers use hp.rope_swa (Gemma 3: base 10000,
                             no scaling) instead of hp.rope */
} lyra_arch_desc;

typedef struct lyra_llama_hparams {
    int32_t n_vocab;      /* vocabulary size */
    int32_t n_ctx_train;  /* llama.context_length */
    int32_t n_embd;       /* llama.embedding_length */
    int32_t n_layer;      /* llama.block_count */
    int32_t n_ff;         /* llama.feed_forward_length */
    int32_t n_head;       /* llama.attention.head_count */
    int32_t n_head_kv;    /* llama.attention.head_count_kv (default n_head) */
    int32_t head_dim;     /* n_embd / n_head (or llama.attention.key_length) */
    float eps;            /* llama.attention.layer_norm_rms_epsilon (1e-5); LayerNorm:
                             attention.layer_norm_epsilon */
    lyra_rope rope;       /* n_rot (rope.dimension_count, default head_dim),
                             freq_base (10000), freq_scale (1/linear factor),
                             freq_factors (rope_freqs.weight or NULL), neox */
    lyra_rope rope_swa;   /* windowed layers' rope when desc.rope_swa */
    int32_t n_ctx_orig;   /* rope.scaling.original_context_length (default n_ctx_train):
                             Phi-3 uses rope_factors_long above it */
} lyra_llama_hparams;

/* The weights of one transformer block (blk.N.*). A weight the block does
 * not have has name NULL (and data NULL). Vectors (norms, biases) are F32. */
typedef struct lyra_llama_layer {
    lyra_weight attn_norm; /* [n_embd] */
    lyra_weight attn_norm_b; /* [n_embd] LayerNorm bias (Phi-2) */
    lyra_weight wq;        /* [n_head*head_dim rows][n_embd] (not with fused_qkv) */
    lyra_weight wk;        /* [n_head_kv*head_dim][n_embd] */
    lyra_weight wv;        /* [n_head_kv*head_dim][n_embd] */
    lyra_weight wqkv;      /* [Q+2*KV][n_embd] attn_qkv (fused_qkv) */
    lyra_weight bq, bk, bv;/* [Q], [KV], [KV] biases (optional) */
    lyra_weight bqkv;      /* [Q+2*KV] attn_qkv.bias (fused_qkv, optional) */
    lyra_weight q_norm;    /* [head_dim] attn_q_norm (qk_norm) */
    lyra_weight k_norm;    /* [head_dim] attn_k_norm (qk_norm) */
    lyra_weight wo;        /* [n_embd][n_head*head_dim] */
    lyra_weight bo;        /* [n_embd] (optional) */
    lyra_weight post_attn_norm; /* [n_embd] post_attention_norm (post_norms) */
    lyra_weight ffn_norm;  /* [n_embd] (not with parallel) */
    lyra_weight w_gate;    /* [n_ff][n_embd] (not with fused_gate_up or FFN_GELU) */
    lyra_weight w_up;      /* [n_ff][n_embd]; [2*n_ff] with fused_gate_up */
    lyra_weight w_down;    /* [n_embd][n_ff] */
    lyra_weight b_gate, b_up, b_down; /* [n_ff], [n_ff], [n_embd] biases (optional) */
    lyra_weight post_ffn_norm; /* [n_embd] post_ffw_norm (post_norms) */
} lyra_llama_layer;

typedef struct lyra_llama {
    lyra_arch_desc desc;    /* what differs from Llama */
    lyra_llama_hparams hp;  /* hyper-parameters */
    lyra_weight tok_embd;   /* [n_vocab][n_embd] */
    lyra_weight output_norm;/* [n_embd] F32 */
    lyra_weight output_norm_b; /* [n_embd] LayerNorm bias (Phi-2), else name NULL */
    lyra_weight output;     /* [n_vocab][n_embd]; a copy of tok_embd when tied */
    lyra_weight output_b;   /* [n_vocab] output.bias (Phi-2), else name NULL */
    int tied;               /* 1: output.weight absent, the head uses tok_embd */
    lyra_weight rope_freqs; /* [n_rot/2] F32 when has_rope_freqs: rope_freqs.weight, or
                               Phi-3's rope_factors_long/short as chosen for the context */
    int has_rope_freqs;     /* rope_freqs.weight present (or rope factors) */
    lyra_weight rope_long, rope_short; /* rope_factors_long/short (Phi-3), else name NULL */
    lyra_llama_layer *layers; /* [n_layer] */
} lyra_llama;

/* The architectures lyra runs, as one string ("llama, qwen2, ..."). */
const char *lyra_llama_arch_names(void);

/* Read and validate the architecture of g (which must outlive the result).
 * Errors are LYRA_ERR_INPUT naming the file and the key or tensor (with the
 * expected and found shape or type). Weight data pointers are the mapping. */
int lyra_llama_load(const lyra_gguf *g, lyra_llama **out, lyra_error *err);
void lyra_llama_free(lyra_llama *m);

/* Choose the rope factors for a context of n_ctx positions (Phi-3:
 * rope_factors_long when n_ctx > hp.n_ctx_orig, else rope_factors_short, as
 * llama.cpp does). Call before the weights are placed; no-op without them. */
void lyra_llama_set_context(lyra_llama *m, int32_t n_ctx);

/* The sliding window of layer l (0: the layer attends to every position). */
int32_t lyra_llama_layer_window(const lyra_llama *m, int l);
/* KV chunks of chunk_len positions a windowed layer keeps as a ring for
 * batches of n_batch tokens: ceil((window + n_batch - 1) / chunk_len) + 1
 * (device.h, lyra_kv_view.n_ring). */
int32_t lyra_llama_ring_chunks(int32_t window, int32_t n_batch, int32_t chunk_len);

/* ---- modules ---- */
typedef enum lyra_module_kind {
    LYRA_MODULE_EMBED = 0, LYRA_MODULE_LAYER = 1, LYRA_MODULE_NORM = 2, LYRA_MODULE_HEAD = 3
} lyra_module_kind;

int lyra_llama_n_modules(const lyra_llama *m); /* n_layer + 3 */
/* Kind of module i; *layer (may be NULL) gets the layer index or -1. */
lyra_module_kind lyra_llama_module_kind(const lyra_llama *m, int i, int *layer);
/* Canonical name ("model.layers.3"); returns snprintf's count. */
int lyra_llama_module_name(const lyra_llama *m, int i, char *buf, size_t cap);
/* Pointers to the weights module i reads (at most LYRA_MODULE_MAX_WEIGHTS);
 * returns the count. The tied head returns the tok_embd copy in m->output. */
int lyra_llama_module_weights(lyra_llama *m, int i, lyra_weight **w);
/* The name of an optional device op module i needs that d lacks (NULL ops
 * pointer: "layernorm", "add_bias", "gelu", "geglu", "scale", "softcap"), or
 * NULL when d can run it. The runtime refuses such a placement. */
const char *lyra_llama_module_missing_op(const lyra_llama *m, int i, const lyra_device *d);

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
    float *xb2;     /* [n_batch][n_embd] second projection output (parallel, post_norms) */
    float *kn;      /* [n_batch][n_head_kv*head_dim] normed K (qk_norm) */
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
    const int *module_rank;              /* [n_modules] the MPI rank running each module
                                            (dist/dist.h), or NULL: all here. The hidden
                                            state goes to the next rank where the rank
                                            changes; the head's rank sends the logits to
                                            rank 0. A module of another rank is skipped. */
    int rank;                            /* this process's rank (with module_rank) */
    struct lyra_dist_req *defer;         /* rank 0 with module_rank: when set, the logits'
                                            receive is only posted here (the caller waits:
                                            lyra_dist_wait), so that rank 0 goes on with
                                            the next micro-batch (docs/distributed.md) */
} lyra_llama_run;

/* Run ntok (<= n_batch) tokens at positions pos0.. (the KV cache must have
 * room). The logits of the last n_out tokens (0 <= n_out <= ntok; 0 skips the
 * norm and head) are written to logits_host [n_out][n_vocab] (with
 * module_rank: on rank 0 only). Every rank calls it with the same arguments. */
int lyra_llama_forward(const lyra_llama *m, const lyra_llama_run *r, const int32_t *tokens,
                       int ntok, int32_t pos0, int n_out, float *logits_host, lyra_error *err);

/* A run of consecutive tokens of one sequence in a batch: tokens [t0, t0 +
 * ntok) at positions pos0.., with that sequence's cache kv ([n_layer] views). */
typedef struct lyra_llama_seg {
    int t0, ntok;
    int32_t pos0;
    const lyra_kv_view *kv;
} lyra_llama_seg;

/* One forward pass over ntok (<= n_batch) tokens of several sequences: the
 * matmuls, norms and rope run over the whole batch (each weight read once),
 * KV stores and attention per segment (a token attends to its own
 * sequence's cache only). Segments cover [0, ntok) in order; segments of one
 * sequence come in position order. The logits of the n_out tokens out_rows
 * (ascending batch indices) go to logits_host [n_out][n_vocab]. Every row's
 * arithmetic is the same whatever else is in the batch (the kernels' per-row
 * order does not depend on the row count), so a sequence's logits are
 * bitwise those of lyra_llama_forward over it alone. */
int lyra_llama_forward_batch(const lyra_llama *m, const lyra_llama_run *r, const int32_t *tokens,
                             int ntok, const lyra_llama_seg *seg, int n_seg, const int32_t *out_rows,
                             int n_out, float *logits_host, lyra_error *err);

#endif
