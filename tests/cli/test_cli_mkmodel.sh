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

# --- --arch: every architecture's keys, tensors and shapes as llama.cpp's
# converter writes them (the expectations below are written from the
# converter's conventions, independently of mkmodel's tables) ---------------
# One line per file: FILE ARCH TYPE key=value... (the shape mkmodel was asked
# for: dim ffn layers heads kv vocab ctx hd rd window tied fused rope_base
# rope_scale).
: >"$T/arch.list"
mk_arch() { # mk_arch NAME ARCH TYPE EXPECT FLAGS...
    local name=$1 arch=$2 typ=$3 exp=$4
    shift 4
    "$LYRA" -q mkmodel -o "$T/$name.gguf" --arch "$arch" --type "$typ" "$@"
    check_eq "mkmodel --arch $arch --type $typ $* rc" "$?" 0
    echo "$T/$name.gguf $arch $typ $exp" >>"$T/arch.list"
}
TYPES=(F16 BF16 Q8_0 Q4_0 Q4_K Q5_K Q6_K)
i=0
for a in llama mistral phi2 qwen2 qwen3 gemma gemma2 gemma3 phi3; do
    # the tiny presets (see --list-presets)
    case $a in
    llama)   e="dim=256 ffn=768 layers=4 heads=8 kv=4 hd=32 rd=32 tied=0 rope_base=10000" ;;
    mistral) e="dim=256 ffn=768 layers=4 heads=8 kv=4 hd=32 rd=32 tied=0 rope_base=10000 window=64" ;;
    phi2)    e="dim=256 ffn=1024 layers=4 heads=8 kv=8 hd=32 rd=16 tied=0" ;;
    qwen2)   e="dim=256 ffn=768 layers=4 heads=8 kv=2 hd=32 tied=1 rope_base=1000000" ;;
    qwen3)   e="dim=256 ffn=768 layers=4 heads=8 kv=4 hd=64 tied=1 rope_base=1000000" ;;
    gemma)   e="dim=256 ffn=768 layers=4 heads=8 kv=1 hd=64 tied=1" ;;
    gemma2)  e="dim=256 ffn=768 layers=4 heads=8 kv=4 hd=64 tied=1 window=64" ;;
    gemma3)  e="dim=256 ffn=768 layers=6 heads=4 kv=1 hd=64 tied=1 window=64 rope_base=1000000" ;;
    phi3)    e="dim=256 ffn=768 layers=4 heads=8 kv=8 hd=32 rd=32 tied=0 window=64 rope_base=10000" ;;
    esac
    mk_arch "$a-f32" "$a" F32 "$e vocab=512 ctx=2048"
    # every other type over the architectures, with smaller files
    t=${TYPES[$((i % 7))]}
    i=$((i + 1))
    mk_arch "$a-$t" "$a" "$t" "$e vocab=300 ctx=512 layers=2" --vocab 300 --ctx 512 --layers 2 --seed 3
done
# variants: fused phi2, untied qwen2/qwen3, gemma3 rope scaling and its 4b
# shape (one layer), head-dim and rope-dim overrides, gemma2 soft-caps
mk_arch phi2-fused phi2 Q8_0 "dim=256 ffn=1024 layers=4 heads=8 kv=8 hd=32 rd=16 tied=0 fused=1 vocab=512 ctx=2048" --fused-qkv
mk_arch phi2-gqa phi2 F16 "dim=128 ffn=256 layers=1 heads=4 kv=2 hd=32 rd=32 tied=0 vocab=258 ctx=64" \
    --dim 128 --ffn 256 --layers 1 --heads 4 --kv-heads 2 --vocab 258 --ctx 64 --rope-dim 32
mk_arch qwen2-untied qwen2 F32 "dim=256 ffn=768 layers=4 heads=8 kv=2 hd=32 tied=0 rope_base=1000000 vocab=512 ctx=2048" --untied
mk_arch qwen3-untied qwen3 Q8_0 "dim=256 ffn=768 layers=4 heads=8 kv=4 hd=128 tied=0 rope_base=1000000 vocab=512 ctx=2048" --untied --head-dim 128
mk_arch gemma3-scale gemma3 F32 "dim=256 ffn=768 layers=6 heads=4 kv=1 hd=64 tied=1 window=32 rope_base=500000 rope_scale=8 vocab=512 ctx=2048" \
    --rope-scale 8 --window 32 --rope-base 500000
