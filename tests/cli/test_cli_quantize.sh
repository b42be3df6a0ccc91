# test_cli_quantize.sh: `lyra quantize` round trips. gguf-py checks the types
# (incl. the row-size fallback and the Q4_K_M rule), the copied metadata and
# the dequantized values; babyllama105 (dims divide 32) at Q8_0 keeps its
# greedy text and perplexity close to F32.
source "$(dirname "$0")/lib.sh"
"$PY" -c "import numpy, gguf" 2>/dev/null ||
    { echo "SKIPPED: $PY has no numpy/gguf (set LYRA_PYTHON, e.g. a venv with pip install numpy gguf)"; exit 77; }

shared_path S260 models/stories260K.gguf
shared_path B105 models/babyllama105.gguf
TXT="$SRC/tests/data/stories.txt"

# compare IN OUT TYPE FILE_TYPE RULE: gguf-py: every key but general.file_type
# (and general.quantization_version) copied unchanged, file_type set, tensor
# types as RULE says (a python expression of name, shape, base -> type name),
# values within each type's error bound of the input's.
compare() {
    local r
    r=$("$PY" - "$@" <<'EOF'
import sys
import numpy as np
import gguf
src, dst, base, ftype, rule = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
a, b = gguf.GGUFReader(src), gguf.GGUFReader(dst)
fa = {k: v.contents() for k, v in a.fields.items() if not k.startswith("GGUF.")}
fb = {k: v.contents() for k, v in b.fields.items() if not k.startswith("GGUF.")}
errs = []
skip = {"general.file_type", "general.quantization_version"}
for k in set(fa) | set(fb):
    if k not in skip and fa.get(k) != fb.get(k):
        errs.append("key %s changed" % k)
if fb.get("general.file_type") != ftype:
    errs.append("file_type %r want %d" % (fb.get("general.file_type"), ftype))
ta = {t.name: t for t in a.tensors}
# relative error bound (of the row's max |x|) per type
# (Q8_0/Q4_0: half a step, or a whole one at Q4_0's clamped end, plus the f16
# scale's rounding; K-quants: loose bounds, their exact bits are checked
# against gguf-py by the quant tests)
tol = {"F32": 0, "F16": 1e-3, "BF16": 8e-3, "Q8_0": 0.57 / 127, "Q4_0": 1.05 / 8,
       "Q4_K": 0.15, "Q5_K": 0.08, "Q6_K": 0.04}
for t in b.tensors:
    s = ta[t.name]
    shape = [int(x) for x in t.shape]
    if shape != [int(x) for x in s.shape]:
        errs.append("%s shape changed" % t.name)
    want = eval(rule, {"name": t.name, "shape": shape, "base": base, "layer": (
        int(t.name.split(".")[1]) if t.name.startswith("blk.") else -1)})
    if t.tensor_type.name != want:
        errs.append("%s: %s want %s" % (t.name, t.tensor_type.name, want))
    x = np.asarray(gguf.quants.dequantize(s.data, s.tensor_type), dtype=np.float64)
    y = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float64)
    x, y = x.reshape(-1, shape[0]), y.reshape(-1, shape[0])
    amax = np.abs(x).max(axis=1, keepdims=True) + 1e-30
    e = (np.abs(x - y) / amax).max()
    if e > tol[t.tensor_type.name]:
        errs.append("%s (%s): relative error %.4g" % (t.name, t.tensor_type.name, e))
if set(ta) != {t.name for t in b.tensors}:
    errs.append("tensor set changed")
print("; ".join(errs[:4]) if errs else "ok")
EOF
)
    check_eq "$6" "$r" "ok"
}

# stories260K at Q8_0: ffn_down rows (172) do not divide 32 -> F16, logged
"$LYRA" quantize "$S260" "$T/s8.gguf" Q8_0 2>"$T/e"
check_eq "stories260K Q8_0 rc" "$?" 0
check_eq "fallback logged per tensor" "$(grep -c 'ffn_down.weight: rows of 172 are not a multiple of 32 for Q8_0: using F16' "$T/e")" 5
compare "$S260" "$T/s8.gguf" Q8_0 7 \
    '"F32" if len(shape) == 1 else ("F16" if shape[0] % 32 else "Q8_0")' "stories260K Q8_0 types/values"
"$LYRA" -q generate -m "$T/s8.gguf" -p "Once upon a time" -n 30 --temp 0 >"$T/out"
check_eq "generate from stories260K Q8_0" "$?" 0
# K-quant on stories260K: 64-wide rows -> Q4_0 (fits 32), 172 -> F16
"$LYRA" quantize "$S260" "$T/s4k.gguf" Q4_K 2>"$T/e"
check_grep "Q4_K fallback logged" 'attn_q.weight: rows of 64 are not a multiple of 256 for Q4_K: using Q4_0' "$T/e"
compare "$S260" "$T/s4k.gguf" Q4_K 14 \
    '"F32" if len(shape) == 1 else ("F16" if shape[0] % 32 else "Q4_0")' "stories260K Q4_K fallback types"

