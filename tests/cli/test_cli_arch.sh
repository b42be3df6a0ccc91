# test_cli_arch.sh: every architecture of issue 13 from the command line, on
# random-weight GGUF files written by tests/reference/arch_model.py (the gguf
# package, independent of lyra): `lyra generate` greedy text identical
# all-CPU, split over two simulated GPUs, the CPU and disk (explicit map),
# with a KV allocation failing mid-generation (fallback to the CPU), and
# with --load-in-8bit (runs; its logits are checked by test_arch_ref); the map
# line names the modules with their Hugging Face names. Logits against the
# float64 reference: tests/unit/test_arch_ref.c. Skipped without numpy + gguf.
source "$(dirname "$0")/lib.sh"
"$PY" -c 'import numpy, gguf' 2>/dev/null || skip "$PY has no numpy or gguf (scripts/test.sh installs them)"

G=(generate -p "Once upon a time" -n 24 --temp 0 --ctx 64 --batch 16 -t 2)
for arch in llama mistral phi2 qwen2 qwen3 gemma gemma2 gemma3 phi3; do
    M="$T/$arch.gguf"
    "$PY" "$SRC/tests/reference/arch_model.py" "$arch" "$M" || { bad "$arch: arch_model.py failed"; continue; }
    L=$("$PY" -c 'import gguf,sys; r=gguf.GGUFReader(sys.argv[1]); a=r.fields["general.architecture"].contents(); print(r.fields[a+".block_count"].contents())' "$M")
    LYRA_SIM_GPUS= "$LYRA" "${G[@]}" -m "$M" --device-map cpu >"$T/cpu.txt" 2>"$T/cpu.err"
    check_eq "$arch: all-cpu rc" "$?" 0
    [ -s "$T/cpu.txt" ] && ok || bad "$arch: empty text: $(tail -2 "$T/cpu.err")"
    check_grep "$arch: map line" "^map: cpu \(cpu\) model\.embed_tokens model\.layers\.0-$((L - 1)) model\.(norm|final_layernorm) lm_head weights" "$T/cpu.err"

    # embed on GPU 0, layer 0 on GPU 1, the last layer on disk, the rest on the CPU, head on GPU 0
    echo "{\"\": \"cpu\", \"model.embed_tokens\": 0, \"model.layers.0\": 1, \"model.layers.$((L - 1))\": \"disk\", \"lm_head\": 0}" >"$T/m.json"
    LYRA_SIM_GPUS=8MiB,8MiB "$LYRA" "${G[@]}" -m "$M" --device-map "$T/m.json" >"$T/o.txt" 2>"$T/o.err"
    check_eq "$arch: split rc" "$?" 0
    cmp -s "$T/cpu.txt" "$T/o.txt" && ok || bad "$arch: split text differs from all-CPU: $(tail -2 "$T/o.err")"
    check_grep "$arch: split map GPU 1" '^map: 1 \(gpu\) model\.layers\.0 weights' "$T/o.err"
    check_grep "$arch: split map disk" "^map: disk \(disk\) model\.layers\.$((L - 1)) weights" "$T/o.err"

    # mid-generation fallback: all on one GPU, KV chunks of 1 position; fail
    # the allocation made after the 4th generated token
    export LYRA_SIM_GPUS=64MiB
    LYRA_ALLOC_STATS=1 "$LYRA" "${G[@]/24/4}" -m "$M" --kv-chunk 1 >/dev/null 2>"$T/s.err"
    n=$(sed -n 's/^alloc: 0 calls=\([0-9]*\) .*/\1/p' "$T/s.err")
    LYRA_FAIL_ALLOC="0:$((${n:-0} + 1))" "$LYRA" "${G[@]}" -m "$M" --kv-chunk 1 >"$T/f.txt" 2>"$T/f.err"
    check_eq "$arch: fallback rc" "$?" 0
    cmp -s "$T/cpu.txt" "$T/f.txt" && ok || bad "$arch: text after a mid-generation fallback differs: $(tail -2 "$T/f.err")"
    check_grep "$arch: fallback step" "^fallback: during generation at token [0-9]+: $L -> $((L - 1)) GPU layers" "$T/f.err"
    unset LYRA_SIM_GPUS

    LYRA_SIM_GPUS= "$LYRA" "${G[@]}" -m "$M" --load-in-8bit >"$T/q.txt" 2>"$T/q.err"
    check_eq "$arch: --load-in-8bit rc" "$?" 0
    [ -s "$T/q.txt" ] && ok || bad "$arch: --load-in-8bit: empty text"
done
finish
