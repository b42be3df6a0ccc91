"""conftest.py: `lyra serve` started and stopped by the tests (tests/serve/).

The binary is $LYRA_BIN (default build/lyra of this checkout), the model
$LYRA_SHARED_DIR/models/stories260K.gguf (default ../shared beside the
checkout); without them every test skips (fails under LYRA_REQUIRE_SHARED=1).
Each server listens on a free loopback port (--port 0, read from its log)
and must exit 0 on SIGTERM."""
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _bin():
    return os.environ.get("LYRA_BIN") or os.path.join(ROOT, "build", "lyra")


def _model():
    shared = os.environ.get("LYRA_SHARED_DIR") or os.environ.get("LYRA_SHARED_DIR_DEFAULT") \
        or os.path.join(os.path.dirname(ROOT), "shared")
    return os.path.join(shared, "models", "stories260K.gguf")


def _need(path, what):
    if not os.path.exists(path):
        if os.environ.get("LYRA_REQUIRE_SHARED") == "1":
            pytest.fail(f"{what} not found: {path}")
        pytest.skip(f"{what} not found: {path}")


class Server:
    """One `lyra serve` process."""

    def __init__(self, *flags, env=None):
        _need(_bin(), "lyra binary")
        _need(_model(), "test model")
        e = dict(os.environ)
        e.pop("LYRA_API_KEY", None)
        e["LYRA_MODEL_CONFIG"] = "none"
        if env:
            e.update(env)
        self.cmd = [_bin(), "serve", "-m", _model(), "--port", "0", *flags]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=e)
        self.log = []
        self.port = None
        ready = threading.Event()

        def reader():
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"listening on http://[^ ]*:(\d+)/", line)
                if m:
                    self.port = int(m.group(1))
                if "ready:" in line:
                    ready.set()
            ready.set()

        self.thread = threading.Thread(target=reader, daemon=True)
        self.thread.start()
        if not ready.wait(60) or self.port is None or self.proc.poll() is not None:
            self.proc.kill()
            raise RuntimeError("lyra serve did not start:\n" + "".join(self.log))
        self.base = f"http://127.0.0.1:{self.port}"
        self.v1 = self.base + "/v1"

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def metrics(self, headers=None):
        req = urllib.request.Request(self.base + "/metrics", headers=headers or {})
        text = urllib.request.urlopen(req, timeout=10).read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Signal the server; its exit code (0 expected)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("lyra serve did not stop:\n" + "".join(self.log))
        self.thread.join(5)
        return rc


@pytest.fixture(scope="session")
def server():
    s = Server("--parallel", "4")
    yield s
    assert s.stop() == 0, "".join(s.log)


@pytest.fixture
def make_server():
    started = []

    def make(*flags, env=None):
        s = Server(*flags, env=env)
        started.append(s)
        return s

    yield make
    for s in started:
        assert s.stop() == 0, "".join(s.log)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long tests (the load test)")
