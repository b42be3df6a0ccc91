#!/usr/bin/env python3
"""arch_ref.py: an independent float64 numpy forward pass for every
architecture of issue 13 (llama incl. Mistral's sliding window and Llama 3's
rope_freqs, phi2, qwen2, qwen3, gemma, gemma2, gemma3, phi3), written from
the published model definitions (Hugging Face transformers' modeling code),
reading a GGUF file with the gguf package (weights dequantized by
gguf.quants). The same command line as llama_ref.py:

usage: arch_ref.py MODEL.gguf TOKENS [--last] [--n-ctx N]
  TOKENS: comma-separated token ids evaluated from position 0.
  Prints one line per position: the n_vocab logits ("%.9g", space-separated);
  with --last only the last position's line. Greedy generation:
  arch_ref.py MODEL.gguf TOKENS --greedy N prints N generated ids.
  --n-ctx N: the context size the engine runs with (default: the file's
  context_length); it picks Phi-3's long or short rope factors.

What is taken from each definition (the GGUF file supplies the numbers):
  llama   RMSNorm, rotary on pairs (2i, 2i+1) (the converter permutes Q/K
          to that order), SwiGLU; attention.sliding_window (Mistral): every
          layer attends to the last `window` positions only
  phi2    one LayerNorm (with bias) feeding attention and MLP in parallel:
          x + attn(ln(x)) + mlp(ln(x)); NeoX rotary on the first
          rope.dimension_count dims of each head; gelu_new (tanh form); fused
          or separate QKV; biases everywhere, also on the output
  qwen2   NeoX rotary, Q/K/V biases; output tied when output.weight absent
  qwen3   RMSNorm over each head of Q and K (attn_q_norm/attn_k_norm)
          before rotary; head size attention.key_length
  gemma   embeddings * sqrt(dim); GeGLU gelu_tanh(gate) * up; norms as
          stored (the file holds 1 + w); head size key_length; tied output
  gemma2  + post-attention and post-FFN norms; attention scores and final
          logits soft-capped (cap * tanh(x / cap)); sliding window on even
          layers (0, 2, ...); query scale 1/sqrt(head size) (what
          query_pre_attn_scalar = head_dim gives; llama.cpp does the same)
  gemma3  + Q/K norms; window on layers with (l + 1) % 6 != 0; rotary base
          rope.freq_base_swa (default 10000) and no scaling on window
          layers, rope.freq_base and linear rope scaling on the others;
          final soft-cap only when the file has one
  phi3    fused QKV, fused gate/up (first half gate), NeoX rotary; its
          attention.sliding_window is ignored (llama.cpp disables Phi-3 SWA);
          long-context files (longrope): rotary angles divided by
          rope_factors_long when the context exceeds
          rope.scaling.original_context_length, else by rope_factors_short,
          and cos/sin scaled by rope.scaling.attn_factor (so are q and k)
  any     attention.sliding_window_pattern (an int n: layer l slides when
          l % n < n - 1; or a bool per layer) overrides gemma2/3's pattern;
          any `<tensor>.bias` present is added.
"""
import sys

import numpy as np
import gguf

ROPE_NORM, ROPE_NEOX = 0, 2


def field(r, key, default=None):
    f = r.fields.get(key)
    if f is None:
        return default
    return f.contents()


