# test_cli_config.sh: model configuration files (docs/config.md), run in a
# temporary working directory with a temporary HOME and XDG_CONFIG_HOME:
# every discovery rung, --no-config and LYRA_MODEL_CONFIG=none; `config show
# --json` values and sources parsed with Python's json module; every class of
# validation error (exit 2, one stderr line with the file, the exact JSON
# path, line:column for syntax errors, nothing on stdout); the seed's config
# validating; flags over the file with per-entry merges.
source "$(dirname "$0")/lib.sh"

SEED_CFG="$SRC/config/model_config.example.json"
W="$T/work"
mkdir -p "$W/config" "$T/home/.config/lyra" "$T/xdg/lyra"
export HOME="$T/home" XDG_CONFIG_HOME="$T/xdg"
unset LYRA_MODEL_CONFIG LYRA_SIM_GPUS
cd "$W" || exit 1

# jq-like: get KEY's value and source from `config show --json` on stdin
# (prints "VALUE|SOURCE", the value as compact JSON).
getkey() {
    "$PY" -c '
import json, sys
d = json.load(sys.stdin)
e = d[sys.argv[1]]
assert set(e) == {"value", "source"}, e
print(json.dumps(e["value"], separators=(",", ":")) + "|" + e["source"])' "$1"
}

# --- the seed's file validates unchanged ------------------------------------
check_rc "validate seed config" 0 "$LYRA" config validate "$SEED_CFG"
check_eq "validate seed stdout" "$(cat "$T/out")" "$SEED_CFG: ok"

# --- config show --json: every key, sources ---------------------------------
"$LYRA" config show --json --no-config >"$T/d.json" 2>"$T/err"
check_eq "show --no-config rc" "$?" 0
r=$("$PY" - "$T/d.json" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
keys = ["model_id", "revision", "device_map", "max_memory", "reserve", "gpu_layers", "tensor_split",
        "gpu_layers_fallback", "enable_progressive_fallback", "fallback_policy", "load_in_8bit",
        "load_in_4bit", "dtype", "context_length", "batch_size", "kv_cache_type", "threads", "seed",
        "system_prompt", "chat_template"] + ["pipeline_kwargs." + k for k in
        ["max_new_tokens", "temperature", "do_sample", "top_k", "top_p", "min_p",
         "repetition_penalty", "stop"]] + ["server_host", "server_port", "server_parallel", "server_queue"]
assert list(d) == keys, list(d)
for k, e in d.items():
    assert set(e) == {"value", "source"} and e["source"] == "default", (k, e)
want = {"device_map": "auto", "max_memory": {}, "enable_progressive_fallback": True,
        "fallback_policy": "layers", "batch_size": 512, "kv_cache_type": "f16",
        "pipeline_kwargs.temperature": 0.8, "pipeline_kwargs.do_sample": True,
        "pipeline_kwargs.top_k": 40, "pipeline_kwargs.top_p": 0.95, "pipeline_kwargs.min_p": 0.05,
        "pipeline_kwargs.max_new_tokens": 256, "pipeline_kwargs.stop": [], "model_id": None}
for k, v in want.items():
    assert d[k]["value"] == v, (k, d[k], v)
print("ok")
PYEOF
)
check_eq "show --json defaults" "$r" ok

ABS_SEED="$(cd "$(dirname "$SEED_CFG")" && pwd -P)/model_config.example.json"
"$LYRA" config show --json --model-config "$SEED_CFG" -m m.gguf --max-memory cpu=8GB \
    --temp 0.25 -n 12 --greedy >"$T/s.json" 2>"$T/err"
check_eq "show seed + flags rc" "$?" 0
r=$("$PY" - "$T/s.json" "file:$ABS_SEED" <<'PYEOF'
import json, sys
d, f = json.load(open(sys.argv[1])), sys.argv[2]
def vs(k): return (d[k]["value"], d[k]["source"])
assert vs("model_id") == ("m.gguf", "flag:--model"), vs("model_id")
assert vs("device_map") == ("auto", f), vs("device_map")
# per-entry merge: the file's GPU entry stays, the flag's cpu entry wins
assert vs("max_memory") == ({"0": "6GB", "cpu": "8GB"}, "flag:--max-memory"), vs("max_memory")
assert vs("gpu_layers_fallback") == (16, f)
assert vs("enable_progressive_fallback") == (True, f)
assert vs("pipeline_kwargs.max_new_tokens") == (12, "flag:--n-predict"), vs("pipeline_kwargs.max_new_tokens")
assert vs("pipeline_kwargs.temperature") == (0.25, "flag:--temp")
assert vs("pipeline_kwargs.do_sample") == (False, "flag:--greedy")
assert vs("pipeline_kwargs.top_k") == (40, "default")
print("ok")
PYEOF
)
check_eq "show seed + flags" "$r" ok
# flags win wherever they stand (before --model-config too)
"$LYRA" config show --json --temp 0.5 --model-config "$SEED_CFG" 2>"$T/err" | getkey pipeline_kwargs.temperature >"$T/v"
check_eq "flag before --model-config" "$(cat "$T/v")" "0.5|flag:--temp"

