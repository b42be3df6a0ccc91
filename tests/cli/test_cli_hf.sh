# test_cli_hf.sh: Hugging Face folders on the command line (docs/hf.md):
# -m DIR and -m DIR/config.json, lyra convert (as stored and quantized; the
# GGUF generates what the folder does; no output left on failure), --dtype,
# and the bad-input table: malformed safetensors and config.json, each one
# line "lyra: error: FILE: [tensor NAME: ]WHAT", exit 2. With llama_cpp in
# $LYRA_REF_PYTHON (default /work/venv-ref/bin/python) or $LYRA_PYTHON,
# llama.cpp reads the converted snapshots and agrees on the greedy tokens.
source "$(dirname "$0")/lib.sh"

H="$SRC/tests/data/hf"

expect_err() {
    local name="$1" code="$2" pat="$3"; shift 3
    "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    check_eq "$name: exit code" "$rc" "$code"
    check_eq "$name: stdout" "$(wc -c <"$T/out")" 0
    check_eq "$name: stderr lines" "$(wc -l <"$T/err")" 1
    check_eq "$name: message" "$(cat "$T/err")" "lyra: error: $pat"
}

# --- running a folder -------------------------------------------------------
G=(generate -p "Once upon a time" -n 12 --temp 0 -q)
"$LYRA" "${G[@]}" -m "$H/llama" >"$T/dir.txt" 2>"$T/err"; check_eq "-m DIR" $? 0
"$LYRA" "${G[@]}" -m "$H/llama/config.json" >"$T/cfg.txt" 2>&1; check_eq "-m config.json" $? 0
check_eq "DIR and config.json" "$(cat "$T/cfg.txt")" "$(cat "$T/dir.txt")"
"$LYRA" "${G[@]}" -m "$H/llama_sharded" >"$T/sh.txt" 2>&1; check_eq "-m sharded" $? 0
check_eq "sharded = single file" "$(cat "$T/sh.txt")" "$(cat "$T/dir.txt")"
"$LYRA" "${G[@]}" -m "$H/llama_bf16" --dtype float32 >/dev/null 2>&1; check_eq "--dtype float32" $? 0
"$LYRA" "${G[@]}" -m "$H/llama" --load-in-8bit >/dev/null 2>&1; check_eq "--load-in-8bit" $? 0

# plan counts the in-memory sizes (BF16 stored, F32 asked: twice the weights)
"$LYRA" plan -m "$H/llama_bf16" >"$T/p1" 2>&1; check_eq "plan folder" $? 0
"$LYRA" plan -m "$H/llama_bf16" --dtype float32 >"$T/p2" 2>&1
check_grep "plan bf16 weights" '^cpu .* 100\.6 KiB ' "$T/p1"
check_grep "plan --dtype float32 weights" '^cpu .* 200\.6 KiB ' "$T/p2"
"$LYRA" tokenize -m "$H/qwen3" "Once upon a time" >"$T/tok" 2>&1; check_eq "tokenize folder" $? 0
check_eq "tokenize folder ids" "$(cat "$T/tok")" "1 403 407 261 378"

# Gemma3ForConditionalGeneration: the text model under text_config and
# model.language_model.*, a vision tensor beside it (not read)
mkdir -p "$T/g3mm"; cp "$H/gemma3/tokenizer"*.json "$T/g3mm/"
python3 - "$H/gemma3" "$T/g3mm" <<'PY'
import json, struct, sys
src, dst = sys.argv[1], sys.argv[2]
cfg = json.load(open(f"{src}/config.json"))
json.dump({"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
           "text_config": {**cfg, "model_type": "gemma3_text"}, "vision_config": {}},
          open(f"{dst}/config.json", "w"))
