/* cmd_mkmodel.c: `lyra mkmodel`: a random-weight GGUF of one of the
 * architectures lyra runs (llama, mistral, phi2, qwen2, qwen3, gemma, gemma2,
 * gemma3, phi3), with the keys and tensor names llama.cpp's converter writes
 * for it; byte-identical for the same flags.
 *
 * Weights are uniform in [-a, a] with a = 0.02 * sqrt(3) (standard deviation
 * 0.02, like GPT-2's initialisation; with normalised inputs a layer's
 * outputs stay O(1)); biases the same; norm weights 1 for Llama (and
 * Mistral), 1 plus such noise for the others (Gemma stores its norms as
 * 1 + w, so a random Gemma norm is near 1 too). Each row has its own PRNG
 * stream (lyra's xoshiro256**, seeded from --seed, the tensor name and the
 * row), so rows are produced in parallel and the file does not depend on the
 * thread count. Tensors are made one at a time and staged in a scratch file
 * (store.h): a 7B model never sits in memory. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "core/rng.h"
#include "format/gguf.h"
#include "mkvocab.h"
#include "token/tokenizer.h"
#include "store.h"

const char cmd_mkmodel_usage[] =
    "usage: lyra mkmodel -o OUT [--arch A] [--preset P] [--dim N] [--ffn N]\n"
    "                    [--layers N] [--heads N] [--kv-heads N] [--vocab N]\n"
    "                    [--ctx N] [--head-dim N] [--rope-dim N] [--rope-base F]\n"
    "                    [--rope-scale F] [--window N] [--attn-softcap F]\n"
    "                    [--final-softcap F] [--fused-qkv] [--type T]\n"
    "                    [--seed S] [--tied] [--untied] [--vocab-from FILE]\n"
    "                    [--threads N]\n"
    "       lyra mkmodel --list-presets\n"
    "\n"
    "Write a GGUF with random weights (for tests and benchmarks), with the\n"
    "metadata keys and tensor names llama.cpp's converter writes for the\n"
    "architecture. The same flags give a byte-identical file, whatever --threads.\n"
    "\n"
    "  -o, --output OUT    the GGUF file to write (required)\n"
    "  --arch A            llama (default), mistral (llama with a sliding\n"
    "                      window), phi2, qwen2, qwen3, gemma, gemma2, gemma3,\n"
    "                      phi3\n"
    "  --preset P          the architecture's shapes (--list-presets prints them\n"
    "                      all); tiny is the default, 1b a 1B-class model of\n"
    "                      every architecture (for benchmarks). For llama:\n"
    "                      tiny: dim 256, ffn 768, 4 layers, 8 heads,\n"
    "                        4 kv heads, vocab 512, ctx 2048\n"
    "                      1.1b (or 1b): dim 2048, ffn 5632, 22 layers,\n"
    "                        32 heads, 4 kv heads, vocab 32000, ctx 2048\n"
    "                      7b: dim 4096, ffn 11008, 32 layers, 32 heads,\n"
    "                        32 kv heads, vocab 32000, ctx 4096\n"
    "  --dim --ffn --layers --heads --kv-heads --vocab --ctx N\n"
    "                      override the preset's value\n"
    "  --head-dim N        attention.key_length (qwen3, gemma*: the head size,\n"
    "                      heads x head-dim may differ from dim; llama,\n"
    "                      mistral, qwen2: written only when given)\n"
    "  --rope-dim N        rope.dimension_count: rotary dimensions per head\n"
    "                      (llama, mistral, phi2, phi3; partial rotary when\n"
    "                      below the head size)\n"
    "  --rope-base F       rope.freq_base (llama, mistral, qwen2, qwen3, gemma3,\n"
    "                      phi3)\n"
    "  --rope-scale F      linear rope scaling factor (llama, mistral, gemma3)\n"
    "  --window N          attention.sliding_window (mistral, gemma2, gemma3,\n"
    "                      phi3; phi3 0: none)\n"
    "  --attn-softcap F, --final-softcap F\n"
    "                      gemma2's logit soft-capping (default 50 and 30)\n"
    "  --fused-qkv         phi2: one attn_qkv tensor instead of attn_q/k/v\n"
    "                      (phi3 always has it)\n"
    "  --type T            F32 (default), F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K:\n"
    "                      for 2-D weights whose rows are a multiple of the\n"
    "                      type's block size (others and 1-D tensors stay F32)\n"
    "  --seed S            weight seed (default 0)\n"
    "  --tied, --untied    without / with output.weight (tied: the classifier\n"
    "                      is token_embd); the default is the preset's (gemma*\n"
    "                      always tied, phi2 and phi3 never)\n"
    "  --vocab-from FILE   copy the tokenizer (all tokenizer.* keys) from FILE;\n"
    "                      the vocabulary size then comes from FILE\n"
    "  -t, --threads N     threads for generating/quantizing (default: physical\n"
    "                      cores; does not change the output)\n"
    "  --list-presets      print every architecture's presets and exit\n"
    "  -q, -v              quieter / more verbose stderr\n"
    "\n"
    "Without --vocab-from the tokenizer is a generated byte-level BPE\n"
    "(tokenizer.ggml.model gpt2, pre default): ids 0..255 are the bytes (as\n"
    "GPT-2's byte-to-unicode strings), 256 <s> (BOS), 257 </s> (EOS), then one\n"
    "token per merge, learned from a built-in English paragraph and completed\n"
    "with synthetic merges; --vocab must be >= 258 (phi2, qwen2, qwen3: no BOS\n"
    "added, as their converters write). Weights and biases: uniform with\n"
    "standard deviation 0.02; norm weights 1 (llama, mistral) or 1 + the same\n"
    "noise (the others).\n";

/* Model shape: a preset, then the flags' overrides. */
typedef struct mk_shape {
    int64_t dim;      /* embedding length */
    int64_t ffn;      /* feed-forward length */
    int64_t layers;   /* blocks */
    int64_t heads;    /* attention heads */
    int64_t kv_heads; /* KV heads */
    int64_t vocab;    /* vocabulary size */
    int64_t ctx;      /* context_length */
    int64_t head_dim; /* attention.key_length; 0: dim / heads (key not written) */
    int64_t rope_dim; /* rope.dimension_count; 0: the head size */
    int64_t window;   /* attention.sliding_window */
    float rope_base;  /* rope.freq_base */
    float rope_scale; /* linear rope scaling factor; 0: none */
    float attn_cap;   /* attn_logit_softcapping */
    float final_cap;  /* final_logit_softcapping */
    int tied;         /* no output.weight */
} mk_shape;

