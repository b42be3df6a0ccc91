# test_cli_mpi.sh: pipeline-parallel runs under mpirun (docs/distributed.md)
# on one host: with 2 and 3 ranks the logits are bitwise those of one process
# (perplexity --logits-hash) and greedy text is identical, on stories260K and
# a random dim-256 model (also with simulated GPUs inside the ranks); the
# map names the other ranks; `lyra plan --ranks N` splits as the run does; a
# different model file on a rank is refused at start; a rank killed with
# SIGKILL mid-generation ends every rank within 10 s naming it; with
# --fallback-across-ranks a rank out of memory during generation hands its
# last layer (and KV cache) to the next rank, same text. Skipped (77)
# without mpirun or without MPI in the build.
source "$(dirname "$0")/lib.sh"
command -v mpirun >/dev/null || skip "no mpirun (apt-get install openmpi-bin)"
"$LYRA" --version | grep -q 'MPI' || skip "lyra was built without MPI (-DLYRA_MPI)"
shared_path S260 models/stories260K.gguf
TXT="$SRC/tests/data/stories.txt"

# Open MPI on one host: loopback TCP, more ranks than cores, root allowed
export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_orte_base_help_aggregate=0
# under ASan, LeakSanitizer reports Open MPI's own allocations (its plugins,
# unloaded at exit, leave no frame to suppress): no leak check under mpirun
# (the single-process runs keep it)
MPIRUN=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
mpirun --version 2>/dev/null | grep -q 'Open MPI' || skip "these checks use Open MPI's mpirun flags"

"$LYRA" -q mkmodel -o "$T/r256.gguf" --dim 256 --layers 6 --type q8_0 --seed 1 || bad "mkmodel"
"$LYRA" -q mkmodel -o "$T/other.gguf" --dim 256 --layers 6 --type q8_0 --seed 2 || bad "mkmodel 2"

for M in "$S260" "$T/r256.gguf"; do
    b=$(basename "$M")
    "$LYRA" -q perplexity -m "$M" -f "$TXT" --ctx 64 --threads 1 --logits-hash >"$T/p1" 2>&1
    check_eq "$b: perplexity rc" "$?" 0
    check_grep "$b: logits-hash line" '^logits-hash: [0-9a-f]{16}$' "$T/p1"
    "$LYRA" -q generate -m "$M" -p "Once upon a time" -n 24 --greedy --threads 1 >"$T/g1" 2>&1
    for np in 2 3; do
        "${MPIRUN[@]}" -np $np "$LYRA" -q perplexity -m "$M" -f "$TXT" --ctx 64 --threads 1 \
            --logits-hash >"$T/p$np" 2>"$T/pe$np"
        rc=$?
        check_eq "$b: -np $np perplexity rc ($(head -c 300 "$T/pe$np"))" "$rc" 0
        check_eq "$b: -np $np logits bitwise equal" "$(cat "$T/p$np")" "$(cat "$T/p1")"
        "${MPIRUN[@]}" -np $np "$LYRA" -q generate -m "$M" -p "Once upon a time" -n 24 --greedy \
            --threads 1 >"$T/g$np" 2>"$T/ge$np"
        check_eq "$b: -np $np generate rc" "$?" 0
        check_eq "$b: -np $np greedy text identical" "$(cat "$T/g$np")" "$(cat "$T/g1")"
    done
done

# simulated GPUs inside each rank: the same logits
"${MPIRUN[@]}" -np 2 -x LYRA_SIM_GPUS=3MiB,3MiB "$LYRA" -q perplexity -m "$T/r256.gguf" -f "$TXT" --ctx 64 \
    --threads 1 --logits-hash --gpu-layers all >"$T/ps" 2>"$T/pse"
rc=$?
check_eq "sim GPUs in ranks: rc ($(head -c 300 "$T/pse"))" "$rc" 0
"$LYRA" -q perplexity -m "$T/r256.gguf" -f "$TXT" --ctx 64 --threads 1 --logits-hash >"$T/p1"
check_eq "sim GPUs in ranks: logits bitwise equal" "$(cat "$T/ps")" "$(cat "$T/p1")"

# ID@RANK in a device map and --max-memory: the map decides the split
DM='{"model.embed_tokens": "cpu", "model.layers.0": "0", "model.layers.1-2": "cpu@0",
     "model.layers.3-5": "0@1", "model.norm": "cpu@1", "lm_head": "cpu@1"}'
"${MPIRUN[@]}" -np 2 -x LYRA_SIM_GPUS=4MiB "$LYRA" perplexity -m "$T/r256.gguf" -f "$TXT" --ctx 64 \
    --threads 1 --logits-hash --device-map "$DM" --max-memory 0@1=4MiB,0@0=2MiB >"$T/pm" 2>"$T/pme"
