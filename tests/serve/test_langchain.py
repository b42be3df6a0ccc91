"""test_langchain.py: langchain-openai's ChatOpenAI(base_url=...) against
`lyra serve`: invoke, stream, batch."""
import pytest

langchain_openai = pytest.importorskip("langchain_openai")


def chat(server, **kw):
    return langchain_openai.ChatOpenAI(base_url=server.v1, api_key="none", model="stories260K", max_retries=0,
                                       timeout=60, **kw)


def test_invoke(server):
    m = chat(server, max_tokens=16, seed=7, temperature=0.5)
    r = m.invoke("Tell me a story about a frog.")
    assert isinstance(r.content, str) and r.content
    assert r.response_metadata["finish_reason"] in ("stop", "length")
    assert r.usage_metadata["output_tokens"] <= 16


def test_system_and_history(server):
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    m = chat(server, max_tokens=8, seed=1)
    r = m.invoke([SystemMessage("You are kind."), HumanMessage("Hi"), AIMessage("Hello!"),
                  HumanMessage("What is your name?")])
    assert isinstance(r.content, str)


def test_stream(server):
    m = chat(server, max_tokens=20, seed=11)
    whole = m.invoke("Once upon a time").content
    parts = [c.content for c in m.stream("Once upon a time")]
    assert len(parts) > 1 and "".join(parts) == whole


def test_batch(server):
    m = chat(server, max_tokens=12, seed=5)
    prompts = ["A cat", "A dog", "A bird", "A fish"]
    out = m.batch(prompts)
    assert len(out) == 4 and all(isinstance(o.content, str) for o in out)
    assert [o.content for o in out] == [m.invoke(p).content for p in prompts]
