#!/usr/bin/env python3
"""pretok_ref.py: reference pre-tokenizer splits, with Python's `regex`
module, for checking lyra's PCRE2 pre-tokenizers (tokenizer.ggml.pre).

usage: pretok_ref.py PRE     (e.g. gpt-2, llama-bpe, qwen2, falcon, ...)
stdin: one text per line, as hex of its UTF-8 bytes.
stdout: per text, its pieces as hex, separated by spaces.
Exit status 3 when the `regex` module is missing.

Each pattern list is applied in order (Hugging Face's Sequence of Split
pre-tokenizers with behaviour "isolated"): every piece left by the previous
pattern is cut into its matches and the gaps between them, both kept.
The patterns are those of the models' tokenizer.json files.
"""
import sys

try:
    import regex
except ImportError:
    sys.stderr.write("pretok_ref.py: the regex module is not installed\n")
    sys.exit(3)

CONTR = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3 = CONTR + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = CONTR + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
UP = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]"
LO = r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"
GPT4O = (r"[^\r\n\p{L}\p{N}]?" + UP + "*" + LO + "+" + CONTR + "?"
         r"|[^\r\n\p{L}\p{N}]?" + UP + "+" + LO + "*" + CONTR + "?"
         r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
TEKKEN = (r"[^\r\n\p{L}\p{N}]?" + UP + "*" + LO + "+"
          r"|[^\r\n\p{L}\p{N}]?" + UP + "+" + LO + "*"
          r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
CJK = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"

PRES = {
    ("default", "gpt-2", "gpt2", "mpt", "olmo", "phi-2", "jais"): [GPT2],
    ("llama-bpe", "llama3", "dbrx", "smaug-bpe"): [LLAMA3],
    ("qwen2", "stablelm2"): [QWEN2],
    ("starcoder", "refact", "command-r", "smollm"): [r"\p{N}", GPT2],
    ("falcon",): [r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"],
    ("deepseek-coder",): ["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK, r"\p{N}"],
    ("gpt-4o",): [GPT4O],
    ("tekken",): [TEKKEN],
}


def split(text, patterns):
    pieces = [text]
    for p in patterns:
        out = []
        for piece in pieces:
            pos = 0
            for m in regex.finditer(p, piece):
                if m.end() == m.start():
                    continue
                if m.start() > pos:
                    out.append(piece[pos:m.start()])
                out.append(m.group())
                pos = m.end()
            if pos < len(piece):
                out.append(piece[pos:])
        pieces = out
    return pieces


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    pats = next((v for k, v in PRES.items() if sys.argv[1] in k), None)
    if pats is None:
        raise SystemExit(f"pretok_ref.py: unknown pre {sys.argv[1]!r}")
    for line in sys.stdin:
        text = bytes.fromhex(line.strip()).decode("utf-8")
        print(" ".join(p.encode("utf-8").hex() for p in split(text, pats)))


if __name__ == "__main__":
    main()
