#!/usr/bin/env bash
# gpu-check.sh: one prepared command for a lent GPU machine (see docs/gpu.md).
# Prepare here first with scripts/gpu-prep.sh, then run there with the device
# tool: carry [".deps", ".gpu-data"], command "scripts/gpu-check.sh [--quick]".
# Each stage has its own time cap and appends its result as soon as it ends to
#   $OUT/gpu-check.md    a table a person reads
#   $OUT/gpu-check.json  [{"name","result":"pass|fail|skip","figure","reference","seconds"}]
# Stages: environment, build, CPU test suite on the lent machine's CPU,
# stories260K golden, and the anchor (Hugging Face transformers + accelerate,
# 1.1B Llama shape, random init, fp16) on the GPU and with half the layers
# offloaded to the CPU. The CUDA issue adds lyra's own GPU stages here.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=0; [ "${1:-}" = "--quick" ] && QUICK=1
OUT="${OUT:-$ROOT/gpu-out}"; mkdir -p "$OUT"
MD="$OUT/gpu-check.md"; JS="$OUT/gpu-check.jsonl"
: > "$JS"
{ echo "# lyra gpu-check $(date -u +%Y-%m-%dT%H:%MZ)"; echo;
  echo "| check | result | figure | reference | seconds |"; echo "|---|---|---|---|---|"; } > "$MD"

row() { # name result figure reference seconds
    echo "| $1 | $2 | $3 | $4 | $5 |" >> "$MD"
    python3 - "$@" >> "$JS" <<'PY'
import json, sys
n, r, f, ref, s = sys.argv[1:6]
print(json.dumps({"name": n, "result": r, "figure": f, "reference": ref, "seconds": float(s or 0)}))
PY
    python3 -c 'import json,sys; print(json.dumps([json.loads(l) for l in open(sys.argv[1])], indent=1))' "$JS" > "$OUT/gpu-check.json"
}
# run_stage NAME CAP_SECONDS CMD...: runs CMD with a cap, logs to $OUT/NAME.log
run_stage() {
    local name="$1" cap="$2"; shift 2
    local t0=$(date +%s)
    timeout "$cap" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    STAGE_SECS=$(( $(date +%s) - t0 ))
    return $rc
}

# ---- environment: GPU, libraries (unpack carried .debs when missing) ----
GPU=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
row environment "$([ -n "$GPU" ] && echo pass || echo skip)" "${GPU:-no GPU seen}" "$(nproc) CPUs, $(uname -r)" 0
if ! pkg-config --exists jansson libpcre2-8 2>/dev/null; then
    mkdir -p /tmp/lyra-deps
    for f in .deps/*.deb; do dpkg -x "$f" /tmp/lyra-deps; done
    export PKG_CONFIG_PATH=/tmp/lyra-deps/usr/lib/x86_64-linux-gnu/pkgconfig
    export PKG_CONFIG_SYSROOT_DIR=/tmp/lyra-deps
    export LD_LIBRARY_PATH=/tmp/lyra-deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
    export LIBRARY_PATH=/tmp/lyra-deps/usr/lib/x86_64-linux-gnu
fi
if ! python3 -c 'import gguf' 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/lyra-site .deps/gguf-*.whl && export PYTHONPATH=/tmp/lyra-site
fi
export LYRA_SHARED_DIR="$ROOT/.gpu-data" LYRA_REQUIRE_SHARED=1

# ---- build (the present card only when CUDA is built) ----
if run_stage build 300 bash -c "cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DLYRA_CUDA=AUTO \
        -DCMAKE_CUDA_ARCHITECTURES=native -DLYRA_PYTHON=python3 && cmake --build build-gpu -j\$(nproc)"; then
    row build pass "$(build-gpu/lyra --version | tr '\n' ' ')" "" "$STAGE_SECS"
else
    row build fail "see build.log" "" "$STAGE_SECS"; exit 1
fi

# ---- the CPU test suite on this machine's CPU ----
if run_stage ctest 300 bash -c "cd build-gpu && ctest -j\$(nproc) --output-on-failure"; then r=pass; else r=fail; fi
row ctest-cpu "$r" "$(grep -E 'tests passed|tests failed' "$OUT/ctest.log" | tail -1)" "" "$STAGE_SECS"

# ---- stories260K greedy golden ----
G=.gpu-data/models/golden/stories260K_t0_n256_once_upon_a_time.txt
if run_stage golden 60 build-gpu/lyra generate -m .gpu-data/models/stories260K.gguf -p "Once upon a time" --temp 0 -n 200; then
    got="Once upon a time$(sed -n '1,$p' "$OUT/golden.log" | grep -v '^map:\|^seed:\|^lyra:' )"
    if [ "${got:0:200}" = "$(head -c 200 "$G")" ]; then r=pass; else r=fail; fi
else r=fail; fi
row golden-stories260K "$r" "greedy 200 tokens" "llama2.c run.c golden" "$STAGE_SECS"

# ---- the anchor: transformers + accelerate, 1.1B shape, fp16 ----
if [ -n "$GPU" ] && python3 -c 'import torch, transformers, accelerate' 2>/dev/null; then
    for split in all half; do
        if run_stage "anchor-$split" 240 python3 bench/hf_anchor.py --split "$split" --new-tokens 64; then
            row "anchor-hf-1.1b-fp16-$split" pass "$(tail -1 "$OUT/anchor-$split.log")" "transformers+accelerate" "$STAGE_SECS"
        else
            row "anchor-hf-1.1b-fp16-$split" fail "see anchor-$split.log" "" "$STAGE_SECS"
        fi
    done
else
    row anchor-hf-1.1b-fp16 skip "no GPU or no torch/transformers/accelerate" "" 0
fi
[ "$QUICK" = 1 ] || true  # the full stages come with the CUDA device (issue 6)
echo "results: $MD"; cat "$MD"
