"""Run reports: tree totals from leaf events, rollups, JSON schema, rendering, CLI."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from agent_finops import (
    CostTracker,
    PriceBook,
    PricingConfig,
    SQLLedger,
    TokenUsage,
    ToolFee,
    UnpricedWarning,
)
from agent_finops.cli import main as cli
from agent_finops.reports import REPORT_SCHEMA_VERSION, money

M = Decimal(1_000_000)


def _record_demo_run(ledger: SQLLedger) -> str:
    prices = PriceBook(
        PricingConfig(tools=(ToolFee(name="search", tool="web_search", per_call=Decimal("0.01")),))
    )
    t = CostTracker(ledger, prices=prices, tags={"team": "support", "project": "helpdesk"})
    t.start_span("run-1", parent_span_id=None, name="supervisor_graph", kind="chain")
    t.start_span("sup", parent_span_id="run-1", name="supervisor", kind="node", node="supervisor")
    t.start_span("m-sup", parent_span_id="sup", name="ChatOpenAI", kind="model")
    t.record_model_call(
        "m-sup",
        model="gpt-4o-mini",
        provider="openai",
        usage=TokenUsage(uncached_input_tokens=1000, output_tokens=100),
    )
    t.end_span("m-sup")
    t.end_span("sup")
    t.start_span(
        "res",
        parent_span_id="run-1",
        name="researcher",
        kind="node",
        node="researcher",
        tags={"agent": "researcher"},
    )
    t.start_span("plumbing", parent_span_id="res", name="RunnableSequence", kind="chain")
    t.start_span("tool-1", parent_span_id="plumbing", name="web_search", kind="tool")
    t.record_tool_call("tool-1", tool="web_search")
    t.end_span("tool-1")
    t.end_span("plumbing")
    t.start_span("m-res", parent_span_id="res", name="ChatAnthropic", kind="model")
    t.record_model_call(
        "m-res",
        model="claude-sonnet-4-5",
        provider="anthropic",
        usage=TokenUsage(
            uncached_input_tokens=100,
            cache_read_tokens=2000,
            cache_write_tokens=500,
            output_tokens=300,
        ),
    )
    t.end_span("m-res")
    t.start_span("m-x", parent_span_id="res", name="Mystery", kind="model")
    with pytest.warns(UnpricedWarning):
        t.record_model_call("m-x", model="mystery-llm", usage=TokenUsage(output_tokens=1))
    t.end_span("m-x")
    t.end_span("res")
    t.end_span("run-1")
    t.close()
    return "run-1"


SUP = (1000 * Decimal("0.15") + 100 * Decimal("0.6")) / M
RES = (100 * Decimal(3) + 2000 * Decimal("0.3") + 500 * Decimal("3.75") + 300 * Decimal(15)) / M
TOOL = Decimal("0.01")


def test_report_totals_tree_and_rollups(sqlite_ledger: SQLLedger) -> None:
    run_id = _record_demo_run(sqlite_ledger)
    from agent_finops.reports import load_run_report

    report = load_run_report(sqlite_ledger, run_id)
    assert report.total_cost == SUP + RES + TOOL
    assert report.unpriced == 1
    assert report.totals.model_calls == 3 and report.totals.tool_calls == 1
    # Plumbing chain spans are hoisted out of the displayed tree.
    names = [c.span.name for c in report.tree.children]
    assert names == ["supervisor", "researcher"]
    researcher = report.tree.children[1]
    assert [c.span.name for c in researcher.children] == ["web_search", "ChatAnthropic", "Mystery"]
    assert researcher.totals.cost == RES + TOOL
    assert {r.key: r.totals.cost for r in report.by_model} == {
        "claude-sonnet-4-5": RES,
        "gpt-4o-mini": SUP,
        "mystery-llm": 0,
    }
    assert {r.key: r.totals.cost for r in report.by_tool} == {"web_search": TOOL}
    assert {r.key for r in report.by_agent} == {"researcher", "supervisor"}
    # Rollups add up to the total: nothing counted twice, nothing dropped.
    for rollup in (report.by_node, report.by_agent):
        assert sum(r.totals.cost for r in rollup) == report.total_cost
        assert sum(r.totals.unpriced for r in rollup) == 1


def test_json_report_schema(sqlite_ledger: SQLLedger) -> None:
    report = json.loads(json.dumps(_load(sqlite_ledger).to_dict()))
    assert report["schema_version"] == REPORT_SCHEMA_VERSION
    assert Decimal(report["totals"]["cost_usd"]) == SUP + RES + TOOL
    assert report["totals"]["unpriced"] == 1
    assert report["totals"]["tokens"]["cache_write"] == 500
    assert report["run"]["tags"] == {"team": "support", "project": "helpdesk"}
    assert report["tree"]["children"][1]["name"] == "researcher"
    assert {r["key"] for r in report["by_model"]} == {
        "claude-sonnet-4-5",
        "gpt-4o-mini",
        "mystery-llm",
    }
    assert any("tool-fee:search" in v for v in report["price_versions"])
    shares = [Decimal(r["share"]) for r in report["by_agent"]]
    assert abs(sum(shares) - 1) < Decimal("0.001")


def _load(ledger: SQLLedger):  # type: ignore[no-untyped-def]
    from agent_finops.reports import load_run_report

    return load_run_report(ledger, _record_demo_run(ledger))


def test_render_shows_tree_unpriced_and_sources(sqlite_ledger: SQLLedger) -> None:
    text = _load(sqlite_ledger).render()
    assert "unpriced 1" in text
    assert "could not be priced" in text
    assert "├─ supervisor [node]" in text
    assert "└─ researcher [node]" in text
    assert "web_search [tool]" in text
    assert money(SUP + RES + TOOL) in text
    assert "genai-prices" in text


def test_money_formatting() -> None:
    assert money(None) == "unknown"
    assert money(Decimal("0.0001234")) == "$0.000123"
    assert money(Decimal("1234.5")) == "$1,234.50"


def test_cli_runs_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/cli.sqlite"
    with SQLLedger.from_url(url) as ledger:
        _record_demo_run(ledger)
    assert cli(["--db", url, "runs"]) == 0
    out = capsys.readouterr().out
    assert "run-1" in out and "supervisor_graph" in out and money(SUP + RES + TOOL) in out
    assert cli(["--db", url, "report", "run-"]) == 0  # unique prefix
    assert "researcher [node]" in capsys.readouterr().out
    assert cli(["--db", url, "report", "run-1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert Decimal(data["totals"]["cost_usd"]) == SUP + RES + TOOL
    assert cli(["--db", url, "runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["unpriced"] == 1


def test_cli_unknown_run_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/cli.sqlite"
    SQLLedger.from_url(url).close()
    assert cli(["--db", url, "report", "nope"]) == 1
    assert "no run or thread 'nope'" in capsys.readouterr().err


def test_cli_env_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/env.sqlite"
    SQLLedger.from_url(url).close()
    monkeypatch.setenv("AGENT_FINOPS_DB_URL", url)
    assert cli(["runs"]) == 0
    assert "no runs recorded yet" in capsys.readouterr().out
