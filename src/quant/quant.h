/* quant.h: the weight types' block layouts (core/wtype.h) and the scalar
 * reference (de)quantizers, bit-exact with GGML/gguf-py, plus the block
 * helpers the CPU kernels (src/kernels) share with them.
 *
 * A row of n elements of type t is n / lyra_type_block(t) blocks of
 * lyra_type_block_bytes(t) bytes. */
#ifndef LYRA_QUANT_H
#define LYRA_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "core/wtype.h"

/* ---- scalar reference, bit-exact with GGML/gguf-py ---- */
/* n elements (a multiple of the block size) of a supported type, or Q8_K.
 * Bit-exact with gguf.quants.dequantize. Other types write zeros. */
void lyra_dequantize_row(lyra_type t, const void *src, float *dst, int64_t n);
/* Deterministic reference quantizer for F32 F16 BF16 Q8_0 Q4_0 Q5_0 Q4_K Q5_K
 * Q6_K and Q8_K (n a multiple of the block size; other types write nothing).
 * F16/BF16/Q8_0/Q4_0/Q5_0 give gguf.quants.quantize's bytes (F16 NaN: any NaN);
 * K-quants use the published K-quant algorithm (weighted least-squares search
 * of sub-block scales/mins, no imatrix). Q8_K (activations): d = amax/127
 * (f32), q = round(x/d) in [-127, 127], bsums = sums of 16. */
void lyra_quantize_row(lyra_type t, const float *src, void *dst, int64_t n);

/* ---- block helpers (also used by src/kernels) ---- */
/* Q4_K/Q5_K: 6-bit scale and min of sub-block j (0..7) from the 12 bytes s. */
void lyra_q4k_scale_min(const uint8_t *s, int j, int *sc, int *m);
/* Q6_K: unsigned 6-bit value (0..63) of element e (0..255) of block blk. */
int lyra_q6k_value(const uint8_t *blk, int e);
/* Reference activation quantizers (the scalar path's lyra_quantize_act). */
void lyra_quantize_q8_0_ref(const float *x, void *dst, int64_t n);
void lyra_quantize_q8_k_ref(const float *x, void *dst, int64_t n);

#endif
