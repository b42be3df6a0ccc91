#!/usr/bin/env python3
"""render_jinja.py: the reference renderings of lyra's Jinja snippets
(tests/data/jinja/snippets.json: [{"t": TEMPLATE, "v": VARIABLES}, ...]),
made with jinja2 in Hugging Face's environment (render_chat.environment:
trim_blocks, lstrip_blocks, loopcontrols, tojson, raise_exception,
strftime_now at the fixed time NOW, in UTC), into snippets.expected.json:
[{"out": TEXT} or {"error": MESSAGE}, ...] in the same order.
tests/unit/test_jinja.c renders every snippet with src/jinja/ and compares.

  render_jinja.py --write DIR   regenerate DIR/snippets.expected.json
  render_jinja.py --check DIR   exit 1 if the committed file differs

Needs jinja2; exits 77 (skip) without it.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import jinja2
    from render_chat import environment
except ImportError:
    print("SKIPPED: jinja2 is not installed (pip install jinja2)")
    sys.exit(77)

NOW = 1721995200  # 2024-07-26 12:00 UTC (test_jinja.c uses the same)


def expected(d):
    with open(os.path.join(d, "snippets.json"), encoding="utf-8") as f:
        snippets = json.load(f)
    env = environment(NOW)
    out = []
    for s in snippets:
        try:
            out.append({"out": env.from_string(s["t"]).render(**s["v"])})
        except (jinja2.exceptions.TemplateError, TypeError, ValueError, ArithmeticError) as e:
            out.append({"error": str(e)})
    return "[\n" + ",\n".join(json.dumps(o, ensure_ascii=False) for o in out) + "\n]\n"


def main(argv):
    if len(argv) != 3 or argv[1] not in ("--write", "--check"):
        print(__doc__)
        return 2
    path = os.path.join(argv[2], "snippets.expected.json")
    text = expected(argv[2])
    if argv[1] == "--write":
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        return 0
    try:
        with open(path, encoding="utf-8", newline="") as f:
            same = f.read() == text
    except OSError:
        same = False
    if not same:
        print("differs from Jinja: " + path)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
