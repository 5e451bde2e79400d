"""The approval service: file a request, decide it once, apply it once, expire it.

Every approval flows through one `ApprovalService`, whichever process or channel it comes
from: the policy engine files requests when a `pause` rule trips; the console, Slack or the
run's own resume value decide them. The service checks who may decide (`Approvers`, per
scope), makes the first decision win atomically (`AlreadyDecided` for the others), writes the
decision to the audit trail with the approver's id, notifies every `ApprovalChannel`, and
expires undecided requests to their configured outcome.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from agent_finops.approvals._answer import to_extra
from agent_finops.approvals._approvers import Approver, Approvers
from agent_finops.approvals._channel import ApprovalChannel, ThresholdAlert
from agent_finops.approvals._payload import default_extra
from agent_finops.approvals._resume import ResumeTargets
from agent_finops.clock import utcnow
from agent_finops.exceptions import (
    AlreadyDecided,
    ApprovalNotFound,
    ApproverNotAllowed,
    ConfigurationError,
)
from agent_finops.ledger import ApprovalRecord, DecisionRecord, Ledger

__all__ = ["ApprovalService", "ExpiryOutcome"]

log = logging.getLogger("agent_finops")

ExpiryOutcome = Literal["deny", "approve"]


class ApprovalService:
    """Approval requests on one ledger: open, decide (once, by someone allowed), expire."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        channels: Sequence[ApprovalChannel] = (),
        approvers: Approvers | None = None,
        expire_after: timedelta | None = None,
        on_expiry: ExpiryOutcome = "deny",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """Serve approvals stored in `ledger`.

        Args:
            ledger: where requests, decisions and the audit trail live.
            channels: notified of every request, decision, expiry and threshold alert.
            approvers: who may decide what (default: anyone).
            expire_after: an undecided request expires this long after it was filed
                (None: never).
            on_expiry: what an expired request means for its run: `deny` (default; the
                run stops) or `approve` (it goes on with the default extra). Stored on each
                request, so every process applies the outcome it was filed with.
            clock: returns the current aware datetime.
        """
        self.ledger = ledger
        self.channels = list(channels)
        self.approvers = approvers or Approvers()
        self.expire_after = expire_after
        self.on_expiry: ExpiryOutcome = on_expiry
        self._clock = clock
        self._lock = threading.Lock()
        self._open_runs: set[str] = set()
        """Runs known to have requests open or decisions to take up (skips look-ups)."""

    @classmethod
    def from_settings(
        cls,
        ledger: Ledger,
        settings: Any,
        *,
        channels: Sequence[ApprovalChannel] = (),
        clock: Callable[[], datetime] = utcnow,
    ) -> ApprovalService:
        """A service configured by a policy file's `approvals:` section."""
        rules = [(rule.scope.matches, rule.allow) for rule in settings.approvers]
        return cls(
            ledger,
            channels=channels,
            approvers=Approvers(rules),
            expire_after=settings.expire_after,
            on_expiry=settings.on_expiry,
            clock=clock,
        )

    # -- requests -------------------------------------------------------------------------

    def open(self, request: ApprovalRecord) -> ApprovalRecord:
        """File a request, or return the run's pending request for the same rule and step.

        A step that pauses again while its request is pending asks once, not once per try.
        """
        existing = self._pending_like(request)
        if existing is not None:
            return existing
        if request.expires_at is None and self.expire_after is not None:
            request.expires_at = request.created_at + self.expire_after
            request.on_expiry = self.on_expiry
        if request.approvers is None and self.approvers.configured:
            request.approvers = sorted(self.approvers.allowed_for(request.tags))
        stored = self.ledger.add_approval(request)
        with self._lock:
            self._open_runs.add(_run_key(stored))
        self._notify("request_opened", stored)
        return stored

    def _pending_like(self, request: ApprovalRecord) -> ApprovalRecord | None:
        for other in self.pending(thread_id=request.thread_id, trace_id=request.trace_id):
            if other.rule_id == request.rule_id and other.step == request.step:
                return other
        return None

    def get(self, approval_id: str) -> ApprovalRecord:
        """A request by id or unique prefix; `ApprovalNotFound` otherwise.

        A pending request past its expiry is expired first (so a run resumed after the
        deadline gets the configured outcome even if no sweep ran).
        """
        found = self.ledger.get_approval(approval_id)
        if found is None:
            raise ApprovalNotFound(f"no approval request {approval_id!r}", key=approval_id)
        if found.status == "pending" and _due(found, self._clock()):
            return self._expire(found, self._clock()) or self.get(found.approval_id)
        return found

    def pending(
        self, *, thread_id: str | None, trace_id: str | None, step: str | None = None
    ) -> list[ApprovalRecord]:
        """A run's undecided requests, oldest first (of one step, if given)."""
        requests = self.ledger.list_approvals(
            status="pending",
            thread_id=thread_id,
            trace_id=None if thread_id else trace_id,
            limit=100,
        )
        requests.reverse()
        return [r for r in requests if step is None or _within(r.step, step)]

    def requests(self, *, status: str | None = "pending", limit: int = 50) -> list[ApprovalRecord]:
        """Requests, newest first (expired ones are swept first)."""
        self.expire_due()
        return self.ledger.list_approvals(status=status, limit=limit)  # type: ignore[arg-type]

    # -- decisions ------------------------------------------------------------------------

    def decide(
        self,
        approval_id: str,
        *,
        approve: bool,
        by: Approver | str,
        extra: Decimal | None = None,
        reason: str | None = None,
    ) -> ApprovalRecord:
        """Decide a pending request; the first decision wins.

        Raises `ApprovalNotFound`, `AlreadyDecided` (also when it has just expired),
        `ApproverNotAllowed` (the attempt is recorded in the audit trail; nothing changes)
        or `ConfigurationError` for a bad `extra`.
        """
        approver = Approver.of(by)
        request = self.get(approval_id)
        now = self._clock()
        if request.status != "pending":
            raise AlreadyDecided(
                request.approval_id,
                status=request.status,
                decided_by=request.decided_by,
                decided_at=request.decided_at,
            )
        if not self.may_decide(approver, request):
            self._audit(request, "refused", approver.id, now, reason="not on the approvers list")
            raise ApproverNotAllowed(request.approval_id, approver=approver.id, scope=request.scope)
        if extra is not None:  # the same bounds as an answer's (one rule for every channel)
            try:
                extra = to_extra(extra)
            except ValueError as exc:
                raise ConfigurationError(
                    "bad approved extra", field="extra", value=extra, expected=str(exc)
                ) from None
        if approve and extra is None:
            extra = default_extra(request)
        decided = self.ledger.decide_approval(
            request.approval_id,
            status="approved" if approve else "denied",
            by=approver.id,
            at=now,
            reason=reason or None,
            extra=extra if approve else None,
        )
        self._audit(decided, decided.status, approver.id, now, reason=reason)
        self._notify("request_decided", decided)
        return decided

    def may_decide(self, approver: Approver | str, request: ApprovalRecord) -> bool:
        """Whether `approver` may decide `request`.

        The list stored with the request when it was filed rules, whichever process or
        channel decides; a request filed without one (its app had no allow-list) is checked
        against this service's own list, so an approver service can be stricter.
        """
        approver = Approver.of(approver)
        if request.approvers is not None:
            return _may_decide(approver, request)
        return self.approvers.allows(approver, request.tags)

    def expire_due(self, now: datetime | None = None) -> list[ApprovalRecord]:
        """Give every request past its `expires_at` its configured outcome; the expired ones."""
        now = now or self._clock()
        out = []
        for request in self.ledger.list_approvals(status="pending", limit=10_000):
            if _due(request, now):
                expired = self._expire(request, now)
                if expired is not None:
                    out.append(expired)
        return out

    def _expire(self, request: ApprovalRecord, now: datetime) -> ApprovalRecord | None:
        approve = request.on_expiry == "approve"  # as filed: every process agrees
        try:
            expired = self.ledger.decide_approval(
                request.approval_id,
                status="approved" if approve else "expired",
                by="expiry",
                at=now,
                reason=f"expired undecided at {request.expires_at:%Y-%m-%d %H:%M:%S %Z}",
                extra=default_extra(request) if approve else None,
            )
        except AlreadyDecided:
            return None  # someone decided it at the same moment: theirs stands
        self._audit(expired, "expired", "expiry", now, reason=expired.reason)
        self._notify("request_expired", expired)
        return expired

    # -- applying decisions to runs --------------------------------------------------------

    def begin_run(self, *, thread_id: str | None, trace_id: str) -> bool:
        """A run (re)starts: whether it has requests open or decisions to take up.

        Only a thread's run can come back (be resumed, here or in another worker), so only a
        thread is looked up in the ledger; a run without one is its trace, which the
        framework makes new for every invocation: it has requests only if this service
        opened them (a guard that re-begins the same trace, which is then looked up).
        """
        key = thread_id or trace_id
        if thread_id is None:
            with self._lock:
                if key not in self._open_runs:
                    return False
        found = self.ledger.has_open_requests(
            thread_id=thread_id, trace_id=None if thread_id else trace_id
        ) or bool(self._expired_unapplied(thread_id=thread_id, trace_id=trace_id))
        with self._lock:
            if found:
                self._open_runs.add(key)
            else:
                self._open_runs.discard(key)
        return found

    def has_open(self, *, thread_id: str | None, trace_id: str) -> bool:
        """Cheap: whether this run may have something to ask about or take up."""
        return (thread_id or trace_id) in self._open_runs

    def take_decision(self, *, thread_id: str | None, trace_id: str) -> ApprovalRecord | None:
        """A decision made outside the run (console, Slack, expiry) not yet applied to it.

        It is marked applied atomically: of several workers resuming a thread, one takes it.
        """
        if not self.has_open(thread_id=thread_id, trace_id=trace_id):
            return None
        self.expire_due()
        decided = self.ledger.take_decision(
            thread_id=thread_id, trace_id=None if thread_id else trace_id, at=self._clock()
        )
        if decided is not None:
            return decided
        # An expiry to `deny` leaves status `expired`, which the run must take up too (it
        # stops), also when another process (the approver service's sweep) expired it.
        for expired in self._expired_unapplied(thread_id=thread_id, trace_id=trace_id):
            self.ledger.mark_applied(expired.approval_id, at=self._clock())
            expired.applied_at = self._clock()
            return expired
        return None

    def _expired_unapplied(self, *, thread_id: str | None, trace_id: str) -> list[ApprovalRecord]:
        # Only a thread can be resumed after an expiry; a run without one has ended.
        # (One more query per invocation of a thread: fold it into the ledger's
        # `has_open_requests` when its protocol allows.)
        if thread_id is None:
            return []
        found = self.ledger.list_approvals(status="expired", thread_id=thread_id, limit=100)
        return [r for r in reversed(found) if r.applied_at is None]

    def mark_applied(self, approval_id: str) -> None:
        """The run took up this decision (through its resume value)."""
        self.ledger.mark_applied(approval_id, at=self._clock())

    def granted(
        self,
        *,
        thread_id: str | None,
        trace_id: str,
        rule_id: str,
        counter_key: str | None = None,
    ) -> tuple[bool, Decimal | None]:
        """What this run was approved to overspend on a rule's bucket.

        Returns (any approval?, total extra); the extra is None for a loop rule (waived).
        Budget approvals count for the bucket that refused (rule, scope and window), so an
        approval for today's budget does not raise tomorrow's.
        """
        approved = [
            a
            for a in self.ledger.list_approvals(
                status="approved",
                thread_id=thread_id,
                trace_id=None if thread_id else trace_id,
                limit=10_000,
            )
            if a.rule_id == rule_id and (counter_key is None or a.counter_key == counter_key)
        ]
        if not approved:
            return False, None
        if any(a.unit == "loop" for a in approved):
            return True, None
        return True, sum((a.extra or Decimal(0) for a in approved), Decimal(0))

    def threshold_crossed(self, alert: ThresholdAlert) -> None:
        """Tell every channel a budget crossed a threshold."""
        self._notify("threshold_crossed", alert)

    def resume(self, request: ApprovalRecord, targets: ResumeTargets) -> Any:
        """Resume a decided request's run through a target the application registered."""
        return targets.resume(request)

    # -- internals --------------------------------------------------------------------------

    def _audit(
        self,
        request: ApprovalRecord,
        action: Any,
        actor: str,
        at: datetime,
        *,
        reason: str | None,
    ) -> None:
        suffix = f"{action}:{actor}:{at.timestamp()}" if action == "refused" else action
        self.ledger.write(
            decisions=[
                DecisionRecord(
                    decision_id=f"{request.approval_id}:{suffix}"[:128],
                    trace_id=request.trace_id,
                    call_id=None,
                    action=action,
                    rule_id=request.rule_id,
                    policy_version=request.policy_version,
                    created_at=at,
                    scope=request.scope,
                    limit=request.limit,
                    observed=request.spent,
                    estimate=request.estimate if action != "approved" else request.extra,
                    unit=request.unit,
                    message=reason or "",
                    actor=actor,
                    tags=request.tags,
                )
            ]
        )

    def _notify(self, event: str, subject: Any) -> None:
        for channel in self.channels:
            try:
                getattr(channel, event)(subject)
            except Exception:  # a channel's failure never loses the request
                log.exception(
                    "agent-finops: approval channel %s failed on %s; the request stays "
                    "in the ledger (agent-finops approvals list)",
                    getattr(channel, "name", type(channel).__name__),
                    event,
                )


def _may_decide(approver: Approver, request: ApprovalRecord) -> bool:
    """The list stored with the request rules, whichever process or channel decides."""
    if request.approvers is None:
        return True
    return Approvers([(lambda _tags: True, request.approvers)]).allows(approver, request.tags)


STEP_SEPARATOR = "|"
"""Step keys are paths (`outer:task|inner:task`, LangGraph's checkpoint namespaces): a request
filed by a nested step also belongs to every step around it."""


def _within(step: str | None, outer: str) -> bool:
    return step is not None and (step == outer or step.startswith(outer + STEP_SEPARATOR))


def _run_key(request: ApprovalRecord) -> str:
    return request.thread_id or request.trace_id


def _due(request: ApprovalRecord, now: datetime) -> bool:
    expires = request.expires_at
    if expires is None:
        return False
    if expires.tzinfo is None:  # stored naive (SQLite): UTC
        expires = expires.replace(tzinfo=UTC)
    return expires <= now
