# test_exports.sh: liblyra.so exports exactly the functions include/lyra.h
# declares (each marked LYRA_API; everything else is built with hidden
# visibility), and no data.
source "$(dirname "$0")/lib.sh"

LIB="${LYRA_LIB:-$(dirname "$LYRA")/liblyra.so}"
HDR="$SRC/include/lyra.h"
command -v nm >/dev/null || { echo "SKIPPED: nm not found"; exit 77; }
[ -f "$LIB" ] || { echo "SKIPPED: $LIB not built"; exit 77; }

# the header: the name before the first '(' on each LYRA_API line
sed -nE 's/^LYRA_API[^(]*[^A-Za-z0-9_]([A-Za-z_][A-Za-z0-9_]*)\(.*/\1/p' "$HDR" | sort -u >"$T/want"
# every function declaration carries LYRA_API
grep -nE '^[a-z][A-Za-z0-9_ ]*[ *]lyra_[a-z0-9_]+\(' "$HDR" | grep -v ':typedef' >"$T/unmarked"
check_eq "declarations without LYRA_API" "$(cat "$T/unmarked")" ""
n_want=$(wc -l <"$T/want")
[ "$n_want" -ge 50 ] && ok || bad "only $n_want LYRA_API functions parsed from $HDR"

# the library: defined dynamic symbols; functions (T, W, i) against the header
nm -D --defined-only "$LIB" >"$T/nm" || { bad "nm -D $LIB failed"; finish; exit 1; }
awk '$2 ~ /^[TWi]$/ {print $3}' "$T/nm" | sed 's/@.*//' | grep -vxE '_init|_fini' | sort -u >"$T/got"
check_eq "exported but not in lyra.h" "$(comm -13 "$T/want" "$T/got" | tr '\n' ' ')" ""
check_eq "in lyra.h but not exported" "$(comm -23 "$T/want" "$T/got" | tr '\n' ' ')" ""
# no data, no other kinds of symbol (linker-made markers aside)
other=$(awk '$2 !~ /^[TWi]$/ {print $3}' "$T/nm" | grep -vxE '_edata|_end|__bss_start' | tr '\n' ' ')
check_eq "other exported symbols" "$other" ""

finish
