"""`agent-finops finance-report --month 2026-11 [--html out.html | --json]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agent_finops.cli._args import text_arg
from agent_finops.finance import build_finance_report, render_finance_html, render_finance_text
from agent_finops.ledger import Ledger
from agent_finops.policy import load_policy

__all__ = ["register"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `finance-report`."""
    cmd = sub.add_parser(
        "finance-report",
        parents=[common],
        help="the monthly finance report (summary, budgets, teams, anomalies, forecast)",
    )
    cmd.add_argument("--month", type=text_arg, required=True, help="YYYY-MM")
    cmd.add_argument("--tz", type=text_arg, default="UTC", help="calendar time zone (UTC)")
    cmd.add_argument("--policy", type=text_arg, default=None, help="policy YAML (budgets)")
    shape = cmd.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print JSON")
    shape.add_argument("--html", type=text_arg, default=None, help="write an HTML page here")
    cmd.set_defaults(with_ledger=run)


def run(ledger: Ledger, args: argparse.Namespace) -> int:
    """Print or write the report."""
    policy = None if args.policy is None else load_policy(args.policy)
    report = build_finance_report(ledger, month=args.month, tz=args.tz, policy=policy)
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        print()
    elif args.html:
        Path(args.html).write_text(render_finance_html(report), encoding="utf-8")
        print(f"wrote {args.html}")
    else:
        print(render_finance_text(report))
    return 0
