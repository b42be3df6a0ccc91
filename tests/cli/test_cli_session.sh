# test_cli_session.sh: `lyra chat --session` on stories260K (docs/cli.md,
# docs/sessions.md). A conversation of two turns in one run against the
# same two turns in two runs with the session saved between them: the
# second run's note says the session was resumed, its prompt evaluates only
# the new tokens (the same evaluated/reused counts as the uninterrupted
# run's second turn) and its reply is the uninterrupted run's second reply.
# Also: /save, /sessions, /system, /load, a PATH session, name validation,
# another model (an error naming it, exit 2) and --rebuild from the
# transcript, a damaged file, --rebuild without --session.
source "$(dirname "$0")/lib.sh"

shared_path S260 models/stories260K.gguf
S260="$(cd "$(dirname "$S260")" && pwd)/$(basename "$S260")"
case "$LYRA" in */*) LYRA="$(cd "$(dirname "$LYRA")" && pwd)/$(basename "$LYRA")" ;; esac
W="$T/work"
mkdir -p "$W" "$T/home" "$T/xdg" "$T/state"
export HOME="$T/home" XDG_CONFIG_HOME="$T/xdg" XDG_STATE_HOME="$T/state"
unset LYRA_MODEL_CONFIG LYRA_SIM_GPUS LYRA_FAIL_ALLOC LYRA_FAIL_IO
cd "$W" || exit 1
DIR="$T/state/lyra/sessions"
chat() { "$LYRA" chat -m "$S260" --no-config --seed 5 -n 20 "$@"; }

# 1. uninterrupted: two turns in one run
printf 'Hello there\nTell me more\n' | chat >"$T/full.out" 2>"$T/full.err"
check_eq "full rc" "$?" 0
want_reply2=$(awk 'BEGIN{RS=""} NR==2' "$T/full.out")
want_prompt2=$(grep -E '^chat: prompt' "$T/full.err" | sed -n 2p)

# 2. the same in two runs with a session
printf 'Hello there\n' | chat --session s1 >"$T/a.out" 2>"$T/a.err"
check_eq "first run rc" "$?" 0
check_grep "new session note" '^chat: new session s1 ' "$T/a.err"
check_grep "saved note" '^chat: session s1 saved: 1 turn, [0-9]+ tokens' "$T/a.err"
[ -f "$DIR/s1.lyrasession" ] && [ -f "$DIR/s1.json" ] && ok || bad "session files missing in $DIR"
ls "$DIR" | grep -q tmp && bad "a temporary file was left" || ok
ntok=$(sed -nE 's/^chat: session s1 saved: 1 turn, ([0-9]+) tokens.*/\1/p' "$T/a.err")
printf 'Tell me more\n' | chat --session s1 >"$T/b.out" 2>"$T/b.err"
check_eq "second run rc" "$?" 0
check_grep "resumed note" "^chat: session s1 resumed: 1 turn, $ntok tokens, not evaluated again" "$T/b.err"
check_eq "resumed prompt counts" "$(grep -E '^chat: prompt' "$T/b.err")" "$want_prompt2"
grep -qE "reused from the cache" "$T/b.err" && [ "$(sed -nE 's/^chat: prompt .* ([0-9]+) reused.*/\1/p' "$T/b.err")" = "$ntok" ] \
    && ok || bad "the resumed prompt did not reuse the $ntok session tokens: $(grep '^chat: prompt' "$T/b.err")"
check_eq "reply after resume" "$(awk 'BEGIN{RS=""} NR==1' "$T/b.out")" "$want_reply2"
check_grep "transcript" '"role": "assistant"' "$DIR/s1.json"
[ "$(grep -c '"role": "user"' "$DIR/s1.json")" = 2 ] && ok || bad "the transcript should hold 2 user messages"

# 3. commands: /save, /sessions, /system, /load
printf '/save\n/sessions\n/system You are brief.\nHi\n/exit\n' | chat --session s2 >"$T/c.out" 2>"$T/c.err"
check_eq "commands rc" "$?" 0
check_grep "/save" '^chat: session s2 saved: 0 turns' "$T/c.err"
check_grep "/sessions lists s1" '^  s1 +2 turns ' "$T/c.err"
check_grep "/system" '^chat: system prompt set' "$T/c.err"
check_grep "system kept" '"system": "You are brief."' "$DIR/s2.json"
printf '/load s1\nMore\n' | chat --session s2 >"$T/d.out" 2>"$T/d.err"
check_eq "/load rc" "$?" 0
check_grep "/load resumes s1" '^chat: session s1 resumed: 2 turns' "$T/d.err"
check_grep "s1 saved at the end" '^chat: session s1 saved: 3 turns' "$T/d.err"

# 4. a PATH session
printf 'Hello\n' | chat --session "$T/p/x.lyrasession" >"$T/e.out" 2>"$T/e.err"
check_eq "path: missing directory is an error" "$?" 1
mkdir -p "$T/p"
printf 'Hello\n' | chat --session "$T/p/x.lyrasession" >"$T/e.out" 2>"$T/e.err"
check_eq "path rc" "$?" 0
[ -f "$T/p/x.lyrasession" ] && [ -f "$T/p/x.json" ] && ok || bad "path session files missing"

# 5. names
for n in .hidden 'a b' 'x*y' '' "$(printf 'n%.0s' $(seq 65))"; do
    check_rc "bad name [$n]" 2 chat --session "$n" </dev/null
    check_grep "bad name message [$n]" 'is not a session name' "$T/err"
done
check_rc "--rebuild without --session" 2 chat --rebuild </dev/null
check_grep "--rebuild message" 'needs --session' "$T/err"

# 6. another model: an error (exit 2) naming it; --rebuild from the transcript
"$LYRA" -q mkmodel -o "$T/other.gguf" --preset tiny --dim 64 --layers 2 --seed 4 --threads 1 >/dev/null 2>&1 \
    || bad "mkmodel failed"
cp "$DIR/s1.lyrasession" "$DIR/s3.lyrasession"
cp "$DIR/s1.json" "$DIR/s3.json"
printf 'Again\n' | "$LYRA" chat -m "$T/other.gguf" --no-config --seed 5 -n 4 --session s3 >"$T/f.out" 2>"$T/f.err"
check_eq "another model rc" "$?" 2
check_grep "another model message" 'saved for another model.*--rebuild' "$T/f.err"
printf 'Again\n' | "$LYRA" chat -m "$T/other.gguf" --no-config --seed 5 -n 4 --session s3 --rebuild \
    >"$T/g.out" 2>"$T/g.err"
check_eq "rebuild rc" "$?" 0
check_grep "rebuilt note" '^chat: session s3 rebuilt from its transcript: 3 turns' "$T/g.err"
check_grep "rebuilt: evaluated again" '^chat: prompt [0-9]+ tokens: [0-9]+ evaluated, 0 reused' "$T/g.err"
check_grep "rebuilt session saved" '^chat: session s3 saved: 4 turns' "$T/g.err"

# 7. a damaged file: exit 2, the file named
printf 'garbage' >"$DIR/s4.lyrasession"
check_rc "damaged file" 2 chat --session s4 </dev/null
check_grep "damaged message" 's4.lyrasession: not a lyra session file' "$T/err"
cp "$DIR/s1.lyrasession" "$DIR/s5.lyrasession"
head -c 1000 "$DIR/s1.lyrasession" >"$DIR/s5.lyrasession"
check_rc "truncated file" 2 chat --session s5 </dev/null
check_grep "truncated message" 's5.lyrasession: truncated' "$T/err"

finish
