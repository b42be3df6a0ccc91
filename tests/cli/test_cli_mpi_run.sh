#!/usr/bin/env bash
# test_cli_mpi_run.sh: chat and serve under mpirun (docs/distributed.md) on
# one host: a chat scripted through stdin prints with 2 and 3 ranks what one
# process prints (multi-turn KV reuse, /reset); a session saved under
# mpirun is the one process's (resumed either way, /load too); SIGINT to
# rank 0 stops a reply and the chat goes on, exit 0 on every rank; Ctrl-C
# at the terminal (mpirun's SIGINT) ends every rank; serve under mpirun
# (tests/serve/mpi_serve.py): the single-process server's text, SIGTERM,
# a killed rank. Skipped (77) without mpirun or without MPI in the build.
source "$(dirname "$0")/lib.sh"
command -v mpirun >/dev/null || skip "no mpirun (apt-get install openmpi-bin)"
"$LYRA" --version | grep -q 'MPI' || skip "lyra was built without MPI (-DLYRA_MPI)"
mpirun --version 2>/dev/null | grep -q 'Open MPI' || skip "these checks use Open MPI's mpirun flags"
shared_path S260 models/stories260K.gguf

export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_orte_base_help_aggregate=0 LYRA_MODEL_CONFIG=none
# no leak check under mpirun (Open MPI's own allocations: test_cli_mpi.sh)
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
MPIRUN=(mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)

"$LYRA" -q mkmodel -o "$T/r256.gguf" --dim 256 --layers 6 --type q8_0 --seed 1 || bad "mkmodel"

# rank R's pid under mpirun MP (empty when not found)
rank_pid() {
    local p
    for p in $(ps -o pid= --ppid "$1"); do
        tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && echo "$p"
    done
}

# a scripted chat: the same text with 1, 2 and 3 ranks
printf 'Hello there\nTell me a story\n/reset\nAgain\n' >"$T/in"
for M in "$S260" "$T/r256.gguf"; do
    b=$(basename "$M")
    "$LYRA" -q chat -m "$M" --seed 3 -n 16 --threads 1 <"$T/in" >"$T/c1" 2>&1
    check_eq "$b: chat rc" "$?" 0
    for np in 2 3; do
        "${MPIRUN[@]}" -np $np "$LYRA" -q chat -m "$M" --seed 3 -n 16 --threads 1 <"$T/in" >"$T/c$np" 2>"$T/ce$np"
        check_eq "$b: -np $np chat rc ($(head -c 300 "$T/ce$np"))" "$?" 0
        cmp -s "$T/c$np" "$T/c1" && ok || { bad "$b: -np $np chat text differs from one process's";
            diff "$T/c1" "$T/c$np" | head -20 >&2; echo "-- rank stderr:" >&2; head -c 2000 "$T/ce$np" >&2; }
    done
done

# sessions: saved under mpirun (the other ranks' layers gathered), resumed
# by one process and under -np 3 (scattered): the same replies
M="$T/r256.gguf"
printf 'Hello there\n/save\nTell me a story\n' >"$T/a"
printf 'And then\n/load %s\nOnce more\n' "$T/s1.lyrasession" >"$T/b"
"$LYRA" -q chat -m "$M" --seed 3 -n 16 --threads 1 --session "$T/s1.lyrasession" <"$T/a" >"$T/a1" 2>&1
check_eq "session: one process rc" "$?" 0
"${MPIRUN[@]}" -np 2 "$LYRA" -q chat -m "$M" --seed 3 -n 16 --threads 1 --session "$T/s2.lyrasession" \
    <"$T/a" >"$T/a2" 2>"$T/ae2"
check_eq "session: -np 2 rc ($(head -c 300 "$T/ae2"))" "$?" 0
cmp -s "$T/a2" "$T/a1" && ok || bad "session: -np 2 replies differ"
check_eq "session: -np 2 file size = one process's" "$(stat -c %s "$T/s2.lyrasession")" \
    "$(stat -c %s "$T/s1.lyrasession")"
