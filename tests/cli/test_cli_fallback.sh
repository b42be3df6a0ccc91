# test_cli_fallback.sh: the progressive fallback from the command line
# (docs/fallback.md): a sweep that fails every allocation of one load plus a
# 16-token generation on stories260K over two simulated GPUs, one at a time
# (ID:N) and from there on (ID:N+), expecting the all-CPU text (exit 0) or,
# for a CPU failure with no way left, exit 3 naming the device; the step
# lines' format; --no-fallback exit 3; the context policy; plan --probe;
# the planner's step-down of --gpu-layers (exit 2 without fallback);
# malformed LYRA_FAIL_ALLOC (exit 2). Run under ASan/LSan by CI, so a leak or
# a bad access on any of these paths fails it.
source "$(dirname "$0")/lib.sh"
shared_path M models/stories260K.gguf
GEN=(generate -m "$M" -p "Once upon a time" -n 16 --temp 0 --ctx 256 --batch 64 --kv-chunk 8 -t 1)

# the reference: all on the CPU
LYRA_SIM_GPUS= "$LYRA" -q "${GEN[@]}" >"$T/ref" 2>"$T/ref.err"
check_eq "reference run" "$?" 0
[ -s "$T/ref" ] && ok || bad "empty reference text"

export LYRA_SIM_GPUS=600KiB,600KiB
LYRA_ALLOC_STATS=1 "$LYRA" "${GEN[@]}" >"$T/out" 2>"$T/err"
check_eq "stats run" "$?" 0
check_eq "split text = cpu text" "$(cat "$T/out")" "$(cat "$T/ref")"
check_grep "map on two GPUs" '^map: 1 \(gpu\) model\.layers' "$T/err"
declare -A CALLS
for id in 0 1 cpu; do
    n=$(sed -n "s/^alloc: $id calls=\([0-9]*\) peak=[0-9]*$/\1/p" "$T/err")
    [ -n "$n" ] && [ "$n" -gt 0 ] && ok || bad "no allocation count for $id: $(cat "$T/err")"
    CALLS[$id]=${n:-0}
done
echo "allocation calls: 0=${CALLS[0]} 1=${CALLS[1]} cpu=${CALLS[cpu]}"

# the sweep
runs=0
for id in 0 1 cpu; do
    for ((n = 1; n <= CALLS[$id]; n++)); do
        for plus in "" "+"; do
            [ "$id" = cpu ] && [ "$plus" = "+" ] && continue
            LYRA_FAIL_ALLOC="$id:$n$plus" "$LYRA" "${GEN[@]}" >"$T/out" 2>"$T/err"
            rc=$?
            runs=$((runs + 1))
            if [ "$rc" = 0 ]; then
                if cmp -s "$T/out" "$T/ref"; then ok; else bad "$id:$n$plus: text differs: $(cat "$T/out")"; fi
                grep -q "^LYRA_FAIL_ALLOC=$id:$n[+]*: fault injection armed$" "$T/err" && ok ||
                    bad "$id:$n$plus: not announced"
            elif [ "$rc" = 3 ] && [ "$id" = cpu ]; then
                grep -qE "^lyra: error: cpu: .*out of memory on cpu: asked .* no way left" "$T/err" && ok ||
                    bad "$id:$n: exit 3 without naming the device: $(cat "$T/err")"
                [ ! -s "$T/out" ] || [ "$(wc -c <"$T/out")" -le "$(wc -c <"$T/ref")" ] && ok || bad "$id:$n: output"
            else
                bad "$id:$n$plus: exit $rc: $(tail -3 "$T/err")"
            fi
            # every step line has the documented form
            if grep -q '^fallback: ' "$T/err"; then
                grep '^fallback: ' "$T/err" | grep -vqE '^fallback: (during generation at token [0-9]+: )?([0-9]+ -> [0-9]+ (GPU layers|CPU layers, the others on disk)|context [0-9]+ -> [0-9]+ positions) \(out of memory on (0|1|cpu): asked [0-9]+\.[0-9] (B|KiB|MiB|GiB), free [0-9]+\.[0-9] (B|KiB|MiB|GiB|TiB)\)$' &&
                    bad "$id:$n$plus: malformed step line: $(grep '^fallback: ' "$T/err" | head -2)" || ok
            fi
        done
    done
done
echo "sweep: $runs runs"

