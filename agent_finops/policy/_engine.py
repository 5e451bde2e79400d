"""The policy engine: turns a `Policy` into decisions before and after every guarded call.

Framework-free. An integration calls, at the moment each happens:

* `check_run_start(trace_id, tags)`: mandatory tags, before a single token is sent;
* `check_before_model_call(...)`: loop rules, then one atomic reservation of the call's
  worst-case cost on every applicable budget, cost cap and rate limit (all or none);
* `check_after_model_call(call_id, cost=..., tokens=...)`: settle to the actual amounts
  (an unknown cost is charged its reservation, never 0);
* `release(call_id)`: the call failed, give the reservation back;
* `check_before_tool_call` / `check_after_tool_call`, `check_step` (ping-pong).

Each check returns a `Decision`; a blocked one (`deny`, `pause`) carries the exception to
raise (`decision.error`). Every decision is recorded in the ledger with the rule, scope,
limit, observed value and the policy version; a `pause` also persists an `ApprovalRecord`
that a human (console, Slack) decides. An approval lets *this run* exceed that rule by the
approved amount (budgets), or ignore that rule for the rest of the run (loop rules).

The "run" a per-run cap or an approval belongs to is the LangGraph thread when there is one
(so a run paused and resumed from its checkpoint keeps its cap and its approvals), otherwise
the trace.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from agent_finops import approvals
from agent_finops.exceptions import (
    ApprovalRequired,
    BudgetExceeded,
    MissingTags,
    PolicyViolation,
    RateLimitExceeded,
)
from agent_finops.ledger import (
    DEFAULT_RESERVATION_TTL,
    ApprovalRecord,
    BudgetStore,
    Claim,
    DecisionRecord,
    ReserveResult,
)
from agent_finops.policy._loops import LoopDetector, LoopHit
from agent_finops.policy._model import Budget, Policy, RateLimit
from agent_finops.policy._periods import window_for
from agent_finops.tracker import CostTracker

__all__ = ["Decision", "PolicyEngine"]

Outcome = Literal["allow", "warn", "deny", "pause", "shadow"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy decided about one call (or run start)."""

    action: Outcome
    trace_id: str
    call_id: str | None = None
    rule_id: str | None = None
    message: str = ""
    scope: dict[str, str] = field(default_factory=dict)
    limit: Decimal | None = None
    observed: Decimal | None = None
    estimate: Decimal | None = None
    unit: str = "usd"
    approval_id: str | None = None
    """Set on `pause`: the approval request a human must decide."""
    error: PolicyViolation | None = None
    """Set on `deny` and `pause`: what to raise."""

    @property
    def blocked(self) -> bool:
        """Whether the call must not go ahead."""
        return self.action in ("deny", "pause")


