"""The anomaly scan of a ledger (in memory, SQLite, PostgreSQL) and the alerts it raises once."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from agent_finops import InMemoryLedger, SQLLedger
from agent_finops.alerts import AlertService, LogChannel
from agent_finops.anomalies import AnomalyScanner, CostSpikeRule
from agent_finops.exceptions import ConfigurationError
from agent_finops.ledger import AlertRecord, CostEvent, Ledger
from agent_finops.policy import Policy
from tests.conftest import drop_postgres_schema, postgres_url_or_skip

HOUR = timedelta(hours=1)
START = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday
NOW = START + 4 * 7 * 24 * HOUR + 24 * HOUR + 3 * HOUR + timedelta(minutes=5)  # Tue 03:05
ONLY_SPIKES = {"cost_per_task": None, "call_rate": None, "forecast": None}


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """An empty ledger of each backend."""
    if request.param == "memory":
        yield InMemoryLedger()
        return
    url = (
        f"sqlite:///{tmp_path}/ledger.sqlite"
        if request.param == "sqlite"
        else postgres_url_or_skip()
    )
    with SQLLedger.from_url(url) as led:
        yield led
    if request.param == "postgres":
        drop_postgres_schema(url)


def event(at: datetime, cost: str | Decimal, n: int, **tags: str) -> CostEvent:
    """One model call."""
    return CostEvent(
        event_id=f"e-{n}",
        trace_id=f"t-{n // 4}",
        span_id=f"s-{n}",
        kind="model",
        name=tags.pop("model", "gpt-4o-mini"),
        provider="openai",
        created_at=at,
        node_path=tags.pop("node", "agent"),
        tags=tags,
        cost=Decimal(cost),
        price_source="test",
        price_version="1",
    )


def weekly(at: datetime, rng: random.Random) -> Decimal:
    """Monday-morning peaks, office hours, quiet nights and weekends (as in test_anomalies)."""
    if at.weekday() == 0 and 8 <= at.hour < 12:
        base = 60.0
    elif at.weekday() >= 5:
        base = 2.0
    elif 8 <= at.hour < 19:
        base = 12.0
    else:
        base = 1.0
    return Decimal(str(round(base * rng.uniform(0.85, 1.15), 4)))


def seed_weeks(ledger: Ledger, end: datetime, teams: tuple[str, ...] = ("search", "ads")) -> int:
    """Hourly weekly-shaped spend from START to `end`, split between two agents per team."""
    rng = random.Random(11)
    events = []
    hour = START
    while hour < end:
        for team in teams:
            cost = weekly(hour, rng)
            for agent, share in (("planner", Decimal("0.5")), ("writer", Decimal("0.5"))):
                n = len(events)
                events.append(
                    event(hour + timedelta(minutes=10), cost * share, n, team=team, agent=agent)
                )
        hour += HOUR
    ledger.write(events=events)
    return len(events)


def test_an_injected_spike_is_found_with_its_drivers(ledger: Ledger) -> None:
    n = seed_weeks(ledger, NOW)
    spike_hour = NOW.replace(minute=0) - HOUR  # Tuesday 02:00-03:00
    ledger.write(
        events=[
            event(
                spike_hour + timedelta(minutes=20 + i),
                "8",
                n + i,
                team="search",
                agent="planner",
                model="gpt-4o",
                node="retrieve",
            )
            for i in range(5)
        ]
    )
    scanner = AnomalyScanner(ledger, scopes=[["team"], ["team", "agent"]], **ONLY_SPIKES)
    alerts = scanner.scan(now=NOW)
    assert sorted(list(a.scope.items()) for a in alerts) == [
        [("team", "search")],
        [("team", "search"), ("agent", "planner")],
    ]
    team = next(a for a in alerts if a.scope == {"team": "search"})
    assert team.kind == "cost_spike" and team.severity == "critical"
    assert (team.window_start, team.window_end) == (spike_hour, spike_hour + HOUR)
    assert team.observed is not None and team.observed > 40
    assert team.expected is not None and team.expected < 2
    assert team.alert_id.startswith("cost_spike-")
    assert "search" in team.message and "same weekday and hour" in team.message
    drivers = team.drivers
    assert len(drivers) == 3
    assert [d["agent"] for d in drivers if "agent" in d] == ["planner"]
    assert {"model": "gpt-4o", "cost": "40", "expected": "0"} in drivers
    assert {"node": "retrieve", "cost": "40", "expected": "0"} in drivers
    assert all("expected" in d for d in drivers)


def test_a_weekly_pattern_raises_nothing_over_a_whole_week(ledger: Ledger) -> None:
    now = START + 5 * 7 * 24 * HOUR
    seed_weeks(ledger, now)
    scanner = AnomalyScanner(ledger, scopes=[["team"], []], **ONLY_SPIKES)
    assert scanner.scan(since=now - timedelta(days=7), now=now) == []


def test_a_new_team_is_judged_from_its_own_history_only(ledger: Ledger) -> None:
    """A team seen for two days is not compared with the weeks before it existed."""
    seed_weeks(ledger, NOW, teams=("search",))
    rng = random.Random(5)
    new = [
        event(h, weekly(h, rng), 10_000 + i, team="fresh", agent="a")
        for i, h in enumerate(NOW.replace(minute=0) - k * HOUR for k in range(48, 0, -1))
    ]
    ledger.write(events=new)
    scanner = AnomalyScanner(ledger, **ONLY_SPIKES)
    assert scanner.scan(since=NOW - timedelta(days=1), now=NOW) == []


def test_cost_per_task_three_times_its_average_is_found_per_task_type(ledger: Ledger) -> None:
    now = datetime(2026, 11, 10, 12, 5, tzinfo=UTC)
    events = []
    hour = now.replace(minute=0) - 8 * 24 * HOUR
    while hour < now.replace(minute=0):
        last = hour == now.replace(minute=0) - HOUR
        for kind, usual in (("ticket", "0.50"), ("triage", "0.20")):
            for task in range(4):
                cost = Decimal(usual) * (4 if last and kind == "ticket" else 1)
                events.append(
                    event(
                        hour + timedelta(minutes=task),
                        cost,
                        len(events),
                        team="support",
                        agent="helper",
                        task=f"{kind}-{hour:%d%H}-{task}",
                        task_type=kind,
                    )
                )
        hour += HOUR
    ledger.write(events=events)
    scanner = AnomalyScanner(ledger, spike=None, call_rate=None, forecast=None)
    alerts = scanner.scan(now=now)
    assert [(a.kind, a.scope) for a in alerts] == [
        ("cost_per_task", {"team": "support", "task_type": "ticket"})
    ]
    assert alerts[0].observed == Decimal(2) and alerts[0].expected == Decimal("0.5")
    assert "4.0x the 7-day average" in alerts[0].message


def test_a_call_rate_jump_is_found(ledger: Ledger) -> None:
    now = datetime(2026, 11, 10, 12, 1, tzinfo=UTC)
    events = []
    minute = now.replace(minute=0) - 2 * HOUR
    while minute < now.replace(minute=0):
        burst = minute >= now.replace(minute=0) - timedelta(minutes=5)
        for k in range(40 if burst else 2):
            at = minute + timedelta(seconds=k)
            events.append(event(at, "0.001", len(events), team="search", agent="loop"))
        minute += timedelta(minutes=1)
    ledger.write(events=events)
    scanner = AnomalyScanner(ledger, spike=None, cost_per_task=None, forecast=None)
    alerts = scanner.scan(now=now)
    assert [(a.kind, a.scope) for a in alerts] == [("call_rate", {"team": "search"})]
    assert alerts[0].observed == Decimal(40) and alerts[0].expected == Decimal(2)
    assert alerts[0].window_end == now.replace(minute=0)


POLICY = Policy.from_mapping(
    {
        "budgets": [
            {
                "id": "monthly",
                "limit": "1000",
                "period": "monthly",
                "scope": {"team": "*"},
                "thresholds": [50, 80],
                "action": "warn",
            },
            {"id": "tokens", "limit": "10", "unit": "tokens", "period": "monthly"},
        ]
    }
)


def drift(ledger: Ledger, days: int) -> None:
    """Spend growing 4% a day from $25 (team search) and a flat $5 a day (team ads)."""
    events = []
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for day in range(days):
        for hour in range(24):
            at = start + timedelta(days=day, hours=hour)
            cost = Decimal(25) * Decimal("1.04") ** day / 24
            events.append(
                event(
                    at,
                    cost.quantize(Decimal("1e-9")),
                    len(events),
                    team="search",
                    agent="planner" if hour % 3 else "writer",
                )
            )
            events.append(event(at, Decimal(5) / 24, len(events), team="ads", agent="x"))
    ledger.write(events=events)


def test_a_slow_drift_is_caught_by_the_forecast_before_the_thresholds(ledger: Ledger) -> None:
    drift(ledger, 13)
    now = datetime(2026, 11, 14, 0, 5, tzinfo=UTC)
    scanner = AnomalyScanner(ledger, policy=POLICY)
    alerts = scanner.scan(now=now)
    assert [(a.kind, a.scope) for a in alerts] == [
        ("forecast", {"budget": "monthly", "team": "search"})
    ]
    alert = alerts[0]
    assert (alert.window_start, alert.window_end) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    )
    assert alert.expected == Decimal(1000)
    assert alert.observed is not None and alert.observed > 1000
    assert "below its first threshold (50%)" in alert.message
    assert alert.drivers[0] == {"agent": "planner", "cost": alert.drivers[0]["cost"]}
    # A day earlier the projection was still under the limit.
    assert AnomalyScanner(ledger, policy=POLICY).scan(now=now - timedelta(days=2)) == []


class Recorder:
    """A channel that records what it delivered, and fails when told to."""

    def __init__(self, name: str, *, fail: int = 0) -> None:
        self.name = name
        self.fail = fail
        self.got: list[str] = []

    def deliver(self, alert: AlertRecord) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("down")
        self.got.append(alert.alert_id)


def spiked(ledger: Ledger) -> Callable[[], list[AlertRecord]]:
    n = seed_weeks(ledger, NOW)
    at = NOW.replace(minute=0) - HOUR + timedelta(minutes=30)
    ledger.write(events=[event(at, "50", n, team="search", agent="planner")])
    return lambda: AnomalyScanner(ledger, **ONLY_SPIKES).scan(now=NOW)


def test_the_same_scan_twice_raises_each_alert_once(ledger: Ledger) -> None:
    scan = spiked(ledger)
    channel = Recorder("pager")
    first = AlertService(ledger, [channel]).publish(scan())
    assert len(first) == 1 and first[0].delivered == ["pager"]
    again = AlertService(ledger, [channel], clock=lambda: NOW + HOUR).publish(scan())
    assert again == []
    assert channel.got == [first[0].alert_id]
    stored = ledger.list_alerts()
    assert [(a.alert_id, a.delivered) for a in stored] == [(first[0].alert_id, ["pager"])]


def test_the_same_alert_is_raised_once_across_restarts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.sqlite"
    with SQLLedger.from_url(url) as first:
        scan = spiked(first)
        assert len(AlertService(first, [LogChannel()]).publish(scan())) == 1
    with SQLLedger.from_url(url) as second:
        alerts = AnomalyScanner(second, **ONLY_SPIKES).scan(now=NOW)
        assert len(alerts) == 1
        assert AlertService(second, [LogChannel()]).publish(alerts) == []
        assert len(second.list_alerts()) == 1


def test_a_failing_channel_is_retried_without_double_posting(ledger: Ledger) -> None:
    scan = spiked(ledger)
    good, flaky = Recorder("good"), Recorder("flaky", fail=1)
    clock = [NOW]
    service = AlertService(ledger, [good, flaky], clock=lambda: clock[0])
    raised = service.publish(scan())
    assert len(raised) == 1 and raised[0].delivered == ["good"]
    assert (good.got, flaky.got) == ([raised[0].alert_id], [])
    # Within the grace period another run leaves it to the first (it may still be posting).
    assert service.publish(scan()) == [] and flaky.got == []
    clock[0] = NOW + timedelta(minutes=10)
    assert service.publish(scan()) == []
    assert (good.got, flaky.got) == ([raised[0].alert_id], [raised[0].alert_id])
    assert sorted(ledger.list_alerts()[0].delivered) == ["flaky", "good"]
    clock[0] = NOW + timedelta(minutes=20)
    assert service.retry() == 0
    assert (len(good.got), len(flaky.got)) == (1, 1)


def test_bad_scopes_and_spans_are_configuration_errors() -> None:
    ledger = InMemoryLedger()
    with pytest.raises(ConfigurationError, match="lists of tag names"):
        AnomalyScanner(ledger, scopes=["team"])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="invalid tag name"):
        AnomalyScanner(ledger, scopes=[["bad tag"]]).scan(now=NOW)
    with pytest.raises(ConfigurationError, match="up to a week"):
        AnomalyScanner(ledger).scan(since=NOW - timedelta(days=8), now=NOW)
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        AnomalyScanner(ledger).scan(now=datetime(2026, 11, 1))
    with pytest.raises(ValueError):
        CostSpikeRule(weeks=0)
    with pytest.raises(ConfigurationError, match="same name"):
        AlertService(ledger, [LogChannel(), LogChannel()])
