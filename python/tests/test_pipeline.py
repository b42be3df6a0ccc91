"""safe_load_pipeline and the Pipeline on stories260K: the same text as
`lyra generate` byte for byte (greedy and seeded sampling, stop strings),
transformers' result shapes, streaming, the seed's example config and
discovery, what was loaded (device map, fallback history, model info)."""
import json
import os
import shutil

import pytest

import lyra

PROMPTS = ["Once upon a time", "One day, Lily", "The cat sat"]
EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "config", "model_config.example.json")


@pytest.fixture
def pipe(model):
    with lyra.safe_load_pipeline(model, pipeline_kwargs={"max_new_tokens": 24}) as p:
        yield p


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_equals_cli(pipe, cli, prompt):
    ref = cli(prompt, "-n", 24, "--temp", 0)
    assert pipe(prompt, do_sample=False) == [{"generated_text": prompt + ref}]
    assert pipe(prompt, do_sample=False, return_full_text=False) == [{"generated_text": ref}]
    assert pipe.generate(prompt, temperature=0).text == ref


def test_greedy_at_load_equals_cli(model, cli):
    ref = cli("Once upon a time", "-n", 40, "--greedy")
    with lyra.safe_load_pipeline(model, "text-generation",
                                 pipeline_kwargs={"max_new_tokens": 40, "do_sample": False}) as p:
        assert p("Once upon a time")[0]["generated_text"] == "Once upon a time" + ref
        g = p.last_generation
        assert g.completion_tokens == 40 and g.finish_reason == "length" and g.prompt_tokens >= 4


@pytest.mark.parametrize("seed", [1, 42, 2**63 + 5])
def test_seeded_sampling_equals_cli(pipe, cli, seed):
    knobs = dict(temperature=0.9, top_k=40, top_p=0.95, min_p=0.05)
    ref = cli("Once upon a time", "-n", 32, "--temp", 0.9, "--top-k", 40, "--top-p", 0.95, "--min-p", 0.05,
              "--seed", seed)
    out = pipe("Once upon a time", max_new_tokens=32, seed=seed, **knobs)
    assert out[0]["generated_text"] == "Once upon a time" + ref
    # transformers' spelling of the knobs, repetition penalty too
    ref = cli("Once upon a time", "-n", 32, "--temp", 0.7, "--top-k", 20, "--top-p", 0.9, "--min-p", 0,
              "--repeat-penalty", 1.3, "--seed", seed)
    out = pipe.generate("Once upon a time", max_new_tokens=32, seed=seed, temperature=0.7, top_k=20, top_p=0.9,
                        min_p=0.0, repetition_penalty=1.3, do_sample=True)
    assert out.text == ref


def test_seed_at_load_equals_cli(model, cli):
    ref = cli("One day", "-n", 20, "--seed", 9)  # lyra's sampling defaults
    with lyra.safe_load_pipeline(model, pipeline_kwargs={"max_new_tokens": 20}, seed=9) as p:
        assert p.generate("One day").text == ref
        assert p.generate("One day").text == ref  # each call starts afresh


def test_stop_equals_cli(pipe, cli):
    full = cli("Once upon a time", "-n", 40, "--temp", 0)
    word = full.split()[5]
    ref = cli("Once upon a time", "-n", 40, "--temp", 0, "--stop", word, "--stop", "ZZZ")
    assert len(ref) < len(full)
    g = pipe.generate("Once upon a time", max_new_tokens=40, do_sample=False, stop=[word, "ZZZ"])
    assert g.text == ref and g.finish_reason == "stop_sequence"
    out = pipe("Once upon a time", max_new_tokens=40, do_sample=False, stop_sequence=word, return_full_text=False)
    assert out == [{"generated_text": ref}]


def test_result_shapes(pipe):
    out = pipe(["Once upon a time", "One day"], max_new_tokens=4, do_sample=False)
    assert len(out) == 2 and all(len(o) == 1 and o[0]["generated_text"].startswith(p)
                                 for o, p in zip(out, ["Once upon a time", "One day"]))
    chat = [{"role": "user", "content": "Tell me a story."}]
    out = pipe(chat, max_new_tokens=8, do_sample=False)
    conv = out[0]["generated_text"]
    assert conv[:1] == chat and conv[1]["role"] == "assistant" and conv[1]["content"]
    assert pipe(chat, max_new_tokens=8, do_sample=False, return_full_text=False) == [
        {"generated_text": conv[1]["content"]}]
    out = pipe([chat, chat], max_new_tokens=8, do_sample=False)
    assert out == [[{"generated_text": conv}], [{"generated_text": conv}]]
    assert pipe([]) == []
    with pytest.raises(TypeError):
        pipe(42)


