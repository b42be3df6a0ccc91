#!/usr/bin/env python3
"""llama_ref.py: an independent float64 numpy implementation of the Llama
forward pass, reading a GGUF file with the gguf package (weights dequantized by
gguf.quants). Used by tests to check lyra's logits.

usage: llama_ref.py MODEL.gguf TOKENS [--last]
  TOKENS: comma-separated token ids evaluated from position 0.
  Prints one line per position: the n_vocab logits ("%.9g", space-separated);
  with --last only the last position's line. Greedy generation:
  llama_ref.py MODEL.gguf TOKENS --greedy N prints N generated ids.
"""
import sys

import numpy as np
import gguf


def field(r, key, default=None):
    f = r.fields.get(key)
    if f is None:
        return default
    v = f.contents()
    return v


def load(path):
    r = gguf.GGUFReader(path)
    arch = field(r, "general.architecture")
    if arch != "llama":
        raise SystemExit(f"{path}: architecture {arch!r} is not llama")
    p = "llama."
    hp = {
        "n_embd": int(field(r, p + "embedding_length")),
        "n_layer": int(field(r, p + "block_count")),
        "n_ff": int(field(r, p + "feed_forward_length")),
        "n_head": int(field(r, p + "attention.head_count")),
    }
    hp["n_head_kv"] = int(field(r, p + "attention.head_count_kv", hp["n_head"]))
    hp["eps"] = float(field(r, p + "attention.layer_norm_rms_epsilon", 1e-5))
    hp["base"] = float(field(r, p + "rope.freq_base", 10000.0))
    hp["head_dim"] = hp["n_embd"] // hp["n_head"]
    hp["n_rot"] = int(field(r, p + "rope.dimension_count", hp["head_dim"]))
    scale = 1.0
    stype = field(r, p + "rope.scaling.type")
    if stype == "linear":
        scale = 1.0 / float(field(r, p + "rope.scaling.factor", 1.0))
    hp["freq_scale"] = scale
    w = {}
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type)
        ne = [int(x) for x in t.shape]  # ne[0] first (contiguous)
        w[t.name] = np.asarray(a, dtype=np.float64).reshape(list(reversed(ne)))
    if "output.weight" not in w:
        w["output.weight"] = w["token_embd.weight"]
    return hp, w


def rmsnorm(x, g, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g


def rope(x, pos, hp, ff):
    # x [T][H][D]; rotate pairs (2i, 2i+1) for i < n_rot/2
    n_rot = hp["n_rot"]
    i = np.arange(n_rot // 2, dtype=np.float64)
    inv = hp["freq_scale"] * hp["base"] ** (-2.0 * i / n_rot)
    if ff is not None:
        inv = inv / ff
    th = np.asarray(pos, dtype=np.float64)[:, None] * inv[None, :]  # [T][n_rot/2]
    c = np.cos(th)[:, None, :]
    s = np.sin(th)[:, None, :]
    a = x[..., 0:n_rot:2].copy()
    b = x[..., 1:n_rot:2].copy()
    y = x.copy()
    y[..., 0:n_rot:2] = a * c - b * s
    y[..., 1:n_rot:2] = a * s + b * c
    return y


def forward(hp, w, tokens):
    T = len(tokens)
    D, H, KVH = hp["head_dim"], hp["n_head"], hp["n_head_kv"]
    ff = w.get("rope_freqs.weight")
    x = w["token_embd.weight"][np.asarray(tokens)]  # [T][n_embd]
    pos = np.arange(T)
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(hp["n_layer"]):
        b = f"blk.{l}."
        xn = rmsnorm(x, w[b + "attn_norm.weight"], hp["eps"])
        q = (xn @ w[b + "attn_q.weight"].T).reshape(T, H, D)
        k = (xn @ w[b + "attn_k.weight"].T).reshape(T, KVH, D)
        v = (xn @ w[b + "attn_v.weight"].T).reshape(T, KVH, D)
        q = rope(q, pos, hp, ff)
        k = rope(k, pos, hp, ff)
        out = np.empty((T, H, D))
        g = H // KVH
        for h in range(H):
            s = q[:, h, :] @ k[:, h // g, :].T / np.sqrt(D) + mask  # [T][T]
            s = s - s.max(axis=1, keepdims=True)
            e = np.exp(s)
            p = e / e.sum(axis=1, keepdims=True)
            out[:, h, :] = p @ v[:, h // g, :]
        x = x + out.reshape(T, H * D) @ w[b + "attn_output.weight"].T
        xn = rmsnorm(x, w[b + "ffn_norm.weight"], hp["eps"])
        gt = xn @ w[b + "ffn_gate.weight"].T
        up = xn @ w[b + "ffn_up.weight"].T
        hdn = gt / (1.0 + np.exp(-gt)) * up
        x = x + hdn @ w[b + "ffn_down.weight"].T
    x = rmsnorm(x, w["output_norm.weight"], hp["eps"])
    return x @ w["output.weight"].T  # [T][n_vocab]


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    hp, w = load(sys.argv[1])
    tokens = [int(t) for t in sys.argv[2].split(",") if t]
    args = sys.argv[3:]
    if args and args[0] == "--greedy":
        for _ in range(int(args[1])):
            tok = int(np.argmax(forward(hp, w, tokens)[-1]))
            tokens.append(tok)
            print(tok)
        return
    logits = forward(hp, w, tokens)
    rows = logits[-1:] if "--last" in args else logits
    out = sys.stdout
    for row in rows:
        out.write(" ".join("%.9g" % v for v in row) + "\n")


if __name__ == "__main__":
    main()
