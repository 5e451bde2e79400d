"""The spend dashboard's model on known events (in memory and SQLite), its page and its command."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from agent_finops import ConfigurationError
from agent_finops.cli import main as cli
from agent_finops.ledger import (
    AlertRecord,
    CostEvent,
    EventKind,
    InMemoryLedger,
    Ledger,
    RunRecord,
    SQLLedger,
)
from agent_finops.policy import Policy
from agent_finops.reports import (
    DASHBOARD_SCHEMA_VERSION,
    Dashboard,
    build_dashboard,
    render_dashboard_html,
    write_dashboard_html,
)

NOW = datetime(2026, 11, 4, 12, tzinfo=UTC)
FIRST, LAST = date(2026, 11, 1), date(2026, 11, 7)
MICRO = Decimal("0.000001")


def _at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


# (id, run, created, cost, kind, tags)
EVENTS: list[tuple[str, str, datetime, str | None, EventKind, dict[str, str]]] = [
    ("e1", "r1", _at(2, 9), "0.10", "model", {"team": "search", "agent": "planner", "task": "t1"}),
    ("e2", "r1", _at(2, 15), "0.05", "model", {"team": "search", "agent": "writer", "task": "t1"}),
    (
        "e3",
        "r2",
        _at(2, 23, 30),
        "0.20",
        "model",
        {"team": "support", "agent": "planner", "task": "t2"},
    ),
    ("e4", "r3", _at(3, 10), None, "model", {"team": "support", "agent": "writer", "task": "t3"}),
    (
        "e5",
        "r3",
        _at(3, 11),
        "0.0000125",
        "model",
        {"team": "support", "agent": "writer", "task": "t3"},
    ),
    ("e6", "r4", _at(5, 8), "1.5", "tool", {"agent": "planner"}),
    ("e7", "r0", _at(31, 12, month=10), "0.3", "model", {"team": "search", "task": "t0"}),
    ("e8", "r5", _at(8, 12), "0.4", "model", {"team": "search", "task": "t4"}),
]

POLICY = {
    "timezone": "UTC",
    "budgets": [
        {"id": "monthly-all", "limit": "10", "period": "monthly"},
        {"id": "daily-all", "limit": "0.3", "period": "daily"},
        {"id": "weekly-team", "scope": {"team": "*"}, "limit": "1", "period": "weekly"},
        {"id": "run-cap", "limit": "1", "period": "run"},
        {"id": "tokens-daily", "unit": "tokens", "limit": "1000", "period": "daily"},
    ],
}


def _events() -> list[CostEvent]:
    return [
        CostEvent(
            event_id=eid,
            trace_id=run,
            span_id=f"s-{eid}",
            kind=kind,
            name="gpt-4o-mini" if kind == "model" else "search",
            provider="openai",
            created_at=at,
            node_path=None,
            tags=tags,
            cost=None if cost is None else Decimal(cost),
            price_source="test",
            price_version="1",
            uncached_input_tokens=100,
            output_tokens=10,
        )
        for eid, run, at, cost, kind, tags in EVENTS
    ]


def _fill(ledger: Ledger) -> None:
    runs = {r: at for _, r, at, *_ in reversed(EVENTS)}
    ledger.write(
        runs=[RunRecord(trace_id=r, name="g", started_at=at) for r, at in runs.items()],
        events=_events(),
    )
    for alert_id, start, created in (
        ("in-range", _at(2, 23, 30), _at(3, 1)),
        ("before-range", _at(20, 0, month=10), _at(1, 1)),  # stored in range, window before
    ):
        ledger.add_alert(
            AlertRecord(
                alert_id=alert_id,
                kind="cost_spike",
                scope={"team": "support"},
                window_start=start,
                window_end=start + timedelta(hours=1),
                created_at=created,
                severity="critical",
                message="<b>spend</b> 9x the usual",
                observed=Decimal("0.2"),
                expected=Decimal("0.0222"),
            )
        )


@pytest.fixture(params=["memory", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """The known events in an in-memory ledger and in a SQLite file."""
    if request.param == "memory":
        memory = InMemoryLedger()
        _fill(memory)
        yield memory
        return
    with SQLLedger.from_url(f"sqlite:///{tmp_path}/l.sqlite") as sql:
        _fill(sql)
        yield sql


def _board(ledger: Ledger, **kwargs: Any) -> Dashboard:
    options: dict[str, Any] = {"first_day": FIRST, "last_day": LAST, "clock": lambda: NOW}
    return build_dashboard(ledger, **{**options, **kwargs})


def _in(start: datetime, end: datetime, **tags: str) -> list[CostEvent]:
    return [
        e
        for e in _events()
        if start <= e.created_at < end and all(e.tags.get(k) == v for k, v in tags.items())
    ]


def _cost(events: list[CostEvent]) -> Decimal:
    return sum((e.cost for e in events if e.cost is not None), Decimal(0))


def _no_floats(value: Any) -> None:
    assert not isinstance(value, float), value
    if isinstance(value, dict):
        for v in value.values():
            _no_floats(v)
    elif isinstance(value, list):
        for v in value:
            _no_floats(v)


def test_days_and_totals_are_the_ledgers_sums(ledger: Ledger) -> None:
    data = _board(ledger).to_dict()
    assert data["schema_version"] == DASHBOARD_SCHEMA_VERSION
    assert data["range"] == {
        "from": "2026-11-01",
        "to": "2026-11-07",
        "timezone": "UTC",
        "start": "2026-11-01T00:00:00+00:00",
        "end": "2026-11-08T00:00:00+00:00",
        "days": 7,
    }
    assert [d["date"] for d in data["days"]] == [f"2026-11-0{i}" for i in range(1, 8)]
    running = Decimal(0)
    for d in data["days"]:
        start = datetime.fromisoformat(d["start"])
        events = _in(start, start + timedelta(days=1))
        running += _cost(events)
        assert Decimal(d["cost_usd"]) == _cost(events), d
        assert d["unpriced"] == sum(e.cost is None for e in events)
        assert d["events"] == len(events)
        assert d["tasks"] == len({e.tags["task"] for e in events if "task" in e.tags})
        assert d["runs"] == len({e.trace_id for e in events})
        assert Decimal(d["cumulative_cost_usd"]) == running
    by_date = {d["date"]: d for d in data["days"]}
    assert by_date["2026-11-02"]["cost_usd"] == "0.35"
    assert by_date["2026-11-02"]["cost_per_task_usd"] == "0.175"  # 0.35 / {t1, t2}
    # 0.0000125 for one task, rounded half-even to a millionth: 0.000012, not 0.000013.
    assert by_date["2026-11-03"]["cost_per_task_usd"] == "0.000012"
    assert by_date["2026-11-03"]["unpriced"] == 1
    assert by_date["2026-11-05"]["cost_usd"] == "1.5"
    assert by_date["2026-11-05"]["cost_per_task_usd"] is None  # a tool call without a task
    assert by_date["2026-11-01"]["cost_usd"] == "0" and by_date["2026-11-01"]["events"] == 0
    t = data["totals"]
    assert (t["cost_usd"], t["unpriced"], t["events"], t["tasks"], t["runs"]) == (
        "1.8500125",
        1,
        6,
        3,
        4,
    )
    assert (t["model_calls"], t["tool_calls"]) == (5, 1)
    assert t["tokens"] == {"input": 600, "output": 60}
    assert t["cost_per_task_usd"] == "0.616671"  # 1.8500125 / 3
    _no_floats(data)
    assert json.loads(json.dumps(data)) == data


def test_cost_by_team_and_agent_with_cost_per_task(ledger: Ledger) -> None:
    groups = _board(ledger).to_dict()["groups"]
    assert list(groups) == ["team", "agent"]
    team = {g["key"]: g for g in groups["team"]}
    assert [g["key"] for g in groups["team"]] == [None, "support", "search"]  # by cost
    assert team[None]["cost_usd"] == "1.5" and team[None]["cost_per_task_usd"] is None
    assert team["support"]["cost_usd"] == "0.2000125"
    assert team["support"]["unpriced"] == 1 and team["support"]["tasks"] == 2
    assert team["support"]["cost_per_task_usd"] == "0.100006"
    assert team["search"]["cost_usd"] == "0.15" and team["search"]["cost_per_task_usd"] == "0.15"
    assert team["search"]["share"] == "0.0811"  # 0.15 / 1.8500125
    agent = {g["key"]: g for g in groups["agent"]}
    assert agent["planner"]["cost_usd"] == "1.8"
    assert agent["writer"]["cost_usd"] == "0.0500125"
    total = sum((Decimal(g["cost_usd"]) for g in groups["team"]), Decimal(0))
    assert total == Decimal("1.8500125")
    only = _board(ledger, by=["agent"]).to_dict()
    assert list(only["groups"]) == ["agent"] and only["by"] == ["agent"]


def test_days_follow_the_time_zone(ledger: Ledger) -> None:
    data = _board(ledger, timezone="Europe/Paris").to_dict()
    assert data["range"]["start"] == "2026-10-31T23:00:00+00:00"  # Paris midnight, UTC+1
    by_date = {d["date"]: d for d in data["days"]}
    assert by_date["2026-11-02"]["cost_usd"] == "0.15"  # e3 at 23:30 UTC is Nov 3 in Paris
    assert by_date["2026-11-03"]["cost_usd"] == "0.2000125"
    assert data["anomalies"][0]["date"] == "2026-11-03"


def test_budget_burn_and_forecast(ledger: Ledger) -> None:
    data = _board(ledger, policy=Policy.from_mapping(POLICY)).to_dict()
    budgets = data["budgets"]
    assert budgets["skipped"] == [
        {"budget_id": "run-cap", "reason": "a per-run cost cap, not a period"},
        {"budget_id": "tokens-daily", "reason": "counts tokens, not USD"},
    ]
    rows = {(b["budget_id"], b["scope"].get("team")): b for b in budgets["burn"]}
    assert list(rows) == [
        ("monthly-all", None),
        ("daily-all", None),
        ("weekly-team", "support"),
        ("weekly-team", "search"),
    ]
    month = rows["monthly-all", None]
    start, end = _at(1, 0), _at(1, 0, month=12)
    spent = _cost(_in(start, NOW))
    recent = _cost(_in(NOW - timedelta(days=7), NOW))  # reaches into October (e7)
    assert (month["period_start"], month["period_end"]) == (start.isoformat(), end.isoformat())
    assert Decimal(month["spent_usd"]) == spent == Decimal("0.3500125")
    assert month["unpriced"] == 1
    assert Decimal(month["recent_cost_usd"]) == recent == Decimal("0.6500125")
    rate = (recent / 7).quantize(MICRO, rounding=ROUND_HALF_EVEN)
    days_left = Decimal("26.5")
    assert Decimal(month["daily_rate_usd"]) == rate == Decimal("0.092859")
    assert Decimal(month["days_left"]) == days_left
    forecast = spent + (rate * days_left).quantize(MICRO, rounding=ROUND_HALF_EVEN)
    assert Decimal(month["forecast_usd"]) == forecast == Decimal("2.8107765")
    assert month["used_share"] == "0.0350"
    assert month["elapsed_share"] == "0.1167"  # 3.5 of 30 days
    assert month["forecast_share"] == "0.2811"
    assert month["status"] == "on_track"
    day = rows["daily-all", None]
    assert day["spent_usd"] == "0" and day["elapsed_share"] == "0.5000"
    assert day["forecast_usd"] == "0.04643"  # 0.092859 x 0.5 day, rounded half-even
    assert day["status"] == "on_track"
    week = rows["weekly-team", "support"]
    assert week["period_start"] == _at(2, 0).isoformat()  # ISO week: Monday
    assert week["spent_usd"] == "0.2000125" and week["unpriced"] == 1
    assert rows["weekly-team", "search"]["spent_usd"] == "0.15"
    lines = {line["budget_id"]: line for line in budgets["lines"]}
    assert set(lines) == {"monthly-all", "daily-all"}  # scoped budgets are not drawn
    assert lines["daily-all"]["points"] == []
    points = lines["monthly-all"]["points"]
    assert [Decimal(p["to_date_usd"]) for p in points] == [
        Decimal(d["cumulative_cost_usd"]) for d in data["days"]
    ]
    assert points[0]["pace_usd"] == "0.333333" and points[-1]["pace_usd"] == "2.333333"


def test_a_period_chart_starts_again_with_each_month(ledger: Ledger) -> None:
    policy = Policy.from_mapping({"budgets": [{"id": "m", "limit": "10", "period": "monthly"}]})
    board = _board(ledger, first_day=date(2026, 10, 30), last_day=date(2026, 11, 2), policy=policy)
    points = board.to_dict()["budgets"]["lines"][0]["points"]
    assert [(p["date"], p["to_date_usd"], p["pace_usd"]) for p in points] == [
        ("2026-10-30", "0", "9.677419"),  # 30 of 31 days
        ("2026-10-31", "0.3", "10"),
        ("2026-11-01", "0", "0.333333"),
        ("2026-11-02", "0.35", "0.666667"),
    ]
    burn = board.to_dict()["budgets"]["burn"][0]
    assert burn["period_start"] == _at(1, 0).isoformat()  # the range's last period
    assert board.as_of == _at(3, 0)  # the range is over before NOW: measured to its end


def test_anomalies_are_the_alerts_starting_in_the_range(ledger: Ledger) -> None:
    data = _board(ledger).to_dict()
    assert [a["alert_id"] for a in data["anomalies"]] == ["in-range"]
    a = data["anomalies"][0]
    assert (a["date"], a["kind"], a["severity"], a["unit"]) == (
        "2026-11-02",
        "cost_spike",
        "critical",
        "usd",
    )
    assert (a["observed"], a["expected"]) == ("0.2", "0.0222")
    assert data["anomalies_truncated"] is False


def test_default_range_is_the_last_30_days(ledger: Ledger) -> None:
    board = build_dashboard(ledger, clock=lambda: NOW)
    data = board.to_dict()
    assert (data["range"]["from"], data["range"]["to"]) == ("2026-10-06", "2026-11-04")
    assert len(data["days"]) == 30
    assert data["totals"]["cost_usd"] == "0.6500125"  # e7 and Nov 2-4; later events not yet
    assert "0.6500125" in board.render()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"first_day": date(2026, 11, 8)}, "ends before it starts"),
        ({"first_day": date(2020, 1, 1)}, "too long"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"by": ["bad tag!"]}, "by"),
    ],
)
def test_bad_arguments_are_configuration_errors(
    ledger: Ledger, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        _board(ledger, **kwargs)


class _Figures(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.figures: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "data" and "fig" in (found.get("class") or ""):
            self.figures.append(found)


def _resolve(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def test_page_is_rendered_from_the_json_and_escapes_user_text(
    ledger: Ledger, tmp_path: Path
) -> None:
    board = _board(ledger, policy=Policy.from_mapping(POLICY))
    data = board.to_dict()
    page = render_dashboard_html(board)
    assert page == render_dashboard_html(json.loads(json.dumps(data)))
    parser = _Figures()
    parser.feed(page)
    assert len(parser.figures) > 100
    for fig in parser.figures:
        assert fig["value"] == str(_resolve(data, str(fig["data-json"]))), fig
    assert "<b>spend</b>" not in page and "&lt;b&gt;spend&lt;/b&gt;" in page
    assert not re.search(r"<script|https?://", page)
    path = write_dashboard_html(board, tmp_path / "d.html")
    assert path.read_text(encoding="utf-8") == page
    with pytest.raises(ConfigurationError, match="--html"):
        write_dashboard_html(board, tmp_path / "no-such-dir" / "d.html")


# -- the command ----------------------------------------------------------------------------


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite ledger with the known events."""
    address = f"sqlite:///{tmp_path}/cli.sqlite"
    with SQLLedger.from_url(address) as sql:
        _fill(sql)
    return address


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_cli_json_is_the_model(url: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps(POLICY))  # JSON is YAML
    html = tmp_path / "out.html"
    code, out, err = _run(
        "--db", url, "dashboard", "--from", "2026-11-01", "--to", "2026-11-02",
        "--by", "team", "--policy", str(policy), "--html", str(html), "--json",
    )  # fmt: skip
    assert code == 0, err
    assert f"wrote {html}" in err
    printed = json.loads(out)
    with SQLLedger.from_url(url, create=False) as sql:
        expected = build_dashboard(
            sql,
            first_day=FIRST,
            last_day=date(2026, 11, 2),
            by=["team"],
            policy=Policy.from_mapping(POLICY),
            clock=lambda: datetime.fromisoformat(printed["generated_at"]),
        ).to_dict()
    assert printed == expected
    assert printed["totals"]["cost_usd"] == "0.35" and list(printed["groups"]) == ["team"]
    page = html.read_text(encoding="utf-8")
    assert page == render_dashboard_html(printed)


