"""The HTML run report in headless Chromium, for runs of real LangGraph graphs.

The runs: the supervisor demo (tracked; paused for approval then approved; stopped at a task
cap; stopped in a loop) and a hostile one (HTML in a node name, a tag and an error, plus an
unpriced model). Each page must render with no console error and no network request, show
exactly the JSON report's figures, draw chart points that match the ledger rows, stay
readable in light and dark mode and at phone width. Screenshots: see browser_harness.ARTIFACTS.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from browser_harness import DESKTOP, PHONE, Browser, resolve, shown
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph

from agent_finops import CostTracker, SQLLedger, UnpricedWarning
from agent_finops.cli import main as cli
from agent_finops.ledger import TraceData
from agent_finops_langgraph import FinOpsCallbackHandler
from agent_finops_langgraph.testing import ScriptedChatModel, usage

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "supervisor_demo.py"
HOSTILE_NODE = '<img src=x onerror="window.__pwned=1">'
HOSTILE_TAG = "<script>window.__pwned=2</script>"
HOSTILE_ERROR = "</td></tr></table><script>window.__pwned=3</script>"


@dataclass(frozen=True)
class Page:
    """One rendered report: its JSON, its HTML file and its ledger rows."""

    name: str
    data: dict[str, Any]
    path: Path
    trace: TraceData
    decisions: list[Any]


def _load_demo() -> Any:
    spec = importlib.util.spec_from_file_location("supervisor_demo_for_html", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hostile_unpriced_run(url: str) -> None:
    """HTML in a node name, a tag and a tool error; a model no price book knows."""

    @tool
    def lookup(query: str) -> str:
        """Always fails, with markup in its message."""
        raise ValueError(HOSTILE_ERROR)

    mystery = ScriptedChatModel(
        script=[AIMessage("hm", usage_metadata=usage(1_234, 56))],
        model_name="acme-mystery-1",
        provider="acme",
    )
    known = ScriptedChatModel(
        script=[AIMessage("ok", usage_metadata=usage(2_000, 100, cache_read=1_024))],
        model_name="gpt-4o-mini",
    )

    def evil(state: MessagesState) -> dict[str, Any]:
        known.invoke(state["messages"])
        reply = mystery.invoke(state["messages"])
        with contextlib.suppress(ValueError):
            lookup.invoke({"query": "x"})
        return {"messages": [reply]}

    graph = StateGraph(MessagesState)
    graph.add_node(HOSTILE_NODE, evil)
    graph.add_edge(START, HOSTILE_NODE)
    graph.add_edge(HOSTILE_NODE, END)
    with SQLLedger.from_url(url) as ledger:
        tracker = CostTracker(ledger, tags={"team": HOSTILE_TAG, "project": "html-report"})
        with pytest.warns(UnpricedWarning):
            graph.compile(name="hostile").invoke(
                {"messages": [HumanMessage("hi")]},
                config={"callbacks": [FinOpsCallbackHandler(tracker)]},
            )
        tracker.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Page]]:
    """The demo's runs and the hostile run, each rendered with `agent-finops report --html`."""
    tmp = tmp_path_factory.mktemp("html-report")
    url = f"sqlite:///{tmp / 'ledger.sqlite'}"
    demo = _load_demo()
    with contextlib.redirect_stdout(io.StringIO()):
        demo.main(["--db", url, "--checkpoints", str(tmp / "ckpt.sqlite")])
    _hostile_unpriced_run(url)
    out: dict[str, Page] = {}
    with SQLLedger.from_url(url) as ledger:
        runs = sorted(ledger.list_runs(), key=lambda r: r.run.started_at)
        names = ["tracked", "paused", "resumed", "capped", "looped", "hostile"]
        assert [r.run.status for r in runs] == [
            "ok",
            "interrupted",
            "ok",
            "stopped",
            "stopped",
            "ok",
        ]
        for name, summary in zip(names, runs, strict=True):
            trace_id = summary.run.trace_id
            path = tmp / f"{name}.html"
            stdout = io.StringIO()
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
                # One invocation per page (a resumed run would otherwise show its thread).
                command = ["--db", url, "report", trace_id, "--run-only"]
                assert cli([*command, "--html", str(path), "--json"]) == 0
            trace = ledger.load_trace(trace_id)
            assert trace is not None
            out[name] = Page(
                name, json.loads(stdout.getvalue()), path, trace, ledger.decisions_for(trace_id)
            )
    yield out


