"""`agent-finops export --from --to --format csv|json [--allocate rules.yaml] [--gl gl.yaml]`."""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from datetime import timedelta
from typing import IO, Any

from agent_finops.allocation import load_allocation_rules
from agent_finops.cli._args import moment_arg, moment_in, text_arg, where_arg
from agent_finops.cli._rollup import merged_where, range_of
from agent_finops.exports import load_gl_mapping, terminal_progress, write_export
from agent_finops.ledger import Ledger
from agent_finops.rollups import zone

__all__ = ["register"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `export`."""
    cmd = sub.add_parser(
        "export",
        parents=[common],
        help="cost events as CSV or JSON for finance (allocated, GL-coded)",
        description="Stream the cost events of a range with reconciliation fields.",
    )
    cmd.add_argument("--day", type=moment_arg, default=None, help="one local day: YYYY-MM-DD")
    cmd.add_argument("--from", dest="start", type=moment_arg, default=None, help="start (in --tz)")
    cmd.add_argument("--to", dest="end", type=moment_arg, default=None, help="end, exclusive")
    cmd.add_argument("--tz", type=text_arg, default="UTC", help="time zone of dates (UTC)")
    cmd.add_argument("--where", type=where_arg, action="append", default=[], help="TAG=V1[,V2]")
    cmd.add_argument("--format", choices=("csv", "json"), default="csv", help="default: csv")
    cmd.add_argument("--allocate", type=text_arg, default=None, help="allocation rules YAML")
    cmd.add_argument("--gl", type=text_arg, default=None, help="GL code mapping YAML")
    cmd.add_argument("--out", type=text_arg, default=None, help="file to write (default stdout)")
    cmd.set_defaults(with_ledger=run)


def run(ledger: Ledger, args: argparse.Namespace) -> int:
    """Write the export."""
    tz = zone(args.tz)
    if args.day is not None:
        start = moment_in(args.day, tz, name="day")
        end = moment_in((start.date() + timedelta(days=1)).isoformat(), tz, name="day")
    else:
        start, end = range_of(args, default_days=1)
    rules = None if args.allocate is None else load_allocation_rules(args.allocate)
    gl = None if args.gl is None else load_gl_mapping(args.gl)
    where = merged_where(args.where)
    found = ledger.aggregate(windows=[(start, end)], where=where)
    total = sum(a.totals.events for a in found)
    progress = terminal_progress(total, sys.stderr)
    with ExitStack() as stack:
        out: IO[str] = sys.stdout
        if args.out is not None:
            out = stack.enter_context(open(args.out, "w", encoding="utf-8", newline=""))
        write_export(
            ledger,
            out,
            start=start,
            end=end,
            fmt=args.format,
            tz=args.tz,
            where=where,
            rules=rules,
            gl=gl,
            progress=progress,
        )
    return 0
