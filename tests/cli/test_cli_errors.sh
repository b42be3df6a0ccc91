# test_cli_errors.sh: every class of invalid input exits 2 with no stdout and
# exactly one stderr line "lyra: error: WHERE: WHAT" naming the culprit (flag,
# file, environment variable); plus --help / --version.
source "$(dirname "$0")/lib.sh"

shared_path S260 models/stories260K.gguf
TXT="$SRC/tests/data/stories.txt"
head -c 100000 "$S260" >"$T/trunc.gguf"     # malformed: tensor data cut off
printf 'GGUF\x03\x00\x00\x00' >"$T/header.gguf" # malformed: ends in the header
printf 'Once upon a time there was a cat.\n' >"$T/short.txt"

# expect_err NAME CODE PATTERN CMD...: exit CODE, empty stdout, one stderr line
# matching "^lyra: error: " + PATTERN.
expect_err() {
    local name="$1" code="$2" pat="$3"; shift 3
    "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    check_eq "$name: exit code" "$rc" "$code"
    check_eq "$name: stdout" "$(wc -c <"$T/out")" 0
    check_eq "$name: stderr lines" "$(wc -l <"$T/err")" 1
    check_grep "$name: message" "^lyra: error: $pat" "$T/err"
}

G=(generate -m "$S260")
expect_err "unknown flag" 2 '--bogus: unknown flag' "$LYRA" "${G[@]}" --bogus
expect_err "unknown flag=value" 2 '--bogus: unknown flag' "$LYRA" "${G[@]}" --bogus=1
expect_err "unknown command" 2 'frobnicate: unknown command' "$LYRA" frobnicate
expect_err "unknown global flag" 2 '--frob: unknown flag' "$LYRA" --frob generate
# no command and no model configured: the usage on stderr, then the error line
env LYRA_MODEL_CONFIG=none "$LYRA" </dev/null >"$T/out" 2>"$T/err"
check_eq "no command: exit code" "$?" 2
check_eq "no command: stdout" "$(wc -c <"$T/out")" 0
check_grep "no command: usage" '^usage: lyra' "$T/err"
check_eq "no command: last line" "$(tail -n 1 "$T/err" | grep -c '^lyra: error: COMMAND: ')" 1
expect_err "stray argument" 2 'extra: unexpected argument' "$LYRA" "${G[@]}" extra
expect_err "-n abc" 2 '-n: expected an integer' "$LYRA" "${G[@]}" -n abc
expect_err "-n 1.5" 2 '-n: expected an integer' "$LYRA" "${G[@]}" -n 1.5
expect_err "-n -2" 2 '-n: must be' "$LYRA" "${G[@]}" -n -2
expect_err "--temp -1" 2 '--temp: must be >= 0' "$LYRA" "${G[@]}" --temp -1
expect_err "--temp=x" 2 '--temp: expected a number' "$LYRA" "${G[@]}" --temp=x
expect_err "--temp nan" 2 '--temp: expected a number' "$LYRA" "${G[@]}" --temp nan
expect_err "--top-p 2" 2 '--top-p: must be between 0 and 1' "$LYRA" "${G[@]}" --top-p 2
expect_err "--min-p -0.1" 2 '--min-p: must be between' "$LYRA" "${G[@]}" --min-p -0.1
expect_err "--top-k -1" 2 '--top-k: must be >= 0' "$LYRA" "${G[@]}" --top-k -1
expect_err "--repeat-penalty 0" 2 '--repeat-penalty: must be > 0' "$LYRA" "${G[@]}" --repeat-penalty 0
expect_err "--seed -5" 2 '--seed: expected an unsigned' "$LYRA" "${G[@]}" --seed -5
expect_err "--seed 2^64" 2 '--seed: expected an unsigned' "$LYRA" "${G[@]}" --seed 18446744073709551616
expect_err "--threads x" 2 '--threads: expected an integer' "$LYRA" "${G[@]}" --threads x
expect_err "--ctx 99999999999" 2 '--ctx: must be' "$LYRA" "${G[@]}" --ctx 99999999999
expect_err "--kv-type q8" 2 '--kv-type: expected f16 or f32' "$LYRA" "${G[@]}" --kv-type q8
expect_err "missing value" 2 '--temp: missing value' "$LYRA" "${G[@]}" --temp
expect_err "missing -m" 2 '-m: required' "$LYRA" generate -p hi
expect_err "LYRA_LOG" 2 'LYRA_LOG: expected error, warn, info or debug' env LYRA_LOG=loud "$LYRA" "${G[@]}"

