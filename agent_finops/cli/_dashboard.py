"""`agent-finops dashboard [--html PATH] [--json] [--from DAY --to DAY] [--tz ZONE] [--by TAGS]`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from typing import Any

from agent_finops.cli._args import text_arg
from agent_finops.ledger import Ledger
from agent_finops.policy import load_policy
from agent_finops.reports._dashboard import DEFAULT_DAYS, DEFAULT_DIMENSIONS, build_dashboard
from agent_finops.reports._dashboard_html import write_dashboard_html

__all__ = ["register", "run"]


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{ascii(text)[:40]} is not a date (YYYY-MM-DD)") from None


def _tags(text: str) -> tuple[str, ...]:
    tags = tuple(t.strip() for t in text_arg(text).split(",") if t.strip())
    if not tags:
        raise argparse.ArgumentTypeError("names no tag (e.g. team or team,agent)")
    return tags


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `dashboard` sub-command."""
    cmd = sub.add_parser(
        "dashboard",
        parents=[common],
        help="spend over days: by team and agent, cost per task, budget burn, anomalies",
    )
    cmd.add_argument(
        "--html", metavar="PATH", type=text_arg, help="write a self-contained HTML page"
    )
    cmd.add_argument("--json", action="store_true", help="print the dashboard as JSON")
    cmd.add_argument(
        "--from",
        dest="first_day",
        metavar="YYYY-MM-DD",
        type=_day,
        default=None,
        help=f"first day (default: {DEFAULT_DAYS - 1} days before --to)",
    )
    cmd.add_argument(
        "--to",
        dest="last_day",
        metavar="YYYY-MM-DD",
        type=_day,
        default=None,
        help="last day, included (default: today in --tz)",
    )
    cmd.add_argument(
        "--tz", type=text_arg, default="UTC", help="time zone of the days (default: UTC)"
    )
    cmd.add_argument(
        "--by",
        type=_tags,
        default=DEFAULT_DIMENSIONS,
        metavar="TAG[,TAG]",
        help=f"tags to break the cost down by, each on its own (default: "
        f"{','.join(DEFAULT_DIMENSIONS)})",
    )
    cmd.add_argument(
        "--policy",
        metavar="FILE",
        type=text_arg,
        default=None,
        help="policy file whose USD budgets get burn rows and budget lines",
    )
    cmd.set_defaults(with_ledger=run)


def run(ledger: Ledger, args: argparse.Namespace) -> int:
    """Build the dashboard; write the page, print the JSON, or print a summary."""
    policy = load_policy(args.policy) if args.policy is not None else None
    board = build_dashboard(
        ledger,
        first_day=args.first_day,
        last_day=args.last_day,
        timezone=args.tz,
        by=args.by,
        policy=policy,
    )
    if args.html is not None:
        write_dashboard_html(board, args.html)
        print(f"wrote {args.html}", file=sys.stderr)
    if args.json:
        print(json.dumps(board.to_dict(), indent=2))
    elif args.html is None:
        print(board.render())
    return 0
