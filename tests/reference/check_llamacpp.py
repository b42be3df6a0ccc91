#!/usr/bin/env python3
"""check_llamacpp.py: validates arch_model.py (the GGUF writer) and arch_ref.py
(the float64 reference) against llama.cpp, through llama-cpp-python, for
every architecture of issue 13 -- independently of lyra. Not run by ctest
(llama-cpp-python is not a CI dependency); its results are recorded in
tests/reference/README.md.

usage: check_llamacpp.py [--dir DIR] [--only ARCH,...] [--json OUT]
  needs a Python with numpy, gguf and llama_cpp (e.g. /work/venv-ref).

For each variant (architecture x options x weight type) it writes the model
with arch_model.py, loads it in llama.cpp (n_ctx 64, F32 K and V caches,
logits_all), and compares:
  logits  the 16 positions of a fixed token list (BOS + 15 tokens, longer
          than the default windows of 5) against arch_ref.py: max |diff|
          relative to max |logit|. llama.cpp's CPU GELU goes through an f16
          table (input and output rounded to f16), so for GELU models the
          reference is also run with that rounding ("ref~f16gelu"): what is
          left is llama.cpp's f32 arithmetic.
  greedy  16 tokens from BOS, llama.cpp's argmax after each token against
          arch_ref.py's, compared up to the first step where the reference's
          top two are within 1e-3 of the logit range (a near tie); required
          for F32 and F16 weights, reported for Q8_0/Q4_0.
llama.cpp ignores `llama.attention.sliding_window` (Mistral) and Phi-3's
window; for the Mistral variant the reference is also run with the window
off ("ref-nowin"), which is what llama.cpp computes, and the row shows how
much the window changes the logits.
Exit status 1 if a variant exceeds its tolerance.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import arch_ref  # noqa: E402

TOKENS = [1, 300, 50, 7, 99, 260, 270, 280, 290, 310, 3, 120, 64, 301, 33, 200]
N_GREEDY = 16
# (label, arch, extra arch_model.py options)
VARIANTS = [
    ("llama", "llama", []),
    ("llama-tied", "llama", ["--tied"]),
    ("llama3-ropefreqs8", "llama", ["--rope-freqs", "8"]),
    ("llama-linear4", "llama", ["--rope-scale", "4"]),
    ("mistral-win5", "mistral", []),
    ("phi2-fused", "phi2", []),
    ("phi2-separate", "phi2", ["--separate-qkv"]),
    ("qwen2-tied", "qwen2", []),
    ("qwen2-untied", "qwen2", ["--untied"]),
    ("qwen2-base1e4-linear2", "qwen2", ["--rope-base", "10000", "--rope-scale", "2"]),
    ("qwen3", "qwen3", []),
    ("gemma", "gemma", []),
    ("gemma2", "gemma2", []),
    ("gemma3", "gemma3", []),
    ("gemma3-linear4", "gemma3", ["--rope-scale", "4"]),
    ("gemma3-swabase5000", "gemma3", ["--swa-base", "5000"]),
    ("phi3", "phi3", []),
    ("phi3-longrope-long", "phi3", ["--rope-long", "4", "--orig-ctx", "32"]),
    ("phi3-longrope-short", "phi3", ["--rope-long", "4", "--orig-ctx", "512", "--ctx", "1024"]),
]
# tolerances (max |diff| / max |logit|): llama.cpp computes in f32 but rounds
# activations to f16 for F16 weights and to Q8_0 for Q8_0/Q4_0 weights (as
# lyra does), which these random, untrained models amplify; a wrong tensor
# layout, scale or block order shows as an O(1) difference
TYPES = [("f32", 1e-3), ("f16", 5e-3), ("q8_0", 0.1), ("q4_0", 0.1)]


def gelu_f16(x):
    """llama.cpp's CPU GELU: f16 input, a table of f16 results."""
    xh = x.astype(np.float16).astype(np.float64)
    y = 0.5 * xh * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (xh + 0.044715 * xh ** 3)))
    y = y.astype(np.float16).astype(np.float64)
    return np.where(x <= -10.0, 0.0, np.where(x >= 10.0, x, y))


def ref_logits(path, tokens, f16gelu=False, nowindow=False):
    hp, w = arch_ref.load(path, 64)  # llama.cpp runs with n_ctx 64
    if nowindow:
        hp["swa"] = [False] * hp["n_layer"]
    saved = arch_ref.gelu
    if f16gelu:
        arch_ref.gelu = gelu_f16
    try:
        return arch_ref.Ref(hp, w).forward(tokens), hp
    finally:
        arch_ref.gelu = saved


