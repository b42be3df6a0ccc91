#!/usr/bin/env bash
# gpu-prep.sh: run HERE (a machine with network) before scripts/gpu-check.sh
# runs on a lent GPU machine, which has no network. It fills two git-ignored
# folders that the device tool carries along:
#   .deps/      Debian .deb files of lyra's libraries (jansson, PCRE2,
#               utf8proc, libmicrohttpd and what it links: GnuTLS and its libraries),
#               pkg-config, and the gguf Python wheel; unpacked there only if
#               missing, and a library only used when the system lacks it
#   .gpu-data/  the test models and golden texts from ../shared
# Carry both: run(carry=[".deps", ".gpu-data"], command="scripts/gpu-check.sh").
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${LYRA_SHARED_DIR:-../shared}"
mkdir -p .deps .gpu-data/models/golden
(cd .deps && apt-get download libjansson-dev libjansson4 libpcre2-dev libpcre2-8-0 \
     libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libutf8proc-dev libutf8proc2 libmicrohttpd-dev libmicrohttpd12 \
     libgnutls30 libp11-kit0 libidn2-0 libunistring2 libtasn1-6 libnettle8 libhogweed6 \
     libgmp10 libffi8 pkgconf pkgconf-bin libpkgconf3 >/dev/null)
python3 -m pip download -q --no-deps --only-binary=:all: -d .deps gguf >/dev/null
cp "$SHARED"/models/*.gguf "$SHARED"/models/*.bin .gpu-data/models/ # the models, llama2.c files, tok512.bin
cp -r "$SHARED"/models/golden/. .gpu-data/models/golden/
cp -r "$SHARED"/models/vocab .gpu-data/models/
du -sh .deps .gpu-data