def test_cli_prints_a_summary_without_json_or_html(url: str) -> None:
    code, out, _ = _run("dashboard", "--db", url, "--from", "2026-11-01", "--to", "2026-11-07")
    assert code == 0
    assert out.startswith("Spend 2026-11-01 .. 2026-11-07 (UTC): $1.8500125 known, 1 unpriced")
    assert "support: $0.2000125 (+1 unpriced)" in out


@pytest.mark.parametrize(
    "argv",
    [["--from", "2026-13-01"], ["--to", "yesterday"], ["--by", ","], ["--by", "a\x00b"]],
)
def test_cli_bad_options_are_usage_errors(
    url: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli(["--db", url, "dashboard", *argv])
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tz", "Mars/Olympus"], "unknown time zone"),
        (["--from", "2026-11-09", "--to", "2026-11-01"], "ends before it starts"),
        (["--policy", "/no/such/policy.yaml"], "policy"),
        (["--by", "bad tag!"], "by"),
    ],
)
def test_cli_bad_values_are_clear_errors(url: str, argv: list[str], message: str) -> None:
    code, out, err = _run("--db", url, "dashboard", *argv)
    assert code == 1 and not out
    assert err.startswith("agent-finops: error:") and message in err and "Traceback" not in err


def test_cli_does_not_create_a_mistyped_ledger(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "l.sqlite"
    code, _, err = _run("--db", f"sqlite:///{missing}", "dashboard")
    assert code == 1 and str(missing) in err
    assert not missing.parent.exists()


@pytest.mark.parametrize(
    ("limit", "status"),
    [("0.35", "over"), ("1", "forecast_over"), ("2.9", "ahead"), ("3", "on_track")],
)
def test_budget_status(ledger: Ledger, limit: str, status: str) -> None:
    # spent 0.3500125 of the month by NOW (3.5 of 30 days elapsed), forecast 2.8107765
    policy = Policy.from_mapping({"budgets": [{"id": "m", "limit": limit, "period": "monthly"}]})
    (burn,) = _board(ledger, policy=policy).to_dict()["budgets"]["burn"]
    assert burn["status"] == status


def test_the_docs_python_snippet_runs(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "dashboard.md").read_text()
    snippet = doc.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policy.yaml").write_text(json.dumps(POLICY))
    scope: dict[str, Any] = {"ledger": ledger}
    exec(compile(snippet, "docs/dashboard.md", "exec"), scope)
    board = scope["board"]
    assert isinstance(board, Dashboard) and list(board.to_dict()["groups"]) == ["team"]
    assert (tmp_path / "spend.html").read_text() == render_dashboard_html(board)
