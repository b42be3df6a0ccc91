# test_cli_flags.sh: what a newcomer from Hugging Face trips over (issue 11,
# items 5-9):
#  5. an explicit sampling flag beats a config's do_sample false;
#     --do-sample / --greedy; config show reports the effective values;
#  6. a config's own sampling keys get transformers' defaults for the rest
#     (top_k 50, top_p 1, temperature 1, min_p off), the bare CLI keeps
#     llama.cpp's; config show prints the chain;
#  7. max_new_tokens defaults to 256 (generate, chat, --help);
#  8. "did you mean" for flags, the HF underscore spellings as aliases,
#     --device-map typos, tokenize -m DIR / org/name:TAG, a repeated flag;
#  9. --threads checked against the CPU cores; devices shows the threads;
# 10. a max_memory budget above a device's free memory is cut to it, noted.
source "$(dirname "$0")/lib.sh"
shared_path S260 models/stories260K.gguf

cd "$T" || exit 1
show() { "$LYRA" config show "$@" 2>"$T/err"; }
val() { show "$@" | awk -v k="$KEY" '$1 == k {print $2, $3, $4}'; }

# --- 5. flags win over do_sample false ---
printf '{"pipeline_kwargs": {"do_sample": false}}\n' >"$T/greedy.json"
KEY=pipeline_kwargs.do_sample
check_eq "do_sample false from the file" "$(val --model-config "$T/greedy.json")" "false file:$T/greedy.json "
check_eq "--temp re-enables sampling" "$(val --model-config "$T/greedy.json" --temp 1.5)" "true flag:--temp "
check_eq "--top-k re-enables sampling" "$(val --model-config "$T/greedy.json" --top-k 3)" "true flag:--top-k "
check_eq "--do-sample" "$(val --model-config "$T/greedy.json" --do-sample)" "true flag:--do-sample "
check_eq "--greedy still wins over --temp" "$(val --no-config --greedy --temp 1.5)" "false flag:--greedy "
check_eq "--do_sample alias" "$(val --no-config --greedy --do_sample)" "true flag:--do-sample "
show --model-config "$T/greedy.json" --temp 1.5 >"$T/show"
check_grep "show: the effective chain" "^sampling: top_k 50 -> temperature 1.5 -> draw$" "$T/show"
"$LYRA" -q generate -m "$S260" --model-config "$T/greedy.json" --temp 1.5 --seed 7 -n 12 -p "Once" >"$T/a"
"$LYRA" -q generate -m "$S260" --no-config --temp 1.5 --top-k 50 --top-p 1 --min-p 0 --seed 7 -n 12 -p "Once" >"$T/b"
"$LYRA" -q generate -m "$S260" --no-config --greedy -n 12 -p "Once" >"$T/g"
if cmp -s "$T/a" "$T/b"; then ok; else bad "--temp over do_sample false: not the HF chain"; fi
if cmp -s "$T/a" "$T/g"; then bad "--temp over do_sample false: still greedy"; else ok; fi

# --- 6. transformers' defaults when the config has sampling keys ---
printf '{"pipeline_kwargs": {"top_p": 0.9}}\n' >"$T/topp.json"
show --model-config "$T/topp.json" >"$T/show"
check_grep "hf top_k 50" "^pipeline_kwargs.top_k +50 +default \(transformers\)$" "$T/show"
check_grep "hf min_p off" "^pipeline_kwargs.min_p +0.0 +default \(transformers\)$" "$T/show"
check_grep "hf temperature 1" "^pipeline_kwargs.temperature +1.0 +default \(transformers\)$" "$T/show"
check_grep "hf chain" "^sampling: top_k 50 -> top_p 0.9 -> temperature 1 -> draw$" "$T/show"
show --no-config --top-p 0.9 >"$T/show"
check_grep "bare CLI keeps top_k 40" "^pipeline_kwargs.top_k +40 +default$" "$T/show"
check_grep "bare CLI chain" "^sampling: top_k 40 -> min_p 0.05 -> top_p 0.9 -> temperature 0.8 -> draw$" "$T/show"
"$LYRA" -q generate -m "$S260" --model-config "$T/topp.json" --seed 3 -n 12 -p "Once" >"$T/a"
"$LYRA" -q generate -m "$S260" --no-config --top-p 0.9 --top-k 50 --min-p 0 --temp 1 --seed 3 -n 12 -p "Once" >"$T/b"
if cmp -s "$T/a" "$T/b"; then ok; else bad "config top_p 0.9: not top_k 50 / min_p off / temp 1"; fi

# --- 7. max_new_tokens 256 by default ---
KEY=pipeline_kwargs.max_new_tokens
check_eq "default 256" "$(val --no-config)" "256 default "
"$LYRA" generate --help >"$T/out"
check_grep "generate --help" "default 256" "$T/out"
"$LYRA" chat --help >"$T/out"
check_grep "chat --help" "default 256" "$T/out"
"$LYRA" generate -m "$S260" --no-config --ignore-eos --seed 1 -c 1024 >/dev/null 2>"$T/err"
check_grep "generate stops at 256" ", 256 tokens in " "$T/err"
printf 'Once upon a time\n' | "$LYRA" chat -m "$S260" --no-config --temp 2 --seed 1 -c 2048 >"$T/out" 2>"$T/err"
check_eq "chat rc" "$?" 0
n=$("$LYRA" tokenize -m "$S260" --no-bos -f "$T/out" | wc -w)
if [ "$n" -le 260 ]; then ok; else bad "chat reply of $n tokens, more than 256"; fi

