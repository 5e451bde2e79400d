"""Checks of runs, spans, cost events and decisions (`records`, base)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from agent_finops.conformance._capabilities import Capability
from agent_finops.conformance._fixtures import D, event, raises, run, span
from agent_finops.conformance._registry import T0, Subject, spec
from agent_finops.exceptions import ConfigurationError, LedgerError, RunNotFound
from agent_finops.ledger import MONEY_LIMIT, DecisionRecord, RunRecord

records = spec(Capability.RECORDS)


@records
def setup_is_idempotent(s: Subject) -> None:
    """`setup()` may be called again on a ledger in use; nothing is lost."""
    s.ledger.write(runs=[run()])
    s.ledger.setup()
    s.ledger.setup()
    assert [r.run.trace_id for r in s.ledger.list_runs()] == ["trace-1"]


@records
def roundtrip_keeps_every_decimal_digit(s: Subject) -> None:
    """A run, its spans and events read back field for field; 18 decimals stay exact."""
    cost = "0.000000123456789012"
    s.ledger.write(
        runs=[run()],
        spans=[span("trace-1", None), span("n1", "trace-1")],
        events=[event("e1", cost, cache_write_tokens=300, cache_write_1h_tokens=100)],
    )
    trace = s.ledger.load_trace("trace-1")
    assert trace.events[0].cost == Decimal(cost)
    assert trace.events[0].tags == {"team": "t", "project": "p", "custom": "x"}
    assert trace.events[0].reasoning_tokens == 20
    assert (trace.events[0].cache_write_tokens, trace.events[0].cache_write_1h_tokens) == (300, 100)
    assert trace.events[0] == event("e1", cost, cache_write_tokens=300, cache_write_1h_tokens=100)
    assert {sp.span_id for sp in trace.spans} == {"trace-1", "n1"}
    assert trace.run.tags == {"team": "t"}
    assert trace.run == run()


def _call_on_event(start: datetime, end: datetime) -> tuple[Any, Any]:
    """A model call `c1` under node n1 whose span its event carries (`on_event`)."""
    call = span(
        "c1",
        "n1",
        name="ChatOpenAI",
        kind="model",
        node_path="n1",
        started_at=start,
        ended_at=end,
        tags={"team": "t", "project": "p", "custom": "x"},
        on_event=True,
    )
    carrier = event(
        "c1",
        "0.5",
        span_id="c1",
        created_at=end,
        span_parent_id="n1",
        span_name="ChatOpenAI",
        span_started_at=start,
    )
    return call, carrier


@records
def span_on_its_event_reads_back_as_a_span(s: Subject) -> None:
    """A span stored on its call's event (`on_event`) is read back as written, in start order.

    It has no row of its own: written with its event, in another write, or not written at
    all, `load_trace` rebuilds it from the event (ended at the event's `created_at`).
    """
    call, carrier = _call_on_event(T0 + timedelta(milliseconds=5), T0 + timedelta(seconds=2))
    s.ledger.write(runs=[run()], spans=[span("trace-1", None), call])
    s.ledger.write(spans=[span("n1", "trace-1", started_at=T0 + timedelta(milliseconds=1))])
    s.ledger.write(events=[carrier])
    trace = s.ledger.load_trace("trace-1")
    assert [sp.span_id for sp in trace.spans] == ["trace-1", "n1", "c1"]
    assert trace.spans[2] == call
    assert trace.events == [carrier]
    other = {"trace_id": "trace-2", "span_id": "c2"}
    s.ledger.write(runs=[run(trace="trace-2")], events=[replace(carrier, event_id="c2", **other)])
    (alone,) = s.ledger.load_trace("trace-2").spans  # the span itself never arrived
    assert alone == replace(call, **other)


@records
def stored_span_row_wins_over_its_event(s: Subject) -> None:
    """A call's span written as a row (it failed, or opened spans of its own) wins on read."""
    call, carrier = _call_on_event(T0, T0 + timedelta(seconds=2))
    failed = replace(call, on_event=False, status="error", error="boom")
    s.ledger.write(runs=[run()], spans=[failed], events=[carrier])
    (only,) = s.ledger.load_trace("trace-1").spans
    assert only == failed


@records
def event_written_twice_counts_once(s: Subject) -> None:
    """Events are inserted once by id: a repeated event id is ignored."""
    s.ledger.write(runs=[run()], events=[event("e1", "0.5")])
    s.ledger.write(events=[event("e1", "0.5"), event("e2", "0.25")])
    s.ledger.write(events=[event("e1", "0.5")])
    (summary,) = s.ledger.list_runs()
    assert summary.cost == Decimal("0.75")
    assert summary.model_calls == 2


@records
def run_and_span_upsert_keeps_latest_state(s: Subject) -> None:
    """Runs and spans are upserted: the latest state wins."""
    s.ledger.write(runs=[run()], spans=[span("n1", None, status="running", ended_at=None)])
    s.ledger.write(
        runs=[run(status="ok", ended_at=T0 + timedelta(seconds=3))], spans=[span("n1", None)]
    )
    (summary,) = s.ledger.list_runs()
    assert summary.run.status == "ok"
    assert summary.run.ended_at is not None
    (only,) = s.ledger.load_trace("trace-1").spans
    assert (only.status, only.ended_at) == ("ok", T0 + timedelta(seconds=1))


@records
def unknown_cost_is_counted_not_zeroed(s: Subject) -> None:
    """An unpriced event (cost None) is counted apart, never summed as 0."""
    s.ledger.write(runs=[run()], events=[event("e1", "1.5"), event("e2", None)])
    (summary,) = s.ledger.list_runs()
    assert summary.cost == Decimal("1.5")
    assert summary.unpriced == 1
    trace = s.ledger.load_trace("trace-1")
    assert [e.cost for e in trace.events if e.event_id == "e2"] == [None]


@records
def failed_batch_writes_nothing(s: Subject) -> None:
    """A batch with a record the ledger cannot store fails whole, not retryable."""
    bad = event("e-bad", "1", created_at=None)  # NOT NULL on every backend
    good = event("e-good", "1")
    with raises(LedgerError, match="nothing written") as info:
        s.ledger.write(runs=[run()], events=[good, bad])
    assert not info.value.retryable  # the data itself was refused: retrying cannot help
    assert s.ledger.list_runs() == []
    with raises(RunNotFound):
        s.ledger.load_trace("trace-1")


@records
def a_failed_batch_leaves_nothing_for_the_next_write(s: Subject) -> None:
    """After a refused batch, the next write stores its own records and none of the first's."""
    with raises(LedgerError, match="nothing written"):
        s.ledger.write(
            runs=[run("trace-failed")],
            spans=[span("n-failed", None, trace="trace-failed")],
            events=[
                event("e-kept", "1", trace="trace-failed"),
                event("e-bad", "1", trace="trace-failed", created_at=None),
            ],
        )
    s.ledger.write(runs=[run()], spans=[span("n1", None)], events=[event("e-good", "2")])
    assert [r.run.trace_id for r in s.ledger.list_runs()] == ["trace-1"]
    trace = s.ledger.load_trace("trace-1")
    assert [e.event_id for e in trace.events] == ["e-good"]
    assert [x.span_id for x in trace.spans if x.kind == "run"] == ["n1"]


@records
def events_of_one_moment_read_back_in_the_order_written(s: Subject) -> None:
    """Events with equal timestamps, written in one batch, read back in that batch's order."""
    ids = [f"e-{(n * 7919) % 97:02d}-{n}" for n in range(40)]  # not in id order
    s.ledger.write(runs=[run()], events=[event(i, "0.01") for i in ids])
    assert [e.event_id for e in s.ledger.load_trace("trace-1").events] == ids


@records
def naive_datetimes_are_refused_and_times_come_back_in_utc(s: Subject) -> None:
    """A naive datetime cannot be stored; aware ones read back as the same instant, in UTC."""
    with raises(LedgerError, match="nothing written") as info:
        s.ledger.write(runs=[run(started_at=datetime(2026, 11, 22, 9, 0))])
    assert not info.value.retryable
    paris = timezone(timedelta(hours=1))
    s.ledger.write(runs=[run(started_at=datetime(2026, 11, 22, 10, 0, tzinfo=paris))])
    back = s.ledger.load_trace("trace-1").run.started_at
    assert back == T0 and back.utcoffset() == timedelta(0)


@records
def money_is_exact_to_18_places_and_bounded(s: Subject) -> None:
    """Sums are exact; more than 18 decimals round half-even to 18; 1e20 and more is refused.

    The same on every backend (PostgreSQL keeps NUMERIC(38, 18)).
    """
    tenth = [event(f"e{i}", "0.1") for i in range(3)]
    big = event("big", "12345678901234567890.123456789012345678")
    fine = event("fine", "0.0000000000000000015")  # 1.5e-18: half-even to 2e-18
    s.ledger.write(runs=[run()], events=[*tenth, big, fine])
    (summary,) = s.ledger.list_runs()
    assert summary.cost == D("12345678901234567890.423456789012345680")
    costs = {e.event_id: e.cost for e in s.ledger.load_trace("trace-1").events}
    assert costs["fine"] == D("0.000000000000000002")
    assert costs["big"] == D("12345678901234567890.123456789012345678")
    with raises(LedgerError, match="nothing written") as info:
        s.ledger.write(events=[event("huge", "1"), event("too-big", str(MONEY_LIMIT))])
    assert not info.value.retryable
    assert "huge" not in {e.event_id for e in s.ledger.load_trace("trace-1").events}


@records
def list_runs_newest_first_with_limit(s: Subject) -> None:
    """`list_runs` is newest first and honours `limit`; a limit below 1 is refused."""
    for i in range(5):
        s.ledger.write(
            runs=[RunRecord(trace_id=f"r{i}", name="g", started_at=T0 + timedelta(minutes=i))]
        )
    runs = s.ledger.list_runs(limit=3)
    assert [r.run.trace_id for r in runs] == ["r4", "r3", "r2"]
    for bad in (0, -1):
        with raises(ConfigurationError, match="limit"):
            s.ledger.list_runs(limit=bad)


@records
def resolve_prefix(s: Subject) -> None:
    """A run id from a unique prefix; an ambiguous one names its candidates; LIKE is escaped."""
    s.ledger.write(runs=[run("abc-123"), run("abd-456"), run("x_y")])
    assert s.ledger.resolve_run_id("abc-123") == "abc-123"
    assert s.ledger.resolve_run_id("abc") == "abc-123"
    with raises(RunNotFound) as ambiguous:
        s.ledger.resolve_run_id("ab")
    assert ambiguous.value.candidates == ["abc-123", "abd-456"]
    assert ambiguous.value.key == "ab"
    with raises(RunNotFound) as absent:
        s.ledger.resolve_run_id("zzz")
    assert absent.value.candidates == []
    assert s.ledger.resolve_run_id("x_") == "x_y"
    with raises(RunNotFound):
        s.ledger.resolve_run_id("x%")  # LIKE wildcards are escaped
    with raises(RunNotFound):
        s.ledger.resolve_run_id("a_c")


@records
def load_trace_of_an_unknown_run_raises(s: Subject) -> None:
    """`load_trace` raises `RunNotFound` (with the id) rather than returning nothing."""
    with raises(RunNotFound) as info:
        s.ledger.load_trace("nope")
    assert info.value.key == "nope"


@records
def runs_carry_their_thread(s: Subject) -> None:
    """Thread ids: stored, filtered on, listed oldest first, resolved from a prefix."""
    s.ledger.write(
        runs=[
            run("r1", thread_id="thread-alpha", started_at=T0 + timedelta(minutes=2)),
            run("r2", thread_id="thread-alpha", started_at=T0),
            run("r3", thread_id="thread-beta", started_at=T0 + timedelta(minutes=1)),
            run("r4"),
        ]
    )
    assert s.ledger.load_trace("r1").run.thread_id == "thread-alpha"
    assert s.ledger.load_trace("r4").run.thread_id is None
    alpha = s.ledger.list_runs(thread_id="thread-alpha")
    assert [r.run.trace_id for r in alpha] == ["r1", "r2"]
    assert [r.trace_id for r in s.ledger.thread_runs("thread-alpha")] == ["r2", "r1"]
    assert s.ledger.thread_runs("thread-none") == []
    assert s.ledger.resolve_thread_id("thread-beta") == "thread-beta"
    assert s.ledger.resolve_thread_id("thread-b") == "thread-beta"
    assert s.ledger.resolve_thread_id("nothing") is None
    with raises(RunNotFound) as info:
        s.ledger.resolve_thread_id("thread-")
    assert info.value.candidates == ["thread-alpha", "thread-beta"]


@records
def decisions_are_written_once_and_read_back(s: Subject) -> None:
    """Decisions are inserted once by id and read back field for field, oldest first."""
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
    s.ledger.write(decisions=[d])
    s.ledger.write(decisions=[d])
    (back,) = s.ledger.decisions_for("trace-1")
    assert back == d
    actions: list[Any] = ["expired", "refused", "overrun"]
    later = [
        replace(d, decision_id=f"d-{action}", action=action, created_at=T0 + timedelta(seconds=i))
        for i, action in enumerate(actions, start=1)
    ]
    s.ledger.write(decisions=later)
    assert [x.action for x in s.ledger.decisions_for("trace-1")] == [
        "deny",
        "expired",
        "refused",
        "overrun",
    ]
    assert s.ledger.decisions_for("no-such-run") == []


@records
def span_kinds_of_agent_frameworks(s: Subject) -> None:
    """Spans of kind agent, task and crew are stored like the others."""
    kinds: list[Any] = ["agent", "task", "crew"]
    spans = [
        span(f"s-{k}", "trace-1", kind=k, started_at=T0 + timedelta(seconds=i))
        for i, k in enumerate(kinds)
    ]
    s.ledger.write(runs=[run()], spans=spans)
    assert [sp.kind for sp in s.ledger.load_trace("trace-1").spans] == kinds


@records
def records_read_back_are_copies(s: Subject) -> None:
    """Changing a record after writing it, or one read back, changes nothing stored."""
    written = run()
    s.ledger.write(runs=[written])
    written.tags["team"] = "changed"
    first = s.ledger.load_trace("trace-1").run
    first.tags["team"] = "changed too"
    assert s.ledger.load_trace("trace-1").run.tags == {"team": "t"}


@records
def write_of_nothing_is_a_no_op(s: Subject) -> None:
    """An empty write succeeds and writes nothing."""
    s.ledger.write()
    assert s.ledger.list_runs() == []


@records
def async_write_and_load(s: Subject) -> None:
    """`awrite` and `aload_trace` are the async twins of `write` and `load_trace`."""
    import asyncio

    async def main() -> Any:
        await s.ledger.awrite(runs=[run()], events=[event("e1", "0.5")])
        return await s.ledger.aload_trace("trace-1")

    trace = asyncio.run(main())
    assert [e.cost for e in trace.events] == [D("0.5")]
    assert trace.run.started_at == T0.astimezone(UTC)
