# test_cli_shard.sh: generate / perplexity / bench split over simulated GPUs,
# the CPU and disk: greedy output and perplexity identical to all-CPU (the
# simulated GPUs compute with the CPU kernels: logits are bitwise equal, so
# texts and printed perplexities are the same bytes), map lines one per
# device with the bytes actually allocated, --no-mmap and --mlock.
source "$(dirname "$0")/lib.sh"

shared_path S260 models/stories260K.gguf
TXT="$SRC/tests/data/stories.txt"
G=(generate -m "$S260" -p "Once upon a time" -n 40 --temp 0 --ctx 256 -t 2)

LYRA_SIM_GPUS= "$LYRA" "${G[@]}" --device-map cpu >"$T/cpu.txt" 2>"$T/cpu.err"
check_eq "all-cpu rc" "$?" 0
check_grep "all-cpu map line" '^map: cpu \(cpu\) model.embed_tokens model.layers.0-4 model.norm lm_head weights' "$T/cpu.err"

echo '{"model.embed_tokens": 0, "model.layers.0": 1, "model.layers.1": "cpu", "model.layers.2": 1,
       "model.layers.3": "disk", "model.layers.4": 0, "model.norm": "cpu", "lm_head": 0}' >"$T/m.json"
run_map() { # NAME SIM FLAGS...: greedy text equal to all-CPU
    local name="$1" sim="$2"; shift 2
    LYRA_SIM_GPUS="$sim" "$LYRA" "${G[@]}" "$@" >"$T/o.txt" 2>"$T/o.err"
    check_eq "$name rc" "$?" 0
    if cmp -s "$T/cpu.txt" "$T/o.txt"; then ok; else bad "$name: text differs from all-CPU"; cat "$T/o.err" >&2; fi
}
run_map "explicit gpu/cpu/gpu/disk" 8MiB,8MiB --device-map "$T/m.json"
check_grep "map line GPU 0" '^map: 0 \(gpu\) model.embed_tokens model.layers.4 lm_head weights [0-9.]+ KiB kv [0-9.]+ KiB scratch' "$T/o.err"
check_grep "map line GPU 1" '^map: 1 \(gpu\) model.layers.0 model.layers.2 weights' "$T/o.err"
check_grep "map line cpu" '^map: cpu \(cpu\) model.layers.1 model.norm weights' "$T/o.err"
check_grep "map line disk" '^map: disk \(disk\) model.layers.3 weights' "$T/o.err"
check_grep "sim said" 'LYRA_SIM_GPUS is set: 2 simulated GPUs' "$T/o.err"
run_map "auto on one GPU" 8MiB
check_grep "auto: all on GPU 0" '^map: 0 \(gpu\) model.embed_tokens model.layers.0-4 model.norm lm_head' "$T/o.err"
run_map "gpu-layers 2" 8MiB --gpu-layers 2
check_grep "gpu-layers map" '^map: 0 \(gpu\) model.embed_tokens model.layers.0-1 weights' "$T/o.err"
run_map "tensor-split" 8MiB,8MiB --gpu-layers all --tensor-split 3,2
run_map "sequential small GPU" 600KiB --device-map sequential
run_map "no-mmap" "" --no-mmap --device-map cpu
run_map "mlock" "" --mlock --device-map cpu
run_map "cpu budget (1000 KiB) below the model (1.1 MiB): disk" "" --max-memory cpu=1000KiB --batch 16
check_grep "disk tier used" '^map: disk \(disk\) ' "$T/o.err"

# the KV bytes in the map line are those allocated: 1 chunk of 256 positions
# x 5 layers x 2 (K, V) x 32 (4 kv heads x 8) x 2 bytes = 160 KiB (logged after the prompt)
LYRA_SIM_GPUS= "$LYRA" "${G[@]}" --device-map cpu 2>&1 >/dev/null | grep -q 'kv 160.0 KiB' && ok || bad "kv bytes in the map line"

# perplexity equal to all-CPU
PP=(perplexity -m "$S260" -f "$TXT" --ctx 128 -t 2)
LYRA_SIM_GPUS= "$LYRA" -q "${PP[@]}" >"$T/p1.txt"
LYRA_SIM_GPUS=8MiB,8MiB "$LYRA" -q "${PP[@]}" --device-map "$T/m.json" >"$T/p2.txt"
check_eq "perplexity rc" "$?" 0
check_eq "perplexity split = all-CPU" "$(tail -1 "$T/p2.txt")" "$(tail -1 "$T/p1.txt")"

# bench accepts the flags
LYRA_SIM_GPUS=8MiB "$LYRA" -q bench -m "$S260" -p 8 -n 4 --gpu-layers 2 --json >"$T/b.json"
check_eq "bench with --gpu-layers rc" "$?" 0
check_grep "bench json" '"tg_tps"' "$T/b.json"

finish