NAMES = ["tracked", "paused", "capped", "looped", "hostile"]


def _spans(tree: dict[str, Any], path: str = "tree") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, tree
    for i, child in enumerate(tree["children"]):
        yield from _spans(child, f"{path}.children.{i}")


def _known(t: dict[str, Any]) -> bool:
    """Whether some call in these totals has a known cost (else the page says `unknown`)."""
    return t["model_calls"] + t["tool_calls"] > t["unpriced"] or not t["unpriced"]


def _required_paths(data: dict[str, Any]) -> set[str]:
    """The JSON figures the page must show, each at least once."""
    need = {f"totals.{k}" for k in ("cost_usd", "model_calls", "tool_calls", "unpriced")}
    need |= {
        f"totals.tokens.{k}" for k in ("input", "cache_read", "cache_write", "output", "reasoning")
    }
    for path, span in _spans(data["tree"]):
        need |= {f"{path}.{k}" for k in ("model_calls", "tool_calls")}
        need |= {f"{path}.cost_usd"} if _known(span) else set()
        need |= {
            f"{path}.tokens.{k}"
            for k in ("input", "cache_read", "cache_write", "output", "reasoning")
        }
        need |= {f"{path}.share"} if span["share"] is not None else set()
        need |= {f"{path}.unpriced"} if span["unpriced"] else set()
    for key in ("by_node", "by_agent", "by_model", "by_tool"):
        for i, r in enumerate(data[key]):
            p = f"{key}.{i}"
            need |= {f"{p}.{k}" for k in ("model_calls", "tool_calls")}
            need |= {f"{p}.cost_usd"} if _known(r) else set()
            need |= {f"{p}.tokens.input", f"{p}.tokens.output"}
            need |= {f"{p}.share"} if r["share"] is not None else set()
    need |= {f"decision_counts.{k}" for k in data["decision_counts"]}
    for i, d in enumerate(data["decisions"]):
        need |= {
            f"decisions.{i}.{k}" for k in ("limit", "observed", "estimate") if d[k] is not None
        }
    for i, a in enumerate(data["approvals"]):
        keys = ("spent", "limit", "estimated_extra", "approved_extra")
        need |= {f"approvals.{i}.{k}" for k in keys if a[k] is not None}
    return need


@pytest.mark.parametrize("name", NAMES)
def test_page_renders_offline_and_quietly(
    browser: Browser, pages: dict[str, Page], name: str
) -> None:
    page = pages[name]
    for scheme in ("light", "dark"):
        for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            with browser.open(page.path, viewport=viewport, color_scheme=scheme) as visit:
                assert visit.page.title().startswith("Run report: ")
                assert visit.page.locator("#waterfall rect.bar").count() == len(
                    list(_spans(page.data["tree"]))
                )
                assert not visit.overflows(), f"{name} {label} {scheme}: horizontal page scroll"
                svg_width = visit.page.locator("#waterfall").bounding_box()
                assert svg_width is not None and svg_width["width"] > 150
                visit.screenshot(f"run-report-{name}-{label}-{scheme}")
                visit.assert_quiet()


@pytest.mark.parametrize("name", NAMES)
def test_every_figure_equals_the_json_report(
    browser: Browser, pages: dict[str, Page], name: str
) -> None:
    page = pages[name]
    with browser.open(page.path) as visit:
        figures = visit.figures()
        stray = visit.stray_money()
        durations = visit.page.evaluate(
            "() => Array.from(document.querySelectorAll('.dur')).map(e => [e.dataset.span, e.textContent])"
        )
        visit.assert_quiet()
    assert figures
    for fig in figures:
        expected = resolve(page.data, fig["path"])
        assert fig["value"] == str(expected), fig
        assert shown(fig["kind"], fig["text"]) == Decimal(str(expected)), fig
    missing = _required_paths(page.data) - {f["path"] for f in figures}
    assert not missing, sorted(missing)
    assert not stray, stray  # every amount on the page is one of the checked figures
    for path, text in durations:
        span = page.data["run"] if path == "run" else resolve(page.data, path)
        seconds = (
            datetime.fromisoformat(span["ended_at"]) - datetime.fromisoformat(span["started_at"])
        ).total_seconds()
        number = float(text.split()[0].replace(",", ""))
        assert abs(number * (1e-3 if text.endswith(" ms") else 1) - seconds) < 0.051, (
            path,
            text,
            seconds,
        )