class PolicyEngine:
    """Applies one `Policy` to calls, with atomic reservations in the tracker's ledger."""

    def __init__(
        self,
        policy: Policy,
        tracker: CostTracker,
        *,
        budgets: BudgetStore | None = None,
        reservation_ttl: timedelta = DEFAULT_RESERVATION_TTL,
        resume_target: str | None = None,
        checkpoint_url: str | None = None,
        clock: Any = _utcnow,
    ) -> None:
        """Enforce `policy` on the calls `tracker` sees.

        Args:
            policy: the rules.
            tracker: where decisions are recorded and spans are looked up; its ledger's
                database also holds the budget counters and reservations.
            budgets: the reservation store (default: on the tracker's ledger engine).
            reservation_ttl: a reservation not settled within this is given back
                (its worker died); it must outlast your slowest model call.
            resume_target: `module:function` returning the compiled graph, stored on
                approval requests so `agent-finops approvals approve --resume` can resume
                the run from another process.
            checkpoint_url: where the graph's checkpoints are (stored with the request).
            clock: returns the current aware datetime.
        """
        self.policy = policy
        self.version = policy.version
        self.tracker = tracker
        self.ledger = tracker.ledger
        self.ledger.setup()  # creates the reservation tables with the rest of the schema
        self.budgets = budgets or self.ledger.budget_store(clock=clock)
        self.loops = LoopDetector(policy.loops)
        self.resume_target = resume_target
        self.checkpoint_url = checkpoint_url
        self._ttl = reservation_ttl
        self._clock = clock
        self._lock = threading.Lock()
        # Approved overspend per run: {counter key or loop rule id: extra (None = waived)}.
        self._grants: dict[str, dict[str, Decimal | None]] = {}
        self._stopped: dict[str, Decision] = {}
        self._pending: dict[str, Decision] = {}
        self._asking: set[str] = set()  # runs with approval requests open or to take up
        self._has_limits = bool(policy.budgets or policy.rate_limits)

    def close(self) -> None:
        """Give back the reservation store's connections (before closing the ledger)."""
        self.budgets.close()

    # -- run level ----------------------------------------------------------------------

    def check_run_start(
        self, trace_id: str, tags: Mapping[str, str], *, run_key: str | None = None
    ) -> Decision:
        """Mandatory tags: a run missing them is denied before any token is sent."""
        missing = self.policy.missing_tags(tags)
        if not missing:
            return Decision(action="allow", trace_id=trace_id)
        error = MissingTags(
            f"run {trace_id} is missing mandatory tags {', '.join(missing)} "
            f"(policy {self.version}); set them on the tracker, with attribute(...), or in "
            f"config['metadata']['finops']",
            missing=list(missing),
            trace_id=trace_id,
            rule_id="mandatory_tags",
        )
        decision = Decision(
            action="deny",
            trace_id=trace_id,
            rule_id="mandatory_tags",
            message=str(error),
            error=error,
        )
        self._record(decision, tags)
        self._stop(run_key or trace_id, decision)
        return decision

    def stopped(self, run_key: str) -> Decision | None:
        """The decision that stopped this run, if a rule denied it."""
        return self._stopped.get(run_key)

    def begin_run(self, run_key: str, *, thread_id: str | None = None) -> None:
        """Start a new invocation of this run: re-check, do not carry over, an earlier stop.

        One ledger query tells whether the run has approval requests to ask about or
        decisions to take up; runs without any skip those look-ups at every guarded node.
        """
        open_requests = self.ledger.has_open_requests(
            thread_id=thread_id, trace_id=None if thread_id else run_key
        )
        with self._lock:
            self._stopped.pop(run_key, None)
            self._pending.pop(run_key, None)
            if open_requests:
                self._asking.add(run_key)
            else:
                self._asking.discard(run_key)

    def end_run(self, run_key: str, *, paused: bool = False) -> None:
        """Forget a finished invocation's in-memory state.

        A paused run keeps its loop state, so a loop cannot restart its count by pausing;
        approvals live in the ledger.
        """
        if not paused:
            self.loops.forget(run_key)
        with self._lock:
            self._grants.pop(run_key, None)
            self._stopped.pop(run_key, None)
            self._pending.pop(run_key, None)
            self._asking.discard(run_key)

    def check_step(
        self,
        *,
        trace_id: str,
        run_key: str,
        tags: Mapping[str, str],
        step: str,
        thread_id: str | None = None,
    ) -> Decision:
        """A node/agent step: ping-pong detection.

        A blocked step is also kept as *pending*: the run's next guarded call (or guarded
        node) takes it with `take_pending` and stops there.
        """
        hits = self.loops.observe_step(run_key, step)
        decision = self._loop_decision(hits, trace_id, run_key, None, tags, thread_id=thread_id)
        if decision is None:
            return Decision(action="allow", trace_id=trace_id)
        if decision.blocked:
            with self._lock:
                self._pending[run_key] = decision
        return decision

    def take_decision(self, run_key: str, *, thread_id: str | None) -> ApprovalRecord | None:
        """A human decision made outside the run (console, Slack) not yet applied to it."""
        if run_key not in self._asking:
            return None
        return self.ledger.take_decision(
            thread_id=thread_id, trace_id=None if thread_id else run_key, at=self._clock()
        )

    def mark_applied(self, approval_id: str) -> None:
        """The run took up this decision (through its resume value)."""
        self.ledger.mark_applied(approval_id, at=self._clock())

    def take_pending(self, run_key: str) -> Decision | None:
        """A blocked step decision not yet acted on, if any (taken only once)."""
        with self._lock:
            return self._pending.pop(run_key, None)

    def pending_approval(self, run_key: str, *, thread_id: str | None) -> ApprovalRecord | None:
        """The oldest undecided approval request of this run, if any."""
        if run_key not in self._asking:
            return None
        pending = self.ledger.list_approvals(
            status="pending",
            thread_id=thread_id,
            trace_id=None if thread_id else run_key,
            limit=100,
        )
        return pending[-1] if pending else None

    # -- model calls --------------------------------------------------------------------

    def check_before_model_call(
        self,
        *,
        call_id: str,
        trace_id: str,
        run_key: str,
        tags: Mapping[str, str],
        model: str | None,
        provider: str | None,
        input_tokens: int,
        max_output_tokens: int | None,
        thread_id: str | None = None,
    ) -> Decision:
        """Loop rules, then reserve the call's worst case on every applicable limit."""
        now = self._clock()
        blocked = self._blocked_before(
            run_key,
            lambda: self.loops.observe_model_call(run_key, now),
            trace_id,
            call_id,
            tags,
            thread_id,
        )
        if blocked is not None:
            return blocked
        if not self._has_limits:
            return self._allow(trace_id, call_id, tags)
        max_out = max_output_tokens or self.policy.default_max_output_tokens
        usd = self.tracker.prices.estimate_max_cost(
            model, provider=provider, input_tokens=input_tokens, max_output_tokens=max_out
        )
        priced = usd is not None
        amounts = {
            "usd": usd if usd is not None else self.policy.fallback_reservation_usd,
            "tokens": Decimal(input_tokens + max_out),
            "calls": Decimal(1),
        }
        decision = self._reserve(
            call_id, trace_id, run_key, tags, amounts, now, thread_id, rate_limits=True
        )
        if not priced and decision.action == "allow":
            return Decision(
                action="allow",
                trace_id=trace_id,
                call_id=call_id,
                estimate=amounts["usd"],
                message=f"model {model!r} has no price: reserved the fallback {amounts['usd']} USD",
            )
        return decision

    def check_after_model_call(
        self, call_id: str, *, cost: Decimal | None, tokens: int | None
    ) -> bool:
        """Settle a model call to its actual cost and tokens.

        None means unknown: that unit is charged its reservation, never 0.
        """
        if not self._has_limits:
            return False
        actual_tokens = None if tokens is None else Decimal(tokens)
        actual = {"usd": cost, "tokens": actual_tokens, "calls": Decimal(1)}
        return bool(self.budgets.settle(call_id, actual))

    def release(self, call_id: str) -> bool:
        """The call failed: give its reservation back."""
        if not self._has_limits:
            return False
        return self.budgets.release(call_id)

    # -- tool calls ---------------------------------------------------------------------

    def check_before_tool_call(
        self,
        *,
        call_id: str,
        trace_id: str,
        run_key: str,
        tags: Mapping[str, str],
        tool: str,
        args: Any,
        fee_estimate: Decimal | None,
        thread_id: str | None = None,
    ) -> Decision:
        """Repeated-call loop rule, then reserve the tool's fee on USD budgets."""
        blocked = self._blocked_before(
            run_key,
            lambda: self.loops.observe_tool_call(run_key, tool, args),
            trace_id,
            call_id,
            tags,
            thread_id,
        )
        if blocked is not None:
            return blocked
        if not fee_estimate or not self._has_limits:
            return self._allow(trace_id, call_id, tags)
        amounts = {"usd": fee_estimate, "tokens": Decimal(0), "calls": Decimal(0)}
        return self._reserve(
            call_id, trace_id, run_key, tags, amounts, self._clock(), thread_id, rate_limits=False
        )

    def check_after_tool_call(self, call_id: str, *, cost: Decimal | None) -> bool:
        """Settle a tool call's fee."""
        if not self._has_limits:
            return False
        return bool(self.budgets.settle(call_id, {"usd": cost}))

    # -- approvals ----------------------------------------------------------------------

    def approval(self, approval_id: str) -> ApprovalRecord | None:
        """The approval request, as the ledger has it now."""
        return self.ledger.find_approval(approval_id)

    def decide(
        self,
        approval_id: str,
        *,
        approve: bool,
        by: str,
        extra: Decimal | None = None,
        reason: str | None = None,
    ) -> ApprovalRecord:
        """Decide a pending request (once: a second decision raises `LedgerError`).

        See `agent_finops.approvals.decide` for what an approval grants by default.
        """
        return approvals.decide(
            self.ledger,
            approval_id,
            approve=approve,
            by=by,
            extra=extra,
            reason=reason,
            now=self._clock(),
        )

    # -- internals ----------------------------------------------------------------------

    def _blocked_before(
        self,
        run_key: str,
        observe: Callable[[], list[LoopHit]],
        trace_id: str,
        call_id: str,
        tags: Mapping[str, str],
        thread_id: str | None,
    ) -> Decision | None:
        """Before any call: a blocked step still pending, then the loop rules it trips."""
        pending = self.take_pending(run_key)
        if pending is not None:
            return pending
        decision = self._loop_decision(
            observe(), trace_id, run_key, call_id, tags, thread_id=thread_id
        )
        return decision if decision is not None and decision.blocked else None

    def _allow(self, trace_id: str, call_id: str | None, tags: Mapping[str, str]) -> Decision:
        decision = Decision(action="allow", trace_id=trace_id, call_id=call_id)
        self._record(decision, tags)
        return decision

    def _claims(
        self,
        tags: Mapping[str, str],
        run_key: str,
        now: datetime,
        amounts: Mapping[str, Decimal],
        *,
        rate_limits: bool,
    ) -> list[tuple[Claim, Budget | RateLimit, dict[str, str]]]:
        claims: list[tuple[Claim, Budget | RateLimit, dict[str, str]]] = []
        tz = self.policy.tz
        for budget in self.policy.budgets:
            amount = amounts[budget.unit]
            if not amount:
                continue
            key = budget.counter_key(tags, now=now, tz=tz, run_id=run_key)
            if key is None:
                continue
            action = budget.effective_action(tags)
            window_end = None
            if not budget.is_cost_cap:
                window_end = window_for(budget.period, now, tz, window=budget.window)[1]
            claim = Claim(
                counter_key=key,
                rule_id=budget.id,
                unit=budget.unit,
                limit=budget.limit + self._extra(run_key, key),
                amount=amount,
                window_end=window_end,
                enforce=not budget.shadow and action in ("deny", "pause"),
            )
            claims.append((claim, budget, budget.scope.scope(tags) or {}))
        if rate_limits:
            for limit in self.policy.rate_limits:
                key = limit.counter_key(tags, now=now, tz=tz)
                if key is None:
                    continue
                start_end = window_for("rolling", now, tz, window=limit.window)
                claim = Claim(
                    counter_key=key,
                    rule_id=limit.id,
                    unit=limit.unit,
                    limit=limit.limit,
                    amount=amounts[limit.unit],
                    window_end=start_end[1],
                    enforce=not limit.shadow and limit.action == "deny",
                )
                claims.append((claim, limit, limit.scope.scope(tags) or {}))
        return claims

    def _reserve(
        self,
        call_id: str,
        trace_id: str,
        run_key: str,
        tags: Mapping[str, str],
        amounts: Mapping[str, Decimal],
        now: datetime,
        thread_id: str | None,
        *,
        rate_limits: bool,
    ) -> Decision:
        claims = self._claims(tags, run_key, now, amounts, rate_limits=rate_limits)
        if not claims:
            return self._allow(trace_id, call_id, tags)
        result = self.budgets.reserve(
            call_id, [c for c, _, _ in claims], trace_id=trace_id, now=now, ttl=self._ttl
        )
        if not result.granted:
            # A human may have approved overspend on this rule since we last looked.
            refused = result.refusals[0]
            if self._refresh_grant(
                run_key, thread_id, trace_id, refused.rule_id, refused.counter_key
            ):
                claims = self._claims(tags, run_key, now, amounts, rate_limits=rate_limits)
                result = self.budgets.reserve(
                    call_id, [c for c, _, _ in claims], trace_id=trace_id, now=now, ttl=self._ttl
                )
        if not result.granted:
            return self._refused(result, claims, trace_id, run_key, call_id, tags, thread_id)
        return self._granted(result, claims, trace_id, call_id, tags)

    def _granted(
        self,
        result: ReserveResult,
        claims: Sequence[tuple[Claim, Budget | RateLimit, dict[str, str]]],
        trace_id: str,
        call_id: str,
        tags: Mapping[str, str],
    ) -> Decision:
        final: Decision | None = None
        for usage, (claim, rule, scope) in zip(result.usage, claims, strict=True):
            if isinstance(rule, Budget) and rule.thresholds:
                for pct in rule.crossed_thresholds(usage.used - claim.amount, usage.used):
                    self._record(
                        Decision(
                            action="warn",
                            trace_id=trace_id,
                            call_id=call_id,
                            rule_id=rule.id,
                            message=f"threshold {pct}% of {rule.id} reached "
                            f"({usage.used} of {claim.limit} {claim.unit}, reserved)",
                            scope=scope,
                            limit=claim.limit,
                            observed=usage.used,
                            estimate=claim.amount,
                            unit=claim.unit,
                        ),
                        tags,
                        kind="threshold",
                    )
            if not claim.enforce and usage.used > claim.limit:
                action: Outcome = "shadow" if rule.shadow else "warn"
                would = rule.effective_action(tags) if isinstance(rule, Budget) else rule.action
                decision = Decision(
                    action=action,
                    trace_id=trace_id,
                    call_id=call_id,
                    rule_id=rule.id,
                    message=f"{rule.id} over its limit: {usage.used} > {claim.limit} "
                    f"{claim.unit}" + (f" (shadow: would {would})" if rule.shadow else ""),
                    scope=scope,
                    limit=claim.limit,
                    observed=usage.used,
                    estimate=claim.amount,
                    unit=claim.unit,
                )
                self._record(decision, tags)
                final = final or decision
        if final is not None:
            return final
        return self._allow(trace_id, call_id, tags)

    def _refused(
        self,
        result: ReserveResult,
        claims: Sequence[tuple[Claim, Budget | RateLimit, dict[str, str]]],
        trace_id: str,
        run_key: str,
        call_id: str,
        tags: Mapping[str, str],
        thread_id: str | None,
    ) -> Decision:
        by_key = {c[0].counter_key: c for c in claims}

        def pausable(counter_key: str) -> bool:
            rule = by_key[counter_key][1]
            return isinstance(rule, Budget) and rule.effective_action(tags) == "pause"

        # Ask a human only when no refused rule is a hard deny (else the approval is moot).
        refusal = next((r for r in result.refusals if not pausable(r.counter_key)), None)
        refusal = refusal or result.refusals[0]
        _, rule, scope = by_key[refusal.counter_key]
        scope_dict = scope
        where = _scope_text(scope)
        if isinstance(rule, RateLimit):
            action: Outcome = "deny"
            error: PolicyViolation = RateLimitExceeded(
                f"rate limit {rule.id!r} ({where}): {refusal.observed} "
                f"{refusal.unit} in the current window + this call {refusal.amount} > "
                f"{refusal.limit} (trace {trace_id})",
                rule_id=rule.id,
                scope=scope_dict,
                limit=refusal.limit,
                observed=refusal.observed,
                trace_id=trace_id,
                unit=refusal.unit,
            )
        else:
            action = "pause" if rule.effective_action(tags) == "pause" else "deny"
            kind = "cost cap" if rule.is_cost_cap else "budget"
            error = BudgetExceeded(
                f"{kind} {rule.id!r} ({where}, {rule.period}) would be "
                f"exceeded: {refusal.observed} {refusal.unit} spent or reserved + "
                f"{refusal.amount} estimated for this call > limit {refusal.limit} "
                f"(trace {trace_id})",
                rule_id=rule.id,
                scope=scope_dict,
                limit=refusal.limit,
                observed=refusal.observed,
                trace_id=trace_id,
                unit=refusal.unit,
            )
        return self._block(
            action,
            error,
            trace_id=trace_id,
            run_key=run_key,
            call_id=call_id,
            tags=tags,
            thread_id=thread_id,
            scope=scope_dict,
            limit=refusal.limit,
            observed=refusal.observed,
            estimate=refusal.amount,
            unit=refusal.unit,
            counter_key=refusal.counter_key,
        )

    def _loop_decision(
        self,
        hits: Sequence[LoopHit],
        trace_id: str,
        run_key: str,
        call_id: str | None,
        tags: Mapping[str, str],
        *,
        thread_id: str | None = None,
    ) -> Decision | None:
        result: Decision | None = None
        for hit in hits:
            if hit.rule_id in self._grants_for(run_key) or self._refresh_grant(
                run_key, thread_id, trace_id, hit.rule_id
            ):
                continue  # a human let this run go on despite this loop rule
            if hit.shadow or hit.action == "warn":
                decision = Decision(
                    action="shadow" if hit.shadow else "warn",
                    trace_id=trace_id,
                    call_id=call_id,
                    rule_id=hit.rule_id,
                    message=hit.detail + (f" (shadow: would {hit.action})" if hit.shadow else ""),
                    limit=Decimal(hit.limit),
                    observed=Decimal(hit.observed),
                    unit="loop",
                )
                self._record(decision, tags)
                result = result or decision
                continue
            return self._block(
                "pause" if hit.action == "pause" else "deny",
                hit.to_exception(),
                trace_id=trace_id,
                run_key=run_key,
                call_id=call_id,
                tags=tags,
                thread_id=thread_id,
                scope={},
                limit=Decimal(hit.limit),
                observed=Decimal(hit.observed),
                estimate=Decimal(0),
                unit="loop",
            )
        return result

    def _block(
        self,
        action: Outcome,
        error: PolicyViolation,
        *,
        trace_id: str,
        run_key: str,
        call_id: str | None,
        tags: Mapping[str, str],
        thread_id: str | None,
        scope: dict[str, str],
        limit: Decimal,
        observed: Decimal,
        estimate: Decimal,
        unit: str,
        counter_key: str | None = None,
    ) -> Decision:
        approval_id = None
        if action == "pause":
            approval = self._open_request(
                run_key, thread_id, error.rule_id
            ) or self.ledger.add_approval(
                ApprovalRecord(
                    approval_id=uuid.uuid4().hex,
                    trace_id=trace_id,
                    thread_id=thread_id,
                    rule_id=error.rule_id or "?",
                    scope=scope,
                    unit=unit,
                    spent=observed,
                    limit=limit,
                    estimate=estimate,
                    policy_version=self.version,
                    created_at=self._clock(),
                    message=str(error),
                    resume_target=self.resume_target,
                    counter_key=counter_key,
                    tags=dict(tags),
                )
            )
            approval_id = approval.approval_id
            with self._lock:
                self._asking.add(run_key)
            error = ApprovalRequired(
                f"paused for approval {approval_id}: {error}",
                approval_id=approval_id,
                rule_id=error.rule_id,
                scope=scope,
                limit=limit,
                observed=observed,
                trace_id=trace_id,
                unit=unit,
                estimate=estimate,
                thread_id=thread_id,
            )
        decision = Decision(
            action=action,
            trace_id=trace_id,
            call_id=call_id,
            rule_id=error.rule_id,
            message=str(error),
            scope=scope,
            limit=limit,
            observed=observed,
            estimate=estimate,
            unit=unit,
            approval_id=approval_id,
            error=error,
        )
        self._record(decision, tags)
        if action == "deny":
            self._stop(run_key, decision)
        self.tracker.flush()  # a blocked call's decision is durable before we raise
        return decision

    def _open_request(
        self, run_key: str, thread_id: str | None, rule_id: str | None
    ) -> ApprovalRecord | None:
        """A pending request of this run for the same rule: asked once, not once per retry."""
        for request in self.ledger.list_approvals(
            status="pending",
            thread_id=thread_id,
            trace_id=None if thread_id else run_key,
            limit=100,
        ):
            if request.rule_id == rule_id:
                return request
        return None

    def _stop(self, run_key: str, decision: Decision) -> None:
        with self._lock:
            self._stopped.setdefault(run_key, decision)

    def _grants_for(self, run_key: str) -> dict[str, Decimal | None]:
        with self._lock:
            return self._grants.setdefault(run_key, {})

    def _extra(self, run_key: str, counter_key: str) -> Decimal:
        with self._lock:  # read without creating: most runs never have an approval
            grants = self._grants.get(run_key)
            extra = grants.get(counter_key) if grants is not None else None
        return extra or Decimal(0)

    def _refresh_grant(
        self,
        run_key: str,
        thread_id: str | None,
        trace_id: str,
        rule_id: str,
        counter_key: str | None = None,
    ) -> bool:
        """Load this run's approvals for a budget bucket (or a loop rule) from the ledger.

        Budget approvals count for the bucket that refused (rule, scope and period window),
        so an approval for today's budget does not raise tomorrow's. True if new.
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
            return False
        loop = any(a.unit == "loop" for a in approved)
        total = None if loop else sum((a.extra or Decimal(0) for a in approved), Decimal(0))
        key = counter_key or rule_id
        grants = self._grants_for(run_key)
        with self._lock:
            known = key in grants and grants[key] == total
            grants[key] = total
        return not known

    def _record(
        self, decision: Decision, tags: Mapping[str, str], *, kind: str | None = None
    ) -> None:
        self.tracker.record_decision(
            DecisionRecord(
                decision_id=uuid.uuid4().hex,
                trace_id=decision.trace_id,
                call_id=decision.call_id,
                action=kind or decision.action,  # type: ignore[arg-type]
                rule_id=decision.rule_id,
                policy_version=self.version,
                created_at=self._clock(),
                scope=decision.scope,
                limit=decision.limit,
                observed=decision.observed,
                estimate=decision.estimate,
                unit=decision.unit,
                message=decision.message[:4000],
                tags=dict(tags),
            )
        )


def _scope_text(scope: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in scope.items()) or "all calls"
