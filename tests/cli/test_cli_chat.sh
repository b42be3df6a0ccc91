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
# Then config files (section 10): model_id, system_prompt, chat_template and
# pipeline_kwargs read by chat, -m and flags over them, --no-config, `lyra`
# with no command (chat when a config names a model, else usage and exit 2
# without reading stdin). Everything runs in a temporary working directory
# with a temporary HOME and XDG_CONFIG_HOME, so no config file of the
# machine's is discovered.
source "$(dirname "$0")/lib.sh"

shared_path S260 models/stories260K.gguf
S260="$(cd "$(dirname "$S260")" && pwd)/$(basename "$S260")"
case "$LYRA" in */*) LYRA="$(cd "$(dirname "$LYRA")" && pwd)/$(basename "$LYRA")" ;; esac
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac
SRC="$(cd "$SRC" && pwd)"
W="$T/work"
mkdir -p "$W" "$T/home" "$T/xdg"
export HOME="$T/home" XDG_CONFIG_HOME="$T/xdg"
unset LYRA_MODEL_CONFIG LYRA_SIM_GPUS LYRA_FAIL_ALLOC
cd "$W" || exit 1
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


# 10. config files (docs/config.md). A file with model_id, system_prompt and
# pipeline_kwargs {max_new_tokens, do_sample: false} gives the replies the
# same flags give (checked against generate as above); -m and flags win over
# it; --no-config reads none; pipeline_kwargs.stop and every chat_template
# value work; the device and fallback keys reach chat.
N=16 # the config's max_new_tokens (the flags above used 24)
jstr() { "$PY" -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }
# cfg FILE KEYS...: a config with model_id = stories260K plus the JSON members KEYS
cfg() {
    local f="$1" body
    shift
    body="\"model_id\": $(jstr "$S260")"
    for k in "$@"; do body+=", $k"; done
    printf '{%s}\n' "$body" >"$f"
}
PK="\"pipeline_kwargs\": {\"max_new_tokens\": $N, \"do_sample\": false}"
CFG="$T/chat.json"
cfg "$CFG" "\"system_prompt\": $(jstr "$SYS")" "$PK"

# 10a. --model-config: replies and prompt counts as with the flags
simulate "$SYS" 2048 "$M1" "$M2"
cp "$T/want" "$T/want_cfg"
cp "$T/want_counts" "$T/want_cfg_counts"
printf '%s\n' "$M1" "$M2" | "$LYRA" chat --model-config "$CFG" >"$T/out" 2>"$T/err"
check_eq "config rc" "$?" 0
if cmp -s "$T/out" "$T/want_cfg"; then ok; else bad "config: got [$(cat "$T/out")] want [$(cat "$T/want_cfg")]"; fi
check_counts "config" reuse
check_grep "config file logged" "^config: .*/chat.json \(--model-config\)$" "$T/err"

# 10b. -m overrides model_id (here a file that does not exist)
cfg "$T/bad_model.json" "\"system_prompt\": $(jstr "$SYS")" "$PK"
sed -i "s|$(printf '%s' "$S260" | sed 's/[.[\*^$|]/\\&/g')|$T/nope.gguf|" "$T/bad_model.json"
check_rc "model_id missing file" 2 "$LYRA" chat --model-config "$T/bad_model.json"
check_grep "model_id message" "^lyra: error: .*bad_model.json: model_id: .*nope.gguf" "$T/err"
printf '%s\n' "$M1" "$M2" | "$LYRA" chat --model-config "$T/bad_model.json" -m "$S260" >"$T/out" 2>"$T/err"
check_eq "-m over model_id rc" "$?" 0
if cmp -s "$T/out" "$T/want_cfg"; then ok; else bad "-m over model_id: got [$(cat "$T/out")]"; fi