@pytest.mark.parametrize("name", NAMES)
def test_chart_points_match_the_ledger(browser: Browser, pages: dict[str, Page], name: str) -> None:
    page = pages[name]
    trace = page.trace
    with browser.open(page.path) as visit:
        bars = visit.attributes(
            "#waterfall rect.bar",
            (
                "data-span-id",
                "data-own-cost",
                "data-own-unpriced",
                "data-start",
                "data-end",
                "x",
                "width",
                "data-kind",
            ),
        )
        rollups = {
            key: visit.attributes(f"#{key} rect", ("data-key", "data-cost", "width"))
            for key in ("by_node", "by_model", "by_tool")
        }
        tokens = visit.attributes("#tokens-chart rect", ("data-json", "data-value", "width"))
        marks = visit.attributes("#waterfall line.mark", ("data-json", "data-action", "data-at"))
        visit.assert_quiet()

    # Waterfall: one bar per reported span, at the ledger's times, with the ledger's own cost.
    spans = {s.span_id: s for s in trace.spans}
    own_cost: dict[str, Decimal] = defaultdict(Decimal)
    own_unpriced: dict[str, int] = defaultdict(int)
    for e in trace.events:
        if e.cost is None:
            own_unpriced[e.span_id] += 1
        else:
            own_cost[e.span_id] += e.cost
    shown = {b["data-span-id"] for b in bars}
    must_show = {s.span_id for s in trace.spans if s.kind in ("run", "node", "model", "tool")}
    assert must_show <= shown <= set(spans)
    start = min(s.started_at for s in trace.spans)
    end = max(
        [s.ended_at or s.started_at for s in trace.spans]
        + [d.created_at for d in page.decisions if d.action != "allow"]
    )
    axis = (end - start).total_seconds()
    for bar in bars:
        span = spans[bar["data-span-id"]]
        assert bar["data-kind"] == span.kind
        assert datetime.fromisoformat(bar["data-start"]) == span.started_at
        assert (
            span.ended_at is not None and datetime.fromisoformat(bar["data-end"]) == span.ended_at
        )
        assert abs(float(bar["x"]) - (span.started_at - start).total_seconds() / axis * 1000) < 0.01
        width = (span.ended_at - span.started_at).total_seconds() / axis * 1000
        assert abs(float(bar["width"]) - max(width, 1.5)) < 0.01
        if span.kind in ("model", "tool"):
            assert Decimal(bar["data-own-cost"]) == own_cost[span.span_id]
            assert int(bar["data-own-unpriced"]) == own_unpriced[span.span_id]
    assert sum(Decimal(b["data-own-cost"]) for b in bars) == sum(own_cost.values(), Decimal(0))

    # Rollup bars: the ledger's events grouped by node path, model and tool.
    groups: dict[str, dict[str, Decimal]] = {k: defaultdict(Decimal) for k in rollups}
    for e in trace.events:
        groups["by_node"][e.node_path or "(outside any node)"] += e.cost or 0
        groups["by_model" if e.kind == "model" else "by_tool"][e.name] += e.cost or 0
    for key, points in rollups.items():
        assert {p["data-key"]: Decimal(p["data-cost"]) for p in points} == dict(groups[key]), key
        top = max((Decimal(p["data-cost"]) for p in points), default=Decimal(0))
        for p in points:
            expected = float(Decimal(p["data-cost"]) / top * 100) if top else 0.0
            assert abs(float(p["width"]) - expected) < 0.001

    # Token bar: the ledger's token sums by kind.
    uncached = sum(e.uncached_input_tokens for e in trace.events)
    by_kind = {
        "totals.tokens.uncached_input": uncached,
        "totals.tokens.cache_read": sum(e.cache_read_tokens for e in trace.events),
        "totals.tokens.cache_write": sum(e.cache_write_tokens for e in trace.events),
        "totals.tokens.output": sum(e.output_tokens for e in trace.events),
    }
    assert {t["data-json"]: int(t["data-value"]) for t in tokens} == by_kind
    assert abs(sum(float(t["width"]) for t in tokens) - 1000) < 0.01

    # Policy markers: every decision other than allow, at the ledger's time.
    decided = [(d.action, d.created_at) for d in page.decisions if d.action != "allow"]
    on_axis = [
        (m["data-action"], datetime.fromisoformat(m["data-at"]))
        for m in marks
        if m["data-json"].startswith("decisions.")
    ]
    assert on_axis == decided
    if name == "paused":
        assert [a for a, _ in decided] == ["threshold", "threshold", "pause", "approved"]
        assert any(m["data-json"].startswith("approvals.") for m in marks)
    if name == "capped":
        assert [a for a, _ in decided] == ["deny"]


