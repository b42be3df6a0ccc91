#!/usr/bin/env bash
# example-check.sh: build examples/pipeline.c against an installed lyra the
# way a user would (pkg-config, shared and static), run it on stories260K and
# check that its text equals `lyra generate ... --temp 0`; then the same for
# examples/device_map.c (typed device map: embedding + layers 0-1 on a
# simulated GPU 0, the rest on the CPU; LYRA_SIM_GPUS set here).
#
#   scripts/example-check.sh [BUILD_DIR]     (default: build)
#
# The library is installed into a temporary prefix (cmake --install); the
# model is $LYRA_SHARED_DIR/models/stories260K.gguf (default ../shared).
# No config file is read (LYRA_MODEL_CONFIG=none) by either side.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
SHARED=${LYRA_SHARED_DIR:-$ROOT/../shared}
MODEL=$SHARED/models/stories260K.gguf
PROMPT="Once upon a time"
N=48
CC=${CC:-cc}
export LYRA_MODEL_CONFIG=none

fail() { echo "example-check: FAIL: $*" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "example-check: skipped: $MODEL not found" >&2; exit 77; }
command -v pkg-config >/dev/null || fail "pkg-config not found"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cmake --build "$BUILD" --target lyra lyra_static lyra_cli -j2 >/dev/null
# examples/README.md's steps, as written there: install, PKG_CONFIG_PATH,
# plain pkg-config (lyra.pc finds its prefix from its own place)
PREFIX=$TMP/prefix
cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null
PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
[ -d "$PKG_CONFIG_PATH" ] || PKG_CONFIG_PATH=$PREFIX/lib64/pkgconfig
[ -f "$PKG_CONFIG_PATH/lyra.pc" ] || fail "lyra.pc is not installed in $PREFIX/lib/pkgconfig"
export PKG_CONFIG_PATH
LIBDIR=$(pkg-config --variable=libdir lyra)
if [ ! -f "$LIBDIR/liblyra.so" ] || [ ! -f "$LIBDIR/liblyra.a" ]; then fail "no liblyra.so / liblyra.a in $LIBDIR"; fi

want=$("$BUILD/lyra" generate -m "$MODEL" -p "$PROMPT" -n "$N" --temp 0 2>/dev/null) \
    || fail "lyra generate failed"
[ -n "$want" ] || fail "lyra generate printed nothing"

# shared: the documented build line
# shellcheck disable=SC2046
"$CC" -Wall -Wextra "$ROOT/examples/pipeline.c" $(pkg-config --cflags --libs lyra) -o "$TMP/pipeline-shared" \
    || fail "building the example against liblyra.so"
LD_LIBRARY_PATH=$LIBDIR ldd "$TMP/pipeline-shared" | grep "$LIBDIR/liblyra.so" >/dev/null \
    || fail "the shared example does not use $LIBDIR/liblyra.so"
got=$(cd "$TMP" && LD_LIBRARY_PATH=$LIBDIR "$TMP/pipeline-shared" "$MODEL" "$PROMPT" "$N" 2>"$TMP/shared.err") \
    || { cat "$TMP/shared.err" >&2; fail "the shared example failed"; }
[ "$got" = "$want" ] || fail "shared example text differs:
  example: $got
  lyra:    $want"
grep -q '^device map: {"model.embed_tokens":' "$TMP/shared.err" || fail "no device map line: $(cat "$TMP/shared.err")"
grep -q '^fallback steps: 0' "$TMP/shared.err" || fail "no fallback line: $(cat "$TMP/shared.err")"
echo "example-check: shared: ok ($N tokens, $(wc -c <<<"$got") bytes)"

# static: liblyra.a with lyra.pc's private dependencies (--static), the README's line
# shellcheck disable=SC2046
"$CC" -Wall -Wextra "$ROOT/examples/pipeline.c" $(pkg-config --cflags lyra) \
    "$(pkg-config --variable=libdir lyra)/liblyra.a" $(pkg-config --static --libs lyra | sed 's/-llyra//') \
    -o "$TMP/pipeline-static" \
    || fail "building the example against liblyra.a: $(pkg-config --static --libs lyra)"
if ldd "$TMP/pipeline-static" | grep liblyra >/dev/null; then fail "the static example needs liblyra.so"; fi
got=$(cd "$TMP" && "$TMP/pipeline-static" "$MODEL" "$PROMPT" "$N" 2>"$TMP/static.err") \
    || { cat "$TMP/static.err" >&2; fail "the static example failed"; }
[ "$got" = "$want" ] || fail "static example text differs:
  example: $got
  lyra:    $want"
echo "example-check: static: ok"

# device_map.c: the typed device settings, against liblyra.so, on a simulated GPU
# shellcheck disable=SC2046
"$CC" -Wall -Wextra "$ROOT/examples/device_map.c" $(pkg-config --cflags --libs lyra) -o "$TMP/device-map" \
    || fail "building examples/device_map.c against liblyra.so"
NDM=32
want=$(LYRA_SIM_GPUS=8MiB "$BUILD/lyra" generate -m "$MODEL" -p "$PROMPT" -n "$NDM" --temp 0 --ctx 256 2>/dev/null) \
    || fail "lyra generate (device map) failed"
got=$(cd "$TMP" && LYRA_SIM_GPUS=8MiB LD_LIBRARY_PATH=$LIBDIR "$TMP/device-map" "$MODEL" "$PROMPT" "$NDM" 2>"$TMP/dm.err") \
    || { cat "$TMP/dm.err" >&2; fail "the device_map example failed"; }
[ "$got" = "$want" ] || fail "device_map example text differs:
  example: $got
  lyra:    $want"
grep -q '"model.embed_tokens":"0","model.layers.0":"0","model.layers.1":"0","model.layers.2":"cpu"' "$TMP/dm.err" \
    || fail "the device_map example's map is not the one it set: $(cat "$TMP/dm.err")"
echo "example-check: device_map: ok ($NDM tokens on GPU 0 + cpu)"
