"""test_load.py (slow): 64 concurrent clients on loopback send 500 requests
with fixed seeds and mixed lengths, some streaming, some disconnecting
early. Every completed answer must equal the same request's answer when it
runs alone on an idle server; none is lost or mixed up; the server's RSS is
flat afterwards; the whole run is bounded in time."""
import concurrent.futures
import json
import os
import random
import socket
import time
import urllib.request

import pytest

pytestmark = pytest.mark.slow

N_REQ = int(os.environ.get("LYRA_LOAD_REQUESTS", "500"))  # fewer for sanitizer builds
N_CLIENTS = 64
WORDS = "cat dog sun tree boat little happy red went saw the a big girl boy ran".split()


def make_requests():
    rnd = random.Random(1234)
    reqs = []
    for i in range(N_REQ):
        chat = rnd.random() < 0.5
        words = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(1, 60)))
        body = {"max_tokens": rnd.choice([1, 4, 16, 48, 96]), "seed": rnd.randint(0, 2 ** 40),
                "temperature": rnd.choice([0, 0.7, 1.0])}
        if chat:
            msgs = [{"role": "user", "content": words}]
            if rnd.random() < 0.3:
                msgs = [{"role": "system", "content": "You tell stories."}] + msgs
            body["messages"] = msgs
        else:
            body["prompt"] = words
        mode = rnd.random()
        stream = mode < 0.4
        disconnect = stream and mode < 0.1 or 0.95 < mode  # streams cut after 2 events; plain ones time out
        reqs.append((i, "/v1/chat/completions" if chat else "/v1/completions", body, stream, disconnect))
    return reqs


def run_one(port, path, body, stream, disconnect):
    """The answer's text and finish reason; None when it disconnected."""
    b = dict(body, stream=stream)
    data = json.dumps(b).encode()
    if disconnect and not stream:  # a client that gives up while it waits
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        time.sleep(0.005)
        s.close()
        return None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        if not stream:
            j = json.loads(r.read())
            c = j["choices"][0]
            return (c["message"]["content"] if "message" in c else c["text"]), c["finish_reason"]
        text, finish, n = "", None, 0
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: "):
                continue
            n += 1
            if disconnect and n == 2:
                return None  # closes the connection mid-stream
            if line == "data: [DONE]":
                break
            j = json.loads(line[6:])
            for c in j["choices"]:
                text += c.get("delta", {}).get("content") or c.get("text") or ""
                finish = c["finish_reason"] or finish
        return text, finish


def test_load(make_server):
    s = make_server("--parallel", "4", "--queue", "512")
    reqs = make_requests()
    t0 = time.time()
    alone = {}
    for i, path, body, _, _ in reqs:  # one at a time: the reference answers
        alone[i] = run_one(s.port, path, body, False, False)
    t_alone = time.time() - t0
    rss0 = s.rss_kib()
    t1 = time.time()
    with concurrent.futures.ThreadPoolExecutor(N_CLIENTS) as pool:
        futs = {pool.submit(run_one, s.port, path, body, stream, disc): i for i, path, body, stream, disc in reqs}
        got = {futs[f]: f.result() for f in concurrent.futures.as_completed(futs, timeout=300)}
    t_load = time.time() - t1
    assert len(got) == N_REQ
    done = [i for i in got if got[i] is not None]
    assert len(done) > N_REQ * 0.8
    bad = [(i, got[i], alone[i]) for i in done if got[i] != alone[i]]
    for i, g, a in bad:
        print("DIFFER", i, reqs[i], "got", g, "alone", a)
    assert not bad, f"{len(bad)} answers differ from running alone, e.g. {bad[:3]}"
    # the server is idle again: no slot busy, nothing queued, the cancels counted
    deadline = time.time() + 10
    while time.time() < deadline:
        m = s.metrics()
        if m["lyra_slots_busy"] == 0 and m["lyra_queue_depth"] == 0:
            break
        time.sleep(0.1)
    assert m["lyra_slots_busy"] == 0 and m["lyra_queue_depth"] == 0
    assert m["lyra_requests_total"] >= 2 * N_REQ - (N_REQ - len(done))
    # RSS flat: a second identical run does not grow it
    with concurrent.futures.ThreadPoolExecutor(N_CLIENTS) as pool:
        list(pool.map(lambda r: run_one(s.port, r[1], r[2], r[3], r[4]), reqs, timeout=300))
    rss1 = s.rss_kib()
    print(f"alone {t_alone:.1f}s, {N_CLIENTS} clients {t_load:.1f}s, rss {rss0} -> {rss1} KiB")
    if not os.environ.get("LYRA_LOAD_SANITIZED"):  # sanitizers keep freed memory (quarantine) and run slower
        assert rss1 < rss0 * 1.25 + 16 * 1024, (rss0, rss1)
    if not os.environ.get("LYRA_LOAD_SANITIZED"):
        assert t_load < 120
