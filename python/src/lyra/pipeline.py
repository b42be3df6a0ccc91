"""pipeline: safe_load_pipeline() and the Pipeline it returns, over
liblyra's pipeline API (lyra_pipeline_open, lyra_pipeline_generate_ex,
lyra_pipeline_chat_messages; docs/api.md). Config discovery, validation,
sampling, chat templates and stop strings are the library's; this module
turns Python values into the library's keyword arguments, runs generations
and shapes results the way transformers' text-generation pipeline does.

Threads: a generation runs the C call on a worker thread (ctypes releases
the GIL for it) while the calling thread waits for its pieces; so Ctrl-C
(KeyboardInterrupt) and exceptions raised by callbacks surface in the
calling thread at once, and stop the C loop before its next token through
lyra_pipeline_cancel. One pipeline runs one generation at a time: calls
from other threads wait their turn; a call from inside the pipeline's own
on_text callback raises RuntimeError (one made while iterating its own
stream would wait for that stream forever: use a second pipeline).
"""
import contextlib
import ctypes
import json
import numbers
import os
import queue
import threading
from ctypes import byref

from . import _lib
from ._lib import lib
from .errors import GenerationCancelled, LyraError, check, error_from

_FINISH = {
    _lib.STOP_EOG: "stop",              # an end-of-generation token (chat: end of turn)
    _lib.STOP_STRING: "stop_sequence",  # a stop string
    _lib.STOP_LENGTH: "length",         # max_new_tokens
    _lib.STOP_CONTEXT: "context_full",  # the context is full
    _lib.STOP_CANCELLED: "cancelled",
}
_QUEUE = 1       # pieces a generation may run ahead of a slow consumer
_POLL = 0.05     # seconds between checks while waiting
_END = object()  # the worker is done


class Generation:
    """One generation: its text (the continuation, or the chat reply), the
    token counts and why it ended (finish_reason: "stop", "stop_sequence",
    "length", "context_full" or "cancelled")."""

    __slots__ = ("text", "prompt_tokens", "reused_tokens", "completion_tokens", "finish_reason")

    def __init__(self, text, res):
        self.text = text
        self.prompt_tokens = int(res.n_prompt)
        self.reused_tokens = int(res.n_reused)
        self.completion_tokens = int(res.n_gen)
        self.finish_reason = _FINISH.get(res.stop, "stop")

    @property
    def usage(self):
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    def __repr__(self):
        return (f"Generation(text={self.text!r}, finish_reason={self.finish_reason!r}, "
                f"usage={self.usage!r})")


# ------------------------------------------------------------------ kwargs

_STOP_KEYS = ("stop", "pipeline_kwargs.stop")


