"""`CostTracker(writer="process")`: the ledger written by a child process.

What it must keep from the thread writer: every group written, in one transaction each
(a call's event with its budget charges), counters equal to the ledger, poison records
kept; and what it adds: nothing lost when the pipe is full (the child paused) or the
child dies (an in-process writer takes over). Crash behaviour (SIGKILL, SIGTERM, exit) is
in tests/test_durability.py.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.pool import StaticPool

from agent_finops import CostTracker, SQLLedger, TokenUsage
from agent_finops.exceptions import ConfigurationError
from agent_finops.guard import RunGuard
from agent_finops.ledger import DecisionRecord, RunRecord, SpanRecord
from agent_finops.policy import Policy
from agent_finops.sinks import ProcessLedgerWriter, Records, read_dead_letters
from tests.conftest import model_event, postgres_url_or_skip

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes and signals")
USAGE = TokenUsage(uncached_input_tokens=1000, output_tokens=100)


def _events(ledger: SQLLedger) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM finops_cost_events").scalar_one())


def _root_span(span_id: str, at: datetime, **fields: Any) -> SpanRecord:
    return SpanRecord(
        span_id=span_id,
        trace_id="t-0",
        parent_span_id=None,
        name="run",
        kind="run",
        node_path=None,
        started_at=at,
        **fields,
    )


@pytest.fixture
def file_ledger(tmp_path: Path) -> SQLLedger:
    return SQLLedger.from_url(f"sqlite:///{tmp_path}/ledger.sqlite")


def test_every_kind_of_record_comes_back_equal_through_the_child(file_ledger: SQLLedger) -> None:
    at = datetime(2026, 12, 4, 12, 0, 0, 123456, tzinfo=UTC)
    records = Records(
        runs=[RunRecord(trace_id="t-0", name="run", started_at=at, tags={"team": "a"})],
        spans=[_root_span("s-root", at, ended_at=at + timedelta(seconds=1), status="ok")],
        events=[model_event(0), model_event(1)],
        decisions=[
            DecisionRecord(
                decision_id="d-1",
                trace_id="t-0",
                call_id="e-0",
                action="allow",
                rule_id="r",
                policy_version="v1",
                created_at=at,
                estimate=Decimal("0.000000000000000001"),
            )
        ],
    )
    writer = ProcessLedgerWriter(file_ledger, flush_on_sigterm=False)
    try:
        writer.emit(records)
        writer.flush(timeout=30)
        assert writer.errors == 0 and writer.backlog == 0
    finally:
        writer.close()
    trace = file_ledger.load_trace("t-0")
    assert sorted(e.event_id for e in trace.events) == ["e-0", "e-1"]
    assert trace.events[0].cost == Decimal("0.000279")
    assert trace.events[0].created_at == model_event(0).created_at
    assert [s.span_id for s in trace.spans if s.kind == "run"] == ["s-root"]
    assert [d.estimate for d in file_ledger.decisions_for("t-0")] == [Decimal("1E-18")]
    assert trace.run is not None and trace.run.started_at == at


def test_a_tracker_with_the_process_writer_records_every_call(file_ledger: SQLLedger) -> None:
    tracker = CostTracker(file_ledger, writer="process", flush_on_sigterm=False)
    assert isinstance(tracker.sinks[0], ProcessLedgerWriter)
    tracker.start_span("run", parent_span_id=None, name="app", kind="chain")
    for i in range(500):
        tracker.start_span(f"c{i}", parent_span_id="run", name="llm", kind="model")
        tracker.record_model_call(f"c{i}", model="gpt-4o-mini", provider="openai", usage=USAGE)
        tracker.end_span(f"c{i}")
    tracker.end_span("run")
    tracker.flush()
    assert tracker.backlog == 0 and tracker.write_errors == 0
    assert _events(file_ledger) == 500
    total = sum((r.cost for r in file_ledger.list_runs(limit=5)), Decimal(0))
    assert (
        total
        == 500 * tracker.prices.price_model_call("gpt-4o-mini", USAGE, provider="openai").amount
    )
    tracker.close()


def test_budget_counters_equal_the_ledger_with_the_process_writer(file_ledger: SQLLedger) -> None:
    # Each call's event and its lease charges are one group: the child writes them in one
    # transaction, so what the counters say was spent is what the ledger holds.
    policy = Policy.from_mapping(
        {"budgets": [{"id": "daily", "limit": "1000", "period": "daily", "action": "deny"}]},
        source="test",
    )
    tracker = CostTracker(file_ledger, writer="process", flush_on_sigterm=False)
    guard = RunGuard(tracker, policy=policy)
    guard.open_step("run", parent_id=None, name="app", kind="run")
    for i in range(200):
        guard.before_model_call(
            f"c{i}",
            parent_id="run",
            name="llm",
            model="gpt-4o-mini",
            provider="openai",
            input_tokens=1000,
            max_output_tokens=200,
        )
        guard.after_model_call(f"c{i}", usage=USAGE)
    guard.close_step("run")
    guard.close()
    assert file_ledger.source is not None
    with SQLLedger.from_url(file_ledger.source.url) as fresh, fresh.budget_store() as store:
        total = sum((r.cost for r in fresh.list_runs(limit=5)), Decimal(0))
        with fresh.engine.connect() as conn:
            keys = [
                k for (k,) in conn.exec_driver_sql("SELECT counter_key FROM finops_budget_counters")
            ]
        counters = [store.counter(k) for k in keys]
        assert _events(fresh) == 200
        assert len(counters) == 1 and counters[0] is not None  # the daily budget's, in USD
        assert counters[0].spent == total > 0
        assert counters[0].reserved == 0


def test_a_full_pipe_queues_groups_and_loses_none(file_ledger: SQLLedger) -> None:
    writer = ProcessLedgerWriter(file_ledger, flush_on_sigterm=False)
    writer.flush(timeout=30)  # the child is up
    os.kill(writer.pid, signal.SIGSTOP)  # it reads nothing: the 1 MiB pipe fills
    try:
        start = time.monotonic()
        for n in range(8000):  # about 2.5 MB of groups
            writer.emit(Records(events=[model_event(n)]))
        assert time.monotonic() - start < 10  # never blocked on the paused child
        assert writer.backlog == 8000
    finally:
        os.kill(writer.pid, signal.SIGCONT)
    writer.flush(timeout=60)
    writer.close()
    assert _events(file_ledger) == 8000


def test_a_dead_child_hands_everything_to_an_in_process_writer(file_ledger: SQLLedger) -> None:
    writer = ProcessLedgerWriter(file_ledger, flush_on_sigterm=False)
    writer.flush(timeout=30)
    os.kill(writer.pid, signal.SIGSTOP)
    for n in range(100):  # in the pipe, never read
        writer.emit(Records(events=[model_event(n)]))
    os.kill(writer.pid, signal.SIGKILL)
    os.kill(writer.pid, signal.SIGCONT)
    deadline = time.monotonic() + 10
    while writer.failure is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.failure is not None and "exited" in writer.failure
    for n in range(100, 150):  # after the failure: straight to the fallback
        writer.emit(Records(events=[model_event(n)]))
    writer.flush(timeout=30)
    writer.close()
    assert _events(file_ledger) == 150


def test_a_poison_record_is_kept_by_the_child_and_counted(
    file_ledger: SQLLedger, tmp_path: Path
) -> None:
    bad = replace(model_event(9), event_id="bad", cost=Decimal("1e25"))  # no ledger stores it
    writer = ProcessLedgerWriter(file_ledger, flush_on_sigterm=False)
    writer.emit(Records(events=[model_event(0)]))
    writer.emit(Records(events=[bad]))
    writer.emit(Records(events=[model_event(1)]))
    writer.flush(timeout=30)
    kept, path = writer.dead_lettered, writer.dead_letter_path
    writer.close()
    assert _events(file_ledger) == 2
    assert kept == 1 and path == tmp_path / "ledger.sqlite.dead-letter.jsonl"


def test_the_process_writer_needs_a_ledger_another_process_can_open() -> None:
    with SQLLedger.from_url("sqlite://") as memory:
        assert memory.source is None
        with pytest.raises(ConfigurationError, match="writer='process' needs a ledger"):
            CostTracker(memory, writer="process")


def test_an_unknown_writer_is_refused_naming_where_it_came_from(
    file_ledger: SQLLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError, match=r"CostTracker\(writer=\).*'threads'"):
        CostTracker(file_ledger, writer="threads")
    monkeypatch.setenv("AGENT_FINOPS_WRITER", "fork")
    with pytest.raises(ConfigurationError, match=r"AGENT_FINOPS_WRITER.*'fork'"):
        CostTracker(file_ledger)
    monkeypatch.setenv("AGENT_FINOPS_WRITER", "process")
    tracker = CostTracker(file_ledger, flush_on_sigterm=False)
    assert isinstance(tracker.sinks[0], ProcessLedgerWriter)
    tracker.close()


@pytest.mark.postgres
def test_the_process_writer_on_postgresql() -> None:
    url = postgres_url_or_skip()
    with SQLLedger.from_url(url) as ledger:
        writer = ProcessLedgerWriter(ledger, flush_on_sigterm=False)
        for n in range(300):
            writer.emit(Records(events=[model_event(n)]))
        writer.flush(timeout=60)
        writer.close()
        assert writer.errors == 0
        assert _events(ledger) == 300


class Team(StrEnum):
    """A tag key as an enum: the tracker keeps the key object it was given."""

    TEAM = "team"


def test_records_come_back_equal_field_by_field(file_ledger: SQLLedger) -> None:
    # Non-UTC and naive-free datetimes, unknown costs, enum tag keys, long error text (a
    # frame larger than the pipe's atomic write), booleans: what the ledger reads back is
    # what the thread writer would have written.
    paris = timezone(timedelta(hours=1))
    at = datetime(2026, 12, 4, 13, 0, 0, 654321, tzinfo=paris)
    unknown = replace(model_event(7), cost=None, usage_reported=False, created_at=at)
    tagged = replace(model_event(8), tags={Team.TEAM: "growth"})
    failed = _root_span("s-err", at, ended_at=at, status="error", error="x" * 10_000)
    run = RunRecord(trace_id="t-0", name="run", started_at=at)
    writer = ProcessLedgerWriter(file_ledger, flush_on_sigterm=False)
    writer.emit(Records(runs=[run], events=[unknown], spans=[failed]))
    writer.emit(Records(events=[tagged]))
    writer.flush(timeout=30)
    writer.close()
    trace = file_ledger.load_trace("t-0")
    got = {e.event_id: e for e in trace.events}
    assert got["e-7"].cost is None and got["e-7"].usage_reported is False
    assert got["e-7"].created_at == at  # the same instant
    assert got["e-8"].tags == {"team": "growth"}
    span = next(s for s in trace.spans if s.span_id == "s-err")
    assert span.error == "x" * 10_000 and span.status == "error"


def test_a_forked_process_writes_through_its_own_writer(file_ledger: SQLLedger) -> None:
    writer = ProcessLedgerWriter(file_ledger, flush_on_sigterm=False)
    pid = os.fork()
    if pid == 0:  # the fork: the pipe and the writer process are its parent's
        code = 1
        try:
            for n in range(100, 150):
                writer.emit(Records(events=[model_event(n)]))
            writer.flush(timeout=30)
            code = 0 if writer.failure and "forked" in writer.failure else 3
        finally:
            os._exit(code)
    for n in range(50):
        writer.emit(Records(events=[model_event(n)]))
    _, status = os.waitpid(pid, 0)
    writer.flush(timeout=30)
    writer.close()
    assert os.waitstatus_to_exitcode(status) == 0
    assert writer.failure is None
    assert _events(file_ledger) == 100


def test_what_arrives_after_close_is_kept_on_disk(file_ledger: SQLLedger, tmp_path: Path) -> None:
    writer = ProcessLedgerWriter(file_ledger, flush_on_sigterm=False)
    writer.emit(Records(events=[model_event(0)]))
    writer.close()
    writer.emit(Records(events=[model_event(1)]))  # a late callback
    writer.flush(timeout=1)  # returns: nothing can be pending
    kept = read_dead_letters(writer.dead_letter_path)
    assert [getattr(k.record, "event_id", None) for k in kept] == ["e-1"]
    assert "after the writer process was closed" in kept[0].error
    assert _events(file_ledger) == 1


def test_the_child_acknowledges_when_it_goes_idle(file_ledger: SQLLedger) -> None:
    # Without a flush: what the child wrote is acknowledged soon after, so the backlog (what
    # a crash of the child would make the parent write again) falls to zero.
    writer = ProcessLedgerWriter(file_ledger, flush_on_sigterm=False)
    writer.flush(timeout=30)
    for n in range(20):
        writer.emit(Records(events=[model_event(n)]))
    deadline = time.monotonic() + 10
    while writer.backlog and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.backlog == 0
    writer.close()


def test_an_engine_that_logs_to_stdout_does_not_break_the_writer(tmp_path: Path) -> None:
    with SQLLedger.from_url(f"sqlite:///{tmp_path}/echo.sqlite", echo=True) as ledger:
        writer = ProcessLedgerWriter(ledger, flush_on_sigterm=False)
        for n in range(10):
            writer.emit(Records(events=[model_event(n)]))
        writer.flush(timeout=30)
        writer.close()
        assert writer.failure is None and _events(ledger) == 10


def test_in_memory_ledgers_have_no_source_and_the_environment_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared = "sqlite:///file:finops_mem?mode=memory&cache=shared&uri=true"
    with SQLLedger.from_url("sqlite://") as ledger:
        assert ledger.source is None
    with SQLLedger.from_url(shared, poolclass=StaticPool) as ledger:  # its own database
        assert ledger.source is None
    monkeypatch.setenv("AGENT_FINOPS_WRITER", "process")
    with SQLLedger.from_url("sqlite://") as memory:
        tracker = CostTracker(memory, flush_on_sigterm=False)  # the thread writer, logged
        assert not isinstance(tracker.sinks[0], ProcessLedgerWriter)
        tracker.close()
