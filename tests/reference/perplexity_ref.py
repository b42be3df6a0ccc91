#!/usr/bin/env python3
"""perplexity_ref.py: llama.cpp's perplexity method on top of llama_ref.py's
independent float64 numpy forward pass (the reference for `lyra perplexity`).

usage: perplexity_ref.py MODEL.gguf CTX BOS TOKENS_FILE
  TOKENS_FILE: the whole text's token ids, space-separated (as printed by
  `lyra tokenize`, BOS first when the model adds it). BOS: the id every chunk
  starts with, or -1 to keep the chunk's own first token.
Prints `perplexity: X` (4 decimals) and, on a second line, `nll: MEAN` with
more digits.

Method: n_chunks = len(tokens) // CTX; chunk c = tokens[c*CTX:(c+1)*CTX]
with its first token replaced by BOS; the negative log-likelihood of token
j+1 from the logits at j for j = CTX//2 .. CTX-2; perplexity = exp(mean).
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402


def main():
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    path, ctx, bos = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open(sys.argv[4]) as f:
        tokens = [int(t) for t in f.read().split()]
    hp, w = llama_ref.load(path)
    n_chunks = len(tokens) // ctx
    if n_chunks < 2:
        raise SystemExit(f"{len(tokens)} tokens: fewer than 2*{ctx}")
    first = ctx // 2
    nll, count = 0.0, 0
    for c in range(n_chunks):
        chunk = list(tokens[c * ctx:(c + 1) * ctx])
        if bos >= 0:
            chunk[0] = bos
        logits = llama_ref.forward(hp, w, chunk)  # [ctx][n_vocab], float64
        for j in range(first, ctx - 1):
            row = logits[j]
            m = row.max()
            lse = m + math.log(np.exp(row - m).sum())
            nll += lse - row[tokens[c * ctx + j + 1]]
            count += 1
    print("perplexity: %.4f" % math.exp(nll / count))
    print("nll: %.9f" % (nll / count))


if __name__ == "__main__":
    main()