def _text_value(v):
    """A Python value as the string lyra_kwargs_set takes (the flags' form)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        return repr(float(v))
    if isinstance(v, str):
        return v
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if isinstance(v, dict):
        return json.dumps({str(k): val for k, val in v.items()})
    if isinstance(v, (list, tuple)) and all(isinstance(x, numbers.Real) for x in v):
        return ",".join(_text_value(x) for x in v)  # tensor_split
    return json.dumps(v)


def _make_kwargs(items):
    """A lyra_kwargs from (key, value) pairs (None values skipped; a list of
    stop strings set one by one), or None when there are none. Validated by
    the library: a bad key or value raises at once."""
    pairs = []
    for key, value in items:
        if value is None:
            continue
        if key in _STOP_KEYS and isinstance(value, (list, tuple)):
            pairs.extend((key, v) for v in value)
        else:
            pairs.append((key, value))
    if not pairs:
        return None
    kw = lib.lyra_kwargs_new()
    if not kw:
        raise MemoryError("lyra_kwargs_new: out of memory")
    err = _lib.Error()
    try:
        for key, value in pairs:
            rc = lib.lyra_kwargs_set(kw, str(key).encode(), _text_value(value).encode(), byref(err))
            check(rc, err)
    except BaseException:
        lib.lyra_kwargs_free(kw)
        raise
    return kw


def _call_items(kwargs):
    """A call's generation kwargs; stop_sequence is transformers' name of stop."""
    items = []
    for k, v in kwargs.items():
        items.append(("stop" if k == "stop_sequence" else k, v))
    return items


# ------------------------------------------------------------------- a run

class _Run:
    """One generation: the C call on a worker thread, its pieces handed to
    the calling thread through a small queue."""

    def __init__(self, handle, what, payload, kw, want_pieces, is_stream=False):
        self.is_stream = is_stream
        self.handle = handle
        self.what = what            # "text" or "chat"
        self.payload = payload      # the prompt, or the messages
        self.kw = kw
        self.want_pieces = want_pieces
        self.q = queue.Queue(maxsize=_QUEUE)
        self.cancelled = threading.Event()
        self.by_user = False        # Pipeline.cancel() (not an exception here)
        self.done = threading.Event()  # the worker is over
        self.gate = threading.Lock()
        self.abandoned = False       # settle() ran: the C call must not start
        self.in_c = False            # the C call started
        self.rc = None
        self.exc = None
        self.out = ctypes.c_void_p()
        self.res = _lib.GenerateResult()
        self.err = _lib.Error()
        self.cb = _lib.TOKEN_CB(self._piece) if want_pieces else ctypes.cast(None, _lib.TOKEN_CB)

    def _piece(self, ptr, n, user):
        # on the worker thread (no signal handler runs here)
        if self.cancelled.is_set():
            return 1
        piece = ctypes.string_at(ptr, n)
        while True:
            try:
                self.q.put(piece, timeout=_POLL)
                return 0
            except queue.Full:
                if self.cancelled.is_set():
                    return 1

    def _work(self):
        try:
            with self.gate:  # not after settle() gave up on it
                if self.abandoned:
                    return
                self.in_c = True
            if self.what == "text":
                prompt = self.payload.encode()
                self.rc = lib.lyra_pipeline_generate_ex(self.handle, prompt, self.kw, self.cb, None,
                                                        byref(self.out), byref(self.res), byref(self.err))
            else:
                keep = [(m[0].encode(), m[1].encode()) for m in self.payload]
                arr = (_lib.ChatMessage * len(keep))(*[_lib.ChatMessage(r, c) for r, c in keep])
                self.rc = lib.lyra_pipeline_chat_messages(self.handle, arr, len(keep), self.kw, self.cb, None,
                                                          byref(self.out), byref(self.res), byref(self.err))
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            self.exc = e
        finally:
            self.done.set()
            while self.want_pieces and not self.cancelled.is_set():  # wake the consumer
                try:
                    self.q.put(_END, timeout=_POLL)
                    break
                except queue.Full:
                    pass

    def cancel(self, by_user=False):
        self.by_user = self.by_user or by_user
        self.cancelled.set()
        lib.lyra_pipeline_cancel(self.handle)

    def settle(self, finished=False):
        """Make sure the C call is over, or will never start: cancel it
        (again and again: a cancel just before the call began is lost) and
        wait for it. Ctrl-C meanwhile is held back and returned."""
        pending = None
        while True:
            try:
                with self.gate:
                    self.abandoned = True
                    in_c = self.in_c
                while in_c and not self.done.is_set():
                    if not finished:
                        self.cancel()
                    self.done.wait(_POLL)
                return pending
            except BaseException as e:  # noqa: BLE001 - raised once the call is over
                pending = pending or e

    def pieces(self):
        """Run it; yield its pieces (str) on the calling thread. Leaving
        early (an exception, Ctrl-C, close()) cancels the generation and
        waits for the C call to end."""
        finished = False
        try:
            threading.Thread(target=self._work, name="lyra-generate", daemon=True).start()
            while self.want_pieces:
                try:
                    piece = self.q.get(timeout=_POLL)
                except queue.Empty:
                    if self.done.is_set() and self.q.empty():
                        break
                    continue
                if piece is _END:
                    break
                yield piece.decode("utf-8", "replace")
            while not self.done.wait(_POLL):
                pass
            finished = True
        finally:
            pending = self.settle(finished)
            if pending is not None:
                raise pending

    def result(self):
        """The Generation (frees the C text), or the error to raise."""
        if self.exc is not None:
            raise self.exc
        text = _lib.take_string(self.out.value)
        self.out = ctypes.c_void_p()
        if self.rc != _lib.OK:
            raise error_from(self.err)
        return Generation(text or "", self.res)


# ---------------------------------------------------------------- pipeline

def _is_message(m):
    return isinstance(m, dict) and "role" in m and "content" in m


def _is_chat(x):
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(_is_message(m) for m in x)


class Pipeline:
    """A loaded model with its settings; callable like transformers'
    text-generation pipeline. Made by safe_load_pipeline()."""

    task = "text-generation"

    def __init__(self, handle, model_id=None, config_path=None):
        self._h = handle
        self.model_id = model_id
        self.config_path = config_path
        self._lock = threading.Lock()
        self._callback_thread = None  # thread running on_text of its generation
        self._closing = False
        self._run = None     # the generation running
        self.last_generation = None

    # ---- lifetime
    def close(self):
        """Free the model and its memory now (waits for a running
        generation, which it cancels). Idempotent."""
        if not self._h:
            return
        if self._callback_thread == threading.get_ident():
            raise RuntimeError("lyra: close() from inside this pipeline's own on_text callback")
        self._closing = True
        run = self._run
        if run is not None:
            run.cancel()
            if run.is_stream:  # a suspended stream holds the pipeline: it frees it when it ends
                if not self._lock.acquire(blocking=False):
                    return
                self._lock.release()
        with self._lock:
            self._free()

    def _free(self):
        h, self._h = self._h, None
        if h:
            lib.lyra_pipeline_free(h)

    @property
    def closed(self):
        return not self._h

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        h = getattr(self, "_h", None)
        if h and _lib is not None and lib is not None:
            self._h = None
            try:
                lib.lyra_pipeline_free(h)
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass

    def __repr__(self):
        state = "closed" if self.closed else "open"
        return f"<lyra.Pipeline task={self.task!r} model_id={self.model_id!r} {state}>"

    def _handle(self):
        if not self._h:
            raise ValueError("lyra: the pipeline is closed")
        return self._h

    # ---- one generation at a time
    @contextlib.contextmanager
    def _turn(self, run):
        if self._callback_thread == threading.get_ident():
            raise RuntimeError("lyra: a call to this pipeline from inside its own on_text callback; "
                               "use another pipeline")
        self._lock.acquire()
        try:
            self._handle()
            self._run = run
            if run is not None:
                self.last_generation = None
            yield run
        finally:
            pending = run.settle() if run is not None else None  # never free under a running call
            self._run = None
            if self._closing:
                self._free()
            self._lock.release()
            if pending is not None:
                raise pending

    def cancel(self):
        """Stop the generation running on this pipeline (from another
        thread) before its next token: that call raises GenerationCancelled
        with the text so far. Does nothing when none runs."""
        run = self._run
        if run is not None:
            run.cancel(by_user=True)

    def _generate(self, what, payload, on_text, kwargs, stream=None):
        handle = self._handle()
        kw = _make_kwargs(_call_items(kwargs))
        run = None
        try:
            run = _Run(handle, what, payload, kw, want_pieces=on_text is not None or stream is not None,
                       is_stream=stream is not None)
            with self._turn(run):
                try:
                    with contextlib.closing(run.pieces()) as pieces:
                        for piece in pieces:
                            if stream is not None:
                                yield piece
                            else:
                                self._callback_thread = threading.get_ident()
                                try:
                                    on_text(piece)
                                finally:
                                    self._callback_thread = None
                except BaseException:  # Ctrl-C, a callback's exception, close(): keep what was done
                    if run.done.is_set() and run.exc is None and run.rc == _lib.OK:
                        self.last_generation = Generation(_lib.take_string(run.out.value) or "", run.res)
                        run.out = ctypes.c_void_p()
                    raise
                gen = run.result()
                self.last_generation = gen
            if gen.finish_reason == "cancelled" and run.by_user:
                raise GenerationCancelled("pipeline: cancelled after %d tokens" % gen.completion_tokens, gen)
            if stream is not None:
                stream.generation = gen
            else:
                yield gen
        finally:
            if run is not None and run.out.value:  # left by an exception: free the text
                _lib.take_string(run.out.value)
            if kw:
                lib.lyra_kwargs_free(kw)

    def _one(self, what, payload, on_text, kwargs):
        gens = list(self._generate(what, payload, on_text, kwargs))
        return gens[-1]

    # ---- the API
    def generate(self, prompt, *, on_text=None, **kwargs):
        """Continue prompt (plain text, no template) and return a
        Generation. on_text(piece) is called on this thread with each piece
        of text as it is generated; kwargs are this call's generation
        settings (max_new_tokens, temperature, do_sample, top_k, top_p,
        min_p, repetition_penalty, stop / stop_sequence, seed)."""
        if not isinstance(prompt, str):
            raise TypeError(f"lyra: prompt must be a str, not {type(prompt).__name__}")
        return self._one("text", prompt, on_text, kwargs)

    def chat(self, messages, *, on_text=None, **kwargs):
        """The assistant's reply (a Generation) to messages
        [{"role": "system"|"user"|"assistant", "content": str}, ...]: an
        optional system message, then user and assistant messages
        alternating, ending with a user message; rendered with the model's
        chat template. The KV cache reuses the prefix it shares with the
        previous conversation."""
        return self._one("chat", _messages(messages), on_text, kwargs)

    def stream(self, inputs, **kwargs):
        """A Stream of the text pieces of the continuation of a prompt, or
        of the reply to a message list, as they are generated; its
        `generation` is set once it is exhausted. Leaving the loop early (or
        close()) stops the generation."""
        if isinstance(inputs, str):
            return Stream(lambda s: self._generate("text", inputs, None, kwargs, stream=s))
        if _is_chat(inputs):
            msgs = _messages(inputs)
            return Stream(lambda s: self._generate("chat", msgs, None, kwargs, stream=s))
        raise TypeError("lyra: stream() takes a prompt (str) or a list of chat messages")

    def __call__(self, text_inputs, *, return_full_text=True, **kwargs):
        """transformers-style: a prompt -> [{"generated_text": prompt +
        continuation}] (return_full_text=False: the continuation alone); a
        list of chat messages -> [{"generated_text": messages + [the
        assistant's reply]}] (return_full_text=False: the reply's text); a
        list of prompts or of conversations -> a list of such lists."""
        if isinstance(text_inputs, str):
            gen = self.generate(text_inputs, **kwargs)
            return [{"generated_text": text_inputs + gen.text if return_full_text else gen.text}]
        if _is_chat(text_inputs):
            gen = self.chat(text_inputs, **kwargs)
            if not return_full_text:
                return [{"generated_text": gen.text}]
            conv = [dict(m) for m in text_inputs] + [{"role": "assistant", "content": gen.text}]
            return [{"generated_text": conv}]
        if isinstance(text_inputs, (list, tuple)):
            return [self(x, return_full_text=return_full_text, **kwargs) for x in text_inputs]
        raise TypeError("lyra: a pipeline takes a prompt (str), a list of chat messages, or a list of "
                        f"either; got {type(text_inputs).__name__}")

    def reset(self):
        """Forget the conversation and empty the KV cache."""
        with self._turn(None):
            lib.lyra_pipeline_reset(self._h)

    # ---- sessions (docs/sessions.md): the conversation and its KV cache
    def _session_call(self, name):
        if not _lib.has(name):
            raise LyraError(f"lyra: {_lib.path} has no {name} (a liblyra without sessions)")
        return getattr(lib, name)

    def save_session(self, path: "str | os.PathLike[str]") -> None:
        """Write the conversation (its tokens, KV cache and sampler state)
        to a session file, atomically. Raises LyraError."""
        call = self._session_call("lyra_pipeline_session_save")
        err = _lib.Error()
        with self._turn(None):
            check(call(self._h, os.fsencode(path), byref(err)), err)

    def load_session(self, path: "str | os.PathLike[str]") -> None:
        """Restore a conversation saved by save_session (or whose
        session_bytes were written to a file) without evaluating it again:
        the next chat() whose messages extend it evaluates only the new
        tokens. A file of another model, KV type or geometry, or a damaged
        one, raises LyraError and leaves the pipeline empty."""
        call = self._session_call("lyra_pipeline_session_load")
        err = _lib.Error()
        with self._turn(None):
            check(call(self._h, os.fsencode(path), byref(err)), err)

    def session_bytes(self) -> bytes:
        """The conversation as a session file's bytes (save_session's
        format, in memory)."""
        call = self._session_call("lyra_pipeline_session_save_mem")
        err = _lib.Error()
        buf = ctypes.c_void_p()
        n = ctypes.c_size_t()
        with self._turn(None):
            check(call(self._h, byref(buf), byref(n), byref(err)), err)
        try:
            return ctypes.string_at(buf.value, n.value) if buf.value else b""
        finally:
            if buf.value:
                lib.lyra_free(buf)

    def restore_session(self, data: bytes) -> None:
        """Restore a conversation from session_bytes() (load_session from
        memory)."""
        call = self._session_call("lyra_pipeline_session_load_mem")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"lyra: restore_session takes bytes, not {type(data).__name__}")
        data = bytes(data)
        err = _lib.Error()
        with self._turn(None):
            check(call(self._h, data, len(data), byref(err)), err)

    @property
    def n_evaluated(self) -> int:
        """Tokens evaluated (prompt tokens and generated tokens fed back)
        since the pipeline opened: a restored session adds none."""
        return int(self._session_call("lyra_pipeline_n_evaluated")(self._handle()))

    def tokenize(self, text, add_bos=True):
        """Token ids of text (with BOS as the model says when add_bos)."""
        model = lib.lyra_pipeline_model(self._handle())
        data = text.encode()
        toks = ctypes.POINTER(ctypes.c_int32)()
        n = ctypes.c_size_t()
        err = _lib.Error()
        check(lib.lyra_tokenize(model, data, len(data), -1 if add_bos else 0, 0, byref(toks), byref(n),
                                byref(err)), err)
        try:
            return [toks[i] for i in range(n.value)]
        finally:
            _lib.libc.free(ctypes.cast(toks, ctypes.c_void_p))

    # ---- what was loaded
    @property
    def device_map(self):
        """Where every module is, as transformers' hf_device_map:
        {"model.embed_tokens": "cpu", "model.layers.0": "0", ...}."""
        model = lib.lyra_pipeline_model(self._handle())
        return json.loads(_lib.text_of(lib.lyra_model_device_map, model))

    @property
    def fallback_history(self):
        """The progressive fallback's steps (docs/fallback.md), oldest first."""
        model = lib.lyra_pipeline_model(self._handle())
        steps = []
        for i in range(lib.lyra_model_fallback_steps(model)):
            s = _lib.FallbackStep()
            if lib.lyra_model_fallback_step(model, i, byref(s)) == _lib.OK:
                steps.append({"phase": "load" if s.phase == 0 else "generate",
                              "token": None if s.token < 0 else s.token,
                              "device": s.device.decode(), "asked": s.asked, "free": s.free,
                              "what": s.what.decode(), "from": s.from_k, "to": s.to_k})
        return steps

    @property
    def model_info(self):
        """The model's architecture, size and the context in use."""
        h = self._handle()
        model = lib.lyra_pipeline_model(h)
        ctx = lib.lyra_pipeline_context(h)

        def meta(key):
            n = lib.lyra_model_meta_str(model, key.encode(), None, 0)
            if n < 0:
                return None
            buf = ctypes.create_string_buffer(n + 1)
            lib.lyra_model_meta_str(model, key.encode(), buf, n + 1)
            return buf.value.decode("utf-8", "replace")

        return {
            "model_id": self.model_id,
            "name": meta("general.name"),
            "arch": lib.lyra_model_arch(model).decode(),
            "n_params": lib.lyra_model_n_params(model),
            "n_bytes": lib.lyra_model_n_bytes(model),
            "n_layer": lib.lyra_model_n_layer(model),
            "n_embd": lib.lyra_model_n_embd(model),
            "n_vocab": lib.lyra_model_n_vocab(model),
            "n_ctx_train": lib.lyra_model_n_ctx_train(model),
            "n_ctx": lib.lyra_context_n_ctx(ctx),
            "has_chat_template": meta("tokenizer.chat_template") is not None,
            "map": _lib.text_of(lib.lyra_context_map_lines, ctx).rstrip("\n"),
        }

    @property
    def config(self):
        """The effective configuration: {"KEY": {"value": V, "source": S}}
        with each value's source ("default", "file:/path", "api"), as
        `lyra config show --json` prints it."""
        return json.loads(_lib.text_of(lib.lyra_pipeline_config, self._handle()))


class Stream:
    """An iterator of text pieces (Pipeline.stream); `generation` holds the
    Generation once it is exhausted. close() (or leaving a `with` block)
    stops the generation."""

    def __init__(self, make):
        self.generation = None
        self._it = make(self)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)

    def close(self):
        self._it.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _messages(messages):
    if not isinstance(messages, (list, tuple)):
        raise TypeError("lyra: messages must be a list of {'role': ..., 'content': ...} dicts")
    out = []
    for i, m in enumerate(messages):
        if not _is_message(m):
            raise TypeError(f"lyra: messages[{i}] is not a {{'role': ..., 'content': ...}} dict")
        if not isinstance(m["role"], str) or not isinstance(m["content"], str):
            raise TypeError(f"lyra: messages[{i}]: role and content must be str")
        out.append((m["role"], m["content"]))
    return out


