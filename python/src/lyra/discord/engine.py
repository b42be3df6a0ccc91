"""engine: the bot's model. ConcurrentEngine (the default, at the end)
answers several conversations at once through lyra.Engine; Engine, below,
is the one-at-a-time path (discord.parallel 1, or a liblyra without the
engine API): the bot's one pipeline, on one thread. Conversations queue their
turns; the thread takes them round-robin between conversations (one turn of
each conversation waiting before a second of any), so a long conversation
cannot starve the others. Switching conversations keeps the KV cache of the
one left: in memory (Pipeline.session_bytes) for the most recently active
ones within kv_budget bytes, and in a session file written after every turn
(Pipeline.save_session, atomic), so a conversation that comes back, or a
restarted bot, restores its cache instead of evaluating its history again.
History longer than the context is trimmed from the oldest turns (the system
prompt stays), and the user is told once."""
import collections
import logging
import os
import threading
from typing import Any, Callable, Dict, List, Optional

from .. import _lib
from ..errors import LyraError

log = logging.getLogger("lyra.discord")

TRIM_NOTE = ("*(This conversation is now longer than the model's context: "
             "its oldest messages are left out from here on.)*\n\n")


class Turn:
    """One user message to answer in a conversation. on_text(piece) runs on
    the engine's thread; done(result or exception) once it is over."""

    def __init__(self, key: str, content: str, on_text: Callable[[str], None],
                 done: Callable[[Any], None]) -> None:
        self.key = key
        self.content = content
        self.on_text = on_text
        self.done = done
        self.epoch = 0


