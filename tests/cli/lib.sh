# lib.sh: helpers for CLI tests (sourced). Provides: $LYRA (the binary),
# shared_path VAR REL (sets VAR to test data REL; skips with 77, or fails
# under LYRA_REQUIRE_SHARED=1), shared_have VAR REL (optional data),
# skip REASON, check_eq/check_rc/check_grep, tmpdir $T, and finish.
# The test data directory is $LYRA_SHARED_DIR, else $LYRA_SHARED_DIR_DEFAULT
# (what CMake configured: ../shared beside the checkout), else ../shared;
# relative to the directory the test started in.
# shared_path must run in the test's own shell, never inside $(...): an exit
# there would only leave the subshell (tests/cli/test_harness.sh checks).
set -u
LYRA="${LYRA_BIN:-build/lyra}"
PY="${LYRA_PYTHON:-python3}"
SRC="${LYRA_SRC_DIR:-.}"
T="$(mktemp -d "${TMPDIR:-/tmp}/lyra-test.XXXXXX")"
trap 'rm -rf "$T"' EXIT
PASS=0
FAIL=0

START_DIR="$PWD"

# shared_dir: the test data directory, absolute (relative to START_DIR).
shared_dir() {
    local d="${LYRA_SHARED_DIR:-${LYRA_SHARED_DIR_DEFAULT:-../shared}}"
    case "$d" in /*) printf '%s' "$d" ;; *) printf '%s' "$START_DIR/$d" ;; esac
}

# skip REASON: exit 77 (skipped) with the reason; exit 1 instead when a check
# has already failed, so a late skip never hides a failure.
skip() {
    if [ "$FAIL" != 0 ]; then
        echo "FAILED: $FAIL checks failed before the test was skipped ($*)" >&2
        exit 1
    fi
    echo "SKIPPED: $*"
    exit 77
}

# shared_path VAR REL: VAR = the path of REL under the test data directory.
# Missing: skipped, or failed under LYRA_REQUIRE_SHARED=1.
shared_path() {
    if [ $# != 2 ] || [ "${BASH_SUBSHELL:-0}" != 0 ]; then
        # an exit here may only leave a subshell: finish fails on the mark
        echo "FAILED: shared_path VAR REL, in the test's shell (got: shared_path $*)" >&2
        : >"$T/.shared_path_misused"
        exit 1
    fi
    local p
    p="$(shared_dir)/$2"
    if [ ! -r "$p" ]; then
        if [ "${LYRA_REQUIRE_SHARED:-0}" = 1 ]; then
            echo "FAILED: required test data $p is missing (LYRA_REQUIRE_SHARED=1)" >&2
            exit 1
        fi
        skip "test data $p not found (set LYRA_SHARED_DIR)"
    fi
    printf -v "$1" '%s' "$p"
}

# shared_have VAR REL: for optional test data: true with VAR set as
# shared_path does when REL is there; else false with a note, and a failed
# check under LYRA_REQUIRE_SHARED=1.
shared_have() {
    local p
    p="$(shared_dir)/$2"
    if [ -r "$p" ]; then printf -v "$1" '%s' "$p"; return 0; fi
    if [ "${LYRA_REQUIRE_SHARED:-0}" = 1 ]; then
        bad "required test data $p is missing (LYRA_REQUIRE_SHARED=1)"
    else
        echo "NOTE: test data $p not found (set LYRA_SHARED_DIR): the checks that need it are skipped"
    fi
    return 1
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
    [ ! -e "$T/.shared_path_misused" ] || bad "shared_path was called in a subshell or without VAR"
    echo "$PASS passed, $FAIL failed"
    [ "$FAIL" = 0 ]
}
