#!/usr/bin/env python3
"""quant_ref.py OUTDIR: reference data for lyra's quant module from the PyPI
`gguf` package (gguf.quants), read by tests/unit/test_quant_ref.c.

For each weight type it writes
  OUTDIR/<TYPE>.blocks   random VALID blocks (random bytes; the f16 scale
                         fields replaced by random finite halves, including
                         subnormals, zero and negatives)
  OUTDIR/<TYPE>.deq      gguf.quants.dequantize of those blocks (f32 LE)
F16 and BF16 blocks are every one of the 65536 bit patterns (inf/NaN too).
For the types gguf can quantize (F16, BF16, Q8_0, Q4_0, Q5_0) it also writes
  OUTDIR/<TYPE>.src      random f32 rows (LE), with zero blocks, ties and
                         blocks of equal magnitudes mixed in
  OUTDIR/<TYPE>.quant    gguf.quants.quantize of them (raw bytes)
Deterministic: numpy's default_rng(seed 1234)."""
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES

# byte offsets of the f16 scale fields inside one block
HALF_FIELDS = {
    T.Q8_0: [0],
    T.Q4_0: [0],
    T.Q5_0: [0],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
}
NBLOCKS = 512


def random_halves(rng, n):
    """Finite float16 bit patterns: mostly normal values of moderate size,
    some subnormals, zeros and large values."""
    kind = rng.integers(0, 10, n)
    mag = rng.uniform(-12, 4, n)  # log2 of |x|
    vals = np.exp2(mag) * np.where(rng.integers(0, 2, n) == 1, -1.0, 1.0)
    h = vals.astype(np.float16).view(np.uint16)
    sub = rng.integers(0, 0x400, n, dtype=np.uint16) | (rng.integers(0, 2, n, dtype=np.uint16) << 15)
    big = (rng.integers(0, 0x7bff, n, dtype=np.uint16))  # any finite positive
    h = np.where(kind == 0, sub, h)
    h = np.where(kind == 1, big, h)
    h = np.where(kind == 2, np.uint16(0), h)
    return h.astype(np.uint16)


def write(path, arr):
    with open(path, "wb") as f:
        f.write(np.ascontiguousarray(arr).tobytes())


def source_rows(rng, nblocks, bs):
    x = rng.standard_normal(nblocks * bs).astype(np.float32) * np.float32(0.05)
    x = x.reshape(nblocks, bs)
    x[0] = 0.0                                   # all-zero block
    x[1] = np.float32(0.25) * np.sign(rng.standard_normal(bs)).astype(np.float32)  # equal magnitudes
    x[2] = (rng.integers(-16, 17, bs) / 16.0).astype(np.float32)  # many exact ties
    x[3] = rng.standard_normal(bs).astype(np.float32) * np.float32(1e-6)  # tiny
    x[4] = rng.standard_normal(bs).astype(np.float32) * np.float32(3e4)   # large
    return x.reshape(-1)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(1234)

    # float types: every bit pattern
    allbits = np.arange(65536, dtype=np.uint16)
    for t in (T.F16, T.BF16):
        blocks = allbits.view(np.uint8)
        write(os.path.join(out, t.name + ".blocks"), blocks)
        write(os.path.join(out, t.name + ".deq"), quants.dequantize(blocks, t).astype(np.float32))

    # quantized types: random valid blocks
    for t, fields in HALF_FIELDS.items():
        bs, ts = GGML_QUANT_SIZES[t]
        blocks = rng.integers(0, 256, (NBLOCKS, ts), dtype=np.uint8)
        for off in fields:
            blocks[:, off:off + 2] = random_halves(rng, NBLOCKS).view(np.uint8).reshape(NBLOCKS, 2)
        write(os.path.join(out, t.name + ".blocks"), blocks)
        deq = quants.dequantize(blocks.reshape(-1), t).astype(np.float32)
        assert deq.size == NBLOCKS * bs
        write(os.path.join(out, t.name + ".deq"), deq)

    # quantizers gguf implements
    for t in (T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q5_0):
        bs = 32
        x = source_rows(rng, NBLOCKS, bs)
        if t in (T.F16, T.BF16):
            # add special values: inf, nan, halfway cases, overflow, subnormals
            extra = np.array([np.inf, -np.inf, np.nan, 65504.0, 65519.99, 65520.0, 1e-8, -3e-8,
                              6.0e-8, 2.98e-8, 1.0 + 2**-11, 1.0 + 3 * 2**-11, 3.4e38, -0.0],
                             dtype=np.float32)
            x[: extra.size] = extra
            bits = rng.integers(0, 2**32, 4096, dtype=np.uint64).astype(np.uint32).view(np.float32)
            x = np.concatenate([x, bits])
        q = quants.quantize(x.reshape(1, -1), t)
        write(os.path.join(out, t.name + ".src"), x.astype(np.float32))
        write(os.path.join(out, t.name + ".quant"), np.asarray(q).view(np.uint8).reshape(-1))
    print("ok")


if __name__ == "__main__":
    main()
