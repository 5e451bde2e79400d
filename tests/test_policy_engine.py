"""The policy engine on a real ledger: reservations, caps, pauses, approvals, shadow, loops."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from agent_finops import (
    ApprovalRequired,
    BudgetExceeded,
    ConfigurationError,
    CostTracker,
    LedgerError,
    LoopDetected,
    MissingTags,
    RateLimitExceeded,
    SQLLedger,
)
from agent_finops.policy import Policy, PolicyEngine

M = Decimal(1_000_000)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


# gpt-4o-mini worst case: every input token at the dearest input rate ($0.15), plus max output ($0.60).
def worst(inp: int, out: int) -> Decimal:
    return (inp * Decimal("0.15") + out * Decimal("0.60")) / M


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def tracker(shared_ledger: SQLLedger) -> Iterator[CostTracker]:
    t = CostTracker(shared_ledger)
    yield t
    t.close()


def engine(
    tracker: CostTracker, policy: dict[str, Any], clock: Clock | None = None
) -> PolicyEngine:
    return PolicyEngine(Policy.from_mapping(policy), tracker, clock=clock or Clock())


def call(
    e: PolicyEngine,
    n: int,
    *,
    tags: dict[str, str] | None = None,
    run: str = "run-1",
    inp: int = 1000,
    out: int = 100,
    model: str = "gpt-4o-mini",
) -> Any:
    return e.check_before_model_call(
        call_id=f"{run}-call-{n}",
        trace_id=run,
        run_key=run,
        tags=tags or {"task": "t1", "team": "support"},
        model=model,
        provider="openai",
        input_tokens=inp,
        max_output_tokens=out,
    )


def test_task_cap_stops_the_call_that_would_cross_it(tracker: CostTracker) -> None:
    cap = worst(1000, 100) * 3  # room for exactly three worst cases
    e = engine(
        tracker,
        {"budgets": [{"id": "task-cap", "limit": str(cap), "period": "task", "action": "deny"}]},
    )
    for n in range(3):
        assert call(e, n).action == "allow"
    fourth = call(e, 3)
    assert fourth.action == "deny"
    assert isinstance(fourth.error, BudgetExceeded)
    assert fourth.error.rule_id == "task-cap"
    assert fourth.error.limit == cap
    assert fourth.error.observed == cap  # three reservations outstanding
    # Settling below the estimate frees room: the next call fits again.
    e.check_after_model_call("run-1-call-0", cost=Decimal("0.00001"), tokens=500)
    assert call(e, 4).action == "deny"  # 0.00001 spent + 0.00042 reserved + 0.00021 > cap
    e.check_after_model_call("run-1-call-1", cost=Decimal(0), tokens=0)
    assert call(e, 5).action == "allow"  # 0.00001 + 0.00021 + 0.00021 <= cap
    # Another task has its own cap.
    assert call(e, 6, tags={"task": "t2"}).action == "allow"
    tracker.flush()
    decisions = tracker.ledger.decisions_for("run-1")
    assert [d.action for d in decisions].count("deny") == 2
    deny = next(d for d in decisions if d.action == "deny")
    assert deny.rule_id == "task-cap" and deny.policy_version == e.version
    assert deny.scope == {} and deny.limit == cap


def test_unknown_cost_is_charged_its_reservation(tracker: CostTracker) -> None:
    e = engine(
        tracker,
        {
            "fallback_reservation_usd": "0.40",
            "budgets": [{"id": "run-cap", "limit": "1.00", "period": "run"}],
        },
    )
    d = call(e, 0, model="mystery-model")
    assert d.action == "allow" and d.estimate == Decimal("0.40")
    e.check_after_model_call("run-1-call-0", cost=None, tokens=10)
    assert call(e, 1, model="mystery-model").action == "allow"
    e.check_after_model_call("run-1-call-1", cost=None, tokens=10)
    third = call(e, 2, model="mystery-model")
    assert third.action == "deny"  # 0.80 charged (never 0) + 0.40 > 1.00
    assert third.error is not None and third.error.observed == Decimal("0.80")


def test_release_gives_the_reservation_back(tracker: CostTracker) -> None:
    e = engine(
        tracker, {"budgets": [{"id": "cap", "limit": str(worst(1000, 100)), "period": "run"}]}
    )
    assert call(e, 0).action == "allow"
    assert call(e, 1).action == "deny"
    assert e.release("run-1-call-0")
    assert call(e, 2).action == "allow"


@pytest.mark.parametrize("end", ["settle", "release"])
def test_a_call_id_used_again_after_its_call_ended_is_refused_clearly(
    tracker: CostTracker, end: str
) -> None:
    e = engine(tracker, {"budgets": [{"id": "task-cap", "limit": "1.00", "period": "task"}]})
    assert call(e, 0).action == "allow"
    if end == "settle":
        e.check_after_model_call("run-1-call-0", cost=Decimal("0.25"), tokens=10)
    else:
        assert e.release("run-1-call-0")
    with pytest.raises(ConfigurationError, match="'run-1-call-0' was already decided") as info:
        call(e, 0)
    assert "needs a call id of its own" in str(info.value)
    # Nothing was reserved or charged for the refused reuse; a fresh id is decided as usual.
    assert call(e, 1).action == "allow"
    e.check_after_model_call("run-1-call-1", cost=Decimal("0.5"), tokens=10)
    assert call(e, 2, inp=1, out=1).action == "allow"  # 0.25 or 0 + 0.5 spent: room left


def test_pause_then_approve_lets_this_run_go_on(tracker: CostTracker) -> None:
    limit = worst(1000, 100)
    e = engine(
        tracker,
        {
            "budgets": [
                {
                    "id": "team-daily",
                    "scope": {"team": "*"},
                    "limit": str(limit),
                    "period": "daily",
                    "action": "pause",
                }
            ]
        },
    )
    assert call(e, 0).action == "allow"
    paused = call(e, 1)
    assert paused.action == "pause"
    assert isinstance(paused.error, ApprovalRequired)
    request = e.approvals.get(paused.approval_id or "")
    assert request is not None and request.status == "pending"
    assert (request.rule_id, request.scope, request.limit, request.spent) == (
        "team-daily",
        {"team": "support"},
        limit,
        limit,
    )
    assert request.estimate == limit
    e.approvals.decide(request.approval_id, approve=True, by="alice", extra=limit)
    assert call(e, 2).action == "allow"  # this run may now go one estimate over
    assert call(e, 3).action == "pause"  # but no further
    # Another run of the same team is still held at the original limit.
    assert call(e, 0, run="run-2").action == "pause"
    tracker.flush()
    actions = [d.action for d in tracker.ledger.decisions_for("run-1")]
    assert "approved" in actions and actions.count("pause") == 2


def test_deny_decision_by_a_human(tracker: CostTracker) -> None:
    e = engine(
        tracker,
        {"budgets": [{"id": "cap", "limit": "0.000001", "period": "run", "action": "pause"}]},
    )
    paused = call(e, 0)
    decided = e.approvals.decide(
        paused.approval_id or "", approve=False, by="bob", reason="too dear"
    )
    assert decided.status == "denied" and decided.extra is None
    assert call(e, 1).action == "pause"  # a denial grants nothing


def test_critical_runs_are_exempt_from_deny(tracker: CostTracker) -> None:
    e = engine(
        tracker,
        {"budgets": [{"id": "cap", "limit": "0.000001", "period": "run", "exempt_critical": True}]},
    )
    d = call(e, 0, tags={"task": "t", "critical": "true"})
    assert d.action == "warn" and d.rule_id == "cap"
    assert call(e, 0, run="run-2").action == "deny"


def test_shadow_rule_records_but_never_blocks(tracker: CostTracker) -> None:
    e = engine(
        tracker,
        {"budgets": [{"id": "try-me", "limit": "0.000001", "period": "run", "shadow": True}]},
    )
    d = call(e, 0)
    assert d.action == "shadow" and not d.blocked
    assert "would deny" in d.message
    tracker.flush()
    assert [x.action for x in tracker.ledger.decisions_for("run-1")] == ["shadow"]


def test_thresholds_are_recorded(tracker: CostTracker) -> None:
    limit = worst(1000, 100) * 10
    e = engine(
        tracker,
        {"budgets": [{"id": "b", "limit": str(limit), "period": "daily", "thresholds": [50, 80]}]},
    )
    for n in range(8):
        call(e, n)
    tracker.flush()
    thresholds = [
        d.message for d in tracker.ledger.decisions_for("run-1") if d.action == "threshold"
    ]
    assert len(thresholds) == 2
    assert "threshold 50%" in thresholds[0] and "threshold 80%" in thresholds[1]


def test_rate_limit_per_agent(tracker: CostTracker) -> None:
    clock = Clock()
    e = engine(
        tracker,
        {"rate_limits": [{"id": "rpm", "scope": {"agent": "*"}, "window": "1m", "max_calls": 2}]},
        clock,
    )
    a = {"agent": "researcher"}
    assert call(e, 0, tags=a).action == "allow"
    assert call(e, 1, tags=a).action == "allow"
    third = call(e, 2, tags=a)
    assert isinstance(third.error, RateLimitExceeded)
    assert third.error.scope == {"agent": "researcher"}
    assert call(e, 3, tags={"agent": "writer"}).action == "allow"
    clock.now = NOW.replace(minute=1)
    assert call(e, 4, tags=a).action == "allow"  # next window


def test_mandatory_tags_reject_before_any_call(tracker: CostTracker) -> None:
    e = engine(
        tracker,
        {
            "mandatory_tags": [
                {"when": {"environment": "production"}, "require": ["team", "cost_center"]}
            ]
        },
    )
    d = e.check_run_start("run-1", {"environment": "production", "team": "a"})
    assert isinstance(d.error, MissingTags)
    assert d.error.missing == ["cost_center"]
    assert "cost_center" in str(d.error)
    assert e.check_run_start("run-2", {"environment": "staging"}).action == "allow"


def test_repeated_tool_call_loop(tracker: CostTracker) -> None:
    e = engine(
        tracker, {"loops": [{"id": "same-tool", "kind": "repeated_tool_call", "max_repeats": 3}]}
    )

    def tool(n: int, args: Any) -> Any:
        return e.check_before_tool_call(
            call_id=f"t{n}",
            trace_id="run-1",
            run_key="run-1",
            tags={},
            tool="search",
            args=args,
            fee_estimate=None,
        )

    assert tool(0, {"q": "x", "page": 1}).action == "allow"
    assert tool(1, '{"page": 1, "q": "x"}').action == "allow"  # same call, other spelling
    assert tool(2, {"q": "other"}).action == "allow"
    third = tool(3, {"q": "x", "page": 1})
    assert isinstance(third.error, LoopDetected)
    assert (third.error.observed, third.error.limit) == (3, 3)
    assert e.stopped("run-1") is third


def test_approved_loop_rule_is_waived_for_the_run(tracker: CostTracker) -> None:
    e = engine(
        tracker,
        {"loops": [{"id": "ping", "kind": "ping_pong", "max_cycles": 2, "action": "pause"}]},
    )
    steps = [e.check_step(trace_id="r", run_key="r", tags={}, step=s) for s in "ABAB"]
    assert [s.action for s in steps] == ["allow", "allow", "allow", "pause"]
    e.approvals.decide(steps[-1].approval_id or "", approve=True, by="alice")
    assert e.check_step(trace_id="r", run_key="r", tags={}, step="A").action == "allow"


def test_tool_fee_counts_on_usd_budgets(tracker: CostTracker) -> None:
    e = engine(tracker, {"budgets": [{"id": "cap", "limit": "0.025", "period": "run"}]})

    def tool(n: int) -> Any:
        return e.check_before_tool_call(
            call_id=f"t{n}",
            trace_id="run-1",
            run_key="run-1",
            tags={},
            tool="search",
            args={"n": n},
            fee_estimate=Decimal("0.01"),
        )

    assert tool(0).action == "allow"
    e.check_after_tool_call("t0", cost=Decimal("0.01"))
    assert tool(1).action == "allow"
    assert tool(2).action == "deny"


def test_threads_racing_one_budget_through_the_engine_never_overshoot(tracker: CostTracker) -> None:
    import random
    import threading

    limit = worst(1000, 100) * 40
    e = engine(
        tracker,
        {
            "budgets": [
                {"id": "team-daily", "scope": {"team": "*"}, "limit": str(limit), "period": "daily"}
            ]
        },
    )
    settled: list[Decimal] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        rnd = random.Random(w)
        for n in range(30):
            call_id = f"w{w}-{n}"
            d = e.check_before_model_call(
                call_id=call_id,
                trace_id=f"run-{w}",
                run_key=f"run-{w}",
                tags={"team": "support"},
                model="gpt-4o-mini",
                provider="openai",
                input_tokens=1000,
                max_output_tokens=100,
            )
            if d.blocked:
                continue
            if rnd.random() < 0.2:
                e.release(call_id)  # the call failed
                continue
            actual = (worst(1000, 100) * Decimal(rnd.randint(50, 100)) / 100).quantize(
                Decimal("1e-12")
            )
            e.check_after_model_call(call_id, cost=actual, tokens=1100)
            with lock:
                settled.append(actual)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    key = e.policy.budgets[0].counter_key({"team": "support"}, now=NOW, tz=e.policy.tz)
    assert key is not None
    e.close()  # gives the budget leases back, once their charges are written
    state = tracker.ledger.budget_store().counter(key)
    assert state is not None
    assert state.reserved == 0
    assert state.spent == sum(settled, Decimal(0))  # the ledger sums exactly
    assert state.spent <= limit
    tracker.flush()
    denies = sum(
        d.action == "deny" for w in range(8) for d in tracker.ledger.decisions_for(f"run-{w}")
    )
    assert denies > 0  # the race really hit the limit


def test_unknown_tokens_are_charged_their_reservation(tracker: CostTracker) -> None:
    e = engine(
        tracker, {"budgets": [{"id": "tok", "unit": "tokens", "limit": "5000", "period": "run"}]}
    )
    assert call(e, 0, inp=1000, out=100).action == "allow"
    e.check_after_model_call("run-1-call-0", cost=None, tokens=None)
    key = e.policy.budgets[0].counter_key({}, now=NOW, tz=e.policy.tz, run_id="run-1")
    assert key is not None
    state = e.budgets.counter(key)
    assert state is not None and state.spent == 1100  # never 0
    e.close()  # gives the budget lease back
    state = tracker.ledger.budget_store().counter(key)
    assert state is not None and state.spent == 1100 and state.reserved == 0


def test_a_hard_deny_wins_over_a_pause(tracker: CostTracker) -> None:
    e = engine(
        tracker,
        {
            "budgets": [
                {"id": "ask-me", "limit": "0.0000001", "period": "run", "action": "pause"},
                {"id": "hard", "limit": "0.0000001", "period": "daily", "action": "deny"},
            ]
        },
    )
    d = call(e, 0)
    assert d.action == "deny" and d.rule_id == "hard"
    assert tracker.ledger.list_approvals() == []  # nobody is asked to approve a moot call


def test_an_approval_raises_only_the_bucket_that_refused(tracker: CostTracker) -> None:
    clock = Clock()
    limit = worst(1000, 100)
    e = engine(
        tracker,
        {"budgets": [{"id": "daily", "limit": str(limit), "period": "daily", "action": "pause"}]},
        clock,
    )
    assert call(e, 0).action == "allow"
    paused = call(e, 1)
    e.approvals.decide(paused.approval_id or "", approve=True, by="alice", extra=limit * 10)
    assert call(e, 2).action == "allow"
    clock.now = NOW.replace(day=23)  # tomorrow: a new bucket, yesterday's approval does not count
    for n in range(3, 4):
        assert call(e, n).action == "allow"
    assert call(e, 4).action == "pause"


def test_non_finite_extra_is_refused(tracker: CostTracker) -> None:
    from agent_finops import ConfigurationError

    e = engine(
        tracker,
        {"budgets": [{"id": "cap", "limit": "0.0000001", "period": "run", "action": "pause"}]},
    )
    paused = call(e, 0)
    for bad in ("Infinity", "NaN", "-1"):
        with pytest.raises(ConfigurationError, match="between 0 and 1e12"):
            e.approvals.decide(paused.approval_id or "", approve=True, by="x", extra=Decimal(bad))


def test_a_call_that_costs_more_than_it_reserved_is_charged_logged_and_seen(
    tracker: CostTracker,
) -> None:
    cap = worst(1000, 100) * 3
    e = engine(tracker, {"budgets": [{"id": "cap", "limit": str(cap), "period": "run"}]})
    assert call(e, 0).action == "allow"
    # The provider reported far more than the worst case we reserved (a wrong estimate).
    actual = worst(1000, 100) * 2 + Decimal("0.000001")
    assert e.check_after_model_call(
        "run-1-call-0", cost=actual, tokens=5000, trace_id="run-1", tags={"team": "support"}
    )
    tracker.flush()
    (overrun,) = [d for d in tracker.ledger.decisions_for("run-1") if d.action == "overrun"]
    assert overrun.rule_id == "cap" and overrun.call_id == "run-1-call-0"
    assert (overrun.estimate, overrun.observed) == (worst(1000, 100), actual)
    assert "more than the" in overrun.message
    # The budget holds the actual spend, so the next call sees it: one more worst case
    # no longer fits (2 x worst + epsilon spent + worst > 3 x worst).
    refused = call(e, 1)
    assert refused.action == "deny" and refused.observed == actual


def test_an_overrun_that_crosses_a_threshold_alerts_once(tracker: CostTracker) -> None:
    from agent_finops.approvals import ApprovalChannel, ApprovalService, ThresholdAlert

    alerts: list[ThresholdAlert] = []

    class Alerts(ApprovalChannel):
        def threshold_crossed(self, alert: ThresholdAlert) -> None:
            alerts.append(alert)

    w = worst(1000, 100)
    e = PolicyEngine(
        Policy.from_mapping(
            {
                "budgets": [
                    {"id": "b", "limit": str(w * 10), "period": "run", "thresholds": [50, 90]}
                ]
            }
        ),
        tracker,
        approvals=ApprovalService(tracker.ledger, channels=[Alerts()]),
        clock=Clock(),
    )
    assert call(e, 0).action == "allow"
    assert alerts == []  # 10% reserved
    e.check_after_model_call("run-1-call-0", cost=w * 6, tokens=1, trace_id="run-1", tags={})
    assert [(a.rule_id, a.percent) for a in alerts] == [("b", Decimal(50))]
    assert alerts[0].used == w * 6
    tracker.flush()
    kinds = [d.action for d in tracker.ledger.decisions_for("run-1")]
    assert kinds.count("overrun") == 1 and kinds.count("threshold") == 1


def test_each_call_is_charged_to_the_bucket_of_its_own_moment_and_tags(
    tracker: CostTracker,
) -> None:
    """Claims are planned once per run, tags and window: a plan never outlives its window."""
    clock = Clock()
    one_call = worst(1000, 100)
    e = engine(
        tracker,
        {
            "timezone": "Europe/Paris",
            "budgets": [
                {
                    "id": "daily",
                    "scope": {"team": "*"},
                    "limit": str(one_call),
                    "period": "daily",
                    "action": "deny",
                }
            ],
        },
        clock,
    )
    support = {"team": "support"}
    clock.now = datetime(2026, 11, 22, 22, 59, 59, tzinfo=UTC)  # 23:59:59 in Paris
    assert call(e, 0, tags=support).action == "allow"
    assert call(e, 1, tags=support).action == "deny"
    # Same run, other tags: another bucket, not the plan cached for `support`.
    assert call(e, 2, tags={"team": "sales"}, run="run-2").action == "allow"
    # Paris midnight: a new day's bucket for the same run and tags.
    clock.now = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)
    assert call(e, 3, tags=support).action == "allow"
    # A clock stepping back lands in yesterday's bucket again, which is full.
    clock.now = datetime(2026, 11, 22, 22, 0, tzinfo=UTC)
    assert call(e, 4, tags=support).action == "deny"


class WriteSpy:
    """A ledger that remembers what each `write` carried, then writes it."""

    def __init__(self, ledger: SQLLedger) -> None:
        self.ledger = ledger
        self.writes: list[dict[str, Any]] = []

    def write(self, **records: Any) -> None:
        self.writes.append(records)
        self.ledger.write(**records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ledger, name)


def test_an_allowed_calls_decision_is_written_with_its_cost_event(
    shared_ledger: SQLLedger,
) -> None:
    from agent_finops import TokenUsage

    spy = WriteSpy(shared_ledger)
    t = CostTracker(spy, background=False)  # type: ignore[arg-type]
    e = engine(t, {"budgets": [{"id": "run-cap", "limit": "1", "period": "run"}]})
    t.start_span("root", parent_span_id=None, name="run", kind="run")
    for n in range(2):
        call_id = f"call-{n}"
        t.start_span(call_id, parent_span_id="root", name="llm", kind="model")
        decision = e.check_before_model_call(
            call_id=call_id,
            trace_id="root",
            run_key="root",
            tags={},
            model="gpt-4o-mini",
            provider="openai",
            input_tokens=1000,
            max_output_tokens=100,
        )
        assert decision.action == "allow"
        with t.grouped():
            event = t.record_model_call(
                call_id,
                model="gpt-4o-mini",
                provider="openai",
                usage=TokenUsage(uncached_input_tokens=10, output_tokens=5),
            )
            e.check_after_model_call(call_id, cost=event.cost, tokens=15)
    third = "call-2"
    t.start_span(third, parent_span_id="root", name="llm", kind="model")
    e.check_before_model_call(
        call_id=third,
        trace_id="root",
        run_key="root",
        tags={},
        model="gpt-4o-mini",
        provider="openai",
        input_tokens=1000,
        max_output_tokens=100,
    )
    for n in range(2):
        (write,) = [
            w for w in spy.writes if any(v.event_id == f"call-{n}" for v in w.get("events", ()))
        ]
        assert [d.call_id for d in write.get("decisions", ())] == [f"call-{n}"]
        assert {c.event_id for c in write.get("charges", ())} == {f"call-{n}"}
    # A call that has not ended yet: its allow is held, and written when its run ends.
    assert [d.call_id for d in shared_ledger.decisions_for("root")] == ["call-0", "call-1"]
    e.end_run("root")
    actions = [(d.call_id, d.action) for d in shared_ledger.decisions_for("root")]
    assert actions == [("call-0", "allow"), ("call-1", "allow"), ("call-2", "allow")]
    e.close()
    t.close()


class FlakyStore:
    """A budget store whose database can be made unreachable for `reserve`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down = False

    def reserve(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise LedgerError("budget reserve failed: connection refused (test)")
        return self.inner.reserve(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def fail_open_policy(**run_cap: Any) -> dict[str, Any]:
    budgets: list[dict[str, Any]] = [
        {
            "id": "team-daily",
            "scope": {"team": "*"},
            "limit": "10",
            "period": "daily",
            "action": "warn",
            "on_ledger_error": "allow",
        }
    ]
    if run_cap:
        budgets.append({"id": "run-cap", "limit": "1", "period": "run", **run_cap})
    return {"budgets": budgets}


def test_a_rule_that_fails_open_lets_the_call_go_and_is_charged_once_the_ledger_is_back(
    shared_ledger: SQLLedger,
) -> None:
    from agent_finops import TokenUsage

    t = CostTracker(shared_ledger)
    store = FlakyStore(shared_ledger.budget_store(leases=True, charges_to=t))
    e = PolicyEngine(
        Policy.from_mapping(fail_open_policy()),
        t,
        budgets=store,
        clock=Clock(),  # type: ignore[arg-type]
    )
    store.down = True
    t.start_span("r", parent_span_id=None, name="run", kind="run")
    costs = []
    for n in range(2):
        t.start_span(f"c{n}", parent_span_id="r", name="llm", kind="model")
        decision = call(e, n, run="r", tags={"team": "support"})
        assert decision.action == "allow"
        if n == 1:  # the second call fails: nothing to charge
            e.release(f"r-call-{n}")
            continue
        with t.grouped():
            event = t.record_model_call(
                f"c{n}",
                model="gpt-4o-mini",
                provider="openai",
                event_id=f"r-call-{n}",
                usage=TokenUsage(uncached_input_tokens=1000, output_tokens=100),
            )
            assert event.cost is not None
            costs.append(event.cost)
            e.check_after_model_call(f"r-call-{n}", cost=event.cost, tokens=1100)
    t.flush()
    warned = [d for d in shared_ledger.decisions_for("r") if d.action == "warn"]
    assert [(d.call_id, d.rule_id) for d in warned] == [
        ("r-call-0", "team-daily"),
        ("r-call-1", "team-daily"),
    ]
    assert "failed open" in warned[0].message
    key = "team-daily|team=support|2026-11-22"
    counter = store.inner.counter(key)
    assert counter is not None and counter.spent == sum(costs) and counter.reserved == 0
    e.close()
    t.close()


def test_rules_without_on_ledger_error_allow_fail_closed(shared_ledger: SQLLedger) -> None:
    t = CostTracker(shared_ledger)
    store = FlakyStore(shared_ledger.budget_store(leases=True, charges_to=t))
    e = PolicyEngine(
        Policy.from_mapping(fail_open_policy(action="deny")),
        t,
        budgets=store,  # type: ignore[arg-type]
        clock=Clock(),
    )
    store.down = True
    with pytest.raises(LedgerError, match="connection refused"):
        call(e, 0, run="r2", tags={"team": "support"})
    e.close()
    t.close()


def test_on_ledger_error_is_validated() -> None:
    from agent_finops import FinOpsError

    bad = fail_open_policy()
    bad["budgets"][0]["on_ledger_error"] = "maybe"
    with pytest.raises(FinOpsError, match="on_ledger_error") as info:
        Policy.from_mapping(bad)
    assert "maybe" in str(info.value)


def test_closing_a_guard_with_a_call_in_flight_keeps_its_decision_and_gives_back_its_lease(
    shared_ledger: SQLLedger,
) -> None:
    import time

    from agent_finops.guard import RunGuard

    t = CostTracker(shared_ledger)
    policy = Policy.from_mapping({"budgets": [{"id": "cap", "limit": "5", "period": "daily"}]})
    guard = RunGuard(t, policy=policy)
    guard.start_run("root", name="run")
    guard.before_model_call(
        "c1",
        parent_id="root",
        name="llm",
        model="gpt-4o-mini",
        provider="openai",
        input_tokens=100,
        max_output_tokens=10,
    )
    started = time.monotonic()
    guard.close()  # the call never ended
    assert time.monotonic() - started < 10  # no flush waiting on a closed writer
    assert [(d.call_id, d.action) for d in shared_ledger.decisions_for("root")] == [("c1", "allow")]
    store = shared_ledger.budget_store()
    key = f"cap|*|{datetime.now(UTC):%Y-%m-%d}"
    counter = store.counter(key)
    # Only the call in flight's own estimate may stay reserved, not the worker's whole slice.
    assert counter is not None and counter.reserved < Decimal("0.001")
    store.close()
