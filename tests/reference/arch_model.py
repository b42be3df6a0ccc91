#!/usr/bin/env python3
"""arch_model.py: random-weight GGUF files of every architecture of issue 13,
written with the gguf package alone (independently of lyra), with the
metadata keys and tensor names llama.cpp's converter (convert_hf_to_gguf.py)
writes for each architecture, and a small SentencePiece vocabulary (<unk>,
<s>, </s>, the 256 byte pieces, a few dozen word pieces) that llama.cpp loads.

usage: arch_model.py ARCH OUT.gguf [options]
  ARCH: llama mistral phi2 qwen2 qwen3 gemma gemma2 gemma3 phi3
        (mistral = general.architecture "llama" with attention.sliding_window)
  --dim N --layers N --heads N --kv-heads N --head-dim N --ff N
  --type f32|f16|q8_0|q4_0   type of the 2-D matrices (norms, biases: F32)
  --fused-qkv / --separate-qkv   phi2 (default fused, as its converter does)
  --tied / --untied          output.weight absent / present (where allowed)
  --window N                 attention.sliding_window (0: not written)
  --attn-softcap X --final-softcap X   gemma2 (gemma3: final only, 0 = none)
  --rope-base X --rope-dim N --rope-scale F (linear, written as
                             rope.scaling.type/factor) --swa-base X
                             (rope.freq_base_swa)
  --rope-freqs F             a rope_freqs tensor (Llama 3.x), divisors 1..F
  --rope-long F --orig-ctx N   phi3 long-context (longrope): rope_factors_long
                             (divisors 1..F) and rope_factors_short (1..1.5),
                             rope.scaling.original_context_length N and, when
                             ctx > N, the attn_factor its converter computes
  --ctx N                    context_length;  --seed N
Prints nothing; the file's hyperparameters are its metadata.

What each architecture writes (learned from llama.cpp's converter and
loader, src/models/<arch>.cpp; no code taken):
  llama   attn_norm, attn_q/k/v/output, ffn_norm, ffn_gate/up/down; RMS eps
  phi2    LayerNorm (weight+bias) attn_norm, output_norm; attn_qkv (+bias) or
          attn_q/k/v (+bias); attn_output, ffn_up, ffn_down, output, all with
          bias; no ffn_norm; layer_norm_epsilon; rope.dimension_count =
          int(partial_rotary_factor * dim) // heads; ff = 4 * dim
  qwen2   attn_q/k/v with bias, rope base 1e6, output optional (tied)
  qwen3   attn_q_norm/attn_k_norm [head_dim]; key_length/value_length
  gemma   key_length/value_length; norms stored as 1 + w; no output.weight
  gemma2  + post_attention_norm, post_ffw_norm; attn_logit_softcapping,
          final_logit_softcapping, attention.sliding_window
  gemma3  + attn_q_norm/attn_k_norm; final soft-cap only if given; window
  phi3    attn_qkv (no bias), ffn_up = [gate; up] (2*ff rows), output;
          rope.scaling.original_context_length; attention.sliding_window
          (0 when not given, as the converter writes for Phi-4)
"""
import argparse
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

ARCHS = ("llama", "mistral", "phi2", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3")

# per-architecture defaults: shapes small enough for a float64 reference,
# large enough to exercise what differs (head_dim != dim/heads, partial rope,
# windows shorter than the test prompts, soft-caps that bite)
DEFAULTS = {
    "llama":  dict(layers=2, heads=4, kv_heads=2, rope_base=10000.0, tied=False),
    "mistral": dict(layers=2, heads=4, kv_heads=2, rope_base=10000.0, tied=False, window=5),
    "phi2":   dict(layers=2, heads=4, kv_heads=4, rope_base=10000.0, tied=False, rope_pct=0.4),
    "qwen2":  dict(layers=2, heads=4, kv_heads=2, rope_base=1000000.0, tied=True),
    "qwen3":  dict(layers=2, heads=4, kv_heads=2, head_dim=32, rope_base=1000000.0, tied=True),
    "gemma":  dict(layers=2, heads=4, kv_heads=1, head_dim=32, rope_base=10000.0, tied=True),
    "gemma2": dict(layers=4, heads=4, kv_heads=2, head_dim=32, rope_base=10000.0, tied=True,
                   window=5, attn_softcap=2.0, final_softcap=3.0),
    "gemma3": dict(layers=6, heads=4, kv_heads=2, head_dim=32, rope_base=1000000.0, tied=True,
                   window=5, final_softcap=0.0),
    "phi3":   dict(layers=2, heads=4, kv_heads=4, rope_base=10000.0, tied=False, window=0),
}
QTYPES = {"f32": Q.F32, "f16": Q.F16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0}


def vocab():
    """SentencePiece-style vocabulary: ids 0-2 special, 3-258 bytes, words, <|endoftext|>."""
    words = ["\u2581the", "\u2581a", "\u2581and", "\u2581to", "\u2581of", "\u2581in", "\u2581is",
             "\u2581it", "\u2581was", "\u2581he", "\u2581she", "\u2581on", "\u2581with", "\u2581for",
             "\u2581time", "\u2581once", "\u2581upon", "\u2581there", "\u2581little", "\u2581girl",
             "\u2581boy", "\u2581day", "\u2581big", "\u2581red", "\u2581ball", "\u2581sky", "\u2581park",
             "\u2581play", "\u2581named", "\u2581Lily", "\u2581Tom", "\u2581happy", "\u2581saw",
             "\u2581loved", "\u2581very", "\u2581much", "\u2581\u2581", "th", "he", "in", "er", "an",
             "re", "on", "at", "en", "nd", "ed", "es", "or", "ing", "\u2581", ",", ".", "!", "?",
             "\u2581Once", "\u2581One", "\u2581They", "\u2581The", "\u2581It"]
    # <|endoftext|>: llama.cpp's vocabulary loader expects it in models named phi3
    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + words + ["<|endoftext|>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * len(words) + [gguf.TokenType.CONTROL]
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i + 1) for i in range(len(words))] + [0.0]
    return toks, scores, types


