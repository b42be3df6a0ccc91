"""lyra.Engine (liblyra's lyra_engine, API version 8): concurrent requests
give the same text as each alone (greedy and sampled, prompts and chat), in
batched steps; a request's session restored into another slot continues as
if never evicted, without evaluating its history again; cancel; errors."""
import pytest

import lyra
from lyra.engine import AVAILABLE, Engine

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="a liblyra without the engine API")

PROMPTS = ["Once upon a time", "The little cat", "A big red ball"]


@pytest.fixture(scope="module")
def pipe(model):
    p = lyra.safe_load_pipeline(model, pipeline_kwargs={"max_new_tokens": 60, "temperature": 0.0}, seed=5)
    yield p
    p.close()


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_concurrent_same_as_alone(pipe, temperature):
    with Engine(pipe, n_slots=3) as eng:
        alone = [eng.submit(prompt=p, temperature=temperature, seed=100 + i, max_new_tokens=120).result().text
                 for i, p in enumerate(PROMPTS)]
        chat_alone = eng.submit(messages=[{"role": "user", "content": "Tell me about a dog."}],
                                temperature=temperature, seed=9).result().text
        before = eng.stats()
        reqs = [eng.submit(prompt=p, temperature=temperature, seed=100 + i, max_new_tokens=120)
                for i, p in enumerate(PROMPTS)]
        chat = eng.submit(messages=[{"role": "user", "content": "Tell me about a dog."}],
                          temperature=temperature, seed=9)
        streamed = "".join(reqs[0].stream())
        together = [r.result() for r in reqs]
        assert [r.text for r in together] == alone
        assert streamed == alone[0]
        assert chat.result().text == chat_alone
        st = eng.stats()
        assert st["max_batch"] >= 2 and st["batched_steps"] > before["batched_steps"], st
        assert all(r.completion_tokens > 0 and r.prompt_tokens > 0 for r in together)


def test_session_restored_into_a_free_slot(pipe):
    msgs = [{"role": "user", "content": "Tell me about a cat."}]
    with Engine(pipe, n_slots=1) as eng:  # one slot: any other request evicts the conversation
        r1 = eng.submit(messages=msgs, keep_session=True)
        first = r1.result()
        sess = r1.session_bytes()
        with pytest.raises(lyra.LyraError, match="already taken"):
            r1.session_bytes()
        assert eng.submit(prompt="Something else entirely", max_new_tokens=30).result().completion_tokens > 0
        msgs2 = msgs + [{"role": "assistant", "content": first.text}, {"role": "user", "content": "And then?"}]
        ev0 = eng.stats()["evaluated"]
        r2 = eng.submit(messages=msgs2, session=sess)
        second = r2.result()
        assert second.restored and second.cached_tokens > 0.6 * second.prompt_tokens, second
        # nothing but the new tokens evaluated: the history came from the session
        assert second.evaluated_tokens <= second.prompt_tokens - second.cached_tokens + second.completion_tokens
        assert eng.stats()["evaluated"] - ev0 == second.evaluated_tokens
        assert eng.stats()["restored"] == 1
    with Engine(pipe, n_slots=1) as eng:  # the same turn evaluated from scratch: the same reply
        fresh = eng.submit(messages=msgs2).result()
        assert not fresh.restored and fresh.cached_tokens == 0
        assert fresh.text == second.text


def test_session_kept_in_the_slot_is_not_restored(pipe):
    msgs = [{"role": "user", "content": "Hello."}]
    with Engine(pipe, n_slots=2) as eng:
        r1 = eng.submit(messages=msgs, keep_session=True)
        first = r1.result()
        msgs2 = msgs + [{"role": "assistant", "content": first.text}, {"role": "user", "content": "More."}]
        second = eng.submit(messages=msgs2, session=r1.session_bytes()).result()
        assert not second.restored and second.slot == first.slot  # prefix reuse picked its slot
        assert second.cached_tokens > 0.6 * second.prompt_tokens


def test_cancel_and_errors(pipe):
    with Engine(pipe, n_slots=2) as eng:
        r = eng.submit(prompt="Once upon a time", max_new_tokens=1000)
        r.cancel()
        assert r.result().finish_reason == "cancelled"
        with pytest.raises(lyra.LyraError, match="messages"):
            eng.submit(messages=[{"role": "assistant", "content": "hi"}])
        with pytest.raises(lyra.LyraError, match="exactly one"):
            eng.submit(prompt="a", tokens=[1, 2])
        with pytest.raises(lyra.LyraError, match="vocabulary"):
            eng.submit(tokens=[1, 10 ** 6])
        with pytest.raises(lyra.LyraError, match="keep_session"):
            eng.submit(prompt="a", max_new_tokens=2).session_bytes()
        r = eng.submit(prompt="The end", max_new_tokens=3)
        assert r.result().finish_reason in ("length", "stop") and r.result().completion_tokens <= 3
    with pytest.raises(lyra.LyraError, match="closed"):
        eng.submit(prompt="a")


def test_sessions_restored_while_others_generate(pipe):
    """Sessions move between engines of one geometry, and restoring one
    while other requests generate changes none of their tokens."""
    convs = [[{"role": "user", "content": f"Tell me about {w}."}] for w in ("a cat", "a dog")]
    with Engine(pipe, n_slots=2) as eng:
        reqs = [eng.submit(messages=m, keep_session=True) for m in convs]
        firsts = [r.result().text for r in reqs]
        sessions = [r.session_bytes() for r in reqs]
    nexts = [m + [{"role": "assistant", "content": t}, {"role": "user", "content": "And then?"}]
             for m, t in zip(convs, firsts)]
    with Engine(pipe, n_slots=3) as eng:
        long_alone = eng.submit(prompt="Once upon a time", max_new_tokens=400).result().text
        alone = [eng.submit(messages=m).result().text for m in nexts]
    with Engine(pipe, n_slots=3) as eng:
        long = eng.submit(prompt="Once upon a time", max_new_tokens=400)
        assert not long.wait(timeout=0.0) or True
        while not long.text and not long.done:  # it generates
            long.wait(timeout=0.05)
        got = [eng.submit(messages=m, session=s) for m, s in zip(nexts, sessions)]
        res = [r.result() for r in got]
        assert all(r.restored for r in res), res
        assert [r.text for r in res] == alone
        assert long.result().text == long_alone