/* What an architecture's files have (mk_arch.f). */
enum {
    MK_VOCAB_KEY = 1u << 0,   /* {arch}.vocab_size (llama.cpp's LlamaModel) */
    MK_ROPE_DIM = 1u << 1,    /* rope.dimension_count written */
    MK_ROPE_BASE = 1u << 2,   /* rope.freq_base written */
    MK_KEY_LEN = 1u << 3,     /* attention.key_length/value_length always */
    MK_KEY_LEN_OPT = 1u << 4, /* ... only when --head-dim is given */
    MK_LAYERNORM = 1u << 5,   /* LayerNorm (weight + bias), layer_norm_epsilon */
    MK_BIAS_QKV = 1u << 6,    /* Q/K/V biases */
    MK_BIAS_ALL = 1u << 7,    /* biases on every linear layer and on output */
    MK_FUSED = 1u << 8,       /* attn_qkv always */
    MK_FUSED_OPT = 1u << 9,   /* attn_qkv with --fused-qkv */
    MK_GATE = 1u << 10,       /* gated MLP: ffn_gate */
    MK_GATE_UP = 1u << 11,    /* gate and up fused in ffn_up [dim, 2 ffn] */
    MK_FFN_NORM = 1u << 12,   /* ffn_norm (phi2's parallel block has none) */
    MK_QK_NORM = 1u << 13,    /* attn_q_norm, attn_k_norm [head size] */
    MK_POST_NORM = 1u << 14,  /* post_attention_norm, post_ffw_norm */
    MK_WINDOW = 1u << 15,     /* attention.sliding_window */
    MK_SOFTCAP = 1u << 16,    /* attn_/final_logit_softcapping */
    MK_ROPE_SCALE = 1u << 17, /* rope.scaling.type linear + factor allowed */
    MK_ORIG_CTX = 1u << 18,   /* rope.scaling.original_context_length */
    MK_NO_BOS = 1u << 19,     /* tokenizer.ggml.add_bos_token false */
    MK_NORM_NOISE = 1u << 20, /* norm weights 1 + noise, not exactly 1 */
    MK_TIED_ONLY = 1u << 21,  /* never an output.weight */
    MK_UNTIED_ONLY = 1u << 22 /* always an output.weight */
};

typedef struct mk_preset {
    const char *name; /* --preset value */
    mk_shape s;       /* its shape */
} mk_preset;

typedef struct mk_arch {
    const char *name;         /* --arch value */
    const char *gguf;         /* general.architecture, the keys' prefix */
    unsigned f;               /* MK_* */
    float eps;                /* the norm epsilon */
    const mk_preset *presets; /* [0] is tiny */
    int n_presets;
} mk_arch;

/* Presets: Llama's as before; the others after the published models (their
 * config.json), or, where the family has no 1B-class member, its widths with
 * fewer layers. Llama's rope base is 10000; Qwen's and Gemma 3's 1e6. */
#define P(n, d, f, l, h, kv, v, c, hd, rd, w, rb, rs, tied) \
    {n, {d, f, l, h, kv, v, c, hd, rd, w, rb, rs, 0.0f, 0.0f, tied}}
