"""errors: liblyra's errors as Python exceptions.

Every failure of the library comes back as a status (the CLI's exit code:
1 runtime, 2 input, 3 out of memory, 130 interrupted), one line
"WHERE: WHAT" and a kind (what it is about); `raise_for` maps them to a
class. The message is the library's, unchanged.
"""
from . import _lib


class LyraError(Exception):
    """Any liblyra failure. `code` is the CLI's exit code for it (1, 2, 3 or
    130), `kind` what it is about ("config", "unknown_key", "model_not_found",
    "model", "argument" or "other"), `str(e)` lyra's one-line message."""

    def __init__(self, message, code=_lib.ERR_RUNTIME, kind="other"):
        super().__init__(message)
        self.message = message
        self.code = code
        self.kind = kind


class ConfigError(LyraError, ValueError):
    """A bad config file, setting or value (the message names the file and
    JSON path, or the key): invalid JSON, "6Gb", max_new_tokens=-5."""


class UnknownArgumentError(ConfigError, TypeError):
    """A keyword argument lyra does not know, or one that cannot be given
    where it was (a load setting such as device_map passed to a call)."""


class ModelNotFoundError(LyraError, FileNotFoundError):
    """model_id names no model file (path, directory or Hugging Face cache)."""


class ModelLoadError(LyraError):
    """The model file could not be opened with these settings (not a GGUF
    file, an unsupported architecture, a device map that cannot be met)."""


class InvalidArgumentError(LyraError, ValueError):
    """A bad argument of a call: the task, a prompt longer than the context,
    a malformed message list."""


class OutOfMemoryError(LyraError, MemoryError):
    """Memory ran out with no way left: progressive fallback off
    (enable_progressive_fallback false) or exhausted."""


class GenerationCancelled(LyraError, InterruptedError):
    """A generation stopped by Pipeline.cancel() (from another thread).
    `generation` holds what was generated until then. Ctrl-C raises
    KeyboardInterrupt instead, as everywhere in Python."""

    def __init__(self, message, generation=None):
        super().__init__(message, _lib.ERR_INTERRUPTED, "other")
        self.generation = generation


_KINDS = {
    _lib.KIND_CONFIG: ("config", ConfigError),
    _lib.KIND_UNKNOWN_KEY: ("unknown_key", UnknownArgumentError),
    _lib.KIND_MODEL_NOT_FOUND: ("model_not_found", ModelNotFoundError),
    _lib.KIND_MODEL: ("model", ModelLoadError),
    _lib.KIND_ARGUMENT: ("argument", InvalidArgumentError),
}


def error_from(err):
    """The exception for a filled lyra_error."""
    msg = err.msg.decode("utf-8", "replace")
    name, cls = _KINDS.get(err.kind, ("other", LyraError))
    if err.code == _lib.ERR_OOM:
        cls = OutOfMemoryError
    return cls(msg, err.code, name)


def check(rc, err):
    if rc != _lib.OK:
        raise error_from(err)
