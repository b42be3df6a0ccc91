#!/usr/bin/env bash
# get-hf-tokenizers.sh: fetch real tokenizer.json files for the tokenizer
# tests and print the directory that holds them. They come from PyPI: the
# litellm wheel ships deepseek_tokenizer.json (DeepSeek V3, its license
# beside it) and anthropic_tokenizer.json; `pip download --no-deps` fetches
# the wheel into a cache outside the repository and the files are unzipped
# from it. Idempotent.
#   scripts/get-hf-tokenizers.sh              fetch if needed, print the dir
#   scripts/get-hf-tokenizers.sh --path-only  print the dir if the files are
#                                             there (exit 1 if not); never downloads
#   LYRA_HF_TOKENIZERS_DIR  the cache (default ${XDG_CACHE_HOME:-~/.cache}/lyra/hf-tokenizers)
#   PYTHON                  the Python whose pip downloads (python3)
set -euo pipefail
PKG="litellm==1.110.2"
DIR="${LYRA_HF_TOKENIZERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lyra/hf-tokenizers}"
PY="${PYTHON:-python3}"
STAMP="$DIR/.complete"
if [ -e "$STAMP" ]; then echo "$DIR"; exit 0; fi
[ "${1:-}" = --path-only ] && exit 1
mkdir -p "$DIR/wheel"
"$PY" -m pip download -q --no-deps "$PKG" -d "$DIR/wheel" >&2
whl=$(ls "$DIR"/wheel/litellm-*.whl | head -1)
"$PY" - "$whl" "$DIR" <<'PYEOF'
import sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for n in ("deepseek_tokenizer.json", "deepseek_tokenizer_LICENSE", "anthropic_tokenizer.json"):
        with open(f"{out}/{n}", "wb") as f:
            f.write(z.read(f"litellm/litellm_core_utils/tokenizers/{n}"))
PYEOF
rm -rf "$DIR/wheel"
touch "$STAMP"
echo "$DIR"
