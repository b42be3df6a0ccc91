/* quantize_load.c: on-load quantization (load_in_8bit / load_in_4bit, the
 * Hugging Face names): the float matrices of a model stored as F32, F16 or
 * BF16 are quantized once, right after the file is read, into host memory the
 * model owns; from then on they are the model's weights (the planner counts
 * their new sizes, devices copy or adopt them like weights from the file).
 *
 * 8 bits: Q8_0 (blocks of 32). 4 bits: Q4_K where the rows allow it (blocks
 * of 256: per-32 scales and mins with 6-bit precision, better than Q4_0 at
 * the same 4.5 bits per weight), else Q4_0 (blocks of 32) for rows that are
 * a multiple of 32 but not of 256; the embedding table and the head keep
 * Q8_0 (llama.cpp's Q4_K_M keeps its output at 6 bits for the same reason). Rows that divide neither, vectors (norms)
 * and weights already quantized in the file stay as they are, logged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "runtime/quantize_load.h"
#include "runtime/residency.h"

static int is_float(lyra_type t) {
    return t == LYRA_TYPE_F32 || t == LYRA_TYPE_F16 || t == LYRA_TYPE_BF16;
}

/* The embedding table and the head (the vocabulary matrices) keep 8 bits
 * when the rest goes to 4, as llama.cpp's Q4_K_M keeps its output at Q6_K:
 * the logits are the most sensitive product. */
static int is_vocab(const lyra_llama *a, const lyra_weight *w) { return w == &a->tok_embd || w == &a->output; }

/* The type weight w gets with bits, or its own type when it stays. */
static lyra_type target_of(const lyra_weight *w, int bits, int vocab) {
    if (!is_float(w->type) || w->rows <= 1) return w->type;
    if (bits == 8 || vocab) return w->cols % 32 == 0 ? LYRA_TYPE_Q8_0 : w->type;
    if (w->cols % 256 == 0) return LYRA_TYPE_Q4_K;
    return w->cols % 32 == 0 ? LYRA_TYPE_Q4_0 : w->type;
}

int lyra_runtime_quantize_on_load(lyra_model *m, int bits, lyra_error *err) {
    lyra_llama *a = m->arch;
    int n_mod = lyra_llama_n_modules(a);
    /* every distinct weight once (a tied head shares the embedding's bytes) */
    lyra_weight **all = calloc((size_t)n_mod * LYRA_MODULE_MAX_WEIGHTS, sizeof *all);
    if (!all) return lyra_err(err, LYRA_ERR_OOM, "load_in_bits", "out of memory");
    int n = 0;
    for (int i = 0; i < n_mod; i++) {
        lyra_weight *w[LYRA_MODULE_MAX_WEIGHTS];
        int k = lyra_llama_module_weights(a, i, w);
        for (int j = 0; j < k; j++)
            if (w[j] != &a->rope_freqs) all[n++] = w[j];
    }
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        int first = 1;
        for (int j = 0; j < i; j++) first &= all[j]->data != all[i]->data;
        lyra_type t = target_of(all[i], bits, is_vocab(a, all[i]));
        if (first && t != all[i]->type) total += lyra_row_bytes(t, all[i]->cols) * (uint64_t)all[i]->rows;
    }
    char *buf = total ? malloc(total) : NULL;
    float *row = NULL;
    int64_t max_cols = 1;
    for (int i = 0; i < n; i++)
        if (all[i]->cols > max_cols) max_cols = all[i]->cols;
    row = malloc((size_t)max_cols * sizeof *row);
    const void **orig = calloc((size_t)n + 1, sizeof *orig); /* [n] file bytes of quantized ones */
    if ((total && !buf) || !row || !orig) {
        free(orig);
        free(all);
        free(buf);
        free(row);
        return lyra_err(err, LYRA_ERR_OOM, "load_in_bits", "out of memory for %llu bytes of %d-bit weights",
                        (unsigned long long)total, bits);
    }
    uint64_t off = 0;
    int n_q[3] = {0, 0, 0}, n_kept = 0; /* Q8_0, Q4_K, Q4_0 */
    for (int i = 0; i < n; i++) {
        lyra_weight *w = all[i];
        lyra_type t = target_of(w, bits, is_vocab(a, w));
        if (t == w->type) {
            if (is_float(w->type) && w->rows > 1) {
                n_kept++;
                LYRA_INFO("load_in_%dbit: %s stays %s (rows of %lld do not divide into blocks of %lld)",
                          bits, w->name, lyra_type_name(w->type), (long long)w->cols,
                          (long long)lyra_type_block(bits == 8 ? LYRA_TYPE_Q8_0 : LYRA_TYPE_Q4_0));
            }
            continue;
        }
        /* the same bytes quantized already (tied embedding and head) */
        int same = -1;
        for (int j = 0; j < i && same < 0; j++)
            if (orig[j] == w->data) same = j;
        size_t rb = lyra_row_bytes(t, w->cols);
        orig[i] = w->data;
        if (same >= 0) {
            w->data = all[same]->data;
        } else {
            const char *src = w->data;
            size_t sb = lyra_row_bytes(w->type, w->cols);
            for (int64_t r = 0; r < w->rows; r++) {
                lyra_dequantize_row(w->type, src + (size_t)r * sb, row, w->cols);
                lyra_quantize_row(t, row, buf + off + (size_t)r * rb, w->cols);
            }
            lyra_runtime_release_pages(w->data, sb * (size_t)w->rows); /* the file's copy: read once */
            w->data = buf + off;
            off += rb * (uint64_t)w->rows;
            n_q[t == LYRA_TYPE_Q8_0 ? 0 : t == LYRA_TYPE_Q4_K ? 1 : 2]++;
        }
        w->type = t;
        w->n_bytes = rb * (uint64_t)w->rows;
    }
    free(all);
    free(row);
    free(orig);
    m->qbuf = buf;
    m->qbuf_bytes = total;
    if (bits == 8)
        LYRA_INFO("load_in_8bit: %d tensors quantized to Q8_0 (%llu bytes), %d kept", n_q[0],
                  (unsigned long long)total, n_kept);
    else
        LYRA_INFO("load_in_4bit: %d tensors quantized to Q4_K, %d to Q4_0 (rows not a multiple of "
                  "256), %d (embedding, head) to Q8_0 (%llu bytes), %d kept",
                  n_q[1], n_q[2], n_q[0], (unsigned long long)total, n_kept);
    return LYRA_OK;
}

int lyra_runtime_in_qbuf(const lyra_model *m, const void *p) {
    uintptr_t a = (uintptr_t)m->qbuf, q = (uintptr_t)p;
    return m->qbuf && q >= a && q < a + m->qbuf_bytes;
}
