"""Plain-text rendering of a `RunReport` for the terminal."""

from __future__ import annotations

from decimal import Decimal

from agent_finops.reports._run_report import Rollup, RunReport, SpanNode, Totals


def money(value: Decimal | None) -> str:
    """USD for humans: 6 decimals under a dollar, 2 above; None is 'unknown'."""
    if value is None:
        return "unknown"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    return f"${value:.6f}"


def _share(part: Decimal, total: Decimal) -> str:
    return "-" if total == 0 else f"{part / total * 100:5.1f}%"


def _cost_cell(t: Totals) -> str:
    text = money(t.cost) if t.calls > t.unpriced or t.calls == 0 else "unknown"
    if t.unpriced and t.calls > t.unpriced:
        text += f" +{t.unpriced} unpriced"
    return text


def _tokens(t: Totals) -> str:
    if not t.input_tokens and not t.output_tokens:
        return "-"
    parts = [f"in {t.input_tokens:,}"]
    if t.cache_read_tokens or t.cache_write_tokens:
        parts.append(f"(cached {t.cache_read_tokens:,} / written {t.cache_write_tokens:,})")
    parts.append(f"out {t.output_tokens:,}")
    if t.reasoning_tokens:
        parts.append(f"(reasoning {t.reasoning_tokens:,})")
    return " ".join(parts)


def _label(node: SpanNode) -> str:
    s = node.span
    if s.kind == "model":
        model = next((e.name for e in node.events if e.kind == "model"), None)
        return f"{s.name} [model {model}]" if model and model != s.name else f"{s.name} [model]"
    if s.kind in ("node", "tool", "agent", "task", "crew"):
        return f"{s.name} [{s.kind}]"
    return s.name


def render_text(report: RunReport) -> str:
    """Render the report as a tree and rollup tables."""
    run, totals = report.run, report.totals
    total = totals.cost
    lines: list[str] = []
    duration = ""
    if run.ended_at is not None:
        duration = f"  {(run.ended_at - run.started_at).total_seconds():.3f}s"
    if report.segments:
        lines.append(
            f"Thread {run.thread_id}  {run.name}  [{run.status}]{duration}  "
            f"{len(report.segments)} invocations"
        )
    else:
        thread = f"  thread {run.thread_id}" if run.thread_id else ""
        lines.append(f"Run {run.trace_id}  {run.name}  [{run.status}]{duration}{thread}")
    lines.append(f"Started {run.started_at:%Y-%m-%d %H:%M:%S} UTC")
    if run.tags:
        lines.append("Tags: " + "  ".join(f"{k}={v}" for k, v in sorted(run.tags.items())))
    lines.append(
        f"Total {money(total)}   model calls {totals.model_calls}   tool calls "
        f"{totals.tool_calls}   unpriced {totals.unpriced}"
    )
    lines.append(f"Tokens {_tokens(totals)}")
    lines.extend(_segment_lines(report))
    if totals.unpriced:
        lines.append(
            f"WARNING: {totals.unpriced} call(s) could not be priced; the total excludes them."
        )
    lines.append("")

    rows: list[tuple[str, str, str, str, str]] = []
    stack: list[tuple[SpanNode, str, str]] = [(report.tree, "", "")]
    while stack:
        node, prefix, child_prefix = stack.pop()
        t = node.totals
        status = "" if node.span.status == "ok" else f" ({node.span.status})"
        rows.append(
            (
                prefix + _label(node) + status,
                str(t.calls),
                _tokens(t),
                _cost_cell(t),
                _share(t.cost, total),
            )
        )
        kids = node.children
        for i, child in reversed(list(enumerate(kids))):
            last = i == len(kids) - 1
            stack.append(
                (
                    child,
                    child_prefix + ("└─ " if last else "├─ "),
                    child_prefix + ("   " if last else "│  "),
                )
            )
    lines.extend(_table(("span", "calls", "tokens", "cost", "share"), rows))

    for title, rollups in (
        ("By node", report.by_node),
        ("By agent", report.by_agent),
        ("By task", report.by_task),
        ("By model", report.by_model),
        ("By tool", report.by_tool),
    ):
        if rollups:
            lines.append("")
            lines.append(title)
            lines.extend(
                _table(("key", "calls", "tokens", "cost", "share"), _rollup_rows(rollups, total))
            )
    lines.extend(_policy_lines(report))
    if report.price_versions:
        lines.append("")
        lines.append("Prices: " + "; ".join(report.price_versions))
    return "\n".join(lines)


def _segment_lines(report: RunReport) -> list[str]:
    if not report.segments:
        return []
    lines = ["Invocations (the first run, then each resume):"]
    noops = 0
    for n, s in enumerate(report.segments, 1):
        if s.noop and n > 1:
            noops += 1
            continue
        lines.append(
            f"  {n}. run {s.run.trace_id}  {s.run.started_at:%H:%M:%S}  [{s.run.status}]  "
            f"calls {s.totals.calls}  {_cost_cell(s.totals)}"
        )
    if noops:
        lines.append(f"  (+{noops} resume(s) that did nothing)")
    return lines


def render_policy(report: RunReport) -> str:
    """Only the policy part of a report: decision counts, non-allow decisions, approvals."""
    return "\n".join(_policy_lines(report)[1:]) or "Policy decisions: none"


def _policy_lines(report: RunReport) -> list[str]:
    if not report.decisions and not report.approvals:
        return []
    counts = report.decision_counts()
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none in this run"
    lines = ["", "Policy decisions: " + summary]
    overruns = [d for d in report.decisions if d.action == "overrun"]
    if overruns:  # one line: a loose estimate makes them frequent, and each says the same
        excess = sum(
            ((d.observed or Decimal(0)) - (d.estimate or Decimal(0)) for d in overruns),
            Decimal(0),
        )
        lines.append(
            f"  {len(overruns)} call(s) cost more than they reserved (overrun), "
            f"{excess} {overruns[0].unit} over their reservations in all; budgets are "
            "charged the actual amounts (details: --json)"
        )
    for d in report.decisions:
        if d.action in ("allow", "overrun"):
            continue
        who = f" by {d.actor}" if d.actor != "policy" else ""
        why = f": {d.message}" if d.message else ""
        lines.append(f"  {d.created_at:%H:%M:%S}  {d.action:<9} {d.rule_id or '-'}{who}{why}")
    for a in report.approvals:
        decided = f" by {a.decided_by}" if a.decided_by else ""
        extra = f", approved extra {a.extra} {a.unit}" if a.extra is not None else ""
        lines.append(
            f"  approval {a.approval_id[:12]}  {a.status}{decided}: rule {a.rule_id}, "
            f"spent {a.spent} of {a.limit} {a.unit}, asked {a.estimate} more{extra}"
        )
    return lines


def _rollup_rows(rollups: list[Rollup], total: Decimal) -> list[tuple[str, str, str, str, str]]:
    return [
        (
            "  " + r.key,
            str(r.totals.calls),
            _tokens(r.totals),
            _cost_cell(r.totals),
            _share(r.totals.cost, total),
        )
        for r in rollups
    ]


def _table(header: tuple[str, ...], rows: list[tuple[str, str, str, str, str]]) -> list[str]:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]

    def fmt(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [
            cells[i].rjust(widths[i]) if i != 2 else cells[i].ljust(widths[i])
            for i in range(1, len(cells))
        ]
        return "  ".join([first, *rest]).rstrip()

    return [fmt(header), *(fmt(r) for r in rows)]
