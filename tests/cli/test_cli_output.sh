# test_cli_output.sh: what reaches the terminal. (1) Generated text on
# stdout is valid UTF-8 even when the model samples byte tokens that do not
# form characters (a random-weight model at a high temperature; lyra_detok
# puts U+FFFD there, tests/unit/test_utf8.c checks where). (2) Ctrl-C in a
# piped `lyra chat`: two SIGINTs in quick succession during a long reply end
# the chat with 130, and so does one SIGINT while it waits for input (stdin
# a FIFO kept open, no line sent). (3) On a terminal (a pty as stdin) the
# `chat: prompt` and map lines are not shown unless -v, and Ctrl-C at the
# empty prompt exits 130 without an error line. Every wait is bounded.
source "$(dirname "$0")/lib.sh"

case "$LYRA" in */*) LYRA="$(cd "$(dirname "$LYRA")" && pwd)/$(basename "$LYRA")" ;; esac
unset LYRA_MODEL_CONFIG LYRA_SIM_GPUS LYRA_FAIL_ALLOC
export HOME="$T/home" XDG_CONFIG_HOME="$T/xdg"
mkdir -p "$HOME" "$XDG_CONFIG_HOME"
cd "$T" || exit 1
"$LYRA" -q mkmodel -o "$T/rand.gguf" || { bad "mkmodel"; finish; exit; }

# valid_utf8 FILE: exit 0 when FILE is valid UTF-8
valid_utf8() { python3 -c 'import sys; open(sys.argv[1], "rb").read().decode("utf-8")' "$1" 2>/dev/null; }

# 1. valid UTF-8 on stdout, whatever the sampled bytes
for seed in 1 2 3; do
    check_rc "generate seed $seed" 0 timeout 60 "$LYRA" -q generate -m "$T/rand.gguf" -p Hi -n 300 --temp 1.5 \
        --seed "$seed" --threads 1
    valid_utf8 "$T/out" && ok || bad "generate seed $seed: stdout is not valid UTF-8"
done
printf 'Hello\n' | timeout 60 "$LYRA" -q chat -m "$T/rand.gguf" -n 300 --temp 1.5 --seed 1 --threads 1 \
    >"$T/out" 2>"$T/err"
check_eq "chat rc" "$?" 0
valid_utf8 "$T/out" && ok || bad "chat: stdout is not valid UTF-8"

# wait_for FILE PATTERN: up to 20 s for PATTERN in FILE
wait_for() {
    for _ in $(seq 400); do grep -qE -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    return 1
}
# wait_pid PID SECONDS: its exit code, or 124 (and killed) after SECONDS
wait_pid() {
    local pid="$1" i
    for ((i = 0; i < $2 * 20; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid"; return; }
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 124
}

# 2a. two SIGINTs in quick succession during a long reply: exit 130 (more
# lines wait, so the chat would go on to the next turn after the first)
mkfifo "$T/in"
"$LYRA" chat -m "$T/rand.gguf" --temp 0 -n 100000 --threads 1 <"$T/in" >"$T/out" 2>"$T/err" &
pid=$!
exec 7>"$T/in"
printf 'Hello there\nSecond\nThird\nFourth\n' >&7
wait_for "$T/out" . || bad "chat: no reply streamed"
kill -INT "$pid"
sleep 0.2
kill -INT "$pid"
wait_pid "$pid" 20
check_eq "two SIGINTs: exit 130" "$?" 130
exec 7>&-
check_eq "two SIGINTs: one error line" "$(grep -c '^lyra: error: chat: interrupted$' "$T/err")" 1

# 2b. one SIGINT while the chat waits for input (no line sent): exit 130
rm -f "$T/in"
mkfifo "$T/in"
exec 7<>"$T/in"
"$LYRA" chat -m "$T/rand.gguf" --temp 0 -n 10 --threads 1 <"$T/in" >"$T/out" 2>"$T/err" &
pid=$!
wait_for "$T/err" '^chat: ' || bad "chat: did not start"
sleep 0.5
kill -INT "$pid"
wait_pid "$pid" 20
check_eq "SIGINT while waiting for input: exit 130" "$?" 130
exec 7>&-
check_eq "SIGINT while waiting: nothing on stdout" "$(wc -c <"$T/out")" 0

# 2c. one SIGINT during a reply only stops it; the chat goes on (exit 0 at EOF)
rm -f "$T/in"
mkfifo "$T/in"
"$LYRA" chat -m "$T/rand.gguf" --temp 0 -n 100000 --threads 1 <"$T/in" >"$T/out" 2>"$T/err" &
pid=$!
exec 7>"$T/in"
echo "Hello there" >&7
wait_for "$T/out" . || bad "chat: no reply streamed"
kill -INT "$pid"
wait_for "$T/err" 'reply stopped' || bad "chat: the reply was not stopped"
sleep 1.2
exec 7>&-
wait_pid "$pid" 20
check_eq "one SIGINT: the chat goes on, exit 0 at EOF" "$?" 0

# 3. a terminal: python's pty as stdin, stderr to a file
if python3 -c 'import pty' 2>/dev/null; then
    # pty_chat ERRFILE ARGS...: chat with a pty as stdin; sends one line, waits
    # for the reply to end (its line ended on stdout, ERRFILE.out), then
    # Ctrl-C at the empty prompt; prints the exit code
    pty_chat() {
        local errf="$1"
        shift
        timeout 250 python3 - "$errf" "$LYRA" "$@" <<'EOF'
import os, pty, signal, sys, time
errf, argv = sys.argv[1], sys.argv[2:]
outf = errf + ".out"
pid, fd = pty.fork()
if pid == 0:
    e = os.open(errf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(e, 2)
    o = os.open(outf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(o, 1)
    os.execv(argv[0], argv)
def has(path, text, n=1):  # up to 60 s (a sanitizer build on a loaded machine)
    for _ in range(1200):
        try:
            if open(path).read().count(text) >= n:
                return
        except OSError:
            pass
        time.sleep(0.05)
    print(f"pty_chat: no {text!r} (x{n}) in {path} after 60 s", file=sys.stderr)
has(errf, "> ")  # the first prompt
os.write(fd, b"Hello\n")
has(outf, "\n")  # the reply's line ended
has(errf, "> ", 2)  # and the next prompt is out
time.sleep(0.3)
os.kill(pid, signal.SIGINT)
for _ in range(1200):
    r, st = os.waitpid(pid, os.WNOHANG)
    if r:
        print(os.waitstatus_to_exitcode(st))
        sys.exit(0)
    time.sleep(0.05)
os.kill(pid, signal.SIGKILL)
print("timeout")
EOF
    }
    rc=$(pty_chat "$T/err" chat -m "$T/rand.gguf" --temp 0 -n 8 --threads 1)
    check_eq "terminal: Ctrl-C at the prompt exits 130" "$rc" 130
    check_eq "terminal: no error line" "$(grep -c '^lyra: error' "$T/err")" 0
    check_eq "terminal: no prompt line" "$(grep -c 'chat: prompt' "$T/err")" 0
    check_eq "terminal: no map line" "$(grep -c '^map:' "$T/err")" 0
    check_grep "terminal: the banner" '^lyra chat: ' "$T/err"
    rc=$(pty_chat "$T/err" -v chat -m "$T/rand.gguf" --temp 0 -n 8 --threads 1)
    check_eq "terminal -v: exit 130" "$rc" 130
    check_grep "terminal -v: the prompt line" 'chat: prompt [0-9]+ tokens' "$T/err"
    check_grep "terminal -v: the map line" '^map:' "$T/err"
else
    echo "NOTE: python3 without pty: the terminal checks are skipped"
fi
finish
