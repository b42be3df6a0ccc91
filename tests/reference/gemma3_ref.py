#!/usr/bin/env python3
"""gemma3_ref.py: llama.cpp's answers for the real Gemma 3 270M model, the
reference tests/cli/test_cli_gemma3.sh holds `lyra` to (made once, committed
in tests/data/gemma3/; see the README.md there), and the checks that compare
lyra's output with them.

usage:
  gemma3_ref.py make [--parts P,..] [--model PATH] [--out DIR] [--threads N]
      run llama.cpp (llama-cpp-python, numpy, jinja2 needed) and write the
      expected files; --parts: tokenize, generate, perplexity, chat (default
      all; the others' entries in DIR/reference.json are kept). --model:
      default `scripts/get-gemma3.sh --path-only`; --out: tests/data/gemma3
  gemma3_ref.py check-generate DIR N GOT   lyra's output for prompt N
  gemma3_ref.py check-chat DIR GOT         lyra chat's output for chat.in
      (standard library only) print `ok: ...` and exit 0, or the first
      difference (step, both tokens' texts, llama.cpp's top-two margin there)
      and exit 1.

What `make` writes (every text file byte for byte what `lyra` prints):
  tokenize/NN.txt, NN.ids  a string and its token ids as `lyra tokenize -f`
                           prints them (BOS first, as the model adds it;
                           llama_tokenize with add_special=True,
                           parse_special=False); NN.special.ids where the
                           text has special tokens: with parse_special=True
                           (`lyra tokenize --parse-special`)
  generate/NN.prompt, NN.out  a prompt (BOS added, raw completion) and its
                           greedy continuation of N_GEN tokens (argmax of the
                           logits, stopping early at an end-of-generation
                           token, which is not printed), as `lyra generate
                           --greedy -n N_GEN -p PROMPT` prints it: the text,
                           then a newline
  perplexity.txt           `ctx C perplexity P` for each C of PPL_TEST_CTX:
                           the perplexity of PPL_TEXT computed as `lyra
                           perplexity --ctx C` does (src/app/cmd_perplexity.c:
                           chunks of C tokens, the first set to BOS, tokens
                           C/2+1 .. C-1 scored) from llama.cpp's logits
  chat.in, chat.out        user lines piped into `lyra chat --greedy -n
                           N_CHAT` (the gemma template) and what it prints: each
                           reply (trimmed), then an empty line. The prompt of
                           each turn is Gemma 3's chat template
                           (tests/data/chat_templates/gemma3-it.jinja: this
                           GGUF carries no tokenizer.chat_template) rendered
                           with Jinja as Hugging Face does, tokenized with
                           parse_special and no extra BOS (the text starts
                           with <bos>); replies stop at <eos>, <end_of_turn>
                           or <start_of_turn> (gemma's stops)
  reference.json           all of it, with the token ids, each token's text
                           length in bytes and, for every greedy step, the
                           logit margin between llama.cpp's top two tokens

Greedy text is compared up to the first near tie: lyra must produce
llama.cpp's tokens until they differ, and they may differ only at a step
where llama.cpp's top two logits are within TIE of each other. (lyra and
llama.cpp quantize activations the same way but round differently elsewhere,
e.g. llama.cpp's f16 Q in Q*K and its f16 GELU table; on this model the
logits of the two differ by about 0.2 on average, as each differs from a
float64 forward pass, so closer calls can go either way.)
"""
import argparse
import json
import math
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TIE = 0.5

N_GEN = 32
N_CHAT = 32
PPL_TEXT = "tests/data/stories.txt"
PPL_CTX = [512, 1024]   # in reference.json
PPL_TEST_CTX = [1024]   # in perplexity.txt: what the test runs (the 512-token
                        # window of the local layers is crossed)

# Raw-completion prompts. The last one is long (the opening of
# tests/data/stories.txt, over 512 tokens) so that its continuation runs past
# the 512-token sliding window of the local layers.
# Chosen so that no greedy step is a near tie in llama.cpp's logits (the
# smallest top-two margin of each is in reference.json; "The capital of
# France is" was dropped for a margin of 0.03).
PROMPTS = [
    "Once upon a time, there was a little girl named",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "The three primary colors are",
    "The quick brown fox",
    "The sun rises in the",
]
LONG_PROMPT_CHARS = 2900

