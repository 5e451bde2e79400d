"""The HTML spend dashboard in headless Chromium, for a month of known events in a SQLite ledger.

Thirty days of model and tool calls by three teams (one named with markup) and two agents,
some unpriced, a spike, two stored alerts and a policy with a monthly, a daily and a
per-team budget, rendered by `agent-finops dashboard --html --json`. The page must render
with no console error and no network request, show exactly the JSON's figures, draw chart
points equal to the ledger's events, stay readable in light and dark mode and at 375 px.
Screenshots: see browser_harness.ARTIFACTS.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from browser_harness import DESKTOP, Browser, resolve, shown

from agent_finops.cli import main as cli
from agent_finops.ledger import AlertRecord, CostEvent, RunRecord, SQLLedger

PHONE_375 = {"width": 375, "height": 812}
HOSTILE_TEAM = "<script>window.__pwned=1</script>"
TEAMS = ("search", "support", HOSTILE_TEAM)
FIRST = date(2026, 11, 1)
DAYS = 30
POLICY = {
    "timezone": "UTC",
    "budgets": [
        {"id": "monthly-all", "limit": "12", "period": "monthly", "thresholds": [80]},
        {"id": "daily-all", "limit": "0.6", "period": "daily"},
        {"id": "team-weekly", "scope": {"team": "*"}, "limit": "2", "period": "weekly"},
    ],
}


@dataclass(frozen=True)
class Board:
    """The rendered dashboard: its JSON, its page and the ledger's events and alerts."""

    data: dict[str, Any]
    path: Path
    events: list[CostEvent]
    alerts: list[AlertRecord]


def _events() -> list[CostEvent]:
    events = []
    for d in range(DAYS):
        day = datetime.combine(FIRST + timedelta(days=d), datetime.min.time(), tzinfo=UTC)
        for k in range(2 + d % 4):
            cost: Decimal | None = Decimal("0.0123") * (1 + (d * 7 + k) % 5)
            if d == 16:
                cost = Decimal("0.41") + k  # the spike
            if d % 9 == 4 and k == 0:
                cost = None
            tags = {"team": TEAMS[(d + k) % 3], "agent": ("planner", "writer")[k % 2]}
            if k % 3 != 2:
                tags["task"] = f"task-{d}-{k % 2}"
            events.append(
                CostEvent(
                    event_id=f"e-{d}-{k}",
                    trace_id=f"run-{d}-{k % 2}",
                    span_id=f"s-{d}-{k}",
                    kind="tool" if k == 3 else "model",
                    name="search" if k == 3 else "gpt-4o-mini",
                    provider="openai",
                    created_at=day + timedelta(hours=3 + 4 * k, minutes=d),
                    node_path="agent",
                    tags=tags,
                    cost=cost,
                    price_source="test",
                    price_version="1",
                    uncached_input_tokens=1000 + d,
                    output_tokens=50 + k,
                )
            )
    return events