class Engine:
    def __init__(self, pipe, store, sessions_dir: str, kv_budget: int, default_system: Optional[str],
                 defaults: Dict[str, Any]) -> None:
        self.pipe = pipe
        self.store = store
        self.sessions_dir = sessions_dir
        self.kv_budget = kv_budget
        self.default_system = default_system
        self.defaults = defaults           # max_new_tokens, temperature (the config's)
        self.has_sessions = _lib.has("lyra_pipeline_session_save")
        self._cv = threading.Condition()
        self._queues: Dict[str, collections.deque] = {}
        self._order: collections.deque = collections.deque()  # conversations with turns waiting
        self._epoch: Dict[str, int] = collections.defaultdict(int)  # bumped by reset / forget
        self._mem: "collections.OrderedDict[str, bytes]" = collections.OrderedDict()  # LRU, newest last
        self.mem_bytes = 0
        self.active: Optional[str] = None  # the conversation in the pipeline's KV cache
        self._stop = False
        self.n_ctx = int(pipe.model_info["n_ctx"])
        self._thread = threading.Thread(target=self._loop, name="lyra-discord-engine", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ the queue
    def submit(self, turn: Turn) -> int:
        """Queue a turn; returns how many turns were ahead of it."""
        with self._cv:
            turn.epoch = self._epoch[turn.key]
            q = self._queues.setdefault(turn.key, collections.deque())
            ahead = sum(len(x) for x in self._queues.values())
            if not q:
                self._order.append(turn.key)
            q.append(turn)
            self._cv.notify()
            return ahead

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout=30)

    @property
    def n_evaluated(self) -> int:
        """Tokens the model evaluated since the start (-1: not counted)."""
        return int(self.pipe.n_evaluated) if self.has_sessions else -1

    def _next(self) -> Optional[Turn]:
        with self._cv:
            while not self._order and not self._stop:
                self._cv.wait()
            if self._stop:
                return None
            key = self._order.popleft()
            q = self._queues[key]
            turn = q.popleft()
            if q:
                self._order.append(key)  # round-robin: back of the line
            else:
                del self._queues[key]
            return turn

    def _loop(self) -> None:
        while True:
            turn = self._next()
            if turn is None:
                return
            try:
                result = self._answer(turn)
            except BaseException as e:  # noqa: BLE001 - handed to the event loop
                log.exception("turn in %s failed", turn.key)
                result = e
            try:
                turn.done(result)
            except Exception:  # noqa: BLE001
                log.exception("turn in %s: done callback failed", turn.key)

    # ------------------------------------------------------------ sessions
    def session_path(self, key: str) -> str:
        return os.path.join(self.sessions_dir, key + ".session")

    def _stash(self) -> None:
        """Keep the active conversation's KV cache in memory (LRU within
        kv_budget; its file is already written)."""
        key, self.active = self.active, None
        if key is None or not self.has_sessions or self.kv_budget <= 0:
            return
        try:
            blob = self.pipe.session_bytes()
        except LyraError as e:
            log.warning("session of %s not kept in memory: %s", key, e)
            return
        with self._cv:
            self._drop_mem(key)
            if len(blob) <= self.kv_budget:
                self._mem[key] = blob
                self.mem_bytes += len(blob)
            while self.mem_bytes > self.kv_budget and self._mem:
                old, b = self._mem.popitem(last=False)
                self.mem_bytes -= len(b)
                log.debug("session of %s: out of memory budget, on disk only", old)

    def _drop_mem(self, key: str) -> None:
        b = self._mem.pop(key, None)
        if b is not None:
            self.mem_bytes -= len(b)

    def _activate(self, key: str) -> str:
        """Put key's conversation in the pipeline; how it got there."""
        if self.active == key:
            return "active"
        with self._cv:  # taken out first: stashing the active one must not evict it
            blob = self._mem.pop(key, None)
            if blob is not None:
                self.mem_bytes -= len(blob)
        self._stash()
        how = "new"
        if self.has_sessions:
            path = self.session_path(key)
            try:
                if blob is not None:
                    self.pipe.restore_session(blob)
                    how = "memory"
                elif os.path.exists(path):
                    self.pipe.load_session(path)
                    how = "file"
                else:
                    self.pipe.reset()
            except LyraError as e:
                log.warning("session of %s not restored (its history is evaluated again): %s", key, e)
                self.pipe.reset()
                how = "new"
        else:
            self.pipe.reset()
        self.active = key
        return how

    def forget(self, key: str, files: bool = True) -> None:
        """Drop a conversation's KV cache (memory and file): /reset, /forget.
        A turn of it running now keeps neither its cache nor its reply."""
        with self._cv:
            self._epoch[key] += 1
            self._drop_mem(key)
            q = self._queues.pop(key, None)
            if q is not None:
                try:
                    self._order.remove(key)
                except ValueError:
                    pass
            if self.active == key:
                self.active = None  # stale: the next turn resets the pipeline
        if files:
            try:
                os.unlink(self.session_path(key))
            except FileNotFoundError:
                pass
        for t in q or ():
            t.done(LyraError("lyra.discord: the conversation was reset"))

    # ------------------------------------------------------------ a turn
    def _count(self, text: str) -> int:
        return len(self.pipe.tokenize(text, add_bos=False)) + 6  # the template's few tokens per message

    def _messages(self, key: str, conv: Dict[str, Any], reserve: int):
        """The messages to send (system, trimmed history) and whether the
        history was trimmed just now."""
        system = conv["system"] if conv["system"] is not None else self.default_system
        hist = self.store.history(key, conv["first_id"])
        # consecutive messages of one role (a reply lost to a crash) become one
        merged: List[list] = []
        for mid, role, content in hist:
            if merged and merged[-1][1] == role:
                merged[-1][2] += "\n" + content
            else:
                merged.append([mid, role, content])
        while merged and merged[0][1] != "user":
            merged.pop(0)
        budget = self.n_ctx - reserve - (self._count(system) if system else 0) - 8
        sizes = [self._count(m[2]) for m in merged]
        trimmed = False
        # past the budget, trim to 60% of it: the turns after this one keep
        # the same first message, so their prefix stays in the KV cache
        target = budget if sum(sizes) <= budget else int(budget * 0.6)
        while len(merged) > 1 and sum(sizes) > target:
            # drop the oldest turn: a user message and the reply to it
            n = 2 if len(merged) > 2 and merged[1][1] == "assistant" else 1
            del merged[:n], sizes[:n]
            trimmed = True
        if trimmed:
            self.store.update(key, first_id=merged[0][0])
        msgs = ([{"role": "system", "content": system}] if system else [])
        msgs += [{"role": r, "content": c} for _, r, c in merged]
        return msgs, trimmed

    def _answer(self, turn: Turn) -> Dict[str, Any]:
        key = turn.key
        with self._cv:
            if turn.epoch != self._epoch[key]:
                raise LyraError("lyra.discord: the conversation was reset")
        self.store.add(key, "user", turn.content)
        conv = self.store.conversation(key)
        kwargs: Dict[str, Any] = {}
        temp = conv["temperature"] if conv["temperature"] is not None else self.defaults.get("temperature")
        max_tokens = conv["max_tokens"] if conv["max_tokens"] is not None else self.defaults.get("max_new_tokens")
        if temp is not None:
            kwargs["temperature"] = temp
        if max_tokens is not None:
            kwargs["max_new_tokens"] = max_tokens
        reserve = max_tokens if max_tokens and 0 < max_tokens < self.n_ctx // 2 else self.n_ctx // 2
        msgs, trimmed = self._messages(key, conv, reserve)
        note = ""
        if trimmed and not conv["trim_told"]:
            note = TRIM_NOTE
            self.store.update(key, trim_told=1)
        how = self._activate(key)
        before = self.pipe.n_evaluated if self.has_sessions else 0
        if note:
            turn.on_text(note)
        gen = self.pipe.chat(msgs, on_text=turn.on_text, **kwargs)
        evaluated = (self.pipe.n_evaluated - before) if self.has_sessions else -1
        with self._cv:
            stale = turn.epoch != self._epoch[key]
        if stale:  # reset or forgotten meanwhile: keep nothing
            self.active = None
            raise LyraError("lyra.discord: the conversation was reset")
        self.store.add(key, "assistant", gen.text)
        if self.has_sessions:
            try:
                self.pipe.save_session(self.session_path(key))
            except LyraError as e:
                log.warning("session of %s not saved: %s", key, e)
        log.info("turn key=%s from=%s prompt=%d reused=%d generated=%d evaluated=%d n_evaluated=%d finish=%s",
                 key, how, gen.prompt_tokens, gen.reused_tokens, gen.completion_tokens, evaluated,
                 self.pipe.n_evaluated if self.has_sessions else -1, gen.finish_reason)
        return {"text": note + gen.text, "generation": gen, "from": how, "evaluated": evaluated}


