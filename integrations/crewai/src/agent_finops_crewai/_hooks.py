"""CrewAI interception hooks: the run guard's "before" moments, inline, before anything is sent.

CrewAI stops a crew only for a `HookAborted` raised in a hook; anything else a hook raises
is swallowed (fail-open). So every policy outcome leaves these hooks as a `HookAborted`:

* `PRE_MODEL_CALL`: `RunGuard.guarded(before_model_call)`. A deny raises `CrewStopped`
  (the crew ends; `kickoff()` raises it with the finished tasks' outputs). A pause asks
  through `ApprovalWait`: the hook waits for a decision, then retries (approved) or stops
  (denied); undecided in time, it raises `CrewPaused` (the crew ends, resumable).
* `PRE_TOOL_CALL`: `RunGuard.before_tool_call` (repeated-call loops, tool fees). CrewAI lets
  a tool hook block that one call, not the crew: a blocked tool returns "blocked" to its
  agent, and the crew stops at its next model call (the run is marked stopped).
* `EXECUTION_START`: a run missing mandatory tags is refused before its first request; a
  kickoff resumed from a checkpoint (it emits no start event) starts its run here.
* `EXECUTION_END`: wait for the bus, then end the run, so the ledger is final when
  `kickoff()` returns or raises.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, NoReturn

from crewai.events.event_bus import crewai_event_bus
from crewai.events.event_context import get_current_parent_id
from crewai.hooks import (
    HookAborted,
    InterceptionPoint,
    LLMCallHookContext,
    ToolCallHookContext,
    register_hook,
    unregister_hook,
)
from crewai.tools.agent_tools.base_agent_tools import BaseAgentTool

from agent_finops.attribution import current_tags, merge_tags
from agent_finops.estimate import estimate_input_tokens
from agent_finops.exceptions import PolicyViolation
from agent_finops.guard import RunRef, undecided
from agent_finops.ledger import ApprovalRecord, SpanStatus
from agent_finops_crewai._outcome import SOURCE, CrewPaused, CrewStopped
from agent_finops_crewai._scopes import PendingCall, Scope, pending_call, pending_tool

if TYPE_CHECKING:
    from agent_finops_crewai._listener import FinOpsListener

__all__ = ["ApprovalWait", "CallHooks"]

DELEGATION_TOOLS: Final = frozenset({"delegate_work_to_coworker", "ask_question_to_coworker"})
"""CrewAI's coworker tools (sanitized names): using one hands control to another agent."""
AGENT_SCOPES: Final = frozenset({"agent_execution_started", "lite_agent_execution_started"})
POLL_SECONDS: Final = (0.05, 0.1, 0.2, 0.5, 1.0)
"""How often a waiting hook looks the decision up (backing off to the last value)."""