# Strings for the tokenizer: words, numbers, punctuation, runs of spaces,
# newlines and tabs (Gemma has user-defined tokens for runs of them), accents,
# CJK, emoji (byte fallback), HTML-like text, special-token texts.
TOKENIZE = [
    "Hello world",
    " Hello world",
    "Hello, world! How are you today?",
    "The year 2024 had 366 days; 3.14159 is pi and 1,000,000 is a million.",
    "  two leading spaces, and   three inside",
    "line one\nline two\n\nline four\n\n\n",
    "\ttab\tseparated\t\tvalues\n",
    "if (x == 1) {\n    return y;\n}\n",
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber se\u00f1or",
    "\u6771\u4eac\u306f\u65e5\u672c\u306e\u9996\u90fd\u3067\u3059\u3002 \u4f60\u597d\uff0c\u4e16\u754c",
    "Emoji: \U0001f600\U0001f680 \u2764\ufe0f \U0001f1eb\U0001f1f7",
    "<table><tr><td>cell</td></tr></table>",
    "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "<bos>not really a bos",
    "",
    "a",
    "    ",
    "\n",
    "antidisestablishmentarianism supercalifragilisticexpialidocious",
    "\u00ff\u0100\u2581\u2581x",
]

# Chat turns (one per line of chat.in).
# (The model is the pretrained one, not the instruction-tuned: its replies
# mostly echo the question, but they are what its logits say.)
CHAT = [
    "Hello! Who are you?",
    "Name three fruits.",
]


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


class Ref:
    def __init__(self, path, threads, n_ctx):
        import llama_cpp
        self.llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=512, n_ubatch=512,
                                   n_threads=threads, n_threads_batch=threads,
                                   logits_all=True, seed=0, verbose=False)
        self.lc = llama_cpp
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.n_vocab = self.llm.n_vocab()

    def tokenize(self, text, add_special=True, parse_special=False):
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)

    def piece(self, tok):
        # llama_token_to_piece without special tokens' text (lyra's output rule)
        return self.llm.detokenize([tok], special=False)

    def is_eog(self, tok):
        return bool(self.lc.llama_vocab_is_eog(self.vocab, tok))

    def logits(self, tokens):
        """Logits [len(tokens), n_vocab] of tokens evaluated on an empty cache."""
        import numpy as np
        self.llm.reset()
        self.llm.eval(tokens)
        return np.array(self.llm.scores[:len(tokens)], dtype=np.float32)

    def greedy(self, tokens, n, stop_ids=()):
        """Greedy continuation: (ids, margins), stopping after n tokens or at
        an end-of-generation token (not included)."""
        import numpy as np
        self.llm.reset()
        self.llm.eval(tokens)
        out, margins = [], []
        for _ in range(n):
            lg = np.array(self.llm.scores[self.llm.n_tokens - 1], dtype=np.float32)
            top = int(np.argmax(lg))
            two = np.partition(lg, -2)[-2:]
            margins.append(float(two[1] - two[0]))
            if self.is_eog(top) or top in stop_ids:
                break
            out.append(top)
            self.llm.eval([top])
        return out, margins


def nll_of(logits, target):
    import numpy as np
    x = logits.astype(np.float64)
    mx = x.max()
    return math.log(np.exp(x - mx).sum()) + mx - x[target]


def perplexity(ref, tokens, ctx, bos):
    """As `lyra perplexity`: chunks of ctx tokens, first one set to BOS,
    tokens ctx/2+1 .. ctx-1 scored."""
    n_chunks = len(tokens) // ctx
    first = ctx // 2
    nll, count = 0.0, 0
    for c in range(n_chunks):
        chunk = list(tokens[c * ctx:(c + 1) * ctx])
        chunk[0] = bos
        lg = ref.logits(chunk)
        for j in range(first, ctx - 1):
            nll += nll_of(lg[j], tokens[c * ctx + j + 1])
            count += 1
    return math.exp(nll / count), nll / count, count, n_chunks


