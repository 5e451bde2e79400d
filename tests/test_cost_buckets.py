"""Cost beyond tokens: compute time from span durations, overhead, connector fees, buckets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from agent_finops import ConfigurationError, CostTracker, InMemoryLedger, PriceBook, TokenUsage
from agent_finops.policy import Policy
from agent_finops.pricing import PricingConfig
from agent_finops.rollups import rollup

D = Decimal
T0 = datetime(2026, 11, 3, 9, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


PRICING = PricingConfig.from_mapping(
    {
        "compute": [
            {"name": "sandbox", "span": "code-sandbox", "per_second": "0.0001"},
            {
                "name": "gpu-llm",
                "tags": {"agent": "local-llm"},
                "per_minute": "0.06",
                "billing": "minute",
            },
        ],
        "tools": [{"name": "search-fee", "tool": "web_search", "per_call": "0.005"}],
    }
)


def tracked(clock: Clock, **kw: object) -> tuple[CostTracker, InMemoryLedger]:
    ledger = InMemoryLedger()
    tracker = CostTracker(ledger, prices=PriceBook(PRICING), background=False, clock=clock, **kw)  # type: ignore[arg-type]
    return tracker, ledger


def test_compute_time_is_priced_from_span_durations_into_its_bucket() -> None:
    clock = Clock()
    tracker, ledger = tracked(clock, tags={"team": "data"})
    tracker.start_span("run", parent_span_id=None, name="graph", kind="chain")
    tracker.start_span("sb", parent_span_id="run", name="code-sandbox", kind="tool")
    clock.tick(12.2)  # billed 13 seconds (rounded up)
    tracker.end_span("sb")
    tracker.start_span(
        "llm", parent_span_id="run", name="node", kind="node", tags={"agent": "local-llm"}
    )
    clock.tick(61)  # billed 2 minutes
    tracker.end_span("llm")
    tracker.start_span("ws", parent_span_id="run", name="web_search", kind="tool")
    tracker.record_tool_call("ws", tool="web_search")
    tracker.end_span("ws")
    assert tracker.record_compute("run", resource="sandbox", seconds=100) is not None
    assert tracker.record_compute("run", resource="no-such-rate", seconds=5) is None
    tracker.end_span("run")
    events = {e.event_id: e for e in ledger.load_trace("run").events}
    assert events["sb:compute"].cost == D("0.0013")
    assert (events["sb:compute"].kind, events["sb:compute"].units) == ("compute", 13)
    assert events["llm:compute"].cost == D("0.12")
    assert events["llm:compute"].price_source == "compute-rate:gpu-llm"
    assert events["run:compute:sandbox"].cost == D("0.01")
    found = rollup(ledger, start=T0, end=T0 + timedelta(hours=1), by=["team"], period="all")
    (row,) = found.rows
    assert row.totals.cost_by_bucket == {
        "tokens": D(0),
        "tools": D("0.005"),
        "compute": D("0.1313"),
        "overhead": D(0),
    }
    assert row.totals.compute_seconds == 13 + 120 + 100


def test_overhead_calls_keep_their_run_and_land_in_the_overhead_bucket() -> None:
    clock = Clock()
    tracker, ledger = tracked(clock, overhead={"agent": ["router", "guardrail"]})
    usage = TokenUsage(uncached_input_tokens=1000, output_tokens=100)
    tracker.start_span("run", parent_span_id=None, name="graph", kind="chain", tags={"team": "t"})
    for span, tags in [
        ("r", {"agent": "router"}),
        ("w", {"agent": "writer"}),
        ("retry", {"agent": "writer", "cost_bucket": "overhead"}),
    ]:
        tracker.start_span(span, parent_span_id="run", name="llm", kind="model", tags=tags)
        tracker.record_model_call(span, model="gpt-4o-mini", provider="openai", usage=usage)
        tracker.end_span(span)
    tracker.end_span("run")
    buckets = {e.event_id: (e.bucket, e.trace_id) for e in ledger.load_trace("run").events}
    assert buckets == {
        "r": ("overhead", "run"),
        "w": ("tokens", "run"),
        "retry": ("overhead", "run"),
    }


def test_bad_compute_rates_and_overhead_selectors_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="exactly one of per_second and per_minute"):
        PricingConfig.from_mapping({"compute": [{"name": "x", "span": "s"}]})
    with pytest.raises(ConfigurationError, match="span and/or tags"):
        PricingConfig.from_mapping({"compute": [{"name": "x", "per_second": "1"}]})
    with pytest.raises(ConfigurationError, match=r"compute\.0\.per_second"):
        PricingConfig.from_mapping({"compute": [{"name": "x", "span": "s", "per_second": "-1"}]})
    with pytest.raises(ConfigurationError, match="tag"):
        CostTracker(InMemoryLedger(), overhead={"bad key": "x"}, background=False)


def test_events_carry_the_policy_version_they_ran_under() -> None:
    from agent_finops.guard import RunGuard

    clock = Clock()
    tracker, ledger = tracked(clock)
    policy = Policy.from_mapping(
        {"version": 1, "budgets": [{"id": "b", "limit": "5", "period": "daily"}]}
    )
    RunGuard(tracker, policy=policy)
    assert tracker.policy_version == policy.version
    tracker.start_span("run", parent_span_id=None, name="graph", kind="chain")
    tracker.record_tool_call("run", tool="web_search")
    (event,) = ledger.load_trace("run").events
    assert event.policy_version == policy.version


def test_a_span_billed_by_its_duration_and_by_hand_keeps_both_events() -> None:
    clock = Clock()
    tracker, ledger = tracked(clock)
    tracker.start_span("run", parent_span_id=None, name="graph", kind="chain")
    tracker.start_span("sb", parent_span_id="run", name="code-sandbox", kind="tool")
    assert tracker.record_compute("sb", resource="gpu-llm", seconds=30) is not None
    clock.tick(2)
    tracker.end_span("sb")
    ids = sorted(e.event_id for e in ledger.load_trace("run").events)
    assert ids == ["sb:compute", "sb:compute:gpu-llm"]
    for bad in (float("nan"), float("inf"), -1, 10**9, True):
        with pytest.raises(ConfigurationError, match="seconds"):
            tracker.record_compute("sb", resource="sandbox", seconds=bad)  # type: ignore[arg-type]