def ref_greedy(path, n, f16gelu=False, nowindow=False):
    hp, w = arch_ref.load(path, 64)  # llama.cpp runs with n_ctx 64
    if nowindow:
        hp["swa"] = [False] * hp["n_layer"]
    saved = arch_ref.gelu
    if f16gelu:
        arch_ref.gelu = gelu_f16
    try:
        r = arch_ref.Ref(hp, w)
        toks, ids, margins = [1], [], []
        for _ in range(n):
            lg = r.forward(toks)[-1]
            o = np.sort(lg)
            ids.append(int(np.argmax(lg)))
            margins.append(float((o[-1] - o[-2]) / max(1e-30, np.abs(lg).max())))
            toks.append(ids[-1])
        return ids, margins
    finally:
        arch_ref.gelu = saved


def llamacpp(path, tokens, n_greedy):
    from llama_cpp import Llama
    kw = dict(model_path=path, n_ctx=64, n_batch=64, n_ubatch=64, logits_all=True, verbose=False,
              n_threads=2, type_k=0, type_v=0, seed=0)
    try:
        llm = Llama(flash_attn=False, **kw)
    except TypeError:
        llm = Llama(**kw)
    llm.reset()
    llm.eval(tokens)
    logits = np.array(llm.scores[:len(tokens)], dtype=np.float64)
    llm.reset()
    seq = [1]
    llm.eval(seq)
    ids = []
    for _ in range(n_greedy):
        t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        ids.append(t)
        llm.eval([t])
    del llm
    return logits, ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/arch-llamacpp")
    ap.add_argument("--only", default="")
    ap.add_argument("--types", default=",".join(t for t, _ in TYPES))
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    only = set(x for x in a.only.split(",") if x)
    types = [t for t in TYPES if t[0] in a.types.split(",")]
    rows, bad = [], 0
    print("| variant | type | max rel diff ref | ref~f16gelu | greedy equal | tol | ok |")
    print("|---|---|---|---|---|---|---|")
    for label, arch, opts in VARIANTS:
        if only and label not in only and arch not in only:
            continue
        for ty, tol in types:
            path = os.path.join(a.dir, f"{label}-{ty}.gguf")
            subprocess.run([sys.executable, os.path.join(HERE, "arch_model.py"), arch, path, "--type", ty] + opts,
                           check=True)
            nowin = arch == "mistral"
            gelu_arch = arch in ("phi2", "gemma", "gemma2", "gemma3")
            lc, lc_ids = llamacpp(path, TOKENS, N_GREEDY)
            ref, _ = ref_logits(path, TOKENS, nowindow=nowin)
            rng = np.abs(ref).max()
            d_ref = float(np.abs(lc - ref).max() / rng)
            d_f16 = None
            if gelu_arch:
                ref16, _ = ref_logits(path, TOKENS, f16gelu=True, nowindow=nowin)
                d_f16 = float(np.abs(lc - ref16).max() / rng)
            win_effect = None
            if nowin:
                refw, _ = ref_logits(path, TOKENS)
                win_effect = float(np.abs(refw - ref).max() / rng)
            ids, margins = ref_greedy(path, N_GREEDY, f16gelu=gelu_arch, nowindow=nowin)
            # compared up to (not including) the first near tie
            cmp_n = next((i for i, mg in enumerate(margins) if mg < 1e-3), N_GREEDY)
            eq = ids[:cmp_n] == lc_ids[:cmp_n]
            best = d_f16 if d_f16 is not None else d_ref
            # greedy must agree for f32/f16; quantized rows report it only
            ok = best <= tol and (eq or ty in ("q8_0", "q4_0"))
            bad += not ok
            note = f" (window changes logits by {win_effect:.3g}; llama.cpp has no window here)" if win_effect else ""
            print(f"| {label} | {ty} | {d_ref:.3g} | {'' if d_f16 is None else '%.3g' % d_f16} | "
                  f"{'yes' if eq else 'NO'} ({cmp_n}/{N_GREEDY}) | {tol:g} | {'ok' if ok else 'FAIL'} |{note}",
                  flush=True)
            rows.append(dict(variant=label, type=ty, rel_diff=d_ref, rel_diff_f16gelu=d_f16, greedy_equal=eq,
                             greedy_compared=cmp_n, tol=tol, ok=ok, window_effect=win_effect,
                             ref_ids=ids, llamacpp_ids=lc_ids))
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
