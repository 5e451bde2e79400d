"""The framework-free tracker: span trees, inherited tags, concurrency, idempotency, no loss."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from agent_finops import (
    CostTracker,
    InMemoryLedger,
    LedgerError,
    PriceBook,
    PriceNotFound,
    SQLLedger,
    TokenUsage,
    UnpricedWarning,
    attribute,
)
from agent_finops.sinks import read_dead_letters

U = TokenUsage(uncached_input_tokens=1000, output_tokens=100)
PRICE = (1000 * Decimal("0.15") + 100 * Decimal("0.60")) / Decimal(1_000_000)  # gpt-4o-mini


@pytest.fixture
def tracker(sqlite_ledger: SQLLedger) -> Iterator[CostTracker]:
    t = CostTracker(sqlite_ledger, tags={"team": "core", "environment": "test"})
    yield t
    t.close()


def _model_call(t: CostTracker, span: str, parent: str, *, model: str = "gpt-4o-mini") -> None:
    t.start_span(span, parent_span_id=parent, name="llm", kind="model")
    t.record_model_call(span, model=model, provider="openai", usage=U)
    t.end_span(span)


def test_nested_spans_inherit_tags_and_node_path(tracker: CostTracker) -> None:
    with attribute(project="apollo"):
        tracker.start_span(
            "root", parent_span_id=None, name="graph", kind="chain", tags={"task": "t1"}
        )
    tracker.start_span(
        "n1", parent_span_id="root", name="researcher", kind="node", node="researcher"
    )
    tracker.start_span(
        "n2", parent_span_id="n1", name="agent", kind="node", node="agent", tags={"agent": "r"}
    )
    _model_call(tracker, "m1", "n2")
    tracker.end_span("n2")
    tracker.end_span("n1")
    tracker.end_span("root")
    report = tracker.report("root")
    (event,) = [e for n in [report.tree] for e in _all_events(n)]
    assert event.node_path == "researcher > agent"
    assert event.tags == {
        "team": "core",
        "environment": "test",
        "project": "apollo",
        "task": "t1",
        "agent": "r",
    }
    assert report.total_cost == PRICE
    assert report.run.status == "ok"


def _all_events(node: Any) -> Iterator[Any]:
    yield from node.events
    for c in node.children:
        yield from _all_events(c)


def test_parallel_threads_in_one_run(tracker: CostTracker) -> None:
    tracker.start_span("root", parent_span_id=None, name="graph", kind="chain")

    def branch(i: int) -> None:
        tracker.start_span(
            f"b{i}", parent_span_id="root", name=f"branch{i}", kind="node", node=f"branch{i}"
        )
        for j in range(25):
            _model_call(tracker, f"m{i}-{j}", f"b{i}")
        tracker.end_span(f"b{i}")

    threads = [threading.Thread(target=branch, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    tracker.end_span("root")
    report = tracker.report("root")
    assert report.totals.model_calls == 200
    assert report.total_cost == 200 * PRICE
    assert {r.key for r in report.by_node} == {f"branch{i}" for i in range(8)}
    assert all(r.totals.model_calls == 25 for r in report.by_node)


async def test_asyncio_tasks_keep_their_own_tags(tracker: CostTracker) -> None:
    async def run(tenant: str) -> None:
        with attribute(tenant=tenant):
            tracker.start_span(f"root-{tenant}", parent_span_id=None, name="graph", kind="chain")
            await asyncio.sleep(0)
            _model_call(tracker, f"m-{tenant}", f"root-{tenant}")
            await asyncio.sleep(0)
            tracker.end_span(f"root-{tenant}")

    await asyncio.gather(*(run(t) for t in ("acme", "globex", "initech")))
    for tenant in ("acme", "globex", "initech"):
        report = tracker.report(f"root-{tenant}")
        assert report.run.tags["tenant"] == tenant
        assert report.by_agent[0].totals.model_calls == 1


def test_reentrant_calls_are_counted_once(tracker: CostTracker) -> None:
    # A calls B calls A: the same agent appears twice on one path; each event counts once.
    tracker.start_span("root", parent_span_id=None, name="graph", kind="chain")
    tracker.start_span("a1", parent_span_id="root", name="A", kind="node", node="A")
    _model_call(tracker, "m1", "a1")
    tracker.start_span("b1", parent_span_id="a1", name="B", kind="node", node="B")
    _model_call(tracker, "m2", "b1")
    tracker.start_span("a2", parent_span_id="b1", name="A", kind="node", node="A")
    _model_call(tracker, "m3", "a2")
    for s in ("a2", "b1", "a1", "root"):
        tracker.end_span(s)
    report = tracker.report("root")
    assert report.total_cost == 3 * PRICE
    assert report.tree.totals.cost == 3 * PRICE
    by_node = {r.key: r.totals.model_calls for r in report.by_node}
    assert by_node == {"A": 1, "A > B": 1, "A > B > A": 1}
    assert sum(r.totals.cost for r in report.by_agent) == 3 * PRICE


def test_same_event_recorded_twice_counts_once(tracker: CostTracker) -> None:
    tracker.start_span("root", parent_span_id=None, name="graph", kind="chain")
    tracker.start_span("m1", parent_span_id="root", name="llm", kind="model")
    tracker.record_model_call("m1", model="gpt-4o-mini", provider="openai", usage=U)
    tracker.flush()
    tracker.record_model_call(
        "m1", model="gpt-4o-mini", provider="openai", usage=U
    )  # retry of the write
    tracker.end_span("m1")
    tracker.end_span("root")
    assert tracker.report("root").totals.model_calls == 1


def test_unknown_model_recorded_as_unpriced(tracker: CostTracker) -> None:
    tracker.start_span("root", parent_span_id=None, name="graph", kind="chain")
    _model_call(tracker, "m1", "root")
    tracker.start_span("m2", parent_span_id="root", name="llm", kind="model")
    with pytest.warns(UnpricedWarning, match="mystery-model"):
        tracker.record_model_call("m2", model="mystery-model", usage=U)
    tracker.end_span("m2")
    tracker.end_span("root")
    report = tracker.report("root")
    assert report.unpriced == 1
    assert report.total_cost == PRICE
    assert tracker.unpriced == 1


def test_strict_pricing_records_then_raises(sqlite_ledger: SQLLedger) -> None:
    tracker = CostTracker(sqlite_ledger, prices=PriceBook(strict=True))
    tracker.start_span("root", parent_span_id=None, name="graph", kind="chain")
    tracker.start_span("m1", parent_span_id="root", name="llm", kind="model")
    with pytest.raises(PriceNotFound):
        tracker.record_model_call("m1", model="mystery-model", usage=U)
    tracker.end_span("root")
    assert tracker.report("root").unpriced == 1  # recorded before raising: nothing lost
    tracker.close()


def test_unfinished_spans_are_kept_when_the_run_ends(tracker: CostTracker) -> None:
    tracker.start_span("root", parent_span_id=None, name="graph", kind="chain")
    tracker.start_span("n1", parent_span_id="root", name="node", kind="node", node="node")
    tracker.end_span("root", error=RuntimeError("boom"))
    report = tracker.report("root")
    assert report.run.status == "error"
    assert "RuntimeError: boom" in (report.run.error or "")
    assert [c.span.status for c in report.tree.children] == ["unfinished"]


def test_call_without_a_known_span_is_still_recorded(tracker: CostTracker) -> None:
    tracker.record_model_call("lonely", model="gpt-4o-mini", provider="openai", usage=U)
    tracker.end_span("lonely")
    assert tracker.report("lonely").total_cost == PRICE


class FlakyLedger:
    """Fails the first `failures` writes, then delegates."""

    def __init__(self, inner: SQLLedger, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    def write(self, **kwargs: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise LedgerError("database is locked")
        self.inner.write(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_write_failures_are_retried_not_dropped(
    sqlite_ledger: SQLLedger, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = CostTracker(FlakyLedger(sqlite_ledger, failures=2))  # type: ignore[arg-type]
    tracker.start_span("root", parent_span_id=None, name="graph", kind="chain")
    _model_call(tracker, "m1", "root")
    tracker.end_span("root")
    report = tracker.report("root")
    assert report.total_cost == PRICE
    assert tracker.write_errors == 2
    assert "ledger write failed" in caplog.text
    tracker.close()


def test_inline_mode_writes_immediately(sqlite_ledger: SQLLedger) -> None:
    tracker = CostTracker(sqlite_ledger, background=False)
    tracker.start_span("root", parent_span_id=None, name="graph", kind="chain")
    _model_call(tracker, "m1", "root")
    trace = sqlite_ledger.load_trace("root")
    assert trace is not None and len(trace.events) == 1


class PoisonLedger:
    """Refuses any batch holding an event named 'poison', as a database refuses bad data."""

    def __init__(self, inner: SQLLedger) -> None:
        self.inner = inner

    def write(self, **kwargs: Any) -> None:
        from sqlalchemy.exc import DataError

        if any(e.name == "poison" for e in kwargs.get("events") or ()):
            raise LedgerError("value too long", retryable=False) from DataError(
                "insert", {}, Exception("too long")
            )
        self.inner.write(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_one_bad_record_does_not_wedge_the_writer(
    sqlite_ledger: SQLLedger, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = CostTracker(PoisonLedger(sqlite_ledger))  # type: ignore[arg-type]
    tracker.start_span("root", parent_span_id=None, name="graph", kind="chain")
    _model_call(tracker, "m1", "root")
    tracker.start_span("m2", parent_span_id="root", name="llm", kind="model")
    with pytest.warns(UnpricedWarning):
        tracker.record_model_call("m2", model="poison", usage=U)
    tracker.end_span("m2")
    _model_call(tracker, "m3", "root")
    tracker.end_span("root")
    report = tracker.report("root")  # flushes: must not hang or raise
    assert report.totals.model_calls == 2 and report.total_cost == 2 * PRICE
    assert tracker.dead_lettered == 1 and tracker.dead_letter_path is not None
    kept = read_dead_letters(tracker.dead_letter_path)  # kept, not dropped
    assert [(k.kind, getattr(k.record, "name", None)) for k in kept] == [("event", "poison")]
    assert "value too long" in kept[0].error and "refused" in caplog.text
    tracker.close()


def test_unpersisted_plumbing_spans_are_skipped_in_the_tree(tracker: CostTracker) -> None:
    tracker.start_span("root", parent_span_id=None, name="graph", kind="chain", tags={"task": "t1"})
    tracker.start_span("route", parent_span_id="root", name="route", kind="chain", persist=False)
    tracker.start_span("m1", parent_span_id="route", name="llm", kind="model")
    tracker.record_model_call("m1", model="gpt-4o-mini", provider="openai", usage=U)
    for s in ("m1", "route", "root"):
        tracker.end_span(s)
    tracker.flush()
    trace = tracker.ledger.load_trace("root")
    assert trace is not None
    assert {s.span_id for s in trace.spans} == {"root", "m1"}  # the plumbing chain is not stored
    (model,) = [s for s in trace.spans if s.span_id == "m1"]
    assert model.parent_span_id == "root" and model.tags["task"] == "t1"


def test_every_record_reaches_every_sink(tmp_path: Any) -> None:
    from agent_finops.sinks import MemorySink, RecordSink

    extra = MemorySink()
    assert isinstance(extra, RecordSink)
    t = CostTracker(SQLLedger.from_url(f"sqlite:///{tmp_path}/s.sqlite"), sinks=[extra])
    t.start_span("root", parent_span_id=None, name="graph", kind="chain", thread_id="th-1")
    t.start_span("m1", parent_span_id="root", name="llm", kind="model")
    t.record_model_call("m1", model="gpt-4o-mini", provider="openai", usage=U)
    t.start_span("t1", parent_span_id="root", name="no_fee_tool", kind="tool")
    t.record_tool_call("t1", tool="no_fee_tool")
    for s in ("m1", "t1", "root"):
        t.end_span(s)
    t.close()
    assert extra.closed
    assert [r.thread_id for r in extra.runs] == ["th-1", "th-1"]  # opened, then closed
    assert {s.span_id for s in extra.spans} == {"root", "m1", "t1"}
    model, tool = extra.events
    assert model.cost is not None and model.cost > 0
    assert (tool.kind, tool.cost, tool.price_source) == ("tool", Decimal(0), "no-fee")
    trace = t.ledger.load_trace("root")
    assert trace is not None and len(trace.events) == 2 and trace.run.thread_id == "th-1"


def test_a_model_call_span_that_adds_nothing_is_stored_on_its_event(
    tracker: CostTracker, sqlite_ledger: SQLLedger
) -> None:
    from sqlalchemy import text

    tracker.start_span("root", parent_span_id=None, name="graph", kind="run")
    tracker.start_span("n1", parent_span_id="root", name="agent", kind="node", node="agent")
    _model_call(tracker, "ok-call", "n1")  # succeeded, no span of its own: on its event
    tracker.start_span("failed", parent_span_id="n1", name="llm", kind="model")
    tracker.end_span("failed", error=RuntimeError("rate limited"))  # no event: a row
    tracker.start_span("parent", parent_span_id="n1", name="llm", kind="model")
    tracker.start_span("child", parent_span_id="parent", name="tool", kind="tool")
    tracker.end_span("child")
    tracker.record_model_call("parent", model="gpt-4o-mini", provider="openai", usage=U)
    tracker.end_span("parent")  # it opened a span of its own: a row
    tracker.start_span("late", parent_span_id="n1", name="llm", kind="model")
    tracker.record_model_call("late", model="gpt-4o-mini", provider="openai", usage=U)
    tracker.end_span("late", status="error", error="failed after its usage")  # a row wins
    tracker.end_span("n1")
    tracker.end_span("root")
    tracker.flush()
    with sqlite_ledger.engine.connect() as conn:
        rows = {r for (r,) in conn.execute(text("select span_id from finops_spans"))}
    assert rows == {"root", "n1", "failed", "parent", "child", "late"}
    spans = {s.span_id: s for s in sqlite_ledger.load_trace("root").spans}
    ok = spans["ok-call"]
    assert (ok.kind, ok.name, ok.parent_span_id, ok.status, ok.node_path) == (
        "model",
        "llm",
        "n1",
        "ok",
        "agent",
    )
    assert ok.on_event and ok.ended_at is not None and ok.ended_at >= ok.started_at
    assert (spans["late"].status, spans["late"].on_event) == ("error", False)
    assert spans["child"].parent_span_id == "parent"
    report = tracker.report("root")
    assert report.totals.model_calls == 3


class _HeldLedger(InMemoryLedger):
    """Its writes wait until `go` is set (a ledger that does not keep up)."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def write(self, **records: Any) -> None:
        self.go.wait(10)
        super().write(**records)


def test_backlog_counts_what_the_writer_has_not_taken() -> None:
    ledger = _HeldLedger()
    tracker = CostTracker(ledger)
    inline = CostTracker(InMemoryLedger(), background=False)
    try:
        tracker.start_span("run-0", parent_span_id=None, name="g", kind="run")
        deadline = time.monotonic() + 5
        while tracker.backlog and time.monotonic() < deadline:  # taken: its write is held
            time.sleep(0.01)
        assert tracker.backlog == 0
        for n in range(1, 6):
            tracker.start_span(f"run-{n}", parent_span_id=None, name="g", kind="run")
        time.sleep(0.05)  # many lingers: the writer is still held by the first write
        assert tracker.backlog == 5
        ledger.go.set()
        tracker.flush()
        assert tracker.backlog == 0
        assert len(ledger.list_runs()) == 6
        inline.start_span("r", parent_span_id=None, name="g", kind="run")
        assert inline.backlog == 0  # written on the caller's thread
    finally:
        ledger.go.set()
        tracker.close()
        inline.close()
