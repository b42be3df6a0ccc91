# test_cli_gemma3.sh: a real trained model, Gemma 3 270M in Q4_K_M, against
# llama.cpp (tests/data/gemma3/, made by tests/reference/gemma3_ref.py with
# llama-cpp-python): `lyra tokenize` ids equal llama.cpp's for a set of
# strings and for the perplexity text; `lyra generate --greedy` continuations
# equal llama.cpp's greedy tokens up to the first near tie (one prompt runs
# past the 512-token sliding window); `lyra perplexity` within 1% of
# llama.cpp's logits put through the same method; `lyra chat` through a pipe
# picks the gemma template (the GGUF has no tokenizer.chat_template: from the
# architecture) and prints llama.cpp's greedy replies to Gemma 3's template
# up to a near tie. The comparisons print how far the texts agree.
# The model: $LYRA_GEMMA3_MODEL, else where scripts/get-gemma3.sh keeps it.
# Absent: skipped with the reason (fetch it with scripts/get-gemma3.sh), or
# failed when LYRA_REQUIRE_GEMMA3=1 (.ci/run sets it after fetching).
# In a Debug or sanitizer build (LYRA_TEST_SLOW_BUILD=1, from CMake) only the
# tokenizer, the first two prompts and the chat run: perplexity and the long
# prompt would take many minutes there.
source "$(dirname "$0")/lib.sh"
D="$SRC/tests/data/gemma3"

M="${LYRA_GEMMA3_MODEL:-}"
[ -n "$M" ] || M=$("$SRC/scripts/get-gemma3.sh" --path-only 2>/dev/null)
if [ -z "$M" ] || [ ! -r "$M" ]; then
    if [ "${LYRA_REQUIRE_GEMMA3:-0}" = 1 ]; then
        echo "FAILED: the Gemma 3 270M model is missing (LYRA_REQUIRE_GEMMA3=1; LYRA_GEMMA3_MODEL='${LYRA_GEMMA3_MODEL:-}')" >&2
        exit 1
    fi
    skip "Gemma 3 270M not found (run scripts/get-gemma3.sh, or set LYRA_GEMMA3_MODEL)"
fi
# no config file of the machine's is discovered
mkdir -p "$T/home" "$T/xdg"
export HOME="$T/home" XDG_CONFIG_HOME="$T/xdg"
unset LYRA_MODEL_CONFIG LYRA_SIM_GPUS LYRA_FAIL_ALLOC
THREADS=2
QUICK="${LYRA_TEST_SLOW_BUILD:-0}"

# 1. tokenizer: every string (and with --parse-special where that differs)
for f in "$D"/tokenize/*.txt; do
    n="${f%.txt}"
    got=$("$LYRA" -q tokenize -m "$M" -f "$f")
    check_eq "tokenize $(basename "$f") $(head -c 40 "$f" | tr '\n\t' '  ')" "$got" "$(cat "$n.ids")"
    if [ -f "$n.special.ids" ]; then
        got=$("$LYRA" -q tokenize --parse-special -m "$M" -f "$f")
        check_eq "tokenize --parse-special $(basename "$f")" "$got" "$(cat "$n.special.ids")"
    fi
done
# the perplexity text: its token count (ids checked as a whole by perplexity)
got=$("$LYRA" -q tokenize -m "$M" -f "$SRC/tests/data/stories.txt" | wc -w)
want=$(sed -nE 's/.*"tokens": ([0-9]+).*/\1/p' "$D/reference.json" | head -1)
check_eq "tokens of stories.txt" "$got" "$want"

# 2. greedy continuations: llama.cpp's tokens up to the first near tie
# (gemma3_ref.py check-generate: they may part only where llama.cpp's top two
# logits are within its TIE)
n_gen=$(sed -nE 's/.*"n_gen": ([0-9]+).*/\1/p' "$D/reference.json")
REF="$SRC/tests/reference/gemma3_ref.py"
i=0
for f in "$D"/generate/*.prompt; do
    n=$(basename "$f" .prompt)
    i=$((i + 1))
    [ "$QUICK" = 1 ] && [ $i -gt 2 ] && break
    prompt=$(cat "$f"; printf x) # keeps a final newline
    "$LYRA" -q generate -m "$M" --greedy -n "$n_gen" --threads $THREADS -p "${prompt%x}" \
        >"$T/gen" 2>"$T/err"
    check_eq "generate $n rc ($(head -c 300 "$T/err"))" "$?" 0
    r=$("$PY" "$REF" check-generate "$D" "$((10#$n))" "$T/gen")
    rc=$?
    echo "generate $n: $r"
    check_eq "generate $n: $r" "$rc" 0
done

# 3. perplexity within 1% of llama.cpp's, at each context size recorded
while read -r _ ctx _ want; do
    "$LYRA" -q perplexity -m "$M" -f "$SRC/tests/data/stories.txt" --ctx "$ctx" \
        --threads $THREADS >"$T/ppl" 2>"$T/err"
    check_eq "perplexity --ctx $ctx rc ($(head -c 300 "$T/err"))" "$?" 0
    got=$(sed -n 's/^perplexity: //p' "$T/ppl")
    echo "perplexity --ctx $ctx: lyra $got, llama.cpp $want"
    r=$(awk -v g="$got" -v w="$want" 'BEGIN { d = g / w - 1; if (d < 0) d = -d;
        if (g != "" && d < 0.01) print "ok"; else printf "lyra %s vs llama.cpp %s\n", g, w }')
    check_eq "perplexity --ctx $ctx within 1% of llama.cpp's $want" "$r" ok
done < <([ "$QUICK" = 1 ] || cat "$D/perplexity.txt")

# 4. chat: the gemma template, chosen from the architecture (the file has no
# tokenizer.chat_template), greedy: llama.cpp's replies up to a near tie
n_chat=$(sed -nE 's/.*"n_chat": ([0-9]+).*/\1/p' "$D/reference.json")
"$LYRA" chat -m "$M" --greedy -n "$n_chat" --threads $THREADS \
    <"$D/chat.in" >"$T/chat" 2>"$T/err"
check_eq "chat rc ($(tail -c 300 "$T/err"))" "$?" 0
check_grep "chat template from the architecture" '^chat: template gemma' "$T/err"
r=$("$PY" "$REF" check-chat "$D" "$T/chat")
rc=$?
echo "chat: $r"
check_eq "chat: $r" "$rc" 0

finish