static const mk_preset k_llama[] = {
    P("tiny", 256, 768, 4, 8, 4, 512, 2048, 0, 0, 0, 10000.0f, 0.0f, 0),
    P("1.1b", 2048, 5632, 22, 32, 4, 32000, 2048, 0, 0, 0, 10000.0f, 0.0f, 0), /* TinyLlama */
    P("1b", 2048, 5632, 22, 32, 4, 32000, 2048, 0, 0, 0, 10000.0f, 0.0f, 0),
    P("7b", 4096, 11008, 32, 32, 32, 32000, 4096, 0, 0, 0, 10000.0f, 0.0f, 0),
};
static const mk_preset k_mistral[] = {
    P("tiny", 256, 768, 4, 8, 4, 512, 2048, 0, 0, 64, 10000.0f, 0.0f, 0),
    P("1b", 2048, 5632, 22, 32, 4, 32000, 2048, 0, 0, 1024, 10000.0f, 0.0f, 0),
    P("7b", 4096, 14336, 32, 32, 8, 32000, 32768, 0, 0, 4096, 10000.0f, 0.0f, 0), /* Mistral 7B v0.1 */
};
static const mk_preset k_phi2[] = {
    P("tiny", 256, 1024, 4, 8, 8, 512, 2048, 0, 16, 0, 0.0f, 0.0f, 0),
    P("1b", 2048, 8192, 24, 32, 32, 51200, 2048, 0, 32, 0, 0.0f, 0.0f, 0),     /* Phi-1.5 */
    P("2.7b", 2560, 10240, 32, 32, 32, 51200, 2048, 0, 32, 0, 0.0f, 0.0f, 0),  /* Phi-2 */
};
static const mk_preset k_qwen2[] = {
    P("tiny", 256, 768, 4, 8, 2, 512, 2048, 0, 0, 0, 1e6f, 0.0f, 1),
    P("0.5b", 896, 4864, 24, 14, 2, 151936, 32768, 0, 0, 0, 1e6f, 0.0f, 1),    /* Qwen2-0.5B */
    P("1b", 1536, 8960, 28, 12, 2, 151936, 32768, 0, 0, 0, 1e6f, 0.0f, 1),     /* Qwen2-1.5B */
    P("7b", 3584, 18944, 28, 28, 4, 152064, 32768, 0, 0, 0, 1e6f, 0.0f, 0),    /* Qwen2-7B */
};
static const mk_preset k_qwen3[] = {
    P("tiny", 256, 768, 4, 8, 4, 512, 2048, 64, 0, 0, 1e6f, 0.0f, 1),
    P("0.6b", 1024, 3072, 28, 16, 8, 151936, 40960, 128, 0, 0, 1e6f, 0.0f, 1), /* Qwen3-0.6B */
    P("1b", 2048, 6144, 28, 16, 8, 151936, 40960, 128, 0, 0, 1e6f, 0.0f, 1),   /* Qwen3-1.7B */
};
static const mk_preset k_gemma[] = {
    P("tiny", 256, 768, 4, 8, 1, 512, 2048, 64, 0, 0, 0.0f, 0.0f, 1),
    P("1b", 2048, 16384, 6, 8, 1, 256000, 8192, 256, 0, 0, 0.0f, 0.0f, 1),     /* Gemma 2B, 6 layers */
    P("2b", 2048, 16384, 18, 8, 1, 256000, 8192, 256, 0, 0, 0.0f, 0.0f, 1),    /* Gemma 2B */
};
#define G2(n, d, f, l, h, kv, v, c, hd, w) {n, {d, f, l, h, kv, v, c, hd, 0, w, 0.0f, 0.0f, 50.0f, 30.0f, 1}}
static const mk_preset k_gemma2[] = {
    G2("tiny", 256, 768, 4, 8, 4, 512, 2048, 64, 64),
    G2("1b", 2304, 9216, 6, 8, 4, 256000, 8192, 256, 4096),  /* Gemma 2 2B, 6 layers */
    G2("2b", 2304, 9216, 26, 8, 4, 256000, 8192, 256, 4096), /* Gemma 2 2B */
};
#undef G2
static const mk_preset k_gemma3[] = {
    P("tiny", 256, 768, 6, 4, 1, 512, 2048, 64, 0, 64, 1e6f, 0.0f, 1),
    P("270m", 640, 2048, 18, 4, 1, 262144, 32768, 256, 0, 512, 1e6f, 0.0f, 1),    /* Gemma 3 270M */
    P("1b", 1152, 6912, 26, 4, 1, 262144, 32768, 256, 0, 512, 1e6f, 0.0f, 1),     /* Gemma 3 1B */
    P("4b", 2560, 10240, 34, 8, 4, 262208, 131072, 256, 0, 1024, 1e6f, 8.0f, 1),  /* Gemma 3 4B */
};
static const mk_preset k_phi3[] = {
    P("tiny", 256, 768, 4, 8, 8, 512, 2048, 0, 0, 64, 10000.0f, 0.0f, 0),
    P("1b", 3072, 8192, 8, 32, 32, 32064, 4096, 0, 0, 2047, 10000.0f, 0.0f, 0),   /* Phi-3 mini, 8 layers */
    P("3.8b", 3072, 8192, 32, 32, 32, 32064, 4096, 0, 0, 2047, 10000.0f, 0.0f, 0), /* Phi-3 mini 4k */
};
#undef P

#define N_OF(a) (int)(sizeof a / sizeof a[0])
/* Llama's features, and Gemma's (which Gemma 2 and 3 extend) */
#define MK_LLAMA (MK_VOCAB_KEY | MK_ROPE_DIM | MK_ROPE_BASE | MK_KEY_LEN_OPT | MK_GATE | MK_FFN_NORM | MK_ROPE_SCALE)
#define MK_GEMMA (MK_KEY_LEN | MK_GATE | MK_FFN_NORM | MK_NORM_NOISE | MK_TIED_ONLY)
static const mk_arch k_archs[] = {
    {"llama", "llama", MK_LLAMA, 1e-5f, k_llama, N_OF(k_llama)},
    {"mistral", "llama", MK_LLAMA | MK_WINDOW, 1e-5f, k_mistral, N_OF(k_mistral)},
    {"phi2", "phi2",
     MK_ROPE_DIM | MK_LAYERNORM | MK_BIAS_QKV | MK_BIAS_ALL | MK_FUSED_OPT | MK_NO_BOS | MK_NORM_NOISE |
         MK_UNTIED_ONLY,
     1e-5f, k_phi2, N_OF(k_phi2)},
    {"qwen2", "qwen2", MK_ROPE_BASE | MK_KEY_LEN_OPT | MK_BIAS_QKV | MK_GATE | MK_FFN_NORM | MK_NO_BOS | MK_NORM_NOISE,
     1e-6f, k_qwen2, N_OF(k_qwen2)},
    {"qwen3", "qwen3", MK_ROPE_BASE | MK_KEY_LEN | MK_GATE | MK_FFN_NORM | MK_QK_NORM | MK_NO_BOS | MK_NORM_NOISE,
     1e-6f, k_qwen3, N_OF(k_qwen3)},
    {"gemma", "gemma", MK_GEMMA, 1e-6f, k_gemma, N_OF(k_gemma)},
    {"gemma2", "gemma2", MK_GEMMA | MK_POST_NORM | MK_WINDOW | MK_SOFTCAP, 1e-6f, k_gemma2, N_OF(k_gemma2)},
    {"gemma3", "gemma3", MK_GEMMA | MK_ROPE_BASE | MK_QK_NORM | MK_POST_NORM | MK_WINDOW | MK_ROPE_SCALE, 1e-6f,
     k_gemma3, N_OF(k_gemma3)},
    {"phi3", "phi3",
     MK_ROPE_DIM | MK_ROPE_BASE | MK_FUSED | MK_GATE | MK_GATE_UP | MK_FFN_NORM | MK_WINDOW | MK_ORIG_CTX |
         MK_NORM_NOISE | MK_UNTIED_ONLY,
     1e-5f, k_phi3, N_OF(k_phi3)},
};
#undef MK_LLAMA
#undef MK_GEMMA
#define MK_ARCH_NAMES "llama, mistral, phi2, qwen2, qwen3, gemma, gemma2, gemma3 or phi3"