def _alerts() -> list[AlertRecord]:
    spike = datetime(2026, 11, 17, 3, tzinfo=UTC)
    forecast = datetime(2026, 11, 21, tzinfo=UTC)
    return [
        AlertRecord(
            alert_id="spike-17",
            kind="cost_spike",
            scope={"team": "support"},
            window_start=spike,
            window_end=spike + timedelta(hours=1),
            created_at=spike + timedelta(hours=1, minutes=5),
            severity="critical",
            message="hourly cost 40x its baseline <img src=x onerror=alert(1)>",
            observed=Decimal("1.41"),
            expected=Decimal("0.0351"),
        ),
        AlertRecord(
            alert_id="forecast-21",
            kind="forecast",
            scope={},
            window_start=forecast,
            window_end=datetime(2026, 12, 1, tzinfo=UTC),
            created_at=forecast + timedelta(hours=9),
            message="monthly-all is forecast to end the month above its limit",
            observed=Decimal("13.2"),
            expected=Decimal("12"),
        ),
    ]


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    """The month in a SQLite ledger, rendered with `agent-finops dashboard --html --json`."""
    tmp = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{tmp / 'ledger.sqlite'}"
    events = _events()
    with SQLLedger.from_url(url) as ledger:
        runs = {e.trace_id: e.created_at for e in reversed(events)}
        ledger.write(
            runs=[RunRecord(trace_id=r, name="crew", started_at=at) for r, at in runs.items()],
            events=events,
        )
        for alert in _alerts():
            ledger.add_alert(alert)
    policy = tmp / "policy.yaml"
    policy.write_text(json.dumps(POLICY))
    path = tmp / "dashboard.html"
    stdout = io.StringIO()
    last = FIRST + timedelta(days=DAYS - 1)
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        assert (
            cli(
                [
                    "--db",
                    url,
                    "dashboard",
                    "--from",
                    FIRST.isoformat(),
                    "--to",
                    last.isoformat(),
                    "--policy",
                    str(policy),
                    "--html",
                    str(path),
                    "--json",
                ]
            )
            == 0
        )
    with SQLLedger.from_url(url, create=False) as ledger:
        stored = list(ledger.iter_events(FIRST_START, FIRST_START + timedelta(days=DAYS)))
        alerts = ledger.list_alerts()
    assert len(stored) == len(events)
    yield Board(json.loads(stdout.getvalue()), path, stored, alerts)


FIRST_START = datetime.combine(FIRST, datetime.min.time(), tzinfo=UTC)


def _required_paths(data: dict[str, Any]) -> set[str]:
    """The JSON figures the page must show, each at least once."""
    keys = ("cost_usd", "unpriced", "model_calls", "tool_calls", "runs", "tasks")
    need = {f"totals.{k}" for k in (*keys, "cost_per_task_usd")}
    for i, d in enumerate(data["days"]):
        need |= {f"days.{i}.{k}" for k in (*keys[:-2], "tasks", "runs", "cumulative_cost_usd")}
        need |= {f"days.{i}.cost_per_task_usd"} if d["cost_per_task_usd"] else set()
    for dim, rows in data["groups"].items():
        for i, g in enumerate(rows):
            p = f"groups.{dim}.{i}"
            need |= {f"{p}.{k}" for k in ("model_calls", "tool_calls", "runs", "tasks", "share")}
            need |= {f"{p}.cost_usd"} if Decimal(g["cost_usd"]) or not g["unpriced"] else set()
            need |= {f"{p}.cost_per_task_usd"} if g["cost_per_task_usd"] else set()
    for i, _ in enumerate(data["budgets"]["burn"]):
        p = f"budgets.burn.{i}"
        need |= {
            f"{p}.{k}"
            for k in (
                "limit_usd",
                "spent_usd",
                "used_share",
                "elapsed_share",
                "daily_rate_usd",
                "days_left",
                "forecast_usd",
                "forecast_share",
            )
        }
    for i, _ in enumerate(data["budgets"]["lines"]):
        need.add(f"budgets.lines.{i}.limit_usd")
    for i, _ in enumerate(data["anomalies"]):
        need |= {f"anomalies.{i}.observed", f"anomalies.{i}.expected"}
    return need


def test_page_renders_offline_and_quietly(browser: Browser, board: Board) -> None:
    for scheme in ("light", "dark"):
        for label, viewport in (("desktop", DESKTOP), ("phone", PHONE_375)):
            with browser.open(board.path, viewport=viewport, color_scheme=scheme) as visit:
                p = visit.page
                assert p.title() == "Spend dashboard 2026-11-01 to 2026-11-30 (UTC)"
                assert p.locator("#spend-chart rect.day").count() == DAYS
                assert not visit.overflows(), f"{label} {scheme}: horizontal page scroll"
                for chart in ("#spend-chart", "#cpt-chart", "#period-chart-0"):
                    box = p.locator(chart).bounding_box()
                    assert box is not None and box["width"] > 300 and box["height"] > 100
                bg = p.evaluate("() => getComputedStyle(document.documentElement).backgroundColor")
                assert (bg == "rgb(255, 255, 255)") == (scheme == "light")
                visit.screenshot(f"dashboard-{label}-{scheme}")
                visit.assert_quiet()


