#!/usr/bin/env bash
# gpu-ab.sh: one prepared command for a lent GPU machine: the CUDA decode
# matmul kernels side by side (LYRA_CUDA_MATVEC=v3, v2 (the default) and v1:
# docs/gpu.md). Prepare here with scripts/gpu-prep.sh, then run there with the
# device tool: carry [".deps", ".gpu-data"], command "scripts/gpu-ab.sh",
# timeout_s 260 (the script stops its stages at LYRA_GPU_LIMIT, 230 s; the
# essential ones, tests and lyra bench, end within about 150 s).
#
# Stages, in order of what matters most, each capped by `timeout` (and by
# the time left), results appended as they end:
#   build (native architecture; lyra_cli, the CUDA tests, bench_matvec);
#   test_cuda_math / test_cuda_ops / test_cuda_forward under each kernel;
#   the card's copy bandwidth (bench/gpu_tool.cu bw);
#   lyra mkmodel 7b Q8_0 and 1.1b Q8_0, Q4_0, F16; lyra bench -p 128 -n 64
#   --gpu-layers all for each under each kernel (tg tok/s, % of the copy
#   bound = tg / (bandwidth / bytes per token));
#   bench_matvec: each kernel alone (big and 7B shapes, GB/s; kernels 2 and
#   3 must print the same sums);
#   ncu (when installed): the matvec kernels of the 7B Q8_0 decode, DRAM
#   throughput and time, default kernel and v1.
# Outputs: $OUT/gpu-ab.md (tables a person reads) and $OUT/gpu-ab.log (every
# stage's output). Dry run elsewhere: LYRA_GPU_ARCHS=90 (no GPU: the GPU
# stages skip), LYRA_GPU_BUILD (build folder, default build-gpu),
# LYRA_GPU_WORK (models, default /tmp/lyra-gpu-ab), LYRA_GPU_LIMIT,
# LYRA_AB_KERNELS (default "v3 v2 v1"), LYRA_AB_MODELS (default "7b:Q8_0
# 1.1b:Q8_0 1.1b:Q4_0 1.1b:F16"), LYRA_AB_FORCE=1 (run the GPU stages
# without a GPU: tests this script with e.g. LYRA_AB_MODELS=tiny:Q8_0).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
T0=$(date +%s)
LIMIT=${LYRA_GPU_LIMIT:-230}
OUT="${OUT:-$ROOT/gpu-out}"; mkdir -p "$OUT"
WORK="${LYRA_GPU_WORK:-/tmp/lyra-gpu-ab}"; mkdir -p "$WORK"
BD=${LYRA_GPU_BUILD:-build-gpu}
KERNELS=${LYRA_AB_KERNELS:-v3 v2 v1}
MODELS=${LYRA_AB_MODELS:-7b:Q8_0 1.1b:Q8_0 1.1b:Q4_0 1.1b:F16}
MD="$OUT/gpu-ab.md"; LOG="$OUT/gpu-ab.log"
: > "$LOG"
echo "# lyra gpu-ab $(date -u +%Y-%m-%dT%H:%MZ) $(git rev-parse --short HEAD 2>/dev/null)" > "$MD"

left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
# run_stage NAME CAP CMD...: CMD capped at min(CAP, time left); output in
# $WORK/NAME.out / .err, both appended to the log; CMD's status, 124 when
# the cap stopped it, 125 when no time was left.
run_stage() {
    local name="$1" cap="$2"; shift 2
    local l; l=$(left)
    [ "$l" -lt "$cap" ] && cap=$l
    STAGE_SECS=0
    : > "$WORK/$name.out"; : > "$WORK/$name.err"
    if [ "$cap" -lt 5 ]; then
        echo "== $name: skipped, no time left" >> "$LOG"
        return 125
    fi
    local t; t=$(date +%s)
    timeout "$cap" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err"
    local rc=$?
    STAGE_SECS=$(( $(date +%s) - t ))
    { echo "== $name (exit $rc, ${STAGE_SECS}s, cap ${cap}s): $*"; cat "$WORK/$name.out";
      echo "-- stderr"; tail -c 20000 "$WORK/$name.err"; } >> "$LOG"
    return $rc
}
result_of() { case "$1" in 0) echo pass;; 125|77) echo skip;; 124) echo timeout;; *) echo "fail ($1)";; esac; }
counts() { grep -E '^([0-9]+ passed, [0-9]+ failed|SKIPPED:)' "$WORK/$1.out" | tail -1; }
md() { echo "$*" >> "$MD"; }

# ---- environment ----
GPU=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
md; md "card: ${GPU:-no GPU seen}; $(nproc) CPUs; $(nvcc --version 2>/dev/null | tail -1); kernels: $KERNELS"
. scripts/gpu-env.sh # the carried .debs and the gguf wheel, when missing
export LYRA_SHARED_DIR="$ROOT/.gpu-data" LYRA_REQUIRE_SHARED=1
unset LYRA_SIM_GPUS LYRA_CUDA_DEVICES LYRA_CUDA_MATVEC
B=$BD/lyra
NP=$(nproc)

# ---- build ----
if run_stage build 150 bash -c "cmake -S . -B $BD -DCMAKE_BUILD_TYPE=Release -DLYRA_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=${LYRA_GPU_ARCHS:-native} -DLYRA_PYTHON=python3 >/dev/null && \
        cmake --build $BD -j$NP --target lyra_cli test_cuda_math test_cuda_ops test_cuda_forward bench_matvec"; then
    md "build: $($B --version | tail -1) (${STAGE_SECS}s)"
