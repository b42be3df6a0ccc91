#!/usr/bin/env bash
# test.sh: the README's second command. Builds lyra and runs the whole test
# suite: gcc Release build + ctest (with the CUDA device when nvcc is on
# PATH; its GPU tests skip without a GPU) + examples/ built against the
# installed library (scripts/example-check.sh), clang build with -Werror (warnings gate),
# an AddressSanitizer+UndefinedBehaviorSanitizer build + ctest, short
# bounded libFuzzer runs of every fuzz target, the Python package (its
# wheel built in a fresh venv, installed in another one and tested there with
# pytest, langchain-core and discord-py, nothing but that venv on PATH;
# docs/python.md; the Discord bot's tests run against a local double,
# docs/discord.md),
# and `lyra serve` against the
# real openai / langchain-openai clients, a load test and headless Chromium
# (tests/serve/, its own venv .venv-serve). Python reference tools (numpy,
# gguf) go in .venv. Each stage prints its time. Build directories:
# build-gcc, build-clang, build-asan, build-fuzz (build/ is scripts/install.sh's
# and is left alone).
#   scripts/test.sh           everything (what CI runs, through .ci/run)
#   scripts/test.sh --fast    the edit-test loop (under 2 minutes): deps, the
#                             gcc build and `ctest -L fast` (the tests
#                             labelled slow, over ~5 s, are left out; no
#                             example check, clang, sanitizer or fuzz stages)
#   LYRA_SHARED_DIR     test models (default ../shared), read at ctest time
#   LYRA_REQUIRE_SHARED=1  fail instead of skipping when they are missing
#   LYRA_FUZZ_SECONDS   seconds per fuzz target (default 30)
#   LYRA_TEST_STAGES    subset, e.g. "gcc asan python" (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FAST=0
case "${1:-}" in
    --fast) FAST=1 ;;
    "") ;;
    *) echo "usage: scripts/test.sh [--fast]" >&2; exit 2 ;;
esac
if [ "$FAST" = 1 ]; then
    STAGES="${LYRA_TEST_STAGES:-deps gcc}"
    CTEST_LABEL=(-L fast)
else
    STAGES="${LYRA_TEST_STAGES:-deps gcc python clang asan fuzz serve}"
    CTEST_LABEL=()
fi
JOBS=$(nproc)
T0=$(date +%s)
stage() { echo; echo "=== $1 ==="; STAGE_T=$(date +%s); }
stage_end() { echo "=== $1 took $(( $(date +%s) - STAGE_T ))s ==="; }
want() { case " $STAGES " in *" $1 "*) return 0;; *) return 1;; esac; }

if want deps; then
    stage deps
    scripts/deps.sh
    if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import numpy, gguf, regex, tokenizers' 2>/dev/null; then
        python3 -m venv .venv
        .venv/bin/pip install -q numpy gguf regex tokenizers
    fi
    stage_end deps
fi
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY=python3

run_ctest() { # build dir
    (cd "$1" && ctest --output-on-failure -j"$JOBS" --timeout 900 ${CTEST_LABEL[@]+"${CTEST_LABEL[@]}"})
}

if want gcc; then
    stage "gcc build + tests"
    # the CUDA device is built here when nvcc is on PATH (one architecture,
    # sm_90 + PTX, to keep it fast); without a GPU its GPU tests report skipped
    if command -v nvcc >/dev/null 2>&1; then
        CUDA_FLAGS=(-DLYRA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90)
        echo "CUDA build: $(nvcc --version | tail -1), sm_90"
    else
        CUDA_FLAGS=(-DLYRA_CUDA=OFF)
        echo "CUDA build skipped: no nvcc"
    fi
    cmake -S . -B build-gcc -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=gcc -DLYRA_PYTHON="$PY" \
          "${CUDA_FLAGS[@]}" -DCMAKE_C_FLAGS="-Werror" >/dev/null
    cmake --build build-gcc -j"$JOBS"
    run_ctest build-gcc
    # the C API as a user builds against it: installed, pkg-config, shared and static
    if [ "$FAST" = 0 ]; then
        ex_rc=0
        scripts/example-check.sh build-gcc || ex_rc=$?
        if [ "$ex_rc" = 77 ] && [ "${LYRA_REQUIRE_SHARED:-0}" != 1 ]; then
            echo "example check skipped (no test model)"
        elif [ "$ex_rc" != 0 ]; then
            echo "example check failed" >&2
            exit 1
        fi
    fi
    stage_end "gcc build + tests"
fi

