# test_cli_hfcompat.sh: configs written for Hugging Face (issue 11 items
# 1-4): "task" and the keys lyra ignores with a note (--strict makes them
# errors, typos still get "did you mean"), device maps with the ranges lyra
# prints (N-M, N+) and `config validate` checking a map against the model,
# paths in a config file relative to its directory, max_memory disk/mps;
# and the issue's check: the seed config with "task" and the seed's map
# written with ranges, run on stories260K with a simulated 8 MiB GPU.
source "$(dirname "$0")/lib.sh"

shared_path S260 models/stories260K.gguf
S260="$(cd "$(dirname "$S260")" && pwd -P)/$(basename "$S260")"
SEED_CFG="$SRC/config/model_config.example.json"
unset LYRA_MODEL_CONFIG
export LYRA_SIM_GPUS=8MiB
mkdir -p "$T/cfg/maps" "$T/elsewhere"

# --- item 1: task, HF keys noted, --strict, did you mean ---------------------
"$PY" - "$SEED_CFG" "$T/seed_task.json" "$S260" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
d["task"] = "text-generation"
d["model_id"] = sys.argv[3]
d["pipeline_kwargs"]["max_new_tokens"] = 8
json.dump(d, open(sys.argv[2], "w"))
PYEOF
check_rc "seed config + task validates" 0 "$LYRA" config validate "$T/seed_task.json"
check_rc "seed config + task generates" 0 "$LYRA" generate --model-config "$T/seed_task.json" -p "Once" --seed 1
check_grep "seed config + task: text" "." "$T/out"
printf '{"task": "summarization"}' >"$T/task.json"
check_rc "other task" 2 "$LYRA" config validate "$T/task.json"
check_eq "other task: message" "$(cat "$T/err")" \
    "lyra: error: $T/task.json: task: unknown task \"summarization\" (the valid one: \"text-generation\")"
cat >"$T/hf.json" <<'EOF'
{"task": "text-generation", "attn_implementation": "sdpa", "device": "cuda:0", "tokenizer": "x",
 "quantization_config": {"load_in_4bit": true, "bnb_4bit_compute_dtype": "float16"},
 "pipeline_kwargs": {"return_full_text": false, "max_length": 64, "num_beams": 1, "pad_token_id": 0}}
EOF
check_rc "HF keys accepted" 0 "$LYRA" config validate "$T/hf.json"
check_eq "HF keys: one note each" "$(grep -c ': ignored (' "$T/err")" 8
check_grep "HF keys: pipeline note" "^$T/hf.json: pipeline_kwargs.return_full_text: ignored \(" "$T/err"
check_grep "HF keys: bnb note" "^$T/hf.json: quantization_config.bnb_4bit_compute_dtype: ignored \(" "$T/err"
"$LYRA" config show --json --model-config "$T/hf.json" >"$T/show.json" 2>/dev/null
check_eq "quantization_config.load_in_4bit read" \
    "$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["load_in_4bit"]["value"])' "$T/show.json")" True
check_rc "--strict: a note is an error" 2 "$LYRA" config validate --strict "$T/hf.json"
check_grep "--strict: message" "^lyra: error: $T/hf.json: attn_implementation: ignored \(.*\): a note is an error under --strict" "$T/err"
printf '{"pipeline_kwargs": {"num_beams": 4}}' >"$T/beams.json"
check_rc "num_beams 4" 2 "$LYRA" config validate "$T/beams.json"
check_grep "num_beams 4: message" "^lyra: error: $T/beams.json: pipeline_kwargs.num_beams: got 4: .*1 is the only value" "$T/err"
printf '{"attn_implementaton": "sdpa"}' >"$T/typo.json"
check_rc "typo" 2 "$LYRA" config validate "$T/typo.json"
check_grep "typo: did you mean" "attn_implementaton: unknown key \(did you mean attn_implementation\?\)" "$T/err"

