# test_cli_mpiplan.sh: planning over MPI ranks (docs/distributed.md "How the
# model is split"): every rank reports its devices to rank 0, which fills the
# ranks' GPUs first (balanced or sequential) keeping each rank's modules
# consecutive; `lyra plan` under mpirun prints the whole map; `lyra plan
# --rank-devices FILE` plans a described cluster exactly as mpirun with those
# devices does; bad files fail with one line naming the file and the field;
# the logits stay bitwise those of one process (perplexity --logits-hash).
# The --rank-devices checks need no MPI; the mpirun part is skipped (77 when
# nothing else ran) without mpirun or without MPI in the build.
source "$(dirname "$0")/lib.sh"
shared_path S260 models/stories260K.gguf
TXT="$SRC/tests/data/stories.txt"
"$LYRA" -q mkmodel -o "$T/r256.gguf" --dim 256 --layers 6 --type q8_0 --seed 1 || bad "mkmodel"
M="$T/r256.gguf"
PLAN=(plan -m "$M" --ctx 64 --max-memory cpu=1GiB)

# --- --rank-devices: a cluster on paper ---------------------------------------
cat >"$T/rd.json" <<'JSON'
{"ranks": [{"gpus": [{"memory": "4MiB", "backend": "sim"}, {"memory": "4MiB", "backend": "sim"}],
            "cpu": "64GiB"},
           {"gpus": [{"memory": "3MiB", "backend": "sim"}], "cpu": "64GiB", "disk": "1TB"}]}
JSON
"$LYRA" -q "${PLAN[@]}" --rank-devices "$T/rd.json" >"$T/plan" 2>&1
check_eq "rank-devices rc ($(head -c 300 "$T/plan"))" "$?" 0
check_grep "rank-devices: rank 0 on its two GPUs" '^rank 0 +model.embed_tokens model.layers.0-4$' "$T/plan"
check_grep "rank-devices: rank 1" '^rank 1 +model.layers.5 model.norm lm_head$' "$T/plan"
check_grep "rank-devices: rank 1's table" '^0 +gpu +sim +3.0 MiB .* model.layers.5 model.norm lm_head$' "$T/plan"
"$LYRA" -q "${PLAN[@]}" --ranks 2 --rank-devices "$T/rd.json" --json >"$T/b.json" 2>&1
check_eq "rank-devices --json rc" "$?" 0
check_grep "rank-devices --json: map with ranks" '"map":\{"model.embed_tokens":"0@0",.*"model.layers.2":"1@0",.*"lm_head":"0@1"\}' "$T/b.json"
check_rc "rank-devices: --ranks differs" 2 "$LYRA" "${PLAN[@]}" --ranks 3 --rank-devices "$T/rd.json"
check_grep "rank-devices: --ranks differs, said" '^lyra: error: --ranks: 3, but .*rd.json describes 2 ranks$' "$T/err"
# a CPU-only cluster keeps the even split; sequential fills rank 0 first
echo '{"ranks":[{"cpu":"64GiB"},{"cpu":"64GiB"},{"cpu":"64GiB"}]}' >"$T/cpu3.json"
"$LYRA" -q "${PLAN[@]}" --rank-devices "$T/cpu3.json" >"$T/plan" 2>&1
check_grep "CPU ranks: even split" '^rank 1 +model.layers.2-3$' "$T/plan"
G16='{"memory":"16MiB","backend":"sim"}'
echo "{\"ranks\":[{\"gpus\":[$G16],\"cpu\":\"64GiB\"},{\"gpus\":[$G16],\"cpu\":\"64GiB\"}]}" >"$T/seq.json"
"$LYRA" -q "${PLAN[@]}" --rank-devices "$T/seq.json" --device-map sequential >"$T/plan" 2>&1
check_grep "sequential: rank 0 first" '^rank 0 +model.embed_tokens model.layers.0-4$' "$T/plan"
"$LYRA" -q "${PLAN[@]}" --rank-devices "$T/seq.json" >"$T/plan" 2>&1
check_grep "balanced: shares" '^rank 1 +model.layers.[2-4]-5 model.norm lm_head$' "$T/plan"
echo '{"ranks":[{"gpus":["16MiB"],"cpu":"64GiB"},{"cpu":"64GiB"}]}' >"$T/cuda.json"
"$LYRA" -q "${PLAN[@]}" --rank-devices "$T/cuda.json" >"$T/plan" 2>&1
check_grep "a cuda GPU keeps its reserve" '^0 +gpu +cuda +16.0 MiB +512.0 MiB +0 B ' "$T/plan"
# a budget in the file is that device's max_memory
echo '{"ranks":[{"gpus":[{"memory":"8MiB","budget":"2MiB","backend":"sim"}],"cpu":"64GiB"},{"cpu":"64GiB"}]}' >"$T/bud.json"
"$LYRA" -q "${PLAN[@]}" --rank-devices "$T/bud.json" >"$T/plan" 2>&1
check_grep "file budget" '^0 +gpu +sim +8.0 MiB +0 B +2.0 MiB ' "$T/plan"

