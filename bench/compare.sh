#!/usr/bin/env bash
# compare.sh: lyra vs llama.cpp on the same CPU, the same files, in one run
# (docs/PERF.md records the output). Makes the 1.1B-shape random model in F16
# with `lyra mkmodel`, quantizes it to Q8_0 and Q4_0 with `lyra quantize`, then
# for each file runs `lyra bench --json` and bench/llamacpp_bench.py
# (llama-cpp-python, built from source once into bench/.venv-llama).
#   THREADS (default 2), PP (default 128,512), TG (default 64), TYPES (F16 Q8_0 Q4_0)
# Then lyra's tg at KV position DEPTH (default 4000; 0: skip) against position
# 100 (`lyra bench -d`), and load-to-first-token with peak RSS beside
# llama.cpp for the Q4_0 file (bench/first_token.sh; FIRST=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"; PP="${PP:-128,512}"; TG="${TG:-64}"; TYPES="${TYPES:-F16 Q8_0 Q4_0}"
LYRA=build/lyra
VENV="${LLAMA_VENV:-bench/.venv-llama}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import llama_cpp' 2>/dev/null; then
    echo "building llama-cpp-python into $VENV (once; slow)" >&2
    python3 -m venv "$VENV"
    # GGML_NATIVE=OFF with the ISA listed: on our VMs the CPU reports AMX but
    # AMX instructions fault (SIGILL), so a native build crashes on Q8_0/Q4_0
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
      -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON \
      -DGGML_AVX_VNNI=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$VENV/bin/pip" install -q llama-cpp-python
fi
M=bench/models; mkdir -p "$M"
[ -f "$M/1.1b-F16.gguf" ] || $LYRA mkmodel --preset 1.1b --type F16 -o "$M/1.1b-F16.gguf"
for t in $TYPES; do
    [ "$t" = F16 ] || [ -f "$M/1.1b-$t.gguf" ] || $LYRA quantize "$M/1.1b-F16.gguf" "$M/1.1b-$t.gguf" "$t" 2>/dev/null
done
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), threads $THREADS"
# the header names the sizes asked (PP, TG)
printf '%-6s %-10s' type engine
for p in ${PP//,/ }; do printf ' %10s' "pp$p"; done
printf ' %10s %10s %10s\n' "tg$TG" "bw GB/s" "tg/bound"
for t in $TYPES; do
    f="$M/1.1b-$t.gguf"
    lj=$($LYRA bench -m "$f" -p "$PP" -n "$TG" --threads "$THREADS" --json 2>/dev/null)
    cj=$("$VENV/bin/python" bench/llamacpp_bench.py "$f" -p "$PP" -n "$TG" --threads "$THREADS")
    python3 - "$t" "$lj" "$cj" <<'PY'
import json, sys
t, l, c = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
def pp(d):
    v = d["pp_tps"]; return v if isinstance(v, list) else [v]
lp, cp = pp(l), pp(c)
print(f"{t:<6} {'lyra':<10} " + " ".join(f"{x:10.1f}" for x in lp) + f" {l['tg_tps']:10.2f} {l['bandwidth_gbs']:10.2f} {l['tg_ratio']:10.2f}")
print(f"{t:<6} {'llama.cpp':<10} " + " ".join(f"{x:10.1f}" for x in cp) + f" {c['tg_tps']:10.2f} {'':>10} {c['tg_tps']/l['tg_bound_tps']:10.2f}")
print(f"{t:<6} {'ratio':<10} " + " ".join(f"{a/b:10.2f}" for a, b in zip(lp, cp)) + f" {l['tg_tps']/c['tg_tps']:10.2f}")
PY
done
DEPTH="${DEPTH:-4000}"
if [ "$DEPTH" != 0 ]; then
    echo
    printf '%-6s %12s %12s %8s\n' type "tg@d100" "tg@d$DEPTH" ratio
    for t in $TYPES; do
        f="$M/1.1b-$t.gguf"
        a=$($LYRA bench -m "$f" -p 16 -n "$TG" -d 100 --threads "$THREADS" --json 2>/dev/null)
        b=$($LYRA bench -m "$f" -p 16 -n "$TG" -d "$DEPTH" --threads "$THREADS" --json 2>/dev/null)
        python3 - "$t" "$a" "$b" <<'PY'
import json, sys
t, a, b = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"{t:<6} {a['tg_tps']:12.2f} {b['tg_tps']:12.2f} {b['tg_tps'] / a['tg_tps']:8.2f}")
PY
    done
fi
if [ "${FIRST:-1}" != 0 ] && [ -f "$M/1.1b-Q4_0.gguf" ]; then
    echo
    THREADS="$THREADS" LLAMA_VENV="$VENV" bench/first_token.sh "$M/1.1b-Q4_0.gguf"
fi
