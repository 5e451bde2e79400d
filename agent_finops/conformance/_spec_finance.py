"""Checks of aggregates, event streams and alerts (`finance`, base)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from agent_finops.conformance._capabilities import Capability
from agent_finops.conformance._fixtures import D, event, raises, run
from agent_finops.conformance._registry import T0, Subject, spec
from agent_finops.exceptions import AlertNotFound, ConfigurationError
from agent_finops.ledger import AlertRecord

finance = spec(Capability.FINANCE)

H = timedelta(hours=1)


def _tags(team: str | None, task: str | None = None, **more: str) -> dict[str, str]:
    tags = dict(more)
    if team is not None:
        tags["team"] = team
    if task is not None:
        tags["task"] = task
    return tags


@finance
def aggregate_groups_by_tags_and_windows(s: Subject) -> None:
    """Totals per group and window: cost by bucket, calls by kind, tokens, distinct runs/tasks."""
    s.ledger.write(
        runs=[
            run("r1", ended_at=T0 + timedelta(seconds=30)),
            run("r2", ended_at=T0 + timedelta(seconds=90)),
            run("r3"),  # still open: no runtime
        ],
        events=[
            event("a", "0.10", trace="r1", tags=_tags("search", "t1", region="eu")),
            event(
                "b",
                "0.20",
                trace="r1",
                tags=_tags("search", "t1", region="eu"),
                kind="tool",
                bucket="tools",
                units=3,
            ),
            event("c", None, trace="r2", tags=_tags("search", "t2", region="us")),
            event(
                "d",
                "1.5",
                trace="r2",
                tags=_tags("search", None, region="us"),
                kind="compute",
                bucket="compute",
                units=120,
            ),
            event("e", "0.05", trace="r3", tags=_tags(None), bucket="overhead"),
            event("f", "7", trace="r1", tags=_tags("ads"), created_at=T0 + H),
        ],
    )
    found = s.ledger.aggregate(by=["team"], windows=[(T0, T0 + H), (T0, T0 + 2 * H)], runtime=True)
    plain = s.ledger.aggregate(by=["team"], windows=[(T0, T0 + H)], distinct=False)
    assert [a.totals.runtime_seconds for a in plain] == [0.0, 0.0]  # not asked for
    assert [(a.totals.runs, a.totals.tasks) for a in plain] == [(0, 0), (0, 0)]
    assert [a.totals.cost for a in plain] == [D("0.05"), D("1.8")]
    assert [(a.window, a.group) for a in found] == [
        (0, (None,)),
        (0, ("search",)),
        (1, (None,)),
        (1, ("ads",)),
        (1, ("search",)),
    ]
    search = found[1].totals
    assert (found[1].start, found[1].end) == (T0, T0 + H)
    assert search.cost == D("1.8")
    assert search.cost_by_bucket == {
        "tokens": D("0.1"),
        "tools": D("0.2"),
        "compute": D("1.5"),
        "overhead": D(0),
    }
    assert (search.events, search.model_calls, search.tool_calls, search.compute_events) == (
        4,
        2,
        1,
        1,
    )
    assert search.unpriced == 1
    assert (search.runs, search.tasks) == (2, 2)
    assert search.uncached_input_tokens == 4 * 600
    assert search.output_tokens == 4 * 50
    assert search.tokens == 4 * (600 + 400 + 50)
    assert (search.units, search.compute_seconds) == (123, 120)
    assert abs(search.runtime_seconds - 120.0) < 0.01
    nobody = found[0].totals
    assert nobody.cost_by_bucket["overhead"] == D("0.05")
    assert (nobody.runs, nobody.tasks, nobody.runtime_seconds) == (1, 0, 0.0)
    assert found[3].totals.cost == D(7)
    # a free-form tag, two dimensions, and a filter
    by_region = s.ledger.aggregate(
        by=["team", "region"], windows=[(T0, T0 + H)], where={"team": ["search"]}
    )
    assert [(a.group, a.totals.cost) for a in by_region] == [
        (("search", "eu"), D("0.3")),
        (("search", "us"), D("1.5")),
    ]
    assert s.ledger.aggregate(by=["team"], windows=[(T0 + 2 * H, T0 + 3 * H)]) == []
    # event fields as dimensions: the model (or tool) name, the bucket
    fields = s.ledger.aggregate(
        by=[":bucket", ":model"], windows=[(T0, T0 + H)], where={":kind": ["model", "compute"]}
    )
    assert [(a.group, a.totals.cost, a.totals.events) for a in fields] == [
        (("compute", "gpt-4o-mini"), D("1.5"), 1),
        (("overhead", "gpt-4o-mini"), D("0.05"), 1),
        (("tokens", "gpt-4o-mini"), D("0.1"), 2),
    ]


@finance
def aggregate_sums_exactly(s: Subject) -> None:
    """Sums keep all 18 decimals, also past what a float or 64-bit nano-dollars hold."""
    tiny = "0.000000000000000001"
    many = [event(f"t{i}", tiny, tags=_tags("t")) for i in range(7)]
    many += [event(f"x{i}", "0.1", tags=_tags("t")) for i in range(3)]
    many += [event("big", "12345678901.123456789012345678", tags=_tags("t"))]
    many += [event("neg", "-0.2", tags=_tags("t"))]  # a credit
    s.ledger.write(runs=[run()], events=many)
    (only,) = s.ledger.aggregate(windows=[(T0, T0 + H)])
    assert only.group == ()
    assert only.totals.cost == D("12345678901.223456789012345685")
    assert only.totals.cost_by_bucket["tokens"] == only.totals.cost
    # Two costs that fit 64-bit nano-dollars alone but overflow a 64-bit sum together.
    huge = [event(f"h{i}", "9000000000.000000000000000001", tags=_tags("h")) for i in range(2)]
    s.ledger.write(events=huge)
    by_team = s.ledger.aggregate(by=["team"], windows=[(T0, T0 + H)])
    assert [(a.group, a.totals.cost, a.totals.events) for a in by_team] == [
        (("h",), D("18000000000.000000000000000002"), 2),
        (("t",), D("12345678901.223456789012345685"), 12),
    ]


@finance
def aggregate_refuses_bad_arguments(s: Subject) -> None:
    """Naive or empty windows, bad or repeated tag names: `ConfigurationError`, named."""
    naive = datetime(2026, 11, 1)
    with raises(ConfigurationError, "aware"):
        s.ledger.aggregate(windows=[(naive, naive + H)])
    with raises(ConfigurationError, "end after"):
        s.ledger.aggregate(windows=[(T0, T0)])
    with raises(ConfigurationError, "tag name"):
        s.ledger.aggregate(by=["bad name"], windows=[(T0, T0 + H)])
    with raises(ConfigurationError, "twice"):
        s.ledger.aggregate(by=["team", "team"], windows=[(T0, T0 + H)])
    with raises(ConfigurationError, "list"):
        s.ledger.aggregate(windows=[(T0, T0 + H)], where={"team": "search"})


@finance
def events_come_back_with_their_bucket(s: Subject) -> None:
    """An event naming no bucket reads back with its kind's; a named one is kept."""
    s.ledger.write(
        runs=[run()],
        events=[
            event("m", "1", bucket=None),
            event("t", "1", kind="tool", bucket=None),
            event("o", "1", bucket="overhead"),
        ],
    )
    buckets = {e.event_id: e.bucket for e in s.ledger.load_trace("trace-1").events}
    assert buckets == {"m": "tokens", "t": "tools", "o": "overhead"}


