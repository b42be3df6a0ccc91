# test_harness.sh: the test harness tells the truth. (1) No test asks for
# test data inside $(...) or backquotes (an exit there would only leave the
# subshell). (2) lib.sh's shared_path / shared_have / skip, on small scripts:
# missing data is a skip with the reason (exit 77), a failure under
# LYRA_REQUIRE_SHARED=1, and a failure when a check failed before the skip.
# (3) ctest on this build's data tests (every test whose source calls
# shared_path or test_shared_path), with LYRA_SHARED_DIR set at ctest time to
# an empty directory: each is reported "Skipped" with the reason "test data
# ... not found" and ctest exits 0; with LYRA_REQUIRE_SHARED=1 too, each is
# reported failed with "required test data ... missing". Tests that skip for
# another reason first (no CUDA, no numpy) are only listed. The inner ctest
# never runs this test (names listed explicitly; LYRA_HARNESS_INNER guard)
# and keeps its logs in a temporary directory, not the build's Testing/.
source "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
[ -z "${LYRA_HARNESS_INNER:-}" ] || skip "inside the harness test's own ctest run"
[ -n "${LYRA_CTEST:-}" ] && [ -f "${LYRA_TEST_BIN_DIR:-}/CTestTestfile.cmake" ] ||
    skip "not run by ctest (LYRA_CTEST and LYRA_TEST_BIN_DIR unset)"

# --- (1) shared_path never in a subshell ------------------------------------
misuse=$(grep -nE '(\$\(|`) *shared_(path|have)' "$HERE"/test_*.sh | grep -v '^[^:]*/test_harness.sh:')
check_eq "shared_path inside \$(...)" "$misuse" ""

# --- (2) lib.sh on small scripts --------------------------------------------
mkdir -p "$T/empty"
cat >"$T/t_path.sh" <<EOF
source "$HERE/lib.sh"
shared_path M models/stories260K.gguf
echo "after: \$M"
finish
EOF
cat >"$T/t_late.sh" <<EOF
source "$HERE/lib.sh"
bad "an early check"
shared_path M models/stories260K.gguf
finish
EOF
cat >"$T/t_have.sh" <<EOF
source "$HERE/lib.sh"
if shared_have M models/stories260K.gguf; then echo "have: \$M"; fi
ok
finish
EOF
cat >"$T/t_subshell.sh" <<EOF
source "$HERE/lib.sh"
M="\$(shared_path M models/stories260K.gguf)"
echo "after: [\$M]"
finish
EOF
# run_lib NAME WANT_RC PATTERN SCRIPT [ENV...]: exit WANT_RC, PATTERN in its output
run_lib() {
    local name="$1" want="$2" pat="$3" script="$4"; shift 4
    env -u LYRA_REQUIRE_SHARED LYRA_SHARED_DIR="$T/empty" "$@" bash "$T/$script" >"$T/lib.out" 2>&1
    check_eq "$name: exit" "$?" "$want"
    check_grep "$name: output" "$pat" "$T/lib.out"
}
run_lib "shared_path, missing" 77 "^SKIPPED: test data $T/empty/models/stories260K.gguf not found" t_path.sh
run_lib "shared_path, missing, required" 1 "^FAILED: required test data .* is missing \(LYRA_REQUIRE_SHARED=1\)" \
    t_path.sh LYRA_REQUIRE_SHARED=1