rc=$?
check_eq "ID@RANK map: rc ($(grep error "$T/pme" | head -c 300))" "$rc" 0
check_eq "ID@RANK map: logits bitwise equal" "$(cat "$T/pm")" "$(cat "$T/p1")"
check_grep "ID@RANK map: rank 0 on its GPU" '^map: 0 \(gpu\) model.layers.0 ' "$T/pme"
check_grep "ID@RANK map: rank 1's modules" '^map: rank 1 \(mpi\) model.layers.3-5 model.norm lm_head$' "$T/pme"
"$LYRA" -q plan -m "$T/r256.gguf" --device-map "$DM" --ranks 2 >"$T/plan" 2>&1
check_grep "plan --ranks with ID@RANK: rank 0" '^rank 0 +model.embed_tokens model.layers.0-2$' "$T/plan"
check_rc "ID@RANK without mpirun: refused" 2 "$LYRA" generate -m "$T/r256.gguf" --device-map "$DM" -p hi -n 2
check_grep "ID@RANK without mpirun: says so" 'device_map: a device of rank 1 is named: run under mpirun -np 2' "$T/err"
check_rc "ID@RANK: a bad rank suffix" 2 "$LYRA" plan -m "$T/r256.gguf" --device-map '{"": "cpu@x"}'

# the map names the other ranks (rank 0's log)
"${MPIRUN[@]}" -np 3 "$LYRA" generate -m "$T/r256.gguf" -p hi -n 2 --threads 1 >"$T/out" 2>"$T/err"
check_eq "map run rc" "$?" 0
check_grep "rank 0's own modules" '^map: cpu \(cpu\) model.embed_tokens model.layers.0-1 ' "$T/err"
check_grep "rank 1's modules" '^map: rank 1 \(mpi\) model.layers.2-3$' "$T/err"
check_grep "rank 2's modules" '^map: rank 2 \(mpi\) model.layers.4-5 model.norm lm_head$' "$T/err"

# lyra plan --ranks N: the same split, without MPI
"$LYRA" -q plan -m "$T/r256.gguf" --ranks 3 >"$T/plan" 2>&1
check_eq "plan --ranks rc" "$?" 0
check_grep "plan --ranks: rank 1" '^rank 1 +model.layers.2-3$' "$T/plan"
check_grep "plan --ranks: rank 2" '^rank 2 +model.layers.4-5 model.norm lm_head$' "$T/plan"

# a different model file on rank 1: refused at start, one line naming it
s=$(date +%s)
"${MPIRUN[@]}" -np 1 "$LYRA" generate -m "$T/r256.gguf" -p hi -n 2 : \
    -np 1 "$LYRA" generate -m "$T/other.gguf" -p hi -n 2 >"$T/out" 2>"$T/err"
rc=$?
[ "$rc" != 0 ] && ok || bad "wrong model file: exit 0"
check_grep "wrong model file named" "^lyra: error: mpi: rank 1: its model file is not rank 0's" "$T/err"
check_eq "wrong model file: one error line" "$(grep -c '^lyra: error:' "$T/err")" 1

# a rank killed mid-generation: every rank ends within 10 s, the rank named
# --fallback-across-ranks during generation: one rank's KV cache cannot grow
# (LYRA_FAIL_ALLOC on that rank only, within-rank fallback off): its last
# layer goes with its KV cache to the next rank and the text is one
# process's; on the last rank (no next rank) the run ends with one error line
# naming it, exit 3. MPMD launches (A : B) give one rank the environment.
M="$T/r256.gguf"
XG=(generate -m "$M" -p "Once upon a time" --temp 0 --ctx 256 --kv-chunk 8 --threads 1 --no-fallback
    --fallback-across-ranks)
