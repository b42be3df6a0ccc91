# test_cli_mkmodel.sh: `lyra mkmodel` writes byte-identical files for the same
# flags (any --threads), files gguf-py reads with the expected metadata,
# tensor shapes, types and weight statistics, for every --type; and lyra
# generates from each of them.
source "$(dirname "$0")/lib.sh"
"$PY" -c "import numpy, gguf" 2>/dev/null ||
    { echo "SKIPPED: $PY has no numpy/gguf (set LYRA_PYTHON, e.g. a venv with pip install numpy gguf)"; exit 77; }

shared_path S260 models/stories260K.gguf
SMALL=(--dim 256 --ffn 512 --layers 2 --heads 4 --kv-heads 2 --vocab 300 --ctx 128)

"$LYRA" -q mkmodel -o "$T/a.gguf" "${SMALL[@]}" --seed 5 --threads 1
check_eq "mkmodel rc" "$?" 0
"$LYRA" -q mkmodel -o "$T/b.gguf" "${SMALL[@]}" --seed 5 --threads 2
if cmp -s "$T/a.gguf" "$T/b.gguf"; then ok; else bad "same flags, --threads 1 vs 2: files differ"; fi
"$LYRA" -q mkmodel -o "$T/b.gguf" "${SMALL[@]}" --seed 5
if cmp -s "$T/a.gguf" "$T/b.gguf"; then ok; else bad "same flags twice: files differ"; fi
"$LYRA" -q mkmodel -o "$T/c.gguf" "${SMALL[@]}" --seed 6
if ! cmp -s "$T/a.gguf" "$T/c.gguf"; then ok; else bad "--seed 5 and 6 gave the same file"; fi
# the default (tiny preset) twice, from another directory
( cd "$T" && "$LYRA" -q mkmodel -o d1.gguf && "$LYRA" -q mkmodel -o d2.gguf )
if cmp -s "$T/d1.gguf" "$T/d2.gguf"; then ok; else bad "default mkmodel twice: files differ"; fi

# check_gguf NAME FILE TYPE DIM FFN LAYERS HEADS KV VOCAB CTX TIED: gguf-py
# reads FILE; metadata, shapes, the type rule (TYPE for 2-D tensors whose
# rows divide its block size, else F32), norms 1, weights std 0.02 +- 5%
# and mean ~0 (after dequantization).
check_gguf() {
    local r
    r=$("$PY" - "${@:2}" <<'EOF'
import sys
import numpy as np
import gguf
path, typ = sys.argv[1], sys.argv[2]
dim, ffn, nl, nh, nkv, nv, ctx, tied = (int(x) for x in sys.argv[3:11])
r = gguf.GGUFReader(path)
f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("GGUF.")}
errs = []
def want(k, v):
    if f.get(k) != v:
        errs.append("%s = %r, want %r" % (k, f.get(k), v))
want("general.architecture", "llama")
want("llama.embedding_length", dim); want("llama.feed_forward_length", ffn)
want("llama.block_count", nl); want("llama.attention.head_count", nh)
want("llama.attention.head_count_kv", nkv); want("llama.context_length", ctx)
want("llama.rope.dimension_count", dim // nh)
want("tokenizer.ggml.model", "gpt2"); want("tokenizer.ggml.pre", "default")
want("tokenizer.ggml.bos_token_id", 256); want("tokenizer.ggml.eos_token_id", 257)
toks = f.get("tokenizer.ggml.tokens", [])
merges = f.get("tokenizer.ggml.merges", [])
if len(toks) != nv or len(set(toks)) != nv:
    errs.append("%d tokens (%d distinct), want %d" % (len(toks), len(set(toks)), nv))
if toks[:3] != ["\u0100", "\u0101", "\u0102"] or toks[32] != "\u0120" or toks[65] != "A" or toks[256:258] != ["<s>", "</s>"]:
    errs.append("byte tokens / specials wrong: %r" % toks[:3])
ts = set(toks)
for m in merges:
    a, b = m.split(" ")
    if a not in ts or b not in ts or a + b not in ts:
        errs.append("merge %r: parts or result not in the vocabulary" % m); break
if len(merges) < nv - 258:
    errs.append("%d merges for %d tokens" % (len(merges), nv))
kv = dim // nh * nkv
shapes = {"token_embd.weight": [dim, nv], "output_norm.weight": [dim]}
if not tied:
    shapes["output.weight"] = [dim, nv]
for l in range(nl):
    b = "blk.%d." % l
    shapes.update({b + "attn_norm.weight": [dim], b + "ffn_norm.weight": [dim],
                   b + "attn_q.weight": [dim, dim], b + "attn_k.weight": [dim, kv],
                   b + "attn_v.weight": [dim, kv], b + "attn_output.weight": [dim, dim],
                   b + "ffn_gate.weight": [dim, ffn], b + "ffn_up.weight": [dim, ffn],
                   b + "ffn_down.weight": [ffn, dim]})
got = {t.name: t for t in r.tensors}
if set(got) != set(shapes):
    errs.append("tensors %r" % sorted(set(got) ^ set(shapes)))
block = {"F32": 1, "F16": 1, "BF16": 1, "Q8_0": 32, "Q4_0": 32, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256}[typ]
for name, shape in shapes.items():
    t = got.get(name)
    if t is None:
        continue
    if [int(x) for x in t.shape] != shape:
        errs.append("%s shape %r want %r" % (name, list(t.shape), shape))
    wt = typ if len(shape) == 2 and shape[0] % block == 0 else "F32"
    if t.tensor_type.name != wt:
        errs.append("%s type %s want %s" % (name, t.tensor_type.name, wt))
    a = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float64)
    if len(shape) == 1:
        if not np.all(a == 1.0):
            errs.append("%s: norm weights are not 1" % name)
    else:
        s = a.std()
        if abs(s - 0.02) > 0.001 or abs(a.mean()) > 0.002 or np.abs(a).max() > 0.0347 * 1.1:
            errs.append("%s: std %.5f mean %.5f max %.4f" % (name, s, a.mean(), np.abs(a).max()))
print("; ".join(errs[:4]) if errs else "ok")
EOF
)
    check_eq "$1" "$r" "ok"
}