# during generation: one GPU, KV chunks of 8 positions; fail the second
# allocation after what a 1-token run makes (a chunk at position 8)
export LYRA_SIM_GPUS=64MiB
LYRA_ALLOC_STATS=1 "$LYRA" "${GEN[@]/16/1}" >"$T/out" 2>"$T/err"
n1=$(sed -n 's/^alloc: 0 calls=\([0-9]*\) .*/\1/p' "$T/err")
LYRA_FAIL_ALLOC="0:$((n1 + 2))" "$LYRA" "${GEN[@]}" >"$T/out" 2>"$T/err"
check_eq "mid-generation: exit" "$?" 0
check_eq "mid-generation: cpu text" "$(cat "$T/out")" "$(cat "$T/ref")"
check_grep "mid-generation: step line" '^fallback: during generation at token [0-9]+: 5 -> 4 GPU layers \(out of memory on 0: asked ' "$T/err"
check_grep "mid-generation: map after" '^map: cpu \(cpu\) model\.layers\.4 ' "$T/err"
export LYRA_SIM_GPUS=600KiB,600KiB

# a GPU failure on the first allocation with the fallback on: one step line
LYRA_FAIL_ALLOC=0:1 "$LYRA" "${GEN[@]}" >"$T/out" 2>"$T/err"
check_grep "load step line" '^fallback: 3 -> 1 GPU layers \(out of memory on 0: asked ' "$T/err"

# a GPU whose real memory is smaller than it reports
export LYRA_SIM_GPUS=300KiB@64MiB
check_rc "no fallback: exit 3" 3 "$LYRA" "${GEN[@]}" --no-fallback
check_grep "no fallback: one line naming device, asked, free" \
    '^lyra: error: 0: out of memory on 0: asked [0-9.]+ [KMG]?i?B, free [0-9.]+ [KMG]?i?B \(progressive fallback is off\)$' "$T/err"
check_eq "no fallback: nothing on stdout" "$(wc -c <"$T/out")" 0
check_rc "policy none = no fallback" 3 "$LYRA" "${GEN[@]}" --fallback-policy none
check_rc "fallback on: runs" 0 "$LYRA" "${GEN[@]}"
check_eq "fallback on: cpu text" "$(cat "$T/out")" "$(cat "$T/ref")"
check_grep "fallback on: map shows where layers are" '^map: cpu \(cpu\) .*model\.layers' "$T/err"
check_rc "gpu-layers-fallback" 0 "$LYRA" "${GEN[@]}" --gpu-layers-fallback 0
check_grep "gpu-layers-fallback: tried first" '^fallback: 5 -> 0 GPU layers' "$T/err"

# plan --probe: the search with real allocations, JSON with "probe": true
check_rc "plan --probe" 0 "$LYRA" plan -m "$M" --ctx 256 --batch 64 --probe
"$PY" - "$T/out" <<'EOF' && ok || bad "probe JSON: $(cat "$T/out")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["probe"] is True, j
m = j["map"]
assert len(m) == 8 and m["model.layers.0"] in ("0", "cpu"), m
assert all(s["what"] in ("gpu", "cpu", "ctx") for s in j["fallback"]), j["fallback"]
assert len(j["fallback"]) >= 1
dev = {d["id"]: d for d in j["devices"]}
assert dev["0"]["total"] <= 300 * 1024, dev["0"]
EOF

# the context policy halves the context before moving layers
export LYRA_SIM_GPUS=1900KiB@64MiB
check_rc "context policy" 0 "$LYRA" generate -m "$M" -p "Once upon a time" -n 8 --temp 0 --ctx 2048 \
    --batch 64 --fallback-policy context --min-ctx 256 -t 1
check_grep "context policy: halves" '^fallback: context 2048 -> 1024 positions \(out of memory on 0' "$T/err"
check_grep "context policy: halves again" '^fallback: context 1024 -> 512 positions' "$T/err"
if grep -q "^fallback: .*GPU layers" "$T/err"; then bad "context policy moved layers: $(cat "$T/err")"; else ok; fi

# the planner's step-down (docs/fallback.md "At plan"; the H200 run of
# docs/gpu.md): a GPU whose free memory holds fewer layers than asked, and a
# --max-memory above its free memory (cut to it): --gpu-layers all steps down
# to the 2 layers that fit, exit 0 and the all-CPU text; lyra plan agrees
export LYRA_SIM_GPUS=900KiB
STEP=(--gpu-layers all --max-memory 0=6GiB)
check_rc "plan step-down: runs" 0 "$LYRA" "${GEN[@]}" "${STEP[@]}"
check_eq "plan step-down: cpu text" "$(cat "$T/out")" "$(cat "$T/ref")"
check_grep "plan step-down: budget cut" \
    '^max_memory: 0: budget 6\.0 GiB is more than the device.s free memory 900\.0 KiB; planning with 900\.0 KiB$' "$T/err"
check_grep "plan step-down: step line" \
    '^fallback: at plan: 5 -> 2 GPU layers \(model\.layers\.2 does not fit: budgets GPU 0 900\.0 KiB\)$' "$T/err"