# --- 8. flags: did you mean, HF aliases, device-map typos, -m forms, repeats ---
check_rc "--tmep" 2 "$LYRA" generate -m "$S260" --tmep 1
check_grep "--tmep: did you mean --temp" "^lyra: error: --tmep: unknown flag for 'generate' \(did you mean --temp\?" "$T/err"
check_rc "--top-kk" 2 "$LYRA" chat -m "$S260" --top-kk 1
check_grep "--top-kk: did you mean --top-k" "did you mean --top-k\?" "$T/err"
check_rc "--fallback-polcy" 2 "$LYRA" plan -m "$S260" --fallback-polcy layers
check_grep "device flag suggested" "did you mean --fallback-policy\?" "$T/err"
for a in "--temperature 0.5:temperature 0.5 flag:--temp" "--top_p 0.5:top_p 0.5 flag:--top-p" \
    "--top_k 5:top_k 5 flag:--top-k" "--max_new_tokens 5:max_new_tokens 5 flag:--max-new-tokens" \
    "--repetition_penalty 1.5:repetition_penalty 1.5 flag:--repeat-penalty" "--min_p 0.5:min_p 0.5 flag:--min-p"; do
    flag=${a%%:*}; want=${a#*:}
    KEY=pipeline_kwargs.${want%% *}
    # shellcheck disable=SC2086
    check_eq "alias $flag" "$(val --no-config $flag)" "${want#* } "
done
check_rc "--device-map gpu" 2 "$LYRA" plan -m "$S260" --device-map gpu
check_grep "strategies listed" "^lyra: error: --device-map: unknown strategy 'gpu': expected auto, balanced, balanced_low_0, sequential, cpu, cuda" "$T/err"
check_rc "--device-map balanced" 0 "$LYRA" plan -m "$S260" --device-map balanced
mkdir -p "$T/dir"
ln -s "$S260" "$T/dir/stories260K.gguf"
"$LYRA" tokenize -m "$S260" "Once upon" >"$T/want"
check_rc "tokenize -m DIR" 0 "$LYRA" tokenize -m "$T/dir" "Once upon"
check_eq "tokenize -m DIR ids" "$(cat "$T/out")" "$(cat "$T/want")"
H="$T/hub/models--karpathy--tinyllamas-gguf"
mkdir -p "$H/snapshots/abc123" "$H/refs"
ln -s "$S260" "$H/snapshots/abc123/stories260K-F32.gguf"
echo abc123 >"$H/refs/main"
check_rc "tokenize -m org/name:TAG" 0 env HF_HUB_CACHE="$T/hub" "$LYRA" tokenize -m karpathy/tinyllamas-gguf:f32 "Once upon"
check_eq "tokenize -m org/name:TAG ids" "$(cat "$T/out")" "$(cat "$T/want")"
check_rc "-m twice" 2 "$LYRA" generate -m "$S260" -m "$S260" -n 1
check_grep "-m twice named" "^lyra: error: -m: given more than once \(also as -m\)$" "$T/err"
check_rc "-c and --ctx" 2 "$LYRA" generate -m "$S260" -c 64 --ctx 128 -n 1
check_grep "--ctx twice named" "^lyra: error: --ctx: given more than once \(also as -c\)$" "$T/err"
check_rc "tokenize -m twice" 2 "$LYRA" tokenize -m "$S260" --model "$S260" hi
check_grep "tokenize --model twice" "^lyra: error: --model: given more than once \(also as -m\)$" "$T/err"
check_rc "--stop twice is fine" 0 "$LYRA" -q generate -m "$S260" --stop a --stop b -n 2 --seed 1

# --- 9. --threads and the cores ---
CORES=$(getconf _NPROCESSORS_ONLN)
check_rc "threads above 4x cores" 2 "$LYRA" generate -m "$S260" -t $((4 * CORES + 1)) -n 1
check_grep "threads refused" "^lyra: error: --threads: $((4 * CORES + 1)) threads is more than 4x this machine's $CORES CPU cores \(at most $((4 * CORES))\)$" "$T/err"
check_rc "threads above cores" 0 "$LYRA" generate -m "$S260" -t $((CORES + 1)) -n 1 --seed 1
check_grep "threads warned" "--threads: $((CORES + 1)) threads on $CORES CPU cores" "$T/err"
check_rc "quantize threads" 2 "$LYRA" quantize --threads $((4 * CORES + 1)) "$S260" "$T/q.gguf" Q8_0
check_grep "quantize threads refused" "^lyra: error: --threads: .*4x" "$T/err"
check_rc "devices" 0 "$LYRA" devices --no-config
check_grep "devices: CPU threads" "CPU \(.*, [0-9]+ threads?\)" "$T/out"
check_grep "devices: threads line" "^threads: [0-9]+ \(physical cores\)$" "$T/out"
check_rc "devices -t 1" 0 "$LYRA" devices --no-config -t 1
check_grep "devices -t 1: CPU" "CPU \(.*, 1 thread\)" "$T/out"
check_grep "devices -t 1: line" "^threads: 1 \(flag:--threads\)$" "$T/out"

# --- 10. a budget above a device's free memory: a note, planned with the free ---
LYRA_SIM_GPUS=1MiB "$LYRA" plan -m "$S260" --max-memory 0=6GB >"$T/out" 2>"$T/err"
check_eq "big budget rc" "$?" 0
check_grep "big budget noted" "^max_memory: 0: budget 5.6 GiB is more than the device's free memory 1.0 MiB; planning with 1.0 MiB$" "$T/err"
check_eq "noted once" "$(grep -c 'budget 5.6 GiB' "$T/err")" 1
check_grep "planned with the free" "^0 +gpu +sim +1.0 MiB +0 B +1.0 MiB " "$T/out"
finish
