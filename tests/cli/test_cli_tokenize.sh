# test_cli_tokenize.sh: `lyra tokenize` against llama.cpp's tokenizer test
# vectors (shared/models/vocab: each .inp string, tokenized without BOS,
# must give the ids on the same line of the .out file), and its output
# format, BOS handling and input modes on stories260K.
source "$(dirname "$0")/lib.sh"

shared_path V models/vocab/ggml-vocab-llama-spm.gguf
V="$(dirname "$V")"
shared_path S260 models/stories260K.gguf

for voc in llama-spm gpt-2; do
    r=$("$PY" - "$LYRA" "$V/ggml-vocab-$voc.gguf" "$T/in" <<'EOF'
import subprocess, sys
lyra, model, tmp = sys.argv[1:4]
inp = open(model + ".inp", "rb").read().split(b"\n__ggml_vocab_test__\n")
out = open(model + ".out").read().split("\n")
n = len(inp) - 1  # the file ends with a separator
bad = []
for i in range(n):
    with open(tmp, "wb") as f:
        f.write(inp[i])
    p = subprocess.run([lyra, "tokenize", "--no-bos", "-m", model, "-f", tmp],
                       capture_output=True)
    want = out[i].split()
    got = p.stdout.decode().split()
    if p.returncode != 0 or got != want or p.stdout.decode() != " ".join(want) + "\n":
        bad.append("#%d %r: got %r want %r (rc %d)" % (i, inp[i][:30], got[:8], want[:8], p.returncode))
print("ok %d" % n if not bad and n >= 40 else "; ".join(bad[:3]) or "only %d vectors" % n)
EOF
)
    case "$r" in ok*) ok ;; *) bad "$voc vectors: $r" ;; esac
done

# format: ids separated by single spaces, one newline; BOS (1) by default
out="$("$LYRA" tokenize -m "$S260" "Once upon a time" 2>"$T/err")"
check_eq "tokenize rc" "$?" 0
check_eq "bos first" "${out%% *}" "1"
nobos="$("$LYRA" tokenize --no-bos -m "$S260" "Once upon a time")"
check_eq "--no-bos drops only BOS" "1 $nobos" "$out"
if [[ "$out" =~ ^[0-9]+( [0-9]+)*$ ]]; then ok; else bad "format: [$out]"; fi
check_eq "nothing on stderr" "$(cat "$T/err")" ""

# -f FILE and -f - (stdin) give the same ids as the argument
printf 'Once upon a time' >"$T/f"
check_eq "-f FILE" "$("$LYRA" tokenize -m "$S260" -f "$T/f")" "$out"
check_eq "-f -" "$(printf 'Once upon a time' | "$LYRA" tokenize -m "$S260" -f -)" "$out"
# bytes as they are: a trailing newline is tokenized too
printf 'Once upon a time\n' >"$T/f2"
check_eq "-f keeps the newline" "$("$LYRA" tokenize -m "$S260" -f "$T/f2")" "$out 13"

# special tokens: only with --parse-special
check_eq "--parse-special <s>" "$("$LYRA" tokenize --no-bos --parse-special -m "$S260" "<s>")" "1"
plain="$("$LYRA" tokenize --no-bos -m "$S260" "<s>")"
if [ "$plain" != "1" ]; then ok; else bad "<s> matched as BOS without --parse-special"; fi

# empty text: BOS alone, or an empty line
check_eq "empty text" "$("$LYRA" tokenize -m "$S260" "")" "1"
printf '' >"$T/empty"
"$LYRA" tokenize --no-bos -m "$S260" -f "$T/empty" >"$T/eo"
check_eq "empty text, no bos" "$(od -An -c "$T/eo" | tr -d ' ')" '\n'

finish
