"""engine: concurrent generation on one model (lyra.h's lyra_engine, API
version 8; docs/api.md), what `lyra serve` runs on. An Engine opens on a
Pipeline's model with n_slots sequences; each submitted request (chat
messages, a plain prompt or tokens) joins the running batch at the next
step, so several requests generate at once in one forward pass per step. A
request's tokens do not depend on what else runs.

    with lyra.safe_load_pipeline("stories260K.gguf") as pipe, lyra.Engine(pipe, n_slots=4) as eng:
        a = eng.submit(prompt="Once upon a time", max_new_tokens=32, seed=1)
        b = eng.submit(messages=[{"role": "user", "content": "Hi"}])
        for piece in a.stream():
            print(piece, end="")
        print(b.result().text)

Sessions: submit(..., keep_session=True) keeps the slot's state when the
request ends (Request.session_bytes()); a later submit(..., session=data)
restores it into a free slot when it helps (its tokens share a longer prefix
with the prompt than the slot's cache), so a conversation evicted from the
slots comes back without evaluating its history again.

Text is pulled from the library (lyra_engine_req_wait / _text, which release
the GIL while they wait): no callback runs on the engine's thread."""
import codecs
import ctypes
from ctypes import POINTER, Structure, byref, c_char_p, c_double, c_float, c_int, c_int32, c_int64, c_size_t
from ctypes import c_uint64, c_void_p
from typing import Any, Dict, Iterator, List, Optional, Sequence

from . import _lib
from .errors import LyraError, check

_FINISH = {
    _lib.STOP_EOG: "stop",
    _lib.STOP_STRING: "stop_sequence",
    _lib.STOP_LENGTH: "length",
    _lib.STOP_CONTEXT: "context_full",
    _lib.STOP_CANCELLED: "cancelled",
}


class _SamplerParams(Structure):
    _fields_ = [("temperature", c_float), ("top_k", c_int32), ("top_p", c_float), ("min_p", c_float),
                ("repeat_penalty", c_float), ("repeat_last_n", c_int32), ("seed", c_uint64)]


class _Params(Structure):
    _fields_ = [("n_slots", c_int32), ("queue", c_int32)]


class _Request(Structure):
    _fields_ = [("messages", POINTER(_lib.ChatMessage)), ("n_messages", c_int32), ("prompt", c_char_p),
                ("tokens", POINTER(c_int32)), ("n_tokens", c_int32), ("sampler", _SamplerParams),
                ("max_tokens", c_int64), ("stops", POINTER(c_char_p)), ("n_stops", c_int32),
                ("cb", _lib.TOKEN_CB), ("user", c_void_p), ("session", c_void_p), ("session_len", c_size_t),
                ("keep_session", c_int)]


class _Result(Structure):
    _fields_ = [("n_prompt", c_int32), ("n_cached", c_int32), ("n_gen", c_int64), ("n_evaluated", c_int64),
                ("stop", c_int), ("restored", c_int), ("slot", c_int32)]


class _Stats(Structure):
    _fields_ = [("requests", c_uint64), ("failed", c_uint64), ("cancelled", c_uint64), ("rejected", c_uint64),
                ("prompt_tokens", c_uint64), ("cached_tokens", c_uint64), ("gen_tokens", c_uint64),
                ("steps", c_uint64), ("fallback_steps", c_uint64), ("busy_seconds", c_double),
                ("tokens_per_second", c_double), ("queue_depth", c_int), ("slots_busy", c_int), ("slots", c_int),
                ("evaluated", c_uint64), ("batched_steps", c_uint64), ("restored", c_uint64), ("max_batch", c_int)]


_P = c_void_p
_E = POINTER(_lib.Error)
_DECLS = {
    "lyra_engine_open": (c_int, [_P, POINTER(_Params), POINTER(_P), _E]),
    "lyra_engine_free": (None, [_P]),
    "lyra_engine_n_ctx": (c_int32, [_P]),
    "lyra_engine_default_request": (_Request, [_P]),
    "lyra_engine_submit": (c_int, [_P, POINTER(_Request), POINTER(_P), _E]),
    "lyra_engine_req_wait": (c_int, [_P, c_size_t, c_double]),
    "lyra_engine_req_text": (c_size_t, [_P, c_size_t, c_void_p, c_size_t]),
    "lyra_engine_req_cancel": (None, [_P]),
    "lyra_engine_req_result": (c_int, [_P, POINTER(_Result), _E]),
    "lyra_engine_req_session": (c_int, [_P, POINTER(c_void_p), POINTER(c_size_t), _E]),
    "lyra_engine_req_free": (None, [_P]),
    "lyra_engine_get_stats": (None, [_P, POINTER(_Stats)]),
}
AVAILABLE = all(_lib.has(n) for n in _DECLS)
if AVAILABLE:
    for _name, (_res, _args) in _DECLS.items():
        _f = getattr(_lib.lib, _name)
        _f.restype = _res
        _f.argtypes = _args