# --- discovery rungs -------------------------------------------------------
echo '{"seed": 1}' >"$T/home/.config/lyra/model_config.json"
echo '{"seed": 2}' >"$T/xdg/lyra/model_config.json"
echo '{"seed": 3}' >"$W/config/model_config.json"
echo '{"seed": 4}' >"$T/env.json"
echo '{"seed": 5}' >"$T/flag.json"
seed_src() { "$LYRA" config show --json "$@" 2>"$T/err" | getkey seed; }
check_eq "rung --model-config" "$(LYRA_MODEL_CONFIG="$T/env.json" seed_src --model-config "$T/flag.json")" \
    "5|file:$T/flag.json"
check_eq "rung LYRA_MODEL_CONFIG" "$(LYRA_MODEL_CONFIG="$T/env.json" seed_src)" "4|file:$T/env.json"
check_eq "rung ./config" "$(seed_src)" "3|file:$W/config/model_config.json"
check_eq "--no-config" "$(seed_src --no-config)" "null|default"
check_eq "LYRA_MODEL_CONFIG=none" "$(LYRA_MODEL_CONFIG=none seed_src)" "null|default"
check_eq "flag over file" "$(seed_src --seed 9)" "9|flag:--seed"
rm "$W/config/model_config.json"
check_eq "rung XDG_CONFIG_HOME" "$(seed_src)" "2|file:$T/xdg/lyra/model_config.json"
check_eq "rung ~/.config" "$(unset XDG_CONFIG_HOME; seed_src)" "1|file:$T/home/.config/lyra/model_config.json"
rm "$T/xdg/lyra/model_config.json"
# XDG_CONFIG_HOME set replaces ~/.config (the XDG rule)
check_eq "XDG_CONFIG_HOME without a file" "$(seed_src)" "null|default"
rm "$T/home/.config/lyra/model_config.json"
check_eq "no file anywhere" "$(unset XDG_CONFIG_HOME; seed_src)" "null|default"
# the repo's example is not discovered from the repo root
check_eq "example not discovered" "$(cd "$SRC" && seed_src)" "null|default"
"$LYRA" config show --no-config >"$T/out" 2>"$T/err"
check_grep "show text header" '^config file: none \(--no-config\)$' "$T/out"
check_grep "show text line" '^pipeline_kwargs.top_k +40 +default$' "$T/out"

# --- errors: exit 2, nothing on stdout, one line naming file + JSON path ----
# expect_invalid NAME MESSAGE-AFTER-"lyra: error: FILE" JSON-TEXT
expect_invalid() {
    local name="$1" want="$2"
    printf '%s' "$3" >"$T/bad.json"
    "$LYRA" config validate "$T/bad.json" >"$T/out" 2>"$T/err"
    check_eq "$name: exit code" "$?" 2
    check_eq "$name: stdout" "$(wc -c <"$T/out")" 0
    check_eq "$name: stderr lines" "$(wc -l <"$T/err")" 1
    check_eq "$name: message" "$(cat "$T/err")" "lyra: error: $T/bad.json$want"
}
expect_invalid "syntax" ":3:8: invalid JSON: invalid token near 'yes'" $'{\n  "seed": 1,\n  "b": yes\n}'
expect_invalid "trailing comma" ":1:17: invalid JSON: string or '}' expected near '}'" '{"seed": 1,     }'
expect_invalid "unknown key" ": max_memroy: unknown key (did you mean max_memory?)" '{"max_memroy": {}}'
expect_invalid "unknown nested key" ": pipeline_kwargs.temprature: unknown key (did you mean temperature?)" \
    '{"pipeline_kwargs": {"temprature": 1}}'
expect_invalid "key at the wrong level" \
    ": max_new_tokens: unknown key (did you mean pipeline_kwargs.max_new_tokens (inside pipeline_kwargs)?)" \
    '{"max_new_tokens": 1}'
