# test_cli_harden.sh: hardening found by an outside probe (issue 12):
#  - an OUT that exists and is not a regular file (a FIFO, a symlink) is
#    refused with exit 2 naming it, and stays as it was;
#  - output directories longer than 255 bytes work; a file name too long for
#    the temporary name beside it is a clear exit 2;
#  - SIGTERM / SIGINT while writing: exit 143 / 130, no OUT and no
#    OUT.tmp.* left; stale OUT.tmp.PID.XXXXXX of dead processes are removed;
#  - `config validate` on a FIFO fails at once; --temp 1e39 is exit 2;
#  - an all-empty-string vocabulary goes through mkmodel --vocab-from,
#    tokenize, generate, perplexity and quantize (UBSan-clean under the
#    sanitizer build); mkmodel --vocab-from refuses a tokenizer lyra would
#    not load, writing nothing.
source "$(dirname "$0")/lib.sh"
shared_path S260 models/stories260K.gguf

# --- special files at OUT ---
mkfifo "$T/fifo.gguf"
check_rc "quantize to a FIFO" 2 "$LYRA" quantize "$S260" "$T/fifo.gguf" Q8_0
check_grep "FIFO named" "fifo.gguf: exists and is not a regular file \(a FIFO\)" "$T/err"
[ -p "$T/fifo.gguf" ] && ok || bad "the FIFO was replaced"
check_rc "mkmodel to a FIFO" 2 "$LYRA" mkmodel -o "$T/fifo.gguf" --layers 1 -q
[ -p "$T/fifo.gguf" ] && ok || bad "mkmodel replaced the FIFO"
ln -s "$T/target.gguf" "$T/link.gguf"
check_rc "quantize to a symlink" 2 "$LYRA" quantize "$S260" "$T/link.gguf" Q8_0
check_grep "symlink named" "link.gguf: exists and is not a regular file \(a symbolic link\)" "$T/err"
[ -L "$T/link.gguf" ] && [ ! -e "$T/target.gguf" ] && ok || bad "the symlink was replaced or followed"
check_eq "nothing left beside" "$(ls "$T" | grep -c '\.tmp\.')" "0"

# --- long directories and names ---
long="$T/$(printf 'd%.0s' $(seq 200))/$(printf 'e%.0s' $(seq 200))"
mkdir -p "$long"
check_rc "quantize into a long directory" 0 "$LYRA" quantize "$S260" "$long/q.gguf" Q8_0
[ -s "$long/q.gguf" ] && ok || bad "no output in the long directory"
check_rc "mkmodel into a long directory" 0 "$LYRA" mkmodel -o "$long/m.gguf" --layers 1 -q
check_eq "only the outputs there" "$(ls "$long" | tr '\n' ' ')" "m.gguf q.gguf "
name="$(printf 'n%.0s' $(seq 240)).gguf"
check_rc "a name too long for the temporary name" 2 "$LYRA" quantize "$S260" "$T/$name" Q8_0
check_grep "too long named" "too long" "$T/err"

# --- signals while writing ---
# sig NAME SIGNAL WANT_RC: a slow mkmodel, signalled once it has started
sig() {
    local out="$T/sig_$1.gguf"
    "$LYRA" -v mkmodel -o "$out" --dim 1024 --ffn 4096 --layers 32 --type Q4_K -t 1 2>"$T/sig_err" &
    local pid=$! i
    for i in $(seq 600); do grep -q "mkmodel: \[" "$T/sig_err" 2>/dev/null && break; sleep 0.05; done
    kill -"$2" "$pid"
    wait "$pid"
    local rc=$?
    check_eq "$1: exit code" "$rc" "$3"
    [ ! -e "$out" ] && ok || bad "$1: output written"
    check_eq "$1: no temporary files" "$(ls "$T" | grep -c "sig_$1.gguf.tmp")" "0"
}
sig term TERM 143
sig int INT 130

# stale temporary files: a dead process's removed, another name's kept
sh -c 'exit 0' & dead=$!
wait $dead
touch "$T/st.gguf.tmp.$dead.abc123" "$T/st.gguf.tmp.$$.abc123" "$T/st.gguf.tmp.abc123"
check_rc "quantize beside stale temporary files" 0 "$LYRA" quantize "$S260" "$T/st.gguf" Q8_0
[ ! -e "$T/st.gguf.tmp.$dead.abc123" ] && ok || bad "a dead writer's temporary file was kept"
[ -e "$T/st.gguf.tmp.$$.abc123" ] && [ -e "$T/st.gguf.tmp.abc123" ] && ok || bad "a live or unknown temporary file was removed"

# --- config on a FIFO, --temp out of float range ---
check_rc "config validate on a FIFO" 2 timeout 20 "$LYRA" config validate "$T/fifo.gguf"
check_grep "not a regular file" "not a regular file" "$T/err"
check_rc "--temp 1e39" 2 "$LYRA" generate -m "$S260" --temp 1e39 -n 1 --no-config
check_grep "--temp named" "^lyra: error: --temp: " "$T/err"

# --- vocabularies ---
if "$PY" -c "import gguf" 2>/dev/null; then
    "$PY" - "$T" <<'EOF'
import sys, gguf
def vocab(path, model, tokens):
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model(model)
    w.add_token_list(tokens)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
vocab(sys.argv[1] + "/empty.gguf", "llama", [""] * 8)
vocab(sys.argv[1] + "/bert.gguf", "bert", ["a", "b"])
EOF
    check_rc "mkmodel --vocab-from an all-empty vocabulary" 0 "$LYRA" mkmodel -o "$T/e.gguf" --vocab-from "$T/empty.gguf" \
        --dim 64 --ffn 128 --layers 1 --heads 2 --kv-heads 1 -q
    check_rc "tokenize with it" 0 "$LYRA" tokenize -m "$T/e.gguf" "hello world"
    check_rc "generate with it" 0 "$LYRA" generate -m "$T/e.gguf" -p "hello" -n 4 --seed 1 --no-config -q
    printf 'hello world, once more.\n' >"$T/text.txt"
    "$LYRA" perplexity -m "$T/e.gguf" -f "$T/text.txt" --ctx 4 --no-config -q >"$T/out" 2>"$T/err"
    rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 2 ] && ok || bad "perplexity with it: exit $rc: $(head -c 300 "$T/err")"
    check_rc "quantize it" 0 "$LYRA" quantize "$T/e.gguf" "$T/eq.gguf" Q8_0
    check_rc "mkmodel --vocab-from an unsupported tokenizer" 2 "$LYRA" mkmodel -o "$T/b.gguf" --vocab-from "$T/bert.gguf" -q
    check_grep "tokenizer named" "bert.gguf: tokenizer.ggml.model: unsupported" "$T/err"
    [ ! -e "$T/b.gguf" ] && ok || bad "mkmodel wrote a file lyra refuses"
else
    echo "note: $PY has no gguf: vocabulary checks skipped"
fi
finish
