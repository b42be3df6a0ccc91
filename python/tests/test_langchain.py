"""lyra.langchain with the real langchain-core: LyraLLM and ChatLyra in an
LCEL chain, streaming into a callback handler, batch of 4, ainvoke /
astream, stop, model_kwargs, usage metadata, RunnableWithMessageHistory over
three turns, construction from a config file."""
import asyncio
import json

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.chat_history import InMemoryChatMessageHistory  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder, PromptTemplate  # noqa: E402
from langchain_core.runnables.history import RunnableWithMessageHistory  # noqa: E402

import lyra  # noqa: E402
from lyra.langchain import ChatLyra, LyraLLM  # noqa: E402


class Tokens(BaseCallbackHandler):
    def __init__(self):
        self.tokens = []
        self.ends = 0

    def on_llm_new_token(self, token, **kwargs):
        self.tokens.append(token)

    def on_llm_end(self, response, **kwargs):
        self.ends += 1


@pytest.fixture
def pipe(model):
    with lyra.safe_load_pipeline(model, pipeline_kwargs={"max_new_tokens": 16, "do_sample": False}) as p:
        yield p


def test_llm_invoke_chain(pipe, cli):
    llm = LyraLLM(pipeline=pipe)
    ref = cli("Once upon a time, a cat", "-n", 16, "--temp", 0)
    assert llm.invoke("Once upon a time, a cat") == ref
    chain = PromptTemplate.from_template("Once upon a time, a {animal}") | llm | StrOutputParser()
    assert chain.invoke({"animal": "cat"}) == ref
    r = llm.generate(["Once upon a time, a cat"])
    assert r.generations[0][0].text == ref
    assert r.llm_output["token_usage"]["completion_tokens"] == 16
    assert r.generations[0][0].generation_info["finish_reason"] == "length"


def test_llm_stream_callbacks(pipe):
    llm = LyraLLM(pipeline=pipe)
    full = llm.invoke("Once upon a time")
    h = Tokens()
    chunks = list(llm.stream("Once upon a time", config={"callbacks": [h]}))
    assert "".join(chunks) == full and "".join(h.tokens) == full and len(h.tokens) > 5 and h.ends == 1
    # invoke with a handler: the pieces reach on_llm_new_token too
    h2 = Tokens()
    assert llm.invoke("Once upon a time", config={"callbacks": [h2]}) == full
    assert "".join(h2.tokens) == full


def test_llm_batch_async_stop_kwargs(pipe):
    llm = LyraLLM(pipeline=pipe)
    prompts = ["Once upon a time", "One day", "Lily and Tom", "The cat"]
    refs = [llm.invoke(p) for p in prompts]
    assert llm.batch(prompts) == refs
    assert asyncio.run(llm.ainvoke(prompts[0])) == refs[0]

    async def astream():
        return [c async for c in llm.astream(prompts[1])]
    assert "".join(asyncio.run(astream())) == refs[1]
    # stop: the text ends before it
    word = refs[0].split()[3]
    assert llm.invoke(prompts[0], stop=[word]) == refs[0][:refs[0].index(word)]
    # model_kwargs go to every call; a call's kwargs win
    short = LyraLLM(pipeline=pipe, model_kwargs={"max_new_tokens": 3})
    r = short.generate([prompts[0]])
    assert r.llm_output["token_usage"]["completion_tokens"] == 3 and refs[0].startswith(r.generations[0][0].text)
    assert len(short.invoke(prompts[0], max_new_tokens=30)) > len(refs[0])
    with pytest.raises(TypeError):
        LyraLLM(pipeline=pipe, model_kwargs={"max_new_tokenz": 3}).invoke("x")
    assert llm.get_num_tokens("Once upon a time") >= 4


