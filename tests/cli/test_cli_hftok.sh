# test_cli_hftok.sh: big tokenizer.json files against the `tokenizers`
# library (PyPI), made at test time (not committed): GPT-2 and Llama 2
# (SentencePiece BPE) from the llama.cpp vocab GGUFs in the shared models,
# and the real DeepSeek V3 tokenizer.json from the litellm wheel when
# scripts/get-hf-tokenizers.sh has fetched it. tests/reference/hf_tok_ref.py
# writes each family and the ids tokenizers gives for the corpus; the unit
# test binary test_hf_tokenizer compares lyra's ids (its own small families
# too). Skipped
# without a Python that has tokenizers and gguf, or without the vocab files.
source "$(dirname "$0")/lib.sh"
"$PY" -c 'import tokenizers, gguf' 2>/dev/null || skip "$PY lacks tokenizers/gguf (pip install tokenizers gguf)"
shared_path VOCAB models/vocab/ggml-vocab-gpt-2.gguf
BIN="${LYRA_TEST_BIN_DIR:-build/tests}/test_hf_tokenizer"
[ -x "$BIN" ] || skip "$BIN not built"
REF="$SRC/tests/reference/hf_tok_ref.py"
mkdir -p "$T/big"
"$PY" "$REF" vocab "$T/big" "$(dirname "$VOCAB")/.." || bad "hf_tok_ref.py vocab failed"
real=$("$SRC/scripts/get-hf-tokenizers.sh" --path-only 2>/dev/null || true)
if [ -n "$real" ] && [ -r "$real/deepseek_tokenizer.json" ]; then
    "$PY" "$REF" copy "$T/big" "$real/deepseek_tokenizer.json" || bad "copy failed"
else
    echo "NOTE: real tokenizer.json files not fetched (scripts/get-hf-tokenizers.sh): DeepSeek V3 not checked"
fi
for d in "$T"/big/*/; do
    "$PY" "$REF" expect "$d" "$SRC/tests/data/tokenizers/corpus.json" || bad "expect $d failed"
done
check_rc "families equal tokenizers' ids" 0 "$BIN" "$T/big"
cat "$T/err" | grep -E "equal|DIFFER"
check_grep "gpt-2 checked" "big/gpt-2: .* equal" "$T/err"
check_grep "llama-spm checked" "big/llama-spm: .* equal" "$T/err"

finish