# 10c. flags over the file (--max-new-tokens 24), and --no-config (the
# discovered ./config/model_config.json of W2 not read: no system prompt;
# --greedy and -n as flags)
W2="$T/w2"
mkdir -p "$W2/config"
cp "$CFG" "$W2/config/model_config.json"
N=24
simulate "$SYS" 2048 "$M1"
printf '%s\n' "$M1" | "$LYRA" chat --model-config "$CFG" --max-new-tokens 24 >"$T/out" 2>"$T/err"
check_eq "flag over config rc" "$?" 0
if cmp -s "$T/out" "$T/want"; then ok; else bad "--max-new-tokens over the config: got [$(cat "$T/out")] want [$(cat "$T/want")]"; fi
simulate "" 2048 "$M1"
(cd "$W2" && printf '%s\n' "$M1" | "$LYRA" chat --no-config -m "$S260" --greedy -n 24 >"$T/out" 2>"$T/err")
check_eq "--no-config rc" "$?" 0
if cmp -s "$T/out" "$T/want"; then ok; else bad "--no-config: got [$(cat "$T/out")] want [$(cat "$T/want")]"; fi
if grep -q '^config: ' "$T/err"; then bad "--no-config read a file: $(grep '^config: ' "$T/err")"; else ok; fi
(cd "$W2" && "$LYRA" chat --no-config </dev/null >"$T/out" 2>"$T/err")
check_eq "--no-config without -m rc" "$?" 2
check_grep "--no-config without -m" '^lyra: error: -m: required' "$T/err"
N=16

# 10d. pipeline_kwargs.stop and --stop: the first reply ends before the
# stop text (its second word), not shown
g1="$(sed -n 1p "$T/want_cfg")"
w2="$(printf '%s\n' "$g1" | awk '{print $2}')"
if [ -n "$w2" ]; then
    stop=" $w2"
    want_stop="$(trim "${g1%%"$stop"*}")"
    cfg "$T/stop.json" "\"system_prompt\": $(jstr "$SYS")" \
        "\"pipeline_kwargs\": {\"max_new_tokens\": $N, \"do_sample\": false, \"stop\": [$(jstr "$stop")]}"
    printf '%s\n' "$M1" | "$LYRA" chat --model-config "$T/stop.json" >"$T/out" 2>"$T/err"
    check_eq "config stop rc" "$?" 0
    check_eq "config stop reply" "$(cat "$T/out")" "$want_stop"
    printf '%s\n' "$M1" | "$LYRA" chat --model-config "$CFG" --stop "$stop" >"$T/out" 2>"$T/err"
    check_eq "--stop reply" "$(cat "$T/out")" "$want_stop"
else
    bad "the first reply [$g1] has no second word to stop at"
fi

# 10e. `lyra` with no command: chat with the discovered config, through a pipe
(cd "$W2" && printf '%s\n' "$M1" "$M2" | "$LYRA" >"$T/out" 2>"$T/err")
check_eq "lyra alone rc" "$?" 0
if cmp -s "$T/out" "$T/want_cfg"; then ok; else bad "lyra alone: got [$(cat "$T/out")] want [$(cat "$T/want_cfg")]"; fi
check_grep "lyra alone: discovered" "^config: .*/w2/config/model_config.json \(./config/model_config.json\)$" "$T/err"
cp "$T/want_cfg_counts" "$T/want_counts"
check_counts "lyra alone" reuse
# global flags before: -q leaves only errors on stderr
(cd "$W2" && printf '%s\n' "$M1" "$M2" | "$LYRA" -q >"$T/out" 2>"$T/err")
check_eq "lyra -q alone rc" "$?" 0
if cmp -s "$T/out" "$T/want_cfg"; then ok; else bad "lyra -q alone: got [$(cat "$T/out")]"; fi
check_eq "lyra -q alone stderr" "$(cat "$T/err")" ""
# LYRA_MODEL_CONFIG names the file (from W, which has no ./config)
printf '%s\n' "$M1" "$M2" | LYRA_MODEL_CONFIG="$CFG" "$LYRA" >"$T/out" 2>"$T/err"
check_eq "LYRA_MODEL_CONFIG alone rc" "$?" 0
if cmp -s "$T/out" "$T/want_cfg"; then ok; else bad "LYRA_MODEL_CONFIG alone: got [$(cat "$T/out")]"; fi
# $XDG_CONFIG_HOME/lyra/model_config.json
mkdir -p "$XDG_CONFIG_HOME/lyra"
cp "$CFG" "$XDG_CONFIG_HOME/lyra/model_config.json"
printf '%s\n' "$M1" "$M2" | "$LYRA" >"$T/out" 2>"$T/err"
check_eq "XDG config alone rc" "$?" 0
if cmp -s "$T/out" "$T/want_cfg"; then ok; else bad "XDG config alone: got [$(cat "$T/out")]"; fi
check_grep "XDG config alone: discovered" '^config: .*/xdg/lyra/model_config.json \(\$XDG_CONFIG_HOME\)$' "$T/err"
rm "$XDG_CONFIG_HOME/lyra/model_config.json"