if want python; then
    stage "python package (wheel + pytest)"
    # a fresh venv builds the wheel (scikit-build-core from PyPI, liblyra and
    # the lyra command compiled from this checkout; CUDA off to keep it short),
    # another installs it with pytest and langchain-core and runs
    # python/tests from outside the checkout, with only that venv on PATH (no
    # compiler, no cmake: the wheel needs no build tools at import)
    PYW=$(mktemp -d)
    trap 'rm -rf "$PYW"' EXIT
    python3 -m venv "$PYW/build"
    CMAKE_ARGS="-DLYRA_CUDA=OFF" "$PYW/build/bin/pip" wheel -q ./python -w "$PYW/dist"
    python3 -m venv "$PYW/run"
    "$PYW/run/bin/pip" install -q "$PYW"/dist/lyra_llm-*.whl pytest langchain-core discord-py
    (cd "$PYW" && env -i HOME="$HOME" PATH="$PYW/run/bin" \
        ${LYRA_SHARED_DIR:+LYRA_SHARED_DIR="$LYRA_SHARED_DIR"} \
        ${LYRA_REQUIRE_SHARED:+LYRA_REQUIRE_SHARED="$LYRA_REQUIRE_SHARED"} \
        "$PYW/run/bin/python" -c 'import shutil, sys; t = [x for x in ("cc", "gcc", "cmake") if shutil.which(x)]; sys.exit("build tools on PATH: %s" % t if t else 0)' &&
     env -i HOME="$HOME" PATH="$PYW/run/bin" \
        ${LYRA_SHARED_DIR:+LYRA_SHARED_DIR="$LYRA_SHARED_DIR"} \
        ${LYRA_REQUIRE_SHARED:+LYRA_REQUIRE_SHARED="$LYRA_REQUIRE_SHARED"} \
        "$PYW/run/bin/python" -m pytest -q -p no:cacheprovider "$ROOT/python/tests")
    rm -rf "$PYW"
    trap - EXIT
    stage_end "python package"
fi

if want clang; then
    stage "clang build (-Wall -Wextra -Werror) + tests"
    cmake -S . -B build-clang -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang -DLYRA_PYTHON="$PY" \
          -DLYRA_CUDA=OFF \
          -DCMAKE_C_FLAGS="-Werror" >/dev/null
    cmake --build build-clang -j"$JOBS"
    run_ctest build-clang
    stage_end "clang build + tests"
fi

if want asan; then
    stage "ASan+UBSan build + tests"
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DLYRA_SANITIZE=ON -DLYRA_CUDA=OFF \
          -DLYRA_PYTHON="$PY" >/dev/null
    cmake --build build-asan -j"$JOBS"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        run_ctest build-asan
    stage_end "ASan+UBSan build + tests"
fi

if want fuzz; then
    stage "fuzz (bounded)"
    cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DLYRA_FUZZ=ON -DLYRA_CUDA=OFF \
          -DLYRA_TESTS=OFF >/dev/null
    cmake --build build-fuzz -j"$JOBS"
    secs="${LYRA_FUZZ_SECONDS:-30}"
    export LYRA_SHARED_DIR="${LYRA_SHARED_DIR:-$ROOT/../shared}"
    nf=0
    for f in build-fuzz/fuzz/fuzz_*; do
        [ -x "$f" ] || continue
        name=$(basename "$f"); corpus="fuzz/corpus/${name#fuzz_}"
        work=$(mktemp -d); cp -r "$corpus"/. "$work"/ 2>/dev/null || true
        echo "fuzzing $name for ${secs}s"
        "$f" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$work" 2>&1 | tail -n 3
        rm -rf "$work"
        nf=$((nf+1))
    done
    echo "$nf fuzz targets ran without findings"
    stage_end "fuzz (bounded)"
fi
if want serve; then
    stage "serve (openai, langchain-openai, load, browser)"
    # the server's pytest suite against the gcc build's lyra (built here when
    # the gcc stage did not run); selenium drives Debian's chromium when
    # present (scripts/deps.sh installs it), else that test skips
    if [ ! -x build-gcc/lyra ]; then
        cmake -S . -B build-gcc -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=gcc -DLYRA_CUDA=OFF \
              -DLYRA_PYTHON="$PY" -DCMAKE_C_FLAGS="-Werror" >/dev/null
        cmake --build build-gcc -j"$JOBS" --target lyra_cli
    fi
    if [ ! -x .venv-serve/bin/python ] ||
       ! .venv-serve/bin/python -c 'import openai, langchain_openai, pytest, selenium' 2>/dev/null; then
        python3 -m venv .venv-serve
        .venv-serve/bin/pip install -q openai langchain-openai pytest selenium
    fi
    SERVE_SEL=()
    [ "$FAST" = 1 ] && SERVE_SEL=(-m "not slow")
    LYRA_BIN="$ROOT/build-gcc/lyra" LYRA_SHARED_DIR="${LYRA_SHARED_DIR:-$ROOT/../shared}" \
        LYRA_TEST_ARTIFACTS="$ROOT/build-gcc/test-artifacts" \
        .venv-serve/bin/python -m pytest -q -p no:cacheprovider tests/serve ${SERVE_SEL[@]+"${SERVE_SEL[@]}"}
    stage_end "serve (openai, langchain-openai, load, browser)"
fi
echo
echo "all stages passed ($STAGES$([ "$FAST" = 1 ] && echo ", ctest -L fast")) in $(( $(date +%s) - T0 ))s"
