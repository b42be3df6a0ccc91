"""bot: the Discord client (discord.py) over the engine. Answers when
mentioned, in DMs and in the config's channels; streams each reply by
editing its message (at most once per edit_interval, 1 s by default) and
splits it at 2,000 characters (split.py); shows the typing indicator while
it generates; per-user rate limit; slash commands /reset, /system,
/settings, /info, /forget. One conversation per channel, per user in DMs."""
import asyncio
import collections
import logging
import os
import time
from typing import Any, Dict, Optional

import discord
from discord import app_commands

from .engine import Engine, Turn
from .split import split_message

log = logging.getLogger("lyra.discord")

RATE_NOTE = ("Sorry {name}, you are sending messages faster than I can answer "
             "(at most {n} every {s:g} s). Please wait a little and try again.")


def conversation_key(channel_id: int, user_id: int, dm: bool) -> str:
    return f"u{user_id}" if dm else f"c{channel_id}"


class RateLimiter:
    """At most n messages per user within `seconds` (a sliding window)."""

    def __init__(self, n: int, seconds: float) -> None:
        self.n = n
        self.seconds = seconds
        self._seen: Dict[int, collections.deque] = collections.defaultdict(collections.deque)
        self._told: Dict[int, float] = {}

    def allow(self, user: int, now: Optional[float] = None) -> bool:
        if self.n <= 0:
            return True
        now = time.monotonic() if now is None else now
        q = self._seen[user]
        while q and now - q[0] >= self.seconds:
            q.popleft()
        if len(q) >= self.n:
            return False
        q.append(now)
        return True

    def tell(self, user: int, now: Optional[float] = None) -> bool:
        """Whether to tell the user (once per window)."""
        now = time.monotonic() if now is None else now
        if now - self._told.get(user, -1e9) < self.seconds:
            return False
        self._told[user] = now
        return True