def test_chat_equals_turns(pipe):
    r1 = pipe.chat([{"role": "user", "content": "Tell me a story."}], max_new_tokens=10, do_sample=False).text
    msgs = [{"role": "system", "content": "You tell stories."}, {"role": "user", "content": "Tell me a story."},
            {"role": "assistant", "content": r1}, {"role": "user", "content": "What happened next?"}]
    g2 = pipe.chat(msgs, max_new_tokens=10, do_sample=False)
    assert g2.text and g2.prompt_tokens > 10
    # the same conversation again: everything but the reply is reused from the KV cache
    g3 = pipe.chat(msgs, max_new_tokens=10, do_sample=False)
    assert g3.text == g2.text and g3.reused_tokens >= g3.prompt_tokens - 1


def test_stream_joins_to_text(pipe):
    for kw in ({"do_sample": False}, {"seed": 5, "temperature": 1.0}):
        s = pipe.stream("Once upon a time", max_new_tokens=30, **kw)
        pieces = list(s)
        full = pipe.generate("Once upon a time", max_new_tokens=30, **kw)
        assert len(pieces) > 5 and "".join(pieces) == full.text == s.generation.text
        assert s.generation.completion_tokens == 30
    chat = [{"role": "user", "content": "Tell me a story."}]
    pieces = list(pipe.stream(chat, max_new_tokens=12, do_sample=False))
    assert "".join(pieces) == pipe.chat(chat, max_new_tokens=12, do_sample=False).text
    # on_text on the calling thread gets the same pieces
    got = []
    g = pipe.generate("Once upon a time", max_new_tokens=30, do_sample=False, on_text=got.append)
    assert "".join(got) == g.text
    # leaving a stream early stops it; the pipeline goes on
    s = pipe.stream("Once upon a time", max_new_tokens=-1, do_sample=False)
    first = [next(s) for _ in range(3)]
    s.close()
    assert "".join(first) == g.text[:len("".join(first))]
    assert pipe.generate("Once upon a time", max_new_tokens=30, do_sample=False).text == g.text


def test_example_config_accepted(model, clean_env):
    # the seed's example config as a file: every key accepted, its values in effect
    with lyra.safe_load_pipeline(model, config_path=EXAMPLE) as p:
        cfg = p.config
        src = os.path.abspath(EXAMPLE)
        assert cfg["pipeline_kwargs.max_new_tokens"]["value"] == 4000
        assert cfg["gpu_layers_fallback"]["value"] == 16
        assert cfg["enable_progressive_fallback"]["value"] is True
        assert cfg["device_map"]["value"] == "auto"
        assert cfg["max_memory"]["value"] == {"0": 6000000000, "cpu": 16000000000} or \
            "cpu" in json.dumps(cfg["max_memory"]["value"])
        assert cfg["gpu_layers_fallback"]["source"].endswith(src)
        assert p.generate("Once", max_new_tokens=4).completion_tokens == 4
    # the same keys as arguments
    example = json.load(open(EXAMPLE))
    example.pop("model_id")
    pk = example.pop("pipeline_kwargs")
    with lyra.safe_load_pipeline(model, pipeline_kwargs=pk, **example) as p:
        assert p.config["pipeline_kwargs.max_new_tokens"]["value"] == 4000
        assert p.config["max_memory"]["source"] == "api"
    # its model_id (microsoft/phi-2) is not here: ModelNotFoundError naming it
    with pytest.raises(lyra.ModelNotFoundError, match="microsoft/phi-2"):
        lyra.safe_load_pipeline(config_path=EXAMPLE)


def test_discovery(model, clean_env, monkeypatch, cli):
    ref = cli("One day", "-n", 5, "--temp", 0)
    cfg = {"model_id": model, "pipeline_kwargs": {"max_new_tokens": 5, "do_sample": False}}
    # ./config/model_config.json
    (clean_env / "config").mkdir()
    (clean_env / "config" / "model_config.json").write_text(json.dumps(cfg))
    with lyra.safe_load_pipeline() as p:
        assert p.generate("One day").text == ref
    # $LYRA_MODEL_CONFIG wins over it
    other = clean_env / "other.json"
    other.write_text(json.dumps(dict(cfg, pipeline_kwargs={"max_new_tokens": 3, "do_sample": False})))
    monkeypatch.setenv("LYRA_MODEL_CONFIG", str(other))
    with lyra.safe_load_pipeline() as p:
        assert p.generate("One day").completion_tokens == 3
    # $XDG_CONFIG_HOME/lyra/model_config.json when nothing else
    monkeypatch.delenv("LYRA_MODEL_CONFIG")
    shutil.rmtree(clean_env / "config")
    xdg = clean_env / "home" / "lyra"
    xdg.mkdir()
    (xdg / "model_config.json").write_text(json.dumps(cfg))
    with lyra.safe_load_pipeline() as p:
        assert p.config["model_id"]["source"].startswith("file:")
        assert p.generate("One day").text == ref
    # overrides win over the file
    with lyra.safe_load_pipeline(pipeline_kwargs={"max_new_tokens": 2}) as p:
        assert p.generate("One day").completion_tokens == 2


