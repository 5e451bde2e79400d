"""`RunGuard`: run lifecycle, pricing hand-off, reservations and approvals, framework-free."""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from agent_finops.approvals import ApprovalService, Approver, parse_answer
from agent_finops.exceptions import (
    AlreadyDecided,
    ApprovalDenied,
    ApprovalRequired,
    ConfigurationError,
    FinOpsError,
    HandlerError,
    PolicyViolation,
)
from agent_finops.ledger import ApprovalRecord, CostEvent, SpanKind, SpanRecord, SpanStatus
from agent_finops.policy import Policy, PolicyEngine
from agent_finops.pricing import Cost
from agent_finops.tracker import NODE_SEPARATOR, CostTracker
from agent_finops.usage import TokenUsage

__all__ = ["Asker", "RunGuard", "RunRef", "undecided"]

log = logging.getLogger("agent_finops")

T = TypeVar("T")
Asker = Callable[[ApprovalRecord], Any]
"""Shows a pending request to a human and returns their answer (a resume value, see
`ApprovalAnswer`). LangGraph's is `interrupt(payload)`, which pauses the run the first time
and returns the resume value when the run is resumed; a blocking channel may wait."""

MAX_FOREIGN_ANSWERS: Final = 16
"""Resume values answering other requests skipped before giving up (a safety bound)."""
STEP_KINDS: Final = frozenset({"node", "agent"})
"""Span kinds between which control is handed over (ping-pong is judged between them)."""


@dataclass(frozen=True, slots=True)
class RunRef:
    """Which run a call belongs to: its trace, and the thread it resumes (if any)."""

    trace_id: str
    thread_id: str | None

    @property
    def run_key(self) -> str:
        """What per-run caps, approvals and stops belong to: the thread, else the trace."""
        return self.thread_id or self.trace_id


