"""Enforcement inside LangGraph: pauses become checkpointed interrupts, denies end the run cleanly.

The callback handler (with a `PolicyEngine`) stops a blocked call *before* it is sent by
raising a typed `PolicyViolation`. Around a node, `guard_node` turns that into graph control
flow:

* `ApprovalRequired` (a `pause` rule): `interrupt()` with the approval request as payload.
  The run is checkpointed. `Command(resume=...)` with an approve decision (or a decision
  taken elsewhere, e.g. `agent-finops approvals approve`, then any resume) re-runs the node
  with the approved overspend; a deny ends the run cleanly.
* any other `PolicyViolation` (`deny`): the graph halts at once with its partial state kept,
  exactly as an interrupt does (so static and conditional edges cannot carry the run on):
  `result["__interrupt__"][0].value` is the outcome (`kind == "agent_finops.stopped"`, the
  rule, scope, limit, observed value and message), and the run is recorded as `stopped`.
  Resuming a stopped thread re-checks the policy: it goes on only if the limit now allows
  it (for example after the budget was raised or a new period began).
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langgraph.config import get_config
from langgraph.errors import GraphInterrupt
from langgraph.types import Interrupt, interrupt

from agent_finops.exceptions import (
    AlreadyDecided,
    ApprovalDenied,
    ApprovalRequired,
    ConfigurationError,
    PolicyViolation,
)
from agent_finops.ledger import ApprovalRecord
from agent_finops.policy import PolicyEngine
from agent_finops_langgraph._handler import FinOpsCallbackHandler

__all__ = ["APPROVAL_KIND", "STOPPED_KIND", "approval_payload", "guard_node", "parse_answer"]

APPROVAL_KIND = "agent_finops.approval"
"""`payload["kind"]` of the interrupt asking a human to approve overspend."""
STOPPED_KIND = "agent_finops.stopped"
"""`payload["kind"]` of the interrupt that ends a run a cost policy denied."""


def approval_payload(request: ApprovalRecord) -> dict[str, Any]:
    """The JSON-ready interrupt payload a human (or Slack) sees for an approval request."""
    return {
        "kind": APPROVAL_KIND,
        "approval_id": request.approval_id,
        "rule_id": request.rule_id,
        "scope": dict(request.scope),
        "unit": request.unit,
        "spent": format(request.spent, "f"),
        "limit": format(request.limit, "f"),
        "estimated_extra": format(request.estimate, "f"),
        "trace_id": request.trace_id,
        "thread_id": request.thread_id,
        "policy_version": request.policy_version,
        "message": request.message,
        "answer_with": {
            "approval_id": request.approval_id,
            "decision": "approve | deny",
            "by": "name",
            "extra": "optional amount (default: max(estimated_extra, 20% of limit))",
        },
    }


@dataclass(frozen=True, slots=True)
class Answer:
    """A human's decision, parsed from a resume value."""

    approve: bool
    by: str
    extra: Decimal | None = None
    reason: str | None = None


def parse_answer(value: Any) -> Answer | None:
    """Parse a `Command(resume=...)` value; None means "no decision in it" (a plain nudge).

    Accepted: `True`/`False`, `"approve"`/`"deny"`, or
    `{"decision": "approve"|"deny", "by": "alice", "extra": "2.50", "reason": "..."}`.
    """
    if value is None or (isinstance(value, Mapping) and value.get("decision") is None):
        return None
    if isinstance(value, bool):
        return Answer(approve=value, by="resume")
    if isinstance(value, str):
        return Answer(approve=_decision(value), by="resume")
    if isinstance(value, Mapping):
        extra = value.get("extra")
        try:
            amount = None if extra is None else Decimal(str(extra))
        except InvalidOperation:
            raise ConfigurationError(
                "bad approval answer",
                source="Command(resume=...)",
                field="extra",
                value=extra,
                expected="a decimal amount",
            ) from None
        return Answer(
            approve=_decision(value["decision"]),
            by=str(value.get("by") or "resume"),
            extra=amount,
            reason=value.get("reason"),
        )
    raise ConfigurationError(
        "bad approval answer",
        source="Command(resume=...)",
        field="resume",
        value=value,
        expected='True/False, "approve"/"deny" or {"decision": ...}',
    )


