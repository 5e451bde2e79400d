"""`agent-finops rollup --by team,project --period month --from --to [--json|--csv]`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta
from typing import Any

from agent_finops.cli._args import csv_arg, moment_arg, moment_in, text_arg, where_arg
from agent_finops.ledger import Ledger
from agent_finops.ledger._money import money_text
from agent_finops.policy import Policy, load_policy
from agent_finops.rollups import PERIODS, Rollup, rollup, to_json, write_csv, zone

__all__ = ["add_range_arguments", "range_of", "register"]


def add_range_arguments(cmd: argparse.ArgumentParser, *, default_days: int = 30) -> None:
    """`--from`, `--to`, `--tz`, `--where` and `--policy`, as every finance command takes them."""
    cmd.add_argument(
        "--from",
        dest="start",
        type=moment_arg,
        default=None,
        help=f"first day or moment, in --tz (default: {default_days} days before --to)",
    )
    cmd.add_argument(
        "--to",
        dest="end",
        type=moment_arg,
        default=None,
        help="end, exclusive (default: tomorrow's local midnight, so today is included)",
    )
    cmd.add_argument(
        "--tz",
        type=text_arg,
        default=None,
        help="IANA time zone of the calendar (default: the --policy's, else UTC)",
    )
    cmd.add_argument(
        "--where",
        type=where_arg,
        action="append",
        default=[],
        help="keep events whose tag has one of the values: TAG=V1[,V2] (repeatable)",
    )
    cmd.add_argument(
        "--policy", type=text_arg, default=None, help="policy YAML: its budgets vs actual"
    )


def range_of(args: argparse.Namespace, *, default_days: int = 30) -> tuple[datetime, datetime]:
    """The `[from, to)` range of the arguments, aware, in `--tz`."""
    tz = zone(args.tz or "UTC")
    if args.end is None:
        today = datetime.now(tz).date() + timedelta(days=1)
        end = moment_in(today.isoformat(), tz, name="to")
    else:
        end = moment_in(args.end, tz, name="to")
    if args.start is None:
        start = moment_in((end.date() - timedelta(days=default_days)).isoformat(), tz, name="from")
    else:
        start = moment_in(args.start, tz, name="from")
    return start, end


def merged_where(pairs: list[tuple[str, list[str]]]) -> dict[str, list[str]]:
    """`--where team=a --where team=b` as `{team: [a, b]}` (repeats add values)."""
    where: dict[str, list[str]] = {}
    for key, values in pairs:
        where.setdefault(key, []).extend(v for v in values if v not in where.get(key, []))
    return where


def policy_of(args: argparse.Namespace) -> Policy | None:
    """The `--policy` file, loaded (errors name the file)."""
    return None if args.policy is None else load_policy(args.policy)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `rollup`."""
    cmd = sub.add_parser(
        "rollup",
        parents=[common],
        help="cost, calls and tokens by tags and calendar period",
        description="Totals by tags and period, computed in the ledger's database.",
    )
    cmd.add_argument(
        "--by", type=csv_arg, default=[], help="tags to group by: team,project,agent,..."
    )
    cmd.add_argument("--period", choices=PERIODS, default="month", help="default: month")
    cmd.add_argument(
        "--runtime",
        action="store_true",
        help="also the runs' wall-clock time, for cost per runtime minute (a second pass)",
    )
    add_range_arguments(cmd)
    shape = cmd.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print JSON")
    shape.add_argument("--csv", action="store_true", help="print CSV")
    cmd.set_defaults(with_ledger=run)


def run(ledger: Ledger, args: argparse.Namespace) -> int:
    """Print the rollup."""
    policy = policy_of(args)
    if args.tz is None:
        args.tz = policy.timezone if policy is not None else "UTC"
    start, end = range_of(args)
    found = rollup(
        ledger,
        start=start,
        end=end,
        by=args.by,
        period=args.period,
        tz=args.tz,
        where=merged_where(args.where),
        policy=policy,
        runtime=args.runtime,
    )
    if args.json:
        json.dump(to_json(found), sys.stdout, indent=2)
        print()
    elif args.csv:
        write_csv(found, sys.stdout)
    else:
        print(render(found))
    return 0


def render(found: Rollup) -> str:
    """A plain-text table of the rollup."""
    heads = ["period", *found.by, "cost", "calls", "unpriced", "tasks", "cost/task", "budget"]
    lines = [heads]
    for row in found.rows:
        budget = row.budget
        lines.append(
            [
                row.start.strftime("%Y-%m-%d %H:%M" if found.period == "hour" else "%Y-%m-%d"),
                *(row.group[d] or "-" for d in found.by),
                f"${money_text(row.totals.cost)}",
                str(row.totals.events),
                str(row.totals.unpriced),
                str(row.totals.tasks),
                "-" if row.cost_per_task is None else f"${row.cost_per_task:.4f}",
                "-" if budget is None else f"{budget.used_pct}% of ${budget.limit}",
            ]
        )
    t = found.total
    lines.append(
        [
            "total",
            *("" for _ in found.by),
            f"${money_text(t.cost)}",
            str(t.events),
            str(t.unpriced),
            str(t.tasks),
            "",
            "",
        ]
    )
    widths = [max(len(line[i]) for line in lines) for i in range(len(heads))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
