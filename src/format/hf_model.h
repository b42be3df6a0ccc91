/* hf_model.h: a Hugging Face model folder (config.json + safetensors, as
 * save_pretrained writes it or as a hub snapshot holds it) presented as an
 * in-memory GGUF: metadata keys as llama.cpp's converter writes them for the
 * architecture (general.architecture, ARCH.block_count, ...) and tensors with
 * GGUF names whose data points into the mapped safetensors files when no
 * conversion is needed, else into memory the result owns (Llama's Q/K rows
 * permuted for the pairwise rope, Gemma's RMSNorm weights stored as 1 + w,
 * 1-D tensors as F32, matrices in the requested dtype). Everything after
 * (architecture, planner, devices, quantize-on-load) works as for a file.
 *
 * Supported: LlamaForCausalLM, MistralForCausalLM, PhiForCausalLM,
 * Qwen2ForCausalLM, Qwen3ForCausalLM, GemmaForCausalLM, Gemma2ForCausalLM,
 * Gemma3ForCausalLM (and Gemma3ForConditionalGeneration's text model),
 * Phi3ForCausalLM. The tokenizer keys are not added here. */
#ifndef LYRA_HF_MODEL_H
#define LYRA_HF_MODEL_H

#include <stddef.h>

#include "format/gguf.h"

typedef enum lyra_hf_dtype {
    LYRA_HF_DTYPE_AUTO = 0, /* as stored (F32, F16 or BF16: used in place) */
    LYRA_HF_DTYPE_F32,
    LYRA_HF_DTYPE_F16,
    LYRA_HF_DTYPE_BF16,
} lyra_hf_dtype;

/* "auto", "float32", "float16", "bfloat16" (also "f32", "fp16", "bf16"...).
 * 1 and *out set, or 0. */
int lyra_hf_dtype_parse(const char *s, lyra_hf_dtype *out);
const char *lyra_hf_dtype_name(lyra_hf_dtype d);

/* 1 when path is a folder holding config.json, or a path to a config.json;
 * then its folder is written to dir (cap bytes). 0 otherwise (a GGUF file). */
int lyra_hf_is_model(const char *path, char *dir, size_t cap);

/* Open the folder dir as a GGUF (the result's path is dir). */
int lyra_hf_open(const char *dir, lyra_hf_dtype dtype, lyra_gguf **out, lyra_error *err);

/* A GGUF file (lyra_gguf_open), or a Hugging Face folder or its config.json:
 * lyra_hf_open with the tokenizer's keys added (hf_tokenizer.h). */
int lyra_hf_open_path(const char *path, lyra_hf_dtype dtype, lyra_gguf **out, lyra_error *err);

/* The supported architectures, as config.json's "architectures" names them. */
const char *lyra_hf_arch_names(void);

#endif