expect_invalid "wrong type" \
    ": pipeline_kwargs.max_new_tokens: expected an integer, got a string (\"4000\")" \
    '{"pipeline_kwargs": {"max_new_tokens": "4000"}}'
expect_invalid "out of range" ": pipeline_kwargs.top_p: must be between 0 and 1, got 1.5" \
    '{"pipeline_kwargs": {"top_p": 1.5}}'
expect_invalid "negative threads" ": threads: must be between 0 and 4096, got -1" '{"threads": -1}'
expect_invalid "size 6XB" \
    ": max_memory.0: bad size \"6XB\": unknown unit \"XB\" (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)" \
    '{"max_memory": {"0": "6XB", "cpu": "16GB"}}'
expect_invalid "size 6Gb" ": max_memory.cpu: bad size \"6Gb\": lowercase b means bits; bits? write 6GB or 6GiB" \
    '{"max_memory": {"0": "6GB", "cpu": "6Gb"}}'
expect_invalid "8bit + 4bit" ": load_in_4bit: conflicts with load_in_8bit: choose one" \
    '{"load_in_8bit": true, "load_in_4bit": true}'
expect_invalid "gpu_layers + map" \
    ": gpu_layers: conflicts with the explicit map in device_map: keep one (--gpu-layers on the command line replaces the map)" \
    '{"device_map": {"": "cpu"}, "gpu_layers": 2}'
expect_invalid "bad strategy" \
    ": device_map: unknown device map \"everywhere\" (auto, balanced, balanced_low_0, sequential, cpu, cuda, cuda:N, N or a JSON map)" \
    '{"device_map": "everywhere"}'
expect_invalid "top level array" ": expected a JSON object {\"key\": value, ...} at the top level, got an array" '[]'

# several files: one line each, exit 2 when any is invalid
printf '{"seed": 1}' >"$T/ok.json"
printf '{"seed": -1}' >"$T/bad1.json"
printf '{"seed": 1' >"$T/bad2.json"
"$LYRA" config validate "$T/ok.json" "$T/bad1.json" "$T/bad2.json" "$SEED_CFG" >"$T/out" 2>"$T/err"
check_eq "multi: exit" "$?" 2
check_eq "multi: stdout" "$(cat "$T/out")" "$T/ok.json: ok
$SEED_CFG: ok"
check_eq "multi: stderr lines" "$(wc -l <"$T/err")" 2
check_grep "multi: first error" "^lyra: error: $T/bad1.json: seed: must be between 0 and" "$T/err"
check_grep "multi: second error" "^lyra: error: $T/bad2.json:1:10: invalid JSON: " "$T/err"

# a broken discovered file stops every command, naming it
printf '{"pipeline_kwargs": {"top_k": "x"}}' >"$W/config/model_config.json"
check_rc "broken discovered config" 2 "$LYRA" config show
check_eq "broken discovered config: message" "$(cat "$T/err")" \
    "lyra: error: config/model_config.json: pipeline_kwargs.top_k: expected an integer, got a string (\"x\")"
check_rc "--no-config skips it" 0 "$LYRA" config show --no-config
rm "$W/config/model_config.json"
check_rc "LYRA_MODEL_CONFIG missing file" 2 env LYRA_MODEL_CONFIG="$T/nope.json" "$LYRA" config show
check_grep "LYRA_MODEL_CONFIG missing file: message" "^lyra: error: LYRA_MODEL_CONFIG: $T/nope.json: No such file" "$T/err"

# HF keys: accepted, one "ignored" note each
printf '{"torch_dtype": "float16", "trust_remote_code": true, "low_cpu_mem_usage": true, "revision": "main", "offload_folder": "x"}' >"$T/hf.json"
check_rc "HF keys" 0 "$LYRA" config validate "$T/hf.json"
check_eq "HF keys: notes" "$(grep -c ': ignored (' "$T/err")" 3
check_grep "HF keys: trust_remote_code note" "^$T/hf.json: trust_remote_code: ignored \(" "$T/err"
# torch_dtype is dtype (transformers 4's name): show names the key in the source
"$LYRA" config show --model-config "$T/hf.json" >"$T/out" 2>"$T/err"
check_grep "torch_dtype: dtype with its source" '^dtype +"float16" +file:.*/hf.json \(torch_dtype\)$' "$T/out"
check_grep "revision: from the file" '^revision +"main" +file:.*/hf.json$' "$T/out"
printf '{"torch_dtype": "float16", "dtype": "bfloat16"}' >"$T/td.json"
check_rc "torch_dtype and dtype differ" 2 "$LYRA" config validate "$T/td.json"
check_grep "torch_dtype and dtype differ: message" 'td.json: torch_dtype: "float16" conflicts with dtype "bfloat16"' "$T/err"
check_rc "--revision over the file" 0 "$LYRA" config show --json --model-config "$T/hf.json" --revision v2
"$LYRA" config show --json --model-config "$T/hf.json" --revision v2 >"$T/r.json" 2>/dev/null
check_eq "--revision over the file: value" "$(getkey revision <"$T/r.json")" '"v2"|flag:--revision'
check_rc "--revision and org/name@REV differ" 2 "$LYRA" generate --no-config -m nobody/none@v1 --revision v2
check_eq "--revision and org/name@REV differ: message" "$(cat "$T/err")" \
    "lyra: error: nobody/none@v1 names revision v1 but --revision says v2: keep one"