/* Everything mkmodel's flags set. */
typedef struct mk_opts {
    const char *out;        /* -o */
    const mk_arch *arch;    /* --arch */
    const char *preset;     /* --preset */
    mk_shape shape;         /* after preset + overrides */
    lyra_type type;         /* --type */
    uint64_t seed;          /* --seed */
    int fused;              /* --fused-qkv (or the architecture's) */
    const char *vocab_from; /* --vocab-from */
    int32_t threads;        /* --threads */
    int list;               /* --list-presets */
} mk_opts;

/* The integer flags that override a preset's field, and the architecture
 * feature that allows them (0: every architecture). */
static const struct {
    const char *flag;
    size_t off;     /* offsetof(mk_shape, field) */
    int64_t min;    /* smallest value */
    unsigned need;  /* MK_* any of which the architecture must have */
} k_int_flags[] = {
    {"--dim", offsetof(mk_shape, dim), 1, 0},
    {"--ffn", offsetof(mk_shape, ffn), 1, 0},
    {"--layers", offsetof(mk_shape, layers), 1, 0},
    {"--heads", offsetof(mk_shape, heads), 1, 0},
    {"--kv-heads", offsetof(mk_shape, kv_heads), 1, 0},
    {"--vocab", offsetof(mk_shape, vocab), 1, 0},
    {"--ctx", offsetof(mk_shape, ctx), 1, 0},
    {"--head-dim", offsetof(mk_shape, head_dim), 1, MK_KEY_LEN | MK_KEY_LEN_OPT},
    {"--rope-dim", offsetof(mk_shape, rope_dim), 1, MK_ROPE_DIM},
    {"--window", offsetof(mk_shape, window), 0, MK_WINDOW},
};
#define MK_N_INT N_OF(k_int_flags)
enum { MK_I_DIM, MK_I_FFN, MK_I_LAYERS, MK_I_HEADS, MK_I_KV, MK_I_VOCAB, MK_I_CTX, MK_I_HEAD_DIM, MK_I_ROPE_DIM };

/* The float flags. */
static const struct {
    const char *flag;
    size_t off;     /* offsetof(mk_shape, field) */
    unsigned need;  /* MK_* */
} k_float_flags[] = {
    {"--rope-base", offsetof(mk_shape, rope_base), MK_ROPE_BASE},
    {"--rope-scale", offsetof(mk_shape, rope_scale), MK_ROPE_SCALE},
    {"--attn-softcap", offsetof(mk_shape, attn_cap), MK_SOFTCAP},
    {"--final-softcap", offsetof(mk_shape, final_cap), MK_SOFTCAP},
};
#define MK_N_FLOAT N_OF(k_float_flags)

/* The head size (key_length) of shape s. */
static int64_t head_dim(const mk_shape *s) { return s->head_dim ? s->head_dim : s->dim / s->heads; }

/* --list-presets: one line per preset. */
static void list_presets(void) {
    printf("%-8s %-6s %6s %6s %6s %5s %4s %5s %4s %7s %7s %6s %9s %4s\n", "arch", "preset", "dim", "ffn", "layers",
           "heads", "kv", "headd", "rope", "vocab", "ctx", "window", "rope_base", "tied");
    for (int a = 0; a < N_OF(k_archs); a++)
        for (int i = 0; i < k_archs[a].n_presets; i++) {
            const mk_arch *ar = &k_archs[a];
            const mk_shape *s = &ar->presets[i].s;
            int64_t hd = head_dim(s);
            char base[32] = "-"; /* not written: llama.cpp's default, 10000 */
            if (ar->f & MK_ROPE_BASE) snprintf(base, sizeof base, "%g", (double)s->rope_base);
            printf("%-8s %-6s %6lld %6lld %6lld %5lld %4lld %5lld %4lld %7lld %7lld %6lld %9s %4s\n", ar->name,
                   ar->presets[i].name, (long long)s->dim, (long long)s->ffn, (long long)s->layers,
                   (long long)s->heads, (long long)s->kv_heads, (long long)hd,
                   (long long)(s->rope_dim ? s->rope_dim : hd), (long long)s->vocab, (long long)s->ctx,
                   (long long)s->window, base, s->tied ? "yes" : "no");
        }
}

