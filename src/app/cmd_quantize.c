/* cmd_quantize.c: `lyra quantize IN OUT TYPE`: convert a GGUF's weights.
 *
 * Rules: 1-D tensors become (or stay) F32. A 2-D+ tensor gets TYPE, or, for
 * the mixes, llama.cpp's rule in short:
 *   Q4_K_M / Q5_K_M: base Q4_K / Q5_K; Q6_K for output.weight (token_embd
 *   when the model has no output.weight), and for attn_v and ffn_down of
 *   layer i when i < n/8, i >= 7n/8 or (i - n/8) % 3 == 2 (n = layers).
 * A tensor whose rows (ne[0]) are not a multiple of the type's block size
 * falls back to the nearest type that fits, never fewer bits:
 *   Q4_K -> Q4_0, Q5_K / Q6_K -> Q8_0, Q4_0 / Q8_0 -> F16
 * (logged per tensor on stderr). Metadata is copied, general.file_type set.
 * The output appears only when complete (atomic rename by the writer). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "args.h"
#include "format/gguf.h"
#include "format/hf_model.h"
#include "store.h"

const char cmd_quantize_usage[] =
    "usage: lyra quantize [--threads N] IN OUT TYPE\n"
    "\n"
    "Convert the weights of the GGUF IN to TYPE and write OUT (written to a\n"
    "temporary file and renamed: no partial OUT on failure).\n"
    "\n"
    "TYPE: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, or the mixes\n"
    "  Q4_K_M, Q5_K_M: base Q4_K / Q5_K; Q6_K for output.weight (token_embd when\n"
    "  there is no output.weight) and for attn_v and ffn_down of layers i with\n"
    "  i < n/8, i >= 7n/8 or (i - n/8) % 3 == 2 (n layers), as llama.cpp does.\n"
    "\n"
    "1-D tensors are stored as F32. A tensor whose rows are not a multiple of\n"
    "the type's block size (32 for Q4_0/Q8_0, 256 for K-quants) gets the nearest\n"
    "type that fits: Q4_K -> Q4_0, Q5_K/Q6_K -> Q8_0, Q4_0/Q8_0 -> F16 (each such\n"
    "tensor is logged on stderr). Metadata is copied; general.file_type is set.\n"
    "\n"
    "  -t, --threads N   threads (default: physical cores; the output does not\n"
    "                    depend on it)\n"
    "  -q, -v            quieter / more verbose stderr\n";

/* The conversion asked for. */
typedef struct q_target {
    int keep;           /* 1: every tensor keeps its type (1-D ones become F32) */
    lyra_type base;     /* type of most weights */
    int mix;            /* 1 for Q4_K_M / Q5_K_M */
    uint32_t file_type; /* general.file_type to write */
    char name[16];      /* as given, upper case */
} q_target;

static int parse_target(const char *s, q_target *t, lyra_error *err) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", s);
    for (char *p = t->name; *p; p++)
        if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 32);
    if (!strcasecmp(s, "Q4_K_M")) {
        t->base = LYRA_TYPE_Q4_K; t->mix = 1; t->file_type = 15;
        return LYRA_OK;
    }
    if (!strcasecmp(s, "Q5_K_M")) {
        t->base = LYRA_TYPE_Q5_K; t->mix = 1; t->file_type = 17;
        return LYRA_OK;
    }
    if (lyra_type_parse(s, &t->base) || !lyra_type_supported(t->base) || t->base == LYRA_TYPE_Q8_K)
        return lyra_err(err, LYRA_ERR_INPUT, s,
                        "unknown TYPE: expected F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, "
                        "Q4_K_M or Q5_K_M");
    t->file_type = app_file_type(t->base);
    return LYRA_OK;
}

