"""The Discord bot (python -m lyra.discord; docs/discord.md) against a local
Discord double on loopback (discord_double.py): mentions, DMs and listed
channels, three channels at once, streamed edits at most one a second, a
long reply split at 2,000 characters, 429s, slash commands, the per-user
rate limit, a SIGKILL and restart resuming every channel without evaluating
its history again, /forget, three channels answered concurrently through
the engine's batching (each reply as if alone). Skipped without discord.py (CI installs it)."""
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from lyra.discord.split import split_message

discord = pytest.importorskip("discord")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from discord_double import BOT_ID, TOKEN, DiscordDouble  # noqa: E402

CH1, CH2, CH3, LISTED = 501, 502, 503, 504


# ------------------------------------------------------------ splitting
def test_split_plain_and_utf8():
    text = ("héllo wörld ✓ " * 300).strip()  # 4,199 characters
    chunks = split_message(text)
    assert all(0 < len(c) <= 2000 for c in chunks)
    assert " ".join(chunks) == text  # cut at spaces, nothing lost
    long_word = "é" * 4500
    chunks = split_message(long_word)
    assert "".join(chunks) == long_word and all(len(c) <= 2000 for c in chunks)
    assert all(c.encode("utf-8").decode("utf-8") == c for c in chunks)


def test_split_code_block():
    code = "```python\n" + "".join(f"print({i})  # ünïcode\n" for i in range(200)) + "```\nafter"
    text = "intro\n" + code
    assert len(text) > 3500
    chunks = split_message(text)
    assert len(chunks) >= 2 and all(len(c) <= 2000 for c in chunks)
    for c in chunks:  # every chunk has balanced fences
        assert c.count("```") % 2 == 0, c[-50:]
    assert chunks[0].endswith("\n```") and chunks[1].startswith("```python\n")
    body = "".join(c.removeprefix("```python\n").removesuffix("\n```") for c in chunks)
    assert body.replace("\n", "") == text.replace("\n", "")


# ------------------------------------------------------------ the bot
@pytest.fixture
def double():
    d = DiscordDouble(edit_429_every=2, retry_after=0.3)
    yield d
    d.close()


class Bot:
    def __init__(self, double, tmp_path, model, discord_cfg=None, pk=None):
        self.double = double
        self.state = tmp_path / "state"
        self.cfg = tmp_path / "model_config.json"
        self.cfg.write_text(json.dumps({
            "model_id": model, "seed": 7, "system_prompt": "You are a friendly storyteller.",
            "pipeline_kwargs": {"max_new_tokens": 24, "temperature": 0.0, **(pk or {})},
            "discord": {"channels": [str(LISTED)], "kv_budget": "1MB", "rate_limit_messages": 20,
                        "rate_limit_seconds": 60, **(discord_cfg or {})}}))
        self.log = tmp_path / "bot.log"
        self.proc = None

    def env(self):
        env = dict(os.environ)
        env.update(DISCORD_TOKEN=TOKEN, LYRA_DISCORD_API=self.double.api, XDG_STATE_HOME=str(self.state),
                   PYTHONUNBUFFERED="1")
        return env

    def start(self):
        n = self.double.identifies
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "lyra.discord", "--model-config", str(self.cfg)],
                                     env=self.env(), stdout=self.logf, stderr=subprocess.STDOUT)
        try:
            self.double.wait(lambda d: d.identifies > n and len(self.lines("ready as")) > 0 or self.proc.poll()
                             is not None, 120, "bot ready")
        except TimeoutError:
            raise AssertionError(self.text())
        assert self.proc.poll() is None, self.text()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.logf.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.logf.close()

    def text(self):
        return self.log.read_text(errors="replace")

    def lines(self, word):
        return [x for x in self.text().splitlines() if word in x]

    def turns(self):
        out = []
        for x in self.lines(" turn key="):
            out.append(dict(re.findall(r"(\w+)=(\S+)", x.split(" turn ", 1)[1])))
        return out