_lib_ = _lib.lib


class Result:
    """A finished request: its text, token counts, why it ended, whether its
    session was restored and the slot it ran in."""

    __slots__ = ("text", "prompt_tokens", "cached_tokens", "completion_tokens", "evaluated_tokens",
                 "finish_reason", "restored", "slot")

    def __init__(self, text: str, r: _Result) -> None:
        self.text = text
        self.prompt_tokens = int(r.n_prompt)
        self.cached_tokens = int(r.n_cached)
        self.completion_tokens = int(r.n_gen)
        self.evaluated_tokens = int(r.n_evaluated)
        self.finish_reason = _FINISH.get(r.stop, "stop")
        self.restored = bool(r.restored)
        self.slot = int(r.slot)

    # the names of lyra.Generation, so code can take either
    @property
    def reused_tokens(self) -> int:
        return self.cached_tokens

    @property
    def usage(self) -> Dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens, "cached_tokens": self.cached_tokens}

    def __repr__(self) -> str:
        return f"Result(text={self.text!r}, finish_reason={self.finish_reason!r}, usage={self.usage!r})"


class Request:
    """One submitted request. stream() yields its text as it is decided;
    result() waits for the end. Thread-safe; free()d when collected."""

    def __init__(self, handle: int, engine: "Engine") -> None:
        self._h: Optional[int] = handle
        self._engine = engine  # keeps the engine open while the request lives
        self._raw = b""
        self._dec = codecs.getincrementaldecoder("utf-8")("replace")
        self._done = False

    def _pull(self, timeout: float) -> str:
        """Wait at most timeout s for more text; the new text."""
        if self._h is None:
            raise LyraError("lyra: the request was freed")
        have = len(self._raw)
        done = bool(_lib_.lyra_engine_req_wait(self._h, have, timeout))
        n = _lib_.lyra_engine_req_text(self._h, have, None, 0)
        new = b""
        if n > have:
            buf = ctypes.create_string_buffer(n - have)
            _lib_.lyra_engine_req_text(self._h, have, buf, n - have)
            new = buf.raw
            self._raw += new
        if done and not self._done:
            self._done = True
            return self._dec.decode(new, final=True)
        return self._dec.decode(new)

    def stream(self, poll: float = 0.25) -> Iterator[str]:
        """The text piece by piece until the request ends (then result())."""
        while not self._done:
            piece = self._pull(poll)
            if piece:
                yield piece

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until it ends (at most timeout s); whether it has."""
        while not self._done:
            self._pull(-1.0 if timeout is None else timeout)
            if timeout is not None:
                break
        return self._done

    @property
    def done(self) -> bool:
        if not self._done and self._h is not None:
            self._pull(0.0)
        return self._done

    @property
    def text(self) -> str:
        """The text so far."""
        return self._raw.decode("utf-8", "replace")

    def result(self) -> Result:
        """Wait for the end; its Result. Raises LyraError when it failed."""
        self.wait()
        r = _Result()
        err = _lib.Error()
        check(_lib_.lyra_engine_req_result(self._h, byref(r), byref(err)), err)
        return Result(self.text, r)

    def cancel(self) -> None:
        if self._h is not None:
            _lib_.lyra_engine_req_cancel(self._h)

    def session_bytes(self) -> bytes:
        """The slot's state at the end (submitted with keep_session): a
        session (lyra_session_save's format) to pass as submit(session=)."""
        self.wait()
        buf = c_void_p()
        n = c_size_t()
        err = _lib.Error()
        check(_lib_.lyra_engine_req_session(self._h, byref(buf), byref(n), byref(err)), err)
        try:
            return ctypes.string_at(buf.value, n.value) if buf.value else b""
        finally:
            if buf.value:
                _lib_.lyra_free(buf)

    def free(self) -> None:
        if self._h is not None:
            _lib_.lyra_engine_req_free(self._h)
            self._h = None

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class Engine:
    """n_slots requests at once on a pipeline's model (the pipeline must
    stay open, and must not generate itself, while the engine is open)."""

    def __init__(self, pipeline: Any, n_slots: int = 4, queue: int = 1024) -> None:
        if not AVAILABLE:
            raise LyraError(f"lyra: {_lib.path} has no lyra_engine (API version 8)")
        self.pipeline = pipeline
        h = c_void_p()
        err = _lib.Error()
        p = _Params(int(n_slots), int(queue))
        check(_lib_.lyra_engine_open(pipeline._handle(), byref(p), byref(h), byref(err)), err)
        self._h: Optional[int] = h.value
        self.n_slots = int(n_slots)
        self.n_ctx = int(_lib_.lyra_engine_n_ctx(self._h))

    def _handle(self) -> int:
        if self._h is None:
            raise LyraError("lyra: the engine is closed")
        return self._h

    def submit(self, messages: Optional[Sequence[Dict[str, str]]] = None, prompt: Optional[str] = None,
               tokens: Optional[Sequence[int]] = None, *, max_new_tokens: Optional[int] = None,
               temperature: Optional[float] = None, top_k: Optional[int] = None, top_p: Optional[float] = None,
               min_p: Optional[float] = None, repetition_penalty: Optional[float] = None,
               seed: Optional[int] = None, stop: Optional[Sequence[str]] = None,
               session: Optional[bytes] = None, keep_session: bool = False) -> Request:
        """Queue a request: exactly one of messages ([{"role", "content"}],
        rendered with the chat template), prompt (plain text) or tokens.
        Settings left None are the pipeline's (its seed included)."""
        h = self._handle()
        if sum(x is not None for x in (messages, prompt, tokens)) != 1:
            raise LyraError("lyra: give exactly one of messages, prompt and tokens", _lib.ERR_INPUT, "argument")
        rq = _lib_.lyra_engine_default_request(h)
        keep: List[Any] = []  # what rq points into, alive until submitted
        if messages is not None:
            arr = (_lib.ChatMessage * len(messages))()
            for i, m in enumerate(messages):
                role, content = m["role"].encode(), m["content"].encode()
                keep += [role, content]
                arr[i].role, arr[i].content = role, content
            keep.append(arr)
            rq.messages = ctypes.cast(arr, POINTER(_lib.ChatMessage))
            rq.n_messages = len(messages)
        elif prompt is not None:
            rq.prompt = prompt.encode()
            keep.append(rq.prompt)
        else:
            arr_t = (c_int32 * len(tokens))(*tokens)
            keep.append(arr_t)
            rq.tokens = ctypes.cast(arr_t, POINTER(c_int32))
            rq.n_tokens = len(tokens)
        if max_new_tokens is not None:
            rq.max_tokens = int(max_new_tokens)
        for name, v in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p), ("min_p", min_p),
                        ("repeat_penalty", repetition_penalty), ("seed", seed)):
            if v is not None:
                setattr(rq.sampler, name, v)
        if stop:
            st = (c_char_p * len(stop))(*[s.encode() for s in stop])
            keep.append(st)
            rq.stops = ctypes.cast(st, POINTER(c_char_p))
            rq.n_stops = len(stop)
        if session:
            data = bytes(session)
            sb = ctypes.create_string_buffer(data, len(data))
            keep.append(sb)
            rq.session = ctypes.cast(sb, c_void_p)
            rq.session_len = len(data)
        rq.keep_session = 1 if keep_session else 0
        out = c_void_p()
        err = _lib.Error()
        check(_lib_.lyra_engine_submit(h, byref(rq), byref(out), byref(err)), err)
        return Request(out.value, self)

    def stats(self) -> Dict[str, Any]:
        """The engine's counters (requests, steps, batched_steps, max_batch,
        evaluated, cached_tokens, restored, ...)."""
        s = _Stats()
        _lib_.lyra_engine_get_stats(self._handle(), byref(s))
        return {name: getattr(s, name) for name, _ in _Stats._fields_}

    def close(self) -> None:
        """Stop: what still runs or waits fails ("shutting down")."""
        if self._h is not None:
            _lib_.lyra_engine_free(self._h)
            self._h = None

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