def test_user_text_is_escaped(browser: Browser, pages: dict[str, Page]) -> None:
    page = pages["hostile"]
    with browser.open(page.path) as visit:
        p = visit.page
        assert (
            p.evaluate(
                "() => document.querySelectorAll('script, img, iframe, object, embed').length"
            )
            == 0
        )
        assert p.evaluate("() => window.__pwned") is None
        assert p.locator(".tag .v").all_text_contents() == ["html-report", HOSTILE_TAG]
        assert HOSTILE_NODE in p.locator("table.tree").inner_text()
        assert "ValueError: " + HOSTILE_ERROR in p.locator(".err").all_text_contents()
        assert p.locator("table.tree tbody tr").count() == len(list(_spans(page.data["tree"])))
        visit.assert_quiet()


def test_unpriced_calls_are_called_out(browser: Browser, pages: dict[str, Page]) -> None:
    page = pages["hostile"]
    assert page.data["totals"]["unpriced"] == 1
    with browser.open(page.path) as visit:
        callout = visit.page.locator("[role=alert]")
        assert callout.count() == 1
        text = callout.inner_text()
        assert "1 call(s) could not be priced" in text and "acme-mystery-1" in text
        assert visit.page.locator(".card.warn").count() == 1
        assert visit.page.locator("#waterfall rect.bar.unpriced").count() == 1
        unknown = visit.page.locator("#by_model tr", has_text="acme-mystery-1").inner_text()
        assert "unknown" in unknown and "$" not in unknown  # never shown as $0
        href = callout.locator("a").get_attribute("href")
        assert href and visit.page.locator(href).count() == 1  # the link lands on the tree row
        visit.assert_quiet()
    with browser.open(pages["tracked"].path) as visit:
        assert visit.page.locator("[role=alert]").count() == 0


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_contrast_meets_wcag_aa(browser: Browser, pages: dict[str, Page], scheme: str) -> None:
    selectors = "h1, h2, p, td, th, dt, dd, li, .status, .kind, .act, .err, .tick, .tag, caption, .unp, code"
    for name in ("paused", "hostile"):
        with browser.open(pages[name].path, color_scheme=scheme) as visit:
            ratios = visit.contrast(selectors)
            bg = visit.page.evaluate(
                "() => getComputedStyle(document.documentElement).backgroundColor"
            )
            visit.assert_quiet()
        assert len(ratios) > 50
        low = [r for r in ratios if r["ratio"] < 4.5]
        assert not low, (scheme, name, low[:5])
        assert (bg == "rgb(255, 255, 255)") == (scheme == "light")


def test_harness_sees_requests_console_errors_and_overflow(
    browser: Browser, tmp_path: Path
) -> None:
    """The checks above would catch a page that fetches, logs an error or is too wide."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><head><link rel="stylesheet" href="http://127.0.0.1:9/x.css">'
        '</head><body><div style="width:2000px">wide</div>'
        '<script>console.error("boom")</script></body></html>'
    )
    with browser.open(bad, viewport=PHONE) as visit:
        assert visit.requests == ["http://127.0.0.1:9/x.css"]
        assert [m.text for m in visit.console if m.type == "error"][-1] == "boom"
        assert visit.overflows()
        with pytest.raises(AssertionError):
            visit.assert_quiet()
