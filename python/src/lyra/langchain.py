"""lyra.langchain: LangChain classes over a lyra Pipeline (needs
langchain-core): LyraLLM (a completion model, langchain_core LLM) and
ChatLyra (a chat model, BaseChatModel).

    from lyra import safe_load_pipeline
    from lyra.langchain import ChatLyra, LyraLLM
    pipe = safe_load_pipeline(config_path="config/model_config.json")
    llm = LyraLLM(pipeline=pipe)                    # or LyraLLM(config_path=..., model_id=...)
    chat = ChatLyra(pipeline=pipe, model_kwargs={"temperature": 0.7})

invoke, stream, batch, ainvoke and astream work as for any LangChain model
(the async ones run the generation in a thread; batch runs its calls one
after another on the pipeline). `stop` and `model_kwargs` (generation
settings: max_new_tokens, temperature, top_k, top_p, min_p, do_sample,
repetition_penalty, seed) go to every generation; streamed pieces reach
callbacks' on_llm_new_token; results carry token usage.
"""
from typing import Any, Dict, Iterator, List, Optional

try:
    from langchain_core.callbacks import CallbackManagerForLLMRun
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.language_models.llms import LLM
    from langchain_core.messages import (AIMessage, AIMessageChunk, BaseMessage, ChatMessage, HumanMessage,
                                         SystemMessage)
    from langchain_core.outputs import (ChatGeneration, ChatGenerationChunk, ChatResult, Generation,
                                        GenerationChunk, LLMResult)
    from pydantic import ConfigDict, Field, model_validator
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("lyra.langchain needs langchain-core: pip install langchain-core "
                      "(or the lyra-llm[langchain] extra)") from e

from .pipeline import Pipeline, safe_load_pipeline


class _LyraBase:
    """What both classes share: the pipeline (given, or loaded from
    model_id / config_path / pipeline_kwargs / load_kwargs as
    safe_load_pipeline does) and the per-call settings."""

    @classmethod
    def from_model_id(cls, model_id=None, config_path=None, pipeline_kwargs=None, model_kwargs=None,
                      **load_kwargs):
        """Load as safe_load_pipeline(model_id, config_path=..., pipeline_kwargs=..., **load_kwargs)."""
        pipe = safe_load_pipeline(model_id, config_path=config_path, pipeline_kwargs=pipeline_kwargs,
                                  **load_kwargs)
        return cls(pipeline=pipe, model_kwargs=model_kwargs or {})

    def _load(self):
        if self.pipeline is None:
            if self.model_id is None and self.config_path is None:
                raise ValueError("lyra.langchain: give pipeline=safe_load_pipeline(...), or model_id and/or "
                                 "config_path")
            self.pipeline = safe_load_pipeline(self.model_id, config_path=self.config_path,
                                               pipeline_kwargs=self.pipeline_kwargs, **self.load_kwargs)
        elif not isinstance(self.pipeline, Pipeline):
            raise TypeError("lyra.langchain: pipeline must be a lyra.Pipeline (safe_load_pipeline(...))")
        return self

    def _settings(self, stop, kwargs):
        kw = dict(self.model_kwargs)
        kw.update(kwargs)
        if stop is not None:
            kw["stop"] = list(stop)
        return kw

    @property
    def _identifying_params(self) -> Dict[str, Any]:
        return {"model_id": self.model_id or (self.pipeline.model_id if self.pipeline else None),
                "config_path": self.config_path or (self.pipeline.config_path if self.pipeline else None),
                "model_kwargs": self.model_kwargs}

    def get_num_tokens(self, text: str) -> int:
        return len(self.pipeline.tokenize(text))


_FIELDS_DOC = """
    pipeline: a lyra.Pipeline (safe_load_pipeline(...)); or, to load one,
        model_id, config_path, pipeline_kwargs and load_kwargs (overrides of
        top-level config keys: device_map, max_memory, ...).
    model_kwargs: generation settings for every call (max_new_tokens,
        temperature, do_sample, top_k, top_p, min_p, repetition_penalty,
        seed, stop); a call's own kwargs win.
"""