cp "$T/s1.lyrasession" "$T/s1.orig"
"$LYRA" -q chat -m "$M" --seed 3 -n 16 --threads 1 --session "$T/s2.lyrasession" <"$T/b" >"$T/b1" 2>&1
check_eq "session: resumed by one process rc" "$?" 0
cp "$T/s1.orig" "$T/s1.lyrasession"
cp "$T/s1.orig" "$T/s3.lyrasession"
"${MPIRUN[@]}" -np 3 "$LYRA" -q chat -m "$M" --seed 3 -n 16 --threads 1 --session "$T/s3.lyrasession" \
    <"$T/b" >"$T/b3" 2>"$T/be3"
check_eq "session: resumed under -np 3 rc ($(head -c 300 "$T/be3"))" "$?" 0
cmp -s "$T/b3" "$T/b1" && ok || bad "session: resumed under -np 3 (and /load) differs from one process"
[ -s "$T/b1" ] && ok || bad "session: no reply"

# SIGINT to rank 0 stops a reply on every rank; the chat goes on; exit 0
"$LYRA" -q mkmodel -o "$T/slow.gguf" --dim 512 --layers 8 --vocab 8000 --type q8_0 || bad "mkmodel slow"
mkfifo "$T/fifo"
"${MPIRUN[@]}" -np 2 "$LYRA" chat -m "$T/slow.gguf" --seed 1 -n 1500 --ctx 2048 --threads 1 \
    <"$T/fifo" >"$T/out" 2>"$T/err" &
MP=$!
exec 7>"$T/fifo"
echo "Tell me a long story" >&7
r0=""
for _ in $(seq 150); do
    sleep 0.1
    [ -z "$r0" ] && r0=$(rank_pid $MP 0)
    [ -s "$T/out" ] && [ -n "$r0" ] && break
done
if [ -z "$r0" ]; then
    bad "SIGINT: no rank 0 under mpirun"
else
    kill -INT "$r0"
    sleep 1.2 # a second Ctrl-C within a second would end the chat
    n1=$(wc -c <"$T/out")
    echo "Again" >&7
    for _ in $(seq 100); do
        sleep 0.1
        [ "$(wc -c <"$T/out")" -gt $((n1 + 4)) ] && break
    done
    kill -INT "$r0"
fi
exec 7>&-
( sleep 30; kill -9 $MP 2>/dev/null ) &
guard=$!
wait $MP
rc=$?
kill $guard 2>/dev/null
wait $guard 2>/dev/null
check_eq "SIGINT to rank 0: exit 0 ($(grep -v '^map\|^load\|^plan' "$T/err" | head -c 300))" "$rc" 0
check_eq "SIGINT to rank 0: both replies stopped" "$(grep -c 'reply stopped (Ctrl-C)' "$T/err")" 2

# Ctrl-C at a terminal reaches mpirun (the ranks are in their own process
# groups): mpirun ends every rank within 10 s
"${MPIRUN[@]}" -np 2 "$LYRA" -q chat -m "$T/slow.gguf" --seed 1 -n 1500 --ctx 2048 --threads 1 \
    <"$T/fifo" >"$T/out" 2>"$T/err" &
MP=$!
exec 7>"$T/fifo"
echo "Tell me a long story" >&7
for _ in $(seq 150); do
    sleep 0.1
    [ -s "$T/out" ] && break
done
pids="$(rank_pid $MP 0) $(rank_pid $MP 1)"
kill -INT $MP
t0=$(date +%s%N)
( sleep 20; kill -9 $MP 2>/dev/null ) &
guard=$!
wait $MP
exec 7>&-
kill $guard 2>/dev/null
wait $guard 2>/dev/null
for p in $pids; do
    while [ -e /proc/$p ] && [ $((($(date +%s%N) - t0) / 1000000)) -lt 10000 ]; do sleep 0.1; done
    [ -e /proc/$p ] && bad "mpirun's SIGINT: rank process $p still there after 10 s" || ok
done

# serve under mpirun
command -v python3 >/dev/null || skip "python3 not found"
for np in 2 3; do
    MPIRUN="${MPIRUN[*]}" python3 "$SRC/tests/serve/mpi_serve.py" "$LYRA" "$S260" $np && ok ||
        bad "serve under mpirun -np $np (tests/serve/mpi_serve.py)"
done
finish
