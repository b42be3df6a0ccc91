# test_cli_plan.sh: `lyra plan` and `lyra devices` with simulated GPUs: the
# JSON format (devices GPUs/cpu/disk, every module in the map, in model
# order), determinism (5 runs, same bytes), strategies and flags, the table,
# and every bad input of the sharding issue (exit 2, one stderr line naming
# the entry, no stdout).
source "$(dirname "$0")/lib.sh"

shared_path S260 models/stories260K.gguf
PY="${LYRA_PYTHON:-python3}"
export LYRA_SIM_GPUS=1MiB,512KiB
MM=(--max-memory cpu=64MiB)   # a fixed CPU budget: the plan does not depend on free RAM

# --- JSON shape ------------------------------------------------------------
"$LYRA" -q plan -m "$S260" "${MM[@]}" --ctx 512 --batch 64 --json >"$T/p.json" 2>"$T/err"
check_eq "plan --json rc" "$?" 0
r=$("$PY" - "$T/p.json" <<'PYEOF'
import json, sys
p = json.load(open(sys.argv[1]))
ids = [d["id"] for d in p["devices"]]
assert ids == ["0", "1", "cpu", "disk"], ids
for d in p["devices"]:
    for k in ("id", "kind", "backend", "free", "reserve", "budget", "weights", "kv", "scratch", "total"):
        assert k in d, k
    assert d["total"] == d["weights"] + d["kv"] + d["scratch"], d
    assert d["kind"] == "disk" or d["total"] <= d["budget"], d
assert p["ctx"] == 512 and p["batch"] == 64
mods = list(p["map"].keys())
assert mods == ["model.embed_tokens"] + ["model.layers.%d" % i for i in range(5)] + ["model.norm", "lm_head"], mods
assert all(isinstance(v, str) for v in p["map"].values())
assert p["devices"][2]["budget"] == 64 * 1024 * 1024
print("ok")
PYEOF
)
check_eq "plan json shape" "$r" ok

# --- determinism: 5 runs, same bytes ---------------------------------------
for i in 1 2 3 4 5; do
    "$LYRA" -q plan -m "$S260" "${MM[@]}" --ctx 512 --json | "$PY" -c \
        'import json,sys; p=json.load(sys.stdin); [d.pop("free") for d in p["devices"] if d["id"]=="cpu"]; print(json.dumps(p))' \
        >"$T/d$i.json"
done
for i in 2 3 4 5; do
    if cmp -s "$T/d1.json" "$T/d$i.json"; then ok; else bad "plan run $i differs from run 1"; fi
done
# the GPUs' free memory is fixed too: whole JSON identical apart from cpu free
"$LYRA" -q plan -m "$S260" "${MM[@]}" --json >"$T/a.json"
"$LYRA" -q plan -m "$S260" "${MM[@]}" --json >"$T/b.json"
check_eq "plan json same bytes (cpu free aside)" \
    "$(sed 's/"free":[0-9]*,"reserve":[0-9]*,"budget":67108864//' "$T/a.json" | md5sum)" \
    "$(sed 's/"free":[0-9]*,"reserve":[0-9]*,"budget":67108864//' "$T/b.json" | md5sum)"

# --- strategies and flags ----------------------------------------------------
mapof() { "$LYRA" -q plan -m "$S260" "${MM[@]}" --ctx 256 --batch 32 --json "$@" | "$PY" -c \
    'import json,sys; print(" ".join(json.load(sys.stdin)["map"].values()))'; }
check_eq "cpu strategy" "$(mapof --device-map cpu)" "cpu cpu cpu cpu cpu cpu cpu cpu"
check_eq "all on GPU 0" "$(LYRA_SIM_GPUS=4MiB mapof --device-map 0)" "0 0 0 0 0 0 0 0"
check_eq "cuda:1" "$(LYRA_SIM_GPUS=1MiB,2MiB mapof --device-map cuda:1)" "1 1 1 1 1 1 1 1"
check_eq "gpu-layers 2" "$(LYRA_SIM_GPUS=4MiB mapof --gpu-layers 2)" "0 0 0 cpu cpu cpu cpu cpu"
check_eq "gpu-layers all" "$(LYRA_SIM_GPUS=4MiB mapof --gpu-layers all)" "0 0 0 0 0 0 0 0"
check_eq "gpu-layers 4 split 1,1" "$(LYRA_SIM_GPUS=4MiB,4MiB mapof --gpu-layers 4 --tensor-split 1,1)" \
    "0 0 0 1 1 cpu cpu cpu"