class LyraLLM(_LyraBase, LLM):
    __doc__ = "A lyra pipeline as a LangChain LLM (text in, continuation out)." + _FIELDS_DOC

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pipeline: Any = Field(default=None, exclude=True)
    model_id: Optional[str] = None
    config_path: Optional[str] = None
    pipeline_kwargs: Optional[Dict[str, Any]] = None
    load_kwargs: Dict[str, Any] = Field(default_factory=dict)
    model_kwargs: Dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self):
        return self._load()

    @property
    def _llm_type(self) -> str:
        return "lyra"

    def _run(self, prompt, stop, run_manager, kwargs):
        on_text = run_manager.on_llm_new_token if run_manager else None
        return self.pipeline.generate(prompt, on_text=on_text, **self._settings(stop, kwargs))

    def _call(self, prompt: str, stop: Optional[List[str]] = None,
              run_manager: Optional[CallbackManagerForLLMRun] = None, **kwargs: Any) -> str:
        return self._run(prompt, stop, run_manager, kwargs).text

    def _generate(self, prompts: List[str], stop: Optional[List[str]] = None,
                  run_manager: Optional[CallbackManagerForLLMRun] = None, **kwargs: Any) -> LLMResult:
        generations = []
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        for prompt in prompts:
            g = self._run(prompt, stop, run_manager, kwargs)
            for k, v in g.usage.items():
                usage[k] += v
            generations.append([Generation(text=g.text, generation_info={"finish_reason": g.finish_reason,
                                                                          "usage": g.usage})])
        return LLMResult(generations=generations, llm_output={"token_usage": usage, "model_name": "lyra"})

    def _stream(self, prompt: str, stop: Optional[List[str]] = None,
                run_manager: Optional[CallbackManagerForLLMRun] = None, **kwargs: Any) -> Iterator[GenerationChunk]:
        with self.pipeline.stream(prompt, **self._settings(stop, kwargs)) as s:
            for piece in s:
                chunk = GenerationChunk(text=piece)
                if run_manager:
                    run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk
            g = s.generation
        if g is not None:
            yield GenerationChunk(text="", generation_info={"finish_reason": g.finish_reason, "usage": g.usage})


def _role(m: BaseMessage) -> str:
    if isinstance(m, SystemMessage):
        return "system"
    if isinstance(m, HumanMessage):
        return "user"
    if isinstance(m, AIMessage):
        return "assistant"
    if isinstance(m, ChatMessage) and m.role in ("system", "user", "assistant"):
        return m.role
    raise ValueError(f"lyra.langchain: ChatLyra takes system, human and AI messages, not {type(m).__name__}")


def _to_messages(messages: List[BaseMessage]) -> List[Dict[str, str]]:
    """LangChain messages as lyra's list; consecutive messages of one role
    are joined (blank line between), as lyra's turns alternate."""
    out: List[Dict[str, str]] = []
    for m in messages:
        role, text = _role(m), m.text if isinstance(m.text, str) else m.text()
        if out and out[-1]["role"] == role:
            out[-1]["content"] += "\n\n" + text
        else:
            out.append({"role": role, "content": text})
    return out


def _usage(g):
    return {"input_tokens": g.prompt_tokens, "output_tokens": g.completion_tokens,
            "total_tokens": g.prompt_tokens + g.completion_tokens,
            "input_token_details": {"cache_read": g.reused_tokens}}


class ChatLyra(_LyraBase, BaseChatModel):
    __doc__ = ("A lyra pipeline as a LangChain chat model: messages rendered with the model's chat "
               "template, the reply as an AIMessage with usage_metadata." + _FIELDS_DOC)

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pipeline: Any = Field(default=None, exclude=True)
    model_id: Optional[str] = None
    config_path: Optional[str] = None
    pipeline_kwargs: Optional[Dict[str, Any]] = None
    load_kwargs: Dict[str, Any] = Field(default_factory=dict)
    model_kwargs: Dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self):
        return self._load()

    @property
    def _llm_type(self) -> str:
        return "lyra-chat"

    def _generate(self, messages: List[BaseMessage], stop: Optional[List[str]] = None,
                  run_manager: Optional[CallbackManagerForLLMRun] = None, **kwargs: Any) -> ChatResult:
        on_text = run_manager.on_llm_new_token if run_manager else None
        g = self.pipeline.chat(_to_messages(messages), on_text=on_text, **self._settings(stop, kwargs))
        meta = {"finish_reason": g.finish_reason, "model_name": "lyra"}
        msg = AIMessage(content=g.text, usage_metadata=_usage(g), response_metadata=meta)
        return ChatResult(generations=[ChatGeneration(message=msg, generation_info=meta)],
                          llm_output={"token_usage": g.usage, "model_name": "lyra"})

    def _stream(self, messages: List[BaseMessage], stop: Optional[List[str]] = None,
                run_manager: Optional[CallbackManagerForLLMRun] = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        with self.pipeline.stream(_to_messages(messages), **self._settings(stop, kwargs)) as s:
            for piece in s:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                if run_manager:
                    run_manager.on_llm_new_token(piece, chunk=chunk)
                yield chunk
            g = s.generation
        if g is not None:  # the usage, as OpenAI's stream_options.include_usage gives it
            meta = {"finish_reason": g.finish_reason, "model_name": "lyra"}
            yield ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=_usage(g),
                                                             response_metadata=meta),
                                      generation_info=meta)


__all__ = ["LyraLLM", "ChatLyra"]
