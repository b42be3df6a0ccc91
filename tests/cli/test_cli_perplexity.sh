# test_cli_perplexity.sh: `lyra perplexity` on tests/data/stories.txt equals
# llama.cpp's method computed by tests/reference/perplexity_ref.py on the
# float64 numpy forward pass (llama_ref.py), and does not depend on the
# thread count.
source "$(dirname "$0")/lib.sh"
"$PY" -c "import numpy, gguf" 2>/dev/null ||
    { echo "SKIPPED: $PY has no numpy/gguf (set LYRA_PYTHON, e.g. a venv with pip install numpy gguf)"; exit 77; }

shared_path S260 models/stories260K.gguf
TXT="$SRC/tests/data/stories.txt"

"$LYRA" perplexity -m "$S260" -f "$TXT" --ctx 64 --threads 1 --kv-type f32 >"$T/p1" 2>"$T/e1"
check_eq "perplexity rc" "$?" 0
check_eq "stdout is one line" "$(wc -l <"$T/p1")" 1
check_grep "format" '^perplexity: [0-9]+\.[0-9]{4}$' "$T/p1"
check_grep "progress on stderr" '^\[112/112\] perplexity so far' "$T/e1"
"$LYRA" -q perplexity -m "$S260" -f - --ctx 64 --threads 2 --kv-type f32 <"$TXT" >"$T/p2"
check_eq "threads 2 and -f - (stdin) == threads 1" "$(cat "$T/p2")" "$(cat "$T/p1")"

# the reference: tokens from lyra tokenize (BOS first, as perplexity does;
# the tokenizer itself is checked against test vectors elsewhere)
"$LYRA" -q tokenize -m "$S260" -f "$TXT" >"$T/toks"
"$PY" "$SRC/tests/reference/perplexity_ref.py" "$S260" 64 1 "$T/toks" >"$T/ref"
check_eq "reference rc" "$?" 0
r=$("$PY" - "$T/p1" "$T/ref" "$T/e1" <<'EOF'
import re, sys
got = float(open(sys.argv[1]).read().split()[1])
ref = open(sys.argv[2]).read()
want = float(re.search(r"perplexity: (\S+)", ref).group(1))
nll_ref = float(re.search(r"nll: (\S+)", ref).group(1))
nll = float(re.search(r"mean NLL (\S+)", open(sys.argv[3]).read()).group(1))
# float32 engine vs float64 reference: mean NLL within 2e-5
ok = abs(nll - nll_ref) < 2e-5 and abs(got - want) <= 2e-4
print("ok" if ok else "lyra %.4f (nll %.6f) vs reference %.4f (nll %.9f)" % (got, nll, want, nll_ref))
EOF
)
check_eq "perplexity == reference ($(cat "$T/p1"))" "$r" "ok"

# f16 KV cache: within 0.1% of the f32 result
"$LYRA" -q perplexity -m "$S260" -f "$TXT" --ctx 64 --threads 1 >"$T/p4"
r=$("$PY" -c "
a, b = float('$(cut -d' ' -f2 "$T/p4")'), float('$(cut -d' ' -f2 "$T/p1")')
print('ok' if abs(a / b - 1) < 1e-3 else '%s vs %s' % (a, b))")
check_eq "f16 KV within 0.1%" "$r" "ok"

finish
