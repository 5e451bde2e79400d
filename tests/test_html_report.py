"""The HTML run report without a browser: the CLI flag, escaping, money, unwritable paths.

The page itself is tested in headless Chromium in tests/browser/.
"""

from __future__ import annotations

import html.parser
from decimal import Decimal
from pathlib import Path

import pytest

from agent_finops import CostTracker, SQLLedger, TokenUsage
from agent_finops.cli import main as cli
from agent_finops.reports import money_text, render_html

EVIL = '<script>alert("x")</script>'


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def _run(ledger: SQLLedger) -> str:
    t = CostTracker(ledger, tags={"team": EVIL}, background=False)
    t.start_span("run-1", parent_span_id=None, name=EVIL, kind="chain")
    t.start_span("m-1", parent_span_id="run-1", name="ChatOpenAI", kind="model")
    t.record_model_call(
        "m-1",
        model="gpt-4o-mini",
        provider="openai",
        usage=TokenUsage(uncached_input_tokens=1000, output_tokens=100),
    )
    t.end_span("m-1", error=EVIL)
    t.end_span("run-1")
    return "run-1"


def test_cli_writes_a_self_contained_escaped_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'l.sqlite'}"
    with SQLLedger.from_url(url) as ledger:
        _run(ledger)
    out = tmp_path / "run.html"
    assert cli(["--db", url, "report", "run-1", "--html", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and f"wrote {out}" in captured.err
    page = out.read_text()
    parser = _Tags()
    parser.feed(page)
    assert "script" not in parser.tags and "img" not in parser.tags
    assert page.count(EVIL) == 0 and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    assert (
        '<data class="fig money" data-json="totals.cost_usd" value="0.00021">$0.00021</data>'
        in page
    )


def test_cli_html_with_json_prints_the_json_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'l.sqlite'}"
    with SQLLedger.from_url(url) as ledger:
        _run(ledger)
    assert cli(["--db", url, "report", "run-1", "--html", str(tmp_path / "r.html"), "--json"]) == 0
    assert '"schema_version"' in capsys.readouterr().out


def test_unwritable_path_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'l.sqlite'}"
    with SQLLedger.from_url(url) as ledger:
        _run(ledger)
    assert (
        cli(["--db", url, "report", "run-1", "--html", str(tmp_path / "no" / "such" / "r.html")])
        == 1
    )
    assert "cannot write the HTML report" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("0", "$0.00"),
        ("0E-7", "$0.00"),
        ("0.0670749", "$0.0670749"),
        ("1234.5", "$1,234.50"),
        ("-0.01", "-$0.01"),
        ("12.000100", "$12.0001"),
    ],
)
def test_money_is_exact(raw: str, shown: str) -> None:
    assert money_text(raw) == shown
    assert Decimal(shown.replace("$", "").replace(",", "")) == Decimal(raw)


def test_renders_from_the_json_mapping(tmp_path: Path) -> None:
    with SQLLedger.from_url(f"sqlite:///{tmp_path / 'l.sqlite'}") as ledger:
        _run(ledger)
        t = CostTracker(ledger, background=False)
        report = t.report("run-1")
    assert render_html(report) == render_html(report.to_dict())


class _Clock:
    def __init__(self) -> None:
        from datetime import UTC, datetime

        self.now = datetime(2026, 11, 20, 9, tzinfo=UTC)

    def __call__(self) -> object:
        return self.now

    def tick(self, seconds: float) -> None:
        from datetime import timedelta

        self.now += timedelta(seconds=seconds)


def _attrs(page: str, selector: str) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []

    class _P(html.parser.HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            values = {k: v or "" for k, v in attrs}
            if tag == "rect" and selector in values.get("class", "").split():
                found.append(values)

    _P().feed(page)
    return found


def test_a_long_pause_in_a_thread_is_squashed_on_the_waterfall(tmp_path: Path) -> None:
    """Two runs of a thread three hours apart: the gap is a short marked break, not 99%."""
    clock = _Clock()
    with SQLLedger.from_url(f"sqlite:///{tmp_path / 'l.sqlite'}") as ledger:
        t = CostTracker(ledger, background=False, clock=clock)
        for run in ("r1", "r2"):
            t.start_span(run, parent_span_id=None, name="graph", kind="chain", thread_id="th")
            t.start_span(f"{run}-m", parent_span_id=run, name="llm", kind="model")
            clock.tick(2)
            t.record_model_call(
                f"{run}-m",
                model="gpt-4o-mini",
                provider="openai",
                usage=TokenUsage(uncached_input_tokens=10, output_tokens=5),
            )
            t.end_span(f"{run}-m")
            t.end_span(run)
            clock.tick(3 * 3600)  # paused for approval
        page = render_html(t.report("r2"))  # the whole thread
    (gap,) = _attrs(page, "gap")
    assert abs(float(gap["data-gap-seconds"]) - 3 * 3600) < 1
    assert float(gap["width"]) < 100  # a break of a few percent of the 1000-wide axis
    bars = {b["data-span-id"]: b for b in _attrs(page, "bar")}
    first, second = float(bars["r1-m"]["x"]), float(bars["r2-m"]["x"])
    assert first < float(gap["x"]) < second
    # each run's call is wide enough to see: about half of the busy axis, not 0.02%
    assert float(bars["r1-m"]["width"]) > 300 and float(bars["r2-m"]["width"]) > 300
    assert "idle for" in page