class ApprovalWait:
    """The `Asker` of a paused CrewAI call: wait for a decision, else end the crew resumably.

    The request is already filed (and announced to every channel) when this is asked. It
    waits up to `seconds` for anyone allowed to decide it, through any channel or process
    sharing the ledger; then the guard applies the decision. Nobody decided: `CrewPaused`.
    """

    def __init__(
        self,
        hooks: CallHooks,
        run: RunRef,
        context: Any,
        seconds: float | None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Wait `seconds` (None: indefinitely) for the run `run`, asked from `context`."""
        self.hooks = hooks
        self.run = run
        self.context = context
        self.seconds = seconds
        self._sleep = sleep

    def __call__(self, request: ApprovalRecord) -> Any:
        """Wait for a decision on `request`; None when decided (the guard reads it)."""
        service = self.hooks.listener.guard.approvals
        assert service is not None
        deadline = None if self.seconds is None else time.monotonic() + self.seconds
        for attempt in itertools.count():
            current = service.get(request.approval_id)
            if current.status != "pending":
                return None
            if deadline is not None and time.monotonic() >= deadline:
                break
            pause = POLL_SECONDS[min(attempt, len(POLL_SECONDS) - 1)]
            if deadline is not None:
                pause = min(pause, max(deadline - time.monotonic(), 0.0))
            self._sleep(pause)
        error = undecided(request, trace_id=self.run.trace_id)
        self.hooks.listener.guard.set_outcome(self.run.trace_id, "interrupted", str(error))
        raise CrewPaused(error, request, outputs=finished_outputs(self.context))


class CallHooks:
    """The listener's hooks on CrewAI's interception points (registered globally)."""

    def __init__(self, listener: FinOpsListener, *, approval_wait: float | None) -> None:
        """Hooks for `listener`; a pause waits `approval_wait` seconds for a decision."""
        self.listener = listener
        self.approval_wait = approval_wait
        self._registered: list[tuple[InterceptionPoint, Callable[[Any], Any]]] = [
            (InterceptionPoint.EXECUTION_START, self.execution_start),
            (InterceptionPoint.EXECUTION_END, self.execution_end),
            (InterceptionPoint.PRE_MODEL_CALL, self.before_model_call),
            (InterceptionPoint.PRE_TOOL_CALL, self.before_tool_call),
        ]

    def register(self) -> None:
        """Add the hooks to CrewAI's global hook lists."""
        for point, hook in self._registered:
            register_hook(point, hook)

    def unregister(self) -> None:
        """Remove them."""
        for point, hook in self._registered:
            unregister_hook(point, hook)

    # -- runs -----------------------------------------------------------------------------

    def execution_start(self, ctx: Any) -> None:
        """A crew or flow starts: refuse missing mandatory tags; start a resumed kickoff."""
        listener = self.listener
        if not listener.attached:
            return
        crew, flow = getattr(ctx, "crew", None), getattr(ctx, "flow", None)
        if crew is not None:
            resumed = getattr(crew, "checkpoint_kickoff_event_id", None)
            if resumed and listener.scopes.get(resumed) is None:
                self._start_resumed(crew, resumed)
                return
        top = listener.scopes.get(get_current_parent_id())
        if top is not None and top.span is not None:
            return  # inside a flow: the flow is the run
        guard = listener.guard
        if guard.engine is None:
            return
        name = str(getattr(crew or flow, "name", None) or ("crew" if crew else "flow"))
        own = {"crew": name} if crew is not None else {"flow": name}
        tags = merge_tags(listener.tracker.tags, current_tags(), own)
        if guard.engine.policy.missing_tags(tags):
            try:  # records the refused run and its decision, then raises MissingTags
                guard.start_run(uuid.uuid4().hex, name=name, tags=own, node=name)
            except PolicyViolation as refused:
                guard.flush()
                raise CrewStopped(refused) from None

    def _start_resumed(self, crew: Any, kickoff_id: str) -> None:
        name = str(crew.name or "crew")
        root = uuid.uuid4().hex
        try:
            self.listener.guard.start_run(
                root, name=name, thread_id=kickoff_id, tags={"crew": name}, node=name
            )
        except PolicyViolation as refused:
            raise CrewStopped(refused) from None
        self.listener.register_resumed_run(crew, root, kickoff_id)

    def execution_end(self, ctx: Any) -> None:
        """A root kickoff ends: deliver all its events, then end its run, inline.

        Called before `kickoff()` returns or raises, so the report read right after is
        final. The background memory writes CrewAI drains next are drained first (their
        extraction calls belong to the run).
        """
        listener = self.listener
        crew = getattr(ctx, "crew", None)
        if not listener.attached or crew is None:
            return
        if getattr(ctx, "status", None) != "failed":
            drain = getattr(crew, "_drain_memory_writes", None)
            if callable(drain):
                drain()
        crewai_event_bus.flush()  # the kickoff's start is registered, its calls are priced
        root = listener.root_of(crew)
        if root is None:
            return  # a crew inside a flow: the flow's run goes on
        status: SpanStatus = "ok"
        error = getattr(ctx, "error", None)
        if getattr(ctx, "status", None) == "failed":
            status = "error"
            if isinstance(error, CrewPaused):
                status, error = "interrupted", None
            elif isinstance(error, CrewStopped):
                status = "stopped"
        listener.close_run(root, status, error)
        listener.guard.flush()

    # -- model calls ------------------------------------------------------------------------

    def before_model_call(self, ctx: LLMCallHookContext) -> None:
        """Check and reserve the call before it is sent (a deny or pause aborts the crew)."""
        listener = self.listener
        if not listener.attached:
            return
        guard = listener.guard
        top = get_current_parent_id()
        scope = listener.scopes.wait(top) if top is not None else None
        if scope is not None and scope.dead is not None:
            raise CrewStopped(scope.dead, outputs=finished_outputs(ctx))
        # The LLM layer dispatches inside the call's own scope; an executor, before it.
        inside = scope is not None and scope.kind == "llm_call_started" and scope.span is None
        parent = self._turn(scope.anchor) if scope is not None else None
        step_key = scope.step_key if scope is not None else None
        llm = ctx.llm
        model = getattr(llm, "model", None) if llm is not None else None
        model = model if isinstance(model, str) else None
        provider = getattr(llm, "provider", None)
        max_tokens = getattr(llm, "max_tokens", None)
        # The core's upper bound (UTF-8 bytes of every message plus framing). Native tool
        # schemas go to the provider beside the messages and are not visible to the hook.
        input_tokens = estimate_input_tokens(ctx.messages or ()) if guard.enforcing else 0

        def step() -> None:
            call_id = uuid.uuid4().hex
            if inside:
                assert scope is not None
                scope.span = call_id
            else:
                pending_call.set(PendingCall(call_id, top))
            guard.before_model_call(
                call_id,
                parent_id=parent,
                name=model or "llm",
                model=model,
                provider=provider if isinstance(provider, str) else None,
                input_tokens=input_tokens,
                max_output_tokens=max_tokens if isinstance(max_tokens, int) else None,
                step_key=step_key,
            )

        self._guarded(ctx, parent, step, step_key, check_first=True)

    def _turn(self, parent: str | None) -> str | None:
        """Control comes back to a delegating agent when its coworker answers.

        That hand-over is a step again for ping-pong detection (A asks B, B answers, A asks
        B...): the guard re-observes the agent at its next model call.
        """
        agent = self.listener.scopes.get(parent)
        if agent is not None and agent.info.pop("handed_over", False) and parent is not None:
            self.listener.guard.step_reentered(parent)
        return parent

    def _guarded(
        self,
        ctx: Any,
        parent: str | None,
        step: Callable[[], None],
        step_key: str | None,
        *,
        check_first: bool,
        stop: Callable[[PolicyViolation], None] | None = None,
    ) -> None:
        guard = self.listener.guard
        if not guard.enforcing:
            step()
            return

        def end_crew(error: PolicyViolation) -> NoReturn:
            raise CrewStopped(error, outputs=finished_outputs(ctx)) from None

        run = guard.run_of(parent) if parent is not None else None
        if run is None:  # a call outside any crew or flow is a run of its own
            try:
                step()
            except PolicyViolation as error:
                (stop or end_crew)(error)
            return
        guard.guarded(
            run,
            step,
            ask=ApprovalWait(self, run, ctx, self.approval_wait),
            stop=stop or end_crew,
            step_key=step_key,
            check_first=check_first,
        )

    # -- tool calls -------------------------------------------------------------------------

    def before_tool_call(self, ctx: ToolCallHookContext) -> None:
        """Check loops and reserve the tool's fee; a refusal blocks this one tool call."""
        listener = self.listener
        if not listener.attached:
            return
        guard = listener.guard
        top = get_current_parent_id()
        scope = listener.scopes.wait(top) if top is not None else None
        if scope is not None and scope.dead is not None:
            raise HookAborted("blocked: the run was refused by its cost policy", source=SOURCE)
        # Native tool calls run their hooks inside the tool's scope; text (ReAct) tool
        # calls before CrewAI opens it.
        inside = scope is not None and scope.kind == "tool_usage_started" and scope.span is None
        parent = scope.anchor if scope is not None else None
        step_key = scope.step_key if scope is not None else None
        name = str(ctx.tool_name)
        args = dict(ctx.tool_input) if isinstance(ctx.tool_input, Mapping) else ctx.tool_input
        if name in DELEGATION_TOOLS or isinstance(
            getattr(ctx.tool, "_original_tool", None), BaseAgentTool
        ):
            delegator = listener.scopes.get(parent)
            if delegator is not None and delegator.kind in AGENT_SCOPES:
                delegator.info["handed_over"] = True
        pending: list[PendingCall] = []

        def step() -> None:
            call_id = uuid.uuid4().hex
            if inside:
                assert scope is not None
                scope.span = scope.anchor = call_id
            else:
                pending[:] = [PendingCall(call_id, top)]
                pending_tool.set(pending[0])
            guard.before_tool_call(
                call_id, parent_id=parent, name=name, args=args, step_key=step_key
            )

        def block(error: PolicyViolation) -> NoReturn:
            _blocked(scope, pending, inside)
            raise HookAborted(f"blocked by cost policy: {error}", source=SOURCE) from None

        if not guard.enforcing:
            step()
            return
        try:
            self._guarded(ctx, parent, step, step_key, check_first=False, stop=block)
        except PolicyViolation as error:  # no run to guard (a tool called outside a crew)
            block(error)


def _blocked(scope: Scope | None, pending: list[PendingCall], inside: bool) -> None:
    if inside and scope is not None:
        scope.info["blocked"] = True
    for call in pending:
        call.claimed = True  # CrewAI emits no start event for a blocked text tool call


def finished_outputs(ctx: Any) -> list[Any]:
    """The outputs of the crew's finished tasks, in task order."""
    crew = getattr(ctx, "crew", None)
    if crew is None:
        agent = getattr(ctx, "agent", None)
        crew = getattr(agent, "crew", None)
    tasks = getattr(crew, "tasks", None) or ()
    return [task.output for task in tasks if getattr(task, "output", None) is not None]
