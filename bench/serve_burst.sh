#!/usr/bin/env bash
# serve_burst.sh: aggregate tok/s of S concurrent non-streamed completions
# against `lyra serve --parallel S` (docs/PERF.md, Server throughput: used to
# A/B two builds, alternating). No Python client: curl and python3 only.
#   bench/serve_burst.sh LYRA MODEL [PORT] [S] [TOKENS] [THREADS]
set -euo pipefail
BIN="$1"; M="$2"; PORT="${3:-8101}"; S="${4:-16}"; N="${5:-64}"; THREADS="${6:-2}"
OUT="$(mktemp -d)"
"$BIN" serve -m "$M" --parallel "$S" --threads "$THREADS" --port "$PORT" -c 2048 --no-config \
    >"$OUT/serve.log" 2>&1 &
SP=$!
trap 'kill $SP 2>/dev/null || true; wait $SP 2>/dev/null || true; rm -rf "$OUT"' EXIT
for _ in $(seq 120); do
    curl -s "localhost:$PORT/health" | grep -q '"ok"' && break
    kill -0 $SP 2>/dev/null || { cat "$OUT/serve.log" >&2; exit 1; }
    sleep 1
done
req() {
    curl -s "localhost:$PORT/v1/completions" -H 'Content-Type: application/json' \
        -d "{\"prompt\":\"once upon a time number $1 there was\",\"max_tokens\":$N,\"temperature\":0}" \
        -o "$OUT/r$1.json"
}
req 0 # warm-up
t0=$(date +%s.%N); pids=()
for i in $(seq 1 "$S"); do req "$i" & pids+=($!); done
wait "${pids[@]}"
t1=$(date +%s.%N)
python3 - "$OUT" "$S" "$t0" "$t1" "$BIN" <<'PY'
import json, sys
d, s, t0, t1, b = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
n = sum(json.load(open(f"{d}/r{i}.json"))["usage"]["completion_tokens"] for i in range(1, s + 1))
print(f"{b}: {s} streams, {n} tokens, {n / (t1 - t0):.1f} tok/s")
PY
