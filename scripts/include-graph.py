#!/usr/bin/env python3
"""include-graph.py: lyra's layering check (docs/ARCHITECTURE.md, "Layers").

Reads every #include "..." of src/ and fails (exit 1) on
  1. an include from a folder to a folder above it in LAYERS (a lower layer
     never knows a higher one), and
  2. a cycle between modules, a module being a source (.c, .cu) together
     with the header of the same name beside it (residency.c + residency.h):
     module A including B's header while B includes A's is a cycle even
     though no header includes itself. A header without a source of its own
     (types and inline helpers like runtime/objects.h, a folder's private
     header like kernels/kernels_impl.h) is a leaf here: what it includes is
     checked by 3.
  3. a cycle between files (headers including each other).
With --build DIR (a CMake build directory) it also reads the object files of
the library (nm) and fails on
  4. a call cycle between the object files of a folder in CALL_CHECKED
     (a.o uses a symbol b.o defines and b.o one a.o defines), and
  5. a call from a folder to a folder above it in LAYERS.
Object files whose source is gone (a stale build) are skipped.

Folders not in LAYERS are reported and not checked for layering (add them
to the table). ALLOWED_CYCLES lists module cycles accepted on purpose.

Usage: scripts/include-graph.py [--src SRC_ROOT] [--build BUILD_DIR] [-v]
"""
import argparse
import collections
import os
import re
import subprocess
import sys

# The layers, lowest first: a folder may include (and call) its own layer and
# the ones before it, never one after it. Folders on one line share a layer
# (they may include each other; file-level cycles are still checked).
LAYERS = [
    ["core"],      # errors, log, thread pool, fp16, sizes, weight types: knows nothing else
    ["dist"],      # MPI ranks: init, messages with deadlines, file fingerprints (core only)
    ["jinja"],     # the Jinja2 subset chat templates use (parser, renderer): core only
    ["quant"],     # block layouts, reference (de)quantizers
    ["kernels"],   # CPU kernels: scalar / AVX2 / AVX-512 matmul and vector ops
    ["format"],    # GGUF reading and writing
    ["token"],     # tokenizers from GGUF metadata
    ["device"],    # devices: CPU, simulated GPUs, CUDA
    ["arch"],      # the architecture and its forward pass over devices
    ["plan"],      # the planner: modules on devices within budgets
    ["runtime"],   # models and contexts: placement, fallback, KV cache, eval
    ["config"],    # JSON model configs and model lookup
    ["gen"],       # sampler, chat, pipeline API
    ["serve"],     # lyra serve: HTTP, OpenAI requests and JSON, the engine's slots and steps
    ["app"],       # the lyra command
]

# Module cycles accepted on purpose (sets of module paths under src/, without
# extension); none today.
ALLOWED_CYCLES = []

# Folders whose object files must not call each other in a circle.
CALL_CHECKED = ["runtime"]

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
SOURCES = (".c", ".h", ".cu", ".cuh")


def rank_table():
    r = {}
    for i, names in enumerate(LAYERS):
        for n in names:
            r[n] = i
    return r


def folder_of(path):
    """src/runtime/context.c -> runtime; src/foo.c -> ''."""
    parts = path.split("/")
    return parts[1] if len(parts) > 2 else ""


def module_of(path):
    return os.path.splitext(path)[0]


def scan(root):
    """{file: [included files]} for files under root/src (paths relative to root)."""
    files = []
    for d, dirs, names in os.walk(os.path.join(root, "src")):
        dirs.sort()
        for n in sorted(names):
            if n.endswith(SOURCES):
                files.append(os.path.relpath(os.path.join(d, n), root))
    graph = {}
    for f in files:
        out = []
        with open(os.path.join(root, f), errors="replace") as fh:
            for line in fh:
                m = INCLUDE.match(line)
                if not m:
                    continue
                name = m.group(1)
                # the including file's folder first, then src/ (include/ and
                # generated headers are outside the layers)
                for cand in (os.path.join(os.path.dirname(f), name), os.path.join("src", name)):
                    cand = os.path.normpath(cand)
                    if os.path.isfile(os.path.join(root, cand)):
                        out.append(cand)
                        break
        graph[f] = out
    return graph


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def check_layers(edges, rank, what, unknown):
    """edges: iterable of (from_path, to_path, detail). Returns error lines."""
    errs = []
    for a, b, detail in edges:
        fa, fb = folder_of(a), folder_of(b)
        if fa == fb:
            continue
        for f in (fa, fb):
            if f not in rank:
                unknown.add(f)
        if fa in rank and fb in rank and rank[fb] > rank[fa]:
            errs.append("%s: %s (%s) -> %s (%s)%s: a lower layer uses a higher one"
                        % (what, a, fa, b, fb, detail))
    return errs


