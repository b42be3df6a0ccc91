#!/usr/bin/env python3
"""serve_throughput.py: aggregate generated tokens/s of an OpenAI-compatible
server with 1, 4 and 16 concurrent streams, for `lyra serve` and for
llama.cpp's server (llama-cpp-python[server]) on the same model.

Each stream is one /v1/completions request (streamed, temperature 0, its own
prompt, max_tokens N); the figure for S streams is the sum of the
completion tokens the server reports (usage; llama-cpp-python reports none
when streaming: its chunks, one per token) over the wall time from the
first request sent to the last stream's end. Each server is started once,
warmed up with one short request, and measured at every stream count; the
load average is printed with each line (the machine may be shared).

  bench/serve_throughput.py --model M.gguf [--lyra build/lyra]
      [--llama-python PY] [--streams 1,4,16] [--max-tokens 16]
      [--threads 2] [--ctx 512] [--only lyra|llama] [--mpirun "mpirun -np 2"]

--llama-python is a Python with llama_cpp.server and its web dependencies
(uvicorn, fastapi, sse-starlette, starlette-context, pydantic-settings);
without it the llama.cpp part is skipped. The client is the `openai`
package of the Python running this script. --mpirun runs lyra serve under
that command line (docs/distributed.md: the pipeline over ranks; --threads
is then each rank's)."""
import argparse
import concurrent.futures
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import openai

WORDS = "once upon a time there was a little girl who lived in a big house near the sea".split()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_http(url, proc, timeout=600):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except Exception:
            time.sleep(0.5)
    raise RuntimeError("server did not start")


def start_lyra(a):
    cmd = [a.lyra, "serve", "-m", a.model, "--port", "0", "--parallel", str(max(a.streams)),
           "--ctx", str(a.ctx), "-t", str(a.threads), "--queue", "256"]
    if a.mpirun:
        cmd = a.mpirun.split() + cmd
    env = dict(os.environ, LYRA_MODEL_CONFIG="none")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    port = [None]
    ready = threading.Event()

    def reader():
        for line in proc.stderr:
            m = re.search(r"listening on http://[^ ]*:(\d+)/", line)
            if m:
                port[0] = int(m.group(1))
            if "ready:" in line:
                ready.set()
        ready.set()

    threading.Thread(target=reader, daemon=True).start()
    ready.wait(600)
    if port[0] is None or proc.poll() is not None:
        proc.kill()
        raise RuntimeError("lyra serve did not start")
    return proc, f"http://127.0.0.1:{port[0]}/v1", " ".join(cmd)


def start_llama(a):
    port = free_port()
    cmd = [a.llama_python, "-m", "llama_cpp.server", "--model", a.model, "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(a.ctx), "--n_threads", str(a.threads),
           "--n_threads_batch", str(a.threads), "--n_gpu_layers", "0",
           "--interrupt_requests", "False"]  # else a new request cuts the running one
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/v1/models", proc)
    return proc, f"http://127.0.0.1:{port}/v1", " ".join(cmd)


def one_stream(client, model, i, max_tokens):
    prompt = " ".join(WORDS[(i * 3 + k) % len(WORDS)] for k in range(6 + i % 5))
    n, chunks = None, 0
    s = client.completions.create(model=model, prompt=prompt, max_tokens=max_tokens, temperature=0,
                                  stream=True, stream_options={"include_usage": True})
    for ev in s:
        if getattr(ev, "usage", None) is not None:
            n = ev.usage.completion_tokens
        elif ev.choices and ev.choices[0].text:
            chunks += 1
    return n if n is not None else chunks  # llama-cpp-python: no usage, one chunk a token


def measure(name, base, a, out):
    client = openai.OpenAI(base_url=base, api_key="none", max_retries=0, timeout=3600)
    model = client.models.list().data[0].id
    one_stream(client, model, 99, 2)  # warm-up
    for n in a.streams:
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(n) as ex:
            toks = list(ex.map(lambda i: one_stream(client, model, i, a.max_tokens), range(n)))
        dt = time.time() - t0
        line = (f"{name:6s} streams {n:3d}: {sum(toks):5d} tokens in {dt:7.2f} s = "
                f"{sum(toks) / dt:7.2f} tokens/s  (load average {os.getloadavg()[0]:.2f})")
        print(line, flush=True)
        out.append((name, n, sum(toks) / dt))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--lyra", default="build/lyra")
    ap.add_argument("--llama-python", default=None)
    ap.add_argument("--streams", default="1,4,16")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--only", choices=["lyra", "llama"], default=None)
    ap.add_argument("--mpirun", default=None, help="run lyra serve under this mpirun command line")
    a = ap.parse_args()
    a.streams = [int(x) for x in a.streams.split(",")]
    print(f"model {a.model}, {a.max_tokens} tokens per stream, {a.threads} threads, "
          f"load average {os.getloadavg()}", flush=True)
    res = []
    starters = []
    if a.only in (None, "lyra"):
        starters.append(("lyra", start_lyra))
    if a.only in (None, "llama") and a.llama_python:
        starters.append(("llama", start_llama))
    for name, start in starters:
        proc, base, cmd = start(a)
        print(f"{name}: {cmd}", flush=True)
        try:
            measure(name, base, a, res)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    for name in ("lyra", "llama"):
        r = {n: v for (nm, n, v) in res if nm == name}
        if 1 in r and r[1] > 0:
            print(f"{name}: " + ", ".join(f"{n} streams {v / r[1]:.2f}x" for n, v in sorted(r.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
