#!/usr/bin/env python3
"""mpi_serve.py: `lyra serve` under mpirun (docs/distributed.md), with the
standard library only (tests/cli/test_cli_mpi_run.sh runs it): rank 0
serves, the other ranks run their share of the model. A streamed chat and
concurrent completions (several slots in one batch, in micro-batches:
LYRA_MPI_MICROBATCHES) give the single-process server's text for the same seeds,
also when rank 0 runs out of memory for the KV cache and hands a layer on
(--fallback-across-ranks); SIGTERM
to rank 0 ends every rank with exit 0; a rank killed mid-request ends every
rank within 10 s with mpirun's line naming it.

usage: mpi_serve.py LYRA MODEL NP  (the mpirun command line in $MPIRUN)"""
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

LYRA, MODEL, NP = sys.argv[1], sys.argv[2], int(sys.argv[3])
MPIRUN = shlex.split(os.environ.get("MPIRUN", "mpirun"))
failed = 0


def check(what, cond, detail=""):
    global failed
    if not cond:
        failed += 1
        print(f"FAIL: {what} {detail}", file=sys.stderr)


def start(np, *flags, env=None, rank0_env=None):
    """Serve with np ranks; rank0_env: variables for rank 0 alone (an MPMD launch)."""
    e = dict(os.environ, LYRA_MODEL_CONFIG="none")
    e.update(env or {})
    e.pop("LYRA_API_KEY", None)
    cmd = [LYRA, "serve", "-m", MODEL, "--port", "0", "--threads", "1", *flags]
    if np > 1 and rank0_env:
        cmd = (MPIRUN + ["-np", "1", "env"] + [f"{k}={v}" for k, v in rank0_env.items()] + cmd
               + [":", "-np", str(np - 1)] + cmd)
    elif np > 1:
        cmd = MPIRUN + ["-np", str(np)] + cmd
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=e)
    log, port = [], None
    for line in p.stderr:
        log.append(line)
        m = re.search(r"listening on http://[^ ]*:(\d+)/", line)
        if m:
            port = int(m.group(1))
        if "ready:" in line:
            break
    threading.Thread(target=lambda: log.extend(p.stderr), daemon=True).start()
    if port is None or p.poll() is not None:
        print("".join(log), file=sys.stderr)
        sys.exit(1)
    return p, port, log