# model files
expect_err "missing model" 2 "$T/nope.gguf: " "$LYRA" generate -m "$T/nope.gguf" -n 1
expect_err "truncated GGUF" 2 "$T/trunc.gguf: " "$LYRA" generate -m "$T/trunc.gguf" -n 1
expect_err "header-only GGUF" 2 "$T/header.gguf: " "$LYRA" generate -m "$T/header.gguf" -n 1
expect_err "text file as model" 2 "$T/short.txt: " "$LYRA" generate -m "$T/short.txt" -n 1
expect_err "tokenize truncated" 2 "$T/trunc.gguf: " "$LYRA" tokenize -m "$T/trunc.gguf" hi
expect_err "perplexity truncated" 2 "$T/trunc.gguf: " "$LYRA" perplexity -m "$T/trunc.gguf" -f "$TXT"
expect_err "bench missing model" 2 "$T/nope.gguf: " "$LYRA" bench -m "$T/nope.gguf"
expect_err "quantize truncated" 2 "$T/trunc.gguf: " "$LYRA" quantize "$T/trunc.gguf" "$T/q.gguf" Q8_0
if [ ! -e "$T/q.gguf" ]; then ok; else bad "quantize left an output file after failing"; fi

# texts
expect_err "perplexity text too short" 2 "$T/short.txt: .*needs at least 128" \
    "$LYRA" perplexity -m "$S260" -f "$T/short.txt" --ctx 64
expect_err "perplexity big ctx" 2 "$TXT: .*needs at least 8192" "$LYRA" perplexity -m "$S260" -f "$TXT" --ctx 4096
expect_err "perplexity missing text" 2 "$T/none.txt: cannot open" "$LYRA" perplexity -m "$S260" -f "$T/none.txt"
expect_err "perplexity no -f" 2 '-f: required' "$LYRA" perplexity -m "$S260"
expect_err "prompt too long" 2 '-p: the prompt is [0-9]+ tokens' "$LYRA" "${G[@]}" --ctx 8 -p "$(head -c 400 "$TXT")"
expect_err "tokenize no text" 2 'tokenize: give TEXT or -f FILE' "$LYRA" tokenize -m "$S260"

# mkmodel / quantize / bench flags
expect_err "mkmodel no -o" 2 '-o: required' "$LYRA" mkmodel
expect_err "mkmodel --dim 100" 2 '--dim: ' "$LYRA" mkmodel -o "$T/m.gguf" --dim 100
expect_err "mkmodel --kv-heads 3" 2 '--kv-heads: ' "$LYRA" mkmodel -o "$T/m.gguf" --kv-heads 3
expect_err "mkmodel --vocab 100" 2 '--vocab: must be >= 258' "$LYRA" mkmodel -o "$T/m.gguf" --vocab 100
expect_err "mkmodel --type Q3_K" 2 '--type: expected' "$LYRA" mkmodel -o "$T/m.gguf" --type Q3_K
expect_err "mkmodel --preset 70b" 2 '--preset: expected tiny, 1.1b or 7b' "$LYRA" mkmodel -o "$T/m.gguf" --preset 70b
expect_err "mkmodel --vocab-from missing" 2 "$T/nope.gguf: " "$LYRA" mkmodel -o "$T/m.gguf" --vocab-from "$T/nope.gguf"
if [ ! -e "$T/m.gguf" ]; then ok; else bad "mkmodel left an output file after failing"; fi
expect_err "quantize bad type" 2 'Q3_K: unknown TYPE' "$LYRA" quantize "$S260" "$T/q.gguf" Q3_K
expect_err "quantize missing args" 2 'quantize: expected IN OUT TYPE' "$LYRA" quantize "$S260" "$T/q.gguf"
if [ ! -e "$T/q.gguf" ]; then ok; else bad "quantize left an output file after failing"; fi
expect_err "bench -p list" 2 '-p: expected sizes' "$LYRA" bench -m "$S260" -p 1,,2
expect_err "bench -n 0" 2 '-n: must be' "$LYRA" bench -m "$S260" -n 0

# help and version: stdout, exit 0
for c in "" generate tokenize perplexity bench mkmodel quantize serve; do
    "$LYRA" $c --help >"$T/out" 2>"$T/err"
    check_eq "help $c rc" "$?" 0
    check_grep "help $c" '^usage: lyra' "$T/out"
    check_eq "help $c stderr" "$(wc -c <"$T/err")" 0
    # docs/cli.md quotes every help text verbatim
    r=$("$PY" -c "import sys; print('ok' if open(sys.argv[1]).read() in open(sys.argv[2]).read() else 'missing')" \
        "$T/out" "$SRC/docs/cli.md")
    check_eq "docs/cli.md has lyra $c --help" "$r" ok
done
"$LYRA" --version >"$T/out"
check_grep "--version" '^lyra [0-9]+\.[0-9]+\.[0-9]+$' "$T/out"
check_grep "--version features" 'avx2|scalar' "$T/out"

finish