else
    md "build: FAILED (see gpu-ab.log)"; tail -30 "$WORK/build.err" >> "$MD"; exit 1
fi

# ---- the CUDA tests under each kernel ----
md; md "## Tests"; md
md "| kernel | test_cuda_math | test_cuda_ops | test_cuda_forward | matmul worst rel rms | seconds |"
md "|---|---|---|---|---|---|"
declare -A TESTS
for k in $KERNELS; do
    cells="" secs=0 all=pass
    for t in math ops forward; do
        run_stage "test-$t-$k" 60 env LYRA_CUDA_MATVEC=$k $BD/tests/test_cuda_$t; rc=$?
        secs=$((secs + STAGE_SECS))
        r=$(result_of $rc); [ "$r" = pass ] || all=$r
        cells="$cells | $r: $(counts test-$t-$k)"
    done
    TESTS[$k]=$all
    md "| $k$cells | $(grep -E '^matmul: worst' "$WORK/test-ops-$k.out" | sed 's/matmul: worst rel rms //') | $secs |"
done

if [ -z "$GPU" ] && [ "${LYRA_AB_FORCE:-0}" != 1 ]; then
    md; md "no GPU: the copy bandwidth, the benches and the profile are skipped"
    echo "results: $MD"; cat "$MD"; exit 0
fi

# ---- copy bandwidth ----
BW=0
if run_stage gpu-tool 60 nvcc -O2 -arch=native -o "$WORK/gpu_tool" bench/gpu_tool.cu &&
   run_stage copy-bw 30 "$WORK/gpu_tool" bw 2048; then
    BW=$(awk '/^copy_gbs/ {print $2}' "$WORK/copy-bw.out")
fi
md; md "copy bandwidth (bench/gpu_tool.cu bw 2048, read + write): $BW GB/s"

# ---- lyra bench under each kernel ----
md; md "## Decode, all layers on the GPU (lyra bench -p 128 -n 64)"; md
md "| kernel | model | tg tok/s | % of copy bound | pp128 tok/s | tests | seconds |"
md "|---|---|---|---|---|---|---|"
for m in $MODELS; do
    p=${m%%:*}; t=${m#*:}; f="$WORK/m-$p-$t.gguf"
    if [ ! -s "$f" ]; then
        run_stage "mkmodel-$p-$t" 60 $B mkmodel -o "$f" --preset "$p" --type "$t" -t "$NP" -q ||
            { rm -f "$f"; md "| - | $p $t | mkmodel $(result_of $?) | | | | $STAGE_SECS |"; continue; }
    fi
    for k in $KERNELS; do
        name="bench-$p-$t-$k"
        if run_stage "$name" 40 env LYRA_CUDA_MATVEC=$k $B bench -m "$f" -p 128 -n 64 --json --gpu-layers all; then
            read -r tg pp bpt < <(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("%.1f %.1f %d" % (j["tg_tps"], j["pp_tps"][0], j["bytes_per_token"]))' "$WORK/$name.out")
            pct=$(python3 -c "b=$BW*1e9/$bpt if $BW else 0; print(f'{100*$tg/b:.1f}% of {b:.1f}' if b else '?')")
            grep -qE '^map: 0 \(gpu\)' "$WORK/$name.err" || pct="$pct (GPU 0 NOT USED)"
            md "| $k | $p $t | $tg | $pct | $pp | ${TESTS[$k]} | $STAGE_SECS |"
        else
            md "| $k | $p $t | $(result_of $?) | | | ${TESTS[$k]} | $STAGE_SECS |"
        fi
    done
done

# ---- each kernel alone ----
md; md "## bench_matvec (one token; GB/s of weights; same sums for v2 and v3)"; md
run_stage bench-matvec 40 $BD/bench_matvec q8_0,q4_0,f16,q4_k \
    16384x16384,4096x4096,4096x11008 "$(echo $KERNELS | tr ' ' ,)"; rc=$?
md '```'; cat "$WORK/bench-matvec.out" >> "$MD"; md "($(result_of $rc), ${STAGE_SECS}s)"; md '```'

# ---- ncu: the matvec kernels of the 7B Q8_0 decode ----
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
md; md "## ncu (7B Q8_0 decode, the first 4 matvec launches)"; md
if [ -n "$NCU" ] && [ -s "$WORK/m-7b-Q8_0.gguf" ]; then
    for k in $(echo $KERNELS | awk '{print $1}') v1; do
        run_stage "ncu-$k" 40 env LYRA_CUDA_MATVEC=$k "$NCU" --clock-control none -k regex:k_matvec -c 4 \
            --metrics dram__throughput.avg.pct_of_peak_sustained_elapsed,gpu__time_duration.sum \
            $B bench -m "$WORK/m-7b-Q8_0.gguf" -p 16 -n 4 --gpu-layers all; rc=$?
        md "### $k ($(result_of $rc), ${STAGE_SECS}s)"; md '```'
        grep -E 'k_matvec|dram__throughput|gpu__time_duration|==ERROR==|==WARNING==' "$WORK/ncu-$k.out" "$WORK/ncu-$k.err" \
            | sed 's|^[^:]*:||' | head -40 >> "$MD"
        md '```'
    done
else
    md "no ncu on this machine (or no 7B model)"
fi
md; md "total $(( $(date +%s) - T0 ))s"
echo "results: $MD"; cat "$MD"