class ConcurrentEngine(Engine):
    """Channels answered at once through lyra.Engine (liblyra's lyra_engine:
    `parallel` slots, one batched forward pass per step for every reply
    being generated). `parallel` worker threads take the conversations
    round-robin as Engine does, each conversation with at most one reply
    running, so a long reply in one channel does not hold the others back;
    the replies beyond the free slots wait in the engine's FIFO queue.
    A conversation's KV cache stays in its slot between turns (prefix
    reuse picks that slot again); each turn also keeps the slot's state
    (Request.session_bytes) in memory within kv_budget and in its session
    file, and hands it back with the next turn: when the slot went to
    another conversation meanwhile (more conversations than slots) or the
    bot restarted, the engine restores it into a free slot instead of
    evaluating the history again."""

    def __init__(self, pipe, store, sessions_dir: str, kv_budget: int, default_system: Optional[str],
                 defaults: Dict[str, Any], parallel: int = 4) -> None:
        from ..engine import Engine as LyraEngine
        self.pipe = pipe
        self.store = store
        self.sessions_dir = sessions_dir
        self.kv_budget = kv_budget
        self.default_system = default_system
        self.defaults = defaults
        self.has_sessions = True
        self.parallel = parallel
        self.eng = LyraEngine(pipe, n_slots=parallel)
        self._cv = threading.Condition()
        self._queues: Dict[str, collections.deque] = {}
        self._order: collections.deque = collections.deque()
        self._epoch: Dict[str, int] = collections.defaultdict(int)
        self._mem: "collections.OrderedDict[str, bytes]" = collections.OrderedDict()
        self.mem_bytes = 0
        self.active = None
        self._running: Dict[str, Any] = {}   # conversation -> its lyra.engine.Request (None before submit)
        self._slot_key: Dict[int, str] = {}  # slot -> the conversation it last answered
        self._stop = False
        self.n_ctx = self.eng.n_ctx
        self._threads = [threading.Thread(target=self._loop, name=f"lyra-discord-engine-{i}", daemon=True)
                         for i in range(parallel)]
        for t in self._threads:
            t.start()

    @property
    def n_evaluated(self) -> int:
        return int(self.eng.stats()["evaluated"])

    def close(self) -> None:
        with self._cv:
            self._stop = True
            for r in self._running.values():
                if r is not None:
                    r.cancel()
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout=30)
        self.eng.close()

    def submit(self, turn: Turn) -> int:
        with self._cv:
            turn.epoch = self._epoch[turn.key]
            q = self._queues.setdefault(turn.key, collections.deque())
            ahead = sum(len(x) for x in self._queues.values())
            if not q and turn.key not in self._running:
                self._order.append(turn.key)
            q.append(turn)
            self._cv.notify_all()
            return ahead

    def _next(self) -> Optional[Turn]:
        with self._cv:
            while not self._order and not self._stop:
                self._cv.wait()
            if self._stop:
                return None
            key = self._order.popleft()  # never a running one: it rejoins the line when done
            q = self._queues[key]
            turn = q.popleft()
            if not q:
                del self._queues[key]
            self._running[key] = None
            return turn

    def _loop(self) -> None:
        while True:
            turn = self._next()
            if turn is None:
                return
            try:
                result = self._answer(turn)
            except BaseException as e:  # noqa: BLE001 - handed to the event loop
                log.exception("turn in %s failed", turn.key)
                result = e
            with self._cv:
                self._running.pop(turn.key, None)
                if turn.key in self._queues:  # its next turn: at the back of the line
                    self._order.append(turn.key)
                    self._cv.notify_all()
            try:
                turn.done(result)
            except Exception:  # noqa: BLE001
                log.exception("turn in %s: done callback failed", turn.key)

    def forget(self, key: str, files: bool = True) -> None:
        with self._cv:
            r = self._running.get(key)
            if r is not None:
                r.cancel()
        super().forget(key, files)

    def _keep(self, key: str, blob: bytes) -> None:
        """The conversation's state: in its session file (atomic) and in
        memory within kv_budget (least recently used out first)."""
        path = self.session_path(key)
        tmp = path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            log.warning("session of %s not saved: %s", key, e)
        with self._cv:
            self._drop_mem(key)
            if self.kv_budget > 0 and len(blob) <= self.kv_budget:
                self._mem[key] = blob
                self.mem_bytes += len(blob)
            while self.mem_bytes > self.kv_budget and self._mem:
                old, b = self._mem.popitem(last=False)
                self.mem_bytes -= len(b)

    def _answer(self, turn: Turn) -> Dict[str, Any]:
        key = turn.key
        with self._cv:
            if turn.epoch != self._epoch[key]:
                raise LyraError("lyra.discord: the conversation was reset")
        self.store.add(key, "user", turn.content)
        conv = self.store.conversation(key)
        kwargs: Dict[str, Any] = {}
        temp = conv["temperature"] if conv["temperature"] is not None else self.defaults.get("temperature")
        max_tokens = conv["max_tokens"] if conv["max_tokens"] is not None else self.defaults.get("max_new_tokens")
        if temp is not None:
            kwargs["temperature"] = temp
        if max_tokens is not None:
            kwargs["max_new_tokens"] = max_tokens
        reserve = max_tokens if max_tokens and 0 < max_tokens < self.n_ctx // 2 else self.n_ctx // 2
        msgs, trimmed = self._messages(key, conv, reserve)
        note = ""
        if trimmed and not conv["trim_told"]:
            note = TRIM_NOTE
            self.store.update(key, trim_told=1)
        with self._cv:
            blob = self._mem.get(key)
            if blob is not None:
                self._mem.move_to_end(key)
        src = "memory"
        if blob is None:
            src = "file"
            try:
                with open(self.session_path(key), "rb") as f:
                    blob = f.read()
            except OSError:
                blob = None
        if note:
            turn.on_text(note)
        req = self.eng.submit(messages=msgs, session=blob, keep_session=True, **kwargs)
        with self._cv:
            self._running[key] = req
            stale = turn.epoch != self._epoch[key]
        if stale:
            req.cancel()
        try:
            for piece in req.stream():
                turn.on_text(piece)
            gen = req.result()
            with self._cv:
                stale = turn.epoch != self._epoch[key]
                was = self._slot_key.get(gen.slot)
                self._slot_key[gen.slot] = key
            how = src if gen.restored else "active" if was == key else "new"
            if stale:  # reset or forgotten meanwhile: keep nothing
                raise LyraError("lyra.discord: the conversation was reset")
            self.store.add(key, "assistant", gen.text)
            try:
                self._keep(key, req.session_bytes())
            except LyraError as e:
                log.warning("session of %s not kept: %s", key, e)
        finally:
            req.free()
        st = self.eng.stats()
        log.info("turn key=%s from=%s prompt=%d reused=%d generated=%d evaluated=%d n_evaluated=%d finish=%s "
                 "slot=%d max_batch=%d batched_steps=%d", key, how, gen.prompt_tokens, gen.reused_tokens,
                 gen.completion_tokens, gen.evaluated_tokens, st["evaluated"], gen.finish_reason, gen.slot,
                 st["max_batch"], st["batched_steps"])
        return {"text": note + gen.text, "generation": gen, "from": how, "evaluated": gen.evaluated_tokens}
