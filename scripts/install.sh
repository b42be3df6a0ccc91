#!/usr/bin/env bash
# install.sh: the README's first command. Installs build dependencies, builds
# lyra into build/ (the command is build/lyra), writes a small random-weight
# model with `lyra mkmodel` and generates from it. Random weights give
# gibberish: this shows the path from weights to tokens works; see the README
# for running a real GGUF. build/ is this script's alone: scripts/test.sh
# builds in build-gcc, build-clang, build-asan and build-fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLYRA_CUDA=AUTO >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "built build/lyra: $(build/lyra --version | head -1)" >&2
[ -f build/default.gguf ] || build/lyra mkmodel -o build/default.gguf --preset tiny
build/lyra generate -m build/default.gguf -p "Hello" -n 32 --seed 1
