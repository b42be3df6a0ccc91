#!/usr/bin/env python3
"""make_hf_snapshots.py: writes the tiny Hugging Face test snapshots under
tests/data/hf/ (needs torch and transformers; the tests that use them do not).

Each NAME/ is what save_pretrained writes for a tiny random model of one
architecture (hidden 32, 2 layers, vocabulary 512), plus
  expected.json  {"tokens": prompt ids, "greedy": 8 greedy ids after them,
                  "n_vocab": 512, "dtype": stored dtype}
  tokenizer.json, tokenizer_config.json  copied from tests/data/tokenizers/llama2-stories
                 (phi3: with Phi-3's special tokens as ids 507..511, phi3_tokens.py)
  logits.bin     transformers' logits for the prompt, float32 [n_tokens][512]
                 (computed in float32 from the stored weights)
Variants: llama_f16, llama_bf16 (weights stored in that dtype), llama_sharded
(max_shard_size forces several files and the index), llama3_rope (llama3
rope_scaling), phi3_longrope (longrope rope_scaling; logits_long.bin: the last
long_rows logits of long_tokens, longer than original_max_position_embeddings).
Run: /work/venv-torch/bin/python tests/reference/make_hf_snapshots.py [NAME...]
"""
import json, os, shutil, sys

import torch
import transformers as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phi3_tokens  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "hf")
TOK = os.path.join(OUT, "..", "tokenizers", "llama2-stories")
PROMPT = [1, 15, 27, 100, 200, 300, 42, 7, 511, 3]
COMMON = dict(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
              bos_token_id=1, eos_token_id=2, pad_token_id=0,
              initializer_range=0.3)  # wide weights: logits far from ties

MODELS = {
    "llama": (T.LlamaConfig, T.LlamaForCausalLM, dict(rms_norm_eps=1e-5, tie_word_embeddings=False)),
    "llama3_rope": (T.LlamaConfig, T.LlamaForCausalLM,
                    dict(rope_theta=500000.0, tie_word_embeddings=True,
                         rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 64})),
    "mistral": (T.MistralConfig, T.MistralForCausalLM, dict(sliding_window=None, head_dim=8)),
    "phi2": (T.PhiConfig, T.PhiForCausalLM, dict(partial_rotary_factor=0.5, num_key_value_heads=4)),
    "qwen2": (T.Qwen2Config, T.Qwen2ForCausalLM, dict(tie_word_embeddings=True)),
    "qwen3": (T.Qwen3Config, T.Qwen3ForCausalLM, dict(head_dim=8, tie_word_embeddings=True)),
    "gemma": (T.GemmaConfig, T.GemmaForCausalLM, dict(head_dim=8, hidden_activation="gelu_pytorch_tanh")),
    "gemma2": (T.Gemma2Config, T.Gemma2ForCausalLM, dict(head_dim=8, query_pre_attn_scalar=8, sliding_window=4,
                                                         hidden_activation="gelu_pytorch_tanh")),
    "gemma3": (T.Gemma3TextConfig, T.Gemma3ForCausalLM, dict(head_dim=8, query_pre_attn_scalar=8, sliding_window=4,
                                                             layer_types=["sliding_attention", "full_attention"],
                                                             hidden_activation="gelu_pytorch_tanh")),
    "phi3": (T.Phi3Config, T.Phi3ForCausalLM, dict(pad_token_id=0, tie_word_embeddings=False)),
    # Phi-3 128k's longrope: short factors up to original_max_position_embeddings, long ones past it
    "phi3_longrope": (T.Phi3Config, T.Phi3ForCausalLM,
                      dict(pad_token_id=0, tie_word_embeddings=False, max_position_embeddings=128,
                           original_max_position_embeddings=32,
                           rope_scaling={"rope_type": "longrope", "short_factor": [1.0, 1.25, 1.5, 2.0],
                                         "long_factor": [1.0, 2.5, 6.0, 16.0]})),
}
# phi3_longrope: also the last LONG_ROWS logits of LONG_PROMPT (past
# original_max_position_embeddings, so transformers uses the long factors)
LONG_PROMPT = PROMPT * 4
LONG_ROWS = 8


def logits_and_greedy(model):
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        logits = model(ids).logits[0].float()
        out = model.generate(ids, max_new_tokens=8, do_sample=False, min_new_tokens=8)
    return logits, out[0, len(PROMPT):].tolist()


def save(name, model, dtype="float32", **kw):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    model.to(getattr(torch, dtype)).save_pretrained(d, **kw)
    ref = model.to(torch.float32)  # the stored values, computed in float32
    logits, greedy = logits_and_greedy(ref)
    logits.numpy().astype("<f4").tofile(os.path.join(d, "logits.bin"))
    exp = {"tokens": PROMPT, "greedy": greedy, "n_vocab": logits.shape[1], "dtype": dtype}
    if name == "phi3_longrope":
        with torch.no_grad():
            long = ref(torch.tensor([LONG_PROMPT])).logits[0].float()[-LONG_ROWS:]
        long.numpy().astype("<f4").tofile(os.path.join(d, "logits_long.bin"))
        exp.update(long_tokens=LONG_PROMPT, long_rows=LONG_ROWS)
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(exp, f)
        f.write("\n")
    for f in ("tokenizer.json", "tokenizer_config.json"):  # stories260K's 512 tokens (hf_tok_ref.py)
        shutil.copy(os.path.join(TOK, f), d)
    if name.startswith("phi3"):  # Phi-3's special tokens, which llama.cpp's phi3 loader needs
        phi3_tokens.main(d)
    print(name, dtype, greedy)


def main(only=None):
    torch.manual_seed(0)
    for name, (C, M, extra) in MODELS.items():
        if only and name not in only:
            continue
        cfg = C(**{**COMMON, **extra})
        torch.manual_seed(len(name))
        model = M(cfg).eval()
        with torch.no_grad():  # norms away from 1 (0 for Gemma) so the 1 + w convention is tested
            for n, p in model.named_parameters():
                if "norm" in n:
                    p.add_(torch.randn_like(p) * 0.2)
        save(name, model)
        if name == "llama":  # (each save leaves the model rounded to its dtype)
            save("llama_sharded", model, max_shard_size="40KB")
            save("llama_f16", model, "float16")
            save("llama_bf16", model, "bfloat16")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))  # NAME...: only those