class RunGuard:
    """Tracks every call of a run and, with a policy, enforces it before each call.

    ```python
    guard = RunGuard(CostTracker(ledger), policy=Policy.from_yaml("policy.yaml"))
    ```

    Failure behaviour: without a policy, an internal error is logged and counted in
    `errors` and the user's run carries on (unless `strict=True`). With a policy the guard
    fails *closed* before a call: a call it cannot check (no span, bad tags, the budget
    database unreachable) is not sent unchecked; the error reaches the caller. After a call,
    it never raises for its own failure: an unpriceable result is charged its reservation.
    """

    def __init__(
        self,
        tracker: CostTracker,
        *,
        policy: Policy | PolicyEngine | None = None,
        approvals: ApprovalService | None = None,
        resume_target: str | None = None,
        strict: bool = False,
    ) -> None:
        """Guard runs recorded by `tracker`.

        Args:
            tracker: prices calls and writes the ledger.
            policy: the rules to enforce (a `Policy`; or a `PolicyEngine` built on the same
                tracker). None: track only.
            approvals: files and answers approval requests (default: a service on the
                tracker's ledger configured by the policy's `approvals:` section).
            resume_target: the name the application registers its resume function under
                (`ResumeTargets`), stored on approval requests for out-of-process resumes.
            strict: re-raise internal errors (as `HandlerError`) and unknown prices.
        """
        self.tracker = tracker
        self.strict = strict
        if isinstance(policy, PolicyEngine):
            if policy.tracker is not tracker:
                raise ConfigurationError(
                    "the policy engine records into another tracker",
                    source="RunGuard",
                    field="policy",
                    expected="RunGuard(tracker, policy=Policy...) or an engine on this tracker",
                )
            if approvals is not None or resume_target is not None:
                raise ConfigurationError(
                    "give approvals and resume_target to the PolicyEngine, or pass a Policy",
                    source="RunGuard",
                    field="approvals",
                )
            self.engine: PolicyEngine | None = policy
        elif isinstance(policy, Policy):
            self.engine = PolicyEngine(
                policy, tracker, approvals=approvals, resume_target=resume_target
            )
        elif policy is None:
            self.engine = None
        else:
            raise ConfigurationError(
                "policy must be a Policy or a PolicyEngine",
                source="RunGuard",
                field="policy",
                value=type(policy).__name__,
            )
        if self.engine is not None:
            tracker.policy_version = self.engine.version  # on every event, for exports
        self.errors = 0
        """Internal errors swallowed so far (each is logged)."""
        self._lock = threading.Lock()
        self._runs: dict[str, RunRef] = {}
        self._calls: dict[str, tuple[str | None, str | None]] = {}  # call -> (model, provider)
        self._inflight: dict[str, set[str]] = {}  # trace id -> calls holding a reservation
        self._observed: set[str] = set()  # step spans already seen by the ping-pong rules

    @classmethod
    def of(
        cls,
        tracker: CostTracker | RunGuard,
        *,
        policy: Policy | PolicyEngine | None = None,
        approvals: ApprovalService | None = None,
        resume_target: str | None = None,
        strict: bool = False,
        source: str = "RunGuard",
    ) -> RunGuard:
        """A guard for an integration given a tracker (and a policy), or a guard to share."""
        if isinstance(tracker, RunGuard):
            if policy is not None or approvals is not None or resume_target is not None:
                raise ConfigurationError(
                    "a RunGuard already has its policy; pass a CostTracker to give one here",
                    source=source,
                    field="policy",
                )
            return tracker
        return cls(
            tracker, policy=policy, approvals=approvals, resume_target=resume_target, strict=strict
        )

    @property
    def enforcing(self) -> bool:
        """Whether a policy is enforced (else the guard only tracks)."""
        return self.engine is not None

    @property
    def approvals(self) -> ApprovalService | None:
        """The approval service of the policy, if any."""
        return self.engine.approvals if self.engine is not None else None

    def flush(self) -> None:
        """Wait until everything recorded is in the ledger."""
        self.tracker.flush()

    def close(self) -> None:
        """Flush and close the tracker's sinks and the policy's budget store."""
        try:
            if self.engine is not None:
                self.engine.record_held()  # while the tracker can still write them
            self.tracker.close()
        finally:
            if self.engine is not None:
                self.engine.close()

    # -- identity -------------------------------------------------------------------------

    def run_of(self, span_id: str) -> RunRef | None:
        """The run an open span (node, call...) belongs to."""
        span = self.tracker.span(span_id)
        if span is None:
            return None
        with self._lock:
            return self._runs.get(span.trace_id) or RunRef(span.trace_id, None)

    def span(self, span_id: str) -> SpanRecord | None:
        """The open span with this id."""
        return self.tracker.span(span_id)

    def active_runs(self) -> list[RunRef]:
        """Runs started and not ended yet."""
        with self._lock:
            return list(self._runs.values())

    def in_flight(self) -> int:
        """Calls holding a reservation that have not reported back yet (all runs)."""
        with self._lock:
            return sum(len(calls) for calls in self._inflight.values()) + len(self._calls)

    # -- runs and steps -------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        *,
        name: str,
        thread_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        node: str | None = None,
    ) -> SpanRecord:
        """A run starts (a root invocation).

        With a policy, mandatory tags are checked here, before any token is sent
        (`MissingTags` is raised and the run is recorded stopped).
        """
        span = self.tracker.start_span(
            run_id,
            parent_span_id=None,
            name=name,
            kind="run",
            node=node,
            tags=tags,
            thread_id=thread_id,
        )
        run = RunRef(span.trace_id, thread_id)
        with self._lock:
            self._runs[span.trace_id] = run
        if self.engine is None:
            return span
        # A new invocation: no stale stop carries over; open approvals are looked up.
        self.engine.begin_run(run.run_key, thread_id=thread_id)
        decision = self.engine.check_run_start(span.trace_id, span.tags, run_key=run.run_key)
        if decision.blocked and decision.error is not None:
            self.close_step(span.span_id, error=decision.error)
            raise decision.error
        return span

    def open_step(
        self,
        span_id: str,
        *,
        parent_id: str | None,
        name: str,
        kind: SpanKind,
        node: str | None = None,
        tags: Mapping[str, str] | None = None,
        thread_id: str | None = None,
        persist: bool = True,
    ) -> SpanRecord | None:
        """A node, agent, task, crew or plumbing chain starts (a run, if it has no parent).

        `persist=False` for plumbing steps a report should not show. Returns None when
        tracking failed without a policy (logged; the user's run goes on).
        """
        try:
            if parent_id is None or self.tracker.span(parent_id) is None:
                return self.start_run(span_id, name=name, thread_id=thread_id, tags=tags, node=node)
            return self.tracker.start_span(
                span_id,
                parent_span_id=parent_id,
                name=name,
                kind=kind,
                node=node,
                tags=tags,
                persist=persist,
            )
        except PolicyViolation:
            raise
        except Exception as exc:
            self._failed("open_step", exc, before=True)
            return None

    def close_step(
        self,
        span_id: str,
        *,
        status: SpanStatus = "ok",
        error: BaseException | str | None = None,
    ) -> None:
        """A step ends; closing the root ends the run.

        `status`: `interrupted` for a pause, `stopped` for a policy stop (a
        `PolicyViolation` error gives `stopped` by itself).
        """
        try:
            if isinstance(error, PolicyViolation) and status == "ok":
                status = "stopped"
            span = self.tracker.end_span(span_id, status=status, error=error)
            with self._lock:
                self._observed.discard(span_id)
            if span is not None and span.parent_span_id is None:
                self._end_run(span)
        except Exception as exc:
            self._failed("close_step", exc)

    def step_reentered(self, span_id: str) -> None:
        """Control came back to an open step (a CrewAI agent got its coworker's answer).

        Its next model call is a hand-over again for the ping-pong rules, as a new node
        span is in LangGraph: A asks B, B answers, A asks B again is A, B, A, B.
        """
        with self._lock:
            self._observed.discard(span_id)

    def set_outcome(self, trace_id: str, status: SpanStatus, message: str) -> None:
        """How the run ended when it ends without an exception (e.g. `stopped` cleanly)."""
        self.tracker.set_outcome(trace_id, status, message)

    def _end_run(self, root: SpanRecord) -> None:
        with self._lock:
            run = self._runs.pop(root.trace_id, RunRef(root.trace_id, None))
            stranded = self._inflight.pop(root.trace_id, set())
            for call_id in stranded:
                self._calls.pop(call_id, None)
        if self.engine is None:
            return
        # Calls the framework never reported back (a cancelled task, another handler raising
        # after we reserved): give their reservations back now, not after the TTL.
        for call_id in stranded:
            self.engine.release(call_id)
        self.engine.end_run(run.run_key, paused=root.status == "interrupted")

    # -- model calls ----------------------------------------------------------------------

    def before_model_call(
        self,
        call_id: str,
        *,
        parent_id: str | None,
        name: str,
        model: str | None,
        provider: str | None,
        input_tokens: int,
        max_output_tokens: int | None = None,
        tags: Mapping[str, str] | None = None,
        step_key: str | None = None,
    ) -> None:
        """A model request is about to be sent.

        Opens its span and, with a policy, checks loops and reserves its worst case on every
        applicable limit, or raises the typed `PolicyViolation` (the request is then not
        sent).

        Args:
            call_id: the framework's id of the call (its span id).
            parent_id: the step making the call (None: the call is a run of its own).
            name: what to call it in reports.
            model: the requested model.
            provider: the provider, if known (`openai`, `anthropic`...).
            tags: the call's own tags.
            input_tokens: an upper bound of the tokens sent (agent_finops.estimate).
            max_output_tokens: the request's own output limit (None: the model's ceiling).
            step_key: the framework's id of the step making the call (for approvals).
        """
        with self._lock:
            self._calls[call_id] = (model, provider)
        span = self._open_call(call_id, parent_id, name, "model", tags)
        if self.engine is None or span is None:
            return
        run = self._run(span)
        try:
            self._observe_steps(span, run, step_key)
            decision = self.engine.check_before_model_call(
                call_id=call_id,
                trace_id=span.trace_id,
                run_key=run.run_key,
                thread_id=run.thread_id,
                tags=span.tags,
                model=model,
                provider=provider,
                input_tokens=input_tokens,
                max_output_tokens=max_output_tokens,
                step_key=step_key,
            )
        except BaseException as exc:
            self._forget_call(call_id)
            self.tracker.end_span(call_id, status="error", error=f"policy check failed: {exc}")
            raise
        self._enforce(span, decision.error if decision.blocked else None)

    def after_model_call(
        self,
        call_id: str,
        *,
        usage: TokenUsage | None,
        model: str | None = None,
        cost: Cost | None = None,
        usage_error: Exception | None = None,
    ) -> CostEvent | None:
        """The response arrived: price it, settle its reservation, close its span.

        `usage=None` records an unknown cost (never $0); `model` is the served model name
        (default: the requested one); `cost` when the integration knows it (a response from
        a cache). `usage_error`: the usage could not be read (it is logged and the call is
        recorded with an unknown cost).
        """
        with self._lock:
            requested, provider = self._calls.pop(call_id, (None, None))
        settled = False
        event = None
        # One group: the event, its budget charges and the closed span are written in one
        # transaction (durable together: a SIGKILL loses all of them or none).
        with self.tracker.grouped():
            try:
                if usage_error is not None:
                    self._failed("after_model_call", usage_error)
                event = self.tracker.record_model_call(
                    call_id, model=model or requested, usage=usage, provider=provider, cost=cost
                )
                if self.engine is not None:
                    tokens = usage.total_tokens if usage is not None else None
                    self.engine.check_after_model_call(
                        call_id,
                        cost=event.cost,
                        tokens=tokens,
                        trace_id=event.trace_id,
                        tags=event.tags,
                    )
                    settled = True
            except Exception as exc:
                self._failed("after_model_call", exc)
            finally:
                if self.engine is not None and not settled:
                    self._settle_unknown(call_id, tool=False)
                self._landed(call_id)
                self.close_step(call_id)
        return event

    def model_call_failed(self, call_id: str, error: BaseException) -> None:
        """The request failed (no usage): give its reservation back, close its span."""
        self._forget_call(call_id)
        self._release(call_id)
        self.close_step(call_id, error=error)

    # -- tool calls -----------------------------------------------------------------------

    def before_tool_call(
        self,
        call_id: str,
        *,
        parent_id: str | None,
        name: str,
        args: Any,
        tags: Mapping[str, str] | None = None,
        step_key: str | None = None,
    ) -> None:
        """A tool is about to run.

        Opens its span and, with a policy, checks the repeated-call rule and reserves its fee
        (a per-unit fee reserves the policy's fallback amount for its units).
        """
        span = self._open_call(call_id, parent_id, name, "tool", tags)
        if self.engine is None or span is None:
            return
        run = self._run(span)
        fee = self.tracker.prices.tool_fee(name)
        estimate = None
        if fee is not None:
            unknown_units = self.engine.policy.fallback_reservation_usd if fee.per_unit else 0
            estimate = fee.per_call + unknown_units
        try:
            decision = self.engine.check_before_tool_call(
                call_id=call_id,
                trace_id=span.trace_id,
                run_key=run.run_key,
                thread_id=run.thread_id,
                tags=span.tags,
                tool=name,
                args=args,
                fee_estimate=estimate,
                step_key=step_key,
            )
        except BaseException as exc:
            self.tracker.end_span(call_id, status="error", error=f"policy check failed: {exc}")
            raise
        self._enforce(span, decision.error if decision.blocked else None)

    def after_tool_call(
        self, call_id: str, *, output: Any = None, units: int | None = None
    ) -> CostEvent | None:
        """The tool returned: record it with its fee, settle, close its span."""
        settled = False
        event = None
        with self.tracker.grouped():  # the event and its charges in one transaction
            try:
                span = self.tracker.span(call_id)
                if span is not None:
                    event = self.tracker.record_tool_call(
                        call_id, tool=span.name, output=output, units=units
                    )
                    if self.engine is not None:
                        self.engine.check_after_tool_call(
                            call_id, cost=event.cost, trace_id=event.trace_id, tags=event.tags
                        )
                        settled = True
            except Exception as exc:
                self._failed("after_tool_call", exc)
            finally:
                if self.engine is not None and not settled:
                    self._settle_unknown(call_id, tool=True)
                self._landed(call_id)
                self.close_step(call_id)
        return event

    def tool_call_failed(self, call_id: str, error: BaseException) -> None:
        """The tool raised: give its fee reservation back, close its span."""
        self._release(call_id)
        self.close_step(call_id, error=error)

    # -- asking for approval: the one ask/retry/stop loop ------------------------------------

    def guarded(
        self,
        run: RunRef,
        step: Callable[[], T],
        *,
        ask: Asker,
        stop: Callable[[PolicyViolation], T],
        step_key: str | None = None,
        check_first: bool = True,
    ) -> T:
        """Run `step` under the policy: the one ask/retry/stop loop.

        A pause asks (`ask`), an approval retries the step, a deny (or a denied pause) ends
        it through `stop(error)` after recording the stop.

        `check_first`: before running, stop a stopped run and ask about this run's open
        request (this is where a resumed run receives its answer).
        """
        if check_first:
            early = self.before_step(run, ask=ask, step_key=step_key)
            if early is not None:
                return self._stop(run, early, stop)
        while True:
            try:
                result = step()
            except ApprovalRequired as pause:
                denied = self.resolve(run, pause.approval_id, ask=ask)
                if denied is not None:
                    return self._stop(run, denied, stop)
                continue
            except PolicyViolation as exc:
                return self._stop(run, exc, stop)
            late = self.stopped(run)
            return result if late is None else self._stop(run, late, stop)

    async def aguarded(
        self,
        run: RunRef,
        step: Callable[[], Awaitable[T]],
        *,
        ask: Asker,
        stop: Callable[[PolicyViolation], T],
        step_key: str | None = None,
        check_first: bool = True,
    ) -> T:
        """Async twin of `guarded` (`step` returns an awaitable; `ask` and `stop` are sync)."""
        if check_first:
            early = self.before_step(run, ask=ask, step_key=step_key)
            if early is not None:
                return self._stop(run, early, stop)
        while True:
            try:
                result = await step()
            except ApprovalRequired as pause:
                denied = self.resolve(run, pause.approval_id, ask=ask)
                if denied is not None:
                    return self._stop(run, denied, stop)
                continue
            except PolicyViolation as exc:
                return self._stop(run, exc, stop)
            late = self.stopped(run)
            return result if late is None else self._stop(run, late, stop)

    def stopped(self, run: RunRef) -> PolicyViolation | None:
        """The error that stopped this run, if a rule denied it (a caught error too)."""
        if self.engine is None:
            return None
        decision = self.engine.stopped(run.run_key)
        if decision is None:
            return None
        return decision.error or PolicyViolation(decision.message, trace_id=run.trace_id)

    def before_step(
        self, run: RunRef, *, ask: Asker, step_key: str | None = None
    ) -> PolicyViolation | None:
        """Before a guarded step: what stops it, if anything.

        A stopped run, a pending stop, this step's open request (asked about: a resumed
        run's answer arrives here), or a decision taken elsewhere.
        """
        if self.engine is None:
            return None
        stopped = self.stopped(run)
        if stopped is not None:
            return stopped
        pending = self.engine.take_pending(run.run_key)
        if pending is not None and pending.error is not None:
            if isinstance(pending.error, ApprovalRequired):
                return self.resolve(run, pending.error.approval_id, ask=ask)
            return pending.error
        service = self.engine.approvals
        if not service.has_open(thread_id=run.thread_id, trace_id=run.trace_id):
            return None
        own = service.pending(thread_id=run.thread_id, trace_id=run.trace_id, step=step_key)
        if not own and step_key is not None:
            # A request filed before steps had keys, or by a call outside any step.
            own = service.pending(thread_id=run.thread_id, trace_id=run.trace_id, step=None)
            own = [r for r in own if r.step is None]
        if own:
            return self._resolve_request(run, own[0], ask)
        decided = service.take_decision(thread_id=run.thread_id, trace_id=run.trace_id)
        if decided is not None and decided.status != "approved":
            return _denied(run, decided)  # a human (or the expiry) said no from outside
        return None

    def resolve(self, run: RunRef, approval_id: str, *, ask: Asker) -> PolicyViolation | None:
        """Get a decision on a request: None if approved (retry), else the denial."""
        assert self.engine is not None
        return self._resolve_request(run, self.engine.approvals.get(approval_id), ask)

    def _resolve_request(
        self, run: RunRef, request: ApprovalRecord, ask: Asker
    ) -> PolicyViolation | None:
        assert self.engine is not None
        service = self.engine.approvals
        if request.status == "pending":
            answer = _answer_for(request, ask(request))
            for _ in range(MAX_FOREIGN_ANSWERS):
                if answer is not _OTHER:
                    break
                # A positional resume value meant for another request: take the next one.
                answer = _answer_for(request, ask(request))
            else:
                raise ConfigurationError(
                    f"{MAX_FOREIGN_ANSWERS} resume values in a row answer other approval "
                    f"requests, none answers {request.approval_id}",
                    field="approval_id",
                    expected=request.approval_id,
                )
            current = service.get(request.approval_id)
            if current.status == "pending" and answer is not None:
                assert not isinstance(answer, _Other)
                try:
                    current = service.decide(
                        request.approval_id,
                        approve=answer.approve,
                        by=Approver(id=f"resume:{answer.by}", name=answer.by),
                        extra=answer.extra,
                        reason=answer.reason,
                    )
                except AlreadyDecided:  # decided elsewhere (console, Slack) meanwhile
                    current = service.get(request.approval_id)
            request = current
            if request.status == "pending":
                ask(request)  # no decision in the answer: ask again (LangGraph: re-pauses)
                request = service.get(request.approval_id)
                if request.status == "pending":  # a channel that waits, and timed out
                    return undecided(request, trace_id=run.trace_id)
        service.mark_applied(request.approval_id)
        if request.status == "approved":
            return None
        return _denied(run, request)

    def _stop(self, run: RunRef, error: PolicyViolation, stop: Callable[[PolicyViolation], T]) -> T:
        self.tracker.set_outcome(run.trace_id, "stopped", str(error))
        return stop(error)

    # -- internals ------------------------------------------------------------------------

    def _open_call(
        self,
        call_id: str,
        parent_id: str | None,
        name: str,
        kind: SpanKind,
        tags: Mapping[str, str] | None,
    ) -> SpanRecord | None:
        span = self.open_step(call_id, parent_id=parent_id, name=name, kind=kind, tags=tags)
        if span is None and self.engine is not None:
            self._forget_call(call_id)
            raise HandlerError(
                f"agent-finops could not open a span for call {call_id}; with a policy it is "
                "not sent unchecked (see the logged error)"
            )
        return span

    def _run(self, span: SpanRecord) -> RunRef:
        with self._lock:
            return self._runs.get(span.trace_id) or RunRef(span.trace_id, None)

    def _observe_steps(self, call: SpanRecord, run: RunRef, step_key: str | None) -> None:
        """Observe hand-overs lazily, at each step's first model call.

        A step that calls no model (a tool node) is never a party to ping-pong, and nodes
        nested in a sub-agent are judged at their own level, apart from the agents around
        them.
        """
        assert self.engine is not None
        if not self.engine.loops.watches_steps:
            return
        unseen: list[SpanRecord] = []
        parent = self.tracker.span(call.parent_span_id) if call.parent_span_id else None
        with self._lock:
            while parent is not None:
                if parent.kind in STEP_KINDS:
                    if parent.span_id in self._observed:
                        break
                    self._observed.add(parent.span_id)
                    unseen.append(parent)
                up = parent.parent_span_id
                parent = self.tracker.span(up) if up else None
        for step in reversed(unseen):  # outermost first
            path = step.node_path or step.name
            level = path.rsplit(NODE_SEPARATOR, 1)[0] if NODE_SEPARATOR in path else ""
            self.engine.check_step(
                trace_id=run.trace_id,
                run_key=run.run_key,
                thread_id=run.thread_id,
                tags=step.tags,
                step=step.name,
                level=level,
                step_key=step_key,
            )

    def _enforce(self, span: SpanRecord, error: PolicyViolation | None) -> None:
        """Raise a blocked call's error (its span closed `stopped`), or mark it in flight."""
        if error is not None:
            self._forget_call(span.span_id)
            self.tracker.end_span(span.span_id, status="stopped", error=error)
            raise error
        with self._lock:
            self._inflight.setdefault(span.trace_id, set()).add(span.span_id)

    def _landed(self, call_id: str) -> None:
        span = self.tracker.span(call_id)
        if span is None:
            return
        with self._lock:
            calls = self._inflight.get(span.trace_id)
            if calls is not None:
                calls.discard(call_id)

    def _forget_call(self, call_id: str) -> None:
        with self._lock:
            self._calls.pop(call_id, None)

    def _release(self, call_id: str) -> None:
        if self.engine is None:
            return
        try:
            self.engine.release(call_id)
        except Exception as exc:
            self._failed("release", exc)
        self._landed(call_id)

    def _settle_unknown(self, call_id: str, *, tool: bool) -> None:
        """The call ran but could not be priced or settled: charge its reservation."""
        assert self.engine is not None
        try:
            if tool:
                self.engine.check_after_tool_call(call_id, cost=None)
            else:
                self.engine.check_after_model_call(call_id, cost=None, tokens=None)
        except Exception:
            log.exception(
                "agent-finops: settling call %s failed; it expires after its TTL", call_id
            )

    def _failed(self, where: str, exc: Exception, *, before: bool = False) -> None:
        if isinstance(exc, FinOpsError) and (
            self.strict or self.tracker.prices.strict or (before and self.engine is not None)
        ):
            raise exc
        if self.strict or (before and self.engine is not None):
            raise HandlerError(f"agent-finops failed in {where}: {exc}") from exc
        with self._lock:
            self.errors += 1
        log.error("agent-finops error in %s (run continues): %s", where, exc, exc_info=exc)


