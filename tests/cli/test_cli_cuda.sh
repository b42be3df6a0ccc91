# test_cli_cuda.sh: the CUDA build seen from the command line (skipped in
# builds without CUDA). Without a usable GPU (CI): lyra runs on the CPU after
# exactly one note "CUDA: no usable GPU (REASON); running on the CPU", the
# greedy stories260K text is the golden one, `lyra devices` lists no GPU, and
# an empty LYRA_CUDA_DEVICES hides GPUs without a note. With a GPU: `lyra
# devices` lists it as backend cuda and no note is printed.
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
check_eq "devices: one note" "$(grep -cE "$NOTE" "$T/err")" 1

check_rc "generate on the CPU" 0 "$LYRA" generate -m "$M" -p "Once upon a time" --temp 0 -n 40
check_eq "generate: one note" "$(grep -cE "$NOTE" "$T/err")" 1
check_eq "generate: nothing else about CUDA" "$(grep -ci cuda "$T/err")" 1
got="Once upon a time$(cat "$T/out")"
want=$(head -c ${#got} "$G")
check_eq "generate: the golden text" "$got" "$want"

LYRA_CUDA_DEVICES= "$LYRA" devices > "$T/out" 2> "$T/err"
check_eq "LYRA_CUDA_DEVICES empty: no note" "$(grep -ci cuda "$T/err")" 0
finish
