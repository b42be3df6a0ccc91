#!/usr/bin/env python3
"""render_chat.py: render chat templates with Jinja the way Hugging Face
transformers does (apply_chat_template: a sandboxed environment with
trim_blocks and lstrip_blocks, loopcontrols, raise_exception, tojson,
strftime_now; render(messages, tools=None, documents=None,
add_generation_prompt, bos_token, eos_token)), as the reference for lyra's
Jinja renderer (src/jinja/) and hand-written chat templates (src/gen/chat.c).

  render_chat.py TEMPLATE.jinja --bos B --eos E [--system S] USER [REPLY USER ...]
      print the prompt (add_generation_prompt=True) for one conversation
  render_chat.py --write DIR    regenerate DIR/expected/ from DIR/cases.json:
      TEMPLATE.CASE.txt the rendering, or TEMPLATE.CASE.error.txt the message
      of the exception the template raises (raise_exception)
  render_chat.py --check DIR    exit 1 if any committed expected file differs

A case's "add_generation_prompt" (default true) is passed as it is; its last
turn then has a reply. strftime_now shows cases.json's "now" (seconds since
the epoch) in UTC, so that the expected files do not depend on the day.

Needs jinja2 (pip install jinja2); exits 77 (skip) without it.
"""
import json
import os
import sys
from datetime import datetime, timezone

try:
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    print("SKIPPED: jinja2 is not installed (pip install jinja2)")
    sys.exit(77)


def environment(now=None):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    if now is None:
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    else:
        env.globals["strftime_now"] = lambda fmt: datetime.fromtimestamp(now, timezone.utc).strftime(fmt)
    return env


def messages_of(system, turns):
    msgs = []
    if system is not None:
        msgs.append({"role": "system", "content": system})
    for user, reply in turns:
        msgs.append({"role": "user", "content": user})
        if reply is not None:
            msgs.append({"role": "assistant", "content": reply})
    return msgs


def render(template, system, turns, bos, eos, add_generation_prompt=True, now=None):
    t = environment(now).from_string(template)
    return t.render(messages=messages_of(system, turns), tools=None, documents=None,
                    add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos)


def expected_files(d):
    """(path, text) for every template x case of DIR/cases.json."""
    with open(os.path.join(d, "cases.json"), encoding="utf-8") as f:
        spec = json.load(f)
    for t in spec["templates"]:
        with open(os.path.join(d, t["file"]), encoding="utf-8", newline="") as f:
            template = f.read()
        for c in spec["cases"]:
            stem = os.path.join(d, "expected", os.path.splitext(t["file"])[0] + "." + c["name"])
            try:
                text = render(template, c["system"], c["turns"], t["bos"], t["eos"],
                              c.get("add_generation_prompt", True), spec.get("now"))
                yield (stem + ".txt", text)
            except jinja2.exceptions.TemplateError as e:
                yield (stem + ".error.txt", str(e) + "\n")


def main(argv):
    if len(argv) == 3 and argv[1] in ("--write", "--check"):
        bad = 0
        for path, text in expected_files(argv[2]):
            if argv[1] == "--write":
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w", encoding="utf-8", newline="") as f:
                    f.write(text)
            else:
                try:
                    with open(path, encoding="utf-8", newline="") as f:
                        same = f.read() == text
                except OSError:
                    same = False
                if not same:
                    print("differs from Jinja: " + path)
                    bad += 1
        return 1 if bad else 0
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("template")
    ap.add_argument("--bos", default="")
    ap.add_argument("--eos", default="")
    ap.add_argument("--system", default=None)
    ap.add_argument("texts", nargs="+", help="USER [REPLY USER ...]")
    a = ap.parse_args(argv[1:])
    if len(a.texts) % 2 != 1:
        ap.error("give USER [REPLY USER ...] (an odd count)")
    turns = [(a.texts[i], a.texts[i + 1] if i + 1 < len(a.texts) else None)
             for i in range(0, len(a.texts), 2)]
    with open(a.template, encoding="utf-8", newline="") as f:
        sys.stdout.write(render(f.read(), a.system, turns, a.bos, a.eos))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