check_eq "no GPUs: auto = cpu" "$(LYRA_SIM_GPUS= mapof)" "cpu cpu cpu cpu cpu cpu cpu cpu"
echo '{"model.embed_tokens": 0, "model.layers": "cpu", "model.layers.2": "1", "blk.4": "disk", "": "cpu"}' >"$T/m.json"
check_eq "explicit map (aliases, longest key)" "$(mapof --device-map "$T/m.json")" "0 cpu cpu 1 cpu disk cpu cpu"
# a CPU budget below the model: the tail goes to disk
m=$(LYRA_SIM_GPUS= "$LYRA" -q plan -m "$S260" --max-memory cpu=1000KiB --ctx 256 --batch 32 --json | "$PY" -c \
    'import json,sys; print(" ".join(json.load(sys.stdin)["map"].values()))')
case "$m" in *disk*) ok ;; *) bad "cpu budget below the model: no disk modules: $m" ;; esac

# --- table ---------------------------------------------------------------------
"$LYRA" -q plan -m "$S260" "${MM[@]}" --ctx 512 >"$T/t.txt"
check_eq "plan table rc" "$?" 0
check_grep "table header" '^device +kind +backend +free +reserve +budget +weights +kv +scratch +total +modules' "$T/t.txt"
check_grep "table ranges" 'model\.layers\.[0-9]+-[0-9]+' "$T/t.txt"
check_grep "table disk row" '^disk ' "$T/t.txt"
"$LYRA" plan -m "$S260" "${MM[@]}" >/dev/null 2>"$T/err"
check_grep "LYRA_SIM_GPUS said on stderr" 'LYRA_SIM_GPUS is set: 2 simulated GPUs' "$T/err"

