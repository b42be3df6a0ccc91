# test_cli_bench.sh: `lyra bench` runs, its --json output parses (python -m
# json.tool) with every documented field, consistent values (tg_ratio =
# tg_tps / tg_bound_tps, tg_bound_tps = bandwidth / bytes per token, the
# bytes per token match the file's tensor sizes), the human table, and -d
# (tests from a KV position: depth and fill_s in the JSON, the bytes per
# token counting the KV cache from that position), and --profile (the op
# table: every forward-pass op of the tg runs, per token).
source "$(dirname "$0")/lib.sh"
"$PY" -c "import numpy, gguf" 2>/dev/null ||
    { echo "SKIPPED: $PY has no numpy/gguf (set LYRA_PYTHON, e.g. a venv with pip install numpy gguf)"; exit 77; }

shared_path S260 models/stories260K.gguf

"$LYRA" bench -m "$S260" -p 8,16 -n 8 --threads 1 --json >"$T/j" 2>"$T/e"
check_eq "bench --json rc" "$?" 0
"$PY" -m json.tool "$T/j" >/dev/null
check_eq "json.tool parses" "$?" 0
r=$("$PY" - "$T/j" "$S260" <<'EOF'
import json, sys
import gguf
j = json.load(open(sys.argv[1]))
errs = []
for k, t in [("model_bytes", int), ("threads", int), ("cpu", str), ("pp_tokens", list),
             ("pp_tps", list), ("tg_tokens", int), ("tg_tps", float), ("bandwidth_gbs", float),
             ("tg_bound_tps", float), ("tg_ratio", float), ("bytes_per_token", float)]:
    if not isinstance(j.get(k), t):
        errs.append("%s: %r" % (k, j.get(k)))
if errs:
    print("; ".join(errs)); sys.exit()
if j["pp_tokens"] != [8, 16] or len(j["pp_tps"]) != 2 or j["tg_tokens"] != 8 or j["threads"] != 1:
    errs.append("sizes/threads %r %r %r %r" % (j["pp_tokens"], j["pp_tps"], j["tg_tokens"], j["threads"]))
if not all(x > 0 for x in j["pp_tps"] + [j["tg_tps"], j["bandwidth_gbs"], j["tg_bound_tps"]]):
    errs.append("non-positive speeds")
if not j["cpu"]:
    errs.append("empty cpu")
if abs(j["tg_ratio"] - j["tg_tps"] / j["tg_bound_tps"]) > 1e-6 * j["tg_ratio"]:
    errs.append("tg_ratio != tg_tps / tg_bound_tps")
if abs(j["tg_bound_tps"] - j["bandwidth_gbs"] * 1e9 / j["bytes_per_token"]) > 1e-6 * j["tg_bound_tps"]:
    errs.append("tg_bound_tps != bandwidth / bytes_per_token")
# bytes per token from the file: all tensors but token_embd, one row of it,
# K and V (f16) for positions 0..p of every layer, averaged over p = 0..7
r = gguf.GGUFReader(sys.argv[2])
w = sum(int(t.n_bytes) for t in r.tensors if t.name != "token_embd.weight")
emb = [t for t in r.tensors if t.name == "token_embd.weight"][0]
w += int(emb.n_bytes) // int(emb.shape[1])
f = {k: v.contents() for k, v in r.fields.items()}
nl, ne, nh = f["llama.block_count"], f["llama.embedding_length"], f["llama.attention.head_count"]
kv = ne // nh * f["llama.attention.head_count_kv"]
want = w + sum(nl * 2 * (p + 1) * kv * 2 for p in range(8)) / 8
if abs(j["bytes_per_token"] - want) > 1:
    errs.append("bytes_per_token %r want %r" % (j["bytes_per_token"], want))
if j["model_bytes"] != sum(int(t.n_bytes) for t in r.tensors):
    errs.append("model_bytes %r" % j["model_bytes"])
print("; ".join(errs) if errs else "ok")
EOF
)
check_eq "bench json fields" "$r" "ok"
check_grep "progress on stderr" '^bench: tg8' "$T/e"

"$LYRA" -q bench -m "$S260" -p 8 -n 4 -d 3 --threads 1 >"$T/h" 2>"$T/e"
check_eq "bench table rc" "$?" 0
check_grep "table depth" '^depth: every test from KV position 3 ' "$T/h"
check_grep "table pp" '^pp8 +8 +[0-9.]+$' "$T/h"
check_grep "table tg" '^tg4 +4 +[0-9.]+$' "$T/h"
check_grep "table bandwidth" '^memory read bandwidth: [0-9.]+ GB/s' "$T/h"
check_eq "-q bench: stderr empty" "$(wc -c <"$T/e")" 0

"$LYRA" -q bench -m "$S260" -p 4 -n 4 -d 20 --threads 1 --json >"$T/jd" 2>"$T/e"
check_eq "bench -d rc" "$?" 0
r=$("$PY" - "$T/j" "$T/jd" "$S260" <<'EOF'
import json, sys
import gguf
j0, j = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
r = gguf.GGUFReader(sys.argv[3])
f = {k: v.contents() for k, v in r.fields.items()}
nl, ne, nh = f["llama.block_count"], f["llama.embedding_length"], f["llama.attention.head_count"]
kv = ne // nh * f["llama.attention.head_count_kv"]
# depth 20, 4 tokens: positions 20..23 against 0..7 in the first run
want = j0["bytes_per_token"] - sum(nl * 2 * (p + 1) * kv * 2 for p in range(8)) / 8 \
    + sum(nl * 2 * (p + 1) * kv * 2 for p in range(20, 24)) / 4
errs = []
if j.get("depth") != 20 or not isinstance(j.get("fill_s"), float) or j["fill_s"] < 0:
    errs.append("depth/fill_s %r %r" % (j.get("depth"), j.get("fill_s")))
if abs(j["bytes_per_token"] - want) > 1:
    errs.append("bytes_per_token %r want %r" % (j["bytes_per_token"], want))
if "depth" in j0:
    errs.append("depth without -d")
print("; ".join(errs) if errs else "ok")
EOF
)
check_eq "bench -d json" "$r" "ok"

# --profile: the op table after the results (tg 4: warm-up + 5 runs = 24 tokens)
"$LYRA" -q bench -m "$S260" -p 4 -n 4 --threads 1 --profile >"$T/p" 2>"$T/e"
check_eq "bench --profile rc" "$?" 0
check_grep "profile header" '^op profile \(tg runs\):$' "$T/p"
check_grep "profile device" '^device cpu: op time per token \(24 tokens\): [0-9.]+ ms wall, [0-9.]+ ms CPU$' "$T/p"
check_grep "profile head" '^head matmul [A-Z0-9_]+ [0-9]+x[0-9]+ +1\.0 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+$' "$T/p"
check_grep "profile ffn" '^ffn swiglu +[0-9.]+ ' "$T/p"
check_grep "profile totals" '^attn +\(total\) ' "$T/p"
"$LYRA" -q bench -m "$S260" -p 4 -n 4 --threads 2 --profile --json >"$T/pj" 2>"$T/e"
check_eq "bench --profile --json rc" "$?" 0
"$PY" -m json.tool "$T/pj" >/dev/null
check_eq "--profile --json: stdout is the JSON" "$?" 0
check_grep "--profile --json: the table on stderr" '^embed get_rows ' "$T/e"

finish
