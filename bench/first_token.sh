#!/usr/bin/env bash
# first_token.sh: load-to-first-token on a warm page cache, lyra beside
# llama.cpp (llama-cpp-python), for one GGUF: the wall time of a whole
# process that loads the model, evaluates a 1-token prompt and generates one
# token, and its peak RSS; median of RUNS (default 5), the engines
# alternating. For llama.cpp also the time inside Python (Llama() and the
# first token, without the interpreter's start and `import llama_cpp`).
#   bench/first_token.sh MODEL.gguf        (THREADS default 2; LLAMA_VENV)
set -euo pipefail
cd "$(dirname "$0")/.."
F="$1"; THREADS="${THREADS:-2}"; RUNS="${RUNS:-5}"
VENV="${LLAMA_VENV:-bench/.venv-llama}"
LYRA=build/lyra
cat "$F" >/dev/null # warm the page cache
TM="$(mktemp)"; trap 'rm -f "$TM"' EXIT
lw=(); lr=(); cw=(); cr=(); ci=()
for r in $(seq "$RUNS"); do
    /usr/bin/time -o "$TM" -f "%e %M" "$LYRA" -q generate -m "$F" -p x -n 1 -t "$THREADS" \
        --no-config >/dev/null
    read -r w m <"$TM"
    lw+=("$w"); lr+=("$m")
    if [ -x "$VENV/bin/python" ]; then
        out=$(/usr/bin/time -o "$TM" -f "%e %M" "$VENV/bin/python" - "$F" "$THREADS" <<'PY'
import sys, time
t0 = time.perf_counter()
import llama_cpp
t1 = time.perf_counter()
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=64, n_threads=int(sys.argv[2]),
                      n_threads_batch=int(sys.argv[2]), verbose=False)
llm("x", max_tokens=1)
print("inner", time.perf_counter() - t1)
PY
        )
        ci+=("$(echo "$out" | awk '/^inner/ {print $2}')")
        read -r w m <"$TM"
        cw+=("$w"); cr+=("$m")
    fi
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "load to first token, $F, threads $THREADS, median of $RUNS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
echo "lyra       process $(med "${lw[@]}") s   peak RSS $(( $(med "${lr[@]}") / 1024 )) MiB"
[ ${#cw[@]} -gt 0 ] &&
    echo "llama.cpp  process $(med "${cw[@]}") s   peak RSS $(( $(med "${cr[@]}") / 1024 )) MiB   (in Python: load + first token $(med "${ci[@]}") s)"
echo "file       $(( $(stat -c %s "$F") / 1048576 )) MiB"