# --- item 2: ranges in maps, validate against the model ----------------------
MAP='{"model.embed_tokens": 0, "model.layers.0-2": 0, "model.layers.3+": "cpu", "model.norm": "cpu", "lm_head": "cpu"}'
echo "$MAP" >"$T/map.json"
check_rc "ranged map file generates" 0 "$LYRA" generate -m "$S260" --device-map "$T/map.json" -p "Once" -n 8 --seed 1
check_grep "ranged map: gpu line" "^map: 0 \(gpu\) model.embed_tokens model.layers.0-2 " "$T/err"
check_grep "ranged map: cpu line" "^map: cpu \(cpu\) model.layers.3-4 model.norm lm_head " "$T/err"
check_rc "inline ranged map" 0 "$LYRA" plan -m "$S260" --device-map "$MAP" --json
check_grep "inline ranged map: layer 4 on cpu" '"model.layers.4": ?"cpu"' "$T/out"
printf '{"model_id": "%s", "device_map": %s}' "$S260" "$MAP" >"$T/ranged.json"
check_rc "config with ranged map validates" 0 "$LYRA" config validate "$T/ranged.json"
check_rc "config with ranged map generates" 0 "$LYRA" generate --model-config "$T/ranged.json" -p "Once" -n 8 --seed 1
check_grep "config ranged map: gpu line" "^map: 0 \(gpu\) model.embed_tokens model.layers.0-2 " "$T/err"
printf '{"device_map": {"model.layers.0-3": 0, "model.layers.3+": "cpu", "": "cpu"}}' >"$T/over.json"
check_rc "map checked against -m" 2 "$LYRA" config validate -m "$S260" "$T/over.json"
check_grep "overlap names the file and key" "^lyra: error: $T/over.json: device_map: \"model.layers.0-3\" and \"model.layers.3\+\" overlap" "$T/err"
printf '{"model_id": "%s", "device_map": {"model.layerz.0+": 0, "": "cpu"}}' "$S260" >"$T/nomod.json"
check_rc "map checked against model_id" 2 "$LYRA" config validate "$T/nomod.json"
check_grep "no module names the file and key" "^lyra: error: $T/nomod.json: device_map: \"model.layerz.0\+\" matches no module" "$T/err"
check_rc "without a model the map is not checked" 0 "$LYRA" config validate "$T/over.json"
printf '{"device_map": {"model.layers.5-2": 0}}' >"$T/empty.json"
check_rc "empty range" 2 "$LYRA" config validate "$T/empty.json"
check_grep "empty range: message" "model.layers.5-2\": empty range" "$T/err"

# --- item 3: paths relative to the config file -------------------------------
ln -s "$S260" "$T/cfg/model.gguf"
echo "$MAP" >"$T/cfg/maps/map.json"
printf '{"model_id": "model.gguf", "device_map": "maps/map.json", "pipeline_kwargs": {"max_new_tokens": 8}}' >"$T/cfg/rel.json"
cd "$T/elsewhere" || exit 1
check_rc "relative paths from elsewhere" 0 "$LYRA" generate --model-config ../cfg/rel.json -p "Once" --seed 1
check_grep "relative map file used" "^map: 0 \(gpu\) model.embed_tokens model.layers.0-2 " "$T/err"
"$LYRA" config show --json --model-config ../cfg/rel.json >"$T/show.json" 2>/dev/null
check_eq "model_id resolved" \
    "$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["model_id"]["value"])' "$T/show.json")" \
    "$(cd "$T/cfg" && pwd -P)/model.gguf"
printf '{"model_id": "microsoft/phi-2"}' >"$T/cfg/repo.json"
"$LYRA" config show --json --model-config ../cfg/repo.json >"$T/show.json" 2>/dev/null
check_eq "a repo id stays" \
    "$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["model_id"]["value"])' "$T/show.json")" "microsoft/phi-2"
mkdir -p "$T/home"
ln -s "$S260" "$T/home/m.gguf"
printf '{"model_id": "~/m.gguf"}' >"$T/cfg/tilde.json"
check_rc "~ expanded" 0 env HOME="$T/home" "$LYRA" generate --model-config ../cfg/tilde.json -p "Once" -n 4 --seed 1
check_rc "-m stays relative to the cwd" 2 "$LYRA" generate --model-config ../cfg/rel.json -m model.gguf -p "Once"
check_grep "-m stays relative: message" "model.gguf" "$T/err"
cd "$START_DIR" || exit 1

# --- item 4: max_memory disk and mps -----------------------------------------
printf '{"max_memory": {"0": "6GB", "cpu": "16GB", "disk": "100GB", "mps": "8GB"}}' >"$T/mm.json"
check_rc "max_memory disk, mps" 0 "$LYRA" config validate "$T/mm.json"
check_grep "disk note" "^$T/mm.json: max_memory.disk: ignored \(" "$T/err"
check_grep "mps note" "^$T/mm.json: max_memory.mps: ignored \(.*Apple GPU" "$T/err"
check_rc "max_memory disk, mps: generate" 0 "$LYRA" generate --model-config "$T/mm.json" -m "$S260" -p "Once" -n 4 --seed 1
check_rc "max_memory disk, mps: plan" 0 "$LYRA" plan --model-config "$T/mm.json" -m "$S260" --max-memory 0=8MiB --json
check_grep "max_memory disk, mps: budgets" '"id": ?"cpu".*"budget": ?16000000000' "$T/out"
printf '{"max_memory": {"disk": "lots"}}' >"$T/mmbad.json"
check_rc "max_memory disk: size still checked" 2 "$LYRA" config validate "$T/mmbad.json"

finish
