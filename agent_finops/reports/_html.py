"""The self-contained HTML run report (`agent-finops report RUN_ID --html out.html`).

One page, no network needed to open it: inline CSS, no script, charts as plain SVG. It is
rendered from `RunReport.to_dict()` (docs/report-json.md), never from ledger rows, so the page
shows exactly the JSON report's figures. Every figure is a `<data class="fig ...">` element
whose `data-json` attribute is the path of the value in that dict and whose `value` is the
JSON value itself; the text is the same value formatted for people (money exact, never
rounded). The browser tests read every such element back and compare.

Everything from the ledger (span names, tags, errors, messages) is user data and is escaped;
a Content-Security-Policy forbids scripts and every network fetch as a second line.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any, Final

from agent_finops.exceptions import ConfigurationError

__all__ = ["money_text", "render_html", "write_html"]

_ROW: Final = 24
"""Height of one waterfall row in CSS pixels (the SVG and the label column share it)."""
_WIDTH: Final = 1000
"""Width of the chart coordinate space (stretched to the container)."""
_BUCKETS: Final = 5
_CALL_KINDS: Final = frozenset({"model", "tool"})
_CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"
_ROLLUPS: Final = (
    ("by_node", "Cost by node", "node path"),
    ("by_agent", "Cost by agent", "agent"),
    ("by_model", "Cost by model", "model"),
    ("by_tool", "Cost by tool", "tool"),
)
_TOKEN_KINDS: Final = (
    ("uncached_input", "uncached input"),
    ("cache_read", "cache read"),
    ("cache_write", "cache write"),
    ("output", "output"),
)
_STOP_ACTIONS: Final = frozenset({"deny", "denied", "expired", "refused"})
_ASK_ACTIONS: Final = frozenset({"pause", "warn", "threshold", "overrun"})


def render_html(report: Any, *, title: str | None = None) -> str:
    """The report as one self-contained HTML page.

    Args:
        report: a `RunReport`, or its `to_dict()` (the `--json` output) as a mapping.
        title: the page title (default: the run's name and id).
    """
    data: Mapping[str, Any] = report.to_dict() if hasattr(report, "to_dict") else report
    run = data["run"]
    page_title = title or f"Run report: {run['name']} ({run['trace_id']})"
    spans = list(_flatten(data["tree"]))
    body = "".join(
        (
            _header(data, spans[0]),
            _summary(data),
            _unpriced(spans, data["totals"]),
            _waterfall(data, spans),
            _tree_table(spans),
            *(_rollup(data, key, heading, label) for key, heading, label in _ROLLUPS),
            _policy(data),
            _prices(data),
        )
    )
    return _document(page_title, body, schema_version=data.get("schema_version"))


def _document(
    title: str, body: str, *, schema_version: object, css: str = "", main_class: str = ""
) -> str:
    """A whole page around `body`: CSP, viewport, both colour schemes, the style sheet + `css`.

    Shared by the run report and the spend dashboard.
    """
    cls = f' class="{_e(main_class)}"' if main_class else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{_e(title)}</title><style>{_CSS}{css}</style></head>"
        f'<body><main{cls} data-schema-version="{_e(schema_version)}">{body}</main>'
        "</body></html>\n"
    )


def write_html(report: Any, path: str | os.PathLike[str]) -> Path:
    """Write `render_html(report)` to `path` (UTF-8).

    A path that cannot be written is a `ConfigurationError` naming it.
    """
    return _write_page(render_html(report), path, "report")


def _write_page(page: str, path: str | os.PathLike[str], what: str) -> Path:
    """Write a page (UTF-8); a path that cannot be written is a `ConfigurationError`."""
    target = Path(path)
    try:
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write the HTML {what}: {exc.strerror or exc}", field="--html", value=str(path)
        ) from None
    return target


# -- figures: every number on the page is one of these --------------------------------------


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def money_text(raw: str) -> str:
    """A JSON money string for people: `$1,234.0670749` (exact; at least 2 decimals)."""
    d = Decimal(raw)
    whole, _, frac = format(abs(d), "f").partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    return f"{'-' if d < 0 else ''}${int(whole):,}.{frac}"


def _plain(d: Decimal) -> str:
    text = format(d, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _fig(path: str, value: Any, kind: str) -> str:
    """One figure: `kind` is money, int, pct (a share) or num (a decimal in another unit)."""
    if value is None:
        return '<span class="na">–</span>'
    if kind == "money":
        text = money_text(str(value))
    elif kind == "int":
        text = f"{int(value):,}"
    elif kind == "pct":
        text = _plain(Decimal(str(value)) * 100) + "%"
    else:
        whole, _, frac = _plain(Decimal(str(value))).partition(".")
        text = f"{int(whole):,}" + (f".{frac}" if frac else "")
    return f'<data class="fig {kind}" data-json="{_e(path)}" value="{_e(value)}">{text}</data>'


def _money(path: str, value: Any) -> str:
    return _fig(path, value, "money")


def _int(path: str, value: Any) -> str:
    return _fig(path, value, "int")


def _cost_cell(path: str, t: Mapping[str, Any]) -> str:
    """The cost of a span or rollup, never an unknown cost shown as $0.

    `unknown` when every call in it is unpriced, else the known cost with the unpriced calls
    counted next to it.
    """
    unpriced = int(t["unpriced"])
    count = f'<span class="unp">{_int(f"{path}.unpriced", unpriced)} unpriced</span>'
    if unpriced and unpriced == int(t["model_calls"]) + int(t["tool_calls"]):
        return f'<span class="unk">unknown</span> ({count})'
    return _money(f"{path}.cost_usd", t["cost_usd"]) + (f" +{count}" if unpriced else "")


def _amount(path: str, value: Any, unit: str) -> str:
    """A limit/observed/estimate in a rule's unit: money for usd, else a number and unit."""
    if unit == "usd":
        return _money(path, value)
    if value is None:
        return _fig(path, None, "num")
    return f"{_fig(path, value, 'num')} {_e(unit)}"


# -- the span tree, flattened ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Span:
    """One span of the tree with its path in the JSON and what is its own (not children's)."""

    data: Mapping[str, Any]
    path: str
    depth: int
    index: int
    own_cost: Decimal
    own_unpriced: int

    @property
    def is_call(self) -> bool:
        return self.data["kind"] in _CALL_KINDS or bool(self.own_cost or self.own_unpriced)


def _flatten(tree: Mapping[str, Any]) -> Iterator[_Span]:
    stack: list[tuple[Mapping[str, Any], str, int]] = [(tree, "tree", 0)]
    index = 0
    while stack:
        node, path, depth = stack.pop()
        kids = node.get("children") or []
        own = Decimal(node["cost_usd"]) - sum((Decimal(c["cost_usd"]) for c in kids), Decimal(0))
        unpriced = node["unpriced"] - sum(c["unpriced"] for c in kids)
        yield _Span(node, path, depth, index, own, unpriced)
        index += 1
        for i in reversed(range(len(kids))):
            stack.append((kids[i], f"{path}.children.{i}", depth + 1))


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _ms(seconds: float) -> str:
    if seconds >= 10:
        return f"{seconds:,.1f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.1f} ms"


def _duration(path: str, start: str | None, end: str | None) -> str:
    """A span's duration, derived from its two JSON times (marked so tests can recompute)."""
    a, b = _time(start), _time(end)
    if a is None or b is None:
        return '<span class="na">–</span>'
    seconds = (b - a).total_seconds()
    return (
        f'<span class="dur" data-span="{_e(path)}" data-seconds="{seconds}">{_ms(seconds)}</span>'
    )


# -- sections -------------------------------------------------------------------------------


def _header(data: Mapping[str, Any], root: _Span) -> str:
    run = data["run"]
    tags = "".join(
        f'<li class="tag"><span class="k">{_e(k)}</span>=<span class="v">{_e(v)}</span></li>'
        for k, v in sorted(run["tags"].items())
    )
    error = f'<p class="err" role="note">{_e(run["error"])}</p>' if run.get("error") else ""
    return (
        f'<header><h1>Run report <span class="name">{_e(run["name"])}</span></h1>'
        f'<p class="meta"><span class="status s-{_e(run["status"])}">{_e(run["status"])}</span> '
        f'run <code class="id">{_e(run["trace_id"])}</code> · started '
        f'<time datetime="{_e(run["started_at"])}">{_e(_clock(run["started_at"], True))}</time>'
        f" UTC · took {_duration('run', run['started_at'], run['ended_at'])}</p>{error}"
        + (f'<ul class="tags" aria-label="tags">{tags}</ul>' if tags else "")
        + "</header>"
    )


def _clock(text: str | None, with_date: bool = False) -> str:
    t = _time(text)
    if t is None:
        return "–"
    return f"{t:%Y-%m-%d %H:%M:%S}" if with_date else f"{t:%H:%M:%S}.{t.microsecond // 1000:03d}"


def _summary(data: Mapping[str, Any]) -> str:
    t = data["totals"]
    tok = t["tokens"]
    cards = (
        ("Total cost", _money("totals.cost_usd", t["cost_usd"]), "known costs only"),
        ("Model calls", _int("totals.model_calls", t["model_calls"]), ""),
        ("Tool calls", _int("totals.tool_calls", t["tool_calls"]), ""),
        ("Unpriced calls", _int("totals.unpriced", t["unpriced"]), "not in the total"),
        (
            "Input tokens",
            _int("totals.tokens.input", tok["input"]),
            f"cache read {_int('totals.tokens.cache_read', tok['cache_read'])}, "
            f"cache write {_int('totals.tokens.cache_write', tok['cache_write'])}",
        ),
        (
            "Output tokens",
            _int("totals.tokens.output", tok["output"]),
            f"reasoning {_int('totals.tokens.reasoning', tok['reasoning'])}",
        ),
    )
    items = "".join(
        f'<div class="card{" warn" if label == "Unpriced calls" and t["unpriced"] else ""}">'
        f'<dt>{label}</dt><dd class="big">{value}</dd>'
        + (f'<dd class="sub">{sub}</dd>' if sub else "")
        + "</div>"
        for label, value, sub in cards
    )
    return (
        f'<section aria-labelledby="h-sum"><h2 id="h-sum">Summary</h2><dl class="cards">{items}'
        f"</dl>{_token_bar(tok)}</section>"
    )


def _token_bar(tok: Mapping[str, Any]) -> str:
    """Input and output tokens by kind as one stacked bar (reasoning is part of output)."""
    total = sum(int(tok[k]) for k, _ in _TOKEN_KINDS)
    if total == 0:
        return '<p class="muted">No tokens reported.</p>'
    x = 0.0
    rects, legend = [], []
    for i, (key, label) in enumerate(_TOKEN_KINDS):
        width = int(tok[key]) / total * _WIDTH
        rects.append(
            f'<rect class="tok t{i}" x="{x:.3f}" y="0" width="{width:.3f}" height="10" '
            f'data-json="totals.tokens.{key}" data-value="{int(tok[key])}">'
            f"<title>{label}: {int(tok[key]):,} tokens</title></rect>"
        )
        legend.append(
            f'<li><span class="sw t{i}" aria-hidden="true"></span>{label} '
            f"{_int(f'totals.tokens.{key}', tok[key])}</li>"
        )
        x += width
    return (
        '<figure class="tokbar"><svg id="tokens-chart" role="img" aria-labelledby="tok-t" '
        f'viewBox="0 0 {_WIDTH} 10" preserveAspectRatio="none"><title id="tok-t">Tokens by '
        f'kind</title>{"".join(rects)}</svg><figcaption><ul class="legend">{"".join(legend)}'
        "</ul></figcaption></figure>"
    )


def _label(s: _Span) -> str:
    d = s.data
    model = d.get("model")
    extra = f' <span class="model">{_e(model)}</span>' if model and model != d["name"] else ""
    status = (
        ""
        if d["status"] == "ok"
        else f' <span class="status s-{_e(d["status"])}">{_e(d["status"])}</span>'
    )
    kind = f'<span class="kind k-{_e(d["kind"])}">{_e(d["kind"])}</span>'
    return f"{kind} {_e(d['name'])}{extra}{status}"


def _unpriced(spans: Sequence[_Span], totals: Mapping[str, Any]) -> str:
    if not totals["unpriced"]:
        return ""
    items = "".join(
        f'<li><a href="#s{s.index}">{_e(s.data["name"])}</a>'
        + (f" model <code>{_e(s.data['model'])}</code>" if s.data.get("model") else "")
        + (
            f' in <span class="path">{_e(s.data["node_path"])}</span>'
            if s.data["node_path"]
            else ""
        )
        + f" — {_int(f'{s.path}.unpriced', s.data['unpriced'])} unpriced"
        + (
            f" (price source {_e(s.data['price_source'])})"
            if s.data.get("price_source") not in (None, "unpriced")
            else ""
        )
        + "</li>"
        for s in spans
        if s.own_unpriced
    )
    return (
        '<section class="callout" role="alert" aria-labelledby="h-unp"><h2 id="h-unp">'
        f"{_int('totals.unpriced', totals['unpriced'])} call(s) could not be priced</h2>"
        "<p>Their cost is unknown, not zero: every total on this page excludes them. Add a "
        f"price for the model (PricingConfig) or check the reported usage.</p><ul>{items}</ul>"
        "</section>"
    )


@dataclass(frozen=True, slots=True)
class _Axis:
    """Time to x: linear, except that long idle gaps are squashed to a short break.

    A thread paused for approval for hours would otherwise leave its work as two slivers at
    the ends of the axis; squashed, both sides stay readable.
    """

    start: datetime
    seconds: float
    """Real seconds from the first to the last moment shown."""
    gaps: tuple[tuple[float, float], ...] = ()
    """Squashed gaps, as (start, end) in real seconds from `start`."""
    squash: float = 0.0
    """Axis seconds a squashed gap takes."""

    @property
    def span(self) -> float:
        """Axis seconds from start to end (real seconds less what the gaps lost)."""
        return self.axis_seconds(self.seconds)

    def axis_seconds(self, real: float) -> float:
        """Real seconds from the start as axis seconds."""
        out = real
        for lo, hi in self.gaps:
            if real >= hi:
                out -= (hi - lo) - self.squash
            elif real > lo:
                out -= (real - lo) - (real - lo) / (hi - lo) * self.squash
        return out

    def real_seconds(self, axis: float) -> float:
        """The inverse of `axis_seconds`."""
        real = axis
        for lo, hi in self.gaps:
            start = self.axis_seconds(lo)
            if axis >= start + self.squash:
                real += (hi - lo) - self.squash
            elif axis > start:
                return lo + (axis - start) / self.squash * (hi - lo) if self.squash else lo
        return real

    def x(self, text: str | None) -> float:
        t = _time(text)
        if t is None:
            return float(_WIDTH)
        real = max(0.0, min(self.seconds, (t - self.start).total_seconds()))
        return self.axis_seconds(real) / self.span * _WIDTH


SQUASH_GAP_SECONDS: Final = 600
"""An idle gap longer than this (and than a quarter of everything shown) is squashed."""
_SQUASHED_SHARE: Final = 0.04
"""Share of the axis a squashed gap takes."""


def _axis(data: Mapping[str, Any], spans: Sequence[_Span]) -> _Axis:
    """The axis from the first to the last moment; idle gaps between *leaf* spans squashed.

    Leaves only: a run (or the thread's root) spans its own pauses, its leaves do not.
    """
    intervals, leaves = [], []
    for i, s in enumerate(spans):
        lo, hi = _time(s.data["started_at"]), _time(s.data["ended_at"])
        if lo is None:
            continue
        intervals.append((lo, hi or lo))
        if i + 1 == len(spans) or spans[i + 1].depth <= s.depth:
            leaves.append((lo, hi or lo))
    moments = [(t, t) for d in data.get("decisions", ()) if (t := _time(d["at"])) is not None]
    intervals += moments
    start = min(lo for lo, _ in intervals)
    end = max(hi for _, hi in intervals)
    seconds = max((end - start).total_seconds(), 1e-6)
    gaps: list[tuple[float, float]] = []
    reach = start
    for lo, hi in sorted([*leaves, *moments, (end, end)]):
        idle = (lo - reach).total_seconds()
        if idle > SQUASH_GAP_SECONDS and idle > seconds / 4:
            gaps.append(((reach - start).total_seconds(), (lo - start).total_seconds()))
        reach = max(reach, hi)
    if not gaps:
        return _Axis(start, seconds)
    busy = max(seconds - sum(hi - lo for lo, hi in gaps), 1e-3)
    # Each gap takes `_SQUASHED_SHARE` of the axis: squash = share x (busy + n x squash).
    share = min(_SQUASHED_SHARE, 0.5 / len(gaps))
    squash = busy * share / (1 - share * len(gaps))
    return _Axis(start, seconds, tuple(gaps), squash)


def _gap_marks(axis: _Axis, height: int) -> str:
    """A hatched break where a long idle gap was squashed, saying how long it was."""
    out = []
    for lo, hi in axis.gaps:
        x0 = axis.axis_seconds(lo) / axis.span * _WIDTH
        x1 = axis.axis_seconds(hi) / axis.span * _WIDTH
        out.append(
            f'<rect class="gap" x="{x0:.3f}" y="0" width="{max(x1 - x0, 1.0):.3f}" '
            f'height="{height}" data-gap-seconds="{hi - lo:.3f}">'
            f"<title>idle for {_e(_ms(hi - lo))} (squashed)</title></rect>"
        )
    return "".join(out)


def _bucket(s: _Span, top: Decimal) -> str:
    if s.own_unpriced:
        return "unpriced"
    if not s.is_call:
        return "struct"
    if s.own_cost <= 0 or top <= 0:
        return "c0"
    step = int((s.own_cost / top * _BUCKETS).to_integral_value(rounding=ROUND_CEILING))
    return f"c{max(1, min(_BUCKETS, step))}"


def _markers(data: Mapping[str, Any], axis: _Axis, height: int) -> tuple[str, str]:
    """Policy decisions and approvals as vertical lines, and their list under the chart."""
    lines, items = [], []
    marks: list[tuple[str, str, str, str]] = [
        (f"decisions.{i}", d["at"], d["action"], f"{d['action']} {d.get('rule_id') or ''}")
        for i, d in enumerate(data.get("decisions", ()))
    ]
    for i, a in enumerate(data.get("approvals", ())):
        marks.append(
            (
                f"approvals.{i}",
                a["requested_at"],
                "requested",
                f"approval requested ({a['rule_id']})",
            )
        )
        if a.get("decided_at"):
            marks.append(
                (
                    f"approvals.{i}",
                    a["decided_at"],
                    a["status"],
                    f"approval {a['status']} by {a.get('decided_by') or '?'}",
                )
            )
    for path, at, action, text in marks:
        t, start = _time(at), axis.start
        if t is None or not 0 <= (t - start).total_seconds() <= axis.seconds:
            items.append(f"<li>{_e(text)} at {_e(_clock(at))} (outside this run's time axis)</li>")
            continue
        x = axis.x(at)
        tone = "stop" if action in _STOP_ACTIONS else "ask" if action in _ASK_ACTIONS else "go"
        lines.append(
            f'<line class="mark {tone}" x1="{x:.3f}" x2="{x:.3f}" y1="0" y2="{height}" '
            f'data-json="{_e(path)}" data-action="{_e(action)}" data-at="{_e(at)}" '
            'vector-effect="non-scaling-stroke">'
            f"<title>{_e(text)} at {_e(_clock(at))}</title></line>"
        )
        items.append(
            f'<li><span class="mk {tone}" aria-hidden="true"></span>'
            f"{_e(_clock(at))} {_e(text)}</li>"
        )
    return "".join(lines), "".join(items)


def _waterfall(data: Mapping[str, Any], spans: Sequence[_Span]) -> str:
    axis = _axis(data, spans)
    top = max((s.own_cost for s in spans if s.is_call), default=Decimal(0))
    height = len(spans) * _ROW
    bars, labels = [], []
    for row, s in enumerate(spans):
        d = s.data
        x0, x1 = axis.x(d["started_at"]), axis.x(d["ended_at"])
        bucket = _bucket(s, top)
        y, h = (row * _ROW + 4, _ROW - 8) if bucket != "struct" else (row * _ROW + 9, 6)
        cost = "unknown" if s.own_unpriced else money_text(format(s.own_cost, "f"))
        bars.append(
            f'<rect class="bar {bucket}{" open" if d["ended_at"] is None else ""}" '
            f'x="{x0:.3f}" y="{y}" width="{max(x1 - x0, 1.5):.3f}" height="{h}" '
            f'data-json="{_e(s.path)}" data-span-id="{_e(d["span_id"])}" '
            f'data-kind="{_e(d["kind"])}" '
            f'data-own-cost="{_e(format(s.own_cost, "f"))}" data-own-unpriced="{s.own_unpriced}" '
            f'data-start="{_e(d["started_at"])}" data-end="{_e(d["ended_at"])}">'
            f"<title>{_e(d['name'])} ({_e(d['kind'])}): own cost {cost}</title></rect>"
        )
        labels.append(
            f'<div class="wl" style="padding-left:{0.2 + s.depth * 0.8:.1f}rem" '
            f'title="{_e(d["name"])}">'
            f"{_e(d['name'])}</div>"
        )
    marks, mark_items = _markers(data, axis, height)
    ticks = "".join(
        f'<span class="tick" style="left:{i * 25}%">'
        f"{_ms(axis.real_seconds(axis.span * i / 4))}</span>"
        for i in range(5)
    )
    grid = "".join(
        f'<line class="grid" x1="{i * _WIDTH / 4}" x2="{i * _WIDTH / 4}" y1="0" y2="{height}" '
        'vector-effect="non-scaling-stroke"/>'
        for i in range(5)
    )
    legend = "".join(
        f'<li><span class="sw {b}" aria-hidden="true"></span>{text}</li>'
        for b, text in (
            ("c1", "cheapest call"),
            (f"c{_BUCKETS}", "costliest call"),
            ("c0", "free call (no fee)"),
            ("unpriced", "unpriced call"),
            ("struct", "run / node (no cost of its own)"),
        )
    )
    return (
        '<section aria-labelledby="h-wf"><h2 id="h-wf">Waterfall</h2>'
        '<p class="muted">Every span on the run\'s time axis; calls coloured by their own cost '
        "(darker in light mode, brighter in dark mode: costlier). Lines: policy decisions and "
        'approvals.</p><div class="wf">'
        f'<div class="wf-labels" aria-hidden="true">{"".join(labels)}</div>'
        f'<div class="wf-chart"><div class="ticks" aria-hidden="true">{ticks}</div>'
        f'<svg id="waterfall" role="img" aria-labelledby="wf-t" viewBox="0 0 {_WIDTH} {height}" '
        f'preserveAspectRatio="none" style="height:{height}px"><title id="wf-t">Waterfall of '
        f"{len(spans)} spans over {_ms(axis.seconds)}</title>{grid}{_gap_marks(axis, height)}"
        f"{''.join(bars)}{marks}"
        "</svg></div></div>"
        f'<ul class="legend">{legend}</ul>'
        + (
            f'<ul class="marks" aria-label="policy on the timeline">{mark_items}</ul>'
            if mark_items
            else ""
        )
        + "</section>"
    )


_TREE_COLUMNS: Final = (
    "calls",
    "input",
    "cache read",
    "cache write",
    "output",
    "reasoning",
    "duration",
    "cost",
    "share",
)


def _tree_table(spans: Sequence[_Span]) -> str:
    rows = []
    for s in spans:
        d, p = s.data, s.path
        tok = d["tokens"]
        error = f'<div class="err">{_e(d["error"])}</div>' if d.get("error") else ""
        cells = (
            _int(f"{p}.model_calls", d["model_calls"])
            + " + "
            + _int(f"{p}.tool_calls", d["tool_calls"]),
            _int(f"{p}.tokens.input", tok["input"]),
            _int(f"{p}.tokens.cache_read", tok["cache_read"]),
            _int(f"{p}.tokens.cache_write", tok["cache_write"]),
            _int(f"{p}.tokens.output", tok["output"]),
            _int(f"{p}.tokens.reasoning", tok["reasoning"]),
            _duration(p, d["started_at"], d["ended_at"]),
            _cost_cell(p, d),
            _fig(f"{p}.share", d["share"], "pct"),
        )
        rows.append(
            f'<tr id="s{s.index}" data-json="{_e(p)}" aria-level="{s.depth + 1}">'
            f'<th scope="row" style="padding-left:{0.4 + s.depth * 1.1:.1f}rem">'
            f"{_label(s)}{error}</th>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        )
    head = "".join(f'<th scope="col">{c}</th>' for c in _TREE_COLUMNS)
    return (
        '<section aria-labelledby="h-tree"><h2 id="h-tree">Cost tree</h2><div class="scroll">'
        '<table class="tree"><caption>Each span with the calls, tokens and cost of its whole '
        f'subtree (calls: model + tool)</caption><thead><tr><th scope="col">span</th>{head}</tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _rollup(data: Mapping[str, Any], key: str, heading: str, label: str) -> str:
    items: Sequence[Mapping[str, Any]] = data.get(key) or []
    if not items:
        return (
            f'<section aria-labelledby="h-{key}"><h2 id="h-{key}">{heading}</h2>'
            '<p class="muted">None in this run.</p></section>'
        )
    top = max((Decimal(r["cost_usd"]) for r in items), default=Decimal(0))
    rows = []
    for i, r in enumerate(items):
        p = f"{key}.{i}"
        cost = Decimal(r["cost_usd"])
        width = float(cost / top * 100) if top > 0 else 0.0
        bar = (
            f'<svg class="rbar" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true">'
            f'<rect class="{"unpriced" if r["unpriced"] and not cost else "c4"}" x="0" y="0" '
            f'width="{width:.4f}" height="10" data-json="{p}" data-key="{_e(r["key"])}" '
            f'data-cost="{_e(r["cost_usd"])}"/></svg>'
        )
        rows.append(
            f'<tr data-json="{p}"><th scope="row">{_e(r["key"])}</th><td class="barcell">{bar}</td>'
            f"<td>{_int(f'{p}.model_calls', r['model_calls'])} + "
            f"{_int(f'{p}.tool_calls', r['tool_calls'])}</td>"
            f"<td>{_int(f'{p}.tokens.input', r['tokens']['input'])}</td>"
            f"<td>{_int(f'{p}.tokens.output', r['tokens']['output'])}</td>"
            f"<td>{_cost_cell(p, r)}</td><td>{_fig(f'{p}.share', r['share'], 'pct')}</td></tr>"
        )
    return (
        f'<section aria-labelledby="h-{key}"><h2 id="h-{key}">{heading}</h2><div class="scroll">'
        f'<table class="rollup" id="{key}"><thead><tr><th scope="col">{label}</th>'
        '<th scope="col"><span class="vh">bar</span></th><th scope="col">calls</th>'
        '<th scope="col">input</th><th scope="col">output</th><th scope="col">cost</th>'
        f'<th scope="col">share</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
        "</section>"
    )


def _policy(data: Mapping[str, Any]) -> str:
    counts: Mapping[str, int] = data.get("decision_counts") or {}
    decisions: Sequence[Mapping[str, Any]] = data.get("decisions") or []
    approvals: Sequence[Mapping[str, Any]] = data.get("approvals") or []
    if not counts and not approvals:
        return (
            '<section aria-labelledby="h-pol"><h2 id="h-pol">Policy</h2>'
            '<p class="muted">No policy decisions in this run.</p></section>'
        )
    summary = ", ".join(
        f"{_e(k)} {_int(f'decision_counts.{k}', v)}" for k, v in sorted(counts.items())
    )
    rows = "".join(
        f'<tr data-json="decisions.{i}">'
        f'<td><time datetime="{_e(d["at"])}">{_e(_clock(d["at"]))}</time></td>'
        f'<td><span class="act a-{_e(d["action"])}">{_e(d["action"])}</span></td>'
        f'<td class="t">{_e(d.get("rule_id") or "–")}</td><td class="t">{_e(d["actor"])}</td>'
        f"<td>{_amount(f'decisions.{i}.limit', d['limit'], d['unit'])}</td>"
        f"<td>{_amount(f'decisions.{i}.observed', d['observed'], d['unit'])}</td>"
        f"<td>{_amount(f'decisions.{i}.estimate', d['estimate'], d['unit'])}</td>"
        f'<td class="t msg">{_e(d["message"])}</td></tr>'
        for i, d in enumerate(decisions)
    )
    table = (
        '<div class="scroll"><table id="decisions"><caption>Decisions other than allow</caption>'
        "<thead><tr>"
        + "".join(
            f'<th scope="col">{c}</th>'
            for c in ("at", "action", "rule", "by", "limit", "observed", "estimate", "message")
        )
        + f"</tr></thead><tbody>{rows}</tbody></table></div>"
        if rows
        else '<p class="muted">Every call was allowed.</p>'
    )
    return (
        '<section aria-labelledby="h-pol"><h2 id="h-pol">Policy</h2>'
        f"<p>Decisions: {summary or 'none in this run'}</p>{table}{_approvals(approvals)}</section>"
    )


def _approvals(approvals: Sequence[Mapping[str, Any]]) -> str:
    if not approvals:
        return ""
    rows = "".join(
        f'<tr data-json="approvals.{i}"><td><code>{_e(a["approval_id"][:12])}</code></td>'
        f'<td><span class="act a-{_e(a["status"])}">{_e(a["status"])}</span></td>'
        f'<td class="t">{_e(a["rule_id"])}</td>'
        f"<td>{_amount(f'approvals.{i}.spent', a['spent'], a['unit'])}</td>"
        f"<td>{_amount(f'approvals.{i}.limit', a['limit'], a['unit'])}</td>"
        f"<td>{_amount(f'approvals.{i}.estimated_extra', a['estimated_extra'], a['unit'])}</td>"
        f"<td>{_amount(f'approvals.{i}.approved_extra', a['approved_extra'], a['unit'])}</td>"
        f'<td><time datetime="{_e(a["requested_at"])}">'
        f"{_e(_clock(a['requested_at'], True))}</time></td>"
        f"<td>{_e(a.get('decided_by') or '–')}"
        + (
            f' at <time datetime="{_e(a["decided_at"])}">{_e(_clock(a["decided_at"], True))}</time>'
            if a.get("decided_at")
            else ""
        )
        + f'</td><td class="t msg">{_e(a.get("reason") or "")}</td></tr>'
        for i, a in enumerate(approvals)
    )
    head = "".join(
        f'<th scope="col">{c}</th>'
        for c in (
            "request",
            "status",
            "rule",
            "spent",
            "limit",
            "asked",
            "approved extra",
            "requested (UTC)",
            "decided by",
            "reason",
        )
    )
    return (
        '<div class="scroll"><table id="approvals"><caption>Approval requests</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
    )


def _prices(data: Mapping[str, Any]) -> str:
    versions = data.get("price_versions") or []
    items = "".join(f"<li>{_e(v)}</li>" for v in versions)
    return (
        '<footer><h2 id="h-prices">Prices</h2>'
        + (f"<ul>{items}</ul>" if items else '<p class="muted">No priced calls.</p>')
        + f'<p class="muted">Report schema {_e(data.get("schema_version"))}; money in USD, '
        "exact.</p></footer>"
    )


_CSS: Final = (Path(__file__).parent / "_html.css").read_text(encoding="utf-8")
"""The page's style sheet (inlined into every page)."""