check_eq "plan step-down: one step line" "$(grep -c '^fallback: ' "$T/err")" 1
check_grep "plan step-down: map" '^map: 0 \(gpu\) model\.embed_tokens model\.layers\.0-1 weights' "$T/err"
check_rc "plan step-down: lyra plan" 0 "$LYRA" plan -m "$M" --ctx 256 --batch 64 --kv-chunk 8 "${STEP[@]}" --json
check_grep "plan step-down: lyra plan's line" '^fallback: at plan: 5 -> 2 GPU layers ' "$T/err"
"$PY" - "$T/out" <<'EOF2' && ok || bad "plan step-down JSON: $(cat "$T/out")"
import json, sys
j = json.load(open(sys.argv[1]))
m = j["map"]
assert [m[f"model.layers.{i}"] for i in range(5)] == ["0", "0", "cpu", "cpu", "cpu"], m
assert m["model.embed_tokens"] == "0" and m["lm_head"] == "cpu", m
(s,) = j["fallback"]
assert (s["phase"], s["what"], s["device"], s["from"], s["to"]) == ("load", "gpu", "0", 5, 2), s
assert s["asked"] > s["free"], s
EOF2
check_rc "plan step-down: probe" 0 "$LYRA" plan -m "$M" --ctx 256 --batch 64 --kv-chunk 8 "${STEP[@]}" --probe
"$PY" - "$T/out" <<'EOF2' && ok || bad "plan step-down probe JSON: $(cat "$T/out")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["fallback"][0]["from"] == 5 and j["fallback"][0]["to"] == 2, j["fallback"]
assert j["map"]["model.layers.1"] == "0" and j["map"]["model.layers.2"] == "cpu", j["map"]
EOF2
check_rc "plan step-down: gpu-layers-fallback" 0 "$LYRA" "${GEN[@]}" "${STEP[@]}" --gpu-layers-fallback 1
check_grep "plan step-down: gpu-layers-fallback first" '^fallback: at plan: 5 -> 1 GPU layers ' "$T/err"
check_eq "plan step-down: gpu-layers-fallback text" "$(cat "$T/out")" "$(cat "$T/ref")"
printf '{"gpu_layers": "all", "max_memory": {"0": "6GiB"}}\n' >"$T/cfg.json"
check_rc "plan step-down: config's gpu_layers" 0 "$LYRA" "${GEN[@]}" --model-config "$T/cfg.json"
check_grep "plan step-down: config's step line" '^fallback: at plan: 5 -> 2 GPU layers ' "$T/err"
check_eq "plan step-down: config's text" "$(cat "$T/out")" "$(cat "$T/ref")"
# fallback off: today's planner error, exit 2, nothing generated
for off in --no-fallback "--fallback-policy none"; do
    check_rc "plan step-down: $off" 2 "$LYRA" "${GEN[@]}" "${STEP[@]}" $off
    check_grep "plan step-down: $off message" \
        '^lyra: error: gpu_layers: model\.layers\.2 \(214528 bytes of weights and KV cache\) does not fit on the GPUs \(budgets GPU 0 900\.0 KiB\)$' "$T/err"
    if grep -q '^fallback: ' "$T/err"; then bad "plan step-down: $off stepped down"; else ok; fi
    check_eq "plan step-down: $off stdout" "$(wc -c <"$T/out")" 0
done
printf '{"gpu_layers": "all", "max_memory": {"0": "6GiB"}, "enable_progressive_fallback": false}\n' >"$T/cfg.json"
check_rc "plan step-down: config fallback off" 2 "$LYRA" "${GEN[@]}" --model-config "$T/cfg.json"
check_grep "plan step-down: config fallback off message" '^lyra: error: gpu_layers: model\.layers\.2 ' "$T/err"
# an explicit strategy keeps its error: cuda:0 without --gpu-layers
check_rc "plan step-down: cuda:0 stays an error" 2 "$LYRA" "${GEN[@]}" --device-map cuda:0
check_grep "plan step-down: cuda:0 message" '^lyra: error: device_map: model\.layers\.2 does not fit on GPU 0: ' "$T/err"

# fault injection with no way left: all on the CPU, every CPU allocation fails
export LYRA_SIM_GPUS=
check_rc "no way left: exit 3" 3 env LYRA_FAIL_ALLOC=cpu:1+ "$LYRA" "${GEN[@]}"
check_grep "no way left: names the device" '^lyra: error: cpu: ' "$T/err"

# malformed LYRA_FAIL_ALLOC: exit 2 naming it
for v in "0" "0:" "0:x" "0:0" "cpu:-1" "cpu:1,," "9:1" ":3"; do
    check_rc "LYRA_FAIL_ALLOC=$v" 2 env LYRA_FAIL_ALLOC="$v" "$LYRA" "${GEN[@]}"
    check_grep "LYRA_FAIL_ALLOC=$v named" '^lyra: error: LYRA_FAIL_ALLOC: ' "$T/err"
done
check_rc "bad policy" 2 "$LYRA" "${GEN[@]}" --fallback-policy sometimes
check_grep "bad policy named" '^lyra: error: --fallback-policy: ' "$T/err"
finish
