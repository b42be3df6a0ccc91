"""discord_double: a local stand-in for Discord on loopback, for the bot's
tests (python/tests/test_discord.py). An aiohttp server with the REST
endpoints the bot uses (gateway/bot, users/@me, oauth2/applications/@me,
channel messages post/edit, typing, application command registration,
interaction callbacks) and the gateway websocket (hello, heartbeat and its
ack, identify -> READY, resume -> RESUMED, MESSAGE_CREATE and
INTERACTION_CREATE dispatches, op 7 reconnect on request), answering 429
with retry_after on every Nth message edit when asked. It runs its own event
loop in a thread; tests drive it with plain method calls and read what the
bot did from `events` (each with its monotonic time).

The bot reaches it through LYRA_DISCORD_API (discord.http.Route.BASE); the
gateway's address comes from GET /gateway/bot, as for any sharded client.
"""
import asyncio
import datetime
import itertools
import json
import threading
import time

from aiohttp import WSMsgType, web

API = "/api/v10"
BOT_ID = 900000000000000001
APP_ID = 900000000000000002
GUILD_ID = 900000000000000003
TOKEN = "test-token.double.secret"


def _user(uid, name, bot=False):
    return {"id": str(uid), "username": name, "discriminator": "0", "global_name": name, "avatar": None,
            "bot": bot, "public_flags": 0, "flags": 0}


def _json(obj, status=200, headers=None):
    """A JSON response with Discord's exact content type (discord.py compares
    it as a whole: no charset parameter)."""
    return web.Response(body=json.dumps(obj).encode(), status=status,
                        headers={"Content-Type": "application/json", **(headers or {})})


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