/* llama.cpp's use_more_bits: the layers that get more bits in the mixes. */
static int more_bits(int64_t i, int64_t n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static lyra_type fallback(lyra_type t) {
    switch (t) {
    case LYRA_TYPE_Q4_K: return LYRA_TYPE_Q4_0;
    case LYRA_TYPE_Q5_K:
    case LYRA_TYPE_Q6_K: return LYRA_TYPE_Q8_0;
    case LYRA_TYPE_Q4_0:
    case LYRA_TYPE_Q8_0: return LYRA_TYPE_F16;
    default: return LYRA_TYPE_F32;
    }
}

/* The type tensor x gets. n_layer: blocks; has_output: output.weight exists. */
static lyra_type choose(const q_target *q, const lyra_gguf_tensor *x, int64_t n_layer,
                        int has_output) {
    if (x->n_dims < 2) return LYRA_TYPE_F32;
    if (q->keep) return x->type;
    lyra_type t = q->base;
    if (q->mix) {
        long long layer = -1;
        int pos = 0;
        if (sscanf(x->name, "blk.%lld.%n", &layer, &pos) != 1 || pos == 0) layer = -1;
        const char *rest = layer >= 0 ? x->name + pos : "";
        if (!strcmp(x->name, "output.weight") || (!has_output && !strcmp(x->name, "token_embd.weight")))
            t = LYRA_TYPE_Q6_K;
        else if (layer >= 0 && (!strcmp(rest, "attn_v.weight") || !strcmp(rest, "ffn_down.weight")) &&
                 more_bits(layer, n_layer))
            t = LYRA_TYPE_Q6_K;
    }
    lyra_type want = t;
    while (x->ne[0] % lyra_type_block(t)) t = fallback(t);
    if (t != want)
        lyra_log(LYRA_LOG_WARN, "quantize: %s: rows of %lld are not a multiple of %lld for %s: using %s",
                 x->name, (long long)x->ne[0], (long long)lyra_type_block(want), lyra_type_name(want),
                 lyra_type_name(t));
    return t;
}

/* Row producer: dequantize row r of the input tensor. */
typedef struct q_rows {
    const lyra_gguf_tensor *x; /* input tensor */
    size_t row_bytes;          /* its bytes per row */
} q_rows;

static void input_row(void *user, int64_t r, float *dst, int64_t cols) {
    const q_rows *q = user;
    lyra_dequantize_row(q->x->type, (const uint8_t *)q->x->data + (size_t)r * q->row_bytes, dst, cols);
}

/* Where each output tensor's bytes are. */
typedef struct q_out {
    lyra_type type;    /* output type */
    int staged;        /* 1: in the store at off; 0: the input's bytes as they are */
    uint64_t off;      /* offset in the store */
} q_out;

static int64_t layer_count(const lyra_gguf *g) {
    lyra_gguf_str arch;
    char key[128];
    int64_t n = 0;
    if (lyra_gguf_get_str(g, "general.architecture", &arch) && arch.len < 64) {
        snprintf(key, sizeof key, "%.*s.block_count", (int)arch.len, arch.ptr);
        if (lyra_gguf_get_i64(g, key, &n) && n > 0) return n;
    }
    for (int64_t i = 0; i < lyra_gguf_n_tensors(g); i++) { /* else: highest blk.N + 1 */
        long long l;
        if (sscanf(lyra_gguf_tensor_at(g, i)->name, "blk.%lld.", &l) == 1 && l + 1 > n) n = l + 1;
    }
    return n;
}

/* A Phi-3 folder whose vocabulary lacks <|endoftext|>: llama.cpp's phi3
 * loader looks it up and cannot load the result (docs/hf.md); lyra can. */
static void warn_phi3_vocab(const char *in, const lyra_gguf *g) {
    char dir[4096];
    lyra_gguf_str a;
    uint64_t n = 0;
    if (!lyra_hf_is_model(in, dir, sizeof dir)) return;
    if (!lyra_gguf_get_str(g, "general.architecture", &a) || a.len != 4 || memcmp(a.ptr, "phi3", 4) ||
        !lyra_gguf_get_arr(g, "tokenizer.ggml.tokens", NULL, &n))
        return;
    for (uint64_t i = 0; i < n; i++) {
        lyra_gguf_str s = lyra_gguf_arr_str(g, "tokenizer.ggml.tokens", i);
        if (s.len == 13 && !memcmp(s.ptr, "<|endoftext|>", 13)) return;
    }
    LYRA_WARN("%s: the vocabulary has no <|endoftext|>: llama.cpp's phi3 loader needs it (lyra reads the file)", in);
}

static int run(const char *in, const char *out, const q_target *q, int32_t threads, lyra_error *err) {
    lyra_gguf *g = NULL;
    lyra_gguf_writer *w = NULL;
    lyra_pool *pool = NULL;
    q_out *o = NULL;
    app_store st = {.fd = -1};
    double t0 = app_now();
    int rc = lyra_gguf_writer_check_path(out, err); /* before any long work */
    if (!rc) rc = lyra_hf_open_path(in, LYRA_HF_DTYPE_AUTO, &g, err); /* a GGUF or a folder */
    if (rc) return rc;
    warn_phi3_vocab(in, g);
    int64_t n = lyra_gguf_n_tensors(g), n_layer = layer_count(g);
    int has_output = lyra_gguf_find_tensor(g, "output.weight") != NULL;
    w = lyra_gguf_writer_new();
    pool = lyra_pool_new(threads > 0 ? threads : lyra_default_threads(NULL));
    o = calloc((size_t)(n > 0 ? n : 1), sizeof *o);
    if (!w || !pool || !o) rc = lyra_err(err, LYRA_ERR_OOM, "quantize", "out of memory");
    uint32_t align = LYRA_GGUF_DEFAULT_ALIGNMENT;
    if (!rc && lyra_gguf_get_u32(g, "general.alignment", &align) && align) lyra_gguf_writer_set_alignment(w, align);
    if (!rc) lyra_gguf_writer_set_cancel(w, &app_interrupted);
    if (!rc) rc = lyra_gguf_writer_copy_kv(w, g, NULL, NULL);
    if (!rc && q->keep) { /* the file type of the matrices as they are */
        const lyra_gguf_tensor *x = lyra_gguf_find_tensor(g, "blk.0.ffn_down.weight");
        uint32_t ft = 0;
        if (!x || lyra_gguf_get_u32(g, "general.file_type", &ft)) x = NULL;
        if (x) rc = lyra_gguf_writer_add_u32(w, "general.file_type", app_file_type(x->type));
    } else if (!rc) {
        rc = lyra_gguf_writer_add_u32(w, "general.file_type", q->file_type);
    }
    if (rc && rc != LYRA_ERR_OOM) lyra_err(err, rc, in, "copying the metadata failed");
    if (!rc) rc = app_store_open(&st, out, err);
    uint64_t in_bytes = 0, out_bytes = 0;
    int any_quant = 0;
    for (int64_t i = 0; !rc && i < n; i++) {
        if (app_interrupted) {
            rc = lyra_err(err, LYRA_ERR_INTERRUPTED, "quantize", "interrupted");
            break;
        }
        const lyra_gguf_tensor *x = lyra_gguf_tensor_at(g, i);
        if (!lyra_type_supported(x->type)) {
            const char *tn = lyra_type_name(x->type);
            rc = lyra_err(err, LYRA_ERR_INPUT, in, "tensor %s has type %s, which lyra cannot convert",
                          x->name, tn ? tn : "?");
            break;
        }
        o[i].type = choose(q, x, n_layer, has_output);
        any_quant |= lyra_type_block(o[i].type) > 1;
        in_bytes += x->n_bytes;
        out_bytes += x->n_elements / lyra_type_block(o[i].type) * lyra_type_block_bytes(o[i].type);
        lyra_log(LYRA_LOG_INFO, "quantize: [%lld/%lld] %-28s %-5s -> %-5s [%lld x %lld]", (long long)i + 1,
                 (long long)n, x->name, lyra_type_name(x->type), lyra_type_name(o[i].type),
                 (long long)x->ne[0], (long long)(x->n_elements / (x->ne[0] ? x->ne[0] : 1)));
        if (o[i].type == x->type || x->n_elements == 0) continue; /* the input's bytes, in place */
        o[i].staged = 1;
        q_rows qr = {x, lyra_row_bytes(x->type, x->ne[0])};
        rc = app_store_tensor(&st, pool, o[i].type, x->ne[0], x->n_elements / x->ne[0], input_row, &qr,
                              &o[i].off, err);
    }
    if (!rc && any_quant) rc = lyra_gguf_writer_add_u32(w, "general.quantization_version", 2);
    if (!rc) rc = app_store_map(&st, err);
    for (int64_t i = 0; !rc && i < n; i++) {
        const lyra_gguf_tensor *x = lyra_gguf_tensor_at(g, i);
        rc = lyra_gguf_writer_add_tensor(w, x->name, o[i].type, x->n_dims, x->ne,
                                         o[i].staged ? app_store_ptr(&st, o[i].off) : x->data);
        if (rc) lyra_err(err, rc, x->name, "adding the tensor failed");
    }
    if (!rc && app_interrupted) rc = lyra_err(err, LYRA_ERR_INTERRUPTED, "quantize", "interrupted");
    if (!rc) rc = lyra_gguf_writer_write(w, out, err);
    if (!rc)
        lyra_log(LYRA_LOG_INFO, "quantize: wrote %s (%s): weights %.2f MB -> %.2f MB in %.2f s", out, q->name,
                 (double)in_bytes / 1e6, (double)out_bytes / 1e6, app_now() - t0);
    app_store_close(&st);
    free(o);
    lyra_pool_free(pool);
    lyra_gguf_writer_free(w);
    lyra_gguf_close(g);
    return rc;
}

/* IN OUT TYPE, in order. */
typedef struct q_args {
    const char *v[3]; /* IN, OUT, TYPE */
    int n;            /* given */
} q_args;

static int take_positional(app_args *a, const char *arg, void *dst, lyra_error *err) {
    (void)a;
    q_args *p = dst;
    if (p->n == 3) return lyra_err(err, LYRA_ERR_INPUT, arg, "unexpected argument: quantize takes IN OUT TYPE");
    p->v[p->n++] = arg;
    return LYRA_OK;
}

int cmd_quantize(int argc, char **argv, lyra_error *err) {
    q_args pos = {{NULL}, 0};
    int32_t threads = 0;
    const app_opt opts[] = {
        APP_I32("-t", "--threads", &threads, 0, 4096),
        APP_POSITIONAL(take_positional, &pos),
        APP_OPT_END_,
    };
    int rc = args_parse(argc, argv, NULL, opts, 0, NULL, NULL, err);
    if (!rc) rc = app_check_threads(threads, "--threads", err);
    if (rc) return rc;
    if (pos.n < 3)
        return lyra_err(err, LYRA_ERR_INPUT, "quantize", "expected IN OUT TYPE (see lyra quantize --help)");
    q_target q;
    rc = parse_target(pos.v[2], &q, err);
    return rc ? rc : run(pos.v[0], pos.v[1], &q, threads, err);
}

/* ----------------------------------------------------------- lyra convert */

const char cmd_convert_usage[] =
    "usage: lyra convert [--threads N] DIR OUT.gguf [TYPE]\n"
    "\n"
    "Write the Hugging Face model folder DIR (config.json, *.safetensors,\n"
    "tokenizer.json; docs/hf.md) as the GGUF OUT.gguf, with llama.cpp's metadata\n"
    "keys and tensor names, so llama.cpp and lyra read it. Written to a temporary\n"
    "file and renamed: no partial OUT on failure.\n"
    "\n"
    "TYPE: the weights as stored (default), or any TYPE of lyra quantize (F32,\n"
    "F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, Q4_K_M, Q5_K_M), with its rules.\n"
    "1-D tensors (norms, biases) are F32.\n"
    "\n"
    "  -t, --threads N   threads (default: physical cores)\n"
    "  -q, -v            quieter / more verbose stderr\n";

static int take_convert(app_args *a, const char *arg, void *dst, lyra_error *err) {
    (void)a;
    q_args *p = dst;
    if (p->n == 3) return lyra_err(err, LYRA_ERR_INPUT, arg, "unexpected argument: convert takes DIR OUT [TYPE]");
    p->v[p->n++] = arg;
    return LYRA_OK;
}

int cmd_convert(int argc, char **argv, lyra_error *err) {
    q_args pos = {{NULL}, 0};
    int32_t threads = 0;
    const app_opt opts[] = {
        APP_I32("-t", "--threads", &threads, 0, 4096),
        APP_POSITIONAL(take_convert, &pos),
        APP_OPT_END_,
    };
    int rc = args_parse(argc, argv, NULL, opts, 0, NULL, NULL, err);
    if (!rc) rc = app_check_threads(threads, "--threads", err);
    if (rc) return rc;
    if (pos.n < 2)
        return lyra_err(err, LYRA_ERR_INPUT, "convert", "expected DIR OUT [TYPE] (see lyra convert --help)");
    char dir[4096];
    if (!lyra_hf_is_model(pos.v[0], dir, sizeof dir))
        return lyra_err(err, LYRA_ERR_INPUT, pos.v[0], "not a Hugging Face model folder (no config.json)");
    q_target q;
    memset(&q, 0, sizeof q);
    q.keep = 1;
    snprintf(q.name, sizeof q.name, "as stored");
    if (pos.n == 3 && (rc = parse_target(pos.v[2], &q, err))) return rc;
    return run(dir, pos.v[1], &q, threads, err);
}
