#!/usr/bin/env python3
"""llamacpp_bench.py: llama.cpp's speed on a GGUF, measured the way `lyra
bench` measures lyra, through llama-cpp-python (PyPI; it builds llama.cpp from
source). Used only by bench/compare.sh, side by side with lyra in one run.

One warm-up, then the median of 5 runs of: prompt processing of P tokens
(fresh KV cache each run, batch = P) and generation of N tokens one at a time.
Prints one JSON object: pp_tokens, pp_tps, tg_tokens, tg_tps, threads.
"""
import argparse, json, statistics, sys, time

import llama_cpp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("-p", default="128,512")
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    pps = [int(x) for x in a.p.split(",") if x]
    n_ctx = max(pps + [a.n]) + 16
    llm = llama_cpp.Llama(model_path=a.model, n_ctx=n_ctx, n_batch=max(pps + [1]),
                          n_ubatch=max(pps + [1]), n_threads=a.threads,
                          n_threads_batch=a.threads, verbose=False, logits_all=False)
    n_vocab = llm.n_vocab()
    res = {"engine": "llama.cpp", "version": llama_cpp.__version__, "threads": a.threads,
           "pp_tokens": [], "pp_tps": [], "tg_tokens": a.n}

    def toks(n, seed):
        return [(seed * 7919 + i * 104729) % (n_vocab - 3) + 3 for i in range(n)]

    for p in pps:
        times = []
        for r in range(a.runs + 1):
            llm.reset()
            llm._ctx.kv_cache_clear() if hasattr(llm._ctx, "kv_cache_clear") else None
            t = time.perf_counter()
            llm.eval(toks(p, r))
            dt = time.perf_counter() - t
            if r: times.append(dt)
        res["pp_tokens"].append(p)
        res["pp_tps"].append(p / statistics.median(times))
    times = []
    for r in range(a.runs + 1):
        llm.reset()
        llm._ctx.kv_cache_clear() if hasattr(llm._ctx, "kv_cache_clear") else None
        t = time.perf_counter()
        for tok in toks(a.n, r + 100):
            llm.eval([tok])
        dt = time.perf_counter() - t
        if r: times.append(dt)
    res["tg_tps"] = a.n / statistics.median(times)
    json.dump(res, sys.stdout)
    print()


if __name__ == "__main__":
    main()