mk_arch gemma3-4b gemma3 Q4_0 "dim=2560 ffn=512 layers=1 heads=8 kv=4 hd=256 tied=1 window=1024 rope_base=1000000 rope_scale=8 vocab=2000 ctx=131072" \
    --preset 4b --layers 1 --ffn 512 --vocab 2000
mk_arch gemma2-cap gemma2 F32 "dim=256 ffn=768 layers=2 heads=8 kv=4 hd=64 tied=1 window=64 softcap=20,10 vocab=512 ctx=2048" \
    --layers 2 --attn-softcap 20 --final-softcap 10
mk_arch llama-hd llama F32 "dim=256 ffn=768 layers=1 heads=8 kv=4 hd=64 rd=16 tied=1 rope_base=10000 vocab=512 ctx=2048 keylen=1" \
    --layers 1 --head-dim 64 --rope-dim 16 --tied
r=$("$PY" - "$T/arch.list" <<'EOF'
import sys
import numpy as np
import gguf

A = 0.02 * 3 ** 0.5 * 1.001  # the uniform's half-width (+ rounding)
# per architecture: (hyper-parameter keys, features), after llama.cpp's
# convert_hf_to_gguf.py (LlamaModel, Phi2Model, Qwen2Model, Qwen3Model,
# GemmaModel, Gemma2Model, Gemma3Model, Phi3MiniModel)
BASE = ["context_length", "embedding_length", "block_count", "feed_forward_length",
        "attention.head_count", "attention.head_count_kv"]
ARCH = {
    "llama": (BASE + ["vocab_size", "rope.dimension_count", "rope.freq_base",
                      "attention.layer_norm_rms_epsilon"], "gate ffn_norm exact_norms"),
    "phi2": (BASE + ["attention.layer_norm_epsilon", "rope.dimension_count"],
             "layernorm bias_all bias_qkv no_bos untied"),
    "qwen2": (BASE + ["rope.freq_base", "attention.layer_norm_rms_epsilon"], "gate ffn_norm bias_qkv no_bos"),
    "qwen3": (BASE + ["rope.freq_base", "attention.layer_norm_rms_epsilon", "attention.key_length",
                      "attention.value_length"], "gate ffn_norm qk_norm no_bos"),
    "gemma": (BASE + ["attention.layer_norm_rms_epsilon", "attention.key_length",
                      "attention.value_length"], "gate ffn_norm tied_only"),
    "gemma2": (BASE + ["attention.layer_norm_rms_epsilon", "attention.key_length", "attention.value_length",
                       "attn_logit_softcapping", "final_logit_softcapping", "attention.sliding_window"],
               "gate ffn_norm post_norm tied_only"),
    "gemma3": (BASE + ["attention.layer_norm_rms_epsilon", "attention.key_length", "attention.value_length",
                       "rope.freq_base", "attention.sliding_window"], "gate ffn_norm qk_norm post_norm tied_only"),
    "phi3": (BASE + ["rope.scaling.original_context_length", "attention.layer_norm_rms_epsilon",
                     "rope.dimension_count", "rope.freq_base", "attention.sliding_window"],
             "gate_up ffn_norm fused untied"),
}
ARCH["mistral"] = (ARCH["llama"][0] + ["attention.sliding_window"], ARCH["llama"][1])
EPS = {"llama": 1e-5, "mistral": 1e-5, "phi2": 1e-5, "qwen2": 1e-6, "qwen3": 1e-6, "gemma": 1e-6,
       "gemma2": 1e-6, "gemma3": 1e-6, "phi3": 1e-5}
BLOCK = {"F32": 1, "F16": 1, "BF16": 1, "Q8_0": 32, "Q4_0": 32, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256}

def check(path, arch, typ, e):
    errs = []
    feats = set(ARCH[arch][1].split())
    P = "llama" if arch == "mistral" else arch
    g = lambda k, d=0: e.get(k, d)
    dim, ffn, nl, nh, nkv, hd = g("dim"), g("ffn"), g("layers"), g("heads"), g("kv"), g("hd")
    rd, nv, ctx, tied, fused = g("rd", hd), g("vocab"), g("ctx"), g("tied"), g("fused") or "fused" in feats
    r = gguf.GGUFReader(path)
    f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("GGUF.")}
    want_keys = {P + "." + k for k in ARCH[arch][0]}
    if g("keylen"):
        want_keys |= {P + ".attention.key_length", P + ".attention.value_length"}
    if g("rope_scale"):
        want_keys |= {P + ".rope.scaling.type", P + ".rope.scaling.factor"}
    got_keys = {k for k in f if not k.startswith(("general.", "tokenizer."))}
    if got_keys != want_keys:
        errs.append("keys: extra %s, missing %s" % (sorted(got_keys - want_keys), sorted(want_keys - got_keys)))
    def want(k, v):
        x = f.get(k)
        if isinstance(v, float) and isinstance(x, float) and abs(x - v) <= 1e-6 * abs(v):
            return
        if x != v:
            errs.append("%s = %r, want %r" % (k, x, v))
    want("general.architecture", P)
    want("general.quantization_version", 2 if BLOCK[typ] > 1 else None)
    vals = {"context_length": ctx, "embedding_length": dim, "block_count": nl, "feed_forward_length": ffn,
            "attention.head_count": nh, "attention.head_count_kv": nkv, "vocab_size": nv,
            "rope.dimension_count": rd, "attention.key_length": hd, "attention.value_length": hd,
            "rope.freq_base": float(g("rope_base", 0)), "attention.layer_norm_rms_epsilon": EPS[arch],
            "attention.layer_norm_epsilon": EPS[arch], "attention.sliding_window": g("window"),
            "rope.scaling.original_context_length": ctx, "rope.scaling.type": "linear",
            "rope.scaling.factor": float(g("rope_scale", 0))}
    caps = [float(x) for x in str(g("softcap", "50,30")).split(",")]
    vals["attn_logit_softcapping"], vals["final_logit_softcapping"] = caps
    for k in want_keys:
        want(k, vals[k.split(".", 1)[1]])
    want("tokenizer.ggml.add_bos_token", "no_bos" not in feats)
    if "tied_only" in feats and not tied or "untied" in feats and tied:
        errs.append("test bug: tied=%d for %s" % (tied, arch))
    q, kv = nh * hd, nkv * hd
    shapes = {"token_embd.weight": [dim, nv], "output_norm.weight": [dim]}
    if "layernorm" in feats:
        shapes["output_norm.bias"] = [dim]
    if not tied:
        shapes["output.weight"] = [dim, nv]
        if "bias_all" in feats:
            shapes["output.bias"] = [nv]
    for l in range(nl):
        b = "blk.%d." % l
        s = {"attn_norm.weight": [dim], "attn_output.weight": [q, dim], "ffn_down.weight": [ffn, dim]}
        s["ffn_up.weight"] = [dim, 2 * ffn] if "gate_up" in feats else [dim, ffn]
        if "gate" in feats:
            s["ffn_gate.weight"] = [dim, ffn]
        if "ffn_norm" in feats:
            s["ffn_norm.weight"] = [dim]
        if "layernorm" in feats:
            s["attn_norm.bias"] = [dim]
        if fused:
            s["attn_qkv.weight"] = [dim, q + 2 * kv]
            if "bias_qkv" in feats:
                s["attn_qkv.bias"] = [q + 2 * kv]
        else:
            s.update({"attn_q.weight": [dim, q], "attn_k.weight": [dim, kv], "attn_v.weight": [dim, kv]})
            if "bias_qkv" in feats:
                s.update({"attn_q.bias": [q], "attn_k.bias": [kv], "attn_v.bias": [kv]})
        if "bias_all" in feats:
            s.update({"attn_output.bias": [dim], "ffn_up.bias": [ffn], "ffn_down.bias": [dim]})
        if "qk_norm" in feats:
            s.update({"attn_q_norm.weight": [hd], "attn_k_norm.weight": [hd]})
        if "post_norm" in feats:
            s.update({"post_attention_norm.weight": [dim], "post_ffw_norm.weight": [dim]})
        shapes.update({b + k: v for k, v in s.items()})
    got = {t.name: t for t in r.tensors}
    if set(got) != set(shapes):
        errs.append("tensors: extra %s, missing %s" % (sorted(set(got) - set(shapes))[:4],
                                                        sorted(set(shapes) - set(got))[:4]))
    for name, shape in shapes.items():
        t = got.get(name)
        if t is None:
            continue
        if [int(x) for x in t.shape] != shape:
            errs.append("%s shape %r want %r" % (name, [int(x) for x in t.shape], shape))
        wt = typ if len(shape) == 2 and shape[0] % BLOCK[typ] == 0 else "F32"
        if t.tensor_type.name != wt:
            errs.append("%s type %s want %s" % (name, t.tensor_type.name, wt))
        a = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float64).ravel()
        if name.endswith("norm.weight"):
            if "exact_norms" in feats:
                ok = np.all(a == 1.0)
            else:  # 1 + noise (Gemma's stored 1 + w; the others' norms near 1)
                ok = np.abs(a - 1).max() <= A and 0.012 < a.std() < 0.028 and abs(a.mean() - 1) < 0.01
            if not ok:
                errs.append("%s: norm mean %.4f std %.4f" % (name, a.mean(), a.std()))
        elif len(shape) == 1:  # a bias
            if not (np.abs(a).max() <= A and 0.012 < a.std() < 0.028 and abs(a.mean()) < 0.01):
                errs.append("%s: bias mean %.4f std %.4f" % (name, a.mean(), a.std()))
        else:
            s = a.std()
            if abs(s - 0.02) > 0.001 or abs(a.mean()) > 0.002 or np.abs(a).max() > A * 1.1:
                errs.append("%s: std %.5f mean %.5f max %.4f" % (name, s, a.mean(), np.abs(a).max()))
    return errs