def test_every_figure_equals_the_json(browser: Browser, board: Board) -> None:
    with browser.open(board.path) as visit:
        figures = visit.figures()
        stray = visit.stray_money()
        visit.assert_quiet()
    assert len(figures) > 300
    for fig in figures:
        expected = resolve(board.data, fig["path"])
        assert fig["value"] == str(expected), fig
        assert shown(fig["kind"], fig["text"]) == Decimal(str(expected)), fig
    missing = _required_paths(board.data) - {f["path"] for f in figures}
    assert not missing, sorted(missing)
    assert not stray, stray  # every amount on the page is one of the checked figures


def test_chart_points_match_the_ledger(browser: Browser, board: Board) -> None:
    with browser.open(board.path) as visit:
        bars = visit.attributes(
            "#spend-chart rect.day", ("data-date", "data-cost", "data-unpriced", "y", "height")
        )
        limits = visit.attributes("#spend-chart line.limit", ("data-budget", "data-limit", "y1"))
        marks = visit.attributes("#spend-chart line.alert", ("data-alert-id", "data-date", "x1"))
        dots = visit.attributes("#cpt-chart line.dot", ("data-date", "data-value", "data-tasks"))
        teams = visit.attributes("#by-team rect", ("data-key", "data-none", "data-cost", "width"))
        agents = visit.attributes("#by-agent rect", ("data-key", "data-cost"))
        period = visit.attributes(
            "#period-chart-0 line.dot", ("data-date", "data-to-date", "data-pace")
        )
        burn = visit.attributes("#burn rect.used", ("data-json", "data-used", "width"))
        visit.assert_quiet()

    cost: dict[str, Decimal] = defaultdict(Decimal)
    unpriced: dict[str, int] = defaultdict(int)
    tasks: dict[str, set[str]] = defaultdict(set)
    by_team: dict[str, Decimal] = defaultdict(Decimal)
    by_agent: dict[str, Decimal] = defaultdict(Decimal)
    for e in board.events:
        day = e.created_at.astimezone(UTC).date().isoformat()
        cost[day] += e.cost or 0
        unpriced[day] += e.cost is None
        if "task" in e.tags:
            tasks[day].add(e.tags["task"])
        by_team[e.tags["team"]] += e.cost or 0
        by_agent[e.tags["agent"]] += e.cost or 0

    # Daily bars: the ledger's known cost of each UTC day, heights on one scale.
    assert [b["data-date"] for b in bars] == [
        (FIRST + timedelta(days=i)).isoformat() for i in range(DAYS)
    ]
    assert {b["data-date"]: Decimal(b["data-cost"]) for b in bars} == {
        b["data-date"]: cost[b["data-date"]] for b in bars
    }
    assert {b["data-date"]: int(b["data-unpriced"]) for b in bars} == {
        b["data-date"]: unpriced[b["data-date"]] for b in bars
    }
    assert sum(unpriced.values()) > 0
    tallest = max(bars, key=lambda b: Decimal(b["data-cost"]))
    assert tallest["data-date"] == "2026-11-17"  # the spike
    scale = float(tallest["height"]) / float(tallest["data-cost"])  # pixels per dollar
    for b in bars:
        assert abs(float(b["height"]) - float(b["data-cost"]) * scale) < 0.002, b
        assert abs(float(b["y"]) + float(b["height"]) - 200) < 0.002, b

    # The daily budget: a flat line at its limit on the bars' scale.
    assert [(m["data-budget"], m["data-limit"]) for m in limits] == [("daily-all", "0.6")]
    height = 200
    assert abs(height - float(limits[0]["y1"]) - 0.6 * scale) < 2e-3

    # Anomalies: every stored alert of the range, on its day's bar.
    assert {(m["data-alert-id"], m["data-date"]) for m in marks} == {
        (a.alert_id, a.window_start.date().isoformat()) for a in board.alerts
    }
    centres = {b["data-date"]: (i + 0.5) * 1000 / DAYS for i, b in enumerate(bars)}
    for m in marks:
        assert abs(float(m["x1"]) - centres[m["data-date"]]) < 1e-3

    # Cost per task: the day's known cost / its distinct task tags.
    assert {d["data-date"] for d in dots} == {day for day, t in tasks.items() if t}
    for d in dots:
        exact = cost[d["data-date"]] / len(tasks[d["data-date"]])
        assert int(d["data-tasks"]) == len(tasks[d["data-date"]])
        assert abs(Decimal(d["data-value"]) - exact) <= Decimal("0.0000005")

    # Cost by team and agent: the ledger's events grouped by the tag.
    assert {t["data-key"]: Decimal(t["data-cost"]) for t in teams} == dict(by_team)
    assert {a["data-key"]: Decimal(a["data-cost"]) for a in agents} == dict(by_agent)
    top = max(by_team.values())
    for t in teams:
        assert abs(float(t["width"]) - float(Decimal(t["data-cost"]) / top * 100)) < 1e-3

    # The monthly budget: spend since the 1st at each day's end, and its even pace.
    running = Decimal(0)
    for i, p in enumerate(period):
        running += cost[p["data-date"]]
        assert Decimal(p["data-to-date"]) == running
        pace = Decimal(12) * (i + 1) / 30
        assert abs(Decimal(p["data-pace"]) - pace) <= Decimal("0.0000005")

    # Budget burn bars: the share of each limit used, capped at the bar's end.
    rows = board.data["budgets"]["burn"]
    assert len(burn) == len(rows) == 2 + len(TEAMS)
    for b in burn:
        row = resolve(board.data, b["data-json"])
        spent = Decimal(row["spent_usd"])
        assert b["data-used"] == row["used_share"]
        assert (
            abs(float(b["width"]) - min(float(spent / Decimal(row["limit_usd"])), 1) * 100) < 0.01
        )


