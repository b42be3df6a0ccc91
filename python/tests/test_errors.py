"""Bad inputs raise the documented exception classes with lyra's one-line
message (never an abort or a crash), and the pipeline goes on after them."""
import pytest

import lyra


def _load(model, **kw):
    return lambda tmp: lyra.safe_load_pipeline(model, **kw)


def _write(tmp, name, text):
    p = tmp / name
    p.write_text(text)
    return str(p)


# (id, call(model, tmp), exception class, Python base it must also be, message part)
CASES = [
    ("missing model", lambda m, t: lyra.safe_load_pipeline("/nonexistent/model.gguf"),
     lyra.ModelNotFoundError, FileNotFoundError, "/nonexistent/model.gguf"),
    ("missing hf repo", lambda m, t: lyra.safe_load_pipeline("nobody/nothing-GGUF"),
     lyra.ModelNotFoundError, FileNotFoundError, "nobody/nothing-GGUF"),
    ("no model_id", lambda m, t: lyra.safe_load_pipeline(),
     lyra.InvalidArgumentError, ValueError, "model_id: not given"),
    ("bad JSON", lambda m, t: lyra.safe_load_pipeline(m, config_path=_write(t, "bad.json", '{"model_id": ')),
     lyra.ConfigError, ValueError, "bad.json:1:"),
    ("bad value in file", lambda m, t: lyra.safe_load_pipeline(
        m, config_path=_write(t, "v.json", '{"pipeline_kwargs": {"max_new_tokens": "many"}}')),
     lyra.ConfigError, ValueError, "pipeline_kwargs.max_new_tokens"),
    ("missing config", lambda m, t: lyra.safe_load_pipeline(m, config_path="/nonexistent/cfg.json"),
     lyra.ConfigError, ValueError, "/nonexistent/cfg.json"),
    ("unknown key", lambda m, t: lyra.safe_load_pipeline(m, max_new_tokenz=4),
     lyra.UnknownArgumentError, TypeError, "max_new_tokenz: unknown key"),
    ("unknown pipeline kwarg", lambda m, t: lyra.safe_load_pipeline(m, pipeline_kwargs={"temprature": 0.5}),
     lyra.UnknownArgumentError, TypeError, "temprature"),
    ("6Gb", lambda m, t: lyra.safe_load_pipeline(m, max_memory={"cpu": "6Gb"}),
     lyra.ConfigError, ValueError, "lowercase b means bits"),
    ("6Gb in a file", lambda m, t: lyra.safe_load_pipeline(
        m, config_path=_write(t, "g.json", '{"max_memory": {"0": "6Gb"}}')),
     lyra.ConfigError, ValueError, "max_memory.0"),
    ("negative max_new_tokens", lambda m, t: lyra.safe_load_pipeline(m, pipeline_kwargs={"max_new_tokens": -5}),
     lyra.ConfigError, ValueError, "max_new_tokens"),
    ("temperature type", lambda m, t: lyra.safe_load_pipeline(m, pipeline_kwargs={"temperature": "hot"}),
     lyra.ConfigError, ValueError, "temperature"),
    ("bad device_map", lambda m, t: lyra.safe_load_pipeline(m, device_map="everywhere"),
     lyra.ConfigError, ValueError, "everywhere: cannot read device map"),
    ("task", lambda m, t: lyra.safe_load_pipeline(m, task="summarization"),
     lyra.InvalidArgumentError, ValueError, "task: 'summarization' is not supported"),
    ("both 8 and 4 bit", lambda m, t: lyra.safe_load_pipeline(m, load_in_8bit=True, load_in_4bit=True),
     lyra.ConfigError, ValueError, "load_in_"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_load_errors(model, clean_env, case):
    _, call, cls, base, part = case
    with pytest.raises(cls) as e:
        call(model, clean_env)
    assert isinstance(e.value, base) and isinstance(e.value, lyra.LyraError)
    msg = str(e.value)
    assert part in msg and "\n" not in msg and e.value.code == 2, msg


def test_not_a_model(shared_file):
    with pytest.raises(lyra.ModelLoadError) as e:
        lyra.safe_load_pipeline(shared_file("models/tok512.bin"))
    assert "tok512.bin" in str(e.value) and e.value.code == 2


CALL_CASES = [
    ("unknown kwarg", dict(foo=1), lyra.UnknownArgumentError, TypeError, "foo: unknown key"),
    ("misspelt kwarg", dict(max_new_token=3), lyra.UnknownArgumentError, TypeError, "max_new_token"),
    ("load setting per call", dict(device_map="cpu"), lyra.UnknownArgumentError, TypeError,
     "device_map: not a generation setting"),
    ("negative max_new_tokens", dict(max_new_tokens=-5), lyra.ConfigError, ValueError, "max_new_tokens"),
    ("top_p out of range", dict(top_p=1.5), lyra.ConfigError, ValueError, "top_p"),
    ("empty stop", dict(stop=""), lyra.ConfigError, ValueError, "stop"),
]


@pytest.mark.parametrize("case", CALL_CASES, ids=[c[0] for c in CALL_CASES])
def test_call_errors(model, case):
    _, kw, cls, base, part = case
    with lyra.safe_load_pipeline(model, pipeline_kwargs={"max_new_tokens": 8, "do_sample": False}) as p:
        ref = p.generate("Once upon a time").text
        with pytest.raises(cls) as e:
            p("Once upon a time", **kw)
        assert isinstance(e.value, base) and part in str(e.value), str(e.value)
        assert p.generate("Once upon a time").text == ref  # it goes on


def test_chat_and_prompt_errors(model):
    with lyra.safe_load_pipeline(model, context_length=64, pipeline_kwargs={"max_new_tokens": 4}) as p:
        with pytest.raises(lyra.InvalidArgumentError, match=r"messages\[1\]\.role"):
            p.chat([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
        with pytest.raises(lyra.InvalidArgumentError, match="ends with the assistant"):
            p.chat([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
        with pytest.raises(lyra.InvalidArgumentError, match=r"messages\[0\]\.role"):
            p.chat([{"role": "robot", "content": "a"}])
        with pytest.raises(TypeError):
            p.chat([{"role": "user"}])
        with pytest.raises(TypeError):
            p.generate(None)
        with pytest.raises(lyra.InvalidArgumentError, match="context"):
            p.generate("the big dog ran. " * 40)
        with pytest.raises(lyra.InvalidArgumentError, match="context"):
            p.chat([{"role": "user", "content": "the big dog ran. " * 40}])
        assert p.generate("Once").completion_tokens == 4


def test_closed(model):
    p = lyra.safe_load_pipeline(model)
    p.close()
    p.close()
    assert p.closed
    with pytest.raises(ValueError, match="closed"):
        p("Once")
    with pytest.raises(ValueError, match="closed"):
        p.device_map