# 10f. `lyra` with no command and no model configured: usage on stderr, exit
# 2, at once, stdin open and never read (/dev/zero never ends; a FIFO with a
# writer never gives EOF); also LYRA_MODEL_CONFIG=none beside a config, and a
# discovered config without model_id
no_model() { # NAME: $T/out, $T/err from the run; checks rc 2 and the usage
    check_eq "$1 rc" "$2" 2
    check_eq "$1 stdout" "$(wc -c <"$T/out")" 0
    check_eq "$1 usage first" "$(head -1 "$T/err")" "usage: lyra [-q | -v] COMMAND [FLAGS]"
    check_grep "$1 usage commands" '^  chat +chat with a model' "$T/err"
    check_grep "$1 last line" '^lyra: error: COMMAND: missing, and no config file names a model' \
        <(tail -1 "$T/err")
}
timeout 5 "$LYRA" </dev/zero >"$T/out" 2>"$T/err"
no_model "no config, /dev/zero" "$?"
mkfifo "$T/idle"
exec 8<>"$T/idle"
timeout 5 "$LYRA" <"$T/idle" >"$T/out" 2>"$T/err"
no_model "no config, open FIFO" "$?"
exec 8>&-
(cd "$W2" && LYRA_MODEL_CONFIG=none timeout 5 "$LYRA" </dev/zero >"$T/out" 2>"$T/err")
no_model "LYRA_MODEL_CONFIG=none" "$?"
mkdir -p "$T/w3/config"
printf '{"system_prompt": "hi", "pipeline_kwargs": {"max_new_tokens": 4}}\n' >"$T/w3/config/model_config.json"
(cd "$T/w3" && timeout 5 "$LYRA" </dev/zero >"$T/out" 2>"$T/err")
no_model "config without model_id" "$?"

# 10g. every chat_template value of a config file, one turn each: the reply
# is generate's on the prompt src/gen/chat.h documents for that template
# (templates that write BOS themselves: generate adds it), cut at the
# template's stop texts; the prompt's token count matches `lyra tokenize`
N=24
PK="\"pipeline_kwargs\": {\"max_new_tokens\": $N, \"do_sample\": false}"
tmpl_case() { # NAME PROMPT-after-BOS STOP...
    local name="$1" p="$2" g s
    shift 2
    g="$(gen_raw "$p")"
    for s in "$@"; do g="${g%%"$s"*}"; done
    g="$(trim "$g")"
    cfg "$T/t_$name.json" "\"system_prompt\": $(jstr "$SYS")" "\"chat_template\": \"$name\"" "$PK"
    printf '%s\n' "$M1" | "$LYRA" chat --model-config "$T/t_$name.json" >"$T/out" 2>"$T/err"
    check_eq "config template $name rc" "$?" 0
    check_grep "config template $name used" "^chat: template $name \(chat_template in .*/t_$name.json\)$" "$T/err"
    check_eq "config template $name reply" "$(cat "$T/out")" "$g"
    check_eq "config template $name prompt tokens" \
        "$(sed -nE 's/^chat: prompt ([0-9]+) tokens.*/\1/p' "$T/err")" "$(ntok "$p")"
}
tmpl_case chatml "<|im_start|>system"$'\n'"$SYS<|im_end|>"$'\n'"<|im_start|>user"$'\n'"$M1<|im_end|>"$'\n'"<|im_start|>assistant"$'\n' \
    "<|im_end|>" "<|im_start|>"
tmpl_case llama2 "[INST] <<SYS>>"$'\n'"$SYS"$'\n'"<</SYS>>"$'\n\n'"$M1 [/INST]" "</s>" "[INST]"
tmpl_case llama3 "<|start_header_id|>system<|end_header_id|>"$'\n\n'"$SYS<|eot_id|><|start_header_id|>user<|end_header_id|>"$'\n\n'"$M1<|eot_id|><|start_header_id|>assistant<|end_header_id|>"$'\n\n' \
    "<|eot_id|>" "<|start_header_id|>"
