#!/usr/bin/env python3
"""spm_ref.py: an independent reference of the SentencePiece-style encoder,
written after llama2.c's encode() (run.c), for checking lyra's tokenizer.

usage: spm_ref.py --tokbin tok512.bin    (llama2.c's tokenizer file)
       spm_ref.py --gguf MODEL.gguf      (tokens/scores from GGUF metadata,
                                          read by the small parser below)
stdin: one text per line, as hex of its UTF-8 bytes ("" = empty text).
stdout: per text, its token ids separated by spaces (no BOS).

The algorithm: a dummy prefix " " when the text is not empty; the text split
into code points (valid UTF-8 assumed); each code point is its piece's id,
else its bytes' <0xNN> ids, else (no byte pieces in the vocabulary) the
unknown id 0; then, while some adjacent pair concatenates to a piece, the
pair whose piece has the highest score is merged (the leftmost on ties).
GGUF pieces have U+2581 for spaces; they are turned into ' ' as llama2.c's
exporter does. Only pieces of type normal/user-defined/unused (or all, for
tok512.bin, which has no types) take part in merges and lookups.
"""
import struct
import sys


def read_tokbin(path):
    d = open(path, "rb").read()
    off = 4  # max_token_length
    pieces, scores = [], []
    while off < len(d):
        sc, ln = struct.unpack_from("<fi", d, off)
        off += 8
        pieces.append(d[off:off + ln])
        scores.append(sc)
        off += ln
    return pieces, scores, [1] * len(pieces)


def read_gguf_tokenizer(path):
    d = open(path, "rb").read()
    if d[:4] != b"GGUF":
        raise SystemExit(f"{path}: not a GGUF file")
    off = 8
    _n_tensors, n_kv = struct.unpack_from("<QQ", d, off)
    off += 16
    scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f",
              7: "<B", 10: "<Q", 11: "<q", 12: "<d"}

    def value(t, off):
        if t in scalar:
            v = struct.unpack_from(scalar[t], d, off)[0]
            return v, off + struct.calcsize(scalar[t])
        if t == 8:
            (n,) = struct.unpack_from("<Q", d, off)
            return d[off + 8:off + 8 + n], off + 8 + n
        if t == 9:
            et, n = struct.unpack_from("<IQ", d, off)
            off += 12
            out = []
            for _ in range(n):
                v, off = value(et, off)
                out.append(v)
            return out, off
        raise SystemExit(f"{path}: value type {t} at {off}")

    kv = {}
    for _ in range(n_kv):
        (n,) = struct.unpack_from("<Q", d, off)
        key = d[off + 8:off + 8 + n].decode()
        off += 8 + n
        (t,) = struct.unpack_from("<I", d, off)
        v, off = value(t, off + 4)
        kv[key] = v
    pieces = [p.replace("\u2581".encode(), b" ") for p in kv["tokenizer.ggml.tokens"]]
    scores = kv.get("tokenizer.ggml.scores", [0.0] * len(pieces))
    types = kv.get("tokenizer.ggml.token_type", [1] * len(pieces))
    return pieces, scores, types


def encode(text, lookup, scores, byte_ids):
    if not text:
        return []
    ids = []
    for ch in " " + text.decode("utf-8"):
        b = ch.encode("utf-8")
        if b in lookup:
            ids.append(lookup[b])
        elif all(x in byte_ids for x in b):
            ids.extend(byte_ids[x] for x in b)
        else:
            ids.append(0)
    pieces_of = {v: k for k, v in lookup.items()}
    while True:
        best, best_i, best_id = None, -1, -1
        for i in range(len(ids) - 1):
            a, c = pieces_of.get(ids[i]), pieces_of.get(ids[i + 1])
            if a is None or c is None:
                continue
            m = lookup.get(a + c)
            if m is not None and (best is None or scores[m] > best):
                best, best_i, best_id = scores[m], i, m
        if best_i < 0:
            return ids
        ids[best_i:best_i + 2] = [best_id]


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("--tokbin", "--gguf"):
        raise SystemExit(__doc__)
    if sys.argv[1] == "--tokbin":
        pieces, scores, types = read_tokbin(sys.argv[2])
    else:
        pieces, scores, types = read_gguf_tokenizer(sys.argv[2])
    lookup = {}
    byte_ids = {}
    for i, (p, t) in enumerate(zip(pieces, types)):
        if t == 6 or (len(p) == 6 and p.startswith(b"<0x") and p.endswith(b">") and sys.argv[1] == "--tokbin"):
            byte_ids[int(p[3:5], 16)] = i
        elif t in (0, 1, 4, 5) and p not in lookup:
            lookup[p] = i
    for line in sys.stdin:
        text = bytes.fromhex(line.strip())
        print(" ".join(str(i) for i in encode(text, lookup, scores, byte_ids)))


if __name__ == "__main__":
    main()