class _Other:
    """Marker: the answer names another approval request."""


_OTHER: Final = _Other()


def _answer_for(request: ApprovalRecord, value: Any) -> Any:
    """This request's answer in a resume value (a map keyed by approval id is accepted)."""
    if isinstance(value, Mapping) and "decision" not in value:
        if request.approval_id in value:
            value = value[request.approval_id]
        elif value and all(isinstance(v, Mapping) for v in value.values()):
            return _OTHER  # a map of answers for other requests
    answer = parse_answer(value)
    if answer is not None and answer.approval_id not in (None, request.approval_id):
        return _OTHER
    return answer


def undecided(request: ApprovalRecord, *, trace_id: str) -> ApprovalRequired:
    """The pause of a run whose request is still undecided (it stays resumable)."""
    return ApprovalRequired(
        f"approval {request.approval_id} is still undecided: {request.message}",
        approval_id=request.approval_id,
        rule_id=request.rule_id,
        scope=request.scope,
        limit=request.limit,
        observed=request.spent,
        trace_id=trace_id,
        unit=request.unit,
        estimate=request.estimate,
        thread_id=request.thread_id,
    )


def _denied(run: RunRef, request: ApprovalRecord) -> ApprovalDenied:
    reason = f": {request.reason}" if request.reason else ""
    return ApprovalDenied(
        f"approval {request.approval_id} for rule {request.rule_id!r} was "
        f"{request.status} by {request.decided_by}{reason}",
        rule_id=request.rule_id,
        scope=request.scope,
        limit=request.limit,
        observed=request.spent,
        trace_id=run.trace_id,
        unit=request.unit,
    )