class Streamer:
    """A reply shown as it is generated: the first message is posted with
    the first text, then edited; past 2,000 characters the next message is
    posted. No two writes to the channel are closer than `interval`."""

    def __init__(self, channel, interval: float, reference=None) -> None:
        self.channel = channel
        self.interval = interval
        self.reference = reference
        self.text = ""
        self.sent: list = []       # [discord.Message, content shown]
        self.last = 0.0
        self.changed = asyncio.Event()
        self.finished_ok = False  # the turn ended without an error

    def add(self, piece: str) -> None:
        self.text += piece
        self.changed.set()

    async def _flush(self, final: bool) -> None:
        chunks = split_message(self.text) if self.text.strip() else []
        if final and not chunks and not self.sent and self.finished_ok:
            chunks = ["*(the model's reply was empty)*"]
        for i, c in enumerate(chunks):
            if i < len(self.sent) and self.sent[i][1] == c:
                continue
            wait = self.last + self.interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if i < len(self.sent):
                await self.sent[i][0].edit(content=c)
                self.sent[i][1] = c
            else:
                kw = {"reference": self.reference, "mention_author": False} if (i == 0 and self.reference) else {}
                m = await self.channel.send(c, **kw)
                self.sent.append([m, c])
            self.last = time.monotonic()
            if not final:
                return  # one write per tick

    async def run(self, done: asyncio.Future) -> None:
        while not done.done():
            self.changed.clear()
            waiter = asyncio.ensure_future(self.changed.wait())
            await asyncio.wait([waiter, done], timeout=self.interval, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if done.done():
                break
            wait = self.last + self.interval - time.monotonic()
            if wait > 0:
                await asyncio.wait([done], timeout=wait)
                if done.done():
                    break
            if self.text.strip():
                await self._flush(final=False)
        self.finished_ok = not isinstance(done.result(), BaseException)
        await self._flush(final=True)


class LyraBot(discord.AutoShardedClient):
    def __init__(self, engine: Engine, settings: Dict[str, Any], info: Dict[str, Any]) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        intents.dm_messages = True
        super().__init__(intents=intents, allowed_mentions=discord.AllowedMentions.none())
        self.engine = engine
        self.store = engine.store
        self.channels = {int(c) for c in settings.get("channels", [])}
        self.interval = float(settings.get("edit_interval", 1.0))
        self.limiter = RateLimiter(int(settings.get("rate_limit_messages", 6)),
                                   float(settings.get("rate_limit_seconds", 60)))
        self.info = info
        self.tree = app_commands.CommandTree(self)
        self._add_commands()

    async def setup_hook(self) -> None:
        await self.tree.sync()
        log.info("slash commands registered")

    async def on_ready(self) -> None:
        log.info("ready as %s (%d conversations on record)", self.user, len(self.store.keys()))

    # ------------------------------------------------------------ messages
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.user is None or message.author.id == self.user.id:
            return
        dm = isinstance(message.channel, discord.DMChannel)
        mentioned = self.user.mentioned_in(message) and not message.mention_everyone
        if not (dm or mentioned or message.channel.id in self.channels):
            return
        content = message.content
        for form in (f"<@{self.user.id}>", f"<@!{self.user.id}>"):
            content = content.replace(form, "")
        content = content.strip()
        if not content:
            return
        if not dm:
            content = f"{message.author.display_name}: {content}"
        if not self.limiter.allow(message.author.id):
            if self.limiter.tell(message.author.id):
                await message.channel.send(RATE_NOTE.format(name=message.author.display_name,
                                                            n=self.limiter.n, s=self.limiter.seconds))
            return
        key = conversation_key(message.channel.id, message.author.id, dm)
        await self.answer(message.channel, key, content, reference=None if dm else message)

    async def answer(self, channel, key: str, content: str, reference=None) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()
        streamer = Streamer(channel, self.interval, reference)

        def on_text(piece: str) -> None:
            loop.call_soon_threadsafe(streamer.add, piece)

        def finish(result: Any) -> None:
            def settle():
                if not done.done():
                    done.set_result(result)
            loop.call_soon_threadsafe(settle)

        self.engine.submit(Turn(key, content, on_text, finish))
        typing = asyncio.ensure_future(self._typing(channel, done))
        try:
            await streamer.run(done)
        except discord.HTTPException as e:
            log.warning("reply in %s: %s", key, e)
            await done  # the engine finishes the turn all the same
        finally:
            typing.cancel()
        result = done.result() if done.done() else None
        if isinstance(result, BaseException):
            log.warning("reply in %s: %s", key, result)
            if not streamer.sent and "was reset" not in str(result):
                await channel.send("Sorry, I could not answer that (the model failed; see the bot's log).")

    @staticmethod
    async def _typing(channel, done: asyncio.Future) -> None:
        """The typing indicator until the reply is done (Discord shows it
        for 10 s, or until the bot posts: renewed every 8 s)."""
        while not done.done():
            try:
                await channel.typing()
            except discord.HTTPException as e:
                log.debug("typing: %s", e)
                return
            await asyncio.wait([done], timeout=8)

    # ------------------------------------------------------------ commands
    def _key(self, interaction: discord.Interaction) -> str:
        dm = interaction.guild_id is None
        return conversation_key(interaction.channel_id or 0, interaction.user.id, dm)

    def _add_commands(self) -> None:
        tree = self.tree

        @tree.command(name="reset", description="Start this conversation over (settings are kept)")
        async def reset(interaction: discord.Interaction) -> None:
            key = self._key(interaction)
            self.engine.forget(key)
            self.store.clear(key)
            await interaction.response.send_message("The conversation starts over.")

        @tree.command(name="system", description="Set this conversation's system prompt (empty: the default)")
        @app_commands.describe(text="the system prompt")
        async def system(interaction: discord.Interaction, text: Optional[str] = None) -> None:
            key = self._key(interaction)
            self.store.update(key, system=text if text else None)
            await interaction.response.send_message(
                f"System prompt set to: {text}" if text else "System prompt back to the default.")

        @tree.command(name="settings", description="Show or change temperature and max tokens")
        @app_commands.describe(temperature="sampling temperature (0: greedy)",
                               max_tokens="longest reply in tokens (-1: until the model stops)")
        async def settings(interaction: discord.Interaction, temperature: Optional[float] = None,
                           max_tokens: Optional[int] = None) -> None:
            key = self._key(interaction)
            if temperature is not None and not 0.0 <= temperature <= 5.0:
                await interaction.response.send_message("temperature: between 0 and 5, please.", ephemeral=True)
                return
            if max_tokens is not None and max_tokens < -1:
                await interaction.response.send_message("max_tokens: -1 or more, please.", ephemeral=True)
                return
            upd = {}
            if temperature is not None:
                upd["temperature"] = temperature
            if max_tokens is not None:
                upd["max_tokens"] = max_tokens
            if upd:
                self.store.update(key, **upd)
            c = self.store.conversation(key)
            d = self.engine.defaults
            t = c["temperature"] if c["temperature"] is not None else d.get("temperature")
            m = c["max_tokens"] if c["max_tokens"] is not None else d.get("max_new_tokens")
            await interaction.response.send_message(f"temperature {t}, max tokens {m}")

        @tree.command(name="info", description="The model, where it runs and the fallback steps")
        async def info(interaction: discord.Interaction) -> None:
            key = self._key(interaction)
            await interaction.response.send_message(self.info_text(key)[:2000])

        @tree.command(name="forget", description="Delete everything kept about this conversation")
        async def forget(interaction: discord.Interaction) -> None:
            key = self._key(interaction)
            self.engine.forget(key)
            self.store.forget(key)
            await interaction.response.send_message(
                "Everything kept about this conversation (its messages, settings and cache) is deleted.",
                ephemeral=True)

    def info_text(self, key: str) -> str:
        e = self.engine
        i = self.info
        n_eval = e.n_evaluated
        lines = [f"model: {i['model']} ({i['arch']}, {i['n_params']:,} parameters), context {e.n_ctx} tokens",
                 f"device map: {i['devices']}",
                 f"fallback steps: {i['fallback']}",
                 f"n_evaluated: {n_eval}",
                 f"sessions in memory: {len(e._mem)} ({e.mem_bytes} of {e.kv_budget} bytes)",
                 f"conversations at once: {getattr(e, 'parallel', 1)}",
                 f"this conversation: {self.store.count(key)} messages"]
        return "\n".join(lines)