def nm_symbols(obj):
    """(defined global symbols, undefined symbols) of an object file."""
    out = subprocess.run(["nm", "-P", obj], capture_output=True, text=True, check=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        p = line.split()
        if len(p) < 2:
            continue
        name, kind = p[0], p[1]
        if kind == "U":
            undefined.add(name)
        elif kind in "TDBRCVW" and kind.isupper():
            defined.add(name)
    return defined, undefined


def call_graph(build, root):
    """{src path: {src path: [symbols]}} between the library's object files."""
    base = os.path.join(build, "CMakeFiles", "lyra_obj.dir")
    objs = {}
    for d, dirs, names in os.walk(base):
        dirs.sort()
        for n in sorted(names):
            if n.endswith(".o"):
                full = os.path.join(d, n)
                src = os.path.relpath(full, base)[: -len(".o")]  # src/runtime/context.c
                if os.path.isfile(os.path.join(root, src)):  # else stale: its source is gone
                    objs[src] = nm_symbols(full)
    owner = {}
    for src, (defined, _) in objs.items():
        for s in defined:
            owner[s] = src
    graph = {}
    for src, (_, undefined) in objs.items():
        uses = collections.defaultdict(list)
        for s in sorted(undefined):
            o = owner.get(s)
            if o and o != src:
                uses[o].append(s)
        graph[src] = dict(uses)
    return graph


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--src", default=os.path.dirname(here), help="the checkout (holds src/)")
    ap.add_argument("--build", help="a CMake build directory: also check calls (nm)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the folder graph")
    args = ap.parse_args()
    rank = rank_table()
    errs, unknown = [], set()

    inc = scan(args.src)
    edges = [(a, b, "") for a in inc for b in inc[a]]
    errs += check_layers(edges, rank, "include", unknown)
    # modules: a source with its same-name header; header-only files are leaves
    has_source = {module_of(f) for f in inc if f.endswith((".c", ".cu"))}
    modules = collections.defaultdict(set)
    for a in inc:
        if module_of(a) not in has_source:
            continue
        for b in inc[a]:
            if module_of(a) != module_of(b):
                modules[module_of(a)].add(module_of(b))
    allowed = [set(c) for c in ALLOWED_CYCLES]
    for comp in cycles(modules):
        if set(comp) not in allowed:
            errs.append("include cycle between modules: " + " <-> ".join(comp))
    for comp in cycles({a: set(bs) for a, bs in inc.items()}):
        errs.append("include cycle between files: " + " <-> ".join(comp))
    if args.verbose:
        fe = collections.Counter((folder_of(a), folder_of(b)) for a, b, _ in edges
                                 if folder_of(a) != folder_of(b))
        for (a, b), n in sorted(fe.items()):
            print("include: %s -> %s (%d)" % (a, b, n))

    n_calls = 0
    if args.build:
        if not os.path.isdir(os.path.join(args.build, "CMakeFiles", "lyra_obj.dir")):
            errs.append("calls: no object files in %s (build lyra_obj first)" % args.build)
        else:
            calls = call_graph(args.build, args.src)
            cedges = []
            for a, uses in calls.items():
                for b, syms in uses.items():
                    n_calls += 1
                    cedges.append((a, b, " for " + ", ".join(syms[:3]) + (", ..." if len(syms) > 3 else "")))
            errs += check_layers(cedges, rank, "call", unknown)
            for folder in CALL_CHECKED:
                sub = {a: {b for b in uses if folder_of(b) == folder}
                       for a, uses in calls.items() if folder_of(a) == folder}
                for comp in cycles(sub):
                    why = "; ".join("%s uses %s" % (os.path.basename(a), ", ".join(calls[a][b][:2]))
                                    for a in comp for b in comp if b in calls[a])
                    errs.append("call cycle in src/%s: %s (%s)" % (folder, " <-> ".join(comp), why))
                if args.verbose:
                    for a in sorted(sub):
                        for b in sorted(sub[a]):
                            print("call: %s -> %s (%s)" % (a, b, ", ".join(calls[a][b])))

    for f in sorted(unknown):
        print("include-graph: note: folder src/%s is not in LAYERS (scripts/include-graph.py): "
              "not checked for layering" % (f or "."))
    for e in errs:
        print("include-graph: " + e)
    if errs:
        print("include-graph: FAILED (%d problem%s; layer order: %s)"
              % (len(errs), "" if len(errs) == 1 else "s",
                 " < ".join("/".join(l) for l in LAYERS)))
        return 1
    print("include-graph: ok: %d files, %d includes%s; no cycles, no upward arrows"
          % (len(inc), len(edges), ", %d object-file call edges" % n_calls if args.build else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