# flag errors name the flag
check_rc "bad flag value" 2 "$LYRA" config show --no-config --top-p 2
check_eq "bad flag value: message" "$(cat "$T/err")" "lyra: error: --top-p: must be between 0 and 1, got 2"
check_rc "both load_in flags" 2 "$LYRA" config show --no-config --load-in-8bit --load-in-4bit
check_grep "both load_in flags: message" "^lyra: error: --load-in-4bit: conflicts with load_in_8bit" "$T/err"
# --gpu-layers on the command line replaces a file's explicit map
printf '{"device_map": {"": "cpu"}}' >"$T/map.json"
"$LYRA" config show --json --model-config "$T/map.json" --gpu-layers 2 >"$T/g.json" 2>"$T/err"
check_eq "--gpu-layers over a map: rc" "$?" 0
check_eq "--gpu-layers over a map: map" "$(getkey device_map <"$T/g.json")" '"auto"|flag:--gpu-layers'
check_eq "--gpu-layers over a map: layers" "$(getkey gpu_layers <"$T/g.json")" '2|flag:--gpu-layers'

# --- the commands read the config (needs the shared test model) ------------
if shared_have S260 models/stories260K.gguf; then
    P=(-p "Once upon a time" --seed 1)
    # backward compatibility: no config anywhere = --no-config
    "$LYRA" generate -m "$S260" "${P[@]}" -n 24 --temp 0 >"$T/a.txt" 2>"$T/err"
    check_eq "generate without a config: rc" "$?" 0
    "$LYRA" generate -m "$S260" "${P[@]}" -n 24 --temp 0 --no-config >"$T/b.txt" 2>"$T/err"
    check_eq "generate without a config = --no-config" "$(cat "$T/a.txt")" "$(cat "$T/b.txt")"
    # the seed's config, discovered, on a machine without GPU, -m over its model_id
    cp "$SEED_CFG" "$W/config/model_config.json"
    "$LYRA" generate -m "$S260" "${P[@]}" -n 24 --temp 0 >"$T/c.txt" 2>"$T/err"
    check_eq "seed config + -m: rc" "$?" 0
    check_eq "seed config + -m: same text" "$(cat "$T/c.txt")" "$(cat "$T/a.txt")"
    check_grep "seed config: logged" "^config: $W/config/model_config.json \(./config/model_config.json\)$" "$T/err"
    check_grep "seed config: GPU 0 absent is a note" "max_memory: no GPU 0 on this machine; entry ignored" "$T/err"
    # its max_new_tokens (4000) applies: the story runs to its end, past -n 24
    "$LYRA" generate -m "$S260" "${P[@]}" --temp 0 >"$T/d.txt" 2>"$T/err"
    check_eq "seed config max_new_tokens: rc" "$?" 0
    n_a=$(wc -c <"$T/a.txt"); n_d=$(wc -c <"$T/d.txt")
    if [ "$n_d" -gt "$n_a" ]; then ok; else bad "max_new_tokens 4000 gave $n_d bytes, -n 24 gave $n_a"; fi
    # without -m the config's model_id is used (and resolved: a missing one names the file)
    check_rc "seed model_id not here" 2 "$LYRA" generate -n 1
    check_grep "seed model_id not here: message" \
        "^lyra: error: $W/config/model_config.json: model_id: microsoft/phi-2: not found" "$T/err"
    rm "$W/config/model_config.json"
    # sampling keys from a file = the same flags; flags win over the file
    printf '{"model_id": "%s", "seed": 1, "pipeline_kwargs": {"max_new_tokens": 24, "do_sample": false}}' \
        "$S260" >"$T/gen.json"
    "$LYRA" generate --model-config "$T/gen.json" -p "Once upon a time" >"$T/e.txt" 2>"$T/err"
    check_eq "config's model_id and sampling: rc" "$?" 0
    check_eq "config's do_sample false = --temp 0" "$(cat "$T/e.txt")" "$(cat "$T/a.txt")"
    "$LYRA" generate --model-config "$T/gen.json" -p "Once upon a time" -n 5 >"$T/f.txt" 2>"$T/err"
    "$LYRA" generate -m "$S260" "${P[@]}" -n 5 --temp 0 --no-config >"$T/g.txt" 2>"$T/err"
    check_eq "-n over max_new_tokens" "$(cat "$T/f.txt")" "$(cat "$T/g.txt")"
    # stop strings: the text ends before the first one, which is not printed
    full="$(cat "$T/a.txt")"
    printf '{"pipeline_kwargs": {"stop": ["Lily", "zzz"]}}' >"$T/stop.json"
    "$LYRA" generate -m "$S260" "${P[@]}" -n 24 --temp 0 --model-config "$T/stop.json" >"$T/h.txt" 2>"$T/err"
    check_eq "stop from the config" "$(cat "$T/h.txt")" "${full%%Lily*}"
    "$LYRA" generate -m "$S260" "${P[@]}" -n 24 --temp 0 --stop "e was" >"$T/h.txt" 2>"$T/err"
    check_eq "--stop" "$(cat "$T/h.txt")" "${full%%e was*}"
    # plan reads budgets and the context from the config; flags merge over it
    printf '{"max_memory": {"cpu": "64MiB"}, "context_length": 128, "batch_size": 32}' >"$T/plan.json"
    "$LYRA" plan -m "$S260" --json --model-config "$T/plan.json" >"$T/p1.json" 2>"$T/err"
    check_eq "plan with a config: rc" "$?" 0
    "$LYRA" plan -m "$S260" --json --model-config "$T/plan.json" --max-memory cpu=32MiB -c 256 >"$T/p2.json" 2>"$T/err"
    r=$("$PY" - "$T/p1.json" "$T/p2.json" <<'PYEOF'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
cpu = lambda p: [d for d in p["devices"] if d["id"] == "cpu"][0]
assert (a["ctx"], a["batch"], cpu(a)["budget"]) == (128, 32, 64 << 20), (a["ctx"], a["batch"], cpu(a))
assert (b["ctx"], b["batch"], cpu(b)["budget"]) == (256, 32, 32 << 20), (b["ctx"], b["batch"], cpu(b))
print("ok")
PYEOF
)
    check_eq "plan: config and flags" "$r" ok
    # perplexity and bench accept the config flags (and the config's model_id)
    check_rc "perplexity with the config's model" 0 "$LYRA" -q perplexity --model-config "$T/gen.json" \
        -f "$SRC/tests/data/stories.txt" -c 64 --no-mmap
    check_grep "perplexity output" '^perplexity: [0-9]+\.[0-9]{4}$' "$T/out"
    check_rc "perplexity --no-config -m" 0 "$LYRA" -q perplexity --no-config -m "$S260" -f "$SRC/tests/data/stories.txt" -c 64
    check_eq "perplexity: the same with and without a config" "$(cat "$T/out")" "$("$LYRA" -q perplexity --model-config "$T/gen.json" -f "$SRC/tests/data/stories.txt" -c 64)"
fi

# help: stdout, exit 0, quoted verbatim in docs/cli.md
for h in "config --help" "config show --help" "help config"; do
    "$LYRA" $h >"$T/out" 2>"$T/err"
    check_eq "$h rc" "$?" 0
    check_grep "$h" '^usage: lyra config show' "$T/out"
    r=$("$PY" -c "import sys; print('ok' if open(sys.argv[1]).read() in open(sys.argv[2]).read() else 'missing')" \
        "$T/out" "$SRC/docs/cli.md")
    check_eq "docs/cli.md has lyra $h" "$r" ok
done
check_rc "config without a subcommand" 2 "$LYRA" config
check_grep "config without a subcommand: message" '^lyra: error: config: expected show or validate' "$T/err"
check_rc "config validate without files" 2 "$LYRA" config validate
check_rc "config show stray argument" 2 "$LYRA" config show --no-config extra
check_grep "config show stray argument: message" "^lyra: error: extra: unexpected argument for 'config'" "$T/err"

finish
