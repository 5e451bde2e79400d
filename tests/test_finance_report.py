"""The monthly finance report: summary, drivers, cost centers vs budget and YTD, forecast, HTML."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent_finops import ConfigurationError, InMemoryLedger, SQLLedger
from agent_finops.cli import main
from agent_finops.finance import build_finance_report, render_finance_html
from agent_finops.ledger import AlertRecord, CostEvent, Ledger, RunRecord
from agent_finops.policy import Policy

D = Decimal
POLICY = Policy.from_mapping(
    {
        "version": 1,
        "budgets": [
            {"id": "cc-monthly", "scope": {"cost_center": "*"}, "limit": "100", "period": "monthly"}
        ],
    }
)


def ev(event_id: str, at: datetime, cost: str, *, model: str = "gpt-4o", **tags: str) -> CostEvent:
    return CostEvent(
        event_id=event_id,
        trace_id="r",
        span_id=event_id,
        kind="model",
        name=model,
        provider="openai",
        created_at=at,
        node_path=None,
        tags=tags,
        cost=D(cost),
        price_source="test",
        price_version="1",
    )


def fill(ledger: Ledger) -> None:
    oct5, nov = datetime(2026, 10, 5, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    events = [
        ev("o1", oct5, "10", team="a", agent="p", cost_center="cc1", task="t0"),
        ev("o2", oct5, "5", team="b", agent="w", cost_center="cc2", task="t0b"),
        ev("j1", datetime(2026, 1, 10, tzinfo=UTC), "7", team="a", agent="p", cost_center="cc1"),
    ]
    # November: team a's planner grows a lot, on a new model
    for day in range(30):
        at = nov + timedelta(days=day, hours=9)
        events.append(
            ev(
                f"a{day}",
                at,
                "2",
                model="o3",
                team="a",
                agent="p",
                cost_center="cc1",
                task=f"ta{day // 2}",
            )
        )
        events.append(
            ev(f"b{day}", at, "0.5", team="b", agent="w", cost_center="cc2", task=f"tb{day}")
        )
    ledger.write(runs=[RunRecord(trace_id="r", name="g", started_at=oct5)], events=events)
    ledger.add_alert(
        AlertRecord(
            alert_id="spike-1",
            kind="cost_spike",
            scope={"team": "a"},
            window_start=nov + timedelta(days=3),
            window_end=nov + timedelta(days=3, hours=1),
            created_at=nov + timedelta(days=3, hours=1),
            message="hourly cost 5x usual",
            observed=D("2"),
            expected=D("0.4"),
            drivers=[{"agent": "p", "cost": "2"}],
        )
    )


@pytest.fixture(params=["memory", "sqlite"])
def ledger(request: pytest.FixtureRequest, sqlite_ledger: SQLLedger) -> Ledger:
    led: Ledger = InMemoryLedger() if request.param == "memory" else sqlite_ledger
    fill(led)
    return led


def test_the_month_in_numbers(ledger: Ledger) -> None:
    r = build_finance_report(ledger, month="2026-11", policy=POLICY)
    assert (r.total, r.previous_total, r.change) == (D(75), D(15), D(60))
    assert r.change_pct == D("400.00")
    assert [(d.kind, d.name, d.change) for d in r.drivers] == [
        ("model", "o3", D(60)),
        ("team/agent", "a/p", D(50)),
        ("team/agent", "b/w", D(10)),
    ]
    cc1, cc2 = r.cost_centers
    assert (cc1.cost_center, cc1.actual, cc1.budget, cc1.used_pct, cc1.year_to_date) == (
        "cc1",
        D(60),
        D(100),
        D("60.00"),
        D(77),
    )
    assert (cc2.actual, cc2.year_to_date) == (D(15), D(20))
    a, b = r.teams
    assert (a.team, a.cost, a.tasks, a.cost_per_task) == ("a", D(60), 15, D(4))
    assert (b.team, b.tasks, b.cost_per_task) == ("b", 30, D("0.5"))
    (spike,) = r.anomalies
    assert (spike["kind"], spike["observed"], spike["drivers"]) == (
        "cost_spike",
        "2",
        [{"agent": "p", "cost": "2"}],
    )
    assert len(r.daily) == 30 and r.daily[0][1] == D("2.5")
    assert r.forecast is not None
    assert (r.forecast.month, r.forecast.daily_rate, r.forecast.projected) == (
        "2026-12",
        D("2.5"),
        D("77.50"),
    )


def test_every_figure_on_the_page_equals_the_json(ledger: Ledger) -> None:
    r = build_finance_report(ledger, month="2026-11", policy=POLICY)
    data = json.loads(json.dumps(r.to_json()))
    page = render_finance_html(r)
    figures = re.findall(r'<data class="fig \w+" data-json="([^"]+)" value="([^"]*)">', page)
    assert len(figures) > 30
    for path, value in figures:
        node: Any = data
        for part in path.split("."):
            node = node[int(part)] if isinstance(node, list) else node[part]
        assert str(node) == value, path
    bars = re.findall(r'data-json="daily\.(\d+)" data-day="([^"]+)" data-value="([^"]+)"', page)
    assert [(d, v) for _, d, v in bars] == [(day, cost) for day, cost in data["daily"]]
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched


def test_cli_finance_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/l.sqlite"
    with SQLLedger.from_url(url) as led:
        fill(led)
    assert main(["finance-report", "--db", url, "--month", "2026-11", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == "75"
    out = tmp_path / "nov.html"
    assert main(["finance-report", "--db", url, "--month", "2026-11", "--html", str(out)]) == 0
    assert "Finance report 2026-11" in out.read_text()
    assert main(["finance-report", "--db", url, "--month", "2026-11"]) == 0
    assert "Forecast 2026-12" in capsys.readouterr().out
    assert main(["finance-report", "--db", url, "--month", "November"]) == 1
    assert "not a month" in capsys.readouterr().err


def test_a_bad_month_is_named() -> None:
    with pytest.raises(ConfigurationError, match="not a month"):
        build_finance_report(InMemoryLedger(), month="2026-13")
