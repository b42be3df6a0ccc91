"""Fixtures of the Python package's tests: the test model (stories260K from
$LYRA_SHARED_DIR or ../shared beside the checkout; skipped when absent unless
LYRA_REQUIRE_SHARED=1), the lyra command to compare with ($LYRA_BIN, else
the `lyra` the wheel installed, else the repository's build), and a clean
environment (a scratch cwd, HOME and XDG_CONFIG_HOME, no LYRA_MODEL_CONFIG,
no simulated GPUs) so that no real config is discovered."""
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _shared_dir():
    d = os.environ.get("LYRA_SHARED_DIR")
    return d if d else os.path.join(os.path.dirname(REPO), "shared")


def _need(what):
    if os.environ.get("LYRA_REQUIRE_SHARED") == "1":
        pytest.fail(f"{what} is missing and LYRA_REQUIRE_SHARED=1")
    pytest.skip(f"{what} is missing")


@pytest.fixture(scope="session")
def model():
    p = os.path.join(_shared_dir(), "models", "stories260K.gguf")
    if not os.path.exists(p):
        _need(p)
    return p


@pytest.fixture(scope="session")
def shared_file():
    def get(rel):
        p = os.path.join(_shared_dir(), rel)
        if not os.path.exists(p):
            _need(p)
        return p
    return get


@pytest.fixture(scope="session")
def lyra_bin():
    cands = [os.environ.get("LYRA_BIN"), os.path.join(os.path.dirname(sys.executable), "lyra"),
             shutil.which("lyra"), os.path.join(REPO, "build", "lyra"), os.path.join(REPO, "build-gcc", "lyra")]
    for c in cands:
        if c and os.access(c, os.X_OK):
            return os.path.abspath(c)
    pytest.skip("no lyra command to compare with (set LYRA_BIN)")


@pytest.fixture(autouse=True)
def clean_env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    for v in ("LYRA_MODEL_CONFIG", "LYRA_SIM_GPUS", "LYRA_FAIL_ALLOC", "HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("LYRA_CUDA_DEVICES", "")  # the CPU's results, as the C suite's
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def cli(lyra_bin, model):
    """stdout of `lyra generate --no-config -m MODEL -p PROMPT ARGS...`
    without its final newline (the continuation)."""
    def run(prompt, *args):
        r = subprocess.run([lyra_bin, "generate", "--no-config", "-m", model, "-p", prompt, *map(str, args)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
        out = r.stdout.decode("utf-8")
        assert out.endswith("\n")
        return out[:-1]
    return run
