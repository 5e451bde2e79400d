"""`FinOpsListener`: CrewAI's event bus and call hooks translated into the run guard's moments.

Tracking goes through the event bus, enforcement through the hooks, and both only translate:

* **Events** (a `BaseEventListener`): every scope CrewAI opens (kickoff, task, agent
  execution, tool use, LLM call, flow and flow method, and the memory, knowledge, reasoning
  scopes in between) is mirrored by its starting event's id. Crew kickoffs and flows become
  runs (or `crew` / `node` spans inside a flow), tasks `task` spans, agent executions `agent`
  spans (a delegated agent nests under the delegating tool call), and every
  `LLMCallCompletedEvent` / `ToolUsageFinishedEvent` is priced through
  `RunGuard.after_model_call` / `after_tool_call`. The handlers are `async` without any
  `await`: the bus runs them one at a time on its own loop, in emission order, so a span is
  always open before its children, whatever thread or `kickoff_async` emitted them.
* **Hooks** (`_hooks.py`): `PRE_MODEL_CALL` and `PRE_TOOL_CALL` call
  `RunGuard.before_model_call` / `before_tool_call` inline, before the request is sent;
  `EXECUTION_START` refuses a run missing mandatory tags and `EXECUTION_END` settles a
  stopped run before `kickoff()` raises.

The guard owns everything else: prices, reservations and their settlement, loop state,
approvals. Totals are final when `kickoff()` returns or raises: the listener waits for the
bus to deliver every event of the kickoff first.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

import crewai.events.types as event_types
from crewai.events.base_event_listener import BaseEventListener
from crewai.events.base_events import BaseEvent
from crewai.events.event_bus import CrewAIEventsBus, crewai_event_bus
from crewai.events.event_context import SCOPE_ENDING_EVENTS, SCOPE_STARTING_EVENTS

from agent_finops import CostTracker, TokenUsage, normalize_usage
from agent_finops.approvals import ApprovalService
from agent_finops.exceptions import ConfigurationError, PolicyViolation
from agent_finops.guard import RunGuard
from agent_finops.ledger import SpanKind, SpanStatus
from agent_finops.policy import Policy, PolicyEngine
from agent_finops_crewai._hooks import CallHooks
from agent_finops_crewai._outcome import CrewPaused, CrewStopped
from agent_finops_crewai._scopes import CALL_KINDS, Scope, Scopes, pending_call, pending_tool

__all__ = ["FinOpsListener"]

log = logging.getLogger("agent_finops")

DEFAULT_APPROVAL_WAIT: Final = 0.0
"""Seconds a paused call waits in its hook for a decision before the crew is aborted
(resumable); 0: abort at once."""
_AGENT_SCOPES: Final = frozenset({"agent_execution_started", "lite_agent_execution_started"})
_MAX_NAME = 200
_MAX_TAG = 256
_STOP_PREFIXES: Final = ("stopped by cost policy", "paused for approval")


class FinOpsListener(BaseEventListener):
    """Prices every model and tool call of every crew and flow, and enforces a cost policy.

    ```python
    listener = FinOpsListener(CostTracker(ledger), policy=Policy.from_yaml("policy.yaml"))
    crew.kickoff()          # or kickoff_async(), akickoff(), Flow.kickoff()
    ```

    Create it once, before the crews run (CrewAI copies the global model-call hooks into
    each agent executor when it is built). It serves every crew of the process, in any
    thread or event loop. `detach()` unregisters it.

    With a policy, a blocked model call is never sent: a deny raises `CrewStopped` out of
    `kickoff()` (the finished tasks' outputs on it), a pause files an approval request and
    waits up to `approval_wait` seconds for a decision (console, Slack, any process sharing
    the ledger); approved, the call goes ahead; denied, `CrewStopped`; undecided,
    `CrewPaused`: the crew ends and is resumed from its checkpoint after the decision.
    """

    def __init__(
        self,
        tracker: CostTracker | RunGuard,
        *,
        policy: Policy | PolicyEngine | None = None,
        approvals: ApprovalService | None = None,
        resume_target: str | None = None,
        approval_wait: float | None = DEFAULT_APPROVAL_WAIT,
        strict: bool = False,
    ) -> None:
        """Track into `tracker` (or drive an existing `RunGuard`).

        Args:
            tracker: prices calls and writes the ledger; or a `RunGuard` to share.
            policy: the cost policy to enforce (see `RunGuard`). None: track only.
            approvals: the approval service (default: from the policy's `approvals:`).
            resume_target: the name your app registers its resume function under
                (`ResumeTargets`), stored on approval requests.
            approval_wait: seconds a paused call waits for a decision in its hook (None:
                wait as long as it takes; 0: end the crew at once, resumable).
            strict: re-raise internal errors (as `HandlerError`) and unknown prices.
        """
        self.guard = RunGuard.of(
            tracker,
            policy=policy,
            approvals=approvals,
            resume_target=resume_target,
            strict=strict,
            source="FinOpsListener",
        )
        if approval_wait is not None and approval_wait < 0:
            raise ConfigurationError(
                "approval_wait must be >= 0 seconds (or None to wait indefinitely)",
                source="FinOpsListener",
                field="approval_wait",
                value=approval_wait,
            )
        self.tracker = self.guard.tracker
        self.scopes = Scopes()
        self._crews: dict[str, str] = {}  # crew id -> root span of its running kickoff
        self._lock = threading.Lock()
        self._handlers: list[tuple[type[BaseEvent], Callable[..., Any]]] = []
        self.hooks = CallHooks(self, approval_wait=approval_wait)
        self.attached = True
        super().__init__()
        self.hooks.register()

    # -- lifecycle --------------------------------------------------------------------------

    def setup_listeners(self, crewai_event_bus: CrewAIEventsBus) -> None:
        """Subscribe to the start and end of every scope CrewAI opens."""
        for cls in _scope_event_classes():
            kind = _event_type(cls)
            handler = self._on_start if kind in SCOPE_STARTING_EVENTS else self._on_end
            crewai_event_bus.on(cls)(handler)
            self._handlers.append((cls, handler))

    @staticmethod
    def subscribed_events() -> list[type[BaseEvent]]:
        """The event classes the listener handles: every CrewAI scope's start and end."""
        return list(_scope_event_classes())

    def detach(self) -> None:
        """Stop listening and unregister the hooks (runs in progress are left as they are)."""
        self.attached = False
        self.hooks.unregister()
        for cls, handler in self._handlers:
            crewai_event_bus.off(cls, handler)
        self._handlers.clear()

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until every event emitted so far is handled and written to the ledger."""
        crewai_event_bus.flush(timeout)
        self.tracker.flush(timeout)

    @property
    def errors(self) -> int:
        """Internal errors swallowed so far (each is logged)."""
        return self.guard.errors

    def __enter__(self) -> FinOpsListener:
        """`with FinOpsListener(tracker) as listener:` detaches it at the end of the block."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Detach."""
        self.detach()

    # -- scope starts -------------------------------------------------------------------------

    async def _on_start(self, source: Any, event: BaseEvent) -> None:
        if not self.attached:
            return
        try:
            self._start(source, event)
        except PolicyViolation:
            pass  # recorded by the guard (a run refused at its start); the hooks stop it
        except Exception:
            log.exception("agent-finops: could not handle CrewAI event %s", event.type)

    def _start(self, source: Any, event: BaseEvent) -> None:
        kind = event.type
        scope_id = event.event_id
        known = self.scopes.get(scope_id)
        if known is not None:  # a resumed kickoff registered by its EXECUTION_START hook
            return
        parent = self.scopes.get(event.parent_event_id)
        scope = Scope(
            kind=kind,
            parent=event.parent_event_id,
            anchor=parent.anchor if parent else None,
            root=parent.root if parent else None,
            step_key=parent.step_key if parent else None,
            dead=parent.dead if parent else None,
        )
        try:
            if scope.dead is None:
                self._open(source, event, scope, parent)
        finally:  # a refused run is registered too: its children are dropped, not orphaned
            self.scopes.add(scope_id, scope)

    def _open(self, source: Any, event: BaseEvent, scope: Scope, parent: Scope | None) -> None:
        kind, scope_id = event.type, event.event_id
        if kind == "crew_kickoff_started":
            crew = getattr(event, "crew", None) or source
            name = _clip(getattr(crew, "name", None) or "crew")
            self._span(scope, scope_id, name, "crew", node=name, tags={"crew": name})
            if scope.root == scope_id:
                self._crews[str(getattr(crew, "id", ""))] = scope_id
        elif kind == "flow_started":
            if parent is not None and parent.kind in _AGENT_SCOPES:
                return  # an agent executor's own internal flow: plumbing
            name = _clip(getattr(event, "flow_name", None) or "flow")
            state = getattr(source, "state", None)
            thread = getattr(state, "id", None)
            self._span(scope, scope_id, name, "node", node=name, tags={"flow": name}, thread=thread)
        elif kind == "method_execution_started":
            if parent is None or parent.span is None:
                return  # a method of an agent executor's internal flow
            name = _clip(str(getattr(event, "method_name", "method")))
            scope.step_key = name
            self._span(scope, scope_id, name, "node", node=name)
        elif kind == "task_started":
            task = getattr(event, "task", None) or source
            name = _clip(getattr(task, "name", None) or getattr(task, "description", "") or "task")
            scope.step_key = name
            self._span(scope, scope_id, name, "task", node=name, tags={"task": name[:_MAX_TAG]})
        elif kind in _AGENT_SCOPES:
            role = _agent_role(event)
            delegated = parent is not None and parent.kind == "tool_usage_started"
            # A delegated agent stays at its task's level (no node of its own), so
            # delegation ping-pong between two agents is judged at one level.
            node = None if delegated else role
            scope.name = role
            self._span(scope, scope_id, role, "agent", node=node, tags={"agent": role})
        elif kind == "llm_call_started":
            scope.name = getattr(event, "model", None) or "llm"
            scope.span = self.scopes.claim(pending_call.get(), event.parent_event_id)
        elif kind == "tool_usage_started":
            scope.name = _clip(str(getattr(event, "tool_name", "tool")))
            claimed = self.scopes.claim(pending_tool.get(), event.parent_event_id)
            if claimed is not None:
                scope.span = scope.anchor = claimed

    def _span(
        self,
        scope: Scope,
        scope_id: str,
        name: str,
        kind: SpanKind,
        *,
        node: str | None,
        tags: Mapping[str, str] | None = None,
        thread: str | None = None,
    ) -> None:
        if scope.anchor is None:  # a run starts
            try:
                self.guard.start_run(
                    scope_id,
                    name=name,
                    thread_id=str(thread) if thread else scope_id,
                    tags=tags,
                    node=node,
                )
            except PolicyViolation as refused:
                scope.dead = refused
                raise
            scope.root = scope_id
        else:
            opened = self.guard.open_step(
                scope_id, parent_id=scope.anchor, name=name, kind=kind, node=node, tags=tags
            )
            if opened is None:
                return
        scope.span = scope.anchor = scope_id

    def register_resumed_run(self, crew: Any, root: str, kickoff_id: str) -> None:
        """A kickoff resumed from a checkpoint (it emits no start event of its own)."""
        scope = Scope(kind="crew_kickoff_started", parent=None, anchor=root, root=root, span=root)
        self.scopes.add(kickoff_id, scope)
        self._crews[str(crew.id)] = root

    def root_of(self, crew: Any) -> str | None:
        """The root span of this crew's running kickoff (None inside a flow)."""
        return self._crews.get(str(getattr(crew, "id", "")))

    # -- scope ends ---------------------------------------------------------------------------

    async def _on_end(self, source: Any, event: BaseEvent) -> None:
        if not self.attached:
            return
        try:
            self._end(source, event)
        except Exception:
            log.exception("agent-finops: could not handle CrewAI event %s", event.type)

    def _end(self, source: Any, event: BaseEvent) -> None:
        scope = self.scopes.get(event.started_event_id)
        if scope is None or scope.dead is not None:
            return
        kind = event.type
        if kind == "llm_call_completed":
            self._model_done(scope, event)
        elif kind == "llm_call_failed":
            if scope.span is not None:
                failure = RuntimeError(str(getattr(event, "error", kind)))
                self.guard.model_call_failed(scope.span, failure)
        elif kind == "tool_usage_finished":
            self._tool_done(scope, event)
        elif kind == "tool_usage_error":
            if scope.span is not None:
                failure = RuntimeError(str(getattr(event, "error", kind)))
                self.guard.tool_call_failed(scope.span, failure)
        elif scope.span is not None and scope.kind not in CALL_KINDS:
            status, error = _ending(event)
            self.guard.close_step(scope.span, status=status, error=error)
            if scope.span == scope.root:
                self._run_ended(scope.root)
                self.guard.flush()  # a flow awaits this handler: its run is final on return

    def _run_ended(self, root: str) -> None:
        self.scopes.forget_run(root)
        with self._lock:
            for crew_id, crew_root in list(self._crews.items()):
                if crew_root == root:
                    del self._crews[crew_id]

    def close_run(self, root: str, status: SpanStatus, error: BaseException | None) -> None:
        """End a run whose kickoff raised (called inline, before the exception propagates)."""
        self.guard.close_step(root, status=status, error=error)
        self._run_ended(root)

    def _model_done(self, scope: Scope, event: Any) -> None:
        span = scope.span
        if span is None:
            # No hook guarded this call (an executor built before the listener, or a custom
            # LLM that skips `_invoke_before_llm_call_hooks`): recorded and priced, late.
            span = event.started_event_id
            self.guard.open_step(span, parent_id=scope.anchor, name=scope.name, kind="model")
            scope.span = span
        usage, error = usage_of(getattr(event, "usage", None))
        self.guard.after_model_call(
            span, usage=usage, model=getattr(event, "model", None), usage_error=error
        )

    def _tool_done(self, scope: Scope, event: Any) -> None:
        if scope.info.get("blocked"):
            return  # the hook refused it; it never ran
        span = scope.span
        if span is None:
            span = event.started_event_id
            self.guard.open_step(span, parent_id=scope.anchor, name=scope.name, kind="tool")
            scope.span = span
        failure = getattr(event, "failure", None)
        if failure is not None:  # the tool raised (or said it failed): no fee, span failed
            message = getattr(failure, "message", None) or str(failure)
            self.guard.tool_call_failed(span, RuntimeError(message))
            return
        self.guard.after_tool_call(span, output=getattr(event, "output", None))


def usage_of(raw: Any) -> tuple[TokenUsage | None, Exception | None]:
    """`LLMCallCompletedEvent.usage` normalised (None when the provider reported none)."""
    if not raw or not any(v for k, v in raw.items() if k != "total_tokens"):
        return None, None
    try:
        return normalize_usage(raw), None
    except ConfigurationError as exc:  # a shape we do not know: unknown cost, not lost
        return None, exc


def _ending(event: Any) -> tuple[SpanStatus, BaseException | str | None]:
    kind = event.type
    if kind.endswith("_paused"):
        return "interrupted", None
    error = getattr(event, "error", None)
    if kind.endswith(("_failed", "_error")) or error is not None:
        if isinstance(error, CrewPaused):
            return "interrupted", None
        if isinstance(error, CrewStopped):
            return "stopped", str(error)
        text = str(error) if error is not None else kind
        if text.startswith(_STOP_PREFIXES[1]):
            return "interrupted", None
        if text.startswith(_STOP_PREFIXES[0]):
            return "stopped", text
        return "error", text
    return "ok", None


def _agent_role(event: Any) -> str:
    agent = getattr(event, "agent", None)
    role = getattr(agent, "role", None)
    if role is None:
        info = getattr(event, "agent_info", None) or {}
        role = info.get("role") if isinstance(info, Mapping) else None
    return _clip(str(role or "agent"))


def _clip(text: str) -> str:
    return " ".join(text.split())[:_MAX_NAME] or "unnamed"


def _event_type(cls: type[BaseEvent]) -> str:
    field = cls.model_fields.get("type")
    default = field.default if field is not None else None
    return default if isinstance(default, str) else ""


_SCOPE_CLASSES: list[type[BaseEvent]] | None = None


def _scope_event_classes() -> list[type[BaseEvent]]:
    """Every event class that opens or closes a CrewAI scope (found in crewai.events.types)."""
    global _SCOPE_CLASSES
    if _SCOPE_CLASSES is None:
        found: dict[str, type[BaseEvent]] = {}
        for info in pkgutil.iter_modules(event_types.__path__):
            module = importlib.import_module(f"{event_types.__name__}.{info.name}")
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if not issubclass(cls, BaseEvent):
                    continue
                kind = _event_type(cls)
                if kind in SCOPE_STARTING_EVENTS or kind in SCOPE_ENDING_EVENTS:
                    found[f"{cls.__module__}.{cls.__qualname__}"] = cls
        _SCOPE_CLASSES = sorted(found.values(), key=lambda c: c.__qualname__)
    return _SCOPE_CLASSES