def test_user_text_is_escaped(browser: Browser, board: Board) -> None:
    with browser.open(board.path) as visit:
        p = visit.page
        assert p.evaluate("() => document.querySelectorAll('script, img, iframe').length") == 0
        assert p.evaluate("() => window.__pwned") is None
        assert HOSTILE_TEAM in p.locator("#by-team").inner_text()
        assert "<img src=x onerror=alert(1)>" in p.locator("#anomalies").inner_text()
        visit.assert_quiet()


def test_unpriced_calls_are_called_out(browser: Browser, board: Board) -> None:
    total = sum(e.cost is None for e in board.events)
    with browser.open(board.path) as visit:
        callout = visit.page.locator("[role=alert]")
        assert callout.count() == 1
        assert f"{total} call(s) could not be priced" in callout.inner_text()
        assert visit.page.locator(".card.warn").count() == 1
        assert visit.page.locator("#spend-chart line.unpday").count() == len(
            {e.created_at.date() for e in board.events if e.cost is None}
        )
        visit.assert_quiet()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_contrast_meets_wcag_aa(browser: Browser, board: Board, scheme: str) -> None:
    selectors = "h1, h2, p, td, th, dt, dd, li, .st, .tick, .tag, caption, .unp, code, summary"
    with browser.open(board.path, color_scheme=scheme) as visit:
        visit.page.locator("details").evaluate("e => e.open = true")  # the daily table too
        ratios = visit.contrast(selectors)
        visit.assert_quiet()
    assert len(ratios) > 100
    low = [r for r in ratios if r["ratio"] < 4.5]
    assert not low, (scheme, low[:5])
