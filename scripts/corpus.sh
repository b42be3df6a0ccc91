#!/usr/bin/env bash
# corpus.sh: run a fixed corpus of lyra commands (generate, chat, tokenize,
# perplexity, plan --json, devices, config, quantize, mkmodel, fallback
# sweeps, error cases) and write each one's stdout, stderr and exit code to
# OUTDIR, with the few figures that vary from run to run (free memory,
# timings, temp names) masked. Used to show that a refactoring changes no
# output: run it with the old and the new binary and compare.
#
#   scripts/corpus.sh BIN OUTDIR            write the corpus of BIN
#   scripts/corpus.sh --diff OLD NEW        compare two corpora (exit 1 if any differ)
#
#   LYRA_SHARED_DIR   test models (default ../shared)
set -uo pipefail
if [ "${1:-}" = "--diff" ]; then
    [ $# = 3 ] || { echo "usage: $0 --diff OLDDIR NEWDIR" >&2; exit 2; }
    if diff -r "$2" "$3"; then
        echo "corpus: $(ls "$2" | wc -l) files identical"
        exit 0
    fi
    echo "corpus: outputs differ" >&2
    exit 1
fi
[ $# = 2 ] || { echo "usage: $0 BIN OUTDIR | --diff OLD NEW" >&2; exit 2; }
cd "$(dirname "$0")/.."
BIN="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
OUT="$2"
SH="$(cd "${LYRA_SHARED_DIR:-../shared}/models" 2>/dev/null && pwd)"
S="$SH/stories260K.gguf"
BB="$SH/babyllama105.gguf"
[ -r "$S" ] || { echo "corpus: $S not found (set LYRA_SHARED_DIR)" >&2; exit 77; }
mkdir -p "$OUT"
W="$(mktemp -d "${TMPDIR:-/tmp}/lyra-corpus.XXXXXX")"
trap 'rm -rf "$W"' EXIT
export LYRA_MODEL_CONFIG=none LYRA_CUDA_DEVICES= LYRA_SIM_GPUS=
unset LYRA_LOG LYRA_CPU LYRA_FAIL_ALLOC LYRA_ALLOC_STATS

mask() { # volatile figures: host memory, timings, temp dirs
    sed -E -e "s#$W#WORK#g" \
        -e 's/("(free|reserve|budget)":)[0-9]+/\1N/g' \
        -e 's/^(cpu +cpu +cpu +)[^C]*CPU/\1MASKED CPU/' \
        -e 's/^(cpu +cpu +cpu +)[0-9.]+ [KMGT]?i?B +[0-9.]+ [KMGT]?i?B +[0-9.]+ [KMGT]?i?B/\1MASKED/' \
        -e 's/[0-9.]+ s\/chunk, ~[0-9]+ s left/T s\/chunk/' \
        -e 's/[0-9]+(\.[0-9]+)? (tok\/s|ms|s|GB\/s)\b/T \2/g' \
        -e 's/seed(:)? [0-9]+/seed\1 N/' \
        -e 's/(free|budget|reserve) [0-9.]+ [KMGT]?i?B/\1 MASKED/g'
}
n=0
run() { # NAME CMD...: stdout, stderr, exit code
    local name="$1"; shift
    n=$((n+1))
    "$@" >"$W/o" 2>"$W/e" </dev/null
    echo "$?" >"$OUT/$name.rc"
    mask <"$W/o" >"$OUT/$name.out"
    mask <"$W/e" >"$OUT/$name.err"
}
runin() { # NAME INPUT CMD...: with stdin
    local name="$1" input="$2"; shift 2
    n=$((n+1))
    printf '%s' "$input" | "$@" >"$W/o" 2>"$W/e"
    echo "$?" >"$OUT/$name.rc"
    mask <"$W/o" >"$OUT/$name.out"
    mask <"$W/e" >"$OUT/$name.err"
}
# G0 without -n: a flag given twice is an error (docs/cli.md)
G0=(generate -m "$S" -p "Once upon a time" --temp 0 --ctx 256 -t 2)
G=("${G0[@]}" -n 32)

# generate: greedy, sampled, both models, maps, budgets, quantize on load
run gen_greedy "$BIN" "${G[@]}"
run gen_sampled "$BIN" generate -m "$S" -p "The cat" -n 24 --seed 7 --ctx 256 -t 2
run gen_sampled_chain "$BIN" generate -m "$S" -p "A dog" -n 24 --seed 3 --temp 1.2 --top-k 10 --top-p 0.8 --min-p 0 --repeat-penalty 1.1 --ctx 256
run gen_baby "$BIN" generate -m "$BB" -p "Hello" -n 16 --temp 0 --ctx 128
run gen_verbose "$BIN" -v "${G[@]}"
run gen_quiet "$BIN" -q "${G[@]}"
run gen_8bit "$BIN" "${G[@]}" --load-in-8bit
run gen_4bit "$BIN" "${G[@]}" --load-in-4bit
run gen_nommap "$BIN" "${G[@]}" --no-mmap --device-map cpu
run gen_special "$BIN" generate -m "$S" -p "<s>Once" --parse-special -n 8 --temp 0 --ctx 64
echo '{"model.embed_tokens": 0, "model.layers.0": 1, "model.layers.1": "cpu", "model.layers.2": 1,
 "model.layers.3": "disk", "model.layers.4": 0, "model.norm": "cpu", "lm_head": 0}' >"$W/map.json"
run gen_map_file env LYRA_SIM_GPUS=8MiB,8MiB "$BIN" "${G[@]}" --device-map "$W/map.json"
run gen_auto_gpu env LYRA_SIM_GPUS=8MiB "$BIN" "${G[@]}"
run gen_gpu_layers env LYRA_SIM_GPUS=8MiB "$BIN" "${G[@]}" --gpu-layers 2
run gen_tensor_split env LYRA_SIM_GPUS=8MiB,8MiB "$BIN" "${G[@]}" --gpu-layers all --tensor-split 3,2
run gen_sequential env LYRA_SIM_GPUS=600KiB "$BIN" "${G[@]}" --device-map sequential
run gen_balanced env LYRA_SIM_GPUS=4MiB,4MiB "$BIN" "${G[@]}" --device-map balanced
run gen_balanced_low0 env LYRA_SIM_GPUS=4MiB,4MiB "$BIN" "${G[@]}" --device-map balanced_low_0
run gen_cuda_n env LYRA_SIM_GPUS=4MiB,4MiB "$BIN" "${G[@]}" --device-map cuda:1
run gen_max_memory env LYRA_SIM_GPUS=8MiB "$BIN" "${G[@]}" --max-memory 0=1MiB,cpu=4GiB
run gen_reserve env LYRA_SIM_GPUS=8MiB "$BIN" "${G[@]}" --reserve 0=7MiB
run gen_disk "$BIN" "${G[@]}" --max-memory cpu=1000KiB --batch 16
run gen_kv_f32 "$BIN" "${G[@]}" --kv-type f32
run gen_batch "$BIN" "${G[@]}" --batch 3
run gen_scalar env LYRA_CPU=scalar "$BIN" "${G[@]}"
run gen_threads1 "$BIN" generate -m "$S" -p "Once upon a time" -n 16 --temp 0 --ctx 256 -t 1

# fallback: load-time failures, mid-generation step-downs, the context policy
for spec in 0:1 0:3+ 0:8 1:2 cpu:5 cpu:9+ 0:30+; do
    run "fb_${spec//[:+]/_}" env LYRA_SIM_GPUS=2MiB,2MiB LYRA_FAIL_ALLOC="$spec" "$BIN" "${G0[@]}" -n 16
done
run fb_nofallback env LYRA_SIM_GPUS=2MiB LYRA_FAIL_ALLOC=0:1 "$BIN" "${G[@]}" --no-fallback
run fb_glf env LYRA_SIM_GPUS=2MiB LYRA_FAIL_ALLOC=0:4 "$BIN" "${G[@]}" --gpu-layers-fallback 2
run fb_ctx_policy env LYRA_SIM_GPUS=2MiB LYRA_FAIL_ALLOC=cpu:3 "$BIN" generate -m "$S" -p "Once" -n 8 --temp 0 --ctx 2048 --fallback-policy context --min-ctx 256
GM=(generate -m "$S" -p "Once upon a time" -n 16 --temp 0 --ctx 256 --batch 64 --kv-chunk 8 -t 1)
run fb_mid env LYRA_SIM_GPUS=64MiB LYRA_FAIL_ALLOC=0:58 "$BIN" "${GM[@]}"
run fb_mid_twice env LYRA_SIM_GPUS=64MiB LYRA_FAIL_ALLOC=0:58+ "$BIN" "${GM[@]}"
run fb_mid_cpu env LYRA_SIM_GPUS= LYRA_FAIL_ALLOC=cpu:12 "$BIN" "${GM[@]}"
run fb_stats env LYRA_ALLOC_STATS=1 LYRA_SIM_GPUS=2MiB "$BIN" "${G0[@]}" -n 4
run fb_bad_env env LYRA_FAIL_ALLOC=zz "$BIN" "${G[@]}"

# plan, devices
run plan_json "$BIN" plan -m "$S" --json
run plan_text env LYRA_SIM_GPUS=8MiB,1MiB "$BIN" plan -m "$S"
run plan_json_gpus env LYRA_SIM_GPUS=8MiB,1MiB "$BIN" plan -m "$S" --json --max-memory 0=2MiB
run plan_probe env LYRA_SIM_GPUS=2MiB LYRA_FAIL_ALLOC=0:2 "$BIN" plan -m "$S" --probe --json
run plan_map env LYRA_SIM_GPUS=8MiB,8MiB "$BIN" plan -m "$S" --device-map "$W/map.json"
run plan_meta "$BIN" plan -m "$S" --ctx 512 --batch 64 --kv-type f32
run devices env LYRA_SIM_GPUS=8MiB,1MiB "$BIN" devices
run devices_plain "$BIN" devices

# chat, tokenize, perplexity, bench
runin chat_pipe $'Hello there\nTell me a story\n' "$BIN" chat -m "$S" -n 24 --temp 0 --ctx 256
runin chat_reset $'Hi\n/reset\nHi\n' "$BIN" chat -m "$S" -n 16 --temp 0 --ctx 256
runin chat_sys $'Hello\n' "$BIN" chat -m "$S" -n 16 --temp 0 --ctx 256 --system-prompt "You tell stories." --chat-template chatml
run tok "$BIN" tokenize -m "$S" "Hello world, once upon a time"
run tok_baby "$BIN" tokenize -m "$BB" "Hello world"
run ppl "$BIN" perplexity -m "$S" -f tests/data/stories.txt --ctx 128
run ppl_gpu env LYRA_SIM_GPUS=1MiB "$BIN" perplexity -m "$S" -f tests/data/stories.txt --ctx 64 --gpu-layers 2
run bench_err "$BIN" bench -m "$S" --bogus

# config
cat >"$W/cfg.json" <<EOF
{"model_id": "$S", "device_map": "auto", "max_memory": {"0": "6GB", "cpu": "16GB"},
 "gpu_layers_fallback": 16, "enable_progressive_fallback": true,
 "pipeline_kwargs": {"max_new_tokens": 8, "do_sample": false}}
EOF
run cfg_show "$BIN" config show --model-config "$W/cfg.json"
run cfg_show_json "$BIN" config show --json --model-config "$W/cfg.json"
run cfg_validate "$BIN" config validate "$W/cfg.json"
run cfg_generate "$BIN" generate --model-config "$W/cfg.json" -p "Once"
echo '{"model_id": 3, "max_memroy": {}}' >"$W/bad.json"
run cfg_bad "$BIN" config validate "$W/bad.json"

# quantize and mkmodel: the files' bytes
run quant "$BIN" quantize "$S" "$W/q8.gguf" Q8_0
sha256sum <"$W/q8.gguf" >"$OUT/quant.sha"
run mkmodel "$BIN" mkmodel -o "$W/mk.gguf" --dim 64 --layers 2 --seed 5
sha256sum <"$W/mk.gguf" >"$OUT/mkmodel.sha" 2>/dev/null

# errors
run err_nomodel "$BIN" generate -m /nonexistent.gguf -p x
run err_flag "$BIN" generate -m "$S" --nope
run err_maxmem "$BIN" generate -m "$S" -p x --max-memory cpu=lots
run err_split env LYRA_SIM_GPUS=1MiB,1MiB "$BIN" generate -m "$S" -p x --tensor-split 1,x --gpu-layers all
run err_map "$BIN" generate -m "$S" -p x --device-map '{"model.bogus": 0}'
run err_sim env LYRA_SIM_GPUS=abc "$BIN" devices
run err_cpu env LYRA_CPU=fast "$BIN" "${G[@]}"
run err_ctx "$BIN" generate -m "$S" -p x --ctx -5
run err_help "$BIN" generate --help
run err_plan_help "$BIN" plan --help
echo "corpus: $n runs written to $OUT"
