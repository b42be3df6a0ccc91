# test_cli_chat.sh: `lyra chat` through a pipe on stories260K, greedy. Each
# reply must equal what `lyra generate --parse-special` prints for the same
# full rendered prompt (so the KV cache reused between turns gives the same
# tokens as evaluating everything at once), with the template's stop text
# cut and the white space at both ends taken off, as chat shows replies. The
# turns kept when a small --ctx forces old ones out are simulated here from
# the documented rule (prompt + min(-n, ctx/2) tokens must fit), and the
# evaluated/reused counts on stderr are checked against `lyra tokenize`.
# Also: /reset, /help, unknown commands, empty lines, the llama2 and chatml
# templates, an org/name:TAG model from a fake Hugging Face cache, errors,
# Ctrl-C stopping a reply (not the chat), and --help quoted in docs/cli.md.
source "$(dirname "$0")/lib.sh"

S260="$(shared_path models/stories260K.gguf)"
N=24

# trim S: S without white space at both ends (chat's display rule)
trim() {
    local s="$1"
    s="${s#"${s%%[![:space:]]*}"}"
    s="${s%"${s##*[![:space:]]}"}"
    printf '%s' "$s"
}
ntok() { "$LYRA" -q tokenize -m "$S260" --parse-special -- "$1" | wc -w; }

# ---- the plain template (stories260K has no chat template) -----------------
# render_plain SYS FIRST: the prompt of turns FIRST.. of the arrays U, A (the
# last one unanswered), as src/gen/chat.h documents plain: S\n\nUser: U\nAssistant:
render_plain() {
    local sys="$1" first="$2" p="" i last=$((${#U[@]} - 1))
    [ -n "$sys" ] && p="$sys"$'\n\n'
    for ((i = first; i <= last; i++)); do
        p+="User: ${U[$i]}"$'\n'"Assistant:"
        [ "$i" -lt "$last" ] && p+=" ${A[$i]}"$'\n'
    done
    printf '%s' "$p"
}

# simulate SYS CTX MSG...: the expected stdout in $T/want and the expected
# "prompt N tokens" counts (one per turn) in $T/want_counts; DROPS: how many
# turns were dropped in all. Uses generate for every reply.
simulate() {
    local sys="$1" ctx="$2" first=0 room p n prev_n=0 g
    shift 2
    U=(); A=(); DROPS=0
    room=$N; [ $room -gt $((ctx / 2)) ] && room=$((ctx / 2))
    : >"$T/want"; : >"$T/want_counts"
    for msg in "$@"; do
        U+=("$msg")
        while :; do
            p="$(render_plain "$sys" "$first")"
            n=$(ntok "$p")
            if [ $((n + room)) -le "$ctx" ] || [ "$first" -ge $((${#U[@]} - 1)) ]; then break; fi
            first=$((first + 1)); DROPS=$((DROPS + 1))
        done
        g="$("$LYRA" -q generate -m "$S260" --temp 0 -n $N --parse-special -p "$p")"
        g="${g%%$'\n'User:*}"
        g="$(trim "$g")"
        A+=("$g")
        printf '%s\n\n' "$g" >>"$T/want"
        echo "$n $prev_n" >>"$T/want_counts"
        prev_n=$n
    done
}

# check_counts NAME: each turn's "chat: prompt N tokens: E evaluated, R reused"
# has N as simulated, E + R = N, and from the second turn on R >= the previous
# prompt's N when no turn was dropped (only the new tokens are evaluated).
check_counts() {
    local name="$1" i=0 want prev got e r
    grep -E '^chat: prompt [0-9]+ tokens' "$T/err" | sed -E 's/^chat: prompt ([0-9]+) tokens: ([0-9]+) evaluated, ([0-9]+) reused.*/\1 \2 \3/' >"$T/got_counts"
    check_eq "$name: turns counted" "$(wc -l <"$T/got_counts")" "$(wc -l <"$T/want_counts")"
    while read -r want prev && read -r got e r <&4; do
        i=$((i + 1))
        check_eq "$name: turn $i prompt tokens" "$got" "$want"
        check_eq "$name: turn $i evaluated + reused" "$((e + r))" "$got"
        if [ "$i" = 1 ]; then check_eq "$name: turn 1 reused" "$r" 0; fi
        if [ "$i" -gt 1 ] && [ "${2:-}" = reuse ]; then
            if [ "$r" -ge "$prev" ]; then ok; else bad "$name: turn $i reused $r < previous prompt $prev"; fi
        fi
    done <"$T/want_counts" 4<"$T/got_counts"
}

SYS="You are a story teller."
M1="Once upon a time"
M2="The dog ran to the park"
M3="Lily was happy"

# 1. three turns, context large enough: KV reuse, replies as generate
simulate "$SYS" 2048 "$M1" "$M2" "$M3"
check_eq "no drop expected" "$DROPS" 0
# (the empty line in the input is skipped)
printf '%s\n\n%s\n%s\n' "$M1" "$M2" "$M3" | "$LYRA" chat -m "$S260" --temp 0 -n $N --system-prompt "$SYS" \
    >"$T/out" 2>"$T/err"
check_eq "chat rc" "$?" 0
if cmp -s "$T/out" "$T/want"; then ok; else bad "replies differ from generate: got [$(cat "$T/out")] want [$(cat "$T/want")]"; fi
check_counts "3 turns" reuse
check_grep "plain template warning" 'no chat template.*plain User:/Assistant:' "$T/err"
check_grep "seed on stderr" '^seed: [0-9]+$' "$T/err"
# (the comparison above covers the layout: each reply, then one empty line)

# 2. a small context: old turns dropped with a notice, the system prompt kept
CTX=96
simulate "$SYS" $CTX "$M1" "$M2" "$M3" "Tom had a ball"
if [ "$DROPS" -gt 0 ]; then ok; else bad "--ctx $CTX should drop turns in the simulation"; fi
printf '%s\n' "$M1" "$M2" "$M3" "Tom had a ball" |
    "$LYRA" chat -m "$S260" --temp 0 -n $N --ctx $CTX --system-prompt "$SYS" >"$T/out" 2>"$T/err"
check_eq "small ctx rc" "$?" 0
if cmp -s "$T/out" "$T/want"; then ok; else bad "small ctx: replies differ: got [$(cat "$T/out")] want [$(cat "$T/want")]"; fi
check_counts "small ctx"
check_grep "drop notice" "dropped the [0-9]+ oldest turns? to fit the context of $CTX tokens \(the system prompt is kept\)" "$T/err"
got_drops=$(sed -nE 's/.*dropped the ([0-9]+) oldest.*/\1/p' "$T/err" | awk '{s += $1} END {print s + 0}')
check_eq "turns dropped" "$got_drops" "$DROPS"
# after a drop the system prompt is still reused from the cache
sys_tok=$(ntok "$SYS")
drop_turn_r=$(grep -A1 'dropped the' "$T/err" | sed -nE 's/^chat: prompt [0-9]+ tokens: [0-9]+ evaluated, ([0-9]+) reused.*/\1/p' | head -1)
if [ -n "$drop_turn_r" ] && [ "$drop_turn_r" -ge "$sys_tok" ]; then ok; else
    bad "after the drop, reused [$drop_turn_r] < the system prompt's $sys_tok tokens"; fi

# 3. /reset (and /help, an unknown command, //): the turn after /reset is
# answered as a first turn, the system prompt reused from the cache
simulate "$SYS" 2048 "$M1"
cp "$T/want" "$T/want1"
simulate "$SYS" 2048 "/Lily was happy"
cat "$T/want1" "$T/want" >"$T/want_all"
printf '%s\n' "$M1" /help /nosuch /reset "//Lily was happy" |
    "$LYRA" chat -m "$S260" --temp 0 -n $N --system-prompt "$SYS" >"$T/out" 2>"$T/err"
check_eq "reset rc" "$?" 0
if cmp -s "$T/out" "$T/want_all"; then ok; else bad "/reset: got [$(cat "$T/out")] want [$(cat "$T/want_all")]"; fi
check_grep "/help" '/reset' "$T/err"
check_grep "unknown command" 'unknown command /nosuch' "$T/err"
check_grep "/reset notice" 'conversation is cleared' "$T/err"
r2=$(grep -E '^chat: prompt' "$T/err" | sed -n 2p | sed -E 's/.*evaluated, ([0-9]+) reused.*/\1/')
if [ "$r2" -ge "$sys_tok" ]; then ok; else bad "/reset: system prompt not reused ($r2 < $sys_tok)"; fi
# /exit leaves at once, exit 0, later lines unread
printf '%s\n' "$M1" /exit "$M2" | "$LYRA" -q chat -m "$S260" --temp 0 -n $N --system-prompt "$SYS" >"$T/out" 2>"$T/err"
check_eq "/exit rc" "$?" 0
if cmp -s "$T/out" "$T/want1"; then ok; else bad "/exit: want the first reply only, got [$(cat "$T/out")]"; fi
# EOF without any line: nothing, exit 0
"$LYRA" -q chat -m "$S260" --temp 0 </dev/null >"$T/out" 2>"$T/err"
check_eq "empty input rc" "$?" 0
check_eq "empty input output" "$(wc -c <"$T/out")" 0

# 4. templates whose text carries special tokens: llama2 (BOS written by the
# template, not added twice; replies trimmed in the history) and chatml
# (replies kept as generated), two turns each
gen_raw_m() { # MODEL PROMPT: generate's text without its final newline, kept exactly
    local g
    g="$("$LYRA" -q generate -m "$1" --temp 0 -n $N --parse-special -p "$2"; echo x)"
    g="${g%x}"
    printf '%s' "${g%$'\n'}"
}
gen_raw() { gen_raw_m "$S260" "$1"; }
two_turns() { # NAME TEMPLATE RENDER1 RENDER2-after-reply(printf format, %s = reply 1) TRIMS
    local name="$1" tmpl="$2" p1="$3" r1 g1 g2 p2
    r1="$(gen_raw "$p1"; echo x)"
    r1="${r1%x}"
    g1="$(trim "$r1")"
    if [ "$5" = trims ]; then p2="$(printf "$4" "$g1"; echo x)"; else p2="$(printf "$4" "$r1"; echo x)"; fi
    p2="${p2%x}"
    g2="$(trim "$(gen_raw "$p2")")"
    printf '%s\n' "$M1" "$M2" | "$LYRA" chat -m "$S260" --temp 0 -n $N --chat-template "$tmpl" \
        --system-prompt "$SYS" >"$T/out" 2>"$T/err"
    check_eq "$name rc" "$?" 0
    check_eq "$name replies" "$(cat "$T/out")" "$(printf '%s\n\n%s' "$g1" "$g2")"
    check_grep "$name template" "template $tmpl \(--chat-template\)" "$T/err"
}
# generate adds BOS itself: the prompts start after the template's <s>
two_turns llama2 llama2 "[INST] <<SYS>>"$'\n'"$SYS"$'\n'"<</SYS>>"$'\n\n'"$M1 [/INST]" \
    "[INST] <<SYS>>\n$SYS\n<</SYS>>\n\n$M1 [/INST] %s </s><s>[INST] $M2 [/INST]" trims
two_turns chatml chatml "<|im_start|>system"$'\n'"$SYS<|im_end|>"$'\n'"<|im_start|>user"$'\n'"$M1<|im_end|>"$'\n'"<|im_start|>assistant"$'\n' \
    "<|im_start|>system\n$SYS<|im_end|>\n<|im_start|>user\n$M1<|im_end|>\n<|im_start|>assistant\n%s<|im_end|>\n<|im_start|>user\n$M2<|im_end|>\n<|im_start|>assistant\n" raw

# 4b. the template recognised from the model's tokenizer.chat_template: copies
# of stories260K carrying Qwen2.5's (chatml; its default system prompt used)
# and Gemma 3's (BOS written by the template; the system prompt folded into
# the first user turn), made with gguf-py's gguf_new_metadata
if "$PY" -c 'import gguf.scripts.gguf_new_metadata' 2>/dev/null; then
    model_with() { # TEMPLATE-FILE OUT
        "$PY" -m gguf.scripts.gguf_new_metadata --force --chat-template-file \
            "$SRC/tests/data/chat_templates/$1" "$S260" "$2" >/dev/null 2>&1
    }
    model_with qwen2.5-instruct.jinja "$T/qwen.gguf"
    model_with gemma3-it.jinja "$T/gemma.gguf"
    QSYS="You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    want="$(trim "$(gen_raw_m "$T/qwen.gguf" "<|im_start|>system"$'\n'"$QSYS<|im_end|>"$'\n'"<|im_start|>user"$'\n'"$M1<|im_end|>"$'\n'"<|im_start|>assistant"$'\n')")"
    printf '%s\n' "$M1" | "$LYRA" chat -m "$T/qwen.gguf" --temp 0 -n $N >"$T/out" 2>"$T/err"
    check_eq "qwen template rc" "$?" 0
    check_grep "qwen template detected" "chat: template chatml \(from the model's tokenizer.chat_template\)" "$T/err"
    check_grep "qwen default system" "default system prompt: $QSYS" "$T/err"
    check_eq "qwen template reply" "$(cat "$T/out")" "$want"
    want="$(trim "$(gen_raw_m "$T/gemma.gguf" "<start_of_turn>user"$'\n'"$SYS"$'\n\n'"$M1<end_of_turn>"$'\n'"<start_of_turn>model"$'\n')")"
    printf '%s\n' "$M1" | "$LYRA" chat -m "$T/gemma.gguf" --temp 0 -n $N --system-prompt "$SYS" >"$T/out" 2>"$T/err"
    check_eq "gemma template rc" "$?" 0
    check_grep "gemma template detected" "chat: template gemma \(from the model's" "$T/err"
    check_eq "gemma template reply" "$(cat "$T/out")" "$want"
    # --chat-template wins over the model's
    printf '%s\n' "$M1" | "$LYRA" chat -m "$T/gemma.gguf" --temp 0 -n $N --chat-template plain >"$T/out" 2>"$T/err"
    check_grep "override" "template plain \(--chat-template\)" "$T/err"
else
    echo "note: gguf-py not importable by $PY: model-embedded template checks skipped"
fi

# 5. org/name:TAG from a fake Hugging Face cache (snapshot link -> blob)
H="$T/hub/models--karpathy--tinyllamas-gguf"
mkdir -p "$H/blobs" "$H/snapshots/abc123" "$H/refs"
ln -s "$(cd "$(dirname "$S260")" && pwd)/$(basename "$S260")" "$H/blobs/f32blob"
ln -s ../../blobs/f32blob "$H/snapshots/abc123/stories260K-F32.gguf"
ln -s ../../blobs/f32blob "$H/snapshots/abc123/stories260K-Q8_0.gguf"
echo abc123 >"$H/refs/main"
printf '%s\n' "$M1" | "$LYRA" -q chat -m "$S260" --temp 0 -n $N >"$T/want"
printf '%s\n' "$M1" | HF_HUB_CACHE="$T/hub" "$LYRA" chat -m karpathy/tinyllamas-gguf:f32 --temp 0 -n $N >"$T/out" 2>"$T/err"
check_eq "hf model rc" "$?" 0
if cmp -s "$T/out" "$T/want"; then ok; else bad "hf model: reply differs"; fi
check_grep "hf model path" 'chat: model .*snapshots/abc123/stories260K-F32.gguf' "$T/err"
HF_HUB_CACHE="$T/hub" "$LYRA" chat -m karpathy/tinyllamas-gguf </dev/null >"$T/out" 2>"$T/err"
check_eq "hf ambiguous rc" "$?" 2
check_grep "hf ambiguous" '^lyra: error: -m: karpathy/tinyllamas-gguf: 2 GGUF model files.*looked in: .*snapshots/abc123 \(refs/main; cache from HF_HUB_CACHE\); found: stories260K-F32.gguf, stories260K-Q8_0.gguf$' "$T/err"
HF_HUB_CACHE="$T/hub" "$LYRA" chat -m nobody/nothing:Q4_K_M </dev/null >"$T/out" 2>"$T/err"
check_eq "hf missing rc" "$?" 2
check_grep "hf missing" "models--nobody--nothing \(not in the Hugging Face cache, from HF_HUB_CACHE" "$T/err"

# 6. errors: exit 2, one line, nothing on stdout
check_rc "bad template" 2 "$LYRA" chat -m "$S260" --chat-template vicuna
check_grep "bad template msg" '^lyra: error: --chat-template: unknown template .vicuna. \(expected chatml, llama2' "$T/err"
check_rc "no model" 2 "$LYRA" chat
check_grep "no model msg" '^lyra: error: -m: required' "$T/err"
check_rc "bad -n" 2 "$LYRA" chat -m "$S260" -n x
check_rc "positional" 2 "$LYRA" chat -m "$S260" hello

# 7. Ctrl-C stops the current reply; the chat goes on and exits 0 at EOF.
# A random-weight model rarely ends a reply by itself, so -n 600 runs for
# seconds on one thread: the signal comes while it streams.
"$LYRA" -q mkmodel -o "$T/rand.gguf"
mkfifo "$T/in"
"$LYRA" chat -m "$T/rand.gguf" --temp 0 -n 600 --threads 1 <"$T/in" >"$T/out" 2>"$T/err" &
pid=$!
exec 7>"$T/in"
echo "Hello there" >&7
for _ in $(seq 400); do [ -s "$T/out" ] && break; sleep 0.05; done
kill -INT "$pid"
for _ in $(seq 200); do grep -q 'reply stopped' "$T/err" && break; sleep 0.05; done
echo "Second" >&7
exec 7>&-
wait "$pid"
check_eq "Ctrl-C rc" "$?" 0
check_grep "Ctrl-C notice" 'chat: reply stopped \(Ctrl-C\)' "$T/err"
check_eq "Ctrl-C: the next turn answered" "$(grep -c '^chat: prompt' "$T/err")" 2
check_eq "Ctrl-C: stopped during the first turn" \
    "$(grep -E '^chat: (prompt|reply stopped)' "$T/err" | sed -E 's/^chat: (prompt|reply stopped).*/\1/' | paste -sd' ')" \
    "prompt reply stopped prompt"

# 8. --help on stdout and quoted verbatim in docs/cli.md
"$LYRA" chat --help >"$T/out" 2>"$T/err"
check_eq "help rc" "$?" 0
check_grep "help" '^usage: lyra chat' "$T/out"
r=$("$PY" -c "import sys; print('ok' if open(sys.argv[1]).read() in open(sys.argv[2]).read() else 'missing')" \
    "$T/out" "$SRC/docs/cli.md")
check_eq "docs/cli.md has lyra chat --help" "$r" ok

# 9. the Jinja renderings committed for tests/unit/test_chat.c are current
#    (when a Python with jinja2 is at hand)
for py in "$PY" python3; do
    if "$py" -c 'import jinja2' 2>/dev/null; then
        "$py" "$SRC/tests/reference/render_chat.py" --check "$SRC/tests/data/chat_templates" >"$T/out" 2>&1
        check_eq "render_chat.py --check: $(cat "$T/out")" "$?" 0
        break
    fi
done

finish
