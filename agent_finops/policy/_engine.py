"""The policy engine: turns a `Policy` into decisions before and after every guarded call.

Framework-free. The `RunGuard` (agent_finops.guard) calls, at the moment each happens:

* `check_run_start(trace_id, tags)`: mandatory tags, before a single token is sent;
* `check_before_model_call(...)`: loop rules, then one atomic reservation of the call's
  worst-case cost on every applicable budget, cost cap and rate limit (all or none);
* `check_after_model_call(call_id, cost=..., tokens=...)`: settle to the actual amounts
  (an unknown cost is charged its reservation, never 0);
* `release(call_id)`: the call failed, give the reservation back;
* `check_before_tool_call` / `check_after_tool_call`, `check_step` (ping-pong).

Each check returns a `Decision`; a blocked one (`deny`, `pause`) carries the exception to
raise (`decision.error`). Every decision is recorded in the ledger with the rule, scope,
limit, observed value and the policy version; a `pause` also files an `ApprovalRecord`
through the `ApprovalService`, which a human (console, Slack) decides. An approval lets
*this run* exceed that rule by the approved amount (budgets), or ignore that rule for the
rest of the run (loop rules).

The "run" a per-run cap or an approval belongs to is its thread when there is one (a
LangGraph thread, a crew checkpoint: a run paused and resumed keeps its cap and its
approvals), otherwise the trace.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from agent_finops._ids import new_id
from agent_finops.approvals import ApprovalService, ThresholdAlert
from agent_finops.clock import utcnow
from agent_finops.exceptions import (
    ApprovalRequired,
    BudgetExceeded,
    ConfigurationError,
    LedgerError,
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
    LeaseCharge,
    LeasedBudgetStore,
    Overrun,
    ReserveResult,
    Settlement,
    Unit,
)
from agent_finops.ledger._budget import checked_claim, exact_amount
from agent_finops.policy._loops import LoopDetector, LoopHit
from agent_finops.policy._model import Budget, Policy, RateLimit
from agent_finops.policy._periods import PeriodKind, window_for
from agent_finops.tracker import CostTracker

__all__ = ["Decision", "PolicyEngine"]

_log = logging.getLogger("agent_finops.policy")
_ZERO = Decimal(0)

Outcome = Literal["allow", "warn", "deny", "pause", "shadow"]


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
        approvals: ApprovalService | None = None,
        reservation_ttl: timedelta = DEFAULT_RESERVATION_TTL,
        resume_target: str | None = None,
        clock: Any = utcnow,
        budget_leases: bool = True,
    ) -> None:
        """Enforce `policy` on the calls `tracker` sees.

        Args:
            policy: the rules.
            tracker: where decisions are recorded and spans are looked up; its ledger's
                database also holds the budget counters and reservations.
            budgets: the reservation store (default: on the tracker's ledger, with budget
                leases unless `budget_leases=False`).
            approvals: files and answers approval requests (default: a service on the
                tracker's ledger, configured by the policy's `approvals:` section).
            reservation_ttl: the longest one call may hold budget, even from a live worker
                (a dead worker's reservations are given back within its store's worker
                lease, seconds); it must outlast your slowest model call.
            resume_target: the name under which the application registers how to resume
                its runs (`ResumeTargets`), stored on approval requests so an approver in
                another process (`agent-finops approvals approve --resume`) can resume them.
            clock: returns the current aware datetime.
            budget_leases: the default store decides in process from per-worker budget
                leases (`LeasedBudgetStore`; its charges are written with each call's cost
                event through the tracker). False: one database reservation per call
                (docs/scaling.md, "Budget leases").
        """
        self.policy = policy
        self.version = policy.version
        self.tracker = tracker
        self.ledger = tracker.ledger
        self.ledger.setup()  # creates the reservation tables with the rest of the schema
        self.budgets = budgets or self.ledger.budget_store(
            clock=clock, leases=budget_leases, charges_to=tracker if budget_leases else None
        )
        self.approvals = approvals or ApprovalService.from_settings(
            self.ledger, policy.approvals, clock=clock
        )
        self.loops = LoopDetector(policy.loops)
        self.resume_target = resume_target
        self._ttl = reservation_ttl
        self._clock = clock
        self._lock = threading.Lock()
        # Approved overspend per run: {counter key or loop rule id: extra (None = waived)}.
        self._grants: dict[str, dict[str, Decimal | None]] = {}
        self._stopped: dict[str, Decision] = {}
        self._pending: dict[str, Decision] = {}
        # Each run's claim plans, by (tags, rate limits?): see `_plan`.
        self._plans: dict[str, dict[tuple[Any, bool], _Plan]] = {}
        # A call's `allow`, recorded when the call ends (with its cost event): {call id:
        # (run key, record)}. See `_allow`.
        self._allowed: OrderedDict[str, tuple[str, DecisionRecord]] = OrderedDict()
        # Calls let through by rules that failed open: {call id: (those rules' claims,
        # whether nothing else was reserved for the call)}.
        self._open_calls: OrderedDict[str, tuple[tuple[Claim, ...], bool]] = OrderedDict()
        self._has_limits = bool(policy.budgets or policy.rate_limits)

    def close(self) -> None:
        """Record what is still held, give back the store's connections (before the ledger's)."""
        self.record_held()
        self.budgets.close()

    def record_held(self) -> None:
        """Record the `allow` decisions held for calls that have not ended.

        Before the tracker closes: `RunGuard.close()` calls it first.
        """
        self._record_allowed(lambda run_key: True)

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
        decisions to take up; runs without any skip those look-ups at every guarded step.
        """
        self.approvals.begin_run(thread_id=thread_id, trace_id=run_key)
        with self._lock:
            self._stopped.pop(run_key, None)
            self._pending.pop(run_key, None)

    def end_run(self, run_key: str, *, paused: bool = False) -> None:
        """Forget a finished invocation's in-memory state.

        A paused run keeps its loop state, so a loop cannot restart its count by pausing;
        approvals live in the ledger.
        """
        if not paused:
            self.loops.forget(run_key)
        self._record_allowed(lambda key: key == run_key)
        with self._lock:
            plans = self._plans.pop(run_key, None)
            self._grants.pop(run_key, None)
            self._stopped.pop(run_key, None)
            self._pending.pop(run_key, None)
        if plans and not paused and isinstance(self.budgets, LeasedBudgetStore):
            self.budgets.end_private(
                {p.counter_key for plan in plans.values() for p in plan.parts if p.private}
            )

    def check_step(
        self,
        *,
        trace_id: str,
        run_key: str,
        tags: Mapping[str, str],
        step: str,
        thread_id: str | None = None,
        level: str = "",
        step_key: str | None = None,
    ) -> Decision:
        """Control passed to a node or agent (`step`) at a graph level: ping-pong detection.

        A blocked step is also kept as *pending*: the run's next guarded call takes it
        (`take_pending`) and stops there.
        """
        call = _Call(trace_id, run_key, thread_id, tags, None, step_key)
        hits = self.loops.observe_step(run_key, step, level=level)
        decision = self._loop_decision(hits, call)
        if decision is None:
            return Decision(action="allow", trace_id=trace_id)
        if decision.blocked:
            with self._lock:
                self._pending[run_key] = decision
        return decision

    def take_pending(self, run_key: str) -> Decision | None:
        """A blocked step decision not yet acted on, if any (taken only once)."""
        with self._lock:
            return self._pending.pop(run_key, None)

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
        step_key: str | None = None,
    ) -> Decision:
        """Loop rules, then reserve the call's worst case on every applicable limit.

        Without `max_output_tokens` the model's output ceiling from the price catalog is
        reserved, else the policy's `default_max_output_tokens`.
        """
        now = self._clock()
        call = _Call(trace_id, run_key, thread_id, tags, call_id, step_key)
        blocked = self._blocked_before(call, lambda: self.loops.observe_model_call(run_key, now))
        if blocked is not None:
            return blocked
        if not self._has_limits:
            return self._allow(call)
        max_out = max_output_tokens or self._output_ceiling(model, provider, input_tokens)
        usd = self.tracker.prices.estimate_max_cost(
            model, provider=provider, input_tokens=input_tokens, max_output_tokens=max_out
        )
        priced = usd is not None
        amounts = {
            "usd": usd if usd is not None else self.policy.fallback_reservation_usd,
            "tokens": Decimal(input_tokens + max_out),
            "calls": Decimal(1),
        }
        decision = self._reserve(call, amounts, now, rate_limits=True)
        if not priced and decision.action == "allow":
            return Decision(
                action="allow",
                trace_id=trace_id,
                call_id=call_id,
                estimate=amounts["usd"],
                message=f"model {model!r} has no price: reserved the fallback {amounts['usd']} USD",
            )
        return decision

    def _output_ceiling(self, model: str | None, provider: str | None, input_tokens: int) -> int:
        # input_tokens=0: the caller's count is an upper bound; only a lower bound may be
        # subtracted from a context window.
        found = self.tracker.prices.max_output_tokens(model, provider, input_tokens=0)
        return found or self.policy.default_max_output_tokens

    def check_after_model_call(
        self,
        call_id: str,
        *,
        cost: Decimal | None,
        tokens: int | None,
        trace_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> bool:
        """Settle a model call to its actual cost and tokens.

        None means unknown: that unit is charged its reservation, never 0. A call that cost
        more than it reserved is charged in full (the next call sees it) and recorded as an
        `overrun` decision.
        """
        self._record_allowed_call(call_id)
        if not self._has_limits:
            return False
        actual_tokens = None if tokens is None else Decimal(tokens)
        actual = {"usd": cost, "tokens": actual_tokens, "calls": Decimal(1)}
        if self._charge_open(call_id, actual):
            return True
        settled = self.budgets.settle(call_id, actual)
        self._record_overruns(settled, call_id, trace_id, tags)
        return bool(settled)

    def release(self, call_id: str) -> bool:
        """The call failed: give its reservation back."""
        self._record_allowed_call(call_id)
        if not self._has_limits:
            return False
        if self._charge_open(call_id, {}, charge=False):
            return True
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
        step_key: str | None = None,
    ) -> Decision:
        """Repeated-call loop rule, then reserve the tool's fee on USD budgets."""
        call = _Call(trace_id, run_key, thread_id, tags, call_id, step_key)
        blocked = self._blocked_before(
            call, lambda: self.loops.observe_tool_call(run_key, tool, args)
        )
        if blocked is not None:
            return blocked
        if not fee_estimate or not self._has_limits:
            return self._allow(call)
        amounts = {"usd": fee_estimate, "tokens": Decimal(0), "calls": Decimal(0)}
        return self._reserve(call, amounts, self._clock(), rate_limits=False)

    def check_after_tool_call(
        self,
        call_id: str,
        *,
        cost: Decimal | None,
        trace_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> bool:
        """Settle a tool call's fee (an overrun is recorded as for model calls)."""
        self._record_allowed_call(call_id)
        if not self._has_limits:
            return False
        if self._charge_open(call_id, {"usd": cost}):
            return True
        settled = self.budgets.settle(call_id, {"usd": cost})
        self._record_overruns(settled, call_id, trace_id, tags)
        return bool(settled)

    # -- internals ----------------------------------------------------------------------

    def _record_overruns(
        self,
        settled: Settlement,
        call_id: str,
        trace_id: str | None,
        tags: Mapping[str, str] | None,
    ) -> None:
        for overrun in settled.overruns:
            self._record(
                Decision(
                    action="warn",
                    trace_id=trace_id or "?",
                    call_id=call_id,
                    rule_id=overrun.rule_id,
                    message=f"call {call_id} cost {overrun.actual} {overrun.unit}, more than "
                    f"the {overrun.reserved} reserved for it on {overrun.counter_key}; the "
                    "budget is charged the actual amount",
                    limit=overrun.reserved,
                    observed=overrun.actual,
                    estimate=overrun.reserved,
                    unit=overrun.unit,
                ),
                tags or {},
                kind="overrun",
            )
            self._thresholds_after_overrun(overrun, trace_id or "?", tags or {})

    def _thresholds_after_overrun(
        self, overrun: Overrun, trace_id: str, tags: Mapping[str, str]
    ) -> None:
        """Thresholds are judged when a call reserves; an overrun's excess can cross one."""
        rule = next((b for b in self.policy.budgets if b.id == overrun.rule_id), None)
        if rule is None or not rule.thresholds:
            return
        if overrun.used is not None and overrun.limit is not None:
            used, limit = overrun.used, overrun.limit
        else:
            state = self.budgets.counter(overrun.counter_key)
            if state is None:
                return
            used, limit = state.spent + state.reserved, state.limit
        scope = rule.scope.scope(tags) or {}
        for pct in rule.crossed_thresholds(used - overrun.excess, used):
            claim = Claim(
                counter_key=overrun.counter_key,
                rule_id=rule.id,
                unit=rule.unit,
                limit=limit,
                amount=overrun.excess,
            )
            call = _Call(trace_id, trace_id, None, tags, None, None)
            self._threshold(call, rule, claim, scope, pct, used)

    def _blocked_before(self, call: _Call, observe: Callable[[], list[LoopHit]]) -> Decision | None:
        """Before any call: a blocked step still pending, then the loop rules it trips."""
        pending = self.take_pending(call.run_key)
        if pending is not None:
            return pending
        decision = self._loop_decision(observe(), call)
        return decision if decision is not None and decision.blocked else None

    def _allow(self, call: _Call) -> Decision:
        """Allow a call; its decision is recorded when the call ends (settled or released).

        So it is in the same ledger write as the call's cost event and budget charges (the
        `RunGuard` ends a call inside `tracker.grouped()`): one transaction per call, not
        two, and the two are durable together. A call that never ends is recorded when its
        run ends, at `close()`, or when too many are held (`_MAX_HELD_CALLS`).
        """
        decision = Decision(action="allow", trace_id=call.trace_id, call_id=call.call_id)
        if call.call_id is None:
            self._record(decision, call.tags)
            return decision
        record = self._decision_record(decision, call.tags)
        with self._lock:
            self._allowed[call.call_id] = (call.run_key, record)
            overflow = len(self._allowed) - _MAX_HELD_CALLS
            oldest = [self._allowed.popitem(last=False)[1][1] for _ in range(max(overflow, 0))]
        for held in oldest:
            self.tracker.record_decision(held)
        return decision

    def _record_allowed_call(self, call_id: str) -> None:
        with self._lock:
            held = self._allowed.pop(call_id, None)
        if held is not None:
            self.tracker.record_decision(held[1])

    def _record_allowed(self, which: Callable[[str], bool]) -> None:
        with self._lock:
            ids = [call_id for call_id, (run_key, _) in self._allowed.items() if which(run_key)]
            records = [self._allowed.pop(call_id)[1] for call_id in ids]
        for record in records:
            self.tracker.record_decision(record)

    def _claims(
        self,
        call: _Call,
        now: datetime,
        amounts: Mapping[str, Decimal],
        *,
        rate_limits: bool,
    ) -> list[tuple[Claim, Budget | RateLimit, dict[str, str]]]:
        """The claims of one call: its plan's (cached per run, tags and window) with amounts."""
        run_key = call.run_key
        # A run without a thread cannot be resumed, so no other process ever charges it:
        # its caps are private to this one (its key is the trace id minted here).
        private = call.thread_id is None
        plan = self._plan(call.tags, run_key, now, rate_limits=rate_limits, private=private)
        with self._lock:  # read without creating: most runs never have an approval
            grants = self._grants.get(run_key)
        # Checked once per call, not once per claim: the claims are built unchecked.
        stored = {unit: exact_amount(amount, "amount", unit) for unit, amount in amounts.items()}
        claims: list[tuple[Claim, Budget | RateLimit, dict[str, str]]] = []
        for part in plan.parts:
            amount = stored[part.unit]
            budget = part.budget  # a rate limit counts a call of amount 0
            if budget and not amount:
                continue
            extra = grants.get(part.counter_key) if grants and budget else None
            limit = exact_amount(part.limit + extra, "limit") if extra else part.limit
            claim = checked_claim(
                part.counter_key,
                part.rule.id,
                part.unit,
                limit,
                amount,
                part.window_end,
                part.enforce,
                part.private,
            )
            claims.append((claim, part.rule, dict(part.scope)))
        return claims

    def _plan(
        self,
        tags: Mapping[str, str],
        run_key: str,
        now: datetime,
        *,
        rate_limits: bool,
        private: bool = False,
    ) -> _Plan:
        """The rules a call with `tags` in `run_key` is charged to, valid for a time window.

        Counter keys depend only on the tags, the run and the window `now` falls in, so a
        run's calls share one plan until the earliest of their windows ends.
        """
        key = (tuple(tags.items()), rate_limits)
        with self._lock:
            found = self._plans.get(run_key, {}).get(key)
        if found is not None and found.valid_from <= now < found.valid_until:
            return found
        plan = self._new_plan(tags, run_key, now, rate_limits=rate_limits, private=private)
        with self._lock:
            if len(self._plans) >= _MAX_PLANNED_RUNS and run_key not in self._plans:
                self._plans.clear()  # runs that never ended (end_run forgets a run's plans)
            self._plans.setdefault(run_key, {})[key] = plan
        return plan

    def _new_plan(
        self,
        tags: Mapping[str, str],
        run_key: str,
        now: datetime,
        *,
        rate_limits: bool,
        private: bool,
    ) -> _Plan:
        tz = self.policy.tz
        # Each applicable rule: its counter key, its time window (None: a cost cap), enforce.
        rules: list[tuple[Budget | RateLimit, str | None, PeriodKind | None, bool]] = [
            (
                budget,
                budget.counter_key(tags, now=now, tz=tz, run_id=run_key),
                None if budget.is_cost_cap else budget.period,
                not budget.shadow and budget.effective_action(tags) in ("deny", "pause"),
            )
            for budget in self.policy.budgets
        ]
        if rate_limits:
            rules += [
                (
                    limit,
                    limit.counter_key(tags, now=now, tz=tz),
                    "rolling",
                    not limit.shadow and limit.action == "deny",
                )
                for limit in self.policy.rate_limits
            ]
        parts: list[_Part] = []
        valid_from, valid_until = datetime.min.replace(tzinfo=now.tzinfo), _END_OF_TIME
        for rule, key, period, enforce in rules:
            if key is None:
                continue
            window_end = None
            if period is not None:
                window_start, window_end = window_for(period, now, tz, window=rule.window)
                valid_from = max(valid_from, window_start)
                valid_until = min(valid_until, window_end)
            parts.append(
                _Part(
                    key,
                    rule,
                    rule.scope.scope(tags) or {},
                    rule.unit,
                    exact_amount(rule.limit, f"{rule.id}.limit"),
                    window_end,
                    enforce,
                    isinstance(rule, Budget),
                    private and isinstance(rule, Budget) and rule.is_run_scoped(tags),
                )
            )
        return _Plan(tuple(parts), valid_from, valid_until)

    def _reserve(
        self, call: _Call, amounts: Mapping[str, Decimal], now: datetime, *, rate_limits: bool
    ) -> Decision:
        assert call.call_id is not None
        claims = self._claims(call, now, amounts, rate_limits=rate_limits)
        if not claims:
            return self._allow(call)
        result, claims = self._reserve_claims(call, claims, now)
        if result is not None and result.replayed and result.state != "reserved":
            # Its reservation has ended: deciding again would let a second call through
            # on a reservation that charges nothing more (a caller reusing its ids).
            raise ConfigurationError(
                f"call id {call.call_id!r} was already decided and its reservation is "
                f"{result.state}: each model or tool call needs a call id of its own"
            )
        if result is not None and not result.granted:
            # A human may have approved overspend on this rule since we last looked (here,
            # or in a parallel branch that loaded it first: compare limits, not freshness).
            refused = result.refusals[0]
            self._refresh_grant(call, refused.rule_id, refused.counter_key)
            kept = {c.counter_key for c, _, _ in claims}
            again = self._claims(call, now, amounts, rate_limits=rate_limits)
            claims = [c for c in again if c[0].counter_key in kept]
            if any(
                c.counter_key == refused.counter_key and c.limit > refused.limit
                for c, _, _ in claims
            ):
                result, claims = self._reserve_claims(call, claims, now)
        if result is None:  # every claim failed open
            return self._allow(call)
        if not result.granted:
            return self._refused(result, claims, call)
        return self._granted(result, claims, call)

    def _reserve_claims(
        self,
        call: _Call,
        claims: list[tuple[Claim, Budget | RateLimit, dict[str, str]]],
        now: datetime,
    ) -> tuple[ReserveResult | None, list[tuple[Claim, Budget | RateLimit, dict[str, str]]]]:
        """Reserve, or with the ledger unreachable, drop the rules that fail open.

        Returns the result (None: nothing left to reserve) and the claims it is for. A rule
        with `on_ledger_error: allow` is left out of the call's reservation (a `warn`
        decision says so) and charged the call's cost with its cost event (`_charge_open`);
        any other rule fails closed: the `LedgerError` propagates and the call is not sent.
        """
        assert call.call_id is not None
        try:
            return self._reserve_now(call.call_id, call.trace_id, claims, now), claims
        except LedgerError as exc:
            opened = [c for c in claims if c[1].on_ledger_error == "allow"]
            if not exc.retryable or not opened:
                raise
            error = exc
        kept = [c for c in claims if c[1].on_ledger_error != "allow"]
        # The rules that fail closed first: a call they stop is not let through (no warn).
        result = self._reserve_now(call.call_id, call.trace_id, kept, now) if kept else None
        if result is None or result.granted:
            self._failed_open(call, opened, error, alone=result is None)
        return result, kept

    def _reserve_now(
        self,
        call_id: str,
        trace_id: str,
        claims: Sequence[tuple[Claim, Budget | RateLimit, dict[str, str]]],
        now: datetime,
    ) -> ReserveResult:
        return self.budgets.reserve(
            call_id, [c for c, _, _ in claims], trace_id=trace_id, now=now, ttl=self._ttl
        )

    def _failed_open(
        self,
        call: _Call,
        opened: Sequence[tuple[Claim, Budget | RateLimit, dict[str, str]]],
        error: LedgerError,
        *,
        alone: bool,
    ) -> None:
        assert call.call_id is not None
        with self._lock:
            known = call.call_id in self._open_calls
            self._open_calls[call.call_id] = (tuple(c for c, _, _ in opened), alone)
            self._open_calls.move_to_end(call.call_id)
            while len(self._open_calls) > _MAX_HELD_CALLS:
                dropped, _ = self._open_calls.popitem(last=False)
                _log.warning("agent-finops: call %s failed open and never ended", dropped)
        if known:
            return
        for claim, rule, scope in opened:
            self._record(
                Decision(
                    action="warn",
                    trace_id=call.trace_id,
                    call_id=call.call_id,
                    rule_id=rule.id,
                    message=f"the ledger is unreachable ({error}): {rule.id} failed open "
                    "(on_ledger_error: allow); the call goes ahead unchecked by it and is "
                    f"charged to {claim.counter_key} with its cost event",
                    scope=scope,
                    limit=claim.limit,
                    estimate=claim.amount,
                    unit=claim.unit,
                ),
                call.tags,
            )

    def _charge_open(
        self, call_id: str, actual: Mapping[str, Decimal | None], *, charge: bool = True
    ) -> bool:
        """Charge a failed-open call's cost to the rules it skipped, with its cost event.

        True when every rule of the call failed open: the store holds nothing for it (its
        settle or release must not go to the database that is down).
        """
        with self._lock:
            claims, alone = self._open_calls.pop(call_id, ((), False))
        if not claims or not charge:
            return alone
        # A lease store must learn of spend its leases did not hold (its next grow of those
        # counters writes it first); any other store's counters see it once it is written.
        emit = (
            self.budgets.emit_charges
            if isinstance(self.budgets, LeasedBudgetStore)
            else self.tracker.emit_charges
        )
        emit(
            [
                LeaseCharge(
                    "",  # no lease: nothing is consumed, the spend is added
                    claim.counter_key,
                    claim.unit,
                    claim.limit,
                    spent,
                    _ZERO,
                    event_id=call_id,
                )
                for claim in claims
                if (spent := _actual(actual, claim))
            ]
        )
        return alone

    def _granted(
        self,
        result: ReserveResult,
        claims: Sequence[tuple[Claim, Budget | RateLimit, dict[str, str]]],
        call: _Call,
    ) -> Decision:
        final: Decision | None = None
        for usage, (claim, rule, scope) in zip(result.usage, claims, strict=True):
            if isinstance(rule, Budget) and rule.thresholds:
                for pct in rule.crossed_thresholds(usage.used - claim.amount, usage.used):
                    self._threshold(call, rule, claim, scope, pct, usage.used)
            if not claim.enforce and usage.used > claim.limit:
                action: Outcome = "shadow" if rule.shadow else "warn"
                would = (
                    rule.effective_action(call.tags) if isinstance(rule, Budget) else rule.action
                )
                decision = Decision(
                    action=action,
                    trace_id=call.trace_id,
                    call_id=call.call_id,
                    rule_id=rule.id,
                    message=f"{rule.id} over its limit: {usage.used} > {claim.limit} "
                    f"{claim.unit}" + (f" (shadow: would {would})" if rule.shadow else ""),
                    scope=scope,
                    limit=claim.limit,
                    observed=usage.used,
                    estimate=claim.amount,
                    unit=claim.unit,
                )
                self._record(decision, call.tags)
                final = final or decision
        if final is not None:
            return final
        return self._allow(call)

    def _threshold(
        self,
        call: _Call,
        rule: Budget,
        claim: Claim,
        scope: dict[str, str],
        pct: Decimal,
        used: Decimal,
    ) -> None:
        self._record(
            Decision(
                action="warn",
                trace_id=call.trace_id,
                call_id=call.call_id,
                rule_id=rule.id,
                message=f"threshold {pct}% of {rule.id} reached "
                f"({used} of {claim.limit} {claim.unit}, reserved)",
                scope=scope,
                limit=claim.limit,
                observed=used,
                estimate=claim.amount,
                unit=claim.unit,
            ),
            call.tags,
            kind="threshold",
        )
        self.approvals.threshold_crossed(
            ThresholdAlert(
                rule_id=rule.id,
                counter_key=claim.counter_key,
                percent=pct,
                used=used,
                limit=claim.limit,
                unit=claim.unit,
                trace_id=call.trace_id,
                scope=scope,
                tags=dict(call.tags),
            )
        )

    def _refused(
        self,
        result: ReserveResult,
        claims: Sequence[tuple[Claim, Budget | RateLimit, dict[str, str]]],
        call: _Call,
    ) -> Decision:
        by_key = {c[0].counter_key: c for c in claims}

        def pausable(counter_key: str) -> bool:
            rule = by_key[counter_key][1]
            return isinstance(rule, Budget) and rule.effective_action(call.tags) == "pause"

        # Ask a human only when no refused rule is a hard deny (else the approval is moot).
        refusal = next((r for r in result.refusals if not pausable(r.counter_key)), None)
        refusal = refusal or result.refusals[0]
        _, rule, scope = by_key[refusal.counter_key]
        where = _scope_text(scope)
        trace_id = call.trace_id
        run = f"thread {call.thread_id}" if call.thread_id else f"trace {trace_id}"
        if isinstance(rule, RateLimit):
            action: Outcome = "deny"
            error: PolicyViolation = RateLimitExceeded(
                f"rate limit {rule.id!r} ({where}): {refusal.observed} "
                f"{refusal.unit} in the current window + this call {refusal.amount} > "
                f"{refusal.limit} ({run})",
                rule_id=rule.id,
                scope=scope,
                limit=refusal.limit,
                observed=refusal.observed,
                trace_id=trace_id,
                unit=refusal.unit,
            )
        else:
            action = "pause" if rule.effective_action(call.tags) == "pause" else "deny"
            kind = "cost cap" if rule.is_cost_cap else "budget"
            error = BudgetExceeded(
                f"{kind} {rule.id!r} ({where}, {rule.period}) would be "
                f"exceeded: {refusal.observed} {refusal.unit} spent or reserved + "
                f"{refusal.amount} estimated for this call > limit {refusal.limit} "
                f"({run})",
                rule_id=rule.id,
                scope=scope,
                limit=refusal.limit,
                observed=refusal.observed,
                trace_id=trace_id,
                unit=refusal.unit,
            )
        return self._block(
            action,
            error,
            call,
            scope=scope,
            limit=refusal.limit,
            observed=refusal.observed,
            estimate=refusal.amount,
            unit=refusal.unit,
            counter_key=refusal.counter_key,
        )

    def _loop_decision(self, hits: Sequence[LoopHit], call: _Call) -> Decision | None:
        result: Decision | None = None
        for hit in hits:
            if hit.rule_id in self._grants_for(call.run_key) or self._refresh_grant(
                call, hit.rule_id
            ):
                continue  # a human let this run go on despite this loop rule
            if hit.shadow or hit.action == "warn":
                decision = Decision(
                    action="shadow" if hit.shadow else "warn",
                    trace_id=call.trace_id,
                    call_id=call.call_id,
                    rule_id=hit.rule_id,
                    message=hit.detail + (f" (shadow: would {hit.action})" if hit.shadow else ""),
                    limit=Decimal(hit.limit),
                    observed=Decimal(hit.observed),
                    unit="loop",
                )
                self._record(decision, call.tags)
                result = result or decision
                continue
            return self._block(
                "pause" if hit.action == "pause" else "deny",
                hit.to_exception(trace_id=call.trace_id, thread_id=call.thread_id),
                call,
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
        call: _Call,
        *,
        scope: dict[str, str],
        limit: Decimal,
        observed: Decimal,
        estimate: Decimal,
        unit: str,
        counter_key: str | None = None,
    ) -> Decision:
        approval_id = None
        if action == "pause":
            approval = self.approvals.open(
                ApprovalRecord(
                    approval_id=uuid.uuid4().hex,
                    trace_id=call.trace_id,
                    thread_id=call.thread_id,
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
                    tags=dict(call.tags),
                    step=call.step_key,
                )
            )
            approval_id = approval.approval_id
            error = ApprovalRequired(
                f"paused for approval {approval_id}: {error}",
                approval_id=approval_id,
                rule_id=error.rule_id,
                scope=scope,
                limit=limit,
                observed=observed,
                trace_id=call.trace_id,
                unit=unit,
                estimate=estimate,
                thread_id=call.thread_id,
            )
        decision = Decision(
            action=action,
            trace_id=call.trace_id,
            call_id=call.call_id,
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
        self._record(decision, call.tags)
        if action == "deny":
            self._stop(call.run_key, decision)
        self.tracker.flush()  # a blocked call's decision is durable before we raise
        return decision

    def _stop(self, run_key: str, decision: Decision) -> None:
        with self._lock:
            self._stopped.setdefault(run_key, decision)

    def _grants_for(self, run_key: str) -> dict[str, Decimal | None]:
        with self._lock:
            return self._grants.setdefault(run_key, {})

    def _refresh_grant(self, call: _Call, rule_id: str, counter_key: str | None = None) -> bool:
        """Load this run's approvals for a budget bucket (or a loop rule); True if new."""
        found, total = self.approvals.granted(
            thread_id=call.thread_id,
            trace_id=call.trace_id,
            rule_id=rule_id,
            counter_key=counter_key,
        )
        if not found:
            return False
        key = counter_key or rule_id
        grants = self._grants_for(call.run_key)
        with self._lock:
            known = key in grants and grants[key] == total
            grants[key] = total
        return not known

    def _record(
        self, decision: Decision, tags: Mapping[str, str], *, kind: str | None = None
    ) -> None:
        self.tracker.record_decision(self._decision_record(decision, tags, kind=kind))

    def _decision_record(
        self, decision: Decision, tags: Mapping[str, str], *, kind: str | None = None
    ) -> DecisionRecord:
        return DecisionRecord(
            decision_id=new_id(),
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


_MAX_HELD_CALLS = 10_000
"""Calls an engine holds an `allow` decision or failed-open claims of until they end."""
_MAX_PLANNED_RUNS = 10_000
"""Runs whose claim plans an engine keeps (more: they are dropped and made again)."""
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class _Part:
    """One rule a call is charged to, without the call's amount."""

    counter_key: str
    rule: Budget | RateLimit
    scope: dict[str, str]
    unit: Unit
    limit: Decimal
    window_end: datetime | None
    enforce: bool
    budget: bool
    """A budget (a rate limit counts calls of amount 0 too)."""
    private: bool
    """A run cap of a run only this process can charge (`Claim.private`)."""


@dataclass(frozen=True, slots=True)
class _Plan:
    """The rules a call with given tags in a given run is charged to, and when that holds."""

    parts: tuple[_Part, ...]
    valid_from: datetime
    valid_until: datetime


def _actual(actual: Mapping[str, Decimal | None], claim: Claim) -> Decimal:
    """A call's actual amount in a claim's unit; unknown: its estimate (never 0)."""
    found = actual.get(claim.unit)
    return claim.amount if found is None else found


@dataclass(frozen=True, slots=True)
class _Call:
    """Who is asking: the run, its tags, and the call and step (if any)."""

    trace_id: str
    run_key: str
    thread_id: str | None
    tags: Mapping[str, str]
    call_id: str | None
    step_key: str | None


def _scope_text(scope: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in scope.items()) or "all calls"
