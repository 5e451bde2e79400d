"""`agent-finops runs` and `agent-finops report RUN_ID [--json]`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from agent_finops.exceptions import FinOpsError
from agent_finops.ledger import DEFAULT_URL, SQLLedger
from agent_finops.reports import load_run_report, money

ENV_URL = "AGENT_FINOPS_DB_URL"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-finops", description="Cost reports for AI-agent runs."
    )
    parser.add_argument(
        "--db",
        default=None,
        help=f"ledger URL (default: ${ENV_URL} or {DEFAULT_URL})",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    runs = sub.add_parser("runs", help="list recent runs with their totals")
    runs.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    runs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    report = sub.add_parser("report", help="cost tree and rollups of one run")
    report.add_argument("run_id", help="run (trace) id, or a unique prefix of one")
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    url = args.db or os.environ.get(ENV_URL) or DEFAULT_URL
    try:
        with SQLLedger.from_url(url) as ledger:
            if args.command == "runs":
                return _runs(ledger, args.limit, args.json)
            return _report(ledger, args.run_id, args.json)
    except (FinOpsError, LookupError) as exc:
        print(f"agent-finops: error: {exc}", file=sys.stderr)
        return 1


def _runs(ledger: SQLLedger, limit: int, as_json: bool) -> int:
    summaries = ledger.list_runs(limit=limit)
    if as_json:
        data = [
            {
                "trace_id": s.run.trace_id,
                "name": s.run.name,
                "status": s.run.status,
                "started_at": s.run.started_at.isoformat(),
                "cost_usd": format(s.cost, "f"),
                "unpriced": s.unpriced,
                "model_calls": s.model_calls,
                "tool_calls": s.tool_calls,
                "tags": s.run.tags,
            }
            for s in summaries
        ]
        print(json.dumps(data, indent=2))
        return 0
    if not summaries:
        print("no runs recorded yet")
        return 0
    header = ("run id", "started (UTC)", "name", "status", "calls", "unpriced", "cost")
    rows = [
        (
            s.run.trace_id,
            f"{s.run.started_at:%Y-%m-%d %H:%M:%S}",
            s.run.name,
            s.run.status,
            str(s.model_calls + s.tool_calls),
            str(s.unpriced),
            money(s.cost),
        )
        for s in summaries
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for cells in (header, *rows):
        print(
            "  ".join(
                c.ljust(w) if i < 4 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
        )
    return 0


def _report(ledger: SQLLedger, run_id: str, as_json: bool) -> int:
    report = load_run_report(ledger, run_id)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.render())
    return 0
