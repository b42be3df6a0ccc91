# test_cli_generate.sh: `lyra generate` behaviour: seeds (printed, and the
# same seed gives the same text for --threads 1 and 2), the README's default
# job on a mkmodel model, -n, a full context, -q/-v/LYRA_LOG, and SIGINT.
source "$(dirname "$0")/lib.sh"

shared_path S260 models/stories260K.gguf
P="Once upon a time"

# same seed + flags -> same text, whatever the thread count
"$LYRA" generate -m "$S260" -p "$P" -n 120 --seed 42 --threads 1 >"$T/a" 2>"$T/ea"
check_eq "seeded rc" "$?" 0
"$LYRA" generate -m "$S260" -p "$P" -n 120 --seed 42 --threads 2 >"$T/b" 2>/dev/null
if cmp -s "$T/a" "$T/b"; then ok; else bad "--seed 42: --threads 1 and 2 differ"; fi
check_grep "seed printed" '^seed: 42$' "$T/ea"
check_grep "map line" '^map: cpu' "$T/ea"
if [ "$(wc -c <"$T/a")" -gt 100 ]; then ok; else bad "seeded text too short: $(cat "$T/a")"; fi
"$LYRA" -q generate -m "$S260" -p "$P" -n 120 --seed 43 >"$T/c"
if ! cmp -s "$T/a" "$T/c"; then ok; else bad "seeds 42 and 43 gave the same text"; fi
# every sampling flag at once, twice: deterministic
F=(-m "$S260" -p "$P" -n 60 --seed 7 --temp 1.3 --top-k 20 --top-p 0.9 --min-p 0.02 --repeat-penalty 1.2 --repeat-last-n 32)
"$LYRA" -q generate "${F[@]}" >"$T/d1"; "$LYRA" -q generate "${F[@]}" --threads 2 --batch 3 >"$T/d2"
if cmp -s "$T/d1" "$T/d2"; then ok; else bad "all sampling flags: not deterministic"; fi

# a random seed is printed, and replaying it gives the same text
"$LYRA" generate -m "$S260" -p "$P" -n 60 >"$T/r1" 2>"$T/er"
seed="$(sed -n 's/^seed: //p' "$T/er")"
if [[ "$seed" =~ ^[0-9]+$ ]]; then ok; else bad "random seed not printed: $(cat "$T/er")"; fi
"$LYRA" -q generate -m "$S260" -p "$P" -n 60 --seed "$seed" >"$T/r2"
if cmp -s "$T/r1" "$T/r2"; then ok; else bad "replaying seed $seed gave another text"; fi

# the repetition penalty reaches the sampler: greedy text changes
"$LYRA" -q generate -m "$S260" -p "$P" -n 100 --temp 0 >"$T/g0"
"$LYRA" -q generate -m "$S260" -p "$P" -n 100 --temp 0 --repeat-penalty 1.5 >"$T/g1"
if ! cmp -s "$T/g0" "$T/g1"; then ok; else bad "--repeat-penalty 1.5 changed nothing"; fi

# -n 0: just the newline; one line of output otherwise
"$LYRA" -q generate -m "$S260" -p "$P" -n 0 >"$T/n0"
check_eq "-n 0" "$(od -An -c "$T/n0" | tr -d ' ')" '\n'
check_eq "one trailing newline" "$(tail -c 1 "$T/a" | od -An -c | tr -d ' ')" '\n'

# a full context stops generation with a note, exit 0
"$LYRA" generate -m "$S260" -p "$P" --ctx 16 -n 100 --temp 0 >"$T/f" 2>"$T/ef"
check_eq "full context rc" "$?" 0
check_grep "full context note" 'context is full \(16 tokens\)' "$T/ef"
# 16 positions, 5 taken by BOS + prompt: 11 tokens printed + 1 sampled last
want="$("$LYRA" -q generate -m "$S260" -p "$P" -n 12 --temp 0)"
check_eq "full context output" "$(cat "$T/f")" "$want"

# verbosity: -q and LYRA_LOG=error silence stderr; -v adds debug lines
"$LYRA" -q generate -m "$S260" -p "$P" -n 5 --seed 1 >/dev/null 2>"$T/eq"
check_eq "-q stderr" "$(wc -c <"$T/eq")" 0
LYRA_LOG=error "$LYRA" generate -m "$S260" -p "$P" -n 5 --seed 1 >/dev/null 2>"$T/el"
check_eq "LYRA_LOG=error stderr" "$(wc -c <"$T/el")" 0
LYRA_LOG=error "$LYRA" generate -v -m "$S260" -p "$P" -n 5 --seed 1 >/dev/null 2>"$T/ev"
check_grep "-v beats LYRA_LOG" '^seed: 1$' "$T/ev"

# the README's default job: a random tiny model, then gibberish + map line
( cd "$T" && "$LYRA" -q mkmodel -o model.gguf )
check_eq "mkmodel rc" "$?" 0
"$LYRA" generate -m "$T/model.gguf" -p "Hello" -n 32 >"$T/h" 2>"$T/eh"
check_eq "default job rc" "$?" 0
check_grep "default job map line" '^map: cpu \(cpu\) .*weights' "$T/eh"
if [ "$(wc -c <"$T/h")" -gt 10 ]; then ok; else bad "default job printed too little: $(cat "$T/h")"; fi

# SIGINT: stop cleanly with exit 130 and one error line
# (--ignore-eos and a huge context: it cannot end by itself within seconds)
"$LYRA" generate -m "$T/model.gguf" -n 1000000 --ctx 1000000 --ignore-eos --seed 1 >"$T/i" 2>"$T/ei" &
pid=$!
sleep 2
kill -INT "$pid"
wait "$pid"
check_eq "SIGINT exit" "$?" 130
check_grep "SIGINT message" '^lyra: error: generate: interrupted$' "$T/ei"
check_eq "SIGINT error lines" "$(grep -c '^lyra: error' "$T/ei")" 1
check_eq "SIGINT output ends its line" "$(tail -c 1 "$T/i" | od -An -c | tr -d ' ')" '\n'

finish
