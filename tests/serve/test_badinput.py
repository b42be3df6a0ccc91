"""test_badinput.py: malformed requests, each with its expected status and
error message (OpenAI's error shape), and connections that misbehave
(oversized bodies and headers, slowloris partial headers). The server must
keep serving after each."""
import http.client
import json
import socket
import time

import pytest

CHAT = "/v1/chat/completions"
COMP = "/v1/completions"
MSG = [{"role": "user", "content": "hi"}]


def post(server, path, body, headers=None, raw=False):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request("POST", path, body=body if raw else json.dumps(body), headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data, r


# (name, path, body (bytes: raw), status, param, words in the message)
CASES = [
    ("bad json", CHAT, b'{"messages": [', 400, None, "invalid JSON"),
    ("not an object", CHAT, b"[1, 2]", 400, None, "JSON object"),
    ("empty body", CHAT, b"", 400, None, "invalid JSON"),
    ("missing messages", CHAT, {"model": "stories260K"}, 400, "messages", "required"),
    ("messages not a list", CHAT, {"messages": "hi"}, 400, "messages", "array"),
    ("empty messages", CHAT, {"messages": []}, 400, "messages", "at least one"),
    ("message not object", CHAT, {"messages": ["hi"]}, 400, "messages[0]", "object"),
    ("bad role", CHAT, {"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role", "role"),
    ("content wrong type", CHAT, {"messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content",
     "string"),
    ("image part", CHAT, {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400,
     "messages[0].content", "text"),
    ("temperature string", CHAT, {"messages": MSG, "temperature": "hot"}, 400, "temperature", "number"),
    ("temperature huge", CHAT, {"messages": MSG, "temperature": 1e308}, 400, "temperature", "between"),
    ("number overflow", CHAT, b'{"messages": [{"role":"user","content":"x"}], "temperature": 1e999}', 400, None,
     "invalid JSON"),
    ("integer overflow", CHAT, b'{"messages": [{"role":"user","content":"x"}], "max_tokens": 99999999999999999999999}',
     400, None, "invalid JSON"),
    ("max_tokens huge", CHAT, {"messages": MSG, "max_tokens": 2 ** 40}, 400, "max_tokens", "between"),
    ("max_tokens negative", CHAT, {"messages": MSG, "max_tokens": -1}, 400, "max_tokens", "between"),
    ("max_tokens float", CHAT, {"messages": MSG, "max_tokens": 1.5}, 400, "max_tokens", "integer"),
    ("top_p range", CHAT, {"messages": MSG, "top_p": 1.5}, 400, "top_p", "between"),
    ("top_k negative", CHAT, {"messages": MSG, "top_k": -3}, 400, "top_k", "between"),
    ("penalty range", CHAT, {"messages": MSG, "frequency_penalty": 3}, 400, "frequency_penalty", "between"),
    ("n = 2", CHAT, {"messages": MSG, "n": 2}, 400, "n", "1"),
    ("stop type", CHAT, {"messages": MSG, "stop": 5}, 400, "stop", "string"),
    ("stop too many", CHAT, {"messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "at most"),
    ("seed type", CHAT, {"messages": MSG, "seed": "x"}, 400, "seed", "integer"),
    ("stream type", CHAT, {"messages": MSG, "stream": "yes"}, 400, "stream", "boolean"),
    ("top_logprobs without logprobs", CHAT, {"messages": MSG, "top_logprobs": 2}, 400, "top_logprobs", "logprobs"),
    ("top_logprobs range", CHAT, {"messages": MSG, "logprobs": True, "top_logprobs": 50}, 400, "top_logprobs",
     "between"),
    ("tools", CHAT, {"messages": MSG, "tools": [{"type": "function"}]}, 400, "tools", "not supported"),
    ("unknown model", CHAT, {"model": "gpt-4o", "messages": MSG}, 404, "model", "does not exist"),
    ("model type", CHAT, {"model": 3, "messages": MSG}, 400, "model", "string"),
    ("invalid utf-8", CHAT, b'{"messages": [{"role":"user","content":"\xff\xfe"}]}', 400, None, "UTF-8"),
    ("deep nesting", CHAT, b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, None, "nests deeper"),
    ("missing prompt", COMP, {"max_tokens": 3}, 400, "prompt", "required"),
    ("prompt type", COMP, {"prompt": {"a": 1}}, 400, "prompt", "string"),
    ("prompt token out of vocab", COMP, {"prompt": [1, 2, 99999999]}, 400, "prompt", "vocabulary"),
    ("prompt negative token", COMP, {"prompt": [1, -2]}, 400, "prompt", "token id"),
    ("echo", COMP, {"prompt": "x", "echo": True}, 400, "echo", "not supported"),
    ("context overflow", COMP, {"prompt": "word " * 4000}, 400, "prompt", "maximum context length"),
]


@pytest.mark.parametrize("name,path,body,status,param,words", CASES, ids=[c[0] for c in CASES])
def test_bad_request(server, name, path, body, status, param, words):
    raw = isinstance(body, bytes)
    st, data, _ = post(server, path, body, raw=raw)
    assert st == status, data
    err = json.loads(data)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param
    assert words.lower() in err["message"].lower(), err["message"]
    assert err["type"] == "invalid_request_error"


def test_unknown_url_and_method(server):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    c.request("GET", "/v1/nothing")
    r = c.getresponse()
    assert r.status == 404 and json.loads(r.read())["error"]["code"] == "unknown_url"
    c.request("GET", CHAT)
    r = c.getresponse()
    assert r.status == 405 and "POST" in json.loads(r.read())["error"]["message"]
    c.close()


def test_oversized_body(make_server):
    s = make_server("--max-body", "1000")
    st, data, _ = post(s, CHAT, {"messages": [{"role": "user", "content": "x" * 2000}]})
    assert st == 413 and "larger than 1000 bytes" in json.loads(data)["error"]["message"]
    # chunked, without Content-Length: found while reading
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    body = json.dumps({"messages": [{"role": "user", "content": "x" * 5000}]}).encode()
    c.request("POST", CHAT, body=iter([body[:3000], body[3000:]]), encode_chunked=True,
              headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    r = c.getresponse()
    assert r.status == 413
    c.close()
    st, data, _ = post(s, CHAT, {"messages": MSG, "max_tokens": 2})
    assert st == 200


def test_oversized_headers(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    assert data == b"" or data.split(b" ")[1] in (b"413", b"431", b"400"), data[:100]
    st, _, _ = post(server, CHAT, {"messages": MSG, "max_tokens": 1})
    assert st == 200


def test_slowloris(make_server):
    s = make_server("--timeout", "2")
    socks = []
    for _ in range(20):  # partial headers that never end
        k = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        k.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-A: ")
        socks.append(k)
    t0 = time.time()
    st, _, _ = post(s, CHAT, {"messages": MSG, "max_tokens": 2})  # others are still served
    assert st == 200 and time.time() - t0 < 2
    time.sleep(1.0)
    for k in socks:  # keep trickling: the idle timeout is per read, the total one is not ours
        try:
            k.sendall(b"a")
        except OSError:
            pass
    time.sleep(3.5)
    closed = 0
    for k in socks:
        k.settimeout(5)
        try:
            closed += k.recv(100) == b""
        except (ConnectionResetError, socket.timeout, OSError):
            closed += 1
        k.close()
    assert closed == len(socks)


def test_health_metrics(server):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    c.request("GET", "/health")
    r = c.getresponse()
    assert r.status == 200 and json.loads(r.read()) == {"status": "ok"}
    c.close()
    m = server.metrics()
    for k in ("lyra_requests_total", "lyra_prompt_tokens_total", "lyra_generated_tokens_total", "lyra_queue_depth",
              "lyra_slots_busy", "lyra_slots", "lyra_tokens_per_second", "lyra_fallback_steps_total"):
        assert k in m, k
    assert m["lyra_slots"] == 4
    assert m['lyra_http_responses_total{code="400"}'] >= 0


def test_page(server):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    c.request("GET", "/")
    r = c.getresponse()
    body = r.read().decode()
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/html")
    assert "/v1/chat/completions" in body and "localStorage" in body and "http" not in body.split("<script>")[1].split(
        "fetch(")[0]