def safe_load_pipeline(model_id=None, task="text-generation", config_path=None, pipeline_kwargs=None,
                       **overrides):
    """Load a model as the seed's safe_load_pipeline does, through liblyra:
    model_id (a GGUF file, a directory holding one, org/name[:TAG] in the
    Hugging Face cache; None: the config's model_id), task (only
    "text-generation"), config_path (None: discovery as the CLI's:
    $LYRA_MODEL_CONFIG, ./config/model_config.json, $XDG_CONFIG_HOME/lyra/
    model_config.json), pipeline_kwargs (generation defaults:
    max_new_tokens, temperature, ...) and overrides of any top-level config
    key (device_map, max_memory, gpu_layers_fallback,
    enable_progressive_fallback, load_in_8bit, load_in_4bit,
    context_length, seed, system_prompt, dtype or torch_dtype, revision
    (the Hugging Face cache snapshot of an org/name), ...). Returns a Pipeline; raises
    a LyraError subclass (ConfigError, ModelNotFoundError,
    OutOfMemoryError, ...) with lyra's message."""
    items = []
    for k, v in (pipeline_kwargs or {}).items():
        items.append(("pipeline_kwargs." + ("stop" if k == "stop_sequence" else k), v))
    items.extend(overrides.items())
    kw = _make_kwargs(items)
    try:
        out = ctypes.c_void_p()
        err = _lib.Error()
        mid = os.fspath(model_id) if model_id is not None else None
        cfg = os.fspath(config_path) if config_path is not None else None
        rc = lib.lyra_pipeline_open(mid.encode() if mid is not None else None,
                                    task.encode() if task is not None else None,
                                    cfg.encode() if cfg is not None else None, kw, byref(out), byref(err))
        check(rc, err)
    finally:
        if kw:
            lib.lyra_kwargs_free(kw)
    return Pipeline(out.value, model_id=mid, config_path=cfg)


def set_log_level(level):
    """liblyra's messages on stderr at this level and above: "error",
    "warn" (the default), "info" or "debug"."""
    levels = {"error": 0, "warn": 1, "warning": 1, "info": 2, "debug": 3}
    if level not in levels:
        raise ValueError(f"lyra: log level {level!r}: expected one of error, warn, info, debug")
    lib.lyra_log_set(None, levels[level], None)


__all__ = ["safe_load_pipeline", "Pipeline", "Generation", "Stream", "set_log_level", "LyraError"]