def load_json(d):
    try:
        with open(os.path.join(d, "reference.json"), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def make(argv):
    import llama_cpp
    sys.path.insert(0, HERE)
    import render_chat
    ap = argparse.ArgumentParser(prog="gemma3_ref.py make")
    ap.add_argument("--model")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/data/gemma3"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--parts", default="tokenize,generate,perplexity,chat")
    a = ap.parse_args(argv)
    parts = a.parts.split(",")
    model = a.model or subprocess.check_output(
        [os.path.join(ROOT, "scripts/get-gemma3.sh"), "--path-only"], text=True).strip()
    ref = Ref(model, a.threads, max(PPL_CTX))
    bos = ref.llm.token_bos()
    res = load_json(a.out)
    res.update({"model": os.path.basename(model), "llama_cpp_python": llama_cpp.__version__,
                "n_gen": N_GEN, "n_chat": N_CHAT, "tie": TIE})

    if "tokenize" in parts:
        res["tokenize"] = []
        for i, s in enumerate(TOKENIZE):
            ids = ref.tokenize(s)
            e = {"text": s, "ids": ids}
            write(f"{a.out}/tokenize/{i:02d}.txt", s)
            write(f"{a.out}/tokenize/{i:02d}.ids", " ".join(map(str, ids)) + "\n")
            sp = ref.tokenize(s, parse_special=True)
            if sp != ids:
                e["special_ids"] = sp
                write(f"{a.out}/tokenize/{i:02d}.special.ids", " ".join(map(str, sp)) + "\n")
            res["tokenize"].append(e)

    with open(os.path.join(ROOT, PPL_TEXT), encoding="utf-8") as f:
        story = f.read()
    if "generate" in parts:
        long_prompt = story[:LONG_PROMPT_CHARS]
        long_prompt = long_prompt[:long_prompt.rfind(" ")]  # end at a word
        res["generate"] = []
        for i, p in enumerate(PROMPTS + [long_prompt]):
            toks = ref.tokenize(p)
            ids, margins = ref.greedy(toks, N_GEN)
            pieces = [ref.piece(t) for t in ids]
            text = b"".join(pieces).decode("utf-8", errors="replace")
            write(f"{a.out}/generate/{i:02d}.prompt", p)
            write(f"{a.out}/generate/{i:02d}.out", text + "\n")
            res["generate"].append({"prompt": p, "prompt_tokens": len(toks), "ids": ids,
                                    "piece_bytes": [len(x) for x in pieces], "text": text,
                                    "min_margin": min(margins), "margins": margins})
            print(f"generate {i}: {len(toks)} prompt tokens, min margin {min(margins):.3f}: {text!r}",
                  file=sys.stderr)

    if "perplexity" in parts:
        toks = ref.tokenize(story)
        res["perplexity"] = []
        for ctx in PPL_CTX:
            ppl, mean, count, n_chunks = perplexity(ref, toks, ctx, bos)
            res["perplexity"].append({"text": PPL_TEXT, "ctx": ctx, "tokens": len(toks),
                                      "chunks": n_chunks, "scored": count, "mean_nll": mean,
                                      "perplexity": ppl})
            print(f"perplexity ctx {ctx}: {ppl:.4f} ({len(toks)} tokens, {n_chunks} chunks)",
                  file=sys.stderr)
    write(f"{a.out}/perplexity.txt", "".join(f"ctx {e['ctx']} perplexity {e['perplexity']:.4f}\n"
                                             for e in res.get("perplexity", [])
                                             if e["ctx"] in PPL_TEST_CTX))

    if "chat" in parts:
        with open(os.path.join(ROOT, "tests/data/chat_templates/gemma3-it.jinja"),
                  encoding="utf-8", newline="") as f:
            template = f.read()
        stop_ids = {ref.llm.token_eos()}
        for s in ("<end_of_turn>", "<start_of_turn>"):
            stop_ids.update(ref.tokenize(s, add_special=False, parse_special=True))
        turns, shown, res["chat"] = [], "", []
        for user in CHAT:
            turns.append((user, None))
            prompt = render_chat.render(template, None, turns, "<bos>", "<eos>")
            toks = ref.tokenize(prompt, add_special=False, parse_special=True)
            ids, margins = ref.greedy(toks, N_CHAT, stop_ids)
            pieces = [ref.piece(t) for t in ids]
            raw = b"".join(pieces).decode("utf-8", errors="replace")
            reply = raw.strip()
            turns[-1] = (user, reply)
            shown += reply + "\n\n"
            res["chat"].append({"user": user, "prompt": prompt, "prompt_ids": toks, "ids": ids,
                                "piece_bytes": [len(x) for x in pieces], "raw": raw,
                                "reply": reply, "min_margin": min(margins), "margins": margins})
            print(f"chat: {user!r} -> {reply!r} (min margin {min(margins):.3f})", file=sys.stderr)
        write(f"{a.out}/chat.in", "".join(u + "\n" for u in CHAT))
        write(f"{a.out}/chat.out", shown)

    with open(f"{a.out}/reference.json", "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1, ensure_ascii=False)
        f.write("\n")


# ------------------------------------------------------------------ checks

def first_diff(got, want):
    """Length of the common prefix of two byte strings."""
    p = 0
    while p < len(got) and p < len(want) and got[p] == want[p]:
        p += 1
    return p


def step_at(piece_bytes, off):
    """The greedy step whose token holds byte off of the text (len: after
    the last token, the step that stopped)."""
    cum = 0
    for k, n in enumerate(piece_bytes):
        if cum + n > off:
            return k
        cum += n
    return len(piece_bytes)


def judge(e, got, want, off_base, what):
    """got != want (bytes, want = e's text from byte off_base of its raw
    text): ok when they part at a near tie. Returns (ok, message)."""
    p = first_diff(got, want)
    k = step_at(e["piece_bytes"], off_base + p)
    m = e["margins"][k] if k < len(e["margins"]) else None
    tok = e["ids"][k] if k < len(e["ids"]) else "end"
    ctx = want[max(0, p - 40):p].decode("utf-8", "replace")
    msg = (f"{what}: lyra parts from llama.cpp at step {k} of {len(e['ids'])} (byte {p}, after "
           f"{ctx!r}): lyra {got[p:p + 24].decode('utf-8', 'replace')!r}, llama.cpp "
           f"{want[p:p + 24].decode('utf-8', 'replace')!r} (token {tok}); llama.cpp's top-two "
           f"margin there {m if m is None else round(m, 4)}")
    if m is not None and m < TIE:
        return True, f"ok: {k} steps equal, then a near tie (< {TIE}): " + msg
    return False, msg


def check_generate(d, n, path):
    e = load_json(d)["generate"][n]
    with open(os.path.join(d, "generate", f"{n:02d}.out"), "rb") as f:
        want = f.read()
    with open(path, "rb") as f:
        got = f.read()
    if got == want:
        return True, f"ok: all {len(e['ids'])} tokens equal"
    if got.endswith(b"\n") and want.endswith(b"\n"):
        got, want = got[:-1], want[:-1]
    return judge(e, got, want, 0, f"prompt {n}")


def check_chat(d, path):
    ref = load_json(d)["chat"]
    with open(path, "rb") as f:
        got = f.read()
    pos, notes = 0, []
    for i, e in enumerate(ref):
        want = (e["reply"] + "\n\n").encode("utf-8")
        if got[pos:pos + len(want)] == want:
            pos += len(want)
            notes.append(f"reply {i}: all {len(e['ids'])} tokens equal")
            continue
        raw = e["raw"].encode("utf-8")
        lead = len(raw) - len(raw.lstrip())
        ok, msg = judge(e, got[pos:], want, lead, f"reply {i}")
        if ok:
            msg += " (later turns not compared)"
        return ok, "; ".join(notes + [msg])
    if pos != len(got):
        return False, f"lyra printed more after the {len(ref)} replies: {got[pos:pos + 80]!r}"
    return True, "ok: " + "; ".join(notes)


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "make":
        make(sys.argv[2:])
        return 0
    if len(sys.argv) == 5 and sys.argv[1] == "check-generate":
        ok, msg = check_generate(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) == 4 and sys.argv[1] == "check-chat":
        ok, msg = check_chat(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)
    print(msg)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