@finance
def iter_events_pages_in_order(s: Subject) -> None:
    """`[start, end)` in (created_at, event_id) order, across pages, filters applied."""
    same = T0 + timedelta(minutes=5)
    events = [event(f"e{i:02d}", "0.01", created_at=same) for i in range(9)]
    events += [event(f"f{i}", "0.01", created_at=T0 + timedelta(minutes=i)) for i in range(4)]
    events += [event("end", "1", created_at=T0 + H)]  # excluded: the end is open
    events += [event("other", "1", tags=_tags("z"))]
    s.ledger.write(runs=[run()], events=events)
    got = [
        e.event_id for e in s.ledger.iter_events(T0, T0 + H, batch_size=4, where={"team": ["t"]})
    ]
    expected = sorted(
        (e for e in events if e.event_id not in ("end", "other")),
        key=lambda e: (e.created_at, e.event_id),
    )
    assert got == [e.event_id for e in expected]
    assert len(got) == 13
    everything = list(s.ledger.iter_events(T0, T0 + 2 * H))
    assert len(everything) == 15
    assert all(isinstance(e.cost, Decimal) for e in everything)


def _alert(alert_id: str, at: datetime, **kw: object) -> AlertRecord:
    fields: dict[str, object] = {
        "kind": "cost_spike",
        "scope": {"team": "search"},
        "window_start": at,
        "window_end": at + H,
        "created_at": at,
        "message": "hourly cost 9x the usual",
        "observed": D("45.5"),
        "expected": D("5.1"),
        "drivers": [{"agent": "planner", "cost": "40"}],
    }
    fields.update(kw)
    return AlertRecord(alert_id=alert_id, **fields)  # type: ignore[arg-type]


@finance
def alerts_are_raised_once_and_delivered_once_per_channel(s: Subject) -> None:
    """`add_alert` is True only the first time; deliveries are kept per channel."""
    assert s.ledger.add_alert(_alert("a1", T0)) is True
    assert s.ledger.add_alert(_alert("a1", T0, message="again")) is False
    assert s.ledger.add_alert(_alert("a2", T0 + H, delivered=["log"])) is True
    s.ledger.mark_alert_delivered("a1", "slack")
    s.ledger.mark_alert_delivered("a1", "slack")
    s.ledger.mark_alert_delivered("a1", "log")
    newest, oldest = s.ledger.list_alerts()
    assert (newest.alert_id, oldest.alert_id) == ("a2", "a1")
    assert oldest.message == "hourly cost 9x the usual"
    assert sorted(oldest.delivered) == ["log", "slack"]
    assert newest.delivered == ["log"]
    assert oldest.drivers == [{"agent": "planner", "cost": "40"}]
    assert (oldest.observed, oldest.expected) == (D("45.5"), D("5.1"))
    assert [a.alert_id for a in s.ledger.list_alerts(since=T0 + H)] == ["a2"]
    with raises(AlertNotFound):
        s.ledger.mark_alert_delivered("nope", "slack")