def _answers_other(value: Any, approval_id: str) -> bool:
    """Whether a resume value names another approval request than `approval_id`."""
    if not isinstance(value, Mapping):
        return False
    named = value.get("approval_id")
    return named is not None and named != approval_id


def _decision(value: Any) -> bool:
    text = str(value).strip().lower()
    if text in ("approve", "approved", "yes", "allow"):
        return True
    if text in ("deny", "denied", "no", "reject"):
        return False
    raise ConfigurationError(
        "bad approval answer",
        source="Command(resume=...)",
        field="decision",
        value=value,
        expected='"approve" or "deny"',
    )


@dataclass(frozen=True, slots=True)
class _Run:
    trace_id: str
    run_key: str
    thread_id: str | None


class Enforcer:
    """What `guard_node` and `FinOpsMiddleware` share: find the run, ask, apply, stop."""

    def __init__(self, handler: FinOpsCallbackHandler) -> None:
        """Enforce the handler's policy (the handler must have one)."""
        if handler.policy is None:
            raise ConfigurationError(
                "the handler has no policy to enforce",
                source="guard",
                field="handler.policy",
                expected="FinOpsCallbackHandler(tracker, policy=PolicyEngine(...))",
            )
        self.handler = handler
        self.engine: PolicyEngine = handler.policy

    def identify(self, config: RunnableConfig | None = None) -> _Run:
        """The run the current node belongs to, from the callback manager in its config."""
        config = config if config is not None else get_config()
        manager = config.get("callbacks")
        parent = getattr(manager, "parent_run_id", None)
        span = self.handler.tracker.span(str(parent)) if parent is not None else None
        if span is None:
            raise ConfigurationError(
                "cannot find this run: pass the same handler in the graph's config",
                source="guard",
                field='config["callbacks"]',
                value=type(manager).__name__ if manager is not None else None,
                expected="graph.invoke(..., config={'callbacks': [handler]})",
            )
        run_key, thread_id = self.handler.run_identity(span.trace_id)
        return _Run(span.trace_id, run_key, thread_id)

    def before(self, run: _Run) -> PolicyViolation | None:
        """Before a node: a stopped run, or a pending pause/deny decided at a step.

        Also answers an open approval request of this run on re-execution after a resume
        (this is where the resume value arrives).
        """
        stopped = self.engine.stopped(run.run_key)
        if stopped is not None:
            return stopped.error or PolicyViolation(stopped.message, trace_id=run.trace_id)
        pending = self.engine.take_pending(run.run_key)
        if pending is not None and pending.error is not None:
            if not isinstance(pending.error, ApprovalRequired):
                return pending.error
            return self.ask(run, pending.error)
        request = self.engine.pending_approval(run.run_key, thread_id=run.thread_id)
        if request is not None:
            return self._ask_request(run, request)
        decided = self.engine.take_decision(run.run_key, thread_id=run.thread_id)
        if decided is not None and decided.status != "approved":
            return _denied(run, decided)  # a human said no from outside the run
        return None

    def ask(self, run: _Run, pause: ApprovalRequired) -> PolicyViolation | None:
        """Interrupt for a decision; None if approved (the caller retries)."""
        request = self.engine.approval(pause.approval_id)
        if request is None:  # pragma: no cover - the engine persisted it before raising
            return pause
        return self._ask_request(run, request)

    def _ask_request(self, run: _Run, request: ApprovalRecord) -> PolicyViolation | None:
        if request.status == "pending":
            value = interrupt(approval_payload(request))
            # LangGraph hands resume values to interrupt() calls by position: on
            # re-execution the first value may answer an earlier, already decided request.
            while _answers_other(value, request.approval_id):
                value = interrupt(approval_payload(request))
            answer = parse_answer(value)
            current = self.engine.approval(request.approval_id) or request
            if current.status == "pending" and answer is not None:
                try:
                    current = self.engine.decide(
                        request.approval_id,
                        approve=answer.approve,
                        by=answer.by,
                        extra=answer.extra,
                        reason=answer.reason,
                    )
                except AlreadyDecided:  # decided elsewhere (console, Slack) in the meantime
                    current = self.engine.approval(request.approval_id) or current
            request = current
            if request.status == "pending":
                # Resumed without a decision: ask again (raises, the run stays paused).
                interrupt(approval_payload(request))
        self.engine.mark_applied(request.approval_id)
        if request.status == "approved":
            return None
        return _denied(run, request)

    def stop(self, run: _Run, error: PolicyViolation) -> dict[str, Any]:
        """Record the clean stop; the outcome to put in state."""
        self.handler.tracker.set_outcome(run.trace_id, "stopped", str(error))
        return outcome(error)


