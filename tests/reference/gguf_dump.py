#!/usr/bin/env python3
"""gguf_dump.py: the reference dump of a GGUF file, made with the gguf package
(GGUFReader), which tests/unit/test_gguf_python.c compares line by line with
the same dump made through lyra's reader.

Usage: gguf_dump.py FILE [MORE_PARTS...]
Metadata comes from the first file; tensors from every file given (the parts
of a split model, in order). Format, one item a line:
  version V
  kv N
  key NAME TYPE VALUE         scalars; strings quoted with \\xNN escapes
  key NAME array[ETYPE;N] V1,V2,...   (nested arrays: array[array;N] only)
  tensors M
  tensor I part P name "NAME" type T ne [A,B] offset O nbytes B sum S
f32 values print as %.9g, f64 as %.17g; sum = sum of byte[i] * (i % 251 + 1).
"""
import math
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType

TYPE_NAMES = {0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32",
              7: "bool", 8: "string", 9: "array", 10: "u64", 11: "i64", 12: "f64"}


def fmt_str(b):
    out = []
    for c in bytes(b):
        if 0x20 <= c < 0x7f and c not in (0x22, 0x5c):
            out.append(chr(c))
        else:
            out.append("\\x%02x" % c)
    return '"' + "".join(out) + '"'


def fmt_float(v, digits):
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return "%.*g" % (digits, v)


def fmt_num(t, v):
    if t == GGUFValueType.FLOAT32:
        return fmt_float(v, 9)
    if t == GGUFValueType.FLOAT64:
        return fmt_float(v, 17)
    if t == GGUFValueType.BOOL:
        return "true" if bool(v) else "false"
    return str(int(v))


def dump_field(field):
    t = GGUFValueType(int(field.parts[2][0]))
    if t == GGUFValueType.STRING:
        return "string " + fmt_str(field.parts[field.data[0]])
    if t != GGUFValueType.ARRAY:
        return TYPE_NAMES[int(t)] + " " + fmt_num(t, field.parts[field.data[0]][0])
    et = GGUFValueType(int(field.parts[3][0]))
    n = int(field.parts[4][0])
    head = "array[%s;%d]" % (TYPE_NAMES[int(et)], n)
    if et == GGUFValueType.ARRAY:
        return head
    if et == GGUFValueType.STRING:
        vals = [fmt_str(field.parts[i]) for i in field.data]
    else:
        vals = [fmt_num(et, field.parts[i][0]) for i in field.data]
    return head + " " + ",".join(vals)


def checksum(b):
    b = np.asarray(b, dtype=np.uint8).reshape(-1)
    w = (np.arange(b.size, dtype=np.uint64) % 251) + 1
    return int(np.sum(b.astype(np.uint64) * w, dtype=np.uint64))


def main():
    lines = []
    readers = [GGUFReader(p) for p in sys.argv[1:]]
    first = readers[0]
    fields = list(first.fields.values())[3:]  # skip GGUF.version/tensor_count/kv_count
    version = first.fields["GGUF.version"]
    lines.append("version %d" % int(version.parts[version.data[0]][0]))
    lines.append("kv %d" % len(fields))
    for f in fields:
        lines.append("key %s %s" % (f.name, dump_field(f)))
    n = sum(len(r.tensors) for r in readers)
    lines.append("tensors %d" % n)
    i = 0
    for p, r in enumerate(readers):
        for t in r.tensors:
            parts = t.field.parts
            ne = ",".join(str(int(x)) for x in parts[3])
            raw = r.data[t.data_offset:t.data_offset + t.n_bytes]
            lines.append('tensor %d part %d name %s type %d ne [%s] offset %d nbytes %d sum %d' % (
                i, p, fmt_str(parts[1]), int(parts[4][0]), ne, int(parts[5][0]), int(t.n_bytes),
                checksum(raw)))
            i += 1
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
