#!/usr/bin/env bash
# gpu-prep.sh: run HERE (a machine with network) before scripts/gpu-check.sh
# runs on a lent GPU machine, which has no network. It fills two git-ignored
# folders that the device tool carries along:
#   .deps/      Debian .deb files of lyra's libraries (jansson, PCRE2, utf8proc) and the
#               gguf Python wheel, unpacked there only if missing
#   .gpu-data/  the test models and golden texts from ../shared
# Carry both: run(carry=[".deps", ".gpu-data"], command="scripts/gpu-check.sh").
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${LYRA_SHARED_DIR:-../shared}"
mkdir -p .deps .gpu-data/models/golden
(cd .deps && apt-get download libjansson-dev libjansson4 libpcre2-dev libpcre2-8-0 \
     libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libutf8proc-dev libutf8proc2 >/dev/null)
python3 -m pip download -q --no-deps --only-binary=:all: -d .deps gguf >/dev/null
cp "$SHARED"/models/stories260K.gguf "$SHARED"/models/babyllama105.gguf .gpu-data/models/
cp -r "$SHARED"/models/golden/. .gpu-data/models/golden/
cp -r "$SHARED"/models/vocab .gpu-data/models/
du -sh .deps .gpu-data
