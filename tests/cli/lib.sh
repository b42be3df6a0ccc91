# lib.sh: helpers for CLI tests (sourced). Provides: $LYRA (the binary),
# shared_path REL (skips with 77, or fails under LYRA_REQUIRE_SHARED=1),
# check NAME CMD... / check_eq NAME GOT WANT, tmpdir $T, and finish.
set -u
LYRA="${LYRA_BIN:-build/lyra}"
PY="${LYRA_PYTHON:-python3}"
SRC="${LYRA_SRC_DIR:-.}"
T="$(mktemp -d "${TMPDIR:-/tmp}/lyra-test.XXXXXX")"
trap 'rm -rf "$T"' EXIT
PASS=0
FAIL=0

shared_path() {
    local p="${LYRA_SHARED_DIR:-../shared}/$1"
    if [ ! -r "$p" ]; then
        if [ "${LYRA_REQUIRE_SHARED:-0}" = 1 ]; then
            echo "FAILED: required test data $p is missing (LYRA_REQUIRE_SHARED=1)" >&2
            exit 1
        fi
        echo "SKIPPED: test data $p not found (set LYRA_SHARED_DIR)"
        exit 77
    fi
    printf '%s' "$p"
}

ok()   { PASS=$((PASS+1)); }
bad()  { FAIL=$((FAIL+1)); echo "FAIL: $*" >&2; }

# check_eq NAME GOT WANT
check_eq() {
    if [ "$2" == "$3" ]; then ok; else bad "$1: got [$2] want [$3]"; fi
}
# check_rc NAME WANT_RC CMD...  (runs CMD, stdout to $T/out, stderr to $T/err)
check_rc() {
    local name="$1" want="$2"; shift 2
    "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ "$rc" = "$want" ]; then ok; else bad "$name: exit $rc, want $want; stderr: $(head -c 400 "$T/err")"; fi
}
# check_grep NAME PATTERN FILE
check_grep() {
    if grep -qE -- "$2" "$3"; then ok; else bad "$1: /$2/ not in $3: $(head -c 400 "$3")"; fi
}

finish() {
    echo "$PASS passed, $FAIL failed"
    [ "$FAIL" = 0 ]
}
