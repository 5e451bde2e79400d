"""Test doubles: `ScriptedLLM`, a custom CrewAI `BaseLLM` that replays replies with usage.

It behaves like CrewAI's native providers: each call opens an LLM call scope, emits
`LLMCallStartedEvent`, runs the model-call hooks when no executor ran them, and emits
`LLMCallCompletedEvent` with the usage of the scripted reply, in the shape CrewAI's native
OpenAI provider reports it (inclusive: cached tokens inside `prompt_tokens`, reasoning
inside `completion_tokens`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from crewai.events.types.llm_events import LLMCallType
from crewai.llms.base_llm import BaseLLM, llm_call_context
from crewai.utilities.types import LLMMessage
from pydantic import ConfigDict, PrivateAttr

__all__ = ["Reply", "ScriptedLLM", "crewai_usage"]


def crewai_usage(
    prompt_tokens: int,
    completion_tokens: int,
    *,
    cached: int = 0,
    cache_write: int = 0,
    reasoning: int = 0,
) -> dict[str, int]:
    """A usage dict as CrewAI's native providers put it on `LLMCallCompletedEvent`."""
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "cached_prompt_tokens": cached,
        "reasoning_tokens": reasoning,
    }
    if cache_write:
        usage["cache_creation_tokens"] = cache_write
    return usage


@dataclass(frozen=True)
class Reply:
    """One scripted completion: its text (ReAct format for tool use) and reported usage."""

    text: str
    usage: Mapping[str, int] = field(default_factory=lambda: crewai_usage(100, 10))


Script = Sequence[Reply] | Callable[[list[dict[str, Any]]], Reply]


class ScriptedLLM(BaseLLM):
    """A CrewAI LLM that answers from a script (a list replayed in order, or a function)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    script: Any = None
    """A list of `Reply` (in order; the last one repeats) or `f(messages) -> Reply`."""
    _index: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    calls: int = 0

    def _next(self, messages: list[dict[str, Any]]) -> Reply:
        with self._lock:
            self.calls += 1
            if callable(self.script):
                reply: Reply = self.script(messages)
                return reply
            index = min(self._index, len(self.script) - 1)
            self._index += 1
            reply = self.script[index]
            return reply

    def call(
        self,
        messages: str | list[Any],
        tools: list[dict[str, Any]] | None = None,
        callbacks: list[Any] | None = None,
        available_functions: dict[str, Any] | None = None,
        from_task: Any | None = None,
        from_agent: Any | None = None,
        response_model: Any | None = None,
    ) -> str | Any:
        """Answer the next scripted reply, with the events a native provider emits."""
        chat = cast(
            list[LLMMessage],
            [{"role": "user", "content": messages}] if isinstance(messages, str) else messages,
        )
        with llm_call_context():
            self._emit_call_started_event(
                messages=chat,
                tools=tools,
                callbacks=callbacks,
                available_functions=available_functions,
                from_task=from_task,
                from_agent=from_agent,
            )
            self._invoke_before_llm_call_hooks(chat, from_agent)
            reply = self._next(cast(list[dict[str, Any]], chat))
            self._emit_call_completed_event(
                response=reply.text,
                call_type=LLMCallType.LLM_CALL,
                from_task=from_task,
                from_agent=from_agent,
                messages=chat,
                usage=dict(reply.usage),
            )
            return reply.text

    async def acall(
        self,
        messages: str | list[Any],
        tools: list[dict[str, Any]] | None = None,
        callbacks: list[Any] | None = None,
        available_functions: dict[str, Any] | None = None,
        from_task: Any | None = None,
        from_agent: Any | None = None,
        response_model: Any | None = None,
    ) -> str | Any:
        """Async twin of `call`."""
        return self.call(
            messages, tools, callbacks, available_functions, from_task, from_agent, response_model
        )

    def supports_function_calling(self) -> bool:
        """Tools are used through the text (ReAct) protocol."""
        return False
