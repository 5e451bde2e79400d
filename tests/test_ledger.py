"""Ledger conformance suite: every backend (the `ledger` fixture's params) must pass it."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from agent_finops import (
    AlreadyDecided,
    ApprovalNotFound,
    CostEvent,
    LedgerError,
    RunRecord,
    SpanRecord,
    SQLLedger,
)
from agent_finops.ledger import SCHEMA_VERSION, ApprovalRecord, DecisionRecord

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def _run(trace: str = "trace-1", **kw: object) -> RunRecord:
    return RunRecord(trace_id=trace, name="graph", started_at=T0, tags={"team": "t"}, **kw)  # type: ignore[arg-type]


def _span(span_id: str, parent: str | None, trace: str = "trace-1") -> SpanRecord:
    return SpanRecord(
        span_id=span_id,
        trace_id=trace,
        parent_span_id=parent,
        name=span_id,
        kind="node" if parent else "run",
        node_path=span_id if parent else None,
        started_at=T0,
        ended_at=T0 + timedelta(seconds=1),
        status="ok",
    )


def _event(event_id: str, cost: str | None, trace: str = "trace-1") -> CostEvent:
    return CostEvent(
        event_id=event_id,
        trace_id=trace,
        span_id="n1",
        kind="model",
        name="gpt-4o-mini",
        provider="openai",
        created_at=T0,
        node_path="n1",
        tags={"team": "t", "project": "p", "custom": "x"},
        cost=None if cost is None else Decimal(cost),
        price_source="genai-prices",
        price_version="genai-prices 0.2.3",
        uncached_input_tokens=600,
        cache_read_tokens=400,
        output_tokens=50,
        reasoning_tokens=20,
    )


def test_setup_is_idempotent(ledger: SQLLedger) -> None:
    ledger.setup()
    ledger._ready = False
    ledger.setup()
    assert ledger.schema_version() == SCHEMA_VERSION


def test_roundtrip_keeps_every_decimal_digit(ledger: SQLLedger) -> None:
    cost = "0.000000123456789012"
    ledger.write(
        runs=[_run()],
        spans=[_span("trace-1", None), _span("n1", "trace-1")],
        events=[_event("e1", cost)],
    )
    trace = ledger.load_trace("trace-1")
    assert trace is not None
    assert trace.events[0].cost == Decimal(cost)
    assert trace.events[0].tags == {"team": "t", "project": "p", "custom": "x"}
    assert trace.events[0].reasoning_tokens == 20
    assert {s.span_id for s in trace.spans} == {"trace-1", "n1"}
    assert trace.run.tags == {"team": "t"}


def test_event_written_twice_counts_once(ledger: SQLLedger) -> None:
    ledger.write(runs=[_run()], events=[_event("e1", "0.5")])
    ledger.write(events=[_event("e1", "0.5"), _event("e2", "0.25")])
    ledger.write(events=[_event("e1", "0.5")])
    (summary,) = ledger.list_runs()
    assert summary.cost == Decimal("0.75")
    assert summary.model_calls == 2


def test_run_and_span_upsert_keeps_latest_state(ledger: SQLLedger) -> None:
    ledger.write(runs=[_run()])
    ledger.write(runs=[_run(status="ok", ended_at=T0 + timedelta(seconds=3))])
    (summary,) = ledger.list_runs()
    assert summary.run.status == "ok"
    assert summary.run.ended_at is not None


def test_unknown_cost_is_counted_not_zeroed(ledger: SQLLedger) -> None:
    ledger.write(runs=[_run()], events=[_event("e1", "1.5"), _event("e2", None)])
    (summary,) = ledger.list_runs()
    assert summary.cost == Decimal("1.5")
    assert summary.unpriced == 1
    trace = ledger.load_trace("trace-1")
    assert trace is not None
    assert [e.cost for e in trace.events if e.event_id == "e2"] == [None]


def test_failed_batch_writes_nothing(ledger: SQLLedger) -> None:
    bad = replace(_event("e-bad", "1"), name="x" * 5000)  # too long for PostgreSQL's column
    good = _event("e-good", "1")
    if ledger.dialect == "sqlite":
        bad = replace(bad, created_at=None)  # type: ignore[arg-type]  # NOT NULL on every backend
    with pytest.raises(LedgerError, match="nothing written") as info:
        ledger.write(runs=[_run()], events=[good, bad])
    assert not info.value.retryable  # the data itself was refused: retrying cannot help
    assert ledger.list_runs() == []
    assert ledger.load_trace("trace-1") is None


def test_list_runs_newest_first_with_limit(ledger: SQLLedger) -> None:
    for i in range(5):
        ledger.write(
            runs=[RunRecord(trace_id=f"r{i}", name="g", started_at=T0 + timedelta(minutes=i))]
        )
    runs = ledger.list_runs(limit=3)
    assert [s.run.trace_id for s in runs] == ["r4", "r3", "r2"]


def test_resolve_prefix(ledger: SQLLedger) -> None:
    ledger.write(runs=[_run("abc-123"), _run("abd-456"), _run("x_y")])
    assert ledger.resolve_run_id("abc") == "abc-123"
    assert ledger.resolve_run_id("ab") is None  # ambiguous
    assert ledger.resolve_run_id("zzz") is None
    assert ledger.resolve_run_id("x_") == "x_y"
    assert ledger.resolve_run_id("x%") is None  # LIKE wildcards are escaped


def test_newer_schema_is_refused(ledger: SQLLedger) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(text("update finops_schema set version = :v"), {"v": SCHEMA_VERSION + 1})
    fresh = SQLLedger(ledger.engine, auto_setup=False)
    with pytest.raises(LedgerError, match="newer than this agent-finops"):
        fresh.setup()


def _approval(approval_id: str = "ap-1", trace: str = "trace-1") -> ApprovalRecord:
    return ApprovalRecord(
        approval_id=approval_id,
        trace_id=trace,
        thread_id="thread-9",
        rule_id="support-daily",
        scope={"team": "support"},
        unit="usd",
        spent=Decimal("24.9"),
        limit=Decimal(25),
        estimate=Decimal("0.35"),
        policy_version="abc",
        created_at=T0,
    )


def test_decisions_are_written_once_and_read_back(ledger: SQLLedger) -> None:
    d = DecisionRecord(
        decision_id="d1",
        trace_id="trace-1",
        call_id="c1",
        action="deny",
        rule_id="cap",
        policy_version="v1",
        created_at=T0,
        scope={"task": "t"},
        limit=Decimal("0.5"),
        observed=Decimal("0.49"),
        estimate=Decimal("0.02"),
        message="over",
    )
    ledger.write(decisions=[d])
    ledger.write(decisions=[d])
    (back,) = ledger.decisions_for("trace-1")
    assert back == d


def test_approval_is_decided_exactly_once(ledger: SQLLedger) -> None:
    ledger.add_approval(_approval())
    ledger.add_approval(_approval())  # idempotent
    (pending,) = ledger.list_approvals(status="pending")
    assert pending.spent == Decimal("24.9")
    decided = ledger.decide_approval("ap-", status="approved", by="alice", at=T0, extra=Decimal(2))
    assert (decided.status, decided.decided_by, decided.extra) == ("approved", "alice", Decimal(2))
    with pytest.raises(AlreadyDecided, match="already approved"):
        ledger.decide_approval("ap-1", status="denied", by="bob", at=T0)
    with pytest.raises(ApprovalNotFound):
        ledger.decide_approval("nope", status="denied", by="bob", at=T0)
    ledger.add_approval(_approval("ap-2"))
    ledger.decide_approval("ap-2", status="approved", by="carol", at=T0, extra=Decimal("0.5"))
    extras = {
        a.approval_id: a.extra
        for a in ledger.list_approvals(status="approved", thread_id="thread-9")
    }
    assert extras == {"ap-1": Decimal(2), "ap-2": Decimal("0.5")}


def test_racing_approvers_one_wins(ledger: SQLLedger) -> None:
    if ledger.engine.url.database in (None, "", ":memory:"):
        pytest.skip("in-memory SQLite is one shared connection: a single-threaded reference")
    ledger.add_approval(_approval())
    results: list[str] = []

    def decide(who: str) -> None:
        try:
            ledger.decide_approval("ap-1", status="approved", by=who, at=T0, extra=Decimal(1))
            results.append("won")
        except AlreadyDecided:
            results.append("lost")

    threads = [threading.Thread(target=decide, args=(f"u{i}",)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == ["lost"] * 5 + ["won"]
    (approved,) = ledger.list_approvals(status="approved")
    assert approved.extra == Decimal(1)


def test_a_decision_is_taken_up_by_exactly_one_worker(ledger: SQLLedger) -> None:
    if ledger.engine.url.database in (None, "", ":memory:"):
        pytest.skip("in-memory SQLite is one shared connection: a single-threaded reference")
    ledger.add_approval(_approval())
    assert ledger.take_decision(thread_id="thread-9", trace_id=None, at=T0) is None  # pending
    ledger.decide_approval("ap-1", status="denied", by="bob", at=T0)
    taken: list[object] = []

    def take() -> None:
        got = ledger.take_decision(thread_id="thread-9", trace_id=None, at=T0)
        if got is not None:
            taken.append(got)

    threads = [threading.Thread(target=take) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(taken) == 1
    assert ledger.take_decision(thread_id="thread-9", trace_id=None, at=T0) is None