b = open(f"{src}/model.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); data = b[8 + n:]
out = {}
for k, v in h.items():
    if k != "__metadata__": k = k.replace("model.", "model.language_model.", 1)
    out[k] = v
out["model.vision_tower.patch.weight"] = {"dtype": "F32", "shape": [4], "data_offsets": [len(data), len(data) + 16]}
hb = json.dumps(out).encode(); hb += b" " * ((8 - len(hb) % 8) % 8)
open(f"{dst}/model.safetensors", "wb").write(struct.pack("<Q", len(hb)) + hb + data + bytes(16))
PY
"$LYRA" "${G[@]}" -m "$H/gemma3" >"$T/a.txt" 2>&1
"$LYRA" "${G[@]}" -m "$T/g3mm" >"$T/b.txt" 2>"$T/err"; check_eq "Gemma3ForConditionalGeneration" $? 0
check_eq "Gemma3ForConditionalGeneration = Gemma3ForCausalLM" "$(cat "$T/b.txt")" "$(cat "$T/a.txt")"

# --- lyra convert ---------------------------------------------------------------
for a in llama gemma2 phi2; do
    "$LYRA" convert -q "$H/$a" "$T/$a.gguf"; check_eq "convert $a" $? 0
    "$LYRA" "${G[@]}" -m "$H/$a" >"$T/a.txt" 2>&1
    "$LYRA" "${G[@]}" -m "$T/$a.gguf" >"$T/b.txt" 2>&1
    check_eq "convert $a: same text" "$(cat "$T/b.txt")" "$(cat "$T/a.txt")"
done
"$LYRA" convert -q "$H/llama_bf16" "$T/q8.gguf" Q8_0; check_eq "convert Q8_0" $? 0
"$LYRA" generate -m "$T/q8.gguf" -p x -n 2 -q >/dev/null 2>&1; check_eq "run Q8_0" $? 0
expect_err "convert a GGUF" 2 "$T/q8.gguf: not a Hugging Face model folder (no config.json)" \
    "$LYRA" convert "$T/q8.gguf" "$T/x.gguf"
expect_err "convert bad TYPE" 2 "Q3_Z: unknown TYPE: expected F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, Q4_K_M or Q5_K_M" \
    "$LYRA" convert "$H/llama" "$T/x.gguf" Q3_Z

# --- the bad-input table ----------------------------------------------------
# mk NAME PYTHON-EXPR: a folder T/NAME with llama's config and tokenizer and a
# model.safetensors made of the header dict h and data bytes d
mkst() {
    local d="$T/$1"; mkdir -p "$d"
    cp "$H/llama/config.json" "$H/llama/tokenizer.json" "$H/llama/tokenizer_config.json" "$d/"
    python3 - "$d/model.safetensors" "$2" <<'PY'
import json, struct, sys
h, d = eval(sys.argv[2])
if isinstance(h, dict):
    h = json.dumps(h).encode()
raw = struct.pack('<Q', len(h)) + h + d if not isinstance(h, bytes) or not h.startswith(b'!') else h[1:]
open(sys.argv[1], 'wb').write(raw)
PY
}
F32X4='{"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}'
mkst overlap "({'a': $F32X4, 'b': {'dtype': 'F32', 'shape': [2], 'data_offsets': [8, 16]}}, bytes(16))"
mkst dtype "({'x': {'dtype': 'F64', 'shape': [2], 'data_offsets': [0, 16]}}, bytes(16))"
mkst past "({'x': $F32X4}, bytes(8))"
mkst size "({'x': {'dtype': 'F32', 'shape': [3], 'data_offsets': [0, 16]}}, bytes(16))"
mkst order "({'x': {'dtype': 'F32', 'shape': [0], 'data_offsets': [8, 4]}}, bytes(16))"
mkst shape "({'x': {'dtype': 'F32', 'shape': [-1], 'data_offsets': [0, 0]}}, bytes(0))"
mkst json "(b'{\"x\": ', bytes(0))"
mkst big "(b'!' + struct.pack('<Q', 200 << 20) + b'{}', bytes(0))"
mkst short "(b'!' + b'abc', bytes(0))"
mkst fit "(b'!' + struct.pack('<Q', 1000) + b'{}', bytes(0))"
mkst i8 "({'model.embed_tokens.weight': {'dtype': 'I8', 'shape': [512, 32], 'data_offsets': [0, 16384]}}, bytes(16384))"
mkst name "({'model.vision.weight': {'dtype': 'F32', 'shape': [4], 'data_offsets': [0, 16]}}, bytes(16))"
S=model.safetensors
E=(convert)
expect_err "overlap" 2 "$T/overlap/$S: tensor b: data overlaps tensor a" "$LYRA" "${E[@]}" "$T/overlap" "$T/o.gguf"
expect_err "dtype" 2 "$T/dtype/$S: tensor x: dtype F64 is not supported (F32, F16, BF16, I8, U8)" "$LYRA" "${E[@]}" "$T/dtype" "$T/o.gguf"
expect_err "past the end" 2 "$T/past/$S: tensor x: data_offsets [0, 16] go past the data section of 8 bytes" "$LYRA" "${E[@]}" "$T/past" "$T/o.gguf"
expect_err "size" 2 "$T/size/$S: tensor x: data_offsets span 16 bytes but shape x F32 needs 12" "$LYRA" "${E[@]}" "$T/size" "$T/o.gguf"
expect_err "order" 2 "$T/order/$S: tensor x: data_offsets [8, 4] are not ordered" "$LYRA" "${E[@]}" "$T/order" "$T/o.gguf"
expect_err "shape" 2 "$T/shape/$S: tensor x: shape[0] is not a non-negative integer" "$LYRA" "${E[@]}" "$T/shape" "$T/o.gguf"
expect_err "json" 2 "$T/json/$S: header JSON: unexpected token near end of file at byte 6" "$LYRA" "${E[@]}" "$T/json" "$T/o.gguf"
expect_err "header limit" 2 "$T/big/$S: header length 209715200 exceeds the limit of 104857600 bytes" "$LYRA" "${E[@]}" "$T/big" "$T/o.gguf"
expect_err "too short" 2 "$T/short/$S: 3 bytes: too short for a safetensors header" "$LYRA" "${E[@]}" "$T/short" "$T/o.gguf"
expect_err "header fit" 2 "$T/fit/$S: header length 1000 does not fit the file of 10 bytes" "$LYRA" "${E[@]}" "$T/fit" "$T/o.gguf"
expect_err "I8" 2 "$T/i8/$S: tensor model.embed_tokens.weight: dtype I8 is not a float type lyra can load" "$LYRA" "${E[@]}" "$T/i8" "$T/o.gguf"
expect_err "unknown tensor" 2 "$T/name/$S: tensor model.vision.weight: not a tensor of LlamaForCausalLM" "$LYRA" "${E[@]}" "$T/name" "$T/o.gguf"
expect_err "generate too" 2 "$T/overlap/$S: tensor b: data overlaps tensor a" "$LYRA" generate -m "$T/overlap" -p x
if [ -e "$T/o.gguf" ]; then bad "convert left an output file after failing"; else ok; fi
# a shard missing / the index wrong
mkdir -p "$T/shard"; cp "$H/llama_sharded/"*.json "$T/shard/"; cp "$H/llama_sharded/model-0000"[123]* "$T/shard/"
expect_err "missing shard" 2 "$T/shard/model-00004-of-00004.safetensors: cannot open: No such file or directory" \
    "$LYRA" generate -m "$T/shard" -p x
# config.json
mkdir -p "$T/cfg"; cp "$H/llama/"* "$T/cfg/"
printf '{"architectures": ["GPT2LMHeadModel"]}' >"$T/cfg/config.json"
expect_err "unsupported arch" 2 "$T/cfg/config.json: architecture GPT2LMHeadModel is not supported; lyra supports LlamaForCausalLM, MistralForCausalLM, PhiForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, GemmaForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3ForConditionalGeneration (text), Phi3ForCausalLM" \
    "$LYRA" generate -m "$T/cfg" -p x
printf '{"architectures": ["LlamaForCausalLM"], "vocab_size": 512, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64, "rope_scaling": {"rope_type": "dynamic", "factor": 2}}' >"$T/cfg/config.json"
expect_err "rope_scaling" 2 "$T/cfg/config.json: rope_scaling type 'dynamic' is not supported (default, linear, llama3, longrope; lyra's forward pass has no YaRN or dynamic NTK rope)" \
    "$LYRA" generate -m "$T/cfg" -p x
printf '{"architectures": ["LlamaForCausalLM"], "vocab_size": 512, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}' >"$T/cfg/config.json"
expect_err "missing key -> default" 2 "$T/cfg: tensor blk.0.ffn_gate.weight has shape [32, 64], expected [32, 11008]" \
    "$LYRA" generate -m "$T/cfg" -p x
expect_err "--dtype" 2 '--dtype: expected auto, float32, float16 or bfloat16, got "f8"' "$LYRA" generate -m "$H/llama" --dtype f8 -p x

# a Phi-3 folder without <|endoftext|> (llama.cpp's phi3 loader needs it): convert warns
mkdir -p "$T/p3"; cp "$H/phi3/"* "$T/p3/"; cp "$SRC/tests/data/tokenizers/llama2-stories/tokenizer.json" "$T/p3/"
check_rc "phi3 without <|endoftext|> converts" 0 "$LYRA" convert "$T/p3" "$T/p3.gguf"
check_grep "phi3 without <|endoftext|>: a warning" "no <\|endoftext\|>: llama.cpp's phi3 loader needs it" "$T/err"
check_rc "phi3 with it" 0 "$LYRA" convert "$H/phi3" "$T/p3b.gguf"
check_eq "phi3 with it: no warning" "$(grep -c endoftext "$T/err")" 0

# --- llama.cpp reads the converted files -----------------------------------------
REF="${LYRA_REF_PYTHON:-/work/venv-ref/bin/python}"
[ -x "$REF" ] && "$REF" -c 'import llama_cpp' 2>/dev/null || REF="$PY"
if "$REF" -c 'import llama_cpp' 2>/dev/null; then
    for a in llama mistral qwen2 qwen3 gemma gemma2 gemma3 phi2 phi3 phi3_longrope llama3_rope llama_bf16; do
        "$LYRA" convert -q "$H/$a" "$T/$a.gguf" || bad "convert $a"
    done
    "$REF" - "$T" "$H" >"$T/lcpp.txt" 2>"$T/lcpp.err" <<'PY'
import json, sys
import numpy as np
from llama_cpp import Llama
T, H = sys.argv[1], sys.argv[2]
for a in ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi2", "phi3", "llama3_rope", "llama_bf16"]:
    exp = json.load(open(f"{H}/{a}/expected.json"))
    m = Llama(model_path=f"{T}/{a}.gguf", n_ctx=64, verbose=False, logits_all=True, n_threads=1)
    m.eval(list(exp["tokens"]))
    out = []
    for _ in range(8):
        t = int(np.argmax(m.scores[m.n_tokens - 1])); out.append(t); m.eval([t])
    print(a, "ok" if out == exp["greedy"] else f"differs {out} {exp['greedy']}")
# longrope: llama.cpp's context is at least 256 positions, past the snapshot's
# original 32, so it takes the long factors: transformers' long-prompt logits
exp = json.load(open(f"{H}/phi3_longrope/expected.json"))
ref = np.fromfile(f"{H}/phi3_longrope/logits_long.bin", dtype="<f4").reshape(exp["long_rows"], -1)
m = Llama(model_path=f"{T}/phi3_longrope.gguf", n_ctx=64, verbose=False, logits_all=True, n_threads=1)
n = len(exp["long_tokens"])
m.eval(list(exp["long_tokens"]))
got = np.array(m.scores[n - len(ref):n])
rel = float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))
ok = rel < 1e-2 and (got.argmax(1) == ref.argmax(1)).all()
print("phi3_longrope(long)", "ok" if ok else f"differs: {rel}")
PY
    check_eq "llama.cpp ran" $? 0
    check_eq "llama.cpp agrees" "$(grep -vc ' ok$' "$T/lcpp.txt")" 0
    cat "$T/lcpp.txt"
else
    echo "note: llama_cpp not installed: the llama.cpp check is skipped"
fi
finish