# --fallback-across-ranks at planning: rank 0's CPU cannot hold its share's
# KV cache and scratch; without the flag its plan fails, with it its last
# layers move to rank 1
echo '{"ranks":[{"cpu":{"memory":"64GiB","budget":"1200KiB"}},{"cpu":"64GiB"}]}' >"$T/small0.json"
check_rc "rank 0 too small: plan fails" 2 "$LYRA" plan -m "$M" --ctx 64 --rank-devices "$T/small0.json"
check_grep "rank 0 too small: said" 'model.layers.2 fits nowhere' "$T/err"
"$LYRA" plan -m "$M" --ctx 64 --rank-devices "$T/small0.json" --fallback-across-ranks >"$T/plan" 2>"$T/err"
check_eq "--fallback-across-ranks plan rc" "$?" 0
check_grep "--fallback-across-ranks: the move said" '^fallback across ranks: rank 0 cannot hold its share \(.*\): model.layers.2 moves to rank 1$' "$T/err"
check_grep "--fallback-across-ranks: rank 1 took it" '^rank 1 +model.layers.2-5 model.norm lm_head$' "$T/plan"

# bad files: one line naming the file and the field
bad_file() { # NAME JSON PATTERN
    printf '%s' "$2" >"$T/bad.json"
    check_rc "bad file: $1" 2 "$LYRA" "${PLAN[@]}" --rank-devices "$T/bad.json"
    check_grep "bad file: $1: said" "^lyra: error: $T/bad.json: $3" "$T/err"
    check_eq "bad file: $1: one line" "$(wc -l <"$T/err")" 1
}
bad_file "not JSON" '{"ranks": [' 'line 1: '
bad_file "no ranks" '{}' 'ranks: missing$'
bad_file "empty ranks" '{"ranks": []}' 'ranks: 0 ranks \(1 to 4096\)$'
bad_file "unknown key" '{"ranks": [{"cpu": "1GiB", "gpu": ["1GiB"]}]}' 'ranks\[0\]: unknown key "gpu"$'
bad_file "no cpu" '{"ranks": [{"gpus": ["1GiB"]}]}' 'ranks\[0\].cpu: missing'
bad_file "bad size" '{"ranks": [{"cpu": "1GiB"}, {"gpus": ["24Gb"], "cpu": "1GiB"}]}' 'ranks\[1\].gpus\[0\]: bad size "24Gb"'
bad_file "free > memory" '{"ranks": [{"cpu": {"memory": "1GiB", "free": "2GiB"}}]}' 'ranks\[0\].cpu.free: '
bad_file "budget > free" '{"ranks": [{"cpu": "1GiB", "gpus": [{"memory": "1GiB", "budget": "2GiB"}]}]}' 'ranks\[0\].gpus\[0\].budget: a budget of'
bad_file "backend" '{"ranks": [{"cpu": "1GiB", "gpus": [{"memory": "1GiB", "backend": "rocm"}]}]}' 'ranks\[0\].gpus\[0\].backend: expected "cuda" or "sim"$'
check_rc "missing file" 2 "$LYRA" "${PLAN[@]}" --rank-devices "$T/none.json"
check_grep "missing file: said" "^lyra: error: $T/none.json: No such file" "$T/err"

# --- under mpirun ------------------------------------------------------------
if ! command -v mpirun >/dev/null || ! "$LYRA" --version | grep -q 'MPI' ||
    ! mpirun --version 2>/dev/null | grep -q 'Open MPI'; then
    echo "no mpirun / MPI in the build: the mpirun checks are skipped"
    finish
    exit
fi
export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_orte_base_help_aggregate=0
MPIRUN=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)

# the same devices under mpirun (simulated GPUs per rank) plan the same map
"${MPIRUN[@]}" -np 1 -x LYRA_SIM_GPUS=4MiB,4MiB "$LYRA" -q "${PLAN[@]}" --json : \
    -np 1 -x LYRA_SIM_GPUS=3MiB "$LYRA" -q "${PLAN[@]}" --json >"$T/a.json" 2>"$T/err"
check_eq "mpirun plan rc ($(head -c 300 "$T/err"))" "$?" 0
map() { "$PY" -c "import json,sys; j=json.load(open(sys.argv[1])); print(json.dumps([j['map'], j['ranks']], sort_keys=True))" "$1"; }
check_eq "mpirun plan = --rank-devices plan" "$(map "$T/a.json")" "$(map "$T/b.json")"
"${MPIRUN[@]}" -np 1 -x LYRA_SIM_GPUS=4MiB,4MiB "$LYRA" -q "${PLAN[@]}" : \
    -np 1 -x LYRA_SIM_GPUS=3MiB "$LYRA" -q "${PLAN[@]}" >"$T/plan" 2>&1
check_grep "mpirun plan: rank 1's table" '^rank 1 of 2$' "$T/plan"
check_grep "mpirun plan: rank lines" '^rank 1 +model.layers.5 model.norm lm_head$' "$T/plan"