@pytest.fixture
def bot(double, tmp_path, model):
    b = Bot(double, tmp_path, model)
    yield b
    b.stop()
    assert TOKEN not in b.text()  # never logged


def replies(double, channel):
    """The bot's final messages in a channel, by message id order."""
    with double._cond:
        return [double.messages[e["id"]]["content"] for e in double.events
                if e["kind"] == "post" and e["channel"] == str(channel)]


def writes(double, channel):
    return [e for e in double.of("post", channel=str(channel)) + double.of("edit", channel=str(channel))]


def settle(double, quiet=2.5):
    """Wait until the bot has written nothing for `quiet` seconds."""
    double.wait(lambda d: time.monotonic() - max([e["t"] for e in d.events if e["kind"] in ("post", "edit")] or [0])
                > quiet, 60, "the writes to end")


def test_no_token(tmp_path, model):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model_id": model}))
    env = {k: v for k, v in os.environ.items() if k != "DISCORD_TOKEN"}
    r = subprocess.run([sys.executable, "-m", "lyra.discord", "--model-config", str(cfg)], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 2 and b"DISCORD_TOKEN is not set" in r.stderr


def test_bad_discord_key(tmp_path, model):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model_id": model, "discord": {"chanels": []}}))
    r = subprocess.run([sys.executable, "-m", "lyra.discord", "--model-config", str(cfg)],
                       env={**os.environ, "DISCORD_TOKEN": "x"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    assert r.returncode == 2 and b"discord.chanels: unknown key" in r.stderr


def test_conversations(bot, double):
    bot.start()
    assert double.of("identify")[0]["intents"] & (1 << 15)  # message content
    assert {"reset", "system", "settings", "info", "forget"} <= set(double.of("commands")[-1]["names"])
    # not addressed: no answer
    double.say(CH1, "nobody asked you")
    # a mention, a DM and a listed channel, at the same time, in 3 channels
    double.say(CH1, "Tell me about a cat.", mention=True)
    double.say(77, "Tell me about a dog.", user=(12, "bob"), dm=True)
    double.say(LISTED, "Tell me about a bird.", user=(13, "carol"))
    for ch in (CH1, 77, LISTED):
        double.wait(lambda d: len(bot.lines(" turn key=")) >= 3 and replies(d, ch), 120, f"reply in {ch}")
    time.sleep(1.5)
    assert {t["key"] for t in bot.turns()} == {f"c{CH1}", "u12", f"c{LISTED}"}
    assert double.of("typing", channel=str(CH1))
    # a second turn in each: the prefix is reused (the cache came back from memory)
    for ch, dm, who in ((CH1, False, (11, "alice")), (77, True, (12, "bob")), (LISTED, False, (13, "carol"))):
        double.say(ch, "And then?", user=who, dm=dm, mention=ch == CH1)
    double.wait(lambda d: len(bot.turns()) >= 6, 120, "second turns")
    for t in bot.turns()[3:]:
        if "sessions on" in bot.text():
            assert t["from"] in ("memory", "active"), t
            assert int(t["reused"]) > 0.6 * int(t["prompt"]), t
        else:  # a liblyra without sessions: evaluated again
            assert t["from"] == "new"
    db = sqlite3.connect(str(bot.state / "lyra" / "discord" / "state.db"))
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT COUNT(*) FROM messages WHERE key = ?", (f"c{CH1}",)).fetchone()[0] == 4


def test_long_reply_streamed_and_split(double, tmp_path, model):
    b = Bot(double, tmp_path, model, pk={"max_new_tokens": 1900})
    try:
        b.start()
        double.say(CH2, "Tell me a very long story.", mention=True)
        double.wait(lambda d: b.turns(), 300, "the long reply")
        settle(double)
        gen = b.turns()[0]
        msgs = replies(double, CH2)
        full = "".join(msgs)
        assert len(full) >= 3500, (len(full), gen)  # greedy, seeded: no end of text before
        assert len(msgs) >= 2 and all(0 < len(m) <= 2000 for m in msgs)
        assert all(len(m) > 1500 for m in msgs[:-1])  # full messages but the last
        ws = sorted(writes(double, CH2), key=lambda e: e["t"])
        assert len(ws) >= 4  # streamed: posted, then edited
        gaps = [b2["t"] - a["t"] for a, b2 in zip(ws, ws[1:])]
        assert min(gaps) >= 0.9, gaps  # at most one write a second (429 retries included)
        assert double.of("429")  # the double rate-limited some edits, and they were retried
    finally:
        b.stop()


def test_commands_rate_limit_restart_forget(double, tmp_path, model):
    b = Bot(double, tmp_path, model, discord_cfg={"rate_limit_messages": 4})
    try:
        b.start()
        chans = (CH1, CH2, CH3)
        r = double.reply_to(double.command(CH3, "settings", {"max_tokens": 12}))
        assert "max tokens 12" in r["content"]
        r = double.reply_to(double.command(CH3, "system", {"text": "You speak like a pirate."}))
        assert "pirate" in r["content"]
        for i, ch in enumerate(chans):
            double.say(ch, f"Hello number {i}.", user=(20 + i, f"u{i}"), mention=True)
        double.wait(lambda d: len(b.turns()) >= 3, 120, "first turns")
        for i, ch in enumerate(chans):
            double.say(ch, "What happened next?", user=(20 + i, f"u{i}"), mention=True)
        double.wait(lambda d: len(b.turns()) >= 6, 120, "second turns")
        assert int([t for t in b.turns() if t["key"] == f"c{CH3}"][-1]["generated"]) <= 12
        time.sleep(1.5)
        # the rate limit: a 5th message from u0 within the window gets the polite note, once
        double.say(CH1, "one", user=(20, "u0"), mention=True)
        double.say(CH1, "two", user=(20, "u0"), mention=True)
        double.say(CH1, "three", user=(20, "u0"), mention=True)
        double.wait(lambda d: any("faster than I can answer" in m for m in replies(d, CH1)), 60, "rate note")
        double.wait(lambda d: len(b.turns()) >= 8, 120, "turns before the kill")
        time.sleep(1.5)
        assert sum("faster than I can answer" in m for m in replies(double, CH1)) == 1
        # a reconnect resumes the gateway session
        double.reconnect()
        double.wait(lambda d: d.resumes >= 1, 60, "resume")
        r = double.reply_to(double.command(CH1, "info"))
        assert "stories" in r["content"].lower() or "llama" in r["content"].lower()
        assert "n_evaluated:" in r["content"] and "fallback steps:" in r["content"]
        sess = b.state / "lyra" / "discord" / "sessions"
        have_sessions = "sessions on" in b.text()
        if have_sessions:
            assert sorted(os.listdir(sess)) == sorted(f"c{c}.session" for c in chans)
        # killed in the middle of a long reply, and restarted
        double.reply_to(double.command(CH2, "settings", {"max_tokens": 1800}))
        n_posts = len(double.of("post", channel=str(CH2)))
        double.say(CH2, "Tell me more and more and more.", user=(21, "u1"), mention=True)
        double.wait(lambda d: len(d.of("post", channel=str(CH2))) > n_posts, 60, "a reply in progress")
        n_before = len(b.turns())
        b.kill()
        b.start()
        assert len(b.turns()) == n_before
        double.reply_to(double.command(CH2, "settings", {"max_tokens": 24}))
        for i, ch in enumerate(chans):
            double.say(ch, "Are you still there?", user=(30 + i, f"v{i}"), mention=True)
        double.wait(lambda d: len(b.turns()) >= n_before + 3, 120, "turns after the restart")
        after = b.turns()[n_before:]
        assert {t["key"] for t in after} == {f"c{c}" for c in chans}
        if have_sessions:
            for t in after:
                assert t["from"] in ("file", "active"), t
                # only the new messages are evaluated, not the history
                assert int(t["reused"]) > 0.6 * int(t["prompt"]), t
                assert int(t["evaluated"]) <= int(t["prompt"]) - int(t["reused"]) + int(t["generated"]), t
        # the settings survived the restart
        r = double.reply_to(double.command(CH3, "settings"))
        assert "max tokens 12" in r["content"]
        # the interrupted reply was not kept: its user message was, merged with the next one
        db = sqlite3.connect(str(b.state / "lyra" / "discord" / "state.db"))
        roles = [r[0] for r in db.execute("SELECT role FROM messages WHERE key = ? ORDER BY id", (f"c{CH2}",))]
        assert roles[-3:] == ["user", "user", "assistant"], roles
        # /forget removes the rows and the file
        assert db.execute("SELECT COUNT(*) FROM messages WHERE key = ?", (f"c{CH3}",)).fetchone()[0] > 0
        r = double.reply_to(double.command(CH3, "forget"))
        assert r["ephemeral"] and "deleted" in r["content"]
        assert db.execute("SELECT COUNT(*) FROM messages WHERE key = ?", (f"c{CH3}",)).fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM conversations WHERE key = ?", (f"c{CH3}",)).fetchone()[0] == 0
        assert not (sess / f"c{CH3}.session").exists()
        assert db.execute("SELECT COUNT(*) FROM messages WHERE key = ?", (f"c{CH1}",)).fetchone()[0] > 0
        r = double.reply_to(double.command(CH1, "reset"))
        assert db.execute("SELECT COUNT(*) FROM messages WHERE key = ?", (f"c{CH1}",)).fetchone()[0] == 0
    finally:
        b.stop()
    assert TOKEN not in b.text()


def test_trim_told_once(double, tmp_path, model):
    """History past the context is trimmed from the oldest turns, the system
    prompt kept, and the user told once."""
    b = Bot(double, tmp_path, model, pk={"max_new_tokens": 40, "temperature": 0.8}, discord_cfg={})
    cfg = json.loads(b.cfg.read_text())
    cfg["context_length"] = 256
    b.cfg.write_text(json.dumps(cfg))
    try:
        b.start()
        for i in range(8):
            double.say(CH1, f"Turn {i}: tell me something about the sea and the sky.", mention=True)
            double.wait(lambda d: len(b.turns()) > i, 60, f"turn {i}")
        settle(double, 1.5)
        notes = [m for m in replies(double, CH1) if "oldest messages are left out" in m]
        assert len(notes) == 1, replies(double, CH1)
        assert all(int(t["prompt"]) + int(t["generated"]) <= 256 for t in b.turns())
        # trimmed with room to spare: the next turns reuse the cache again
        assert int(b.turns()[-1]["reused"]) > 0.5 * int(b.turns()[-1]["prompt"]), b.turns()
        db = sqlite3.connect(str(b.state / "lyra" / "discord" / "state.db"))
        first, told = db.execute("SELECT first_id, trim_told FROM conversations WHERE key = ?",
                                 (f"c{CH1}",)).fetchone()
        assert first > 1 and told == 1
        assert db.execute("SELECT COUNT(*) FROM messages WHERE key = ?", (f"c{CH1}",)).fetchone()[0] == 16
    finally:
        b.stop()


def test_channels_at_once_resume(double, tmp_path, model):
    """Three channels mentioned at once are answered concurrently (one
    batched step for the three replies: the engine's counters; each
    channel's reply streamed, its first message posted before any reply
    ends), each reply the same as that conversation answered alone (another
    bot, one conversation at a time); after a SIGKILL and a restart each
    channel comes back from its session file without evaluating its
    history again (the engine's evaluated-token counter)."""
    chans = (CH1, CH2, CH3)
    users = [(40 + i, f"w{i}") for i in range(3)]
    pk = {"max_new_tokens": 1200}
    (tmp_path / "a").mkdir()
    b = Bot(double, tmp_path / "a", model, pk=pk, discord_cfg={"parallel": 3})
    try:
        b.start()
        assert "3 conversations at once" in b.text()
        for i, ch in enumerate(chans):
            double.say(ch, f"Tell me a long story number {i}.", user=users[i], mention=True)
        double.wait(lambda d: len(b.turns()) >= 3, 120, "three replies")
        settle(double)
        turns = b.turns()
        assert {t["key"] for t in turns} == {f"c{c}" for c in chans}
        assert int(turns[-1]["max_batch"]) == 3 and int(turns[-1]["batched_steps"]) > 100, turns
        assert all(int(t["generated"]) > 500 for t in turns), turns
        # streamed side by side: every channel's first message before any channel's last write
        firsts = [min(e["t"] for e in writes(double, c)) for c in chans]
        lasts = [max(e["t"] for e in writes(double, c)) for c in chans]
        assert max(firsts) < min(lasts), (firsts, lasts)
        together = {c: replies(double, c) for c in chans}
        assert all("".join(v) for v in together.values())
        # the same conversations answered alone, one at a time, by another bot
        d2 = DiscordDouble(edit_429_every=2, retry_after=0.3)
        (tmp_path / "b").mkdir()
        b2 = Bot(d2, tmp_path / "b", model, pk=pk, discord_cfg={"parallel": 1})
        try:
            b2.start()
            for i, ch in enumerate(chans):
                d2.say(ch, f"Tell me a long story number {i}.", user=users[i], mention=True)
                d2.wait(lambda d: len(b2.turns()) > i, 120, f"reply {i} alone")
            settle(d2)
            assert all(int(t["max_batch"]) == 1 for t in b2.turns())
            assert {c: replies(d2, c) for c in chans} == together
        finally:
            b2.stop()
            d2.close()
        # killed and restarted: every channel resumes from its session file
        b.kill()
        b.start()
        for i, ch in enumerate(chans):
            assert "max tokens 24" in double.reply_to(double.command(ch, "settings", {"max_tokens": 24}))["content"]
        for i, ch in enumerate(chans):
            double.say(ch, "And then?", user=users[i], mention=True)
        double.wait(lambda d: len(b.turns()) >= 6, 120, "turns after the restart")
        after = b.turns()[3:]
        assert {t["key"] for t in after} == {f"c{c}" for c in chans}
        for t in after:
            assert t["from"] == "file", t
            assert int(t["reused"]) > 0.6 * int(t["prompt"]) and int(t["prompt"]) > 500, t
            assert int(t["evaluated"]) <= int(t["prompt"]) - int(t["reused"]) + int(t["generated"]), t
        # the engine evaluated nothing but these turns' new tokens since the restart
        assert max(int(t["n_evaluated"]) for t in after) == sum(int(t["evaluated"]) for t in after), after
    finally:
        b.stop()
    assert TOKEN not in b.text()


# ------------------------------------------------------------ the engine alone
class FakePipe:
    """Enough of a Pipeline for the engine: records the order of the turns."""

    def __init__(self):
        self.order = []
        self.gate = threading.Event()
        self.loaded = []
        self.blob = None
        self.n_evaluated = 0
        self.model_info = {"n_ctx": 4096}

    def tokenize(self, text, add_bos=True):
        return text.split()

    def chat(self, msgs, on_text=None, **kw):
        self.gate.wait(10)
        self.order.append(msgs[-1]["content"])
        on_text("ok")

        class G:
            text, prompt_tokens, reused_tokens, completion_tokens, finish_reason = "ok", 1, 0, 1, "stop"
        return G()

    def session_bytes(self):
        return b"x" * 100

    def restore_session(self, b):
        self.loaded.append("memory")

    def load_session(self, path):
        self.loaded.append("file")

    def save_session(self, path):
        open(path, "wb").write(b"x" * 100)

    def reset(self):
        self.loaded.append("new")


def test_engine_round_robin_and_kv_budget(tmp_path):
    from lyra.discord.engine import Engine, Turn
    from lyra.discord.store import Store
    pipe = FakePipe()
    store = Store(str(tmp_path / "s.db"))
    eng = Engine(pipe, store, str(tmp_path), kv_budget=250, default_system="sys", defaults={})
    eng.has_sessions = True
    done = []
    cv = threading.Condition()

    def fin(r):
        with cv:
            done.append(r)
            cv.notify_all()

    def turn(key, text):
        eng.submit(Turn(key, text, lambda p: None, fin))

    def wait(n):
        with cv:
            assert cv.wait_for(lambda: len(done) >= n, 10)

    turn("A", "a1")
    time.sleep(0.2)  # the engine took a1 and waits on the gate
    for key, text in (("A", "a2"), ("A", "a3"), ("B", "b1"), ("C", "c1")):
        turn(key, text)
    pipe.gate.set()
    wait(5)
    assert pipe.order == ["a1", "a2", "b1", "c1", "a3"]  # round-robin between conversations
    # kv_budget 250 holds two 100-byte sessions: A went out of memory (its file stays)
    assert list(eng._mem) == ["B", "C"] and eng.mem_bytes == 200
    pipe.loaded.clear()
    turn("B", "b2")
    turn("A", "a4")
    turn("D", "d1")
    turn("C", "c2")
    wait(9)
    assert pipe.loaded == ["memory", "memory", "new", "file"]
    eng.forget("A")
    assert not os.path.exists(eng.session_path("A")) and "A" not in eng._mem
    eng.close()
    store.close()


def test_config_discord_section(tmp_path, model):
    import lyra
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model_id": model, "discord": {"channels": ["1"], "anything": True}}))
    with lyra.safe_load_pipeline(config_path=str(cfg)) as p:
        assert p.model_info["n_vocab"] > 0
    cfg.write_text(json.dumps({"model_id": model, "discord": ["1"]}))
    with pytest.raises(lyra.ConfigError, match="discord: expected an object"):
        lyra.safe_load_pipeline(config_path=str(cfg))


def test_concurrent_engine_fairness(tmp_path, model):
    """ConcurrentEngine: a long reply in one conversation does not hold a
    short one in another back, and a conversation has at most one reply
    running (its second message waits for its first reply)."""
    import lyra
    from lyra.discord.engine import ConcurrentEngine, Turn
    from lyra.discord.store import Store
    if not lyra.engine.AVAILABLE:
        pytest.skip("a liblyra without the engine API")
    pipe = lyra.safe_load_pipeline(model, pipeline_kwargs={"max_new_tokens": 600, "temperature": 0.0})
    store = Store(str(tmp_path / "s.db"))
    eng = ConcurrentEngine(pipe, store, str(tmp_path), kv_budget=10 ** 7, default_system=None,
                           defaults={"max_new_tokens": 600}, parallel=2)
    order = []
    cv = threading.Condition()

    a_started = threading.Event()

    def turn(key, text, on_text=lambda p: None):
        def fin(r):
            with cv:
                order.append((key, text, r if isinstance(r, BaseException) else r["generation"]))
                cv.notify_all()
        eng.submit(Turn(key, text, on_text, fin))

    try:
        store.update("B", max_tokens=8)
        turn("A", "Tell me a very long story.", lambda p: a_started.set())
        turn("A", "And then?")
        # B arrives while A's long reply is being written (not after a fixed
        # sleep: on a fast or a loaded machine A could be done or not begun)
        assert a_started.wait(120)
        turn("B", "Hi.")
        with cv:
            assert cv.wait_for(lambda: len(order) >= 3, 120)
        assert [(k, t) for k, t, _ in order] == [("B", "Hi."), ("A", "Tell me a very long story."),
                                                 ("A", "And then?")], order
        assert all(not isinstance(g, BaseException) for _, _, g in order), order
        # its slot kept the conversation (up to where the reply's text tokenizes otherwise)
        assert order[2][2].slot == order[1][2].slot and order[2][2].cached_tokens > 100, order
    finally:
        eng.close()
        store.close()
        pipe.close()