def _denied(run: _Run, request: ApprovalRecord) -> ApprovalDenied:
    return ApprovalDenied(
        f"approval {request.approval_id} for rule {request.rule_id!r} was "
        f"{request.status} by {request.decided_by}"
        + (f": {request.reason}" if request.reason else ""),
        rule_id=request.rule_id,
        scope=request.scope,
        limit=request.limit,
        observed=request.spent,
        trace_id=run.trace_id,
        unit=request.unit,
    )


def outcome(error: PolicyViolation) -> dict[str, Any]:
    """A JSON-ready description of why a run was stopped."""
    return {
        "kind": STOPPED_KIND,
        "status": "stopped",
        "reason": type(error).__name__,
        "rule_id": error.rule_id,
        "scope": dict(error.scope),
        "limit": None if error.limit is None else str(error.limit),
        "observed": None if error.observed is None else str(error.observed),
        "unit": error.unit,
        "trace_id": error.trace_id,
        "message": str(error),
    }


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
    enforcer = Enforcer(handler)
    if isinstance(node, Runnable):
        runnable = node
        sync_guard = _NodeGuard(enforcer, lambda state, config: runnable.invoke(state, config))
        async_guard = _NodeGuard(enforcer, lambda state, config: runnable.ainvoke(state, config))

        def run_sync(state: Any, config: RunnableConfig) -> Any:
            return sync_guard.run(state, config)

        async def run_async(state: Any, config: RunnableConfig) -> Any:
            return await async_guard.arun(state, config)

        name = f"guarded_{getattr(node, 'name', None) or 'runnable'}"
        return RunnableLambda(run_sync, afunc=run_async, name=name)
    call, is_async = _caller(node)
    guard = _NodeGuard(enforcer, call)
    if is_async:

        async def aguarded(state: Any, config: RunnableConfig) -> Any:
            return await guard.arun(state, config)

        return _named(aguarded, node)

    def guarded(state: Any, config: RunnableConfig) -> Any:
        return guard.run(state, config)

    return _named(guarded, node)


class _NodeGuard:
    def __init__(self, enforcer: Enforcer, call: Callable[[Any, RunnableConfig], Any]) -> None:
        self.enforcer = enforcer
        self.call = call

    def run(self, state: Any, config: RunnableConfig) -> Any:
        run = self.enforcer.identify(config)
        early = self.enforcer.before(run)
        if early is not None:
            return self.finish(run, early)
        while True:
            try:
                result = self.call(state, config)
            except ApprovalRequired as pause:
                denied = self.enforcer.ask(run, pause)
                if denied is not None:
                    return self.finish(run, denied)
                continue
            except PolicyViolation as exc:
                return self.finish(run, exc)
            return self.after(run, result)

    async def arun(self, state: Any, config: RunnableConfig) -> Any:
        run = self.enforcer.identify(config)
        early = self.enforcer.before(run)
        if early is not None:
            return self.finish(run, early)
        while True:
            try:
                result = await self.call(state, config)
            except ApprovalRequired as pause:
                denied = self.enforcer.ask(run, pause)
                if denied is not None:
                    return self.finish(run, denied)
                continue
            except PolicyViolation as exc:
                return self.finish(run, exc)
            return self.after(run, result)

    def finish(self, run: _Run, error: PolicyViolation) -> NoReturn:
        payload = self.enforcer.stop(run, error)
        raise GraphInterrupt((Interrupt(value=payload, id=uuid.uuid4().hex),))

    def after(self, run: _Run, result: Any) -> Any:
        stopped = self.enforcer.engine.stopped(run.run_key)
        if stopped is not None and stopped.error is not None:
            self.finish(run, stopped.error)  # a call inside was denied and its error caught
        return result


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
