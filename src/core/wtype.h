/* wtype.h: the weight types (GGML's numbering, as GGUF stores them) and their
 * block layouts: names, elements per block, bytes per block. Shared by the
 * file format, the quantizers, the kernels, the planner and the devices.
 *
 * A row of n elements of type t is n / lyra_type_block(t) blocks of
 * lyra_type_block_bytes(t) bytes. */
#ifndef LYRA_WTYPE_H
#define LYRA_WTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum lyra_type {
    LYRA_TYPE_F32 = 0,
    LYRA_TYPE_F16 = 1,
    LYRA_TYPE_Q4_0 = 2,
    LYRA_TYPE_Q4_1 = 3,
    LYRA_TYPE_Q5_0 = 6,
    LYRA_TYPE_Q5_1 = 7,
    LYRA_TYPE_Q8_0 = 8,
    LYRA_TYPE_Q8_1 = 9,
    LYRA_TYPE_Q2_K = 10,
    LYRA_TYPE_Q3_K = 11,
    LYRA_TYPE_Q4_K = 12,
    LYRA_TYPE_Q5_K = 13,
    LYRA_TYPE_Q6_K = 14,
    LYRA_TYPE_Q8_K = 15,
    /* known layouts lyra cannot compute with (sizes only) */
    LYRA_TYPE_IQ2_XXS = 16,
    LYRA_TYPE_IQ2_XS = 17,
    LYRA_TYPE_IQ3_XXS = 18,
    LYRA_TYPE_IQ1_S = 19,
    LYRA_TYPE_IQ4_NL = 20,
    LYRA_TYPE_IQ3_S = 21,
    LYRA_TYPE_IQ2_S = 22,
    LYRA_TYPE_IQ4_XS = 23,
    LYRA_TYPE_I8 = 24,
    LYRA_TYPE_I16 = 25,
    LYRA_TYPE_I32 = 26,
    LYRA_TYPE_I64 = 27,
    LYRA_TYPE_F64 = 28,
    LYRA_TYPE_IQ1_M = 29,
    LYRA_TYPE_BF16 = 30,
    LYRA_TYPE_TQ1_0 = 34,
    LYRA_TYPE_TQ2_0 = 35,
    LYRA_TYPE_MXFP4 = 39,
    LYRA_TYPE_NVFP4 = 40,
    LYRA_TYPE_Q1_0 = 41,
    LYRA_TYPE_COUNT = 42 /* ids >= this are unknown */
} lyra_type;

#define LYRA_QK8_0 32
#define LYRA_QK4_0 32
#define LYRA_QK_K 256

/* Name as llama.cpp prints it ("Q4_K"), or NULL for an id lyra does not know. */
const char *lyra_type_name(lyra_type t);
/* Parse "q4_k" / "Q4_K" / "f16" ... (case-insensitive). LYRA_OK or LYRA_ERR_INPUT. */
int lyra_type_parse(const char *name, lyra_type *out);
/* 1 for types lyra can load and compute with: F32 F16 BF16 Q8_0 Q4_0 Q5_0 Q4_K Q5_K
 * Q6_K. */
int lyra_type_supported(lyra_type t);
/* 1 for any id GGUF may contain whose layout lyra knows (for size checks). */
int lyra_type_known(lyra_type t);
int64_t lyra_type_block(lyra_type t);        /* elements per block (1: float types) */
size_t lyra_type_block_bytes(lyra_type t);   /* bytes per block */
/* Bytes of a row of n elements; n must be a multiple of the block size. */
size_t lyra_row_bytes(lyra_type t, int64_t n);

#endif