bad = []
for line in open(sys.argv[1]):
    path, arch, typ, *kv = line.split()
    e = {}
    for x in kv:
        k, v = x.split("=")
        e[k] = v if k == "softcap" else float(v) if "." in v else int(v)
    errs = check(path, arch, typ, e)
    if errs:
        bad.append("%s: %s" % (path.rsplit("/", 1)[1], "; ".join(errs[:3])))
print("\n".join(bad) if bad else "ok")
EOF
)
check_eq "--arch files read back with gguf-py" "$r" ok

# mistral is llama plus attention.sliding_window: the same tensors, bytes
# and all, and llama.cpp's key
"$LYRA" -q mkmodel -o "$T/m.gguf" --arch mistral --window 0
r=$("$PY" - "$T/d1.gguf" "$T/m.gguf" <<'EOF'
import sys, gguf
a, b = gguf.GGUFReader(sys.argv[1]), gguf.GGUFReader(sys.argv[2])
fa = {k: v.contents() for k, v in a.fields.items() if k != "general.name" and not k.startswith("GGUF.")}
fb = {k: v.contents() for k, v in b.fields.items() if k != "general.name" and not k.startswith("GGUF.")}
extra = set(fb) - set(fa)
same = all(x.name == y.name and bytes(x.data) == bytes(y.data) for x, y in zip(a.tensors, b.tensors))
print("ok" if extra == {"llama.attention.sliding_window"} and fb["llama.attention.sliding_window"] == 0
      and all(fa[k] == fb[k] for k in fa) and same and len(a.tensors) == len(b.tensors) else "differ: %r" % extra)
EOF
)
check_eq "mistral = llama + sliding_window" "$r" ok

