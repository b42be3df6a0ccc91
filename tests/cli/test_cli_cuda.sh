# test_cli_cuda.sh: the CUDA build seen from the command line (skipped in
# builds without CUDA). Without a usable GPU (CI): lyra runs on the CPU, the
# greedy stories260K text is the golden one, `lyra devices` lists no GPU; the
# note "CUDA: no usable GPU (REASON); running on the CPU" comes exactly once
# with -v or when a GPU was asked for (--gpu-layers, a cuda strategy), never
# otherwise; an empty LYRA_CUDA_DEVICES hides GPUs without a note. Commands
# that need no device (--version, --help, tokenize, config) load neither
# cuBLAS nor the CUDA driver, and runs without a GPU never load cuBLAS
# (LD_DEBUG=libs). With a GPU: `lyra devices` lists it as backend cuda and no
# note is printed.
source "$(dirname "$0")/lib.sh"
"$LYRA" --version > "$T/v" 2>&1
if ! grep -q "CUDA (archs " "$T/v"; then
    echo "SKIPPED: built without CUDA"
    exit 77
fi
shared_path M models/stories260K.gguf
shared_path G models/golden/stories260K_t0_n256_once_upon_a_time.txt
unset LYRA_CUDA_DEVICES LYRA_SIM_GPUS
NOTE='^CUDA: no usable GPU \(.+\); running on the CPU$'

check_rc "devices" 0 "$LYRA" devices
if grep -qE '^[0-9]+ +gpu +cuda ' "$T/out"; then
    echo "a CUDA GPU is here: checking that it is listed and no note is printed"
    check_eq "no note with a GPU" "$(grep -cE "$NOTE" "$T/err")" 0
    finish
    exit
fi
check_eq "devices: no GPU rows" "$(grep -cE '^[0-9]+ ' "$T/out")" 0
check_eq "devices: no note" "$(grep -ci cuda "$T/err")" 0
check_rc "devices -v" 0 "$LYRA" -v devices
check_eq "devices -v: one note" "$(grep -cE "$NOTE" "$T/err")" 1

check_rc "generate on the CPU" 0 "$LYRA" generate -m "$M" -p "Once upon a time" --temp 0 -n 40
check_eq "generate: nothing about CUDA" "$(grep -ci cuda "$T/err")" 0
got="Once upon a time$(cat "$T/out")"
want=$(head -c ${#got} "$G")
check_eq "generate: the golden text" "$got" "$want"

LYRA_CUDA_DEVICES= "$LYRA" -v devices > "$T/out" 2> "$T/err"
check_eq "LYRA_CUDA_DEVICES empty: no note" "$(grep -ci cuda "$T/err")" 0

# a GPU asked for: the note (a warning), once
"$LYRA" generate -m "$M" -p "Once upon a time" --temp 0 -n 8 --gpu-layers 1 >"$T/out" 2>"$T/err"
check_eq "--gpu-layers: one note" "$(grep -cE "$NOTE" "$T/err")" 1
"$LYRA" generate -m "$M" -p "Once upon a time" --temp 0 -n 8 --device-map cuda >"$T/out" 2>"$T/err"
check_eq "--device-map cuda: one note" "$(grep -cE "$NOTE" "$T/err")" 1

# libraries loaded: LD_DEBUG=libs lists each one's initialization on stderr
# loaded NAME PATTERN CMD...: no library matching PATTERN is initialized
loaded() {
    local name="$1" pat="$2"
    shift 2
    LD_DEBUG=libs "$@" >/dev/null 2>"$T/ld"
    check_eq "$name: loads of $pat" "$(grep 'calling init: ' "$T/ld" | grep -cE "$pat")" 0
}
DRV='libcublas|libcuda\.so'
printf '{"device_map": "cpu"}\n' >"$T/cfg.json"
loaded "--version" "$DRV" "$LYRA" --version
loaded "--help" "$DRV" "$LYRA" --help
loaded "tokenize" "$DRV" "$LYRA" tokenize -m "$M" -- "Once upon a time"
loaded "config show" "$DRV" "$LYRA" config show --model-config "$T/cfg.json"
loaded "config validate -m" "$DRV" "$LYRA" config validate -m "$M" "$T/cfg.json"
loaded "generate without a GPU" 'libcublas' "$LYRA" generate -m "$M" -p "Once" --temp 0 -n 4
finish