static int parse_opts(int argc, char **argv, mk_opts *o, lyra_error *err) {
    memset(o, 0, sizeof *o);
    o->preset = "tiny";
    o->type = LYRA_TYPE_F32;
    int64_t ov[MK_N_INT];
    float fv[MK_N_FLOAT];
    int given[MK_N_INT] = {0}, fgiven[MK_N_FLOAT] = {0};
    const char *vocab_flag = NULL, *arch = "llama";
    int tied = -1, fused = 0; /* -1: the preset's */
    app_args a;
    args_init(&a, argc, argv);
    const char *arg;
    int is_flag, rc = 0;
    while (!rc && args_next(&a, &arg, &is_flag)) {
        const char *f = a.flag;
        int d = -1, fl = -1;
        for (int i = 0; i < MK_N_INT; i++)
            if (is_flag && !strcmp(f, k_int_flags[i].flag)) d = i;
        for (int i = 0; i < MK_N_FLOAT; i++)
            if (is_flag && !strcmp(f, k_float_flags[i].flag)) fl = i;
        if (!is_flag) {
            rc = args_unknown(&a, arg, err);
        } else if (args_common(&a)) {
        } else if (d >= 0) {
            rc = args_int(&a, k_int_flags[d].min, INT32_MAX, &ov[d], err);
            given[d] = 1;
            if (d == MK_I_VOCAB) vocab_flag = f;
        } else if (fl >= 0) {
            rc = args_float(&a, 0.0, 1e30, &fv[fl], err);
            fgiven[fl] = 1;
        } else if (!strcmp(f, "-o") || !strcmp(f, "--output")) {
            rc = args_str(&a, &o->out, err);
        } else if (!strcmp(f, "--arch")) {
            rc = args_str(&a, &arch, err);
        } else if (!strcmp(f, "--preset")) {
            rc = args_str(&a, &o->preset, err);
        } else if (!strcmp(f, "--type")) {
            const char *v;
            rc = args_str(&a, &v, err);
            if (!rc && (lyra_type_parse(v, &o->type) || !lyra_type_supported(o->type) ||
                        o->type == LYRA_TYPE_Q8_K))
                rc = lyra_err(err, LYRA_ERR_INPUT, f,
                              "expected F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K or Q6_K, got '%s'", v);
        } else if (!strcmp(f, "--seed")) {
            rc = args_u64(&a, &o->seed, err);
        } else if (!strcmp(f, "--tied") && !a.eq) {
            tied = 1;
        } else if (!strcmp(f, "--untied") && !a.eq) {
            tied = 0;
        } else if (!strcmp(f, "--fused-qkv") && !a.eq) {
            fused = 1;
        } else if (!strcmp(f, "--list-presets") && !a.eq) {
            o->list = 1;
        } else if (!strcmp(f, "--vocab-from")) {
            rc = args_str(&a, &o->vocab_from, err);
        } else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) {
            rc = args_i32(&a, 0, 4096, &o->threads, err);
        } else {
            rc = args_unknown(&a, arg, err);
        }
    }
    if (rc || o->list) return rc;
    if (!o->out) return lyra_err(err, LYRA_ERR_INPUT, "-o", "required: the output file");
    for (int i = 0; i < N_OF(k_archs); i++)
        if (!strcmp(arch, k_archs[i].name)) o->arch = &k_archs[i];
    if (!o->arch) return lyra_err(err, LYRA_ERR_INPUT, "--arch", "expected " MK_ARCH_NAMES ", got '%s'", arch);
    const mk_arch *ar = o->arch;
    const mk_preset *p = NULL;
    char names[128] = "";
    for (int i = 0; i < ar->n_presets; i++) {
        if (!strcmp(o->preset, ar->presets[i].name)) p = &ar->presets[i];
        size_t l = strlen(names);
        snprintf(names + l, sizeof names - l, "%s%s", i ? (i + 1 < ar->n_presets ? ", " : " or ") : "",
                 ar->presets[i].name);
    }
    if (!p) {
        if (ar == &k_archs[0]) /* Llama's message as before, 1b added */
            return lyra_err(err, LYRA_ERR_INPUT, "--preset",
                            "expected tiny, 1.1b or 7b (or 1b, the same as 1.1b), got '%s'", o->preset);
        return lyra_err(err, LYRA_ERR_INPUT, "--preset", "expected %s for --arch %s, got '%s'", names, ar->name,
                        o->preset);
    }
    o->shape = p->s;
    mk_shape *s = &o->shape;
    for (int i = 0; i < MK_N_INT; i++) {
        if (!given[i]) continue;
        if (k_int_flags[i].need && !(ar->f & k_int_flags[i].need))
            return lyra_err(err, LYRA_ERR_INPUT, k_int_flags[i].flag, "not used by --arch %s", ar->name);
        *(int64_t *)((char *)s + k_int_flags[i].off) = ov[i];
    }
    for (int i = 0; i < MK_N_FLOAT; i++) {
        if (!fgiven[i]) continue;
        if (!(ar->f & k_float_flags[i].need))
            return lyra_err(err, LYRA_ERR_INPUT, k_float_flags[i].flag, "not used by --arch %s", ar->name);
        *(float *)((char *)s + k_float_flags[i].off) = fv[i];
    }
    if (fused && !(ar->f & MK_FUSED_OPT))
        return lyra_err(err, LYRA_ERR_INPUT, "--fused-qkv", "only for --arch phi2 (phi3 always fuses)");
    o->fused = fused || (ar->f & MK_FUSED);
    if (tied == 1 && (ar->f & MK_UNTIED_ONLY))
        return lyra_err(err, LYRA_ERR_INPUT, "--tied", "--arch %s always has output.weight", ar->name);
    if (tied == 0 && (ar->f & MK_TIED_ONLY))
        return lyra_err(err, LYRA_ERR_INPUT, "--untied", "--arch %s has no output.weight", ar->name);
    if (tied >= 0) s->tied = tied;
    if (o->vocab_from && given[MK_I_VOCAB])
        return lyra_err(err, LYRA_ERR_INPUT, vocab_flag, "conflicts with --vocab-from (its size is used)");
    const char *hflag = given[MK_I_DIM] ? "--dim" : "--heads";
    if (!s->head_dim && s->dim % s->heads)
        return lyra_err(err, LYRA_ERR_INPUT, hflag, "dim %lld is not a multiple of heads %lld", (long long)s->dim,
                        (long long)s->heads);
    int64_t hd = head_dim(s), rd = s->rope_dim ? s->rope_dim : hd;
    if (s->head_dim) hflag = "--head-dim";
    if (hd % 2)
        return lyra_err(err, LYRA_ERR_INPUT, hflag, "the head size %s = %lld must be even (RoPE)",
                        s->head_dim ? "head-dim" : "dim/heads", (long long)hd);
    if (rd % 2 || rd > hd)
        return lyra_err(err, LYRA_ERR_INPUT, "--rope-dim", "must be even and at most the head size %lld, got %lld",
                        (long long)hd, (long long)rd);
    if (s->heads % s->kv_heads)
        return lyra_err(err, LYRA_ERR_INPUT, "--kv-heads", "heads %lld is not a multiple of kv heads %lld",
                        (long long)s->heads, (long long)s->kv_heads);
    if (!o->vocab_from && s->vocab < MK_VOCAB_MIN)
        return lyra_err(err, LYRA_ERR_INPUT, "--vocab", "must be >= %d (256 bytes + BOS + EOS), got %lld",
                        MK_VOCAB_MIN, (long long)s->vocab);
    if ((ar->f & MK_SOFTCAP) && (s->attn_cap <= 0.0f || s->final_cap <= 0.0f))
        return lyra_err(err, LYRA_ERR_INPUT, s->attn_cap <= 0.0f ? "--attn-softcap" : "--final-softcap",
                        "must be > 0");
    if (s->rope_base <= 0.0f && (ar->f & MK_ROPE_BASE))
        return lyra_err(err, LYRA_ERR_INPUT, "--rope-base", "must be > 0");
    if (!strncmp(ar->name, "gemma", 5) && (ar->f & MK_WINDOW) && s->window == 0)
        return lyra_err(err, LYRA_ERR_INPUT, "--window", "--arch %s needs a sliding window > 0", ar->name);
    return LYRA_OK;
}

