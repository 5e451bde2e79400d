"""CrewAI's event scopes mirrored as run-guard spans, shared by the listener and the hooks.

CrewAI gives every scope (kickoff, task, agent execution, tool use, LLM call, flow method,
and memory, knowledge, reasoning...) the id of its starting event, and every event the id of
the scope it was emitted in (`parent_event_id`). The listener registers each scope here as
its starting event is handled, in emission order; the hooks, which run inline in the
thread that emitted the scope, wait for it to be registered (its handler is already queued:
the wait is bounded by the bus's own latency) and hang their model and tool calls from it.

A scope is either a span of the guard (`span`), or a pass-through whose children hang from
the nearest span above it (`anchor`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final

from agent_finops.exceptions import PolicyViolation

__all__ = ["CALL_KINDS", "PendingCall", "Scope", "Scopes", "pending_call", "pending_tool"]

CALL_KINDS: Final = frozenset({"llm_call_started", "tool_usage_started"})
"""Scopes that are model or tool calls: opened by the hook that guards them."""
WAIT_SECONDS: Final = 10.0
"""Longest a hook waits for the bus to register a scope it runs in (never reached in
practice: the handler is queued before the hook runs)."""


@dataclass(slots=True)
class Scope:
    """One CrewAI scope (keyed by the id of its starting event)."""

    kind: str
    """The CrewAI type of its starting event (`task_started`, `llm_call_started`...)."""
    parent: str | None
    """The enclosing scope's id."""
    anchor: str | None
    """The guard span this scope's children hang from (itself when it is a span)."""
    root: str | None
    """The run's root span."""
    span: str | None = None
    """The guard span this scope is (None: a pass-through, or a call not guarded yet)."""
    step_key: str | None = None
    """Which crew task (or flow method) this scope is part of: approvals are per step."""
    name: str = ""
    """An agent's role; a tool's name or an LLM call's model, for calls opened late."""
    dead: PolicyViolation | None = None
    """The run was refused at its start (mandatory tags): nothing under it is tracked."""
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class PendingCall:
    """A call a hook guarded before CrewAI emitted its start event (claimed by that event)."""

    span: str
    scope: str | None
    """The scope the hook ran in: the start event is emitted in the same one."""
    claimed: bool = False


pending_call: ContextVar[PendingCall | None] = ContextVar(
    "agent_finops_crewai_pending_call", default=None
)
"""The model call the PRE_MODEL_CALL hook guarded last in this context."""
pending_tool: ContextVar[PendingCall | None] = ContextVar(
    "agent_finops_crewai_pending_tool", default=None
)
"""The tool call the PRE_TOOL_CALL hook guarded last in this context."""


class Scopes:
    """Thread-safe registry of scopes; `wait()` blocks until a scope is registered."""

    def __init__(self) -> None:
        """An empty registry."""
        self._cond = threading.Condition(threading.Lock())
        self._scopes: dict[str, Scope] = {}
        self._runs: dict[str, set[str]] = {}

    def get(self, scope_id: str | None) -> Scope | None:
        """The scope with this id, if registered."""
        if scope_id is None:
            return None
        return self._scopes.get(scope_id)

    def add(self, scope_id: str, scope: Scope) -> None:
        """Register a scope (its span, if any, is already open) and wake waiting hooks."""
        with self._cond:
            self._scopes[scope_id] = scope
            if scope.root is not None:
                self._runs.setdefault(scope.root, set()).add(scope_id)
            self._cond.notify_all()

    def wait(self, scope_id: str, timeout: float = WAIT_SECONDS) -> Scope | None:
        """The scope with this id, waiting for its start event to be handled."""
        found = self._scopes.get(scope_id)
        if found is not None:
            return found
        with self._cond:
            self._cond.wait_for(lambda: scope_id in self._scopes, timeout)
            return self._scopes.get(scope_id)

    def forget_run(self, root: str) -> None:
        """Drop the scopes of a run that ended."""
        with self._cond:
            for scope_id in self._runs.pop(root, ()):
                self._scopes.pop(scope_id, None)

    def claim(self, pending: PendingCall | None, scope: str | None) -> str | None:
        """The span a hook opened for the call starting in `scope`, if it is this call's."""
        if pending is None or pending.scope != scope:
            return None
        with self._cond:
            if pending.claimed:
                return None
            pending.claimed = True
            return pending.span

    def __len__(self) -> int:
        """How many scopes are registered."""
        return len(self._scopes)

    def snapshot(self) -> Mapping[str, Scope]:
        """A copy of the registry (for tests and debugging)."""
        with self._cond:
            return dict(self._scopes)
