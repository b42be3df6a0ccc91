"""Signals, threads and lifetime: Ctrl-C (a timer's KeyboardInterrupt) stops a
generation within 2 tokens, the GIL is free while the model evaluates, two
pipelines on two threads work, one pipeline is serialized between threads,
cancel() from another thread, re-entry refused, and 1,000 create/free cycles
(close() and garbage collection) leave the RSS flat."""
import gc
import os
import signal
import threading
import time

import pytest

import lyra


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def long_pipe(model):
    with lyra.safe_load_pipeline(model, context_length=512,
                                 pipeline_kwargs={"max_new_tokens": -1, "do_sample": False}) as p:
        yield p


class _Alarm:
    """SIGALRM after `after` seconds, its handler raising KeyboardInterrupt
    and noting how many pieces had arrived then."""

    def __init__(self, seen, after=0.15):
        self.seen, self.after, self.at = seen, after, None

    def _fire(self, signum, frame):
        self.at = len(self.seen)
        raise KeyboardInterrupt

    def __enter__(self):
        self.old = signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, self.after)
        return self

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.old)


def _slow(seen):
    def on_text(piece):
        seen.append(piece)
        time.sleep(0.003)
    return on_text


def test_keyboard_interrupt_generate(long_pipe):
    seen = []
    with _Alarm(seen) as alarm:
        with pytest.raises(KeyboardInterrupt):
            long_pipe.generate("Once upon a time", on_text=_slow(seen))
    g = long_pipe.last_generation
    assert alarm.at is not None and alarm.at >= 1
    assert g.finish_reason == "cancelled" and g.completion_tokens - alarm.at <= 2, (alarm.at, g)
    # the pipeline is fine afterwards
    ref = long_pipe.generate("Once upon a time", max_new_tokens=8).text
    assert g.text.startswith(ref[:len(g.text)]) or ref.startswith(g.text[:len(ref)])


def test_keyboard_interrupt_stream(long_pipe):
    seen = []
    with _Alarm(seen) as alarm:
        with pytest.raises(KeyboardInterrupt):
            with long_pipe.stream("Once upon a time") as s:
                for piece in s:
                    seen.append(piece)
                    time.sleep(0.003)
    g = long_pipe.last_generation
    assert g.finish_reason == "cancelled" and g.completion_tokens - alarm.at <= 2, (alarm.at, g)


def test_keyboard_interrupt_without_callback(model):
    # no on_text: the C loop runs on its own; Ctrl-C still stops it at once
    with lyra.safe_load_pipeline(model, context_length=2048,
                                 pipeline_kwargs={"max_new_tokens": -1, "do_sample": False}) as p:
        t0 = time.monotonic()
        full = p.generate("Once upon a time").completion_tokens
        t_full = time.monotonic() - t0
        t0 = time.monotonic()
        with _Alarm([], after=min(0.1, t_full / 4)):
            with pytest.raises(KeyboardInterrupt):
                p.generate("Once upon a time")
        took = time.monotonic() - t0
        g = p.last_generation  # None when the signal came before the C call began
        assert g is None or (g.finish_reason == "cancelled" and g.completion_tokens < full), g
        assert took < t_full / 2 + 0.5, (took, t_full)


def test_gil_released(long_pipe):
    done = threading.Event()
    t = threading.Thread(target=lambda: (long_pipe.generate("Once upon a time"), done.set()))
    t.start()
    n = 0
    while not done.is_set() and t.is_alive():
        n += 1  # Python runs here while the other thread's C call evaluates
    t.join()
    assert done.is_set() and n > 1000, n


def test_two_pipelines_two_threads(model):
    prompts = ["Once upon a time", "One day"]
    with lyra.safe_load_pipeline(model, pipeline_kwargs={"max_new_tokens": 48, "do_sample": False}) as a, \
            lyra.safe_load_pipeline(model, pipeline_kwargs={"max_new_tokens": 48, "do_sample": False}) as b:
        refs = [a.generate(p).text for p in prompts]
        out = {}

        def work(pipe, i):
            out[i] = [pipe.generate(prompts[i]).text for _ in range(4)]
        ts = [threading.Thread(target=work, args=(x, i)) for i, x in enumerate((a, b))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert out[0] == [refs[0]] * 4 and out[1] == [refs[1]] * 4


def test_one_pipeline_serialized(model):
    prompts = ["Once upon a time", "One day", "The cat", "Lily and Tom"]
    with lyra.safe_load_pipeline(model, pipeline_kwargs={"max_new_tokens": 32, "do_sample": False}) as p:
        refs = [p.generate(x).text for x in prompts]
        out = [None] * 8
        errs = []

        def work(i):
            try:
                if i % 2:
                    out[i] = "".join(p.stream(prompts[i % 4]))
                else:
                    out[i] = p.generate(prompts[i % 4]).text
            except Exception as e:  # noqa: BLE001
                errs.append(e)
        ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errs and out == [refs[i % 4] for i in range(8)]


def test_cancel_from_another_thread(long_pipe):
    first = threading.Event()
    res = {}

    def work():
        try:
            long_pipe.generate("Once upon a time", on_text=lambda s: (first.set(), time.sleep(0.002)))
        except lyra.GenerationCancelled as e:
            res["e"] = e
    t = threading.Thread(target=work)
    t.start()
    assert first.wait(30)
    long_pipe.cancel()
    t.join(30)
    e = res.get("e")
    assert e is not None and isinstance(e, InterruptedError) and e.code == 130
    assert e.generation.finish_reason == "cancelled" and 1 <= e.generation.completion_tokens < 100
    long_pipe.cancel()  # nothing runs: no effect on the next call
    assert long_pipe.generate("Once", max_new_tokens=3).completion_tokens == 3


def test_reentry_refused(model):
    with lyra.safe_load_pipeline(model, pipeline_kwargs={"max_new_tokens": 8}) as p:
        with pytest.raises(RuntimeError, match="on_text"):
            p.generate("Once", on_text=lambda s: p.generate("x"))
        assert p.generate("Once").completion_tokens == 8


def test_close_while_streaming(model):
    p = lyra.safe_load_pipeline(model, pipeline_kwargs={"max_new_tokens": -1})
    s = p.stream("Once upon a time")
    next(s)
    p.close()   # the stream holds it: freed when the stream ends
    with pytest.raises(StopIteration):
        for _ in range(10000):
            next(s)
    assert p.closed


def test_create_free_cycles_rss_flat(model):
    def cycle(i):
        p = lyra.safe_load_pipeline(model, context_length=64, pipeline_kwargs={"max_new_tokens": 2})
        if i % 10 == 0:
            p.generate("Once")
        if i % 2:
            p.close()
        else:
            del p  # freed by garbage collection (reference counting)
    for i in range(100):
        cycle(i)
    gc.collect()
    before = _rss()
    for i in range(1000):
        cycle(i)
    gc.collect()
    grown = _rss() - before
    assert grown < 4 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 1,000 cycles"
