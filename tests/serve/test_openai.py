"""test_openai.py: the real `openai` client against `lyra serve`: sync,
async, streaming (chat and completions, usage, logprobs), errors raised as
the client's exception classes, determinism with a seed, prefix reuse."""
import asyncio

import openai
import pytest

MODEL = "stories260K"


def client(server, **kw):
    kw.setdefault("api_key", "none")
    return openai.OpenAI(base_url=server.v1, max_retries=0, timeout=60, **kw)


def test_models(server):
    ids = [m.id for m in client(server).models.list()]
    assert ids == [MODEL]


def test_chat(server):
    r = client(server).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Tell me a story"}], max_tokens=16, seed=3)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.model == MODEL and r.system_fingerprint
    c = r.choices[0]
    assert c.message.role == "assistant" and c.message.content
    assert c.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 16
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_completion_length(server):
    r = client(server).completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8, seed=1,
                                           temperature=0)
    assert r.object == "text_completion"
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 8
    assert r.choices[0].text


def test_seed_determinism(server):
    c = client(server)
    args = dict(model=MODEL, prompt="The little dog", max_tokens=24, seed=42, temperature=1.0)
    a = c.completions.create(**args).choices[0].text
    b = c.completions.create(**args).choices[0].text
    assert a == b
    d = c.completions.create(**dict(args, seed=43)).choices[0].text
    assert isinstance(d, str)


def test_stop(server):
    c = client(server)
    full = c.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=40, temperature=0).choices[0].text
    word = full.split()[3]
    r = c.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=40, temperature=0, stop=[word])
    assert r.choices[0].finish_reason == "stop"
    assert word not in r.choices[0].text and full.startswith(r.choices[0].text)


def test_chat_stream_usage(server):
    c = client(server)
    args = dict(model=MODEL, messages=[{"role": "user", "content": "Hello"}], max_tokens=20, seed=5)
    whole = c.chat.completions.create(**args)
    chunks = list(c.chat.completions.create(stream=True, stream_options={"include_usage": True}, **args))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == whole.choices[0].message.content
    finals = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(ch.object == "chat.completion.chunk" and ch.id == chunks[0].id for ch in chunks)


def test_completion_stream(server):
    c = client(server)
    args = dict(model=MODEL, prompt="Lily went to", max_tokens=20, seed=9)
    whole = c.completions.create(**args).choices[0].text
    text = "".join(ch.choices[0].text for ch in c.completions.create(stream=True, **args) if ch.choices)
    assert text == whole


def test_logprobs(server):
    r = client(server).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=6, seed=1, logprobs=True,
        top_logprobs=3, temperature=0)
    items = r.choices[0].logprobs.content
    assert len(items) >= r.usage.completion_tokens
    for it in items:
        assert it.logprob <= 0 and len(it.top_logprobs) == 3
        assert it.top_logprobs[0].logprob >= it.top_logprobs[1].logprob >= it.top_logprobs[2].logprob
        assert it.token == it.top_logprobs[0].token  # greedy: the best one
        assert bytes(it.bytes).decode("utf-8", "replace") == it.token
    r = client(server).completions.create(model=MODEL, prompt="Once", max_tokens=4, logprobs=2, temperature=0)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 4
    assert "".join(lp.tokens) == r.choices[0].text


def test_prefix_reuse(make_server):
    s = make_server("--parallel", "1")
    c = client(s)
    msgs = [{"role": "system", "content": "You tell short stories about animals."},
            {"role": "user", "content": "Tell me about a cat."}]
    r1 = c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=12, seed=1)
    assert r1.usage.prompt_tokens_details.cached_tokens == 0
    msgs += [{"role": "assistant", "content": r1.choices[0].message.content},
             {"role": "user", "content": "And a dog?"}]
    r2 = c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=12, seed=1)
    assert r2.usage.prompt_tokens_details.cached_tokens >= r1.usage.prompt_tokens - 1
    assert s.metrics()["lyra_prompt_tokens_cached_total"] >= r2.usage.prompt_tokens_details.cached_tokens


def test_async(server):
    async def run():
        c = openai.AsyncOpenAI(base_url=server.v1, api_key="none", max_retries=0, timeout=60)
        prompts = [f"Story number {i}:" for i in range(8)]
        res = await asyncio.gather(*[c.completions.create(model=MODEL, prompt=p, max_tokens=10, seed=i)
                                     for i, p in enumerate(prompts)])
        stream = await c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                                 max_tokens=8, seed=1, stream=True)
        text = ""
        async for ch in stream:
            if ch.choices:
                text += ch.choices[0].delta.content or ""
        await c.close()
        return res, text

    res, text = asyncio.run(run())
    assert all(r.choices[0].text for r in res)
    alone = client(server).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                                   max_tokens=8, seed=1)
    assert text == alone.choices[0].message.content


def test_errors(server):
    c = client(server)
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], temperature=5)
    assert e.value.status_code == 400 and "temperature" in str(e.value)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model=MODEL, messages=[])
    assert "messages" in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model=MODEL, prompt="x " * 5000, max_tokens=1)
    assert e.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], n=2)


def test_api_key(make_server):
    s = make_server("--api-key", "s3cret")
    with pytest.raises(openai.AuthenticationError):
        client(s, api_key="wrong").models.list()
    with pytest.raises(openai.AuthenticationError):
        client(s, api_key="s3cre").chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert [m.id for m in client(s, api_key="s3cret").models.list()] == [MODEL]
    # the environment variable too
    s2 = make_server(env={"LYRA_API_KEY": "k2"})
    with pytest.raises(openai.AuthenticationError):
        client(s2).models.list()
    assert client(s2, api_key="k2").models.list()


def test_queue_full(make_server):
    s = make_server("--parallel", "1", "--queue", "1")
    c = openai.AsyncOpenAI(base_url=s.v1, api_key="none", max_retries=0, timeout=60)

    async def run():
        tasks = [c.completions.create(model=MODEL, prompt="Once", max_tokens=400, seed=i, temperature=1,
                                      extra_body={"ignore_eos": True}) for i in range(6)]
        return await asyncio.gather(*tasks, return_exceptions=True)

    res = asyncio.run(run())
    limited = [r for r in res if isinstance(r, openai.RateLimitError)]
    assert limited, res
    assert limited[0].response.headers.get("retry-after") == "1"
    assert all(isinstance(r, openai.RateLimitError) or r.choices for r in res)
    assert s.metrics()["lyra_requests_rejected_total"] == len(limited)