run_lib "shared_path, missing after a failed check" 1 "^FAILED: 1 checks failed before the test was skipped" t_late.sh
run_lib "shared_path in \$(...)" 1 "^FAILED: shared_path VAR REL, in the test's shell" t_subshell.sh
run_lib "shared_have, missing" 0 "^NOTE: test data .* not found" t_have.sh
run_lib "shared_have, missing, required" 1 "^FAIL: required test data .* is missing" t_have.sh LYRA_REQUIRE_SHARED=1
# relative LYRA_SHARED_DIR: from where the test started; unset: the default
mkdir -p "$T/rel/data/models" && : >"$T/rel/data/models/stories260K.gguf"
(cd "$T/rel" && env -u LYRA_REQUIRE_SHARED LYRA_SHARED_DIR=data bash "$T/t_path.sh") >"$T/lib.out" 2>&1
check_eq "relative LYRA_SHARED_DIR: exit" "$?" 0
check_grep "relative LYRA_SHARED_DIR: path" "^after: $T/rel/data/models/stories260K.gguf$" "$T/lib.out"
env -u LYRA_SHARED_DIR LYRA_SHARED_DIR_DEFAULT="$T/rel/data" bash "$T/t_path.sh" >"$T/lib.out" 2>&1
check_eq "LYRA_SHARED_DIR_DEFAULT: exit" "$?" 0
check_grep "LYRA_SHARED_DIR_DEFAULT: path" "^after: $T/rel/data/models/stories260K.gguf$" "$T/lib.out"
env -u LYRA_REQUIRE_SHARED LYRA_SHARED_DIR="$T/empty" LYRA_SHARED_DIR_DEFAULT="$T/rel/data" bash "$T/t_path.sh" >"$T/lib.out" 2>&1
check_eq "LYRA_SHARED_DIR over the default: exit" "$?" 77

# --- (3) ctest on the data tests, with no test data -------------------------
names=()
for f in "$HERE"/test_*.sh; do
    case "$f" in */test_harness.sh) continue ;; esac
    grep -qE '^[^#]*shared_path ' "$f" && names+=("cli_$(basename "$f" .sh)")
done
for f in "$SRC"/tests/unit/test_*.c; do
    grep -q 'test_shared_path(' "$f" && names+=("$(basename "$f" .c)")
done
[ "${#names[@]}" -gt 10 ] && ok || bad "only ${#names[@]} data tests found: ${names[*]}"
re="^($(IFS='|'; echo "${names[*]}"))\$"
# an inner ctest project: this build's tests, logs under $T/ctest
mkdir -p "$T/ctest"
printf 'subdirs("%s")\n' "$LYRA_TEST_BIN_DIR" >"$T/ctest/CTestTestfile.cmake"
inner() { # OUT ENV...: ctest -V on the data tests; exit code in $T/OUT.rc
    local out="$1"; shift
    (cd "$T/ctest" && env -u LYRA_REQUIRE_SHARED LYRA_HARNESS_INNER=1 LYRA_SHARED_DIR="$T/empty" "$@" \
        "$LYRA_CTEST" -V -j2 --timeout 300 -R "$re") >"$T/$out" 2>&1
    echo $? >"$T/$out.rc"
}
# verdict OUT NAME: "STATUS|REASON LINE" of test NAME in ctest -V output OUT
verdict() {
    local n st
    n=$(sed -nE "s/^.*Test +#([0-9]+): $2 \.+.*/\1/p" "$T/$1" | head -1)
    st=$(sed -nE "s/^.*Test +#[0-9]+: $2 \.+[* ]*([A-Za-z]+).*/\1/p" "$T/$1" | head -1)
    printf '%s|%s' "$st" "$(grep -E "^$n: (SKIPPED|FAILED): " "$T/$1" | head -1 | sed -E "s/^$n: //")"
}

inner skip.out
check_eq "no test data: ctest exit" "$(cat "$T/skip.out.rc")" 0
required=()
for n in "${names[@]}"; do
    v=$(verdict skip.out "$n")
    case "$v" in
        "Skipped|SKIPPED: test data $T/empty/"*" not found (set LYRA_SHARED_DIR)") ok; required+=("$n") ;;
        "Skipped|SKIPPED: "*) ok; echo "note: $n skipped for another reason: ${v#*|}" ;;
        *) bad "no test data: $n: want Skipped with the reason, got [$v]" ;;
    esac
done
[ "${#required[@]}" -gt 10 ] && ok || bad "only ${#required[@]} tests skipped for missing test data"

re="^($(IFS='|'; echo "${required[*]}"))\$"
inner req.out LYRA_REQUIRE_SHARED=1
check_eq "no test data, required: ctest exit" "$(cat "$T/req.out.rc")" 8
for n in "${required[@]}"; do
    v=$(verdict req.out "$n")
    case "$v" in
        "Failed|FAILED: required test data $T/empty/"*" is missing (LYRA_REQUIRE_SHARED=1)") ok ;;
        *) bad "no test data, LYRA_REQUIRE_SHARED=1: $n: want Failed with the reason, got [$v]" ;;
    esac
done
echo "${#required[@]} data tests: skipped without test data, failed when it is required"
finish
