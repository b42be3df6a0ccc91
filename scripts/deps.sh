#!/usr/bin/env bash
# deps.sh: install the Debian packages lyra needs to build and test
# (apt-get; uses sudo when not root; waits up to 5 minutes for the apt lock
# another apt holds). Idempotent and quiet when all present.
# libutf8proc-dev: tokenizer.json's NFC/NFKC normalizers (src/token).
# libmicrohttpd-dev: lyra serve's HTTP (docs/server.md); chromium and
# chromium-driver: the chat page's browser test (tests/serve/, serve stage).
# openmpi-bin, libopenmpi-dev: runs over MPI ranks (docs/distributed.md, tests/cli/test_cli_mpi.sh).
set -euo pipefail
PKGS="build-essential cmake pkg-config libjansson-dev libpcre2-dev libutf8proc-dev libmicrohttpd-dev openmpi-bin libopenmpi-dev clang libclang-rt-14-dev python3 python3-venv chromium chromium-driver"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
echo "installing:$missing" >&2
$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq $missing >/dev/null