def load(path, n_ctx=0):
    r = gguf.GGUFReader(path)
    arch = field(r, "general.architecture")
    if arch not in ("llama", "phi2", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3"):
        raise SystemExit(f"{path}: architecture {arch!r} is not supported")
    p = arch + "."
    hp = {"arch": arch}
    hp["n_embd"] = int(field(r, p + "embedding_length"))
    hp["n_layer"] = int(field(r, p + "block_count"))
    hp["n_ff"] = int(field(r, p + "feed_forward_length"))
    hp["n_head"] = int(field(r, p + "attention.head_count"))
    hp["n_head_kv"] = int(field(r, p + "attention.head_count_kv", hp["n_head"]))
    hp["head_dim"] = int(field(r, p + "attention.key_length", hp["n_embd"] // hp["n_head"]))
    hp["head_dim_v"] = int(field(r, p + "attention.value_length", hp["head_dim"]))
    hp["n_rot"] = int(field(r, p + "rope.dimension_count", hp["head_dim"]))
    hp["rope_style"] = ROPE_NORM if arch == "llama" else ROPE_NEOX
    hp["layernorm"] = arch == "phi2"
    hp["eps"] = float(field(r, p + ("attention.layer_norm_epsilon" if hp["layernorm"]
                                    else "attention.layer_norm_rms_epsilon"), 1e-5))
    hp["parallel"] = arch == "phi2"
    hp["act"] = "gelu" if arch in ("phi2", "gemma", "gemma2", "gemma3") else "silu"
    hp["embd_scale"] = np.sqrt(hp["n_embd"]) if arch.startswith("gemma") else 1.0
    hp["post_norms"] = arch in ("gemma2", "gemma3")
    hp["attn_softcap"] = float(field(r, p + "attn_logit_softcapping", 50.0)) if arch == "gemma2" else 0.0
    fdef = 30.0 if arch == "gemma2" else 0.0
    hp["final_softcap"] = float(field(r, p + "final_logit_softcapping", fdef)) if arch.startswith("gemma") else 0.0
    base = float(field(r, p + "rope.freq_base", 10000.0))
    scale = 1.0
    if field(r, p + "rope.scaling.type") == "linear":
        scale = 1.0 / float(field(r, p + "rope.scaling.factor", 1.0))
    window = int(field(r, p + "attention.sliding_window", 0) or 0)
    if arch not in ("llama", "gemma2", "gemma3"):
        window = 0  # phi3: disabled as llama.cpp does; qwen: not used
    L = hp["n_layer"]
    if window == 0:
        swa = [False] * L
    elif arch == "llama":
        swa = [True] * L
    else:
        pat = field(r, p + "attention.sliding_window_pattern", 2 if arch == "gemma2" else 6)
        if isinstance(pat, list):
            swa = [bool(x) for x in pat]
        else:
            n = int(pat)
            swa = [n == 0 or l % n < n - 1 for l in range(L)]
    hp["window"] = window
    hp["swa"] = swa
    if arch == "gemma3":
        swa_base, swa_scale = float(field(r, p + "rope.freq_base_swa", 10000.0)), 1.0
    else:
        swa_base, swa_scale = float(field(r, p + "rope.freq_base_swa", base)), scale
    hp["rope"] = [(swa_base, swa_scale) if swa[l] else (base, scale) for l in range(L)]
    n_ctx = n_ctx or int(field(r, p + "context_length", 0))
    orig = int(field(r, p + "rope.scaling.original_context_length", 0) or 0) or n_ctx
    hp["rope_ff"] = "rope_factors_long.weight" if n_ctx > orig else "rope_factors_short.weight"
    hp["attn_factor"] = float(field(r, p + "rope.scaling.attn_factor", 1.0))
    w = {}
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type)
        ne = [int(x) for x in t.shape]  # ne[0] first (contiguous)
        w[t.name] = np.asarray(a, dtype=np.float64).reshape(list(reversed(ne)))
    if "output.weight" not in w or arch in ("gemma", "gemma2"):
        w["output.weight"] = w["token_embd.weight"]
    return hp, w


def rmsnorm(x, g, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g


def layernorm(x, g, b, eps):
    mu = np.mean(x, axis=-1, keepdims=True)
    xc = x - mu
    y = xc / np.sqrt(np.mean(xc * xc, axis=-1, keepdims=True) + eps) * g
    return y + b if b is not None else y


def gelu(x):  # the tanh form: gelu_new, gelu_pytorch_tanh
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def rope(x, pos, n_rot, style, base, scale, ff):
    """x [T][H][D]: rotate the first n_rot dims of each head by position."""
    half = n_rot // 2
    i = np.arange(half, dtype=np.float64)
    inv = scale * base ** (-2.0 * i / n_rot)
    if ff is not None:
        inv = inv / ff
    th = np.asarray(pos, dtype=np.float64)[:, None] * inv[None, :]
    c = np.cos(th)[:, None, :]
    s = np.sin(th)[:, None, :]
    y = x.copy()
    if style == ROPE_NORM:
        ia, ib = np.arange(0, n_rot, 2), np.arange(1, n_rot, 2)
    else:
        ia, ib = np.arange(0, half), np.arange(half, n_rot)
    a, b = x[..., ia], x[..., ib]
    y[..., ia] = a * c - b * s
    y[..., ib] = a * s + b * c
    return y


class Ref:
    def __init__(self, hp, w):
        self.hp, self.w = hp, w

    def linear(self, x, name):
        y = x @ self.w[name + ".weight"].T
        b = self.w.get(name + ".bias")
        return y + b if b is not None else y

    def norm(self, x, name):
        hp = self.hp
        if hp["layernorm"]:
            return layernorm(x, self.w[name + ".weight"], self.w.get(name + ".bias"), hp["eps"])
        return rmsnorm(x, self.w[name + ".weight"], hp["eps"])

    def attention(self, l, xn, pos):
        hp, w = self.hp, self.w
        T = xn.shape[0]
        H, KVH, D, Dv = hp["n_head"], hp["n_head_kv"], hp["head_dim"], hp["head_dim_v"]
        b = f"blk.{l}."
        if b + "attn_qkv.weight" in w:
            qkv = self.linear(xn, b + "attn_qkv")
            q = qkv[:, :H * D]
            k = qkv[:, H * D:H * D + KVH * D]
            v = qkv[:, H * D + KVH * D:]
        else:
            q = self.linear(xn, b + "attn_q")
            k = self.linear(xn, b + "attn_k")
            v = self.linear(xn, b + "attn_v")
        q = q.reshape(T, H, D)
        k = k.reshape(T, KVH, D)
        v = v.reshape(T, KVH, Dv)
        if b + "attn_q_norm.weight" in w:
            q = rmsnorm(q, w[b + "attn_q_norm.weight"], hp["eps"])
            k = rmsnorm(k, w[b + "attn_k_norm.weight"], hp["eps"])
        base, scale = hp["rope"][l]
        ff = w.get("rope_freqs.weight", w.get(hp["rope_ff"]))
        q = rope(q, pos, hp["n_rot"], hp["rope_style"], base, scale, ff) * hp["attn_factor"]
        k = rope(k, pos, hp["n_rot"], hp["rope_style"], base, scale, ff) * hp["attn_factor"]
        ii, jj = np.meshgrid(pos, pos, indexing="ij")
        allowed = jj <= ii
        if hp["swa"][l]:
            allowed &= (ii - jj) < hp["window"]
        mask = np.where(allowed, 0.0, -np.inf)
        out = np.empty((T, H, Dv))
        g = H // KVH
        cap = hp["attn_softcap"]
        for h in range(H):
            s = q[:, h, :] @ k[:, h // g, :].T / np.sqrt(D)
            if cap:
                s = cap * np.tanh(s / cap)
            s = s + mask
            s = s - s.max(axis=1, keepdims=True)
            e = np.exp(s)
            out[:, h, :] = (e / e.sum(axis=1, keepdims=True)) @ v[:, h // g, :]
        return self.linear(out.reshape(T, H * Dv), b + "attn_output")

    def mlp(self, l, xn):
        hp, w = self.hp, self.w
        b = f"blk.{l}."
        act = gelu if hp["act"] == "gelu" else silu
        if b + "ffn_gate.weight" in w:
            return self.linear(act(self.linear(xn, b + "ffn_gate")) * self.linear(xn, b + "ffn_up"), b + "ffn_down")
        up = self.linear(xn, b + "ffn_up")
        if up.shape[1] == 2 * hp["n_ff"]:  # phi3: [gate; up]
            up = act(up[:, :hp["n_ff"]]) * up[:, hp["n_ff"]:]
        else:  # phi2: no gate
            up = act(up)
        return self.linear(up, b + "ffn_down")

    def forward(self, tokens):
        hp, w = self.hp, self.w
        T = len(tokens)
        x = w["token_embd.weight"][np.asarray(tokens)] * hp["embd_scale"]
        pos = np.arange(T)
        for l in range(hp["n_layer"]):
            b = f"blk.{l}."
            xn = self.norm(x, b + "attn_norm")
            if hp["parallel"]:
                x = x + self.attention(l, xn, pos) + self.mlp(l, xn)
                continue
            a = self.attention(l, xn, pos)
            if hp["post_norms"]:
                a = self.norm(a, b + "post_attention_norm")
            x = x + a
            f = self.mlp(l, self.norm(x, b + "ffn_norm"))
            if hp["post_norms"]:
                f = self.norm(f, b + "post_ffw_norm")
            x = x + f
        x = self.norm(x, "output_norm")
        logits = self.linear(x, "output")
        cap = hp["final_softcap"]
        if cap:
            logits = cap * np.tanh(logits / cap)
        return logits  # [T][n_vocab]


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    args = sys.argv[3:]
    n_ctx = 0
    if "--n-ctx" in args:
        i = args.index("--n-ctx")
        n_ctx = int(args[i + 1])
        del args[i:i + 2]
    ref = Ref(*load(sys.argv[1], n_ctx))
    tokens = [int(t) for t in sys.argv[2].split(",") if t]
    if args and args[0] == "--greedy":
        for _ in range(int(args[1])):
            tok = int(np.argmax(ref.forward(tokens)[-1]))
            tokens.append(tok)
            print(tok)
        return
    logits = ref.forward(tokens)
    rows = logits[-1:] if "--last" in args else logits
    out = sys.stdout
    for row in rows:
        out.write(" ".join("%.9g" % v for v in row) + "\n")


if __name__ == "__main__":
    main()
