"""Enforcement inside LangGraph: pauses become checkpointed interrupts, denies end the run cleanly.

The callback handler (with a policy) stops a blocked call *before* it is sent by raising a
typed `PolicyViolation`. Around a node, `guard_node` hands the node to the run guard's ask
loop (`RunGuard.guarded`) with LangGraph's two answers:

* to ask (a `pause` rule): `interrupt()` with the approval request as payload. The run is
  checkpointed. `Command(resume=answer)` (see `agent_finops.approvals.ApprovalAnswer`; with
  several paused branches, `Command(resume={interrupt_id: answer, ...})`) re-runs the node:
  approved, the call is retried with the approved overspend; denied, the run ends cleanly.
  A decision taken elsewhere (`agent-finops approvals approve`, Slack) is applied on any
  resume.
* to stop (a `deny`): the graph halts at once with its partial state kept, exactly as an
  interrupt does (so static and conditional edges cannot carry the run on):
  `result["__interrupt__"][0].value` is the outcome (`kind == "agent_finops.stopped"`, the
  rule, scope, limit, observed value and message), and the run is recorded as `stopped`.
  Resuming a stopped thread re-checks the policy: it goes on only if the limit now allows
  it (for example after the budget was raised or a new period began).
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable
from typing import Any, NoReturn

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langgraph.config import get_config
from langgraph.errors import GraphInterrupt
from langgraph.types import Interrupt, interrupt

from agent_finops.approvals import ApprovalAnswer, approval_payload
from agent_finops.exceptions import ConfigurationError, PolicyViolation
from agent_finops.guard import RunGuard, RunRef, stop_payload
from agent_finops.ledger import ApprovalRecord
from agent_finops_langgraph._handler import FinOpsCallbackHandler

__all__ = ["STOP_PREFIX", "ask_in_interrupt", "guard_node", "halt", "run_of", "step_key"]

STOP_PREFIX = "[agent-finops] stopped by cost policy: "
"""Start of the final AI message of a `create_agent` agent a policy stopped (middleware)."""

_ANSWER_SCHEMA = ApprovalAnswer.model_json_schema()
"""Shown to clients with the interrupt (a typed input form); the answer is validated by
`ApprovalAnswer` itself, so a malformed one raises a `ConfigurationError` naming the field."""


def ask_in_interrupt(request: ApprovalRecord) -> Any:
    """Ask through a LangGraph interrupt: pauses the run; on resume, the resume value."""
    return interrupt(approval_payload(request), response_schema=_ANSWER_SCHEMA)


def halt(error: PolicyViolation) -> NoReturn:
    """End the run cleanly with its partial state, the outcome as the interrupt value."""
    raise GraphInterrupt((Interrupt(value=stop_payload(error), id=uuid.uuid4().hex),))


def enforcing_guard(handler: FinOpsCallbackHandler) -> RunGuard:
    """The handler's guard, which must have a policy to enforce."""
    if not handler.guard.enforcing:
        raise ConfigurationError(
            "the handler has no policy to enforce",
            source="guard",
            field="handler.policy",
            expected="FinOpsCallbackHandler(tracker, policy=Policy...)",
        )
    return handler.guard


def run_of(guard: RunGuard, config: RunnableConfig | None = None) -> RunRef:
    """The run the current node belongs to, from the callback manager in its config."""
    config = config if config is not None else get_config()
    manager = config.get("callbacks")
    parent = getattr(manager, "parent_run_id", None)
    run = guard.run_of(str(parent)) if parent is not None else None
    if run is None:
        raise ConfigurationError(
            "cannot find this run: pass the same handler in the graph's config",
            source="guard",
            field='config["callbacks"]',
            value=type(manager).__name__ if manager is not None else None,
            expected="graph.invoke(..., config={'callbacks': [handler]})",
        )
    return run


def step_key(config: RunnableConfig | None = None) -> str | None:
    """The LangGraph task this code runs in (its checkpoint namespace)."""
    config = config if config is not None else get_config()
    ns = (config.get("metadata") or {}).get("langgraph_checkpoint_ns")
    return None if ns is None else str(ns)


def guard_node(
    node: Callable[..., Any] | Runnable[Any, Any],
    handler: FinOpsCallbackHandler,
) -> Any:
    """Wrap a `StateGraph` node so cost policy pauses and denies become graph control flow.

    ```python
    builder.add_node("researcher", guard_node(researcher_subgraph, handler))
    ```

    Args:
        node: the node function (sync or async; it may take `config`) or a runnable such
            as a compiled subgraph (then both `invoke` and `ainvoke` are guarded).
        handler: the `FinOpsCallbackHandler` with a policy; pass the same handler in the
            graph's config callbacks.
    """
    guard = enforcing_guard(handler)

    def run_sync(call: Callable[[Any, RunnableConfig], Any]) -> Callable[..., Any]:
        def guarded(state: Any, config: RunnableConfig) -> Any:
            return guard.guarded(
                run_of(guard, config),
                lambda: call(state, config),
                ask=ask_in_interrupt,
                stop=halt,
                step_key=step_key(config),
            )

        return guarded

    def run_async(call: Callable[[Any, RunnableConfig], Any]) -> Callable[..., Any]:
        async def aguarded(state: Any, config: RunnableConfig) -> Any:
            return await guard.aguarded(
                run_of(guard, config),
                lambda: call(state, config),
                ask=ask_in_interrupt,
                stop=halt,
                step_key=step_key(config),
            )

        return aguarded

    if isinstance(node, Runnable):
        runnable = node
        name = f"guarded_{getattr(node, 'name', None) or 'runnable'}"
        return RunnableLambda(
            run_sync(lambda state, config: runnable.invoke(state, config)),
            afunc=run_async(lambda state, config: runnable.ainvoke(state, config)),
            name=name,
        )
    call, is_async = _caller(node)
    return _named(run_async(call) if is_async else run_sync(call), node)


def _caller(node: Any) -> tuple[Callable[[Any, RunnableConfig], Any], bool]:
    takes_config = "config" in inspect.signature(node).parameters
    is_async = inspect.iscoroutinefunction(node)
    if takes_config:
        return (lambda state, config: node(state, config=config)), is_async
    return (lambda state, config: node(state)), is_async


def _named(wrapper: Callable[..., Any], node: Any) -> Callable[..., Any]:
    name = getattr(node, "name", None) or getattr(node, "__name__", None) or "node"
    wrapper.__name__ = wrapper.__qualname__ = f"guarded_{name}"
    # Not functools.wraps: its __wrapped__ would make LangGraph read the inner signature
    # and stop passing `config`.
    wrapper.__doc__ = getattr(node, "__doc__", None)
    return wrapper