# babyllama105 at Q8_0: every matrix quantized; text and perplexity close
"$LYRA" -q quantize "$B105" "$T/b8.gguf" Q8_0 --threads 1
check_eq "babyllama Q8_0 rc" "$?" 0
"$LYRA" -q quantize --threads 2 "$B105" "$T/b8t.gguf" Q8_0
if cmp -s "$T/b8.gguf" "$T/b8t.gguf"; then ok; else bad "quantize output depends on --threads"; fi
compare "$B105" "$T/b8.gguf" Q8_0 7 '"F32" if len(shape) == 1 else "Q8_0"' "babyllama Q8_0 types/values"
"$LYRA" -q generate -m "$B105" -p "Once upon a time" --temp 0 -n 200 --threads 1 >"$T/f32.txt"
"$LYRA" -q generate -m "$T/b8.gguf" -p "Once upon a time" --temp 0 -n 200 --threads 1 >"$T/q8.txt"
r=$("$PY" - "$T/f32.txt" "$T/q8.txt" <<'EOF'
import sys
a, b = open(sys.argv[1]).read(), open(sys.argv[2]).read()
n = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
print("ok" if n >= 100 else "Q8_0 text leaves F32's after %d chars" % n)
EOF
)
check_eq "Q8_0 greedy text close to F32 (>= 100 chars equal)" "$r" "ok"
head -c 3000 "$TXT" >"$T/part.txt" # babyllama spells by characters: ~45 chunks of 64
p32="$("$LYRA" -q perplexity -m "$B105" -f "$T/part.txt" --ctx 64 --threads 1 | sed -n 's/^perplexity: //p')"
p8="$("$LYRA" -q perplexity -m "$T/b8.gguf" -f "$T/part.txt" --ctx 64 --threads 1 | sed -n 's/^perplexity: //p')"
"$LYRA" -q quantize "$B105" "$T/b4.gguf" Q4_0
p4="$("$LYRA" -q perplexity -m "$T/b4.gguf" -f "$T/part.txt" --ctx 64 --threads 1 | sed -n 's/^perplexity: //p')"
r=$("$PY" -c "
import math, sys
p32, p8, p4 = float('$p32'), float('$p8'), float('$p4')
ok = all(math.isfinite(p) and p > 1 for p in (p32, p8, p4))
ok = ok and abs(p8 / p32 - 1) < 0.01 and 1 <= p4 / p32 < 1.2
print('ok' if ok else 'ppl f32 %s q8_0 %s q4_0 %s' % (p32, p8, p4))" 2>&1)
check_eq "babyllama perplexity F32 $p32 / Q8_0 $p8 (< 1%) / Q4_0 $p4 (< 20%)" "$r" "ok"

# F16 and back to F32: the F16 values exactly
"$LYRA" -q quantize "$B105" "$T/b16.gguf" F16 && "$LYRA" -q quantize "$T/b16.gguf" "$T/b16_32.gguf" F32
check_eq "F16 -> F32 rc" "$?" 0
compare "$T/b16.gguf" "$T/b16_32.gguf" F32 0 '"F32"' "F16 -> F32 exact"
# Q8_0 -> Q8_0 keeps the bytes of every tensor
"$LYRA" -q quantize "$T/b8.gguf" "$T/b88.gguf" Q8_0
compare "$T/b8.gguf" "$T/b88.gguf" Q8_0 7 '"F32" if len(shape) == 1 else "Q8_0"' "Q8_0 -> Q8_0 unchanged"

# the Q4_K_M rule on a model whose rows divide 256 (8 layers: layers 0, 3, 6,
# 7 get Q6_K for attn_v and ffn_down; output.weight Q6_K)
"$LYRA" -q mkmodel -o "$T/m.gguf" --dim 256 --ffn 512 --layers 8 --heads 4 --kv-heads 4 --vocab 300 --ctx 64
"$LYRA" -q quantize "$T/m.gguf" "$T/m4.gguf" Q4_K_M
check_eq "Q4_K_M rc" "$?" 0
compare "$T/m.gguf" "$T/m4.gguf" Q4_K 15 \
    '"F32" if len(shape) == 1 else "Q6_K" if name == "output.weight" or (layer in (0, 3, 6, 7) and name.split(".")[2] in ("attn_v", "ffn_down")) else "Q4_K"' \
    "Q4_K_M types"
"$LYRA" -q quantize "$T/m.gguf" "$T/m5.gguf" Q5_K_M
compare "$T/m.gguf" "$T/m5.gguf" Q5_K 17 \
    '"F32" if len(shape) == 1 else "Q6_K" if name == "output.weight" or (layer in (0, 3, 6, 7) and name.split(".")[2] in ("attn_v", "ffn_down")) else "Q5_K"' \
    "Q5_K_M types"
"$LYRA" -q generate -m "$T/m4.gguf" -p "Hi" -n 4 --seed 1 >/dev/null
check_eq "generate from Q4_K_M" "$?" 0
# tied model: token_embd is the classifier and gets Q6_K (2 layers: layer 1
# gets more bits: 1 >= 7*2/8)
"$LYRA" -q mkmodel -o "$T/mt.gguf" --dim 256 --ffn 512 --layers 2 --heads 4 --kv-heads 4 --vocab 300 --ctx 64 --tied
"$LYRA" -q quantize "$T/mt.gguf" "$T/mt4.gguf" Q4_K_M
compare "$T/mt.gguf" "$T/mt4.gguf" Q4_K 15 \
    '"F32" if len(shape) == 1 else "Q6_K" if name == "token_embd.weight" or (layer == 1 and name.split(".")[2] in ("attn_v", "ffn_down")) else "Q4_K"' \
    "Q4_K_M tied types"

# a failing quantize leaves an existing OUT alone
cp "$T/b8.gguf" "$T/keep.gguf"
head -c 5000 "$B105" >"$T/trunc.gguf"
"$LYRA" -q quantize "$T/trunc.gguf" "$T/keep.gguf" Q4_0 2>/dev/null
check_eq "truncated input rc" "$?" 2
if cmp -s "$T/b8.gguf" "$T/keep.gguf"; then ok; else bad "failing quantize changed the existing output"; fi
if [ -z "$(ls -A "$T" | grep -v -E '\.(gguf|txt)$' | grep -v -E '^(e|out)$')" ]; then ok; else
    bad "stray files left: $(ls -A "$T")"; fi

finish
