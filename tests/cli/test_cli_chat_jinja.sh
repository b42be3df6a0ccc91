# test_cli_chat_jinja.sh: `lyra chat` with chat templates rendered as Jinja
# (src/jinja/, docs/cli.md "Chat templates"): a template file given with
# --chat-template FILE or a config's chat_template; a model whose own
# tokenizer.chat_template is of no format lyra knows (Vicuna: rendered as
# Jinja, a reply ends at EOS); a model template that does not parse (a
# warning and the format it shows, or an error naming the line); a template
# that raises (Gemma 2 and a system prompt). Each reply must equal what
# `lyra generate --parse-special` prints for the prompt jinja2 renders
# (tests/data/chat_templates/expected/, stories260K's BOS/EOS are <s> </s>).
source "$(dirname "$0")/lib.sh"

shared_path S260 models/stories260K.gguf
S260="$(cd "$(dirname "$S260")" && pwd)/$(basename "$S260")"
case "$LYRA" in */*) LYRA="$(cd "$(dirname "$LYRA")" && pwd)/$(basename "$LYRA")" ;; esac
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac
SRC="$(cd "$SRC" && pwd)"
D="$SRC/tests/data/chat_templates"
mkdir -p "$T/home" "$T/xdg" "$T/work"
export HOME="$T/home" XDG_CONFIG_HOME="$T/xdg"
unset LYRA_MODEL_CONFIG LYRA_SIM_GPUS LYRA_FAIL_ALLOC
cd "$T/work" || exit 1
N=24

trim() {
    local s="$1"
    s="${s#"${s%%[![:space:]]*}"}"
    s="${s%"${s##*[![:space:]]}"}"
    printf '%s' "$s"
}
# gen MODEL PROMPT: generate's reply to PROMPT (without a leading <s>: generate adds BOS), trimmed
gen() {
    local p="${2#<s>}" g
    g="$("$LYRA" -q generate -m "$1" --temp 0 -n $N --parse-special -p "$p"; echo x)"
    g="${g%x}"
    trim "${g%$'\n'}"
}
expected() { cat "$D/expected/$1.txt"; echo x; }

# 1. --chat-template FILE (zephyr, one turn)
want="$(p="$(expected zephyr-7b-beta.one_turn)"; gen "$S260" "${p%x}")"
printf 'Hello!\n' | "$LYRA" chat -m "$S260" --temp 0 -n $N --chat-template "$D/zephyr-7b-beta.jinja" >"$T/out" 2>"$T/err"
check_eq "file template rc" "$?" 0
check_grep "file template named" "^chat: template $D/zephyr-7b-beta.jinja \(Jinja; --chat-template\)$" "$T/err"
check_eq "file template reply" "$(cat "$T/out")" "$want"
# the same from a config file's chat_template (a relative path ending in .jinja)
cp "$D/zephyr-7b-beta.jinja" zephyr.jinja
printf '{"model_id": "%s", "chat_template": "zephyr.jinja", "pipeline_kwargs": {"max_new_tokens": %d, "do_sample": false}}\n' \
    "$S260" "$N" >cfg.json
printf 'Hello!\n' | "$LYRA" chat --model-config cfg.json >"$T/out" 2>"$T/err"
check_eq "config file template rc" "$?" 0
check_grep "config file template named" "^chat: template zephyr.jinja \(Jinja; chat_template in .*cfg.json\)$" "$T/err"
check_eq "config file template reply" "$(cat "$T/out")" "$want"
# errors: a missing file, a template that does not parse (its line named)
check_rc "missing file" 2 "$LYRA" chat -m "$S260" --chat-template ./nope.jinja </dev/null
check_grep "missing file msg" "^lyra: error: \./nope\.jinja: cannot read the chat template" "$T/err"
printf 'line one\n{%% for m in messages %%}\n{{ m | wordwrap }}\n{%% endfor %%}\n' >bad.jinja
check_rc "bad file" 2 "$LYRA" chat -m "$S260" --chat-template bad.jinja </dev/null
check_grep "bad file msg" "^lyra: error: bad\.jinja:3: unknown or unsupported filter 'wordwrap'$" "$T/err"
check_rc "bad name" 2 "$LYRA" chat -m "$S260" --chat-template vicuna </dev/null
check_grep "bad name msg" "unknown template 'vicuna' \(expected chatml, .* or a Jinja template file" "$T/err"

# 2. templates inside the model (gguf-py's gguf_new_metadata writes them)
if "$PY" -c 'import gguf.scripts.gguf_new_metadata' 2>/dev/null; then
    model_with() { # TEMPLATE-FILE OUT
        "$PY" -m gguf.scripts.gguf_new_metadata --force --chat-template-file "$1" "$S260" "$2" >/dev/null 2>&1
    }
    # Vicuna: no format lyra knows; rendered as Jinja, a reply ends at EOS
    model_with "$D/vicuna-v1.1.jinja" "$T/vicuna.gguf"
    want="$(p="$(expected vicuna-v1.1.one_turn)"; gen "$T/vicuna.gguf" "${p%x}")"
    printf 'Hello!\n' | "$LYRA" chat -m "$T/vicuna.gguf" --temp 0 -n $N >"$T/out" 2>"$T/err"
    check_eq "vicuna rc" "$?" 0
    check_grep "vicuna template" "^chat: template jinja \(from the model's tokenizer.chat_template\)$" "$T/err"
    check_grep "vicuna note" "rendered as Jinja; a reply ends at the end-of-sequence token" "$T/err"
    check_eq "vicuna reply" "$(cat "$T/out")" "$want"
    # Gemma 2 refuses a system prompt (raise_exception): an error naming the line
    model_with "$D/gemma2-9b-it.jinja" "$T/gemma2.gguf"
    check_rc "gemma2 system" 2 "$LYRA" chat -m "$T/gemma2.gguf" -n 4 --system-prompt "Be brief." <<<"Hello"
    check_grep "gemma2 system msg" "^lyra: error: tokenizer.chat_template:1: System role not supported$" "$T/err"
    # a model template that does not parse: the format it shows instead, with a warning ...
    printf '{%% include "x" %%}{{ "<|im_start|>" }}\n' >broken_chatml.jinja
    model_with broken_chatml.jinja "$T/broken.gguf"
    printf 'Hello!\n' | "$LYRA" chat -m "$T/broken.gguf" --temp 0 -n $N >"$T/out" 2>"$T/err"
    check_eq "broken known rc" "$?" 0
    check_grep "broken known warning" "tokenizer.chat_template:1: the 'include' statement is not supported; using lyra's chatml format instead" "$T/err"
    # ... or, showing none, an error
    printf 'a\n{%% if x %%}\n' >broken.jinja
    model_with broken.jinja "$T/broken2.gguf"
    check_rc "broken unknown" 2 "$LYRA" chat -m "$T/broken2.gguf" -n 4 <<<"Hello"
    check_grep "broken unknown msg" "^lyra: error: tokenizer.chat_template:2: unexpected end of template" "$T/err"
    # --chat-template NAME wins over the model's
    printf 'Hello!\n' | "$LYRA" chat -m "$T/broken2.gguf" --temp 0 -n $N --chat-template plain >"$T/out" 2>"$T/err"
    check_eq "override rc" "$?" 0
else
    echo "note: gguf-py not importable by $PY: model-embedded template checks skipped"
fi

# 3. the renderings of the snippets and templates committed for test_jinja.c
#    are current (when a Python with jinja2 is at hand)
for py in "$PY" python3; do
    if "$py" -c 'import jinja2' 2>/dev/null; then
        "$py" "$SRC/tests/reference/render_jinja.py" --check "$SRC/tests/data/jinja" >"$T/out" 2>&1
        check_eq "render_jinja.py --check: $(cat "$T/out")" "$?" 0
        break
    fi
done
finish