class DiscordDouble:
    def __init__(self, edit_429_every=0, retry_after=0.2):
        self.edit_429_every = edit_429_every
        self.retry_after = retry_after
        self.events = []              # dicts: {"kind", "t", ...}
        self.messages = {}            # message id -> current message (the bot's)
        self.commands = []            # the registered application commands
        self.identifies = 0
        self.resumes = 0
        self._cond = threading.Condition()
        self._ids = itertools.count(1000000000000000000)
        self._edits = 0
        self._seq = 0
        self._ws = None
        self._session = "double-session"
        self.loop = asyncio.new_event_loop()
        self.port = None
        self._thread = threading.Thread(target=self._run, name="discord-double", daemon=True)
        started = threading.Event()
        self._started = started
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("discord double: did not start")

    # ------------------------------------------------------------ plumbing
    @property
    def api(self):
        return f"http://127.0.0.1:{self.port}{API}"

    def _run(self):
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        r = app.router
        r.add_get(API + "/gateway/bot", self._gateway_bot)
        r.add_get(API + "/gateway", self._gateway_bot)
        r.add_get(API + "/users/@me", self._me)
        r.add_get(API + "/oauth2/applications/@me", self._app)
        r.add_post(API + "/channels/{cid}/messages", self._post_message)
        r.add_patch(API + "/channels/{cid}/messages/{mid}", self._edit_message)
        r.add_post(API + "/channels/{cid}/typing", self._typing)
        r.add_put(API + "/applications/{aid}/commands", self._put_commands)
        r.add_get(API + "/applications/{aid}/commands", self._get_commands)
        r.add_post(API + "/interactions/{iid}/{tok}/callback", self._callback)
        r.add_get("/gateway", self._gateway)
        self._runner = web.AppRunner(app)
        self.loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._started.set()
        self.loop.run_forever()

    def close(self):
        async def stop():
            if self._ws is not None:
                await self._ws.close()
            await self._runner.cleanup()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def _record(self, kind, **kw):
        with self._cond:
            ev = {"kind": kind, "t": time.monotonic(), **kw}
            self.events.append(ev)
            self._cond.notify_all()
            return ev

    def wait(self, pred, timeout=60.0, what="an event"):
        """Wait until pred(self) is true (checked on every event)."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                v = pred(self)
                if v:
                    return v
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"discord double: no {what} within {timeout}s; events: "
                                       f"{[e['kind'] for e in self.events[-20:]]}")
                self._cond.wait(min(left, 0.2))

    def of(self, kind, **match):
        with self._cond:
            return [e for e in self.events if e["kind"] == kind and all(e.get(k) == v for k, v in match.items())]

    def _auth(self, request):
        if request.headers.get("Authorization") != "Bot " + TOKEN:
            raise web.HTTPUnauthorized(text=json.dumps({"message": "401: Unauthorized", "code": 0}),
                                       content_type="application/json")

    # ---------------------------------------------------------------- REST
    async def _gateway_bot(self, request):
        return _json({"url": f"ws://127.0.0.1:{self.port}/gateway", "shards": 1,
                                  "session_start_limit": {"total": 1000, "remaining": 1000,
                                                          "reset_after": 0, "max_concurrency": 1}})

    async def _me(self, request):
        self._auth(request)
        return _json(_user(BOT_ID, "lyra-test", bot=True))

    async def _app(self, request):
        self._auth(request)
        return _json({"id": str(APP_ID), "name": "lyra-test", "description": "", "icon": None,
                                  "bot_public": False, "bot_require_code_grant": False,
                                  "verify_key": "00", "owner": _user(1, "owner"), "flags": 0,
                                  "rpc_origins": [], "team": None})

    def _message(self, cid, content, author, mid=None, guild=True, mentions=()):
        m = {"id": str(mid or next(self._ids)), "channel_id": str(cid), "author": author, "content": content,
             "timestamp": _now(), "edited_timestamp": None, "tts": False, "mention_everyone": False,
             "mentions": list(mentions), "mention_roles": [], "attachments": [], "embeds": [], "pinned": False,
             "type": 0, "flags": 0, "components": []}
        if guild:
            m["guild_id"] = str(GUILD_ID)
        return m

    async def _post_message(self, request):
        self._auth(request)
        cid = request.match_info["cid"]
        body = await request.json()
        m = self._message(cid, body.get("content", ""), _user(BOT_ID, "lyra-test", bot=True))
        self.messages[m["id"]] = m
        self._record("post", channel=cid, id=m["id"], content=m["content"])
        return _json(m)

    async def _edit_message(self, request):
        self._auth(request)
        cid, mid = request.match_info["cid"], request.match_info["mid"]
        self._edits += 1
        if self.edit_429_every and (self._edits - 1) % self.edit_429_every == 0:  # the 1st, then every Nth
            self._record("429", channel=cid, id=mid)
            return _json({"message": "You are being rate limited.", "retry_after": self.retry_after,
                                      "global": False, "code": 0}, status=429,
                                     headers={"Via": "1.1 double", "Retry-After": str(self.retry_after),
                                              "X-RateLimit-Scope": "user"})
        body = await request.json()
        m = self.messages.get(mid)
        if m is None:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        m["content"] = body.get("content", m["content"])
        m["edited_timestamp"] = _now()
        self._record("edit", channel=cid, id=mid, content=m["content"])
        return _json(m)

    async def _typing(self, request):
        self._auth(request)
        self._record("typing", channel=request.match_info["cid"])
        return web.Response(status=204)

    async def _put_commands(self, request):
        self._auth(request)
        cmds = await request.json()
        out = []
        for c in cmds:
            out.append({**c, "id": str(next(self._ids)), "application_id": str(APP_ID), "version": "1",
                        "type": c.get("type", 1), "default_member_permissions": None, "dm_permission": True,
                        "nsfw": False})
        self.commands = out
        self._record("commands", names=sorted(c["name"] for c in out))
        return _json(out)

    async def _get_commands(self, request):
        return _json(self.commands)

    async def _callback(self, request):
        body = await request.json()
        iid = request.match_info["iid"]
        data = body.get("data") or {}
        self._record("callback", id=iid, type=body.get("type"), content=data.get("content"),
                     ephemeral=bool((data.get("flags") or 0) & 64))
        mid = str(next(self._ids))
        return _json({"interaction": {"id": iid, "type": 2, "response_message_id": mid,
                                                  "response_message_loading": False,
                                                  "response_message_ephemeral": False},
                                  "resource": {"type": body.get("type")}})

    # ------------------------------------------------------------- gateway
    async def _gateway(self, request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        self._record("connect")
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 30000}, "s": None, "t": None}))
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            p = json.loads(msg.data)
            op = p.get("op")
            if op == 1:
                await ws.send_str(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
            elif op == 2:
                if p["d"].get("token") != TOKEN:
                    await ws.close(code=4004, message=b"Authentication failed.")
                    break
                self.identifies += 1
                self._record("identify", intents=p["d"].get("intents"))
                await self._dispatch("READY", {
                    "v": 10, "user": _user(BOT_ID, "lyra-test", bot=True), "guilds": [],
                    "session_id": self._session, "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway",
                    "shard": [0, 1], "application": {"id": str(APP_ID), "flags": 0}, "private_channels": [],
                    "relationships": [], "presences": []})
            elif op == 6:
                self.resumes += 1
                self._record("resume", seq=p["d"].get("seq"))
                await self._dispatch("RESUMED", {})
        if self._ws is ws:
            self._ws = None
        return ws

    async def _dispatch(self, t, d):
        self._seq += 1
        await self._ws.send_str(json.dumps({"op": 0, "t": t, "s": self._seq, "d": d}))

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def wait_ready(self, timeout=60.0):
        """The bot identified and registered its commands (it is ready)."""
        n = len(self.of("commands"))
        self.wait(lambda d: d._ws is not None and len(d.of("commands")) > n - 1 and d.identifies, timeout,
                  "bot ready")

    # ------------------------------------------------------------ driving
    def say(self, channel, content, user=(11, "alice"), dm=False, mention=False):
        """A user's message in a channel (a DM when dm): MESSAGE_CREATE."""
        author = _user(user[0], user[1])
        mentions = [_user(BOT_ID, "lyra-test", bot=True)] if mention else []
        if mention:
            content = f"<@{BOT_ID}> {content}"
        m = self._message(channel, content, author, guild=not dm, mentions=mentions)
        if not dm:
            m["member"] = {"roles": [], "joined_at": _now(), "deaf": False, "mute": False, "flags": 0}
        self._call(self._dispatch("MESSAGE_CREATE", m))
        return m

    def command(self, channel, name, options=None, user=(11, "alice"), dm=False):
        """A slash command: INTERACTION_CREATE; returns the interaction id."""
        iid = str(next(self._ids))
        d = {"id": iid, "application_id": str(APP_ID), "type": 2, "token": "itok" + iid, "version": 1,
             "channel_id": str(channel), "channel": (
                 {"id": str(channel), "type": 1, "recipients": [_user(user[0], user[1])], "last_message_id": None}
                 if dm else
                 {"id": str(channel), "type": 0, "guild_id": str(GUILD_ID), "name": f"chan-{channel}",
                  "position": 0, "permission_overwrites": [], "nsfw": False, "parent_id": None, "topic": None,
                  "last_message_id": None, "rate_limit_per_user": 0, "flags": 0}),
             "data": {"id": "1", "name": name, "type": 1,
                      "options": [{"name": k, "type": 10 if isinstance(v, float) else 4 if isinstance(v, int)
                                   else 3, "value": v} for k, v in (options or {}).items()]},
             "app_permissions": "0", "locale": "en-US", "entitlements": [], "attachment_size_limit": 8388608,
             "authorizing_integration_owners": {}, "context": 1 if dm else 0}
        if dm:
            d["user"] = _user(user[0], user[1])
        else:
            d["guild_id"] = str(GUILD_ID)
            d["guild_locale"] = "en-US"
            d["member"] = {"user": _user(user[0], user[1]), "roles": [], "joined_at": _now(), "deaf": False,
                           "mute": False, "flags": 0, "permissions": "0"}
        self._call(self._dispatch("INTERACTION_CREATE", d))
        return iid

    def reconnect(self):
        """Ask the bot to reconnect (op 7): it resumes the session."""
        async def go():
            await self._ws.send_str(json.dumps({"op": 7, "d": None, "s": None, "t": None}))
        self._call(go())

    def reply_to(self, iid, timeout=60.0):
        return self.wait(lambda d: (d.of("callback", id=iid) or [None])[0], timeout, f"reply to {iid}")
