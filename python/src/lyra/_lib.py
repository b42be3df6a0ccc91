"""_lib: liblyra loaded with ctypes, and the declarations of the lyra.h calls
the package uses (include/lyra.h is the reference; LYRA_API_VERSION 5; the
engine calls of version 8 are declared by engine.py when present).

The library is $LYRA_LIB when set (an installed or freshly built
liblyra.so), else the liblyra.so the wheel put next to this file. Calls go
through ctypes.CDLL, which releases the GIL for the duration of every
foreign call; the token callback (a CFUNCTYPE) takes it back while it runs.
"""
import ctypes
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_int, c_int32, c_int64,
                    c_size_t, c_uint64, c_void_p)

API_VERSION = 5  # the lyra.h this module declares

# status codes (lyra.h), also the CLI's exit codes
OK, ERR_RUNTIME, ERR_INPUT, ERR_OOM, ERR_INTERRUPTED = 0, 1, 2, 3, 130
# lyra_error_kind
KIND_OTHER, KIND_CONFIG, KIND_UNKNOWN_KEY, KIND_MODEL_NOT_FOUND, KIND_MODEL, KIND_ARGUMENT = range(6)
# lyra_stop_reason
STOP_EOG, STOP_STRING, STOP_LENGTH, STOP_CONTEXT, STOP_CANCELLED = range(5)


class Error(Structure):
    _fields_ = [("code", c_int), ("msg", c_char * 1024), ("kind", c_int)]


class GenerateResult(Structure):
    _fields_ = [("n_prompt", c_int32), ("n_reused", c_int32), ("n_gen", c_int64), ("stop", c_int)]


class ChatMessage(Structure):
    _fields_ = [("role", c_char_p), ("content", c_char_p)]


class FallbackStep(Structure):
    _fields_ = [("phase", c_int), ("token", c_int32), ("device", c_char * 16), ("asked", c_uint64),
                ("free", c_uint64), ("what", c_char * 8), ("from_k", c_int32), ("to_k", c_int32)]


# int (*lyra_token_cb)(const char *piece, size_t len, void *user): piece is
# not NUL-terminated, so it is taken as an address and read with string_at
TOKEN_CB = CFUNCTYPE(c_int, c_void_p, c_size_t, c_void_p)


def _find():
    env = os.environ.get("LYRA_LIB")
    if env:
        return env, "LYRA_LIB"
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "liblyra.so")
    return here, "the package"


def _load():
    path, origin = _find()
    if not os.path.exists(path):
        raise ImportError(
            f"lyra: no liblyra.so at {path} ({origin}); install the package with "
            "`pip install ./python` from the repository, or set LYRA_LIB=/path/to/liblyra.so")
    lib = ctypes.CDLL(path)
    try:
        ver = lib.lyra_api_version
    except AttributeError:
        raise ImportError(f"lyra: {path} is a liblyra older than API version {API_VERSION} "
                          "(no lyra_api_version)") from None
    ver.restype = c_int
    ver.argtypes = []
    if ver() < API_VERSION:
        raise ImportError(f"lyra: {path} has API version {ver()}; this package needs {API_VERSION}")
    return lib, path


lib, path = _load()
libc = ctypes.CDLL(None)  # the process's free() for the strings liblyra malloc's
libc.free.argtypes = [c_void_p]
libc.free.restype = None

_P = c_void_p  # opaque pointers (lyra_pipeline *, lyra_kwargs *, lyra_model *, ...)
_E = POINTER(Error)
_DECLS = {
    "lyra_version": (c_char_p, []),
    "lyra_build_features": (c_char_p, []),
    "lyra_log_set": (None, [c_void_p, c_int, c_void_p]),
    "lyra_kwargs_new": (_P, []),
    "lyra_kwargs_set": (c_int, [_P, c_char_p, c_char_p, _E]),
    "lyra_kwargs_free": (None, [_P]),
    "lyra_pipeline_open": (c_int, [c_char_p, c_char_p, c_char_p, _P, POINTER(_P), _E]),
    "lyra_pipeline_generate_ex": (c_int, [_P, c_char_p, _P, TOKEN_CB, c_void_p, POINTER(c_void_p),
                                          POINTER(GenerateResult), _E]),
    "lyra_pipeline_chat_messages": (c_int, [_P, POINTER(ChatMessage), c_int, _P, TOKEN_CB, c_void_p,
                                            POINTER(c_void_p), POINTER(GenerateResult), _E]),
    "lyra_pipeline_cancel": (None, [_P]),
    "lyra_pipeline_reset": (None, [_P]),
    "lyra_pipeline_config": (c_size_t, [_P, c_char_p, c_size_t]),
    "lyra_pipeline_model": (_P, [_P]),
    "lyra_pipeline_context": (_P, [_P]),
    "lyra_pipeline_free": (None, [_P]),
    "lyra_model_device_map": (c_size_t, [_P, c_char_p, c_size_t]),
    "lyra_model_fallback_steps": (c_int, [_P]),
    "lyra_model_fallback_step": (c_int, [_P, c_int, POINTER(FallbackStep)]),
    "lyra_model_arch": (c_char_p, [_P]),
    "lyra_model_n_vocab": (c_int32, [_P]),
    "lyra_model_n_layer": (c_int32, [_P]),
    "lyra_model_n_embd": (c_int32, [_P]),
    "lyra_model_n_ctx_train": (c_int32, [_P]),
    "lyra_model_n_ctx": (c_int32, [_P]),
    "lyra_model_n_bytes": (c_uint64, [_P]),
    "lyra_model_n_params": (c_uint64, [_P]),
    "lyra_model_meta_str": (c_int64, [_P, c_char_p, c_char_p, c_size_t]),
    "lyra_context_n_ctx": (c_int32, [_P]),
    "lyra_context_map_lines": (c_size_t, [_P, c_char_p, c_size_t]),
    "lyra_tokenize": (c_int, [_P, c_char_p, c_size_t, c_int, c_int, POINTER(POINTER(c_int32)),
                              POINTER(c_size_t), _E]),
}
# the session calls (docs/sessions.md), newer than API version 5: bound
# when the library has them; Pipeline's session methods say so otherwise
_OPTIONAL = {
    "lyra_pipeline_session_save": (c_int, [_P, c_char_p, _E]),
    "lyra_pipeline_session_load": (c_int, [_P, c_char_p, _E]),
    "lyra_pipeline_session_save_mem": (c_int, [_P, POINTER(c_void_p), POINTER(c_size_t), _E]),
    "lyra_pipeline_session_load_mem": (c_int, [_P, c_void_p, c_size_t, _E]),
    "lyra_pipeline_n_evaluated": (c_uint64, [_P]),
    "lyra_free": (None, [c_void_p]),
}
for _name, (_res, _args) in list(_DECLS.items()) + list(_OPTIONAL.items()):
    try:
        _f = getattr(lib, _name)
    except AttributeError:
        if _name in _OPTIONAL:
            continue
        raise
    _f.restype = _res
    _f.argtypes = _args


def has(name):
    """Whether the loaded liblyra exports name (the optional calls)."""
    try:
        getattr(lib, name)
        return True
    except AttributeError:
        return False


def text_of(call, *args):
    """The text a (buf, cap) call writes (snprintf's contract), asked twice."""
    n = call(*args, None, 0)
    buf = ctypes.create_string_buffer(n + 1)
    call(*args, buf, n + 1)
    return buf.value.decode("utf-8", "replace")


def take_string(ptr):
    """A malloc'd char * from liblyra as str; frees it."""
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode("utf-8", "replace")
    finally:
        libc.free(ptr)
