#!/usr/bin/env python3
"""hf_tok_ref.py: tokenizer.json files and the ids the `tokenizers` library
(PyPI) gives for a corpus, to check lyra's tokenizer.json reader.

  hf_tok_ref.py small OUT SHARED      the small families committed under
                                      tests/data/tokenizers (trained here,
                                      or built from stories260K.gguf)
  hf_tok_ref.py vocab OUT SHARED      big ones from the llama.cpp vocab GGUFs
                                      in SHARED/vocab (gpt-2, llama-spm; SHARED: the
                                      shared models directory)
  hf_tok_ref.py copy OUT FILE...      real tokenizer.json files, one dir each
  hf_tok_ref.py normalizers OUT SHARED  the Unicode normalizer families
                                      (NFKC, NFD, NFKC + SentencePiece; NFC's
                                      qwen2-trained gets the texts too), each
                                      with its corpus.json: corpus.json and
                                      NORM_TEXTS
  hf_tok_ref.py expect DIR CORPUS     DIR/expected.json: for each corpus
                                      text, encode(add_special_tokens=False)
                                      ("plain") and =True ("special");
                                      DIR/corpus.json instead when present

Each family is a directory with tokenizer.json (and tokenizer_config.json
where it matters). Needs tokenizers (and gguf for the GGUF-based ones).
Training is deterministic for a given tokenizers version; the committed
files are the reference, regenerate only on purpose."""
import json
import os
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

RX_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
RX_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def training_texts(src):
    with open(os.path.join(src, "tests/data/stories.txt"), encoding="utf-8") as f:
        texts = f.read().split("\n")
    texts += [
        "def f(x):\n    return x**2 + 1  # comment\n", "for (int i = 0; i < n; i++) { sum += a[i]; }",
        "café naïve résumé über Straße", "日本語のテキストと中文文本 한국어", "numbers 123 4567 89 2026",
        "Hello, world! I'm here; you're there.", "Привет, мир! ¡Hola!",
    ] * 3
    return texts


def save(tok, out, name, config=None, merges_as_strings=False, edit=None):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    j = json.loads(tok.to_str())
    if merges_as_strings:
        j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    else:
        j["model"]["merges"] = [m.split(" ", 1) if isinstance(m, str) else m for m in j["model"]["merges"]]
    if edit:
        edit(j)
    Tokenizer.from_str(json.dumps(j))  # still valid for tokenizers
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, separators=(",", ":"))
    if config is not None:
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=1)


def trained(kind, specials, pre, normalizer=None, vocab_size=700):
    tok = Tokenizer(models.BPE())
    if normalizer:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_texts(SRC), tr)
    return tok


# Texts that normalization forms change: composed and decomposed accents,
# full-width letters and digits, ligatures, super/subscripts, CJK
# compatibility characters, compatibility spaces, Hangul syllables and jamo.
NORM_TEXTS = [
    "caf\u00e9 cafe\u0301 na\u00efve nai\u0308ve \u00c5ngstr\u00f6m \u212bngstro\u0308m",
    "\uff21\uff22\uff23 \uff48\uff45\uff4c\uff4c\uff4f \uff11\uff12\uff13\uff01 full-width",
    "\ufb01nance \ufb02ow e\ufb00ort \ufb03ce \u2163 \u216b \u2460\u2461",
    "x\u00b2 + y\u00b3 = z\u2074, H\u2082O, 10\u207b\u00b3, \u00bd \u00bc",
    "\u337f \u3300 \u338f \uf900 \uf901 \u2f00 \u3131 \uff76\uff9e",
    "a\u00a0b\u2003c\u3000d \u2024 \u2026 \u00b5 \u03bc \u2126",
    "\ud55c\uad6d\uc5b4 \u1112\u1161\u11ab\u1100\u116e\u11a8 Stra\u00dfe \u1e9e",
    "caf\u00e9<|endoftext|>cafe\u0301 \uff28\uff49<|im_end|>\ufb01",
]


def norm_corpus(d):
    with open(os.path.join(SRC, "tests/data/tokenizers/corpus.json"), encoding="utf-8") as f:
        texts = json.load(f)
    with open(os.path.join(d, "corpus.json"), "w", encoding="utf-8") as f:
        json.dump(texts + NORM_TEXTS, f, ensure_ascii=True, indent=0)


def make_normalizers(out, shared):
    qwen = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(RX_QWEN2), "isolated"),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    # NFKC (as some BPE models have): trained on NFKC text, so ligatures and
    # full-width letters meet the merges of their plain forms
    t = trained("nfkc", ["<|endoftext|>", "<|im_end|>"], qwen, normalizer=normalizers.NFKC())
    save(t, out, "nfkc-trained", {"eos_token": "<|im_end|>", "add_bos_token": False})
    # NFD: accents as combining marks
    t = trained("nfd", ["<|endoftext|>", "<|im_end|>"], pre_tokenizers.ByteLevel(add_prefix_space=False),
                normalizer=normalizers.NFD())
    save(t, out, "nfd-trained", {"eos_token": "<|im_end|>"})
    # NFKC before the SentencePiece Prepend/Replace (stories260K's vocabulary)
    spm_family(os.path.join(shared, "stories260K.gguf"), out, "nfkc-stories", legacy=True, nfkc=True)
    for name in ("nfkc-trained", "nfd-trained", "nfkc-stories", "qwen2-trained"):
        norm_corpus(os.path.join(out, name))