def ranks(p):
    """{rank: pid} of the lyra processes mpirun p started."""
    out = {}
    for line in subprocess.run(["ps", "-o", "pid=", "--ppid", str(p.pid)], capture_output=True,
                               text=True).stdout.split():
        try:
            with open(f"/proc/{line}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        for v in env:
            if v.startswith(b"OMPI_COMM_WORLD_RANK="):
                out[int(v.split(b"=")[1])] = int(line)
    return out


def call(port, path, body, stream_cut=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            if body.get("stream"):
                text, n = "", 0
                for line in r:
                    line = line.decode().strip()
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    n += 1
                    if stream_cut and n >= stream_cut:
                        return 200, text
                    for c in json.loads(line[6:])["choices"]:
                        text += c.get("delta", {}).get("content") or c.get("text") or ""
                return r.status, text
            j = json.loads(r.read())
            return r.status, j["choices"][0]["text"]
    except (urllib.error.URLError, ConnectionError, OSError) as e:
        return 0, str(e)


CHAT = {"messages": [{"role": "user", "content": "Tell me a story"}], "max_tokens": 24, "seed": 5,
        "stream": True}
BODIES = [{"prompt": f"The {w} went", "max_tokens": 12 + 2 * i, "seed": i, "temperature": 1.0}
          for i, w in enumerate(["cat", "dog", "boy", "girl"])]


def answers(port):
    st, chat = call(port, "/v1/chat/completions", CHAT)
    res = [None] * len(BODIES)
    ts = [threading.Thread(target=lambda i=i: res.__setitem__(i, call(port, "/v1/completions", BODIES[i])))
          for i in range(len(BODIES))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return (st, chat), res


def wait(p, limit):
    try:
        return p.wait(limit)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return "timeout"


p, port, log = start(1, "--parallel", "3")
want = answers(port)
p.send_signal(signal.SIGTERM)
check("one process: exit 0", wait(p, 30) == 0)
check("one process: answers", want[0][0] == 200 and want[0][1] and all(r[0] == 200 for r in want[1]), want)

# under mpirun: the same texts; SIGTERM to rank 0 ends every rank with exit 0
# (a micro-batch per sequence: the small steps here are not split by default)
p, port, log = start(NP, "--parallel", "3", env={"LYRA_MPI_MICROBATCHES": "3"})
got = answers(port)
check(f"-np {NP}: streamed chat = one process's", got[0] == want[0], (got[0], want[0]))
check(f"-np {NP}: concurrent completions = one process's", got[1] == want[1], (got[1], want[1]))
pids = ranks(p)
check(f"-np {NP}: {NP} ranks found", sorted(pids) == list(range(NP)), pids)
if 0 in pids:
    os.kill(pids[0], signal.SIGTERM)
rc = wait(p, 30)
check(f"-np {NP}: SIGTERM to rank 0: every rank exits 0", rc == 0, f"rc {rc}: {''.join(log[-5:])}")
for r, pid in pids.items():
    check(f"-np {NP}: rank {r} gone", not os.path.exists(f"/proc/{pid}"))

# --fallback-across-ranks while serving: rank 0's KV cache cannot grow (its
# cpu allocation N fails: the second after the server is ready, counted by a
# first run) and its last layer goes, with every slot's cache, to rank 1;
# the answers are those of one process with the same KV chunks
XF = ("--parallel", "3", "--kv-chunk", "8", "--no-fallback", "--fallback-across-ranks")
p, port, log = start(1, *XF)
want = answers(port)
p.send_signal(signal.SIGTERM)
check("across ranks: one process exit 0", wait(p, 30) == 0)
def stop(p):
    """SIGTERM to rank 0 (every rank exits 0); mpirun's exit code."""
    pid = ranks(p).get(0)
    if pid:
        os.kill(pid, signal.SIGTERM)
    return wait(p, 30)


p, port, log = start(NP, *XF, rank0_env={"LYRA_ALLOC_STATS": "1"})
stop(p)
time.sleep(0.2)
calls = re.findall(r"^alloc: cpu calls=(\d+) ", "".join(log), re.M)
check("across ranks: rank 0's allocation count", len(calls) == 1, "".join(log)[-600:])
if calls:
    p, port, log = start(NP, *XF, env={"LYRA_MPI_MICROBATCHES": "3"},
                         rank0_env={"LYRA_FAIL_ALLOC": f"cpu:{int(calls[0]) + 2}"})
    got = answers(port)
    rc = stop(p)
    check(f"across ranks, -np {NP}: answers = one process's", got == want, (got, want))
    check(f"across ranks, -np {NP}: exit 0", rc == 0, rc)
    check(f"across ranks, -np {NP}: the step line",
          re.search(r"^fallback across ranks: during generation at token \d+: rank 0 is out of memory .*: "
                    r"model\.layers\.\d+ moves to rank 1$", "".join(log), re.M), "".join(log)[-600:])

# a rank killed mid-request: every rank ends within 10 s, mpirun names it
p, port, log = start(NP, "--parallel", "2", "-c", "2048")
pids = ranks(p)
res = []
th = threading.Thread(target=lambda: res.append(call(port, "/v1/completions",
                                                     {"prompt": "Once", "max_tokens": 1500, "stream": True})))
th.start()
time.sleep(0.5)
victim = pids.get(NP - 1)
check("kill: the last rank found", victim is not None, pids)
if victim:
    os.kill(victim, signal.SIGKILL)
    t0 = time.time()
    rc = wait(p, 20)
    dt = time.time() - t0
    check("kill: mpirun fails", rc not in (0, "timeout"), rc)
    check("kill: every rank ended within 10 s", dt < 10, f"{dt:.1f} s")
    for r, pid in pids.items():
        while os.path.exists(f"/proc/{pid}") and time.time() - t0 < 10:
            time.sleep(0.1)
        check(f"kill: rank {r} gone within 10 s", not os.path.exists(f"/proc/{pid}"),
              f"{time.time() - t0:.1f} s")
    print(f"kill: every rank gone after {time.time() - t0:.1f} s", file=sys.stderr)
    time.sleep(0.2)
    check("kill: the rank named", re.search(rf"rank {NP - 1}\b", "".join(log)), "".join(log)[-600:])
th.join(30)
sys.exit(1 if failed else 0)