check_gguf "small F32 gguf" "$T/a.gguf" F32 256 512 2 4 2 300 128 0
for t in F16 BF16 Q8_0 Q4_0 Q4_K Q5_K Q6_K; do
    "$LYRA" -q mkmodel -o "$T/$t.gguf" "${SMALL[@]}" --type "$t"
    check_eq "mkmodel --type $t rc" "$?" 0
    check_gguf "--type $t gguf" "$T/$t.gguf" "$t" 256 512 2 4 2 300 128 0
    "$LYRA" -q generate -m "$T/$t.gguf" -p "Hello" -n 8 --seed 1 >"$T/out"
    check_eq "generate from --type $t rc" "$?" 0
    if [ "$(wc -c <"$T/out")" -gt 1 ]; then ok; else bad "generate from --type $t printed nothing"; fi
done
# rows that do not divide the block: those tensors stay F32 (ffn 160 rows of
# ffn_down; dim 96 for the rest)
"$LYRA" -q mkmodel -o "$T/odd.gguf" --dim 96 --ffn 160 --layers 1 --heads 4 --kv-heads 2 --vocab 258 --ctx 64 --type Q8_0 --tied
check_gguf "odd dims Q8_0 --tied" "$T/odd.gguf" Q8_0 96 160 1 4 2 258 64 1
"$LYRA" -q generate -m "$T/odd.gguf" -p "Hi" -n 4 --seed 1 >/dev/null
check_eq "generate from odd/tied" "$?" 0

# --vocab-from: the tokenizer of stories260K, vocabulary size 512
"$LYRA" -q mkmodel -o "$T/v.gguf" --dim 64 --ffn 128 --layers 1 --heads 2 --kv-heads 1 --vocab-from "$S260"
check_eq "--vocab-from rc" "$?" 0
check_eq "--vocab-from tokenizer" "$("$LYRA" tokenize -m "$T/v.gguf" "Once upon a time, Lily")" \
    "$("$LYRA" tokenize -m "$S260" "Once upon a time, Lily")"
r=$("$PY" - "$T/v.gguf" "$S260" <<'EOF'
import sys, gguf
a, b = gguf.GGUFReader(sys.argv[1]), gguf.GGUFReader(sys.argv[2])
ka = {k: v.contents() for k, v in a.fields.items() if k.startswith("tokenizer.")}
kb = {k: v.contents() for k, v in b.fields.items() if k.startswith("tokenizer.")}
emb = [t for t in a.tensors if t.name == "token_embd.weight"][0]
print("ok" if ka == kb and int(emb.shape[1]) == 512 else "tokenizer keys or vocab size differ")
EOF
)
check_eq "--vocab-from keys" "$r" "ok"
"$LYRA" -q generate -m "$T/v.gguf" -p "Once" -n 4 --seed 1 >/dev/null
check_eq "generate from --vocab-from model" "$?" 0

# the generated tokenizer round-trips text through its merges
tk="$("$LYRA" tokenize --no-bos -m "$T/a.gguf" "the boat and the bird")"
n=$(echo "$tk" | wc -w)
if [ "$n" -lt 15 ]; then ok; else bad "generated BPE did not merge: $n tokens for 21 bytes ($tk)"; fi

finish
