#!/usr/bin/env bash
# arch.sh: decode speed of every architecture against Llama for the same
# bytes of weights (docs/PERF.md records the output). For each architecture
# makes its 1B-class random model (`lyra mkmodel --arch A --preset 1b --type
# F16`), quantizes it with `lyra quantize` to each type, runs `lyra bench
# --json` on it and prints a Markdown table: decode tok/s, the bytes the
# engine reads per generated token, their product (the effective read
# bandwidth, GB/s) and that bandwidth relative to Llama's at the same type
# (goal: >= 0.90; Llama is measured first and last, and its mean is used).
#   ARCHS (default: all), TYPES (default Q4_0 Q8_0), PRESET (default 1b),
#   THREADS (default 2), PP (default 16), TG (default 64), REPEAT (default
#   1; the best decode rate of REPEAT runs is kept, for a busy machine),
#   KEEP_F16=1 keeps the F16 files (bench/models/ARCH-PRESET-TYPE.gguf),
#   FRESH=1 rewrites each model file (cp, then mv over it) before its runs,
#   so its page-cache pages are new (docs/PERF.md: a file whose pages were
#   evicted and read back decoded 20-25% slower per byte than a fresh copy
#   of it on the 2-core VM), PROFILE=DIR writes each run's `lyra bench
#   --profile` op table (the best run's) to DIR/ARCH-TYPE.txt, MODELS_DIR
#   (default bench/models) where the models are
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHS="${ARCHS:-llama mistral phi2 qwen2 qwen3 gemma gemma2 gemma3 phi3}"
TYPES="${TYPES:-Q4_0 Q8_0}"; PRESET="${PRESET:-1b}"
THREADS="${THREADS:-2}"; PP="${PP:-16}"; TG="${TG:-64}"; REPEAT="${REPEAT:-1}"
LYRA="${LYRA:-build/lyra}"
M="${MODELS_DIR:-bench/models}"; mkdir -p "$M"
case " $ARCHS " in *" llama "*) ;; *) ARCHS="llama $ARCHS" ;; esac
for a in $ARCHS; do
    f16="$M/$a-$PRESET-F16.gguf"
    for t in $TYPES; do
        f="$M/$a-$PRESET-$t.gguf"
        [ -f "$f" ] && continue
        [ -f "$f16" ] || $LYRA -q mkmodel --arch "$a" --preset "$PRESET" --type F16 -o "$f16"
        $LYRA -q quantize "$f16" "$f" "$t"
    done
    [ "${KEEP_F16:-0}" = 1 ] || rm -f "$f16"
done
J="$(mktemp -d)"; trap 'rm -rf "$J"' EXIT
PROF=(); [ -n "${PROFILE:-}" ] && { mkdir -p "$PROFILE"; PROF=(--profile); }
bench() { # ARCH TYPE OUT: the run with the best decode rate of REPEAT
    local best=-1 r t f="$M/$1-$PRESET-$2.gguf" err="$3.err"
    # (not 2>/dev/stderr: when stderr is a file, that reopens and truncates it)
    [ -n "${PROFILE:-}" ] && err="$3.prof"
    if [ "${FRESH:-0}" = 1 ]; then cp "$f" "$f.fresh" && mv "$f.fresh" "$f"; fi
    for r in $(seq "$REPEAT"); do
        if ! $LYRA -q bench -m "$f" -p "$PP" -n "$TG" --threads "$THREADS" --json --no-config "${PROF[@]}" \
            >"$3.try" 2>"$err"; then
            cat "$err" >&2; exit 1
        fi
        t=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tg_tps"])' "$3.try")
        if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)' "$t" "$best"; then
            best=$t; mv "$3.try" "$3"
            [ -n "${PROFILE:-}" ] && cp "$3.prof" "$PROFILE/$1-$2.txt"
        fi
    done
    rm -f "$3.try" "$3.prof" "$3.err"
}
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //');" \
     "threads $THREADS; load average before: $(cut -d' ' -f1-3 /proc/loadavg); FRESH=${FRESH:-0}"
echo "commands: lyra mkmodel --arch A --preset $PRESET --type F16; lyra quantize F16 OUT TYPE;" \
     "lyra bench -m OUT -p $PP -n $TG --threads $THREADS --json (best of $REPEAT)"
echo
for t in $TYPES; do
    bench llama "$t" "$J/llama-$t-0.json"
    for a in $ARCHS; do
        [ "$a" = llama ] || bench "$a" "$t" "$J/$a-$t.json"
    done
    bench llama "$t" "$J/llama-$t-1.json"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
python3 - "$J" "$TYPES" "$ARCHS" <<'PY'
import json, os, sys
d, types, archs = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
rd = lambda p: json.load(open(os.path.join(d, p)))
print("| arch | type | file GB | read/token MB | tg tok/s | effective GB/s | tg/bound | vs Llama |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for t in types:
    ll = [rd("llama-%s-%d.json" % (t, i)) for i in (0, 1)]
    lbw = sum(x["tg_tps"] * x["bytes_per_token"] for x in ll) / 2
    for a in archs:
        runs = ll if a == "llama" else [rd("%s-%s.json" % (a, t))]
        tps = sum(x["tg_tps"] for x in runs) / len(runs)
        bpt = sum(x["bytes_per_token"] for x in runs) / len(runs)
        ratio = sum(x["tg_ratio"] for x in runs) / len(runs)
        print("| %s | %s | %.2f | %.0f | %.2f | %.2f | %.2f | %.2f |" % (
            a, t, runs[0]["model_bytes"] / 1e9, bpt / 1e6, tps, tps * bpt / 1e9, ratio, tps * bpt / lbw))
PY
