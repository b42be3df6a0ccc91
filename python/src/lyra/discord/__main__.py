"""python -m lyra.discord --model-config FILE: the Discord bot
(docs/discord.md). The token comes from $DISCORD_TOKEN only and is never
logged; the settings from FILE's "discord" object; the model, its placement
and the generation defaults from the rest of FILE (lyra's config)."""
import argparse
import json
import logging
import os
import re
import sys
from typing import Any, Dict

KEYS = {
    "channels": "channel ids where the bot answers every message (a list)",
    "kv_budget": "bytes of KV cache kept in memory for recent conversations (an integer or \"256MB\")",
    "state_dir": "where the database and session files go (default $XDG_STATE_HOME/lyra/discord)",
    "edit_interval": "seconds between two edits of a streamed reply (1 or more)",
    "rate_limit_messages": "messages a user may send within rate_limit_seconds (0: no limit)",
    "rate_limit_seconds": "the rate limit's window in seconds",
    "parallel": "conversations answered at once (slots of the engine, 1..256; default 4)",
}
_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3, "kib": 1024, "mib": 1024 ** 2,
          "gib": 1024 ** 3}


def _fail(msg: str) -> "NoReturn":  # noqa: F821
    print(f"lyra.discord: {msg}", file=sys.stderr)
    sys.exit(2)


def parse_size(v: Any, where: str) -> int:
    if isinstance(v, bool):
        _fail(f"{where}: expected a size, got {v!r}")
    if isinstance(v, int) and v >= 0:
        return v
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", v) if isinstance(v, str) else None
    if not m or m.group(2).lower() not in _UNITS:
        _fail(f"{where}: expected a size such as 268435456 or \"256MB\", got {v!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def read_settings(path: str) -> Dict[str, Any]:
    """FILE's "discord" object, checked."""
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        _fail(f"{path}: {e}")
    d = cfg.get("discord", {}) if isinstance(cfg, dict) else {}
    if not isinstance(d, dict):
        _fail(f"{path}: discord: expected an object")
    for k in d:
        if k not in KEYS:
            _fail(f"{path}: discord.{k}: unknown key (the keys: {', '.join(KEYS)})")
    out: Dict[str, Any] = {}
    ch = d.get("channels", [])
    if not isinstance(ch, list) or not all(isinstance(c, (int, str)) and str(c).isdigit() for c in ch):
        _fail(f"{path}: discord.channels: expected a list of channel ids")
    out["channels"] = [int(c) for c in ch]
    out["kv_budget"] = parse_size(d.get("kv_budget", 256 * 1024 ** 2), f"{path}: discord.kv_budget")
    for k, lo, default in (("edit_interval", 1.0, 1.0), ("rate_limit_seconds", 0.001, 60.0)):
        v = d.get(k, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < lo:
            _fail(f"{path}: discord.{k}: expected a number >= {lo:g}, got {v!r}")
        out[k] = float(v)
    v = d.get("rate_limit_messages", 6)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        _fail(f"{path}: discord.rate_limit_messages: expected an integer >= 0, got {v!r}")
    out["rate_limit_messages"] = v
    v = d.get("parallel", 4)
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 256:
        _fail(f"{path}: discord.parallel: expected an integer from 1 to 256, got {v!r}")
    out["parallel"] = v
    sd = d.get("state_dir")
    if sd is not None and not isinstance(sd, str):
        _fail(f"{path}: discord.state_dir: expected a path")
    if sd is None:
        xdg = os.environ.get("XDG_STATE_HOME", "")
        base = xdg if xdg.startswith("/") else os.path.join(os.path.expanduser("~"), ".local", "state")
        sd = os.path.join(base, "lyra", "discord")
    else:
        sd = os.path.join(os.path.dirname(os.path.abspath(path)), os.path.expanduser(sd))
    out["state_dir"] = sd
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lyra.discord",
                                 description="lyra's Discord bot (docs/discord.md); the token is read "
                                             "from $DISCORD_TOKEN")
    ap.add_argument("--model-config", required=True, metavar="FILE",
                    help="lyra's JSON config (model, placement, system_prompt, pipeline_kwargs, discord)")
    ap.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = ap.parse_args(argv)
    token = os.environ.get("DISCORD_TOKEN", "").strip()
    if not token:
        _fail("DISCORD_TOKEN is not set: put the bot's token (Discord developer portal, your application, "
              "Bot, Reset Token) in the environment; see docs/discord.md")
    settings = read_settings(args.model_config)
    try:
        import discord  # noqa: F401
    except ImportError:
        _fail("discord.py is not installed: pip install \"lyra-llm[discord]\" (or pip install discord-py)")
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("discord").setLevel(logging.WARNING if args.log_level != "debug" else logging.INFO)

    import discord.http
    api = os.environ.get("LYRA_DISCORD_API")
    if api:  # another Discord API base (a proxy, or the tests' local double)
        discord.http.Route.BASE = api.rstrip("/")

    import lyra
    from .bot import LyraBot
    from ..engine import AVAILABLE as HAVE_ENGINE
    from .engine import ConcurrentEngine, Engine
    from .store import Store

    os.makedirs(os.path.join(settings["state_dir"], "sessions"), mode=0o700, exist_ok=True)
    os.chmod(settings["state_dir"], 0o700)  # transcripts: the owner's only
    try:
        pipe = lyra.safe_load_pipeline(config_path=args.model_config)
    except lyra.LyraError as e:
        _fail(str(e))
    cfg = pipe.config
    val = lambda k: (cfg.get(k) or {}).get("value")  # noqa: E731
    mi = pipe.model_info
    devices = sorted(set(pipe.device_map.values()))
    steps = pipe.fallback_history
    info = {"model": mi["name"] or os.path.basename(str(val("model_id"))), "arch": mi["arch"],
            "n_params": mi["n_params"], "devices": ", ".join(devices) + " | " + mi["map"],
            "fallback": "none" if not steps else "; ".join(
                f"{s['phase']}: {s['what']} {s['from']}->{s['to']} on {s['device']}" for s in steps)}
    store = Store(os.path.join(settings["state_dir"], "state.db"))
    eargs = (pipe, store, os.path.join(settings["state_dir"], "sessions"), settings["kv_budget"],
             val("system_prompt"), {"temperature": val("pipeline_kwargs.temperature"),
                                    "max_new_tokens": val("pipeline_kwargs.max_new_tokens")})
    try:
        engine = ConcurrentEngine(*eargs, parallel=settings["parallel"]) if HAVE_ENGINE else Engine(*eargs)
    except lyra.LyraError as e:
        _fail(str(e))
    logging.getLogger("lyra.discord").info(
        "model %s, state in %s, %d conversations on record, sessions %s, %s", info["model"], settings["state_dir"],
        len(store.keys()), "on" if engine.has_sessions else "off (liblyra without the session API)",
        f"{settings['parallel']} conversations at once" if HAVE_ENGINE
        else "one conversation at a time (liblyra without the engine API)")
    bot = LyraBot(engine, settings, info)
    try:
        bot.run(token, log_handler=None)
    except discord.LoginFailure:
        _fail("Discord refused the token (DISCORD_TOKEN): check it in the developer portal")
    finally:
        engine.close()
        store.close()
        pipe.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