def test_chat_model(pipe):
    chat = ChatLyra(pipeline=pipe)
    msgs = [SystemMessage("You tell stories."), HumanMessage("Tell me a story.")]
    r = chat.invoke(msgs)
    ref = pipe.chat([{"role": "system", "content": "You tell stories."},
                     {"role": "user", "content": "Tell me a story."}]).text
    assert isinstance(r, AIMessage) and r.content == ref
    assert r.usage_metadata["output_tokens"] == 16 and r.usage_metadata["input_tokens"] > 5
    assert r.response_metadata["finish_reason"] == "length"
    h = Tokens()
    chunks = list(chat.stream(msgs, config={"callbacks": [h]}))
    assert "".join(c.content for c in chunks) == ref == "".join(h.tokens)
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.usage_metadata["output_tokens"] == 16
    assert [x.content for x in chat.batch([msgs] * 4)] == [ref] * 4
    assert asyncio.run(chat.ainvoke(msgs)).content == ref

    async def astream():
        return [c.content async for c in chat.astream(msgs)]
    assert "".join(asyncio.run(astream())) == ref
    chain = ChatPromptTemplate.from_messages([("system", "You tell stories."), ("human", "{q}")]) | chat | \
        StrOutputParser()
    assert chain.invoke({"q": "Tell me a story."}) == ref


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_message_history_three_turns(pipe):
    chat = ChatLyra(pipeline=pipe, model_kwargs={"max_new_tokens": 10})
    prompt = ChatPromptTemplate.from_messages([
        ("system", "You tell stories."), MessagesPlaceholder("history"), ("human", "{input}")])
    store = {}

    def history(session_id):
        return store.setdefault(session_id, InMemoryChatMessageHistory())
    conv = RunnableWithMessageHistory(prompt | chat, history, input_messages_key="input",
                                      history_messages_key="history")
    cfg = {"configurable": {"session_id": "s1"}}
    questions = ["Tell me a story.", "What happened next?", "And then?"]
    replies = [conv.invoke({"input": q}, config=cfg) for q in questions]
    msgs = store["s1"].messages
    assert len(msgs) == 6 and [m.type for m in msgs] == ["human", "ai"] * 3
    assert [m.content for m in msgs[1::2]] == [r.content for r in replies]
    # each turn sees the whole conversation, and reuses the KV cache of the last one
    assert replies[2].usage_metadata["input_tokens"] > replies[1].usage_metadata["input_tokens"] > \
        replies[0].usage_metadata["input_tokens"]
    assert replies[2].usage_metadata["input_token_details"]["cache_read"] > 10
    # the third reply equals the pipeline's answer to the same conversation
    conv3 = [{"role": "system", "content": "You tell stories."}]
    for q, r in zip(questions, replies):
        conv3 += [{"role": "user", "content": q}, {"role": "assistant", "content": r.content}]
    assert pipe.chat(conv3[:-1], max_new_tokens=10).text == replies[2].content
    # a second session is independent
    other = conv.invoke({"input": "Tell me a story."}, config={"configurable": {"session_id": "s2"}})
    assert other.content == replies[0].content


def test_from_config(model, clean_env):
    cfg = clean_env / "m.json"
    cfg.write_text(json.dumps({"model_id": model, "pipeline_kwargs": {"max_new_tokens": 5, "do_sample": False}}))
    llm = LyraLLM(config_path=str(cfg))
    out = llm.invoke("Once upon a time")
    assert llm.pipeline.last_generation.completion_tokens == 5
    llm2 = LyraLLM.from_model_id(model, pipeline_kwargs={"max_new_tokens": 5, "do_sample": False})
    assert llm2.invoke("Once upon a time") == out
    chat = ChatLyra(model_id=model, config_path=str(cfg))
    assert chat.invoke("Hi").content == chat.pipeline.chat([{"role": "user", "content": "Hi"}]).text
    with pytest.raises(ValueError):
        LyraLLM()
    with pytest.raises(lyra.ModelNotFoundError):
        LyraLLM(model_id="/nonexistent.gguf")