class Model:
    def __init__(self, a):
        self.a = a
        self.rng = np.random.default_rng(a.seed)
        self.tensors = []  # (name, float32 array, numpy shape outermost first)

    def mat(self, name, rows, cols, gain=1.0):
        """A linear layer's weight: rows = outputs, cols = inputs (GGUF ne = [cols, rows])."""
        w = self.rng.standard_normal((rows, cols)) * (gain / np.sqrt(cols))
        self.tensors.append((name, w.astype(np.float32), True))

    def vec(self, name, n, mean=0.0, std=0.1):
        v = mean + std * self.rng.standard_normal(n)
        self.tensors.append((name, v.astype(np.float32), False))


def build(a):
    arch = a.arch
    d = DEFAULTS[arch]
    dim, H = a.dim, a.heads or d["heads"]
    KVH = a.kv_heads or d["kv_heads"]
    L = a.layers or d["layers"]
    hd = a.head_dim or d.get("head_dim", dim // H)
    ff = a.ff or (4 * dim if arch == "phi2" else 2 * dim)
    tied = d["tied"] if a.tied is None else a.tied
    if arch in ("gemma", "gemma2"):
        tied = True  # llama.cpp reads no output.weight for these
    if arch == "phi2":
        tied = False  # output (with bias) is required
    window = d.get("window", 0) if a.window is None else a.window
    m = Model(a)
    V = len(vocab()[0])
    gemma = arch.startswith("gemma")
    norm_mean = 1.0  # the multiplier as stored (gemma's files hold 1 + w)

    # token embeddings: gemma scales them by sqrt(dim) at run time
    emb_std = 1.0 / np.sqrt(dim) if gemma else (0.3 if tied else 1.0)
    e = m.rng.standard_normal((V, dim)) * emb_std
    m.tensors.append(("token_embd.weight", e.astype(np.float32), True))
    for l in range(L):
        b = "blk.%d." % l
        m.vec(b + "attn_norm.weight", dim, norm_mean)
        if arch == "phi2":
            m.vec(b + "attn_norm.bias", dim, 0.0)
        qw, kw = H * hd, KVH * hd
        fused = arch == "phi3" or (arch == "phi2" and a.fused_qkv)
        if fused:
            m.mat(b + "attn_qkv.weight", qw + 2 * kw, dim)
            if arch == "phi2":
                m.vec(b + "attn_qkv.bias", qw + 2 * kw)
        else:
            m.mat(b + "attn_q.weight", qw, dim)
            m.mat(b + "attn_k.weight", kw, dim)
            m.mat(b + "attn_v.weight", kw, dim)
            if arch in ("phi2", "qwen2"):
                m.vec(b + "attn_q.bias", qw)
                m.vec(b + "attn_k.bias", kw)
                m.vec(b + "attn_v.bias", kw)
        if arch in ("qwen3", "gemma3"):
            m.vec(b + "attn_q_norm.weight", hd, norm_mean)
            m.vec(b + "attn_k_norm.weight", hd, norm_mean)
        m.mat(b + "attn_output.weight", dim, qw, gain=2.5)
        if arch == "phi2":
            m.vec(b + "attn_output.bias", dim)
        if arch in ("gemma2", "gemma3"):
            m.vec(b + "post_attention_norm.weight", dim, 2.5 * norm_mean)
        if arch != "phi2":
            m.vec(b + "ffn_norm.weight", dim, norm_mean)
        if arch == "phi3":
            m.mat(b + "ffn_up.weight", 2 * ff, dim)
        elif arch == "phi2":
            m.mat(b + "ffn_up.weight", ff, dim)
            m.vec(b + "ffn_up.bias", ff)
        else:
            m.mat(b + "ffn_gate.weight", ff, dim)
            m.mat(b + "ffn_up.weight", ff, dim)
        m.mat(b + "ffn_down.weight", dim, ff, gain=2.5)
        if arch == "phi2":
            m.vec(b + "ffn_down.bias", dim)
        if arch in ("gemma2", "gemma3"):
            m.vec(b + "post_ffw_norm.weight", dim, 2.5 * norm_mean)
    m.vec("output_norm.weight", dim, norm_mean)
    if arch == "phi2":
        m.vec("output_norm.bias", dim)
    if not tied:
        m.mat("output.weight", V, dim, gain=3.0)
    if arch == "phi2":
        m.vec("output.bias", V, 0.0, 0.5)
    if a.rope_freqs:
        # Llama 3.x: per-frequency divisors of the rotary angles, 1 (high
        # frequencies) up to the factor (low ones), as its converter computes
        n = (a.rope_dim or hd) // 2
        f = np.linspace(1.0, a.rope_freqs, n).astype(np.float32)
        m.tensors.append(("rope_freqs.weight", f, False))
    if a.rope_long:
        # Phi-3 long-context files (longrope): divisors for contexts past the
        # original length (long) and within it (short)
        n = hd // 2
        m.tensors.append(("rope_factors_long.weight", np.linspace(1.0, a.rope_long, n).astype(np.float32), False))
        m.tensors.append(("rope_factors_short.weight", np.linspace(1.0, 1.5, n).astype(np.float32), False))

    gname = "llama" if arch == "mistral" else arch
    w = gguf.GGUFWriter(a.out, gname)
    w.add_name("arch_model %s" % arch)
    w.add_context_length(a.ctx)
    w.add_embedding_length(dim)
    w.add_block_count(L)
    w.add_feed_forward_length(ff)
    w.add_head_count(H)
    w.add_head_count_kv(KVH)
    if arch == "phi2":
        w.add_layer_norm_eps(1e-5)
        rot = a.rope_dim or int(d["rope_pct"] * dim) // H
        rot -= rot % 2
        w.add_rope_dimension_count(rot)
        w.add_add_bos_token(False)
    else:
        w.add_layer_norm_rms_eps(1e-6 if gemma or arch.startswith("qwen") else 1e-5)
        if a.rope_dim:
            w.add_rope_dimension_count(a.rope_dim)
        elif arch in ("llama", "mistral", "phi3"):
            w.add_rope_dimension_count(hd)  # llama's and phi3's converters write it
    if a.head_dim or "head_dim" in d:
        w.add_key_length(hd)
        w.add_value_length(hd)
    base = a.rope_base if a.rope_base else d["rope_base"]
    if arch != "phi2" or a.rope_base:
        w.add_rope_freq_base(base)
    if a.swa_base:
        w.add_rope_freq_base_swa(a.swa_base)
    if a.rope_scale:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(a.rope_scale)
    if arch == "phi3":
        orig = a.orig_ctx or a.ctx
        w.add_rope_scaling_orig_ctx_len(orig)
        if a.rope_long and a.ctx > orig:  # as Phi-3's converter computes it
            w.add_rope_scaling_attn_factors(float(np.sqrt(1 + np.log(a.ctx / orig) / np.log(orig))))
        w.add_sliding_window(window)
    elif window:
        w.add_sliding_window(window)
    if arch == "gemma2":
        w.add_attn_logit_softcapping(a.attn_softcap if a.attn_softcap is not None else d["attn_softcap"])
        w.add_final_logit_softcapping(a.final_softcap if a.final_softcap is not None else d["final_softcap"])
    elif arch == "gemma3":
        fc = a.final_softcap if a.final_softcap is not None else d["final_softcap"]
        if fc:
            w.add_final_logit_softcapping(fc)
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[a.type]
    w.add_file_type(ftype)
    toks, scores, types = vocab()
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    if gemma:
        w.add_add_space_prefix(False)

    qt = QTYPES[a.type]
    for name, arr, is_mat in m.tensors:
        if not is_mat or qt == Q.F32:
            w.add_tensor(name, arr)
        elif qt == Q.F16:
            w.add_tensor(name, arr.astype(np.float16))
        elif arr.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(arr, qt)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qt)
        else:
            w.add_tensor(name, arr.astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("arch", choices=ARCHS)
    p.add_argument("out")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=0)
    p.add_argument("--heads", type=int, default=0)
    p.add_argument("--kv-heads", type=int, default=0)
    p.add_argument("--head-dim", type=int, default=0)
    p.add_argument("--ff", type=int, default=0)
    p.add_argument("--type", choices=sorted(QTYPES), default="f32")
    p.add_argument("--fused-qkv", dest="fused_qkv", action="store_true", default=True)
    p.add_argument("--separate-qkv", dest="fused_qkv", action="store_false")
    p.add_argument("--tied", dest="tied", action="store_true", default=None)
    p.add_argument("--untied", dest="tied", action="store_false")
    p.add_argument("--window", type=int, default=None)
    p.add_argument("--attn-softcap", type=float, default=None)
    p.add_argument("--final-softcap", type=float, default=None)
    p.add_argument("--rope-base", type=float, default=0.0)
    p.add_argument("--rope-dim", type=int, default=0)
    p.add_argument("--rope-scale", type=float, default=0.0)
    p.add_argument("--swa-base", type=float, default=0.0)
    p.add_argument("--rope-freqs", type=float, default=0.0)
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--rope-long", dest="rope_long", type=float, default=0.0)
    p.add_argument("--orig-ctx", dest="orig_ctx", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    build(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
