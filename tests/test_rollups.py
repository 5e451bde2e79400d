"""Rollups: calendar windows of a zone, totals by tags, per-unit figures, budget vs actual."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent_finops import ConfigurationError, InMemoryLedger, SQLLedger
from agent_finops.cli import main
from agent_finops.ledger import CostEvent, Ledger, RunRecord
from agent_finops.policy import Policy
from agent_finops.rollups import ROLLUP_COLUMNS, calendar_windows, rollup, to_json, write_csv
from tests.conftest import drop_postgres_schema, postgres_url_or_skip

D = Decimal
PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "memory":
        yield InMemoryLedger()
        return
    url = f"sqlite:///{tmp_path}/l.sqlite" if request.param == "sqlite" else postgres_url_or_skip()
    with SQLLedger.from_url(url) as led:
        yield led
    if request.param == "postgres":
        drop_postgres_schema(url)


def ev(event_id: str, at: datetime, cost: str | None, trace: str = "r1", **tags: str) -> CostEvent:
    return CostEvent(
        event_id=event_id,
        trace_id=trace,
        span_id=event_id,
        kind="model",
        name="gpt-4o-mini",
        provider="openai",
        created_at=at,
        node_path=None,
        tags=tags,
        cost=None if cost is None else D(cost),
        price_source="test",
        price_version="1",
        uncached_input_tokens=900,
        output_tokens=100,
    )


def test_days_follow_the_zone_across_a_daylight_saving_change() -> None:
    start = datetime(2026, 10, 24, tzinfo=PARIS)
    end = datetime(2026, 10, 27, tzinfo=PARIS)
    days = calendar_windows("day", start, end, PARIS)
    assert [(b - a) for a, b in days] == [
        timedelta(hours=24),
        timedelta(hours=25),
        timedelta(hours=24),
    ]
    assert days[1][0] == datetime(2026, 10, 24, 22, tzinfo=UTC)  # local midnight, CEST
    weeks = calendar_windows(
        "week",
        datetime(2026, 11, 4, tzinfo=UTC),
        datetime(2026, 11, 20, tzinfo=UTC),
        ZoneInfo("UTC"),
    )
    assert [a.date().isoformat() for a, _ in weeks] == ["2026-11-04", "2026-11-09", "2026-11-16"]
    months = calendar_windows(
        "month",
        datetime(2026, 1, 15, tzinfo=UTC),
        datetime(2026, 4, 1, tzinfo=UTC),
        ZoneInfo("UTC"),
    )
    assert [a.month for a, _ in months] == [1, 2, 3] and months[0][0].day == 15  # clipped


def test_bad_ranges_and_periods_are_named() -> None:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(ConfigurationError, match="period"):
        calendar_windows("fortnight", now, now + timedelta(1), PARIS)
    with pytest.raises(ConfigurationError, match="end after"):
        calendar_windows("day", now, now, PARIS)
    with pytest.raises(ConfigurationError, match="too many windows"):
        calendar_windows("hour", now, now + timedelta(days=3000), PARIS)


def test_rollup_by_team_and_day_in_a_zone(ledger: Ledger) -> None:
    # 23:30 UTC on Nov 1 is 00:30 on Nov 2 in Paris: it belongs to Paris's Nov 2.
    ledger.write(
        runs=[
            RunRecord(
                trace_id="r1",
                name="g",
                started_at=datetime(2026, 11, 1, 10, tzinfo=UTC),
                ended_at=datetime(2026, 11, 1, 10, 2, tzinfo=UTC),
            ),
            RunRecord(trace_id="r2", name="g", started_at=datetime(2026, 11, 1, 23, tzinfo=UTC)),
        ],
        events=[
            ev("a", datetime(2026, 11, 1, 10, tzinfo=UTC), "0.30", team="search", task="t1"),
            ev("b", datetime(2026, 11, 1, 10, 1, tzinfo=UTC), "0.10", team="search", task="t2"),
            ev("c", datetime(2026, 11, 1, 10, 1, tzinfo=UTC), None, team="search", task="t2"),
            ev(
                "d",
                datetime(2026, 11, 1, 23, 30, tzinfo=UTC),
                "1.25",
                "r2",
                team="search",
                task="t3",
            ),
            ev("e", datetime(2026, 11, 1, 12, tzinfo=UTC), "2", team="ads"),
        ],
    )
    found = rollup(
        ledger,
        start=datetime(2026, 11, 1, tzinfo=PARIS),
        end=datetime(2026, 11, 3, tzinfo=PARIS),
        by=["team"],
        period="day",
        tz="Europe/Paris",
        runtime=True,
    )
    got = [(r.start.date().isoformat(), r.group["team"], r.totals.cost) for r in found.rows]
    assert got == [
        ("2026-11-01", "ads", D(2)),
        ("2026-11-01", "search", D("0.4")),
        ("2026-11-02", "search", D("1.25")),
    ]
    search = found.rows[1]
    assert (search.totals.tasks, search.totals.unpriced, search.totals.runs) == (2, 1, 1)
    assert search.cost_per_task == D("0.2")
    assert search.cost_per_1k_tokens == D("0.1333333333")  # 3 events x 1,000 tokens, 10 places
    assert search.cost_per_runtime_minute == D("0.2")  # r1 ran 2 minutes
    assert found.rows[2].cost_per_runtime_minute is None  # r2 is still open
    assert found.total.cost == D("3.65")
    assert (found.total.tasks, found.total.runs, found.total.events) == (3, 3, 5)  # r1 twice


def test_budget_vs_actual_uses_the_most_specific_usd_budget_of_the_period(ledger: Ledger) -> None:
    policy = Policy.from_mapping(
        {
            "version": 1,
            "budgets": [
                {"id": "per-team", "scope": {"team": "*"}, "limit": "10", "period": "monthly"},
                {"id": "search", "scope": {"team": "search"}, "limit": "4", "period": "monthly"},
                {"id": "daily", "scope": {"team": "*"}, "limit": "1", "period": "daily"},
                {
                    "id": "tokens",
                    "scope": {"team": "*"},
                    "unit": "tokens",
                    "limit": 5,
                    "period": "monthly",
                },
            ],
        }
    )
    at = datetime(2026, 11, 5, tzinfo=UTC)
    ledger.write(
        runs=[RunRecord(trace_id="r1", name="g", started_at=at)],
        events=[
            ev("a", at, "3", team="search"),
            ev("b", at, "2.5", team="ads"),
            ev("c", at, "9", project="x"),
        ],
    )
    found = rollup(
        ledger,
        start=datetime(2026, 11, 1, tzinfo=UTC),
        end=datetime(2026, 12, 1, tzinfo=UTC),
        by=["team"],
        policy=policy,
    )
    lines = {r.group["team"]: r.budget for r in found.rows}
    assert lines[None] is None  # no team: no budget covers it
    ads, search = lines["ads"], lines["search"]
    assert ads is not None and search is not None
    assert (ads.rule_id, ads.limit, ads.used_pct, ads.remaining) == (
        "per-team",
        D(10),
        D("25.00"),
        D("7.5"),
    )
    assert (search.rule_id, search.used_pct, search.remaining) == ("search", D("75.00"), D(1))
    by_project = rollup(
        ledger,
        start=datetime(2026, 11, 1, tzinfo=UTC),
        end=datetime(2026, 12, 1, tzinfo=UTC),
        by=["project"],
        policy=policy,
    )
    assert all(r.budget is None for r in by_project.rows)  # team budgets don't cover projects


def test_csv_and_json_have_the_same_rows_and_exact_money(ledger: Ledger) -> None:
    at = datetime(2026, 11, 5, tzinfo=UTC)
    ledger.write(
        runs=[RunRecord(trace_id="r1", name="g", started_at=at)],
        events=[ev(f"e{i}", at, "0.000000000000000001", team="t") for i in range(3)]
        + [ev("x", at, "0.1", team="t", region="eu")],
    )
    found = rollup(
        ledger,
        start=datetime(2026, 11, 1, tzinfo=UTC),
        end=datetime(2026, 12, 1, tzinfo=UTC),
        by=["team", "region"],
    )
    data = to_json(found)
    assert [r["cost"] for r in data["rows"]] == ["0.000000000000000003", "0.1"]
    assert data["total"]["cost"] == "0.100000000000000003"
    assert list(data["rows"][0]) == ["team", "region", *ROLLUP_COLUMNS]
    out = io.StringIO()
    write_csv(found, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["team"], r["region"], r["cost"]) for r in rows] == [
        ("t", "", "0.000000000000000003"),
        ("t", "eu", "0.1"),
    ]
    again = io.StringIO()
    write_csv(
        rollup(
            ledger,
            start=datetime(2026, 11, 1, tzinfo=UTC),
            end=datetime(2026, 12, 1, tzinfo=UTC),
            by=["team", "region"],
        ),
        again,
    )
    assert again.getvalue() == out.getvalue()


def test_cli_rollup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/l.sqlite"
    at = datetime(2026, 11, 5, 12, tzinfo=UTC)
    with SQLLedger.from_url(url) as led:
        led.write(
            runs=[RunRecord(trace_id="r1", name="g", started_at=at)],
            events=[
                ev("a", at, "1.5", team="search", agent="planner"),
                ev("b", at, "0.5", team="ads", agent="writer"),
            ],
        )
    argv = [
        "rollup",
        "--db",
        url,
        "--by",
        "team,agent",
        "--from",
        "2026-11-01",
        "--to",
        "2026-12-01",
    ]
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(r["team"], r["agent"], r["cost"]) for r in data["rows"]] == [
        ("ads", "writer", "0.5"),
        ("search", "planner", "1.5"),
    ]
    assert main([*argv, "--where", "team=search"]) == 0
    text = capsys.readouterr().out
    assert "planner" in text and "writer" not in text and "$1.5" in text
    assert main([*argv, "--tz", "Mars/Olympus"]) == 1
    assert "unknown time zone" in capsys.readouterr().err
    assert main(["rollup", "--db", url, "--by", "bad tag"]) == 1
    assert "tag name" in capsys.readouterr().err


def test_a_budget_is_shown_only_against_its_own_spend(ledger: Ledger) -> None:
    """A global or team budget is never laid over a slice of its spend (review finding)."""
    policy = Policy.from_mapping(
        {
            "version": 1,
            "timezone": "UTC",
            "budgets": [
                {"id": "all", "limit": "10", "period": "monthly"},
                {"id": "team", "scope": {"team": "*"}, "limit": "4", "period": "monthly"},
            ],
        }
    )
    at = datetime(2026, 11, 5, tzinfo=UTC)
    ledger.write(
        runs=[RunRecord(trace_id="r1", name="g", started_at=at)],
        events=[ev("a", at, "6", team="a", project="x"), ev("b", at, "5", team="b", project="y")],
    )
    month = {"start": datetime(2026, 11, 1, tzinfo=UTC), "end": datetime(2026, 12, 1, tzinfo=UTC)}
    (whole,) = rollup(ledger, **month, policy=policy).rows
    assert whole.budget is not None and (whole.budget.rule_id, whole.budget.used_pct) == (
        "all",
        D("110.00"),
    )
    by_team = rollup(ledger, **month, by=["team"], policy=policy).rows
    assert [(r.budget.rule_id if r.budget else None) for r in by_team] == ["team", "team"]
    sliced = rollup(ledger, **month, by=["team", "project"], policy=policy).rows
    assert all(r.budget is None for r in sliced)
    filtered = rollup(ledger, **month, by=["team"], where={"project": ["x"]}, policy=policy).rows
    assert all(r.budget is None for r in filtered)
    paris = rollup(ledger, **month, by=["team"], tz="Europe/Paris", policy=policy).rows
    assert all(r.budget is None for r in paris)  # the policy counts months in UTC


def test_hours_are_real_hours_when_clocks_go_back() -> None:
    start = datetime(2026, 10, 25, 1, tzinfo=PARIS)
    end = (start.astimezone(UTC) + timedelta(hours=3)).astimezone(PARIS)  # 3 real hours
    hours = calendar_windows("hour", start, end, PARIS)
    assert [(b - a) for a, b in hours] == [timedelta(hours=1)] * 3
    assert [a.astimezone(PARIS).hour for a, _ in hours] == [1, 2, 2]  # 02:00 twice


def test_dates_past_the_calendar_are_errors_not_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/l.sqlite"
    SQLLedger.from_url(url).close()
    for argv in (
        ["rollup", "--db", url, "--to", "9999-12-31"],
        ["rollup", "--db", url, "--from", "0001-01-01", "--to", "0001-01-02", "--tz", "Asia/Tokyo"],
        ["finance-report", "--db", url, "--month", "9999-12"],
        ["finance-report", "--db", url, "--month", "2026-1"],
        ["export", "--db", url, "--day", "0001-01-01"],
    ):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("agent-finops: error:") and "Traceback" not in err, err
