#!/usr/bin/env python3
"""gguf_write_sample.py: GGUF files written by the gguf package's GGUFWriter,
for tests/unit/test_gguf_python.c (lyra must read them as GGUFReader does)
and for the fuzz seed corpus.

Usage:
  gguf_write_sample.py sample OUT.gguf     every value type, string arrays,
                                           nested arrays, tensors of 6 types
  gguf_write_sample.py align64 OUT.gguf    general.alignment = 64
  gguf_write_sample.py split DIR/NAME      NAME-0000K-of-00003.gguf (2 tensors a part)
  gguf_write_sample.py corpus DIR          tiny seeds for fuzz/corpus/gguf
"""
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def rng_bytes(n, seed):
    return np.random.default_rng(seed).integers(0, 256, size=n, dtype=np.uint8)


def sample(path):
    w = GGUFWriter(path, "llama")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 65000)
    w.add_int16("t.i16", -32000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 0.1)
    w.add_uint64("t.u64", 18000000000000000000)
    w.add_int64("t.i64", -9000000000000000000)
    w.add_float64("t.f64", 2.718281828459045)
    w.add_bool("t.bool.true", True)
    w.add_bool("t.bool.false", False)
    w.add_string("t.str", "h\u00e9llo \"w\\orld\"\n\u2603")
    w.add_string("t.str.empty", "")
    w.add_array("t.arr.str", ["a", "", "\u00fc\u00f1\u00ee", "with space", "x" * 300])
    w.add_array("t.arr.i32", [1, -2, 3, 2147483647, -2147483648])
    w.add_array("t.arr.f32", [0.5, -1.25, 3.4e38, 1e-45])
    w.add_array("t.arr.bool", [True, False, True])
    w.add_key_value("t.arr.u8", [0, 1, 255], 9, sub_type=0)
    w.add_key_value("t.arr.u64", [0, 2**64 - 1], 9, sub_type=10)
    w.add_key_value("t.arr.i64", [-(2**63), 2**63 - 1], 9, sub_type=11)
    w.add_key_value("t.arr.f64", [1.0 / 3.0, -0.0], 9, sub_type=12)
    w.add_key_value("t.arr.u16", [1, 65535], 9, sub_type=2)
    w.add_key_value("t.arr.i16", [-32768, 32767], 9, sub_type=3)
    w.add_key_value("t.arr.i8", [-128, 127], 9, sub_type=1)
    w.add_key_value("t.arr.u32", [7, 4294967295], 9, sub_type=4)
    w.add_array("t.arr.nested", [[1, 2], [3]])
    w.add_array("t.arr.nested.str", [["a", "b"], ["c"]])
    w.add_uint32("t.after.nested", 12345)
    # tensors: shapes are given numpy-style (outermost first)
    w.add_tensor("f32.2d", np.arange(3 * 8, dtype=np.float32).reshape(3, 8) - 5.5)
    w.add_tensor("f16.1d", np.linspace(-2, 2, 10).astype(np.float16))
    w.add_tensor("bf16.raw", rng_bytes(2 * 16, 1).reshape(2, 16), raw_dtype=Q.BF16)
    w.add_tensor("q8_0.raw", rng_bytes(2 * 34 * 2, 2).reshape(2, 68), raw_dtype=Q.Q8_0)
    w.add_tensor("q4_k.raw", rng_bytes(144 * 2, 3).reshape(2, 144), raw_dtype=Q.Q4_K)
    w.add_tensor("f32.4d", np.ones((2, 1, 3, 4), dtype=np.float32))
    finish(w)


def align64(path):
    w = GGUFWriter(path, "llama")
    w.add_custom_alignment(64)
    w.add_string("general.name", "aligned")
    w.add_tensor("a", np.arange(5, dtype=np.float32))
    w.add_tensor("b", np.arange(7, dtype=np.float32))
    finish(w)


def split(prefix):
    w = GGUFWriter(prefix + ".gguf", "llama", split_max_tensors=2)
    w.add_string("general.name", "split")
    w.add_uint32("llama.block_count", 1)
    for i in range(5):
        w.add_tensor("t%d" % i, np.full((i + 1, 4), i, dtype=np.float32))
    finish(w)


def corpus(d):
    os.makedirs(d, exist_ok=True)
    w = GGUFWriter(os.path.join(d, "tiny.gguf"), "llama")
    w.add_uint32("llama.block_count", 1)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_array("tokenizer.ggml.tokens", ["<unk>", "a", "bc"])
    w.add_array("tokenizer.ggml.scores", [0.0, -1.0, -2.0])
    w.add_array("t.nested", [[1, 2], [3]])
    w.add_bool("t.bool", True)
    w.add_tensor("w", np.arange(8, dtype=np.float32).reshape(2, 4))
    w.add_tensor("q", rng_bytes(34, 4).reshape(1, 34), raw_dtype=Q.Q8_0)
    finish(w)
    w = GGUFWriter(os.path.join(d, "kv_only.gguf"), "gpt2")
    w.add_key_value("t.u64", 5, 10)
    w.add_key_value("t.i64", -5, 11)
    w.add_key_value("t.f64", 0.5, 12)
    w.add_key_value("t.u16", 5, 2)
    w.add_string("t.s", "str")
    finish(w)
    w = GGUFWriter(os.path.join(d, "align64.gguf"), "llama")
    w.add_custom_alignment(64)
    w.add_tensor("a", np.arange(4, dtype=np.float16))
    finish(w)
    tiny = open(os.path.join(d, "tiny.gguf"), "rb").read()
    v2 = bytearray(tiny)
    v2[4] = 2
    open(os.path.join(d, "tiny_v2.gguf"), "wb").write(bytes(v2))
    for cut in (3, 20, 60, len(tiny) // 2, len(tiny) - 40):
        open(os.path.join(d, "tiny_cut%d.gguf" % cut), "wb").write(tiny[:cut])


def main():
    mode, out = sys.argv[1], sys.argv[2]
    {"sample": sample, "align64": align64, "split": split, "corpus": corpus}[mode](out)


if __name__ == "__main__":
    main()
