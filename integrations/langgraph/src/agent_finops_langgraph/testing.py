"""Test doubles: a scripted chat model that reports realistic usage, for offline runs.

`ScriptedChatModel` answers from a script of `AIMessage`s (tool calls allowed) and reports
each message's `usage_metadata` exactly as LangChain's provider integrations do (inclusive
convention: cached tokens inside `input_tokens`, reasoning inside `output_tokens`). It
identifies itself with `ls_provider` / `ls_model_name` so it is priced like the real model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import ConfigDict, PrivateAttr

__all__ = ["ScriptedChatModel", "usage"]


def usage(
    input_tokens: int,
    output_tokens: int,
    *,
    cache_read: int = 0,
    cache_write: int = 0,
    reasoning: int = 0,
) -> UsageMetadata:
    """A LangChain `usage_metadata` dict (inclusive convention)."""
    meta = UsageMetadata(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )
    if cache_read or cache_write:
        meta["input_token_details"] = {"cache_read": cache_read, "cache_creation": cache_write}
    if reasoning:
        meta["output_token_details"] = {"reasoning": reasoning}
    return meta


Script = Sequence[AIMessage] | Callable[[list[BaseMessage]], AIMessage]


class ScriptedChatModel(BaseChatModel):
    """A chat model that replays a script (a list, or a function of the input messages)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    script: Any
    """A list of `AIMessage` (replayed in order, cycling) or `f(messages) -> AIMessage`."""
    model_name: str = "gpt-4o-mini"
    provider: str = "openai"
    _index: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "scripted-chat-model"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = self.provider
        params["ls_model_name"] = self.model_name
        return params

    def bind_tools(
        self, tools: Sequence[Any], **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Accept tools (the script decides which tool calls to make)."""
        return self

    def _next(self, messages: list[BaseMessage]) -> AIMessage:
        if callable(self.script):
            message: AIMessage = self.script(messages)
        else:
            with self._lock:
                message = self.script[self._index % len(self.script)]
                self._index += 1
        return message.model_copy(
            update={
                "response_metadata": {**message.response_metadata, "model_name": self.model_name}
            }
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next(messages))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self._next(messages)
        text = message.content if isinstance(message.content, str) else ""
        words = text.split(" ") if text else [""]
        for i, word in enumerate(words):
            chunk = AIMessageChunk(content=word if i == 0 else " " + word)
            if run_manager:
                run_manager.on_llm_new_token(
                    chunk.content if isinstance(chunk.content, str) else ""
                )
            yield ChatGenerationChunk(message=chunk)
        # Usage (and tool calls) arrive on the final chunk, as with OpenAI's stream_usage.
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                tool_call_chunks=[
                    {"name": tc["name"], "args": _json(tc["args"]), "id": tc["id"], "index": j}
                    for j, tc in enumerate(message.tool_calls)
                ],
                usage_metadata=message.usage_metadata,
                response_metadata={"model_name": self.model_name},
                chunk_position="last",
            )
        )


def _json(args: Any) -> str:
    import json

    return json.dumps(args)