def make_small(out, shared):
    # GPT-2 style: ByteLevel's own regex, "a b" merges
    t = trained("gpt2", ["<|endoftext|>"], pre_tokenizers.ByteLevel(add_prefix_space=False))
    save(t, out, "gpt2-trained", {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
         merges_as_strings=True)
    # Llama 3 style: Split + ByteLevel(use_regex=False), [a, b] merges, BOS by the post-processor
    t = trained("llama3", ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"],
                pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(RX_LLAMA3), "isolated"),
                                         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]))
    t.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B",
                                      special_tokens=[("<|begin_of_text|>", 0)])])
    def unreachable(j):  # ignore_merges (as Llama 3): whole words that no merge reaches
        j["model"]["ignore_merges"] = True
        v = j["model"]["vocab"]
        for w in ["\u0120three", "\u0120leading", "\u0120metaspace"]:
            if w not in v:
                v[w] = max(max(v.values()), max(a["id"] for a in j["added_tokens"])) + 1
    save(t, out, "llama3-trained", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                                    "chat_template": "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|eot_id|>{% endfor %}"},
         edit=unreachable)
    # Qwen2 style: NFC, single digits, a non-special added token
    t = trained("qwen2", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(RX_QWEN2), "isolated"),
                                         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
                normalizer=normalizers.NFC())
    t.add_tokens(["<tool_call>", "</tool_call>"])
    t.add_special_tokens([AddedToken("<|end|>", rstrip=True, special=True),
                          AddedToken("<mask>", lstrip=True, special=True)])
    save(t, out, "qwen2-trained", {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                                   "add_bos_token": False})
    # custom: Digits + a literal Split + ByteLevel(add_prefix_space) (RoBERTa-like prefix)
    t = trained("custom", ["<s>", "</s>", "<unk>"],
                pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                         pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)]))
    save(t, out, "digits-prefix-trained", {"bos_token": "<s>", "eos_token": "</s>"})
    # SentencePiece style from stories260K's vocabulary (as transformers' LlamaConverter)
    spm_family(os.path.join(shared, "stories260K.gguf"), out, "llama2-stories", legacy=True)
    spm_family(os.path.join(shared, "stories260K.gguf"), out, "metaspace-stories", legacy=False)


def gguf_vocab(path):
    import gguf
    r = gguf.GGUFReader(path)

    def arr(key, conv):
        f = r.fields[key]
        return [conv(f.parts[i]) for i in f.data]
    toks = arr("tokenizer.ggml.tokens", lambda p: bytes(p).decode("utf-8"))
    scores = arr("tokenizer.ggml.scores", lambda p: float(p[0])) if "tokenizer.ggml.scores" in r.fields else None
    types = arr("tokenizer.ggml.token_type", lambda p: int(p[0]))
    merges = arr("tokenizer.ggml.merges", lambda p: bytes(p).decode("utf-8")) if "tokenizer.ggml.merges" in r.fields else None
    return toks, scores, types, merges


def spm_family(path, out, name, legacy, nfkc=False):
    toks, scores, types, _ = gguf_vocab(path)
    vocab = {t: i for i, t in enumerate(toks)}
    # merges: every split of a piece into two pieces, by the piece's score
    merges = []
    for i in sorted(range(len(toks)), key=lambda i: -scores[i]):
        p = toks[i]
        if types[i] != 1:
            continue
        local = [(p[:k], p[k:]) for k in range(1, len(p)) if p[:k] in vocab and p[k:] in vocab]
        local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        merges += local
    added = [{"id": i, "content": toks[i], "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i in range(len(toks)) if types[i] in (2, 3)]
    j = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": ([{"type": "NFKC"}] if nfkc else []) + [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]} if legacy else None,
        "pre_tokenizer": None if legacy else {"type": "Metaspace", "replacement": "\u2581",
                                              "prepend_scheme": "first", "split": False},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [vocab["<s>"]], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    Tokenizer.from_str(json.dumps(j))
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
                   "legacy": legacy}, f, indent=1)


def gpt2_family(path, out, name):
    toks, _, types, merges = gguf_vocab(path)
    vocab = {t: i for i, t in enumerate(toks)}
    added = [{"id": i, "content": toks[i], "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i in range(len(toks)) if types[i] == 3]
    j = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
         "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
         "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
         "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
         "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                   "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                   "vocab": vocab, "merges": merges}}
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, separators=(",", ":"))


def expect(d, corpus):
    if os.path.exists(os.path.join(d, "corpus.json")):
        corpus = os.path.join(d, "corpus.json")
    with open(corpus, encoding="utf-8") as f:
        texts = json.load(f)
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    res = {"plain": [tok.encode(t, add_special_tokens=False).ids for t in texts],
           "special": [tok.encode(t, add_special_tokens=True).ids for t in texts]}
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(res, f, separators=(",", ":"))


SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "small":
        make_small(sys.argv[2], sys.argv[3])
    elif cmd == "normalizers":
        make_normalizers(sys.argv[2], sys.argv[3])
    elif cmd == "vocab":
        v = os.path.join(sys.argv[3], "vocab")
        gpt2_family(os.path.join(v, "ggml-vocab-gpt-2.gguf"), sys.argv[2], "gpt-2")
        spm_family(os.path.join(v, "ggml-vocab-llama-spm.gguf"), sys.argv[2], "llama-spm", legacy=True)
    elif cmd == "copy":
        import shutil
        for p in sys.argv[3:]:
            d = os.path.join(sys.argv[2], os.path.basename(p).replace(".json", ""))
            os.makedirs(d, exist_ok=True)
            shutil.copy(p, os.path.join(d, "tokenizer.json"))
    elif cmd == "expect":
        expect(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: see the top of this file")
