"""test_fallback.py: out of memory while serving several slots at once.

A simulated GPU (LYRA_SIM_GPUS) holds the model; from some allocation after
the load on, every allocation on it fails (LYRA_FAIL_ALLOC=0:N+), so the KV
chunks that the 4 slots' sequences need while generating make the
progressive fallback move layers, with every sequence's cache, to the CPU
between two batches. Every request must still complete with the same text
as on an all-CPU server, and /metrics and the log must say what moved."""
import concurrent.futures
import json
import re
import urllib.request

WORDS = "cat dog sun tree boat little happy red went saw the a big girl boy ran".split()


def bodies():
    out = []
    for i in range(8):
        words = " ".join(WORDS[(i * 5 + k) % len(WORDS)] for k in range(3 + 4 * i))
        out.append({"prompt": words, "max_tokens": 40, "seed": 100 + i, "temperature": 0.8})
    return out


def post(s, body):
    req = urllib.request.Request(s.v1 + "/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())["choices"][0]["text"]


def run_all(s):
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        return list(ex.map(lambda b: post(s, b), bodies()))


def test_fallback_with_slots(make_server):
    flags = ("--parallel", "4", "--kv-chunk", "8", "--ctx", "256")
    ref_srv = make_server(*flags, env={"LYRA_SIM_GPUS": ""})
    ref = run_all(ref_srv)
    assert ref_srv.stop() == 0
    # how many allocations the load makes on the GPU
    probe = make_server(*flags, env={"LYRA_SIM_GPUS": "64MiB", "LYRA_ALLOC_STATS": "1"})
    assert probe.stop() == 0
    calls = [int(m.group(1)) for line in probe.log for m in [re.search(r"alloc: 0 calls=(\d+)", line)] if m]
    assert calls, "".join(probe.log)
    s = make_server(*flags, env={"LYRA_SIM_GPUS": "64MiB", "LYRA_FAIL_ALLOC": f"0:{calls[0] + 6}+"})
    got = run_all(s)
    assert got == ref
    assert s.metrics()["lyra_fallback_steps_total"] >= 1
    assert s.stop() == 0
    log = "".join(s.log)
    assert "serve: fallback while generating: out of memory on device 0" in log, log
