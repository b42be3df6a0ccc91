#!/usr/bin/env python3
"""cpu_pp.py LYRA[,LYRA2...] MODEL P ROUNDS (python with llama_cpp):
CPU-time prompt processing, 1 thread, lyra vs llama.cpp alternating (the
machine is shared: CPU time, not wall time). lyra: `lyra bench -t 1` CPU time
of the child with -p P minus with -p 1, over its 6 evaluations (warm-up + 5).
llama.cpp: process_time around each eval (1 thread: no spinning), best of R."""
import json, resource, subprocess, sys, time
import llama_cpp
lyra, model, P, R = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def child_cpu(args):
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
def lyra_tps(lyra):
    base = child_cpu([lyra, "-q", "bench", "-m", model, "-p", "1", "-n", "1", "-t", "1"])
    full = child_cpu([lyra, "-q", "bench", "-m", model, "-p", str(P), "-n", "1", "-t", "1"])
    return 6 * (P - 1) / (full - base)
llm = llama_cpp.Llama(model_path=model, n_ctx=P + 16, n_batch=P, n_ubatch=P, n_threads=1,
                      n_threads_batch=1, verbose=False)
nv = llm.n_vocab()
toks = [(7919 + i * 104729) % (nv - 3) + 3 for i in range(P)]
def llama_tps():
    best = 0
    for r in range(R + 1):
        llm.reset()
        t = time.process_time(); llm.eval(toks); dt = time.process_time() - t
        if r: best = max(best, P / dt)
    return best
bins = lyra.split(",")
ly, lc = {b: [] for b in bins}, []
for r in range(R):
    for b in bins: ly[b].append(lyra_tps(b))
    lc.append(llama_tps())
print(json.dumps({"model": model.split("/")[-1], "P": P, "llama": [round(x, 1) for x in lc],
                  **{b: [round(x, 1) for x in v] for b, v in ly.items()},
                  **{"ratio " + b: round(max(v) / max(lc), 2) for b, v in ly.items()}}))
