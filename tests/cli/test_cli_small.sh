#!/usr/bin/env bash
# test_cli_small.sh: small CLI fixes of issue 11 item 16: singular "1 token",
# --ctx beyond the trained context warns naming --ctx / context_length and
# the limit, --ctx out of range refused at parse time naming --ctx, a UTF-8
# BOM at the start of a config file is skipped, and -p "" prints no leading
# space (as no -p).
. "$(dirname "$0")/lib.sh"
shared_path M models/stories260K.gguf
export LYRA_MODEL_CONFIG=none
# has NAME TEXT STRING: STRING (fixed) is in TEXT
has() { case "$2" in *"$3"*) ok ;; *) bad "$1: [$3] not in [$2]" ;; esac; }

# a: grammar
out=$("$LYRA" generate -m "$M" --ctx 1 -n 4 --temp 0 2>&1); rc=$?
check_eq "ctx 1 rc" "$rc" 2
has "ctx 1: singular" "$out" "lyra: error: --ctx: the prompt is 1 token; the context (--ctx) holds 1"

# b: beyond the trained context: names --ctx, the config key and the limit
out=$("$LYRA" generate -m "$M" --ctx 100000 -n 2 --temp 0 2>&1 >/dev/null); rc=$?
check_eq "ctx 100000 rc" "$rc" 0
has "ctx 100000 warning" "$out" "context: 100000 positions (--ctx, config key context_length) are more than the 2048 the model was trained on"

# c: out of range at parse time
out=$("$LYRA" generate -m "$M" --ctx 2000000000 -n 2 2>&1); rc=$?
check_eq "ctx 2e9 rc" "$rc" 2
has "ctx 2e9 message" "$out" "lyra: error: --ctx: must be between 0 and 16777216, got 2000000000"
case "$out" in *plan:*) bad "ctx 2e9 blamed on plan: $out" ;; *) ok ;; esac

# d: a BOM before the JSON
printf '\xef\xbb\xbf{"context_length": 64}\n' >"$T/bom.json"
out=$("$LYRA" config show -m "$M" --model-config "$T/bom.json" 2>&1); rc=$?
check_eq "bom rc" "$rc" 0
has "bom value" "$out" "context_length                      64"
case "$out" in *"invalid token"*) bad "bom refused: $out" ;; *) ok ;; esac

# e: -p "" is BOS alone, printed like no -p (no leading space)
a=$("$LYRA" generate -m "$M" -p "" -n 8 --temp 0 2>/dev/null)
b=$("$LYRA" generate -m "$M" -n 8 --temp 0 2>/dev/null)
check_eq "empty prompt = no prompt" "$a" "$b"
case "$a" in " "*) bad "empty prompt: leading space [$a]" ;; *) ok ;; esac
finish
