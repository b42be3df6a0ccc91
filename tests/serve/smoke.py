#!/usr/bin/env python3
"""smoke.py: a quick check of `lyra serve` with the standard library only
(tests/cli/test_cli_serve.sh runs it, so it runs in every ctest build,
ASan included): usage errors, /health, a chat and a completion (whole and
streamed, with the same seed: the same text), an OpenAI error, the key,
a client that disconnects mid-stream, concurrent requests equal to their
answers alone, and SIGTERM / SIGINT exiting 0.

usage: smoke.py LYRA MODEL"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

LYRA, MODEL = sys.argv[1], sys.argv[2]
failed = 0


def check(what, cond, detail=""):
    global failed
    if not cond:
        failed += 1
        print(f"FAIL: {what} {detail}", file=sys.stderr)


def start(*flags, env=None):
    e = dict(os.environ, LYRA_MODEL_CONFIG="none")
    e.pop("LYRA_API_KEY", None)
    e.update(env or {})
    p = subprocess.Popen([LYRA, "serve", "-m", MODEL, "--port", "0", *flags], stderr=subprocess.PIPE, text=True,
                         env=e)
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


def call(port, path, body=None, key=None, stream_cut=None):
    h = {"Content-Type": "application/json"}
    if key:
        h["Authorization"] = "Bearer " + key
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode() if body else None,
                                 headers=h)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            if body and body.get("stream"):
                text, n = "", 0
                for line in r:
                    line = line.decode().strip()
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    n += 1
                    if stream_cut and n >= stream_cut:
                        return 200, None
                    for c in json.loads(line[6:])["choices"]:
                        text += c.get("delta", {}).get("content") or c.get("text") or ""
                return r.status, text
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def text_of(j):
    c = j["choices"][0]
    return c["message"]["content"] if "message" in c else c["text"]


def stop(p, sig, log):
    p.send_signal(sig)
    try:
        rc = p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = "timeout"
    check(f"exit on {sig.name}", rc == 0, f"rc {rc}: {''.join(log[-5:])}")


# flags
r = subprocess.run([LYRA, "serve", "-m", MODEL, "--port", "70000"], capture_output=True, text=True)
check("bad port", r.returncode == 2 and "--port" in r.stderr, r.stderr)
r = subprocess.run([LYRA, "serve", "-m", MODEL, "--paralel", "2"], capture_output=True, text=True)
check("typo", r.returncode == 2 and "--parallel" in r.stderr, r.stderr)
r = subprocess.run([LYRA, "serve", "--help"], capture_output=True, text=True)
check("help", r.returncode == 0 and "--api-key" in r.stdout)

p, port, log = start("--parallel", "2")
st, j = call(port, "/health")
check("health", st == 200 and j == {"status": "ok"}, j)
chat = {"messages": [{"role": "user", "content": "Tell me a story"}], "max_tokens": 24, "seed": 5}
st, j = call(port, "/v1/chat/completions", chat)
check("chat", st == 200 and j["object"] == "chat.completion" and text_of(j), j)
st, t = call(port, "/v1/chat/completions", dict(chat, stream=True))
check("chat stream = whole", st == 200 and t == text_of(j), (t, text_of(j)))
comp = {"prompt": "Once upon a time", "max_tokens": 24, "seed": 2}
st, j2 = call(port, "/v1/completions", comp)
check("completion", st == 200 and j2["usage"]["completion_tokens"] <= 24, j2)
st, e = call(port, "/v1/completions", {"prompt": "x", "top_p": 7})
check("error", st == 400 and e["error"]["param"] == "top_p", e)
st, _ = call(port, "/v1/chat/completions", dict(chat, stream=True, max_tokens=500), stream_cut=3)
# concurrent: each equals its answer alone
bodies = [{"prompt": f"The {w} went", "max_tokens": 16 + i, "seed": i, "temperature": 1.0}
          for i, w in enumerate(["cat", "dog", "boy", "girl", "bird", "sun"])]
alone = [text_of(call(port, "/v1/completions", b)[1]) for b in bodies]
res = [None] * len(bodies)
ts = [threading.Thread(target=lambda i=i: res.__setitem__(i, call(port, "/v1/completions", bodies[i])))
      for i in range(len(bodies))]
for t in ts:
    t.start()
for t in ts:
    t.join()
check("concurrent = alone", [text_of(r[1]) for r in res] == alone)
deadline = time.time() + 10
while time.time() < deadline:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
        m = r.read().decode()
    if "lyra_slots_busy 0" in m:
        break
    time.sleep(0.1)
check("slots free after a disconnect", "lyra_slots_busy 0" in m, m)
stop(p, signal.SIGTERM, log)

p, port, log = start("--api-key", "k1", "--parallel", "1")
st, e = call(port, "/v1/models")
check("no key: 401", st == 401 and e["error"]["type"] == "authentication_error", e)
st, j = call(port, "/v1/models", key="k1")
check("key", st == 200 and j["data"][0]["id"] == os.path.basename(MODEL)[:-5], j)
# SIGINT while a request runs: exits 0 within the grace
threading.Thread(target=lambda: call(port, "/v1/completions", {"prompt": "A", "max_tokens": 100000}, key="k1"),
                 daemon=True).start()
time.sleep(0.3)
t0 = time.time()
stop(p, signal.SIGINT, log)
check("shutdown within the grace", time.time() - t0 < 10)

print("smoke: %s" % ("ok" if not failed else f"{failed} failed"))
sys.exit(1 if failed else 0)