"$LYRA" -q "${XG[@]}" -n 24 >"$T/x1" 2>/dev/null
# NP ranks generating N tokens, rank R's command line prefixed by the rest
# (an MPMD launch: A : B ...), each under a 60 s limit
run_ranks() {
    local np=$1 r=$2 n=$3 i apps=()
    shift 3
    for ((i = 0; i < np; i++)); do
        [ ${#apps[@]} -gt 0 ] && apps+=(:)
        apps+=(-np 1)
        [ "$i" = "$r" ] && apps+=("$@")
        apps+=("$LYRA" "${XG[@]}" -n "$n")
    done
    timeout 60 "${MPIRUN[@]}" "${apps[@]}"
}
# the cpu allocations rank R makes by a 1-token run of NP ranks (its stderr
# to a file of its own: mpirun's merged stream may break a rank's lines)
export LYRA_TEST_STATS="$T/stats"
rank_allocs() {
    rm -f "$T/stats"
    run_ranks "$1" "$2" 1 env LYRA_LOG=warn LYRA_ALLOC_STATS=1 sh -c 'exec "$0" "$@" 2>"$LYRA_TEST_STATS"' \
        >/dev/null 2>&1
    sed -n 's/^alloc: cpu calls=\([0-9][0-9]*\) .*/\1/p' "$T/stats" 2>/dev/null
}
# NP ranks generating 24 tokens, rank R failing its cpu allocation N
run_fault() { run_ranks "$1" "$2" 24 env LYRA_FAIL_ALLOC=cpu:"$3"; }
# rank 0 of 2 at its first new chunk (its second layer's): model.layers.2 to rank 1
n0=$(rank_allocs 2 0)
[ -n "$n0" ] && ok || bad "across ranks: no allocation count (rank 0 of 2)"
run_fault 2 0 $((n0 + 2)) >"$T/x2" 2>"$T/xe2"
rc=$?
check_eq "across ranks, generation: -np 2 rc ($(head -c 300 "$T/xe2"))" "$rc" 0
check_eq "across ranks, generation: -np 2 text = one process's" "$(cat "$T/x2")" "$(cat "$T/x1")"
check_grep "across ranks, generation: -np 2 step line" \
    '^fallback across ranks: during generation at token [0-9]+: rank 0 is out of memory \(cpu: the KV cache of layer 1 at position [0-9]+: out of memory on cpu: asked .*\): model\.layers\.2 moves to rank 1$' "$T/xe2"
# rank 1 of 3 at its second new chunk (chunks to hand on): model.layers.3 to rank 2
n1=$(rank_allocs 3 1)
[ -n "$n1" ] && ok || bad "across ranks: no allocation count (rank 1 of 3)"
run_fault 3 1 $((n1 + 4)) >"$T/x3" 2>"$T/xe3"
rc=$?
check_eq "across ranks, generation: -np 3 rc ($(head -c 300 "$T/xe3"))" "$rc" 0
check_eq "across ranks, generation: -np 3 text = one process's" "$(cat "$T/x3")" "$(cat "$T/x1")"
check_grep "across ranks, generation: -np 3 step line" \
    '^fallback across ranks: during generation at token [0-9]+: rank 1 is out of memory .*: model\.layers\.3 moves to rank 2$' "$T/xe3"
# the last rank: nowhere to go
n1=$(rank_allocs 2 1)
[ -n "$n1" ] && ok || bad "across ranks: no allocation count (rank 1 of 2)"
t0=$(date +%s)
run_fault 2 1 $((n1 + 2)) >"$T/x4" 2>"$T/xe4"
rc=$?
check_eq "across ranks, last rank: exit 3 ($(head -c 300 "$T/xe4"))" "$rc" 3
check_eq "across ranks, last rank: ends within 10 s" "$(($(date +%s) - t0 < 10))" 1
check_eq "across ranks, last rank: one error line" "$(grep -c '^lyra: error: ' "$T/xe4")" 1
check_grep "across ranks, last rank: error line names it" \
    '^lyra: error: rank 1: cpu: the KV cache of layer [0-9]+ at position [0-9]+: out of memory on cpu' "$T/xe4"

"$LYRA" -q mkmodel -o "$T/slow.gguf" --dim 512 --layers 8 --vocab 8000 --type q8_0 || bad "mkmodel slow"
LYRA_MPI_TIMEOUT=5 "${MPIRUN[@]}" -np 2 "$LYRA" generate -m "$T/slow.gguf" -p hi -n 2000 --ctx 2048 \
    --threads 1 >"$T/out" 2>"$T/err" &
MP=$!
victim=""
for _ in $(seq 100); do  # wait until generation is under way (tokens on stdout)
    sleep 0.1
    [ -s "$T/out" ] || continue
    for p in $(ps -o pid= --ppid $MP); do
        tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && victim=$p
    done
    [ -n "$victim" ] && break
done
if [ -z "$victim" ]; then
    bad "kill: no rank 1 process found under mpirun ($MP)"
    kill $MP 2>/dev/null
    wait $MP
else
    kill -9 "$victim"
    t0=$(date +%s%N)
    ( sleep 20; kill -9 $MP 2>/dev/null ) &
    guard=$!
    wait $MP
    rc=$?
    t1=$(date +%s%N)
    kill $guard 2>/dev/null
    wait $guard 2>/dev/null
    [ "$rc" != 0 ] && ok || bad "kill: mpirun exit 0"
    ms=$(((t1 - t0) / 1000000))
    [ "$ms" -lt 10000 ] && ok || bad "kill: every rank ended after $ms ms, want < 10 s"
    check_grep "kill: the rank named" 'rank 1' "$T/err"
fi
finish