/* --vocab-from: copy only tokenizer.* keys. */
static int skip_non_tokenizer(const char *key, void *user) {
    (void)user;
    return strncmp(key, "tokenizer.", 10) != 0;
}

static int add_tokenizer(lyra_gguf_writer *w, mk_opts *o, lyra_error *err) {
    if (o->vocab_from) {
        lyra_gguf *g = NULL;
        int rc = lyra_gguf_open(o->vocab_from, &g, err);
        if (rc) return rc;
        lyra_gguf_vtype et;
        uint64_t n = 0;
        if (!lyra_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n) || et != LYRA_GGUF_STRING || n == 0 ||
            n > INT32_MAX)
            rc = lyra_err(err, LYRA_ERR_INPUT, o->vocab_from, "no tokenizer.ggml.tokens string array");
        if (!rc) { /* the tokenizer must load: never write a file lyra then refuses */
            lyra_tokenizer *tok = NULL;
            rc = lyra_tokenizer_load(g, &tok, err);
            lyra_tokenizer_free(tok);
        }
        if (!rc) rc = lyra_gguf_writer_copy_kv(w, g, skip_non_tokenizer, NULL);
        if (!rc) o->shape.vocab = (int64_t)n;
        lyra_gguf_close(g);
        if (rc && rc != LYRA_ERR_INPUT) lyra_err(err, rc, o->out, "copying the tokenizer failed");
        return rc;
    }
    mk_vocab v;
    if (mk_vocab_build(&v, o->shape.vocab))
        return lyra_err(err, LYRA_ERR_OOM, "mkmodel", "out of memory building the vocabulary");
    int rc = lyra_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2");
    rc = rc ? rc : lyra_gguf_writer_add_str(w, "tokenizer.ggml.pre", "default");
    rc = rc ? rc : lyra_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v.tokens, NULL, (uint64_t)v.n);
    rc = rc ? rc : lyra_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", LYRA_GGUF_I32, v.types, (uint64_t)v.n);
    rc = rc ? rc : lyra_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v.merges, NULL, (uint64_t)v.n_merges);
    rc = rc ? rc : lyra_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", MK_VOCAB_BOS);
    rc = rc ? rc : lyra_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", MK_VOCAB_EOS);
    rc = rc ? rc : lyra_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", !(o->arch->f & MK_NO_BOS));
    rc = rc ? rc : lyra_gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", 0);
    lyra_log(LYRA_LOG_DEBUG, "mkmodel: vocabulary of %lld tokens, %lld merges", (long long)v.n,
             (long long)v.n_merges);
    mk_vocab_free(&v);
    if (rc) return lyra_err(err, rc, o->out, "adding the tokenizer failed");
    return LYRA_OK;
}

/* The hyper-parameters, in the order and with the names llama.cpp's
 * converter uses for the architecture. */
