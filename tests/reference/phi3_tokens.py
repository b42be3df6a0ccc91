#!/usr/bin/env python3
"""phi3_tokens.py DIR: give the Phi-3 test snapshot's 512-token vocabulary
(stories260K's, as every tests/data/hf snapshot has) Phi-3's special tokens,
which llama.cpp's loader looks up in models of architecture phi3
(<|endoftext|>) and uses to end turns (<|end|>): the last five single-character
tokens, which no merge uses, become <|endoftext|>, <|assistant|>, <|end|>,
<|user|> and <|system|> (special added tokens, ids 507..511, as Phi-3's own
32000.. are). The weights, logits and expected ids do not change: they are
about ids only. make_hf_snapshots.py runs it on phi3/; it runs alone too
(no torch needed)."""
import json
import os
import sys

SPECIALS = ["<|endoftext|>", "<|assistant|>", "<|end|>", "<|user|>", "<|system|>"]


def main(d):
    p = os.path.join(d, "tokenizer.json")
    with open(p, encoding="utf-8") as f:
        j = json.load(f)
    vocab = j["model"]["vocab"]
    inv = {i: t for t, i in vocab.items()}
    n = len(vocab)
    ids = list(range(n - len(SPECIALS), n))
    for i, s in zip(ids, SPECIALS):
        old = inv[i]
        if old == s:
            continue
        used = any(old in (m if isinstance(m, list) else m.split(" ")) for m in j["model"]["merges"])
        if len(old) != 1 or used:
            sys.exit(f"{p}: token {i} ({old!r}) is not a free single character")
        del vocab[old]
        vocab[s] = i
    added = [a for a in j["added_tokens"] if a["id"] not in ids]
    added += [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
               "normalized": False, "special": True} for i, s in zip(ids, SPECIALS)]
    j["added_tokens"] = sorted(added, key=lambda a: a["id"])
    with open(p, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, separators=(",", ":"))
    c = os.path.join(d, "tokenizer_config.json")
    with open(c, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["eos_token"] = "<|endoftext|>"  # as Phi-3's
    with open(c, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=1)
    g = os.path.join(d, "generation_config.json")
    with open(g, encoding="utf-8") as f:
        gen = json.load(f)
    gen["eos_token_id"] = [ids[0], ids[2]]  # <|endoftext|>, <|end|> (Phi-3's lists 32000, 32007)
    with open(g, "w", encoding="utf-8") as f:
        json.dump(gen, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1])