tmpl_case phi3 "<|system|>"$'\n'"$SYS<|end|>"$'\n'"<|user|>"$'\n'"$M1<|end|>"$'\n'"<|assistant|>"$'\n' \
    "<|end|>" "<|user|>" "<|endoftext|>"
tmpl_case gemma "<start_of_turn>user"$'\n'"$SYS"$'\n\n'"$M1<end_of_turn>"$'\n'"<start_of_turn>model"$'\n' \
    "<end_of_turn>" "<start_of_turn>"
tmpl_case zephyr "<|system|>"$'\n'"$SYS</s>"$'\n'"<|user|>"$'\n'"$M1</s>"$'\n'"<|assistant|>"$'\n' "</s>" "<|user|>"
tmpl_case plain "$SYS"$'\n\n'"User: $M1"$'\n'"Assistant:" $'\n'"User:"
tmpl_case none "$SYS$M1"
# --chat-template (any case) wins over the file's chat_template
printf '%s\n' "$M1" | "$LYRA" chat --model-config "$T/t_chatml.json" --chat-template PLAIN >"$T/out" 2>"$T/err"
check_eq "--chat-template over config rc" "$?" 0
check_grep "--chat-template over config" '^chat: template plain \(--chat-template\)$' "$T/err"
printf '%s\n' "$M1" | "$LYRA" chat --model-config "$T/t_plain.json" >"$T/want" 2>/dev/null
check_eq "--chat-template over config reply" "$(cat "$T/out")" "$(cat "$T/want")"
# --chat-template auto: back to the model's (none: plain, with the warning)
printf '%s\n' "$M1" | "$LYRA" chat --model-config "$T/t_chatml.json" --chat-template auto >"$T/out" 2>"$T/err"
check_grep "--chat-template auto" 'no chat template.*plain User:/Assistant:' "$T/err"
check_eq "--chat-template auto reply" "$(cat "$T/out")" "$(cat "$T/want")"
# a value chat_template does not accept: the file and key named
printf '{"chat_template": "vicuna"}\n' >"$T/t_bad.json"
check_rc "config bad template" 2 "$LYRA" chat --model-config "$T/t_bad.json" -m "$S260"
check_grep "config bad template msg" '^lyra: error: .*t_bad.json: chat_template: expected auto, chatml, .*plain or none, got "vicuna"$' "$T/err"

# 10h. device and fallback keys reach chat: gpu_layers 3 on a simulated GPU
# (same reply, the map puts layers 0-2 on it); with every allocation on the
# GPU failing, enable_progressive_fallback false is exit 3 and the default
# falls back to the CPU
N=16
cfg "$T/dev.json" "\"system_prompt\": $(jstr "$SYS")" "\"pipeline_kwargs\": {\"max_new_tokens\": $N, \"do_sample\": false}" \
    '"gpu_layers": 3'
printf '%s\n' "$M1" "$M2" | LYRA_SIM_GPUS=1GiB "$LYRA" chat --model-config "$T/dev.json" >"$T/out" 2>"$T/err"
check_eq "gpu_layers rc" "$?" 0
if cmp -s "$T/out" "$T/want_cfg"; then ok; else bad "gpu_layers: got [$(cat "$T/out")]"; fi
check_grep "gpu_layers map" '^map: 0 \(gpu\) model.embed_tokens model.layers.0-2 ' "$T/err"
cfg "$T/nofb.json" '"gpu_layers": "all"' '"enable_progressive_fallback": false'
printf '%s\n' "$M1" | LYRA_SIM_GPUS=1GiB LYRA_FAIL_ALLOC=0:1+ "$LYRA" chat --model-config "$T/nofb.json" >"$T/out" 2>"$T/err"
check_eq "no fallback rc" "$?" 3
printf '%s\n' "$M1" | LYRA_SIM_GPUS=1GiB LYRA_FAIL_ALLOC=0:1+ "$LYRA" chat --model-config "$T/nofb.json" --fallback \
    --greedy -n $N --system-prompt "$SYS" >"$T/out" 2>"$T/err"
check_eq "--fallback over the config rc" "$?" 0
check_grep "--fallback over the config" '^load: 0 GPU layers, 5 CPU layers' "$T/err"
check_eq "--fallback over the config reply" "$(cat "$T/out")" "$(sed -n 1p "$T/want_cfg")"

finish