def test_loaded(pipe, model):
    dm = pipe.device_map
    assert dm["lm_head"] == "cpu" and "model.layers.4" in dm and len(dm) == 8
    assert pipe.fallback_history == []
    info = pipe.model_info
    assert info["arch"] == "llama" and info["n_layer"] == 5 and info["n_vocab"] == 512
    assert info["map"].startswith("map: cpu (cpu)")
    assert pipe.tokenize("Once upon a time")[0] == 1
    assert lyra.__version__ and lyra.API_VERSION == 5 and lyra.build_features()


def test_simulated_gpu_and_fallback(model, monkeypatch, cli):
    ref = cli("Once upon a time", "-n", 16, "--temp", 0)
    monkeypatch.setenv("LYRA_SIM_GPUS", "64MiB")
    with lyra.safe_load_pipeline(model, gpu_layers=2, pipeline_kwargs={"do_sample": False}) as p:
        dm = p.device_map
        assert dm["model.layers.0"] == "0" and dm["model.layers.1"] == "0" and dm["model.layers.4"] == "cpu"
        assert p.generate("Once upon a time", max_new_tokens=16).text == ref
    # a GPU that has less memory than it says: the fallback moves layers to the CPU
    monkeypatch.setenv("LYRA_SIM_GPUS", "300KiB@64MiB")
    kw = dict(context_length=256, batch_size=64, pipeline_kwargs={"do_sample": False})
    with lyra.safe_load_pipeline(model, **kw) as p:
        hist = p.fallback_history
        assert hist and hist[0]["phase"] == "load" and hist[0]["device"] == "0" and hist[0]["what"] == "gpu"
        assert hist[-1]["to"] < hist[0]["from"]
        assert p.generate("Once upon a time", max_new_tokens=16).text == ref
    # with the fallback off: OutOfMemoryError (exit code 3), no crash
    with pytest.raises(lyra.OutOfMemoryError, match="out of memory on 0") as e:
        lyra.safe_load_pipeline(model, enable_progressive_fallback=False, **kw)
    assert e.value.code == 3 and isinstance(e.value, MemoryError)


def test_revision_key(model, clean_env, monkeypatch):
    """revision= (the config key; transformers' from_pretrained argument)
    picks the snapshot of an org/name in the Hugging Face cache, through the
    pipeline's model lookup: refs/main's snapshot holds the model, the dev
    branch's is empty; org/name@REV against the key is an error naming both."""
    repo = clean_env / "hub" / "models--org--st"
    for rev in ("aaa", "bbb"):
        (repo / "snapshots" / rev).mkdir(parents=True)
    os.symlink(model, repo / "snapshots" / "aaa" / "stories260K.gguf")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("aaa\n")
    (repo / "refs" / "dev").write_text("bbb\n")
    monkeypatch.setenv("HF_HUB_CACHE", str(clean_env / "hub"))
    kw = {"max_new_tokens": 4, "do_sample": False}
    with lyra.safe_load_pipeline("org/st", pipeline_kwargs=kw, revision="main") as p:
        assert p("Once")[0]["generated_text"]
    with pytest.raises(lyra.LyraError, match="snapshots/bbb"):
        lyra.safe_load_pipeline("org/st", pipeline_kwargs=kw, revision="dev")
    with pytest.raises(lyra.LyraError, match="org/st@dev names revision dev but revision \\(api\\) says main"):
        lyra.safe_load_pipeline("org/st@dev", pipeline_kwargs=kw, revision="main")
    cfg = clean_env / "rev.json"
    cfg.write_text(json.dumps({"model_id": "org/st", "revision": "dev", "torch_dtype": "float16"}))
    with pytest.raises(lyra.LyraError, match="snapshots/bbb"):
        lyra.safe_load_pipeline(config_path=str(cfg), pipeline_kwargs=kw)
    with lyra.safe_load_pipeline(config_path=str(cfg), pipeline_kwargs=kw, revision="aaa") as p:
        assert p("Once")[0]["generated_text"]
