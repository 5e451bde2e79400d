"""`FinOpsMiddleware`: cost policy for LangChain `create_agent` agents, through model/tool hooks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents.middleware import AgentMiddleware
from langchain.agents.middleware.types import ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command

from agent_finops.exceptions import ApprovalRequired, PolicyViolation
from agent_finops_langgraph._guard import Enforcer
from agent_finops_langgraph._handler import FinOpsCallbackHandler

__all__ = ["STOP_PREFIX", "FinOpsMiddleware"]

STOP_PREFIX = "[agent-finops] stopped by cost policy: "
"""Start of the final AI message of an agent a policy stopped."""


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
        self.enforcer = Enforcer(handler)

    @property
    def name(self) -> str:
        """Middleware name shown by LangChain."""
        return "FinOpsMiddleware"

    def _stopped_message(self, error: PolicyViolation, run: Any) -> AIMessage:
        self.enforcer.stop(run, error)
        return AIMessage(content=STOP_PREFIX + str(error))

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResponse[Any] | AIMessage:
        """Run the model call under the policy."""
        run = self.enforcer.identify()
        early = self.enforcer.before(run)
        if early is not None:
            return self._stopped_message(early, run)
        while True:
            try:
                return handler(request)
            except ApprovalRequired as pause:
                denied = self.enforcer.ask(run, pause)
                if denied is not None:
                    return self._stopped_message(denied, run)
            except PolicyViolation as exc:
                return self._stopped_message(exc, run)

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any] | AIMessage:
        """Async twin of `wrap_model_call`."""
        run = self.enforcer.identify()
        early = self.enforcer.before(run)
        if early is not None:
            return self._stopped_message(early, run)
        while True:
            try:
                return await handler(request)
            except ApprovalRequired as pause:
                denied = self.enforcer.ask(run, pause)
                if denied is not None:
                    return self._stopped_message(denied, run)
            except PolicyViolation as exc:
                return self._stopped_message(exc, run)

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        """Run the tool call under the policy."""
        run = self.enforcer.identify()
        while True:
            try:
                return handler(request)
            except ApprovalRequired as pause:
                denied = self.enforcer.ask(run, pause)
                if denied is not None:
                    return self._blocked_tool(request, denied, run)
            except PolicyViolation as exc:
                return self._blocked_tool(request, exc, run)

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        """Async twin of `wrap_tool_call`."""
        run = self.enforcer.identify()
        while True:
            try:
                return await handler(request)
            except ApprovalRequired as pause:
                denied = self.enforcer.ask(run, pause)
                if denied is not None:
                    return self._blocked_tool(request, denied, run)
            except PolicyViolation as exc:
                return self._blocked_tool(request, exc, run)

    def _blocked_tool(
        self, request: ToolCallRequest, error: PolicyViolation, run: Any
    ) -> ToolMessage:
        self.enforcer.stop(run, error)
        return ToolMessage(
            content=STOP_PREFIX + str(error),
            tool_call_id=request.tool_call["id"] or "",
            name=request.tool_call["name"],
            status="error",
        )