# runs: the split the plan printed, logits bitwise those of one process
"$LYRA" -q perplexity -m "$M" -f "$TXT" --ctx 64 --threads 1 --logits-hash >"$T/p1" 2>&1
PPL=(perplexity -m "$M" -f "$TXT" --ctx 64 --threads 1 --logits-hash --max-memory cpu=1GiB)
"${MPIRUN[@]}" -np 1 -x LYRA_SIM_GPUS=4MiB,4MiB "$LYRA" "${PPL[@]}" : \
    -np 1 -x LYRA_SIM_GPUS=3MiB "$LYRA" "${PPL[@]}" >"$T/p2" 2>"$T/pe2"
check_eq "GPUs per rank: rc ($(grep error "$T/pe2" | head -c 300))" "$?" 0
check_eq "GPUs per rank: logits bitwise equal" "$(cat "$T/p2")" "$(cat "$T/p1")"
check_grep "GPUs per rank: rank 0 fills its second GPU" '^map: 1 \(gpu\) model.layers.2-4 ' "$T/pe2"
check_grep "GPUs per rank: rank 1's share" '^map: rank 1 \(mpi\) model.layers.5 model.norm lm_head$' "$T/pe2"
# 3 ranks, one small GPU each: GPUs full first, then the CPUs
"${MPIRUN[@]}" -np 3 -x LYRA_SIM_GPUS=2MiB "$LYRA" "${PPL[@]}" >"$T/p3" 2>"$T/pe3"
check_eq "-np 3 small GPUs: rc ($(grep error "$T/pe3" | head -c 300))" "$?" 0
check_eq "-np 3 small GPUs: logits bitwise equal" "$(cat "$T/p3")" "$(cat "$T/p1")"
check_grep "-np 3 small GPUs: rank 0's GPU" '^map: 0 \(gpu\) model.embed_tokens model.layers.0 ' "$T/pe3"
"$LYRA" -q perplexity -m "$S260" -f "$TXT" --ctx 64 --threads 1 --logits-hash >"$T/s1" 2>&1
"${MPIRUN[@]}" -np 2 -x LYRA_SIM_GPUS=400KiB "$LYRA" -q perplexity -m "$S260" -f "$TXT" --ctx 64 \
    --threads 1 --logits-hash --device-map sequential >"$T/s2" 2>"$T/se2"
check_eq "stories260K sequential: rc ($(grep error "$T/se2" | head -c 300))" "$?" 0
check_eq "stories260K sequential: logits bitwise equal" "$(cat "$T/s2")" "$(cat "$T/s1")"
# --fallback-across-ranks at load: rank 0's GPU says 64 MiB but holds 2 MiB;
# with --no-fallback it cannot step down on its own devices: the run fails,
# unless its layers may move to rank 1 (the logits stay bitwise equal)
P0=(-np 1 -x LYRA_SIM_GPUS=2MiB@64MiB "$LYRA" "${PPL[@]}" --no-fallback)
P1=(-np 1 "$LYRA" "${PPL[@]}" --no-fallback)
"${MPIRUN[@]}" "${P0[@]}" : "${P1[@]}" >"$T/f1" 2>"$T/fe1"
check_eq "lying GPU without the flag: exit 3" "$?" 3
check_grep "lying GPU without the flag: said" '^lyra: error: 0: out of memory on 0: ' "$T/fe1"
"${MPIRUN[@]}" "${P0[@]}" --fallback-across-ranks : "${P1[@]}" --fallback-across-ranks >"$T/f2" 2>"$T/fe2"
check_eq "--fallback-across-ranks at load: rc ($(grep error "$T/fe2" | head -c 300))" "$?" 0
check_eq "--fallback-across-ranks at load: logits bitwise equal" "$(cat "$T/f2")" "$(cat "$T/p1")"
check_grep "--fallback-across-ranks at load: said" '^fallback across ranks: rank 0 cannot load its share \(0: out of memory .*\): model.layers.1 moves to rank 1$' "$T/fe2"
check_grep "--fallback-across-ranks at load: rank 1's share" '^map: rank 1 \(mpi\) model.layers.1-5 model.norm lm_head$' "$T/fe2"
# the config key does the same
echo '{"fallback_across_ranks": true}' >"$T/far.json"
"${MPIRUN[@]}" "${P0[@]}" --model-config "$T/far.json" : "${P1[@]}" --model-config "$T/far.json" >"$T/f3" 2>"$T/fe3"
check_eq "fallback_across_ranks key: rc ($(grep error "$T/fe3" | head -c 300))" "$?" 0
check_eq "fallback_across_ranks key: logits bitwise equal" "$(cat "$T/f3")" "$(cat "$T/p1")"

check_rc "--rank-devices under mpirun: refused" 2 "${MPIRUN[@]}" -np 2 "$LYRA" "${PLAN[@]}" --rank-devices "$T/rd.json"
check_grep "--rank-devices under mpirun: said" '^lyra: error: --rank-devices: not under mpirun' "$T/err"
check_eq "--rank-devices under mpirun: one line" "$(grep -c 'lyra: error' "$T/err")" 1
finish
