"""What the tracker hands its sinks, and its clock.

One group per `grouped()` block, never an empty one; aware UTC times by default, an injected
clock honoured.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent_finops import CostTracker, TokenUsage
from agent_finops.clock import fast_utcnow, utcnow
from agent_finops.sinks import Records


class Counting:
    """A sink keeping every group it receives, as it received it."""

    def __init__(self) -> None:
        self.groups: list[Records] = []

    def emit(self, records: Records) -> None:
        self.groups.append(records)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


class Discard:
    """A ledger that keeps nothing (the tracker's sinks are what is tested)."""

    def write(self, **records: Any) -> None:
        pass


def tracker(**options: Any) -> tuple[CostTracker, Counting]:
    sink = Counting()
    return CostTracker(Discard(), background=False, sinks=[sink], **options), sink  # type: ignore[arg-type]


USAGE = TokenUsage(uncached_input_tokens=100, output_tokens=10)


def test_a_closed_plumbing_span_emits_nothing() -> None:
    t, sink = tracker()
    t.start_span("root", parent_span_id=None, name="run", kind="run")
    t.start_span("glue", parent_span_id="root", name="route", kind="chain", persist=False)
    before = len(sink.groups)
    t.end_span("glue")
    assert len(sink.groups) == before
    with t.grouped():
        t.start_span("glue2", parent_span_id="root", name="route", kind="chain", persist=False)
        t.end_span("glue2")
    assert len(sink.groups) == before  # a block that made nothing to store emits nothing
    assert all(sink.groups)


def test_an_empty_block_emits_nothing() -> None:
    t, sink = tracker()
    with t.grouped():
        pass
    assert sink.groups == []


def test_a_calls_event_and_its_span_are_one_group() -> None:
    t, sink = tracker()
    t.start_span("root", parent_span_id=None, name="run", kind="run")
    t.start_span("call", parent_span_id="root", name="llm", kind="model")
    before = len(sink.groups)
    with t.grouped():
        with t.grouped():  # nested: joins the outer block
            t.record_model_call("call", model="gpt-4o-mini", provider="openai", usage=USAGE)
        assert len(sink.groups) == before
        t.end_span("call")
        assert len(sink.groups) == before
    (group,) = sink.groups[before:]
    assert [e.event_id for e in group.events] == ["call"]
    assert [s.span_id for s in group.spans] == ["call"]
    assert not group.runs and not group.decisions and not group.charges


def test_records_made_before_an_error_in_the_block_are_emitted() -> None:
    t, sink = tracker()
    t.start_span("root", parent_span_id=None, name="run", kind="run")
    t.start_span("call", parent_span_id="root", name="llm", kind="model")
    before = len(sink.groups)
    with pytest.raises(RuntimeError), t.grouped():
        t.record_model_call("call", model="gpt-4o-mini", provider="openai", usage=USAGE)
        raise RuntimeError("boom")
    (group,) = sink.groups[before:]
    assert [e.event_id for e in group.events] == ["call"]
    with t.grouped():  # the failed block left nothing behind: a fresh group
        t.end_span("call")
    assert [s.span_id for s in sink.groups[-1].spans] == ["call"]
    assert not sink.groups[-1].events  # nothing left from the failed block


def test_records_outside_a_block_are_emitted_at_once() -> None:
    t, sink = tracker()
    t.start_span("root", parent_span_id=None, name="run", kind="run")
    assert [r.trace_id for g in sink.groups for r in g.runs] == ["root"]
    t.start_span("call", parent_span_id="root", name="llm", kind="model")
    t.record_model_call("call", model="gpt-4o-mini", provider="openai", usage=USAGE)
    assert [e.event_id for e in sink.groups[-1].events] == ["call"]


def test_the_default_clock_gives_aware_utc_times() -> None:
    low = utcnow()
    now = fast_utcnow()
    assert now.tzinfo is UTC and low <= now <= utcnow()
    t, _ = tracker()
    t.start_span("root", parent_span_id=None, name="run", kind="run")
    t.start_span("call", parent_span_id="root", name="llm", kind="model")
    event = t.record_model_call("call", model="gpt-4o-mini", provider="openai", usage=USAGE)
    t.end_span("call")
    span = t.end_span("root")
    assert span is not None and span.ended_at is not None
    for moment in (span.started_at, span.ended_at, event.created_at):
        assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)
        assert low <= moment <= utcnow()


def test_an_injected_clock_is_used_for_every_record() -> None:
    ticks = iter(datetime(2026, 5, 1, 12, 0, s, tzinfo=UTC) for s in range(60))
    t, sink = tracker(clock=lambda: next(ticks))
    t.start_span("root", parent_span_id=None, name="run", kind="run")
    t.start_span("call", parent_span_id="root", name="llm", kind="model")
    event = t.record_model_call("call", model="gpt-4o-mini", provider="openai", usage=USAGE)
    t.end_span("call")
    t.end_span("root")
    (run,) = sink.groups[-1].runs  # the run as it was closed
    assert run.started_at == datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert event.created_at == datetime(2026, 5, 1, 12, 0, 2, tzinfo=UTC)
    assert run.ended_at == datetime(2026, 5, 1, 12, 0, 4, tzinfo=UTC)
