"""lyra: Python bindings of liblyra, a local LLM runtime in C11.

    import lyra
    pipe = lyra.safe_load_pipeline("stories260K.gguf", pipeline_kwargs={"max_new_tokens": 32})
    pipe("Once upon a time")        # [{"generated_text": "Once upon a time, ..."}]
    for piece in pipe.stream("Once upon a time"):
        print(piece, end="", flush=True)

LangChain classes are in lyra.langchain. docs/python.md has the guide.
"""
from . import _lib
from .errors import (ConfigError, GenerationCancelled, InvalidArgumentError, LyraError, ModelLoadError,
                     ModelNotFoundError, OutOfMemoryError, UnknownArgumentError)
from .engine import Engine
from .pipeline import Generation, Pipeline, Stream, safe_load_pipeline, set_log_level

__version__ = _lib.lib.lyra_version().decode()
API_VERSION = _lib.API_VERSION
library_path = _lib.path


def build_features():
    """What liblyra was built with, e.g. "avx2 avx512 no-CUDA"."""
    return _lib.lib.lyra_build_features().decode()


__all__ = [
    "safe_load_pipeline", "Pipeline", "Generation", "Engine", "Stream", "set_log_level", "build_features",
    "LyraError", "ConfigError", "UnknownArgumentError", "ModelNotFoundError", "ModelLoadError",
    "InvalidArgumentError", "OutOfMemoryError", "GenerationCancelled", "library_path",
]