# --- devices ---------------------------------------------------------------------
"$LYRA" -q devices --json >"$T/dev.json"
check_eq "devices rc" "$?" 0
r=$("$PY" -c '
import json,sys
d=json.load(open(sys.argv[1]))["devices"]
assert [x["id"] for x in d]==["0","1","cpu","disk"], d
assert d[0]["free"]==1048576 and d[1]["free"]==524288 and d[0]["budget"]==1048576
assert all("name" in x and "backend" in x and "reserve" in x for x in d)
print("ok")' "$T/dev.json")
check_eq "devices json" "$r" ok
LYRA_SIM_GPUS=500KiB@64MiB "$LYRA" -q devices --json >"$T/dev2.json"
check_grep "CAP@REPORTED: free = reported" '"id":"0","kind":"gpu","backend":"sim","free":67108864' "$T/dev2.json"
"$LYRA" -q devices >"$T/dev.txt"
check_grep "devices table" '^0 +gpu +sim' "$T/dev.txt"

# --- help texts are in docs/cli.md ----------------------------------------------
for c in plan devices; do
    "$LYRA" $c --help >"$T/out" 2>"$T/err"
    check_eq "help $c rc" "$?" 0
    r=$("$PY" -c "import sys; print('ok' if open(sys.argv[1]).read() in open(sys.argv[2]).read() else 'missing')" \
        "$T/out" "$SRC/docs/cli.md")
    check_eq "docs/cli.md has lyra $c --help" "$r" ok
done

# --- bad input: exit 2, one line naming the entry, nothing on stdout ------------
expect_err() {
    local name="$1" code="$2" pat="$3"; shift 3
    "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    check_eq "$name: exit code" "$rc" "$code"
    check_eq "$name: stdout" "$(wc -c <"$T/out")" 0
    check_eq "$name: stderr lines" "$(wc -l <"$T/err")" 1
    check_grep "$name: message" "^lyra: error: $pat" "$T/err"
}
P=("$LYRA" -q plan -m "$S260")
expect_err "unknown device id" 2 '--max-memory: 3: unknown device' "${P[@]}" --max-memory 3=1GiB
expect_err "unknown device key" 2 '--max-memory.*gpu0' "${P[@]}" --max-memory gpu0=1GiB
expect_err "reserve unknown id" 2 '--reserve: 2: unknown device' "${P[@]}" --reserve 2=1GiB
expect_err "malformed size (bits)" 2 '--max-memory.*bits\? write 6GB or 6GiB' "${P[@]}" --max-memory cpu=6Gb
expect_err "size without unit" 2 '--max-memory.*"6"' "${P[@]}" --max-memory 0=6
expect_err "budget too small" 2 '.*fits nowhere|.*budget' "${P[@]}" --device-map cpu --max-memory cpu=10KiB
echo '{"model.layers": "cpu"}' >"$T/u.json"
expect_err "map leaves a module uncovered" 2 ".*model.embed_tokens" "${P[@]}" --device-map "$T/u.json"
echo '{"model.norm": "cpu", "output_norm": 0, "": "cpu"}' >"$T/d.json"
expect_err "map covers a module twice" 2 ".*(model.norm|output_norm)" "${P[@]}" --device-map "$T/d.json"
echo '{"model.layers.3.mlp": 0, "": "cpu"}' >"$T/s.json"
expect_err "key below a layer" 2 '.*model.layers.3.mlp.*never split' "${P[@]}" --device-map "$T/s.json"
echo '{"": "gpu9"}' >"$T/v.json"
expect_err "unknown device in a map" 2 '.*gpu9' "${P[@]}" --device-map "$T/v.json"
echo '{"": ' >"$T/bad.json"
expect_err "map not JSON" 2 ".*bad.json" "${P[@]}" --device-map "$T/bad.json"
expect_err "map file missing" 2 ".*nope.json" "${P[@]}" --device-map "$T/nope.json"
expect_err "bad strategy" 2 '.*' "${P[@]}" --device-map ""
expect_err "gpu-layers -1" 2 '--gpu-layers' "${P[@]}" --gpu-layers -1
expect_err "tensor-split x" 2 '--tensor-split' "${P[@]}" --tensor-split 1,x
expect_err "LYRA_SIM_GPUS malformed" 2 'LYRA_SIM_GPUS.*12XB' env LYRA_SIM_GPUS=1MiB,12XB "$LYRA" -q plan -m "$S260"
expect_err "LYRA_SIM_GPUS bits" 2 'LYRA_SIM_GPUS.*bits' env LYRA_SIM_GPUS=6Gb "$LYRA" -q devices
expect_err "plan without -m" 2 '-m: required' "$LYRA" -q plan
expect_err "GPU too small for cuda:0" 2 '.*' "${P[@]}" --device-map 0 --ctx 2048 --max-memory 0=100KiB
# the same errors stop generate before anything is loaded
G=("$LYRA" -q generate -m "$S260" -n 2 --temp 0)
expect_err "generate: malformed size" 2 '--max-memory.*bits' "${G[@]}" --max-memory cpu=1gb
expect_err "generate: uncovered map" 2 ".*model.embed_tokens" "${G[@]}" --device-map "$T/u.json"
expect_err "bench: unknown device" 2 '--reserve: 5: unknown device' "$LYRA" -q bench -m "$S260" --reserve 5=1GiB
expect_err "perplexity: gpu-layers" 2 '--gpu-layers' "$LYRA" -q perplexity -m "$S260" -f /dev/null --gpu-layers x

# --- --parallel N: a KV cache per sequence (lyra serve's slots) -----------
"$LYRA" -q plan -m "$S260" "${MM[@]}" --ctx 512 --batch 64 --device-map cpu --json >"$T/p1.json" 2>"$T/err"
check_eq "plan -np 1 rc" "$?" 0
"$LYRA" -q plan -m "$S260" "${MM[@]}" --ctx 512 --batch 64 --device-map cpu --parallel 4 --json >"$T/p4.json" 2>"$T/err"
check_eq "plan --parallel 4 rc" "$?" 0
r=$("$PY" - "$T/p1.json" "$T/p4.json" <<'PYEOF'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
assert "n_seq" not in a and b["n_seq"] == 4, (a.get("n_seq"), b.get("n_seq"))
ka = [d["kv"] for d in a["devices"]]
kb = [d["kv"] for d in b["devices"]]
assert kb == [4 * k for k in ka] and sum(ka) > 0, (ka, kb)
print("ok")
PYEOF
)
check_eq "plan --parallel 4: 4x the KV" "$r" ok
"$LYRA" -q plan -m "$S260" "${MM[@]}" --ctx 512 -np 3 >"$T/t3" 2>&1
check_grep "plan -np 3 table" '^plan: ctx 512, batch 512, 3 sequences$' "$T/t3"
expect_err "plan: --parallel 0" 2 '--parallel' "$LYRA" -q plan -m "$S260" --parallel 0

finish
