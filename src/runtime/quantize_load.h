/* quantize_load.h: on-load quantization (quantize_load.c): load_in_8bit /
 * load_in_4bit turn a model's float matrices into Q8_0 / Q4_K / Q4_0 host
 * memory the model owns (m->qbuf). */
#ifndef LYRA_RUNTIME_QUANTIZE_LOAD_H
#define LYRA_RUNTIME_QUANTIZE_LOAD_H

#include "lyra.h"
#include "runtime/objects.h"

/* Quantize the F32/F16/BF16 matrices to 8 (Q8_0) or 4 bits (Q4_K, else Q4_0)
 * into m->qbuf; the weights point there from then on. */
int lyra_runtime_quantize_on_load(lyra_model *m, int bits, lyra_error *err);
/* 1 when p lies in the model's on-load quantized weights (not the mapping). */
int lyra_runtime_in_qbuf(const lyra_model *m, const void *p);

#endif
