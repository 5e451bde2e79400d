"""`FinOpsMiddleware`: cost policy for LangChain `create_agent` agents, through model/tool hooks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents.middleware import AgentMiddleware
from langchain.agents.middleware.types import ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

from agent_finops.exceptions import PolicyViolation
from agent_finops_langgraph._guard import (
    STOP_PREFIX,
    ask_in_interrupt,
    enforcing_guard,
    run_of,
    step_key,
)
from agent_finops_langgraph._handler import FinOpsCallbackHandler

__all__ = ["FinOpsMiddleware"]


class FinOpsMiddleware(AgentMiddleware):
    """Enforces the handler's policy around every model and tool call of an agent.

    ```python
    agent = create_agent(model, tools, middleware=[FinOpsMiddleware(handler)])
    agent.invoke(inputs, config={"callbacks": [handler], "configurable": {"thread_id": "t1"}})
    ```

    A `pause` interrupts the agent (checkpointed) with the approval request; resuming with
    an approve decision retries the call. A `deny` ends the agent cleanly: the blocked model
    call is answered by a final AI message saying why (no tool calls, so the agent loop
    ends); a blocked tool call gets an error `ToolMessage`, and the next model call ends
    the run.
    """

    def __init__(self, handler: FinOpsCallbackHandler) -> None:
        """Use `handler`'s policy; the same handler must be in the run's callbacks."""
        super().__init__()
        self.guard = enforcing_guard(handler)

    @property
    def name(self) -> str:
        """Middleware name shown by LangChain."""
        return "FinOpsMiddleware"

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResponse[Any] | AIMessage:
        """Run the model call under the policy."""
        return self.guard.guarded(
            run_of(self.guard),
            lambda: handler(request),
            ask=ask_in_interrupt,
            stop=_final_message,
            step_key=step_key(),
        )

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any] | AIMessage:
        """Async twin of `wrap_model_call`."""
        return await self.guard.aguarded(
            run_of(self.guard),
            lambda: handler(request),
            ask=ask_in_interrupt,
            stop=_final_message,
            step_key=step_key(),
        )

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        """Run the tool call under the policy."""
        return self.guard.guarded(
            run_of(self.guard),
            lambda: handler(request),
            ask=ask_in_interrupt,
            stop=lambda error: _blocked_tool(request, error),
            step_key=step_key(),
            check_first=False,
        )

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        """Async twin of `wrap_tool_call`."""
        return await self.guard.aguarded(
            run_of(self.guard),
            lambda: handler(request),
            ask=ask_in_interrupt,
            stop=lambda error: _blocked_tool(request, error),
            step_key=step_key(),
            check_first=False,
        )


def _final_message(error: PolicyViolation) -> ModelResponse[Any] | AIMessage:
    return AIMessage(content=STOP_PREFIX + str(error))


def _blocked_tool(request: ToolCallRequest, error: PolicyViolation) -> ToolMessage | Command[Any]:
    return ToolMessage(
        content=STOP_PREFIX + str(error),
        tool_call_id=request.tool_call["id"] or "",
        name=request.tool_call["name"],
        status="error",
    )