# what an architecture does not have is refused, naming the flag
check_rc "gemma --untied" 2 "$LYRA" -q mkmodel -o "$T/x.gguf" --arch gemma --untied
check_rc "phi2 --tied" 2 "$LYRA" -q mkmodel -o "$T/x.gguf" --arch phi2 --tied
check_rc "qwen2 --window" 2 "$LYRA" -q mkmodel -o "$T/x.gguf" --arch qwen2 --window 8
check_rc "gemma --rope-base" 2 "$LYRA" -q mkmodel -o "$T/x.gguf" --arch gemma --rope-base 5
check_rc "phi3 --fused-qkv" 2 "$LYRA" -q mkmodel -o "$T/x.gguf" --arch phi3 --fused-qkv
check_rc "phi2 --rope-dim 34 > head 32" 2 "$LYRA" -q mkmodel -o "$T/x.gguf" --arch phi2 --rope-dim 34
check_rc "gemma2 --window 0" 2 "$LYRA" -q mkmodel -o "$T/x.gguf" --arch gemma2 --window 0
check_rc "unknown --arch" 2 "$LYRA" -q mkmodel -o "$T/x.gguf" --arch gpt2
check_rc "unknown preset of an arch" 2 "$LYRA" -q mkmodel -o "$T/x.gguf" --arch phi3 --preset 7b
"$LYRA" mkmodel --list-presets >"$T/presets"
check_eq "--list-presets: a 1b preset for each architecture" "$(grep -c ' 1b ' "$T/presets")" 9

finish