static int add_hparams(lyra_gguf_writer *w, const mk_opts *o, lyra_error *err) {
    const mk_shape *s = &o->shape;
    const mk_arch *ar = o->arch;
    char name[64], k[96];
    /* not the architecture's name: llama.cpp reads general.name, and one
     * with "phi3" in it makes it want Phi-3's special tokens */
    snprintf(name, sizeof name, "lyra mkmodel %s", o->preset);
    int64_t hd = head_dim(s);
#define KEY(suffix) (snprintf(k, sizeof k, "%s.%s", ar->gguf, suffix), k)
#define U32(suffix, v) (rc = rc ? rc : lyra_gguf_writer_add_u32(w, KEY(suffix), (uint32_t)(v)))
#define F32(suffix, v) (rc = rc ? rc : lyra_gguf_writer_add_f32(w, KEY(suffix), (float)(v)))
    int rc = lyra_gguf_writer_add_str(w, "general.architecture", ar->gguf);
    rc = rc ? rc : lyra_gguf_writer_add_str(w, "general.name", name);
    rc = rc ? rc : lyra_gguf_writer_add_u32(w, "general.file_type", app_file_type(o->type));
    if (lyra_type_block(o->type) > 1) rc = rc ? rc : lyra_gguf_writer_add_u32(w, "general.quantization_version", 2);
    if (ar->f & MK_VOCAB_KEY) U32("vocab_size", s->vocab);
    U32("context_length", s->ctx);
    U32("embedding_length", s->dim);
    U32("block_count", s->layers);
    U32("feed_forward_length", s->ffn);
    U32("attention.head_count", s->heads);
    U32("attention.head_count_kv", s->kv_heads);
    if ((ar->f & MK_KEY_LEN) || ((ar->f & MK_KEY_LEN_OPT) && s->head_dim)) {
        U32("attention.key_length", hd);
        U32("attention.value_length", hd);
    }
    if (ar->f & MK_ROPE_DIM) U32("rope.dimension_count", s->rope_dim ? s->rope_dim : hd);
    if (ar->f & MK_ROPE_BASE) F32("rope.freq_base", s->rope_base);
    if (ar->f & MK_LAYERNORM)
        F32("attention.layer_norm_epsilon", ar->eps);
    else
        F32("attention.layer_norm_rms_epsilon", ar->eps);
    if (s->rope_scale > 0.0f) {
        rc = rc ? rc : lyra_gguf_writer_add_str(w, KEY("rope.scaling.type"), "linear");
        F32("rope.scaling.factor", s->rope_scale);
    }
    if (ar->f & MK_ORIG_CTX) U32("rope.scaling.original_context_length", s->ctx);
    if (ar->f & MK_WINDOW) U32("attention.sliding_window", s->window);
    if (ar->f & MK_SOFTCAP) {
        F32("attn_logit_softcapping", s->attn_cap);
        F32("final_logit_softcapping", s->final_cap);
    }
#undef KEY
#undef U32
#undef F32
    if (rc) return lyra_err(err, rc, o->out, "adding metadata failed");
    return LYRA_OK;
}

/* What a tensor's values are. */
enum { MK_WEIGHT, MK_BIAS, MK_NORM };

/* One tensor to make. */
typedef struct mk_tensor {
    char name[64];    /* GGUF name */
    int n_dims;       /* 1 or 2 */
    int64_t ne[2];    /* ne[0] = row length */
    int kind;         /* MK_WEIGHT, MK_BIAS, MK_NORM */
    lyra_type type;   /* stored type */
    uint64_t off;     /* in the scratch store */
} mk_tensor;

/* Row producer state: base + uniform noise of half-width a. */
typedef struct mk_rows {
    uint64_t seed;    /* tensor seed */
    float base;       /* 0 (weights, biases) or 1 (norms) */
    float a;          /* half-width of the uniform; 0: base only */
} mk_rows;

