# test_cli_golden.sh: `lyra generate --temp 0` reproduces llama2.c's greedy
# texts (shared/models/golden) byte for byte, for as long as the output goes.
# The golden files begin with the prompt; generate prints only the
# continuation, so it must equal the golden text after the prompt.
source "$(dirname "$0")/lib.sh"

shared_path S260 models/stories260K.gguf
shared_path B105 models/babyllama105.gguf
G="$(dirname "$S260")/golden"

# check_prefix NAME OUTPUT_FILE GOLDEN_FILE SKIP_BYTES MIN_BYTES: the output
# (without its final newline) equals the golden text from byte SKIP_BYTES
# on, as far as the shorter of the two goes, and covers >= MIN_BYTES.
check_prefix() {
    local r
    r=$("$PY" - "$2" "$3" "$4" "$5" <<'EOF'
import sys
out = open(sys.argv[1], "rb").read()
gold = open(sys.argv[2], "rb").read()[int(sys.argv[3]):]
if not out.endswith(b"\n"):
    print("output does not end with a newline"); sys.exit()
out = out[:-1]
n = min(len(out), len(gold))
if out[:n] != gold[:n]:
    i = next(k for k in range(n) if out[k] != gold[k])
    print("differs at byte %d: got %r want %r" % (i, out[i:i+40], gold[i:i+40])); sys.exit()
if n < int(sys.argv[4]):
    print("only %d bytes compared (want >= %s)" % (n, sys.argv[4])); sys.exit()
print("ok")
EOF
)
    check_eq "$1" "$r" "ok"
}

P="Once upon a time"
# stories260K, prompt, 200 tokens (a prefix of the 256-step golden text)
"$LYRA" generate -m "$S260" -p "$P" --temp 0 -n 200 >"$T/g1" 2>"$T/e1"
check_eq "golden prompt rc" "$?" 0
check_prefix "stories260K once upon a time" "$T/g1" "$G/stories260K_t0_n256_once_upon_a_time.txt" ${#P} 400
check_grep "map line on stderr" '^map: ' "$T/e1"
check_grep "seed on stderr" '^seed: [0-9]+$' "$T/e1"

# the same with --threads 2 and --kv-type f32: identical text
"$LYRA" -q generate -m "$S260" -p "$P" --temp 0 -n 200 --threads 2 --kv-type f32 >"$T/g1b" 2>/dev/null
if cmp -s "$T/g1" "$T/g1b"; then ok; else bad "greedy text changes with --threads 2 --kv-type f32"; fi

# no prompt: 200 tokens from BOS, the whole golden file (which ends in "\n")
"$LYRA" -q generate -m "$S260" --temp 0 -n 200 >"$T/g2" 2>"$T/e2"
check_eq "no-prompt rc" "$?" 0
if cmp -s "$T/g2" "$G/stories260K_t0_n200_noprompt.txt"; then ok; else
    bad "no-prompt golden: got [$(head -c 120 "$T/g2")]"; fi

# babyllama105 (context 256: generation stops when it is full, exit 0)
"$LYRA" generate -m "$B105" -p "$P" --temp 0 >"$T/g3" 2>"$T/e3"
check_eq "babyllama rc" "$?" 0
check_prefix "babyllama105 once upon a time" "$T/g3" "$G/babyllama105_t0_n256_once_upon_a_time.txt" ${#P} 200
check_grep "context-full note" 'context is full' "$T/e3"

finish
