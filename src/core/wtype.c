/* wtype.c: the weight type table (GGML's ids and block layouts, as GGUF
 * stores them): names, parsing, block sizes and row sizes. */
#include "core/wtype.h"

#include <ctype.h>

#include "core/err.h"

/* ------------------------------------------------------------ type table */

typedef struct {
    const char *name; /* llama.cpp's name, NULL for unused ids */
    int64_t block;    /* elements per block */
    size_t bytes;     /* bytes per block */
} type_info;

static const type_info TYPES[LYRA_TYPE_COUNT] = {
    [LYRA_TYPE_F32] = {"F32", 1, 4},
    [LYRA_TYPE_F16] = {"F16", 1, 2},
    [LYRA_TYPE_Q4_0] = {"Q4_0", 32, 18},
    [LYRA_TYPE_Q4_1] = {"Q4_1", 32, 20},
    [LYRA_TYPE_Q5_0] = {"Q5_0", 32, 22},
    [LYRA_TYPE_Q5_1] = {"Q5_1", 32, 24},
    [LYRA_TYPE_Q8_0] = {"Q8_0", 32, 34},
    [LYRA_TYPE_Q8_1] = {"Q8_1", 32, 40},
    [LYRA_TYPE_Q2_K] = {"Q2_K", 256, 84},
    [LYRA_TYPE_Q3_K] = {"Q3_K", 256, 110},
    [LYRA_TYPE_Q4_K] = {"Q4_K", 256, 144},
    [LYRA_TYPE_Q5_K] = {"Q5_K", 256, 176},
    [LYRA_TYPE_Q6_K] = {"Q6_K", 256, 210},
    [LYRA_TYPE_Q8_K] = {"Q8_K", 256, 292},
    [LYRA_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66},
    [LYRA_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74},
    [LYRA_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98},
    [LYRA_TYPE_IQ1_S] = {"IQ1_S", 256, 50},
    [LYRA_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18},
    [LYRA_TYPE_IQ3_S] = {"IQ3_S", 256, 110},
    [LYRA_TYPE_IQ2_S] = {"IQ2_S", 256, 82},
    [LYRA_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136},
    [LYRA_TYPE_I8] = {"I8", 1, 1},
    [LYRA_TYPE_I16] = {"I16", 1, 2},
    [LYRA_TYPE_I32] = {"I32", 1, 4},
    [LYRA_TYPE_I64] = {"I64", 1, 8},
    [LYRA_TYPE_F64] = {"F64", 1, 8},
    [LYRA_TYPE_IQ1_M] = {"IQ1_M", 256, 56},
    [LYRA_TYPE_BF16] = {"BF16", 1, 2},
    [LYRA_TYPE_TQ1_0] = {"TQ1_0", 256, 54},
    [LYRA_TYPE_TQ2_0] = {"TQ2_0", 256, 66},
    [LYRA_TYPE_MXFP4] = {"MXFP4", 32, 17},
    [LYRA_TYPE_NVFP4] = {"NVFP4", 64, 36},
    [LYRA_TYPE_Q1_0] = {"Q1_0", 128, 18},
};

static const type_info *info(lyra_type t) {
    if ((unsigned)t >= LYRA_TYPE_COUNT || !TYPES[t].name) return NULL;
    return &TYPES[t];
}

const char *lyra_type_name(lyra_type t) {
    const type_info *ti = info(t);
    return ti ? ti->name : NULL;
}

int lyra_type_parse(const char *name, lyra_type *out) {
    if (!name) return LYRA_ERR_INPUT;
    for (int t = 0; t < LYRA_TYPE_COUNT; t++) {
        const char *a = TYPES[t].name, *b = name;
        if (!a) continue;
        while (*a && *b && toupper((unsigned char)*b) == *a) a++, b++;
        if (!*a && !*b) {
            if (out) *out = (lyra_type)t;
            return LYRA_OK;
        }
    }
    return LYRA_ERR_INPUT;
}

int lyra_type_supported(lyra_type t) {
    switch (t) {
    case LYRA_TYPE_F32: case LYRA_TYPE_F16: case LYRA_TYPE_BF16: case LYRA_TYPE_Q8_0:
    case LYRA_TYPE_Q4_0: case LYRA_TYPE_Q5_0: case LYRA_TYPE_Q4_K: case LYRA_TYPE_Q5_K:
    case LYRA_TYPE_Q6_K:
        return 1;
    default:
        return 0;
    }
}

int lyra_type_known(lyra_type t) { return info(t) != NULL; }

int64_t lyra_type_block(lyra_type t) {
    const type_info *ti = info(t);
    return ti ? ti->block : 0;
}

size_t lyra_type_block_bytes(lyra_type t) {
    const type_info *ti = info(t);
    return ti ? ti->bytes : 0;
}

size_t lyra_row_bytes(lyra_type t, int64_t n) {
    const type_info *ti = info(t);
    if (!ti || n < 0) return 0;
    return (size_t)(n / ti->block) * ti->bytes;
}