static void make_row(void *user, int64_t r, float *dst, int64_t cols) {
    const mk_rows *m = user;
    if (m->a == 0.0f) {
        for (int64_t c = 0; c < cols; c++) dst[c] = m->base;
        return;
    }
    lyra_rng rng;
    lyra_rng_seed(&rng, m->seed ^ ((uint64_t)r * 0xd1b54a32d192ed03ull));
    for (int64_t c = 0; c < cols; c++) dst[c] = m->base + (2.0f * lyra_rng_f32(&rng) - 1.0f) * m->a;
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* The tensor list in llama.cpp's order; returns the count (<= cap). */
static int list_tensors(const mk_opts *o, mk_tensor *t, int cap) {
    const mk_shape *s = &o->shape;
    const unsigned f = o->arch->f;
    const int64_t hd = head_dim(s), q = hd * s->heads, kv = hd * s->kv_heads;
    const int ln = (f & MK_LAYERNORM) != 0, bqkv = (f & MK_BIAS_QKV) != 0, ball = (f & MK_BIAS_ALL) != 0;
    int n = 0;
#define ADD(kd, nd, a, b, ...)                                               \
    do {                                                                     \
        if (n < cap) {                                                       \
            snprintf(t[n].name, sizeof t[n].name, __VA_ARGS__);              \
            t[n].n_dims = nd; t[n].ne[0] = a; t[n].ne[1] = b;                \
            t[n].kind = kd;                                                  \
        }                                                                    \
        n++;                                                                 \
    } while (0)
#define W(a, b, ...) ADD(MK_WEIGHT, 2, a, b, __VA_ARGS__)
#define B(a, ...) ADD(MK_BIAS, 1, a, 1, __VA_ARGS__)
#define NORM(a, ...) ADD(MK_NORM, 1, a, 1, __VA_ARGS__)
    W(s->dim, s->vocab, "token_embd.weight");
    for (int64_t l = 0; l < s->layers; l++) {
        const long long L = (long long)l;
        NORM(s->dim, "blk.%lld.attn_norm.weight", L);
        if (ln) B(s->dim, "blk.%lld.attn_norm.bias", L);
        if (o->fused) {
            W(s->dim, q + 2 * kv, "blk.%lld.attn_qkv.weight", L);
            if (bqkv) B(q + 2 * kv, "blk.%lld.attn_qkv.bias", L);
        } else {
            W(s->dim, q, "blk.%lld.attn_q.weight", L);
            if (bqkv) B(q, "blk.%lld.attn_q.bias", L);
            W(s->dim, kv, "blk.%lld.attn_k.weight", L);
            if (bqkv) B(kv, "blk.%lld.attn_k.bias", L);
            W(s->dim, kv, "blk.%lld.attn_v.weight", L);
            if (bqkv) B(kv, "blk.%lld.attn_v.bias", L);
        }
        if (f & MK_QK_NORM) {
            NORM(hd, "blk.%lld.attn_q_norm.weight", L);
            NORM(hd, "blk.%lld.attn_k_norm.weight", L);
        }
        W(q, s->dim, "blk.%lld.attn_output.weight", L);
        if (ball) B(s->dim, "blk.%lld.attn_output.bias", L);
        if (f & MK_POST_NORM) NORM(s->dim, "blk.%lld.post_attention_norm.weight", L);
        if (f & MK_FFN_NORM) NORM(s->dim, "blk.%lld.ffn_norm.weight", L);
        if ((f & MK_GATE) && !(f & MK_GATE_UP)) W(s->dim, s->ffn, "blk.%lld.ffn_gate.weight", L);
        W(s->dim, (f & MK_GATE_UP) ? 2 * s->ffn : s->ffn, "blk.%lld.ffn_up.weight", L);
        if (ball) B(s->ffn, "blk.%lld.ffn_up.bias", L);
        W(s->ffn, s->dim, "blk.%lld.ffn_down.weight", L);
        if (ball) B(s->dim, "blk.%lld.ffn_down.bias", L);
        if (f & MK_POST_NORM) NORM(s->dim, "blk.%lld.post_ffw_norm.weight", L);
    }
    NORM(s->dim, "output_norm.weight");
    if (ln) B(s->dim, "output_norm.bias");
    if (!s->tied) {
        W(s->dim, s->vocab, "output.weight");
        if (ball) B(s->vocab, "output.bias");
    }
#undef W
#undef B
#undef NORM
#undef ADD
    for (int i = 0; i < n && i < cap; i++)
        t[i].type = t[i].n_dims == 2 && t[i].ne[0] % lyra_type_block(o->type) == 0 ? o->type : LYRA_TYPE_F32;
    return n;
}

static int run(mk_opts *o, lyra_error *err) {
    lyra_gguf_writer *w = lyra_gguf_writer_new();
    lyra_pool *pool = lyra_pool_new(o->threads > 0 ? o->threads : lyra_default_threads(NULL));
    app_store st = {.fd = -1};
    mk_tensor *t = NULL;
    int rc = (!w || !pool) ? lyra_err(err, LYRA_ERR_OOM, "mkmodel", "out of memory") : LYRA_OK;
    if (!rc) rc = lyra_gguf_writer_check_path(o->out, err); /* before any long work */
    if (!rc) lyra_gguf_writer_set_cancel(w, &app_interrupted);
    if (!rc) rc = add_tokenizer(w, o, err); /* first: --vocab-from sets the vocab size */
    if (!rc) rc = add_hparams(w, o, err);
    int n = 0;
    if (!rc) {
        n = list_tensors(o, NULL, 0);
        t = calloc((size_t)n, sizeof *t);
        if (!t) rc = lyra_err(err, LYRA_ERR_OOM, "mkmodel", "out of memory");
        else list_tensors(o, t, n);
    }
    if (!rc) rc = app_store_open(&st, o->out, err);
    const float a = 0.02f * sqrtf(3.0f);
    double t0 = app_now();
    for (int i = 0; !rc && i < n; i++) {
        if (app_interrupted) {
            rc = lyra_err(err, LYRA_ERR_INTERRUPTED, "mkmodel", "interrupted");
            break;
        }
        const int noisy = t[i].kind != MK_NORM || (o->arch->f & MK_NORM_NOISE);
        mk_rows mr = {lyra_splitmix64(&(uint64_t){o->seed ^ name_hash(t[i].name)}), t[i].kind == MK_NORM ? 1.0f : 0.0f,
                      noisy ? a : 0.0f};
        rc = app_store_tensor(&st, pool, t[i].type, t[i].ne[0], t[i].ne[1], make_row, &mr, &t[i].off, err);
        lyra_log(LYRA_LOG_DEBUG, "mkmodel: [%d/%d] %s %s [%lld x %lld]", i + 1, n, t[i].name,
                 lyra_type_name(t[i].type), (long long)t[i].ne[0], (long long)t[i].ne[1]);
    }
    if (!rc) rc = app_store_map(&st, err);
    for (int i = 0; !rc && i < n; i++) {
        rc = lyra_gguf_writer_add_tensor(w, t[i].name, t[i].type, t[i].n_dims, t[i].ne,
                                         app_store_ptr(&st, t[i].off));
        if (rc) lyra_err(err, rc, t[i].name, "adding the tensor failed");
    }
    if (!rc && app_interrupted) rc = lyra_err(err, LYRA_ERR_INTERRUPTED, "mkmodel", "interrupted");
    if (!rc) rc = lyra_gguf_writer_write(w, o->out, err);
    if (!rc)
        lyra_log(LYRA_LOG_INFO, "mkmodel: wrote %s: %s%s%s %s, %d tensors, %.1f MB of weights, in %.2f s", o->out,
                 o->arch == &k_archs[0] ? "" : o->arch->name, o->arch == &k_archs[0] ? "" : " ", o->preset,
                 lyra_type_name(o->type), n, (double)st.size / 1e6, app_now() - t0);
    app_store_close(&st);
    free(t);
    lyra_pool_free(pool);
    lyra_gguf_writer_free(w);
    return rc;
}

int cmd_mkmodel(int argc, char **argv, lyra_error *err) {
    mk_opts o;
    int rc = parse_opts(argc, argv, &o, err);
    if (!rc && o.list) {
        list_presets();
        return LYRA_OK;
    }
    return rc ? rc : run(&o, err);
}
